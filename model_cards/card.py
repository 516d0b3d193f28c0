"""The model card (`README.md`) of a trained BT-SR folder, built with `huggingface_hub.ModelCard`.

The YAML header carries `library_name`, tags, the weights' license and a `model-index` with the **test** metrics
of this run only, under a dataset name that states the protocol ("MovieLens-1M (leave-one-out, full ranking)"):
numbers from different protocols are not comparable and the card never prints published figures.
The body is rendered from `template.md` (Jinja) with tables prepared here.

Nothing here touches the network: `ModelCard.push_to_hub` / `validate` call a fixed online validator, so the card
is written into the folder and uploaded with it (`model_cards.hub.push_folder_to_hub`).
"""

import json
import logging
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from data_processing.errors import DataError
from data_processing.readers import KNOWN_DATASETS

from .plots import (
    CURVE_FILE,
    TRADEOFF_FILE,
    can_plot,
    draw_tradeoff,
    draw_validation_curve,
    missing_plots_note,
    validation_curve,
)

logger = logging.getLogger(__name__)

__all__ = [
    "build_model_card",
    "write_model_card",
    "read_sweep",
    "data_terms_note",
    "data_license",
    "dataset_display_name",
    "protocol_label",
    "TEMPLATE_PATH",
    "METRIC_FAMILIES",
]

TEMPLATE_PATH = Path(__file__).with_name("template.md")

# results-key family -> display name, in table order. The cut-offs and popularity buckets are read from the results
# themselves (`test_ndcg@10`, `test_ndcg@10_head`, ...): the evaluation that wrote them is their one source.
METRIC_FAMILIES = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR", "coverage": "Coverage"}
_TEST_KEY = re.compile(r"^test_(?P<family>[a-z]+)@(?P<k>\d+)(?:_(?P<bucket>[a-z]+))?$")
# The Hub has no recommendation task: `other` is its task id for the rest (pipeline_tag and model-index task type
# alike); the task is named in `task_name` and the tags, and the pipeline is the custom `sequential-recommendation`.
TASK_TYPE = "other"
PIPELINE_TAG = "other"
TASK_NAME = "Sequential recommendation (next item, full ranking)"
TAGS = ["sequential-recommendation", "recommender-system", "barlow-twins", "sasrec", "btsr", "custom_code"]
# License of weights trained on data of unknown terms (the code's own license; the body says to check the data's).
DEFAULT_LICENSE = "apache-2.0"
# Weights derived from research-only data carry its terms: `license: other` with a name (a Hub slug) and the terms'
# page, matched on the normalised dataset name or file path, first match wins.
_DATA_LICENSES = [
    (
        r"ml-latest-small",
        "movielens-terms",
        "https://files.grouplens.org/datasets/movielens/ml-latest-small-README.html",
    ),
    (r"ml-?100k", "movielens-terms", "https://files.grouplens.org/datasets/movielens/ml-100k-README.txt"),
    (r"ml-?1m", "movielens-terms", "https://files.grouplens.org/datasets/movielens/ml-1m-README.txt"),
    (r"ml-?(10m|20m|25m|32m)|movielens|^ml-", "movielens-terms", "https://grouplens.org/datasets/movielens/"),
    (
        r"amazon|beauty|sports",
        "amazon-reviews-2014-research-only",
        "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
    ),
    (r"lastfm|last\.fm|hetrec", "hetrec-2011-research-only", "https://grouplens.org/datasets/hetrec-2011/"),
]

PAPER_URL = "https://arxiv.org/abs/2510.26407"
BIBTEX = """@misc{razvorotnev2025barlowtwins,
  title         = {Barlow Twins for Sequential Recommendation},
  author        = {Razvorotnev, I. and Munkhoeva, M. and Frolov, E.},
  year          = {2025},
  eprint        = {2510.26407},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2510.26407}
}"""

_PROTOCOLS = {
    "leave_one_out": "leave-one-out, full ranking",
    "temporal": "temporal split, full ranking",
}
_PROTOCOL_DETAILS = {
    "leave_one_out": (
        "Leave-one-out: per user, the last item is the test target (its context is everything before it, the "
        "validation item included), the second-to-last the validation target; training uses all but the last two "
        "items. All users with at least 3 interactions are evaluated."
    ),
    "temporal": (
        "Global temporal split: interactions at or after t* (the 0.95 quantile of all timestamps) form the test "
        "period; the users seen there are evaluated on their last test-period item (validation: the one before), "
        "with the earlier test-period items as context, and none of their interactions are used for training. "
        "Training uses the other users' interactions before t*."
    ),
}

