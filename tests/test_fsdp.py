"""FSDP2 with the item table split by rows, on 2 CPU processes (gloo), against one process on the same global batch.

accelerate itself runs FSDP on GPUs only (on a CPU `accelerate launch --use_fsdp` runs DDP, which train.py
refuses), so the model is wrapped here by accelerate's own FSDP2 preparation (`fsdp2_prepare_model`, the call the
Trainer makes on a GPU) and trained by hand, one step, the way `BTSRTrainer.compute_loss` scales each process's loss.
"""

import os
import tempfile
from types import SimpleNamespace

import pytest
import torch

from modeling_btsr import BTSRConfig
from modeling_btsr.arguments import SettingsError, resolve_settings
from modeling_btsr.evaluation import evaluate_ranking
from modeling_btsr.losses_btsr import cross_entropy_loss, scalable_cross_entropy_loss
from modeling_btsr.modeling_btsr import BTSRForSequentialRecommendation
from modeling_btsr.training_run import save_model_atomically

WORLD = 2
NUM_ITEMS = 37  # the model's table: 38 rows with padding, 19 per process
ALPHA = 0.2


def _config(**overrides) -> BTSRConfig:
    return BTSRConfig(
        num_items=NUM_ITEMS,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=6,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        bt_alpha=ALPHA,
        **{"loss_type": "ce", **overrides},
    )


def _model() -> BTSRForSequentialRecommendation:
    torch.manual_seed(0)
    return BTSRForSequentialRecommendation(_config()).double()


def _batch() -> dict:
    """Four sequences of different lengths (two per process), each with a partner sequence."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, NUM_ITEMS + 1, (4, 6), generator=gen)
    pairs = torch.randint(1, NUM_ITEMS + 1, (4, 6), generator=gen)
    labels = torch.randint(1, NUM_ITEMS + 1, (4, 6), generator=gen)
    for row, padding in enumerate((0, 2, 4, 1)):
        ids[row, :padding] = 0
        labels[row, :padding] = -100
        pairs[row, : 3 - row % 2] = 0
    return {"input_ids": ids, "labels": labels, "pair_input_ids": pairs}


def _step(model, batch: dict, num_items_in_batch: int, world: int) -> torch.Tensor:
    """One process's training loss as BTSRTrainer forms it (the CE sum over all processes' positions, times the
    world size that data-parallel averaging divides by, plus alpha times the global Barlow Twins loss)."""
    out = model(**batch, num_items_in_batch=num_items_in_batch)
    return out.prediction_loss * world + ALPHA * out.ssl_loss


def _prepare_like_accelerate(model):
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    accelerator = SimpleNamespace(
        state=SimpleNamespace(fsdp_plugin=plugin),
        mixed_precision="no",
        device=torch.device("cpu"),
        is_main_process=torch.distributed.get_rank() == 0,
        torch_device_mesh=None,
    )
    return fsdp2_prepare_model(accelerator, model)


def _optimizer(model):
    # Adam's first step is lr * g / (|g| + eps): with the default eps, items the batch barely touches (|g| ~ eps)
    # turn 1e-12 relative differences of summation order into 1e-8 updates; a larger eps keeps the step smooth.
    return torch.optim.AdamW(model.parameters(), lr=0.01, eps=1e-4)


class _Gatherer:
    """What `evaluate_ranking` needs of an accelerator: the process layout and a row-concatenating gather."""

    def __init__(self):
        self.num_processes, self.process_index = WORLD, torch.distributed.get_rank()

    def gather(self, tensor):
        out = tensor.new_empty((WORLD * tensor.shape[0], *tensor.shape[1:]))
        torch.distributed.all_gather_into_tensor(out, tensor.contiguous())
        return out


SCE = {"n_buckets": 3, "bucket_size_x": 4, "bucket_size_y": 6}
EVAL_CONTEXTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10], [11, 12, 13, 14, 15, 16, 17]]
EVAL_TARGETS = [20, 21, 22, 23, 24]


def _sharded_ops(rank: int) -> dict:
    """The two collectives alone, uneven sizes (a process with no ids at all), against the whole table."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from modeling_btsr import sharding_btsr
    from modeling_btsr.sharding_btsr import (
        item_shard,
        sharded_cross_entropy,
        sharded_embedding,
        sharded_scalable_cross_entropy,
    )

    sharding_btsr._CHUNK_ELEMENTS = 30  # slices of 2 items for the 14 gathered positions: the streaming path

    table = _table()
    inputs = _op_inputs()
    mesh = init_device_mesh("cpu", (WORLD,))
    weight = torch.nn.Parameter(distribute_tensor(table, mesh, [Shard(0)]))
    shard = item_shard(weight)
    ids, hidden, targets, probe = (t[rank] for t in inputs)
    hidden = hidden.clone().requires_grad_(True)
    looked_up = sharded_embedding(ids, shard)
    ce = sharded_cross_entropy(hidden, targets, shard, NUM_ITEMS)
    (ce + (looked_up * probe).sum()).backward()
    out = {
        "rows": shard.rows.shape[0],
        "looked_up": looked_up.detach(),
        "ce": ce.detach(),
        "grad_hidden": hidden.grad,
        "grad_table": weight.grad.full_tensor(),
    }
    weight.grad = None
    hidden = hidden.detach().requires_grad_(True)
    generator = torch.Generator().manual_seed(10 + rank)
    total, picked = sharded_scalable_cross_entropy(
        hidden, targets, item_shard(weight), NUM_ITEMS, **SCE, generator=generator
    )
    (total / picked).backward()
    out["sce"] = (total.detach(), int(picked), hidden.grad, weight.grad.full_tensor())
    return out


