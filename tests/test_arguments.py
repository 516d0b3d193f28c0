"""train.py's settings: one parser, no abbreviations, precedence command line > config > preset > defaults for every
setting, help with the effective defaults, bad values refused in one line before any data is read, and a run rebuilt
from its run_settings.json giving the same results."""

import json
import shlex
import types
from dataclasses import fields
from typing import Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
import pytest
import yaml

import train
from modeling_btsr import arguments
from modeling_btsr.arguments import (
    BTSRTrainingArguments,
    DataArguments,
    ModelArguments,
    SettingsError,
    resolve_settings,
    settings_command,
)

# Layering flags; values this CPU machine refuses by design (fp16, bf16, tf32: tested below or by the Trainer);
# settings refused on purpose (label smoothing) or valid only beside another (a prefetch factor needs workers; fsdp
# takes its own option words; a DDP backend needs a launched process group).
_NOT_ROUND_TRIPPED = {
    "dataset",
    "preset",
    "config",
    "output_dir",
    "fp16",
    "bf16",
    "bf16_full_eval",
    "tf32",
    "label_smoothing_factor",
    "dataloader_prefetch_factor",
    "fsdp",
    "ddp_backend",
    *arguments._NOT_HONOURED,  # refused whenever given: tested in _bad_cases
}
_CHOICES = {a.dest: a.choices for a in arguments.build_parser(help_all=True).built_actions if a.choices}


def _is_simple(annotation) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return len(rest) == 1 and _is_simple(rest[0])
    return annotation in (int, float, bool, str) or get_origin(annotation) in (Literal, list)


def _base(annotation):
    if get_origin(annotation) in (Union, types.UnionType):
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _other_value(annotation, default, name=None):
    """A valid value different from `default`, by type (or from the flag's choices)."""
    annotation = _base(annotation)
    if get_origin(annotation) is Literal:
        return next(c for c in get_args(annotation) if c != default)
    if name in _CHOICES:
        return next(c for c in _CHOICES[name] if c != default)
    if annotation is bool:
        return not default
    if annotation is int:
        return 2 if default in (None, -1) else default + 2
    if annotation is float:
        return default / 2 if default else 0.25
    if name == "metric_for_best_model":  # one of the metrics validation reports
        return "eval_hr@10" if default != "eval_hr@10" else "eval_mrr@5"
    if annotation is str:
        return "other_value"
    if get_origin(annotation) is list:
        return ["a", "b"] if get_args(annotation)[0] is str else [8, 4]
    raise AssertionError(annotation)


def _cli(name, value) -> list[str]:
    return [f"--{name}", *map(str, value)] if isinstance(value, list) else [f"--{name}", str(value)]


def _round_trip_fields():
    hints = {**get_type_hints(ModelArguments), **get_type_hints(DataArguments)}
    names = [f.name for f in fields(ModelArguments)] + [f.name for f in fields(DataArguments)]
    training_hints = get_type_hints(BTSRTrainingArguments)
    training = [f.name for f in fields(BTSRTrainingArguments) if f.init and f.name not in arguments.HUB_SETTINGS]
    names += [n for n in training if _is_simple(training_hints[n])]  # every training field a flag value can hold
    hints.update({n: training_hints[n] for n in training})
    return [(n, hints[n]) for n in names if n not in _NOT_ROUND_TRIPPED]


ROUND_TRIP = _round_trip_fields()


@pytest.fixture
def out(tmp_path):
    return ["--output_dir", str(tmp_path / "out")]


def test_round_trip_covers_every_model_and_data_setting():
    covered = {name for name, _ in ROUND_TRIP}
    assert {f.name for f in fields(ModelArguments)} <= covered
    assert {f.name for f in fields(DataArguments)} - _NOT_ROUND_TRIPPED <= covered
    # The model settings are BTSRConfig's own fields (less num_items; max_len and dropout are its renamed ones).
    config_fields = set(arguments.BTSRConfig.__dict__["__annotations__"])
    config_fields -= {"num_items", "attention_probs_dropout_prob"}
    renamed = {"max_position_embeddings": "max_len", "hidden_dropout_prob": "dropout"}
    assert {renamed.get(n, n) for n in config_fields} == {f.name for f in fields(ModelArguments)}


