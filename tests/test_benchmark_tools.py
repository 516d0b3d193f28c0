"""The accuracy runner's bookkeeping and the report's pairing (benchmarks/reproduce.py, benchmarks/report.py)."""

import contextlib
import importlib.util
import json
import math
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name: str):
    if str(BENCHMARKS) not in sys.path:  # as when run as a script: its folder first on the path (sibling imports)
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _append_many(results_path: str, writer: int, count: int, barrier, locked: bool = True) -> None:
    reproduce = load_script("reproduce")
    reproduce.RESULTS = Path(results_path)
    if not locked:
        reproduce.exclusive = lambda *args, **kwargs: contextlib.nullcontext(True)
    read = reproduce.load_records

    def slow_read():  # widens the read-modify-write window, so the writers overlap even on a busy machine
        records = read()
        time.sleep(0.005)
        return records

    reproduce.load_records = slow_read
    barrier.wait()  # both start writing together
    for i in range(count):
        reproduce.append_record({"writer": writer, "i": i})


def _append_concurrently(results: Path, count: int, locked: bool) -> tuple[list, list]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_append_many, args=(str(results), w, count, barrier, locked)) for w in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    try:
        records = json.loads(results.read_text()) if results.exists() else []
    except json.JSONDecodeError:  # unlocked writers can also leave a corrupt file: every record lost
        records = []
    return [worker.exitcode for worker in workers], sorted((r["writer"], r["i"]) for r in records)


def test_two_runners_appending_at_once_keep_every_record(tmp_path):
    """Read-modify-write of accuracy.json from two processes at once keeps all records with the lock; the same
    writers without it lose records or crash (checked too, so this test can tell the difference)."""
    count = 150
    exit_codes, records = _append_concurrently(tmp_path / "locked.json", count, locked=True)
    assert exit_codes == [0, 0], f"a locked writer failed: exit codes {exit_codes}"
    assert records == [(w, i) for w in (0, 1) for i in range(count)], f"locked writers kept {len(records)} records"
    # The race is likely, not certain, on a busy machine (the writers may not overlap): a few tries, and one that
    # loses a record or crashes shows the lock is what kept them above.
    outcomes = []
    for attempt in range(3):
        exit_codes, records = _append_concurrently(tmp_path / f"unlocked-{attempt}.json", count, locked=False)
        outcomes.append((exit_codes, len(records)))
        if exit_codes != [0, 0] or len(records) < 2 * count:
            break
    else:
        pytest.fail(f"unlocked writers never lost a record in 3 tries: {outcomes}")


def test_a_run_held_or_recorded_by_another_runner_is_skipped(tmp_path, monkeypatch):
    reproduce = load_script("reproduce")
    monkeypatch.setattr(reproduce, "WORK", tmp_path)
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "accuracy.json")
    run = reproduce.grid("temporal", [0])[0]
    started = []
    monkeypatch.setattr(reproduce, "_execute_locked", lambda *args: started.append(args) or True)
    with reproduce.exclusive(tmp_path / reproduce.run_id(run) / "runner.lock"):
        # flock is per open file description: a second open in this process contends like another process would.
        assert reproduce.execute(run, deadline=0.0) is True
        assert started == []
    assert reproduce.execute(run, deadline=0.0) is True
    assert len(started) == 1
    # Recorded by another runner since this one read the results: not trained again.
    reproduce.append_record({"run_id": reproduce.run_id(run)})
    assert reproduce.execute(run, deadline=0.0) is True
    assert len(started) == 1


_RUNNER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_benchmark_tools import load_script
reproduce = load_script("reproduce")
reproduce.WORK = Path({work!r})
reproduce.RESULTS = reproduce.WORK / "accuracy.json"
training = [sys.executable, "-c", "import os, time; open({pid!r}, 'w').write(str(os.getpid())); time.sleep(120)"]
reproduce.train_command = lambda run, folder: list(training)
reproduce.stop_on_termination()
reproduce.execute(reproduce.grid("temporal", [0])[0], deadline=time.time() + 600)
"""


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_a_runner_that_is_killed_stops_its_training(tmp_path, signum):
    # A runner that vanished left its train.py writing checkpoints into a folder whose lock it had released, so the
    # next runner trained the same run beside it.
    pid_file = tmp_path / "training.pid"
    script = _RUNNER.format(tests=str(Path(__file__).parent), work=str(tmp_path), pid=str(pid_file))
    runner = subprocess.Popen([sys.executable, "-c", script])
    started = time.time()
    while not pid_file.exists() or not pid_file.read_text():
        assert runner.poll() is None and time.time() - started < 60, "the runner never started its training"
        time.sleep(0.1)
    training = int(pid_file.read_text())
    runner.send_signal(getattr(signal, signum))
    assert runner.wait(timeout=60) == 128 + getattr(signal, signum)
    try:
        os.kill(training, 0)
    except ProcessLookupError:
        return  # stopped and reaped by the runner
    os.kill(training, signal.SIGKILL)
    pytest.fail(f"the training (pid {training}) outlived its runner")


def test_validation_curve_reads_every_epoch_of_the_last_checkpoint(tmp_path):
    reproduce = load_script("reproduce")
    assert reproduce.validation_curve(tmp_path) == []
    states = {
        "checkpoint-8": [{"epoch": 1.0, "eval_ndcg@10": 0.1}],
        # Resumed after a kill at epoch 2.5: epoch 2 evaluated again; the loss entries carry no metric.
        "checkpoint-16": [
            {"epoch": 1.0, "eval_ndcg@10": 0.1},
            {"epoch": 2.0, "eval_ndcg@10": 0.15},
            {"epoch": 2.0, "loss": 5.0},
            {"epoch": 2.0, "eval_ndcg@10": 0.2},
            {"epoch": 3.0, "eval_ndcg@10": 0.123456789},
        ],
        "checkpoint-24": None,  # being written when the run was killed: no trainer_state.json yet
    }
    for name, history in states.items():
        (tmp_path / name).mkdir()
        if history is not None:
            (tmp_path / name / "optimizer.pt").write_bytes(b"")
            (tmp_path / name / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert reproduce.validation_curve(tmp_path) == [0.1, 0.2, 0.12346]
    (tmp_path / "checkpoint-16" / "optimizer.pt").unlink()  # incomplete by train.py's rule too: not read
    assert reproduce.validation_curve(tmp_path) == [0.1]


def _record(model, alpha, seed, ranks, coverage, loss="ce"):
    """A record whose users' targets sit at `ranks` (one character each: 1-9, a = 10, 0 = not in the top 10)."""
    return {
        "dataset": "d",
        "protocol": "leave_one_out",
        "model": model,
        "loss_type": loss,
        "bt_alpha": alpha,
        "dropout": 0.1,
        "batch_size": 256,
        "seed": seed,
        "test_coverage@10": coverage,
        "test_per_user": {"rank@10": ranks},
        "eval_exclusion": "history",
        "max_epochs": 200,
        "patience": 30,
    }