def _table() -> torch.Tensor:
    """A whole table of 39 rows: padding, the items, and a mask-token row that no softmax may read."""
    return torch.randn(NUM_ITEMS + 2, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _op_inputs():
    gen = torch.Generator().manual_seed(4)
    ids = [torch.randint(0, NUM_ITEMS + 2, (6,), generator=gen), torch.zeros(0, dtype=torch.long)]
    hidden = [
        torch.randn(7, 5, generator=gen, dtype=torch.float64),
        torch.randn(3, 5, generator=gen, dtype=torch.float64),
    ]
    targets = [torch.randint(1, NUM_ITEMS + 1, (n,), generator=gen) for n in (7, 3)]
    probe = [torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.zeros(0, 5, dtype=torch.float64)]
    return ids, hidden, targets, probe


def _worker(rank, init_file, folder, results):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        out = {"ops": _sharded_ops(rank)}
        model = _prepare_like_accelerate(_model())
        table = model.btsr.item_embeddings
        calls = []
        table.register_forward_pre_hook(lambda *_: calls.append(1))  # FSDP would gather the table if it ran
        shard = model.btsr.item_shard()
        batch = _batch()
        denominator = int((batch["labels"] != -100).sum())
        mine = {k: v[rank * 2 : rank * 2 + 2] for k, v in batch.items()}
        loss = _step(model, mine, denominator, WORLD)
        loss.backward()
        grads = {name: p.grad.full_tensor() for name, p in model.named_parameters()}
        _optimizer(model).step()
        whole = model.gathered()
        out.update(
            table_rows=shard.rows.shape[0],
            table_forward_calls=len(calls),
            loss=loss.detach(),
            grads=grads,
            updated={name: p.detach() for name, p in whole.named_parameters()},
            metrics=evaluate_ranking(model, EVAL_CONTEXTS, EVAL_TARGETS, batch_size=1, accelerator=_Gatherer()),
        )
        # As the training run saves: every process gathers (a collective), the main one alone writes the folder.
        saved = model.gathered(device="cpu")
        if rank == 0:
            save_model_atomically(saved, folder)
        results[rank] = out
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fsdp") / "model"


@pytest.fixture(scope="module")
def two_processes(saved_folder):
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        results = mp.Manager().dict()
        mp.start_processes(
            _worker,
            args=(os.path.join(tmp, "init"), str(saved_folder), results),
            nprocs=WORLD,
            join=True,
            start_method="spawn",
        )
        return dict(results)


def test_sharded_lookup_and_cross_entropy_equal_the_whole_table(two_processes):
    table = _table().requires_grad_(True)
    ids, hidden, targets, probe = _op_inputs()
    for rank in range(WORLD):
        h = hidden[rank].clone().requires_grad_(True)
        looked_up = table[ids[rank]]
        ce = cross_entropy_loss(h, targets[rank], table[1 : NUM_ITEMS + 1])
        (ce + (looked_up * probe[rank]).sum()).backward()
        got = two_processes[rank]["ops"]
        assert got["rows"] == (20, 19)[rank]  # 39 rows split as torch.chunk does: 20 and 19
        torch.testing.assert_close(got["looked_up"], looked_up.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["ce"], ce.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["grad_hidden"], h.grad, rtol=1e-10, atol=1e-12)
    # The table's gradient is that of the mean of the processes' losses (data-parallel averaging).
    for rank in range(WORLD):
        torch.testing.assert_close(two_processes[rank]["ops"]["grad_table"], table.grad / WORLD, rtol=1e-10, atol=1e-12)


def test_sharded_sce_equals_each_process_sce_on_the_whole_table(two_processes):
    """Same draws, same buckets: each process's SCE with the table split equals its SCE with the whole table."""
    table = _table().requires_grad_(True)
    _, hidden, targets, _ = _op_inputs()
    for rank in range(WORLD):
        h = hidden[rank].clone().requires_grad_(True)
        generator = torch.Generator().manual_seed(10 + rank)
        total, picked = scalable_cross_entropy_loss(
            h, targets[rank], table[1 : NUM_ITEMS + 1], **SCE, generator=generator
        )
        (total / picked).backward()
        got_total, got_picked, got_grad_hidden, _ = two_processes[rank]["ops"]["sce"]
        assert got_picked == int(picked)
        torch.testing.assert_close(got_total, total.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_grad_hidden, h.grad, rtol=1e-10, atol=1e-12)
    for rank in range(WORLD):
        torch.testing.assert_close(two_processes[rank]["ops"]["sce"][3], table.grad / WORLD, rtol=1e-10, atol=1e-12)


def test_fsdp_step_equals_one_process_on_the_global_batch(two_processes):
    model = _model()
    batch = _batch()
    denominator = int((batch["labels"] != -100).sum())
    loss = _step(model, batch, denominator, 1)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    _optimizer(model).step()
    for rank in range(WORLD):
        got = two_processes[rank]
        # The table stayed split: half the rows here, and FSDP never ran the module that would gather it.
        assert got["table_rows"] == (NUM_ITEMS + 1 + 1) // WORLD
        assert got["table_forward_calls"] == 0
        # Data-parallel averaging of the processes' losses is the one-process loss.
        averaged = (two_processes[0]["loss"] + two_processes[1]["loss"]) / WORLD
        torch.testing.assert_close(averaged, loss.detach(), rtol=1e-12, atol=1e-12)
        assert got["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-9, atol=1e-12, msg=name)
        for name, param in model.named_parameters():
            torch.testing.assert_close(got["updated"][name], param.detach(), rtol=1e-9, atol=1e-12, msg=name)


def test_a_sharded_model_saves_a_folder_with_the_whole_weights(two_processes, saved_folder):
    loaded = BTSRForSequentialRecommendation.from_pretrained(saved_folder, torch_dtype=torch.float64)
    assert loaded.btsr.item_embeddings.weight.shape == (NUM_ITEMS + 1, 8)
    for name, param in loaded.named_parameters():
        torch.testing.assert_close(param.detach(), two_processes[0]["updated"][name], rtol=0, atol=0, msg=name)


def test_evaluation_under_fsdp_equals_one_process(two_processes):
    model = _model()
    with torch.no_grad():  # the weights the processes evaluated: those after the step
        for name, param in model.named_parameters():
            param.copy_(two_processes[0]["updated"][name])
    expected = evaluate_ranking(model, EVAL_CONTEXTS, EVAL_TARGETS, batch_size=1)
    for rank in range(WORLD):
        got = two_processes[rank]["metrics"]
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key


@pytest.fixture
def fsdp_env(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    return monkeypatch


def test_fsdp_on_a_cpu_is_refused_not_run_as_ddp(fsdp_env, tmp_path):
    with pytest.raises(SettingsError, match=r"^accelerate launch --use_fsdp: accelerate runs FSDP on GPUs only"):
        resolve_settings(["--output_dir", str(tmp_path)])


@pytest.mark.parametrize(
    "argv, env_version, message",
    [
        ([], "1", r"^accelerate launch --use_fsdp: FSDP version 1: .* use accelerate launch --fsdp_version 2$"),
        (["--loss_type", "bce"], "2", r"^--loss_type bce: under FSDP .* use --loss_type ce or sce$"),
        (["--loss_type", "bpr"], "2", r"^--loss_type bpr: under FSDP .* use --loss_type ce or sce$"),
        (["--torch_compile"], "2", r"^--torch_compile: not with FSDP"),
    ],
)
def test_fsdp_settings_the_model_cannot_honour_are_one_line_errors(fsdp_env, tmp_path, argv, env_version, message):
    from modeling_btsr import arguments

    fsdp_env.setenv("FSDP_VERSION", env_version)
    fsdp_env.setattr(arguments, "_has_accelerator", lambda: True)
    with pytest.raises(SettingsError, match=message) as error:
        resolve_settings(["--output_dir", str(tmp_path), *argv])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("loss_type", ["ce", "sce"])
def test_fsdp2_with_ce_or_sce_on_an_accelerator_is_accepted(fsdp_env, tmp_path, loss_type):
    from modeling_btsr import arguments

    fsdp_env.setattr(arguments, "_has_accelerator", lambda: True)
    settings = resolve_settings(["--output_dir", str(tmp_path), "--loss_type", loss_type])
    assert settings.values["loss_type"] == loss_type


def test_sharded_training_refuses_the_losses_it_cannot_score_shard_by_shard(monkeypatch):
    from modeling_btsr import sharding_btsr

    model = BTSRForSequentialRecommendation(_config(loss_type="bce", bce_num_negatives=4))
    fake = sharding_btsr.ItemShard(rows=model.btsr.item_embeddings.weight, start=0, group=None)
    monkeypatch.setattr(model.btsr, "item_shard", lambda: fake)
    batch = _batch()
    hidden = torch.randn(*batch["input_ids"].shape, 8)
    with pytest.raises(ValueError, match=r"loss_type 'bce' is not scored shard by shard"):
        model.prediction_loss(hidden, batch["labels"], batch["input_ids"])
