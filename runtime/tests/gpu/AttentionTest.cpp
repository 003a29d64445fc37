//===- AttentionTest.cpp - GPU tests of the flash-attention kernel --------===//
//
// cuda::attention against cpu::attention on the same inputs: fresh random
// values (seed in every failure message) rounded to the GPU type, outputs
// poisoned with NaN and every element checked, sentinels around strided
// views. Covers the native head dims 64, 72, 88 and 128 with lq = lk = 256
// on q, k and v read as column slices of one packed qkv projection,
// MicroDiT's cross-attention (64 queries, 77 keys: a tail in every key
// tile), rows that are not 16-byte aligned (the scalar-load path), padded
// and unequal head dims, large and negative scales, long sequences with many
// key tiles, and the exact f32 kernel. Tolerances on ‖out − ref‖ / ‖ref‖:
// 5e-3 (f16) and 1e-2 (bf16): P is rounded to the operand type before the
// PV product (relative 2^-11 or 2^-8 per probability, averaging out over
// the keys) and the output once; 1e-5 for f32 (f32 arithmetic throughout).
// Equal head dims of 64 and 72 with aligned rows run on the wgmma kernel
// (two-warpgroup CTAs; OneWarpgroupCtasOnRequest checks the one-warpgroup
// CTAs); MmaKernelOnRequest checks the mma.sync one that DIFFRT_ATTENTION=mma
// selects. GpuAttentionTiming prints TFLOP/s (4·B·H·N²·D) at the DiT
// shapes, and the times of the mma.sync kernel and of the one-warpgroup CTAs.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaKernels.h"
#include "diffrt/Error.h"

#include "../cpu/TestUtil.h"
#include "GpuTestUtil.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffrt::cuda::gputest {
namespace {

using cpu::testing::Rng;

//===----------------------------------------------------------------------===//
// Device helpers
//===----------------------------------------------------------------------===//

using ::diffrt::cuda::testing::cudaOk;
using ::diffrt::cuda::testing::decode;
using ::diffrt::cuda::testing::DeviceBuffer;
using ::diffrt::cuda::testing::encode;
using ::diffrt::cuda::testing::roundTo;

/// Around every view; representable in every dtype.
constexpr float kSentinel = -1280.0f;

/// A rows x cols buffer with leading dimension ld starting `offset`
/// elements into its allocation, mirrored on host (rounded floats) and
/// device. Views into it (column slices) are taken with hc/dc.
struct TestBuf {
  DType dtype;
  int64_t rows, cols, ld, offset;
  std::vector<float> host;
  DeviceBuffer dev;

  TestBuf(DType t, int64_t r, int64_t c, int64_t l, int64_t off)
      : dtype(t), rows(r), cols(c), ld(l), offset(off),
        host(static_cast<size_t>(off + r * l), kSentinel), dev(host.size() * dtypeSize(t)) {}

