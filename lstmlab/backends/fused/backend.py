"""The fused backend: the C++ kernels (csrc/), one layer and direction per call; inference
of a whole stack, or of one step, in one call."""

from __future__ import annotations

from functools import lru_cache

import torch

from lstmlab.backends.base import Layer, LayeredBackend, StackConfig, regularisers_missing
from lstmlab.backends.fused import custom_ops, loader
from lstmlab.backends.fused.schema import Cell, ForwardInputs, encode
from lstmlab.cells import CellSpec, LayerWeights
from lstmlab.cells.regularisers import LayerMasks

# the regularisers inside the recurrence that the kernels implement (StackConfig.in_recurrence)
SUPPORTED_REGULARISERS = ("zoneout", "recurrent_dropout", "layer_norm")


class FusedBackend(LayeredBackend):
    """CPU, float32 and float64; every cell and flag, full gate recurrence (FGR) and
    the LSTM's projection (proj_size > 0) included; zoneout, recurrent dropout and layer
    normalisation in the kernels (weight dropout needs nothing of a backend).
    """

    name = "fused"

    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        if x.device.type != "cpu":
            return f"the fused kernels run on the CPU only; got device {x.device}"
        if x.dtype not in (torch.float32, torch.float64):
            return f"the fused kernels compute in float32 or float64 only; got {x.dtype}"
        return regularisers_missing(config, "the fused kernels", SUPPORTED_REGULARISERS) or self.unavailable()

    def unavailable(self) -> str | None:
        """Why the kernels cannot run on this machine at all (no compiler, ...), or None."""
        return loader.error() or None

    def run(
        self,
        config: StackConfig,
        x: torch.Tensor,
        lengths: torch.Tensor | None,
        hx: tuple[torch.Tensor, ...],
        weights: list[LayerWeights],
        training: bool,
        masks: list[LayerMasks] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Inference of a stack running forward in time is one call of the extension's `infer`
        (every layer, past the op's dispatch); the rest goes layer by layer through the op."""
        if lengths is None and masks is None and not config.bidirectional and (not training or config.dropout == 0):
            if _inference(x, hx, weights):
                cell, flags = _op_codes(config.spec)
                out = loader.load().infer(x, hx, [t for w in weights for t in w], cell, flags)
                return out[0], tuple(out[1:])
        return super().run(config, x, lengths, hx, weights, training, masks)

    def step(
        self,
        config: StackConfig,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        training: bool,
    ) -> tuple[torch.Tensor, ...]:
        """Inference: one call of the extension's `infer_step`; with gradients, the op on a sequence of one step."""
        if _inference(x, state, (w,)):
            cell, flags = _op_codes(config.spec)
            return tuple(loader.load().infer_step(x, state, w, cell, flags))
        return super().step(config, x, state, w, training)

    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
        masks: LayerMasks | None = None,
    ) -> Layer:
        cell, flags = encode(spec)
        lstm = cell == Cell.LSTM
        fgr = lstm and flags.gate_recurrence
        inputs = (x, *state, *(t for t in w if t is not None))
        # inference stores nothing for backward
        save = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
        if lengths is not None:
            lengths = lengths.to(device="cpu", dtype=torch.int64).contiguous()
        recurrent = zoneout_h = zoneout_c = None
        if masks is not None:
            recurrent = masks.recurrent
            zoneout_h = masks.zoneout[0] if masks.zoneout else None
            zoneout_c = masks.zoneout[1] if lstm and masks.zoneout else None
        args = ForwardInputs(
            x=x, h0=state[0], c0=state[1] if lstm else None,
            w_ih=w.w_ih, w_hh=w.w_hh, b_ih=w.b_ih, b_hh=w.b_hh, w_ch=w.w_ch,
            a0=state[2] if fgr else None, w_gh=w.w_gh if fgr else None, w_hr=w.w_hr,
            lengths=lengths, cell=int(cell), flags=list(flags), save=save,  # plain ints: an IntEnum costs the op ~6 us
            recurrent_mask=recurrent, zoneout_h=zoneout_h, zoneout_c=zoneout_c,
            w_ln_ih=w.w_ln_ih, w_ln_hh=w.w_ln_hh, w_ln_c=w.w_ln_c, b_ln_c=w.b_ln_c,
        )  # fmt: skip
        out = custom_ops.layer(args)
        if fgr:
            return out.y, (out.h_n, out.c_n, out.a_n)
        return out.y, ((out.h_n, out.c_n) if lstm else (out.h_n,))


def _inference(x: torch.Tensor, state: tuple[torch.Tensor, ...], weights: tuple[LayerWeights, ...] | list[LayerWeights]) -> bool:
    """Whether a forward call may go past the op to the extension's inference entry points:
    nothing would be saved for backward, and nobody (torch.compile, export, a mode) watches for the op."""
    if torch.is_grad_enabled():
        if x.requires_grad or any(s.requires_grad for s in state):
            return False
        if any(t is not None and t.requires_grad for w in weights for t in w):
            return False
    return custom_ops.may_skip_dispatch(x)


@lru_cache(maxsize=64)
def _op_codes(spec: CellSpec) -> tuple[int, tuple[int, ...]]:
    """`schema.encode` as plain ints (an IntEnum costs a call about 6 us), once per cell spec."""
    cell, flags = encode(spec)
    return int(cell), tuple(int(f) for f in flags)
