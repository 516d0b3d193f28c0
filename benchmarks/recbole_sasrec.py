"""Training throughput of RecBole 1.2.1's SASRec on ML-1M (CPU), for comparison with ours.

Usage (from the repository root):

    .venv/bin/python benchmarks/recbole_sasrec.py [--max_batches 30] [--threads 2]

Prints the result as JSON and writes ``benchmarks/results/recbole_sasrec.json``; ``benchmarks/performance.py`` imports
``measure``. Reads ML-1M from ``$BTSR_DATA_ROOT`` (``--data`` to change) and skips with a message when it is
absent.

Why: RecBole's sequential datasets turn every prefix of a user's history into its own training sample (padded to
``MAX_ITEM_LIST_LENGTH``) and score only its next item, whereas our model scores every position of a sequence in one
encoder pass. On ML-1M at max length 200 each RecBole target costs a 200-position encoder pass (its mean real prefix
is 119 items), while ours labels ~107 positions per pass of at most 200: roughly 100x the encoder work per training
target. The unit of comparison is therefore training targets (next-item labels) per second, not batches per second.

How: RecBole never imports into our environment. This script builds its own virtualenv under
``benchmarks/work/recbole-venv`` (same Python as the caller, exact pins, CPU torch from the local wheel), patches the
few lines of RecBole 1.2.1 that numpy 2 and pandas 3 break, converts the ML-1M file into a RecBole atomic file and
re-runs itself with the venv's Python and ``--child`` to do the measurement. Only a capped number of training batches
is timed (after warm-up); a full epoch is extrapolated from that and marked as such.
"""

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
VENV = WORK / "recbole-venv"
DATA_DIR = WORK / "recbole-data"
RESULT = ROOT / "benchmarks" / "results" / "recbole_sasrec.json"
sys.path.insert(0, str(ROOT))
from data_processing.readers import known_dataset_path  # noqa: E402

DEFAULT_DATA = known_dataset_path("ml-1m")
DATASET = "ml1m"
WARMUP_BATCHES = 2

# torch first and alone: the pinned CPU wheel lies on local disk, and any unpinned torch requirement would pull a
# multi-GB CUDA build from PyPI. The rest are RecBole's requirements at the versions this script was run with.
TORCH_PIN = "torch==2.13.0"
RECBOLE_PINS = [
    "recbole==1.2.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "pandas==3.1.1",
    "scikit-learn==1.9.1",
    "tqdm==4.70.1",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "pyyaml==6.0.4",
    "tensorboard==2.21.0",
    "thop==0.1.1.post2209072238",
    "tabulate==0.10.0",
    "plotly==7.1.0",
    "texttable==1.7.2",
    "psutil==7.2.2",
    "ray==2.6.3",
]
REPORTED_PACKAGES = ("recbole", "torch", "numpy", "scipy", "pandas")

# (file under site-packages/recbole, exact old text, replacement, what it fixes). A replacement carries the marker
# "btsr-compat" so a second run recognises it as applied instead of failing on the missing old text.
PATCHES: list[tuple[str, str, str, str]] = [
    (
        "config/configurator.py",
        "        np.float = np.float_\n        np.complex = np.complex_\n",
        "        np.float = np.float64  # btsr-compat\n        np.complex = np.complex128\n",
        "config/configurator.py compatibility_settings: np.float_ and np.complex_ were removed in numpy 2.0; "
        "alias np.float/np.complex to np.float64/np.complex128",
    ),
    (
        "config/configurator.py",
        "        np.unicode = np.unicode_\n",
        "        np.unicode = np.str_  # btsr-compat\n",
        "config/configurator.py compatibility_settings: np.unicode_ was removed in numpy 2.0; alias np.unicode to "
        "np.str_",
    ),
    (
        "data/dataset/dataset.py",
        "                    feat[field].fillna(value=0, inplace=True)\n",
        "                    feat[field] = feat[field].fillna(value=0)  # btsr-compat\n",
        "data/dataset/dataset.py _fill_nan: under pandas 3 copy-on-write, feat[field].fillna(inplace=True) fills a "
        "copy and leaves the frame untouched; assign the filled column back (token fields)",
    ),
    (
        "data/dataset/dataset.py",
        "                    feat[field].fillna(value=feat[field].mean(), inplace=True)\n",
        "                    feat[field] = feat[field].fillna(value=feat[field].mean())  # btsr-compat\n",
        "data/dataset/dataset.py _fill_nan: the same copy-on-write fix for float fields",
    ),
]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run that turns a failure into a one-line error naming the step."""
    proc = subprocess.run(command, text=True, **kwargs)
    if proc.returncode != 0:
        last = (proc.stderr or "").strip().splitlines()[-1:] if kwargs.get("capture_output") else []
        raise RuntimeError(f"{what} failed (exit {proc.returncode}){': ' + last[0] if last else ''}")
    return proc


def venv_ready() -> bool:
    """True when the venv's Python runs and has exactly the pinned recbole and torch."""
    check = "import importlib.metadata as m; print(m.version('recbole'), m.version('torch'))"
    try:
        versions = subprocess.run([str(venv_python()), "-c", check], capture_output=True, text=True).stdout.split()
    except OSError:
        return False
    return versions[:1] == ["1.2.1"] and versions[1:2] == [TORCH_PIN.split("==")[1] + "+cpu"]


