"""One step: what "auto" runs at T = 1 (torch's cell ops for the cells torch has, the fused
extension for their stacks and for the other cells), that it gives torch's values and the
reference's for every cell, forward and backward, in inference too, and that the bench's
step table runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

import lstmlab
from lstmlab import backends
from lstmlab.backends import StackConfig
from lstmlab.cells import GRUSpec, LSTMSpec, RNNSpec
from lstmlab.cells.lstm import spec_from_flags
from lstmlab.cli import main
from lstmlab.experiments import step
from tests.helpers import (
    CASES,
    INPUT_SIZE,
    assert_not_trivial,
    assert_same,
    build,
    make_input,
    make_state,
    random_like,
    randomize_,
    run_with_grads,
    with_backend,
)

B = 3
ATOL = 1e-10  # float64

# cell class, constructor flags: every cell of CASES as a *Cell (cells have no projection)
CELL_CASES: dict[str, tuple[type, dict[str, Any]]] = {
    name: ({lstmlab.LSTM: lstmlab.LSTMCell, lstmlab.GRU: lstmlab.GRUCell, lstmlab.RNN: lstmlab.RNNCell}[cls], flags)
    for name, (cls, flags) in CASES.items()
    if "proj_size" not in flags
}
TORCH_CELLS = {
    "LSTM-NP": nn.LSTMCell,
    "LSTM-nobias": nn.LSTMCell,
    "GRU-after": nn.GRUCell,
    "RNN-tanh": nn.RNNCell,
    "RNN-relu": nn.RNNCell,
}


def make_cell(case: str, backend: str = "auto", seed: int = 0) -> nn.Module:
    cls, flags = CELL_CASES[case]
    return randomize_(cls(INPUT_SIZE, 4, **flags, backend=backend, dtype=torch.float64), seed)


def cell_grads(cell: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None) -> dict[str, torch.Tensor]:
    """The new state and the gradients of sum(ds * s') with respect to x, the state and every parameter."""
    x = x.detach().clone().requires_grad_(True)
    leaves = None if state is None else tuple(s.detach().clone().requires_grad_(True) for s in state)
    out = cell(x, None if leaves is None else (leaves if len(leaves) > 1 else leaves[0]))
    final = (out,) if isinstance(out, torch.Tensor) else tuple(out)
    loss = sum((s * random_like(s, 5 + k)).sum() for k, s in enumerate(final))
    params = dict(cell.named_parameters())
    wrt = [x, *(leaves or ()), *params.values()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    names = ["d_input", *(f"d_hx{k}" for k in range(len(leaves or ()))), *(f"d_{n}" for n in params)]
    result = {f"s{k}": s.detach() for k, s in enumerate(final)}
    result.update({name: torch.zeros_like(w) if g is None else g for name, g, w in zip(names, grads, wrt)})
    return result


def cell_state(cell: nn.Module, batch: int | None, seed: int = 2) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    return tuple(torch.randn(lead + (size,), generator=generator, dtype=torch.float64) for size in cell.config.state_sizes)


# -- the choice ------------------------------------------------------------------------


def test_auto_order_at_one_step_puts_torch_cell_ops_or_the_fused_extension_first() -> None:
    torch_cells = [StackConfig(LSTMSpec(), 4, 8), StackConfig(GRUSpec(), 4, 8), StackConfig(RNNSpec("relu"), 4, 8)]
    for config in torch_cells + [StackConfig(LSTMSpec(), 4, 8, num_layers=2, bidirectional=True)]:
        assert backends.auto_order(config, "cpu", steps=1) == ("native", "fused", "eager")
    for spec in (LSTMSpec(), GRUSpec(), RNNSpec("relu")):  # a stack: one call of the extension for every layer
        assert backends.auto_order(StackConfig(spec, 4, 8, num_layers=2), "cpu", steps=1) == ("fused", "native", "eager")
    for spec in (spec_from_flags("peephole"), spec_from_flags("CIFG"), spec_from_flags("FGR"), GRUSpec(reset="before")):
        assert backends.auto_order(StackConfig(spec, 4, 8), "cpu", steps=1) == ("fused", "eager")
    # many steps: as measured for sequences, never eager first
    for config in torch_cells + [StackConfig(spec_from_flags("peephole"), 4, 8)]:
        assert backends.auto_order(config, "cpu")[0] in ("fused", "native")
        assert backends.auto_order(config, "cpu", steps=None) == backends.auto_order(config, "cpu")


def _variant_backend() -> str:
    """What "auto" runs a cell torch lacks on at one step: fused, or eager where it cannot be built."""
    return "eager" if backends.get("fused").unavailable() else "fused"


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cells_run_on_the_one_step_backend(case: str) -> None:
    cell = make_cell(case)
    expected = "native" if case in TORCH_CELLS else _variant_backend()
    assert cell.active_backend == expected
    assert cell._backend_for(torch.zeros(1, INPUT_SIZE, dtype=torch.float64), 1).name == expected


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def test_a_stack_takes_the_one_step_path_at_t1_only(monkeypatch: pytest.MonkeyPatch) -> None:
    lstm_cell = _count_calls(monkeypatch, torch, "lstm_cell")
    sequence = _count_calls(monkeypatch, torch, "lstm")
    lstm = lstmlab.LSTM(INPUT_SIZE, 4, num_layers=2, backend="native", dtype=torch.float64)
    lstm(make_input(1, B, INPUT_SIZE, torch.float64))
    assert (len(lstm_cell), len(sequence)) == (2, 0)  # one cell op per layer
    lstm(make_input(5, B, INPUT_SIZE, torch.float64))
    assert (len(lstm_cell), len(sequence)) == (2, 1)  # the sequence kernel
    packed = nn.utils.rnn.pack_padded_sequence(make_input(1, B, INPUT_SIZE, torch.float64), [1] * B)
    lstm(packed)
    assert (len(lstm_cell), len(sequence)) == (2, 2)  # lengths: the sequence kernel


def test_auto_stack_chooses_by_t(monkeypatch: pytest.MonkeyPatch) -> None:
    lstm = build("LSTM-NP", num_layers=2)
    native_step = _count_calls(monkeypatch, torch, "lstm_cell")
    fused_layer = _count_calls(monkeypatch, backends.get("fused"), "layer")
    x = make_input(1, B, INPUT_SIZE, torch.float64)
    expected = "native" if backends.get("fused").unavailable() else "fused"
    assert lstm._backend_for(x, 1).name == expected
    lstm(x)  # with gradients: the fused op layer by layer
    assert (len(native_step), len(fused_layer)) == ((2, 0) if expected == "native" else (0, 2))
    if expected == "fused":
        with torch.no_grad():
            lstm(x)  # inference: one call of the extension for both layers
        assert len(fused_layer) == 2
    assert build("LSTM-NP", num_layers=2, bidirectional=True)._backend_for(x, 1).name == "native"


def test_the_choice_follows_a_change_of_backend_or_cell() -> None:
    gru = lstmlab.GRUCell(INPUT_SIZE, 4, dtype=torch.float64)
    x = torch.zeros(1, INPUT_SIZE, dtype=torch.float64)
    assert gru._backend_for(x, 1).name == "native"
    gru.reset = "before"  # torch has no such cell
    variant = _variant_backend()
    assert gru._backend_for(x, 1).name == variant and gru.active_backend == variant
    gru.backend = "reference"
    assert gru._backend_for(x, 1).name == "reference"
    gru.backend = "auto"
    assert gru._backend_for(x, 1).name == variant


# -- the values ------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("given_state", [True, False], ids=["hx", "no-hx"])
@pytest.mark.parametrize("case", list(TORCH_CELLS))
def test_cells_match_torch_forward_and_backward(case: str, given_state: bool, batched: bool) -> None:
    flags = CELL_CASES[case][1]
    kwargs = {"bias": flags.get("bias", True)}
    if "nonlinearity" in flags:
        kwargs["nonlinearity"] = flags["nonlinearity"]
    theirs = randomize_(TORCH_CELLS[case](INPUT_SIZE, 4, **kwargs, dtype=torch.float64))
    ours = type(make_cell(case)).from_torch(theirs)
    assert ours.active_backend == "native"
    x = make_input(1, B, INPUT_SIZE, torch.float64)[0]
    state = cell_state(ours, B) if given_state else None
    if not batched:
        x, state = x[0], None if state is None else tuple(s[0] for s in state)
    expected = cell_grads(theirs, x, state)
    actual = cell_grads(ours, x, state)
    if given_state:  # without, h = 0 and weight_hh's gradient is zero indeed
        assert_not_trivial(expected)
    assert_same(actual, expected, atol=ATOL)


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cells_match_the_reference_forward_and_backward(case: str) -> None:
    ours = make_cell(case)
    reference = make_cell(case, backend="reference")
    x = make_input(1, B, INPUT_SIZE, torch.float64)[0]
    state = cell_state(ours, B)
    expected = cell_grads(reference, x, state)
    assert_not_trivial(expected)
    assert_same(cell_grads(ours, x, state), expected, atol=ATOL)
    assert_same(cell_grads(ours, x[0], tuple(s[0] for s in state)), cell_grads(reference, x[0], tuple(s[0] for s in state)), ATOL)


@pytest.mark.parametrize("case", [case for case in CASES])
def test_stacks_at_t1_match_the_reference_forward_and_backward(case: str) -> None:
    module = build(case, num_layers=2, bidirectional=True)
    x = make_input(1, B, INPUT_SIZE, torch.float64)
    state = make_state(module, B)
    assert module._backend_for(x, 1).name in ("native", "fused", "eager")
    expected = run_with_grads(with_backend(module, "reference", x), x, state)
    assert_not_trivial(expected)
    assert_same(run_with_grads(module, x, state), expected, atol=ATOL)


@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU, nn.RNN])
def test_stacks_at_t1_match_torch_forward_and_backward(torch_class: type) -> None:
    theirs = randomize_(torch_class(INPUT_SIZE, 4, num_layers=2, bidirectional=True, dtype=torch.float64))
    ours = getattr(lstmlab, torch_class.__name__).from_torch(theirs)
    x = make_input(1, B, INPUT_SIZE, torch.float64)
    state = make_state(ours, B)
    expected = run_with_grads(theirs, x, state)
    assert_same(run_with_grads(ours, x, state), expected, atol=ATOL)
    y, final = ours(x, state if len(state) > 1 else state[0])
    h_n = final[0] if isinstance(final, tuple) else final
    y.add_(1.0)  # the output is a tensor of its own: writing to it leaves the state alone
    torch.testing.assert_close(h_n, run_with_grads(theirs, x, state)["s0"])


