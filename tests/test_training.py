"""BTSRTrainer and train.py: loss normalisation, processes, resume, determinism, end-to-end runs."""

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import EarlyStoppingCallback, TrainerControl, TrainerState, TrainingArguments

from data_processing import PairedTrainDataset, SequenceCollator, build_train_dataset
from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation, BTSRTrainer, ResumableEarlyStopping
from modeling_btsr.training_run import is_complete_checkpoint
from tests.helpers import REPO_ROOT, run_train, tiny_run_args


def _sequences(num_users=24, num_items=30, seed=0):
    rng = np.random.default_rng(seed)
    # Lengths differ a lot, so micro-batches hold different numbers of labelled positions.
    return [rng.integers(1, num_items + 1, size=int(rng.integers(3, 15))).astype(np.int64) for _ in range(num_users)]


def _one_step_weights(tmp_path, loss_type, batch, accumulation, alpha=0.0):
    torch.manual_seed(0)
    config = BTSRConfig(
        num_items=30,
        hidden_size=16,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        loss_type=loss_type,
        bce_num_negatives=5,
        bt_alpha=alpha,
    )
    model = BTSRForSequentialRecommendation(config)
    examples = build_train_dataset(_sequences(), max_len=16)
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{loss_type}-{batch}-{accumulation}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=7,
        remove_unused_columns=False,
        disable_tqdm=True,
        logging_steps=1,
    )
    trainer = BTSRTrainer(
        model=model,
        args=args,
        train_dataset=(train := PairedTrainDataset(examples, seed=3, with_pairs=alpha > 0)),
        data_collator=SequenceCollator(table=train.table),
    )
    output = trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, output.training_loss


@pytest.mark.parametrize("loss_type", ["ce", "bce"])
def test_gradient_accumulation_matches_one_big_batch(tmp_path, loss_type):
    """GA=2 x B/2 gives the GA=1 x B update (SGD, lr 1: the update is the gradient) and loss."""
    full, full_loss = _one_step_weights(tmp_path, loss_type, batch=8, accumulation=1)
    accumulated, accumulated_loss = _one_step_weights(tmp_path, loss_type, batch=4, accumulation=2)
    initial, _ = _one_step_weights(tmp_path, loss_type, batch=8, accumulation=1)
    assert accumulated_loss == pytest.approx(full_loss, rel=1e-5)
    for name in full:
        assert torch.allclose(full[name], accumulated[name], atol=1e-6), name
    # The step did move the weights (so equality above is not trivially true).
    torch.manual_seed(0)
    fresh = BTSRForSequentialRecommendation(BTSRConfig(num_items=30, hidden_size=16, max_position_embeddings=16))
    assert not torch.allclose(fresh.state_dict()["btsr.item_embeddings.weight"], full["btsr.item_embeddings.weight"])
    assert all(torch.equal(initial[n], full[n]) for n in full)  # same seed, same update


def _train_args(data_path, output_dir, *extra):
    return tiny_run_args(
        data_path, output_dir, "--max_len", "20", "--per_device_train_batch_size", "16", "--seed", "11", *extra
    )


def _accelerate(num_processes):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    if num_processes > 1:
        launcher += ["--multi_gpu", "--num_processes", str(num_processes), "--main_process_port", "29517"]
    else:
        launcher += ["--num_processes", "1"]
    return launcher + ["--dynamo_backend", "no"]


@pytest.mark.integration
def test_two_processes_equal_one_process_first_step(tmp_path, synthetic_log):
    """2 gloo processes x B/2 give the 1-process loss and update on the same global batch of B (BT included)."""
    common = [
        "--max_steps",
        "1",
        "--dropout",
        "0",
        "--optim",
        "sgd",
        "--learning_rate",
        "1.0",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--bt_alpha",
        "0.5",
    ]
    one = tmp_path / "one"
    run_train(_train_args(synthetic_log, one, *common, "--per_device_train_batch_size", "16"))
    two = tmp_path / "two"
    result = run_train(
        _train_args(synthetic_log, two, *common, "--per_device_train_batch_size", "8"), launcher=_accelerate(2)
    )
    assert "Test metrics" in result.stdout
    one_results = json.loads((one / "all_results.json").read_text())
    two_results = json.loads((two / "all_results.json").read_text())
    assert two_results["train_loss"] == pytest.approx(one_results["train_loss"], rel=1e-5)
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=1e-5), name
    # Evaluation does not depend on the number of processes: same weights, same metrics, coverage included.
    for key in ("test_hr@10", "test_ndcg@10", "test_coverage@10", "test_coverage@50", "test_mrr@10"):
        assert two_results[key] == pytest.approx(one_results[key], abs=1e-9), key


