"""The training run behind `train.py`: data -> model -> BTSRTrainer -> metrics -> final model folder.

Kept out of `train.py` so benchmarks and tests drive the same code path; `train.py` only parses and prints.
"""

import copy
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from data_processing import (
    DataError,
    PairedTrainDataset,
    SequenceCollator,
    build_train_dataset,
    filter_interactions,
    load_dataset_by_name,
    read_interactions,
    split_interactions,
)
from data_processing.builtins import to_builtin
from data_processing.download import default_cache_dir, fetch_ml1m_ratings
from model_cards import push_checkpoint_to_hub, push_folder_to_hub, write_model_card
from model_cards.plots import curve_from_log_history

from .arguments import (
    HUB_STRATEGIES,
    DataArguments,
    ModelArguments,
    ResolvedSettings,
    SettingsError,
    config_error_as_flags,
    config_kwargs,
    write_run_settings,
)
from .configuration_btsr import BTSRConfig
from .evaluation import evaluate_ranking, most_popular_ranking
from .explanations import ExplanationCallback
from .losses_btsr import default_sce_buckets
from .metrics import bootstrap_ci
from .modeling_btsr import BTSRForSequentialRecommendation
from .trainer import (
    COMPLETE_MARKER,
    WRITE_ERRORS,
    BTSRTrainer,
    RankingEvalSet,
    ResumableEarlyStopping,
    compact_metrics,
    epoch_number,
    write_error_reason,
)

__all__ = [
    "PreparedData",
    "prepare_data",
    "make_config",
    "build_model",
    "run_training",
    "finish_run",
    "AfterTrainingError",
    "save_model_atomically",
    "is_complete_checkpoint",
    "run_train_loss",
    "resolve_resume_checkpoint",
]

logger = logging.getLogger("btsr")


@dataclass
class PreparedData:
    """Everything a run needs from the data pipeline."""

    split: "object"  # data_processing.SplitData
    examples: "object"  # data_processing.TrainExamples
    item_user_counts: np.ndarray  # (num_items,) distinct training users per item
    item_interaction_counts: np.ndarray  # (num_items,) training interactions per item
    stats: dict
    source: str


def prepare_data(data_args: DataArguments, max_len: int, cache_dir: str | None = None) -> PreparedData:
    """read -> filter -> split -> training examples and partner index, with counts of what each step removed."""

    if data_args.data_path:
        frame = read_interactions(
            data_args.data_path,
            data_args.data_format,
            user_col=data_args.user_column,
            item_col=data_args.item_column,
            time_col=data_args.timestamp_column,
        )
        source, info = data_args.data_path, {"name": Path(data_args.data_path).name, "path": data_args.data_path}
    else:
        if data_args.download:
            if data_args.dataset != "ml-1m-raw":
                raise DataError(f"--download fetches ml-1m-raw only; {data_args.dataset!r} is read from --data_root")
            path = fetch_ml1m_ratings(cache_dir=data_args.cache_dir)
            frame, info = read_interactions(path, "ml1m_dat"), {"name": "ml-1m-raw", "path": str(path)}
        else:
            frame, info = load_dataset_by_name(data_args.dataset, data_args.data_root, data_args.cache_dir)
        source = str(info.get("path", data_args.dataset))
    frame, filter_report = filter_interactions(
        frame,
        min_users_per_item=data_args.min_users_per_item,
        min_items_per_user=data_args.min_items_per_user,
        k_core=data_args.k_core,
        source=source,
    )
    split = split_interactions(
        frame,
        data_args.split,
        max_len=max_len,
        source=source,
        holdout_fraction=data_args.holdout_fraction,
        holdout_seed=data_args.holdout_seed,
    )
    cache_dir = cache_dir or data_args.cache_dir or str(default_cache_dir() / "datasets")
    examples = build_train_dataset(split.train_sequences, max_len, cache_dir=cache_dir)
    num_items = len(split.item_vocab)
    interaction_counts, user_counts = item_counts(split.train_sequences, num_items)
    stats = {
        "dataset": info.get("name", data_args.dataset),
        "source": source,
        **{k: v for k, v in split.stats.items()},
        **examples.stats,
        "filtering": filter_report,
    }
    logger.info(
        f"{source}: {data_args.split} split, {stats['num_items']:,} items, {stats['num_train_users']:,} training "
        f"users, {stats['num_train_interactions']:,} training interactions, {stats['num_test_users']:,} evaluated "
        f"users, partner share {stats['partner_share']:.3f}"
    )
    return PreparedData(split, examples, user_counts, interaction_counts, to_builtin(stats), source)


