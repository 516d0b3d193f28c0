"""Attention of BT-SR: the functions `BTSRSelfAttention` dispatches to, and the packed batch they run on.

Self-contained: imports only torch and transformers, because `save_pretrained` copies it beside `modeling_btsr.py`
for `AutoModel.from_pretrained(..., trust_remote_code=True)`.

The batch. The position-wise layers (embeddings, LayerNorms, feed-forward) run on the item positions of a
left-padded batch only, packed into rows of shape `(n_items, hidden)` (`PackedBatch`); padding is never computed,
and the reference zeroes it after every block anyway. Attention scatters the packed rows into padded grids, one for
the batch or, with `BTSRConfig.length_grouped_attention`, one per group of rows of similar length, and gathers its
output back. A batch of short and long rows then attends on grids as long as each group's longest row instead of
one grid as long as the batch's: the same keys for every row, a fraction of the work on short-history data.

The functions. `config._attn_implementation` picks the function that attends each grid, from
`ALL_ATTENTION_FUNCTIONS` as transformers' models do (`AutoModel.from_pretrained(..., attn_implementation=...)`,
`model.set_attn_implementation(...)`):

- `"eager"`: `softmax(Q K^T / sqrt(d_h) + mask) V` written out (`eager_attention_forward`).
- `"sdpa"` (the default): `torch.nn.functional.scaled_dot_product_attention` in passes that neither record
  gradients nor draw dropout, and the written-out product in the others (`sdpa_attention_forward`).

Both take transformers' arguments: `query`, `key`, `value` of shape `(batch, heads, length, head_dim)` and an
additive mask. The last block of a pass that wants user embeddings alone (`BTSRSelfAttention.forward_last`) has one
query row per user, and attends it with the written-out product under either. Grouping is the batch's business, not
the function's: rows are sorted by length before the embeddings, so every layer sees the grouped order, and it
combines with either function.

Under `torch.compile` (`static_layout`), every batch takes the padded layout instead: one grid for the batch, every
grid position a row, every row a user (an empty row's outputs are zeroed), no length groups and no query blocks.
Packing, grouping and the shortcuts for batches without padding all depend on the values of the mask, which a
compiled graph cannot follow without breaking; the padded layout's shapes depend on the batch's shape alone. Item
positions get the same values either way (up to float rounding).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface

__all__ = [
    "ALL_ATTENTION_FUNCTIONS",
    "eager_attention_forward",
    "sdpa_attention_forward",
    "inverted_dropout",
    "attention_mask_bias",
    "length_group_bounds",
    "static_layout",
    "GridLayout",
    "PackedBatch",
    "ATTENTION_QUERY_BLOCK",
    "ATTENTION_GROUP_MIN_LEN",
    "DENSE_LAYOUT_MAX_PADDING",
]

# Query rows per block of the written-out product; a speed setting, results do not depend on it.
ATTENTION_QUERY_BLOCK = 100
# Rows up to this length share the first attention group (`length_group_bounds`); a speed setting.
ATTENTION_GROUP_MIN_LEN = 16
# Inference batches with at most this share of padding run on the padded grid itself instead of packed item rows:
# packing's gathers and scatters cost more than the few padded rows they skip in length-sorted evaluation batches.
# A speed setting: item positions get the same values either way.
DENSE_LAYOUT_MAX_PADDING = 0.1


def static_layout() -> bool:
    """Whether batches take the padded layout, with shapes that follow the batch's shape alone: inside
    `torch.compile`, where a data-dependent shape or branch is a graph break (see the module's docstring)."""
    return torch.compiler.is_compiling()


def inverted_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout, like `F.dropout`: each element kept with probability `1 - p` and scaled by `1 / (1 - p)`.

    The keep mask is `uniform[0, 1) >= p`, drawn with `torch.rand_like`, which on CPU costs a fraction of the
    `bernoulli_` that `F.dropout` draws (same distribution; a different random stream than `F.dropout`).
    """
    if not training or p == 0.0:
        return x
    noise = torch.rand_like(x).ge_(p).div_(1.0 - p)  # 0 or 1 / (1 - p); no gradient flows into the mask
    return x * noise


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """`softmax(scaling * Q K^T + mask) V`, written out: causal, or bidirectional where `module.is_causal` is
    `False` (the BERT4Rec backbone).

    Args:
        module: the calling attention layer; its `is_causal` (default `True`) says whether a query may skip the keys
            after it.
        query (`torch.FloatTensor` of shape `(batch, heads, q_len, head_dim)`): the last `q_len` positions of the
            grid (`q_len = kv_len`, or 1 for the last position alone).
        key, value (`torch.FloatTensor` of shape `(batch, heads, kv_len, head_dim)`).
        attention_mask (`torch.FloatTensor` of shape `(batch or 1, 1, q_len, kv_len)`): additive, 0 where a query
            may attend to a key and `-inf` elsewhere (`attention_mask_bias`); it alone decides what is seen.
        scaling: multiplies the query before the product, as `nn.MultiheadAttention` (the reference) does.
        dropout: probability on the attention weights (`inverted_dropout`); 0 when the pass draws none.

    Returns:
        `(attn_output, None)`: `attn_output` of shape `(batch, q_len, heads, head_dim)`; no weights are kept.

    Queries run in blocks of `ATTENTION_QUERY_BLOCK` rows, each (when causal) against the keys up to its last row
    only: the masked upper blocks are never computed (an exp(-inf) = 0 term less in a softmax changes nothing), a
    third fewer products and dropout draws on a 200-long grid. With dropout or a mask, SDPA takes this math path on
    CPU anyway, converting the mask and drawing `bernoulli_` dropout at every call; here the mask is shared by every
    block.
    """
    query = query * scaling
    q_len, kv_len = query.shape[2], key.shape[2]
    if static_layout():  # one block: a loop (or a test) over a symbolic length would specialise the graph on it
        bounds = [(0, q_len)]
    else:
        block = ATTENTION_QUERY_BLOCK if q_len > ATTENTION_QUERY_BLOCK else q_len
        bounds = [(start, min(start + block, q_len)) for start in range(0, q_len, block)]
    causal = getattr(module, "is_causal", True)
    parts = []
    for start, end in bounds:
        visible = kv_len - q_len + end if causal else kv_len  # causal: no query of the block sees a later key
        scores = (query[:, :, start:end] @ key[:, :, :visible].transpose(-1, -2)).add_(
            attention_mask[..., start:end, :visible]
        )
        weights = inverted_dropout(torch.softmax(scores, dim=-1), dropout)
        parts.append(weights @ value[:, :, :visible])
    attn_output = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return attn_output.transpose(1, 2), None


def sdpa_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """`eager_attention_forward`'s formula with PyTorch's fused kernel, in passes that neither record gradients nor
    draw dropout (inference); the others run the written-out product, whose cheaper dropout draws and shared mask
    beat SDPA's math path on CPU. Same arguments and output."""
    if dropout > 0 or torch.is_grad_enabled():
        return eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout)
    attn_output = F.scaled_dot_product_attention(query * scaling, key, value, attn_mask=attention_mask, scale=1.0)
    return attn_output.transpose(1, 2), None


