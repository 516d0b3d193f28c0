"""Run Python code in a subprocess that cannot import this project (as a Hub user without the package would)."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = f"""
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "") + repr(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]
sys.path_importer_cache.clear()
sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO_ROOT)!r})]
try:
    import modeling_btsr  # noqa: F401
    raise SystemExit("isolation failed: the project is importable")
except ImportError:
    pass
"""


def run_without_project(code: str, env: dict | None = None, timeout: int = 300) -> str:
    """Runs `code` after making the project unimportable; returns stdout, raises with stderr on failure."""
    full_env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code],
        capture_output=True,
        text=True,
        cwd="/",
        env=full_env,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout
