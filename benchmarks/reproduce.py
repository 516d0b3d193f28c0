#!/usr/bin/env python
"""Resumable runner for the paper's comparison: one record per finished run in benchmarks/results/accuracy.json.

    .venv/bin/python benchmarks/reproduce.py --grid main --seeds 0 1 2 --time_budget_min 120
    .venv/bin/python benchmarks/reproduce.py --grid temporal
    .venv/bin/python benchmarks/reproduce.py --list                 # what each grid holds and what is recorded
    .venv/bin/python benchmarks/reproduce.py --command RUN_ID       # the train.py command that reruns a record
    # two runners side by side, one thread each (more runs per hour on 2 cores than one runner with 2 threads):
    .venv/bin/python benchmarks/reproduce.py --grid main --seeds 0 --threads 1 &
    .venv/bin/python benchmarks/reproduce.py --grid contrastive --only ml-100k --threads 1
    # on a GPU machine: many runners over one grid share its runs (a run held by one runner is skipped by the others)
    for i in $(seq 8); do python benchmarks/reproduce.py --grid ml-1m --device cuda --threads 1 & done; wait

Each run is `train.py` in a subprocess with a fixed setting; its working folder (checkpoints) lives under
`$BTSR_REPRODUCE_WORK/<run_id>` (default `~/.cache/btsr/reproduce`, outside the repository). Runs already in
accuracy.json are skipped; a run that was killed (time budget, session end) resumes from its last complete checkpoint
the next time. Records are appended as each run finishes, under a file lock, so the results file is always
consistent, and a run already taken by another runner is skipped. Epoch caps are stated per dataset below (and by
--list) and stored in every record.
Each record keeps its users' test ranks within the top 10 (`test_per_user`, see `compact_per_user`) for paired
per-user intervals, and the commits its sessions ran (`code_versions`: more than one for a run resumed across a code
change; records finished before 2026-11-28 predate the field). `train_seconds` are the last session's, from
`resumed_from_epoch` on (a killed session leaves no time behind).
"""

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's own packages, also when run from another worktree
from data_processing.readers import default_data_root  # noqa: E402  (after the path entry above)

RESULTS = ROOT / "benchmarks" / "results" / "accuracy.json"
# Outside the work tree: checkpoints survive a fresh checkout of the repository on the same machine.
WORK = Path(os.environ.get("BTSR_REPRODUCE_WORK", "~/.cache/btsr/reproduce")).expanduser()
# The licensed datasets live outside the checkout: train.py's own data root ($BTSR_DATA_ROOT, e.g. on a GPU machine
# that receives a copy of them).
SHARED = default_data_root()

# (dataset, protocol) -> settings shared by all runs of that dataset, including the stated epoch cap and patience.
# Where each dataset's file is comes from the one registry, data_processing.readers.KNOWN_DATASETS (`dataset_file`).
DATASETS = {
    ("ml-1m", "leave_one_out"): {"batch_size": 256, "epochs": 200, "patience": 30, "loss": "ce", "bt_lambda": 0.05},
    ("beauty", "leave_one_out"): {"batch_size": 1024, "epochs": 300, "patience": 30, "loss": "sce", "bt_lambda": 0.1},
    ("sports", "leave_one_out"): {"batch_size": 1024, "epochs": 300, "patience": 30, "loss": "sce", "bt_lambda": 0.1},
    ("lastfm", "leave_one_out"): {"batch_size": 256, "epochs": 200, "patience": 30, "loss": "ce", "bt_lambda": 0.05},
    ("ml-100k", "temporal"): {"batch_size": 128, "epochs": 200, "patience": 30, "loss": "ce", "bt_lambda": 0.05},
    # The users held out of training (issue 20): each dataset's leave-one-out settings, 10% of its users evaluated.
    ("ml-1m", "user_holdout"): {"batch_size": 256, "epochs": 200, "patience": 30, "loss": "ce", "bt_lambda": 0.05},
    ("beauty", "user_holdout"): {"batch_size": 1024, "epochs": 300, "patience": 30, "loss": "sce", "bt_lambda": 0.1},
    ("sports", "user_holdout"): {"batch_size": 1024, "epochs": 300, "patience": 30, "loss": "sce", "bt_lambda": 0.1},
    ("lastfm", "user_holdout"): {"batch_size": 256, "epochs": 200, "patience": 30, "loss": "ce", "bt_lambda": 0.05},
    # In no grid: ML-100K's sequences under the other protocol, for benchmarks/contrastive_probe.py.
    ("ml-100k", "leave_one_out"): {"batch_size": 128, "epochs": 200, "patience": 30, "loss": "ce", "bt_lambda": 0.05},
    ("ml-latest-small", "temporal"): {
        "batch_size": 128,
        "epochs": 200,
        "patience": 30,
        "loss": "ce",
        "bt_lambda": 0.05,
    },
}


