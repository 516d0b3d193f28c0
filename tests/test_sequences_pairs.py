"""Training examples, the same-target partner index, stateless partner draws and the paired torch dataset."""

from __future__ import annotations

import gzip
import os
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

import data_processing.pairs as pairs_module
from data_processing import PairedTrainDataset, SequenceCollator, build_train_dataset, draw_partners, split_interactions
from data_processing.sequences import partner_index
from tests.helpers import require

datasets.disable_progress_bars()


def read_s3rec(path: str) -> pd.DataFrame:
    """`user item1 item2 ...` per line (Beauty, Sports, LastFM)."""
    users, items = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            ids = [int(x) for x in line.split()]
            users += [ids[0]] * (len(ids) - 1)
            items += ids[1:]
    return pd.DataFrame({"user_id": users, "item_id": items})


def toy_sequences() -> list[np.ndarray]:
    # targets (last items): 5, 5, 5, 2, 9, 9, -, 5  (the 7th has one item: dropped)
    return [
        np.array([1, 2, 5]),
        np.array([3, 5]),
        np.array([4, 3, 2, 1, 5]),
        np.array([1, 2]),
        np.array([6, 9]),
        np.array([7, 8, 9]),
        np.array([4]),
        np.array([2, 5]),
    ]


@pytest.fixture(scope="module")
def toy():
    return build_train_dataset(toy_sequences(), max_len=3)


# ---------------------------------------------------------------------------------------------------------------------
# build_train_dataset
# ---------------------------------------------------------------------------------------------------------------------


def test_columns_and_truncation(toy):
    ds = toy.dataset
    assert len(ds) == 7 and toy.num_dropped_short == 1
    assert ds["input_ids"][2] == [3, 2, 1] and ds["labels"][2] == [2, 1, 5]  # last max_len = 3 of [4 3 2 1] / [3 2 1 5]
    assert ds["input_ids"][0] == [1, 2] and ds["labels"][0] == [2, 5]
    assert list(ds["target"]) == [5, 5, 5, 2, 9, 9, 5]
    assert list(ds["row"]) == list(range(7))
    assert list(ds["user_index"]) == [0, 1, 2, 3, 4, 5, 7]  # position in train_sequences; #6 was too short
    for inp, lab in zip(ds["input_ids"], ds["labels"]):
        assert len(inp) == len(lab) <= 3
    assert toy.mean_labelled_positions == pytest.approx(np.mean([2, 1, 3, 1, 1, 2, 1]))
    assert toy.stats["num_train_sequences_too_short"] == 1
    # Targets never trained on: every target of a kept sequence minus the labels the rows keep ([4 3 2 1 5] loses 3).
    all_targets = sum(len(s) - 1 for s in toy_sequences() if len(s) >= 2)
    assert toy.stats["num_train_targets_beyond_max_len"] == all_targets - sum(len(lab) for lab in ds["labels"]) == 1


def test_partner_index_groups(toy):
    ds = toy.dataset
    target = np.asarray(ds["target"])
    start, size, rank = (np.asarray(ds[c]) for c in ("partner_group_start", "partner_group_size", "partner_rank"))
    rows = toy.partner_rows
    assert sorted(rows.tolist()) == list(range(len(ds)))
    assert np.array_equal(rows[start + rank], np.arange(len(ds)))
    for r in range(len(ds)):
        group = rows[start[r] : start[r] + size[r]]
        assert set(group.tolist()) == set(np.flatnonzero(target == target[r]).tolist())
        assert list(group) == sorted(group)
    assert toy.partner_share == pytest.approx(6 / 7)  # only the row with target 2 is alone


def test_partner_index_function_matches_bruteforce():
    rng = np.random.default_rng(0)
    targets = rng.integers(1, 20, size=500)
    rows, start, size, rank = partner_index(targets)
    order = sorted(range(500), key=lambda r: (targets[r], r))
    assert rows.tolist() == order
    for r in range(500):
        assert size[r] == (targets == targets[r]).sum()
        assert rows[start[r] + rank[r]] == r


def test_cache_dir(tmp_path):
    seqs = toy_sequences()
    first = build_train_dataset(seqs, max_len=3, cache_dir=tmp_path)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 1 and files[0].startswith("btsr-train-") and files[0].endswith(".arrow")
    second = build_train_dataset(seqs, max_len=3, cache_dir=tmp_path)
    assert second.dataset.cache_files[0]["filename"].endswith(files[0])
    assert second.dataset.to_dict() == first.dataset.to_dict()
    # a different input (one item changed) or another max_len never reuses the stale file
    changed = [s.copy() for s in seqs]
    changed[0][0] = 4
    third = build_train_dataset(changed, max_len=3, cache_dir=tmp_path)
    assert third.dataset["input_ids"][0] == [4, 2]
    build_train_dataset(seqs, max_len=2, cache_dir=tmp_path)
    assert len(os.listdir(tmp_path)) == 3


