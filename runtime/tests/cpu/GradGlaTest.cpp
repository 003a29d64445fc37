//===- GradGlaTest.cpp - tests of the gated linear attention backward -----===//
//
// glaBackward against central differences of the chunked forward gla():
// sequence lengths that are not a multiple of the chunk (and a chunk longer
// than the sequence), weak (normaliser 16, DiG's) and strong (normaliser 1)
// decay, several heads and samples, strided views of packed projections.
// The gate-logit gradient is checked with the others.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

void checkGla(Rng &rng, int64_t batch, int64_t t, int64_t heads, int64_t dk, int64_t dv,
              int64_t chunk, float normalizer) {
  SCOPED_TRACE("t " + std::to_string(t) + ", chunk " + std::to_string(chunk) + ", normalizer " +
               std::to_string(normalizer));
  float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  int64_t rows = batch * t;
  // q, k and the gate logits side by side, as one fused projection.
  int64_t packedCols = 3 * heads * dk + 1;
  Buffer qkg = normalBuffer(rng, rows, packedCols);
  ConstMat q{qkg.data.data(), rows, heads * dk, packedCols};
  ConstMat k{qkg.data.data() + heads * dk, rows, heads * dk, packedCols};
  ConstMat g{qkg.data.data() + 2 * heads * dk, rows, heads * dk, packedCols};
  // Gate logits around +2: decays near 1 (before the normaliser) keep the
  // state from vanishing, so long-range terms matter to the gradient.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < heads * dk; ++c)
      qkg.at(r, 2 * heads * dk + c) += 1.0f;
  Buffer v = normalBuffer(rng, rows, heads * dv, heads * dv + 2);
  Buffer dOut = normalBuffer(rng, rows, heads * dv, heads * dv + 1);

  Buffer dQ = poisonedBuffer(rows, heads * dk, heads * dk + 1);
  Buffer dK = poisonedBuffer(rows, heads * dk);
  Buffer dV = poisonedBuffer(rows, heads * dv, heads * dv + 2);
  Buffer dG = poisonedBuffer(rows, heads * dk, heads * dk + 3);
  glaBackward(q, k, v.cmat(), g, batch, t, heads, scale, normalizer, chunk, dOut.cmat(), dQ.mat(),
              dK.mat(), dV.mat(), dG.mat());

  auto f = [&] {
    Buffer out(rows, heads * dv);
    gla(q, k, v.cmat(), g, batch, t, heads, scale, normalizer, chunk, out.mat());
    return dot(dOut, out);
  };
  auto slice = [&](int64_t col0) {
    return Operand{qkg.data.data() + col0, rows, heads * dk, packedCols};
  };
  expectDirectional(rng, "dQ", slice(0), gradOf(dQ), f);
  expectDirectional(rng, "dK", slice(heads * dk), gradOf(dK), f);
  expectDirectional(rng, "dV", operand(v), gradOf(dV), f);
  // The logits reach the output through logsigmoid(.)/normalizer, so a step
  // in them moves the output `normalizer` times less than one in q, k or v;
  // the step grows with the normaliser to stay clear of the rounding noise
  // (the function is as much smoother in them, so the truncation error of
  // the extrapolated difference stays negligible).
  double gateEps = kFdEps * std::max(1.0, static_cast<double>(normalizer) / 4.0);
  expectDirectional(rng, "dGateLogits", slice(2 * heads * dk), gradOf(dG), f, gateEps);
  expectPaddingIntact("dQ", dQ);
  expectPaddingIntact("dV", dV);
  expectPaddingIntact("dGateLogits", dG);
}

TEST(GradGla, ChunkNotDividingLength) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  checkGla(rng, 2, 11, 2, 3, 4, 4, 16.0f);
  checkGla(rng, 1, 13, 3, 2, 3, 5, 1.0f);
}

TEST(GradGla, ChunkLongerThanSequenceAndSingleStep) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  checkGla(rng, 2, 6, 1, 4, 2, 16, 2.0f);
  checkGla(rng, 3, 1, 2, 2, 2, 4, 1.0f);
}

TEST(GradGla, GradientsOnlyWhereWanted) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t t = 9, d = 3;
  Buffer q = normalBuffer(rng, t, d), k = normalBuffer(rng, t, d), g = normalBuffer(rng, t, d);
  Buffer v = normalBuffer(rng, t, d), dOut = normalBuffer(rng, t, d);
  Buffer dG = poisonedBuffer(t, d);
  glaBackward(q.cmat(), k.cmat(), v.cmat(), g.cmat(), 1, t, 1, 0.7f, 1.0f, 4, dOut.cmat(), Mat{},
              Mat{}, Mat{}, dG.mat());
  auto f = [&] {
    Buffer out(t, d);
    gla(q.cmat(), k.cmat(), v.cmat(), g.cmat(), 1, t, 1, 0.7f, 1.0f, 4, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dGateLogits", operand(g), gradOf(dG), f);
}

} // namespace
} // namespace diffrt::cpu::testing
