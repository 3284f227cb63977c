// Fused CPU kernels for one layer in one direction of every cell in lstmlab.cells.
//
// Forward: the input projection of all T steps is one matrix product before the
// loop; each step is one recurrent product (two for the GRU with reset "before",
// for FGR's gate-to-gate term and for the projection) and one pass over the batch
// rows doing all pointwise work. Backward: each step is the pointwise pass and the
// recurrent products for dh; the weight and input gradients are large products
// after the loop. Equations and tags: the cell
// modules (lstm.py: L1-L6, gru.py: G1-G4, rnn.py: R1).
//
// Layout: time-major, x (T, B, I); gate blocks in the weight rows' order, so a
// step's pre-activations are one row of G*H values per batch entry. With lengths,
// steps t >= lengths[b] keep row b's state, output zero and pass gradients through.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

// BLAS as linked into libtorch (MKL or OpenBLAS). Weak, so a build without them
// still loads and falls back to at::addmm.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
int mkl_set_num_threads_local_(const int*) __attribute__((weak));  // MKL only
}

namespace {

using at::Tensor;

enum Cell : int64_t { kLSTM = 0, kGRU = 1, kRNN = 2 };

// Denormals are flushed to zero while a kernel runs, on every thread it uses:
// recurrent products of decaying states otherwise fall into the slow denormal path.
struct FlushDenormals {
#if defined(__SSE__)
  unsigned int saved;
  FlushDenormals() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// ---------------------------------------------------------------------------------
// Row-major GEMM: C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C.

template <typename S>
void blas(char ta, char tb, int m, int n, int k, S alpha, const S* a, int lda, const S* b, int ldb, S beta, S* c,
          int ldc);

template <>
void blas<float>(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

template <>
void blas<double>(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
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

template <typename S>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const S* a, int64_t lda, const S* b,
          int64_t ldb, S beta, S* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
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

// ---------------------------------------------------------------------------------
// Activations. float: branch-free polynomial forms (Cephes) that the compiler
// vectorizes; double: the C library, exact to the last bit the tests check.

inline float exp_(float x) {
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

inline float tanh_(float x) {
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
inline S sigmoid_(S x) {
  return S(1) / (S(1) + exp_(-x));
}

// ---------------------------------------------------------------------------------
// Shared pieces.

// Rows per chunk of the pointwise pass: enough work per thread that small batches
// are not split into chunks costing more to schedule than to compute.
int64_t grain(int64_t B, int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

template <typename F>
void for_rows(int64_t B, int64_t width, const F& f) {
  at::parallel_for(0, B, grain(B, width), [&](int64_t begin, int64_t end) {
    FlushDenormals flush;
    for (int64_t b = begin; b < end; ++b) f(b);
  });
}

struct Lengths {
  const int64_t* data = nullptr;
  bool keep(int64_t t, int64_t b) const { return data == nullptr || t < data[b]; }
};

Lengths lengths_of(const c10::optional<Tensor>& lengths) {
  Lengths l;
  if (lengths.has_value() && lengths->defined()) l.data = lengths->data_ptr<int64_t>();
  return l;
}

Tensor contig(const c10::optional<Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}

Tensor empty_like_opts(const Tensor& like) { return at::empty({0}, like.options()); }

// (K, H) = sum_t G[t]^T hprev[t] with hprev[0] = h0 and hprev[t] = hs[t-1]: the
// recurrent weight gradient as two large products. G (T, B, ld) read from column off.
Tensor recurrent_grad(const Tensor& G, int64_t off, int64_t K, const Tensor& hs, const Tensor& h0) {
  int64_t T = G.size(0), B = G.size(1);
  Tensor g = G.narrow(2, off, K);
  Tensor out = at::mm(g[0].t(), h0);
  if (T > 1) out.addmm_(g.narrow(0, 1, T - 1).reshape({(T - 1) * B, K}).t(), hs.narrow(0, 0, T - 1).reshape({(T - 1) * B, -1}));
  return out;
}

// ---------------------------------------------------------------------------------
// LSTM. flags: gate block index of i, f, g, o (-1 if absent), peephole block index
// of i, f, o in w_ch (-1 if absent), coupled, G is tanh, H is tanh, full gate
// recurrence (FGR).
//
// FGR: a = the activations of the sigmoid gates with rows (i, f, o that exist, in
// that order: the "recurrent gates"), carried as a third state; V a_{t-1} adds to
// their pre-activations (w_gh, see lstmlab/cells/lstm.py). Block k of a belongs to
// the gate block rblock[k] of the gates.

struct LSTMFlags {
  int64_t gi, gf, gg, go, pi, pf, po;
  bool coupled, tanh_g, tanh_h, fgr;
  std::vector<int64_t> rblock;
  int64_t ri = -1, rf = -1, ro = -1;  // block of i, f, o in a (-1 if absent)
  explicit LSTMFlags(const std::vector<int64_t>& v)
      : gi(v[0]), gf(v[1]), gg(v[2]), go(v[3]), pi(v[4]), pf(v[5]), po(v[6]), coupled(v[7]), tanh_g(v[8]),
        tanh_h(v[9]), fgr(v[10]) {
    if (!fgr) return;
    if (gi >= 0) ri = (int64_t)rblock.size(), rblock.push_back(gi);
    if (gf >= 0) rf = (int64_t)rblock.size(), rblock.push_back(gf);
    if (go >= 0) ro = (int64_t)rblock.size(), rblock.push_back(go);
  }
  int64_t R() const { return (int64_t)rblock.size(); }
};

template <typename S>
std::vector<Tensor> lstm_forward(const LSTMFlags& F, const Tensor& x, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_ih, const Tensor& w_hh, const Tensor& bias, const Tensor& w_ch,
                                 const Tensor& a0, const Tensor& w_gh, const Tensor& w_hr, const Lengths& len,
                                 bool save) {
  // H the cell size, P the size of h: H, or proj_size with the projection (L7)
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = c0.size(1), P = h0.size(1), GH = w_ih.size(0);
  const int64_t RH = F.R() * H;
  const bool proj = w_hr.defined();
  auto opts = x.options();
  // gates: pre-activations, then in place the activations (i, f, g, o) backward needs.
  Tensor gates = bias.defined() ? at::addmm(bias, x.reshape({T * B, I}), w_ih.t()) : at::mm(x.reshape({T * B, I}), w_ih.t());
  gates = gates.view({T, B, GH});
  Tensor y = at::empty({T, B, P}, opts);
  Tensor hs = len.data ? at::empty({T, B, P}, opts) : y;  // the state sequence; y is zero where padded
  // with the projection, m = o ⊙ H(c') before it (all steps if saved)
  Tensor ms = proj ? at::empty({save ? T : 1, B, H}, opts) : Tensor();
  S* msp = proj ? ms.data_ptr<S>() : nullptr;
  const S* Whr = proj ? w_hr.data_ptr<S>() : nullptr;
  Tensor cs = save ? at::empty({T, B, H}, opts) : at::empty({2, B, H}, opts);
  Tensor scratch = at::empty({B, H}, opts);  // f = 1 - i (CIFG)
  Tensor ones = at::ones({H}, opts), zeros = at::zeros({H}, opts);
  S* G = gates.data_ptr<S>();
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* csp = cs.data_ptr<S>();
  S* fs = scratch.data_ptr<S>();
  const S* W = w_hh.data_ptr<S>();
  const S* one = ones.data_ptr<S>();
  const S* zero = zeros.data_ptr<S>();
  const S* pch = w_ch.defined() ? w_ch.data_ptr<S>() : nullptr;
  const S* p_i = F.pi >= 0 ? pch + F.pi * H : zero;
  const S* p_f = F.pf >= 0 ? pch + F.pf * H : zero;
  const S* p_o = F.po >= 0 ? pch + F.po * H : zero;
  // FGR: the activations a (all steps if saved), and V a_{t-1} for the current step
  Tensor as = F.fgr ? at::empty({save ? T : 2, B, RH}, opts) : Tensor();
  Tensor za = F.fgr ? at::empty({B, RH}, opts) : Tensor();
  S* asp = F.fgr ? as.data_ptr<S>() : nullptr;
  S* zap = F.fgr ? za.data_ptr<S>() : nullptr;
  const S* V = F.fgr ? w_gh.data_ptr<S>() : nullptr;

  for (int64_t t = 0; t < T; ++t) {
    const S* hp = t == 0 ? h0.data_ptr<S>() : hsp + (t - 1) * B * P;
    const S* cp = t == 0 ? c0.data_ptr<S>() : csp + (save ? (t - 1) : (t - 1) % 2) * B * H;
    S* hn = hsp + t * B * P;
    S* cn = csp + (save ? t : t % 2) * B * H;
    S* Gt = G + t * B * GH;
    S* mt = proj ? msp + (save ? t : 0) * B * H : nullptr;
    gemm<S>(false, true, B, GH, P, hp, P, W, P, S(1), Gt, GH);
    const S* ap = nullptr;
    S* an = nullptr;
    if (F.fgr) {
      ap = t == 0 ? a0.data_ptr<S>() : asp + (save ? (t - 1) : (t - 1) % 2) * B * RH;
      an = asp + (save ? t : t % 2) * B * RH;
      gemm<S>(false, true, B, RH, RH, ap, RH, V, RH, S(0), zap, RH);
    }
    for_rows(B, GH, [&](int64_t b) {
      const S* c = cp + b * H;
      const S* h = hp + b * P;
      S* c2 = cn + b * H;
      S* h2 = hn + b * P;
      S* m = proj ? mt + b * H : h2;
      S* yb = yp + (t * B + b) * P;
      if (!len.keep(t, b)) {
        std::memcpy(c2, c, H * sizeof(S));
        std::memcpy(h2, h, P * sizeof(S));
        if (yb != h2) std::memset(yb, 0, P * sizeof(S));
        if (F.fgr) std::memcpy(an + b * RH, ap + b * RH, RH * sizeof(S));
        if (proj) std::memset(m, 0, H * sizeof(S));  // no gradient reaches W_hr from here
        return;
      }
      S* z = Gt + b * GH;
      for (int64_t k = 0; k < F.R(); ++k) {  // (L1, L2, L5) the V a terms
        S* zk = z + F.rblock[k] * H;
        const S* vk = zap + b * RH + k * H;
        for (int64_t j = 0; j < H; ++j) zk[j] += vk[j];
      }
      S* zi = F.gi >= 0 ? z + F.gi * H : nullptr;
      S* zf = F.gf >= 0 ? z + F.gf * H : nullptr;
      S* zg = z + F.gg * H;
      S* zo = F.go >= 0 ? z + F.go * H : nullptr;
      if (zi)
        for (int64_t j = 0; j < H; ++j) zi[j] = sigmoid_<S>(zi[j] + p_i[j] * c[j]);  // (L1)
      const S* i = zi ? zi : one;
      const S* f = one;
      if (zf) {
        for (int64_t j = 0; j < H; ++j) zf[j] = sigmoid_<S>(zf[j] + p_f[j] * c[j]);  // (L2)
        f = zf;
      } else if (F.coupled) {
        S* fb = fs + b * H;
        for (int64_t j = 0; j < H; ++j) fb[j] = S(1) - i[j];  // (L2) CIFG
        f = fb;
      }
      if (F.tanh_g)
        for (int64_t j = 0; j < H; ++j) zg[j] = tanh_(zg[j]);  // (L3)
      for (int64_t j = 0; j < H; ++j) c2[j] = f[j] * c[j] + i[j] * zg[j];  // (L4)
      if (zo)
        for (int64_t j = 0; j < H; ++j) zo[j] = sigmoid_<S>(zo[j] + p_o[j] * c2[j]);  // (L5)
      const S* o = zo ? zo : one;
      if (F.tanh_h)
        for (int64_t j = 0; j < H; ++j) m[j] = o[j] * tanh_(c2[j]);  // (L6)
      else
        for (int64_t j = 0; j < H; ++j) m[j] = o[j] * c2[j];  // (L6) NOAF
      if (!proj && yb != h2) std::memcpy(yb, h2, H * sizeof(S));
      for (int64_t k = 0; k < F.R(); ++k)  // FGR: a' = the new activations
        std::memcpy(an + b * RH + k * H, z + F.rblock[k] * H, H * sizeof(S));
    });
    if (proj) {
      gemm<S>(false, true, B, P, H, mt, H, Whr, H, S(0), hn, P);  // (L7) h' = W_hr m
      if (len.data)
        for_rows(B, P, [&](int64_t b) {
          S* h2 = hn + b * P;
          S* yb = yp + (t * B + b) * P;
          if (!len.keep(t, b))
            std::memcpy(h2, hp + b * P, P * sizeof(S));  // the state carries; y stays zero
          else if (yb != h2)
            std::memcpy(yb, h2, P * sizeof(S));
        });
    }
  }
  Tensor hN = hs[T - 1].clone();
  Tensor cN = cs[save ? T - 1 : (T - 1) % 2].clone();
  Tensor none = empty_like_opts(x);
  Tensor aN = F.fgr ? as[save ? T - 1 : (T - 1) % 2].clone() : none;
  if (!save) return {y, hN, cN, none, none, none, none, aN, none, none};
  return {y, hN, cN, len.data ? hs : none, cs, gates, none, aN, F.fgr ? as : none, proj ? ms : none};
}

template <typename S>
std::vector<Tensor> lstm_backward(const LSTMFlags& F, const Tensor& dy, const Tensor& dhN, const Tensor& dcN,
                                  const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                  const Tensor& w_hh, bool has_bias, const Tensor& w_ch, const Tensor& daN,
                                  const Tensor& a0, const Tensor& w_gh, const Tensor& w_hr, const Lengths& len,
                                  const Tensor& hs, const Tensor& cs, const Tensor& gates, const Tensor& as,
                                  const Tensor& ms, bool need_dx) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = c0.size(1), P = h0.size(1), GH = w_ih.size(0);
  const int64_t RH = F.R() * H;
  const bool proj = w_hr.defined();
  auto opts = x.options();
  Tensor dG = at::empty({T, B, GH}, opts);
  Tensor dh = at::empty({2, B, P}, opts), dc = at::empty({2, B, H}, opts);
  dh[0].copy_(dhN);
  dc[0].copy_(dcN);
  Tensor scratch = at::empty({B, 3 * H}, opts);  // per row: dh total, H(c'), dc'
  const int64_t np = w_ch.defined() ? w_ch.size(0) / H : 0;
  Tensor dp = at::zeros({B, std::max<int64_t>(np, 1) * H}, opts);  // per-row peephole gradient sums
  Tensor ones = at::ones({H}, opts), zeros = at::zeros({H}, opts);
  const S* G = gates.data_ptr<S>();
  const S* hsp = hs.data_ptr<S>();
  const S* csp = cs.data_ptr<S>();
  const S* dyp = dy.data_ptr<S>();
  S* dGp = dG.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* dcp = dc.data_ptr<S>();
  S* sc = scratch.data_ptr<S>();
  S* dpp = dp.data_ptr<S>();
  const S* W = w_hh.data_ptr<S>();
  const S* one = ones.data_ptr<S>();
  const S* zero = zeros.data_ptr<S>();
  const S* pch = w_ch.defined() ? w_ch.data_ptr<S>() : nullptr;
  const S* p_i = F.pi >= 0 ? pch + F.pi * H : zero;
  const S* p_f = F.pf >= 0 ? pch + F.pf * H : zero;
  const S* p_o = F.po >= 0 ? pch + F.po * H : zero;
  // FGR: dA the pre-activation gradients of the recurrent gates, da the gradient of a
  Tensor dA = F.fgr ? at::empty({T, B, RH}, opts) : Tensor();
  Tensor da = F.fgr ? at::empty({2, B, RH}, opts) : Tensor();
  if (F.fgr) da[0].copy_(daN);
  S* dAp = F.fgr ? dA.data_ptr<S>() : nullptr;
  S* dap = F.fgr ? da.data_ptr<S>() : nullptr;
  const S* V = F.fgr ? w_gh.data_ptr<S>() : nullptr;
  // projection: dH the gradient of h' at each step (zero where padded), dm = dH W_hr
  Tensor dH = proj ? at::empty({T, B, P}, opts) : Tensor();
  Tensor dm = proj ? at::empty({B, H}, opts) : Tensor();
  S* dHp = proj ? dH.data_ptr<S>() : nullptr;
  S* dmp = proj ? dm.data_ptr<S>() : nullptr;
  const S* Whr = proj ? w_hr.data_ptr<S>() : nullptr;

  for (int64_t t = T - 1; t >= 0; --t) {
    const S* cp = t == 0 ? c0.data_ptr<S>() : csp + (t - 1) * B * H;
    const S* cn = csp + t * B * H;
    const S* Gt = G + t * B * GH;
    S* dGt = dGp + t * B * GH;
    const int64_t in = (T - 1 - t) % 2, out = 1 - in;
    S* dh_in = dhp + in * B * P;
    S* dh_out = dhp + out * B * P;
    S* dc_in = dcp + in * B * H;
    S* dc_out = dcp + out * B * H;
    S* dAt = F.fgr ? dAp + t * B * RH : nullptr;
    S* da_in = F.fgr ? dap + in * B * RH : nullptr;
    S* da_out = F.fgr ? dap + out * B * RH : nullptr;
    S* dHt = proj ? dHp + t * B * P : nullptr;
    if (proj) {  // (L7) dm = dh' W_hr
      for_rows(B, P, [&](int64_t b) {
        S* dHb = dHt + b * P;
        const S* dhi = dh_in + b * P;
        const S* dyb = dyp + (t * B + b) * P;
        if (!len.keep(t, b))
          std::memset(dHb, 0, P * sizeof(S));
        else
          for (int64_t j = 0; j < P; ++j) dHb[j] = dhi[j] + dyb[j];
      });
      gemm<S>(false, false, B, H, P, dHt, P, Whr, H, S(0), dmp, H);
    }
    for_rows(B, GH, [&](int64_t b) {
      S* dz = dGt + b * GH;
      const S* dhi = dh_in + b * P;
      const S* dci = dc_in + b * H;
      S* dho = dh_out + b * P;
      S* dco = dc_out + b * H;
      if (!len.keep(t, b)) {
        std::memset(dz, 0, GH * sizeof(S));
        std::memcpy(dho, dhi, P * sizeof(S));
        std::memcpy(dco, dci, H * sizeof(S));
        if (F.fgr) {
          std::memset(dAt + b * RH, 0, RH * sizeof(S));
          std::memcpy(da_out + b * RH, da_in + b * RH, RH * sizeof(S));
        }
        return;
      }
      std::memset(dho, 0, P * sizeof(S));
      // FGR: the gradient reaching each recurrent gate's activation from the next step
      const S* dai = F.ri >= 0 ? da_in + b * RH + F.ri * H : zero;
      const S* daf = F.rf >= 0 ? da_in + b * RH + F.rf * H : zero;
      const S* dao = F.ro >= 0 ? da_in + b * RH + F.ro * H : zero;
      const S* z = Gt + b * GH;
      const S* c = cp + b * H;
      const S* c2 = cn + b * H;
      const S* dyb = dyp + (t * B + b) * P;
      S* sum = sc + b * 3 * H;  // dh' + dy, without the projection
      S* hc = sum + H;
      S* dc2 = hc + H;
      const S* i = F.gi >= 0 ? z + F.gi * H : one;
      const S* f = F.gf >= 0 ? z + F.gf * H : one;
      const S* g = z + F.gg * H;
      const S* o = F.go >= 0 ? z + F.go * H : one;
      if (!proj)
        for (int64_t j = 0; j < H; ++j) sum[j] = dhi[j] + dyb[j];
      const S* dhv = proj ? dmp + b * H : sum;  // the gradient of m (L6)
      if (F.tanh_h) {
        for (int64_t j = 0; j < H; ++j) hc[j] = tanh_(c2[j]);
        for (int64_t j = 0; j < H; ++j) dc2[j] = dci[j] + dhv[j] * o[j] * (S(1) - hc[j] * hc[j]);  // (L6)
      } else {
        std::memcpy(hc, c2, H * sizeof(S));
        for (int64_t j = 0; j < H; ++j) dc2[j] = dci[j] + dhv[j] * o[j];  // (L6) NOAF
      }
      if (F.go >= 0) {  // (L5)
        S* dzo = dz + F.go * H;
        for (int64_t j = 0; j < H; ++j) {
          dzo[j] = (dhv[j] * hc[j] + dao[j]) * o[j] * (S(1) - o[j]);
          dc2[j] += dzo[j] * p_o[j];
        }
        if (F.po >= 0) {
          S* acc = dpp + b * np * H + F.po * H;
          for (int64_t j = 0; j < H; ++j) acc[j] += dzo[j] * c2[j];
        }
      }
      if (F.coupled) {  // (L4) with (L2) f = 1 - i
        for (int64_t j = 0; j < H; ++j) dco[j] = dc2[j] * (S(1) - i[j]);
      } else {
        for (int64_t j = 0; j < H; ++j) dco[j] = dc2[j] * f[j];  // (L4)
      }
      S* dzg = dz + F.gg * H;
      if (F.tanh_g)
        for (int64_t j = 0; j < H; ++j) dzg[j] = dc2[j] * i[j] * (S(1) - g[j] * g[j]);  // (L3)
      else
        for (int64_t j = 0; j < H; ++j) dzg[j] = dc2[j] * i[j];  // (L3) NIAF
      if (F.gf >= 0) {  // (L2)
        S* dzf = dz + F.gf * H;
        for (int64_t j = 0; j < H; ++j) {
          dzf[j] = (dc2[j] * c[j] + daf[j]) * f[j] * (S(1) - f[j]);
          dco[j] += dzf[j] * p_f[j];
        }
        if (F.pf >= 0) {
          S* acc = dpp + b * np * H + F.pf * H;
          for (int64_t j = 0; j < H; ++j) acc[j] += dzf[j] * c[j];
        }
      }
      if (F.gi >= 0) {  // (L1), and (L2) when coupled: di = dc' (g - c)
        S* dzi = dz + F.gi * H;
        if (F.coupled)
          for (int64_t j = 0; j < H; ++j) dzi[j] = (dc2[j] * (g[j] - c[j]) + dai[j]) * i[j] * (S(1) - i[j]);
        else
          for (int64_t j = 0; j < H; ++j) dzi[j] = (dc2[j] * g[j] + dai[j]) * i[j] * (S(1) - i[j]);
        for (int64_t j = 0; j < H; ++j) dco[j] += dzi[j] * p_i[j];
        if (F.pi >= 0) {
          S* acc = dpp + b * np * H + F.pi * H;
          for (int64_t j = 0; j < H; ++j) acc[j] += dzi[j] * c[j];
        }
      }
      if (F.fgr) {
        std::memset(da_out + b * RH, 0, RH * sizeof(S));
        for (int64_t k = 0; k < F.R(); ++k)
          std::memcpy(dAt + b * RH + k * H, dz + F.rblock[k] * H, H * sizeof(S));
      }
    });
    gemm<S>(false, false, B, P, GH, dGt, GH, W, P, S(1), dh_out, P);
    if (F.fgr) gemm<S>(false, false, B, RH, RH, dAt, RH, V, RH, S(1), da_out, RH);
  }
  const int64_t last = T % 2;
  Tensor dG2 = dG.view({T * B, GH});
  Tensor dx = !need_dx ? empty_like_opts(x) : at::mm(dG2, w_ih).view({T, B, I});
  Tensor dw_ih = at::mm(dG2.t(), x.reshape({T * B, I}));
  Tensor dw_hh = recurrent_grad(dG, 0, GH, hs, h0);
  Tensor none = empty_like_opts(x);
  Tensor db = has_bias ? dG2.sum(0) : none;
  Tensor dw_ch = np ? dp.sum(0) : none;
  Tensor da0 = F.fgr ? da[last].clone() : none;
  Tensor dw_gh = F.fgr ? recurrent_grad(dA, 0, RH, as, a0) : none;
  Tensor dw_hr = proj ? at::mm(dH.view({T * B, P}).t(), ms.view({T * B, H})) : none;
  Tensor db_hh = has_bias ? db.clone() : none;
  return {dx, dh[last].clone(), dc[last].clone(), dw_ih, dw_hh, db, db_hh, dw_ch, da0, dw_gh, dw_hr};
}

// ---------------------------------------------------------------------------------
// GRU. flags: reset "before" (1) or "after" (0). Gate blocks r, z, n.

template <typename S>
std::vector<Tensor> gru_forward(bool before, const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                const Tensor& b_ih, const Tensor& b_hh, const Lengths& len, bool save) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = h0.size(1), GH = 3 * H;
  auto opts = x.options();
  // b_hh folds into the projection except b_hn with reset "after", which r multiplies.
  Tensor bias, b_hn;
  if (b_ih.defined()) {
    bias = b_ih.clone();
    if (before) {
      bias += b_hh;
    } else {
      bias.narrow(0, 0, 2 * H).add_(b_hh.narrow(0, 0, 2 * H));
      b_hn = b_hh.narrow(0, 2 * H, H).contiguous();
    }
  }
  Tensor gates = bias.defined() ? at::addmm(bias, x.reshape({T * B, I}), w_ih.t()) : at::mm(x.reshape({T * B, I}), w_ih.t());
  gates = gates.view({T, B, GH});
  Tensor y = at::empty({T, B, H}, opts);
  Tensor hs = len.data ? at::empty({T, B, H}, opts) : y;
  // extra: U_n h + b_hn ("after") or r ⊙ h ("before") of every step, for backward.
  Tensor extra = save ? at::empty({T, B, H}, opts) : at::empty({1, B, H}, opts);
  Tensor gh = at::empty({B, GH}, opts);
  Tensor zeros = at::zeros({H}, opts);
  S* Gp = gates.data_ptr<S>();
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  S* ex = extra.data_ptr<S>();
  S* ghp = gh.data_ptr<S>();
  const S* W = w_hh.data_ptr<S>();
  const S* bn = b_hn.defined() ? b_hn.data_ptr<S>() : zeros.data_ptr<S>();

  for (int64_t t = 0; t < T; ++t) {
    const S* hp = t == 0 ? h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    S* hn = hsp + t * B * H;
    S* Gt = Gp + t * B * GH;
    S* et = ex + (save ? t : 0) * B * H;
    auto finish = [&](int64_t b) {  // masked rows: keep the state, output zero
      std::memcpy(hn + b * H, hp + b * H, H * sizeof(S));
      S* yb = yp + (t * B + b) * H;
      if (yb != hn + b * H) std::memset(yb, 0, H * sizeof(S));
    };
    if (!before) {
      gemm<S>(false, true, B, GH, H, hp, H, W, H, S(0), ghp, GH);
      for_rows(B, GH, [&](int64_t b) {
        if (!len.keep(t, b)) return finish(b);
        S* z = Gt + b * GH;
        const S* u = ghp + b * GH;
        const S* h = hp + b * H;
        S* e = et + b * H;
        S* h2 = hn + b * H;
        S *r_ = z, *z_ = z + H, *n_ = z + 2 * H;
        for (int64_t j = 0; j < H; ++j) r_[j] = sigmoid_<S>(r_[j] + u[j]);  // (G1)
        for (int64_t j = 0; j < H; ++j) z_[j] = sigmoid_<S>(z_[j] + u[H + j]);  // (G2)
        for (int64_t j = 0; j < H; ++j) e[j] = u[2 * H + j] + bn[j];
        for (int64_t j = 0; j < H; ++j) n_[j] = tanh_(n_[j] + r_[j] * e[j]);  // (G3)
        for (int64_t j = 0; j < H; ++j) h2[j] = (S(1) - z_[j]) * n_[j] + z_[j] * h[j];  // (G4)
        S* yb = yp + (t * B + b) * H;
        if (yb != h2) std::memcpy(yb, h2, H * sizeof(S));
      });
    } else {
      gemm<S>(false, true, B, 2 * H, H, hp, H, W, H, S(0), ghp, GH);
      for_rows(B, GH, [&](int64_t b) {
        S* e = et + b * H;
        const S* h = hp + b * H;
        if (!len.keep(t, b)) {
          std::memset(e, 0, H * sizeof(S));
          return;
        }
        S* z = Gt + b * GH;
        const S* u = ghp + b * GH;
        for (int64_t j = 0; j < H; ++j) z[j] = sigmoid_<S>(z[j] + u[j]);  // (G1)
        for (int64_t j = 0; j < H; ++j) z[H + j] = sigmoid_<S>(z[H + j] + u[H + j]);  // (G2)
        for (int64_t j = 0; j < H; ++j) e[j] = z[j] * h[j];  // r ⊙ h of (G3')
      });
      gemm<S>(false, true, B, H, H, et, H, W + 2 * H * H, H, S(0), ghp + 2 * H, GH);
      for_rows(B, GH, [&](int64_t b) {
        if (!len.keep(t, b)) return finish(b);
        S* z = Gt + b * GH;
        const S* u = ghp + b * GH + 2 * H;
        const S* h = hp + b * H;
        S* h2 = hn + b * H;
        const S* z_ = z + H;
        S* n_ = z + 2 * H;
        for (int64_t j = 0; j < H; ++j) n_[j] = tanh_(n_[j] + u[j]);  // (G3')
        for (int64_t j = 0; j < H; ++j) h2[j] = (S(1) - z_[j]) * n_[j] + z_[j] * h[j];  // (G4)
        S* yb = yp + (t * B + b) * H;
        if (yb != h2) std::memcpy(yb, h2, H * sizeof(S));
      });
    }
  }
  Tensor hN = hs[T - 1].clone();
  Tensor none = empty_like_opts(x);
  if (!save) return {y, hN, none, none, none, none, none};
  return {y, hN, none, len.data ? hs : none, none, gates, extra};
}

template <typename S>
std::vector<Tensor> gru_backward(bool before, const Tensor& dy, const Tensor& dhN, const Tensor& x, const Tensor& h0,
                                 const Tensor& w_ih, const Tensor& w_hh, bool has_bias, const Lengths& len,
                                 const Tensor& hs, const Tensor& gates, const Tensor& extra, bool need_dx) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = h0.size(1), GH = 3 * H;
  auto opts = x.options();
  Tensor dGX = at::empty({T, B, GH}, opts);
  // reset "after": the gradient of U h + b_h differs from dGX in the n block only.
  Tensor dGH = before ? dGX : at::empty({T, B, GH}, opts);
  Tensor dh = at::empty({2, B, H}, opts);
  dh[0].copy_(dhN);
  Tensor drh = at::empty({B, H}, opts);
  const S* Gp = gates.data_ptr<S>();
  const S* hsp = hs.data_ptr<S>();
  const S* ex = extra.data_ptr<S>();
  const S* dyp = dy.data_ptr<S>();
  S* dgx = dGX.data_ptr<S>();
  S* dgh = dGH.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  S* drp = drh.data_ptr<S>();
  const S* W = w_hh.data_ptr<S>();

  for (int64_t t = T - 1; t >= 0; --t) {
    const S* hp = t == 0 ? h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    const S* Gt = Gp + t * B * GH;
    const S* et = ex + t * B * H;
    S* dxt = dgx + t * B * GH;
    S* dht = dgh + t * B * GH;
    const int64_t in = (T - 1 - t) % 2, out = 1 - in;
    S* dh_in = dhp + in * B * H;
    S* dh_out = dhp + out * B * H;
    for_rows(B, GH, [&](int64_t b) {
      S* dzx = dxt + b * GH;
      S* dzh = dht + b * GH;
      const S* dhi = dh_in + b * H;
      S* dho = dh_out + b * H;
      if (!len.keep(t, b)) {
        std::memset(dzx, 0, GH * sizeof(S));
        if (dzh != dzx) std::memset(dzh, 0, GH * sizeof(S));
        std::memcpy(dho, dhi, H * sizeof(S));
        return;
      }
      const S* z = Gt + b * GH;
      const S *r_ = z, *z_ = z + H, *n_ = z + 2 * H;
      const S* h = hp + b * H;
      const S* e = et + b * H;
      const S* dyb = dyp + (t * B + b) * H;
      for (int64_t j = 0; j < H; ++j) {
        S d = dhi[j] + dyb[j];
        S dn = d * (S(1) - z_[j]);  // (G4)
        S dz = d * (h[j] - n_[j]);
        dho[j] = d * z_[j];
        S dpn = dn * (S(1) - n_[j] * n_[j]);  // (G3) / (G3')
        dzx[2 * H + j] = dpn;
        dzx[H + j] = dz * z_[j] * (S(1) - z_[j]);  // (G2)
        if (!before) {
          dzh[2 * H + j] = dpn * r_[j];  // (G3)
          S dr = dpn * e[j];
          dzx[j] = dr * r_[j] * (S(1) - r_[j]);  // (G1)
          dzh[j] = dzx[j];
          dzh[H + j] = dzx[H + j];
        }
      }
    });
    if (!before) {
      gemm<S>(false, false, B, H, GH, dht, GH, W, H, S(1), dh_out, H);
      continue;
    }
    gemm<S>(false, false, B, H, H, dxt + 2 * H, GH, W + 2 * H * H, H, S(0), drp, H);
    for_rows(B, GH, [&](int64_t b) {
      if (!len.keep(t, b)) return;
      S* dzx = dxt + b * GH;
      const S* r_ = Gt + b * GH;
      const S* h = hp + b * H;
      const S* d = drp + b * H;
      S* dho = dh_out + b * H;
      for (int64_t j = 0; j < H; ++j) {
        dho[j] += d[j] * r_[j];  // (G3') through r ⊙ h
        dzx[j] = d[j] * h[j] * r_[j] * (S(1) - r_[j]);  // (G1)
      }
    });
    gemm<S>(false, false, B, H, 2 * H, dxt, GH, W, H, S(1), dh_out, H);
  }
  const int64_t last = T % 2;
  Tensor dX2 = dGX.view({T * B, GH});
  Tensor dx = !need_dx ? empty_like_opts(x) : at::mm(dX2, w_ih).view({T, B, I});
  Tensor dw_ih = at::mm(dX2.t(), x.reshape({T * B, I}));
  Tensor dw_hh;
  if (before) {
    dw_hh = at::cat({recurrent_grad(dGX, 0, 2 * H, hs, h0),
                     at::mm(dGX.narrow(2, 2 * H, H).reshape({T * B, H}).t(), extra.reshape({T * B, H}))});
  } else {
    dw_hh = recurrent_grad(dGH, 0, GH, hs, h0);
  }
  Tensor none = empty_like_opts(x);
  Tensor db_ih = has_bias ? dX2.sum(0) : none;
  Tensor db_hh = has_bias ? dGH.view({T * B, GH}).sum(0) : none;
  return {dx, dh[last].clone(), none, dw_ih, dw_hh, db_ih, db_hh, none};
}

// ---------------------------------------------------------------------------------
// RNN. flags: relu (1) or tanh (0).

template <typename S>
std::vector<Tensor> rnn_forward(bool relu, const Tensor& x, const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                const Tensor& bias, const Lengths& len, bool save) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = h0.size(1);
  auto opts = x.options();
  // hs: pre-activations, then in place the states.
  Tensor hs = bias.defined() ? at::addmm(bias, x.reshape({T * B, I}), w_ih.t()) : at::mm(x.reshape({T * B, I}), w_ih.t());
  hs = hs.view({T, B, H});
  Tensor y = len.data ? at::empty({T, B, H}, opts) : hs;
  S* hsp = hs.data_ptr<S>();
  S* yp = y.data_ptr<S>();
  const S* W = w_hh.data_ptr<S>();
  for (int64_t t = 0; t < T; ++t) {
    const S* hp = t == 0 ? h0.data_ptr<S>() : hsp + (t - 1) * B * H;
    S* hn = hsp + t * B * H;
    gemm<S>(false, true, B, H, H, hp, H, W, H, S(1), hn, H);
    for_rows(B, H, [&](int64_t b) {
      S* h2 = hn + b * H;
      S* yb = yp + (t * B + b) * H;
      if (!len.keep(t, b)) {
        std::memcpy(h2, hp + b * H, H * sizeof(S));
        if (yb != h2) std::memset(yb, 0, H * sizeof(S));
        return;
      }
      if (relu)
        for (int64_t j = 0; j < H; ++j) h2[j] = std::max(h2[j], S(0));  // (R1)
      else
        for (int64_t j = 0; j < H; ++j) h2[j] = tanh_(h2[j]);  // (R1)
      if (yb != h2) std::memcpy(yb, h2, H * sizeof(S));
    });
  }
  Tensor hN = hs[T - 1].clone();
  Tensor none = empty_like_opts(x);
  return {y, hN, none, save && len.data ? hs : none, none, none, none};
}

template <typename S>
std::vector<Tensor> rnn_backward(bool relu, const Tensor& dy, const Tensor& dhN, const Tensor& x, const Tensor& h0,
                                 const Tensor& w_ih, const Tensor& w_hh, bool has_bias, const Lengths& len,
                                 const Tensor& hs, bool need_dx) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = h0.size(1);
  auto opts = x.options();
  Tensor dG = at::empty({T, B, H}, opts);
  Tensor dh = at::empty({2, B, H}, opts);
  dh[0].copy_(dhN);
  const S* hsp = hs.data_ptr<S>();
  const S* dyp = dy.data_ptr<S>();
  S* dGp = dG.data_ptr<S>();
  S* dhp = dh.data_ptr<S>();
  const S* W = w_hh.data_ptr<S>();
  for (int64_t t = T - 1; t >= 0; --t) {
    const S* hn = hsp + t * B * H;
    S* dGt = dGp + t * B * H;
    const int64_t in = (T - 1 - t) % 2, out = 1 - in;
    S* dh_in = dhp + in * B * H;
    S* dh_out = dhp + out * B * H;
    for_rows(B, H, [&](int64_t b) {
      S* dz = dGt + b * H;
      const S* dhi = dh_in + b * H;
      S* dho = dh_out + b * H;
      if (!len.keep(t, b)) {
        std::memset(dz, 0, H * sizeof(S));
        std::memcpy(dho, dhi, H * sizeof(S));
        return;
      }
      std::memset(dho, 0, H * sizeof(S));
      const S* h2 = hn + b * H;
      const S* dyb = dyp + (t * B + b) * H;
      if (relu)
        for (int64_t j = 0; j < H; ++j) dz[j] = h2[j] > S(0) ? dhi[j] + dyb[j] : S(0);  // (R1)
      else
        for (int64_t j = 0; j < H; ++j) dz[j] = (dhi[j] + dyb[j]) * (S(1) - h2[j] * h2[j]);  // (R1)
    });
    gemm<S>(false, false, B, H, H, dGt, H, W, H, S(1), dh_out, H);
  }
  const int64_t last = T % 2;
  Tensor dG2 = dG.view({T * B, H});
  Tensor dx = !need_dx ? empty_like_opts(x) : at::mm(dG2, w_ih).view({T, B, I});
  Tensor dw_ih = at::mm(dG2.t(), x.reshape({T * B, I}));
  Tensor dw_hh = recurrent_grad(dG, 0, H, hs, h0);
  Tensor none = empty_like_opts(x);
  Tensor db = has_bias ? dG2.sum(0) : none;
  return {dx, dh[last].clone(), none, dw_ih, dw_hh, db, has_bias ? db.clone() : none, none};
}

// ---------------------------------------------------------------------------------
// Entry points. Both return a fixed number of tensors; absent ones are empty.

void check(const Tensor& x, const Tensor& h0) {
  TORCH_CHECK(x.device().is_cpu(), "lstmlab fused: tensors must be on the CPU");
  TORCH_CHECK(x.dim() == 3 && h0.dim() == 2, "lstmlab fused: x must be (T, B, I) and h0 (B, H)");
  TORCH_CHECK(x.size(0) > 0, "lstmlab fused: T must be positive");
}

// Appends the results only an LSTM has (FGR's, the projection's), empty.
std::vector<Tensor> with_no_lstm_extras(std::vector<Tensor> out, const Tensor& like) {
  for (int k = 0; k < 3; ++k) out.push_back(empty_like_opts(like));
  return out;
}

// -> y, h_n, c_n, hs (state sequence if it differs from y), cs, gates, extra, a_n, as, ms
std::vector<Tensor> forward(int64_t cell, std::vector<int64_t> flags, const Tensor& x_, const Tensor& h0_,
                            const c10::optional<Tensor>& c0_, const Tensor& w_ih_, const Tensor& w_hh_,
                            const c10::optional<Tensor>& b_ih_, const c10::optional<Tensor>& b_hh_,
                            const c10::optional<Tensor>& w_ch_, const c10::optional<Tensor>& a0_,
                            const c10::optional<Tensor>& w_gh_, const c10::optional<Tensor>& w_hr_,
                            const c10::optional<Tensor>& lengths, bool save) {
  check(x_, h0_);
  FlushDenormals flush;
  at::NoGradGuard no_grad;
  Tensor x = x_.contiguous(), h0 = h0_.contiguous(), w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  Tensor b_ih = contig(b_ih_), b_hh = contig(b_hh_);
  Lengths len = lengths_of(lengths);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmlab_fused_forward", [&] {
    if (cell == kLSTM) {
      Tensor bias = b_ih.defined() ? b_ih + b_hh : Tensor();
      return lstm_forward<scalar_t>(LSTMFlags(flags), x, h0, contig(c0_), w_ih, w_hh, bias, contig(w_ch_), contig(a0_),
                                    contig(w_gh_), contig(w_hr_), len, save);
    }
    if (cell == kGRU)
      return with_no_lstm_extras(gru_forward<scalar_t>(flags[0] != 0, x, h0, w_ih, w_hh, b_ih, b_hh, len, save), x);
    Tensor bias = b_ih.defined() ? b_ih + b_hh : Tensor();
    return with_no_lstm_extras(rnn_forward<scalar_t>(flags[0] != 0, x, h0, w_ih, w_hh, bias, len, save), x);
  });
}

