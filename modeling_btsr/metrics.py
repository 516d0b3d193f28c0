"""Metric math of the BT-SR evaluation protocol, as plain torch functions.

Every function is side-effect free and works on tensors (array-likes are converted), so the evaluation loop,
the `evaluate` wrappers in `modeling_btsr/metrics_hub/` and the benchmarks share one implementation. Per-user
metrics return one value per user; average them with `.mean()` (the evaluation loop does, after gathering the
users of every process).

Conventions:

- A *rank* is 1-based; a target that cannot be ranked (it was excluded, e.g. because it is in the user's own
  context) gets a rank larger than any cut-off, so it counts as a miss everywhere.
- Item lists (`topk_items`) hold item indices `1..num_items`; `0` marks an empty slot (fewer than K candidates).

References:

- HR, NDCG and MRR under full ranking: Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020.
- NDCG: Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002.
- Popularity buckets, coverage and effective rank: the BT-SR protocol (`BT-SR.md`, section 3); effective rank:
  Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007.
- Miscalibration: Steck, "Calibrated Recommendations", RecSys 2018.
- Bootstrap: Efron & Tibshirani, "An Introduction to the Bootstrap", 1993 (percentile interval).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "ranks_of_targets",
    "hit_rate_at_k",
    "ndcg_at_k",
    "mrr_at_k",
    "coverage_at_k",
    "popularity_buckets",
    "bucket_mix",
    "effective_rank",
    "stable_rank",
    "miscalibration",
    "predictive_entropy",
    "entropy_partials",
    "merge_entropy_partials",
    "entropy_from_partials",
    "BootstrapCI",
    "bootstrap_ci",
    "paired_bootstrap_ci",
]


def _as_tensor(values, dtype=None) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values if dtype is None else values.to(dtype)
    return torch.as_tensor(values, dtype=dtype)


def ranks_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""1-based rank of each target among the candidates of its row, with the pessimistic tie rule.

    $$\mathrm{rank}_u = 1 + \#\{j \ne t_u : s_{uj} \ge s_{u t_u}\}$$

    Ties count against the target (pessimistic), so a model that gives every item the same score gets the worst
    rank instead of rank 1: ties never inflate a metric. Excluded candidates carry `-inf` and never count; a
    target whose own score is `-inf` (excluded) gets rank `num_candidates + 1`, a miss at every cut-off.

    Args:
        scores (`torch.Tensor` of shape `(batch, num_candidates)`): scores, `-inf` on excluded candidates.
        targets (`torch.LongTensor` of shape `(batch,)`): column of each row's target.

    Returns:
        `torch.LongTensor` of shape `(batch,)`.

    Example:

    >>> scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, float("-inf")], [1.0, 2.0, 3.0]])
    >>> ranks_of_targets(scores, torch.tensor([0, 1, 2])).tolist()  # row 2: the tie counts against the target
    [1, 2, 1]
    >>> ranks_of_targets(scores, torch.tensor([2, 2, 0])).tolist()  # row 1: an excluded target is a miss
    [2, 4, 3]
    """
    scores = _as_tensor(scores)
    targets = _as_tensor(targets, torch.long).to(scores.device)
    target_scores = scores.gather(1, targets[:, None])
    # `>=` counts the target itself once; subtracting it leaves the other items at or above it.
    rank = (scores >= target_scores).sum(dim=1)
    excluded = torch.isneginf(target_scores[:, 0])
    return torch.where(excluded, torch.full_like(rank, scores.shape[1] + 1), rank)


def hit_rate_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    r"""Hit rate at K per user: $\mathrm{HR@K}_u = [\mathrm{rank}_u \le K]$ (one target per user, so it equals
    Recall@K).

    Args:
        ranks (`torch.Tensor` of shape `(num_users,)`): 1-based ranks of the targets.
        k: cut-off.

    Returns:
        float64 tensor of shape `(num_users,)` (float64 so means over many users print exactly); average with
        `.mean()`.

    Example:

    >>> hit_rate_at_k(torch.tensor([1, 3, 11]), 10).mean().item()  # 2 of 3 targets in the top 10
    0.666...
    """
    return (_as_tensor(ranks) <= k).to(torch.float64)


