"""Upload a finished BT-SR model folder to the Hugging Face Hub: one repository, one commit, only what users need.

Steps, each small enough to test without network:

1. :func:`prepare_upload_folder` checks that the folder is complete (weights, config with `auto_map`, the model's
   code files, `item_vocab.json`, `README.md`, `all_results.json`) and returns the exact files to upload;
   checkpoints, `training_args.bin`, anything pickled, dot-files and staging folders never leave the machine.
2. :func:`push_folder_to_hub` creates the repository if needed and uploads those files in a single commit.

For an existing output folder::

    python -m model_cards.hub outputs/btsr-ml1m your-name/btsr-ml1m [--private] [--write_card] [--dry_run]
        [--reference_folder outputs/sasrec-ml1m]   # a SASRec run of the same split, shown beside this model
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from data_processing.errors import DataError

__all__ = [
    "REQUIRED_FILES",
    "CODE_FILES",
    "prepare_upload_folder",
    "push_folder_to_hub",
    "checkpoint_upload_files",
    "push_checkpoint_to_hub",
    "main",
]

logger = logging.getLogger("btsr")

# What `save_pretrained` copies (modeling_btsr.REMOTE_CODE_FILES), not imported: modeling_btsr's training run imports
# model_cards. tests/test_hub.py loads an upload where the project cannot be imported: a file left out fails it.
# The last two: the recommendation pipeline (config.json's custom_pipelines) and the Inference Endpoints handler.
CODE_FILES = (
    "configuration_btsr.py",
    "modeling_btsr.py",
    "attention_btsr.py",
    "losses_btsr.py",
    "sharding_btsr.py",
    "pipeline_btsr.py",
    "handler.py",
)
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    *CODE_FILES,
    "item_vocab.json",
    "README.md",
    "all_results.json",
)
WEIGHTS_INDEX = "model.safetensors.index.json"
# Top-level files that may go up besides the required ones (plain data, never executable, never pickled).
SAFE_SUFFIXES = (".json", ".safetensors", ".md", ".txt", ".yaml", ".yml", ".png")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")


def _auto_map_modules(folder: Path) -> set[str]:
    """`module.py` file names referenced by `config.json`'s `auto_map` and `custom_pipelines`; checks that `auto_map`
    has AutoConfig/AutoModel."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error
    auto_map = config.get("auto_map") or {}
    missing = [name for name in ("AutoConfig", "AutoModel") if name not in auto_map]
    if missing:
        raise DataError(
            f"{path}: auto_map lacks {', '.join(missing)}; save the model with save_pretrained from modeling_btsr "
            "so that AutoModel.from_pretrained(..., trust_remote_code=True) can load it"
        )
    references = [
        ref for value in auto_map.values() for ref in (value if isinstance(value, (list, tuple)) else [value])
    ]
    # pipeline(model=..., trust_remote_code=True) loads the module that custom_pipelines' `impl` names
    references += [
        task.get("impl") for task in (config.get("custom_pipelines") or {}).values() if isinstance(task, dict)
    ]
    # "repo--module.Class" or "module.Class" -> "module.py"
    return {str(ref).split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in references if ref}


def _weight_files(folder: Path) -> list[str]:
    """`model.safetensors`, or the shards of a sharded save listed in its index."""
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    index = folder / WEIGHTS_INDEX
    if not index.is_file():
        raise DataError(f"{folder}: missing model.safetensors (the weights); is this a finished model folder?")
    shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
    absent = [name for name in shards if not (folder / name).is_file()]
    if not shards or absent:
        raise DataError(f"{folder}: {WEIGHTS_INDEX} lists missing weight shard(s): {', '.join(absent) or 'none'}")
    return [WEIGHTS_INDEX, *shards]


