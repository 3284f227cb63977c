"""The recorded time loops of the triton backend (lstmlab/backends/triton/graphs.py).

On the CPU a capture is emulated (the recorded call reruns on the static inputs and its
results are copied into the recorded outputs), which checks what the recording adds
around a loop: the signature key, copying inputs in and outputs out, views kept, the
least recently used recording dropped, a failed capture. With a CUDA device the real
graphs run and are compared with the reference over several calls with new inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from helpers import INPUT_SIZE, assert_same, build, make_input, make_state, run_with_grads, with_backend
from torch.utils import _pytree as pytree

from lstmlab.backends.triton import graphs
from lstmlab.backends.triton.backend import import_error

needs_triton = pytest.mark.skipif(import_error() is not None, reason=str(import_error()))


class EmulatedCapture:
    """A capture for the CPU: replay() reruns fn on the static inputs into the recorded outputs."""

    def __init__(self) -> None:
        self.captures = 0
        self.replays = 0

    def __call__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Callable[[], None], Any]:
        self.captures += 1
        outputs = fn(*args)
        recorded = pytree.tree_leaves(outputs)

        def replay() -> None:
            self.replays += 1
            for into, value in zip(recorded, pytree.tree_leaves(fn(*args)), strict=True):
                if isinstance(into, torch.Tensor):
                    into.copy_(value)

        return replay, outputs


def loop(x: torch.Tensor, state: tuple[torch.Tensor, ...], scale: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """A stand-in for a time loop: y is a view of the tape's h, as in the LSTM's loop."""
    hs = torch.empty(x.shape[0] + 1, *x.shape[1:])
    hs[0] = state[0]
    hs[1:] = torch.cumsum(x * scale, 0) + state[0]
    return hs[1:], {"hs": hs, "nothing": None}


def test_record_on_the_second_call_and_replay_with_new_inputs() -> None:
    capture = EmulatedCapture()
    recorded = graphs.LoopGraphs(capture)
    for call in range(4):
        x, h0 = torch.randn(5, 3), torch.randn(3)
        y, tape = recorded.run(loop, x, (h0,), 0.5)
        expected_y, expected_tape = loop(x, (h0,), 0.5)
        torch.testing.assert_close(y, expected_y, rtol=0, atol=0)
        torch.testing.assert_close(tape["hs"], expected_tape["hs"], rtol=0, atol=0)
        assert tape["nothing"] is None
        assert capture.captures == (0 if call == 0 else 1)  # the first call runs as it is (Triton compiles then)
        assert capture.replays == call
        # the outputs are the caller's: a view of the tape stays one, and no later replay reaches them
        assert y.untyped_storage().data_ptr() == tape["hs"].untyped_storage().data_ptr()
        assert y.data_ptr() == tape["hs"][1:].data_ptr()
    kept = y.clone()
    recorded.run(loop, torch.randn(5, 3), (torch.randn(3),), 0.5)
    torch.testing.assert_close(y, kept, rtol=0, atol=0)


def test_each_signature_is_its_own_recording_and_the_oldest_goes_first() -> None:
    capture = EmulatedCapture()
    recorded = graphs.LoopGraphs(capture, capacity=2)
    h0 = (torch.zeros(3),)
    for _ in range(2):
        for T in (4, 5, 6):  # shapes are part of the signature
            recorded.run(loop, torch.randn(T, 3), h0, 1.0)
    assert capture.captures == 3 and len(recorded) == 2  # T=4 dropped for T=6
    for _ in range(2):
        recorded.run(loop, torch.randn(5, 3), h0, 2.0)  # so are the constants
    assert capture.captures == 4
    x = torch.randn(4, 3)
    y, _ = recorded.run(loop, x, h0, 1.0)  # seen before: recorded again at once
    assert capture.captures == 5
    torch.testing.assert_close(y, loop(x, h0, 1.0)[0], rtol=0, atol=0)


def test_a_failed_capture_warns_once_and_runs_unrecorded() -> None:
    def refuse(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Callable[[], None], Any]:
        raise RuntimeError("operation not permitted when stream is capturing")

    recorded = graphs.LoopGraphs(refuse)
    x, h0 = torch.randn(4, 3), (torch.zeros(3),)
    recorded.run(loop, x, h0, 1.0)
    with pytest.warns(RuntimeWarning, match=r"CUDA graph failed \(RuntimeError: operation not permitted.*LSTMLAB_CUDA_GRAPHS=0"):
        y, _ = recorded.run(loop, x, h0, 1.0)
    torch.testing.assert_close(y, loop(x, h0, 1.0)[0], rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recorded.run(loop, x, h0, 1.0)  # not tried again
    assert len(recorded) == 0


def test_recording_only_on_cuda_and_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert graphs.graphs_for(torch.device("cpu")) is None
    monkeypatch.setenv(graphs.ENV, "0")
    assert graphs.graphs_for(torch.device("cuda", 0)) is None
    monkeypatch.setenv(graphs.ENV, "1")
    assert isinstance(graphs.graphs_for(torch.device("cuda", 0)), graphs.LoopGraphs)  # made lazily; touches no device


T, B = 4, 3
CASES = ["LSTM-FGR-proj", "LSTM-vanilla", "GRU-before", "RNN-relu"]


@needs_triton
@pytest.mark.parametrize("case", CASES)
def test_triton_loops_through_emulated_recordings(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real loops (the interpreter's kernels) through the recording, forward and
    backward, three calls with new inputs and lengths: each as the reference gives."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    capture = EmulatedCapture()
    recorded = graphs.LoopGraphs(capture)
    monkeypatch.setattr(graphs, "graphs_for", lambda device: recorded)
    reference = build(case, backend="reference", num_layers=2)
    for call in range(3):
        x = make_input(T, B, INPUT_SIZE, torch.float64) * (1 + call)
        state = make_state(reference, B)
        lengths = [T, 2 + call % 2, 1]
        expected = run_with_grads(reference, x, state, lengths)
        module = with_backend(reference, "triton", x.float())
        actual = run_with_grads(module, x.float(), tuple(s.float() for s in state), lengths)
        assert_same(actual, expected, atol=1e-5, rtol=1e-5)
    assert capture.captures > 0 and capture.replays > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@needs_triton
@pytest.mark.parametrize("case", CASES)
def test_cuda_graphs_replay_with_new_inputs(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    graphs._GRAPHS.clear()
    reference = build(case, backend="reference", num_layers=2, bidirectional=True)
    for call in range(4):
        x = make_input(T, B, INPUT_SIZE, torch.float64) * (1 + call)
        state = make_state(reference, B)
        lengths = None if call % 2 else [T, 2, 1]
        expected = run_with_grads(reference, x, state, lengths)
        module = with_backend(reference, "triton", x.float().cuda())
        actual = run_with_grads(module, x.float().cuda(), tuple(s.float().cuda() for s in state), lengths)
        assert_same({key: value.cpu() for key, value in actual.items()}, expected, atol=1e-5, rtol=1e-5)
    assert len(graphs._GRAPHS[torch.device("cuda", torch.cuda.current_device())]) > 0
