"""CL4SRec's sequence augmentations (crop, mask, reorder) with stateless, per-view random draws.

Xie et al., "Contrastive Learning for Sequential Recommendation" (CL4SRec), ICDE 2022, section IV-B. Each function is
pure in ``(sequence, ratio, rng)``: it never changes its input and returns a new list. With ``n = len(sequence)``:

- :func:`crop` keeps one contiguous span of ``max(1, floor(eta * n))`` items (start uniform over the valid starts);
- :func:`mask` replaces ``floor(gamma * n)`` distinct positions (uniform) by the mask token, nothing else changes;
- :func:`reorder` shuffles one contiguous span of ``floor(beta * n)`` items (uniform start, uniform permutation).

The generator of view ``v`` of row ``r`` in epoch ``e`` is keyed by the same splitmix64 chain as the partner draw
(:mod:`data_processing.keys`), salted by the view::

    u   = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ row)
    key = splitmix64(u ^ (VIEW_SALT + view))
    rng = numpy.random.Generator(numpy.random.PCG64(key))

so the views depend only on ``(seed, epoch, row, view)``: not on worker or process counts, batch order or resumes.
The two views of a row apply two *different* operators (:func:`operator_pairs`, drawn from the stream of view
``OPERATOR_VIEW``), as the CL4SRec implementations do (RecBole's ``random.sample(range(3), k=2)``); drawn
independently, a third of the pairs would share one.
(Bit-exact streams assume numpy keeps ``Generator.integers`` / ``choice`` / ``permutation`` unchanged.)

EC4SRec's explanation-guided operators (Wang et al., "Explanation Guided Contrastive Learning for Sequential
Recommendation", CIKM 2022; the authors' code, demoleiwang/EC4SRec) choose *which* items to keep or perturb from an
importance score per item instead of at random (:func:`explained_view`). With ratio ``r`` (``pos_r = 0.3`` for a
positive view, ``neg_r = 0.7`` for the negative one) and ``n`` items:

- crop keeps ``max(1, floor(r * n))`` items: the most important (positive) or the least important (negative);
- mask replaces ``max(1, floor((1 - r) * n))`` items by the mask token: the least important (positive) or the most
  important (negative);
- reorder permutes the same number of items among their own positions: the least important (positive) or the
  most important (negative).

A positive view thus keeps what the model found important and a negative one destroys it. Selection is
deterministic (ties go to the earlier position); only the operator and the reorder's permutation are random. The
kept items of a crop stay in time order (the authors' code writes them in order of importance). A one-item
sequence is returned unchanged by every operator: there is nothing to choose between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .keys import row_keys, splitmix64, uint64_array

__all__ = [
    "AUGMENTATIONS",
    "crop",
    "mask",
    "reorder",
    "cl4srec_view",
    "explained_view",
    "operator_pairs",
    "view_keys",
    "view_rng",
]

AUGMENTATIONS = ("crop", "mask", "reorder")
VIEW_SALT = 0x5EED_0F_C4_5EC0_0000  # separates the view streams from the partner draw of the same row
OPERATOR_VIEW = 3
"""Key stream of each row's pair of operators (views 0 and 1 augment; 2 is data_processing.pairs' prefix cut)."""
NEGATIVE_VIEW = 5
"""Key stream of EC4SRec's negative view: its operator (the stream's first draw) and its reorder permutation."""


def view_keys(seed: int, epoch: int, rows: np.ndarray, view: int) -> np.ndarray:
    """``uint64`` generator keys of view ``view`` for each row in ``rows`` (vectorised; see the module docstring)."""
    return splitmix64(row_keys(seed, epoch, rows) ^ uint64_array(VIEW_SALT + int(view)))


def view_rng(seed: int, epoch: int, row: int, view: int) -> np.random.Generator:
    """The generator of view ``view`` of ``row`` in ``epoch``.

    >>> a, b = view_rng(0, 1, 5, 0).integers(1 << 30), view_rng(0, 1, 5, 0).integers(1 << 30)
    >>> bool(a == b), bool(a == view_rng(0, 2, 5, 0).integers(1 << 30))
    (True, False)
    """
    return np.random.Generator(np.random.PCG64(int(view_keys(seed, epoch, np.array([row]), view)[0])))


def crop(sequence: Sequence[int], ratio: float, rng: np.random.Generator) -> list[int]:
    """A contiguous span of ``max(1, floor(ratio * n))`` items of ``sequence`` (an empty sequence stays empty).

    >>> crop([1, 2, 3, 4, 5], 0.4, np.random.default_rng(0)) in ([1, 2], [2, 3], [3, 4], [4, 5])
    True
    """
    items = list(sequence)
    start, keep = crop_span(len(items), ratio, rng)
    return items[start : start + keep]


def crop_span(n: int, ratio: float, rng: np.random.Generator) -> tuple[int, int]:
    """``(start, length)`` of :func:`crop`'s span of an ``n``-item sequence, drawing what it draws.

    >>> crop_span(5, 0.4, np.random.default_rng(0))[1]
    2
    """
    if n == 0:
        return 0, 0
    keep = min(n, max(1, math.floor(ratio * n)))
    return int(rng.integers(0, n - keep + 1)), keep


def mask(sequence: Sequence[int], ratio: float, rng: np.random.Generator, mask_token: int) -> list[int]:
    """``sequence`` with ``floor(ratio * n)`` distinct random positions replaced by ``mask_token``.

    >>> mask([1, 2, 3, 4], 0.5, np.random.default_rng(0), mask_token=9).count(9)
    2
    """
    items = list(sequence)
    n = len(items)
    count = min(n, math.floor(ratio * n))
    if count > 0:
        for position in rng.choice(n, size=count, replace=False).tolist():
            items[position] = mask_token
    return items


def reorder(sequence: Sequence[int], ratio: float, rng: np.random.Generator) -> list[int]:
    """``sequence`` with one contiguous span of ``floor(ratio * n)`` items randomly permuted.

    >>> sorted(reorder([1, 2, 3, 4, 5], 0.6, np.random.default_rng(0)))
    [1, 2, 3, 4, 5]
    """
    items = list(sequence)
    n = len(items)
    span = min(n, math.floor(ratio * n))
    if span < 2:  # nothing to permute
        return items
    start = int(rng.integers(0, n - span + 1))
    items[start : start + span] = [items[start + j] for j in rng.permutation(span).tolist()]
    return items


def operator_pairs(seed: int, epoch: int, rows: np.ndarray) -> np.ndarray:
    """The two distinct operators (indices into :data:`AUGMENTATIONS`) of each row's two views in ``epoch``,
    int64 ``(n, 2)``, uniform over the 6 ordered pairs.

    >>> pairs = operator_pairs(0, 1, np.arange(600))
    >>> bool((pairs[:, 0] != pairs[:, 1]).all()), sorted(set(map(tuple, pairs.tolist())))[:2]
    (True, [(0, 1), (0, 2)])
    """
    k = (view_keys(seed, epoch, np.asarray(rows, dtype=np.int64), OPERATOR_VIEW) % np.uint64(6)).astype(np.int64)
    first = k // 2
    return np.stack([first, (first + 1 + k % 2) % 3], axis=1)


def cl4srec_view(
    sequence: Sequence[int],
    rng: np.random.Generator,
    crop_ratio: float,
    mask_ratio: float,
    reorder_ratio: float,
    mask_token: int | None,
    operator: int | None = None,
    with_trailing: bool = False,
) -> list[int] | tuple[list[int], int]:
    """One CL4SRec view: crop, mask or reorder (``operator``, an index into :data:`AUGMENTATIONS`; picked
    uniformly with ``rng`` when not given), applied with ``rng``.

    ``mask_token`` may be ``None`` only when ``mask_ratio * len(sequence) < 1`` for every sequence (no position
    is ever masked), e.g. ``mask_ratio = 0``. With ``with_trailing``, ``(view, trailing)``: how many items of
    ``sequence`` come after the view's last one (a crop's tail; 0 for a mask or a reorder, which keep the end), what
    encoding the view at its own positions needs.
    """
    choice = int(rng.integers(0, len(AUGMENTATIONS))) if operator is None else int(operator)
    trailing = 0
    if choice == 0:
        start, keep = crop_span(len(sequence), crop_ratio, rng)
        view, trailing = list(sequence)[start : start + keep], len(sequence) - start - keep
    elif choice == 1:
        if mask_token is None and math.floor(mask_ratio * len(sequence)) > 0:
            raise ValueError("cl4srec_view: mask_ratio > 0 needs a mask_token (the model's num_items + 1)")
        view = mask(sequence, mask_ratio, rng, mask_token)
    else:
        view = reorder(sequence, reorder_ratio, rng)
    return (view, trailing) if with_trailing else view


def explained_view(
    sequence: Sequence[int],
    scores: Sequence[float],
    operator: int,
    ratio: float,
    positive: bool,
    rng: np.random.Generator,
    mask_token: int,
) -> list[int]:
    """One EC4SRec view of ``sequence`` guided by ``scores`` (one importance score per item): crop, mask or reorder
    (``operator``, an index into :data:`AUGMENTATIONS`), positive or negative, at ``ratio`` (see the module
    docstring). ``rng`` is read by the reorder only.

    >>> seq, scores = [11, 12, 13, 14], [0.1, 0.9, 0.4, 0.2]
    >>> explained_view(seq, scores, 0, 0.5, True, None, 99)  # crop keeps the 2 most important, in time order
    [12, 13]
    >>> explained_view(seq, scores, 1, 0.5, True, None, 99)  # mask hides the 2 least important
    [99, 12, 13, 99]
    >>> explained_view(seq, scores, 1, 0.5, False, None, 99)  # the negative hides the 2 most important
    [11, 99, 99, 14]
    """
    items = list(sequence)
    n = len(items)
    if len(scores) != n:
        raise ValueError(f"explained_view: {len(scores)} scores for a sequence of {n} items")
    if n < 2:
        return items
    # Ascending importance, ties to the earlier position; most important first for the other end.
    least_first = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    most_first = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if operator == 0:
        keep = min(n, max(1, math.floor(ratio * n)))
        chosen = (most_first if positive else least_first)[:keep]
        return [items[j] for j in np.sort(chosen).tolist()]
    count = min(n, max(1, math.floor((1 - ratio) * n)))
    chosen = np.sort((least_first if positive else most_first)[:count]).tolist()
    if operator == 1:
        for j in chosen:
            items[j] = mask_token
        return items
    if operator != 2:
        raise ValueError(f"explained_view: operator must be 0, 1 or 2 (crop, mask, reorder), got {operator}")
    moved = [items[j] for j in chosen]
    for j, k in zip(chosen, rng.permutation(len(chosen)).tolist()):
        items[j] = moved[k]
    return items
