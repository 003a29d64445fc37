//===- MoeTest.cpp - tests of token-choice and expert-choice MoE ----------===//
//
// Both routings against naive per-token (token choice) and per-expert
// (expert choice) loops in double: top-1 and top-2, with and without
// renormalised weights, the shared expert and the gated-residual epilogue,
// both MicroDiT weight layouts and both GELUs; constructed ties that the
// lower index must win, experts that receive no token and tokens that no
// expert picks.
//
// Routing compares probabilities, so random inputs whose float32 and double
// rankings could disagree (a gap below 1e-4 at the selection boundary) are
// redrawn: the test is about the kernel, not about rounding coin flips.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "../MoeTestSupport.h"

#include <algorithm>
#include <numeric>

namespace diffrt::cpu::testing {
namespace {

using diffrt::testsupport::clearBoundary;
using diffrt::testsupport::kGap;
using diffrt::testsupport::routerProbs;


/// Indices of the k largest values, ties to the lower index, in selection
/// order.
std::vector<int64_t> topIndices(const std::vector<double> &v, int64_t k) {
  std::vector<int64_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), int64_t{0});
  std::sort(idx.begin(), idx.end(),
            [&](int64_t a, int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  idx.resize(static_cast<size_t>(k));
  return idx;
}


/// SwiGLU expert in double: down · (silu(gate · x) ⊙ up · x), nn.Linear
/// layouts gate/up f x d, down d x f.
std::vector<double> swigluExpert(const float *x, const float *gate, const float *up,
                                 const float *down, int64_t d, int64_t f) {
  std::vector<double> h(static_cast<size_t>(f)), y(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < f; ++i) {
    double g = 0.0, u = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      g += double(gate[i * d + j]) * x[j];
      u += double(up[i * d + j]) * x[j];
    }
    h[i] = silu(g) * u;
  }
  for (int64_t o = 0; o < d; ++o)
    for (int64_t i = 0; i < f; ++i)
      y[o] += double(down[o * f + i]) * h[i];
  return y;
}

struct TokenChoiceSetup {
  int64_t m, d, e, f, fs;
  Buffer x;
  std::vector<float> router, gate, up, down, sGate, sUp, sDown;
  Buffer residual, gateEpi;
  int64_t rowsPerGate = 1;
};

TokenChoiceSetup makeTokenChoice(Rng &rng, int64_t m, int64_t d, int64_t e, int64_t f,
                                 int64_t topK) {
  TokenChoiceSetup s{m, d, e, f, 2 * d, Buffer(m, d, d + 3), {}, {}, {}, {}, {}, {}, {},
                     Buffer(), Buffer()};
  s.router = rng.normal(e * d, 1.0 / std::sqrt(double(d)));
  for (int64_t r = 0; r < m; ++r) {
    std::vector<float> row;
    do
      row = rng.normal(d);
    while (!clearBoundary(routerProbs(row.data(), s.router, e, d), topK));
    std::copy(row.begin(), row.end(), &s.x.at(r, 0));
  }
  double sd = 1.0 / std::sqrt(double(d)), sf = 1.0 / std::sqrt(double(f));
  s.gate = rng.normal(e * f * d, sd);
  s.up = rng.normal(e * f * d, sd);
  s.down = rng.normal(e * d * f, sf);
  s.sGate = rng.normal(s.fs * d, sd);
  s.sUp = rng.normal(s.fs * d, sd);
  s.sDown = rng.normal(d * s.fs, 1.0 / std::sqrt(double(s.fs)));
  s.rowsPerGate = m % 2 == 0 ? m / 2 : m;
  s.residual = normalBuffer(rng, m, d, d + 1);
  s.gateEpi = normalBuffer(rng, m / s.rowsPerGate, d);
  return s;
}

/// Runs the kernel and the per-token reference on the setup; returns the
/// kernel's routed counts.
std::vector<int64_t> checkTokenChoice(TokenChoiceSetup &s, int64_t topK, bool normalize,
                                      bool shared, bool epilogue, bool alias) {
  SCOPED_TRACE(::testing::Message() << "m " << s.m << " d " << s.d << " experts " << s.e
                                    << " hidden " << s.f << " topK " << topK << " normalize "
                                    << normalize << " shared " << shared << " epilogue "
                                    << epilogue << " alias " << alias);
  Ref ref(s.m, s.d);
  std::vector<int64_t> refCounts(static_cast<size_t>(s.e), 0);
  for (int64_t r = 0; r < s.m; ++r) {
    const float *xr = &s.x.at(r, 0);
    std::vector<double> p = routerProbs(xr, s.router, s.e, s.d);
    std::vector<int64_t> sel = topIndices(p, topK);
    double total = 0.0;
    for (int64_t i : sel)
      total += p[i];
    std::vector<double> y(static_cast<size_t>(s.d), 0.0);
    for (int64_t i : sel) {
      ++refCounts[i];
      double w = normalize ? p[i] / total : p[i];
      std::vector<double> ye = swigluExpert(xr, &s.gate[i * s.f * s.d], &s.up[i * s.f * s.d],
                                            &s.down[i * s.d * s.f], s.d, s.f);
      for (int64_t j = 0; j < s.d; ++j)
        y[j] += w * ye[j];
    }
    if (shared) {
      std::vector<double> ys = swigluExpert(xr, s.sGate.data(), s.sUp.data(), s.sDown.data(),
                                            s.d, s.fs);
      for (int64_t j = 0; j < s.d; ++j)
        y[j] += ys[j];
    }
    for (int64_t j = 0; j < s.d; ++j)
      ref(r, j) = epilogue ? s.residual.at(r, j) + double(s.gateEpi.at(r / s.rowsPerGate, j)) * y[j]
                           : y[j];
  }

  TokenChoiceArgs args;
  args.router = s.router.data();
  args.experts = s.e;
  args.hidden = s.f;
  args.topK = topK;
  args.normalize = normalize;
  args.gate = s.gate.data();
  args.up = s.up.data();
  args.down = s.down.data();
  if (shared) {
    args.sharedGate = s.sGate.data();
    args.sharedUp = s.sUp.data();
    args.sharedDown = s.sDown.data();
    args.sharedHidden = s.fs;
  }
  GatedResidual epi{s.residual.cmat(), s.gateEpi.cmat(), s.rowsPerGate};
  args.epilogue = epilogue ? &epi : nullptr;
  std::vector<int64_t> counts(static_cast<size_t>(s.e), -1);
  args.routedCounts = counts.data();
  Buffer residualBefore = s.residual;
  Buffer out = poisonedBuffer(s.m, s.d, s.d + 2);
  moeTokenChoice(s.x.cmat(), args, alias ? s.residual.mat() : out.mat());
  expectMatches(alias ? s.residual : out, ref);
  EXPECT_EQ(counts, refCounts);
  s.residual = residualBefore;
  return counts;
}

TEST(CpuMoeTokenChoice, MatchesPerTokenReference) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t topK : {1, 2}) {
    TokenChoiceSetup s = makeTokenChoice(rng, rng.integer(20, 90), 24, 8, 40, topK);
    for (bool normalize : {false, true})
      for (bool shared : {false, true})
        for (bool epilogue : {false, true})
          checkTokenChoice(s, topK, normalize, shared, epilogue, false);
    checkTokenChoice(s, topK, false, true, true, true);
  }
}

