//===- MemoryBoundTest.cpp - GPU memory-bound kernels vs the CPU reference -===//
//
// Norm (every register-tile configuration and the fallback), broadcast
// arithmetic, activations, modulation, the gated residual, casts, the token
// layout kernels (scan orders, depth-wise convolution, unpatchify, masking,
// unmasking, token mean) and the embeddings, each in f32, bf16 and f16 on
// strided and deliberately misaligned views, against diffrt::cpu on the same
// rounded inputs. Data-movement kernels must match bit for bit; the index
// checks must raise the documented error codes.
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include <numeric>
#include <tuple>
#include <utility>

namespace diffrt::cuda::testing {
namespace {

//===----------------------------------------------------------------------===//
// norm
//===----------------------------------------------------------------------===//

struct NormCase {
  int64_t rows, cols, group;
  NormKind kind;
  bool weight, bias, modulate, gate;
  int64_t ldPad;
  size_t offset; // elements past a 16-byte boundary (1: misaligned)
  int64_t rowsPerSample;
  // The residual form: x is the update y, and the rows normalised are
  // sum = residual + gate[sample] ⊙ y, also written (over the residual
  // itself when inPlace).
  bool residual = false, inPlace = false;
};

void runNorm(Rng &rng, DType t, const NormCase &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(t) << " rows " << c.rows << " cols " << c.cols << " group " << c.group
               << (c.kind == NormKind::Layer ? " layer" : " rms") << " weight " << c.weight
               << " bias " << c.bias << " modulate " << c.modulate << " gate " << c.gate
               << " ldPad " << c.ldPad << " offset " << c.offset);
  const int64_t ld = c.cols + c.ldPad, samples = c.rows / c.rowsPerSample;
  // A nonzero mean makes the two-pass variance matter.
  HostMat x = randomMat(rng, t, c.rows, c.cols, ld, 1.0, 0.5);
  std::vector<float> w = rng.normal(c.group, 0.5, 1.0, t), b = rng.normal(c.group, 0.5, 0.0, t);
  HostMat shift = randomMat(rng, t, samples, c.cols, ld, 0.5);
  HostMat scale = randomMat(rng, t, samples, c.cols, ld, 0.3);
  HostMat gate = randomMat(rng, t, c.rows, c.cols, ld, 2.0);
  HostMat residual = randomMat(rng, t, c.rows, c.cols, ld, 1.0, 0.5);
  HostMat residualGate = randomMat(rng, t, samples, c.cols, ld, 0.7);
  // The GPU rounds the sum to t before normalising it, as the separate
  // gated-residual pass would store it.
  HostMat sumRef(c.rows, c.cols);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.cols; ++j)
      sumRef.at(r, j) = roundTo(t, residual.at(r, j) + residualGate.at(r / c.rowsPerSample, j) * x.at(r, j));

  cpu::NormArgs ca;
  ca.kind = c.kind;
  ca.group = c.group;
  ca.eps = 1e-6f;
  ca.weight = c.weight ? w.data() : nullptr;
  ca.bias = c.bias ? b.data() : nullptr;
  if (c.modulate) {
    ca.shift = shift.cmat();
    ca.scale = scale.cmat();
    ca.rowsPerSample = c.rowsPerSample;
  }
  if (c.gate)
    ca.siluGate = gate.cmat();
  HostMat ref(c.rows, c.cols);
  cpu::norm(c.residual ? sumRef.cmat() : x.cmat(), ca, ref.mat());

