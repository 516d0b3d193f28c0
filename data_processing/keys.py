"""Stateless random keys: a splitmix64 hash of ``(seed, epoch, row)``, shared by the partner draw and the views.

Every random choice made per training row (its same-target partner, its CL4SRec augmentations, its prefix cut) is
keyed by the same chain, computed in numpy ``uint64`` arithmetic (wrapping modulo 2**64)::

    row_key = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ row)

so the draws depend only on those values: not on worker or process counts, batch order or resumes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["splitmix64", "uint64_array", "row_keys"]

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


def uint64_array(value: int) -> np.ndarray:
    """Any Python int (negative seeds included) as its residue modulo 2**64, in a 1-element ``uint64`` array.

    An array, not a scalar: numpy warns on scalar overflow but not on arrays.

    >>> uint64_array(-1).tolist()
    [18446744073709551615]
    """
    return np.array([int(value) & _MASK64], dtype=np.uint64)


def row_keys(seed: int, epoch: int, rows: np.ndarray) -> np.ndarray:
    """``uint64`` keys of ``rows`` in ``epoch`` (``epoch`` is cast to int); element ``k`` depends only on
    ``(seed, epoch, rows[k])``.

    >>> bool(row_keys(0, 1, np.array([5, 5]))[0] == row_keys(0, 1, np.array([3, 5]))[1])
    True
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    key = splitmix64(splitmix64(uint64_array(seed)) ^ uint64_array(int(epoch)))
    return splitmix64(key ^ rows.astype(np.uint64))