@pytest.mark.integration
def test_kill_and_resume_equals_uninterrupted(tmp_path, synthetic_log):
    epochs = ["--num_train_epochs", "4", "--per_device_train_batch_size", "4", "--patience", "10"]
    straight = tmp_path / "straight"
    run_train(_train_args(synthetic_log, straight, *epochs))
    expected = json.loads((straight / "all_results.json").read_text())

    killed = tmp_path / "killed"
    env_cmd = [sys.executable, str(REPO_ROOT / "train.py"), *_train_args(synthetic_log, killed, *epochs)]
    process = subprocess.Popen(env_cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            done = [p for p in killed.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
            if done or process.poll() is not None:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (killed / "all_results.json").exists()
    checkpoints = sorted(killed.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    # A checkpoint being written when the kill came may be incomplete: resume from the last complete one.
    complete = [p for p in checkpoints if (p / "trainer_state.json").exists()]
    resumed_from = json.loads((complete[-1] / "trainer_state.json").read_text())["epoch"]  # (rotated away later)
    # The worst moment for the kill: a newer checkpoint half written (weights, nothing else). `True` resumes from
    # the newest complete one, skipping it.
    interrupted = killed / "checkpoint-99999"
    interrupted.mkdir()
    (interrupted / "model.safetensors").write_bytes((complete[-1] / "model.safetensors").read_bytes())
    run_train(_train_args(synthetic_log, killed, *epochs, "--resume_from_checkpoint", "True"))
    resumed = json.loads((killed / "all_results.json").read_text())
    # train_loss covers the whole run (the Trainer's own, session_train_loss, only the resumed session).
    for key in (
        "test_hr@10",
        "test_ndcg@10",
        "test_mrr@10",
        "test_coverage@10",
        "eval_ndcg@10",
        "best_epoch",
        "train_loss",
    ):
        assert resumed[key] == pytest.approx(expected[key], rel=1e-6), key
    # The resumed session's time covers its own epochs only, and says from where it started.
    assert expected["resumed_from_epoch"] == 0.0
    assert resumed["resumed_from_epoch"] == resumed_from and 0 < resumed_from < resumed["epochs"]


def test_early_stopping_counter_survives_a_resume(tmp_path):
    """At every checkpoint, the counter rebuilt from the saved state equals the uninterrupted stock callback's."""
    args = TrainingArguments(
        output_dir=str(tmp_path),
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="eval_ndcg@10",
        greater_is_better=True,
        report_to=[],
    )
    straight, state, control = EarlyStoppingCallback(early_stopping_patience=4), TrainerState(), TrainerControl()
    straight.on_train_begin(args, state, control)
    for epoch, ndcg in enumerate([0.10, 0.30, 0.20, 0.30, 0.25, 0.31, 0.29, 0.29, 0.30, 0.10], start=1):
        step = 7 * epoch
        state.global_step = step
        state.log_history.append({"eval_ndcg@10": ndcg, "epoch": float(epoch), "step": step})
        straight.on_evaluate(args, state, control, metrics={"eval_ndcg@10": ndcg})
        if state.best_metric is None or ndcg > state.best_metric:  # the Trainer's own best tracking, after callbacks
            state.best_metric, state.best_global_step = ndcg, step
        state.save_to_json(str(tmp_path / "trainer_state.json"))
        saved = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))  # what a checkpoint holds
        resumed = ResumableEarlyStopping(early_stopping_patience=4)
        resumed.on_train_begin(args, saved, TrainerControl())
        assert resumed.early_stopping_patience_counter == straight.early_stopping_patience_counter, epoch
        # The stock callback's checkpoints (no entry for this class) resume too: the Trainer's save indexes it.
        assert "ResumableEarlyStopping" in saved.stateful_callbacks
        stock = EarlyStoppingCallback(early_stopping_patience=4)  # what the Trainer would resume with by default
        stock.on_train_begin(args, saved, TrainerControl())
        assert stock.early_stopping_patience_counter == 0
    assert straight.early_stopping_patience_counter == 4 and control.should_training_stop  # the sequence ran out
    # With restore_callback_states_from_checkpoint the Trainer rebuilds callbacks from their saved `state()` args.
    rebuilt = ResumableEarlyStopping(**ResumableEarlyStopping(early_stopping_patience=4).state()["args"])
    assert rebuilt.early_stopping_patience == 4
    with pytest.raises(ValueError, match="early_stopping_threshold=0.0"):
        ResumableEarlyStopping(early_stopping_patience=4, early_stopping_threshold=0.01)


@pytest.mark.integration
def test_same_seed_same_numbers_and_other_seed_differs(tmp_path, synthetic_log):
    runs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        out = tmp_path / name
        run_train(_train_args(synthetic_log, out, "--num_train_epochs", "1", "--seed", seed))
        runs[name] = json.loads((out / "all_results.json").read_text())
    keys = [k for k in runs["a"] if k.startswith(("test_", "eval_")) and isinstance(runs["a"][k], float)]
    assert keys
    assert all(runs["a"][k] == runs["b"][k] for k in keys)
    assert any(runs["a"][k] != runs["c"][k] for k in keys)


@pytest.mark.integration
def test_max_steps_shorter_than_an_epoch_still_evaluates_and_saves(tmp_path, synthetic_log):
    out = tmp_path / "short"
    result = run_train(_train_args(synthetic_log, out, "--max_steps", "2", "--per_device_train_batch_size", "4"))
    results = json.loads((out / "all_results.json").read_text())
    assert results["global_step"] == 2 and "test_ndcg@10" in results and "eval_ndcg@10" in results
    for name in ("config.json", "model.safetensors", "item_vocab.json", "modeling_btsr.py", "dataset_stats.json"):
        assert (out / name).exists(), name
    assert "most-popular" in result.stdout
    assert "num_input_tokens_seen" not in results and "Training memory" not in result.stdout  # not asked for
    stats = json.loads((out / "dataset_stats.json").read_text())
    for key in ("num_items", "num_train_users", "num_train_interactions", "num_test_users", "partner_share"):
        assert key in stats


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bt_alpha", "-1"], "--bt_alpha: must be >= 0"),
        (["--loss_type", "xent"], "argument --loss_type: invalid choice: 'xent'"),
        (["--max_len", "0"], "--max_len: must be >= 1"),
        (["--split", "sideways"], "sideways"),
        (["--no_such_flag", "1"], "unknown argument --no_such_flag"),
        (["--sce_bucket_size_y", "100000", "--loss_type", "sce"], "--sce_bucket_size_y (100000) cannot exceed"),
        # 0 was replaced by the default formula and trained; so was --sce_n_buckets 0.
        (
            ["--sce_bucket_size_x", "0", "--loss_type", "sce", "--sce_bucket_size_y", "16"],
            "--sce_bucket_size_x must be >= 1",
        ),
        (["--sce_n_buckets", "0", "--loss_type", "sce", "--sce_bucket_size_y", "16"], "--sce_n_buckets must be >= 1"),
        # the config's rules in the flags' names (max_position_embeddings is --max_len)
        (
            ["--hidden_size", "10", "--num_attention_heads", "3"],
            "--hidden_size (10) must be divisible by --num_attention_heads",
        ),
        (["--backbone", "bert4rec", "--max_len", "1"], "--backbone bert4rec needs --max_len >= 2"),
        (
            ["--preset", "duorec", "--dropout", "0"],
            "--view_maker same_target+dropout draws a view by dropout; --dropout 0",
        ),
        # The Trainer drops an --optim_args key its optimizer does not read, and raised a traceback for a bad one
        (["--optim_args", "garbage"], "--optim_args garbage: expected key=value pairs, got 'garbage'"),
        (["--optim_args", "lr=0.1"], "--optim_args: lr has no effect with --optim adamw_torch_fused"),
        (["--optim", "sgd", "--optim_args", "momentum=0.9,nesterovv=1"], "--optim_args: nesterovv has no effect"),
        (["--optim", "sgd", "--optim_args", "momentum=abc"], "--optim_args momentum=abc: could not convert"),
        (["--optim_target_modules", "all-linear"], "--optim_target_modules: applies to the low-rank optimizers"),
        (["--run_name", "x"], "--run_name: has no effect with --report_to none"),
        (["--project", "x"], "--project: applies to --report_to trackio only"),
    ],
)
def test_bad_settings_get_one_line_errors(tmp_path, synthetic_log, args, message, capsys):
    import train

    assert train.main(_train_args(synthetic_log, tmp_path / "bad", *args)) == 2  # in-process: no subprocess needed
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err[-2000:]


