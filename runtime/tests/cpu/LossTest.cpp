//===- LossTest.cpp - tests of the diffusion training losses --------------===//
//
// Rectified flow and EDM (with and without the kept-patch mask): values
// against direct double computations and gradients against central
// differences of the loss kernels themselves. DDPM (spec 2.7): the gradient
// with respect to ε̂ against finite differences of the MSE part alone and
// shown to carry nothing from the bound (the stop-gradient of the model
// mean), the gradient with respect to v against finite differences of the
// whole loss (the MSE does not depend on v), at t = 0 (decoder NLL, with
// pixels in all three bins of the discretised likelihood) and t > 0 (KL),
// and loss values at points computable by hand.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

constexpr double kLn2 = 0.69314718055994530942;

/// Σ_n weight[n] · loss[n] in double.
double weighted(const std::vector<float> &loss, const std::vector<float> &weight) {
  double acc = 0.0;
  for (size_t i = 0; i < loss.size(); ++i)
    acc += double(weight[i]) * loss[i];
  return acc;
}

TEST(LossRf, ValueAndGradient) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t n = 3, c = 2, cPred = 4, hw = 6;
  std::vector<float> pred = rng.normal(n * cPred * hw), x0 = rng.normal(n * c * hw);
  std::vector<float> noise = rng.normal(n * c * hw), weight = rng.uniform(n, 0.2, 1.0);
  std::vector<float> loss = poisoned(n), dPred = poisoned(pred.size());
  rfLoss(pred.data(), x0.data(), noise.data(), n, c, cPred, hw, loss.data(), weight.data(),
         dPred.data());
  for (int64_t s = 0; s < n; ++s) {
    double acc = 0.0;
    for (int64_t i = 0; i < c * hw; ++i) {
      double diff = double(noise[s * c * hw + i]) - x0[s * c * hw + i] - pred[s * cPred * hw + i];
      acc += diff * diff;
    }
    EXPECT_NEAR(loss[s], acc / double(c * hw), 1e-6 * (1.0 + acc)) << "sample " << s;
    for (int64_t i = c * hw; i < cPred * hw; ++i)
      EXPECT_EQ(dPred[s * cPred * hw + i], 0.0f) << "unused channel, sample " << s;
  }
  auto f = [&] {
    std::vector<float> l(n);
    rfLoss(pred.data(), x0.data(), noise.data(), n, c, cPred, hw, l.data(), nullptr, nullptr);
    return weighted(l, weight);
  };
  expectDirectional(rng, "dPrediction", operand(pred), gradOf(dPred), f);
  // No weight vector: the batch mean, weight 1/N.
  std::vector<float> dMean = poisoned(pred.size());
  rfLoss(pred.data(), x0.data(), noise.data(), n, c, cPred, hw, nullptr, nullptr, dMean.data());
  for (size_t i = 0; i < pred.size(); ++i) {
    int64_t s = static_cast<int64_t>(i) / (cPred * hw);
    double expect = double(dPred[i]) / weight[s] / double(n);
    EXPECT_NEAR(dMean[i], expect, 1e-6 * std::fabs(expect)) << "element " << i;
  }
}

/// MicroDiT's reference reduction in double: λ(D − x0)² averaged over
/// channels, then p x p average pooling, then the mean over kept patches
/// (or over pixels without a mask).
double edmReference(const std::vector<float> &raw, const std::vector<float> &xn,
                    const std::vector<float> &x0, double sigma, double sd, const int32_t *keep,
                    int64_t kept, int64_t s, int64_t c, int64_t h, int64_t w, int64_t p) {
  double s2 = sigma * sigma, sd2 = sd * sd;
  double cSkip = sd2 / (s2 + sd2), cOut = sigma * sd / std::sqrt(s2 + sd2);
  double lambda = (s2 + sd2) / (sigma * sd * sigma * sd);
  std::vector<double> pix(static_cast<size_t>(h * w), 0.0);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t i = 0; i < h * w; ++i) {
      int64_t idx = (s * c + ch) * h * w + i;
      double diff = cSkip * xn[idx] + cOut * raw[idx] - x0[idx];
      pix[i] += lambda * diff * diff / double(c);
    }
  if (keep == nullptr) {
    double acc = 0.0;
    for (double v : pix)
      acc += v;
    return acc / double(h * w);
  }
  int64_t gw = w / p;
  double acc = 0.0;
  for (int64_t j = 0; j < kept; ++j) {
    int64_t t = keep[s * kept + j], pr = t / gw, pc = t % gw;
    double pool = 0.0;
    for (int64_t i = 0; i < p; ++i)
      for (int64_t jj = 0; jj < p; ++jj)
        pool += pix[(pr * p + i) * w + pc * p + jj];
    acc += pool / double(p * p);
  }
  return acc / double(kept);
}

