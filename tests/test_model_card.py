"""The model card: metadata that round-trips through `ModelCard.load`, and a body that says what was run and how.

No network: cards are rendered and parsed locally (`ModelCard.validate` / `push_to_hub` are never called).
"""

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from data_processing.errors import DataError
from model_cards import build_model_card, data_terms_note, protocol_label, write_model_card

# Section 5 of the reference (published, unverified figures): a card must never print any of them.
UNVERIFIED_PAPER_NUMBERS = [
    "0.0933",
    "0.0811",
    "0.0137",
    "0.0277",
    "0.0661",
    "0.0127",
    "0.0257",
    "0.0911",
    "0.0834",
    "0.0694",
    "0.0085",
    "0.0800",
    "0.0712",
    "0.0091",
    "0.0945",
    "0.0534",
    "0.0851",
    "0.0150",
    "0.0288",
    "0.0998",
    "0.3152",
    "0.1821",
    "0.3164",
    "0.1813",
    "0.0935",
    "0.0544",
    "0.3189",
    "34.6",
]

COMMAND = "python train.py --dataset ml-1m --split leave_one_out --bt_alpha 0.2 --bt_lambda 0.05 --output_dir out"


def sample_results(protocol="leave_one_out", ci=True) -> dict:
    results = {
        "eval_ndcg@10": 0.1712,
        "eval_hr@10": 0.3023,
        "protocol": protocol,
        "num_test_users": 6040 if protocol == "leave_one_out" else 92,
        "best_epoch": 41.0,
        "epochs": 71.0,
        "global_step": 1704,
        "train_seconds": 812.4,
        "train_loss": 6.123,
        "test_effective_rank": 31.7,
        "test_runtime": 3.2,
    }
    values = {
        "hr": [0.0701, 0.2217, 0.3207, 0.4311, 0.6049],
        "ndcg": [0.0701, 0.1461, 0.1783, 0.2062, 0.2406],
        "mrr": [0.0701, 0.1213, 0.1344, 0.1421, 0.1476],
        "coverage": [0.2104, 0.3718, 0.4406, 0.5218, 0.6717],
    }
    for family, row in values.items():
        for k, value in zip((1, 5, 10, 20, 50), row):
            results[f"test_{family}@{k}"] = value
            results[f"test_mostpop_{family}@{k}"] = round(value / 4 + 0.0003, 4)
    for bucket, scale in (("head", 1.21), ("mid", 0.83), ("tail", 0.41)):
        for family in ("hr", "ndcg", "coverage"):
            results[f"test_{family}@10_{bucket}"] = round(values[family][2] * scale, 4)
            results[f"test_mostpop_{family}@10_{bucket}"] = round(values[family][2] * scale / 5, 4)
    if ci:
        results["test_hr@10_ci95"] = [0.3091, 0.3323]
        results["test_ndcg@10_ci95"] = [0.1722, 0.1846]
    return results


def sample_stats(dataset="ml-1m", protocol="leave_one_out") -> dict:
    stats = {
        "dataset": dataset,
        "source": f"/data/{dataset}",
        "protocol": protocol,
        "max_len": 200,
        "num_input_rows": 999611,
        "num_input_users": 6040,
        "num_input_items": 3416,
        "num_items": 3416,
        "num_train_users": 6040,
        "num_train_interactions": 987531,
        "num_test_users": 6040,
        "num_valid_users": 6040,
        "num_eval_interactions": 12080,
        "removed_rows": {"fewer_than_3_interactions": 0},
        "num_train_examples": 6040,
        "partner_share": 0.8612,
        "mean_labelled_positions": 151.3,
    }
    if protocol == "temporal":
        stats.update(t_star=891717885, quantile=0.95)
    return stats


def sample_config(alpha=0.2) -> dict:
    return {
        "model_type": "btsr",
        "num_items": 3416,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,
        "max_position_embeddings": 200,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "loss_type": "ce",
        "bt_alpha": alpha,
        "bt_lambda": 0.05,
    }


