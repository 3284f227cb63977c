"""Tier 3: every backend against the reference for every cell and flag, and the choice
of a backend by name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from helpers import (
    BACKENDS,
    CASES,
    INPUT_SIZE,
    TORCH_CASES,
    assert_not_trivial,
    assert_same,
    build,
    make_input,
    make_state,
    run_with_grads,
    with_backend,
)
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from lstmlab import backends
from lstmlab.backends import StackConfig
from lstmlab.cells import GRUSpec, LSTMSpec
from lstmlab.cells.lstm import spec_from_flags

T, B = 3, 3
LENGTHS = [2, 3, 1]

# layout -> (constructor arguments, packed, non-contiguous input, hx given)
LAYOUTS: dict[str, tuple[dict[str, Any], bool, bool, bool]] = {
    "time-major": ({}, False, False, True),
    "batch_first-noncontiguous": ({"batch_first": True}, False, True, False),
    "packed-bidirectional-2layers": ({"num_layers": 2, "bidirectional": True}, True, False, True),
}


def _input(module: torch.nn.Module, dtype: torch.dtype, noncontiguous: bool) -> torch.Tensor:
    x = make_input(T, B, INPUT_SIZE, dtype)
    if module.batch_first:
        x = x.transpose(0, 1).contiguous()
    if noncontiguous:  # every other feature of a twice-as-wide tensor
        wide = torch.stack([x, -x], dim=-1).flatten(-2)
        x = wide[..., ::2]
        assert not x.is_contiguous()
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES)
def test_backend_matches_reference_float64(case: str, layout: str, backend: str) -> None:
    kwargs, packed, noncontiguous, with_hx = LAYOUTS[layout]
    reference = build(case, backend="reference", **kwargs)
    x = _input(reference, torch.float64, noncontiguous)
    module = with_backend(reference, backend, x)
    assert module.active_backend == backend
    lengths = LENGTHS if packed else None
    state = make_state(reference, B) if with_hx else None
    expected = run_with_grads(reference, x, state, lengths)
    assert_not_trivial(expected)
    assert_same(run_with_grads(module, x, state, lengths), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_backend_in_float32_matches_reference(case: str, backend: str) -> None:
    kwargs, packed, _, _ = LAYOUTS["packed-bidirectional-2layers"]
    reference = build(case, backend="reference", **kwargs)
    x = _input(reference, torch.float64, False)
    module = with_backend(reference, backend, x.float()).float()
    state = make_state(reference, B)
    expected = run_with_grads(reference, x, state, LENGTHS)
    actual = run_with_grads(module, x.float(), tuple(s.float() for s in state), LENGTHS)
    assert actual["y"].dtype == torch.float32
    for key in ("y", *(k for k in expected if k.startswith("s"))):
        torch.testing.assert_close(actual[key].double(), expected[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_reference_backend_gradients_match_finite_differences(case: str) -> None:
    """The reference backend's autograd Function and the stacking it shares with eager."""
    module = build(case, backend="reference", num_layers=2, bidirectional=True)
    names = [name for name, _ in module.named_parameters()]
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    state = make_state(module, B)

    def f(x: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hx, params = tensors[: len(state)], dict(zip(names, tensors[len(state) :]))
        packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
        y, final = functional_call(module, params, (packed, hx if len(hx) > 1 else hx[0]))
        final = (final,) if isinstance(final, torch.Tensor) else final
        return (y.data, *final)

    inputs = [t.detach().clone().requires_grad_(True) for t in (x, *state, *module.parameters())]
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True, check_batched_grad=False)


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
@pytest.mark.parametrize("case", CASES)
def test_empty_sequence(case: str, backend: str) -> None:
    module = build(case, num_layers=2, bidirectional=True, batch_first=True)
    module = with_backend(module, backend, next(module.parameters())) if backend != "auto" else module
    state = tuple(s.requires_grad_(True) for s in make_state(module, B))
    y, final = module(torch.zeros(B, 0, INPUT_SIZE, dtype=torch.float64), state if len(state) > 1 else state[0])
    final = (final,) if isinstance(final, torch.Tensor) else final
    assert y.shape == (B, 0, 2 * module.config.output_size)
    for s, s0 in zip(final, state, strict=True):
        torch.testing.assert_close(s, s0, atol=0, rtol=0)
    sum(s.sum() for s in final).backward()
    assert all(torch.equal(s.grad, torch.ones_like(s)) for s in state)


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
@pytest.mark.parametrize("case", CASES)
def test_empty_batch(case: str, backend: str) -> None:
    """B = 0: outputs and final states of the right (empty) shapes, and a backward that runs (torch's behaviour)."""
    reference = build(case, num_layers=2, bidirectional=True)
    x = make_input(T, 0, INPUT_SIZE, torch.float64).requires_grad_(True)
    module = with_backend(reference, backend, x) if backend != "auto" else reference
    y, final = module(x)
    final = (final,) if isinstance(final, torch.Tensor) else final
    assert y.shape == (T, 0, 2 * module.config.output_size)
    assert [tuple(s.shape) for s in final] == [(4, 0, size) for size in module.config.state_sizes]
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(p.grad is not None and torch.equal(p.grad, torch.zeros_like(p)) for p in module.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["LSTM-NP", "LSTM-vanilla", "GRU-after", "RNN-tanh"])
def test_dropout_set_after_construction_takes_effect(case: str, backend: str) -> None:
    module = with_backend(build(case, num_layers=2), backend, torch.zeros(1, dtype=torch.float64)).train()
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    assert torch.equal(module(x)[0], module(x)[0])  # built without dropout
    module.dropout = 0.5
    assert not torch.equal(module(x)[0], module(x)[0])
    module.dropout = 0.0
    assert torch.equal(module(x)[0], module(x)[0])


