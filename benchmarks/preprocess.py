#!/usr/bin/env python
"""Times preprocessing: read -> filter -> split -> training sequences -> partner index.

    .venv/bin/python benchmarks/preprocess.py            # ML-1M, writes benchmarks/results/preprocess.json
    # a curve on synthetic Zipf logs (CSV), one fresh subprocess per size and repeat, minimum over the repeats:
    .venv/bin/python benchmarks/preprocess.py --synthetic 1e6 5e6 --repeats 2
    # before against after, interleaved on the same files (CODE is LABEL=CHECKOUT; a worktree of the old commit):
    git worktree add /tmp/pre_before HEAD
    .venv/bin/python benchmarks/preprocess.py --synthetic 1e6 5e6 --code before=/tmp/pre_before --code after=.

ML-1M target (data pipeline issue): under 10 s on the 2-core reference machine. The import of the packages is timed
separately, since it is paid once per process whatever the data.

Synthetic curve (issue 22): each size is a seeded log of ``rows`` interactions, users and items drawn from Zipf laws
(``rows // 20`` users with exponent 0.8, ``rows // 50`` items with exponent 1.0, raw ids shuffled), unix-second
timestamps, rows in time order as a logging system writes them, saved as a ``user_id,item_id,timestamp`` CSV in a
temporary folder. The child process runs ``modeling_btsr.training_run.prepare_data`` on it (leave-one-out, no
filter, ``max_len`` 200, a fresh partner-index cache), the path a training run takes, with each pipeline call
wrapped in a timer; ``stats_s`` is what ``prepare_data`` does itself after them. Peak RSS is the child's
``ru_maxrss`` (``os.wait4``), the imports (torch, transformers) included; ``import_rss_mb`` is that part. The curve
goes to ``synthetic_curve`` in the same json (entries of other labels and sizes are kept), the ML-1M keys stay.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import RESULTS, cpu_model, write_result

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("read_s", "filter_s", "split_s", "sequences_and_partner_index_s", "stats_s")
# The ML-1M measurement's keys, kept when the synthetic mode rewrites the file (and the reverse).
SYNTHETIC_KEYS = ("synthetic_curve", "synthetic_log", "synthetic_labels", "machine_busy", "machine_busy_with")


def existing_result() -> dict:
    path = RESULTS / "preprocess.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", nargs="+", type=float, metavar="ROWS", help="sizes of the synthetic curve")
    parser.add_argument("--repeats", type=int, default=2, help="fresh subprocesses per size and code (minimum kept)")
    parser.add_argument(
        "--code", action="append", metavar="LABEL=CHECKOUT", help="checkouts to time, interleaved (default: after=.)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic logs")
    parser.add_argument("--busy", default=None, help="what else runs on the machine (recorded with machine_busy)")
    parser.add_argument("--timeout_s", type=float, default=1800, help="a child running longer is killed, recorded")
    parser.add_argument("--child", nargs=2, metavar=("CSV", "CACHE"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=3, metavar=("CSV", "ROWS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    if args.generate:
        write_synthetic_csv(Path(args.generate[0]), int(args.generate[1]), int(args.generate[2]))
        return 0
    if args.synthetic:
        return synthetic_curve(args)
    return ml1m()


def ml1m() -> int:
    started = time.perf_counter()
    from data_processing import build_train_dataset, leave_one_out_split, read_interactions

    imported = time.perf_counter()
    from data_processing.readers import known_dataset_path

    ML1M = known_dataset_path("ml-1m")
    if not ML1M.exists():
        print(f"skipped: {ML1M} not found (not shipped (licence): set BTSR_DATA_ROOT)")
        return 0
    frame = read_interactions(ML1M, "sasrec")
    read = time.perf_counter()
    split = leave_one_out_split(frame, max_len=200, source=str(ML1M))
    split_done = time.perf_counter()
    examples = build_train_dataset(split.train_sequences, max_len=200)
    built = time.perf_counter()
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "command": "python benchmarks/preprocess.py",
        "import_s": round(imported - started, 3),
        "read_s": round(read - imported, 3),
        "split_s": round(split_done - read, 3),
        "sequences_and_partner_index_s": round(built - split_done, 3),
        "preprocess_total_s": round(built - imported, 3),
        "rows": len(frame),
        "num_items": len(split.item_vocab),
        "num_train_sequences": len(examples),
        "partner_share": round(float(examples.partner_share), 4),
        "target_s": 10.0,
    }
    kept = {key: value for key, value in existing_result().items() if key in SYNTHETIC_KEYS}
    write_result("preprocess", {**result, **kept})
    return 0


# --------------------------------------------------------------------------------------------------------------------
# Synthetic curve
# --------------------------------------------------------------------------------------------------------------------


def zipf_codes(rng, n: int, k: int, exponent: float):
    """``n`` draws from ``1..k`` with P(rank r) proportional to r**-exponent, the ranks given shuffled raw ids."""
    import numpy as np

    cdf = np.cumsum(np.arange(1, k + 1, dtype=np.float64) ** -exponent)
    rank = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return (rng.permutation(k) + 1)[np.minimum(rank, k - 1)]


def write_synthetic_csv(path: Path, rows: int, seed: int) -> None:
    """The seeded log of the module docstring, formatted by Arrow in chunks (pandas' to_csv is minutes at 50M)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    users = zipf_codes(rng, rows, max(rows // 20, 10), 0.8)
    items = zipf_codes(rng, rows, max(rows // 50, 10), 1.0)
    times = np.sort(1_600_000_000 + rng.integers(0, 100_000_000, rows))
    with open(path, "wb") as out:
        out.write(b"user_id,item_id,timestamp\n")
        for start in range(0, rows, 2_000_000):
            part = slice(start, start + 2_000_000)
            columns = [pa.array(c[part]).cast(pa.string()) for c in (users, items, times)]
            lines = pc.binary_join_element_wise(*columns, ",")
            lines = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")  # "u,i,t" + "\n" + ""
            offsets, data = lines.buffers()[1], lines.buffers()[2]
            end = np.frombuffer(offsets, dtype=np.int32)[len(lines)]
            out.write(memoryview(data)[:end])


def git_state(checkout: Path) -> dict:
    def git(*command):  # not stripped: porcelain lines start with a status column that may be a space
        return subprocess.run(["git", "-C", str(checkout), *command], capture_output=True, text=True).stdout.rstrip()

    changed = git("status", "--porcelain", "--", "data_processing", "benchmarks/preprocess.py").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": [line[3:] for line in changed]}


def run_child(checkout: Path, csv: Path, timeout_s: float) -> dict:
    """One fresh interpreter on ``checkout``'s code; its stage times, and its peak RSS from ``wait4``."""
    cache = Path(tempfile.mkdtemp(prefix="btsr_preprocess_cache_"))
    env = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    script = Path(__file__).resolve()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [sys.executable, str(script), "--child", str(csv), str(cache)], cwd=checkout, env=env, stdout=out
        )
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = out.read().decode().splitlines()
    shutil.rmtree(cache, ignore_errors=True)
    record = json.loads(lines[-1]) if process.returncode == 0 and lines else {"failed": process.returncode}
    record["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports kilobytes
    record["wall_s"] = round(time.perf_counter() - started, 3)
    record["load_average_1min"] = round(os.getloadavg()[0], 2)
    return record


def child(csv: str, cache: str) -> int:
    import resource

    def rss_mb() -> float:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    started = time.perf_counter()
    import data_processing
    from modeling_btsr import training_run
    from modeling_btsr.arguments import DataArguments

    imported = time.perf_counter()
    timings, peaks = {}, {"import_rss_mb": rss_mb()}

    def timed(stage: str, function):
        def wrapper(*a, **k):
            begin = time.perf_counter()
            result = function(*a, **k)
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - begin
            peaks[stage.replace("_s", "_rss_mb")] = rss_mb()
            return result

        return wrapper

    for stage, name in zip(STAGES, ("read_interactions", "filter_interactions", "split_interactions")):
        setattr(training_run, name, timed(stage, getattr(training_run, name)))
    training_run.build_train_dataset = timed(STAGES[3], training_run.build_train_dataset)
    begin = time.perf_counter()
    data = training_run.prepare_data(DataArguments(data_path=csv, data_format="csv"), max_len=200, cache_dir=cache)
    total = time.perf_counter() - begin
    timings["stats_s"] = total - sum(timings.values())
    record = {
        "import_s": round(imported - started, 3),
        **{stage: round(timings[stage], 3) for stage in STAGES},
        "total_s": round(total, 3),
        **peaks,
        "rows": data.split.stats["num_input_rows"],
        "users": data.split.stats["num_input_users"],
        "items": len(data.split.item_vocab),
        "train_examples": len(data.examples),
        "partner_share": round(float(data.examples.partner_share), 4),
        "code": str(Path(data_processing.__file__).resolve().parent.parent),
    }
    print(json.dumps(record))
    return 0


def synthetic_curve(args) -> int:
    codes = {}
    for spec in args.code or ["after=."]:
        label, _, checkout = spec.partition("=")
        checkout = Path(checkout or ".").resolve()
        if not (checkout / "data_processing" / "__init__.py").exists():
            print(f"error: --code {spec}: no data_processing package in {checkout}", file=sys.stderr)
            return 2
        codes[label] = checkout
    command = "python benchmarks/preprocess.py " + shlex.join(sys.argv[1:])
    entries = []
    folder = Path(tempfile.mkdtemp(prefix="btsr_preprocess_synthetic_"))
    try:
        for size in args.synthetic:
            rows = int(size)
            csv = folder / f"zipf_{rows}_seed{args.seed}.csv"
            # In a subprocess: a child's ru_maxrss starts from its parent's RSS at the fork, so the parent stays small.
            generate = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--generate",
                str(csv),
                str(rows),
                str(args.seed),
            ]
            subprocess.run(generate, check=True)
            runs = {label: [] for label in codes}
            states = {label: git_state(checkout) for label, checkout in codes.items()}  # the code as it is timed
            for repeat in range(args.repeats):
                for label, checkout in codes.items():  # interleaved, so that a busy spell hits both alike
                    record = run_child(checkout, csv, args.timeout_s)
                    runs[label].append(record)
                    print(f"{rows:>11,} {label:>8} #{repeat}: {json.dumps(record)}", flush=True)
            for label in codes:
                done = [r for r in runs[label] if "failed" not in r]
                best = {
                    key: min(r[key] for r in done)
                    for key in ("import_s", *STAGES, "total_s", "peak_rss_mb", "import_rss_mb")
                    if done
                }
                entries.append(
                    {
                        "label": label,
                        **states[label],
                        "rows": rows,
                        "file_mb": round(csv.stat().st_size / 2**20, 1),
                        "format": "csv",
                        "min_over_repeats": best,
                        "total_us_per_interaction": round(best["total_s"] / rows * 1e6, 3) if done else None,
                        "runs": runs[label],
                        "command": command,
                    }
                )
            csv.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    result = existing_result()
    replaced = {(e["label"], e["rows"]) for e in entries}
    kept = [e for e in result.get("synthetic_curve", []) if (e["label"], e["rows"]) not in replaced]
    result["synthetic_curve"] = sorted(kept + entries, key=lambda e: (e["rows"], e["label"]))
    result["synthetic_log"] = {
        "generator": "write_synthetic_csv in benchmarks/preprocess.py (module docstring)",
        "seed": args.seed,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    if args.busy:
        result["machine_busy"] = True
        result["machine_busy_with"] = args.busy
    write_result("preprocess", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
