"""The item table sharded by rows over processes (FSDP2), looked up and scored shard by shard.

Under FSDP2 (`accelerate launch` with `fsdp_version: 2`) every parameter is a `DTensor` split along its first
dimension, and FSDP gathers a module's full weights before it runs. The item table is the one weight that outgrows
a device (100M items x 64 x fp32 is 25.6 GB before Adam's two copies), so BT-SR never runs its `nn.Embedding`:
the encoder and the losses read the process's own rows (`DTensor.to_local`) through the two functions here, and
only `(positions, hidden)` activations and per-position statistics cross processes. The table, its gradient and
its optimizer state stay at `1 / world_size` per process.

- `sharded_embedding`: every process looks up the ids of all processes in its rows (zeros elsewhere); a
  reduce-scatter sums the shards, leaving each process its own positions' embeddings.
- `sharded_cross_entropy`: the full-softmax CE over items `1..num_items` of every process's positions against
  this process's rows; the row maxima, the sums of exponentials and the target logits are combined across
  processes, so each process gets the exact CE of its own positions.
- `sharded_scalable_cross_entropy`: SCE with its item side (each bucket's `b_y` best items) found shard by shard
  and merged (`sharded_top_items`); the buckets' candidate and target rows are then looked up with
  `sharded_embedding`, so their gradients reach the processes that hold them.

Gradients follow data-parallel averaging (FSDP divides the other weights' gradients by the world size): a shard's
gradient is `1 / world_size` times the sum of every process's loss gradient with respect to it, which is the
gradient of the mean of the processes' losses, as for every other weight.

Self-contained (torch only): copied to the Hub beside `modeling_btsr.py`.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .losses_btsr import bucket_cross_entropy, chunked_topk, sce_buckets

__all__ = [
    "ItemShard",
    "item_shard",
    "sharded_embedding",
    "sharded_cross_entropy",
    "sharded_top_items",
    "sharded_scalable_cross_entropy",
]

# torch 2.13 renames the tensor collectives (`*_tensor` deprecated); older releases have only the old names.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


@dataclass(frozen=True)
class ItemShard:
    """This process's rows `[start, start + rows.shape[0])` of a table split by rows over `group`."""

    rows: torch.Tensor
    start: int
    group: object


