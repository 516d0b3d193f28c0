#!/usr/bin/env python
"""Peak memory per process of a BT-SR training step on a synthetic 10M-item table: 1 process against 2 under FSDP2.

    .venv/bin/python benchmarks/fsdp_memory.py                      # 10M items, 1 and 2 processes (gloo, CPU)
    .venv/bin/python benchmarks/fsdp_memory.py --items 1000000 --processes 2

One fresh process group per setting (torch.multiprocessing, gloo). With 1 process the model is plain (the whole
table, its gradient and AdamW's two moments in one process); with N it is wrapped by `fully_shard` as accelerate's
FSDP2 preparation wraps it (each block, the item table, the final LayerNorm, the root), so the table is split by
rows and scored shard by shard (`modeling_btsr.sharding_btsr`). The model is built on the meta device and each
process materialises only its own rows, as FSDP's memory-efficient loading does, so the peak is that of training,
not of a whole table built first. Each process runs `--steps` AdamW steps of CE + alpha x Barlow Twins on random
sequences; recorded per process: peak RSS (`ru_maxrss`, imports included), the bytes of its table rows, of their
gradient and of its optimizer state, and the last step's time. Results go to `results/fsdp_memory.json`.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import RESULTS, cpu_model, write_result  # noqa: E402


def build(num_items: int, hidden: int, world: int):
    from modeling_btsr import BTSRConfig
    from modeling_btsr.modeling_btsr import BTSRForSequentialRecommendation

    config = BTSRConfig(
        num_items=num_items,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=1,
        max_position_embeddings=50,
        loss_type="ce",
        bt_alpha=0.1,
    )
    if world == 1:
        return BTSRForSequentialRecommendation(config)
    from torch.distributed.fsdp import fully_shard

    with torch.device("meta"):
        model = BTSRForSequentialRecommendation(config)
    for block in model.btsr.blocks:
        fully_shard(block)
    fully_shard(model.btsr.item_embeddings)
    fully_shard(model.btsr.final_layernorm, reshard_after_forward=False)
    fully_shard(model)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(torch.distributed.get_rank())
    with torch.no_grad():
        for param in model.parameters():
            local = param.to_local()
            local.copy_(torch.randn(local.shape, generator=generator) * 0.02)
    return model


def _local_bytes(tensor) -> int:
    if tensor is None:
        return 0
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def measure(rank: int, world: int, args, init_file: str, results) -> None:
    torch.set_num_threads(max(1, args.threads))
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = build(args.items, args.hidden, world)
        table = model.btsr.item_embeddings.weight
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(100 + rank)
        rows = args.batch // world  # the same global batch whatever the number of processes
        step_seconds = []
        for _ in range(args.steps):
            ids = torch.randint(1, args.items + 1, (rows, args.length), generator=generator)
            pairs = torch.randint(1, args.items + 1, (rows, args.length), generator=generator)
            labels = torch.randint(1, args.items + 1, (rows, args.length), generator=generator)
            started = time.perf_counter()
            out = model(input_ids=ids, labels=labels, pair_input_ids=pairs, num_items_in_batch=args.batch * args.length)
            (out.prediction_loss * world + 0.1 * out.ssl_loss).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)
            step_seconds.append(time.perf_counter() - started)
        state = optimizer.state[table]
        results[rank] = {
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "table_mb": _local_bytes(table) / 2**20,
            "table_grad_mb": _local_bytes(table.grad) / 2**20,
            "table_optimizer_state_mb": sum(_local_bytes(v) for v in state.values() if torch.is_tensor(v)) / 2**20,
            "all_optimizer_state_mb": sum(
                _local_bytes(v) for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
            )
            / 2**20,
            "sharded": model.btsr.item_shard() is not None,
            "last_step_s": round(step_seconds[-1], 2),
        }
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def run(world: int, args) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        results = mp.Manager().dict()
        mp.start_processes(
            measure, args=(world, args, os.path.join(tmp, "init"), results), nprocs=world, start_method="spawn"
        )
        return [dict(results[rank]) for rank in range(world)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=8, help="global batch of sequences")
    parser.add_argument("--length", type=int, default=8, help="items per sequence")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    command = "python benchmarks/fsdp_memory.py " + " ".join(sys.argv[1:])
    settings = {}
    for world in args.processes:
        per_process = run(world, args)
        settings[str(world)] = per_process
        peak = max(p["peak_rss_mb"] for p in per_process)
        print(f"{world} process(es): peak RSS per process {peak:,.0f} MB, {json.dumps(per_process[0])}", flush=True)
    result = {
        "command": command,
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__},
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "items": args.items,
        "hidden": args.hidden,
        "global_batch": [args.batch, args.length],
        "steps": args.steps,
        "per_process_by_world_size": settings,
        "note": "peak RSS includes the imports (torch, transformers: about 0.5 GB) and the process's share of the "
        "table, its gradient and AdamW's two moments (4 x table bytes / processes) plus the step's activations",
    }
    write_result("fsdp_memory", result)
    print(f"wrote {RESULTS / 'fsdp_memory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
