"""What a torch user meets when swapping torch.nn's recurrent modules for lstmlab's, beyond
what PyTorch's own tests (tests/test_torch_rnn_ported.py) check: attributes that take effect
or are refused, conversions that refuse what cannot fit, autocast, stale views, and pickles
that name no lstmlab class but the module's own.
"""

from __future__ import annotations

import pickle
import pickletools
from typing import Any

import pytest
import torch
from torch import nn

import lstmlab
from lstmlab.errors import LstmlabError

RUNNABLE = ["eager", "native", "fused"]


def _x(T: int = 4, B: int = 3, I: int = 5) -> torch.Tensor:  # noqa: E741
    return torch.randn(T, B, I, generator=torch.Generator().manual_seed(0))


# -- attributes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "value", "same_as"),
    [
        (lstmlab.RNN, "nonlinearity", "relu", {"nonlinearity": "relu"}),
        (lstmlab.GRU, "reset", "before", {"reset": "before"}),
        (lstmlab.RNNCell, "nonlinearity", "relu", {"nonlinearity": "relu"}),
        (lstmlab.GRUCell, "reset", "before", {"reset": "before"}),
    ],
)
def test_a_cell_attribute_set_later_gives_the_module_built_with_it(cls: type, name: str, value: str, same_as: dict) -> None:
    built = cls(5, 7, **same_as)
    changed = cls(5, 7)
    changed.load_state_dict(built.state_dict())
    x = _x()[0] if cls.__name__.endswith("Cell") else _x()
    before = changed(x)
    setattr(changed, name, value)
    assert getattr(changed, name) == value
    after, expected = changed(x), built(x)
    after, expected, before = (t[0] if isinstance(t, tuple) else t for t in (after, expected, before))
    torch.testing.assert_close(after, expected)
    assert not torch.allclose(after, before)


def test_batch_first_and_backend_set_later_take_effect() -> None:
    lstm = lstmlab.LSTM(5, 7, peephole=True)
    x = _x()
    expected = lstm(x)[0]
    lstm.batch_first = True
    torch.testing.assert_close(lstm(x.transpose(0, 1))[0].transpose(0, 1), expected)
    lstm.backend = "eager"
    assert lstm.active_backend == "eager"
    torch.testing.assert_close(lstm(x.transpose(0, 1))[0].transpose(0, 1), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size", "variant"])
def test_attributes_that_fix_the_shapes_refuse_a_new_value(name: str) -> None:
    lstm = lstmlab.LSTM(5, 7, variant="CIFG")
    old = getattr(lstm, name)
    setattr(lstm, name, old)  # the same value is no change
    new = {"input_size": 6, "hidden_size": 8, "num_layers": 2, "bias": False, "bidirectional": True, "proj_size": 3}
    with pytest.raises(AttributeError, match=rf"^LSTM: {name} cannot change after construction"):
        setattr(lstm, name, new.get(name, "NP"))
    assert getattr(lstm, name) == old


@pytest.mark.parametrize(("name", "value", "error"), [("dropout", 1.5, ValueError), ("batch_first", 1, TypeError)])
def test_settable_attributes_are_checked(name: str, value: Any, error: type) -> None:
    gru = lstmlab.GRU(5, 7, 2)
    with pytest.raises(error, match=f"^GRU: {name} "):
        setattr(gru, name, value)


def test_mode_as_torch() -> None:
    for ours, theirs in [
        (lstmlab.LSTM(2, 3, variant="FGR"), nn.LSTM(2, 3)),
        (lstmlab.GRU(2, 3, reset="before"), nn.GRU(2, 3)),
        (lstmlab.RNN(2, 3, nonlinearity="relu"), nn.RNN(2, 3, nonlinearity="relu")),
        (lstmlab.RNN(2, 3), nn.RNN(2, 3)),
    ]:
        assert ours.mode == theirs.mode


# -- conversions, dtypes ------------------------------------------------------------------


def test_from_torch_refuses_a_variant_torch_weights_cannot_fill() -> None:
    with pytest.raises(ValueError, match=r"^LSTM.from_torch: variant='CIFG' gives parameters that torch's LSTM lacks"):
        lstmlab.LSTM.from_torch(nn.LSTM(4, 8), variant="CIFG")
    converted = lstmlab.LSTM.from_torch(nn.LSTM(4, 8), backend="eager")  # arguments that change no shape are fine
    assert converted.backend == "eager"


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float32"])
def test_a_module_of_a_non_floating_dtype_is_refused(dtype: Any) -> None:
    with pytest.raises(RuntimeError, match=r"^LSTM: dtype must be a floating-point torch.dtype"):
        lstmlab.LSTM(2, 3, dtype=dtype)


def test_an_integer_input_is_a_dtype_error() -> None:
    with pytest.raises(ValueError, match=r"^GRU: input must have the weights' dtype \(RNN input dtype torch.int64"):
        lstmlab.GRU(2, 3)(torch.zeros(4, 1, 2, dtype=torch.int64))


# -- autocast -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", RUNNABLE)
@pytest.mark.parametrize("variant", [None, "peephole"])
def test_autocast_runs_and_stays_close(backend: str, variant: str | None) -> None:
    if backend == "native" and variant:
        pytest.skip("native runs torch's cells only")
    lstm = lstmlab.LSTM(5, 16, 2, variant=variant, backend=backend)
    x = _x().requires_grad_(True)
    expected = lstm(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = lstm(x)
        y_from_bf16, _ = lstm(x.bfloat16())  # an input autocast produced, as a preceding Linear would
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    for out in (y, y_from_bf16):
        torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)


# -- autograd's guards ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["reference", "eager", "fused"])
def test_a_parameter_changed_in_place_after_forward_is_refused(backend: str) -> None:
    lstm = lstmlab.LSTM(5, 7, peephole=True, backend=backend, dtype=torch.float64)
    y, _ = lstm(_x().double())
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_double_backward_on_the_reference_backend_is_refused_clearly() -> None:
    gru = lstmlab.GRU(5, 7, backend="reference", dtype=torch.float64)
    x = _x().double().requires_grad_(True)
    y = gru(x)[0].sum()
    with pytest.raises(RuntimeError, match=r"reference: backend computes no gradients of gradients .*use backend='eager'"):
        torch.autograd.grad(y, x, create_graph=True)
    (g,) = torch.autograd.grad(y, x)  # a plain backward still works
    assert torch.isfinite(g).all()


# -- pickles ------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [lstmlab.LSTM(2, 3, variant="FGR", proj_size=2), lstmlab.GRUCell(2, 3, reset="before")])
def test_a_pickled_module_names_no_lstmlab_class_but_its_own(module: nn.Module) -> None:
    strings = {arg for _, arg, _ in pickletools.genops(pickle.dumps(module)) if isinstance(arg, str)}
    # the module path of its own class (for the STACK_GLOBAL that names it), and no other lstmlab module
    assert {s for s in strings if s.startswith("lstmlab")} == {type(module).__module__}


def test_errors_pickle_with_their_fields() -> None:
    try:
        lstmlab.LSTM(2, 0)
    except LstmlabError as error:
        again = pickle.loads(pickle.dumps(error))
        assert (type(again), str(again), again.owner, again.argument) == (type(error), str(error), "LSTM", "hidden_size")