  DevMat dx = toDevice(x, t, c.offset), dshift = toDevice(shift, t, c.offset);
  DevMat dscale = toDevice(scale, t, c.offset), dgate = toDevice(gate, t, c.offset);
  DeviceBuffer dw = upload(t, w, c.offset), db = upload(t, b, c.offset);
  DevMat dout = toDevice(poisonedMat(c.rows, c.cols, ld), t, c.offset);
  NormArgs ga;
  ga.kind = c.kind;
  ga.group = c.group;
  ga.eps = 1e-6f;
  const size_t es = dtypeSize(t);
  ga.weight = c.weight ? static_cast<uint8_t *>(dw.get()) + c.offset * es : nullptr;
  ga.bias = c.bias ? static_cast<uint8_t *>(db.get()) + c.offset * es : nullptr;
  if (c.modulate) {
    ga.shift = dshift.c();
    ga.scale = dscale.c();
    ga.rowsPerSample = c.rowsPerSample;
  }
  if (c.gate)
    ga.siluGate = dgate.c();
  DevMat dresidual = toDevice(residual, t, c.offset), dresidualGate = toDevice(residualGate, t, c.offset);
  DevMat dsum = toDevice(poisonedMat(c.rows, c.cols, ld), t, c.offset);
  if (c.residual) {
    ga.residual = dresidual.c();
    ga.residualGate = dresidualGate.c();
    ga.sum = c.inPlace ? dresidual.m() : dsum.m();
  }
  norm(nullptr, t, dx.c(), ga, dout.m());
  syncDevice();
  expectClose(toHost(dout), ref, t);
  if (c.residual)
    expectClose(toHost(c.inPlace ? dresidual : dsum), sumRef, t);
}

TEST(GpuNorm, MatchesCpuForEveryTileConfiguration) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<NormCase> cases = {
      // DiT-XL LayerNorm + adaLN: a 64-lane team (16-bit) or a 128-lane
      // block (f32) per row.
      {64, 1152, 1152, NormKind::Layer, true, true, true, false, 0, 0, 16},
      // adaLN alone (no affine, no gate): the modulate kernel, a warp per
      // row with two, three or five vectors a lane, some lanes idle on the
      // last (1000, 520 values), padded rows; f32 rows over 160 vectors go
      // to the teams.
      {512, 1152, 1152, NormKind::Layer, false, false, true, false, 8, 0, 256},
      {35, 1000, 1000, NormKind::Layer, false, false, true, false, 0, 0, 7},
      {50, 520, 520, NormKind::Layer, false, false, true, false, 16, 0, 10},
      {96, 384, 384, NormKind::Rms, false, false, true, false, 0, 0, 32},
      // Per-head RMS norm with the SiLU gate (GLA output): 8-lane teams.
      {50, 384, 64, NormKind::Rms, true, false, false, true, 8, 0, 1},
      // Head width 72: 9 vectors per 8-lane team (two per lane, one idle).
      {40, 288, 72, NormKind::Layer, true, true, false, false, 0, 0, 1},
      // DiT-B's 768 values: 64-lane teams, two vectors a lane (16-bit) or
      // four (f32).
      {21, 768, 768, NormKind::Layer, true, true, true, false, 0, 0, 7},
      // Long rows: block teams of 256 / 512 lanes.
      {9, 4608, 4608, NormKind::Layer, false, false, true, true, 16, 0, 3},
      {17, 1024, 1024, NormKind::Rms, true, true, true, true, 0, 0, 17},
      {6, 2048, 2048, NormKind::Layer, true, false, false, false, 8, 0, 1},
      // Misaligned views and ragged widths: the block-per-group fallback.
      {33, 200, 40, NormKind::Layer, true, true, true, true, 3, 1, 11},
      // Groups beyond the register tile: fallback too.
      {3, 40000, 40000, NormKind::Rms, true, true, false, false, 0, 0, 1},
      // The residual form: DiT-XL's rows in the modulate kernel (five
      // vectors a lane, and three), into a separate sum and in place; with
      // an affine norm or misaligned views, the sum first, then the norm.
      {512, 1152, 1152, NormKind::Layer, false, false, true, false, 8, 0, 256, true, false},
      {512, 1152, 1152, NormKind::Layer, false, false, true, false, 0, 0, 256, true, true},
      {50, 520, 520, NormKind::Layer, false, false, true, false, 16, 0, 10, true, true},
      {21, 768, 768, NormKind::Layer, true, true, true, false, 0, 0, 7, true, false},
      {33, 200, 200, NormKind::Layer, true, true, true, false, 3, 1, 11, true, true},
  };
  for (DType t : floatTypes())
    for (const NormCase &c : cases)
      runNorm(rng, t, c);
}

