"""Helpers the test modules import (conftest.py only holds fixtures: pytest imports it, test modules do not)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def require(path: Path) -> Path:
    """`path` when it exists; otherwise the test is skipped (one dataset of the `shared_data` folder may be missing)."""
    if not path.exists():
        pytest.skip(f"{path} is absent: the licensed datasets are not shipped with the repo")
    return path


def write_synthetic_log(path: Path, num_users: int = 120, num_items: int = 40, seed: int = 0) -> Path:
    """Users walk a ring of items with small random jumps: the next item is predictable from the last ones."""
    rng = np.random.default_rng(seed)
    rows = ["user_id,item_id,timestamp"]
    for user in range(num_users):
        length = int(rng.integers(5, 25))
        item = int(rng.integers(0, num_items))
        t = int(rng.integers(1_000_000, 2_000_000))
        for _ in range(length):
            rows.append(f"u{user},{item + 1},{t}")
            item = (item + 1 + int(rng.integers(0, 2))) % num_items
            t += int(rng.integers(1, 1000))
    path.write_text("\n".join(rows) + "\n")
    return path


def run_train(args: list[str], launcher: list[str] | None = None, timeout: int = 600, check: bool = True):
    """Runs train.py in a subprocess (as a user would) and returns the CompletedProcess."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = (launcher or [sys.executable]) + [str(REPO_ROOT / "train.py"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)
    if check and result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        raise AssertionError(f"train.py failed ({result.returncode}):\n{output}")
    return result


def tiny_run_args(data_path: Path, output_dir: Path, *extra: str) -> list[str]:
    """train.py arguments of a seconds-long CPU run on a small log (a 16-wide model, no workers, no trackers)."""
    return [
        "--data_path",
        str(data_path),
        "--output_dir",
        str(output_dir),
        "--hidden_size",
        "16",
        "--use_cpu",
        "--dataloader_num_workers",
        "0",
        "--report_to",
        "none",
        *extra,
    ]