@pytest.mark.parametrize("optim, package", [("galore_adamw", "galore_torch"), ("schedule_free_adamw", "schedulefree")])
def test_an_optimizer_whose_package_is_missing_fails_before_the_data_is_read(tmp_path, optim, package, capsys):
    import importlib.util

    import train

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    # A file that does not exist: the optimizer is named first, so nothing was read (it was a traceback in training).
    argv = _train_args(tmp_path / "missing.csv", tmp_path / "out", "--optim", optim)
    argv += ["--optim_target_modules", "all-linear"] if optim.startswith("galore") else []
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith(f"error: --optim {optim}: You need to install `{package}`"), err


def test_optim_args_the_optimizer_reads_reach_it(tmp_path):
    from transformers import Trainer

    from modeling_btsr.arguments import parse_arguments
    from modeling_btsr.training_run import check_optimizer, make_config

    settings = parse_arguments(["--output_dir", str(tmp_path), "--optim", "sgd", "--optim_args", "momentum=0.9"])
    config = make_config(settings.model, num_items=20)
    check_optimizer(settings.training, config)  # not refused: momentum is read
    _, kwargs = Trainer.get_optimizer_cls_and_kwargs(settings.training)
    assert kwargs["momentum"] == 0.9


@pytest.mark.parametrize(
    "args, noted",
    [
        (["--preset", "cl4srec"], "--preset cl4srec: it trains whole sequences at the papers' InfoNCE weight"),
        (["--preset", "duorec"], "--preset duorec: it trains whole sequences"),
        (["--preset", "ec4srec"], "--preset ec4srec: its inner-product negative-view loss collapses"),
        (["--preset", "cl4srec", "--bt_alpha", "0.001"], None),  # RecBole's balance: the note would be wrong
        (["--preset", "ec4srec", "--infonce_similarity", "cosine"], None),
        (["--preset", "bert4rec"], None),
    ],
)
def test_a_baseline_preset_measured_to_collapse_says_so_before_training(tmp_path, args, noted, caplog):
    import train

    # A file that does not exist stops the run right after the settings: the note comes before any data is read.
    assert train.main(["--data_path", str(tmp_path / "missing.csv"), "--output_dir", str(tmp_path / "o"), *args]) == 2
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("note: --preset")]
    if noted is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(f"note: {noted}"), notes
        assert "contrastive_findings.md" in notes[0]


