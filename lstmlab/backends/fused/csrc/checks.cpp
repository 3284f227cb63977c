#include "checks.h"

#include <string>

namespace lstmlab {
namespace {

constexpr const char* kForward = "lstmlab::fused_layer";
constexpr const char* kBackward = "lstmlab::fused_layer_backward";
constexpr const char* kWithFGR = " with full gate recurrence (gate_recurrence=1)";

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// The sizes every shape derives from: T, B, I from x, P (h's size) from h0, H (the
// cell's) from c0 for the LSTM, else P; G gate blocks, NP peephole vectors and R
// FGR's gate blocks from the cell and its flags.
struct Sizes {
  int64_t T, B, I, H, P, G, NP, R;
};

std::ostream& operator<<(std::ostream& out, const Sizes& s) {
  return out << "T=" << s.T << ", B=" << s.B << ", I=" << s.I << ", H=" << s.H << ", P=" << s.P << ", G=" << s.G
             << ", NP=" << s.NP << ", R=" << s.R;
}

struct Context {
  const char* op;
  Cell cell;
  const Tensor& x;
  Sizes s;
};

// A tensor the op needs here (`when` says where): given, on the CPU, of x's dtype,
// of this shape (`formula` spells it in sizes).
void expect(const Context& k, const char* name, const Tensor& t, std::vector<int64_t> shape, const char* formula,
            const char* when = "") {
  TORCH_CHECK(t.defined(), k.op, ": ", name, " ", formula, " must be given", when, "; got None");
  TORCH_CHECK(t.device().is_cpu(), k.op, ": ", name, " must be on the CPU; got ", t.device());
  TORCH_CHECK(t.scalar_type() == k.x.scalar_type(), k.op, ": ", name, " must have x's dtype ", k.x.scalar_type(),
              "; got ", t.scalar_type());
  TORCH_CHECK(t.sizes().equals(shape), k.op, ": ", name, " must have shape ", formula, " = ", at::IntArrayRef(shape),
              " (", k.s, "); got ", t.sizes());
}

// A tensor the op takes only `when`: checked as `expect` where needed, else it must be None.
void expect_if(bool needed, const Context& k, const char* name, const Tensor& t, std::vector<int64_t> shape,
               const char* formula, const char* when) {
  if (needed) return expect(k, name, t, std::move(shape), formula, when);
  TORCH_CHECK(!t.defined(), k.op, ": ", name, " must be None except", when, "; got a tensor of shape ", t.sizes());
}

// A tensor the op may take: checked as `expect` when given.
void expect_optional(const Context& k, const char* name, const Tensor& t, std::vector<int64_t> shape,
                     const char* formula) {
  if (t.defined()) expect(k, name, t, std::move(shape), formula);
}

Cell check_cell(const char* op, int64_t cell) {
  const auto names = cell_names();
  TORCH_CHECK(cell >= 0 && cell < (int64_t)names.size(), op, ": cell must be the index of one of ", join(names),
              "; got ", cell);
  return static_cast<Cell>(cell);
}

void check_boolean(const char* op, const char* name, int64_t value) {
  TORCH_CHECK(value == 0 || value == 1, op, ": the flag ", name, " must be 0 or 1; got ", value);
}

// Blocks numbered 0, 1, ... in the order given, -1 where absent.
void check_blocks(const char* op, const char* what, const std::vector<int64_t>& values) {
  int64_t next = 0;
  for (int64_t v : values) {
    TORCH_CHECK(v == -1 || v == next, op, ": the flags ", what, " must number the blocks that exist 0, 1, ... in ",
                "that order, -1 for an absent one; got ", at::IntArrayRef(values));
    next += v >= 0;
  }
}

void check_flags(const char* op, Cell cell, const std::vector<int64_t>& flags) {
  const auto names = cell == Cell::lstm ? lstm_flag_names() : cell == Cell::gru ? gru_flag_names() : rnn_flag_names();
  TORCH_CHECK(flags.size() == names.size(), op, ": the ", cell_names()[(size_t)cell], " cell takes ", names.size(),
              " flags (", join(names), "); got ", flags.size());
  if (cell == Cell::gru) return check_boolean(op, "reset_before", flags[GRUFlag::reset_before]);
  if (cell == Cell::rnn) return check_boolean(op, "relu", flags[RNNFlag::relu]);
  const LSTMFlags F(flags);
  check_blocks(op, "gate_i, gate_f, gate_g, gate_o", {F.gate_i, F.gate_f, F.gate_g, F.gate_o});
  TORCH_CHECK(F.gate_g >= 0, op, ": the flag gate_g must be 0 or more: every LSTM has the cell input g; got -1");
  check_blocks(op, "peephole_i, peephole_f, peephole_o", {F.peephole_i, F.peephole_f, F.peephole_o});
  TORCH_CHECK((F.peephole_i < 0 || F.gate_i >= 0) && (F.peephole_f < 0 || F.gate_f >= 0) &&
                  (F.peephole_o < 0 || F.gate_o >= 0),
              op, ": a peephole needs its gate: peephole_x >= 0 needs gate_x >= 0; got ", at::IntArrayRef(flags));
  for (size_t k : {LSTMFlag::coupled, LSTMFlag::tanh_g, LSTMFlag::tanh_h, LSTMFlag::gate_recurrence})
    check_boolean(op, names[k].c_str(), flags[k]);
  TORCH_CHECK(!F.coupled || (F.gate_i >= 0 && F.gate_f < 0), op,
              ": coupled=1 derives f from i (f = 1 - i), so it needs gate_i >= 0 and gate_f = -1; got gate_i=",
              F.gate_i, ", gate_f=", F.gate_f);
}

// The cell, flags, x, h0 and c0, and from them the sizes.
Context context(const char* op, int64_t cell_index, const std::vector<int64_t>& flags, const Tensor& x,
                const Tensor& h0, const Tensor& c0) {
  const Cell cell = check_cell(op, cell_index);
  check_flags(op, cell, flags);
  TORCH_CHECK(x.defined() && x.dim() == 3, op, ": x must be a 3-D (T, B, I) tensor; got ",
              x.defined() ? c10::str(x.dim(), "-D") : "None");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), op, ": x must be on the CPU; got ", x.device());
  TORCH_CHECK(x.size(0) > 0, op, ": x.size(0) = T must be positive (T = 0 is for the caller to handle); got 0");
  TORCH_CHECK(h0.defined() && h0.dim() == 2, op, ": h0 must be a 2-D (B, P) tensor; got ",
              h0.defined() ? c10::str(h0.dim(), "-D") : "None");
  const bool lstm = cell == Cell::lstm;
  TORCH_CHECK(!lstm || (c0.defined() && c0.dim() == 2), op, ": c0 must be a 2-D (B, H) tensor for an LSTM; got ",
              c0.defined() ? c10::str(c0.dim(), "-D") : "None");
  Sizes s{x.size(0), x.size(1), x.size(2), lstm ? c0.size(1) : h0.size(1), h0.size(1), 1, 0, 0};
  if (lstm) {
    const LSTMFlags F(flags);
    s.G = F.G(), s.NP = F.NP(), s.R = F.R();
  } else if (cell == Cell::gru) {
    s.G = 3;
  }
  return Context{op, cell, x, s};
}