  float &at(int64_t r, int64_t c) { return host[static_cast<size_t>(offset + r * ld + c)]; }
  void fillNormal(Rng &rng, double stddev) {
    std::vector<float> v = rng.normal(rows * cols, stddev);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        at(r, c) = roundTo(dtype, v[static_cast<size_t>(r * cols + c)]);
  }
  void poison() {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        at(r, c) = std::numeric_limits<float>::quiet_NaN();
  }
  void upload() {
    std::vector<uint8_t> bytes = encode(dtype, host);
    cudaOk(cudaMemcpy(dev.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<float> download() const {
    std::vector<uint8_t> bytes(host.size() * dtypeSize(dtype));
    cudaOk(cudaMemcpy(bytes.data(), dev.get(), bytes.size(), cudaMemcpyDeviceToHost),
           "download");
    return decode(dtype, bytes);
  }
  /// Columns [c0, c0 + width) of every row.
  cpu::ConstMat hc(int64_t c0, int64_t width) const {
    return {host.data() + offset + c0, rows, width, ld};
  }
  DConstMat dc(int64_t c0, int64_t width) const {
    return {static_cast<char *>(dev.get()) + static_cast<size_t>(offset + c0) * dtypeSize(dtype),
            rows, width, ld};
  }
  DMat dm() const {
    return {static_cast<char *>(dev.get()) + static_cast<size_t>(offset) * dtypeSize(dtype), rows,
            cols, ld};
  }
};

double tolerance(DType t) {
  switch (t) {
  case DType::F16: return 5e-3;
  case DType::BF16: return 1e-2;
  default: return 1e-5;
  }
}

/// Every element of out's view written and finite, nothing outside it
/// touched, relative error to ref below tol.
void expectMatches(const TestBuf &out, const std::vector<float> &ref, double tol) {
  cudaOk(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::vector<float> got = out.download();
  int64_t unwritten = 0, firstBad = -1;
  double num = 0.0, den = 0.0;
  for (int64_t r = 0; r < out.rows; ++r)
    for (int64_t c = 0; c < out.cols; ++c) {
      float g = got[static_cast<size_t>(out.offset + r * out.ld + c)];
      double e = ref[static_cast<size_t>(r * out.cols + c)];
      if (!std::isfinite(g)) {
        if (unwritten++ == 0)
          firstBad = r * out.cols + c;
        continue;
      }
      num += (g - e) * (g - e);
      den += e * e;
    }
  EXPECT_EQ(unwritten, 0) << "elements not written (NaN or inf), first at flat index "
                          << firstBad;
  int64_t touched = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    int64_t rel = static_cast<int64_t>(i) - out.offset;
    bool inside = rel >= 0 && rel / out.ld < out.rows && rel % out.ld < out.cols;
    if (!inside && got[i] != kSentinel)
      ++touched;
  }
  EXPECT_EQ(touched, 0) << "elements outside the view were overwritten";
  if (unwritten == 0) {
    double err = den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
    EXPECT_LT(err, tol) << "relative error " << err;
  }
}

//===----------------------------------------------------------------------===//
// Cases
//===----------------------------------------------------------------------===//

struct AttnCase {
  DType dtype;
  int64_t batch, heads, lq, lk, dk, dv;
  /// Rows start one element past a 16-byte boundary (odd offset and pitch).
  bool misaligned = false;
  /// scale = scaleMul / sqrt(dk); inputs with standard deviation `stddev`.
  double scaleMul = 1.0, stddev = 1.0;
};

/// Self-attention (lq == lk) reads q, k and v from one packed qkv buffer;
/// cross-attention reads q from its own buffer and k, v from a packed kv
/// buffer, as MicroDiT's caption attention does.
void runCase(Rng &rng, const AttnCase &c) {
  SCOPED_TRACE(::testing::Message()
               << dtypeName(c.dtype) << " batch " << c.batch << " heads " << c.heads << " lq "
               << c.lq << " lk " << c.lk << " dk " << c.dk << " dv " << c.dv << " misaligned "
               << c.misaligned << " scale x" << c.scaleMul << " stddev " << c.stddev);
  const DType t = c.dtype;
  const int64_t qw = c.heads * c.dk, vw = c.heads * c.dv;
  const int64_t skew = c.misaligned ? 1 : 0;
  const float scale = static_cast<float>(c.scaleMul / std::sqrt(static_cast<double>(c.dk)));
  const bool self = c.lq == c.lk;

  // Pitches padded by 8 elements (plus the skew): strided column slices.
  TestBuf qBuf(t, c.batch * c.lq, self ? 2 * qw + vw : qw, (self ? 2 * qw + vw : qw) + 8 + skew,
               skew);
  qBuf.fillNormal(rng, c.stddev);
  qBuf.upload();
  TestBuf kvBuf(t, self ? 1 : c.batch * c.lk, self ? 1 : qw + vw, self ? 1 : qw + vw + 8 + skew,
                skew);
  if (!self) {
    kvBuf.fillNormal(rng, c.stddev);
    kvBuf.upload();
  }
  const TestBuf &kSrc = self ? qBuf : kvBuf;
  const int64_t k0 = self ? qw : 0, v0 = self ? 2 * qw : qw;

  std::vector<float> ref(static_cast<size_t>(c.batch * c.lq * vw));
  const size_t rows = static_cast<size_t>(c.batch * c.heads * c.lq);
  std::vector<float> refLse(rows);
  cpu::attention(qBuf.hc(0, qw), kSrc.hc(k0, qw), kSrc.hc(v0, vw), c.batch, c.lq, c.lk, c.heads,
                 scale, cpu::Mat{ref.data(), c.batch * c.lq, vw, vw}, refLse.data());

  // Once without the statistics (sampling) and once with them (training):
  // the output must not depend on it.
  for (bool statistics : {false, true}) {
    SCOPED_TRACE(statistics ? "with log-sum-exp" : "without log-sum-exp");
    TestBuf out(t, c.batch * c.lq, vw, vw + 8 + skew, skew);
    out.poison();
    out.upload();
    DeviceBuffer lse(rows * sizeof(float));
    cudaOk(cudaMemset(lse.get(), 0xff, rows * sizeof(float)), "poisoning the log-sum-exp");
    attention(nullptr, t, qBuf.dc(0, qw), kSrc.dc(k0, qw), kSrc.dc(v0, vw), c.batch, c.lq, c.lk,
              c.heads, scale, out.dm(), statistics ? static_cast<float *>(lse.get()) : nullptr);
    cudaOk(cudaGetLastError(), "after attention");
    expectMatches(out, ref, tolerance(t));
    if (!statistics)
      continue;
    std::vector<float> got(rows);
    cudaOk(cudaMemcpy(got.data(), lse.get(), rows * sizeof(float), cudaMemcpyDeviceToHost),
           "copying the log-sum-exp");
    // f32 scores from the same rounded inputs; the 16-bit path sums ex2.approx
    // terms (2^-22 relative each).
    const double tol = t == DType::F32 ? 2e-5 : 2e-4;
    int64_t bad = 0;
    size_t first = rows;
    for (size_t i = 0; i < rows; ++i)
      if (!(std::fabs(got[i] - refLse[i]) <= tol * std::max(1.0, std::fabs(double(refLse[i]))))) {
        ++bad;
        first = std::min(first, i);
      }
    EXPECT_EQ(bad, 0) << bad << " of " << rows << " log-sum-exp rows off; first #" << first << ": "
                      << (first < rows ? got[first] : 0.0f) << " vs "
                      << (first < rows ? refLse[first] : 0.0f);
  }
}

constexpr DType kHalfTypes[] = {DType::F16, DType::BF16};
constexpr int64_t kNativeDims[] = {64, 72, 88, 128};

TEST(GpuAttention, SelfAttentionNativeHeadDimsOnPackedQkv) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : kHalfTypes)
    for (int64_t d : kNativeDims)
      runCase(rng, {t, 2, 3, 256, 256, d, d});
}

TEST(GpuAttention, CrossAttention64QueriesOn77Keys) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : kHalfTypes)
    for (int64_t d : kNativeDims)
      runCase(rng, {t, 3, 2, 64, 77, d, d});
}

