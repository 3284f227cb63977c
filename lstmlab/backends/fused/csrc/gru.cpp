// The GRU (lstmlab/cells/gru.py: G1-G4), reset "after" (torch) or "before" (Cho et
// al., G3'). Gate blocks r, z, n.

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cstring>
#include <tuple>

#include "activations.h"
#include "cells.h"
#include "gemm.h"
#include "products.h"

namespace lstmlab {
namespace {

template <typename S>
ForwardResult forward(const GRUFlags& F, const ForwardInputs& in) {
  const bool before = F.reset_before;
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.h0.size(1), GH = 3 * H;
  const Lengths& len = in.len;
  auto opts = in.x.options();
  // b_hh folds into the projection except b_hn with reset "after", which r multiplies.
  Tensor bias, b_hn;
  if (in.b_ih.defined()) {
    bias = in.b_ih.clone();
    if (before) {
      bias += in.b_hh;
    } else {
      bias.narrow(0, 0, 2 * H).add_(in.b_hh.narrow(0, 0, 2 * H));
      b_hn = in.b_hh.narrow(0, 2 * H, H).contiguous();
    }
  }
  // Layer normalisation (reset "after" only): (N1) here, wx W x before it; (N2) on uh = U h.
  const bool ln = in.layer_norm();
  Tensor gates, wx;
  if (ln)
    std::tie(gates, wx) = normalized_input_projection(in.x, in.w_ih, in.w_ln_ih, bias);
  else
    gates = input_projection(in.x, in.w_ih, bias);
  Tensor uh = ln && in.save ? at::empty({T, B, GH}, opts) : Tensor();
  S* uhp = data_or_null<S>(uh);
  Tensor y = at::empty({T, B, H}, opts);
  Tensor hs = len.given ? at::empty({T, B, H}, opts) : y;
  // extra: U_n h + b_hn ("after") or r ⊙ h ("before") of every step, for backward.
  Tensor extra = in.save ? at::empty({T, B, H}, opts) : at::empty({1, B, H}, opts);
  Tensor gh = at::empty({B, GH}, opts);
  Tensor zeros = at::zeros({H}, opts);
  S* Gp = gates.data_ptr<S>();
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* ex = extra.data_ptr<S>();
  S* ghp = gh.data_ptr<S>();
  const S* W = in.w_hh.data_ptr<S>();
  const S* bn = b_hn.defined() ? b_hn.data_ptr<S>() : zeros.data_ptr<S>();
  const S* gain_hh = data_or_null<S>(in.w_ln_hh);
  // the regularisers: (D1) the recurrent products multiply hm = m ⊙ h, (G4) h itself; (Z1) d
  const S* mask = data_or_null<S>(in.recurrent_mask);
  Tensor hm = mask ? at::empty({B, H}, opts) : Tensor();
  S* hmp = data_or_null<S>(hm);
  const ZoneoutMask<S> zh(in.zoneout_h);

  for (int64_t t = 0; t < T; ++t) {
    const S* hp = t == 0 ? in.h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    if (mask) mask_rows<S>(B, H, mask, hp, hmp);  // (D1)
    const S* hin = mask ? hmp : hp;
    S* hn = hsp + t * B * H;
    S* Gt = Gp + t * B * GH;
    S* et = ex + (in.save ? t : 0) * B * H;
    auto finish = [&](int64_t b) {  // masked rows: keep the state, output zero
      std::memcpy(hn + b * H, hp + b * H, H * sizeof(S));
      S* yb = yp + (t * B + b) * H;
      if (yb != hn + b * H) std::memset(yb, 0, H * sizeof(S));
    };
    if (!before) {
      gemm<S>(false, true, B, GH, H, hin, H, W, H, S(0), ghp, GH);
      for_rows(B, GH, [&](int64_t b) {
        S* u = ghp + b * GH;
        if (uhp) std::memcpy(uhp + (t * B + b) * GH, u, GH * sizeof(S));  // every row: backward reads them all
        if (!len.keep(t, b)) return finish(b);
        if (ln) normalize_row<S>(GH, u, gain_hh, u);  // (N2) γ_hh ⊙ N(U h) in place of U h
        S* z = Gt + b * GH;
        const S* h = hp + b * H;
        S* e = et + b * H;
        S* h2 = hn + b * H;
        S *r_ = z, *z_ = z + H, *n_ = z + 2 * H;
        for (int64_t j = 0; j < H; ++j) r_[j] = sigmoid_<S>(r_[j] + u[j]);  // (G1)
        for (int64_t j = 0; j < H; ++j) z_[j] = sigmoid_<S>(z_[j] + u[H + j]);  // (G2)
        for (int64_t j = 0; j < H; ++j) e[j] = u[2 * H + j] + bn[j];
        for (int64_t j = 0; j < H; ++j) n_[j] = tanh_(n_[j] + r_[j] * e[j]);  // (G3)
        for (int64_t j = 0; j < H; ++j) h2[j] = (S(1) - z_[j]) * n_[j] + z_[j] * h[j];  // (G4)
        if (zh) zoneout<S>(H, zh.row(t, b), h, h2);  // (Z1)
        S* yb = yp + (t * B + b) * H;
        if (yb != h2) std::memcpy(yb, h2, H * sizeof(S));
      });
    } else {
      gemm<S>(false, true, B, 2 * H, H, hin, H, W, H, S(0), ghp, GH);
      for_rows(B, GH, [&](int64_t b) {
        S* e = et + b * H;
        const S* h = hin + b * H;
        if (!len.keep(t, b)) {
          std::memset(e, 0, H * sizeof(S));
          return;
        }
        S* z = Gt + b * GH;
        const S* u = ghp + b * GH;
        for (int64_t j = 0; j < H; ++j) z[j] = sigmoid_<S>(z[j] + u[j]);  // (G1)
        for (int64_t j = 0; j < H; ++j) z[H + j] = sigmoid_<S>(z[H + j] + u[H + j]);  // (G2)
        for (int64_t j = 0; j < H; ++j) e[j] = z[j] * h[j];  // r ⊙ h of (G3')
      });
      gemm<S>(false, true, B, H, H, et, H, W + 2 * H * H, H, S(0), ghp + 2 * H, GH);
      for_rows(B, GH, [&](int64_t b) {
        if (!len.keep(t, b)) return finish(b);
        S* z = Gt + b * GH;
        const S* u = ghp + b * GH + 2 * H;
        const S* h = hp + b * H;
        S* h2 = hn + b * H;
        const S* z_ = z + H;
        S* n_ = z + 2 * H;
        for (int64_t j = 0; j < H; ++j) n_[j] = tanh_(n_[j] + u[j]);  // (G3')
        for (int64_t j = 0; j < H; ++j) h2[j] = (S(1) - z_[j]) * n_[j] + z_[j] * h[j];  // (G4)
        if (zh) zoneout<S>(H, zh.row(t, b), h, h2);  // (Z1)
        S* yb = yp + (t * B + b) * H;
        if (yb != h2) std::memcpy(yb, h2, H * sizeof(S));
      });
    }
  }
  ForwardResult r;
  r.y = y;
  r.h_n = hs[T - 1].clone();
  if (!in.save) return r;
  if (len.given) r.hs = hs;
  r.gates = gates;
  r.extra = extra;
  if (ln) r.wx = wx, r.uh = uh;
  return r;
}

template <typename S>
BackwardResult backward(const GRUFlags& F, const BackwardInputs& in) {
  const bool before = F.reset_before;
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.h0.size(1), GH = 3 * H;
  const Lengths& len = in.len;
  auto opts = in.x.options();
  Tensor dZx = at::empty({T, B, GH}, opts);
  // reset "after": the gradient of U h + b_h differs from dZx in the n block only.
  Tensor dZh = before ? dZx : at::empty({T, B, GH}, opts);
  Tensor dh = at::empty({2, B, H}, opts);
  dh[0].copy_(in.dh_n);
  Tensor drh = at::empty({B, H}, opts);
  const S* Gp = in.gates.data_ptr<S>();
  const S* hsp = in.hs.data_ptr<S>();
  const S* ex = in.extra.data_ptr<S>();
  const S* dyp = in.dy.data_ptr<S>();
  S* dzxp = dZx.data_ptr<S>();
  S* dzhp = dZh.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* drp = drh.data_ptr<S>();
  const S* W = in.w_hh.data_ptr<S>();
  // the regularisers: (D1) dhm the gradient reaching m ⊙ h through the recurrent products;
  // (Z1) h~ gets (1 − d) ⊙ dh', the old h d ⊙ dh' besides what flows through the cell
  const S* mask = data_or_null<S>(in.recurrent_mask);
  Tensor dhm = mask ? at::empty({B, H}, opts) : Tensor();
  S* dhmp = data_or_null<S>(dhm);
  const ZoneoutMask<S> zh(in.zoneout_h);
  // layer normalisation (reset "after"): dUh the gradient of U h before (N2)
  const bool ln = in.layer_norm();
  Tensor dUh = ln ? at::empty({T, B, GH}, opts) : Tensor();
  const S* gain_hh = data_or_null<S>(in.w_ln_hh);
  Tensor dln_hh = ln ? at::zeros({B, GH}, opts) : Tensor();  // per-row sums of γ_hh's gradient
  S* dgain_hh = data_or_null<S>(dln_hh);

  for (int64_t t = T - 1; t >= 0; --t) {
    const S* hp = t == 0 ? in.h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    const S* Gt = Gp + t * B * GH;
    const S* et = ex + t * B * H;
    S* dxt = dzxp + t * B * GH;
    S* dht = dzhp + t * B * GH;
    const int64_t next = (T - 1 - t) % 2;  // dh from step t + 1 in dh[next], to step t - 1 in the other
    S* dh_in = dhp + next * B * H;
    S* dh_out = dhp + (1 - next) * B * H;
    S* dUt = ln ? dUh.data_ptr<S>() + t * B * GH : nullptr;  // (N2) the gradient of U h
    const S* uht = ln ? in.uh.data_ptr<S>() + t * B * GH : nullptr;
    for_rows(B, GH, [&](int64_t b) {
      S* dzx = dxt + b * GH;
      S* dzh = dht + b * GH;
      const S* dhi = dh_in + b * H;
      S* dho = dh_out + b * H;
      if (!len.keep(t, b)) {
        std::memset(dzx, 0, GH * sizeof(S));
        if (dzh != dzx) std::memset(dzh, 0, GH * sizeof(S));
        if (ln) std::memset(dUt + b * GH, 0, GH * sizeof(S));
        std::memcpy(dho, dhi, H * sizeof(S));
        return;
      }
      const S* z = Gt + b * GH;
      const S *r_ = z, *z_ = z + H, *n_ = z + 2 * H;
      const S* h = hp + b * H;
      const S* e = et + b * H;
      const S* dyb = dyp + (t * B + b) * H;
      const S* zd = zh ? zh.row(t, b) : nullptr;
      for (int64_t j = 0; j < H; ++j) {
        const S sum = dhi[j] + dyb[j];
        const S d = zd ? (S(1) - zd[j]) * sum : sum;  // (Z1)
        S dn = d * (S(1) - z_[j]);  // (G4)
        S dz = d * (h[j] - n_[j]);
        dho[j] = zd ? d * z_[j] + zd[j] * sum : d * z_[j];
        S dpn = dn * (S(1) - n_[j] * n_[j]);  // (G3) / (G3')
        dzx[2 * H + j] = dpn;
        dzx[H + j] = dz * z_[j] * (S(1) - z_[j]);  // (G2)
        if (!before) {
          dzh[2 * H + j] = dpn * r_[j];  // (G3)
          S dr = dpn * e[j];
          dzx[j] = dr * r_[j] * (S(1) - r_[j]);  // (G1)
          dzh[j] = dzx[j];
          dzh[H + j] = dzx[H + j];
        }
      }
      if (ln) normalized_row_backward<S>(GH, uht + b * GH, dzh, gain_hh, dUt + b * GH, dgain_hh + b * GH);  // (N2)
    });
    if (!before) {
      const S* dU = ln ? dUt : dht;  // the gradient of U h
      if (mask) {  // (D1) dh += m ⊙ (dz U)
        gemm<S>(false, false, B, H, GH, dU, GH, W, H, S(0), dhmp, H);
        add_masked_rows<S>(B, H, mask, dhmp, dh_out);
      } else {
        gemm<S>(false, false, B, H, GH, dU, GH, W, H, S(1), dh_out, H);
      }
      continue;
    }
    gemm<S>(false, false, B, H, H, dxt + 2 * H, GH, W + 2 * H * H, H, S(0), drp, H);
    // the gradient reaching the recurrent products' input: dh itself, or m ⊙ h's (D1)
    S* dh_rec = mask ? dhmp : dh_out;
    for_rows(B, GH, [&](int64_t b) {
      S* dhr = dh_rec + b * H;
      if (!len.keep(t, b)) {
        if (mask) std::memset(dhr, 0, H * sizeof(S));
        return;
      }
      S* dzx = dxt + b * GH;
      const S* r_ = Gt + b * GH;
      const S* h = hp + b * H;
      const S* m = mask ? mask + b * H : nullptr;
      const S* d = drp + b * H;
      if (mask)
        for (int64_t j = 0; j < H; ++j) {
          dhr[j] = d[j] * r_[j];  // (G3') through r ⊙ (m ⊙ h)
          dzx[j] = d[j] * m[j] * h[j] * r_[j] * (S(1) - r_[j]);  // (G1)
        }
      else
        for (int64_t j = 0; j < H; ++j) {
          dhr[j] += d[j] * r_[j];  // (G3') through r ⊙ h
          dzx[j] = d[j] * h[j] * r_[j] * (S(1) - r_[j]);  // (G1)
        }
    });
    gemm<S>(false, false, B, H, 2 * H, dxt, GH, W, H, S(1), dh_rec, H);
    if (mask) add_masked_rows<S>(B, H, mask, dhmp, dh_out);  // (D1)
  }
  BackwardResult r;
  r.dh0 = dh[T % 2].clone();
  if (ln)
    normalized_weight_grads(r, with_masked_states(in), dZx, dZh, dUh), r.dw_ln_hh = dln_hh.sum(0);
  else
    weight_grads(r, with_masked_states(in), dZx, dZh, before ? in.extra : Tensor());
  return r;
}

}  // namespace

ForwardResult gru_forward(const GRUFlags& flags, const ForwardInputs& in) {
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_gru_forward",
                                    [&] { return forward<scalar_t>(flags, in); });
}

BackwardResult gru_backward(const GRUFlags& flags, const BackwardInputs& in) {
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_gru_backward",
                                    [&] { return backward<scalar_t>(flags, in); });
}

}  // namespace lstmlab