# Names outside the registry (`data_processing.readers.KNOWN_DATASETS`, which gives the named datasets' display
# names and terms), matched as patterns on a normalised name or path: other MovieLens and Amazon releases.
_FAMILIES = [
    (r"ml-?(10m|20m|25m|32m)|movielens|^ml-", KNOWN_DATASETS["ml-1m-raw"].license_note),
    (r"amazon", KNOWN_DATASETS["beauty"].license_note),
]
_UNKNOWN_TERMS = (
    "The terms of the training data were not recorded with this model: check them before using the model or "
    "sharing it, since a model and its item vocabulary are derived from the data."
)


def _normalise(name: str | None) -> str:
    return re.sub(r"[\s_]+", "-", str(name or "").strip().lower())


def _match_dataset(*names: str | None):
    """`(display name, terms)` of a registry dataset named (or whose file is) `names`, `(None, terms)` for a known
    family, else `None`."""
    for name in names:
        key = _normalise(name)
        if not key:
            continue
        for registered, known in KNOWN_DATASETS.items():
            if key in (registered, _normalise(known.display_name)) or key.endswith("/" + known.relative_path.lower()):
                return known.display_name, known.license_note
        for pattern, terms in _FAMILIES:
            if re.search(pattern, key):
                return None, terms
    return None


def data_terms_note(dataset: str | None, source: str | None = None) -> str:
    """The terms of use of a training dataset, by name (or, failing that, by its file path).

    Args:
        dataset: a dataset name such as `"ml-1m"`, `"ml-latest-small"`, `"beauty"`.
        source: the file the data came from, consulted when the name is not recognised.

    Returns:
        One paragraph; a generic reminder to check the data's terms for data it does not know.

    >>> data_terms_note("ml-1m").startswith("MovieLens data")
    True
    >>> "may be redistributed only under these same" in data_terms_note("ml-latest-small")
    True
    >>> data_terms_note("my_log.csv").startswith("The terms of the training data were not recorded")
    True
    """
    match = _match_dataset(dataset, source)
    return match[1] if match else _UNKNOWN_TERMS


def data_license(dataset: str | None, source: str | None = None) -> tuple[str, str | None, str | None]:
    """`(license, license_name, license_link)` for the card's metadata: `other` with the data's terms for weights
    trained on research-only data, else the code's license.

    >>> data_license("ml-1m")
    ('other', 'movielens-terms', 'https://files.grouplens.org/datasets/movielens/ml-1m-README.txt')
    >>> data_license("beauty")[:2], data_license("my_log.csv")
    (('other', 'amazon-reviews-2014-research-only'), ('apache-2.0', None, None))
    """
    for name in (dataset, source):
        key = _normalise(name)
        if not key:
            continue
        for pattern, license_name, link in _DATA_LICENSES:
            if any(re.search(pattern, part) for part in key.split("/")):  # a name, or a folder or file of a path
                return "other", license_name, link
    return DEFAULT_LICENSE, None, None


def dataset_display_name(dataset: str | None, source: str | None = None) -> str:
    """A readable dataset name (`"ml-1m"` -> `"MovieLens-1M"`); unknown names are returned as given.

    >>> dataset_display_name("ml-1m"), dataset_display_name("beauty"), dataset_display_name("my_log.csv")
    ('MovieLens-1M', 'Amazon Beauty', 'my_log.csv')
    """
    match = _match_dataset(dataset)
    if match and match[0]:
        return match[0]
    return str(dataset) if dataset else (Path(source).name if source else "custom data")


def protocol_label(protocol: str | None) -> str:
    """How the evaluation was done, in words fit for a dataset name.

    >>> protocol_label("leave_one_out"), protocol_label("temporal")
    ('leave-one-out, full ranking', 'temporal split, full ranking')
    """
    if protocol in _PROTOCOLS:
        return _PROTOCOLS[protocol]
    return f"{protocol or 'unknown protocol'}, full ranking"


# ----------------------------------------------------------------------------------------------------------------
# Formatting helpers
# ----------------------------------------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v, digits) for v in value) + "]"
    return str(value)


