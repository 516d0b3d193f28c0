"""The settings of `train.py`: one parser, presets and config files layered as its defaults, checks before any data
is read, and the resolved settings saved with where each came from.

Precedence: command line > `--config FILE` > preset (`--preset`, else the dataset's own) > the defaults below.
The model settings are `BTSRConfig`'s own fields (`--max_len` is `max_position_embeddings`; `--dropout` sets both
dropouts); the training settings are `transformers.TrainingArguments` with this project's defaults (the authors'
Adam 1e-3, betas 0.9 / 0.98, no clipping, no decay, a constant rate). Abbreviated or unknown flags are errors.
"""

import argparse
import difflib
import functools
import importlib.util
import json
import math
import os
import re
import shlex
import sys
import types
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Literal, Union, get_args, get_origin, get_type_hints

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool
from transformers.trainer_utils import IntervalStrategy, SchedulerType

from data_processing import PROTOCOLS, DataError
from data_processing.builtins import to_builtin
from data_processing.readers import DATA_FORMATS, KNOWN_DATASETS

from .configuration_btsr import SAMPLED_LOSS_TYPES, BTSRConfig
from .evaluation import DEFAULT_KS, selectable_metrics

__all__ = [
    "ModelArguments",
    "DataArguments",
    "BTSRTrainingArguments",
    "HubArguments",
    "PRESETS",
    "PRESET_CAVEATS",
    "DATASET_PRESETS",
    "HUB_SETTINGS",
    "RUN_SETTINGS_NAME",
    "SettingsError",
    "ResolvedSettings",
    "TRAINING_FLAGS_SHOWN",
    "build_parser",
    "parse_arguments",
    "preset_caveat",
    "run_settings",
    "resolve_settings",
    "config_error_as_flags",
    "config_kwargs",
    "settings_command",
    "write_run_settings",
]

RUN_SETTINGS_NAME = "run_settings.json"


class SettingsError(DataError):
    """A setting that cannot be used; the message names the flag, file or key, on one line."""


# ---------------------------------------------------------------------------------------------------------------------
# Model settings, derived from BTSRConfig's fields
# ---------------------------------------------------------------------------------------------------------------------

_FROM_DATA = ("num_items",)  # set from the data's catalogue, never by hand
_RENAMED = {"max_position_embeddings": "max_len"}
_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob")  # both set by --dropout, as the reference does
_SSL_PREFIXES = ("bt_", "ssl_", "infonce_", "view_", "cl4srec_", "ec4srec_")


def _flag_type(annotation):
    """The parser's type for a config annotation: `float | int` (kept for JSON round trips) reads as a float."""
    if _is_union(annotation) and set(get_args(annotation)) == {float, int}:
        return float
    return annotation


def _is_union(annotation) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _model_fields() -> list[tuple[str, object, object]]:
    hints = BTSRConfig.__dict__["__annotations__"]  # the fields BTSRConfig declares, not PreTrainedConfig's
    declared = {f.name: f for f in fields(BTSRConfig)}
    specs = []
    for name in hints:
        if name in _FROM_DATA or name == _DROPOUTS[1]:
            continue
        source = declared[name]
        help_text = source.metadata.get("help", "")
        flag = "dropout" if name == _DROPOUTS[0] else _RENAMED.get(name, name)
        if flag == "dropout":
            help_text = "Dropout on embeddings, feed-forward and attention weights (both of the config's dropouts)."
        metadata = {"help": help_text}
        if source.default is MISSING:  # a list: each instance gets its own
            spec = field(default_factory=source.default_factory, metadata=metadata)
        else:
            spec = field(default=source.default, metadata=metadata)
        specs.append((flag, _flag_type(hints[name]), spec))
    return specs


def _is_ssl(flag: str) -> bool:
    return flag.startswith(_SSL_PREFIXES)


_MODEL_SPECS = _model_fields()
ModelArguments = make_dataclass("ModelArguments", _MODEL_SPECS)
ModelArguments.__doc__ = "BT-SR model, loss and self-supervised settings: `BTSRConfig`'s fields (see `config_kwargs`)."
# The same fields in two groups, for --help only.
_ArchitectureArguments = make_dataclass(
    "ArchitectureArguments", [s for s in _MODEL_SPECS if not _is_ssl(s[0])], namespace={"_argument_group_name": "model"}
)
_SSLArguments = make_dataclass(
    "SSLArguments",
    [s for s in _MODEL_SPECS if _is_ssl(s[0])],
    namespace={"_argument_group_name": "self-supervised loss (Barlow Twins, or InfoNCE for CL4SRec / DuoRec)"},
)


def config_error_as_flags(message: str) -> str:
    """A `BTSRConfig` validation message in the command line's terms: each config field it names becomes its flag
    (`max_position_embeddings` is `--max_len`, both dropouts `--dropout`) and `name='value'` becomes `--flag value`,
    so a user of `train.py` reads the flag to change.

    >>> config_error_as_flags("backbone='bert4rec' needs max_position_embeddings >= 2, got loss_type='bce'")
    '--backbone bert4rec needs --max_len >= 2, got --loss_type bce'
    """
    declared = [name for name in BTSRConfig.__dict__["__annotations__"] if name not in _FROM_DATA]
    flags = {name: _RENAMED.get(name, "dropout" if name in _DROPOUTS else name) for name in declared}
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))

    def as_flag(match):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        return f"--{flags[match.group(1)]}" + (f" {value}" if value is not None else "")

    return re.sub(rf"(?<![\w-])({names})(?:='([^']*)'|=([\w.\-]+))?(?![\w])", as_flag, message)


def config_kwargs(model_args) -> dict:
    """`BTSRConfig` keyword arguments from `ModelArguments` (everything but `num_items`)."""
    kwargs = {}
    config_name = {flag: name for name, flag in _RENAMED.items()}
    for spec in fields(ModelArguments):
        value = getattr(model_args, spec.name)
        if spec.name == "dropout":
            kwargs.update(dict.fromkeys(_DROPOUTS, value))
        else:
            kwargs[config_name.get(spec.name, spec.name)] = value
    return kwargs


# ---------------------------------------------------------------------------------------------------------------------
# Data, training and Hub settings
# ---------------------------------------------------------------------------------------------------------------------

DatasetName = Literal[tuple(KNOWN_DATASETS)]  # type: ignore[valid-type]


