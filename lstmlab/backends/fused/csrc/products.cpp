#include "products.h"

#include <ATen/ops/add.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/native_layer_norm.h>
#include <ATen/ops/native_layer_norm_backward.h>

namespace lstmlab {

Tensor summed_bias(const Tensor& b_ih, const Tensor& b_hh) { return b_ih.defined() ? at::add(b_ih, b_hh) : Tensor(); }

Tensor input_projection(const Tensor& x, const Tensor& w_ih, const Tensor& bias) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), GH = w_ih.size(0);
  Tensor x2 = x.reshape({T * B, I});
  Tensor z = bias.defined() ? at::addmm(bias, x2, w_ih.t()) : at::mm(x2, w_ih.t());
  return z.view({T, B, GH});
}

Tensor recurrent_grad(const Tensor& dZ, int64_t off, int64_t K, const Tensor& hs, const Tensor& h0) {
  const int64_t T = dZ.size(0), B = dZ.size(1);
  Tensor d = dZ.narrow(2, off, K);
  Tensor out = at::mm(d[0].t(), h0);
  if (T > 1) {
    Tensor later = d.narrow(0, 1, T - 1).reshape({(T - 1) * B, K});
    out.addmm_(later.t(), hs.narrow(0, 0, T - 1).reshape({(T - 1) * B, hs.size(2)}));  // B may be 0: no -1
  }
  return out;
}

void weight_grads(BackwardResult& r, const BackwardInputs& in, const Tensor& dZx, const Tensor& dZh,
                  const Tensor& gated) {
  const int64_t T = dZx.size(0), B = dZx.size(1), GH = dZx.size(2), I = in.x.size(2);
  Tensor dZ2 = dZx.view({T * B, GH});
  if (in.need_dx) r.dx = at::mm(dZ2, in.w_ih).view({T, B, I});
  r.dw_ih = at::mm(dZ2.t(), in.x.reshape({T * B, I}));
  if (!gated.defined()) {
    r.dw_hh = recurrent_grad(dZh, 0, GH, in.hs, in.h0);
  } else {
    const int64_t H = gated.size(2), K = GH - H;
    r.dw_hh = at::cat({recurrent_grad(dZh, 0, K, in.hs, in.h0),
                       at::mm(dZh.narrow(2, K, H).reshape({T * B, H}).t(), gated.reshape({T * B, H}))});
  }
  if (in.has_bias) {
    r.db_ih = dZ2.sum(0);
    r.db_hh = dZh.is_same(dZx) ? r.db_ih.clone() : dZh.view({T * B, GH}).sum(0);
  }
}

std::pair<Tensor, Tensor> normalized_input_projection(const Tensor& x, const Tensor& w_ih, const Tensor& gain,
                                                      const Tensor& bias) {
  const int64_t GH = w_ih.size(0);
  Tensor wx = input_projection(x, w_ih, Tensor());
  Tensor z = std::get<0>(at::native_layer_norm(wx, {GH}, gain, bias.defined() ? c10::optional<Tensor>(bias) : c10::nullopt,
                                               kLayerNormEps));
  return {z, wx};
}

namespace {
// N(v)'s mean and 1 / std for the rows of v
std::tuple<Tensor, Tensor, Tensor> statistics(const Tensor& v) {
  return at::native_layer_norm(v, {v.size(-1)}, c10::nullopt, c10::nullopt, kLayerNormEps);
}
}  // namespace

void normalized_weight_grads(BackwardResult& r, const BackwardInputs& in, const Tensor& dZx, const Tensor& dZh,
                             const Tensor& dUh) {
  const int64_t T = dZx.size(0), B = dZx.size(1), GH = dZx.size(2), I = in.x.size(2);
  Tensor dZ2 = dZx.view({T * B, GH});
  if (in.has_bias) {
    r.db_ih = dZ2.sum(0);
    r.db_hh = dZh.is_same(dZx) ? r.db_ih.clone() : dZh.view({T * B, GH}).sum(0);
  }
  Tensor wx = in.wx.view({T * B, GH});  // (N1)
  auto s = statistics(wx);
  auto g = at::native_layer_norm_backward(dZ2, wx, {GH}, std::get<1>(s), std::get<2>(s), in.w_ln_ih, c10::nullopt,
                                          {true, true, false});
  Tensor dWx = std::get<0>(g);
  r.dw_ln_ih = std::get<1>(g);
  if (in.need_dx) r.dx = at::mm(dWx, in.w_ih).view({T, B, I});
  r.dw_ih = at::mm(dWx.t(), in.x.reshape({T * B, I}));
  r.dw_hh = recurrent_grad(dUh, 0, GH, in.hs, in.h0);
}

BackwardInputs with_masked_states(const BackwardInputs& in) {
  if (!in.recurrent_mask.defined()) return in;
  BackwardInputs masked = in;
  masked.h0 = at::mul(in.h0, in.recurrent_mask);
  masked.hs = at::mul(in.hs, in.recurrent_mask);  // (T, B, P) ⊙ (B, P)
  return masked;
}

}  // namespace lstmlab
