#!/usr/bin/env python
"""Tables and plots from benchmarks/results/accuracy.json (written by benchmarks/reproduce.py).

    .venv/bin/python benchmarks/report.py      # writes benchmarks/results/accuracy.md (+ alpha_sweep_*.png)

Means over seeds per setting; each method (BT-SR, CL4SRec, DuoRec) against SASRec with the same loss, dropout and
batch: per-seed paired differences and a per-user paired bootstrap 95% interval of the difference in NDCG@10 and
HR@10 (users matched by position: both runs evaluate the same users in the same order), also pooled over seeds.
The sign is reported whichever way it goes.
"""

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modeling_btsr.metrics import paired_bootstrap_ci  # noqa: E402
from reproduce import computed_on as device  # noqa: E402  (the one rule for records without `device` / grouping)
from reproduce import eval_exclusion, per_user_metric  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# The batch of each dataset's main runs (benchmarks/reproduce.py DATASETS); the alpha plots use these alone.
DEFAULT_BATCH = {"ml-1m": 256, "lastfm": 256, "beauty": 1024, "sports": 1024, "ml-100k": 128, "ml-latest-small": 128}
METRICS = ("test_hr@10", "test_ndcg@10", "test_coverage@10", "test_hr@10_tail", "eval_ndcg@10")


def setting(record: dict) -> tuple:
    return (
        record["dataset"],
        record["protocol"],
        record["model"],
        record["loss_type"],
        record["bt_alpha"],
        record["dropout"],
        record["batch_size"],
        device(record),
    )


def budgeted_setting(record: dict, records: list[dict]) -> tuple:
    """`setting` with the model labelled by its epoch budget (`max epochs/patience`) where the budget is not its
    dataset and protocol's usual one (the most frequent among the records), e.g. the authors' CE budget: so a run
    under another budget is a row of its own, not averaged with the others."""
    usual = Counter(
        budget_of(r) for r in records if (r["dataset"], r["protocol"]) == (record["dataset"], record["protocol"])
    ).most_common(1)[0][0]
    key = setting(record)
    if budget_of(record) == usual:
        return key
    return key[:2] + (f"{key[2]} ({budget_of(record)})",) + key[3:]


def budget_of(record: dict) -> str:
    return f"{record.get('max_epochs')}/{record.get('patience')}"


# One record per seed where a seed ran on both: the GPU's, then grouped attention's (rules fixed before any result
# of theirs, see `pooled_by_seed`).
DEVICE_PREFERENCE = ("cuda grouped", "cuda", "cpu grouped", "cpu")


def pooled_key(record: dict) -> tuple:
    """A record's setting without the device, but with its seen-item exclusion: the two protocols never pool."""
    return setting(record)[:-1] + (eval_exclusion(record),)


def pooled_by_seed(records: list[dict]) -> dict[tuple, dict[int, dict]]:
    """Records per setting without the device, one per seed (`DEVICE_PREFERENCE` decides a seed run on both).

    GPU and CPU runs are both fp32 from the same initial weights; the device changes kernels and dropout streams, so
    it moves a run as another seed does (ML-1M seed 0 ran on both: the main table shows by how much)."""
    pooled = defaultdict(dict)
    for record in sorted(records, key=lambda r: DEVICE_PREFERENCE.index(hardware(r)), reverse=True):
        pooled[pooled_key(record)][record["seed"]] = record  # the preferred device is written last and stays
    return pooled


def hardware(record: dict) -> str:
    """The device and attention layout alone (`computed_on` without the exclusion mark)."""
    return device(record).removesuffix(" window-excl")


def fmt(value) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"


def seconds_per_epoch(record: dict) -> float:
    """Training seconds over the epochs they cover (evaluation every epoch included): a resumed run's
    `train_seconds` are its last session's, which began at `resumed_from_epoch`. Depends on the machine's load."""
    epochs = (record.get("epochs") or 0) - (record.get("resumed_from_epoch") or 0)
    return record["train_seconds"] / epochs if epochs > 0 else float("nan")


