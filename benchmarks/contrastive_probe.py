#!/usr/bin/env python
"""Why do the InfoNCE baselines (CL4SRec, DuoRec presets) fall far below SASRec on ML-1M leave-one-out?

    .venv/bin/python benchmarks/contrastive_probe.py --epochs 8 --threads 1
    .venv/bin/python benchmarks/contrastive_probe.py --variants cl4srec-lambda-0.001 --epochs 8
    .venv/bin/python benchmarks/contrastive_probe.py --data ml-100k temporal --variants sasrec-ce cl4srec --epochs 40
    .venv/bin/python benchmarks/contrastive_probe.py --initial   # the untrained model's norms and state likeness

Short runs (a few epochs, seed 0, every other setting as in `benchmarks/reproduce.py`'s runs of the dataset; ML-1M
leave-one-out unless `--data` names another dataset and protocol) of variants that
each remove one suspected cause, compared on their validation NDCG@10 curve: the collapse shows within the first
epochs (GPU runs of the full grid: SASRec-CE ~0.11 at epoch 9, CL4SRec ~0.035, DuoRec ~0.033).

- `*-lambda-0.001` (and `cl4srec-lambda-0.01`, a dose in between): the InfoNCE weight divided by ML-1M's ~107
  labelled positions per sequence. The papers' code
  (RecBole) trains CE on the last position only, so its lambda = 0.1 is relative to that one position's CE; here CE
  is averaged over every position while InfoNCE acts on the last position's state, the one that is ranked.
- `*-cosine`: cosine similarity instead of the dot product (same tau): the InfoNCE logits are bounded, so the loss
  can no longer be lowered by growing the norm of the last position's state.
- `*-prefix`: the papers' weight 0.1 kept, but the views encode a random prefix of each sequence
  (`--ssl_view_span random_prefix`) instead of the whole sequence: RecBole trains every prefix as a sample with one
  CE and one InfoNCE term, so InfoNCE weighs on prefixes, not on the ranked last state alone.
- `*-in-place`: as `*-prefix`, but each prefix keeps its positions in the sequence
  (`--ssl_view_span random_prefix_in_place`): re-encoded on its own, a left-padded prefix ends at the newest
  position embedding, the ranked state's, so every InfoNCE anchor still sits there; RecBole's right-padded samples
  keep their positions.
- `*-batch-32` (SASRec too): 8x more optimizer steps per epoch with the same ratio of CE positions to InfoNCE
  anchors per step: RecBole's per-prefix samples make ~160x more steps per epoch than this harness at batch 256.
- `*-len-50` (SASRec too): sequences cut to their last 50 items instead of 200, the length both papers (and
  RecBole's default) train with: two views of a 200-item history share far more items than two of a 50-item one, so
  telling users apart (what the collapsed InfoNCE loss learns) may be that much easier at 200. Fewer training
  targets too (the last 50 per user), so compare with `sasrec-ce-len-50`, not with the 200-item rows.
- `*-dropout-0.5` (SASRec too): the papers' code (RecBole's SASRec defaults, DuoRec's configs) trains with dropout
  0.5 on the embeddings, hidden states and attention, this harness with ML-1M's 0.1: noisier views may keep the
  users from being told apart so easily (DuoRec's unsupervised view is a dropout pass).
- `cl4srec-tau-10`: dot products kept, divided by tau = 10 instead of 1: logits ten times smaller, as cosine
  similarity bounds them, without changing what is compared; tests whether the logits' scale is what sinks accuracy.
- `*-post-ln` (SASRec too): RecBole's Transformer layer, the backbone both papers' code trains
  (`--block_layout post_ln`: a LayerNorm after each residual sum and on the summed embeddings, no embedding scale,
  no final LayerNorm) instead of the SASRec reference's pre-LN block; feed-forward width, activation and
  initialisation stay this harness's, so only the LayerNorms' places change.
- `*-recbole` (SASRec too): RecBole's SASRec layer as a whole: post-LN as above, plus its 256-wide GELU
  feed-forward and its normal(0, 0.02) initialisation. `ec4srec-recbole`: EC4SRec on the backbone its authors'
  code trains (their SASRec is RecBole's), where the unbounded negative-view loss meets states without a final
  LayerNorm. `ec4srec-cosine`: EC4SRec with cosine logits in both of its contrastive losses, as `*-cosine` above.
- `*-prefix-samples` (SASRec too): RecBole's sample structure (`--prediction_span random_prefix`, with
  `--ssl_view_span random_prefix` for the InfoNCE runs): each sequence is one sample an epoch, a random prefix with
  its next item as the one CE target, and the InfoNCE views encode that same prefix, so per sample CE and InfoNCE
  weigh 1 : lambda as in RecBole, where every prefix is a sample each epoch. One CE target per sequence learns far
  less per epoch than one at every position: compare with `sasrec-ce-prefix-samples`, at equal epochs.
- `sasrec-bpr-prefix-samples`: the papers' SASRec baseline as RecBole trains it: prefix samples as above, BPR
  against one sampled negative per sample (`--loss_type bpr --bce_num_negatives 1`) instead of the full CE.

Each finished variant also gets norms measured on its final model over the first 1,024 users' validation inputs:
the mean L2 norm of the last position's state (the ranked one), of the other positions' states, and of the item
embeddings. Results: `benchmarks/results/contrastive_probe.{json,md}` (one record per variant, kept across runs;
a variant already recorded is skipped; a killed variant restarts from scratch: these runs are minutes long).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_model  # noqa: E402
from reproduce import (  # noqa: E402
    DATASETS,
    SHARED,
    WORK,
    _run,
    dataset_file,
    exclusive,
    last_complete_checkpoint,
    train_command,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "contrastive_probe.json"

# label -> (reproduce.py model, overrides of the run's settings, extra train.py flags)
# RecBole's SASRec layer as a whole: post-LN, a 256-wide GELU feed-forward, normal(0, 0.02) initialisation.
RECBOLE_LAYER = ["--block_layout", "post_ln", "--intermediate_size", "256", "--hidden_act", "gelu"]
RECBOLE_LAYER += ["--initializer_range", "0.02"]
# RecBole's samples: a prefix and its next item, the InfoNCE views of that prefix.
PREFIX_SAMPLES = ["--prediction_span", "random_prefix", "--ssl_view_span", "random_prefix"]
VARIANTS: dict[str, tuple[str, dict, list[str]]] = {
    "sasrec-ce": ("sasrec-ce", {}, []),
    "cl4srec": ("cl4srec", {}, []),
    "cl4srec-lambda-0.001": ("cl4srec", {"bt_alpha": 0.001}, []),
    "cl4srec-lambda-0.01": ("cl4srec", {"bt_alpha": 0.01}, []),
    "cl4srec-cosine": ("cl4srec", {}, ["--infonce_similarity", "cosine"]),
    "duorec": ("duorec", {}, []),
    "duorec-lambda-0.001": ("duorec", {"bt_alpha": 0.001}, []),
    "duorec-cosine": ("duorec", {}, ["--infonce_similarity", "cosine"]),
    "cl4srec-prefix": ("cl4srec", {}, ["--ssl_view_span", "random_prefix"]),
    "duorec-prefix": ("duorec", {}, ["--ssl_view_span", "random_prefix"]),
    "cl4srec-in-place": ("cl4srec", {}, ["--ssl_view_span", "random_prefix_in_place"]),
    "duorec-in-place": ("duorec", {}, ["--ssl_view_span", "random_prefix_in_place"]),
    "sasrec-ce-batch-32": ("sasrec-ce", {"batch_size": 32}, []),
    "cl4srec-batch-32": ("cl4srec", {"batch_size": 32}, []),
    "sasrec-ce-len-50": ("sasrec-ce", {}, ["--max_len", "50"]),
    "cl4srec-len-50": ("cl4srec", {}, ["--max_len", "50"]),
    "duorec-len-50": ("duorec", {}, ["--max_len", "50"]),
    "sasrec-ce-dropout-0.5": ("sasrec-ce", {"dropout": 0.5}, []),
    "cl4srec-dropout-0.5": ("cl4srec", {"dropout": 0.5}, []),
    "duorec-dropout-0.5": ("duorec", {"dropout": 0.5}, []),
    "cl4srec-tau-10": ("cl4srec", {}, ["--infonce_temperature", "10"]),
    "sasrec-ce-post-ln": ("sasrec-ce", {}, ["--block_layout", "post_ln"]),
    "cl4srec-post-ln": ("cl4srec", {}, ["--block_layout", "post_ln"]),
    "duorec-post-ln": ("duorec", {}, ["--block_layout", "post_ln"]),
    "sasrec-ce-recbole": ("sasrec-ce", {}, RECBOLE_LAYER),
    "cl4srec-recbole": ("cl4srec", {}, RECBOLE_LAYER),
    "sasrec-ce-prefix-samples": ("sasrec-ce", {}, ["--prediction_span", "random_prefix"]),
    "cl4srec-prefix-samples": ("cl4srec", {}, PREFIX_SAMPLES),
    "duorec-prefix-samples": ("duorec", {}, PREFIX_SAMPLES),
    # EC4SRec (issue 26), on LastFM (`--data lastfm leave_one_out`), where its preset collapses after its first
    # explanation: without the negative-view loss; and both weights divided by LastFM's ~39 labelled positions per
    # sequence (RecBole's weight per CE target, as the *-lambda-0.001 variants do for ML-1M's ~107).
    "ec4srec": ("ec4srec", {}, []),
    "ec4srec-no-negative": ("ec4srec", {}, ["--ec4srec_negative_weight", "0"]),
    "ec4srec-lambda-0.0025": ("ec4srec", {"bt_alpha": 0.0025}, ["--ec4srec_negative_weight", "0.00125"]),
    "ec4srec-recbole": ("ec4srec", {}, RECBOLE_LAYER),
    "ec4srec-cosine": ("ec4srec", {}, ["--infonce_similarity", "cosine"]),
    "sasrec-bpr-prefix-samples": (
        "sasrec-ce",
        {"loss_type": "bpr"},
        ["--bce_num_negatives", "1", "--prediction_span", "random_prefix"],
    ),
}


def probe_run(label: str, epochs: int, data: tuple[str, str] = ("ml-1m", "leave_one_out")) -> dict:
    model, overrides, _ = VARIANTS[label]
    # Patience above the epoch count: every variant trains the same number of epochs.
    return {**_run(*data, model, 0), **overrides, "max_epochs": epochs, "patience": epochs + 1}


def probe_command(label: str, epochs: int, output_dir: Path, data: tuple[str, str] = ("ml-1m", "leave_one_out")):
    return train_command(probe_run(label, epochs, data), output_dir) + VARIANTS[label][2]


def probe_settings(command: list[str]) -> dict:
    """The settings a probe record states, as train.py's own parser reads them from the run's command (one source
    of truth: no flag or default is read twice). `similarity` and `infonce_temperature` apply to InfoNCE runs
    alone (`-` and `None` otherwise)."""
    from modeling_btsr.arguments import parse_arguments

    model_args, _, training_args, _ = parse_arguments(command[2:])
    infonce = model_args.ssl_objective == "infonce" and model_args.bt_alpha > 0
    return {
        "loss_type": model_args.loss_type,
        "bt_alpha": model_args.bt_alpha,
        "similarity": model_args.infonce_similarity if infonce else "-",
        "view_span": model_args.ssl_view_span,
        "prediction_span": model_args.prediction_span,
        "batch_size": training_args.per_device_train_batch_size,
        "max_len": model_args.max_len,
        "dropout": model_args.dropout,
        "infonce_temperature": model_args.infonce_temperature if infonce else None,
        **({"negative_weight": model_args.ec4srec_negative_weight} if model_args.view_maker == "ec4srec" else {}),
    }


def curves(output_dir: Path) -> dict:
    """Per-epoch validation NDCG@10 and training losses from the last checkpoint's log history."""
    checkpoint = last_complete_checkpoint(output_dir)
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    evals = [h for h in history if "eval_ndcg@10" in h]
    losses = [h for h in history if "prediction_loss" in h]
    return {
        "checkpoint": str(checkpoint),
        "eval_ndcg@10": [round(h["eval_ndcg@10"], 4) for h in evals],
        "eval_coverage@10": [round(h["eval_coverage@10"], 4) for h in evals],
        "prediction_loss": [round(h["prediction_loss"], 3) for h in losses],
        "ssl_loss": [round(h["ssl_loss"], 3) for h in losses if "ssl_loss" in h],
    }