def ndcg_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    r"""NDCG at K per user with one relevant item: $\mathrm{NDCG@K}_u = [\mathrm{rank}_u \le K] /
    \log_2(\mathrm{rank}_u + 1)$ (the ideal DCG is 1).

    Args:
        ranks (`torch.Tensor` of shape `(num_users,)`): 1-based ranks of the targets.
        k: cut-off.

    Returns:
        float64 tensor of shape `(num_users,)`.

    Example:

    >>> ranks = torch.tensor([1, 3, 11])
    >>> round(ndcg_at_k(ranks, 10).mean().item(), 6), round((1 + 1 / math.log2(4)) / 3, 6)
    (0.5, 0.5)
    """
    ranks = _as_tensor(ranks).to(torch.float64)
    gain = 1.0 / torch.log2(ranks + 1.0)
    return torch.where(ranks <= k, gain, torch.zeros_like(gain))


def mrr_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    r"""Reciprocal rank at K per user: $\mathrm{MRR@K}_u = [\mathrm{rank}_u \le K] / \mathrm{rank}_u$.

    Args:
        ranks (`torch.Tensor` of shape `(num_users,)`): 1-based ranks of the targets.
        k: cut-off.

    Returns:
        float64 tensor of shape `(num_users,)`.

    Example:

    >>> mrr_at_k(torch.tensor([1, 4, 11]), 10).tolist()
    [1.0, 0.25, 0.0]
    """
    ranks = _as_tensor(ranks).to(torch.float64)
    return torch.where(ranks <= k, 1.0 / ranks, torch.zeros_like(ranks))


def coverage_at_k(topk_items: torch.Tensor, num_items: int) -> float:
    r"""Catalogue coverage: $|\bigcup_u \mathrm{top}K_u| / n_{\mathrm{items}}$ over the given users' lists.

    It is a set statistic, not an average of per-user values: compute it on the lists of *all* evaluated users
    at once (after gathering them from every process).

    Args:
        topk_items (`torch.LongTensor` of shape `(num_users, K)`): item indices `1..num_items`, `0` = empty slot.
        num_items: catalogue size.

    Returns:
        `float` in `[0, 1]`.

    Example:

    >>> coverage_at_k(torch.tensor([[1, 2], [2, 3], [3, 0]]), num_items=10)  # items {1, 2, 3}
    0.3
    """
    items = _as_tensor(topk_items, torch.long).reshape(-1)
    if num_items <= 0:
        raise ValueError(f"num_items must be positive, got {num_items}")
    seen = torch.zeros(num_items + 1, dtype=torch.bool, device=items.device)
    seen[items] = True
    return seen[1:].sum().item() / num_items


def popularity_buckets(item_user_counts: torch.Tensor, n_buckets: int = 3) -> torch.LongTensor:
    r"""Splits the catalogue into `n_buckets` popularity buckets of (about) equal interaction mass.

    Items are sorted by popularity (distinct training users), descending, ties by item index. Walking down the
    list, each item joins the current bucket and adds its popularity to the running sum; once the running sum
    reaches $b / n_{\mathrm{buckets}}$ of the total, the *next* item starts bucket $b$ (so the item that crosses
    the threshold stays in the current bucket). Equivalently, an item whose preceding items hold mass $S$ goes
    to bucket $\min(n_{\mathrm{buckets}} - 1, \lfloor n_{\mathrm{buckets}} S / \mathrm{total} \rfloor)$; a single
    item heavier than a whole bucket can leave the following bucket empty. The BT-SR protocol (section 3) uses
    3 buckets: 0 = head, 1 = mid, 2 = tail.

    Args:
        item_user_counts (`torch.Tensor` of shape `(num_items,)`): popularity of each item (entry `j` is item
            index `j + 1`); non-negative integers.
        n_buckets: number of buckets.

    Returns:
        `torch.LongTensor` of shape `(num_items,)`: bucket of each item, `0` the most popular.

    Example: total 12, thresholds 4 and 8. Item 1 (5) crosses 4 and stays in the head; item 3 (3) brings the sum
    to exactly 8 and stays in the mid bucket; the rest are tail.

    >>> popularity_buckets(torch.tensor([5, 1, 3, 2, 1, 0])).tolist()
    [0, 2, 1, 2, 2, 2]
    """
    counts = _as_tensor(item_user_counts).to(torch.long).reshape(-1)
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    if (counts < 0).any():
        raise ValueError("popularity counts must be non-negative")
    total = int(counts.sum())
    buckets = torch.full_like(counts, n_buckets - 1)
    if total == 0:
        return buckets
    order = torch.sort(-counts, stable=True).indices
    before = torch.cumsum(counts[order], 0) - counts[order]  # mass of the items above each item
    # Integer arithmetic: `before >= b * total / n` without rounding.
    buckets[order] = torch.clamp(before * n_buckets // total, max=n_buckets - 1)
    return buckets


def bucket_mix(item_lists: torch.Tensor, item_buckets: torch.Tensor, n_buckets: int = 3) -> torch.Tensor:
    """Share of each popularity bucket in each row's items (empty slots `0` ignored).

    Args:
        item_lists (`torch.LongTensor` of shape `(num_users, length)`): item indices `1..num_items`, `0` = empty.
        item_buckets (`torch.LongTensor` of shape `(num_items,)`): bucket of each item (`popularity_buckets`).
        n_buckets: number of buckets.

    Returns:
        float64 tensor of shape `(num_users, n_buckets)`; rows sum to 1 (rows with no item are all zero).

    Example:

    >>> bucket_mix(torch.tensor([[1, 2, 3, 3], [3, 3, 0, 0]]), torch.tensor([0, 1, 2])).tolist()
    [[0.25, 0.25, 0.5], [0.0, 0.0, 1.0]]
    """
    items = _as_tensor(item_lists, torch.long)
    item_buckets = _as_tensor(item_buckets, torch.long).to(items.device)
    valid = items > 0
    bucket = item_buckets[(items - 1).clamp_min(0)]
    flat = (torch.arange(items.shape[0], device=items.device)[:, None] * n_buckets + bucket)[valid]
    counts = torch.bincount(flat, minlength=items.shape[0] * n_buckets).view(items.shape[0], n_buckets).double()
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)