/// Small nonzero integers: products and sums of a few of them are exact in
/// float32 whatever the summation order, so constructed ties stay exact
/// through sgemm.
std::vector<float> smallIntegers(Rng &rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float &x : v) {
    int64_t i = rng.integer(-2, 1);
    x = float(i >= 0 ? i + 1 : i);
  }
  return v;
}

TEST(CpuMoeTokenChoice, TiesGoToTheLowerExpertIndex) {
  // Router rows 1, 3 and 5 are the integer vector u and every token is a
  // multiple a·u: those three experts tie exactly, in float and in double,
  // for the top (logit a·|u|² against -a·|u|² for the others).
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t m = 16, d = 12, e = 6, f = 20;
  TokenChoiceSetup s = makeTokenChoice(rng, m, d, e, f, 1);
  std::vector<float> u = smallIntegers(rng, d);
  for (int64_t i = 0; i < e; ++i)
    for (int64_t j = 0; j < d; ++j)
      s.router[i * d + j] = i % 2 == 1 ? u[j] : -u[j];
  for (int64_t r = 0; r < m; ++r) {
    float a = float(rng.integer(1, 3));
    for (int64_t j = 0; j < d; ++j)
      s.x.at(r, j) = a * u[j];
  }
  std::vector<int64_t> top1 = checkTokenChoice(s, 1, false, false, false, false);
  EXPECT_EQ(top1, (std::vector<int64_t>{0, m, 0, 0, 0, 0}));
  std::vector<int64_t> top2 = checkTokenChoice(s, 2, true, true, false, false);
  EXPECT_EQ(top2, (std::vector<int64_t>{0, m, 0, m, 0, 0}));
}