# Contrastive baselines run through their train.py presets (hyper-parameters documented there); alpha is their
# InfoNCE weight (0.1 in both papers).
CONTRASTIVE = ("cl4srec", "duorec")
CONTRASTIVE_ALPHA = 0.1
# The papers' lambda divided by ML-1M's ~107 labelled positions per sequence: accuracy falls with the InfoNCE weight,
# dose by dose (benchmarks/contrastive_probe.py: at 0.1 validation NDCG@10 stalls within epochs; at 0.001 CL4SRec
# trails SASRec less, 0.121 vs 0.155 at epoch 30, and DuoRec stalls near 0.07). Chosen as the papers' weight
# relative to the ranked position's CE (RecBole trains CE on the last position only, here on every position); the
# probe's prefix variants, InfoNCE on random prefixes re-encoded or at their own positions, collapse like the
# preset, so it is the weight, not where InfoNCE acts, that sinks the preset.
CONTRASTIVE_ALPHA_PER_POSITION = {"ml-1m": 0.001}
# The BERT4Rec backbone (issue 26) runs through its train.py presets too: `bert4rec` (the RecSys 2023 reproduction's
# settings) and `bert4rec-bt` (the same plus Barlow Twins at alpha 0.2); the preset's batch and epoch budget.
BERT4REC = ("bert4rec", "bert4rec-bt")
BERT4REC_BUDGET = {"batch_size": 128, "epochs": 200, "patience": 20}
# EC4SRec (issue 26) through its preset, at its authors' InfoNCE weight (0.1), against SASRec-CE on the same seeds.
EC4SREC = ("ec4srec",)
PRESET_MODELS = CONTRASTIVE + BERT4REC + EC4SREC


def dataset_file(dataset: str) -> str | None:
    """The dataset's file under the shared data folder (the registry's path), None for one that ships in the repo."""
    from data_processing.readers import KNOWN_DATASETS

    known = KNOWN_DATASETS[dataset]
    return None if known.in_repo else known.relative_path


def _run(
    dataset, protocol, model, seed, alpha=None, dropout=0.1, loss=None, batch_size=None, grouped=False, budget=None
):
    base = {**DATASETS[(dataset, protocol)], **(budget or {})}
    loss = loss or base["loss"]
    if model in ("bt-sr", "bert4rec-bt"):
        alpha = 0.2 if alpha is None else alpha
    elif model in CONTRASTIVE + EC4SREC:
        alpha = CONTRASTIVE_ALPHA if alpha is None else alpha
    else:
        alpha = 0.0
    return {
        "dataset": dataset,
        "protocol": protocol,
        "model": model,
        "loss_type": loss,
        "bt_alpha": alpha,
        "bt_lambda": base["bt_lambda"],
        "dropout": dropout,
        "batch_size": batch_size or base["batch_size"],
        "seed": seed,
        "max_epochs": base["epochs"],
        "patience": base["patience"],
        **({"length_grouped_attention": True} if grouped else {}),
        "eval_exclusion": "history",
    }


