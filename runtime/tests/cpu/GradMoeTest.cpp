//===- GradMoeTest.cpp - tests of the mixture-of-experts backward ---------===//
//
// Token choice: top-1 and top-2, raw and renormalised weights, with and
// without the shared expert, the gated-residual epilogue and DiT-MoE's
// balance loss (every combination), every gradient against central
// differences of moeTokenChoice (plus, with the balance loss, of
// coefficient · Σ f_i·P̄_i with the slot counts f held fixed, which is what
// "no gradient through f" means); the balance-loss value; an expert that
// receives no token gets exactly zero gradients. Expert choice: both weight
// layouts, three activations, with and without the epilogue.
//
// Routing is piecewise constant, so a finite difference is only meaningful
// when the perturbation cannot change the selection. The largest step,
// 2ε = 6e-3 along a normal direction, moves a logit by up to ~0.05 (a
// 3σ component over d = 6 inputs) and a probability gap by up to ~0.03, so
// inputs are redrawn until every selection boundary has a probability gap
// of at least 0.08.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

#include <algorithm>
#include <numeric>

namespace diffrt::cpu::testing {
namespace {

constexpr double kRouteGap = 0.08;

/// Router probabilities in double from the float operands.
std::vector<double> probsOf(const Buffer &x, const std::vector<float> &router, int64_t e) {
  int64_t m = x.rows, d = x.cols;
  std::vector<double> p(static_cast<size_t>(m * e));
  for (int64_t r = 0; r < m; ++r) {
    double mx = -1e300;
    for (int64_t i = 0; i < e; ++i) {
      double acc = 0.0;
      for (int64_t j = 0; j < d; ++j)
        acc += double(router[i * d + j]) * x.at(r, j);
      p[r * e + i] = acc;
      mx = std::max(mx, acc);
    }
    double total = 0.0;
    for (int64_t i = 0; i < e; ++i)
      total += (p[r * e + i] = std::exp(p[r * e + i] - mx));
    for (int64_t i = 0; i < e; ++i)
      p[r * e + i] /= total;
  }
  return p;
}

/// The gap between the k-th and (k+1)-th largest of v (infinite if k = size).
double boundaryGap(std::vector<double> v, int64_t k) {
  if (k >= static_cast<int64_t>(v.size()))
    return 1e300;
  std::sort(v.begin(), v.end(), std::greater<double>());
  return v[k - 1] - v[k];
}

struct TokenChoiceCase {
  int64_t topK;
  bool normalize, shared, epilogue;
  double balance;
};

void checkTokenChoice(Rng &rng, const TokenChoiceCase &tc) {
  SCOPED_TRACE("top-" + std::to_string(tc.topK) + (tc.normalize ? ", normalised" : "") +
               (tc.shared ? ", shared" : "") + (tc.epilogue ? ", epilogue" : "") +
               (tc.balance > 0 ? ", balance" : ""));
  const int64_t m = 10, d = 6, e = 4, f = 5, fs = 3, rowsPerGate = 5;
  Buffer x = normalBuffer(rng, m, d, d + 1);
  std::vector<float> router = rng.normal(e * d, 0.7);
  // Each token's row is redrawn until its own boundary is clear.
  for (int64_t r = 0; r < m; ++r)
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 100000) << "no routing with a clear selection boundary";
      std::vector<double> p = probsOf(x, router, e);
      if (boundaryGap({p.begin() + r * e, p.begin() + (r + 1) * e}, tc.topK) >= kRouteGap)
        break;
      std::vector<float> fresh = rng.normal(d);
      for (int64_t j = 0; j < d; ++j)
        x.at(r, j) = fresh[j];
    }
  std::vector<float> gate = rng.normal(e * f * d, 0.5), up = rng.normal(e * f * d, 0.5);
  std::vector<float> down = rng.normal(e * d * f, 0.5);
  std::vector<float> sGate = rng.normal(fs * d, 0.5), sUp = rng.normal(fs * d, 0.5);
  std::vector<float> sDown = rng.normal(d * fs, 0.5);
  Buffer residual = normalBuffer(rng, m, d), egate = normalBuffer(rng, m / rowsPerGate, d, d + 1);
  Buffer dOut = normalBuffer(rng, m, d, d + 2);
  GatedResidual epi{residual.cmat(), egate.cmat(), rowsPerGate};

  TokenChoiceArgs args;
  args.router = router.data();
  args.experts = e;
  args.hidden = f;
  args.topK = tc.topK;
  args.normalize = tc.normalize;
  args.gate = gate.data();
  args.up = up.data();
  args.down = down.data();
  if (tc.shared) {
    args.sharedGate = sGate.data();
    args.sharedUp = sUp.data();
    args.sharedDown = sDown.data();
    args.sharedHidden = fs;
  }
  args.epilogue = tc.epilogue ? &epi : nullptr;

