//===- GradMemoryBoundTest.cpp - GPU memory-bound backward kernels vs CPU ===//
//
// The backward kernels of GradNorm.cu, GradElementwise.cu and GradLayout.cu
// against diffrt::cpu's references (CpuGradKernels.h) on the same rounded
// random inputs, in f32, bf16 and f16, on strided (padded) and misaligned
// views and odd sizes: grouped and per-sample norms with every fused part,
// activations, modulation, gated residual, broadcast sums, patch embedding,
// unpatchify, label embedding, the depth-wise convolution in every scan
// order pair and tokenMean. Gradients are poisoned with NaN before each
// call (every element must be written) and padding columns carry a sentinel
// that must survive. Kernels with a workspace must reject one that is too
// small, and the reductions must be deterministic (two runs bit-identical).
//
// Tolerances: the GPU reads the same 16-bit inputs as the CPU and computes
// in f32; the reductions differ from the CPU's double sums by f32 roundoff
// only (relative ~1e-7 · √terms), far below the final rounding of each
// gradient to the 16-bit type, which tolFor() bounds. f32 gets tolFor()'s
// 1e-5 norm-wise bound, a few hundred times the f32 summation error of the
// largest reductions here (8192 rows).
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CudaGradKernels.h"

#include <numeric>

namespace diffrt::cuda::testing {
namespace {

void *at(const DeviceBuffer &b, size_t offset, DType t) {
  return static_cast<uint8_t *>(b.get()) + offset * dtypeSize(t);
}

std::vector<float> poisonVec(int64_t n) { return std::vector<float>(static_cast<size_t>(n), kNaN); }

/// Runs `call` expecting a diffrt error whose message contains `needle`.
template <typename F> void expectError(F &&call, const char *needle) {
  try {
    call();
  } catch (const std::exception &e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    return;
  }
  ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
}

//===----------------------------------------------------------------------===//
// normBackward
//===----------------------------------------------------------------------===//

struct NormCase {
  int64_t rows, cols, group;
  NormKind kind;
  bool weight, bias, modulate, gate;
  int64_t ldPad;
  size_t offset;
  int64_t rowsPerSample;
  bool wantX, wantW, wantB, wantMod, wantGate;
  /// dX receives dX + a random addend (kern.vjp input_grad_addend), read
  /// from its own view or, with inPlace, from dX itself.
  bool addend = false, inPlace = false;
};

void runNormBackward(Rng &rng, DType t, const NormCase &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(t) << " rows " << c.rows << " cols " << c.cols << " group " << c.group
               << (c.kind == NormKind::Layer ? " layer" : " rms") << " weight " << c.weight
               << " bias " << c.bias << " modulate " << c.modulate << " gate " << c.gate
               << " ldPad " << c.ldPad << " offset " << c.offset << " rowsPerSample "
               << c.rowsPerSample << " addend " << c.addend << " in place " << c.inPlace);
  const int64_t ld = c.cols + c.ldPad, samples = c.rows / c.rowsPerSample;
  HostMat x = randomMat(rng, t, c.rows, c.cols, ld, 1.0, 0.5);
  HostMat dOut = randomMat(rng, t, c.rows, c.cols, ld);
  std::vector<float> w = rng.normal(c.group, 0.5, 1.0, t), b = rng.normal(c.group, 0.5, 0.0, t);
  HostMat shift = randomMat(rng, t, samples, c.cols, ld, 0.5);
  HostMat scale = randomMat(rng, t, samples, c.cols, ld, 0.3);
  HostMat gate = randomMat(rng, t, c.rows, c.cols, ld, 2.0);
  HostMat addend = randomMat(rng, t, c.rows, c.cols, ld + 1);