# The authors' budget for their CE baseline on ML-1M (configs/temporal/ml1m/ce.yaml: dropout 0.3, at most 50 epochs,
# patience 10); their BT-SR config (ce_bt.yaml) is the main grid's BT-SR run (dropout 0.1, 200 epochs, patience 30).
AUTHORS_CE_BUDGET = {"epochs": 50, "patience": 10}

GRIDS = (
    "main",
    "authors_budget",
    "user_holdout",
    "user_holdout_alpha",
    "temporal_10_seeds",
    "amazon",
    "temporal",
    "contrastive",
    "contrastive_rescaled",
    "bert4rec",
    "bert4rec_user_holdout",
    "ec4srec",
    "batch_size",
    "alpha_sweep",
    "lastfm_sweep",
    "ml-1m",
)


def grid(name: str, seeds: list[int]) -> list[dict]:
    """The runs of one grid, in the order they are worth running."""
    if name == "main":  # ML-1M leave-one-out: alpha fixed in advance at 0.2; the authors' dropout-0.3 baseline too
        runs = []
        for seed in seeds:
            runs += [_run("ml-1m", "leave_one_out", "sasrec-ce", seed), _run("ml-1m", "leave_one_out", "bt-sr", seed)]
        runs += [_run("ml-1m", "leave_one_out", "sasrec-ce", s, dropout=0.3) for s in seeds]
        return runs
    if name == "authors_budget":  # SASRec-CE under the authors' CE config, to pair with the main grid's BT-SR runs
        return [_run("ml-1m", "leave_one_out", "sasrec-ce", s, dropout=0.3, budget=AUTHORS_CE_BUDGET) for s in seeds]
    if name == "user_holdout":  # the paper's test users unseen in training, at each dataset's reference settings
        runs = []
        for dataset in ("lastfm", "ml-1m", "beauty", "sports"):  # cheapest first
            amazon = dataset in ("beauty", "sports")
            for seed in seeds:
                if amazon:
                    runs += [
                        _run(dataset, "user_holdout", "sasrec-sce", seed, dropout=0.6, grouped=True),
                        _run(dataset, "user_holdout", "bt-sr", seed, alpha=0.25, dropout=0.6, grouped=True),
                    ]
                else:
                    runs += [_run(dataset, "user_holdout", m, seed) for m in ("sasrec-ce", "bt-sr")]
        return runs
    if name == "user_holdout_alpha":  # accuracy, coverage and tail against alpha, held-out ML-1M users, one seed
        return [
            _run("ml-1m", "user_holdout", "sasrec-ce" if a == 0 else "bt-sr", seeds[0], alpha=a)
            for a in (0.0, 0.1, 0.2, 0.4)
        ]
    if name == "temporal_10_seeds":  # ML-100K's 92 temporal test users, 10 seeds per arm (the seeds given are ignored)
        return [_run("ml-100k", "temporal", m, s) for s in range(10) for m in ("sasrec-ce", "bt-sr")]
    if name == "amazon":
        runs = []
        for dataset in ("beauty", "sports"):
            for seed in seeds:
                runs += [
                    _run(dataset, "leave_one_out", "sasrec-sce", seed, dropout=0.6, grouped=True),
                    _run(dataset, "leave_one_out", "bt-sr", seed, alpha=0.25, dropout=0.6, grouped=True),
                ]
        for seed in seeds:
            runs += [_run("lastfm", "leave_one_out", "sasrec-ce", seed), _run("lastfm", "leave_one_out", "bt-sr", seed)]
        return runs
    if name == "temporal":  # a protocol check: 92 and 42 evaluated users
        return [
            _run(d, "temporal", m, s)
            for d in ("ml-100k", "ml-latest-small")
            for s in seeds
            for m in ("sasrec-ce", "bt-sr")
        ]
    if name == "contrastive":  # BT-SR against InfoNCE objectives on one protocol each, same harness
        return [
            _run(d, p, m, s)
            for (d, p) in (("ml-1m", "leave_one_out"), ("ml-100k", "temporal"))
            for s in seeds
            for m in ("sasrec-ce", "bt-sr", "cl4srec", "duorec")
        ]
    if name == "contrastive_rescaled":  # the InfoNCE baselines at a 100x smaller weight (see above)
        return [
            _run(d, "leave_one_out", m, s, alpha=a)
            for d, a in CONTRASTIVE_ALPHA_PER_POSITION.items()
            for s in seeds
            for m in CONTRASTIVE
        ]
    if name == "bert4rec":  # BERT4Rec and BT-SR on its backbone, ML-1M leave-one-out then LastFM
        return [
            _run(d, "leave_one_out", m, s, budget=BERT4REC_BUDGET)
            for d in ("ml-1m", "lastfm")
            for s in seeds
            for m in BERT4REC
        ]
    if name == "bert4rec_user_holdout":  # the same on the users held out of training, LastFM then ML-1M
        return [
            _run(d, "user_holdout", m, s, budget=BERT4REC_BUDGET)
            for d in ("lastfm", "ml-1m")
            for s in seeds
            for m in BERT4REC
        ]
    if name == "ec4srec":  # EC4SRec and its SASRec-CE baseline, LastFM (minutes a run) then ML-1M leave-one-out
        return [
            _run(d, "leave_one_out", m, s) for d in ("lastfm", "ml-1m") for s in seeds for m in ("sasrec-ce", *EC4SREC)
        ]
    if name == "batch_size":  # InfoNCE's negatives are the batch; Barlow Twins has none: accuracy against batch size
        return [
            _run("lastfm", "leave_one_out", m, s, batch_size=b)
            for s in seeds
            for b in (256, 64, 1024)
            for m in ("sasrec-ce", "bt-sr", "cl4srec", "duorec")
        ]
    if name == "lastfm_sweep":  # the LastFM half of the alpha sweep alone (minutes per run, not an hour)
        return [r for r in grid("alpha_sweep", seeds) if r["dataset"] == "lastfm"]
    if name == "ml-1m":  # every ML-1M run of the other grids, most wanted first, each once (for a GPU session)
        runs = [
            r
            for r in grids(
                [
                    "main",
                    "authors_budget",
                    "user_holdout",
                    "user_holdout_alpha",
                    "contrastive",
                    "alpha_sweep",
                    "contrastive_rescaled",
                ],
                seeds,
            )
            if r["dataset"] == "ml-1m"
        ]
        main = [
            r
            for r in runs
            if r["model"] in ("sasrec-ce", "bt-sr") and r["dropout"] == 0.1 and r["bt_alpha"] in (0.0, 0.2)
        ]
        return main + [r for r in runs if r not in main]
    if name == "alpha_sweep":
        runs = [
            _run("ml-1m", "leave_one_out", "sasrec-ce" if a == 0 else "bt-sr", seeds[0], alpha=a)
            for a in (0.0, 0.1, 0.2, 0.4, 0.8)
        ]
        runs += [
            _run("lastfm", "leave_one_out", "sasrec-ce" if a == 0 else "bt-sr", s, alpha=a)
            for s in seeds
            for a in (0.0, 0.1, 0.2, 0.4, 0.8)
        ]
        return runs
    raise SystemExit(f"unknown grid {name!r}: {' | '.join(GRIDS)}")


