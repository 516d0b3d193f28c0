"""Publishing: a saved folder loads from a Hub-style cache by repo id, and the upload sends exactly the right files.

Nothing reaches the network: loading resolves `org/btsr-test` from a Hugging Face cache laid out under a temporary
`HF_HOME` with `HF_HUB_OFFLINE=1`, the upload goes to a mocked `HfApi`, and an autouse guard refuses any
non-loopback socket connection in this process.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard  # noqa: E402

from data_processing.errors import DataError  # noqa: E402
from model_cards import prepare_upload_folder, push_folder_to_hub, write_model_card  # noqa: E402
from model_cards.hub import main as hub_main  # noqa: E402
from modeling_btsr.modeling_btsr import ENDPOINT_HANDLER_FILE, REMOTE_CODE_FILES  # noqa: E402
from tests.isolation import run_without_project  # noqa: E402

REPO_ID = "org/btsr-test"
REVISION = "0123456789abcdef0123456789abcdef01234567"
ITEM_IDS = list(range(100, 130))
HISTORIES = [[100, 101, 102], [105], [], [129, 128, 127, 126, 125, 124, 123, 122, 121, 120, 119, 118]]
# The model's code files (REMOTE_CODE_FILES) and the folder's data files; that list itself is checked by loading a
# saved folder where the project cannot be imported (test_saved_folder_loads_with_eager_attention_without_the_project).
EXPECTED_UPLOAD = sorted(
    [
        "README.md",
        "all_results.json",
        "config.json",
        "dataset_stats.json",
        "item_vocab.json",
        "model.safetensors",
        "validation_curve.png",  # the card's figure (the test extra installs matplotlib)
        *REMOTE_CODE_FILES,
        ENDPOINT_HANDLER_FILE,
    ]
)
RESULTS = {
    "protocol": "temporal",
    "num_test_users": 12,
    "best_epoch": 3.0,
    "test_hr@10": 0.25,
    "test_ndcg@10": 0.125,
    "test_mrr@10": 0.0625,
    "test_coverage@10": 0.5,
    "test_hr@10_head": 0.5,
    "test_mostpop_hr@10": 0.0833,
    "test_hr@10_ci95": [0.0, 0.5],
    "validation_curve": [[1.0, 0.1], [2.0, 0.12], [3.0, 0.125]],
}
STATS = {
    "dataset": "ml-latest-small",
    "protocol": "temporal",
    "num_items": 30,
    "num_train_users": 40,
    "num_train_interactions": 400,
    "num_test_users": 12,
    "partner_share": 0.275,
}
COMMAND = "python train.py --split temporal --hidden_size 16 --max_len 10 --output_dir out"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test instead of reaching the network."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def tiny_model():
    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation

    torch.manual_seed(0)
    model = BTSRForSequentialRecommendation(BTSRConfig(num_items=30, max_position_embeddings=10, hidden_size=16))
    model.btsr.set_item_vocab({"item_ids": ITEM_IDS, "item_counts": [(7 * i) % 13 + 1 for i in range(30)]})
    return model.eval()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A finished output folder: weights, code, vocab, results, stats and card, plus files that must stay local."""
    model = tiny_model()
    recs = model.recommend(HISTORIES, k=5)
    folder = tmp_path_factory.mktemp("out") / "btsr-test"
    model.save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps(RESULTS))
    (folder / "dataset_stats.json").write_text(json.dumps(STATS))
    write_model_card(folder, command=COMMAND, repo_id=REPO_ID)
    # What a training run can leave behind and must never be uploaded.
    (folder / "checkpoint-5").mkdir()
    shutil.copy(folder / "model.safetensors", folder / "checkpoint-5" / "model.safetensors")
    (folder / "checkpoint-5" / "optimizer.pt").write_bytes(b"pickle")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "extra.pkl").write_bytes(b"pickle")
    (folder / "item_vocab.json.tmp").write_text("{}")
    (folder / ".staging-123").mkdir()
    (folder / ".staging-123" / "config.json").write_text("{}")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out.tfevents").write_bytes(b"x")
    (folder / "notes.py").write_text("print('not model code')\n")
    return folder, recs


