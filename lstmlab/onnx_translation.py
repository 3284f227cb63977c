"""The ONNX translation of the fused op, for `torch.onnx.export` (the dynamo exporter of torch 2.5+).

`torch.onnx.export` sees an lstmlab module on the fused backend as calls of the custom
op `lstmlab::fused_layer` (one layer, one direction), which it cannot translate by
itself. `onnx_translation_table()` maps that op to ONNX's `LSTM`, `GRU` or `RNN`
operator (weights reordered in the graph, as `lstmlab.onnx_layout` lays them out):

    torch.onnx.export(model, (x,), "model.onnx", dynamo=True,
                      custom_translation_table=lstmlab.onnx_translation_table(),
                      dynamic_shapes=({0: torch.export.Dim("T"), 1: torch.export.Dim("B")},))

The cells ONNX's operators cannot compute (NIG, NFG, NOG, FGR, proj_size) are refused
with `Unsupported` naming the missing feature. The reverse direction of a bidirectional
layer and the stacking of layers are exported as torch runs them (flips, concatenations).
Needs onnxscript (installed with torch's ONNX exporter's dependencies: `pip install onnx onnxscript`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from lstmlab.backends.fused.schema import Cell, GRUFlags, LSTMFlags, RNNFlags, encode
from lstmlab.cells import CellSpec, GRUSpec, LSTMSpec, RNNSpec
from lstmlab.errors import Unsupported
from lstmlab.onnx_layout import OPSET, onnx_cell

_OWNER = "torch.onnx.export"


def onnx_translation_table() -> dict[Any, Callable[..., Any]]:
    """`custom_translation_table` for `torch.onnx.export`: `lstmlab::fused_layer` -> ONNX's recurrent operators.

    Example:
        >>> lstm = lstmlab.LSTM(8, 16, variant="CIFG", backend="fused").eval()
        >>> program = torch.onnx.export(lstm, (torch.randn(5, 3, 8),), dynamo=True,
        ...                             custom_translation_table=lstmlab.onnx_translation_table())
    """
    try:
        importlib.import_module("onnxscript")
    except ImportError:
        raise Unsupported("onnx_translation_table", "", "needs onnxscript; install it with pip install onnx onnxscript") from None
    from lstmlab.backends.fused import custom_ops  # noqa: F401 - registers the op

    return {torch.ops.lstmlab.fused_layer.default: _fused_layer}


def decode(cell: int, flags: list[int]) -> CellSpec:
    """The cell spec of the fused op's `cell` and `flags` (the inverse of `schema.encode`)."""
    if cell == Cell.GRU:
        return GRUSpec(reset="before" if GRUFlags(*flags).reset_before else "after")
    if cell == Cell.RNN:
        return RNNSpec(nonlinearity="relu" if RNNFlags(*flags).relu else "tanh")
    f = LSTMFlags(*flags)
    spec = LSTMSpec(
        peephole=max(f.peephole_i, f.peephole_f, f.peephole_o) >= 0,
        coupled=bool(f.coupled),
        input_gate=f.gate_i >= 0,
        forget_gate=f.gate_f >= 0 or bool(f.coupled),
        output_gate=f.gate_o >= 0,
        input_activation="tanh" if f.tanh_g else "identity",
        output_activation="tanh" if f.tanh_h else "identity",
        gate_recurrence=bool(f.gate_recurrence),
    )
    assert encode(spec) == (cell, f), (cell, flags)
    return spec


def _fused_layer(
    x: Any,
    h0: Any,
    c0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any = None,
    b_hh: Any = None,
    w_ch: Any = None,
    a0: Any = None,
    w_gh: Any = None,
    w_hr: Any = None,
    lengths: Any = None,
    cell: int = 0,
    flags: list[int] | None = None,
    save: bool = False,
) -> tuple[Any, ...]:
    """`lstmlab::fused_layer` as ONNX nodes (traced by onnxscript): y, h_n, c_n and empty placeholders
    for the results only backward reads (nothing in an exported graph uses them)."""
    from onnxscript import opset17 as op  # the opset of `lstmlab.onnx_layout`

    assert OPSET == 17
    spec = decode(cell, list(flags or []))
    onnx = onnx_cell(spec, proj_size=1 if w_hr is not None else 0, owner=_OWNER)
    if lengths is not None:
        raise Unsupported(_OWNER, "input", "must not be a PackedSequence: export padded sequences of one length")
    H = int(h0.shape[1])

    def ints(*values: int) -> Any:
        return op.Constant(value_ints=list(values))

    def blocks(t: Any, order: tuple[int | None, ...]) -> Any:
        parts = [op.Slice(t, ints(k * H), ints((k + 1) * H), ints(0)) for k in order if k is not None]
        zero = op.Mul(parts[0], op.Constant(value_float=0.0))
        return op.Concat(*(parts.pop(0) if k is not None else zero for k in order), axis=0)

    def directions(t: Any) -> Any:  # one direction: the operator's leading axis of size 1
        return op.Unsqueeze(t, ints(0))

    W, R = directions(blocks(w_ih, onnx.blocks)), directions(blocks(w_hh, onnx.blocks))
    inputs = [x, W, R, "", "", directions(h0)]
    if b_ih is not None:
        inputs[3] = directions(op.Concat(blocks(b_ih, onnx.blocks), blocks(b_hh, onnx.blocks), axis=0))
    lstm = onnx.op_type == "LSTM"
    if lstm:
        inputs.append(directions(c0))
        if onnx.peepholes:
            if b_ih is None:
                inputs[3] = op.ConstantOfShape(ints(1, 2 * len(onnx.blocks) * H))
            inputs.append(directions(blocks(w_ch, onnx.peepholes)))
    node = getattr(op, onnx.op_type)
    outputs = node(*(None if name == "" else name for name in inputs), **onnx.node_attributes(1, H))
    y = op.Squeeze(outputs[0], ints(1))
    h_n = op.Squeeze(outputs[1], ints(0))
    c_n = op.Squeeze(outputs[2], ints(0)) if lstm else None
    empty = op.Constant(value=_empty())
    return (y, h_n, c_n if c_n is not None else empty, *([empty] * 7))


def _empty() -> Any:
    import onnx

    return onnx.helper.make_tensor("empty", onnx.TensorProto.FLOAT, [0], [])


__all__ = ["decode", "onnx_translation_table"]
