"""Triton kernels for the GRU, both reset conventions (equations G1-G4 in
`lstmlab.cells.gru`), and the time loops that launch them for one layer in one
direction.

reset="after" (torch's): per step the product U h + b_hh for all three blocks and
one kernel for the pointwise work; backward one kernel and one product.
reset="before" (Cho et al.): the reset gate multiplies h before U_n, so a step is
two kernels around a second product: r and z, then U_n (r ⊙ h) + b_hn, then n and
h'. Backward mirrors it: one kernel for n and z, the product for d(r ⊙ h), one
kernel for r, then the product for dh.

Regularisers: zoneout (Z1) in the kernels that make h'; recurrent dropout (D1) masks the
products' input h (not (G4)'s z ⊙ h), the backward kernels mask the products' gradient;
layer normalisation (reset="after"): (N1) before the loop (the backend), (N2) on each
step's U h in torch ops around the product (the kernels are unchanged).

Layout: one step's pre-activations are (B, 3H) in the weight rows' order r, z, n.
Saved activations and carried gradients are float32; h keeps the input's dtype.

No `from __future__ import annotations` here: Triton reads `tl.constexpr` from the
kernels' annotations, which must stay objects, not strings.
"""

import torch
import triton.language as tl
from torch import Tensor

from lstmlab.backends.base import rows
from lstmlab.backends.triton.launch import (
    float32_copy,
    keep_flags,
    kernel,
    launch,
    product_into,
    recurrent_flag,
    zoneout_flag,
)
from lstmlab.backends.triton.layer_norm import layer_norm_step, layer_norm_step_backward, normalized
from lstmlab.cells import GRUSpec, LayerWeights
from lstmlab.cells.regularisers import LayerMasks

# block index of each gate (GATES order in lstmlab.cells.gru); compiled kernels read only constexpr globals
R, Z, N = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


@kernel(do_not_specialize=["t"])
def gru_after_forward_step(
    zx_ptr,  # (B, 3H) W x + b_ih
    zh_ptr,  # (B, 3H) U h + b_hh
    h_prev_ptr,  # (B, H)
    lengths_ptr,  # (B,) int32
    h_out_ptr,  # (B, H)
    y_ptr,  # (B, H) the output (with lengths)
    gates_ptr,  # (B, 3H) float32 r, z, n
    hn_ptr,  # (B, H) float32 U_n h + b_hn
    dzh_ptr,  # d of (Z1) (see launch.zoneout_flag)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    ZH: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    b = offs // H
    row = b * (3 * H) + offs % H
    x = tl.load(zx_ptr + row + R * H, mask=valid, other=0.0).to(tl.float32)
    x += tl.load(zh_ptr + row + R * H, mask=valid, other=0.0).to(tl.float32)
    e = tl.exp(-tl.abs(x))  # sigmoid from exp(-|x|), which never overflows
    r = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # (G1)
    x = tl.load(zx_ptr + row + Z * H, mask=valid, other=0.0).to(tl.float32)
    x += tl.load(zh_ptr + row + Z * H, mask=valid, other=0.0).to(tl.float32)
    e = tl.exp(-tl.abs(x))
    z = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # (G2)
    hn = tl.load(zh_ptr + row + N * H, mask=valid, other=0.0).to(tl.float32)
    x = tl.load(zx_ptr + row + N * H, mask=valid, other=0.0).to(tl.float32) + r * hn
    e = tl.exp(-2.0 * tl.abs(x))
    nn = tl.where(x >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)  # (G3)
    h = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    h_new = (1.0 - z) * nn + z * h  # (G4)
    if ZH == 1:  # (Z1)
        h_new += tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * (h - h_new)
    elif ZH == 2:
        h_new += tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * (h - h_new)
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + b, mask=valid, other=0) > t
        tl.store(y_ptr + offs, tl.where(keep, h_new, 0.0).to(y_ptr.dtype.element_ty), mask=valid)
        h_new = tl.where(keep, h_new, h)
    tl.store(h_out_ptr + offs, h_new.to(h_out_ptr.dtype.element_ty), mask=valid)
    tl.store(gates_ptr + row + R * H, r, mask=valid)
    tl.store(gates_ptr + row + Z * H, z, mask=valid)
    tl.store(gates_ptr + row + N * H, nn, mask=valid)
    tl.store(hn_ptr + offs, hn, mask=valid)


