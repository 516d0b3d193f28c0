"""BTSRModel / BTSRForSequentialRecommendation against independent computations."""

import concurrent.futures
import json
import math
import warnings

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation, BTSRModel, left_pad_sequences
from tests.isolation import run_without_project


def make_model(num_items=40, seed=0, **config):
    torch.manual_seed(seed)
    config = BTSRConfig(
        num_items=num_items, max_position_embeddings=config.pop("max_position_embeddings", 12), **config
    )
    model = BTSRForSequentialRecommendation(config)
    model.btsr.set_item_vocab(
        {"item_ids": [1000 + i for i in range(num_items)], "item_counts": [num_items - i for i in range(num_items)]}
    )
    return model.eval()


def _multihead_attention_of(att, d: int, heads: int) -> nn.MultiheadAttention:
    """torch.nn.MultiheadAttention holding the weights of one of our attention layers."""
    mha = nn.MultiheadAttention(d, heads)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([att.query.weight, att.key.weight, att.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([att.query.bias, att.key.bias, att.value.bias]))
        mha.out_proj.weight.copy_(att.output.weight)
        mha.out_proj.bias.copy_(att.output.bias)
    return mha


class ReferenceSASRec(nn.Module):
    """The authors' SASRec forward (pmixer / Scalable-SASRec layout) with torch.nn.MultiheadAttention, no key mask."""

    def __init__(self, ours: BTSRModel):
        super().__init__()
        self.ours = ours

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ours, d = self.ours, self.ours.config.hidden_size
        length = ids.shape[1]
        seqs = ours.item_embeddings(ids) * d**0.5
        seqs = seqs + ours.position_embeddings(torch.arange(length))
        keep = (ids != 0).unsqueeze(-1)
        seqs = seqs * keep
        causal_block = ~torch.tril(torch.ones(length, length, dtype=torch.bool))
        for block in ours.blocks:
            mha = _multihead_attention_of(block.attention, d, ours.config.num_attention_heads)
            x = seqs.transpose(0, 1)
            q = block.attention_layernorm(x)
            out, _ = mha(q, x, x, attn_mask=causal_block)
            seqs = (q + out).transpose(0, 1)
            seqs = block.feed_forward_layernorm(seqs)
            ff = block.feed_forward
            seqs = seqs + ff.dense_out(torch.relu(ff.dense_in(seqs)))
            seqs = seqs * keep
        return ours.final_layernorm(seqs)


class ReferenceRecBoleSASRec(ReferenceSASRec):
    """RecBole's SASRec forward (the backbone of CL4SRec's and DuoRec's code): post-LN layers, a LayerNorm on the
    summed embeddings, no embedding scale, no final LayerNorm; torch.nn.MultiheadAttention, no key mask."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ours, d = self.ours, self.ours.config.hidden_size
        length = ids.shape[1]
        seqs = ours.item_embeddings(ids) + ours.position_embeddings(torch.arange(length))
        seqs = ours.embedding_layernorm(seqs)
        causal_block = ~torch.tril(torch.ones(length, length, dtype=torch.bool))
        for block in ours.blocks:
            mha = _multihead_attention_of(block.attention, d, ours.config.num_attention_heads)
            x = seqs.transpose(0, 1)
            out, _ = mha(x, x, x, attn_mask=causal_block)
            hidden = block.attention_layernorm((x + out).transpose(0, 1))
            ff = block.feed_forward
            act = torch.nn.functional.gelu if ours.config.hidden_act == "gelu" else torch.relu
            seqs = block.feed_forward_layernorm(hidden + ff.dense_out(act(ff.dense_in(hidden))))
        return seqs


def test_parameter_count_matches_reference():
    config = BTSRConfig(num_items=3416)
    assert BTSRModel(config).num_parameters() == (3416 + 1) * 64 + 63_360
    assert BTSRForSequentialRecommendation(config).num_parameters() == (3416 + 1) * 64 + 63_360


@pytest.mark.parametrize("heads", [1, 2])
def test_matches_reference_layout_without_padding(heads):
    model = make_model(hidden_size=16, num_attention_heads=heads)
    ids = torch.randint(1, 41, (3, 12))
    with torch.no_grad():
        ours = model.btsr(ids).last_hidden_state
        reference = ReferenceSASRec(model.btsr)(ids)
    assert torch.allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize(
    "heads, recbole",
    [(1, {}), (2, {}), (2, {"intermediate_size": 64, "hidden_act": "gelu", "initializer_range": 0.02})],
)
def test_post_ln_layout_matches_recbole_layer(heads, recbole):
    model = make_model(hidden_size=16, num_attention_heads=heads, block_layout="post_ln", **recbole)
    for module in model.modules():  # LayerNorms away from the identity, so a missing or misplaced one shows
        if isinstance(module, nn.LayerNorm):
            nn.init.normal_(module.weight, 1.0, 0.3)
            nn.init.normal_(module.bias, 0.0, 0.3)
    ids = torch.randint(1, 41, (3, 12))
    with torch.no_grad():
        out = model.btsr(ids)
        users = model.btsr(ids, user_embeddings_only=True).user_embeddings
        reference = ReferenceRecBoleSASRec(model.btsr)(ids)
    assert torch.allclose(out.last_hidden_state, reference, atol=1e-5)
    assert torch.allclose(users, reference[:, -1], atol=1e-5)  # the partner pass's last-position-only block
    # The same weights as the reference layout, plus the embedding LayerNorm and minus the final one.
    same_widths = make_model(
        hidden_size=16, num_attention_heads=heads, intermediate_size=recbole.get("intermediate_size")
    )
    assert model.btsr.num_parameters() == same_widths.btsr.num_parameters()


def test_initializer_range_draws_recbole_normal_weights_and_zero_biases():
    model = make_model(num_items=4000, hidden_size=64, initializer_range=0.02, intermediate_size=256)
    table = model.btsr.item_embeddings.weight.detach()
    assert torch.equal(table[0], torch.zeros(64))  # the padding row
    assert abs(table[1:].std().item() - 0.02) < 0.0005 and abs(table[1:].mean().item()) < 0.0005
    dense_in = model.btsr.blocks[0].feed_forward.dense_in
    assert dense_in.weight.shape == (256, 64) and abs(dense_in.weight.std().item() - 0.02) < 0.002
    assert torch.equal(dense_in.bias, torch.zeros(256))
    default = make_model(num_items=4000, hidden_size=64).btsr.item_embeddings.weight.detach()[1:]
    assert abs(default.std().item() - math.sqrt(2 / (4001 + 64) / 3) * math.sqrt(3)) < 0.001  # Xavier kept by default


def test_causality():
    model = make_model()
    ids = torch.randint(1, 41, (2, 10))
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] % 40) + 1
    with torch.no_grad():
        a, b = model.btsr(ids).last_hidden_state, model.btsr(changed).last_hidden_state
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-4)


def test_more_left_padding_leaves_last_state_unchanged():
    model = make_model()
    seq = [3, 7, 1, 9, 4]
    with torch.no_grad():
        short = model.btsr(torch.tensor([seq])).user_embeddings
        padded = model.btsr(torch.tensor([[0] * 6 + seq])).user_embeddings
        full = model.btsr(torch.tensor([[0] * 7 + seq])).last_hidden_state
    assert torch.allclose(short, padded, atol=1e-6)
    assert torch.allclose(short, full[:, -1], atol=1e-6)
    assert torch.equal(full[0, :7], torch.zeros_like(full[0, :7]))


def _packed_batches(monkeypatch) -> list:
    """Every `PackedBatch` the model builds from now on, in order."""
    import modeling_btsr.modeling_btsr as modeling

    built, original = [], modeling.PackedBatch

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(modeling, "PackedBatch", spy)
    return built


@pytest.mark.parametrize("user_embeddings_only", [False, True])
def test_dense_inference_layout_equals_packed(monkeypatch, user_embeddings_only):
    """Nearly unpadded inference batches skip the packing: the same values at item positions, zeros at padding."""
    import modeling_btsr.attention_btsr as attention

    model = make_model(hidden_size=16)
    ids = torch.randint(1, 41, (5, 12))
    ids[1, :3] = 0  # padding, and an empty row: its user embedding is zero either way
    ids[4] = 0
    batches = _packed_batches(monkeypatch)
    outputs = {}
    for name, threshold in (("packed", -1.0), ("dense", 1.0)):
        monkeypatch.setattr(attention, "DENSE_LAYOUT_MAX_PADDING", threshold)
        with torch.inference_mode():
            outputs[name] = model.btsr(ids, user_embeddings_only=user_embeddings_only)
        assert batches[-1].dense == (name == "dense")
    assert torch.allclose(outputs["dense"].user_embeddings, outputs["packed"].user_embeddings, atol=1e-6)
    assert torch.equal(outputs["dense"].user_embeddings[4], torch.zeros(16))
    if not user_embeddings_only:
        dense, packed = outputs["dense"].last_hidden_state, outputs["packed"].last_hidden_state
        assert torch.allclose(dense, packed, atol=1e-6) and torch.equal(dense[1, :3], torch.zeros(3, 16))
    # Training (and any pass that records gradients) always packs: its dropout draws do not depend on padding.
    model.train()
    model.btsr(ids)
    assert not batches[-1].dense
    model.eval()
    model.btsr(ids)
    assert not batches[-1].dense


def _ragged_batch(max_len=150, lengths=(0, 3, 9, 15, 20, 40, 70, 150, 5, 33)):
    """Rows spanning several length bins (and an empty row), in no length order."""
    generator = torch.Generator().manual_seed(1)
    return left_pad_sequences([torch.randint(1, 41, (n,), generator=generator).tolist() for n in lengths], max_len)


@pytest.mark.parametrize("mode", ["no_grad", "grad", "user_embeddings_only"])
@pytest.mark.parametrize("heads", [1, 2])
def test_length_grouped_attention_equals_one_grid(monkeypatch, mode, heads):
    """Attention per length group gives the states, user embeddings and gradients of one grid for the batch."""
    batches = _packed_batches(monkeypatch)
    ids, mask = _ragged_batch()
    offsets = torch.tensor([0, 2, 0, 5, 0, 1, 0, 0, 7, 3])  # prefixes at their positions: offsets follow the rows
    results = {}
    for grouped in (False, True):
        model = make_model(hidden_size=16, num_attention_heads=heads, max_position_embeddings=160)
        model.config.length_grouped_attention = grouped
        with torch.set_grad_enabled(mode != "no_grad"):
            out = model.btsr(ids, mask, position_offsets=offsets, user_embeddings_only=mode == "user_embeddings_only")
        assert len(batches[-1].parts) == (5 if grouped else 1)  # bins 16, 32, 64, 128, 256 (the empty row: none)
        results[grouped] = out
        if mode != "no_grad":
            target = out.user_embeddings if mode == "user_embeddings_only" else out.last_hidden_state
            (target * torch.linspace(-1, 1, target.numel()).view_as(target)).sum().backward()
            results[grouped, "grad"] = [p.grad.clone() for p in model.parameters()]
    one, grouped = results[False], results[True]
    assert torch.allclose(grouped.user_embeddings, one.user_embeddings, atol=1e-5)
    assert torch.equal(grouped.user_embeddings[0], torch.zeros(16))  # the empty row
    if mode != "user_embeddings_only":
        assert torch.allclose(grouped.last_hidden_state, one.last_hidden_state, atol=1e-5)
        assert torch.equal(grouped.last_hidden_state[1, :-3], torch.zeros(147, 16))  # padding stays zero
    if mode != "no_grad":
        for a, b in zip(results[True, "grad"], results[False, "grad"]):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_length_grouped_training_is_seeded_and_one_bin_batches_are_untouched():
    """Dropout draws differ from one grid's (another random stream) but repeat with the seed; a batch whose rows
    share one length bin runs exactly as ungrouped."""
    ids, mask = _ragged_batch()
    states = []
    for grouped, seed in ((True, 5), (True, 5), (False, 5)):
        model = make_model(hidden_size=16, max_position_embeddings=160, hidden_dropout_prob=0.3).train()
        model.config.length_grouped_attention = grouped
        torch.manual_seed(seed)
        states.append(model.btsr(ids, mask).last_hidden_state)
    assert torch.equal(states[0], states[1]) and not torch.allclose(states[0], states[2])
    same_bin = left_pad_sequences([[3] * n for n in (20, 31, 25)], 160)
    states = []
    for grouped in (True, False):
        model = make_model(hidden_size=16, max_position_embeddings=160, hidden_dropout_prob=0.3).train()
        model.config.length_grouped_attention = grouped
        torch.manual_seed(5)
        states.append(model.btsr(*same_bin).last_hidden_state)
    assert torch.equal(states[0], states[1])


def test_attention_mask_bias_equals_its_definition():
    from modeling_btsr.attention_btsr import attention_mask_bias

    is_item = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    bias = attention_mask_bias(is_item, torch.float32)
    assert bias.shape == (3, 1, 5, 5)
    for row in range(3):
        for i in range(5):
            for j in range(5):
                allowed = (j <= i and bool(is_item[row, j])) or i == j  # a padded query sees itself alone
                assert bias[row, 0, i, j] == (0.0 if allowed else float("-inf")), (row, i, j)
    unpadded = attention_mask_bias(is_item[2:], torch.float32)
    assert unpadded.shape == (1, 1, 5, 5) and torch.equal(unpadded[0], bias[2])  # broadcast over the batch


@pytest.mark.parametrize("heads", [1, 2])
def test_inference_attention_kernel_equals_the_written_out_formula(monkeypatch, heads):
    """Inference calls SDPA; passes that record gradients use the written-out blocks: the same states."""
    model = make_model(hidden_size=16, num_attention_heads=heads, max_position_embeddings=150)
    assert model.config._attn_implementation == "sdpa"  # transformers' default for a model that supports it
    ids = torch.randint(1, 41, (4, 150))  # longer than ATTENTION_QUERY_BLOCK: the written-out path splits rows
    ids[1, :40] = 0
    ids[3] = 0  # an empty row
    calls = _sdpa_calls(monkeypatch)
    with torch.no_grad():
        inferred = model.btsr(ids)
    assert calls, "inference did not take the SDPA path"
    calls.clear()
    written_out = model.btsr(ids)
    assert not calls
    assert torch.allclose(inferred.last_hidden_state, written_out.last_hidden_state.detach(), atol=1e-5)
    assert torch.equal(inferred.user_embeddings[3], torch.zeros(16))


def _sdpa_calls(monkeypatch) -> list:
    """One entry per call of `F.scaled_dot_product_attention` from now on."""
    calls, sdpa = [], nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    return calls


def _eager_calls(monkeypatch) -> list:
    """One entry per call of `eager_attention_forward` from now on, wherever it is called from."""
    import modeling_btsr.attention_btsr as attention
    import modeling_btsr.modeling_btsr as modeling

    calls, eager = [], attention.eager_attention_forward

    def spy(*args, **kwargs):
        calls.append(args[1].shape)  # the query grid
        return eager(*args, **kwargs)

    monkeypatch.setattr(attention, "eager_attention_forward", spy)
    monkeypatch.setattr(modeling, "eager_attention_forward", spy)
    return calls


@pytest.mark.parametrize("mode", ["no_grad", "grad"])
def test_eager_sdpa_and_length_grouped_attention_agree(monkeypatch, mode):
    """Every attention implementation, on one grid or per length group, gives the same states on a padded batch
    with an empty row, and the same gradients where they are recorded."""
    ids, mask = _ragged_batch()
    ids[0] = 0  # the empty row, unmasked ids too
    results = {}
    for implementation in ("eager", "sdpa"):
        for grouped in (False, True):
            model = make_model(hidden_size=16, num_attention_heads=2, max_position_embeddings=160)
            model.config.length_grouped_attention = grouped
            model.set_attn_implementation(implementation)
            assert model.config._attn_implementation == implementation
            with torch.set_grad_enabled(mode == "grad"):
                out = model.btsr(ids, mask)
                users = model.btsr(ids, mask, user_embeddings_only=True).user_embeddings
            grads = None
            if mode == "grad":
                out.last_hidden_state.pow(2).sum().backward()
                grads = [p.grad.clone() for p in model.parameters()]
            results[implementation, grouped] = (out.last_hidden_state.detach(), users.detach(), grads)
    reference_states, reference_users, reference_grads = results["eager", False]
    assert torch.equal(reference_users[0], torch.zeros(16))  # the empty row
    assert torch.equal(reference_states[1, :-3], torch.zeros(147, 16))  # padding stays zero
    for key, (states, users, grads) in results.items():
        assert torch.allclose(states, reference_states, atol=1e-5), key
        assert torch.allclose(users, reference_users, atol=1e-5), key
        assert torch.allclose(users, states[:, -1], atol=1e-5), key
        for a, b in zip(grads or [], reference_grads or []):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), key


def test_eager_implementation_never_calls_sdpa(monkeypatch):
    model = make_model(hidden_size=16)
    ids = torch.randint(1, 41, (3, 12))
    ids[0, :5] = 0
    sdpa, eager = _sdpa_calls(monkeypatch), _eager_calls(monkeypatch)
    with torch.no_grad():
        model.btsr(ids)
    assert len(sdpa) == 2 and not eager  # sdpa: one call per block
    model.set_attn_implementation("eager")
    with torch.no_grad():
        model.btsr(ids)
        model.btsr(ids, user_embeddings_only=True)
    assert len(sdpa) == 2 and len(eager) == 4


def test_from_pretrained_attn_implementation_selects_the_function(monkeypatch, tmp_path):
    make_model(hidden_size=16).save_pretrained(tmp_path)
    ids = torch.randint(1, 41, (2, 12))
    sdpa, eager = _sdpa_calls(monkeypatch), _eager_calls(monkeypatch)
    for cls in (AutoModel, BTSRForSequentialRecommendation):
        loaded = cls.from_pretrained(tmp_path, attn_implementation="eager")
        assert loaded.config._attn_implementation == "eager"
        with torch.no_grad():
            loaded.base_model(ids)
        assert not sdpa and len(eager) == 2
        eager.clear()
    default = AutoModel.from_pretrained(tmp_path)
    assert default.config._attn_implementation == "sdpa"
    with torch.no_grad():
        default(ids)
    assert len(sdpa) == 2 and not eager
    with pytest.raises(ValueError, match="does not support Flash Attention 2"):
        AutoModel.from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_prefix_encoded_in_place_equals_the_sequence_state_at_its_end():
    """With position_offsets a prefix keeps its positions: causal attention makes its last state the sequence's."""
    model = make_model(hidden_size=16)
    seq = torch.randint(1, 41, (1, 9))
    with torch.no_grad():
        states = model.btsr(seq).last_hidden_state[0]  # (9, 16)
        for end in (0, 4, 8):
            prefix = seq[:, : end + 1]
            offset = torch.tensor([8 - end])
            in_place = model.btsr(prefix, position_offsets=offset, user_embeddings_only=True).user_embeddings[0]
            assert torch.allclose(in_place, states[end], atol=1e-5)
            full = model.btsr(prefix, position_offsets=offset).user_embeddings[0]
            assert torch.allclose(full, in_place, atol=1e-6)
            if end < 8:  # re-encoded on its own, the prefix ends at the newest position: another state
                assert not torch.allclose(model.btsr(prefix).user_embeddings[0], states[end], atol=1e-3)
        # Left padding in a batch does not change it (rows of different lengths and offsets).
        ids, _ = left_pad_sequences([seq[0, :3].tolist(), seq[0].tolist()])
        out = model.btsr(ids, position_offsets=torch.tensor([6, 0]), user_embeddings_only=True).user_embeddings
        assert torch.allclose(out, states[[2, 8]], atol=1e-5)
    for bad in (torch.tensor([-1]), torch.tensor([12]), torch.tensor([0, 0])):
        with pytest.raises(ValueError, match="position_offsets"):
            model.btsr(seq[:, :3], position_offsets=bad)


def test_too_long_input_is_rejected():
    model = make_model()
    with pytest.raises(ValueError, match="max_position_embeddings=12"):
        model.btsr(torch.ones(1, 13, dtype=torch.long))


def test_save_load_reproduces_logits_and_vocab(tmp_path):
    model = make_model()
    ids = torch.randint(1, 41, (3, 8))
    with torch.no_grad():
        before = model.btsr(ids).user_embeddings @ model.btsr.item_embedding_matrix().T
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.architectures == ["BTSRForSequentialRecommendation"]
    assert config.auto_map["AutoModel"] == "modeling_btsr.BTSRModel"
    for cls in (AutoModel, BTSRForSequentialRecommendation):
        loaded, info = cls.from_pretrained(tmp_path, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        base = loaded.base_model
        with torch.no_grad():
            after = base(ids).user_embeddings @ base.item_embedding_matrix().T
        assert torch.equal(before, after)
        assert base.item_vocab["item_ids"] == model.btsr.item_vocab["item_ids"]


def test_remote_code_load_without_the_project(tmp_path):
    model = make_model()
    expected = model.recommend([[1000, 1005], [1010]], k=5)
    model.save_pretrained(tmp_path)
    out = run_without_project(
        "from transformers import AutoModel\n"
        f"m = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)\n"
        "print(type(m).__name__, m.recommend([[1000, 1005], [1010]], k=5))\n"
    )
    assert out.strip().splitlines()[-1] == f"BTSRModel {expected}"


def test_recommend_equals_brute_force_and_excludes_seen():
    model = make_model(num_items=40)
    histories = [[1000 + i for i in h] for h in ([3, 5, 7], [1], [39, 2, 2, 8, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24])]
    got, scores = model.recommend(histories, k=10, return_scores=True)
    for history, recs, rec_scores in zip(histories, got, scores):
        idx = [h - 1000 + 1 for h in history][-12:]
        ids, mask = left_pad_sequences([idx])
        with torch.no_grad():
            user = model.btsr(ids, mask).user_embeddings[0]
            full = model.btsr.item_embedding_matrix() @ user
        ranking = sorted(range(40), key=lambda j: -full[j].item())
        seen = {h - 1000 for h in history}
        expected = [1000 + j for j in ranking if j not in seen][:10]
        assert recs == expected
        assert not set(recs) & set(history)
        assert rec_scores == pytest.approx([full[r - 1000].item() for r in recs], rel=1e-5)
    with_seen = model.recommend(histories[:1], k=3, exclude_seen=False)[0]
    assert with_seen == [1000 + j for j in sorted(range(40), key=lambda j: -full_for(model, histories[0])[j])][:3]


def full_for(model, history):
    ids, mask = left_pad_sequences([[h - 1000 + 1 for h in history]])
    with torch.no_grad():
        return (model.btsr.item_embedding_matrix() @ model.btsr(ids, mask).user_embeddings[0]).tolist()


def test_recommend_edge_cases():
    model = make_model(num_items=40)
    with pytest.raises(KeyError, match="user 1: item id 5 is not in the model's vocabulary"):
        model.recommend([[1000], [5]])
    with pytest.warns(UserWarning, match="skipped 1 unknown"):
        skipped = model.recommend([[1000, 5]], k=4, unknown_items="skip")
    assert skipped == model.recommend([[1000]], k=4)
    # Empty history: the most popular training items (counts descend with the index here).
    assert model.recommend([[]], k=3) == [[1000, 1001, 1002]]
    # Longer than max_len: the most recent 12 items are read.
    long = [1000 + (i % 40) for i in range(30)]
    assert model.recommend([long], k=5, exclude_seen=False) == model.recommend([long[-12:]], k=5, exclude_seen=False)
    # k beyond the catalogue: every unseen item once.
    everything = model.recommend([[1000, 1001]], k=1000)[0]
    assert sorted(everything) == [1000 + i for i in range(2, 40)]
    # String ids keep their type.
    model.btsr.set_item_vocab({"item_ids": [f"m{i}" for i in range(40)]})
    assert all(isinstance(x, str) for x in model.recommend([["m1", "m2"]], k=3)[0])


def test_recommend_is_thread_safe():
    model = make_model(num_items=40)
    histories = [[1000 + (7 * u + j) % 40 for j in range(1 + u % 9)] for u in range(64)]
    sequential = [model.recommend([h], k=5)[0] for h in histories]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda h: model.recommend([h], k=5)[0], histories))
    assert threaded == sequential == model.recommend(histories, k=5)


