"""Metric math (`modeling_btsr.metrics`) against hand-computed values and naive re-implementations."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_btsr.metrics import (
    bootstrap_ci,
    bucket_mix,
    coverage_at_k,
    effective_rank,
    entropy_from_partials,
    entropy_partials,
    hit_rate_at_k,
    merge_entropy_partials,
    miscalibration,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap_ci,
    popularity_buckets,
    predictive_entropy,
    ranks_of_targets,
    stable_rank,
)

RANKING_MODULE = Path(__file__).resolve().parent.parent / "modeling_btsr" / "metrics_hub" / "ranking"


def test_hit_rate_ndcg_mrr_hand_values():
    ranks = torch.tensor([1, 3, 11])
    assert hit_rate_at_k(ranks, 10).mean().item() == pytest.approx(2 / 3)
    assert ndcg_at_k(ranks, 10).mean().item() == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert mrr_at_k(ranks, 10).mean().item() == pytest.approx((1 + 1 / 3) / 3)
    assert hit_rate_at_k(ranks, 11).tolist() == [1.0, 1.0, 1.0]
    assert ndcg_at_k(ranks, 1).tolist() == [1.0, 0.0, 0.0]
    assert ndcg_at_k(ranks, 11)[2].item() == pytest.approx(1 / math.log2(12))
    # One target per user: HR@K is monotone in K and MRR <= NDCG <= HR.
    for k in (1, 2, 5, 20):
        assert (mrr_at_k(ranks, k) <= ndcg_at_k(ranks, k) + 1e-12).all()
        assert (ndcg_at_k(ranks, k) <= hit_rate_at_k(ranks, k)).all()


def test_ranks_pessimistic_ties_and_exclusions():
    scores = torch.tensor(
        [
            [3.0, 1.0, 2.0, 0.0],
            [1.0, 1.0, 1.0, 1.0],  # all tied: the worst rank, not the best
            [5.0, float("-inf"), 1.0, 1.0],  # excluded item never counts; one tie
            [5.0, float("-inf"), 1.0, 1.0],  # excluded target: a miss
        ]
    )
    assert ranks_of_targets(scores, torch.tensor([2, 0, 2, 1])).tolist() == [2, 4, 3, 5]
    # The same ranks as a brute-force sort with the target placed after its ties.
    for row, target in [(0, 1), (2, 3)]:
        s = scores[row].tolist()
        order = sorted(range(4), key=lambda j: (-s[j], j == target))
        assert ranks_of_targets(scores[row : row + 1], torch.tensor([target])).item() == order.index(target) + 1


def test_coverage_ignores_empty_slots():
    assert coverage_at_k(torch.tensor([[1, 2, 0], [2, 4, 0]]), num_items=8) == pytest.approx(3 / 8)
    assert coverage_at_k(torch.zeros(3, 2, dtype=torch.long), num_items=5) == 0.0


def test_popularity_buckets_crossing_item_rule():
    # items 1..7 with counts; sorted: item 4 (6), item 1 (4), item 2 (4), item 6 (2), item 3 (1), item 5 (1),
    # item 7 (0); total 18, thresholds 6 and 12. Item 4 alone reaches 6 -> head ends there (it stays in head).
    # Item 1 (10) stays mid; item 2 crosses 12 (running 14) and stays mid; the rest are tail.
    counts = torch.tensor([4, 4, 1, 6, 1, 2, 0])
    assert popularity_buckets(counts).tolist() == [1, 1, 2, 0, 2, 2, 2]
    # Ties are broken by item index: with equal counts, the lower index is more popular.
    assert popularity_buckets(torch.tensor([1, 1, 1])).tolist() == [0, 1, 2]
    # One item heavier than a whole bucket leaves the next bucket empty.
    assert popularity_buckets(torch.tensor([1, 10, 1])).tolist() == [2, 0, 2]
    assert popularity_buckets(torch.zeros(4, dtype=torch.long)).tolist() == [2, 2, 2, 2]
    assert popularity_buckets(np.array([3, 1]), n_buckets=1).tolist() == [0, 0]


def _walk_buckets(counts, n_buckets):
    """The protocol's walk, literally: join the current bucket, then move on once the sum reaches b/n."""
    order = sorted(range(len(counts)), key=lambda j: (-counts[j], j))
    total, running, bucket = sum(counts), 0, 0
    result = [0] * len(counts)
    for j in order:
        result[j] = bucket
        running += counts[j]
        while bucket < n_buckets - 1 and total > 0 and running * n_buckets >= (bucket + 1) * total:
            bucket += 1
    return result if total > 0 else [n_buckets - 1] * len(counts)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(1, 5))
def test_popularity_buckets_match_the_walk(counts, n_buckets):
    assert popularity_buckets(torch.tensor(counts), n_buckets).tolist() == _walk_buckets(counts, n_buckets)


def test_bucket_mix():
    buckets = torch.tensor([0, 1, 2, 2])
    mix = bucket_mix(torch.tensor([[1, 3, 4, 0], [0, 0, 0, 0], [2, 2, 2, 2]]), buckets)
    assert torch.allclose(mix, torch.tensor([[1 / 3, 0, 2 / 3], [0, 0, 0], [0, 1, 0]], dtype=torch.float64))