# transformers' registry with this model's own "sdpa" as a local entry: registering it globally
# (`AttentionInterface.register`) would hand every other model a function with this model's mask convention.
# "eager" is the default of every lookup, as in transformers.
ALL_ATTENTION_FUNCTIONS = AttentionInterface()
ALL_ATTENTION_FUNCTIONS["sdpa"] = sdpa_attention_forward


def attention_mask_bias(is_item: torch.Tensor, dtype: torch.dtype, causal: bool = True) -> torch.Tensor:
    """The additive attention mask of a grid, shared by every block, (batch, 1, seq_len, seq_len): 0 where query i
    may attend to key j (j an item, and j <= i when `causal`), -inf elsewhere; padded query rows attend to
    themselves, so no softmax row is empty (their outputs are never read). Built as a causal (seq_len, seq_len) bias
    (zeros when not `causal`) plus a key-padding (batch, 1, seq_len) bias in one broadcast add, so the
    (batch, seq_len, seq_len) grid is written once. A batch without padding gets the causal bias alone,
    (1, 1, seq_len, seq_len), broadcast over the batch, except under `static_layout` (the same values: a branch on
    the mask's values would break the graph).

    >>> attention_mask_bias(torch.tensor([[False, True, True]]), torch.float32)[0, 0]
    tensor([[0., -inf, -inf],
            [-inf, 0., -inf],
            [-inf, 0., 0.]])
    >>> attention_mask_bias(torch.tensor([[False, True, True]]), torch.float32, causal=False)[0, 0]
    tensor([[0., 0., 0.],
            [-inf, 0., 0.],
            [-inf, 0., 0.]])
    """
    length = is_item.shape[1]
    if causal:
        order = torch.full((length, length), float("-inf"), dtype=dtype, device=is_item.device).triu_(1)
    else:
        order = torch.zeros((length, length), dtype=dtype, device=is_item.device)
    if not static_layout() and bool(is_item.all()):
        return order.view(1, 1, length, length)
    minus_inf = torch.tensor(float("-inf"), dtype=dtype, device=is_item.device)
    zero = torch.zeros((), dtype=dtype, device=is_item.device)
    keys = torch.where(is_item, zero, minus_inf).unsqueeze(1)
    mask_bias = order + keys
    mask_bias.diagonal(dim1=-2, dim2=-1).zero_()  # item rows may see themselves anyway; padded rows need a key
    return mask_bias.unsqueeze(1)


