//===- GradAttentionTest.cpp - GPU tests of the attention backward --------===//
//
// cuda::attentionBackward against cpu::attentionBackward on the same
// inputs: fresh random values (seed in every failure message) rounded to
// the GPU type, gradients poisoned with NaN before the call, every element
// compared. The layouts are the training plan's: q, k and v are column
// slices of one packed qkv buffer (self-attention) or of a q buffer and a
// packed kv buffer (cross-attention, lq != lk), and dQ, dK, dV are column
// slices of gradient buffers of the same shapes, with padding columns. The
// padding, and the columns of gradients not asked for, hold a sentinel that
// must survive: a kernel writing past its view's columns (e.g. the padded
// columns of a head-dim tile) fails. Covers f32 (SIMT), bf16 and f16
// (tensor cores) at head dims 64, 72, 88 and 128; lq = lk = 256 and odd
// lengths (77, 100: tails in every tile kind); MicroDiT's 64 queries on 77
// keys; rows off 16-byte boundaries (scalar loads and stores); head dims
// that are not multiples of 8, unequal dk and dv, and 16-bit head dims above
// 128 (the SIMT fallback); negative, zero and large scales; and the
// argument errors, a too-small workspace included. With column sums (the
// q/k/v bias gradient, kern.vjp column_sums) each wanted gradient's sum
// over rows is compared with the sum of the gradient the kernel returned,
// the three sums adjacent in one vector (DiT's qkv bias gradient: one
// finishing launch) or apart, with a sentinel after each that must
// survive. Equal head dims of 64, 72 and 88 with aligned rows run on the
// wgmma kernels; MmaPathOnRequest checks the mma.sync ones that
// DIFFRT_ATTENTION_BACKWARD=mma selects. GradAttentionTiming prints the
// time at the DiT shapes, both paths.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CudaGradKernels.h"
#include "diffrt/Error.h"

#include "../cpu/TestUtil.h"
#include "GpuTestUtil.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace diffrt::cuda::gradattntest {
namespace {

namespace gt = ::diffrt::cuda::testing;
using gt::DevMat;
using gt::HostMat;
using gt::kSentinel;
using gt::Tol;

/// The backward rounds three intermediates to the 16-bit type in series
/// where the forward rounds one: P and dS before their tensor-core products
/// (relative 2^-9 for bf16, 2^-12 for f16 per element, random in sign, so
/// they average out over the 64..256 terms of each product) and the
/// gradient itself; Δ and all accumulations are f32. A few units of
/// roundoff norm-wise, hence twice tolFor's bounds. f32: f32 arithmetic
/// in both, different summation orders and exp(S − L) in place of
/// exp(S − max)/Σ: tolFor's 1e-5.
Tol gradTol(DType t) {
  Tol tol = gt::tolFor(t);
  if (t != DType::F32) {
    tol.rel *= 2.0;
    tol.maxAbs *= 2.0;
  }
  return tol;
}

struct Case {
  DType t;
  int64_t batch, heads, lq, lk, dk, dv;
  bool wantQ = true, wantK = true, wantV = true;
  /// Buffers start `skew` elements past a 16-byte boundary and have a pitch
  /// of width + 8 + skew: skew 1 makes every row misaligned.
  size_t skew = 0;
  /// scale = scaleMul / sqrt(dk); inputs of standard deviation `stddev`.
  double scaleMul = 1.0, stddev = 1.0;
  /// The backward takes the statistics of cuda::attention's forward (its
  /// output, laid out like dOut, and log-sum-exp), as kern.attention's
  /// backward does, instead of recomputing them.
  bool saved = false;
  /// Column sums of the wanted gradients: none, adjacent parts of one
  /// vector (q, k, v), or each in its own buffer.
  enum Sums { NoSums, JoinedSums, SeparateSums } sums = NoSums;
};

cpu::ConstMat hostView(const HostMat &m, int64_t c0, int64_t width) {
  return {m.v.data() + c0, m.rows, width, m.ld};
}
DConstMat devView(const DevMat &m, int64_t c0, int64_t width) {
  return {static_cast<const char *>(m.data()) + c0 * static_cast<int64_t>(dtypeSize(m.dtype)),
          m.rows, width, m.ld};
}
DMat devMutView(const DevMat &m, int64_t c0, int64_t width) {
  return {static_cast<char *>(m.data()) + c0 * static_cast<int64_t>(dtypeSize(m.dtype)), m.rows,
          width, m.ld};
}
/// Columns [c0, c0 + width) as a dense copy.
HostMat slice(const HostMat &m, int64_t c0, int64_t width) {
  HostMat out(m.rows, width);
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < width; ++c)
      out.at(r, c) = m.at(r, c0 + c);
  return out;
}
void poisonColumns(HostMat &m, int64_t c0, int64_t width) {
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = c0; c < c0 + width; ++c)
      m.at(r, c) = gt::kNaN;
}
/// Columns [c0, c1) of every row still hold the sentinel.
void expectUntouched(const HostMat &m, int64_t c0, int64_t c1, const char *what) {
  int64_t touched = 0;
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = c0; c < c1; ++c)
      touched += m.at(r, c) != kSentinel;
  EXPECT_EQ(touched, 0) << what << ": " << touched << " elements outside the wanted views written";
}

