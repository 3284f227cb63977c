"""The fused kernels as torch.library custom ops, with fake (meta) kernels and autograd.

`lstmlab::fused_layer` runs one layer in one direction; `lstmlab::fused_layer_backward`
is its hand-written backward. torch.compile and torch.export see each as one opaque
op whose output shapes the fake kernels give. Registering needs no compiler: the
extension is built on the first real call.

The cell is passed as an int (`LSTM`, `GRU`, `RNN`) and a list of int flags
(`encode`), since custom ops take tensors and plain scalars only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lstmlab.backends.fused import loader
from lstmlab.cells import CellSpec, GRUSpec, LSTMSpec

LSTM, GRU, RNN = 0, 1, 2


def encode(spec: CellSpec) -> tuple[int, list[int]]:
    """(cell, flags) as fused.cpp reads them: see its LSTMFlags, and the GRU and RNN sections."""
    if isinstance(spec, LSTMSpec):

        def index(names: tuple[str, ...], gate: str) -> int:
            return names.index(gate) if gate in names else -1

        gates, peep = spec.gates, spec.peephole_gates
        flags = [index(gates, gate) for gate in ("i", "f", "g", "o")]
        flags += [index(peep, gate) for gate in ("i", "f", "o")]
        flags += [int(spec.coupled), int(spec.input_activation == "tanh"), int(spec.output_activation == "tanh")]
        flags += [int(spec.gate_recurrence)]
        return LSTM, flags
    if isinstance(spec, GRUSpec):
        return GRU, [int(spec.reset == "before")]
    return RNN, [int(spec.nonlinearity == "relu")]


def _fresh(ts: Any, like: Tensor) -> tuple[Tensor, ...]:
    # absent results come back as empty tensors; give each its own so no two outputs alias
    return tuple(t if t.numel() else like.new_empty(0) for t in ts)


@torch.library.custom_op("lstmlab::fused_layer", mutates_args=(), device_types="cpu")
def fused_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ch: Tensor | None,
    a0: Tensor | None,
    w_gh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    cell: int,
    flags: list[int],
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One layer, one direction: (y, h_n, c_n, hs, cs, gates, extra, a_n, acts, ms).

    x (T, B, I), h0 (B, P) with P = proj_size or H, c0 (B, H), a0 (B, n*H) FGR's
    gate state, w_hr (P, H) the projection. hs, cs, gates, extra, acts, ms are what
    backward needs, empty unless `save`: hs the state sequence where it differs from
    y (padding), cs the cell states, gates the activations, extra the GRU's
    U_n h + b_hn or r ⊙ h, acts FGR's gate states, ms the unprojected outputs m.
    c_n is empty for the GRU and RNN, a_n without FGR.
    """
    out = loader.load().forward(cell, flags, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ch, a0, w_gh, w_hr, lengths, save)
    return _fresh(out, x)  # type: ignore[return-value]


@fused_layer.register_fake
def _fused_layer_fake(
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_ch: Tensor | None,
    a0: Tensor | None,
    w_gh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    cell: int,
    flags: list[int],
    save: bool,
) -> tuple[Tensor, ...]:
    T, B = x.shape[0], x.shape[1]
    P = h0.shape[1]  # the size of h
    H = c0.shape[1] if c0 is not None else P  # the cell's size
    seq = lambda size: x.new_empty(T, B, size)  # noqa: E731
    none = lambda: x.new_empty(0)  # noqa: E731
    return (
        seq(P),
        x.new_empty(B, P),
        x.new_empty(B, H) if cell == LSTM else none(),
        seq(P) if save and lengths is not None else none(),
        seq(H) if save and cell == LSTM else none(),
        seq(w_ih.shape[0]) if save and cell != RNN else none(),
        seq(H) if save and cell == GRU else none(),
        torch.empty_like(a0) if a0 is not None else none(),
        seq(a0.shape[1]) if save and a0 is not None else none(),
        seq(H) if save and w_hr is not None else none(),
    )


