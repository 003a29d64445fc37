//===- RngTest.cpp - Philox4x32-10 and the derived streams ----------------===//
//
// Random123's published known-answer vectors pin the bijection; the
// documented block-consumption rules are checked against philox4x32_10
// directly (a GPU kernel will rely on them); the distributions get
// statistical sanity checks with bounds several standard errors wide.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Rng.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using namespace diffrt;

TEST(Philox, Random123KnownAnswers) {
  using A4 = std::array<uint32_t, 4>;
  using A2 = std::array<uint32_t, 2>;
  EXPECT_EQ(philox4x32_10(A4{0, 0, 0, 0}, A2{0, 0}),
            (A4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10(A4{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          A2{0xffffffffu, 0xffffffffu}),
            (A4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10(A4{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          A2{0xa4093822u, 0x299f31d0u}),
            (A4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Philox, WordsFollowTheCounterLayout) {
  uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull;
  Philox rng(seed, stream);
  std::array<uint32_t, 2> key = {uint32_t(seed), uint32_t(seed >> 32)};
  for (uint64_t block = 0; block < 3; ++block) {
    std::array<uint32_t, 4> expected = philox4x32_10(
        {uint32_t(block), uint32_t(block >> 32), uint32_t(stream), uint32_t(stream >> 32)}, key);
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(rng.nextU32(), expected[size_t(i)]) << "block " << block << " word " << i;
  }
  EXPECT_EQ(rng.blockIndex(), 3u);
}

TEST(Philox, UniformAndNormalFollowTheDocumentedTransforms) {
  Philox rng(99, 5);
  std::array<uint32_t, 4> block0 = philox4x32_10({0, 0, 5, 0}, {99, 0});
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(rng.uniform(), float(2 * (block0[size_t(i)] >> 9) + 1) / 16777216.0f);

  // The next block (index 1) feeds the first Box-Muller pair.
  std::array<uint32_t, 4> block1 = philox4x32_10({1, 0, 5, 0}, {99, 0});
  uint64_t a = (uint64_t(block1[1]) << 32) | block1[0];
  uint64_t b = (uint64_t(block1[3]) << 32) | block1[2];
  double u = (2.0 * double(a >> 12) + 1.0) / 9007199254740992.0;
  double v = (2.0 * double(b >> 12) + 1.0) / 9007199254740992.0;
  double r = std::sqrt(-2.0 * std::log(u));
  double theta = 2.0 * 3.14159265358979323846 * v;
  EXPECT_DOUBLE_EQ(rng.normal64(), r * std::cos(theta));
  EXPECT_EQ(rng.normal(), float(r * std::sin(theta)));
  EXPECT_EQ(rng.blockIndex(), 2u);
}

TEST(Philox, UniformStaysInsideTheOpenInterval) {
  Philox rng(1);
  double sum = 0, sumSq = 0;
  const int n = 1000000;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    float x = rng.uniform();
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    sum += x;
    sumSq += double(x) * x;
  }
  EXPECT_GT(lo, 0.0f);
  EXPECT_LT(hi, 1.0f);
  double mean = sum / n, var = sumSq / n - mean * mean;
  // Standard errors: 0.00029 for the mean, 0.000075 for the variance.
  EXPECT_NEAR(mean, 0.5, 0.0015);
  EXPECT_NEAR(var, 1.0 / 12.0, 0.0005);
}

TEST(Philox, NormalsHaveUnitMomentsAndGaussianShape) {
  Philox rng(2024);
  const int n = 1000000;
  std::vector<float> z(n);
  rng.fillNormal(z.data(), n);
  double sum = 0, sumSq = 0, sum4 = 0;
  int withinOne = 0;
  for (float x : z) {
    sum += x;
    sumSq += double(x) * x;
    sum4 += double(x) * x * x * x;
    withinOne += std::fabs(x) < 1.0f;
  }
  double mean = sum / n, var = sumSq / n - mean * mean;
  // Standard errors: 0.001 for the mean, 0.0014 for the variance, 0.0098
  // for the kurtosis estimate (fourth moment 3), 0.00047 for P(|z| < 1).
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(var, 1.0, 0.007);
  EXPECT_NEAR(sum4 / n, 3.0, 0.05);
  EXPECT_NEAR(double(withinOne) / n, 0.682689492, 0.0025);
}

TEST(Philox, EqualSeedsRepeatAndStreamsDiffer) {
  std::vector<float> a(4096), b(4096), c(4096), d(4096);
  Philox(7).fillNormal(a.data(), 4096);
  Philox(7).fillNormal(b.data(), 4096);
  Philox(7, 1).fillNormal(c.data(), 4096);
  Philox(8).fillNormal(d.data(), 4096);
  EXPECT_EQ(a, b);
  int sameStream = 0, sameSeed = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sameStream += a[i] == c[i];
    sameSeed += a[i] == d[i];
  }
  EXPECT_EQ(sameStream, 0);
  EXPECT_EQ(sameSeed, 0);
}

TEST(Philox, ParallelFillsMatchSingleDraws) {
  // Fills large enough to be split over threads, starting with and without
  // a pending normal, equal the sequential single draws value for value.
  Philox one(23), many(23);
  std::vector<float> first(100001), second(65536);
  many.fillNormal(first.data(), 100001);
  many.fillNormal(second.data(), 65536);
  for (size_t i = 0; i < first.size(); ++i)
    ASSERT_EQ(one.normal(), first[i]) << "element " << i;
  for (size_t i = 0; i < second.size(); ++i)
    ASSERT_EQ(one.normal(), second[i]) << "element " << i << " of the second fill";
  EXPECT_EQ(one.blockIndex(), many.blockIndex());
  EXPECT_EQ(one.normal(), many.normal());
}

TEST(Philox, FillsMatchSingleDraws) {
  Philox one(11), many(11);
  std::vector<float> filled(9);
  many.fillNormal(filled.data(), 9); // odd count leaves a pending normal
  for (float x : filled)
    EXPECT_EQ(one.normal(), x);
  EXPECT_EQ(one.normal(), many.normal());
  std::vector<float> uniforms(6);
  many.fillUniform(uniforms.data(), 6);
  for (float x : uniforms)
    EXPECT_EQ(one.uniform(), x);
}

TEST(Philox, SkippedNormalsLeaveTheStateAFillLeaves) {
  // Even and odd counts, from a fresh generator and from one holding a
  // pending normal: what is drawn afterwards (words, uniforms, normals)
  // is the same as after the fill.
  for (int64_t count : {0, 1, 2, 7, 4096, 100001}) {
    for (bool pending : {false, true}) {
      SCOPED_TRACE("count " + std::to_string(count) + (pending ? ", pending normal" : ""));
      Philox filled(5, 3), skipped(5, 3);
      if (pending) {
        filled.normal();
        skipped.normal();
      }
      std::vector<float> values(static_cast<size_t>(count));
      filled.fillNormal(values.data(), count);
      skipped.skipNormals(count);
      EXPECT_EQ(filled.blockIndex(), skipped.blockIndex());
      EXPECT_EQ(filled.normal(), skipped.normal());
      EXPECT_EQ(filled.nextU32(), skipped.nextU32());
      EXPECT_EQ(filled.uniform(), skipped.uniform());
      EXPECT_EQ(filled.normal64(), skipped.normal64());
    }
  }
}
