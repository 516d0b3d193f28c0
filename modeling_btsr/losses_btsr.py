"""Losses of BT-SR as plain functions: Barlow Twins, InfoNCE, full cross-entropy, Scalable Cross-Entropy and sampled
BCE.

Self-contained (torch only) because it is copied to the Hub beside `modeling_btsr.py` for `trust_remote_code`.
Item embedding matrices passed here are the item rows only, `(num_items, d)`: row `j` is item index `j + 1`, so the
padding row never enters a softmax. Targets are item indices in `1..num_items`.
"""

import math

import torch
import torch.nn.functional as F

__all__ = [
    "barlow_twins_loss",
    "infonce_loss",
    "negative_view_loss",
    "cross_entropy_loss",
    "scalable_cross_entropy_loss",
    "bucket_cross_entropy",
    "sampled_bce_loss",
    "sampled_bpr_loss",
    "sample_negatives",
    "gather_with_grad",
    "sce_buckets",
    "chunked_topk",
]


def _distributed_world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenates `tensor` (batch, ...) over all processes along dim 0, keeping the gradient.

    The functional collective's backward sums each rank's use of every row (a reduce-scatter), so with DDP's
    gradient averaging the update equals the one of a single process holding the whole batch; it replaces
    `torch.distributed.nn.functional.all_gather`, deprecated in torch 2.13. Equal local batch sizes are required
    (train with `dataloader_drop_last=True`). Identity without `torch.distributed`.
    """
    if _distributed_world_size() == 1:
        return tensor
    from torch.distributed import _functional_collectives as collectives

    return collectives.all_gather_single(tensor.contiguous(), 0, torch.distributed.group.WORLD)


def _standardise(z: torch.Tensor) -> torch.Tensor:
    """Z-scores each column of `z` (batch, d) with the unbiased std, finite for a batch of 1 or a constant column.

    The variance is clamped from below at the dtype's smallest normal number before the square root (never an
    epsilon added): the value is the reference formula's wherever that is finite, and a zero column stays zero
    with a zero gradient instead of 0/0.
    """
    centred = z - z.mean(dim=0, keepdim=True)
    variance = centred.pow(2).sum(dim=0, keepdim=True) / max(z.shape[0] - 1, 1)
    return centred / variance.clamp_min(torch.finfo(z.dtype).tiny).sqrt()


def barlow_twins_loss(z_a: torch.Tensor, z_b: torch.Tensor, bt_lambda: float = 0.05) -> torch.Tensor:
    r"""Barlow Twins redundancy-reduction loss between two views of a batch, as BT-SR defines it.

    With `a`, `b` the rows of `z_a`, `z_b` (batch B, d) L2-normalised, then each feature standardised over the batch
    (unbiased std) to `ã`, `b̃`, and the cross-correlation `C = ã^T b̃ / B` (d, d):

    .. math::
        L_{BT} = \frac{1}{d} \sum_k (1 - C_{kk})^2 + \lambda \frac{1}{d} \sum_{k \ne l} C_{kl}^2

    Under `torch.distributed` the statistics are those of the global batch (autograd-aware gather), so two
    processes with B/2 rows each give the loss and the update of one process with B rows. Half-precision inputs are
    computed in float32; float64 stays float64.

    Args:
        z_a (`torch.Tensor` of shape `(batch, d)`): embeddings of the first view.
        z_b (`torch.Tensor` of shape `(batch, d)`): embeddings of the second view, row-aligned with `z_a`.
        bt_lambda (`float`): weight of the off-diagonal term.

    Returns:
        `torch.Tensor`: scalar loss.

    Example:

    >>> z = torch.eye(4, dtype=torch.float64)
    >>> # identical decorrelated views; the unbiased std makes C_kk = (B - 1) / B = 3/4, so (1/4)^2 per feature
    >>> float(barlow_twins_loss(z, z, bt_lambda=0.0))
    0.0625
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(
            f"barlow_twins_loss needs two (batch, d) tensors of one shape, got {z_a.shape} and {z_b.shape}"
        )
    if z_a.dtype in (torch.float16, torch.bfloat16):
        z_a, z_b = z_a.float(), z_b.float()
    # Batch statistics in half precision lose the small correlations the loss is about: autocast off.
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        a = _standardise(F.normalize(gather_with_grad(z_a), dim=1))
        b = _standardise(F.normalize(gather_with_grad(z_b), dim=1))
        batch, dim = a.shape
        correlation = a.T @ b / batch
    diagonal = torch.diagonal(correlation)
    on_diagonal = (1.0 - diagonal).pow(2).sum()
    off_diagonal = correlation.pow(2).sum() - diagonal.pow(2).sum()
    return (on_diagonal + bt_lambda * off_diagonal) / dim