# -- choosing a backend -----------------------------------------------------------------


def _first_supported(module: torch.nn.Module) -> str:
    like = next(module.parameters())
    for name in backends.auto_order(module.config):
        if name in backends.names() and backends.get(name).unsupported(module.config, like) is None:
            return name
    raise AssertionError("no backend")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_auto_picks_the_first_backend_that_runs_and_never_reference(case: str, dtype: torch.dtype) -> None:
    module = build(case, dtype=dtype)
    chosen = module.active_backend
    assert chosen != "reference"
    assert chosen == _first_supported(module)
    if case in TORCH_CASES:  # torch's own kernels or the fused ones, whichever was measured faster
        assert chosen in ("native", "fused")
    else:
        assert chosen != "native"
    module(make_input(T, B, INPUT_SIZE, dtype))


def test_auto_on_cuda_runs_triton_only_where_measured_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA rule as a function of (config, device type, table): no GPU needed."""
    lstm, gru = StackConfig(LSTMSpec(), 2, 6), StackConfig(GRUSpec(reset="before"), 2, 6)
    peephole = StackConfig(spec_from_flags("peephole"), 2, 6)
    monkeypatch.setattr(backends, "TRITON_OVER_BEST_CUDA", {})  # as before any GPU measured it
    for config in (lstm, gru, peephole, replace(lstm, proj_size=3)):
        assert backends.auto_order(config, "cuda") == ("native", "eager")  # cuDNN where torch has the cell, else eager
    monkeypatch.setitem(backends.TRITON_OVER_BEST_CUDA, "peephole", {8: (0.5, 0.9), 1024: (1.3, 1.0)})
    monkeypatch.setitem(backends.TRITON_OVER_BEST_CUDA, "gru-before", {8: (1.1, 0.95)})  # 1.1 x 0.95 > 1: slower
    assert backends.auto_order(peephole, "cuda") == ("triton", "native", "eager")  # H=6 is nearest 8
    assert backends.auto_order(replace(peephole, hidden_size=700), "cuda") == ("native", "eager")  # nearest 1024
    assert backends.auto_order(gru, "cuda") == ("native", "eager")
    assert backends.auto_order(lstm, "cuda") == ("native", "eager")  # measured for other cells only
    # a variant torch lacks with no row of its own reads the peephole's; torch's cells never do
    assert backends.auto_order(replace(peephole, proj_size=3), "cuda") == ("triton", "native", "eager")
    assert backends.auto_order(StackConfig(spec_from_flags("NIG"), 2, 6), "cuda")[0] == "triton"
    assert backends.auto_order(replace(lstm, proj_size=3), "cuda") == ("native", "eager")
    monkeypatch.setitem(backends.TRITON_OVER_BEST_CUDA, "nig", {8: (1.5, 1.5)})  # its own row wins
    assert backends.auto_order(StackConfig(spec_from_flags("NIG"), 2, 6), "cuda") == ("native", "eager")
    assert "triton" not in backends.auto_order(peephole, "cpu") + backends.auto_order(peephole, "mps")
    assert backends.auto_order(lstm, "cuda", {"lstm": {4: (0.9, 0.9)}})[0] == "triton"  # an explicit table
    assert backends.auto_order(peephole, "cuda", {})[0] == "native"


@pytest.mark.parametrize("case", CASES)
def test_explicit_backend_shows_in_active_backend(case: str) -> None:
    config, like = build(case).config, torch.zeros(1, dtype=torch.float64)
    for backend in BACKENDS:
        if backends.get(backend).unsupported(config, like) is None:
            assert build(case, backend=backend).active_backend == backend
        else:
            with pytest.raises(ValueError, match=f"backend={backend!r} cannot run"):
                build(case, backend=backend)


@pytest.mark.parametrize(
    ("case", "why"),
    [("LSTM-vanilla", "peephole"), ("LSTM-CIFG", "coupled"), ("LSTM-FGR", "gate recurrence"), ("GRU-before", "reset")],
)
def test_native_refuses_cells_torch_lacks(case: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"backend='native' cannot run this configuration: .*{why}"):
        build(case, backend="native")
    module = build(case)  # chosen after construction: refused when set, and the module keeps its backend
    with pytest.raises(ValueError, match=rf"backend='native' cannot run this configuration: .*{why}"):
        module.backend = "native"
    assert module.backend == "auto"


def test_reference_refuses_float32() -> None:
    message = r"backend='reference' cannot run .*float64 only; got torch.float32"
    with pytest.raises(ValueError, match=message):
        build("LSTM-NP", backend="reference", dtype=torch.float32)
    module = build("LSTM-NP", backend="reference", dtype=torch.float64).float()
    with pytest.raises(ValueError, match=message):
        module(make_input(T, B, INPUT_SIZE, torch.float32))


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match=r"LSTM: backend must be one of auto, .*eager.*; got 'cudnn'"):
        build("LSTM-NP", backend="cudnn")
    with pytest.raises(ValueError, match=r"GRU: backend must be one of .*; got 'fast'"):
        backends.resolve("fast", build("GRU-after").config, torch.zeros(1), owner="GRU")
