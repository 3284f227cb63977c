"""The fused ops' interface, named: the cells, each cell's flags, the ops' arguments and
results, and which results are present with what shape.

The C++ side names the same things once (csrc/schema.h) and exports the names;
`mismatches` compares the two, and the loader refuses an extension that disagrees.
Custom ops take tensors and plain scalars only, so the cell travels as an int and its
flags as a list of ints, in the order of the NamedTuple that names them here.
"""

from __future__ import annotations

from enum import IntEnum
from types import ModuleType
from typing import NamedTuple

from torch import Tensor

from lstmlab.cells import CellSpec, GRUSpec, LayerWeights, LSTMSpec

Shape = tuple[int, ...]


class Cell(IntEnum):
    """The cell family, as the op's `cell` argument."""

    LSTM = 0
    GRU = 1
    RNN = 2


class LSTMFlags(NamedTuple):
    """The LSTM's flags: the block of each gate in the weight rows (i, f, g, o) and of
    each peephole vector in w_ch (i, f, o), -1 where absent; then 0/1 switches."""

    gate_i: int
    gate_f: int
    gate_g: int
    gate_o: int
    peephole_i: int
    peephole_f: int
    peephole_o: int
    coupled: int  # CIFG: f = 1 - i
    tanh_g: int  # G = tanh, else identity (NIAF)
    tanh_h: int  # H = tanh, else identity (NOAF)
    gate_recurrence: int  # FGR


class GRUFlags(NamedTuple):
    reset_before: int  # Cho et al.'s reset, else torch's ("after")


class RNNFlags(NamedTuple):
    relu: int  # else tanh


Flags = LSTMFlags | GRUFlags | RNNFlags


class ForwardInputs(NamedTuple):
    """The arguments of `lstmlab::fused_layer`, in order. x (T, B, I), h0 (B, P) with
    P = proj_size or H, c0 (B, H), a0 (B, R*H) FGR's gate state, w_hr (P, H) the
    projection; absent ones None. Last, the regularisers' masks (`lstmlab.cells.regularisers`):
    recurrent_mask (B, P) m of (D1), zoneout_h (T, B, P) and zoneout_c (T, B, H, LSTM only)
    d of (Z1); a zoneout mask whose strides are all 0 (evaluation: one value expanded) is
    read as that value, not copied. Then layer normalisation's gains (`lstmlab.cells.layer_norm`),
    all or none: w_ln_ih, w_ln_hh (G*H,), and the LSTM's w_ln_c, b_ln_c (H,)."""

    x: Tensor
    h0: Tensor
    c0: Tensor | None
    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None
    w_ch: Tensor | None
    a0: Tensor | None
    w_gh: Tensor | None
    w_hr: Tensor | None
    lengths: Tensor | None
    cell: int
    flags: list[int]
    save: bool
    recurrent_mask: Tensor | None = None
    zoneout_h: Tensor | None = None
    zoneout_c: Tensor | None = None
    w_ln_ih: Tensor | None = None
    w_ln_hh: Tensor | None = None
    w_ln_c: Tensor | None = None
    b_ln_c: Tensor | None = None


class ForwardResult(NamedTuple):
    """What `lstmlab::fused_layer` returns, in order; absent ones None here (the op
    itself returns an empty tensor in their place, since ops return tensors only).

    y, h_n, c_n (LSTM), a_n (FGR) are the layer's results; the rest is what backward
    needs, present only when saving: hs the state sequence where it differs from y
    (padding), cs the cell states, gates the activations, extra the GRU's
    U_n h + b_hn or r ⊙ h (the RNN's candidate states with zoneout), acts FGR's gate
    states, ms the unprojected outputs m, wx and uh W x and U h before layer normalisation."""

    y: Tensor
    h_n: Tensor
    c_n: Tensor | None
    hs: Tensor | None
    cs: Tensor | None
    gates: Tensor | None
    extra: Tensor | None
    a_n: Tensor | None
    acts: Tensor | None
    ms: Tensor | None
    wx: Tensor | None = None
    uh: Tensor | None = None


class BackwardInputs(NamedTuple):
    """The arguments of `lstmlab::fused_layer_backward`, in order: the gradients of the
    results, the forward's inputs and what it saved (hs: the state sequence, y itself
    without lengths), and the forward's masks."""

    dy: Tensor
    dh_n: Tensor
    dc_n: Tensor | None
    da_n: Tensor | None
    x: Tensor
    h0: Tensor
    c0: Tensor | None
    a0: Tensor | None
    w_ih: Tensor
    w_hh: Tensor
    has_bias: bool
    w_ch: Tensor | None
    w_gh: Tensor | None
    w_hr: Tensor | None
    lengths: Tensor | None
    hs: Tensor
    cs: Tensor | None
    gates: Tensor | None
    extra: Tensor | None
    acts: Tensor | None
    ms: Tensor | None
    cell: int
    flags: list[int]
    need_dx: bool
    recurrent_mask: Tensor | None = None
    zoneout_h: Tensor | None = None
    zoneout_c: Tensor | None = None
    w_ln_ih: Tensor | None = None
    w_ln_hh: Tensor | None = None
    w_ln_c: Tensor | None = None
    b_ln_c: Tensor | None = None
    wx: Tensor | None = None
    uh: Tensor | None = None


