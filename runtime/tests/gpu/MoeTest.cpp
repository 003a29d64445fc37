//===- MoeTest.cpp - GPU mixtures of experts vs the CPU reference ---------===//
//
// Token choice (top-1 and top-2, renormalised weights, the shared expert,
// the gated-residual epilogue, output aliasing the residual) and expert
// choice (both MicroDiT weight layouts, both GELUs, capacities that do not
// divide evenly) against cpu::moeTokenChoice / cpu::moeExpertChoice on the
// same rounded inputs, on the tensor-core path and on the SIMT fallback
// (widths that are not multiples of 8). Routing is exercised with skewed
// traffic, experts that receive no token, and constructed exact ties that
// the lower index must win; the routed counts must equal the CPU's.
//
// Routing compares probabilities, so random inputs whose ranking could
// differ between the two float32 computations (a gap below 1e-4 at the
// selection boundary, measured in double) are redrawn: the test is about
// the kernels, not about rounding coin flips.
//
// MoeTiming reports the layer time at DiT-MoE-S and -XL shapes and asserts
// nothing about speed.
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"
#include "../MoeTestSupport.h"

#include <cstdio>
#include <numeric>

namespace diffrt::cuda::testing {
namespace {

using diffrt::testsupport::clearBoundary;
using diffrt::testsupport::kGap;
using diffrt::testsupport::routerProbs;



/// Small nonzero integers: exact in every type and every summation order,
/// so constructed ties stay exact on both sides.
std::vector<float> smallIntegers(Rng &rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float &x : v) {
    int64_t i = rng.integer(-2, 1);
    x = float(i >= 0 ? i + 1 : i);
  }
  return v;
}

DeviceBuffer uploadInt64(int64_t n, int64_t fill) {
  std::vector<int64_t> v(static_cast<size_t>(n), fill);
  DeviceBuffer buf(v.size() * sizeof(int64_t));
  cudaOk(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(int64_t), cudaMemcpyHostToDevice),
         "upload counts");
  return buf;
}

//===----------------------------------------------------------------------===//
// Token choice
//===----------------------------------------------------------------------===//

struct TokenSetup {
  DType t;
  int64_t m, d, e, f, fs;
  HostMat x;
  std::vector<float> router, gate, up, down, sGate, sUp, sDown;
  HostMat residual, gateEpi;
  int64_t rowsPerGate = 1;
};

/// Random weights (rounded to t) and tokens whose top-k boundary is clear.
TokenSetup makeTokenSetup(Rng &rng, DType t, int64_t m, int64_t d, int64_t e, int64_t f,
                          int64_t topK, int64_t ldPad) {
  TokenSetup s;
  s.t = t;
  s.m = m;
  s.d = d;
  s.e = e;
  s.f = f;
  s.fs = 2 * d;
  s.x = HostMat(m, d, d + ldPad);
  s.router = rng.normal(e * d, 1.0 / std::sqrt(double(d)), 0.0, t);
  for (int64_t r = 0; r < m; ++r) {
    std::vector<float> row;
    do
      row = rng.normal(d, 1.0, 0.0, t);
    while (!clearBoundary(routerProbs(row.data(), s.router, e, d), topK));
    std::copy(row.begin(), row.end(), s.x.row(r));
  }
  const double sd = 1.0 / std::sqrt(double(d)), sf = 1.0 / std::sqrt(double(f));
  s.gate = rng.normal(e * f * d, sd, 0.0, t);
  s.up = rng.normal(e * f * d, sd, 0.0, t);
  s.down = rng.normal(e * d * f, sf, 0.0, t);
  s.sGate = rng.normal(s.fs * d, sd, 0.0, t);
  s.sUp = rng.normal(s.fs * d, sd, 0.0, t);
  s.sDown = rng.normal(d * s.fs, 1.0 / std::sqrt(double(s.fs)), 0.0, t);
  s.rowsPerGate = m % 2 == 0 ? m / 2 : m;
  s.residual = randomMat(rng, t, m, d, d + 1);
  s.gateEpi = randomMat(rng, t, m / s.rowsPerGate, d);
  return s;
}