def _assert_outputs_equal(actual: Any, expected: Any) -> None:
    """Every tensor of two modules' outputs (nested tuples) agrees to ATOL, and something is not zero."""
    got, want = torch.utils._pytree.tree_leaves(actual), torch.utils._pytree.tree_leaves(expected)
    assert len(got) == len(want) and any(t.abs().max() > 0 for t in want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cells_in_inference_match_the_reference(case: str) -> None:
    """Without gradients "auto" takes the fused extension's single step for the cells torch lacks."""
    ours = make_cell(case)
    reference = make_cell(case, backend="reference")
    x = make_input(1, B, INPUT_SIZE, torch.float64)[0]
    state = cell_state(ours, B)
    with torch.no_grad():
        for inp, hx in ((x, state), (x[0], tuple(s[0] for s in state))):
            hx = hx if len(hx) > 1 else hx[0]
            _assert_outputs_equal(ours(inp, hx), reference(inp, hx))


@pytest.mark.parametrize("case", list(TORCH_CELLS))
def test_fused_cells_in_inference_match_torch(case: str) -> None:
    flags = CELL_CASES[case][1]
    kwargs = {key: flags[key] for key in ("bias", "nonlinearity") if key in flags}
    theirs = randomize_(TORCH_CELLS[case](INPUT_SIZE, 4, **kwargs, dtype=torch.float64))
    ours = type(make_cell(case)).from_torch(theirs)
    ours.backend = "fused"
    x = make_input(1, B, INPUT_SIZE, torch.float64)[0]
    state = cell_state(ours, B)
    hx = state if len(state) > 1 else state[0]
    with torch.no_grad():
        _assert_outputs_equal(ours(x, hx), theirs(x, hx))
        _assert_outputs_equal(ours(x[1], None), theirs(x[1], None))


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.GRU, nn.RNN])
def test_stacks_in_inference_match_torch(torch_class: type, steps: int) -> None:
    """Three layers without gradients: at T = 1 "auto" runs the fused extension's whole-stack call."""
    theirs = randomize_(torch_class(INPUT_SIZE, 4, num_layers=3, dtype=torch.float64))
    ours = getattr(lstmlab, torch_class.__name__).from_torch(theirs)
    x = make_input(steps, B, INPUT_SIZE, torch.float64)
    state = make_state(ours, B)
    hx = state if len(state) > 1 else state[0]
    with torch.no_grad():
        _assert_outputs_equal(ours(x, hx), theirs(x, hx))
        ours.backend = "fused"
        _assert_outputs_equal(ours(x, hx), theirs(x, hx))


