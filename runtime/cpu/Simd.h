//===- Simd.h - single-threaded vector kernels of the CPU backend -*- C++ -*-===//
//
// The inner loops of attention and gated linear attention (a register-
// blocked small matrix product and a few exponential-heavy reductions) and
// the activation epilogues of the matrix-product kernels.
// They run on one thread inside a parallelFor task (OpenBLAS, whose own
// threads would then compete with the pool for the cores, is kept for the
// large products). Each is compiled twice, for the baseline ISA and for
// AVX2 + FMA, and the AVX2 build is chosen at run time when the CPU has it:
// the runtime is built without -march flags, so without the dispatch these
// loops would run 4 lanes wide on every machine.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CPU_SIMD_H
#define DIFFRT_CPU_SIMD_H

#include "diffrt/CpuKernels.h"

#include <cstdint>

namespace diffrt::cpu::simd {

/// y = act(y) over n values (act already validated).
void activateInPlace(float *y, int64_t n, Act act);

/// g[i] = silu(g[i]) · u[i], SwiGLU's hidden activation.
void siluMul(float *g, const float *u, int64_t n);

/// One row of the fused epilogue of the matrix-product kernels:
///   v = src + bias;  v = act(v);  dst = residual ? residual + gate ⊙ v : v
/// bias, residual and gate may be null (gate is read only with residual).
/// Every value is read before the same index is written, so dst may alias
/// src or residual.
void finishRow(const float *src, const float *bias, Act act, const float *residual,
               const float *gate, float *dst, int64_t n);

/// c (m x n) = (accumulate ? c : 0) + a (m x k) · b (k x n); all row-major
/// with leading dimensions lda, ldb, ldc. c must not overlap a or b.
void gemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
          int64_t ldb, float *c, int64_t ldc, bool accumulate);

/// s[j] = exp(s[j] - shift) for j < n; returns the sum of the new values.
float expShiftSum(float *s, int64_t n, float shift);

/// out[i] = Σ_c x[c] · ys[i·n + c] · exp(hi[c] - los[i·n + c]) for i < rows.
void decayedDots(const float *x, const float *ys, const float *hi, const float *los,
                 int64_t rows, int64_t n, float *out);

/// out[c] = x[c] · exp(hi[c] - lo[c]), lo[c] read as 0 when lo is null.
void decayedScale(const float *x, const float *hi, const float *lo, float *out, int64_t n);

} // namespace diffrt::cpu::simd

#endif // DIFFRT_CPU_SIMD_H