/// Runs both implementations; returns the GPU's routed counts.
std::vector<int64_t> checkTokenChoice(const TokenSetup &s, int64_t topK, bool normalize,
                                      bool shared, bool epilogue, bool alias) {
  SCOPED_TRACE(::testing::Message() << dtypeName(s.t) << " m " << s.m << " d " << s.d
                                    << " experts " << s.e << " hidden " << s.f << " topK "
                                    << topK << " normalize " << normalize << " shared " << shared
                                    << " epilogue " << epilogue << " alias " << alias);
  const DType t = s.t;
  // CPU reference on the same rounded values.
  cpu::TokenChoiceArgs ca;
  ca.router = s.router.data();
  ca.experts = s.e;
  ca.hidden = s.f;
  ca.topK = topK;
  ca.normalize = normalize;
  ca.gate = s.gate.data();
  ca.up = s.up.data();
  ca.down = s.down.data();
  if (shared) {
    ca.sharedGate = s.sGate.data();
    ca.sharedUp = s.sUp.data();
    ca.sharedDown = s.sDown.data();
    ca.sharedHidden = s.fs;
  }
  cpu::GatedResidual cepi{s.residual.cmat(), s.gateEpi.cmat(), s.rowsPerGate};
  ca.epilogue = epilogue ? &cepi : nullptr;
  std::vector<int64_t> refCounts(static_cast<size_t>(s.e), -1);
  ca.routedCounts = refCounts.data();
  HostMat ref(s.m, s.d);
  cpu::moeTokenChoice(s.x.cmat(), ca, ref.mat());

  DevMat dx = toDevice(s.x, t), dres = toDevice(s.residual, t), dgate = toDevice(s.gateEpi, t);
  DeviceBuffer drouter = upload(t, s.router), dg = upload(t, s.gate), du = upload(t, s.up),
               dd = upload(t, s.down), dsg = upload(t, s.sGate), dsu = upload(t, s.sUp),
               dsd = upload(t, s.sDown);
  DeviceBuffer counts = uploadInt64(s.e, -1);
  TokenChoiceArgs ga;
  ga.router = drouter.get();
  ga.experts = s.e;
  ga.hidden = s.f;
  ga.topK = topK;
  ga.normalize = normalize;
  ga.gate = dg.get();
  ga.up = du.get();
  ga.down = dd.get();
  if (shared) {
    ga.sharedGate = dsg.get();
    ga.sharedUp = dsu.get();
    ga.sharedDown = dsd.get();
    ga.sharedHidden = s.fs;
  }
  GatedResidual gepi{dres.c(), dgate.c(), s.rowsPerGate};
  ga.epilogue = epilogue ? &gepi : nullptr;
  ga.routedCounts = counts.as<int64_t>();
  const size_t wsBytes = moeTokenChoiceWorkspaceBytes(s.m, s.d, ga, t);
  DeviceBuffer ws(wsBytes);
  DevMat dout = toDevice(poisonedMat(s.m, s.d, s.d + 2), t);
  Gemm gemm;
  moeTokenChoice(nullptr, gemm, t, dx.c(), ga, alias ? dres.m() : dout.m(), {ws.get(), wsBytes});
  syncDevice();
  expectClose(toHost(alias ? dres : dout), ref, t);

  std::vector<int64_t> got(static_cast<size_t>(s.e));
  cudaOk(cudaMemcpy(got.data(), counts.get(), got.size() * sizeof(int64_t),
                    cudaMemcpyDeviceToHost),
         "download counts");
  EXPECT_EQ(got, refCounts) << "routed counts";
  return got;
}

TEST(GpuMoeTokenChoice, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Flags {
    bool normalize, shared, epilogue;
  };
  for (DType t : floatTypes())
    for (int64_t topK : {1, 2}) {
      TokenSetup s = makeTokenSetup(rng, t, rng.integer(150, 300), 64, 8, 96, topK, 8);
      for (Flags fl : {Flags{false, false, false}, Flags{true, true, true},
                       Flags{false, true, false}, Flags{true, false, true}})
        checkTokenChoice(s, topK, fl.normalize, fl.shared, fl.epilogue, false);
      checkTokenChoice(s, topK, false, true, true, true);
    }
}

TEST(GpuMoeTokenChoice, SeveralTilesPerExpert) {
  // 2048 tokens x top 2 over 8 experts: several 128-row tiles per expert,
  // partial last tiles, 8 K steps in the up projection and 16 in the down.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    TokenSetup s = makeTokenSetup(rng, t, 2048, 256, 8, 512, 2, 0);
    checkTokenChoice(s, 2, false, true, true, false);
  }
}

TEST(GpuMoeTokenChoice, WidthsOffTheTensorCorePath) {
  // d = 36 and hidden 40 are not multiples of 8: the SIMT grouped GEMM.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    TokenSetup s = makeTokenSetup(rng, t, 120, 36, 6, 40, 2, 3);
    checkTokenChoice(s, 2, true, true, true, false);
  }
}

