"""Contrastive baselines in the BT-SR harness: InfoNCE, CL4SRec augmentations and views, DuoRec views, presets."""

from __future__ import annotations

import functools
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import data_processing.pairs as pairs_module
from data_processing import (
    AUGMENTATIONS,
    PairedTrainDataset,
    SequenceCollator,
    build_train_dataset,
    cl4srec_view,
    crop,
    mask,
    operator_pairs,
    reorder,
    view_rng,
)
from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
from modeling_btsr.arguments import PRESETS, parse_arguments
from modeling_btsr.losses_btsr import infonce_loss
from tests.distributed import assert_two_processes_match_one
from tests.helpers import run_train

MASK = 10_000

sequences = st.lists(st.integers(1, 50), min_size=1, max_size=40)
ratios = st.floats(0.0, 1.0, allow_nan=False)


# ---------------------------------------------------------------------------------------------------------------------
# InfoNCE
# ---------------------------------------------------------------------------------------------------------------------


def infonce_loops(z_a: np.ndarray, z_b: np.ndarray, tau: float, similarity: str) -> float:
    """NT-Xent written out: 2B anchors, each with its other view as positive and the 2B - 2 others as negatives."""
    z = np.concatenate([z_a, z_b])
    if similarity == "cosine":
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = z.shape[0]
    batch = n // 2
    total = 0.0
    for i in range(n):
        positive = (i + batch) % n
        logits = {j: float(np.dot(z[i], z[j])) / tau for j in range(n) if j != i}
        top = max(logits.values())
        log_denominator = top + math.log(sum(math.exp(v - top) for v in logits.values()))
        total += log_denominator - logits[positive]
    return total / n


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("tau", [1.0, 0.2])
def test_infonce_equals_loop_formula(similarity, tau):
    gen = torch.Generator().manual_seed(3)
    z_a = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    z_b = z_a + 0.7 * torch.randn(7, 5, generator=gen, dtype=torch.float64)
    got = infonce_loss(z_a, z_b, temperature=tau, similarity=similarity)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(infonce_loops(z_a.numpy(), z_b.numpy(), tau, similarity), rel=1e-12)


def test_infonce_degenerate_and_half_precision():
    one = torch.randn(1, 4, requires_grad=True)
    loss = infonce_loss(one, one * 2, 1.0)  # a batch of 1: only the positive, loss 0
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and torch.isfinite(one.grad).all()
    zeros = torch.zeros(4, 3, requires_grad=True)
    loss = infonce_loss(zeros, zeros, 1.0, similarity="cosine")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zeros.grad).all()
    half = infonce_loss(torch.randn(8, 4).half(), torch.randn(8, 4).half(), 1.0)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    with pytest.raises(ValueError):
        infonce_loss(torch.randn(4, 3), torch.randn(5, 3), 1.0)


def test_two_process_gloo_infonce_equals_one_process():
    """2 processes x B/2 give the 1-process InfoNCE over all B rows (negatives from the global batch)."""
    assert_two_processes_match_one(functools.partial(infonce_loss, temperature=0.5))


# ---------------------------------------------------------------------------------------------------------------------
# augmentations
# ---------------------------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(sequences, st.floats(0.01, 1.0), st.integers(0, 2**32))
def test_crop_keeps_one_contiguous_span(seq, eta, seed):
    out = crop(seq, eta, np.random.default_rng(seed))
    n = len(seq)
    assert len(out) == max(1, math.floor(eta * n))
    assert any(seq[s : s + len(out)] == out for s in range(n - len(out) + 1))


@settings(max_examples=200, deadline=None)
@given(sequences, ratios, st.integers(0, 2**32))
def test_mask_replaces_exactly_the_ratio_and_nothing_else(seq, gamma, seed):
    before = list(seq)
    out = mask(seq, gamma, np.random.default_rng(seed), mask_token=MASK)
    assert seq == before  # pure: the input is not modified
    assert len(out) == len(seq)
    changed = [i for i in range(len(seq)) if out[i] != seq[i]]
    assert len(changed) == math.floor(gamma * len(seq))
    assert all(out[i] == MASK for i in changed)


