// The LSTM's forward when nothing is saved for backward (inference), for every
// variant but full gate recurrence and the projection (lstm.cpp runs those).
//
// What it does that the forward of lstm.cpp does not:
// - The hidden units are split into one slice per thread, and the weight rows of each
//   slice's gates (i, f, g, o of units j0..j1) are packed into one block, once per call,
//   by the thread that runs the slice; each thread then computes its slice's products and,
//   while they are in cache, the slice's pointwise pass: one team of threads for the whole
//   sequence meeting at a barrier after each step, instead of a threaded product followed
//   by a threaded pass at every step. Where all the weights fit a core's L2 cache, the
//   batch rows are split instead: each thread packs all the weights and runs its rows'
//   sequences with no barrier at all. Small sizes run on one thread.
// - No input projection of all steps ahead: each step's input and recurrent products are
//   summed tile by tile in the cache (panel_gemm.h's multiply_sum), into one step's
//   buffer, with the weights packed once per call into panels (BLAS would repack them at
//   every step). The pre-activations of all steps never go to memory and back.
// - The pointwise pass is one loop over the units computing the whole cell (L1-L6);
//   it stores h' and c' only: the gate activations that only backward reads are not
//   written back.
// - One row (B = 1, float): no packing and one thread; each step's two products are one
//   matrix-vector pass over the weights (row_gemv.h).

#include <cstdlib>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "activations.h"
#include "cells.h"
#include "panel_gemm.h"
#include "products.h"
#include "row_gemv.h"

