"""Batch collation for the Trainer: left padding to the longest sequence of the batch.

Padding goes on the left so that the most recent item is always the last position, whose hidden state scores the
next item. Sequences are padded to the longest one *in the batch*, not to ``max_len``: the model masks padded keys,
so its outputs do not depend on the amount of padding and short batches cost less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .table import SequenceTable
from .vocab import IGNORE_INDEX, PAD_INDEX

__all__ = ["SequenceCollator", "IGNORE_INDEX", "left_pad"]


def left_pad(
    rows: Sequence[Any], max_len: int | None = None, pad_value: int = PAD_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad integer rows (lists, numpy arrays or tensors) to the longest one, keeping each row's last
    ``max_len`` values.

    Returns ``(values, mask)``, ``torch.long`` of shape ``(len(rows), longest)``; ``mask`` is 1 on real values.

    >>> values, mask = left_pad([[1, 2, 3], [4]], pad_value=-1)
    >>> values.tolist(), mask.tolist()
    ([[1, 2, 3], [-1, -1, 4]], [[1, 1, 1], [0, 0, 1]])
    """
    arrays = [np.asarray(row, dtype=np.int64).reshape(-1) for row in rows]
    if max_len:
        arrays = [row[-max_len:] for row in arrays]
    lengths = np.fromiter((len(row) for row in arrays), dtype=np.int64, count=len(arrays))
    width = int(lengths.max(initial=0))
    real = np.arange(width) >= (width - lengths)[:, None]  # each row's last `length` cells, in row-major order
    values = np.full((len(arrays), width), pad_value, dtype=np.int64)
    if width:
        values[real] = np.concatenate(arrays)
    return torch.from_numpy(values), torch.from_numpy(real.astype(np.int64))


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

    With a ``table`` (a :class:`~data_processing.table.SequenceTable` of the training examples), features may name
    rows instead of carrying lists (what :meth:`PairedTrainDataset.__getitems__` serves): ``row`` gives
    ``input_ids`` and ``labels``, ``pair_row`` / ``view_row`` give ``pair_input_ids`` / ``view_input_ids``, all
    gathered from the table in one vectorised step per field.

    Args:
        max_len: keep at most this many most recent positions (``None``: the sequences are already short enough).
        pad_value: padding item index (0).
        table: where ``row``-only features are gathered from.

    >>> batch = SequenceCollator()([{"input_ids": [1, 2], "labels": [2, 3]}, {"input_ids": [4], "labels": [5]}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[1, 2], [0, 4]], [[1, 1], [0, 1]], [[2, 3], [-100, 5]])
    """

    max_len: int | None = None
    pad_value: int = 0
    table: SequenceTable | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("SequenceCollator: empty batch")
        if "row" in features[0] and "input_ids" not in features[0]:
            return self._gather(features)
        input_ids, attention_mask = left_pad([f["input_ids"] for f in features], self.max_len, self.pad_value)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}

        if "labels" in features[0]:
            batch["labels"] = self._pad_labels(features)

        return self._add_views_and_ints(batch, features, skip=("labels",))

    def _add_views_and_ints(
        self, batch: dict[str, torch.Tensor], features: Sequence[dict[str, Any]], skip: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Pads every other ``<name>_input_ids`` list field (with its ``<name>_attention_mask``) and stacks every
        one-int-per-example field into `batch`; the `skip` fields are left out."""
        views = [key for key in features[0] if key.endswith("_input_ids") and key not in batch]
        for key in views:  # pair_input_ids, view_input_ids, ...
            batch[key], batch[key[: -len("input_ids")] + "attention_mask"] = left_pad(
                [f[key] for f in features], self.max_len, self.pad_value
            )
        for key, value in features[0].items():
            if key in batch or key in skip:
                continue
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                batch[key] = torch.as_tensor([int(f[key]) for f in features], dtype=torch.long)
        return batch

    def _gather(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Features that name rows of `table` (see the class docstring)."""
        if self.table is None:
            raise ValueError(
                "SequenceCollator: the features name rows (`row`) of a PairedTrainDataset but the collator has no "
                "table; build it as SequenceCollator(table=dataset.table)"
            )
        table = self.table
        rows = np.fromiter((f["row"] for f in features), dtype=np.int64, count=len(features))
        input_ids, attention_mask = table.left_padded("input_ids", rows, self.max_len, self.pad_value)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "labels" in table.columns:
            batch["labels"] = table.left_padded("labels", rows, self.max_len, IGNORE_INDEX)[0]
        for key, view in (("pair_row", "pair"), ("view_row", "view")):
            if key in features[0]:
                other = np.fromiter((f[key] for f in features), dtype=np.int64, count=len(features))
                batch[f"{view}_input_ids"], batch[f"{view}_attention_mask"] = table.left_padded(
                    "input_ids", other, self.max_len, self.pad_value
                )
        return self._add_views_and_ints(batch, features, skip=("row", "pair_row", "view_row"))

    def _pad_labels(self, features: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Left-pad the labels with -100 exactly as the ``input_ids``: a row's labels must be as long as its
        inputs, so that label ``t`` stays beside input ``t``, including when ``max_len`` cuts both."""
        for i, feature in enumerate(features):
            if len(feature["labels"]) != len(feature["input_ids"]):
                raise ValueError(
                    f"SequenceCollator: example {i} has {len(feature['input_ids'])} input_ids "
                    f"but {len(feature['labels'])} labels"
                )
        return left_pad([f["labels"] for f in features], self.max_len, IGNORE_INDEX)[0]