@dataclass
class DataArguments:
    """Data, protocol and run settings."""

    _argument_group_name = "data and protocol"

    dataset: DatasetName = field(
        default="ml-latest-small",
        metadata={
            "help": "Named dataset (ml-latest-small ships with the package; the others are read from --data_root)."
        },
    )
    data_path: str | None = field(
        default=None,
        metadata={"help": "Your interaction file (instead of --dataset; no preset applies unless --preset names one)."},
    )
    data_format: Literal[DATA_FORMATS] | None = field(  # type: ignore[valid-type]
        default=None, metadata={"help": "Format of --data_path (default: guessed from the file name)."}
    )
    data_root: str | None = field(
        default=None, metadata={"help": "Folder of the named datasets (default: $BTSR_DATA_ROOT, else ../shared/data)."}
    )
    download: bool = field(
        default=False,
        metadata={"help": "With --dataset ml-1m-raw: fetch GroupLens' ml-1m.zip (verified) into the cache."},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cache for downloads and the datasets.map partner index (~/.cache/btsr)."}
    )
    split: Literal[PROTOCOLS] = field(default="leave_one_out", metadata={"help": "Evaluation protocol."})  # type: ignore[valid-type]
    holdout_fraction: float = field(
        default=0.1, metadata={"help": "--split user_holdout: share of users held out of training and evaluated."}
    )
    holdout_seed: int = field(
        default=0, metadata={"help": "--split user_holdout: seed of which users are held out (not the training seed)."}
    )
    user_column: str = field(default="user_id", metadata={"help": "User id column of --data_path."})
    item_column: str = field(default="item_id", metadata={"help": "Item id column of --data_path."})
    timestamp_column: str = field(default="timestamp", metadata={"help": "Timestamp column of --data_path."})
    min_users_per_item: int = field(default=0, metadata={"help": "Keep items with at least this many users."})
    min_items_per_user: int = field(default=0, metadata={"help": "Keep users with at least this many items."})
    k_core: bool = field(default=False, metadata={"help": "Iterate the two minimums until stable."})
    patience: int = field(default=10, metadata={"help": "Early stopping: evaluations without a better NDCG@10."})
    eval_context_len: int | None = field(
        default=None,
        metadata={
            "help": "Validation and test: the model reads only each user's last N items (default: --max_len); "
            "seen-item exclusion still covers the whole history."
        },
    )
    preset: str | None = field(default=None, metadata={"help": "Hyper-parameter preset (default: the dataset's own)."})
    config: str | None = field(
        default=None, metadata={"help": "YAML or JSON file of settings (a run's run_settings.json works too)."}
    )


@dataclass
class BTSRTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the reference's optimiser and this project's loop as defaults."""

    _argument_group_name = "training (every transformers.TrainingArguments flag; these defaults are the project's)"

    output_dir: str | None = field(default="outputs/btsr", metadata={"help": "Folder of the model and its results."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate (the reference's)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam beta1."})
    adam_beta2: float = field(default=0.98, metadata={"help": "Adam beta2 (the reference's 0.98)."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping norm; 0 = none (the reference)."})
    lr_scheduler_type: SchedulerType | str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Sequences per batch and device."})
    per_device_eval_batch_size: int = field(
        default=256, metadata={"help": "Users scored at once in evaluation (memory and speed only, not results)."}
    )
    num_train_epochs: float = field(default=50, metadata={"help": "Most epochs (early stopping may end sooner)."})
    eval_strategy: IntervalStrategy | str = field(default="epoch", metadata={"help": "When to evaluate."})
    save_strategy: IntervalStrategy | str = field(default="epoch", metadata={"help": "When to checkpoint."})
    logging_strategy: IntervalStrategy | str = field(default="epoch", metadata={"help": "When to log the loss."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one is kept too)."})
    load_best_model_at_end: bool | None = field(
        default=None, metadata={"help": "Select the best validation checkpoint (default: on whenever evaluating)."}
    )
    metric_for_best_model: str | None = field(default="eval_ndcg@10", metadata={"help": "Selection metric."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Higher selection metric is better."})
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Trackers: none, tensorboard (pip install 'btsr[tensorboard]'), ..."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the weights, the batches and every random draw."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept off: pair columns feed the model."})
    disable_tqdm: bool | None = field(default=False, metadata={"help": "Turn the progress bar off."})
    dataloader_pin_memory: bool | None = field(
        default=None, metadata={"help": "Pin host memory for the data loader (default: only with an accelerator)."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "DDP's unused-parameter search (every parameter is used: off)."}
    )


@dataclass
class HubArguments:
    """Publishing: `train.py` uploads the finished model folder once, with its card (never the Trainer's)."""

    _argument_group_name = "Hugging Face Hub"

    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished model folder and its card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id, org/name."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repository private."})
    hub_token: str | None = field(default=None, metadata={"help": "Token (default: the one `hf auth login` saved)."})
    hub_strategy: Literal["end", "every_save"] = field(
        default="end",
        metadata={
            "help": "When to upload: end (once, the finished folder and its card) or every_save (also each "
            "checkpoint's model files as it is saved)."
        },
    )
    hub_revision: str | None = field(default=None, metadata={"help": "Branch to upload to (created if missing)."})


HUB_SETTINGS = tuple(f.name for f in fields(HubArguments))
HUB_STRATEGIES = get_args(HubArguments.__annotations__["hub_strategy"])
_GROUPS = (_ArchitectureArguments, _SSLArguments, DataArguments, BTSRTrainingArguments, HubArguments)
# Left out of run_settings.json: a secret, and how this invocation ran rather than what it trains (a rerun from
# the file starts afresh).
_NOT_SAVED = ("hub_token", "resume_from_checkpoint")


# ---------------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------------

# Each named dataset's reference settings (BT-SR.md section 4, and the benchmark grids for the datasets the paper
# does not tune): `--dataset NAME` trains with these unless told otherwise.
DATASET_PRESETS: dict[str, dict] = {
    "ml-latest-small": {
        "loss_type": "ce",
        "bt_alpha": 0.2,
        "bt_lambda": 0.05,
        "dropout": 0.2,
        "per_device_train_batch_size": 32,
        "num_train_epochs": 20,
        "patience": 10,
    },
    "ml-100k": {
        "split": "temporal",
        "loss_type": "ce",
        "bt_alpha": 0.2,
        "bt_lambda": 0.05,
        "dropout": 0.1,
        "per_device_train_batch_size": 128,
        "num_train_epochs": 200,
        "patience": 30,
    },
    "ml-1m": {
        "loss_type": "ce",
        "per_device_train_batch_size": 256,
        "dropout": 0.1,
        "bt_alpha": 0.2,
        "bt_lambda": 0.05,
        "num_train_epochs": 200,
        "patience": 30,
    },
    "beauty": {
        "loss_type": "sce",
        "per_device_train_batch_size": 1024,
        "dropout": 0.6,
        "bt_alpha": 0.25,
        "bt_lambda": 0.1,
        "sce_n_buckets": 202,
        "sce_bucket_size_x": 202,
        "sce_bucket_size_y": 256,
        "sce_mix_x": False,
        "num_train_epochs": 300,
        "patience": 30,
    },
    "sports": {
        "loss_type": "sce",
        "per_device_train_batch_size": 1024,
        "dropout": 0.6,
        "bt_alpha": 0.25,
        "bt_lambda": 0.1,
        "num_train_epochs": 300,
        "patience": 30,
    },
    "lastfm": {
        "loss_type": "ce",
        "per_device_train_batch_size": 256,
        "dropout": 0.1,
        "bt_alpha": 0.2,
        "bt_lambda": 0.05,
        "num_train_epochs": 200,
        "patience": 30,
    },
}
DATASET_PRESETS["ml-1m-raw"] = dict(DATASET_PRESETS["ml-1m"])  # the same data with its timestamps: the same settings

