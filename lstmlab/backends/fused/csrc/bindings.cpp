// The Python bindings: `forward` and `backward` of one layer in one direction (the
// bodies of the custom ops in custom_ops.py), taking the ops' arguments in the ops'
// order; `infer` and `infer_step`, inference of a whole stack or of one step in one
// call (the fused backend's path when nothing is saved, past the ops); and the names
// of the interface (schema.h) for schema.py to check against its own. The arguments
// carry their names too (schema.h's lists), for calls by name;
// the ops call by position, which costs less.

#include <torch/extension.h>

#include "cells.h"
#include "checks.h"

namespace lstmlab {
namespace {

using OptionalTensor = c10::optional<Tensor>;

Tensor given(const OptionalTensor& t) { return t.has_value() ? *t : Tensor(); }

// The op returns tensors only: an absent result becomes an empty tensor of its own
// (outputs may not alias); schema.py says which results are present.
std::vector<Tensor> op_results(std::vector<Tensor> results, const Tensor& like) {
  for (Tensor& t : results)
    if (!t.defined()) t = at::empty({0}, like.options());
  return results;
}

void make_contiguous(std::initializer_list<Tensor*> tensors) {
  for (Tensor* t : tensors)
    if (t->defined()) *t = t->contiguous();
}

// Zoneout masks: contiguous, except the evaluation form (one value expanded), read as is.
void make_zoneout_contiguous(std::initializer_list<Tensor*> masks) {
  for (Tensor* t : masks)
    if (t->defined() && !is_constant(*t)) *t = t->contiguous();
}

// What every kernel runs under: no autograd recording (the ops' autograd is
// registered in Python), no autocast (the kernels compute in their inputs' dtype;
// under torch.autocast at::mm would return bfloat16), denormals flushed.
struct KernelGuards {
  at::NoGradGuard no_grad;
  c10::impl::ExcludeDispatchKeyGuard no_autocast{c10::autocast_dispatch_keyset};
  FlushDenormals flush;
};

// Checks `in`, makes its tensors contiguous and runs the cell's forward kernel (under KernelGuards).
ForwardResult run_forward(int64_t cell, const std::vector<int64_t>& flags, ForwardInputs& in) {
  const Cell kind = check_forward(cell, flags, in);
  make_contiguous({&in.x, &in.h0, &in.c0, &in.w_ih, &in.w_hh, &in.b_ih, &in.b_hh, &in.w_ch, &in.a0, &in.w_gh,
                   &in.w_hr, &in.lengths, &in.recurrent_mask, &in.w_ln_ih, &in.w_ln_hh, &in.w_ln_c, &in.b_ln_c});
  make_zoneout_contiguous({&in.zoneout_h, &in.zoneout_c});
  in.len = lengths_of(in.lengths);
  switch (kind) {
    case Cell::lstm:
      return lstm_forward(LSTMFlags(flags), in);
    case Cell::gru:
      return gru_forward(GRUFlags(flags), in);
    case Cell::rnn:
      break;
  }
  return rnn_forward(RNNFlags(flags), in);
}

// -> the ForwardResult's tensors in order.
std::vector<Tensor> forward(const Tensor& x, const Tensor& h0, const OptionalTensor& c0, const Tensor& w_ih,
                            const Tensor& w_hh, const OptionalTensor& b_ih, const OptionalTensor& b_hh,
                            const OptionalTensor& w_ch, const OptionalTensor& a0, const OptionalTensor& w_gh,
                            const OptionalTensor& w_hr, const OptionalTensor& lengths, int64_t cell,
                            const std::vector<int64_t>& flags, bool save, const OptionalTensor& recurrent_mask,
                            const OptionalTensor& zoneout_h, const OptionalTensor& zoneout_c,
                            const OptionalTensor& w_ln_ih, const OptionalTensor& w_ln_hh, const OptionalTensor& w_ln_c,
                            const OptionalTensor& b_ln_c) {
  ForwardInputs in;
  in.x = x; in.h0 = h0; in.c0 = given(c0); in.w_ih = w_ih; in.w_hh = w_hh; in.b_ih = given(b_ih);
  in.b_hh = given(b_hh); in.w_ch = given(w_ch); in.a0 = given(a0); in.w_gh = given(w_gh); in.w_hr = given(w_hr);
  in.lengths = given(lengths); in.save = save; in.recurrent_mask = given(recurrent_mask);
  in.zoneout_h = given(zoneout_h); in.zoneout_c = given(zoneout_c); in.w_ln_ih = given(w_ln_ih);
  in.w_ln_hh = given(w_ln_hh); in.w_ln_c = given(w_ln_c); in.b_ln_c = given(b_ln_c);
  KernelGuards guards;
  return op_results(to_list(run_forward(cell, flags, in)), x);
}

// Inference of a stack of layers running forward in time, in one call: nothing saved,
// no lengths, no masks, no dropout between layers. x (T, B, I); states: the stack's
// initial state tensors in the module's order (h, then c for the LSTM, then a for FGR),
// each (L, B, S); weights: per layer, LayerWeight::count optional tensors in the order
// of LSTMLAB_LAYER_WEIGHTS. -> y (T, B, H_out) of the last layer, then the final state
// tensors, each (L, B, S). Each layer's inputs are checked as forward's.
std::vector<Tensor> infer(const Tensor& x, const std::vector<Tensor>& states, const std::vector<OptionalTensor>& weights,
                          int64_t cell, const std::vector<int64_t>& flags) {
  const size_t per_layer = LayerWeight::count;
  TORCH_CHECK(!weights.empty() && weights.size() % per_layer == 0, "lstmlab infer: weights must hold ", per_layer,
              " tensors or None per layer; got ", weights.size());
  const int64_t L = (int64_t)(weights.size() / per_layer);
  const bool lstm = cell == (int64_t)Cell::lstm;
  TORCH_CHECK(!states.empty() && states.size() <= (lstm ? 3u : 1u), "lstmlab infer: states must hold ",
              lstm ? "h, c and, with FGR, a" : "h only", "; got ", states.size(), " tensors");
  for (const Tensor& s : states)
    TORCH_CHECK(s.dim() == 3 && s.size(0) == L, "lstmlab infer: each state must be (L, B, S) with L = ", L,
                " layers; got ", s.sizes());
  KernelGuards guards;
  std::vector<std::vector<Tensor>> finals(states.size());
  Tensor y = x;
  for (int64_t l = 0; l < L; ++l) {
    const OptionalTensor* w = &weights[l * per_layer];
    ForwardInputs in;
    in.x = y; in.h0 = states[0][l];
    if (states.size() > 1) in.c0 = states[1][l];
    if (states.size() > 2) in.a0 = states[2][l];
    in.w_ih = given(w[LayerWeight::w_ih]); in.w_hh = given(w[LayerWeight::w_hh]); in.b_ih = given(w[LayerWeight::b_ih]);
    in.b_hh = given(w[LayerWeight::b_hh]); in.w_hr = given(w[LayerWeight::w_hr]); in.w_ch = given(w[LayerWeight::w_ch]);
    in.w_gh = given(w[LayerWeight::w_gh]); in.w_ln_ih = given(w[LayerWeight::w_ln_ih]);
    in.w_ln_hh = given(w[LayerWeight::w_ln_hh]); in.w_ln_c = given(w[LayerWeight::w_ln_c]);
    in.b_ln_c = given(w[LayerWeight::b_ln_c]);
    const ForwardResult r = run_forward(cell, flags, in);
    y = r.y;
    const Tensor final[] = {r.h_n, r.c_n, r.a_n};
    for (size_t k = 0; k < states.size(); ++k) finals[k].push_back(final[k]);
  }
  std::vector<Tensor> out{y};
  for (const auto& f : finals) out.push_back(L == 1 ? f[0].unsqueeze(0) : at::stack(f));
  return out;
}

// One step of one layer, for inference (as infer, T = 1): x (B, I); states each (B, S);
// weights: LayerWeight::count tensors or None. -> the new state tensors, each (B, S).
std::vector<Tensor> infer_step(const Tensor& x, const std::vector<Tensor>& states,
                               const std::vector<OptionalTensor>& weights, int64_t cell,
                               const std::vector<int64_t>& flags) {
  TORCH_CHECK(x.dim() == 2, "lstmlab infer_step: x must be (B, I); got ", x.sizes());
  std::vector<Tensor> layered;
  for (const Tensor& s : states) {
    TORCH_CHECK(s.dim() == 2, "lstmlab infer_step: each state must be (B, S); got ", s.sizes());
    layered.push_back(s.unsqueeze(0));
  }
  std::vector<Tensor> out = infer(x.unsqueeze(0), layered, weights, cell, flags);
  std::vector<Tensor> next;
  for (size_t k = 1; k < out.size(); ++k) next.push_back(out[k][0]);
  return next;
}

// -> the BackwardResult's tensors in order.
std::vector<Tensor> backward(const Tensor& dy, const Tensor& dh_n, const OptionalTensor& dc_n,
                             const OptionalTensor& da_n, const Tensor& x, const Tensor& h0, const OptionalTensor& c0,
                             const OptionalTensor& a0, const Tensor& w_ih, const Tensor& w_hh, bool has_bias,
                             const OptionalTensor& w_ch, const OptionalTensor& w_gh, const OptionalTensor& w_hr,
                             const OptionalTensor& lengths, const Tensor& hs, const OptionalTensor& cs,
                             const OptionalTensor& gates, const OptionalTensor& extra, const OptionalTensor& acts,
                             const OptionalTensor& ms, int64_t cell, const std::vector<int64_t>& flags,
                             bool need_dx, const OptionalTensor& recurrent_mask, const OptionalTensor& zoneout_h,
                             const OptionalTensor& zoneout_c, const OptionalTensor& w_ln_ih,
                             const OptionalTensor& w_ln_hh, const OptionalTensor& w_ln_c, const OptionalTensor& b_ln_c,
                             const OptionalTensor& wx, const OptionalTensor& uh) {
  BackwardInputs in;
  in.dy = dy; in.dh_n = dh_n; in.dc_n = given(dc_n); in.da_n = given(da_n); in.x = x; in.h0 = h0; in.c0 = given(c0);
  in.a0 = given(a0); in.w_ih = w_ih; in.w_hh = w_hh; in.has_bias = has_bias; in.w_ch = given(w_ch);
  in.w_gh = given(w_gh); in.w_hr = given(w_hr); in.lengths = given(lengths); in.hs = hs; in.cs = given(cs);
  in.gates = given(gates); in.extra = given(extra); in.acts = given(acts); in.ms = given(ms); in.need_dx = need_dx;
  in.recurrent_mask = given(recurrent_mask); in.zoneout_h = given(zoneout_h); in.zoneout_c = given(zoneout_c);
  in.w_ln_ih = given(w_ln_ih); in.w_ln_hh = given(w_ln_hh); in.w_ln_c = given(w_ln_c); in.b_ln_c = given(b_ln_c);
  in.wx = given(wx); in.uh = given(uh);
  const Cell kind = check_backward(cell, flags, in);
  KernelGuards guards;
  make_contiguous({&in.dy, &in.dh_n, &in.dc_n, &in.da_n, &in.x, &in.h0, &in.c0, &in.a0, &in.w_ih, &in.w_hh, &in.w_ch,
                   &in.w_gh, &in.w_hr, &in.lengths, &in.hs, &in.cs, &in.gates, &in.extra, &in.acts, &in.ms,
                   &in.recurrent_mask, &in.w_ln_ih, &in.w_ln_hh, &in.w_ln_c, &in.b_ln_c, &in.wx, &in.uh});
  make_zoneout_contiguous({&in.zoneout_h, &in.zoneout_c});
  in.len = lengths_of(in.lengths);
  switch (kind) {
    case Cell::lstm:
      return op_results(to_list(lstm_backward(LSTMFlags(flags), in)), x);
    case Cell::gru:
      return op_results(to_list(gru_backward(GRUFlags(flags), in)), x);
    case Cell::rnn:
      break;
  }
  return op_results(to_list(rnn_backward(RNNFlags(flags), in)), x);
}

}  // namespace
}  // namespace lstmlab