void runCase(gt::Rng &rng, const Case &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(c.t) << " batch " << c.batch << " heads " << c.heads << " lq " << c.lq
               << " lk " << c.lk << " dk " << c.dk << " dv " << c.dv << " want q/k/v " << c.wantQ
               << c.wantK << c.wantV << " skew " << c.skew << " scale x" << c.scaleMul
               << " stddev " << c.stddev << " saved statistics " << c.saved << " sums " << c.sums);
  const DType t = c.t;
  const int64_t qw = c.heads * c.dk, vw = c.heads * c.dv;
  const int64_t pad = 8 + static_cast<int64_t>(c.skew);
  const bool self = c.lq == c.lk;
  const float scale = static_cast<float>(c.scaleMul / std::sqrt(static_cast<double>(c.dk)));
  const int64_t rowsQ = c.batch * c.lq, rowsK = c.batch * c.lk;

  // Self: one (rows x 2qw + vw) qkv buffer; cross: q (rows x qw) and a
  // packed kv (rows x qw + vw). Gradient buffers mirror the input buffers.
  const int64_t widthQ = self ? 2 * qw + vw : qw, widthKV = qw + vw;
  HostMat qIn = gt::randomMat(rng, t, rowsQ, widthQ, widthQ + pad, c.stddev);
  HostMat kvIn = self ? HostMat() : gt::randomMat(rng, t, rowsK, widthKV, widthKV + pad, c.stddev);
  HostMat dOut = gt::randomMat(rng, t, rowsQ, vw, vw + pad);
  const HostMat &kSrc = self ? qIn : kvIn;
  const int64_t kCol = self ? qw : 0, vCol = self ? 2 * qw : qw;

  HostMat gQ(rowsQ, widthQ, widthQ + pad), gKV;
  if (!self)
    gKV = HostMat(rowsK, widthKV, widthKV + pad);
  HostMat &gKSrc = self ? gQ : gKV;
  if (c.wantQ)
    poisonColumns(gQ, 0, qw);
  if (c.wantK)
    poisonColumns(gKSrc, kCol, qw);
  if (c.wantV)
    poisonColumns(gKSrc, vCol, vw);

  std::vector<float> refQ(static_cast<size_t>(rowsQ * qw)), refK(static_cast<size_t>(rowsK * qw)),
      refV(static_cast<size_t>(rowsK * vw));
  std::vector<float> scratch(static_cast<size_t>(c.batch * c.heads * c.lq * c.lk));
  cpu::attentionBackward(hostView(qIn, 0, qw), hostView(kSrc, kCol, qw), hostView(kSrc, vCol, vw),
                         c.batch, c.lq, c.lk, c.heads, scale, dOut.cmat(),
                         c.wantQ ? cpu::Mat{refQ.data(), rowsQ, qw, qw} : cpu::Mat{},
                         c.wantK ? cpu::Mat{refK.data(), rowsK, qw, qw} : cpu::Mat{},
                         c.wantV ? cpu::Mat{refV.data(), rowsK, vw, vw} : cpu::Mat{},
                         scratch.data());

  DevMat dqIn = gt::toDevice(qIn, t, c.skew);
  DevMat dkvIn = self ? DevMat() : gt::toDevice(kvIn, t, c.skew);
  DevMat ddOut = gt::toDevice(dOut, t, c.skew);
  DevMat dgQ = gt::toDevice(gQ, t, c.skew);
  DevMat dgKV = self ? DevMat() : gt::toDevice(gKV, t, c.skew);
  const DevMat &dkSrc = self ? dqIn : dkvIn;
  const DevMat &dgKSrc = self ? dgQ : dgKV;

  // The forward's output (as padded and skewed as dOut) and log-sum-exp.
  DevMat dO = gt::toDevice(HostMat(rowsQ, vw, vw + pad), t, c.skew);
  gt::DeviceBuffer lse(static_cast<size_t>(c.batch * c.heads * c.lq) * sizeof(float));
  if (c.saved)
    attention(nullptr, t, devView(dqIn, 0, qw), devView(dkSrc, kCol, qw), devView(dkSrc, vCol, vw),
              c.batch, c.lq, c.lk, c.heads, scale, devMutView(dO, 0, vw),
              static_cast<float *>(lse.get()));

  // Column sums: one vector of the three widths plus sentinels (joined),
  // or each sum in its own part of it with a sentinel gap after each.
  const bool sums = c.sums != Case::NoSums;
  const int64_t gap = c.sums == Case::SeparateSums ? 8 : 0;
  const int64_t sumAt[3] = {0, qw + gap, 2 * qw + 2 * gap}, sumWidth[3] = {qw, qw, vw};
  const int64_t sumLen = 2 * qw + vw + 3 * gap + 8;
  DevMat dSums = gt::toDevice(HostMat(1, sumLen), t);
  auto sumPtr = [&](int g, bool wanted) {
    return wanted && sums ? static_cast<char *>(dSums.data()) + sumAt[g] * static_cast<int64_t>(dtypeSize(t))
                          : nullptr;
  };
  const AttentionGradSums gradSums{sumPtr(0, c.wantQ), sumPtr(1, c.wantK), sumPtr(2, c.wantV)};

  gt::DeviceBuffer ws(
      attentionBackwardWorkspaceBytes(c.batch, c.lq, c.lk, c.heads, c.dk, t, c.dv, sums));
  attentionBackward(nullptr, t, devView(dqIn, 0, qw), devView(dkSrc, kCol, qw),
                    devView(dkSrc, vCol, vw), c.batch, c.lq, c.lk, c.heads, scale, ddOut.c(),
                    c.wantQ ? devMutView(dgQ, 0, qw) : DMat{},
                    c.wantK ? devMutView(dgKSrc, kCol, qw) : DMat{},
                    c.wantV ? devMutView(dgKSrc, vCol, vw) : DMat{}, Workspace{ws.get(), ws.bytes()},
                    c.saved ? static_cast<const float *>(lse.get()) : nullptr,
                    c.saved ? devView(dO, 0, vw) : DConstMat{}, gradSums);
  gt::syncDevice("attentionBackward");

  const HostMat gotQ = gt::toHost(dgQ);
  const HostMat gotKV = self ? HostMat() : gt::toHost(dgKV);
  const HostMat &gotK = self ? gotQ : gotKV;
  const Tol tol = gradTol(t);
  auto check = [&](const HostMat &got, int64_t c0, int64_t width, bool wanted,
                   const std::vector<float> &ref, const char *name) {
    SCOPED_TRACE(name);
    if (!wanted) {
      expectUntouched(got, c0, c0 + width, name);
      return;
    }
    HostMat r(got.rows, width);
    r.v = ref;
    gt::expectClose(slice(got, c0, width), r, t, tol);
  };
  check(gotQ, 0, qw, c.wantQ, refQ, "dQ");
  check(gotK, kCol, qw, c.wantK, refK, "dK");
  check(gotK, vCol, vw, c.wantV, refV, "dV");
  expectUntouched(gotQ, gotQ.cols, gotQ.ld, "padding of the dQ buffer");
  if (!self)
    expectUntouched(gotKV, gotKV.cols, gotKV.ld, "padding of the dK/dV buffer");

  if (!sums)
    return;
  // Each sum against the sum of the gradient as returned: f32 sums in
  // another order (a few units of 2^-24 times the sum of magnitudes over
  // at most a few thousand rows) and one rounding to the type. Summing the
  // wrong rows (a tile's padding, another sample's) or columns is off by
  // whole gradient values.
  const HostMat gotSums = gt::toHost(dSums);
  const double typeEps = t == DType::F32 ? 0.0 : t == DType::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  const HostMat *src[3] = {&gotQ, &gotK, &gotK};
  const int64_t col0[3] = {0, kCol, vCol};
  const bool wanted[3] = {c.wantQ, c.wantK, c.wantV};
  int64_t bad = 0;
  std::string first;
  for (int g = 0; g < 3; ++g) {
    if (!wanted[g])
      continue;
    for (int64_t col = 0; col < sumWidth[g]; ++col) {
      double ref = 0, magnitude = 0;
      for (int64_t r = 0; r < src[g]->rows; ++r) {
        ref += src[g]->at(r, col0[g] + col);
        magnitude += std::fabs(src[g]->at(r, col0[g] + col));
      }
      const double got = gotSums.at(0, sumAt[g] + col);
      const double bound = typeEps * std::fabs(ref) + 4e-6 * magnitude + 1e-30;
      if (!(std::fabs(got - ref) <= bound) && bad++ == 0)
        first = "sum " + std::to_string(g) + " column " + std::to_string(col) + ": got " + std::to_string(got) +
                ", the gradient's column sums to " + std::to_string(ref) + " (bound " + std::to_string(bound) + ")";
    }
  }
  EXPECT_EQ(bad, 0) << first;
  // Everything outside the wanted sums still holds the sentinel.
  int64_t touched = 0;
  for (int64_t i = 0; i < sumLen; ++i) {
    bool inside = false;
    for (int g = 0; g < 3; ++g)
      inside |= wanted[g] && i >= sumAt[g] && i < sumAt[g] + sumWidth[g];
    touched += !inside && gotSums.at(0, i) != kSentinel;
  }
  EXPECT_EQ(touched, 0) << touched << " elements around the column sums written";
}

