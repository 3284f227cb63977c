"""The one place the regularisers' random masks are drawn, from torch's generator.

`lstmlab.nn` calls `regularise` once per forward call, before the backend runs, and
passes what it returns to the backend: so every backend computes with the same masks
and, for the same seed, gives the same training result. Equations:
`lstmlab.cells.regularisers`. Order of the draws, for reproducibility: the weight
dropout masks of every layer and direction, then per layer and direction the recurrent
dropout mask and the zoneout masks (h, then c).
"""

from __future__ import annotations

import torch

from lstmlab.backends.base import StackConfig
from lstmlab.cells import LayerWeights, LSTMSpec
from lstmlab.cells.regularisers import LayerMasks


def _bernoulli(like: torch.Tensor, shape: tuple[int, ...], keep: float) -> torch.Tensor:
    """1 with probability `keep`, else 0, in like's dtype and device."""
    return like.new_empty(shape).bernoulli_(keep)


def _inverted_dropout(like: torch.Tensor, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Bernoulli(1 - p) / (1 - p): the expectation stays 1 (all zeros when p = 1)."""
    mask = _bernoulli(like, shape, 1.0 - p)
    return mask.div_(1.0 - p) if p < 1 else mask


def zoneout_rates(config: StackConfig) -> tuple[float, ...]:
    """The zoneout probability of each state tensor: (z_h, z_c[, 0 for FGR's a]) for the LSTM, (z_h,) else."""
    if isinstance(config.spec, LSTMSpec):
        return (config.zoneout_h, config.zoneout_c, 0.0)[: len(config.state_sizes)]
    return (config.zoneout_h,)


def draw_masks(config: StackConfig, T: int, B: int, like: torch.Tensor, training: bool) -> list[LayerMasks] | None:
    """Per layer and direction (index layer * D + direction), the masks of zoneout and recurrent
    dropout for a (T, B) input; None when neither acts (recurrent dropout acts in training only;
    zoneout's evaluation form d = z is a constant, expanded, not copied)."""
    rates = zoneout_rates(config)
    p = config.recurrent_dropout if training else 0.0
    if not (p > 0 or any(rates)):
        return None
    sizes = config.state_sizes
    masks = []
    for _ in range(config.num_layers * config.num_directions):
        recurrent = _inverted_dropout(like, (B, sizes[0]), p) if p > 0 else None
        zoneout: tuple = ()
        if any(rates):
            zoneout = tuple(
                None
                if z == 0
                else _bernoulli(like, (T, B, size), z)
                if training
                else like.new_full((1, 1, 1), z).expand(T, B, size)
                for z, size in zip(rates, sizes)
            )
        masks.append(LayerMasks(recurrent, zoneout))
    return masks


def drop_recurrent_weights(config: StackConfig, weights: list[LayerWeights], training: bool) -> list[LayerWeights]:
    """(D2): each layer's weight_hh times a fresh DropConnect mask in training; `weights` unchanged otherwise."""
    p = config.weight_dropout
    if not training or p == 0:
        return weights
    return [w._replace(w_hh=w.w_hh * _inverted_dropout(w.w_hh, tuple(w.w_hh.shape), p)) for w in weights]


def regularise(
    config: StackConfig, weights: list[LayerWeights], T: int, B: int, training: bool
) -> tuple[list[LayerWeights], list[LayerMasks] | None]:
    """The weights the backend runs with and the masks it applies, for one forward call on a
    (T, B) input; draws weight dropout first, then `draw_masks`."""
    weights = drop_recurrent_weights(config, weights, training)
    return weights, draw_masks(config, T, B, weights[0].w_ih.detach(), training)