// The inputs both ops take: the state, the weights except the biases, the lengths.
void check_layer(const Context& k, const std::vector<int64_t>& flags, const Tensor& h0, const Tensor& c0,
                 const Tensor& w_ih, const Tensor& w_hh, const Tensor& w_ch, const Tensor& a0, const Tensor& w_gh,
                 const Tensor& w_hr, const Tensor& lengths) {
  const Sizes& s = k.s;
  const bool lstm = k.cell == Cell::lstm, fgr = lstm && LSTMFlags(flags).gate_recurrence;
  const bool proj = lstm && w_hr.defined();
  expect(k, "h0", h0, {s.B, s.P}, "(B, P)");
  expect_if(lstm, k, "c0", c0, {s.B, s.H}, "(B, H)", " for an LSTM");
  expect(k, "w_ih", w_ih, {s.G * s.H, s.I}, "(G*H, I)");
  expect(k, "w_hh", w_hh, {s.G * s.H, s.P}, "(G*H, P)");
  expect_if(s.NP > 0, k, "w_ch", w_ch, {s.NP * s.H}, "(NP*H,)", " with peepholes (a peephole_* flag >= 0)");
  expect_if(fgr, k, "a0", a0, {s.B, s.R * s.H}, "(B, R*H)", kWithFGR);
  expect_if(fgr, k, "w_gh", w_gh, {s.R * s.H, s.R * s.H}, "(R*H, R*H)", kWithFGR);
  if (lstm)
    expect_optional(k, "w_hr", w_hr, {s.P, s.H}, "(P, H)");
  else
    expect_if(false, k, "w_hr", w_hr, {}, "", " for an LSTM");
  TORCH_CHECK(proj || s.P == s.H, k.op, ": h0 must be (B, H) = [", s.B, ", ", s.H,
              "] without a projection (w_hr None); got ", h0.sizes());
  if (!lengths.defined()) return;
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.dim() == 1 && lengths.size(0) == s.B, k.op,
              ": lengths must be an int64 tensor of shape (B,) = [", s.B, "]; got ", lengths.scalar_type(),
              " of shape ", lengths.sizes());
  TORCH_CHECK(lengths.device().is_cpu(), k.op, ": lengths must be on the CPU; got ", lengths.device());
  if (s.B == 0) return;
  const int64_t lo = lengths.min().item<int64_t>(), hi = lengths.max().item<int64_t>();
  TORCH_CHECK(lo >= 1 && hi <= s.T, k.op, ": lengths must lie in [1, T] = [1, ", s.T, "]; got values from ", lo,
              " to ", hi);
}

