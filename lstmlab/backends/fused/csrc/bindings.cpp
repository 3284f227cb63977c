// The Python bindings: `forward` and `backward` of one layer in one direction (the
// bodies of the custom ops in custom_ops.py), taking the ops' arguments in the ops'
// order, and the names of the interface (schema.h) for schema.py to check against
// its own. The arguments carry their names too (schema.h's lists), for calls by name;
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
  const Cell kind = check_forward(cell, flags, in);
  KernelGuards guards;
  make_contiguous({&in.x, &in.h0, &in.c0, &in.w_ih, &in.w_hh, &in.b_ih, &in.b_hh, &in.w_ch, &in.a0, &in.w_gh,
                   &in.w_hr, &in.lengths, &in.recurrent_mask, &in.w_ln_ih, &in.w_ln_hh, &in.w_ln_c, &in.b_ln_c});
  make_zoneout_contiguous({&in.zoneout_h, &in.zoneout_c});
  in.len = lengths_of(in.lengths);
  switch (kind) {
    case Cell::lstm:
      return op_results(to_list(lstm_forward(LSTMFlags(flags), in)), x);
    case Cell::gru:
      return op_results(to_list(gru_forward(GRUFlags(flags), in)), x);
    case Cell::rnn:
      break;
  }
  return op_results(to_list(rnn_forward(RNNFlags(flags), in)), x);
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
  m.def("cell_names", &cell_names, "the cells, by their index");
  m.def("lstm_flag_names", &lstm_flag_names, "the LSTM's flags, in order");
  m.def("gru_flag_names", &gru_flag_names, "the GRU's flags, in order");
  m.def("rnn_flag_names", &rnn_flag_names, "the RNN's flags, in order");
  m.def("forward_argument_names", &forward_argument_names, "what forward takes, in order");
  m.def("backward_argument_names", &backward_argument_names, "what backward takes, in order");
  m.def("forward_result_names", &forward_result_names, "what forward returns, in order");
  m.def("backward_result_names", &backward_result_names, "what backward returns, in order");
}
