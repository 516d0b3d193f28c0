"""The training command: `btsr-train` once the package is installed, `python train.py` in a checkout.

Both parse the same settings (`btsr-train --help`), run the training and print the test metrics against the
most-popular baseline. A mistake a user can fix (data, settings, a non-finite loss) ends in one line on stderr and
exit code 2, never a traceback; so does a checkpoint that cannot be written (a full disk).

`train.py` sets `OMP_WAIT_POLICY=PASSIVE` before torch loads (idle threads sleep rather than spin, which helps on a
busy CPU); `btsr-train` cannot, since importing this package loads torch: set it in the environment there.
"""

import logging
import os
import shlex
import sys


def main(argv: list[str] | None = None, program: tuple[str, ...] = ("btsr-train",)) -> int:
    """Runs the training command on `argv` (the command line when None) and returns its exit code.

    `program` starts the command recorded in the model folder (and its card), so a reader can rerun it.
    """
    import datasets
    from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
    from transformers.utils import logging as hf_logging

    from data_processing import DataError
    from modeling_btsr.arguments import parse_arguments, preset_caveat
    from modeling_btsr.trainer import CheckpointSaveError, NonFiniteLossError
    from modeling_btsr.training_run import AfterTrainingError, run_training

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
        caveat = preset_caveat(settings.values)
        if caveat is not None:
            logging.getLogger(__name__).warning(f"note: {caveat}")
        command = shlex.join([*program, *(sys.argv[1:] if argv is None else argv)])
        results = run_training(model_args, data_args, training_args, command=command, hub=hub, settings=settings)
    except AfterTrainingError as error:
        if training_args.process_index == 0:
            print_summary(error.results, training_args.output_dir)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DataError, NonFiniteLossError, CheckpointSaveError, FileNotFoundError) as error:
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
    users, protocol, best = results["num_test_users"], results["protocol"], results["best_epoch"]
    print(f"\nTest metrics ({protocol} split, full ranking, {users} evaluated users, best epoch {best}):")
    print(f"  {'metric':<14}{'model':>10}{'most-popular':>15}")
    for name in ("hr@10", "ndcg@10", "mrr@10", "hr@1", "hr@50", "coverage@10"):
        line = f"  {name:<14}{results[f'test_{name}']:>10.4f}{results.get(f'test_mostpop_{name}', float('nan')):>15.4f}"
        if f"test_{name}_ci95" in results:
            low, high = results[f"test_{name}_ci95"]
            line += f"   95% CI [{low:.4f}, {high:.4f}] (per-user bootstrap)"
        print(line)
    memory = [
        f"{k.removeprefix('train_mem_')} {v / 2**20:.0f} MiB" for k, v in results.items() if k.startswith("train_mem_")
    ]
    if memory:  # --skip_memory_metrics False
        print(f"Training memory: {', '.join(memory)}")
    if "num_input_tokens_seen" in results:  # --include_num_input_tokens_seen
        print(f"Input tokens seen: {results['num_input_tokens_seen']}")
    print(f"Model folder: {os.path.abspath(output_dir)}  (train time {results['train_seconds']:.0f} s)")
