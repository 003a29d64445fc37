//===- Internal.h - helpers shared by the CPU kernels -----------*- C++ -*-===//
//
// Argument checks, the OpenBLAS wrappers, the scalar exponential and
// activation functions, and the threaded driver of the fused "bias,
// activation, gated residual" epilogue that gemm, swiglu and the MoE
// combiners share. Not installed: only the sources in runtime/cpu include
// it. The scalar functions are forced inline so that they vectorise inside
// the loops of SimdKernels.inc for each instruction set.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CPU_INTERNAL_H
#define DIFFRT_CPU_INTERNAL_H

#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

namespace diffrt::cpu::detail {

/// Enough elements per parallelFor chunk that the wake-up of a worker (a few
/// microseconds) is small next to the work it is given.
constexpr int64_t kElementGrain = 1 << 14;

/// Threads parallelFor spreads work over (the calling thread included).
int64_t poolThreads();

/// Rows per chunk for row-wise kernels over rows of `cols` elements.
inline int64_t rowGrain(int64_t cols) {
  return cols >= kElementGrain ? 1 : kElementGrain / (cols > 0 ? cols : 1);
}

/// Checks that `m` is a rows x cols view with a valid leading dimension.
void checkView(const char *kernel, const char *name, ConstMat m, int64_t rows, int64_t cols);
/// Checks rows/cols of a per-sample matrix (shift, scale, gate) that covers
/// `rows` rows of the main operand in groups of rowsPerSample.
void checkPerSample(const char *kernel, const char *name, ConstMat m, int64_t rows,
                    int64_t rowsPerSample, int64_t cols);
void checkPositive(const char *kernel, const char *name, int64_t value);
void checkEpilogue(const char *kernel, const GatedResidual *epilogue, int64_t rows, int64_t cols);
void checkAct(const char *kernel, Act act);

/// Whether the memory spanned by two views overlaps.
bool overlaps(ConstMat a, ConstMat b);

/// Hands a scratch block back to the pool it came from.
struct ScratchRelease {
  void operator()(float *p) const;
};
using Scratch = std::unique_ptr<float[], ScratchRelease>;

/// Uninitialised float buffer of at least n elements, 64-byte aligned: the
/// kernels overwrite every scratch element, so value-initialising it would
/// be a wasted pass. Blocks come from a process-wide pool and go back to it:
/// kernels ask for the same sizes at every call, and memory fresh from the
/// OS costs a page fault per 4 KiB on first touch, which on a virtual
/// machine took more time than a small MoE layer's arithmetic.
Scratch scratch(int64_t n);

/// c (m x n) = alpha · a (m x k) · bᵀ + beta · c, with b stored n x k.
void sgemmNT(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/// c (m x n) = alpha · a (m x k) · b + beta · c, with b stored k x n.
void sgemmNN(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/// e^x in float32 without a library call, so that loops over arrays
/// vectorise: Cody-Waite reduction x = n·ln2 + r with |r| <= ln2/2, a degree-7
/// Taylor polynomial for e^r (truncation error 5e-9, far below float32's
/// epsilon) and the exponent built from bits. Within 2 ulp of the exact value
/// over the whole normal range; 0 below e^-87.3 (where float32 results turn
/// subnormal), +inf above e^88.7, NaN for NaN.
__attribute__((always_inline)) inline float fastExp(float x) {
  constexpr float kHi = 88.72f, kLo = -87.33f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f; // 16 significant bits: n·kLn2Hi is exact
  constexpr float kLn2Lo = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.0f;        // 1.5·2^23: adding it rounds to an integer
  float xc = x > kHi ? kHi : (x < kLo ? kLo : x);
  float shifted = xc * kLog2e + kRound;
  float n = shifted - kRound;
  float r = xc - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // `shifted` lies in [2^23, 2^24), so its mantissa holds 2^22 + n. 2^n is
  // built as 2^(n - n/2) · 2^(n/2): n reaches 128 near the top of the range,
  // where 2^n alone is not a float but both halves are.
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  int32_t n0 = (bits & 0x7fffff) - 0x400000;
  int32_t n1 = n0 >> 1;
  int32_t e1 = (n1 + 127) << 23, e2 = (n0 - n1 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &e1, sizeof s1);
  std::memcpy(&s2, &e2, sizeof s2);
  float y = p * s1 * s2;
  y = x < kLo ? 0.0f : y;
  return x > kHi ? std::numeric_limits<float>::infinity() : y;
}

__attribute__((always_inline)) inline float sigmoid(float x) { return 1.0f / (1.0f + fastExp(-x)); }
__attribute__((always_inline)) inline float silu(float x) { return x / (1.0f + fastExp(-x)); }
/// 1 + erf(z) written as erfc(-z): the same function, without the
/// cancellation that loses every digit of 1 + erf(z) for z below about -3.
__attribute__((always_inline)) inline float geluErf(float x) { return 0.5f * x * std::erfc(x * -0.70710678118654752f); }
/// 0.5·x·(1 + tanh(u)) equals x·sigmoid(2u); the sigmoid form has no
/// cancellation where tanh(u) is near -1 and needs only one exponential.
__attribute__((always_inline)) inline float geluTanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286536f;
  float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
  return x / (1.0f + fastExp(-2.0f * u));
}
/// log(sigmoid(x)) without overflow for either sign of x.
inline float logSigmoid(float x) {
  return std::fmin(x, 0.0f) - std::log1p(std::exp(-std::fabs(x)));
}

/// Applies simd::finishRow to every row of y (rows x cols, ldy) into out,
/// with the residual and gate rows taken from the epilogue (may be null).
void finishRows(const float *y, int64_t ldy, const float *bias, Act act,
                const GatedResidual *epilogue, Mat out);

} // namespace diffrt::cpu::detail

#endif // DIFFRT_CPU_INTERNAL_H

//===----------------------------------------------------------------------===//
// Helpers of the backward kernels (CpuGradKernels.h, runtime/cpu/Grad*.cpp).
// Kept in a block of their own, with their own guard, so that the forward
// kernels' part above stays untouched.
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CPU_INTERNAL_GRAD_H
#define DIFFRT_CPU_INTERNAL_GRAD_H

#include <algorithm>
#include <vector>

namespace diffrt::cpu::detail {

/// d act(x) / dx for the activations of Act, consistent with the forward's
/// formulas (geluTanh in its sigmoid form).
__attribute__((always_inline)) inline float actDerivative(float x, Act act) {
  switch (act) {
  case Act::None:
    return 1.0f;
  case Act::Gelu: {
    // 0.5·(1 + erf(x/√2)) + x·φ(x), with the erfc form of the forward.
    constexpr float kInvSqrt2Pi = 0.39894228040143268f;
    return 0.5f * std::erfc(x * -0.70710678118654752f) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
  }
  case Act::GeluTanh: {
    // x·σ(2u): σ(2u) + x·σ(2u)·(1 − σ(2u))·2u'.
    constexpr float kSqrt2OverPi = 0.79788456080286536f;
    float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
    float s = 1.0f / (1.0f + fastExp(-2.0f * u));
    float du = kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
    return s + x * s * (1.0f - s) * 2.0f * du;
  }
  case Act::Silu: {
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
  }
  return 1.0f;
}

/// dst (cols x rows, leading dimension ldDst) = srcᵀ for src (rows x cols,
/// leading dimension ldSrc); threaded, in cache-sized tiles.
void transpose(const float *src, int64_t rows, int64_t cols, int64_t ldSrc, float *dst,
               int64_t ldDst);

/// c (m x n) = alpha · aᵀ · b + beta · c with a stored k x m and b stored
/// k x n: the "sum over rows" product of every weight gradient. The
/// backend's BLAS entry points are NT and NN only, so aᵀ is materialised in
/// `buf` (bufLen floats; allocated here when null or shorter than m) a
/// block of rows of a at a time, each block one sgemmNN accumulating into c.
/// Calls BLAS from the calling thread. k == 0 leaves beta · c.
void sgemmTN(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *buf,
             int64_t bufLen);

/// Sets a rows x cols view (leading dimension ld) to zero.
void zeroMat(float *data, int64_t rows, int64_t cols, int64_t ld);

/// Deterministic column sums by groups of rows: for every group g of
/// rowsPerGroup consecutive rows (rows divisible by rowsPerGroup) and
/// column j < cols, emit(g, j, Σ_{r in g} value(r, j)) with the sum in
/// double. addRow(r, j0, j1, acc) adds value(r, j) to acc[j - j0] for j in
/// [j0, j1). Rows are summed in fixed blocks of kSumRowBlock (partial sums
/// kept per block and added in block order), so the result depends on the
/// problem alone, never on the thread count or the scheduling.
constexpr int64_t kSumRowBlock = 64;
constexpr int64_t kSumColBlock = 256;
template <typename AddRow, typename Emit>
void groupColumnSums(int64_t rows, int64_t cols, int64_t rowsPerGroup, const AddRow &addRow,
                     const Emit &emit) {
  if (rows <= 0 || cols <= 0 || rowsPerGroup <= 0)
    return;
  int64_t groups = rows / rowsPerGroup;
  int64_t rowBlocks = (rowsPerGroup + kSumRowBlock - 1) / kSumRowBlock;
  int64_t colBlocks = (cols + kSumColBlock - 1) / kSumColBlock;
  int64_t grain = std::max<int64_t>(1, kElementGrain / (std::min(rowsPerGroup, kSumRowBlock) *
                                                        std::min(cols, kSumColBlock)));
  if (rowBlocks == 1) {
    parallelFor(groups * colBlocks, grain, [&](int64_t t0, int64_t t1) {
      double acc[kSumColBlock];
      for (int64_t task = t0; task < t1; ++task) {
        int64_t g = task / colBlocks, j0 = (task % colBlocks) * kSumColBlock;
        int64_t j1 = std::min(cols, j0 + kSumColBlock);
        std::fill(acc, acc + (j1 - j0), 0.0);
        for (int64_t r = g * rowsPerGroup; r < (g + 1) * rowsPerGroup; ++r)
          addRow(r, j0, j1, acc);
        for (int64_t j = j0; j < j1; ++j)
          emit(g, j, acc[j - j0]);
      }
    });
    return;
  }
  std::vector<double> partial(static_cast<size_t>(groups * rowBlocks * cols));
  parallelFor(groups * rowBlocks * colBlocks, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      int64_t cb = task % colBlocks, gb = task / colBlocks;
      int64_t g = gb / rowBlocks, blk = gb % rowBlocks;
      int64_t j0 = cb * kSumColBlock, j1 = std::min(cols, j0 + kSumColBlock);
      int64_t r0 = g * rowsPerGroup + blk * kSumRowBlock;
      int64_t r1 = std::min((g + 1) * rowsPerGroup, r0 + kSumRowBlock);
      double *acc = &partial[static_cast<size_t>(gb * cols + j0)];
      std::fill(acc, acc + (j1 - j0), 0.0);
      for (int64_t r = r0; r < r1; ++r)
        addRow(r, j0, j1, acc);
    }
  });
  parallelFor(groups * cols, kElementGrain / 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      int64_t g = i / cols, j = i % cols;
      double total = 0.0;
      for (int64_t blk = 0; blk < rowBlocks; ++blk)
        total += partial[static_cast<size_t>((g * rowBlocks + blk) * cols + j)];
      emit(g, j, total);
    }
  });
}