namespace lstmlab {
namespace {

// Multiply-adds of a step's products (input and recurrent) below which one thread does
// the step: as for gemm.h's kSerialGemmBelow, waking threads costs more than they save.
constexpr int64_t kOneThreadBelow = int64_t(1) << 18;

// The packed path runs sequences of at least kMinSteps steps and kMinRows rows (one row
// takes the one-row path below, other shapes the training forward): packing the weights
// is repaid over several steps, and the kernel needs several rows to keep its
// multiply-adds independent (a row's tile has two accumulators, so one row waits on the
// adds' latency). Measured, peephole, H = 256, one thread, path / training forward without
// saves (about 15% noise: the same code read 0.97 and 1.16): B = 16 at T = 1, 2, 4, 32:
// 1.33, 1.20, 0.84, 0.67; B = 8 at T = 4, 16: 1.14, 0.79; B = 4: 1.17, 0.95; B = 1 at
// T = 1, 32: 2.03, 1.10.
constexpr int64_t kMinSteps = 8;
constexpr int64_t kMinRows = 8;

// Units per slice are a multiple of this (one AVX-512 register of floats), so that
// every slice's loop vectorizes from an aligned start.
constexpr int64_t kUnitAlign = 16;

// Bytes of weights (input and recurrent, all gates) up to which the threads split the batch
// rows rather than the hidden units: each thread then packs all the weights for itself
// (they stay in its core's L2 cache) and runs its rows' sequences, independent of the other
// threads', with no barrier at all; above it, a thread streaming all the weights at every
// step would read twice what it reads with its slice of units.
constexpr int64_t kRowSplitBelow = int64_t(512) << 10;

// How a call's work is split between threads: part s runs the units [units[u], units[u + 1])
// of the rows [rows[r], rows[r + 1]), u = s % (units.size() - 1), r = s / (units.size() - 1).
// Either the units or the rows are split, not both.
struct Split {
  std::vector<int64_t> units, rows;
  int64_t parts() const { return int64_t(units.size() - 1) * int64_t(rows.size() - 1); }
  bool independent() const { return units.size() == 2; }  // whole rows: no part reads another's h
};

// The starts of n parts of [0, size) (and size), each but the last a multiple of `align`.
std::vector<int64_t> even(int64_t size, int64_t n, int64_t align) {
  const int64_t per = (size / n + align - 1) / align * align;
  std::vector<int64_t> start(1, 0);
  for (int64_t s = 0; s < n; ++s) start.push_back(s == n - 1 ? size : std::min(size, start.back() + per));
  return start;
}

// The split for B rows of GH gate rows over P = I + H inputs, of `element` bytes: one thread
// below kOneThreadBelow multiply-adds a step; then rows (at least kMinRows a thread) where
// the weights take at most kRowSplitBelow bytes, else units (at least kUnitAlign a thread).
Split split(int64_t B, int64_t GH, int64_t P, int64_t H, int64_t element) {
  const int64_t threads = B * GH * P < kOneThreadBelow ? 1 : at::get_num_threads();
  const int64_t row_blocks = std::min(threads, B / kMinRows);
  if (row_blocks > 1 && GH * P * element <= kRowSplitBelow) return {{0, H}, even(B, row_blocks, 1)};
  return {even(H, std::max<int64_t>(1, std::min(threads, H / kUnitAlign)), kUnitAlign), {0, B}};
}

// The entries of `bias` (G*H) reordered slice by slice: for each slice, its units' entries
// of gate block 0, then of block 1, ... (G blocks), as the slices' weight rows are packed.
template <typename S>
std::vector<S> bias_by_slices(const S* bias, int64_t G, int64_t H, const std::vector<int64_t>& start) {
  std::vector<S> out;
  out.reserve(G * H);
  for (size_t s = 0; s + 1 < start.size(); ++s)
    for (int64_t g = 0; g < G; ++g) out.insert(out.end(), bias + g * H + start[s], bias + g * H + start[s + 1]);
  return out;
}

// Where a slice's gates are in its block of a step's pre-activations (-1: absent).
struct GateOffsets {
  int64_t i, f, g, o;
};

// The whole cell at units [j, j + lanes of L) of one row: z the slice's pre-activations
// (W x + U h + b, gate blocks of n units), c the previous cell state; writes c2 = c' and
// h2 = h'. Peepholes p_* point to zeros where absent. kCoupled: f = 1 - i (CIFG). Every
// gate present (CIFG's f excepted), G = H = tanh.
template <typename L, bool kCoupled, typename S>
LSTMLAB_INLINE void standard_units(int64_t j, int64_t n, const S* z, const GateOffsets& off, const S* p_i,
                                   const S* p_f, const S* p_o, const S* c, S* c2, S* h2) {
  const L cj = load_<L>(c + j);
  const L i = sigmoid_<L>(fma_(load_<L>(p_i + j), cj, load_<L>(z + off.i * n + j)));  // (L1)
  L f = L(1.0f) - i;  // (L2) CIFG
  if constexpr (!kCoupled) f = sigmoid_<L>(fma_(load_<L>(p_f + j), cj, load_<L>(z + off.f * n + j)));  // (L2)
  const L g = tanh_(load_<L>(z + off.g * n + j));  // (L3)
  const L cn = fma_(f, cj, i * g);  // (L4)
  const L o = sigmoid_<L>(fma_(load_<L>(p_o + j), cn, load_<L>(z + off.o * n + j)));  // (L5)
  store_(c2 + j, cn);
  store_(h2 + j, o * tanh_(cn));  // (L6)
}

// standard_units over one row's n units: eight at a time by hand where F8 exists, then one
// at a time. By hand the pass took a fifth less time than the compiler's vectorization of
// the float form, whose clamps compile to compares and blends (16x64 and 32x128, one
// thread: 1.97 against 2.43 and 7.85 against 9.73 microseconds a step, the same results).
template <typename S, bool kCoupled>
inline void standard_row(int64_t n, const S* z, const GateOffsets& off, const S* p_i, const S* p_f, const S* p_o,
                         const S* c, S* c2, S* h2) {
  int64_t j = 0;
#if LSTMLAB_F8
  if constexpr (std::is_same<S, float>::value)
    for (; j + 8 <= n; j += 8) standard_units<F8, kCoupled>(j, n, z, off, p_i, p_f, p_o, c, c2, h2);
#endif
  for (; j < n; ++j) standard_units<S, kCoupled>(j, n, z, off, p_i, p_f, p_o, c, c2, h2);
}

// The same for any gates and activations (NIG, NFG, NOG, NIAF, NOAF): absent gates
// read as ones. `tmp` holds 2 * n values.
template <typename S>
inline void general_row(const LSTMFlags& F, int64_t n, const S* z, const GateOffsets& off, const S* p_i, const S* p_f,
                        const S* p_o, const S* c, S* c2, S* h2, S* tmp) {
  S* i = tmp;
  S* f = tmp + n;
  if (off.i >= 0)
    for (int64_t j = 0; j < n; ++j) i[j] = sigmoid_<S>(z[off.i * n + j] + p_i[j] * c[j]);  // (L1)
  else
    for (int64_t j = 0; j < n; ++j) i[j] = S(1);
  if (off.f >= 0)
    for (int64_t j = 0; j < n; ++j) f[j] = sigmoid_<S>(z[off.f * n + j] + p_f[j] * c[j]);  // (L2)
  else if (F.coupled)
    for (int64_t j = 0; j < n; ++j) f[j] = S(1) - i[j];  // (L2) CIFG
  else
    for (int64_t j = 0; j < n; ++j) f[j] = S(1);
  const S* zg = z + off.g * n;
  if (F.tanh_g)
    for (int64_t j = 0; j < n; ++j) c2[j] = f[j] * c[j] + i[j] * tanh_(zg[j]);  // (L3) (L4)
  else
    for (int64_t j = 0; j < n; ++j) c2[j] = f[j] * c[j] + i[j] * zg[j];  // (L3) NIAF, (L4)
  if (F.tanh_h)
    for (int64_t j = 0; j < n; ++j) h2[j] = tanh_(c2[j]);
  else
    std::memcpy(h2, c2, n * sizeof(S));
  if (off.o >= 0)
    for (int64_t j = 0; j < n; ++j) h2[j] *= sigmoid_<S>(z[off.o * n + j] + p_o[j] * c2[j]);  // (L5) (L6)
}

// One row of the cell over `n` units (standard_row or general_row, as the flags say).
template <typename S>
inline void cell_row(const LSTMFlags& F, bool standard, int64_t n, const S* z, const GateOffsets& off, const S* p_i,
                     const S* p_f, const S* p_o, const S* c, S* c2, S* h2, S* tmp) {
  if (!standard)
    general_row<S>(F, n, z, off, p_i, p_f, p_o, c, c2, h2, tmp);
  else if (F.coupled)
    standard_row<S, true>(n, z, off, p_i, p_f, p_o, c, c2, h2);
  else
    standard_row<S, false>(n, z, off, p_i, p_f, p_o, c, c2, h2);
}

// Whether every gate is there (CIFG's forget gate excepted) with tanh activations: the
// cells standard_row computes.
inline bool is_standard(const LSTMFlags& F) {
  return F.gate_i >= 0 && F.gate_o >= 0 && (F.gate_f >= 0 || F.coupled) && F.tanh_g && F.tanh_h;
}

// prepare(s) for every part s, then step(t, s) for every step t in order and every part s,
// parts across threads (a thread prepares the parts it steps). With OpenMP, one team runs
// the whole sequence, each thread its parts, meeting at a barrier after each step unless
// the parts are independent (a spinning barrier costs well under a microsecond, a parallel
// region per step several: at 32x128 a step's work is about 10 microseconds); without it,
// one parallel_for per step.
template <typename Prepare, typename Step>
void all_steps(int64_t T, int64_t n_parts, bool independent, const Prepare& prepare, const Step& step) {
#ifdef _OPENMP
#pragma omp parallel num_threads(static_cast<int>(n_parts))
  {
    FlushDenormals flush;
    const int64_t first = omp_get_thread_num(), stride = omp_get_num_threads();
    for (int64_t s = first; s < n_parts; s += stride) prepare(s);
    if (independent) {
      for (int64_t s = first; s < n_parts; s += stride)
        for (int64_t t = 0; t < T; ++t) step(t, s);
    } else {
#pragma omp barrier
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t s = first; s < n_parts; s += stride) step(t, s);
#pragma omp barrier
      }
    }
  }
#else
  (void)independent;
  at::parallel_for(0, n_parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) prepare(s);
  });
  for (int64_t t = 0; t < T; ++t)
    at::parallel_for(0, n_parts, 1, [&](int64_t begin, int64_t end) {
      FlushDenormals flush;
      for (int64_t s = begin; s < end; ++s) step(t, s);
    });