def length_group_bounds(sorted_lengths: list[int]) -> list[tuple[int, int, int]] | None:
    """Row groups for attention: `(row_start, row_end, grid_len)` per group of the rows, sorted by length, whose
    lengths fall in one power-of-two bin (lengths up to `ATTENTION_GROUP_MIN_LEN` share the first), `grid_len`
    the group's longest row. Empty rows (length 0) join no group: they have no position to compute. `None` when
    every non-empty row falls in one bin (one grid, as ungrouped).

    A row in a grid at most twice its length wastes at most 3/4 of its attention cells on padding (the first bin's
    grids, at most 16 long, are cheap whatever their padding), against nearly all of them on one 200-long grid for
    short-history data; a handful of groups keeps the per-group overhead small.

    >>> length_group_bounds([0, 3, 9, 16, 17, 40, 200])
    [(1, 4, 16), (4, 5, 17), (5, 6, 40), (6, 7, 200)]
    """
    groups, row_start, current = [], None, None
    for row, length in enumerate(sorted_lengths):
        if length == 0:
            continue
        length_bin = max(ATTENTION_GROUP_MIN_LEN, 1 << (length - 1).bit_length())
        if length_bin != current:
            if current is not None:
                groups.append((row_start, row, sorted_lengths[row - 1]))
            row_start, current = row, length_bin
    if current is not None:
        groups.append((row_start, len(sorted_lengths), sorted_lengths[-1]))
    return groups if len(groups) > 1 else None