constexpr int64_t kNativeDims[] = {64, 72, 88, 128};

TEST(GradAttentionGpu, SelfAttentionPackedNativeHeadDims) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : gt::floatTypes())
    for (int64_t d : kNativeDims)
      runCase(rng, {t, 2, 2, 256, 256, d, d});
}

TEST(GradAttentionGpu, SelfAttentionOddLengths) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : gt::floatTypes()) {
    runCase(rng, {t, 2, 3, 77, 77, 72, 72});
    runCase(rng, {t, 3, 2, 100, 100, 64, 64});
    runCase(rng, {t, 2, 2, 100, 100, 88, 88});
    runCase(rng, {t, 2, 2, 33, 33, 128, 128});
  }
}

TEST(GradAttentionGpu, CrossAttention64QueriesOn77Keys) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : gt::floatTypes())
    for (int64_t d : kNativeDims)
      runCase(rng, {t, 3, 2, 64, 77, d, d});
  // More queries than keys, several query tiles per key tile.
  for (DType t : gt::floatTypes())
    runCase(rng, {t, 2, 2, 200, 45, 72, 72});
}

TEST(GradAttentionGpu, PartialGradientsLeaveOtherColumnsUntouched) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  // Head dim 40 runs in the 64 tile: the padded columns must not be stored
  // into the neighbouring gradient's columns.
  for (DType t : gt::floatTypes())
    for (int64_t d : {40, 72})
      for (int which = 0; which < 3; ++which) {
        Case self{t, 2, 2, 100, 100, d, d};
        self.wantQ = which == 0;
        self.wantK = which == 1;
        self.wantV = which == 2;
        runCase(rng, self);
        Case cross{t, 2, 2, 64, 77, d, d};
        cross.wantQ = which != 0;
        cross.wantK = which != 1;
        cross.wantV = which != 2;
        runCase(rng, cross);
      }
}