/// Emitter of groupColumnSums that stores the sums as floats in a view
/// (row g, column j).
struct StoreSums {
  Mat out;
  void operator()(int64_t g, int64_t j, double v) const {
    out.row(g)[j] = static_cast<float>(v);
  }
};

/// The SwiGLU hidden state of n rows of x (leading dimension x.ld) for the
/// backward pass: g = x·gateᵀ, u = x·upᵀ (n x f each, contiguous) and
/// h = silu(g) ⊙ u. gate and up are f x x.cols views.
void swigluHidden(ConstMat x, ConstMat gate, ConstMat up, float *g, float *u, float *h);

/// The rest of a SwiGLU backward given swigluHidden's g, u, h and the
/// gradient dy (n x N) of y = h·downᵀ (down: N x f): writes dDown = dyᵀ·h,
/// then, with g and u overwritten by dg and du, dGate = dgᵀ·x,
/// dUp = duᵀ·x and dX (= dg·gate + du·up, added to dX when accumulate).
/// Gradients with null data are skipped. `work` holds n·f floats.
void swigluBackwardFromHidden(ConstMat x, ConstMat gate, ConstMat up, ConstMat down, ConstMat dy,
                              float *g, float *u, const float *h, float *work, Mat dX,
                              bool accumulate, Mat dGate, Mat dUp, Mat dDown);