def _count(value) -> str:
    """A count as an integer (`1,931`), also when JSON or an average stored it as a float (`1931.0`)."""
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return _fmt(value)


def _num(value) -> str:
    """A setting as written (`0.2`, `0.05`, `1e-08`, `3,416`, an integral float as an integer), not padded to a fixed
    number of digits."""
    if isinstance(value, bool) or value is None:
        return _fmt(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:g}"
    return _fmt(value)


def _metric_label(family: str, k: int | str) -> str:
    return f"{METRIC_FAMILIES.get(family, family)}@{k}"


def _config_dict(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a BTSRConfig or a dict, got {type(config).__name__}")


def _test_metric_keys(results: dict) -> list[tuple[str, int, str]]:
    """`(family, k, key)` of the overall test metrics present, in table order (family, then K)."""
    found = [
        (m["family"], int(m["k"]), key)
        for key in results
        if (m := _TEST_KEY.match(key))
        and not m["bucket"]
        and m["family"] in METRIC_FAMILIES
        and _is_number(results[key])
    ]
    return sorted(found, key=lambda fkk: (list(METRIC_FAMILIES).index(fkk[0]), fkk[1]))


def _buckets(results: dict) -> list[str]:
    """The popularity buckets of the per-bucket test metrics, in the order the results list them."""
    found = (m["bucket"] for key in results if (m := _TEST_KEY.match(key)) and m["bucket"])
    return list(dict.fromkeys(found))


def _eval_results(results: dict, dataset_type: str, dataset_name: str) -> list[EvalResult]:
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=f"{family}@{k}",
            metric_name=_metric_label(family, k),
            metric_value=results[key],
        )
        for family, k, key in _test_metric_keys(results)
    ]


def _overall_rows(results: dict, reference: dict | None = None) -> tuple[list[dict], bool, bool]:
    rows, any_pop, any_ci = [], False, False
    for family, k, key in _test_metric_keys(results):
        pop = results.get(f"test_mostpop_{family}@{k}")
        ci = results.get(f"{key}_ci95")
        ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
        any_pop |= _is_number(pop)
        any_ci |= bool(ci_text)
        rows.append(
            {
                "metric": _metric_label(family, k),
                "model": _fmt(results[key]),
                "baseline": _fmt(pop),
                "reference": _fmt((reference or {}).get(key)),
                "ci": ci_text,
            }
        )
    return rows, any_pop, any_ci


def _check_reference(results: dict, stats: dict, reference: dict, reference_stats: dict | None = None) -> None:
    """A reference run shares the data, the protocol and the evaluated users, or its column would compare other
    things; a run that does not say which (no protocol or user count) is refused too."""
    mine = (
        results.get("protocol") or stats.get("protocol"),
        results.get("num_test_users", stats.get("num_test_users")),
    )
    theirs = (reference.get("protocol"), reference.get("num_test_users"))
    if None in mine or None in theirs:
        raise DataError(
            f"reference run: protocol and number of test users are needed on both sides to compare (this model: "
            f"{mine}, reference: {theirs})"
        )
    if reference_stats is not None:
        for key in ("dataset", "num_items"):
            if reference_stats.get(key) != stats.get(key):
                raise DataError(
                    f"reference run: {key} {reference_stats.get(key)!r}, this model {stats.get(key)!r}: other data,"
                    " so its column would not be comparable"
                )
    if mine != theirs:
        raise DataError(
            f"reference run: {theirs[1]} test users under protocol {theirs[0]}, this model {mine[1]} under {mine[0]}:"
            " not the same evaluation, so its column would not be comparable"
        )
    if not _test_metric_keys(reference):
        raise DataError("reference run: its results hold no test metrics (test_hr@10, ...)")


