"""`lstmlab train`, `compare` and `demo` end to end on tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lstmlab.cli import main

TINY = ["--seq-len", "8", "--hidden", "8", "--eval-every", "5", "--quiet"]


def test_train_prints_a_summary_and_writes_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--task", "adding", "--cell", "LSTM", "--steps", "10", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    for key in ("task", "cell", "steps", "val mse", "baseline", "solved", "seconds"):
        assert key in text
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "config.json", "metrics.jsonl"}


def test_train_json_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--task", "temporal-order", "--seq-len", "20", "--hidden", "8", "--quiet", "--json"]
    assert main([*argv, "--cell", "cifg", "--steps", "6", "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 6 and first["cell"] == "cifg" and first["metric"] == "loss" and first["solved"] is False
    assert set(first) >= {"value", "baseline", "seconds", "active_backend", "parameters"}
    assert main(["train", "--resume", str(out), "--steps", "9", "--json", "--quiet"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] == 9 and second["cell"] == "cifg"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--seq-len", "0"], "train: --seq-len must be greater than zero; got 0"),
        (["train", "--seq-len", "1"], "train: --seq-len must be at least 2 (one marker per half); got 1"),
        (["train", "--batch", "0"], "train: --batch must be greater than zero; got 0"),
        (["train", "--hidden", "0"], "train: --hidden must be greater than zero; got 0"),
        (["train", "--threads", "0"], "train: --threads must be greater than zero; got 0"),
        (["train", "--text", "x.txt"], "train: --text does not apply to task 'adding'"),
        (["train", "--cell", "lsmt"], "train: --cell must be one of rnn, "),
        (["train", "--lr", "-1"], "train: --lr must be positive; got -1.0"),
        (["train", "--resume", "nowhere"], "train: --resume must hold checkpoint.pt; got 'nowhere' without one"),
        (["compare", "--cells", "rnn,nope"], "compare: --cells must be one of rnn, "),
        (["compare", "--cells", ","], "compare: --cells must name at least one cell; got ','"),
        (["compare", "--cells", "rnn", "--eval-every", "0"], "compare: --eval-every must be greater than zero; got 0"),
        (["demo", "--steps", "0"], "demo: --steps must be greater than zero; got 0"),
        (["demo", "--cells", "lstm,nope"], "demo: --cells must be one of rnn, "),
    ],
)
def test_errors_name_the_flag_the_rule_and_the_value(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1  # one line, the message itself
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_run_directory_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--steps", "1", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--steps", "1", "--out", str(out), *TINY]) == 2
    assert capsys.readouterr().err.startswith(f"train: --out must be new; got {str(out)!r}, which already holds a run")


def test_compare_prints_the_table_and_writes_curves_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", "--cells", "rnn,gru,nfg", "--steps", "10", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "steps to solve" in text and "final metric" in text
    for cell in ("rnn", "gru", "nfg"):
        assert f"\n{cell} " in text and (out / cell / "checkpoint.pt").exists()
    results = json.loads((out / "results.json").read_text())
    assert [r["cell"] for r in results["rows"]] == ["rnn", "gru", "nfg"]
    assert (out / "curves.png").stat().st_size > 1000


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--cells", "rnn,lstm", "--seq-len", "10", "--steps", "10", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "rnn" in text and "lstm" in text and "gradient by lag" in text and "total time" in text
    assert (out / "gradient_flow.png").stat().st_size > 1000 and (out / "curves.png").exists()
    # a second demo replaces the first
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gradient_flow"].endswith("gradient_flow.png") and len(result["rows"]) == 2


def test_ctrl_c_saves_and_exits_130_and_nan_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lstmlab.tasks.adding import Adding

    real_batch = Adding.train_batch

    def interrupted(self: Adding, step: int, seed: int) -> object:
        if step == 3:
            raise KeyboardInterrupt
        return real_batch(self, step, seed)

    monkeypatch.setattr(Adding, "train_batch", interrupted)
    out = tmp_path / "run"
    assert main(["train", "--steps", "10", "--out", str(out), *TINY]) == 130
    assert f"checkpoint at step 3 in {out}; continue with: lstmlab train --resume {out}" in capsys.readouterr().err
    monkeypatch.undo()

    monkeypatch.setattr(Adding, "loss", lambda self, outputs, batch: outputs.sum() * float("nan"))
    assert main(["train", "--resume", str(out), "--quiet"]) == 1
    assert "train: loss became nan at step 4" in capsys.readouterr().err