def norms(checkpoint: str, data: tuple[str, str], n_users: int = 1024) -> dict:
    """Mean L2 norms of the ranked (last) state, the other positions' states and the item embeddings; and how alike
    the users' ranked states are: the mean cosine between two users' states, and the spread (standard deviation)
    of their dot products, the InfoNCE logits at tau = 1 (a loss at chance, log(2B - 1), needs them all equal)."""
    import numpy as np
    import torch

    from modeling_btsr import BTSRForSequentialRecommendation
    from modeling_btsr.arguments import DataArguments
    from modeling_btsr.training_run import prepare_data

    model = BTSRForSequentialRecommendation.from_pretrained(checkpoint).eval()
    max_len = model.config.max_position_embeddings
    dataset, protocol = data
    data_root = None if dataset_file(data[0]) is None else str(SHARED)
    prepared = prepare_data(DataArguments(dataset=dataset, data_root=data_root, split=protocol), max_len)
    contexts = [np.asarray(c[-max_len:]) for c in prepared.split.valid.contexts[:n_users]]
    width = max(len(c) for c in contexts)
    input_ids = torch.zeros(len(contexts), width, dtype=torch.long)
    for row, context in enumerate(contexts):
        input_ids[row, width - len(context) :] = torch.as_tensor(context)
    attention_mask = (input_ids > 0).long()
    with torch.no_grad():
        states = model.btsr(input_ids, attention_mask).last_hidden_state  # (users, width, hidden)
        items = model.btsr.item_embedding_matrix().detach()
    state_norms = states.norm(dim=-1)
    others = attention_mask.bool().clone()
    others[:, -1] = False
    last = states[:, -1]
    pairs = ~torch.eye(len(last), dtype=torch.bool)  # two different users
    cosines = torch.nn.functional.normalize(last, dim=-1) @ torch.nn.functional.normalize(last, dim=-1).T
    return {
        "last_state_norm": round(float(state_norms[:, -1].mean()), 3),
        "other_states_norm": round(float(state_norms[others].mean()), 3),
        "item_embedding_norm": round(float(items.norm(dim=-1).mean()), 3),
        "last_state_mean_cosine": round(float(cosines[pairs].mean()), 3),
        "last_state_dot_std": round(float((last @ last.T)[pairs].std()), 2),
    }


