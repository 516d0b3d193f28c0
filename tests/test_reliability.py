"""Reliability: settings resolution, atomic model folders, NaN losses stop training before anything is saved, a
checkpoint that cannot be written stops training in one line."""

import os

import pytest
import torch
from transformers import AutoModel, TrainingArguments

from data_processing import DataError, PairedTrainDataset, SequenceCollator, build_train_dataset
from modeling_btsr import BTSRConfig, BTSRForSequentialRecommendation, BTSRTrainer
from modeling_btsr.arguments import PRESETS, parse_arguments
from modeling_btsr.trainer import CheckpointSaveError, NonFiniteLossError
from modeling_btsr.training_run import save_model_atomically
from tests.helpers import tiny_run_args, write_synthetic_log


def test_settings_resolve_command_line_over_config_over_preset(tmp_path, monkeypatch):
    config = tmp_path / "settings.yaml"
    config.write_text("bt_alpha: 0.4\nlearning_rate: 0.005\npatience: 3\n")
    model, data, training, _ = parse_arguments(
        ["--preset", "beauty", "--config", str(config), "--bt_alpha", "0.1", "--output_dir", str(tmp_path / "o")]
    )
    assert model.bt_alpha == 0.1  # command line beats the config file
    assert training.learning_rate == 0.005 and data.patience == 3  # config file beats the preset
    assert model.loss_type == "sce" and model.dropout == PRESETS["beauty"]["dropout"]  # preset beats defaults
    assert training.per_device_train_batch_size == PRESETS["beauty"]["per_device_train_batch_size"]
    assert training.adam_beta2 == 0.98 and training.output_dir == str(tmp_path / "o")  # our defaults
    # The Hub flags are taken away from the Trainer (train.py uploads the finished folder itself).
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # parsing only: nothing is uploaded
    _, _, training, settings = parse_arguments(
        ["--push_to_hub", "--hub_model_id", "org/x", "--hub_token", "t", "--output_dir", str(tmp_path / "o")]
    )
    assert training.push_to_hub is False and settings["push_to_hub"] is True and settings["hub_model_id"] == "org/x"