TEST(GpuAttention, MisalignedRowsUseTheScalarPath) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : kHalfTypes)
    for (int64_t d : {64, 72, 88}) {
      AttnCase self{t, 2, 2, 100, 100, d, d};
      self.misaligned = true;
      runCase(rng, self);
      AttnCase cross{t, 2, 2, 64, 77, d, d};
      cross.misaligned = true;
      runCase(rng, cross);
    }
}

TEST(GpuAttention, PaddedAndUnequalHeadDims) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : kHalfTypes) {
    runCase(rng, {t, 2, 4, 130, 130, 32, 32});  // native 32 (MicroDiT tiny)
    runCase(rng, {t, 2, 2, 96, 96, 40, 40});    // in the 64 tile
    runCase(rng, {t, 1, 2, 80, 80, 112, 112});  // in the 128 tile
    runCase(rng, {t, 2, 2, 64, 77, 64, 72});    // dk != dv, 72 tile
    runCase(rng, {t, 1, 3, 50, 50, 20, 36});    // not multiples of 8: scalar loads
    runCase(rng, {t, 1, 2, 33, 45, 160, 160});  // beyond 128: SIMT kernel
  }
}

TEST(GpuAttention, LongSequencesManyKeyTiles) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : kHalfTypes) {
    runCase(rng, {t, 1, 2, 1024, 1024, 72, 72});
    runCase(rng, {t, 1, 2, 200, 1000, 64, 64});
    runCase(rng, {t, 1, 1, 513, 513, 128, 128});
  }
}

