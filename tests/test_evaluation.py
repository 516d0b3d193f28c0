"""Full-ranking evaluation (`modeling_btsr.evaluation`) against a brute-force reference.

The reference builds the whole `(users, items)` score matrix in float64 with numpy and ranks it with plain
Python/numpy code, independent of `modeling_btsr.metrics`; the evaluation under test never holds that matrix.
"""

import json
import math
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation, BTSRModel, left_pad_sequences
from modeling_btsr.evaluation import evaluate_ranking, most_popular_ranking
from tests.helpers import REPO_ROOT

KS = (1, 5, 10, 20, 50)
BUCKETS = ("head", "mid", "tail")
RANK_KEYS = ("hr", "ndcg", "mrr", "coverage")


def _make_model(num_items=50, max_len=20, hidden=16, seed=0, layers=2):
    torch.manual_seed(seed)
    config = BTSRConfig(
        num_items=num_items,
        max_position_embeddings=max_len,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=1,
    )
    return BTSRModel(config).eval()


def _make_data(num_items=50, n_users=37, max_context=30, seed=0):
    """Random contexts (some longer than the model's window, some with repeats) and targets (a few seen)."""
    rng = np.random.default_rng(seed)
    contexts, targets = [], []
    for user in range(n_users):
        length = int(rng.integers(1, max_context + 1))
        context = rng.integers(1, num_items + 1, size=length)
        contexts.append(context)
        # Every 9th user's target is one of its own context items (a repeat): excluded, so a miss.
        targets.append(int(context[0]) if user % 9 == 4 else int(rng.integers(1, num_items + 1)))
    counts = rng.integers(0, 30, size=num_items)
    return contexts, np.array(targets), counts


def _walk_buckets(counts):
    order = sorted(range(len(counts)), key=lambda j: (-counts[j], j))
    total, running, bucket, result = sum(counts), 0, 0, [0] * len(counts)
    for j in order:
        result[j] = bucket
        running += counts[j]
        while bucket < 2 and running * 3 >= (bucket + 1) * total:
            bucket += 1
    return np.array(result)


def brute_force(model, contexts, targets, counts=None, ks=KS, exclude=True, prefix="eval"):
    """Reference metrics from the full float64 score matrix (numpy), per-user Python loops."""
    base = model if isinstance(model, BTSRModel) else model.btsr
    with torch.no_grad():
        ids, mask = left_pad_sequences([list(c) for c in contexts], base.config.max_position_embeddings)
        users = base(ids, mask).user_embeddings.double().numpy()
    items = base.item_embedding_matrix().detach().double().numpy()
    n_items = items.shape[0]
    scores = users @ items.T
    if exclude:
        for u, context in enumerate(contexts):
            scores[u, np.asarray(context) - 1] = -np.inf
    ranks, topk = [], []
    width = min(max(ks), n_items)
    for u, target in enumerate(targets):
        s = scores[u]
        if np.isneginf(s[target - 1]):
            ranks.append(n_items + 1)
        else:
            ranks.append(1 + int(np.sum(np.delete(s, target - 1) >= s[target - 1])))
        order = np.argsort(-s, kind="stable")[:width]
        topk.append([j + 1 if np.isfinite(s[j]) else 0 for j in order])
    ranks, topk = np.array(ranks), np.array(topk)
    out = {}

    def block(rows, suffix, with_mrr=True, with_coverage=True):
        for k in ks:
            r = ranks[rows]
            out[f"{prefix}_hr@{k}{suffix}"] = float(np.mean(r <= k)) if len(r) else math.nan
            out[f"{prefix}_ndcg@{k}{suffix}"] = (
                float(np.mean(np.where(r <= k, 1 / np.log2(r + 1), 0.0))) if len(r) else math.nan
            )
            if with_mrr:
                out[f"{prefix}_mrr@{k}{suffix}"] = float(np.mean(np.where(r <= k, 1 / r, 0.0)))
            if with_coverage:
                listed = {i for row in topk[rows, :k] for i in row if i}
                out[f"{prefix}_coverage@{k}{suffix}"] = len(listed) / n_items

    block(np.arange(len(targets)), "")
    if counts is not None:
        buckets = _walk_buckets(list(counts))
        for b, name in enumerate(BUCKETS):
            rows = np.flatnonzero(buckets[np.asarray(targets) - 1] == b)
            block(rows, f"_{name}", with_mrr=False)
            out[f"{prefix}_num_users_{name}"] = float(len(rows))
        kl = []
        for u, context in enumerate(contexts):
            p = np.bincount(buckets[np.asarray(context) - 1], minlength=3) / len(context)
            listed = [i for i in topk[u, :10] if i]
            q = np.bincount(buckets[np.array(listed, dtype=int) - 1], minlength=3) / max(len(listed), 1)
            q = 0.99 * q + 0.01 * p
            kl.append(sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0))
        out[f"{prefix}_miscalibration@10"] = float(np.mean(kl))
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    log_z = np.log(np.sum(np.exp(finite - finite.max(1, keepdims=True)), axis=1)) + finite.max(1)
    log_p = finite - log_z[:, None]
    plogp = np.exp(log_p) * np.where(np.isfinite(log_p), log_p, 0.0)  # 0 log 0 = 0 for excluded items
    out[f"{prefix}_entropy"] = float(np.mean(-np.sum(plogp, axis=1)))
    sigma = np.linalg.svd(users - users.mean(0), compute_uv=False)
    p = sigma / sigma.sum()
    out[f"{prefix}_effective_rank"] = float(np.exp(-np.sum(p * np.log(p))))
    out[f"{prefix}_num_users"] = float(len(targets))
    return out, ranks, topk