#define LSTMLAB_PY_ARG(name) pybind11::arg(#name),

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace lstmlab;
  m.def("forward", &forward, LSTMLAB_FORWARD_ARGS(LSTMLAB_PY_ARG) "one layer, one direction, forward");
  m.def("backward", &backward, LSTMLAB_BACKWARD_ARGS(LSTMLAB_PY_ARG) "one layer, one direction, backward");
  m.def("infer", &infer, pybind11::arg("x"), pybind11::arg("states"), pybind11::arg("weights"), pybind11::arg("cell"),
        pybind11::arg("flags"), "inference of a stack of layers running forward in time, nothing saved");
  m.def("infer_step", &infer_step, pybind11::arg("x"), pybind11::arg("states"), pybind11::arg("weights"),
        pybind11::arg("cell"), pybind11::arg("flags"), "one step of one layer, for inference");
  m.def("cell_names", &cell_names, "the cells, by their index");
  m.def("lstm_flag_names", &lstm_flag_names, "the LSTM's flags, in order");
  m.def("gru_flag_names", &gru_flag_names, "the GRU's flags, in order");
  m.def("rnn_flag_names", &rnn_flag_names, "the RNN's flags, in order");
  m.def("forward_argument_names", &forward_argument_names, "what forward takes, in order");
  m.def("backward_argument_names", &backward_argument_names, "what backward takes, in order");
  m.def("forward_result_names", &forward_result_names, "what forward returns, in order");
  m.def("backward_result_names", &backward_result_names, "what backward returns, in order");
  m.def("layer_weight_names", &layer_weight_names, "one layer's weights as infer takes them, in order");
}