TEST(GpuMoeTokenChoice, TiesGoToTheLowerExpertIndex) {
  // Router rows 1, 3 and 5 are the integer vector u, the others -u, and
  // every token is a multiple a·u: experts 1, 3, 5 tie exactly for the top.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 40, d = 16, e = 6, f = 24;
  for (DType t : floatTypes()) {
    TokenSetup s = makeTokenSetup(rng, t, m, d, e, f, 1, 0);
    std::vector<float> u = smallIntegers(rng, d);
    for (int64_t i = 0; i < e; ++i)
      for (int64_t j = 0; j < d; ++j)
        s.router[i * d + j] = i % 2 == 1 ? u[j] : -u[j];
    for (int64_t r = 0; r < m; ++r) {
      const float a = float(rng.integer(1, 3));
      for (int64_t j = 0; j < d; ++j)
        s.x.at(r, j) = a * u[j];
    }
    EXPECT_EQ(checkTokenChoice(s, 1, false, false, false, false),
              (std::vector<int64_t>{0, m, 0, 0, 0, 0}));
    EXPECT_EQ(checkTokenChoice(s, 2, true, true, false, false),
              (std::vector<int64_t>{0, m, 0, m, 0, 0}));
  }
}

TEST(GpuMoeTokenChoice, SkewedRoutingAndExpertsWithoutTokens) {
  // Every token is near u. Expert 0's router row is 2u/|u|² (logit about
  // 2), experts 1-3 random (logits about ±0.2), experts 4-7 -4u/|u|² (about
  // -4): expert 0 takes every token, experts 4-7 none, so one group spans
  // several tiles while four groups are empty.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 300, d = 32, e = 8, f = 48;
  for (DType t : floatTypes()) {
    TokenSetup s = makeTokenSetup(rng, t, m, d, e, f, 2, 0);
    std::vector<float> u = rng.normal(d, 1.0 / std::sqrt(double(d)), 0.0, t);
    double norm2 = 0.0;
    for (float v : u)
      norm2 += double(v) * v;
    for (int64_t j = 0; j < d; ++j) {
      s.router[j] = roundTo(t, static_cast<float>(2.0 * u[j] / norm2));
      for (int64_t i = 4; i < e; ++i)
        s.router[i * d + j] = roundTo(t, static_cast<float>(-4.0 * u[j] / norm2));
    }
    for (int64_t r = 0; r < m; ++r) {
      std::vector<float> row;
      do {
        row = rng.normal(d, 0.3 / std::sqrt(double(d)), 0.0, t);
        for (int64_t j = 0; j < d; ++j)
          row[j] = roundTo(t, row[j] + u[j]);
      } while (!clearBoundary(routerProbs(row.data(), s.router, e, d), 2));
      std::copy(row.begin(), row.end(), s.x.row(r));
    }
    std::vector<int64_t> counts = checkTokenChoice(s, 2, false, true, true, false);
    EXPECT_EQ(counts[0], m) << "expert 0 should take every token";
    for (int64_t i = 4; i < e; ++i)
      EXPECT_EQ(counts[i], 0) << "expert " << i;
  }
}

//===----------------------------------------------------------------------===//
// Expert choice
//===----------------------------------------------------------------------===//

struct ExpertCase {
  int64_t batch, tokens, d, e, f;
  double capacity;
  bool inOut;
  Act act;
  bool epilogue;
  int64_t ldPad;
};

int64_t capacityOf(const ExpertCase &c) {
  return static_cast<int64_t>(c.capacity * double(c.tokens) / double(c.e));
}

/// Tokens whose per-(sample, expert) k-th/(k+1)-th probabilities are clear.
HostMat expertInputs(Rng &rng, DType t, const ExpertCase &c, const std::vector<float> &router) {
  const int64_t k = capacityOf(c);
  for (;;) {
    HostMat x = randomMat(rng, t, c.batch * c.tokens, c.d, c.d + c.ldPad);
    bool clear = true;
    for (int64_t b = 0; b < c.batch && clear; ++b) {
      std::vector<std::vector<double>> p;
      for (int64_t i = 0; i < c.tokens; ++i)
        p.push_back(routerProbs(x.row(b * c.tokens + i), router, c.e, c.d));
      for (int64_t ei = 0; ei < c.e && clear; ++ei) {
        std::vector<double> col(static_cast<size_t>(c.tokens));
        for (int64_t i = 0; i < c.tokens; ++i)
          col[i] = p[i][ei];
        clear = clearBoundary(col, k);
      }
    }
    if (clear)
      return x;
  }
}

