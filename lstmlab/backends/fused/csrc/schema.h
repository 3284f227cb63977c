// The op's interface, named once: the cells, each cell's flags, and the arguments
// and results of forward and backward, in the order the ops pass them. The bindings
// export the names; lstmlab/backends/fused/schema.py holds the same ones and checks
// at load that both sides agree.
//
// Each list is an X-macro, written once here; the enums that index flags, the
// result structs, their conversion to the op's tensor list, the bindings' argument
// names and the exported names all derive from it.
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace lstmlab {

#define LSTMLAB_CELLS(X) X(lstm) X(gru) X(rnn)

// LSTM: the block of each gate in the weight rows (i, f, g, o) and of each peephole
// vector in w_ch (p_i, p_f, p_o), -1 where absent; then booleans: CIFG's f = 1 - i,
// G = tanh (else identity), H = tanh (else identity), full gate recurrence (FGR).
#define LSTMLAB_LSTM_FLAGS(X)                                                                                     \
  X(gate_i) X(gate_f) X(gate_g) X(gate_o) X(peephole_i) X(peephole_f) X(peephole_o) X(coupled) X(tanh_g) X(tanh_h) \
  X(gate_recurrence)
// GRU: reset "before" (Cho et al.) rather than "after" (torch). RNN: relu rather than tanh.
#define LSTMLAB_GRU_FLAGS(X) X(reset_before)
#define LSTMLAB_RNN_FLAGS(X) X(relu)

// y, h_n[, c_n][, a_n]: the layer's results. The rest is what backward needs, present
// only when saving: hs the state sequence where it differs from y (padding), cs the
// cell states, gates the activations, extra the GRU's U_n h + b_hn or r ⊙ h, acts
// FGR's gate states, ms the unprojected outputs m. extra is also the RNN's candidate
// states (before zoneout) when it has zoneout. With layer normalisation, wx and uh: W x
// and U h (of every step) before (N1) and (N2).
#define LSTMLAB_FORWARD_RESULTS(X) X(y) X(h_n) X(c_n) X(hs) X(cs) X(gates) X(extra) X(a_n) X(acts) X(ms) X(wx) X(uh)
#define LSTMLAB_BACKWARD_RESULTS(X)                                                                      \
  X(dx) X(dh0) X(dc0) X(dw_ih) X(dw_hh) X(db_ih) X(db_hh) X(dw_ch) X(da0) X(dw_gh) X(dw_hr) X(dw_ln_ih) \
  X(dw_ln_hh) X(dw_ln_c) X(db_ln_c)

// The arguments of lstmlab::fused_layer and lstmlab::fused_layer_backward (and of the
// bindings' forward and backward, which take them in this order). Last, optional, the
// regularisers' masks (lstmlab/cells/regularisers.py): recurrent_mask (B, P) m of (D1),
// zoneout_h (T, B, P) and zoneout_c (T, B, H, LSTM only) d of (Z1); a zoneout mask
// whose strides are all zero (the evaluation form, one value expanded) is read as
// that one value, never copied. Then, optional, layer normalisation's gains (lstmlab/cells/
// layer_norm.py): w_ln_ih, w_ln_hh (G*H,), and the LSTM's w_ln_c, b_ln_c (H,).
#define LSTMLAB_FORWARD_ARGS(X)                                                                                     \
  X(x) X(h0) X(c0) X(w_ih) X(w_hh) X(b_ih) X(b_hh) X(w_ch) X(a0) X(w_gh) X(w_hr) X(lengths) X(cell) X(flags) X(save) \
  X(recurrent_mask) X(zoneout_h) X(zoneout_c) X(w_ln_ih) X(w_ln_hh) X(w_ln_c) X(b_ln_c)
#define LSTMLAB_BACKWARD_ARGS(X)                                                                                   \
  X(dy) X(dh_n) X(dc_n) X(da_n) X(x) X(h0) X(c0) X(a0) X(w_ih) X(w_hh) X(has_bias) X(w_ch) X(w_gh) X(w_hr) X(lengths) \
  X(hs) X(cs) X(gates) X(extra) X(acts) X(ms) X(cell) X(flags) X(need_dx) X(recurrent_mask) X(zoneout_h) X(zoneout_c) \
  X(w_ln_ih) X(w_ln_hh) X(w_ln_c) X(b_ln_c) X(wx) X(uh)

// One layer's weights as the inference entry points (infer, infer_step) take them: the
// fields of lstmlab.cells.LayerWeights in order, absent ones None.
#define LSTMLAB_LAYER_WEIGHTS(X) \
  X(w_ih) X(w_hh) X(b_ih) X(b_hh) X(w_hr) X(w_ch) X(w_gh) X(w_ln_ih) X(w_ln_hh) X(w_ln_c) X(b_ln_c)

#define LSTMLAB_ENUM(name) name,
#define LSTMLAB_NAME(name) #name,
#define LSTMLAB_FIELD(name) Tensor name;
#define LSTMLAB_ITEM(name) r.name,

enum class Cell : int64_t { LSTMLAB_CELLS(LSTMLAB_ENUM) };
struct LSTMFlag {
  enum : size_t { LSTMLAB_LSTM_FLAGS(LSTMLAB_ENUM) count };
};
struct GRUFlag {
  enum : size_t { LSTMLAB_GRU_FLAGS(LSTMLAB_ENUM) count };
};
struct RNNFlag {
  enum : size_t { LSTMLAB_RNN_FLAGS(LSTMLAB_ENUM) count };
};
struct LayerWeight {
  enum : size_t { LSTMLAB_LAYER_WEIGHTS(LSTMLAB_ENUM) count };
};

inline std::vector<std::string> cell_names() { return {LSTMLAB_CELLS(LSTMLAB_NAME)}; }
inline std::vector<std::string> lstm_flag_names() { return {LSTMLAB_LSTM_FLAGS(LSTMLAB_NAME)}; }
inline std::vector<std::string> gru_flag_names() { return {LSTMLAB_GRU_FLAGS(LSTMLAB_NAME)}; }
inline std::vector<std::string> rnn_flag_names() { return {LSTMLAB_RNN_FLAGS(LSTMLAB_NAME)}; }
inline std::vector<std::string> forward_argument_names() { return {LSTMLAB_FORWARD_ARGS(LSTMLAB_NAME)}; }
inline std::vector<std::string> backward_argument_names() { return {LSTMLAB_BACKWARD_ARGS(LSTMLAB_NAME)}; }
inline std::vector<std::string> forward_result_names() { return {LSTMLAB_FORWARD_RESULTS(LSTMLAB_NAME)}; }
inline std::vector<std::string> backward_result_names() { return {LSTMLAB_BACKWARD_RESULTS(LSTMLAB_NAME)}; }
inline std::vector<std::string> layer_weight_names() { return {LSTMLAB_LAYER_WEIGHTS(LSTMLAB_NAME)}; }

// The results; an absent one (c_n of a GRU, dx when not needed, ...) is undefined.
struct ForwardResult {
  LSTMLAB_FORWARD_RESULTS(LSTMLAB_FIELD)
};
struct BackwardResult {
  LSTMLAB_BACKWARD_RESULTS(LSTMLAB_FIELD)
};
inline std::vector<Tensor> to_list(const ForwardResult& r) { return {LSTMLAB_FORWARD_RESULTS(LSTMLAB_ITEM)}; }
inline std::vector<Tensor> to_list(const BackwardResult& r) { return {LSTMLAB_BACKWARD_RESULTS(LSTMLAB_ITEM)}; }

// The ops' tensor arguments, contiguous; absent ones undefined. Named as the
// arguments of lstmlab::fused_layer and lstmlab::fused_layer_backward.
// `len` reads `lengths` once it is checked.
struct ForwardInputs {
  Tensor x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_ch, a0, w_gh, w_hr, lengths;
  bool save = false;
  Tensor recurrent_mask, zoneout_h, zoneout_c, w_ln_ih, w_ln_hh, w_ln_c, b_ln_c;
  Lengths len;
  bool layer_norm() const { return w_ln_ih.defined(); }
};
struct BackwardInputs {
  Tensor dy, dh_n, dc_n, da_n, x, h0, c0, a0, w_ih, w_hh;
  bool has_bias = false;
  Tensor w_ch, w_gh, w_hr, lengths, hs, cs, gates, extra, acts, ms;
  bool need_dx = false;
  Tensor recurrent_mask, zoneout_h, zoneout_c, w_ln_ih, w_ln_hh, w_ln_c, b_ln_c, wx, uh;
  Lengths len;
  bool layer_norm() const { return w_ln_ih.defined(); }
};

// The LSTM's flags, decoded. FGR: a = the activations of the sigmoid gates that
// exist (i, f, o, in that order: the "recurrent gates"), carried as a third state;
// V a_{t-1} adds to their pre-activations (w_gh, see lstmlab/cells/lstm.py). Block k
// of a belongs to the gate block rblock[k].
struct LSTMFlags {
  int64_t gate_i, gate_f, gate_g, gate_o, peephole_i, peephole_f, peephole_o;
  bool coupled, tanh_g, tanh_h, gate_recurrence;
  std::vector<int64_t> rblock;
  int64_t ri = -1, rf = -1, ro = -1;  // block of i, f, o in a (-1 if absent)
  explicit LSTMFlags(const std::vector<int64_t>& v)
      : gate_i(v[LSTMFlag::gate_i]),
        gate_f(v[LSTMFlag::gate_f]),
        gate_g(v[LSTMFlag::gate_g]),
        gate_o(v[LSTMFlag::gate_o]),
        peephole_i(v[LSTMFlag::peephole_i]),
        peephole_f(v[LSTMFlag::peephole_f]),
        peephole_o(v[LSTMFlag::peephole_o]),
        coupled(v[LSTMFlag::coupled]),
        tanh_g(v[LSTMFlag::tanh_g]),
        tanh_h(v[LSTMFlag::tanh_h]),
        gate_recurrence(v[LSTMFlag::gate_recurrence]) {
    if (!gate_recurrence) return;
    if (gate_i >= 0) ri = (int64_t)rblock.size(), rblock.push_back(gate_i);
    if (gate_f >= 0) rf = (int64_t)rblock.size(), rblock.push_back(gate_f);
    if (gate_o >= 0) ro = (int64_t)rblock.size(), rblock.push_back(gate_o);
  }
  int64_t G() const { return (gate_i >= 0) + (gate_f >= 0) + (gate_g >= 0) + (gate_o >= 0); }  // gate blocks
  int64_t NP() const { return (peephole_i >= 0) + (peephole_f >= 0) + (peephole_o >= 0); }   // peephole vectors
  int64_t R() const { return (int64_t)rblock.size(); }                                         // FGR's blocks
};

struct GRUFlags {
  bool reset_before;
  explicit GRUFlags(const std::vector<int64_t>& v) : reset_before(v[GRUFlag::reset_before]) {}
};

struct RNNFlags {
  bool relu;
  explicit RNNFlags(const std::vector<int64_t>& v) : relu(v[RNNFlag::relu]) {}
};

}  // namespace lstmlab