def assert_metrics_equal(got, expected, loose=("_entropy", "_effective_rank")):
    assert set(got) == set(expected), set(got) ^ set(expected)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        elif key.endswith(loose):
            assert got[key] == pytest.approx(value, rel=1e-4), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.fixture(scope="module")
def small():
    model = _make_model()
    contexts, targets, counts = _make_data()
    return model, contexts, targets, counts


def test_matches_brute_force(small):
    model, contexts, targets, counts = small
    expected, ranks, topk = brute_force(model, contexts, targets, counts)
    got, per_user = evaluate_ranking(model, contexts, targets, item_user_counts=counts, return_per_user=True)
    assert_metrics_equal(got, expected)
    # Per-user arrays come back in the original user order.
    np.testing.assert_array_equal(per_user["rank"], ranks)
    np.testing.assert_array_equal(per_user["topk"], topk)
    np.testing.assert_allclose(per_user["hr@10"], ranks <= 10)
    np.testing.assert_allclose(per_user["ndcg@10"], np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0))
    np.testing.assert_array_equal(per_user["bucket"], _walk_buckets(list(counts))[targets - 1])


def test_without_counts_or_exclusion(small):
    model, contexts, targets, _ = small
    expected, _, _ = brute_force(model, contexts, targets, exclude=False, prefix="test", ks=(3, 10))
    got = evaluate_ranking(model, contexts, targets, ks=(3, 10), prefix="test", exclude_context=False)
    assert_metrics_equal(got, expected)
    got = evaluate_ranking(model, contexts, targets, ks=(3, 10), with_calibration=False)
    assert "eval_entropy" not in got and "eval_miscalibration@10" not in got and "eval_hr@3" in got


def test_chunked_equals_unchunked(small):
    model, contexts, targets, counts = small
    reference, reference_users = evaluate_ranking(
        model, contexts, targets, item_user_counts=counts, return_per_user=True
    )
    for chunk, batch in [(7, 256), (1, 64), (13, 3), (50, 1)]:
        got, per_user = evaluate_ranking(
            model,
            contexts,
            targets,
            item_user_counts=counts,
            item_chunk_size=chunk,
            batch_size=batch,
            return_per_user=True,
        )
        assert_metrics_equal(got, reference, loose=("_entropy", "_effective_rank"))
        np.testing.assert_array_equal(per_user["rank"], reference_users["rank"])
        np.testing.assert_array_equal(per_user["topk"], reference_users["topk"])


def test_context_items_are_never_recommended(small):
    model, contexts, targets, counts = small
    _, per_user = evaluate_ranking(model, contexts, targets, ks=(50,), return_per_user=True, item_chunk_size=9)
    for context, listed in zip(contexts, per_user["topk"]):
        assert not set(context.tolist()) & set(listed.tolist())
        # Every unseen item is listed (K = catalogue size); excluded slots are empty (0).
        assert set(listed[listed > 0].tolist()) == set(range(1, 51)) - set(context.tolist())
    # A target inside its own context is a miss at every K.
    seen = np.array([t in set(c.tolist()) for c, t in zip(contexts, targets)])
    assert seen.any() and (per_user["rank"][seen] == 51).all() and (per_user["hr@50"][seen] == 0).all()


def test_wrapper_model_and_training_mode_restored(small):
    model, contexts, targets, counts = small
    expected = evaluate_ranking(model, contexts, targets, item_user_counts=counts)
    wrapper = BTSRForSequentialRecommendation(model.config)
    wrapper.btsr.load_state_dict(model.state_dict())
    wrapper.train()
    got = evaluate_ranking(wrapper, contexts, targets, item_user_counts=counts)
    assert wrapper.training and wrapper.btsr.training  # dropout was off during scoring, and is back on after
    assert_metrics_equal(got, expected)


