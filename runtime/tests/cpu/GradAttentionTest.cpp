//===- GradAttentionTest.cpp - tests of the attention backward ------------===//
//
// attentionBackward with lq ≠ lk, several heads and samples, q, k and v as
// column slices of one packed projection (strided views) and the gradients
// as column slices of one packed gradient; more than 64 queries so that the
// query blocks of both passes are exercised. Each gradient against central
// differences of attention().
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

void checkAttention(Rng &rng, int64_t batch, int64_t lq, int64_t lk, int64_t heads, int64_t dk,
                    int64_t dv) {
  float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  // Queries in their own buffer (lq may differ from lk); keys and values
  // packed side by side with a padding column, as a fused kv projection.
  Buffer q = normalBuffer(rng, batch * lq, heads * dk, heads * dk + 2, 1.5);
  int64_t kvCols = heads * (dk + dv) + 1;
  Buffer kv = normalBuffer(rng, batch * lk, kvCols, kvCols, 1.5);
  ConstMat k{kv.data.data(), batch * lk, heads * dk, kvCols};
  ConstMat v{kv.data.data() + heads * dk, batch * lk, heads * dv, kvCols};
  Buffer dOut = normalBuffer(rng, batch * lq, heads * dv, heads * dv + 1);

  Buffer dQ = poisonedBuffer(batch * lq, heads * dk, heads * dk + 3);
  Buffer dKV = poisonedBuffer(batch * lk, kvCols, kvCols);
  Mat dK{dKV.data.data(), batch * lk, heads * dk, kvCols};
  Mat dV{dKV.data.data() + heads * dk, batch * lk, heads * dv, kvCols};
  std::vector<float> work(static_cast<size_t>(batch * heads * lq * lk));
  attentionBackward(q.cmat(), k, v, batch, lq, lk, heads, scale, dOut.cmat(), dQ.mat(), dK, dV,
                    work.data());

  auto f = [&] {
    Buffer out(batch * lq, heads * dv);
    attention(q.cmat(), k, v, batch, lq, lk, heads, scale, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dQ", operand(q), gradOf(dQ), f);
  expectDirectional(rng, "dK", {kv.data.data(), batch * lk, heads * dk, kvCols},
                    {dKV.data.data(), kvCols}, f);
  expectDirectional(rng, "dV", {kv.data.data() + heads * dk, batch * lk, heads * dv, kvCols},
                    {dKV.data.data() + heads * dk, kvCols}, f);
  expectPaddingIntact("dQ", dQ);
  // The packed gradient's last column belongs to neither view.
  int64_t touched = 0;
  for (int64_t r = 0; r < batch * lk; ++r)
    touched += !std::isnan(dKV.at(r, kvCols - 1));
  EXPECT_EQ(touched, 0) << "a column outside dK and dV was written";
}

TEST(GradAttention, PackedViewsAndUnequalLengths) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  checkAttention(rng, 2, 5, 7, 2, 3, 4);
  checkAttention(rng, 1, 9, 3, 3, 4, 2);
}

TEST(GradAttention, ManyQueries) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  checkAttention(rng, 1, 70, 20, 2, 4, 3);
}

TEST(GradAttention, OnlySomeGradientsAndDeterminism) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t b = 2, l = 6, h = 2, d = 4;
  Buffer q = normalBuffer(rng, b * l, h * d), k = normalBuffer(rng, b * l, h * d);
  Buffer v = normalBuffer(rng, b * l, h * d), dOut = normalBuffer(rng, b * l, h * d);
  std::vector<float> work(static_cast<size_t>(b * h * l * l));
  Buffer dV1 = poisonedBuffer(b * l, h * d), dV2 = poisonedBuffer(b * l, h * d);
  attentionBackward(q.cmat(), k.cmat(), v.cmat(), b, l, l, h, 0.5f, dOut.cmat(), Mat{}, Mat{},
                    dV1.mat(), work.data());
  attentionBackward(q.cmat(), k.cmat(), v.cmat(), b, l, l, h, 0.5f, dOut.cmat(), Mat{}, Mat{},
                    dV2.mat(), work.data());
  EXPECT_TRUE(sameBits(dV1.data, dV2.data));
  auto f = [&] {
    Buffer out(b * l, h * d);
    attention(q.cmat(), k.cmat(), v.cmat(), b, l, l, h, 0.5f, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dV", operand(v), gradOf(dV1), f);
}

} // namespace
} // namespace diffrt::cpu::testing