  cpu::NormArgs ca;
  ca.kind = c.kind;
  ca.group = c.group;
  ca.eps = 1e-6f;
  ca.weight = c.weight ? w.data() : nullptr;
  ca.bias = c.bias ? b.data() : nullptr;
  ca.rowsPerSample = c.rowsPerSample;
  if (c.modulate) {
    ca.shift = shift.cmat();
    ca.scale = scale.cmat();
  }
  if (c.gate)
    ca.siluGate = gate.cmat();
  HostMat rX(c.rows, c.cols), rShift(samples, c.cols), rScale(samples, c.cols),
      rGate(c.rows, c.cols);
  std::vector<float> rW(static_cast<size_t>(c.group)), rB(static_cast<size_t>(c.group));
  cpu::NormGrads cg;
  if (c.wantX)
    cg.dX = rX.mat();
  if (c.wantW)
    cg.dWeight = rW.data();
  if (c.wantB)
    cg.dBias = rB.data();
  if (c.wantMod) {
    cg.dShift = rShift.mat();
    cg.dScale = rScale.mat();
  }
  if (c.wantGate)
    cg.dSiluGate = rGate.mat();
  if (c.addend)
    cg.dXAddend = addend.cmat();
  cpu::normBackward(x.cmat(), ca, dOut.cmat(), cg);

  DevMat gx = toDevice(x, t, c.offset), gdOut = toDevice(dOut, t, c.offset);
  DevMat gshift = toDevice(shift, t, c.offset), gscale = toDevice(scale, t, c.offset);
  DevMat ggate = toDevice(gate, t, c.offset);
  DeviceBuffer gw = upload(t, w, c.offset), gb = upload(t, b, c.offset);
  NormArgs ga;
  ga.kind = c.kind;
  ga.group = c.group;
  ga.eps = 1e-6f;
  ga.weight = c.weight ? at(gw, c.offset, t) : nullptr;
  ga.bias = c.bias ? at(gb, c.offset, t) : nullptr;
  ga.rowsPerSample = c.rowsPerSample;
  if (c.modulate) {
    ga.shift = gshift.c();
    ga.scale = gscale.c();
  }
  if (c.gate)
    ga.siluGate = ggate.c();
  // In place, dX starts as the addend (with its own padding sentinel).
  DevMat oX = c.inPlace ? toDevice(addend, t, c.offset) : toDevice(poisonedMat(c.rows, c.cols, ld), t, c.offset);
  DevMat gAddend = toDevice(addend, t, c.offset);
  DevMat oShift = toDevice(poisonedMat(samples, c.cols, ld), t, c.offset);
  DevMat oScale = toDevice(poisonedMat(samples, c.cols, ld), t, c.offset);
  DevMat oGate = toDevice(poisonedMat(c.rows, c.cols, ld), t, c.offset);
  DeviceBuffer oW = upload(t, poisonVec(c.group), c.offset), oB = upload(t, poisonVec(c.group), c.offset);
  NormGrads gg;
  if (c.wantX)
    gg.dX = oX.m();
  if (c.wantW)
    gg.dWeight = at(oW, c.offset, t);
  if (c.wantB)
    gg.dBias = at(oB, c.offset, t);
  if (c.wantMod) {
    gg.dShift = oShift.m();
    gg.dScale = oScale.m();
  }
  if (c.wantGate)
    gg.dSiluGate = oGate.m();
  if (c.addend)
    gg.dXAddend = c.inPlace ? oX.c() : gAddend.c();
  const size_t bytes = normBackwardWorkspaceBytes(c.rows, c.cols, c.group, c.rowsPerSample, t);
  DeviceBuffer ws(bytes);
  normBackward(nullptr, t, gx.c(), ga, gdOut.c(), gg, {ws.get(), bytes});
  syncDevice();
  if (c.wantX)
    expectClose(toHost(oX), rX, t);
  if (c.wantMod) {
    expectClose(toHost(oShift), rShift, t);
    expectClose(toHost(oScale), rScale, t);
  }
  if (c.wantGate)
    expectClose(toHost(oGate), rGate, t);
  const std::vector<float> gotW = download(t, at(oW, c.offset, t), c.group);
  const std::vector<float> gotB = download(t, at(oB, c.offset, t), c.group);
  if (c.wantW)
    expectClose(rowOf(gotW), rowOf(rW), t);
  if (c.wantB)
    expectClose(rowOf(gotB), rowOf(rB), t);