def test_invalid_inputs(small):
    model, contexts, targets, _ = small
    with pytest.raises(ValueError, match="empty context"):
        evaluate_ranking(model, [[1], []], [2, 3])
    with pytest.raises(ValueError, match="targets"):
        evaluate_ranking(model, [[1]], [51])
    with pytest.raises(ValueError, match="contexts"):
        evaluate_ranking(model, contexts, targets[:-1])


def test_large_catalogue_in_bounded_memory():
    """200k items, 64 users: scored in chunks of 65,536 items, never as a (64, 200k) matrix."""
    num_items, n_users, chunk = 200_000, 64, 65_536
    model = _make_model(num_items=num_items, max_len=20, hidden=16, layers=1)
    rng = np.random.default_rng(1)
    contexts = [rng.integers(1, num_items + 1, size=int(rng.integers(1, 30))) for _ in range(n_users)]
    targets = rng.integers(1, num_items + 1, size=n_users)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        got, per_user = evaluate_ranking(
            model, contexts, targets, item_chunk_size=chunk, ks=(10, 50), return_per_user=True
        )
    largest = max(event.cpu_memory_usage for event in prof.events())
    full_matrix = n_users * num_items * 4
    assert largest <= n_users * chunk * 8 < full_matrix, largest
    # Ranks on a subsample of users against the brute force.
    sample = rng.choice(n_users, size=16, replace=False)
    expected, ranks, topk = brute_force(model, [contexts[i] for i in sample], targets[sample], ks=(10, 50))
    np.testing.assert_array_equal(per_user["rank"][sample], ranks)
    np.testing.assert_array_equal(per_user["topk"][sample], topk)
    assert got["eval_hr@50"] == pytest.approx(np.mean(per_user["rank"] <= 50))


# --- most popular -----------------------------------------------------------------------------------------------