@settings(max_examples=200, deadline=None)
@given(sequences, ratios, st.integers(0, 2**32))
def test_reorder_permutes_one_contiguous_span(seq, beta, seed):
    out = reorder(seq, beta, np.random.default_rng(seed))
    span = math.floor(beta * len(seq))
    assert Counter(out) == Counter(seq)
    changed = [i for i in range(len(seq)) if out[i] != seq[i]]
    if changed:  # the changes lie inside one window of the span's length, itself a permutation
        first, last = changed[0], changed[-1]
        assert last - first + 1 <= span
        assert Counter(out[first : last + 1]) == Counter(seq[first : last + 1])


def test_reorder_does_shuffle_and_augmentations_are_uniform():
    seq = list(range(1, 21))
    assert any(reorder(seq, 0.5, np.random.default_rng(s)) != seq for s in range(5))
    # cl4srec views pick crop / mask / reorder with equal probability
    kinds = Counter()
    for s in range(3000):
        out = cl4srec_view(seq, np.random.default_rng(s), 0.5, 0.5, 0.5, MASK)
        kinds["mask" if MASK in out else "crop" if len(out) < len(seq) else "reorder"] += 1
    assert all(abs(c - 1000) < 150 for c in kinds.values()) and len(kinds) == 3


def test_the_two_views_of_a_row_apply_two_different_operators(examples):
    """As CL4SRec's implementations draw them (two operators without replacement): never the same operator for
    both views, the 6 ordered pairs about equally often, and each view made by the operator the pair names."""
    pairs = operator_pairs(0, 3, np.arange(6000))
    assert (pairs[:, 0] != pairs[:, 1]).all()
    counts = Counter(map(tuple, pairs.tolist()))
    assert len(counts) == 6 and all(abs(c - 1000) < 150 for c in counts.values())
    data = _cl4srec(examples, crop_ratio=0.5, mask_ratio=0.5, reorder_ratio=1.0)
    data.set_epoch(3)
    inputs = examples.dataset["input_ids"]
    for i in range(len(data)):
        if len(inputs[i]) < 4:  # too short for every operator to leave a mark
            continue
        item, operators = data[i], operator_pairs(0, 3, np.array([i]))[0]
        for view, key in ((0, "view_input_ids"), (1, "pair_input_ids")):
            out = item[key]
            kind = "mask" if 31 in out else "crop" if len(out) < len(inputs[i]) else "reorder"
            assert kind == AUGMENTATIONS[operators[view]], (i, view)


def test_view_rng_is_keyed_on_seed_epoch_row_view():
    def draw(*key):
        return view_rng(*key).integers(1 << 62)

    assert draw(1, 2, 3, 0) == draw(1, 2, 3, 0)
    assert len({draw(1, 2, 3, 0), draw(1, 3, 3, 0), draw(1, 2, 4, 0), draw(1, 2, 3, 1), draw(2, 2, 3, 0)}) == 5


# ---------------------------------------------------------------------------------------------------------------------
# views served by PairedTrainDataset
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 30, size=int(rng.integers(2, 25))) for _ in range(60)]
    return build_train_dataset(seqs, max_len=20)


def _cl4srec(examples, seed=0, **kwargs):
    settings_ = dict(view_maker="cl4srec", crop_ratio=0.6, mask_ratio=0.3, reorder_ratio=0.6, mask_token=31)
    return PairedTrainDataset(examples, seed=seed, **{**settings_, **kwargs})


