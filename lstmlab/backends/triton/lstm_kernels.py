"""Triton kernels for the LSTM (every flag of `lstmlab.cells.lstm`, equations L1-L7
there), and the time loops that launch them for one layer in one direction.

Per step, forward: the recurrent product U h (+ b_hh) with torch, FGR's V a with
torch, then one kernel for all pointwise work (gates, cell update, masking); with a
projection, the product W_hr m and, with lengths, a small kernel that masks h.
Backward, per step: one kernel for all pointwise work, then the products for dh
(and FGR's da); with a projection, first a small masking kernel and the product
that gives dm. The weight gradients are large products after the loop.

Regularisers (`lstmlab.cells.regularisers`, `lstmlab.cells.layer_norm`): zoneout (Z1)
is part of the step kernels (of the projection kernels for h' = W_hr m), its mask read
per unit or, at evaluation, as one constant (`launch.zoneout_flag`); recurrent dropout
(D1) is one multiplication before the product, and the backward kernels multiply the
product's gradient by m as they read it. Layer normalisation: (N1) before the loop (the
backend), (N2) on each step's U h in torch ops around the product, (N3) on c' inside the
step kernels, which then run one program per batch row (`launch_cells`).

Layout: one step's pre-activations are (B, NG*H), the gate blocks in the weight
rows' order (`LSTMSpec.gates`); the kernels take each gate's block index as a
constexpr (-1: the gate is absent). The cell state, the saved activations and the
carried gradients are float32 whatever the input's dtype; h, m and FGR's a keep the
input's dtype, since they feed matrix products.

No `from __future__ import annotations` here: Triton reads `tl.constexpr` from the
kernels' annotations, which must stay objects, not strings.
"""

from typing import Any

import torch
import triton.language as tl
from torch import Tensor

from lstmlab.backends.base import rows
from lstmlab.backends.triton.launch import (
    Kernel,
    add_combine,
    float32_copy,
    keep_flags,
    kernel,
    launch,
    launch_rows,
    product_into,
    recurrent_flag,
    zoneout_flag,
)
from lstmlab.backends.triton.layer_norm import layer_norm_step, layer_norm_step_backward, normalized
from lstmlab.cells import LayerWeights, LSTMSpec
from lstmlab.cells.layer_norm import EPS
from lstmlab.cells.regularisers import LayerMasks

LN_EPS = tl.constexpr(EPS)  # compiled kernels read only constexpr globals


def constexprs(spec: LSTMSpec) -> dict[str, int]:
    """The kernels' cell flags: block index of each gate (NG blocks), of each
    peephole vector and of each FGR block (NR blocks); -1 where absent."""

    def index(names: tuple[str, ...], gate: str) -> int:
        return names.index(gate) if gate in names else -1

    flags = {f"B{gate.upper()}": index(spec.gates, gate) for gate in ("i", "f", "g", "o")}
    flags |= {f"P{gate.upper()}": index(spec.peephole_gates, gate) for gate in ("i", "f", "o")}
    flags |= {f"R{gate.upper()}": index(spec.recurrent_gates, gate) for gate in ("i", "f", "o")}
    flags |= {"NG": len(spec.gates), "NR": len(spec.recurrent_gates), "COUPLED": int(spec.coupled)}
    flags |= {"TANH_G": int(spec.input_activation == "tanh"), "TANH_H": int(spec.output_activation == "tanh")}
    return flags


