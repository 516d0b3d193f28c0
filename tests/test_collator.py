"""SequenceCollator: left padding to the batch's longest sequence, -100 labels, pair views padded on their own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_processing import PairedTrainDataset, SequenceCollator, build_train_dataset
from data_processing.collator import left_pad
from modeling_btsr.modeling_btsr import left_pad_sequences


def test_left_padding_and_labels_exact():
    features = [
        {"input_ids": [1, 2, 3], "labels": [2, 3, 4]},
        {"input_ids": [5], "labels": [6]},
        {"input_ids": [7, 8], "labels": [8, 9]},
    ]
    batch = SequenceCollator()(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    for value in batch.values():
        assert value.dtype == torch.long and value.shape == (3, 3)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [0, 0, 5], [0, 7, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert batch["labels"].tolist() == [[2, 3, 4], [-100, -100, 6], [-100, 8, 9]]


def test_pads_to_batch_longest_not_max_len():
    batch = SequenceCollator(max_len=200)([{"input_ids": [1], "labels": [2]}, {"input_ids": [3, 4], "labels": [4, 5]}])
    assert batch["input_ids"].shape == (2, 2)


def test_pairs_padded_to_their_own_longest():
    features = [
        {"input_ids": [1], "labels": [2], "pair_input_ids": [4, 5, 6, 7]},
        {"input_ids": [3, 4], "labels": [4, 5], "pair_input_ids": [9]},
    ]
    batch = SequenceCollator()(features)
    assert batch["input_ids"].shape == (2, 2)
    assert batch["pair_input_ids"].tolist() == [[4, 5, 6, 7], [0, 0, 0, 9]]
    assert batch["pair_attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 0, 1]]
    assert batch["pair_input_ids"].dtype == torch.long


def test_max_len_cuts_inputs_and_labels_alike():
    features = [{"input_ids": [1, 2, 3, 4], "labels": [2, 3, 4, 5]}, {"input_ids": np.array([7]), "labels": [8]}]
    batch = SequenceCollator(max_len=2)(features)
    assert batch["input_ids"].tolist() == [[3, 4], [0, 7]]
    assert batch["labels"].tolist() == [[4, 5], [-100, 8]]


def test_eval_features_without_labels_and_scalar_fields():
    batch = SequenceCollator()([{"input_ids": [1, 2], "target": 7}, {"input_ids": torch.tensor([3]), "target": 9}])
    assert set(batch) == {"input_ids", "attention_mask", "target"}
    assert batch["target"].tolist() == [7, 9]
    assert batch["input_ids"].tolist() == [[1, 2], [0, 3]]


def test_mismatched_labels_rejected():
    with pytest.raises(ValueError, match="2 input_ids but 1 labels"):
        SequenceCollator()([{"input_ids": [1, 2], "labels": [2]}])


def test_with_paired_dataset_and_dataloader():
    seqs = [np.array([1, 2, 5]), np.array([3, 5]), np.array([4, 3, 2, 1, 5]), np.array([1, 2])]
    data = PairedTrainDataset(build_train_dataset(seqs, max_len=3), seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=SequenceCollator(table=data.table))
    batch = next(iter(loader))
    assert batch["input_ids"].shape == (4, 3)
    # the last position is always a real item: most recent last
    assert (batch["attention_mask"][:, -1] == 1).all() and (batch["pair_attention_mask"][:, -1] == 1).all()
    # every labelled position is a real input position
    assert ((batch["labels"] != -100) == batch["attention_mask"].bool()).all()


def test_left_pad_matches_the_models_padding_on_random_rows():
    """The collator pads on its own (data_processing imports nothing from the model): same cells as the model's
    `left_pad_sequences`, which `recommend()` uses, for lists, arrays and tensors, with and without a cut."""
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 50, size=n).tolist() for n in rng.integers(0, 12, size=40)]
    for max_len in (None, 5):
        expected = left_pad_sequences(rows, max_len=max_len, pad_value=7)
        for kind in (list, np.asarray, torch.as_tensor):
            got = left_pad([kind(row) for row in rows], max_len, pad_value=7)
            assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert [t.shape for t in left_pad([[], []])] == [(2, 0), (2, 0)]


def test_rows_gathered_from_the_table_equal_the_rows_padded_as_lists():
    """A batch served as row indices (PairedTrainDataset.__getitems__) and gathered from the Arrow-backed table is
    the batch of the same rows given as lists, for every view maker that names rows; without a table it is refused."""
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 9, int(rng.integers(2, 12))) for _ in range(40)]
    examples = build_train_dataset(seqs, max_len=6)
    rows = rng.permutation(len(examples))[:13]
    for view_maker in ("same_target", "dropout", "same_target+dropout"):
        data = PairedTrainDataset(examples, seed=3, view_maker=view_maker)
        data.set_epoch(4)
        for max_len in (None, 4):
            gathered = SequenceCollator(max_len=max_len, table=data.table)(data.__getitems__(rows))
            as_lists = SequenceCollator(max_len=max_len)([data[int(i)] for i in rows])
            assert gathered.keys() == as_lists.keys()
            for key in gathered:
                assert torch.equal(gathered[key], as_lists[key]), (view_maker, max_len, key)
    with pytest.raises(ValueError, match="SequenceCollator\\(table=dataset.table\\)"):
        SequenceCollator()(data.__getitems__(rows))
