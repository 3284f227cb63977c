// The Elman RNN (lstmlab/cells/rnn.py: R1), tanh or relu.

#include <ATen/ops/empty.h>

#include <cstring>

#include "activations.h"
#include "cells.h"
#include "gemm.h"
#include "products.h"

namespace lstmlab {
namespace {

template <typename S>
ForwardResult forward(const RNNFlags& F, const ForwardInputs& in) {
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.h0.size(1);
  const Lengths& len = in.len;
  // hs: pre-activations, then in place the states.
  Tensor hs = input_projection(in.x, in.w_ih, summed_bias(in.b_ih, in.b_hh));
  Tensor y = len.given ? at::empty({T, B, H}, in.x.options()) : hs;
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  const S* W = in.w_hh.data_ptr<S>();
  // the regularisers: (D1) the recurrent product multiplies hm = m ⊙ h; (Z1) d, and the
  // candidate states h~ saved for backward (in `extra`), which needs them for act'
  const S* mask = data_or_null<S>(in.recurrent_mask);
  Tensor hm = mask ? at::empty({B, H}, in.x.options()) : Tensor();
  S* hmp = data_or_null<S>(hm);
  const ZoneoutMask<S> zh(in.zoneout_h);
  Tensor candidates = zh && in.save ? at::empty({T, B, H}, in.x.options()) : Tensor();
  S* cand = data_or_null<S>(candidates);
  for (int64_t t = 0; t < T; ++t) {
    const S* hp = t == 0 ? in.h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    S* hn = hsp + t * B * H;
    if (mask) mask_rows<S>(B, H, mask, hp, hmp);  // (D1)
    gemm<S>(false, true, B, H, H, mask ? hmp : hp, H, W, H, S(1), hn, H);
    for_rows(B, H, [&](int64_t b) {
      S* h2 = hn + b * H;
      S* yb = yp + (t * B + b) * H;
      S* cb = cand ? cand + (t * B + b) * H : nullptr;
      if (!len.keep(t, b)) {
        std::memcpy(h2, hp + b * H, H * sizeof(S));
        if (yb != h2) std::memset(yb, 0, H * sizeof(S));
        if (cb) std::memset(cb, 0, H * sizeof(S));
        return;
      }
      if (F.relu)
        for (int64_t j = 0; j < H; ++j) h2[j] = std::max(h2[j], S(0));  // (R1)
      else
        for (int64_t j = 0; j < H; ++j) h2[j] = tanh_(h2[j]);  // (R1)
      if (cb) std::memcpy(cb, h2, H * sizeof(S));
      if (zh) zoneout<S>(H, zh.row(t, b), hp + b * H, h2);  // (Z1)
      if (yb != h2) std::memcpy(yb, h2, H * sizeof(S));
    });
  }
  ForwardResult r;
  r.y = y;
  r.h_n = hs[T - 1].clone();
  if (in.save && len.given) r.hs = hs;
  if (cand) r.extra = candidates;
  return r;
}

template <typename S>
BackwardResult backward(const RNNFlags& F, const BackwardInputs& in) {
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.h0.size(1);
  const Lengths& len = in.len;
  auto opts = in.x.options();
  Tensor dZ = at::empty({T, B, H}, opts);
  Tensor dh = at::empty({2, B, H}, opts);
  dh[0].copy_(in.dh_n);
  const S* hsp = in.hs.data_ptr<S>();
  const S* dyp = in.dy.data_ptr<S>();
  S* dZp = dZ.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  const S* W = in.w_hh.data_ptr<S>();
  // the regularisers: (D1) dhm the gradient reaching m ⊙ h through the recurrent product;
  // (Z1) h~ (saved in extra) gets (1 − d) ⊙ dh', the old h d ⊙ dh' besides the product's
  const S* mask = data_or_null<S>(in.recurrent_mask);
  Tensor dhm = mask ? at::empty({B, H}, opts) : Tensor();
  S* dhmp = data_or_null<S>(dhm);
  const ZoneoutMask<S> zh(in.zoneout_h);
  const S* cand = zh ? in.extra.data_ptr<S>() : hsp;  // the activations' outputs h~
  for (int64_t t = T - 1; t >= 0; --t) {
    const S* hn = cand + t * B * H;
    S* dZt = dZp + t * B * H;
    const int64_t next = (T - 1 - t) % 2;  // dh from step t + 1 in dh[next], to step t - 1 in the other
    S* dh_in = dhp + next * B * H;
    S* dh_out = dhp + (1 - next) * B * H;
    for_rows(B, H, [&](int64_t b) {
      S* dz = dZt + b * H;
      const S* dhi = dh_in + b * H;
      S* dho = dh_out + b * H;
      if (!len.keep(t, b)) {
        std::memset(dz, 0, H * sizeof(S));
        std::memcpy(dho, dhi, H * sizeof(S));
        return;
      }
      const S* h2 = hn + b * H;
      const S* dyb = dyp + (t * B + b) * H;
      if (!zh) {
        std::memset(dho, 0, H * sizeof(S));
        if (F.relu)
          for (int64_t j = 0; j < H; ++j) dz[j] = h2[j] > S(0) ? dhi[j] + dyb[j] : S(0);  // (R1)
        else
          for (int64_t j = 0; j < H; ++j) dz[j] = (dhi[j] + dyb[j]) * (S(1) - h2[j] * h2[j]);  // (R1)
        return;
      }
      const S* d = zh.row(t, b);  // (Z1): h~ gets (1 − d) ⊙ (dh' + dy), the old h d ⊙ (dh' + dy)
      for (int64_t j = 0; j < H; ++j) dho[j] = d[j] * (dhi[j] + dyb[j]);
      if (F.relu)
        for (int64_t j = 0; j < H; ++j) dz[j] = h2[j] > S(0) ? (S(1) - d[j]) * (dhi[j] + dyb[j]) : S(0);  // (R1)
      else
        for (int64_t j = 0; j < H; ++j) dz[j] = (S(1) - d[j]) * (dhi[j] + dyb[j]) * (S(1) - h2[j] * h2[j]);  // (R1)
    });
    if (mask) {  // (D1) dh += m ⊙ (dz U)
      gemm<S>(false, false, B, H, H, dZt, H, W, H, S(0), dhmp, H);
      add_masked_rows<S>(B, H, mask, dhmp, dh_out);
    } else {
      gemm<S>(false, false, B, H, H, dZt, H, W, H, S(1), dh_out, H);
    }
  }
  BackwardResult r;
  r.dh0 = dh[T % 2].clone();
  weight_grads(r, with_masked_states(in), dZ, dZ);
  return r;
}

}  // namespace

ForwardResult rnn_forward(const RNNFlags& flags, const ForwardInputs& in) {
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_rnn_forward",
                                    [&] { return forward<scalar_t>(flags, in); });
}

BackwardResult rnn_backward(const RNNFlags& flags, const BackwardInputs& in) {
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_rnn_backward",
                                    [&] { return backward<scalar_t>(flags, in); });
}

}  // namespace lstmlab