NDCG_OF_RANK = {str(r): 1.0 / math.log2(r + 1) for r in range(1, 10)} | {"a": 1.0 / math.log2(11), "0": 0.0}


def test_per_user_results_are_stored_as_ranks_that_give_back_hr_and_ndcg():
    reproduce = load_script("reproduce")
    ranks = [0, 1, 2, 3, 10, 0, 7]
    written = {"hr@10": [float(r > 0) for r in ranks], "ndcg@10": [1 / math.log2(r + 1) if r else 0.0 for r in ranks]}
    compact = reproduce.compact_per_user(written)
    assert compact == {"rank@10": "0123a07"}
    assert reproduce.compact_per_user(compact) == compact
    assert reproduce.per_user_metric(compact, "ndcg@10").tolist() == [NDCG_OF_RANK[c] for c in "0123a07"]
    assert reproduce.per_user_metric(compact, "hr@10").tolist() == [0.0, 1, 1, 1, 1, 0, 1]
    with pytest.raises(ValueError, match="one rank"):  # a hit with no gain: not one rank
        reproduce.compact_per_user({"hr@10": [1.0, 1.0], "ndcg@10": [1.0, 0.0]})
    with pytest.raises(ValueError, match="no rank in 1..10"):
        reproduce.compact_per_user({"hr@10": [1.0], "ndcg@10": [0.2]})  # rank 31


def test_report_pairs_each_method_with_its_own_seed_of_sasrec_and_pools_seeds():
    report = load_script("report")
    rng = np.random.default_rng(0)
    base = {s: "".join(rng.choice(["0", "3"], 50)) for s in (0, 1)}
    method = {s: base[s].translate(str.maketrans("03", "31")) for s in (0, 1)}  # NDCG 0 -> 0.5, 0.5 -> 1
    # Decoys first: another prediction loss, another batch size, another device (same seed 0).
    decoys = [
        _record("sasrec-sce", 0.0, 0, "0" * 50, 0.1, loss="sce"),
        dict(_record("sasrec-ce", 0.0, 0, "0" * 50, 0.1), batch_size=64),
        dict(_record("sasrec-ce", 0.0, 0, "0" * 50, 0.1), device="cuda"),
    ]
    baselines = [_record("sasrec-ce", 0.0, s, base[s], 0.5) for s in (0, 1)]
    methods = [_record("cl4srec", 0.1, s, method[s], 0.6) for s in (0, 1)]
    records = decoys + baselines + methods
    assert report.baseline_of(methods[0], records) is baselines[0]
    assert report.baseline_of(methods[1], records) is baselines[1]
    assert report.baseline_of(dict(methods[0], batch_size=1024), records) is None
    assert report.baseline_of(dict(methods[0], device="cuda"), records) is decoys[2]
    # BT-SR on the BERT4Rec backbone is paired with BERT4Rec, never with the SASRec run of its seed.
    bert4rec = dict(baselines[0], model="bert4rec")
    assert report.baseline_of(dict(methods[0], model="bert4rec-bt"), records) is None
    assert report.baseline_of(dict(methods[0], model="bert4rec-bt"), [*records, bert4rec]) is bert4rec
    assert report.baseline_of(methods[0], [bert4rec, *records]) is baselines[0]
    # Pooled: per-user means over seeds, so the difference is exactly +0.5 NDCG@10 for every user.
    cells = report.difference_cells(methods, baselines)
    assert cells[0] == "+0.5000" and cells[1] == "[+0.5000, +0.5000]"
    hit_rate = {
        name: np.mean([[c != "0" for c in ranks] for ranks in runs.values()])
        for name, runs in (("method", method), ("base", base))
    }
    hits = hit_rate["method"] - hit_rate["base"]
    assert cells[2] == f"{hits:+.4f}" and hits > 0
    assert cells[-1] == "+0.1000"


