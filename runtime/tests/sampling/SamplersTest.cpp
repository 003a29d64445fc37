//===- SamplersTest.cpp - schedules, steps and sampling loops -------------===//
//
// Expected values come from code written here from the formulas (not from
// the library), from literal numbers produced by DiT's own algorithms, or
// from oracle models that know the clean sample, so that each test can
// fail when the implementation deviates from the specification.
//
//===----------------------------------------------------------------------===//

#include "../TestSupport.h"
#include "diffrt/Error.h"
#include "diffrt/Samplers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <random>

using namespace diffrt;
using namespace diffrt::testsupport;

namespace {

/// The linear schedule written directly from its definition.
std::vector<double> referenceBetas() {
  std::vector<double> betas(1000);
  for (int t = 0; t < 1000; ++t)
    betas[size_t(t)] = 0.0001 + (0.02 - 0.0001) * t / 999.0;
  return betas;
}

std::vector<double> referenceAlphaBar() {
  std::vector<double> betas = referenceBetas(), abar(1000);
  double product = 1.0;
  for (int t = 0; t < 1000; ++t) {
    product *= 1.0 - betas[size_t(t)];
    abar[size_t(t)] = product;
  }
  return abar;
}

std::vector<float> randomVector(size_t n, unsigned seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float &x : v)
    x = dist(gen);
  return v;
}

void expectRelNear(double actual, double expected, double rel, const std::string &what) {
  EXPECT_NEAR(actual, expected, rel * std::fabs(expected)) << what;
}

} // namespace

//===----------------------------------------------------------------------===//
// Respacing
//===----------------------------------------------------------------------===//

TEST(Respacing, Uniform250FollowsTheFormula) {
  std::vector<int64_t> kept = GaussianDiffusion::spacedTimesteps(1000, "250");
  ASSERT_EQ(kept.size(), 250u);
  for (int64_t k = 0; k < 250; ++k) {
    // round(k * 999 / 249); k * 999 / 249 is never a half-integer (249 is
    // odd), so integer round-half-up is exact here.
    int64_t expected = (2 * k * 999 + 249) / (2 * 249);
    EXPECT_EQ(kept[size_t(k)], expected) << "k = " << k;
  }
  EXPECT_EQ(kept.front(), 0);
  EXPECT_EQ(kept.back(), 999);
  EXPECT_EQ(kept[1], 4);
  EXPECT_EQ(kept[2], 8);
}

TEST(Respacing, Ddim50IsStride20) {
  std::vector<int64_t> kept = GaussianDiffusion::spacedTimesteps(1000, "ddim50");
  ASSERT_EQ(kept.size(), 50u);
  for (size_t i = 0; i < 50; ++i)
    EXPECT_EQ(kept[i], int64_t(20 * i));
  // ceil(1000 / 34) = 30 is the first stride reaching 30 steps.
  std::vector<int64_t> thirty = GaussianDiffusion::spacedTimesteps(1000, "ddim30");
  ASSERT_EQ(thirty.size(), 30u);
  EXPECT_EQ(thirty[1], 34);
}

TEST(Respacing, SectionsMatchDiT) {
  // Literal outputs of DiT's space_timesteps; "7" and "3,4" exercise its
  // round-half-to-even (166.5 -> 166, 249.5 -> 250, 832.5 -> 832), and
  // "10,15,20" its accumulated fractional stride (section 1 takes 149, not
  // 150, where the exact product is 49.5).
  EXPECT_EQ(GaussianDiffusion::spacedTimesteps(1000, "7"),
            (std::vector<int64_t>{0, 166, 333, 500, 666, 832, 999}));
  EXPECT_EQ(GaussianDiffusion::spacedTimesteps(1000, "3,4"),
            (std::vector<int64_t>{0, 250, 499, 500, 666, 833, 999}));
  EXPECT_EQ(GaussianDiffusion::spacedTimesteps(300, "10,15,20"),
            (std::vector<int64_t>{0,   11,  22,  33,  44,  55,  66,  77,  88,  99,  100, 107,
                                  114, 121, 128, 135, 142, 149, 157, 164, 171, 178, 185, 192,
                                  199, 200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252,
                                  257, 263, 268, 273, 278, 283, 289, 294, 299}));
  std::vector<int64_t> all = GaussianDiffusion::spacedTimesteps(1000, "1000");
  ASSERT_EQ(all.size(), 1000u);
  EXPECT_EQ(all[537], 537);
}

