"""PyTorch BT-SR: the SASRec encoder of the paper's reference (or BERT4Rec's bidirectional one), its losses, and
batched top-k recommendation.

Self-contained: imports only torch, transformers and its sibling files, because `save_pretrained` copies it to the
model folder (and the Hub) for `AutoModel.from_pretrained(..., trust_remote_code=True)`.
"""

import contextlib
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
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, cached_file

from .attention_btsr import (
    ALL_ATTENTION_FUNCTIONS,
    PackedBatch,
    eager_attention_forward,
    inverted_dropout,
    static_layout,
)
from .configuration_btsr import CUSTOM_PIPELINES, SAMPLED_LOSS_TYPES, BTSRConfig
from .losses_btsr import (
    barlow_twins_loss,
    cross_entropy_loss,
    infonce_loss,
    negative_view_loss,
    sample_negatives,
    sampled_bce_loss,
    sampled_bpr_loss,
    scalable_cross_entropy_loss,
)
from .sharding_btsr import (
    ItemShard,
    item_shard,
    sharded_cross_entropy,
    sharded_embedding,
    sharded_scalable_cross_entropy,
)

__all__ = [
    "BTSRPreTrainedModel",
    "BTSRModel",
    "BTSRForSequentialRecommendation",
    "BTSRModelOutput",
    "BTSRSequentialRecommendationOutput",
    "ITEM_VOCAB_NAME",
    "REMOTE_CODE_FILES",
    "ENDPOINT_HANDLER_FILE",
    "left_pad_sequences",
    "exclude_seen_items_",
    "deterministic_inference",
]

ITEM_VOCAB_NAME = "item_vocab.json"
# The files `save_pretrained` copies beside the weights, for `trust_remote_code`: this one, those it imports, and the
# recommendation pipeline that `config.json`'s `custom_pipelines` names.
REMOTE_CODE_FILES = (
    "configuration_btsr.py",
    "modeling_btsr.py",
    "attention_btsr.py",
    "losses_btsr.py",
    "sharding_btsr.py",
    "pipeline_btsr.py",
)
# Also copied: the Inference Endpoints custom handler (`EndpointHandler`), which loads the folder with remote code.
ENDPOINT_HANDLER_FILE = "handler.py"


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
            the next item (BERT4Rec: the state of the mask token appended to the history).
    """

    last_hidden_state: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None


@dataclass
class BTSRSequentialRecommendationOutput(ModelOutput):
    """Output of :class:`BTSRForSequentialRecommendation`.

    Args:
        loss (`torch.FloatTensor`, *optional*): `prediction_loss + bt_alpha * ssl_loss` (the SSL term only when a
            pair is given and `bt_alpha > 0`), plus `ec4srec_negative_weight * negative_loss` with a negative view.
        prediction_loss (`torch.FloatTensor`, *optional*): CE / SCE / BCE; normalised by `num_items_in_batch`
            when given (CE, BCE and BPR), else a mean over labelled (SCE: picked) positions.
        bt_loss (`torch.FloatTensor`, *optional*): the Barlow Twins loss between the two views (`ssl_objective`
            `"barlow_twins"` only; then equal to `ssl_loss`).
        user_embeddings (`torch.FloatTensor` of shape `(batch, hidden)`): last-position states of `input_ids`
            (BERT4Rec, given `labels`: of the masked training sequence, not a next-item state).
        pair_user_embeddings (`torch.FloatTensor` of shape `(batch, hidden)`, *optional*): the same for the pair.
        num_prediction_positions (`torch.LongTensor`, *optional*): positions that entered the prediction loss.
        ssl_loss (`torch.FloatTensor`, *optional*): the self-supervised loss of the config's `ssl_objective`
            (Barlow Twins or InfoNCE) between the two views.
        negative_loss (`torch.FloatTensor`, *optional*): EC4SRec's loss on its negative views (given
            `negative_input_ids`), which `loss` adds with weight `ec4srec_negative_weight`.
    """

    loss: torch.FloatTensor | None = None
    prediction_loss: torch.FloatTensor | None = None
    bt_loss: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None
    pair_user_embeddings: torch.FloatTensor | None = None
    num_prediction_positions: torch.LongTensor | None = None
    ssl_loss: torch.FloatTensor | None = None
    negative_loss: torch.FloatTensor | None = None


class BTSRSelfAttention(nn.Module):
    """SASRec's causal multi-head attention with a key-padding mask; queries come from the normalised stream.
    Bidirectional (`is_causal` `False`) for the BERT4Rec backbone.

    The attention function is `config._attn_implementation`'s (see `attention_btsr`): `"sdpa"` by default,
    `"eager"` for the written-out product.
    """

    def __init__(self, config: BTSRConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.is_causal = config.is_causal  # read by the attention functions, as in transformers' attention modules
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = 1.0 / math.sqrt(self.head_dim)
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        for linear in (self.query, self.key, self.value, self.output):
            linear._zero_bias_init = True
        self.dropout_prob = float(config.attention_probs_dropout_prob)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """`queries`, `keys`: packed item positions (n_items_in_batch, hidden). Returns packed rows."""
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        return self._attend(batch.attend, attention_interface, queries, keys)

    def forward_last(self, queries: torch.Tensor, keys: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        """Like `forward`, for the last position of the rows `batch.last_rows` only: `queries` (n_rows, hidden)
        are those positions' queries, in that order; `keys` all packed item positions. Returns (n_rows, hidden).

        One query row per user: the written-out product (`eager_attention_forward`) under every implementation.
        """
        return self._attend(batch.attend_last, eager_attention_forward, queries, keys)

    def _attend(self, attend, attention_interface, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        dropout = self.dropout_prob if _stochastic(self) else 0.0
        query, key, value = self.query(queries), self.key(keys), self.value(keys)
        return self.output(attend(attention_interface, self, query, key, value, scaling=self.scaling, dropout=dropout))


class _ThreadFlags(threading.local):
    # A class default, so that every thread reads the attribute before `deterministic_inference` first sets it:
    # under torch.compile a missing attribute is a guard, and setting it later recompiled the training step.
    inference = False


_THREAD = _ThreadFlags()


@contextlib.contextmanager
def deterministic_inference():
    """Runs the model without dropout in this thread, whatever its `train()` / `eval()` mode, and leaves the mode
    alone: `recommend` and the evaluation use it, so calls from several threads never flip a shared module's mode
    (another thread may be training it).

    >>> model = BTSRModel(BTSRConfig(num_items=5, hidden_size=8, max_position_embeddings=4)).train()
    >>> ids = torch.tensor([[1, 2]])
    >>> with deterministic_inference(), torch.no_grad():
    ...     same = torch.equal(model(ids).user_embeddings, model(ids).user_embeddings)
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


