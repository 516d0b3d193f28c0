"""SASRec-CE training speed and accuracy of ours against RecTools' SASRecModel and RePlay's SasRec on ML-1M (CPU).

Usage (from the repository root):

    .venv/bin/python benchmarks/peers_sasrec.py [--epochs 10] [--threads 2] [--only ours rectools replay]

Prints and writes ``benchmarks/results/peers_sasrec.json``; ``benchmarks/performance.py`` can import ``measure``.

How: each peer lives in its own virtualenv under ``benchmarks/work/`` (exact pins, CPU torch from the local wheel),
never imported here. The parent splits ML-1M with this package's leave-one-out split (so every implementation sees
the same train sequences and the same test users, contexts and targets), writes them to ``benchmarks/work/peers-data``
and starts one child process per implementation (ours in our venv, each peer in its own). A child builds its
library's own data pipeline and model, then trains one epoch each time the parent says so and stays blocked
between epochs (the peers inside their own Lightning ``fit``, gated by a callback at each epoch's start), so the
epochs run interleaved (ours, RecTools, RePlay, ours, ...), one at a time, each on the configured threads, and each
model continues from its own state. Timed: the epoch's wall time (batching, forward, backward, optimizer step; no
evaluation). After the last epoch each child ranks the whole catalogue for the test users through its library's own
API with the user's history excluded, and the parent scores the top-10 lists with one rule (``topk_metrics``).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "work"
DATA_DIR = WORK / "peers-data"
RESULT = ROOT / "benchmarks" / "results" / "peers_sasrec.json"
MARK = "@@PEER "  # report lines on a child's stdout; the libraries may print other lines there
MAX_LEN, BATCH, D, BLOCKS, HEADS, DROPOUT, LR = 200, 256, 64, 2, 1, 0.1, 1e-3
TORCH_PIN = "torch==2.13.0"
PEERS = {
    "rectools": {
        "venv": WORK / "rectools-venv",
        "pins": ["rectools[torch]==0.19.0", "pytorch-lightning==2.5.2", "numpy==1.26.4", "pandas==2.3.3"],
        "check": ("rectools", "0.19.0"),
        "report": ("RecTools", "torch", "pytorch-lightning", "numpy", "pandas"),
    },
    "replay": {
        "venv": WORK / "replay-venv",
        "pins": ["replay-rec[torch]==0.22.0", "lightning==2.6.6", "numpy==2.4.6", "pandas==2.3.3", "pyarrow==23.0.1"],
        "check": ("replay-rec", "0.22.0"),
        "report": ("replay-rec", "torch", "lightning", "numpy", "pandas", "pyarrow"),
    },
}
IMPLEMENTATIONS = ("ours", "ours-bf16", "rectools", "replay")
OURS = ("ours", "ours-bf16")  # ours-bf16: the same training under bf16 autocast (train.py --bf16)


# ------------------------------------------------------------------------------------------------ pure helpers


def flatten_sequences(sequences) -> tuple[list[int], list[int], list[int]]:
    """(user, item, position) rows of per-user item sequences, in order: the peers' interaction tables, whose
    timestamp is the position (the SASRec file lists each user's items chronologically)."""
    users, items, positions = [], [], []
    for user, sequence in enumerate(sequences):
        for position, item in enumerate(sequence):
            users.append(user)
            items.append(int(item))
            positions.append(position)
    return users, items, positions


def topk_metrics(topk, targets, k: int = 10) -> dict:
    """HR@k and NDCG@k of one target per user from best-first lists (a missing or short list is a miss beyond it)."""
    hits = ndcg = 0.0
    for listed, target in zip(topk, targets):
        listed = list(listed)[:k]
        if target in listed:
            rank = listed.index(target) + 1
            hits += 1.0
            ndcg += 1.0 / math.log2(rank + 1)
    n = len(targets)
    return {f"hr@{k}": hits / n, f"ndcg@{k}": ndcg / n, "num_users": n}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def report(**fields) -> None:
    print(MARK + json.dumps({**fields, "peak_rss_mb": peak_rss_mb()}), flush=True)


def wait_command() -> str:
    line = sys.stdin.readline()
    return line.strip() or "quit"


def load_data() -> dict:
    import numpy as np

    data = np.load(DATA_DIR / "loo.npz")
    return {name: data[name] for name in data.files}


def split_rows(flat, offsets):
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


# ------------------------------------------------------------------------------------------------ the children


def child_ours(threads: int, bf16: bool = False) -> None:
    import contextlib

    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from data_processing import PairedTrainDataset, SequenceCollator, build_train_dataset
    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
    from modeling_btsr.evaluation import evaluate_ranking

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = load_data()
    train = split_rows(data["train_items"], data["train_offsets"])
    examples = build_train_dataset(train, MAX_LEN)
    dataset = PairedTrainDataset(examples, seed=0, with_pairs=False)
    collate = SequenceCollator(table=dataset.table)
    torch.manual_seed(0)
    config = BTSRConfig(num_items=int(data["num_items"]), loss_type="ce", bt_alpha=0.0)
    model = BTSRForSequentialRecommendation(config).train()
    # What train.py's Trainer builds: adamw_torch_fused, weight decay 0 (= Adam), betas (0.9, 0.98), constant lr.
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.98), weight_decay=0.0, fused=True)
    report(event="ready", prep_s=round(time.perf_counter() - t0, 2), train_rows=len(dataset))
    epoch = 0
    while (command := wait_command()) == "epoch":
        order = np.random.default_rng([0, epoch]).permutation(len(dataset))  # the Trainer's per-epoch shuffle
        start, labelled = time.perf_counter(), 0
        for i in range(0, len(order), BATCH):
            batch = collate(dataset.__getitems__(order[i : i + BATCH].tolist()))
            # What the Trainer does under --bf16: the forward (and the loss) under autocast, backward outside it.
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                out = model(**batch)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            labelled += int((batch["labels"] != -100).sum())
        report(event="epoch", epoch=epoch, epoch_s=round(time.perf_counter() - start, 2), targets=labelled)
        epoch += 1
    if command == "eval":
        start = time.perf_counter()
        contexts = split_rows(data["test_context_items"], data["test_context_offsets"])
        metrics, per_user = evaluate_ranking(
            model, contexts, data["test_targets"], prefix="test", with_calibration=False, return_per_user=True
        )
        same_rule = topk_metrics(per_user["topk"].tolist(), data["test_targets"].tolist())
        report(
            event="eval",
            eval_s=round(time.perf_counter() - start, 2),
            **same_rule,
            package_evaluation={k: metrics[k] for k in ("test_hr@10", "test_ndcg@10")},
        )


