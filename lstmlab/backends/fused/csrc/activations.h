// Activations. float: one branch-free rational function that the compiler vectorizes;
// double: the C library, exact to the last bit the tests check.
#pragma once

#include <algorithm>
#include <cmath>

namespace lstmlab {

// Inlined always: a call in a unit loop keeps the loop from vectorizing.
#define LSTMLAB_INLINE inline __attribute__((always_inline))

// tanh(x) = x P(x^2) / Q(x^2) on [-8, 8], clamped outside (tanh(8) = 1 - 2.3e-7): a
// least-squares rational fit to tanh(x) / x in relative error (P of degree 5, Q of degree
// 3 in x^2), 1.9e-8 in exact arithmetic; evaluated in float by Horner's rule its error is
// below 3.7e-7 relative and absolute (3 units in the last place) over all floats, and
// |tanh_(x)| <= 0.9999998 (tanh_(8)). Ten multiply-adds and one division, against an exponential, a
// division and a second polynomial for the small arguments in the form it replaces
// (benchmarks/RESULTS.md, "Cheaper activations"). NaN propagates.
LSTMLAB_INLINE float tanh_(float x) {
  const float c = std::min(std::max(x, -8.0f), 8.0f);
  const float s = c * c;
  const float p =
      ((((2.351054941e-11f * s - 1.470488797e-08f) * s + 9.878862329e-06f) * s + 2.985883038e-03f) * s +
       1.297924221e-01f) * s + 1.0f;
  const float q = ((2.372062008e-04f * s + 2.402800880e-02f) * s + 4.631255865e-01f) * s + 1.0f;
  return c * p / q;
}

inline double tanh_(double x) { return std::tanh(x); }

// sigmoid(x) = (1 + tanh(x / 2)) / 2, absolute error below 2e-7 (float: between 8.9e-8
// and 1 - 1.2e-7 for every x).
template <typename S>
LSTMLAB_INLINE S sigmoid_(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

template <>
LSTMLAB_INLINE float sigmoid_<float>(float x) {
  return 0.5f * tanh_(0.5f * x) + 0.5f;
}

}  // namespace lstmlab