def item_counts(sequences, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """`(interactions, distinct users)` per item `1..num_items` (entry `j` = item `j + 1`) over the training
    sequences. Distinct items per user by a small sort per sequence: one sort of every (user, item) key instead
    measured 5x slower (benchmarks/results/preprocess.json, `one_pass_counts`)."""
    if not len(sequences):
        return np.zeros(num_items, dtype=np.int64), np.zeros(num_items, dtype=np.int64)
    items = np.concatenate(sequences).astype(np.int64, copy=False)
    interactions = np.bincount(items, minlength=num_items + 1)[1:]
    distinct = np.concatenate([np.unique(s) for s in sequences]).astype(np.int64, copy=False)
    return interactions, np.bincount(distinct, minlength=num_items + 1)[1:]


def make_config(
    model_args: ModelArguments, num_items: int, sce_n_buckets: int | None = None, sce_bucket_size_x: int | None = None
) -> BTSRConfig:
    """The model configuration of a run.

    Raises:
        SettingsError: a value the config refuses, in the command line's terms (`config_error_as_flags`).
    """
    kwargs = config_kwargs(model_args)
    kwargs.update(sce_n_buckets=sce_n_buckets, sce_bucket_size_x=sce_bucket_size_x)
    try:
        return BTSRConfig(num_items=num_items, **kwargs)
    except (ValueError, StrictDataclassError) as error:  # the config's own message, wrapped by strict dataclasses
        cause = error.__cause__ if error.__cause__ is not None else error
        raise SettingsError(config_error_as_flags(" ".join(str(cause).split()))) from error


def trained_positions_per_row(model_args: ModelArguments, mean_labelled_positions: float) -> float:
    """How many positions of a training row a batch trains on, on average: every labelled one of the sequence, one
    (its prefix's next item) under `--prediction_span random_prefix`, the masked ones under BERT4Rec (each item of
    the row's whole sequence, labels' last included, with probability `mlm_probability`). The SCE paper's default
    bucket formula reads the positions a batch trains on.

    >>> trained_positions_per_row(ModelArguments(prediction_span="random_prefix", bt_alpha=0.0), 100.0)
    1.0
    """
    if model_args.prediction_span == "random_prefix":
        return 1.0
    if model_args.backbone == "bert4rec":
        return model_args.mlm_probability * (mean_labelled_positions + 1)
    return mean_labelled_positions


def build_model(model_args: ModelArguments, data: PreparedData, batch_size: int) -> BTSRForSequentialRecommendation:
    """A fresh model for the data's catalogue, with the SCE paper's bucket defaults resolved (from the positions a
    batch trains on, :func:`trained_positions_per_row`)."""
    n_buckets, bucket_x = model_args.sce_n_buckets, model_args.sce_bucket_size_x
    if model_args.loss_type == "sce" and (n_buckets is None or bucket_x is None):
        positions = trained_positions_per_row(model_args, data.examples.mean_labelled_positions)
        default = default_sce_buckets(batch_size, positions)
        # `is None`, not `or`: an explicit 0 must reach the config's check, not be replaced by the default.
        n_buckets = default if n_buckets is None else n_buckets
        bucket_x = default if bucket_x is None else bucket_x
    model = BTSRForSequentialRecommendation(make_config(model_args, len(data.split.item_vocab), n_buckets, bucket_x))
    vocab = data.split.item_vocab.to_json_dict()
    vocab["item_counts"] = data.item_interaction_counts.tolist()
    model.btsr.set_item_vocab(vocab)
    return model


def check_optimizer(training_args: TrainingArguments, config: BTSRConfig) -> None:
    """`--optim` (with `--optim_args`, `--optim_target_modules`) resolved as the Trainer will, on a model of the
    run's layout with a placeholder catalogue, so a missing package or a bad setting fails in one line before the
    data is read instead of as a traceback once training starts (the same module names as the real model: a target
    pattern matches the same layers). An `--optim_args` key that leaves the optimizer's arguments as they are is
    refused: the Trainer drops a key it does not read without a word. The probe models draw on the global RNG before
    the run's `set_seed`, so the run's weights do not depend on them."""
    optim = getattr(training_args.optim, "value", training_args.optim)
    pairs = [pair for pair in (training_args.optim_args or "").replace(" ", "").split(",") if pair]
    malformed = [pair for pair in pairs if pair.count("=") != 1 or not pair.split("=")[0]]
    if malformed:
        raise DataError(f"--optim_args {training_args.optim_args}: expected key=value pairs, got {malformed[0]!r}")

    def resolved(optim_args: list[str]) -> str:
        args = copy.copy(training_args)  # not dataclasses.replace: __post_init__ would run again
        args.optim_args = ",".join(optim_args) or None
        _, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, BTSRForSequentialRecommendation(config))
        return _describe(kwargs)

    try:
        full = resolved(pairs)
        unread = [pair.split("=")[0] for pair in pairs if resolved([p for p in pairs if p != pair]) == full]
    except (ImportError, ValueError) as error:
        flag = f"--optim {optim}"
        if pairs:
            try:  # the optimizer resolves without the arguments: they are what it refused
                resolved([])
                flag = f"--optim_args {training_args.optim_args}"
            except (ImportError, ValueError):
                pass  # the optimizer itself fails: --optim is named
        raise DataError(f"{flag}: {' '.join(str(error).split())}") from None
    if unread:
        raise DataError(
            f"--optim_args: {unread[0]} has no effect with --optim {optim} (the optimizer does not read it, or "
            "this value is the one it takes anyway)"
        )