def test_most_popular_hand_example():
    # Items 1..6 with training counts; the order is (count desc, index asc): 3, 1, 5, 2, 6, 4.
    counts = [5, 2, 9, 0, 5, 2]
    contexts = [[3], [1, 5, 1], [4]]
    targets = [1, 6, 3]
    metrics, per_user = most_popular_ranking(contexts, targets, counts, ks=(1, 2, 3), prefix="mp", return_per_user=True)
    # User 0: 3 is seen -> list 1, 5, 2: target 1 at rank 1. User 1: 1 and 5 seen -> 3, 2, 6: rank 3.
    # User 2: 4 is seen -> 3, 1, 5: target 3 at rank 1.
    assert per_user["rank"].tolist() == [1, 3, 1]
    assert per_user["topk"].tolist() == [[1, 5, 2], [3, 2, 6], [3, 1, 5]]
    assert metrics["mp_hr@1"] == pytest.approx(2 / 3)
    assert metrics["mp_hr@3"] == 1.0
    assert metrics["mp_ndcg@3"] == pytest.approx((1 + 1 / math.log2(4) + 1) / 3)
    assert metrics["mp_mrr@3"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert metrics["mp_coverage@1"] == pytest.approx(2 / 6)  # items {1, 3}
    assert metrics["mp_coverage@3"] == pytest.approx(5 / 6)  # items {1, 2, 3, 5, 6}
    assert metrics["mp_num_users"] == 3.0
    # A seen target is a miss; without exclusion it ranks like everyone's list.
    assert most_popular_ranking([[2]], [2], counts, ks=(6,), return_per_user=True)[1]["rank"].tolist() == [7]
    unexcluded = most_popular_ranking(contexts, targets, counts, ks=(2,), exclude_context=False, return_per_user=True)
    assert unexcluded[1]["rank"].tolist() == [2, 5, 1]
    assert unexcluded[1]["topk"].tolist() == [[3, 1]] * 3


def test_most_popular_matches_brute_force():
    rng = np.random.default_rng(3)
    num_items = 40
    counts = rng.integers(0, 6, size=num_items)  # many ties
    contexts = [rng.integers(1, num_items + 1, size=int(rng.integers(1, 25))) for _ in range(30)]
    targets = rng.integers(1, num_items + 1, size=30)
    item_user_counts = rng.integers(0, 10, size=num_items)
    got, per_user = most_popular_ranking(
        contexts, targets, counts, item_user_counts=item_user_counts, return_per_user=True
    )
    order = sorted(range(1, num_items + 1), key=lambda i: (-counts[i - 1], i))
    for u, (context, target) in enumerate(zip(contexts, targets)):
        ranking = [i for i in order if i not in set(context.tolist())]
        expected_rank = ranking.index(target) + 1 if target in ranking else num_items + 1
        assert per_user["rank"][u] == expected_rank
        width = per_user["topk"].shape[1]
        assert per_user["topk"][u].tolist() == (ranking + [0] * width)[:width]
    assert {f"test_mostpop_hr@10_{b}" for b in BUCKETS} <= set(got)
    assert "test_mostpop_miscalibration@10" in got and "test_mostpop_entropy" not in got


# --- several processes ------------------------------------------------------------------------------------------


class _ThreadGroup:
    """A rendezvous for `_ThreadAccelerator`s: `gather` concatenates every member's tensor in process order."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots = [None] * size


class _ThreadAccelerator:
    """The part of `accelerate.Accelerator` the evaluation uses, for processes simulated by threads."""

    def __init__(self, group, index):
        self.group, self.process_index, self.num_processes = group, index, group.size

    def gather(self, tensor):
        self.group.slots[self.process_index] = tensor.clone()
        self.group.barrier.wait()
        out = torch.cat(self.group.slots)
        self.group.barrier.wait()  # everyone has read the slots before the next gather overwrites them
        return out


def _run_threads(n, fn):
    group, results, errors = _ThreadGroup(n), [None] * n, []

    def target(index):
        try:
            results[index] = fn(_ThreadAccelerator(group, index))
        except BaseException as error:  # surfaced below
            errors.append(error)
            group.barrier.abort()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("n_processes", [1, 2, 3])
def test_sharded_evaluation_equals_single_process(small, n_processes):
    model, contexts, targets, counts = small
    reference, reference_users = evaluate_ranking(
        model, contexts, targets, item_user_counts=counts, batch_size=4, return_per_user=True
    )
    results = _run_threads(
        n_processes,
        lambda accelerator: evaluate_ranking(
            model,
            contexts,
            targets,
            item_user_counts=counts,
            batch_size=4,
            accelerator=accelerator,
            return_per_user=True,
        ),
    )
    for metrics, per_user in results:  # every process returns the full result
        assert_metrics_equal(metrics, reference)
        np.testing.assert_array_equal(per_user["rank"], reference_users["rank"])
        np.testing.assert_array_equal(per_user["topk"], reference_users["topk"])


_LAUNCHED_SCRIPT = """
import json
import sys

from accelerate import Accelerator

from modeling_btsr import BTSRModel
from modeling_btsr.evaluation import evaluate_ranking

accelerator = Accelerator(cpu=True)
data = json.load(open(sys.argv[1]))
model = BTSRModel.from_pretrained(sys.argv[2])
metrics, per_user = evaluate_ranking(
    model, data["contexts"], data["targets"], item_user_counts=data["counts"], batch_size=4,
    accelerator=accelerator, return_per_user=True,
)
out = {"num_processes": accelerator.num_processes, "metrics": metrics, "rank": per_user["rank"].tolist(),
       "topk": per_user["topk"].tolist()}
json.dump(out, open(f"{sys.argv[3]}.{accelerator.process_index}.json", "w"))
"""


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_accelerate_processes_equal_one(small, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU (gloo): the metrics equal the one-process ones."""
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        pytest.skip("the accelerate launcher is not installed")
    model, contexts, targets, counts = small
    reference, reference_users = evaluate_ranking(
        model, contexts, targets, item_user_counts=counts, batch_size=4, return_per_user=True
    )
    model.save_pretrained(tmp_path / "model")
    data = {"contexts": [c.tolist() for c in contexts], "targets": targets.tolist(), "counts": counts.tolist()}
    (tmp_path / "data.json").write_text(json.dumps(data))
    (tmp_path / "script.py").write_text(_LAUNCHED_SCRIPT)
    command = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(tmp_path / "script.py"),
        str(tmp_path / "data.json"),
        str(tmp_path / "model"),
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for index in range(2):
        out = json.loads((tmp_path / f"out.{index}.json").read_text())
        assert out["num_processes"] == 2
        # JSON turns nan into NaN and back: compare through assert_metrics_equal.
        assert_metrics_equal(out["metrics"], reference)
        assert out["rank"] == reference_users["rank"].tolist()
        assert out["topk"] == reference_users["topk"].tolist()


def test_long_histories_split_evaluation_brute_force_and_recommend_agree():
    """Histories far longer than the window, through the split: the evaluation excludes every item the user has
    seen (not only the window's), exactly as an independent ranking and `recommend()` on the raw history do."""
    import pandas as pd

    from data_processing import leave_one_out_split

    max_len, num_raw_items, n_users = 5, 40, 23
    rng = np.random.default_rng(3)
    rows = []
    for user in range(n_users):
        length = int(rng.integers(3, 36))  # most users have far more than max_len items
        # Distinct items per user, drawn from a catalogue of 40 raw ids (100, 101, ...): many seen items are
        # older than the window and would outrank the target if they stayed rankable.
        rows += [(user, 100 + int(i)) for i in rng.permutation(num_raw_items)[:length]]
    df = pd.DataFrame(rows, columns=["user_id", "item_id"])
    split = leave_one_out_split(df, max_len=max_len)
    assert max(len(c) for c in split.test.contexts) > 5 * max_len  # the case this test is about
    model = _make_model(num_items=len(split.item_vocab), max_len=max_len, seed=4)
    model.set_item_vocab({"item_ids": split.item_vocab.item_ids})
    _, per_user = evaluate_ranking(model, split.test.contexts, split.test.targets, ks=(10,), return_per_user=True)

    # Independent ranking: score every item from the window, drop every item of the whole raw history.
    item_ids = split.item_vocab.item_ids
    items = model.item_embedding_matrix().detach().double().numpy()
    raw_histories = []
    for u, (context, target) in enumerate(zip(split.test.contexts, split.test.targets)):
        history = [item_ids[i - 1] for i in context]  # raw ids, oldest first
        raw_histories.append(history)
        window = [item_ids.index(raw) + 1 for raw in history[-max_len:]]
        with torch.no_grad():
            user = model(torch.tensor([window])).user_embeddings.double().numpy()[0]
        scores = items @ user
        seen = {item_ids.index(raw) for raw in history}
        candidates = [j for j in range(len(item_ids)) if j not in seen]
        target_column = int(target) - 1
        assert target_column in candidates  # distinct items per user: the target is never seen before
        rank = 1 + sum(scores[j] >= scores[target_column] for j in candidates if j != target_column)
        assert per_user["rank"][u] == rank, f"user {u}"
        expected_top = sorted(candidates, key=lambda j: -scores[j])[:10]
        assert [item_ids[j - 1] for j in per_user["topk"][u] if j] == [item_ids[j] for j in expected_top]

    recommended = model.recommend(raw_histories, k=10)
    assert recommended == [[item_ids[j - 1] for j in row if j] for row in per_user["topk"]]
    for u, listed in enumerate(recommended):
        target = item_ids[int(split.test.targets[u]) - 1]
        assert (per_user["rank"][u] <= 10) == (target in listed)
        if target in listed:
            assert listed.index(target) + 1 == per_user["rank"][u]


@pytest.mark.parametrize("context_len", [1, 3])
def test_context_len_cuts_what_the_encoder_reads_and_keeps_the_whole_history_excluded(context_len):
    """`context_len` N: the user embedding is the model's on the last N items alone (an independent forward pass),
    while every item of the whole context stays excluded, and a target seen earlier is still a miss."""
    num_items, max_len = 30, 8
    rng = np.random.default_rng(5)
    contexts = [
        rng.choice(np.arange(1, num_items + 1), size=int(rng.integers(2, 14)), replace=False) for _ in range(19)
    ]
    targets = np.array([int(rng.integers(1, num_items + 1)) for _ in contexts])
    model = _make_model(num_items=num_items, max_len=max_len, seed=6)
    _, per_user = evaluate_ranking(model, contexts, targets, ks=(5,), return_per_user=True, context_len=context_len)
    items = model.item_embedding_matrix().detach().double().numpy()
    for u, (context, target) in enumerate(zip(contexts, targets)):
        with torch.no_grad():
            user = model(torch.tensor([context[-context_len:].tolist()])).user_embeddings.double().numpy()[0]
        scores = items @ user
        seen = set((context - 1).tolist())
        if target - 1 in seen:
            assert per_user["rank"][u] == num_items + 1, f"user {u}: a seen target is a miss"
            continue
        candidates = [j for j in range(num_items) if j not in seen]
        rank = 1 + sum(scores[j] >= scores[target - 1] for j in candidates if j != target - 1)
        assert per_user["rank"][u] == rank, f"user {u}"
    # The cut changes what the model is told: the full window ranks differently for some user.
    _, full = evaluate_ranking(model, contexts, targets, ks=(5,), return_per_user=True)
    assert (full["rank"] != per_user["rank"]).any()
    with pytest.raises(ValueError, match="context_len"):
        evaluate_ranking(model, contexts, targets, context_len=0)