def baseline_of(record: dict, records: list[dict]) -> dict | None:
    """The baseline run a method is compared with (SASRec, or BERT4Rec for BT-SR on its backbone): same dataset,
    protocol, prediction loss, dropout, batch, seed and device, SSL weight 0."""
    for other in records:
        if is_sasrec_twin(other, record, ("dataset", "protocol", "loss_type", "dropout", "batch_size", "seed")):
            return other
    return None


def backbone_of(model: str) -> str:
    """The baseline family a model name belongs to: BERT4Rec's runs are compared with BERT4Rec, the rest with SASRec."""
    return "bert4rec" if model.startswith("bert4rec") else "sasrec"


def is_baseline(model: str) -> bool:
    return model.startswith("sasrec") or model == "bert4rec"


def is_sasrec_twin(other: dict, record: dict, same: tuple[str, ...]) -> bool:
    """Whether `other` is the baseline run of `record`'s backbone (SASRec, or BERT4Rec for a bert4rec-* model; SSL
    weight 0) on `record`'s device that agrees with it on the `same` keys."""
    return (
        is_baseline(other["model"])
        and backbone_of(other["model"]) == backbone_of(record["model"])
        and other["bt_alpha"] == 0
        and device(other) == device(record)
        and all(other[k] == record[k] for k in same)
    )


def difference_cells(method_runs: list[dict], base_runs: list[dict]) -> list[str]:
    """Mean difference and paired bootstrap 95% interval over users, of NDCG@10 and HR@10; several seeds: each
    user's metric averaged over the seeds first (users resampled, seeds kept)."""
    cells = []
    for metric in ("ndcg@10", "hr@10"):
        a = np.mean([per_user_metric(r["test_per_user"], metric) for r in method_runs], axis=0)
        b = np.mean([per_user_metric(r["test_per_user"], metric) for r in base_runs], axis=0)
        ci = paired_bootstrap_ci(a, b, seed=0)
        cells += [f"{ci.mean:+.4f}", f"[{ci.low:+.4f}, {ci.high:+.4f}]"]
    coverage = np.mean([r["test_coverage@10"] for r in method_runs]) - np.mean(
        [r["test_coverage@10"] for r in base_runs]
    )
    return cells + [f"{coverage:+.4f}"]