def test_cl4srec_views_deterministic_per_epoch_and_change_across_epochs(examples):
    data = _cl4srec(examples)
    inputs = examples.dataset["input_ids"]
    first = [data[i] for i in range(len(data))]
    for i, item in enumerate(first):
        assert set(item) == {"input_ids", "labels", "pair_input_ids", "view_input_ids"}
        assert item["input_ids"] == inputs[i] and item["labels"] == examples.dataset["labels"][i]  # unaugmented
        for view in (item["view_input_ids"], item["pair_input_ids"]):
            assert 1 <= len(view) <= len(inputs[i])
            assert set(view) <= set(inputs[i]) | {31}
    again = _cl4srec(examples)
    assert [again[i] for i in range(len(data))] == first  # a fresh dataset, same (seed, epoch): same views
    assert data.augmented_view(5, 1, epoch=0) == first[5]["pair_input_ids"]
    data.set_epoch(1)
    second = [data[i] for i in range(len(data))]
    assert sum(a["pair_input_ids"] != b["pair_input_ids"] for a, b in zip(first, second)) > len(data) // 2
    assert sum(a["view_input_ids"] != a["pair_input_ids"] for a in first) > len(data) // 2
    other_seed = _cl4srec(examples, seed=1)
    assert [other_seed[i] for i in range(len(data))] != first
    with pytest.raises(ValueError, match="partners"):
        data.partners()


def test_cl4srec_views_same_through_dataloader_workers(examples):
    data = _cl4srec(examples)
    data.set_epoch(2)
    expected = {i: data[i] for i in range(len(data))}
    fresh = _cl4srec(examples)
    fresh.set_epoch(2)
    loader = torch.utils.data.DataLoader(
        fresh,
        batch_size=7,
        shuffle=True,
        num_workers=2,
        collate_fn=lambda b: b,
        generator=torch.Generator().manual_seed(0),
    )
    got = [x for batch in loader for x in batch]  # served by __getitems__: the row and its two views
    assert sorted(item["row"] for item in got) == list(range(len(data)))
    for item in got:
        views = {k: list(v) for k, v in item.items() if k.endswith("_input_ids")}
        assert views == {
            k: v for k, v in expected[item["row"]].items() if k.endswith("_input_ids") and k != "input_ids"
        }


