#!/usr/bin/env python
"""Train BT-SR (or SASRec with --bt_alpha 0) and report full-ranking metrics.

    python train.py                                   # BT-SR on the embedded ml-latest-small, leave-one-out
    python train.py --preset btsr-ml1m --output_dir outputs/btsr-ml1m
    python train.py --data_path my_log.csv --split temporal --bt_alpha 0.1
    accelerate launch --multi_gpu --num_processes 2 train.py --use_cpu ...

Every Trainer flag works (`--max_steps`, `--seed`, `--per_device_train_batch_size`, `--report_to`, ...); settings
resolve as command line > --config file > dataset preset > defaults, and are saved with their sources in the output
folder's run_settings.json (see `python train.py --help`).
"""

import logging
import os
import shlex
import sys

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning made 2 threads slower than 1
# (benchmarks/performance.py); on a quiet machine it makes no difference. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv=None) -> int:
    import datasets
    from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
    from transformers.utils import logging as hf_logging

    from data_processing import DataError
    from modeling_btsr.arguments import parse_arguments
    from modeling_btsr.training_run import run_training
    from modeling_btsr.trainer import NonFiniteLossError

    logging.basicConfig(format="%(message)s", level=logging.INFO)
    hf_logging.set_verbosity_warning()
    # One progress bar, the Trainer's: none per checkpoint save, model load or datasets.map.
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        settings = parse_arguments(argv)
        model_args, data_args, training_args, hub = settings
        if training_args.process_index != 0:  # under several processes only the main one speaks
            logging.getLogger().setLevel(logging.WARNING)
            hf_logging.set_verbosity_error()
        command = shlex.join(["python", "train.py", *(sys.argv[1:] if argv is None else argv)])
        results = run_training(
            model_args, data_args, training_args, command=command, hub=hub, settings=settings
        )
    except (DataError, NonFiniteLossError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ValueError, StrictDataclassClassValidationError, StrictDataclassFieldValidationError) as error:
        # BTSRConfig validation wraps our actionable message: print that message alone.
        cause = error.__cause__ if error.__cause__ is not None else error
        print(f"error: {' '.join(str(cause).split())}", file=sys.stderr)
        return 2
    if training_args.process_index == 0:
        print_summary(results, training_args.output_dir)
    return 0


def print_summary(results: dict, output_dir: str) -> None:
    """The metrics a user reads first: BT-SR against the most-popular baseline on the same users."""
    users, protocol = results["num_test_users"], results["protocol"]
    print(f"\nTest metrics ({protocol} split, full ranking, {users} evaluated users, best epoch {results['best_epoch']}):")
    print(f"  {'metric':<14}{'model':>10}{'most-popular':>15}")
    for name in ("hr@10", "ndcg@10", "mrr@10", "hr@1", "hr@50", "coverage@10"):
        line = f"  {name:<14}{results[f'test_{name}']:>10.4f}{results.get(f'test_mostpop_{name}', float('nan')):>15.4f}"
        if f"test_{name}_ci95" in results:
            low, high = results[f"test_{name}_ci95"]
            line += f"   95% CI [{low:.4f}, {high:.4f}] (per-user bootstrap)"
        print(line)
    print(f"Model folder: {os.path.abspath(output_dir)}  (train time {results['train_seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