/// Runs both implementations; returns the GPU result.
HostMat runExpertChoice(Rng &rng, DType t, const ExpertCase &c, const HostMat *givenX = nullptr,
                        const std::vector<float> *givenRouter = nullptr) {
  SCOPED_TRACE(::testing::Message() << dtypeName(t) << " batch " << c.batch << " tokens "
                                    << c.tokens << " d " << c.d << " experts " << c.e
                                    << " hidden " << c.f << " capacity " << c.capacity
                                    << " inOut " << c.inOut << " act " << static_cast<int>(c.act)
                                    << " epilogue " << c.epilogue);
  std::vector<float> router =
      givenRouter ? *givenRouter : rng.normal(c.e * c.d, 1.0 / std::sqrt(double(c.d)), 0.0, t);
  HostMat x = givenX ? *givenX : expertInputs(rng, t, c, router);
  std::vector<float> w1 = rng.normal(c.e * c.d * c.f, 1.0 / std::sqrt(double(c.d)), 0.0, t);
  std::vector<float> w2 = rng.normal(c.e * c.f * c.d, 1.0 / std::sqrt(double(c.f)), 0.0, t);
  const int64_t rows = c.batch * c.tokens;
  HostMat residual = randomMat(rng, t, rows, c.d), gate = randomMat(rng, t, c.batch, c.d);

  cpu::ExpertChoiceArgs ca;
  ca.router = router.data();
  ca.experts = c.e;
  ca.hidden = c.f;
  ca.tokens = c.tokens;
  ca.capacity = c.capacity;
  ca.inOut = c.inOut;
  ca.act = c.act;
  ca.w1 = w1.data();
  ca.w2 = w2.data();
  cpu::GatedResidual cepi{residual.cmat(), gate.cmat(), c.tokens};
  ca.epilogue = c.epilogue ? &cepi : nullptr;
  HostMat ref(rows, c.d);
  cpu::moeExpertChoice(x.cmat(), ca, ref.mat());

  DevMat dx = toDevice(x, t), dres = toDevice(residual, t), dgate = toDevice(gate, t);
  DeviceBuffer drouter = upload(t, router), dw1 = upload(t, w1), dw2 = upload(t, w2);
  ExpertChoiceArgs ga;
  ga.router = drouter.get();
  ga.experts = c.e;
  ga.hidden = c.f;
  ga.tokens = c.tokens;
  ga.capacity = c.capacity;
  ga.inOut = c.inOut;
  ga.act = c.act;
  ga.w1 = dw1.get();
  ga.w2 = dw2.get();
  GatedResidual gepi{dres.c(), dgate.c(), c.tokens};
  ga.epilogue = c.epilogue ? &gepi : nullptr;
  const size_t wsBytes = moeExpertChoiceWorkspaceBytes(rows, c.d, ga, t);
  DeviceBuffer ws(wsBytes);
  DevMat dout = toDevice(poisonedMat(rows, c.d, c.d + 1), t);
  Gemm gemm;
  moeExpertChoice(nullptr, gemm, t, dx.c(), ga, dout.m(), {ws.get(), wsBytes});
  syncDevice();
  HostMat got = toHost(dout);
  expectClose(got, ref, t);
  return got;
}

TEST(GpuMoeExpertChoice, BothLayoutsAndBothGelus) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    for (bool inOut : {true, false})
      for (Act act : {Act::Gelu, Act::GeluTanh})
        runExpertChoice(rng, t, {2, 64, 64, 8, 128, 2.0, inOut, act, inOut, 8});
    // int(1.5 · 50 / 4) = 18 tokens per expert, 50 tokens per sample.
    runExpertChoice(rng, t, {3, 50, 32, 4, 40, 1.5, true, Act::Gelu, false, 0});
    // Widths off the tensor-core path (SIMT grouped GEMM).
    runExpertChoice(rng, t, {2, 30, 36, 4, 20, 2.0, false, Act::GeluTanh, true, 3});
    // MicroDiT-like: 256 kept tokens, k = 64, several tiles per expert.
    runExpertChoice(rng, t, {4, 256, 128, 8, 256, 2.0, true, Act::Gelu, true, 0});
  }
}

TEST(GpuMoeExpertChoice, TiesGoToTheLowerTokenIndex) {
  // Every token of a sample is the same integer vector, so every expert
  // sees a tie between all tokens and must pick tokens 0..k-1; the others
  // get nothing from the layer (no epilogue: exactly zero).
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const ExpertCase c{2, 32, 16, 4, 24, 1.0, true, Act::Gelu, false, 0};
  const int64_t k = capacityOf(c);
  for (DType t : floatTypes()) {
    std::vector<float> router = smallIntegers(rng, c.e * c.d);
    HostMat x(c.batch * c.tokens, c.d);
    for (int64_t b = 0; b < c.batch; ++b) {
      std::vector<float> u = smallIntegers(rng, c.d);
      for (int64_t i = 0; i < c.tokens; ++i)
        std::copy(u.begin(), u.end(), x.row(b * c.tokens + i));
    }
    HostMat got = runExpertChoice(rng, t, c, &x, &router);
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t i = k; i < c.tokens; ++i)
        for (int64_t j = 0; j < c.d; ++j)
          EXPECT_EQ(got.at(b * c.tokens + i, j), 0.0f)
              << dtypeName(t) << ": sample " << b << " token " << i << " was not picked";
  }
}