TEST(GradAttentionGpu, MisalignedRowsAndOddHeadDims) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : gt::floatTypes()) {
    for (int64_t d : {64, 72, 88}) {
      Case self{t, 2, 2, 100, 100, d, d};
      self.skew = 1;
      runCase(rng, self);
      Case cross{t, 2, 2, 64, 77, d, d};
      cross.skew = 1;
      runCase(rng, cross);
    }
    runCase(rng, {t, 2, 2, 64, 77, 64, 72});   // dk != dv, 72 tile
    runCase(rng, {t, 1, 3, 50, 50, 20, 36});   // not multiples of 8: scalar path
    runCase(rng, {t, 2, 4, 130, 130, 32, 32}); // the 32 tile
    runCase(rng, {t, 1, 2, 80, 80, 112, 112}); // in the 128 tile
    runCase(rng, {t, 1, 2, 33, 45, 160, 160}); // beyond 128: SIMT for every type
  }
}

TEST(GradAttentionGpu, NegativeZeroAndLargeScales) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : gt::floatTypes()) {
    // Scores of standard deviation ~6: peaked softmax rows.
    Case large{t, 2, 2, 256, 256, 72, 72};
    large.scaleMul = 3.0;
    large.stddev = 1.5;
    runCase(rng, large);
    Case negative{t, 2, 2, 64, 77, 64, 64};
    negative.scaleMul = -1.0;
    runCase(rng, negative);
    Case zero{t, 1, 2, 64, 77, 72, 72};
    zero.scaleMul = 0.0;
    runCase(rng, zero);
  }
}