TEST(LossEdm, MaskedAndUnmasked) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t n = 2, c = 3, h = 4, w = 6, p = 2, patches = 6, kept = 3;
  const double sd = 0.9;
  std::vector<float> raw = rng.normal(n * c * h * w), x0 = rng.normal(n * c * h * w, 0.8);
  std::vector<float> sigma = rng.uniform(n, 0.3, 3.0), weight = rng.uniform(n, 0.2, 1.0);
  std::vector<float> xn(x0.size());
  std::vector<float> eps = rng.normal(x0.size());
  for (size_t i = 0; i < xn.size(); ++i)
    xn[i] = x0[i] + sigma[i / (c * h * w)] * eps[i];
  std::vector<int32_t> keep = {4, 0, 3, 1, 5, 2};
  for (bool masked : {false, true}) {
    SCOPED_TRACE(masked ? "masked" : "unmasked");
    const int32_t *k = masked ? keep.data() : nullptr;
    std::vector<float> loss = poisoned(n), dRaw = poisoned(raw.size());
    edmLoss(raw.data(), xn.data(), x0.data(), sigma.data(), k, kept, n, c, h, w, p, sd, loss.data(),
            weight.data(), dRaw.data());
    for (int64_t s = 0; s < n; ++s) {
      double ref = edmReference(raw, xn, x0, sigma[s], sd, k, kept, s, c, h, w, p);
      EXPECT_NEAR(loss[s], ref, 1e-6 * ref) << "sample " << s;
    }
    auto f = [&] {
      std::vector<float> l(n);
      edmLoss(raw.data(), xn.data(), x0.data(), sigma.data(), k, kept, n, c, h, w, p, sd, l.data(),
              nullptr, nullptr);
      return weighted(l, weight);
    };
    expectDirectional(rng, "dRaw", operand(raw), gradOf(dRaw), f);
    if (masked) {
      // Pixels of dropped patches get exactly zero gradient.
      int64_t nonzero = 0;
      for (int64_t s = 0; s < n; ++s) {
        std::vector<bool> isKept(patches, false);
        for (int64_t j = 0; j < kept; ++j)
          isKept[keep[s * kept + j]] = true;
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x)
              if (!isKept[(y / p) * (w / p) + x / p])
                nonzero += dRaw[((s * c + ch) * h + y) * w + x] != 0.0f;
      }
      EXPECT_EQ(nonzero, 0);
    }
  }
  // Keeping every patch (in any order) is the unmasked loss.
  std::vector<int32_t> all = {5, 1, 0, 3, 2, 4, 2, 0, 1, 5, 4, 3};
  std::vector<float> lAll(n), lNone(n);
  edmLoss(raw.data(), xn.data(), x0.data(), sigma.data(), all.data(), patches, n, c, h, w, p, sd,
          lAll.data(), nullptr, nullptr);
  edmLoss(raw.data(), xn.data(), x0.data(), sigma.data(), nullptr, 0, n, c, h, w, p, sd,
          lNone.data(), nullptr, nullptr);
  for (int64_t s = 0; s < n; ++s)
    EXPECT_NEAR(lAll[s], lNone[s], 1e-6 * lNone[s]);
  std::vector<int32_t> twice = {0, 0, 1, 2, 3, 4};
  EXPECT_DIFFRT_ERROR(edmLoss(raw.data(), xn.data(), x0.data(), sigma.data(), twice.data(), 3, n, c,
                              h, w, p, sd, lAll.data(), nullptr, nullptr),
                      "edmLoss", "sample 0", "kept twice");
}

/// The test's own float64 linear schedule (guided-diffusion's formulas).
struct Schedule {
  std::vector<double> beta, alphaBar;
  explicit Schedule(int64_t steps) {
    double s = 1000.0 / double(steps);
    for (int64_t i = 0; i < steps; ++i)
      beta.push_back(i + 1 == steps
                         ? s * 0.02
                         : s * 1e-4 + double(i) * (s * 0.02 - s * 1e-4) / double(steps - 1));
    double prod = 1.0;
    for (double b : beta)
      alphaBar.push_back(prod *= 1.0 - b);
  }
  double abPrev(int64_t t) const { return t == 0 ? 1.0 : alphaBar[t - 1]; }
  double posterior(int64_t t) const { return beta[t] * (1.0 - abPrev(t)) / (1.0 - alphaBar[t]); }
};

