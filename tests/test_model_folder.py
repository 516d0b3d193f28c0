"""Damaged model folders fail on load with one line naming the file and what is wrong with it."""

import json
import os
import shutil

import pytest
from transformers import AutoModel

from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation, BTSRModel


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = BTSRModel(BTSRConfig(num_items=10, hidden_size=8, max_position_embeddings=4))
    model.set_item_vocab({"item_ids": list(range(10)), "item_counts": [1] * 10})
    model.save_pretrained(folder)
    return folder


def _damaged(saved, tmp_path, damage):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    damage(folder)
    return folder


def _rewrite_json(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


CASES = [
    ("empty weights", lambda f: (f / "model.safetensors").write_bytes(b""), OSError, r"model.safetensors: empty"),
    ("truncated weights", lambda f: os.truncate(f / "model.safetensors", 100), OSError, "damaged or truncated"),
    ("no weights", lambda f: (f / "model.safetensors").unlink(), OSError, "no weights file"),
    ("no config", lambda f: (f / "config.json").unlink(), OSError, "no config.json, so not a saved model"),
    (
        "wrong model_type",
        lambda f: _rewrite_json(f / "config.json", lambda c: c.update(model_type="bert")),
        ValueError,
        "config.json: model_type is 'bert', not 'btsr'",
    ),
    ("truncated vocab", lambda f: os.truncate(f / "item_vocab.json", 5), ValueError, "item_vocab.json: Unterminated"),
    (
        "repeated id",
        lambda f: _rewrite_json(f / "item_vocab.json", lambda v: v["item_ids"].__setitem__(7, 2)),
        ValueError,
        r"item_vocab.json: item vocabulary repeats id 2 \(entries 3 and 8\)",
    ),
    (
        "short counts",
        lambda f: _rewrite_json(f / "item_vocab.json", lambda v: v.update(item_counts=[1, 2])),
        ValueError,
        "item_counts has 2 entries but the model has 10 items",
    ),
    (
        "short vocab",
        lambda f: _rewrite_json(f / "item_vocab.json", lambda v: v.update(item_ids=[1, 2])),
        ValueError,
        "item vocabulary has 2 ids but the model has 10 items",
    ),
]


@pytest.mark.parametrize("name, damage, error, message", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("loader", [BTSRModel, BTSRForSequentialRecommendation, AutoModel], ids=lambda c: c.__name__)
def test_damaged_folders_fail_in_one_line(saved, tmp_path, name, damage, error, message, loader):
    folder = _damaged(saved, tmp_path, damage)
    if loader is AutoModel and name in ("no config", "wrong model_type"):
        pytest.skip("AutoModel reads config.json itself before any BT-SR code runs")
    with pytest.raises(error, match=message) as raised:
        loader.from_pretrained(folder)
    assert "\n" not in str(raised.value) and str(folder) in str(raised.value)


def test_an_intact_folder_loads(saved):
    assert BTSRModel.from_pretrained(saved).recommend([[1, 2]], k=3)
