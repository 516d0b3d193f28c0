"""EC4SRec: explanation-guided views, importance scores, the negative-view loss, the callback and the settings."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from data_processing import PairedTrainDataset, SequenceCollator, build_train_dataset, explained_view, operator_pairs
from data_processing.augment import NEGATIVE_VIEW, view_rng
from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
from modeling_btsr.arguments import PRESETS, SettingsError, resolve_settings
from modeling_btsr.explanations import (
    IMPORTANCE_FILE,
    ExplanationCallback,
    importance_scores,
    occlusion_scores,
    saliency_scores,
)
from modeling_btsr.losses_btsr import negative_view_loss
from tests.helpers import run_train, tiny_run_args, write_synthetic_log

MASK = 99

# ---------------------------------------------------------------------------------------------------------------------
# Explanation-guided operators, against hand-worked cases
# ---------------------------------------------------------------------------------------------------------------------

SEQ = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
SCORES = [0.5, 0.9, 0.1, 0.8, 0.3, 0.0, 0.7, 0.2, 0.6, 0.4]  # by importance: 12 14 17 19 11 20 15 18 13 16


def test_crop_keeps_the_most_important_positive_and_the_least_important_negative_in_time_order():
    assert explained_view(SEQ, SCORES, 0, 0.3, True, None, MASK) == [12, 14, 17]  # floor(0.3 * 10) = 3
    # negative at 0.7: the 7 least important (16 13 18 15 20 11 19), in time order
    assert explained_view(SEQ, SCORES, 0, 0.7, False, None, MASK) == [11, 13, 15, 16, 18, 19, 20]


def test_mask_hides_the_least_important_positive_and_the_most_important_negative():
    # positive at 0.3: floor(0.7 * 10) = 7 least important masked, the 3 most important stay
    assert explained_view(SEQ, SCORES, 1, 0.3, True, None, MASK) == [
        MASK,
        12,
        MASK,
        14,
        MASK,
        MASK,
        17,
        MASK,
        MASK,
        MASK,
    ]
    # negative at 0.7: floor(0.3 * 10) = 3 most important masked
    assert explained_view(SEQ, SCORES, 1, 0.7, False, None, MASK) == [11, MASK, 13, MASK, 15, 16, MASK, 18, 19, 20]


def test_reorder_permutes_exactly_the_chosen_positions_with_the_rng():
    rng_seed = 3
    got = explained_view(SEQ, SCORES, 2, 0.7, False, np.random.default_rng(rng_seed), MASK)
    chosen = [1, 3, 6]  # the 3 most important positions (12, 14, 17)
    permutation = np.random.default_rng(rng_seed).permutation(3).tolist()
    expected = list(SEQ)
    for j, k in zip(chosen, permutation):
        expected[j] = SEQ[chosen[k]]
    assert got == expected
    assert [got[j] for j in range(10) if j not in chosen] == [SEQ[j] for j in range(10) if j not in chosen]
    positive = explained_view(SEQ, SCORES, 2, 0.3, True, np.random.default_rng(0), MASK)
    assert [positive[j] for j in chosen] == [12, 14, 17]  # the important items keep their places
    assert sorted(positive) == SEQ


def test_ties_go_to_the_earlier_position_and_short_sequences_are_kept():
    assert explained_view([1, 2, 3, 4], [0.0] * 4, 0, 0.5, True, None, MASK) == [1, 2]
    assert explained_view([1, 2, 3, 4], [0.0] * 4, 1, 0.5, False, None, MASK) == [MASK, MASK, 3, 4]
    assert explained_view([7], [1.0], 1, 0.3, True, None, MASK) == [7]
    assert explained_view([1, 2, 3], [0.1, 0.2, 0.3], 0, 0.3, True, None, MASK) == [3]  # at least one item
    with pytest.raises(ValueError, match="2 scores for a sequence of 3 items"):
        explained_view([1, 2, 3], [0.1, 0.2], 0, 0.3, True, None, MASK)


# ---------------------------------------------------------------------------------------------------------------------
# The negative-view loss, against a loop over its formula
# ---------------------------------------------------------------------------------------------------------------------


def negative_loss_loop(z_a, z_b, z_neg, tau):
    z = np.concatenate([z_a, z_b, z_neg])
    n = len(z_a)
    total = 0.0
    for i in range(2 * n, 3 * n):
        logits = [float(z[i] @ z[k]) / tau for k in range(3 * n) if k != i]
        denominator = math.log(sum(math.exp(v) for v in logits))
        positives = [float(z[i] @ z[j]) / tau - denominator for j in range(2 * n, 3 * n) if j != i]
        total += -sum(positives) / (n - 1)
    return total / n


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_negative_view_loss_equals_loop_formula(tau):
    rng = np.random.default_rng(0)
    z_a, z_b, z_neg = (rng.normal(size=(5, 4)) * 0.5 for _ in range(3))
    got = negative_view_loss(*(torch.tensor(z) for z in (z_a, z_b, z_neg)), temperature=tau)
    assert float(got) == pytest.approx(negative_loss_loop(z_a, z_b, z_neg, tau), rel=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        negative_view_loss(*(torch.zeros(1, 3) for _ in range(3)))
    # cosine: the same formula on L2-normalised views, so scaling a view changes nothing
    unit = [z / np.linalg.norm(z, axis=1, keepdims=True) for z in (z_a, z_b, z_neg)]
    scaled = (torch.tensor(z_a) * 7.0, torch.tensor(z_b), torch.tensor(z_neg) * 0.1)
    got = negative_view_loss(*scaled, temperature=tau, similarity="cosine")
    assert float(got) == pytest.approx(negative_loss_loop(*unit, tau), rel=1e-10)
    with pytest.raises(ValueError, match="similarity must be 'dot' or 'cosine'"):
        negative_view_loss(*scaled, similarity="l2")


# ---------------------------------------------------------------------------------------------------------------------
# Importance scores, against finite differences and explicit occlusion through the item ids
# ---------------------------------------------------------------------------------------------------------------------


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    config = BTSRConfig(
        num_items=7,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=6,
        view_maker="ec4srec",
        ssl_objective="infonce",
        bt_alpha=0.1,
    )
    return BTSRForSequentialRecommendation(config).double().eval()


IDS = torch.tensor([[0, 0, 3, 1, 5], [4, 2, 6, 7, 1]])


def _top(encoder, input_ids, embeds):
    users = encoder(input_ids, inputs_embeds=embeds).user_embeddings
    return (users @ encoder.item_embedding_matrix().T).max(dim=1).values


def test_saliency_equals_central_differences():
    encoder = _tiny_model().btsr
    got = saliency_scores(encoder, IDS)
    embeds = encoder.embed_items(IDS).detach()
    h = 1e-6
    expected = torch.zeros(IDS.shape, dtype=torch.float64)
    with torch.no_grad():
        for b in range(IDS.shape[0]):
            for j in range(IDS.shape[1]):
                if IDS[b, j] == 0:
                    continue
                for k in range(embeds.shape[-1]):
                    up, down = embeds.clone(), embeds.clone()
                    up[b, j, k] += h
                    down[b, j, k] -= h
                    slope = (_top(encoder, IDS, up)[b] - _top(encoder, IDS, down)[b]) / (2 * h)
                    expected[b, j] += abs(float(slope))
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got[0, :2] == 0).all() and (got[IDS != 0] > 0).all()


def test_occlusion_equals_zeroing_the_items_embedding_row():
    """Occluding position j is encoding the sequence with item j replaced by an item whose embedding is zero: here
    the mask token's row, zeroed, so that the check goes through `input_ids` and the embedding lookup alone."""
    model = _tiny_model(seed=1)
    encoder = model.btsr
    mask_token = model.config.mask_token_id
    with torch.no_grad():
        encoder.item_embeddings.weight[mask_token] = 0
        got = occlusion_scores(encoder, IDS)

        def top(ids):
            users = encoder(ids).user_embeddings
            return (users @ encoder.item_embedding_matrix().T).max(dim=1).values

        base = top(IDS)
        for b in range(IDS.shape[0]):
            for j in range(IDS.shape[1]):
                if IDS[b, j] == 0:
                    assert got[b, j] == 0
                    continue
                occluded = IDS[b : b + 1].clone()
                occluded[0, j] = mask_token
                assert float(got[b, j]) == pytest.approx(float(base[b] - top(occluded)[0]), abs=1e-10)