@pytest.mark.parametrize("name, annotation", ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_every_setting_round_trips_with_its_precedence(name, annotation, tmp_path, out, monkeypatch):
    if name in ("data_format", "user_column", "item_column", "timestamp_column"):  # they describe --data_path's file
        out = out + ["--data_path", str(tmp_path / "log.csv")]
    if name in ("holdout_fraction", "holdout_seed"):  # they describe --split user_holdout
        out = out + ["--split", "user_holdout"]
    if name == "mlm_probability":  # it describes --backbone bert4rec
        out = out + ["--backbone", "bert4rec"]
    for prefix, owner in (("ec4srec_", "ec4srec"), ("cl4srec_", "cl4srec")):  # they describe --view_maker OWNER
        if name.startswith(prefix):
            out = out + ["--view_maker", owner, "--ssl_objective", "infonce"]
    if name.startswith("infonce_"):  # they describe --ssl_objective infonce
        out = out + ["--ssl_objective", "infonce"]
    if name.startswith("sce_"):  # they describe --loss_type sce
        out = out + ["--loss_type", "sce"]
    if name == "bce_num_negatives":  # it describes the sampled losses
        out = out + ["--loss_type", "bce"]
    if name in ("warmup_steps", "lr_scheduler_kwargs"):  # read by a schedule other than the default constant one
        out = out + ["--lr_scheduler_type", "linear"]
    for event in ("eval", "save", "logging"):  # a step interval describes a `steps` strategy
        if name == f"{event}_steps":
            out = out + [f"--{event}_strategy", "steps", "--load_best_model_at_end", "False"]
    if name == "dataloader_persistent_workers":  # it describes worker processes
        out = out + ["--dataloader_num_workers", "1"]
    if name == "k_core":  # it iterates two thresholds
        out = out + ["--min_users_per_item", "2", "--min_items_per_user", "2"]
    if name == "data_root":  # it locates a named dataset
        out = out + ["--dataset", "ml-1m"]
    if name in ("run_name", "project") or name.startswith("trackio_"):  # they describe a tracker's run
        out = out + ["--report_to", "all"]
    default = resolve_settings(out).values[name]
    value, other = _other_value(annotation, default, name), None
    # command line
    settings = resolve_settings(out + _cli(name, value))
    assert settings.values[name] == value and settings.sources[name] == "command line"
    # config file (YAML), and the command line above it
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({name: value}))
    settings = resolve_settings(out + ["--config", str(config)])
    assert settings.values[name] == value and settings.sources[name] == f"config:{config}"
    if _base(annotation) in (int, float) or get_origin(_base(annotation)) is Literal or _base(annotation) is bool:
        other = _other_value(annotation, value, name) if _base(annotation) is not bool else default
        if other is not None and (other != default or _base(annotation) is bool):
            settings = resolve_settings(out + ["--config", str(config)] + _cli(name, other))
            assert settings.values[name] == other and settings.sources[name] == "command line"
    # a preset, under the config file
    monkeypatch.setitem(arguments.PRESETS, "probe", {name: value})
    settings = resolve_settings(out + ["--preset", "probe"])
    assert settings.values[name] == value and settings.sources[name] == "preset:probe"
    if other is not None:
        config.write_text(yaml.safe_dump({name: other}))
        settings = resolve_settings(out + ["--preset", "probe", "--config", str(config)])
        assert settings.values[name] == other and settings.sources[name] == f"config:{config}"


def _long_flags():
    parser = arguments.build_parser(help_all=True)
    return sorted({a.option_strings[0] for a in parser.built_actions if a.option_strings})


LONG_FLAGS = _long_flags()


