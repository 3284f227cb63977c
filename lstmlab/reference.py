"""The executable specification: unroll any cell over time, and backpropagate by hand.

`unroll` runs a cell's `step` (equations in `lstmlab.cells`) over a sequence with any
array namespace: the NumPy reference calls it with NumPy, the eager backend with
torch. `backward` is backpropagation through time written out in NumPy, float64,
step by step, so it can be read beside the equations and checked by finite
differences.

Shapes: x (T, B, I) time-major; state a tuple of (B, S_k) arrays as the cell's
`state_sizes` gives them; y (T, B, H_out); lengths (B,) or None. With lengths, steps
t >= lengths[b] leave row b's state unchanged and output zeros (padding). `masks`
(`lstmlab.cells.regularisers.LayerMasks`) apply zoneout and recurrent dropout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmlab.cells import CellSpec, LayerWeights, family
from lstmlab.cells.array_ops import NUMPY_OPS, Ops
from lstmlab.cells.layer_norm import input_projection, input_projection_backward
from lstmlab.cells.regularisers import LayerMasks, zoneout


@dataclass
class Tape:
    """What `unroll` records for `backward`: inputs, per-step intermediates, masks."""

    x: np.ndarray
    wx: np.ndarray  # W x before layer normalisation (N1)
    caches: list[dict]
    keep: np.ndarray | None  # (T, B, 1): 1 where the step is inside the sequence
    zoneout: tuple  # LayerMasks.zoneout


def unroll(
    spec: CellSpec,
    ops: Ops,
    x: Any,
    state: tuple,
    w: LayerWeights,
    keep: Any = None,
    record: bool = False,
    masks: LayerMasks | None = None,
) -> tuple[Any, tuple, list[dict], Any]:
    """Run the cell over all steps of x. keep: (T, B, 1) mask of valid steps or None.

    The input projection W x + b_ih is one product for all steps, hoisted out of the loop.
    Returns (y, final state, per-step caches if `record` else [], W x before normalisation);
    a step's cache holds the cell's intermediates (its state before zoneout, as `step` gives
    them) and, under "state", the state the step leaves.
    """
    cell = family(spec)
    zx, wx = input_projection(ops, x, w)  # (N1) with layer_norm
    masks = masks or LayerMasks()
    ys, caches = [], []
    for t in range(x.shape[0]):
        new_state, out, cache = cell.step(spec, ops, zx[t], state, w, masks.recurrent)
        if masks.zoneout:  # (Z1)
            new_state = tuple(
                new if d is None else zoneout(d[t], old, new) for new, old, d in zip(new_state, state, masks.zoneout)
            )
            out = new_state[0]
        if keep is not None:
            k = keep[t]
            new_state = tuple(k * new + (1.0 - k) * old for new, old in zip(new_state, state))
            out = k * out
        ys.append(out)
        if record:
            cache["state"] = new_state
            caches.append(cache)
        state = new_state
    if ys:
        y = ops.stack(ys)
    else:  # T = 0: an empty (0, B, H_out) array of the input's kind, dtype and device
        out_size = w.w_hr.shape[0] if w.w_hr is not None else state[0].shape[-1]
        y = zx[..., :out_size]
    return y, state, caches, wx


def mask(lengths: np.ndarray | None, T: int, dtype: Any = np.float64) -> np.ndarray | None:
    """(T, B, 1) array with 1 where t < lengths[b], or None when lengths is None."""
    if lengths is None:
        return None
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)[..., None]


def forward(
    spec: CellSpec,
    x: np.ndarray,
    state: tuple,
    w: LayerWeights,
    lengths: np.ndarray | None = None,
    masks: LayerMasks | None = None,
) -> tuple[np.ndarray, tuple, Tape]:
    """NumPy forward of one layer in one direction; returns (y, final state, tape)."""
    keep = mask(lengths, x.shape[0], x.dtype)
    masks = masks or LayerMasks()
    y, final, caches, wx = unroll(spec, NUMPY_OPS, x, state, w, keep, record=True, masks=masks)
    return y, final, Tape(x=x, wx=wx, caches=caches, keep=keep, zoneout=masks.zoneout)


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
    zoned = tape.zoneout or (None,) * len(dstate)
    for t in reversed(range(x.shape[0])):
        k = 1.0 if keep is None else keep[t]
        dnew = (k * (dstate[0] + dy[t]),) + tuple(k * d for d in dstate[1:])
        dstep = tuple(g if d is None else (1.0 - d[t]) * g for g, d in zip(dnew, zoned))  # (Z1)
        dzx[t], dold = cell.step_backward(spec, tape.caches[t], dstep, w, grads)
        dold = tuple(do if d is None else do + d[t] * g for do, g, d in zip(dold, dnew, zoned))
        dstate = tuple(d_old + (1.0 - k) * d for d_old, d in zip(dold, dstate))
    rows = lambda a: a.reshape(-1, a.shape[-1])
    dx = input_projection_backward(rows(x), rows(tape.wx), rows(dzx), w, grads).reshape(x.shape)  # (N1)
    return dx, dstate, LayerWeights(**{name: grads.get(name) for name in LayerWeights._fields})