def _singular_values(embeddings: torch.Tensor) -> torch.Tensor:
    x = _as_tensor(embeddings).to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(x)


def effective_rank(embeddings: torch.Tensor) -> float:
    r"""Effective rank of a matrix of representations (Roy & Vetterli, 2007), after centring the rows.

    With singular values $\sigma$ of the centred matrix and $p = \sigma / \sum \sigma$:
    $\mathrm{erank} = \exp(-\sum_i p_i \log p_i)$, between 1 (one direction) and $\min(n, d)$ (isotropic).

    Args:
        embeddings (`torch.Tensor` of shape `(num_users, hidden)`).

    Returns:
        `float`; `0.0` when the centred matrix is zero (all rows equal).

    Example: four points spanning two orthogonal directions equally have effective rank 2.

    >>> round(effective_rank(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])), 6)
    2.0
    """
    sigma = _singular_values(embeddings)
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total
    return math.exp(float(torch.special.entr(p).sum()))


def stable_rank(embeddings: torch.Tensor) -> float:
    r"""Stable rank of the centred matrix: $\sum_i \sigma_i^2 / \sigma_{\max}^2 = \|X\|_F^2 / \|X\|_2^2$
    (Rudelson & Vershynin, 2007), a max-normalised companion of `effective_rank`.

    Args:
        embeddings (`torch.Tensor` of shape `(num_users, hidden)`).

    Returns:
        `float`; `0.0` when the centred matrix is zero.

    Example:

    >>> round(stable_rank(torch.tensor([[2.0, 0], [-2.0, 0], [0, 1.0], [0, -1.0]])), 6)  # (8 + 2) / 8
    1.25
    """
    sigma = _singular_values(embeddings)
    if sigma.numel() == 0 or sigma[0] <= 0:
        return 0.0
    return float((sigma**2).sum() / sigma[0] ** 2)


