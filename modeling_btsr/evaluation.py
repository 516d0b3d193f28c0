"""Full-ranking evaluation of BT-SR / SASRec models (and of the most-popular baseline).

`evaluate_ranking` scores every evaluated user against the whole catalogue (items `1..num_items`, no sampled
negatives), excluding the items of the user's own context, and reports the protocol of `BT-SR.md` section 3:
HR, NDCG, MRR and coverage at each K, the same per popularity bucket, Steck's miscalibration, the mean
predictive entropy and the effective rank of the user embeddings.

Memory stays bounded whatever the catalogue size: users are scored in length-sorted batches of `batch_size`,
and each batch scores the catalogue in chunks of `item_chunk_size` items, keeping only running statistics per
user (the number of items scoring at or above the target, a merged top-K list and log-sum-exp partials of the
entropy). No `(num_users, num_items)` matrix is ever built.

Several processes (an `accelerate.Accelerator`) each score a contiguous shard of the users; the per-user results
are gathered before any metric is computed, so the numbers do not depend on the number of processes (coverage is
a set statistic over all users and cannot be averaged over shards).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .metrics import (
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
    popularity_buckets,
)
from .modeling_btsr import BTSRModel, deterministic_inference, exclude_seen_items_, left_pad_sequences

__all__ = [
    "evaluate_ranking",
    "most_popular_ranking",
    "ranking_metrics",
    "selectable_metrics",
    "BUCKET_NAMES",
    "DEFAULT_KS",
]

DEFAULT_KS = (1, 5, 10, 20, 50)
BUCKET_NAMES = ("head", "mid", "tail")


def _base_model(model, accelerator=None) -> BTSRModel:
    """The `BTSRModel` inside `model` (itself, a `BTSRForSequentialRecommendation`, or a DDP-wrapped one)."""
    if accelerator is not None and hasattr(accelerator, "unwrap_model"):
        model = accelerator.unwrap_model(model)
    while not isinstance(model, BTSRModel) and hasattr(model, "module"):  # DistributedDataParallel & co.
        model = model.module
    if isinstance(model, BTSRModel):
        return model
    base = getattr(model, "btsr", None)
    if isinstance(base, BTSRModel):
        return base
    raise TypeError(f"expected a BTSRModel or BTSRForSequentialRecommendation, got {type(model).__name__}")


def _check_inputs(contexts, targets, num_items: int) -> tuple[list[np.ndarray], np.ndarray]:
    contexts = [np.asarray(c, dtype=np.int64).reshape(-1) for c in contexts]
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(contexts) != len(targets):
        raise ValueError(f"{len(contexts)} contexts but {len(targets)} targets")
    if len(targets) == 0:
        raise ValueError("no users to evaluate")
    if targets.min() < 1 or targets.max() > num_items:
        raise ValueError(f"targets must be item indices in 1..{num_items}")
    for user, context in enumerate(contexts):
        if len(context) == 0:
            raise ValueError(f"user {user} has an empty context; every evaluated user needs at least one item")
        if context.min() < 1 or context.max() > num_items:
            raise ValueError(f"user {user}: context items must be item indices in 1..{num_items}")
    return contexts, targets


def _shard_bounds(n_users: int, num_processes: int, process_index: int) -> tuple[int, int]:
    """Contiguous shard of a process, `np.array_split` sizes (the first `n % p` shards get one more user)."""
    base, extra = divmod(n_users, num_processes)
    start = process_index * base + min(process_index, extra)
    return start, start + base + (process_index < extra)


def _gather_rows(tensor: torch.Tensor, accelerator, n_users: int) -> torch.Tensor:
    """Concatenates every process's shard of `tensor` (rows) in shard order.

    Shards differ in size by at most one row; each process pads its shard to the largest size so the collective
    sees equal shapes, and the padding is cut out again from the known shard sizes (no repeated users, unlike
    `gather_for_metrics` with uneven batches).
    """
    num_processes = accelerator.num_processes
    sizes = [_shard_bounds(n_users, num_processes, p) for p in range(num_processes)]
    sizes = [end - start for start, end in sizes]
    largest = max(sizes)
    padded = tensor.new_zeros((largest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = accelerator.gather(padded.contiguous())
    gathered = gathered.reshape(num_processes, largest, *tensor.shape[1:])
    return torch.cat([gathered[p, : sizes[p]] for p in range(num_processes)])


@torch.inference_mode()
def _score_shard(
    base: BTSRModel,
    contexts: list[np.ndarray],
    targets: np.ndarray,
    width: int,
    batch_size: int,
    item_chunk_size: int,
    exclude_context: bool,
    with_entropy: bool,
    context_len: int | None = None,
) -> dict[str, torch.Tensor]:
    """Scores users against the catalogue; returns per-user `rank`, `topk`, `entropy`, `embeddings` (device)."""
    device = base.item_embeddings.weight.device
    max_len = min(base.config.max_position_embeddings, context_len or base.config.max_position_embeddings)
    items = base.item_embedding_matrix()
    num_items = items.shape[0]
    n = len(contexts)
    ranks = torch.empty(n, dtype=torch.long, device=device)
    topk = torch.zeros(n, width, dtype=torch.long, device=device)
    entropy = torch.full((n,), float("nan"), dtype=torch.float64, device=device)
    embeddings = torch.empty(n, base.config.hidden_size, dtype=torch.float32, device=device)
    # Length-sorted batches keep padding (and wasted attention) minimal; results are written back by row.
    order = np.argsort([min(len(c), max_len) for c in contexts], kind="stable")
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        batch = [contexts[i] for i in rows]
        ids, mask = left_pad_sequences(batch, max_len)
        users = base(
            ids.to(device), mask.to(device), user_embeddings_only=True
        ).user_embeddings.float()  # (batch, hidden)
        target = torch.as_tensor(targets[rows], device=device)  # item indices 1..num_items
        target_column = target - 1
        # The target's score, computed once; every chunk counts the other items scoring at or above it.
        target_score = (users * items[target_column].float()).sum(dim=1)
        b = len(rows)
        if exclude_context:
            # The whole context, not the encoder's window: `exclude_seen_items_` is recommend()'s definition too.
            seen, _ = left_pad_sequences(batch)
            seen = seen.to(device)
            target_seen = (seen == target[:, None]).any(dim=1)
        at_or_above = torch.zeros(b, dtype=torch.long, device=device)
        top_values = torch.full((b, width), float("-inf"), device=device)
        top_columns = torch.zeros((b, width), dtype=torch.long, device=device)
        partials = None
        for c0 in range(0, num_items, item_chunk_size):
            chunk = items[c0 : c0 + item_chunk_size].float()
            size = chunk.shape[0]
            scores = users @ chunk.T  # (batch, chunk)
            if exclude_context:
                exclude_seen_items_(scores, seen, first_item=c0 + 1)
            # count_nonzero: `bool.sum` first copies the mask to int64 (5x slower here, and 8 bytes a score).
            at_or_above += torch.count_nonzero(scores >= target_score[:, None], dim=1)
            # Pessimistic ties: every *other* item at or above the target counts; the target itself is taken
            # back out here, judged on its score in this very tensor, so it never counts against itself.
            local_target = target_column - c0
            in_chunk = (local_target >= 0) & (local_target < size)
            own = scores.gather(1, local_target.clamp(0, size - 1)[:, None])[:, 0]
            at_or_above -= (in_chunk & (own >= target_score)).long()
            chunk_values, chunk_columns = scores.topk(min(width, size), dim=1)
            if c0 == 0 and size >= width:
                top_values, top_columns = chunk_values, chunk_columns
            else:  # merge with the running list: the best `width` of (running, this chunk's best)
                merged_values = torch.cat([top_values, chunk_values], dim=1)
                merged_columns = torch.cat([top_columns, chunk_columns + c0], dim=1)
                top_values, pick = merged_values.topk(width, dim=1)
                top_columns = merged_columns.gather(1, pick)
            if with_entropy:
                chunk_partials = entropy_partials(scores)
                partials = chunk_partials if partials is None else merge_entropy_partials(partials, chunk_partials)
        rank = at_or_above + 1
        if exclude_context:
            # A target inside the user's own context was excluded like every context item: a miss, not a rank.
            rank = torch.where(target_seen, torch.full_like(rank, num_items + 1), rank)
        index = torch.as_tensor(rows, device=device)
        ranks[index] = rank
        # Slots holding an excluded item (fewer candidates than K) are empty: item index 0.
        topk[index] = torch.where(torch.isneginf(top_values), torch.zeros_like(top_columns), top_columns + 1)
        embeddings[index] = users
        if with_entropy:
            entropy[index] = entropy_from_partials(partials)
    return {"rank": ranks, "topk": topk, "entropy": entropy, "embeddings": embeddings}


def _context_bucket_counts(contexts: list[np.ndarray], item_buckets: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """(num_users, n_buckets) counts of each user's context items per popularity bucket."""
    lengths = np.array([len(c) for c in contexts])
    flat = torch.as_tensor(np.concatenate(contexts)) if len(contexts) else torch.zeros(0, dtype=torch.long)
    users = torch.repeat_interleave(torch.arange(len(contexts)), torch.as_tensor(lengths))
    cells = users * n_buckets + item_buckets[flat - 1]
    return torch.bincount(cells, minlength=len(contexts) * n_buckets).view(len(contexts), n_buckets).double()