def infonce_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 1.0, similarity: str = "dot"
) -> torch.Tensor:
    r"""InfoNCE (NT-Xent) with in-batch negatives between two views of a batch, as in CL4SRec and DuoRec.

    With `z = [z_a; z_b]` (2B, d), `s_ij = sim(z_i, z_j) / tau` over the 2B x 2B pairs, where `sim` is the dot
    product (CL4SRec, DuoRec) or the cosine, each row `i` has its other view `p(i) = (i + B) mod 2B` as the positive
    and the other 2B - 2 rows of both views as negatives:

    .. math::
        L = \frac{1}{2B} \sum_{i=1}^{2B} \Big( -s_{i, p(i)} + \log \sum_{j \ne i} e^{s_{ij}} \Big)

    Under `torch.distributed` the negatives are those of the global batch (autograd-aware gather), so two processes
    with B/2 rows each give the loss and the update of one process with B rows. Half-precision inputs are computed
    in float32; float64 stays float64.

    Args:
        z_a (`torch.Tensor` of shape `(batch, d)`): embeddings of the first view.
        z_b (`torch.Tensor` of shape `(batch, d)`): embeddings of the second view, row-aligned with `z_a`.
        temperature (`float`): `tau`.
        similarity (`str`): `"dot"` or `"cosine"`.

    Returns:
        `torch.Tensor`: scalar loss (a mean over the 2B rows).

    Example:

    >>> z = torch.eye(2, dtype=torch.float64)
    >>> # each row: positive logit 1, two negatives at 0, so the loss is log(e + 2) - 1
    >>> round(float(infonce_loss(z, z)), 6), round(math.log(math.e + 2) - 1, 6)
    (0.551445, 0.551445)
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"infonce_loss needs two (batch, d) tensors of one shape, got {z_a.shape} and {z_b.shape}")
    if similarity not in ("dot", "cosine"):
        raise ValueError(f"infonce_loss: similarity must be 'dot' or 'cosine', got {similarity!r}")
    if z_a.dtype in (torch.float16, torch.bfloat16):
        z_a, z_b = z_a.float(), z_b.float()
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        z = torch.cat([gather_with_grad(z_a), gather_with_grad(z_b)], dim=0)
        if similarity == "cosine":
            z = F.normalize(z, dim=1)
        n = z.shape[0]
        logits = (z @ z.T / temperature).masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
        targets = torch.arange(n, device=z.device).add(n // 2).remainder(n)
        return F.cross_entropy(logits, targets)


def negative_view_loss(
    z_a: torch.Tensor, z_b: torch.Tensor, z_neg: torch.Tensor, temperature: float = 0.1, similarity: str = "dot"
) -> torch.Tensor:
    r"""EC4SRec's loss on its negative views (the authors' code, demoleiwang/EC4SRec, `supcon_fake`).

    With `z = [z_a; z_b; z_neg]` (3B, d) and `s_ij = z_i . z_j / tau` (the cosine over `tau` with `similarity
    "cosine"`, a departure from the authors' inner product that bounds the logits), each negative view `i` (the
    last B rows) takes the other negative views as its positives, against every other view of the batch, positive
    views included:

    .. math::
        L = -\frac{1}{B} \sum_{i \in neg} \frac{1}{B - 1} \sum_{j \in neg, j \ne i}
            \Big( s_{ij} - \log \sum_{k \ne i} e^{s_{ik}} \Big)

    so the negative views, whose important items are destroyed, gather among themselves, away from the positive
    views (the authors' code excludes `k = i` with a logit of -5e4; here it is left out exactly). Under
    `torch.distributed` the views are those of the global batch, as in :func:`infonce_loss`.

    Args:
        z_a, z_b (`torch.Tensor` of shape `(batch, d)`): the two positive views' embeddings.
        z_neg (`torch.Tensor` of shape `(batch, d)`): the negative views' embeddings; `batch >= 2`.
        temperature (`float`): `tau` (EC4SRec: 0.1).
        similarity (`str`): `"dot"` (EC4SRec) or `"cosine"`.

    Returns:
        `torch.Tensor`: scalar loss (a mean over the B negative views).

    Example:

    >>> z = torch.zeros(2, 2, dtype=torch.float64)
    >>> # all logits equal: each negative view's one positive among the 5 other views costs log 5
    >>> round(float(negative_view_loss(z, z, z)), 6), round(math.log(5), 6)
    (1.609438, 1.609438)
    """
    if not (z_a.shape == z_b.shape == z_neg.shape) or z_a.dim() != 2:
        raise ValueError(
            f"negative_view_loss needs three (batch, d) tensors of one shape, got {z_a.shape}, {z_b.shape}, "
            f"{z_neg.shape}"
        )
    if similarity not in ("dot", "cosine"):
        raise ValueError(f"negative_view_loss: similarity must be 'dot' or 'cosine', got {similarity!r}")
    if z_a.dtype in (torch.float16, torch.bfloat16):
        z_a, z_b, z_neg = z_a.float(), z_b.float(), z_neg.float()
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        z = torch.cat([gather_with_grad(z_a), gather_with_grad(z_b), gather_with_grad(z_neg)], dim=0)
        if similarity == "cosine":
            z = F.normalize(z, dim=1)
        n = z.shape[0] // 3
        if n < 2:
            raise ValueError(
                "negative_view_loss needs a batch of at least 2 (a negative view's positives are the others)"
            )
        rows = torch.arange(2 * n, 3 * n, device=z.device)
        logits = z[2 * n :] @ z.T / temperature
        logits = logits.index_put(
            (torch.arange(n, device=z.device), rows), torch.tensor(float("-inf"), device=z.device, dtype=logits.dtype)
        )
        log_prob = torch.log_softmax(logits, dim=1)[:, 2 * n :]
        others = ~torch.eye(n, dtype=torch.bool, device=z.device)
        return -(log_prob.masked_fill(~others, 0.0).sum(dim=1) / (n - 1)).mean()


def cross_entropy_loss(
    hidden: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Full softmax cross-entropy over the catalogue, summed over positions.

    .. math::
        L = \sum_n \Big( \log \sum_{i=1}^{I} e^{h_n \cdot E_i} - h_n \cdot E_{y_n} \Big)

    Args:
        hidden (`torch.Tensor` of shape `(n_positions, d)`): hidden states of labelled positions.
        targets (`torch.Tensor` of shape `(n_positions,)`): item indices in `1..num_items`.
        item_embeddings (`torch.Tensor` of shape `(num_items, d)`): item rows only (no padding row).
        valid (`torch.BoolTensor` of shape `(n_positions,)`, *optional*): the positions that count (the others'
            targets are ignored). Given, the loss is one product over every position, with no shape that depends on
            the values (what `torch.compile` needs), instead of the chunked pass over the counted positions.

    Returns:
        `torch.Tensor`: the sum over positions (divide by the number of positions for the mean).
    """
    if valid is not None:
        logits = hidden @ item_embeddings.T
        ignored = torch.full_like(targets, -100)  # F.cross_entropy's ignore_index
        return F.cross_entropy(
            logits.float() if logits.dtype == torch.float16 else logits,
            torch.where(valid, targets - 1, ignored),
            reduction="sum",
        )
    if hidden.shape[0] == 0 or not (hidden.dtype == item_embeddings.dtype and hidden.dtype.is_floating_point):
        logits = hidden @ item_embeddings.T
        return F.cross_entropy(
            logits.float() if logits.dtype == torch.float16 else logits, targets - 1, reduction="sum"
        )
    # Under no_grad, `needs_input_grad` still reports the inputs' flags: tell the Function whether to form gradients.
    with_grad = torch.is_grad_enabled() and (hidden.requires_grad or item_embeddings.requires_grad)
    return _ChunkedCrossEntropy.apply(hidden, targets, item_embeddings, with_grad)


# Elements of one chunk's (rows, num_items) logits: 1M floats (4 MB) keeps the softmax passes and the three
# products in cache-sized pieces on CPU instead of streaming several (n_positions, num_items) temporaries through
# memory (measured on ML-1M: the full form spent more time in log_softmax, its backward and fills than in matmuls).
_CE_CHUNK_ELEMENTS = 1 << 20
_CE_MIN_CHUNK_ROWS = 64


class _ChunkedCrossEntropy(torch.autograd.Function):
    r"""`cross_entropy_loss` computed in chunks of positions, with its gradient formed in the same pass.

    For a chunk with logits `L = H W^T`, row maxima `m`, `U = exp(L - m)` and row sums `S`, the loss of row `n` is
    `m_n + log S_n - L_{n, y_n}` and `dloss/dL = U / S - onehot(y)`, so
    `dH = (U W) / S - W_y` and `dW = U^T (H / S) - \sum_n onehot(y_n) h_n`: the softmax normalisation and the
    one-hot term are applied to `(rows, d)` tensors, never to the `(rows, I)` block. Both gradients are kept (they
    are `(N, d)` and `(I, d)`) and backward only scales them by the incoming scalar (the loss is a sum, so its
    gradient is linear in it). No `(N, I)` tensor is materialised; the extra memory is one `(rows, I)` buffer.
    The result is the full-softmax CE and its gradient up to float summation order.

    Under autocast (e.g. `--bf16`) the three products run in the autocast dtype, as autograd runs the full form's
    product and its backward there; the softmax, the sums and both gradients' accumulation stay in float32.
    """

    @staticmethod
    def forward(ctx, hidden, targets, item_embeddings, with_grad):
        n_positions, n_items = hidden.shape[0], item_embeddings.shape[0]
        need_hidden = with_grad and ctx.needs_input_grad[0]
        need_items = with_grad and ctx.needs_input_grad[2]
        rows = int(min(n_positions, max(_CE_MIN_CHUNK_ROWS, _CE_CHUNK_ELEMENTS // max(n_items, 1))))
        device = hidden.device
        dtype = torch.promote_types(hidden.dtype, torch.float32)  # half precision is computed in float32
        index = (targets - 1).unsqueeze(1)
        items_t = item_embeddings.T
        items_full = item_embeddings.to(dtype)
        # Under autocast the gradient products too run in its dtype, as the full form's backward would (CPUs with
        # bf16 dot-product instructions run them far faster than float32 ones).
        low = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        items_low = item_embeddings.to(low) if low is not None else None
        # Plain float32/float64, and autocast: products written into reused buffers, one cast of the items (fresh
        # (rows, I) blocks each chunk, ~136 a batch on ML-1M, fragment the CPU allocator's heap under autocast).
        reuse = hidden.dtype == item_embeddings.dtype == dtype and low is None
        buffer = torch.empty(rows, n_items, device=device, dtype=dtype) if reuse or low is not None else None
        buffer_low = torch.empty(rows, n_items, device=device, dtype=low) if low is not None else None
        total = torch.zeros((), device=device, dtype=dtype)
        grad_hidden = torch.empty(hidden.shape, device=device, dtype=dtype) if need_hidden else None
        grad_items = torch.zeros_like(item_embeddings, dtype=dtype) if need_items else None
        for start in range(0, n_positions, rows):
            chunk = hidden[start : start + rows]
            chunk_index = index[start : start + rows]
            size = chunk.shape[0]
            if reuse:
                logits = torch.mm(chunk, items_t, out=buffer[:size])
            elif low is not None:  # autocast's product (both sides in its dtype), then float32
                with torch.autocast(device_type=device.type, enabled=False):
                    product = torch.mm(chunk.to(low), items_low.T, out=buffer_low[:size])
                    logits = buffer[:size].copy_(product)
            else:  # half-precision inputs without autocast: their product, then float32
                logits = (chunk @ items_t).to(dtype)
            shifted = logits.sub_(logits.amax(dim=1, keepdim=True))  # L - m, in place
            target_shifted = shifted.gather(1, chunk_index)
            unnormalised = shifted.exp_()  # U, in place
            sums = unnormalised.sum(dim=1, keepdim=True)
            total += (sums.log() - target_shifted).sum()
            if need_hidden or need_items:
                with torch.autocast(device_type=device.type, enabled=False):
                    inverse = sums.reciprocal()
                    chunk_full = chunk.to(dtype)
                    weights = unnormalised if items_low is None else buffer_low[:size].copy_(unnormalised)
                    if need_hidden:
                        out = grad_hidden[start : start + size]
                        if items_low is None:
                            torch.mm(unnormalised, items_full, out=out)
                        else:
                            out.copy_(torch.mm(weights, items_low))
                        out.mul_(inverse).sub_(items_full[chunk_index.squeeze(1)])
                    if need_items:
                        if items_low is None:
                            grad_items.addmm_(unnormalised.T, chunk_full * inverse)
                        else:
                            grad_items.add_(torch.mm(weights.T, (chunk_full * inverse).to(low)))
                        grad_items.index_add_(0, chunk_index.squeeze(1), chunk_full, alpha=-1)
            del logits, shifted, unnormalised
        ctx.hidden_dtype, ctx.items_dtype = hidden.dtype, item_embeddings.dtype
        ctx.save_for_backward(grad_hidden, grad_items)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_hidden, grad_items = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = (grad_hidden * grad_output.to(grad_hidden.dtype)).to(ctx.hidden_dtype)
        if grad_items is not None:
            grad_items = (grad_items * grad_output.to(grad_items.dtype)).to(ctx.items_dtype)
        return grad_hidden, None, grad_items, None


def chunked_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk_size: int = 65536) -> torch.Tensor:
    """Indices of the `k` keys with the largest `queries @ keys.T`, scoring at most `chunk_size` keys at a time.

    Keeps memory at `(n_queries, chunk_size + k)` scores however many keys (items) there are.
    """
    if keys.shape[0] <= chunk_size:
        return (queries @ keys.T).topk(k, dim=1).indices
    best_scores = best_index = None
    for start in range(0, keys.shape[0], chunk_size):
        scores = queries @ keys[start : start + chunk_size].T
        index = torch.arange(start, start + scores.shape[1], device=keys.device).expand_as(scores)
        if best_scores is not None:
            scores = torch.cat([best_scores, scores], dim=1)
            index = torch.cat([best_index, index], dim=1)
        best_scores, position = scores.topk(min(k, scores.shape[1]), dim=1)
        best_index = index.gather(1, position)
    return best_index


def scalable_cross_entropy_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embeddings: torch.Tensor,
    n_buckets: int,
    bucket_size_x: int,
    bucket_size_y: int,
    mix_x: bool = False,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scalable Cross-Entropy (Mezentsev et al., RecSys 2024), as used by BT-SR.

    With `X` (N, d) the hidden states, `W` (I, d) the item embeddings, and bucket centres `Ω` (n_b, d) drawn from
    N(0, d^{-1/2}) (or, with `mix_x`, Gaussian mixtures `G X` of the batch's own rows), bucket `c` takes the
    `b_x` positions with the largest `Ω_c X^T` and the `b_y` items with the largest `Ω_c W^T` (no gradient through
    the selection). In each bucket every picked position `n` gets

    .. math::
        \ell_{c,n} = \log\Big(e^{x_n \cdot w_{y_n}} + \sum_{i \in Y_c, i \ne y_n} e^{x_n \cdot w_i}\Big)
                     - x_n \cdot w_{y_n}

    and a position's loss is the maximum over the buckets that picked it; positions no bucket picked contribute
    nothing. `b_x` is clamped to N. With one bucket holding every position and every item this is exactly the full
    cross-entropy. Memory: `n_b * b_x * b_y` logits, and item scoring chunked over the catalogue.

    Args:
        hidden (`torch.Tensor` of shape `(N, d)`), targets (`torch.Tensor` of shape `(N,)`, indices `1..I`),
        item_embeddings (`torch.Tensor` of shape `(I, d)`): as in :func:`cross_entropy_loss`.
        n_buckets (`int`), bucket_size_x (`int`), bucket_size_y (`int`, at most `I`), mix_x (`bool`).
        generator (`torch.Generator`, *optional*): source of the bucket centres (on `hidden`'s device).
        valid (`torch.BoolTensor` of shape `(N,)`, *optional*): the positions that may be picked (the others'
            targets are ignored); `b_x` is then clamped to N, and a bucket picks the others only once every valid
            position is in it, where they count for nothing. Given, no shape depends on the values (what
            `torch.compile` needs): the buckets are computed as in `bucket_cross_entropy`'s `valid` form.

    Returns:
        `tuple(torch.Tensor, torch.Tensor)`: the sum of the picked positions' losses and the number of picked
        positions (the mean is their ratio).
    """
    n_items = item_embeddings.shape[0]
    if bucket_size_y > n_items:
        raise ValueError(f"SCE bucket_size_y ({bucket_size_y}) cannot exceed the number of items ({n_items})")
    centres, position_index = sce_buckets(hidden, n_buckets, bucket_size_x, mix_x, generator, valid)
    with torch.no_grad():
        item_index = chunked_topk(centres, item_embeddings.detach(), bucket_size_y)  # (n_b, b_y)
    return bucket_cross_entropy(hidden, targets, item_embeddings, position_index, item_index, valid)


def sce_buckets(
    hidden: torch.Tensor,
    n_buckets: int,
    bucket_size_x: int,
    mix_x: bool = False,
    generator: torch.Generator | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SCE's bucket centres `(n_b, d)` and each bucket's picked positions `(n_b, min(b_x, N))`, drawn as
    :func:`scalable_cross_entropy_loss` draws them (the item side is the caller's: the `b_y` items of largest
    `centres @ W^T`). No gradient."""
    n_positions, dim = hidden.shape
    bucket_size_x = min(bucket_size_x, n_positions)
    with torch.no_grad():
        detached = hidden.detach()
        if valid is not None:  # mixtures of valid rows only, as if the others were absent
            detached = detached * valid.unsqueeze(1).to(detached.dtype)
        if mix_x:
            mixing = torch.randn(n_buckets, n_positions, generator=generator, device=hidden.device, dtype=hidden.dtype)
            centres = mixing @ detached
        else:
            centres = torch.randn(n_buckets, dim, generator=generator, device=hidden.device, dtype=hidden.dtype)
            centres = centres * dim**-0.25
        position_scores = centres @ detached.T
        if valid is not None:  # valid positions first, in their order
            position_scores = position_scores.masked_fill(~valid, float("-inf"))
        position_index = position_scores.topk(bucket_size_x, dim=1).indices  # (n_b, b_x)
    return centres, position_index


def bucket_cross_entropy(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embeddings: torch.Tensor,
    position_index: torch.Tensor,
    item_index: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SCE's loss on given buckets: `position_index` (n_b, b_x) picked positions and `item_index` (n_b, b_y)
    candidate item rows (0-based, distinct within a bucket) per bucket. Returns `(sum, count)` as
    :func:`scalable_cross_entropy_loss` does (each picked position's maximum over the buckets that picked it).

    With `valid` (N,) bool, picks of other positions count for nothing, and the loss is the written-out form with
    plain autograd (gathers, a masked logsumexp, a `scatter_reduce` maximum): no shape depends on the values, as
    `torch.compile` needs, at the cost of the `(n_b, b_x, b_y)` block the default form avoids. The same value and
    gradient, but where a maximum is tied, which autograd splits between the tied buckets.

    Shapes: `hidden` (positions, hidden), `targets` (positions,) 1-based item ids, `item_embeddings` (items, hidden)
    whose row r is item id r + 1. Public so that a caller with its own bucketing (or a test) gets the same value and
    gradients as SCE without its random projections."""
    if valid is not None:
        target_rows = torch.where(valid, targets - 1, torch.zeros_like(targets))  # any row: those picks are dropped
        bucket_hidden, bucket_items = hidden[position_index], item_embeddings[item_index]
        logits = torch.bmm(bucket_hidden, bucket_items.transpose(1, 2))
        own = item_index.unsqueeze(1) == target_rows[position_index].unsqueeze(2)
        target = (hidden * item_embeddings[target_rows]).sum(-1)[position_index]
        dtype = torch.promote_types(logits.dtype, torch.float32)
        candidates = torch.cat([logits.masked_fill(own, float("-inf")), target.unsqueeze(-1)], -1).to(dtype)
        bucket_losses = (torch.logsumexp(candidates, -1) - target.to(dtype)).masked_fill(
            ~valid[position_index], float("-inf")
        )
        per_position = torch.full(hidden.shape[:1], float("-inf"), device=hidden.device, dtype=dtype)
        per_position = per_position.scatter_reduce(0, position_index.reshape(-1), bucket_losses.reshape(-1), "amax")
        picked = torch.isfinite(per_position)
        return torch.where(picked, per_position, torch.zeros_like(per_position)).sum(), picked.sum()
    per_position = _BucketMaxCrossEntropy.apply(hidden, item_embeddings, targets - 1, position_index, item_index)
    picked = torch.isfinite(per_position)
    return per_position[picked].sum(), picked.sum()


def _target_columns(item_index: torch.Tensor, bucket_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each bucket's candidate list holds a position's own target: `(hit, column)`, both `(n_b, b_x)`.

    `item_index` (n_b, b_y) holds distinct rows per bucket; `bucket_targets` (n_b, b_x) the picked positions' target
    rows. A sorted search per bucket, so no `(n_b, b_x, b_y)` comparison is built.
    """
    sorted_items, order = item_index.sort(dim=1)
    slot = torch.searchsorted(sorted_items, bucket_targets).clamp_max_(item_index.shape[1] - 1)
    hit = sorted_items.gather(1, slot) == bucket_targets
    return hit, order.gather(1, slot)


# Devices whose backward loops over buckets with one small product per bucket and winning row set (CPU: no launch
# cost, and only the winning rows are multiplied); elsewhere the winning rows are put back into a zero block and
# multiplied with two batched products. Public so that a check can run either path on any device
# (benchmarks/gpu_checks.py).
PER_BUCKET_BACKWARD_DEVICES = ("cpu",)


class _BucketMaxCrossEntropy(torch.autograd.Function):
    r"""SCE's per-position loss `(N,)`: the maximum over the buckets `c` that picked position `n` of
    `log(e^{t_n} + \sum_{j \in Y_c, j \ne y_n} e^{x_n \cdot w_j}) - t_n` with `t_n = x_n \cdot w_{y_n}`, and
    `-inf` where no bucket picked `n`.

    The same value and gradient as gathering `hidden[position_index]` and `items[item_index]`, a masked
    `logsumexp(cat([logits, t], -1), -1) - t` and a `scatter_reduce` maximum with autograd. Only the winning bucket
    of a position receives gradient, so only its row of softmax probabilities (`d loss / d logits`; `p_t - 1` for
    `t`) is kept: `N_picked x b_y` values instead of the `(n_b, b_x, b_y)` block (on ML-1M about a fifth), and
    backward multiplies only those rows; the item rows it needs are gathered again there rather than kept. Where a
    position's maximum is reached in several buckets, the last of them carries the whole gradient: for identical
    buckets (identical rows) that equals autograd's even split between the copies; for different buckets whose
    losses tie exactly (measure zero in float32) it is another subgradient of the maximum. Half precision is
    computed in float32.
    """

    @staticmethod
    def forward(ctx, hidden, item_embeddings, target_rows, position_index, item_index):
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        n_positions, device = hidden.shape[0], hidden.device
        n_buckets, bucket_size_x = position_index.shape
        bucket_size_y = item_index.shape[1]
        target_logits = (hidden * item_embeddings[target_rows]).sum(dim=-1).to(dtype)[position_index].unsqueeze(-1)
        logits = torch.bmm(hidden[position_index], item_embeddings[item_index].transpose(1, 2)).to(dtype)
        hit, column = _target_columns(item_index, target_rows[position_index])
        cells = torch.arange(n_buckets * bucket_size_x, device=device)
        logits.view(-1).index_fill_(0, (cells.view_as(column) * bucket_size_y + column)[hit], float("-inf"))
        shift = torch.maximum(logits.amax(dim=-1, keepdim=True), target_logits)
        unnormalised = logits.sub_(shift).exp_()  # (n_b, b_x, b_y)
        target_exp = (target_logits - shift).exp_()
        sums = unnormalised.sum(dim=-1, keepdim=True).add_(target_exp)
        bucket_losses = (shift + sums.log() - target_logits).view(-1)  # (n_b * b_x,)
        flat_positions = position_index.reshape(-1)
        per_position = torch.full((n_positions,), float("-inf"), device=device, dtype=dtype)
        per_position.scatter_reduce_(0, flat_positions, bucket_losses, reduce="amax")
        # One winning cell per picked position (the last in bucket order where the maximum is tied), in bucket order.
        is_max = bucket_losses == per_position[flat_positions]
        winner = torch.full((n_positions,), -1, device=device, dtype=torch.long)
        winner.scatter_reduce_(0, flat_positions[is_max], cells[is_max], reduce="amax")
        winners = winner[winner >= 0].sort().values  # (W,) cells
        winner_sums = sums.view(-1)[winners]
        probs = unnormalised.view(-1, bucket_size_y)[winners].div_(winner_sums.unsqueeze(-1))  # (W, b_y)
        target_prob = target_exp.view(-1)[winners].div_(winner_sums)
        ctx.save_for_backward(
            probs, target_prob, winners, flat_positions[winners], hidden, item_embeddings, target_rows, item_index
        )
        ctx.bucket_size_x = bucket_size_x
        return per_position

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_per_position):
        # Gradients are formed in float32 even where backward is called inside an autocast region.
        with torch.autocast(device_type=grad_per_position.device.type, enabled=False):
            return _BucketMaxCrossEntropy._gradients(ctx, grad_per_position)

    @staticmethod
    def _gradients(ctx, grad_per_position):
        probs, target_prob, winners, positions, hidden, item_embeddings, target_rows, item_index = ctx.saved_tensors
        need_hidden, need_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_buckets, bucket_size_y = item_index.shape
        bucket_size_x, device = ctx.bucket_size_x, hidden.device
        dtype, dim = probs.dtype, hidden.shape[1]  # gradients are summed in float32 (or float64) at least
        scale = grad_per_position.to(dtype)[positions]  # (W,)
        grad_logits = probs * scale.unsqueeze(-1)  # (W, b_y)
        grad_target = ((target_prob - 1) * scale).unsqueeze(-1)  # (W, 1)
        winner_hidden = hidden[positions].to(dtype)  # (W, d)
        bucket_items = item_embeddings[item_index].to(dtype)  # (n_b, b_y, d)
        rows_hidden = per_bucket_items = None
        if device.type in PER_BUCKET_BACKWARD_DEVICES:
            if need_hidden:
                rows_hidden = torch.empty(positions.shape[0], dim, device=device, dtype=dtype)
            if need_items:
                per_bucket_items = torch.zeros(n_buckets, bucket_size_y, dim, device=device, dtype=dtype)
            counts = torch.bincount(winners // bucket_size_x, minlength=n_buckets).tolist()
            start = 0
            for bucket, count in enumerate(counts):
                if count:
                    rows = slice(start, start + count)
                    if need_hidden:
                        torch.mm(grad_logits[rows], bucket_items[bucket], out=rows_hidden[rows])
                    if need_items:
                        torch.mm(grad_logits[rows].T, winner_hidden[rows], out=per_bucket_items[bucket])
                    start += count
        else:
            block = torch.zeros(n_buckets * bucket_size_x, bucket_size_y, device=device, dtype=dtype)
            block[winners] = grad_logits
            block = block.view(n_buckets, bucket_size_x, bucket_size_y)
            if need_hidden:
                rows_hidden = torch.bmm(block, bucket_items).view(-1, dim)[winners]
            if need_items:
                bucket_hidden = torch.zeros(n_buckets * bucket_size_x, dim, device=device, dtype=dtype)
                bucket_hidden[winners] = winner_hidden
                per_bucket_items = torch.bmm(block.transpose(1, 2), bucket_hidden.view(n_buckets, bucket_size_x, dim))
        grad_hidden = grad_items = None
        winner_targets = target_rows[positions]
        if need_hidden:
            grad_hidden = torch.zeros(hidden.shape, device=device, dtype=dtype)
            grad_hidden[positions] = rows_hidden + grad_target * item_embeddings[winner_targets].to(dtype)
            grad_hidden = grad_hidden.to(hidden.dtype)
        if need_items:
            grad_items = torch.zeros(item_embeddings.shape, device=device, dtype=dtype)
            grad_items.index_add_(0, item_index.reshape(-1), per_bucket_items.view(-1, dim))
            grad_items.index_add_(0, winner_targets, grad_target * winner_hidden)
            grad_items = grad_items.to(item_embeddings.dtype)
        return grad_hidden, grad_items, None, None, None


def sample_negatives(
    seen: torch.Tensor, num_items: int, num_negatives: int, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `seen` (batch, T) item indices, `num_negatives` distinct item indices the row never contains.

    Exact sampling without replacement: uniform random keys, seen items pushed below every unseen one, top-k.

    Returns:
        `(negatives, valid)`, both `(batch, num_negatives)`: a row that has seen all but a few items has fewer
        unseen items than slots, and its extra slots (`valid` false) hold seen items that the loss must skip.
    """
    keys = torch.rand(seen.shape[0], num_items + 1, generator=generator, device=seen.device)
    keys[:, 0] = -2.0  # the padding index is never a negative
    keys.scatter_(1, seen, -1.0)
    values, negatives = keys.topk(num_negatives, dim=1)
    return negatives, values >= 0


def sampled_bce_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embeddings: torch.Tensor,
    negatives: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""SASRec's binary cross-entropy with sampled negatives: the mean over each position's ``1 + K`` logits, summed
    over positions (the caller divides by the number of positions).

    .. math::
        L = \sum_n \frac{1}{1 + K_n} \Big( -\log \sigma(h_n \cdot E_{y_n})
            - \sum_{j=1}^{K_n} \log\big(1 - \sigma(h_n \cdot E_{j_{n}})\big) \Big)

    with :math:`K_n` the number of valid negatives of position ``n`` (``K`` unless the user has seen nearly every
    item). The authors' code (Veronika-Ivanova/barlow_twins_sasrec, ``bce_forward``) takes this mean over the
    ``1 + K`` binary terms, so a Barlow Twins weight alpha means the same relative to BCE here as there; a sum over
    them would make BCE ``1 + K`` times larger.

    Args:
        hidden (`torch.Tensor` of shape `(N, d)`), targets (`torch.Tensor` of shape `(N,)`, indices `1..I`),
        item_embeddings (`torch.Tensor` of shape `(I, d)`).
        negatives (`torch.Tensor` of shape `(N, K)`): negative item indices per position (`1..I`).
        valid (`torch.Tensor` of shape `(N, K)`, *optional*): which negative slots count (see `sample_negatives`);
            all by default.

    Example:
        >>> h, items = torch.zeros(1, 2), torch.ones(3, 2)  # every logit 0: each binary term is log 2
        >>> round(sampled_bce_loss(h, torch.tensor([1]), items, torch.tensor([[2, 3]])).item(), 4)
        0.6931
    """
    positive, negative = _sampled_scores(hidden, targets, item_embeddings, negatives)
    positive, negative = F.softplus(-positive), F.softplus(negative)
    if valid is None:
        return ((positive + negative.sum(dim=1)) / (1 + negatives.shape[1])).sum()
    counted = 1 + valid.sum(dim=1)
    return ((positive + (negative * valid).sum(dim=1)) / counted).sum()


def _sampled_scores(
    hidden: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each position's score of its target `(N,)` and of its sampled negatives `(N, K)`."""
    positive = (hidden * item_embeddings[targets - 1]).sum(dim=-1)
    return positive, torch.einsum("nd,nkd->nk", hidden, item_embeddings[negatives - 1])


def sampled_bpr_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_embeddings: torch.Tensor,
    negatives: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Bayesian Personalised Ranking (Rendle et al., UAI 2009) with sampled negatives: each position's mean over its
    negatives of ``-log sigmoid(positive score - negative score)``, summed over positions (the caller divides by the
    number of positions). With one negative it is the SASRec baseline of the CL4SRec and DuoRec papers (RecBole's
    ``loss_type: BPR``).

    .. math::
        L = \sum_n \frac{1}{K_n} \sum_{j=1}^{K_n} -\log \sigma\big(h_n \cdot E_{y_n} - h_n \cdot E_{j_n}\big)

    with :math:`K_n` the number of valid negatives of position ``n`` (a position without any counts 0).

    Args: as `sampled_bce_loss`.

    Example:
        >>> h, items = torch.zeros(1, 2), torch.ones(3, 2)  # every score 0: each term is log 2
        >>> round(sampled_bpr_loss(h, torch.tensor([1]), items, torch.tensor([[2, 3]])).item(), 4)
        0.6931
    """
    positive, negative = _sampled_scores(hidden, targets, item_embeddings, negatives)
    terms = F.softplus(negative - positive[:, None])  # -log sigmoid(positive - negative)
    if valid is None:
        return terms.mean(dim=1).sum()
    return ((terms * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1)).sum()


def default_sce_buckets(batch_size: int, mean_sequence_length: float) -> int:
    """The SCE paper's default `n_b = b_x = int(2 * sqrt(batch_size * mean_sequence_length))`."""
    return max(1, int(2 * math.sqrt(batch_size * mean_sequence_length)))