def test_alpha_zero_runs_no_partner_pass_and_draws_nothing():
    model = make_model(bt_alpha=0.0).train()
    ids = torch.randint(1, 41, (4, 6))
    labels = torch.randint(1, 41, (4, 6))
    torch.manual_seed(1)
    plain = model(ids, labels=labels)
    state_plain = torch.get_rng_state()
    torch.manual_seed(1)
    with_pair = model(ids, labels=labels, pair_input_ids=ids.flip(0))
    assert torch.equal(torch.get_rng_state(), state_plain)
    assert with_pair.bt_loss is None and with_pair.pair_user_embeddings is None
    assert torch.equal(plain.loss, with_pair.loss)


def test_forward_total_loss_is_prediction_plus_alpha_bt():
    model = make_model(bt_alpha=0.3)
    ids = torch.randint(1, 41, (8, 6))
    labels = torch.randint(1, 41, (8, 6))
    labels[:, :2] = -100
    out = model(ids, labels=labels, pair_input_ids=ids.flip(0))
    assert torch.allclose(out.loss, out.prediction_loss + 0.3 * out.bt_loss)
    expected_ce = nn.functional.cross_entropy(
        (model.btsr(ids).last_hidden_state @ model.btsr.item_embedding_matrix().T)[:, 2:].reshape(-1, 40),
        (labels[:, 2:] - 1).reshape(-1),
    )
    assert torch.allclose(out.prediction_loss, expected_ce, atol=1e-6)
    assert int(out.num_prediction_positions) == 32
    # With num_items_in_batch, CE is a sum divided by it.
    out2 = model(ids, labels=labels, num_items_in_batch=64)
    assert torch.allclose(out2.prediction_loss, expected_ce * 32 / 64, atol=1e-6)


