"""Data pipeline for BT-SR: read -> validate -> filter -> split -> sequences -> pairs -> collate."""

from .errors import DataError

__all__ = ["DataError"]