  // Deterministic: a second run gives the same bits (not in place, where
  // the first run consumed the addend).
  if ((c.wantW || c.wantMod) && !c.inPlace) {
    const HostMat firstShift = toHost(oShift);
    normBackward(nullptr, t, gx.c(), ga, gdOut.c(), gg, {ws.get(), bytes});
    syncDevice();
    if (c.wantW)
      expectExact(rowOf(download(t, at(oW, c.offset, t), c.group)), rowOf(gotW));
    if (c.wantMod)
      expectExact(toHost(oShift), firstShift);
  }
}

TEST(GradMemoryBoundNorm, MatchesCpu) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // rows, cols, group, kind, weight, bias, modulate, gate, ldPad, offset,
  // rowsPerSample, wantX, wantW, wantB, wantMod, wantGate
  const std::vector<NormCase> cases = {
      // DiT adaLN: no affine, per-sample shift/scale of 64 rows (two chunks).
      {256, 1152, 1152, NormKind::Layer, false, false, true, false, 0, 0, 64, true, false, false,
       true, false},
      // Samples longer than a chunk (65 rows: three chunks a sample, the last
      // of one row).
      {130, 96, 96, NormKind::Layer, true, true, true, true, 8, 0, 65, true, true, true, true,
       true},
      // Grouped RMS norm (GLA heads) with everything, odd sizes, padding, misaligned.
      {33, 100, 20, NormKind::Rms, true, true, true, true, 3, 1, 11, true, true, true, true, true},
      // Group wider than a warp but not a multiple of it; bias gradient without a weight.
      {45, 150, 75, NormKind::Layer, false, true, false, true, 5, 0, 1, true, true, true, false,
       true},
      // Per-row modulation (rowsPerSample 1), parameter gradients only.
      {7, 40, 8, NormKind::Layer, true, false, true, false, 1, 1, 1, false, true, false, true,
       false},
      // Affine LayerNorm over many rows (single segment, 256 chunks).
      {8192, 72, 72, NormKind::Layer, true, true, false, false, 0, 0, 1, true, true, true, false,
       false},
      // Whole-row RMS norm on the fused (shared-memory staged) path with every
      // part and every gradient; samples of 7 rows leave a warp of the
      // block idle.
      {77, 256, 256, NormKind::Rms, true, false, true, true, 8, 0, 7, true, true, false, true,
       true},
      // All four parameter sums on a 1152-wide row, fused, in chunks of one
      // sub-chunk (8 rows).
      {40, 1152, 1152, NormKind::Layer, true, true, true, false, 0, 0, 8, true, true, true, true,
       false},
      // Rows over a block's shared memory (4096 values): the generic path.
      {20, 4096, 4096, NormKind::Layer, true, true, true, false, 0, 0, 10, true, true, true, true,
       false},
      // dSiluGate alone on 2304-wide rows (fused for 16-bit; f32 rows with a
      // gate do not fit the block's shared memory: generic).
      {24, 2304, 2304, NormKind::Layer, false, false, true, true, 0, 0, 24, false, false, false,
       false, true},
      // Whole rows but misaligned views: the generic path.
      {100, 64, 64, NormKind::Layer, false, false, true, false, 0, 1, 50, true, false, false, true,
       false},
      // Per-sample sums over 5 chunks of a 150-row sample (the last of 22
      // rows: sub-chunks of 8, 8 and 6), rows not a multiple of the block's
      // 8 warps.
      {300, 1096, 1096, NormKind::Layer, false, false, true, false, 8, 0, 150, true, false, false,
       true, false},
      // The residual stream's gradient added to dX: DiT's fused path, from
      // its own view and in place; the grouped and misaligned generic paths.
      {256, 1152, 1152, NormKind::Layer, false, false, true, false, 0, 0, 64, true, false, false,
       true, false, true, false},
      {256, 1152, 1152, NormKind::Layer, false, false, true, false, 0, 0, 64, true, false, false,
       true, false, true, true},
      {33, 100, 20, NormKind::Rms, true, true, true, true, 3, 1, 11, true, true, true, true, true,
       true, false},
      // DiT's adaLN form on the register-row (Plain) path: three vectors a
      // lane (384 values; f32 too), and five with idle lanes (520 f32
      // values), padded rows, the addend from its own view and in place.
      {64, 384, 384, NormKind::Layer, false, false, true, false, 0, 0, 32, true, false, false,
       true, false, true, false},
      {50, 520, 520, NormKind::Layer, false, false, true, false, 8, 0, 10, true, false, false,
       true, false, true, true},
      {100, 64, 64, NormKind::Layer, false, false, true, false, 0, 1, 50, true, false, false, true,
       false, true, true},
  };
  for (DType t : floatTypes())
    for (const NormCase &c : cases)
      runNormBackward(rng, t, c);
}