@pytest.fixture(scope="module")
def hf_home(model_folder, tmp_path_factory):
    """`org/btsr-test` in a Hugging Face cache, holding exactly the files an upload would send."""
    folder, _ = model_folder
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--org--btsr-test"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for name in prepare_upload_folder(folder):
        shutil.copy(folder / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return home


# ---------------------------------------------------------------------------------------------------------------
# Loading by repo id
# ---------------------------------------------------------------------------------------------------------------

LOAD_WITHOUT_PROJECT = """
import sys
sys.stderr = sys.stdout  # transformers' log handler is created on import: its warnings land in the captured output
import json
from transformers import AutoModel
model, info = AutoModel.from_pretrained({repo!r}, trust_remote_code=True, output_loading_info=True)
recs = model.recommend({histories!r}, k=5)
info = {{key: sorted(str(v) for v in values) for key, values in info.items()}}
print("RESULT " + json.dumps({{"recs": recs, "info": info, "module": type(model).__module__,
                               "cls": type(model).__name__}}))
"""


def test_loads_by_repo_id_without_the_project(model_folder, hf_home):
    _, recs = model_folder
    code = LOAD_WITHOUT_PROJECT.format(repo=REPO_ID, histories=HISTORIES)
    out = run_without_project(
        code, env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""}
    )
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    log = out.replace(line, "")
    assert result["cls"] == "BTSRModel"
    assert result["module"].startswith("transformers_modules"), result["module"]  # the repo's own code ran
    assert result["info"]["missing_keys"] == [] and result["info"]["mismatched_keys"] == []
    assert result["info"]["unexpected_keys"] == []
    assert "newly initialized" not in log and "MISSING" not in log and "not initialized" not in log, log
    assert result["recs"] == recs


def test_loads_by_repo_id_with_the_package(model_folder, hf_home):
    from transformers import AutoModel

    import modeling_btsr

    _, recs = model_folder
    model, info = AutoModel.from_pretrained(
        REPO_ID, cache_dir=str(hf_home / "hub"), local_files_only=True, output_loading_info=True
    )
    assert type(model) is modeling_btsr.BTSRModel  # the installed class, no remote code
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.recommend(HISTORIES, k=5) == recs
    assert model.recommend([[]], k=3) == [recs[2][:3]]  # popularity fallback survives the round trip


LOAD_FOLDER_WITH_EAGER = """
import json, sys
from transformers import AutoModel
model = AutoModel.from_pretrained({folder!r}, trust_remote_code=True, attn_implementation="eager")
remote = sys.modules[type(model).__module__]
calls = []
eager = remote.eager_attention_forward
remote.eager_attention_forward = lambda *args, **kwargs: calls.append(1) or eager(*args, **kwargs)
sdpa_calls = []
sdpa = remote.F.scaled_dot_product_attention
remote.F.scaled_dot_product_attention = lambda *args, **kwargs: sdpa_calls.append(1) or sdpa(*args, **kwargs)
recs = model.recommend({histories!r}, k=5)
print("RESULT " + json.dumps({{"recs": recs, "attn": model.config._attn_implementation, "eager_calls": len(calls),
                               "sdpa_calls": len(sdpa_calls), "module": type(model).__module__,
                               "code": sorted(name for name in sys.modules if name.startswith(remote.__package__))}}))
"""


def test_saved_folder_loads_with_eager_attention_without_the_project(model_folder):
    """A folder saved by save_pretrained runs from its own copied files, with the attention function asked for."""
    folder, recs = model_folder
    out = run_without_project(LOAD_FOLDER_WITH_EAGER.format(folder=str(folder), histories=HISTORIES))
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert result["module"].startswith("transformers_modules"), result["module"]
    assert result["attn"] == "eager" and result["eager_calls"] > 0 and result["sdpa_calls"] == 0
    loaded = {name.rsplit(".", 1)[-1] + ".py" for name in result["code"]}
    assert set(REMOTE_CODE_FILES) - {"pipeline_btsr.py"} <= loaded, loaded  # the pipeline: the test below
    assert result["recs"] == recs  # the same lists as the sdpa default gave before saving