def ensure_venv() -> float:
    """Create and fill the venv unless it already works; returns the seconds spent installing (0 when reused)."""
    if venv_ready():
        return 0.0
    start = time.perf_counter()
    # --clear: a half-built or foreign-Python venv from an earlier attempt must not leak into this one.
    run([sys.executable, "-m", "venv", "--clear", str(VENV)], "creating the RecBole venv")
    pip = [str(venv_python()), "-m", "pip", "install", "--quiet"]
    run([*pip, TORCH_PIN], f"pip install {TORCH_PIN}")
    run([*pip, *RECBOLE_PINS], "pip install recbole==1.2.1 and its pinned dependencies")
    if not venv_ready():
        raise RuntimeError(f"RecBole venv at {VENV} does not import the pinned recbole/torch after installing")
    return time.perf_counter() - start


def apply_patches() -> list[str]:
    """Patch the installed RecBole in place (idempotent); returns a description of every fix in force."""
    where = "import importlib.util as u; print(u.find_spec('recbole').submodule_search_locations[0])"
    package = Path(run([str(venv_python()), "-c", where], "locating recbole", capture_output=True).stdout.strip())
    for rel, old, new, _ in PATCHES:
        path = package / rel
        text = path.read_text()
        if new in text:
            continue
        if text.count(old) != 1:
            raise RuntimeError(f"RecBole patch target not found exactly once in {path}: {old.strip()!r}")
        path.write_text(text.replace(old, new))
    return [description for *_, description in PATCHES]


def installed_versions() -> dict[str, str]:
    freeze = run([str(venv_python()), "-m", "pip", "freeze"], "pip freeze", capture_output=True).stdout
    pins = dict(line.split("==", 1) for line in freeze.splitlines() if "==" in line)
    return {name: pins[name] for name in REPORTED_PACKAGES}


def convert(data_file: Path) -> Path:
    """Write ``ml1m.inter``; the line number is the timestamp because the file lists each user's items in order."""
    target = DATA_DIR / DATASET / f"{DATASET}.inter"
    if target.exists() and target.stat().st_mtime >= data_file.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with gzip.open(data_file, "rt") as src, tmp.open("w") as dst:
        dst.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for position, line in enumerate(src):
            user, item = line.split()
            dst.write(f"{user}\t{item}\t{position}\n")
    tmp.replace(target)
    return target