TEST(Respacing, InvalidSpecsAreNamed) {
  for (const char *spec : {"", "abc", "0", "1001", "10,", ",10", "5,x", "-5", "ddim", "ddim0",
                           "ddimx", "ddim300"})
    expectError([&] { GaussianDiffusion::spacedTimesteps(1000, spec); },
                {std::string("'") + spec + "'"});
  expectError([&] { GaussianDiffusion::spacedTimesteps(1000, "ddim300"); },
              {"no integer stride", "300"});
  expectError([&] { GaussianDiffusion::spacedTimesteps(1000, "1001"); },
              {"1001 steps", "1000 timesteps"});
}

//===----------------------------------------------------------------------===//
// Schedules
//===----------------------------------------------------------------------===//

TEST(GaussianDiffusion, LinearScheduleMatchesTheFormulas) {
  GaussianDiffusion d(1000);
  ASSERT_EQ(d.numTimesteps(), 1000);
  std::vector<double> betas = referenceBetas(), abar = referenceAlphaBar();
  for (int t : {0, 1, 2, 250, 499, 500, 998, 999}) {
    size_t u = size_t(t);
    std::string at = "t = " + std::to_string(t);
    double prev = t == 0 ? 1.0 : abar[u - 1];
    expectRelNear(d.betas()[u], betas[u], 1e-14, at);
    expectRelNear(d.logBetas()[u], std::log(betas[u]), 1e-14, at);
    expectRelNear(d.alphasCumprod()[u], abar[u], 1e-12, at);
    expectRelNear(d.alphasCumprodPrev()[u], prev, 1e-12, at);
    expectRelNear(d.sqrtRecipAlphasCumprod()[u], 1.0 / std::sqrt(abar[u]), 1e-12, at);
    expectRelNear(d.sqrtRecipm1AlphasCumprod()[u], std::sqrt((1.0 - abar[u]) / abar[u]), 1e-11,
                  at);
    double posterior = betas[u] * (1.0 - prev) / (1.0 - abar[u]);
    if (t == 0)
      EXPECT_EQ(d.posteriorVariance()[0], 0.0);
    else
      expectRelNear(d.posteriorVariance()[u], posterior, 1e-11, at);
    expectRelNear(d.posteriorMeanCoef1()[u], betas[u] * std::sqrt(prev) / (1.0 - abar[u]), 1e-11,
                  at);
    expectRelNear(d.posteriorMeanCoef2()[u],
                  (1.0 - prev) * std::sqrt(1.0 - betas[u]) / (1.0 - abar[u]), 1e-11, at);
    EXPECT_EQ(d.timestepMap()[u], t);
  }
  double posterior1 = betas[1] * (1.0 - abar[0]) / (1.0 - abar[1]);
  expectRelNear(d.posteriorLogVarianceClipped()[0], std::log(posterior1), 1e-12, "clip t = 0");
  expectRelNear(d.posteriorLogVarianceClipped()[1], std::log(posterior1), 1e-12, "clip t = 1");
  // Float64 values printed by the reference (numpy linspace and cumprod).
  EXPECT_DOUBLE_EQ(d.betas()[1], 0.00011991991991991993);
  EXPECT_DOUBLE_EQ(d.betas()[999], 0.02);
  EXPECT_DOUBLE_EQ(d.alphasCumprod()[499], 0.07858724288177824);
  EXPECT_DOUBLE_EQ(d.alphasCumprod()[999], 4.035829765375676e-05);
  EXPECT_DOUBLE_EQ(d.posteriorVariance()[1], 5.4531876613021935e-05);
  EXPECT_DOUBLE_EQ(d.posteriorLogVarianceClipped()[0], -9.81672513529567);
}