/// A DDPM problem: x_t built from x0 and ε as the forward process does.
struct Ddpm {
  int64_t n, c, hw, steps;
  std::vector<float> pred, x0, xt, eps, weight;
  std::vector<int32_t> t;
  Ddpm(Rng &rng, std::vector<int32_t> timesteps, int64_t c_, int64_t hw_, int64_t steps_)
      : n(static_cast<int64_t>(timesteps.size())), c(c_), hw(hw_), steps(steps_),
        t(std::move(timesteps)) {
    Schedule sched(steps);
    int64_t count = c * hw;
    x0 = rng.uniform(n * count, -0.9, 0.9);
    eps = rng.normal(n * count);
    xt.resize(x0.size());
    pred.resize(static_cast<size_t>(2 * n * count));
    std::vector<float> v = rng.uniform(n * count, -0.9, 0.9), jitter = rng.normal(n * count, 0.3);
    for (int64_t s = 0; s < n; ++s) {
      double ab = sched.alphaBar[t[s]];
      for (int64_t i = 0; i < count; ++i) {
        int64_t k = s * count + i;
        xt[k] = float(std::sqrt(ab) * x0[k] + std::sqrt(1.0 - ab) * eps[k]);
        pred[s * 2 * count + i] = eps[k] + jitter[k];
        pred[s * 2 * count + count + i] = v[k];
      }
    }
    weight = rng.uniform(n, 0.2, 1.0);
  }
  std::vector<float> run(std::vector<float> *dPred) const {
    std::vector<float> loss(static_cast<size_t>(n));
    ddpmLoss(pred.data(), x0.data(), xt.data(), eps.data(), t.data(), n, c, hw, steps, loss.data(),
             weight.data(), dPred != nullptr ? dPred->data() : nullptr);
    return loss;
  }
  /// Σ_n weight · mean (ε − ε̂)², in double.
  double mse() const {
    double acc = 0.0;
    int64_t count = c * hw;
    for (int64_t s = 0; s < n; ++s) {
      double m = 0.0;
      for (int64_t i = 0; i < count; ++i) {
        double d = double(eps[s * count + i]) - pred[s * 2 * count + i];
        m += d * d;
      }
      acc += double(weight[s]) * m / double(count);
    }
    return acc;
  }
  Operand epsHat() { return {pred.data(), n, c * hw, 2 * c * hw}; }
  Operand v() { return {pred.data() + c * hw, n, c * hw, 2 * c * hw}; }
};

TEST(LossDdpm, EpsilonGradientIsTheMseGradient) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Ddpm p(rng, {0, 1, 7, 300, 999}, 2, 6, 1000);
  std::vector<float> dPred = poisoned(p.pred.size());
  p.run(&dPred);
  GradOf dEps{dPred.data(), 2 * p.c * p.hw};
  expectDirectional(rng, "dEpsHat (MSE)", p.epsHat(), dEps, [&] { return p.mse(); });
  // Nothing from the bound: the gradient is 2·w·(ε̂ − ε)/(C·H·W) exactly
  // (up to its float rounding) and does not change with v, although the
  // bound's value does depend on ε̂ through the (detached) model mean.
  int64_t count = p.c * p.hw;
  for (int64_t s = 0; s < p.n; ++s)
    for (int64_t i = 0; i < count; ++i) {
      double expect = 2.0 * p.weight[s] *
                      (double(p.pred[s * 2 * count + i]) - p.eps[s * count + i]) / double(count);
      EXPECT_NEAR(dPred[s * 2 * count + i], expect, 1e-6 * std::fabs(expect) + 1e-9);
    }
  Ddpm q = p;
  std::vector<float> v2 = rng.uniform(p.n * count, -0.9, 0.9);
  for (int64_t s = 0; s < p.n; ++s)
    for (int64_t i = 0; i < count; ++i)
      q.pred[s * 2 * count + count + i] = v2[s * count + i];
  std::vector<float> dPred2 = poisoned(q.pred.size());
  q.run(&dPred2);
  for (int64_t s = 0; s < p.n; ++s)
    EXPECT_EQ(std::memcmp(&dPred[s * 2 * count], &dPred2[s * 2 * count], count * sizeof(float)), 0)
        << "ε̂ gradient of sample " << s << " changed with v";
  // The bound alone (loss − MSE) does vary with ε̂: a stop-gradient is what
  // keeps it out of the gradient, not a coincidence.
  double moved = 0.0;
  for (int dir = 0; dir < 3; ++dir) {
    std::vector<float> u = rng.normal(p.n * count);
    auto bound = [&](double step) {
      Ddpm r = p;
      for (int64_t s = 0; s < p.n; ++s)
        for (int64_t i = 0; i < count; ++i)
          r.pred[s * 2 * count + i] += float(step * u[s * count + i]);
      return weighted(r.run(nullptr), r.weight) - r.mse();
    };
    moved = std::max(moved, std::fabs(bound(1e-2) - bound(-1e-2)) / 2e-2);
  }
  EXPECT_GT(moved, 1e-3);
}

