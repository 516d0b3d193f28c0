#!/usr/bin/env python
"""Numerical checks a GPU session runs before it times anything (`bash benchmarks/gpu_session.sh check`).

SCE's backward takes one of two paths: on the CPU a loop of small products over each bucket's winning rows, elsewhere
two batched products over a zero block holding those rows (`losses_btsr.PER_BUCKET_BACKWARD_DEVICES`). The tests
run both on the CPU; this script runs the batched one where it is used, on `--device`, against the CPU's per-bucket
path on the same inputs and buckets: float64 (equal up to summation order) and bfloat16 autocast (close to float32).

    python3 benchmarks/gpu_checks.py --device cuda     # exit 1 on a mismatch
"""

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling_btsr import losses_btsr  # noqa: E402


def _problem(dtype: torch.dtype, seed: int = 0) -> dict:
    """Hidden states, items, targets and buckets shaped like a small SCE batch (positions picked by several buckets,
    targets inside and outside the candidate lists)."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(300, 16, generator=gen, dtype=dtype)
    items = torch.randn(120, 16, generator=gen, dtype=dtype)
    targets = torch.randint(1, 121, (300,), generator=gen)
    centres = torch.randn(12, 16, generator=gen, dtype=dtype)
    positions = (centres @ hidden.T).topk(60, dim=1).indices
    candidates = (centres @ items.T).topk(40, dim=1).indices
    return {"hidden": hidden, "targets": targets, "items": items, "positions": positions, "candidates": candidates}


@contextlib.contextmanager
def _backward_path(device: str, per_bucket: bool):
    saved = losses_btsr.PER_BUCKET_BACKWARD_DEVICES
    losses_btsr.PER_BUCKET_BACKWARD_DEVICES = (torch.device(device).type,) if per_bucket else ()
    try:
        yield
    finally:
        losses_btsr.PER_BUCKET_BACKWARD_DEVICES = saved


def _loss_and_grads(problem: dict, device: str, autocast_dtype: torch.dtype | None = None):
    hidden = problem["hidden"].to(device).requires_grad_()
    items = problem["items"].to(device).requires_grad_()
    moved = [problem[k].to(device) for k in ("targets", "positions", "candidates")]
    with torch.autocast(
        torch.device(device).type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
    ):
        states = hidden.to(autocast_dtype) if autocast_dtype is not None else hidden
        total, picked = losses_btsr.bucket_cross_entropy(states, moved[0], items, moved[1], moved[2])
    grads = torch.autograd.grad(total / picked, [hidden, items])
    return total.detach().cpu(), int(picked), [g.cpu() for g in grads]


def compare_sce(device: str) -> list[str]:
    """Mismatches between the batched backward on `device` and the CPU's per-bucket one; empty when all agree."""
    problems = []
    cases = (("float64", torch.float64, None, 1e-10), ("bf16 autocast", torch.float32, torch.bfloat16, 2e-2))
    for label, dtype, autocast_dtype, tolerance in cases:
        problem = _problem(dtype)
        with _backward_path("cpu", per_bucket=True):  # the reference: float, the CPU's per-bucket path
            want = _loss_and_grads(problem, "cpu")
        with _backward_path(device, per_bucket=False):
            got = _loss_and_grads(problem, device, autocast_dtype)
        if got[1] != want[1]:
            problems.append(f"{label}: {got[1]} picked positions on {device}, {want[1]} on cpu")
        loss_error = abs(float(got[0]) - float(want[0])) / abs(float(want[0]))
        grad_errors = [float((g.double() - w.double()).norm() / w.double().norm()) for g, w in zip(got[2], want[2])]
        print(
            f"{label}: loss relative error {loss_error:.2e}, gradient relative errors "
            f"(hidden, items) {grad_errors[0]:.2e}, {grad_errors[1]:.2e}",
            flush=True,
        )
        if max(loss_error, *grad_errors) > tolerance:
            problems.append(f"{label}: relative error above {tolerance:g}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="where the batched backward runs (default cuda; cpu works)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_checks.py: no CUDA device here", file=sys.stderr)
        return 2
    problems = compare_sce(args.device)
    for problem in problems:
        print(f"gpu_checks.py: SCE on {args.device}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