TEST(GradAttentionGpu, LongSequences) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : {DType::BF16, DType::F16}) {
    runCase(rng, {t, 1, 2, 1024, 1024, 72, 72});
    runCase(rng, {t, 1, 2, 200, 1000, 64, 64});
  }
  runCase(rng, {DType::F32, 1, 2, 513, 513, 64, 64});
}

// kern.attention's backward: the statistics come from the forward kernel
// (Δ from its rounded output), on every path: the tensor-core tiles, the
// scalar loads of misaligned rows, and the SIMT kernels (f32, head dims
// beyond 128).
TEST(GradAttentionGpu, SavedForwardStatistics) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  auto saved = [](Case c) {
    c.saved = true;
    return c;
  };
  for (DType t : gt::floatTypes()) {
    for (int64_t d : kNativeDims)
      runCase(rng, saved({t, 2, 2, 256, 256, d, d}));
    runCase(rng, saved({t, 3, 2, 64, 77, 72, 72}));
    runCase(rng, saved({t, 2, 3, 77, 77, 40, 40}));
    Case misaligned{t, 2, 2, 100, 100, 72, 72};
    misaligned.skew = 1;
    runCase(rng, saved(misaligned));
    runCase(rng, saved({t, 1, 3, 50, 50, 20, 36}));
    runCase(rng, saved({t, 1, 2, 33, 45, 160, 160}));
    // Rows wider than the warp-per-row statistics kernel takes (24 heads of
    // 128): the thread-per-head form.
    runCase(rng, saved({t, 1, 24, 40, 40, 128, 128}));
    Case large{t, 2, 2, 256, 256, 72, 72};
    large.scaleMul = 3.0;
    large.stddev = 1.5;
    runCase(rng, saved(large));
    Case negative{t, 2, 2, 64, 77, 64, 64};
    negative.scaleMul = -1.0;
    negative.wantQ = false;
    runCase(rng, saved(negative));
  }
}

