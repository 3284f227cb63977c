// One row's input and recurrent products, y = W1 x1 + W2 x2 + b1 + b2, for a step of a
// single sequence (B = 1, as in sampling and decoding): a matrix-vector product reads every
// weight once for two multiply-adds, so its speed is the speed at which the weights stream
// from memory. Four weight rows at a time against the vectors, with both products summed
// in the same registers, stream at about twice the rate of MKL's sgemv called for each
// product (72 against 37 GB/s for 4 MB of weights, one thread, benchmarks/RESULTS.md).
//
// float with AVX2 and FMA only (LSTMLAB_ROW_GEMV); other builds take the training forward.
#pragma once

#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSTMLAB_ROW_GEMV 1
#else
#define LSTMLAB_ROW_GEMV 0
#endif

namespace lstmlab {

#if LSTMLAB_ROW_GEMV
namespace gemv {

inline float sum_of(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}

// acc[r] += W[r] . x for the R rows of W (leading dimension k) from w.
template <int R>
inline void dot_rows(const float* w, int64_t k, const float* x, __m256 (&acc)[R], float (&tail)[R]) {
  int64_t q = 0;
  for (; q + 8 <= k; q += 8) {
    const __m256 v = _mm256_loadu_ps(x + q);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * k + q), v, acc[r]);
  }
  for (; q < k; ++q)
    for (int r = 0; r < R; ++r) tail[r] += w[r * k + q] * x[q];
}

template <int R>
inline void rows(const float* w1, int64_t k1, const float* x1, const float* w2, int64_t k2, const float* x2,
                 const float* b1, const float* b2, float* y) {
  __m256 acc[R];
  float tail[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm256_setzero_ps();
    tail[r] = (b1 != nullptr ? b1[r] : 0.0f) + (b2 != nullptr ? b2[r] : 0.0f);
  }
  dot_rows<R>(w1, k1, x1, acc, tail);
  dot_rows<R>(w2, k2, x2, acc, tail);
  for (int r = 0; r < R; ++r) y[r] = sum_of(acc[r]) + tail[r];
}

}  // namespace gemv

// y (n) = W1 (n x k1) x1 + W2 (n x k2) x2 + b1 + b2, row-major weights; b1 and b2 may be null.
inline void row_products(int64_t n, const float* w1, int64_t k1, const float* x1, const float* w2, int64_t k2,
                         const float* x2, const float* b1, const float* b2, float* y) {
  int64_t r = 0;
  for (; r + 4 <= n; r += 4)
    gemv::rows<4>(w1 + r * k1, k1, x1, w2 + r * k2, k2, x2, b1 == nullptr ? nullptr : b1 + r,
                  b2 == nullptr ? nullptr : b2 + r, y + r);
  for (; r < n; ++r)
    gemv::rows<1>(w1 + r * k1, k1, x1, w2 + r * k2, k2, x2, b1 == nullptr ? nullptr : b1 + r,
                  b2 == nullptr ? nullptr : b2 + r, y + r);
}
#endif  // LSTMLAB_ROW_GEMV

}  // namespace lstmlab