# Presets beyond the named datasets: the flagship, the paper's settings for datasets you bring yourself
# (`--preset yelp --data_path yelp.csv`), and the contrastive baselines.
_OTHER_PRESETS: dict[str, dict] = {
    "btsr-ml1m": {**DATASET_PRESETS["ml-1m"], "dataset": "ml-1m", "split": "leave_one_out"},
    "yelp": {
        "loss_type": "sce",
        "per_device_train_batch_size": 512,
        "dropout": 0.3,
        "bt_alpha": 0.1,
        "bt_lambda": 0.05,
        "sce_n_buckets": 470,
        "sce_bucket_size_x": 470,
        "sce_bucket_size_y": 1024,
        "sce_mix_x": False,
        "num_train_epochs": 300,
        "patience": 10,
    },
    "gowalla": {
        "loss_type": "sce",
        "per_device_train_batch_size": 2048,
        "dropout": 0.3,
        "bt_alpha": 0.25,
        "bt_lambda": 0.05,
        "sce_n_buckets": 882,
        "sce_bucket_size_x": 882,
        "sce_bucket_size_y": 256,
        "sce_mix_x": False,
        "num_train_epochs": 300,
        "patience": 10,
    },
    "kindle-store": {
        "loss_type": "sce",
        "per_device_train_batch_size": 2048,
        "dropout": 0.3,
        "bt_alpha": 0.08,
        "bt_lambda": 0.07,
        "sce_n_buckets": 658,
        "sce_bucket_size_x": 658,
        "sce_bucket_size_y": 256,
        "sce_mix_x": True,
        "num_train_epochs": 300,
        "patience": 10,
    },
    # Contrastive baselines of the BT-SR paper, with btsr-ml1m's data and training settings (full CE):
    # - CL4SRec (Xie et al., ICDE 2022): InfoNCE between two augmented views (crop / mask / reorder), lambda 0.1,
    #   tau 1.0, dot similarity, eta 0.6, gamma 0.3, beta 0.6 (the RecBole-based CL4SRec in the DuoRec code).
    # - DuoRec (Qiu et al., WSDM 2022), "us_x": a second dropout pass and a same-target partner, lambda 0.1, tau 1.0.
    # How they fare in this harness: benchmarks/results/accuracy.md and contrastive_probe.json.
    "cl4srec": {
        **DATASET_PRESETS["ml-1m"],
        "dataset": "ml-1m",
        "split": "leave_one_out",
        "ssl_objective": "infonce",
        "view_maker": "cl4srec",
        "bt_alpha": 0.1,
        "infonce_temperature": 1.0,
        "infonce_similarity": "dot",
        "cl4srec_crop_ratio": 0.6,
        "cl4srec_mask_ratio": 0.3,
        "cl4srec_reorder_ratio": 0.6,
    },
    "duorec": {
        **DATASET_PRESETS["ml-1m"],
        "dataset": "ml-1m",
        "split": "leave_one_out",
        "ssl_objective": "infonce",
        "view_maker": "same_target+dropout",
        "bt_alpha": 0.1,
        "infonce_temperature": 1.0,
        "infonce_similarity": "dot",
    },
    # EC4SRec (Wang et al., CIKM 2022) on CL4SRec, as the authors' code configures it (demoleiwang/EC4SRec,
    # CL4SRec_XAUG.SASRec.ml-100k.yaml and its trainer): saliency scores after epochs 15 and 30, pos_r 0.3,
    # neg_r 0.7, InfoNCE between the positive views at 0.1 (tau 1.0, dot), the negative-view loss at 0.05 (tau 0.1).
    "ec4srec": {
        **DATASET_PRESETS["ml-1m"],
        "dataset": "ml-1m",
        "split": "leave_one_out",
        "ssl_objective": "infonce",
        "view_maker": "ec4srec",
        "bt_alpha": 0.1,
        "infonce_temperature": 1.0,
        "infonce_similarity": "dot",
        "ec4srec_explainer": "saliency",
        "ec4srec_positive_ratio": 0.3,
        "ec4srec_negative_ratio": 0.7,
        "ec4srec_negative_weight": 0.05,
        "ec4srec_negative_temperature": 0.1,
        "ec4srec_update_epochs": [15, 30],
    },
    # BERT4Rec (Sun et al., CIKM 2019) as the RecSys 2023 reproduction trains it on ML-1M (Klenitskiy & Vasilev,
    # "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?": transformers' BertModel, max_len 200,
    # d 64, 2 layers, 2 heads, inner width 256, GELU, normal(0.02) initialisation, LayerNorm eps 1e-12, dropout
    # 0.1, mask probability 0.2, batch 128, Adam 1e-3, 200 epochs, patience 20, full CE on the masked items).
    "bert4rec": {
        **DATASET_PRESETS["ml-1m"],
        "dataset": "ml-1m",
        "split": "leave_one_out",
        "backbone": "bert4rec",
        "mlm_probability": 0.2,
        "block_layout": "post_ln",
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "hidden_act": "gelu",
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "dropout": 0.1,
        "per_device_train_batch_size": 128,
        "num_train_epochs": 200,
        "patience": 20,
        "bt_alpha": 0.0,
    },
}
# BT-SR on the BERT4Rec backbone: the same, plus the Barlow Twins term at ML-1M's alpha and lambda.
_OTHER_PRESETS["bert4rec-bt"] = {**_OTHER_PRESETS["bert4rec"], "bt_alpha": 0.2, "bt_lambda": 0.05}

PRESETS: dict[str, dict] = {**DATASET_PRESETS, **_OTHER_PRESETS}

PRESET_SUMMARIES = {
    "btsr-ml1m": "the flagship model: BT-SR on ML-1M, leave-one-out",
    "yelp": "the paper's Yelp settings, for your own copy (--data_path)",
    "gowalla": "the paper's Gowalla settings, for your own copy (--data_path)",
    "kindle-store": "the paper's Kindle Store settings, for your own copy (--data_path)",
    "cl4srec": "the CL4SRec baseline (InfoNCE on augmented views) on ML-1M",
    "duorec": "the DuoRec baseline (InfoNCE on dropout and same-target views) on ML-1M",
    "ec4srec": "the EC4SRec baseline (InfoNCE on explanation-guided views) on ML-1M",
    "bert4rec": "the BERT4Rec baseline (bidirectional, masked items) on ML-1M, the RecSys 2023 reproduction's settings",
    "bert4rec-bt": "BT-SR on the BERT4Rec backbone (alpha 0.2) on ML-1M",
}

_INFONCE_BALANCE = (
    "it trains whole sequences at the papers' InfoNCE weight, which here weighs InfoNCE about 100x more per CE "
    "target (on ML-1M) than their RecBole code does, and is measured far below SASRec-CE in this harness; "
    "RecBole's balance is --bt_alpha 0.001, or --prediction_span random_prefix --ssl_view_span random_prefix "
    "(benchmarks/results/contrastive_findings.md)"
)
# What a baseline preset is measured to do here, said when a run uses it as it stands (the settings named keep the
# preset's values): a user comparing against it should know before the hour of training, not from a findings file.
PRESET_CAVEATS: dict[str, tuple[dict, str]] = {
    "cl4srec": ({"bt_alpha": 0.1, "prediction_span": "sequence"}, _INFONCE_BALANCE),
    "duorec": ({"bt_alpha": 0.1, "prediction_span": "sequence"}, _INFONCE_BALANCE),
    "ec4srec": (
        {"infonce_similarity": "dot", "ec4srec_negative_weight": 0.05},
        "its inner-product negative-view loss collapses the users' states after the first explanation in this "
        "harness (measured on ML-1M and LastFM); --infonce_similarity cosine avoids it, a departure from the "
        "authors' code (benchmarks/results/contrastive_findings.md#ec4srec-issue-26)",
    ),
}