class GridLayout:
    """Where the packed item positions of a left-padded batch sit in its (batch, seq_len) grid.

    With `dense=True` every grid position is a packed row (padding included): `gather` and `scatter` are then
    reshapes, and padded rows carry values that no item position reads (padded keys are masked, padded queries are
    dropped), zeroed where the grid is returned. `is_item` (batch, seq_len) is the grid's mask of item positions.
    With `every_row=True` (dense only, the `static_layout`), every row counts as ending in an item, an empty one
    too, so that no shape depends on the mask; the caller zeroes empty rows' outputs.

    The derived tensors are built on first use and kept (plain attributes, not `functools.cached_property`, whose
    lock `torch.compile` cannot trace). `causal=False` makes the grid's mask bidirectional (BERT4Rec).
    """

    def __init__(
        self,
        is_item: torch.Tensor,
        dense: bool = False,
        dtype: torch.dtype = torch.float32,
        every_row: bool = False,
        causal: bool = True,
    ):
        self.batch, self.length = is_item.shape
        self.causal = causal
        self.dense = dense
        self.every_row = every_row and dense
        self.dtype = dtype
        if dense:
            self.index = torch.arange(self.batch * self.length, device=is_item.device)
        else:
            self.index = is_item.reshape(-1).nonzero().squeeze(1)  # flat grid positions of items, row-major
        self.is_item = is_item
        self._mask_bias = self._all_rows = self._last_rows = self._last_packed = None

    @property
    def mask_bias(self) -> torch.Tensor:
        """The grid's additive attention mask (`attention_mask_bias`), built once and shared by every block."""
        if self._mask_bias is None:
            self._mask_bias = attention_mask_bias(self.is_item, self.dtype, self.causal)
        return self._mask_bias

    @property
    def all_rows(self) -> bool:
        """Whether every row ends in an item (no empty row), or counts as doing so (`every_row`)."""
        if self._all_rows is None:
            self._all_rows = self.every_row or bool(self.is_item[:, -1].all())
        return self._all_rows

    @property
    def last_rows(self) -> torch.Tensor:
        """Batch rows whose last position is an item (all rows but empty ones, with left padding; every row with
        `every_row`)."""
        if self._last_rows is None:
            if self.every_row:
                self._last_rows = torch.arange(self.batch, device=self.is_item.device)
            else:
                self._last_rows = self.is_item[:, -1].nonzero().squeeze(1)
        return self._last_rows

    @property
    def last_packed(self) -> torch.Tensor:
        """The packed row of each of `last_rows`' last position."""
        if self._last_packed is None:
            if self.dense:
                self._last_packed = self.last_rows * self.length + (self.length - 1)
            else:  # a row's last packed row
                self._last_packed = (self.is_item.sum(dim=1).cumsum(0) - 1).index_select(0, self.last_rows)
        return self._last_packed

    def gather(self, grid: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, d) -> (n_items, d)."""
        if self.dense:
            return grid.reshape(self.batch * self.length, -1)
        return grid.reshape(self.batch * self.length, -1).index_select(0, self.index)

    def scatter(self, packed: torch.Tensor) -> torch.Tensor:
        """(n_items, d) -> (batch, seq_len, d), zeros at padding (dense: the rows as they are)."""
        if self.dense:
            return packed.view(self.batch, self.length, -1)
        grid = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        return grid.index_copy(0, self.index, packed).view(self.batch, self.length, -1)

    def rows_ending_in_item(self, grid: torch.Tensor) -> torch.Tensor:
        """The `last_rows` of a (batch, ...) tensor (no copy when every row ends in an item)."""
        return grid if self.all_rows else grid.index_select(0, self.last_rows)


def _split_heads(grid: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, length, hidden) -> (batch, heads, length, head_dim), a view."""
    batch, length, _ = grid.shape
    return grid.view(batch, length, num_heads, -1).transpose(1, 2)


