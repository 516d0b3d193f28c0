#!/usr/bin/env python
"""Re-evaluates a finished run folder with today's evaluation: the test (and validation) metrics of its saved model.

    .venv/bin/python benchmarks/reevaluate.py outputs/btsr-ml-latest-small
    .venv/bin/python benchmarks/reevaluate.py RUN_FOLDER --data_root ../shared/data --dry_run

Made for the fix of seen-item exclusion: runs evaluated before it excluded only the last `max_len` items of a long
history from the candidates (`eval_exclusion: window`), while `recommend()` excludes all of them. The saved model is
the one selected on validation under the old rule; this recomputes its metrics under the whole-history rule
(`eval_exclusion: history`) on the same data, read again with the settings of the run's recorded command. The model
selection itself is not redone (a rerun is needed for that); the output says so (`selected_under`).

`all_results.json` keeps the old figures under `window_exclusion` and gets the new ones in their place;
`eval/test_per_user.json` is rewritten. Nothing is written with `--dry_run`.

`--exclusion window` measures the other way round, for a run made after the fix: the same saved model under the old
rule (each context cut to its last `max_len` items before exclusion), so that the rule's effect is read on one model
rather than across two trainings (on a run made before the fix it gives back the recorded figures). It only prints.

    .venv/bin/python benchmarks/reevaluate.py RUN_FOLDER --exclusion window

`--eval_context_len N` scores the saved model with each context cut to its last N items for the encoder (the
exclusion still covers the whole history), as under a protocol whose test contexts are short; it only prints, and
`--json FILE` writes the figures.

    .venv/bin/python benchmarks/reevaluate.py RUN_FOLDER --eval_context_len 5
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOWN = ("test_hr@10", "test_ndcg@10", "test_mrr@10", "test_coverage@10", "eval_ndcg@10")


def recorded_arguments(results: dict, data_root: str | None) -> list[str]:
    """The train.py arguments of the run, from the `command` its all_results.json records."""
    command = results.get("command")
    if not command:
        raise SystemExit("reevaluate.py: all_results.json records no command, so the run's data cannot be rebuilt")
    argv = shlex.split(command)
    argv = argv[argv.index("train.py") + 1 :] if "train.py" in argv else argv[1:]
    argv = [a for a in argv if not a.endswith("train.py")]
    if data_root is not None and "--data_path" not in argv:  # a run on its own file has no data root
        argv += ["--data_root", data_root]
    return argv


def reevaluate(
    folder: Path, data_root: str | None = None, window: bool = False, context_len: int | None = None
) -> tuple[dict, dict, dict]:
    """`(results, metrics, per_user)`: the run's all_results.json, the new metrics, the new per-user test arrays
    (with `window`, under the old rule: contexts cut to the model's last `max_len` items; with `context_len`, the
    model reads each context's last `context_len` items, the run's own `--eval_context_len` by default)."""
    from modeling_btsr import BTSRForSequentialRecommendation
    from modeling_btsr.arguments import parse_arguments
    from modeling_btsr.evaluation import evaluate_ranking, most_popular_ranking
    from modeling_btsr.training_run import prepare_data

    results = json.loads((folder / "all_results.json").read_text())
    _, data_args, _, _ = parse_arguments(recorded_arguments(results, data_root))
    model = BTSRForSequentialRecommendation.from_pretrained(folder).eval()
    data = prepare_data(data_args, model.config.max_position_embeddings)
    if len(data.item_user_counts) != model.config.num_items:
        raise SystemExit(
            f"reevaluate.py: the data has {len(data.item_user_counts)} items, the model "
            f"{model.config.num_items}: not the data this run was trained on"
        )
    split = data.split
    context_len = context_len or data_args.eval_context_len
    cut = model.config.max_position_embeddings if window else None
    valid_contexts = [c[-cut:] for c in split.valid.contexts] if cut else split.valid.contexts
    test_contexts = [c[-cut:] for c in split.test.contexts] if cut else split.test.contexts
    valid = evaluate_ranking(
        model, valid_contexts, split.valid.targets, item_user_counts=data.item_user_counts, context_len=context_len
    )
    test, per_user = evaluate_ranking(
        model,
        test_contexts,
        split.test.targets,
        item_user_counts=data.item_user_counts,
        prefix="test",
        return_per_user=True,
        context_len=context_len,
    )
    mostpop = most_popular_ranking(
        test_contexts, split.test.targets, data.item_interaction_counts, prefix="test_mostpop"
    )
    return results, {**valid, **test, **mostpop}, per_user


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("folder", type=Path, help="a train.py output folder (model, all_results.json)")
    parser.add_argument("--data_root", default=None, help="where the named datasets are, if not where they were")
    parser.add_argument("--dry_run", action="store_true", help="print the figures, write nothing")
    parser.add_argument(
        "--exclusion",
        choices=("history", "window"),
        default="history",
        help="history: today's rule (default); window: the old one, on this model, printed only",
    )
    parser.add_argument(
        "--eval_context_len",
        type=int,
        default=None,
        help="the model reads each user's last N items (exclusion: the whole history); printed only",
    )
    parser.add_argument("--json", type=Path, default=None, help="with --eval_context_len: also write the figures here")
    args = parser.parse_args()
    if not (args.folder / "all_results.json").is_file():
        raise SystemExit(f"reevaluate.py: {args.folder / 'all_results.json'} not found (not a finished run folder)")
    if args.eval_context_len is not None and args.eval_context_len < 1:
        raise SystemExit(f"reevaluate.py: --eval_context_len must be >= 1, got {args.eval_context_len}")
    if args.json is not None and args.eval_context_len is None:
        raise SystemExit("reevaluate.py: --json applies to --eval_context_len only")
    if args.eval_context_len is not None:
        if args.exclusion == "window":
            raise SystemExit(
                "reevaluate.py: --eval_context_len and --exclusion window measure different things; give one"
            )
        results, metrics, per_user = reevaluate(args.folder, args.data_root, context_len=args.eval_context_len)
        users = int(metrics["test_num_users"])
        print(f"{args.folder}: contexts cut to the last {args.eval_context_len} items, {users} users")
        print(f"  {'metric':<18}{'cut':>12}{'recorded':>12}")
        for name in SHOWN:
            print(f"  {name:<18}{metrics[name]:>12.4f}{results.get(name, float('nan')):>12.4f}")
        if args.json is not None:
            figures = {k: v for k, v in metrics.items() if k.startswith(("test_", "eval_")) and "_num_users_" not in k}
            record = {
                "run_folder": str(args.folder),
                "eval_context_len": args.eval_context_len,
                "command": "python benchmarks/reevaluate.py " + " ".join(sys.argv[1:]),
                "metrics": figures,
                "test_per_user": {k: per_user[k].tolist() for k in ("hr@10", "ndcg@10")},
            }
            args.json.write_text(json.dumps(record, indent=1))
        return 0
    if args.exclusion == "window":
        results, metrics, _ = reevaluate(args.folder, args.data_root, window=True)
        print(f"{args.folder}: {results.get('protocol')} split, {int(metrics['test_num_users'])} users, one model")
        print(f"  {'metric':<18}{'window (old rule)':>18}{'recorded':>19}")
        for name in SHOWN:
            print(f"  {name:<18}{metrics[name]:>18.4f}{results.get(name, float('nan')):>19.4f}")
        return 0
    results, metrics, per_user = reevaluate(args.folder, args.data_root)
    old = results.get("window_exclusion", results) if results.get("eval_exclusion") == "history" else results
    print(f"{args.folder}: {results.get('protocol')} split, {int(metrics['test_num_users'])} users")
    print(f"  {'metric':<18}{'window (before)':>16}{'history (after)':>16}")
    for name in SHOWN:
        print(f"  {name:<18}{old.get(name, float('nan')):>16.4f}{metrics[name]:>16.4f}")
    if args.dry_run:
        return 0
    if results.get("eval_exclusion") != "history":
        results["window_exclusion"] = {k: v for k, v in results.items() if k.startswith(("eval_", "test_"))}
    results.update({k: v for k, v in metrics.items()})
    results["eval_exclusion"] = "history"
    results["selected_under"] = results.get("selected_under", "window")
    (args.folder / "all_results.json").write_text(json.dumps(results, indent=2))
    per_user_file = args.folder / "eval" / "test_per_user.json"
    saved = json.loads(per_user_file.read_text()) if per_user_file.exists() else {}
    saved.update({k: per_user[k].tolist() for k in ("hr@10", "ndcg@10")})
    per_user_file.parent.mkdir(exist_ok=True)
    per_user_file.write_text(json.dumps(saved))
    print(f"updated {args.folder / 'all_results.json'} (old figures under window_exclusion)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