TEST(GaussianDiffusion, RespacedBetasAndMap) {
  GaussianDiffusion base(1000);
  std::vector<int64_t> kept = GaussianDiffusion::spacedTimesteps(1000, "250");
  GaussianDiffusion r = base.respaced(kept);
  ASSERT_EQ(r.numTimesteps(), 250);
  EXPECT_EQ(r.timestepMap(), kept);
  std::vector<double> abar = referenceAlphaBar();
  for (size_t i = 0; i < kept.size(); ++i) {
    double prev = i == 0 ? 1.0 : base.alphasCumprod()[size_t(kept[i - 1])];
    EXPECT_DOUBLE_EQ(r.betas()[i], 1.0 - base.alphasCumprod()[size_t(kept[i])] / prev) << i;
    expectRelNear(r.alphasCumprod()[i], abar[size_t(kept[i])], 1e-11, "i = " + std::to_string(i));
  }
  // Respacing a respaced process composes the maps.
  GaussianDiffusion rr = r.respaced({0, 10, 249});
  EXPECT_EQ(rr.timestepMap(), (std::vector<int64_t>{0, kept[10], 999}));
  expectRelNear(rr.alphasCumprod()[1], abar[size_t(kept[10])], 1e-11, "composed");

  expectError([&] { base.respaced({0, 5, 5}); }, {"kept[2] = 5", "strictly increasing"});
  expectError([&] { base.respaced({0, 1000}); }, {"kept[1] = 1000", "0 .. 999"});
  expectError([&] { base.respaced({3}); }, {"1 kept"});
  expectError([&] { GaussianDiffusion(10); }, {"10 timesteps", "beta"});
  expectError([&] { GaussianDiffusion({0.1, 1.5}, {0, 1}); }, {"beta[1] = 1.5"});
}

//===----------------------------------------------------------------------===//
// Single steps
//===----------------------------------------------------------------------===//

namespace {

/// One ancestral DDPM step of the respaced process, written in float64 from
/// the formulas of the specification (section 2.7).
std::vector<double> referenceDdpmStep(const std::vector<int64_t> &kept, int64_t t, int64_t n,
                                      int64_t c, int64_t hw, const std::vector<float> &x,
                                      const std::vector<float> &out, bool learnedSigma,
                                      const std::vector<float> &noise) {
  std::vector<double> abar = referenceAlphaBar();
  auto abarAt = [&](int64_t i) { return i < 0 ? 1.0 : abar[size_t(kept[size_t(i)])]; };
  auto betaAt = [&](int64_t i) { return 1.0 - abarAt(i) / abarAt(i - 1); };
  auto posteriorAt = [&](int64_t i) {
    return betaAt(i) * (1.0 - abarAt(i - 1)) / (1.0 - abarAt(i));
  };
  double ab = abarAt(t), abPrev = abarAt(t - 1), beta = betaAt(t);
  double clippedLog = std::log(t == 0 ? posteriorAt(1) : posteriorAt(t));
  double fixedLog = t == 0 ? std::log(posteriorAt(1)) : std::log(beta);
  std::vector<double> result(size_t(n * c * hw));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < hw; ++k) {
        double xt = x[size_t((i * c + ch) * hw + k)];
        int64_t cOut = learnedSigma ? 2 * c : c;
        double eps = out[size_t((i * cOut + ch) * hw + k)];
        double x0 = xt / std::sqrt(ab) - std::sqrt(1.0 / ab - 1.0) * eps;
        double mean = beta * std::sqrt(abPrev) / (1.0 - ab) * x0 +
                      (1.0 - abPrev) * std::sqrt(1.0 - beta) / (1.0 - ab) * xt;
        double logVar = fixedLog;
        if (learnedSigma) {
          double frac = (out[size_t((i * cOut + c + ch) * hw + k)] + 1.0) / 2.0;
          logVar = frac * std::log(beta) + (1.0 - frac) * clippedLog;
        }
        double z = t == 0 ? 0.0 : noise[size_t((i * c + ch) * hw + k)];
        result[size_t((i * c + ch) * hw + k)] = mean + std::exp(0.5 * logVar) * z;
      }
  return result;
}

} // namespace