def _bucket_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-popularity-bucket table (model, then most-popular, per metric)."""
    buckets = _buckets(results)
    columns = sorted(
        {
            (m["family"], int(m["k"]))
            for key in results
            if (m := _TEST_KEY.match(key)) and m["bucket"] and _is_number(results[key])
        },
        key=lambda fk: (list(METRIC_FAMILIES).index(fk[0]) if fk[0] in METRIC_FAMILIES else 99, fk[1]),
    )
    if not columns:
        return [], []
    header, cells = ["bucket"], []
    for family, k in columns:
        header.append(_metric_label(family, k))
        if any(_is_number(results.get(f"test_mostpop_{family}@{k}_{b}")) for b in buckets):
            header.append(f"most popular {_metric_label(family, k)}")
    users_keys = [f"test_num_users_{b}" for b in buckets]
    with_users = any(_is_number(results.get(k)) for k in users_keys)
    if with_users:
        header.append("test users")
    for bucket in buckets:
        row = [bucket]
        for family, k in columns:
            row.append(_fmt(results.get(f"test_{family}@{k}_{bucket}")))
            if any(_is_number(results.get(f"test_mostpop_{family}@{k}_{b}")) for b in buckets):
                row.append(_fmt(results.get(f"test_mostpop_{family}@{k}_{bucket}")))
        if with_users:
            row.append(_count(results.get(f"test_num_users_{bucket}")))
        cells.append(row)
    return header, cells


_NOT_METRICS = re.compile(r"(runtime|per_second|_loss$|_steps?$|_ci95$|^test_num_users)")


def _other_test_metrics(results: dict) -> list[tuple[str, str]]:
    used = {key for _, _, key in _test_metric_keys(results)}
    bucketed = {key for key in results if (m := _TEST_KEY.match(key)) and m["bucket"]}
    other = []
    for key, value in results.items():
        if not key.startswith("test_") or key in used or key.startswith("test_mostpop_") or key in bucketed:
            continue
        if _NOT_METRICS.search(key) or not _is_number(value):
            continue
        other.append((key[len("test_") :], _fmt(value)))
    return sorted(other)


def _stats_rows(stats: dict) -> list[tuple[str, str]]:
    rows = []

    def add(label, key, formatter=_count):
        if stats.get(key) is not None:
            rows.append((label, formatter(stats[key])))

    add("dataset", "dataset")
    add("split protocol", "protocol", protocol_label)
    add("items in the catalogue", "num_items")
    add("training users", "num_train_users")
    add("training interactions", "num_train_interactions")
    add("training sequences (examples)", "num_train_examples")
    add("validation users", "num_valid_users")
    add("test users", "num_test_users")
    add("evaluation interactions (targets and contexts)", "num_eval_interactions")
    share = stats.get("partner_share")
    if _is_number(share):
        rows.append(("share of training sequences with a same-target partner", f"{share:.4f} ({100 * share:.1f} %)"))
    add("mean labelled positions per training sequence", "mean_labelled_positions", lambda v: _fmt(v, 2))
    add("max_len (most recent items read)", "max_len")
    if stats.get("t_star") is not None:
        t_star = stats["t_star"]
        when = ""
        if _is_number(t_star) and t_star > 1e8:  # unix seconds
            when = " (" + datetime.fromtimestamp(t_star, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + ")"
        rows.append(("split time t*", f"{t_star}{when}"))
    add("t* quantile of timestamps", "quantile", lambda v: _fmt(v, 2))
    add("input rows", "num_input_rows")
    add("input users", "num_input_users")
    add("input items", "num_input_items")
    for reason, count in (stats.get("removed_rows") or {}).items():
        rows.append((f"removed rows: {reason.replace('_', ' ')}", _fmt(count)))
    filtering = stats.get("filtering") or {}
    if isinstance(filtering, dict) and filtering.get("removed_rows"):
        rows.append(
            (
                "removed by filtering (rows / users / items)",
                " / ".join(_fmt(filtering.get(k)) for k in ("removed_rows", "removed_users", "removed_items")),
            )
        )
    return rows


def _hyperparameter_rows(config: dict) -> list[tuple[str, str, str]]:
    loss = config.get("loss_type", "ce")
    alpha, lam = config.get("bt_alpha"), config.get("bt_lambda")
    infonce = config.get("ssl_objective") == "infonce" and bool(alpha)
    rows = [
        (
            "`loss_type`",
            _fmt(loss),
            {
                "ce": "full softmax cross-entropy over the catalogue",
                "sce": "Scalable Cross-Entropy (softmax over hard items found by bucketing)",
                "bce": "binary cross-entropy with sampled negatives",
            }.get(loss, ""),
        ),
        (
            "`bt_alpha` (α)",
            _num(alpha),
            (
                "weight of the InfoNCE loss"
                if infonce
                else "weight of the Barlow Twins loss: accuracy vs catalogue coverage"
            )
            + (" (0 = plain SASRec)" if alpha == 0 else ""),
        ),
    ]
    if infonce:
        rows += [
            ("`infonce_temperature` (τ)", _num(config.get("infonce_temperature")), "softmax temperature"),
            ("`infonce_similarity`", _fmt(config.get("infonce_similarity")), "similarity of two views"),
            ("`view_maker`", _fmt(config.get("view_maker")), "how the two views are made"),
        ]
        if config.get("view_maker") == "ec4srec":
            rows += [
                ("`ec4srec_explainer`", _fmt(config.get("ec4srec_explainer")), "how item importance is scored"),
                ("`ec4srec_positive_ratio`", _num(config.get("ec4srec_positive_ratio")), "share a positive view keeps"),
                (
                    "`ec4srec_negative_ratio`",
                    _num(config.get("ec4srec_negative_ratio")),
                    "share the negative view keeps",
                ),
                (
                    "`ec4srec_negative_weight`",
                    _num(config.get("ec4srec_negative_weight")),
                    "weight of the negative-view loss",
                ),
                (
                    "`ec4srec_update_epochs`",
                    _fmt(config.get("ec4srec_update_epochs")),
                    "epochs after which importance is rescored",
                ),
            ]
    else:
        rows.append(("`bt_lambda` (λ)", _num(lam), "weight of the off-diagonal (decorrelation) term"))
    rows += [
        (
            "`bt_projector_dims`",
            _fmt(config.get("bt_projector_dims")) if config.get("bt_projector_dims") else "none",
            "projector before the BT loss (none = the paper's setting)",
        ),
        ("`hidden_size` (d)", _fmt(config.get("hidden_size")), ""),
        ("`num_hidden_layers`", _fmt(config.get("num_hidden_layers")), ""),
        ("`num_attention_heads`", _fmt(config.get("num_attention_heads")), ""),
        ("`max_position_embeddings` (max_len)", _fmt(config.get("max_position_embeddings")), ""),
        ("`hidden_dropout_prob`", _num(config.get("hidden_dropout_prob")), ""),
        ("`attention_probs_dropout_prob`", _num(config.get("attention_probs_dropout_prob")), ""),
        ("`num_items`", _count(config.get("num_items")), "catalogue size (fixed at training)"),
    ]
    if loss == "sce":
        rows += [
            ("`sce_n_buckets`", _fmt(config.get("sce_n_buckets")), ""),
            ("`sce_bucket_size_x`", _fmt(config.get("sce_bucket_size_x")), ""),
            ("`sce_bucket_size_y`", _fmt(config.get("sce_bucket_size_y")), ""),
            ("`sce_mix_x`", _fmt(config.get("sce_mix_x")), ""),
        ]
    if loss == "bce":
        rows.append(("`bce_num_negatives`", _fmt(config.get("bce_num_negatives")), ""))
    return [r for r in rows if r[1] not in ("-", "None")]


def _training_rows(results: dict) -> list[tuple[str, str]]:
    resumed = results.get("resumed_from_epoch")
    # The Trainer times one session: a resumed run's time is its last session's.
    time_label = (
        f"training time (s) of the last session, which resumed at epoch {_num(resumed)}"
        if resumed
        else "training time (s)"
    )
    rows = []
    for label, key in (
        ("validation NDCG@10 of the selected model", "eval_ndcg@10"),
        ("validation HR@10 of the selected model", "eval_hr@10"),
        ("selected (best) epoch", "best_epoch"),
        ("epochs run", "epochs"),
        ("optimizer steps", "global_step"),
        (time_label, "train_seconds"),
    ):
        value = results.get(key)
        if value is not None:
            rows.append((label, _fmt(value) if key.startswith("eval_") else _num(value)))
    return rows


# The training settings a reader of a card asks for first, from the run's run_settings.json.
_TRAINING_SETTINGS = (
    ("learning_rate", "Adam learning rate"),
    ("adam_beta1", "Adam beta1"),
    ("adam_beta2", "Adam beta2"),
    ("weight_decay", "weight decay"),
    ("max_grad_norm", "gradient clipping (0 = none)"),
    ("lr_scheduler_type", "learning-rate schedule"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation steps"),
    ("num_train_epochs", "epoch cap"),
    ("max_steps", "step cap (-1 = none)"),
    ("patience", "early-stopping patience (evaluations)"),
    ("seed", "seed"),
    ("preset", "preset"),
)


def _settings_rows(settings: dict | None) -> list[tuple[str, str, str]]:
    """`(setting, value, where it came from)` for the main training settings of a run's run_settings.json."""
    if not settings:
        return []
    values, sources = settings.get("settings", {}), settings.get("sources", {})
    rows = []
    for name, meaning in _TRAINING_SETTINGS:
        if name in values and values[name] is not None:
            rows.append((f"`{name}` ({meaning})", _num(values[name]), sources.get(name, "default")))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------


