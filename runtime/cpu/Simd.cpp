//===- Simd.cpp - run-time dispatch of the vector kernels -------*- C++ -*-===//
//
// Instantiates SimdKernels.inc for the baseline instruction set and, on
// x86-64, for AVX2 + FMA, and routes each call to the best one the CPU
// supports (decided once, on first use; DIFFRT_CPU_SIMD=baseline overrides).
//
//===----------------------------------------------------------------------===//

#include "Simd.h"

#include "Internal.h"

#include <cstdlib>
#include <cstring>

namespace diffrt::cpu::simd {

using detail::fastExp;
using detail::geluErf;
using detail::geluTanh;
using detail::silu;

// A 4 x 16 tile takes 16 SSE registers, all x86-64's baseline has, and
// spills; AVX2's 16 registers of 8 lanes and NEON's 32 of 4 hold it.
namespace baseline {
#define DIFFRT_SIMD_TARGET
#if defined(__x86_64__)
#define DIFFRT_SIMD_PANEL 8
#else
#define DIFFRT_SIMD_PANEL 16
#endif
#include "SimdKernels.inc"
#undef DIFFRT_SIMD_PANEL
#undef DIFFRT_SIMD_TARGET
} // namespace baseline

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define DIFFRT_SIMD_HAVE_AVX2 1
namespace avx2 {
#define DIFFRT_SIMD_TARGET __attribute__((target("avx2,fma")))
#define DIFFRT_SIMD_PANEL 16
#include "SimdKernels.inc"
#undef DIFFRT_SIMD_PANEL
#undef DIFFRT_SIMD_TARGET
} // namespace avx2
#endif

namespace {

/// DIFFRT_CPU_SIMD=baseline forces the baseline build, so that it can be
/// tested (and compared) on machines that have AVX2.
bool useAvx2() {
#ifdef DIFFRT_SIMD_HAVE_AVX2
  static const bool chosen = [] {
    const char *env = std::getenv("DIFFRT_CPU_SIMD");
    if (env != nullptr && std::strcmp(env, "baseline") == 0)
      return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return chosen;
#else
  return false;
#endif
}

} // namespace

#ifdef DIFFRT_SIMD_HAVE_AVX2
#define DIFFRT_SIMD_DISPATCH(name, ...)                                                            \
  return useAvx2() ? avx2::name(__VA_ARGS__) : baseline::name(__VA_ARGS__)
#else
#define DIFFRT_SIMD_DISPATCH(name, ...) return baseline::name(__VA_ARGS__)
#endif

void activateInPlace(float *y, int64_t n, Act act) {
  DIFFRT_SIMD_DISPATCH(activateInPlace, y, n, act);
}

void siluMul(float *g, const float *u, int64_t n) { DIFFRT_SIMD_DISPATCH(siluMul, g, u, n); }

void finishRow(const float *src, const float *bias, Act act, const float *residual,
               const float *gate, float *dst, int64_t n) {
  DIFFRT_SIMD_DISPATCH(finishRow, src, bias, act, residual, gate, dst, n);
}

void gemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
          int64_t ldb, float *c, int64_t ldc, bool accumulate) {
  DIFFRT_SIMD_DISPATCH(gemm, m, n, k, a, lda, b, ldb, c, ldc, accumulate);
}

float expShiftSum(float *s, int64_t n, float shift) {
  DIFFRT_SIMD_DISPATCH(expShiftSum, s, n, shift);
}

void decayedDots(const float *x, const float *ys, const float *hi, const float *los,
                 int64_t rows, int64_t n, float *out) {
  DIFFRT_SIMD_DISPATCH(decayedDots, x, ys, hi, los, rows, n, out);
}

void decayedScale(const float *x, const float *hi, const float *lo, float *out, int64_t n) {
  DIFFRT_SIMD_DISPATCH(decayedScale, x, hi, lo, out, n);
}

} // namespace diffrt::cpu::simd
