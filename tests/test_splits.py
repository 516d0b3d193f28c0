"""Splits and item vocabulary: the paper's temporal split checked on ML-100K against an independent implementation,
leave-one-out on hand-made tables, error cases, and property tests on random tables."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_processing import (
    DataError,
    ItemVocab,
    leave_one_out_split,
    split_interactions,
    temporal_split,
    user_holdout_split,
)
from tests.helpers import require


@pytest.fixture(scope="module")
def ml100k(shared_data) -> pd.DataFrame:
    return pd.read_csv(require(shared_data / "ml-100k" / "interactions.csv.gz"))[["user_id", "item_id", "timestamp"]]


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------


def check_accounting(df: pd.DataFrame, split) -> None:
    """Every input row, user and item is used or counted as removed under a reason."""
    s = split.stats
    assert s["num_input_rows"] == len(df)
    assert (
        s["num_train_interactions"] + s["num_eval_interactions"] + sum(s["removed_rows"].values())
        == s["num_input_rows"]
    )
    assert s["num_train_interactions"] == sum(len(x) for x in split.train_sequences)
    assert s["num_input_users"] == df["user_id"].nunique()
    assert s["num_input_items"] == df["item_id"].nunique()
    assert s["num_items"] + sum(s["removed_items"].values()) == s["num_input_items"]
    assert s["num_items"] == len(split.item_vocab)
    assert s["num_train_users"] == len(split.train_user_ids) == len(split.train_sequences)
    assert s["num_test_users"] == s["num_valid_users"] == len(split.test) == len(split.valid)
    if split.protocol in ("temporal", "user_holdout"):
        assert s["num_train_users"] + s["num_test_users"] + sum(s["removed_users"].values()) == s["num_input_users"]
        assert not set(split.train_user_ids) & set(split.test.user_ids)
        # test-period rows used by evaluation: the whole test context (it holds the validation one) and its target
        assert sum(len(c) + 1 for c in split.test.contexts) == s["num_eval_interactions"]
    else:
        assert s["num_test_users"] + sum(s["removed_users"].values()) == s["num_input_users"]
        assert split.train_user_ids == split.test.user_ids
        assert s["num_eval_interactions"] == 2 * s["num_test_users"]
    assert split.valid.user_ids == split.test.user_ids
    json.dumps(s)  # the stats go into a JSON file


def check_eval_structure(split, max_len: int) -> None:
    """Validation target = last item of the test context; contexts whole (never cut to the window), nested;
    dtypes; the items beyond the window counted."""
    for vctx, vt, tctx, _ in zip(split.valid.contexts, split.valid.targets, split.test.contexts, split.test.targets):
        assert vctx.dtype == np.int64 and tctx.dtype == np.int64
        assert len(vctx) >= 1 and len(tctx) == len(vctx) + 1
        assert tctx[-1] == vt  # the test context includes the validation target, as its most recent item
        assert np.array_equal(tctx[:-1], vctx)
    for c in split.test.contexts + split.valid.contexts:
        assert c.min() >= 1 and c.max() <= len(split.item_vocab)
    beyond = split.stats["eval_context_items_beyond_max_len"]
    assert beyond["valid"] == sum(max(len(c) - max_len, 0) for c in split.valid.contexts)
    assert beyond["test"] == sum(max(len(c) - max_len, 0) for c in split.test.contexts)


def reference_temporal(df: pd.DataFrame, max_len: int, q: float = 0.95):
    """Independent temporal split from the protocol (docs/protocols.md) in plain Python loops (small tables)."""
    rows = list(zip(range(len(df)), df["user_id"].tolist(), df["item_id"].tolist(), df["timestamp"].tolist()))
    t_star = np.quantile(np.array([r[3] for r in rows]), q, method="nearest").item()
    test_users = {u for _, u, _, t in rows if t >= t_star}
    history: dict = {}
    for pos, u, i, t in rows:
        if u not in test_users:
            history.setdefault(u, []).append((t, pos, i))
    train = {u: [i for _, _, i in sorted(h)] for u, h in history.items() if len(h) >= 2}
    known = {i for seq in train.values() for i in seq}
    periods: dict = {}
    for pos, u, i, t in rows:
        if u in test_users and t >= t_star and i in known:
            periods.setdefault(u, []).append((t, pos, i))
    evaluated = {u: [i for _, _, i in sorted(p)] for u, p in periods.items() if len(p) >= 3}
    return t_star, train, known, evaluated


def reference_loo(df: pd.DataFrame):
    rows = list(zip(range(len(df)), df["user_id"].tolist(), df["item_id"].tolist()))
    ts = df["timestamp"].tolist() if "timestamp" in df.columns else [0] * len(df)
    seqs: dict = {}
    for (pos, u, i), t in zip(rows, ts):
        seqs.setdefault(u, []).append((t, pos, i))
    return {u: [i for _, _, i in sorted(s)] for u, s in seqs.items() if len(s) >= 3}


def raw(split, indices) -> list:
    return split.item_vocab.decode(indices) if len(indices) else []


# ---------------------------------------------------------------------------------------------------------------------
# ML-100K: the protocol's check numbers and an independent pandas implementation
# ---------------------------------------------------------------------------------------------------------------------


def test_temporal_ml100k_spec_counts(ml100k):
    split = temporal_split(ml100k, source="ml-100k")
    s = split.stats
    assert s["t_star"] == 891717885
    assert s["num_items"] == 1611
    assert s["num_train_users"] == 830
    assert s["num_train_interactions"] == 80161
    assert s["num_test_users"] == 92
    check_accounting(ml100k, split)
    check_eval_structure(split, 200)


def test_temporal_ml100k_matches_independent_pandas(ml100k):
    """A groupby/merge implementation (a different code path) gives the same vocabulary, sequences and tuples."""
    max_len = 200
    split = temporal_split(ml100k, max_len=max_len)
    df = ml100k.assign(row=np.arange(len(ml100k)))
    t_star = df["timestamp"].quantile(0.95, interpolation="nearest")
    assert t_star == split.stats["t_star"]

    test_users = df.loc[df["timestamp"] >= t_star, ["user_id"]].drop_duplicates()
    merged = df.merge(test_users.assign(is_test=True), on="user_id", how="left")
    train = merged[merged["is_test"].isna()]
    train = train[train.groupby("user_id")["item_id"].transform("size") >= 2]
    items = np.sort(train["item_id"].unique())
    assert split.item_vocab.item_ids == items.tolist()
    mapping = pd.Series(np.arange(1, len(items) + 1), index=items)

    train = train.sort_values(["user_id", "timestamp", "row"])
    expected_train = train.groupby("user_id")["item_id"].apply(lambda s: mapping[s.to_numpy()].tolist())
    assert split.train_user_ids == expected_train.index.tolist()
    assert [s.tolist() for s in split.train_sequences] == expected_train.tolist()
    assert (train["timestamp"] < t_star).all()

    period = merged[(merged["timestamp"] >= t_star) & merged["item_id"].isin(items)]
    period = period.sort_values(["user_id", "timestamp", "row"])
    period = period[period.groupby("user_id")["item_id"].transform("size") >= 3]
    expected = []
    for user, g in period.groupby("user_id"):
        seq = mapping[g["item_id"].to_numpy()].tolist()
        expected.append((user, seq[-2], seq[-1], tuple(seq[:-2]), tuple(seq[:-1])))
    got = [
        (u, int(vt), int(tt), tuple(vc.tolist()), tuple(tc.tolist()))
        for u, vt, tt, vc, tc in zip(
            split.test.user_ids, split.valid.targets, split.test.targets, split.valid.contexts, split.test.contexts
        )
    ]
    assert len(expected) == 92
    assert got == expected


def test_temporal_ml100k_no_leak(ml100k):
    """No test user trains; training users' rows are all before t*; the training data is exactly their history."""
    split = temporal_split(ml100k)
    t_star = split.stats["t_star"]
    later = set(ml100k.loc[ml100k["timestamp"] >= t_star, "user_id"])
    assert not later & set(split.train_user_ids)
    assert set(split.test.user_ids) <= later
    train_rows = ml100k[ml100k["user_id"].isin(split.train_user_ids)]
    assert (train_rows["timestamp"] < t_star).all()
    assert len(train_rows) == split.stats["num_train_interactions"]