def _describe(value) -> str:
    """A comparable text of optimizer keyword arguments: tensors by shape, since their values are the probe's."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return repr(value)


def save_model_atomically(model, output_dir: str) -> None:
    """Writes the model into `output_dir` so that a crash never leaves a folder that loads half-written weights.

    Files go to a temporary sibling folder first; they are moved in with `config.json` last, and any old
    `config.json` is removed first, so the folder only loads once every weight file is in place.
    """
    target = Path(output_dir)
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    (target / "config.json").unlink(missing_ok=True)
    names = sorted(p.name for p in staging.iterdir())
    for name in [n for n in names if n != "config.json"] + ["config.json"]:
        os.replace(staging / name, target / name)
    staging.rmdir()


def _checkpoint_epoch(checkpoint: str | None) -> float:
    """The epoch a run resumes from (0.0 for a fresh run), from the checkpoint's trainer state."""
    if not checkpoint:
        return 0.0
    state = Path(checkpoint) / "trainer_state.json"
    return float(json.loads(state.read_text()).get("epoch") or 0.0) if state.is_file() else 0.0


def run_train_loss(log_history: list[dict], fallback: float) -> float:
    """The mean training loss over every step of the run, from the logged losses (each the mean since the previous
    log) weighted by the steps they cover; `fallback` when nothing was logged.

    >>> run_train_loss([{"loss": 2.0, "step": 10}, {"eval_ndcg@10": 0.1, "step": 10}, {"loss": 1.0, "step": 30}], 9.0)
    1.3333333333333333
    """
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            covered = entry["step"] - previous
            total, steps, previous = total + entry["loss"] * covered, steps + covered, entry["step"]
    return total / steps if steps else fallback


