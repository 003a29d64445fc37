//===- EmbedTest.cpp - tests of the positional/timestep/label embeddings --===//
//
// The sin-cos table against spec 1.1's formula (including MicroDiT's
// interpolation scale 2, whose positions are 0, 0.5, 1, ...), the timestep
// embedding against spec 1.2 (float32 frequencies and arguments as the
// references compute them, odd widths, fractional and negative t), and the
// label lookup with its null class and range check.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

namespace diffrt::cpu::testing {
namespace {

Ref sincosReference(int64_t h, int64_t w, int64_t d, double interpScale) {
  Ref ref(h * w, d);
  int64_t d4 = d / 4;
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c)
      for (int64_t k = 0; k < d4; ++k) {
        double omega = std::pow(10000.0, -double(k) / double(d4));
        double cp = double(c) / interpScale, rp = double(r) / interpScale;
        ref(r * w + c, k) = std::sin(cp * omega);
        ref(r * w + c, d4 + k) = std::cos(cp * omega);
        ref(r * w + c, 2 * d4 + k) = std::sin(rp * omega);
        ref(r * w + c, 3 * d4 + k) = std::cos(rp * omega);
      }
  return ref;
}

TEST(CpuSincosPosEmbed, MatchesTheSpecFormula) {
  for (double interp : {1.0, 2.0})
    for (auto [h, w, d] : {std::tuple<int64_t, int64_t, int64_t>{16, 16, 384}, {3, 5, 12}}) {
      SCOPED_TRACE(::testing::Message() << "grid " << h << " x " << w << " d " << d
                                        << " interp " << interp);
      std::vector<float> out = poisoned(h * w * d);
      sincosPosEmbed(h, w, d, interp, out.data());
      // Computed in double and rounded once to float32: half an ulp.
      expectMatches(out, sincosReference(h, w, d, interp), 1e-7);
    }
}

TEST(CpuSincosPosEmbed, InterpolationScaleTwoUsesHalfPositions) {
  int64_t h = 3, w = 5, d = 8;
  std::vector<float> out = poisoned(h * w * d);
  sincosPosEmbed(h, w, d, 2.0, out.data());
  // Token (0, 1) sits at column position 0.5 and row position 0; ω_0 = 1.
  EXPECT_EQ(out[1 * d + 0], float(std::sin(0.5)));
  EXPECT_EQ(out[1 * d + 2], float(std::cos(0.5)));
  EXPECT_EQ(out[1 * d + 4], 0.0f);
  EXPECT_EQ(out[1 * d + 6], 1.0f);
  // Token (1, 0): row position 0.5, the column half is that of position 0.
  EXPECT_EQ(out[w * d + 4], float(std::sin(0.5)));
  EXPECT_EQ(out[w * d + 6], float(std::cos(0.5)));
  EXPECT_EQ(out[w * d + 0], 0.0f);
  // ω_1 = 10000^(-1/2) = 0.01 at the last column position 4 / 2 = 2.
  EXPECT_EQ(out[4 * d + 1], float(std::sin(2.0 * 0.01)));
}

TEST(CpuTimestepEmbed, MatchesTheSpecFormula) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t dim : {256, 257, 2, 3, 512})
    for (auto [lo, hi] : {std::pair<double, double>{0.0, 1000.0}, {-3.0, 3.0}}) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << " t in [" << lo << ", " << hi << ")");
      int64_t batch = rng.integer(1, 8), half = dim / 2;
      std::vector<float> t = rng.uniform(batch, lo, hi);
      // Spec 1.2: frequencies and arguments in float32 as torch computes
      // them, each step rounded; only the final cos/sin is taken in double.
      Ref ref(batch, dim), exact(batch, dim);
      float negLog = float(-std::log(10000.0));
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t k = 0; k < half; ++k) {
          float freq = std::exp(negLog * float(k) / float(half));
          float arg = t[b] * freq;
          ref(b, k) = std::cos(double(arg));
          ref(b, half + k) = std::sin(double(arg));
          double argExact = double(t[b]) * std::exp(-std::log(10000.0) * double(k) / double(half));
          exact(b, k) = std::cos(argExact);
          exact(b, half + k) = std::sin(argExact);
        }
      std::vector<float> out = poisoned(batch * dim);
      timestepEmbed(t.data(), batch, dim, 10000.0, out.data());
      expectMatches(out, ref, 1e-6);
      // Against the formula in exact arithmetic: float32 arguments up to
      // 1000 carry an absolute rounding error of up to 6e-5 radians, which
      // is what the references do too.
      expectMatches(out, exact, 2e-4);
      if (dim % 2 != 0) {
        for (int64_t b = 0; b < batch; ++b)
          EXPECT_EQ(out[b * dim + dim - 1], 0.0f) << "padding column of sample " << b;
      }
    }
}

TEST(CpuLabelEmbed, LooksUpRowsIncludingTheNullClass) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t numClasses = 10, d = 33, batch = 6;
  std::vector<float> table = rng.normal((numClasses + 1) * d);
  std::vector<int32_t> labels = {3, 10, 0, 7, 10, 9};
  std::vector<float> out = poisoned(batch * d);
  labelEmbed(labels.data(), batch, table.data(), numClasses, d, out.data());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < d; ++j)
      EXPECT_EQ(out[b * d + j], table[labels[b] * d + j]) << "sample " << b << " column " << j;
}

TEST(CpuLabelEmbed, RejectsLabelsOutsideTheTable) {
  std::vector<float> table(11 * 4, 1.0f), out(3 * 4);
  std::vector<int32_t> labels = {3, 11, 0};
  EXPECT_DIFFRT_ERROR(labelEmbed(labels.data(), 3, table.data(), 10, 4, out.data()),
                      "labelEmbed", "sample 1", "label 11", "[0, 10]");
  labels = {-1, 2, 0};
  EXPECT_DIFFRT_ERROR(labelEmbed(labels.data(), 3, table.data(), 10, 4, out.data()),
                      "labelEmbed", "sample 0", "label -1");
}

} // namespace
} // namespace diffrt::cpu::testing
