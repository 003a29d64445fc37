//===- GradGlaTest.cpp - GPU GLA backward vs the CPU reference ------------===//
//
// cuda::glaBackward against cpu::glaBackward (the exact gradient of the
// recurrence, f32) on the same rounded inputs, for every element type:
// DiG's head shape (dk 32, dv 64) over whole chunks, sequence lengths that
// are not a multiple of the chunk or shorter than it, a chunk longer than
// the kernel's 32-token cap and a one-token chunk, value widths of several
// 64-column slices with a partial last one (the path through f32 partial
// sums), wide keys that force shorter chunks, q/k/v/gates and the four
// gradients as column slices of packed buffers, misaligned views, subsets
// of the wanted gradients (unwanted ones must stay untouched), gate logits
// spread so that the per-step decays range from near 0 to near 1, bitwise
// reproducibility, and the workspace-too-small error.
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CudaGradKernels.h"
#include "diffrt/Error.h"

namespace diffrt::cuda::testing {
namespace {

enum Want : unsigned { kQ = 1, kK = 2, kV = 4, kG = 8, kAll = 15 };

struct GlaBwdCase {
  int64_t batch, t, heads, dk, dv, chunk;
  bool packed;      // inputs and gradients as column slices of packed buffers
  float normalizer; // decay α = sigmoid(a)^(1 / normalizer)
  double gateLo, gateHi;
  int64_t ldPad;    // extra columns of every buffer
  size_t offset;    // elements past a 16-byte boundary
  unsigned want = kAll;
};

HostMat uniformMat(Rng &rng, DType t, int64_t rows, int64_t cols, int64_t ld, double lo, double hi) {
  HostMat m(rows, cols, ld);
  std::vector<float> vals = rng.uniform(rows * cols, lo, hi, t);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      m.at(r, c) = vals[static_cast<size_t>(r * cols + c)];
  return m;
}

/// Columns [col, col + cols) of m as a contiguous HostMat.
HostMat columns(const HostMat &m, int64_t col, int64_t cols) {
  HostMat out(m.rows, cols);
  for (int64_t r = 0; r < m.rows; ++r)
    std::copy(m.row(r) + col, m.row(r) + col + cols, out.row(r));
  return out;
}

/// Tolerances. Every intermediate is f32 in both implementations (16-bit
/// inputs are only read, exactly), so the only 16-bit error is the one
/// rounding of each output: tolFor's bounds (0.5 ulp per element against
/// 1e-2 / 5e-3 norm-wise) hold with a wide margin. f32 differs only by the
/// summation order and the chunked form's e^{b_j - b_i} products against
/// the reference's step-by-step products, ~1e-6 relative over 256 steps.
Tol tolerance(DType t) { return tolFor(t); }

void runGlaBackward(Rng &rng, DType t, const GlaBwdCase &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(t) << " batch " << c.batch << " t " << c.t << " heads " << c.heads
               << " dk " << c.dk << " dv " << c.dv << " chunk " << c.chunk << " packed " << c.packed
               << " normalizer " << c.normalizer << " gates U(" << c.gateLo << ", " << c.gateHi
               << ") ldPad " << c.ldPad << " offset " << c.offset << " want " << c.want);
  const int64_t rows = c.batch * c.t, qw = c.heads * c.dk, vw = c.heads * c.dv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dk));
  const size_t es = dtypeSize(t);

  HostMat q = randomMat(rng, t, rows, qw), k = randomMat(rng, t, rows, qw);
  HostMat v = randomMat(rng, t, rows, vw);
  HostMat g = uniformMat(rng, t, rows, qw, 0, c.gateLo, c.gateHi);
  HostMat dOut = randomMat(rng, t, rows, vw, vw + c.ldPad);

  // The reference, all four gradients.
  HostMat refQ(rows, qw), refK(rows, qw), refV(rows, vw), refG(rows, qw);
  cpu::glaBackward(q.cmat(), k.cmat(), v.cmat(), g.cmat(), c.batch, c.t, c.heads, scale,
                   c.normalizer, c.chunk, dOut.cmat(), refQ.mat(), refK.mat(), refV.mat(),
                   refG.mat());
  const HostMat *refs[4] = {&refQ, &refK, &refV, &refG};
  const int64_t widths[4] = {qw, qw, vw, qw};
  const unsigned bits[4] = {kQ, kK, kV, kG};
  const char *names[4] = {"dQ", "dK", "dV", "dGateLogits"};

  DevMat ddo = toDevice(dOut, t, c.offset);
  const size_t wsBytes = glaBackwardWorkspaceBytes(c.batch, c.t, c.heads, c.dk, c.dv, c.chunk);
  DeviceBuffer ws(wsBytes);

  if (c.packed) {
    // Inputs [q | k | v | g] and gradients [dq | dk | dv | dg] per row.
    const int64_t width = 3 * qw + vw, ld = width + c.ldPad;
    const int64_t cols[4] = {0, qw, 2 * qw, 2 * qw + vw};
    HostMat in(rows, width, ld);
    const HostMat *srcs[4] = {&q, &k, &v, &g};
    for (int s = 0; s < 4; ++s)
      for (int64_t r = 0; r < rows; ++r)
        std::copy(srcs[s]->row(r), srcs[s]->row(r) + widths[s], in.row(r) + cols[s]);
    DevMat din = toDevice(in, t, c.offset);
    DevMat dgrad = toDevice(poisonedMat(rows, width, ld), t, c.offset);
    auto inSlice = [&](int s) {
      return DConstMat{static_cast<uint8_t *>(din.data()) + cols[s] * es, rows, widths[s], ld};
    };
    auto gradSlice = [&](int s) {
      return (c.want & bits[s]) != 0
                 ? DMat{static_cast<uint8_t *>(dgrad.data()) + cols[s] * es, rows, widths[s], ld}
                 : DMat{};
    };
    glaBackward(nullptr, t, inSlice(0), inSlice(1), inSlice(2), inSlice(3), c.batch, c.t, c.heads,
                scale, c.normalizer, c.chunk, ddo.c(), gradSlice(0), gradSlice(1), gradSlice(2),
                gradSlice(3), {ws.get(), wsBytes});
    syncDevice();
    HostMat got = toHost(dgrad);
    int64_t padTouched = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t col = width; col < ld; ++col)
        padTouched += got.at(r, col) != kSentinel;
    EXPECT_EQ(padTouched, 0) << "padding columns of the packed gradient were overwritten";
    for (int s = 0; s < 4; ++s) {
      SCOPED_TRACE(names[s]);
      HostMat slice = columns(got, cols[s], widths[s]);
      if ((c.want & bits[s]) != 0) {
        expectClose(slice, *refs[s], t, tolerance(t));
      } else {
        int64_t written = 0;
        for (float x : slice.v)
          written += !std::isnan(x);
        EXPECT_EQ(written, 0) << "a gradient that was not wanted was written";
      }
    }
  } else {
    HostMat qs(rows, qw, qw + c.ldPad), ks(rows, qw, qw + c.ldPad), gs(rows, qw, qw + c.ldPad);
    HostMat vs(rows, vw, vw + c.ldPad);
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(q.row(r), q.row(r) + qw, qs.row(r));
      std::copy(k.row(r), k.row(r) + qw, ks.row(r));
      std::copy(g.row(r), g.row(r) + qw, gs.row(r));
      std::copy(v.row(r), v.row(r) + vw, vs.row(r));
    }
    DevMat dq = toDevice(qs, t, c.offset), dk = toDevice(ks, t, c.offset);
    DevMat dv = toDevice(vs, t, c.offset), dg = toDevice(gs, t, c.offset);
    DevMat grads[4];
    for (int s = 0; s < 4; ++s)
      grads[s] = toDevice(poisonedMat(rows, widths[s], widths[s] + c.ldPad), t, c.offset);
    auto want = [&](int s) { return (c.want & bits[s]) != 0 ? grads[s].m() : DMat{}; };
    glaBackward(nullptr, t, dq.c(), dk.c(), dv.c(), dg.c(), c.batch, c.t, c.heads, scale,
                c.normalizer, c.chunk, ddo.c(), want(0), want(1), want(2), want(3),
                {ws.get(), wsBytes});
    syncDevice();
    for (int s = 0; s < 4; ++s) {
      if ((c.want & bits[s]) == 0)
        continue;
      SCOPED_TRACE(names[s]);
      expectClose(toHost(grads[s]), *refs[s], t, tolerance(t));
    }
  }
}

