"""The vectorised preprocessing (codes, chronological order, filter, splits, training rows, CSV parsing) against
brute-force Python references on random input: same ids, same order, same sequences, same messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_processing import DataError, build_train_dataset, filter_interactions, read_interactions
from data_processing.splits import leave_one_out_split, temporal_split
from data_processing.vocab import ItemVocab, sorted_unique, sorted_unique_codes

SEEDS = range(6)


def random_ids(rng, n: int, kind: str):
    """Ids of several shapes: dense ints, sparse and negative ints (hash path), strings, int32."""
    if kind == "dense":
        return rng.integers(1, max(n // 3, 2), n)
    if kind == "sparse":
        return rng.choice(np.array([-(2**62), -7, 0, 5, 2**40, 2**62]), n)
    if kind == "int32":
        return rng.integers(-50, 50, n).astype(np.int32)
    values = np.empty(n, dtype=object)
    values[:] = [f"u{v}" for v in rng.integers(0, max(n // 3, 2), n)]
    return values


def random_frame(rng, n: int, kind: str, ts: str | None) -> pd.DataFrame:
    frame = pd.DataFrame({"user_id": random_ids(rng, n, kind), "item_id": random_ids(rng, n, "dense")})
    if ts == "sorted":
        frame["timestamp"] = np.sort(rng.integers(0, 20, n))
    elif ts == "int":
        frame["timestamp"] = rng.integers(0, 20, n)
    elif ts == "wide":  # a span too wide to pack with the row position: the fallback sort
        frame["timestamp"] = rng.choice(np.array([-(2**62), 0, 2**62]), n)
    elif ts == "float":
        frame["timestamp"] = rng.choice(np.array([-0.0, 0.0, 0.5, 1e300, -3.25]), n)
    return frame


def reference_sequences(frame: pd.DataFrame) -> dict:
    """Raw user id -> raw items in (timestamp, row) order, by plain Python."""
    rows: dict = {}
    for position, row in enumerate(frame.itertuples(index=False)):
        key = (row.timestamp, position) if "timestamp" in frame.columns else position
        rows.setdefault(row.user_id, []).append((key, row.item_id))
    return {user: [item for _, item in sorted(pairs, key=lambda p: p[0])] for user, pairs in rows.items()}


@pytest.mark.parametrize("kind", ["dense", "sparse", "int32", "str"])
@pytest.mark.parametrize("seed", SEEDS)
def test_sorted_unique_codes_is_the_sorted_position(kind, seed):
    values = random_ids(np.random.default_rng(seed), 200, kind)
    uniques, codes = sorted_unique_codes(pd.Series(values))
    expected = sorted_unique(values)
    assert uniques.tolist() == expected
    assert [type(v) for v in uniques.tolist()] == [type(v) for v in expected]
    assert codes.dtype == np.int64
    assert codes.tolist() == [expected.index(v) for v in values.tolist()]


@pytest.mark.parametrize("kind", ["dense", "sparse", "int32", "str"])
def test_vocab_built_in_one_pass_equals_from_items_and_lookup(kind):
    items = random_ids(np.random.default_rng(1), 300, kind)
    vocab, indices = ItemVocab.from_items_with_indices(items)
    reference = ItemVocab(sorted_unique(items))
    assert vocab == reference and ItemVocab.from_items(items) == reference
    assert indices.tolist() == reference.lookup(items).tolist()
    assert vocab.decode(indices) == items.tolist()
    assert vocab.to_json_dict() == reference.to_json_dict()


@pytest.mark.parametrize("ts", [None, "sorted", "int", "wide", "float"])
@pytest.mark.parametrize("kind", ["dense", "sparse", "str"])
@pytest.mark.parametrize("seed", SEEDS)
def test_leave_one_out_equals_the_reference(seed, kind, ts):
    frame = random_frame(np.random.default_rng(seed), 150, kind, ts)
    split = leave_one_out_split(frame, max_len=3)
    sequences = {u: s for u, s in reference_sequences(frame).items() if len(s) >= 3}
    users = sorted_unique(list(sequences))
    vocab = ItemVocab(sorted_unique(frame["item_id"]))
    assert split.item_vocab == vocab
    assert split.train_user_ids == users == split.valid.user_ids == split.test.user_ids
    for k, user in enumerate(users):
        encoded = vocab.encode(sequences[user]).tolist()
        assert split.train_sequences[k].tolist() == encoded[:-2]
        assert split.valid.contexts[k].tolist() == encoded[:-2] and split.valid.targets[k] == encoded[-2]
        assert split.test.contexts[k].tolist() == encoded[:-1] and split.test.targets[k] == encoded[-1]
        assert split.train_sequences[k].dtype == split.test.contexts[k].dtype == np.int64
    beyond = {"valid": sum(max(len(s) - 2 - 3, 0) for s in sequences.values())}
    beyond["test"] = sum(max(len(s) - 1 - 3, 0) for s in sequences.values())
    assert split.stats["eval_context_items_beyond_max_len"] == beyond


@pytest.mark.parametrize("ts", ["sorted", "int", "float"])
@pytest.mark.parametrize("seed", SEEDS)
def test_temporal_split_equals_the_reference(seed, ts):
    frame = random_frame(np.random.default_rng(seed), 300, "dense", ts)
    try:
        split = temporal_split(frame, max_len=2, quantile=0.7)
    except DataError:
        pytest.skip("no training or no evaluated user in this draw")
    t_star = np.quantile(frame["timestamp"].to_numpy(), 0.7, method="nearest")
    sequences = reference_sequences(frame)
    times = reference_sequences(frame.assign(item_id=frame["timestamp"]))
    test_users = {u for u, t in times.items() if max(t) >= t_star}
    train = {u: s for u, s in sequences.items() if u not in test_users and len(s) >= 2}
    vocab = ItemVocab(sorted_unique([item for s in train.values() for item in s]))
    evaluated = {}
    for user in test_users:
        kept = [i for i, t in zip(sequences[user], times[user]) if t >= t_star and vocab.lookup([i])[0]]
        if len(kept) >= 3:
            evaluated[user] = vocab.encode(kept).tolist()
    assert split.item_vocab == vocab
    assert split.train_user_ids == sorted(train)
    assert [s.tolist() for s in split.train_sequences] == [vocab.encode(train[u]).tolist() for u in sorted(train)]
    assert split.test.user_ids == sorted(evaluated) == split.valid.user_ids
    assert [c.tolist() for c in split.test.contexts] == [evaluated[u][:-1] for u in sorted(evaluated)]
    assert split.test.targets.tolist() == [evaluated[u][-1] for u in sorted(evaluated)]
    assert [c.tolist() for c in split.valid.contexts] == [evaluated[u][:-2] for u in sorted(evaluated)]
    assert split.valid.targets.tolist() == [evaluated[u][-2] for u in sorted(evaluated)]


@pytest.mark.parametrize("seed", SEEDS)
def test_training_rows_and_partner_index_equal_the_reference(seed):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, 6, rng.integers(0, 9)) for _ in range(40)]
    sequences[3] = list(sequences[3])  # a list and an int32 array take the per-sequence path, with the same rows
    sequences[5] = sequences[5].astype(np.int32)
    examples = build_train_dataset(sequences, max_len=4)
    kept = [k for k, s in enumerate(sequences) if len(s) >= 2]
    rows = examples.dataset.to_dict()
    assert rows["user_index"] == kept and rows["row"] == list(range(len(kept)))
    assert rows["input_ids"] == [list(sequences[k][:-1][-4:]) for k in kept]
    assert rows["labels"] == [list(sequences[k][1:][-4:]) for k in kept]
    assert rows["target"] == [sequences[k][-1] for k in kept]
    targets = rows["target"]
    assert examples.partner_rows.tolist() == sorted(range(len(kept)), key=lambda r: (targets[r], r))
    for r, target in enumerate(targets):
        group = [q for q in examples.partner_rows.tolist() if targets[q] == target]
        start, size, rank = rows["partner_group_start"][r], rows["partner_group_size"][r], rows["partner_rank"][r]
        assert examples.partner_rows[start : start + size].tolist() == group and group[rank] == r
    assert examples.num_dropped_short == len(sequences) - len(kept)
    assert examples.mean_labelled_positions == np.mean([min(len(sequences[k]) - 1, 4) for k in kept])
    assert examples.num_targets_beyond_max_len == sum(max(len(sequences[k]) - 1 - 4, 0) for k in kept)


def reference_filter(frame: pd.DataFrame, min_users: int, min_items: int, k_core: bool) -> list:
    keep = [True] * len(frame)
    pairs = list(zip(frame["user_id"], frame["item_id"]))
    while True:
        before = sum(keep)
        if min_users > 1:
            users = {}
            for (u, i), k in zip(pairs, keep):
                if k:
                    users.setdefault(i, set()).add(u)
            keep = [k and len(users[i]) >= min_users for (u, i), k in zip(pairs, keep)]
        if min_items > 1:
            items = {}
            for (u, i), k in zip(pairs, keep):
                if k:
                    items.setdefault(u, set()).add(i)
            keep = [k and len(items[u]) >= min_items for (u, i), k in zip(pairs, keep)]
        if not (k_core and min_users > 1 and min_items > 1) or sum(keep) == before:
            return keep


@pytest.mark.parametrize("thresholds", [(0, 0, False), (1, 1, True), (2, 0, False), (0, 3, False), (2, 3, True)])
@pytest.mark.parametrize("kind", ["dense", "sparse", "str"])
@pytest.mark.parametrize("seed", SEEDS)
def test_filter_equals_the_reference(seed, kind, thresholds):
    frame = random_frame(np.random.default_rng(seed), 200, kind, "int")
    min_users, min_items, k_core = thresholds
    keep = reference_filter(frame, min_users, min_items, k_core)
    try:
        kept, report = filter_interactions(frame, min_users, min_items, k_core)
    except DataError:
        assert not any(keep)
        return
    expected = frame.loc[keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, expected)
    assert report["rows_out"] == len(expected) and report["rows_in"] == len(frame)
    assert (report["users_in"], report["items_in"]) == (frame["user_id"].nunique(), frame["item_id"].nunique())
    assert (report["users_out"], report["items_out"]) == (expected["user_id"].nunique(), expected["item_id"].nunique())


# A file is read by Arrow when plain and by pandas otherwise; a quote around a header name forces the pandas path on
# the same table, so the two readings must agree, errors included.
CSV_CASES = [
    "user_id,item_id,timestamp\n3,30,300\n1,10,100\n",
    "user_id,item_id,timestamp\n3,30,300\n1,10,100",  # no final line break
    "user_id,item_id,timestamp\nu3,007,1.5\nu1,-0,2e3\n",  # string ids, float times
    "user_id,item_id,timestamp,extra\n3,30,300,x\n1,10,100,\n",
    "user_id,item_id,timestamp\n3,30,300\n\n1,10,100\n",  # a blank line
    "user_id,item_id,timestamp\n3,30,300\n ,10,100\n",  # a blank user
    "user_id,item_id,timestamp\n3,30,300\n1,NA,100\n",  # a missing spelling
    "user_id,item_id,timestamp\n3,30,300\n1,10,NaN\n",
    "user_id,item_id,timestamp\n3,30\n1,10,100\n",  # a short row
    "user_id,item_id,timestamp\n3,30,300,4\n1,10,100\n",  # a long row
    "user_id,item_id,timestamp\n3, 30,300\n",  # padded id
    "user_id,item_id,timestamp\n3,30,soon\n",  # unparsable time
    "user_id,item_id,timestamp\n99999999999999999999,30,300\n",  # 20 digits: a string id
    "user_id,item_id\n3,30\n1,10\n",  # no timestamp column
    "a,b,c\n3,30,300\n",  # missing columns
    "user_id,item_id,timestamp\n",  # header only
]


@pytest.mark.parametrize("sep", [",", "\t"])
@pytest.mark.parametrize("case", range(len(CSV_CASES)))
def test_plain_csv_reads_as_the_pandas_path_does(tmp_path, case, sep):
    text = CSV_CASES[case].replace(",", sep)
    plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    plain.write_text(text)
    quoted.write_text('"user_id"' + text[len("user_id") :] if text.startswith("user_id") else '"a"' + text[1:])
    fmt = "csv" if sep == "," else "tsv"

    def read(path):
        try:
            return read_interactions(path, fmt)
        except DataError as err:
            return str(err).replace(str(path), "FILE")

    fast, slow = read(plain), read(quoted)
    if isinstance(slow, str):
        assert fast == slow
    else:
        pd.testing.assert_frame_equal(fast, slow)
        for column in fast.columns:
            assert [type(v) for v in fast[column]] == [type(v) for v in slow[column]]


@pytest.mark.parametrize("seed", range(40))
def test_integer_ids_and_times_follow_the_documented_rule(tmp_path, seed):
    """The integer rule is checked on the bytes, not by a regular expression per value: the two must agree."""
    import re

    rng = np.random.default_rng(seed)
    alphabet = list("0123456789+-") if seed % 2 else list("0123456789") + ["-"] * (seed % 3 == 0)
    draw = lambda: "".join(rng.choice(alphabet, rng.integers(1, 21)))  # noqa: E731
    users = [draw() if rng.random() < 0.2 else str(rng.integers(-5, 10 ** int(rng.integers(1, 19)))) for _ in range(8)]
    times = [draw() if rng.random() < 0.2 else str(rng.integers(0, 10 ** int(rng.integers(1, 18)))) for _ in range(8)]
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},1,{t}\n" for u, t in zip(users, times)))
    try:
        frame = read_interactions(path, "csv")
    except DataError as err:
        # Only a time that is no number (or an integer beyond int64) is refused; ids never are.
        assert "column 'timestamp'" in str(err)
        return
    if all(re.fullmatch(r"0|-?[1-9][0-9]{0,17}", u) for u in users):
        assert frame["user_id"].dtype == np.int64 and frame["user_id"].tolist() == [int(u) for u in users]
    else:
        assert frame["user_id"].dtype == object and frame["user_id"].tolist() == users
    if all(re.fullmatch(r"[+-]?[0-9]+", t) for t in times):
        assert frame["timestamp"].dtype == np.int64 and frame["timestamp"].tolist() == [int(t) for t in times]
    else:
        assert frame["timestamp"].dtype == np.float64
