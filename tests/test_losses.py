"""Losses against independent computations: BT formula, SCE == CE, BCE formula, degenerate batches, gloo."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling_btsr import (
    barlow_twins_loss,
    cross_entropy_loss,
    losses_btsr,
    sampled_bce_loss,
    scalable_cross_entropy_loss,
)
from modeling_btsr.losses_btsr import bucket_cross_entropy, chunked_topk, sample_negatives, sampled_bpr_loss
from tests.distributed import assert_two_processes_match_one


def barlow_twins_numpy(z_a: np.ndarray, z_b: np.ndarray, lam: float) -> float:
    """The paper's formula written out with numpy loops over features."""
    a = z_a / np.linalg.norm(z_a, axis=1, keepdims=True)
    b = z_b / np.linalg.norm(z_b, axis=1, keepdims=True)
    a = (a - a.mean(0)) / a.std(0, ddof=1)
    b = (b - b.mean(0)) / b.std(0, ddof=1)
    n, d = a.shape
    total = 0.0
    for k in range(d):
        for m in range(d):
            c = float(np.dot(a[:, k], b[:, m]) / n)
            total += (1 - c) ** 2 if k == m else lam * c**2
    return total / d


@pytest.mark.parametrize("lam", [0.0, 0.05, 1.0])
def test_barlow_twins_equals_formula(lam):
    gen = torch.Generator().manual_seed(1)
    z_a = torch.randn(32, 8, generator=gen, dtype=torch.float64)
    z_b = z_a + 0.5 * torch.randn(32, 8, generator=gen, dtype=torch.float64)
    got = barlow_twins_loss(z_a, z_b, lam)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(barlow_twins_numpy(z_a.numpy(), z_b.numpy(), lam), rel=1e-12)


