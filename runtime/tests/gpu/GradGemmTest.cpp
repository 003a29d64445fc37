//===- GradGemmTest.cpp - dense-layer backward on the GPU vs the CPU ------===//
//
// gemmBackward (every activation, with and without bias and gated
// residual) and swigluBackward (separate and packed gate/up weights, with
// and without the epilogue) against diffrt::cpu on the same rounded
// inputs, on strided views, in f32, bf16 and f16. gemmBackward also runs
// on the pre-activation a GPU forward (Gemm::run) saved, which is checked
// against the CPU's z, as is that forward's output. The 16-bit bounds are
// twice tolFor(): the recomputed pre-activation and dz are rounded to the
// activation type before the products, as mixed-precision training does,
// which adds one more rounding to what the forward tests see.
//
//===----------------------------------------------------------------------===//

#include "../cpu/TestUtil.h"
#include "GpuTestUtil.h"

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CudaGradKernels.h"

namespace diffrt::cuda::testing {
namespace {

Tol gradTol(DType t) {
  Tol base = tolFor(t);
  return t == DType::F32 ? base : Tol{2 * base.rel, 2 * base.maxAbs};
}

HostMat hostVec(DType t, const DeviceBuffer &b, int64_t rows, int64_t cols) {
  HostMat m(rows, cols);
  m.v = download(t, b.get(), static_cast<size_t>(rows * cols));
  return m;
}

struct GemmCase {
  int64_t m, k, n;
  Act act;
  bool bias, epilogue;
  int64_t rowsPerGate, pad;
};

/// inputAct: the input is a = inputAct(zIn) and dA the gradient with
/// respect to zIn (kern-fold-activation-grad); zIn has dA's row stride
/// (the DGELU epilogue's layout) unless `zInOwnStride`.
void runGemm(Rng &rng, DType t, const GemmCase &c, bool savedZ, Act inputAct = Act::None,
             bool zInOwnStride = false) {
  SCOPED_TRACE(::testing::Message() << dtypeName(t) << " m " << c.m << " k " << c.k << " n " << c.n << " act "
                                    << static_cast<int>(c.act) << " bias " << c.bias << " epilogue "
                                    << c.epilogue << (savedZ ? " saved z" : "") << " input act "
                                    << static_cast<int>(inputAct) << (zInOwnStride ? " (own stride)" : ""));
  HostMat a = randomMat(rng, t, c.m, c.k, c.k + c.pad);
  HostMat zIn = randomMat(rng, t, c.m, c.k, zInOwnStride ? c.k + c.pad + 3 : c.k + c.pad);
  if (inputAct != Act::None)
    for (int64_t r = 0; r < c.m; ++r)
      for (int64_t col = 0; col < c.k; ++col) {
        float v = zIn.at(r, col);
        cpu::activate(&v, 1, inputAct);
        a.at(r, col) = roundTo(t, v);
      }
  HostMat w = randomMat(rng, t, c.n, c.k, c.k + c.pad, 1.0 / std::sqrt(double(c.k)));
  std::vector<float> bias = rng.normal(c.n, 0.5, 0.0, t);
  HostMat dOut = randomMat(rng, t, c.m, c.n, c.n + c.pad);
  HostMat residual = randomMat(rng, t, c.m, c.n);
  HostMat gate = randomMat(rng, t, c.m / c.rowsPerGate, c.n, c.n + c.pad);

  cpu::GatedResidual ce{residual.cmat(), gate.cmat(), c.rowsPerGate};
  HostMat rdA(c.m, c.k), rdGate(c.m / c.rowsPerGate, c.n);
  std::vector<float> rdW(c.n * c.k), rdBias(c.n), scratch(2 * c.m * c.n);
  cpu::GemmGrads cg{rdA.mat(), rdW.data(), c.bias ? rdBias.data() : nullptr,
                    c.epilogue ? rdGate.mat() : cpu::Mat{}};
  cg.inputAct = inputAct;
  cg.inputPreact = zIn.cmat();
  cpu::gemmBackward(a.cmat(), w.cmat(), c.bias ? bias.data() : nullptr, c.act, c.epilogue ? &ce : nullptr,
                    dOut.cmat(), cg, scratch.data());

  DevMat ga = toDevice(a, t), gw = toDevice(w, t), gdOut = toDevice(dOut, t), gres = toDevice(residual, t),
         ggate = toDevice(gate, t);
  DeviceBuffer gbias = upload(t, bias);
  DevMat gdA = toDevice(poisonedMat(c.m, c.k, c.k + c.pad), t);
  DevMat gdGate = toDevice(poisonedMat(c.m / c.rowsPerGate, c.n, c.n + c.pad), t);
  DeviceBuffer gdW = upload(t, std::vector<float>(c.n * c.k, kNaN)), gdBias = upload(t, std::vector<float>(c.n, kNaN));
  GatedResidual ge{gres.c(), ggate.c(), c.rowsPerGate};
  GemmGrads gg{gdA.m(), gdW.get(), c.bias ? gdBias.get() : nullptr, c.epilogue ? gdGate.m() : DMat{}};
  DevMat gzIn = toDevice(zIn, t);
  gg.inputAct = inputAct;
  gg.inputPreact = inputAct != Act::None ? gzIn.c() : DConstMat{};
  Gemm gemm;
  // The forward that saves z: out with the case's padding, z laid out like
  // out when unpadded (cuBLASLt's GELU_AUX epilogue for bf16/f16 tanh GELU
  // without a gated residual) and with a stride of its own otherwise.
  DevMat gz = toDevice(poisonedMat(c.m, c.n, c.pad == 0 ? c.n : c.n + c.pad + 2), t);
  if (savedZ) {
    DevMat gout = toDevice(poisonedMat(c.m, c.n, c.n + c.pad), t);
    size_t fwdBytes = Gemm::workspaceBytes(c.m, c.n, c.k, c.epilogue, t);
    DeviceBuffer fws(fwdBytes);
    gemm.run(nullptr, t, ga.c(), gw.c(), c.bias ? gbias.get() : nullptr, c.act, c.epilogue ? &ge : nullptr,
             gout.m(), {fws.get(), fwdBytes}, gz.m());
    HostMat rOut(c.m, c.n), rZ(c.m, c.n);
    cpu::gemm(a.cmat(), w.cmat(), c.bias ? bias.data() : nullptr, c.act, c.epilogue ? &ce : nullptr, rOut.mat(),
              rZ.mat());
    syncDevice();
    SCOPED_TRACE("forward");
    expectClose(toHost(gout), rOut, t, tolFor(t));
    expectClose(toHost(gz), rZ, t, tolFor(t));
  }
  size_t bytes = gemmBackwardWorkspaceBytes(c.m, c.n, c.k, t, savedZ, c.epilogue ? c.rowsPerGate : 0);
  DeviceBuffer ws(bytes);
  gemmBackward(nullptr, gemm, t, ga.c(), gw.c(), c.bias ? gbias.get() : nullptr, c.act, c.epilogue ? &ge : nullptr,
               gdOut.c(), gg, {ws.get(), bytes}, savedZ ? gz.c() : DConstMat{});
  syncDevice();
  Tol tol = gradTol(t);
  {
    SCOPED_TRACE("dA");
    expectClose(toHost(gdA), rdA, t, tol);
  }
  {
    SCOPED_TRACE("dW");
    HostMat ref(c.n, c.k);
    ref.v = rdW;
    expectClose(hostVec(t, gdW, c.n, c.k), ref, t, tol);
  }
  if (c.bias) {
    SCOPED_TRACE("dBias");
    expectClose(hostVec(t, gdBias, 1, c.n), rowOf(rdBias), t, tol);
  }
  if (c.epilogue) {
    SCOPED_TRACE("dGate");
    expectClose(toHost(gdGate), rdGate, t, tol);
  }
}

TEST(GradGemmGpu, EveryActivationAndEpilogue) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<GemmCase> cases = {
      {96, 40, 72, Act::None, true, false, 1, 3},      {130, 64, 50, Act::Gelu, true, true, 65, 1},
      {64, 33, 48, Act::GeluTanh, false, true, 16, 0}, {200, 96, 160, Act::Silu, true, false, 1, 5},
      {256, 128, 384, Act::None, true, true, 64, 0},   {128, 64, 96, Act::GeluTanh, true, false, 1, 0},
      {96, 48, 64, Act::GeluTanh, false, false, 1, 4},  {40, 24, 32, Act::Silu, true, true, 1, 2},
  };
  for (DType t : floatTypes())
    for (const GemmCase &c : cases)
      for (bool savedZ : {false, true})
        if (!savedZ || c.act != Act::None || c.epilogue)
          runGemm(rng, t, c, savedZ);
}

// kern-fold-activation-grad's dense backward: dA with respect to the input's
// pre-activation. bf16/f16 tanh GELU with zIn laid out like dA runs in
// cuBLASLt's DGELU epilogue; the other activations, f32 and zIn with a
// stride of its own in the pass after the product.
TEST(GradGemmGpu, FoldedInputActivation) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<GemmCase> cases = {
      {128, 64, 96, Act::None, true, false, 1, 0},  // fc1 <- fc2: bias, no epilogue
      {96, 48, 64, Act::None, true, true, 32, 8},   // a gated residual consumer, padded rows
      {200, 72, 40, Act::GeluTanh, false, false, 1, 0},
  };
  for (DType t : floatTypes())
    for (const GemmCase &c : cases)
      for (Act inputAct : {Act::GeluTanh, Act::Gelu, Act::Silu})
        for (bool ownStride : {false, true})
          runGemm(rng, t, c, c.act != Act::None || c.epilogue, inputAct, ownStride);
}

