"""Shared check: a batch-statistic loss on 2 gloo processes x B/2 equals the 1-process loss on B rows."""

import os
import tempfile

import torch


def _worker(rank, world_size, init_file, loss_fn, z_a, z_b, results):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    half = z_a.shape[0] // world_size
    a = z_a[rank * half : (rank + 1) * half].clone().requires_grad_(True)
    b = z_b[rank * half : (rank + 1) * half].clone().requires_grad_(True)
    loss = loss_fn(a, b)
    loss.backward()
    results[rank] = (loss.detach(), a.grad, b.grad)
    torch.distributed.destroy_process_group()


def assert_two_processes_match_one(loss_fn, rows: int = 16, dim: int = 8, seed: int = 5) -> None:
    """`loss_fn(z_a, z_b)` (picklable) gives the same loss on both ranks as on the whole batch, and each rank's
    gradient, after DDP's averaging over 2 processes, equals the single-process gradient of its rows."""
    import torch.multiprocessing as mp

    gen = torch.Generator().manual_seed(seed)
    z_a = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    z_b = z_a + torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    a, b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    single = loss_fn(a, b)
    single.backward()
    with tempfile.TemporaryDirectory() as tmp:
        results = mp.Manager().dict()
        mp.start_processes(
            _worker,
            args=(2, os.path.join(tmp, "init"), loss_fn, z_a, z_b, results),
            nprocs=2,
            join=True,
            start_method="spawn",
        )
        results = dict(results)
    half = rows // 2
    for rank in range(2):
        loss, grad_a, grad_b = results[rank]
        assert torch.allclose(loss, single.detach(), rtol=1e-12)
        mine = slice(rank * half, (rank + 1) * half)
        # all_gather's backward sums every rank's use of these rows; DDP then divides by the world size.
        assert torch.allclose(grad_a / 2, a.grad[mine], rtol=1e-10, atol=1e-14)
        assert torch.allclose(grad_b / 2, b.grad[mine], rtol=1e-10, atol=1e-14)