TEST(GaussianDiffusion, DdpmStepMatchesIndependentImplementation) {
  std::vector<int64_t> kept = GaussianDiffusion::spacedTimesteps(1000, "250");
  GaussianDiffusion r = GaussianDiffusion(1000).respaced(kept);
  const int64_t n = 2, c = 3, hw = 5;
  std::vector<float> x = randomVector(size_t(n * c * hw), 1, -2.0f, 2.0f);
  std::vector<float> out = randomVector(size_t(n * 2 * c * hw), 2, -1.0f, 1.0f);
  std::vector<float> noise = randomVector(size_t(n * c * hw), 3, -2.0f, 2.0f);
  for (int64_t t : {int64_t(0), int64_t(1), int64_t(100), int64_t(249)}) {
    for (bool learned : {true, false}) {
      std::vector<float> modelOut = out;
      if (!learned)
        modelOut.resize(size_t(n * c * hw));
      std::vector<float> xPrev(x.size());
      r.ddpmStep(t, n, c, hw, x.data(), modelOut.data(), learned ? 2 * c : c, learned,
                 t == 0 ? nullptr : noise.data(), xPrev.data());
      std::vector<double> expected = referenceDdpmStep(kept, t, n, c, hw, x, modelOut, learned, noise);
      for (size_t k = 0; k < xPrev.size(); ++k)
        EXPECT_NEAR(xPrev[k], expected[k], 3e-5 * (1.0 + std::fabs(expected[k])))
            << "t = " << t << (learned ? " learned" : " fixed") << " element " << k;
    }
  }
  // In place: xPrev may alias x.
  std::vector<float> inPlace = x, separate(x.size());
  r.ddpmStep(100, n, c, hw, x.data(), out.data(), 2 * c, true, noise.data(), separate.data());
  r.ddpmStep(100, n, c, hw, inPlace.data(), out.data(), 2 * c, true, noise.data(),
             inPlace.data());
  EXPECT_EQ(inPlace, separate);

  std::vector<float> scratch(x.size());
  expectError([&] { r.ddpmStep(5, n, c, hw, x.data(), out.data(), 2 * c, true, nullptr,
                               scratch.data()); },
              {"t = 5", "noise"});
  expectError([&] { r.ddpmStep(250, n, c, hw, x.data(), out.data(), 2 * c, true, noise.data(),
                               scratch.data()); },
              {"t = 250"});
  expectError([&] { r.ddpmStep(5, n, c, hw, x.data(), out.data(), c, true, noise.data(),
                               scratch.data()); },
              {"3 channels", "need 6"});
}

TEST(GaussianDiffusion, DdimStepMatchesTheFormula) {
  GaussianDiffusion r = GaussianDiffusion(1000).respaced(
      GaussianDiffusion::spacedTimesteps(1000, "ddim50"));
  std::vector<double> abar = referenceAlphaBar();
  const int64_t n = 1, c = 2, hw = 3;
  std::vector<float> x = randomVector(6, 4, -2.0f, 2.0f);
  std::vector<float> eps = randomVector(6, 5, -2.0f, 2.0f);
  std::vector<float> noise = randomVector(6, 6, -2.0f, 2.0f);
  for (double eta : {0.0, 0.5, 1.0}) {
    int64_t t = 20; // original index 400, previous 380
    double ab = abar[400], abPrev = abar[380];
    double sigma = eta * std::sqrt((1 - abPrev) / (1 - ab)) * std::sqrt(1 - ab / abPrev);
    std::vector<float> xPrev(6);
    r.ddimStep(t, n, c, hw, x.data(), eps.data(), c, eta, noise.data(), xPrev.data());
    for (size_t k = 0; k < 6; ++k) {
      double x0 = (x[k] - std::sqrt(1 - ab) * eps[k]) / std::sqrt(ab);
      double expected = std::sqrt(abPrev) * x0 + std::sqrt(1 - abPrev - sigma * sigma) * eps[k] +
                        sigma * noise[k];
      EXPECT_NEAR(xPrev[k], expected, 3e-5 * (1 + std::fabs(expected))) << "eta " << eta;
    }
  }
}

//===----------------------------------------------------------------------===//
// Sampling loops with oracle models
//===----------------------------------------------------------------------===//

