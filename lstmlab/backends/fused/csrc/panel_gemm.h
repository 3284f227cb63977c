// C = A1 W1^T + A2 W2^T + bias for weight matrices used at every step of a call (an LSTM
// step's input and recurrent products): each W packed once per call into panels of 16 of
// its rows (16 columns of C), and a register-blocked AVX2/FMA kernel that holds 6 rows x
// 16 columns of C in 12 registers while the two panels stream from the cache, so the sum
// leaves the registers only when it is whole.
//
// Why not BLAS: the BLAS interface repacks W at every call (every step); the input
// projection of all steps as one product writes T x B x 4H pre-activations to memory that
// each step reads back; and on the AMD Zen 3 cores measured here, MKL's kernel ran the
// per-step products (16x64 ... 128x512, one thread) at 47-63 GFLOP/s where this one runs
// 70-86 (benchmarks/RESULTS.md, "Inference against ONNX Runtime").
//
// float where the extension is compiled with AVX2 and FMA; otherwise (double, or another
// CPU) `multiply_sum` calls `gemm` (gemm.h) and nothing is packed.
#pragma once

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
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

#if LSTMLAB_PANEL_GEMM
namespace panel {

constexpr int64_t kCols = 16;  // columns of C per panel: two registers of 8 floats
constexpr int64_t kRows = 6;   // rows of C per kernel call: 12 accumulators
// Of each product's inner dimension per pass: a pass's two panel blocks (64 KiB) stay in
// the L2 cache while every row of A passes. Fewer, longer passes ran faster: peephole
// 128x512, one thread, against ONNX Runtime, passes of 64, 128, 256, 512: 1.05-1.09,
// 1.02-1.04, 0.97-1.00, 0.94-0.95 (benchmarks/RESULTS.md).
constexpr int64_t kDepth = 512;

// One of a kernel call's two products: rows of A (leading dimension lda) times a panel
// (k x 16, 32-byte aligned) of W^T.
struct Source {
  int64_t k;
  const float* a;
  int64_t lda;
  const float* panel;
};

template <int R>
__attribute__((always_inline)) inline void accumulate(const Source& s, __m256 (&lo)[R], __m256 (&hi)[R]) {
  for (int64_t q = 0; q < s.k; ++q) {
    const __m256 b0 = _mm256_load_ps(s.panel + q * kCols), b1 = _mm256_load_ps(s.panel + q * kCols + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 v = _mm256_broadcast_ss(s.a + r * s.lda + q);
      lo[r] = _mm256_fmadd_ps(v, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(v, b1, hi[r]);
    }
  }
}

// C[0:R, 0:16] = start + both products, start being C itself (add) or else bias (16
// values, the same for every row; zeros if null).
template <int R>
inline void kernel(const Source (&sources)[2], bool add, const float* bias, float* c, int64_t ldc) {
  __m256 lo[R], hi[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (add) {
      lo[r] = _mm256_loadu_ps(c + r * ldc);
      hi[r] = _mm256_loadu_ps(c + r * ldc + 8);
    } else {
      lo[r] = bias != nullptr ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
      hi[r] = bias != nullptr ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
    }
  }
  accumulate<R>(sources[0], lo, hi);
  accumulate<R>(sources[1], lo, hi);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, lo[r]);
    _mm256_storeu_ps(c + r * ldc + 8, hi[r]);
  }
}

// The same where C has only `cols` < 16 columns left: through a 16-wide buffer.
template <int R>
inline void tile(const Source (&sources)[2], bool add, const float* bias, float* c, int64_t ldc, int64_t cols) {
  if (cols == kCols) {
    kernel<R>(sources, add, bias, c, ldc);
    return;
  }
  alignas(32) float buffer[R * kCols];
  alignas(32) float padded[kCols] = {};
  if (add)
    for (int r = 0; r < R; ++r) std::memcpy(buffer + r * kCols, c + r * ldc, cols * sizeof(float));
  if (bias != nullptr) std::memcpy(padded, bias, cols * sizeof(float));
  kernel<R>(sources, add, bias != nullptr ? padded : nullptr, buffer, kCols);
  for (int r = 0; r < R; ++r) std::memcpy(c + r * ldc, buffer + r * kCols, cols * sizeof(float));
}

// Rows [0, m) of one panel's column of tiles: as few tiles as 6 rows allow, of sizes as
// even as possible (8 rows: 4 + 4, not 6 + 2, whose 2 rows hold 4 accumulators, too few
// to hide the multiply-adds' latency).
inline void tile_column(int64_t m, Source (&sources)[2], bool add, const float* bias, float* c, int64_t ldc,
                        int64_t cols) {
  const int64_t tiles = (m + kRows - 1) / kRows;
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t rows = m / tiles + (i < m % tiles ? 1 : 0);
    switch (rows) {
      case 6: tile<6>(sources, add, bias, c, ldc, cols); break;
      case 5: tile<5>(sources, add, bias, c, ldc, cols); break;
      case 4: tile<4>(sources, add, bias, c, ldc, cols); break;
      case 3: tile<3>(sources, add, bias, c, ldc, cols); break;
      case 2: tile<2>(sources, add, bias, c, ldc, cols); break;
      default: tile<1>(sources, add, bias, c, ldc, cols); break;
    }
    for (Source& s : sources) s.a += rows * s.lda;
    c += rows * ldc;
  }
}

}  // namespace panel
#endif  // LSTMLAB_PANEL_GEMM

