// What every kernel shares: the row loop of the pointwise pass, the masking of
// padded steps, and the flushing of denormals.
//
// Layout: time-major, x (T, B, I); gate blocks in the weight rows' order, so a
// step's pre-activations are one row of G*H values per batch entry. With lengths,
// steps t >= lengths[b] keep row b's state, output zero and pass gradients through.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/full.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace lstmlab {

using at::Tensor;

// Denormals are flushed to zero while a kernel runs, on every thread it uses:
// recurrent products of decaying states otherwise fall into the slow denormal path.
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// Rows per chunk of the pointwise pass: enough work per thread that small batches
// are not split into chunks costing more to schedule than to compute.
inline int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

// f(b) for every batch row b, in parallel chunks; `width` is a row's work.
template <typename F>
void for_rows(int64_t B, int64_t width, const F& f) {
  at::parallel_for(0, B, grain(width), [&](int64_t begin, int64_t end) {
    FlushDenormals flush;
    for (int64_t b = begin; b < end; ++b) f(b);
  });
}

// Per-sequence lengths (B,), or none given: every step of every row counts. Given
// and empty (B = 0) is not none: the results that exist only with lengths exist.
struct Lengths {
  bool given = false;
  const int64_t* data = nullptr;
  bool keep(int64_t t, int64_t b) const { return !given || t < data[b]; }
};

inline Lengths lengths_of(const Tensor& lengths) {
  Lengths l;
  if (lengths.defined()) l.given = true, l.data = lengths.data_ptr<int64_t>();
  return l;
}

// The data of an optional tensor, or nullptr when it is absent.
template <typename S>
S* data_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<S>() : nullptr;
}

// Whether a zoneout mask is the evaluation form: one value expanded (every stride zero).
inline bool is_constant(const Tensor& d) {
  for (int64_t k = 0; k < d.dim(); ++k)
    if (d.stride(k) != 0) return false;
  return true;
}

// A zoneout mask d (T, B, S) of (Z1), absent (false) or read as `row(t, b)`: the S
// values of step t, batch row b. The evaluation form reads one row of S copies of its
// value for every step and row; a training mask is contiguous.
template <typename S>
struct ZoneoutMask {
  const S* data = nullptr;
  int64_t step = 0, stride = 0;
  Tensor filled;  // the evaluation form's row
  explicit ZoneoutMask(const Tensor& d) {
    if (!d.defined()) return;
    const int64_t B = d.size(1), n = d.size(2);
    if (is_constant(d)) {
      const S value = d.numel() > 0 ? d.data_ptr<S>()[0] : S(0);
      filled = at::full({std::max<int64_t>(n, 1)}, value, d.options());
      data = filled.data_ptr<S>();
    } else {
      data = d.data_ptr<S>(), step = B * n, stride = n;
    }
  }
  explicit operator bool() const { return data != nullptr; }
  const S* row(int64_t t, int64_t b) const { return data + t * step + b * stride; }
};

// The sum of f(j) for j < n in 8 independent partial sums, which the compiler vectorises
// (one running sum it may not reorder).
template <typename S, typename F>
inline S lane_sum(int64_t n, const F& f) {
  S acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += f(j + k);
  S sum = 0;
  for (; j < n; ++j) sum += f(j);
  for (int k = 0; k < 8; ++k) sum += acc[k];
  return sum;
}

// N's mean and 1 / sqrt(var + ε) of n values (biased variance, ε of lstmlab/cells/layer_norm.py).
template <typename S>
inline void row_statistics(int64_t n, const S* v, S& mean, S& rstd) {
  mean = lane_sum<S>(n, [&](int64_t j) { return v[j]; }) / S(n);
  const S var = lane_sum<S>(n, [&](int64_t j) { return (v[j] - mean) * (v[j] - mean); }) / S(n);
  rstd = S(1) / std::sqrt(var + S(1e-5));
}

// (N2) out = γ ⊙ N(v) over n values (out may be v).
template <typename S>
inline void normalize_row(int64_t n, const S* v, const S* gain, S* out) {
  S mean, rstd;
  row_statistics<S>(n, v, mean, rstd);
  for (int64_t j = 0; j < n; ++j) out[j] = gain[j] * (v[j] - mean) * rstd;
}

// (N2) z += γ ⊙ N(v) over n values.
template <typename S>
inline void add_normalized_row(int64_t n, const S* v, const S* gain, S* z) {
  S mean, rstd;
  row_statistics<S>(n, v, mean, rstd);
  for (int64_t j = 0; j < n; ++j) z[j] += gain[j] * (v[j] - mean) * rstd;
}

// The gradient dv of v from dn, that of γ ⊙ N(v), over n values:
// dv = rstd ⊙ (g − mean(g) − N(v) mean(g ⊙ N(v))) with g = dn ⊙ γ; and dgain += dn ⊙ N(v).
template <typename S>
inline void normalized_row_backward(int64_t n, const S* v, const S* dn, const S* gain, S* dv, S* dgain) {
  S mean, rstd;
  row_statistics<S>(n, v, mean, rstd);
  for (int64_t j = 0; j < n; ++j) dgain[j] += dn[j] * (v[j] - mean) * rstd;
  const S g_mean = lane_sum<S>(n, [&](int64_t j) { return dn[j] * gain[j]; }) / S(n);
  const S gn_mean = lane_sum<S>(n, [&](int64_t j) { return dn[j] * gain[j] * (v[j] - mean) * rstd; }) / S(n);
  for (int64_t j = 0; j < n; ++j) dv[j] = rstd * (dn[j] * gain[j] - g_mean - (v[j] - mean) * rstd * gn_mean);
}

// (Z1) s' = s~ + d ⊙ (s − s~), in place over n values of the candidate s~.
template <typename S>
inline void zoneout(int64_t n, const S* d, const S* old, S* s) {
  for (int64_t j = 0; j < n; ++j) s[j] += d[j] * (old[j] - s[j]);
}

// (D1) m ⊙ h for B rows of n values, m (B, n): the recurrent products' input.
template <typename S>
void mask_rows(int64_t B, int64_t n, const S* m, const S* h, S* out) {
  for_rows(B, n, [&](int64_t b) {
    for (int64_t j = 0; j < n; ++j) out[b * n + j] = m[b * n + j] * h[b * n + j];
  });
}

// (D1) backward: dh += m ⊙ g, g the gradient that reached m ⊙ h through the recurrent products.
template <typename S>
void add_masked_rows(int64_t B, int64_t n, const S* m, const S* g, S* dh) {
  for_rows(B, n, [&](int64_t b) {
    for (int64_t j = 0; j < n; ++j) dh[b * n + j] += m[b * n + j] * g[b * n + j];
  });
}

}  // namespace lstmlab