class _Gate:
    """Lightning callback body shared by the peers: blocks at each epoch's start until the parent says "epoch",
    reports the epoch's wall time and labelled positions at its end."""

    def __init__(self, count_targets):
        self.count_targets = count_targets
        self.epoch = 0
        self.stopped = False

    def on_train_epoch_start(self, trainer, pl_module):
        if wait_command() != "epoch":
            self.stopped = True
            trainer.should_stop = True
            raise KeyboardInterrupt  # Lightning ends fit gracefully on it
        self.start, self.targets = time.perf_counter(), 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.targets += self.count_targets(batch)

    def on_train_epoch_end(self, trainer, pl_module):
        report(
            event="epoch", epoch=self.epoch, epoch_s=round(time.perf_counter() - self.start, 2), targets=self.targets
        )
        self.epoch += 1


def _lightning_trainer(trainer_class, callback_class, count_targets, epochs: int, **settings):
    """The peers' Lightning `Trainer` (each library imports its own Lightning): `epochs` epochs exactly on one CPU,
    no progress bar, logger or checkpoints, gated epoch by epoch by a `_Gate` counting `count_targets(batch)`."""
    gate = _Gate(count_targets)
    callback = type("Gate", (callback_class,), {k: getattr(gate, k) for k in dir(_Gate) if k.startswith("on_")})
    return trainer_class(
        max_epochs=epochs,
        min_epochs=epochs,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
        callbacks=[callback()],
        **settings,
    )


