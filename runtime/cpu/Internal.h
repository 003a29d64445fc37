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

/// Uninitialised float buffer: the kernels overwrite every scratch element,
/// so value-initialising it (std::vector) would be a wasted pass.
inline std::unique_ptr<float[]> scratch(int64_t n) {
  return std::unique_ptr<float[]>(new float[static_cast<size_t>(n > 0 ? n : 1)]);
}

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