TEST(Samplers, DdimWithExactEpsilonRecoversX0) {
  const int64_t n = 2, c = 3, h = 4, w = 4, size = n * c * h * w;
  std::vector<float> x0 = randomVector(size_t(size), 10, -1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(size));
  Philox(3).fillNormal(x.data(), size);
  std::vector<double> abar = referenceAlphaBar();
  std::vector<float> seen;
  ModelFn oracle = [&](const std::vector<float> &xIn, const std::vector<float> &tIn,
                       std::vector<float> &out) {
    EXPECT_EQ(tIn.size(), size_t(n));
    seen.push_back(tIn[0]);
    double ab = abar[size_t(tIn[0])];
    out.assign(size_t(2 * size), 7.0f); // the variance half must be ignored
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < c * h * w; ++k) {
        size_t at = size_t(i * c * h * w + k);
        out[size_t(i * 2 * c * h * w + k)] =
            float((xIn[at] - std::sqrt(ab) * x0[at]) / std::sqrt(1.0 - ab));
      }
  };
  SamplerConfig cfg = parseSampler("ddim:50");
  Philox rng(1);
  runSampler(cfg, n, c, h, w, x, oracle, rng);
  ASSERT_EQ(seen.size(), 50u);
  for (size_t i = 0; i < 50; ++i)
    EXPECT_EQ(seen[i], float(980 - 20 * int(i)));
  for (size_t k = 0; k < x.size(); ++k)
    EXPECT_NEAR(x[k], x0[k], 1e-6) << k;
  EXPECT_EQ(rng.blockIndex(), 0u); // eta = 0 draws no noise
}

TEST(Samplers, DdpmLoopMatchesManualSteps) {
  const int64_t n = 2, c = 2, h = 2, w = 3, size = n * c * h * w;
  std::vector<float> start(static_cast<size_t>(size));
  Philox(5).fillNormal(start.data(), size);
  auto model = [&](const std::vector<float> &xIn, const std::vector<float> &tIn,
                   std::vector<float> &out) {
    out.resize(size_t(2 * size));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < c * h * w; ++k) {
        float v = xIn[size_t(i * c * h * w + k)];
        out[size_t(i * 2 * c * h * w + k)] = 0.5f * v + tIn[size_t(i)] * 1e-4f;
        out[size_t(i * 2 * c * h * w + c * h * w + k)] = std::tanh(v);
      }
  };
  std::vector<float> x = start;
  std::vector<int64_t> seen;
  std::vector<std::pair<int64_t, int64_t>> progress;
  Philox rng(77);
  runSampler(parseSampler("ddpm:10"), n, c, h, w, x,
             [&](const std::vector<float> &xIn, const std::vector<float> &tIn,
                 std::vector<float> &out) {
               seen.push_back(int64_t(tIn[0]));
               model(xIn, tIn, out);
             },
             rng, [&](int64_t step, int64_t total) { progress.emplace_back(step, total); });

  std::vector<int64_t> kept = GaussianDiffusion::spacedTimesteps(1000, "10");
  GaussianDiffusion r = GaussianDiffusion(1000).respaced(kept);
  std::vector<float> manual = start, out, noise(static_cast<size_t>(size));
  Philox manualRng(77);
  for (int64_t t = 9; t >= 0; --t) {
    model(manual, std::vector<float>(size_t(n), float(kept[size_t(t)])), out);
    if (t > 0)
      manualRng.fillNormal(noise.data(), size);
    r.ddpmStep(t, n, c, h * w, manual.data(), out.data(), 2 * c, true,
               t > 0 ? noise.data() : nullptr, manual.data());
  }
  EXPECT_EQ(x, manual);
  EXPECT_EQ(seen, (std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  // Noise on every step but the last: 9 draws of 24 normals, 2 per block.
  EXPECT_EQ(rng.blockIndex(), uint64_t(9 * size / 2));
  ASSERT_EQ(progress.size(), 10u);
  EXPECT_EQ(progress.front(), std::make_pair(int64_t(1), int64_t(10)));
  EXPECT_EQ(progress.back(), std::make_pair(int64_t(10), int64_t(10)));
}

TEST(Samplers, RectifiedFlowWithOracleVelocityRecoversX0) {
  const int64_t n = 2, c = 4, h = 2, w = 2, size = n * c * h * w;
  std::vector<float> x0 = randomVector(size_t(size), 11, -1.0f, 1.0f);
  std::vector<float> eps(static_cast<size_t>(size));
  Philox(9).fillNormal(eps.data(), size);

  // Velocity eps - x0, evaluated from the current state: on the straight
  // path z_t = (1 - t) x0 + t eps it equals (z_t - x0) / t.
  std::vector<float> seenT;
  ModelFn pathOracle = [&](const std::vector<float> &xIn, const std::vector<float> &tIn,
                           std::vector<float> &out) {
    seenT.push_back(tIn[0]);
    out.assign(size_t(2 * size), 100.0f); // channels beyond C are ignored
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < c * h * w; ++k) {
        size_t at = size_t(i * c * h * w + k);
        out[size_t(i * 2 * c * h * w + k)] = float((double(xIn[at]) - x0[at]) / tIn[size_t(i)]);
      }
  };
  std::vector<float> x = eps;
  Philox rng(0);
  runSampler(parseSampler("rf:50"), n, c, h, w, x, pathOracle, rng);
  ASSERT_EQ(seenT.size(), 50u);
  EXPECT_EQ(seenT.front(), 1.0f);
  EXPECT_EQ(seenT[1], 0.98f);
  EXPECT_EQ(seenT.back(), 0.02f);
  for (size_t k = 0; k < x.size(); ++k)
    EXPECT_NEAR(x[k], x0[k], 1e-6) << k;

  // The constant velocity eps - x0 integrates to x0 up to 50 roundings.
  ModelFn constant = [&](const std::vector<float> &, const std::vector<float> &,
                         std::vector<float> &out) {
    out.resize(size_t(size));
    for (size_t k = 0; k < out.size(); ++k)
      out[k] = eps[k] - x0[k];
  };
  x = eps;
  runSampler(parseSampler("rf:50"), n, c, h, w, x, constant, rng);
  for (size_t k = 0; k < x.size(); ++k)
    EXPECT_NEAR(x[k], x0[k], 2e-5) << k;
  EXPECT_EQ(rng.blockIndex(), 0u);
}