class BTSRDropout(nn.Dropout):
    """`nn.Dropout` with the cheaper mask of `inverted_dropout` (same distribution), off in
    `deterministic_inference`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return inverted_dropout(x, self.p, _stochastic(self))


class BTSRFeedForward(nn.Module):
    """SASRec's point-wise feed-forward: two linears (d -> `intermediate_size` -> d, d -> d by default) with ReLU
    (or `hidden_act`) and dropout, plus the residual."""

    def __init__(self, config: BTSRConfig):
        super().__init__()
        inner = config.intermediate_size or config.hidden_size
        self.dense_in = nn.Linear(config.hidden_size, inner)
        self.dense_out = nn.Linear(inner, config.hidden_size)
        self.dropout = BTSRDropout(config.hidden_dropout_prob)
        self.activation = F.gelu if config.hidden_act == "gelu" else F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.dense_out(self.activation(self.dropout(self.dense_in(x)))))


class BTSRBlock(GradientCheckpointingLayer):
    """One reference block: `Q = LN(x); x = Q + MHA(Q, x, x); x = LN(x); x = x + FFN(x)`; padding zeroed. With
    `config.block_layout == "post_ln"`, RecBole's layer instead: `h = LN(x + Dropout(MHA(x, x, x))); LN(h + FFN(h))`.

    With `model.activation_checkpointing_enable()` (or `--gradient_checkpointing`), `forward` keeps only its input for
    the backward pass and recomputes the rest, with the same dropout masks (the RNG state is replayed): the same
    gradients for ~1/3 more encoder compute and a fraction of the activation memory (benchmarks/performance.py).
    The last block of the partner pass (`last_only`, last positions only) is checkpointed alike.
    """

    def __init__(self, config: BTSRConfig):
        super().__init__()
        self.post_ln = config.block_layout == "post_ln"
        self.attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = BTSRSelfAttention(config)
        self.feed_forward_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = BTSRFeedForward(config)
        # RecBole drops the attention output before its residual sum; the reference block has no such dropout.
        self.attention_dropout = BTSRDropout(config.hidden_dropout_prob) if self.post_ln else nn.Identity()

    def forward(self, x: torch.Tensor, batch: PackedBatch, last_only: bool = False) -> torch.Tensor:
        """`x`: packed item positions (n_items_in_batch, hidden); padding is never computed (the reference zeroes
        it after every block, and padded keys are masked, so item positions are unaffected).

        With `last_only`, the block's output at the last position of the rows `batch.last_rows` only, (n_rows,
        hidden): keys and values still come from every position, but the query-side path (LayerNorm, attention
        row, residual, feed-forward) runs for those positions alone. One entry point for both, so that wrappers
        that hook `forward` (FSDP gathers the block's weights there) see either.
        """
        if self.post_ln:  # RecBole's layer: queries, keys and values from the stream itself
            queries = x.index_select(0, batch.last_packed) if last_only else x
            attended = self.attention.forward_last(queries, x, batch) if last_only else self.attention(x, x, batch)
            hidden = self.attention_layernorm(queries + self.attention_dropout(attended))
            return self.feed_forward_layernorm(self.feed_forward(hidden))
        if last_only:
            queries = self.attention_layernorm(x.index_select(0, batch.last_packed))
            x = queries + self.attention.forward_last(queries, x, batch)
        else:
            queries = self.attention_layernorm(x)
            x = queries + self.attention(queries, x, batch)
        return self.feed_forward(self.feed_forward_layernorm(x))


class BTSRPreTrainedModel(PreTrainedModel):
    """Weights initialisation, the item vocabulary file, and loading shared by the BT-SR classes."""

    config_class = BTSRConfig
    base_model_prefix = "btsr"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # FSDP wraps each block as a unit; the item table is split by rows and read shard by shard (`sharding_btsr`).
    _no_split_modules = ["BTSRBlock"]

    def _init_weights(self, module: nn.Module):
        """Xavier-uniform on every matrix (the reference); attention biases zero, feed-forward biases as PyTorch.
        With `config.initializer_range`, RecBole's instead: normal(0, range) matrices and embeddings, zero biases."""
        std = self.config.initializer_range
        if std is not None and isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.Linear):
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

    def gathered(self, device: torch.device | str | None = None):
        """This model with whole weights: itself, or under FSDP (weights split over processes) a plain copy.

        FSDP runs a collective in every sharded module's forward, so processes that encode different numbers of
        batches (evaluation shards of users), or one process alone (saving), would wait for ever; the copy runs
        none. Under FSDP every process must call this together (each weight is gathered). The copy has the whole
        item table, as scoring every user against the whole catalogue needs.

        Args:
            device (`torch.device` or `str`, *optional*): where the copy lives (default: the weights' device).
        """
        if not any(hasattr(param, "full_tensor") for param in self.parameters()):  # no DTensor: not sharded
            return self
        state = self.state_dict()
        whole = {name: value.full_tensor() if hasattr(value, "full_tensor") else value for name, value in state.items()}
        if device is not None:
            whole = {name: value.to(device) for name, value in whole.items()}
        with torch.device("meta"):  # no weights of its own: the gathered ones are assigned, dtype and all
            copy = type(self)(self.config)
        copy.load_state_dict(whole, assign=True)
        copy.base_model.set_item_vocab(self.base_model.item_vocab)
        return copy.train(self.training)

    # The vocabulary lives in its own file beside config.json: a large catalogue would bloat the config.
    def save_pretrained(self, save_directory, *args, **kwargs):
        # Whichever class is saved, the folder loads as `BTSRModel` through AutoModel, also as Hub custom code.
        if "AutoModel" not in (getattr(self.config, "auto_map", None) or {}):
            self.config.auto_map = {
                "AutoConfig": "configuration_btsr.BTSRConfig",
                "AutoModel": "modeling_btsr.BTSRModel",
            }
        if not self.config.__dict__.get("custom_pipelines"):  # read past the property: see BTSRConfig
            self.config.custom_pipelines = CUSTOM_PIPELINES
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            here = os.path.dirname(os.path.abspath(__file__))
            for name in (*REMOTE_CODE_FILES, ENDPOINT_HANDLER_FILE):
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
        raise OSError(
            f"{folder}: no config.json, so not a saved model (a BT-SR folder holds config.json, the weights "
            f"and {ITEM_VOCAB_NAME})"
        )
    try:
        with open(config_file, encoding="utf-8") as handle:
            model_type = json.load(handle).get("model_type")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{config_file}: not a valid config ({error})") from None
    if model_type != BTSRConfig.model_type:
        raise ValueError(f"{config_file}: model_type is {model_type!r}, not {BTSRConfig.model_type!r}")
    weights = [
        name for name in os.listdir(folder) if name.endswith((".safetensors", ".bin", ".safetensors.index.json"))
    ]
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

    With `config.backbone == "bert4rec"` attention is bidirectional and a history's next-item state is that of the
    mask token appended after its newest item (`forward`'s `append_mask_token`, on by default there): the appended
    token takes the last position and the history the ones before it.
    """

    def __init__(self, config: BTSRConfig):
        super().__init__(config)
        # Rows: padding, items 1..num_items, and the CL4SRec mask token num_items + 1 only when masked views are drawn.
        self.item_embeddings = nn.Embedding(config.num_item_embeddings, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_dropout = BTSRDropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(BTSRBlock(config) for _ in range(config.num_hidden_layers))
        post_ln = config.block_layout == "post_ln"
        # Parameter-free stand-ins where a layout has no such LayerNorm: the other layout's weights are unchanged.
        self.final_layernorm = nn.Identity() if post_ln else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.embedding_layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if post_ln else nn.Identity()
        )
        self.embedding_scale = 1.0 if post_ln else math.sqrt(config.hidden_size)
        self.item_vocab = None
        self._item_to_index = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.item_embeddings = value

    def item_embedding_matrix(self) -> torch.Tensor:
        """Scoring matrix of items `1..num_items`, `(num_items, hidden)`: row `j` is item index `j + 1`.

        Under FSDP2 (the table split by rows, see `item_shard`) the whole matrix is gathered, for evaluation and
        `recommend`; training scores shard by shard instead.
        """
        weight = self.item_embeddings.weight
        if item_shard(weight) is not None:
            weight = weight.full_tensor()
        return weight[1 : self.config.num_items + 1]  # never the padding or mask token row

    def item_shard(self) -> ItemShard | None:
        """This process's rows of the item table when FSDP2 splits it by rows, else `None` (a whole table)."""
        return item_shard(self.item_embeddings.weight)

    def embed_items(self, ids: torch.Tensor) -> torch.Tensor:
        """Item embeddings of `ids` (any shape): from the whole table, or shard by shard under FSDP2, whose
        gathering of the whole table before the embedding module runs is what the sharding avoids."""
        shard = self.item_shard()
        if shard is None:
            return self.item_embeddings(ids)
        return sharded_embedding(ids.reshape(-1), shard).reshape(*ids.shape, -1)

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
            raise ValueError(
                f"item vocabulary repeats id {item_ids[first]!r} (entries {first + 1} and "
                f"{to_index[item_ids[first]]}): ids must be distinct"
            )
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
        append_mask_token: bool | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
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
            append_mask_token (`bool`, *optional*): BERT4Rec backbone: `input_ids` are histories, and the mask token
                is appended after each row's newest item (the oldest column is dropped when that would exceed
                `max_position_embeddings`), so that `user_embeddings` score the next item and `last_hidden_state`
                has the appended position last. The default (`None`) appends for `backbone="bert4rec"`; `False`
                encodes `input_ids` as they are (masked-item training, whose inputs carry their own mask tokens).
                The SASRec backbone has no mask token to append.
            inputs_embeds (`torch.FloatTensor` of shape `(batch, seq_len, hidden)`, *optional*): item embeddings
                used in place of looking `input_ids` up (which still say where the items are), before the
                embedding scale and the position embeddings: what an attribution method perturbs or differentiates
                (EC4SRec's importance scores). Not with `append_mask_token`.
        """
        batch, length = input_ids.shape
        max_len = self.config.max_position_embeddings
        if length > max_len:
            raise ValueError(
                f"sequences of length {length} exceed max_position_embeddings={max_len}; keep the last {max_len} items"
            )
        is_item = (input_ids != 0) if attention_mask is None else attention_mask.bool()
        if append_mask_token is None:
            append_mask_token = not self.config.is_causal
        if append_mask_token:
            if self.config.is_causal:
                raise ValueError("append_mask_token applies to backbone='bert4rec' only (SASRec has no mask token)")
            if position_offsets is not None or inputs_embeds is not None:
                raise ValueError("position_offsets and inputs_embeds cannot be combined with append_mask_token")
            input_ids, is_item = _append_mask_token(input_ids, is_item, self.config.mask_token_id, max_len)
            batch, length = input_ids.shape
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
        # Position-wise layers run on the item positions only (packed rows), attention on padded grids of them.
        packed = PackedBatch(
            is_item,
            group_by_length=self.config.length_grouped_attention,
            inference=not (_stochastic(self) or torch.is_grad_enabled()),
            dtype=self.item_embeddings.weight.dtype,
            causal=self.config.is_causal,
        )
        input_ids = packed.sort_rows(input_ids)
        positions = packed.index % length + (max_len - length)  # the newest item at the last position embedding
        if position_offsets is not None:
            shift = packed.sort_rows(position_offsets).to(positions.device).index_select(0, packed.index // length)
            positions = (positions - shift).clamp_min(0)  # only padded cells (dense layout) could fall below 0
        if inputs_embeds is None:
            x = self.embed_items(packed.pack_ids(input_ids)) * self.embedding_scale
        else:
            if inputs_embeds.shape != (batch, length, self.config.hidden_size):
                raise ValueError(
                    f"inputs_embeds must have shape {(batch, length, self.config.hidden_size)}, got "
                    f"{tuple(inputs_embeds.shape)}"
                )
            x = packed.pack_ids(packed.sort_rows(inputs_embeds)) * self.embedding_scale
        x = self.embedding_dropout(self.embedding_layernorm(x + self.position_embeddings(positions)))
        if user_embeddings_only:
            for block in self.blocks[:-1]:
                x = block(x, packed)
            users = packed.unpack_last(self.final_layernorm(self.blocks[-1](x, packed, last_only=True)))
            output = BTSRModelOutput(last_hidden_state=None, user_embeddings=users)
            return output if return_dict is not False else output.to_tuple()
        for block in self.blocks:
            x = block(x, packed)
        x = packed.unpack(self.final_layernorm(x))
        output = BTSRModelOutput(last_hidden_state=x, user_embeddings=x[:, -1])
        return output if return_dict is not False else output.to_tuple()

    def encode_indices(self, histories: list[list[int]], batch_size: int = 256) -> torch.Tensor:
        """User embeddings `(n_users, hidden)` of histories given as item indices (`1..num_items`, each history
        non-empty), in length-sorted batches of `batch_size`; `recommend` maps raw ids to indices first."""
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
                warnings.warn(
                    f"user {user}: skipped {len(missing)} unknown item id(s), e.g. {missing[0]!r}", stacklevel=3
                )
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
                users = self.encode_indices([indexed[i] for i in rows], batch_size)
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


def _append_mask_token(
    input_ids: torch.Tensor, is_item: torch.Tensor, mask_token: int, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded histories with the mask token appended to every row, at most `max_len` columns (the oldest
    column dropped when full: left padding puts every row's newest item in the last column, so appending is a
    concatenation). An empty row gets the mask token alone.

    >>> ids, items = _append_mask_token(torch.tensor([[0, 1, 2], [3, 4, 5]]), torch.tensor([[0, 1, 1], [1] * 3]), 9, 3)
    >>> ids.tolist(), items.int().tolist()
    ([[1, 2, 9], [4, 5, 9]], [[1, 1, 1], [1, 1, 1]])
    """
    column = torch.full_like(input_ids[:, :1], mask_token)
    input_ids = torch.cat([input_ids, column], dim=1)
    is_item = torch.cat([is_item.bool(), torch.ones_like(column, dtype=torch.bool)], dim=1)
    if input_ids.shape[1] > max_len:
        input_ids, is_item = input_ids[:, -max_len:], is_item[:, -max_len:]
    return input_ids, is_item


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
        row = [
            item.item() if hasattr(item, "item") and not isinstance(item, (str, bytes)) else item for item in history
        ]
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
        self,
        hidden: torch.Tensor,
        labels: torch.Tensor,
        input_ids: torch.Tensor,
        history_input_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """`(loss, n_positions, is_sum)` of the configured prediction loss on labelled positions only.

        BCE and BPR draw each row's negatives among the items absent from its `input_ids`, its `labels` and, when
        given, its `history_input_ids` (a prefix sample's row: the items after its target).

        `hidden` (batch, seq_len, d), `labels` (batch, seq_len) with -100 where there is no target. CE, BCE and BPR
        return sums (normalised by the caller); SCE returns its mean over picked positions.

        Under `torch.compile` (`static_layout`), CE and SCE read every position with the labelled ones marked
        `valid`, instead of selecting them: the same loss, with no shape that depends on the labels. BCE and BPR
        still select them (a graph break).
        """
        config = self.config
        labelled = labels != -100
        shard = self.btsr.item_shard()
        sampled = config.loss_type in SAMPLED_LOSS_TYPES  # scored on the selected positions
        if shard is not None and (sampled or static_layout()):
            raise ValueError(
                f"loss_type {config.loss_type!r}{' under torch.compile' if static_layout() else ''} is not scored "
                "shard by shard; with the item table sharded (FSDP2) train with loss_type 'ce' or 'sce' in eager mode"
            )
        if static_layout() and not sampled:
            return self._prediction_loss_all_positions(hidden, labels, labelled)
        rows = labelled.nonzero(as_tuple=True)[0]
        states, targets = hidden[labelled], labels[labelled]
        if shard is not None and config.loss_type == "ce":
            return sharded_cross_entropy(states, targets, shard, config.num_items), targets.numel(), True
        items = self.btsr.item_embedding_matrix() if shard is None else None
        if config.loss_type == "ce":
            return cross_entropy_loss(states, targets, items), targets.numel(), True
        if sampled:
            seen = [input_ids, labels.clamp_min(0)] + ([] if history_input_ids is None else [history_input_ids])
            seen = torch.cat(seen, dim=1)
            negatives, valid = sample_negatives(seen, config.num_items, config.bce_num_negatives, self.sce_generator)
            loss_fn = sampled_bce_loss if config.loss_type == "bce" else sampled_bpr_loss
            loss = loss_fn(states, targets, items, negatives[rows], valid[rows])
            return loss, targets.numel(), True
        n_buckets = config.sce_n_buckets or config.sce_bucket_size_x or 1
        buckets = {
            "n_buckets": n_buckets,
            "bucket_size_x": config.sce_bucket_size_x or n_buckets,
            "bucket_size_y": config.sce_bucket_size_y,
            "mix_x": config.sce_mix_x,
            "generator": self.sce_generator,
        }
        if shard is None:
            total, picked = scalable_cross_entropy_loss(states, targets, items, **buckets)
        else:
            total, picked = sharded_scalable_cross_entropy(states, targets, shard, config.num_items, **buckets)
        return total / picked.clamp_min(1), picked, False

    def _prediction_loss_all_positions(self, hidden: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor):
        """`prediction_loss` for CE and SCE over every position, unlabelled ones masked out by `valid`."""
        config = self.config
        valid = labelled.reshape(-1)
        states = hidden.reshape(-1, hidden.shape[-1])
        targets = torch.where(labelled, labels, torch.ones_like(labels)).reshape(-1)  # any item where ignored
        items = self.btsr.item_embedding_matrix()
        if config.loss_type == "ce":
            return cross_entropy_loss(states, targets, items, valid=valid), valid.sum(), True
        n_buckets = config.sce_n_buckets or config.sce_bucket_size_x or 1
        total, picked = scalable_cross_entropy_loss(
            states,
            targets,
            items,
            n_buckets=n_buckets,
            bucket_size_x=config.sce_bucket_size_x or n_buckets,
            bucket_size_y=config.sce_bucket_size_y,
            mix_x=config.sce_mix_x,
            generator=self.sce_generator,
            valid=valid,
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
        negative_input_ids: torch.LongTensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        history_input_ids: torch.LongTensor | None = None,
        history_attention_mask: torch.Tensor | None = None,
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
            negative_input_ids (`torch.LongTensor` of shape `(batch, negative_len)`, *optional*): EC4SRec's negative
                view of each row (`view_maker="ec4srec"`, the two positive views being `view_input_ids` and
                `pair_input_ids`): `negative_view_loss` is then computed, which the loss adds with weight
                `ec4srec_negative_weight` (at weight 0 the negative views are not encoded).
            negative_attention_mask (`torch.Tensor` of shape `(batch, negative_len)`, *optional*).
            history_input_ids (`torch.LongTensor` of shape `(batch, history_len)`, *optional*): further items each
                row's sampled negatives avoid (`loss_type` `bce` or `bpr`): a prefix sample's whole row, whose
                items after the target are not in `input_ids` or `labels`. Padding (0) is never a negative.
            history_attention_mask (`torch.Tensor`, *optional*): not read (the collator pads every
                `*_input_ids` with one).
            num_items_in_batch (`int`, *optional*): labelled positions of the whole (accumulated, all-process)
                batch; CE, BCE and BPR are divided by it instead of by the local count.

        BERT4Rec backbone: with `labels`, `input_ids` are masked training sequences (the mask token where an item
        is to be predicted, `labels` the item there, -100 elsewhere) encoded as they are, and view A of the
        self-supervised loss must be given as `view_input_ids` (the unmasked history, encoded with the mask token
        appended, like `pair_input_ids`); without `labels`, `input_ids` are histories (see `BTSRModel.forward`).
        """
        masked_items = not self.config.is_causal and labels is not None
        if masked_items and pair_input_ids is not None and self.config.bt_alpha > 0 and view_input_ids is None:
            raise ValueError(
                "backbone='bert4rec' compares the histories' next-item states: pass view_input_ids (the unmasked "
                "history of each row) with pair_input_ids; input_ids carry the training masks"
            )
        encoded = self.btsr(input_ids, attention_mask, append_mask_token=False if masked_items else None)
        user_embeddings = encoded.user_embeddings
        prediction_loss = bt_loss = ssl_loss = negative_loss = pair_embeddings = n_positions = None
        if labels is not None:
            total, n_positions, is_sum = self.prediction_loss(
                encoded.last_hidden_state, labels, input_ids, history_input_ids
            )
            if is_sum:
                denominator = num_items_in_batch
                if denominator is None:  # a tensor count under compile: `int()` of it would break the graph
                    denominator = (
                        n_positions.clamp_min(1) if isinstance(n_positions, torch.Tensor) else max(n_positions, 1)
                    )
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
                ssl_loss = infonce_loss(view_a, view_b, self.config.infonce_temperature, self.config.infonce_similarity)
            else:
                ssl_loss = bt_loss = barlow_twins_loss(view_a, view_b, self.config.bt_lambda)
            if negative_input_ids is not None and self.config.ec4srec_negative_weight > 0:  # weight 0: no pass
                negatives = self.btsr(negative_input_ids, negative_attention_mask, user_embeddings_only=True)
                negative_loss = negative_view_loss(
                    view_a,
                    view_b,
                    negatives.user_embeddings,
                    self.config.ec4srec_negative_temperature,
                    self.config.infonce_similarity,
                )
        loss = None
        if prediction_loss is not None:
            loss = prediction_loss if ssl_loss is None else prediction_loss + self.config.bt_alpha * ssl_loss
            if negative_loss is not None:
                loss = loss + self.config.ec4srec_negative_weight * negative_loss
        output = BTSRSequentialRecommendationOutput(
            loss=loss,
            prediction_loss=prediction_loss,
            bt_loss=bt_loss,
            user_embeddings=user_embeddings,
            pair_user_embeddings=pair_embeddings,
            num_prediction_positions=n_positions,
            ssl_loss=ssl_loss,
            negative_loss=negative_loss,
        )
        return output if return_dict is not False else output.to_tuple()
