//===- GradMoeTest.cpp - GPU MoE backward vs the CPU reference ------------===//
//
// cuda::moeTokenChoiceBackward and cuda::moeExpertChoiceBackward against
// cpu::moeTokenChoiceBackward / cpu::moeExpertChoiceBackward on the same
// rounded inputs: every gradient (dX, dRouter, the experts', the shared
// expert's, the epilogue gate's) for f32, bf16 and f16, with and without
// the shared expert and the gated-residual epilogue, renormalised weights
// on and off, the balance loss on and off, odd token counts, strided
// views, widths off the tensor-core path, exact router ties, and experts
// that receive no token (whose weight gradients must be written as zeros).
//
// As in MoeTest, random tokens whose routing could differ between the two
// float32 router computations (a probability gap below 1e-4 at the
// selection boundary) are redrawn: the test is about the gradients.
//
// Tolerances. f32: both sides compute in f32 (the GPU's grouped products
// on the SIMT path are exact f32), only summation orders differ, so 3e-5
// norm-wise. 16-bit: the GPU stores every intermediate of the chain
// (G, U, H, Y, w·dy, dH, dG, dU, the dX parts) in the element type, as the
// forward does, while the CPU keeps them in f32; a gradient passes through
// about six such roundings, each of relative size 2^-9 (bf16) or 2^-12
// (f16), and the router's gradient takes differences of routing-weight
// gradients (dw_s − Σ_j w_j·dw_j) that cancel. Norm-wise bounds of about
// 16-25 roundings (bf16 5e-2, f16 8e-3) cover that with margin yet catch any
// indexing or layout error (which gives O(1) errors); element-wise bounds
// are relative to the largest reference value (elements near zero take
// absolute errors of the size of their neighbours').
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CudaGradKernels.h"

#include "../MoeTestSupport.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace diffrt::cuda::testing {
namespace {

using diffrt::testsupport::clearBoundary;
using diffrt::testsupport::kGap;
using diffrt::testsupport::routerProbs;

Tol gradTol(DType t) {
  switch (t) {
  case DType::BF16: return {5e-2, 1e-1};
  case DType::F16: return {8e-3, 2e-2};
  default: return {3e-5, 3e-4};
  }
}



/// A poisoned (NaN) device buffer of n values and its download.
DeviceBuffer poisonedBuffer(DType t, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n), kNaN);
  return upload(t, v);
}
HostMat downloadMat(DType t, const DeviceBuffer &buf, int64_t rows, int64_t cols) {
  HostMat h(rows, cols);
  h.v = download(t, buf.get(), static_cast<size_t>(rows * cols));
  return h;
}
HostMat hostOf(const std::vector<float> &v, int64_t rows, int64_t cols) {
  HostMat h(rows, cols);
  h.v = v;
  return h;
}

//===----------------------------------------------------------------------===//
// Token choice
//===----------------------------------------------------------------------===//

struct TokenCase {
  int64_t m, d, e, f, fs, topK;
  bool normalize, shared, epilogue;
  double balance;
  int64_t rowsPerGate, ldPad;
};

struct TokenData {
  HostMat x, dOut, residual, gateEpi;
  std::vector<float> router, gate, up, down, sGate, sUp, sDown;
};

TokenData tokenData(Rng &rng, DType t, const TokenCase &c) {
  TokenData s;
  const int64_t d = c.d, e = c.e, f = c.f, fs = c.fs;
  s.router = rng.normal(e * d, 1.0 / std::sqrt(double(d)), 0.0, t);
  s.x = HostMat(c.m, d, d + c.ldPad);
  for (int64_t r = 0; r < c.m; ++r) {
    std::vector<float> row;
    do
      row = rng.normal(d, 1.0, 0.0, t);
    while (!clearBoundary(routerProbs(row.data(), s.router, e, d), c.topK));
    std::copy(row.begin(), row.end(), s.x.row(r));
  }
  const double sd = 1.0 / std::sqrt(double(d));
  s.gate = rng.normal(e * f * d, sd, 0.0, t);
  s.up = rng.normal(e * f * d, sd, 0.0, t);
  s.down = rng.normal(e * d * f, 1.0 / std::sqrt(double(f)), 0.0, t);
  s.sGate = rng.normal(fs * d, sd, 0.0, t);
  s.sUp = rng.normal(fs * d, sd, 0.0, t);
  s.sDown = rng.normal(d * fs, 1.0 / std::sqrt(double(fs)), 0.0, t);
  s.dOut = randomMat(rng, t, c.m, d, d + 2 * c.ldPad);
  s.residual = randomMat(rng, t, c.m, d, d + 1);
  s.gateEpi = randomMat(rng, t, c.m / c.rowsPerGate, d, d + c.ldPad);
  return s;
}