TEST(Samplers, EdmSigmasFollowKarras) {
  SamplerConfig cfg = parseSampler("edm:30");
  std::vector<double> s = edmSigmas(cfg);
  ASSERT_EQ(s.size(), 31u);
  EXPECT_NEAR(s[0], 80.0, 1e-12);
  EXPECT_NEAR(s[29], 0.002, 1e-15);
  EXPECT_EQ(s[30], 0.0);
  for (size_t i = 1; i < 30; ++i)
    EXPECT_LT(s[i], s[i - 1]);
  double a = std::pow(80.0, 1.0 / 7.0), b = std::pow(0.002, 1.0 / 7.0);
  expectRelNear(s[13], std::pow(a + 13.0 / 29.0 * (b - a), 7.0), 1e-14, "sigma 13");
}

TEST(Samplers, EdmHeunWithOracleDenoiserReturnsX0) {
  for (int64_t steps : {int64_t(5), int64_t(30)}) {
    const int64_t n = 2, c = 4, h = 3, w = 2, size = n * c * h * w;
    const double sd = 0.9;
    std::vector<float> x0 = randomVector(size_t(size), 12, -1.5f, 1.5f);
    std::vector<float> z(static_cast<size_t>(size));
    Philox(4).fillNormal(z.data(), size);
    std::vector<double> sigmasSeen;
    std::vector<float> firstInput;
    // F such that D = c_skip x + c_out F = x0.
    ModelFn oracle = [&](const std::vector<float> &xIn, const std::vector<float> &tIn,
                         std::vector<float> &out) {
      double sigma = std::exp(4.0 * double(tIn[0]));
      sigmasSeen.push_back(sigma);
      if (firstInput.empty())
        firstInput = xIn;
      double cIn = 1.0 / std::sqrt(sigma * sigma + sd * sd);
      double cSkip = sd * sd / (sigma * sigma + sd * sd);
      double cOut = sigma * sd / std::sqrt(sigma * sigma + sd * sd);
      out.resize(xIn.size());
      for (size_t k = 0; k < xIn.size(); ++k) {
        double x = xIn[k] / cIn;
        out[k] = float((x0[k] - cSkip * x) / cOut);
      }
    };
    SamplerConfig cfg = parseSampler("edm:" + std::to_string(steps));
    std::vector<float> x = z;
    Philox rng(0);
    int64_t progressCalls = 0;
    runSampler(cfg, n, c, h, w, x, oracle, rng, [&](int64_t, int64_t total) {
      ++progressCalls;
      EXPECT_EQ(total, steps);
    });
    EXPECT_EQ(int64_t(sigmasSeen.size()), 2 * steps - 1);
    EXPECT_EQ(progressCalls, steps);
    for (size_t k = 0; k < x.size(); ++k)
      EXPECT_NEAR(x[k], x0[k], 1e-5) << "steps " << steps << " element " << k;

    // Call order t_0, t_1, t_1, t_2, t_2, ..., t_{N-1}, t_{N-1}.
    std::vector<double> s = edmSigmas(cfg);
    std::vector<double> expectedOrder = {s[0]};
    for (int64_t i = 1; i < steps; ++i) {
      expectedOrder.push_back(s[size_t(i)]);
      expectedOrder.push_back(s[size_t(i)]);
    }
    ASSERT_EQ(sigmasSeen.size(), expectedOrder.size());
    for (size_t i = 0; i < expectedOrder.size(); ++i)
      expectRelNear(sigmasSeen[i], expectedOrder[i], 2e-6, "call " + std::to_string(i));
    // The first input is c_in * z * sigma_max.
    for (size_t k = 0; k < firstInput.size(); ++k)
      expectRelNear(firstInput[k], z[k] * 80.0 / std::sqrt(6400.0 + 0.81), 1e-6,
                    "first input " + std::to_string(k));
  }
}