PIPELINE_AND_HANDLER_WITHOUT_PROJECT = """
import sys
sys.stderr = sys.stdout
import json
from huggingface_hub import snapshot_download
from transformers import pipeline
recommender = pipeline(model={repo!r}, trust_remote_code=True)
lists = recommender({histories!r}, top_k=5)
single = recommender({histories!r}[0], top_k=5)
sys.path.insert(0, snapshot_download({repo!r}))  # the repository root, as Inference Endpoints runs handler.py
from handler import EndpointHandler
handler = EndpointHandler(snapshot_download({repo!r}))
reply = handler({{"inputs": {histories!r}, "parameters": {{"k": 5}}}})
try:
    handler({{"inputs": {histories!r}, "parameters": {{"kk": 5}}}})
    refused = None
except ValueError as error:
    refused = str(error)
print("RESULT " + json.dumps({{"lists": lists, "single": single, "task": recommender.task,
                               "cls": type(recommender).__module__ + "." + type(recommender).__name__,
                               "model": type(recommender.model).__module__, "reply": json.loads(json.dumps(reply)),
                               "refused": refused}}))
"""


def test_pipeline_and_handler_by_repo_id_without_the_project(model_folder, hf_home):
    """`pipeline(model=REPO_ID, trust_remote_code=True)` and the Endpoints handler, from the Hub cache where the
    project cannot be imported, list recommend()'s ids with its scores."""
    folder, recs = model_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "sequential-recommendation": {"impl": "pipeline_btsr.BTSRRecommendationPipeline", "pt": ["AutoModel"]}
    }
    ids, scores = tiny_model().recommend(HISTORIES, k=5, return_scores=True)
    assert ids == recs
    out = run_without_project(
        PIPELINE_AND_HANDLER_WITHOUT_PROJECT.format(repo=REPO_ID, histories=HISTORIES),
        env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""},
    )
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    assert result["task"] == "sequential-recommendation"
    assert result["cls"].startswith("transformers_modules") and result["cls"].endswith(".BTSRRecommendationPipeline")
    assert result["model"].startswith("transformers_modules")
    for got in (result["lists"], result["reply"]):
        assert [[entry["item_id"] for entry in user] for user in got] == recs
        got_scores = [entry["score"] for user in got for entry in user]
        assert got_scores == pytest.approx([score for user in scores for score in user], abs=1e-5)
    assert [entry["item_id"] for entry in result["single"]] == recs[0]  # one flat history gives one list
    assert result["refused"].startswith("unknown parameter(s) kk")


def test_pipeline_with_the_package_needs_no_remote_code(model_folder, hf_home):
    """After `import modeling_btsr` the task is registered: the package's pipeline class, no remote code."""
    from transformers import pipeline

    import modeling_btsr

    folder, recs = model_folder
    for source in (str(folder), REPO_ID):
        recommender = pipeline(
            "sequential-recommendation", model=source, model_kwargs={"cache_dir": str(hf_home / "hub")}, device="cpu"
        )
        assert type(recommender) is modeling_btsr.BTSRRecommendationPipeline
        assert type(recommender.model) is modeling_btsr.BTSRModel
        lists = recommender(HISTORIES, top_k=5)
        assert [[entry["item_id"] for entry in user] for user in lists] == recs
        assert recommender([[]], top_k=3)[0] == lists[2][:3]  # the popularity fallback, scored by counts
    # With the package imported transformers prefers its registered classes, trust_remote_code or not: the task is
    # then named, and the package's pipeline runs
    kwargs = {"trust_remote_code": True, "model_kwargs": {"cache_dir": str(hf_home / "hub")}}
    also = pipeline("sequential-recommendation", model=REPO_ID, **kwargs)
    assert type(also) is modeling_btsr.BTSRRecommendationPipeline
    assert [[entry["item_id"] for entry in user] for user in also(HISTORIES, top_k=5)] == recs
    model = modeling_btsr.BTSRModel.from_pretrained(folder)
    recommender = pipeline("sequential-recommendation", model=model, device="cpu")
    ids, scores = model.recommend(HISTORIES, k=4, return_scores=True, exclude_seen=False)
    got = recommender(HISTORIES, top_k=4, exclude_seen=False)
    assert [[e["item_id"] for e in user] for user in got] == ids
    assert [[e["score"] for e in user] for user in got] == scores
    with pytest.raises(TypeError, match="unexpected parameter"):
        recommender(HISTORIES, k=4)
    with pytest.raises(KeyError, match="999"):
        recommender([[999]])
    with pytest.warns(UserWarning, match="skipped 1 unknown item id"):
        assert recommender([[999, 100]], unknown_items="skip", top_k=2) == recommender([[100]], top_k=2)