def test_the_one_step_path_needs_no_grad_to_run_and_keeps_the_graph_when_grad_is_on() -> None:
    for case in ("LSTM-NP", "LSTM-vanilla", "GRU-before"):
        cell = make_cell(case)
        x = torch.randn(B, INPUT_SIZE, dtype=torch.float64)
        with torch.no_grad():
            out = cell(x)
        first = out if isinstance(out, torch.Tensor) else out[0]
        assert not first.requires_grad
        out = cell(x)
        first = out if isinstance(out, torch.Tensor) else out[0]
        assert first.requires_grad
        first.sum().backward()
        assert all(p.grad is not None for name, p in cell.named_parameters() if not name.startswith("weight_ch"))


def test_training_dropout_between_layers_at_t1() -> None:
    lstm = lstmlab.LSTM(INPUT_SIZE, 4, num_layers=2, dropout=1.0, dtype=torch.float64)
    x = make_input(1, B, INPUT_SIZE, torch.float64)
    y_train, _ = lstm(x)
    lstm.eval()
    y_eval, _ = lstm(x)
    # dropout 1 zeroes layer 1's input in training: its output is that of a zero input
    zero_input = lstmlab.LSTM(4, 4, dtype=torch.float64)
    zero_input.load_state_dict({k.replace("_l1", "_l0"): v for k, v in lstm.state_dict().items() if k.endswith("_l1")})
    torch.testing.assert_close(y_train, zero_input(torch.zeros(1, B, 4, dtype=torch.float64))[0])
    assert not torch.allclose(y_train, y_eval)