  Buffer dX = poisonedBuffer(m, d, d + 1), dEGate = poisonedBuffer(m / rowsPerGate, d, d + 2);
  std::vector<float> dRouter = poisoned(e * d), dGateW = poisoned(e * f * d),
                     dUpW = poisoned(e * f * d), dDownW = poisoned(e * d * f);
  std::vector<float> dSG = poisoned(fs * d), dSU = poisoned(fs * d), dSD = poisoned(d * fs);
  float balanceLoss = kNaN;
  TokenChoiceGrads grads;
  grads.dX = dX.mat();
  grads.dRouter = dRouter.data();
  grads.dGate = dGateW.data();
  grads.dUp = dUpW.data();
  grads.dDown = dDownW.data();
  if (tc.shared) {
    grads.dSharedGate = dSG.data();
    grads.dSharedUp = dSU.data();
    grads.dSharedDown = dSD.data();
  }
  if (tc.epilogue)
    grads.dEpilogueGate = dEGate.mat();
  grads.balanceCoef = tc.balance;
  grads.balanceLoss = &balanceLoss;
  moeTokenChoiceBackward(x.cmat(), args, dOut.cmat(), grads);

  // Slot counts of the unperturbed routing: f_i, constant under the
  // perturbations (the routing does not change).
  std::vector<int64_t> counts(static_cast<size_t>(e));
  {
    TokenChoiceArgs a = args;
    a.routedCounts = counts.data();
    Buffer out(m, d);
    moeTokenChoice(x.cmat(), a, out.mat());
  }
  auto balanceValue = [&] {
    std::vector<double> p = probsOf(x, router, e);
    double loss = 0.0;
    for (int64_t i = 0; i < e; ++i) {
      double mean = 0.0;
      for (int64_t r = 0; r < m; ++r)
        mean += p[r * e + i];
      mean /= double(m);
      loss += double(e) / double(tc.topK * m) * double(counts[i]) * mean;
    }
    return tc.balance * loss;
  };
  if (tc.balance > 0)
    EXPECT_NEAR(balanceLoss, balanceValue(), 1e-6 * (1.0 + balanceValue()));
  else
    EXPECT_EQ(balanceLoss, 0.0f);

  auto fn = [&] {
    Buffer out(m, d);
    moeTokenChoice(x.cmat(), args, out.mat());
    return dot(dOut, out) + (tc.balance > 0 ? balanceValue() : 0.0);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), fn);
  expectDirectional(rng, "dRouter", operand(router), gradOf(dRouter), fn);
  expectDirectional(rng, "dGate", operand(gate), gradOf(dGateW), fn);
  expectDirectional(rng, "dUp", operand(up), gradOf(dUpW), fn);
  expectDirectional(rng, "dDown", operand(down), gradOf(dDownW), fn);
  if (tc.shared) {
    expectDirectional(rng, "dSharedGate", operand(sGate), gradOf(dSG), fn);
    expectDirectional(rng, "dSharedUp", operand(sUp), gradOf(dSU), fn);
    expectDirectional(rng, "dSharedDown", operand(sDown), gradOf(dSD), fn);
  }
  if (tc.epilogue)
    expectDirectional(rng, "dEpilogueGate", operand(egate), gradOf(dEGate), fn);
  expectPaddingIntact("dX", dX);
}

TEST(GradMoeTokenChoice, EveryCombination) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t topK : {int64_t{1}, int64_t{2}})
    for (bool normalize : {false, true})
      for (bool shared : {false, true})
        for (bool epilogue : {false, true})
          for (double balance : {0.0, 0.3})
            checkTokenChoice(rng, {topK, normalize, shared, epilogue, balance});
}

TEST(GradMoeTokenChoice, UnusedExpertGetsZeroAndRunsAreIdentical) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 12, d = 4, e = 4, f = 3;
  Buffer x = normalBuffer(rng, m, d);
  std::vector<float> router = rng.normal(e * d, 0.5);
  // Expert 3's logit is at most −8 (x[:, 0] ≥ 1): never among the top 2.
  for (int64_t r = 0; r < m; ++r)
    x.at(r, 0) = std::fabs(x.at(r, 0)) + 1.0f;
  for (int64_t j = 0; j < d; ++j)
    router[3 * d + j] = j == 0 ? -8.0f : 0.0f;
  std::vector<float> gate = rng.normal(e * f * d), up = rng.normal(e * f * d),
                     down = rng.normal(e * d * f), dOutV = rng.normal(m * d);
  TokenChoiceArgs args;
  args.router = router.data();
  args.experts = e;
  args.hidden = f;
  args.topK = 2;
  args.gate = gate.data();
  args.up = up.data();
  args.down = down.data();
  std::vector<float> runs[2];
  for (std::vector<float> &out : runs) {
    out.assign(static_cast<size_t>(m * d + e * d + 3 * e * f * d), kNaN);
    TokenChoiceGrads g;
    g.dX = mat(out.data(), m, d);
    g.dRouter = out.data() + m * d;
    g.dGate = g.dRouter + e * d;
    g.dUp = g.dGate + e * f * d;
    g.dDown = g.dUp + e * f * d;
    g.balanceCoef = 0.01;
    moeTokenChoiceBackward(x.cmat(), args, constMat(dOutV.data(), m, d), g);
  }
  EXPECT_TRUE(sameBits(runs[0], runs[1]));
  const float *dGate3 = runs[0].data() + m * d + e * d + 3 * f * d;
  for (int64_t i = 0; i < f * d; ++i) {
    EXPECT_EQ(dGate3[i], 0.0f);
    EXPECT_EQ(dGate3[e * f * d + i], 0.0f);
    EXPECT_EQ(dGate3[2 * e * f * d + i], 0.0f);
  }
}