@kernel(do_not_specialize=["t"])
def gru_after_backward_step(
    dy_ptr,  # (B, H) gradient of this step's output
    dhg_ptr,  # (B, H) gradient of h' through the next step's U
    dhc_ptr,  # (B, H) float32, the rest of h''s gradient (in/out)
    h_prev_ptr,  # (B, H)
    gates_ptr,  # (B, 3H) float32 r, z, n
    hn_ptr,  # (B, H) float32 U_n h + b_hn
    lengths_ptr,  # (B,) int32
    dzx_ptr,  # (B, 3H) out: gradient of W x + b_ih
    dzh_ptr,  # (B, 3H) out: gradient of U h + b_hh
    rm_ptr,  # (B, H) m of (D1): dhg is the gradient of m ⊙ h' (RD)
    dzo_ptr,  # d of (Z1)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    RD: tl.constexpr,
    ZH: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    b = offs // H
    row = b * (3 * H) + offs % H
    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + b, mask=valid, other=0) > t
    zero = tl.full([BLOCK], 0.0, tl.float32)
    dh_in = tl.load(dhg_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if RD:  # (D1): the next step's products read m ⊙ h'
        dh_in *= tl.load(rm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_in += tl.load(dhc_ptr + offs, mask=valid, other=0.0)
    dh = dh_in + tl.load(dy_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_old = zero
    if ZH == 1:  # (Z1): d of h''s gradient goes to the old h, 1 - d to the candidate
        dh_old = tl.load(dzo_ptr + offs, mask=valid, other=0.0).to(tl.float32) * dh
    elif ZH == 2:
        dh_old = tl.load(dzo_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * dh
    dh -= dh_old
    r = tl.load(gates_ptr + row + R * H, mask=valid, other=0.0)
    z = tl.load(gates_ptr + row + Z * H, mask=valid, other=0.0)
    nn = tl.load(gates_ptr + row + N * H, mask=valid, other=0.0)
    hn = tl.load(hn_ptr + offs, mask=valid, other=0.0)
    h = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dn = dh * (1.0 - z)  # (G4)
    dz = dh * (h - nn)
    dpn = tl.where(keep, dn * (1.0 - nn * nn), zero)  # (G3)
    dhn = dpn * r
    dpr = dpn * hn * r * (1.0 - r)  # (G1)
    dpz = tl.where(keep, dz * z * (1.0 - z), zero)  # (G2)
    # padded steps pass dh on; elsewhere its direct part z dh (the rest comes through U)
    tl.store(dhc_ptr + offs, tl.where(keep, dh * z + dh_old, dh_in), mask=valid)
    ty = dzx_ptr.dtype.element_ty
    tl.store(dzx_ptr + row + R * H, dpr.to(ty), mask=valid)
    tl.store(dzx_ptr + row + Z * H, dpz.to(ty), mask=valid)
    tl.store(dzx_ptr + row + N * H, dpn.to(ty), mask=valid)
    tl.store(dzh_ptr + row + R * H, dpr.to(ty), mask=valid)
    tl.store(dzh_ptr + row + Z * H, dpz.to(ty), mask=valid)
    tl.store(dzh_ptr + row + N * H, dhn.to(ty), mask=valid)


@kernel()
def gru_before_reset_step(
    zx_ptr,  # (B, 3H) W x + b_ih
    zh_ptr,  # (B, 2H) U_rz h + b_hrz
    h_prev_ptr,  # (B, H)
    rh_ptr,  # (B, H) out: r ⊙ h
    gates_ptr,  # (B, 3H) float32: r and z written here
    H,
    n,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    b = offs // H
    j = offs % H
    row = b * (3 * H) + j
    row2 = b * (2 * H) + j
    x = tl.load(zx_ptr + row + R * H, mask=valid, other=0.0).to(tl.float32)
    x += tl.load(zh_ptr + row2 + R * H, mask=valid, other=0.0).to(tl.float32)
    e = tl.exp(-tl.abs(x))
    r = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # (G1)
    x = tl.load(zx_ptr + row + Z * H, mask=valid, other=0.0).to(tl.float32)
    x += tl.load(zh_ptr + row2 + Z * H, mask=valid, other=0.0).to(tl.float32)
    e = tl.exp(-tl.abs(x))
    z = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # (G2)
    h = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    tl.store(rh_ptr + offs, (r * h).to(rh_ptr.dtype.element_ty), mask=valid)
    tl.store(gates_ptr + row + R * H, r, mask=valid)
    tl.store(gates_ptr + row + Z * H, z, mask=valid)


@kernel(do_not_specialize=["t"])
def gru_before_update_step(
    zx_ptr,  # (B, 3H) W x + b_ih
    zn_ptr,  # (B, H) U_n (r ⊙ h) + b_hn
    h_prev_ptr,  # (B, H)
    lengths_ptr,  # (B,) int32
    h_out_ptr,  # (B, H)
    y_ptr,  # (B, H) the output (with lengths)
    gates_ptr,  # (B, 3H) float32: z read, n written
    dzh_ptr,  # d of (Z1)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    ZH: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    b = offs // H
    row = b * (3 * H) + offs % H
    x = tl.load(zx_ptr + row + N * H, mask=valid, other=0.0).to(tl.float32)
    x += tl.load(zn_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    e = tl.exp(-2.0 * tl.abs(x))
    nn = tl.where(x >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)  # (G3')
    z = tl.load(gates_ptr + row + Z * H, mask=valid, other=0.0)
    h = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    h_new = (1.0 - z) * nn + z * h  # (G4)
    if ZH == 1:  # (Z1)
        h_new += tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * (h - h_new)
    elif ZH == 2:
        h_new += tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * (h - h_new)
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + b, mask=valid, other=0) > t
        tl.store(y_ptr + offs, tl.where(keep, h_new, 0.0).to(y_ptr.dtype.element_ty), mask=valid)
        h_new = tl.where(keep, h_new, h)
    tl.store(h_out_ptr + offs, h_new.to(h_out_ptr.dtype.element_ty), mask=valid)
    tl.store(gates_ptr + row + N * H, nn, mask=valid)


@kernel(do_not_specialize=["t"])
def gru_before_backward_update_step(
    dy_ptr,  # (B, H) gradient of this step's output
    dhg_ptr,  # (B, H) gradient of h' through the next step's U
    dhc_ptr,  # (B, H) float32, the rest of h''s gradient (in/out)
    h_prev_ptr,  # (B, H)
    gates_ptr,  # (B, 3H) float32 r, z, n
    lengths_ptr,  # (B,) int32
    dz_ptr,  # (B, 3H) out: z and n blocks of the pre-activations' gradient
    rm_ptr,  # (B, H) m of (D1) (RD)
    dzo_ptr,  # d of (Z1)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    RD: tl.constexpr,
    ZH: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    b = offs // H
    row = b * (3 * H) + offs % H
    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + b, mask=valid, other=0) > t
    zero = tl.full([BLOCK], 0.0, tl.float32)
    dh_in = tl.load(dhg_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if RD:  # (D1): the next step's products read m ⊙ h'
        dh_in *= tl.load(rm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_in += tl.load(dhc_ptr + offs, mask=valid, other=0.0)
    dh = dh_in + tl.load(dy_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_old = zero
    if ZH == 1:  # (Z1): d of h''s gradient goes to the old h, 1 - d to the candidate
        dh_old = tl.load(dzo_ptr + offs, mask=valid, other=0.0).to(tl.float32) * dh
    elif ZH == 2:
        dh_old = tl.load(dzo_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * dh
    dh -= dh_old
    z = tl.load(gates_ptr + row + Z * H, mask=valid, other=0.0)
    nn = tl.load(gates_ptr + row + N * H, mask=valid, other=0.0)
    h = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dpn = tl.where(keep, dh * (1.0 - z) * (1.0 - nn * nn), zero)  # (G4), (G3')
    dpz = tl.where(keep, dh * (h - nn) * z * (1.0 - z), zero)  # (G4), (G2)
    tl.store(dhc_ptr + offs, tl.where(keep, dh * z + dh_old, dh_in), mask=valid)
    tl.store(dz_ptr + row + Z * H, dpz.to(dz_ptr.dtype.element_ty), mask=valid)
    tl.store(dz_ptr + row + N * H, dpn.to(dz_ptr.dtype.element_ty), mask=valid)


@kernel()
def gru_before_backward_reset_step(
    drh_ptr,  # (B, H) gradient of r ⊙ h (zero on padded rows)
    h_prev_ptr,  # (B, H) h, or m ⊙ h with RD: what the products read
    gates_ptr,  # (B, 3H) float32 r, z, n
    rm_ptr,  # (B, H) m of (D1) (RD)
    dhc_ptr,  # (B, H) float32, h's gradient so far (in/out)
    dz_ptr,  # (B, 3H) out: r block of the pre-activations' gradient
    H,
    n,
    BLOCK: tl.constexpr,
    RD: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    row = (offs // H) * (3 * H) + offs % H
    drh = tl.load(drh_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    r = tl.load(gates_ptr + row + R * H, mask=valid, other=0.0)
    h = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh = drh * r
    if RD:  # (D1)
        dh *= tl.load(rm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    tl.store(dhc_ptr + offs, tl.load(dhc_ptr + offs, mask=valid, other=0.0) + dh, mask=valid)
    tl.store(dz_ptr + row + R * H, (drh * h * r * (1.0 - r)).to(dz_ptr.dtype.element_ty), mask=valid)  # (G1)


def forward(
    spec: GRUSpec,
    zx: Tensor,
    state: tuple[Tensor, ...],
    w: LayerWeights,
    lengths: Tensor | None,
    masks: LayerMasks,
    save: bool,
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor | None]]:
    """One layer in one direction from zx = W x + b_ih (T, B, 3H), with the masks of zoneout
    and recurrent dropout (`LayerMasks()`: none) and, with w.w_ln_hh, (N2) on U h.

    Returns y (T, B, H), the final state (h,) and the tape backward reads.
    """
    T, B, H = zx.shape[0], zx.shape[1], state[0].shape[-1]
    lens, has_lengths = keep_flags(lengths, zx)
    dzo, zone_h = zoneout_flag(masks.zoneout[0] if masks.zoneout else None, zx)
    rm, rd = recurrent_flag(masks.recurrent, zx)
    f32 = dict(device=zx.device, dtype=torch.float32)
    hs = zx.new_empty(T + 1, B, H)  # h before each step, then the final h
    hs[0] = state[0]
    y = zx.new_empty(T, B, H) if has_lengths else hs[1:]
    gates = torch.empty(T if save else 1, B, 3 * H, **f32)
    hm = zx.new_empty(B, H) if rd else None  # m ⊙ h (D1)
    tape: dict[str, Tensor | None] = {"hs": hs, "gates": gates, "uh": None}
    if spec.reset == "after":
        hn = torch.empty(T if save else 1, B, H, **f32)
        zh = zx.new_empty(B, 3 * H)
        uh = zx.new_empty(T if save else 1, B, 3 * H) if w.w_ln_hh is not None else None  # U h before (N2)
        for t in range(T):
            s = t if save else 0
            if hm is not None:
                torch.mul(hs[t], rm, out=hm)
            h_in = hs[t] if hm is None else hm
            if uh is None:
                product_into(h_in, w.w_hh, w.b_hh, zh)
            else:
                torch.mm(h_in, w.w_hh.t(), out=uh[s])
                zh = layer_norm_step(uh[s], w.w_ln_hh, w.b_hh)  # (N2)
            launch(
                gru_after_forward_step,
                B * H,
                zx[t],
                zh,
                hs[t],
                lens,
                hs[t + 1],
                y[t],
                gates[s],
                hn[s],
                dzo[t] if zone_h else dzo,
                t,
                H,
                HAS_LENGTHS=has_lengths,
                ZH=zone_h,
            )
        return y, (hs[T].clone(),), tape | {"extra": hn, "uh": uh}

    w_rz, w_n = w.w_hh[: 2 * H], w.w_hh[2 * H :]
    b_rz, b_n = (None, None) if w.b_hh is None else (w.b_hh[: 2 * H], w.b_hh[2 * H :])
    rh = zx.new_empty(T if save else 1, B, H)
    zh, zn = zx.new_empty(B, 2 * H), zx.new_empty(B, H)
    for t in range(T):
        s = t if save else 0
        if hm is not None:
            torch.mul(hs[t], rm, out=hm)
        h_in = hs[t] if hm is None else hm
        product_into(h_in, w_rz, b_rz, zh)
        launch(gru_before_reset_step, B * H, zx[t], zh, h_in, rh[s], gates[s], H)
        product_into(rh[s], w_n, b_n, zn)
        launch(
            gru_before_update_step,
            B * H,
            zx[t],
            zn,
            hs[t],
            lens,
            hs[t + 1],
            y[t],
            gates[s],
            dzo[t] if zone_h else dzo,
            t,
            H,
            HAS_LENGTHS=has_lengths,
            ZH=zone_h,
        )
    return y, (hs[T].clone(),), tape | {"extra": rh}


def backward(
    spec: GRUSpec,
    w: LayerWeights,
    lengths: Tensor | None,
    masks: LayerMasks,
    tape: dict[str, Tensor | None],
    dy: Tensor,
    dfinal: tuple[Tensor, ...],
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor | None]]:
    """Backward of `forward`: (dzx (T, B, 3H), (dh0,), gradients of w_hh and b_hh (and w_ln_hh))."""
    hs, gates, extra, uh = tape["hs"], tape["gates"], tape["extra"], tape["uh"]
    T, B, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    lens, has_lengths = keep_flags(lengths, hs)
    dzo, zone_h = zoneout_flag(masks.zoneout[0] if masks.zoneout else None, hs)
    rm, rd = recurrent_flag(masks.recurrent, hs)
    h_in = hs[:-1] if not rd else hs[:-1] * rm  # what the products read (D1)
    dy = dy.contiguous()
    dhg = hs.new_zeros(B, H)
    dhc = float32_copy(dfinal[0])  # the kernels update it in place
    dzx = hs.new_empty(T, B, 3 * H)
    if spec.reset == "after":
        dzh = hs.new_empty(T, B, 3 * H)
        duh = hs.new_empty(T, B, 3 * H) if uh is not None else dzh  # gradient of U h: (N2)'s backward
        for t in reversed(range(T)):
            launch(
                gru_after_backward_step,
                B * H,
                dy[t],
                dhg,
                dhc,
                hs[t],
                gates[t],
                extra[t],
                lens,
                dzx[t],
                dzh[t],
                rm,
                dzo[t] if zone_h else dzo,
                t,
                H,
                HAS_LENGTHS=has_lengths,
                RD=rd,
                ZH=zone_h,
            )
            if uh is not None:
                duh[t] = layer_norm_step_backward(uh[t], dzh[t], w.w_ln_hh)  # (N2)
            torch.mm(duh[t], w.w_hh, out=dhg)
        grads: dict[str, Tensor | None] = {"w_hh": rows(duh).t() @ rows(h_in)}
        grads["b_hh"] = dzh.float().sum((0, 1)) if w.b_hh is not None else None
        if uh is not None:
            grads["w_ln_hh"] = (dzh.float() * normalized(uh)[0]).sum((0, 1))
        return dzx, ((dhg if not rd else dhg * rm) + dhc,), grads

    w_rz, w_n = w.w_hh[: 2 * H], w.w_hh[2 * H :]
    drh = hs.new_empty(B, H)
    for t in reversed(range(T)):
        launch(
            gru_before_backward_update_step,
            B * H,
            dy[t],
            dhg,
            dhc,
            hs[t],
            gates[t],
            lens,
            dzx[t],
            rm,
            dzo[t] if zone_h else dzo,
            t,
            H,
            HAS_LENGTHS=has_lengths,
            RD=rd,
            ZH=zone_h,
        )
        torch.mm(dzx[t, :, 2 * H :], w_n, out=drh)
        launch(gru_before_backward_reset_step, B * H, drh, h_in[t], gates[t], rm, dhc, dzx[t], H, RD=rd)
        torch.mm(dzx[t, :, : 2 * H], w_rz, out=dhg)
    dz = rows(dzx)
    grads = {"w_hh": torch.cat([dz[:, : 2 * H].t() @ rows(h_in), dz[:, 2 * H :].t() @ rows(extra)])}
    grads["b_hh"] = dzx.float().sum((0, 1)) if w.b_hh is not None else None
    return dzx, ((dhg if not rd else dhg * rm) + dhc,), grads