def test_report_pools_seeds_across_devices_one_record_per_seed_gpu_first():
    report = load_script("report")
    rng = np.random.default_rng(1)
    base = {s: "".join(rng.choice(["0", "3"], 40)) for s in (0, 1, 2)}
    up = str.maketrans("03", "31")  # each user's NDCG@10 +0.5

    def on_gpu(record):
        return dict(record, device="cuda")

    # SASRec: seeds 0-2 on the GPU, seed 0 on the CPU too (the GPU's is the one pooled).
    baselines = [on_gpu(_record("sasrec-ce", 0.0, s, base[s], 0.5)) for s in (0, 1, 2)]
    cpu_twin = _record("sasrec-ce", 0.0, 0, "1" * 40, 0.9)
    # The method: seeds 0, 1 on the GPU, seed 2 on the CPU; each user +0.5 above its seed's SASRec.
    methods = [on_gpu(_record("duorec", 0.1, s, base[s].translate(up), 0.7)) for s in (0, 1)]
    methods.append(_record("duorec", 0.1, 2, base[2].translate(up), 0.4))
    records = [cpu_twin, *baselines, *methods]
    for record in records:
        record.update({metric: record.get(metric, 0.0) for metric in report.METRICS})
        record["test_ndcg@10"] = float(np.mean([NDCG_OF_RANK[c] for c in record["test_per_user"]["rank@10"]]))
    pooled = report.pooled_by_seed(records)
    assert pooled[report.pooled_key(baselines[0])][0] is baselines[0]  # the GPU record, though the CPU's came first
    lines = report._pooled_section(records)
    rows = [line for line in lines if line.startswith("| d |")]
    assert len(rows) == 1 and "| duorec |" in rows[0]  # SASRec is complete on the GPU alone: not repeated
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[7] == "0 cuda, 1 cuda, 2 cpu"
    expected_ndcg = np.mean([NDCG_OF_RANK[c] for m in methods for c in m["test_per_user"]["rank@10"]])
    assert cells[9] == f"{expected_ndcg:.4f}"
    assert cells[8 + len(report.METRICS)] == "+0.5000"  # against SASRec seeds 0-2 (GPU), not the CPU twin
    assert cells[-1] == f"{np.mean([0.7, 0.7, 0.4]) - 0.5:+.4f}"
    assert report._pooled_section(baselines + methods[:2]) == []  # nothing to pool
    # A seed measured with window-only exclusion (before the fix) is another protocol: never pooled in.
    old = [dict(m, eval_exclusion="window") for m in methods]
    assert report._pooled_section(baselines + methods[:2] + old[2:]) == []


def test_window_exclusion_records_never_pair_with_history_ones():
    report = load_script("report")
    reproduce = load_script("reproduce")
    base = _record("sasrec-ce", 0.0, 0, "1" * 10, 0.5)
    method = _record("bt-sr", 0.2, 0, "2" * 10, 0.6)
    old_base, old_method = (dict(r, eval_exclusion="window") for r in (base, method))
    legacy = {k: v for k, v in old_method.items() if k != "eval_exclusion"}  # records from before the field
    assert report.baseline_of(method, [old_base, base]) is base
    assert report.baseline_of(old_method, [base, old_base]) is old_base
    assert report.baseline_of(legacy, [base]) is None
    assert report.setting(method) != report.setting(old_method) == report.setting(legacy)
    assert reproduce.computed_on(old_method) == "cpu window-excl" and reproduce.computed_on(method) == "cpu"


def test_report_alpha_plot_ignores_contrastive_runs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    report = load_script("report")
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    records = [
        dict(_record(m, a, 0, "0", 0.5), **{"test_hr@10": 0.1, "test_ndcg@10": 0.1, "test_hr@10_tail": 0.0})
        for m, a in (("sasrec-ce", 0.0), ("bt-sr", 0.2), ("cl4srec", 0.1), ("duorec", 0.1))
    ]
    report._alpha_plots(records)
    assert not (tmp_path / "alpha_sweep_d.png").exists()  # BT-SR alphas {0, 0.2}: fewer than 3, no plot
    records.append(dict(records[1], bt_alpha=0.4, seed=1))
    report._alpha_plots(records)
    assert not (tmp_path / "alpha_sweep_d.png").exists()  # no seed was run at all three alphas
    records.append(dict(records[1], bt_alpha=0.4))
    report._alpha_plots(records)
    assert (tmp_path / "alpha_sweep_d.png").exists()


def _split_sweep():
    """ML-1M's shape: alpha 0.1 and 0.4 on the GPU (seeds 0-1, seed 2 at alpha 0 only), 0.8 on the CPU (seed 0)."""
    metrics = {"test_hr@10": 0.1, "test_ndcg@10": 0.1, "test_hr@10_tail": 0.0}
    cpu = [dict(_record(m, a, 0, "0", 0.5), **metrics) for m, a in (("sasrec-ce", 0.0), ("bt-sr", 0.8))]
    gpu = [
        dict(_record(m, a, s, "0", 0.5), **metrics, device="cuda")
        for m, a in (("sasrec-ce", 0.0), ("bt-sr", 0.1), ("bt-sr", 0.4))
        for s in (0, 1)
    ]
    return cpu, gpu + [dict(gpu[0], seed=2)]


