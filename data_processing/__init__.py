"""Data pipeline for BT-SR: read -> validate -> filter -> split -> sequences -> pairs -> collate."""

from .augment import AUGMENTATIONS, cl4srec_view, crop, explained_view, mask, operator_pairs, reorder, view_rng
from .collator import SequenceCollator
from .download import fetch_ml1m_ratings
from .errors import DataError
from .filtering import filter_interactions
from .pairs import PREDICTION_SPANS, VIEW_MAKERS, VIEW_SPANS, PairedTrainDataset, draw_partners, epoch_pairs
from .readers import DATA_FORMATS, guess_data_format, interactions_from_dataset, load_dataset_by_name, read_interactions
from .sequences import TrainExamples, build_train_dataset
from .splits import (
    PROTOCOLS,
    EvalSplit,
    SplitData,
    leave_one_out_split,
    split_interactions,
    temporal_split,
    user_holdout_split,
)
from .table import SequenceTable
from .vocab import ItemVocab

__all__ = ["DataError"]
__all__ += ["ItemVocab", "PROTOCOLS", "EvalSplit", "SplitData", "temporal_split", "leave_one_out_split"]
__all__ += [
    "user_holdout_split",
    "split_interactions",
    "TrainExamples",
    "build_train_dataset",
    "PairedTrainDataset",
    "draw_partners",
]
__all__ += [
    "PREDICTION_SPANS",
    "VIEW_MAKERS",
    "VIEW_SPANS",
    "AUGMENTATIONS",
    "crop",
    "mask",
    "reorder",
    "cl4srec_view",
    "explained_view",
    "view_rng",
]
__all__ += ["operator_pairs"]
__all__ += ["SequenceCollator"]
__all__ += [
    "DATA_FORMATS",
    "guess_data_format",
    "read_interactions",
    "interactions_from_dataset",
    "load_dataset_by_name",
]
__all__ += ["filter_interactions", "fetch_ml1m_ratings"]
__all__ += ["epoch_pairs", "SequenceTable"]