def main() -> int:
    records = json.loads((RESULTS / "accuracy.json").read_text()) if (RESULTS / "accuracy.json").exists() else []
    lines = [
        "# Accuracy (full ranking)",
        "",
        "Generated by `.venv/bin/python benchmarks/report.py` from "
        "`benchmarks/results/accuracy.json` (runs by `benchmarks/reproduce.py`; each record holds its command).",
        "",
        f"Records: {len(records)}. `s/epoch` = training seconds / epochs they cover, evaluation included "
        "(a resumed run: its last session's seconds over the epochs since `resumed_from_epoch`); runs "
        "shared their machine with other jobs (CPU runs: the 2 cores, record field `threads`; GPU runs, device "
        "`cuda`: 16 trainings at once on one H200 and 16 cores, `benchmarks/gpu_session.sh grid`), so compare "
        "times with `benchmarks/results/performance.md` (objectives and gpu sections), not across rows here.",
        "",
        "`device`: `cpu` or `cuda`; `grouped`: attention per group of rows of similar length "
        "(`--length_grouped_attention`, train.py's default since it came; the same model, dropout drawn in other "
        "shapes, so another run as another device is). Records without it ran on one grid: their recorded "
        "commands predate the flag, so rerun them with `--length_grouped_attention False`. "
        "`.venv/bin/python benchmarks/reproduce.py --command RUN_ID` prints the command that reruns any record "
        "(`run_id` in accuracy.json), that flag included.",
        "",
        "`window-excl` in the device column: a record measured before the evaluation excluded a user's whole "
        "history (`eval_exclusion: window`: only the last max_len items were excluded, so older seen items "
        "stayed rankable; benchmarks/results/exclusion_fix.md). Such records are never pooled or paired with "
        "runs that exclude the whole history.",
        "",
    ]
    groups = defaultdict(list)
    for record in records:
        groups[budgeted_setting(record, records)].append(record)
    lines += [
        "| dataset | protocol | model | loss | alpha | dropout | batch | device | seeds | users | "
        + " | ".join(METRICS)
        + " | best epoch | s/epoch |",
        "|" + "---|" * (12 + len(METRICS)),
    ]
    for key in sorted(groups):
        runs = groups[key]
        means = [np.nanmean([r.get(m, np.nan) for r in runs]) for m in METRICS]
        users = runs[0].get("test_num_users")
        lines.append(
            "| "
            + " | ".join(str(k) for k in key)
            + f" | {len(runs)} | {users:.0f} | "
            + " | ".join(fmt(v) for v in means)
            + f" | {np.mean([r.get('best_epoch') or 0 for r in runs]):.1f} | "
            f"{np.mean([seconds_per_epoch(r) for r in runs]):.1f} |"
        )
    lines += [
        "",
        "## Each method minus SASRec (bert4rec-bt minus BERT4Rec; same dataset, protocol, loss, dropout, batch and "
        "device; paired by seed)",
        "",
        "Per seed, then pooled over the seeds both have (`all`: per-user metrics averaged over those seeds, "
        "users resampled). The sign is reported whichever way it goes.",
        "",
        "| dataset | protocol | model | loss | alpha | batch | device | seed | ΔNDCG@10 | 95% CI | ΔHR@10 | "
        "95% CI | ΔCoverage@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pooled = defaultdict(list)
    for record in sorted(
        records,
        key=lambda r: (r["dataset"], r["protocol"], r["model"], r["bt_alpha"], r["batch_size"], device(r), r["seed"]),
    ):
        if record["bt_alpha"] == 0:
            continue
        base = baseline_of(record, records)
        if base is None:
            continue
        pooled[setting(record)].append((record, base))
        lines.append(
            f"| {record['dataset']} | {record['protocol']} | {record['model']} | {record['loss_type']} | "
            f"{record['bt_alpha']} | {record['batch_size']} | {device(record)} | {record['seed']} | "
            + " | ".join(difference_cells([record], [base]))
            + " |"
        )
    for key, pairs in sorted(pooled.items()):
        if len(pairs) > 1:
            dataset, protocol, model, loss, alpha, _, batch, on = key
            cells = difference_cells([m for m, _ in pairs], [b for _, b in pairs])
            lines.append(
                f"| {dataset} | {protocol} | {model} | {loss} | {alpha} | {batch} | {on} | "
                f"all ({len(pairs)}) | " + " | ".join(cells) + " |"
            )
    lines += _other_dropout_section(records)
    lines += _pooled_section(records)
    (RESULTS / "accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _alpha_plots(records)
    _sweep_files(records)
    return 0


def _other_dropout_section(records: list[dict]) -> list[str]:
    """BT-SR minus SASRec trained at another dropout (ML-1M: the authors' baseline setting, dropout 0.3), and under
    another epoch budget (the authors' CE config: at most 50 epochs, patience 10), paired by seed and device as
    above: the authors' framing beside the equal-budget one, with its own differences."""
    same = ("dataset", "protocol", "loss_type", "batch_size", "seed")
    pairs = defaultdict(list)
    for record in (r for r in records if r["model"] == "bt-sr"):
        for other in records:
            if is_sasrec_twin(other, record, same) and other["dropout"] != record["dropout"]:
                budget = f"{other['max_epochs']} / {other['patience']}"
                pairs[setting(record), other["dropout"], budget].append((record, other))
    rows = []
    for (key, base_dropout, budget), found in sorted(pairs.items()):
        found.sort(key=lambda pair: pair[0]["seed"])
        groups = [(str(method["seed"]), [(method, base)]) for method, base in found]
        if len(found) > 1:
            groups.append((f"all ({len(found)})", found))
        dataset, protocol, model, loss, alpha, dropout, batch, on = key
        for seed, chosen in groups:
            cells = difference_cells([method for method, _ in chosen], [base for _, base in chosen])
            rows.append(
                f"| {dataset} | {protocol} | {model} | {loss} | {alpha} | {dropout} | {base_dropout} | {budget} | "
                f"{batch} | {on} | {seed} | " + " | ".join(cells) + " |"
            )
    if not rows:
        return []
    return [
        "",
        "## BT-SR minus SASRec at another dropout and budget (the authors' baseline settings)",
        "",
        "Same dataset, protocol, loss, batch, device and seed as above; SASRec trained at `base dropout` with at most",
        "`base epochs / patience` (the authors' CE config: dropout 0.3, 50 / 10; BT-SR keeps 200 / 30).",
        "",
        "| dataset | protocol | model | loss | alpha | dropout | base dropout | base epochs / patience | batch | "
        "device | seed | ΔNDCG@10 | 95% CI | ΔHR@10 | 95% CI | ΔCoverage@10 |",
        "|" + "---|" * 16,
    ] + rows


def _pooled_section(records: list[dict]) -> list[str]:
    """Settings whose seeds are complete only across devices: their means and differences from SASRec over the
    pooled seeds (SASRec pooled by the same rule, over the same seeds)."""
    pooled = pooled_by_seed(records)
    rows = []
    for key, by_seed in sorted(pooled.items()):
        per_device = [
            {r["seed"] for r in records if pooled_key(r) == key and hardware(r) == on} for on in DEVICE_PREFERENCE
        ]
        if len(by_seed) <= max(len(seeds) for seeds in per_device):
            continue  # one device already holds every seed: nothing to pool
        runs = [by_seed[seed] for seed in sorted(by_seed)]
        seeds = ", ".join(f"{r['seed']} {device(r)}" for r in runs)
        cells = [fmt(np.nanmean([r.get(m, np.nan) for r in runs])) for m in METRICS]
        dataset, protocol, model, loss, alpha, dropout, batch, exclusion = key
        base_seeds = next(
            (
                v
                for k, v in pooled.items()
                if is_baseline(k[2])
                and backbone_of(k[2]) == backbone_of(model)
                and k[4] == 0
                and (k[0], k[1], k[3], k[5], k[6], k[7]) == (dataset, protocol, loss, dropout, batch, exclusion)
            ),
            {},
        )
        if alpha > 0 and all(seed in base_seeds for seed in by_seed):
            cells += difference_cells(runs, [base_seeds[seed] for seed in sorted(by_seed)])
        else:
            cells += ["—"] * 5
        rows.append(
            f"| {dataset} | {protocol} | {model} | {loss} | {alpha} | {dropout} | {batch} | {seeds} | "
            + " | ".join(cells)
            + " |"
        )
    if not rows:
        return []
    return [
        "",
        "## Seeds pooled across devices",
        "",
        "Settings whose seeds are complete only over both machines (a GPU session ran some seeds, the CPU the "
        "rest). One record per seed: the GPU's where a seed ran on both, a rule fixed before any result "
        "(and a grouped-attention run before a one-grid run of the same seed, fixed before any grouped run). Both "
        "are fp32 from the same initial weights; the device changes kernels and dropout streams, so it moves a "
        "run as another seed does (ML-1M seed 0 of SASRec-CE and BT-SR ran on both: compare their rows above). "
        "Differences: against SASRec pooled by the same rule over the same seeds, per-user paired bootstrap.",
        "",
        "| dataset | protocol | model | loss | alpha | dropout | batch | seeds (device) | "
        + " | ".join(METRICS)
        + " | ΔNDCG@10 | 95% CI | ΔHR@10 | 95% CI | ΔCoverage@10 |",
        "|" + "---|" * (13 + len(METRICS)),
    ] + rows


def _alpha_plots(records: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e .[bench]): plots skipped")
        return
    for dataset in sorted({r["dataset"] for r in records}):
        lines = _sweep_lines(records, dataset)
        if len({a for alphas, _ in lines.values() for a in alphas}) < 3:
            continue
        fig, axes = plt.subplots(1, 4, figsize=(14, 3))
        for axis, metric in zip(axes, ("test_hr@10", "test_ndcg@10", "test_coverage@10", "test_hr@10_tail")):
            for (on, protocol, seeds), (alphas, runs) in lines.items():
                # CPU and GPU runs are not averaged together: one line per device, each over its own seeds.
                axis.plot(
                    alphas,
                    [np.mean([r[metric] for r in runs if r["bt_alpha"] == a]) for a in alphas],
                    "o-",
                    label=f"{on}, {protocol}, seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}",
                )
            axis.set_xlabel("alpha")
            axis.set_title(metric)
        axes[0].legend(fontsize="small")
        fig.suptitle(f"{dataset}: accuracy and coverage against alpha")
        fig.tight_layout()
        fig.savefig(RESULTS / f"alpha_sweep_{dataset}.png", dpi=100, metadata={"Software": None})  # same bytes anywhere
        plt.close(fig)


def _sweep_files(records: list[dict]) -> None:
    """`alpha_sweep_<dataset>.json`: each dataset's longest sweep line (of the protocols that train on every user,
    while it has one) as a model card takes it
    (`python -m model_cards.hub FOLDER REPO --sweep FILE`): per alpha the means over the line's seeds."""
    for dataset in sorted({r["dataset"] for r in records}):
        lines = _sweep_lines(records, dataset)
        if not lines:
            continue
        # The card's model is trained on all users, so a held-out-users line is its file only when it has no other.
        (on, _, seeds), (alphas, runs) = max(
            lines.items(), key=lambda item: (item[0][1] != "user_holdout", len(item[1][0]), len(item[0][2]))
        )
        points = []
        for a in alphas:
            chosen = [r for r in runs if r["bt_alpha"] == a]
            point = {"alpha": a, "seeds": len(chosen)}
            point.update(
                {m: float(np.mean([r[f"test_{m}"] for r in chosen])) for m in ("hr@10", "ndcg@10", "coverage@10")}
            )
            points.append(point)
        rule = eval_exclusion(runs[0])
        note = (
            f"{dataset}, {runs[0]['protocol']}, computed on {on}, seed{'s' * (len(seeds) > 1)} "
            f"{', '.join(map(str, seeds))}; seen items excluded: "
            + ("the whole history." if rule == "history" else "only the last max_len items (before the exclusion fix).")
        )
        (RESULTS / f"alpha_sweep_{dataset}.json").write_text(
            json.dumps({"points": points, "note": note, "command": "python benchmarks/report.py"}, indent=1) + "\n"
        )


def _sweep_lines(records: list[dict], dataset: str) -> dict[tuple[str, str, tuple[int, ...]], tuple[list[float], list]]:
    """The alpha sweeps of one dataset, one line per device and protocol: `{(device, protocol, seeds): (alphas,
    runs)}`.

    A line holds SASRec-CE (alpha 0) and BT-SR-CE at the default dropout and batch, over the seeds run at every one
    of its alphas (a point averaged over 3 seeds beside one of a single seed is no sweep), and needs 2 alphas; runs
    of two protocols (users held out or not) never share a line."""
    lines = {}
    for on, protocol in sorted({(device(r), r["protocol"]) for r in records if r["dataset"] == dataset}):
        runs = [
            r
            for r in records
            if r["dataset"] == dataset
            and device(r) == on
            and r["protocol"] == protocol
            and r["loss_type"] == "ce"
            and r["dropout"] == 0.1
            and r["model"] in ("sasrec-ce", "bt-sr")  # the contrastive baselines' alpha is another weight
            and r["batch_size"] == DEFAULT_BATCH.get(dataset, r["batch_size"])
        ]  # the batch_size grid aside
        alphas = sorted({r["bt_alpha"] for r in runs})
        seeds_per_alpha = [{r["seed"] for r in runs if r["bt_alpha"] == a} for a in alphas]
        seeds = set.intersection(*seeds_per_alpha) if alphas else set()
        if len(alphas) >= 2 and seeds:
            lines[on, protocol, tuple(sorted(seeds))] = alphas, [r for r in runs if r["seed"] in seeds]
    return lines


if __name__ == "__main__":
    sys.exit(main())