/// Both implementations on the same data; every gradient compared. With
/// keepActivations the GPU forward first runs keeping the expert
/// activations (its output checked against the CPU forward), the backward
/// reads them, and a second backward that recomputes them must give the
/// same bits.
void checkTokenChoice(DType t, const TokenCase &c, const TokenData &s, bool checkRouter = true,
                      bool keepActivations = false) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(t) << " m " << c.m << " d " << c.d << " experts " << c.e
               << " hidden " << c.f << " shared " << c.shared << " (" << c.fs << ") topK "
               << c.topK << " normalize " << c.normalize << " epilogue " << c.epilogue
               << " balance " << c.balance << " rowsPerGate " << c.rowsPerGate
               << (keepActivations ? " keeping activations" : ""));
  const int64_t m = c.m, d = c.d, e = c.e, f = c.f, fs = c.fs;
  cpu::TokenChoiceArgs ca;
  ca.router = s.router.data();
  ca.experts = e;
  ca.hidden = f;
  ca.topK = c.topK;
  ca.normalize = c.normalize;
  ca.gate = s.gate.data();
  ca.up = s.up.data();
  ca.down = s.down.data();
  if (c.shared) {
    ca.sharedGate = s.sGate.data();
    ca.sharedUp = s.sUp.data();
    ca.sharedDown = s.sDown.data();
    ca.sharedHidden = fs;
  }
  cpu::GatedResidual cepi{s.residual.cmat(), s.gateEpi.cmat(), c.rowsPerGate};
  ca.epilogue = c.epilogue ? &cepi : nullptr;
  HostMat rdx(m, d), rdEpi(m / c.rowsPerGate, d);
  std::vector<float> rdRouter(e * d), rdGate(e * f * d), rdUp(e * f * d), rdDown(e * d * f);
  std::vector<float> rdsGate(fs * d), rdsUp(fs * d), rdsDown(d * fs);
  float loss = 0.0f;
  cpu::TokenChoiceGrads cg;
  cg.dX = rdx.mat();
  cg.dRouter = rdRouter.data();
  cg.dGate = rdGate.data();
  cg.dUp = rdUp.data();
  cg.dDown = rdDown.data();
  if (c.shared) {
    cg.dSharedGate = rdsGate.data();
    cg.dSharedUp = rdsUp.data();
    cg.dSharedDown = rdsDown.data();
  }
  if (c.epilogue)
    cg.dEpilogueGate = rdEpi.mat();
  cg.balanceCoef = c.balance;
  cg.balanceLoss = &loss;
  cpu::moeTokenChoiceBackward(s.x.cmat(), ca, s.dOut.cmat(), cg);

  DevMat dx = toDevice(s.x, t), ddOut = toDevice(s.dOut, t), dres = toDevice(s.residual, t),
         dgEpi = toDevice(s.gateEpi, t);
  DeviceBuffer drouter = upload(t, s.router), dg = upload(t, s.gate), du = upload(t, s.up),
               dd = upload(t, s.down), dsg = upload(t, s.sGate), dsu = upload(t, s.sUp),
               dsd = upload(t, s.sDown);
  TokenChoiceArgs ga;
  ga.router = drouter.get();
  ga.experts = e;
  ga.hidden = f;
  ga.topK = c.topK;
  ga.normalize = c.normalize;
  ga.gate = dg.get();
  ga.up = du.get();
  ga.down = dd.get();
  if (c.shared) {
    ga.sharedGate = dsg.get();
    ga.sharedUp = dsu.get();
    ga.sharedDown = dsd.get();
    ga.sharedHidden = fs;
  }
  GatedResidual gepi{dres.c(), dgEpi.c(), c.rowsPerGate};
  ga.epilogue = c.epilogue ? &gepi : nullptr;

  // Output pitches: whole 16-byte vectors when the inputs' are (ldPad 0),
  // so that both the vectorised and the element-wise dX and dEpilogueGate
  // kernels are checked.
  DevMat gdx = toDevice(poisonedMat(m, d, d + (c.ldPad == 0 ? 8 : c.ldPad + 3)), t);
  DevMat gdEpi = toDevice(poisonedMat(m / c.rowsPerGate, d, d + (c.ldPad == 0 ? 8 : 5)), t);
  DeviceBuffer gRouter = poisonedBuffer(t, e * d), gGate = poisonedBuffer(t, e * f * d),
               gUp = poisonedBuffer(t, e * f * d), gDown = poisonedBuffer(t, e * d * f),
               gsGate = poisonedBuffer(t, fs * d), gsUp = poisonedBuffer(t, fs * d),
               gsDown = poisonedBuffer(t, d * fs);
  TokenChoiceGrads gg;
  gg.dX = gdx.m();
  gg.dRouter = gRouter.get();
  gg.dGate = gGate.get();
  gg.dUp = gUp.get();
  gg.dDown = gDown.get();
  if (c.shared) {
    gg.dSharedGate = gsGate.get();
    gg.dSharedUp = gsUp.get();
    gg.dSharedDown = gsDown.get();
  }
  if (c.epilogue)
    gg.dEpilogueGate = gdEpi.m();
  gg.balanceCoef = c.balance;
  const size_t wsBytes = moeTokenChoiceBackwardWorkspaceBytes(m, d, ga, t);
  DeviceBuffer ws(wsBytes);
  Gemm gemm;
  DeviceBuffer activations = poisonedBuffer(t, moeTokenChoiceActivationElements(m, d, ga));
  if (keepActivations) {
    HostMat rOut(m, d);
    cpu::moeTokenChoice(s.x.cmat(), ca, rOut.mat());
    ga.activations = activations.get();
    const size_t fwdBytes = moeTokenChoiceWorkspaceBytes(m, d, ga, t, true);
    DeviceBuffer fws(fwdBytes);
    DevMat gout = toDevice(poisonedMat(m, d, d + 3), t);
    moeTokenChoice(nullptr, gemm, t, dx.c(), ga, gout.m(), {fws.get(), fwdBytes});
    syncDevice();
    SCOPED_TRACE("forward keeping activations");
    expectClose(toHost(gout), rOut, t, tolFor(t));
  }
  moeTokenChoiceBackward(nullptr, gemm, t, dx.c(), ga, ddOut.c(), gg, {ws.get(), wsBytes});
  syncDevice();
  if (keepActivations) {
    auto all = [&] {
      std::vector<float> v = download(t, gdx.data(), static_cast<size_t>(gdx.rows * gdx.ld));
      for (const DeviceBuffer *b : {&gRouter, &gGate, &gUp, &gDown, &gsGate, &gsUp, &gsDown}) {
        std::vector<float> part = download(t, b->get(), b->bytes() / dtypeSize(t));
        v.insert(v.end(), part.begin(), part.end());
      }
      if (c.epilogue) {
        std::vector<float> part = download(t, gdEpi.data(), static_cast<size_t>(gdEpi.rows * gdEpi.ld));
        v.insert(v.end(), part.begin(), part.end());
      }
      return v;
    };
    const std::vector<float> kept = all();
    TokenChoiceArgs recompute = ga;
    recompute.activations = nullptr;
    moeTokenChoiceBackward(nullptr, gemm, t, dx.c(), recompute, ddOut.c(), gg, {ws.get(), wsBytes});
    syncDevice();
    const std::vector<float> recomputed = all();
    EXPECT_EQ(std::memcmp(kept.data(), recomputed.data(), kept.size() * sizeof(float)), 0)
        << "gradients from kept activations differ from recomputed ones";
  }

  const Tol tol = gradTol(t);
  {
    SCOPED_TRACE("dX");
    expectClose(toHost(gdx), rdx, t, tol);
  }
  {
    SCOPED_TRACE("dRouter");
    if (checkRouter)
      expectClose(downloadMat(t, gRouter, e, d), hostOf(rdRouter, e, d), t, tol);
  }
  {
    SCOPED_TRACE("dGate");
    expectClose(downloadMat(t, gGate, e * f, d), hostOf(rdGate, e * f, d), t, tol);
  }
  {
    SCOPED_TRACE("dUp");
    expectClose(downloadMat(t, gUp, e * f, d), hostOf(rdUp, e * f, d), t, tol);
  }
  {
    SCOPED_TRACE("dDown");
    expectClose(downloadMat(t, gDown, e * d, f), hostOf(rdDown, e * d, f), t, tol);
  }
  if (c.shared) {
    SCOPED_TRACE("shared expert");
    expectClose(downloadMat(t, gsGate, fs, d), hostOf(rdsGate, fs, d), t, tol);
    expectClose(downloadMat(t, gsUp, fs, d), hostOf(rdsUp, fs, d), t, tol);
    expectClose(downloadMat(t, gsDown, d, fs), hostOf(rdsDown, d, fs), t, tol);
  }
  if (c.epilogue) {
    SCOPED_TRACE("dEpilogueGate");
    expectClose(toHost(gdEpi), rdEpi, t, tol);
  }
}

