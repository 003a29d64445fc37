//===- GlaTest.cpp - GPU gated linear attention vs the CPU reference ------===//
//
// cuda::gla against cpu::gla (the same chunked form, f32) on the same
// rounded inputs: DiG's head shape (dk 32, dv 64), sequence lengths that
// are not a multiple of the chunk or shorter than it, wider keys (four and
// eight key-row groups, and a width that is not a multiple of 16), value
// widths split over several blocks with a partial last slice, q/k/v/gates
// as column slices of one packed projection, views that force the
// synchronous (non-cp.async) staging, strong decays, a chunk longer than
// the kernel's tile, and enough (sample, head) pairs for the 64-column
// value slices.
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

namespace diffrt::cuda::testing {
namespace {

struct GlaCase {
  int64_t batch, t, heads, dk, dv, chunk;
  bool packed;           // q, k, v, gates as column slices of one buffer
  double gateMean, gateStd;
  int64_t ldPad;         // extra columns of each separate buffer
  size_t offset;         // elements past a 16-byte boundary
};

void runGla(Rng &rng, DType t, const GlaCase &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(t) << " batch " << c.batch << " t " << c.t << " heads " << c.heads
               << " dk " << c.dk << " dv " << c.dv << " chunk " << c.chunk << " packed "
               << c.packed << " gate N(" << c.gateMean << ", " << c.gateStd << ") offset "
               << c.offset);
  const int64_t rows = c.batch * c.t, qw = c.heads * c.dk, vw = c.heads * c.dv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk)), normalizer = 16.0f;
  const size_t es = dtypeSize(t);

  HostMat ref(rows, vw);
  HostMat out = poisonedMat(rows, vw, vw + c.ldPad);
  DevMat dout = toDevice(out, t, c.offset);
  size_t wsBytes = glaWorkspaceBytes(c.batch, c.t, c.heads, c.dk, c.dv, c.chunk);
  DeviceBuffer ws(wsBytes);

  if (c.packed) {
    // [q | k | v | gates] per row, like a fused projection.
    const int64_t width = 3 * qw + vw;
    HostMat p(rows, width, width + c.ldPad);
    HostMat q = randomMat(rng, t, rows, qw), k = randomMat(rng, t, rows, qw);
    HostMat v = randomMat(rng, t, rows, vw);
    HostMat g = randomMat(rng, t, rows, qw, 0, c.gateStd, c.gateMean);
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(q.row(r), q.row(r) + qw, p.row(r));
      std::copy(k.row(r), k.row(r) + qw, p.row(r) + qw);
      std::copy(v.row(r), v.row(r) + vw, p.row(r) + 2 * qw);
      std::copy(g.row(r), g.row(r) + qw, p.row(r) + 2 * qw + vw);
    }
    auto slice = [&](int64_t col, int64_t w) {
      return cpu::ConstMat{p.v.data() + col, rows, w, p.ld};
    };
    cpu::gla(slice(0, qw), slice(qw, qw), slice(2 * qw, vw), slice(2 * qw + vw, qw), c.batch,
             c.t, c.heads, scale, normalizer, c.chunk, ref.mat());
    DevMat dp = toDevice(p, t, c.offset);
    auto dslice = [&](int64_t col, int64_t w) {
      return DConstMat{static_cast<uint8_t *>(dp.data()) + col * es, rows, w, dp.ld};
    };
    gla(nullptr, t, dslice(0, qw), dslice(qw, qw), dslice(2 * qw, vw), dslice(2 * qw + vw, qw),
        c.batch, c.t, c.heads, scale, normalizer, c.chunk, dout.m(), {ws.get(), wsBytes});
  } else {
    HostMat q = randomMat(rng, t, rows, qw, qw + c.ldPad);
    HostMat k = randomMat(rng, t, rows, qw, qw + c.ldPad);
    HostMat v = randomMat(rng, t, rows, vw, vw + c.ldPad);
    HostMat g = randomMat(rng, t, rows, qw, qw + c.ldPad, c.gateStd, c.gateMean);
    cpu::gla(q.cmat(), k.cmat(), v.cmat(), g.cmat(), c.batch, c.t, c.heads, scale, normalizer,
             c.chunk, ref.mat());
    DevMat dq = toDevice(q, t, c.offset), dk = toDevice(k, t, c.offset);
    DevMat dv = toDevice(v, t, c.offset), dg = toDevice(g, t, c.offset);
    gla(nullptr, t, dq.c(), dk.c(), dv.c(), dg.c(), c.batch, c.t, c.heads, scale, normalizer,
        c.chunk, dout.m(), {ws.get(), wsBytes});
  }
  syncDevice();
  expectClose(toHost(dout), ref, t);
}

TEST(GpuGla, MatchesCpuChunkedForm) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const std::vector<GlaCase> cases = {
      // DiG head shape, whole chunks.
      {2, 256, 3, 32, 64, 16, false, 0.0, 1.0, 0, 0},
      // t not a multiple of the chunk, and t shorter than one chunk.
      {2, 37, 2, 32, 64, 16, false, 0.0, 1.0, 8, 0},
      {1, 10, 2, 32, 64, 16, false, 0.0, 1.0, 0, 0},
      // Four key-row groups, 128 value columns, packed projection.
      {2, 100, 2, 64, 128, 16, true, 0.0, 1.0, 8, 0},
      // Eight key-row groups (dk 128), chunk 32.
      {1, 70, 1, 128, 32, 32, false, 0.0, 1.0, 0, 0},
      // dk not a multiple of 16 (zero-padded key rows), dv 72: a partial
      // last value slice.
      {2, 50, 3, 40, 72, 16, false, 0.0, 1.0, 0, 0},
      // dk · 2 bytes not a multiple of 16 (16-bit): synchronous staging.
      {1, 64, 2, 20, 24, 16, false, 0.0, 1.0, 0, 0},
      // Misaligned base pointers: synchronous staging for every type.
      {1, 45, 2, 32, 64, 16, false, 0.0, 1.0, 0, 1},
      // Strong decays: per-step log-decays near -2, e^-30 across a chunk.
      {1, 96, 2, 32, 64, 16, false, -30.0, 4.0, 0, 0},
      // A chunk longer than the kernel's 64-token tile.
      {1, 300, 2, 32, 64, 100, false, 0.0, 1.0, 0, 0},
      // 288 (sample, head) pairs: the 64-column value slices.
      {16, 64, 18, 32, 64, 16, false, 0.0, 1.0, 0, 0},
  };
  for (DType t : floatTypes())
    for (const GlaCase &c : cases)
      runGla(rng, t, c);
}

} // namespace
} // namespace diffrt::cuda::testing