def write_folder(folder, results=None, stats=None, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all_results.json").write_text(json.dumps(results or sample_results()))
    (folder / "dataset_stats.json").write_text(json.dumps(stats or sample_stats()))
    (folder / "config.json").write_text(json.dumps(config or sample_config()))
    (folder / "item_vocab.json").write_text(json.dumps({"item_ids": [7, 8, 9, 10], "item_counts": [1, 50, 3, 20]}))
    return folder


@pytest.fixture
def card_folder(tmp_path):
    folder = write_folder(tmp_path / "model")
    write_model_card(folder, command=COMMAND, repo_id="org/btsr-ml1m")
    return folder


def test_eval_results_round_trip(card_folder):
    results = sample_results()
    data = ModelCard.load(card_folder / "README.md").data
    got = {r.metric_type: r.metric_value for r in data.eval_results}
    expected = {key[len("test_") :]: value for key, value in results.items() if re.fullmatch(r"test_[a-z]+@\d+", key)}
    assert got == expected
    assert {"hr@10", "ndcg@10", "mrr@10", "coverage@10"} <= set(got)
    for result in data.eval_results:
        assert result.dataset_name == "MovieLens-1M (leave-one-out, full ranking)"
        assert result.dataset_split == "test"
        assert result.task_type == "other"  # the Hub has no recommendation task id
        assert result.task_name == "Sequential recommendation (next item, full ranking)"
    assert data.model_name == "btsr-ml1m"


def test_metadata(card_folder):
    """The metadata, parsed back by huggingface_hub: fields the Hub knows, a license that carries the data's terms,
    no dataset id that is not a Hub dataset."""
    card = ModelCard.load(card_folder / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "other"
    assert data.license == "other"
    assert data.license_name == "movielens-terms"
    assert data.license_link == "https://files.grouplens.org/datasets/movielens/ml-1m-README.txt"
    assert {"sequential-recommendation", "recommender-system", "barlow-twins", "sasrec", "custom_code", "btsr"} <= set(
        data.tags
    )
    assert data.datasets is None  # MovieLens is not on the Hub: named in the body instead
    assert "MovieLens-1M" in card.text
    header = data.to_dict()
    assert set(header) == {
        "library_name",
        "pipeline_tag",
        "license",
        "license_name",
        "license_link",
        "tags",
        "model-index",
    }
    assert header["model-index"][0]["name"] == "btsr-ml1m"
    # Parsing is lossless: rendering the parsed data again gives the same header
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()


@pytest.mark.parametrize(
    "dataset, license, name",
    [
        ("ml-latest-small", "other", "movielens-terms"),
        ("ml-100k", "other", "movielens-terms"),
        ("beauty", "other", "amazon-reviews-2014-research-only"),
        ("sports", "other", "amazon-reviews-2014-research-only"),
        ("lastfm", "other", "hetrec-2011-research-only"),
        ("my_log.csv", "apache-2.0", None),
    ],
)
def test_license_follows_the_data(tmp_path, dataset, license, name):
    folder = write_folder(tmp_path / "m", stats=sample_stats(dataset))
    data = ModelCard.load(write_model_card(folder, command="x")).data
    assert (data.license, data.license_name, data.datasets) == (license, name, None)
    assert (data.license_link is None) == (name is None)
    explicit = write_folder(tmp_path / "e", stats=sample_stats(dataset))
    data = ModelCard.load(write_model_card(explicit, command="x", license="mit")).data
    assert (data.license, data.license_name) == ("mit", None)


def test_counts_print_as_integers(tmp_path):
    results = {**sample_results(), "test_num_users_head": 1931.0, "test_num_users_mid": 2011.0}
    results["test_num_users_tail"] = 2098.0
    text = write_model_card(write_folder(tmp_path / "m", results=results), command="x").read_text()
    assert "1931.0" not in text and "| 1,931 |" in text and "| 2,098 |" in text
    assert "| selected (best) epoch | 41 |" in text


def test_body(card_folder):
    text = (card_folder / "README.md").read_text()
    assert COMMAND in text
    assert "recommend(" in text
    assert 'AutoModel.from_pretrained("org/btsr-ml1m", trust_remote_code=True)' in text
    assert "import modeling_btsr" in text
    assert "histories = [[8, 10, 9]]" in text  # most popular ids of item_vocab.json
    assert "2510.26407" in text and "@misc{" in text and "Razvorotnev" in text
    # alpha / lambda and what they trade
    assert "α = 0.2," in text and "λ = 0.05)" in text and "coverage" in text and "decorrelat" in text
    # data statistics, the partner share, results with buckets, baseline and bootstrap interval
    assert "| share of training sequences with a same-target partner | 0.8612 (86.1 %) |" in text
    assert "| training interactions | 987,531 |" in text
    assert "| HR@10 | 0.3207 | 0.0805 | [0.3091, 0.3323] |" in text
    assert "| bucket | HR@10 | most popular HR@10 | NDCG@10 | most popular NDCG@10 | Coverage@10 |" in text
    assert "| tail | 0.1315 |" in text
    assert "| effective_rank | 31.7000 |" in text and "runtime" not in text
    assert "Cold start" in text and "fixed at training" in text


def test_no_unverified_paper_numbers(card_folder, tmp_path):
    texts = [(card_folder / "README.md").read_text()]
    temporal = write_folder(tmp_path / "temporal", sample_results("temporal"), sample_stats("ml-100k", "temporal"))
    texts.append(write_model_card(temporal, command="python train.py --split temporal").read_text())
    for text in texts:
        for number in UNVERIFIED_PAPER_NUMBERS:
            assert number not in text, number


def test_temporal_protocol_and_terms(tmp_path):
    folder = write_folder(tmp_path / "t", sample_results("temporal", ci=False), sample_stats("ml-100k", "temporal"))
    text = write_model_card(folder, command="python train.py --dataset ml-100k --split temporal").read_text()
    card = ModelCard(text)
    assert {r.dataset_name for r in card.data.eval_results} == {"MovieLens-100K (temporal split, full ranking)"}
    assert "| split time t* | 891717885 (1998-04-04 19:24 UTC) |" in text
    assert "95% CI" not in text
    assert "research purposes only" in text and "no redistribution" in text and "Harper" in text
    assert 'AutoModel.from_pretrained("path/to/this/model_folder"' in text


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ("ml-1m", "no redistribution"),
        ("ml-1m-raw", "no redistribution"),
        ("ml-100k", "no commercial use"),
        ("ml-latest-small", "may be redistributed only under these same license conditions"),
        ("beauty", "do not redistribute"),
        ("lastfm", "research-only"),
        ("my_log.csv", "were not recorded"),
    ],
)
def test_data_terms_note(dataset, expected):
    assert expected in data_terms_note(dataset)