@pytest.mark.parametrize(
    "content, message",
    [
        ("bt_alpha: [1", "cannot parse config file"),
        ("not_a_setting: 1", "unknown setting 'not_a_setting'"),
        ("- 1\n- 2", "must hold a mapping"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_arguments(["--config", str(path)])


def _tiny_model():
    model = BTSRForSequentialRecommendation(BTSRConfig(num_items=20, hidden_size=8, max_position_embeddings=8))
    model.btsr.set_item_vocab({"item_ids": list(range(20))})
    return model


def test_crash_while_saving_leaves_no_loadable_folder(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    save_model_atomically(_tiny_model(), folder)  # an older, complete model
    assert AutoModel.from_pretrained(folder) is not None

    real_replace = os.replace

    def crash_on_weights(src, dst):
        if str(dst).endswith("model.safetensors"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_weights)
    with pytest.raises(OSError, match="disk full"):
        save_model_atomically(_tiny_model(), folder)
    monkeypatch.setattr(os, "replace", real_replace)
    # The half-written folder has no config.json, so it cannot load stale or partial weights.
    assert not (folder / "config.json").exists()
    with pytest.raises((OSError, ValueError)):
        AutoModel.from_pretrained(folder)
    save_model_atomically(_tiny_model(), folder)  # a later save succeeds and cleans up
    assert AutoModel.from_pretrained(folder) is not None
    assert not [p for p in folder.iterdir() if p.name.startswith(".staging")][1:]


def _trainer_saving_every_step(output_dir, model, max_steps: int, with_pairs: bool) -> BTSRTrainer:
    """A BTSRTrainer on 8 toy sequences that saves a checkpoint at every step."""
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        save_strategy="steps",
        save_steps=1,
        eval_strategy="no",
        remove_unused_columns=False,
    )
    sequences = [torch.arange(1, 8).numpy() for _ in range(8)]
    return BTSRTrainer(
        model=model,
        args=args,
        train_dataset=(
            train := PairedTrainDataset(build_train_dataset(sequences, max_len=8), seed=0, with_pairs=with_pairs)
        ),
        data_collator=SequenceCollator(table=train.table),
    )


def test_nan_loss_stops_training_with_a_clear_message(tmp_path):
    model = _tiny_model()
    with torch.no_grad():
        model.btsr.item_embeddings.weight[3] = float("nan")
    trainer = _trainer_saving_every_step(tmp_path / "run", model, max_steps=3, with_pairs=True)
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan at step 0 .*stopped before saving"):
        trainer.train()
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    assert not (tmp_path / "run" / "config.json").exists()


def _checkpoint(root, step, files):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text("{}")
    return folder


def test_resume_picks_the_newest_complete_checkpoint_and_refuses_an_interrupted_one(tmp_path):
    from modeling_btsr.trainer import COMPLETE_MARKER
    from modeling_btsr.training_run import resolve_resume_checkpoint

    legacy = _checkpoint(tmp_path, 10, ["model.safetensors", "optimizer.pt", "trainer_state.json"])
    marked = _checkpoint(tmp_path, 20, ["model.safetensors", "optimizer.pt", "trainer_state.json", COMPLETE_MARKER])
    broken = _checkpoint(tmp_path, 30, ["model.safetensors"])  # killed while the optimizer was being written
    for value in (True, "True", "true", "latest"):
        assert resolve_resume_checkpoint(value, str(tmp_path)) == str(marked)
    assert resolve_resume_checkpoint(str(legacy), str(tmp_path)) == str(legacy)
    assert resolve_resume_checkpoint(None, str(tmp_path)) is None
    message = rf"checkpoint-30: incomplete checkpoint .*the newest complete one is {marked}$"
    with pytest.raises(DataError, match=message):
        resolve_resume_checkpoint(str(broken), str(tmp_path))
    with pytest.raises(DataError, match="no such checkpoint folder"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-99"), str(tmp_path))
    with pytest.raises(DataError, match="no complete checkpoint in"):
        resolve_resume_checkpoint(True, str(tmp_path / "empty"))


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),  # a json or pickle write on a full disk
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),  # torch.save's, then
    ],
)
def test_a_checkpoint_that_cannot_be_written_stops_training_in_one_line(tmp_path, monkeypatch, error):
    from transformers import Trainer

    from modeling_btsr.training_run import resolve_resume_checkpoint

    def full_disk(self, output_dir):
        raise error

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full_disk)
    trainer = _trainer_saving_every_step(tmp_path / "run", _tiny_model(), max_steps=2, with_pairs=False)
    folder = tmp_path / "run" / "checkpoint-1"
    message = rf"^{folder}: cannot write this checkpoint \({type(error).__name__}: .*--resume_from_checkpoint latest"
    with pytest.raises(CheckpointSaveError, match=message) as raised:
        trainer.train()
    assert "\n" not in str(raised.value)
    with pytest.raises(DataError, match="incomplete checkpoint"):  # never resumed from
        resolve_resume_checkpoint(str(folder), str(tmp_path / "run"))


@pytest.mark.parametrize("step", ["save_model_atomically", "write_model_card"])
def test_a_failure_after_training_shows_the_metrics_then_one_line(tmp_path, monkeypatch, capsys, step):
    """A full disk at the final save (or a card that cannot be written) must not hide an hour of training: the
    metrics summary comes first, then one line naming the step and the folder, exit code 2."""
    import errno

    import train
    from modeling_btsr import training_run

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(training_run, step, full_disk)
    log = write_synthetic_log(tmp_path / "log.csv", num_users=40)
    out = tmp_path / "run"
    argv = tiny_run_args(log, out, "--max_len", "10", "--num_train_epochs", "1")
    assert train.main(argv) == 2
    captured = capsys.readouterr()
    assert "Test metrics" in captured.out and "hr@10" in captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{out}: training finished, but" in errors[0] and "No space left" in errors[0]
    assert "Traceback" not in captured.err