//===----------------------------------------------------------------------===//
// Activations, modulation, gated residual, cast
//===----------------------------------------------------------------------===//

TEST(GpuElementwise, ActivateInPlace) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (Act act : {Act::None, Act::Gelu, Act::GeluTanh, Act::Silu})
      for (auto [n, offset] : {std::pair<int64_t, size_t>{100003, 0}, {1001, 1}}) {
        SCOPED_TRACE(::testing::Message() << dtypeName(t) << " act " << static_cast<int>(act)
                                          << " n " << n << " offset " << offset);
        // Wide values reach the tails where 1 + erf and 1 + tanh cancel.
        std::vector<float> x = rng.normal(n, 4.0, 0.0, t), ref = x;
        cpu::activate(ref.data(), n, act);
        DeviceBuffer dx = upload(t, x, offset);
        void *p = static_cast<uint8_t *>(dx.get()) + offset * dtypeSize(t);
        activate(nullptr, t, p, n, act);
        syncDevice();
        expectClose(rowOf(download(t, p, static_cast<size_t>(n))), rowOf(ref), t);
      }
}

TEST(GpuElementwise, ModulateAndGatedResidual) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Case {
    int64_t rows, cols, ldPad, rowsPerSample;
    size_t offset;
  };
  for (DType t : floatTypes())
    for (const Case &c : {Case{96, 1152, 8, 32, 0}, Case{30, 100, 3, 10, 1}, Case{7, 24, 0, 1, 0}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " rows " << c.rows << " cols "
                                        << c.cols << " ldPad " << c.ldPad << " offset "
                                        << c.offset);
      const int64_t ld = c.cols + c.ldPad, samples = c.rows / c.rowsPerSample;
      HostMat x = randomMat(rng, t, c.rows, c.cols, ld), y = randomMat(rng, t, c.rows, c.cols, ld);
      HostMat shift = randomMat(rng, t, samples, c.cols, ld);
      HostMat scale = randomMat(rng, t, samples, c.cols, ld, 0.3);
      DevMat dx = toDevice(x, t, c.offset), dy = toDevice(y, t, c.offset);
      DevMat dshift = toDevice(shift, t, c.offset), dscale = toDevice(scale, t, c.offset);

      HostMat ref(c.rows, c.cols);
      cpu::modulate(x.cmat(), shift.cmat(), scale.cmat(), c.rowsPerSample, ref.mat());
      DevMat dout = toDevice(poisonedMat(c.rows, c.cols, ld), t, c.offset);
      modulate(nullptr, t, dx.c(), dshift.c(), dscale.c(), c.rowsPerSample, dout.m());
      syncDevice();
      expectClose(toHost(dout), ref, t);

      // Gated residual into a separate output, then in place (out aliases
      // the residual).
      cpu::gatedResidual(x.cmat(), shift.cmat(), y.cmat(), c.rowsPerSample, ref.mat());
      DevMat dout2 = toDevice(poisonedMat(c.rows, c.cols, ld), t, c.offset);
      gatedResidual(nullptr, t, dx.c(), dshift.c(), dy.c(), c.rowsPerSample, dout2.m());
      syncDevice();
      expectClose(toHost(dout2), ref, t);
      gatedResidual(nullptr, t, dx.c(), dshift.c(), dy.c(), c.rowsPerSample, dx.m());
      syncDevice();
      expectClose(toHost(dx), ref, t);
    }
}

