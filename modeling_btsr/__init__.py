"""BT-SR: Barlow Twins for Sequential Recommendation, as a Hugging Face model.

Importing this package registers the model with the Auto classes, so
`AutoModel.from_pretrained("org/btsr-ml1m")` and `pipeline("sequential-recommendation", model="org/btsr-ml1m")` work
without `trust_remote_code`; saved folders also carry the code files, an `auto_map` and `custom_pipelines`, so
`trust_remote_code=True` works where this package is not installed.
"""

from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_btsr import LOSS_TYPES, PIPELINE_TASK, BTSRConfig
from .losses_btsr import (
    barlow_twins_loss,
    cross_entropy_loss,
    default_sce_buckets,
    sampled_bce_loss,
    sampled_bpr_loss,
    scalable_cross_entropy_loss,
)
from .modeling_btsr import (
    ITEM_VOCAB_NAME,
    BTSRForSequentialRecommendation,
    BTSRModel,
    BTSRModelOutput,
    BTSRPreTrainedModel,
    BTSRSequentialRecommendationOutput,
    left_pad_sequences,
)
from .pipeline_btsr import BTSRRecommendationPipeline
from .trainer import BTSRTrainer, RankingEvalSet, ResumableEarlyStopping

AutoConfig.register(BTSRConfig.model_type, BTSRConfig, exist_ok=True)
AutoModel.register(BTSRConfig, BTSRModel, exist_ok=True)
# Saved folders get `auto_map` and copies of the defining files for Hub custom code.
BTSRConfig.register_for_auto_class()
BTSRModel.register_for_auto_class("AutoModel")
# pipeline("sequential-recommendation", model=...) with this package's class; no remote code (see BTSRConfig).
PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=BTSRRecommendationPipeline, pt_model=AutoModel)

__all__ = [
    "BTSRConfig",
    "LOSS_TYPES",
    "BTSRPreTrainedModel",
    "BTSRModel",
    "BTSRForSequentialRecommendation",
    "BTSRModelOutput",
    "BTSRSequentialRecommendationOutput",
    "ITEM_VOCAB_NAME",
    "left_pad_sequences",
    "barlow_twins_loss",
    "cross_entropy_loss",
    "scalable_cross_entropy_loss",
    "sampled_bce_loss",
    "sampled_bpr_loss",
    "default_sce_buckets",
    "BTSRRecommendationPipeline",
    "PIPELINE_TASK",
    "BTSRTrainer",
    "RankingEvalSet",
    "ResumableEarlyStopping",
]
