//===- GlaTest.cpp - tests of gated linear attention ----------------------===//
//
// The chunk-parallel gla and the step-by-step glaRecurrent against a double
// recurrence (spec 5.2), and against each other: sequence lengths that are
// not a multiple of the chunk, DiG's t = 256 with chunk 16, chunks longer
// than the sequence, and decays strong enough that forming exp(-b_i) alone
// would overflow float32.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

namespace diffrt::cpu::testing {
namespace {

/// S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t, o_t = scale · q_t S_t, in double.
Ref glaReference(ConstMat q, ConstMat k, ConstMat v, ConstMat gl, int64_t batch, int64_t t,
                 int64_t heads, double scale, double normalizer) {
  int64_t dk = q.cols / heads, dv = v.cols / heads;
  Ref out(batch * t, heads * dv);
  std::vector<double> s(static_cast<size_t>(dk * dv));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      std::fill(s.begin(), s.end(), 0.0);
      for (int64_t step = 0; step < t; ++step) {
        int64_t row = b * t + step;
        for (int64_t c = 0; c < dk; ++c) {
          double x = gl.row(row)[h * dk + c];
          double logSig = std::min(x, 0.0) - std::log1p(std::exp(-std::fabs(x)));
          double alpha = std::exp(logSig / normalizer);
          for (int64_t e = 0; e < dv; ++e)
            s[c * dv + e] = alpha * s[c * dv + e] + double(k.row(row)[h * dk + c]) * v.row(row)[h * dv + e];
        }
        for (int64_t e = 0; e < dv; ++e) {
          double acc = 0.0;
          for (int64_t c = 0; c < dk; ++c)
            acc += double(q.row(row)[h * dk + c]) * s[c * dv + e];
          out(row, h * dv + e) = scale * acc;
        }
      }
    }
  return out;
}

struct GlaCase {
  int64_t batch, t, heads, dk, dv, chunk;
  double gateMean, gateStd, normalizer;
};

void runGla(Rng &rng, const GlaCase &gc) {
  SCOPED_TRACE(::testing::Message() << "batch " << gc.batch << " t " << gc.t << " heads "
                                    << gc.heads << " dk " << gc.dk << " dv " << gc.dv
                                    << " chunk " << gc.chunk << " gate mean " << gc.gateMean
                                    << " normalizer " << gc.normalizer);
  int64_t rows = gc.batch * gc.t, kw = gc.heads * gc.dk, vw = gc.heads * gc.dv;
  // q, k, v and the gate logits as column slices of one packed projection.
  Buffer packed(rows, 3 * kw + vw, 3 * kw + vw + 2);
  packed.fillNormal(rng);
  std::vector<float> gates = rng.normal(rows * kw, gc.gateStd, gc.gateMean);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < kw; ++c)
      packed.at(r, 2 * kw + vw + c) = gates[static_cast<size_t>(r * kw + c)];
  float *base = packed.data.data();
  ConstMat q{base, rows, kw, packed.ld}, k{base + kw, rows, kw, packed.ld};
  ConstMat v{base + 2 * kw, rows, vw, packed.ld}, gl{base + 2 * kw + vw, rows, kw, packed.ld};
  float scale = 1.0f / std::sqrt(float(gc.dk));
  Ref ref = glaReference(q, k, v, gl, gc.batch, gc.t, gc.heads, scale, float(gc.normalizer));

  Buffer chunked = poisonedBuffer(rows, vw, vw + 1);
  gla(q, k, v, gl, gc.batch, gc.t, gc.heads, scale, float(gc.normalizer), gc.chunk,
      chunked.mat());
  {
    SCOPED_TRACE("chunked vs double reference");
    expectMatches(chunked, ref);
  }
  Buffer recurrent = poisonedBuffer(rows, vw);
  glaRecurrent(q, k, v, gl, gc.batch, gc.t, gc.heads, scale, float(gc.normalizer),
               recurrent.mat());
  {
    SCOPED_TRACE("recurrent vs double reference");
    expectMatches(recurrent, ref);
  }
  {
    SCOPED_TRACE("chunked vs recurrent");
    expectMatches(chunked, toRef(recurrent));
  }
}

TEST(CpuGla, SequenceNotAMultipleOfTheChunk) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  runGla(rng, {2, 45, 2, 32, 64, 16, 0.0, 2.0, 16.0});
  runGla(rng, {1, rng.integer(17, 100), 3, rng.integer(1, 20), rng.integer(1, 40),
               rng.integer(2, 16), 0.0, 2.0, 16.0});
}

TEST(CpuGla, DigShapeT256Chunk16) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  runGla(rng, {2, 256, 2, 32, 64, 16, 0.0, 2.0, 16.0});
}

TEST(CpuGla, ChunkLongerThanTheSequenceAndChunkOfOne) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  runGla(rng, {2, 20, 2, 8, 12, 64, 0.0, 2.0, 16.0});
  runGla(rng, {1, 33, 1, 8, 12, 1, 0.0, 2.0, 16.0});
}

TEST(CpuGla, StrongDecaysStayFinite) {
  // logsigmoid(-60) = -60 per step with normalizer 1: the cumulative decay
  // of a 16-token chunk reaches -960, so exp(-b_i) would be 1e417 (inf in
  // float32) while every relative decay exp(b_j - b_i) lies in (0, 1].
  Rng rng;
  SCOPED_TRACE(rng.trace());
  runGla(rng, {1, 64, 2, 16, 16, 16, -60.0, 5.0, 1.0});
  // Mixed: some channels decay hard, most barely.
  runGla(rng, {1, 80, 2, 16, 16, 16, 0.0, 30.0, 1.0});
}

TEST(CpuGla, RejectsANonPositiveNormalizer) {
  Buffer q(4, 8), v(4, 8), out(4, 8);
  EXPECT_DIFFRT_ERROR(gla(q.cmat(), q.cmat(), v.cmat(), q.cmat(), 1, 4, 2, 1.0f, 0.0f, 16,
                          out.mat()),
                      "gla", "normalizer");
}

} // namespace
} // namespace diffrt::cpu::testing