def grids(names: list[str], seeds: list[int]) -> list[dict]:
    """The runs of several grids in order, each run once."""
    runs = {}
    for name in names:
        for run in grid(name, seeds):
            runs.setdefault(run_id(run), run)
    return list(runs.values())


def run_id(run: dict) -> str:
    key = json.dumps({k: run[k] for k in sorted(run)}, sort_keys=True)
    device = f"{run['device']}-" if "device" in run else ""
    return (
        f"{run['dataset']}-{run['protocol']}-{run['model']}-s{run['seed']}-{device}"
        + hashlib.sha1(key.encode()).hexdigest()[:8]
    )


def device_of(run: dict) -> str:
    return run.get("device", "cpu")  # runs from before GPU runs have no `device`: CPU runs


# How a record's evaluation excluded seen items: "history" (every item of the user's history, as recommend() does;
# every run since the fix) or "window" (only the last max_len items: every record made before it, marked so in
# accuracy.json). Records of the two never share a table row or a paired difference (see `computed_on`).
EVAL_EXCLUSIONS = ("history", "window")


def eval_exclusion(record: dict) -> str:
    return record.get("eval_exclusion", "window")


def computed_on(run: dict) -> str:
    """The device, plus `grouped` for a run with length-grouped attention (BTSRConfig.length_grouped_attention).

    Grouping computes the same model, drawing dropout noise in other shapes, so a grouped run is another run as one
    on another device is (own id, own table row). Runs from before the setting existed carry no key and ran on one
    grid: their commands say so (`--length_grouped_attention False`), so they still reproduce. Beauty and Sports run
    grouped (their epochs ~4x faster, benchmarks/performance.py --sections grouping); the other grids keep one grid,
    their seeds recorded that way. A record measured with window-only exclusion says so (`window-excl`): another
    protocol, never pooled or paired with a run that excludes the whole history."""
    grouped = " grouped" if run.get("length_grouped_attention") else ""
    return device_of(run) + grouped + (" window-excl" if eval_exclusion(run) == "window" else "")