TEST(GradMemoryBoundNorm, DiTXLShape) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const NormCase c{32 * 256, 1152, 1152, NormKind::Layer, false, false, true, false, 0, 0, 256,
                   true, false, false, true, false};
  for (DType t : {DType::BF16, DType::F32})
    runNormBackward(rng, t, c);
}

TEST(GradMemoryBoundNorm, RejectsAddendWithoutDxOrOverlappingIt) {
  DIFFRT_REQUIRE_GPU();
  const DType t = DType::F32;
  HostMat x(8, 16), g(8, 16);
  DevMat gx = toDevice(x, t), gd = toDevice(g, t);
  DeviceBuffer shared(9 * 16 * 4);
  NormArgs a;
  a.group = 16;
  NormGrads noX;
  noX.dXAddend = {shared.get(), 8, 16, 16};
  expectError([&] { normBackward(nullptr, t, gx.c(), a, gd.c(), noX, {}); }, "dX is not wanted");
  // One row off: element i would read what element i - 16 just wrote.
  NormGrads skewed;
  skewed.dX = {shared.get(), 8, 16, 16};
  skewed.dXAddend = {static_cast<float *>(shared.get()) + 16, 8, 16, 16};
  expectError([&] { normBackward(nullptr, t, gx.c(), a, gd.c(), skewed, {}); }, "dXAddend overlaps dX");
}

TEST(GradMemoryBoundNorm, RejectsSmallWorkspace) {
  DIFFRT_REQUIRE_GPU();
  const DType t = DType::F32;
  HostMat x(8, 16), g(8, 16), shift(8, 16);
  DevMat gx = toDevice(x, t), gd = toDevice(g, t), ds = toDevice(shift, t);
  DeviceBuffer dw(16 * 4);
  NormArgs a;
  a.group = 16;
  a.rowsPerSample = 1;
  NormGrads grads;
  grads.dWeight = dw.get();
  // Per-sample sums with one row per sample: the most chunks, which is
  // what the workspace size provides for.
  grads.dShift = ds.m();
  const size_t bytes = normBackwardWorkspaceBytes(8, 16, 16, 1, t);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer ws(bytes);
  expectError([&] { normBackward(nullptr, t, gx.c(), a, gd.c(), grads, {ws.get(), bytes - 1}); },
              "bytes needed");
}

//===----------------------------------------------------------------------===//
// Element-wise backward kernels
//===----------------------------------------------------------------------===//

TEST(GradMemoryBoundElementwise, Activate) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (Act act : {Act::None, Act::Gelu, Act::GeluTanh, Act::Silu})
      for (int64_t n : {int64_t{1}, int64_t{1031}, int64_t{70001}}) {
        SCOPED_TRACE(::testing::Message() << dtypeName(t) << " act " << static_cast<int>(act)
                                          << " n " << n);
        std::vector<float> x = rng.normal(n, 3.0, 0.0, t), d = rng.normal(n, 1.0, 0.0, t);
        std::vector<float> ref(static_cast<size_t>(n));
        cpu::activateBackward(x.data(), d.data(), n, act, ref.data());
        DeviceBuffer gx = upload(t, x, 1), gd = upload(t, d, 1), go = upload(t, poisonVec(n), 1);
        activateBackward(nullptr, t, at(gx, 1, t), at(gd, 1, t), n, act, at(go, 1, t));
        syncDevice();
        expectClose(rowOf(download(t, at(go, 1, t), n)), rowOf(ref), t);
      }
}

