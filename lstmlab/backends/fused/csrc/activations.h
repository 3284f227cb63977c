// Activations. float: one branch-free rational function, written once for a lane type L:
// float (loops the compiler vectorizes) or, with AVX2/FMA, F8 (eight floats in a register,
// for loops vectorized by hand); double: the C library, exact to the last bit the tests check.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSTMLAB_F8 1
#else
#define LSTMLAB_F8 0
#endif

namespace lstmlab {

// Inlined always: a call in a unit loop keeps the loop from vectorizing.
#define LSTMLAB_INLINE inline __attribute__((always_inline))

// The arithmetic of a lane type beyond + - * /: a * b + c (one multiply-add where the CPU
// has them: the compiler contracts it), and x clamped to [lo, hi] with NaN kept; loads and
// stores of lane type L from and to arrays of S.
LSTMLAB_INLINE float fma_(float a, float b, float c) { return a * b + c; }
LSTMLAB_INLINE double fma_(double a, double b, double c) { return a * b + c; }
LSTMLAB_INLINE float clamp_(float x, float lo, float hi) { return std::min(std::max(x, lo), hi); }
template <typename L, typename S>
LSTMLAB_INLINE L load_(const S* p) {
  return *p;
}
LSTMLAB_INLINE void store_(float* p, float v) { *p = v; }
LSTMLAB_INLINE void store_(double* p, double v) { *p = v; }

#if LSTMLAB_F8
// Eight floats in one AVX2 register. The compiler's own vectorization of the float form
// clamps with a compare and a blend each way; max and min here are one instruction each
// (max_ps(lo, x) returns x when x is NaN, so NaN still propagates).
struct F8 {
  __m256 v;
  F8(float x) : v(_mm256_set1_ps(x)) {}  // NOLINT: the constants of the shared formulas
  explicit F8(__m256 x) : v(x) {}
};
LSTMLAB_INLINE F8 operator+(F8 a, F8 b) { return F8(_mm256_add_ps(a.v, b.v)); }
LSTMLAB_INLINE F8 operator-(F8 a, F8 b) { return F8(_mm256_sub_ps(a.v, b.v)); }
LSTMLAB_INLINE F8 operator*(F8 a, F8 b) { return F8(_mm256_mul_ps(a.v, b.v)); }
LSTMLAB_INLINE F8 operator/(F8 a, F8 b) { return F8(_mm256_div_ps(a.v, b.v)); }
LSTMLAB_INLINE F8 fma_(F8 a, F8 b, F8 c) { return F8(_mm256_fmadd_ps(a.v, b.v, c.v)); }
LSTMLAB_INLINE F8 clamp_(F8 x, float lo, float hi) {
  return F8(_mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), x.v)));
}
template <>
LSTMLAB_INLINE F8 load_<F8, float>(const float* p) {
  return F8(_mm256_loadu_ps(p));
}
LSTMLAB_INLINE void store_(float* p, F8 v) { _mm256_storeu_ps(p, v.v); }
#endif

// tanh(x) = x P(x^2) / Q(x^2) on [-8, 8], clamped outside (tanh(8) = 1 - 2.3e-7): a
// least-squares rational fit to tanh(x) / x in relative error (P of degree 5, Q of degree
// 3 in x^2), 1.9e-8 in exact arithmetic; evaluated in float by Horner's rule its error is
// below 3.7e-7 relative and absolute (3 units in the last place) over all floats, and
// |tanh_(x)| <= 0.9999998 (tanh_(8)). Ten multiply-adds and one division, against an
// exponential, a division and a second polynomial for the small arguments in the form it
// replaces (benchmarks/RESULTS.md, "Cheaper activations"). NaN propagates.
template <typename L>
LSTMLAB_INLINE L rational_tanh(L x) {
  const L c = clamp_(x, -8.0f, 8.0f);
  const L s = c * c;
  L p = fma_(L(2.351054941e-11f), s, L(-1.470488797e-08f));
  p = fma_(p, s, L(9.878862329e-06f));
  p = fma_(p, s, L(2.985883038e-03f));
  p = fma_(p, s, L(1.297924221e-01f));
  p = fma_(p, s, L(1.0f));
  L q = fma_(L(2.372062008e-04f), s, L(2.402800880e-02f));
  q = fma_(q, s, L(4.631255865e-01f));
  q = fma_(q, s, L(1.0f));
  return c * p / q;
}

LSTMLAB_INLINE float tanh_(float x) { return rational_tanh(x); }
inline double tanh_(double x) { return std::tanh(x); }

// sigmoid(x) = (1 + tanh(x / 2)) / 2, absolute error below 2e-7 (float: between 8.9e-8
// and 1 - 1.2e-7 for every x).
template <typename S>
LSTMLAB_INLINE S sigmoid_(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

template <>
LSTMLAB_INLINE float sigmoid_<float>(float x) {
  return fma_(0.5f, tanh_(0.5f * x), 0.5f);
}

#if LSTMLAB_F8
LSTMLAB_INLINE F8 tanh_(F8 x) { return rational_tanh(x); }
template <>
LSTMLAB_INLINE F8 sigmoid_<F8>(F8 x) {
  return fma_(F8(0.5f), tanh_(F8(0.5f) * x), F8(0.5f));
}
#endif

}  // namespace lstmlab