def build_model_card(
    results: dict,
    stats: dict,
    config,
    command: str | None,
    repo_id: str | None = None,
    dataset_label: str | None = None,
    license: str | None = None,
    example_history: list | None = None,
    model_name: str | None = None,
    reference: dict | None = None,
    reference_label: str = "SASRec (α = 0)",
    reference_stats: dict | None = None,
    settings: dict | None = None,
    figures: list[tuple[str, str]] | None = None,
    figures_note: str | None = None,
    sweep: list[dict] | None = None,
    sweep_note: str | None = None,
) -> ModelCard:
    """The model card of one training run.

    Args:
        results: the run's results (`all_results.json`): `test_hr@10`, `test_ndcg@10`, ..., per-bucket
            `test_hr@10_head`, most-popular `test_mostpop_hr@10`, optional `test_hr@10_ci95`, `protocol`, ...
        stats: the data statistics (`dataset_stats.json`): `dataset`, `num_items`, `num_train_users`,
            `partner_share`, `protocol`, ...
        config: the model's `BTSRConfig` (or its dict, as in `config.json`).
        command: the exact command that trained the model.
        repo_id: the Hub repository id (`"org/name"`); used for the title and the loading example.
        dataset_label: display name of the dataset (default: derived from `stats["dataset"]`).
        license: the weights' license in the metadata (default: `other`, with the data's terms as `license_name` and
            `license_link`, for research-only data; else `apache-2.0`); the data's terms are also in the body.
        example_history: raw item ids for the `recommend` example (default: a placeholder).
        model_name: the card's title and model-index name (default: the repo id's name, else `btsr-<dataset>`).
        reference: the results (`all_results.json`) of another run on the same data, split and users, typically
            SASRec with `bt_alpha = 0`; shown as a column beside this model's test metrics. Only its test metrics
            are used: the model-index holds this run's alone.
        reference_label: the column's header, naming what differs (default `"SASRec (α = 0)"`).
        reference_stats: the reference run's `dataset_stats.json`; when given, its dataset and catalogue size must
            be this run's.
        settings: the run's `run_settings.json` (every setting and its source), for the training-settings table.
        figures: `(file name, caption)` of PNG files beside the card (see :mod:`model_cards.plots`).
        figures_note: a sentence on figures that were not drawn (and why).
        sweep: an alpha sweep on the same data and protocol: dicts with `alpha`, `ndcg@10`, `coverage@10` (and
            optionally `hr@10`, `seeds`), shown as a table.
        sweep_note: where the sweep comes from (runs, seeds, evaluation rule), printed under its table.

    Returns:
        A `huggingface_hub.ModelCard`; `str(card)` is the README.md text.

    Raises:
        DataError: when `results` holds no overall test metric (`test_hr@10`, ...), or `reference` was
            evaluated under another protocol or on another number of users.
    """
    results, stats, config = dict(results or {}), dict(stats or {}), _config_dict(config)
    if not _test_metric_keys(results):
        raise DataError("the results hold no test metrics (test_hr@10, test_ndcg@10, ...): nothing to report")
    protocol = results.get("protocol") or stats.get("protocol")
    dataset = stats.get("dataset")
    display = dataset_label or dataset_display_name(dataset, stats.get("source"))
    dataset_type = _normalise(dataset) if dataset else "custom"
    dataset_name = f"{display} ({protocol_label(protocol)})"
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else f"btsr-{dataset_type}")
    alpha = config.get("bt_alpha")

    bert4rec = config.get("backbone") == "bert4rec"
    license_name = license_link = None
    if license is None:
        license, license_name, license_link = data_license(dataset, stats.get("source"))
    # No `datasets`: none of the named datasets is a Hub dataset id (their terms forbid re-hosting); the body names it.
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        license_name=license_name,
        license_link=license_link,
        tags=list(TAGS) + (["bert4rec"] if bert4rec else []),
        eval_results=_eval_results(results, dataset_type, dataset_name),
    )
    if reference is not None:
        _check_reference(results, stats, reference, reference_stats)
    overall, with_pop, with_ci = _overall_rows(results, reference)
    bucket_header, bucket_rows = _bucket_table(results)
    load_target = repo_id or "path/to/this/model_folder"
    history = example_history if example_history else None
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        title=model_name,
        repo_id=repo_id,
        load_target=load_target,
        dataset_display=display,
        dataset_name=dataset_name,
        protocol=protocol,
        protocol_text=protocol_label(protocol),
        protocol_details=_PROTOCOL_DETAILS.get(protocol, ""),
        is_sasrec=alpha == 0,
        is_bert4rec=bert4rec,
        backbone_name="BERT4Rec" if bert4rec else "SASRec",
        mlm_probability=_num(config.get("mlm_probability")) if bert4rec else "-",
        is_infonce=config.get("ssl_objective") == "infonce" and bool(alpha),
        view_maker=config.get("view_maker", "same_target"),
        temperature=_num(config.get("infonce_temperature")) if config.get("infonce_temperature") is not None else "-",
        alpha=_num(alpha) if alpha is not None else "-",
        lam=_num(config.get("bt_lambda")) if config.get("bt_lambda") is not None else "-",
        loss_type=config.get("loss_type", "ce"),
        hidden_size=config.get("hidden_size"),
        num_layers=config.get("num_hidden_layers"),
        num_heads=config.get("num_attention_heads"),
        max_len=config.get("max_position_embeddings"),
        num_items=_fmt(config.get("num_items") or stats.get("num_items")),
        hyperparameters=_hyperparameter_rows(config),
        stats_rows=_stats_rows(stats),
        num_test_users=_fmt(results.get("num_test_users", stats.get("num_test_users"))),
        overall_rows=overall,
        with_pop=with_pop,
        with_ci=with_ci,
        with_reference=reference is not None,
        reference_label=reference_label,
        reference_command=(reference or {}).get("command"),
        bucket_header=bucket_header,
        bucket_rows=bucket_rows,
        other_metrics=_other_test_metrics(results),
        training_rows=_training_rows(results),
        settings_rows=_settings_rows(settings),
        figures=list(figures or []),
        figures_note=figures_note,
        sweep_rows=_sweep_rows(sweep),
        sweep_note=sweep_note,
        command=command.strip() if command else None,
        example_history=repr(list(history)) if history else "[1, 2, 3]",
        example_is_placeholder=not history,
        data_terms=data_terms_note(dataset, stats.get("source")),
        license=license,
        license_name=license_name,
        license_link=license_link,
        paper_url=PAPER_URL,
        bibtex=BIBTEX,
    )


