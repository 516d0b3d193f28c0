"""BT-SR model configuration.

Self-contained: imports only transformers and huggingface_hub, because `save_pretrained` copies it beside the
weights for `AutoModel.from_pretrained(..., trust_remote_code=True)`.
"""

import re
import sys
from dataclasses import field, fields
from types import MappingProxyType
from typing import Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

__all__ = [
    "BTSRConfig",
    "LOSS_TYPES",
    "SAMPLED_LOSS_TYPES",
    "SSL_OBJECTIVES",
    "VIEW_MAKERS",
    "VIEW_SPANS",
    "PREDICTION_SPANS",
    "BACKBONES",
    "EXPLAINERS",
    "INFONCE_SIMILARITIES",
    "PIPELINE_TASK",
    "CUSTOM_PIPELINES",
]

# The recommendation pipeline (pipeline_btsr.py, copied beside the weights): what `save_pretrained` writes into
# `config.json`, so that `pipeline(model=FOLDER_OR_REPO_ID, trust_remote_code=True)` finds the task and its class.
PIPELINE_TASK = "sequential-recommendation"
CUSTOM_PIPELINES = {PIPELINE_TASK: {"impl": "pipeline_btsr.BTSRRecommendationPipeline", "pt": ["AutoModel"]}}


@strict(accept_kwargs=True)
class BTSRConfig(PreTrainedConfig):
    r"""
    Configuration of a BT-SR model: a SASRec causal Transformer over item sequences, trained with a prediction loss
    plus `bt_alpha` times a Barlow Twins loss between two users' sequences that lead to the same next item
    (Razvorotnev, Munkhoeva, Frolov, "Barlow Twins for Sequential Recommendation", arXiv 2510.26407).

    Item indices `1..num_items` are items and `0` is padding. The defaults are the paper's reference architecture
    (d = 64, 2 blocks, 1 head, max_len 200) and its ML-1M loss settings. `backbone="bert4rec"` makes the encoder
    BERT4Rec's instead: bidirectional attention trained by masked-item prediction. The settings come in three
    groups: the architecture, the prediction loss, and the self-supervised loss (Barlow Twins, or InfoNCE for the
    CL4SRec and DuoRec baselines). The attention function is chosen as in transformers, with
    `attn_implementation`: `"sdpa"` (the default) or `"eager"`.

    Args:
        backbone (`str`, defaults to `"sasrec"`):
            The encoder and how it is trained. `"sasrec"`: causal attention, each position predicting the next item
            (SASRec, Kang & McAuley 2018). `"bert4rec"`: bidirectional attention trained by masked-item prediction
            (BERT4Rec, Sun et al. 2019): each item of a training sequence is replaced by the mask token
            `num_items + 1` with probability `mlm_probability` and predicted from both sides; a history is scored by
            appending the mask token after its newest item (so the model reads its last `max_len - 1` items) and
            ranking with that position's state, which is also the state the self-supervised loss compares. The
            architecture settings below apply to either (the `bert4rec` preset sets BERT's: `post_ln`, GELU, 2 heads,
            inner width 256, normal initialisation 0.02).
        mlm_probability (`float`, defaults to 0.2):
            Masked-item probability of `backbone="bert4rec"`: each position of a training sequence is masked
            independently with this probability, redrawn each epoch (0.2: BERT4Rec's ML-1M setting and the RecSys
            2023 reproduction's).
        num_items (`int`, defaults to 1):
            Number of items in the catalogue: indices `1..num_items`, 0 is padding (the embedding table has
            `num_items + 1` rows).
        hidden_size (`int`, defaults to 64):
            Width `d` of item embeddings and hidden states.
        num_hidden_layers (`int`, defaults to 2):
            Number of Transformer blocks.
        num_attention_heads (`int`, defaults to 1):
            Attention heads per block; must divide `hidden_size`.
        max_position_embeddings (`int`, defaults to 200):
            Longest sequence the model reads (`max_len`). Longer histories keep their most recent items.
        hidden_dropout_prob (`float`, defaults to 0.1):
            Dropout on embeddings and inside the feed-forward layers.
        attention_probs_dropout_prob (`float`, defaults to 0.1):
            Dropout on attention weights.
        layer_norm_eps (`float`, defaults to 1e-8):
            Epsilon of every LayerNorm (the reference's value).
        length_grouped_attention (`bool`, defaults to `True`):
            Attend per group of rows of similar length, each group on a grid as long as its longest row, instead of
            one grid as long as the batch's longest row (a speed setting). Every row attends to the same keys either
            way. It matters for short-history data (Amazon Beauty: training rows of median length
            3, longest 200). Only the draw of dropout noise differs (the same distribution); outputs without
            dropout are equal up to float rounding. `False` keeps one grid.
        block_layout (`str`, defaults to `"pre_ln"`):
            Where the LayerNorms sit. `"pre_ln"` is the SASRec reference's (a LayerNorm on each sublayer's queries,
            embeddings scaled by sqrt(hidden_size), a final LayerNorm). `"post_ln"` is RecBole's Transformer layer,
            the backbone of CL4SRec's and DuoRec's code: a LayerNorm after each residual sum, `LN(x + Dropout(MHA(x,
            x, x)))` then `LN(h + FFN(h))`, a LayerNorm and dropout on the summed embeddings (unscaled), no final
            LayerNorm.
        intermediate_size (`int`, *optional*):
            Width of the feed-forward's inner layer; `None` is `hidden_size`, the SASRec reference's (RecBole's
            default is 256 at hidden size 64).
        hidden_act (`str`, defaults to `"relu"`):
            Feed-forward activation: `"relu"` (the SASRec reference) or `"gelu"` (RecBole's default).
        initializer_range (`float`, *optional*):
            Standard deviation of a normal initialisation of every matrix and embedding, with zero biases (RecBole's,
            0.02); `None` keeps the reference's Xavier-uniform initialisation.
        loss_type (`str`, defaults to `"ce"`):
            Prediction loss: `"ce"` (full softmax), `"sce"` (Scalable Cross-Entropy), `"bce"` (sampled negatives) or
            `"bpr"` (BPR against sampled negatives; with `bce_num_negatives=1`, the CL4SRec and DuoRec papers' SASRec
            baseline).
        sce_n_buckets (`int`, *optional*):
            SCE bucket count `n_b`; `None` lets the training script apply the paper's default formula.
        sce_bucket_size_x (`int`, *optional*):
            SCE positions per bucket `b_x`. Clamped at run time to the labelled positions present.
        sce_bucket_size_y (`int`, defaults to 256):
            SCE items per bucket `b_y`; must not exceed `num_items`.
        sce_mix_x (`bool`, defaults to `False`):
            Draw SCE bucket centres as random mixtures of the batch's own hidden states instead of pure noise.
        bce_num_negatives (`int`, defaults to 256):
            Sampled negatives per sequence for `loss_type="bce"` and `"bpr"`. They are drawn from items the
            user's training sequence does not contain (under `prediction_span="random_prefix"` the whole row's,
            not only the prefix's and its next item's).
        prediction_span (`str`, defaults to `"sequence"`):
            What one training example of the prediction loss is. `"sequence"` (SASRec, BT-SR): a user's training
            sequence, with a target at every position. `"random_prefix"`: the sequence up to a position drawn
            uniformly each epoch, with its next item as the one target, as the RecBole code of CL4SRec and DuoRec
            makes every prefix a sample (there every prefix each epoch, here one per sequence); with a
            self-supervised loss the views then encode that prefix (`ssl_view_span="random_prefix"`). A training
            setting: the model and its scoring are unchanged.
        bt_alpha (`float`, defaults to 0.2):
            Weight of the self-supervised loss (Barlow Twins or InfoNCE, see `ssl_objective`); `0` trains plain
            SASRec. No second pass and no view draws then.
        bt_lambda (`float`, defaults to 0.05):
            Weight of the off-diagonal (redundancy-reduction) term of the Barlow Twins loss.
        bt_projector_dims (`list[int]`, *optional*):
            Widths of an MLP projector applied to user embeddings before the Barlow Twins loss; none (the paper's
            setting) uses the embeddings as they are.
        ssl_objective (`str`, defaults to `"barlow_twins"`):
            Self-supervised loss between the two views: `"barlow_twins"` (BT-SR) or `"infonce"`. InfoNCE is NT-Xent
            with in-batch negatives, as in CL4SRec and DuoRec.
        infonce_temperature (`float`, defaults to 1.0):
            Temperature `tau` of the InfoNCE loss (CL4SRec and DuoRec: 1.0).
        infonce_similarity (`str`, defaults to `"dot"`):
            Similarity inside the InfoNCE loss: `"dot"` (raw inner product, CL4SRec and DuoRec) or `"cosine"`.
            It applies to EC4SRec's negative-view loss too (its authors' code: `"dot"`).
        view_maker (`str`, defaults to `"same_target"`):
            How the two views of the self-supervised loss are made. `"same_target"` (BT-SR): the sequence and
            another user's sequence with the same next item. `"dropout"` (DuoRec, unsupervised): the same sequence
            encoded twice, differing by dropout only. `"same_target+dropout"` (DuoRec): a second dropout pass of the
            sequence and a same-target partner. `"cl4srec"`: two random crop / mask / reorder augmentations of the
            sequence (CL4SRec). `"ec4srec"` (EC4SRec): two explanation-guided views that keep the sequence's
            important items and a negative view that keeps its unimportant ones (see the `ec4srec_*` settings). In
            every case the prediction loss reads the unaugmented sequence.
        ssl_view_span (`str`, defaults to `"sequence"`):
            What the views of the self-supervised loss encode. `"sequence"` (BT-SR): the whole training sequence, so
            the SSL loss acts on the last position's state, the one that is ranked. `"random_prefix"`: the sequence
            up to a position drawn uniformly each epoch (a same-target partner then shares that prefix's next item),
            so the SSL term weighs on prefixes as the RecBole code of CL4SRec and DuoRec does, where every prefix is
            a sample. A prefix encoded on its own ends at the newest position embedding, the ranked state's;
            `"random_prefix_in_place"` encodes it at the positions it has in its sequence instead (RecBole's
            samples are right-padded: a prefix keeps its positions there).
        cl4srec_crop_ratio (`float`, defaults to 0.6):
            CL4SRec crop ratio `eta`. A crop keeps a contiguous span of `max(1, floor(eta * n))` items.
        cl4srec_mask_ratio (`float`, defaults to 0.3):
            CL4SRec mask ratio `gamma`. A mask replaces `floor(gamma * n)` random positions by the mask token
            `num_items + 1`, which has its own embedding row only when `view_maker="cl4srec"` and
            `cl4srec_mask_ratio > 0`, and is never scored or recommended.
        cl4srec_reorder_ratio (`float`, defaults to 0.6):
            CL4SRec reorder ratio `beta`. A reorder shuffles a contiguous span of `floor(beta * n)` items.
        ec4srec_explainer (`str`, defaults to `"saliency"`):
            How EC4SRec scores the importance of each item of a training sequence for the model's top-ranked next
            item: `"saliency"` (the absolute gradient of that item's logit with respect to the item's input
            embedding, summed over its coordinates) or `"occlusion"` (how much the top logit drops when the item's
            input embedding is replaced by zeros).
        ec4srec_positive_ratio (`float`, defaults to 0.3):
            EC4SRec's `pos_r`. A positive view keeps the `floor(pos_r * n)` most important items (crop), or masks or
            reorders the `floor((1 - pos_r) * n)` least important ones.
        ec4srec_negative_ratio (`float`, defaults to 0.7):
            EC4SRec's `neg_r`. The negative view keeps the `floor(neg_r * n)` least important items (crop), or masks
            or reorders the `floor((1 - neg_r) * n)` most important ones.
        ec4srec_negative_weight (`float`, defaults to 0.05):
            Weight of EC4SRec's negative-view loss (`bt_alpha` weighs the InfoNCE loss between its positive views).
        ec4srec_negative_temperature (`float`, defaults to 0.1):
            Temperature of EC4SRec's negative-view loss.
        ec4srec_update_epochs (`list[int]`, defaults to `[15, 30]`):
            After how many completed epochs EC4SRec computes the importance scores anew. Until the first, training
            is next-item prediction alone (the authors' code: no view, no contrastive term).

    Example:

    >>> from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
    >>> config = BTSRConfig(num_items=3416, bt_alpha=0.2)
    >>> model = BTSRForSequentialRecommendation(config)
    >>> model.num_parameters() == (3416 + 1) * 64 + 63_360
    True
    """

    model_type = "btsr"

    # Architecture (SASRec, or BERT4Rec's bidirectional encoder)
    backbone: Literal["sasrec", "bert4rec"] = "sasrec"
    mlm_probability: float | int = 0.2
    num_items: int = 1
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 1
    max_position_embeddings: int = 200
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    layer_norm_eps: float | int = 1e-8
    length_grouped_attention: bool = True
    block_layout: Literal["pre_ln", "post_ln"] = "pre_ln"
    intermediate_size: int | None = None
    hidden_act: Literal["relu", "gelu"] = "relu"
    initializer_range: float | None = None

    # Prediction loss
    loss_type: Literal["ce", "sce", "bce", "bpr"] = "ce"
    sce_n_buckets: int | None = None
    sce_bucket_size_x: int | None = None
    sce_bucket_size_y: int = 256
    sce_mix_x: bool = False
    bce_num_negatives: int = 256
    prediction_span: Literal["sequence", "random_prefix"] = "sequence"

    # Self-supervised loss
    bt_alpha: float | int = 0.2
    bt_lambda: float | int = 0.05
    bt_projector_dims: list[int] | None = None
    ssl_objective: Literal["barlow_twins", "infonce"] = "barlow_twins"
    infonce_temperature: float | int = 1.0
    infonce_similarity: Literal["dot", "cosine"] = "dot"
    view_maker: Literal["same_target", "dropout", "same_target+dropout", "cl4srec", "ec4srec"] = "same_target"
    ssl_view_span: Literal["sequence", "random_prefix", "random_prefix_in_place"] = "sequence"
    cl4srec_crop_ratio: float | int = 0.6
    cl4srec_mask_ratio: float | int = 0.3
    cl4srec_reorder_ratio: float | int = 0.6
    ec4srec_explainer: Literal["saliency", "occlusion"] = "saliency"
    ec4srec_positive_ratio: float | int = 0.3
    ec4srec_negative_ratio: float | int = 0.7
    ec4srec_negative_weight: float | int = 0.05
    ec4srec_negative_temperature: float | int = 0.1
    ec4srec_update_epochs: list[int] = field(default_factory=lambda: [15, 30])

    @property
    def custom_pipelines(self) -> dict:
        """The saved `custom_pipelines` entry (`CUSTOM_PIPELINES` once saved), unless this process has the task
        registered (`import modeling_btsr` does): transformers' `pipeline()` then builds the registered class, with
        no remote code, instead of demanding `trust_remote_code=True` for the copied file. With the package imported,
        name the task: transformers then uses the package's classes even with `trust_remote_code=True`, so the task
        cannot be read from the config. `config.json` always keeps the saved entry (written from `__dict__`)."""
        registry = getattr(sys.modules.get("transformers.pipelines"), "PIPELINE_REGISTRY", None)
        if registry is not None and PIPELINE_TASK in registry.supported_tasks:
            return {}
        return self.__dict__.get("custom_pipelines") or {}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict | None):
        self.__dict__["custom_pipelines"] = dict(value or {})

    @property
    def mask_token_id(self) -> int | None:
        """Index of the mask token (`num_items + 1`) when one is used, else `None`: the BERT4Rec backbone's, or
        CL4SRec's when masked views are drawn, EC4SRec's (its views mask items).

        Only then does the item embedding table get the extra row; scoring always uses rows `1..num_items`.
        """
        masked_views = self.view_maker == "ec4srec" or (self.view_maker == "cl4srec" and self.cl4srec_mask_ratio > 0)
        if self.backbone == "bert4rec" or masked_views:
            return self.num_items + 1
        return None

    @property
    def is_causal(self) -> bool:
        """Whether a position attends to earlier positions only (SASRec) or to the whole sequence (BERT4Rec)."""
        return self.backbone != "bert4rec"

    @property
    def num_item_embeddings(self) -> int:
        """Rows of the item embedding table: padding, the items, and the mask token when it is used."""
        return self.num_items + (2 if self.mask_token_id is not None else 1)

    # `@strict` runs every `validate_*` method at construction (the `Literal` choices and types it checks itself).
    # Each raises at the first rule broken, naming the field to change.

    def validate_architecture(self):
        super().validate_architecture()
        for name in ("num_items", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            heads = self.num_attention_heads
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({heads})")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise ValueError(f"intermediate_size must be >= 1 or None (hidden_size), got {self.intermediate_size}")
        if self.initializer_range is not None and not self.initializer_range > 0:
            raise ValueError(f"initializer_range must be > 0 or None (Xavier), got {self.initializer_range}")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1) (BERT4Rec: 0.2), got {self.mlm_probability}")
        if self.backbone == "bert4rec" and self.max_position_embeddings < 2:
            raise ValueError("backbone='bert4rec' needs max_position_embeddings >= 2 (an item and the mask token)")

    def validate_backbone(self):
        if self.backbone != "bert4rec":
            return
        # Masked-item training defines its own samples and views; each rule names the setting that conflicts.
        if self.loss_type not in ("ce", "sce"):
            raise ValueError(
                f"backbone='bert4rec' trains with loss_type 'ce' or 'sce' (its inputs carry the mask token, which "
                f"sampled negatives do not exclude), got loss_type={self.loss_type!r}"
            )
        if self.prediction_span != "sequence":
            raise ValueError(
                f"backbone='bert4rec' predicts the masked items of whole sequences; prediction_span must be "
                f"'sequence', got {self.prediction_span!r}"
            )
        if self.ssl_view_span != "sequence":
            raise ValueError(
                f"backbone='bert4rec' compares the states of histories ending in the mask token; ssl_view_span must "
                f"be 'sequence', got {self.ssl_view_span!r}"
            )
        if self.view_maker != "same_target":
            raise ValueError(
                f"backbone='bert4rec' pairs same-target histories (BT-SR); view_maker must be 'same_target', got "
                f"{self.view_maker!r}"
            )

    def validate_prediction_loss(self):
        for name in ("sce_n_buckets", "sce_bucket_size_x"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None (the default formula), got {getattr(self, name)}")
        if self.sce_bucket_size_y < 1:
            raise ValueError(f"sce_bucket_size_y must be >= 1, got {self.sce_bucket_size_y}")
        if self.loss_type == "sce" and self.sce_bucket_size_y > self.num_items:
            raise ValueError(
                f"sce_bucket_size_y ({self.sce_bucket_size_y}) cannot exceed num_items ({self.num_items}); "
                f"use at most {self.num_items} or loss_type='ce' for a catalogue this small"
            )
        if self.bce_num_negatives < 1:
            raise ValueError(f"bce_num_negatives must be >= 1, got {self.bce_num_negatives}")
        if self.loss_type in SAMPLED_LOSS_TYPES and self.bce_num_negatives >= self.num_items:
            raise ValueError(
                f"bce_num_negatives ({self.bce_num_negatives}) must be smaller than num_items ({self.num_items})"
            )

    def validate_ssl(self):
        if self.bt_alpha < 0:
            raise ValueError(f"bt_alpha must be >= 0 (0 trains plain SASRec), got {self.bt_alpha}")
        if self.bt_lambda < 0:
            raise ValueError(f"bt_lambda must be >= 0, got {self.bt_lambda}")
        if self.bt_projector_dims is not None and any(width < 1 for width in self.bt_projector_dims):
            raise ValueError(f"bt_projector_dims must hold positive widths, got {self.bt_projector_dims}")
        if self.bt_projector_dims and self.ssl_objective != "barlow_twins":
            raise ValueError("bt_projector_dims applies to ssl_objective='barlow_twins' only; remove it for infonce")
        if self.prediction_span == "random_prefix" and self.bt_alpha > 0 and self.ssl_view_span != "random_prefix":
            raise ValueError(
                f"prediction_span='random_prefix' needs ssl_view_span='random_prefix' (the views encode the "
                f"sample's prefix), got ssl_view_span={self.ssl_view_span!r}"
            )
        no_dropout = self.hidden_dropout_prob == 0 and self.attention_probs_dropout_prob == 0
        if "dropout" in self.view_maker and self.bt_alpha > 0 and no_dropout:
            # The second pass differs from the first by dropout alone; at 0 the pair is one state twice.
            raise ValueError(
                f"view_maker={self.view_maker!r} draws a view by dropout; hidden_dropout_prob 0 (attention dropout "
                f"0 too) makes it the sequence's own state (DuoRec: 0.1 or more)"
            )
        if not self.infonce_temperature > 0:
            raise ValueError(
                f"infonce_temperature must be > 0 (CL4SRec and DuoRec use 1.0), got {self.infonce_temperature}"
            )
        if not 0 < self.cl4srec_crop_ratio <= 1:
            raise ValueError(
                f"cl4srec_crop_ratio must be in (0, 1] (the share of items a crop keeps), got {self.cl4srec_crop_ratio}"
            )
        for name in ("cl4srec_mask_ratio", "cl4srec_reorder_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._validate_ec4srec()

    def _validate_ec4srec(self):
        for name in ("ec4srec_positive_ratio", "ec4srec_negative_ratio"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1) (EC4SRec: 0.3 and 0.7), got {getattr(self, name)}")
        if self.ec4srec_negative_weight < 0:
            raise ValueError(
                f"ec4srec_negative_weight must be >= 0 (EC4SRec: 0.05), got {self.ec4srec_negative_weight}"
            )
        if not self.ec4srec_negative_temperature > 0:
            raise ValueError(
                f"ec4srec_negative_temperature must be > 0 (EC4SRec: 0.1), got {self.ec4srec_negative_temperature}"
            )
        epochs = list(self.ec4srec_update_epochs)
        if not epochs or any(e < 1 for e in epochs) or epochs != sorted(set(epochs)):
            raise ValueError(
                f"ec4srec_update_epochs must be increasing epoch counts >= 1 (EC4SRec: [15, 30]), got {epochs}"
            )
        if self.view_maker != "ec4srec":
            return
        if self.ssl_objective != "infonce":
            raise ValueError(f"view_maker='ec4srec' uses ssl_objective='infonce', got {self.ssl_objective!r}")
        if self.ssl_view_span != "sequence" or self.prediction_span != "sequence":
            raise ValueError(
                "view_maker='ec4srec' explains whole training sequences: ssl_view_span and prediction_span must be "
                f"'sequence', got {self.ssl_view_span!r} and {self.prediction_span!r}"
            )


def _document_fields(cls: type) -> None:
    """Gives each field `cls` declares the first sentence of its `Args:` entry as `help` metadata (what an argument
    parser such as `HfArgumentParser` shows), so that the class docstring is the one place a setting is described."""
    entries = dict(re.findall(r"^ {8}(\w+) \(.*?\):\n((?: {12}.*\n)+)", cls.__doc__, flags=re.MULTILINE))
    declared = {f.name: f for f in fields(cls)}
    for name in cls.__dict__["__annotations__"]:
        if name not in entries:
            raise TypeError(f"{cls.__name__}.{name} has no entry in the class docstring's Args section")
        text = " ".join(entries[name].split())
        sentence = re.match(r"(.+?\.)(?=\s+[A-Z`]|$)", text)
        declared[name].metadata = MappingProxyType({"help": sentence.group(1) if sentence else text})


_document_fields(BTSRConfig)

_ANNOTATIONS = BTSRConfig.__dict__["__annotations__"]
LOSS_TYPES = get_args(_ANNOTATIONS["loss_type"])
SAMPLED_LOSS_TYPES = ("bce", "bpr")
"""The prediction losses scored against sampled negatives (`bce_num_negatives`), not the catalogue."""
SSL_OBJECTIVES = get_args(_ANNOTATIONS["ssl_objective"])
INFONCE_SIMILARITIES = get_args(_ANNOTATIONS["infonce_similarity"])
VIEW_MAKERS = get_args(_ANNOTATIONS["view_maker"])
EXPLAINERS = get_args(_ANNOTATIONS["ec4srec_explainer"])
VIEW_SPANS = get_args(_ANNOTATIONS["ssl_view_span"])
PREDICTION_SPANS = get_args(_ANNOTATIONS["prediction_span"])
BACKBONES = get_args(_ANNOTATIONS["backbone"])
