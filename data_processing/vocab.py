"""Item vocabulary: raw item id <-> contiguous index ``1..num_items`` (index 0 is the padding item).

The vocabulary is saved beside a model's ``config.json`` as ``item_vocab.json`` so that ``recommend`` can map raw ids
in and out without the training data. JSON keeps the difference between ``42`` and ``"42"``, so raw ids round-trip
with their type.

Ordering rule (so that the same data always gives the same indices, whatever the row order): the unique raw ids are
sorted by value. Ids of mixed types (some ``int``, some ``str``) cannot be compared, so they are sorted by
``(type name, value)`` instead: all ``int`` ids first, then all ``str`` ids.

>>> vocab = ItemVocab.from_items([30, 10, 20, 10])
>>> len(vocab), vocab.item_ids
(3, [10, 20, 30])
>>> vocab.encode([20, 30]).tolist()
[2, 3]
>>> vocab.decode([3, 1])
[30, 10]
>>> ItemVocab.from_json_dict(vocab.to_json_dict()) == vocab
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .builtins import to_builtin
from .errors import DataError

__all__ = ["IGNORE_INDEX", "ItemVocab", "PAD_INDEX", "sorted_unique", "sorted_unique_codes"]

PAD_INDEX = 0
"""Index of the padding item: never a real item, never scored."""

IGNORE_INDEX = -100
"""Label of positions without a training target (padding): ignored by the losses (the PyTorch / Transformers
convention)."""


def sorted_unique(values: Iterable[Any] | np.ndarray | pd.Series) -> list:
    """The distinct values as Python scalars, sorted by value; mixed types sorted by ``(type name, value)``.

    Shared with the splits, which order users the same way.

    >>> sorted_unique([3, 1, 3, 2])
    [1, 2, 3]
    >>> sorted_unique(["b", 2, "a", 1])
    [1, 2, 'a', 'b']
    """
    if not isinstance(values, (np.ndarray, pd.Series, pd.Index)):
        values = list(values)
        # An object array keeps str and int as they are (np.asarray would turn [1, "a"] into two strings).
        values = np.asarray(values, dtype=object) if values else np.asarray([], dtype=np.int64)
    uniques = pd.unique(values if isinstance(values, pd.Series) else np.asarray(values))
    if isinstance(uniques, np.ndarray) and uniques.dtype.kind in "iuf":
        return [to_builtin(v) for v in np.sort(uniques)]
    # object arrays and pandas extension arrays (e.g. pandas' `str` dtype): sort as Python values.
    items = [to_builtin(v) for v in np.asarray(uniques, dtype=object)]
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda v: (type(v).__name__, v))


def sorted_unique_codes(values: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``sorted_unique(values)`` as an array, and each value's position in it (int64, shape ``(n,)``).

    Integer ids numbered densely (the usual case) take one table lookup per value instead of a hash and a sort;
    other integers one ``pandas.factorize``; any other type the hash lookup of each value in the sorted ids. The
    array is int64 for signed integer input, else object (``.tolist()`` is ``sorted_unique(values)`` either way).

    >>> uniques, codes = sorted_unique_codes(np.array([30, 10, 30, 20]))
    >>> uniques.tolist(), codes.tolist()
    ([10, 20, 30], [2, 0, 2, 1])
    """
    array = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
    if array.dtype.kind == "i" and array.ndim == 1 and len(array):
        low, high = int(array.min()), int(array.max())
        if high - low <= 2 * len(array) + 1024:
            offsets = array - low if array.dtype == np.int64 else array.astype(np.int64) - low
            present = np.zeros(high - low + 1, dtype=bool)
            present[offsets] = True
            rank = np.cumsum(present, dtype=np.int32 if high - low < 2**31 - 1 else np.int64)
            rank -= 1
            return np.flatnonzero(present).astype(np.int64) + low, rank[offsets].astype(np.int64)
        codes, uniques = pd.factorize(array, sort=True)
        return uniques.astype(np.int64), codes.astype(np.int64)
    uniques = sorted_unique(values)
    index = pd.Index(uniques, dtype=object if array.dtype.kind not in "iu" else None)
    out = np.empty(len(uniques), dtype=object)
    out[:] = uniques
    return out, index.get_indexer(array).astype(np.int64)


