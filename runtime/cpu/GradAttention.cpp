//===- GradAttention.cpp - backward of multi-head attention on the CPU ----===//
//
// With S = scale·Q Kᵀ, P = softmax(S) and O = P V per (sample, head):
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//   dQ = scale·dS K,  dK = scale·dSᵀ Q.
// The probabilities are recomputed exactly as the forward computes them
// (same scaled keys, same exponential, max subtracted) into the caller's
// scratch, one lq x lk block per (sample, head): first by tasks of
// (pair, range of queries) so that few pairs still fill the threads, then
// one task per pair walks its queries in blocks of 64, accumulating dK and
// dV for the pair in float32 buffers of its own. Every output element is
// written by exactly one task, in a fixed order: no atomics, and the
// result does not depend on the thread count. Per-head products are small,
// so they run in the single-threaded kernel of Simd.h inside the tasks.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"
#include "Simd.h"

#include <algorithm>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

void attentionBackward(ConstMat q, ConstMat k, ConstMat v, int64_t batch, int64_t lq, int64_t lk,
                       int64_t heads, float scale, ConstMat dOut, Mat dQ, Mat dK, Mat dV,
                       float *scratchBuf) {
  const char *kernel = "attentionBackward";
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
  checkView(kernel, "dOut", dOut, batch * lq, heads * dv);
  bool wantQ = dQ.data != nullptr, wantK = dK.data != nullptr, wantV = dV.data != nullptr;
  if (wantQ)
    checkView(kernel, "dQ", dQ, batch * lq, heads * dk);
  if (wantK)
    checkView(kernel, "dK", dK, batch * lk, heads * dk);
  if (wantV)
    checkView(kernel, "dV", dV, batch * lk, heads * dv);
  for (ConstMat g : {ConstMat(dQ), ConstMat(dK), ConstMat(dV)})
    if (overlaps(g, q) || overlaps(g, k) || overlaps(g, v) || overlaps(g, dOut))
      fail(kernel, ": a gradient overlaps q, k, v or dOut");
  if (!wantQ && !wantK && !wantV)
    return;
  if (scratchBuf == nullptr)
    fail(kernel, ": null scratch for ", batch, " x ", heads, " x ", lq, " x ", lk, " floats");

  constexpr int64_t kQueryBlock = 64;
  int64_t pairs = batch * heads;
  int64_t maxSplits = (lq + kQueryBlock - 1) / kQueryBlock;
  int64_t splits =
      std::min(maxSplits, std::max<int64_t>(1, (2 * poolThreads() + pairs - 1) / pairs));
  int64_t rowsPerSplit = (lq + splits - 1) / splits;

  // Probabilities, as the forward: S = Q (scale·K)ᵀ, row softmax.
  parallelFor(pairs * splits, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> kt(static_cast<size_t>(dk * lk));
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
      float *p = scratchBuf + pair * lq * lk;
      int64_t r0 = split * rowsPerSplit, r1 = std::min(lq, r0 + rowsPerSplit);
      if (r0 >= r1)
        continue;
      simd::gemm(r1 - r0, lk, dk, q.row(b * lq + r0) + h * dk, q.ld, kt.data(), lk, p + r0 * lk, lk,
                 false);
      for (int64_t i = r0; i < r1; ++i) {
        float *pi = p + i * lk;
        float mx = *std::max_element(pi, pi + lk);
        float inv = 1.0f / simd::expShiftSum(pi, lk, mx);
        for (int64_t j = 0; j < lk; ++j)
          pi[j] *= inv;
      }
    }
  });

  parallelFor(pairs, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> vt(static_cast<size_t>(dv * lk)), ds(static_cast<size_t>(kQueryBlock * lk));
    std::vector<float> tr(static_cast<size_t>(lk * kQueryBlock));
    std::vector<float> dkAcc(static_cast<size_t>(wantK ? lk * dk : 0));
    std::vector<float> dvAcc(static_cast<size_t>(wantV ? lk * dv : 0));
    for (int64_t pair = p0; pair < p1; ++pair) {
      int64_t b = pair / heads, h = pair % heads;
      const float *p = scratchBuf + pair * lq * lk;
      const float *kh = k.row(b * lk) + h * dk, *vh = v.row(b * lk) + h * dv;
      for (int64_t j = 0; j < lk; ++j)
        for (int64_t c = 0; c < dv; ++c)
          vt[c * lk + j] = vh[j * v.ld + c];
      std::fill(dkAcc.begin(), dkAcc.end(), 0.0f);
      std::fill(dvAcc.begin(), dvAcc.end(), 0.0f);
      for (int64_t r0 = 0; r0 < lq; r0 += kQueryBlock) {
        int64_t rows = std::min(kQueryBlock, lq - r0);
        const float *pb = p + r0 * lk;
        const float *dOb = dOut.row(b * lq + r0) + h * dv;
        const float *qb = q.row(b * lq + r0) + h * dk;
        if (wantV) {
          // dV += Pᵀ dO over this block of queries.
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < lk; ++j)
              tr[j * rows + i] = pb[i * lk + j];
          simd::gemm(lk, dv, rows, tr.data(), rows, dOb, dOut.ld, dvAcc.data(), dv, true);
        }
        if (!wantQ && !wantK)
          continue;
        // dS = P ⊙ (dP − Σ_j P dP), dP = dO Vᵀ.
        simd::gemm(rows, lk, dv, dOb, dOut.ld, vt.data(), lk, ds.data(), lk, false);
        for (int64_t i = 0; i < rows; ++i) {
          const float *pi = pb + i * lk;
          float *di = &ds[i * lk];
          constexpr int kLanes = 16;
          float acc[kLanes] = {};
          int64_t j = 0;
          for (; j + kLanes <= lk; j += kLanes)
            for (int l = 0; l < kLanes; ++l)
              acc[l] += pi[j + l] * di[j + l];
          for (int l = 0; j < lk; ++j, ++l)
            acc[l] += pi[j] * di[j];
          float rowDot = 0.0f;
          for (int l = 0; l < kLanes; ++l)
            rowDot += acc[l];
          for (j = 0; j < lk; ++j)
            di[j] = pi[j] * (di[j] - rowDot);
        }
        if (wantQ) {
          float *dqb = dQ.row(b * lq + r0) + h * dk;
          simd::gemm(rows, dk, lk, ds.data(), lk, kh, k.ld, dqb, dQ.ld, false);
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t c = 0; c < dk; ++c)
              dqb[i * dQ.ld + c] *= scale;
        }
        if (wantK) {
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < lk; ++j)
              tr[j * rows + i] = ds[i * lk + j];
          simd::gemm(lk, dk, rows, tr.data(), rows, qb, q.ld, dkAcc.data(), dk, true);
        }
      }
      if (wantK)
        for (int64_t j = 0; j < lk; ++j) {
          float *o = dK.row(b * lk + j) + h * dk;
          for (int64_t c = 0; c < dk; ++c)
            o[c] = scale * dkAcc[j * dk + c];
        }
      if (wantV)
        for (int64_t j = 0; j < lk; ++j)
          std::copy(&dvAcc[j * dv], &dvAcc[j * dv] + dv, dV.row(b * lk + j) + h * dv);
    }
  });
}

} // namespace diffrt::cpu