TEST(GradGemmGpu, DgeluEpilogueRejectsBadLayouts) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const DType t = DType::BF16;
  HostMat a = randomMat(rng, t, 32, 16), b = randomMat(rng, t, 16, 24), z = randomMat(rng, t, 32, 24, 40);
  DevMat ga = toDevice(a, t), gb = toDevice(b, t), gz = toDevice(z, t), gout = toDevice(poisonedMat(32, 24), t);
  DeviceBuffer ws(Gemm::productWorkspaceBytes());
  Gemm gemm;
  EXPECT_DIFFRT_ERROR(gemm.product(nullptr, t, ga.c(), false, gb.c(), false, gout.m(), 0.0f,
                                   {ws.get(), ws.bytes()}, gz.c()),
                      "aux must be laid out like out", "leading dimension 24, got 40");
  DevMat gz24 = toDevice(randomMat(rng, t, 32, 24), t);
  EXPECT_DIFFRT_ERROR(gemm.product(nullptr, t, ga.c(), false, gb.c(), false, gout.m(), 1.0f,
                                   {ws.get(), ws.bytes()}, gz24.c()),
                      "without transposes and beta 0");
  EXPECT_DIFFRT_ERROR(gemm.product(nullptr, t, ga.c(), false, gb.c(), false, gout.m(), 0.0f,
                                   {ws.get(), ws.bytes()}, DConstMat{gout.data(), 32, 24, 24}),
                      "aux overlaps out");
  syncDevice();
}