def test_effective_and_stable_rank():
    torch.manual_seed(0)
    # Isotropic: d equal singular values -> effective rank d.
    q, _ = torch.linalg.qr(torch.randn(64, 8, dtype=torch.float64))
    iso = torch.cat([q, -q]) * 3.0  # centred, equal singular values
    assert effective_rank(iso) == pytest.approx(8.0)
    assert stable_rank(iso) == pytest.approx(8.0)
    # Rank one (after centring): 1; a constant shift changes nothing.
    line = torch.randn(50, 1, dtype=torch.float64) * torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64)
    assert effective_rank(line + 7.0) == pytest.approx(1.0)
    assert effective_rank(torch.ones(5, 3)) == 0.0
    # Scale invariant; singular values (2, 1) -> p = (2/3, 1/3).
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    expected = math.exp(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))
    assert effective_rank(x) == pytest.approx(expected)
    assert effective_rank(10 * x) == pytest.approx(expected)


def test_miscalibration_steck():
    p = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.0, 0.8], [1.0, 0.0, 0.0]])
    q = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.0, 0.8], [0.0, 0.0, 1.0]])
    alpha = 0.01
    expected = []
    for pu, qu in zip(p.tolist(), q.tolist()):
        expected.append(sum(a * math.log(a / ((1 - alpha) * b + alpha * a)) for a, b in zip(pu, qu) if a > 0))
    got = miscalibration(p, q, alpha=alpha)
    assert got.tolist() == pytest.approx(expected)
    assert got[1].item() == pytest.approx(0.0)
    assert got[2].item() == pytest.approx(math.log(1 / alpha))  # disjoint mixes: bounded by the smoothing
    # Counts are normalised.
    assert miscalibration(p * 7, q * 10).tolist() == pytest.approx(expected)


def test_predictive_entropy_and_chunked_partials():
    torch.manual_seed(0)
    logits = torch.randn(5, 23) * 4
    logits[0, 3:9] = float("-inf")
    logits[1, :11] = float("-inf")  # the first chunk of row 1 is fully excluded
    expected = torch.distributions.Categorical(logits=logits).entropy()
    assert torch.allclose(predictive_entropy(logits), expected, atol=1e-5)
    assert predictive_entropy(torch.zeros(1, 10)).item() == pytest.approx(math.log(10), rel=1e-6)
    for chunk in (1, 4, 11, 23):
        partials = None
        for start in range(0, logits.shape[1], chunk):
            part = entropy_partials(logits[:, start : start + chunk])
            partials = part if partials is None else merge_entropy_partials(partials, part)
        assert torch.allclose(entropy_from_partials(partials).float(), expected, atol=1e-5)


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    values = rng.binomial(1, 0.3, size=400).astype(float)
    ci = bootstrap_ci(values, n_boot=2000, seed=1)
    assert ci.mean == pytest.approx(values.mean())
    assert ci.low < ci.mean < ci.high
    # Close to the normal approximation of a proportion's interval.
    half = 1.96 * math.sqrt(values.mean() * (1 - values.mean()) / len(values))
    assert ci.high - ci.low == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_ci(values, n_boot=2000, seed=1) == ci  # deterministic
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_paired_bootstrap_ci():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    assert paired_bootstrap_ci(a, a) == (0.0, 0.0, 0.0)
    # A shared per-user component cancels in the pairing: a tiny but constant improvement is detected.
    ci = paired_bootstrap_ci(a + 0.01, a)
    assert ci.mean == pytest.approx(0.01) and ci.low == pytest.approx(0.01) and ci.high == pytest.approx(0.01)
    b = a + rng.normal(scale=0.1, size=300) - 0.05
    ci = paired_bootstrap_ci(a, b)
    assert ci.low > 0
    with pytest.raises(ValueError):
        paired_bootstrap_ci(a, a[:-1])


def test_evaluate_module_loads_offline_and_matches(monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ranking = evaluate.load(str(RANKING_MODULE))
    ranks = [1, 3, 11, 2, 50, 7]
    result = ranking.compute(ranks=ranks, ks=[1, 5, 10])
    tensor = torch.tensor(ranks)
    for k in (1, 5, 10):
        assert result[f"hr@{k}"] == pytest.approx(hit_rate_at_k(tensor, k).mean().item(), abs=1e-12)
        assert result[f"ndcg@{k}"] == pytest.approx(ndcg_at_k(tensor, k).mean().item(), abs=1e-12)
        assert result[f"mrr@{k}"] == pytest.approx(mrr_at_k(tensor, k).mean().item(), abs=1e-12)
    # Batched accumulation gives the same result.
    ranking.add_batch(ranks=ranks[:2])
    ranking.add_batch(ranks=ranks[2:])
    assert ranking.compute(ks=[1, 5, 10]) == result


def test_the_metric_module_loads_where_the_package_cannot_be_imported(tmp_path):
    """A copy of the metric folder, loaded by evaluate in an interpreter where `modeling_btsr` is unimportable."""
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "ranking"
    shutil.copytree(RANKING_MODULE, folder)
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "modeling_btsr.py").write_text("raise ImportError('the btsr package must not be needed')\n")
    script = (
        f"import evaluate, json; m = evaluate.load({str(folder)!r}); "
        "print(json.dumps(m.compute(ranks=[1, 3, 11], ks=[10])))"
    )
    env = {
        "PYTHONPATH": str(blocker),
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    ranks = torch.tensor([1, 3, 11])
    assert got["hr@10"] == pytest.approx(hit_rate_at_k(ranks, 10).mean().item())
    assert got["ndcg@10"] == pytest.approx(ndcg_at_k(ranks, 10).mean().item())
    assert got["mrr@10"] == pytest.approx(mrr_at_k(ranks, 10).mean().item())
    assert (RANKING_MODULE / "README.md").read_text().startswith("---\ntitle: Ranking")