//===----------------------------------------------------------------------===//
// Timing (reports only)
//===----------------------------------------------------------------------===//

TEST(GpuMoeTokenChoice, Timing) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const DType t = DType::BF16;
  const int64_t m = 16384, e = 8, topK = 2;
  for (auto [name, d] : {std::pair<const char *, int64_t>{"DiT-MoE-S", 384}, {"DiT-MoE-XL", 1152}}) {
    const int64_t f = 4 * d, fs = 2 * d;
    HostMat x = randomMat(rng, t, m, d);
    std::vector<float> router = rng.normal(e * d, 1.0 / std::sqrt(double(d)), 0.0, t);
    const double sd = 1.0 / std::sqrt(double(d));
    DevMat dx = toDevice(x, t);
    DeviceBuffer drouter = upload(t, router);
    DeviceBuffer dg = upload(t, rng.normal(e * f * d, sd, 0.0, t));
    DeviceBuffer du = upload(t, rng.normal(e * f * d, sd, 0.0, t));
    DeviceBuffer dd = upload(t, rng.normal(e * d * f, 1.0 / std::sqrt(double(f)), 0.0, t));
    DeviceBuffer dsg = upload(t, rng.normal(fs * d, sd, 0.0, t));
    DeviceBuffer dsu = upload(t, rng.normal(fs * d, sd, 0.0, t));
    DeviceBuffer dsd = upload(t, rng.normal(d * fs, 1.0 / std::sqrt(double(fs)), 0.0, t));
    DevMat dout = toDevice(poisonedMat(m, d), t);
    Gemm gemm;
    for (bool shared : {false, true}) {
      TokenChoiceArgs a;
      a.router = drouter.get();
      a.experts = e;
      a.hidden = f;
      a.topK = topK;
      a.gate = dg.get();
      a.up = du.get();
      a.down = dd.get();
      if (shared) {
        a.sharedGate = dsg.get();
        a.sharedUp = dsu.get();
        a.sharedDown = dsd.get();
        a.sharedHidden = fs;
      }
      const size_t wsBytes = moeTokenChoiceWorkspaceBytes(m, d, a, t);
      DeviceBuffer ws(wsBytes);
      auto run = [&] { moeTokenChoice(nullptr, gemm, t, dx.c(), a, dout.m(), {ws.get(), wsBytes}); };
      for (int i = 0; i < 3; ++i)
        run();
      syncDevice("warm-up");
      constexpr int kReps = 20;
      std::vector<float> ms;
      cudaEvent_t start, stop;
      cudaOk(cudaEventCreate(&start), "event");
      cudaOk(cudaEventCreate(&stop), "event");
      for (int i = 0; i < kReps; ++i) {
        cudaOk(cudaEventRecord(start), "event");
        run();
        cudaOk(cudaEventRecord(stop), "event");
        cudaOk(cudaEventSynchronize(stop), "event");
        float v = 0.0f;
        cudaOk(cudaEventElapsedTime(&v, start, stop), "event");
        ms.push_back(v);
      }
      cudaEventDestroy(start);
      cudaEventDestroy(stop);
      std::sort(ms.begin(), ms.end());
      const double median = ms[ms.size() / 2] * 1e-3;
      // Routed experts: 3 products of d x f per slot; router d x e per
      // token; the shared expert 3 products of d x fs per token.
      const double routed = 2.0 * m * topK * 3.0 * double(d) * double(f);
      const double total = routed + 2.0 * m * d * e + (shared ? 2.0 * m * 3.0 * d * fs : 0.0);
      std::printf("[ MoeTiming ] %-10s rows %lld d %lld experts %lld top %lld%s: %.3f ms, "
                  "%.1f TFLOP/s (routed experts %.1f TFLOP/s of their own FLOPs)\n",
                  name, static_cast<long long>(m), static_cast<long long>(d),
                  static_cast<long long>(e), static_cast<long long>(topK),
                  shared ? " + shared expert" : "", median * 1e3, total / median * 1e-12,
                  routed / median * 1e-12);
    }
  }
}

} // namespace
} // namespace diffrt::cuda::testing