TEST(GradGemmGpu, WorkspaceTooSmallIsAnError) {
  DIFFRT_REQUIRE_GPU();
  DType t = DType::F32;
  Rng rng;
  HostMat a = randomMat(rng, t, 8, 8), w = randomMat(rng, t, 8, 8), d = randomMat(rng, t, 8, 8);
  DevMat ga = toDevice(a, t), gw = toDevice(w, t), gd = toDevice(d, t), gdA = toDevice(poisonedMat(8, 8), t);
  size_t bytes = gemmBackwardWorkspaceBytes(8, 8, 8, t);
  DeviceBuffer ws(bytes);
  Gemm gemm;
  GemmGrads gg{gdA.m(), nullptr, nullptr, DMat{}};
  try {
    gemmBackward(nullptr, gemm, t, ga.c(), gw.c(), nullptr, Act::Gelu, nullptr, gd.c(), gg, {ws.get(), bytes - 1});
    ADD_FAILURE() << "a workspace one byte short was accepted";
  } catch (const std::exception &e) {
    EXPECT_NE(std::string(e.what()).find("needs " + std::to_string(bytes)), std::string::npos) << e.what();
  }
}

struct SwiGluCase {
  int64_t m, k, f, n;
  bool epilogue;
  int64_t rowsPerGate;
};