TEST(GpuElementwise, CastBetweenAllFloatTypes) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType from : floatTypes())
    for (DType to : floatTypes())
      for (auto [n, offset] : {std::pair<int64_t, size_t>{100007, 0}, {1003, 1}}) {
        SCOPED_TRACE(::testing::Message() << dtypeName(from) << " -> " << dtypeName(to) << " n "
                                          << n << " offset " << offset);
        std::vector<float> x = rng.normal(n, 3.0, 0.0, from), ref(x.size());
        for (size_t i = 0; i < x.size(); ++i)
          ref[i] = roundTo(to, x[i]);
        DeviceBuffer din = upload(from, x, offset);
        std::vector<float> poison(x.size(), kNaN);
        DeviceBuffer dout = upload(to, poison, offset);
        const void *in = static_cast<uint8_t *>(din.get()) + offset * dtypeSize(from);
        void *out = static_cast<uint8_t *>(dout.get()) + offset * dtypeSize(to);
        cast(nullptr, from, in, to, out, n);
        syncDevice();
        expectExact(rowOf(download(to, out, x.size())), rowOf(ref));
      }
}

//===----------------------------------------------------------------------===//
// Token layout
//===----------------------------------------------------------------------===//

const ScanOrder kOrders[] = {ScanOrder::RowMajor, ScanOrder::RowMajorReversed,
                             ScanOrder::ColMajor, ScanOrder::ColMajorReversed};

TEST(GpuLayout, ReorderTokensAllOrderPairs) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 2, h = 5, w = 7;
  for (DType t : floatTypes())
    for (auto [d, ldPad, offset] : {std::tuple<int64_t, int64_t, size_t>{24, 8, 0}, {13, 2, 1}})
      for (ScanOrder from : kOrders)
        for (ScanOrder to : kOrders) {
          SCOPED_TRACE(::testing::Message() << dtypeName(t) << " d " << d << " from "
                                            << static_cast<int>(from) << " to "
                                            << static_cast<int>(to));
          HostMat x = randomMat(rng, t, batch * h * w, d, d + ldPad);
          HostMat ref(batch * h * w, d);
          cpu::reorderTokens(x.cmat(), batch, h, w, from, to, ref.mat());
          DevMat dx = toDevice(x, t, offset);
          DevMat dout = toDevice(poisonedMat(batch * h * w, d, d + ldPad), t, offset);
          reorderTokens(nullptr, t, dx.c(), batch, h, w, from, to, dout.m());
          syncDevice();
          expectExact(toHost(dout), ref);
        }
}

TEST(GpuLayout, DepthwiseConvolution) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Case {
    int64_t batch, h, w, d, k, ldPad;
    size_t offset;
    bool bias;
    ScanOrder from, to;
  };
  const std::vector<Case> cases = {
      {2, 6, 9, 40, 3, 8, 0, true, ScanOrder::RowMajor, ScanOrder::RowMajor},
      {2, 6, 9, 40, 3, 0, 0, false, ScanOrder::RowMajorReversed, ScanOrder::ColMajor},
      {1, 7, 5, 48, 5, 16, 0, true, ScanOrder::ColMajor, ScanOrder::ColMajorReversed},
      // k = 7: 49 taps, so 1152 channels need several shared-memory chunks.
      {1, 5, 6, 1152, 7, 0, 0, true, ScanOrder::ColMajorReversed, ScanOrder::RowMajor},
      // Misaligned and ragged: scalar path.
      {2, 4, 4, 13, 3, 3, 1, true, ScanOrder::RowMajor, ScanOrder::ColMajor},
  };
  for (DType t : floatTypes())
    for (const Case &c : cases) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " grid " << c.h << "x" << c.w << " d "
                                        << c.d << " k " << c.k << " from "
                                        << static_cast<int>(c.from) << " to "
                                        << static_cast<int>(c.to));
      const int64_t rows = c.batch * c.h * c.w, ld = c.d + c.ldPad;
      HostMat x = randomMat(rng, t, rows, c.d, ld);
      std::vector<float> w = rng.normal(c.d * c.k * c.k, 0.3, 0.0, t);
      std::vector<float> b = rng.normal(c.d, 1.0, 0.0, t);
      HostMat ref(rows, c.d);
      cpu::depthwiseConv(x.cmat(), c.batch, c.h, c.w, w.data(), c.bias ? b.data() : nullptr, c.k,
                         c.from, c.to, ref.mat());
      DevMat dx = toDevice(x, t, c.offset);
      DeviceBuffer dw = upload(t, w), db = upload(t, b);
      DevMat dout = toDevice(poisonedMat(rows, c.d, ld), t, c.offset);
      depthwiseConv(nullptr, t, dx.c(), c.batch, c.h, c.w, dw.get(), c.bias ? db.get() : nullptr,
                    c.k, c.from, c.to, dout.m());
      syncDevice();
      expectClose(toHost(dout), ref, t);
    }
}