def test_temporal_split_without_timestamps_is_a_clear_error(tmp_path, capsys):
    import train

    path = tmp_path / "seq.txt"
    path.write_text("1 1\n1 2\n1 3\n2 1\n2 2\n2 3\n")
    # in-process: the data error is caught by train.main itself, no subprocess needed
    assert train.main(_train_args(path, tmp_path / "x", "--data_format", "sasrec", "--split", "temporal")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "timestamps" in err and "seq.txt" in err


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["kill", "enospc"])
def test_a_fault_inside_a_checkpoint_save_then_resume_equals_uninterrupted(tmp_path, synthetic_log, fault):
    """A real SIGKILL (or a full disk) inside the 3rd checkpoint save, after its weights and before optimizer.pt
    (tests/save_faults.py patches that point of the Trainer's save); `--resume_from_checkpoint latest` then skips the
    half-written folder and ends with the uninterrupted run's numbers, exactly."""
    epochs = ["--num_train_epochs", "4", "--per_device_train_batch_size", "4", "--patience", "10"]
    straight = tmp_path / "straight"
    run_train(_train_args(synthetic_log, straight, *epochs))
    expected = json.loads((straight / "all_results.json").read_text())

    faulty = tmp_path / "faulty"
    launcher = [sys.executable, str(REPO_ROOT / "tests" / "save_faults.py"), fault, "3", "--"]
    result = run_train(_train_args(synthetic_log, faulty, *epochs), launcher=launcher, check=False)
    steps = sorted(int(p.name.split("-")[1]) for p in faulty.glob("checkpoint-*"))
    half_written = faulty / f"checkpoint-{steps[-1]}"
    assert len(steps) == 3 and not any(is_complete_checkpoint(faulty / f"checkpoint-{s}") for s in steps[2:])
    assert (half_written / "model.safetensors").is_file() and not (half_written / "trainer_state.json").exists()
    assert not (faulty / "all_results.json").exists()
    if fault == "kill":
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    else:  # one line naming the folder, no traceback
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        errors = re.findall(r"error: [^\r\n]*", result.stderr)  # (the progress bar shares its line)
        assert len(errors) == 1, result.stderr[-3000:]
        assert errors[0].startswith(f"error: {half_written}: cannot write this checkpoint (OSError: No space left")

    run_train(_train_args(synthetic_log, faulty, *epochs, "--resume_from_checkpoint", "latest"))
    resumed = json.loads((faulty / "all_results.json").read_text())
    assert resumed["resumed_from_epoch"] == 2.0  # from checkpoint-60, the newest complete one
    session_only = {"resumed_from_epoch", "session_train_loss", "train_seconds", "prepare_seconds", "command"}
    for key in sorted(set(expected) - session_only):
        assert resumed[key] == expected[key], key