@torch.library.custom_op("lstmlab::fused_layer_backward", mutates_args=(), device_types="cpu")
def fused_layer_backward(
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor | None,
    da_n: Tensor | None,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    a0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    has_bias: bool,
    w_ch: Tensor | None,
    w_gh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    hs: Tensor,
    cs: Tensor | None,
    gates: Tensor | None,
    extra: Tensor | None,
    acts: Tensor | None,
    ms: Tensor | None,
    cell: int,
    flags: list[int],
    need_dx: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_ch, da0, dw_gh, dw_hr); absent ones empty."""
    args = (dy, dh_n, dc_n, da_n, x, h0, c0, a0, w_ih, w_hh, has_bias, w_ch, w_gh, w_hr, lengths)
    out = loader.load().backward(cell, flags, *args, hs, cs, gates, extra, acts, ms, need_dx)
    return _fresh(out, x)  # type: ignore[return-value]


@fused_layer_backward.register_fake
def _fused_layer_backward_fake(
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Tensor | None,
    da_n: Tensor | None,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    a0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    has_bias: bool,
    w_ch: Tensor | None,
    w_gh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    hs: Tensor,
    cs: Tensor | None,
    gates: Tensor | None,
    extra: Tensor | None,
    acts: Tensor | None,
    ms: Tensor | None,
    cell: int,
    flags: list[int],
    need_dx: bool,
) -> tuple[Tensor, ...]:
    none = lambda: x.new_empty(0)  # noqa: E731
    rows = w_ih.shape[0]
    return (
        torch.empty_like(x) if need_dx else none(),
        torch.empty_like(h0),
        torch.empty_like(c0) if c0 is not None else none(),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        x.new_empty(rows) if has_bias else none(),
        x.new_empty(rows) if has_bias else none(),
        torch.empty_like(w_ch) if w_ch is not None else none(),
        torch.empty_like(a0) if a0 is not None else none(),
        torch.empty_like(w_gh) if w_gh is not None else none(),
        torch.empty_like(w_hr) if w_hr is not None else none(),
    )


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ch, a0, w_gh, w_hr, lengths, cell, flags, save = inputs
    y, _, _, hs, cs, gates, extra, _, acts, ms = output
    if not save:
        ctx.unsaved = True
        return
    ctx.unsaved = False
    ctx.cell, ctx.flags = cell, flags
    ctx.has_bias, ctx.has_c0, ctx.has_w_ch = b_ih is not None, c0 is not None, w_ch is not None
    ctx.fgr, ctx.proj = a0 is not None, w_hr is not None
    ctx.padded = lengths is not None
    ctx.mark_non_differentiable(hs, cs, gates, extra, acts, ms)
    ctx.set_materialize_grads(False)
    saved_y = hs if ctx.padded else y
    ctx.save_for_backward(x, h0, c0, a0, w_ih, w_hh, w_ch, w_gh, w_hr, lengths, saved_y, cs, gates, extra, acts, ms)


def _backward(ctx: Any, dy: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None, *rest: Tensor | None) -> tuple:
    if ctx.unsaved:
        raise RuntimeError(
            "lstmlab fused: this forward ran without saving for backward (inference mode: "
            "grad mode off or no input requiring grad)"
        )
    x, h0, c0, a0, w_ih, w_hh, w_ch, w_gh, w_hr, lengths, hs, cs, gates, extra, acts, ms = ctx.saved_tensors
    lstm = ctx.cell == LSTM
    da_n = rest[4]  # after the gradients of hs, cs, gates, extra
    dy = dy if dy is not None else hs.new_zeros(hs.shape)
    dh_n = dh_n if dh_n is not None else h0.new_zeros(h0.shape)
    if lstm and dc_n is None:
        dc_n = c0.new_zeros(c0.shape)
    if not lstm:
        dc_n = None
    if ctx.fgr and da_n is None:
        da_n = a0.new_zeros(a0.shape)
    if not ctx.fgr:
        da_n = None
    empty = lambda t: t if t is not None and t.numel() else None  # noqa: E731
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_ch, da0, dw_gh, dw_hr = fused_layer_backward(
        dy,
        dh_n,
        dc_n,
        da_n,
        x,
        h0,
        c0,
        a0,
        w_ih,
        w_hh,
        ctx.has_bias,
        w_ch,
        w_gh,
        w_hr,
        lengths,
        hs,
        empty(cs),
        empty(gates),
        empty(extra),
        empty(acts),
        empty(ms),
        ctx.cell,
        ctx.flags,
        ctx.needs_input_grad[0],
    )
    return (
        dx if ctx.needs_input_grad[0] else None,
        dh0,
        dc0 if ctx.has_c0 else None,
        dw_ih,
        dw_hh,
        db_ih if ctx.has_bias else None,
        db_hh if ctx.has_bias else None,
        dw_ch if ctx.has_w_ch else None,
        da0 if ctx.fgr else None,
        dw_gh if ctx.fgr else None,
        dw_hr if ctx.proj else None,
        None,
        None,
        None,
        None,
    )


fused_layer.register_autograd(_backward, setup_context=_setup_context)