def test_importance_scores_follow_the_tables_flat_layout_one_row_at_a_time():
    rng = np.random.default_rng(2)
    examples = build_train_dataset([rng.integers(1, 8, size=int(rng.integers(2, 8))) for _ in range(9)], max_len=5)
    encoder = _tiny_model().btsr
    data = PairedTrainDataset(examples, seed=0, view_maker="ec4srec", mask_token=8)
    for explainer, score in (("saliency", saliency_scores), ("occlusion", occlusion_scores)):
        flat = importance_scores(encoder, data.table, explainer, batch_size=4)
        expected = [score(encoder, torch.tensor(data.table.row("input_ids", i))[None])[0] for i in range(len(data))]
        np.testing.assert_allclose(flat, torch.cat(expected).numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="explainer must be one of saliency, occlusion"):
        importance_scores(encoder, data.table, "lime")


# ---------------------------------------------------------------------------------------------------------------------
# The dataset's views, and the scores reaching data-loader workers
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples():
    rng = np.random.default_rng(0)
    return build_train_dataset([rng.integers(1, 30, size=int(rng.integers(3, 25))) for _ in range(40)], max_len=20)


def _ec4srec(examples, seed=0):
    return PairedTrainDataset(examples, seed=seed, view_maker="ec4srec", mask_token=31)