// -> dx (empty unless need_dx), dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_ch, da0, dw_gh, dw_hr
std::vector<Tensor> backward(int64_t cell, std::vector<int64_t> flags, const Tensor& dy_, const Tensor& dhN_,
                             const c10::optional<Tensor>& dcN_, const c10::optional<Tensor>& daN_, const Tensor& x_,
                             const Tensor& h0_, const c10::optional<Tensor>& c0_, const c10::optional<Tensor>& a0_,
                             const Tensor& w_ih_, const Tensor& w_hh_, bool has_bias,
                             const c10::optional<Tensor>& w_ch_, const c10::optional<Tensor>& w_gh_,
                             const c10::optional<Tensor>& w_hr_, const c10::optional<Tensor>& lengths,
                             const Tensor& hs_, const c10::optional<Tensor>& cs_, const c10::optional<Tensor>& gates_,
                             const c10::optional<Tensor>& extra_, const c10::optional<Tensor>& as_,
                             const c10::optional<Tensor>& ms_, bool need_dx) {
  check(x_, h0_);
  FlushDenormals flush;
  at::NoGradGuard no_grad;
  Tensor x = x_.contiguous(), h0 = h0_.contiguous(), w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
  Tensor dy = dy_.contiguous(), dhN = dhN_.contiguous(), hs = hs_.contiguous();
  Lengths len = lengths_of(lengths);
  return AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmlab_fused_backward", [&] {
    if (cell == kLSTM)
      return lstm_backward<scalar_t>(LSTMFlags(flags), dy, dhN, contig(dcN_), x, h0, contig(c0_), w_ih, w_hh, has_bias,
                                     contig(w_ch_), contig(daN_), contig(a0_), contig(w_gh_), contig(w_hr_), len, hs,
                                     contig(cs_), contig(gates_), contig(as_), contig(ms_), need_dx);
    if (cell == kGRU)
      return with_no_lstm_extras(gru_backward<scalar_t>(flags[0] != 0, dy, dhN, x, h0, w_ih, w_hh, has_bias, len, hs,
                                                        contig(gates_), contig(extra_), need_dx),
                                 x);
    return with_no_lstm_extras(
        rnn_backward<scalar_t>(flags[0] != 0, dy, dhN, x, h0, w_ih, w_hh, has_bias, len, hs, need_dx), x);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "one layer, one direction, forward");
  m.def("backward", &backward, "one layer, one direction, backward");
}
