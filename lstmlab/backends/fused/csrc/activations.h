// Activations. float: branch-free polynomial forms (Cephes) that the compiler
// vectorizes; double: the C library, exact to the last bit the tests check.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace lstmlab {

// Inlined always: a call in a unit loop keeps the loop from vectorizing.
#define LSTMLAB_INLINE inline __attribute__((always_inline))

LSTMLAB_INLINE float exp_(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float z = x * x;
  float y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x +
             1.6666665459e-1f) * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  int32_t bits = ((int32_t)fx + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

inline double exp_(double x) { return std::exp(x); }

LSTMLAB_INLINE float tanh_(float x) {
  float ax = std::fabs(x);
  float z = x * x;
  float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
                 3.33332819422e-1f) * z * x + x;
  float large = 1.0f - 2.0f / (exp_(2.0f * ax) + 1.0f);
  large = std::copysign(large, x);
  return ax < 0.625f ? small : large;
}

inline double tanh_(double x) { return std::tanh(x); }

template <typename S>
LSTMLAB_INLINE S sigmoid_(S x) {
  return S(1) / (S(1) + exp_(-x));
}

}  // namespace lstmlab
