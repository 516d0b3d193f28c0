"""Model cards and Hub publishing for BT-SR model folders.

`write_model_card(folder)` turns a finished `train.py` output folder (weights, code files, `item_vocab.json`,
`all_results.json`, `dataset_stats.json`) into a `README.md` with `model-index` metadata; `push_folder_to_hub`
uploads exactly the files a user needs, in one commit. Neither calls the Hub's YAML validator.
"""

from .card import build_model_card, data_terms_note, dataset_display_name, protocol_label, write_model_card

_HUB_NAMES = ("prepare_upload_folder", "push_folder_to_hub", "push_checkpoint_to_hub")


def __getattr__(name):
    # Imported lazily so that `python -m model_cards.hub` does not find its module already imported.
    if name in _HUB_NAMES:
        from . import hub

        return getattr(hub, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "build_model_card",
    "write_model_card",
    "data_terms_note",
    "dataset_display_name",
    "protocol_label",
    "prepare_upload_folder",
    "push_folder_to_hub",
    "push_checkpoint_to_hub",
]