TEST(CpuMoeTokenChoice, ExpertsWithoutTokens) {
  // Experts 4..7 point away from every token and are never in a top 2.
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t m = 40, d = 16, e = 8, f = 24;
  TokenChoiceSetup s = makeTokenChoice(rng, m, d, e, f, 2);
  std::vector<float> u = rng.normal(d);
  for (int64_t i = 4; i < e; ++i)
    for (int64_t j = 0; j < d; ++j)
      s.router[i * d + j] = -4.0f * u[j];
  for (int64_t r = 0; r < m; ++r) {
    std::vector<float> row;
    do {
      row = rng.normal(d, 0.3);
      for (int64_t j = 0; j < d; ++j)
        row[j] += u[j];
    } while (!clearBoundary(routerProbs(row.data(), s.router, e, d), 2));
    std::copy(row.begin(), row.end(), &s.x.at(r, 0));
  }
  std::vector<int64_t> counts = checkTokenChoice(s, 2, false, true, true, false);
  for (int64_t i = 4; i < e; ++i)
    EXPECT_EQ(counts[i], 0) << "expert " << i;
}

struct ExpertChoiceCase {
  int64_t batch, tokens, d, e, f;
  double capacity;
  bool inOut;
  Act act;
  bool epilogue;
};

/// Expert-choice MoE in double per sample and expert (spec 4.6).
Ref expertChoiceReference(const Buffer &x, const std::vector<float> &router,
                          const std::vector<float> &w1, const std::vector<float> &w2,
                          const ExpertChoiceCase &c, const Buffer &residual, const Buffer &gate,
                          int64_t rowsPerGate, std::vector<int64_t> *chosenCount) {
  int64_t k = static_cast<int64_t>(c.capacity * double(c.tokens) / double(c.e));
  Ref y(c.batch * c.tokens, c.d);
  chosenCount->assign(static_cast<size_t>(c.batch * c.tokens), 0);
  for (int64_t b = 0; b < c.batch; ++b) {
    std::vector<std::vector<double>> p;
    for (int64_t t = 0; t < c.tokens; ++t)
      p.push_back(routerProbs(&x.at(b * c.tokens + t, 0), router, c.e, c.d));
    for (int64_t ei = 0; ei < c.e; ++ei) {
      std::vector<double> col(static_cast<size_t>(c.tokens));
      for (int64_t t = 0; t < c.tokens; ++t)
        col[t] = p[t][ei];
      for (int64_t t : topIndices(col, k)) {
        int64_t row = b * c.tokens + t;
        ++(*chosenCount)[row];
        const float *xr = &x.at(row, 0);
        std::vector<double> h(static_cast<size_t>(c.f));
        for (int64_t i = 0; i < c.f; ++i) {
          double acc = 0.0;
          for (int64_t j = 0; j < c.d; ++j) {
            double w = c.inOut ? w1[(ei * c.d + j) * c.f + i] : w1[(ei * c.f + i) * c.d + j];
            acc += w * xr[j];
          }
          h[i] = applyAct(acc, c.act);
        }
        for (int64_t o = 0; o < c.d; ++o) {
          double acc = 0.0;
          for (int64_t i = 0; i < c.f; ++i) {
            double w = c.inOut ? w2[(ei * c.f + i) * c.d + o] : w2[(ei * c.d + o) * c.f + i];
            acc += w * h[i];
          }
          y(row, o) += col[t] * acc;
        }
      }
    }
  }
  if (c.epilogue)
    for (int64_t r = 0; r < y.rows; ++r)
      for (int64_t o = 0; o < c.d; ++o)
        y(r, o) = residual.at(r, o) + double(gate.at(r / rowsPerGate, o)) * y(r, o);
  return y;
}