def test_leave_one_out_ml100k(ml100k):
    split = leave_one_out_split(ml100k, max_len=50)
    assert split.stats["num_items"] == 1682 and split.stats["num_test_users"] == 943
    check_accounting(ml100k, split)
    check_eval_structure(split, 50)
    for seq, vctx, tctx, vt, _ in zip(
        split.train_sequences, split.valid.contexts, split.test.contexts, split.valid.targets, split.test.targets
    ):
        assert np.array_equal(vctx, seq)  # the whole history, though the model reads 50
        assert np.array_equal(tctx, np.append(seq, vt))
    assert split.stats["eval_context_items_beyond_max_len"]["test"] > 0  # ML-100K has users past 50 items


# ---------------------------------------------------------------------------------------------------------------------
# hand-made tables
# ---------------------------------------------------------------------------------------------------------------------


def test_leave_one_out_hand_made():
    df = pd.DataFrame(
        {
            "user_id": [2, 1, 1, 2, 1, 2, 1, 3, 3],
            "item_id": [30, 10, 20, 10, 30, 40, 40, 50, 10],
        }
    )
    split = leave_one_out_split(df, max_len=2, source="toy")
    assert split.item_vocab.item_ids == [10, 20, 30, 40, 50]  # every item, incl. 50 seen only by a dropped user
    assert split.train_user_ids == [1, 2]
    assert [raw(split, s) for s in split.train_sequences] == [[10, 20], [30]]
    assert raw(split, split.valid.targets) == [30, 10]
    assert raw(split, split.test.targets) == [40, 40]
    assert [raw(split, c) for c in split.valid.contexts] == [[10, 20], [30]]
    assert [raw(split, c) for c in split.test.contexts] == [[10, 20, 30], [30, 10]]  # whole, though max_len = 2
    assert split.stats["eval_context_items_beyond_max_len"] == {"valid": 0, "test": 1}
    assert split.stats["removed_users"] == {"fewer_than_3_interactions": 1}
    assert split.stats["removed_rows"] == {"fewer_than_3_interactions": 2}
    check_accounting(df, split)


