"""Layer normalisation for the Triton backend's hand-written backward, in torch ops:
(N1) on the input projection before the time loop, (N2) on a step's recurrent product
inside it (equations in `lstmlab.cells.layer_norm`). Computed in float32 whatever the
input's dtype; results in the input's dtype, as the products they replace.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmlab.cells.layer_norm import EPS


def normalized(v: Tensor) -> tuple[Tensor, Tensor]:
    """N(v) over the last axis and 1 / sqrt(var(v) + ε), both float32."""
    v = v.float()
    var, mean = torch.var_mean(v, dim=-1, keepdim=True, correction=0)
    rstd = torch.rsqrt(var + EPS)
    return (v - mean) * rstd, rstd


def layer_norm_affine(v: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
    """gain ⊙ N(v) + bias (bias may be None), in v's dtype."""
    n, _ = normalized(v)
    out = n * gain.float()
    if bias is not None:
        out = out + bias.float()
    return out.to(v.dtype)


def layer_norm_affine_backward(v: Tensor, dy: Tensor, gain: Tensor) -> Tensor:
    """d loss / d v (float32) for y = gain ⊙ N(v) + bias, from dy = d loss / d y."""
    n, rstd = normalized(v)
    dn = dy.float() * gain.float()
    return rstd * (dn - dn.mean(-1, keepdim=True) - n * (dn * n).mean(-1, keepdim=True))