/// Router probabilities shared by the MoE forward and backward, which must
/// reproduce the forward's routing decisions bit for bit: probs (rows x e)
/// = softmax over experts of x · routerᵀ, max subtracted.
Scratch routerProbs(ConstMat x, const float *router, int64_t e);

/// Sort key that puts NaN below every number, so a corrupt router output
/// cannot break the strict weak ordering std::partial_sort relies on.
inline float rankKey(float p) { return std::isnan(p) ? -std::numeric_limits<float>::infinity() : p; }

/// dst row i = x row rows[i] (dst contiguous, x.cols wide).
void gatherRows(ConstMat x, const int64_t *rows, int64_t n, float *dst);

/// DiT-MoE's token-choice routing, shared by the forward and the backward:
/// per token the topK experts by router probability (ties to the lower
/// index, NaN last) in selection order, their weights (renormalised when
/// `normalize`), and the slots (token · topK + j) grouped by expert with
/// tokens ascending within an expert.
struct TopKRouting {
  Scratch probs;   // m x e
  std::vector<int32_t> chosen;      // m x topK expert ids
  std::vector<float> weight;        // m x topK
  std::vector<float> totals;        // m: sum of the chosen probabilities
  std::vector<int64_t> count;       // e: slots per expert
  std::vector<int64_t> offset;      // e + 1: first grouped position per expert
  std::vector<int64_t> slotPosition; // slot -> grouped position
  std::vector<int64_t> groupedSlot;  // grouped position -> slot
  std::vector<int64_t> groupedToken; // grouped position -> token
};
TopKRouting routeTopK(ConstMat x, const float *router, int64_t e, int64_t topK, bool normalize);

} // namespace diffrt::cpu::detail

#endif // DIFFRT_CPU_INTERNAL_GRAD_H