def test_empty_and_all_short():
    from data_processing import DataError

    # No example at all is an error here, not an empty dataset that fails later inside the Trainer.
    with pytest.raises(DataError, match="none of the 2 training sequences"):
        build_train_dataset([np.array([3]), np.array([], dtype=np.int64)], max_len=5)


# ---------------------------------------------------------------------------------------------------------------------
# partner draws
# ---------------------------------------------------------------------------------------------------------------------


def random_index(seed: int = 0, n: int = 2000, n_targets: int = 150):
    targets = np.random.default_rng(seed).integers(0, n_targets, size=n)
    rows, start, size, rank = partner_index(targets)
    return targets, (start, size, rank, rows)


def test_partners_share_the_target_and_are_others():
    targets, index = random_index()
    size = index[1]
    for epoch in range(5):
        p = draw_partners(7, epoch, np.arange(len(targets)), *index)
        assert np.array_equal(targets[p], targets)
        alone = size == 1
        assert np.array_equal(p[alone], np.flatnonzero(alone))  # no partner: itself
        assert (p[~alone] != np.flatnonzero(~alone)).all()  # otherwise never itself


def test_draws_depend_on_seed_and_epoch_only():
    targets, index = random_index()
    rows = np.arange(len(targets))
    multi = index[1] > 2  # groups of 2 have a single possible partner
    a = draw_partners(1, 0, rows, *index)
    assert np.array_equal(a, draw_partners(1, 0, rows, *index))  # same seed, same epoch: same draws
    assert (a[multi] != draw_partners(1, 1, rows, *index)[multi]).mean() > 0.3  # epochs differ
    assert (a[multi] != draw_partners(2, 0, rows, *index)[multi]).mean() > 0.3  # seeds differ
    # negative and huge seeds are valid keys
    draw_partners(-1, 0, rows, *index)
    draw_partners(2**70, 3, rows, *index)


def test_draws_are_stateless():
    """All rows at once == row by row in any order == arbitrary chunks with repeats."""
    targets, index = random_index(1, n=600, n_targets=40)
    rows = np.arange(len(targets))
    at_once = draw_partners(3, 4, rows, *index)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(rows))
    one_by_one = np.empty_like(at_once)
    for r in perm:
        one_by_one[r] = draw_partners(3, 4, np.array([r]), *index)[0]
    assert np.array_equal(one_by_one, at_once)
    chunk = rng.integers(0, len(rows), size=1000)
    assert np.array_equal(draw_partners(3, 4, chunk, *index), at_once[chunk])


def test_draws_are_uniform_over_the_other_members():
    targets = np.array([0] * 5 + [1] * 2)
    index = partner_index(targets)
    start, size, rank, rows = index[1], index[2], index[3], index[0]
    counts = Counter()
    epochs = 4000
    for epoch in range(epochs):
        counts.update(draw_partners(11, epoch, np.array([2]), start, size, rank, rows).tolist())
    assert set(counts) == {0, 1, 3, 4}
    for c in counts.values():  # 1000 expected each; 4 sigma is about 110
        assert abs(c - epochs / 4) < 150
    two = [draw_partners(11, e, np.array([5]), start, size, rank, rows)[0] for e in range(20)]
    assert set(two) == {6}


# ---------------------------------------------------------------------------------------------------------------------
# PairedTrainDataset
# ---------------------------------------------------------------------------------------------------------------------


def test_paired_dataset_items(toy):
    data = PairedTrainDataset(toy, seed=0)
    assert len(data) == 7
    inputs = toy.dataset["input_ids"]
    targets = toy.dataset["target"]
    for epoch in range(3):
        data.set_epoch(epoch)
        partners = data.partners()
        for i in range(len(data)):
            item = data[i]
            assert set(item) == {"input_ids", "labels", "pair_input_ids"}
            assert item["input_ids"] == inputs[i] and item["labels"] == toy.dataset["labels"][i]
            assert item["pair_input_ids"] == inputs[partners[i]]
            assert targets[partners[i]] == targets[i]
        assert np.array_equal(partners, data.partners(epoch))
    assert data[3]["pair_input_ids"] == data[3]["input_ids"]  # target 2: alone
    data.set_epoch(1)
    assert np.array_equal(data.partners(), PairedTrainDataset(toy, seed=0).partners(1))


def test_paired_dataset_set_epoch_changes_pairs():
    targets = np.repeat(np.arange(10), 20)
    seqs = [np.array([t + 100, t]) for t in targets]
    seqs = [np.array([i + 1000, *s]) for i, s in enumerate(seqs)]
    ex = build_train_dataset(seqs, max_len=4)
    data = PairedTrainDataset(ex, seed=5)
    before = [data[i]["pair_input_ids"] for i in range(len(data))]
    data.set_epoch(1)
    after = [data[i]["pair_input_ids"] for i in range(len(data))]
    assert sum(a != b for a, b in zip(before, after)) > len(data) // 2