def test_leave_one_out_string_ids_and_timestamps_order_rows():
    df = pd.DataFrame(
        {
            "user_id": ["u", "u", "u", "u"],
            "item_id": ["c", "a", "b", "d"],
            "timestamp": [3, 1, 2, 2],
        }
    )
    split = leave_one_out_split(df)
    # sorted by time; the tie at t=2 keeps file order (b before d)
    assert raw(split, split.train_sequences[0]) == ["a", "b"]
    assert raw(split, split.valid.targets) == ["d"] and raw(split, split.test.targets) == ["c"]


def test_ties_broken_by_row_order():
    # each user's rows share one timestamp, interleaved with the other user's: file order alone decides
    df = pd.DataFrame(
        {
            "user_id": [1, 2, 1, 2, 1, 2, 1, 2],
            "item_id": [7, 6, 5, 7, 6, 1, 1, 5],
            "timestamp": [5, 50, 5, 50, 5, 50, 5, 50],
        }
    )
    split = temporal_split(df, quantile=0.6)  # nearest of [5]*4 + [50]*4 at 0.6 * 7 = 4.2 -> 50
    assert split.stats["t_star"] == 50
    assert [raw(split, s) for s in split.train_sequences] == [[7, 5, 6, 1]]
    assert split.test.user_ids == [2]
    assert raw(split, split.valid.contexts[0]) == [6, 7] and raw(split, split.valid.targets) == [1]
    assert raw(split, split.test.contexts[0]) == [6, 7, 1] and raw(split, split.test.targets) == [5]
    # the same with a stable order check under a shuffled index label (positions, not labels, decide)
    shuffled = df.set_axis([10, 3, 7, 1, 0, 5, 2, 4])
    again = temporal_split(shuffled, quantile=0.6)
    assert [s.tolist() for s in again.train_sequences] == [s.tolist() for s in split.train_sequences]
    assert again.test.contexts[0].tolist() == split.test.contexts[0].tolist()


