"""`torch.compile`: the training step and the evaluation forward trace into one graph (no graph break), give the
eager losses and gradients, and `train.py --torch_compile` trains.

Under compile the model takes the padded layout (`attention_btsr.static_layout`); in eager mode it packs item
positions and groups rows by length. Both are checked against each other here by forcing the padded layout in
eager mode, where dropout and SCE's random centres draw the same numbers on both sides.
"""

import json

import pytest
import torch

import modeling_btsr.attention_btsr as attention
import modeling_btsr.modeling_btsr as modeling
from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
from modeling_btsr.arguments import SettingsError, parse_arguments
from tests.helpers import run_train, tiny_run_args

pytestmark = pytest.mark.skipif(
    not hasattr(torch, "compile") or not torch._dynamo.is_dynamo_supported(),
    reason="torch.compile is not supported on this platform",
)

LOSS_TYPES = ["ce", "sce"]


def _model(loss_type: str, dropout: float = 0.0, **overrides) -> BTSRForSequentialRecommendation:
    torch.manual_seed(0)
    config = BTSRConfig(
        num_items=30,
        hidden_size=16,
        num_attention_heads=2,
        max_position_embeddings=24,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        loss_type=loss_type,
        **{"sce_n_buckets": 4, "sce_bucket_size_x": 12, "sce_bucket_size_y": 8, "bt_alpha": 0.2, **overrides},
    )
    return BTSRForSequentialRecommendation(config).train()


def _batch(rows: int = 6, length: int = 20, seed: int = 1) -> dict:
    """A left-padded training batch whose rows span several length groups, with an unlabelled item position and
    same-target partners of other lengths."""
    generator = torch.Generator().manual_seed(seed)
    lengths = [length, 3, 11, 1, 17, 6][:rows]
    ids = torch.randint(1, 31, (rows, length), generator=generator)
    mask = (torch.arange(length) >= length - torch.tensor(lengths).unsqueeze(1)).long()
    ids = ids * mask
    labels = torch.where(mask.bool(), torch.randint(1, 31, (rows, length), generator=generator), -100)
    labels[0, -5] = -100  # an item position without a target
    pair_lengths = torch.tensor([4, 9, 2, 15, 1, 7][:rows]).unsqueeze(1)
    pair_mask = (torch.arange(15) >= 15 - pair_lengths).long()
    pair_ids = torch.randint(1, 31, (rows, 15), generator=generator) * pair_mask
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "pair_input_ids": pair_ids,
        "pair_attention_mask": pair_mask,
    }


def _step(model):
    def step(input_ids, attention_mask, labels, pair_input_ids, pair_attention_mask):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            pair_input_ids=pair_input_ids,
            pair_attention_mask=pair_attention_mask,
        )
        return out.loss, out.prediction_loss, out.bt_loss

    return step