def child_rectools(threads: int, epochs: int) -> None:
    import numpy as np
    import pandas as pd
    import torch
    from pytorch_lightning import Callback, Trainer, seed_everything
    from rectools import Columns
    from rectools.dataset import Dataset
    from rectools.models import SASRecModel
    from rectools.models.nn.item_net import IdEmbeddingsItemNet

    torch.set_num_threads(threads)
    seed_everything(0)
    t0 = time.perf_counter()
    data = load_data()

    def frame(items, offsets):
        users, flat, positions = flatten_sequences(split_rows(items, offsets))
        return pd.DataFrame(
            {
                Columns.User: users,
                Columns.Item: flat,
                Columns.Weight: 1.0,
                Columns.Datetime: pd.to_datetime(np.asarray(positions), unit="s"),
            }
        )

    train = Dataset.construct(frame(data["train_items"], data["train_offsets"]))

    def trainer():
        return _lightning_trainer(Trainer, Callback, lambda batch: int((batch["y"] != 0).sum()), epochs)

    model = SASRecModel(
        n_blocks=BLOCKS,
        n_heads=HEADS,
        n_factors=D,
        dropout_rate=DROPOUT,
        session_max_len=MAX_LEN,
        loss="softmax",
        lr=LR,
        batch_size=BATCH,
        item_net_block_types=(IdEmbeddingsItemNet,),  # ids only: no item features here
        use_key_padding_mask=True,  # padded keys masked, as ours (RecTools' default leaves them visible)
        get_trainer_func=trainer,
        recommend_torch_device="cpu",
    )
    report(event="ready", prep_s=round(time.perf_counter() - t0, 2), train_rows=int(train.user_id_map.size))
    model.fit(train)
    if wait_command() == "eval":
        start = time.perf_counter()
        context = Dataset.construct(frame(data["test_context_items"], data["test_context_offsets"]))
        users = np.arange(len(data["test_targets"]))
        reco = model.recommend(users=users, dataset=context, k=10, filter_viewed=True)
        reco = reco.sort_values([Columns.User, Columns.Rank])
        lists = reco.groupby(Columns.User)[Columns.Item].apply(list).to_dict()
        topk = [lists.get(int(u), []) for u in users]
        report(event="eval", eval_s=round(time.perf_counter() - start, 2), **topk_metrics(topk, data["test_targets"]))


def child_replay(threads: int, epochs: int) -> None:
    import lightning
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from replay.data import FeatureHint, FeatureType
    from replay.data.nn import ParquetModule, TensorFeatureInfo, TensorSchema
    from replay.nn.lightning import LightningModule
    from replay.nn.lightning.callback import TorchTopItemsCallback
    from replay.nn.lightning.optimizer import OptimizerFactory
    from replay.nn.lightning.postprocessor import SeenItemsFilter
    from replay.nn.sequential import SasRec
    from replay.nn.transform.template import make_default_sasrec_transforms

    torch.set_num_threads(threads)
    lightning.seed_everything(0)
    t0 = time.perf_counter()
    data = load_data()
    n_items = int(data["num_items"])
    # RePlay wants item ids 0..n-1 and pads with the cardinality; ours are 1..n with 0 as padding.
    train = [s - 1 for s in split_rows(data["train_items"], data["train_offsets"]) if len(s) >= 2]
    contexts = [s - 1 for s in split_rows(data["test_context_items"], data["test_context_offsets"])]
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    train_path, predict_path = str(DATA_DIR / "replay-train.parquet"), str(DATA_DIR / "replay-predict.parquet")
    pq.write_table(
        pa.table({"user_id": list(range(len(train))), "item_id": [s[-(MAX_LEN + 1) :].tolist() for s in train]}),
        train_path,
    )
    longest = max(len(c) for c in contexts)
    pq.write_table(
        pa.table(
            {
                "user_id": list(range(len(contexts))),
                "item_id": [c[-MAX_LEN:].tolist() for c in contexts],
                "seen_ids": [c.tolist() for c in contexts],  # the whole history, for the seen-item filter
            }
        ),
        predict_path,
    )
    schema = TensorSchema(
        [
            TensorFeatureInfo(
                name="item_id",
                feature_type=FeatureType.CATEGORICAL,
                is_seq=True,
                feature_hint=FeatureHint.ITEM_ID,
                cardinality=n_items,
                padding_value=n_items,
                embedding_dim=D,
            )
        ]
    )
    transforms = make_default_sasrec_transforms(schema)
    metadata = {
        "train": {"user_id": {}, "item_id": {"shape": MAX_LEN + 1, "padding": n_items}},
        "predict": {
            "user_id": {},
            "item_id": {"shape": MAX_LEN, "padding": n_items},
            "seen_ids": {"shape": longest, "padding": -1},
        },
    }
    config = {"train": {"generator": torch.Generator().manual_seed(0), "device": torch.device("cpu")}}
    config["predict"] = {"device": torch.device("cpu")}
    datamodule = ParquetModule(
        batch_size=BATCH,
        metadata=metadata,
        transforms=transforms,
        config=config,
        train_path=train_path,
        predict_path=predict_path,
    )
    sasrec = SasRec.from_params(
        schema=schema, embedding_dim=D, num_heads=HEADS, num_blocks=BLOCKS, max_sequence_length=MAX_LEN, dropout=DROPOUT
    )
    module = LightningModule(sasrec, optimizer_factory=OptimizerFactory(learning_rate=LR))
    trainer = _lightning_trainer(
        lightning.Trainer,
        lightning.Callback,
        lambda batch: int(batch["target_padding_mask"].sum()),
        epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    report(event="ready", prep_s=round(time.perf_counter() - t0, 2), train_rows=len(train))
    trainer.fit(module, datamodule=datamodule)
    if wait_command() == "eval":
        start = time.perf_counter()
        top = TorchTopItemsCallback(top_k=10, query_column="user_id", postprocessors=[SeenItemsFilter(n_items)])
        lightning.Trainer(
            accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, callbacks=[top]
        ).predict(module, datamodule=datamodule, return_predictions=False)
        users, items, _ = top.get_result()
        lists = {int(u): [int(i) + 1 for i in row] for u, row in zip(users.tolist(), items.tolist())}
        topk = [lists.get(u, []) for u in range(len(contexts))]
        report(event="eval", eval_s=round(time.perf_counter() - start, 2), **topk_metrics(topk, data["test_targets"]))


# ------------------------------------------------------------------------------------------------ the parent


def venv_python(name: str) -> Path:
    return PEERS[name]["venv"] / "bin" / "python"


def installed(name: str) -> dict:
    freeze = subprocess.run([str(venv_python(name)), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    pins = {k.lower(): v for k, v in (line.split("==", 1) for line in freeze.splitlines() if "==" in line)}
    return {package: pins.get(package.lower()) for package in PEERS[name]["report"]}


def ensure_venv(name: str) -> float:
    """Create and fill the peer's venv unless it has the pinned library and CPU torch; seconds spent installing."""
    package, version = PEERS[name]["check"]
    versions = installed(name) if venv_python(name).exists() else {}
    if versions.get(PEERS[name]["report"][0]) == version and versions.get("torch") == "2.13.0+cpu":
        return 0.0
    start = time.perf_counter()
    venv = PEERS[name]["venv"]
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv_python(name)), "-m", "pip", "install", "--quiet"]
    # torch first and alone: the pinned CPU wheel is on local disk; an unpinned torch would pull a CUDA build.
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, *PEERS[name]["pins"], TORCH_PIN], check=True)
    return time.perf_counter() - start


