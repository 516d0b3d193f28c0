#!/usr/bin/env python
"""Times full-ranking evaluation of every ML-1M user (leave-one-out test split, 3,416 items, context <= 200).

    .venv/bin/python benchmarks/evaluation_speed.py [MODEL_FOLDER]   # writes benchmarks/results/evaluation_speed.json
    # another commit's code (a worktree), timed by this script, printed only: run two alternately to compare them
    git worktree add /tmp/old a8d95af && .venv/bin/python benchmarks/evaluation_speed.py --code_root /tmp/old

Without a folder a freshly initialised model of the reference size is timed (the work is the same: scoring does
not depend on the weights). Three repetitions; the median is reported. Target (benchmarks issue): 2 s.

`--profile` adds where a pass spends its time: the encoder alone over the same length-sorted batches (timed three
times, median), its share of the pass, and the torch operators with the most self CPU time in one profiled pass.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from machine_info import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_folder", nargs="?", default=None, help="a trained model (default: random init)")
    parser.add_argument(
        "--code_root",
        default=None,
        help="import the package from this checkout (another commit) instead; prints, writes nothing",
    )
    parser.add_argument("--profile", action="store_true", help="also time the encoder alone and list the top ops")
    args = parser.parse_args()
    commit = None
    if args.code_root is not None:
        if not (Path(args.code_root) / "modeling_btsr" / "__init__.py").exists():
            print(f"error: --code_root {args.code_root}: no modeling_btsr package there", file=sys.stderr)
            return 2
        sys.path.insert(0, str(Path(args.code_root).resolve()))  # ahead of the editable install
        commit = subprocess.run(
            ["git", "-C", args.code_root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    from data_processing.readers import known_dataset_path

    ML1M = known_dataset_path("ml-1m")
    if not ML1M.exists():
        print(f"skipped: {ML1M} not found (not shipped (licence): set BTSR_DATA_ROOT)")
        return 0
    import torch

    from data_processing import leave_one_out_split, read_interactions
    from modeling_btsr import BTSRConfig, BTSRModel
    from modeling_btsr.evaluation import evaluate_ranking

    torch.set_num_threads(2)
    split = leave_one_out_split(read_interactions(ML1M, "sasrec"), max_len=200)
    if args.model_folder is not None:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(args.model_folder)
    else:
        torch.manual_seed(0)
        model = BTSRModel(BTSRConfig(num_items=len(split.item_vocab)))
    timings, metrics = [], None
    for _ in range(3):
        started = time.perf_counter()
        metrics = evaluate_ranking(model, split.test.contexts, split.test.targets, prefix="test")
        timings.append(time.perf_counter() - started)
    result = {
        "command": ".venv/bin/python benchmarks/evaluation_speed.py"
        + (f" {args.model_folder}" if args.model_folder else "")
        + (" --profile" if args.profile else ""),
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__}, 2 threads",
        "users": len(split.test),
        "num_items": len(split.item_vocab),
        "eval_all_users_s": round(statistics.median(timings), 3),
        "runs_s": [round(t, 3) for t in timings],
        "load_average": list(os.getloadavg()),
        "test_ndcg@10": metrics["test_ndcg@10"],
        "target_s": 2.0,
    }
    if args.profile:
        result["profile"] = profile(model, split.test.contexts, split.test.targets, statistics.median(timings))
    if args.code_root is not None:
        code = Path(sys.modules[BTSRModel.__module__].__file__).resolve().parent.parent  # where it was imported from
        print(json.dumps({**result, "code": str(code), "commit": commit, "command": " ".join(sys.argv)}))
        return 0
    write_result("evaluation_speed", result)
    return 0


def profile(model, contexts, targets, pass_s: float, top: int = 12) -> dict:
    from data_processing.readers import known_dataset_path

    ML1M = known_dataset_path("ml-1m")
    if not ML1M.exists():
        print(f"skipped: {ML1M} not found (not shipped (licence): set BTSR_DATA_ROOT)")
        return 0
    import torch

    from modeling_btsr.evaluation import evaluate_ranking

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        with torch.inference_mode():  # the model's own length-sorted batches of 256, user embeddings only
            model.encode_indices([list(c) for c in contexts], batch_size=256)
        timings.append(time.perf_counter() - started)
    encoder_s = statistics.median(timings)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        evaluate_ranking(model, contexts, targets, prefix="test")
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in events)
    return {
        "encoder_s": round(encoder_s, 3),
        "encoder_share_of_pass": round(encoder_s / pass_s, 3),
        "top_ops_self_cpu": [
            {
                "op": e.key,
                "calls": e.count,
                "ms": round(e.self_cpu_time_total / 1000, 1),
                "share": round(e.self_cpu_time_total / total_us, 3),
            }
            for e in events[:top]
        ],
        "note": "operator times come from one profiled pass (the profiler adds overhead); compare shares",
    }


if __name__ == "__main__":
    sys.exit(main())