def preset_caveat(values: dict) -> str | None:
    """The note :data:`PRESET_CAVEATS` keeps for the run's preset, if the run uses it as it stands.

    >>> preset_caveat({"preset": "ec4srec", "infonce_similarity": "cosine", "ec4srec_negative_weight": 0.05}) is None
    True
    """
    preset = values.get("preset")
    if preset not in PRESET_CAVEATS:
        return None
    unchanged, text = PRESET_CAVEATS[preset]
    if any(getattr(values.get(k), "value", values.get(k)) != v for k, v in unchanged.items()):
        return None
    return f"--preset {preset}: {text}"


def _preset_line(name: str) -> str:
    summary = PRESET_SUMMARIES.get(name) or f"--dataset {name}'s defaults"
    settings = PRESETS[name]
    keys = ("loss_type", "bt_alpha", "dropout", "per_device_train_batch_size", "num_train_epochs")
    shown = ", ".join(f"{k}={settings[k]}" for k in keys if k in settings)
    return f"  {name:<16}{summary} ({shown})"


# ---------------------------------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------------------------------

_DESCRIPTION = """Train BT-SR (or SASRec with --bt_alpha 0) and report full-ranking metrics.

  python train.py                                          BT-SR on the embedded ml-latest-small
  python train.py --dataset ml-1m --data_root DIR          a named dataset with its reference settings
  python train.py --data_path log.csv --bt_alpha 0.1       your own log (columns user_id, item_id[, timestamp])
  python train.py --config outputs/btsr/run_settings.json  rerun a finished run with its exact settings

Settings resolve as command line > --config file > preset > defaults. The defaults below are those of the
dataset (and preset) on this command line: `python train.py --dataset beauty --help` shows Beauty's."""

# The training flags most runs touch; the rest of TrainingArguments is listed by --help_all.
TRAINING_FLAGS_SHOWN = (
    "output_dir",
    "learning_rate",
    "adam_beta1",
    "adam_beta2",
    "weight_decay",
    "max_grad_norm",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "eval_strategy",
    "save_strategy",
    "save_total_limit",
    "load_best_model_at_end",
    "seed",
    "use_cpu",
    "bf16",
    "fp16",
    "report_to",
    "disable_tqdm",
    "resume_from_checkpoint",
    "dataloader_num_workers",
    "torch_compile",
    "logging_strategy",
)


class _Parser(HfArgumentParser):
    """HfArgumentParser that fails in one line (no usage block) and keeps track of the options it builds."""

    def __init__(self, *args, **kwargs):
        self.built_actions: list[argparse.Action] = []
        super().__init__(*args, **kwargs)

    def add_argument_group(self, *args, **kwargs):
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument

        def add_argument(*names, **options):
            action = add(*names, **options)
            self.built_actions.append(action)
            return action

        group.add_argument = add_argument
        return group

    def error(self, message):
        raise SettingsError(message)


def _command_name() -> str:
    """How the user started the training: the installed `btsr-train`, or `python train.py` in a checkout."""
    return "btsr-train" if os.path.basename(sys.argv[0]) == "btsr-train" else "python train.py"


def build_parser(help_all: bool = False) -> _Parser:
    # conflict_handler="resolve": HubArguments takes the hub flags over from TrainingArguments, so they are listed
    # (and parsed) once, in their own group.
    parser = _Parser(
        _GROUPS,
        prog=_command_name(),
        description=_DESCRIPTION,
        epilog="presets (--preset NAME; each dataset's applies by itself):\n"
        + "\n".join(_preset_line(name) for name in PRESETS),
        usage=f"{_command_name()} [--flag value ...]   (flags by group below)",
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
        conflict_handler="resolve",
    )
    parser.add_argument("--help_all", action="store_true", help="Also list every other TrainingArguments flag.")
    training = {f.name for f in fields(BTSRTrainingArguments)} - set(HUB_SETTINGS)
    hints = get_type_hints(BTSRTrainingArguments)
    for action in parser.built_actions:
        if not action.option_strings:
            continue
        if hints.get(action.dest) == str | bool:  # HfArgumentParser parses these as booleans and refuses the words
            action.type = functools.partial(_bool_or_word, words=_WORDS[action.dest])
        # Listed under their underscore name only; the kebab-case spellings still parse.
        action.option_strings = action.option_strings[:1]
        if action.dest in training and action.dest not in TRAINING_FLAGS_SHOWN and not help_all:
            action.help = argparse.SUPPRESS
        elif _is_complement(action):
            action.help = f"Turn --{action.dest} off."
        elif action.help is not None:
            if action.choices is None:
                action.metavar = action.metavar or _METAVARS.get(action.type, "VALUE")
            action.help = f"{action.help} (default: %(default)s)"
    return parser


_METAVARS = {int: "N", float: "X", str: "TEXT", string_to_bool: "BOOL"}


# The words each `str | bool` TrainingArguments setting takes beside a boolean (Transformers reads any other word
# as its first one, so a typo would count tokens rather than fail).
_WORDS = {"include_num_input_tokens_seen": ("all", "non_padding", "no")}


def _bool_or_word(value: str, words: tuple[str, ...]) -> bool | str:
    """A `str | bool` setting's value: a boolean spelled as one, else one of its `words`
    (`--include_num_input_tokens_seen non_padding`, which TrainingArguments takes beside true and false)."""
    if value in words:
        return value
    try:
        return string_to_bool(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a boolean or one of {', '.join(words)}, got {value!r}") from None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=38, width=118)


def _is_complement(action: argparse.Action) -> bool:
    """A `--no_x` option, which shares its boolean field's destination."""
    return bool(action.option_strings) and action.option_strings[0].startswith("--no_")


def _dests(parser: _Parser) -> dict[str, argparse.Action]:
    """Each destination's main option (options the Hub group took over have none left and are skipped)."""
    found = {}
    for action in parser.built_actions:
        if action.option_strings and not _is_complement(action):
            found.setdefault(action.dest, action)
    return found


def _close_flag(token: str, parser: _Parser) -> str:
    options = [o for a in parser.built_actions for o in a.option_strings if o.startswith("--") and "-" not in o[2:]]
    match = difflib.get_close_matches(token.split("=", 1)[0], options, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


# ---------------------------------------------------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------------------------------------------------


def _read_config_file(path: str) -> dict:
    file = Path(path)
    if file.suffix not in (".yaml", ".yml", ".json"):
        raise SettingsError(f"--config {path}: expected a .yaml, .yml or .json file")
    if not file.is_file():
        raise SettingsError(f"--config {path}: file not found")
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".json":
            settings = json.loads(text)
        else:
            import yaml

            settings = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SettingsError(f"{path}: cannot read config file: {' '.join(str(error).split())}") from error
    except Exception as error:  # yaml.YAMLError: the parser's message names the line
        raise SettingsError(f"{path}: cannot parse config file: {' '.join(str(error).split())}") from error
    if isinstance(settings, dict) and set(settings) >= {"settings", "sources"}:
        settings = settings["settings"]  # a run's run_settings.json
    if not isinstance(settings, dict):
        raise SettingsError(f"{path}: config file must hold a mapping of setting names to values")
    return settings


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value, annotation, where: str):
    """`value` checked against a field's type; YAML's `1e-3` (a string to YAML 1.1) reads as a float."""
    args = get_args(annotation)
    if _is_union(annotation):
        if value is None and type(None) in args:
            return None
        simple = [a for a in args if a is not type(None)]
        if len(simple) == 1:
            return _coerce(value, simple[0], where)
        if set(simple) == {float, int}:
            return _coerce(value, float, where)
        return value  # a TrainingArguments union (str | dict, enum | str, ...): TrainingArguments checks it
    if value is None:
        raise SettingsError(f"{where}: expected {_type_name(annotation)}, got null")
    if get_origin(annotation) is Literal:
        if value not in args:
            raise SettingsError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, str):
            try:
                value = annotation(value.strip())
            except ValueError:
                raise SettingsError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected {annotation.__name__}, got {value!r}")
        if annotation is int and not float(value).is_integer():
            raise SettingsError(f"{where}: expected int, got {value!r}")
        return annotation(value)
    if annotation is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    if get_origin(annotation) is list:
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value] if args else value
    return value