/// Draws tokens until no expert's k-th and (k+1)-th probabilities are
/// closer than kGap in any sample.
Buffer expertChoiceInputs(Rng &rng, const ExpertChoiceCase &c, const std::vector<float> &router) {
  int64_t k = static_cast<int64_t>(c.capacity * double(c.tokens) / double(c.e));
  for (;;) {
    Buffer x = normalBuffer(rng, c.batch * c.tokens, c.d, c.d + 2);
    bool clear = true;
    for (int64_t b = 0; b < c.batch && clear; ++b) {
      std::vector<std::vector<double>> p;
      for (int64_t t = 0; t < c.tokens; ++t)
        p.push_back(routerProbs(&x.at(b * c.tokens + t, 0), router, c.e, c.d));
      for (int64_t ei = 0; ei < c.e && clear; ++ei) {
        std::vector<double> col(static_cast<size_t>(c.tokens));
        for (int64_t t = 0; t < c.tokens; ++t)
          col[t] = p[t][ei];
        clear = clearBoundary(col, k);
      }
    }
    if (clear)
      return x;
  }
}

void runExpertChoice(Rng &rng, const ExpertChoiceCase &c, Buffer *given = nullptr,
                     const std::vector<float> *givenRouter = nullptr,
                     std::vector<int64_t> *chosen = nullptr, Buffer *result = nullptr) {
  SCOPED_TRACE(::testing::Message() << "batch " << c.batch << " tokens " << c.tokens << " d "
                                    << c.d << " experts " << c.e << " hidden " << c.f
                                    << " capacity " << c.capacity << " inOut " << c.inOut
                                    << " act " << actName(c.act) << " epilogue " << c.epilogue);
  std::vector<float> router =
      givenRouter ? *givenRouter : rng.normal(c.e * c.d, 1.0 / std::sqrt(double(c.d)));
  Buffer x = given ? *given : expertChoiceInputs(rng, c, router);
  std::vector<float> w1 = rng.normal(c.e * c.d * c.f, 1.0 / std::sqrt(double(c.d)));
  std::vector<float> w2 = rng.normal(c.e * c.f * c.d, 1.0 / std::sqrt(double(c.f)));
  int64_t rows = c.batch * c.tokens, rowsPerGate = c.tokens;
  Buffer residual = normalBuffer(rng, rows, c.d), gate = normalBuffer(rng, c.batch, c.d);
  std::vector<int64_t> chosenCount;
  Ref ref = expertChoiceReference(x, router, w1, w2, c, residual, gate, rowsPerGate, &chosenCount);

  ExpertChoiceArgs args;
  args.router = router.data();
  args.experts = c.e;
  args.hidden = c.f;
  args.tokens = c.tokens;
  args.capacity = c.capacity;
  args.inOut = c.inOut;
  args.act = c.act;
  args.w1 = w1.data();
  args.w2 = w2.data();
  GatedResidual epi{residual.cmat(), gate.cmat(), rowsPerGate};
  args.epilogue = c.epilogue ? &epi : nullptr;
  Buffer out = poisonedBuffer(rows, c.d, c.d + 1);
  moeExpertChoice(x.cmat(), args, out.mat());
  expectMatches(out, ref);
  if (chosen)
    *chosen = chosenCount;
  if (result)
    *result = out;
}

TEST(CpuMoeExpertChoice, BothLayoutsAndBothGelus) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (bool inOut : {true, false})
    for (Act act : {Act::Gelu, Act::GeluTanh})
      for (bool epilogue : {false, true})
        runExpertChoice(rng, {2, 32, 24, 8, 48, 2.0, inOut, act, epilogue});
  // A capacity that does not divide evenly: int(1.5 · 30 / 4) = 11.
  runExpertChoice(rng, {3, 30, 16, 4, 20, 1.5, true, Act::Gelu, false});
}

