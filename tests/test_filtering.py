"""Frequency filtering: the single pass and the k-core on a hand-made table with results worked out by hand, the
report's accounting, errors, and property tests against a plain-Python reference on random tables."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_processing import DataError
from data_processing.filtering import filter_interactions

# Worked by hand with min_users_per_item=2, min_items_per_user=2:
#   items' distinct users in the rows below: a {1,2}, b {1,2}, c {3,4}, d {3,5}, e {5}; the item pass drops e.
#   User pass: 1 {a,b}, 2 {a,b}, 3 {c,d} stay; 4 {c} (twice, one distinct item) and
#   5 {d} (e is gone) leave. Single pass ends here: c and d are now held by user 3 alone.
#   k-core, round 2: c and d drop, taking user 3 with them; round 2's user step then has nothing to remove: stable.
ROWS = [
    (1, "a"),
    (3, "c"),
    (2, "b"),
    (4, "c"),
    (5, "d"),
    (1, "b"),
    (4, "c"),
    (3, "d"),
    (5, "e"),
    (2, "a"),
    (1, "a"),
]
TABLE = pd.DataFrame(
    {"user_id": [u for u, _ in ROWS], "item_id": [i for _, i in ROWS], "timestamp": list(range(100, 100 + len(ROWS)))}
)


def test_single_pass_by_hand():
    kept, report = filter_interactions(TABLE, min_users_per_item=2, min_items_per_user=2)
    expected = [(1, "a"), (3, "c"), (2, "b"), (1, "b"), (3, "d"), (2, "a"), (1, "a")]
    assert list(zip(kept["user_id"], kept["item_id"])) == expected
    assert kept["timestamp"].tolist() == [100, 101, 102, 105, 107, 109, 110]
    assert list(kept.index) == list(range(7))
    assert report == {
        "rows_in": 11,
        "rows_out": 7,
        "users_in": 5,
        "users_out": 3,
        "items_in": 5,
        "items_out": 4,
        "removed_rows": 4,
        "removed_users": 2,
        "removed_items": 1,
        "iterations": 1,
    }


def test_k_core_by_hand():
    kept, report = filter_interactions(TABLE, min_users_per_item=2, min_items_per_user=2, k_core=True)
    assert list(zip(kept["user_id"], kept["item_id"])) == [(1, "a"), (2, "b"), (1, "b"), (2, "a"), (1, "a")]
    assert (report["rows_out"], report["users_out"], report["items_out"]) == (5, 2, 2)
    assert (report["removed_rows"], report["removed_users"], report["removed_items"]) == (6, 3, 3)
    assert report["iterations"] == 2


def test_thresholds_count_distinct_not_rows():
    # User 4 has two rows but one distinct item; item a has three rows but two distinct users.
    kept, _ = filter_interactions(TABLE, min_items_per_user=2)
    assert 4 not in set(kept["user_id"])
    df = pd.DataFrame({"user_id": [1, 1, 1, 1, 2, 3], "item_id": ["z", "z", "z", "w", "w", "w"]})
    kept, report = filter_interactions(df, min_users_per_item=2)
    assert kept["item_id"].tolist() == ["w", "w", "w"]
    assert (report["removed_rows"], report["removed_items"], report["removed_users"]) == (3, 1, 0)


def test_default_is_no_filtering():
    kept, report = filter_interactions(TABLE)
    assert kept is TABLE
    assert report == {
        "rows_in": 11,
        "rows_out": 11,
        "users_in": 5,
        "users_out": 5,
        "items_in": 5,
        "items_out": 5,
        "removed_rows": 0,
        "removed_users": 0,
        "removed_items": 0,
        "iterations": 0,
    }
    assert filter_interactions(TABLE, 1, 1, k_core=True)[1]["removed_rows"] == 0


def test_one_threshold_is_stable_after_one_pass():
    kept, report = filter_interactions(TABLE, min_items_per_user=2, k_core=True)
    assert report["iterations"] == 1
    assert kept.groupby("user_id")["item_id"].nunique().min() >= 2


def test_string_ids_and_extra_columns_are_carried():
    df = pd.DataFrame({"user_id": ["x", "y", "x"], "item_id": ["007", "007", "7"], "rating": [1.0, 2.0, 3.0]})
    kept, report = filter_interactions(df, min_users_per_item=2)
    assert kept.to_dict("list") == {"user_id": ["x", "y"], "item_id": ["007", "007"], "rating": [1.0, 2.0]}
    assert report["removed_items"] == 1


def test_nothing_left_is_an_error():
    message = r"^beauty: filtering \(min_users_per_item=5, min_items_per_user=20\) left no users;"
    with pytest.raises(DataError, match=message):
        filter_interactions(TABLE, min_users_per_item=5, min_items_per_user=20, source="beauty")
    with pytest.raises(DataError, match=r"k_core\) left no users"):
        filter_interactions(TABLE, min_users_per_item=3, min_items_per_user=2, k_core=True)


@pytest.mark.parametrize("value", [-1, 2.5, "5", True])
def test_bad_thresholds(value):
    with pytest.raises(DataError, match=r"<data>: min_items_per_user must be a non-negative integer"):
        filter_interactions(TABLE, min_items_per_user=value)


def test_missing_columns():
    with pytest.raises(DataError, match=r"x: cannot filter, no column 'item_id'; the columns are \['user_id'\]"):
        filter_interactions(pd.DataFrame({"user_id": [1]}), source="x")


# ---------------------------------------------------------------------------------------------------------------------
# properties against a plain-Python reference
# ---------------------------------------------------------------------------------------------------------------------


def reference(rows, min_users, min_items, k_core):
    """Straightforward set-based filtering; returns the kept row positions."""
    kept = list(range(len(rows)))
    while True:
        users_of = {}
        for r in kept:
            users_of.setdefault(rows[r][1], set()).add(rows[r][0])
        kept = [r for r in kept if len(users_of[rows[r][1]]) >= min_users]
        items_of = {}
        for r in kept:
            items_of.setdefault(rows[r][0], set()).add(rows[r][1])
        after = [r for r in kept if len(items_of[rows[r][0]]) >= min_items]
        changed = len(after) != len(kept)
        kept = after
        if not k_core or not changed:
            return kept


tables = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(tables, st.integers(0, 4), st.integers(0, 4), st.booleans())
def test_matches_reference_and_accounts_for_everything(rows, min_users, min_items, k_core):
    df = pd.DataFrame({"user_id": [u for u, _ in rows], "item_id": [i for _, i in rows], "row": range(len(rows))})
    expected = reference(rows, min_users, min_items, k_core)
    if not expected:
        with pytest.raises(DataError, match="left no users"):
            filter_interactions(df, min_users, min_items, k_core)
        return
    kept, report = filter_interactions(df, min_users, min_items, k_core)
    assert kept["row"].tolist() == expected  # same rows, original order
    assert report["rows_in"] == report["rows_out"] + report["removed_rows"] == len(rows)
    assert report["users_in"] == report["users_out"] + report["removed_users"] == len({u for u, _ in rows})
    assert report["items_in"] == report["items_out"] + report["removed_items"] == len({i for _, i in rows})
    assert (report["rows_out"], report["users_out"], report["items_out"]) == (
        len(kept),
        kept["user_id"].nunique(),
        kept["item_id"].nunique(),
    )
    assert kept.groupby("user_id")["item_id"].nunique().min() >= min_items
    if k_core:
        assert kept.groupby("item_id")["user_id"].nunique().min() >= min_users
        again, again_report = filter_interactions(kept, min_users, min_items, k_core=True)
        assert again_report["removed_rows"] == 0 and len(again) == len(kept)
