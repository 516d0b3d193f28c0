"""Training and serving speed, and training memory, of SASRec / BT-SR on ML-1M (CPU), in sections.

Usage (from the repository root):

    .venv/bin/python benchmarks/performance.py                       # every section but recbole (~15 min idle)
    .venv/bin/python benchmarks/performance.py --sections epochs profile
    .venv/bin/python benchmarks/performance.py --sections recbole    # installs RecBole 1.2.1 in its own venv
    .venv/bin/python benchmarks/performance.py --quick               # 4 measured batches per setting, extrapolated
    .venv/bin/python benchmarks/performance.py --render_only         # rewrite performance.md from the json only

Writes ``benchmarks/results/performance.json`` and ``performance.md`` after each section; a run of some sections
keeps the other sections' earlier figures, each section stamped with its command, time and load (these shared
machines are noisy: compare figures within one section). Reads ML-1M from the data root, ``$BTSR_DATA_ROOT`` (the SASRec
ML-1M file; ``--data`` to change); skips with a message when it is absent. 2 intra-op threads (``--threads``).
The optimizer is the one train.py's Trainer builds (fused AdamW, weight decay 0, betas (0.9, 0.98)).

Sections:

* ``epochs``: one training epoch (batch 256, max_len 200, d 64, 2 blocks, 1 head, full CE) of SASRec
  (``bt_alpha=0``), of SASRec with SCE (``n_b = b_x = int(2 * sqrt(256 * mean_labelled_positions))``,
  ``b_y = 256``) and of BT-SR (``bt_alpha=0.2``: a second encoder pass on the same-target partner plus the Barlow
  Twins loss); wall time of collation + forward + backward + optimizer step, the settings interleaved batch by
  batch; labelled positions/s. Also SASRec-CE with length-bucketed batches (what a length-grouping sampler would
  gain).
* ``grouping``: epochs with attention on one grid per batch (as long as its longest row) against attention per
  group of rows of similar length (``length_grouped_attention``, the default): SASRec-CE on ML-1M, and SASRec-SCE
  and BT-SR on Amazon Beauty with its reference settings (batch 1024, dropout 0.6, alpha 0.25; read from
  Beauty from the data root, skipped when absent), interleaved batch by batch.
* ``profile``: a CE and an SCE step split into encoder forward / loss forward / loss backward / encoder backward /
  optimizer, hence the lowest SCE / CE epoch ratio reachable while the encoder is shared; and the SCE loss alone
  under torch.profiler (its top operators, and how many bucket cells are a position's winning bucket).
* ``recommend``: ``recommend`` latency for one user (p50/p99 over 200 calls) and throughput for 256 users at once.
* ``memory``: peak RSS of a fresh process doing one training step (optimizer state included) for catalogues of
  10k, 100k and 1M items (synthetic item ids over the real ML-1M sequence shapes), also with activation
  checkpointing at 1M; CE at 1M items is computed, not run (see the notes).
* ``objectives``: epochs of SASRec, BT-SR, CL4SRec and DuoRec (the presets' settings) at batch 256 and 1024, and
  the self-supervised losses alone (Barlow Twins vs InfoNCE) at batch 256 to 4096.
* ``compile``: epochs of SASRec-CE, BT-SR-CE and SASRec-SCE in eager mode (packed, length-grouped attention, the
  default) against ``torch.compile`` (inductor, what train.py's ``--torch_compile`` runs: the padded layout),
  interleaved batch by batch; the compiled steps' first batches (graph capture and code generation) are timed apart
  from the steady-state epoch.
* ``recbole`` (only when asked): RecBole 1.2.1's SASRec on the same data and hyper-parameters
  (``benchmarks/recbole_sasrec.py``), training targets/s against ours in the same run.
* ``peers`` (only when asked): RecTools 0.19 and RePlay 0.22 SASRec in their own virtualenvs against ours, 10 whole
  epochs each interleaved epoch by epoch, and their test NDCG@10 (``benchmarks/peers_sasrec.py``).
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# Threads that wait between parallel regions sleep instead of spinning. On a machine shared with other jobs the
# default (spinning) OpenMP policy made 2-thread training several times slower than 1 thread (measured: the
# chunked CE of one batch 2.05 s spinning vs 0.82 s passive, load ~4 on 2 cores); set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from machine_info import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_processing.readers import known_dataset_path  # noqa: E402
from modeling_btsr.arguments import PRESETS  # noqa: E402
from modeling_btsr.trainer import mark_batch_dynamic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = known_dataset_path("ml-1m")
BATCH, MAX_LEN = 256, 200
SCRIPT = "benchmarks/performance.py"


def load(path: Path):
    from data_processing import build_train_dataset, leave_one_out_split, read_interactions

    split = leave_one_out_split(read_interactions(path, "sasrec"), max_len=MAX_LEN)
    return split, build_train_dataset(split.train_sequences, MAX_LEN)


def sce_buckets(examples, batch_size: int = BATCH) -> int:
    return int(2 * math.sqrt(batch_size * examples.mean_labelled_positions))


def make_model(num_items: int, loss_type: str, alpha: float, n_buckets: int, seed: int = 0, device="cpu", **overrides):
    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation

    torch.manual_seed(seed)
    config = BTSRConfig(
        num_items=num_items,
        loss_type=loss_type,
        bt_alpha=alpha,
        sce_n_buckets=n_buckets,
        sce_bucket_size_x=n_buckets,
        sce_bucket_size_y=256,
        **overrides,
    )
    model = BTSRForSequentialRecommendation(config).to(device).train()
    # The optimizer train.py's Trainer builds (TrainingArguments' default optim adamw_torch_fused, weight decay 0 =
    # Adam): one fused kernel per step, with no parameter-sized temporaries (foreach Adam holds two at its step).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.0, fused=True)
    return model, optimizer


def batch_orders(dataset, lengths, length_bucketed: bool, seed: int = 0, batch_size: int = BATCH) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if not length_bucketed:
        order = rng.permutation(len(dataset))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class EpochRun:
    """One training setting: its own model, optimizer and batch order; `step(i)` runs and times batch `i`."""

    def __init__(
        self,
        examples,
        num_items,
        loss_type,
        alpha,
        length_bucketed=False,
        batch_size=BATCH,
        device="cpu",
        compiled=False,
        bf16=False,
        **overrides,
    ):
        from data_processing import PairedTrainDataset, SequenceCollator

        self.bf16 = bf16  # the forward under bf16 autocast, as the Trainer runs it under --bf16

        self.device = torch.device(device)
        n_buckets = sce_buckets(examples, batch_size)
        self.model, self.optimizer = make_model(num_items, loss_type, alpha, n_buckets, device=device, **overrides)
        # As the Trainer's --torch_compile does: the module compiled, the optimizer step left eager.
        self.forward = torch.compile(self.model) if compiled else self.model
        config = self.model.config
        self.dataset = PairedTrainDataset(
            examples,
            seed=0,
            with_pairs=alpha > 0,
            view_maker=config.view_maker,
            crop_ratio=config.cl4srec_crop_ratio,
            mask_ratio=config.cl4srec_mask_ratio,
            reorder_ratio=config.cl4srec_reorder_ratio,
            mask_token=config.mask_token_id,
        )
        self.collate = SequenceCollator()
        lengths = None
        if length_bucketed:
            lengths = np.asarray([len(self.dataset[i]["input_ids"]) for i in range(len(self.dataset))])
        self.batches = batch_orders(self.dataset, lengths, length_bucketed, batch_size=batch_size)
        self.wall = self.cpu = self.warmup = 0.0
        self.positions = self.rows = self.measured = 0

    def step(self, index: int, record: bool = True) -> None:
        rows = self.batches[index]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        batch = self.collate([self.dataset[int(i)] for i in rows])
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.forward is not self.model:
            mark_batch_dynamic(batch)  # as the Trainer does under --torch_compile
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.forward(**batch)
        self.optimizer.zero_grad()
        out.loss.backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # kernels are queued: the step has ended only when the GPU is done
        if not record:
            self.warmup += time.perf_counter() - wall0
        if record:
            self.wall += time.perf_counter() - wall0
            self.cpu += time.process_time() - cpu0
            self.positions += int((batch["labels"] != -100).sum())
            self.rows += len(rows)
            self.measured += 1

    def summary(self) -> dict:
        fraction = self.rows / len(self.dataset)
        return {
            "epoch_s": round(self.wall / fraction, 2),
            "labelled_positions_per_s": round(self.positions / self.wall),
            "batches_measured": self.measured,
            "batches_per_epoch": len(self.batches),
            "extrapolated": self.measured < len(self.batches),
            "measured_wall_s": round(self.wall, 2),
            "process_cpu_s_per_epoch": round(self.cpu / fraction, 2),
            "warmup_s": round(self.warmup, 2),
        }


def time_epochs(examples, num_items, settings: dict, max_batches, epochs: int = 1, warmup=(-1,)) -> dict:
    """Wall time of collate + forward + backward + Adam step per setting, the settings interleaved batch by batch
    (so a change in the machine's other load hits them alike and the ratios stay fair), after warm-up steps on the
    batches `warmup` (indices; the last batch unless asked), timed apart; `epochs` passes over the batches (one
    unless asked)."""
    runs = {name: EpochRun(examples, num_items, **setting) for name, setting in settings.items()}
    for run in runs.values():
        for index in warmup:  # warm-up (allocator, MKL, compilation); measured order starts at 0
            run.step(index % len(run.batches), record=False)
    n = min(len(run.batches) for run in runs.values())
    for _ in range(epochs):
        for index in range(min(max_batches or n, n)):
            for run in runs.values():
                run.step(index)
    return {name: run.summary() for name, run in runs.items()}


def time_recommend(split, examples, num_items) -> dict:
    model, _ = make_model(num_items, "ce", 0.0, 1)
    model.eval()
    model.btsr.set_item_vocab({"item_ids": list(range(1, num_items + 1))})
    # Item index j is raw id j here; histories are the users' training sequences (cut to max_len by the model).
    histories = [list(map(int, s)) for s in split.train_sequences]
    rng = np.random.default_rng(0)
    one = histories[int(rng.integers(len(histories)))]
    model.recommend([one], k=10)
    latencies = []
    for _ in range(200):
        t0 = time.perf_counter()
        model.recommend([one], k=10)
        latencies.append((time.perf_counter() - t0) * 1e3)
    users = [histories[int(i)] for i in rng.choice(len(histories), BATCH, replace=False)]
    model.recommend(users, k=10)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        model.recommend(users, k=10)
        runs.append(time.perf_counter() - t0)
    return {
        "recommend_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "recommend_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "recommend_history_len": min(len(one), MAX_LEN),
        "recommend_batch_users_per_s": round(BATCH / float(np.median(runs))),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). `getrusage(RUSAGE_SELF).ru_maxrss` is not used: Linux carries it
    over fork and exec, so a child spawned by this (large) process would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best available


def memory_child(batch_file: Path, loss_type: str, num_items: int, n_buckets: int) -> None:
    """One training step on a fresh process that loads only torch and a saved batch; prints peak RSS (MB)."""
    batch = torch.load(batch_file)
    # Synthetic catalogue: the real ids spread over 1..num_items by a fixed odd multiplier (sequence shapes kept).
    spread = lambda t: torch.where(t > 0, (t * 2_654_435_761) % num_items + 1, t)  # noqa: E731
    batch["input_ids"], batch["labels"] = spread(batch["input_ids"]), spread(batch["labels"])
    baseline = peak_rss_mb()
    loss_type, _, option = loss_type.partition("+")
    model, optimizer = make_model(num_items, loss_type, 0.0, n_buckets)
    if option == "checkpointing":
        model.activation_checkpointing_enable()
    t0 = time.perf_counter()
    out = model(**batch)
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    peak = peak_rss_mb()
    result = {"peak_mb": round(peak), "before_model_mb": round(baseline), "step_s": round(time.perf_counter() - t0, 2)}
    print(json.dumps(result))


def save_memory_batch(examples, path: Path) -> None:
    """The first batch of the seeded shuffle (real ML-1M shapes), for the memory children."""
    from data_processing import PairedTrainDataset, SequenceCollator

    dataset = PairedTrainDataset(examples, seed=0, with_pairs=False)
    rows = batch_orders(dataset, None, False)[0]
    torch.save(SequenceCollator()([dataset[int(i)] for i in rows]), path)


def run_memory_child(batch_file: Path, loss_type: str, num_items: int, n_buckets: int, threads: int) -> dict:
    command = [sys.executable, SCRIPT, "--memory-child", str(batch_file), loss_type, str(num_items), str(n_buckets)]
    command += ["--threads", str(threads)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ce_logits_mb(positions: int, num_items: int) -> dict:
    """What full-softmax CE at `num_items` costs without chunking: the (positions, items) float32 logits, and the
    three such tensors the unfused form keeps at its peak (logits, log-softmax, their gradient)."""
    one = positions * num_items * 4 / 2**20
    return {"logits_mb": round(one), "unfused_peak_extra_mb": round(3 * one)}


SECTIONS = ("epochs", "grouping", "profile", "recommend", "memory", "objectives", "compile", "recbole", "peers", "gpu")


def markdown(results: dict) -> str:
    r = results
    sections = r.get("sections", {})
    cmd = {name: info["command"] for name, info in sections.items()}
    rows = []
    if "epochs" in cmd:
        c = cmd["epochs"]
        rows += [
            ("SASRec CE epoch (s)", r["sasrec_ce_epoch_s"], c),
            ("SASRec SCE epoch (s)", r["sasrec_sce_epoch_s"], c),
            ("BT-SR CE epoch (s)", r["btsr_ce_epoch_s"], c),
            ("BT-SR / SASRec", r["btsr_over_sasrec"], c),
            ("SCE / CE", r["sce_over_ce"], c),
            ("SASRec CE labelled positions/s", r["sasrec_ce_positions_per_s"], c),
            ("SASRec SCE labelled positions/s", r["sasrec_sce_positions_per_s"], c),
            ("BT-SR CE labelled positions/s", r["btsr_ce_positions_per_s"], c),
            ("SASRec CE epoch, length-bucketed batches (s)", r["sasrec_ce_epoch_s_length_bucketed"], c),
        ]
        if "sasrec_ce_epoch_s_bf16" in r:
            rows += [
                ("SASRec CE epoch, bf16 autocast (s)", r["sasrec_ce_epoch_s_bf16"], c),
                ("BT-SR CE epoch, bf16 autocast (s)", r["btsr_ce_epoch_s_bf16"], c),
            ]
    if "grouping" in cmd:
        c = cmd["grouping"]
        for name, figures in r["grouping"]["speedup"].items():
            rows.append(
                (
                    f"{name} epoch (s): one grid / grouped attention (speed-up)",
                    f"{figures['one_grid_epoch_s']} / {figures['grouped_epoch_s']} ({figures['speedup']}x)",
                    c,
                )
            )
        for name, figures in r["grouping"].get("attention_cells", {}).items():
            rows.append(
                (
                    f"{name} rows: median / longest length; attention cells per item, one grid / grouped",
                    f"{figures['median_length']:g} / {figures['max_length']}; {figures['one_grid_cells_per_item']}"
                    f" / {figures['grouped_cells_per_item']} ({figures['one_grid_over_grouped']}x)",
                    c,
                )
            )
    if "compile" in cmd:
        c = cmd["compile"]
        for name, figures in r["compile"]["summary"].items():
            rows.append(
                (
                    f"{name} epoch (s): eager / torch.compile steady state (compiled / eager); compilation (s)",
                    f"{figures['eager_epoch_s']} / {figures['compiled_epoch_s']} ({figures['compiled_over_eager']}x); "
                    f"{figures['compile_s']}",
                    c,
                )
            )
    if "profile" in cmd:
        c, prof = cmd["profile"], r["profile"]
        for name in ("ce", "sce"):
            parts = prof["seconds_per_batch_median"][name]
            rows.append(
                (
                    f"{name.upper()} step, s/batch: encoder fwd / loss fwd / loss bwd / encoder bwd / optimizer",
                    " / ".join(
                        f"{parts[k]:.3f}"
                        for k in ("encoder_forward", "loss_forward", "loss_backward", "encoder_backward", "optimizer")
                    ),
                    c,
                )
            )
        rows.append(("SCE / CE step (profiled batches)", prof["sce_over_ce_step"], c))
        rows.append(("SCE / CE floor if SCE's loss cost nothing", prof["sce_over_ce_floor_if_sce_loss_were_free"], c))
        if "ce_loss" in prof:
            ce = prof["ce_loss"]
            rows.append(
                (
                    "CE loss alone, fwd+bwd, top operators (self ms per batch; total)",
                    ", ".join(f"{op} {ms}" for op, ms in ce["operators_self_ms_per_batch"].items())
                    + f"; total {ce['total_self_ms_per_batch']}",
                    c,
                )
            )
        if "sce_loss" in prof:
            sce = prof["sce_loss"]
            rows.append(
                (
                    "SCE loss alone, fwd+bwd, top operators (self ms per batch)",
                    ", ".join(f"{op} {ms}" for op, ms in sce["operators_self_ms_per_batch"].items()),
                    c,
                )
            )
            rows.append(
                (
                    "SCE bucket cells (n_b x b_x) / winning cells (the rows backward multiplies)",
                    f"{sce['bucket_cells']:,} / {sce['winning_cells']:,}",
                    c,
                )
            )
    if "recommend" in cmd:
        c = cmd["recommend"]
        rows += [
            ("recommend, 1 user, p50 (ms)", r["recommend_p50_ms"], c),
            ("recommend, 1 user, p99 (ms)", r["recommend_p99_ms"], c),
            ("recommend, 256 users (users/s)", r["recommend_batch_users_per_s"], c),
        ]
    if r.get("eval_all_users_s") is not None:
        rows.append(("evaluation, all 6,040 ML-1M users (s)", r["eval_all_users_s"], r["eval_all_users_command"]))
    if "memory" in cmd:
        c = cmd["memory"]
        for n in ("10k", "100k", "1m"):
            rows.append((f"SCE peak RSS, {n} items (MB)", r.get(f"sce_{n}_items_peak_mb"), c))
            ce_peak = r.get(f"ce_{n}_items_peak_mb")
            computed = r.get(f"ce_{n}_items_peak_mb_is")
            rows.append((f"CE peak RSS, {n} items (MB)", f"{ce_peak} ({computed})" if computed else ce_peak, c))
            steps = [r["memory"].get(f"{loss}_{n}", {}).get("step_s") for loss in ("sce", "ce")]
            rows.append(
                (
                    f"one training step, {n} items, SCE / CE (s)",
                    " / ".join("not run" if step is None else str(step) for step in steps),
                    c,
                )
            )
        rows.append(
            ("SCE peak RSS, 1m items, activation checkpointing (MB)", r.get("sce_1m_items_checkpointing_peak_mb"), c)
        )
    if "objectives" in cmd:
        c = cmd["objectives"]
        for name, figures in r["objectives"]["epochs"].items():
            rows.append((f"{name} epoch (s)", figures["epoch_s"], c))
        for name, figures in r["objectives"]["ssl_loss"].items():
            rows.append(
                (
                    f"SSL loss alone, {name}: fwd+bwd ms / (B or d)-squared matrix MB",
                    f"{figures['ms']} / {figures['matrix_mb']}",
                    c,
                )
            )
    if "gpu" in cmd:
        c, g = cmd["gpu"], r["gpu"]
        cpu = g["cpu_reference_epoch_s"]
        for name, label in (("sasrec_ce", "SASRec CE"), ("sasrec_sce", "SASRec SCE"), ("btsr_ce", "BT-SR CE")):
            rows.append(
                (
                    f"GPU ({g['device']}) {label} epoch, mean of {g['epochs_measured']} (s); CPU epochs section",
                    f"{g[f'{name}_epoch_s']} ; {cpu[name]}",
                    c,
                )
            )
        rows += [
            ("GPU BT-SR / SASRec", g["btsr_over_sasrec"], c),
            ("GPU SCE / CE", g["sce_over_ce"], c),
            ("GPU peak memory, all three models (MB)", g["peak_gpu_memory_mb"], c),
        ]
    if "recbole" in cmd:
        c = cmd["recbole"]
        rows += [
            ("RecBole SASRec training targets/s", r["recbole_sasrec_targets_per_s"], c),
            ("ours SASRec-CE training targets/s (same run)", r["ours_sasrec_ce_targets_per_s"], c),
            ("ours / RecBole", r["ours_over_recbole_targets_per_s"], c),
            ("RecBole SASRec epoch, extrapolated (s)", r["recbole_sasrec_epoch_s_extrapolated"], c),
        ]
    if "peers" in cmd:
        c = cmd["peers"]
        n = r["peers_epochs"]
        rows += [
            ("RecTools 0.19 SASRecModel epoch (s)", r["rectools_sasrec_epoch_s"], c),
            ("RePlay 0.22 SasRec epoch (s)", r["replay_sasrec_epoch_s"], c),
            ("ours SASRec-CE epoch, same run (s)", r["ours_sasrec_ce_epoch_s_peers_run"], c),
            ("RecTools epoch / ours", r["ours_vs_rectools_epoch_ratio"], c),
            ("RePlay epoch / ours", r["ours_vs_replay_epoch_ratio"], c),
            (f"test NDCG@10 after {n} epochs: ours / RecTools / RePlay", r["peers_test_ndcg@10"], c),
        ]
        if "ours_bf16_sasrec_ce_epoch_s_peers_run" in r:
            rows += [
                (
                    "ours SASRec-CE epoch under bf16 autocast, same run (s)",
                    r["ours_bf16_sasrec_ce_epoch_s_peers_run"],
                    c,
                ),
                ("RecTools epoch / ours bf16 (peers float32)", r["ours_bf16_vs_rectools_epoch_ratio"], c),
                ("RePlay epoch / ours bf16 (peers float32)", r["ours_bf16_vs_replay_epoch_ratio"], c),
                (f"test NDCG@10 after {n} epochs: ours bf16", r["ours_bf16_test_ndcg@10"], c),
            ]
    lines = [
        "# Performance (CPU; one GPU section)",
        "",
        "Each section was measured by the command beside its figures; a run of some sections keeps the other",
        "sections' figures. Compare figures of one section (one run): these machines are shared and noisy.",
        "",
        "| section | measured at | machine | threads | load average start / end |",
        "|---|---|---|---|---|",
    ]
    for name, info in sections.items():
        m = info["machine"]
        lines.append(
            f"| {name} | {info['measured_at']} | {m['cpu_model']}, {m['cores']} cores, torch {m['torch']}, "
            f"OMP_WAIT_POLICY={m['omp_wait_policy']} | {m['threads']} | {info['load_average_start']} / "
            f"{info['load_average_end']} |"
        )
    if "epochs" in cmd:
        lines += ["", f"Epoch figures: {r['epoch_measurement']}."]
    lines += ["", "| metric | value | command |", "|---|---|---|"]
    lines += [f"| {name} | {'—' if value is None else value} | `{command}` |" for name, value, command in rows]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in r["notes"]]
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def section_epochs(results: dict, examples, num_items: int, max_batches) -> None:
    runs = {
        "sasrec_ce": {"loss_type": "ce", "alpha": 0.0},
        "sasrec_sce": {"loss_type": "sce", "alpha": 0.0},
        "btsr_ce": {"loss_type": "ce", "alpha": 0.2},
        "sasrec_ce_length_bucketed": {"loss_type": "ce", "alpha": 0.0, "length_bucketed": True},
        "sasrec_ce_bf16": {"loss_type": "ce", "alpha": 0.0, "bf16": True},
        "btsr_ce_bf16": {"loss_type": "ce", "alpha": 0.2, "bf16": True},
    }
    epochs = time_epochs(examples, num_items, runs, max_batches)
    for name, figures in epochs.items():
        print(name, figures, flush=True)
    results["epochs"] = epochs
    first = epochs["sasrec_ce"]
    results["epoch_measurement"] = (
        f"{first['batches_measured']} of {first['batches_per_epoch']} batches measured per setting"
        + (", extrapolated to the epoch" if first["extrapolated"] else " (whole epoch)")
    )
    results["batches_measured"] = first["batches_measured"]
    results["extrapolated"] = first["extrapolated"]
    results["sasrec_ce_epoch_s"] = epochs["sasrec_ce"]["epoch_s"]
    results["sasrec_sce_epoch_s"] = epochs["sasrec_sce"]["epoch_s"]
    results["btsr_ce_epoch_s"] = epochs["btsr_ce"]["epoch_s"]
    results["btsr_over_sasrec"] = round(results["btsr_ce_epoch_s"] / results["sasrec_ce_epoch_s"], 3)
    results["sce_over_ce"] = round(results["sasrec_sce_epoch_s"] / results["sasrec_ce_epoch_s"], 3)
    results["sasrec_ce_positions_per_s"] = epochs["sasrec_ce"]["labelled_positions_per_s"]
    results["sasrec_sce_positions_per_s"] = epochs["sasrec_sce"]["labelled_positions_per_s"]
    results["btsr_ce_positions_per_s"] = epochs["btsr_ce"]["labelled_positions_per_s"]
    results["sasrec_ce_epoch_s_length_bucketed"] = epochs["sasrec_ce_length_bucketed"]["epoch_s"]
    results["sasrec_ce_epoch_s_bf16"] = epochs["sasrec_ce_bf16"]["epoch_s"]
    results["btsr_ce_epoch_s_bf16"] = epochs["btsr_ce_bf16"]["epoch_s"]
    results["targets"] = {
        "sasrec_ce_epoch_s_max": 30,
        "btsr_over_sasrec_max": 1.5,
        "sce_over_ce_max": 0.6,
        "met": {
            "sasrec_ce_epoch": results["sasrec_ce_epoch_s"] <= 30,
            "btsr_over_sasrec": results["btsr_over_sasrec"] <= 1.5,
            "sce_over_ce": results["sce_over_ce"] <= 0.6,
        },
    }


BEAUTY = known_dataset_path("beauty")


def section_grouping(results: dict, examples, num_items: int, max_batches) -> None:
    """One grid against grouped attention, each pair interleaved batch by batch (same batches, same seed)."""
    settings = {"ml-1m SASRec-CE": (examples, num_items, {"loss_type": "ce", "alpha": 0.0})}
    if BEAUTY.exists():
        from data_processing import build_train_dataset, leave_one_out_split, read_interactions

        split = leave_one_out_split(read_interactions(BEAUTY, "s3rec"), max_len=MAX_LEN)
        beauty = build_train_dataset(split.train_sequences, MAX_LEN)
        reference = {"batch_size": 1024, "hidden_dropout_prob": 0.6, "attention_probs_dropout_prob": 0.6}
        settings["beauty SASRec-SCE"] = (beauty, len(split.item_vocab), {"loss_type": "sce", "alpha": 0.0, **reference})
        settings["beauty BT-SR"] = (beauty, len(split.item_vocab), {"loss_type": "sce", "alpha": 0.25, **reference})
    else:
        print(f"grouping: {BEAUTY} not found; ML-1M alone")
    figures, speedup, cells = {}, {}, {}
    for name, (data, items, setting) in settings.items():
        cells[name] = attention_cells(data, setting.get("batch_size", BATCH))
        pair = {grid: {**setting, "length_grouped_attention": grid == "grouped"} for grid in ("one_grid", "grouped")}
        measured = time_epochs(data, items, pair, max_batches)
        print(name, measured, flush=True)
        figures[name] = measured
        one, grouped = measured["one_grid"]["epoch_s"], measured["grouped"]["epoch_s"]
        speedup[name] = {"one_grid_epoch_s": one, "grouped_epoch_s": grouped, "speedup": round(one / grouped, 2)}
    results["grouping"] = {"epochs": figures, "speedup": speedup, "attention_cells": cells}


COMPILE_SHARED_LOAD = (
    "shared: two ML-1M train.py runs (benchmarks/reproduce.py) on the same 2 cores throughout, and other engineers' "
    "jobs beside them (see the section's load averages)"
)


def section_compile(results: dict, examples, num_items: int, max_batches) -> None:
    """Eager (the default layout) against torch.compile (inductor, default options, as the Trainer's
    --torch_compile), each pair interleaved batch by batch on the same batches and seed.

    Warm-up: the last (shorter) batch, then the first: the compiled model captures and generates code at the first,
    with the rows and lengths marked dynamic as the Trainer marks them, so the second and every later batch shape
    reuse that graph (`graphs_compiled` counts them). That time is `warmup_s` (compile_s: the compiled warm-up less
    the eager one); the epoch figures are steady state.
    """
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    # A cold compilation each run: inductor's on-disk caches would hand a rerun the code an earlier run generated.
    torch._inductor.config.force_disable_caches = True
    settings = {
        "sasrec_ce": {"loss_type": "ce", "alpha": 0.0},
        "btsr_ce": {"loss_type": "ce", "alpha": 0.2},
        "sasrec_sce": {"loss_type": "sce", "alpha": 0.0},
    }
    pairs = {
        f"{name} {mode}": {**setting, "compiled": mode == "compiled"}
        for name, setting in settings.items()
        for mode in ("eager", "compiled")
    }
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    measured = time_epochs(examples, num_items, pairs, max_batches, warmup=(-1, 0))
    figures = {}
    for name in settings:
        eager, compiled = measured[f"{name} eager"], measured[f"{name} compiled"]
        print(name, eager, compiled, flush=True)
        figures[name] = {
            "eager_epoch_s": eager["epoch_s"],
            "compiled_epoch_s": compiled["epoch_s"],
            "compiled_over_eager": round(compiled["epoch_s"] / eager["epoch_s"], 3),
            "eager_warmup_s": eager["warmup_s"],
            "compiled_warmup_s": compiled["warmup_s"],
            "compile_s": round(compiled["warmup_s"] - eager["warmup_s"], 1),
        }
    results["compile"] = {
        "epochs": measured,
        "summary": figures,
        "graphs_compiled": torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before,
        "graph_breaks": sum(torch._dynamo.utils.counters["graph_break"].values()),
        "shared_machine": COMPILE_SHARED_LOAD,
    }


def attention_cells(examples, batch_size: int) -> dict:
    """Why grouping pays: the training rows' lengths, and the (query, key) cells attention computes over an epoch of
    the benchmark's batches on one grid per batch (rows x longest row squared) and per length group, per item
    position."""
    from modeling_btsr.attention_btsr import length_group_bounds

    lengths = np.asarray([len(ids) for ids in examples.dataset["input_ids"]])
    one_grid = grouped = 0
    for rows in batch_orders(examples.dataset, lengths, length_bucketed=False, batch_size=batch_size):
        batch = np.sort(lengths[rows])
        one_grid += len(batch) * int(batch[-1]) ** 2
        bounds = length_group_bounds(batch.tolist()) or [(0, len(batch), int(batch[-1]))]
        grouped += sum((end - start) * grid_len**2 for start, end, grid_len in bounds)
    items = int(lengths.sum())
    return {
        "median_length": float(np.median(lengths)),
        "max_length": int(lengths.max()),
        "one_grid_cells_per_item": round(one_grid / items, 1),
        "grouped_cells_per_item": round(grouped / items, 1),
        "one_grid_over_grouped": round(one_grid / grouped, 1),
    }


GPU_EPOCHS = 20


def section_gpu(results: dict, examples, num_items: int, device: str, quick: bool = False) -> None:
    """The `epochs` section's settings on a GPU, 20 whole epochs each (fp32, as on the CPU), beside the CPU figures;
    `quick`: one epoch of 4 batches."""
    settings = {
        "sasrec_ce": {"loss_type": "ce", "alpha": 0.0, "device": device},
        "sasrec_sce": {"loss_type": "sce", "alpha": 0.0, "device": device},
        "btsr_ce": {"loss_type": "ce", "alpha": 0.2, "device": device},
    }
    n_epochs = 1 if quick else GPU_EPOCHS
    epochs = time_epochs(examples, num_items, settings, max_batches=4 if quick else None, epochs=n_epochs)
    gpu = {
        "device": torch.cuda.get_device_name(0),
        "epochs_measured": n_epochs,
        "extrapolated": epochs["sasrec_ce"]["extrapolated"],
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        **{f"{name}_epoch_s": figures["epoch_s"] for name, figures in epochs.items()},
        "btsr_over_sasrec": round(epochs["btsr_ce"]["epoch_s"] / epochs["sasrec_ce"]["epoch_s"], 3),
        "sce_over_ce": round(epochs["sasrec_sce"]["epoch_s"] / epochs["sasrec_ce"]["epoch_s"], 3),
        "cpu_reference_epoch_s": {k: results.get(f"{k}_epoch_s") for k in ("sasrec_ce", "sasrec_sce", "btsr_ce")},
        "settings": epochs,
    }
    for name, figures in epochs.items():
        print(name, figures, flush=True)
    results["gpu"] = gpu


def profile_step(run: "EpochRun", index: int) -> dict:
    """One training step of `run` cut at the encoder / prediction-loss boundary, each part timed on its own:
    encoder forward, loss forward, loss backward (into the hidden states and the item embeddings), encoder
    backward, optimizer step. Collation is done first and not timed."""
    rows = run.batches[index]
    batch = run.collate([run.dataset[int(i)] for i in rows])
    model = run.model
    marks = [time.perf_counter()]
    hidden = model.btsr(batch["input_ids"]).last_hidden_state
    marks.append(time.perf_counter())
    detached = hidden.detach().requires_grad_()
    loss, count, is_sum = model.prediction_loss(detached, batch["labels"], batch["input_ids"])
    loss = loss / count if is_sum else loss
    marks.append(time.perf_counter())
    loss.backward()
    marks.append(time.perf_counter())
    hidden.backward(detached.grad)
    marks.append(time.perf_counter())
    run.optimizer.step()
    run.optimizer.zero_grad()
    marks.append(time.perf_counter())
    parts = ("encoder_forward", "loss_forward", "loss_backward", "encoder_backward", "optimizer")
    return {part: marks[i + 1] - marks[i] for i, part in enumerate(parts)}


def loss_operators(run: "EpochRun", index: int, repeats: int = 3, top: int = 8) -> dict:
    """The prediction loss alone (forward + backward into the hidden states and item embeddings) on batch `index`
    of `run`, under torch.profiler: the `top` operators by self CPU time (ms per batch); for SCE also how many of
    the bucket cells (`n_b x b_x`) are some position's winning bucket, the only cells whose row of probabilities
    backward uses."""
    from torch.profiler import profile

    batch = run.collate([run.dataset[int(i)] for i in run.batches[index]])
    model = run.model
    with torch.no_grad():
        hidden = model.btsr(batch["input_ids"]).last_hidden_state
    hidden.requires_grad_()
    with profile() as prof:
        for _ in range(repeats):
            loss, picked, _ = model.prediction_loss(hidden, batch["labels"], batch["input_ids"])
            loss.backward()
    operators = sorted(prof.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    labelled = int((batch["labels"] != -100).sum())
    config = model.config
    found = {
        "operators_self_ms_per_batch": {
            event.key: round(event.self_cpu_time_total / 1000 / repeats, 1) for event in operators[:top]
        },
        "total_self_ms_per_batch": round(sum(event.self_cpu_time_total for event in operators) / 1000 / repeats, 1),
        "labelled_positions": labelled,
    }
    if config.loss_type == "sce":
        found["bucket_cells"] = config.sce_n_buckets * min(config.sce_bucket_size_x, labelled)
        found["winning_cells"] = int(picked)
    return found


def section_profile(results: dict, examples, num_items: int, batches: int = 8) -> None:
    """Where a CE and an SCE step spend their time (same batches, interleaved): the SCE / CE epoch ratio cannot go
    below (shared encoder + optimizer) / CE step, however cheap SCE's loss is."""
    runs = {"ce": EpochRun(examples, num_items, "ce", 0.0), "sce": EpochRun(examples, num_items, "sce", 0.0)}
    for run in runs.values():
        profile_step(run, len(run.batches) - 1)  # warm-up
    samples = {name: [] for name in runs}
    for index in range(batches):
        for name, run in runs.items():
            samples[name].append(profile_step(run, index))
    profile = {}
    for name, steps in samples.items():
        parts = {part: round(float(np.median([s[part] for s in steps])), 4) for part in steps[0]}
        parts["step"] = round(sum(parts.values()), 4)
        profile[name] = parts
    shared = sum(profile["ce"][part] for part in ("encoder_forward", "encoder_backward", "optimizer"))
    floor = shared / profile["ce"]["step"]
    results["profile"] = {
        "seconds_per_batch_median": profile,
        "batches": batches,
        "sce_over_ce_step": round(profile["sce"]["step"] / profile["ce"]["step"], 3),
        "sce_over_ce_floor_if_sce_loss_were_free": round(floor, 3),
        "sce_loss": loss_operators(runs["sce"], 0),
        "ce_loss": loss_operators(runs["ce"], 0),
        "note": "median seconds per batch of 256 (collation excluded); loss_* = the prediction loss alone "
        "(CE: chunked full softmax over 3,416 items; SCE: bucketed), encoder_* = the shared SASRec encoder",
    }
    print(results["profile"], flush=True)


def section_recommend(results: dict, split, examples, num_items: int) -> None:
    results.update(time_recommend(split, examples, num_items))
    print({k: results[k] for k in ("recommend_p50_ms", "recommend_p99_ms", "recommend_batch_users_per_s")}, flush=True)


def section_memory(results: dict, examples, threads: int) -> None:
    positions = int(round(BATCH * examples.mean_labelled_positions))
    memory = {}
    batch_file = RESULTS / ".memory_batch.pt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    save_memory_batch(examples, batch_file)
    child = lambda loss, n: run_memory_child(batch_file, loss, n, sce_buckets(examples), threads)  # noqa: E731
    for label, n in (("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000)):
        memory[f"sce_{label}"] = child("sce", n)
        results[f"sce_{label}_items_peak_mb"] = memory[f"sce_{label}"].get("peak_mb")
        if label == "1m":
            # 3 x 27k x 1M x 64 x 2 FLOP (~10 TFLOP) is minutes on 2 cores: computed, not run.
            memory["ce_1m"] = {"computed": True, "positions": positions, **ce_logits_mb(positions, n)}
            memory["sce_1m_checkpointing"] = child("sce+checkpointing", n)
            results["sce_1m_items_checkpointing_peak_mb"] = memory["sce_1m_checkpointing"].get("peak_mb")
        else:
            memory[f"ce_{label}"] = child("ce", n)
            results[f"ce_{label}_items_peak_mb"] = memory[f"ce_{label}"].get("peak_mb")
        print(label, {k: v for k, v in memory.items() if label in k}, flush=True)
    batch_file.unlink()
    results["memory"] = memory
    mark_computed_ce_1m(results)
    results["memory_note"] = (
        "peak RSS (VmHWM; ru_maxrss would report the parent's peak, Linux keeps it across fork/exec) of a fresh "
        "process that loads torch and one saved ML-1M batch of 256 (the first "
        "batch of the seeded shuffle, padded to its longest row) with item ids spread over the catalogue, then "
        "runs one forward/backward/Adam step; before_model_mb is its RSS before the model was built. "
        "'+checkpointing': the same step with model.activation_checkpointing_enable() (same gradients, "
        "tests/test_modeling.py::test_gradient_checkpointing_gives_the_same_loss_and_gradients)."
    )


def mark_computed_ce_1m(results: dict) -> None:
    """`ce_1m_items_peak_mb` is computed, not measured (the issue's "computed and marked so"): the unchunked float32
    logits alone. Our chunked CE would fit in memory but a step is ~10 TFLOP, minutes here, so it is not run."""
    computed = results.get("memory", {}).get("ce_1m", {})
    if computed.get("computed"):
        results["ce_1m_items_peak_mb"] = computed["logits_mb"]
        results["ce_1m_items_peak_mb_is"] = (
            f"computed, not run: the ({computed['positions']:,} positions x 1M items) float32 logits of unchunked CE "
            "alone (memory.ce_1m); our chunked CE was not run at 1M items (about 10 TFLOP a step)"
        )


# InfoNCE / CL4SRec / DuoRec next to BT-SR at the preset settings of modeling_btsr/arguments.py (issue: contrastive
# baselines): per-epoch time at batch 256, and at 1024 (InfoNCE's in-batch negatives grow with the batch).
def _objective(preset_name: str) -> dict:
    """The loss settings of one of train.py's presets: its prediction loss, alpha and self-supervised settings."""
    preset = PRESETS[preset_name]
    ssl = {k: v for k, v in preset.items() if k.startswith(("ssl_", "view_", "infonce_", "cl4srec_"))}
    return {"loss_type": preset["loss_type"], "alpha": preset["bt_alpha"], **ssl}


OBJECTIVES = {
    "sasrec_ce": {"loss_type": "ce", "alpha": 0.0},
    "btsr": {"loss_type": "ce", "alpha": 0.2},
    "cl4srec": _objective("cl4srec"),
    "duorec": _objective("duorec"),
}


def time_ssl_losses(batch_sizes=(256, 1024, 4096), hidden: int = 64, repeats: int = 3) -> dict:
    """The self-supervised loss alone, forward + backward on random (batch, hidden) views: Barlow Twins costs
    O(batch * hidden^2) and a (hidden, hidden) matrix, InfoNCE O(batch^2 * hidden) and a (2 batch, 2 batch) one.
    matrix_mb = the float32 similarity / cross-correlation matrix alone (3 copies for InfoNCE: logits, softmax,
    gradient); both losses also hold (batch, hidden) copies of their views, which grow linearly for both."""
    from modeling_btsr.losses_btsr import barlow_twins_loss, infonce_loss

    out = {}
    generator = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        for name in ("barlow_twins", "infonce"):
            times = []
            for _ in range(repeats):
                a = torch.randn(batch, hidden, generator=generator, requires_grad=True)
                b = torch.randn(batch, hidden, generator=generator, requires_grad=True)
                t0 = time.perf_counter()
                loss = barlow_twins_loss(a, b) if name == "barlow_twins" else infonce_loss(a, b, temperature=1.0)
                loss.backward()
                times.append(time.perf_counter() - t0)
            cells = hidden * hidden if name == "barlow_twins" else 3 * (2 * batch) ** 2
            out[f"{name}_b{batch}"] = {
                "ms": round(1e3 * float(np.median(times)), 2),
                "matrix_mb": round(cells * 4 / 2**20, 3),
            }
    return out


def section_objectives(results: dict, examples, num_items: int, max_batches) -> None:
    settings = {
        f"{name}_b{batch}": {**setting, "batch_size": batch}
        for batch in (256, 1024)
        for name, setting in OBJECTIVES.items()
    }
    epochs = {}
    for batch in (256, 1024):  # one interleaved group per batch size (equal batch counts within a group)
        group = {k: v for k, v in settings.items() if v["batch_size"] == batch}
        cap = None if max_batches is None else max(1, max_batches * BATCH // batch)
        epochs.update(time_epochs(examples, num_items, group, cap))
    for name, figures in epochs.items():
        print(name, figures, flush=True)
    ssl = time_ssl_losses()
    print(ssl, flush=True)
    results["objectives"] = {
        "epochs": epochs,
        "ssl_loss": ssl,
        "over_sasrec_b256": {
            name: round(epochs[f"{name}_b256"]["epoch_s"] / epochs["sasrec_ce_b256"]["epoch_s"], 3)
            for name in OBJECTIVES
        },
        "settings": OBJECTIVES,
    }


def section_recbole(results: dict, data: Path, max_batches, threads: int, examples, num_items: int) -> None:
    """RecBole's SASRec (its own virtualenv, benchmarks/recbole_sasrec.py) and ours on the same data and
    hyper-parameters, measured back to back in this run: training targets (labelled positions) per second."""
    import recbole_sasrec

    recbole = recbole_sasrec.measure(data, max_batches=max_batches or 30, threads=threads)
    ours = time_epochs(examples, num_items, {"sasrec_ce": {"loss_type": "ce", "alpha": 0.0}}, max_batches or 8)
    results["recbole"] = recbole
    results["recbole_sasrec_targets_per_s"] = recbole["targets_per_s"]
    results["recbole_sasrec_epoch_s_extrapolated"] = recbole["extrapolated_epoch_s"]
    results["ours_sasrec_ce_targets_per_s"] = ours["sasrec_ce"]["labelled_positions_per_s"]
    results["ours_over_recbole_targets_per_s"] = round(
        results["ours_sasrec_ce_targets_per_s"] / results["recbole_sasrec_targets_per_s"], 1
    )
    print({k: results[k] for k in results if "recbole" in k}, flush=True)


def peers_keys(results: dict, peers: dict) -> None:
    """The peers' figures (benchmarks/peers_sasrec.py) as performance.json keys: mean epoch seconds of one
    interleaved run, each peer's epoch over ours, and the test NDCG@10 of all three after the same epochs."""
    summary = peers["summary"]
    results["peers"] = {"command": peers["command"], "epochs": peers["epochs"], "summary": summary}
    results["peers_epochs"] = peers["epochs"]
    results["rectools_sasrec_epoch_s"] = summary["rectools"]["epoch_s_mean"]
    results["replay_sasrec_epoch_s"] = summary["replay"]["epoch_s_mean"]
    results["ours_sasrec_ce_epoch_s_peers_run"] = summary["ours"]["epoch_s_mean"]
    results["ours_vs_rectools_epoch_ratio"] = summary["rectools"]["ours_speedup"]
    results["ours_vs_replay_epoch_ratio"] = summary["replay"]["ours_speedup"]
    results["peers_test_ndcg@10"] = " / ".join(str(summary[n]["test_ndcg@10"]) for n in ("ours", "rectools", "replay"))
    if "ours-bf16" in summary:  # ours under bf16 autocast, against the same float32 peers
        results["ours_bf16_sasrec_ce_epoch_s_peers_run"] = summary["ours-bf16"]["epoch_s_mean"]
        results["ours_bf16_vs_rectools_epoch_ratio"] = summary["rectools"]["ours_bf16_speedup"]
        results["ours_bf16_vs_replay_epoch_ratio"] = summary["replay"]["ours_bf16_speedup"]
        results["ours_bf16_test_ndcg@10"] = summary["ours-bf16"]["test_ndcg@10"]


def section_peers(results: dict, data: Path, threads: int) -> None:
    """RecTools' and RePlay's SASRec against ours, epochs interleaved in one run (benchmarks/peers_sasrec.py)."""
    import peers_sasrec

    peers = peers_sasrec.measure(data, threads=threads)
    peers_sasrec.RESULT.write_text(json.dumps(peers, indent=2) + "\n")
    peers_keys(results, peers)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 measured batches per setting, extrapolated")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=[x for x in SECTIONS if x not in ("recbole", "peers", "gpu", "compile")],
        help="what to measure; other sections' figures in performance.json are kept",
    )
    parser.add_argument(
        "--render_only",
        action="store_true",
        help="rewrite performance.md (and the keys derived from measured ones) from performance.json; measure nothing",
    )
    child_args = ("BATCH", "LOSS", "N_ITEMS", "N_BUCKETS")
    parser.add_argument("--memory-child", nargs=4, metavar=child_args, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        batch_file, loss_type, n_items, n_buckets = args.memory_child
        memory_child(Path(batch_file), loss_type, int(n_items), int(n_buckets))
        return
    if args.render_only:
        path = RESULTS / "performance.json"
        results = json.loads(path.read_text())
        mark_computed_ce_1m(results)
        write_results(results, path, started=None)
        print(f"rewrote {path} and performance.md from the measured figures")
        return
    if not args.data.exists():
        print(f"skipped: {args.data} not found (the SASRec ML-1M file); nothing written")
        return
    max_batches = 4 if args.quick else None
    started = time.perf_counter()
    path = RESULTS / "performance.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "sections" not in results and "command" in results:  # a file from before sections: one run measured all
        old = results["machine"]
        info = {
            "command": results["command"],
            "measured_at": "2026-11 (earlier file, one run of all sections)",
            "machine": {k: v for k, v in old.items() if not k.startswith("load")},
            "load_average_start": old.get("load_average_start"),
            "load_average_end": old.get("load_average_end"),
        }
        results["sections"] = {name: dict(info) for name in ("epochs", "recommend", "memory")}
        for stale in ("command", "recbole_comparison"):  # the old format's keys, now per section
            results.pop(stale, None)
    results.setdefault("sections", {})
    if set(args.sections) - {"gpu"}:  # the CPU figures' machine; the GPU section carries its own
        results["machine"] = machine_info()
    split, examples = load(args.data)
    num_items = len(split.item_vocab)
    results["dataset"] = {
        "sequences": len(examples),
        "num_items": num_items,
        "mean_labelled_positions": round(float(examples.mean_labelled_positions), 2),
        "sce_n_buckets": sce_buckets(examples),
        "sce_bucket_size_y": 256,
    }
    for name in args.sections:
        load_start = [round(x, 2) for x in os.getloadavg()]
        measured_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        if name == "epochs":
            section_epochs(results, examples, num_items, max_batches)
        elif name == "grouping":
            section_grouping(results, examples, num_items, max_batches)
        elif name == "profile":
            section_profile(results, examples, num_items, batches=2 if args.quick else 8)
        elif name == "recommend":
            section_recommend(results, split, examples, num_items)
        elif name == "memory":
            section_memory(results, examples, args.threads)
        elif name == "objectives":
            section_objectives(results, examples, num_items, max_batches)
        elif name == "compile":
            section_compile(results, examples, num_items, max_batches)
        elif name == "recbole":
            section_recbole(results, args.data, max_batches, args.threads, examples, num_items)
        elif name == "peers":
            section_peers(results, args.data, args.threads)
        elif name == "gpu":
            if not torch.cuda.is_available():
                raise SystemExit("--sections gpu: no CUDA device visible to torch")
            section_gpu(results, examples, num_items, "cuda", quick=args.quick)
        python = "python3" if name == "gpu" else ".venv/bin/python"  # the GPU machine's interpreter, not our venv
        data = "" if args.data == DEFAULT_DATA else f" --data {args.data}"
        command = f"{python} {SCRIPT}" + (" --quick" if args.quick else "") + data + f" --sections {name}"
        results["sections"][name] = {
            "command": command,
            "measured_at": measured_at,
            "machine": machine_info(),
            "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        }
        write_results(results, path, started)  # after each section: a later failure keeps what was measured
    print(f"wrote {path} and performance.md in {results['benchmark_wall_s']} s")


def write_results(results: dict, path: Path, started: float | None) -> None:
    """Writes both files; `started` None (a re-render) keeps the last measuring run's `benchmark_wall_s`."""
    speed_file = RESULTS / "evaluation_speed.json"
    if speed_file.exists():  # measured by evaluation_speed.py on a trained model; mirrored for the key list
        speed = json.loads(speed_file.read_text())
        results["eval_all_users_s"] = speed["eval_all_users_s"]
        results["eval_all_users_command"] = speed["command"]
    if started is not None:
        results["benchmark_wall_s"] = round(time.perf_counter() - started, 1)
    results["notes"] = NOTES
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "performance.md").write_text(markdown(results))


NOTES = [
    "Epoch time = wall time of collation + forward + backward + Adam step (batch 256, max_len 200, d 64, "
    "2 blocks, 1 head), no evaluation; per-epoch figures are measured batches scaled by the share of the "
    "6,040 sequences they cover. The settings of one section run interleaved batch by batch (one model each), so "
    "load from other jobs affects them alike.",
    "Timings on a shared machine depend on its other load (see load averages): compare figures of one section.",
    "CE is computed in chunks of positions with its gradient formed in the same pass (no (positions x items) "
    "tensor), so CE at 1M items would fit in memory (one 64 x 1M chunk, 256 MB, plus 4 x 256 MB of embedding, "
    "gradient and Adam state) but takes ~10 TFLOP per step; it is computed, not run. memory.ce_1m gives the "
    "(positions x items) float32 logits an unchunked CE would hold.",
    "sasrec_ce_epoch_s_length_bucketed: rows sorted by length before batching (a data-side option, not used "
    "by the Trainer here); attention and padding cost shrink with the batch's longest row.",
    "*_bf16: the forward under bf16 autocast, as train.py --bf16 runs it (the chunked CE's three products in bf16 "
    "too, its softmax and gradient sums in float32); the gain depends on the CPU's bf16 instructions "
    "(avx512_bf16 here); accuracy at bf16: benchmarks/peers_sasrec.py's ours-bf16 after the same epochs.",
    "grouping: the same batches and seed with attention on one grid per batch (length_grouped_attention=False) and "
    "per group of rows of similar length (the default, also in the epochs section); Beauty at its reference "
    "settings (batch 1024, dropout 0.6, SCE with its paper's bucket formula, BT-SR alpha 0.25). The gain follows the "
    "padding a random batch carries: Beauty's rows are mostly a few items long, ML-1M's mostly near 200.",
    "eval_all_users_s is measured by benchmarks/evaluation_speed.py on the trained flagship (its command beside "
    "it) and mirrored here.",
    "objectives: CL4SRec encodes two augmented views besides the prediction pass (3 encoder passes), DuoRec a "
    "second dropout pass of the sequence and the same-target partner (3), BT-SR the partner alone (2). The SSL "
    "loss rows time the loss alone on random views: InfoNCE's (2B x 2B) similarities grow with the square of "
    "the batch (its negatives), Barlow Twins' (d x d) cross-correlation does not grow with the batch at all.",
    "compile: torch.compile with inductor's defaults (train.py's --torch_compile) against eager, interleaved batch "
    "by batch; compiled, the model runs the padded layout (one grid per batch, every position computed, CE as one "
    "(positions x items) product), eager the packed, length-grouped one. Compilation (the first two batches, less "
    "eager's; inductor's caches off, so a cold compilation) is apart from the steady-state epoch. Run only when "
    "asked (--sections compile): the machine was shared with two training runs and other jobs "
    "(compile.shared_machine), so read the ratios, not the seconds.",
    "peers: RecTools 0.19 and RePlay 0.22 SASRec in their own virtualenvs against ours, whole epochs interleaved "
    "one implementation at a time (benchmarks/peers_sasrec.py, its results/peers_sasrec.json lists the settings that "
    "differ); ratios are a peer's mean epoch over ours in the same run.",
    "recbole: RecBole 1.2.1 in its own virtualenv (benchmarks/recbole_sasrec.py lists its compatibility fixes), "
    "a capped number of batches timed and its full epoch extrapolated (marked so); RecBole trains one target per "
    "prefix row, re-encoding the prefix each time, where ours trains every position of a sequence in one pass.",
]


if __name__ == "__main__":
    main()