TEST(Samplers, ModelOutputSizeIsChecked) {
  std::vector<float> x(2 * 4 * 2 * 2, 0.5f);
  Philox rng(0);
  ModelFn tooSmall = [](const std::vector<float> &xIn, const std::vector<float> &,
                        std::vector<float> &out) { out.assign(xIn.size(), 0.0f); };
  expectError([&] { runSampler(parseSampler("ddpm:10"), 2, 4, 2, 2, x, tooSmall, rng); },
              {"ddpm:10", "32 floats", "2 x 8 x 2 x 2 = 64"});
  ModelFn oneChannel = [](const std::vector<float> &, const std::vector<float> &,
                          std::vector<float> &out) { out.assign(8, 0.0f); };
  expectError([&] { runSampler(parseSampler("rf:4"), 2, 4, 2, 2, x, oneChannel, rng); },
              {"rf:4", "8 floats", "C_out >= 4"});
  expectError([&] { runSampler(parseSampler("edm:4"), 2, 4, 2, 2, x, oneChannel, rng); },
              {"edm:4", "8 floats"});
  std::vector<float> wrong(5);
  expectError([&] { runSampler(parseSampler("rf:4"), 2, 4, 2, 2, wrong, tooSmall, rng); },
              {"x has 5 floats", "32"});
}

//===----------------------------------------------------------------------===//
// Guidance
//===----------------------------------------------------------------------===//

TEST(Guidance, DiT3ChannelGuidesOnlyTheFirstThreeChannels) {
  // n2 = 2 (one cond, one uncond), cOut = 8, hw = 2.
  std::vector<float> out(2 * 8 * 2);
  for (int ch = 0; ch < 8; ++ch)
    for (int k = 0; k < 2; ++k) {
      out[size_t(ch * 2 + k)] = float(10 * ch + k);          // cond
      out[size_t(16 + ch * 2 + k)] = float(-ch - 0.5f * k);  // uncond
    }
  std::vector<float> original = out;
  guideDiT3Channel(out, 2, 8, 2, 4.0);
  for (int ch = 0; ch < 8; ++ch)
    for (int k = 0; k < 2; ++k) {
      float cond = original[size_t(ch * 2 + k)], uncond = original[size_t(16 + ch * 2 + k)];
      if (ch < 3) {
        float g = uncond + 4.0f * (cond - uncond);
        EXPECT_EQ(out[size_t(ch * 2 + k)], g) << ch;
        EXPECT_EQ(out[size_t(16 + ch * 2 + k)], g) << ch;
      } else {
        EXPECT_EQ(out[size_t(ch * 2 + k)], cond) << ch;
        EXPECT_EQ(out[size_t(16 + ch * 2 + k)], uncond) << ch;
      }
    }
  // Hand-computed anchors: channel 1, k = 1: cond 11, uncond -1.5 ->
  // -1.5 + 4 * 12.5 = 48.5; channel 3 keeps 30 / -3.
  EXPECT_EQ(out[3], 48.5f);
  EXPECT_EQ(out[16 + 3], 48.5f);
  EXPECT_EQ(out[6], 30.0f);
  EXPECT_EQ(out[16 + 6], -3.0f);

  std::vector<float> odd(3 * 8 * 2);
  expectError([&] { guideDiT3Channel(odd, 3, 8, 2, 1.5); }, {"3 samples", "even"});
  expectError([&] { guideDiT3Channel(out, 2, 8, 3, 1.5); }, {"32 floats", "48"});
}

