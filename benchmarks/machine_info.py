"""The CPU model string every benchmark record states (stdlib only: the RecBole venv imports it too)."""

import platform
from pathlib import Path


def cpu_model() -> str:
    """`model name` from /proc/cpuinfo, else what `platform` knows, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
