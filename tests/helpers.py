"""Shared by the core tests: the cells under test, modules with random weights, and a
loss with random upstream gradients whose outputs and gradients can be compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import lstmlab
from lstmlab import backends
from lstmlab.cells import LayerWeights
from lstmlab.cells.lstm import VARIANTS, spec_from_flags

INPUT_SIZE, HIDDEN_SIZE, PROJ_SIZE = 2, 3, 2


def _distinct_variants() -> list[str]:
    """One name per distinct cell ("vanilla" and "peephole" are the same cell)."""
    seen: dict[Any, str] = {}
    for name in VARIANTS:
        seen.setdefault(spec_from_flags(name), name)
    return list(seen.values())


# case id -> (module class, constructor flags): every cell and flag of the core
CASES: dict[str, tuple[type, dict[str, Any]]] = {
    **{f"LSTM-{name}": (lstmlab.LSTM, {"variant": name}) for name in _distinct_variants()},
    "LSTM-proj": (lstmlab.LSTM, {"proj_size": PROJ_SIZE}),
    "LSTM-FGR-proj": (lstmlab.LSTM, {"variant": "FGR", "proj_size": PROJ_SIZE}),
    "LSTM-nobias": (lstmlab.LSTM, {"bias": False}),
    "LSTM-CIFG-nobias": (lstmlab.LSTM, {"variant": "CIFG", "bias": False}),
    "GRU-after": (lstmlab.GRU, {"reset": "after"}),
    "GRU-before": (lstmlab.GRU, {"reset": "before"}),
    "GRU-before-nobias": (lstmlab.GRU, {"reset": "before", "bias": False}),
    "RNN-tanh": (lstmlab.RNN, {"nonlinearity": "tanh"}),
    "RNN-relu": (lstmlab.RNN, {"nonlinearity": "relu"}),
}

# the cases torch.nn computes itself
TORCH_CASES = ["LSTM-NP", "LSTM-proj", "LSTM-nobias", "GRU-after", "RNN-tanh", "RNN-relu"]

# every registered backend a module can name explicitly
BACKENDS = [name for name in backends.names() if name != "auto"]


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.8) -> torch.nn.Module:
    """Fill every parameter (peepholes included, which start at zero) with U(-scale, scale)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(module.named_parameters()):
            value = (torch.rand(param.shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale
            param.copy_(value)
    return module


def build(
    case: str,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    input_size: int = INPUT_SIZE,
    hidden_size: int = HIDDEN_SIZE,
    **kwargs: Any,
) -> torch.nn.Module:
    """The module of `case` (see CASES) with random weights; kwargs add constructor arguments."""
    cls, flags = CASES[case]
    return randomize_(cls(input_size, hidden_size, **flags, **kwargs, dtype=dtype), seed)


def numpy_weights(module: torch.nn.Module) -> list[LayerWeights]:
    """The module's weights per layer and direction as float64 NumPy arrays."""
    return [LayerWeights(*(None if t is None else t.detach().double().numpy().copy() for t in w)) for w in module.layer_weights()]


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    """A random tensor shaped like t, the same for every dtype with the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=generator, dtype=torch.float64).to(device=t.device, dtype=t.dtype)


def make_input(T: int, B: int, I: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:  # noqa: E741
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, I, generator=generator, dtype=torch.float64).to(dtype)


def make_state(module: torch.nn.Module, B: int | None, seed: int = 2) -> tuple[torch.Tensor, ...]:
    """Random initial state tensors for `module` ((L*D, B, S) each; (L*D, S) when B is None)."""
    generator = torch.Generator().manual_seed(seed)
    leading = (len(module._suffixes),) + (() if B is None else (B,))
    dtype = next(module.parameters()).dtype
    return tuple(
        torch.randn(leading + (size,), generator=generator, dtype=torch.float64).to(dtype) for size in module.config.state_sizes
    )


def as_hx(module: torch.nn.Module, state: tuple[torch.Tensor, ...] | None) -> Any:
    """State tensors in the form the module's forward takes (a tensor, or a tuple)."""
    if state is None:
        return None
    return state if len(state) > 1 else state[0]


def run_with_grads(
    module: torch.nn.Module,
    x: torch.Tensor,
    state: tuple[torch.Tensor, ...] | None = None,
    lengths: list[int] | None = None,
    enforce_sorted: bool = False,
    seed: int = 3,
) -> dict[str, torch.Tensor]:
    """Outputs, final states and every gradient of loss = sum(dy*y) + sum(ds*s).

    x is the padded input as the module takes it (batch_first or not, batched or not);
    with `lengths` it is packed first. dy and ds are random, fixed by `seed` and the
    shapes, so two modules with the same weights give comparable dictionaries. Keys:
    "y", "s0", "s1"... (final states), "d_input", "d_hx0"... and "d_<parameter name>".
    """
    x = x.detach().clone().requires_grad_(True)
    inp: Any = x
    if lengths is not None:
        inp = pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=enforce_sorted)
    leaves = None if state is None else tuple(s.detach().clone().requires_grad_(True) for s in state)
    y, final = module(inp, as_hx(module, leaves))
    y_data = y.data if isinstance(y, PackedSequence) else y
    final = (final,) if isinstance(final, torch.Tensor) else tuple(final)
    loss = (y_data * random_like(y_data, seed)).sum()
    for k, s in enumerate(final):
        loss = loss + (s * random_like(s, seed + 1 + k)).sum()
    params = dict(module.named_parameters())
    wrt = [x, *(leaves or ()), *params.values()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    names = ["d_input", *(f"d_hx{k}" for k in range(len(leaves or ()))), *(f"d_{name}" for name in params)]
    out = {"y": y_data.detach(), **{f"s{k}": s.detach() for k, s in enumerate(final)}}
    for name, grad, leaf in zip(names, grads, wrt):
        out[name] = torch.zeros_like(leaf) if grad is None else grad
    return out


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float, rtol: float = 0.0) -> None:
    """Every entry of two run_with_grads dictionaries agrees (compared in float64)."""
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(
            actual[key].double(), expected[key].double(), atol=atol, rtol=rtol, msg=lambda m, key=key: f"{key}: {m}"
        )


def assert_not_trivial(result: dict[str, torch.Tensor]) -> None:
    """Guard against comparisons that pass because everything is zero."""
    for key, value in result.items():
        if key.startswith("d_") or key == "y":
            assert value.abs().max() > 0 or value.numel() == 0, f"{key} is all zeros"


def transfer(src: torch.nn.Module, dst: torch.nn.Module) -> torch.nn.Module:
    """Copy src's parameters into dst (same names), in dst's dtype."""
    dst.load_state_dict(src.state_dict())
    return dst


def with_backend(module: torch.nn.Module, backend: str, x: torch.Tensor) -> torch.nn.Module:
    """A copy of `module` that runs on `backend`, with x's dtype and device; skips when
    the backend cannot run it."""
    reason = backends.get(backend).unsupported(module.config, x)
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    config = module.config
    kwargs = {"num_layers": config.num_layers, "bidirectional": config.bidirectional, "bias": config.bias}
    if config.proj_size:
        kwargs["proj_size"] = config.proj_size
    flags = vars(config.spec)  # the spec's fields are the constructor's cell flags
    copy = type(module)(
        config.input_size,
        config.hidden_size,
        **kwargs,
        **flags,
        batch_first=module.batch_first,
        backend=backend,
        dtype=x.dtype,
        device=x.device,
    )
    assert copy.config == config
    return transfer(module, copy)


def np_seed(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
