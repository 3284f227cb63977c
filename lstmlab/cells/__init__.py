"""The cells: their equations, their flags, one forward step and its hand-derived backward.

Each family module (`lstm`, `gru`, `rnn`) holds its equations in its docstring and
provides `step` (any array namespace), `step_backward` (NumPy) and `state_sizes`.
"""

from __future__ import annotations

from types import ModuleType

from lstmlab.cells import gru, lstm, rnn
from lstmlab.cells.gru import GRUSpec
from lstmlab.cells.lstm import VARIANTS, LSTMSpec
from lstmlab.cells.rnn import RNNSpec
from lstmlab.cells.weights import LayerWeights

CellSpec = LSTMSpec | GRUSpec | RNNSpec

_FAMILIES: dict[type, ModuleType] = {LSTMSpec: lstm, GRUSpec: gru, RNNSpec: rnn}


def family(spec: CellSpec) -> ModuleType:
    """The module (`lstm`, `gru` or `rnn`) that implements the cell `spec` describes."""
    return _FAMILIES[type(spec)]


def torch_mode(spec: CellSpec) -> str | None:
    """torch's name for this cell ("LSTM", "GRU", "RNN_TANH", "RNN_RELU", as `nn.RNNBase.mode`),
    or None when torch has no such cell. The one answer to "does torch have this cell?"."""
    if isinstance(spec, LSTMSpec):
        return "LSTM" if spec == LSTMSpec() else None
    if isinstance(spec, GRUSpec):
        return "GRU" if spec.reset == "after" else None
    return "RNN_RELU" if spec.nonlinearity == "relu" else "RNN_TANH"


def spec_name(spec: CellSpec) -> str | None:
    """The name `lstmlab train --cell` and `lstmlab bench --cells` give this cell ("lstm",
    "peephole", "cifg", "gru-before", "rnn-relu", ...), or None for a combination of LSTM
    flags that no variant names. The peephole LSTM is "peephole" (Greff's "vanilla")."""
    if isinstance(spec, GRUSpec):
        return "gru" if spec.reset == "after" else "gru-before"
    if isinstance(spec, RNNSpec):
        return "rnn" if spec.nonlinearity == "tanh" else "rnn-relu"
    return _LSTM_NAMES.get(spec)


_LSTM_NAMES: dict[LSTMSpec, str] = {
    **{lstm.spec_from_flags(name): name.lower() for name in VARIANTS if name != "vanilla"},
    LSTMSpec(): "lstm",
}


def num_gates(spec: CellSpec) -> int:
    """Number of H-row blocks in weight_ih / weight_hh."""
    return len(spec.gates)


__all__ = [
    "CellSpec",
    "GRUSpec",
    "LSTMSpec",
    "LayerWeights",
    "RNNSpec",
    "VARIANTS",
    "spec_name",
    "family",
    "num_gates",
    "torch_mode",
]
