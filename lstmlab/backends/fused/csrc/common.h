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

#include <algorithm>
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

}  // namespace lstmlab