TEST(GpuAttention, LargeAndNegativeScales) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (DType t : kHalfTypes) {
    // Scores of standard deviation ~12: without the running maximum the
    // exponentials would overflow f32.
    AttnCase large{t, 2, 2, 256, 256, 72, 72};
    large.scaleMul = 3.0;
    large.stddev = 2.0;
    runCase(rng, large);
    AttnCase negative{t, 2, 2, 64, 77, 64, 64};
    negative.scaleMul = -1.0;
    runCase(rng, negative);
    AttnCase zero{t, 1, 2, 64, 77, 72, 72};
    zero.scaleMul = 0.0;
    runCase(rng, zero);
  }
}

TEST(GpuAttention, Float32ExactKernel) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t d : {64, 72})
    runCase(rng, {DType::F32, 2, 3, 256, 256, d, d});
  runCase(rng, {DType::F32, 3, 2, 64, 77, 88, 88});
  runCase(rng, {DType::F32, 1, 2, 45, 33, 20, 36});
}

/// Sets DIFFRT_ATTENTION for a scope: equal head dims of 64 and 72 take the
/// wgmma kernel unless it says "mma".
struct ForwardPath {
  explicit ForwardPath(const char *path) { setenv("DIFFRT_ATTENTION", path, 1); }
  ~ForwardPath() { unsetenv("DIFFRT_ATTENTION"); }
};

// The tests above run the wgmma kernel wherever it applies; the mma.sync
// one stays selectable (for comparisons) and must stay correct.
TEST(GpuAttention, MmaKernelOnRequest) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  ForwardPath mma("mma");
  for (DType t : kHalfTypes) {
    for (int64_t d : {64, 72})
      runCase(rng, {t, 2, 3, 256, 256, d, d});
    runCase(rng, {t, 3, 2, 64, 77, 72, 72});
    AttnCase negative{t, 2, 2, 100, 100, 64, 64};
    negative.scaleMul = -1.0;
    runCase(rng, negative);
  }
}

// The tests above run the wgmma kernel's two-warpgroup CTAs (128 queries
// sharing each key and value tile; lq = 200 and lq = 64 leave a CTA's
// second warpgroup partly and wholly past lq); the one-warpgroup CTAs stay
// selectable and must stay correct.
TEST(GpuAttention, OneWarpgroupCtasOnRequest) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  ::diffrt::cuda::testing::ScopedEnv one("DIFFRT_ATTENTION_WARPGROUPS", "1");
  for (DType t : kHalfTypes) {
    for (int64_t d : {64, 72})
      runCase(rng, {t, 2, 3, 256, 256, d, d});
    runCase(rng, {t, 1, 2, 200, 1000, 72, 72});
    runCase(rng, {t, 3, 2, 64, 77, 64, 64});
  }
}

TEST(GpuAttention, RejectsBadShapesAndOverlaps) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  TestBuf qkv(DType::F16, 64, 3 * 64, 3 * 64, 0);
  qkv.fillNormal(rng, 1.0);
  qkv.upload();
  TestBuf out(DType::F16, 64, 64, 64, 0);
  EXPECT_DIFFRT_ERROR(attention(nullptr, DType::F16, qkv.dc(0, 64), qkv.dc(64, 64),
                                qkv.dc(128, 64), 1, 64, 64, 3, 0.125f, out.dm()),
                      "heads do not divide");
  EXPECT_DIFFRT_ERROR(attention(nullptr, DType::F16, qkv.dc(0, 64), qkv.dc(64, 64),
                                qkv.dc(128, 64), 1, 64, 64, 1, 0.125f,
                                DMat{const_cast<void *>(qkv.dc(128, 64).data), 64, 64, 3 * 64}),
                      "overlaps");
  EXPECT_DIFFRT_ERROR(attention(nullptr, DType::F16, qkv.dc(0, 64), qkv.dc(64, 64),
                                qkv.dc(128, 64), 2, 32, 40, 1, 0.125f, out.dm()),
                      "expected 80 x 64");
}

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