TEST(GpuLayout, Unpatchify) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : floatTypes())
    for (auto [p, c] : {std::pair<int64_t, int64_t>{2, 4}, {2, 8}, {4, 3}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " p " << p << " c " << c);
      const int64_t batch = 3, h = 4, w = 5, width = p * p * c;
      HostMat x = randomMat(rng, t, batch * h * w, width, width + 2);
      const int64_t n = batch * c * h * p * w * p;
      std::vector<float> ref(static_cast<size_t>(n));
      cpu::unpatchify(x.cmat(), batch, h, w, p, c, ref.data());
      DevMat dx = toDevice(x, t);
      std::vector<float> poison(static_cast<size_t>(n), kNaN);
      DeviceBuffer dout = upload(t, poison);
      unpatchify(nullptr, t, dx.c(), batch, h, w, p, c, dout.get());
      syncDevice();
      expectExact(rowOf(download(t, dout.get(), static_cast<size_t>(n))), rowOf(ref));
    }
}

/// Per sample, `kept` distinct token indices in random order.
std::vector<int32_t> randomKeep(Rng &rng, int64_t batch, int64_t tokens, int64_t kept) {
  std::vector<int32_t> keep;
  std::vector<int32_t> perm(static_cast<size_t>(tokens));
  for (int64_t b = 0; b < batch; ++b) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng.gen());
    keep.insert(keep.end(), perm.begin(), perm.begin() + kept);
  }
  return keep;
}

DeviceBuffer uploadInts(const std::vector<int32_t> &v) {
  DeviceBuffer buf(v.size() * sizeof(int32_t));
  cudaOk(cudaMemcpy(buf.get(), v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
         "upload indices");
  return buf;
}

int32_t readFlag(const DeviceBuffer &flag) {
  int32_t v = -1;
  cudaOk(cudaMemcpy(&v, flag.get(), sizeof v, cudaMemcpyDeviceToHost), "read flag");
  return v;
}

void clearFlag(const DeviceBuffer &flag) {
  cudaOk(cudaMemset(flag.get(), 0, sizeof(int32_t)), "clear flag");
}

TEST(GpuLayout, MaskAndUnmaskTokens) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Case {
    int64_t batch, tokens, kept, d, ldPad;
    size_t offset;
  };
  // The last case has too many tokens for the shared inverse map of
  // unmaskTokens and takes its zero-then-scatter path.
  for (DType t : floatTypes())
    for (const Case &c : {Case{3, 50, 13, 24, 8, 0}, Case{2, 256, 64, 1152, 0, 0},
                          Case{3, 40, 10, 13, 3, 1}, Case{1, 70000, 300, 8, 0, 0}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " batch " << c.batch << " tokens "
                                        << c.tokens << " kept " << c.kept << " d " << c.d);
      std::vector<int32_t> keep = randomKeep(rng, c.batch, c.tokens, c.kept);
      DeviceBuffer dkeep = uploadInts(keep), flag(sizeof(int32_t));
      clearFlag(flag);
      const int64_t ld = c.d + c.ldPad;

      HostMat x = randomMat(rng, t, c.batch * c.tokens, c.d, ld);
      HostMat ref(c.batch * c.kept, c.d);
      cpu::maskTokens(x.cmat(), keep.data(), c.batch, c.tokens, c.kept, ref.mat());
      DevMat dx = toDevice(x, t, c.offset);
      DevMat dout = toDevice(poisonedMat(c.batch * c.kept, c.d, ld), t, c.offset);
      maskTokens(nullptr, t, dx.c(), dkeep.as<int32_t>(), c.batch, c.tokens, c.kept, dout.m(),
                 flag.as<int32_t>());
      syncDevice();
      expectExact(toHost(dout), ref);
      EXPECT_EQ(readFlag(flag), 0);

      HostMat xk = randomMat(rng, t, c.batch * c.kept, c.d, ld);
      HostMat ref2(c.batch * c.tokens, c.d);
      cpu::unmaskTokens(xk.cmat(), keep.data(), c.batch, c.tokens, c.kept, ref2.mat());
      DevMat dxk = toDevice(xk, t, c.offset);
      DevMat dout2 = toDevice(poisonedMat(c.batch * c.tokens, c.d, ld), t, c.offset);
      unmaskTokens(nullptr, t, dxk.c(), dkeep.as<int32_t>(), c.batch, c.tokens, c.kept,
                   dout2.m(), flag.as<int32_t>());
      syncDevice();
      expectExact(toHost(dout2), ref2);
      EXPECT_EQ(readFlag(flag), 0);
    }
}