def test_data_terms_in_card_for_movielens_and_custom(tmp_path):
    small = write_folder(tmp_path / "s", stats=sample_stats("ml-latest-small"))
    assert "may be redistributed only under these same" in write_model_card(small, command="x").read_text()
    custom = write_folder(tmp_path / "c", stats={**sample_stats("my_log.csv"), "source": "/home/me/my_log.csv"})
    text = write_model_card(custom, command="python train.py --data_path my_log.csv").read_text()
    assert "were not recorded" in text
    assert ModelCard(text).data.datasets is None
    assert ModelCard(text).data.license == "apache-2.0"  # terms unknown: the code's license, and the body warns


def test_sasrec_alpha_zero_and_labels(tmp_path):
    card = build_model_card(
        sample_results(), sample_stats(), sample_config(alpha=0.0), COMMAND, dataset_label="ML-1M (SASRec files)"
    )
    assert "plain SASRec" in str(card)
    assert card.data.eval_results[0].dataset_name == "ML-1M (SASRec files) (leave-one-out, full ranking)"
    assert protocol_label("leave_one_out") == "leave-one-out, full ranking"


def test_infonce_run_is_not_called_bt_sr():
    config = {
        **sample_config(alpha=0.1),
        "ssl_objective": "infonce",
        "view_maker": "cl4srec",
        "infonce_temperature": 1.0,
        "infonce_similarity": "dot",
    }
    text = str(build_model_card(sample_results(), sample_stats(), config, COMMAND))
    assert "contrastive baseline**, not BT-SR" in text and "views: `cl4srec`, τ = 1" in text
    assert "| `bt_alpha` (α) | 0.1 | weight of the InfoNCE loss |" in text
    assert "`bt_lambda`" not in text and "| `infonce_temperature` (τ) | 1 |" in text
    bt = str(build_model_card(sample_results(), sample_stats(), sample_config(alpha=0.1), COMMAND))
    assert "**BT-SR** (Barlow Twins" in bt and "InfoNCE" not in bt


def test_ec4srec_card_lists_its_settings():
    from modeling_btsr.arguments import PRESETS

    ssl = {k: v for k, v in PRESETS["ec4srec"].items() if k.startswith(("ec4srec_", "infonce_", "ssl_", "view_"))}
    config = {**sample_config(alpha=0.1), **ssl}
    text = str(build_model_card(sample_results(), sample_stats(), config, COMMAND))
    assert (
        "views: `ec4srec`" in text and "| `ec4srec_negative_weight` | 0.05 | weight of the negative-view loss |" in text
    )
    assert "| `ec4srec_positive_ratio` | 0.3 |" in text and "`ec4srec_update_epochs`" in text