def is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint whose save finished: the marker `CheckpointCompleteCallback` writes last, or, for folders from
    before it, the trainer state that the Trainer writes after the weights and the optimizer."""
    if (folder / COMPLETE_MARKER).is_file():
        return True
    return (folder / "trainer_state.json").is_file() and (folder / "optimizer.pt").is_file()


def resolve_resume_checkpoint(value: str | bool | None, output_dir: str) -> str | None:
    """What `--resume_from_checkpoint` names: `True` / `latest` the newest complete checkpoint in `output_dir`, a
    folder itself when complete; an interrupted (incomplete) checkpoint is refused, naming the newest complete one.

    Raises:
        DataError: nothing to resume from, or an incomplete checkpoint; the message says which folder to use.
    """

    if value in (None, False, "", "False", "false"):
        return None
    folders = sorted(
        Path(output_dir).glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    complete = [p for p in folders if p.is_dir() and is_complete_checkpoint(p)]
    newest = f"; the newest complete one is {complete[-1]}" if complete else ""
    if value in (True, "True", "true", "latest"):
        if not complete:
            raise DataError(f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir}")
        return str(complete[-1])
    folder = Path(value)
    if not folder.is_dir():
        raise DataError(f"--resume_from_checkpoint {value}: no such checkpoint folder{newest}")
    if not is_complete_checkpoint(folder):
        raise DataError(f"--resume_from_checkpoint {value}: incomplete checkpoint (its save was interrupted){newest}")
    return str(folder)


class HubCheckpointPush(TrainerCallback):
    """`--hub_strategy every_save`: each checkpoint's model files go to the repository as the Trainer saves them
    (the final push, with the card and the results, follows at the end). A failed upload is logged in one line and
    training goes on; the final push still has to succeed."""

    def __init__(self, hub: dict, api=None):
        self.hub, self.api = hub, api

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        try:
            push_checkpoint_to_hub(
                folder,
                self.hub["hub_model_id"],
                token=self.hub.get("hub_token"),
                private=self.hub.get("hub_private_repo"),
                revision=self.hub.get("hub_revision"),
                commit_message=f"Training in progress: step {state.global_step}, epoch {epoch_number(state.epoch)}",
                api=self.api,
            )
        except Exception as error:  # network, permissions, a full disk on the Hub side: training goes on
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            logger.warning(f"--hub_strategy every_save: uploading {folder.name} failed ({reason}); training goes on")


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    data: PreparedData | None = None,
    command: str | None = None,
    hub: dict | None = None,
    settings: ResolvedSettings | None = None,
) -> dict:
    """Trains, selects on validation NDCG@10, evaluates the selected model once on test, saves the final folder.

    Returns the results dictionary that is also written to `all_results.json` (metrics, most-popular baseline,
    bootstrap intervals for small evaluations, timings).
    """

    hub = hub or {}
    if hub.get("push_to_hub") and not hub.get("hub_model_id"):
        raise DataError("--push_to_hub needs --hub_model_id org/name (checked before training, not after)")
    if hub.get("hub_strategy", "end") not in HUB_STRATEGIES:
        choices = ", ".join(HUB_STRATEGIES)
        raise DataError(f"--hub_strategy {hub['hub_strategy']}: not supported (choose from {choices})")
    with_pairs = model_args.bt_alpha > 0
    if with_pairs and training_args.world_size > 1 and not training_args.dataloader_drop_last:
        # The global BT / InfoNCE batch needs equal local batches; accelerate would otherwise repeat samples.
        training_args.dataloader_drop_last = True
        logger.info("dataloader_drop_last=True: the self-supervised loss needs equal batches on every process")
    # Settings errors surface before any data is read (the catalogue-size checks come once it is known).
    check_optimizer(
        training_args,
        make_config(model_args, num_items=max(model_args.sce_bucket_size_y, model_args.bce_num_negatives) + 1),
    )
    resume = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    started = time.perf_counter()
    if data is None:
        data = prepare_data(data_args, model_args.max_len)
    prepare_seconds = time.perf_counter() - started
    set_seed(training_args.seed)  # before the model exists: its initial weights come from this seed
    model = build_model(model_args, data, training_args.per_device_train_batch_size * max(training_args.world_size, 1))
    config = model.config
    train_dataset = PairedTrainDataset(
        data.examples,
        seed=training_args.seed,
        with_pairs=with_pairs,
        view_maker=config.view_maker,
        crop_ratio=config.cl4srec_crop_ratio,
        mask_ratio=config.cl4srec_mask_ratio,
        reorder_ratio=config.cl4srec_reorder_ratio,
        mask_token=config.mask_token_id,
        view_span=config.ssl_view_span,
        prediction_span=config.prediction_span,
        mlm_probability=None if config.is_causal else config.mlm_probability,
        max_len=config.max_position_embeddings,
        positive_ratio=config.ec4srec_positive_ratio,
        negative_ratio=config.ec4srec_negative_ratio,
    )
    valid = RankingEvalSet(data.split.valid.contexts, data.split.valid.targets, data_args.eval_context_len)
    test = RankingEvalSet(data.split.test.contexts, data.split.test.targets, data_args.eval_context_len)
    callbacks = []
    if hub.get("push_to_hub") and hub.get("hub_strategy", "end") == "every_save":
        callbacks.append(HubCheckpointPush(hub))
    if with_pairs and config.view_maker == "ec4srec":
        callbacks.append(
            ExplanationCallback(
                train_dataset,
                config.ec4srec_explainer,
                config.ec4srec_update_epochs,
                batch_size=training_args.per_device_eval_batch_size,
                resume_from=resume,
            )
        )
    if training_args.load_best_model_at_end and training_args.eval_strategy != "no":
        callbacks.append(ResumableEarlyStopping(early_stopping_patience=data_args.patience))
    trainer = BTSRTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=valid,
        data_collator=SequenceCollator(table=train_dataset.table),
        callbacks=callbacks,
        item_user_counts=data.item_user_counts,
        eval_batch_users=training_args.per_device_eval_batch_size,
    )
    output_dir = training_args.output_dir
    if training_args.process_index == 0:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "dataset_stats.json"), "w") as handle:
            json.dump(data.stats, handle, indent=2)
        if settings is not None:
            write_run_settings(settings, output_dir)
    resumed_from_epoch = _checkpoint_epoch(resume)
    train_started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - train_started

    evaluated = any("eval_ndcg@10" in entry for entry in trainer.state.log_history)
    best_epoch = None
    if trainer.state.best_model_checkpoint:
        best_step = int(trainer.state.best_model_checkpoint.rstrip("/").rsplit("-", 1)[-1])
        best_epoch = next((e.get("epoch") for e in trainer.state.log_history if e.get("step") == best_step), None)
    # The selected (best-on-validation) model is loaded now: its validation metrics, then test, once.
    eval_metrics = trainer.evaluate(valid, metric_key_prefix="eval")
    test_metrics, per_user = evaluate_ranking(
        trainer.accelerator.unwrap_model(trainer.model).base_model,
        test.contexts,
        test.targets,
        item_user_counts=data.item_user_counts,
        prefix="test",
        batch_size=training_args.per_device_eval_batch_size,
        accelerator=trainer.accelerator if trainer.accelerator.num_processes > 1 else None,
        return_per_user=True,
        context_len=test.context_len,
    )
    trainer.log(compact_metrics(test_metrics))  # into the trainer state and trackers; train.py prints the summary
    mostpop = most_popular_ranking(
        data.split.test.contexts, data.split.test.targets, data.item_interaction_counts, prefix="test_mostpop"
    )
    results = {
        **eval_metrics,
        **test_metrics,
        **mostpop,
        "protocol": data.split.protocol,
        "num_test_users": len(data.split.test),
        "best_epoch": epoch_number(best_epoch),
        "epochs": epoch_number(trainer.state.epoch),
        "global_step": trainer.state.global_step,
        "evaluated_during_training": evaluated,
        # this invocation's time: a resumed run's earlier sessions are not in it (epochs - resumed_from_epoch are)
        "train_seconds": round(train_seconds, 2),
        "resumed_from_epoch": resumed_from_epoch,
        "prepare_seconds": round(prepare_seconds, 2),
        # Over the whole run, a resumed one's earlier sessions included (the Trainer's own covers this session).
        "train_loss": run_train_loss(trainer.state.log_history, train_output.training_loss),
        "session_train_loss": train_output.training_loss,
        "validation_curve": curve_from_log_history(trainer.state.log_history),
        # What --skip_memory_metrics False and --include_num_input_tokens_seen ask for, beside the trackers' copy.
        **{name: value for name, value in train_output.metrics.items() if "_mem_" in name},
        **(
            {"num_input_tokens_seen": trainer.state.num_input_tokens_seen}
            if training_args.include_num_input_tokens_seen != "no"  # TrainingArguments turns a bool into a word
            else {}
        ),
    }
    if len(data.split.test) < 300:
        for name in ("hr@10", "ndcg@10"):
            interval = bootstrap_ci(per_user[name], seed=training_args.seed)
            results[f"test_{name}_ci95"] = [float(interval.low), float(interval.high)]
    if command:
        results["command"] = command
    # Under FSDP every process gathers the weights (a collective), then the main process alone saves them.
    whole = trainer.accelerator.unwrap_model(trainer.model).gathered(device="cpu")
    if trainer.is_world_process_zero():
        finish_run(whole, results, per_user, data, output_dir, command, hub)
    return results


class AfterTrainingError(RuntimeError):
    """Training and evaluation finished, but saving, writing or uploading their outcome failed (a full disk, a
    refused upload). Carries the run's `results`, so the caller can show the metrics before the one-line error."""

    def __init__(self, message: str, results: dict):
        super().__init__(message)
        self.results = results