def test_user_holdout_run_evaluates_every_held_out_user_and_trains_on_the_others(tmp_path):
    """`--split user_holdout`: the run's test covers exactly the held-out users (as the split names them), and its
    training examples are the other users' whole sequences."""
    import train
    from data_processing import read_interactions, user_holdout_split
    from tests.helpers import write_synthetic_log

    log = write_synthetic_log(tmp_path / "log.csv", num_users=50, seed=1)
    out = tmp_path / "run"
    extra = ("--split", "user_holdout", "--holdout_fraction", "0.2", "--holdout_seed", "4", "--num_train_epochs", "1")
    assert train.main(tiny_run_args(log, out, *extra)) == 0
    split = user_holdout_split(read_interactions(log, "csv"), fraction=0.2, seed=4)
    stats = json.loads((out / "dataset_stats.json").read_text())
    assert stats["protocol"] == "user_holdout" and stats["num_test_users"] == len(split.test.user_ids) == 10
    assert stats["num_train_interactions"] == sum(len(s) for s in split.train_sequences)
    per_user = json.loads((out / "eval" / "test_per_user.json").read_text())
    assert len(per_user["ndcg@10"]) == len(split.test.user_ids)
    assert json.loads((out / "all_results.json").read_text())["test_num_users"] == 10


