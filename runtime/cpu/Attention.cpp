//===- Attention.cpp - multi-head softmax attention on the CPU --*- C++ -*-===//
//
// One parallelFor task per (sample, head, range of queries). A task copies
// its head's keys once, transposed and pre-scaled, then for each block of
// queries computes S = Q (scale·K)ᵀ, a row softmax with the maximum
// subtracted, and O = P V written straight into the head's columns of out.
// The products run in the single-threaded register-blocked kernel of
// Simd.h: per-head products are small (DiT: 256 x 256 x 72), and OpenBLAS
// called from several pool threads at once has its own threads compete with
// them for the cores.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"
#include "Simd.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

void attention(ConstMat q, ConstMat k, ConstMat v, int64_t batch, int64_t lq, int64_t lk,
               int64_t heads, float scale, Mat out, float *logsumexp) {
  const char *kernel = "attention";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "lq", lq);
  checkPositive(kernel, "lk", lk);
  checkPositive(kernel, "heads", heads);
  if (q.cols % heads != 0 || v.cols % heads != 0)
    fail(kernel, ": ", heads, " heads do not divide the q width ", q.cols, " or the v width ",
         v.cols);
  int64_t dk = q.cols / heads, dv = v.cols / heads;
  checkView(kernel, "q", q, batch * lq, heads * dk);
  checkView(kernel, "k", k, batch * lk, heads * dk);
  checkView(kernel, "v", v, batch * lk, heads * dv);
  checkView(kernel, "out", out, batch * lq, heads * dv);
  if (overlaps(out, q) || overlaps(out, k) || overlaps(out, v))
    fail(kernel, ": out overlaps q, k or v");

  // 64 query rows keep a block's scores within L2 up to a few thousand keys.
  // With fewer (sample, head) pairs than twice the threads, queries are split
  // too, at the price of one more copy of the keys per split.
  constexpr int64_t kQueryBlock = 64;
  int64_t pairs = batch * heads;
  int64_t maxSplits = (lq + kQueryBlock - 1) / kQueryBlock;
  int64_t splits = std::min(maxSplits, std::max<int64_t>(1, (2 * poolThreads() + pairs - 1) / pairs));
  int64_t rowsPerSplit = (lq + splits - 1) / splits;

  parallelFor(pairs * splits, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> kt(static_cast<size_t>(dk * lk));
    std::vector<float> s(static_cast<size_t>(kQueryBlock * lk));
    int64_t loadedPair = -1;
    for (int64_t task = t0; task < t1; ++task) {
      int64_t pair = task / splits, split = task % splits;
      int64_t b = pair / heads, h = pair % heads;
      if (pair != loadedPair) {
        for (int64_t j = 0; j < lk; ++j) {
          const float *kr = k.row(b * lk + j) + h * dk;
          for (int64_t c = 0; c < dk; ++c)
            kt[c * lk + j] = scale * kr[c];
        }
        loadedPair = pair;
      }
      const float *vh = v.row(b * lk) + h * dv;
      int64_t end = std::min(lq, (split + 1) * rowsPerSplit);
      for (int64_t r0 = split * rowsPerSplit; r0 < end; r0 += kQueryBlock) {
        int64_t rows = std::min(kQueryBlock, end - r0);
        const float *qh = q.row(b * lq + r0) + h * dk;
        float *oh = out.row(b * lq + r0) + h * dv;
        simd::gemm(rows, lk, dk, qh, q.ld, kt.data(), lk, s.data(), lk, false);
        float inv[kQueryBlock];
        for (int64_t i = 0; i < rows; ++i) {
          float *si = &s[i * lk];
          float mx = *std::max_element(si, si + lk);
          float sum = simd::expShiftSum(si, lk, mx);
          inv[i] = 1.0f / sum;
          if (logsumexp != nullptr)
            logsumexp[pair * lq + r0 + i] = mx + std::log(sum);
        }
        // Normalising the dv outputs instead of the lk probabilities is the
        // same product with fewer multiplications whenever lk > dv.
        simd::gemm(rows, dv, lk, s.data(), lk, vh, v.ld, oh, out.ld, false);
        for (int64_t i = 0; i < rows; ++i) {
          float *o = oh + i * out.ld;
          for (int64_t j = 0; j < dv; ++j)
            o[j] *= inv[i];
        }
      }
    }
  });
}

} // namespace diffrt::cpu