#endif
}

template <typename S>
ForwardResult infer(const LSTMFlags& F, const ForwardInputs& in) {
  const int64_t T = in.x.size(0), B = in.x.size(1), H = in.c0.size(1), GH = in.w_ih.size(0), G = F.G();
  const Lengths& len = in.len;
  auto opts = in.x.options();
  const int64_t I = in.x.size(2);
  const Split work = split(B, GH, I + H, H, sizeof(S));
  const std::vector<int64_t>& start = work.units;
  const int64_t n_units = (int64_t)start.size() - 1, n_parts = work.parts();
  // the weights and biases slice of units by slice (each part's weights packed by the thread
  // that runs it), and so each step's pre-activations
  const Tensor w_ih = in.w_ih.contiguous(), w_hh = in.w_hh.contiguous();
  const Tensor summed = summed_bias(in.b_ih, in.b_hh);
  const std::vector<S> bias = summed.defined() ? bias_by_slices(summed.data_ptr<S>(), G, H, start) : std::vector<S>();
  const S* bias_p = bias.empty() ? nullptr : bias.data();
  const Tensor x = in.x.contiguous();
  const S* xp = x.data_ptr<S>();
  std::vector<PanelWeights<S>> input_w(n_parts), recurrent_w(n_parts);
  auto prepare = [&](int64_t s) {
    const int64_t j0 = start[s % n_units], units = start[s % n_units + 1] - j0;
    input_w[s] = PanelWeights<S>(G, H, j0, units, I, w_ih.data_ptr<S>());
    recurrent_w[s] = PanelWeights<S>(G, H, j0, units, H, w_hh.data_ptr<S>());
  };
  Tensor gates = at::empty({B, GH}, opts);  // one step's pre-activations, slice by slice
  Tensor y = at::empty({T, B, H}, opts);
  Tensor hs = len.given ? at::empty({T, B, H}, opts) : y;  // the state sequence; y is zero where padded
  Tensor cs = at::empty({2, B, H}, opts);
  Tensor zeros = at::zeros({H}, opts);
  Tensor scratch = at::empty({n_parts, 2 * H}, opts);  // general_row's i and f, per part
  const bool standard = is_standard(F);
  const GateOffsets off{F.gate_i, F.gate_f, F.gate_g, F.gate_o};
  S* Gp = gates.data_ptr<S>();
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* csp = cs.data_ptr<S>();
  S* tmp = scratch.data_ptr<S>();
  const S* zero = zeros.data_ptr<S>();
  const S* pch = data_or_null<S>(in.w_ch);
  const S* p_i = F.peephole_i >= 0 ? pch + F.peephole_i * H : zero;
  const S* p_f = F.peephole_f >= 0 ? pch + F.peephole_f * H : zero;
  const S* p_o = F.peephole_o >= 0 ? pch + F.peephole_o * H : zero;

  // step t on part s: the product into the part's pre-activations, then its rows
  auto step = [&](int64_t t, int64_t s) {
    const int64_t j0 = start[s % n_units], n = start[s % n_units + 1] - j0;
    const int64_t r0 = work.rows[s / n_units], r1 = work.rows[s / n_units + 1];
    const S* hp = t == 0 ? in.h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    const S* cp = t == 0 ? in.c0.data_ptr<S>() : csp + ((t - 1) % 2) * B * H;
    S* hn = hsp + t * B * H;
    S* cn = csp + (t % 2) * B * H;
    S* Gt = Gp + G * j0;
    multiply_sum<S>(r1 - r0, xp + (t * B + r0) * I, I, input_w[s], hp + r0 * H, H, recurrent_w[s],
                    bias_p == nullptr ? nullptr : bias_p + G * j0, Gt + r0 * GH, GH);
    for (int64_t b = r0; b < r1; ++b) {
      const S* c = cp + b * H + j0;
      S* c2 = cn + b * H + j0;
      S* h2 = hn + b * H + j0;
      S* yb = yp + (t * B + b) * H + j0;
      if (!len.keep(t, b)) {
        std::memcpy(c2, c, n * sizeof(S));
        std::memcpy(h2, hp + b * H + j0, n * sizeof(S));
        std::memset(yb, 0, n * sizeof(S));
        continue;
      }
      cell_row<S>(F, standard, n, Gt + b * GH, off, p_i + j0, p_f + j0, p_o + j0, c, c2, h2, tmp + s * 2 * H);
      if (yb != h2) std::memcpy(yb, h2, n * sizeof(S));
    }
  };
  if (n_parts > 1 && !at::in_parallel_region()) {
    all_steps(T, n_parts, work.independent(), prepare, step);
  } else {  // one part, or called from a parallel region: this thread takes every part
    for (int64_t s = 0; s < n_parts; ++s) prepare(s);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t s = 0; s < n_parts; ++s) step(t, s);
  }
  ForwardResult r;
  r.y = y;
  r.h_n = hs[T - 1].clone();
  r.c_n = cs[(T - 1) % 2].clone();
  return r;
}