TEST(GradMemoryBoundElementwise, ModulateAndGatedResidual) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Case {
    int64_t rows, cols, ldPad, rowsPerSample;
  };
  for (DType t : floatTypes())
    for (Case c : {Case{111, 70, 5, 37}, Case{512, 1152, 0, 256}, Case{20, 3, 2, 1},
                   Case{300, 17, 1, 300}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " rows " << c.rows << " cols " << c.cols
                                        << " ldPad " << c.ldPad << " rps " << c.rowsPerSample);
      const int64_t ld = c.cols + c.ldPad, samples = c.rows / c.rowsPerSample;
      HostMat x = randomMat(rng, t, c.rows, c.cols, ld), d = randomMat(rng, t, c.rows, c.cols, ld);
      HostMat sc = randomMat(rng, t, samples, c.cols, ld, 0.5);
      HostMat rX(c.rows, c.cols), rShift(samples, c.cols), rScale(samples, c.cols);
      cpu::modulateBackward(x.cmat(), sc.cmat(), c.rowsPerSample, d.cmat(), rX.mat(), rShift.mat(),
                            rScale.mat());
      DevMat gx = toDevice(x, t), gd = toDevice(d, t), gsc = toDevice(sc, t);
      DevMat oX = toDevice(poisonedMat(c.rows, c.cols, ld), t);
      DevMat oShift = toDevice(poisonedMat(samples, c.cols, ld), t);
      DevMat oScale = toDevice(poisonedMat(samples, c.cols, ld), t);
      modulateBackward(nullptr, t, gx.c(), gsc.c(), c.rowsPerSample, gd.c(), oX.m(), oShift.m(),
                       oScale.m());
      syncDevice();
      expectClose(toHost(oX), rX, t);
      expectClose(toHost(oShift), rShift, t);
      expectClose(toHost(oScale), rScale, t);

      // In place: dX overwrites dOut (the sums run first).
      modulateBackward(nullptr, t, gx.c(), gsc.c(), c.rowsPerSample, gd.c(), gd.m(), oShift.m(),
                       oScale.m());
      syncDevice();
      expectClose(toHost(gd), rX, t);
      expectClose(toHost(oShift), rShift, t);

      // gatedResidual: gate per sample, y like dOut.
      HostMat y = randomMat(rng, t, c.rows, c.cols, ld), dr = randomMat(rng, t, c.rows, c.cols, ld);
      HostMat rGate(samples, c.cols), rY(c.rows, c.cols);
      cpu::gatedResidualBackward(sc.cmat(), y.cmat(), c.rowsPerSample, dr.cmat(), rGate.mat(),
                                 rY.mat());
      DevMat gy = toDevice(y, t), gdr = toDevice(dr, t);
      DevMat oGate = toDevice(poisonedMat(samples, c.cols, ld), t);
      DevMat oY = toDevice(poisonedMat(c.rows, c.cols, ld), t);
      gatedResidualBackward(nullptr, t, gsc.c(), gy.c(), c.rowsPerSample, gdr.c(), oGate.m(),
                            oY.m());
      syncDevice();
      expectClose(toHost(oGate), rGate, t);
      expectClose(toHost(oY), rY, t);
    }
}

