"""Optional frequency filtering of interactions (the paper's 5-users-per-item / 20-items-per-user pass).

Off by default: the paper filtered only its raw Yelp, Gowalla and Kindle Store dumps, and the SASRec/S3-Rec files
are already preprocessed (the 5/20 pass would keep 1,248 of Beauty's 22,363 users). Duplicates are kept, since every
rating is an interaction, but thresholds count *distinct* users and items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError

__all__ = ["filter_interactions"]

USER, ITEM = "user_id", "item_id"


def filter_interactions(
    df: pd.DataFrame,
    min_users_per_item: int = 0,
    min_items_per_user: int = 0,
    k_core: bool = False,
    source: str = "<data>",
) -> tuple[pd.DataFrame, dict]:
    """Drop rare items, then light users, keeping the order of the remaining rows.

    One pass, as in the paper: keep the items with at least ``min_users_per_item`` distinct users, then, on what is
    left, the users with at least ``min_items_per_user`` distinct items. Removing users can push items back under
    their threshold; ``k_core=True`` repeats both steps until nothing changes, so that both thresholds hold.

    Args:
        df: interactions with ``user_id`` and ``item_id`` columns (other columns are carried along).
        min_users_per_item: minimum number of distinct users per item; 0 or 1 keeps every item.
        min_items_per_user: minimum number of distinct items per user; 0 or 1 keeps every user.
        k_core: iterate until both thresholds hold instead of a single pass.
        source: name of the data, used in error messages.

    Returns:
        ``(filtered, report)``. ``filtered`` has a fresh ``0..n-1`` index (``df`` itself when no threshold is
        active). ``report`` has ``rows_in``, ``rows_out``, ``users_in``, ``users_out``, ``items_in``, ``items_out``,
        ``removed_rows``, ``removed_users``, ``removed_items`` and ``iterations`` (rounds of item-then-user filtering
        run; 0 when filtering is off).

    Example:

    >>> import pandas as pd
    >>> df = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [10, 11, 10, 11, 10]})
    >>> kept, report = filter_interactions(df, min_users_per_item=2, min_items_per_user=2)
    >>> kept["user_id"].tolist(), report["removed_rows"], report["removed_users"]
    ([1, 1, 2, 2], 1, 1)

    Raises:
        DataError: for a negative or non-integer threshold, missing columns, or when nothing is left.
    """
    for name, value in (("min_users_per_item", min_users_per_item), ("min_items_per_user", min_items_per_user)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{source}: {name} must be a non-negative integer, got {value!r}")
    missing = [column for column in (USER, ITEM) if column not in df.columns]
    if missing:
        raise DataError(f"{source}: cannot filter, no column {missing[0]!r}; the columns are {list(df.columns)}")

    # A threshold of 1 keeps everything that has a row, so it is no filter at all.
    active = min_users_per_item > 1 or min_items_per_user > 1
    if not active:
        # Nothing to filter: the report needs only the distinct counts, not codes or sorts.
        n_users, n_items = _distinct(df[USER]), _distinct(df[ITEM])
        report = {"rows_in": len(df), "rows_out": len(df), "users_in": n_users, "users_out": n_users}
        report.update(items_in=n_items, items_out=n_items, removed_rows=0, removed_users=0, removed_items=0)
        report["iterations"] = 0
        if len(df) == 0:
            raise DataError(
                f"{source}: filtering (min_users_per_item={min_users_per_item}, min_items_per_user="
                f"{min_items_per_user}{', k_core' if k_core else ''}) left no users; the data has {n_users} users, "
                f"{n_items} items and {len(df)} interactions, lower the thresholds"
            )
        return df, report

    users, n_users = _codes(df[USER])
    items, n_items = _codes(df[ITEM])
    keep = np.ones(len(df), dtype=bool)
    iterations = 0
    # With one threshold a single pass is already stable: dropping users never lowers another user's item count.
    iterate = k_core and min_users_per_item > 1 and min_items_per_user > 1
    while active:
        iterations += 1
        if min_users_per_item > 1:
            keep &= _distinct_counts(items, users, keep, n_items, n_users)[items] >= min_users_per_item
        before_users = keep.sum()
        if min_items_per_user > 1:
            keep &= _distinct_counts(users, items, keep, n_users, n_items)[users] >= min_items_per_user
        # Items were just filtered, so if the user step removed nothing both thresholds already hold.
        if not iterate or keep.sum() == before_users or not keep.any():
            break

    report = {
        "rows_in": len(df),
        "rows_out": int(keep.sum()),
        "users_in": n_users,
        "users_out": int(np.count_nonzero(np.bincount(users[keep], minlength=n_users))),
        "items_in": n_items,
        "items_out": int(np.count_nonzero(np.bincount(items[keep], minlength=n_items))),
    }
    report.update(
        removed_rows=report["rows_in"] - report["rows_out"],
        removed_users=report["users_in"] - report["users_out"],
        removed_items=report["items_in"] - report["items_out"],
        iterations=iterations,
    )
    if report["rows_out"] == 0:
        core = ", k_core" if k_core else ""
        raise DataError(
            f"{source}: filtering (min_users_per_item={min_users_per_item}, min_items_per_user={min_items_per_user}"
            f"{core}) left no users; the data has {n_users} users, {n_items} items and {len(df)} interactions, "
            "lower the thresholds"
        )
    if not active:
        return df, report
    return df.loc[keep].reset_index(drop=True), report


def _dense_int_range(column: pd.Series) -> tuple[np.ndarray, int] | None:
    """An integer column's values minus their minimum and the span, when the span is small enough for a table of
    that size to be cheaper than hashing (ids numbered from 0 or 1, the usual case); else ``None``."""
    values = column.to_numpy()
    if values.dtype.kind != "i" or len(values) == 0:
        return None
    low, high = int(values.min()), int(values.max())
    if high - low > 2 * len(values) + 1024:
        return None
    return values - low, high - low + 1


def _distinct(column: pd.Series) -> int:
    """The number of distinct ids, counted as :func:`_codes` counts them."""
    dense = _dense_int_range(column)
    if dense is not None:
        present = np.zeros(dense[1], dtype=bool)
        present[dense[0]] = True
        return int(np.count_nonzero(present))
    return _codes(column)[1]


def _codes(column: pd.Series) -> tuple[np.ndarray, int]:
    """Dense integer codes of a column of ids (ints or strings) and the number of distinct ids."""
    dense = _dense_int_range(column)
    if dense is not None:
        offsets, span = dense
        present = np.zeros(span, dtype=bool)
        present[offsets] = True
        # Codes in id order rather than first-seen order: only their equality matters to the counts.
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[offsets], int(rank[-1]) + 1
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return codes, len(uniques)


def _distinct_counts(
    groups: np.ndarray, members: np.ndarray, keep: np.ndarray, n_groups: int, n_members: int
) -> np.ndarray:
    """For every group code, how many distinct member codes it has among the kept rows."""
    pairs = groups[keep].astype(np.int64) * n_members + members[keep]
    pairs.sort()
    first = np.ones(len(pairs), dtype=bool)
    np.not_equal(pairs[1:], pairs[:-1], out=first[1:])
    return np.bincount(pairs[first] // n_members, minlength=n_groups)
