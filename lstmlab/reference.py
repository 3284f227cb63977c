"""The executable specification: unroll any cell over time, and backpropagate by hand.

`unroll` runs a cell's `step` (equations in `lstmlab.cells`) over a sequence with any
array namespace: the NumPy reference calls it with NumPy, the eager backend with
torch. `backward` is backpropagation through time written out in NumPy, float64,
step by step, so it can be read beside the equations and checked by finite
differences.

Shapes: x (T, B, I) time-major; state a tuple of (B, S_k) arrays as the cell's
`state_sizes` gives them; y (T, B, H_out); lengths (B,) or None. With lengths, steps
t >= lengths[b] leave row b's state unchanged and output zeros (padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmlab.cells import CellSpec, LayerWeights, family
from lstmlab.cells.array_ops import NUMPY_OPS, Ops


@dataclass
class Tape:
    """What `unroll` records for `backward`: inputs, per-step intermediates, masks."""

    x: np.ndarray
    caches: list[dict]
    keep: np.ndarray | None  # (T, B, 1): 1 where the step is inside the sequence


def unroll(
    spec: CellSpec,
    ops: Ops,
    x: Any,
    state: tuple,
    w: LayerWeights,
    keep: Any = None,
    record: bool = False,
) -> tuple[Any, tuple, list[dict]]:
    """Run the cell over all steps of x. keep: (T, B, 1) mask of valid steps or None.

    The input projection W x + b_ih is one product for all steps, hoisted out of the loop.
    Returns (y, final state, per-step caches if `record` else []).
    """
    cell = family(spec)
    zx = x @ w.w_ih.T
    if w.b_ih is not None:
        zx = zx + w.b_ih
    ys, caches = [], []
    for t in range(x.shape[0]):
        new_state, out, cache = cell.step(spec, ops, zx[t], state, w)
        if keep is not None:
            k = keep[t]
            new_state = tuple(k * new + (1.0 - k) * old for new, old in zip(new_state, state))
            out = k * out
        ys.append(out)
        if record:
            caches.append(cache)
        state = new_state
    if ys:
        y = ops.stack(ys)
    else:  # T = 0: an empty (0, B, H_out) array of the input's kind, dtype and device
        out_size = w.w_hr.shape[0] if w.w_hr is not None else state[0].shape[-1]
        y = zx[..., :out_size]
    return y, state, caches


def mask(lengths: np.ndarray | None, T: int, dtype: Any = np.float64) -> np.ndarray | None:
    """(T, B, 1) array with 1 where t < lengths[b], or None when lengths is None."""
    if lengths is None:
        return None
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)[..., None]


def forward(
    spec: CellSpec, x: np.ndarray, state: tuple, w: LayerWeights, lengths: np.ndarray | None = None
) -> tuple[np.ndarray, tuple, Tape]:
    """NumPy forward of one layer in one direction; returns (y, final state, tape)."""
    keep = mask(lengths, x.shape[0], x.dtype)
    y, final, caches = unroll(spec, NUMPY_OPS, x, state, w, keep, record=True)
    return y, final, Tape(x=x, caches=caches, keep=keep)


def backward(
    spec: CellSpec, w: LayerWeights, tape: Tape, dy: np.ndarray, dfinal: tuple
) -> tuple[np.ndarray, tuple, LayerWeights]:
    """Backpropagation through time for `forward`.

    dy: (T, B, H_out) gradient of the loss w.r.t. y; dfinal: gradients w.r.t. the
    final state. Returns (dx, gradients w.r.t. the initial state, weight gradients).
    """
    cell = family(spec)
    x, keep = tape.x, tape.keep
    grads = {name: np.zeros_like(value) for name, value in w._asdict().items() if value is not None}
    dzx = np.zeros((x.shape[0], x.shape[1], w.w_ih.shape[0]), x.dtype)
    dstate = tuple(dfinal)
    for t in reversed(range(x.shape[0])):
        k = 1.0 if keep is None else keep[t]
        dnew = (k * (dstate[0] + dy[t]),) + tuple(k * d for d in dstate[1:])
        dzx[t], dold = cell.step_backward(spec, tape.caches[t], dnew, w, grads)
        dstate = tuple(d_old + (1.0 - k) * d for d_old, d in zip(dold, dstate))
    flat_dzx = dzx.reshape(-1, dzx.shape[-1])
    grads["w_ih"] = flat_dzx.T @ x.reshape(-1, x.shape[-1])
    if w.b_ih is not None:
        grads["b_ih"] = flat_dzx.sum(axis=0)
    dx = dzx @ w.w_ih
    return dx, dstate, LayerWeights(**{name: grads.get(name) for name in LayerWeights._fields})
