//===- GradCommon.cpp - shared pieces of the CPU backward kernels ---------===//
//
// The transposes and the aᵀ·b product that every weight gradient needs. The
// backend's only BLAS entry points (Common.cpp) compute a·bᵀ and a·b; a
// weight gradient sums over the rows of two row-major operands (dW = dzᵀ·a),
// so the first operand is transposed into a buffer, in blocks of rows when
// the buffer is short, and each block becomes one sgemmNN accumulating into
// the result. The transposes are O(k·m) against the product's O(k·m·n) and
// run threaded on the worker pool; BLAS is called from the calling thread.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <algorithm>

namespace diffrt::cpu::detail {

void transpose(const float *src, int64_t rows, int64_t cols, int64_t ldSrc, float *dst,
               int64_t ldDst) {
  if (rows <= 0 || cols <= 0)
    return;
  // 32 x 32 tiles: each tile's source rows and destination rows stay in L1,
  // so neither side is walked with a cache-line stride per element.
  constexpr int64_t kTile = 32;
  int64_t rowTiles = (rows + kTile - 1) / kTile, colTiles = (cols + kTile - 1) / kTile;
  parallelFor(rowTiles * colTiles, std::max<int64_t>(1, kElementGrain / (kTile * kTile)),
              [&](int64_t t0, int64_t t1) {
                for (int64_t t = t0; t < t1; ++t) {
                  int64_t r0 = (t / colTiles) * kTile, c0 = (t % colTiles) * kTile;
                  int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
                  for (int64_t c = c0; c < c1; ++c) {
                    float *d = dst + c * ldDst;
                    for (int64_t r = r0; r < r1; ++r)
                      d[r] = src[r * ldSrc + c];
                  }
                }
              });
}

void zeroMat(float *data, int64_t rows, int64_t cols, int64_t ld) {
  if (data == nullptr || rows <= 0 || cols <= 0)
    return;
  parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::fill(data + r * ld, data + r * ld + cols, 0.0f);
  });
}

void sgemmTN(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
             const float *b, int64_t ldb, float beta, float *c, int64_t ldc, float *buf,
             int64_t bufLen) {
  if (m <= 0 || n <= 0)
    return;
  if (k <= 0) {
    // No rows to sum: c = beta · c (an expert that received no token).
    if (beta == 0.0f) {
      zeroMat(c, m, n, ldc);
    } else if (beta != 1.0f) {
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          c[i * ldc + j] *= beta;
    }
    return;
  }
  Scratch owned;
  if (buf == nullptr || bufLen < m) {
    // The whole transpose at once: the same size as a, which the caller
    // already holds, so this at most doubles its footprint.
    owned = scratch(m * k);
    buf = owned.get();
    bufLen = m * k;
  }
  int64_t block = std::min(k, bufLen / m);
  for (int64_t k0 = 0; k0 < k; k0 += block) {
    int64_t len = std::min(block, k - k0);
    transpose(a + k0 * lda, len, m, lda, buf, len);
    sgemmNN(m, n, len, alpha, buf, len, b + k0 * ldb, ldb, k0 == 0 ? beta : 1.0f, c, ldc);
  }
}

} // namespace diffrt::cpu::detail
