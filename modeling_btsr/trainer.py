"""`BTSRTrainer`: the Hugging Face Trainer with BT-SR's loss normalisation, partner epochs and ranking evaluation."""

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import SafetensorError
from transformers import EarlyStoppingCallback, Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_btsr import SAMPLED_LOSS_TYPES
from .evaluation import evaluate_ranking

__all__ = [
    "BTSRTrainer",
    "RankingEvalSet",
    "NonFiniteLossError",
    "CheckpointSaveError",
    "WRITE_ERRORS",
    "write_error_reason",
    "ResumableEarlyStopping",
    "EpochLogCallback",
    "CheckpointCompleteCallback",
    "DatasetEpochCallback",
    "COMPLETE_MARKER",
    "compact_metrics",
    "epoch_number",
    "mark_batch_dynamic",
]


def epoch_number(epoch: float | None):
    """An epoch as a person writes it: `3` for a whole epoch, `1.15` for a partial one, `None` unchanged.

    >>> epoch_number(3.0), epoch_number(1.1111111111111112), epoch_number(None)
    (3, 1.11, None)
    """
    if epoch is None:
        return None
    return int(round(epoch)) if abs(epoch - round(epoch)) < 1e-6 else round(float(epoch), 2)


def mark_batch_dynamic(inputs: dict) -> dict:
    """Marks the rows and the length of every (batch, length) tensor of a batch as dynamic for `torch.compile`.

    The collator pads each batch to its own longest row, so both change from batch to batch; unmarked, the compiler
    compiles for the first shape and recompiles at the first change of each dimension (three more compilations for
    BT-SR: rows, sequence length, partner length) before it treats them as dynamic. Marks only: eager mode ignores
    them. Returns `inputs`.
    """
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            for dim in range(min(value.dim(), 2)):
                torch._dynamo.maybe_mark_dynamic(value, dim)
    return inputs


COMPLETE_MARKER = "checkpoint_complete"


class CheckpointCompleteCallback(TrainerCallback):
    """Marks a checkpoint complete once the Trainer has written all of it (`on_save` runs after the weights, the
    optimizer, the scheduler, the RNG states and the trainer state): a folder without the marker is one whose save
    was interrupted, and resuming skips it (`training_run.resolve_resume_checkpoint`)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if os.path.isdir(folder):
                with open(os.path.join(folder, COMPLETE_MARKER), "w") as handle:
                    handle.write(f"{state.global_step}\n")


class DatasetEpochCallback(TrainerCallback):
    """Tells the training dataset which epoch starts (`set_epoch`), before the epoch's data loader is iterated: the
    partners and views of `PairedTrainDataset` are drawn per epoch. A public hook in place of overriding the Trainer's
    epoch loop; the dataset keeps its epoch in shared memory, so workers (persistent ones too) follow."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the number of epochs done (a fraction into the epoch when resuming mid-epoch).
        self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-9))