def test_run_records_its_validation_curve_and_draws_it_beside_the_card(tmp_path):
    """all_results.json's `validation_curve` is each epoch's validation NDCG@10 as the last checkpoint's trainer
    state logged it, and the card shows it as a PNG beside it."""
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib (the test extra installs it)")
    import train
    from tests.helpers import write_synthetic_log

    log = write_synthetic_log(tmp_path / "log.csv", num_users=40, seed=2)
    out = tmp_path / "run"
    assert train.main(tiny_run_args(log, out, "--num_train_epochs", "3", "--save_total_limit", "5")) == 0
    results = json.loads((out / "all_results.json").read_text())
    last = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    logged = json.loads((last / "trainer_state.json").read_text())["log_history"]
    expected = [[e["epoch"], e["eval_ndcg@10"]] for e in logged if "eval_ndcg@10" in e]
    assert results["validation_curve"] == expected and [e for e, _ in expected] == [1.0, 2.0, 3.0]
    assert (out / "validation_curve.png").is_file() and "](validation_curve.png)" in (out / "README.md").read_text()


@pytest.mark.parametrize("persistent", [False, True])
def test_trainer_batches_carry_each_epochs_partners_through_two_workers(tmp_path, persistent):
    """Through BTSRTrainer with 2 data-loader workers (persistent or not), the pair view the model receives for a
    row is that row's partner of the current epoch (PairedTrainDataset.partners), and the partners change."""
    from transformers import TrainerCallback

    torch.manual_seed(0)
    config = BTSRConfig(num_items=30, hidden_size=8, max_position_embeddings=16, bt_alpha=0.2)
    model = BTSRForSequentialRecommendation(config)
    rng = np.random.default_rng(1)
    # Every sequence distinct (so its input identifies its row) and ending in one of 3 items (big partner groups).
    sequences = [np.append(rng.permutation(np.arange(1, 28))[: 4 + k % 7], 28 + k % 3) for k in range(48)]
    train_set = PairedTrainDataset(build_train_dataset(sequences, max_len=16), seed=11)
    row_of = {tuple(train_set[i]["input_ids"]): i for i in range(len(train_set))}
    seen: dict[int, dict[int, tuple]] = {}
    epoch = {"now": None}

    class Epoch(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            epoch["now"] = int(round(state.epoch or 0))

    def record(module, args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"].bool()
        pair, pair_mask = kwargs["pair_input_ids"], kwargs["pair_attention_mask"].bool()
        for b in range(len(ids)):
            row = row_of[tuple(ids[b][mask[b]].tolist())]
            seen.setdefault(epoch["now"], {})[row] = tuple(pair[b][pair_mask[b]].tolist())

    model.register_forward_pre_hook(record, with_kwargs=True)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        num_train_epochs=3,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=3,
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=2,
        dataloader_persistent_workers=persistent,
    )
    trainer = BTSRTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        data_collator=SequenceCollator(table=train_set.table),
        callbacks=[Epoch()],
    )
    trainer.train()
    assert sorted(seen) == [0, 1, 2]
    for e, pairs in seen.items():
        assert sorted(pairs) == list(range(len(train_set)))
        partners = train_set.partners(epoch=e)
        assert pairs == {r: tuple(train_set[int(partners[r])]["input_ids"]) for r in pairs}, e
    assert seen[0] != seen[1] != seen[2]


def test_item_counts_equal_a_per_user_count():
    from modeling_btsr.training_run import item_counts

    rng = np.random.default_rng(4)
    sequences = [rng.integers(1, 12, int(rng.integers(1, 9))) for _ in range(40)] + [np.zeros(0, np.int64)]
    interactions, users = item_counts(sequences, 11)
    for item in range(1, 12):
        assert interactions[item - 1] == sum(int((s == item).sum()) for s in sequences)
        assert users[item - 1] == sum(int(item in s) for s in sequences)