// The q/k/v bias gradient from the backward (kern.vjp column_sums): DiT's
// adjacent sums (one finishing launch) on every path and layout, sums
// apart, and sums of only some gradients.
TEST(GradAttentionGpu, ColumnSums) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  auto with = [](Case c, Case::Sums sums) {
    c.sums = sums;
    return c;
  };
  for (DType t : gt::floatTypes()) {
    for (int64_t d : kNativeDims) {
      Case dit{t, 2, 2, 256, 256, d, d};
      dit.saved = true;
      runCase(rng, with(dit, Case::JoinedSums));
    }
    runCase(rng, with({t, 2, 3, 77, 77, 72, 72}, Case::JoinedSums));
    runCase(rng, with({t, 3, 2, 100, 100, 64, 64}, Case::SeparateSums));
    runCase(rng, with({t, 3, 2, 64, 77, 72, 72}, Case::JoinedSums)); // query and key tiles differ
    runCase(rng, with({t, 2, 2, 200, 45, 72, 72}, Case::SeparateSums));
    runCase(rng, with({t, 2, 2, 64, 77, 64, 72}, Case::JoinedSums)); // dk != dv
    runCase(rng, with({t, 1, 3, 50, 50, 20, 36}, Case::JoinedSums)); // scalar path
    runCase(rng, with({t, 1, 2, 33, 45, 160, 160}, Case::JoinedSums)); // SIMT for every type
    Case misaligned{t, 2, 2, 100, 100, 72, 72};
    misaligned.skew = 1;
    runCase(rng, with(misaligned, Case::JoinedSums));
    for (int which = 0; which < 3; ++which) {
      Case some{t, 2, 2, 100, 100, 72, 72};
      some.wantQ = which != 0;
      some.wantK = which != 1;
      some.wantV = which != 2;
      runCase(rng, with(some, Case::JoinedSums));
    }
  }
}

/// Sets DIFFRT_ATTENTION_BACKWARD for a scope: equal head dims of 64, 72
/// and 88 take the wgmma kernels unless it says "mma".
struct BackwardPath {
  explicit BackwardPath(const char *path) { setenv("DIFFRT_ATTENTION_BACKWARD", path, 1); }
  ~BackwardPath() { unsetenv("DIFFRT_ATTENTION_BACKWARD"); }
};

// The tests above run the wgmma kernels wherever they apply; the mma.sync
// ones stay selectable (for comparisons) and must stay correct.
TEST(GradAttentionGpu, MmaPathOnRequest) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  BackwardPath mma("mma");
  for (DType t : {DType::BF16, DType::F16}) {
    for (int64_t d : {64, 72, 88})
      runCase(rng, {t, 2, 2, 256, 256, d, d});
    runCase(rng, {t, 2, 3, 77, 77, 72, 72});
    runCase(rng, {t, 3, 2, 64, 77, 64, 64});
    Case sums{t, 2, 2, 100, 100, 72, 72};
    sums.saved = true;
    sums.sums = Case::JoinedSums;
    runCase(rng, sums);
  }
}