TEST(GradMemoryBoundElementwise, BroadcastSums) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Case {
    int64_t count, rhsCount;
  };
  for (DType t : floatTypes())
    for (Case c : {Case{1000, 7}, Case{1152 * 19, 1152}, Case{5000, 1}, Case{5, 9},
                   Case{4096 * 3 + 5, 4096}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " count " << c.count << " rhsCount "
                                        << c.rhsCount);
      std::vector<float> lhs = rng.normal(c.count, 1.0, 0.0, t);
      std::vector<float> rhs = rng.normal(c.rhsCount, 1.0, 0.0, t);
      std::vector<float> d = rng.normal(c.count, 1.0, 0.0, t);
      std::vector<float> rL(static_cast<size_t>(c.count)), rR(static_cast<size_t>(c.rhsCount)),
          rA(static_cast<size_t>(c.rhsCount));
      cpu::mulBroadcastBackward(lhs.data(), c.count, rhs.data(), c.rhsCount, d.data(), rL.data(),
                                rR.data());
      cpu::addBroadcastBackwardRhs(d.data(), c.count, c.rhsCount, rA.data());
      DeviceBuffer gl = upload(t, lhs), gr = upload(t, rhs), gd = upload(t, d);
      DeviceBuffer oL = upload(t, poisonVec(c.count)), oR = upload(t, poisonVec(c.rhsCount));
      DeviceBuffer oA = upload(t, poisonVec(c.rhsCount));
      mulBroadcastBackward(nullptr, t, gl.get(), c.count, gr.get(), c.rhsCount, gd.get(), oL.get(),
                           oR.get());
      addBroadcastBackwardRhs(nullptr, t, gd.get(), c.count, c.rhsCount, oA.get());
      syncDevice();
      expectClose(rowOf(download(t, oL.get(), c.count)), rowOf(rL), t);
      expectClose(rowOf(download(t, oR.get(), c.rhsCount)), rowOf(rR), t);
      expectClose(rowOf(download(t, oA.get(), c.rhsCount)), rowOf(rA), t);
    }
}

//===----------------------------------------------------------------------===//
// Token layout and embeddings
//===----------------------------------------------------------------------===//

struct PatchCase {
  int64_t batch, c, height, width, d, p, ldPad;
  bool wantX, wantW, wantB;
};

void runPatchEmbedBackward(Rng &rng, DType t, const PatchCase &c) {
  SCOPED_TRACE(::testing::Message() << dtypeName(t) << " batch " << c.batch << " c " << c.c << " "
                                    << c.height << "x" << c.width << " d " << c.d << " p " << c.p
                                    << " wantX " << c.wantX << " wantW " << c.wantW << " wantB "
                                    << c.wantB);
  const int64_t tokens = (c.height / c.p) * (c.width / c.p), rows = c.batch * tokens;
  const int64_t patchLen = c.c * c.p * c.p, pixels = c.batch * c.c * c.height * c.width;
  std::vector<float> x = rng.normal(pixels, 1.0, 0.0, t);
  std::vector<float> w = rng.normal(c.d * patchLen, 0.2, 0.0, t);
  HostMat dOut = randomMat(rng, t, rows, c.d, c.d + c.ldPad);
  std::vector<float> rX(static_cast<size_t>(pixels)), rW(static_cast<size_t>(c.d * patchLen)),
      rB(static_cast<size_t>(c.d));
  cpu::patchEmbedBackward(x.data(), c.batch, c.c, c.height, c.width, w.data(), c.d, c.p,
                          dOut.cmat(), c.wantX ? rX.data() : nullptr,
                          c.wantW ? rW.data() : nullptr, c.wantB ? rB.data() : nullptr);
  DeviceBuffer gx = upload(t, x), gw = upload(t, w);
  DevMat gd = toDevice(dOut, t);
  DeviceBuffer oX = upload(t, poisonVec(pixels)), oW = upload(t, poisonVec(c.d * patchLen));
  DeviceBuffer oB = upload(t, poisonVec(c.d));
  const size_t bytes =
      patchEmbedBackwardWorkspaceBytes(c.batch, c.c, c.height, c.width, c.d, c.p, t);
  DeviceBuffer ws(bytes);
  Gemm gemm;
  patchEmbedBackward(nullptr, gemm, t, gx.get(), c.batch, c.c, c.height, c.width, gw.get(), c.d,
                     c.p, gd.c(), c.wantX ? oX.get() : nullptr, c.wantW ? oW.get() : nullptr,
                     c.wantB ? oB.get() : nullptr, {ws.get(), bytes});
  syncDevice();
  if (c.wantX)
    expectClose(rowOf(download(t, oX.get(), pixels)), rowOf(rX), t);
  if (c.wantW)
    expectClose(rowOf(download(t, oW.get(), c.d * patchLen)), rowOf(rW), t);
  if (c.wantB)
    expectClose(rowOf(download(t, oB.get(), c.d)), rowOf(rB), t);
  if (c.wantW || c.wantB)
    expectError(
        [&] {
          patchEmbedBackward(nullptr, gemm, t, gx.get(), c.batch, c.c, c.height, c.width, gw.get(),
                             c.d, c.p, gd.c(), nullptr, oW.get(), oB.get(), {ws.get(), bytes / 2});
        },
        "bytes needed");
}