def test_temporal_hand_made():
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3, 4, 4, 4, 4, 4, 5, 5],
            "item_id": [1, 2, 3, 2, 3, 9, 1, 2, 3, 1, 8, 1, 2],
            "timestamp": [1, 2, 3, 1, 2, 1, 1, 9, 10, 10, 10, 2, 9],
        }
    )
    split = temporal_split(df, max_len=2, quantile=0.7)
    t_star = split.stats["t_star"]
    assert t_star == 9
    assert split.train_user_ids == [1, 2]  # 3 has a single interaction; 4 and 5 are test users
    assert split.stats["removed_users"] == {
        "train_user_single_interaction": 1,
        "test_user_fewer_than_3_test_interactions": 1,
    }
    assert split.item_vocab.item_ids == [1, 2, 3]
    assert split.test.user_ids == [4]
    # user 4's test period by (time, row): 2, 3, 1, 8(unseen, dropped) -> validation 3 -> test 1
    assert raw(split, split.valid.targets) == [3] and raw(split, split.test.targets) == [1]
    assert [raw(split, c) for c in split.valid.contexts] == [[2]]
    assert [raw(split, c) for c in split.test.contexts] == [[2, 3]]
    assert split.stats["removed_rows"] == {
        "test_user_history_before_t_star": 1 + 1,  # user 4 at t=1, user 5 at t=2
        "train_user_single_interaction": 1,
        "test_item_not_in_training": 1,
        "test_user_fewer_than_3_test_interactions": 1,
    }
    assert split.stats["removed_items"] == {"not_in_training": 2}
    check_accounting(df, split)


def test_temporal_context_kept_whole_and_beyond_window_counted():
    users = [1, 1] + [2] * 6
    df = pd.DataFrame({"user_id": users, "item_id": [1, 2, 1, 2, 1, 2, 1, 2], "timestamp": [0, 0] + [5] * 6})
    split = temporal_split(df, max_len=2, quantile=0.5)
    assert [len(c) for c in split.test.contexts] == [5] and [len(c) for c in split.valid.contexts] == [4]
    assert split.stats["eval_context_items_beyond_max_len"] == {"valid": 4 - 2, "test": 5 - 2}
    assert "eval_context_beyond_max_len" not in split.stats["removed_rows"]  # every row is used now
    check_accounting(df, split)


# ---------------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------------


def test_temporal_needs_timestamps():
    df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]})
    with pytest.raises(DataError, match=r"^ml-1m: the temporal split needs timestamps; .*--split leave_one_out"):
        temporal_split(df, source="ml-1m")


def test_unknown_protocol():
    df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]})
    with pytest.raises(DataError, match="unknown split protocol 'random'"):
        split_interactions(df, "random", source="x.csv")
    assert split_interactions(df, "leave_one_out").protocol == "leave_one_out"


@pytest.mark.parametrize(
    "df, protocol, message",
    [
        (pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3]}), "leave_one_out", ">= 3 interactions"),
        # one timestamp for everything: every row is in the test period, nobody trains
        (
            pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": [4, 4, 4]}),
            "temporal",
            "no training users",
        ),
        (
            pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 3, 4], "timestamp": [1, 2, 3, 4]}),
            "temporal",
            "no evaluated users",
        ),
        (pd.DataFrame({"user_id": [], "item_id": []}), "leave_one_out", "empty"),
        (pd.DataFrame({"user": [1], "item_id": [1]}), "leave_one_out", "missing column 'user_id'"),
        (
            pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1.0, None, 2.0]}),
            "leave_one_out",
            "'item_id' is empty at row 1",
        ),
    ],
)
def test_data_errors(df, protocol, message):
    with pytest.raises(DataError, match=message) as info:
        split_interactions(df, protocol, source="t.csv")
    assert str(info.value).startswith("t.csv: ") and "\n" not in str(info.value)


def test_bad_max_len():
    with pytest.raises(DataError, match="max_len"):
        leave_one_out_split(pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]}), max_len=0)


# ---------------------------------------------------------------------------------------------------------------------
# vocabulary
# ---------------------------------------------------------------------------------------------------------------------