TEST(GradAttentionGpu, RejectsBadArguments) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  const DType t = DType::BF16;
  const int64_t b = 2, n = 64, h = 2, d = 64, hd = h * d;
  HostMat qkv = gt::randomMat(rng, t, b * n, 3 * hd);
  HostMat dOut = gt::randomMat(rng, t, b * n, hd);
  DevMat dqkv = gt::toDevice(qkv, t), ddOut = gt::toDevice(dOut, t);
  DevMat grads = gt::toDevice(HostMat(b * n, 3 * hd), t);
  const DConstMat q = devView(dqkv, 0, hd), k = devView(dqkv, hd, hd), v = devView(dqkv, 2 * hd, hd);
  const DMat dQ = devMutView(grads, 0, hd), dK = devMutView(grads, hd, hd),
             dV = devMutView(grads, 2 * hd, hd);
  const size_t need = attentionBackwardWorkspaceBytes(b, n, n, h, d, t);
  ASSERT_GT(need, 0u);
  gt::DeviceBuffer ws(need);

  const std::string needText = std::to_string(need);
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), dQ, dK,
                                        dV, Workspace{ws.get(), need - 4}),
                      "workspace", needText.c_str());
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, 3, 0.125f, ddOut.c(), dQ, dK,
                                        dV, Workspace{ws.get(), need}),
                      "heads do not divide");
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(),
                                        devMutView(dqkv, 0, hd), dK, dV, Workspace{ws.get(), need}),
                      "overlaps");
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, 32, 40, h, 0.125f, ddOut.c(), dQ,
                                        dK, dV, Workspace{ws.get(), need}),
                      "expected 64 x 128");
  gt::DeviceBuffer lse(static_cast<size_t>(b * h * n) * sizeof(float));
  DevMat out = gt::toDevice(HostMat(b * n, hd), t);
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), dQ, dK,
                                        dV, Workspace{ws.get(), need},
                                        static_cast<const float *>(lse.get())),
                      "log-sum-exp and output come together", "only the log-sum-exp");
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), dQ, dK,
                                        dV, Workspace{ws.get(), need}, nullptr, out.c()),
                      "only the output");
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), dQ, dK,
                                        dV, Workspace{ws.get(), need},
                                        static_cast<const float *>(lse.get()), devView(out, 0, d)),
                      "the saved output", "expected 128 x 128");
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), dQ, dK,
                                        dV, Workspace{ws.get(), need},
                                        static_cast<const float *>(lse.get()), devView(grads, 0, hd)),
                      "overlaps q, k, v, dOut or the saved output");
  // Column sums need their gradient, and room for their partials.
  gt::DeviceBuffer sums(static_cast<size_t>(3 * hd) * dtypeSize(t));
  const AttentionGradSums all{sums.get(), sums.as<char>() + hd * 2, sums.as<char>() + 4 * hd};
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), DMat{}, dK, dV,
                                        Workspace{ws.get(), need}, nullptr, DConstMat{}, all),
                      "column sums are wanted without the gradient");
  const size_t needSums = attentionBackwardWorkspaceBytes(b, n, n, h, d, t, d, true);
  ASSERT_GT(needSums, need);
  const std::string needSumsText = std::to_string(needSums);
  EXPECT_DIFFRT_ERROR(attentionBackward(nullptr, t, q, k, v, b, n, n, h, 0.125f, ddOut.c(), dQ, dK, dV,
                                        Workspace{ws.get(), need}, nullptr, DConstMat{}, all),
                      "workspace", needSumsText.c_str());
  gt::syncDevice("after the rejected calls");
}

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