def _data_key(record: dict) -> tuple[str, str]:
    return record.get("dataset", "ml-1m"), record.get("protocol", "leave_one_out")  # first records: ML-1M


def _data(record: dict) -> str:
    return " ".join(_data_key(record))


def _views(record: dict) -> str:
    """What the SSL views encoded (records from before `view_span` existed: the whole sequence)."""
    return "-" if record["similarity"] == "-" else record.get("view_span", "sequence")


def _targets(record: dict) -> str:
    """What the prediction loss trained on (records from before `prediction_span` existed: every position)."""
    return "every position" if record.get("prediction_span", "sequence") == "sequence" else "one prefix"


def _batch(record: dict) -> int:
    """The batch size (records from before the batch variants: the dataset's)."""
    return record.get("batch_size", DATASETS[_data_key(record)]["batch_size"])


def _max_len(record: dict) -> int:
    """The sequence length trained on (records from before the length variants: train.py's default, 200)."""
    return record.get("max_len", 200)


def _dropout(record: dict) -> float:
    """The dropout trained with (records from before the dropout variants: the grid's 0.1)."""
    return record.get("dropout", 0.1)


def load_records() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def save_records(records: list[dict]) -> None:
    RESULTS.write_text(json.dumps(records, indent=1) + "\n")
    write_table(records)


