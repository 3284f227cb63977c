"""Every argument and input error: its type, and a message that names the owner, the
argument, the rule and the value; raised before any backend computes anything.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import lstmlab
from lstmlab import backends

F64 = torch.float64


@pytest.fixture(autouse=True)
def no_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any backend run in these tests is a failure: errors come before computation."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a backend ran before the error was raised")

    for name in backends.names()[1:]:
        monkeypatch.setattr(backends.get(name), "run", refuse)


def raises(error: type[Exception], message: str) -> Any:
    """pytest.raises matching `message` literally, from the start."""
    return pytest.raises(error, match="^" + re.escape(message))


# -- constructor arguments ------------------------------------------------------------

STACKS = [lstmlab.LSTM, lstmlab.GRU, lstmlab.RNN]
CELLS = [lstmlab.LSTMCell, lstmlab.GRUCell, lstmlab.RNNCell]


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("argument", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("cls", STACKS)
def test_sizes_must_be_positive(cls: type, argument: str, value: int) -> None:
    kwargs = {"input_size": 2, "hidden_size": 3, "num_layers": 1, argument: value}
    with raises(ValueError, f"{cls.__name__}: {argument} must be greater than zero; got {value!r}"):
        cls(**kwargs)


@pytest.mark.parametrize("value", [2.5, True, "3"])
@pytest.mark.parametrize("argument", ["input_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("cls", STACKS)
def test_sizes_must_be_ints_a_type_error_as_in_torch(cls: type, argument: str, value: Any) -> None:
    kwargs = {"input_size": 2, "hidden_size": 3, "num_layers": 1, argument: value}
    message = f"{cls.__name__}: {argument} must be a positive int; got {value!r} of type {type(value).__name__}"
    with raises(TypeError, message):
        cls(**kwargs)


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize("cls", CELLS)
def test_cell_input_size_must_be_positive(cls: type, value: int) -> None:
    with raises(ValueError, f"{cls.__name__}: input_size must be greater than zero; got {value!r}"):
        cls(value, 3)


@pytest.mark.parametrize("cls", CELLS)
def test_cell_hidden_size_may_be_zero_as_in_torch_but_not_negative(cls: type) -> None:
    assert cls(2, 0).hidden_size == 0
    with raises(ValueError, f"{cls.__name__}: hidden_size must be a non-negative int; got -1"):
        cls(2, -1)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True])
@pytest.mark.parametrize("cls", STACKS)
def test_dropout_must_be_in_the_unit_interval(cls: type, value: Any) -> None:
    with raises(ValueError, f"{cls.__name__}: dropout must be a number in [0, 1]; got {value!r}"):
        cls(2, 3, num_layers=2, dropout=value)


def test_dropout_with_one_layer_warns_like_torch() -> None:
    with pytest.warns(UserWarning, match=r"LSTM: dropout=0.5 applies between layers only"):
        lstmlab.LSTM(2, 3, dropout=0.5)


@pytest.mark.parametrize("argument", ["bias", "batch_first", "bidirectional"])
@pytest.mark.parametrize("cls", STACKS)
def test_switches_must_be_bools(cls: type, argument: str) -> None:
    with raises(TypeError, f"{cls.__name__}: {argument} should be of type bool, got: int (1)"):
        cls(2, 3, **{argument: 1})


@pytest.mark.parametrize("argument", ["peephole", "coupled", "input_gate", "forget_gate", "output_gate", "gate_recurrence"])
@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.LSTMCell])
def test_lstm_flags_must_be_bools(cls: type, argument: str) -> None:
    with raises(TypeError, f"{cls.__name__}: {argument} should be of type bool, got: str ('yes')"):
        cls(2, 3, **{argument: "yes"})


@pytest.mark.parametrize("proj_size", [3, 4])
def test_proj_size_must_be_smaller_than_hidden_size(proj_size: int) -> None:
    with raises(ValueError, f"LSTM: proj_size must be smaller than hidden_size=3; got {proj_size}"):
        lstmlab.LSTM(2, 3, proj_size=proj_size)


def test_proj_size_must_be_non_negative() -> None:
    with raises(ValueError, "LSTM: proj_size must be a non-negative int; got -1"):
        lstmlab.LSTM(2, 3, proj_size=-1)


@pytest.mark.parametrize("cls", [lstmlab.LSTM, lstmlab.LSTMCell])
def test_unknown_variant(cls: type) -> None:
    with raises(
        ValueError,
        f"{cls.__name__}: variant must be one of vanilla, peephole, NP, NIG, NFG, NOG, NIAF, NOAF, CIFG, FGR; got 'GRU'",
    ):
        cls(2, 3, variant="GRU")
    with raises(TypeError, f"{cls.__name__}: variant must be a str or None; got int"):
        cls(2, 3, variant=1)


@pytest.mark.parametrize("argument", ["input_activation", "output_activation"])
def test_unknown_activation(argument: str) -> None:
    with raises(ValueError, f"LSTM: {argument} must be one of tanh, identity; got 'relu'"):
        lstmlab.LSTM(2, 3, **{argument: "relu"})


@pytest.mark.parametrize("cls", [lstmlab.RNN, lstmlab.RNNCell])
def test_unknown_nonlinearity(cls: type) -> None:
    with raises(ValueError, f"{cls.__name__}: nonlinearity must be one of tanh, relu; got 'sigmoid' (Unknown nonlinearity)"):
        cls(2, 3, nonlinearity="sigmoid")


@pytest.mark.parametrize("cls", [lstmlab.GRU, lstmlab.GRUCell])
def test_unknown_reset(cls: type) -> None:
    with raises(ValueError, f"{cls.__name__}: reset must be one of after, before; got 'never'"):
        cls(2, 3, reset="never")


@pytest.mark.parametrize("missing", ["input_gate", "forget_gate"])
def test_coupled_needs_both_gates(missing: str) -> None:
    with raises(
        ValueError,
        "LSTM: coupled=True derives the forget gate from the input gate (f = 1 - i), "
        f"so it needs both gates; got {missing}=False",
    ):
        lstmlab.LSTM(2, 3, coupled=True, **{missing: False})


@pytest.mark.parametrize("flag", ["peephole", "gate_recurrence"])
def test_peepholes_and_gate_recurrence_need_a_sigmoid_gate(flag: str) -> None:
    with raises(ValueError, f"LSTM: {flag}=True needs at least one of the input, forget or output gates; got none"):
        lstmlab.LSTM(2, 3, input_gate=False, forget_gate=False, output_gate=False, **{flag: True})


def test_unknown_backend() -> None:
    with raises(ValueError, f"GRUCell: backend must be one of {', '.join(backends.names())}; got 'fastest'"):
        lstmlab.GRUCell(2, 3, backend="fastest")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "CIFG"}, "LSTM: forget_bias needs a forget gate with its own weights; this cell has gates ('i', 'g', 'o')"),
        ({"variant": "NFG"}, "LSTM: forget_bias needs a forget gate with its own weights; this cell has gates ('i', 'g', 'o')"),
        ({"bias": False}, "LSTM: forget_bias needs bias=True; got bias=False"),
    ],
)
def test_forget_bias_needs_a_forget_gate_and_a_bias(kwargs: dict, message: str) -> None:
    with raises(ValueError, message):
        lstmlab.LSTM(2, 3, forget_bias=1.0, **kwargs)


@pytest.mark.parametrize("value", [float("inf"), "1", None])
def test_forget_bias_must_be_a_finite_number(value: Any) -> None:
    with raises(ValueError, f"LSTM: forget_bias must be a finite number; got {value!r}"):
        lstmlab.LSTM(2, 3, forget_bias=value)


def test_torch_conversions_refuse_what_torch_lacks() -> None:
    with raises(ValueError, "LSTM.to_torch: torch has no equivalent of this cell"):
        lstmlab.LSTM(2, 3, variant="vanilla").to_torch()
    with raises(ValueError, "GRUCell.to_torch: torch has no equivalent of this cell"):
        lstmlab.GRUCell(2, 3, reset="before").to_torch()
    with raises(TypeError, "GRU.from_torch: module must be a GRU; got LSTM"):
        lstmlab.GRU.from_torch(torch.nn.LSTM(2, 3))


# -- inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4,), (1, 4, 2, 2)])
@pytest.mark.parametrize("cls", STACKS)
def test_input_rank(cls: type, shape: tuple[int, ...]) -> None:
    with raises(
        ValueError,
        f"{cls.__name__}: input must be 2-D (T, input_size) or 3-D (T, B, input_size) "
        f"(batch_first: (B, T, input_size)); got {len(shape)}-D",
    ):
        cls(2, 3)(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(4, 5), (4, 1, 5), (4, 1, 1)])
@pytest.mark.parametrize("cls", STACKS)
def test_input_feature_size(cls: type, shape: tuple[int, ...]) -> None:
    with raises(RuntimeError, f"{cls.__name__}: input.size(-1) must be equal to input_size. Expected 2, got {shape[-1]}"):
        cls(2, 3)(torch.zeros(shape))


@pytest.mark.parametrize("cls", STACKS)
def test_input_dtype_and_type(cls: type) -> None:
    message = (
        f"{cls.__name__}: input must have the weights' dtype (RNN input dtype torch.float64 does not match weight dtype "
        "torch.float32). Convert input: input.to(torch.float32), or convert model: model.to(torch.float64)"
    )
    with raises(ValueError, message):
        cls(2, 3)(torch.zeros(4, 1, 2, dtype=F64))
    with raises(TypeError, f"{cls.__name__}: input must be a Tensor; got list"):
        cls(2, 3)([[0.0, 0.0]])


def test_input_device() -> None:
    with raises(ValueError, "LSTM: input.device must equal the parameters' device=cpu; got meta"):
        lstmlab.LSTM(2, 3)(torch.zeros(4, 1, 2, device="meta"))


# (module arguments, batched?, hx given, expected message)
HX_CASES = {
    "lstm-batch": (
        (lstmlab.LSTM, {}),
        True,
        lambda: (torch.zeros(1, 2, 3), torch.zeros(1, 3, 3)),
        "LSTM: h_0 must have shape (1, 3, 3); got (1, 2, 3)",
    ),
    "lstm-layers": (
        (lstmlab.LSTM, {"num_layers": 2}),
        True,
        lambda: (torch.zeros(2, 3, 3), torch.zeros(1, 3, 3)),
        "LSTM: c_0 must have shape (2, 3, 3); got (1, 3, 3)",
    ),
    "lstm-proj": (
        (lstmlab.LSTM, {"proj_size": 2}),
        True,
        lambda: (torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)),
        "LSTM: h_0 must have shape (1, 3, 2); got (1, 3, 3)",
    ),
    "lstm-count": (
        (lstmlab.LSTM, {}),
        True,
        lambda: (torch.zeros(1, 3, 3),),
        "LSTM: hx must be a tuple (h_0, c_0) of 2 tensors; got tuple of length 1",
    ),
    "lstm-tensor": (
        (lstmlab.LSTM, {}),
        True,
        lambda: torch.zeros(1, 3, 3),
        "LSTM: hx must be a tuple (h_0, c_0) of 2 tensors; got Tensor",
    ),
    "fgr-count": (
        (lstmlab.LSTM, {"variant": "FGR"}),
        True,
        lambda: (torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)),
        "LSTM: hx must be a tuple (h_0, c_0, a_0) of 3 tensors; got tuple of length 2",
    ),
    "fgr-a": (
        (lstmlab.LSTM, {"variant": "FGR"}),
        True,
        lambda: (torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), torch.zeros(1, 3, 3)),
        "LSTM: a_0 must have shape (1, 3, 9); got (1, 3, 3)",
    ),
    "gru-bidirectional": (
        (lstmlab.GRU, {"bidirectional": True}),
        True,
        lambda: torch.zeros(1, 3, 3),
        "GRU: hx must have shape (2, 3, 3); got (1, 3, 3)",
    ),
    "gru-tuple": ((lstmlab.GRU, {}), True, lambda: (torch.zeros(1, 3, 3),), "GRU: hx must be a Tensor; got tuple"),
    "rnn-dtype": (
        (lstmlab.RNN, {}),
        True,
        lambda: torch.zeros(1, 3, 3, dtype=F64),
        "RNN: hx.dtype must equal the parameters' dtype=torch.float32; got torch.float64",
    ),
    "rnn-device": (
        (lstmlab.RNN, {}),
        True,
        lambda: torch.zeros(1, 3, 3, device="meta"),
        "RNN: hx.device must equal the parameters' device=cpu; got meta",
    ),
    "rnn-unbatched": ((lstmlab.RNN, {}), False, lambda: torch.zeros(1, 1, 3), "RNN: hx must have shape (1, 3); got (1, 1, 3)"),
    "lstm-unbatched": (
        (lstmlab.LSTM, {}),
        False,
        lambda: (torch.zeros(1, 3), torch.zeros(3)),
        "LSTM: c_0 must have shape (1, 3); got (3,)",
    ),
}


@pytest.mark.parametrize("case", HX_CASES)
def test_hx_is_checked(case: str) -> None:
    (cls, kwargs), batched, hx, message = HX_CASES[case]
    x = torch.zeros(4, 3, 2) if batched else torch.zeros(4, 2)
    with raises(TypeError if "must be a Tensor" in message else ValueError, message):
        cls(2, 3, **kwargs)(x, hx())


def test_hx_of_the_wrong_batch_size_with_batch_first() -> None:
    with raises(ValueError, "GRU: hx must have shape (1, 5, 3); got (1, 4, 3)"):
        lstmlab.GRU(2, 3, batch_first=True)(torch.zeros(5, 4, 2), torch.zeros(1, 4, 3))


def _packed(batch_sizes: list[int], rows: int | None = None) -> PackedSequence:
    rows = sum(batch_sizes) if rows is None else rows
    return PackedSequence(torch.zeros(rows, 2), torch.tensor(batch_sizes), None, None)


@pytest.mark.parametrize("batch_sizes", [[1, 2], [2, 0], [], [3, -1]])
@pytest.mark.parametrize("cls", STACKS)
def test_packed_batch_sizes_must_be_positive_and_non_increasing(cls: type, batch_sizes: list[int]) -> None:
    message = (
        f"{cls.__name__}: input.batch_sizes (of a PackedSequence) must be positive and non-increasing "
        f"(lengths in [1, T]); got {batch_sizes}"
    )
    with raises(ValueError, message):
        cls(2, 3)(_packed(batch_sizes, rows=max(sum(batch_sizes), 0)))


@pytest.mark.parametrize("cls", STACKS)
def test_packed_batch_sizes_must_sum_to_the_rows(cls: type) -> None:
    with raises(RuntimeError, f"{cls.__name__}: input.batch_sizes (of a PackedSequence) must sum to data.size(0)=4; got 3"):
        cls(2, 3)(_packed([2, 1], rows=4))


def test_packed_data_is_checked() -> None:
    packed = pack_padded_sequence(torch.zeros(3, 2, 5), torch.tensor([3, 2]))
    with raises(RuntimeError, "LSTM: input.size(-1) must be equal to input_size. Expected 2, got 5"):
        lstmlab.LSTM(2, 3)(packed)
    with raises(ValueError, "LSTM: input.data must have the weights' dtype (RNN input dtype torch.float32 does not match"):
        lstmlab.LSTM(5, 3, dtype=F64)(packed)


# -- cells ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CELLS)
def test_cell_input(cls: type) -> None:
    name = cls.__name__
    with raises(ValueError, f"{name}: input must be 1-D (input_size,) or 2-D (B, input_size); got 3-D"):
        cls(2, 3)(torch.zeros(1, 4, 2))
    with raises(RuntimeError, f"{name}: input has inconsistent input_size: got 5 expected 2"):
        cls(2, 3)(torch.zeros(4, 5))
    with raises(ValueError, f"{name}: input must have the weights' dtype (RNN input dtype torch.float64"):
        cls(2, 3)(torch.zeros(4, 2, dtype=F64))


CELL_HX_CASES = {
    "lstm-batch": (
        lstmlab.LSTMCell,
        True,
        lambda: (torch.zeros(3, 3), torch.zeros(4, 3)),
        "LSTMCell: Input batch size 4 doesn't match hidden0 batch size 3 (h)",
    ),
    "lstm-size": (
        lstmlab.LSTMCell,
        True,
        lambda: (torch.zeros(4, 3), torch.zeros(4, 2)),
        "LSTMCell: hidden1 has inconsistent hidden_size: got 2, expected 3 (c)",
    ),
    "lstm-count": (
        lstmlab.LSTMCell,
        True,
        lambda: (torch.zeros(4, 3),),
        "LSTMCell: hx must be a tuple (h, c) of 2 tensors; got tuple of length 1",
    ),
    "lstm-tensor": (
        lstmlab.LSTMCell,
        True,
        lambda: torch.zeros(2, 4, 3),
        "LSTMCell: hx must be a tuple (h, c) of 2 tensors; got Tensor",
    ),
    "fgr-count": (
        lstmlab.LSTMCell,
        True,
        lambda: [torch.zeros(4, 3)] * 2,
        "LSTMCell: hx must be a tuple (h, c, a) of 3 tensors; got list of length 2",
    ),
    "gru-tuple": (lstmlab.GRUCell, True, lambda: (torch.zeros(4, 3),), "GRUCell: hx must be a Tensor; got tuple"),
    "lstm-unbatched": (
        lstmlab.LSTMCell,
        False,
        lambda: (torch.zeros(1, 3), torch.zeros(1, 3)),
        "LSTMCell: h must have shape (3,); got (1, 3)",
    ),
    "gru-batch": (
        lstmlab.GRUCell,
        True,
        lambda: torch.zeros(3, 3),
        "GRUCell: Input batch size 4 doesn't match hidden0 batch size 3 (hx)",
    ),
    "gru-rank": (
        lstmlab.GRUCell,
        True,
        lambda: torch.zeros(4, 1, 1, 3),
        "GRUCell: hx must be 1-D or 2-D; got 4-D (Expected hidden to be 1D or 2D, got 4D instead)",
    ),
    "gru-unbatched": (lstmlab.GRUCell, False, lambda: torch.zeros(1, 3), "GRUCell: hx must have shape (3,); got (1, 3)"),
    "rnn-dtype": (
        lstmlab.RNNCell,
        True,
        lambda: torch.zeros(4, 3, dtype=F64),
        "RNNCell: hx.dtype must equal the parameters' dtype=torch.float32; got torch.float64",
    ),
    "rnn-device": (
        lstmlab.RNNCell,
        True,
        lambda: torch.zeros(4, 3, device="meta"),
        "RNNCell: hx.device must equal the parameters' device=cpu; got meta",
    ),
}


@pytest.mark.parametrize("case", CELL_HX_CASES)
def test_cell_hx_is_checked(case: str) -> None:
    cls, batched, hx, message = CELL_HX_CASES[case]
    x = torch.zeros(4, 2) if batched else torch.zeros(2)
    kwargs = {"variant": "FGR"} if case.startswith("fgr") else {}
    with raises(TypeError if "must be a Tensor" in message else ValueError, message):
        cls(2, 3, **kwargs)(x, hx())