TEST(GradMemoryBoundLayout, PatchEmbed) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<PatchCase> cases = {
      {3, 4, 12, 8, 70, 2, 3, true, true, true},
      {2, 3, 16, 20, 40, 4, 0, true, true, false},
      {1, 5, 9, 6, 33, 3, 1, false, false, true},
      // DiT-XL/2 on 256² images (32² latents), a batch of 8.
      {8, 4, 32, 32, 1152, 2, 0, true, true, true},
  };
  for (DType t : floatTypes())
    for (const PatchCase &c : cases)
      runPatchEmbedBackward(rng, t, c);
}

TEST(GradMemoryBoundLayout, UnpatchifyAndTokenMean) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes()) {
    SCOPED_TRACE(dtypeName(t));
    const int64_t batch = 2, h = 3, w = 5, p = 2, c = 3, pad = 3;
    const int64_t n = batch * c * h * p * w * p;
    std::vector<float> d = rng.normal(n, 1.0, 0.0, t);
    HostMat ref(batch * h * w, p * p * c);
    cpu::unpatchifyBackward(d.data(), batch, h, w, p, c, ref.mat());
    DeviceBuffer gd = upload(t, d);
    DevMat o = toDevice(poisonedMat(batch * h * w, p * p * c, p * p * c + pad), t);
    unpatchifyBackward(nullptr, t, gd.get(), batch, h, w, p, c, o.m());
    syncDevice();
    expectExact(toHost(o), ref);

    const int64_t tokens = 17, dim = 30;
    HostMat dm = randomMat(rng, t, 3, dim, dim + 2);
    HostMat rm(3 * tokens, dim);
    cpu::tokenMeanBackward(dm.cmat(), 3, tokens, rm.mat());
    DevMat gdm = toDevice(dm, t);
    DevMat om = toDevice(poisonedMat(3 * tokens, dim, dim + 5), t);
    tokenMeanBackward(nullptr, t, gdm.c(), 3, tokens, om.m());
    syncDevice();
    expectClose(toHost(om), rm, t);
  }
}

TEST(GradMemoryBoundLayout, LabelEmbed) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (int64_t batch : {int64_t{37}, int64_t{300}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " batch " << batch);
      const int64_t classes = 10, d = 70;
      std::vector<int32_t> labels(static_cast<size_t>(batch));
      for (auto &l : labels)
        l = static_cast<int32_t>(rng.integer(0, classes)); // classes = the null class
      labels[0] = static_cast<int32_t>(classes);
      HostMat dOut = randomMat(rng, t, batch, d, d + 3);
      std::vector<float> ref(static_cast<size_t>((classes + 1) * d));
      cpu::labelEmbedBackward(labels.data(), batch, classes, d, dOut.cmat(), ref.data());
      DeviceBuffer gl(labels.size() * sizeof(int32_t));
      cudaOk(cudaMemcpy(gl.get(), labels.data(), labels.size() * sizeof(int32_t),
                        cudaMemcpyHostToDevice),
             "labels");
      DevMat gd = toDevice(dOut, t);
      DeviceBuffer o = upload(t, poisonVec((classes + 1) * d));
      labelEmbedBackward(nullptr, t, gl.as<int32_t>(), batch, classes, d, gd.c(), o.get());
      syncDevice();
      HostMat got(classes + 1, d), want(classes + 1, d);
      got.v = download(t, o.get(), (classes + 1) * d);
      want.v = ref;
      expectClose(got, want, t);
    }
}

struct ConvCase {
  int64_t batch, h, w, d, k, ldPad;
  bool wantX, wantW, wantB;
};