#if LSTMLAB_ROW_GEMV
// The same for one sequence (B = 1), as in sampling and decoding: each step's products as
// one pass over the weights (row_gemv.h), nothing packed, no tensor allocated but the
// outputs.
ForwardResult infer_one_row(const LSTMFlags& F, const ForwardInputs& in) {
  const int64_t T = in.x.size(0), I = in.x.size(2), H = in.c0.size(1), GH = in.w_ih.size(0);
  const Tensor x = in.x.contiguous(), w_ih = in.w_ih.contiguous(), w_hh = in.w_hh.contiguous();
  const Tensor b_ih = in.b_ih.defined() ? in.b_ih.contiguous() : Tensor();
  const Tensor b_hh = in.b_hh.defined() ? in.b_hh.contiguous() : Tensor();
  auto opts = in.x.options();
  Tensor y = at::empty({T, 1, H}, opts), h_n = at::empty({1, H}, opts), c_n = at::empty({1, H}, opts);
  std::vector<float> gates(GH), zero(H, 0.0f), tmp(2 * H), h(2 * H), c(2 * H);
  const float* pch = data_or_null<float>(in.w_ch);
  const float* p_i = F.peephole_i >= 0 ? pch + F.peephole_i * H : zero.data();
  const float* p_f = F.peephole_f >= 0 ? pch + F.peephole_f * H : zero.data();
  const float* p_o = F.peephole_o >= 0 ? pch + F.peephole_o * H : zero.data();
  const GateOffsets off{F.gate_i, F.gate_f, F.gate_g, F.gate_o};
  const bool standard = is_standard(F);
  const float* hp = in.h0.data_ptr<float>();
  const float* cp = in.c0.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t, yp += H) {
    float* hn = h.data() + (t % 2) * H;
    float* cn = c.data() + (t % 2) * H;
    if (in.len.keep(t, 0)) {
      row_products(GH, w_ih.data_ptr<float>(), I, x.data_ptr<float>() + t * I, w_hh.data_ptr<float>(), H, hp,
                   data_or_null<float>(b_ih), data_or_null<float>(b_hh), gates.data());
      cell_row<float>(F, standard, H, gates.data(), off, p_i, p_f, p_o, cp, cn, hn, tmp.data());
      std::memcpy(yp, hn, H * sizeof(float));
    } else {  // past the sequence's length: the state stays, the output is zero
      std::memcpy(hn, hp, H * sizeof(float));
      std::memcpy(cn, cp, H * sizeof(float));
      std::memset(yp, 0, H * sizeof(float));
    }
    hp = hn;
    cp = cn;
  }
  std::memcpy(h_n.data_ptr<float>(), hp, H * sizeof(float));
  std::memcpy(c_n.data_ptr<float>(), cp, H * sizeof(float));
  ForwardResult r;
  r.y = y;
  r.h_n = h_n;
  r.c_n = c_n;
  return r;
}
#endif

