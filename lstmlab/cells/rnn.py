"""The Elman RNN.

(R1) h' = act(W x + b_ih + U h + b_hh)      act = tanh or relu
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmlab.cells.array_ops import Ops, activation_derivative
from lstmlab.cells.regularisers import masked_input
from lstmlab.cells.weights import LayerWeights
from lstmlab.errors import InvalidArgument

NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class RNNSpec:
    """`RNNSpec()` is torch's RNN with tanh."""

    nonlinearity: str = "tanh"

    def __post_init__(self) -> None:
        if self.nonlinearity not in NONLINEARITIES:
            # "Unknown nonlinearity" is torch's phrase; its tests match on it
            detail = f"must be one of {', '.join(NONLINEARITIES)}; got {self.nonlinearity!r} (Unknown nonlinearity)"
            raise InvalidArgument("RNN", "nonlinearity", detail)

    gates = ("h",)


def state_sizes(spec: RNNSpec, hidden_size: int, proj_size: int = 0) -> tuple[int, ...]:
    return (hidden_size,)


def step(spec: RNNSpec, ops: Ops, zx: Any, state: tuple, w: LayerWeights, recurrent_mask: Any = None) -> tuple[tuple, Any, dict]:
    """One time step. zx = W x + b_ih for this step (B, H); state (h,); recurrent_mask (B, H)
    or None: m of (D1) in `lstmlab.cells.regularisers`."""
    h = masked_input(state[0], recurrent_mask)
    pre = zx + h @ w.w_hh.T
    if w.b_hh is not None:
        pre = pre + w.b_hh
    h_new = ops.activation(spec.nonlinearity)(pre)  # (R1)
    return (h_new,), h_new, {"h": h, "h_new": h_new, "mask": recurrent_mask}


def step_backward(
    spec: RNNSpec, cache: dict, dstate: tuple, w: LayerWeights, grads: dict[str, np.ndarray]
) -> tuple[np.ndarray, tuple]:
    """Backward of `step` in NumPy (see lstm.step_backward)."""
    (dh_new,) = dstate
    dpre = dh_new * activation_derivative(spec.nonlinearity, cache["h_new"])  # (R1)
    grads["w_hh"] += dpre.T @ cache["h"]
    if w.b_hh is not None:
        grads["b_hh"] += dpre.sum(axis=0)
    dh = dpre @ w.w_hh
    return dpre, (dh if cache["mask"] is None else dh * cache["mask"],)