_FIELD_TYPES: dict[str, object] = {}
for _cls in _GROUPS:
    for _name, _hint in get_type_hints(_cls).items():
        _FIELD_TYPES.setdefault(_name, _hint)
_FIELD_TYPES.update({name: hint for name, hint in get_type_hints(HubArguments).items()})


# ---------------------------------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ResolvedSettings:
    """Every setting of a run, and where each came from (`default`, `preset:NAME`, `config:FILE`, `command line`)."""

    model: object  # ModelArguments
    data: DataArguments
    training: TrainingArguments
    hub: dict
    values: dict
    sources: dict

    def __iter__(self):  # model, data, training, hub: as `parse_arguments` returned them before
        return iter((self.model, self.data, self.training, self.hub))

    def __getitem__(self, index):
        return tuple(self)[index]


def _layers(argv: list[str]) -> tuple[dict, str | None, dict, str | None]:
    """`(preset settings, preset name, config-file settings, config file)`, read before the one parse."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("dataset", "preset", "config", "data_path"):
        pre.add_argument(f"--{name}")
    known, _ = pre.parse_known_args(argv)
    file_settings = {}
    if known.config is not None:
        file_settings = _read_config_file(known.config)
        unknown = sorted(set(file_settings) - set(_FIELD_TYPES))
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(_FIELD_TYPES), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"{known.config}: unknown setting {unknown[0]!r}{hint}")
        file_settings = {
            name: _coerce(value, _FIELD_TYPES[name], f"{known.config}: key {name}")
            for name, value in file_settings.items()
        }
        file_settings.pop("config", None)  # a run_settings.json names the file its run read, if any
    dataset = known.dataset or file_settings.get("dataset") or "ml-latest-small"
    if known.dataset is None and (known.data_path or file_settings.get("data_path")):
        dataset = None  # the user's own file: no named dataset's preset applies unless --preset asks for one
    preset_name = known.preset or file_settings.get("preset")
    if preset_name is not None and preset_name not in PRESETS:
        close = difflib.get_close_matches(preset_name, list(PRESETS), n=1)
        raise SettingsError(
            f"--preset {preset_name}: no such preset{'; did you mean ' + close[0] + '?' if close else ''}"
            f" (presets: {', '.join(PRESETS)})"
        )
    preset_name = preset_name or (dataset if dataset in PRESETS else None)
    return (PRESETS[preset_name] if preset_name else {}), preset_name, file_settings, known.config


def resolve_settings(argv: list[str] | None = None) -> ResolvedSettings:
    """Parses `argv` once, with the preset and the config file as the parser's defaults, then checks the values.

    Raises:
        SettingsError: an unknown, abbreviated or ill-typed flag, a bad config file, or a value out of range; the
            message names it. `--help` prints the help and exits.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    help_all = "--help_all" in argv
    preset, preset_name, file_settings, config_file = _layers(argv)
    parser = build_parser(help_all)
    actions = _dests(parser)
    sources = {dest: "default" for dest in actions}
    baseline = {}  # each setting with neither a config file nor the command line: the preset's value or the default
    for layer, source in ((preset, f"preset:{preset_name}"), (file_settings, f"config:{config_file}")):
        for name, value in layer.items():
            if name not in actions:
                raise SettingsError(f"{source}: unknown setting {name!r}")
            actions[name].default = value
            sources[name] = source
        baseline = baseline or {dest: action.default for dest, action in actions.items()}
    if help_all or any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        raise SystemExit(0)
    namespace, remaining = parser.parse_known_args(argv)
    if remaining:
        token = next((t for t in remaining if t.startswith("-")), remaining[0])
        raise SettingsError(f"unknown argument {token}{_close_flag(token, parser)} (see {_command_name()} --help)")
    # Which settings the command line gave: the same argv, parsed again with every default suppressed.
    for action in parser.built_actions:
        action.default = argparse.SUPPRESS
    given = vars(parser.parse_known_args(argv)[0])
    values = {dest: getattr(namespace, dest) for dest in actions}
    for dest in given:
        if dest in sources:
            sources[dest] = "command line"
    return _settings_from_values(values, sources, baseline)


def _settings_from_values(values: dict, sources: dict, baseline: dict) -> ResolvedSettings:
    values, sources = dict(values), dict(sources)
    for implied_by in ("torch_compile_mode", "torch_compile_backend"):
        if values.get(implied_by) is not None and not values.get("torch_compile"):
            # TrainingArguments turns compilation on for either; the checks below must know it is on.
            values["torch_compile"], sources["torch_compile"] = True, f"implied by --{implied_by}"
    if values.get("torch_compile") and not sources.get("length_grouped_attention", "default").startswith(
        ("config:", "command line")
    ):
        # Length groups follow the batch's lengths, which a compiled graph cannot (the model takes one padded grid
        # under compile anyway); off unless asked for, and then refused in `_check_before_data`.
        values["length_grouped_attention"] = False
        sources["length_grouped_attention"] = "implied by --torch_compile"
    if values.get("load_best_model_at_end") is None:  # selection needs evaluations: on whenever there are some
        values["load_best_model_at_end"] = getattr(values["eval_strategy"], "value", values["eval_strategy"]) != "no"
    if values.get("dataloader_pin_memory") is None:
        import torch

        values["dataloader_pin_memory"] = torch.cuda.is_available()
    model = ModelArguments(**{f.name: values[f.name] for f in fields(ModelArguments)})
    data = DataArguments(**{f.name: values[f.name] for f in fields(DataArguments)})
    hub = {name: values[name] for name in HUB_SETTINGS}
    training_names = [f.name for f in fields(BTSRTrainingArguments) if f.init and f.name not in HUB_SETTINGS]
    _check_before_data(model, data, values, sources)
    _check_dependent_settings(values, sources, baseline)
    try:
        training = BTSRTrainingArguments(**{name: values[name] for name in training_names if name in values})
    except (ValueError, TypeError) as error:
        raise SettingsError(f"invalid training setting: {' '.join(str(error).split())}") from error
    _check_training(training, values)
    return ResolvedSettings(model, data, training, hub, values, sources)


# ---------------------------------------------------------------------------------------------------------------------
# Checks before any data is read
# ---------------------------------------------------------------------------------------------------------------------

