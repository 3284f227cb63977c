"""The gated recurrent unit, with both reset conventions.

    (G1) r  = σ(W_r x + b_ir + U_r h + b_hr)
    (G2) z  = σ(W_z x + b_iz + U_z h + b_hz)
    (G3) n  = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn))     reset="after"  (torch, cuDNN)
    (G3') n = tanh(W_n x + b_in + U_n (r ⊙ h) + b_hn)     reset="before" (Cho et al. 2014)
    (G4) h' = (1 − z) ⊙ n + z ⊙ h

Weight rows in torch's order r, z, n; both conventions have the same parameters.
With `layer_norm=True` (reset="after" only), W x + b_ih and U h + b_hh take the forms
(N1), (N2) of `lstmlab.cells.layer_norm`; zoneout and recurrent dropout act around this
step as `lstmlab.cells.regularisers` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmlab.cells.array_ops import Ops, split
from lstmlab.cells.layer_norm import recurrent_projection, recurrent_projection_backward
from lstmlab.cells.regularisers import masked_input
from lstmlab.cells.weights import LayerWeights
from lstmlab.errors import InvalidArgument

GATES = ("r", "z", "n")
RESETS = ("after", "before")


@dataclass(frozen=True)
class GRUSpec:
    """`GRUSpec()` is torch's GRU."""

    reset: str = "after"
    layer_norm: bool = False

    def __post_init__(self) -> None:
        if self.reset not in RESETS:
            raise InvalidArgument("GRU", "reset", f"must be one of {', '.join(RESETS)}; got {self.reset!r}")
        if self.layer_norm and self.reset != "after":
            rule = "=True normalises U h as one product, which needs reset='after'"
            raise InvalidArgument("GRU", "layer_norm", f"{rule}; got reset={self.reset!r}")

    gates = GATES


def state_sizes(spec: GRUSpec, hidden_size: int, proj_size: int = 0) -> tuple[int, ...]:
    return (hidden_size,)


def _recurrent(h: Any, w: LayerWeights, gates: tuple[str, ...]) -> dict[str, Any]:
    """U h + b_h for the named gate blocks."""
    H = h.shape[-1]
    rows = [GATES.index(gate) for gate in gates]
    out = {}
    for gate, k in zip(gates, rows):
        u = h @ w.w_hh[k * H : (k + 1) * H].T
        out[gate] = u + w.b_hh[k * H : (k + 1) * H] if w.b_hh is not None else u
    return out


def step(spec: GRUSpec, ops: Ops, zx: Any, state: tuple, w: LayerWeights, recurrent_mask: Any = None) -> tuple[tuple, Any, dict]:
    """One time step. zx = W x + b_ih for this step (B, 3H) (`layer_norm.input_projection`);
    state (h,); recurrent_mask (B, H) or None: m of (D1)."""
    (h,) = state
    H = h.shape[-1]
    hp = masked_input(h, recurrent_mask)  # (D1): the recurrent products' input
    px = split(zx, GATES, H)
    uh = None
    if spec.reset == "after":
        zh, uh = recurrent_projection(ops, hp, w)  # (N2) with layer_norm
        ph = split(zh if w.b_hh is None else zh + w.b_hh, GATES, H)
    else:
        ph = _recurrent(hp, w, ("r", "z"))
    r = ops.sigmoid(px["r"] + ph["r"])  # (G1)
    z = ops.sigmoid(px["z"] + ph["z"])  # (G2)
    if spec.reset == "after":
        n = ops.tanh(px["n"] + r * ph["n"])  # (G3)
        rh = None
    else:
        rh = r * hp
        ph["n"] = _recurrent(rh, w, ("n",))["n"]
        n = ops.tanh(px["n"] + ph["n"])  # (G3')
    h_new = (1.0 - z) * n + z * h  # (G4)
    cache = {"h": h, "hp": hp, "uh": uh, "mask": recurrent_mask, "r": r, "z": z, "n": n, "hn": ph["n"], "rh": rh}
    return (h_new,), h_new, cache


def step_backward(
    spec: GRUSpec, cache: dict, dstate: tuple, w: LayerWeights, grads: dict[str, np.ndarray]
) -> tuple[np.ndarray, tuple]:
    """Backward of `step` in NumPy, derived by hand (see lstm.step_backward)."""
    (dh_new,) = dstate
    h, hp, r, z, n, hn = (cache[k] for k in ("h", "hp", "r", "z", "n", "hn"))
    H = h.shape[-1]
    dn = dh_new * (1.0 - z)  # (G4)
    dz = dh_new * (h - n)
    dh = dh_new * z
    dpre_n = dn * (1.0 - n * n)  # (G3) / (G3')
    dpre_z = dz * z * (1.0 - z)  # (G2)
    if spec.reset == "after":
        dhn = dpre_n * r
        dpre_r = dpre_n * hn * r * (1.0 - r)  # (G1)
        dzh = np.concatenate([dpre_r, dpre_z, dhn], axis=-1)
        if w.b_hh is not None:
            grads["b_hh"] += dzh.sum(axis=0)
        dhp = recurrent_projection_backward(hp, cache["uh"], dzh, w, grads)  # (N2)
    else:
        blocks = {gate: slice(k * H, (k + 1) * H) for k, gate in enumerate(GATES)}
        dhn = dpre_n
        grads["w_hh"][blocks["n"]] += dhn.T @ cache["rh"]
        drh = dhn @ w.w_hh[blocks["n"]]
        dpre_r = drh * hp * r * (1.0 - r)  # (G1)
        dhp = drh * r
        for gate, d in (("r", dpre_r), ("z", dpre_z)):
            grads["w_hh"][blocks[gate]] += d.T @ hp
            dhp = dhp + d @ w.w_hh[blocks[gate]]
        if w.b_hh is not None:
            grads["b_hh"] += np.concatenate([dpre_r, dpre_z, dhn], axis=-1).sum(axis=0)
    dh = dh + (dhp if cache["mask"] is None else dhp * cache["mask"])  # (D1)
    dzx = np.concatenate([dpre_r, dpre_z, dpre_n], axis=-1)
    return dzx, (dh,)
