// The LSTM and every variant of it (lstmlab/cells/lstm.py: L1-L7): gates present
// or not, peepholes, CIFG, the activations G and H, full gate recurrence (FGR) and
// the projection. Sizes: H the cell's, P that of h (proj_size, else H).

#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <cstring>
#include <tuple>

#include "activations.h"
#include "cells.h"
#include "gemm.h"
#include "products.h"

namespace lstmlab {
namespace {

template <typename S>
ForwardResult forward(const LSTMFlags& F, const ForwardInputs& in) {
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.c0.size(1), P = in.h0.size(1), GH = in.w_ih.size(0);
  const int64_t RH = F.R() * H;
  const bool proj = in.w_hr.defined(), fgr = F.gate_recurrence, save = in.save;
  const Lengths& len = in.len;
  auto opts = in.x.options();
  // gates: pre-activations, then in place the activations (i, f, g, o) backward needs.
  // Layer normalisation: (N1) here, wx W x before it; (N2) on uh = U h (all steps if saved).
  const bool ln = in.layer_norm(), ln_c = in.w_ln_c.defined();
  Tensor gates, wx;
  if (ln)
    std::tie(gates, wx) = normalized_input_projection(in.x, in.w_ih, in.w_ln_ih, summed_bias(in.b_ih, in.b_hh));
  else
    gates = input_projection(in.x, in.w_ih, summed_bias(in.b_ih, in.b_hh));
  Tensor uh = ln ? at::empty({save ? T : 1, B, GH}, opts) : Tensor();
  const S* gain_c = data_or_null<S>(in.w_ln_c);
  const S* bias_c = data_or_null<S>(in.b_ln_c);
  const S* gain_hh = data_or_null<S>(in.w_ln_hh);
  Tensor y = at::empty({T, B, P}, opts);
  Tensor hs = len.given ? at::empty({T, B, P}, opts) : y;  // the state sequence; y is zero where padded
  // with the projection, m = o ⊙ H(c') before it (all steps if saved)
  Tensor ms = proj ? at::empty({save ? T : 1, B, H}, opts) : Tensor();
  S* msp = data_or_null<S>(ms);
  const S* Whr = data_or_null<S>(in.w_hr);
  Tensor cs = save ? at::empty({T, B, H}, opts) : at::empty({2, B, H}, opts);
  Tensor scratch = at::empty({B, H}, opts);  // f = 1 - i (CIFG)
  Tensor ones = at::ones({H}, opts), zeros = at::zeros({H}, opts);
  S* G = gates.data_ptr<S>();
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* csp = cs.data_ptr<S>();
  S* fs = scratch.data_ptr<S>();
  const S* W = in.w_hh.data_ptr<S>();
  const S* one = ones.data_ptr<S>();
  const S* zero = zeros.data_ptr<S>();
  const S* pch = data_or_null<S>(in.w_ch);
  const S* p_i = F.peephole_i >= 0 ? pch + F.peephole_i * H : zero;
  const S* p_f = F.peephole_f >= 0 ? pch + F.peephole_f * H : zero;
  const S* p_o = F.peephole_o >= 0 ? pch + F.peephole_o * H : zero;
  // FGR: the activations a (all steps if saved), and V a_{t-1} for the current step
  Tensor as = fgr ? at::empty({save ? T : 2, B, RH}, opts) : Tensor();
  Tensor za = fgr ? at::empty({B, RH}, opts) : Tensor();
  S* asp = data_or_null<S>(as);
  S* zap = data_or_null<S>(za);
  const S* V = data_or_null<S>(in.w_gh);
  // the regularisers: (D1) the recurrent product multiplies hm = m ⊙ h; (Z1) d per state
  const S* mask = data_or_null<S>(in.recurrent_mask);
  Tensor hm = mask ? at::empty({B, P}, opts) : Tensor();
  S* hmp = data_or_null<S>(hm);
  const ZoneoutMask<S> zh(in.zoneout_h), zc(in.zoneout_c);

  for (int64_t t = 0; t < T; ++t) {
    const S* hp = t == 0 ? in.h0.data_ptr<S>() : hsp + (t - 1) * B * P;
    const S* cp = t == 0 ? in.c0.data_ptr<S>() : csp + (save ? (t - 1) : (t - 1) % 2) * B * H;
    S* hn = hsp + t * B * P;
    S* cn = csp + (save ? t : t % 2) * B * H;
    S* Gt = G + t * B * GH;
    S* mt = proj ? msp + (save ? t : 0) * B * H : nullptr;
    if (mask) mask_rows<S>(B, P, mask, hp, hmp);  // (D1)
    S* uht = ln ? uh.data_ptr<S>() + (save ? t : 0) * B * GH : nullptr;
    if (ln) {  // U h alone; the row pass adds (N2) γ_hh ⊙ N(U h)
      gemm<S>(false, true, B, GH, P, mask ? hmp : hp, P, W, P, S(0), uht, GH);
    } else {
      gemm<S>(false, true, B, GH, P, mask ? hmp : hp, P, W, P, S(1), Gt, GH);
    }
    const S* ap = nullptr;
    S* an = nullptr;
    if (fgr) {
      ap = t == 0 ? in.a0.data_ptr<S>() : asp + (save ? (t - 1) : (t - 1) % 2) * B * RH;
      an = asp + (save ? t : t % 2) * B * RH;
      gemm<S>(false, true, B, RH, RH, ap, RH, V, RH, S(0), zap, RH);
    }
    for_rows(B, GH, [&](int64_t b) {
      const S* c = cp + b * H;
      const S* h = hp + b * P;
      S* c2 = cn + b * H;
      S* h2 = hn + b * P;
      S* m = proj ? mt + b * H : h2;
      S* yb = yp + (t * B + b) * P;
      if (!len.keep(t, b)) {
        std::memcpy(c2, c, H * sizeof(S));
        std::memcpy(h2, h, P * sizeof(S));
        if (yb != h2) std::memset(yb, 0, P * sizeof(S));
        if (fgr) std::memcpy(an + b * RH, ap + b * RH, RH * sizeof(S));
        if (proj) std::memset(m, 0, H * sizeof(S));  // no gradient reaches W_hr from here
        return;
      }
      S* z = Gt + b * GH;
      if (ln) add_normalized_row<S>(GH, uht + b * GH, gain_hh, z);  // (N2)
      for (int64_t k = 0; k < F.R(); ++k) {  // (L1, L2, L5) the V a terms
        S* zk = z + F.rblock[k] * H;
        const S* vk = zap + b * RH + k * H;
        for (int64_t j = 0; j < H; ++j) zk[j] += vk[j];
      }
      S* zi = F.gate_i >= 0 ? z + F.gate_i * H : nullptr;
      S* zf = F.gate_f >= 0 ? z + F.gate_f * H : nullptr;
      S* zg = z + F.gate_g * H;
      S* zo = F.gate_o >= 0 ? z + F.gate_o * H : nullptr;
      if (zi)
        for (int64_t j = 0; j < H; ++j) zi[j] = sigmoid_<S>(zi[j] + p_i[j] * c[j]);  // (L1)
      const S* i = zi ? zi : one;
      const S* f = one;
      if (zf) {
        for (int64_t j = 0; j < H; ++j) zf[j] = sigmoid_<S>(zf[j] + p_f[j] * c[j]);  // (L2)
        f = zf;
      } else if (F.coupled) {
        S* fb = fs + b * H;
        for (int64_t j = 0; j < H; ++j) fb[j] = S(1) - i[j];  // (L2) CIFG
        f = fb;
      }
      if (F.tanh_g)
        for (int64_t j = 0; j < H; ++j) zg[j] = tanh_(zg[j]);  // (L3)
      for (int64_t j = 0; j < H; ++j) c2[j] = f[j] * c[j] + i[j] * zg[j];  // (L4)
      if (zo)
        for (int64_t j = 0; j < H; ++j) zo[j] = sigmoid_<S>(zo[j] + p_o[j] * c2[j]);  // (L5)
      const S* o = zo ? zo : one;
      if (ln_c) {  // (N3) (L6) m = o ⊙ H(γ_c ⊙ N(c') + β_c)
        S mean, rstd;
        row_statistics<S>(H, c2, mean, rstd);
        for (int64_t j = 0; j < H; ++j) {
          const S v = gain_c[j] * (c2[j] - mean) * rstd + bias_c[j];
          m[j] = o[j] * (F.tanh_h ? tanh_(v) : v);
        }
      } else if (F.tanh_h)
        for (int64_t j = 0; j < H; ++j) m[j] = o[j] * tanh_(c2[j]);  // (L6)
      else
        for (int64_t j = 0; j < H; ++j) m[j] = o[j] * c2[j];  // (L6) NOAF
      if (zc) zoneout<S>(H, zc.row(t, b), c, c2);  // (Z1): the carried c', after o and m saw c~
      if (!proj && zh) zoneout<S>(H, zh.row(t, b), h, h2);  // (Z1)
      if (!proj && yb != h2) std::memcpy(yb, h2, H * sizeof(S));
      for (int64_t k = 0; k < F.R(); ++k)  // FGR: a' = the new activations
        std::memcpy(an + b * RH + k * H, z + F.rblock[k] * H, H * sizeof(S));
    });
    if (proj) {
      gemm<S>(false, true, B, P, H, mt, H, Whr, H, S(0), hn, P);  // (L7) h' = W_hr m
      if (len.given || zh)
        for_rows(B, P, [&](int64_t b) {
          S* h2 = hn + b * P;
          S* yb = yp + (t * B + b) * P;
          if (!len.keep(t, b)) {
            std::memcpy(h2, hp + b * P, P * sizeof(S));  // the state carries; y stays zero
            return;
          }
          if (zh) zoneout<S>(P, zh.row(t, b), hp + b * P, h2);  // (Z1)
          if (yb != h2) std::memcpy(yb, h2, P * sizeof(S));
        });
    }
  }
  const int64_t last = save ? T - 1 : (T - 1) % 2;
  ForwardResult r;
  r.y = y;
  r.h_n = hs[T - 1].clone();
  r.c_n = cs[last].clone();
  if (fgr) r.a_n = as[last].clone();
  if (!save) return r;
  if (len.given) r.hs = hs;
  r.cs = cs;
  r.gates = gates;
  if (fgr) r.acts = as;
  if (proj) r.ms = ms;
  if (ln) r.wx = wx, r.uh = uh;
  return r;
}

// ---------------------------------------------------------------------------------
// Backward of one row at one step, equation by equation in reverse. d-prefixed:
// gradients; dz_x that of gate x's pre-activation; dc' arrives from step t + 1
// and dc leaves for step t - 1. Absent gates read as ones, absent peepholes and
// FGR terms as zeros.

// (L6) m = o ⊙ H(c'): dc' += dm ⊙ o ⊙ H'(c'). Leaves H(c') in hc for (L5).
template <typename S>
inline void cell_output_grad(bool tanh_h, int64_t H, const S* dm, const S* o, const S* c2, const S* dc2_next, S* hc,
                             S* dc2) {
  if (tanh_h) {
    for (int64_t j = 0; j < H; ++j) hc[j] = tanh_(c2[j]);
    for (int64_t j = 0; j < H; ++j) dc2[j] = dc2_next[j] + dm[j] * o[j] * (S(1) - hc[j] * hc[j]);
  } else {  // NOAF
    std::memcpy(hc, c2, H * sizeof(S));
    for (int64_t j = 0; j < H; ++j) dc2[j] = dc2_next[j] + dm[j] * o[j];
  }
}

// (L6) with (N3): m = o ⊙ H(γ ⊙ N(c') + β). As cell_output_grad, and the per-row sums of
// γ's and β's gradients into dgb (2H: γ's, then β's); nd (2H) is scratch.
template <typename S>
inline void normalized_cell_output_grad(bool tanh_h, int64_t H, const S* dm, const S* o, const S* c2,
                                        const S* dc2_next, const S* gain, const S* bias, S* hc, S* dc2, S* nd,
                                        S* dgb) {
  S mean, rstd;
  row_statistics<S>(H, c2, mean, rstd);
  S* n = nd;
  S* dv = nd + H;  // the gradient of γ ⊙ N(c') + β
  for (int64_t j = 0; j < H; ++j) {
    n[j] = (c2[j] - mean) * rstd;
    const S v = gain[j] * n[j] + bias[j];
    hc[j] = tanh_h ? tanh_(v) : v;
    dv[j] = dm[j] * o[j] * (tanh_h ? S(1) - hc[j] * hc[j] : S(1));
  }
  for (int64_t j = 0; j < H; ++j) dgb[j] += dv[j] * n[j];
  for (int64_t j = 0; j < H; ++j) dgb[H + j] += dv[j];
  // the means of g = dv ⊙ γ and of g ⊙ N(c')
  const S g_mean = lane_sum<S>(H, [&](int64_t j) { return dv[j] * gain[j]; }) / S(H);
  const S gn_mean = lane_sum<S>(H, [&](int64_t j) { return dv[j] * gain[j] * n[j]; }) / S(H);
  for (int64_t j = 0; j < H; ++j) dc2[j] = dc2_next[j] + rstd * (dv[j] * gain[j] - g_mean - n[j] * gn_mean);
}

// (L1) (L2) (L5) a sigmoid gate s = σ(z + p ⊙ c_seen + V a) that multiplies `by` in a
// product whose gradient is dprod: dz = (dprod ⊙ by + da) ⊙ s ⊙ (1 − s), where da is
// FGR's gradient of s from the next step.
template <typename S>
inline void sigmoid_gate_grad(int64_t H, const S* dprod, const S* by, const S* da, const S* s, S* dz) {
  for (int64_t j = 0; j < H; ++j) dz[j] = (dprod[j] * by[j] + da[j]) * s[j] * (S(1) - s[j]);
}

// (L1) with (L2) CIFG's f = 1 − i: i multiplies g and, through f, −c.
template <typename S>
inline void coupled_input_gate_grad(int64_t H, const S* dc2, const S* g, const S* c, const S* da, const S* i, S* dz) {
  for (int64_t j = 0; j < H; ++j) dz[j] = (dc2[j] * (g[j] - c[j]) + da[j]) * i[j] * (S(1) - i[j]);
}

// A gate's peephole term p ⊙ c_seen: the cell state gets dz ⊙ p (p is zero without
// peepholes), and p gets dz ⊙ c_seen. Separate loops from the gate's: with one store
// stream each they vectorize.
template <typename S>
inline void peephole_grads(int64_t H, const S* dz, const S* p, const S* c_seen, S* dc_seen, S* dp) {
  for (int64_t j = 0; j < H; ++j) dc_seen[j] += dz[j] * p[j];
  if (dp)
    for (int64_t j = 0; j < H; ++j) dp[j] += dz[j] * c_seen[j];
}

// (L4) c' = f ⊙ c + i ⊙ g: dc = dc' ⊙ f, with CIFG's f = 1 − i.
template <typename S>
inline void cell_state_grad(bool coupled, int64_t H, const S* dc2, const S* f, const S* i, S* dc) {
  if (coupled)
    for (int64_t j = 0; j < H; ++j) dc[j] = dc2[j] * (S(1) - i[j]);
  else
    for (int64_t j = 0; j < H; ++j) dc[j] = dc2[j] * f[j];
}

// (L3) g = G(z_g): dz_g = dc' ⊙ i ⊙ G'(z_g).
template <typename S>
inline void cell_input_grad(bool tanh_g, int64_t H, const S* dc2, const S* i, const S* g, S* dz) {
  if (tanh_g)
    for (int64_t j = 0; j < H; ++j) dz[j] = dc2[j] * i[j] * (S(1) - g[j] * g[j]);
  else  // NIAF
    for (int64_t j = 0; j < H; ++j) dz[j] = dc2[j] * i[j];
}

template <typename S>
BackwardResult backward(const LSTMFlags& F, const BackwardInputs& in) {
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.c0.size(1), P = in.h0.size(1), GH = in.w_ih.size(0);
  const int64_t RH = F.R() * H, NP = F.NP();
  const bool proj = in.w_hr.defined(), fgr = F.gate_recurrence;
  const Lengths& len = in.len;
  auto opts = in.x.options();
  Tensor dZ = at::empty({T, B, GH}, opts);
  Tensor dh = at::empty({2, B, P}, opts), dc = at::empty({2, B, H}, opts);
  dh[0].copy_(in.dh_n);
  dc[0].copy_(in.dc_n);
  // per row: dh' + dy, H(c'), dc', c~ (zoneout of c), N(c') and its gradient (N3)
  Tensor scratch = at::empty({B, 6 * H}, opts);
  Tensor dp = at::zeros({B, std::max<int64_t>(NP, 1) * H}, opts);  // per-row peephole gradient sums
  Tensor ones = at::ones({H}, opts), zeros = at::zeros({H}, opts);
  const S* G = in.gates.data_ptr<S>();
  const S* csp = in.cs.data_ptr<S>();
  const S* dyp = in.dy.data_ptr<S>();
  S* dZp = dZ.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* dcp = dc.data_ptr<S>();
  S* sc = scratch.data_ptr<S>();
  S* dpp = dp.data_ptr<S>();
  const S* W = in.w_hh.data_ptr<S>();
  const S* one = ones.data_ptr<S>();
  const S* zero = zeros.data_ptr<S>();
  const S* pch = data_or_null<S>(in.w_ch);
  const S* p_i = F.peephole_i >= 0 ? pch + F.peephole_i * H : zero;
  const S* p_f = F.peephole_f >= 0 ? pch + F.peephole_f * H : zero;
  const S* p_o = F.peephole_o >= 0 ? pch + F.peephole_o * H : zero;
  // FGR: dA the pre-activation gradients of the recurrent gates, da the gradient of a
  Tensor dA = fgr ? at::empty({T, B, RH}, opts) : Tensor();
  Tensor da = fgr ? at::empty({2, B, RH}, opts) : Tensor();
  if (fgr) da[0].copy_(in.da_n);
  S* dAp = data_or_null<S>(dA);
  S* dap = data_or_null<S>(da);
  const S* V = data_or_null<S>(in.w_gh);
  // projection: dH the gradient of h' at each step (zero where padded), dm = dH W_hr
  Tensor dH = proj ? at::empty({T, B, P}, opts) : Tensor();
  Tensor dm = proj ? at::empty({B, H}, opts) : Tensor();
  S* dHp = data_or_null<S>(dH);
  S* dmp = data_or_null<S>(dm);
  const S* Whr = data_or_null<S>(in.w_hr);
  // the regularisers: (D1) dhm the gradient reaching m ⊙ h through the recurrent product;
  // (Z1) the cell computed the candidates s~ and s' = s~ + d ⊙ (s − s~), so s~ gets (1 − d) ⊙ ds'
  // and s gets d ⊙ ds' besides what flows through the cell
  const S* mask = data_or_null<S>(in.recurrent_mask);
  Tensor dhm = mask ? at::empty({B, P}, opts) : Tensor();
  S* dhmp = data_or_null<S>(dhm);
  const ZoneoutMask<S> zh(in.zoneout_h), zc(in.zoneout_c);
  // layer normalisation: dUh the gradient of U h before (N2); per-row sums of γ_c's and β_c's (N3)
  const bool ln = in.layer_norm(), ln_c = in.w_ln_c.defined();
  Tensor dUh = ln ? at::empty({T, B, GH}, opts) : Tensor();
  Tensor dln = ln_c ? at::zeros({B, 2 * H}, opts) : Tensor();
  S* dlnp = data_or_null<S>(dln);
  const S* gain_c = data_or_null<S>(in.w_ln_c);
  const S* bias_c = data_or_null<S>(in.b_ln_c);
  const S* gain_hh = data_or_null<S>(in.w_ln_hh);
  Tensor dln_hh = ln ? at::zeros({B, GH}, opts) : Tensor();  // per-row sums of γ_hh's gradient
  S* dgain_hh = data_or_null<S>(dln_hh);

  for (int64_t t = T - 1; t >= 0; --t) {
    const S* cp = t == 0 ? in.c0.data_ptr<S>() : csp + (t - 1) * B * H;
    const S* cn = csp + t * B * H;
    const S* Gt = G + t * B * GH;
    S* dZt = dZp + t * B * GH;
    const int64_t next = (T - 1 - t) % 2;  // gradients from step t + 1 in [next], to step t - 1 in the other
    S* dh_in = dhp + next * B * P;
    S* dh_out = dhp + (1 - next) * B * P;
    S* dc_in = dcp + next * B * H;
    S* dc_out = dcp + (1 - next) * B * H;
    S* dAt = fgr ? dAp + t * B * RH : nullptr;
    S* da_in = fgr ? dap + next * B * RH : nullptr;
    S* da_out = fgr ? dap + (1 - next) * B * RH : nullptr;
    S* dHt = proj ? dHp + t * B * P : nullptr;
    S* dUt = ln ? dUh.data_ptr<S>() + t * B * GH : nullptr;  // (N2) the gradient of U h
    const S* uht = ln ? in.uh.data_ptr<S>() + t * B * GH : nullptr;
    if (proj) {  // (L7) h~ = W_hr m: dm = dh~ W_hr, dh~ = dh' + dy (times 1 − d with zoneout)
      for_rows(B, P, [&](int64_t b) {
        S* dHb = dHt + b * P;
        const S* dhi = dh_in + b * P;
        const S* dyb = dyp + (t * B + b) * P;
        if (!len.keep(t, b)) {
          std::memset(dHb, 0, P * sizeof(S));
        } else if (zh) {
          const S* d = zh.row(t, b);
          for (int64_t j = 0; j < P; ++j) dHb[j] = (S(1) - d[j]) * (dhi[j] + dyb[j]);  // (Z1)
        } else {
          for (int64_t j = 0; j < P; ++j) dHb[j] = dhi[j] + dyb[j];
        }
      });
      gemm<S>(false, false, B, H, P, dHt, P, Whr, H, S(0), dmp, H);
    }
    for_rows(B, GH, [&](int64_t b) {
      S* dz = dZt + b * GH;
      const S* dhi = dh_in + b * P;
      const S* dci = dc_in + b * H;
      S* dho = dh_out + b * P;
      S* dco = dc_out + b * H;
      if (!len.keep(t, b)) {  // padded: the gradients pass through to step t - 1
        std::memset(dz, 0, GH * sizeof(S));
        if (ln) std::memset(dUt + b * GH, 0, GH * sizeof(S));
        std::memcpy(dho, dhi, P * sizeof(S));
        std::memcpy(dco, dci, H * sizeof(S));
        if (fgr) {
          std::memset(dAt + b * RH, 0, RH * sizeof(S));
          std::memcpy(da_out + b * RH, da_in + b * RH, RH * sizeof(S));
        }
        return;
      }
      const S* dyb = dyp + (t * B + b) * P;
      if (zh) {  // (Z1) d ⊙ (dh' + dy); the recurrent product adds dh after the row pass
        const S* d = zh.row(t, b);
        for (int64_t j = 0; j < P; ++j) dho[j] = d[j] * (dhi[j] + dyb[j]);
      } else {
        std::memset(dho, 0, P * sizeof(S));  // the recurrent product adds dh after the row pass
      }
      const S* z = Gt + b * GH;
      const S* i = F.gate_i >= 0 ? z + F.gate_i * H : one;
      const S* f = F.gate_f >= 0 ? z + F.gate_f * H : one;
      const S* g = z + F.gate_g * H;
      const S* o = F.gate_o >= 0 ? z + F.gate_o * H : one;
      const S* c = cp + b * H;
      S* sum = sc + b * 6 * H;
      S* hc = sum + H;
      S* dc2 = hc + H;
      const S* c2 = cn + b * H;
      const S* dc_next = dci;  // what reaches the cell's own c~ from step t + 1
      if (zc) {  // (Z1) c' was zoned: the cell's c~ = f ⊙ c + i ⊙ g (L4) again, and (1 − d) ⊙ dc'
        S* ct = dc2 + H;
        const S* d = zc.row(t, b);
        if (F.coupled)
          for (int64_t j = 0; j < H; ++j) ct[j] = (S(1) - i[j]) * c[j] + i[j] * g[j];
        else
          for (int64_t j = 0; j < H; ++j) ct[j] = f[j] * c[j] + i[j] * g[j];
        for (int64_t j = 0; j < H; ++j) dc2[j] = (S(1) - d[j]) * dci[j];
        c2 = ct;
        dc_next = dc2;
      }
      // FGR: the gradient reaching each recurrent gate's activation from the next step
      const S* dai = F.ri >= 0 ? da_in + b * RH + F.ri * H : zero;
      const S* daf = F.rf >= 0 ? da_in + b * RH + F.rf * H : zero;
      const S* dao = F.ro >= 0 ? da_in + b * RH + F.ro * H : zero;
      S* dp_row = dpp + b * NP * H;
      if (!proj && zh) {
        const S* d = zh.row(t, b);
        for (int64_t j = 0; j < H; ++j) sum[j] = (S(1) - d[j]) * (dhi[j] + dyb[j]);  // (L7) h~ = m, (Z1)
      } else if (!proj) {
        for (int64_t j = 0; j < H; ++j) sum[j] = dhi[j] + dyb[j];  // (L7) h' = m
      }
      const S* dmb = proj ? dmp + b * H : sum;

      if (ln_c)  // (L6) with (N3)
        normalized_cell_output_grad<S>(F.tanh_h, H, dmb, o, c2, dc_next, gain_c, bias_c, hc, dc2, dc2 + 2 * H,
                                       dlnp + b * 2 * H);
      else
        cell_output_grad<S>(F.tanh_h, H, dmb, o, c2, dc_next, hc, dc2);  // (L6)
      if (F.gate_o >= 0) {  // (L5)
        S* dzo = dz + F.gate_o * H;
        sigmoid_gate_grad<S>(H, dmb, hc, dao, o, dzo);
        peephole_grads<S>(H, dzo, p_o, c2, dc2, F.peephole_o >= 0 ? dp_row + F.peephole_o * H : nullptr);
      }
      cell_state_grad<S>(F.coupled, H, dc2, f, i, dco);  // (L4)
      cell_input_grad<S>(F.tanh_g, H, dc2, i, g, dz + F.gate_g * H);  // (L3)
      if (F.gate_f >= 0) {  // (L2)
        S* dzf = dz + F.gate_f * H;
        sigmoid_gate_grad<S>(H, dc2, c, daf, f, dzf);
        peephole_grads<S>(H, dzf, p_f, c, dco, F.peephole_f >= 0 ? dp_row + F.peephole_f * H : nullptr);
      }
      if (F.gate_i >= 0) {  // (L1), and (L2) when coupled
        S* dzi = dz + F.gate_i * H;
        if (F.coupled)
          coupled_input_gate_grad<S>(H, dc2, g, c, dai, i, dzi);
        else
          sigmoid_gate_grad<S>(H, dc2, g, dai, i, dzi);
        peephole_grads<S>(H, dzi, p_i, c, dco, F.peephole_i >= 0 ? dp_row + F.peephole_i * H : nullptr);
      }
      if (zc) {  // (Z1) the old c's share d ⊙ dc'
        const S* d = zc.row(t, b);
        for (int64_t j = 0; j < H; ++j) dco[j] += d[j] * dci[j];
      }
      if (fgr) {  // the V a terms: dA gathers the recurrent gates' dz, the product adds da
        std::memset(da_out + b * RH, 0, RH * sizeof(S));
        for (int64_t k = 0; k < F.R(); ++k) std::memcpy(dAt + b * RH + k * H, dz + F.rblock[k] * H, H * sizeof(S));
      }
      if (ln) normalized_row_backward<S>(GH, uht + b * GH, dz, gain_hh, dUt + b * GH, dgain_hh + b * GH);  // (N2)
    });
    const S* dU = ln ? dUt : dZt;  // the gradient of U h
    if (mask) {  // (D1) dh += m ⊙ (dz U)
      gemm<S>(false, false, B, P, GH, dU, GH, W, P, S(0), dhmp, P);
      add_masked_rows<S>(B, P, mask, dhmp, dh_out);
    } else {
      gemm<S>(false, false, B, P, GH, dU, GH, W, P, S(1), dh_out, P);
    }
    if (fgr) gemm<S>(false, false, B, RH, RH, dAt, RH, V, RH, S(1), da_out, RH);
  }
  const int64_t last = T % 2;
  BackwardResult r;
  r.dh0 = dh[last].clone();
  r.dc0 = dc[last].clone();
  if (ln)
    normalized_weight_grads(r, with_masked_states(in), dZ, dZ, dUh), r.dw_ln_hh = dln_hh.sum(0);
  else
    weight_grads(r, with_masked_states(in), dZ, dZ);
  if (ln_c) r.dw_ln_c = dln.narrow(1, 0, H).sum(0), r.db_ln_c = dln.narrow(1, H, H).sum(0);
  if (NP) r.dw_ch = dp.sum(0);
  if (fgr) {
    r.da0 = da[last].clone();
    r.dw_gh = recurrent_grad(dA, 0, RH, in.acts, in.a0);
  }
  if (proj) r.dw_hr = at::mm(dH.view({T * B, P}).t(), in.ms.view({T * B, H}));
  return r;
}

}  // namespace

ForwardResult lstm_forward(const LSTMFlags& flags, const ForwardInputs& in) {
  if (lstm_inference_runs(flags, in)) return lstm_inference(flags, in);
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_lstm_forward",
                                    [&] { return forward<scalar_t>(flags, in); });
}

BackwardResult lstm_backward(const LSTMFlags& flags, const BackwardInputs& in) {
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_lstm_backward",
                                    [&] { return backward<scalar_t>(flags, in); });
}

}  // namespace lstmlab