def test_every_model_file_is_copied():
    """save_pretrained copies every `*_btsr.py` file of the package (what they import: tests/test_layers.py)."""
    import modeling_btsr.modeling_btsr as modeling

    assert {path.name for path in Path(modeling.__file__).parent.glob("*_btsr.py")} == set(REMOTE_CODE_FILES)


# ---------------------------------------------------------------------------------------------------------------
# Upload
# ---------------------------------------------------------------------------------------------------------------


def mocked_api():
    api = MagicMock(spec=HfApi)
    api.create_commit.return_value = SimpleNamespace(commit_url=f"https://hub.invalid/{REPO_ID}/commit/{REVISION}")
    return api


def test_prepare_upload_folder_lists_exactly_the_model_files(model_folder):
    folder, _ = model_folder
    assert prepare_upload_folder(folder) == EXPECTED_UPLOAD


def test_push_folder_to_hub_one_commit(model_folder):
    folder, _ = model_folder
    api = mocked_api()
    url = push_folder_to_hub(folder, REPO_ID, private=True, commit_message="BT-SR test", api=api)
    assert url.endswith(f"/commit/{REVISION}")

    api.create_repo.assert_called_once()
    args, kwargs = api.create_repo.call_args
    assert (args[0] if args else kwargs["repo_id"]) == REPO_ID
    assert kwargs["exist_ok"] is True and kwargs["private"] is True

    api.create_commit.assert_called_once()
    args, kwargs = api.create_commit.call_args
    assert (args[0] if args else kwargs["repo_id"]) == REPO_ID
    assert kwargs["commit_message"] == "BT-SR test"
    operations = list(kwargs["operations"])
    assert all(isinstance(op, CommitOperationAdd) for op in operations)
    paths = sorted(op.path_in_repo for op in operations)
    assert paths == EXPECTED_UPLOAD
    for path in paths:
        assert "checkpoint" not in path and not path.endswith((".bin", ".pt", ".pkl")) and not path.startswith(".")

    readme = next(op for op in operations if op.path_in_repo == "README.md")
    with open(readme.path_or_fileobj, encoding="utf-8") as handle:
        data = ModelCard(handle.read()).data
    got = {r.metric_type: r.metric_value for r in data.eval_results}
    assert got == {"hr@10": 0.25, "ndcg@10": 0.125, "mrr@10": 0.0625, "coverage@10": 0.5}
    assert {r.dataset_name for r in data.eval_results} == {"ml-latest-small (temporal split, full ranking)"}
    api.upload_folder.assert_not_called()
    api.upload_file.assert_not_called()


def test_push_deletes_stale_model_files_only(model_folder):
    from huggingface_hub import CommitOperationDelete

    folder, _ = model_folder
    api = mocked_api()
    api.list_repo_files.return_value = [
        ".gitattributes",
        "README.md",
        "model.safetensors",
        "pytorch_model.bin",
        "configuration_old.py",
        "handler.py",
        "demo.ipynb",
        "plots/a.png",
        "extra/modeling_x.py",
    ]
    push_folder_to_hub(folder, REPO_ID, api=api)
    operations = list(api.create_commit.call_args.kwargs["operations"])
    deleted = sorted(op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete))
    assert deleted == ["configuration_old.py", "pytorch_model.bin"]
    assert sorted(op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)) == EXPECTED_UPLOAD

    api = mocked_api()
    api.list_repo_files.return_value = ["pytorch_model.bin"]
    push_folder_to_hub(folder, REPO_ID, api=api, delete_stale=False)
    api.list_repo_files.assert_not_called()
    assert all(isinstance(op, CommitOperationAdd) for op in api.create_commit.call_args.kwargs["operations"])


@pytest.mark.parametrize("name", ["model.safetensors", "item_vocab.json", "modeling_btsr.py", "README.md"])
def test_incomplete_folder_names_the_missing_file(model_folder, tmp_path, name):
    folder, _ = model_folder
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / name).unlink()
    api = mocked_api()
    with pytest.raises(DataError, match=f"missing {name}") as caught:
        push_folder_to_hub(copy, REPO_ID, api=api)
    assert "\n" not in str(caught.value)
    api.create_repo.assert_not_called()
    api.create_commit.assert_not_called()