# -- the bench -------------------------------------------------------------------------


def test_step_table_runs_at_a_tiny_size() -> None:
    timings = step.time_steps(hidden=4, repeats=1, block=1)
    cases = {(t.case, t.yardstick) for t in timings}
    assert ("LSTMCell", "nn.LSTMCell") in cases and ("GRU 2 layers, T=1", "nn.GRU at T=1") in cases
    assert ("LSTM 2 layers, T=1", "2 x nn.LSTMCell") in cases and ("RNNCell", "nn.RNNCell") in cases
    assert all(t.lstmlab_us > 0 and t.torch_us > 0 and t.ratio > 0 for t in timings)
    backends_of = {case: {t.backend for t in timings if t.case == case} for case in ("LSTMCell", "LSTMCell(peephole=True)")}
    assert backends_of["LSTMCell"] == {"native"} and backends_of["LSTMCell(peephole=True)"] == {_variant_backend(), "eager"}
    assert step.sample_rate(hidden=4, length=5, repeats=1) > 0


def test_bench_step_prints_the_table_and_writes_json(tmp_path: Any, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "step.json"
    assert main(["bench", "--step", "--quick", "--repeats", "1", "--cpu-time", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LSTMCell(peephole=True)" in printed and "2 x nn.GRUCell" in printed and "characters per second" in printed
    assert "this thread's CPU time" in printed
    record = json.loads(out.read_text())
    assert record["threads"] == 1 and record["clock"] == "cpu" and record["sample_chars_per_s"] > 0
    assert len(record["steps"]) >= 8
    assert main(["bench", "--cpu-time"]) == 2
    assert "--cpu-time applies with --step only" in capsys.readouterr().err
    assert main(["bench", "--step", "--device", "cuda"]) == 2  # no GPU, or --step times the CPU
    assert "--step" in capsys.readouterr().err or not torch.cuda.is_available()
