"""The Space demo's plain functions (titles, history parsing, the result table) without Gradio or network; the
Blocks built only where gradio is installed (the `demo` extra)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from modeling_btsr import BTSRConfig, BTSRModel
from tests.helpers import REPO_ROOT as ROOT

_spec = importlib.util.spec_from_file_location("btsr_space_app", ROOT / "model_cards" / "space" / "app.py")
app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(app)

# MovieLens ids of ml-latest-small: Toy Story, Jumanji, Star Wars IV, The Matrix, then more.
MOVIE_IDS = [1, 2, 260, 2571, 32, 3578, 1240, 5952, 924, 508, 1097, 2987]


@pytest.fixture(scope="module")
def titles():
    return app.load_titles(app.EMBEDDED_TITLES)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = BTSRModel(BTSRConfig(num_items=len(MOVIE_IDS), hidden_size=16, max_position_embeddings=8))
    model.set_item_vocab({"item_ids": MOVIE_IDS, "item_counts": list(range(len(MOVIE_IDS)))})
    return model.eval()


def test_titles_come_from_the_embedded_movies_csv(titles):
    assert titles[1] == "Toy Story (1995)" and titles[2571] == "Matrix, The (1999)"
    assert len(titles) == 9742  # every movie of ml-latest-small's movies.csv


def test_the_embedded_titles_are_the_default_only_for_a_folder_trained_on_ml_latest_small(tmp_path):
    assert app.default_titles_path(str(tmp_path)) is None  # no dataset_stats.json: raw ids
    assert app.default_titles_path("org/some-repo") is None
    (tmp_path / "dataset_stats.json").write_text(json.dumps({"dataset": "ml-latest-small"}))
    assert app.default_titles_path(str(tmp_path)) == app.EMBEDDED_TITLES
    (tmp_path / "dataset_stats.json").write_text(json.dumps({"dataset": "ml-1m"}))
    assert app.default_titles_path(str(tmp_path)) is None  # SASRec's ML-1M ids are remapped: no titles


def test_labels_carry_the_title_and_the_id_or_the_raw_id_alone(titles):
    labels = app.item_labels(MOVIE_IDS[:3], titles)
    assert labels == {
        "Toy Story (1995) [1]": 1,
        "Jumanji (1995) [2]": 2,
        "Star Wars: Episode IV - A New Hope (1977) [260]": 260,
    }
    assert app.item_labels(["a", "b"]) == {"a": "a", "b": "b"}
    assert list(app.item_labels([7, 8], {7: "Seven"})) == ["Seven [7]", "8"]


def test_history_from_picked_labels_then_typed_ids_and_titles(titles):
    labels = app.item_labels(MOVIE_IDS, titles)
    history, unknown = app.parse_history(
        ["Toy Story (1995) [1]", "Matrix, The (1999) [2571]"],
        " 260, jumanji (1995)\nToy Story (1995) [1], 99999, Nope",
        labels,
    )
    assert history == [1, 2571, 260, 2]  # order kept, the repeated Toy Story once
    assert unknown == ["99999", "Nope"]
    assert app.parse_history(None, "", labels) == ([], [])
    assert app.parse_history([], "a, b", app.item_labels(["a", "b"])) == (["a", "b"], [])


def test_the_demo_lists_what_recommend_lists_with_titles_and_scores(model, titles):
    labels = app.item_labels(MOVIE_IDS, titles)
    picked = ["Toy Story (1995) [1]", "Star Wars: Episode IV - A New Hope (1977) [260]", "Matrix, The (1999) [2571]"]
    rows, status = app.recommend_for_ui(model, labels, titles, picked, "", 5)
    (ids,), (scores,) = model.recommend([[1, 260, 2571]], k=5, return_scores=True)
    assert [row[1] for row in rows] == ids and len(ids) == 5
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    assert [row[2] for row in rows] == [titles[i] for i in ids]
    assert [row[3] for row in rows] == pytest.approx(scores, abs=1e-4)
    assert not {1, 260, 2571} & set(ids)  # the history is never recommended back
    assert status.startswith("Top 5 for a history of 3 item(s)")
    assert app.recommendation_rows(model, [1], k=100)[-1][0] == len(MOVIE_IDS) - 1  # k capped by the catalogue


def test_no_known_item_gives_no_table_and_says_why(model, titles):
    labels = app.item_labels(MOVIE_IDS, titles)
    rows, status = app.recommend_for_ui(model, labels, titles, [], "Unknown Film", 10)
    assert rows == [] and "at least one item" in status and "Unknown Film" in status
    rows, status = app.recommend_for_ui(model, labels, None, [], "1, Unknown Film", 3)
    assert len(rows) == 3 and all(row[2] == "" for row in rows) and "ignored: Unknown Film" in status


LOAD_AND_RECOMMEND = """
import importlib.util, json
spec = importlib.util.spec_from_file_location("app", {app!r})
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
model = app.load_model({folder!r})
print("RESULT " + json.dumps({{"module": type(model).__module__, "rows": app.recommendation_rows(model, [1, 260], 4)}}))
"""


def test_a_saved_folder_loads_through_its_remote_code_and_gives_recommend_lists(model, tmp_path):
    """What a Space does: `AutoModel.from_pretrained(..., trust_remote_code=True)`, in a fresh interpreter with its
    own Hugging Face cache, offline."""
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    code = LOAD_AND_RECOMMEND.format(app=str(ROOT / "model_cards" / "space" / "app.py"), folder=str(folder))
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["module"].startswith("transformers_modules.")  # the folder's copied code, not this package
    (ids,), (scores,) = model.recommend([[1, 260]], k=4, return_scores=True)
    assert [row[1] for row in result["rows"]] == ids
    assert [row[3] for row in result["rows"]] == pytest.approx(scores, abs=1e-4)


def test_main_without_a_model_refuses_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("BTSR_MODEL", raising=False)
    assert app.main([]) == 2
    assert capsys.readouterr().err.strip().startswith("error: name a model")


def test_the_blocks_wire_the_button_to_the_table(model, titles):
    gr = pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed; CI installs .[test]")
    demo = app.build_demo(model, titles, k=5)
    assert isinstance(demo, gr.Blocks)
    dropdowns = [block for block in demo.blocks.values() if isinstance(block, gr.Dropdown)]
    assert len(dropdowns) == 1 and len(dropdowns[0].choices) == len(MOVIE_IDS)
    assert [fn for fn in demo.fns.values() if fn.name == "run"]  # the Recommend button's function is registered
