"""Training examples as a :class:`datasets.Dataset`, with the same-target partner index of the Barlow Twins loss.

Training is sequence-to-sequence: a user's training sequence ``s_1..s_n`` gives one example with

* ``input_ids = s_1..s_{n-1}`` and ``labels = s_2..s_n`` (each cut to its last ``max_len`` positions, so position
  ``t`` of ``input_ids`` predicts position ``t`` of ``labels``);
* ``target = s_n``: the last training item. Two users with the same ``target`` are Barlow Twins partners (BT-SR
  section 2): view B of a user is the ``input_ids`` of another user with the same target.

Partner index. Rows are grouped by ``target``; ``partner_rows`` (shape ``(N,)``) lists all rows sorted by
``(target, row)``, so the group of row ``r`` is ``partner_rows[partner_group_start[r] : partner_group_start[r] +
partner_group_size[r]]`` and ``r`` sits at position ``partner_rank[r]`` inside it. Drawing a partner is then O(1) per
row and needs no per-epoch state (see :mod:`data_processing.pairs`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
from datasets.table import InMemoryTable, cast_array_to_feature

from .errors import DataError

__all__ = ["TrainExamples", "build_train_dataset", "partner_index"]

# Bump when the columns or their meaning change: it is part of the cache key, so old cache files are not reused.
_CACHE_VERSION = "btsr-train-examples-v1"

_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int64")),
        "labels": datasets.List(datasets.Value("int64")),
        "target": datasets.Value("int64"),
        "row": datasets.Value("int64"),
        "user_index": datasets.Value("int64"),
    }
)


@dataclass
class TrainExamples:
    """Training examples and their partner index.

    Attributes:
        dataset: one row per training sequence with >= 2 items; columns ``input_ids``, ``labels`` (lists of the
            same length ``<= max_len``), ``target``, ``row`` (``0..N-1``, the row's own position),
            ``user_index`` (position in the ``train_sequences`` given, i.e. in ``SplitData.train_user_ids``),
            ``partner_group_start``, ``partner_group_size``, ``partner_rank``.
        partner_rows: int64 ``(N,)``, all rows sorted by ``(target, row)``.
        partner_share: share of rows whose target group has another member (the paper's "share of users with a
            same-target partner").
        num_dropped_short: training sequences with fewer than 2 items (no label to predict): left out.
        max_len: the truncation length used.
        num_targets_beyond_max_len: training targets older than a row's last ``max_len`` positions, never
            trained on (usual SASRec practice, counted so that it is reported).
        mean_labelled_positions: mean number of labelled positions per row after truncation (the SCE default
            ``n_b = b_x = int(2 * sqrt(batch_size * mean_labelled_positions))`` uses it).
        fingerprint: the content hash of the examples (their dataset's fingerprint and cache-file key); what is
            derived from them per epoch (:func:`data_processing.pairs.epoch_pairs`) is keyed by it.
    """

    dataset: datasets.Dataset
    partner_rows: np.ndarray
    partner_share: float
    num_dropped_short: int
    max_len: int
    mean_labelled_positions: float
    num_targets_beyond_max_len: int = 0
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def stats(self) -> dict:
        """JSON-serialisable summary for the dataset statistics."""
        return {
            "num_train_examples": len(self.dataset),
            "num_train_sequences_too_short": int(self.num_dropped_short),
            "num_train_targets_beyond_max_len": int(self.num_targets_beyond_max_len),
            "partner_share": float(self.partner_share),
            "mean_labelled_positions": float(self.mean_labelled_positions),
        }


def partner_index(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group rows by target.

    Args:
        targets: int array ``(N,)``, the target of row ``r`` at ``targets[r]``.

    Returns:
        ``(partner_rows, group_start, group_size, rank)``: ``partner_rows`` ``(N,)`` = rows sorted by
        ``(target, row)``; the other three ``(N,)`` per row, such that
        ``partner_rows[group_start[r] + rank[r]] == r`` and the group is ``partner_rows[group_start[r]:
        group_start[r] + group_size[r]]``.

    >>> rows, start, size, rank = partner_index(np.array([7, 5, 7, 7]))
    >>> rows.tolist(), start.tolist(), size.tolist(), rank.tolist()
    ([1, 0, 2, 3], [1, 0, 1, 1], [3, 1, 3, 3], [0, 0, 1, 2])
    """
    targets = np.asarray(targets, dtype=np.int64)
    n = len(targets)
    partner_rows = _rows_by_target(targets)
    sorted_targets = targets[partner_rows]
    first = np.ones(n, dtype=bool)
    np.not_equal(sorted_targets[1:], sorted_targets[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, n))
    position = np.empty(n, dtype=np.int64)
    position[partner_rows] = np.arange(n, dtype=np.int64)
    group_of_position = np.repeat(np.arange(len(starts)), sizes)
    group = group_of_position[position]
    group_start = starts[group].astype(np.int64)
    group_size = sizes[group].astype(np.int64)
    return partner_rows, group_start, group_size, position - group_start


def _rows_by_target(targets: np.ndarray) -> np.ndarray:
    """The rows sorted by ``(target, row)``: a stable argsort of the targets.

    Non-negative targets (item indices) are packed with their row into one distinct int64 each, so numpy's
    vectorised unstable sort gives the stable order faster than its merge sort does.
    """
    n = len(targets)
    shift = max(n - 1, 1).bit_length()
    if n == 0 or targets.min() < 0 or max(int(targets.max()), 1).bit_length() + shift > 63:
        return np.argsort(targets, kind="stable").astype(np.int64)
    packed = targets << shift
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    return packed & ((1 << shift) - 1)


def _flat_sequences(train_sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The length of every sequence and all their items back to back (int64), as
    ``np.asarray(s, dtype=np.int64).reshape(-1)`` of each would give them."""
    sequences = train_sequences if isinstance(train_sequences, list) else list(train_sequences)
    if not sequences:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    try:
        # The usual input (1-D integer arrays) in two C-level passes; anything else takes the per-sequence path.
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        values = np.concatenate(sequences)
        if values.ndim == 1 and values.dtype.kind in "iub" and len(values) == lengths.sum():
            return lengths, values.astype(np.int64, copy=False)
    except (TypeError, ValueError):
        pass
    sequences = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    return lengths, np.concatenate(sequences)


def _ranges_list_array(values: np.ndarray, begins: np.ndarray, widths: np.ndarray) -> pa.ListArray:
    """A list<int64> Arrow column whose row ``k`` is ``values[begins[k] : begins[k] + widths[k]]``."""
    offsets = np.zeros(len(widths) + 1, dtype=np.int32)
    np.cumsum(widths, out=offsets[1:])
    gather = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - begins, widths)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[gather]))


def _content_hash(lengths: np.ndarray, values: np.ndarray, max_len: int) -> str:
    """Key of the cache file: every input that changes the dataset changes the name."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_CACHE_VERSION.encode())
    h.update(np.int64(max_len).tobytes())
    h.update(np.ascontiguousarray(lengths, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return h.hexdigest()


def build_train_dataset(
    train_sequences: Sequence[np.ndarray], max_len: int, cache_dir: str | os.PathLike | None = None
) -> TrainExamples:
    """Build the training examples and the same-target partner index.

    Args:
        train_sequences: full chronological item-index sequences (``SplitData.train_sequences``), not truncated.
        max_len: positions kept per example (the most recent ones).
        cache_dir: if given, the partner-index ``Dataset.map`` writes its result to
            ``<cache_dir>/btsr-train-<content hash>.arrow`` and a later call with the same sequences and
            ``max_len`` loads it instead (``datasets`` caches only file-backed data by itself, and these are built in
            memory). The name hashes the content, so different data never reuses a stale file.

    Returns:
        :class:`TrainExamples`.
    """
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise DataError(f"training examples: max_len must be a positive integer, got {max_len!r}")
    max_len = int(max_len)
    lengths, values = _flat_sequences(train_sequences)
    kept = np.flatnonzero(lengths >= 2)
    num_dropped_short = int(len(lengths) - len(kept))

    if len(kept) == 0:
        raise DataError(
            f"training examples: none of the {len(lengths)} training sequences has the 2 items a next-item example "
            "needs (under leave-one-out a user needs at least 4 interactions); nothing to train on"
        )
    # Row k: input_ids = s[:-1][-max_len:] and labels = s[1:][-max_len:], as offsets into `values`.
    ends = np.cumsum(lengths)[kept]
    widths = np.minimum(lengths[kept] - 1, max_len)
    targets = values[ends - 1]
    n = len(kept)

    columns = {
        "input_ids": _ranges_list_array(values, ends - 1 - widths, widths),
        "labels": _ranges_list_array(values, ends - widths, widths),
        "target": pa.array(targets, type=pa.int64()),
        "row": pa.array(np.arange(n, dtype=np.int64)),
        "user_index": pa.array(kept.astype(np.int64)),
    }
    digest = _content_hash(lengths, values, max_len)
    # What Dataset.from_dict builds, but with a fingerprint given: without one, `datasets` makes it by pickling the
    # whole table, while the content hash already names these rows.
    base = datasets.Dataset(
        InMemoryTable.from_pydict({name: cast_array_to_feature(c, _FEATURES[name]) for name, c in columns.items()}),
        info=datasets.DatasetInfo(features=_FEATURES),
        fingerprint=f"{digest}-rows",
    )

    # The grouping is global (a row's group spans the whole dataset), so it is computed once here with numpy; the
    # batched map then writes each row's share of it as columns, and is what gets cached.
    partner_rows, group_start, group_size, rank = partner_index(targets)

    def add_partner_columns(batch: dict) -> dict:
        rows = np.asarray(batch["row"], dtype=np.int64)
        return {
            "partner_group_start": group_start[rows],
            "partner_group_size": group_size[rows],
            "partner_rank": rank[rows],
        }

    map_kwargs = {}
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        map_kwargs = {
            "cache_file_name": os.path.join(os.fspath(cache_dir), f"btsr-train-{digest}.arrow"),
            "load_from_cache_file": True,
        }
    dataset = base.map(
        add_partner_columns,
        batched=True,
        batch_size=10_000,
        # An explicit fingerprint: otherwise `datasets` hashes the closure (and the numpy arrays it captures).
        new_fingerprint=digest,
        desc=None,
        **map_kwargs,
    )

    has_partner = group_size > 1
    return TrainExamples(
        dataset=dataset,
        partner_rows=partner_rows,
        partner_share=float(has_partner.mean()) if n else 0.0,
        num_dropped_short=num_dropped_short,
        max_len=max_len,
        mean_labelled_positions=float(np.mean(widths)) if n else 0.0,
        # A sequence of n items has n - 1 targets, of which the last max_len are trained on.
        num_targets_beyond_max_len=int(np.maximum(lengths[kept] - 1 - max_len, 0).sum()),
        fingerprint=digest,
    )
