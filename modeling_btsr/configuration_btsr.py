"""BT-SR model configuration."""

from dataclasses import field
from typing import Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

__all__ = ["BTSRConfig", "LOSS_TYPES", "SSL_OBJECTIVES", "VIEW_MAKERS", "VIEW_SPANS", "INFONCE_SIMILARITIES"]

LossType = Literal["ce", "sce", "bce"]
SSLObjective = Literal["barlow_twins", "infonce"]
InfoNCESimilarity = Literal["dot", "cosine"]
# How the two views of the self-supervised loss are made (see `view_maker` below).
ViewMaker = Literal["same_target", "dropout", "same_target+dropout", "cl4srec"]
# What the views encode (see `ssl_view_span` below).
ViewSpan = Literal["sequence", "random_prefix", "random_prefix_in_place"]
LOSS_TYPES = get_args(LossType)
SSL_OBJECTIVES = get_args(SSLObjective)
INFONCE_SIMILARITIES = get_args(InfoNCESimilarity)
VIEW_MAKERS = get_args(ViewMaker)
VIEW_SPANS = get_args(ViewSpan)


@strict(accept_kwargs=True)
class BTSRConfig(PreTrainedConfig):
    r"""
    Configuration of a BT-SR model: a SASRec causal Transformer over item sequences, trained with a prediction loss
    plus `bt_alpha` times a Barlow Twins loss between two users' sequences that lead to the same next item
    (Razvorotnev, Munkhoeva, Frolov, "Barlow Twins for Sequential Recommendation", arXiv 2510.26407).

    Item indices `1..num_items` are items and `0` is padding. The defaults are the paper's reference architecture
    (d = 64, 2 blocks, 1 head, max_len 200) and its ML-1M loss settings.

    Args:
        num_items (`int`, defaults to 1):
            Number of items in the catalogue; the embedding table has `num_items + 1` rows (row 0 is padding).
        hidden_size (`int`, defaults to 64):
            Width `d` of item embeddings and hidden states.
        num_hidden_layers (`int`, defaults to 2):
            Number of Transformer blocks.
        num_attention_heads (`int`, defaults to 1):
            Attention heads per block; must divide `hidden_size`.
        max_position_embeddings (`int`, defaults to 200):
            Longest sequence the model reads (`max_len`); longer histories keep their most recent items.
        hidden_dropout_prob (`float`, defaults to 0.1):
            Dropout on embeddings and inside the feed-forward layers.
        attention_probs_dropout_prob (`float`, defaults to 0.1):
            Dropout on attention weights.
        layer_norm_eps (`float`, defaults to 1e-8):
            Epsilon of every LayerNorm (the reference's value).
        loss_type (`str`, defaults to `"ce"`):
            Prediction loss: `"ce"` (full softmax), `"sce"` (Scalable Cross-Entropy) or `"bce"` (sampled negatives).
        bt_alpha (`float`, defaults to 0.2):
            Weight of the self-supervised loss (Barlow Twins or InfoNCE, see `ssl_objective`); `0` trains plain
            SASRec with no second pass and no view draws.
        bt_lambda (`float`, defaults to 0.05):
            Weight of the off-diagonal (redundancy-reduction) term of the Barlow Twins loss.
        bt_projector_dims (`list[int]`, *optional*):
            Widths of an MLP projector applied to user embeddings before the Barlow Twins loss; `None` (the paper's
            setting) uses the embeddings as they are.
        sce_n_buckets (`int`, *optional*):
            SCE bucket count `n_b`; `None` lets the training script apply the spec's default formula.
        sce_bucket_size_x (`int`, *optional*):
            Positions per SCE bucket `b_x` (clamped at run time to the labelled positions present).
        sce_bucket_size_y (`int`, defaults to 256):
            Items per SCE bucket `b_y`; must not exceed `num_items`.
        sce_mix_x (`bool`, defaults to `False`):
            Draw SCE bucket centres as random mixtures of the batch's own hidden states instead of pure noise.
        bce_num_negatives (`int`, defaults to 256):
            Negatives per sequence for `loss_type="bce"`, drawn from items the user never interacted with.
        ssl_objective (`str`, defaults to `"barlow_twins"`):
            Self-supervised loss between the two views: `"barlow_twins"` (BT-SR) or `"infonce"` (NT-Xent with
            in-batch negatives, as CL4SRec and DuoRec).
        infonce_temperature (`float`, defaults to 1.0):
            Temperature `tau` of the InfoNCE loss (CL4SRec and DuoRec: 1.0).
        infonce_similarity (`str`, defaults to `"dot"`):
            Similarity inside the InfoNCE loss: `"dot"` (raw inner product, CL4SRec and DuoRec) or `"cosine"`.
        view_maker (`str`, defaults to `"same_target"`):
            How the two views are made. `"same_target"` (BT-SR): the sequence and another user's sequence with
            the same next item. `"dropout"` (DuoRec, unsupervised): the same sequence encoded twice, differing by
            dropout only. `"same_target+dropout"` (DuoRec): a second dropout pass of the sequence and a same-target
            partner. `"cl4srec"`: two random crop / mask / reorder augmentations of the sequence (CL4SRec).
            In every case the prediction loss reads the unaugmented sequence.
        ssl_view_span (`str`, defaults to `"sequence"`):
            What the views encode. `"sequence"` (BT-SR): the whole training sequence, so the SSL loss acts on the
            last position's state, the one that is ranked. `"random_prefix"`: the sequence up to a position drawn
            uniformly each epoch (a same-target partner then shares that prefix's next item), so the SSL term
            weighs on prefixes as the RecBole code of CL4SRec and DuoRec does, where every prefix is a sample.
            A prefix encoded on its own ends at the newest position embedding, the ranked state's;
            `"random_prefix_in_place"` encodes it at the positions it has in its sequence instead (RecBole's
            samples are right-padded: a prefix keeps its positions there).
        cl4srec_crop_ratio (`float`, defaults to 0.6):
            CL4SRec crop `eta`: a crop keeps a contiguous span of `max(1, floor(eta * n))` items.
        cl4srec_mask_ratio (`float`, defaults to 0.3):
            CL4SRec mask `gamma`: a mask replaces `floor(gamma * n)` random positions by the mask token
            `num_items + 1`, which has its own embedding row only when `view_maker="cl4srec"` and
            `cl4srec_mask_ratio > 0`, and is never scored or recommended.
        cl4srec_reorder_ratio (`float`, defaults to 0.6):
            CL4SRec reorder `beta`: a reorder shuffles a contiguous span of `floor(beta * n)` items.
        length_grouped_attention (`bool`, defaults to `True`):
            A speed setting. Attention of a batch whose rows differ much in length runs per group of rows of
            similar length, each on its own grid (its longest row's length), instead of on one grid as long as the
            batch's longest row; every row attends to the same keys either way. It matters for short-history data
            (Amazon Beauty: training rows of median length 3, longest 200). Only the draw of dropout noise differs (the same
            distribution); outputs without dropout are equal up to float rounding. `False` keeps one grid.

    Example:

    >>> from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
    >>> config = BTSRConfig(num_items=3416, bt_alpha=0.2)
    >>> model = BTSRForSequentialRecommendation(config)
    >>> model.num_parameters() == (3416 + 1) * 64 + 63_360
    True
    """

    model_type = "btsr"

    num_items: int = field(default=1, metadata={"help": "Number of items; indices 1..num_items, 0 is padding."})
    hidden_size: int = field(default=64, metadata={"help": "Embedding and hidden width d."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Number of Transformer blocks."})
    num_attention_heads: int = field(default=1, metadata={"help": "Attention heads per block (divides hidden_size)."})
    max_position_embeddings: int = field(default=200, metadata={"help": "Longest sequence read (max_len)."})
    hidden_dropout_prob: float | int = field(default=0.1, metadata={"help": "Dropout on embeddings and feed-forward."})
    attention_probs_dropout_prob: float | int = field(default=0.1, metadata={"help": "Dropout on attention weights."})
    layer_norm_eps: float | int = field(default=1e-8, metadata={"help": "LayerNorm epsilon."})
    loss_type: LossType = field(default="ce", metadata={"help": "Prediction loss: ce | sce | bce."})
    bt_alpha: float | int = field(default=0.2, metadata={"help": "Weight of the Barlow Twins loss (0 = plain SASRec)."})
    bt_lambda: float | int = field(default=0.05, metadata={"help": "Off-diagonal weight inside the Barlow Twins loss."})
    bt_projector_dims: list[int] | None = field(
        default=None, metadata={"help": "MLP projector widths before the BT loss; none = identity (paper)."}
    )
    sce_n_buckets: int | None = field(default=None, metadata={"help": "SCE bucket count n_b (None = formula)."})
    sce_bucket_size_x: int | None = field(default=None, metadata={"help": "SCE positions per bucket b_x."})
    sce_bucket_size_y: int = field(default=256, metadata={"help": "SCE items per bucket b_y (<= num_items)."})
    sce_mix_x: bool = field(default=False, metadata={"help": "SCE centres as mixtures of the batch's states."})
    bce_num_negatives: int = field(default=256, metadata={"help": "Sampled negatives per sequence for BCE."})
    ssl_objective: SSLObjective = field(
        default="barlow_twins", metadata={"help": "Self-supervised loss: barlow_twins | infonce."}
    )
    infonce_temperature: float | int = field(default=1.0, metadata={"help": "InfoNCE temperature tau."})
    infonce_similarity: InfoNCESimilarity = field(default="dot", metadata={"help": "InfoNCE similarity: dot | cosine."})
    view_maker: ViewMaker = field(
        default="same_target",
        metadata={"help": "Views of the SSL loss: same_target | dropout | same_target+dropout | cl4srec."},
    )
    ssl_view_span: ViewSpan = field(
        default="sequence",
        metadata={"help": "What the SSL views encode: sequence | random_prefix | random_prefix_in_place."},
    )
    cl4srec_crop_ratio: float | int = field(default=0.6, metadata={"help": "CL4SRec crop ratio eta."})
    cl4srec_mask_ratio: float | int = field(default=0.3, metadata={"help": "CL4SRec mask ratio gamma."})
    cl4srec_reorder_ratio: float | int = field(default=0.6, metadata={"help": "CL4SRec reorder ratio beta."})
    length_grouped_attention: bool = field(
        default=True, metadata={"help": "Attention per group of rows of similar length (a speed setting)."}
    )

    @property
    def mask_token_id(self) -> int | None:
        """Index of the CL4SRec mask token (`num_items + 1`) when masked views are drawn, else `None`.

        Only then does the item embedding table get the extra row; scoring always uses rows `1..num_items`.
        """
        if self.view_maker == "cl4srec" and self.cl4srec_mask_ratio > 0:
            return self.num_items + 1
        return None

    @property
    def num_item_embeddings(self) -> int:
        """Rows of the item embedding table: padding, the items, and the mask token when it is used."""
        return self.num_items + (2 if self.mask_token_id is not None else 1)

    def validate_btsr(self):
        """Range checks with messages that say which value to change (run by `@strict` at construction)."""
        problems = []
        for name in ("num_items", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_attention_heads >= 1 and self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            problems.append(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.bt_alpha < 0:
            problems.append(f"bt_alpha must be >= 0 (0 trains plain SASRec), got {self.bt_alpha}")
        if self.bt_lambda < 0:
            problems.append(f"bt_lambda must be >= 0, got {self.bt_lambda}")
        if self.bt_projector_dims is not None and any(int(w) < 1 for w in self.bt_projector_dims):
            problems.append(f"bt_projector_dims must hold positive widths, got {self.bt_projector_dims}")
        for name in ("sce_n_buckets", "sce_bucket_size_x"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 or None (default formula), got {value}")
        if self.sce_bucket_size_y < 1:
            problems.append(f"sce_bucket_size_y must be >= 1, got {self.sce_bucket_size_y}")
        elif self.loss_type == "sce" and self.sce_bucket_size_y > self.num_items:
            problems.append(
                f"sce_bucket_size_y ({self.sce_bucket_size_y}) cannot exceed num_items ({self.num_items}); "
                f"use at most {self.num_items} or loss_type='ce' for a catalogue this small"
            )
        if self.bce_num_negatives < 1:
            problems.append(f"bce_num_negatives must be >= 1, got {self.bce_num_negatives}")
        elif self.loss_type == "bce" and self.bce_num_negatives >= self.num_items:
            problems.append(
                f"bce_num_negatives ({self.bce_num_negatives}) must be smaller than num_items ({self.num_items})"
            )
        if problems:
            raise ValueError("BTSRConfig: " + "; ".join(problems))

    def validate_ssl(self):
        """Checks of the self-supervised settings (run by `@strict` at construction)."""
        problems = []
        if self.ssl_objective not in SSL_OBJECTIVES:
            problems.append(f"ssl_objective must be one of {', '.join(SSL_OBJECTIVES)}, got {self.ssl_objective!r}")
        if not self.infonce_temperature > 0:
            problems.append(
                f"infonce_temperature must be > 0 (CL4SRec and DuoRec use 1.0), got {self.infonce_temperature}"
            )
        if self.infonce_similarity not in INFONCE_SIMILARITIES:
            problems.append(
                f"infonce_similarity must be one of {', '.join(INFONCE_SIMILARITIES)}, got {self.infonce_similarity!r}"
            )
        if self.view_maker not in VIEW_MAKERS:
            problems.append(f"view_maker must be one of {', '.join(VIEW_MAKERS)}, got {self.view_maker!r}")
        if self.ssl_view_span not in VIEW_SPANS:
            problems.append(f"ssl_view_span must be one of {', '.join(VIEW_SPANS)}, got {self.ssl_view_span!r}")
        if not 0 < self.cl4srec_crop_ratio <= 1:
            problems.append(
                f"cl4srec_crop_ratio must be in (0, 1] (the share of items a crop keeps), got {self.cl4srec_crop_ratio}"
            )
        for name in ("cl4srec_mask_ratio", "cl4srec_reorder_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.bt_projector_dims and self.ssl_objective != "barlow_twins":
            problems.append("bt_projector_dims applies to ssl_objective='barlow_twins' only; remove it for infonce")
        if problems:
            raise ValueError("BTSRConfig: " + "; ".join(problems))
