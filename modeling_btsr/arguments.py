"""Command-line arguments of `train.py`, dataset presets, and how settings resolve.

Settings resolve as: command line > `--config file.yaml|json` > dataset preset > the defaults below. Every field
has a default and a help text that doubles as `--help`.
"""

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from .configuration_btsr import INFONCE_SIMILARITIES, LOSS_TYPES, SSL_OBJECTIVES, VIEW_MAKERS, VIEW_SPANS

__all__ = ["ModelArguments", "DataArguments", "PRESETS", "TRAINING_DEFAULTS", "HUB_SETTINGS", "parse_arguments"]

HUB_SETTINGS = ("push_to_hub", "hub_model_id", "hub_private_repo", "hub_token", "hub_strategy")


@dataclass
class ModelArguments:
    """BT-SR model and loss settings (names as in :class:`~modeling_btsr.BTSRConfig`)."""

    loss_type: str = field(default="ce", metadata={"help": f"Prediction loss: {' | '.join(LOSS_TYPES)}."})
    bt_alpha: float = field(
        default=0.2, metadata={"help": "Weight of the self-supervised loss (BT or InfoNCE); 0 trains SASRec."}
    )
    bt_lambda: float = field(default=0.05, metadata={"help": "Off-diagonal weight inside the Barlow Twins loss."})
    hidden_size: int = field(default=64, metadata={"help": "Embedding width d."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_attention_heads: int = field(default=1, metadata={"help": "Attention heads per block."})
    max_len: int = field(default=200, metadata={"help": "Most recent items read per sequence (max_len)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on embeddings, feed-forward and attention."})
    sce_n_buckets: int | None = field(default=None, metadata={"help": "SCE buckets n_b (default: spec formula)."})
    sce_bucket_size_x: int | None = field(default=None, metadata={"help": "SCE positions per bucket b_x."})
    sce_bucket_size_y: int = field(default=256, metadata={"help": "SCE items per bucket b_y."})
    sce_mix_x: bool = field(default=False, metadata={"help": "SCE centres as mixtures of the batch's states."})
    bce_num_negatives: int = field(default=256, metadata={"help": "Sampled negatives per sequence for BCE."})
    ssl_objective: str = field(
        default="barlow_twins", metadata={"help": f"Self-supervised loss: {' | '.join(SSL_OBJECTIVES)}."}
    )
    infonce_temperature: float = field(default=1.0, metadata={"help": "InfoNCE temperature tau."})
    infonce_similarity: str = field(
        default="dot", metadata={"help": f"InfoNCE similarity: {' | '.join(INFONCE_SIMILARITIES)}."}
    )
    view_maker: str = field(
        default="same_target",
        metadata={"help": f"Views of the self-supervised loss: {' | '.join(VIEW_MAKERS)}."},
    )
    ssl_view_span: str = field(
        default="sequence",
        metadata={
            "help": f"What the self-supervised views encode: {' | '.join(VIEW_SPANS)} (the whole sequence, whose "
            "last state is ranked; or a prefix ending at a random position, as RecBole's per-prefix samples, "
            "re-encoded on its own or in place, at its positions in the sequence)."
        },
    )
    cl4srec_crop_ratio: float = field(default=0.6, metadata={"help": "CL4SRec crop ratio eta (share kept)."})
    cl4srec_mask_ratio: float = field(default=0.3, metadata={"help": "CL4SRec mask ratio gamma."})
    cl4srec_reorder_ratio: float = field(default=0.6, metadata={"help": "CL4SRec reorder ratio beta."})
    length_grouped_attention: bool = field(
        default=True,
        metadata={
            "help": "Attention per group of rows of similar length, not on one grid as long as the batch's longest "
            "row: the same model, much faster on short-history data; only dropout's random draws differ."
        },
    )


@dataclass
class DataArguments:
    """Data, protocol and run settings."""

    dataset: str = field(
        default="ml-latest-small",
        metadata={"help": "Named dataset: ml-latest-small (embedded), ml-100k, ml-1m, ml-1m-raw, beauty, sports, lastfm."},
    )
    data_path: str | None = field(default=None, metadata={"help": "Your interaction file (overrides --dataset)."})
    data_format: str | None = field(
        default=None, metadata={"help": "csv | tsv | parquet | movielens_csv | ml1m_dat | ml100k_udata | sasrec | s3rec"}
    )
    data_root: str | None = field(default=None, metadata={"help": "Folder of the named datasets (../shared/data)."})
    download: bool = field(
        default=False, metadata={"help": "With --dataset ml-1m-raw: fetch GroupLens' ml-1m.zip (verified) into the cache."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cache for downloads and the datasets.map partner index (~/.cache/btsr)."}
    )
    split: str = field(default="leave_one_out", metadata={"help": "Protocol: leave_one_out | temporal."})
    user_column: str = field(default="user_id", metadata={"help": "User id column of --data_path."})
    item_column: str = field(default="item_id", metadata={"help": "Item id column of --data_path."})
    timestamp_column: str = field(default="timestamp", metadata={"help": "Timestamp column of --data_path."})
    min_users_per_item: int = field(default=0, metadata={"help": "Keep items with at least this many users."})
    min_items_per_user: int = field(default=0, metadata={"help": "Keep users with at least this many items."})
    k_core: bool = field(default=False, metadata={"help": "Iterate the two minimums until stable."})
    patience: int = field(default=10, metadata={"help": "Early-stopping patience in evaluations (NDCG@10)."})
    preset: str | None = field(default=None, metadata={"help": "Hyper-parameter preset (default: the dataset's)."})
    config: str | None = field(default=None, metadata={"help": "YAML or JSON file of settings."})


# The spec's reference hyper-parameters (section 4), plus the flagship and the embedded default.
PRESETS: dict[str, dict] = {
    "ml-latest-small": {
        "loss_type": "ce", "bt_alpha": 0.2, "bt_lambda": 0.05, "dropout": 0.2,
        "per_device_train_batch_size": 32, "num_train_epochs": 20, "patience": 10,
    },
    "ml-1m": {
        "loss_type": "ce", "per_device_train_batch_size": 256, "dropout": 0.1, "bt_alpha": 0.2, "bt_lambda": 0.05,
        "num_train_epochs": 200, "patience": 30,
    },
    "btsr-ml1m": {
        "dataset": "ml-1m", "split": "leave_one_out", "loss_type": "ce", "per_device_train_batch_size": 256,
        "dropout": 0.1, "bt_alpha": 0.2, "bt_lambda": 0.05, "num_train_epochs": 200, "patience": 30,
    },
    "yelp": {
        "loss_type": "sce", "per_device_train_batch_size": 512, "dropout": 0.3, "bt_alpha": 0.1, "bt_lambda": 0.05,
        "sce_n_buckets": 470, "sce_bucket_size_x": 470, "sce_bucket_size_y": 1024, "sce_mix_x": False,
        "num_train_epochs": 300, "patience": 10,
    },
    "gowalla": {
        "loss_type": "sce", "per_device_train_batch_size": 2048, "dropout": 0.3, "bt_alpha": 0.25, "bt_lambda": 0.05,
        "sce_n_buckets": 882, "sce_bucket_size_x": 882, "sce_bucket_size_y": 256, "sce_mix_x": False,
        "num_train_epochs": 300, "patience": 10,
    },
    "beauty": {
        "loss_type": "sce", "per_device_train_batch_size": 1024, "dropout": 0.6, "bt_alpha": 0.25, "bt_lambda": 0.1,
        "sce_n_buckets": 202, "sce_bucket_size_x": 202, "sce_bucket_size_y": 256, "sce_mix_x": False,
        "num_train_epochs": 300, "patience": 30,
    },
    "kindle-store": {
        "loss_type": "sce", "per_device_train_batch_size": 2048, "dropout": 0.3, "bt_alpha": 0.08, "bt_lambda": 0.07,
        "sce_n_buckets": 658, "sce_bucket_size_x": 658, "sce_bucket_size_y": 256, "sce_mix_x": True,
        "num_train_epochs": 300, "patience": 10,
    },
    # Contrastive baselines of the BT-SR paper, in this harness, with btsr-ml1m's data and training settings so the
    # three are compared like for like (the prediction loss is full CE, as for BT-SR on ML-1M).
    # - CL4SRec (Xie et al., ICDE 2022): InfoNCE (NT-Xent, 2B x 2B in-batch negatives) between two augmented
    #   views of the sequence, each one of crop / mask / reorder picked uniformly. lambda (bt_alpha here) = 0.1 and
    #   tau = 1.0 with dot-product similarity, the values of the RecBole-based CL4SRec in the DuoRec code, which
    #   also sets eta = 0.6, gamma = 0.3, beta = 0.6. Uncertain: the CL4SRec paper sweeps each ratio over
    #   0.1-0.9 per dataset; CoSeRec / ICLRec re-implementations use eta = 0.2, gamma = 0.7, beta = 0.2 instead.
    # - DuoRec (Qiu et al., WSDM 2022), its "us_x" mode (the one in its README): InfoNCE between a second dropout
    #   pass of the sequence and the sequence of another user with the same next item; lambda = 0.1, tau = 1.0,
    #   dot-product similarity (README: --lmd=0.1 --lmd_sem=0.1 --contrast='us_x' --sim='dot' --tau=1).
    #   Not reproduced: DuoRec's own dropout values (the harness keeps ML-1M's 0.1; at 0.5 both presets collapse
    #   as well, benchmarks/contrastive_probe.py).
    # - Both papers' code (RecBole) trains CE on the last position only; this harness trains every position (SASRec),
    #   averaged. On ML-1M leave-one-out lambda = 0.1 sinks both presets (validation NDCG@10 falls with lambda, dose
    #   by dose: benchmarks/contrastive_probe.py); at `--bt_alpha 0.001` both still trail SASRec (validation NDCG@10
    #   after 30 epochs: CL4SRec 0.121, DuoRec 0.070, SASRec 0.155). InfoNCE on random prefixes, the way RecBole's
    #   per-prefix samples weigh it (`--ssl_view_span random_prefix`, or `random_prefix_in_place` to keep their
    #   positions), collapses like the preset, and so do the papers' length 50 and dropout 0.5; cosine similarity
    #   (`--infonce_similarity cosine`) does not. The collapsed models' ranked states are nearly alike across users.
    "cl4srec": {
        "dataset": "ml-1m", "split": "leave_one_out", "loss_type": "ce", "per_device_train_batch_size": 256,
        "dropout": 0.1, "num_train_epochs": 200, "patience": 30,
        "ssl_objective": "infonce", "view_maker": "cl4srec", "bt_alpha": 0.1, "infonce_temperature": 1.0,
        "infonce_similarity": "dot", "cl4srec_crop_ratio": 0.6, "cl4srec_mask_ratio": 0.3,
        "cl4srec_reorder_ratio": 0.6,
    },
    "duorec": {
        "dataset": "ml-1m", "split": "leave_one_out", "loss_type": "ce", "per_device_train_batch_size": 256,
        "dropout": 0.1, "num_train_epochs": 200, "patience": 30,
        "ssl_objective": "infonce", "view_maker": "same_target+dropout", "bt_alpha": 0.1,
        "infonce_temperature": 1.0, "infonce_similarity": "dot",
    },
}  # fmt: skip

# Trainer settings of the reference (Adam lr 1e-3, betas (0.9, 0.98), no weight decay, no clipping) and our loop.
TRAINING_DEFAULTS: dict = {
    "output_dir": "outputs/btsr",
    "learning_rate": 1e-3,
    "adam_beta1": 0.9,
    "adam_beta2": 0.98,
    "weight_decay": 0.0,
    "max_grad_norm": 0.0,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "per_device_train_batch_size": 128,
    "num_train_epochs": 50,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "load_best_model_at_end": True,
    "metric_for_best_model": "eval_ndcg@10",
    "greater_is_better": True,
    "logging_strategy": "epoch",
    "report_to": "none",
    "seed": 42,
    "remove_unused_columns": False,
    "disable_tqdm": True,
    "save_only_model": False,
}


def _given_on_command_line(argv: list[str]) -> set[str]:
    """Names of the options written out on the command line (`--name value`, `--name=value`, `--no_name`)."""
    names = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            names.add(name[3:] if name.startswith("no_") else name)
    return names


def _read_config_file(path: str) -> dict:
    from data_processing import DataError

    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: config file not found")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            settings = yaml.safe_load(text)
        else:
            settings = json.loads(text)
    except Exception as error:  # the parsers' own messages name the line
        raise DataError(f"{path}: cannot parse config file: {' '.join(str(error).split())}") from error
    if not isinstance(settings, dict):
        raise DataError(f"{path}: config file must hold a mapping of setting names to values")
    return settings


def parse_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments, dict]:
    """Parses `argv` with presets and config files resolved; returns the dataclasses and the merged settings."""
    from data_processing import DataError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    known = {f.name for cls in (ModelArguments, DataArguments, TrainingArguments) for f in fields(cls)}
    if any(a in ("-h", "--help") for a in argv):
        parser.parse_args_into_dataclasses(argv)  # prints help and exits
    try:
        model_args, data_args, _, remaining = parser.parse_args_into_dataclasses(
            argv + (["--output_dir", "unused"] if "--output_dir" not in " ".join(argv) else []),
            return_remaining_strings=True,
        )
    except SystemExit:
        raise
    if remaining:
        raise DataError(f"unknown argument(s): {' '.join(remaining)} (see python train.py --help)")
    given = _given_on_command_line(argv)
    cli_values = {}
    for cls_args in (model_args, data_args):
        for f in fields(cls_args):
            if f.name in given:
                cli_values[f.name] = getattr(cls_args, f.name)

    file_settings = _read_config_file(data_args.config) if data_args.config else {}
    unknown = sorted(set(file_settings) - known)
    if unknown:
        raise DataError(f"{data_args.config}: unknown setting(s) {', '.join(unknown)}")
    dataset = cli_values.get("dataset", file_settings.get("dataset", "ml-latest-small"))
    preset_name = cli_values.get("preset", file_settings.get("preset")) or dataset
    if preset_name not in PRESETS and (cli_values.get("preset") or file_settings.get("preset")):
        raise DataError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS.get(preset_name, {})

    merged = {**TRAINING_DEFAULTS, **preset, **file_settings}
    # Command-line values: the Trainer's own flags are re-parsed from argv below so their types stay exact.
    merged.update(cli_values)
    training_cli = {}
    training_fields = {f.name for f in fields(TrainingArguments)}
    if given & training_fields:
        _, _, training_from_cli, _ = parser.parse_args_into_dataclasses(
            argv + (["--output_dir", "unused"] if "output_dir" not in given else []), return_remaining_strings=True
        )
        training_cli = {name: getattr(training_from_cli, name) for name in given & training_fields}
    merged.update(training_cli)

    def pick(cls):
        return {f.name: merged[f.name] for f in fields(cls) if f.name in merged}

    model_args = ModelArguments(**{**vars(ModelArguments()), **pick(ModelArguments)})
    data_args = DataArguments(**{**vars(DataArguments()), **pick(DataArguments)})
    training_settings = pick(TrainingArguments)
    # The Trainer's own push creates the repo at start-up and uploads its NLP card and pickled arguments:
    # train.py takes the Hub flags away from it and uploads the finished folder once, itself.
    for name in HUB_SETTINGS:
        merged[name] = training_settings.pop(name, None)
    try:
        training_args = TrainingArguments(**training_settings)
    except (ValueError, TypeError) as error:
        raise DataError(f"invalid training setting: {' '.join(str(error).split())}") from error
    return model_args, data_args, training_args, merged