def read_sweep(path) -> dict:
    """An alpha sweep file (`points`: dicts with `alpha`, `ndcg@10`, `coverage@10`, optional `hr@10`, `seeds`; an
    optional `note`), checked point by point."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such sweep file (benchmarks/report.py writes alpha_sweep_<dataset>.json)")
    data = _read_json(Path(path).parent, Path(path).name)
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(points, list) or not points:
        raise DataError(f"{path}: an alpha sweep needs a non-empty `points` list")
    for k, point in enumerate(points):
        absent = [key for key in ("alpha", "ndcg@10", "coverage@10") if not _is_number((point or {}).get(key))]
        if absent:
            raise DataError(f"{path}: point {k} lacks a number for {', '.join(absent)}")
    return {"points": points, "note": data.get("note")}


def _sweep_rows(sweep: list[dict] | None) -> list[tuple[str, str, str, str, str]]:
    """Rows `(alpha, HR@10, NDCG@10, Coverage@10, seeds)` of an alpha sweep, by alpha."""
    rows = []
    for point in sorted(sweep or [], key=lambda p: p["alpha"]):
        rows.append(
            (
                _num(point["alpha"]),
                _fmt(point["hr@10"]) if "hr@10" in point else "-",
                _fmt(point["ndcg@10"]),
                _fmt(point["coverage@10"]),
                _count(point["seeds"]) if "seeds" in point else "-",
            )
        )
    return rows


def _draw_figures(folder: Path, results: dict, sweep: list[dict] | None, alpha) -> tuple[list, str | None]:
    """Draws the card's PNG figures into `folder` (see :mod:`model_cards.plots`): `(figures, note)`. A figure that
    cannot be drawn is named in the note, and an old file of it is removed so that it is never uploaded stale."""
    wanted = []
    curve = validation_curve(folder, results)
    if curve:
        best = results.get("best_epoch")
        caption = "Validation NDCG@10 by epoch" + (f"; the model is the one of epoch {_num(best)}" if best else "")
        wanted.append((CURVE_FILE, caption, "validation curve", lambda p: draw_validation_curve(curve, p, best)))
    if sweep:
        caption = "Test NDCG@10 against Coverage@10 as alpha varies (same data and protocol)"
        wanted.append((TRADEOFF_FILE, caption, "alpha trade-off", lambda p: draw_tradeoff(sweep, p, alpha)))
    figures, missing = [], []
    for name in (CURVE_FILE, TRADEOFF_FILE):
        if name not in [w[0] for w in wanted]:
            (folder / name).unlink(missing_ok=True)
    for name, caption, label, draw in wanted:
        if can_plot():
            tmp = folder / f".{name}.{os.getpid()}.tmp.png"
            draw(tmp)
            os.replace(tmp, folder / name)
            figures.append((name, caption))
        else:
            (folder / name).unlink(missing_ok=True)
            missing.append(label)
    if missing:
        logger.warning(missing_plots_note(missing))
    return figures, (missing_plots_note(missing) if missing else None)


def _read_json(folder: Path, name: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise DataError(f"{path}: missing; the model card needs {name} (written by train.py)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from error


def _example_history(folder: Path, n: int = 3) -> list | None:
    """The `n` most popular raw ids of the folder's `item_vocab.json` (a history the model surely knows)."""
    path = folder / "item_vocab.json"
    if not path.is_file():
        return None
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    ids, counts = list(vocab.get("item_ids") or []), vocab.get("item_counts")
    if counts and len(counts) == len(ids):
        order = sorted(range(len(ids)), key=lambda j: -counts[j])
        ids = [ids[j] for j in order]
    return ids[:n] or None


