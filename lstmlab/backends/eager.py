"""The eager backend: the reference unroll run with torch ops under autograd.

Any device, any dtype, every cell and flag; the readable fallback.
"""

from __future__ import annotations

import torch

from lstmlab.backends.base import Layer, LayeredBackend, StackConfig, step_mask
from lstmlab.cells import CellSpec, LayerWeights
from lstmlab.cells.array_ops import torch_ops
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
    ) -> Layer:
        keep = step_mask(lengths, x.shape[0], x)
        y, final, _ = unroll(spec, _TORCH_OPS, x, state, w, keep)
        return y, final