void runSwiGlu(Rng &rng, DType t, const SwiGluCase &c) {
  SCOPED_TRACE(::testing::Message() << dtypeName(t) << " m " << c.m << " k " << c.k << " f " << c.f << " n "
                                    << c.n << " epilogue " << c.epilogue);
  HostMat x = randomMat(rng, t, c.m, c.k, c.k + 2);
  // Packed: gate rows then up rows in one (2F x K) weight, as the fused
  // DiT-MoE shared expert stores them.
  HostMat gu = randomMat(rng, t, 2 * c.f, c.k, 0, 1.0 / std::sqrt(double(c.k)));
  HostMat down = randomMat(rng, t, c.n, c.f, 0, 1.0 / std::sqrt(double(c.f)));
  HostMat dOut = randomMat(rng, t, c.m, c.n);
  HostMat residual = randomMat(rng, t, c.m, c.n), gate = randomMat(rng, t, c.m / c.rowsPerGate, c.n);
  cpu::ConstMat cg{gu.v.data(), c.f, c.k, c.k}, cu{gu.v.data() + c.f * c.k, c.f, c.k, c.k};
  cpu::GatedResidual ce{residual.cmat(), gate.cmat(), c.rowsPerGate};
  HostMat rdX(c.m, c.k), rdGate(c.m / c.rowsPerGate, c.n);
  std::vector<float> rdGU(2 * c.f * c.k), rdDown(c.n * c.f), scratch(4 * c.m * c.f + c.m * c.n);
  cpu::SwiGluGrads rg;
  rg.dX = rdX.mat();
  rg.dGateW = rdGU.data();
  rg.dUpW = rdGU.data() + c.f * c.k;
  rg.dDownW = rdDown.data();
  rg.dGate = c.epilogue ? rdGate.mat() : cpu::Mat{};
  cpu::swigluBackward(x.cmat(), cg, cu, down.cmat(), c.epilogue ? &ce : nullptr, dOut.cmat(), rg, scratch.data());

  DevMat gx = toDevice(x, t), ggu = toDevice(gu, t), gdown = toDevice(down, t), gdOut = toDevice(dOut, t),
         gres = toDevice(residual, t), ggate = toDevice(gate, t);
  size_t es = dtypeSize(t);
  DConstMat dg{ggu.data(), c.f, c.k, c.k},
      du{static_cast<const uint8_t *>(ggu.data()) + c.f * c.k * es, c.f, c.k, c.k};
  DevMat gdX = toDevice(poisonedMat(c.m, c.k, c.k + 2), t), gdGate = toDevice(poisonedMat(c.m / c.rowsPerGate, c.n), t);
  DeviceBuffer gdGU = upload(t, std::vector<float>(2 * c.f * c.k, kNaN)),
               gdDown = upload(t, std::vector<float>(c.n * c.f, kNaN));
  SwiGluGrads g;
  g.dX = gdX.m();
  g.dGateW = gdGU.get();
  g.dUpW = static_cast<uint8_t *>(gdGU.get()) + c.f * c.k * es;
  g.dDownW = gdDown.get();
  g.gateLd = g.upLd = c.k;
  g.dGate = c.epilogue ? gdGate.m() : DMat{};
  GatedResidual ge{gres.c(), ggate.c(), c.rowsPerGate};
  size_t bytes = swigluBackwardWorkspaceBytes(c.m, c.f, c.n, t, c.epilogue ? c.rowsPerGate : 0);
  DeviceBuffer ws(bytes);
  Gemm gemm;
  swigluBackward(nullptr, gemm, t, gx.c(), dg, du, gdown.c(), c.epilogue ? &ge : nullptr, gdOut.c(), g,
                 {ws.get(), bytes});
  syncDevice();
  Tol tol = gradTol(t);
  {
    SCOPED_TRACE("dX");
    expectClose(toHost(gdX), rdX, t, tol);
  }
  {
    SCOPED_TRACE("dGate/dUp weights");
    HostMat ref(2 * c.f, c.k);
    ref.v = rdGU;
    expectClose(hostVec(t, gdGU, 2 * c.f, c.k), ref, t, tol);
  }
  {
    SCOPED_TRACE("dDown");
    HostMat ref(c.n, c.f);
    ref.v = rdDown;
    expectClose(hostVec(t, gdDown, c.n, c.f), ref, t, tol);
  }
  if (c.epilogue) {
    SCOPED_TRACE("epilogue dGate");
    expectClose(toHost(gdGate), rdGate, t, tol);
  }
}

TEST(GradGemmGpu, SwiGlu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<SwiGluCase> cases = {
      {64, 48, 96, 48, true, 32}, {100, 40, 72, 56, false, 1}, {256, 96, 192, 96, false, 1}};
  for (DType t : floatTypes())
    for (const SwiGluCase &c : cases)
      runSwiGlu(rng, t, c);
}

} // namespace
} // namespace diffrt::cuda::testing