TEST(GradMoeTokenChoice, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Flags {
    bool normalize, shared, epilogue;
    double balance;
  };
  for (DType t : floatTypes())
    for (int64_t topK : {1, 2}) {
      // Odd token count, one gate row per sample of 73 tokens.
      TokenCase c{219, 64, 8, 96, 128, topK, false, false, false, 0.0, 73, 8};
      TokenData s = tokenData(rng, t, c);
      for (Flags fl : {Flags{false, false, false, 0.0}, Flags{true, true, true, 0.0},
                       Flags{false, true, false, 0.5}, Flags{true, false, true, 0.25},
                       Flags{false, true, true, 0.01}}) {
        c.normalize = fl.normalize;
        c.shared = fl.shared;
        c.epilogue = fl.epilogue;
        c.balance = fl.balance;
        checkTokenChoice(t, c, s);
        checkTokenChoice(t, c, s, true, true);
      }
    }
}

TEST(GradMoeTokenChoice, WidthsOffTheTensorCorePath) {
  // d 36, hidden 40, shared hidden 20: not multiples of 8 (SIMT grouped
  // products), odd token count, a single gate row.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    TokenCase c{121, 36, 6, 40, 20, 2, true, true, true, 0.1, 121, 3};
    checkTokenChoice(t, c, tokenData(rng, t, c));
  }
}