def test_losses_logged_by_step_are_printed_each_and_epoch_lines_stay(capsys):
    """`--logging_strategy steps` asks to see each logged loss: one line per log, beside the epoch's validation line."""
    from types import SimpleNamespace

    from modeling_btsr.trainer import EpochLogCallback

    args = SimpleNamespace(num_train_epochs=2, max_steps=-1, eval_strategy="epoch", logging_strategy="steps")
    state = SimpleNamespace(is_world_process_zero=True, epoch=0.5, global_step=3, log_history=[])
    log = EpochLogCallback(show_bar=False)
    log.on_log(args, state, None, logs={"loss": 7.25, "prediction_loss": 7.0, "bt_loss": 1.25, "epoch": 0.5})
    log.on_log(args, state, None, logs={"eval_hr@10": 0.5, "eval_ndcg@10": 0.25, "eval_coverage@10": 0.1, "epoch": 1.0})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step 3  epoch 0.50  loss 7.2500 (prediction 7.0000, bt 1.2500)"
    assert lines[1].startswith(
        "epoch 1/2  loss 7.2500 (prediction 7.0000, bt 1.2500)  valid HR@10 0.5000 NDCG@10 0.2500"
    )
    args.logging_strategy = "epoch"  # by epoch, the loss shows on the epoch's line alone
    log.on_log(args, state, None, logs={"loss": 7.0, "epoch": 1.0})
    assert capsys.readouterr().out == ""


def test_sce_default_buckets_count_the_positions_a_batch_trains_on():
    """The SCE paper's formula reads the labelled positions per row: counted here on the samples themselves, one per
    row for random prefixes, the masked ones (over many epochs) for BERT4Rec, every one for whole sequences."""
    from data_processing import PairedTrainDataset, build_train_dataset
    from modeling_btsr.arguments import ModelArguments
    from modeling_btsr.training_run import trained_positions_per_row

    rng = np.random.default_rng(3)
    examples = build_train_dataset([rng.integers(1, 40, size=int(rng.integers(3, 12))) for _ in range(50)], max_len=20)
    mean = examples.mean_labelled_positions

    def labelled(data, epochs=1):
        counts = []
        for epoch in range(epochs):
            data.set_epoch(epoch)
            counts += [int((np.asarray(data[i]["labels"]) != -100).sum()) for i in range(len(data))]
        return float(np.mean(counts))

    whole = ModelArguments()
    assert trained_positions_per_row(whole, mean) == labelled(PairedTrainDataset(examples, seed=0, with_pairs=False))
    prefix = PairedTrainDataset(
        examples, seed=0, view_maker="dropout", view_span="random_prefix", prediction_span="random_prefix"
    )
    args = ModelArguments(prediction_span="random_prefix", ssl_view_span="random_prefix")
    assert trained_positions_per_row(args, mean) == labelled(prefix) == 1.0
    masked = PairedTrainDataset(examples, seed=0, with_pairs=False, mlm_probability=0.2, mask_token=41, max_len=20)
    args = ModelArguments(backbone="bert4rec", mlm_probability=0.2)
    assert trained_positions_per_row(args, mean) == pytest.approx(labelled(masked, epochs=200), rel=0.03)


def test_memory_and_token_counts_asked_for_are_reported_and_the_tokens_are_the_inputs(tmp_path, synthetic_log):
    """`--skip_memory_metrics False` and `--include_num_input_tokens_seen` reached the trackers only, and with
    `--report_to none` nothing: they are printed and kept in all_results.json; non-padding tokens are the training
    inputs, each user's sequence less its validation and test items and its last training item, cut to max_len."""
    import csv
    from collections import Counter

    with open(synthetic_log) as f:
        lengths = Counter(row["user_id"] for row in csv.DictReader(f)).values()
    max_len, epochs = 20, 2
    expected = {"non_padding": epochs * sum(min(n - 3, max_len) for n in lengths)}
    for mode in ("non_padding", "all"):
        out = tmp_path / mode
        result = run_train(
            _train_args(synthetic_log, out, "--num_train_epochs", str(epochs), "--skip_memory_metrics", "False")
            + ["--include_num_input_tokens_seen", mode]
        )
        results = json.loads((out / "all_results.json").read_text())
        assert f"Input tokens seen: {results['num_input_tokens_seen']}" in result.stdout
        assert results["train_mem_cpu_alloc_delta"] > 0 and "Training memory: cpu_alloc_delta" in result.stdout
        expected.setdefault(mode, None)
        if expected[mode] is not None:
            assert results["num_input_tokens_seen"] == expected[mode]
        else:  # every padded position counts too
            assert results["num_input_tokens_seen"] > expected["non_padding"]
