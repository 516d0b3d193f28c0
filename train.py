#!/usr/bin/env python
"""Train BT-SR (or SASRec with --bt_alpha 0) and report full-ranking metrics.

    python train.py                                   # BT-SR on the embedded ml-latest-small, leave-one-out
    python train.py --preset btsr-ml1m --output_dir outputs/btsr-ml1m
    python train.py --data_path my_log.csv --split temporal --bt_alpha 0.1
    accelerate launch --multi_gpu --num_processes 2 train.py --use_cpu ...

Every Trainer flag works (`--max_steps`, `--seed`, `--per_device_train_batch_size`, `--report_to`, ...); settings
resolve as command line > --config file > dataset preset > defaults, and are saved with their sources in the output
folder's run_settings.json (see `python train.py --help`). The installed package has the same command as
`btsr-train` (modeling_btsr/cli.py).
"""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning made 2 threads slower than 1
# (benchmarks/performance.py); on a quiet machine it makes no difference. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv=None) -> int:
    from modeling_btsr.cli import main as run_command

    return run_command(argv, program=("python", "train.py"))


if __name__ == "__main__":
    sys.exit(main())