def test_dropout_views_draw_nothing_and_duorec_views(examples, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the dropout view maker must not draw")

    inputs = examples.dataset["input_ids"]
    same = PairedTrainDataset(examples, seed=4)
    duo = PairedTrainDataset(examples, seed=4, view_maker="same_target+dropout")
    for epoch in (0, 3):
        same.set_epoch(epoch)
        duo.set_epoch(epoch)
        for i in range(len(duo)):
            item = duo[i]
            assert item["view_input_ids"] == inputs[i] == item["input_ids"]
            assert item["pair_input_ids"] == same[i]["pair_input_ids"]  # DuoRec's positive = BT-SR's partner
    monkeypatch.setattr(pairs_module, "draw_partners", boom)
    monkeypatch.setattr(pairs_module, "row_keys", boom)
    drop = PairedTrainDataset(examples, seed=4, view_maker="dropout")
    drop.set_epoch(2)
    for i in range(len(drop)):
        assert drop[i] == {"input_ids": inputs[i], "labels": examples.dataset["labels"][i], "pair_input_ids": inputs[i]}


def test_default_view_maker_and_alpha_zero_unchanged(examples):
    data = PairedTrainDataset(examples, seed=7)
    explicit = PairedTrainDataset(examples, seed=7, view_maker="same_target")
    for epoch in (0, 1):
        data.set_epoch(epoch)
        explicit.set_epoch(epoch)
        assert [data[i] for i in range(len(data))] == [explicit[i] for i in range(len(data))]
        assert all(set(data[i]) == {"input_ids", "labels", "pair_input_ids"} for i in range(len(data)))
    off = PairedTrainDataset(examples, seed=7, with_pairs=False, view_maker="cl4srec")  # alpha 0: no views at all
    assert all(set(off[i]) == {"input_ids", "labels"} for i in range(len(off)))
    with pytest.raises(ValueError, match="mask_token"):
        PairedTrainDataset(examples, seed=7, view_maker="cl4srec", mask_ratio=0.3)
    with pytest.raises(ValueError, match="view_maker"):
        PairedTrainDataset(examples, seed=7, view_maker="crop")


def test_collator_pads_view_input_ids(examples):
    data = _cl4srec(examples)
    batch = SequenceCollator()([data[i] for i in range(6)])
    assert {"view_input_ids", "view_attention_mask", "pair_input_ids", "pair_attention_mask"} <= set(batch)
    for i in range(6):
        view = data[i]["view_input_ids"]
        row, mask_row = batch["view_input_ids"][i], batch["view_attention_mask"][i]
        assert row[mask_row.bool()].tolist() == view
        assert int(mask_row.sum()) == len(view) and mask_row[-len(view) :].all()


def _prefix(examples, view_maker, seed=0, **kwargs):
    settings_ = dict(mask_token=31) if view_maker == "cl4srec" else {}
    settings_["view_span"] = "random_prefix"
    return PairedTrainDataset(examples, seed=seed, view_maker=view_maker, **{**settings_, **kwargs})


def test_random_prefix_cut_is_uniform_per_row_and_keyed_on_seed_epoch_row(examples):
    inputs, labels = examples.dataset["input_ids"], examples.dataset["labels"]
    data = _prefix(examples, "dropout")
    seen = Counter()
    for epoch in range(300):
        cuts = data.prefix_cuts(epoch)
        assert ((0 <= cuts) & (cuts < np.array([len(x) for x in labels]))).all()
        seen.update((i, int(j)) for i, j in enumerate(cuts))
    # Every (row, position) is drawn, each about 300 / len(row) times (a chi-square bound per long row).
    assert len(seen) == sum(len(x) for x in labels)
    for i, row in enumerate(labels):
        n = len(row)
        if n >= 10:
            counts = np.array([seen[(i, j)] for j in range(n)])
            chi2 = float(((counts - 300 / n) ** 2 / (300 / n)).sum())
            assert chi2 < n - 1 + 6 * math.sqrt(2 * (n - 1)), (i, counts)
    data.set_epoch(4)
    assert np.array_equal(data.prefix_cuts(), _prefix(examples, "dropout").prefix_cuts(4))
    assert not np.array_equal(data.prefix_cuts(), _prefix(examples, "dropout", seed=1).prefix_cuts(4))
    for i in range(len(data)):  # dropout: the prefix, twice; the prediction loss still reads the whole row
        item, j = data[i], int(data.prefix_cuts()[i])
        assert item["input_ids"] == inputs[i] and item["labels"] == labels[i]
        assert item["view_input_ids"] == item["pair_input_ids"] == inputs[i][: j + 1]


def test_random_prefix_partner_shares_the_prefix_next_item(examples):
    inputs, labels = examples.dataset["input_ids"], examples.dataset["labels"]
    # An independent count of the labelled positions per next item, over the whole training set.
    occurrences = Counter(item for row in labels for item in row)
    for view_maker in ("same_target", "same_target+dropout"):
        data = _prefix(examples, view_maker, seed=2)
        partners_seen: dict[tuple[int, int], set] = {}
        for epoch in range(40):
            data.set_epoch(epoch)
            cuts = data.prefix_cuts()
            for i in range(len(data)):
                item, j = data[i], int(cuts[i])
                row, position = data.row_and_position(int(data.partners()[i]))
                target = labels[i][j]
                assert item["view_input_ids"] == inputs[i][: j + 1]
                assert item["pair_input_ids"] == inputs[row][: position + 1]
                assert labels[row][position] == target  # the partner prefix leads to the same next item
                if occurrences[target] > 1:
                    assert (row, position) != (i, j)  # another labelled position, never the prefix itself
                else:
                    assert (row, position) == (i, j)
                partners_seen.setdefault((i, j), set()).add((row, position))
        # Over epochs the partners of a frequent next item spread over its other positions, not one favourite.
        frequent = max(occurrences, key=occurrences.get)
        reached = set().union(*(v for (i, j), v in partners_seen.items() if labels[i][j] == frequent))
        assert len(reached) >= occurrences[frequent] - 1


@pytest.mark.parametrize("view_maker", ["cl4srec", "dropout", "same_target+dropout"])
def test_random_prefix_in_place_serves_each_view_its_offset(examples, view_maker):
    labels = examples.dataset["labels"]
    moved = _prefix(examples, view_maker, seed=6)
    in_place = _prefix(examples, view_maker, seed=6, view_span="random_prefix_in_place")
    crops_seen = 0
    for epoch in (0, 2):
        moved.set_epoch(epoch)
        in_place.set_epoch(epoch)
        for i in range(len(moved)):
            item, j = in_place[i], int(in_place.prefix_cuts()[i])
            # The same views as random_prefix, plus where each one ends in its own row.
            assert {k: v for k, v in item.items() if not k.endswith("_position_offsets")} == moved[i]
            if view_maker == "cl4srec":  # each view ends where its last item sits in the row (a crop: inside it)
                row = list(examples.dataset["input_ids"][i])
                for name in ("view", "pair"):
                    view, offset = list(item[f"{name}_input_ids"]), item[f"{name}_position_offsets"]
                    if len(view) == j + 1:  # a mask or a reorder of the whole prefix
                        assert offset == len(labels[i]) - 1 - j
                    else:  # a crop: a contiguous span of the prefix, found by search
                        ends = {s + len(view) for s in range(j + 2 - len(view)) if row[s : s + len(view)] == view}
                        assert len(labels[i]) - offset in ends, (i, name)
                crops_seen = crops_seen + (len(item["view_input_ids"]) < j + 1)
                continue
            assert item["view_position_offsets"] == len(labels[i]) - 1 - j
            if view_maker == "same_target+dropout":
                row, position = in_place.row_and_position(int(in_place.partners()[i]))
                assert item["pair_position_offsets"] == len(labels[row]) - 1 - position
            else:
                assert item["pair_position_offsets"] == item["view_position_offsets"]
    assert crops_seen > 0 or view_maker != "cl4srec"
    batch = SequenceCollator()([in_place[i] for i in range(5)])
    assert batch["view_position_offsets"].tolist() == [in_place[i]["view_position_offsets"] for i in range(5)]


def test_random_prefix_cl4srec_views_augment_the_prefix(examples):
    inputs = examples.dataset["input_ids"]
    data = _prefix(examples, "cl4srec", seed=3)
    whole = _cl4srec(examples, seed=3)
    for epoch in (0, 5):
        data.set_epoch(epoch)
        whole.set_epoch(epoch)
        for i in range(len(data)):
            prefix = inputs[i][: int(data.prefix_cuts()[i]) + 1]
            item = data[i]
            for view, key in ((0, "view_input_ids"), (1, "pair_input_ids")):
                assert 1 <= len(item[key]) <= len(prefix) and set(item[key]) <= set(prefix) | {31}
                # The same augmentation stream and operator as the whole-sequence views, applied to the prefix.
                operator = int(operator_pairs(3, epoch, np.array([i]))[0, view])
                expected = cl4srec_view(prefix, view_rng(3, epoch, i, view), 0.6, 0.3, 0.6, 31, operator=operator)
                assert item[key] == expected
    with pytest.raises(ValueError, match="view_span"):
        PairedTrainDataset(examples, seed=0, view_span="suffix")
    with pytest.raises(ValueError, match="random_prefix"):
        whole.prefix_cuts()


@pytest.mark.parametrize("view_maker", [None, "dropout", "cl4srec", "same_target+dropout"])
def test_prefix_samples_serve_the_prefix_with_its_one_target_and_the_views_of_it(examples, view_maker):
    inputs, labels = examples.dataset["input_ids"], examples.dataset["labels"]
    if view_maker is None:  # SASRec: no views
        samples = PairedTrainDataset(examples, seed=4, with_pairs=False, prediction_span="random_prefix")
        views = None
    else:
        samples = _prefix(examples, view_maker, seed=4, prediction_span="random_prefix")
        views = _prefix(examples, view_maker, seed=4)  # the same views; the prediction loss reads the whole row
    for epoch in (0, 3):
        samples.set_epoch(epoch)
        cuts = samples.prefix_cuts()
        if views is not None:
            views.set_epoch(epoch)
        for i in range(len(samples)):
            item, j = samples[i], int(cuts[i])
            assert item.pop("input_ids") == inputs[i][: j + 1]
            assert item.pop("labels") == [-100] * j + [labels[i][j]]  # the prefix's next item, nothing else
            assert item.pop("history_input_ids") == labels[i]  # the row's items, for the sampled negatives
            expected = {} if views is None else {k: v for k, v in views[i].items() if k not in ("input_ids", "labels")}
            assert item == expected
    # The cut is keyed on (seed, epoch, row) alone: the views' cut, with or without pairs; redrawn each epoch.
    assert np.array_equal(samples.prefix_cuts(3), _prefix(examples, "dropout", seed=4).prefix_cuts(3))
    assert not np.array_equal(samples.prefix_cuts(0), samples.prefix_cuts(3))


def test_prefix_samples_refuse_views_of_anything_but_their_prefix(examples):
    for span in ("sequence", "random_prefix_in_place"):
        with pytest.raises(ValueError, match=f"needs view_span='random_prefix'.*got view_span='{span}'"):
            PairedTrainDataset(examples, seed=0, view_maker="dropout", view_span=span, prediction_span="random_prefix")
    with pytest.raises(ValueError, match="prediction_span must be one of sequence, random_prefix"):
        PairedTrainDataset(examples, seed=0, prediction_span="suffix")
    with pytest.raises(Exception, match="needs ssl_view_span='random_prefix'"):
        _config(bt_alpha=0.1, prediction_span="random_prefix")
    assert _config(bt_alpha=0.0, prediction_span="random_prefix").prediction_span == "random_prefix"


def test_prefix_sample_loss_is_the_cross_entropy_of_each_prefix_last_state(examples):
    samples = PairedTrainDataset(examples, seed=1, with_pairs=False, prediction_span="random_prefix")
    batch = SequenceCollator()([samples[i] for i in range(12)])
    torch.manual_seed(0)
    model = BTSRForSequentialRecommendation(_config(num_items=30, max_position_embeddings=20)).eval()
    out = model(**batch)
    # Independently: each row's last state scores items 1..30, against the prefix's one target.
    scores = out.user_embeddings @ model.get_input_embeddings().weight[1:31].T
    targets = torch.tensor([samples[i]["labels"][-1] for i in range(12)]) - 1
    assert int(out.num_prediction_positions) == 12
    assert torch.allclose(out.prediction_loss, torch.nn.functional.cross_entropy(scores, targets), atol=1e-6)


@pytest.mark.parametrize("loss_type", ["bce", "bpr"])
def test_prefix_samples_sampled_negatives_avoid_every_item_of_the_row(monkeypatch, loss_type):
    """Under whole sequences the negatives avoid the row's items; a prefix sample holds only its prefix and target,
    so its later items could be drawn as negatives unless the row comes along (`history_input_ids`)."""
    import modeling_btsr.modeling_btsr as modeling

    rng = np.random.default_rng(3)
    rows = [rng.permutation(np.arange(1, 13))[: int(rng.integers(8, 12))] for _ in range(16)]  # 12 items
    samples = PairedTrainDataset(
        build_train_dataset(rows, max_len=20), seed=2, with_pairs=False, prediction_span="random_prefix"
    )
    drawn = []

    def recording(seen, num_items, num_negatives, generator=None):
        negatives, valid = original(seen, num_items, num_negatives, generator)
        drawn.append((negatives, valid))
        return negatives, valid

    original = modeling.sample_negatives
    monkeypatch.setattr(modeling, "sample_negatives", recording)
    model = BTSRForSequentialRecommendation(
        _config(loss_type=loss_type, bce_num_negatives=2, max_position_embeddings=20)
    )
    later_items_missed = 0
    for epoch in range(3):
        samples.set_epoch(epoch)
        batch = SequenceCollator()(samples.__getitems__(list(range(len(rows)))))
        model(**batch)
        negatives, valid = drawn[-1]
        for i, row in enumerate(rows):
            chosen = set(negatives[i][valid[i]].tolist())
            assert not chosen & set(row.tolist()), (epoch, i)
            later_items_missed += len(
                set(row.tolist()) - set(batch["input_ids"][i].tolist()) - set(batch["labels"][i].tolist())
            )
    assert later_items_missed > 0  # the prefixes alone would have left items of their rows drawable


# ---------------------------------------------------------------------------------------------------------------------
# the model: mask token, SSL objective
# ---------------------------------------------------------------------------------------------------------------------


def _config(**kwargs):
    base = dict(
        num_items=12,
        hidden_size=8,
        max_position_embeddings=10,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BTSRConfig(**{**base, **kwargs})


def test_mask_token_row_only_when_masking_and_never_scored():
    assert BTSRForSequentialRecommendation(BTSRConfig(num_items=3416)).num_parameters() == 3417 * 64 + 63_360
    duorec = {"view_maker": "same_target+dropout", "hidden_dropout_prob": 0.1}
    for kwargs in ({}, {"view_maker": "cl4srec", "cl4srec_mask_ratio": 0.0}, duorec):
        model = BTSRForSequentialRecommendation(_config(**kwargs))
        assert model.config.mask_token_id is None
        assert model.btsr.item_embeddings.num_embeddings == 13
    model = BTSRForSequentialRecommendation(_config(view_maker="cl4srec", ssl_objective="infonce"))
    assert model.config.mask_token_id == 13
    weight = model.btsr.item_embeddings.weight
    assert weight.shape[0] == 14
    items = model.btsr.item_embedding_matrix()
    assert items.shape == (12, 8) and torch.equal(items, weight[1:13])
    # Make the mask token the best match of every user: it must still never be recommended.
    with torch.no_grad():
        weight[13] = 100.0 * weight[1:13].abs().sum(0)
    model.btsr.set_item_vocab({"item_ids": [f"i{j}" for j in range(1, 13)], "item_counts": [1] * 12})
    lists = model.recommend([["i1", "i2"], ["i5"], []], k=20, exclude_seen=False)
    assert all(len(row) == 12 and set(row) == {f"i{j}" for j in range(1, 13)} for row in lists)
    # Masked inputs encode (the mask row is an embedding like any item) and the prediction loss ignores it.
    ids = torch.tensor([[1, 13, 3], [0, 2, 13]])
    out = model(ids, labels=torch.tensor([[12, 3, 4], [-100, 5, 6]]))
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("view_maker", ["same_target", "dropout", "same_target+dropout", "cl4srec"])
@pytest.mark.parametrize("objective", ["barlow_twins", "infonce"])
def test_forward_ssl_objective_and_views(view_maker, objective):
    from modeling_btsr.losses_btsr import barlow_twins_loss

    torch.manual_seed(0)
    config = _config(view_maker=view_maker, ssl_objective=objective, bt_alpha=0.3, hidden_dropout_prob=0.1)
    model = BTSRForSequentialRecommendation(config)
    model.eval()  # no dropout: the embeddings below are the forward's own
    ids, labels = torch.tensor([[1, 2, 3], [0, 4, 5], [6, 7, 8]]), torch.tensor([[2, 3, 4], [-100, 5, 6], [7, 8, 9]])
    pair, view = torch.tensor([[0, 9, 4], [1, 2, 5], [3, 3, 9]]), torch.tensor([[0, 0, 2], [4, 5, 6], [6, 8, 1]])
    out = model(ids, labels=labels, pair_input_ids=pair, view_input_ids=view)

    def embed(x):
        return model.btsr(x).user_embeddings

    expected = (
        barlow_twins_loss(embed(view), embed(pair), model.config.bt_lambda)
        if objective == "barlow_twins"
        else infonce_loss(embed(view), embed(pair), 1.0)
    )
    assert torch.allclose(out.ssl_loss, expected, atol=1e-6)
    assert torch.allclose(out.loss, out.prediction_loss + 0.3 * out.ssl_loss)
    assert (out.bt_loss is not None) == (objective == "barlow_twins")
    # Without view_input_ids view A is the prediction pass of input_ids (BT-SR, DuoRec unsupervised).
    out = model(ids, labels=labels, pair_input_ids=pair)
    first = embed(ids)
    expected = (
        barlow_twins_loss(first, embed(pair), model.config.bt_lambda)
        if objective == "barlow_twins"
        else infonce_loss(first, embed(pair), 1.0)
    )
    assert torch.allclose(out.ssl_loss, expected, atol=1e-6)


def test_ssl_settings_are_validated_and_saved(tmp_path):
    for bad in (
        {"ssl_objective": "simclr"},
        {"infonce_temperature": 0.0},
        {"view_maker": "crop"},
        {"cl4srec_crop_ratio": 0.0},
        {"cl4srec_mask_ratio": 1.5},
        {"infonce_similarity": "l2"},
        {"ssl_view_span": "suffix"},
        {"prediction_span": "suffix"},
    ):
        with pytest.raises(Exception, match=next(iter(bad))):
            _config(**bad)
    model = BTSRForSequentialRecommendation(
        _config(ssl_objective="infonce", view_maker="cl4srec", cl4srec_crop_ratio=0.4, infonce_temperature=0.5)
    )
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["view_maker"] == "cl4srec" and saved["cl4srec_crop_ratio"] == 0.4
    assert saved["ssl_objective"] == "infonce" and saved["infonce_temperature"] == 0.5
    loaded = BTSRForSequentialRecommendation.from_pretrained(tmp_path)
    assert loaded.btsr.item_embeddings.num_embeddings == 14
    assert torch.equal(loaded.btsr.item_embeddings.weight, model.btsr.item_embeddings.weight)


# ---------------------------------------------------------------------------------------------------------------------
# presets and train.py
# ---------------------------------------------------------------------------------------------------------------------


def test_presets_resolve():
    model_args, data_args, _, _ = parse_arguments(["--preset", "cl4srec", "--output_dir", "x"])
    assert (model_args.ssl_objective, model_args.view_maker, model_args.bt_alpha) == ("infonce", "cl4srec", 0.1)
    assert data_args.dataset == "ml-1m"
    model_args, _, training, _ = parse_arguments(["--preset", "duorec", "--bt_alpha", "0.2", "--output_dir", "x"])
    assert (model_args.ssl_objective, model_args.view_maker) == ("infonce", "same_target+dropout")
    assert model_args.bt_alpha == 0.2 and training.per_device_train_batch_size == 256
    assert PRESETS["btsr-ml1m"]["loss_type"] == PRESETS["cl4srec"]["loss_type"] == PRESETS["duorec"]["loss_type"]


@pytest.mark.parametrize(
    "preset,span,prediction",
    [
        ("cl4srec", "sequence", "sequence"),
        ("duorec", "sequence", "sequence"),
        ("duorec", "random_prefix", "sequence"),
        ("cl4srec", "random_prefix_in_place", "sequence"),
        ("cl4srec", "random_prefix", "random_prefix"),
    ],
)
@pytest.mark.integration
def test_train_py_with_contrastive_preset(tmp_path, synthetic_log, preset, span, prediction):
    out = tmp_path / preset
    result = run_train(
        [
            "--preset",
            preset,
            "--data_path",
            str(synthetic_log),
            "--output_dir",
            str(out),
            "--hidden_size",
            "16",
            "--max_len",
            "20",
            "--per_device_train_batch_size",
            "16",
            "--num_train_epochs",
            "2",
            "--use_cpu",
            "--seed",
            "3",
            "--dataloader_num_workers",
            "0",
            *(["--ssl_view_span", span] if span != "sequence" else []),
            *(["--prediction_span", prediction] if prediction != "sequence" else []),
        ]
    )
    assert "Test metrics" in result.stdout
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["test_ndcg@10"] <= 1.0 and math.isfinite(results["train_loss"])
    config = json.loads((out / "config.json").read_text())
    assert config["ssl_objective"] == "infonce" and config["view_maker"] == PRESETS[preset]["view_maker"]
    assert config["ssl_view_span"] == span and config["prediction_span"] == prediction
    state = json.loads(next(out.glob("checkpoint-*/trainer_state.json")).read_text())
    assert any("ssl_loss" in entry for entry in state["log_history"])