def miscalibration(
    history_bucket_mix: torch.Tensor, topk_bucket_mix: torch.Tensor, alpha: float = 0.01
) -> torch.Tensor:
    r"""Steck's miscalibration per user: KL divergence of the recommended mix from the history mix.

    $$C_{KL}(p, q) = \sum_g p(g) \log \frac{p(g)}{\tilde q(g)}, \qquad \tilde q = (1 - \alpha) q + \alpha p$$

    where $p$ is the distribution of the user's history over the groups (here popularity buckets) and $q$ that
    of the recommended list; the smoothing $\alpha$ keeps the divergence finite (Steck, "Calibrated
    Recommendations", RecSys 2018, eq. 5, $\alpha = 0.01$). Terms with $p(g) = 0$ contribute 0. 0 means
    perfectly calibrated.

    Args:
        history_bucket_mix (`torch.Tensor` of shape `(num_users, n_groups)`): history distribution (or counts,
            normalised here).
        topk_bucket_mix (`torch.Tensor` of shape `(num_users, n_groups)`): list distribution (or counts).
        alpha: smoothing weight.

    Returns:
        float64 tensor of shape `(num_users,)`; `nan` for a user whose history has no mass.

    Example: the history is half head and half tail, the list all head.

    >>> p, q = torch.tensor([[0.5, 0.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
    >>> expected = 0.5 * math.log(0.5 / (0.99 + 0.005)) + 0.5 * math.log(0.5 / 0.005)
    >>> round(miscalibration(p, q).item(), 6) == round(expected, 6)
    True
    >>> miscalibration(p, p).item()
    0.0
    """
    p = _as_tensor(history_bucket_mix).to(torch.float64)
    q = _as_tensor(topk_bucket_mix).to(torch.float64)
    p = p / p.sum(dim=1, keepdim=True)
    q = q / q.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    q_smooth = (1.0 - alpha) * q + alpha * p
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q_smooth)), torch.zeros_like(p))
    return terms.sum(dim=1)


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    r"""Entropy (nats) of the softmax over the candidates, per row:
    $H_u = -\sum_j p_{uj} \log p_{uj}$, $p_u = \mathrm{softmax}(s_u)$; `-inf` logits (excluded items) have
    probability 0. Low entropy = confident predictions; $\log n$ = uniform over $n$ candidates.

    For catalogues too large to hold `(batch, num_items)`, the evaluation loop combines `entropy_partials` of
    item chunks with `merge_entropy_partials` and finishes with `entropy_from_partials`.

    Args:
        logits (`torch.Tensor` of shape `(batch, num_candidates)`).

    Returns:
        `torch.FloatTensor` of shape `(batch,)`.

    Example:

    >>> predictive_entropy(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, float("-inf"), float("-inf")]]))
    tensor([1.3863, 0.6931])
    """
    logits = _as_tensor(logits).to(torch.float64)
    log_p = torch.log_softmax(logits, dim=-1)
    terms = torch.where(torch.isneginf(logits), torch.zeros_like(log_p), -log_p.exp() * log_p)
    return terms.sum(dim=-1).to(torch.float32)


def entropy_partials(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Streaming sufficient statistics of the softmax entropy of one chunk of candidates.

    With $m = \max_j s_j$, $S_0 = \sum_j e^{s_j - m}$ and $S_1 = \sum_j e^{s_j - m}(s_j - m)$, the entropy is
    $H = \log S_0 - S_1 / S_0$ (the log-sum-exp trick, so no chunk overflows).

    Args:
        logits (`torch.Tensor` of shape `(batch, chunk)`), `-inf` on excluded candidates.

    Returns:
        `(m, s0, s1)`, each a float64 tensor of shape `(batch,)`; a row with no candidate has
        `m = -inf`, `s0 = s1 = 0`.

    Example: two chunks merged give the entropy of the whole row.

    >>> logits = torch.tensor([[0.5, -1.0, 2.0, 0.0, float("-inf")]])
    >>> parts = merge_entropy_partials(entropy_partials(logits[:, :2]), entropy_partials(logits[:, 2:]))
    >>> torch.allclose(entropy_from_partials(parts).float(), predictive_entropy(logits))
    True
    """
    # The element-wise work stays in the input precision (the chunk is the large tensor); after the shift every
    # term is in [0, 1], so float32 loses nothing that matters, and the per-row sums are kept in float64.
    x = _as_tensor(logits)
    if not x.is_floating_point():
        x = x.to(torch.float32)
    m = x.amax(dim=1)
    safe_m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    weights = (x - safe_m[:, None]).exp_()  # w = exp(s - m); exp(-inf) = 0 for excluded items
    # w (s - m) = w log w = -entr(w), and entr(0) = 0: excluded items add nothing (no 0 * -inf = nan).
    # (`sum(dtype=float64)` would first copy the whole chunk to float64: sum in the input precision instead.)
    s1 = -torch.special.entr(weights).sum(dim=1)
    return m.to(torch.float64), weights.sum(dim=1).to(torch.float64), s1.to(torch.float64)


def merge_entropy_partials(a: tuple, b: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Combines two `entropy_partials` results (of disjoint candidate chunks) into those of their union.

    Args:
        a, b: `(m, s0, s1)` triples of shape `(batch,)` each.

    Returns:
        the `(m, s0, s1)` triple of the union.
    """
    (m_a, s0_a, s1_a), (m_b, s0_b, s1_b) = a, b
    m = torch.maximum(m_a, m_b)
    safe_m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)

    def rescale(m_x, s0_x, s1_x):
        # Moving the reference from m_x to m: s - m = (s - m_x) + delta, delta = m_x - m <= 0.
        empty = torch.isneginf(m_x)
        delta = torch.where(empty, torch.zeros_like(m_x), m_x - safe_m)
        factor = torch.where(empty, torch.zeros_like(m_x), delta.exp())
        return factor * s0_x, factor * (s1_x + delta * s0_x)

    s0_a, s1_a = rescale(m_a, s0_a, s1_a)
    s0_b, s1_b = rescale(m_b, s0_b, s1_b)
    return m, s0_a + s0_b, s1_a + s1_b