def write_table(records: list[dict]) -> None:
    lines = [
        "# Contrastive collapse probe (seed 0, short runs)",
        "",
        "Command: `.venv/bin/python benchmarks/contrastive_probe.py --data DATASET PROTOCOL --epochs N --threads 1",
        "--variants ...`, the data and epochs as in their columns (the docstring says what each variant removes).",
        "Validation NDCG@10 after each epoch; norms on the final model (first 1,024 validation contexts). Machine: "
        + ", ".join(sorted({r["machine"] for r in records}))
        + "; one thread per run, two runs side by side (the `*-prefix`, `*-in-place`, `*-batch-32`, `*-len-50` and "
        "`*-dropout-0.5` rows: three or four, so their s/epoch is not comparable with the others).",
        "",
        "| data | variant | loss | InfoNCE weight | similarity | views of | targets per sequence | batch | "
        "max len | dropout | epochs | "
        "val NDCG@10 by epoch | last SSL loss | last-state norm | other-states norm | item norm | "
        "users' last states: mean cosine | their dot products: std | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(VARIANTS)
    for r in sorted(
        records, key=lambda r: (_data(r) != "ml-1m leave_one_out", _data(r), r["epochs"], order.index(r["variant"]))
    ):
        lines.append(
            f"| {_data(r)} | {r['variant']} | {r.get('loss_type', 'ce')} | {r['bt_alpha']} | {r['similarity']} | "
            f"{_views(r)} | {_targets(r)} | "
            f"{_batch(r)} | "
            f"{_max_len(r)} | {_dropout(r)} | {r['epochs']} | "
            f"{' '.join(f'{x:.3f}' for x in r['eval_ndcg@10'])} | {r['ssl_loss'][-1] if r['ssl_loss'] else '-'} | "
            f"{r['last_state_norm']} | {r['other_states_norm']} | {r['item_embedding_norm']} | "
            f"{r.get('last_state_mean_cosine', '-')} | {r.get('last_state_dot_std', '-')} | {r['seconds_per_epoch']} |"
        )
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def run_folder(label: str, epochs: int, data: tuple[str, str]) -> Path:
    suffix = "" if data == ("ml-1m", "leave_one_out") else f"-{data[0]}-{data[1]}"
    return WORK / f"probe-{label}-e{epochs}{suffix}"


def initial_geometry(data: tuple[str, str]) -> int:
    """`norms` of the model every variant starts from: seed 0, the reference size, before any step."""
    import tempfile

    from transformers import set_seed

    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
    from modeling_btsr.arguments import DataArguments
    from modeling_btsr.training_run import prepare_data

    data_root = None if dataset_file(data[0]) is None else str(SHARED)
    prepared = prepare_data(DataArguments(dataset=data[0], data_root=data_root, split=data[1]), 200)
    set_seed(0)  # as train.py does before building the model
    model = BTSRForSequentialRecommendation(BTSRConfig(num_items=len(prepared.item_user_counts)))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        print(json.dumps({"data": " ".join(data), "model": "initial (seed 0)", **norms(folder, data)}))
    return 0


def backfill_geometry(labels: list[str], epochs: int, data: tuple[str, str]) -> int:
    """Re-measures `norms` on the recorded variants' last checkpoints (the ones their records were measured on)."""

    def recorded(record: dict, label: str) -> bool:
        return record["variant"] == label and record["epochs"] == epochs and _data_key(record) == data

    for label in labels:
        folder = run_folder(label, epochs, data)
        if not any(recorded(r, label) for r in load_records()) or not folder.exists():
            print(f"skipped {label}: no record, or {folder} is gone")
            continue
        measured = norms(str(last_complete_checkpoint(folder)), data)
        with exclusive(RESULTS.with_suffix(".lock")):
            records = load_records()
            next(r for r in records if recorded(r, label)).update(measured)
            save_records(records)
        print(f"  {label}: {measured}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--data",
        nargs=2,
        default=["ml-1m", "leave_one_out"],
        metavar=("DATASET", "PROTOCOL"),
        help=f"one of {', '.join(' '.join(k) for k in DATASETS)}",
    )
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each training")
    parser.add_argument(
        "--initial",
        action="store_true",
        help="print the norms and state likeness of the untrained seed-0 model (what training starts from)",
    )
    parser.add_argument(
        "--backfill_geometry",
        action="store_true",
        help="re-measure norms and state similarity of recorded variants whose run folders remain",
    )
    args = parser.parse_args()
    data = tuple(args.data)
    if data not in DATASETS:
        choices = "; ".join(" ".join(k) for k in DATASETS)
        print(f"error: --data {' '.join(data)}: choose one of {choices}", file=sys.stderr)
        return 2
    data_file = None if dataset_file(data[0]) is None else SHARED / dataset_file(data[0])
    if data_file is not None and not data_file.exists():
        print(f"error: {data_file} not found (not shipped (licence): set BTSR_DATA_ROOT)", file=sys.stderr)
        return 2
    label_of = " ".join(data)

    def same(r: dict, label: str) -> bool:
        return r["variant"] == label and r["epochs"] == args.epochs and _data(r) == label_of

    if args.initial:
        return initial_geometry(data)
    if args.backfill_geometry:
        return backfill_geometry(args.variants, args.epochs, data)

    for label in args.variants:
        if any(same(r, label) for r in load_records()):
            print(f"skipped {label}: recorded")
            continue
        output_dir = run_folder(label, args.epochs, data)
        shutil.rmtree(output_dir, ignore_errors=True)
        output_dir.mkdir(parents=True)
        command = probe_command(label, args.epochs, output_dir, data)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        if args.threads is not None:
            env["OMP_NUM_THREADS"] = str(args.threads)
        print(f"running {label}: {' '.join(command[1:])}", flush=True)
        start = time.time()
        with open(output_dir / "train.log", "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
        if code != 0:
            print(f"error: {label} failed (exit {code}); see {output_dir / 'train.log'}", file=sys.stderr)
            return 1
        results = json.loads((output_dir / "all_results.json").read_text())
        found = curves(output_dir)
        record = {
            "dataset": data[0],
            "protocol": data[1],
            "variant": label,
            **probe_settings(command),
            "epochs": args.epochs,
            "seconds_per_epoch": round(results["train_seconds"] / args.epochs, 1),
            "wall_seconds": round(time.time() - start),
            **found,
            **norms(found["checkpoint"], data),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores",
            "threads": args.threads,
            "command": " ".join(command[1:]),
        }
        del record["checkpoint"]
        with exclusive(RESULTS.with_suffix(".lock")):  # two probes side by side must not drop each other's record
            records = [r for r in load_records() if not same(r, label)]
            save_records(records + [record])
        print(f"  {label}: val NDCG@10 {record['eval_ndcg@10']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
