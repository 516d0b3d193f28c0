#!/usr/bin/env python
"""Peak RSS of SASRec-CE training on ML-1M over whole epochs: float32, bf16 autocast, and bf16 autocast with glibc's
mmap threshold pinned (`MALLOC_MMAP_THRESHOLD_=65536`).

    .venv/bin/python benchmarks/bf16_memory.py                 # 2 epochs per setting, 1 thread
    .venv/bin/python benchmarks/bf16_memory.py --epochs 3 --threads 2

Why: in the peers run (`peers_sasrec.py`) our bf16 child's peak RSS grew every epoch (1.64 GB after the first, 3.3 GB
after ten) while the float32 one stayed at 1.35 GB. Each setting runs in a fresh process (the environment variable is
read at start-up) with `benchmarks/performance.py`'s `EpochRun` (the Trainer's step: collate, forward, backward, fused
AdamW), seed 0, batch 256, and reports `ru_maxrss` after each epoch. Results: `results/bf16_memory.json`.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_model, write_result  # noqa: E402

SETTINGS = {
    "float32": ({}, False),
    "bf16": ({}, True),
    "bf16_mmap_threshold_65536": ({"MALLOC_MMAP_THRESHOLD_": "65536"}, True),
}


def child(bf16: bool, epochs: int) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from modeling_btsr.arguments import DataArguments
    from modeling_btsr.training_run import prepare_data
    from performance import EpochRun

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = prepare_data(DataArguments(dataset="ml-1m", split="leave_one_out"), 200)
    run = EpochRun(data.examples, len(data.item_user_counts), "ce", 0.0, bf16=bf16)
    peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024]
    for _ in range(epochs):
        for index in range(len(run.batches)):
            run.step(index)
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    print(json.dumps({"peak_rss_mb_before_and_after_each_epoch": peaks, "epoch_s": run.summary()["epoch_s"]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["float32", "bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child == "bf16", args.epochs)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from data_processing.readers import known_dataset_path

    if not known_dataset_path("ml-1m").exists():
        print(f"skipping: ML-1M data file {known_dataset_path('ml-1m')} not found (not shipped: set BTSR_DATA_ROOT)")
        return 0
    results = {}
    for name, (env, bf16) in SETTINGS.items():
        command = [sys.executable, __file__, "--child", "bf16" if bf16 else "float32", "--epochs", str(args.epochs)]
        environment = {**os.environ, **env, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, results[name], flush=True)
    write_result(
        "bf16_memory",
        {
            "command": f".venv/bin/python benchmarks/bf16_memory.py --epochs {args.epochs} --threads {args.threads}",
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end",
            "settings": "SASRec-CE, ML-1M leave-one-out, batch 256, max_len 200, seed 0, whole epochs of 24 steps",
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