def test_without_pairs_draws_nothing(toy, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("alpha = 0 must not draw partners")

    monkeypatch.setattr(pairs_module, "draw_partners", boom)
    monkeypatch.setattr(pairs_module, "row_keys", boom)
    data = PairedTrainDataset(toy, seed=0, with_pairs=False)
    data.set_epoch(3)
    assert [set(data[i]) for i in range(len(data))] == [{"input_ids", "labels"}] * len(data)
    with pytest.raises(ValueError):
        data.partners()


def test_dataloader_workers_do_not_change_pairs(toy):
    """Partners are a function of (seed, epoch, row): the same through a 2-worker DataLoader in shuffled order."""
    import torch

    data = PairedTrainDataset(toy, seed=9)
    data.set_epoch(2)
    expected = {tuple(data[i]["input_ids"]): data[i]["pair_input_ids"] for i in range(len(data))}
    fresh = PairedTrainDataset(toy, seed=9)
    fresh.set_epoch(2)
    loader = torch.utils.data.DataLoader(
        fresh,
        batch_size=3,
        shuffle=True,
        num_workers=2,
        collate_fn=lambda b: b,
        generator=torch.Generator().manual_seed(0),
    )
    # The workers serve row indices (__getitems__); the collator gathers them from the table.
    collate = SequenceCollator(table=fresh.table)
    got = {}
    for batch in loader:
        gathered = collate(batch)
        for b in range(len(batch)):
            ids = gathered["input_ids"][b][gathered["attention_mask"][b].bool()].tolist()
            got[tuple(ids)] = gathered["pair_input_ids"][b][gathered["pair_attention_mask"][b].bool()].tolist()
    assert got == expected


# ---------------------------------------------------------------------------------------------------------------------
# real data: partner shares (BT-SR section 2); the ML-1M preprocessing time is benchmarks/preprocess.py's
# ---------------------------------------------------------------------------------------------------------------------


def test_ml1m_partner_share(shared_data):
    path = require(shared_data / "ml-1m" / "ml-1m.txt.gz")
    df = pd.read_csv(path, sep=" ", header=None, names=["user_id", "item_id"])
    split = split_interactions(df, "leave_one_out", source="ml-1m")
    ex = build_train_dataset(split.train_sequences, max_len=200)
    PairedTrainDataset(ex, seed=0).partners()
    assert split.stats["num_items"] == 3416 and len(ex) == 6040
    assert 0.83 <= ex.partner_share <= 0.89  # paper: 83-88% for ML-1M / Beauty / Sports (leave-one-out)


@pytest.mark.parametrize(
    "name, expected",
    [("ml-100k temporal", 0.65), ("lastfm", 0.38), ("ml-latest-small", 0.275), ("beauty", 0.83)],
)
def test_partner_share_matches_the_paper(shared_data, name, expected):
    if name == "ml-100k temporal":
        df = pd.read_csv(require(shared_data / "ml-100k" / "interactions.csv.gz"))
        protocol = "temporal"
    elif name == "ml-latest-small":
        df = pd.read_csv(require(shared_data / "ml-latest-small" / "ratings.csv"))
        df = df.rename(columns={"userId": "user_id", "movieId": "item_id"})
        protocol = "leave_one_out"
    else:
        file = {"lastfm": "lastfm/LastFM.txt.gz", "beauty": "beauty/Beauty.txt.gz"}[name]
        df = read_s3rec(require(shared_data / file))
        protocol = "leave_one_out"
    split = split_interactions(df[[c for c in ("user_id", "item_id", "timestamp") if c in df]], protocol)
    share = build_train_dataset(split.train_sequences, max_len=200).partner_share
    assert share == pytest.approx(expected, abs=0.01)


def test_nothing_to_train_is_a_clear_error():
    import pandas as pd

    from data_processing import DataError, leave_one_out_split

    frame = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [1, 2, 3, 3, 2, 1]})  # 3 interactions each
    split = leave_one_out_split(frame)
    with pytest.raises(DataError, match="none of the 2 training sequences has the 2 items .* at least 4 interactions"):
        build_train_dataset(split.train_sequences, max_len=5)


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_follow_set_epoch_even_when_persistent(persistent):
    """Partners served by 2 data-loader workers equal the main process's draws of each epoch, and change with the
    epoch, also with persistent workers (which keep their copy of the dataset across epochs)."""
    ds = PairedTrainDataset(build_train_dataset(toy_sequences() * 30, max_len=3), seed=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=persistent)
    served = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        got = [item["pair_input_ids"] for item in loader]
        expected = [ds[i]["pair_input_ids"] for i in range(len(ds))]  # the main process's own draw
        assert got == expected, epoch
        served.append(got)
    assert served[0] != served[1] != served[2]


