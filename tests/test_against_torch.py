"""Tier 2: every backend against torch.nn's own modules, weights copied: outputs, final
states and every gradient (input, hx, all parameters) under random upstream gradients.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import (
    BACKENDS,
    HIDDEN_SIZE,
    INPUT_SIZE,
    PROJ_SIZE,
    assert_not_trivial,
    assert_same,
    make_input,
    make_state,
    random_like,
    randomize_,
    run_with_grads,
)
from torch import nn

import lstmlab
from lstmlab import backends

T, B = 3, 3
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

# name -> (torch class, lstmlab class, extra constructor arguments)
STACKS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "LSTM": (nn.LSTM, lstmlab.LSTM, {}),
    "LSTM-proj": (nn.LSTM, lstmlab.LSTM, {"proj_size": PROJ_SIZE}),
    "GRU": (nn.GRU, lstmlab.GRU, {}),
    "RNN-tanh": (nn.RNN, lstmlab.RNN, {"nonlinearity": "tanh"}),
    "RNN-relu": (nn.RNN, lstmlab.RNN, {"nonlinearity": "relu"}),
}

# input form -> (lengths or None, enforce_sorted, batched)
INPUTS = {
    "padded": (None, False, True),
    "packed-unsorted": ([2, 3, 1], False, True),
    "packed-sorted": ([3, 2, 1], True, True),
    "unbatched": (None, False, False),
}


def _torch_stack(name: str, dtype: torch.dtype, **kwargs: Any) -> nn.Module:
    torch_cls, _, extra = STACKS[name]
    module = torch_cls(INPUT_SIZE, HIDDEN_SIZE, **extra, **kwargs, dtype=dtype)
    return randomize_(module, seed=5)


def _ours(cls: type, theirs: nn.Module, backend: str) -> nn.Module:
    ours = cls.from_torch(theirs)
    reason = backends.get(backend).unsupported(ours.config, next(ours.parameters()))
    if reason is not None:
        pytest.skip(reason)
    ours.backend = backend
    return ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("form", INPUTS)
@pytest.mark.parametrize("name", STACKS)
def test_stack_matches_torch(name: str, form: str, with_hx: bool, backend: str, dtype: torch.dtype) -> None:
    lengths, enforce_sorted, batched = INPUTS[form]
    theirs = _torch_stack(name, dtype, num_layers=2, bidirectional=True, batch_first=True)
    ours = _ours(STACKS[name][1], theirs, backend)
    assert ours.batch_first and ours.num_layers == 2 and ours.bidirectional
    x = make_input(B, T, INPUT_SIZE, dtype) if batched else make_input(T, 1, INPUT_SIZE, dtype)[:, 0]
    state = make_state(ours, B if batched else None) if with_hx else None
    expected = run_with_grads(theirs, x, state, lengths, enforce_sorted)
    actual = run_with_grads(ours, x, state, lengths, enforce_sorted)
    assert_not_trivial(expected)
    assert any(key.startswith("d_hx") for key in actual) == with_hx
    assert_same(actual, expected, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("name", STACKS)
def test_state_dict_loads_both_ways(name: str) -> None:
    torch_cls, cls, extra = STACKS[name]
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    theirs = _torch_stack(name, torch.float64, num_layers=2, bidirectional=True)
    ours = cls(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True, **extra, dtype=torch.float64)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    assert_same(run_with_grads(ours, x), run_with_grads(theirs, x), atol=1e-10)

    randomize_(ours, seed=9)
    back = torch_cls(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True, **extra, dtype=torch.float64)
    back.load_state_dict(ours.state_dict())
    assert_same(run_with_grads(back, x), run_with_grads(ours, x), atol=1e-10)

    converted = ours.to_torch()
    assert type(converted) is torch_cls
    for key, value in ours.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value)
    assert_same(run_with_grads(converted, x), run_with_grads(ours, x), atol=1e-10)


# -- cells ----------------------------------------------------------------------------

CELLS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "LSTMCell": (nn.LSTMCell, lstmlab.LSTMCell, {}),
    "GRUCell": (nn.GRUCell, lstmlab.GRUCell, {}),
    "RNNCell-tanh": (nn.RNNCell, lstmlab.RNNCell, {"nonlinearity": "tanh"}),
    "RNNCell-relu": (nn.RNNCell, lstmlab.RNNCell, {"nonlinearity": "relu"}),
}


def _cell_with_grads(cell: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None) -> dict[str, torch.Tensor]:
    """The cell's new state and every gradient of sum(ds*s') with random ds."""
    x = x.detach().clone().requires_grad_(True)
    leaves = None if state is None else tuple(s.detach().clone().requires_grad_(True) for s in state)
    hx = None if leaves is None else (leaves if len(leaves) > 1 else leaves[0])
    out = cell(x, hx)
    out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
    loss = sum((s * random_like(s, 7 + k)).sum() for k, s in enumerate(out))
    params = dict(cell.named_parameters())
    wrt = [x, *(leaves or ()), *params.values()]
    grads = torch.autograd.grad(loss, wrt)
    names = ["d_input", *(f"d_hx{k}" for k in range(len(leaves or ()))), *(f"d_{n}" for n in params)]
    return {**{f"s{k}": s.detach() for k, s in enumerate(out)}, **dict(zip(names, grads))}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", CELLS)
def test_cell_matches_torch(name: str, batched: bool, with_hx: bool, backend: str, dtype: torch.dtype) -> None:
    torch_cls, cls, extra = CELLS[name]
    theirs = randomize_(torch_cls(INPUT_SIZE, HIDDEN_SIZE, **extra, dtype=dtype), seed=6)
    ours = _ours(cls, theirs, backend)
    x = make_input(1, B, INPUT_SIZE, dtype)[0]
    x = x if batched else x[0]
    n_state = 2 if torch_cls is nn.LSTMCell else 1
    state = None
    if with_hx:
        state = tuple(random_like(x[..., :1].expand(*x.shape[:-1], HIDDEN_SIZE), 11 + k) for k in range(n_state))
    expected = _cell_with_grads(theirs, x, state)
    actual = _cell_with_grads(ours, x, state)
    assert actual["s0"].shape == ((B, HIDDEN_SIZE) if batched else (HIDDEN_SIZE,))
    assert_same(actual, expected, atol=TOL[dtype], rtol=TOL[dtype])

    back = ours.to_torch()
    assert type(back) is torch_cls
    assert_same(_cell_with_grads(back, x, state), expected, atol=0.0)


# -- dropout --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", STACKS)
def test_dropout_in_eval_is_identity(name: str, backend: str) -> None:
    theirs = _torch_stack(name, torch.float64, num_layers=2, dropout=0.5).eval()
    ours = _ours(STACKS[name][1], theirs, backend)
    assert not ours.training and ours.dropout == 0.5
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    assert_same(run_with_grads(ours, x), run_with_grads(theirs, x), atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", STACKS)
def test_dropout_in_training_acts_between_layers_only(name: str, backend: str) -> None:
    x = make_input(T, B, INPUT_SIZE, torch.float64)
    # dropout=1 zeroes the second layer's input: deterministic, so torch can be matched exactly
    theirs = _torch_stack(name, torch.float64, num_layers=2, dropout=1.0).train()
    ours = _ours(STACKS[name][1], theirs, backend)
    assert ours.training
    assert_same(run_with_grads(ours, x), run_with_grads(theirs, x), atol=1e-10)

    # dropout=0.5: the first layer (input and recurrence) is untouched, the output is not
    ours = _ours(STACKS[name][1], _torch_stack(name, torch.float64, num_layers=2, dropout=0.5).train(), backend)
    torch.manual_seed(0)
    y_train, s_train = ours(x)
    y_eval, s_eval = ours.eval()(x)
    s_train = s_train if isinstance(s_train, tuple) else (s_train,)
    s_eval = s_eval if isinstance(s_eval, tuple) else (s_eval,)
    for train, evaluated in zip(s_train, s_eval):
        torch.testing.assert_close(train[0], evaluated[0], atol=1e-12, rtol=0)
    assert not torch.allclose(y_train, y_eval)