class EpochLogCallback(ProgressCallback):
    """The Trainer's progress bar over steps (unless `disable_tqdm`), and one line per epoch in place of its dicts:
    the loss and its parts, validation HR@10 / NDCG@10 / Coverage@10, the best NDCG@10 so far and the epoch's time;
    with `--logging_strategy steps`, a line per logged loss too. Every metric still goes to the trainer state and
    `all_results.json`; only the main process prints."""

    def __init__(self, show_bar: bool = True):
        super().__init__()
        self.show_bar = show_bar
        self._loss: dict = {}
        self._epoch_started = time.perf_counter()
        self._best: tuple | None = None  # (NDCG@10, epoch)
        self._printed: set = set()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.show_bar:
            super().on_train_begin(args, state, control, **kwargs)
        for entry in state.log_history:  # a resumed run: the best before this session
            if "eval_ndcg@10" in entry and (self._best is None or entry["eval_ndcg@10"] > self._best[0]):
                self._best = (entry["eval_ndcg@10"], epoch_number(entry.get("epoch")))
        self._epoch_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.show_bar:
            super().on_step_end(args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.show_bar:
            super().on_train_end(args, state, control, **kwargs)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        epoch = epoch_number(logs.get("epoch", state.epoch))
        total = epoch_number(args.num_train_epochs) if args.max_steps <= 0 else None
        if "loss" in logs:
            self._loss = logs
            if args.logging_strategy == "steps":  # asked for by step: each logged window gets its line
                self._write(f"step {state.global_step}  epoch {float(logs.get('epoch', 0.0)):.2f}  {self._loss_text()}")
            elif args.eval_strategy == "no":
                self._write(f"epoch {epoch}{'/' + str(total) if total else ''}  {self._loss_text()}")
        elif "eval_ndcg@10" in logs and epoch not in self._printed:
            self._printed.add(epoch)
            ndcg = logs["eval_ndcg@10"]
            if self._best is None or ndcg > self._best[0]:
                self._best = (ndcg, epoch)
            self._write(
                f"epoch {epoch}{'/' + str(total) if total else ''}  {self._loss_text()}  valid "
                f"HR@10 {logs['eval_hr@10']:.4f} NDCG@10 {ndcg:.4f} Coverage@10 {logs['eval_coverage@10']:.4f}  "
                f"best NDCG@10 {self._best[0]:.4f} (epoch {self._best[1]})  "
                f"{time.perf_counter() - self._epoch_started:.1f} s"
            )
        elif "train_runtime" in logs:
            self._write(f"trained to epoch {epoch} ({state.global_step} steps) in {logs['train_runtime']:.0f} s")

    def _loss_text(self) -> str:
        if "loss" not in self._loss:
            return ""
        parts = [
            f"{name.removesuffix('_loss')} {self._loss[name]:.4f}"
            for name in ("prediction_loss", "bt_loss", "ssl_loss", "negative_loss")
            if name in self._loss
        ]
        return f"loss {self._loss['loss']:.4f}" + (f" ({', '.join(parts)})" if parts else "")

    def _write(self, text: str) -> None:
        if self.training_bar is not None:
            self.training_bar.write(text)
        else:
            print(text, flush=True)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf: training stops before a broken model is saved."""


WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)
"""What a failed write of a model or checkpoint raises: a full disk surfaces as an OSError (json, pickle), a
SafetensorError (the weights) or a RuntimeError from torch.save's zip writer (the optimizer), none naming the file."""


def write_error_reason(error: BaseException) -> str:
    """`Type: reason` of a failed write, on one line (an OSError's own text without its `[Errno N]` prefix).

    >>> write_error_reason(OSError(28, "No space left on device"))
    'OSError: No space left on device'
    """
    reason = error.strerror if isinstance(error, OSError) and error.strerror else " ".join(str(error).split())
    return f"{type(error).__name__}: {reason or 'no detail'}"


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (a full disk, a quota, a read-only folder): training stops with one line
    naming the folder. That folder never gets its completeness marker, so resuming skips it; the checkpoints saved
    before it stay complete."""


class ResumableEarlyStopping(EarlyStoppingCallback):
    """`EarlyStoppingCallback` whose patience counter survives a resume, so a resumed run stops where an
    uninterrupted one stops.

    The Trainer restores callback state only with `restore_callback_states_from_checkpoint` (off by default), so the
    stock callback restarts from 0 at every resume and a run resumed k evaluations after its best trains up to k
    epochs longer. Here the counter is rebuilt at train begin from the checkpoint's own record: the number of
    evaluations logged after the best one (`state.best_global_step`). That is exactly the stock counter when
    `early_stopping_threshold` is 0, the only threshold allowed here. Checkpoints written under the stock callback
    resume with it too.
    """

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        # (The threshold argument exists so the Trainer can rebuild this callback from its saved `state()`.)
        if early_stopping_threshold != 0.0:
            raise ValueError(
                f"ResumableEarlyStopping rebuilds its counter exactly only with early_stopping_threshold=0.0, got "
                f"{early_stopping_threshold}"
            )
        super().__init__(early_stopping_patience=early_stopping_patience, early_stopping_threshold=0.0)

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        # A checkpoint written under the stock callback has no entry for this one, and the Trainer's checkpoint
        # saving indexes that entry by class name (KeyError): register it.
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())
        metric = args.metric_for_best_model
        key = metric if metric.startswith("eval_") else f"eval_{metric}"
        best_step = state.best_global_step
        self.early_stopping_patience_counter = (
            0
            if best_step is None
            else sum(1 for entry in state.log_history if key in entry and entry.get("step", 0) > best_step)
        )


@dataclass
class RankingEvalSet(torch.utils.data.Dataset):
    """Evaluation users: `contexts[u]` (item indices, oldest first) and the item `targets[u]` to rank.

    A `Dataset` so the Trainer's evaluation plumbing (strategies, early stopping) accepts it; `BTSRTrainer.evaluate`
    reads the fields directly and ranks the whole catalogue.
    """

    contexts: Sequence
    targets: np.ndarray
    context_len: int | None = None  # the model reads each context's last `context_len` items (None: max_len)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": list(self.contexts[index]), "target": int(self.targets[index])}


class BTSRTrainer(Trainer):
    """Trainer for :class:`~modeling_btsr.BTSRForSequentialRecommendation`.

    - Loss: `prediction_loss + bt_alpha * ssl_loss` (Barlow Twins or InfoNCE, by the config's `ssl_objective`).
      CE and BCE are sums over labelled positions divided by the Trainer's `num_items_in_batch` (all accumulation
      steps, all processes), so gradient accumulation and several processes give the one-process, one-batch
      gradient; the world-size factor undoes DDP's averaging. SCE (a mean over picked positions) and the SSL loss
      (a batch statistic whose gradient is already global through the autograd-aware gather) are divided by the
      accumulation steps only.
    - The two parts are logged separately as `prediction_loss` and `bt_loss` (Barlow Twins) or `ssl_loss` (InfoNCE).
    - Before each epoch the training dataset's `set_epoch` selects that epoch's partner draw (stateless in
      (seed, epoch, row), so resumes and process counts do not change it).
    - `evaluate` ranks the full catalogue for the users of a :class:`RankingEvalSet` (see
      :func:`modeling_btsr.evaluation.evaluate_ranking`) and reports `eval_hr@10`, `eval_ndcg@10`, ...

    Args:
        item_user_counts (`np.ndarray` of shape `(num_items,)`, *optional*): distinct training users per item,
            for popularity buckets and calibration metrics.
        eval_batch_users (`int`): users scored at once in evaluation.
        All other arguments are the Trainer's.
    """

    def __init__(self, *args, item_user_counts: np.ndarray | None = None, eval_batch_users: int = 256, **kwargs):
        super().__init__(*args, **kwargs)
        # One compact line per epoch instead of the stock dicts (the progress bar stays unless disable_tqdm).
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)
        self.add_callback(EpochLogCallback(show_bar=not self.args.disable_tqdm))
        self.add_callback(CheckpointCompleteCallback())
        if hasattr(self.train_dataset, "set_epoch"):
            self.add_callback(DatasetEpochCallback(self.train_dataset))
        self.item_user_counts = item_user_counts
        self.eval_batch_users = eval_batch_users
        self._loss_parts = {"prediction_loss": 0.0, "ssl_loss": 0.0, "negative_loss": 0.0, "steps": 0}
        objective = getattr(self.accelerator.unwrap_model(self.model).config, "ssl_objective", "barlow_twins")
        self._ssl_log_name = "bt_loss" if objective == "barlow_twins" else "ssl_loss"

    # ---------------------------------------------------------------------------------------------------- training
    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint save, with a failure to write (:data:`WRITE_ERRORS`) turned into a
        :class:`CheckpointSaveError` that names the folder."""
        try:
            super()._save_checkpoint(model, trial)
        except WRITE_ERRORS as err:
            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            raise CheckpointSaveError(
                f"{folder}: cannot write this checkpoint ({write_error_reason(err)}); it stays incomplete and "
                f"resuming skips it. Free space, then rerun with --resume_from_checkpoint latest to continue from the "
                f"newest complete checkpoint in {run_dir}"
            ) from err

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        config = self.accelerator.unwrap_model(model).config
        sums_over_positions = config.loss_type in ("ce", *SAMPLED_LOSS_TYPES)
        if self.args.torch_compile:
            mark_batch_dynamic(inputs)
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch if sums_over_positions else None)
        if not model.training:
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        accumulation = getattr(self, "current_gradient_accumulation_steps", 1) or 1
        prediction = outputs.prediction_loss
        if sums_over_positions and num_items_in_batch is not None:
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                prediction = prediction * self.accelerator.num_processes
        else:
            prediction = prediction / accumulation
        loss = prediction
        ssl_loss = outputs.ssl_loss  # Barlow Twins or InfoNCE, by the config's ssl_objective
        if ssl_loss is not None:
            loss = loss + config.bt_alpha * ssl_loss / accumulation
        negative_loss = outputs.negative_loss  # EC4SRec's negative views
        if negative_loss is not None:
            loss = loss + config.ec4srec_negative_weight * negative_loss / accumulation
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at step {self.state.global_step} "
                f"(prediction_loss={outputs.prediction_loss.item()}, "
                f"ssl_loss={None if ssl_loss is None else ssl_loss.item()}, "
                f"negative_loss={None if negative_loss is None else negative_loss.item()}); stopped before saving. "
                "Lower --learning_rate or check the data."
            )
        # Logged as plain per-batch means, whatever the normalisation used for the gradient.
        batch_prediction = outputs.prediction_loss.detach()
        if sums_over_positions and num_items_in_batch is not None:
            batch_prediction = batch_prediction * num_items_in_batch / outputs.num_prediction_positions.clamp_min(1)
        self._loss_parts["prediction_loss"] += float(batch_prediction)
        if ssl_loss is not None:
            self._loss_parts["ssl_loss"] += ssl_loss.detach().item()
        if negative_loss is not None:
            self._loss_parts["negative_loss"] += negative_loss.detach().item()
        self._loss_parts["steps"] += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs):
        if "loss" in logs and self._loss_parts["steps"]:
            steps = self._loss_parts["steps"]
            logs["prediction_loss"] = round(self._loss_parts["prediction_loss"] / steps, 6)
            if self._loss_parts["ssl_loss"]:
                logs[self._ssl_log_name] = round(self._loss_parts["ssl_loss"] / steps, 6)
            if self._loss_parts["negative_loss"]:
                logs["negative_loss"] = round(self._loss_parts["negative_loss"] / steps, 6)
            self._loss_parts = dict.fromkeys(self._loss_parts, 0.0) | {"steps": 0}
        super().log(logs, *args, **kwargs)

    # -------------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **kwargs) -> dict:
        """Full-ranking metrics of the users in `eval_dataset` (a :class:`RankingEvalSet`), logged and returned."""

        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if not isinstance(dataset, RankingEvalSet):
            raise TypeError("BTSRTrainer.evaluate needs a RankingEvalSet of evaluation users")
        model = self.accelerator.unwrap_model(self.model)
        metrics = evaluate_ranking(
            model.base_model,
            dataset.contexts,
            dataset.targets,
            item_user_counts=self.item_user_counts,
            batch_size=self.eval_batch_users,
            prefix=metric_key_prefix,
            accelerator=self.accelerator if self.accelerator.num_processes > 1 else None,
            context_len=dataset.context_len,
        )
        if self.state.epoch is not None:
            metrics["epoch"] = self.state.epoch
        self.log(compact_metrics(metrics))
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def compact_metrics(metrics: dict) -> dict:
    """The metrics worth a log line: everything at K=10 (buckets included) and the catalogue-level summaries.

    The full set (K in 1, 5, 10, 20, 50) is returned by `evaluate` and written to `all_results.json`.
    """
    keep = ("@10", "_entropy", "_effective_rank", "_num_users", "epoch")
    return {k: v for k, v in metrics.items() if any(tag in k for tag in keep) and not k.endswith("@10_ci95")}