@pytest.mark.parametrize("ragged", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(ragged):
    """Checkpointed blocks recompute their forward in backward; with dropout on, that only matches the plain run if
    the recomputation replays the same dropout masks (the RNG state), so this fails if the masks were redrawn.
    Ragged: rows in several length groups (grouped attention), the empty row left out (no label to learn)."""
    config = dict(bt_alpha=0.3, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3, num_hidden_layers=2)
    if ragged:
        config["max_position_embeddings"] = 160
    plain, checkpointed = make_model(**config).train(), make_model(**config).train()
    checkpointed.activation_checkpointing_enable()
    recomputed = []
    checkpointed.btsr.blocks[0].feed_forward.register_forward_pre_hook(lambda *_: recomputed.append(1))
    if ragged:
        ids = _ragged_batch()[0][1:]
    else:
        ids = torch.randint(1, 41, (8, 12))
        ids[:3, :4] = 0  # left padding
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = -100
    labels[ids == 0] = -100
    losses = []
    for model in (plain, checkpointed):
        torch.manual_seed(7)
        out = model(ids, labels=labels, pair_input_ids=ids.flip(0))
        out.loss.backward()
        losses.append(out.loss.detach())
    assert len(recomputed) == 4  # two forwards (sequence, partner) and their two recomputations in backward
    assert torch.equal(losses[0], losses[1])
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-5), name