def prepare_upload_folder(folder) -> list[str]:
    """Checks a model folder and returns the sorted file names (relative to it) that an upload sends.

    Sent: the required files (config.json with `auto_map`, model.safetensors or its shards, the code files
    that `auto_map` names, item_vocab.json, README.md, all_results.json) and other top-level plain files
    (`.json`, `.md`, `.txt`, `.yaml`, e.g. dataset_stats.json; `.png`, the card's figures). Never sent: subfolders
    (`checkpoint-*`,
    `.staging-*`, `runs/`), dot-files, `*.tmp`, `training_args.bin` and anything pickled, other `.py` files.

    Raises:
        DataError: one line naming the folder and every missing file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such model folder")
    missing = [name for name in REQUIRED_FILES if name != "model.safetensors" and not (folder / name).is_file()]
    if not (folder / "model.safetensors").is_file() and not (folder / WEIGHTS_INDEX).is_file():
        missing.insert(1, "model.safetensors")
    if missing:
        hint = " (write it with model_cards.write_model_card)" if missing == ["README.md"] else ""
        raise DataError(f"{folder}: incomplete model folder, missing {', '.join(missing)}{hint}")
    modules = _auto_map_modules(folder)
    absent = sorted(m for m in modules if not (folder / m).is_file())
    if absent:
        raise DataError(f"{folder}: config.json's auto_map names {', '.join(absent)}, which is missing")
    code = set(CODE_FILES) | modules
    selected = set(_weight_files(folder)) | (set(REQUIRED_FILES) - {"model.safetensors"}) | code
    skipped = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name in selected:
            continue
        if (
            not path.is_file()
            or name.startswith(".")
            or name.endswith(".tmp")
            or name == "training_args.bin"
            or name.endswith(PICKLE_SUFFIXES)
            or not name.endswith(SAFE_SUFFIXES)
        ):
            skipped.append(name + ("/" if path.is_dir() else ""))
            continue
        selected.add(name)
    if skipped:
        logger.info("not uploaded from %s: %s", folder, ", ".join(skipped))
    return sorted(selected)


# Files a model push owns: a previous push's copies that the new folder lacks are deleted (see push_folder_to_hub).
STALE_MODEL_FILE_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "config.json",
    "item_vocab.json",
    "all_results.json",
    "dataset_stats.json",
    "configuration_*.py",
    "modeling_*.py",
    "losses_*.py",
    "attention_*.py",
    "pipeline_*.py",  # the remote code; handler.py is replaced by the folder's own, never deleted
)


def stale_model_files(existing: list[str], uploading: list[str]) -> list[str]:
    """Model files in the repository (`existing`) that this upload does not replace, top-level only: sub-folders
    and non-model files are never touched.

    >>> stale_model_files(["README.md", "pytorch_model.bin", "modeling_old.py", "handler.py", "notes/a.bin"],
    ...                   ["README.md", "model.safetensors", "modeling_btsr.py"])
    ['modeling_old.py', 'pytorch_model.bin']
    """
    from fnmatch import fnmatch

    keep = set(uploading)
    return sorted(
        name
        for name in existing
        if name not in keep and "/" not in name and any(fnmatch(name, pattern) for pattern in STALE_MODEL_FILE_PATTERNS)
    )


def _ensure_repo(api, repo_id: str, token, private: bool | None, revision: str | None) -> None:
    """Creates the repository (private when asked), applies an explicit `private` to an existing one too, and
    creates `revision` as a branch when it is not there."""
    api.create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model")
    if private is not None:  # create_repo ignores `private` for a repository that exists already
        api.update_repo_settings(repo_id, private=bool(private), token=token, repo_type="model")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, token=token, repo_type="model", exist_ok=True)


def checkpoint_upload_files(folder) -> list[str]:
    """The model files of a checkpoint folder (`checkpoint-N`, written by `save_pretrained` during training): weights,
    `config.json`, the code files and `item_vocab.json`; never its optimizer, scheduler, RNG or trainer state.

    Raises:
        DataError: one line naming what is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such checkpoint folder")
    missing = [name for name in ("config.json", "item_vocab.json") if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: incomplete checkpoint, missing {', '.join(missing)}")
    code = sorted(set(CODE_FILES) | _auto_map_modules(folder))
    absent = [name for name in code if not (folder / name).is_file()]
    if absent:
        raise DataError(f"{folder}: incomplete checkpoint, missing {', '.join(absent)}")
    return sorted({"config.json", "item_vocab.json", *_weight_files(folder), *code})


def push_checkpoint_to_hub(
    folder,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    api=None,
    revision: str | None = None,
) -> str:
    """Uploads a checkpoint's model files (:func:`checkpoint_upload_files`) to the repository's root in one commit,
    for `--hub_strategy every_save`; deletes nothing (the final push does, with the card and the results)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    files = checkpoint_upload_files(folder)
    api = HfApi() if api is None else api
    _ensure_repo(api, repo_id, token, private, revision)
    info = api.create_commit(
        repo_id,
        operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files],
        commit_message=commit_message or f"Training in progress: {folder.name}",
        token=token,
        repo_type="model",
        revision=revision,
    )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("uploaded %d files of %s to %s: %s", len(files), folder, repo_id, url)
    return url


def push_folder_to_hub(
    folder,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    api=None,
    revision: str | None = None,
    delete_stale: bool = True,
) -> str:
    """Creates `repo_id` if needed and uploads the folder's prepared files in one commit; returns the commit URL.

    Args:
        folder: a finished model folder (see :func:`prepare_upload_folder`).
        repo_id: `"user-or-org/name"`.
        token: a Hub token (default: the logged-in one / `HF_TOKEN`).
        private: `True` / `False` makes the repository private / public, also one that exists; `None` (default)
            creates it public (or as the organisation's default) and leaves an existing one's visibility alone.
        commit_message: default `"Upload BT-SR model"`.
        api: an `huggingface_hub.HfApi` (injectable for tests); default `HfApi()`.
        revision: branch to commit to (default: the main branch); created from main when it does not exist.
        delete_stale: delete, in the same commit, the repository's model files (`STALE_MODEL_FILE_PATTERNS`:
            weights, configs and results JSON, code) that the folder no longer has, so that an old
            `pytorch_model.bin` or a code file renamed since the last push cannot shadow the new model. Other files
            (your notebooks, images, extra docs) are always kept.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    folder = Path(folder)
    files = prepare_upload_folder(folder)
    api = HfApi() if api is None else api
    _ensure_repo(api, repo_id, token, private, revision)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    if delete_stale:
        existing = api.list_repo_files(repo_id, revision=revision, repo_type="model", token=token)
        stale = stale_model_files(existing, files)
        operations += [CommitOperationDelete(path_in_repo=name) for name in stale]
        if stale:
            logger.info("deleting %d stale file(s) from %s: %s", len(stale), repo_id, ", ".join(stale))
    info = api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message or "Upload BT-SR model",
        token=token,
        repo_type="model",
        revision=revision,
    )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("uploaded %d files of %s to %s: %s", len(files), folder, repo_id, url)
    return url