// The regularisers' masks, each optional: recurrent_mask (B, P); zoneout_h (T, B, P) and,
// for an LSTM, zoneout_c (T, B, H); RNN zoneout saves its candidates in extra.
void check_masks(const Context& k, const Tensor& recurrent_mask, const Tensor& zoneout_h, const Tensor& zoneout_c) {
  const Sizes& s = k.s;
  expect_optional(k, "recurrent_mask", recurrent_mask, {s.B, s.P}, "(B, P)");
  expect_optional(k, "zoneout_h", zoneout_h, {s.T, s.B, s.P}, "(T, B, P)");
  if (k.cell == Cell::lstm)
    expect_optional(k, "zoneout_c", zoneout_c, {s.T, s.B, s.H}, "(T, B, H)");
  else
    expect_if(false, k, "zoneout_c", zoneout_c, {}, "", " for an LSTM");
}

// Layer normalisation's gains, all or none: w_ln_ih, w_ln_hh (G*H,) for the LSTM and the
// GRU with reset "after", and the LSTM's w_ln_c, b_ln_c (H,).
void check_layer_norm(const Context& k, const std::vector<int64_t>& flags, const Tensor& w_ln_ih,
                      const Tensor& w_ln_hh, const Tensor& w_ln_c, const Tensor& b_ln_c) {
  const Sizes& s = k.s;
  const bool ln = w_ln_ih.defined(), lstm = k.cell == Cell::lstm;
  const bool can = lstm || (k.cell == Cell::gru && !GRUFlags(flags).reset_before);
  TORCH_CHECK(!ln || can, k.op, ": w_ln_ih (layer normalisation) must be None except for an LSTM or a GRU with ",
              "reset \"after\" (reset_before=0); got a tensor");
  const char* when = " with layer normalisation (w_ln_ih given)";
  expect_if(ln, k, "w_ln_hh", w_ln_hh, {s.G * s.H}, "(G*H,)", when);
  if (ln) expect(k, "w_ln_ih", w_ln_ih, {s.G * s.H}, "(G*H,)");
  expect_if(ln && lstm, k, "w_ln_c", w_ln_c, {s.H}, "(H,)", " for an LSTM with layer normalisation (w_ln_ih given)");
  expect_if(ln && lstm, k, "b_ln_c", b_ln_c, {s.H}, "(H,)", " for an LSTM with layer normalisation (w_ln_ih given)");
}

}  // namespace

