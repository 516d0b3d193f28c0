"""EC4SRec's item importance scores, and the callback that refreshes them during training.

Wang et al., "Explanation Guided Contrastive Learning for Sequential Recommendation" (EC4SRec), CIKM 2022, as the
authors' code computes them (demoleiwang/EC4SRec, Captum on a copy of the model in evaluation mode): the score of
item ``j`` of a sequence explains the logit of the item the model ranks first after that sequence, ``f(x) =
max_i h(x) . e_i``, where ``x`` holds the sequence's item embeddings before the position embeddings are added.

- saliency: ``sum_k |d f / d x_jk|``, the absolute gradient summed over the embedding's coordinates;
- occlusion: ``f(x) - f(x with x_j = 0)``, the drop of the top logit (of the occluded pass's own top item) when
  item ``j``'s embedding is zeroed.

The authors' code divides the scores by their L2 norm over the batch; the views choose items by rank within a
sequence, which no positive factor changes, so the scores are left unscaled here. Rows do not interact in an
evaluation pass, so a batch's gradient of ``sum_b f(x_b)`` holds each row's own.
"""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
import torch
from transformers.trainer_callback import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_btsr import EXPLAINERS

__all__ = ["IMPORTANCE_FILE", "ExplanationCallback", "importance_scores", "occlusion_scores", "saliency_scores"]

logger = logging.getLogger(__name__)

IMPORTANCE_FILE = "ec4srec_importance.npz"
"""Saved in each checkpoint: the scores and the epoch they explain, so that a resumed run uses the same ones."""


def _top_logit(encoder, input_ids: torch.Tensor, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """`f` of each row: the largest next-item logit, `(batch,)`."""
    users = encoder(input_ids, inputs_embeds=inputs_embeds).user_embeddings
    return (users @ encoder.item_embedding_matrix().T).max(dim=1).values


def saliency_scores(encoder, input_ids: torch.Tensor) -> torch.Tensor:
    """Saliency of every item of left-padded `input_ids` `(batch, seq_len)` for its row's top logit, `(batch,
    seq_len)`, 0 at padding. `encoder` is a :class:`~modeling_btsr.BTSRModel` in evaluation mode."""
    embeds = encoder.embed_items(input_ids).detach().requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(_top_logit(encoder, input_ids, embeds).sum(), embeds)
    return gradient.abs().sum(dim=-1) * (input_ids != 0)


@torch.no_grad()
def occlusion_scores(encoder, input_ids: torch.Tensor) -> torch.Tensor:
    """Occlusion score of every item of left-padded `input_ids` `(batch, seq_len)`, `(batch, seq_len)`, 0 at
    padding: one pass per column, that column's embeddings zeroed."""
    embeds = encoder.embed_items(input_ids)
    is_item = input_ids != 0
    base = _top_logit(encoder, input_ids, embeds)
    scores = torch.zeros(input_ids.shape, dtype=base.dtype, device=input_ids.device)
    for column in range(input_ids.shape[1]):
        rows = is_item[:, column].nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        occluded = embeds[rows].clone()
        occluded[:, column] = 0
        scores[rows, column] = base[rows] - _top_logit(encoder, input_ids[rows], occluded)
    return scores


def importance_scores(
    encoder, table, explainer: str, batch_size: int = 256, shard: tuple[int, int] = (0, 1)
) -> np.ndarray:
    """Scores of every item of every row of `table`'s ``input_ids`` (a :class:`~data_processing.SequenceTable`),
    back to back as ``table.flat("input_ids")``, float32; `encoder` is put in evaluation mode meanwhile.

    `shard=(index, count)` scores only batches `index, index + count, ...` of the one-process order and leaves the
    other rows 0, so that `count` processes summing their arrays get the one-process scores bit for bit (each batch
    is the same batch, whichever process scores it)."""
    if explainer not in EXPLAINERS:
        raise ValueError(f"explainer must be one of {', '.join(EXPLAINERS)}, got {explainer!r}")
    score = saliency_scores if explainer == "saliency" else occlusion_scores
    device = encoder.item_embeddings.weight.device
    lengths = table.lengths("input_ids")
    out = np.zeros(int(lengths.sum()), dtype=np.float32)
    starts = table.offsets("input_ids")
    order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding per batch
    was_training = encoder.training
    encoder.eval()
    try:
        index, count = shard
        for first in range(index * batch_size, len(order), count * batch_size):
            rows = order[first : first + batch_size]
            input_ids, mask = table.left_padded("input_ids", rows)
            values = score(encoder, input_ids.to(device)).float().cpu().numpy()
            # The real cells row by row, oldest first, are the rows' flat slices back to back.
            counts = lengths[rows]
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            out[np.repeat(starts[rows], counts) + within] = values[mask.numpy().astype(bool)]
    finally:
        encoder.train(was_training)
    return out


class ExplanationCallback(TrainerCallback):
    """Computes EC4SRec's importance scores with the model being trained after each of `update_epochs` completed
    epochs and hands them to the training dataset (`set_importance`, seen by every data-loader worker); saves them
    in each checkpoint (:data:`IMPORTANCE_FILE`) and reads them back on resume, so a resumed run explains nothing
    twice and trains on the scores an uninterrupted run would. Under several processes each scores its share of
    the batches with its replica of the weights (identical under DDP) and a sum across processes gives every
    process all the scores, the one-process ones."""

    def __init__(self, dataset, explainer: str, update_epochs, batch_size: int = 256, resume_from: str | None = None):
        self.dataset = dataset
        self.explainer = explainer
        self.update_epochs = [int(e) for e in update_epochs]
        self.batch_size = int(batch_size)
        self.resume_from = resume_from
        self.explained_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        path = None if self.resume_from is None else os.path.join(self.resume_from, IMPORTANCE_FILE)
        if path is not None and os.path.exists(path):
            with np.load(path) as saved:
                self.dataset.set_importance(saved["scores"])
                self.explained_at = int(saved["epoch"])

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        done = math.floor((state.epoch or 0.0) + 1e-9)  # epochs completed
        due = [e for e in self.update_epochs if e <= done]
        if not due or self.explained_at == due[-1]:
            return
        started = time.perf_counter()
        encoder = getattr(model, "btsr", model)
        shard = (args.process_index, args.world_size)
        scores = importance_scores(encoder, self.dataset.table, self.explainer, self.batch_size, shard)
        if args.world_size > 1:  # rows are scored by one process each, 0 elsewhere: the sum is exact
            gathered = torch.from_numpy(scores).to(encoder.item_embeddings.weight.device)
            torch.distributed.all_reduce(gathered)
            scores = gathered.cpu().numpy()
        self.dataset.set_importance(scores)
        self.explained_at = due[-1]
        logger.info(
            f"EC4SRec importance scores ({self.explainer}) after epoch {done}: {time.perf_counter() - started:.1f} s"
        )

    def on_save(self, args, state, control, **kwargs):
        scores = self.dataset.importance()
        if scores is None or not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if os.path.isdir(folder):
            np.savez(os.path.join(folder, IMPORTANCE_FILE), scores=scores, epoch=np.int64(self.explained_at))