def on_device(runs: list[dict], device: str) -> list[dict]:
    """A GPU run is another run (other kernels, other rounding): its own id, record and table row. CPU runs carry no
    `device` key, so they keep the ids they had before devices existed (their checkpoints and records stay valid)."""
    return runs if device == "cpu" else [{**run, "device": device} for run in runs]


def train_command(run: dict, output_dir: Path) -> list[str]:
    data = (
        ["--dataset", run["dataset"]]
        if dataset_file(run["dataset"]) is None
        else ["--dataset", run["dataset"], "--data_root", str(SHARED)]
    )
    preset = ["--preset", run["model"]] if run["model"] in PRESET_MODELS else []
    return [
        sys.executable,
        str(ROOT / "train.py"),
        *data,
        *preset,
        "--split",
        run["protocol"],
        "--loss_type",
        run["loss_type"],
        "--bt_alpha",
        str(run["bt_alpha"]),
        "--bt_lambda",
        str(run["bt_lambda"]),
        "--dropout",
        str(run["dropout"]),
        "--per_device_train_batch_size",
        str(run["batch_size"]),
        "--seed",
        str(run["seed"]),
        "--num_train_epochs",
        str(run["max_epochs"]),
        "--patience",
        str(run["patience"]),
        "--length_grouped_attention",
        str(bool(run.get("length_grouped_attention", False))),
        "--output_dir",
        str(output_dir),
        "--save_total_limit",
        "2",
        *(["--use_cpu"] if device_of(run) == "cpu" else []),
    ]


# The settings `_run` and `on_device` put in a run (what `run_id` hashes); a record adds what the run produced.
RUN_KEYS = (
    "dataset",
    "protocol",
    "model",
    "loss_type",
    "bt_alpha",
    "bt_lambda",
    "dropout",
    "batch_size",
    "seed",
    "max_epochs",
    "patience",
    "length_grouped_attention",
    "device",
    "eval_exclusion",
)


def run_of_record(record: dict) -> dict:
    """The run settings a record was made from: its `RUN_KEYS`, checked against its `run_id`. A record marked
    `eval_exclusion: window` was hashed before the field existed, so the mark is not part of its id."""
    run = {k: record[k] for k in RUN_KEYS if k in record and not (k == "eval_exclusion" and record[k] == "window")}
    if run_id(run) != record.get("run_id"):
        raise ValueError(
            f"record {record.get('run_id')!r}: its settings {run} hash to {run_id(run)!r}, "
            "not to its run_id (a run setting missing from reproduce.RUN_KEYS?)"
        )
    return run