TEST(GradGla, MatchesCpuReference) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // Gates: with normalizer 16, a in [-60, 8] gives per-step decays from
  // e^{-3.75} ≈ 0.02 to 0.99998; with normalizer 1, a in [-9, 9] gives
  // 1.2e-4 to 0.9999.
  const std::vector<GlaBwdCase> cases = {
      // DiG head shape (DiG-S/2: 6 heads of dk 32, dv 64; 256 tokens at
      // 256 px, chunk 16), whole chunks.
      {2, 256, 3, 32, 64, 16, false, 16.0f, -60.0, 8.0, 0, 0},
      // t not a multiple of the chunk; t shorter than one chunk.
      {2, 37, 2, 32, 64, 16, false, 16.0f, -60.0, 8.0, 8, 0},
      {2, 10, 2, 32, 64, 16, false, 1.0f, -9.0, 9.0, 0, 0},
      // A chunk of 64 (the kernel caps it at 32) over a ragged length.
      {2, 100, 2, 32, 64, 64, false, 1.0f, -9.0, 9.0, 0, 0},
      // One-token chunks.
      {2, 23, 2, 16, 32, 1, false, 16.0f, -60.0, 8.0, 0, 0},
      // Three value slices, the last partial (f32 partial sums), dk not a
      // power of two; packed views.
      {2, 45, 2, 40, 160, 16, true, 16.0f, -60.0, 8.0, 8, 0},
      // dk 128: the tiles do not fit at 32 tokens, shorter chunks.
      {2, 70, 2, 128, 64, 32, false, 16.0f, -60.0, 8.0, 0, 0},
      // Narrow heads, misaligned packed views.
      {3, 29, 4, 8, 24, 8, true, 1.0f, -9.0, 9.0, 3, 1},
      // DiG-XL/2 head count with packed views.
      {2, 64, 18, 32, 64, 16, true, 16.0f, -60.0, 8.0, 0, 0},
  };
  for (DType t : floatTypes())
    for (const GlaBwdCase &c : cases)
      runGlaBackward(rng, t, c);
}

