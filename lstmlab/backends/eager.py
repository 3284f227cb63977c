"""The eager backend: the reference unroll run with torch ops under autograd.

Any device, any dtype, every cell and flag; the readable fallback. One step (T = 1,
no lengths) skips the unroll's bookkeeping and calls the cell's `step` once: at small
sizes a step costs what its few dozen torch ops cost, which is less than any sequence
kernel's call (see `lstmlab.backends.auto_order`).
"""

from __future__ import annotations

import torch

from lstmlab.backends.base import Layer, LayeredBackend, StackConfig, step_mask
from lstmlab.cells import CellSpec, LayerWeights, family
from lstmlab.cells.array_ops import torch_ops
from lstmlab.cells.layer_norm import input_projection
from lstmlab.cells.regularisers import LayerMasks
from lstmlab.reference import unroll

_TORCH_OPS = torch_ops()


class EagerBackend(LayeredBackend):
    name = "eager"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        return None

    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
        masks: LayerMasks | None = None,
    ) -> Layer:
        if x.shape[0] == 1 and lengths is None and masks is None:
            final = _one_step(spec, x[0], state, w)
            return final[0].unsqueeze(0).clone(), final  # y a tensor of its own, as at T > 1, not a view of h
        keep = step_mask(lengths, x.shape[0], x)
        y, final, _, _ = unroll(spec, _TORCH_OPS, x, state, w, keep, masks=masks)
        return y, final

    def step(
        self,
        config: StackConfig,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        training: bool,
    ) -> tuple[torch.Tensor, ...]:
        return _one_step(config.spec, x, state, w)


def _one_step(spec: CellSpec, x: torch.Tensor, state: tuple[torch.Tensor, ...], w: LayerWeights) -> tuple[torch.Tensor, ...]:
    """`unroll` at T = 1 on x (B, I): the input product and one `step` of the cell; the new state."""
    if w.w_ln_ih is not None:  # (N1) of lstmlab.cells.layer_norm
        zx, _ = input_projection(_TORCH_OPS, x, w)
    else:
        zx = x @ w.w_ih.T if w.b_ih is None else torch.addmm(w.b_ih, x, w.w_ih.T)
    final, _, _ = family(spec).step(spec, _TORCH_OPS, zx, state, w)
    return final