TEST(CpuMoeExpertChoice, TokensChosenByNoExpertGetZero) {
  // int(0.5 · 40 / 4) = 5 tokens per expert: at most 20 of 40 tokens per
  // sample are chosen, so at least half get nothing from the MoE.
  Rng rng;
  SCOPED_TRACE(rng.trace());
  ExpertChoiceCase c{2, 40, 16, 4, 24, 0.5, true, Act::Gelu, false};
  std::vector<int64_t> chosen;
  Buffer out;
  runExpertChoice(rng, c, nullptr, nullptr, &chosen, &out);
  int64_t unchosen = 0;
  for (int64_t r = 0; r < out.rows; ++r) {
    if (chosen[r] != 0)
      continue;
    ++unchosen;
    for (int64_t j = 0; j < out.cols; ++j)
      EXPECT_EQ(out.at(r, j), 0.0f) << "token " << r << " was chosen by no expert";
  }
  EXPECT_GE(unchosen, 40);
}

TEST(CpuMoeExpertChoice, TiesGoToTheLowerTokenIndex) {
  // Tokens 2 and 5 of each sample are the same integer vector 3·u, and the
  // router has integer rows (u for expert 0, near -2·u for the others), so
  // their logits are exact and their probabilities identical; they dominate
  // expert 0's column. With k = int(0.5 · 8 / 4) = 1 only token 2 may be
  // taken. The other tokens are redrawn until experts 1..3 have clear
  // winners.
  Rng rng;
  SCOPED_TRACE(rng.trace());
  ExpertChoiceCase c{2, 8, 12, 4, 16, 0.5, false, Act::GeluTanh, false};
  std::vector<float> u = smallIntegers(rng, c.d);
  std::vector<float> router(static_cast<size_t>(c.e * c.d));
  for (int64_t ei = 0; ei < c.e; ++ei) {
    std::vector<float> noise = smallIntegers(rng, c.d);
    for (int64_t j = 0; j < c.d; ++j)
      router[ei * c.d + j] = ei == 0 ? u[j] : -2.0f * u[j] + (noise[j] > 0 ? 1.0f : -1.0f);
  }
  Buffer x;
  for (bool clear = false; !clear;) {
    x = normalBuffer(rng, c.batch * c.tokens, c.d, 0, 0.3);
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t t : {2, 5})
        for (int64_t j = 0; j < c.d; ++j)
          x.at(b * c.tokens + t, j) = 3.0f * u[j];
    clear = true;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t ei = 1; ei < c.e; ++ei) {
        std::vector<double> col;
        for (int64_t t = 0; t < c.tokens; ++t)
          col.push_back(routerProbs(&x.at(b * c.tokens + t, 0), router, c.e, c.d)[ei]);
        clear = clear && clearBoundary(col, 1);
      }
  }
  std::vector<int64_t> chosen;
  runExpertChoice(rng, c, &x, &router, &chosen);
  for (int64_t b = 0; b < c.batch; ++b) {
    EXPECT_GE(chosen[b * c.tokens + 2], 1) << "sample " << b;
    EXPECT_EQ(chosen[b * c.tokens + 5], 0) << "sample " << b;
  }
}

TEST(CpuMoeExpertChoice, RejectsACapacityBelowOneTokenPerExpert) {
  Buffer x(8, 4), out(8, 4);
  std::vector<float> router(16, 0.0f), w(4 * 4 * 4, 0.0f);
  ExpertChoiceArgs args;
  args.router = router.data();
  args.experts = 4;
  args.hidden = 4;
  args.tokens = 8;
  args.capacity = 0.25;
  args.w1 = w.data();
  args.w2 = w.data();
  EXPECT_DIFFRT_ERROR(moeExpertChoice(x.cmat(), args, out.mat()), "moeExpertChoice", "capacity");
}

} // namespace
} // namespace diffrt::cpu::testing