_FINITE = (
    "bt_alpha",
    "bt_lambda",
    "dropout",
    "learning_rate",
    "infonce_temperature",
    "layer_norm_eps",
    "cl4srec_crop_ratio",
    "cl4srec_mask_ratio",
    "cl4srec_reorder_ratio",
    "ec4srec_positive_ratio",
    "ec4srec_negative_ratio",
    "ec4srec_negative_weight",
    "ec4srec_negative_temperature",
    "num_train_epochs",
    "adam_beta1",
    "adam_beta2",
    "weight_decay",
    "max_grad_norm",
    "holdout_fraction",
    "initializer_range",
)
_AT_LEAST_ONE = (
    "patience",  # 0 would stop after the first evaluation, improving or not (EarlyStoppingCallback's counter)
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_len",
    "eval_context_len",
    "intermediate_size",
)
_NOT_NEGATIVE = (
    "min_users_per_item",
    "min_items_per_user",
    "bt_alpha",
    "bt_lambda",
    "learning_rate",
    "dataloader_num_workers",
    "max_grad_norm",
    "weight_decay",
)
_TRACKERS = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "trackio": "trackio",
    "swanlab": "swanlab",
    "clearml": "clearml",
    "dvclive": "dvclive",
}


def _flag(name: str) -> str:
    return f"--{name}"


def _changed_from_default(data: DataArguments, names: tuple[str, ...]) -> list[str]:
    """The `names` whose value is not DataArguments' default: compared by value, not by source, since a saved
    run_settings.json holds the defaults too and must still rerun."""
    defaults = {f.name: f.default for f in fields(DataArguments)}
    return [name for name in names if getattr(data, name) != defaults[name]]


def _refusal(name: str, sources: dict, message: str) -> SettingsError:
    """The one-line error for setting `name`, naming where its value came from when not the command line."""
    source = sources.get(name, "default")
    origin = "" if source == "command line" else f" (from {source})"
    return SettingsError(f"{_flag(name)}{origin}: {message}")


def _model_default(name: str):
    spec = next(f for f in fields(ModelArguments) if f.name == name)
    return spec.default if spec.default is not MISSING else spec.default_factory()


def _check_before_data(model, data, values: dict, sources: dict) -> None:
    """One rule at a time, each message naming the flag (and where its value came from when not the command line)."""

    def fail(name, message):
        raise _refusal(name, sources, message)

    for name in _FINITE:
        value = values.get(name)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            fail(name, f"must be a finite number, got {value}")
    for name in _AT_LEAST_ONE:
        if values.get(name) is not None and values[name] < 1:
            fail(name, f"must be >= 1, got {values[name]}")
    for name in _NOT_NEGATIVE:
        if values.get(name) is not None and values[name] < 0:
            fail(name, f"must be >= 0, got {values[name]}")
    if data.split != "user_holdout":  # the hold-out settings would be accepted and ignored
        for name in _changed_from_default(data, ("holdout_fraction", "holdout_seed")):
            fail(name, f"applies to --split user_holdout only, not --split {data.split}")
    elif not 0 < values["holdout_fraction"] < 1:
        fail("holdout_fraction", f"must be in (0, 1), got {values['holdout_fraction']}")
    if values.get("eval_context_len") is not None and values["eval_context_len"] > values["max_len"]:
        fail("eval_context_len", f"is above --max_len {values['max_len']}: the model reads at most that many items")
    if values.get("initializer_range") is not None and values["initializer_range"] <= 0:
        fail("initializer_range", f"must be > 0 (or left out for Xavier), got {values['initializer_range']}")
    if not 0 <= values["dropout"] < 1:
        fail("dropout", f"must be in [0, 1), got {values['dropout']}")
    if values["max_steps"] <= 0 and values["num_train_epochs"] <= 0:
        fail("num_train_epochs", f"must be > 0 (or set --max_steps), got {values['num_train_epochs']}")
    if values.get("label_smoothing_factor"):  # the Trainer smooths only its own loss, which BTSRTrainer replaces
        fail("label_smoothing_factor", "is not supported: BT-SR's prediction losses take no label smoothing")
    if values.get("torch_compile") and values.get("length_grouped_attention"):
        fail(
            "length_grouped_attention",
            "cannot be combined with --torch_compile: its row groups follow each batch's lengths, which a compiled "
            "graph cannot; leave it out (it is then off) or drop --torch_compile",
        )
    # By value, as the hold-out settings (a saved run_settings.json holds the defaults too and must rerun): each of
    # these would otherwise be accepted and ignored.
    if values["bt_alpha"] == 0:
        for name in ("ssl_objective", "view_maker", "ssl_view_span"):
            if values[name] != _model_default(name):
                fail(name, "has no effect with --bt_alpha 0 (no self-supervised loss); leave it out or set --bt_alpha")
    for prefix, owner, choice in (
        ("mlm_", "backbone", "bert4rec"),
        ("infonce_", "ssl_objective", "infonce"),
        ("cl4srec_", "view_maker", "cl4srec"),
        ("ec4srec_", "view_maker", "ec4srec"),
    ):
        if values[owner] == choice:
            continue
        for name in [f.name for f in fields(ModelArguments) if f.name.startswith(prefix)]:
            if values[name] != _model_default(name):
                fail(name, f"applies to --{owner} {choice} only, not --{owner} {values[owner]}")
    if values["bt_projector_dims"] and values["bt_alpha"] == 0:  # also a parameter DDP would find unused
        fail("bt_projector_dims", "has no effect with --bt_alpha 0 (no self-supervised loss to project for)")
    if data.data_path is not None and not str(data.data_path).strip():
        fail("data_path", "is empty; give a file, or leave it out to train on --dataset")
    if data.data_path is not None and sources.get("dataset") == "command line":
        fail("dataset", "and --data_path both name the data; give one")
    if data.data_path is None:  # a named dataset has its own layout: these would be accepted and ignored
        for name in _changed_from_default(data, ("data_format", "user_column", "item_column", "timestamp_column")):
            fail(name, f"applies to --data_path only; --dataset {data.dataset} is read in its own layout")
    _check_output_dir(values["output_dir"])
    trackers = values.get("report_to")
    trackers = [trackers] if isinstance(trackers, str) else list(trackers or [])
    for tracker in trackers:
        if tracker in ("none", "all"):
            continue
        module = _TRACKERS.get(tracker)
        if module is None:
            fail("report_to", f"unknown tracker {tracker!r} (choose from none, {', '.join(_TRACKERS)})")
        if importlib.util.find_spec(module) is None:
            extra = " (pip install 'btsr[tensorboard]')" if tracker == "tensorboard" else f" (pip install {module})"
            fail("report_to", f"{tracker} is not installed{extra}")
    if values["push_to_hub"]:
        if not values["hub_model_id"]:
            fail("push_to_hub", "needs --hub_model_id org/name")
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
            fail("push_to_hub", "cannot upload while HF_HUB_OFFLINE is set")
        from huggingface_hub import get_token

        if not (values["hub_token"] or get_token()):
            fail("push_to_hub", "needs a token: pass --hub_token or run `hf auth login`")