TEST(GpuAttentionTiming, DitShapes) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Shape {
    int64_t b, h, n, d;
  };
  const Shape shapes[] = {{64, 16, 256, 72}, {64, 16, 256, 64}, {16, 16, 1024, 72},
                          {4, 16, 4096, 72}, {64, 16, 256, 88}, {64, 16, 256, 128}};
  // "mma ms": the same call with DIFFRT_ATTENTION=mma; "1-wg ms": with
  // DIFFRT_ATTENTION_WARPGROUPS=1 (the same as "ms" where the wgmma kernel
  // does not apply).
  std::printf("%-5s %4s %4s %6s %4s %10s %10s %10s %10s\n", "dtype", "B", "H", "N", "D", "ms",
              "TFLOP/s", "mma ms", "1-wg ms");
  for (DType t : kHalfTypes)
    for (const Shape &s : shapes) {
      // The plan's layout: q, k and v are column slices of one packed
      // (B·N) x 3·H·D projection; out is (B·N) x H·D.
      const int64_t rows = s.b * s.n, width = 3 * s.h * s.d;
      const int64_t elems = rows * width;
      DeviceBuffer qkv(static_cast<size_t>(elems) * 2), out(static_cast<size_t>(rows * s.h * s.d) * 2);
      {
        const int64_t block = 1 << 20;
        std::vector<uint8_t> bytes = encode(t, rng.normal(std::min(elems, block), 1.0));
        for (int64_t done = 0; done < elems; done += block)
          cudaOk(cudaMemcpy(static_cast<char *>(qkv.get()) + done * 2, bytes.data(),
                            static_cast<size_t>(std::min(block, elems - done)) * 2,
                            cudaMemcpyHostToDevice),
                 "upload");
      }
      const int64_t hd = s.h * s.d;
      auto *base = static_cast<char *>(qkv.get());
      DConstMat q{base, rows, hd, width}, k{base + hd * 2, rows, hd, width},
          v{base + 2 * hd * 2, rows, hd, width};
      DMat o{out.get(), rows, hd, hd};
      const float scale = 1.0f / std::sqrt(static_cast<float>(s.d));
      auto call = [&] { attention(nullptr, t, q, k, v, s.b, s.n, s.n, s.h, scale, o); };
      // A long warm-up: the first shape otherwise runs while the clocks
      // and power draw are still settling (seen after the GEMM timings:
      // 163 TFLOP/s on the first shape, 188 once warm).
      for (int i = 0; i < 50; ++i)
        call();
      auto median = [&] {
        cudaEvent_t start, stop;
        cudaOk(cudaEventCreate(&start), "cudaEventCreate");
        cudaOk(cudaEventCreate(&stop), "cudaEventCreate");
        std::vector<double> times;
        for (int i = 0; i < 51; ++i) {
          cudaOk(cudaEventRecord(start), "cudaEventRecord");
          call();
          cudaOk(cudaEventRecord(stop), "cudaEventRecord");
          cudaOk(cudaEventSynchronize(stop), "cudaEventSynchronize");
          float ms = 0.0f;
          cudaOk(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
          times.push_back(ms);
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        cudaOk(cudaGetLastError(), "timing");
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
      };
      const double ms = median();
      double mmaMs = 0.0, oneMs = 0.0;
      {
        ForwardPath mma("mma");
        mmaMs = median();
      }
      {
        ::diffrt::cuda::testing::ScopedEnv one("DIFFRT_ATTENTION_WARPGROUPS", "1");
        oneMs = median();
      }
      double flop = 4.0 * double(s.b) * double(s.h) * double(s.n) * double(s.n) * double(s.d);
      std::printf("%-5s %4lld %4lld %6lld %4lld %10.4f %10.1f %10.4f %10.4f\n", dtypeName(t),
                  static_cast<long long>(s.b), static_cast<long long>(s.h),
                  static_cast<long long>(s.n), static_cast<long long>(s.d), ms,
                  flop / ms * 1e-9, mmaMs, oneMs);
    }
}

} // namespace
} // namespace diffrt::cuda::gputest
