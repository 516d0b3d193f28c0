#!/usr/bin/env python
"""Times full-ranking evaluation of every ML-1M user (leave-one-out test split, 3,416 items, context <= 200).

    .venv/bin/python benchmarks/evaluation_speed.py [MODEL_FOLDER]   # writes benchmarks/results/evaluation_speed.json

Without a folder a freshly initialised model of the reference size is timed (the work is the same: scoring does
not depend on the weights). Three repetitions; the median is reported. Target (benchmarks issue): 2 s.
"""

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from machine_info import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ML1M = ROOT.parent / "shared" / "data" / "ml-1m" / "ml-1m.txt.gz"


def main() -> int:
    if not ML1M.exists():
        print(f"skipped: {ML1M} not found (ML-1M is not shipped; see ../shared/data/README.md)")
        return 0
    import torch

    from data_processing import leave_one_out_split, read_interactions
    from modeling_btsr import BTSRConfig, BTSRModel
    from modeling_btsr.evaluation import evaluate_ranking

    torch.set_num_threads(2)
    split = leave_one_out_split(read_interactions(ML1M, "sasrec"), max_len=200)
    if len(sys.argv) > 1:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(sys.argv[1])
    else:
        torch.manual_seed(0)
        model = BTSRModel(BTSRConfig(num_items=len(split.item_vocab)))
    timings, metrics = [], None
    for _ in range(3):
        started = time.perf_counter()
        metrics = evaluate_ranking(model, split.test.contexts, split.test.targets, prefix="test")
        timings.append(time.perf_counter() - started)
    result = {
        "command": "python benchmarks/evaluation_speed.py" + (f" {sys.argv[1]}" if len(sys.argv) > 1 else ""),
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__}, 2 threads",
        "users": len(split.test),
        "num_items": len(split.item_vocab),
        "eval_all_users_s": round(statistics.median(timings), 3),
        "runs_s": [round(t, 3) for t in timings],
        "load_average": list(os.getloadavg()),
        "test_ndcg@10": metrics["test_ndcg@10"],
        "target_s": 2.0,
    }
    write_result("evaluation_speed", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