# ---------------------------------------------------------------------------------------------------------------------
# epoch_pairs: each epoch's partners as a Dataset.map, cached beside the examples
# ---------------------------------------------------------------------------------------------------------------------


def test_epoch_pairs_is_a_cached_map_keyed_by_the_examples_seed_and_epoch(tmp_path):
    from data_processing import epoch_pairs
    from data_processing.pairs import epoch_pairs_fingerprint

    sequences = toy_sequences() * 20
    examples = build_train_dataset(sequences, max_len=3, cache_dir=tmp_path)
    pairs = epoch_pairs(examples, epoch=2, seed=9)
    assert pairs.column_names == ["row", "partner_row"] and len(pairs) == len(examples)
    start, size, rank = (
        np.asarray(examples.dataset[c]) for c in ("partner_group_start", "partner_group_size", "partner_rank")
    )
    expected = draw_partners(9, 2, np.arange(len(examples)), start, size, rank, examples.partner_rows)
    assert np.array_equal(pairs["partner_row"], expected) and np.array_equal(pairs["row"], np.arange(len(examples)))
    # the fingerprint: stable for (examples, seed, epoch), another for another epoch, seed or data
    assert pairs._fingerprint == epoch_pairs_fingerprint(examples, epoch=2, seed=9)
    again = build_train_dataset(sequences, max_len=3, cache_dir=tmp_path)
    assert epoch_pairs(again, epoch=2, seed=9)._fingerprint == pairs._fingerprint
    other_data = build_train_dataset(sequences[:-1], max_len=3, cache_dir=tmp_path)
    fingerprints = {
        epoch_pairs_fingerprint(examples, epoch=3, seed=9),
        epoch_pairs_fingerprint(examples, epoch=2, seed=8),
        epoch_pairs_fingerprint(other_data, epoch=2, seed=9),
        pairs._fingerprint,
    }
    assert len(fingerprints) == 4
    # cached beside the examples, loaded back by a later call; an earlier epoch's file is removed
    (cached,) = [f["filename"] for f in pairs.cache_files]
    assert Path(cached).parent == tmp_path and Path(cached).name.endswith("-s9-e2.arrow")
    epoch_pairs(examples, epoch=3, seed=9)
    assert not Path(cached).exists()
    names = sorted(p.name for p in tmp_path.glob("btsr-pairs-*"))
    assert len(names) == 1 and names[0].endswith("-s9-e3.arrow")
    loaded = epoch_pairs(examples, epoch=3, seed=9)
    assert [f["filename"] for f in loaded.cache_files] == [str(tmp_path / names[0])]
    assert not np.array_equal(loaded["partner_row"], expected)  # another epoch, other partners


def _partners_in_fresh_processes(sequences, seed, epochs, processes=1):
    """What `processes` other processes, run at once, draw (they share nothing with the caller but the data)."""
    import json
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    code = (
        "import json, sys, numpy as np\n"
        "from data_processing import PairedTrainDataset, build_train_dataset\n"
        "sequences, seed, epochs = json.loads(sys.stdin.read())\n"
        "ds = PairedTrainDataset(build_train_dataset([np.array(s) for s in sequences], max_len=3), seed=seed)\n"
        "out = []\n"
        "for e in epochs:\n"
        "    ds.set_epoch(e)\n"
        "    out.append(ds.partners().tolist())\n"
        "print(json.dumps(out))\n"
    )
    payload = json.dumps([[[int(x) for x in s] for s in sequences], seed, epochs])
    running = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(processes)
    ]
    outputs = []
    for process in running:
        out, err = process.communicate(payload, timeout=120)
        assert process.returncode == 0, err[-2000:]
        outputs.append(json.loads(out))
    return outputs


def test_partners_equal_across_runs_and_processes_and_differ_between_epochs():
    sequences = toy_sequences() * 30
    here = PairedTrainDataset(build_train_dataset(sequences, max_len=3), seed=5)
    mine = []
    for epoch in range(3):
        here.set_epoch(epoch)
        mine.append(here.partners().tolist())
    # one other run, then two processes at once (as a 2-process launch has): the same partners every epoch
    assert _partners_in_fresh_processes(sequences, 5, [0, 1, 2]) == [mine]
    assert _partners_in_fresh_processes(sequences, 5, [0, 1, 2], processes=2) == [mine, mine]
    assert mine[0] != mine[1] != mine[2]
    assert [mine] != _partners_in_fresh_processes(sequences, 6, [0, 1, 2])  # another seed