TEST(GradMoeTokenChoice, RouterBlockingChunkScanAndOddWidths) {
  // The router's token blocking (7 experts: 4 tokens a warp, 12: 4, 20: 2,
  // 64: 1) with token counts that leave a partial block and a strided x
  // (element path); the parallel chunk scan with several chunks per
  // segment (64 experts: 16 segments, 5000 slots = 20 chunks; 7 experts:
  // 146 segments, 37503 slots = 147 chunks) and empty segments; hidden
  // widths that make slots x hidden odd, so the vectorised SwiGLU passes
  // take their element tail for every type.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    for (TokenCase c : {TokenCase{2500, 32, 64, 24, 8, 2, true, false, false, 0.1, 2500, 0},
                        TokenCase{12501, 16, 7, 11, 9, 3, false, true, true, 0.05, 3, 0},
                        TokenCase{333, 24, 12, 13, 5, 2, true, true, true, 0.0, 111, 3},
                        TokenCase{205, 24, 20, 16, 8, 3, false, true, false, 0.2, 41, 5}}) {
      SCOPED_TRACE(::testing::Message() << c.m << " tokens, " << c.e << " experts");
      checkTokenChoice(t, c, tokenData(rng, t, c));
    }
  }
}

TEST(GradMoeTokenChoice, FashionMnistAndDitMoeSShapes) {
  // dit-moe-fmnist: d 96, 4 experts of hidden 384, shared hidden 192, top 2,
  // 64 tokens per sample, balance 0.01 (16 samples). DiT-MoE-S: d 384, 8
  // experts of 1536, shared 768, 256 tokens per sample (2 samples).
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    TokenCase fm{1024, 96, 4, 384, 192, 2, false, true, true, 0.01, 64, 0};
    checkTokenChoice(t, fm, tokenData(rng, t, fm));
    TokenCase ss{512, 384, 8, 1536, 768, 2, false, true, true, 0.01, 256, 0};
    checkTokenChoice(t, ss, tokenData(rng, t, ss));
  }
}

TEST(GradMoeTokenChoice, TiesGoToTheLowerExpertIndex) {
  // Router rows 1, 3, 5 are the integer vector u, the others -u; every token
  // is a·u: experts 1, 3, 5 tie exactly. Top 1 must pick expert 1, top 2
  // experts 1 and 3; the others get no token (zero weight gradients).
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 41, d = 16, e = 6;
  for (DType t : floatTypes())
    for (int64_t topK : {1, 2}) {
      TokenCase c{m, d, e, 24, 16, topK, topK == 2, true, true, 0.2, 41, 0};
      TokenData s = tokenData(rng, t, c);
      std::vector<float> u(static_cast<size_t>(d));
      for (float &v : u) {
        const int64_t i = rng.integer(-2, 1);
        v = float(i >= 0 ? i + 1 : i);
      }
      for (int64_t i = 0; i < e; ++i)
        for (int64_t j = 0; j < d; ++j)
          s.router[i * d + j] = i % 2 == 1 ? u[j] : -u[j];
      for (int64_t r = 0; r < m; ++r) {
        // Small multiples: logits stay moderate, so the tied softmax is not
        // saturated and the router gradient is not negligible.
        const float a = roundTo(t, 0.125f * float(rng.integer(1, 3)));
        for (int64_t j = 0; j < d; ++j)
          s.x.at(r, j) = a * u[j];
      }
      // With every token on the tied direction u, the router gradient of
      // the +u and −u experts is a difference of sums of nearly equal
      // terms: in 16 bits its relative error has no useful bound (measured
      // on the H100 from 1x to 4x the bf16 bound over seeds), so it is
      // compared in f32 only here; the other cases compare it in every type.
      checkTokenChoice(t, c, s, /*checkRouter=*/t == DType::F32);
    }
}

TEST(GradMoeTokenChoice, SkewedRoutingAndExpertsWithoutTokens) {
  // Tokens near u; expert 0's router row 2u/|u|², experts 4-7 -4u/|u|²:
  // expert 0 takes every token, experts 4-7 none.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 301, d = 32, e = 8;
  for (DType t : floatTypes()) {
    TokenCase c{m, d, e, 48, 32, 2, false, true, true, 0.3, 301, 0};
    TokenData s = tokenData(rng, t, c);
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
    checkTokenChoice(t, c, s);
  }
}

