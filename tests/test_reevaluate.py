"""benchmarks/reevaluate.py: a finished run's saved model evaluated again, under either exclusion rule."""

from __future__ import annotations

import json

import numpy as np

import train
from tests.helpers import tiny_run_args, write_synthetic_log
from tests.test_benchmark_tools import load_script


def test_both_rules_on_one_model(tmp_path):
    """Under today's rule the saved model gives back the run's recorded test figures; under the old (window) rule
    only the users whose context is longer than `max_len` can change, and for those whose target is not among the
    older items a hit can only be lost or pushed down (fewer excluded items, more candidates ahead of it)."""
    log = write_synthetic_log(tmp_path / "log.csv", num_users=60, seed=3)
    out = tmp_path / "run"
    argv = tiny_run_args(
        log, out, "--max_len", "6", "--per_device_train_batch_size", "16", "--seed", "2", "--num_train_epochs", "2"
    )
    assert train.main(argv) == 0
    reevaluate = load_script("reevaluate")
    results, history, per_user = reevaluate.reevaluate(out)
    for name in ("test_hr@10", "test_ndcg@10", "test_mrr@10", "test_coverage@10"):
        assert history[name] == results[name]
    _, window, per_user_window = reevaluate.reevaluate(out, window=True)

    from modeling_btsr.arguments import parse_arguments
    from modeling_btsr.training_run import prepare_data

    _, data_args, _, _ = parse_arguments(reevaluate.recorded_arguments(results, None))
    test = prepare_data(data_args, 6).split.test
    long = np.array([len(c) > 6 for c in test.contexts])
    older = np.array([t in set(c[:-6].tolist()) for c, t in zip(test.contexts, test.targets)])
    assert long.any() and (~long).any()
    ndcg, ndcg_window = np.asarray(per_user["ndcg@10"]), np.asarray(per_user_window["ndcg@10"])
    assert np.array_equal(ndcg[~long], ndcg_window[~long])
    assert (ndcg_window[long & ~older] <= ndcg[long & ~older]).all()
    assert (ndcg[older] == 0).all()  # a target the user has seen is excluded: a miss under today's rule
    assert json.loads((out / "all_results.json").read_text()) == results  # reevaluate() itself writes nothing


def test_eval_context_len_reaches_the_run_and_its_reevaluation(tmp_path):
    """A run with `--eval_context_len 2` records figures of a model told only the last 2 items: its saved model,
    re-scored with the run's own setting, gives them back, and re-scored with the full window gives other ones."""
    log = write_synthetic_log(tmp_path / "log.csv", num_users=60, seed=3)
    out = tmp_path / "run"
    argv = tiny_run_args(
        log,
        out,
        *("--max_len", "6", "--per_device_train_batch_size", "16", "--seed", "2", "--num_train_epochs", "2"),
        *("--eval_context_len", "2"),
    )
    assert train.main(argv) == 0
    reevaluate = load_script("reevaluate")
    results, cut, _ = reevaluate.reevaluate(out)
    for name in ("test_hr@10", "test_ndcg@10", "eval_ndcg@10"):
        assert cut[name] == results[name]
    _, full, _ = reevaluate.reevaluate(out, context_len=6)
    assert any(full[name] != results[name] for name in ("test_ndcg@10", "test_mrr@10", "eval_ndcg@10"))
    settings = json.loads((out / "run_settings.json").read_text())
    assert settings["settings"]["eval_context_len"] == 2 and settings["sources"]["eval_context_len"] == "command line"