TEST(LossDdpm, VarianceGradientIsTheBoundGradient) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // t = 0 (decoder NLL) and small t, where the learned range
  // [log β̃_t, log β_t] is wide enough for v to matter.
  Ddpm p(rng, {0, 0, 1, 3, 10}, 2, 6, 1000);
  int64_t count = p.c * p.hw;
  // Pixels in the open edge bins of the discretised likelihood: x0 beyond
  // ±0.999 (with x_t rebuilt to match).
  Schedule sched(1000);
  for (int64_t s = 0; s < 2; ++s)
    for (int64_t i : {int64_t{0}, int64_t{5}}) {
      int64_t k = s * count + i;
      p.x0[k] = i == 0 ? -1.0f : 1.2f;
      double ab = sched.alphaBar[0];
      p.xt[k] = float(std::sqrt(ab) * p.x0[k] + std::sqrt(1.0 - ab) * p.eps[k]);
    }
  std::vector<float> dPred = poisoned(p.pred.size());
  p.run(&dPred);
  GradOf dV{dPred.data() + count, 2 * count};
  expectDirectional(rng, "dV (bound)", p.v(), dV,
                    [&] { return weighted(p.run(nullptr), p.weight); });
}

TEST(LossDdpm, HandComputableValues) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t c = 2, hw = 5, count = c * hw;
  for (int64_t steps : {int64_t{1000}, int64_t{250}}) {
    SCOPED_TRACE("T = " + std::to_string(steps));
    Schedule sched(steps);
    // t > 0 with v = −1 (model variance = posterior variance) and ε̂ = ε:
    // the model mean is the true posterior mean, so KL = 0 and the MSE is 0.
    Ddpm p(rng, {5, 5}, c, hw, steps);
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t i = 0; i < count; ++i) {
        p.pred[s * 2 * count + i] = p.eps[s * count + i];
        p.pred[s * 2 * count + count + i] = -1.0f;
      }
    // Sample 1: ε̂ = ε + δ. Then μ − μ̃ = −coef1·√(1/ᾱ_t − 1)·δ, and with the
    // variances equal KL = ½·(μ − μ̃)²/β̃_t (nats).
    const double delta = 0.1;
    for (int64_t i = 0; i < count; ++i)
      p.pred[2 * count + i] += float(delta);
    std::vector<float> loss = p.run(nullptr);
    EXPECT_NEAR(loss[0], 0.0, 1e-6);
    int64_t t = 5;
    double coef1 = sched.beta[t] * std::sqrt(sched.abPrev(t)) / (1.0 - sched.alphaBar[t]);
    double dm = coef1 * std::sqrt(1.0 / sched.alphaBar[t] - 1.0);
    double mseExpect = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      double d = double(p.pred[2 * count + i]) - p.eps[count + i];
      mseExpect += d * d / double(count);
    }
    double klExpect = 0.5 * dm * dm * delta * delta / sched.posterior(t) / kLn2;
    EXPECT_NEAR(loss[1], mseExpect + klExpect, 1e-5 * (mseExpect + klExpect));

    // t = 0, ε̂ = ε, v = 1 (log σ² = log β_0): the model mean is x0, so every
    // pixel's bin probability is cdf(a) − cdf(−a) = tanh(√(2/π)(a + 0.044715a³))
    // with a = (1/255)/√β_0, and the NLL in bits is −log2 of it.
    Ddpm z(rng, {0}, c, hw, steps);
    for (int64_t i = 0; i < count; ++i) {
      z.pred[i] = z.eps[i];
      z.pred[count + i] = 1.0f;
    }
    double a = (1.0 / 255.0) / std::sqrt(sched.beta[0]);
    double nll = -std::log2(std::tanh(std::sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)));
    EXPECT_NEAR(z.run(nullptr)[0], nll, 1e-5 * nll);
  }
}

TEST(LossDdpm, ErrorsNameTheProblem) {
  std::vector<float> pred(8), x(4), loss(1);
  std::vector<int32_t> t = {1000};
  EXPECT_DIFFRT_ERROR(ddpmLoss(pred.data(), x.data(), x.data(), x.data(), t.data(), 1, 2, 2, 1000,
                               loss.data(), nullptr, nullptr),
                      "ddpmLoss", "sample 0", "timestep 1000");
}

} // namespace
} // namespace diffrt::cpu::testing