// One weight matrix of `multiply_sum`: the rows [j0, j0 + units) of each of the `blocks`
// blocks of H rows of W (blocks * H x k, row-major), block after block (a slice of an
// LSTM's hidden units across its gates); n = blocks * units rows. Packed into panels
// where the kernel runs; otherwise those rows as one matrix (W itself when they are all
// of it). Empty when default-constructed, to be assigned.
template <typename S>
class PanelWeights {
 public:
  PanelWeights() = default;
  PanelWeights(int64_t blocks, int64_t H, int64_t j0, int64_t units, int64_t k, const S* W)
      : n_(blocks * units), k_(k), w_(W) {
    auto row = [&](int64_t r) { return W + ((r / units) * H + j0 + r % units) * k; };
#if LSTMLAB_PANEL_GEMM
    using panel::kCols;
    if (std::is_same<S, float>::value && n_ > 0 && k > 0) {
      const int64_t panels = (n_ + kCols - 1) / kCols;
      storage_ = at::empty({panels * k * kCols + 8}, at::kFloat);  // + 8: room to align to 32 bytes
      float* base = storage_.data_ptr<float>();
      float* out = base + (8 - (reinterpret_cast<uintptr_t>(base) / sizeof(float)) % 8) % 8;
      panels_ = out;
      // panel p, row q: row(16 p + j)[q] for j < 16, zeros past n
      for (int64_t p = 0; p < panels; ++p, out += k * kCols) {
        const int64_t cols = std::min(kCols, n_ - p * kCols);
        for (int64_t j = 0; j < cols; ++j) {
          const float* w = reinterpret_cast<const float*>(row(p * kCols + j));
          for (int64_t q = 0; q < k; ++q) out[q * kCols + j] = w[q];
        }
        for (int64_t j = cols; j < kCols; ++j)
          for (int64_t q = 0; q < k; ++q) out[q * kCols + j] = 0.0f;
      }
      return;
    }
#endif
    if (units == H) return;  // every row, in W's order
    storage_ = at::empty({n_ * k}, c10::CppTypeToScalarType<S>::value);
    S* out = storage_.data_ptr<S>();
    for (int64_t r = 0; r < n_; ++r) std::memcpy(out + r * k, row(r), k * sizeof(S));
    w_ = out;
  }

 private:
  int64_t n_ = 0, k_ = 0;
  const S* w_ = nullptr;
  Tensor storage_;
  const float* panels_ = nullptr;

  template <typename T>
  friend void multiply_sum(int64_t, const T*, int64_t, const PanelWeights<T>&, const T*, int64_t,
                           const PanelWeights<T>&, const T*, T*, int64_t);
};

// C (m x n, row-major, leading dimension ldc) = A1 (m x k1) W1^T + A2 (m x k2) W2^T + bias
// (n values; zeros if null) for W1 (n x k1) and W2 (n x k2), on the calling thread.
template <typename S>
void multiply_sum(int64_t m, const S* a1, int64_t lda1, const PanelWeights<S>& w1, const S* a2, int64_t lda2,
                  const PanelWeights<S>& w2, const S* bias, S* c, int64_t ldc) {
#if LSTMLAB_PANEL_GEMM
  if (w1.panels_ != nullptr && w2.panels_ != nullptr) {
    using namespace panel;
    const float* A1 = reinterpret_cast<const float*>(a1);
    const float* A2 = reinterpret_cast<const float*>(a2);
    const float* Bias = reinterpret_cast<const float*>(bias);
    float* C = reinterpret_cast<float*>(c);
    const int64_t n = w1.n_, k1 = w1.k_, k2 = w2.k_, panels = (n + kCols - 1) / kCols;
    // passes over each panel's column of tiles, each through kDepth of each product's inner
    // dimension (one pass unless an input or state is wider than kDepth)
    const int64_t passes = (std::max(k1, k2) + kDepth - 1) / kDepth;
    for (int64_t p = 0; p < panels; ++p) {
      for (int64_t pass = 0; pass < passes; ++pass) {
        const int64_t q1 = std::min(pass * kDepth, k1), q2 = std::min(pass * kDepth, k2);
        Source sources[2] = {{std::min(kDepth, k1 - q1), A1 + q1, lda1, w1.panels_ + (p * k1 + q1) * kCols},
                             {std::min(kDepth, k2 - q2), A2 + q2, lda2, w2.panels_ + (p * k2 + q2) * kCols}};
        tile_column(m, sources, pass > 0, Bias != nullptr ? Bias + p * kCols : nullptr, C + p * kCols, ldc,
                    std::min(kCols, n - p * kCols));
      }
    }
    return;
  }
#endif
  for (int64_t r = 0; r < m; ++r) {
    S* row = c + r * ldc;
    if (bias != nullptr)
      std::memcpy(row, bias, w1.n_ * sizeof(S));
    else
      std::fill(row, row + w1.n_, S(0));
  }
  gemm<S>(false, true, m, w1.n_, w1.k_, a1, lda1, w1.w_, w1.k_, S(1), c, ldc);
  gemm<S>(false, true, m, w2.n_, w2.k_, a2, lda2, w2.w_, w2.k_, S(1), c, ldc);
}

}  // namespace lstmlab