def write_model_card(
    folder,
    results: dict | None = None,
    stats: dict | None = None,
    command: str | None = None,
    repo_id: str | None = None,
    **kwargs,
) -> Path:
    """Writes `folder/README.md` for a finished model folder and returns its path.

    `results`, `stats` and the config are read from the folder's `all_results.json`, `dataset_stats.json` and
    `config.json` when not given; `command` falls back to a `"command"` entry of the results. Other keyword
    arguments go to :func:`build_model_card` (`dataset_label`, `license`, `config`, `example_history`,
    `reference`, `reference_label`, `sweep`); `reference_folder` reads `reference` and `reference_stats` from
    another run's folder. The figures (the validation curve; the alpha trade-off when `sweep` is given) are drawn
    as PNG files beside the card when matplotlib is installed; otherwise the card says which were not drawn.
    The file is replaced atomically; nothing is sent anywhere.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a model folder (no such directory)")
    results = _read_json(folder, "all_results.json") if results is None else results
    stats = _read_json(folder, "dataset_stats.json") if stats is None else stats
    config = kwargs.pop("config", None)
    config = _read_json(folder, "config.json") if config is None else config
    reference_folder = kwargs.pop("reference_folder", None)
    if reference_folder is not None:
        kwargs["reference"] = _read_json(Path(reference_folder), "all_results.json")
        kwargs["reference_stats"] = _read_json(Path(reference_folder), "dataset_stats.json")
    command = command or results.get("command") or stats.get("command")
    kwargs.setdefault("example_history", _example_history(folder))
    if "settings" not in kwargs and (folder / "run_settings.json").is_file():  # folders from before it lack it
        kwargs["settings"] = _read_json(folder, "run_settings.json")
    # A folder named after the model (outputs/btsr-ml1m) names the card when there is no repo id yet.
    if repo_id is None and folder.resolve().name.startswith("btsr"):
        kwargs.setdefault("model_name", folder.resolve().name)
    alpha = (config if isinstance(config, dict) else _config_dict(config)).get("bt_alpha")
    kwargs["figures"], kwargs["figures_note"] = _draw_figures(folder, results, kwargs.get("sweep"), alpha)
    card = build_model_card(results, stats, config, command, repo_id=repo_id, **kwargs)
    path = folder / "README.md"
    tmp = folder / f".README.md.{os.getpid()}.tmp"
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)
    return path