TEST(GradMoeTokenChoice, WeightGradientTileEdges) {
  // Routing fixed by construction (router rows 2·e_i, token for expert j
  // bumped by 3 along e_j, top 1): experts of 1, 45, 0, 1021 and 33 rows in
  // shuffled token order, so the weight gradients' row ranges are a single
  // row, ragged 32-row steps, an empty expert (zeros), several 128-row
  // tiles, all read through the token gather. d 136 and hidden 200 are
  // multiples of 8 but not of the 128-wide output tiles; the shared
  // expert's 1100 rows are split across blocks (f32 partials, last split
  // ragged). x and dOut row pitches aligned (cp.async) and odd (element
  // loads); gate rows of 100 tokens.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<int64_t> counts = {1, 45, 0, 1021, 33};
  const int64_t e = static_cast<int64_t>(counts.size());
  std::vector<int64_t> owner;
  for (int64_t i = 0; i < e; ++i)
    owner.insert(owner.end(), static_cast<size_t>(counts[i]), i);
  std::shuffle(owner.begin(), owner.end(), rng.gen());
  const int64_t m = static_cast<int64_t>(owner.size()), d = 136;
  ASSERT_EQ(m, 1100);
  for (DType t : floatTypes())
    for (int64_t ldPad : {0, 3}) {
      TokenCase c{m, d, e, 200, 72, 1, false, true, true, 0.05, 100, ldPad};
      TokenData s = tokenData(rng, t, c);
      std::fill(s.router.begin(), s.router.end(), 0.0f);
      for (int64_t i = 0; i < e; ++i)
        s.router[i * d + i] = 2.0f;
      for (int64_t r = 0; r < m; ++r) {
        std::vector<float> row;
        for (;;) {
          row = rng.normal(d, 1.0, 0.0, t);
          row[owner[r]] = roundTo(t, row[owner[r]] + 3.0f);
          const std::vector<double> pr = routerProbs(row.data(), s.router, e, d);
          if (std::max_element(pr.begin(), pr.end()) - pr.begin() == owner[r] &&
              clearBoundary(pr, 1))
            break;
        }
        std::copy(row.begin(), row.end(), s.x.row(r));
      }
      SCOPED_TRACE(::testing::Message() << "x row pitch " << d + ldPad);
      checkTokenChoice(t, c, s);
    }
}

TEST(GradMoeTokenChoice, OnlySomeGradientsAndSmallWorkspace) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const DType t = DType::BF16;
  TokenCase c{64, 32, 4, 32, 32, 2, false, true, false, 0.0, 64, 0};
  TokenData s = tokenData(rng, t, c);
  DevMat dx = toDevice(s.x, t), ddOut = toDevice(s.dOut, t);
  DeviceBuffer drouter = upload(t, s.router), dg = upload(t, s.gate), du = upload(t, s.up),
               dd = upload(t, s.down), dsg = upload(t, s.sGate), dsu = upload(t, s.sUp),
               dsd = upload(t, s.sDown);
  TokenChoiceArgs ga;
  ga.router = drouter.get();
  ga.experts = c.e;
  ga.hidden = c.f;
  ga.topK = c.topK;
  ga.gate = dg.get();
  ga.up = du.get();
  ga.down = dd.get();
  ga.sharedGate = dsg.get();
  ga.sharedUp = dsu.get();
  ga.sharedDown = dsd.get();
  ga.sharedHidden = c.fs;
  const size_t wsBytes = moeTokenChoiceBackwardWorkspaceBytes(c.m, c.d, ga, t);
  ASSERT_GT(wsBytes, 0u);
  DeviceBuffer ws(wsBytes);
  Gemm gemm;
  // Only dDown wanted: everything else stays untouched (NaN).
  DeviceBuffer gDown = poisonedBuffer(t, c.e * c.d * c.f), gRouter = poisonedBuffer(t, c.e * c.d);
  TokenChoiceGrads gg;
  gg.dDown = gDown.get();
  moeTokenChoiceBackward(nullptr, gemm, t, dx.c(), ga, ddOut.c(), gg, {ws.get(), wsBytes});
  syncDevice();
  std::vector<float> down = download(t, gDown.get(), static_cast<size_t>(c.e * c.d * c.f));
  EXPECT_TRUE(std::none_of(down.begin(), down.end(), [](float v) { return std::isnan(v); }));
  std::vector<float> router = download(t, gRouter.get(), static_cast<size_t>(c.e * c.d));
  EXPECT_TRUE(std::all_of(router.begin(), router.end(), [](float v) { return std::isnan(v); }));
  EXPECT_ANY_THROW(moeTokenChoiceBackward(nullptr, gemm, t, dx.c(), ga, ddOut.c(), gg,
                                          {ws.get(), wsBytes - 1}));
  // Shared gradients without a shared expert, dEpilogueGate without an epilogue.
  TokenChoiceArgs noShared = ga;
  noShared.sharedGate = noShared.sharedUp = noShared.sharedDown = nullptr;
  TokenChoiceGrads wantShared;
  wantShared.dSharedGate = gDown.get();
  EXPECT_ANY_THROW(moeTokenChoiceBackward(nullptr, gemm, t, dx.c(), noShared, ddOut.c(),
                                          wantShared, {ws.get(), wsBytes}));
  DevMat gdEpi = toDevice(poisonedMat(1, c.d), t);
  TokenChoiceGrads wantGate;
  wantGate.dEpilogueGate = gdEpi.m();
  EXPECT_ANY_THROW(moeTokenChoiceBackward(nullptr, gemm, t, dx.c(), ga, ddOut.c(), wantGate,
                                          {ws.get(), wsBytes}));
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
  int64_t rowsPerGate, ldPad;
};