TEST(GradGla, SubsetsOfGradients) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // Each subset skips different work (no state pass without dQ and the gate
  // gradient; no carried gradient with dQ alone); unwanted slices of the
  // packed gradient must stay poisoned.
  for (unsigned want : {unsigned(kQ), unsigned(kK), unsigned(kV), unsigned(kG), unsigned(kK | kV),
                        unsigned(kQ | kG)})
    for (int64_t dv : {64, 96}) {
      GlaBwdCase c{2, 40, 2, 32, dv, 16, true, 16.0f, -60.0, 8.0, 4, 0, want};
      for (DType t : floatTypes())
        runGlaBackward(rng, t, c);
    }
}

TEST(GradGla, Reproducible) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // Two calls give the same bits (no atomics; slices added in a fixed order).
  const int64_t batch = 2, t = 50, heads = 2, dk = 32, dv = 128, chunk = 16;
  const int64_t rows = batch * t, qw = heads * dk, vw = heads * dv;
  const DType type = DType::BF16;
  DevMat q = toDevice(randomMat(rng, type, rows, qw), type);
  DevMat k = toDevice(randomMat(rng, type, rows, qw), type);
  DevMat v = toDevice(randomMat(rng, type, rows, vw), type);
  DevMat g = toDevice(uniformMat(rng, type, rows, qw, 0, -20.0, 8.0), type);
  DevMat dO = toDevice(randomMat(rng, type, rows, vw), type);
  const size_t wsBytes = glaBackwardWorkspaceBytes(batch, t, heads, dk, dv, chunk);
  DeviceBuffer ws(wsBytes);
  std::vector<HostMat> runs[2];
  for (int run = 0; run < 2; ++run) {
    DevMat out[4] = {toDevice(poisonedMat(rows, qw), type), toDevice(poisonedMat(rows, qw), type),
                     toDevice(poisonedMat(rows, vw), type), toDevice(poisonedMat(rows, qw), type)};
    glaBackward(nullptr, type, q.c(), k.c(), v.c(), g.c(), batch, t, heads, 0.2f, 16.0f, chunk,
                dO.c(), out[0].m(), out[1].m(), out[2].m(), out[3].m(), {ws.get(), wsBytes});
    syncDevice();
    for (const DevMat &o : out)
      runs[run].push_back(toHost(o));
  }
  for (int s = 0; s < 4; ++s)
    expectExact(runs[1][s], runs[0][s]);
}

TEST(GradGla, WorkspaceTooSmall) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 1, t = 40, heads = 2, dk = 32, dv = 64, chunk = 16;
  const int64_t rows = batch * t, qw = heads * dk, vw = heads * dv;
  const DType type = DType::F32;
  DevMat q = toDevice(randomMat(rng, type, rows, qw), type);
  DevMat k = toDevice(randomMat(rng, type, rows, qw), type);
  DevMat v = toDevice(randomMat(rng, type, rows, vw), type);
  DevMat g = toDevice(randomMat(rng, type, rows, qw), type);
  DevMat dO = toDevice(randomMat(rng, type, rows, vw), type);
  DevMat dQ = toDevice(poisonedMat(rows, qw), type);
  const size_t need = glaBackwardWorkspaceBytes(batch, t, heads, dk, dv, chunk);
  ASSERT_GT(need, 0u);
  DeviceBuffer ws(need);
  try {
    glaBackward(nullptr, type, q.c(), k.c(), v.c(), g.c(), batch, t, heads, 0.2f, 16.0f, chunk,
                dO.c(), dQ.m(), DMat{}, DMat{}, DMat{}, {ws.get(), need - 1});
    ADD_FAILURE() << "a workspace one byte short was accepted";
  } catch (const diffrt::Error &e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(need)), std::string::npos)
        << "the message should name the bytes needed: " << e.what();
  }
  // The full workspace works (and nothing was launched by the failed call).
  glaBackward(nullptr, type, q.c(), k.c(), v.c(), g.c(), batch, t, heads, 0.2f, 16.0f, chunk,
              dO.c(), dQ.m(), DMat{}, DMat{}, DMat{}, {ws.get(), need});
  syncDevice();
}

} // namespace
} // namespace diffrt::cuda::testing