def test_missing_inputs(tmp_path):
    folder = write_folder(tmp_path / "m")
    (folder / "all_results.json").unlink()
    with pytest.raises(DataError, match="all_results.json"):
        write_model_card(folder)
    with pytest.raises(DataError, match="no test metrics"):
        build_model_card({"protocol": "temporal"}, {}, sample_config(), COMMAND)


def test_no_command_recorded(tmp_path):
    folder = write_folder(tmp_path / "n")
    assert "The training command was not recorded." in write_model_card(folder).read_text()


def test_reference_column_beside_this_model(tmp_path):
    folder = write_folder(tmp_path / "btsr")
    baseline = sample_results()
    baseline.update({"test_hr@10": 0.3301, "test_ndcg@10": 0.1842, "command": "python train.py --bt_alpha 0"})
    write_folder(tmp_path / "sasrec", results=baseline, config=sample_config(alpha=0.0))
    text = write_model_card(folder, command=COMMAND, reference_folder=tmp_path / "sasrec").read_text()
    # this model, the reference, most popular, interval: in that order on every metric row
    assert "| metric | this model | SASRec (α = 0) | most popular | 95% CI (per-user bootstrap) |" in text
    assert "| HR@10 | 0.3207 | 0.3301 | 0.0805 | [0.3091, 0.3323] |" in text
    assert "| NDCG@10 | 0.1783 | 0.1842 |" in text
    assert "`python train.py --bt_alpha 0`" in text
    # the model-index holds this run's metrics only
    values = {r.metric_type: r.metric_value for r in ModelCard(text).data.eval_results}
    assert values["hr@10"] == 0.3207
    # without a reference the table is unchanged
    plain = write_model_card(folder, command=COMMAND).read_text()
    assert "| metric | this model | most popular | 95% CI (per-user bootstrap) |" in plain and "SASRec (α" not in plain


def test_reference_from_another_evaluation_is_refused(tmp_path):
    folder = write_folder(tmp_path / "btsr")
    write_folder(tmp_path / "temporal", results=sample_results(protocol="temporal"))
    with pytest.raises(DataError, match=r"reference run: 92 test users under protocol temporal, this model 6040"):
        write_model_card(folder, command=COMMAND, reference_folder=tmp_path / "temporal")
    with pytest.raises(DataError, match=r"nowhere/all_results.json: missing"):
        write_model_card(folder, command=COMMAND, reference_folder=tmp_path / "nowhere")
    write_folder(tmp_path / "other-data", stats=sample_stats(dataset="ml-100k"))
    with pytest.raises(DataError, match=r"reference run: dataset 'ml-100k', this model 'ml-1m': other data"):
        write_model_card(folder, command=COMMAND, reference_folder=tmp_path / "other-data")
    unlabelled = {k: v for k, v in sample_results().items() if k not in ("protocol", "num_test_users")}
    with pytest.raises(DataError, match=r"protocol and number of test users are needed on both sides"):
        build_model_card(sample_results(), sample_stats(), sample_config(), COMMAND, reference=unlabelled)


def test_resumed_run_says_its_time_covers_the_last_session(tmp_path):
    folder = write_folder(tmp_path / "resumed", results={**sample_results(), "resumed_from_epoch": 61.0})
    text = write_model_card(folder, command=COMMAND).read_text()
    assert "| training time (s) of the last session, which resumed at epoch 61 | 812.4 |" in text
    plain = write_model_card(write_folder(tmp_path / "fresh"), command=COMMAND).read_text()
    assert "| training time (s) | 812.4 |" in plain


def test_readme_cites_the_paper_with_the_cards_bibtex():
    """One BibTeX entry: the README's citation is the one every model card carries."""
    from model_cards.card import BIBTEX

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert BIBTEX in readme and readme.count("@misc{") + readme.count("@article{") == 1


