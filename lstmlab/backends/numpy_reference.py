"""The reference backend: the NumPy forward and hand-written BPTT of `lstmlab.reference`
as a torch autograd Function. float64 on the CPU only; slow on purpose.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lstmlab import reference
from lstmlab.backends.base import Layer, LayeredBackend, StackConfig
from lstmlab.cells import CellSpec, LayerWeights
from lstmlab.errors import Unsupported


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().numpy()


class _ReferenceLayer(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, spec: CellSpec, lengths: torch.Tensor | None, n_state: int, x: torch.Tensor, *tensors: torch.Tensor
    ) -> Any:
        state, w = tensors[:n_state], LayerWeights(*tensors[n_state:])
        w_np = LayerWeights(*(_np(t) for t in w))
        lengths_np = None if lengths is None else lengths.numpy()
        y, final, tape = reference.forward(spec, _np(x), tuple(_np(s) for s in state), w_np, lengths_np)
        ctx.spec, ctx.w_np, ctx.tape, ctx.n_state = spec, w_np, tape, n_state
        # The tape and w_np are NumPy views of these tensors: saving them lets autograd refuse a
        # backward after any of them was modified in place, as it does for torch's own ops.
        ctx.save_for_backward(x, *(t for t in tensors if t is not None))
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (y, *final))

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, *dfinal: torch.Tensor) -> Any:
        if torch.is_grad_enabled():  # create_graph=True: the NumPy backward cannot be differentiated
            raise Unsupported(
                "reference", "backend", "computes no gradients of gradients (double backward); use backend='eager'"
            )
        ctx.saved_tensors  # noqa: B018 - raises "modified by an inplace operation" if a view went stale
        dx, dstate, dw = reference.backward(ctx.spec, ctx.w_np, ctx.tape, _np(dy), tuple(_np(d) for d in dfinal))
        as_tensor = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))
        return (None, None, None, as_tensor(dx), *(as_tensor(d) for d in dstate), *(as_tensor(d) for d in dw))


class ReferenceBackend(LayeredBackend):
    name = "reference"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        if x.device.type != "cpu":
            return f"the NumPy reference runs on the CPU only; got device {x.device}"
        if x.dtype != torch.float64:
            return f"the NumPy reference computes in float64 only; got {x.dtype}"
        return None

    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
    ) -> Layer:
        out = _ReferenceLayer.apply(spec, lengths, len(state), x, *state, *w)
        return out[0], tuple(out[1:])