TEST(Guidance, AllChannelsGuidesTheRequestedChannels) {
  // n2 = 4 (two cond, two uncond), cOut = 8, hw = 1; guide 4 channels.
  std::vector<float> out(4 * 8);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = float(i) * 0.5f - 3.0f;
  std::vector<float> original = out;
  guideAllChannels(out, 4, 8, 1, 7.0, 4);
  for (int s = 0; s < 2; ++s)
    for (int ch = 0; ch < 8; ++ch) {
      size_t condAt = size_t(s * 8 + ch), uncondAt = size_t((s + 2) * 8 + ch);
      if (ch < 4) {
        float g = original[uncondAt] + 7.0f * (original[condAt] - original[uncondAt]);
        EXPECT_EQ(out[condAt], g);
        EXPECT_EQ(out[uncondAt], g);
      } else {
        EXPECT_EQ(out[condAt], original[condAt]);
        EXPECT_EQ(out[uncondAt], original[uncondAt]);
      }
    }
  // Sample 0 channel 0: cond -3, uncond (16 * 0.5 - 3) = 5 -> 5 + 7 * (-8) = -51.
  EXPECT_EQ(out[0], -51.0f);
  EXPECT_EQ(out[16], -51.0f);
  // Scale 1 returns the conditional branch.
  std::vector<float> same = original;
  guideAllChannels(same, 4, 8, 1, 1.0, 8);
  for (int s = 0; s < 2; ++s)
    for (int ch = 0; ch < 8; ++ch)
      EXPECT_EQ(same[size_t((s + 2) * 8 + ch)], original[size_t(s * 8 + ch)]);
  expectError([&] { guideAllChannels(out, 4, 8, 1, 2.0, 9); }, {"9 channels", "8-channel"});
}

//===----------------------------------------------------------------------===//
// Configuration
//===----------------------------------------------------------------------===//

TEST(SamplerConfig, ParsesTheAcceptedForms) {
  SamplerConfig ddpm = parseSampler("ddpm:250");
  EXPECT_EQ(ddpm.kind, SamplerConfig::Ddpm);
  EXPECT_EQ(ddpm.steps, 250);
  EXPECT_TRUE(ddpm.learnedSigma);
  SamplerConfig ddim = parseSampler("ddim:50");
  EXPECT_EQ(ddim.kind, SamplerConfig::Ddim);
  EXPECT_EQ(ddim.steps, 50);
  EXPECT_EQ(ddim.ddimEta, 0.0);
  SamplerConfig rf = parseSampler("rf:50");
  EXPECT_EQ(rf.kind, SamplerConfig::RectifiedFlow);
  EXPECT_EQ(rf.steps, 50);
  SamplerConfig edm = parseSampler("edm:30");
  EXPECT_EQ(edm.kind, SamplerConfig::EdmHeun);
  EXPECT_EQ(edm.steps, 30);
  EXPECT_EQ(edm.sigmaData, 0.9);
  EXPECT_EQ(edm.sigmaMin, 0.002);
  EXPECT_EQ(edm.sigmaMax, 80.0);
  EXPECT_EQ(edm.rho, 7.0);
  for (const char *spec : {"ddpm:250", "ddim:50", "rf:50", "edm:30"})
    EXPECT_EQ(samplerSpec(parseSampler(spec)), spec);
}

TEST(SamplerConfig, RejectsMalformedSpecs) {
  for (const char *spec : {"ddpm", "ddpm:", "ddpm:abc", "ddpm:-5", "ddpm:0", "euler:20",
                           ":50", "ddpm:25x"})
    expectError([&] { parseSampler(spec); },
                {std::string("'") + spec + "'", "accepted forms", "ddpm:250", "ddim:50", "rf:50",
                 "edm:30"});
  expectError([&] { parseSampler("ddim:300"); }, {"'ddim:300'", "ddim:250", "ddim:334"});
  expectError([&] { parseSampler("edm:1"); }, {"'edm:1'", "at least 2"});
  expectError([&] { parseSampler("ddpm:1001"); }, {"'ddpm:1001'", "1000"});
}
