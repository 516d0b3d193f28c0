"""Shared fixtures: small synthetic interaction logs with learnable structure, and the real datasets when present.

Helpers that test modules import live in tests/helpers.py.
"""

from pathlib import Path

import pytest

from data_processing.readers import default_data_root
from tests.helpers import write_synthetic_log


@pytest.fixture
def synthetic_log(tmp_path) -> Path:
    return write_synthetic_log(tmp_path / "log.csv")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of the licensed datasets, where train.py looks for them ($BTSR_DATA_ROOT, else ../shared/data:
    beside the checkout, never in it); a test that asks for it is skipped without it."""
    folder = default_data_root()
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the licensed datasets are not shipped with the repo")
    return folder