void runDepthwiseConvBackward(Rng &rng, DType t, const ConvCase &c, ScanOrder from, ScanOrder to) {
  SCOPED_TRACE(::testing::Message() << dtypeName(t) << " batch " << c.batch << " " << c.h << "x"
                                    << c.w << " d " << c.d << " k " << c.k << " from "
                                    << static_cast<int>(from) << " to " << static_cast<int>(to));
  const int64_t rows = c.batch * c.h * c.w, ld = c.d + c.ldPad, taps = c.k * c.k;
  HostMat x = randomMat(rng, t, rows, c.d, ld), dOut = randomMat(rng, t, rows, c.d, ld);
  std::vector<float> w = rng.normal(c.d * taps, 0.3, 0.0, t);
  HostMat rX(rows, c.d);
  std::vector<float> rW(static_cast<size_t>(c.d * taps)), rB(static_cast<size_t>(c.d));
  cpu::Mat cdX;
  if (c.wantX)
    cdX = rX.mat();
  cpu::depthwiseConvBackward(x.cmat(), c.batch, c.h, c.w, w.data(), c.k, from, to, dOut.cmat(),
                             cdX, c.wantW ? rW.data() : nullptr, c.wantB ? rB.data() : nullptr);
  DevMat gx = toDevice(x, t), gd = toDevice(dOut, t);
  DeviceBuffer gw = upload(t, w);
  DevMat oX = toDevice(poisonedMat(rows, c.d, ld), t);
  DeviceBuffer oW = upload(t, poisonVec(c.d * taps)), oB = upload(t, poisonVec(c.d));
  const size_t bytes = depthwiseConvBackwardWorkspaceBytes(c.batch, c.h, c.w, c.d, c.k);
  DeviceBuffer ws(bytes);
  DMat gdX;
  if (c.wantX)
    gdX = oX.m();
  depthwiseConvBackward(nullptr, t, gx.c(), c.batch, c.h, c.w, gw.get(), c.k, from, to, gd.c(), gdX,
                        c.wantW ? oW.get() : nullptr, c.wantB ? oB.get() : nullptr,
                        {ws.get(), bytes});
  syncDevice();
  if (c.wantX)
    expectClose(toHost(oX), rX, t);
  if (c.wantW)
    expectClose(rowOf(download(t, oW.get(), c.d * taps)), rowOf(rW), t);
  if (c.wantB)
    expectClose(rowOf(download(t, oB.get(), c.d)), rowOf(rB), t);
  if (c.wantW || c.wantB)
    expectError(
        [&] {
          depthwiseConvBackward(nullptr, t, gx.c(), c.batch, c.h, c.w, gw.get(), c.k, from, to,
                                gd.c(), DMat{}, oW.get(), oB.get(), {ws.get(), bytes - 4});
        },
        "bytes needed");
}

TEST(GradMemoryBoundLayout, DepthwiseConv) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const ScanOrder orders[] = {ScanOrder::RowMajor, ScanOrder::RowMajorReversed, ScanOrder::ColMajor,
                              ScanOrder::ColMajorReversed};
  for (DType t : floatTypes()) {
    for (ScanOrder from : orders)
      for (ScanOrder to : orders)
        runDepthwiseConvBackward(rng, t, {2, 5, 7, 20, 3, 3, true, true, true}, from, to);
    runDepthwiseConvBackward(rng, t, {3, 9, 6, 33, 5, 0, true, true, false}, ScanOrder::ColMajor,
                             ScanOrder::RowMajorReversed);
    runDepthwiseConvBackward(rng, t, {1, 4, 4, 8, 1, 1, false, false, true}, ScanOrder::RowMajor,
                             ScanOrder::ColMajor);
    // DiG-like: 16 x 16 tokens, 8 samples (2048 rows, 16 chunks).
    runDepthwiseConvBackward(rng, t, {8, 16, 16, 384, 3, 0, true, true, true},
                             ScanOrder::RowMajorReversed, ScanOrder::ColMajorReversed);
  }
}

} // namespace
} // namespace diffrt::cuda::testing
