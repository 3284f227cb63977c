"""Looking inside a trained recurrent stack: cell values, gate activations, what cells track.

After Karpathy, Johnson and Fei-Fei 2015, "Visualizing and Understanding Recurrent
Networks": run a text through the stack one step at a time (`lstmlab.reference.unroll`
in NumPy float64, the executable specification of every backend), keep every layer's cell
values and gate activations, then

- rank cells by how well they follow a readable property of the text (position in
  the line, inside quotes, inside brackets): the absolute Pearson correlation over
  the text;
- measure gate saturation: for each gate unit, the fraction of steps it is
  left-saturated (< 0.1) or right-saturated (> 0.9).

Shapes: N characters, H hidden units per layer. Everything returned is NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lstmlab.backends.masks import draw_masks
from lstmlab.cells import GRUSpec, LayerWeights, LSTMSpec
from lstmlab.cells.array_ops import NUMPY_OPS
from lstmlab.cells.regularisers import LayerMasks
from lstmlab.errors import InvalidArgument
from lstmlab.reference import unroll

LEFT, RIGHT = 0.1, 0.9
"""Saturation thresholds of Karpathy et al. 2015 for gates (sigmoid outputs)."""

FEATURES = {
    "line position": "characters since the last line break",
    "inside quotes": "1 between an opening and a closing double quote",
    "inside brackets": "1 inside (), [] or {}",
}


@dataclass
class LayerTrace:
    """What one layer did over a text of N characters.

    cell: (N, H) the value shown per character: tanh(c) for LSTMs (c the cell state,
    as Karpathy et al. show it), h for GRU and RNN, so every value lies in [-1, 1]
    (relu RNNs excepted). gates: name -> (N, H) sigmoid activations, for the gates the
    cell has (LSTM: i, f, o; GRU: r, z; RNN: none).
    """

    cell: np.ndarray
    gates: dict[str, np.ndarray]


def trace(module: torch.nn.Module, x: Tensor) -> list[LayerTrace]:
    """Run `module` (an lstmlab LSTM, GRU or RNN, unidirectional) over x (N, input_size).

    Dropout is not applied (the network as it samples). The state starts at zero.
    """
    config = module.config  # type: ignore[attr-defined]
    if config.bidirectional:
        raise InvalidArgument("trace", "module", "must be unidirectional; got bidirectional=True")
    spec = config.spec
    layers = []
    inp = x.detach().double().cpu().numpy()[:, None, :]
    # at evaluation only zoneout acts: its expectation (Z1)
    evaluation = draw_masks(config, x.shape[0], 1, torch.zeros((), dtype=torch.float64), training=False)
    zoneouts = iter(evaluation or [None] * config.num_layers)
    for weights in module.layer_weights():  # type: ignore[attr-defined]
        w = LayerWeights(*(None if p is None else p.detach().double().cpu().numpy() for p in weights))
        state = tuple(np.zeros((1, size)) for size in config.state_sizes)
        y, _, caches, _ = unroll(spec, NUMPY_OPS, inp, state, w, record=True, masks=_as_numpy(next(zoneouts)))
        layers.append(_layer_trace(spec, caches, y))
        inp = y
    return layers


def _as_numpy(masks: LayerMasks | None) -> LayerMasks | None:
    return None if masks is None else LayerMasks(None, tuple(None if d is None else d.numpy() for d in masks.zoneout))


def _stack(caches: list[dict], key: str) -> np.ndarray:
    return np.stack([cache[key][0] for cache in caches])


def _layer_trace(spec: object, caches: list[dict], y: np.ndarray) -> LayerTrace:
    if isinstance(spec, LSTMSpec):  # the cell state the step leaves: after zoneout (Z1)
        cell = np.tanh(np.stack([cache["state"][1][0] for cache in caches]))
        gates = {name: _stack(caches, name) for name in ("i", "f", "o") if isinstance(caches[0][name], np.ndarray)}
    elif isinstance(spec, GRUSpec):
        cell = y[:, 0]
        gates = {name: _stack(caches, name) for name in ("r", "z")}
    else:
        cell, gates = y[:, 0], {}
    return LayerTrace(cell=cell, gates=gates)


def features(text: str) -> dict[str, np.ndarray]:
    """Readable properties of each character of `text`, (N,) each, keyed as FEATURES.

    A character's value describes the state after reading it: a line break is at
    position 0, an opening quote is inside the quotes, a closing one outside.
    """
    position = np.zeros(len(text))
    quoted = np.zeros(len(text))
    bracketed = np.zeros(len(text))
    column, inside, depth = 0, False, 0
    for t, char in enumerate(text):
        column = 0 if char == "\n" else column + 1
        if char == '"':
            inside = not inside
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        position[t], quoted[t], bracketed[t] = column, inside, depth > 0
    return {"line position": position, "inside quotes": quoted, "inside brackets": bracketed}


def correlations(cell: np.ndarray, feature: np.ndarray) -> np.ndarray | None:
    """Pearson correlation (H,) of each cell (N, H) with a feature (N,); None if the feature is constant."""
    f = feature - feature.mean()
    if not np.any(f):
        return None
    c = cell - cell.mean(axis=0)
    norms = np.sqrt((c * c).sum(axis=0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (c * f[:, None]).sum(axis=0) / norms
    return np.nan_to_num(r)


@dataclass(frozen=True)
class Ranked:
    """One cell's agreement with one feature."""

    feature: str
    layer: int
    cell: int
    r: float


def rank_cells(layers: list[LayerTrace], text: str, top: int = 8) -> tuple[list[Ranked], list[str]]:
    """The `top` cells of all layers per feature by |r|, best first; and the features absent from `text`."""
    ranked, absent = [], []
    for name, feature in features(text).items():
        found = []
        for layer, lt in enumerate(layers):
            r = correlations(lt.cell, feature)
            if r is None:
                break
            found += [Ranked(name, layer, unit, float(r[unit])) for unit in range(len(r))]
        if not found:
            absent.append(name)
            continue
        ranked += sorted(found, key=lambda item: -abs(item.r))[:top]
    return ranked, absent


def saturation(gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of steps (H,) each unit of a gate (N, H) is left- (< 0.1) and right-saturated (> 0.9)."""
    return (gate < LEFT).mean(axis=0), (gate > RIGHT).mean(axis=0)
