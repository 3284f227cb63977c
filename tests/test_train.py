"""The trainer: bit-identical resume, atomic checkpoints, NaN stop, interrupts, run files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from lstmlab.errors import LstmlabError
from lstmlab.models import CELLS, SequenceModel
from lstmlab.train import CHECKPOINT, Diverged, TrainConfig, Trainer, load_run, read_checkpoint


def tiny(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "task": "adding",
        "task_options": {"seq_len": 8, "batch_size": 8, "eval_size": 16},
        "cell": "lstm",
        "hidden": 8,
        "steps": 12,
        "eval_every": 4,
        "log_every": 2,
    }
    values.update(overrides)
    return TrainConfig(**values)


def step_losses(trainer: Trainer) -> list[float]:
    return [r["loss"] for r in trainer.run() if r["kind"] == "step"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # stateless task, one layer
        {"cell": "peephole", "layers": 2, "dropout": 0.3, "optimizer": "adamw", "weight_decay": 0.01},  # RNG and AdamW state
        {
            "task": "reber-continual",
            "task_options": {"seq_len": 6, "batch_size": 4, "stream_chunks": 5, "eval_size": 2, "eval_len": 30},
            "cell": "gru",
        },  # carried state across the resume point
    ],
    ids=["adding-lstm", "dropout-adamw", "stateful-stream"],
)
def test_resume_continues_bit_identically(tmp_path: Path, overrides: dict[str, Any]) -> None:
    straight = step_losses(Trainer(tiny(**overrides), tmp_path / "straight"))
    first = Trainer(tiny(**overrides, steps=6), tmp_path / "split")
    losses = step_losses(first)
    assert read_checkpoint(tmp_path / "split")["step"] == 6
    losses += step_losses(Trainer.resume(tmp_path / "split", steps=12))
    assert len(straight) == 12 and losses == straight  # exactly equal, not close
    final_straight = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)["model"]
    final_split = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(final_straight[k], final_split[k]) for k in final_straight)
    # metrics.jsonl holds each step once
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, k in zip(steps, kinds) if k == "train"] == [2, 4, 6, 8, 10, 12]


def test_run_directory_files(tmp_path: Path) -> None:
    trainer = Trainer(tiny(), tmp_path / "run")
    list(trainer.run())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"] == "adding" and config["cell"] == "lstm" and config["active_backend"] == trainer.model.active_backend
    assert config["baseline"] == pytest.approx(1 / 6) and config["parameters"] > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4, 8, 12] and all("mse" in r and "solved" in r for r in evals)
    summary = trainer.summary()
    assert summary["steps"] == 12 and summary["metric"] == "mse" and summary["value"] == evals[-1]["mse"]
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(tiny(), tmp_path / "run")


def test_early_stop_when_solved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(tiny(steps=100), tmp_path / "run")
    monkeypatch.setattr(trainer.task, "solved", lambda metrics: True)
    list(trainer.run())
    assert trainer.step == 0 and trainer.summary()["solved_at"] == 0  # solved at the first evaluation
    trainer = Trainer(tiny(steps=100), tmp_path / "run2")
    monkeypatch.setattr(trainer.task, "solved", lambda metrics: trainer.step >= 8)
    list(trainer.run())
    assert trainer.step == 8 and read_checkpoint(tmp_path / "run2")["step"] == 8


def test_an_interrupted_save_leaves_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(tiny(steps=4), tmp_path / "run")
    list(trainer.run())
    good = read_checkpoint(tmp_path / "run")
    trainer.config.steps = 8
    list(trainer.run())

    real_save = torch.save

    def killed_save(obj: Any, f: Any) -> None:
        real_save({"half": torch.zeros(10)}, f)
        f.write(b"torn")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_save)
    trainer.checkpoint_step = None
    with pytest.raises(KeyboardInterrupt):
        trainer.save()
    monkeypatch.undo()
    # the checkpoint on disk is the last complete one (step 8), and no temporary file is left
    kept = read_checkpoint(tmp_path / "run")
    assert kept["step"] == 8 and good["step"] == 4
    trainer.close()  # gives the directory up: its lock file goes
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    assert load_run(tmp_path / "run").step == 8


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(tiny(steps=20, eval_every=5), tmp_path / "run")
    real_loss = trainer.task.loss

    def loss(outputs: torch.Tensor, batch: Any) -> torch.Tensor:
        value = real_loss(outputs, batch)
        return value * math.nan if trainer.step >= 7 else value

    monkeypatch.setattr(trainer.task, "loss", loss)
    with pytest.raises(Diverged, match=r"train: loss became nan at step 8 .*last good checkpoint \(step 5\)"):
        list(trainer.run())
    assert read_checkpoint(tmp_path / "run")["step"] == 5
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "diverged" and last["step"] == 8


def test_keyboard_interrupt_saves_the_last_finished_step_and_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = step_losses(Trainer(tiny(), tmp_path / "straight"))
    trainer = Trainer(tiny(), tmp_path / "run")
    real_batch = trainer.task.train_batch

    def batch(step: int, seed: int) -> Any:
        if step == 7:
            raise KeyboardInterrupt
        return real_batch(step, seed)

    monkeypatch.setattr(trainer.task, "train_batch", batch)
    losses = step_losses(trainer)
    assert trainer.interrupted and trainer.step == 7 and read_checkpoint(tmp_path / "run")["step"] == 7
    monkeypatch.undo()
    losses += step_losses(Trainer.resume(tmp_path / "run"))
    assert losses == straight


def test_load_run_rebuilds_the_trained_model(tmp_path: Path) -> None:
    trainer = Trainer(tiny(cell="cifg"), tmp_path / "run")
    list(trainer.run())
    loaded = load_run(tmp_path / "run")
    assert loaded.config.cell == "cifg" and loaded.step == 12 and not loaded.model.training
    x = loaded.task.train_batch(0, 0).inputs
    with torch.no_grad():  # as predict: inference may take its own path (the fused LSTM's does)
        assert torch.equal(loaded.model(x)[0], trainer.predict(x)[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": 0.0}, "train: lr must be positive; got 0.0"),
        ({"hidden": 0}, "train: hidden must be greater than zero; got 0"),
        ({"task_options": {"text": "x.txt"}}, "tasks: text does not apply to task 'adding'"),
        ({"task_options": {"seq_len": 1}}, r"adding: seq_len must be at least 2 \(one marker per half\); got 1"),
        ({"cell": "lsmt"}, "models: cell must be one of .*; got 'lsmt'"),
        ({"task": "nope"}, "train: task must be one of .*; got 'nope'"),
        ({"optimizer": "sgd"}, "train: optimizer must be one of 'adam', 'adamw'; got 'sgd'"),
        ({"clip": -1.0}, "train: clip must be non-negative"),
    ],
)
def test_config_errors_name_the_field_the_rule_and_the_value(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        tiny(**overrides).check()
    assert isinstance(caught.value, LstmlabError)  # owner and argument as data, for the command line to relabel


def test_a_non_int_size_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="train: steps must be a positive int; got 1.5 of type float"):
        tiny(steps=1.5).check()


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_builds_and_trains(cell: str) -> None:
    model = SequenceModel(cell, 3, 2, hidden_size=4, num_layers=2, forget_bias=1.0)
    outputs, state = model(torch.randn(5, 2, 3))
    outputs.sum().backward()
    assert outputs.shape == (5, 2, 2)
    assert all(p.grad is not None for p in model.parameters())
    # token inputs are one-hot encoded
    tokens = SequenceModel(cell, 6, 6, hidden_size=4, token_inputs=True)
    assert tokens(torch.randint(0, 6, (5, 2)))[0].shape == (5, 2, 6)


@pytest.mark.slow
def test_lstm_solves_adding_at_T_100_and_the_rnn_does_not(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    base = {"task_options": {"seq_len": 100, "eval_size": 500}, "hidden": 64, "lr": 1e-2, "steps": 2500, "eval_every": 50}
    lstm = Trainer(TrainConfig(cell="lstm", **base))
    list(lstm.run())
    assert lstm.summary()["solved"], lstm.summary()
    rnn = Trainer(TrainConfig(cell="rnn", **base))
    list(rnn.run())
    summary = rnn.summary()
    assert not summary["solved"] and summary["value"] > 0.8 * summary["baseline"], summary
