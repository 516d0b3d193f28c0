"""PyTorch BT-SR: the SASRec encoder of the paper's reference, its losses, and batched top-k recommendation.

Self-contained: imports only torch, transformers and its sibling files, because `save_pretrained` copies it to the
model folder (and the Hub) for `AutoModel.from_pretrained(..., trust_remote_code=True)`.
"""

import contextlib
import functools
import json
import math
import numbers
import os
import shutil
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from safetensors import SafetensorError
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, cached_file

from .configuration_btsr import BTSRConfig
from .losses_btsr import (
    barlow_twins_loss,
    cross_entropy_loss,
    infonce_loss,
    sample_negatives,
    sampled_bce_loss,
    scalable_cross_entropy_loss,
)

__all__ = [
    "BTSRPreTrainedModel",
    "BTSRModel",
    "BTSRForSequentialRecommendation",
    "BTSRModelOutput",
    "BTSRSequentialRecommendationOutput",
    "ITEM_VOCAB_NAME",
    "left_pad_sequences",
    "exclude_seen_items_",
    "deterministic_inference",
]

ITEM_VOCAB_NAME = "item_vocab.json"

# Query rows per attention block (see `BTSRSelfAttention.forward`); a speed setting, results do not depend on it.
ATTENTION_QUERY_BLOCK = 100
# Inference batches with at most this share of padding run on the padded grid itself instead of packed item rows
# (`_Layout`): packing's gathers and scatters cost more than the few padded rows they skip in length-sorted
# evaluation batches. A speed setting: item positions get the same values either way.
DENSE_LAYOUT_MAX_PADDING = 0.1
# Rows up to this length share the first attention group (`_length_group_bounds`); a speed setting.
ATTENTION_GROUP_MIN_LEN = 16