int64_t capacityOf(const ExpertCase &c) {
  return static_cast<int64_t>(c.capacity * double(c.tokens) / double(c.e));
}

void checkExpertChoice(Rng &rng, DType t, const ExpertCase &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(t) << " batch " << c.batch << " tokens " << c.tokens << " d " << c.d
               << " experts " << c.e << " hidden " << c.f << " capacity " << c.capacity
               << " inOut " << c.inOut << " act " << static_cast<int>(c.act) << " epilogue "
               << c.epilogue);
  const int64_t m = c.batch * c.tokens, d = c.d, e = c.e, f = c.f, k = capacityOf(c);
  std::vector<float> router = rng.normal(e * d, 1.0 / std::sqrt(double(d)), 0.0, t);
  HostMat x;
  for (;;) {
    x = randomMat(rng, t, m, d, d + c.ldPad);
    bool clear = true;
    for (int64_t b = 0; b < c.batch && clear; ++b) {
      std::vector<std::vector<double>> p;
      for (int64_t i = 0; i < c.tokens; ++i)
        p.push_back(routerProbs(x.row(b * c.tokens + i), router, e, d));
      for (int64_t ei = 0; ei < e && clear; ++ei) {
        std::vector<double> col(static_cast<size_t>(c.tokens));
        for (int64_t i = 0; i < c.tokens; ++i)
          col[i] = p[i][ei];
        clear = clearBoundary(col, k);
      }
    }
    if (clear)
      break;
  }
  std::vector<float> w1 = rng.normal(e * d * f, 1.0 / std::sqrt(double(d)), 0.0, t);
  std::vector<float> w2 = rng.normal(e * f * d, 1.0 / std::sqrt(double(f)), 0.0, t);
  HostMat dOut = randomMat(rng, t, m, d, d + c.ldPad);
  HostMat residual = randomMat(rng, t, m, d);
  HostMat gateEpi = randomMat(rng, t, m / c.rowsPerGate, d);

  cpu::ExpertChoiceArgs ca;
  ca.router = router.data();
  ca.experts = e;
  ca.hidden = f;
  ca.tokens = c.tokens;
  ca.capacity = c.capacity;
  ca.inOut = c.inOut;
  ca.act = c.act;
  ca.w1 = w1.data();
  ca.w2 = w2.data();
  cpu::GatedResidual cepi{residual.cmat(), gateEpi.cmat(), c.rowsPerGate};
  ca.epilogue = c.epilogue ? &cepi : nullptr;
  HostMat rdx(m, d), rdEpi(m / c.rowsPerGate, d);
  std::vector<float> rdRouter(e * d), rdW1(e * d * f), rdW2(e * f * d);
  cpu::ExpertChoiceGrads cg;
  cg.dX = rdx.mat();
  cg.dRouter = rdRouter.data();
  cg.dW1 = rdW1.data();
  cg.dW2 = rdW2.data();
  if (c.epilogue)
    cg.dEpilogueGate = rdEpi.mat();
  cpu::moeExpertChoiceBackward(x.cmat(), ca, dOut.cmat(), cg);

  DevMat dx = toDevice(x, t), ddOut = toDevice(dOut, t), dres = toDevice(residual, t),
         dgEpi = toDevice(gateEpi, t);
  DeviceBuffer drouter = upload(t, router), dw1 = upload(t, w1), dw2 = upload(t, w2);
  ExpertChoiceArgs ga;
  ga.router = drouter.get();
  ga.experts = e;
  ga.hidden = f;
  ga.tokens = c.tokens;
  ga.capacity = c.capacity;
  ga.inOut = c.inOut;
  ga.act = c.act;
  ga.w1 = dw1.get();
  ga.w2 = dw2.get();
  GatedResidual gepi{dres.c(), dgEpi.c(), c.rowsPerGate};
  ga.epilogue = c.epilogue ? &gepi : nullptr;
  DevMat gdx = toDevice(poisonedMat(m, d, d + (c.ldPad == 0 ? 8 : 3)), t);
  DevMat gdEpi = toDevice(poisonedMat(m / c.rowsPerGate, d, d + 2), t);
  DeviceBuffer gRouter = poisonedBuffer(t, e * d), gW1 = poisonedBuffer(t, e * d * f),
               gW2 = poisonedBuffer(t, e * f * d);
  ExpertChoiceGrads gg;
  gg.dX = gdx.m();
  gg.dRouter = gRouter.get();
  gg.dW1 = gW1.get();
  gg.dW2 = gW2.get();
  if (c.epilogue)
    gg.dEpilogueGate = gdEpi.m();
  const size_t wsBytes = moeExpertChoiceBackwardWorkspaceBytes(m, d, ga, t);
  DeviceBuffer ws(wsBytes);
  Gemm gemm;
  moeExpertChoiceBackward(nullptr, gemm, t, dx.c(), ga, ddOut.c(), gg, {ws.get(), wsBytes});
  syncDevice();

  const Tol tol = gradTol(t);
  {
    SCOPED_TRACE("dX");
    expectClose(toHost(gdx), rdx, t, tol);
  }
  {
    SCOPED_TRACE("dRouter");
    expectClose(downloadMat(t, gRouter, e, d), hostOf(rdRouter, e, d), t, tol);
  }
  const int64_t w1Rows = c.inOut ? e * d : e * f, w1Cols = c.inOut ? f : d;
  {
    SCOPED_TRACE("dW1");
    expectClose(downloadMat(t, gW1, w1Rows, w1Cols), hostOf(rdW1, w1Rows, w1Cols), t, tol);
  }
  {
    SCOPED_TRACE("dW2");
    const int64_t w2Rows = c.inOut ? e * f : e * d, w2Cols = c.inOut ? d : f;
    expectClose(downloadMat(t, gW2, w2Rows, w2Cols), hostOf(rdW2, w2Rows, w2Cols), t, tol);
  }
  if (c.epilogue) {
    SCOPED_TRACE("dEpilogueGate");
    expectClose(toHost(gdEpi), rdEpi, t, tol);
  }
  if (k > 0 && wsBytes > 0) {
    EXPECT_ANY_THROW(moeExpertChoiceBackward(nullptr, gemm, t, dx.c(), ga, ddOut.c(), gg,
                                             {ws.get(), wsBytes - 1}));
  }
}