def selectable_metrics(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """The metrics every evaluation reports over all its users, without prefix: what a run can select on.

    >>> selectable_metrics((10,))
    ['hr@10', 'ndcg@10', 'mrr@10', 'coverage@10']
    """
    return [f"{name}@{k}" for k in ks for name in ("hr", "ndcg", "mrr", "coverage")]


def ranking_metrics(
    ranks: torch.Tensor,
    topk_items: torch.Tensor,
    num_items: int,
    targets,
    contexts=None,
    item_user_counts=None,
    ks: Sequence[int] = DEFAULT_KS,
    prefix: str = "eval",
    calibration_k: int | None = 10,
    entropy: torch.Tensor | None = None,
    embeddings: torch.Tensor | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics from per-user ranks and top-K lists of *all* evaluated users (shared by both rankers).

    Args:
        ranks (`torch.LongTensor` of shape `(num_users,)`): 1-based target ranks.
        topk_items (`torch.LongTensor` of shape `(num_users, K_max)`): best-first item indices, `0` = empty slot.
        num_items: catalogue size.
        targets (`(num_users,)`): target item indices (for the popularity bucket of each user).
        contexts: the users' contexts (item indices), for the history mix of the miscalibration.
        item_user_counts (`(num_items,)`, *optional*): distinct training users per item; enables the bucket
            metrics and the miscalibration.
        ks: cut-offs.
        prefix: key prefix.
        calibration_k: list length of the miscalibration (`None` to skip it).
        entropy (`(num_users,)`, *optional*): predictive entropy per user.
        embeddings (`(num_users, hidden)`, *optional*): user embeddings for the effective rank.

    Returns:
        `(metrics, per_user)`: metric name -> float, and per-user numpy arrays: `rank`, `hr@K`, `ndcg@K`,
        `mrr@K` of shape `(num_users,)`, `topk` of shape `(num_users, K_max)`, plus `bucket` when counts are given.
    """
    ranks = ranks.cpu()
    topk_items = topk_items.cpu()
    metrics: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {"rank": ranks.numpy(), "topk": topk_items.numpy()}
    for k in ks:
        hr, ndcg, mrr = hit_rate_at_k(ranks, k), ndcg_at_k(ranks, k), mrr_at_k(ranks, k)
        metrics[f"{prefix}_hr@{k}"] = hr.double().mean().item()
        metrics[f"{prefix}_ndcg@{k}"] = ndcg.double().mean().item()
        metrics[f"{prefix}_mrr@{k}"] = mrr.double().mean().item()
        metrics[f"{prefix}_coverage@{k}"] = coverage_at_k(topk_items[:, :k], num_items)
        per_user[f"hr@{k}"], per_user[f"ndcg@{k}"], per_user[f"mrr@{k}"] = hr.numpy(), ndcg.numpy(), mrr.numpy()
    if item_user_counts is not None:
        counts = torch.as_tensor(np.asarray(item_user_counts)).reshape(-1)
        if counts.numel() != num_items:
            raise ValueError(f"item_user_counts has {counts.numel()} entries, the catalogue {num_items} items")
        item_buckets = popularity_buckets(counts, n_buckets=len(BUCKET_NAMES))
        user_bucket = item_buckets[torch.as_tensor(np.asarray(targets, dtype=np.int64)) - 1]
        per_user["bucket"] = user_bucket.numpy()
        for b, name in enumerate(BUCKET_NAMES):
            members = user_bucket == b
            metrics[f"{prefix}_num_users_{name}"] = float(members.sum())
            for k in ks:
                if members.any():
                    metrics[f"{prefix}_hr@{k}_{name}"] = hit_rate_at_k(ranks[members], k).double().mean().item()
                    metrics[f"{prefix}_ndcg@{k}_{name}"] = ndcg_at_k(ranks[members], k).double().mean().item()
                else:  # no evaluated target in this bucket: undefined, not zero
                    metrics[f"{prefix}_hr@{k}_{name}"] = metrics[f"{prefix}_ndcg@{k}_{name}"] = float("nan")
                metrics[f"{prefix}_coverage@{k}_{name}"] = coverage_at_k(topk_items[members, :k], num_items)
        if calibration_k is not None and contexts is not None:
            history = _context_bucket_counts(contexts, item_buckets, len(BUCKET_NAMES))
            listed = bucket_mix(topk_items[:, :calibration_k], item_buckets, len(BUCKET_NAMES))
            # Users whose context has no mass (none here: contexts are non-empty) would be nan: nanmean skips them.
            per_user_kl = miscalibration(history, listed)
            metrics[f"{prefix}_miscalibration@{calibration_k}"] = per_user_kl.nanmean().item()
    if entropy is not None:
        metrics[f"{prefix}_entropy"] = entropy.cpu().double().nanmean().item()
    if embeddings is not None:
        metrics[f"{prefix}_effective_rank"] = effective_rank(embeddings.cpu())
    metrics[f"{prefix}_num_users"] = float(ranks.shape[0])
    return metrics, per_user


def evaluate_ranking(
    model,
    contexts: Sequence[np.ndarray | Sequence[int]],
    targets,
    item_user_counts=None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
    item_chunk_size: int = 65536,
    prefix: str = "eval",
    accelerator=None,
    exclude_context: bool = True,
    with_calibration: bool = True,
    calibration_k: int = 10,
    return_per_user: bool = False,
    context_len: int | None = None,
):
    """Full-ranking evaluation of next-item prediction: one target per user, the whole catalogue as candidates.

    Scores are `user_embedding @ item_embeddings.T` over items `1..num_items`; the items of each user's context
    are excluded (their score is `-inf`), and a target that is itself in the context counts as a miss (it was
    excluded like any seen item; excluding "the context except the target" would leak the target). Ranks use the
    pessimistic tie rule of `metrics.ranks_of_targets`. The model runs without dropout under
    `torch.inference_mode()` and `deterministic_inference()` (its train/eval mode is left as it is), on its own device.

    Args:
        model (`BTSRModel` or `BTSRForSequentialRecommendation`, possibly wrapped by accelerate/DDP).
        contexts: per user, the item indices (`1..num_items`) seen before the target, oldest first; the model
            reads the last `max_position_embeddings` of them, the exclusion uses all of them.
        targets (`(num_users,)`): the target item index of each user.
        item_user_counts (`np.ndarray` of shape `(num_items,)`, *optional*): distinct training users per item
            (entry `j` = item `j + 1`); enables the popularity-bucket metrics and the miscalibration.
        ks: cut-offs K.
        batch_size: users encoded and scored at once.
        item_chunk_size: items scored at once; peak memory is about `batch_size * item_chunk_size` floats
            (a few times over for temporaries), independent of the catalogue size.
        prefix: metric key prefix (`"eval"`, `"test"`, ...).
        accelerator (`accelerate.Accelerator`, *optional*): several processes each score a contiguous shard of
            the users; anything with `num_processes`, `process_index` and a row-concatenating `gather(tensor)`
            works. Every process must call this function (it gathers) and returns the same metrics.
        exclude_context: exclude the context items from the candidates (the protocol; `False` for ablations).
        with_calibration: also compute the mean predictive entropy and the miscalibration (costs one
            exponential per score).
        calibration_k: list length of the miscalibration.
        return_per_user: also return per-user arrays in the original user order.
        context_len (`int`, *optional*): the model reads only the last `context_len` items of each context (default:
            its `max_position_embeddings`), as under a protocol whose test contexts are short; the exclusion still
            uses the whole context, so only what the encoder is told changes.

    Returns:
        `dict[str, float]` with, for every K: `{prefix}_hr@K`, `{prefix}_ndcg@K`, `{prefix}_mrr@K`,
        `{prefix}_coverage@K`; with `item_user_counts`: `{prefix}_hr@K_{bucket}`, `{prefix}_ndcg@K_{bucket}`,
        `{prefix}_coverage@K_{bucket}` and `{prefix}_num_users_{bucket}` for bucket in head/mid/tail (`nan` HR
        and NDCG for a bucket without users), and `{prefix}_miscalibration@{calibration_k}` (with
        `with_calibration`); `{prefix}_entropy` (with `with_calibration`), `{prefix}_effective_rank` and
        `{prefix}_num_users`. With `return_per_user`, a pair `(metrics, per_user)` where `per_user` maps
        `rank`, `hr@K`, `ndcg@K`, `mrr@K` (and `bucket`, the user's popularity bucket) to `np.ndarray`s of
        shape `(num_users,)` and `topk` to the `(num_users, K_max)` lists (`0` = empty slot), in the original
        user order.
    """
    base = _base_model(model, accelerator).gathered()  # under FSDP, a copy that runs no collective per batch
    num_items = base.config.num_items
    contexts, targets = _check_inputs(contexts, targets, num_items)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    if item_chunk_size < 1 or batch_size < 1:
        raise ValueError("batch_size and item_chunk_size must be positive")
    if context_len is not None and context_len < 1:
        raise ValueError(f"context_len must be >= 1, got {context_len}")
    want_calibration = with_calibration and item_user_counts is not None
    width = min(max(ks + ((calibration_k,) if want_calibration else ())), num_items)
    n_users = len(targets)
    distributed = accelerator is not None and accelerator.num_processes > 1
    start, end = (0, n_users)
    if distributed:
        start, end = _shard_bounds(n_users, accelerator.num_processes, accelerator.process_index)

    with deterministic_inference():  # dropout off without touching the module's mode (another thread may train it)
        shard = _score_shard(
            base,
            contexts[start:end],
            targets[start:end],
            width,
            batch_size,
            item_chunk_size,
            exclude_context,
            with_calibration,
            context_len,
        )
    if distributed:
        shard = {name: _gather_rows(value, accelerator, n_users) for name, value in shard.items()}
    metrics, per_user = ranking_metrics(
        shard["rank"],
        shard["topk"],
        num_items,
        targets,
        contexts=contexts,
        item_user_counts=item_user_counts,
        ks=ks,
        prefix=prefix,
        calibration_k=calibration_k if want_calibration else None,
        entropy=shard["entropy"] if with_calibration else None,
        embeddings=shard["embeddings"],
    )
    return (metrics, per_user) if return_per_user else metrics


def most_popular_ranking(
    contexts: Sequence[np.ndarray | Sequence[int]],
    targets,
    item_counts,
    ks: Sequence[int] = DEFAULT_KS,
    prefix: str = "test_mostpop",
    exclude_context: bool = True,
    item_user_counts=None,
    calibration_k: int = 10,
    return_per_user: bool = False,
):
    """The most-popular baseline under the same protocol: every user gets the catalogue sorted by training count.

    The ranking is the total order (count descending, item index ascending), with the same exclusions as
    `evaluate_ranking`: a user's context items are skipped and a target inside the context is a miss. With
    integer counts many items tie; breaking ties by index (rather than pessimistically) keeps each user's rank
    consistent with its top-K list.

    Args:
        contexts, targets: as in `evaluate_ranking`.
        item_counts (`(num_items,)`): training interaction counts (entry `j` = item `j + 1`).
        ks, prefix, exclude_context, calibration_k, return_per_user: as in `evaluate_ranking`.
        item_user_counts (`(num_items,)`, *optional*): distinct training users per item, for the bucket metrics
            and the miscalibration.

    Returns:
        the metrics of `evaluate_ranking` except `entropy` and `effective_rank` (no embeddings), under `prefix`;
        with `return_per_user`, also the per-user arrays.

    Example: items 1..4 with counts [1, 9, 5, 3]: the order is 2, 3, 4, 1.

    >>> metrics = most_popular_ranking([[2], [1]], [3, 4], [1, 9, 5, 3], ks=(1, 2), prefix="mp")
    >>> metrics["mp_hr@1"], metrics["mp_hr@2"], metrics["mp_coverage@2"]  # ranks 1 (2 is seen) and 3
    (0.5, 0.5, 0.75)
    """
    counts = torch.as_tensor(np.asarray(item_counts, dtype=np.float64)).reshape(-1)
    num_items = counts.numel()
    contexts, targets = _check_inputs(contexts, targets, num_items)
    ks = tuple(int(k) for k in ks)
    n_users = len(targets)
    want_calibration = item_user_counts is not None
    width = min(max(ks + ((calibration_k,) if want_calibration else ())), num_items)

    order = torch.sort(-counts, stable=True).indices  # item columns, best first
    position = torch.empty(num_items, dtype=torch.long)
    position[order] = torch.arange(num_items)
    target_position = position[torch.as_tensor(targets) - 1]
    if exclude_context:
        # Distinct (user, item) pairs of the contexts: a repeated item is excluded once.
        lengths = torch.as_tensor([len(c) for c in contexts])
        users = torch.repeat_interleave(torch.arange(n_users), lengths)
        pairs = torch.unique(users * (num_items + 1) + torch.as_tensor(np.concatenate(contexts)))
        pair_users, pair_items = pairs // (num_items + 1), pairs % (num_items + 1)
        pair_position = position[pair_items - 1]
        ahead = torch.bincount(pair_users[pair_position < target_position[pair_users]], minlength=n_users)
        ranks = target_position + 1 - ahead
        target_seen = torch.zeros(n_users, dtype=torch.bool)
        target_seen[pair_users[pair_items == torch.as_tensor(targets)[pair_users]]] = True
        ranks = torch.where(target_seen, torch.full_like(ranks, num_items + 1), ranks)
        # Each list is the first `width` unseen items of the order; at most `distinct context size` are skipped.
        longest = int(torch.bincount(pair_users, minlength=n_users).max())
        span = min(num_items, width + longest)
        blocked = torch.zeros(n_users, span, dtype=torch.bool)
        near = pair_position < span
        blocked[pair_users[near], pair_position[near]] = True
        free = ~blocked
        keep = free & (free.cumsum(dim=1) <= width)
        # Kept columns first, in order: sort key = column, pushed past `span` when not kept.
        columns = torch.arange(span).expand(n_users, span)
        key = torch.where(keep, columns, columns + span)
        first = key.argsort(dim=1)[:, :width]
        topk = torch.where(keep.gather(1, first), order[:span][first] + 1, torch.zeros_like(first))
    else:
        ranks = target_position + 1
        topk = (order[:width] + 1).expand(n_users, width).clone()
    metrics, per_user = ranking_metrics(
        ranks,
        topk,
        num_items,
        targets,
        contexts=contexts,
        item_user_counts=item_user_counts,
        ks=ks,
        prefix=prefix,
        calibration_k=calibration_k if want_calibration else None,
    )
    return (metrics, per_user) if return_per_user else metrics
