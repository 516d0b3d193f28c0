"""The one exception type for user mistakes in data and configuration.

`train.py` catches :class:`DataError` and prints its message as a single ``error: ...`` line with a non-zero exit
status, so every message must name the file and the column, row or id at fault and fit on one line.
"""

__all__ = ["DataError"]


class DataError(ValueError):
    """A problem with the user's input data or settings, reported as one line without a traceback."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
