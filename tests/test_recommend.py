"""`recommend()` against hostile input, concurrent callers and reduced precision."""

import threading

import numpy as np
import pytest
import torch

from modeling_btsr import BTSRConfig, BTSRModel

IDS = [f"i{j}" for j in range(30)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = BTSRModel(
        BTSRConfig(
            num_items=30,
            hidden_size=16,
            max_position_embeddings=8,
            hidden_dropout_prob=0.5,
            attention_probs_dropout_prob=0.5,
        )
    )
    model.set_item_vocab({"item_ids": IDS, "item_counts": list(range(30))})
    return model.eval()


HISTORIES = [["i1", "i2", "i3"], ["i4"], ["i5", "i6", "i7", "i8", "i9", "i10", "i11", "i12", "i13", "i14"]]


def test_every_container_of_ids_gives_the_same_lists(model):
    expected = model.recommend(HISTORIES, k=5)
    int_model = BTSRModel(model.config)
    int_model.load_state_dict(model.state_dict())
    int_model.set_item_vocab({"item_ids": list(range(100, 130))})
    as_ints = [[int(i[1:]) + 100 for i in h] for h in HISTORIES]
    int_expected = int_model.eval().recommend(as_ints, k=5)
    assert [[int(i[1:]) + 100 for i in row] for row in expected] == int_expected
    for histories in (
        (tuple(h) for h in as_ints),  # a generator
        [np.asarray(h) for h in as_ints],
        [torch.tensor(h) for h in as_ints],
        [[np.int64(i) for i in h] for h in as_ints],
        tuple(as_ints),
    ):
        assert int_model.recommend(histories, k=5) == int_expected
    square = [h[-1:] for h in as_ints]
    assert int_model.recommend(np.asarray(square), k=3) == int_model.recommend(square, k=3)  # 2-D: a row per user
    assert int_model.recommend(torch.tensor(square), k=3) == int_model.recommend(square, k=3)


@pytest.mark.parametrize(
    "histories, kwargs, error, message",
    [
        (None, {}, TypeError, "histories must be a list"),
        ("i1", {}, TypeError, "histories must be a list"),
        (["i1", "i2"], {}, TypeError, r"user 0: a history must be .* got str .*pass \[history\]"),
        ([["i1"], None], {}, TypeError, "user 1: a history must be"),
        ([[True]], {}, TypeError, "True / False is not an item id"),
        ([["i1"]], {"k": None}, TypeError, "k must be an int >= 1, got None"),
        ([["i1"]], {"k": 2.7}, TypeError, "k must be an int >= 1, got 2.7"),
        ([["i1"]], {"k": "5"}, TypeError, "k must be an int >= 1, got '5'"),
        ([["i1"]], {"k": True}, TypeError, "k must be an int >= 1, got True"),
        ([["i1"]], {"k": 0}, ValueError, "k must be >= 1, got 0"),
        ([["i1"]], {"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ([["i1"]], {"batch_size": -3}, ValueError, "batch_size must be >= 1"),
        ([["nope"]], {}, KeyError, "user 0: item id 'nope' is not in the model's vocabulary"),
    ],
)
def test_ambiguous_or_wrong_input_is_refused(model, histories, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.recommend(histories, **kwargs)


def test_numpy_integer_k_and_batch_size_are_ints(model):
    assert model.recommend(HISTORIES, k=np.int64(4), batch_size=np.int32(2)) == model.recommend(HISTORIES, k=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eight_threads_on_a_model_in_train_mode_get_the_eval_lists(model, dtype):
    if dtype != torch.float32:  # a copy in reduced precision, as `from_pretrained(..., dtype=...)` loads one
        copy = BTSRModel(model.config)
        copy.load_state_dict(model.state_dict())
        copy.set_item_vocab(model.item_vocab)
        model = copy.to(dtype).eval()
    expected = model.recommend(HISTORIES * 4, k=10, return_scores=True)
    model.train()
    try:
        results, errors = [None] * 8, []

        def call(slot):
            try:
                results[slot] = [model.recommend(HISTORIES * 4, k=10, return_scores=True) for _ in range(10)]
            except Exception as error:  # reported below, with the thread's slot
                errors.append((slot, error))

        threads = [threading.Thread(target=call, args=(slot,)) for slot in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert model.training  # never flipped to eval by a call
        assert all(got == expected for calls in results for got in calls)  # no call ran with dropout on
    finally:
        model.eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_models_recommend_what_float32_does(model, dtype):
    half = BTSRModel(model.config)
    half.load_state_dict(model.state_dict())
    half.set_item_vocab(model.item_vocab)
    half = half.to(dtype).eval()
    got, scores = half.recommend(HISTORIES, k=5, return_scores=True)
    expected = model.recommend(HISTORIES, k=5)
    # The lists agree except where two float32 scores are closer than the reduced precision can tell apart.
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(got, expected)])
    assert overlap >= 0.6 and all(len(row) == 5 for row in got)
    assert all(s == sorted(s, reverse=True) for s in scores)
