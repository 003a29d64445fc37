//===- AttentionTest.cpp - tests of multi-head softmax attention ----------===//
//
// Self-attention on q, k and v read as strided column slices of one packed
// qkv projection, cross-attention with a different key length (64 queries,
// MicroDiT's 77 caption keys), head widths that differ between keys and
// values, and scores large enough that a softmax without the max
// subtraction would overflow, all against a double-precision reference.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include <algorithm>
#include <cmath>

namespace diffrt::cpu::testing {
namespace {

/// With `lse`, also the log-sum-exp of every (sample, head, query) row at
/// index (b·heads + h)·lq + i.
Ref attentionReference(ConstMat q, ConstMat k, ConstMat v, int64_t batch, int64_t lq, int64_t lk,
                       int64_t heads, double scale, std::vector<double> *lse = nullptr) {
  int64_t dk = q.cols / heads, dv = v.cols / heads;
  Ref out(batch * lq, heads * dv);
  std::vector<double> s(static_cast<size_t>(lk));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < lq; ++i) {
        const float *qi = q.row(b * lq + i) + h * dk;
        double mx = -INFINITY;
        for (int64_t j = 0; j < lk; ++j) {
          const float *kj = k.row(b * lk + j) + h * dk;
          double acc = 0.0;
          for (int64_t c = 0; c < dk; ++c)
            acc += double(qi[c]) * kj[c];
          s[j] = scale * acc;
          mx = std::max(mx, s[j]);
        }
        double total = 0.0;
        for (int64_t j = 0; j < lk; ++j) {
          s[j] = std::exp(s[j] - mx);
          total += s[j];
        }
        if (lse != nullptr)
          (*lse)[static_cast<size_t>((b * heads + h) * lq + i)] = mx + std::log(total);
        for (int64_t c = 0; c < dv; ++c) {
          double acc = 0.0;
          for (int64_t j = 0; j < lk; ++j)
            acc += s[j] * v.row(b * lk + j)[h * dv + c];
          out(b * lq + i, h * dv + c) = acc / total;
        }
      }
  return out;
}

TEST(CpuAttention, SelfAttentionOnAPackedQkvBuffer) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int trial = 0; trial < 3; ++trial) {
    int64_t batch = rng.integer(1, 3), len = rng.integer(1, 300), heads = rng.integer(1, 4);
    int64_t dk = rng.integer(1, 72), dv = trial == 0 ? dk : rng.integer(1, 72);
    SCOPED_TRACE(::testing::Message() << "batch " << batch << " len " << len << " heads "
                                      << heads << " dk " << dk << " dv " << dv);
    int64_t qkWidth = heads * dk, vWidth = heads * dv;
    Buffer qkv = normalBuffer(rng, batch * len, 2 * qkWidth + vWidth, 2 * qkWidth + vWidth + 4);
    ConstMat q{qkv.data.data(), batch * len, qkWidth, qkv.ld};
    ConstMat k{qkv.data.data() + qkWidth, batch * len, qkWidth, qkv.ld};
    ConstMat v{qkv.data.data() + 2 * qkWidth, batch * len, vWidth, qkv.ld};
    double scale = 1.0 / std::sqrt(double(dk));
    Buffer out = poisonedBuffer(batch * len, vWidth, vWidth + 3);
    attention(q, k, v, batch, len, len, heads, float(scale), out.mat());
    expectMatches(out, attentionReference(q, k, v, batch, len, len, heads, float(scale)));
  }
}

TEST(CpuAttention, CrossAttentionWithMoreKeysThanQueries) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t batch = 2, lq = 64, lk = 77, heads = 4, dk = 32, dv = 32;
  Buffer q = normalBuffer(rng, batch * lq, heads * dk, heads * dk + 2);
  Buffer kv = normalBuffer(rng, batch * lk, heads * (dk + dv));
  ConstMat k{kv.data.data(), batch * lk, heads * dk, kv.ld};
  ConstMat v{kv.data.data() + heads * dk, batch * lk, heads * dv, kv.ld};
  float scale = 1.0f / std::sqrt(float(dk));
  Buffer out = poisonedBuffer(batch * lq, heads * dv);
  attention(q.cmat(), k, v, batch, lq, lk, heads, scale, out.mat());
  expectMatches(out, attentionReference(q.cmat(), k, v, batch, lq, lk, heads, scale));
}

TEST(CpuAttention, LongQueryBlocksAndLargeScores) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // 300 queries span three query blocks. Scores of magnitude ~100 overflow
  // exp without the max subtraction; float32 rounding of such scores is
  // ~1e-5 in absolute terms, which moves the softmax weights by as much
  // relatively, hence the looser bound.
  int64_t batch = 1, lq = 300, lk = 200, heads = 2, dk = 16, dv = 24;
  Buffer q = normalBuffer(rng, batch * lq, heads * dk, 0, 5.0);
  Buffer k = normalBuffer(rng, batch * lk, heads * dk, 0, 5.0);
  Buffer v = normalBuffer(rng, batch * lk, heads * dv);
  float scale = 1.0f;
  Buffer out = poisonedBuffer(batch * lq, heads * dv);
  attention(q.cmat(), k.cmat(), v.cmat(), batch, lq, lk, heads, scale, out.mat());
  expectMatches(out, attentionReference(q.cmat(), k.cmat(), v.cmat(), batch, lq, lk, heads, scale),
                1e-4);
}

// kern.attention's statistics: scores around ±60 (where a log-sum-exp
// without the max would overflow) and small ones, one row per (sample,
// head, query), and the output unchanged by asking for them.
TEST(CpuAttention, LogSumExpOfEveryRow) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (double spread : {1.0, 8.0}) {
    int64_t batch = rng.integer(1, 3), lq = rng.integer(1, 150), lk = rng.integer(1, 90);
    int64_t heads = rng.integer(1, 4), dk = rng.integer(1, 40), dv = rng.integer(1, 40);
    SCOPED_TRACE(::testing::Message() << "spread " << spread << " batch " << batch << " lq " << lq
                                      << " lk " << lk << " heads " << heads << " dk " << dk << " dv "
                                      << dv);
    Buffer q = normalBuffer(rng, batch * lq, heads * dk, 0, spread);
    Buffer k = normalBuffer(rng, batch * lk, heads * dk, 0, spread);
    Buffer v = normalBuffer(rng, batch * lk, heads * dv);
    float scale = float(1.0 / std::sqrt(double(dk)));
    Buffer out = poisonedBuffer(batch * lq, heads * dv);
    std::vector<float> lse(static_cast<size_t>(batch * heads * lq), std::nanf(""));
    attention(q.cmat(), k.cmat(), v.cmat(), batch, lq, lk, heads, scale, out.mat(), lse.data());
    std::vector<double> want(lse.size());
    Ref ref = attentionReference(q.cmat(), k.cmat(), v.cmat(), batch, lq, lk, heads, scale, &want);
    expectMatches(out, ref, 1e-4);
    for (size_t i = 0; i < lse.size(); ++i)
      ASSERT_NEAR(lse[i], want[i], 2e-5 * std::max(1.0, std::fabs(want[i]))) << "row " << i;
  }
}

TEST(CpuAttention, RejectsHeadsThatDoNotDivideTheWidth) {
  Buffer q(4, 10), k(4, 10), v(4, 10), out(4, 10);
  EXPECT_DIFFRT_ERROR(attention(q.cmat(), k.cmat(), v.cmat(), 1, 4, 4, 3, 1.0f, out.mat()),
                      "attention", "3 heads");
}

} // namespace
} // namespace diffrt::cpu::testing
