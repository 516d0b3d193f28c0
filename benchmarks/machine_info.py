"""What every benchmark shares: the CPU model its record states, and how a one-result script writes its file
(stdlib only: the RecBole venv imports it too)."""

import json
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """`model name` from /proc/cpuinfo, else what `platform` knows, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_result(name: str, result: dict) -> Path:
    """Writes `benchmarks/results/<name>.json` (replacing it) and prints the result."""
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return out