struct ExpertChoiceCase {
  bool inOut;
  Act act;
  bool epilogue;
};

void checkExpertChoice(Rng &rng, const ExpertChoiceCase &ec) {
  SCOPED_TRACE(std::string(ec.inOut ? "in-out" : "linear") + " layout, " + actName(ec.act) +
               (ec.epilogue ? ", epilogue" : ""));
  const int64_t batch = 2, tokens = 8, e = 4, d = 5, f = 6, m = batch * tokens;
  const double capacity = 2.0;
  const int64_t k = static_cast<int64_t>(capacity * tokens / e);
  Buffer x = normalBuffer(rng, m, d, d + 2);
  std::vector<float> router = rng.normal(e * d, 0.8);
  // Routing is per sample: each sample's rows are redrawn until the
  // boundaries of all experts within it are clear.
  for (int64_t b = 0; b < batch; ++b)
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 1000000) << "no routing with clear selection boundaries";
      std::vector<double> p = probsOf(x, router, e);
      bool clear = true;
      for (int64_t i = 0; i < e && clear; ++i) {
        std::vector<double> col(static_cast<size_t>(tokens));
        for (int64_t t = 0; t < tokens; ++t)
          col[t] = p[(b * tokens + t) * e + i];
        clear = boundaryGap(col, k) >= kRouteGap;
      }
      if (clear)
        break;
      std::vector<float> fresh = rng.normal(tokens * d);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t j = 0; j < d; ++j)
          x.at(b * tokens + t, j) = fresh[t * d + j];
    }
  std::vector<float> w1 = rng.normal(e * d * f, 0.5), w2 = rng.normal(e * f * d, 0.5);
  Buffer residual = normalBuffer(rng, m, d), egate = normalBuffer(rng, batch, d);
  Buffer dOut = normalBuffer(rng, m, d);
  GatedResidual epi{residual.cmat(), egate.cmat(), tokens};
  ExpertChoiceArgs args;
  args.router = router.data();
  args.experts = e;
  args.hidden = f;
  args.tokens = tokens;
  args.capacity = capacity;
  args.inOut = ec.inOut;
  args.act = ec.act;
  args.w1 = w1.data();
  args.w2 = w2.data();
  args.epilogue = ec.epilogue ? &epi : nullptr;

  Buffer dX = poisonedBuffer(m, d, d + 1), dEGate = poisonedBuffer(batch, d);
  std::vector<float> dRouter = poisoned(e * d), dW1 = poisoned(e * d * f),
                     dW2 = poisoned(e * f * d);
  ExpertChoiceGrads grads;
  grads.dX = dX.mat();
  grads.dRouter = dRouter.data();
  grads.dW1 = dW1.data();
  grads.dW2 = dW2.data();
  if (ec.epilogue)
    grads.dEpilogueGate = dEGate.mat();
  moeExpertChoiceBackward(x.cmat(), args, dOut.cmat(), grads);

  auto fn = [&] {
    Buffer out(m, d);
    moeExpertChoice(x.cmat(), args, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), fn);
  expectDirectional(rng, "dRouter", operand(router), gradOf(dRouter), fn);
  expectDirectional(rng, "dW1", operand(w1), gradOf(dW1), fn);
  expectDirectional(rng, "dW2", operand(w2), gradOf(dW2), fn);
  if (ec.epilogue)
    expectDirectional(rng, "dEpilogueGate", operand(egate), gradOf(dEGate), fn);
  expectPaddingIntact("dX", dX);
}

TEST(GradMoeExpertChoice, LayoutsActivationsAndEpilogue) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (bool inOut : {true, false})
    for (Act act : {Act::Gelu, Act::GeluTanh, Act::Silu})
      for (bool epilogue : {false, true})
        checkExpertChoice(rng, {inOut, act, epilogue});
}

} // namespace
} // namespace diffrt::cpu::testing
