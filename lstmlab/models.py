"""Sequence models for the tasks: a recurrent stack named by cell, and a linear readout.

Cell names (case-insensitive), as `lstmlab train --cell` takes them:
rnn (tanh Elman RNN), rnn-relu, lstm (torch's LSTM, Greff's NP), gru (reset after,
torch's), gru-before (Cho et al. 2014), peephole, cifg, and every LSTM variant of
`lstmlab.VARIANTS` (vanilla, np, nig, nfg, nog, niaf, noaf, cifg, fgr).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab import _checks
from lstmlab.cells.lstm import VARIANTS, canonical_variant, spec_from_flags
from lstmlab.errors import InvalidArgument
from lstmlab.nn import GRU, LSTM, RNN

_FIXED_CELLS: dict[str, str] = {
    "rnn": "Elman RNN, tanh",
    "rnn-relu": "Elman RNN, relu",
    "lstm": "LSTM with forget gate, no peepholes (torch's nn.LSTM; Greff's NP)",
    "gru": "GRU, reset after the product (torch's nn.GRU)",
    "gru-before": "GRU, reset before the product (Cho et al. 2014)",
}

CELLS: dict[str, str] = {**_FIXED_CELLS, **{name.lower(): description for name, (_, description) in VARIANTS.items()}}
"""Cell names `build_recurrent` accepts, with one-line descriptions."""


def cell_name(name: Any) -> str:
    """`name` normalised (lower case); an unknown name is an error."""
    if not isinstance(name, str) or name.lower() not in CELLS:
        raise InvalidArgument("models", "cell", f"must be one of {', '.join(CELLS)}; got {name!r}")
    return name.lower()


def build_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    dropout: float = 0.0,
    forget_bias: float = 0.0,
    backend: str = "auto",
    regularisers: dict[str, Any] | None = None,
) -> nn.Module:
    """The recurrent stack for `cell` (time-major). `forget_bias` is added to the
    initial forget-gate bias of cells that have their own forget gate and ignored
    by the others (RNN, GRU, CIFG, NFG). `regularisers`: keyword arguments of
    `lstmlab.LSTM` and `lstmlab.GRU` (zoneout, recurrent_dropout, weight_dropout,
    layer_norm); the RNN takes none."""
    name = cell_name(cell)
    # the stack drops out between its layers only: with one layer it has nowhere to (and warns)
    common = {"num_layers": num_layers, "dropout": dropout if num_layers > 1 else 0.0, "backend": backend}
    if name in ("rnn", "rnn-relu"):
        if regularisers:
            raise InvalidArgument("models", next(iter(regularisers)), f"applies to LSTM and GRU cells; got cell {name!r}")
        return RNN(input_size, hidden_size, nonlinearity="relu" if name == "rnn-relu" else "tanh", **common)
    common.update(regularisers or {})
    if name in ("gru", "gru-before"):
        return GRU(input_size, hidden_size, reset="before" if name == "gru-before" else "after", **common)
    variant = None if name == "lstm" else canonical_variant(name)
    bias = forget_bias if has_forget_gate(name) else 0.0
    return LSTM(input_size, hidden_size, variant=variant, forget_bias=bias, **common)


def has_forget_gate(cell: str) -> bool:
    """Whether `cell` is an LSTM with its own forget-gate weights (so takes a forget bias)."""
    name = cell_name(cell)
    if name in _FIXED_CELLS and name != "lstm":
        return False
    variant = None if name == "lstm" else canonical_variant(name)
    return "f" in spec_from_flags(variant).gates


class SequenceModel(nn.Module):
    """A recurrent stack and a linear readout at every step.

    inputs: (T, B, input_size) float, or (T, B) int64 ids with `token_inputs`
    (one-hot encoded here). Returns outputs (T, B, output_size) and the final state
    of the stack (a Tensor, or a tuple for LSTM cells). `dropout` applies between
    layers (inside the stack) and to the last layer's output before the readout.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        output_size: int,
        hidden_size: int = 64,
        num_layers: int = 1,
        *,
        token_inputs: bool = False,
        dropout: float = 0.0,
        forget_bias: float = 0.0,
        backend: str = "auto",
        regularisers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.cell = cell_name(cell)
        self.input_size = _checks.positive_int("SequenceModel", "input_size", input_size)
        self.output_size = _checks.positive_int("SequenceModel", "output_size", output_size)
        self.token_inputs = _checks.boolean("SequenceModel", "token_inputs", token_inputs)
        _checks.positive_int("SequenceModel", "hidden_size", hidden_size)
        _checks.positive_int("SequenceModel", "num_layers", num_layers)
        self.recurrent = build_recurrent(
            cell,
            input_size,
            hidden_size,
            num_layers,
            dropout=dropout,
            forget_bias=forget_bias,
            backend=backend,
            regularisers=regularisers,
        )
        self.drop = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden_size, output_size)

    @property
    def active_backend(self) -> str:
        return self.recurrent.active_backend

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if self.token_inputs:
            x = F.one_hot(inputs, self.input_size).to(self.readout.weight.dtype)
        else:
            x = inputs
        y, final = self.recurrent(x, state)
        if self.training and self.drop.p > 0:  # a no-op otherwise, not worth a module call per step
            y = self.drop(y)
        return self.readout(y), final


def num_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def detach_state(state: Any) -> Any:
    """`state` (a Tensor, a tuple of them, or None) cut from the autograd graph."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)