def _scores(data, seed=1):
    return np.random.default_rng(seed).random(int(data.table.lengths("input_ids").sum())).astype(np.float32)


def test_no_view_before_the_first_scores_then_the_views_they_guide(examples):
    data = _ec4srec(examples)
    assert data.importance() is None
    assert set(data[0]) == {"input_ids", "labels"}  # next-item prediction alone
    scores = _scores(data)
    data.set_importance(scores)
    np.testing.assert_array_equal(data.importance(), scores)
    data.set_epoch(3)
    offsets = np.concatenate([[0], np.cumsum(data.table.lengths("input_ids"))])
    for i in range(len(data)):
        item = data[i]
        sequence, row_scores = item["input_ids"], scores[offsets[i] : offsets[i + 1]]
        first, second = operator_pairs(0, 3, np.array([i]))[0].tolist()
        assert first != second
        assert item["view_input_ids"] == explained_view(
            sequence, row_scores, first, 0.3, True, view_rng(0, 3, i, 0), 31
        )
        assert item["pair_input_ids"] == explained_view(
            sequence, row_scores, second, 0.3, True, view_rng(0, 3, i, 1), 31
        )
        rng = view_rng(0, 3, i, NEGATIVE_VIEW)
        operator = int(rng.integers(0, 3))
        assert item["negative_input_ids"] == explained_view(sequence, row_scores, operator, 0.7, False, rng, 31)
    with pytest.raises(ValueError, match="set_importance"):
        data.set_importance(scores[:-1])


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_serve_scores_set_after_they_started(examples, persistent):
    data = _ec4srec(examples)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=1, persistent_workers=persistent)
    assert all("negative_input_ids" not in item for item in loader)
    data.set_importance(_scores(data))
    served = [item["negative_input_ids"] for item in loader]
    assert served == [data[i]["negative_input_ids"] for i in range(len(data))]