def rerun_command(wanted: str, seeds=range(5)) -> str:
    """The shell command (from the repository root) that reruns run `wanted`, a recorded run's id or one of
    `--list`'s, with its checkpoints in `outputs/<run id>`: train.py with the run's settings (so records whose stored
    `command` predates `--length_grouped_attention` get the value they ran with), and the environment the runner
    gave it (one visible GPU for a GPU run; the recorded intra-op threads)."""
    records = [r for r in load_records() if r.get("run_id") == wanted]
    candidates = [run_of_record(r) for r in records] or [
        run for device in ("cpu", "cuda") for run in on_device(grids(list(GRIDS), list(seeds)), device)
    ]
    for run in candidates:
        if run_id(run) == wanted:
            shared = os.path.relpath(SHARED, ROOT)
            command = [
                shared if part == str(SHARED) else part for part in train_command(run, Path("outputs") / wanted)[2:]
            ]
            env = ["CUDA_VISIBLE_DEVICES=0"] if device_of(run) != "cpu" else []
            threads = records[0].get("threads") if records else None
            env += [f"OMP_NUM_THREADS={threads}"] if threads else []
            return shlex.join([*env, ".venv/bin/python", "train.py", *command])
    raise SystemExit(
        f"reproduce.py: no recorded run and no run in any grid (seeds {list(seeds)}) is {wanted!r}; see --list"
    )


def load_records() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


@contextlib.contextmanager
def exclusive(lock_file: Path, wait: bool = True):
    """Holds an flock on `lock_file`; yields False at once when `wait` is off and another process holds it."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


RANK_DIGITS = "0123456789a"  # rank@10 per user, one character each: 1-9, a = 10, 0 = not in the top 10


def compact_per_user(per_user: dict) -> dict:
    """Per-user test results as each user's rank of its target within the top 10 (`rank@10`, one character per user
    in users' order, see `RANK_DIGITS`), from which HR@10 and NDCG@10 follow exactly (`per_user_metric`): a Beauty
    record holds 22 KB here instead of ~240 KB of two float lists. Takes train.py's `eval/test_per_user.json`
    (`hr@10`, `ndcg@10` lists) or an already compact dict; checks that the two lists are those of one rank per user."""
    if "rank@10" in per_user:
        return {"rank@10": per_user["rank@10"]}
    hr, ndcg = np.asarray(per_user["hr@10"], dtype=float), np.asarray(per_user["ndcg@10"], dtype=float)
    ranks = np.rint(2.0 ** (1.0 / np.where(ndcg > 0, ndcg, 1.0)) - 1.0).astype(int) * (ndcg > 0)
    if ranks.min(initial=0) < 0 or ranks.max(initial=0) > 10:
        raise ValueError("per-user ndcg@10 holds a value no rank in 1..10 gives")
    compact = {"rank@10": "".join(RANK_DIGITS[rank] for rank in ranks)}
    if not (
        np.array_equal(per_user_metric(compact, "hr@10"), hr)
        and np.allclose(per_user_metric(compact, "ndcg@10"), ndcg, rtol=0, atol=1e-9)
    ):
        raise ValueError("per-user hr@10 / ndcg@10 are not those of one rank in 1..10 per user")
    return compact


def per_user_metric(per_user: dict, metric: str) -> np.ndarray:
    """`hr@10` or `ndcg@10` per user, float64, from a record's `test_per_user` (see `compact_per_user`).

    >>> per_user_metric({"rank@10": "013a"}, "ndcg@10").round(4).tolist()
    [0.0, 1.0, 0.5, 0.2891]
    """
    ranks = np.asarray([RANK_DIGITS.index(c) for c in per_user["rank@10"]], dtype=float)
    if metric == "hr@10":
        return (ranks > 0).astype(float)
    if metric == "ndcg@10":
        return np.divide(1.0, np.log2(ranks + 1.0), out=np.zeros_like(ranks), where=ranks > 0)
    raise ValueError(f"unknown per-user metric {metric!r}: hr@10 | ndcg@10")


def append_record(record: dict) -> None:
    # Read-modify-write under a lock: two runners finishing at once must not drop each other's record.
    with exclusive(RESULTS.with_suffix(".lock")):
        records = load_records() + [record]
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1) + "\n")
        os.replace(tmp, RESULTS)


def last_complete_checkpoint(folder: Path) -> Path | None:
    from modeling_btsr.training_run import is_complete_checkpoint  # the rule train.py's resume applies

    done = [p for p in folder.glob("checkpoint-*") if is_complete_checkpoint(p)]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def code_version() -> str:
    """The commit the runner's checkout is at, `+local` when the code a training imports differs from it."""

    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    local = git("status", "--porcelain", "--untracked-files=no", "--", "train.py", "modeling_btsr", "data_processing")
    return commit + ("+local" if local else "")