def item_shard(weight: torch.Tensor) -> ItemShard | None:
    """The `ItemShard` of `weight` when it is a `DTensor` split by rows (FSDP2), else `None` (a plain tensor).

    Raises `ValueError` for any other layout (replicated, split by columns, a 2-D mesh): those cannot be scored
    shard by shard, and gathering them silently would defeat the sharding.
    """
    if not dist.is_available() or not dist.is_initialized():
        return None
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(weight, DTensor):
        return None
    placements = tuple(weight.placements)
    if weight.device_mesh.ndim != 1 or placements != (Shard(0),):
        raise ValueError(
            f"the item table is a DTensor placed {placements} on a {weight.device_mesh.ndim}-D mesh; BT-SR scores "
            "items shard by shard only when the table is split by rows over one mesh dimension (FSDP2's layout)"
        )
    group = weight.device_mesh.get_group()
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    local = weight.to_local()
    num_rows = weight.shape[0]
    per_rank = -(-num_rows // world)  # torch.chunk's split, FSDP2's
    start = min(rank * per_rank, num_rows)
    if local.shape[0] != min(per_rank, num_rows - start):
        raise ValueError(
            f"process {rank} holds {local.shape[0]} item rows, not the {min(per_rank, num_rows - start)} rows from "
            f"{start} of an even split of {num_rows} over {world} processes"
        )
    return ItemShard(rows=local, start=start, group=group)


def _gather_padded(x: torch.Tensor, group) -> tuple[torch.Tensor, list[int]]:
    """`x` (n, ...) of every process, each padded to the largest n: `((world * n_max, ...), [n of each process])`."""
    world = dist.get_world_size(group)
    count = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = torch.empty(world, device=x.device, dtype=torch.long)
    _all_gather(counts, count, group=group)
    counts = counts.tolist()
    n_max = max(counts)
    padded = x.new_zeros((n_max, *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = x.new_empty((world * n_max, *x.shape[1:]))
    _all_gather(out, padded.contiguous(), group=group)
    return out, counts


def _own_rows(stacked: torch.Tensor, counts: list[int], group) -> torch.Tensor:
    """Sums `stacked` (world * n_max, ...) over processes and returns this process's `counts[rank]` rows."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    n_max = stacked.shape[0] // world
    out = stacked.new_empty((n_max, *stacked.shape[1:]))
    _reduce_scatter(out, stacked.contiguous(), group=group)
    return out[: counts[rank]]


def _item_columns(shard: ItemShard, num_items: int) -> tuple[int, int]:
    """`(lo, hi)`, `lo <= hi`: the slice of `shard.rows` holding items `1..num_items` (the padding row 0 and a
    mask-token row never enter a softmax or a top-k)."""
    lo = max(1 - shard.start, 0)
    return lo, max(min(num_items + 1 - shard.start, shard.rows.shape[0]), lo)


def _local_rows(ids: torch.Tensor, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of `ids` in `[start, start + size)`, and those ids minus `start`."""
    local = ids - start
    mine = ((local >= 0) & (local < size)).nonzero(as_tuple=True)[0]
    return mine, local[mine]


class _ShardedEmbedding(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, rows, shard):
        all_ids, counts = _gather_padded(ids, shard.group)
        mine, local = _local_rows(all_ids, shard.start, rows.shape[0])
        stacked = rows.new_zeros((all_ids.shape[0], rows.shape[1]))
        stacked[mine] = rows[local]
        ctx.shard, ctx.counts = shard, counts
        ctx.save_for_backward(mine, local)
        return _own_rows(stacked, counts, shard.group)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        mine, local = ctx.saved_tensors
        shard = ctx.shard
        all_grads, _ = _gather_padded(grad_output.contiguous(), shard.group)
        grad_rows = torch.zeros_like(shard.rows)
        grad_rows.index_add_(0, local, all_grads[mine], alpha=1 / dist.get_world_size(shard.group))
        return None, grad_rows, None


def sharded_embedding(ids: torch.Tensor, shard: ItemShard) -> torch.Tensor:
    """`table[ids]` for a table split by rows: `ids` (n,) of this process, every process calling it together.

    Args:
        ids (`torch.LongTensor` of shape `(n,)`): row indices into the whole table; `n` may differ by process.
        shard (`ItemShard`): this process's rows (`item_shard(weight)`).

    Returns:
        `torch.Tensor` of shape `(n, d)`, differentiable with respect to `shard.rows`.
    """
    return _ShardedEmbedding.apply(ids, shard.rows, shard)


# Elements of one (positions, items) block of logits: the shard is scored in slices of items, so memory stays
# bounded whatever the catalogue (a 50M-row shard would otherwise need one row of 50M logits per position).
_CHUNK_ELEMENTS = 1 << 22


def _item_slices(n_positions: int, n_items: int):
    step = max(1, _CHUNK_ELEMENTS // max(n_positions, 1))
    return (slice(start, start + step) for start in range(0, n_items, step))


class _ShardedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, targets, rows, shard, num_items):
        group = shard.group
        all_hidden, counts = _gather_padded(hidden, group)
        all_targets, _ = _gather_padded(targets, group)
        lo, hi = _item_columns(shard, num_items)
        items = rows[lo:hi]
        offset = shard.start + lo  # global row index of items[0]
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        items = items.to(dtype)
        all_hidden = all_hidden.to(dtype)
        n = all_hidden.shape[0]
        # One pass over slices of the shard: running row maxima and sums of exponentials (a streaming logsumexp).
        maxima = torch.full((n,), -torch.inf, device=hidden.device, dtype=dtype)
        sums = torch.zeros((n,), device=hidden.device, dtype=dtype)
        for piece in _item_slices(n, items.shape[0]):
            logits = all_hidden @ items[piece].T
            new_maxima = torch.maximum(maxima, logits.amax(dim=1))
            sums = sums * (maxima - new_maxima).exp().nan_to_num(0.0) + (logits - new_maxima[:, None]).exp().sum(1)
            maxima = new_maxima
        global_maxima = maxima.clone()
        dist.all_reduce(global_maxima, op=dist.ReduceOp.MAX, group=group)
        sums = sums * (maxima - global_maxima).exp().nan_to_num(0.0)  # a shard without items adds nothing
        maxima = global_maxima
        target_logits = torch.zeros((n,), device=hidden.device, dtype=dtype)
        mine, local = _local_rows(all_targets, offset, items.shape[0])
        target_logits[mine] = (all_hidden[mine] * items[local]).sum(dim=1)
        stats = torch.stack([sums, target_logits])
        dist.all_reduce(stats, group=group)
        sums, target_logits = stats[0], stats[1]
        losses = maxima + sums.log() - target_logits
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        n_max = n // world
        owner = torch.arange(n, device=hidden.device) // n_max
        real = (torch.arange(n, device=hidden.device) % n_max) < torch.tensor(counts, device=hidden.device)[owner]
        ctx.shard, ctx.counts, ctx.lo, ctx.hi = shard, counts, lo, hi
        ctx.dtypes = (hidden.dtype, rows.dtype)
        ctx.save_for_backward(all_hidden, items, maxima, sums, mine, local, owner, real)
        mine_rows = slice(rank * n_max, rank * n_max + counts[rank])
        return losses[mine_rows].sum().to(hidden.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        all_hidden, items, maxima, sums, mine, local, owner, real = ctx.saved_tensors
        shard, counts = ctx.shard, ctx.counts
        group = shard.group
        world = dist.get_world_size(group)
        scales = torch.empty(world, device=grad_output.device, dtype=all_hidden.dtype)
        _all_gather(scales, grad_output.reshape(1).to(all_hidden.dtype).contiguous(), group=group)
        row_scale = scales[owner] * real  # padded rows carry no loss
        n = all_hidden.shape[0]
        grad_hidden = torch.zeros_like(all_hidden)
        # The shard's gradient is written in place, its item columns only: no second table-sized buffer.
        grad_rows = torch.zeros(shard.rows.shape, device=items.device, dtype=items.dtype)
        grad_items = grad_rows[ctx.lo : ctx.hi]
        weights = (row_scale / sums)[:, None]  # softmax normalisation and each row's loss gradient, (n, 1)
        for piece in _item_slices(n, items.shape[0]):
            softmax = (all_hidden @ items[piece].T - maxima[:, None]).exp_().mul_(weights)
            grad_hidden.addmm_(softmax, items[piece])
            torch.mm(softmax.T, all_hidden, out=grad_items[piece])
        scaled = row_scale[mine, None]
        grad_hidden.index_add_(0, mine, -items[local] * scaled)
        grad_items.index_add_(0, local, -all_hidden[mine] * scaled)
        grad_items.div_(world)
        own = _own_rows(grad_hidden, counts, group)
        return own.to(ctx.dtypes[0]), None, grad_rows.to(ctx.dtypes[1]), None, None


def sharded_cross_entropy(
    hidden: torch.Tensor, targets: torch.Tensor, shard: ItemShard, num_items: int
) -> torch.Tensor:
    r"""Full-softmax cross-entropy over items `1..num_items`, summed over this process's positions, with the item
    table split by rows: the same value as `cross_entropy_loss` on the whole table.

    .. math::
        L = \sum_n \Big( \log \sum_{r} \sum_{i \in r} e^{h_n \cdot E_i} - h_n \cdot E_{y_n} \Big)

    where `r` runs over the processes' shards; each process scores every process's positions against its own rows
    and the per-position maxima, sums and target logits are reduced across processes.

    Args:
        hidden (`torch.Tensor` of shape `(n_positions, d)`): this process's labelled hidden states (`n_positions`
            may differ by process).
        targets (`torch.LongTensor` of shape `(n_positions,)`): item indices in `1..num_items` (table rows).
        shard (`ItemShard`): this process's rows of the whole table (padding row 0 included).
        num_items (`int`): the catalogue size; rows outside `1..num_items` never enter the softmax.

    Returns:
        `torch.Tensor`: the sum over this process's positions.
    """
    return _ShardedCrossEntropy.apply(hidden, targets, shard.rows, shard, num_items)


def sharded_top_items(centres: torch.Tensor, shard: ItemShard, k: int, num_items: int) -> torch.Tensor:
    """Table rows (in `1..num_items`) of the `k` items with the largest `centres @ E^T` over the whole table,
    `(n_queries, k)`, best first: each process finds its rows' best `k` for every process's queries, and each
    process merges the candidates of its own queries. No gradient; every process calls it together.
    """
    group = shard.group
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    all_centres, counts = _gather_padded(centres.detach(), group)
    lo, hi = _item_columns(shard, num_items)
    items = shard.rows.detach()[lo:hi]
    n = all_centres.shape[0]
    scores = torch.full((n, k), -torch.inf, device=centres.device, dtype=all_centres.dtype)
    rows = torch.zeros((n, k), device=centres.device, dtype=torch.long)
    found = min(k, items.shape[0])
    if found:
        index = chunked_topk(all_centres, items.to(all_centres.dtype), found)
        scores[:, :found] = torch.einsum("nd,nkd->nk", all_centres, items[index].to(all_centres.dtype))
        rows[:, :found] = index + shard.start + lo
    every_scores, _ = _gather_padded(scores, group)  # (world * n, k): each process's candidates for all queries
    every_rows, _ = _gather_padded(rows, group)
    n_max = n // world
    mine = slice(rank * n_max, rank * n_max + counts[rank])
    candidate_scores = every_scores.reshape(world, n, k)[:, mine].permute(1, 0, 2).reshape(counts[rank], world * k)
    candidate_rows = every_rows.reshape(world, n, k)[:, mine].permute(1, 0, 2).reshape(counts[rank], world * k)
    best = candidate_scores.topk(k, dim=1).indices
    return candidate_rows.gather(1, best)


def sharded_scalable_cross_entropy(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    shard: ItemShard,
    num_items: int,
    *,
    n_buckets: int,
    bucket_size_x: int,
    bucket_size_y: int,
    mix_x: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`losses_btsr.scalable_cross_entropy_loss` of this process's positions with the item table split by rows:
    the same buckets (the same draws from `generator`), the same candidates up to ties, the same loss.

    Args:
        hidden (`torch.Tensor` of shape `(n_positions, d)`), targets (`torch.LongTensor` of shape `(n_positions,)`,
            item indices `1..num_items`): this process's labelled positions.
        shard (`ItemShard`): this process's rows of the whole table.
        num_items (`int`): the catalogue size.
        n_buckets, bucket_size_x, bucket_size_y, mix_x, generator: as in `scalable_cross_entropy_loss`.

    Returns:
        `tuple(torch.Tensor, torch.Tensor)`: the sum of the picked positions' losses and their number.
    """
    if bucket_size_y > num_items:
        raise ValueError(f"SCE bucket_size_y ({bucket_size_y}) cannot exceed the number of items ({num_items})")
    centres, position_index = sce_buckets(hidden, n_buckets, bucket_size_x, mix_x, generator)
    with torch.no_grad():
        item_rows = sharded_top_items(centres, shard, bucket_size_y, num_items)
        needed, inverse = torch.unique(torch.cat([item_rows.reshape(-1), targets]), return_inverse=True)
    compact = sharded_embedding(needed, shard)  # the rows the buckets read, gradients back to their holders
    item_index = inverse[: item_rows.numel()].reshape(item_rows.shape)
    compact_targets = inverse[item_rows.numel() :] + 1
    return bucket_cross_entropy(hidden, compact_targets, compact, position_index, item_index)