TEST(GpuLayout, InvalidKeepIndicesRaiseTheErrorFlag) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 2, tokens = 30, kept = 8, d = 16;
  const DType t = DType::BF16;
  HostMat x = randomMat(rng, t, batch * tokens, d), xk = randomMat(rng, t, batch * kept, d);
  DevMat dx = toDevice(x, t), dxk = toDevice(xk, t);
  DevMat dmasked = toDevice(poisonedMat(batch * kept, d), t);
  DevMat dunmasked = toDevice(poisonedMat(batch * tokens, d), t);
  DeviceBuffer flag(sizeof(int32_t));
  struct Bad {
    int32_t value;
    bool repeat; // repeat an existing index instead of writing `value`
    int32_t code;
    const char *what;
  };
  for (const Bad &bad : {Bad{static_cast<int32_t>(tokens), false, 1, "index == tokens"},
                         Bad{-1, false, 1, "negative index"},
                         Bad{0, true, 2, "repeated index"}}) {
    SCOPED_TRACE(bad.what);
    std::vector<int32_t> keep = randomKeep(rng, batch, tokens, kept);
    // Corrupt slot 5 of sample 1.
    keep[kept + 5] = bad.repeat ? keep[kept + 2] : bad.value;
    DeviceBuffer dkeep = uploadInts(keep);
    clearFlag(flag);
    maskTokens(nullptr, t, dx.c(), dkeep.as<int32_t>(), batch, tokens, kept, dmasked.m(),
               flag.as<int32_t>());
    syncDevice();
    EXPECT_EQ(readFlag(flag), bad.code) << "maskTokens";
    clearFlag(flag);
    unmaskTokens(nullptr, t, dxk.c(), dkeep.as<int32_t>(), batch, tokens, kept, dunmasked.m(),
                 flag.as<int32_t>());
    syncDevice();
    EXPECT_EQ(readFlag(flag), bad.code) << "unmaskTokens";
  }
}

TEST(GpuLayout, TokenMean) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Case {
    int64_t batch, tokens, d, ldPad;
    size_t offset;
  };
  for (DType t : floatTypes())
    for (const Case &c : {Case{3, 257, 1152, 8, 0}, Case{2, 64, 13, 3, 1}, Case{1, 4096, 384, 0, 0}}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " batch " << c.batch << " tokens "
                                        << c.tokens << " d " << c.d);
      HostMat x = randomMat(rng, t, c.batch * c.tokens, c.d, c.d + c.ldPad, 1.0, 0.3);
      HostMat ref(c.batch, c.d);
      cpu::tokenMean(x.cmat(), c.batch, c.tokens, ref.mat());
      DevMat dx = toDevice(x, t, c.offset);
      DevMat dout = toDevice(poisonedMat(c.batch, c.d, c.d + c.ldPad), t, c.offset);
      tokenMean(nullptr, t, dx.c(), c.batch, c.tokens, dout.m());
      syncDevice();
      expectClose(toHost(dout), ref, t);
    }
}