def left_pad_sequences(
    sequences: Sequence[Sequence[int]], max_len: int | None = None, pad_value: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pads integer sequences to the longest one, keeping the most recent (last) items.

    Args:
        sequences: item indices per row, oldest first.
        max_len: keep at most this many most recent items per row (`None`: keep all).
        pad_value: value of padded cells.

    Returns:
        `(ids, mask)`: `torch.LongTensor`s of shape `(batch, longest)`; `mask` is 1 on real items.

    Example:

    >>> ids, mask = left_pad_sequences([[1, 2, 3], [4]])
    >>> ids.tolist(), mask.tolist()
    ([[1, 2, 3], [0, 0, 4]], [[1, 1, 1], [0, 0, 1]])
    """
    rows = [s[-max_len:] if max_len else s for s in sequences]
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    longest = int(lengths.max()) if len(rows) else 0
    ids = torch.full((len(rows), longest), pad_value, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    if longest:
        # One scatter for the whole batch: a per-row copy loop dominated evaluation and collation time.
        values = torch.cat([torch.as_tensor(row, dtype=torch.long).reshape(-1) for row in rows])
        row_of = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        column = longest - lengths[row_of] + torch.arange(len(values)) - starts[row_of]
        ids[row_of, column] = values
        mask[row_of, column] = 1
    return ids, mask


def exclude_seen_items_(scores: torch.Tensor, seen: torch.Tensor, first_item: int = 1) -> torch.Tensor:
    """Sets to `-inf`, in place, the score of every item a user has seen: the one definition of "seen" that
    `BTSRModel.recommend` and the full-ranking evaluation share.

    A user has seen every item of the history given, however long; the encoder reads only its last
    `max_position_embeddings` items, but an item older than that window is still never recommended (the
    leave-one-out protocol, as in the authors' `downvote_seen_items`).

    Args:
        scores (`torch.FloatTensor` of shape `(batch, n)`): scores of items `first_item .. first_item + n - 1`
            (a chunk of the catalogue, or all of it).
        seen (`torch.LongTensor` of shape `(batch, length)`): each user's whole history as item indices, `0` for
            padding (`left_pad_sequences(histories)` without a `max_len`); items outside the chunk are ignored.
        first_item: the item index of column 0 of `scores`.

    Returns:
        `scores`, modified in place.

    Example: items 1..4, one user who has seen items 4 and 1; a chunk holding items 3..4.

    >>> scores = torch.zeros(1, 4)
    >>> exclude_seen_items_(scores, torch.tensor([[0, 4, 1]])).tolist()
    [[-inf, 0.0, 0.0, -inf]]
    >>> exclude_seen_items_(torch.zeros(1, 2), torch.tensor([[0, 4, 1]]), first_item=3).tolist()
    [[0.0, -inf]]
    """
    size = scores.shape[1]
    local = seen - first_item
    inside = (seen > 0) & (local >= 0) & (local < size)
    # Min-scatter -inf onto the seen items and +inf (a no-op) elsewhere: no boolean indexing, so no host sync on
    # accelerators, and clamped out-of-chunk indices cannot undo an exclusion whatever the write order.
    fill = torch.where(inside, float("-inf"), float("inf")).to(scores.dtype)
    return scores.scatter_reduce_(1, local.clamp(0, max(size - 1, 0)), fill, reduce="amin")


@dataclass
class BTSRModelOutput(ModelOutput):
    """Output of :class:`BTSRModel`.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, hidden)`): final (LayerNorm-ed) states,
            zero at padded positions.
        user_embeddings (`torch.FloatTensor` of shape `(batch, hidden)`): the last position's state, which scores
            the next item.
    """

    last_hidden_state: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None


@dataclass
class BTSRSequentialRecommendationOutput(ModelOutput):
    """Output of :class:`BTSRForSequentialRecommendation`.

    Args:
        loss (`torch.FloatTensor`, *optional*): `prediction_loss + bt_alpha * ssl_loss` (the SSL term only when a
            pair is given and `bt_alpha > 0`).
        prediction_loss (`torch.FloatTensor`, *optional*): CE / SCE / BCE; normalised by `num_items_in_batch`
            when given (CE and BCE), else a mean over labelled (SCE: picked) positions.
        bt_loss (`torch.FloatTensor`, *optional*): the Barlow Twins loss between the two views (`ssl_objective`
            `"barlow_twins"` only; then equal to `ssl_loss`).
        user_embeddings (`torch.FloatTensor` of shape `(batch, hidden)`): last-position states of `input_ids`.
        pair_user_embeddings (`torch.FloatTensor` of shape `(batch, hidden)`, *optional*): the same for the pair.
        num_prediction_positions (`torch.LongTensor`, *optional*): positions that entered the prediction loss.
        ssl_loss (`torch.FloatTensor`, *optional*): the self-supervised loss of the config's `ssl_objective`
            (Barlow Twins or InfoNCE) between the two views.
    """

    loss: torch.FloatTensor | None = None
    prediction_loss: torch.FloatTensor | None = None
    bt_loss: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None
    pair_user_embeddings: torch.FloatTensor | None = None
    num_prediction_positions: torch.LongTensor | None = None
    ssl_loss: torch.FloatTensor | None = None


class BTSRSelfAttention(nn.Module):
    """Causal multi-head attention with a key-padding mask; queries come from the normalised stream (SASRec)."""

    def __init__(self, config: BTSRConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        for linear in (self.query, self.key, self.value, self.output):
            linear._zero_bias_init = True
        self.dropout_prob = float(config.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, groups: "_AttentionGroups") -> torch.Tensor:
        """`queries`, `keys`: packed item positions (n_items_in_batch, hidden); `groups` (built once per forward by
        `BTSRModel`) splits the packed rows into groups of batch rows, each with its own padded grid (`_Layout`)
        and additive mask (n_rows or 1, 1, grid_len, grid_len), 0 where a query may attend to a key and -inf
        elsewhere. Returns packed rows.

        Projections run on all item positions at once; per group, q, k, v are scattered into its padded grid (zeros
        at padding: those keys are masked, and padded query rows are never read back) for the attention products.

        Passes that record gradients are written out rather than `F.scaled_dot_product_attention`: with dropout or
        a mask, SDPA takes its math path on CPU anyway, converting the mask and drawing `bernoulli_` dropout every
        call; here the mask is shared by all blocks and dropout draws cheaper uniform noise. Inference (no
        gradient, no active dropout) calls SDPA, whose fused kernel takes the additive mask as it is (on CPU 0.34 s
        of attention per ML-1M evaluation pass against 0.47 s written out, in two profiles of
        benchmarks/evaluation_speed.py --profile). Same formula: `softmax(QK^T / sqrt(d_h) + mask) V`.
        """
        q_packed = self.query(queries) * (1.0 / math.sqrt(self.head_dim))
        k_packed, v_packed = self.key(keys), self.value(keys)
        parts = [
            self._attend(q_packed[start:end], k_packed[start:end], v_packed[start:end], layout)
            for start, end, layout in groups.parts
        ]
        return self.output(parts[0] if len(parts) == 1 else torch.cat(parts))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: "_Layout") -> torch.Tensor:
        """Attention of one group: packed projections (n, hidden) -> packed attended values (n, hidden)."""
        q, k, v = (self._heads(layout.scatter(t)) for t in (q, k, v))
        batch, _, length, _ = q.shape
        if not torch.is_grad_enabled() and not (_stochastic(self) and self.dropout_prob > 0):
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask_bias, scale=1.0)
            return layout.gather(attended.transpose(1, 2).reshape(batch, length, -1))
        # Causal: queries [start, end) see keys [0, end) only, so the all-masked upper blocks are never computed
        # (an exp(-inf) = 0 term less in a softmax changes nothing); ~35% fewer products and dropout draws at 200.
        block = ATTENTION_QUERY_BLOCK if length > ATTENTION_QUERY_BLOCK else length
        parts = []
        for start in range(0, length, block):
            end = min(start + block, length)
            scores = (q[:, :, start:end] @ k[:, :, :end].transpose(-1, -2)).add_(layout.mask_bias[..., start:end, :end])
            weights = _dropout(torch.softmax(scores, dim=-1), self.dropout_prob, _stochastic(self))
            parts.append(weights @ v[:, :, :end])
        attended = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return layout.gather(attended.transpose(1, 2).reshape(batch, length, -1))

    def forward_last(self, queries: torch.Tensor, keys: torch.Tensor, groups: "_AttentionGroups") -> torch.Tensor:
        """Like `forward`, for the last position of the rows `groups.last_rows` only: `queries` (n_rows, hidden)
        are those positions' queries, in that order; `keys` all packed item positions. Returns (n_rows, hidden)."""
        n_rows = queries.shape[0]
        q_rows = (self.query(queries) * (1.0 / math.sqrt(self.head_dim))).view(n_rows, self.num_heads, 1, -1)
        k_packed, v_packed = self.key(keys), self.value(keys)
        parts, first = [], 0
        for start, end, layout in groups.parts:
            q = q_rows[first : first + len(layout.last_rows)]
            first += len(layout.last_rows)
            k = self._heads(layout.rows_ending_in_item(layout.scatter(k_packed[start:end])))
            v = self._heads(layout.rows_ending_in_item(layout.scatter(v_packed[start:end])))
            scores = (q @ k.transpose(-1, -2)).add_(layout.rows_ending_in_item(layout.mask_bias[..., -1:, :]))
            weights = _dropout(torch.softmax(scores, dim=-1), self.dropout_prob, _stochastic(self))
            parts.append((weights @ v).reshape(len(q), -1))
        return self.output(parts[0] if len(parts) == 1 else torch.cat(parts))


class _Layout:
    """Where the packed item positions of a left-padded batch sit in its (batch, seq_len) grid.

    With `dense=True` every grid position is a packed row (padding included): `gather` and `scatter` are then
    reshapes, and padded rows carry values that no item position reads (padded keys are masked, padded queries are
    dropped), zeroed where the grid is returned. `is_item` (batch, seq_len) is the grid's mask of item positions.
    """

    def __init__(self, is_item: torch.Tensor, dense: bool = False, dtype: torch.dtype = torch.float32):
        self.batch, self.length = is_item.shape
        self.dense = dense
        self.dtype = dtype
        if dense:
            self.index = torch.arange(self.batch * self.length, device=is_item.device)
        else:
            self.index = is_item.reshape(-1).nonzero().squeeze(1)  # flat grid positions of items, row-major
        self.is_item = is_item

    @functools.cached_property
    def mask_bias(self) -> torch.Tensor:
        """The grid's additive attention mask (see `_attention_mask_bias`), built once and shared by all blocks."""
        return _attention_mask_bias(self.is_item, self.dtype)

    @functools.cached_property
    def all_rows(self) -> bool:
        """Whether every row ends in an item (no empty row)."""
        return bool(self.is_item[:, -1].all())

    @functools.cached_property
    def last_rows(self) -> torch.Tensor:
        """Batch rows whose last position is an item (all rows but empty ones, with left padding)."""
        return self.is_item[:, -1].nonzero().squeeze(1)

    @functools.cached_property
    def last_packed(self) -> torch.Tensor:
        """The packed row of each of `last_rows`' last position."""
        if self.dense:
            return self.last_rows * self.length + (self.length - 1)
        return (self.is_item.sum(dim=1).cumsum(0) - 1).index_select(0, self.last_rows)  # a row's last packed row

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


class _AttentionGroups:
    """The groups of batch rows that attention runs in, each on its own grid (`BTSRConfig.length_grouped_attention`).

    `parts` lists `(packed_start, packed_end, layout)` per group: with the batch's rows sorted by length, a group's
    item positions are one contiguous slice of the packed rows, and its `_Layout` is the grid of its rows cut to its
    longest row (left padding: the cut columns are padding in every one of its rows). Ungrouped: one part, the
    whole batch's layout.
    """

    def __init__(self, layout: _Layout, bounds: list[tuple[int, int, int]] | None = None):
        if bounds is None:
            self.parts = [(0, len(layout.index), layout)]
            self._first_rows = [0]
            return
        self.parts, self._first_rows, packed_start = [], [], 0
        for row_start, row_end, grid_len in bounds:
            group = _Layout(layout.is_item[row_start:row_end, layout.length - grid_len :], dtype=layout.dtype)
            self.parts.append((packed_start, packed_start + len(group.index), group))
            self._first_rows.append(row_start)
            packed_start += len(group.index)

    @functools.cached_property
    def last_rows(self) -> torch.Tensor:
        """Batch rows (of the sorted batch) whose last position is an item, group by group."""
        rows = [first + layout.last_rows for first, (_, _, layout) in zip(self._first_rows, self.parts)]
        return rows[0] if len(rows) == 1 else torch.cat(rows)

    @functools.cached_property
    def last_packed(self) -> torch.Tensor:
        """The packed row of each of `last_rows`' last position."""
        rows = [start + layout.last_packed for start, _, layout in self.parts]
        return rows[0] if len(rows) == 1 else torch.cat(rows)


def _length_group_bounds(sorted_lengths: list[int]) -> list[tuple[int, int, int]] | None:
    """Row groups for attention: `(row_start, row_end, grid_len)` per group of the rows, sorted by length, whose
    lengths fall in one power-of-two bin (lengths up to `ATTENTION_GROUP_MIN_LEN` share the first), `grid_len`
    the group's longest row. Empty rows (length 0) join no group: they have no position to compute. `None` when
    every non-empty row falls in one bin (one grid, as ungrouped). A row in a grid at most twice its length wastes
    at most 3/4 of its attention cells on padding (the first bin's grids, at most 16 long, are cheap whatever their
    padding), against nearly all of them on one 200-long grid for short-history data; a handful of groups keeps the
    per-group overhead small.

    >>> _length_group_bounds([0, 3, 9, 16, 17, 40, 200])
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


def _attention_mask_bias(is_item: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive attention mask shared by every block, (batch, 1, seq_len, seq_len): 0 where query i may attend
    to key j (j <= i and j an item), -inf elsewhere; padded query rows attend to themselves, so no softmax row is
    empty (their outputs are never read). Built as a causal (seq_len, seq_len) bias plus a key-padding (batch, 1,
    seq_len) bias in one broadcast add: the (batch, seq_len, seq_len) grid is written once. A batch without padding
    (most length-sorted evaluation batches of long histories) gets the causal bias alone, (1, 1, seq_len, seq_len),
    broadcast over the batch."""
    length = is_item.shape[1]
    causal = torch.full((length, length), float("-inf"), dtype=dtype, device=is_item.device).triu_(1)
    if bool(is_item.all()):
        return causal.view(1, 1, length, length)
    minus_inf = torch.tensor(float("-inf"), dtype=dtype, device=is_item.device)
    zero = torch.zeros((), dtype=dtype, device=is_item.device)
    keys = torch.where(is_item, zero, minus_inf).unsqueeze(1)
    mask_bias = causal + keys
    mask_bias.diagonal(dim1=-2, dim2=-1).zero_()  # item rows may see themselves anyway; padded rows need a key
    return mask_bias.unsqueeze(1)


_THREAD = threading.local()


@contextlib.contextmanager
def deterministic_inference():
    """Runs the model without dropout in this thread, whatever its `train()` / `eval()` mode, and leaves the mode
    alone: `recommend` and the evaluation use it, so calls from several threads never flip a shared module's mode
    (another thread may be training it).

    >>> model = BTSRModel(BTSRConfig(num_items=5, hidden_size=8, max_position_embeddings=4)).train()
    >>> with deterministic_inference(), torch.no_grad():
    ...     same = torch.equal(model(torch.tensor([[1, 2]])).user_embeddings, model(torch.tensor([[1, 2]])).user_embeddings)
    >>> same, model.training
    (True, True)
    """
    previous = getattr(_THREAD, "inference", False)
    _THREAD.inference = True
    try:
        yield
    finally:
        _THREAD.inference = previous


def _stochastic(module: nn.Module) -> bool:
    """Whether `module` draws dropout now: in training mode and outside `deterministic_inference`."""
    return module.training and not getattr(_THREAD, "inference", False)


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, like `F.dropout`: each element kept with probability `1 - p` and scaled by `1 / (1 - p)`.

    The keep mask is `uniform[0, 1) >= p`, drawn with `torch.rand_like`, which on CPU costs a fraction of the
    `bernoulli_` that `F.dropout` draws (same distribution; a different random stream than `F.dropout`).
    """
    if not training or p == 0.0:
        return x
    noise = torch.rand_like(x).ge_(p).div_(1.0 - p)  # 0 or 1 / (1 - p); no gradient flows into the mask
    return x * noise


class BTSRDropout(nn.Dropout):
    """`nn.Dropout` with the cheaper mask of `_dropout` (same distribution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _dropout(x, self.p, _stochastic(self))


class BTSRFeedForward(nn.Module):
    """SASRec's point-wise feed-forward: two d -> d linears with ReLU and dropout, plus the residual."""

    def __init__(self, config: BTSRConfig):
        super().__init__()
        self.dense_in = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense_out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = BTSRDropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.dense_out(F.relu(self.dropout(self.dense_in(x)))))


class BTSRBlock(GradientCheckpointingLayer):
    """One reference block: `Q = LN(x); x = Q + MHA(Q, x, x); x = LN(x); x = x + FFN(x)`; padding zeroed.

    With `model.activation_checkpointing_enable()` (or `--gradient_checkpointing`), `forward` keeps only its input for
    the backward pass and recomputes the rest, with the same dropout masks (the RNG state is replayed): the same
    gradients for ~1/3 more encoder compute and a fraction of the activation memory (benchmarks/performance.py).
    `forward_last` (the last block of the partner pass, last positions only) is not checkpointed: it is small.
    """

    def __init__(self, config: BTSRConfig):
        super().__init__()
        self.attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = BTSRSelfAttention(config)
        self.feed_forward_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = BTSRFeedForward(config)

    def forward(self, x: torch.Tensor, groups: _AttentionGroups) -> torch.Tensor:
        """`x`: packed item positions (n_items_in_batch, hidden); padding is never computed (the reference zeroes
        it after every block, and padded keys are masked, so item positions are unaffected)."""
        queries = self.attention_layernorm(x)
        x = queries + self.attention(queries, x, groups)
        return self.feed_forward(self.feed_forward_layernorm(x))

    def forward_last(self, x: torch.Tensor, groups: _AttentionGroups) -> torch.Tensor:
        """The block's output at the last position of the rows `groups.last_rows` only, (n_rows, hidden): keys and
        values still come from every position, but the query-side path (LayerNorm, attention row, residual,
        feed-forward) runs for those positions alone."""
        queries = self.attention_layernorm(x.index_select(0, groups.last_packed))
        x = queries + self.attention.forward_last(queries, x, groups)
        return self.feed_forward(self.feed_forward_layernorm(x))


class BTSRPreTrainedModel(PreTrainedModel):
    """Weights initialisation, the item vocabulary file, and loading shared by the BT-SR classes."""

    config_class = BTSRConfig
    base_model_prefix = "btsr"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module):
        """Xavier-uniform on every matrix (the reference); attention biases zero, feed-forward biases as PyTorch."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is None:
                pass
            elif getattr(module, "_zero_bias_init", False):
                init.zeros_(module.bias)  # nn.MultiheadAttention's zero biases, as in the reference
            else:
                bound = 1.0 / math.sqrt(module.in_features)  # PyTorch's default bias init (reference's FFN)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding):
            init.xavier_uniform_(module.weight)
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    # The vocabulary lives in its own file beside config.json: a large catalogue would bloat the config.
    def save_pretrained(self, save_directory, *args, **kwargs):
        # Whichever class is saved, the folder loads as `BTSRModel` through AutoModel, also as Hub custom code.
        if "AutoModel" not in (getattr(self.config, "auto_map", None) or {}):
            self.config.auto_map = {
                "AutoConfig": "configuration_btsr.BTSRConfig",
                "AutoModel": "modeling_btsr.BTSRModel",
            }
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            here = os.path.dirname(os.path.abspath(__file__))
            for name in ("configuration_btsr.py", "modeling_btsr.py", "losses_btsr.py"):
                source, target = os.path.join(here, name), os.path.join(save_directory, name)
                if os.path.abspath(source) != os.path.abspath(target):
                    shutil.copyfile(source, target)
        vocab = self.base_model.item_vocab
        if vocab is not None and kwargs.get("is_main_process", True):
            path = os.path.join(save_directory, ITEM_VOCAB_NAME)
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(vocab, handle)
            os.replace(path + ".tmp", path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        folder = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(os.path.join(folder, kwargs.get("subfolder", ""))):
            _check_model_folder(os.path.join(folder, kwargs.get("subfolder", "")))
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:  # a truncated or empty weights file
            raise OSError(f"{folder}: the weights file cannot be read, it is damaged or truncated ({error})") from None
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True gives a pair
        vocab_file = cached_file(
            pretrained_model_name_or_path,
            ITEM_VOCAB_NAME,
            cache_dir=kwargs.get("cache_dir"),
            revision=kwargs.get("revision"),
            local_files_only=kwargs.get("local_files_only", False),
            token=kwargs.get("token"),
            subfolder=kwargs.get("subfolder", ""),
            _raise_exceptions_for_missing_entries=False,
        )
        if vocab_file is not None:
            try:
                with open(vocab_file, encoding="utf-8") as handle:
                    vocab = json.load(handle)
                model.base_model.set_item_vocab(vocab)
            except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
                raise ValueError(f"{vocab_file}: {error}") from None
        return loaded


def _check_model_folder(folder: str) -> None:
    """A local model folder has a BT-SR config and a non-empty weights file: a one-line error naming the file."""
    config_file = os.path.join(folder, "config.json")
    if not os.path.isfile(config_file):
        raise OSError(f"{folder}: no config.json, so not a saved model (a BT-SR folder holds config.json, the weights "
                      f"and {ITEM_VOCAB_NAME})")  # fmt: skip
    try:
        with open(config_file, encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{config_file}: not a valid config ({error})") from None
    if model_type != BTSRConfig.model_type:
        raise ValueError(f"{config_file}: model_type is {model_type!r}, not {BTSRConfig.model_type!r}")
    weights = [name for name in os.listdir(folder) if name.endswith((".safetensors", ".bin", ".safetensors.index.json"))]
    if not weights:
        raise OSError(f"{folder}: no weights file (model.safetensors)")
    for name in weights:
        if os.path.getsize(os.path.join(folder, name)) == 0:
            raise OSError(f"{os.path.join(folder, name)}: empty weights file")


class BTSRModel(BTSRPreTrainedModel):
    """The BT-SR / SASRec encoder with tied item embeddings, the item vocabulary and `recommend`.

    This is what `AutoModel.from_pretrained` returns. Inputs are left-padded item indices; position ids are
    aligned so the most recent item always takes the last position (`max_position_embeddings - 1`), which together
    with the key-padding mask makes outputs independent of how much padding a row has.
    """

    def __init__(self, config: BTSRConfig):
        super().__init__(config)
        # Rows: padding, items 1..num_items, and the CL4SRec mask token num_items + 1 only when masked views are drawn.
        self.item_embeddings = nn.Embedding(config.num_item_embeddings, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_dropout = BTSRDropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(BTSRBlock(config) for _ in range(config.num_hidden_layers))
        self.final_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.item_vocab = None
        self._item_to_index = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.item_embeddings = value

    def item_embedding_matrix(self) -> torch.Tensor:
        """Scoring matrix of items `1..num_items`, `(num_items, hidden)`: row `j` is item index `j + 1`."""
        return self.item_embeddings.weight[1 : self.config.num_items + 1]  # never the padding or mask token row

    def set_item_vocab(self, vocab: dict | None):
        """Sets the raw-id vocabulary: `{"item_ids": [...], "item_counts": [...]}`, entry `j` = item index `j + 1`.

        `item_counts` (optional) are training interaction counts, used to serve users with no known history.
        """
        if vocab is None:
            self.item_vocab, self._item_to_index = None, None
            return
        if not isinstance(vocab, dict) or "item_ids" not in vocab:
            raise ValueError("an item vocabulary is a mapping with an 'item_ids' list")
        item_ids = list(vocab["item_ids"])
        if len(item_ids) != self.config.num_items:
            raise ValueError(f"item vocabulary has {len(item_ids)} ids but the model has {self.config.num_items} items")
        # Built once here, so concurrent `recommend` calls only read it.
        to_index = {raw: index + 1 for index, raw in enumerate(item_ids)}
        if len(to_index) != len(item_ids):
            first = next(i for i, raw in enumerate(item_ids) if to_index[raw] != i + 1)
            raise ValueError(f"item vocabulary repeats id {item_ids[first]!r} (entries {first + 1} and "
                             f"{to_index[item_ids[first]]}): ids must be distinct")  # fmt: skip
        counts = vocab.get("item_counts")
        if counts is not None and len(counts) != self.config.num_items:
            raise ValueError(f"item_counts has {len(counts)} entries but the model has {self.config.num_items} items")
        self.item_vocab = dict(vocab, item_ids=item_ids)
        self._item_to_index = to_index

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        user_embeddings_only: bool = False,
        position_offsets: torch.LongTensor | None = None,
        **kwargs,
    ) -> BTSRModelOutput | tuple:
        """Encodes left-padded sequences.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): item indices, 0 = padding, oldest first,
                `seq_len <= max_position_embeddings`.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 1 on items; defaults to
                `input_ids != 0`.
            user_embeddings_only (`bool`, defaults to `False`): compute `user_embeddings` alone (the same values),
                skipping the last block's query-side work at every other position; `last_hidden_state` is then
                `None`. Used for the Barlow Twins partner pass.
            position_offsets (`torch.LongTensor` of shape `(batch,)`, *optional*): how many positions before the
                newest one each row ends (default 0: its last item takes the last position embedding). A prefix of
                a sequence encoded with offset = the number of items after it gets the positions it has in the
                sequence, so its last state equals that sequence's state at the prefix's end (causal attention).
        """
        batch, length = input_ids.shape
        max_len = self.config.max_position_embeddings
        if length > max_len:
            raise ValueError(
                f"sequences of length {length} exceed max_position_embeddings={max_len}; keep the last {max_len} items"
            )
        is_item = (input_ids != 0) if attention_mask is None else attention_mask.bool()
        if position_offsets is not None:
            if position_offsets.shape != (batch,):
                raise ValueError(f"position_offsets must have shape ({batch},), got {tuple(position_offsets.shape)}")
            room = max_len - is_item.sum(dim=1)  # positions left before each row's first item
            bad = ((position_offsets.to(room.device) < 0) | (position_offsets.to(room.device) > room)).nonzero()
            if len(bad):
                row = int(bad[0])
                raise ValueError(
                    f"position_offsets[{row}] = {int(position_offsets[row])} is outside 0..{int(room[row])} "
                    f"(max_position_embeddings {max_len} minus the row's {max_len - int(room[row])} items)"
                )
        # Position-wise layers run on item positions only (packed rows); padding stays zero, as in the reference.
        # Inference on nearly unpadded batches skips the packing (same values at item positions); training always
        # packs, so its random dropout streams do not depend on the batch's padding.
        dense = not (_stochastic(self) or torch.is_grad_enabled()) and (
            1.0 - float(is_item.sum()) / max(is_item.numel(), 1) <= DENSE_LAYOUT_MAX_PADDING
        )
        order, bounds = None, None
        if self.config.length_grouped_attention and not dense:
            sorted_lengths, order = torch.sort(is_item.sum(dim=1), stable=True)
            bounds = _length_group_bounds(sorted_lengths.tolist())
            if bounds is None:
                order = None  # one group: the batch as it is
            else:  # rows sorted by length, so that each group's item positions are contiguous once packed
                input_ids, is_item = input_ids.index_select(0, order), is_item.index_select(0, order)
                if position_offsets is not None:
                    position_offsets = position_offsets.index_select(0, order.to(position_offsets.device))
        layout = _Layout(is_item, dense=dense, dtype=self.item_embeddings.weight.dtype)
        groups = _AttentionGroups(layout, bounds)
        positions = layout.index % length + (max_len - length)
        if position_offsets is not None:
            shift = position_offsets.to(positions.device).index_select(0, layout.index // length)
            positions = (positions - shift).clamp_min(0)  # only padded cells (dense layout) could fall below 0
        x = self.item_embeddings(input_ids.reshape(-1).index_select(0, layout.index)) * math.sqrt(
            self.config.hidden_size
        ) + self.position_embeddings(positions)
        x = self.embedding_dropout(x)
        if user_embeddings_only:
            for block in self.blocks[:-1]:
                x = block(x, groups)
            last = self.final_layernorm(self.blocks[-1].forward_last(x, groups))
            rows = groups.last_rows if order is None else order.index_select(0, groups.last_rows)
            users = last.new_zeros(batch, last.shape[-1]).index_copy(0, rows, last)
            output = BTSRModelOutput(last_hidden_state=None, user_embeddings=users)
            return output if return_dict is not False else output.to_tuple()
        for block in self.blocks:
            x = block(x, groups)
        x = layout.scatter(self.final_layernorm(x))
        if layout.dense:
            x = x * is_item.unsqueeze(-1).to(x.dtype)  # padding zeroed, as in the reference
        if order is not None:
            x = x.index_select(0, order.argsort())  # back to the batch's own row order
        output = BTSRModelOutput(last_hidden_state=x, user_embeddings=x[:, -1])
        return output if return_dict is not False else output.to_tuple()

    def _encode_indices(self, histories: list[list[int]], batch_size: int) -> torch.Tensor:
        """User embeddings `(n_users, hidden)` of index histories (each non-empty), in length-sorted batches."""
        device = self.item_embeddings.weight.device
        max_len = self.config.max_position_embeddings
        order = sorted(range(len(histories)), key=lambda i: len(histories[i]))
        embeddings = torch.empty(len(histories), self.config.hidden_size, device=device)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = left_pad_sequences([histories[i] for i in rows], max_len)
            out = self(ids.to(device), mask.to(device), user_embeddings_only=True)
            embeddings[torch.as_tensor(rows, device=device)] = out.user_embeddings.to(embeddings.dtype)
        return embeddings

    @torch.inference_mode()
    def recommend(
        self,
        histories: Iterable[Sequence],
        k: int = 10,
        exclude_seen: bool = True,
        unknown_items: str = "error",
        batch_size: int = 256,
        return_scores: bool = False,
    ):
        """Top-`k` next items for each history, in raw item ids of the training data.

        Args:
            histories: one history per user, oldest first: lists, tuples, 1-D numpy arrays or tensors of raw item
                ids (or an iterable of them, a generator included; a 2-D array or tensor is one row per user).
                Only the last `max_position_embeddings` items are read.
            k (`int`): list length, >= 1; larger than the catalogue returns every item that can be recommended.
            exclude_seen: never recommend an item of the user's own history, the whole of it (see
                `exclude_seen_items_`).
            unknown_items: `"error"` (default) raises `KeyError` naming the id and the user; `"skip"` drops
                unknown ids with a warning.
            batch_size (`int`): users scored at once, >= 1; scoring and top-k run on the model's device.
            return_scores: also return the scores of the listed items.

        Returns:
            `list[list]` of raw ids (ints stay ints, strings stay strings), best first; with `return_scores`, a
            pair `(ids, scores)`. A user with no known item gets the most popular training items (or an error
            when the saved vocabulary has no counts).

        Never changes the module's `train()` / `eval()` mode (dropout is off inside, see `deterministic_inference`),
        so it is safe to call from several threads, and it scores in float32 whatever dtype the weights are in.

        Example:

        >>> model = BTSRModel(BTSRConfig(num_items=3, hidden_size=8, max_position_embeddings=4))
        >>> model.set_item_vocab({"item_ids": ["a", "b", "c"]})
        >>> [len(row) for row in model.recommend([["a"], ("b", "c")], k=5)]  # items seen are never listed
        [2, 1]
        """
        if self._item_to_index is None:
            raise ValueError("this model has no item vocabulary; set it with `set_item_vocab` or load a saved model")
        if unknown_items not in ("error", "skip"):
            raise ValueError(f"unknown_items must be 'error' or 'skip', got {unknown_items!r}")
        k, batch_size = _positive_int(k, "k"), _positive_int(batch_size, "batch_size")
        indexed = []
        for user, history in enumerate(_history_rows(histories)):
            row = [self._item_to_index.get(item) for item in history]
            if None in row:
                missing = [item for item, index in zip(history, row) if index is None]
                if unknown_items == "error":
                    raise KeyError(f"user {user}: item id {missing[0]!r} is not in the model's vocabulary")
                warnings.warn(f"user {user}: skipped {len(missing)} unknown item id(s), e.g. {missing[0]!r}")
                row = [index for index in row if index is not None]
            indexed.append(row)

        num_items = self.config.num_items
        k = min(k, num_items)
        with deterministic_inference():
            device = self.item_embeddings.weight.device
            items = self.item_embedding_matrix().float()
            known = [i for i, row in enumerate(indexed) if row]
            results: list = [None] * len(indexed)
            scores_out: list = [None] * len(indexed)
            for start in range(0, len(known), batch_size):
                rows = known[start : start + batch_size]
                users = self._encode_indices([indexed[i] for i in rows], batch_size)
                scores = users.float() @ items.T
                if exclude_seen:
                    exclude_seen_items_(scores, left_pad_sequences([indexed[i] for i in rows])[0].to(device))
                top_scores, top_index = scores.topk(k, dim=1)
                for i, user_scores, user_index in zip(rows, top_scores.tolist(), top_index.tolist()):
                    keep = [j for j, s in enumerate(user_scores) if s != float("-inf")]
                    results[i] = [self.item_vocab["item_ids"][user_index[j]] for j in keep]
                    scores_out[i] = [user_scores[j] for j in keep]
            empty = [i for i, row in enumerate(indexed) if not row]
            if empty:
                counts = self.item_vocab.get("item_counts")
                if counts is None:
                    raise ValueError(f"user {empty[0]}: empty history and no popularity counts to fall back on")
                popular = sorted(range(num_items), key=lambda j: -counts[j])[:k]
                for i in empty:
                    results[i] = [self.item_vocab["item_ids"][j] for j in popular]
                    scores_out[i] = [float(counts[j]) for j in popular]
        return (results, scores_out) if return_scores else results


def _positive_int(value, name: str) -> int:
    """`value` as an int >= 1; a bool, a float or a string is refused rather than coerced."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers are Integral
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _history_rows(histories) -> list[list]:
    """The histories as lists of plain Python ids: one normaliser for every input `recommend` accepts.

    A string is never a history (it would be read character by character), a bool is never an item id (`True` would
    be item `1`), and a single flat list of ids is refused as ambiguous (pass `[history]`).
    """
    if histories is None or isinstance(histories, (str, bytes, dict)):
        raise TypeError(f"histories must be a list of item-id sequences, one per user, got {type(histories).__name__}")
    if hasattr(histories, "tolist") and getattr(histories, "ndim", 2) == 2:  # a 2-D numpy array or tensor
        histories = histories.tolist()
    if not isinstance(histories, Iterable):
        raise TypeError(f"histories must be a list of item-id sequences, one per user, got {type(histories).__name__}")
    rows = []
    for user, history in enumerate(histories):  # a generator is consumed once, here
        if hasattr(history, "tolist") and getattr(history, "ndim", 1) == 1:  # numpy array or tensor
            history = history.tolist()
        if isinstance(history, (str, bytes)) or not isinstance(history, (list, tuple)):
            raise TypeError(
                f"user {user}: a history must be a list, tuple, 1-D array or tensor of item ids, got "
                f"{type(history).__name__} {history!r:.40}" + (" (pass [history] for one user)" if user == 0 else "")
            )
        row = [item.item() if hasattr(item, "item") and not isinstance(item, (str, bytes)) else item for item in history]
        if any(isinstance(item, bool) for item in row):
            raise TypeError(f"user {user}: True / False is not an item id")
        rows.append(row)
    return rows


class BTSRForSequentialRecommendation(BTSRPreTrainedModel):
    """BT-SR for training: the encoder, the prediction loss and the Barlow Twins loss on pairs of sequences.

    `loss = prediction_loss + bt_alpha * ssl_loss`, where the self-supervised term (`config.ssl_objective`: Barlow
    Twins, or InfoNCE for the CL4SRec / DuoRec baselines) compares the last-position embeddings of view A
    (`view_input_ids` when given, else `input_ids`) and view B `pair_input_ids` (for BT-SR, another user's sequence
    with the same next item), and runs only when a pair is given and `bt_alpha > 0`.
    """

    # The Trainer then passes `num_items_in_batch` and leaves gradient-accumulation scaling to BTSRTrainer.
    accepts_loss_kwargs = True

    def __init__(self, config: BTSRConfig):
        super().__init__(config)
        self.btsr = BTSRModel(config)
        self.projector = None
        if config.bt_projector_dims:
            layers, width = [], config.hidden_size
            for i, out in enumerate(config.bt_projector_dims):
                layers.append(nn.Linear(width, int(out)))
                if i < len(config.bt_projector_dims) - 1:
                    layers.append(nn.ReLU())
                width = int(out)
            self.projector = nn.Sequential(*layers)
        self.sce_generator = None  # optional torch.Generator for SCE bucket centres / BCE negatives
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.btsr.item_embeddings

    def recommend(self, *args, **kwargs):
        """See :meth:`BTSRModel.recommend`."""
        return self.btsr.recommend(*args, **kwargs)

    def prediction_loss(
        self, hidden: torch.Tensor, labels: torch.Tensor, input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """`(loss, n_positions, is_sum)` of the configured prediction loss on labelled positions only.

        `hidden` (batch, seq_len, d), `labels` (batch, seq_len) with -100 where there is no target. CE and BCE
        return sums (normalised by the caller); SCE returns its mean over picked positions.
        """
        config = self.config
        labelled = labels != -100
        rows = labelled.nonzero(as_tuple=True)[0]
        states, targets = hidden[labelled], labels[labelled]
        items = self.btsr.item_embedding_matrix()
        if config.loss_type == "ce":
            return cross_entropy_loss(states, targets, items), targets.numel(), True
        if config.loss_type == "bce":
            seen = torch.cat([input_ids, labels.clamp_min(0)], dim=1)
            negatives, valid = sample_negatives(seen, config.num_items, config.bce_num_negatives, self.sce_generator)
            loss = sampled_bce_loss(states, targets, items, negatives[rows], valid[rows])
            return loss, targets.numel(), True
        n_buckets = config.sce_n_buckets or config.sce_bucket_size_x or 1
        bucket_size_x = config.sce_bucket_size_x or n_buckets
        total, picked = scalable_cross_entropy_loss(
            states,
            targets,
            items,
            n_buckets=n_buckets,
            bucket_size_x=bucket_size_x,
            bucket_size_y=config.sce_bucket_size_y,
            mix_x=config.sce_mix_x,
            generator=self.sce_generator,
        )
        return total / picked.clamp_min(1), picked, False

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pair_input_ids: torch.LongTensor | None = None,
        pair_attention_mask: torch.Tensor | None = None,
        view_input_ids: torch.LongTensor | None = None,
        view_attention_mask: torch.Tensor | None = None,
        pair_position_offsets: torch.LongTensor | None = None,
        view_position_offsets: torch.LongTensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BTSRSequentialRecommendationOutput | tuple:
        """Encodes a batch and computes the losses.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): left-padded item indices.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 1 on items.
            labels (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*): next item at each position,
                -100 where there is none.
            pair_input_ids (`torch.LongTensor` of shape `(batch, pair_len)`, *optional*): the second view of each
                row (a same-target partner's sequence).
            pair_attention_mask (`torch.Tensor` of shape `(batch, pair_len)`, *optional*).
            view_input_ids (`torch.LongTensor` of shape `(batch, view_len)`, *optional*): view A of the SSL loss
                when it is not the prediction pass of `input_ids` (CL4SRec: an augmented sequence; DuoRec: the
                sequence again, for a second dropout pass).
            view_attention_mask (`torch.Tensor` of shape `(batch, view_len)`, *optional*).
            pair_position_offsets, view_position_offsets (`torch.LongTensor` of shape `(batch,)`, *optional*): the
                views' `position_offsets` (see `BTSRModel.forward`): prefixes encoded at their place in the sequence.
            num_items_in_batch (`int`, *optional*): labelled positions of the whole (accumulated, all-process)
                batch; CE and BCE are divided by it instead of by the local count.
        """
        encoded = self.btsr(input_ids, attention_mask)
        user_embeddings = encoded.user_embeddings
        prediction_loss = bt_loss = ssl_loss = pair_embeddings = n_positions = None
        if labels is not None:
            total, n_positions, is_sum = self.prediction_loss(encoded.last_hidden_state, labels, input_ids)
            if is_sum:
                denominator = num_items_in_batch if num_items_in_batch is not None else max(int(n_positions), 1)
                prediction_loss = total / denominator
            else:
                prediction_loss = total
            n_positions = torch.as_tensor(n_positions, device=input_ids.device)
        if pair_input_ids is not None and self.config.bt_alpha > 0:
            pair_embeddings = self.btsr(
                pair_input_ids, pair_attention_mask, user_embeddings_only=True, position_offsets=pair_position_offsets
            ).user_embeddings
            view_a, view_b = user_embeddings, pair_embeddings
            if view_input_ids is not None:
                view_a = self.btsr(
                    view_input_ids,
                    view_attention_mask,
                    user_embeddings_only=True,
                    position_offsets=view_position_offsets,
                ).user_embeddings
            if self.projector is not None:
                view_a, view_b = self.projector(view_a), self.projector(view_b)
            if self.config.ssl_objective == "infonce":
                ssl_loss = infonce_loss(
                    view_a, view_b, self.config.infonce_temperature, self.config.infonce_similarity
                )
            else:
                ssl_loss = bt_loss = barlow_twins_loss(view_a, view_b, self.config.bt_lambda)
        loss = None
        if prediction_loss is not None:
            loss = prediction_loss if ssl_loss is None else prediction_loss + self.config.bt_alpha * ssl_loss
        output = BTSRSequentialRecommendationOutput(
            loss=loss,
            prediction_loss=prediction_loss,
            bt_loss=bt_loss,
            user_embeddings=user_embeddings,
            pair_user_embeddings=pair_embeddings,
            num_prediction_positions=n_positions,
            ssl_loss=ssl_loss,
        )
        return output if return_dict is not False else output.to_tuple()
