"""Stateless same-target partner draws and the torch dataset that serves (view A, view B) pairs.

View B of row ``r`` (BT-SR section 2) is the ``input_ids`` of another row with the same target, drawn uniformly among
the *other* members of ``r``'s group, re-drawn every epoch; a row alone in its group is its own partner (the two
views then differ only by dropout).

The draw is a pure function of ``(seed, epoch, row)``: a splitmix64 hash of the three values, computed in numpy
``uint64`` arithmetic (wrapping modulo 2**64)::

    u = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ row)
    j = u mod (size - 1);  j += (j >= rank)          # skip the row's own slot in its group
    partner = partner_rows[start + j]

So it does not depend on how many processes or dataloader workers there are, on the batch order, or on resuming
from a checkpoint; nothing about it is stored in the cached dataset. The bias of ``u mod k`` for ``k < 2**32`` is
below ``2**-32``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .sequences import TrainExamples

__all__ = ["splitmix64", "draw_partners", "PairedTrainDataset"]

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014) applied elementwise to a ``uint64`` array.

    >>> splitmix64(np.array([0], dtype=np.uint64)).tolist()  # the reference generator's first output from seed 0
    [16294208416658607535]
    """
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):  # multiplication and addition wrap modulo 2**64 by design
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def _as_u64(value: int) -> np.ndarray:
    # Any Python int (negative seeds included) -> its two's-complement residue modulo 2**64, as a 1-element array
    # (numpy warns on scalar overflow but not on arrays).
    return np.array([int(value) & _MASK64], dtype=np.uint64)


def draw_partners(
    seed: int,
    epoch: int,
    rows: np.ndarray,
    group_start: np.ndarray,
    group_size: np.ndarray,
    rank: np.ndarray,
    partner_rows: np.ndarray,
) -> np.ndarray:
    """Draw one same-target partner for each row in ``rows``.

    Args:
        seed, epoch: the draw's key together with the row (``epoch`` is cast to int).
        rows: int ``(n,)``, the anchor rows, in any order and with repeats allowed.
        group_start, group_size, rank: int ``(N,)``, per-row partner index (see
            :func:`data_processing.sequences.partner_index`).
        partner_rows: int ``(N,)``, all rows sorted by ``(target, row)``.

    Returns:
        int64 ``(n,)``: ``partner[k]`` is uniform over the other rows of ``rows[k]``'s group, or ``rows[k]`` itself
        when the group has one member. Element ``k`` depends only on ``(seed, epoch, rows[k])``.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    start = np.asarray(group_start, dtype=np.int64)[rows]
    size = np.asarray(group_size, dtype=np.int64)[rows]
    own = np.asarray(rank, dtype=np.int64)[rows]

    key = splitmix64(splitmix64(_as_u64(seed)) ^ _as_u64(int(epoch)))
    u = splitmix64(key ^ rows.astype(np.uint64))
    others = np.maximum(size - 1, 1).astype(np.uint64)  # max(.,1): groups of one are overwritten below
    j = (u % others).astype(np.int64)
    j += j >= own
    partners = np.asarray(partner_rows, dtype=np.int64)[start + np.where(size > 1, j, own)]
    return partners


class PairedTrainDataset(torch.utils.data.Dataset):
    """Map-style dataset over :class:`~data_processing.sequences.TrainExamples` for the Trainer.

    ``dataset[i]`` is ``{"input_ids": [...], "labels": [...]}`` and, with pairs, ``"pair_input_ids"`` = the
    ``input_ids`` of row ``i``'s partner for the current epoch. The Trainer (through accelerate's data loader) calls
    :meth:`set_epoch` at each epoch start. The columns are read out of Arrow once, here: per-item Arrow row access
    would dominate the data loading time.

    Args:
        examples: the training examples.
        seed: the partner draw's seed.
        with_pairs: ``False`` for ``alpha = 0`` (plain SASRec): no partner columns are read and no random number is
            drawn.
    """

    def __init__(self, examples: TrainExamples, seed: int, with_pairs: bool = True):
        self.seed = int(seed)
        self.with_pairs = bool(with_pairs)
        self.epoch = 0
        columns = ["input_ids", "labels"]
        if self.with_pairs:
            columns += ["partner_group_start", "partner_group_size", "partner_rank"]
        table = examples.dataset.select_columns(columns).with_format(None)[:]
        self._input_ids: list[list[int]] = table["input_ids"]
        self._labels: list[list[int]] = table["labels"]
        self._partners: np.ndarray | None = None
        if self.with_pairs:
            self._group_start = np.asarray(table["partner_group_start"], dtype=np.int64)
            self._group_size = np.asarray(table["partner_group_size"], dtype=np.int64)
            self._rank = np.asarray(table["partner_rank"], dtype=np.int64)
            self._partner_rows = np.asarray(examples.partner_rows, dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose partners ``__getitem__`` serves."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._partners = None

    def partners(self, epoch: int | None = None) -> np.ndarray:
        """All rows' partners for ``epoch`` (default: the current one), int64 ``(N,)``."""
        if not self.with_pairs:
            raise ValueError("this dataset was built with with_pairs=False: it has no partners")
        if epoch is not None and int(epoch) != self.epoch:
            return self._draw(int(epoch))
        if self._partners is None:
            # One vectorised draw per epoch; identical to drawing row by row, since each draw is stateless.
            self._partners = self._draw(self.epoch)
        return self._partners

    def _draw(self, epoch: int) -> np.ndarray:
        rows = np.arange(len(self._input_ids), dtype=np.int64)
        return draw_partners(
            self.seed, epoch, rows, self._group_start, self._group_size, self._rank, self._partner_rows
        )

    def __len__(self) -> int:
        return len(self._input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        item = {"input_ids": self._input_ids[i], "labels": self._labels[i]}
        if self.with_pairs:
            item["pair_input_ids"] = self._input_ids[int(self.partners()[i])]
        return item