def note_code_version(folder: Path) -> list[str]:
    """Appends this session's code version to the run's `code_versions.txt` (when it differs from the last one) and
    returns them all: a run resumed across sessions may have trained part of its epochs with other code (same
    settings, other float rounding, so not quite the numbers one uninterrupted run would give)."""
    path = folder / "code_versions.txt"
    versions, current = (path.read_text().split() if path.exists() else []), code_version()
    if not versions or versions[-1] != current:
        versions.append(current)
        path.write_text("\n".join(versions) + "\n")
    return versions


def validation_curve(folder: Path) -> list[float]:
    """Validation NDCG@10 after each epoch (a resumed run's earlier sessions included), from the last checkpoint's
    log history: shows whether a run was still improving when its cap or patience stopped it."""
    checkpoint = last_complete_checkpoint(folder)
    if checkpoint is None:
        return []
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    by_epoch = {round(h["epoch"]): round(h["eval_ndcg@10"], 5) for h in history if "eval_ndcg@10" in h}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def execute(run: dict, deadline: float, threads: int | None = None) -> bool:
    """Runs (or resumes) one run until it finishes or the deadline passes. False when the deadline stopped it
    (the caller stops too); True otherwise: finished here, already recorded, or being trained by another runner."""
    folder = WORK / run_id(run)
    with exclusive(folder / "runner.lock", wait=False) as mine:
        if not mine:
            print(f"  skipped: another runner is training {run_id(run)}", flush=True)
            return True
        # Checked again under the lock: another runner may have finished and recorded it since this one started.
        if any(record.get("run_id") == run_id(run) for record in load_records()):
            return True
        return _execute_locked(run, folder, deadline, threads)


def _execute_locked(run: dict, folder: Path, deadline: float, threads: int | None) -> bool:
    command = train_command(run, folder)
    checkpoint = last_complete_checkpoint(folder)
    if checkpoint is not None:
        command += ["--resume_from_checkpoint", str(checkpoint)]
        print(f"  resuming from {checkpoint.name}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    note_code_version(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if device_of(run) != "cpu":
        # One GPU per run: with several visible the Trainer would split each batch over them (DataParallel), and
        # the record's batch_size would no longer be the batch one GPU trained on.
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(folder / "train.log", "a") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            while process.poll() is None:
                if time.time() > deadline:
                    print("  time budget reached: stopped; the next invocation resumes it", flush=True)
                    return False
                time.sleep(2)
        finally:
            # Whatever ends the wait (the budget, a signal, Ctrl-C), the training stops with it: left running, it
            # would keep writing checkpoints into a folder whose lock is released, beside the next runner's run.
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    if process.returncode != 0:
        raise SystemExit(f"run {run_id(run)} failed (exit {process.returncode}); see {folder / 'train.log'}")
    results = json.loads((folder / "all_results.json").read_text())
    per_user = json.loads((folder / "eval" / "test_per_user.json").read_text())
    record = {
        **run,
        "run_id": run_id(run),
        "epochs": results.get("epochs"),
        "best_epoch": results.get("best_epoch"),
        "train_seconds": results.get("train_seconds"),
        "resumed_from_epoch": results.get("resumed_from_epoch", 0.0),
        "machine": machine(device_of(run)),
        "threads": threads,
        "command": " ".join(command[1:]),
        "code_versions": note_code_version(folder),
        **{k: v for k, v in results.items() if k.startswith(("eval_", "test_"))},
        "test_per_user": compact_per_user(per_user),
        "curve_eval_ndcg@10": validation_curve(folder),
    }
    append_record(record)
    return True


def machine(device: str = "cpu") -> str:
    host = f"{cpu_model()}, {os.cpu_count()} cores"
    if device == "cpu":
        return host
    # nvidia-smi, not torch: a runner that initialised CUDA would hold a GPU context for the whole session.
    try:
        name = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            )
            .stdout.strip()
            .split("\n")[0]
        )
    except (OSError, subprocess.TimeoutExpired):
        name = ""
    return f"{name or 'GPU (nvidia-smi gave no name)'} (torch {importlib.metadata.version('torch')}), {host}"


