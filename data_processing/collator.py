"""Batch collation for the Trainer: left padding to the longest sequence of the batch.

Padding goes on the left so that the most recent item is always the last position, whose hidden state scores the
next item. Sequences are padded to the longest one *in the batch*, not to ``max_len``: the model masks padded keys,
so its outputs do not depend on the amount of padding and short batches cost less.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from modeling_btsr.modeling_btsr import left_pad_sequences

__all__ = ["SequenceCollator", "IGNORE_INDEX"]

IGNORE_INDEX = -100
"""Label of padded positions: ignored by the losses (the PyTorch / Transformers convention)."""


def _as_list(values: Any) -> list[int]:
    if isinstance(values, torch.Tensor):
        return values.reshape(-1).tolist()
    if isinstance(values, np.ndarray):
        return values.reshape(-1).tolist()
    return list(values)


@dataclass
class SequenceCollator:
    """``data_collator`` for :class:`~data_processing.pairs.PairedTrainDataset` items (and evaluation items).

    Given features with ``input_ids`` (and optionally ``labels``, ``pair_input_ids``), returns ``torch.long``
    tensors, ``T`` = the longest ``input_ids`` in the batch (at most ``max_len``), ``T'`` the longest pair::

        input_ids           (B, T)   left-padded with `pad_value`
        attention_mask      (B, T)   1 on real items, 0 on padding
        labels              (B, T)   left-padded with -100, aligned position by position with input_ids
        pair_input_ids      (B, T')  only when the features carry pair_input_ids
        pair_attention_mask (B, T')

    Every other ``<name>_input_ids`` list field (e.g. the ``view_input_ids`` of CL4SRec and DuoRec views) is
    padded the same way, with its mask as ``<name>_attention_mask``.

    Any other feature holding one int per example (e.g. an evaluation ``target``) is stacked into a ``(B,)``
    tensor.

    Args:
        max_len: keep at most this many most recent positions (``None``: the sequences are already short enough).
        pad_value: padding item index (0).

    >>> batch = SequenceCollator()([{"input_ids": [1, 2], "labels": [2, 3]}, {"input_ids": [4], "labels": [5]}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[1, 2], [0, 4]], [[1, 1], [0, 1]], [[2, 3], [-100, 5]])
    """

    max_len: int | None = None
    pad_value: int = 0

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("SequenceCollator: empty batch")
        inputs = [_as_list(f["input_ids"]) for f in features]
        input_ids, attention_mask = left_pad_sequences(inputs, max_len=self.max_len, pad_value=self.pad_value)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}

        if "labels" in features[0]:
            batch["labels"] = self._pad_labels([_as_list(f["labels"]) for f in features], inputs, attention_mask)

        views = [key for key in features[0] if key.endswith("_input_ids")]  # pair_input_ids, view_input_ids, ...
        for key in views:
            rows = [_as_list(f[key]) for f in features]
            batch[key], batch[key[: -len("input_ids")] + "attention_mask"] = left_pad_sequences(
                rows, max_len=self.max_len, pad_value=self.pad_value
            )

        for key, value in features[0].items():
            if key in batch or key == "labels" or key in views:
                continue
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                batch[key] = torch.as_tensor([int(f[key]) for f in features], dtype=torch.long)
        return batch

    @staticmethod
    def _pad_labels(labels: list[list[int]], inputs: list[list[int]], attention_mask: torch.Tensor) -> torch.Tensor:
        """Place each row's labels on exactly the positions its ``input_ids`` occupy (the mask's 1s), -100 elsewhere.

        Deriving the positions from the input mask (rather than padding the labels separately) guarantees that
        label ``t`` stays beside input ``t``, including when ``max_len`` cuts both.
        """
        out = torch.full(attention_mask.shape, IGNORE_INDEX, dtype=torch.long)
        lengths = attention_mask.sum(dim=1).tolist()
        width = attention_mask.shape[1]
        for i, (row, n) in enumerate(zip(labels, lengths)):
            if len(row) != len(inputs[i]):
                raise ValueError(
                    f"SequenceCollator: example {i} has {len(inputs[i])} input_ids but {len(row)} labels"
                )
            if n:
                out[i, width - n :] = torch.as_tensor(row[-n:], dtype=torch.long)
        return out
