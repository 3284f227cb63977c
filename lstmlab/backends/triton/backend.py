"""The Triton backend: one layer in one direction per call, as a torch autograd
Function whose backward is written by hand.

Forward: the input projection W x + b_ih of all steps is one matrix product (with
layer normalisation, (N1) after it, in torch ops); the cell family's loop
(`lstm_kernels`, `gru_kernels`, `rnn_kernels`) runs, per step, the recurrent product
and one fused Triton kernel for the pointwise work. Backward:
the family's loop runs, per step, the fused pointwise backward kernel and the
recurrent products; the gradients of x, W_ih and b_ih are large products after it.

The loops launch the kernels from Python (one or two kernels and one to three matrix
products per step). On a GPU each loop is recorded in a CUDA graph the second time it
runs with a signature and replayed from then on (`graphs`), which removes most of the
launches' cost; a persistent kernel that keeps the recurrent weights on chip would
remove the rest.

Importing this module does not import triton: the kernels load on first use.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from lstmlab.backends.base import Layer, LayeredBackend, StackConfig, regularisers_missing, rows
from lstmlab.backends.triton.graphs import run_loop
from lstmlab.backends.triton.layer_norm import layer_norm_affine, layer_norm_affine_backward, normalized
from lstmlab.cells import CellSpec, GRUSpec, LayerWeights, LSTMSpec
from lstmlab.cells.regularisers import LayerMasks

INSTALL = "pip install 'triton>=3.0' (or lstmlab's extra: pip install 'lstmlab[gpu]')"
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.cache
def import_error() -> str | None:
    """Why triton cannot be imported here, or None when it can."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a missing package, or one built for another platform
        return f"triton cannot be imported ({type(exc).__name__}: {exc}); {INSTALL}"
    return None


def kernels(spec: CellSpec) -> ModuleType:
    """The module holding the kernels and time loops of spec's cell family."""
    name = "lstm" if isinstance(spec, LSTMSpec) else "gru" if isinstance(spec, GRUSpec) else "rnn"
    return importlib.import_module(f"lstmlab.backends.triton.{name}_kernels")


def _on_device(x: Tensor) -> contextlib.AbstractContextManager:
    # Triton launches on the current CUDA device
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class _TritonLayer(torch.autograd.Function):
    """(x, *state, *weights) -> (y, *final state) for one layer in one direction; `masks`
    (zoneout, recurrent dropout) are constants of the call, as `lengths`."""

    @staticmethod
    def forward(
        ctx: Any,
        spec: CellSpec,
        lengths: Tensor | None,
        masks: LayerMasks,
        save: bool,
        n_state: int,
        x: Tensor,
        *tensors: Tensor,
    ) -> tuple[Tensor, ...]:
        state, w = tensors[:n_state], LayerWeights(*tensors[n_state:])
        T, B = x.shape[0], x.shape[1]
        wx = None
        with _on_device(x):
            if w.w_ln_ih is None:
                zx = torch.addmm(w.b_ih, rows(x), w.w_ih.t()) if w.b_ih is not None else rows(x) @ w.w_ih.t()
            else:  # (N1)
                wx = rows(x) @ w.w_ih.t()
                zx = layer_norm_affine(wx, w.w_ln_ih, w.b_ih)
            y, final, tape = run_loop(kernels(spec).forward, x.device, spec, zx.view(T, B, -1), state, w, lengths, masks, save)
        ctx.spec, ctx.lengths, ctx.masks, ctx.taped = spec, lengths, masks, save
        if save:
            ctx.tape_keys = tuple(tape)
            ctx.save_for_backward(x, wx, *w, *tape.values())
        return (y, *final)

    @staticmethod
    def backward(ctx: Any, dy: Tensor, *dfinal: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.taped:
            raise RuntimeError(
                "lstmlab triton: this forward ran without saving for backward (grad mode off or no input requiring grad)"
            )
        x, wx, *rest = ctx.saved_tensors
        w = LayerWeights(*rest[: len(LayerWeights._fields)])
        tape = dict(zip(ctx.tape_keys, rest[len(LayerWeights._fields) :]))
        with _on_device(x):
            loop = kernels(ctx.spec).backward
            dzx, dstate, grads = run_loop(loop, x.device, ctx.spec, w, ctx.lengths, ctx.masks, tape, dy, dfinal)
            grads["b_ih"] = dzx.float().sum((0, 1)) if w.b_ih is not None else None
            dwx = rows(dzx)
            if wx is not None:  # (N1)
                grads["w_ln_ih"] = (dwx.float() * normalized(wx)[0]).sum(0)
                dwx = layer_norm_affine_backward(wx, dwx, w.w_ln_ih).to(x.dtype)
            dx = (dwx @ w.w_ih).view(x.shape) if ctx.needs_input_grad[5] else None
            grads["w_ih"] = dwx.t() @ rows(x)
        dweights = [None if t is None else grads[name].to(t.dtype) for name, t in zip(LayerWeights._fields, w)]
        dstate = tuple(d.to(s.dtype) for d, s in zip(dstate, dfinal))
        return (None, None, None, None, None, dx, *dstate, *dweights)


class TritonBackend(LayeredBackend):
    """CUDA (or the CPU under TRITON_INTERPRET=1); float32, float16 and bfloat16; every
    cell and flag, and the regularisers inside the recurrence (zoneout, recurrent dropout,
    layer normalisation). The matrix products run in the input's dtype (torch's, which on CUDA
    accumulate in float32); the pointwise work, the LSTM's cell state, the saved gate
    activations and the carried gradients are float32."""

    name = "triton"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        error = import_error()
        if error is not None:
            return error
        from lstmlab.backends.triton.launch import interpreting

        interpret = interpreting()
        if x.device.type == "cpu" and not interpret:
            return (
                "the Triton kernels run on CUDA devices, or on the CPU under Triton's interpreter "
                "(set TRITON_INTERPRET=1); got device cpu"
            )
        if x.device.type not in ("cpu", "cuda"):
            return f"the Triton kernels run on CUDA devices; got device {x.device}"
        if x.dtype not in DTYPES:
            return f"the Triton kernels compute in float32, float16 or bfloat16; got {x.dtype}"
        if x.dtype == torch.bfloat16 and interpret:
            return (
                "Triton's interpreter (TRITON_INTERPRET=1) computes bfloat16 wrongly "
                "(triton-lang/triton issues #4972 and #11584); bfloat16 runs compiled, on CUDA"
            )
        return regularisers_missing(config, "the Triton kernels", ("zoneout", "recurrent_dropout", "layer_norm"))

    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
        masks: LayerMasks | None = None,
    ) -> Layer:
        # inference stores nothing for backward
        save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *state, *w))
        if lengths is not None:  # on the device before the loop: a recorded loop cannot copy from the host
            lengths = lengths.to(device=x.device, dtype=torch.int32)
        out = _TritonLayer.apply(spec, lengths, masks or LayerMasks(), save, len(state), x, *state, *w)
        return out[0], tuple(out[1:])