def prepare(data_file: Path) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from data_processing import leave_one_out_split, read_interactions

    split = leave_one_out_split(read_interactions(data_file, "sasrec"), max_len=MAX_LEN)

    def packed(rows):
        rows = [np.asarray(r, dtype=np.int64) for r in rows]
        return np.concatenate(rows), np.concatenate([[0], np.cumsum([len(r) for r in rows])])

    train_items, train_offsets = packed(split.train_sequences)
    context_items, context_offsets = packed(split.test.contexts)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(
        DATA_DIR / "loo.npz",
        train_items=train_items,
        train_offsets=train_offsets,
        test_context_items=context_items,
        test_context_offsets=context_offsets,
        test_targets=np.asarray(split.test.targets, dtype=np.int64),
        num_items=np.int64(len(split.item_vocab)),
    )
    assert split.train_user_ids == split.test.user_ids  # one user order for train and test rows
    return {"users": len(split.test), "num_items": len(split.item_vocab), "train_interactions": int(len(train_items))}


class Child:
    def __init__(self, name: str, python: Path, threads: int, epochs: int, log: Path):
        command = [str(python), str(Path(__file__).resolve()), "--child", name, "--threads", str(threads)]
        command += ["--epochs", str(epochs)]
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONWARNINGS="ignore")
        self.name, self.log = name, log
        self.proc = subprocess.Popen(
            command, cwd=WORK, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
        )

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        raise RuntimeError(f"{self.name} child ended without a report; see {self.log}")

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=120)