/// Milliseconds per backward (median of 21 after a warm-up) on packed qkv
/// and packed dqkv, and TFLOP/s counted as FlashAttention does (the
/// backward's five products, 10·B·H·N²·D; this implementation also
/// recomputes S and dP in the dQ pass and runs a forward for the
/// statistics).
TEST(GradAttentionGpuTiming, DitShapes) {
  DIFFRT_REQUIRE_GPU();
  gt::Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Shape {
    int64_t b, h, n, d;
  };
  const Shape shapes[] = {{32, 16, 256, 72}, {32, 6, 256, 64}, {64, 16, 256, 88},
                          {64, 16, 256, 128}, {4, 16, 1024, 72}};
  // "saved ms": with the forward's statistics (kern.attention's backward).
  // "mma ms": saved statistics, DIFFRT_ATTENTION_BACKWARD=mma.
  std::printf("%-5s %4s %4s %6s %4s %10s %10s %10s %10s\n", "dtype", "B", "H", "N", "D", "ms", "TFLOP/s",
              "saved ms", "mma ms");
  for (DType t : {DType::BF16, DType::F16, DType::F32})
    for (const Shape &s : shapes) {
      if (t == DType::F32 && s.d != 72)
        continue;
      const int64_t rows = s.b * s.n, hd = s.h * s.d, width = 3 * hd;
      const size_t elem = dtypeSize(t);
      gt::DeviceBuffer qkv(static_cast<size_t>(rows * width) * elem),
          dqkv(static_cast<size_t>(rows * width) * elem), dOut(static_cast<size_t>(rows * hd) * elem);
      {
        // One block of random values repeated (generating ~10^8 normals on
        // the host would dominate the test's time).
        const int64_t block = 1 << 20;
        const std::vector<uint8_t> bytes = gt::encode(t, rng.normal(block, 1.0, 0.0, t));
        auto fill = [&](void *dst, int64_t elems) {
          for (int64_t done = 0; done < elems; done += block)
            gt::cudaOk(cudaMemcpy(static_cast<char *>(dst) + done * static_cast<int64_t>(elem),
                                  bytes.data(),
                                  static_cast<size_t>(std::min(block, elems - done)) * elem,
                                  cudaMemcpyHostToDevice),
                       "upload");
        };
        fill(qkv.get(), rows * width);
        fill(dOut.get(), rows * hd);
      }
      auto *in = static_cast<char *>(qkv.get());
      auto *g = static_cast<char *>(dqkv.get());
      const int64_t off = hd * static_cast<int64_t>(elem);
      DConstMat q{in, rows, hd, width}, k{in + off, rows, hd, width}, v{in + 2 * off, rows, hd, width};
      DMat dQ{g, rows, hd, width}, dK{g + off, rows, hd, width}, dV{g + 2 * off, rows, hd, width};
      DConstMat dO{dOut.get(), rows, hd, hd};
      gt::DeviceBuffer ws(attentionBackwardWorkspaceBytes(s.b, s.n, s.n, s.h, s.d, t));
      const float scale = 1.0f / std::sqrt(static_cast<float>(s.d));
      gt::DeviceBuffer out(static_cast<size_t>(rows * hd) * elem),
          lse(static_cast<size_t>(s.b * s.h * s.n) * sizeof(float));
      attention(nullptr, t, q, k, v, s.b, s.n, s.n, s.h, scale, DMat{out.get(), rows, hd, hd},
                static_cast<float *>(lse.get()));
      bool withSaved = false;
      auto call = [&] {
        attentionBackward(nullptr, t, q, k, v, s.b, s.n, s.n, s.h, scale, dO, dQ, dK, dV,
                          Workspace{ws.get(), ws.bytes()},
                          withSaved ? static_cast<const float *>(lse.get()) : nullptr,
                          withSaved ? DConstMat{out.get(), rows, hd, hd} : DConstMat{});
      };
      auto median = [&] {
        for (int i = 0; i < 10; ++i)
          call();
        cudaEvent_t start, stop;
        gt::cudaOk(cudaEventCreate(&start), "cudaEventCreate");
        gt::cudaOk(cudaEventCreate(&stop), "cudaEventCreate");
        std::vector<double> times;
        for (int i = 0; i < 21; ++i) {
          gt::cudaOk(cudaEventRecord(start), "cudaEventRecord");
          call();
          gt::cudaOk(cudaEventRecord(stop), "cudaEventRecord");
          gt::cudaOk(cudaEventSynchronize(stop), "cudaEventSynchronize");
          float ms = 0.0f;
          gt::cudaOk(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
          times.push_back(ms);
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        gt::syncDevice("timing");
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
      };
      const double ms = median();
      withSaved = true;
      const double savedMs = median();
      double mmaMs = 0.0;
      if (t != DType::F32) {
        BackwardPath mma("mma");
        mmaMs = median();
      }
      const double flop = 10.0 * double(s.b) * double(s.h) * double(s.n) * double(s.n) * double(s.d);
      std::printf("%-5s %4lld %4lld %6lld %4lld %10.4f %10.1f %10.4f %10.4f\n", dtypeName(t),
                  static_cast<long long>(s.b), static_cast<long long>(s.h),
                  static_cast<long long>(s.n), static_cast<long long>(s.d), ms, flop / ms * 1e-9,
                  savedMs, mmaMs);
    }
}

} // namespace
} // namespace diffrt::cuda::gradattntest