def test_config_without_auto_map_is_refused(model_folder, tmp_path):
    folder, _ = model_folder
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["auto_map"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="auto_map"):
        prepare_upload_folder(copy)


def test_cli_dry_run_and_push(model_folder, tmp_path, capsys):
    folder, _ = model_folder
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "README.md").unlink()  # the CLI writes a missing card from the folder's JSON files
    assert hub_main([str(copy), "someone/btsr", "--dry_run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1:] == EXPECTED_UPLOAD
    assert 'from_pretrained("someone/btsr", trust_remote_code=True)' in (copy / "README.md").read_text()

    api = mocked_api()
    assert hub_main([str(copy), "someone/btsr", "--private"], api=api) == 0
    assert capsys.readouterr().out.strip().endswith(f"/commit/{REVISION}")
    assert api.create_repo.call_args.kwargs["private"] is True

    assert hub_main([str(tmp_path / "nowhere"), "someone/btsr", "--dry_run"]) == 2
    assert capsys.readouterr().err.startswith("error: ")

    # --reference_folder rewrites the card with another run's test metrics beside this model's
    with_reference = ["--dry_run", "--reference_folder", str(folder), "--reference_label", "same run"]
    assert hub_main([str(copy), "someone/btsr", *with_reference]) == 0
    assert "| metric | this model | same run |" in (copy / "README.md").read_text()
    results = json.loads((folder / "all_results.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "all_results.json").write_text(json.dumps({**results, "num_test_users": 1}))
    shutil.copy(folder / "dataset_stats.json", other / "dataset_stats.json")
    assert hub_main([str(copy), "someone/btsr", "--dry_run", "--reference_folder", str(other)]) == 2
    assert capsys.readouterr().err.startswith("error: reference run: 1 test users")

    # --sweep adds the alpha sweep's table, its note and its trade-off figure, which an upload then sends
    sweep = tmp_path / "sweep.json"
    points = [{"alpha": a, "ndcg@10": 0.2 - a / 10, "coverage@10": 0.7 - a / 5, "seeds": 1} for a in (0, 0.2, 0.4)]
    sweep.write_text(json.dumps({"points": points, "note": "a sweep from somewhere, seed 0"}))
    assert hub_main([str(copy), "someone/btsr", "--dry_run", "--sweep", str(sweep)]) == 0
    text = (copy / "README.md").read_text()
    assert "| 0.2 | - | 0.1800 | 0.6600 | 1 |" in text and "a sweep from somewhere, seed 0" in text
    assert "alpha_tradeoff.png" in capsys.readouterr().out.splitlines()
    sweep.write_text(json.dumps({"points": [{"alpha": 0.1, "ndcg@10": 0.2}]}))
    assert hub_main([str(copy), "someone/btsr", "--dry_run", "--sweep", str(sweep)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {sweep}: point 0 lacks a number for coverage@10"
    missing = tmp_path / "no-sweep.json"
    assert hub_main([str(copy), "someone/btsr", "--dry_run", "--sweep", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {missing}: no such sweep file (benchmarks/report.py writes alpha_sweep_<dataset>.json)"
    )
    with pytest.raises(SystemExit):
        hub_main([str(copy), "someone/btsr", "--dry_run", "--swe", str(sweep)])  # no abbreviations


# ---------------------------------------------------------------------------------------------------------------
# The real HfApi against a loopback endpoint (the Hub's HTTP protocol, served by a tiny local fake)
# ---------------------------------------------------------------------------------------------------------------


class _FakeHub:
    """Answers create-repo, preupload and commit the way the Hub does; records what was sent."""

    def __init__(self):
        import http.server
        import threading

        self.requests, self.commit, self.validated = [], None, None
        self.commits, self.created, self.settings, self.branches = [], [], [], []
        self.fail_commits = False  # answer every commit with a server error
        self.existing = [".gitattributes", "README.md", "pytorch_model.bin"]  # what an earlier push left
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # list_repo_files: one page of the repository tree
                hub.requests.append(self.path)
                if "/tree/" not in self.path:
                    self.send_error(404)
                    return
                data = json.dumps(
                    [{"type": "file", "path": name, "size": 1, "oid": "0" * 40} for name in hub.existing]
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, reply):
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):  # update_repo_settings
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(self.path)
                if not self.path.endswith("/settings"):
                    self.send_error(404)
                    return
                hub.settings.append(json.loads(body))
                self._reply({})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(self.path)
                if self.path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.created.append(payload)
                    reply = {"url": f"{hub.endpoint}/{payload['organization']}/{payload['name']}"}
                elif "/branch/" in self.path:
                    hub.branches.append(self.path.rsplit("/", 1)[-1])
                    reply = {}
                elif self.path == "/api/validate-yaml":  # create_commit checks README.md's metadata first
                    hub.validated = json.loads(body)["content"]
                    reply = {"errors": [], "warnings": []}
                elif "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    reply = {
                        "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    }
                elif "/commit/" in self.path:
                    if hub.fail_commits:
                        self.send_error(500, "the fake Hub refuses commits")
                        return
                    hub.commit = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    hub.commits.append((self.path.rsplit("/", 1)[-1], hub.commit))
                    reply = {"commitUrl": f"{hub.endpoint}/{REPO_ID}/commit/{REVISION}", "commitOid": REVISION}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_push_through_real_hfapi_to_loopback(model_folder, monkeypatch):
    import base64

    from huggingface_hub import constants

    folder, _ = model_folder
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # only this loopback endpoint; the guard blocks others
    hub = _FakeHub()
    try:
        api = HfApi(endpoint=hub.endpoint, token="hf_loopback_test_token")
        url = push_folder_to_hub(folder, REPO_ID, api=api, commit_message="loopback")
    finally:
        hub.close()
    assert url == f"{hub.endpoint}/{REPO_ID}/commit/{REVISION}"
    assert hub.requests[0] == "/api/repos/create"
    assert hub.validated == (folder / "README.md").read_text()
    assert sum("/commit/" in path for path in hub.requests) == 1
    header, *operations = hub.commit
    assert header["value"]["summary"] == "loopback"
    files = [op for op in operations if op["key"] == "file"]
    assert sorted(f["value"]["path"] for f in files) == EXPECTED_UPLOAD
    assert [op["value"]["path"] for op in operations if op["key"] == "deletedFile"] == ["pytorch_model.bin"]
    sent = {f["value"]["path"]: base64.b64decode(f["value"]["content"]) for f in files}
    assert sent["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def _committed_files(commit) -> list[str]:
    return sorted(op["value"]["path"] for op in commit[1:] if op["key"] == "file")


@pytest.fixture
def fake_hub(monkeypatch):
    """The loopback Hub, as the default endpoint of every HfApi() made in this process."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # only this loopback endpoint; the guard blocks others
    hub = _FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    yield hub
    hub.close()


def test_private_and_revision_reach_the_hub(model_folder, fake_hub):
    """An explicit `private` applies to an existing repository too (create_repo ignores it there); a revision is a
    branch, created, and the commit goes to it; without `private` the visibility is left alone."""
    folder, _ = model_folder
    api = HfApi(token="hf_loopback_test_token")
    push_folder_to_hub(folder, REPO_ID, api=api, private=True, revision="experiment")
    assert fake_hub.created[-1]["visibility"] == "private"
    assert fake_hub.settings == [{"visibility": "private"}]
    assert fake_hub.branches == ["experiment"]
    assert [revision for revision, _ in fake_hub.commits] == ["experiment"]
    push_folder_to_hub(folder, REPO_ID, api=api)
    assert "visibility" not in fake_hub.created[-1] and len(fake_hub.settings) == 1  # left alone (or the org's)
    assert fake_hub.branches == ["experiment"] and fake_hub.commits[-1][0] == "main"
    push_folder_to_hub(folder, REPO_ID, api=api, private=False)
    assert fake_hub.settings[-1] == {"visibility": "public"}


def _checkpoint(model_folder, tmp_path, step=5):
    folder, _ = model_folder
    checkpoint = tmp_path / "out" / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "item_vocab.json", *REMOTE_CODE_FILES, ENDPOINT_HANDLER_FILE):
        shutil.copy(folder / name, checkpoint / name)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        (checkpoint / name).write_bytes(b"pickle")
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "checkpoint_complete").write_text("")
    return checkpoint


def test_every_save_pushes_each_checkpoints_model_files(model_folder, fake_hub, tmp_path, caplog):
    from transformers import TrainerControl, TrainerState

    from modeling_btsr.training_run import HubCheckpointPush

    checkpoint = _checkpoint(model_folder, tmp_path)
    hub = {"push_to_hub": True, "hub_model_id": REPO_ID, "hub_token": "hf_x", "hub_private_repo": True}
    callback = HubCheckpointPush({**hub, "hub_revision": "runs"})
    state = TrainerState(global_step=5, epoch=1.0)
    args = SimpleNamespace(output_dir=str(checkpoint.parent))
    callback.on_save(args, state, TrainerControl())
    revision, commit = fake_hub.commits[-1]
    assert revision == "runs" and fake_hub.branches == ["runs"] and fake_hub.settings == [{"visibility": "private"}]
    expected = sorted(["config.json", "item_vocab.json", "model.safetensors", *REMOTE_CODE_FILES])
    expected = sorted([*expected, ENDPOINT_HANDLER_FILE])
    assert _committed_files(commit) == expected  # no optimizer, RNG, trainer state or pickles
    assert commit[0]["value"]["summary"] == "Training in progress: step 5, epoch 1"
    assert not any(op["key"] == "deletedFile" for op in commit[1:])

    state.is_world_process_zero = False  # other processes never upload
    callback.on_save(args, state, TrainerControl())
    assert len(fake_hub.commits) == 1

    fake_hub.fail_commits = True  # a failed upload is one warning line, and training goes on
    state.is_world_process_zero = True
    with caplog.at_level("WARNING", logger="btsr"):
        callback.on_save(args, state, TrainerControl())
    warnings = [record.getMessage() for record in caplog.records if "every_save" in record.getMessage()]
    assert len(warnings) == 1 and "checkpoint-5 failed" in warnings[0] and "\n" not in warnings[0]


def test_hub_strategy_choices_are_refused_in_one_line(tmp_path):
    from modeling_btsr.arguments import HUB_STRATEGIES, HubArguments

    assert HUB_STRATEGIES == ("end", "every_save")
    assert HubArguments().hub_strategy == "end"
    for strategy in ("checkpoint", "all_checkpoints"):
        result = subprocess.run(
            [sys.executable, "train.py", "--output_dir", str(tmp_path / strategy), "--hub_strategy", strategy],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=300,
        )
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if "hub_strategy" in line]
        assert len(lines) == 1 and "invalid choice" in lines[0] and "every_save" in lines[0], result.stderr
        assert "Traceback" not in result.stderr


TRAIN_AGAINST_FAKE_HUB = """
import runpy, socket, sys
real_connect = socket.socket.connect
def guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
        raise AssertionError(f"tried to reach the network: {{address!r}}")
    return real_connect(self, address)
socket.socket.connect = guarded
sys.argv = ["train.py", *{argv!r}]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.integration
def test_train_py_push_flags_against_the_fake_hub(tmp_path):
    """train.py --push_to_hub with every flag, against the loopback Hub: each epoch's checkpoint, then the folder."""
    hub = _FakeHub()
    out = tmp_path / "run"
    argv = [
        "--output_dir", str(out), "--num_train_epochs", "2", "--hidden_size", "16", "--max_len", "20",
        "--push_to_hub", "--hub_model_id", REPO_ID, "--hub_token", "hf_loopback_test_token",
        "--hub_strategy", "every_save", "--hub_private_repo", "True", "--hub_revision", "exp",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1"}
    env.update(HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    try:
        result = subprocess.run(
            [sys.executable, "-c", TRAIN_AGAINST_FAKE_HUB.format(argv=argv)],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    finally:
        hub.close()
    assert result.returncode == 0, result.stderr[-3000:]
    revisions = [revision for revision, _ in hub.commits]
    assert revisions == ["exp"] * len(revisions) and len(revisions) >= 3  # two epochs' checkpoints, then the folder
    assert all(created["visibility"] == "private" for created in hub.created)
    assert hub.settings and all(setting == {"visibility": "private"} for setting in hub.settings)
    assert set(hub.branches) == {"exp"}
    *checkpoints, final = [commit for _, commit in hub.commits]
    for commit in checkpoints:
        assert "README.md" not in _committed_files(commit) and "model.safetensors" in _committed_files(commit)
        assert commit[0]["value"]["summary"].startswith("Training in progress: step ")
    assert {"README.md", "all_results.json", ENDPOINT_HANDLER_FILE} <= set(_committed_files(final))