def test_report_alpha_sweep_lines_are_per_device_over_each_devices_own_seeds():
    """A sweep split across devices gets one line per device; no line mixes CPU and GPU runs, and a seed missing
    at one alpha leaves its device's line."""
    report = load_script("report")
    cpu, gpu = _split_sweep()
    lines = report._sweep_lines(cpu + gpu, "d")
    assert {key: alphas for key, (alphas, _) in lines.items()} == {
        ("cpu", "leave_one_out", (0,)): [0.0, 0.8],
        ("cuda", "leave_one_out", (0, 1)): [0.0, 0.1, 0.4],
    }
    assert all(report.device(r) == on for (on, _, _), (_, runs) in lines.items() for r in runs)
    assert len(lines["cuda", "leave_one_out", (0, 1)][1]) == 6
    # The same runs under another protocol make lines of their own, never mixed with these.
    held_out = [dict(r, protocol="user_holdout") for r in gpu[:4]]
    lines = report._sweep_lines(cpu + gpu + held_out, "d")
    assert lines["cuda", "user_holdout", (0, 1)][0] == [0.0, 0.1]
    assert len(lines["cuda", "leave_one_out", (0, 1)][1]) == 6


def test_report_alpha_sweep_split_across_devices_is_one_figure(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    report = load_script("report")
    cpu, gpu = _split_sweep()
    for folder, runs in (("one", cpu + gpu), ("two", cpu + gpu[:2])):  # two: alphas 0 and 0.8 only, no sweep
        monkeypatch.setattr(report, "RESULTS", tmp_path / folder)
        report.RESULTS.mkdir()
        report._alpha_plots(runs)
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["alpha_sweep_d.png"]  # one figure, no device suffix
    assert not list((tmp_path / "two").iterdir())


def test_sweep_file_keeps_the_all_users_protocol_beside_a_longer_held_out_users_line(tmp_path, monkeypatch):
    # The flagship card's sweep switched to the user_holdout protocol once that line had as many alphas.
    report = load_script("report")
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    metrics = {"test_hr@10": 0.1, "test_ndcg@10": 0.1, "test_hr@10_tail": 0.0}
    alphas = (("sasrec-ce", 0.0), ("bt-sr", 0.2))
    loo = [dict(_record(m, a, 0, "0", 0.7), **metrics) for m, a in alphas]
    held = [dict(_record(m, a, 0, "0", 0.4), **metrics, protocol="user_holdout") for m, a in alphas]
    held.append(dict(held[1], bt_alpha=0.4))
    report._sweep_files(loo + held)
    saved = json.loads((tmp_path / "alpha_sweep_d.json").read_text())
    assert [p["alpha"] for p in saved["points"]] == [0.0, 0.2] and saved["note"].startswith("d, leave_one_out")
    report._sweep_files(held)  # the only line: taken
    assert json.loads((tmp_path / "alpha_sweep_d.json").read_text())["note"].startswith("d, user_holdout")


def test_gpu_runs_get_their_own_ids_and_cpu_ids_do_not_change():
    reproduce = load_script("reproduce")
    cpu = reproduce.grid("main", [0])
    gpu = reproduce.on_device(cpu, "cuda")
    assert reproduce.on_device(cpu, "cpu") == cpu
    # A CPU id is a hash of the run's settings alone: this one (less the exclusion mark, which came after it) was
    # recorded before devices existed; the same run evaluated with whole-history exclusion is another run.
    legacy = {k: v for k, v in cpu[0].items() if k != "eval_exclusion"}
    assert reproduce.run_id(legacy) == "ml-1m-leave_one_out-sasrec-ce-s0-8839bbb3"
    assert cpu[0]["eval_exclusion"] == "history" and reproduce.run_id(cpu[0]) != reproduce.run_id(legacy)
    assert all(reproduce.run_id(g).startswith(reproduce.run_id(c)[:-8] + "cuda-") for c, g in zip(cpu, gpu))
    assert "--use_cpu" in reproduce.train_command(cpu[0], Path("out"))
    assert "--use_cpu" not in reproduce.train_command(gpu[0], Path("out"))


def test_grouped_attention_runs_get_their_own_ids_and_older_runs_keep_one_grid():
    """Beauty and Sports run with length-grouped attention (own ids, own rows); every run recorded before the
    setting existed keeps its id, and its command now says it ran on one grid (the train.py default changed)."""
    from modeling_btsr.arguments import parse_arguments

    reproduce = load_script("reproduce")
    amazon = reproduce.grid("amazon", [0])
    beauty = [r for r in amazon if r["dataset"] in ("beauty", "sports")]
    lastfm = [r for r in amazon if r["dataset"] == "lastfm"]
    assert beauty and all(reproduce.computed_on(r) == "cpu grouped" for r in beauty)

    def legacy(run, *keys):  # the run as recorded before these settings existed
        return {k: v for k, v in run.items() if k not in ("eval_exclusion", *keys)}

    assert reproduce.run_id(legacy(lastfm[0])) == "lastfm-leave_one_out-sasrec-ce-s0-e02a7fa8"  # before grouping
    assert reproduce.run_id(legacy(reproduce.grid("main", [0])[0])) == "ml-1m-leave_one_out-sasrec-ce-s0-8839bbb3"
    old_beauty = legacy(beauty[0], "length_grouped_attention")
    assert reproduce.run_id(old_beauty) == "beauty-leave_one_out-sasrec-sce-s0-4303a7be"  # the one-grid record's id
    assert reproduce.computed_on(reproduce.on_device(beauty, "cuda")[0]) == "cuda grouped"
    for run, grouped in ((beauty[0], True), (lastfm[0], False)):
        command = reproduce.train_command(run, Path("out"))
        assert parse_arguments(command[2:])[0].length_grouped_attention is grouped


def test_rerun_command_of_every_record_parses_to_its_settings(tmp_path, capsys):
    """`reproduce.py --command RUN_ID` rebuilds a record's train.py command from its settings: every committed record
    maps back to its id, and the command gives the record's settings, one grid for a record made before grouping
    (its stored command lacks the flag), grouped for a grouped one, and a pending grid run too."""
    from modeling_btsr.arguments import parse_arguments

    reproduce = load_script("reproduce")
    records = reproduce.load_records()
    assert records
    seen_grouped = set()
    for record in records:
        run = reproduce.run_of_record(record)
        command = shlex.split(reproduce.rerun_command(record["run_id"]))
        assert ("CUDA_VISIBLE_DEVICES=0" in command) is (run.get("device") == "cuda")
        model, _, training, _ = parse_arguments(command[command.index("train.py") + 1 :])
        assert model.length_grouped_attention is bool(run.get("length_grouped_attention", False))
        assert (training.seed, training.per_device_train_batch_size, model.dropout, model.bt_alpha) == (
            run["seed"],
            run["batch_size"],
            run["dropout"],
            run["bt_alpha"],
        )
        seen_grouped.add(model.length_grouped_attention)
    assert seen_grouped == {True, False}
    reproduce.RESULTS = tmp_path / "accuracy.json"  # nothing recorded: the grids alone
    pending = reproduce.grid("amazon", [4])[0]
    assert "--seed 4" in reproduce.rerun_command(reproduce.run_id(pending))
    with pytest.raises(SystemExit, match="no recorded run and no run in any grid"):
        reproduce.rerun_command("ml-1m-leave_one_out-sasrec-ce-s0-00000000")
    assert reproduce.run_of_record({**records[0], "train_loss": 1.0}) == reproduce.run_of_record(records[0])
    with pytest.raises(ValueError, match="hash to"):
        reproduce.run_of_record({**records[0], "dropout": 0.9})


def test_every_grid_run_is_a_command_train_py_accepts(tmp_path):
    """Each run of every grid, pending ones included, on either device: its train.py command passes the settings
    checks (a grid that passed a setting train.py refuses, such as --bt_lambda beside --bt_alpha 0, would fail its
    runs only when they start)."""
    from modeling_btsr.arguments import resolve_settings

    reproduce = load_script("reproduce")
    runs = [
        run
        for device in ("cpu", "cuda")
        for run in reproduce.on_device(reproduce.grids(list(reproduce.GRIDS), [0]), device)
    ]
    assert len({run["model"] for run in runs}) >= 6
    for run in runs:
        command = reproduce.train_command(run, tmp_path / "out")
        settings = resolve_settings(command[2:])
        assert (settings.values["bt_alpha"], settings.values["seed"]) == (run["bt_alpha"], run["seed"]), run


GRIDS_OF_ML1M = (
    "main",
    "authors_budget",
    "user_holdout",
    "user_holdout_alpha",
    "contrastive",
    "alpha_sweep",
    "contrastive_rescaled",
)


def test_ml1m_grid_holds_every_ml1m_run_once_main_comparison_first():
    reproduce = load_script("reproduce")
    seeds = [0, 1, 2]
    ids = [reproduce.run_id(r) for r in reproduce.grid("ml-1m", seeds)]
    expected = {
        reproduce.run_id(r) for name in GRIDS_OF_ML1M for r in reproduce.grid(name, seeds) if r["dataset"] == "ml-1m"
    }
    assert len(ids) == len(set(ids)) and set(ids) == expected
    first = reproduce.grid("ml-1m", seeds)[:6]
    assert {(r["model"], r["seed"], r["bt_alpha"], r["dropout"]) for r in first} == {
        (m, s, a, 0.1) for s in seeds for m, a in (("sasrec-ce", 0.0), ("bt-sr", 0.2))
    }


def test_authors_budget_runs_differ_from_the_dropout_03_baseline_in_their_budget_alone(tmp_path):
    reproduce = load_script("reproduce")
    authors = reproduce.grid("authors_budget", [0, 1])
    baseline = [r for r in reproduce.grid("main", [0, 1]) if r["dropout"] == 0.3]
    assert [{**r, "max_epochs": 200, "patience": 30} for r in authors] == baseline
    command = reproduce.train_command(authors[0], tmp_path)
    assert command[command.index("--num_train_epochs") + 1] == "50"
    assert command[command.index("--patience") + 1] == "10"
    assert command[command.index("--dropout") + 1] == "0.3"


def test_rescaled_contrastive_runs_differ_from_the_preset_runs_in_their_weight_alone():
    reproduce = load_script("reproduce")
    rescaled = reproduce.grid("contrastive_rescaled", [0])
    preset = [
        r for r in reproduce.grid("contrastive", [0]) if r["model"] in reproduce.CONTRASTIVE and r["dataset"] == "ml-1m"
    ]
    assert [{**r, "bt_alpha": 0.1} for r in rescaled] == preset
    assert {r["bt_alpha"] for r in rescaled} == {0.001}
    # the weight reaches train.py, whose preset would otherwise set 0.1
    command = reproduce.train_command(rescaled[0], Path("out"))
    assert command[command.index("--bt_alpha") + 1] == "0.001" and "--preset" in command


def test_several_grids_run_in_order_each_run_once():
    reproduce = load_script("reproduce")
    both = reproduce.grids(["main", "contrastive"], [0])
    ids = [reproduce.run_id(r) for r in both]
    assert len(ids) == len(set(ids))
    assert ids[: len(reproduce.grid("main", [0]))] == [reproduce.run_id(r) for r in reproduce.grid("main", [0])]
    # SASRec and BT-SR of ML-1M are in both grids: once here
    assert len(both) == len(reproduce.grid("main", [0])) + len(reproduce.grid("contrastive", [0])) - 2


@pytest.mark.parametrize(
    "label, alpha, similarity, view_maker, span",
    [
        ("cl4srec-lambda-0.001", 0.001, "dot", "cl4srec", "sequence"),
        ("duorec-cosine", 0.1, "cosine", "same_target+dropout", "sequence"),
        ("sasrec-ce", 0.0, "dot", "same_target", "sequence"),
        ("cl4srec-prefix", 0.1, "dot", "cl4srec", "random_prefix"),
        ("duorec-prefix", 0.1, "dot", "same_target+dropout", "random_prefix"),
        ("cl4srec-in-place", 0.1, "dot", "cl4srec", "random_prefix_in_place"),
        ("cl4srec-batch-32", 0.1, "dot", "cl4srec", "sequence"),
        ("cl4srec-len-50", 0.1, "dot", "cl4srec", "sequence"),
        ("sasrec-ce-len-50", 0.0, "dot", "same_target", "sequence"),
        ("duorec-dropout-0.5", 0.1, "dot", "same_target+dropout", "sequence"),
        ("cl4srec-tau-10", 0.1, "dot", "cl4srec", "sequence"),
        ("sasrec-ce-prefix-samples", 0.0, "dot", "same_target", "sequence"),
        ("cl4srec-prefix-samples", 0.1, "dot", "cl4srec", "random_prefix"),
        ("duorec-prefix-samples", 0.1, "dot", "same_target+dropout", "random_prefix"),
    ],
)
def test_contrastive_probe_variants_reach_train_py_settings(tmp_path, label, alpha, similarity, view_maker, span):
    """Each probe variant changes one setting of the grid's run and keeps the rest: parsed by train.py's own parser."""
    from modeling_btsr.arguments import parse_arguments

    probe = load_script("contrastive_probe")
    command = probe.probe_command(label, epochs=8, output_dir=tmp_path)
    model_args, data_args, training_args, _ = parse_arguments(command[2:])
    ssl = (model_args.bt_alpha, model_args.infonce_similarity, model_args.view_maker, model_args.ssl_view_span)
    assert ssl == (alpha, similarity, view_maker, span)
    assert (training_args.num_train_epochs, data_args.patience, training_args.seed) == (8, 9, 0)
    batch = training_args.per_device_train_batch_size
    assert (data_args.dataset, data_args.split, batch) == ("ml-1m", "leave_one_out", 32 if "batch-32" in label else 256)
    assert model_args.max_len == (50 if "len-50" in label else 200)
    assert model_args.dropout == (0.5 if "dropout-0.5" in label else 0.1)
    assert model_args.infonce_temperature == (10.0 if "tau-10" in label else 1.0)
    # The record states those settings as the parser read them; InfoNCE's own settings only where it runs.
    stated = probe.probe_settings(command)
    assert stated == {
        "loss_type": "ce",
        "bt_alpha": alpha,
        "similarity": similarity if alpha else "-",
        "view_span": span,
        "prediction_span": "random_prefix" if "prefix-samples" in label else "sequence",
        "batch_size": batch,
        "max_len": model_args.max_len,
        "dropout": model_args.dropout,
        "infonce_temperature": model_args.infonce_temperature if alpha else None,
    }


def test_contrastive_probe_state_likeness_is_one_when_every_user_gets_the_same_state(tmp_path):
    """`norms` on the embedded data: a model whose final LayerNorm outputs its bias alone gives every user the same
    state (mean cosine 1, dot products all equal); a random one does not."""
    import torch

    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
    from modeling_btsr.arguments import DataArguments
    from modeling_btsr.training_run import prepare_data

    probe = load_script("contrastive_probe")
    data = ("ml-latest-small", "temporal")
    prepared = prepare_data(DataArguments(dataset=data[0], data_root=None, split=data[1]), 20)
    torch.manual_seed(0)
    model = BTSRForSequentialRecommendation(
        BTSRConfig(num_items=len(prepared.item_user_counts), max_position_embeddings=20, hidden_size=16)
    )
    model.save_pretrained(tmp_path / "random")
    spread = probe.norms(str(tmp_path / "random"), data, n_users=64)
    assert spread["last_state_mean_cosine"] < 0.99 and spread["last_state_dot_std"] > 0.1
    with torch.no_grad():
        model.btsr.final_layernorm.weight.zero_()
        model.btsr.final_layernorm.bias.copy_(torch.arange(16.0) / 4)
    model.save_pretrained(tmp_path / "alike")
    alike = probe.norms(str(tmp_path / "alike"), data, n_users=64)
    assert alike["last_state_mean_cosine"] == pytest.approx(1.0, abs=1e-3) and alike["last_state_dot_std"] == 0.0
    assert alike["last_state_norm"] == pytest.approx(float((torch.arange(16.0) / 4).norm()), abs=1e-3)


def test_gpu_checks_compare_the_batched_sce_backward_and_catch_a_wrong_one(monkeypatch, capsys):
    """benchmarks/gpu_checks.py, run here with the CPU standing in for the GPU: the batched backward agrees with the
    per-bucket one; a batched backward that is 1% off is reported (exit 1)."""
    gpu_checks = load_script("gpu_checks")
    losses_btsr = gpu_checks.losses_btsr
    assert gpu_checks.main(["--device", "cpu"]) == 0
    exact = losses_btsr._BucketMaxCrossEntropy._gradients

    def off_when_batched(ctx, grad):
        grad_hidden, *rest = exact(ctx, grad)
        return (grad_hidden * 1.01 if not losses_btsr.PER_BUCKET_BACKWARD_DEVICES else grad_hidden), *rest

    monkeypatch.setattr(losses_btsr._BucketMaxCrossEntropy, "_gradients", staticmethod(off_when_batched))
    assert gpu_checks.main(["--device", "cpu"]) == 1
    assert "relative error above" in capsys.readouterr().err


def test_a_run_notes_each_code_version_it_trained_with(tmp_path, monkeypatch):
    reproduce = load_script("reproduce")
    assert reproduce.code_version().split("+")[0] not in ("", "unknown")  # a git checkout: a commit
    versions = iter(["aaaa", "aaaa", "bbbb+local"])
    monkeypatch.setattr(reproduce, "code_version", lambda: next(versions))
    assert reproduce.note_code_version(tmp_path) == ["aaaa"]
    assert reproduce.note_code_version(tmp_path) == ["aaaa"]  # the same code again (a resumed session): noted once
    assert reproduce.note_code_version(tmp_path) == ["aaaa", "bbbb+local"]
    assert (tmp_path / "code_versions.txt").read_text() == "aaaa\nbbbb+local\n"


def test_performance_render_marks_ce_at_1m_items_as_computed_and_lists_step_times(tmp_path, monkeypatch):
    """`--render_only` rewrites performance.md from performance.json: CE at 1M items is the computed size of its
    logits (positions x items x 4 bytes), said to be computed; each catalogue's SCE / CE step times are rows."""
    performance = load_script("performance")
    monkeypatch.setattr(performance, "RESULTS", tmp_path)
    machine = {"cpu_model": "cpu", "cores": 2, "torch": "t", "omp_wait_policy": "PASSIVE", "threads": 2}
    memory = {
        "sce_10k": {"peak_mb": 10, "step_s": 0.5},
        "ce_10k": {"peak_mb": 9, "step_s": 2.0},
        "sce_1m": {"peak_mb": 30, "step_s": 3.0},
        "ce_1m": {"computed": True, "positions": 1000, **performance.ce_logits_mb(1000, 1_000_000)},
    }
    results = {
        "sections": {
            "memory": {
                "command": "cmd",
                "measured_at": "t",
                "machine": machine,
                "load_average_start": [0],
                "load_average_end": [0],
            }
        },
        "memory": memory,
        "sce_1m_items_peak_mb": 30,
        "ce_1m_items_peak_mb": None,
        "benchmark_wall_s": 7.0,
    }
    (tmp_path / "performance.json").write_text(json.dumps(results))
    monkeypatch.setattr(sys, "argv", ["performance.py", "--render_only"])
    performance.main()
    written = json.loads((tmp_path / "performance.json").read_text())
    assert written["ce_1m_items_peak_mb"] == round(1000 * 1_000_000 * 4 / 2**20) == 3815
    assert written["ce_1m_items_peak_mb_is"].startswith("computed, not run")
    assert written["benchmark_wall_s"] == 7.0  # the measuring run's wall time, not the render's
    table = (tmp_path / "performance.md").read_text()
    assert "| one training step, 10k items, SCE / CE (s) | 0.5 / 2.0 |" in table
    assert "| one training step, 1m items, SCE / CE (s) | 3.0 / not run |" in table
    assert "| CE peak RSS, 1m items (MB) | 3815 (computed, not run" in table


def test_reproduce_states_every_datasets_epoch_cap_in_help_and_list(monkeypatch, capsys):
    reproduce = load_script("reproduce")
    monkeypatch.setattr(reproduce, "DATASETS", dict(reproduce.DATASETS))
    base = reproduce.DATASETS["ml-1m", "leave_one_out"]
    reproduce.DATASETS["ml-1m", "leave_one_out"] = dict(base, epochs=123, patience=7)
    assert "ml-1m leave_one_out: at most 123 epochs, stopped after 7 epochs" in reproduce.caps_text()
    assert "sports leave_one_out: at most 300 epochs" in reproduce.caps_text()
    monkeypatch.setattr(sys, "argv", ["reproduce.py", "--list", "--grid", "main", "--seeds", "0"])
    reproduce.main()
    listed = capsys.readouterr().out.splitlines()
    assert listed and all(line.endswith("(cap 123 epochs, patience 7)") for line in listed)


def test_report_pairs_bt_sr_with_sasrec_at_another_dropout():
    """The second baseline row (SASRec at the authors' dropout 0.3) gets differences of its own: BT-SR at dropout
    0.1 minus it, per seed and pooled; SASRec at BT-SR's own dropout and the contrastive runs stay out."""
    report = load_script("report")
    bt_sr = [_record("bt-sr", 0.2, seed, ranks, 0.6) for seed, ranks in ((0, "1100"), (1, "1000"))]
    authors = [dict(_record("sasrec-ce", 0.0, seed, "2000", 0.7), dropout=0.3) for seed in (0, 1)]
    others = [_record("sasrec-ce", 0.0, 0, "0000", 0.1), _record("cl4srec", 0.1, 0, "1111", 0.1)]
    # The authors' CE budget (50 epochs, patience 10) is another baseline: a group of its own, never mixed in.
    budget = [dict(_record("sasrec-ce", 0.0, 0, "0000", 0.5), dropout=0.3, max_epochs=50, patience=10)]
    section = report._other_dropout_section(bt_sr + authors + others + budget)
    rows = [line for line in section if line.startswith("| d |")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [(c[7], c[10]) for c in cells] == [
        ("200 / 30", "0"),
        ("200 / 30", "1"),
        ("200 / 30", "all (2)"),
        ("50 / 10", "0"),
    ]
    assert all(c[2] == "bt-sr" and c[5] == "0.1" and c[6] == "0.3" for c in cells)
    seed0 = (2 * NDCG_OF_RANK["1"] - NDCG_OF_RANK["2"]) / 4
    seed1 = (NDCG_OF_RANK["1"] - NDCG_OF_RANK["2"]) / 4
    assert cells[0][11] == f"{seed0:+.4f}" and cells[1][11] == f"{seed1:+.4f}"
    assert cells[2][11] == f"{(seed0 + seed1) / 2:+.4f}" and cells[2][-1] == "-0.1000"
    assert cells[3][11] == f"{2 * NDCG_OF_RANK['1'] / 4:+.4f}" and cells[3][-1] == "+0.1000"
    assert report._other_dropout_section(bt_sr + others) == []


def test_user_holdout_grid_runs_each_dataset_at_its_leave_one_out_settings(tmp_path):
    reproduce = load_script("reproduce")
    held = reproduce.grid("user_holdout", [0])
    reference = [r for r in reproduce.grids(["main", "amazon"], [0]) if r["dropout"] != 0.3]  # not the authors' CE
    loo = {(r["dataset"], r["model"]): r for r in reference}
    assert {r["dataset"] for r in held} == {"ml-1m", "beauty", "sports", "lastfm"}
    for run in held:
        twin = loo[(run["dataset"], run["model"])]
        assert {**run, "protocol": "leave_one_out"} == twin
        command = reproduce.train_command(run, tmp_path)
        assert command[command.index("--split") + 1] == "user_holdout"
    ids = [reproduce.run_id(r) for r in reproduce.grid("temporal_10_seeds", [0])]
    assert len(set(ids)) == 20


def test_summary_rows_keep_a_run_under_another_epoch_budget_apart():
    report = load_script("report")
    usual = [_record("sasrec-ce", 0.0, s, "1000", 0.5) for s in (0, 1)]
    authors = dict(_record("sasrec-ce", 0.0, 2, "2000", 0.5), max_epochs=50, patience=10)
    records = usual + [authors]
    keys = [report.budgeted_setting(r, records) for r in records]
    assert keys[0] == keys[1] == report.setting(usual[0]) and keys[2] != keys[0]
    assert keys[2][2] == "sasrec-ce (50/10)" and keys[2][:2] + keys[2][3:] == keys[0][:2] + keys[0][3:]


def test_peers_sasrec_helpers_flatten_in_order_and_score_top_lists_alike():
    peers = load_script("peers_sasrec")
    users, items, positions = peers.flatten_sequences([[5, 3], [7]])
    assert (users, items, positions) == ([0, 0, 1], [5, 3, 7], [0, 1, 0])
    # targets at rank 1, rank 3, beyond the list, and a user the library returned nothing for
    metrics = peers.topk_metrics([[4, 2], [9, 8, 1], [6], []], [4, 1, 5, 3], k=10)
    assert metrics["hr@10"] == 0.5 and metrics["num_users"] == 4
    assert math.isclose(metrics["ndcg@10"], (1.0 + 1.0 / math.log2(4)) / 4)
    assert peers.topk_metrics([[1, 2, 3]], [3], k=2)["hr@2"] == 0.0  # only the first k count


def test_peers_lightning_trainer_runs_exactly_the_epochs_and_counts_each_batchs_targets(monkeypatch):
    """Both peers' Trainers come from one helper: fixed epochs on one CPU, with any extra setting, and a callback
    of the trainer's own Lightning whose batch hook counts targets for the epoch report."""
    peers = load_script("peers_sasrec")

    class Callback:  # stands for the peer's lightning.Callback
        pass

    trainer = peers._lightning_trainer(dict, Callback, len, 3, limit_val_batches=0)
    (callback,) = trainer.pop("callbacks")
    assert trainer == {
        "max_epochs": 3,
        "min_epochs": 3,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "accelerator": "cpu",
        "devices": 1,
        "limit_val_batches": 0,
    }
    assert isinstance(callback, Callback)
    reports = []
    monkeypatch.setattr(peers, "wait_command", lambda: "epoch")
    monkeypatch.setattr(peers, "report", lambda **fields: reports.append(fields))
    callback.on_train_epoch_start(None, None)
    for batch in ([1, 2], [3, 4, 5]):
        callback.on_train_batch_start(None, None, batch, 0)
    callback.on_train_epoch_end(None, None)
    assert [(r["event"], r["epoch"], r["targets"]) for r in reports] == [("epoch", 0, 5)]
