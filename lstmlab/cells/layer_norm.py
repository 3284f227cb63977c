"""Layer normalisation inside the LSTM and the GRU (Ba et al. 2016), as haste's LayerNormLSTM.

With N(v) = (v − mean(v)) / sqrt(var(v) + ε) over the last axis (biased variance,
ε = 1e-5, as torch.nn.LayerNorm):

    (N1) W x + b_ih        →  γ_ih ⊙ N(W x) + b_ih       every gate block at once (G·H values)
    (N2) U h + b_hh        →  γ_hh ⊙ N(U h) + b_hh       likewise, separately from (N1)
    (N3) H(c')             →  H(γ_c ⊙ N(c') + β_c)       LSTM: the cell state before the output
                                                          activation; the carried c' is not normalised

The biases are added after normalisation, so they keep their meaning (a forget-gate bias
still opens the gate). Peephole terms and FGR's V a are added after (N2); the output gate's
peephole sees the unnormalised c'. Parameters (one layer, one direction): `weight_ln_ih`
and `weight_ln_hh` (G·H,) are γ_ih and γ_hh, `weight_ln_c` and `bias_ln_c` (H,) are γ_c and
β_c (LSTM only); gains start at 1, β_c at 0. The GRU normalises only with reset="after",
where U h is one product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstmlab.cells.array_ops import Ops
from lstmlab.cells.weights import LayerWeights

EPS = 1e-5


def normalize(ops: Ops, v: Any) -> Any:
    """N(v) over the last axis."""
    return ops.normalize(v, EPS)


def _normalized(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N(v) and 1 / sqrt(var(v) + ε), over the last axis (NumPy)."""
    centred = v - v.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + EPS)
    return centred * rstd, rstd


def normalize_backward(v: np.ndarray, dn: np.ndarray) -> np.ndarray:
    """d loss / d v from d loss / d N(v), for N over the last axis (NumPy)."""
    n, rstd = _normalized(v)
    return rstd * (dn - dn.mean(axis=-1, keepdims=True) - n * (dn * n).mean(axis=-1, keepdims=True))


def affine_backward(v: np.ndarray, dy: np.ndarray, gain: Any) -> tuple[np.ndarray, np.ndarray]:
    """For y = gain ⊙ N(v) (NumPy): d loss / d v and d loss / d gain (summed over rows), from dy."""
    n, _ = _normalized(v)
    return normalize_backward(v, dy * gain), (dy * n).reshape(-1, n.shape[-1]).sum(axis=0)


def input_projection(ops: Ops, x: Any, w: LayerWeights) -> tuple[Any, Any]:
    """W x + b_ih, or (N1) when the layer normalises (w.w_ln_ih is set), for x (..., I).

    Returns the projection and W x before normalisation (what the backward needs)."""
    wx = x @ w.w_ih.T
    zx = wx if w.w_ln_ih is None else normalize(ops, wx) * w.w_ln_ih  # (N1)
    if w.b_ih is not None:
        zx = zx + w.b_ih
    return zx, wx


def input_projection_backward(
    x: np.ndarray, wx: np.ndarray, dzx: np.ndarray, w: LayerWeights, grads: dict[str, np.ndarray]
) -> np.ndarray:
    """Backward of `input_projection` on flattened rows x (N, I), dzx (N, G·H): sets the
    gradients of w_ih, b_ih (and w_ln_ih) in `grads`, returns dx (N, I)."""
    if w.b_ih is not None:
        grads["b_ih"] = dzx.sum(axis=0)
    if w.w_ln_ih is not None:  # (N1)
        dzx, grads["w_ln_ih"] = affine_backward(wx, dzx, w.w_ln_ih)
    grads["w_ih"] = dzx.T @ x
    return dzx @ w.w_ih


def recurrent_projection(ops: Ops, h: Any, w: LayerWeights) -> tuple[Any, Any]:
    """U h, or γ_hh ⊙ N(U h) (N2) when the layer normalises; b_hh not added. Returns it and U h."""
    uh = h @ w.w_hh.T
    return (uh if w.w_ln_hh is None else normalize(ops, uh) * w.w_ln_hh), uh  # (N2)


def recurrent_projection_backward(
    h: np.ndarray, uh: np.ndarray, dz: np.ndarray, w: LayerWeights, grads: dict[str, np.ndarray]
) -> np.ndarray:
    """Backward of `recurrent_projection`: adds into grads["w_hh"] (and "w_ln_hh"), returns dh."""
    if w.w_ln_hh is not None:  # (N2)
        dz, dgain = affine_backward(uh, dz, w.w_ln_hh)
        grads["w_ln_hh"] += dgain
    grads["w_hh"] += dz.T @ h
    return dz @ w.w_hh