@kernel(do_not_specialize=["t"])
def lstm_forward_step(
    zx_ptr,  # (B, NG*H) W x + b_ih
    zh_ptr,  # (B, NG*H) U h + b_hh
    za_ptr,  # (B, NR*H) V a (FGR)
    c_ptr,  # (B, H) float32, the previous cell state
    p_ptr,  # peephole vectors
    h_prev_ptr,  # (B, H) the previous h (no projection, with lengths)
    a_prev_ptr,  # (B, NR*H) the previous gate state (FGR)
    lengths_ptr,  # (B,) int32
    c_out_ptr,  # (B, H) float32
    h_out_ptr,  # (B, H) h' without a projection, m with one
    y_ptr,  # (B, H) the output (no projection, with lengths)
    a_out_ptr,  # (B, NR*H) (FGR)
    gates_ptr,  # (B, NG*H) float32 activations, for backward
    dzh_ptr,  # d of (Z1) for h (no projection; see launch.zoneout_flag)
    dzc_ptr,  # d of (Z1) for c
    cand_ptr,  # (B, H) float32 out: the candidate c~ before zoneout (ZC or LN)
    lnc_ptr,  # (H,) γ_c of (N3) (LN)
    lnb_ptr,  # (H,) β_c of (N3) (LN)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    BI: tl.constexpr,
    BF: tl.constexpr,
    BG: tl.constexpr,
    BO: tl.constexpr,
    PI: tl.constexpr,
    PF: tl.constexpr,
    PO: tl.constexpr,
    RI: tl.constexpr,
    RF: tl.constexpr,
    RO: tl.constexpr,
    NG: tl.constexpr,
    NR: tl.constexpr,
    COUPLED: tl.constexpr,
    TANH_G: tl.constexpr,
    TANH_H: tl.constexpr,
    PROJ: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    ZH: tl.constexpr,
    ZC: tl.constexpr,
    LN: tl.constexpr,
):
    if LN:  # one program per batch row: (N3) reduces over the row
        j = tl.arange(0, BLOCK)
        b = tl.program_id(0) + tl.full([BLOCK], 0, tl.int32)
        valid = j < H
        offs = b * H + j
    else:
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offs < n
        b = offs // H
        j = offs % H
    row = b * (NG * H) + j
    arow = b * (NR * H) + j
    one = tl.full([BLOCK], 1.0, tl.float32)
    c = tl.load(c_ptr + offs, mask=valid, other=0.0)

    i = one
    if BI >= 0:  # (L1)
        x = tl.load(zx_ptr + row + BI * H, mask=valid, other=0.0).to(tl.float32)
        x += tl.load(zh_ptr + row + BI * H, mask=valid, other=0.0).to(tl.float32)
        if RI >= 0:
            x += tl.load(za_ptr + arow + RI * H, mask=valid, other=0.0).to(tl.float32)
        if PI >= 0:
            x += tl.load(p_ptr + PI * H + j, mask=valid, other=0.0).to(tl.float32) * c
        e = tl.exp(-tl.abs(x))  # sigmoid from exp(-|x|), which never overflows
        i = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    f = one
    if COUPLED:  # (L2) CIFG
        f = 1.0 - i
    elif BF >= 0:  # (L2)
        x = tl.load(zx_ptr + row + BF * H, mask=valid, other=0.0).to(tl.float32)
        x += tl.load(zh_ptr + row + BF * H, mask=valid, other=0.0).to(tl.float32)
        if RF >= 0:
            x += tl.load(za_ptr + arow + RF * H, mask=valid, other=0.0).to(tl.float32)
        if PF >= 0:
            x += tl.load(p_ptr + PF * H + j, mask=valid, other=0.0).to(tl.float32) * c
        e = tl.exp(-tl.abs(x))
        f = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    g = tl.load(zx_ptr + row + BG * H, mask=valid, other=0.0).to(tl.float32)  # (L3)
    g += tl.load(zh_ptr + row + BG * H, mask=valid, other=0.0).to(tl.float32)
    if TANH_G:
        e = tl.exp(-2.0 * tl.abs(g))
        g = tl.where(g >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)
    c_new = f * c + i * g  # (L4)
    o = one
    if BO >= 0:  # (L5)
        x = tl.load(zx_ptr + row + BO * H, mask=valid, other=0.0).to(tl.float32)
        x += tl.load(zh_ptr + row + BO * H, mask=valid, other=0.0).to(tl.float32)
        if RO >= 0:
            x += tl.load(za_ptr + arow + RO * H, mask=valid, other=0.0).to(tl.float32)
        if PO >= 0:
            x += tl.load(p_ptr + PO * H + j, mask=valid, other=0.0).to(tl.float32) * c_new
        e = tl.exp(-tl.abs(x))
        o = tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    cn = c_new
    if LN:  # (N3) on the candidate c' (the carried state is not normalised)
        mean = tl.reduce(tl.where(valid, c_new, 0.0), 0, add_combine) / H
        centred = tl.where(valid, c_new - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.reduce(centred * centred, 0, add_combine) / H + LN_EPS)
        normed = centred * rstd
        cn = normed * tl.load(lnc_ptr + j, mask=valid, other=0.0).to(tl.float32)
        cn += tl.load(lnb_ptr + j, mask=valid, other=0.0).to(tl.float32)
    hc = cn
    if TANH_H:
        e = tl.exp(-2.0 * tl.abs(cn))
        hc = tl.where(cn >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)
    m = o * hc  # (L6); h' = m, or W_hr m (L7) after this kernel

    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + b, mask=valid, other=0) > t
    c_state = c_new
    if ZC > 0 or LN:  # backward reads the candidate c~ = c_new
        tl.store(cand_ptr + offs, c_new, mask=valid)
    if ZC > 0:  # (Z1) on c; the output gate's peephole saw the candidate
        if ZC == 1:
            d = tl.load(dzc_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        else:
            d = tl.load(dzc_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32)
        c_state = c_new + d * (c - c_new)
    tl.store(c_out_ptr + offs, tl.where(keep, c_state, c), mask=valid)
    if PROJ:  # zoneout and lengths act on h' = W_hr m, after this kernel
        tl.store(h_out_ptr + offs, m.to(h_out_ptr.dtype.element_ty), mask=valid)
    elif HAS_LENGTHS or ZH > 0:
        h_prev = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        h_state = m
        if ZH == 1:  # (Z1) on h
            h_state = m + tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * (h_prev - m)
        elif ZH == 2:
            h_state = m + tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * (h_prev - m)
        tl.store(h_out_ptr + offs, tl.where(keep, h_state, h_prev).to(h_out_ptr.dtype.element_ty), mask=valid)
        if HAS_LENGTHS:
            tl.store(y_ptr + offs, tl.where(keep, h_state, 0.0).to(y_ptr.dtype.element_ty), mask=valid)
    else:
        tl.store(h_out_ptr + offs, m.to(h_out_ptr.dtype.element_ty), mask=valid)
    if RI >= 0:
        a_prev = tl.load(a_prev_ptr + arow + RI * H, mask=valid, other=0.0).to(tl.float32)
        tl.store(a_out_ptr + arow + RI * H, tl.where(keep, i, a_prev).to(a_out_ptr.dtype.element_ty), mask=valid)
    if RF >= 0:
        a_prev = tl.load(a_prev_ptr + arow + RF * H, mask=valid, other=0.0).to(tl.float32)
        tl.store(a_out_ptr + arow + RF * H, tl.where(keep, f, a_prev).to(a_out_ptr.dtype.element_ty), mask=valid)
    if RO >= 0:
        a_prev = tl.load(a_prev_ptr + arow + RO * H, mask=valid, other=0.0).to(tl.float32)
        tl.store(a_out_ptr + arow + RO * H, tl.where(keep, o, a_prev).to(a_out_ptr.dtype.element_ty), mask=valid)
    if BI >= 0:
        tl.store(gates_ptr + row + BI * H, i, mask=valid)
    if BF >= 0:
        tl.store(gates_ptr + row + BF * H, f, mask=valid)
    tl.store(gates_ptr + row + BG * H, g, mask=valid)
    if BO >= 0:
        tl.store(gates_ptr + row + BO * H, o, mask=valid)


@kernel(do_not_specialize=["t"])
def lstm_backward_step(
    dy_ptr,  # (B, H) gradient of this step's output (no projection)
    dhg_ptr,  # (B, H) gradient of h' through the next step's U (no projection)
    dhc_ptr,  # (B, H) float32, gradient of h' carried past padding (in/out; no projection)
    dm_ptr,  # (B, H) gradient of m, already masked (projection)
    dc_ptr,  # (B, H) float32, gradient of the cell state (in/out)
    dag_ptr,  # (B, NR*H) gradient of a' through the next step's V (FGR)
    dac_ptr,  # (B, NR*H) float32, gradient of a' carried past padding (in/out; FGR)
    gates_ptr,  # (B, NG*H) float32 activations
    c_ptr,  # (B, H) float32, the previous cell state
    c_new_ptr,  # (B, H) float32, this step's cell state
    p_ptr,  # peephole vectors
    lengths_ptr,  # (B,) int32
    dz_ptr,  # (B, NG*H) out: gradient of the pre-activations
    dza_ptr,  # (B, NR*H) out: the same for FGR's gates, contiguous
    rm_ptr,  # (B, H) m of (D1): dhg is the gradient of m ⊙ h' (RD, no projection)
    dzh_ptr,  # d of (Z1) for h (no projection)
    dzc_ptr,  # d of (Z1) for c
    lnc_ptr,  # (H,) γ_c of (N3) (LN)
    lnb_ptr,  # (H,) β_c of (N3) (LN)
    dcn_ptr,  # (B, H) float32 out: gradient of γ_c ⊙ N(c') + β_c (LN)
    t,
    H,
    n,
    BLOCK: tl.constexpr,
    BI: tl.constexpr,
    BF: tl.constexpr,
    BG: tl.constexpr,
    BO: tl.constexpr,
    PI: tl.constexpr,
    PF: tl.constexpr,
    PO: tl.constexpr,
    RI: tl.constexpr,
    RF: tl.constexpr,
    RO: tl.constexpr,
    NG: tl.constexpr,
    NR: tl.constexpr,
    COUPLED: tl.constexpr,
    TANH_G: tl.constexpr,
    TANH_H: tl.constexpr,
    PROJ: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    RD: tl.constexpr,
    ZH: tl.constexpr,
    ZC: tl.constexpr,
    LN: tl.constexpr,
):
    if LN:  # one program per batch row: (N3) reduces over the row
        j = tl.arange(0, BLOCK)
        b = tl.program_id(0) + tl.full([BLOCK], 0, tl.int32)
        valid = j < H
        offs = b * H + j
    else:
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offs < n
        b = offs // H
        j = offs % H
    row = b * (NG * H) + j
    arow = b * (NR * H) + j
    one = tl.full([BLOCK], 1.0, tl.float32)
    zero = tl.full([BLOCK], 0.0, tl.float32)
    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + b, mask=valid, other=0) > t

    # padded steps pass the incoming gradients on: dz = 0 there, so the products add nothing
    if PROJ:
        dh = tl.load(dm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    else:
        dh_in = tl.load(dhg_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        if RD:  # (D1): the next step's product read m ⊙ h'
            dh_in *= tl.load(rm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        dh_in += tl.load(dhc_ptr + offs, mask=valid, other=0.0)
        dh = dh_in + tl.load(dy_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        dh_old = zero
        if ZH > 0:  # (Z1): d of h''s gradient goes to the old h, 1 - d to the candidate
            if ZH == 1:
                d = tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32)
            else:
                d = tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32)
            dh_old = d * dh
            dh = dh - dh_old
        tl.store(dhc_ptr + offs, tl.where(keep, dh_old, dh_in), mask=valid)
    dc_in = tl.load(dc_ptr + offs, mask=valid, other=0.0)
    dc_cand = dc_in
    dc_old = zero
    if ZC > 0:  # (Z1) on c, as on h
        if ZC == 1:
            d = tl.load(dzc_ptr + offs, mask=valid, other=0.0).to(tl.float32)
        else:
            d = tl.load(dzc_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32)
        dc_old = d * dc_in
        dc_cand = dc_in - dc_old
    da_i = zero
    da_f = zero
    da_o = zero
    if RI >= 0:
        da_i = tl.load(dag_ptr + arow + RI * H, mask=valid, other=0.0).to(tl.float32)
        da_i += tl.load(dac_ptr + arow + RI * H, mask=valid, other=0.0)
        tl.store(dac_ptr + arow + RI * H, tl.where(keep, zero, da_i), mask=valid)
    if RF >= 0:
        da_f = tl.load(dag_ptr + arow + RF * H, mask=valid, other=0.0).to(tl.float32)
        da_f += tl.load(dac_ptr + arow + RF * H, mask=valid, other=0.0)
        tl.store(dac_ptr + arow + RF * H, tl.where(keep, zero, da_f), mask=valid)
    if RO >= 0:
        da_o = tl.load(dag_ptr + arow + RO * H, mask=valid, other=0.0).to(tl.float32)
        da_o += tl.load(dac_ptr + arow + RO * H, mask=valid, other=0.0)
        tl.store(dac_ptr + arow + RO * H, tl.where(keep, zero, da_o), mask=valid)

    c = tl.load(c_ptr + offs, mask=valid, other=0.0)
    c_new = tl.load(c_new_ptr + offs, mask=valid, other=0.0)
    i = one
    if BI >= 0:
        i = tl.load(gates_ptr + row + BI * H, mask=valid, other=0.0)
    f = one
    if COUPLED:
        f = 1.0 - i
    elif BF >= 0:
        f = tl.load(gates_ptr + row + BF * H, mask=valid, other=0.0)
    g = tl.load(gates_ptr + row + BG * H, mask=valid, other=0.0)
    o = one
    if BO >= 0:
        o = tl.load(gates_ptr + row + BO * H, mask=valid, other=0.0)
    cn = c_new
    if LN:  # (N3) on the candidate c' (the carried state is not normalised)
        mean = tl.reduce(tl.where(valid, c_new, 0.0), 0, add_combine) / H
        centred = tl.where(valid, c_new - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.reduce(centred * centred, 0, add_combine) / H + LN_EPS)
        normed = centred * rstd
        cn = normed * tl.load(lnc_ptr + j, mask=valid, other=0.0).to(tl.float32)
        cn += tl.load(lnb_ptr + j, mask=valid, other=0.0).to(tl.float32)
    hc = cn
    if TANH_H:
        e = tl.exp(-2.0 * tl.abs(cn))
        hc = tl.where(cn >= 0, 1.0, -1.0) * (1.0 - e) / (1.0 + e)
    dcn = dh * o  # (L6)
    if TANH_H:
        dcn *= 1.0 - hc * hc
    if LN:  # (N3)'s backward; its gain and bias sum dcn over rows and steps after the loop
        tl.store(dcn_ptr + offs, tl.where(keep, dcn, zero), mask=valid)
        dn = dcn * tl.load(lnc_ptr + j, mask=valid, other=0.0).to(tl.float32)
        dn_mean = tl.reduce(tl.where(valid, dn, 0.0), 0, add_combine) / H
        dnn_mean = tl.reduce(tl.where(valid, dn * normed, 0.0), 0, add_combine) / H
        dcn = rstd * (dn - dn_mean - normed * dnn_mean)
    dc_new = dc_cand + dcn
    if BO >= 0:  # (L5)
        dpo = (dh * hc + da_o) * o * (1.0 - o)
        if PO >= 0:
            dc_new += dpo * tl.load(p_ptr + PO * H + j, mask=valid, other=0.0).to(tl.float32)
        tl.store(dz_ptr + row + BO * H, tl.where(keep, dpo, zero).to(dz_ptr.dtype.element_ty), mask=valid)
        if RO >= 0:
            tl.store(dza_ptr + arow + RO * H, tl.where(keep, dpo, zero).to(dza_ptr.dtype.element_ty), mask=valid)
    df = dc_new * c  # (L4)
    di = dc_new * g
    dg = dc_new * i
    dc = dc_new * f
    if TANH_G:  # (L3)
        dpg = dg * (1.0 - g * g)
    else:
        dpg = dg
    tl.store(dz_ptr + row + BG * H, tl.where(keep, dpg, zero).to(dz_ptr.dtype.element_ty), mask=valid)
    if COUPLED:  # (L2) f = 1 - i
        di = di - df
    elif BF >= 0:  # (L2)
        dpf = (df + da_f) * f * (1.0 - f)
        if PF >= 0:
            dc += dpf * tl.load(p_ptr + PF * H + j, mask=valid, other=0.0).to(tl.float32)
        tl.store(dz_ptr + row + BF * H, tl.where(keep, dpf, zero).to(dz_ptr.dtype.element_ty), mask=valid)
        if RF >= 0:
            tl.store(dza_ptr + arow + RF * H, tl.where(keep, dpf, zero).to(dza_ptr.dtype.element_ty), mask=valid)
    if BI >= 0:  # (L1)
        dpi = (di + da_i) * i * (1.0 - i)
        if PI >= 0:
            dc += dpi * tl.load(p_ptr + PI * H + j, mask=valid, other=0.0).to(tl.float32)
        tl.store(dz_ptr + row + BI * H, tl.where(keep, dpi, zero).to(dz_ptr.dtype.element_ty), mask=valid)
        if RI >= 0:
            tl.store(dza_ptr + arow + RI * H, tl.where(keep, dpi, zero).to(dza_ptr.dtype.element_ty), mask=valid)
    if ZC > 0:
        dc += dc_old
    tl.store(dc_ptr + offs, tl.where(keep, dc, dc_in), mask=valid)


@kernel(do_not_specialize=["t"])
def project_forward_step(
    hp_ptr,  # (B, P) W_hr m
    h_prev_ptr,  # (B, P)
    lengths_ptr,  # (B,) int32
    dzh_ptr,  # d of (Z1) for h
    h_out_ptr,  # (B, P)
    y_ptr,  # (B, P) (with lengths)
    t,
    P,
    n,
    BLOCK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    ZH: tl.constexpr,
):
    """(L7) with lengths or zoneout: h' zoned out (Z1); padded rows keep h and output zero."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    hp = tl.load(hp_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    h_prev = tl.load(h_prev_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if ZH == 1:
        hp += tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * (h_prev - hp)
    elif ZH == 2:
        hp += tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * (h_prev - hp)
    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + offs // P, mask=valid, other=0) > t
        tl.store(y_ptr + offs, tl.where(keep, hp, 0.0).to(y_ptr.dtype.element_ty), mask=valid)
    tl.store(h_out_ptr + offs, tl.where(keep, hp, h_prev).to(h_out_ptr.dtype.element_ty), mask=valid)


@kernel(do_not_specialize=["t"])
def project_backward_step(
    dy_ptr,  # (B, P) gradient of this step's output
    dhg_ptr,  # (B, P) gradient of h' through the next step's U
    dhc_ptr,  # (B, P) float32, gradient of h' carried past padding (in/out)
    lengths_ptr,  # (B,) int32
    rm_ptr,  # (B, P) m of (D1): dhg is the gradient of m ⊙ h' (RD)
    dzh_ptr,  # d of (Z1) for h
    dhp_ptr,  # (B, P) out: gradient of W_hr m (zero on padded rows)
    t,
    P,
    n,
    BLOCK: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    RD: tl.constexpr,
    ZH: tl.constexpr,
):
    """Gradient of h' = W_hr m (L7), masked: the input of the product dm = dh' W_hr."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    keep = valid
    if HAS_LENGTHS:
        keep = tl.load(lengths_ptr + offs // P, mask=valid, other=0) > t
    dh_in = tl.load(dhg_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    if RD:  # (D1)
        dh_in *= tl.load(rm_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    dh_in += tl.load(dhc_ptr + offs, mask=valid, other=0.0)
    dh = dh_in + tl.load(dy_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    zero = tl.full([BLOCK], 0.0, tl.float32)
    dh_old = zero
    if ZH == 1:  # (Z1): d to the old h, 1 - d to the candidate W_hr m
        dh_old = tl.load(dzh_ptr + offs, mask=valid, other=0.0).to(tl.float32) * dh
    elif ZH == 2:
        dh_old = tl.load(dzh_ptr + offs * 0, mask=valid, other=0.0).to(tl.float32) * dh
    tl.store(dhc_ptr + offs, tl.where(keep, dh_old, dh_in), mask=valid)
    tl.store(dhp_ptr + offs, tl.where(keep, dh - dh_old, zero).to(dhp_ptr.dtype.element_ty), mask=valid)


def launch_cells(k: Kernel, B: int, H: int, ln: bool, *args: Any, **constexprs: Any) -> None:
    """Launch a step kernel over the (B, H) cells: in flat blocks, or with layer normalisation
    one program per batch row, since (N3) reduces over each row of c'."""
    if ln:
        launch_rows(k, B, H, *args, LN=True, **constexprs)
    else:
        launch(k, B * H, *args, LN=False, **constexprs)


def forward(
    spec: LSTMSpec,
    zx: Tensor,
    state: tuple[Tensor, ...],
    w: LayerWeights,
    lengths: Tensor | None,
    masks: LayerMasks,
    save: bool,
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor | None]]:
    """One layer in one direction from zx = W x + b_ih (T, B, NG*H), with the masks of
    zoneout and recurrent dropout (`LayerMasks()`: none).

    Returns y (T, B, P), the final state (h, c[, a]) and the tape backward reads.
    """
    T, B = zx.shape[0], zx.shape[1]
    h0, c0 = state[0], state[1]
    P, H = h0.shape[-1], c0.shape[-1]
    flags = constexprs(spec)
    proj, fgr = w.w_hr is not None, spec.gate_recurrence
    lens, has_lengths = keep_flags(lengths, zx)
    zoned = masks.zoneout or (None, None)
    dzh, zone_h = zoneout_flag(zoned[0], zx)
    dzc, zone_c = zoneout_flag(zoned[1], zx)
    rm, rd = recurrent_flag(masks.recurrent, zx)
    f32 = dict(device=zx.device, dtype=torch.float32)
    dummy = zx.new_empty(1)

    hs = zx.new_empty(T + 1, B, P)  # h before each step, then the final h
    hs[0] = h0
    cs = torch.empty(T + 1, B, H, **f32)
    cs[0] = c0
    acts = zx.new_empty(T + 1, B, flags["NR"] * H) if fgr else None
    if acts is not None:
        acts[0] = state[2]
    y = zx.new_empty(T, B, P) if has_lengths else hs[1:]
    gates = torch.empty(T if save else 1, B, flags["NG"] * H, **f32)
    ln = w.w_ln_hh is not None  # (N2), (N3); (N1) is the backend's
    cands = torch.empty(T if save else 1, B, H, **f32) if zone_c or ln else None  # c~ before zoneout
    uh = zx.new_empty(T if save else 1, B, flags["NG"] * H) if ln else None  # U h before (N2)
    ms = zx.new_empty(T if save else 1, B, H) if proj else None
    zh = zx.new_empty(B, flags["NG"] * H)
    za = zx.new_empty(B, flags["NR"] * H) if fgr else dummy
    hp = zx.new_empty(B, P) if proj and (has_lengths or zone_h) else None
    hm = zx.new_empty(B, P) if rd else None  # m ⊙ h (D1)
    p = w.w_ch.contiguous() if w.w_ch is not None else dummy
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
        if acts is not None:
            torch.mm(acts[t], w.w_gh.t(), out=za)
        launch_cells(
            lstm_forward_step,
            B,
            H,
            ln,
            zx[t],
            zh,
            za,
            cs[t],
            p,
            hs[t],
            acts[t] if acts is not None else dummy,
            lens,
            cs[t + 1],
            ms[s] if ms is not None else hs[t + 1],
            y[t],
            acts[t + 1] if acts is not None else dummy,
            gates[s],
            dzh[t] if zone_h and not proj else dummy,
            dzc[t] if zone_c else dummy,
            cands[s] if cands is not None else dummy,
            w.w_ln_c if ln else dummy,
            w.b_ln_c if ln else dummy,
            t,
            H,
            PROJ=proj,
            HAS_LENGTHS=has_lengths,
            ZH=0 if proj else zone_h,
            ZC=zone_c,
            **flags,
        )
        if ms is not None and hp is None:
            torch.mm(ms[s], w.w_hr.t(), out=hs[t + 1])
        elif ms is not None:
            torch.mm(ms[s], w.w_hr.t(), out=hp)
            dz = dzh[t] if zone_h else dummy
            launch(project_forward_step, B * P, hp, hs[t], lens, dz, hs[t + 1], y[t], t, P, HAS_LENGTHS=has_lengths, ZH=zone_h)
    final: tuple[Tensor, ...] = (hs[T].clone(), cs[T].to(zx.dtype))
    if acts is not None:
        final += (acts[T].clone(),)
    tape = {"hs": hs, "cs": cs, "acts": acts, "gates": gates, "ms": ms, "cands": cands, "uh": uh}
    return y, final, tape


def backward(
    spec: LSTMSpec,
    w: LayerWeights,
    lengths: Tensor | None,
    masks: LayerMasks,
    tape: dict[str, Tensor | None],
    dy: Tensor,
    dfinal: tuple[Tensor, ...],
) -> tuple[Tensor, tuple[Tensor, ...], dict[str, Tensor | None]]:
    """Backward of `forward`: (dzx (T, B, NG*H), gradients of the initial state,
    gradients of w_hh, b_hh, w_ch, w_gh, w_hr)."""
    hs, cs, acts, gates, ms, cands, uh = (tape[k] for k in ("hs", "cs", "acts", "gates", "ms", "cands", "uh"))
    T, B, P = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    H = cs.shape[-1]
    flags = constexprs(spec)
    proj, fgr = w.w_hr is not None, spec.gate_recurrence
    lens, has_lengths = keep_flags(lengths, hs)
    zoned = masks.zoneout or (None, None)
    dzh, zone_h = zoneout_flag(zoned[0], hs)
    dzc, zone_c = zoneout_flag(zoned[1], hs)
    rm, rd = recurrent_flag(masks.recurrent, hs)
    dummy = hs.new_empty(1)
    dy = dy.contiguous()

    dz = hs.new_empty(T, B, flags["NG"] * H)
    dza = hs.new_empty(T, B, flags["NR"] * H) if fgr else None
    dhp = hs.new_empty(T, B, P) if proj else None
    dhg = hs.new_zeros(B, P)
    dhc, dc = float32_copy(dfinal[0]), float32_copy(dfinal[1])  # the kernels update these in place
    dag = hs.new_zeros(B, flags["NR"] * H) if fgr else dummy
    dac = float32_copy(dfinal[2]) if fgr else dummy
    dm = hs.new_empty(B, H) if proj else dummy
    p = w.w_ch.contiguous() if w.w_ch is not None else dummy
    ln = uh is not None
    duh = hs.new_empty(T, B, flags["NG"] * H) if ln else dz  # gradient of U h: (N2)'s backward
    dcn = torch.empty(T, B, H, device=hs.device, dtype=torch.float32) if ln else None  # of γ_c ⊙ N(c') + β_c
    for t in reversed(range(T)):
        if dhp is not None:
            launch(
                project_backward_step,
                B * P,
                dy[t],
                dhg,
                dhc,
                lens,
                rm,
                dzh[t] if zone_h else dummy,
                dhp[t],
                t,
                P,
                HAS_LENGTHS=has_lengths,
                RD=rd,
                ZH=zone_h,
            )
            torch.mm(dhp[t], w.w_hr, out=dm)
        launch_cells(
            lstm_backward_step,
            B,
            H,
            ln,
            dy[t],
            dhg,
            dhc,
            dm,
            dc,
            dag,
            dac,
            gates[t],
            cs[t],
            cands[t] if cands is not None else cs[t + 1],
            p,
            lens,
            dz[t],
            dza[t] if dza is not None else dummy,
            rm,
            dzh[t] if zone_h and not proj else dummy,
            dzc[t] if zone_c else dummy,
            w.w_ln_c if ln else dummy,
            w.b_ln_c if ln else dummy,
            dcn[t] if dcn is not None else dummy,
            t,
            H,
            PROJ=proj,
            HAS_LENGTHS=has_lengths,
            RD=rd and not proj,
            ZH=0 if proj else zone_h,
            ZC=zone_c,
            **flags,
        )
        if ln:
            duh[t] = layer_norm_step_backward(uh[t], dz[t], w.w_ln_hh)  # (N2)
        torch.mm(duh[t], w.w_hh, out=dhg)
        if dza is not None:
            torch.mm(dza[t], w.w_gh, out=dag)

    dstate: tuple[Tensor, ...] = ((dhg if not rd else dhg * rm) + dhc, dc)
    if fgr:
        dstate += (dag + dac,)
    h_in = hs[:-1] if not rd else hs[:-1] * rm  # what the products read (D1)
    grads: dict[str, Tensor | None] = {"w_hh": rows(duh).t() @ rows(h_in)}
    grads["b_hh"] = dz.float().sum((0, 1)) if w.b_hh is not None else None
    if ln:
        grads["w_ln_hh"] = (dz.float() * normalized(uh)[0]).sum((0, 1))
        grads["w_ln_c"] = (dcn * normalized(cands)[0]).sum((0, 1))
        grads["b_ln_c"] = dcn.sum((0, 1))
    if spec.peephole:
        blocks = {gate: dz[..., k * H : (k + 1) * H].float() for k, gate in enumerate(spec.gates)}
        c_new = cs[1:] if cands is None else cands  # the output gate peeks at the candidate c~
        cell = {"i": cs[:-1], "f": cs[:-1], "o": c_new}  # input and forget gates peek at c, the output gate at c'
        grads["w_ch"] = torch.cat([(blocks[gate] * cell[gate]).sum((0, 1)) for gate in spec.peephole_gates])
    if dza is not None:
        grads["w_gh"] = rows(dza).t() @ rows(acts[:-1])
    if dhp is not None:
        grads["w_hr"] = rows(dhp).t() @ rows(ms)
    return dz, dstate, grads
