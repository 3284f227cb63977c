"""The fused backend: the C++ kernels of fused.cpp, one layer and direction per call."""

from __future__ import annotations

import torch

from lstmlab.backends.base import Layer, LayeredBackend, StackConfig
from lstmlab.backends.fused import loader
from lstmlab.backends.fused.custom_ops import encode, fused_layer
from lstmlab.cells import CellSpec, LayerWeights, LSTMSpec


class FusedBackend(LayeredBackend):
    """CPU, float32 and float64; every cell and flag, full gate recurrence (FGR) and
    the LSTM's projection (proj_size > 0) included.
    """

    name = "fused"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        if x.device.type != "cpu":
            return f"the fused kernels run on the CPU only; got device {x.device}"
        if x.dtype not in (torch.float32, torch.float64):
            return f"the fused kernels compute in float32 or float64 only; got {x.dtype}"
        return self.unavailable()

    def unavailable(self) -> str | None:
        """Why the kernels cannot run on this machine at all (no compiler, ...), or None."""
        return loader.error() or None

    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
    ) -> Layer:
        cell, flags = encode(spec)
        lstm = isinstance(spec, LSTMSpec)
        fgr = lstm and spec.gate_recurrence
        inputs = (x, *state, *(t for t in w if t is not None))
        # inference stores nothing for backward
        save = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
        if lengths is not None:
            lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()
        y, h_n, c_n, *_, a_n, _, _ = fused_layer(
            x,
            state[0],
            state[1] if lstm else None,
            w.w_ih,
            w.w_hh,
            w.b_ih,
            w.b_hh,
            w.w_ch,
            state[2] if fgr else None,
            w.w_gh if fgr else None,
            w.w_hr,
            lengths,
            cell,
            flags,
            save,
        )
        if fgr:
            return y, (h_n, c_n, a_n)
        return y, ((h_n, c_n) if lstm else (h_n,))