//===----------------------------------------------------------------------===//
// Embeddings
//===----------------------------------------------------------------------===//

TEST(GpuEmbed, SincosPositionTable) {
  DIFFRT_REQUIRE_GPU();
  for (auto [h, w, d, interp] : {std::tuple<int64_t, int64_t, int64_t, double>{16, 16, 1152, 1.0},
                                 {32, 24, 64, 2.0}, {8, 8, 4, 0.5}}) {
    SCOPED_TRACE(::testing::Message() << "grid " << h << "x" << w << " d " << d);
    std::vector<float> ref(static_cast<size_t>(h * w * d));
    cpu::sincosPosEmbed(h, w, d, interp, ref.data());
    std::vector<float> poison(ref.size(), kNaN);
    DeviceBuffer dout = upload(DType::F32, poison);
    sincosPosEmbed(nullptr, h, w, d, interp, dout.as<float>());
    syncDevice();
    expectClose(rowOf(download(DType::F32, dout.get(), ref.size())), rowOf(ref), DType::F32);
  }
}

TEST(GpuEmbed, TimestepEmbedding) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t dim : {256, 257, 2}) {
    SCOPED_TRACE(::testing::Message() << "dim " << dim);
    const int64_t batch = 7;
    std::vector<float> ts = rng.uniform(batch, 0.0, 1000.0);
    std::vector<float> ref(static_cast<size_t>(batch * dim));
    cpu::timestepEmbed(ts.data(), batch, dim, 10000.0, ref.data());
    DeviceBuffer dt = upload(DType::F32, ts);
    std::vector<float> poison(ref.size(), kNaN);
    DeviceBuffer dout = upload(DType::F32, poison);
    timestepEmbed(nullptr, dt.as<float>(), batch, dim, 10000.0, dout.as<float>());
    syncDevice();
    expectClose(rowOf(download(DType::F32, dout.get(), ref.size())), rowOf(ref), DType::F32);
  }
}

TEST(GpuEmbed, LabelEmbeddingAndBadLabels) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t numClasses = 10, batch = 9;
  for (DType t : floatTypes())
    for (int64_t d : {1152, 13}) {
      SCOPED_TRACE(::testing::Message() << dtypeName(t) << " d " << d);
      std::vector<float> table = rng.normal((numClasses + 1) * d, 1.0, 0.0, t);
      std::vector<int32_t> labels(static_cast<size_t>(batch));
      for (int32_t &l : labels)
        l = static_cast<int32_t>(rng.integer(0, numClasses));
      labels[3] = static_cast<int32_t>(numClasses); // the null class
      std::vector<float> ref(static_cast<size_t>(batch * d));
      cpu::labelEmbed(labels.data(), batch, table.data(), numClasses, d, ref.data());
      DeviceBuffer dtable = upload(t, table), dlabels = uploadInts(labels), flag(sizeof(int32_t));
      clearFlag(flag);
      std::vector<float> poison(ref.size(), kNaN);
      DeviceBuffer dout = upload(t, poison);
      labelEmbed(nullptr, t, dlabels.as<int32_t>(), batch, dtable.get(), numClasses, d, dout.get(),
                 flag.as<int32_t>());
      syncDevice();
      expectExact(rowOf(download(t, dout.get(), ref.size())), rowOf(ref));
      EXPECT_EQ(readFlag(flag), 0);

      for (int32_t bad : {static_cast<int32_t>(numClasses + 1), -1}) {
        labels[5] = bad;
        DeviceBuffer dbad = uploadInts(labels);
        clearFlag(flag);
        labelEmbed(nullptr, t, dbad.as<int32_t>(), batch, dtable.get(), numClasses, d,
                   dout.get(), flag.as<int32_t>());
        syncDevice();
        EXPECT_EQ(readFlag(flag), 3) << "label " << bad;
      }
    }
}

} // namespace
} // namespace diffrt::cuda::testing