def _assert_one_graph(explanation) -> None:
    reasons = [f"{b.reason.splitlines()[0]} at {b.user_stack[-1:]}" for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_training_step_has_no_graph_break(loss_type):
    """Forward, prediction loss and the alpha-weighted Barlow Twins term, with dropout and the default (length
    grouped) config: one graph."""
    torch._dynamo.reset()
    model = _model(loss_type, dropout=0.2)
    assert model.config.length_grouped_attention  # ignored under compile, not a graph break
    explanation = torch._dynamo.explain(_step(model))(**_batch())
    _assert_one_graph(explanation)


@pytest.mark.parametrize("user_embeddings_only", [False, True], ids=["states", "user_embeddings"])
def test_evaluation_forward_has_no_graph_break(user_embeddings_only):
    """The encoder as the evaluation calls it (no gradient, no dropout): one graph."""
    torch._dynamo.reset()
    model = _model("ce", dropout=0.2).eval()
    batch = _batch()

    def encode(input_ids, attention_mask):
        return model.btsr(input_ids, attention_mask, user_embeddings_only=user_embeddings_only).user_embeddings

    with torch.no_grad(), modeling.deterministic_inference():
        _assert_one_graph(torch._dynamo.explain(encode)(batch["input_ids"], batch["attention_mask"]))


def _force_static_layout(monkeypatch) -> None:
    """Eager mode with the padded layout the model takes under compile."""
    monkeypatch.setattr(attention, "static_layout", lambda: True)
    monkeypatch.setattr(modeling, "static_layout", lambda: True)


def _loss_and_grads(model, batch, seed: int = 5):
    torch.manual_seed(seed)
    losses = _step(model)(**batch)
    losses[0].backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return [loss.detach() for loss in losses], grads


def _assert_close(first, second, tolerance: float = 1e-5) -> None:
    (losses_a, grads_a), (losses_b, grads_b) = first, second
    for a, b in zip(losses_a, losses_b):
        assert torch.allclose(a, b, rtol=tolerance, atol=tolerance), (a, b)
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss_type,bucket_size_x", [("ce", 12), ("sce", 12), ("sce", 100)])
def test_padded_layout_gives_the_packed_losses_and_gradients(monkeypatch, loss_type, bucket_size_x):
    """Without dropout, the layout compile takes gives the eager (packed, length-grouped) losses and gradients;
    also for SCE buckets wider than the labelled positions (which every bucket then picks whole, and the padded
    layout tops up with unlabelled ones that count for nothing)."""
    batch = _batch()
    labelled, positions = int((batch["labels"] != -100).sum()), batch["labels"].numel()
    assert labelled > 12 and (bucket_size_x == 12 or labelled < bucket_size_x < positions)
    model = _model(loss_type, sce_bucket_size_x=bucket_size_x)
    packed = _loss_and_grads(model, batch)
    _force_static_layout(monkeypatch)
    _assert_close(_loss_and_grads(model, batch), packed)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_compiled_step_equals_eager(loss_type):
    """The compiled step (AOTAutograd: forward and backward graphs) gives the eager step's losses and gradients on
    the same batch and seed, the eager step on its own (packed, length-grouped) layout."""
    batch = _batch()
    model = _model(loss_type)
    eager = _loss_and_grads(model, batch)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    _assert_close(_loss_and_grads(compiled, batch), eager)


def test_compiled_step_with_dropout_equals_eager_on_the_padded_layout(monkeypatch):
    """With dropout, the compiled step equals the eager one on the padded layout, where both draw the same noise
    (on the packed layout the noise has another shape: the same distribution, other numbers)."""
    batch = _batch()
    model = _model("ce", dropout=0.3)
    torch._dynamo.reset()
    compiled = _loss_and_grads(torch.compile(model, backend="aot_eager", fullgraph=True), batch)
    _force_static_layout(monkeypatch)
    _assert_close(compiled, _loss_and_grads(model, batch))


def test_padded_layout_zeroes_empty_rows(monkeypatch):
    """An empty partner row gets a zero user embedding in the padded layout too, as in the packed one."""
    model = _model("ce").eval()
    ids = torch.tensor([[0, 0, 0], [0, 4, 5], [1, 2, 3]])
    with torch.no_grad():
        packed = model.btsr(ids, user_embeddings_only=True).user_embeddings
        _force_static_layout(monkeypatch)
        padded = model.btsr(ids, user_embeddings_only=True).user_embeddings
    assert torch.equal(padded[0], torch.zeros(16))
    assert torch.allclose(padded, packed, atol=1e-6)


def test_torch_compile_turns_length_groups_off_and_refuses_them_when_asked(tmp_path):
    base = ["--output_dir", str(tmp_path / "out")]
    assert parse_arguments(base)[0].length_grouped_attention  # the default without compile
    settings = parse_arguments([*base, "--torch_compile"])
    assert settings.model.length_grouped_attention is False
    assert settings.sources["length_grouped_attention"] == "implied by --torch_compile"
    with pytest.raises(SettingsError, match=r"^--length_grouped_attention: .*--torch_compile") as error:
        parse_arguments([*base, "--torch_compile", "--length_grouped_attention", "True"])
    assert "\n" not in str(error.value)
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"length_grouped_attention": True}))
    with pytest.raises(SettingsError, match=r"--length_grouped_attention \(from config:.*--torch_compile"):
        parse_arguments([*base, "--config", str(config), "--torch_compile"])
    assert not parse_arguments(
        [*base, "--torch_compile", "--length_grouped_attention", "False"]
    ).model.length_grouped_attention


@pytest.mark.integration
def test_train_py_with_torch_compile_finishes(tmp_path, synthetic_log, monkeypatch):
    """`train.py --torch_compile` (inductor) runs its 20 steps over batches of several shapes (rows, sequence and
    partner lengths) with one compilation, no graph break and no recompilation, evaluates and saves its model."""
    monkeypatch.setenv("TORCH_LOGS", "graph_breaks,recompiles")
    out = tmp_path / "compiled"
    args = tiny_run_args(synthetic_log, out, "--torch_compile", "--max_steps", "20", "--bt_alpha", "0.2")
    result = run_train([*args, "--per_device_train_batch_size", "32", "--disable_tqdm", "True"], timeout=900)
    assert "Graph break" not in result.stderr and "Recompiling" not in result.stderr, result.stderr[-3000:]
    saved = json.loads((out / "run_settings.json").read_text())
    assert saved["settings"]["length_grouped_attention"] is False
    assert json.loads((out / "all_results.json").read_text())["global_step"] == 20
    assert (out / "model.safetensors").exists()