# TrainingArguments settings whose Trainer code path BT-SR replaces or cannot use: given, each fails in one line.
_NO_PREDICTION_LOOP = "has no effect: validation ranks the whole catalogue (BTSRTrainer.evaluate), not through the "
_NO_PREDICTION_LOOP += "Trainer's prediction loop"
# The Trainer reads --optim_target_modules for these optimizer families alone (their low-rank projections).
_LOW_RANK_OPTIMIZERS = ("galore", "apollo")
_RUN_STAGES = ("do_train", "do_eval", "do_predict")
_NOT_HONOURED = {
    "remove_unused_columns": "must stay False: the collator reads the pair and view columns the model's forward "
    "does not name",
    "bf16_full_eval": "is not supported: the ranking evaluation runs in float32",
    "fp16_full_eval": "is not supported: the ranking evaluation runs in float32",
    **dict.fromkeys(
        (
            "prediction_loss_only",
            "eval_accumulation_steps",
            "eval_do_concat_batches",
            "include_for_metrics",
            "batch_eval_metrics",
            "eval_use_gather_object",
        ),
        _NO_PREDICTION_LOOP,
    ),
    "auto_find_batch_size": "is not supported: the SCE buckets and run_settings.json follow the batch size given; "
    "set --per_device_train_batch_size",
    "neftune_noise_alpha": "is not supported: NEFTune perturbs a language model's token embeddings, and BT-SR looks "
    "its items up packed",
    "use_liger_kernel": "is not supported: Liger has no kernels for BT-SR",
    "liger_kernel_config": "is not supported: Liger has no kernels for BT-SR",
    "save_only_model": "is not supported: a checkpoint without the optimizer, scheduler and RNG states would resume "
    "as another run",
    "enable_jit_checkpoint": "is not supported: a run stopped by SIGTERM would then be tested and reported as "
    "finished; checkpoints are written every epoch (resume with --resume_from_checkpoint latest)",
    "length_column_name": "has no effect: lengths come from the training sequences",
    "label_names": "has no effect: the targets are each sequence's next items, not a column",
    "hub_always_push": "has no effect: --push_to_hub uploads through BT-SR's Hub helper (--hub_strategy end or "
    "every_save)",
    "logging_nan_inf_filter": "has no effect: a non-finite loss stops the run with an error",
    **dict.fromkeys(
        _RUN_STAGES,
        "has no effect: train.py always trains, evaluates on validation as --eval_strategy says, and tests the "
        "selected model (--eval_strategy no skips validation)",
    ),
}


def _check_dependent_settings(values: dict, sources: dict, baseline: dict) -> None:
    """A setting that takes effect only beside another, given where it has none, fails in one line.

    Only a value given on the command line or in a config file, and unlike the one the run would get anyway (the
    preset's or the default), is refused: a saved run_settings.json restates every setting, and a dataset preset's
    SCE buckets under `--loss_type ce` are the preset's, not the user's.
    """

    def given(name):
        source = sources.get(name, "default")
        return (source == "command line" or source.startswith("config:")) and values[name] != baseline.get(name)

    def plain(name):  # an enumeration's value, as written on the command line
        return getattr(values[name], "value", values[name])

    for name, reason in _NOT_HONOURED.items():
        # A stage flag typed with any value is refused: train.py runs every stage whatever it says, so even
        # `--do_eval False` (the default) would be ignored. A config file's default, as a run_settings.json restates it,
        # is not a request.
        typed_stage = name in _RUN_STAGES and sources.get(name) == "command line"
        if name in values and (given(name) or typed_stage):
            raise _refusal(name, sources, reason)
    loss, evaluates, schedule = values["loss_type"], plain("eval_strategy") != "no", plain("lr_scheduler_type")
    trackers = values.get("report_to")
    trackers = {trackers} if isinstance(trackers, str) else set(trackers or [])
    trackers.discard("none")
    rules = (
        (("bt_lambda",), values["bt_alpha"] != 0, "has no effect with --bt_alpha 0 (no self-supervised loss)"),
        (
            ("bt_lambda",),
            values["ssl_objective"] == "barlow_twins",
            f"applies to --ssl_objective barlow_twins only, not --ssl_objective {values['ssl_objective']}",
        ),
        (
            ("sce_n_buckets", "sce_bucket_size_x", "sce_bucket_size_y", "sce_mix_x"),
            loss == "sce",
            f"applies to --loss_type sce only, not --loss_type {loss}",
        ),
        (
            ("bce_num_negatives",),
            loss in SAMPLED_LOSS_TYPES,
            f"applies to --loss_type {' or '.join(SAMPLED_LOSS_TYPES)} only, not --loss_type {loss}",
        ),
        (
            ("patience", "metric_for_best_model", "greater_is_better"),
            evaluates,
            "has no effect with --eval_strategy no (nothing is evaluated to select or stop on)",
        ),
        (
            ("patience",),
            values["load_best_model_at_end"],
            "has no effect with --load_best_model_at_end False (early stopping selects the best evaluation)",
        ),
        (
            ("warmup_steps", "lr_scheduler_kwargs"),
            schedule != "constant",
            "has no effect with --lr_scheduler_type constant (this package's default); choose a schedule that "
            "reads it, such as constant_with_warmup or linear",
        ),
        *(
            (
                (f"{event}_steps",),
                plain(f"{event}_strategy") == "steps",
                f"applies to --{event}_strategy steps only, not --{event}_strategy {plain(f'{event}_strategy')}",
            )
            for event in ("eval", "save", "logging")
        ),
        (
            ("run_name",),
            bool(trackers),
            "has no effect with --report_to none (it names the run for a tracker)",
        ),
        (
            tuple(name for name in values if name == "project" or name.startswith("trackio_")),
            bool(trackers & {"trackio", "all"}),
            "applies to --report_to trackio only",
        ),
        (
            ("optim_target_modules",),
            plain("optim").startswith(_LOW_RANK_OPTIMIZERS),
            f"applies to the low-rank optimizers only (--optim {'/'.join(f'{o}*' for o in _LOW_RANK_OPTIMIZERS)}), "
            f"not --optim {plain('optim')}",
        ),
        (
            ("dataloader_persistent_workers",),
            values["dataloader_num_workers"] > 0,
            "needs --dataloader_num_workers 1 or more (the batches are built in the main process)",
        ),
        (
            ("hub_private_repo", "hub_strategy", "hub_revision", "hub_token"),
            values["push_to_hub"],
            "applies with --push_to_hub only (nothing is uploaded without it)",
        ),
        (("data_root",), values["data_path"] is None, "applies to a named --dataset only, not to --data_path"),
        (
            ("data_root",),
            values["data_path"] is not None or not KNOWN_DATASETS[values["dataset"]].in_repo,
            f"has no effect with --dataset {values['dataset']}, which ships with BT-SR (name the dataset to read)",
        ),
        (("data_root",), not values["download"], "has no effect with --download (the file is fetched to --cache_dir)"),
        (("download",), values["data_path"] is None, "applies to a named --dataset (ml-1m-raw), not to --data_path"),
        (("dataset",), values["data_path"] is None, "and --data_path both name the data; give one"),
        (
            ("view_maker",),
            values["view_maker"] != "same_target+dropout" or values["ssl_view_span"] == "sequence",
            f"same_target+dropout is same_target under --ssl_view_span {values['ssl_view_span']} (each view there is "
            "a pass of its own, with dropout); use same_target",
        ),
        (
            ("ec4srec_negative_temperature", "ec4srec_negative_ratio"),
            values["ec4srec_negative_weight"] != 0,
            "has no effect with --ec4srec_negative_weight 0 (no negative view is encoded)",
        ),
        (
            ("eval_context_len",),
            values["backbone"] != "bert4rec" or (values["eval_context_len"] or 0) < values["max_len"],
            f"must be below --max_len {values['max_len']} with --backbone bert4rec (its mask token takes the last "
            "position)",
        ),
        (
            ("k_core",),
            values["min_users_per_item"] > 1 and values["min_items_per_user"] > 1,
            "has no effect unless --min_users_per_item and --min_items_per_user are both above 1 (with one "
            "threshold, one pass already meets it)",
        ),
    )
    for names, applies, message in rules:
        for name in names if not applies else ():
            if given(name):
                raise _refusal(name, sources, message)
    if evaluates:
        _check_selection(values, sources, schedule)
    _check_explanation_epochs(values, sources, given)


