"""Plain Python values for JSON files and messages: ``5``, not ``np.int64(5)``; an enum's value, not its repr."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

__all__ = ["to_builtin"]


def to_builtin(value: Any) -> Any:
    """``value`` with numpy scalars and enums replaced by Python ones, recursively through dicts (keys as str),
    lists and tuples (as lists); anything else as it is.

    >>> to_builtin({1: (np.int64(5), [np.float32(0.5)]), "k": enum.Enum("E", "a").a})
    {'1': [5, [0.5]], 'k': 1}
    """
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, enum.Enum):
        return value.value
    return value