def main(argv=None, api=None) -> int:
    """`python -m model_cards.hub FOLDER REPO_ID [--private] [--write_card] [--dry_run]`."""
    parser = argparse.ArgumentParser(
        prog="python -m model_cards.hub",
        description="Upload a finished BT-SR model folder to the Hugging Face Hub.",
        allow_abbrev=False,  # a shortened flag is refused, never read as another
    )
    parser.add_argument("folder", help="the model folder written by train.py (--output_dir)")
    parser.add_argument("repo_id", help="Hub repository, user-or-org/name")
    parser.add_argument("--private", action="store_true", help="make the repository private (also an existing one)")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one or HF_TOKEN)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument(
        "--write_card",
        action="store_true",
        help="rewrite README.md from the folder's JSON files with REPO_ID in the loading example "
        "(README.md is written anyway when missing)",
    )
    parser.add_argument(
        "--reference_folder",
        default=None,
        help="rewrite README.md with another run's test metrics beside this model's: that run's folder, on the same "
        "data, split and users (e.g. SASRec, --bt_alpha 0)",
    )
    parser.add_argument(
        "--reference_label", default="SASRec (α = 0)", help="with --reference_folder: its column's header"
    )
    parser.add_argument(
        "--sweep",
        default=None,
        help="rewrite README.md with an alpha sweep on the same data and protocol: a JSON file with `points` "
        "(alpha, hr@10, ndcg@10, coverage@10, seeds) and a `note` (benchmarks/report.py writes alpha_sweep_*.json)",
    )
    parser.add_argument("--dry_run", action="store_true", help="list the files that would be uploaded and stop")
    parser.add_argument(
        "--keep_stale",
        action="store_true",
        help="keep model files of an earlier push that this folder no longer has (default: delete them in the "
        "same commit; files that are not model files are always kept)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    try:
        rewrite = args.write_card or args.reference_folder or args.sweep
        if rewrite or not (Path(args.folder) / "README.md").is_file():
            from .card import read_sweep, write_model_card

            sweep = read_sweep(args.sweep) if args.sweep else {}
            card = write_model_card(
                args.folder,
                repo_id=args.repo_id,
                reference_folder=args.reference_folder,
                reference_label=args.reference_label,
                sweep=sweep.get("points"),
                sweep_note=sweep.get("note"),
            )
            print(f"wrote {card}")
        if args.dry_run:
            for name in prepare_upload_folder(args.folder):
                print(name)
            return 0
        url = push_folder_to_hub(
            args.folder,
            args.repo_id,
            token=args.token,
            private=True if args.private else None,  # without the flag an existing repository keeps its visibility
            commit_message=args.commit_message,
            api=api,
            delete_stale=not args.keep_stale,
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