def _check_explanation_epochs(values: dict, sources: dict, given) -> None:
    """EC4SRec explains after the epochs it is told; one that training never reaches would leave its views unused."""
    if values["view_maker"] != "ec4srec" or values["max_steps"] > 0:
        return
    epochs, updates = values["num_train_epochs"], sorted(values["ec4srec_update_epochs"])
    if updates[0] >= epochs:  # no explanation at all: CE alone, recorded as EC4SRec
        raise _refusal(
            "num_train_epochs",
            sources,
            f"{epochs:g} epochs end before EC4SRec's first explanation, after epoch {updates[0]} "
            "(--ec4srec_update_epochs): the run would train next-item prediction alone",
        )
    if given("ec4srec_update_epochs") and updates[-1] >= epochs:
        raise _refusal(
            "ec4srec_update_epochs",
            sources,
            f"epoch {updates[-1]} is never reached with --num_train_epochs {epochs:g} (explaining after epoch e needs "
            "more than e epochs)",
        )


def _check_selection(values: dict, sources: dict, schedule: str) -> None:
    """The selection metric is one validation reports, and a plateau schedule steps the right way on it."""
    metric = str(values["metric_for_best_model"])
    names = selectable_metrics()
    if metric.removeprefix("eval_") not in names:
        close = difflib.get_close_matches(metric.removeprefix("eval_"), names, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise _refusal(
            "metric_for_best_model",
            sources,
            f"validation reports no {metric!r}{hint} (choose from hr@K, ndcg@K, mrr@K or coverage@K with K in "
            f"{', '.join(map(str, DEFAULT_KS))}; it ranks the catalogue and computes no loss)",
        )
    kwargs = values.get("lr_scheduler_kwargs") or {}
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except ValueError:
            raise _refusal("lr_scheduler_kwargs", sources, f"is not a JSON object: {kwargs!r}") from None
    higher_is_better = values["greater_is_better"] is not False
    if schedule in ("reduce_lr_on_plateau", "greedy") and higher_is_better and "mode" not in kwargs:
        raise _refusal(
            "lr_scheduler_type",
            sources,
            f"{schedule} is stepped on {metric}, where higher is better, but torch's default mode 'min' would cut "
            """the rate while it improves; add --lr_scheduler_kwargs '{"mode": "max"}'""",
        )


def _check_output_dir(path: str) -> None:
    """The output folder can be created and written: checked now, not after an hour of training."""
    folder = Path(path)
    if not str(path).strip():
        raise SettingsError("--output_dir: is empty")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SettingsError(f"--output_dir {path}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise SettingsError(f"--output_dir {path}: cannot write there ({error.strerror or error})") from None


def _check_training(training: TrainingArguments, values: dict) -> None:
    if training.fp16 and not _has_accelerator():
        raise SettingsError("--fp16: needs a GPU; on a CPU train in float32 (or --bf16 where the CPU supports it)")
    _check_fsdp(training, values)


def _check_fsdp(training: TrainingArguments, values: dict) -> None:
    """FSDP as BT-SR can honour it (FSDP2, the item table scored shard by shard), or one line naming the flag.

    accelerate enables FSDP from `accelerate launch --use_fsdp` (the environment) or from the Trainer's `--fsdp`.
    """
    from_trainer = bool(training.fsdp)
    if not from_trainer and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    flag = "--fsdp" if from_trainer else "accelerate launch --use_fsdp"
    if training.use_cpu or not _has_accelerator():
        raise SettingsError(
            f"{flag}: accelerate runs FSDP on GPUs only; on a CPU it would run plain DDP with the whole item table in "
            "every process; launch without FSDP (DDP) or on GPUs"
        )
    version = int(training.fsdp_config.get("version", 2)) if from_trainer else int(os.environ.get("FSDP_VERSION", "1"))
    if version != 2:
        hint = "--fsdp_config with version 2" if from_trainer else "accelerate launch --fsdp_version 2"
        raise SettingsError(
            f"{flag}: FSDP version {version}: BT-SR reads the item table shard by shard only under FSDP2 (FSDP1 "
            f"flattens the weights, and would gather the whole table in every process); use {hint}"
        )
    if values["loss_type"] in SAMPLED_LOSS_TYPES:
        raise SettingsError(
            f"--loss_type {values['loss_type']}: under FSDP the sharded item table is scored for the full "
            "cross-entropy and SCE only (sampled negatives are not sharded); use --loss_type ce or sce"
        )
    if values.get("torch_compile"):
        raise SettingsError("--torch_compile: not with FSDP; the sharded item table is read in eager mode only")


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def parse_arguments(argv: list[str] | None = None) -> ResolvedSettings:
    """`resolve_settings`; unpacks as `model_args, data_args, training_args, hub_settings`."""
    return resolve_settings(argv)


# ---------------------------------------------------------------------------------------------------------------------
# Saved settings
# ---------------------------------------------------------------------------------------------------------------------


def run_settings(settings: ResolvedSettings) -> dict:
    """The JSON form of `run_settings.json`: every setting (not the token, not the checkpoint resumed from) and
    where it came from."""
    values = {name: to_builtin(value) for name, value in settings.values.items() if name not in _NOT_SAVED}
    sources = {name: settings.sources.get(name, "default") for name in values}
    return {"settings": values, "sources": sources}


def write_run_settings(settings: ResolvedSettings, folder: str) -> Path:
    path = Path(folder) / RUN_SETTINGS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_settings(settings), indent=2) + "\n")
    return path


def settings_command(saved: dict, output_dir: str | None = None) -> str:
    """A `train.py` command line that rebuilds a run from its `run_settings.json` content: every setting that did
    not come from a default, written out as a flag (preset and config values included, so no file is needed)."""
    values, sources = saved["settings"], saved["sources"]
    parts = ["python", "train.py"]
    for name, value in values.items():
        if sources.get(name, "default") == "default" or name in ("config", "help_all"):
            continue
        if name == "output_dir" and output_dir is not None:
            value = output_dir
        if isinstance(value, list):
            parts += [f"--{name}", *map(str, value)] if value else []
        elif value is None:
            continue
        else:
            parts += [f"--{name}", str(value)]
    if output_dir is not None and "--output_dir" not in parts:
        parts += ["--output_dir", output_dir]
    return shlex.join(parts)