@pytest.mark.parametrize("flag", LONG_FLAGS)
def test_every_abbreviation_and_misspelling_fails_naming_it(flag, out):
    all_flags = set(LONG_FLAGS)
    for wrong in (flag[:-2], flag + "s", flag[:3] + flag[4] + flag[3] + flag[5:]):
        if wrong in all_flags or len(wrong) < 4:
            continue
        with pytest.raises(SettingsError, match=f"^unknown argument {wrong}[;( ]") as error:
            resolve_settings(out + [wrong, "1"])
        assert "\n" not in str(error.value)


def test_abbreviations_from_the_issue_suggest_the_flag(out):
    for wrong, meant in (
        ("--max_step", "--max_steps"),
        ("--bt_alp", "--bt_alpha"),
        ("--per_device_train_batch", "--per_device_train_batch_size"),
    ):
        with pytest.raises(SettingsError, match=f"did you mean {meant}\\?"):
            resolve_settings(out + [wrong, "5"])


def test_help_shows_the_effective_defaults_choices_and_presets(capsys):
    with pytest.raises(SystemExit) as stop:
        resolve_settings(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for flag, default in (
        ("--learning_rate", "0.001"),
        ("--per_device_train_batch_size", "32"),
        ("--num_train_epochs", "20"),
        ("--dropout", "0.2"),
        ("--max_grad_norm", "0.0"),
        ("--adam_beta2", "0.98"),
    ):
        line = next(line for line in text.splitlines() if line.strip().startswith(flag + " "))
        assert f"(default: {default})" in line or f"(default: {default})" in text.split(line, 1)[1][:200], flag
    assert "--loss_type {ce,sce,bce,bpr}" in text and "--split {temporal,leave_one_out,user_holdout}" in text
    for group in ("model:", "self-supervised loss", "data and protocol:", "training (", "Hugging Face Hub:"):
        assert group in text
    assert all(f"  {name} " in text for name in arguments.PRESETS)
    assert "--adafactor" not in text  # the rest of TrainingArguments waits for --help_all
    with pytest.raises(SystemExit):
        resolve_settings(["--dataset", "beauty", "--help"])
    beauty = capsys.readouterr().out
    assert "(default: 0.6)" in beauty.split("  --dropout ", 1)[1].split("  --", 1)[0]


def _run_main(argv, monkeypatch, capsys):
    """train.main in-process; any attempt to read data fails the test (errors must come before it)."""
    import modeling_btsr.training_run as training_run

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the settings were refused")

    monkeypatch.setattr(training_run, "prepare_data", no_data)
    code = train.main(argv)
    return code, capsys.readouterr().err


def _bad_cases(tmp_path):
    written = []

    def config(text, suffix=".yaml"):
        path = tmp_path / f"c{len(written)}{suffix}"
        written.append(path)
        path.write_text(text)
        return str(path)

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    return [
        (["--max_step", "5"], "--max_step"),
        (["--bt_alp", "0.3"], "--bt_alp"),
        (["--config", config('bt_alpha: "lots"\n')], "key bt_alpha: expected float, got 'lots'"),
        (["--config", config("data_path: 123\n")], "key data_path: expected a string, got 123"),
        (["--config", config("bt_alpha: null\n")], "key bt_alpha: expected float, got null"),
        (["--config", config("bt_alpah: 0.1\n")], "unknown setting 'bt_alpah'; did you mean bt_alpha?"),
        (["--config", config("bt_alpha: 0.1\n", ".txt")], "expected a .yaml, .yml or .json file"),
        (["--config", config("bt_alpha: [1\n")], "cannot parse config file"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps: must be >= 1"),
        (["--bt_alpha", "nan"], "--bt_alpha: must be a finite number, got nan"),
        (["--learning_rate", "inf"], "--learning_rate: must be a finite number"),
        (["--num_train_epochs", "0"], "--num_train_epochs: must be > 0"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size: must be >= 1"),
        (["--patience", "-1"], "--patience: must be >= 1"),
        (["--dropout", "1.5"], "--dropout: must be in [0, 1)"),
        (["--eval_context_len", "0"], "--eval_context_len: must be >= 1"),
        (["--holdout_fraction", "0.2"], "--holdout_fraction: applies to --split user_holdout only"),
        (["--holdout_seed", "3"], "--holdout_seed: applies to --split user_holdout only"),
        (["--split", "user_holdout", "--holdout_fraction", "1"], "--holdout_fraction: must be in (0, 1), got 1.0"),
        (["--eval_context_len", "201"], "--eval_context_len: is above --max_len 200"),
        (["--data_path", ""], "--data_path: is empty"),
        (["--dataset", "yelp"], "invalid choice: 'yelp'"),
        (["--loss_type", "mse"], "invalid choice: 'mse'"),
        (["--hub_strategy", "checkpoint"], "invalid choice: 'checkpoint'"),
        (["--push_to_hub"], "--push_to_hub: needs --hub_model_id"),
        (["--output_dir", str(a_file)], f"--output_dir {a_file}: {a_file} is a file"),
        (["--output_dir", str(a_file / "sub")], "is a file, not a folder"),
        (["--fp16"], "--fp16: needs a GPU"),
        (["--intermediate_size", "0"], "--intermediate_size: must be >= 1, got 0"),
        (["--initializer_range", "-1"], "--initializer_range: must be > 0"),
        (["--initializer_range", "nan"], "--initializer_range: must be a finite number"),
        (["--fsdp", "full_shard"], "--fsdp: accelerate runs FSDP on GPUs only"),  # not a silent DDP on a CPU
        (["--label_smoothing_factor", "0.1"], "--label_smoothing_factor: is not supported"),
        (["--bt_alpha", "0", "--bt_projector_dims", "8"], "--bt_projector_dims: has no effect with --bt_alpha 0"),
        (["--backbone", "bert"], "invalid choice: 'bert'"),
        (["--backbone", "bert4rec", "--mlm_probability", "1"], "mlm_probability must be in (0, 1)"),
        (["--mlm_probability", "0.3"], "--mlm_probability: applies to --backbone bert4rec only, not --backbone sasrec"),
        (["--infonce_temperature", "0.5"], "--infonce_temperature: applies to --ssl_objective infonce only"),
        (["--cl4srec_mask_ratio", "0.1"], "--cl4srec_mask_ratio: applies to --view_maker cl4srec only"),
        (
            ["--bt_alpha", "0", "--view_maker", "dropout"],
            "--view_maker: has no effect with --bt_alpha 0 (no self-supervised loss)",
        ),
        (
            ["--preset", "cl4srec", "--bt_alpha", "0"],
            "--ssl_objective (from preset:cl4srec): has no effect with --bt_alpha 0",
        ),
        (
            ["--ec4srec_positive_ratio", "0.5"],
            "--ec4srec_positive_ratio: applies to --view_maker ec4srec only, not --view_maker same_target",
        ),
        (["--backbone", "bert4rec", "--loss_type", "bce"], "--backbone bert4rec trains with --loss_type 'ce' or 'sce'"),
        (["--patience", "0"], "--patience: must be >= 1, got 0"),  # EarlyStoppingCallback would stop at once
        (["--sce_n_buckets", "10"], "--sce_n_buckets: applies to --loss_type sce only, not --loss_type ce"),
        (["--loss_type", "bpr", "--sce_mix_x", "True"], "--sce_mix_x: applies to --loss_type sce only"),
        (
            ["--loss_type", "sce", "--bce_num_negatives", "5"],
            "--bce_num_negatives: applies to --loss_type bce or bpr only, not --loss_type sce",
        ),
        (["--bt_alpha", "0", "--bt_lambda", "0.1"], "--bt_lambda: has no effect with --bt_alpha 0"),
        (
            ["--preset", "cl4srec", "--bt_lambda", "0.1"],
            "--bt_lambda: applies to --ssl_objective barlow_twins only, not --ssl_objective infonce",
        ),
        (["--config", config("bt_alpha: 0\nbt_lambda: 0.2\n")], "--bt_lambda (from config:"),
        (["--eval_strategy", "no", "--patience", "3"], "--patience: has no effect with --eval_strategy no"),
        (["--eval_strategy", "no", "--metric_for_best_model", "hr@10"], "--metric_for_best_model: has no effect"),
        (
            ["--load_best_model_at_end", "False", "--patience", "3"],
            "--patience: has no effect with --load_best_model_at_end False",
        ),
        # Trainer settings whose code path BT-SR replaces: each would be accepted and ignored (or fail later)
        (["--warmup_steps", "100"], "--warmup_steps: has no effect with --lr_scheduler_type constant"),
        (
            ["--lr_scheduler_kwargs", '{"a": 1}'],
            "--lr_scheduler_kwargs: has no effect with --lr_scheduler_type constant",
        ),
        (["--eval_steps", "5"], "--eval_steps: applies to --eval_strategy steps only, not --eval_strategy epoch"),
        (["--save_steps", "5"], "--save_steps: applies to --save_strategy steps only"),
        (["--logging_steps", "5"], "--logging_steps: applies to --logging_strategy steps only"),
        (
            ["--dataloader_persistent_workers", "True"],
            "--dataloader_persistent_workers: needs --dataloader_num_workers",
        ),
        (["--metric_for_best_model", "eval_loss"], "--metric_for_best_model: validation reports no 'eval_loss'"),
        (["--metric_for_best_model", "ndcg@7"], "no 'ndcg@7'; did you mean ndcg@5?"),
        (
            ["--lr_scheduler_type", "reduce_lr_on_plateau"],
            "--lr_scheduler_type: reduce_lr_on_plateau is stepped on eval_ndcg@10, where higher is better",
        ),
        (
            ["--torch_compile_mode", "default", "--length_grouped_attention", "True"],
            "--length_grouped_attention: cannot be combined with --torch_compile",
        ),
        (["--remove_unused_columns", "True"], "--remove_unused_columns: must stay False"),
        (["--logging_nan_inf_filter", "False"], "--logging_nan_inf_filter: has no effect"),
        (["--prediction_loss_only"], "--prediction_loss_only: has no effect: validation ranks the whole catalogue"),
        (["--eval_accumulation_steps", "2"], "--eval_accumulation_steps: has no effect"),
        (["--include_for_metrics", "inputs"], "--include_for_metrics: has no effect"),
        (["--auto_find_batch_size"], "--auto_find_batch_size: is not supported"),
        (["--neftune_noise_alpha", "5"], "--neftune_noise_alpha: is not supported"),
        (["--save_only_model"], "--save_only_model: is not supported"),
        (["--enable_jit_checkpoint"], "--enable_jit_checkpoint: is not supported"),
        (["--label_names", "target"], "--label_names: has no effect"),
        (["--length_column_name", "n"], "--length_column_name: has no effect"),
        (["--hub_always_push"], "--hub_always_push: has no effect"),
        (["--do_predict"], "--do_predict: has no effect: train.py always trains"),
        # Transformers counts every token for any word it does not know: a typo is refused, not reinterpreted
        (
            ["--include_num_input_tokens_seen", "non-padding"],
            "--include_num_input_tokens_seen: expected a boolean or one of all, non_padding, no, got 'non-padding'",
        ),
        (["--do_train"], "--do_train: has no effect"),
        (["--eval_strategy", "no", "--do_eval"], "--do_eval: has no effect"),
        # the default typed: Transformers turns evaluation back on with --eval_strategy epoch, so False is ignored
        (["--do_eval", "False"], "--do_eval: has no effect"),
        (["--do_predict", "False"], "--do_predict: has no effect"),
        (["--hub_strategy", "every_save"], "--hub_strategy: applies with --push_to_hub only"),
        (["--hub_private_repo", "True"], "--hub_private_repo: applies with --push_to_hub only"),
        (["--data_path", "log.csv", "--data_root", "data"], "--data_root: applies to a named --dataset only"),
        (["--k_core", "--min_users_per_item", "5"], "--k_core: has no effect unless --min_users_per_item and"),
        (["--data_root", "data"], "--data_root: has no effect with --dataset ml-latest-small, which ships with BT-SR"),
        (["--dataset", "ml-1m-raw", "--download", "--data_root", "d"], "--data_root: has no effect with --download"),
        (["--data_path", "log.csv", "--download"], "--download: applies to a named --dataset (ml-1m-raw)"),
        (["--config", config("dataset: beauty\n"), "--data_path", "log.csv"], "--dataset (from config:"),
        (
            ["--preset", "cl4srec", "--view_maker", "same_target+dropout", "--ssl_view_span", "random_prefix"],
            "--view_maker: same_target+dropout is same_target under --ssl_view_span random_prefix",
        ),
        (
            ["--preset", "ec4srec", "--ec4srec_negative_weight", "0", "--ec4srec_negative_ratio", "0.5"],
            "--ec4srec_negative_ratio: has no effect with --ec4srec_negative_weight 0",
        ),
        (["--preset", "bert4rec", "--eval_context_len", "200"], "--eval_context_len: must be below --max_len 200"),
        (
            ["--preset", "ec4srec", "--num_train_epochs", "10"],
            "--num_train_epochs: 10 epochs end before EC4SRec's first explanation, after epoch 15",
        ),
        (
            ["--preset", "ec4srec", "--num_train_epochs", "20", "--ec4srec_update_epochs", "5", "25"],
            "--ec4srec_update_epochs: epoch 25 is never reached with --num_train_epochs 20",
        ),
    ]


def test_bad_values_fail_in_one_line_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    for argv, message in _bad_cases(tmp_path):
        if "--output_dir" not in argv:
            argv = argv + ["--output_dir", str(tmp_path / "out")]
        code, err = _run_main(argv, monkeypatch, capsys)
        assert code == 2, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (argv, err)


def test_a_value_from_a_file_names_its_source(tmp_path, out):
    config = tmp_path / "c.yaml"
    config.write_text("bt_alpha: -1\n")
    with pytest.raises(SettingsError, match=rf"^--bt_alpha \(from config:{config}\): must be >= 0"):
        resolve_settings(out + ["--config", str(config)])


def test_yaml_scientific_notation_is_a_float_and_choices_are_checked_in_files(tmp_path, out):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 1e-3\nbt_alpha: 1e-1\n")  # YAML 1.1 reads both as strings
    settings = resolve_settings(out + ["--config", str(config)])
    assert settings.training.learning_rate == 0.001 and settings.model.bt_alpha == 0.1
    config.write_text("loss_type: mse\n")
    with pytest.raises(SettingsError, match="key loss_type: 'mse' is not one of ce, sce, bce, bpr"):
        resolve_settings(out + ["--config", str(config)])


def test_push_refused_offline_and_without_token_before_training(out, monkeypatch):
    hub = ["--push_to_hub", "--hub_model_id", "org/m"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SettingsError, match="--push_to_hub: cannot upload while HF_HUB_OFFLINE is set"):
        resolve_settings(out + hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(SettingsError, match="--push_to_hub: needs a token"):
        resolve_settings(out + hub)
    settings = resolve_settings(out + hub + ["--hub_token", "t", "--hub_revision", "v1"])
    assert settings.hub["hub_revision"] == "v1" and settings.training.push_to_hub is False


def test_tracker_needs_its_package(out):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(SettingsError, match=r"--report_to: tensorboard is not installed \(pip install 'btsr\[tens"):
            resolve_settings(out + ["--report_to", "tensorboard"])
    else:
        assert resolve_settings(out + ["--report_to", "tensorboard"]).training.report_to == ["tensorboard"]
    with pytest.raises(SettingsError, match="unknown tracker 'tensorbored'"):
        resolve_settings(out + ["--report_to", "tensorbored"])


def test_derived_defaults_follow_the_settings_they_depend_on(out):
    settings = resolve_settings(out + ["--eval_strategy", "no"])  # no evaluations: nothing to select
    assert settings.training.load_best_model_at_end is False
    assert resolve_settings(out).training.load_best_model_at_end is True
    with pytest.raises(SettingsError, match="invalid training setting"):  # said explicitly: the Trainer refuses it
        resolve_settings(out + ["--eval_strategy", "no", "--load_best_model_at_end", "True"])
    assert resolve_settings(out).training.dataloader_pin_memory is False  # no accelerator here
    assert resolve_settings(out).training.ddp_find_unused_parameters is False


def test_dataset_presets_exist_for_every_named_dataset_and_nothing_else(out):
    assert set(arguments.DATASET_PRESETS) == set(arguments.KNOWN_DATASETS)
    for name in ("lastfm", "sports", "ml-100k"):
        settings = resolve_settings(out + ["--dataset", name])
        assert settings.sources["per_device_train_batch_size"] == f"preset:{name}"


def test_own_file_gets_no_named_datasets_preset(out, tmp_path):
    """`--data_path` alone trains with the documented defaults, not the embedded dataset's preset (whose name is
    only the default of `--dataset`); `--preset` still applies one on request."""
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id\n1,1\n")
    own = resolve_settings(out + ["--data_path", str(log)])
    assert not any(source.startswith("preset:") for source in own.sources.values())
    assert own.values["num_train_epochs"] != arguments.DATASET_PRESETS["ml-latest-small"]["num_train_epochs"]
    asked = resolve_settings(out + ["--data_path", str(log), "--preset", "ml-latest-small"])
    assert asked.sources["num_train_epochs"] == "preset:ml-latest-small" and asked.values["num_train_epochs"] == 20
    assert resolve_settings(out).sources["num_train_epochs"] == "preset:ml-latest-small"


def test_a_setting_of_words_or_booleans_takes_both(out):
    """`include_num_input_tokens_seen` is `str | bool`: HfArgumentParser alone refuses its words (non_padding)."""
    for given, expected in (("non_padding", "non_padding"), ("all", "all"), ("true", "all"), ("no", "no")):
        settings = resolve_settings(out + ["--include_num_input_tokens_seen", given])
        assert settings.training.include_num_input_tokens_seen == expected, given


def test_every_selectable_metric_is_one_validation_reports():
    """`--metric_for_best_model` is checked against `selectable_metrics`: each is a key of a real evaluation."""
    from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation
    from modeling_btsr.evaluation import evaluate_ranking, selectable_metrics

    model = BTSRForSequentialRecommendation(BTSRConfig(num_items=60, hidden_size=8, max_position_embeddings=5))
    metrics = evaluate_ranking(model, [[1, 2], [3]], [4, 5], item_user_counts=np.ones(60))
    assert {f"eval_{name}" for name in selectable_metrics()} <= set(metrics)
    assert len(selectable_metrics()) == 4 * 5 and "eval_loss" not in metrics


def test_a_setting_without_effect_is_refused_only_where_the_user_gave_it(tmp_path, out):
    """A dataset preset's own values that an override makes moot are the preset's, and a value equal to the one the
    run gets anyway changes nothing: neither is refused, and a saved run of either rebuilds."""
    for argv in (
        ["--dataset", "beauty", "--loss_type", "ce"],  # the preset's SCE buckets, now unused
        ["--dataset", "beauty", "--bt_alpha", "0", "--bt_lambda", "0.1"],  # the preset's own lambda, restated
        ["--bt_alpha", "0", "--bt_lambda", "0.05"],  # the default, restated (recorded commands do)
        ["--eval_strategy", "no"],  # the preset's patience, now unused
    ):
        settings = resolve_settings(out + argv)
        saved = json.loads(json.dumps(arguments.run_settings(settings)))
        rebuilt = resolve_settings(shlex.split(settings_command(saved, output_dir=str(tmp_path / "again")))[2:])
        assert {k for k in settings.values if settings.values[k] != rebuilt.values[k]} <= {"output_dir"}, argv
        config = tmp_path / "run_settings.json"
        config.write_text(json.dumps(saved))
        resolve_settings(["--config", str(config), "--output_dir", str(tmp_path / "third")])
    assert resolve_settings(out + ["--dataset", "beauty", "--loss_type", "ce"]).values["sce_n_buckets"] == 202
    with pytest.raises(SettingsError, match=r"^--bt_lambda: has no effect with --bt_alpha 0"):
        resolve_settings(out + ["--dataset", "beauty", "--bt_alpha", "0", "--bt_lambda", "0.05"])


def test_settings_command_rebuilds_the_same_settings(tmp_path, out):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.002\n")
    settings = resolve_settings(out + ["--preset", "beauty", "--config", str(config), "--bt_alpha", "0.3"])
    saved = json.loads(json.dumps(arguments.run_settings(settings)))
    command = settings_command(saved, output_dir=str(tmp_path / "again"))
    rebuilt = resolve_settings(shlex.split(command)[2:])
    differ = {k for k in settings.values if settings.values[k] != rebuilt.values[k]}
    assert differ == {"output_dir", "config"}  # written out flag by flag, so the config file is not needed
    assert rebuilt.values["bt_alpha"] == 0.3 and rebuilt.values["learning_rate"] == 0.002
    assert rebuilt.values["dropout"] == 0.6  # from the preset, now on the command line


@pytest.mark.integration
def test_a_rerun_from_run_settings_reproduces_all_results(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    common = [
        "--max_steps",
        "4",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--per_device_train_batch_size",
        "64",
        "--disable_tqdm",
        "True",
    ]
    assert train.main(common + ["--output_dir", str(first)]) == 0
    saved = json.loads((first / "run_settings.json").read_text())
    assert saved["sources"]["max_steps"] == "command line" and saved["sources"]["dropout"] == "preset:ml-latest-small"
    assert saved["settings"]["learning_rate"] == 0.001 and "hub_token" not in saved["settings"]
    assert "resume_from_checkpoint" not in saved["settings"]  # a rerun from the file starts afresh
    assert train.main(["--config", str(first / "run_settings.json"), "--output_dir", str(second)]) == 0
    a, b = (json.loads((folder / "all_results.json").read_text()) for folder in (first, second))
    volatile = {"train_seconds", "prepare_seconds", "command"}
    assert {k: v for k, v in a.items() if k not in volatile} == {k: v for k, v in b.items() if k not in volatile}
    out = capsys.readouterr().out
    assert "valid HR@10" in out and "{'" not in out  # compact lines, never the Trainer's dicts


def test_benchmark_grids_use_the_dataset_presets():
    """The grids' per-dataset settings (benchmarks/reproduce.py) are the presets' for every key they share."""
    from tests.test_benchmark_tools import load_script

    reproduce = load_script("reproduce")
    names = {
        "batch_size": "per_device_train_batch_size",
        "epochs": "num_train_epochs",
        "patience": "patience",
        "loss": "loss_type",
        "bt_lambda": "bt_lambda",
    }
    for (dataset, protocol), grid in reproduce.DATASETS.items():
        preset = arguments.DATASET_PRESETS[dataset]
        for key, flag in names.items():
            if flag in preset and dataset != "ml-latest-small":  # the embedded default trains briefly by design
                assert grid[key] == preset[flag], (dataset, protocol, key)
        assert reproduce.dataset_file(dataset) in (None, arguments.KNOWN_DATASETS[dataset].relative_path)


@pytest.mark.parametrize(("argv0", "command"), [("/x/bin/btsr-train", "btsr-train"), ("train.py", "python train.py")])
def test_messages_and_usage_name_the_command_the_user_ran(monkeypatch, argv0, command):
    monkeypatch.setattr("sys.argv", [argv0])
    with pytest.raises(SettingsError, match=rf"\(see {command} --help\)$"):
        resolve_settings(["--no_such_flag", "1"])
    assert arguments.build_parser().format_usage().startswith(f"usage: {command} [--flag value")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--user_column", "uid"), ("--item_column", "movieId"), ("--timestamp_column", "ts"), ("--data_format", "csv")],
)
def test_file_layout_flags_without_data_path_are_refused(out, flag, value):
    """They describe --data_path's file; with a named dataset they would be accepted and ignored."""
    with pytest.raises(SettingsError, match=rf"^{flag}: applies to --data_path only; --dataset ml-latest-small"):
        resolve_settings(out + [flag, value])
