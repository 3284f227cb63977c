"""`lstmlab bench`: every backend timed against nn.LSTM for any cell, JSON out, bad input refused."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from lstmlab.backends.triton.backend import import_error
from lstmlab.cli import build_parser, main
from lstmlab.cli.bench import cuda_settings
from lstmlab.experiments import speed


def test_bench_times_any_cell_against_nn_lstm(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--cells", "FGR,gru", "--repeats", "1", "--eager-repeats", "1", "--no-memory"]
    assert main([*args, "--json-out", str(out)]) == 0
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
        (["--ort-only", "--no-ort"], "--ort-only and --no-ort exclude each other; got both"),
        (["--json-out", "."], r"--json-out must name a file, not a directory; got '\.'"),
        (["--step", "--ort-only"], r"--ort-only does not apply with --step"),
    ],
)
def test_bench_refuses_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--quick", "--no-memory", *args]) == 2
    assert re.search(message, capsys.readouterr().err)


# -- the GPU measurement, checked without a GPU --------------------------------------


def test_bench_refuses_cuda_without_a_gpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--device", "cuda", "--quick"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(r"bench: --device=cuda needs a CUDA device; torch \S+ sees none \(.+\)\n", captured.err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "bfloat16"], "--dtype applies with --device cuda only .*; got bfloat16"),
        (["--eager-steps", "8"], "--eager-steps applies with --device cuda only .*; got 8"),
    ],
)
def test_cpu_bench_refuses_cuda_options(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--quick", "--no-memory", *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def _cuda_settings(*flags: str) -> dict:
    args = build_parser().parse_args(["bench", "--device", "cuda", *flags])
    return cuda_settings(args, speed.CUDA_CELLS, args.repeats or 7)


def test_cuda_options_parse() -> None:
    full = _cuda_settings()
    assert full["grid"] == [[1024, 16, 256], [1024, 64, 512], [1024, 16, 768], [1024, 64, 1024]]  # the grid
    assert full["dtypes"] == ["float32", "bfloat16"] and full["cells"] == ["lstm", "peephole", "cifg", "gru", "gru-before", "rnn"]
    assert (full["repeats"], full["eager_repeats"], full["eager_steps"]) == (7, 3, speed.EAGER_STEPS)
    quick = _cuda_settings("--quick", "--dtype", "bfloat16", "--eager-steps", "16", "--eager-repeats", "2", "--repeats", "4")
    assert quick["grid"] == [[64, 16, 256]] and quick["dtypes"] == ["bfloat16"]
    assert (quick["repeats"], quick["eager_repeats"], quick["eager_steps"]) == (4, 2, 16)
    assert _cuda_settings("--dtype", "both")["dtypes"] == _cuda_settings()["dtypes"]
    with pytest.raises(ValueError, match="bench: --eager-steps must be positive; got 0"):
        _cuda_settings("--eager-steps", "0")
    assert speed.yardstick("cifg", "cuda") == "nn.LSTM" and speed.yardstick("gru-before", "cuda") == "nn.GRU"
    assert speed.yardstick("rnn", "cuda") == "nn.RNN" and speed.yardstick("gru", "cpu") == "nn.LSTM"
    assert speed.backends_for("gru", "cuda") == ("triton", "native", "eager")
    assert speed.backends_for("peephole", "cuda") == ("triton", "eager")


@pytest.mark.skipif(import_error() is not None, reason="needs triton")
def test_cuda_timing_loop_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU loop on the CPU, triton under its interpreter: eager timed on the first
    steps and scaled, a backend that cannot run recorded with its reason."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    names = speed.backends_for("lstm", "cuda")
    f32 = speed.time_point_cuda("lstm", 4, 2, 3, 1, names, torch.float32, memory=False, device="cpu")
    assert [t.backend for t in f32] == list(names) and all(t.error is None and t.train_ms > 0 for t in f32)
    (eager,) = speed.time_point_cuda("peephole", 4, 2, 3, 1, ("eager",), torch.float32, steps=2, memory=False, device="cpu")
    assert eager.steps == 2 and eager.T == 4 and eager.infer_ms > 0
    (bf16,) = speed.time_point_cuda("lstm", 4, 2, 3, 1, ("triton",), torch.bfloat16, memory=False, device="cpu")
    assert math.isnan(bf16.train_ms) and "interpreter" in bf16.error and bf16.dtype == "bfloat16"


def _timing(cell: str, backend: str, train: float, infer: float, peak: float, dtype: str = "float32") -> speed.CudaTiming:
    return speed.CudaTiming(cell, 64, 16, 256, backend, train, infer, dtype, 64, peak)


# one grid point in two dtypes, as `lstmlab bench --device cuda` measures it (made-up numbers)
FAKE_RUN = [
    _timing("lstm", "nn.LSTM", 10.0, 4.0, 100.0),
    _timing("gru", "nn.GRU", 10.0, 4.0, 100.0),
    _timing("lstm", "eager", 400.0, 100.0, 900.0),
    _timing("lstm", "triton", 12.0, 6.0, 90.0),  # trains within 1.5x, infers at 1.5x: one target missed
    _timing("lstm", "native", 10.0, 4.0, 100.0),
    _timing("peephole", "eager", 500.0, 120.0, 900.0),
    _timing("peephole", "triton", 14.0, 5.0, 95.0),
    _timing("gru", "eager", 300.0, 90.0, 800.0),
    _timing("gru", "triton", math.nan, math.nan, math.nan),
    _timing("gru", "native", 10.0, 4.0, 100.0),
    _timing("lstm", "nn.LSTM", 6.0, 2.0, 50.0, "bfloat16"),
    _timing("peephole", "eager", 500.0, 120.0, 500.0, "bfloat16"),
    _timing("peephole", "triton", 50.0, 6.0, 60.0, "bfloat16"),  # the worse dtype; misses 3 targets
]
FAKE_RUN[8].error = "OutOfMemoryError: made up"


def test_cuda_bench_prints_the_table_targets_and_auto_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Made-up GPU")
    monkeypatch.setattr(speed, "run_timings", lambda *args, **kwargs: iter(FAKE_RUN))
    out = tmp_path / "bench-cuda.json"
    assert main(["bench", "--device", "cuda", "--quick", "--cells", "lstm,peephole,gru", "--json-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Made-up GPU; torch ")
    assert "on the first 256 steps" not in printed and "eager: median of 3 over every step" in printed  # T=64 < 256
    lstm_row = next(line for line in printed.splitlines() if line.startswith("lstm") and " triton " in line)
    assert lstm_row.split()[5:13] == ["12.0", "1.20", "0.03", "6.0", "1.50", "0.06", "90.0", "0.90"]
    assert "failed: OutOfMemoryError: made up" in printed
    assert "targets for triton: 11 of 16 met" in printed
    assert "missed: lstm 16x256 T=64 float32: infer 1.50x nn.LSTM (target <= 1.3x)" in printed
    assert "missed: gru 16x256 T=64 float32: triton failed (OutOfMemoryError: made up)" in printed
    assert "'peephole': {256: (0.1, 0.05)}," in printed  # the worse of the two dtypes; lstm: slower than native
    data = json.loads(out.read_text())
    assert data["gpu"] == "Made-up GPU" and data["dtypes"] == ["float32", "bfloat16"] and data["grid"] == [[64, 16, 256]]
    assert len(data["timings"]) == len(FAKE_RUN) and data["timings"][8]["train_ms"] is None
    assert speed.cuda_auto_table(data["timings"]) == {"lstm": {256: (1.2, 1.5)}, "peephole": {256: (0.1, 0.05)}}


# -- the comparison with ONNX Runtime ------------------------------------------------


def _onnxruntime() -> None:
    pytest.importorskip("onnx", reason="the ORT comparison needs onnx: pip install onnx onnxruntime")
    pytest.importorskip("onnxruntime", reason="the ORT comparison needs onnxruntime: pip install onnx onnxruntime")


@pytest.mark.parametrize("cell", ["lstm", "peephole", "cifg"])
def test_ort_yardstick_computes_the_same_layer(cell: str) -> None:
    """ORT's LSTM node built from a module (gate order, peepholes, input_forget) gives the
    module's output, with random non-zero peepholes; so the timing compares like with like."""
    _onnxruntime()
    from lstmlab.experiments import ort

    torch.manual_seed(0)
    module = speed.make_module(cell, 5, "eager")
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.8, 0.8)
    x = torch.randn(6, 3, 5)
    with torch.no_grad():
        want, _ = module(x)
    got = torch.from_numpy(ort.run(ort.session(module, threads=1), x.numpy()))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_ort_yardstick_refuses_what_the_operator_cannot_compute() -> None:
    _onnxruntime()
    from lstmlab.errors import Unsupported
    from lstmlab.experiments import ort

    for cell in ("gru", "fgr", "nig", "noaf"):
        with pytest.raises(Unsupported, match="ort: module must be"):
            ort.lstm_node_inputs(speed.make_module(cell, 4, "eager"))
    assert speed.ort_cells(("gru", "fgr", "peephole", "nig", "cifg")) == ("peephole", "cifg")


def test_bench_compares_inference_with_ort(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _onnxruntime()
    monkeypatch.setattr(speed, "QUICK_GRID", ((3, 2, 8), (3, 2, 16)))  # tiny: this checks the plumbing, not speed
    timing = speed.time_ort_point("cifg", 3, 2, 8, repeats=1)
    assert (timing.cell, timing.T, timing.B, timing.H) == ("cifg", 3, 2, 8)
    assert timing.fused_ms > 0 and timing.ort_ms > 0
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--cells", "peephole", "--repeats", "1", "--eager-repeats", "1", "--no-memory"]
    assert main([*args, "--json", str(out)]) == 0
    assert "against ONNX Runtime" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["onnxruntime"]
    assert {(t["cell"], t["H"]) for t in record["ort"]} == {("peephole", H) for _, _, H in speed.QUICK_GRID}
    assert main([*args, "--no-ort"]) == 0
    assert "ONNX Runtime" not in capsys.readouterr().out