Cell check_forward(int64_t cell, const std::vector<int64_t>& flags, const ForwardInputs& in) {
  const Context k = context(kForward, cell, flags, in.x, in.h0, in.c0);
  check_layer(k, flags, in.h0, in.c0, in.w_ih, in.w_hh, in.w_ch, in.a0, in.w_gh, in.w_hr, in.lengths);
  TORCH_CHECK(in.b_ih.defined() == in.b_hh.defined(), k.op, ": b_ih and b_hh must both be given or both be None; got ",
              in.b_ih.defined() ? "b_ih only" : "b_hh only");
  expect_optional(k, "b_ih", in.b_ih, {k.s.G * k.s.H}, "(G*H,)");
  expect_optional(k, "b_hh", in.b_hh, {k.s.G * k.s.H}, "(G*H,)");
  check_masks(k, in.recurrent_mask, in.zoneout_h, in.zoneout_c);
  check_layer_norm(k, flags, in.w_ln_ih, in.w_ln_hh, in.w_ln_c, in.b_ln_c);
  return k.cell;
}

Cell check_backward(int64_t cell, const std::vector<int64_t>& flags, const BackwardInputs& in) {
  const Context k = context(kBackward, cell, flags, in.x, in.h0, in.c0);
  check_layer(k, flags, in.h0, in.c0, in.w_ih, in.w_hh, in.w_ch, in.a0, in.w_gh, in.w_hr, in.lengths);
  check_masks(k, in.recurrent_mask, in.zoneout_h, in.zoneout_c);
  check_layer_norm(k, flags, in.w_ln_ih, in.w_ln_hh, in.w_ln_c, in.b_ln_c);
  const Sizes& s = k.s;
  const bool lstm = k.cell == Cell::lstm, gru = k.cell == Cell::gru;
  const bool rnn_zoneout = k.cell == Cell::rnn && in.zoneout_h.defined();
  const bool fgr = lstm && LSTMFlags(flags).gate_recurrence, proj = lstm && in.w_hr.defined();
  expect(k, "dy", in.dy, {s.T, s.B, s.P}, "(T, B, P)");
  expect(k, "dh_n", in.dh_n, {s.B, s.P}, "(B, P)");
  expect_if(lstm, k, "dc_n", in.dc_n, {s.B, s.H}, "(B, H)", " for an LSTM");
  expect_if(fgr, k, "da_n", in.da_n, {s.B, s.R * s.H}, "(B, R*H)", kWithFGR);
  expect(k, "hs", in.hs, {s.T, s.B, s.P}, "(T, B, P)");
  expect_if(lstm, k, "cs", in.cs, {s.T, s.B, s.H}, "(T, B, H)", " for an LSTM");
  expect_if(lstm || gru, k, "gates", in.gates, {s.T, s.B, s.G * s.H}, "(T, B, G*H)", " for an LSTM or a GRU");
  expect_if(gru || rnn_zoneout, k, "extra", in.extra, {s.T, s.B, s.H}, "(T, B, H)",
            " for a GRU or an RNN with zoneout (zoneout_h given)");
  expect_if(fgr, k, "acts", in.acts, {s.T, s.B, s.R * s.H}, "(T, B, R*H)", kWithFGR);
  expect_if(proj, k, "ms", in.ms, {s.T, s.B, s.H}, "(T, B, H)", " with a projection (w_hr given)");
  const bool ln = in.w_ln_ih.defined();
  expect_if(ln, k, "wx", in.wx, {s.T, s.B, s.G * s.H}, "(T, B, G*H)", " with layer normalisation (w_ln_ih given)");
  expect_if(ln, k, "uh", in.uh, {s.T, s.B, s.G * s.H}, "(T, B, G*H)", " with layer normalisation (w_ln_ih given)");
  return k.cell;
}

}  // namespace lstmlab