class ItemVocab:
    """Maps raw item ids to indices ``1..num_items`` and back; index 0 is padding.

    Args:
        item_ids: the raw ids in index order: ``item_ids[i]`` gets index ``i + 1``. Must be distinct. Use
            :meth:`from_items` to build one from data with the deterministic ordering rule.
    """

    def __init__(self, item_ids: Iterable[Any]):
        if isinstance(item_ids, np.ndarray) and item_ids.dtype.kind == "i" and item_ids.ndim == 1 and len(item_ids):
            # The same state as from the list of Python ints, built in C rather than one id at a time.
            self._index = pd.Index(item_ids.astype(np.int64, copy=False))
            if not self._index.is_unique:
                dup = self._index[self._index.duplicated()][0]
                raise DataError(f"item vocabulary: item id {dup!r} appears more than once")
            self._ids = item_ids.tolist()
            self._ids_array = item_ids.astype(object)
            return
        ids = [to_builtin(v) for v in item_ids]
        for v in ids:
            # bool is an int subclass but would come back from JSON as a bool and hash equal to 0/1: refuse it.
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise DataError(f"item vocabulary: item id {v!r} has type {type(v).__name__}; ids must be int or str")
        self._index = pd.Index(ids, dtype=object if any(isinstance(v, str) for v in ids) else None)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise DataError(f"item vocabulary: item id {dup!r} appears more than once")
        self._ids = list(ids)
        # Object array for decoding: fancy indexing then `.tolist()` gives Python ints/strs, vectorised.
        self._ids_array = np.empty(len(ids), dtype=object)
        self._ids_array[:] = ids

    @classmethod
    def from_items(cls, items: Iterable[Any] | np.ndarray | pd.Series) -> ItemVocab:
        """Vocabulary of the distinct ids in ``items`` (any iterable, array or Series), sorted (see module doc)."""
        numpy_ints = isinstance(items, (np.ndarray, pd.Series, pd.Index)) and isinstance(items.dtype, np.dtype)
        if numpy_ints and items.dtype.kind == "i" and len(items):
            return cls(np.sort(pd.unique(np.asarray(items).reshape(-1))).astype(np.int64))
        return cls(sorted_unique(items))

    @classmethod
    def from_items_with_indices(cls, items: np.ndarray | pd.Series) -> tuple[ItemVocab, np.ndarray]:
        """``(vocab, vocab.lookup(items))`` for ``vocab = from_items(items)``, in one pass over integer ids."""
        array = items.to_numpy() if isinstance(items, (pd.Series, pd.Index)) else np.asarray(items)
        if array.dtype.kind == "i" and array.ndim == 1 and len(array):
            uniques, codes = sorted_unique_codes(array)
            return cls(uniques), codes + 1
        vocab = cls.from_items(items)
        return vocab, vocab.lookup(items)

    @property
    def item_ids(self) -> list:
        """Raw ids in index order: ``item_ids[i]`` is the raw id of index ``i + 1``."""
        return list(self._ids)

    @property
    def num_items(self) -> int:
        return len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemVocab):
            return NotImplemented
        return len(self._ids) == len(other._ids) and all(
            type(a) is type(b) and a == b for a, b in zip(self._ids, other._ids)
        )

    def __repr__(self) -> str:
        head = ", ".join(repr(v) for v in self._ids[:5]) + (", ..." if len(self._ids) > 5 else "")
        return f"ItemVocab(num_items={len(self)}, item_ids=[{head}])"

    def lookup(self, raw_ids: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Indices of ``raw_ids`` (shape ``(n,)``, int64), with ``0`` for ids not in the vocabulary.

        Vectorised through a hash table (``pandas.Index.get_indexer``): one pass over ``n`` ids, no Python loop.
        """
        values = raw_ids if isinstance(raw_ids, (np.ndarray, pd.Series, pd.Index)) else list(raw_ids)
        if isinstance(values, list):
            arr = np.empty(len(values), dtype=object)
            arr[:] = [to_builtin(v) for v in values]
            values = arr
        if len(values) == 0 or len(self._index) == 0:
            return np.zeros(len(values), dtype=np.int64)
        return self._index.get_indexer(values).astype(np.int64) + 1

    def encode(self, raw_ids: Iterable[Any] | np.ndarray | pd.Series, unknown: str = "error") -> np.ndarray:
        """Raw ids -> indices in ``1..num_items`` (int64 array).

        Args:
            raw_ids: the ids to map, any iterable, array or Series.
            unknown: ``"error"`` raises :class:`DataError` naming the first id missing from the vocabulary;
                ``"drop"`` leaves unknown ids out (the result is then shorter than the input).
        """
        if unknown not in ("error", "drop"):
            raise DataError(f"item vocabulary: unknown={unknown!r}; use 'error' or 'drop'")
        indices = self.lookup(raw_ids)
        missing = indices == PAD_INDEX
        if missing.any():
            if unknown == "drop":
                return indices[~missing]
            values = list(raw_ids) if not isinstance(raw_ids, (np.ndarray, pd.Series, pd.Index)) else raw_ids
            first = to_builtin(np.asarray(values, dtype=object)[np.flatnonzero(missing)[0]])
            raise DataError(
                f"item vocabulary: item id {first!r} is not in the vocabulary "
                f"({int(missing.sum())} of {len(indices)} ids unknown)"
            )
        return indices

    def decode(self, indices: Iterable[int] | np.ndarray) -> list:
        """Indices in ``1..num_items`` -> raw ids (a list of Python ints/strs). Padding (0) or out of range raises."""
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices), dtype=np.int64).reshape(-1)
        bad = (idx < 1) | (idx > len(self._ids))
        if bad.any():
            raise DataError(
                f"item vocabulary: index {int(idx[bad][0])} is not an item index (valid: 1..{len(self._ids)})"
            )
        return self._ids_array[idx - 1].tolist()

    def to_json_dict(self) -> dict:
        """``{"item_ids": [...]}`` with ``item_ids[i]`` the raw id of index ``i + 1`` (JSON keeps int vs str)."""
        return {"item_ids": list(self._ids)}

    @classmethod
    def from_json_dict(cls, data: dict) -> ItemVocab:
        """Inverse of :meth:`to_json_dict`."""
        if not isinstance(data, dict) or not isinstance(data.get("item_ids"), list):
            raise DataError("item_vocab.json: expected an object with a list 'item_ids'")
        return cls(data["item_ids"])
