// The recurrent product of a forward pass, C = A W^T + beta C at every step with the same
// W: W packed once per call into panels of 16 columns of W^T, each multiplied by a
// register-blocked AVX2/FMA kernel (6 rows x 16 columns of C held in 12 registers while
// the panel streams from L1). BLAS repacks W at every call; at the per-step sizes of
// small and medium models that packing and its call overhead cost more than the
// product (benchmarks/RESULTS.md, "The recurrent product"). float, where the extension is
// compiled with AVX2 and FMA; elsewhere, for double, or for sequences too short to repay
// the packing, `RecurrentProduct` calls `gemm` (gemm.h).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "gemm.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSTMLAB_PANEL_GEMM 1
#else
#define LSTMLAB_PANEL_GEMM 0
#endif

namespace lstmlab {

// Steps from which packing pays: packing reads W once, as one step's product does.
constexpr int64_t kPanelMinSteps = 4;

#if LSTMLAB_PANEL_GEMM

constexpr int64_t kPanel = 16;  // columns of C per panel: two AVX registers
constexpr int64_t kRows = 6;    // rows of C per kernel call: 12 accumulators

// C[0:R, 0:16] = A[0:R, :] panel + beta C, over k; a: R rows (lda), panel: k x 16, c: R rows (ldc).
template <int R>
inline void panel_kernel(int64_t k, const float* a, int64_t lda, const float* panel, bool accumulate, float* c,
                         int64_t ldc) {
  __m256 acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    acc[r][0] = accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    acc[r][1] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t q = 0; q < k; ++q) {
    const __m256 b0 = _mm256_load_ps(panel + q * kPanel), b1 = _mm256_load_ps(panel + q * kPanel + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 v = _mm256_broadcast_ss(a + r * lda + q);
      acc[r][0] = _mm256_fmadd_ps(v, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(v, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc[r][0]);
    _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
  }
}

// Rows [0, R) of one panel where C has only `cols` < 16 columns left: through a 16-wide buffer.
template <int R>
inline void panel_kernel_tail(int64_t k, const float* a, int64_t lda, const float* panel, bool accumulate, float* c,
                              int64_t ldc, int64_t cols) {
  alignas(32) float buffer[R * kPanel] = {};
  if (accumulate)
    for (int r = 0; r < R; ++r) std::memcpy(buffer + r * kPanel, c + r * ldc, cols * sizeof(float));
  panel_kernel<R>(k, a, lda, panel, accumulate, buffer, kPanel);
  for (int r = 0; r < R; ++r) std::memcpy(c + r * ldc, buffer + r * kPanel, cols * sizeof(float));
}

template <int R>
inline void panel_rows(int64_t k, const float* a, int64_t lda, const float* panel, bool accumulate, float* c,
                       int64_t ldc, int64_t cols) {
  if (cols == kPanel)
    panel_kernel<R>(k, a, lda, panel, accumulate, c, ldc);
  else
    panel_kernel_tail<R>(k, a, lda, panel, accumulate, c, ldc, cols);
}

#endif  // LSTMLAB_PANEL_GEMM

// C (m x n, row-major, ldc) = A (m x k, lda) W^T + beta C, beta 0 or 1, for one W (n x k,
// row-major) used at every step of a call; see the top of this file.
template <typename S>
class RecurrentProduct {
 public:
  RecurrentProduct(int64_t m, int64_t n, int64_t k, const S* w, int64_t steps) : m_(m), n_(n), k_(k), w_(w) {
#if LSTMLAB_PANEL_GEMM
    if (!std::is_same<S, float>::value || steps < kPanelMinSteps || m == 0 || n == 0 || k == 0) return;
    const int64_t panels = (n + kPanel - 1) / kPanel;
    packed_ = at::empty({panels * k * kPanel + 8}, at::kFloat);  // + 8: room to align to 32 bytes
    float* base = packed_.data_ptr<float>();
    float* aligned = base + (8 - (reinterpret_cast<uintptr_t>(base) / sizeof(float)) % 8) % 8;
    panels_ = aligned;
    const float* W = reinterpret_cast<const float*>(w);
    for (int64_t p = 0; p < panels; ++p) {  // panel p, row q: W[16 p + j, q] for j < 16, zeros past n
      float* out = aligned + p * k * kPanel;
      const int64_t cols = std::min(kPanel, n - p * kPanel);
      for (int64_t q = 0; q < k; ++q) {
        for (int64_t j = 0; j < cols; ++j) out[q * kPanel + j] = W[(p * kPanel + j) * k + q];
        for (int64_t j = cols; j < kPanel; ++j) out[q * kPanel + j] = 0.0f;
      }
    }
#else
    (void)steps;
#endif
  }

  void multiply(const S* a, int64_t lda, S beta, S* c, int64_t ldc) const {
#if LSTMLAB_PANEL_GEMM
    if (panels_ != nullptr) {
      const int64_t panels = (n_ + kPanel - 1) / kPanel;
      const bool accumulate = beta != S(0);
      const float* A = reinterpret_cast<const float*>(a);
      float* C = reinterpret_cast<float*>(c);
      auto run = [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const float* panel = panels_ + p * k_ * kPanel;
          const int64_t cols = std::min(kPanel, n_ - p * kPanel);
          float* cp = C + p * kPanel;
          int64_t i = 0;
          for (; i + kRows <= m_; i += kRows) panel_rows<kRows>(k_, A + i * lda, lda, panel, accumulate, cp + i * ldc, ldc, cols);
          const float* ai = A + i * lda;
          float* ci = cp + i * ldc;
          switch (m_ - i) {
            case 5: panel_rows<5>(k_, ai, lda, panel, accumulate, ci, ldc, cols); break;
            case 4: panel_rows<4>(k_, ai, lda, panel, accumulate, ci, ldc, cols); break;
            case 3: panel_rows<3>(k_, ai, lda, panel, accumulate, ci, ldc, cols); break;
            case 2: panel_rows<2>(k_, ai, lda, panel, accumulate, ci, ldc, cols); break;
            case 1: panel_rows<1>(k_, ai, lda, panel, accumulate, ci, ldc, cols); break;
            default: break;
          }
        }
      };
      if (m_ * n_ * k_ < kSerialGemmBelow) {
        run(0, panels);
      } else {
        at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
          FlushDenormals flush;
          run(begin, end);
        });
      }
      return;
    }
#endif
    gemm<S>(false, true, m_, n_, k_, a, lda, w_, k_, beta, c, ldc);
  }

 private:
  int64_t m_, n_, k_;
  const S* w_;
  Tensor packed_;
  const float* panels_ = nullptr;
};

}  // namespace lstmlab
