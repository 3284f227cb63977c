"""The backend contract, and the stacking of layers and directions most backends share.

A backend turns plain tensors into outputs: given the module's configuration, a
time-major padded input x (T, B, I), per-sequence lengths (B,) or None, the initial
state tensors (each (L*D, B, S)), one `LayerWeights` per layer and direction
(index layer*D + direction) and the regularisers' masks (`lstmlab.backends.masks`,
one `LayerMasks` per layer and direction, or None), it returns y (T, B, D*H_out) and
the final state tensors, differentiable with respect to all of them. Only
`lstmlab.nn` owns parameters and draws masks; backends never see an nn.Module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from lstmlab.cells import CellSpec, LayerWeights, family
from lstmlab.cells.regularisers import LayerMasks

Layer = tuple[torch.Tensor, tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class StackConfig:
    """Everything about a recurrent stack except its parameters and inputs."""

    spec: CellSpec
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    zoneout_h: float = 0.0  # the regularisers of `lstmlab.cells.regularisers`
    zoneout_c: float = 0.0
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of one direction's output (the projection size when projecting)."""
        return self.proj_size or self.hidden_size

    @cached_property  # read at every forward; a frozen instance computes it once
    def state_sizes(self) -> tuple[int, ...]:
        return family(self.spec).state_sizes(self.spec, self.hidden_size, self.proj_size)

    @cached_property
    def regularised(self) -> bool:
        """Whether zoneout, recurrent dropout or weight dropout is on: a forward call then draws masks."""
        return any((self.zoneout_h, self.zoneout_c, self.recurrent_dropout, self.weight_dropout))

    def in_recurrence(self) -> tuple[str, ...]:
        """The regularisers here that act inside the time loop, which a backend's kernels must
        implement ("zoneout", "recurrent_dropout", "layer_norm"); weight dropout is not one:
        it changes weight_hh before any backend runs."""
        used = {
            "zoneout": self.zoneout_h > 0 or self.zoneout_c > 0,
            "recurrent_dropout": self.recurrent_dropout > 0,
            "layer_norm": getattr(self.spec, "layer_norm", False),
        }
        return tuple(name for name, on in used.items() if on)


class Backend(ABC):
    """One way of computing a recurrent stack; see the module docstring for the contract."""

    name: str

    @abstractmethod
    def unsupported(self, config: StackConfig, x: torch.Tensor) -> str | None:
        """Why this backend cannot run `config` on tensors like `x`, or None if it can."""

    @abstractmethod
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
        """y (T, B, D*H_out) and the final state tensors (each (L*D, B, S))."""

    def step(
        self,
        config: StackConfig,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        training: bool,
    ) -> tuple[torch.Tensor, ...]:
        """One time step of one layer in one direction (a *Cell's forward): x (B, I), state
        tensors (B, S) each; returns the new state (h' first), differentiable as `run`.

        This default runs `run` on a sequence of one step; a backend with a cheaper single
        step (fewer calls, no sequence bookkeeping) overrides it.
        """
        _, final = self.run(config, x.unsqueeze(0), None, tuple(s.unsqueeze(0) for s in state), [w], training)
        return tuple(s[0] for s in final)


class LayeredBackend(Backend):
    """A backend that computes one layer in one direction; stacking is shared here."""

    @abstractmethod
    def layer(
        self,
        spec: CellSpec,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        w: LayerWeights,
        lengths: torch.Tensor | None,
        masks: LayerMasks | None = None,
    ) -> Layer:
        """y (T, B, H_out) and the final state of one forward-running layer; `masks` as
        `lstmlab.reference.unroll` applies them, in the order the layer takes its steps."""

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
        D = config.num_directions
        finals: list[tuple[torch.Tensor, ...]] = []
        for layer in range(config.num_layers):
            ys = []
            for direction in range(D):
                index = layer * D + direction
                state = tuple(s[index] for s in hx)
                inp = reverse_padded(x, lengths) if direction else x
                if masks is None:
                    y, final = self.layer(config.spec, inp, state, weights[index], lengths)
                else:
                    y, final = self.layer(config.spec, inp, state, weights[index], lengths, masks[index])
                ys.append(reverse_padded(y, lengths) if direction else y)
                finals.append(final)
            x = torch.cat(ys, dim=-1) if D > 1 else ys[0]
            if training and config.dropout > 0 and layer < config.num_layers - 1:
                x = F.dropout(x, config.dropout, training=True)
        if len(finals) == 1:  # a view, not a copy: one layer, one direction (every cell)
            return x, tuple(s.unsqueeze(0) for s in finals[0])
        hn = tuple(torch.stack([final[k] for final in finals]) for k in range(len(hx)))
        return x, hn


def regularisers_missing(config: StackConfig, kernels: str, supported: tuple[str, ...] = ()) -> str | None:
    """`unsupported`'s reason when `config` uses a regulariser inside the recurrence that
    `kernels` (a backend's description) do not implement; None when it uses none of them."""
    missing = [name for name in config.in_recurrence() if name not in supported]
    if not missing:
        return None
    return f"{kernels} have no {' or '.join(missing)}; backend='fused' (CPU), 'triton' (CUDA), 'eager' and 'reference' run them"


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of x (T, B, F) within its length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device)[:, None]
    n = lengths.to(x.device)[None, :]
    index = torch.where(t < n, n - 1 - t, t)
    return x.gather(0, index[:, :, None].expand_as(x))


def step_mask(lengths: torch.Tensor | None, T: int, like: torch.Tensor) -> torch.Tensor | None:
    """(T, B, 1) tensor of 1 where t < lengths[b], in like's dtype and device; None if no lengths."""
    if lengths is None:
        return None
    t = torch.arange(T, device=like.device)[:, None]
    return (t < lengths.to(like.device)[None, :]).to(like.dtype)[..., None]


def rows(t: torch.Tensor) -> torch.Tensor:
    """t (..., F) as a matrix (N, F) of its rows: how a time-major sequence enters one large product."""
    return t.reshape(-1, t.shape[-1])
