// Row-major GEMM on raw pointers for the per-step products, straight into BLAS.
#pragma once

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <type_traits>

#include "common.h"

// BLAS as linked into libtorch (MKL or OpenBLAS). Weak, so a build without them
// still loads and falls back to at::addmm.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
int mkl_set_num_threads_local_(const int*) __attribute__((weak));  // MKL only
}

namespace lstmlab {

template <typename S>
void blas(char ta, char tb, int m, int n, int k, S alpha, const S* a, int lda, const S* b, int ldb, S beta, S* c,
          int ldc);

template <>
inline void blas<float>(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                        int ldb, float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

template <>
inline void blas<double>(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                         int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

template <typename S>
bool have_blas() {
  return std::is_same<S, float>::value ? sgemm_ != nullptr : dgemm_ != nullptr;
}

// MKL threads each product over torch's threads; for the small per-step products of
// small models, waking them costs more than it saves. Products below this many
// multiply-adds run on the calling thread. Measured (2 threads, T=100, median ms,
// parallel -> serial): B x H = 16x64 peephole train 4.4 -> 3.8, inference 1.65 -> 1.48,
// GRU inference 1.42 -> 1.04; at 32x128 (LSTM product 2.1M) mixed, at 64x256 serial is
// 10-40% slower. MKL's Fortran entry takes the count by reference; without MKL (no
// symbol) this does nothing.
constexpr int64_t kSerialGemmBelow = int64_t(1) << 20;

struct SerialGemm {
  int saved = -1;
  explicit SerialGemm(int64_t work) {
    if (mkl_set_num_threads_local_ != nullptr && work < kSerialGemmBelow) {
      const int one = 1;
      saved = mkl_set_num_threads_local_(&one);
    }
  }
  ~SerialGemm() {
    if (saved >= 0) mkl_set_num_threads_local_(&saved);
  }
};

// C (m x n) = op(A) (m x k) op(B) (k x n) + beta C, row-major with leading dimensions.
template <typename S>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const S* a, int64_t lda, const S* b,
          int64_t ldb, S beta, S* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS rejects the zero leading dimensions this comes with (H = 0)
    for (int64_t r = 0; r < m; ++r)
      for (S* p = c + r * ldc; p < c + r * ldc + n; ++p) *p = beta == S(0) ? S(0) : beta * *p;
    return;
  }
  if (have_blas<S>()) {
    SerialGemm serial(m * n * k);
    // Column-major BLAS computes C^T = op(B)^T op(A)^T.
    blas<S>(trans_b ? 'T' : 'N', trans_a ? 'T' : 'N', (int)n, (int)m, (int)k, S(1), b, (int)ldb, a, (int)lda, beta, c,
            (int)ldc);
    return;
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<S>::value);
  Tensor A = trans_a ? at::from_blob(const_cast<S*>(a), {k, m}, {lda, 1}, opts).t()
                     : at::from_blob(const_cast<S*>(a), {m, k}, {lda, 1}, opts);
  Tensor Bm = trans_b ? at::from_blob(const_cast<S*>(b), {n, k}, {ldb, 1}, opts).t()
                      : at::from_blob(const_cast<S*>(b), {k, n}, {ldb, 1}, opts);
  Tensor C = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  if (beta == S(0)) C.zero_();
  C.addmm_(A, Bm);
}

}  // namespace lstmlab