def entropy_from_partials(partials: tuple) -> torch.Tensor:
    """Entropy (nats) per row from merged `entropy_partials`: `log(s0) - s1 / s0`; `nan` for an empty row.

    Returns:
        float64 tensor of shape `(batch,)`.
    """
    _, s0, s1 = partials
    return torch.log(s0) - s1 / s0


class BootstrapCI(NamedTuple):
    """A point estimate (the sample mean) and its bootstrap percentile interval."""

    mean: float
    low: float
    high: float


def _bootstrap_means(values: torch.Tensor, n_boot: int, seed: int) -> torch.Tensor:
    n = values.shape[0]
    generator = torch.Generator().manual_seed(seed)
    # Resample in blocks of replicates so the index matrix stays around 16M entries whatever the number of users.
    block = max(1, min(n_boot, 16_000_000 // max(n, 1)))
    means = []
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        index = torch.randint(0, n, (size, n), generator=generator)
        means.append(values[index].mean(dim=1))
    return torch.cat(means)


def bootstrap_ci(per_user_values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
    r"""Percentile bootstrap interval of the mean of per-user values (users resampled with replacement).

    The interval is $[\hat\theta^*_{(1-\ell)/2}, \hat\theta^*_{(1+\ell)/2}]$, quantiles of the means of `n_boot`
    resamples (Efron & Tibshirani 1993, ch. 13). Deterministic for a given `seed`.

    Args:
        per_user_values (`torch.Tensor` or array of shape `(num_users,)`): e.g. per-user HR@10.
        n_boot: bootstrap replicates.
        seed: seed of the resampling generator.
        level: coverage of the interval.

    Returns:
        `BootstrapCI(mean, low, high)`.

    Example:

    >>> ci = bootstrap_ci(torch.tensor([0.0, 1.0] * 50))
    >>> ci.mean, ci.low < 0.5 < ci.high, 0.35 < ci.low, ci.high < 0.65
    (0.5, True, True, True)
    """
    values = _as_tensor(per_user_values).to(torch.float64).reshape(-1)
    if values.numel() == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    means = _bootstrap_means(values.cpu(), n_boot, seed)
    tail = (1.0 - level) / 2.0
    low, high = torch.quantile(means, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return BootstrapCI(float(values.mean()), low, high)


def paired_bootstrap_ci(a, b, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
    """Paired percentile bootstrap interval of `mean(a) - mean(b)` over the same users.

    Users are resampled jointly, so the interval reflects the per-user differences `a - b` (two models evaluated
    on the same users); an interval excluding 0 means a difference at the given level.

    Args:
        a, b (`torch.Tensor` or arrays of shape `(num_users,)`): per-user values of two systems, same user order.
        n_boot, seed, level: as in `bootstrap_ci`.

    Returns:
        `BootstrapCI(mean, low, high)` of the difference.

    Example:

    >>> ci = paired_bootstrap_ci(torch.tensor([1.0, 1.0, 0.0, 1.0] * 25), torch.tensor([0.0, 1.0, 0.0, 0.0] * 25))
    >>> ci.mean, ci.low > 0
    (0.5, True)
    """
    a = _as_tensor(a).to(torch.float64).reshape(-1)
    b = _as_tensor(b).to(torch.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users: {tuple(a.shape)} vs {tuple(b.shape)}")
    return bootstrap_ci(a - b, n_boot=n_boot, seed=seed, level=level)