def test_barlow_twins_degenerate_batches_are_finite():
    one = torch.randn(1, 8, requires_grad=True)
    loss = barlow_twins_loss(one, one * 2, 0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(one.grad).all()
    # Constant features and identical views.
    constant = torch.ones(16, 8, requires_grad=True)
    loss = barlow_twins_loss(constant, constant, 0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(constant.grad).all()
    same = torch.randn(16, 8, dtype=torch.float64)
    assert torch.isfinite(barlow_twins_loss(same, same, 0.05))
    # Half precision under autocast is computed in float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = torch.randn(16, 8) @ torch.eye(8)
        assert z.dtype == torch.bfloat16
        half = barlow_twins_loss(z, z.flip(0), 0.05)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert torch.isfinite(barlow_twins_loss(torch.randn(16, 8).half(), torch.randn(16, 8).half(), 0.05))


def test_sce_with_one_covering_bucket_equals_ce():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    items = torch.randn(50, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 51, (37,), generator=gen)
    ce = cross_entropy_loss(hidden, targets, items) / 37
    total, picked = scalable_cross_entropy_loss(hidden, targets, items, 1, 37, 50, generator=gen)
    assert int(picked) == 37
    assert torch.allclose(total / picked, ce, rtol=1e-12)
    g_ce = torch.autograd.grad(ce, [hidden, items])
    g_sce = torch.autograd.grad(total / picked, [hidden, items])
    for a, b in zip(g_ce, g_sce):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # b_x larger than the positions present is clamped (a short last batch must not crash).
    total2, picked2 = scalable_cross_entropy_loss(hidden, targets, items, 1, 10_000, 50, generator=gen)
    assert torch.allclose(total2 / picked2, ce, rtol=1e-12)


def test_sce_bucket_max_and_unpicked_positions():
    """A position's loss is its maximum over the buckets that picked it; unpicked positions add nothing."""
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    items = torch.randn(30, 8, generator=gen, dtype=torch.float64)
    targets = torch.randint(1, 31, (40,), generator=gen)
    state = gen.get_state()
    total, picked = scalable_cross_entropy_loss(hidden, targets, items, 3, 5, 7, generator=gen)
    # Recompute by hand with the same centres.
    gen.set_state(state)
    pos, its = _sce_buckets(hidden, items, 3, 5, 7, gen)
    best = {}
    for c in range(3):
        for n in pos[c].tolist():
            tgt = int(targets[n]) - 1
            cands = [float(hidden[n] @ items[i]) for i in its[c].tolist() if i != tgt]
            pos_logit = float(hidden[n] @ items[tgt])
            loss = np.logaddexp.reduce(np.array(cands + [pos_logit])) - pos_logit
            best[n] = max(best.get(n, -np.inf), loss)
    assert int(picked) == len(best)
    assert total.item() == pytest.approx(sum(best.values()), rel=1e-10)
    with pytest.raises(ValueError, match="cannot exceed"):
        scalable_cross_entropy_loss(hidden, targets, items, 1, 5, 31)


def _sce_written_out(hidden, targets, items, position_index, item_index):
    """SCE on given buckets with plain autograd ops: gathers, a masked logsumexp over the concatenated target
    logit, and the maximum over buckets (the form `_BucketMaxCrossEntropy` replaces)."""
    bucket_hidden, bucket_items = hidden[position_index], items[item_index]
    logits = torch.einsum("cxd,cyd->cxy", bucket_hidden, bucket_items)
    own = item_index.unsqueeze(1) == (targets - 1)[position_index].unsqueeze(2)
    target = (hidden * items[targets - 1]).sum(-1)[position_index]
    lse = torch.logsumexp(torch.cat([logits.masked_fill(own, float("-inf")), target.unsqueeze(-1)], -1), -1)
    per_position = torch.full((hidden.shape[0],), float("-inf"), dtype=lse.dtype)
    per_position = per_position.scatter_reduce(0, position_index.reshape(-1), (lse - target).reshape(-1), "amax")
    return per_position[torch.isfinite(per_position)].sum()


def _sce_buckets(hidden, items, n_buckets, bucket_size_x, bucket_size_y, gen):
    centres = torch.randn(n_buckets, hidden.shape[1], generator=gen, dtype=hidden.dtype) * hidden.shape[1] ** -0.25
    with torch.no_grad():
        positions = (centres @ hidden.T).topk(bucket_size_x, dim=1).indices
        candidates = (centres @ items.T).topk(bucket_size_y, dim=1).indices
    return positions, candidates


@pytest.mark.parametrize("per_bucket_backward", [True, False], ids=["per-bucket", "batched"])
def test_sce_value_and_gradients_match_written_out_form(per_bucket_backward, monkeypatch):
    """Several overlapping buckets (positions picked by several, targets inside and outside the candidate lists),
    then every bucket twice (a tie in each maximum): loss and both gradients equal plain autograd's, with the CPU's
    per-bucket backward and with the batched one other devices use."""
    monkeypatch.setattr(losses_btsr, "PER_BUCKET_BACKWARD_DEVICES", ("cpu",) if per_bucket_backward else ())
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(60, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    items = torch.randn(25, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 26, (60,), generator=gen)
    state = gen.get_state()
    total, picked = scalable_cross_entropy_loss(hidden, targets, items, 6, 20, 9, generator=gen)
    gen.set_state(state)
    positions, candidates = _sce_buckets(hidden, items, 6, 20, 9, gen)
    reference = _sce_written_out(hidden, targets, items, positions, candidates)
    assert torch.allclose(total, reference, rtol=1e-12)
    own_target_listed = candidates.unsqueeze(1) == (targets - 1)[positions].unsqueeze(2)
    assert own_target_listed.any() and not own_target_listed.any(-1).all()  # both cases are exercised
    weights = torch.randn(2, generator=gen, dtype=torch.float64)
    for got, want in zip(
        torch.autograd.grad(weights[0] * total, [hidden, items]),
        torch.autograd.grad(weights[0] * reference, [hidden, items], retain_graph=True),
    ):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)

    # A tie: every bucket twice, so each position's maximum is reached twice; autograd's amax splits the gradient
    # between the copies, and the total is the one-copy gradient.
    twice = bucket_cross_entropy(hidden, targets, items, positions.repeat(2, 1), candidates.repeat(2, 1))
    assert torch.allclose(twice[0], total, rtol=1e-14) and int(twice[1]) == int(picked)
    reference_twice = _sce_written_out(hidden, targets, items, positions.repeat(2, 1), candidates.repeat(2, 1))
    for got, want, one_copy in zip(
        torch.autograd.grad(twice[0] * weights[1], [hidden, items]),
        torch.autograd.grad(reference_twice * weights[1], [hidden, items]),
        torch.autograd.grad(reference * weights[1], [hidden, items]),
    ):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
        assert torch.allclose(got, one_copy, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("per_bucket_backward", [True, False], ids=["per-bucket", "batched"])
def test_sce_one_side_gradients_and_an_empty_batch(per_bucket_backward, monkeypatch):
    """Only the hidden states or only the item embeddings needing a gradient gives that gradient alone, equal to
    the written-out form's; a batch without labelled positions gives a zero loss, count and gradient."""
    monkeypatch.setattr(losses_btsr, "PER_BUCKET_BACKWARD_DEVICES", ("cpu",) if per_bucket_backward else ())
    gen = torch.Generator().manual_seed(9)
    hidden = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    items = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    targets = torch.randint(1, 21, (30,), generator=gen)
    positions, candidates = _sce_buckets(hidden, items, 4, 12, 8, gen)
    for side in (0, 1):
        inputs = [hidden.clone().requires_grad_(side == 0), items.clone().requires_grad_(side == 1)]
        total = bucket_cross_entropy(inputs[0], targets, inputs[1], positions, candidates)[0]
        reference = _sce_written_out(inputs[0], targets, inputs[1], positions, candidates)
        (got,) = torch.autograd.grad(total, inputs[side])
        (want,) = torch.autograd.grad(reference, inputs[side])
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    empty = torch.zeros(0, 6, dtype=torch.float64, requires_grad=True)
    total, picked = scalable_cross_entropy_loss(empty, targets[:0], items.requires_grad_(), 3, 5, 4)
    assert total.item() == 0 and int(picked) == 0
    grads = torch.autograd.grad(total / picked.clamp_min(1), [empty, items])
    assert grads[0].shape == (0, 6) and not grads[1].any()


@pytest.mark.parametrize("per_bucket_backward", [True, False], ids=["per-bucket", "batched"])
def test_sce_half_precision_is_float32_and_close(per_bucket_backward, monkeypatch):
    monkeypatch.setattr(losses_btsr, "PER_BUCKET_BACKWARD_DEVICES", ("cpu",) if per_bucket_backward else ())
    gen = torch.Generator().manual_seed(2)
    hidden = torch.randn(50, 16, generator=gen, requires_grad=True)
    items = torch.randn(40, 16, generator=gen, requires_grad=True)
    targets = torch.randint(1, 41, (50,), generator=gen)
    full = scalable_cross_entropy_loss(hidden, targets, items, 1, 50, 40)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = scalable_cross_entropy_loss(hidden.bfloat16(), targets, items, 1, 50, 40)[0]
        assert half.dtype == torch.float32
        # backward inside the autocast region too (as a hand-written training loop may call it)
        grads = torch.autograd.grad(half, [hidden, items])
    assert half.item() == pytest.approx(full.item(), rel=2e-2)
    want = torch.autograd.grad(full, [hidden, items])
    assert grads[0].dtype == grads[1].dtype == torch.float32
    for got, ref in zip(grads, want):
        assert (got - ref).norm() < 0.05 * ref.norm()


def testchunked_topk_matches_full():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(5, 4, generator=gen), torch.randn(1000, 4, generator=gen)
    full = (q @ k.T).topk(17, dim=1).indices
    assert torch.equal(chunked_topk(q, k, 17, chunk_size=64), full)


def _sampled_case(seed: int, positions: int, negatives: int):
    """Random float64 hidden states, 20 item rows, targets and negatives for the sampled losses."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(positions, 4, generator=gen, dtype=torch.float64)
    items = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    targets = torch.randint(1, 21, (positions,), generator=gen)
    return gen, hidden, items, targets, torch.randint(1, 21, (positions, negatives), generator=gen)


def test_bce_formula_and_negative_sampling():
    gen, hidden, items, targets, negatives = _sampled_case(0, 6, 3)
    # The authors' bce_forward: binary cross-entropy on each of a position's 1 + K logits, their mean, then the
    # positions' mean (here their sum: the caller divides by the number of positions).
    expected = 0.0
    for n in range(6):
        terms = [-np.log(torch.sigmoid(hidden[n] @ items[targets[n] - 1]).item())]
        terms += [-np.log(1 - torch.sigmoid(hidden[n] @ items[j - 1]).item()) for j in negatives[n].tolist()]
        expected += np.mean(terms)
    logits = torch.cat(
        [(hidden * items[targets - 1]).sum(-1, keepdim=True), torch.einsum("nd,nkd->nk", hidden, items[negatives - 1])],
        1,
    )
    labels = torch.cat([torch.ones(6, 1), torch.zeros(6, 3)], 1).double()
    torch_mean = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1).sum()
    assert torch_mean.item() == pytest.approx(expected, rel=1e-10)
    assert sampled_bce_loss(hidden, targets, items, negatives).item() == pytest.approx(expected, rel=1e-10)
    seen = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])
    negs, valid = sample_negatives(seen, num_items=20, num_negatives=12, generator=gen)
    assert valid.all()
    for row, s in zip(negs.tolist(), seen.tolist()):
        assert len(set(row)) == 12 and not set(row) & set(s) and 0 not in row and max(row) <= 20
    # A user who has seen 18 of 20 items has 2 negatives to give: the other 10 slots are marked and do not count.
    seen = torch.arange(1, 19)[None]
    negs, valid = sample_negatives(seen, num_items=20, num_negatives=12, generator=gen)
    assert valid.sum() == 2 and set(negs[valid].tolist()) == {19, 20}
    h, t = hidden[:1], torch.tensor([3])
    expected = (
        -np.log(torch.sigmoid(h[0] @ items[2]).item())
        - sum(np.log(1 - torch.sigmoid(h[0] @ items[j - 1]).item()) for j in (19, 20))
    ) / 3  # the positive and the two negatives that count
    assert sampled_bce_loss(h, t, items, negs, valid).item() == pytest.approx(expected, rel=1e-10)


def test_bpr_formula_with_and_without_invalid_negative_slots():
    _, hidden, items, targets, negatives = _sampled_case(1, 5, 3)

    # Rendle et al.: -log sigmoid(x_pos - x_neg), here each position's mean over its negatives, summed over positions.
    def brute(valid):
        total = 0.0
        for n in range(5):
            positive = float(hidden[n] @ items[targets[n] - 1])
            terms = [
                -np.log(1 / (1 + np.exp(-(positive - float(hidden[n] @ items[j - 1])))))
                for k, j in enumerate(negatives[n].tolist())
                if valid[n][k]
            ]
            total += np.mean(terms) if terms else 0.0
        return total

    everything = [[True] * 3] * 5
    assert sampled_bpr_loss(hidden, targets, items, negatives).item() == pytest.approx(brute(everything), rel=1e-10)
    valid = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1], [1, 1, 0]], dtype=torch.bool)
    mine = sampled_bpr_loss(hidden, targets, items, negatives, valid).item()
    assert mine == pytest.approx(brute(valid.tolist()), rel=1e-10)  # a position without negatives adds 0


def test_bpr_model_loss_is_the_mean_over_positions():
    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation

    torch.manual_seed(0)
    model = BTSRForSequentialRecommendation(
        BTSRConfig(num_items=30, hidden_size=8, max_position_embeddings=10, loss_type="bpr", bce_num_negatives=1)
    ).eval()
    ids = torch.randint(1, 31, (4, 6))
    labels = torch.randint(1, 31, (4, 6))
    labels[:, :2] = -100
    model.sce_generator = torch.Generator().manual_seed(5)
    out = model(ids, labels=labels)
    # Independently: the same negatives (the same generator state), BPR per labelled position, then the mean.
    seen = torch.cat([ids, labels.clamp_min(0)], dim=1)
    negatives, valid = sample_negatives(seen, 30, 1, torch.Generator().manual_seed(5))
    states = model.btsr(ids).last_hidden_state
    table = model.btsr.item_embedding_matrix()
    expected = []
    for row in range(4):
        for position in range(2, 6):
            h = states[row, position]
            margin = h @ table[labels[row, position] - 1] - h @ table[negatives[row, 0] - 1]
            expected.append(-torch.nn.functional.logsigmoid(margin))
    assert valid.all() and int(out.num_prediction_positions) == 16
    assert torch.allclose(out.prediction_loss, torch.stack(expected).mean(), atol=1e-6)


def test_two_process_gloo_bt_equals_one_process():
    """2 processes x B/2 give the 1-process loss on B rows; per-row gradients match after DDP's 1/world averaging."""
    assert_two_processes_match_one(functools.partial(barlow_twins_loss, bt_lambda=0.05))


def test_cross_entropy_is_sum_of_torch_ce():
    gen = torch.Generator().manual_seed(0)
    hidden, items = torch.randn(9, 4, generator=gen), torch.randn(11, 4, generator=gen)
    targets = torch.randint(1, 12, (9,), generator=gen)
    expected = F.cross_entropy(hidden @ items.T, targets - 1, reduction="mean") * 9
    assert torch.allclose(cross_entropy_loss(hidden, targets, items), expected)


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_cross_entropy_value_and_gradients_match_the_full_form(autocast, monkeypatch):
    """Several chunks (64 rows each): the value and both gradients of `F.cross_entropy` over the full logits; under
    bf16 autocast, where the chunks' three products run in bf16, those of autograd's full form under the same
    autocast (its product and backward in bf16 too) within bf16 rounding, in float32."""
    monkeypatch.setattr("modeling_btsr.losses_btsr._CE_CHUNK_ELEMENTS", 64 * 50)
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(200, 16, generator=gen).requires_grad_()
    items = (torch.randn(50, 16, generator=gen) / 2).requires_grad_()
    targets = torch.randint(1, 51, (200,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        chunked = cross_entropy_loss(hidden, targets, items)
        chunked_grads = torch.autograd.grad(chunked, (hidden, items))
        full = F.cross_entropy((hidden @ items.T).float(), targets - 1, reduction="sum")
        full_grads = torch.autograd.grad(full, (hidden, items))
    assert chunked.dtype == torch.float32 and all(g.dtype == torch.float32 for g in chunked_grads)
    tolerance = dict(rtol=2e-2, atol=2e-2) if autocast else dict(rtol=1e-5, atol=1e-5)
    assert torch.allclose(chunked, full, **tolerance)
    for mine, reference in zip(chunked_grads, full_grads):
        assert torch.allclose(mine, reference.float(), **tolerance)
