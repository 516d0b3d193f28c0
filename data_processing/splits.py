"""Train / validation / test splits of an interaction table: the paper's global temporal split, leave-one-out, and
users held out of training.

Both take the reader's table (columns ``user_id``, ``item_id`` and optionally a numeric ``timestamp``; rows in the
original file order) and return a :class:`SplitData` whose sequences are item *indices* (``1..num_items``, 0 is
padding) from the :class:`~data_processing.vocab.ItemVocab` built by the split.

Ordering. A user's interactions are sorted by ``(timestamp, original row position)`` with a stable sort, so ties in
the timestamp keep file order (the authors' code shuffles ties with a seed; we keep them deterministic). Without a
``timestamp`` column the file order is the chronological order. Users are listed in sorted raw-id order.

Accounting. Nothing is dropped silently: ``stats`` counts every input row, user and item that the split does not use,
under a reason. For both protocols::

    num_input_rows == num_train_interactions + num_eval_interactions + sum(stats["removed_rows"].values())

where ``num_eval_interactions`` counts the rows used only by evaluation (targets, and for the temporal split the
test-period contexts). Users: temporal ``num_input_users == num_train_users + num_test_users +
sum(removed_users)`` (a user is either a training user or a test user); leave-one-out ``num_input_users ==
num_test_users + sum(removed_users)`` (every kept user is both). Items: ``num_input_items == num_items +
sum(removed_items)``.

Everything is vectorised (one sort, boolean masks, ``bincount``); the only Python loop is one per user, to cut the
sorted index array into per-user sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .builtins import to_builtin
from .errors import DataError
from .keys import row_keys
from .vocab import ItemVocab, sorted_unique_codes

__all__ = [
    "PROTOCOLS",
    "EvalSplit",
    "SplitData",
    "temporal_split",
    "leave_one_out_split",
    "user_holdout_split",
    "split_interactions",
]

PROTOCOLS = ("temporal", "leave_one_out", "user_holdout")
"""Names accepted by :func:`split_interactions` (and by ``train.py --split``)."""

MIN_EVAL_INTERACTIONS = 3
"""An evaluated user needs a test target, a validation target and at least one context item before them."""


@dataclass
class EvalSplit:
    """One evaluation split (validation or test): one row per evaluated user.

    Attributes:
        user_ids: raw user ids, sorted, shape ``(U,)``.
        contexts: ``U`` int64 arrays of item indices, chronological (most recent last), never empty: everything
            the user has seen before the target, however long. The model reads the last ``max_len`` of them; the
            evaluation excludes all of them from the candidates, as ``recommend()`` does.
        targets: int64 array ``(U,)``, the item index to predict after the context.
    """

    user_ids: list
    contexts: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass
class SplitData:
    """The output of a split.

    Attributes:
        item_vocab: raw item id <-> index ``1..num_items``.
        train_user_ids: raw ids of the training users, sorted.
        train_sequences: their full chronological item-index sequences (int64, NOT truncated to ``max_len``; the
            training dataset keeps the last ``max_len`` positions itself).
        valid, test: the evaluation splits; they hold the same users in the same order.
        protocol: ``"temporal"`` or ``"leave_one_out"``.
        stats: JSON-serialisable counts (see the module docstring for how they add up).
    """

    item_vocab: ItemVocab
    train_user_ids: list
    train_sequences: list[np.ndarray]
    valid: EvalSplit
    test: EvalSplit
    protocol: str
    stats: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------------
# shared preparation
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Sorted:
    """The table sorted by (user, timestamp, row position); every array has shape ``(n,)`` in that order."""

    user_ids: list  # sorted distinct raw user ids; user code u <-> user_ids[u]
    user: np.ndarray  # int64 user codes
    item: np.ndarray  # raw item ids (the column's own dtype)
    ts: np.ndarray | None  # timestamps, or None without a timestamp column
    num_users: int


def _check_max_len(max_len: Any, source: str) -> int:
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise DataError(f"{source}: max_len must be a positive integer, got {max_len!r}")
    return int(max_len)


def _prepare(df: pd.DataFrame, source: str, use_timestamps: bool) -> _Sorted:
    """Validate the columns the split needs and sort the rows per user chronologically (stable on row position)."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame of interactions, got {type(df).__name__}")
    for column in ("user_id", "item_id"):
        if column not in df.columns:
            raise DataError(f"{source}: missing column '{column}' (columns: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise DataError(f"{source}: the interaction table is empty")
    for column in ("user_id", "item_id") + (("timestamp",) if use_timestamps else ()):
        null = df[column].isna().to_numpy()
        if null.any():
            raise DataError(f"{source}: column '{column}' is empty at row {int(np.flatnonzero(null)[0])}")

    uniques, user = sorted_unique_codes(df["user_id"])
    user_ids = uniques.tolist()

    ts = None
    if use_timestamps:
        ts = df["timestamp"].to_numpy()
        if np.issubdtype(ts.dtype, np.datetime64):
            ts = ts.astype("datetime64[ns]").astype(np.int64)
        elif ts.dtype.kind not in "iuf":
            raise DataError(f"{source}: column 'timestamp' must be numeric, got dtype {df['timestamp'].dtype}")
        order = _chronological_order(user, len(user_ids), ts)
        ts = ts[order]
    else:
        order = _stable_order(user, len(user_ids))
    return _Sorted(
        user_ids=user_ids,
        user=user[order],
        item=df["item_id"].to_numpy()[order],
        ts=ts,
        num_users=len(user_ids),
    )


def _stable_order(keys: np.ndarray, bound: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for integer keys in ``0..bound-1``.

    Each key is packed with its row position into one int64 so that the keys are distinct and an unstable sort
    (numpy's vectorised quicksort) gives the stable order, several times faster than the merge sort it replaces.
    """
    shift = max(len(keys) - 1, 1).bit_length()
    if max(int(bound) - 1, 1).bit_length() + shift > 63:
        return np.argsort(keys, kind="stable")
    packed = keys.astype(np.int64) << shift
    packed |= np.arange(len(keys), dtype=np.int64)
    packed.sort()
    return packed & ((1 << shift) - 1)


def _chronological_order(user: np.ndarray, num_users: int, ts: np.ndarray) -> np.ndarray:
    """``np.lexsort((position, ts, user))``: rows by user, then timestamp, ties in row order."""
    if len(ts) < 2 or bool((ts[1:] >= ts[:-1]).all()):
        # A log written in time order: (timestamp, position) order is the position order.
        return _stable_order(user, num_users)
    span = int(ts.max()) - int(ts.min()) if ts.dtype.kind == "i" else None
    if span is not None and span.bit_length() + max(len(ts) - 1, 1).bit_length() <= 63:
        by_time = _stable_order(ts - ts.min(), span + 1)  # no overflow: the span fits in int64
    else:
        by_time = np.argsort(ts, kind="stable")
    return by_time[_stable_order(user[by_time], num_users)]


def _slices(values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> list[np.ndarray]:
    """``[values[a:b] for a, b in zip(starts, stops)]``: views, one per row, made without numpy scalars."""
    return [values[a:b] for a, b in zip(starts.tolist(), stops.tolist())]


def _take(values: list, positions: np.ndarray) -> list:
    """``[values[p] for p in positions]``, gathered by numpy."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array[positions].tolist()


def _per_user(user: np.ndarray, values: np.ndarray, num_users: int) -> list[np.ndarray]:
    """Cut ``values`` (grouped by ``user``, which is sorted) into one array per user code ``0..num_users-1``."""
    ends = np.cumsum(np.bincount(user, minlength=num_users))
    return _slices(values, np.r_[0, ends[:-1]], ends)


def _eval_splits_flat(
    user_ids: list, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[EvalSplit, EvalSplit]:
    """:func:`_eval_splits` of the sequences ``values[starts[k] : starts[k] + lengths[k]]`` (int64 ``values``)."""
    ends = starts + lengths
    valid = EvalSplit(user_ids=list(user_ids), contexts=_slices(values, starts, ends - 2), targets=values[ends - 2])
    test = EvalSplit(user_ids=list(user_ids), contexts=_slices(values, starts, ends - 1), targets=values[ends - 1])
    return valid, test


def _eval_splits(user_ids: list, sequences: list[np.ndarray]) -> tuple[EvalSplit, EvalSplit]:
    """Validation: context ``seq[:-2]``, target ``seq[-2]``; test: context ``seq[:-1]``, target ``seq[-1]``."""
    valid = EvalSplit(
        user_ids=list(user_ids),
        contexts=[np.ascontiguousarray(s[:-2], dtype=np.int64) for s in sequences],
        targets=np.asarray([s[-2] for s in sequences], dtype=np.int64),
    )
    test = EvalSplit(
        user_ids=list(user_ids),
        contexts=[np.ascontiguousarray(s[:-1], dtype=np.int64) for s in sequences],
        targets=np.asarray([s[-1] for s in sequences], dtype=np.int64),
    )
    return valid, test


def _beyond_window(valid: EvalSplit, test: EvalSplit, max_len: int) -> dict:
    """Context items older than the model's window: excluded from the candidates, never read by the encoder."""
    return {
        name: int(np.maximum(np.fromiter(map(len, split.contexts), np.int64, len(split.contexts)) - max_len, 0).sum())
        for name, split in (("valid", valid), ("test", test))
    }


# --------------------------------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------------------------------


def temporal_split(df: pd.DataFrame, max_len: int = 200, quantile: float = 0.95, source: str = "<data>") -> SplitData:
    """The paper's global temporal split (BT-SR section 3).

    1. ``t* = quantile(all timestamps, q)`` with the "nearest" method; the test period is ``timestamp >= t*``.
    2. Test users = the users with an interaction in the test period; *all* their interactions before ``t*`` are
       dropped (so no test user is ever trained on).
    3. Training = the other users' interactions (all ``< t*``), keeping users with ``>= 2`` of them.
    4. Items are indexed on the training data; test-period interactions with an item unseen in training are dropped.
    5. Evaluated users = test users with ``>= 3`` remaining test-period interactions ``s_1..s_m`` (sorted by time):
       validation = (context ``s_1..s_{m-2}``, target ``s_{m-1}``), test = (context ``s_1..s_{m-1}``, target ``s_m``);
       the model reads the last ``max_len`` items of a context, the evaluation excludes all of them.

    Check on ML-100K: ``t* = 891717885``, 1,611 items, 830 training users, 80,161 training interactions, 92 evaluated
    users (tested in ``tests/test_splits.py``).

    Args:
        df: interactions with ``user_id``, ``item_id`` and a numeric ``timestamp``, rows in file order.
        max_len: the model's window (most recent items read); counted in ``stats``, contexts are not cut.
        quantile: ``q`` above, in ``(0, 1]``.
        source: the data's name for error messages.

    Raises:
        DataError: no ``timestamp`` column, bad values, or a split that leaves no training or no evaluated users.
    """
    max_len = _check_max_len(max_len, source)
    if "timestamp" not in getattr(df, "columns", ()):
        raise DataError(
            f"{source}: the temporal split needs timestamps; this data has none (use --split leave_one_out)"
        )
    if not (0.0 < float(quantile) <= 1.0):
        raise DataError(f"{source}: the temporal split quantile must be in (0, 1], got {quantile!r}")
    data = _prepare(df, source, use_timestamps=True)
    user, ts, U = data.user, data.ts, data.num_users

    # `ts` is the sorted copy, but the quantile does not depend on order.
    t_star = np.quantile(ts, quantile, method="nearest")
    in_test = ts >= t_star

    is_test_user = np.zeros(U, dtype=bool)
    is_test_user[user[in_test]] = True
    row_of_test_user = is_test_user[user]
    history_dropped = row_of_test_user & ~in_test

    # Non-test users' rows are all before t* (any row at or after t* would make them a test user).
    candidate = ~row_of_test_user
    train_counts = np.bincount(user[candidate], minlength=U)
    is_train_user = ~is_test_user & (train_counts >= 2)
    too_short_user = ~is_test_user & ~is_train_user
    train_rows = candidate & is_train_user[user]
    too_short_rows = candidate & ~train_rows

    vocab = ItemVocab.from_items(data.item[train_rows])
    index = vocab.lookup(data.item)  # 0 = not a training item

    unseen_rows = in_test & (index == 0)
    test_rows = in_test & ~unseen_rows
    test_counts = np.bincount(user[test_rows], minlength=U)
    is_eval_user = is_test_user & (test_counts >= MIN_EVAL_INTERACTIONS)
    too_few_user = is_test_user & ~is_eval_user
    too_few_rows = test_rows & ~is_eval_user[user]
    eval_rows = test_rows & is_eval_user[user]

    if not is_train_user.any():
        raise DataError(
            f"{source}: the temporal split left no training users (t* = {to_builtin(t_star)}: every user either "
            f"appears at or after t* or has fewer than 2 interactions before it)"
        )
    if not is_eval_user.any():
        raise DataError(
            f"{source}: the temporal split left no evaluated users (t* = {to_builtin(t_star)}: no test user has "
            f">= {MIN_EVAL_INTERACTIONS} test-period interactions with items seen in training)"
        )

    # Every training (evaluated) user has training (evaluation) rows, so their runs follow the order of the codes.
    train_codes = np.flatnonzero(is_train_user)
    train_lengths = np.bincount(user[train_rows], minlength=U)[train_codes]
    train_ends = np.cumsum(train_lengths)
    train_sequences = _slices(index[train_rows], train_ends - train_lengths, train_ends)
    eval_codes = np.flatnonzero(is_eval_user)
    eval_lengths = np.bincount(user[eval_rows], minlength=U)[eval_codes]
    train_user_ids = _take(data.user_ids, train_codes)
    eval_user_ids = _take(data.user_ids, eval_codes)
    eval_starts = np.cumsum(eval_lengths) - eval_lengths
    valid, test = _eval_splits_flat(eval_user_ids, index[eval_rows], eval_starts, eval_lengths)

    num_input_items = len(pd.unique(data.item))
    stats = {
        "protocol": "temporal",
        "source": source,
        "max_len": max_len,
        "quantile": float(quantile),
        "t_star": to_builtin(t_star),
        "num_input_rows": int(len(user)),
        "num_input_users": int(U),
        "num_input_items": int(num_input_items),
        "num_items": len(vocab),
        "num_train_users": len(train_user_ids),
        "num_train_interactions": int(train_rows.sum()),
        "num_test_users": len(eval_user_ids),
        "num_valid_users": len(eval_user_ids),
        "num_eval_interactions": int(eval_rows.sum()),
        "eval_context_items_beyond_max_len": _beyond_window(valid, test, max_len),
        "removed_rows": {
            "test_user_history_before_t_star": int(history_dropped.sum()),
            "train_user_single_interaction": int(too_short_rows.sum()),
            "test_item_not_in_training": int(unseen_rows.sum()),
            "test_user_fewer_than_3_test_interactions": int(too_few_rows.sum()),
        },
        "removed_users": {
            "train_user_single_interaction": int(too_short_user.sum()),
            "test_user_fewer_than_3_test_interactions": int(too_few_user.sum()),
        },
        "removed_items": {"not_in_training": int(num_input_items - len(vocab))},
    }
    return SplitData(
        item_vocab=vocab,
        train_user_ids=train_user_ids,
        train_sequences=train_sequences,
        valid=valid,
        test=test,
        protocol="temporal",
        stats=stats,
    )


def leave_one_out_split(df: pd.DataFrame, max_len: int = 200, source: str = "<data>") -> SplitData:
    """Leave-one-out: per user ``s_1..s_n`` (chronological), test target ``s_n`` (context ``s_1..s_{n-1}``, the
    validation item included), validation target ``s_{n-1}`` (context ``s_1..s_{n-2}``), training ``s_1..s_{n-2}``.

    The catalogue is every item in the input (3,416 for the SASRec ML-1M file), including items that occur only as
    a target. Every user with ``>= 3`` interactions is evaluated; users with fewer cannot be split and are dropped
    and counted under ``removed_users["fewer_than_3_interactions"]``. Neither contexts nor training sequences are
    cut: the model reads the last ``max_len`` items, the evaluation excludes the whole context, and
    ``stats["eval_context_items_beyond_max_len"]`` counts the context items older than the window.

    Raises:
        DataError: bad columns or values, or no user with ``>= 3`` interactions.
    """
    max_len = _check_max_len(max_len, source)
    # Timestamps, when present, order the rows; otherwise the file order is the chronological order.
    data = _prepare(df, source, use_timestamps="timestamp" in getattr(df, "columns", ()))
    user, U = data.user, data.num_users

    counts = np.bincount(user, minlength=U)
    is_kept = counts >= MIN_EVAL_INTERACTIONS
    if not is_kept.any():
        raise DataError(
            f"{source}: leave-one-out needs users with >= {MIN_EVAL_INTERACTIONS} interactions; this data has none"
        )
    vocab, indices = ItemVocab.from_items_with_indices(data.item)
    kept_rows = is_kept[user]
    # The kept users' sequences, back to back in user order: training and evaluation are views of this one array.
    lengths = counts[is_kept]
    starts = np.cumsum(lengths) - lengths
    sequences = indices[kept_rows]
    user_ids = _take(data.user_ids, np.flatnonzero(is_kept))
    valid, test = _eval_splits_flat(user_ids, sequences, starts, lengths)
    # Training is s_1..s_{n-2}, the validation context itself: the same views, in a list of its own.
    train_sequences = list(valid.contexts)

    num_eval = 2 * len(user_ids)
    stats = {
        "protocol": "leave_one_out",
        "source": source,
        "max_len": max_len,
        "num_input_rows": int(len(user)),
        "num_input_users": int(U),
        "num_input_items": len(vocab),
        "num_items": len(vocab),
        "num_train_users": len(user_ids),
        "num_train_interactions": int(kept_rows.sum()) - num_eval,
        "num_test_users": len(user_ids),
        "num_valid_users": len(user_ids),
        "num_eval_interactions": num_eval,
        "eval_context_items_beyond_max_len": _beyond_window(valid, test, max_len),
        "removed_rows": {"fewer_than_3_interactions": int((~kept_rows).sum())},
        "removed_users": {"fewer_than_3_interactions": int((~is_kept).sum())},
        "removed_items": {},
    }
    return SplitData(
        item_vocab=vocab,
        train_user_ids=list(user_ids),
        train_sequences=train_sequences,
        valid=valid,
        test=test,
        protocol="leave_one_out",
        stats=stats,
    )


def user_holdout_split(
    df: pd.DataFrame, max_len: int = 200, fraction: float = 0.1, seed: int = 0, source: str = "<data>"
) -> SplitData:
    """Users held out of training: a seeded ``fraction`` of the users is never trained on; each is evaluated on its
    last item (test, context ``s_1..s_{n-1}``) and its second-to-last (validation, context ``s_1..s_{n-2}``); every
    other user's whole sequence is training data.

    This is the property of the paper's global temporal split that leave-one-out lacks (test users unseen in
    training), on data without timestamps. The held-out users are the ``round(fraction * U)`` users (at least one,
    and at least one left to train on) with the smallest key ``row_keys(seed, 0, u)`` over the index ``u`` of the
    user among the kept users in sorted raw-id order: the same users for the same data and seed, whatever else runs.
    The catalogue is every item in the input (an item only held-out users have is still ranked). Users with fewer
    than 3 interactions are dropped and counted, as in leave-one-out.

    Raises:
        DataError: bad columns or values, a fraction outside (0, 1), or too few users to hold one out.
    """
    max_len = _check_max_len(max_len, source)
    if not 0 < float(fraction) < 1:
        raise DataError(f"{source}: user_holdout needs a held-out fraction in (0, 1), got {fraction}")
    data = _prepare(df, source, use_timestamps="timestamp" in getattr(df, "columns", ()))
    user, U = data.user, data.num_users
    counts = np.bincount(user, minlength=U)
    is_kept = counts >= MIN_EVAL_INTERACTIONS
    kept_codes = np.flatnonzero(is_kept)
    if len(kept_codes) < 2:
        raise DataError(
            f"{source}: user_holdout needs at least 2 users with >= {MIN_EVAL_INTERACTIONS} interactions "
            f"(one to train on, one to hold out); this data has {len(kept_codes)}"
        )
    n_held = min(max(int(round(float(fraction) * len(kept_codes))), 1), len(kept_codes) - 1)
    order = np.argsort(row_keys(seed, 0, np.arange(len(kept_codes))), kind="stable")
    is_held = np.zeros(U, dtype=bool)
    is_held[kept_codes[np.sort(order[:n_held])]] = True
    is_trained = is_kept & ~is_held

    vocab = ItemVocab.from_items(data.item)
    indices = vocab.lookup(data.item)
    trained_rows, held_rows = is_trained[user], is_held[user]
    train_sequences = [
        np.ascontiguousarray(s) for s in _per_user(user[trained_rows], indices[trained_rows], U) if len(s)
    ]
    held_sequences = [s for s in _per_user(user[held_rows], indices[held_rows], U) if len(s)]
    held_ids = [data.user_ids[u] for u in np.flatnonzero(is_held)]
    valid, test = _eval_splits(held_ids, held_sequences)

    stats = {
        "protocol": "user_holdout",
        "source": source,
        "max_len": max_len,
        "holdout_fraction": float(fraction),
        "holdout_seed": int(seed),
        "num_input_rows": int(len(user)),
        "num_input_users": int(U),
        "num_input_items": len(vocab),
        "num_items": len(vocab),
        "num_train_users": int(is_trained.sum()),
        "num_train_interactions": int(trained_rows.sum()),
        "num_test_users": len(held_ids),
        "num_valid_users": len(held_ids),
        "num_eval_interactions": int(held_rows.sum()),
        "eval_context_items_beyond_max_len": _beyond_window(valid, test, max_len),
        "removed_rows": {"fewer_than_3_interactions": int((~is_kept[user]).sum())},
        "removed_users": {"fewer_than_3_interactions": int((~is_kept).sum())},
        "removed_items": {},
    }
    return SplitData(
        item_vocab=vocab,
        train_user_ids=[data.user_ids[u] for u in np.flatnonzero(is_trained)],
        train_sequences=train_sequences,
        valid=valid,
        test=test,
        protocol="user_holdout",
        stats=stats,
    )


def split_interactions(
    df: pd.DataFrame,
    protocol: str,
    max_len: int = 200,
    source: str = "<data>",
    quantile: float = 0.95,
    holdout_fraction: float = 0.1,
    holdout_seed: int = 0,
) -> SplitData:
    """Dispatch to :func:`temporal_split` (``protocol="temporal"``), :func:`leave_one_out_split`
    (``"leave_one_out"``) or :func:`user_holdout_split` (``"user_holdout"``); ``quantile`` is used by the temporal
    split only, ``holdout_fraction`` and ``holdout_seed`` by the user hold-out only. Any other name raises
    DataError."""
    if protocol == "temporal":
        return temporal_split(df, max_len=max_len, quantile=quantile, source=source)
    if protocol == "leave_one_out":
        return leave_one_out_split(df, max_len=max_len, source=source)
    if protocol == "user_holdout":
        return user_holdout_split(df, max_len=max_len, fraction=holdout_fraction, seed=holdout_seed, source=source)
    raise DataError(f"{source}: unknown split protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
