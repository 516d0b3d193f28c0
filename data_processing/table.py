"""Integer-list columns of a :class:`datasets.Dataset` as flat numpy arrays, gathered into left-padded batches.

A ``list<int64>`` Arrow column is a ``values`` buffer and an ``offsets`` buffer: row ``r`` is
``values[offsets[r] : offsets[r + 1]]``. :class:`SequenceTable` keeps exactly those two arrays per column, read
without copying when the column is one contiguous chunk (a memory-mapped cache file is), otherwise copied once into
one contiguous array. Unlike lists of Python ints they are shared by forked data-loader workers without copying (no
reference counts are touched), and a batch is gathered with a few vectorised numpy operations
(:meth:`SequenceTable.left_padded`), with no per-row Python work.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa
import torch

__all__ = ["SequenceTable"]


def _flat_column(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """`(offsets, values)` int64 numpy arrays of a list<int> column; zero-copy for one chunk at offset 0."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if array.null_count:
        raise ValueError("SequenceTable: a list column holds nulls; every row needs a list")
    offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = array.values.to_numpy(zero_copy_only=False)
    if values.dtype != np.int64:
        values = values.astype(np.int64)
    return offsets, values


class SequenceTable:
    """The ``input_ids`` and ``labels`` (or any other list columns) of a dataset, as offsets and values.

    Args:
        dataset: a :class:`datasets.Dataset` (e.g. :attr:`TrainExamples.dataset`).
        columns: the list<int> columns to hold.

    >>> table = SequenceTable(datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [4]]}), ["input_ids"])
    >>> table.row("input_ids", 0).tolist(), len(table)
    ([1, 2, 3], 2)
    >>> values, mask = table.left_padded("input_ids", np.array([1, 0]))
    >>> values.tolist(), mask.tolist()
    ([[0, 0, 4], [1, 2, 3]], [[0, 0, 1], [1, 1, 1]])
    """

    def __init__(self, dataset: datasets.Dataset, columns: Sequence[str] = ("input_ids", "labels")):
        arrow = dataset.with_format("arrow")[:]  # the columns as Arrow, no Python objects
        self._columns = {name: _flat_column(arrow.column(name)) for name in columns}
        self._num_rows = len(dataset)

    def __len__(self) -> int:
        return self._num_rows

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def lengths(self, name: str) -> np.ndarray:
        """Every row's length in column `name`, int64 ``(N,)``."""
        offsets, _ = self._columns[name]
        return np.diff(offsets)

    def offsets(self, name: str) -> np.ndarray:
        """Where each row of column `name` starts in :meth:`flat`, and the end: int64 ``(N + 1,)``, from 0."""
        offsets, _ = self._columns[name]
        return (offsets - offsets[0]).astype(np.int64)

    def flat(self, name: str) -> np.ndarray:
        """Every row of column `name` back to back, int64 ``(sum of lengths,)``: a read-only view."""
        offsets, values = self._columns[name]
        view = values[offsets[0] : offsets[-1]]
        view.flags.writeable = False
        return view

    def row(self, name: str, i: int) -> np.ndarray:
        """Row `i` of column `name`: a read-only view, no copy."""
        offsets, values = self._columns[name]
        view = values[offsets[i] : offsets[i + 1]]
        view.flags.writeable = False
        return view

    def left_padded(
        self, name: str, rows: np.ndarray, max_len: int | None = None, pad_value: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `rows` of column `name`, each cut to its last `max_len` values and left-padded with `pad_value` to
        the longest: `(values, mask)`, ``torch.long`` ``(len(rows), longest)``, mask 1 on real values (as
        :func:`data_processing.collator.left_pad` pads the same rows)."""
        offsets, values = self._columns[name]
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        ends = offsets[rows + 1]
        lengths = ends - offsets[rows]
        if max_len:
            lengths = np.minimum(lengths, max_len)
        width = int(lengths.max(initial=0))
        column = np.arange(width, dtype=np.int64)
        real = column >= (width - lengths)[:, None]
        # Cell (b, j) holds the value `width - j` places before the row's end; padded cells read a valid index.
        index = np.where(real, ends[:, None] - width + column, 0)
        out = np.where(real, values[index] if len(values) else 0, pad_value).astype(np.int64)
        return torch.from_numpy(out), torch.from_numpy(real.astype(np.int64))
