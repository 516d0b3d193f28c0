"""The BERT4Rec backbone: bidirectional attention, seeded masked-item samples, mask-token scoring, remote code."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from data_processing import PairedTrainDataset, SequenceCollator, build_train_dataset
from data_processing.pairs import masked_item_draws
from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation, BTSRModel
from modeling_btsr.arguments import PRESETS
from tests.helpers import run_train
from tests.isolation import run_without_project

NUM_ITEMS = 30
MAX_LEN = 12


def _config(backbone: str, **overrides) -> BTSRConfig:
    settings = dict(
        num_items=NUM_ITEMS,
        hidden_size=16,
        num_attention_heads=2,
        max_position_embeddings=MAX_LEN,
        backbone=backbone,
        block_layout="post_ln",
        hidden_act="gelu",
        intermediate_size=32,
        initializer_range=0.02,
    )
    return BTSRConfig(**{**settings, **overrides})


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("backbone", ["sasrec", "bert4rec"])
def test_only_the_bert4rec_backbone_sees_later_positions(backbone, attn):
    torch.manual_seed(0)
    model = BTSRModel(_config(backbone)).eval()
    model.set_attn_implementation(attn)
    ids = torch.tensor([[0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7]])
    later = ids.clone()
    later[:, -1] = 9  # only the newest item differs
    with torch.no_grad():
        a = model(ids, append_mask_token=False).last_hidden_state
        b = model(later, append_mask_token=False).last_hidden_state
    earlier_change = (a[:, :-1] - b[:, :-1]).abs().amax()
    if backbone == "sasrec":
        assert earlier_change == 0  # causal: no position reads a later one
    else:
        assert earlier_change > 1e-4  # every position reads the changed newest item
    # Padding never leaks in either: the first row's padded cells stay zero and its items ignore the pad columns.
    assert a[0, :2].abs().amax() == 0


def test_bidirectional_attention_matches_a_written_out_reference():
    """One block of the encoder against softmax(QK^T/sqrt(d) + key mask)V computed by hand on one grid."""
    torch.manual_seed(1)
    config = _config("bert4rec", num_hidden_layers=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BTSRModel(config).eval()
    ids = torch.tensor([[0, 0, 3, 4, 5], [6, 7, 8, 9, 10]])
    with torch.no_grad():
        out = model(ids, append_mask_token=False).last_hidden_state
        positions = torch.arange(MAX_LEN - ids.shape[1], MAX_LEN)
        x = model.embedding_layernorm(model.item_embeddings(ids) + model.position_embeddings(positions))
        block = model.blocks[0]
        att = block.attention
        heads, width = config.num_attention_heads, config.hidden_size // config.num_attention_heads

        def split(t):
            return t.view(2, -1, heads, width).transpose(1, 2)

        q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
        scores = q @ k.transpose(-1, -2) / width**0.5
        scores = scores.masked_fill((ids == 0)[:, None, None, :], float("-inf"))
        attended = att.output((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, -1, config.hidden_size))
        hidden = block.attention_layernorm(x + attended)
        expected = block.feed_forward_layernorm(block.feed_forward(hidden))
    items = ids != 0
    torch.testing.assert_close(out[items], expected[items], atol=1e-5, rtol=1e-5)


def test_user_embeddings_are_the_appended_mask_tokens_state():
    torch.manual_seed(2)
    model = BTSRModel(_config("bert4rec")).eval()
    histories = [[3, 4, 5], list(range(1, MAX_LEN + 3))]  # the second longer than the window
    ids = torch.tensor([[0] * (MAX_LEN - 3) + histories[0], histories[1][-MAX_LEN:]])
    with torch.no_grad():
        users = model(ids).user_embeddings
        fast = model(ids, user_embeddings_only=True).user_embeddings
        mask = model.config.mask_token_id
        explicit = torch.tensor([[0] * (MAX_LEN - 4) + histories[0] + [mask], histories[1][-(MAX_LEN - 1) :] + [mask]])
        by_hand = model(explicit, append_mask_token=False).last_hidden_state[:, -1]
        encoded = model.encode_indices(histories)
    torch.testing.assert_close(users, by_hand, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(fast, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoded, by_hand, atol=1e-5, rtol=1e-5)
    assert mask == NUM_ITEMS + 1 and model.item_embedding_matrix().shape[0] == NUM_ITEMS  # never scored
    with pytest.raises(ValueError, match="bert4rec.* only"):
        BTSRModel(_config("sasrec"))(ids, append_mask_token=True)


@pytest.fixture(scope="module")
def examples():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, NUM_ITEMS + 1, size=int(rng.integers(2, 25))) for _ in range(80)]
    return seqs, build_train_dataset(seqs, max_len=MAX_LEN)


def _masked(examples, seed=0, **kwargs):
    return PairedTrainDataset(
        examples[1],
        seed=seed,
        mlm_probability=0.3,
        mask_token=NUM_ITEMS + 1,
        max_len=MAX_LEN,
        **{"with_pairs": False, **kwargs},
    )


def test_masked_item_samples_are_seeded_per_epoch_and_hide_exactly_their_labels(examples):
    seqs, _ = examples
    data = _masked(examples)
    epoch0 = data.__getitems__(range(len(data)))
    again = _masked(examples).__getitems__(range(len(data)))
    data.set_epoch(1)
    epoch1 = data.__getitems__(range(len(data)))
    other_seed = _masked(examples, seed=1).__getitems__(range(len(data)))
    masked_total = positions_total = 0
    for row, (item, same, later, other) in enumerate(zip(epoch0, again, epoch1, other_seed)):
        whole = np.asarray(seqs[row])[-MAX_LEN:]  # the row's sequence s_1..s_n, its last max_len items
        for sample in (item, later, other):
            masked = sample["input_ids"] == NUM_ITEMS + 1
            assert np.array_equal(np.where(masked, whole, sample["input_ids"]), whole)  # only masks replace items
            assert np.array_equal(sample["labels"], np.where(masked, whole, -100))  # a target exactly where masked
        assert np.array_equal(item["input_ids"], same["input_ids"])
        masked_total += int((item["labels"] != -100).sum())
        positions_total += len(whole)
    assert not all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(epoch0, epoch1))
    assert not all(np.array_equal(a["input_ids"], b["input_ids"]) for a, b in zip(epoch0, other_seed))
    # The draw is independent of which rows share a batch: a row alone gets the same masks.
    assert np.array_equal(_masked(examples).__getitems__([7])[0]["input_ids"], epoch0[7]["input_ids"])
    assert 0.2 < masked_total / positions_total < 0.4  # mlm_probability 0.3 over ~1000 positions


def test_masked_item_draw_frequency_and_independence():
    rows = np.repeat(np.arange(2000), 50)
    positions = np.tile(np.arange(50), 2000)
    drawn = masked_item_draws(3, 0, rows, positions, 0.2).reshape(2000, 50)
    assert abs(drawn.mean() - 0.2) < 0.005  # 100,000 draws: 4 standard deviations is 0.0051
    # Neighbouring positions are uncorrelated (a keyed hash per position, not a shared stream).
    assert abs(np.corrcoef(drawn[:, :-1].ravel(), drawn[:, 1:].ravel())[0, 1]) < 0.02


def test_pairs_of_masked_samples_are_unmasked_same_target_histories(examples):
    data = _masked(examples, with_pairs=True)
    table = data.table
    partners = data.partners()
    batch = SequenceCollator(table=table)(data.__getitems__(range(16)))
    for row in range(16):
        history = table.row("input_ids", row)
        assert batch["view_input_ids"][row][-len(history) :].tolist() == history.tolist()
        partner = table.row("input_ids", int(partners[row]))
        assert batch["pair_input_ids"][row][-len(partner) :].tolist() == partner.tolist()
        assert table.row("labels", int(partners[row]))[-1] == table.row("labels", row)[-1]  # the same next item
    model = BTSRForSequentialRecommendation(_config("bert4rec", bt_alpha=0.2))
    out = model(**batch)
    assert out.bt_loss is not None and torch.isfinite(out.loss)
    assert int(out.num_prediction_positions) == int((batch["labels"] != -100).sum())
    with pytest.raises(ValueError, match="view_input_ids"):
        model(batch["input_ids"], labels=batch["labels"], pair_input_ids=batch["pair_input_ids"])


def test_masked_item_loss_is_the_cross_entropy_of_the_masked_positions(examples):
    torch.manual_seed(3)
    data = _masked(examples)
    batch = SequenceCollator(table=data.table)(data.__getitems__(range(20)))
    model = BTSRForSequentialRecommendation(_config("bert4rec", bt_alpha=0.0)).eval()
    with torch.no_grad():
        loss = model(**batch).loss
        states = model.btsr(batch["input_ids"], batch["attention_mask"], append_mask_token=False).last_hidden_state
        labelled = batch["labels"] != -100
        logits = states[labelled] @ model.btsr.item_embedding_matrix().T
        expected = torch.nn.functional.cross_entropy(logits, batch["labels"][labelled] - 1)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"loss_type": "bce"}, "loss_type"),
        ({"view_maker": "cl4srec"}, "view_maker"),
        ({"ssl_view_span": "random_prefix"}, "ssl_view_span"),
        ({"mlm_probability": 1.0}, "mlm_probability"),
    ],
)
def test_settings_that_conflict_with_the_bert4rec_backbone_are_refused(setting, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        _config("bert4rec", **setting)


def test_presets_give_bert4rec_and_bt_on_it():
    assert PRESETS["bert4rec"]["backbone"] == "bert4rec" and PRESETS["bert4rec"]["bt_alpha"] == 0
    assert {k: v for k, v in PRESETS["bert4rec-bt"].items() if k not in ("bt_alpha",)} == {
        k: v for k, v in PRESETS["bert4rec"].items() if k != "bt_alpha"
    }
    assert PRESETS["bert4rec-bt"]["bt_alpha"] == 0.2


LOAD_AND_RECOMMEND = """
import json
from transformers import AutoModel
model = AutoModel.from_pretrained({folder!r}, trust_remote_code=True)
print("RESULT " + json.dumps({{"recs": model.recommend({histories!r}, k=5), "module": type(model).__module__,
                               "backbone": model.config.backbone}}))