def recbole_config() -> dict:
    return {
        "data_path": str(DATA_DIR),
        "checkpoint_dir": str(WORK / "recbole-saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",  # no k-core: keep the data exactly as ours sees it
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": 200,
        "hidden_size": 64,
        "inner_size": 64,
        "n_layers": 2,
        "n_heads": 1,
        "hidden_dropout_prob": 0.1,
        "attn_dropout_prob": 0.1,
        # ours: ReLU feed-forward, LayerNorm eps 1e-8 (RecBole defaults: GELU, 1e-12)
        "hidden_act": "relu",
        "layer_norm_eps": 1e-8,
        "loss_type": "CE",
        "train_batch_size": 256,
        "learner": "adam",
        "learning_rate": 1e-3,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "train_neg_sample_args": None,
        "gpu_id": "",
        "use_gpu": False,
        "device": "cpu",
        "worker": 0,
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "state": "WARNING",
    }


def child(max_batches: int, threads: int) -> dict:
    """Runs inside the RecBole venv: time RecBole's own per-batch training step on the real train dataloader."""
    import logging
    import resource

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_logger, init_seed

    sys.argv = sys.argv[:1]  # Config also reads --key=value from the command line; ours are not for it
    config = Config(model="SASRec", dataset=DATASET, config_dict=recbole_config())
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logging.getLogger().setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    # What Trainer._build_optimizer makes for learner "adam".
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    model.train()

    times: list[float] = []
    collate_times: list[float] = []
    targets: list[int] = []
    load_start = os.getloadavg()
    batches = iter(train_data)
    for _ in range(WARMUP_BATCHES + max_batches):
        start = time.perf_counter()
        try:
            interaction = next(batches)  # collation is part of the step, as in ours
        except StopIteration:
            break
        collate_times.append(time.perf_counter() - start)
        # The body of Trainer._train_epoch for one batch (no AMP, no gradient clipping, single process).
        interaction = interaction.to(config["device"])
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        if torch.isnan(loss):
            raise RuntimeError("RecBole SASRec training loss is nan")
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        targets.append(len(interaction))  # one target (the next item) per prefix row
    load_end = os.getloadavg()

    timed, timed_targets = times[WARMUP_BATCHES:], targets[WARMUP_BATCHES:]
    if not timed:
        raise RuntimeError(f"RecBole train dataloader yielded no batch after {WARMUP_BATCHES} warm-up batches")
    seconds = sum(timed)
    rate = sum(timed_targets) / seconds
    epoch_targets = len(train_data._dataset)
    return {
        "targets_per_s": round(rate, 1),
        "batches_timed": len(timed),
        "seconds_timed": round(seconds, 3),
        "targets_timed": sum(timed_targets),
        "seconds_per_batch": round(seconds / len(timed), 4),
        "seconds_collating": round(sum(collate_times[WARMUP_BATCHES:]), 3),
        "train_targets_per_epoch": epoch_targets,
        "extrapolated_epoch_s": round(epoch_targets / rate, 1),
        "extrapolated": True,
        "threads": torch.get_num_threads(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "num_items": int(train_data._dataset.item_num),
        "num_users": int(train_data._dataset.user_num),
        # Dominated by the materialised prefixes: 981k rows x 200 of item ids (and timestamps).
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def measure(data_file: Path, max_batches: int = 30, threads: int = 2) -> dict:
    """Set up the RecBole venv and data, then time RecBole's SASRec training in a subprocess; returns the result."""
    if not data_file.exists():
        raise FileNotFoundError(f"ML-1M data file not found: {data_file}")
    install_s = ensure_venv()
    fixes = apply_patches()
    convert(data_file)
    command = [
        str(venv_python()),
        str(Path(__file__).resolve()),
        "--child",
        "--max_batches",
        str(max_batches),
        "--threads",
        str(threads),
    ]
    # As in performance.py: on a shared 2-core machine spinning OpenMP threads made 2-thread training much slower
    # (here 4.6 vs 2.0 s per RecBole batch at load ~4), so both sides run with the passive policy.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    start = time.perf_counter()
    # cwd=WORK: RecBole writes ./log and friends relative to the working directory.
    proc = subprocess.run(command, cwd=WORK, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"the RecBole measurement failed (exit {proc.returncode}); its stderr is above")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "library": "RecBole",
        "model": "SASRec",
        **result,
        "child_wall_s": round(time.perf_counter() - start, 1),
        "install_s": round(install_s, 1),
        "versions": installed_versions(),
        "fixes": fixes,
        "command": f".venv/bin/python benchmarks/recbole_sasrec.py --max_batches {max_batches} --threads {threads}",
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "omp_wait_policy": env["OMP_WAIT_POLICY"],
        },
        "notes": (
            "RecBole's training step, driven by hand: the loop runs Trainer._train_epoch's per-batch body "
            "(zero_grad, model.calculate_loss, backward, Adam step) over RecBole's own train dataloader, timing "
            "collation + forward + backward + step per batch; "
            f"{WARMUP_BATCHES} warm-up batches are not timed. One target per row: RecBole trains on every prefix as a "
            "separate sample, so train_targets_per_epoch is the train dataset's length (all prefixes of every "
            "user's train part; ours labels only the last 200 train items per user). extrapolated_epoch_s = "
            "train_targets_per_epoch / targets_per_s. Leave-one-out split (LS valid_and_test, TO, by user), no "
            "filtering, max length 200, d 64, inner 64, 2 layers, 1 head, dropout 0.1, ReLU, full-softmax CE, "
            "batch 256 in RecBole's shuffled order, Adam lr 1e-3, seed 0. The RecBole venv's own pins and "
            "patches are listed under versions and fixes."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max_batches", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.max_batches, args.threads)))
        return
    if not args.data.exists():
        print(f"skipping the RecBole benchmark: ML-1M data file {args.data} not found")
        return
    try:
        result = measure(args.data, args.max_batches, args.threads)
    except RuntimeError as err:
        sys.exit(f"recbole_sasrec: {err}")
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