class PackedBatch:
    """A left-padded batch as packed item rows, and the grids its attention runs on.

    Built once per forward pass by `BTSRModel` and handed to every block.

    Args:
        is_item (`torch.BoolTensor` of shape `(batch, seq_len)`): the item positions.
        group_by_length: attend per group of rows of similar length (`length_group_bounds`), each group on its
            own grid cut to its longest row (left padding: the cut columns are padding in every row of it). Rows are
            then sorted by length (`order`, applied to the inputs with `sort_rows`), so that each group's item
            positions are one contiguous slice of the packed rows.
        inference: a pass without gradient or dropout: a batch with at most `DENSE_LAYOUT_MAX_PADDING` padding
            then skips the packing (`dense`). Training always packs, so its dropout draws do not depend on padding.
        dtype: dtype of the attention masks (the model's).
        causal: whether a position attends to earlier positions only (SASRec) or to every item of its row (BERT4Rec).

    Under `static_layout` (torch.compile) neither applies: the batch is dense, on one grid, every row a user.

    Attributes:
        dense (`bool`): every grid position is a packed row.
        order (`torch.LongTensor`, *optional*): the length-sorted row order, `None` when rows keep theirs.
        index (`torch.LongTensor` of shape `(n_rows,)`): flat position in the (sorted) grid of each packed row.
        parts (`list`): `(packed_start, packed_end, GridLayout)` per attention grid, in packed order.
    """

    def __init__(
        self, is_item: torch.Tensor, *, group_by_length: bool, inference: bool, dtype: torch.dtype, causal: bool = True
    ):
        static = static_layout()
        self.dense = static or (
            inference and 1.0 - float(is_item.sum()) / max(is_item.numel(), 1) <= DENSE_LAYOUT_MAX_PADDING
        )
        self.order, bounds = None, None
        if group_by_length and not self.dense:
            sorted_lengths, order = torch.sort(is_item.sum(dim=1), stable=True)
            bounds = length_group_bounds(sorted_lengths.tolist())
            if bounds is not None:  # else one group: the batch as it is
                self.order, is_item = order, is_item.index_select(0, order)
        self.layout = GridLayout(is_item, dense=self.dense, dtype=dtype, every_row=static, causal=causal)
        self.index = self.layout.index
        self._last_rows = self._last_packed = None
        if bounds is None:
            self.parts = [(0, self.index.shape[0], self.layout)]
            self._first_rows = [0]
            return
        self.parts, self._first_rows, packed_start = [], [], 0
        for row_start, row_end, grid_len in bounds:
            group = GridLayout(is_item[row_start:row_end, self.layout.length - grid_len :], dtype=dtype, causal=causal)
            self.parts.append((packed_start, packed_start + len(group.index), group))
            self._first_rows.append(row_start)
            packed_start += len(group.index)

    def sort_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """A (batch, ...) input in the batch's attention order (itself when rows keep their order)."""
        return rows if self.order is None else rows.index_select(0, self.order.to(rows.device))

    def pack_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, ...) values of the (sorted) grid -> (n_rows, ...) at the packed positions."""
        return ids.reshape(-1, *ids.shape[2:]).index_select(0, self.index)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(n_rows, d) -> (batch, seq_len, d) in the batch's own row order, zeros at padding."""
        grid = self.layout.scatter(packed)
        if self.dense:
            grid = grid * self.layout.is_item.unsqueeze(-1).to(grid.dtype)
        return grid if self.order is None else grid.index_select(0, self.order.argsort())

    def unpack_last(self, last: torch.Tensor) -> torch.Tensor:
        """(len(last_rows), d) states of the rows' last positions -> (batch, d) in the batch's own row order, zeros
        for empty rows."""
        if self.layout.every_row:  # one state per row already, in order: only empty rows to zero
            return last * self.layout.is_item[:, -1:].to(last.dtype)
        rows = self.last_rows if self.order is None else self.order.index_select(0, self.last_rows)
        return last.new_zeros(self.layout.batch, last.shape[-1]).index_copy(0, rows, last)

    @property
    def last_rows(self) -> torch.Tensor:
        """Rows (of the sorted batch) whose last position is an item, grid by grid (built once)."""
        if self._last_rows is None:
            rows = [first + layout.last_rows for first, (_, _, layout) in zip(self._first_rows, self.parts)]
            self._last_rows = rows[0] if len(rows) == 1 else torch.cat(rows)
        return self._last_rows

    @property
    def last_packed(self) -> torch.Tensor:
        """The packed row of each of `last_rows`' last position (built once)."""
        if self._last_packed is None:
            rows = [start + layout.last_packed for start, _, layout in self.parts]
            self._last_packed = rows[0] if len(rows) == 1 else torch.cat(rows)
        return self._last_packed

    def attend(self, attention_interface, module, query, key, value, scaling: float, dropout: float) -> torch.Tensor:
        """Packed projections (n_rows, hidden) -> packed attention output (n_rows, hidden), grid by grid.

        Per grid, q, k, v are scattered into its padded grid (zeros at padding: those keys are masked, and padded
        query rows are never read back) and attended by `attention_interface` with the grid's mask.
        """
        parts = []
        for start, end, layout in self.parts:
            q, k, v = (_split_heads(layout.scatter(t[start:end]), module.num_heads) for t in (query, key, value))
            attn_output, _ = attention_interface(module, q, k, v, layout.mask_bias, scaling=scaling, dropout=dropout)
            parts.append(layout.gather(attn_output.reshape(layout.batch, layout.length, -1)))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def attend_last(self, attention_interface, module, query, key, value, scaling: float, dropout: float):
        """Like `attend`, for the last position of the rows `last_rows` only: `query` (n_last, hidden) holds those
        positions' projections, in that order; `key`, `value` are every packed row's. Returns (n_last, hidden)."""
        query = query.view(query.shape[0], module.num_heads, 1, -1)
        parts, first = [], 0
        for start, end, layout in self.parts:
            q = query[first : first + len(layout.last_rows)]
            first += len(layout.last_rows)
            k = _split_heads(layout.rows_ending_in_item(layout.scatter(key[start:end])), module.num_heads)
            v = _split_heads(layout.rows_ending_in_item(layout.scatter(value[start:end])), module.num_heads)
            mask = layout.rows_ending_in_item(layout.mask_bias[..., -1:, :])
            attn_output, _ = attention_interface(module, q, k, v, mask, scaling=scaling, dropout=dropout)
            parts.append(attn_output.reshape(len(q), -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts)
