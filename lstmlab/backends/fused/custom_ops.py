"""The fused kernels as torch.library custom ops, with fake (meta) kernels and autograd.

`lstmlab::fused_layer` runs one layer in one direction; `lstmlab::fused_layer_backward`
is its hand-written backward. torch.compile and torch.export see each as one opaque
op whose output shapes the fake kernels give. Registering needs no compiler: the
extension is built on the first real call. Arguments and results are named in
`schema`; call `layer` and `layer_backward` for the results as NamedTuples.

An op returns tensors only, so an absent result travels as an empty tensor of its
own (made by the extension); `schema.forward_shapes` and `schema.backward_shapes`
say which results are absent (an empty batch gives empty results that are present).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lstmlab.backends.fused import loader
from lstmlab.backends.fused.schema import (
    BackwardInputs,
    BackwardResult,
    Cell,
    ForwardInputs,
    ForwardResult,
    backward_shapes,
    forward_shapes,
)

DOUBLE_BACKWARD = (
    "lstmlab fused: double backward (gradients of gradients, e.g. torch.autograd.grad with "
    'create_graph=True and a second backward) is not implemented by the fused kernels; use backend="eager"'
)


def _named(result: type[Any], out: tuple[Tensor, ...], shapes: dict[str, Any]) -> Any:
    """The op's results as the NamedTuple `result`, None where `shapes` says absent."""
    return result(*(None if shape is None else t for shape, t in zip(shapes.values(), out, strict=True)))


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
    recurrent_mask: Tensor | None = None,
    zoneout_h: Tensor | None = None,
    zoneout_c: Tensor | None = None,
    w_ln_ih: Tensor | None = None,
    w_ln_hh: Tensor | None = None,
    w_ln_c: Tensor | None = None,
    b_ln_c: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One layer, one direction: the tensors of a `schema.ForwardResult`; see `schema.ForwardInputs`."""
    out = loader.load().forward(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ch, a0, w_gh, w_hr, lengths, cell, flags, save,
        recurrent_mask, zoneout_h, zoneout_c, w_ln_ih, w_ln_hh, w_ln_c, b_ln_c,
    )  # fmt: skip
    return tuple(out)  # type: ignore[return-value]


@fused_layer.register_fake
def _fused_layer_fake(*inputs: Any) -> tuple[Tensor, ...]:
    args = ForwardInputs(*inputs)
    return tuple(args.x.new_empty(shape if shape is not None else 0) for shape in forward_shapes(args).values())


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
    recurrent_mask: Tensor | None = None,
    zoneout_h: Tensor | None = None,
    zoneout_c: Tensor | None = None,
    w_ln_ih: Tensor | None = None,
    w_ln_hh: Tensor | None = None,
    w_ln_c: Tensor | None = None,
    b_ln_c: Tensor | None = None,
    wx: Tensor | None = None,
    uh: Tensor | None = None,
) -> tuple[
    Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor
]:
    """The gradients of `fused_layer`: the tensors of a `schema.BackwardResult`; see `schema.BackwardInputs`."""
    out = loader.load().backward(
        dy, dh_n, dc_n, da_n, x, h0, c0, a0, w_ih, w_hh, has_bias, w_ch, w_gh, w_hr, lengths,
        hs, cs, gates, extra, acts, ms, cell, flags, need_dx, recurrent_mask, zoneout_h, zoneout_c,
        w_ln_ih, w_ln_hh, w_ln_c, b_ln_c, wx, uh,
    )  # fmt: skip
    return tuple(out)  # type: ignore[return-value]


@fused_layer_backward.register_fake
def _fused_layer_backward_fake(*inputs: Any) -> tuple[Tensor, ...]:
    args = BackwardInputs(*inputs)
    return tuple(args.x.new_empty(shape if shape is not None else 0) for shape in backward_shapes(args).values())


def layer(args: ForwardInputs) -> ForwardResult:
    """`lstmlab::fused_layer` with named arguments and results.

    Inference (nothing saved) on plain tensors, outside tracing and torch's function and
    dispatch modes, calls the kernel straight, past the op's dispatch: the same kernel
    with the same arguments, less Python per call."""
    out = _kernel(args) if _straight_to_kernel(args) else fused_layer(*args)
    return _named(ForwardResult, out, forward_shapes(args))


def _kernel(args: ForwardInputs) -> tuple[Tensor, ...]:
    return tuple(loader.load().forward(*args))


def _straight_to_kernel(args: ForwardInputs) -> bool:
    """Whether `layer` may skip the op's dispatch: nothing is saved, so the op's autograd
    has nothing to record, and `may_skip_dispatch`."""
    return not args.save and may_skip_dispatch(args.x)


def may_skip_dispatch(x: Tensor) -> bool:
    """Whether a call on input x may go straight to the extension: x is a plain tensor and
    nobody (torch.compile, export, a torch function or dispatch mode) watches for the op."""
    return (
        type(x) is Tensor
        and not torch.compiler.is_compiling()
        and torch._C._len_torch_dispatch_stack() == 0
        and not torch._C._is_torch_function_mode_enabled()
    )


def layer_backward(args: BackwardInputs) -> BackwardResult:
    """`lstmlab::fused_layer_backward` with named arguments and results."""
    if torch.is_grad_enabled():  # create_graph=True: through its autograd formula, which refuses double backward
        out = fused_layer_backward(*args)
    else:  # an ordinary backward: straight to the kernel, past the autograd formula's bookkeeping
        with torch._C._AutoDispatchBelowAutograd():
            out = fused_layer_backward(*args)
    return _named(BackwardResult, out, backward_shapes(args))


# -- autograd ----------------------------------------------------------------------


# the tensors of BackwardInputs that forward saves (None where absent)
_SAVED = (
    "x", "h0", "c0", "a0", "w_ih", "w_hh", "w_ch", "w_gh", "w_hr", "lengths", "hs", "cs", "gates", "extra", "acts", "ms",
    "recurrent_mask", "zoneout_h", "zoneout_c", "w_ln_ih", "w_ln_hh", "w_ln_c", "b_ln_c", "wx", "uh",
)  # fmt: skip


def _setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
    args = ForwardInputs(*inputs)
    ctx.save = args.save
    if not args.save:
        return
    op_out = ForwardResult(*output)  # absent results as the op's empty tensors
    ctx.mark_non_differentiable(op_out.hs, op_out.cs, op_out.gates, op_out.extra, op_out.acts, op_out.ms, op_out.wx, op_out.uh)
    ctx.set_materialize_grads(False)
    out: ForwardResult = _named(ForwardResult, output, forward_shapes(args))
    ctx.cell, ctx.flags, ctx.has_bias = args.cell, args.flags, args.b_ih is not None
    saved = {
        "x": args.x, "h0": args.h0, "c0": args.c0, "a0": args.a0, "w_ih": args.w_ih, "w_hh": args.w_hh,
        "w_ch": args.w_ch, "w_gh": args.w_gh, "w_hr": args.w_hr, "lengths": args.lengths,
        "hs": out.y if out.hs is None else out.hs,  # the state sequence: y itself unless padded
        "cs": out.cs, "gates": out.gates, "extra": out.extra, "acts": out.acts, "ms": out.ms,
        "recurrent_mask": args.recurrent_mask, "zoneout_h": args.zoneout_h, "zoneout_c": args.zoneout_c,
        "w_ln_ih": args.w_ln_ih, "w_ln_hh": args.w_ln_hh, "w_ln_c": args.w_ln_c, "b_ln_c": args.b_ln_c,
        "wx": out.wx, "uh": out.uh,
    }  # fmt: skip
    ctx.save_for_backward(*(saved[name] for name in _SAVED))


def _backward(ctx: Any, *grads: Tensor | None) -> tuple:
    if not ctx.save:
        raise RuntimeError(
            "lstmlab fused: this forward ran without saving for backward (inference mode: "
            "grad mode off or no input requiring grad)"
        )
    saved = dict(zip(_SAVED, ctx.saved_tensors, strict=True))
    g = ForwardResult(*grads)  # None where no gradient flows
    zeros = lambda t: None if t is None else torch.zeros_like(t)
    lstm, fgr = ctx.cell == Cell.LSTM, saved["a0"] is not None
    d = layer_backward(
        BackwardInputs(
            dy=zeros(saved["hs"]) if g.y is None else g.y,
            dh_n=zeros(saved["h0"]) if g.h_n is None else g.h_n,
            dc_n=(zeros(saved["c0"]) if g.c_n is None else g.c_n) if lstm else None,
            da_n=(zeros(saved["a0"]) if g.a_n is None else g.a_n) if fgr else None,
            **saved,
            has_bias=ctx.has_bias,
            cell=ctx.cell,
            flags=ctx.flags,
            need_dx=ctx.needs_input_grad[0],
        )
    )
    grads_of_inputs = ForwardInputs(
        x=d.dx, h0=d.dh0, c0=d.dc0, w_ih=d.dw_ih, w_hh=d.dw_hh, b_ih=d.db_ih, b_hh=d.db_hh, w_ch=d.dw_ch,
        a0=d.da0, w_gh=d.dw_gh, w_hr=d.dw_hr, lengths=None, cell=None, flags=None, save=None,
        w_ln_ih=d.dw_ln_ih, w_ln_hh=d.dw_ln_hh, w_ln_c=d.dw_ln_c, b_ln_c=d.db_ln_c,
    )  # fmt: skip
    return tuple(grads_of_inputs)


fused_layer.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx: Any, *grads: Tensor | None) -> tuple:
    raise RuntimeError(DOUBLE_BACKWARD)


def _nothing_to_save(ctx: Any, inputs: tuple, output: tuple) -> None:
    pass


fused_layer_backward.register_autograd(_no_double_backward, setup_context=_nothing_to_save)