class BackwardResult(NamedTuple):
    """The gradients `lstmlab::fused_layer_backward` returns, in order; absent ones None."""

    dx: Tensor | None
    dh0: Tensor
    dc0: Tensor | None
    dw_ih: Tensor
    dw_hh: Tensor
    db_ih: Tensor | None
    db_hh: Tensor | None
    dw_ch: Tensor | None
    da0: Tensor | None
    dw_gh: Tensor | None
    dw_hr: Tensor | None
    dw_ln_ih: Tensor | None = None
    dw_ln_hh: Tensor | None = None
    dw_ln_c: Tensor | None = None
    db_ln_c: Tensor | None = None


def encode(spec: CellSpec) -> tuple[Cell, Flags]:
    """The op's `cell` and flags for a cell spec."""
    if isinstance(spec, LSTMSpec):
        gates, peep = spec.gates, spec.peephole_gates
        block = lambda names, gate: names.index(gate) if gate in names else -1
        return Cell.LSTM, LSTMFlags(
            block(gates, "i"), block(gates, "f"), block(gates, "g"), block(gates, "o"),
            block(peep, "i"), block(peep, "f"), block(peep, "o"),
            int(spec.coupled), int(spec.input_activation == "tanh"), int(spec.output_activation == "tanh"),
            int(spec.gate_recurrence),
        )  # fmt: skip
    if isinstance(spec, GRUSpec):
        return Cell.GRU, GRUFlags(reset_before=int(spec.reset == "before"))
    return Cell.RNN, RNNFlags(relu=int(spec.nonlinearity == "relu"))


def forward_shapes(a: ForwardInputs) -> dict[str, Shape | None]:
    """The shape of each result of `lstmlab::fused_layer` for these arguments, by name; None where absent."""
    T, B = a.x.shape[0], a.x.shape[1]
    P = a.h0.shape[1]  # the size of h
    H = a.c0.shape[1] if a.c0 is not None else P  # the cell's size
    lstm, gru, fgr = a.cell == Cell.LSTM, a.cell == Cell.GRU, a.a0 is not None
    rnn_zoneout = a.cell == Cell.RNN and a.zoneout_h is not None
    save = a.save

    def seq(size: int, present: bool = True) -> Shape | None:
        return (T, B, size) if present else None

    return {
        "y": (T, B, P),
        "h_n": (B, P),
        "c_n": (B, H) if lstm else None,
        "hs": seq(P, save and a.lengths is not None),
        "cs": seq(H, save and lstm),
        "gates": seq(a.w_ih.shape[0], save and (lstm or gru)),
        "extra": seq(H, save and (gru or rnn_zoneout)),
        "a_n": (B, a.a0.shape[1]) if a.a0 is not None else None,
        "acts": seq(a.a0.shape[1] if a.a0 is not None else 0, save and fgr),
        "ms": seq(H, save and a.w_hr is not None),
        "wx": seq(a.w_ih.shape[0], save and a.w_ln_ih is not None),
        "uh": seq(a.w_ih.shape[0], save and a.w_ln_ih is not None),
    }


def backward_shapes(a: BackwardInputs) -> dict[str, Shape | None]:
    """The shape of each result of `lstmlab::fused_layer_backward` for these arguments, by name; None where absent."""

    def like(t: Tensor | None, present: bool = True) -> Shape | None:
        return tuple(t.shape) if t is not None and present else None

    rows = (a.w_ih.shape[0],)
    return {
        "dx": like(a.x, a.need_dx),
        "dh0": like(a.h0),
        "dc0": like(a.c0),
        "dw_ih": like(a.w_ih),
        "dw_hh": like(a.w_hh),
        "db_ih": rows if a.has_bias else None,
        "db_hh": rows if a.has_bias else None,
        "dw_ch": like(a.w_ch),
        "da0": like(a.a0),
        "dw_gh": like(a.w_gh),
        "dw_hr": like(a.w_hr),
        "dw_ln_ih": like(a.w_ln_ih),
        "dw_ln_hh": like(a.w_ln_hh),
        "dw_ln_c": like(a.w_ln_c),
        "db_ln_c": like(a.b_ln_c),
    }


def mismatches(extension: ModuleType) -> list[str]:
    """Where the compiled extension's names differ from these, one line each (none: they agree)."""
    ours = {
        "cell_names": [Cell(k).name.lower() for k in range(len(Cell))],
        "lstm_flag_names": list(LSTMFlags._fields),
        "gru_flag_names": list(GRUFlags._fields),
        "rnn_flag_names": list(RNNFlags._fields),
        "forward_argument_names": list(ForwardInputs._fields),
        "backward_argument_names": list(BackwardInputs._fields),
        "forward_result_names": list(ForwardResult._fields),
        "backward_result_names": list(BackwardResult._fields),
        "layer_weight_names": list(LayerWeights._fields),  # as `infer` takes each layer's weights
    }
    lines = []
    for name, expected in ours.items():
        theirs = getattr(extension, name)() if hasattr(extension, name) else None
        if theirs != expected:
            lines.append(f"{name}: the extension has {theirs}, schema.py {expected}")
    return lines
