"""Data pipeline for BT-SR: read -> validate -> filter -> split -> sequences -> pairs -> collate."""

from .errors import DataError
from .vocab import ItemVocab
from .splits import PROTOCOLS, EvalSplit, SplitData, leave_one_out_split, split_interactions, temporal_split
from .sequences import TrainExamples, build_train_dataset
from .pairs import PairedTrainDataset, draw_partners
from .collator import SequenceCollator

__all__ = ["DataError"]
__all__ += ["ItemVocab", "PROTOCOLS", "EvalSplit", "SplitData", "temporal_split", "leave_one_out_split"]
__all__ += ["split_interactions", "TrainExamples", "build_train_dataset", "PairedTrainDataset", "draw_partners"]
__all__ += ["SequenceCollator"]