def test_vocab_round_trip_keeps_types():
    for ids in ([5, 3, 10], ["b", "a", "10", "9"], [2, "2", 1]):
        vocab = ItemVocab.from_items(ids)
        back = ItemVocab.from_json_dict(json.loads(json.dumps(vocab.to_json_dict())))
        assert back == vocab and back.item_ids == vocab.item_ids
        assert [type(v) for v in back.item_ids] == [type(v) for v in vocab.item_ids]
        assert vocab.decode(vocab.encode(ids)) == list(ids)
    assert ItemVocab.from_items([2, "2", 1]).item_ids == [1, 2, "2"]  # mixed: ints first, then strs
    assert ItemVocab.from_items(["b", "a", "10", "9"]).item_ids == ["10", "9", "a", "b"]


def test_vocab_encode_unknown_and_decode_errors():
    vocab = ItemVocab.from_items(pd.Series([10, 20, 30]))
    assert vocab.encode(np.array([30, 10])).tolist() == [3, 1]
    assert vocab.encode(["10", 20], unknown="drop").tolist() == [2]  # "10" (str) is not 10 (int)
    assert vocab.lookup([99, 20]).tolist() == [0, 2]
    with pytest.raises(DataError, match="item id 99 is not in the vocabulary"):
        vocab.encode([10, 99])
    with pytest.raises(DataError, match="index 0 is not an item index"):
        vocab.decode([0])
    with pytest.raises(DataError, match="appears more than once"):
        ItemVocab([1, 1])
    with pytest.raises(DataError, match="must be int or str"):
        ItemVocab([1.5])


def test_vocab_encode_is_vectorised_on_a_million_ids():
    vocab = ItemVocab.from_items(range(1, 3417))
    ids = np.random.default_rng(0).integers(1, 3417, size=1_000_000)
    assert np.array_equal(vocab.encode(ids), ids)  # sorted ints 1..n map to themselves


# ---------------------------------------------------------------------------------------------------------------------
# property tests on random small tables
# ---------------------------------------------------------------------------------------------------------------------


@st.composite
def interaction_tables(draw, with_timestamps: bool = True):
    n = draw(st.integers(1, 40))
    string_ids = draw(st.booleans())
    users = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    data = {
        "user_id": [f"u{u}" for u in users] if string_ids else users,
        "item_id": [f"i{i}" for i in items] if string_ids else items,
    }
    if with_timestamps:
        data["timestamp"] = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))  # small range: many ties
    return pd.DataFrame(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=interaction_tables(), max_len=st.integers(1, 4), q=st.sampled_from([0.5, 0.8, 0.95, 1.0]))
def test_temporal_property(df, max_len, q):
    t_star, train, known, evaluated = reference_temporal(df, max_len, q)
    if not train or not evaluated:
        with pytest.raises(DataError):
            temporal_split(df, max_len=max_len, quantile=q)
        return
    split = temporal_split(df, max_len=max_len, quantile=q)
    assert split.stats["t_star"] == t_star
    assert split.item_vocab.item_ids == sorted(known)
    assert dict(zip(split.train_user_ids, [raw(split, s) for s in split.train_sequences])) == train
    assert split.train_user_ids == sorted(train)
    assert split.test.user_ids == sorted(evaluated)
    for k, u in enumerate(split.test.user_ids):
        seq = evaluated[u]
        # contexts hold only interactions strictly earlier (in (time, row) order) than their target
        assert raw(split, split.valid.contexts[k]) == seq[:-2]
        assert raw(split, split.test.contexts[k]) == seq[:-1]
        assert raw(split, [split.valid.targets[k]]) == [seq[-2]]
        assert raw(split, [split.test.targets[k]]) == [seq[-1]]
    # no training row at or after t*, no test user in training
    for u in split.train_user_ids:
        assert (df.loc[df["user_id"] == u, "timestamp"] < t_star).all()
    check_accounting(df, split)
    check_eval_structure(split, max_len)
    # the rows used form a sub-multiset of the input rows
    used = Counter()
    for u, s in zip(split.train_user_ids, split.train_sequences):
        used.update((u, i) for i in raw(split, s))
    for k, u in enumerate(split.test.user_ids):
        used.update((u, i) for i in raw(split, split.test.contexts[k]) + raw(split, [split.test.targets[k]]))
    assert not used - Counter(zip(df["user_id"], df["item_id"]))