def test_model_adds_the_weighted_negative_view_loss():
    model = _tiny_model().float().train()
    model.config.ec4srec_negative_weight = 0.25
    rng = np.random.default_rng(4)
    examples = build_train_dataset([rng.integers(1, 8, size=int(rng.integers(3, 9))) for _ in range(8)], max_len=5)
    data = PairedTrainDataset(examples, seed=0, view_maker="ec4srec", mask_token=8)
    data.set_importance(_scores(data))
    batch = SequenceCollator(table=data.table)(data.__getitems__(list(range(8))))
    torch.manual_seed(0)
    out = model(**batch)
    assert out.negative_loss is not None and out.ssl_loss is not None
    parts = float(out.prediction_loss + 0.1 * out.ssl_loss + 0.25 * out.negative_loss)
    assert float(out.loss.detach()) == pytest.approx(parts, rel=1e-6)
    model.config.ec4srec_negative_weight = 0.0  # no weight, no negative pass
    assert model(**batch).negative_loss is None
    model.config.ec4srec_negative_weight = 0.25
    model.eval()  # without dropout the negative-view loss is that of the three views encoded on their own
    out = model(**batch)
    encode = lambda name: model.btsr(batch[f"{name}_input_ids"], batch[f"{name}_attention_mask"]).user_embeddings  # noqa: E731
    expected = negative_view_loss(encode("view"), encode("pair"), encode("negative"), 0.1)
    assert float(out.negative_loss) == pytest.approx(float(expected), rel=1e-5)
    model.config.infonce_similarity = "cosine"  # bounds the negative views' logits as it does InfoNCE's
    expected = negative_view_loss(encode("view"), encode("pair"), encode("negative"), 0.1, "cosine")
    assert float(model(**batch).negative_loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) != pytest.approx(float(out.negative_loss), rel=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# The callback: when it explains, what a checkpoint keeps, and a resumed run equal to an uninterrupted one
# ---------------------------------------------------------------------------------------------------------------------


class _State:
    def __init__(self, epoch, global_step=1):
        self.epoch, self.global_step, self.is_world_process_zero = epoch, global_step, True


class _Args:
    def __init__(self, output_dir, process_index=0, world_size=1):
        self.output_dir, self.process_index, self.world_size = str(output_dir), process_index, world_size


def _explaining_process(rank, world_size, init_file, results):
    import modeling_btsr.explanations as explanations

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    score, shards = explanations.importance_scores, []

    def recorded(*args):  # the callback's call, to check that this process scored its share only
        shards.append(args[4])
        return score(*args)

    explanations.importance_scores = recorded
    for explainer in ("saliency", "occlusion"):
        model, data = _explained_setup()
        callback = ExplanationCallback(data, explainer, [1], batch_size=3)
        callback.on_epoch_begin(_Args("unused", rank, world_size), _State(1.0), None, model=model)
        results[rank, explainer] = (data.importance().copy(), shards.pop())
    torch.distributed.destroy_process_group()


def _explained_setup():
    rng = np.random.default_rng(4)
    sequences = [rng.integers(1, 8, size=int(rng.integers(2, 8))) for _ in range(13)]  # 5 batches of 3: uneven
    data = PairedTrainDataset(build_train_dataset(sequences, max_len=6), seed=0, view_maker="ec4srec", mask_token=8)
    return _tiny_model(seed=3).float(), data


def test_two_processes_share_the_scoring_and_both_get_the_one_process_scores(tmp_path):
    """Each of 2 gloo processes scores every other batch; after the sum both hold exactly what one process computes
    alone (the same batches, so the same arithmetic)."""
    import torch.multiprocessing as mp

    results = mp.Manager().dict()
    mp.start_processes(_explaining_process, args=(2, str(tmp_path / "init"), results), nprocs=2, start_method="spawn")
    for explainer in ("saliency", "occlusion"):
        model, data = _explained_setup()
        alone = importance_scores(model.btsr, data.table, explainer, batch_size=3)
        first = importance_scores(model.btsr, data.table, explainer, batch_size=3, shard=(0, 2))
        assert 0 < np.count_nonzero(first) < np.count_nonzero(alone)
        np.testing.assert_array_equal(first + importance_scores(model.btsr, data.table, explainer, 3, (1, 2)), alone)
        for rank in range(2):
            scores, shard = results[rank, explainer]
            assert shard == (rank, 2)
            np.testing.assert_array_equal(scores, alone)


def test_callback_explains_after_the_listed_epochs_and_resumes_without_explaining_again(tmp_path):
    model = _tiny_model().float().train()
    sequences = [[1, 2, 3, 4], [5, 6, 7, 1, 2]] * 20  # ids of the 7-item model
    data = PairedTrainDataset(build_train_dataset(sequences, max_len=20), seed=0, view_maker="ec4srec", mask_token=8)
    callback = ExplanationCallback(data, "saliency", [2, 4])
    callback.on_train_begin(None, _State(0.0), None)
    for epoch in (0.0, 1.0):
        callback.on_epoch_begin(_Args(tmp_path), _State(epoch), None, model=model)
        assert data.importance() is None, epoch
    callback.on_epoch_begin(_Args(tmp_path), _State(2.0), None, model=model)
    after_two = data.importance()
    np.testing.assert_allclose(after_two, importance_scores(model.btsr, data.table, "saliency"), rtol=1e-6)
    assert model.training  # put back in training mode
    (tmp_path / "checkpoint-7").mkdir()
    callback.on_save(_Args(tmp_path), _State(3.0, global_step=7), None)
    # A fresh run resumed from that checkpoint has the epoch-2 scores and does not explain again at epoch 3
    fresh = PairedTrainDataset(data.examples, seed=0, view_maker="ec4srec", mask_token=8)
    resumed = ExplanationCallback(fresh, "saliency", [2, 4], resume_from=str(tmp_path / "checkpoint-7"))
    resumed.on_train_begin(None, _State(3.0), None)
    resumed.on_epoch_begin(_Args(tmp_path), _State(3.0), None, model=None)  # would fail if it explained
    np.testing.assert_array_equal(fresh.importance(), after_two)
    with np.load(tmp_path / "checkpoint-7" / IMPORTANCE_FILE) as saved:
        assert int(saved["epoch"]) == 2


@pytest.mark.integration
def test_resumed_ec4srec_run_equals_uninterrupted(tmp_path):
    log = write_synthetic_log(tmp_path / "log.csv")
    settings = [
        "--max_len", "20", "--per_device_train_batch_size", "16", "--seed", "3", "--num_train_epochs", "4",
        "--view_maker", "ec4srec", "--ssl_objective", "infonce", "--bt_alpha", "0.1",
        "--ec4srec_update_epochs", "1", "3", "--save_total_limit", "10", "--patience", "10",
    ]  # fmt: skip
    straight = tmp_path / "straight"
    result = run_train(tiny_run_args(log, straight, *settings))
    assert "negative" in result.stdout + result.stderr
    expected = json.loads((straight / "all_results.json").read_text())
    checkpoints = sorted(straight.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 4
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    second = checkpoints[1]  # after epoch 2: the epoch-1 scores are in it, the epoch-3 ones still to compute
    shutil.copytree(second, resumed_dir / second.name)
    run_train(tiny_run_args(log, resumed_dir, *settings, "--resume_from_checkpoint", str(resumed_dir / second.name)))
    resumed = json.loads((resumed_dir / "all_results.json").read_text())
    for key in ("test_ndcg@10", "test_hr@10", "eval_ndcg@10", "train_loss"):
        assert resumed[key] == pytest.approx(expected[key], rel=1e-6), key


# ---------------------------------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ec4srec_negative_weight", "0.1"], "--ec4srec_negative_weight: applies to --view_maker ec4srec only"),
        (["--ec4srec_update_epochs", "5"], "--ec4srec_update_epochs: applies to --view_maker ec4srec only"),
    ],
)
def test_ec4srec_settings_without_ec4srec_are_refused(extra, message, tmp_path):
    with pytest.raises(SettingsError, match=message) as error:
        resolve_settings(["--output_dir", str(tmp_path)] + extra)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "view_maker='ec4srec' uses ssl_objective='infonce'"),
        ({"ssl_objective": "infonce", "ec4srec_update_epochs": [30, 15]}, "ec4srec_update_epochs must be increasing"),
        ({"ssl_objective": "infonce", "ec4srec_positive_ratio": 1.0}, "ec4srec_positive_ratio must be in"),
        ({"ssl_objective": "infonce", "ssl_view_span": "random_prefix"}, "explains whole training sequences"),
    ],
)
def test_ec4srec_config_rules(kwargs, message):
    with pytest.raises(Exception, match=message):
        BTSRConfig(num_items=5, view_maker="ec4srec", **kwargs)


def test_preset_is_the_authors_configuration():
    preset = PRESETS["ec4srec"]
    config = BTSRConfig(
        num_items=10,
        **{k: v for k, v in preset.items() if k.startswith(("ec4srec_", "infonce_"))},
        view_maker="ec4srec",
        ssl_objective="infonce",
    )
    assert (config.ec4srec_positive_ratio, config.ec4srec_negative_ratio) == (0.3, 0.7)
    assert (preset["bt_alpha"], config.ec4srec_negative_weight, config.ec4srec_negative_temperature) == (0.1, 0.05, 0.1)
    assert config.ec4srec_update_epochs == [15, 30] and config.mask_token_id == 11