def finish_run(model, results: dict, per_user: dict, data, output_dir: str, command, hub: dict) -> None:
    """The final model folder (weights, `all_results.json`, per-user outcomes, card) and the optional upload.

    Raises:
        AfterTrainingError: a step failed; the message names the step and the folder, the checkpoints stay usable.
    """
    step = "saving the model"
    try:
        save_model_atomically(model, output_dir)
        step = "writing all_results.json"
        with open(os.path.join(output_dir, "all_results.json"), "w") as handle:
            json.dump(to_builtin(results), handle, indent=2)
        # Per-user test outcomes for paired comparisons between runs; kept in a subfolder, out of Hub uploads.
        step = "writing eval/test_per_user.json"
        os.makedirs(os.path.join(output_dir, "eval"), exist_ok=True)
        with open(os.path.join(output_dir, "eval", "test_per_user.json"), "w") as handle:
            per_user_json = {"user_ids": to_builtin(list(data.split.test.user_ids))}
            per_user_json.update({k: per_user[k].tolist() for k in ("hr@10", "ndcg@10") if k in per_user})
            json.dump(per_user_json, handle)
        step = "writing the model card"
        write_model_card(output_dir, command=command, repo_id=hub.get("hub_model_id"))
        if hub.get("push_to_hub"):
            step = f"uploading to the Hub repository {hub['hub_model_id']}"
            url = push_folder_to_hub(
                output_dir,
                hub["hub_model_id"],
                token=hub.get("hub_token"),
                private=hub.get("hub_private_repo"),
                revision=hub.get("hub_revision"),
            )
            logger.info(f"Uploaded {output_dir} to {url}")
    except WRITE_ERRORS as error:
        raise AfterTrainingError(
            f"{output_dir}: training finished, but {step} failed ({write_error_reason(error)}); "
            "the checkpoints are intact: fix the cause and rerun with --resume_from_checkpoint latest",
            results,
        ) from error