"""


def test_a_saved_bert4rec_model_recommends_the_same_through_remote_code(tmp_path):
    torch.manual_seed(4)
    model = BTSRForSequentialRecommendation(_config("bert4rec", bt_alpha=0.2))
    model.btsr.set_item_vocab({"item_ids": [f"i{j}" for j in range(NUM_ITEMS)]})
    histories = [["i1", "i2", "i3"], [f"i{j}" for j in range(20)], ["i29"]]
    recs = model.recommend(histories, k=5)
    model.btsr.save_pretrained(tmp_path / "model")
    out = run_without_project(LOAD_AND_RECOMMEND.format(folder=str(tmp_path / "model"), histories=histories))
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert result["module"].startswith("transformers_modules") and result["backbone"] == "bert4rec"
    assert result["recs"] == recs


@pytest.mark.integration
@pytest.mark.parametrize("preset", ["bert4rec", "bert4rec-bt"])
def test_train_py_with_the_bert4rec_presets(tmp_path, synthetic_log, preset):
    out = tmp_path / preset
    result = run_train(
        ["--preset", preset, "--data_path", str(synthetic_log), "--output_dir", str(out), "--hidden_size", "16"]
        + ["--max_len", "20", "--per_device_train_batch_size", "16", "--num_train_epochs", "2", "--use_cpu"]
        + ["--seed", "3", "--dataloader_num_workers", "0"]
    )
    assert "Test metrics" in result.stdout
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["test_ndcg@10"] <= 1.0 and math.isfinite(results["train_loss"])
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"] == "bert4rec" and config["mlm_probability"] == 0.2
    assert config["bt_alpha"] == PRESETS[preset]["bt_alpha"] and config["num_attention_heads"] == 2
    state = json.loads(next(out.glob("checkpoint-*/trainer_state.json")).read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert logged and all(("bt_loss" in entry) == (preset == "bert4rec-bt") for entry in logged)