def caps_text() -> str:
    """The epoch cap and early-stopping patience of every dataset's runs (also stored in each record)."""
    lines = ["epoch caps (every run of a dataset; also in each record as max_epochs / patience):"]
    for (dataset, protocol), base in DATASETS.items():
        lines.append(
            f"  {dataset} {protocol}: at most {base['epochs']} epochs, stopped after {base['patience']} "
            "epochs without a better validation NDCG@10"
        )
    return "\n".join(lines)


def stop_on_termination() -> None:
    """A SIGTERM or SIGHUP (`kill`, a closed terminal, a session's end) raises SystemExit, so the runner's
    cleanup runs and stops its training, instead of the runner vanishing and leaving the training orphaned."""

    def leave(signum: int, frame) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)


def main() -> int:
    stop_on_termination()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=caps_text()
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        default=["main"],
        choices=GRIDS,
        help="one or more grids, run in that order (a run in several is run once)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time_budget_min", type=float, default=60.0, help="stop (resumably) after this long")
    parser.add_argument("--list", action="store_true", help="show the grid and what is recorded, run nothing")
    parser.add_argument("--only", default=None, help="run only the runs whose id contains this text (e.g. ml-100k)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each training (default: all)")
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="cuda: train on the GPU; recorded as separate runs (own ids, own table rows)",
    )
    parser.add_argument(
        "--command",
        metavar="RUN_ID|FOLDER",
        default=None,
        help="print the train.py command that reruns this run (a record's run_id, or a run folder "
        "or its run_settings.json), run nothing",
    )
    args = parser.parse_args()
    if args.command is not None:
        settings_file = Path(args.command) / "run_settings.json" if Path(args.command).is_dir() else Path(args.command)
        if settings_file.name == "run_settings.json" and settings_file.is_file():  # a run folder of any train.py run
            from modeling_btsr.arguments import settings_command

            print(settings_command(json.loads(settings_file.read_text())))
            return 0
        try:
            print(rerun_command(args.command, sorted({*range(5), *args.seeds})))
        except ValueError as error:
            raise SystemExit(f"reproduce.py: {error}") from None
        return 0
    runs = on_device(grids(args.grid, args.seeds), args.device)
    runs = [run for run in runs if args.only is None or args.only in run_id(run)]
    recorded = {r["run_id"] for r in load_records()}
    if args.list:
        for run in runs:
            print(
                ("done    " if run_id(run) in recorded else "pending ")
                + run_id(run)
                + f"  (cap {run['max_epochs']} epochs, patience {run['patience']})"
            )
        return 0
    deadline = time.time() + args.time_budget_min * 60
    for run in runs:
        if run_id(run) in recorded:
            continue
        file = dataset_file(run["dataset"])
        if file is not None and not (SHARED / file).exists():
            print(f"skipped {run_id(run)}: {SHARED / file} not found (not shipped: licence)")
            continue
        print(f"running {run_id(run)} (cap {run['max_epochs']} epochs, patience {run['patience']})", flush=True)
        if not execute(run, deadline, args.threads):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
