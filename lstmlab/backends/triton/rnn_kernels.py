"""Triton kernels for the Elman RNN (equation R1 in `lstmlab.cells.rnn`), and the time
loops that launch them for one layer in one direction: per step the product U h + b_hh
and one kernel for the activation and masking; backward one kernel and one product.
Zoneout (Z1) is part of the kernels; recurrent dropout (D1) masks the product's input.
(The RNN module has neither regulariser; `Backend.run` with masks uses them.)

No `from __future__ import annotations` here: Triton reads `tl.constexpr` from the
kernels' annotations, which must stay objects, not strings.
"""

import torch
import triton.language as tl
from torch import Tensor

from lstmlab.backends.base import rows
from lstmlab.backends.triton.launch import float32_copy, keep_flags, kernel, launch, product_into, recurrent_flag, zoneout_flag
from lstmlab.cells import LayerWeights, RNNSpec
from lstmlab.cells.regularisers import LayerMasks


@kernel(do_not_specialize=["t"])
def rnn_forward_step(
    zx_ptr,  # (B, H) W x + b_ih
    zh_ptr,  # (B, H) U h + b_hh
    h_prev_ptr,  # (B, H)
    lengths_ptr,  # (B,) int32
    h_out_ptr,  # (B, H)
    y_ptr,  # (B, H) the output (with lengths)
    act_ptr,  # (B, H) float32 act(...), for backward
    dzh_ptr,  # d of (Z1) (see launch.zoneout_flag)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    RELU: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    ZH: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    x = tl.load(zx_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    x += tl.load(zh_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if RELU:  # (R1)
        h_new = tl.maximum(x, 0.0)
    else:
        e = tl.exp(-2.0 * tl.abs(x))
        h_new = tl.where(x >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)
    tl.store(act_ptr + offs, h_new, mask=valid)
    if HAS_LENGTHS or ZH > 0:
        h_prev = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if ZH == 1:  # (Z1)
        h_new += tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * (h_prev - h_new)
    elif ZH == 2:
        h_new += tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * (h_prev - h_new)
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + offs // H, mask=valid, other=0) > t
        tl.store(y_ptr + offs, tl.where(keep, h_new, 0.0).to(y_ptr.dtype.element_ty), mask=valid)
        h_new = tl.where(keep, h_new, h_prev)
    tl.store(h_out_ptr + offs, h_new.to(h_out_ptr.dtype.element_ty), mask=valid)


@kernel(do_not_specialize=["t"])
def rnn_backward_step(
    dy_ptr,  # (B, H) gradient of this step's output
    dhg_ptr,  # (B, H) gradient of h' through the next step's U
    dhc_ptr,  # (B, H) float32, gradient of h' carried past padding (in/out)
    act_ptr,  # (B, H) float32
    lengths_ptr,  # (B,) int32
    dz_ptr,  # (B, H) out: gradient of the pre-activation
    rm_ptr,  # (B, H) m of (D1): dhg is the gradient of m ⊙ h' (RD)
    dzh_ptr,  # d of (Z1)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    RELU: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    RD: tl.constexpr,
    ZH: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + offs // H, mask=valid, other=0) > t
    zero = tl.full([BLOCK], 0.0, tl.float32)
    dh_in = tl.load(dhg_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if RD:  # (D1): the next step's product read m ⊙ h'
        dh_in *= tl.load(rm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_in += tl.load(dhc_ptr + offs, mask=valid, other=0.0)
    dh = dh_in + tl.load(dy_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_old = zero
    if ZH == 1:  # (Z1): d of h''s gradient goes to the old h, 1 - d to the candidate
        dh_old = tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * dh
    elif ZH == 2:
        dh_old = tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * dh
    dh -= dh_old
    a = tl.load(act_ptr + offs, mask=valid, other=0.0)
    if RELU:  # (R1)
        dpre = tl.where(a > 0, dh, zero)
    else:
        dpre = dh * (1.0 - a * a)
    tl.store(dhc_ptr + offs, tl.where(keep, dh_old, dh_in), mask=valid)
    tl.store(dz_ptr + offs, tl.where(keep, dpre, zero).to(dz_ptr.dtype.element_ty), mask=valid)


def forward(
    spec: RNNSpec,
    zx: Tensor,
    state: tuple[Tensor, ...],
    w: LayerWeights,
    lengths: Tensor | None,
    masks: LayerMasks,
    save: bool,
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor | None]]:
    """One layer in one direction from zx = W x + b_ih (T, B, H), with the masks of zoneout
    and recurrent dropout (`LayerMasks()`: none).

    Returns y (T, B, H), the final state (h,) and the tape backward reads.
    """
    T, B, H = zx.shape[0], zx.shape[1], state[0].shape[-1]
    lens, has_lengths = keep_flags(lengths, zx)
    dzh, zone_h = zoneout_flag(masks.zoneout[0] if masks.zoneout else None, zx)
    rm, rd = recurrent_flag(masks.recurrent, zx)
    relu = spec.nonlinearity == "relu"
    hs = zx.new_empty(T + 1, B, H)  # h before each step, then the final h
    hs[0] = state[0]
    y = zx.new_empty(T, B, H) if has_lengths else hs[1:]
    acts = torch.empty(T if save else 1, B, H, device=zx.device, dtype=torch.float32)
    zh = zx.new_empty(B, H)
    hm = zx.new_empty(B, H) if rd else None  # m ⊙ h (D1)
    for t in range(T):
        if hm is not None:
            torch.mul(hs[t], rm, out=hm)
        product_into(hs[t] if hm is None else hm, w.w_hh, w.b_hh, zh)
        s = t if save else 0
        launch(
            rnn_forward_step,
            B * H,
            zx[t],
            zh,
            hs[t],
            lens,
            hs[t + 1],
            y[t],
            acts[s],
            dzh[t] if zone_h else dzh,
            t,
            H,
            RELU=relu,
            HAS_LENGTHS=has_lengths,
            ZH=zone_h,
        )
    return y, (hs[T].clone(),), {"hs": hs, "acts": acts}


def backward(
    spec: RNNSpec,
    w: LayerWeights,
    lengths: Tensor | None,
    masks: LayerMasks,
    tape: dict[str, Tensor | None],
    dy: Tensor,
    dfinal: tuple[Tensor, ...],
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor | None]]:
    """Backward of `forward`: (dzx (T, B, H), (dh0,), gradients of w_hh and b_hh)."""
    hs, acts = tape["hs"], tape["acts"]
    T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    lens, has_lengths = keep_flags(lengths, hs)
    dzh, zone_h = zoneout_flag(masks.zoneout[0] if masks.zoneout else None, hs)
    rm, rd = recurrent_flag(masks.recurrent, hs)
    relu = spec.nonlinearity == "relu"
    dy = dy.contiguous()
    dz = hs.new_empty(T, B, H)
    dhg = hs.new_zeros(B, H)
    dhc = float32_copy(dfinal[0])  # the kernel updates it in place
    for t in reversed(range(T)):
        launch(
            rnn_backward_step,
            B * H,
            dy[t],
            dhg,
            dhc,
            acts[t],
            lens,
            dz[t],
            rm,
            dzh[t] if zone_h else dzh,
            t,
            H,
            RELU=relu,
            HAS_LENGTHS=has_lengths,
            RD=rd,
            ZH=zone_h,
        )
        torch.mm(dz[t], w.w_hh, out=dhg)
    h_in = hs[:-1] if not rd else hs[:-1] * rm  # what the products read (D1)
    grads: dict[str, Tensor | None] = {"w_hh": rows(dz).t() @ rows(h_in)}
    grads["b_hh"] = dz.float().sum((0, 1)) if w.b_hh is not None else None
    return dz, ((dhg if not rd else dhg * rm) + dhc,), grads
