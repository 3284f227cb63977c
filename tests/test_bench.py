"""`lstmlab bench`: every backend timed against nn.LSTM for any cell, JSON out, bad input refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lstmlab.cli import main
from lstmlab.experiments import speed


def test_bench_times_any_cell_against_nn_lstm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--cells", "FGR,gru", "--repeats", "1", "--eager-repeats", "1", "--no-memory"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "median of 1 repeats" in printed and "fgr " in printed
    timings = json.loads(out.read_text())["timings"]
    seen = {(t["cell"], t["backend"], t["H"]) for t in timings}
    for _, _, H in speed.QUICK_GRID:
        assert ("lstm", "nn.LSTM", H) in seen
        assert {("gru", b, H) for b in ("fused", "native", "eager")} <= seen
        assert {("fgr", b, H) for b in ("fused", "eager")} <= seen
        assert ("fgr", "native", H) not in seen  # torch has no FGR
    assert all(t["train_ms"] > 0 and t["infer_ms"] > 0 for t in timings)


def test_bench_modules_run_on_the_backend_asked_for() -> None:
    fgr = speed.make_module("fgr", 8, "fused")
    assert fgr.config.spec.gate_recurrence and fgr.active_backend == "fused"
    assert speed.make_module("rnn-relu", 8, "native").active_backend == "native"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cells", "lstm,xyz"], "--cells must be among rnn, rnn-relu, lstm, .*; got xyz"),
        (["--cells", ","], "--cells must be among .*; got ','"),
        (["--repeats", "-1"], "--repeats must be positive; got -1"),
    ],
)
def test_bench_refuses_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--quick", "--no-memory", *args]) == 2
    assert re.search(message, capsys.readouterr().err)
