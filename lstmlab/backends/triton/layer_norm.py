"""Layer normalisation for the Triton backend's hand-written backward, in torch ops:
(N1) on the input projection before the time loop, (N2) on a step's recurrent product
inside it (equations in `lstmlab.cells.layer_norm`). (N1) and the gains' gradients are
computed in float32 whatever the input's dtype; (N2) runs once per step, so it is one of
torch's fused layer-norm kernels each way (which accumulate in float32 on CUDA). Results
are in the input's dtype, as the products they replace.
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


def layer_norm_step(v: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
    """gain ⊙ N(v) + bias over the last axis of a step's (B, F) v, as one kernel; gain and
    bias in v's dtype."""
    return torch.native_layer_norm(v, (v.shape[-1],), gain, bias, EPS)[0]


def layer_norm_step_backward(v: Tensor, dy: Tensor, gain: Tensor) -> Tensor:
    """d loss / d v for `layer_norm_step`, from dy (v's dtype): N's statistics again, then
    torch's layer-norm backward for the input alone."""
    _, mean, rstd = torch.native_layer_norm(v, (v.shape[-1],), None, None, EPS)
    shape = (v.shape[-1],)
    return torch.ops.aten.native_layer_norm_backward(dy, v, shape, mean, rstd, gain, None, [True, False, False])[0]


def layer_norm_affine_backward(v: Tensor, dy: Tensor, gain: Tensor) -> Tensor:
    """d loss / d v (float32) for y = gain ⊙ N(v) + bias, from dy = d loss / d y."""
    n, rstd = normalized(v)
    dn = dy.float() * gain.float()
    return rstd * (dn - dn.mean(-1, keepdim=True) - n * (dn * n).mean(-1, keepdim=True))