// The one-row path runs float sequences of one row, of any length: peephole, one thread,
// against the training forward without saves, T = 8 at H = 64, 256, 512: 0.67, 0.80, 0.88;
// T = 100: 0.73, 0.85, 1.00 (at 512 both stream the weights from L3).
bool one_row(const ForwardInputs& in) {
  return LSTMLAB_ROW_GEMV && in.x.scalar_type() == at::kFloat && in.x.size(1) == 1;
}

}  // namespace

bool lstm_inference_runs(const LSTMFlags& flags, const ForwardInputs& in) {
  // On unless LSTMLAB_FUSED_INFERENCE=0 (read at each call), which runs the training forward
  // without saves instead: a baseline for benchmarks (benchmarks/RESULTS.md).
  const char* choice = std::getenv("LSTMLAB_FUSED_INFERENCE");
  if (choice != nullptr && std::strcmp(choice, "0") == 0) return false;
  const bool shape = (in.x.size(0) >= kMinSteps && in.x.size(1) >= kMinRows) || one_row(in);
  return !in.save && !flags.gate_recurrence && !in.w_hr.defined() && shape && in.c0.size(1) > 0 &&
         !in.recurrent_mask.defined() && !in.zoneout_h.defined() && !in.zoneout_c.defined() && !in.layer_norm();
}

ForwardResult lstm_inference(const LSTMFlags& flags, const ForwardInputs& in) {
#if LSTMLAB_ROW_GEMV
  if (one_row(in)) return infer_one_row(flags, in);
#endif
  return AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "lstmlab_lstm_inference",
                                    [&] { return infer<scalar_t>(flags, in); });
}

}  // namespace lstmlab