TEST(GradMoeExpertChoice, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    // Both layouts, both GELUs, capacities that do not divide evenly, odd
    // token counts, strided views.
    checkExpertChoice(rng, t, {2, 64, 64, 4, 128, 2.0, true, Act::Gelu, true, 64, 8});
    checkExpertChoice(rng, t, {3, 37, 64, 4, 96, 1.5, false, Act::GeluTanh, true, 37, 0});
    checkExpertChoice(rng, t, {2, 50, 48, 8, 64, 1.0, true, Act::GeluTanh, false, 1, 4});
    checkExpertChoice(rng, t, {1, 33, 36, 5, 40, 2.0, false, Act::Gelu, true, 33, 3});
  }
}

TEST(GradMoeExpertChoice, MicroDitLikeShape) {
  // Several 128-row tiles per expert on the tensor-core path.
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    checkExpertChoice(rng, t, {2, 256, 128, 8, 512, 2.0, true, Act::Gelu, true, 256, 0});
}

//===----------------------------------------------------------------------===//
// Timing (reports, asserts nothing about speed)
//===----------------------------------------------------------------------===//

/// Times the bf16 token-choice backward of one DiT-MoE layer (64 samples
/// of 256 tokens, top 2 of 8 experts, shared expert, epilogue and balance
/// loss, every gradient) and prints it with the rate over the layer's
/// nine products per expert (forward recomputation 3, backward 6).
void timeTokenChoice(const char *name, int64_t d, int64_t f, int64_t fs) {
  Rng rng;
  const DType t = DType::BF16;
  const int64_t samples = 64, m = samples * 256, e = 8, topK = 2;
  auto dev = [&](int64_t n, double sd) { return upload(t, rng.normal(n, sd, 0.0, t)); };
  const double sx = 1.0 / std::sqrt(double(d));
  DeviceBuffer x = dev(m * d, 1.0), dOut = dev(m * d, 1.0), res = dev(m * d, 1.0),
               gateEpi = dev(samples * d, 1.0), router = dev(e * d, 0.05),
               gate = dev(e * f * d, sx), up = dev(e * f * d, sx),
               down = dev(e * d * f, 1.0 / std::sqrt(double(f))), sg = dev(fs * d, sx),
               su = dev(fs * d, sx), sd = dev(d * fs, 1.0 / std::sqrt(double(fs)));
  TokenChoiceArgs ga;
  ga.router = router.get();
  ga.experts = e;
  ga.hidden = f;
  ga.topK = topK;
  ga.gate = gate.get();
  ga.up = up.get();
  ga.down = down.get();
  ga.sharedGate = sg.get();
  ga.sharedUp = su.get();
  ga.sharedDown = sd.get();
  ga.sharedHidden = fs;
  GatedResidual epi{{res.get(), m, d, d}, {gateEpi.get(), samples, d, d}, 256};
  ga.epilogue = &epi;
  DeviceBuffer dx(m * d * 2), dRouter(e * d * 2), dGate(e * f * d * 2), dUp(e * f * d * 2),
      dDown(e * d * f * 2), dsg(fs * d * 2), dsu(fs * d * 2), dsd(d * fs * 2),
      dEpi(samples * d * 2);
  TokenChoiceGrads gg;
  gg.dX = {dx.get(), m, d, d};
  gg.dRouter = dRouter.get();
  gg.dGate = dGate.get();
  gg.dUp = dUp.get();
  gg.dDown = dDown.get();
  gg.dSharedGate = dsg.get();
  gg.dSharedUp = dsu.get();
  gg.dSharedDown = dsd.get();
  gg.dEpilogueGate = {dEpi.get(), samples, d, d};
  gg.balanceCoef = 0.01;
  const size_t wsBytes = moeTokenChoiceBackwardWorkspaceBytes(m, d, ga, t);
  DeviceBuffer ws(wsBytes);
  Gemm gemm;
  DConstMat xv{x.get(), m, d, d}, dv{dOut.get(), m, d, d};
  moeTokenChoiceBackward(nullptr, gemm, t, xv, ga, dv, gg, {ws.get(), wsBytes});
  syncDevice();
  cudaEvent_t start, stop;
  cudaOk(cudaEventCreate(&start), "event");
  cudaOk(cudaEventCreate(&stop), "event");
  constexpr int kIters = 10;
  auto time = [&](auto &&call) {
    call(); // the first call of a path plans its cuBLASLt products
    syncDevice();
    cudaOk(cudaEventRecord(start), "record");
    for (int i = 0; i < kIters; ++i)
      call();
    cudaOk(cudaEventRecord(stop), "record");
    syncDevice();
    float ms = 0.0f;
    cudaOk(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    return ms / kIters;
  };
  const double ms = time([&] { moeTokenChoiceBackward(nullptr, gemm, t, xv, ga, dv, gg, {ws.get(), wsBytes}); });
  const double flops = 9.0 * 2.0 * double(d) * (double(m * topK) * f + double(m) * fs);
  std::printf("[GradMoeTiming] %s token-choice backward (bf16, %lld tokens, d %lld, hidden "
              "%lld, shared %lld): %.3f ms, %.0f TFLOP/s over its products, workspace %.1f MiB\n",
              name, static_cast<long long>(m), static_cast<long long>(d),
              static_cast<long long>(f), static_cast<long long>(fs), ms,
              flops / (ms * 1e-3) / 1e12, wsBytes / 1048576.0);

  // Training's pair with kept activations: the forward that writes them
  // (unfused expert products, stable permutation) against the fused
  // forward, and the backward that reads them.
  DeviceBuffer out(m * d * 2);
  DMat ov{out.get(), m, d, d};
  const size_t fusedBytes = moeTokenChoiceWorkspaceBytes(m, d, ga, t);
  DeviceBuffer fusedWs(fusedBytes);
  const double fused = time([&] { moeTokenChoice(nullptr, gemm, t, xv, ga, ov, {fusedWs.get(), fusedBytes}); });
  TokenChoiceArgs keep = ga;
  const int64_t elements = moeTokenChoiceActivationElements(m, d, ga);
  DeviceBuffer activations(static_cast<size_t>(elements) * 2);
  keep.activations = activations.get();
  const size_t keepBytes = moeTokenChoiceWorkspaceBytes(m, d, keep, t, true);
  DeviceBuffer keepWs(keepBytes);
  const double keeping = time([&] { moeTokenChoice(nullptr, gemm, t, xv, keep, ov, {keepWs.get(), keepBytes}); });
  const double reading =
      time([&] { moeTokenChoiceBackward(nullptr, gemm, t, xv, keep, dv, gg, {ws.get(), wsBytes}); });
  std::printf("[GradMoeTiming] %s kept activations (%.1f MiB): forward %.3f ms (fused forward %.3f), backward "
              "%.3f ms; forward + backward %.3f ms against %.3f recomputing\n",
              name, elements * 2 / 1048576.0, keeping, fused, reading, keeping + reading, fused + ms);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

TEST(GradMoeTiming, DitMoeSTokenChoiceBf16) {
  // DiT-MoE-S: d 384, experts of 1536, shared expert of 768.
  DIFFRT_REQUIRE_GPU();
  timeTokenChoice("DiT-MoE-S", 384, 1536, 768);
}

TEST(GradMoeTiming, DitMoeBTokenChoiceBf16) {
  // DiT-MoE-B: d 768, experts of 3072, shared expert of 1536.
  DIFFRT_REQUIRE_GPU();
  timeTokenChoice("DiT-MoE-B", 768, 3072, 1536);
}

} // namespace
} // namespace diffrt::cuda::testing