@pytest.mark.parametrize("loss_type", ["sce", "bce"])
def test_other_losses_train(loss_type):
    model = make_model(loss_type=loss_type, sce_bucket_size_y=16, sce_n_buckets=4, bce_num_negatives=8).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = torch.randint(1, 41, (8, 10))
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = -100
    first = None
    for _ in range(30):
        loss = model(ids, labels=labels, pair_input_ids=ids.flip(0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert math.isfinite(loss.item()) and loss.item() < first


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bt_alpha": -0.1}, "bt_alpha must be >= 0"),
        ({"max_position_embeddings": 0}, "max_position_embeddings must be >= 1"),
        ({"loss_type": "xent"}, r"'loss_type' expected one of \('ce', 'sce', 'bce', 'bpr'\), got xent"),
        ({"loss_type": "sce", "sce_bucket_size_y": 500}, r"sce_bucket_size_y \(500\) cannot exceed num_items \(40\)"),
        ({"hidden_size": 10, "num_attention_heads": 3}, "must be divisible"),
        ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob must be in \[0, 1\)"),
        ({"layer_norm_eps": 0}, "layer_norm_eps must be > 0"),
        ({"sce_n_buckets": 0}, "sce_n_buckets must be >= 1 or None"),
        ({"loss_type": "bce", "bce_num_negatives": 40}, r"bce_num_negatives \(40\) must be smaller than num_items"),
        ({"view_maker": "mixup"}, "'view_maker' expected one of"),
        ({"infonce_temperature": 0}, "infonce_temperature must be > 0"),
        ({"ssl_objective": "infonce", "bt_projector_dims": [8]}, "bt_projector_dims applies to ssl_objective"),
        ({"cl4srec_crop_ratio": 0}, r"cl4srec_crop_ratio must be in \(0, 1\]"),
        # DuoRec's view is a second dropout pass: without dropout it is the anchor's own state
        (
            {"view_maker": "dropout", "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0},
            "view_maker='dropout' draws a view by dropout; hidden_dropout_prob 0",
        ),
        (
            {"view_maker": "same_target+dropout", "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0},
            "view_maker='same_target\\+dropout' draws a view by dropout",
        ),
        ({"hidden_size": 0, "bt_alpha": -1}, "hidden_size must be >= 1, got 0$"),  # one rule at a time
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(Exception, match=message):
        BTSRConfig(num_items=40, **kwargs)


# config.json of a model saved before the fields were regrouped (transformers 5.23): it loads to the same settings.
SAVED_CONFIG = json.loads(
    """
{"architectures": ["BTSRForSequentialRecommendation"], "attention_probs_dropout_prob": 0.3,
"auto_map": {"AutoConfig": "configuration_btsr.BTSRConfig", "AutoModel": "modeling_btsr.BTSRModel"},
"bce_num_negatives": 256, "bt_alpha": 0.25, "bt_lambda": 0.1, "bt_projector_dims": null,
"cl4srec_crop_ratio": 0.6, "cl4srec_mask_ratio": 0.3, "cl4srec_reorder_ratio": 0.6, "dtype": "float32",
"hidden_dropout_prob": 0.3, "hidden_size": 64, "infonce_similarity": "dot", "infonce_temperature": 1.0,
"layer_norm_eps": 1e-08, "length_grouped_attention": false, "loss_type": "sce",
"max_position_embeddings": 50, "model_type": "btsr", "num_attention_heads": 1, "num_hidden_layers": 2,
"num_items": 12101, "sce_bucket_size_x": null, "sce_bucket_size_y": 256, "sce_mix_x": false,
"sce_n_buckets": null, "ssl_objective": "barlow_twins", "ssl_view_span": "sequence",
"transformers_version": "5.23.0", "view_maker": "same_target"}
"""
)


def test_config_saved_before_loads_unchanged(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SAVED_CONFIG))
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, BTSRConfig)
    for name, value in SAVED_CONFIG.items():
        if name not in ("transformers_version", "dtype"):
            assert getattr(config, name) == value, name
    assert BTSRModel(config).config._attn_implementation == "sdpa"


def test_each_config_field_is_documented_once_in_order():
    """The class docstring's Args entries are the fields, in their order; each field's CLI help is its first
    sentence there (no second description to drift)."""
    import re
    from dataclasses import fields

    declared = list(BTSRConfig.__dict__["__annotations__"])
    assert re.findall(r"^ {8}(\w+) \(", BTSRConfig.__doc__, flags=re.MULTILINE) == declared
    helps = {f.name: f.metadata["help"] for f in fields(BTSRConfig) if f.name in declared}
    assert all(text.endswith(".") and text in " ".join(BTSRConfig.__doc__.split()) for text in helps.values()), helps
    assert declared.index("length_grouped_attention") < declared.index("loss_type") < declared.index("bt_alpha")


def test_vocab_size_must_match():
    model = make_model(num_items=40)
    with pytest.raises(ValueError, match="has 3 ids but the model has 40 items"):
        model.btsr.set_item_vocab({"item_ids": [1, 2, 3]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BTSRConfig(num_items=5, hidden_dropout_prob=0)


def test_dropout_views_need_dropout_only_where_they_are_drawn():
    """A dropout view is refused without dropout only when it is drawn: at bt_alpha 0, or with attention dropout."""
    BTSRConfig(num_items=40, view_maker="dropout", bt_alpha=0, hidden_dropout_prob=0, attention_probs_dropout_prob=0)
    BTSRConfig(num_items=40, view_maker="dropout", hidden_dropout_prob=0, attention_probs_dropout_prob=0.1)