def measure(data_file: Path, epochs: int = 10, threads: int = 2, only=IMPLEMENTATIONS) -> dict:
    installs = {name: round(ensure_venv(name), 1) for name in PEERS if name in only}
    dataset = prepare(data_file)
    load_start = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    children, results = {}, {}
    for name in only:  # started one after another: their data preparation is not timed against each other
        python = Path(sys.executable) if name in OURS else venv_python(name)
        children[name] = Child(name, python, threads, epochs, WORK / f"peers-{name}.log")
        results[name] = {"ready": children[name].read(), "epochs": []}
        print(name, results[name]["ready"], flush=True)
    try:
        for _ in range(epochs):
            for name in only:  # interleaved: each implementation's epoch alone on the machine's free cores
                figures = children[name].ask("epoch")
                figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
                results[name]["epochs"].append(figures)
                print(name, figures, flush=True)
        for name in only:
            results[name]["test"] = children[name].ask("eval")
            print(name, results[name]["test"], flush=True)
    finally:
        for child in children.values():
            child.close()
    command = f".venv/bin/python benchmarks/peers_sasrec.py --epochs {epochs} --threads {threads}"
    if tuple(only) != IMPLEMENTATIONS:
        command += " --only " + " ".join(only)
    summary = {}
    for name, r in results.items():
        times = [e["epoch_s"] for e in r["epochs"]]
        later = sorted(times[1:] or times)
        summary[name] = {
            "epoch_s_mean": round(sum(times) / len(times), 2),
            "epoch_s_median_after_first": later[len(later) // 2],
            "targets_per_epoch": r["epochs"][0]["targets"],
            "targets_per_s": round(r["epochs"][0]["targets"] * len(times) / sum(times)),
            "peak_rss_mb": r["test"]["peak_rss_mb"],
            "test_hr@10": round(r["test"]["hr@10"], 4),
            "test_ndcg@10": round(r["test"]["ndcg@10"], 4),
            "command": command,
        }
    for ours in OURS:
        if ours in summary:
            for name in PEERS:
                if name in summary:
                    key = "ours_speedup" if ours == "ours" else "ours_bf16_speedup"
                    summary[name][key] = round(summary[name]["epoch_s_mean"] / summary[ours]["epoch_s_mean"], 2)
    return {
        "epochs": epochs,
        "threads_each": threads,
        "schedule": "interleaved epoch by epoch, one implementation at a time (not concurrent)",
        "summary": summary,
        "per_implementation": results,
        "dataset": dataset,
        "command": command,
        "wall_s": round(time.perf_counter() - started, 1),
        "install_s": installs,
        "versions": {name: installed(name) for name in PEERS if name in only},
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "shared": "the machine was shared with other jobs (training runs); compare the ratios of this run",
        },
        "settings": (
            f"d {D}, {BLOCKS} blocks, {HEADS} head, max_len {MAX_LEN}, dropout {DROPOUT}, full-softmax CE over all "
            f"items, batch {BATCH}, Adam lr {LR} betas (0.9, 0.98) in all three, seed 0; ML-1M SASRec file, "
            "leave-one-out split by this package (test = last item, validation = second-to-last, never trained on)"
        ),
        "evaluation": (
            "test users' full history before the target (train + validation item) as context; each library's own "
            "top-10 API with seen-item filtering over the whole history (ours: evaluate_ranking; RecTools: "
            "SASRecModel.recommend(filter_viewed=True); RePlay: Trainer.predict with TorchTopItemsCallback and "
            "SeenItemsFilter over a seen_ids column of the whole history), the lists scored by topk_metrics"
        ),
        "unmatched": UNMATCHED,
    }


UNMATCHED = [
    "our encoder skips padding (packed rows, attention per length group); RecTools and RePlay compute every "
    "position of a 200-wide (RePlay 200 + 1 read) left-padded grid and mask padded keys (RecTools with "
    "use_key_padding_mask=True, set here; its default leaves padded keys visible)",
    "CE: ours chunked with its gradient formed in the same pass; the peers materialise (batch, 200, items) logits "
    "(torch cross_entropy); the same loss value up to float rounding, mean over labelled positions in all three",
    "positional encoding: learned in all three; ours and RecTools align the newest item to the last position, "
    "RePlay's PositionAwareAggregator adds positions of the padded grid",
    "LayerNorm eps: ours 1e-8 everywhere; RecTools 1e-5 in the blocks, 1e-8 final; RePlay torch's default 1e-5",
    "dropout: ours on embeddings, attention weights and inside the feed-forward; the peers' own placement "
    "(torch MultiheadAttention dropout on attention weights, feed-forward and embedding dropout) at the same rate",
    "optimizer: ours fused AdamW with weight decay 0 (= Adam), the peers torch Adam; same lr and betas",
    "data: the peers' own pipelines (RecTools' SASRecDataPreparator, RePlay's ParquetModule and transforms) over the "
    "same train sequences; each keeps the last 200 inputs + 1 target per user, so labelled positions match ours",
    "shuffling: each library's own per-epoch shuffle; initialisation: each library's own",
    "precision: float32 in all three; ours-bf16 is ours under bf16 autocast (train.py --bf16), the peers were not "
    "run in bf16 (Lightning's precision='bf16-mixed' would be theirs), so its ratios compare bf16 with float32",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child in OURS:
        return child_ours(args.threads, bf16=args.child == "ours-bf16")
    if args.child == "rectools":
        return child_rectools(args.threads, args.epochs)
    if args.child == "replay":
        return child_replay(args.threads, args.epochs)
    sys.path.insert(0, str(ROOT))
    from data_processing.readers import known_dataset_path

    data = args.data or known_dataset_path("ml-1m")
    if not data.exists():
        print(f"skipping the peers benchmark: ML-1M data file {data} not found")
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    result = measure(data, args.epochs, args.threads, tuple(args.only))
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
