"""Export: `lstmlab.export_onnx` and `lstmlab export` run in ONNX Runtime (the outside oracle)
against lstmlab, `torch.onnx.export` of the modules, the cells
ONNX's operators cannot express, torch.export with a dynamic T, and TorchScript's refusal."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmlab
from lstmlab.backends.onnx_symbolic import OnnxSymbolicBackend
from lstmlab.cells.regularisers import LayerMasks
from lstmlab.cli import main
from lstmlab.errors import Unsupported
from lstmlab.models import SequenceModel

onnx = pytest.importorskip("onnx", reason="needs onnx: pip install onnx onnxruntime")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install onnx onnxruntime")

ATOL = 1e-5

CELLS = {
    "lstm": lambda **kw: lstmlab.LSTM(4, 5, **kw),
    "peephole": lambda **kw: lstmlab.LSTM(4, 5, variant="peephole", **kw),
    "cifg": lambda **kw: lstmlab.LSTM(4, 5, variant="CIFG", **kw),
    "niaf": lambda **kw: lstmlab.LSTM(4, 5, variant="NIAF", **kw),
    "noaf": lambda **kw: lstmlab.LSTM(4, 5, variant="NOAF", **kw),
    "gru": lambda **kw: lstmlab.GRU(4, 5, **kw),
    "gru-before": lambda **kw: lstmlab.GRU(4, 5, reset="before", **kw),
    "rnn": lambda **kw: lstmlab.RNN(4, 5, **kw),
    "rnn-relu": lambda **kw: lstmlab.RNN(4, 5, nonlinearity="relu", **kw),
}
# (num_layers, bidirectional, batch_first, initial state given)
SHAPES = [(1, False, False, False), (2, True, True, True), (2, False, False, True), (1, True, True, False)]


def randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`module` in eval mode with every parameter, peepholes included, drawn from U(-0.5, 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) - 0.5)
    return module.eval()


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def inputs_for(module: torch.nn.Module, T: int, B: int, with_state: bool, seed: int) -> tuple[torch.Tensor, tuple | None]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, 4) if module.batch_first else (T, B, 4), generator=generator)
    if not with_state:
        return x, None
    L = module.num_layers * (2 if module.bidirectional else 1)
    states = tuple(torch.randn(L, B, size, generator=generator) for size in module.config.state_sizes)
    return x, states


def compare(sess: ort.InferenceSession, module: torch.nn.Module, x: torch.Tensor, states: tuple | None) -> None:
    feed = {"input": x.numpy()}
    if states is not None:
        feed.update({name: s.numpy() for name, s in zip(("h_0", "c_0"), states)})
    got = sess.run(None, feed)
    with torch.no_grad():
        hx = None if states is None else (states if len(states) > 1 else states[0])
        y, final = module(x, hx)
    finals = final if isinstance(final, tuple) else (final,)
    assert len(got) == 1 + len(finals)
    np.testing.assert_allclose(got[0], y.numpy(), atol=ATOL, rtol=0)
    for g, f in zip(got[1:], finals):
        np.testing.assert_allclose(g, f.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "shape", SHAPES, ids=lambda s: f"L{s[0]}-{'bi' if s[1] else 'uni'}-{'bf' if s[2] else 'tm'}-{'hx' if s[3] else 'zeros'}"
)
@pytest.mark.parametrize("cell", list(CELLS))
def test_export_onnx_matches_onnxruntime_at_other_sizes(cell: str, shape: tuple, tmp_path: Path) -> None:
    layers, bidirectional, batch_first, with_state = shape
    module = randomised(CELLS[cell](num_layers=layers, bidirectional=bidirectional, batch_first=batch_first))
    x, states = inputs_for(module, 5, 2, with_state, seed=1)
    example = x if states is None else (x, states if len(states) > 1 else states[0])  # hx as the module takes it
    path = lstmlab.export_onnx(module, example, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"LSTM", "GRU", "RNN"} & ops == {CELLS[cell]().mode.split("_")[0]}  # the operator, not an unrolled graph
    assert sum(node.op_type in ("LSTM", "GRU", "RNN") for node in model.graph.node) == layers
    sess = session(path)
    for T, B in ((5, 2), (9, 3), (1, 1)):  # the example's sizes and others: T and B are dynamic
        compare(sess, module, *inputs_for(module, T, B, with_state, seed=T))


def test_export_onnx_without_bias_keeps_the_peepholes(tmp_path: Path) -> None:
    module = randomised(lstmlab.LSTM(4, 5, bias=False, variant="peephole"))
    path = lstmlab.export_onnx(module, torch.randn(3, 2, 4), tmp_path / "m.onnx")
    compare(session(path), module, torch.randn(6, 4, 4), None)


def test_export_onnx_static_shapes_fix_the_example(tmp_path: Path) -> None:
    module = randomised(lstmlab.GRU(4, 5))
    path = lstmlab.export_onnx(module, torch.randn(3, 2, 4), tmp_path / "m.onnx", dynamic=False)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 2, 4]
    compare(session(path), module, torch.randn(3, 2, 4), None)


def test_sequence_model_exports_one_hot_stack_and_readout(tmp_path: Path) -> None:
    model = randomised(SequenceModel("cifg", 7, 3, hidden_size=6, num_layers=2, token_inputs=True))
    path = lstmlab.export_onnx(model, torch.randint(7, (4, 2)), tmp_path / "m.onnx")
    ids = torch.randint(7, (11, 3))
    got = session(path).run(None, {"input": ids.numpy()})
    with torch.no_grad():
        logits, (h, c) = model(ids)
    for g, want in zip(got, (logits, h, c)):
        np.testing.assert_allclose(g, want.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "make, feature",
    [
        (lambda: lstmlab.LSTM(4, 5, variant="NIG"), "no input gate (NIG)"),
        (lambda: lstmlab.LSTM(4, 5, variant="NFG"), "no forget gate (NFG)"),
        (lambda: lstmlab.LSTM(4, 5, variant="NOG"), "no output gate (NOG)"),
        (lambda: lstmlab.LSTM(4, 5, variant="FGR"), "full gate recurrence (FGR)"),
        (lambda: lstmlab.LSTM(4, 5, proj_size=3), "a projection (proj_size=3)"),
    ],
    ids=["NIG", "NFG", "NOG", "FGR", "proj_size"],
)
def test_what_onnx_operators_cannot_express_is_refused_by_name(make, feature: str, tmp_path: Path) -> None:
    with pytest.raises(
        Unsupported, match=r"export_onnx: module cannot be exported to ONNX's LSTM operator, which lacks " + re.escape(feature)
    ):
        lstmlab.export_onnx(make().eval(), torch.randn(3, 2, 4), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_export_onnx_refuses_what_is_not_a_recurrent_model(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError, match=r"export_onnx: module_or_model must be an lstmlab LSTM, GRU, RNN, SequenceModel or run; got Linear"
    ):
        lstmlab.export_onnx(torch.nn.Linear(2, 2), torch.randn(3, 2, 2), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"export_onnx: module_or_model must have float32 parameters"):
        lstmlab.export_onnx(
            lstmlab.GRU(4, 5, dtype=torch.float64), torch.randn(3, 2, 4, dtype=torch.float64), tmp_path / "m.onnx"
        )
    with pytest.raises(ValueError, match=r"export_onnx: example_input must be 3-D \(T, B, input_size\); got shape \(3, 4\)"):
        lstmlab.export_onnx(lstmlab.GRU(4, 5), torch.randn(3, 4), tmp_path / "m.onnx")
    with pytest.raises(
        ValueError, match=r"export_onnx: example_input must have input_size=4 features \(last axis\); got shape \(3, 2, 7\)"
    ):
        lstmlab.export_onnx(lstmlab.GRU(4, 5), torch.randn(3, 2, 7), tmp_path / "m.onnx")


# -- a trained run, through the command line -------------------------------------------------


@pytest.mark.parametrize("task, cell", [("adding", "peephole"), ("reber", "gru")])
def test_trained_run_exports_and_matches_onnxruntime(
    task: str, cell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "model.onnx"
    argv = ["train", "--task", task, "--cell", cell, "--steps", "3", "--hidden", "8", "--eval-every", "3", "--quiet"]
    assert main([*argv, "--out", str(run_dir), *(["--seq-len", "8"] if task == "adding" else [])]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--onnx", str(out), "--state-inputs", "--verify"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == str(out)
    assert float(printed.split(": ")[-1]) <= ATOL
    run = lstmlab.load(run_dir)
    assert run.config.cell == cell and run.step == 3
    x = torch.randint(run.task.input_size, (6, 2)) if run.model.token_inputs else torch.randn(6, 2, run.task.input_size)
    with torch.no_grad():
        y, final = run.model(x)
    finals = final if isinstance(final, tuple) else (final,)
    feed = {"input": x.numpy(), **{name: torch.zeros_like(s).numpy() for name, s in zip(("h_0", "c_0"), finals)}}
    got = session(out).run(None, feed)
    np.testing.assert_allclose(got[0], y.numpy(), atol=ATOL, rtol=0)
    direct = lstmlab.export_onnx(run, x, tmp_path / "direct.onnx")  # a run itself, without initial-state inputs
    got = session(direct).run(None, {"input": x.numpy()})
    for g, want in zip(got, (y, *finals)):
        np.testing.assert_allclose(g, want.numpy(), atol=ATOL, rtol=0)


def test_export_command_reports_an_inexpressible_cell_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    argv = ["train", "--task", "adding", "--cell", "nog", "--steps", "1", "--seq-len", "8", "--hidden", "4", "--quiet"]
    assert main([*argv, "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx")]) == 2
    lacks = "which lacks no output gate (NOG): the operator always has the output gate o"
    assert capsys.readouterr().err == f"export: RUN_DIR cannot be exported to ONNX's LSTM operator, {lacks}\n"


def test_export_command_reports_an_unwritable_onnx_path_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    argv = ["train", "--task", "adding", "--steps", "1", "--seq-len", "8", "--hidden", "4", "--quiet"]
    assert main([*argv, "--out", str(run_dir)]) == 0
    capsys.readouterr()
    file = tmp_path / "file"
    file.write_text("x")
    cases = [
        (tmp_path, f"must name a file, not a directory; got {str(tmp_path)!r} (Is a directory)"),
        (file / "m.onnx", f"must name a file that can be written; got {str(file / 'm.onnx')!r} (Not a directory)"),
    ]
    for out, rule in cases:
        assert main(["export", str(run_dir), "--onnx", str(out)]) == 2
        assert capsys.readouterr().err == f"export: --onnx {rule}\n"


# -- torch.onnx.export: each layer as ONNX's operator ---------------------------------------


def torch_onnx_export(module: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    dims = {0: torch.export.Dim("T", min=1), 1: torch.export.Dim("B", min=1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices
        program = torch.onnx.export(
            module,
            (x,),
            dynamo=True,
            dynamic_shapes=(dims,),
            verbose=False,
        )
    program.save(str(path))


@pytest.mark.parametrize(
    "make, nodes",
    [
        (lambda: lstmlab.LSTM(4, 5, variant="peephole", backend="fused"), 1),
        (lambda: lstmlab.LSTM(4, 5, num_layers=2, bidirectional=True, variant="CIFG"), 4),
        (lambda: lstmlab.LSTM(4, 5, backend="native", batch_first=True), 1),
        pytest.param(lambda: lstmlab.GRU(4, 5, reset="before", backend="eager"), 1, marks=pytest.mark.slow),
        pytest.param(lambda: lstmlab.RNN(4, 5, num_layers=2, nonlinearity="relu"), 2, marks=pytest.mark.slow),
    ],
    ids=["peephole-fused", "cifg-2L-bi-auto", "lstm-native-batch-first", "gru-before-eager", "rnn-relu-2L"],
)
def test_torch_onnx_export_writes_onnx_operators(make, nodes: int, tmp_path: Path) -> None:
    module = randomised(make())
    torch_onnx_export(module, torch.randn(5, 2, 4), tmp_path / "m.onnx")
    ops = [node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert sum(op in ("LSTM", "GRU", "RNN") for op in ops) == nodes  # one per layer and direction, whatever the backend
    sess = session(tmp_path / "m.onnx")
    for T, B in ((5, 2), (8, 3)):
        x = torch.randn(T, B, 4)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            y, final = module(x)
        finals = final if isinstance(final, tuple) else (final,)
        for g, want in zip(got, (y, *finals), strict=True):
            np.testing.assert_allclose(g, want.numpy(), atol=ATOL, rtol=0)


def test_torch_onnx_export_refuses_an_inexpressible_cell(tmp_path: Path) -> None:
    module = lstmlab.LSTM(4, 5, variant="NFG", backend="fused").eval()
    x, state = torch.randn(5, 2, 4), (torch.zeros(2, 5), torch.zeros(2, 5))
    # the capture that runs the modules' ONNX path refuses it by name; torch.onnx.export then tries
    # torch.export's strict capture, which runs the fused op, and stops where the op has no ONNX function
    with pytest.raises(
        Unsupported, match=r"torch.onnx.export: module cannot be exported to ONNX's LSTM operator, which lacks no forget gate"
    ):
        OnnxSymbolicBackend().layer(module.config.spec, x, state, module.layer_weights()[0], None)
    with pytest.raises(Exception, match=r"lstmlab.fused_layer"):
        torch_onnx_export(module, x, tmp_path / "m.onnx")


def test_torch_onnx_export_names_the_regulariser_it_cannot_write() -> None:
    module = lstmlab.LSTM(4, 5, recurrent_dropout=0.5, backend="fused")
    x, state = torch.randn(5, 2, 4), (torch.zeros(2, 5), torch.zeros(2, 5))
    w = module.layer_weights()[0]
    cases = {
        "recurrent dropout": LayerMasks(torch.ones(2, 5), ()),
        "zoneout": LayerMasks(None, (torch.full((5, 2, 5), 0.1), None)),
        "zoneout and recurrent dropout": LayerMasks(torch.ones(2, 5), (torch.full((5, 2, 5), 0.1), None)),
    }
    for used, masks in cases.items():
        with pytest.raises(Unsupported, match=rf"cannot be exported with {used}: ONNX's operators have none"):
            OnnxSymbolicBackend().layer(module.config.spec, x, state, w, None, masks)


# -- torch.export and TorchScript ----------------------------------------------------------


@pytest.mark.parametrize("variant, backend", [("peephole", "fused"), ("NP", "fused"), ("CIFG", "auto")])
def test_torch_export_keeps_the_time_dimension_dynamic(variant: str, backend: str) -> None:
    # the fused op is opaque to torch.export; the eager backend's Python loop and torch's own
    # kernels (the native backend, as torch.nn.LSTM itself) are unrolled, which fixes T
    module = randomised(lstmlab.LSTM(4, 5, num_layers=2, variant=variant, backend=backend))
    program = torch.export.export(module, (torch.randn(6, 2, 4),), dynamic_shapes=({0: torch.export.Dim("T", min=2)},))
    for T in (3, 17):
        x = torch.randn(T, 2, 4)
        got, want = program.module()(x), module(x)
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])


POINTS_TO_EXPORT = r"TorchScript is not supported: export with torch.export.export .* lstmlab.export_onnx"


# torch 2.13 deprecates TorchScript itself (a DeprecationWarning at every call): lstmlab's refusal is what is tested
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "make",
    [lambda: lstmlab.LSTM(4, 5), lambda: lstmlab.GRUCell(4, 5), lambda: SequenceModel("rnn", 4, 2, 5)],
    ids=["LSTM", "GRUCell", "SequenceModel"],
)
def test_torchscript_is_refused_with_the_paths_that_work(make) -> None:
    module = make()
    with pytest.raises(RuntimeError, match=r"cannot be compiled by torch.jit.script; " + POINTS_TO_EXPORT):
        torch.jit.script(module)
    x = torch.randn(2, 4) if isinstance(module, lstmlab.GRUCell) else torch.randn(3, 2, 4)
    with (
        warnings.catch_warnings(),
        pytest.raises(RuntimeError, match=r"cannot be traced by torch.jit.trace; " + POINTS_TO_EXPORT),
    ):
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.jit.trace(module, (x,))