def _png_pixels(path: Path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_figures_beside_the_card_from_the_curve_and_the_sweep(tmp_path):
    """The validation curve and the alpha trade-off are PNGs beside the card, referenced from it with their
    captions, sent with an upload, drawn the same way twice, and the sweep's table holds the given figures."""
    pytest.importorskip("matplotlib", reason="the figures need matplotlib (the test extra installs it)")
    from model_cards.plots import CURVE_FILE, TRADEOFF_FILE

    results = {**sample_results(), "validation_curve": [[e, 0.1 + 0.002 * e - 0.00002 * e * e] for e in range(1, 72)]}
    sweep = [
        {"alpha": 0.0, "hr@10": 0.3070, "ndcg@10": 0.1761, "coverage@10": 0.7313, "seeds": 1},
        {"alpha": 0.2, "hr@10": 0.2906, "ndcg@10": 0.1658, "coverage@10": 0.6414, "seeds": 1},
        {"alpha": 0.4, "hr@10": 0.2811, "ndcg@10": 0.1602, "coverage@10": 0.6020, "seeds": 1},
    ]
    folder = write_folder(tmp_path / "model", results=results)
    write_model_card(folder, command=COMMAND, repo_id="org/btsr-ml1m", sweep=sweep)
    text = (folder / "README.md").read_text()
    assert f"![Validation NDCG@10 by epoch; the model is the one of epoch 41]({CURVE_FILE})" in text
    assert f"]({TRADEOFF_FILE})" in text
    assert "| 0.2 | 0.2906 | 0.1658 | 0.6414 | 1 |" in text and "| 0.4 | 0.2811 | 0.1602 | 0.6020 | 1 |" in text
    for name, shape in ((CURVE_FILE, (320, 600)), (TRADEOFF_FILE, (360, 500))):
        pixels = _png_pixels(folder / name)
        assert pixels.shape[:2] == shape
        assert pixels[..., :3].std() > 0.05  # something is drawn on the white
    first = (folder / CURVE_FILE).read_bytes()
    write_model_card(folder, command=COMMAND, repo_id="org/btsr-ml1m", sweep=sweep)
    assert (folder / CURVE_FILE).read_bytes() == first  # no date or version in the file
    # Without a sweep the trade-off figure goes, and is not left behind to be uploaded stale.
    write_model_card(folder, command=COMMAND, repo_id="org/btsr-ml1m")
    assert not (folder / TRADEOFF_FILE).exists() and TRADEOFF_FILE not in (folder / "README.md").read_text()


def test_figures_not_drawn_without_matplotlib_are_named_in_the_card(tmp_path, monkeypatch):
    import model_cards.card
    from model_cards.plots import CURVE_FILE

    results = {**sample_results(), "validation_curve": [[1.0, 0.1], [2.0, 0.12]]}
    folder = write_folder(tmp_path / "model", results=results)
    (folder / CURVE_FILE).write_bytes(b"an old figure")
    monkeypatch.setattr(model_cards.card, "can_plot", lambda: False)
    write_model_card(folder, command=COMMAND)
    text = (folder / "README.md").read_text()
    assert "Figures not drawn (validation curve): matplotlib is not installed (`pip install 'btsr[plots]'`)." in text
    assert not (folder / CURVE_FILE).exists()


def test_curve_of_a_log_history_takes_each_epochs_first_evaluation():
    from model_cards.plots import curve_from_log_history

    history = [
        {"loss": 7.0, "epoch": 1.0},
        {"eval_ndcg@10": 0.10, "epoch": 1.0},
        {"eval_ndcg@10": 0.12, "epoch": 2.0},
        {"eval_ndcg@10": 0.11, "epoch": 3.0},
        {"eval_ndcg@10": 0.12, "epoch": 3.0},  # the selected model's evaluation after training
        {"test_ndcg@10": 0.2, "epoch": 3.0},
    ]
    assert curve_from_log_history(history) == [[1.0, 0.10], [2.0, 0.12], [3.0, 0.11]]


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_a_bert4rec_model_is_described_as_one(tmp_path, alpha):
    config = {**sample_config(alpha), "backbone": "bert4rec", "mlm_probability": 0.2}
    folder = write_folder(tmp_path / "bert4rec", config=config)
    text = write_model_card(folder, command=COMMAND).read_text()
    assert "**BERT4Rec backbone**" in text and "masked with probability 0.2" in text and "last 199 items" in text
    assert "- bert4rec" in text  # the tag
    assert ("plain BERT4Rec (`bt_alpha = 0`" in text) == (alpha == 0) and "plain SASRec (`bt_alpha" not in text
    sasrec = write_model_card(write_folder(tmp_path / "sasrec"), command=COMMAND).read_text()
    assert "BERT4Rec" not in sasrec and "- bert4rec" not in sasrec