@settings(max_examples=300, deadline=None)
@given(df=st.one_of(interaction_tables(True), interaction_tables(False)), max_len=st.integers(1, 4))
def test_leave_one_out_property(df, max_len):
    expected = reference_loo(df)
    if not expected:
        with pytest.raises(DataError):
            leave_one_out_split(df, max_len=max_len)
        return
    split = leave_one_out_split(df, max_len=max_len)
    assert split.item_vocab.item_ids == sorted(set(df["item_id"]))
    assert split.train_user_ids == sorted(expected)
    for k, u in enumerate(split.train_user_ids):
        seq = expected[u]
        assert raw(split, split.train_sequences[k]) == seq[:-2]  # training never sees either target
        assert raw(split, split.valid.contexts[k]) == seq[:-2]
        assert raw(split, split.test.contexts[k]) == seq[:-1]
        assert raw(split, [split.valid.targets[k], split.test.targets[k]]) == seq[-2:]
    check_accounting(df, split)
    check_eval_structure(split, max_len)


@settings(max_examples=300, deadline=None)
@given(
    df=st.one_of(interaction_tables(True), interaction_tables(False)),
    max_len=st.integers(1, 4),
    fraction=st.sampled_from([0.1, 0.3, 0.5, 0.9]),
    seed=st.integers(0, 3),
)
def test_user_holdout_property(df, max_len, fraction, seed):
    """Held-out users never reach training, every one of them is evaluated on its last two items, every other
    user's whole sequence is training data, and the number held out is the stated share."""
    expected = reference_loo(df)  # users with >= 3 interactions and their chronological sequences
    if len(expected) < 2:
        with pytest.raises(DataError):
            user_holdout_split(df, max_len=max_len, fraction=fraction, seed=seed)
        return
    split = user_holdout_split(df, max_len=max_len, fraction=fraction, seed=seed)
    held = split.test.user_ids
    assert len(held) == min(max(round(fraction * len(expected)), 1), len(expected) - 1)
    assert held == sorted(held) and set(held) <= set(expected)
    assert split.train_user_ids == sorted(set(expected) - set(held))
    for k, u in enumerate(split.train_user_ids):
        assert raw(split, split.train_sequences[k]) == expected[u]  # the whole sequence: no target held back
    trained_rows = Counter((u, i) for u, s in zip(split.train_user_ids, split.train_sequences) for i in raw(split, s))
    assert not trained_rows & Counter((u, i) for u in held for i in expected[u])  # no held-out row in training
    for k, u in enumerate(held):
        seq = expected[u]
        assert raw(split, split.valid.contexts[k]) == seq[:-2]
        assert raw(split, split.test.contexts[k]) == seq[:-1]
        assert raw(split, [split.valid.targets[k], split.test.targets[k]]) == seq[-2:]
    assert split.item_vocab.item_ids == sorted(set(df["item_id"]))
    check_accounting(df, split)
    check_eval_structure(split, max_len)
    again = user_holdout_split(df.copy(), max_len=max_len, fraction=fraction, seed=seed)
    assert again.test.user_ids == held  # the same users for the same data and seed


def test_user_holdout_seed_chooses_the_users_and_the_dispatch_passes_its_settings():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user_id": rng.integers(0, 200, 3000), "item_id": rng.integers(0, 50, 3000)})
    by_seed = [set(user_holdout_split(df, fraction=0.1, seed=s).test.user_ids) for s in range(3)]
    assert all(len(h) == 20 for h in by_seed)
    assert by_seed[0] != by_seed[1] != by_seed[2]
    via = split_interactions(df, "user_holdout", holdout_fraction=0.1, holdout_seed=1)
    assert set(via.test.user_ids) == by_seed[1] and via.stats["holdout_seed"] == 1
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DataError, match="held-out fraction"):
            user_holdout_split(df, fraction=bad)
