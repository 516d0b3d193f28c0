#!/usr/bin/env python
"""Scores finished runs with test contexts cut to their last N items, and pairs a method with its SASRec baseline.

    .venv/bin/python benchmarks/short_contexts.py --base ml-1m-leave_one_out-sasrec-ce-s0-c2af1b34 \
        --method ml-1m-leave_one_out-bt-sr-s0-184de512 --lens 3 5 10

The paper's temporal split evaluates test-period users on short contexts; leave-one-out gives every user the whole
history. Cutting what the encoder reads (`--eval_context_len`, exclusion still over the whole history) asks whether
BT-SR's standing against SASRec depends on the context's length, on the very models already selected on validation
(nothing is retrained or reselected). A run is a folder, or a run id under the reproduce runner's work folder.
Writes `benchmarks/results/short_contexts.json` (one entry per pair and length, the command inside) and prints the
table that `short_contexts.md` holds.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from modeling_btsr.metrics import paired_bootstrap_ci  # noqa: E402
from reevaluate import reevaluate  # noqa: E402
from reproduce import WORK  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "short_contexts.json"


def run_folder(name: str) -> Path:
    folder = Path(name)
    if not (folder / "all_results.json").is_file():
        folder = WORK / name
    if not (folder / "all_results.json").is_file():
        raise SystemExit(f"short_contexts.py: {name!r} is neither a finished run folder nor a run id under {WORK}")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--base", required=True, help="the SASRec run (folder or run id)")
    parser.add_argument("--method", required=True, help="the run compared with it, on the same data")
    parser.add_argument("--lens", type=int, nargs="+", default=[3, 5, 10], help="context lengths N")
    parser.add_argument("--data_root", default=None, help="where the named datasets are, if not where they were")
    args = parser.parse_args()
    if min(args.lens) < 1:
        raise SystemExit(f"short_contexts.py: --lens must be >= 1, got {args.lens}")
    base, method = run_folder(args.base), run_folder(args.method)
    entries = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    command = "python benchmarks/short_contexts.py " + " ".join(sys.argv[1:])
    print(f"| N | {base.name} NDCG@10 | {method.name} NDCG@10 | difference [95% CI] | HR@10 difference |")
    print("|---|---|---|---|---|")
    for n in [*args.lens, None]:  # None: the model's whole window, as recorded
        scored = {}
        for role, folder in (("base", base), ("method", method)):
            _, metrics, per_user = reevaluate(folder, args.data_root, context_len=n)
            scored[role] = (metrics, per_user)
        (m_base, u_base), (m_method, u_method) = scored["base"], scored["method"]
        if len(u_base["ndcg@10"]) != len(u_method["ndcg@10"]):
            raise SystemExit("short_contexts.py: the two runs evaluate different users")
        cells = {}
        for metric in ("ndcg@10", "hr@10"):
            a, b = np.asarray(u_method[metric], float), np.asarray(u_base[metric], float)
            ci = paired_bootstrap_ci(a, b, seed=0)
            cells[metric] = {"difference": float(ci.mean), "ci95": [float(ci.low), float(ci.high)]}
        entry = {
            "base": base.name,
            "method": method.name,
            "eval_context_len": n,
            "num_users": int(m_base["test_num_users"]),
            "base_test": {k: m_base[f"test_{k}"] for k in ("hr@10", "ndcg@10", "coverage@10")},
            "method_test": {k: m_method[f"test_{k}"] for k in ("hr@10", "ndcg@10", "coverage@10")},
            "method_minus_base": cells,
            "command": command,
        }
        entries = [e for e in entries if (e["base"], e["method"], e["eval_context_len"]) != (base.name, method.name, n)]
        entries.append(entry)
        d, h = cells["ndcg@10"], cells["hr@10"]
        print(
            f"| {n or 'whole window'} | {m_base['test_ndcg@10']:.4f} | {m_method['test_ndcg@10']:.4f} | "
            f"{d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] | {h['difference']:+.4f} |",
            flush=True,
        )
        RESULTS.write_text(json.dumps(entries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
