//===- GemmTest.cpp - GPU tests of Gemm, swiglu and patchEmbed ------------===//
//
// The cuBLASLt-backed dense kernels against diffrt::cpu on the same inputs:
// fresh random values (the seed is in every failure message) rounded to the
// GPU element type, and the rounded values given to the CPU reference.
// Outputs are poisoned with NaN before each call and every element is
// checked; padding columns of strided buffers hold a sentinel that must
// survive. Covers every activation, bias, the gated residual with out
// aliasing the residual, column slices at odd offsets (misaligned for
// cuBLASLt's defaults), packed and separate SwiGLU weights, and patch
// embedding with and without the position table. Tolerances on
// ‖out − ref‖ / ‖ref‖: 1e-5 for f32 (f32 accumulation, no TF32), 5e-3 for
// f16 and 1e-2 for bf16 (one rounding of the output and of any
// intermediate to the 16-bit type). GpuGemmTiming prints TFLOP/s at the
// DiT-XL shapes and asserts nothing about speed.
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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffrt::cuda::gputest {
namespace {

using cpu::testing::Rng;

//===----------------------------------------------------------------------===//
// Device helpers
//===----------------------------------------------------------------------===//

using ::diffrt::cuda::testing::CacheDir;
using ::diffrt::cuda::testing::ScopedEnv;
using ::diffrt::cuda::testing::cudaOk;
using ::diffrt::cuda::testing::decode;
using ::diffrt::cuda::testing::DeviceBuffer;
using ::diffrt::cuda::testing::encode;
using ::diffrt::cuda::testing::roundTo;

const char *typeName(DType t) { return dtypeName(t); }

/// Written around every view (padding columns, the prefix before an offset
/// view) and checked after the call; representable in every dtype.
constexpr float kSentinel = -1280.0f;

/// A rows x cols view at element `offset` of a buffer with leading
/// dimension ld, mirrored on the host (as floats holding the rounded
/// values) and on the device (in the dtype).
struct TestMat {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, ld = 0, offset = 0;
  std::vector<float> host;
  DeviceBuffer dev;

  TestMat() = default;
  TestMat(DType t, int64_t r, int64_t c, int64_t l = 0, int64_t off = 0)
      : dtype(t), rows(r), cols(c), ld(l > 0 ? l : std::max<int64_t>(c, 1)), offset(off),
        host(static_cast<size_t>(off + r * (l > 0 ? l : std::max<int64_t>(c, 1))), kSentinel),
        dev(host.size() * dtypeSize(t)) {}

  float &at(int64_t r, int64_t c) { return host[static_cast<size_t>(offset + r * ld + c)]; }
  float at(int64_t r, int64_t c) const { return host[static_cast<size_t>(offset + r * ld + c)]; }

  void fillNormal(Rng &rng, double stddev = 1.0) {
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
    cudaOk(cudaMemcpy(dev.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice),
           "upload");
  }
  /// The device contents (the whole buffer) decoded to floats.
  std::vector<float> download() const {
    std::vector<uint8_t> bytes(host.size() * dtypeSize(dtype));
    cudaOk(cudaMemcpy(bytes.data(), dev.get(), bytes.size(), cudaMemcpyDeviceToHost),
           "download");
    return decode(dtype, bytes);
  }
  void *devView() const {
    return static_cast<char *>(dev.get()) + static_cast<size_t>(offset) * dtypeSize(dtype);
  }
  DConstMat dc() const { return {devView(), rows, cols, ld}; }
  DMat dm() const { return {devView(), rows, cols, ld}; }
  cpu::ConstMat hc() const { return {host.data() + offset, rows, cols, ld}; }
  cpu::Mat hm() { return {host.data() + offset, rows, cols, ld}; }
};

TestMat randomMat(Rng &rng, DType t, int64_t r, int64_t c, int64_t ld = 0, int64_t off = 0,
                  double stddev = 1.0) {
  TestMat m(t, r, c, ld, off);
  m.fillNormal(rng, stddev);
  m.upload();
  return m;
}

TestMat poisonedMat(DType t, int64_t r, int64_t c, int64_t ld = 0, int64_t off = 0) {
  TestMat m(t, r, c, ld, off);
  m.poison();
  m.upload();
  return m;
}

std::vector<float> randomVector(Rng &rng, DType t, int64_t n, double stddev = 1.0) {
  std::vector<float> v = rng.normal(n, stddev);
  for (float &x : v)
    x = roundTo(t, x);
  return v;
}

DeviceBuffer uploadVector(DType t, const std::vector<float> &v) {
  std::vector<uint8_t> bytes = encode(t, v);
  DeviceBuffer b(std::max<size_t>(bytes.size(), 1));
  if (!bytes.empty())
    cudaOk(cudaMemcpy(b.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice),
           "upload vector");
  return b;
}

double tolerance(DType t) {
  switch (t) {
  case DType::F16: return 5e-3;
  case DType::BF16: return 1e-2;
  default: return 1e-5;
  }
}

/// Downloads `out` after the call and compares its view with the CPU
/// result `ref` (a view of the same shape): no element left NaN, no
/// sentinel outside the view overwritten, relative error below tol.
void expectMatches(const TestMat &out, cpu::ConstMat ref, double tol) {
  ASSERT_EQ(out.rows, ref.rows);
  ASSERT_EQ(out.cols, ref.cols);
  cudaOk(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::vector<float> got = out.download();
  int64_t unwritten = 0, firstBad = -1;
  double num = 0.0, den = 0.0;
  for (int64_t r = 0; r < out.rows; ++r)
    for (int64_t c = 0; c < out.cols; ++c) {
      float g = got[static_cast<size_t>(out.offset + r * out.ld + c)];
      double e = ref.data[r * ref.ld + c];
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

const char *actName(Act act) { return cpu::testing::actName(act); }

constexpr Act kActs[] = {Act::None, Act::Gelu, Act::GeluTanh, Act::Silu};
constexpr DType kTypes[] = {DType::F32, DType::F16, DType::BF16};

/// A device workspace of the requested size (at least one byte).
DeviceBuffer workspace(size_t bytes) { return DeviceBuffer(std::max<size_t>(bytes, 1)); }

//===----------------------------------------------------------------------===//
// Gemm
//===----------------------------------------------------------------------===//

struct GemmCase {
  DType dtype;
  Act act;
  bool bias, epilogue, alias, strided;
  int64_t m, k, n, rowsPerGate;
};

void runGemmCase(Rng &rng, Gemm &gemm, const GemmCase &g) {
  SCOPED_TRACE(::testing::Message()
               << typeName(g.dtype) << " act " << actName(g.act) << " bias " << g.bias
               << " epilogue " << g.epilogue << " alias " << g.alias << " strided " << g.strided
               << " m " << g.m << " k " << g.k << " n " << g.n << " rowsPerGate "
               << g.rowsPerGate);
  const DType t = g.dtype;
  // Strided: a is a column slice at an odd offset of a wider buffer (as q
  // inside a packed qkv), w and out have padded rows: the pointers and
  // pitches are then only 2-byte aligned for the 16-bit types.
  TestMat a = g.strided ? randomMat(rng, t, g.m, g.k, g.k + 11, 3) : randomMat(rng, t, g.m, g.k);
  TestMat w = randomMat(rng, t, g.n, g.k, g.strided ? g.k + 5 : 0, 0,
                        1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(g.k, 1))));
  std::vector<float> bias = randomVector(rng, t, g.n);
  DeviceBuffer biasDev = uploadVector(t, bias);
  TestMat gate = randomMat(rng, t, g.m / g.rowsPerGate, g.n);
  int64_t outLd = g.strided ? g.n + 7 : 0;
  TestMat residual = randomMat(rng, t, g.m, g.n, outLd);
  TestMat out = poisonedMat(t, g.m, g.n, outLd);

  // CPU reference on the same rounded values.
  std::vector<float> refOut(static_cast<size_t>(g.m * g.n));
  cpu::Mat refView{refOut.data(), g.m, g.n, g.n};
  cpu::GatedResidual cpuEpi{residual.hc(), gate.hc(), g.rowsPerGate};
  cpu::gemm(a.hc(), w.hc(), g.bias ? bias.data() : nullptr, g.act,
            g.epilogue ? &cpuEpi : nullptr, refView);

  GatedResidual epi{residual.dc(), gate.dc(), g.rowsPerGate};
  DeviceBuffer ws = workspace(Gemm::workspaceBytes(g.m, g.n, g.k, g.epilogue, t));
  TestMat &target = g.alias ? residual : out;
  gemm.run(nullptr, t, a.dc(), w.dc(), g.bias ? biasDev.get() : nullptr, g.act,
           g.epilogue ? &epi : nullptr, target.dm(), Workspace{ws.get(), ws.bytes()});
  cudaOk(cudaGetLastError(), "after Gemm::run");
  expectMatches(target, refView, tolerance(t));
}

TEST(GpuGemm, EveryActivationWithAndWithoutBias) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes)
    for (Act act : kActs)
      for (bool bias : {false, true})
        runGemmCase(rng, gemm, {t, act, bias, false, false, false, 67, 96, 80, 1});
}

TEST(GpuGemm, GatedResidualIntoOutAndInPlace) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes)
    for (Act act : kActs)
      for (bool alias : {false, true})
        // 48 rows in 3 samples of 16: one gate row per sample, as adaLN.
        runGemmCase(rng, gemm, {t, act, true, true, alias, false, 48, 72, 136, 16});
}

TEST(GpuGemm, StridedColumnSlicesAtOddOffsets) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes)
    for (Act act : {Act::None, Act::GeluTanh, Act::Silu})
      for (bool epilogue : {false, true})
        runGemmCase(rng, gemm, {t, act, true, epilogue, epilogue, true, 50, 40, 24, 5});
}

TEST(GpuGemm, ShapesLargerThanOneTile) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes) {
    runGemmCase(rng, gemm, {t, Act::GeluTanh, true, false, false, false, 300, 384, 520, 1});
    runGemmCase(rng, gemm, {t, Act::None, true, true, true, false, 256, 520, 384, 128});
  }
}

TEST(GpuGemm, CachedPlansAreReusedAcrossCalls) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  // The same shapes again with fresh data and buffers (new pointers of the
  // same alignment class reuse the cached plan; the bias pointer is reset).
  for (int round = 0; round < 3; ++round)
    for (DType t : {DType::F16, DType::BF16})
      runGemmCase(rng, gemm, {t, Act::Gelu, true, true, round % 2 == 1, false, 64, 64, 64, 32});
}

TEST(GpuGemm, EmptyReductionGivesTheActivatedBias) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes)
    for (Act act : kActs) {
      SCOPED_TRACE(::testing::Message() << typeName(t) << " " << actName(act));
      const int64_t m = 6, n = 40;
      std::vector<float> bias = randomVector(rng, t, n);
      DeviceBuffer biasDev = uploadVector(t, bias);
      TestMat gate = randomMat(rng, t, m, n);
      TestMat residual = randomMat(rng, t, m, n);
      TestMat a(t, m, 0, 1), w(t, n, 0, 1);
      std::vector<float> ref(static_cast<size_t>(m * n));
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c) {
          float v = bias[static_cast<size_t>(c)];
          cpu::activate(&v, 1, act);
          ref[static_cast<size_t>(r * n + c)] = residual.at(r, c) + gate.at(r, c) * v;
        }
      GatedResidual epi{residual.dc(), gate.dc(), 1};
      DeviceBuffer ws = workspace(Gemm::workspaceBytes(m, n, 0, true, t));
      gemm.run(nullptr, t, a.dc(), w.dc(), biasDev.get(), act, &epi, residual.dm(),
               Workspace{ws.get(), ws.bytes()});
      expectMatches(residual, cpu::ConstMat{ref.data(), m, n, n}, tolerance(t));
    }
}

TEST(GpuGemm, RejectsATooSmallWorkspaceAndOverlaps) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  const DType t = DType::F16;
  TestMat a = randomMat(rng, t, 32, 16), w = randomMat(rng, t, 24, 16);
  TestMat gate = randomMat(rng, t, 32, 24), residual = randomMat(rng, t, 32, 24);
  GatedResidual epi{residual.dc(), gate.dc(), 1};
  DeviceBuffer ws = workspace(1024);
  EXPECT_DIFFRT_ERROR(gemm.run(nullptr, t, a.dc(), w.dc(), nullptr, Act::None, &epi,
                               residual.dm(), Workspace{ws.get(), ws.bytes()}),
                      "workspace", "needs");
  EXPECT_DIFFRT_ERROR(gemm.run(nullptr, t, a.dc(), w.dc(), nullptr, Act::None, nullptr,
                               DMat{a.devView(), 32, 16, 16}, Workspace{ws.get(), ws.bytes()}),
                      "expected 32 x 24");
  TestMat big = randomMat(rng, t, 32, 40);
  EXPECT_DIFFRT_ERROR(gemm.run(nullptr, t, DConstMat{big.devView(), 32, 16, 40}, w.dc(), nullptr,
                               Act::None, nullptr,
                               DMat{static_cast<char *>(big.devView()) + 32, 32, 24, 40},
                               Workspace{ws.get(), ws.bytes()}),
                      "overlaps");
}

/// The record of timed algorithms in the cache directory, and its lines.
std::string tuningRecord(const std::string &dir) {
  for (const auto &entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("gemm-algorithms-", 0) == 0 && name.size() > 4 &&
        name.compare(name.size() - 4, 4, ".txt") == 0)
      return entry.path().string();
  }
  return "";
}
std::vector<std::string> linesOf(const std::string &path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}
void writeLines(const std::string &path, const std::vector<std::string> &lines) {
  std::ofstream out(path);
  for (const std::string &line : lines)
    out << line << "\n";
}

// Every call is checked against the CPU whichever algorithm was timed
// fastest; the record must make a second process (here: a fresh record
// file read by a new Gemm) reuse the first one's choice, and a damaged
// record must cost only a new timing.
TEST(GpuGemm, TimedAlgorithmsAreRecordedReusedAndRepaired) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  ScopedEnv logTimings("DIFFRT_GEMM_TUNE", "log");
  const GemmCase first{DType::BF16, Act::GeluTanh, true, false, false, false, 200, 264, 136, 1};
  const GemmCase second{DType::BF16, Act::None, true, true, false, false, 96, 72, 40, 8};

  std::vector<std::string> recorded;
  std::string fileName; // "/gemm-algorithms-<GPU>-<SMs>sm-cublasLt<version>.txt"
  {
    CacheDir dir;
    Gemm gemm;
    ::testing::internal::CaptureStderr();
    runGemmCase(rng, gemm, first);
    runGemmCase(rng, gemm, first); // the plan is cached: no second timing
    std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
    EXPECT_NE(log.find("run 200 136 264 "), std::string::npos) << log;
    EXPECT_NE(log.find("chose candidate"), std::string::npos) << log;
    std::string file = tuningRecord(dir.path);
    ASSERT_FALSE(file.empty()) << "no gemm-algorithms-*.txt in " << dir.path;
    fileName = file.substr(file.find_last_of('/'));
    recorded = linesOf(file);
    ASSERT_EQ(recorded.size(), 2u) << "a comment and one shape expected";
    EXPECT_EQ(recorded[0][0], '#');
    EXPECT_EQ(recorded[1].rfind("run 200 136 264 ", 0), 0u) << recorded[1];
  }
  {
    // A record with the first shape's line among damaged ones: the line is
    // reused, the damage reported once, and the rewrite after the second
    // shape's timing keeps only good lines.
    CacheDir dir;
    std::string file = dir.path + fileName;
    writeLines(file, {recorded[0], "not a record line", recorded[1],
                      "run 1 2 3 = 4 5", recorded[1].substr(0, recorded[1].size() / 2)});
    Gemm gemm;
    ::testing::internal::CaptureStderr();
    runGemmCase(rng, gemm, first);
    runGemmCase(rng, gemm, second);
    std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(log.find("line 2: expected '<shape> = <algorithm> <workspace>'"), std::string::npos)
        << log;
    EXPECT_NE(log.find("run 200 136 264 264 264 136 BF16 "), std::string::npos) << log;
    EXPECT_NE(log.find(": the recorded choice"), std::string::npos) << log;
    std::vector<std::string> now = linesOf(file);
    ASSERT_EQ(now.size(), 3u); // sorted: "run 200 ..." before "run 96 ..."
    EXPECT_EQ(now[1], recorded[1]) << "the first shape's choice was not kept";
    EXPECT_EQ(now[2].rfind("run 96 40 72 ", 0), 0u) << now[2];
  }

  {
    // A line naming an algorithm cuBLASLt rejects is timed again.
    CacheDir dir;
    std::string key = recorded[1].substr(0, recorded[1].find(" = "));
    std::string bogus = key + " = 7 7 7 7 7 7 7 7 0";
    writeLines(dir.path + fileName, {bogus});
    Gemm gemm;
    ::testing::internal::CaptureStderr();
    runGemmCase(rng, gemm, first);
    std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(log.find("chose candidate"), std::string::npos) << log;
    std::vector<std::string> now = linesOf(dir.path + fileName);
    ASSERT_EQ(now.size(), 2u);
    EXPECT_NE(now[1], bogus);
  }
}

TEST(GpuGemm, RejectsAnUnknownTuningMode) {
  DIFFRT_REQUIRE_GPU();
  ScopedEnv mode("DIFFRT_GEMM_TUNE", "fast");
  EXPECT_DIFFRT_ERROR(Gemm(), "DIFFRT_GEMM_TUNE is 'fast'", "expected 0");
}

//===----------------------------------------------------------------------===//
// swiglu
//===----------------------------------------------------------------------===//

void runSwiglu(Rng &rng, Gemm &gemm, DType t, bool packed, bool epilogue, int64_t m, int64_t k,
               int64_t f, int64_t n) {
  SCOPED_TRACE(::testing::Message() << typeName(t) << " packed " << packed << " epilogue "
                                    << epilogue << " m " << m << " k " << k << " f " << f
                                    << " n " << n);
  TestMat x = randomMat(rng, t, m, k);
  double wScale = 1.0 / std::sqrt(static_cast<double>(k));
  // Packed: one (2F x K) weight whose second half is up, as checkpoints
  // store it; else two buffers (up with a padded pitch).
  TestMat gu = randomMat(rng, t, 2 * f, k, 0, 0, wScale);
  TestMat upOwn = randomMat(rng, t, f, k, k + 3, 0, wScale);
  TestMat down = randomMat(rng, t, n, f, 0, 0, 1.0 / std::sqrt(static_cast<double>(f)));
  cpu::ConstMat gateH{gu.host.data(), f, k, k};
  cpu::ConstMat upH = packed ? cpu::ConstMat{gu.host.data() + f * k, f, k, k} : upOwn.hc();
  DConstMat gateD{gu.devView(), f, k, k};
  DConstMat upD = packed ? DConstMat{static_cast<char *>(gu.devView()) +
                                         static_cast<size_t>(f * k) * dtypeSize(t),
                                     f, k, k}
                         : upOwn.dc();
  TestMat gate = randomMat(rng, t, 2, n);
  TestMat residual = randomMat(rng, t, m, n);

  std::vector<float> refOut(static_cast<size_t>(m * n)), scratch(static_cast<size_t>(2 * m * f));
  cpu::Mat refView{refOut.data(), m, n, n};
  cpu::GatedResidual cpuEpi{residual.hc(), gate.hc(), m / 2};
  cpu::swiglu(x.hc(), gateH, upH, down.hc(), epilogue ? &cpuEpi : nullptr, scratch.data(),
              refView);

  GatedResidual epi{residual.dc(), gate.dc(), m / 2};
  TestMat out = poisonedMat(t, m, n);
  TestMat &target = epilogue ? residual : out; // with the epilogue: in place
  DeviceBuffer ws = workspace(swigluWorkspaceBytes(m, f, n, t));
  swiglu(nullptr, gemm, t, x.dc(), gateD, upD, down.dc(), epilogue ? &epi : nullptr, target.dm(),
         Workspace{ws.get(), ws.bytes()});
  cudaOk(cudaGetLastError(), "after swiglu");
  expectMatches(target, refView, tolerance(t));
}

TEST(GpuSwiglu, PackedAndSeparateWeightsWithAndWithoutEpilogue) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes)
    for (bool packed : {true, false})
      for (bool epilogue : {false, true})
        runSwiglu(rng, gemm, t, packed, epilogue, 96, 64, 176, 72);
  // An odd hidden width: the up half of the hidden buffer and its rows are
  // not 16-byte aligned, so every product and the silu-mul take the
  // unaligned paths.
  runSwiglu(rng, gemm, DType::F16, true, true, 40, 32, 45, 24);
}

//===----------------------------------------------------------------------===//
// patchEmbed
//===----------------------------------------------------------------------===//

TEST(GpuPatchEmbed, MatchesTheCpuConvolution) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  for (DType t : kTypes)
    for (bool withPos : {false, true})
      for (int64_t p : {2, 4}) {
        const int64_t batch = 3, c = 4, height = 16, width = 8, d = 72;
        const int64_t tokens = (height / p) * (width / p), patchLen = c * p * p;
        SCOPED_TRACE(::testing::Message() << typeName(t) << " pos " << withPos << " p " << p);
        std::vector<float> x = randomVector(rng, t, batch * c * height * width);
        std::vector<float> weight =
            randomVector(rng, t, d * patchLen, 1.0 / std::sqrt(static_cast<double>(patchLen)));
        std::vector<float> bias = randomVector(rng, t, d);
        std::vector<float> pos = randomVector(rng, t, tokens * d);
        DeviceBuffer xD = uploadVector(t, x), wD = uploadVector(t, weight),
                     bD = uploadVector(t, bias), pD = uploadVector(t, pos);
        std::vector<float> refOut(static_cast<size_t>(batch * tokens * d));
        cpu::patchEmbed(x.data(), batch, c, height, width, weight.data(), bias.data(), d, p,
                        withPos ? pos.data() : nullptr, cpu::Mat{refOut.data(), batch * tokens, d, d});
        // A padded output pitch: the tokens land in a wider activation buffer.
        TestMat out = poisonedMat(t, batch * tokens, d, d + 8);
        DeviceBuffer ws = workspace(patchEmbedWorkspaceBytes(batch, c, height, width, p, t));
        patchEmbed(nullptr, gemm, t, xD.get(), batch, c, height, width, wD.get(), bD.get(), d, p,
                   withPos ? pD.get() : nullptr, out.dm(), Workspace{ws.get(), ws.bytes()});
        cudaOk(cudaGetLastError(), "after patchEmbed");
        expectMatches(out, cpu::ConstMat{refOut.data(), batch * tokens, d, d}, tolerance(t));
      }
}

//===----------------------------------------------------------------------===//
// Timing
//===----------------------------------------------------------------------===//

/// Median milliseconds of `runs` timed calls after `warmup` untimed ones,
/// each call bracketed by its own pair of CUDA events on the default stream.
template <typename F> double medianMs(F &&call, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i)
    call();
  cudaEvent_t start, stop;
  cudaOk(cudaEventCreate(&start), "cudaEventCreate");
  cudaOk(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
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
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

/// Random device data in a 16-bit type without a host round trip per call:
/// one random host block, repeated.
DeviceBuffer randomDevice(Rng &rng, DType t, int64_t n, double stddev) {
  const int64_t block = 1 << 20;
  std::vector<uint8_t> bytes = encode(t, rng.normal(std::min(n, block), stddev));
  DeviceBuffer b(static_cast<size_t>(n) * dtypeSize(t));
  for (int64_t done = 0; done < n; done += block) {
    int64_t count = std::min(block, n - done);
    cudaOk(cudaMemcpy(static_cast<char *>(b.get()) + done * dtypeSize(t), bytes.data(),
                      static_cast<size_t>(count) * dtypeSize(t), cudaMemcpyHostToDevice),
           "upload random block");
  }
  return b;
}

TEST(GpuGemmTiming, DitXlShapes) {
  DIFFRT_REQUIRE_GPU();
  Rng rng;
  SCOPED_TRACE(rng.trace());
  Gemm gemm;
  struct Shape {
    int64_t m, k, n;
    const char *what;
    Act act;
    bool gated;
  };
  const Shape shapes[] = {
      {8192, 1152, 3456, "XL qkv", Act::None, false},
      {8192, 1152, 1152, "XL proj", Act::None, true},
      {8192, 1152, 4608, "XL fc1", Act::GeluTanh, false},
      {8192, 4608, 1152, "XL fc2", Act::None, true},
      {65536, 1152, 3456, "XL qkv", Act::None, false},
      {65536, 1152, 1152, "XL proj", Act::None, true},
      {65536, 1152, 4608, "XL fc1", Act::GeluTanh, false},
      {65536, 4608, 1152, "XL fc2", Act::None, true},
  };
  std::printf("%-8s %6s %5s %5s %-5s %10s %10s %12s %12s\n", "what", "M", "K", "N", "dtype",
              "bare ms", "TFLOP/s", "fused ms", "fused TFLOP/s");
  for (DType t : {DType::BF16, DType::F16})
    for (const Shape &s : shapes) {
      DeviceBuffer a = randomDevice(rng, t, s.m * s.k, 1.0);
      DeviceBuffer w = randomDevice(rng, t, s.n * s.k, 1.0 / std::sqrt(double(s.k)));
      DeviceBuffer bias = randomDevice(rng, t, s.n, 1.0);
      DeviceBuffer out = randomDevice(rng, t, s.m * s.n, 1.0);
      DeviceBuffer gate = randomDevice(rng, t, (s.m / 256) * s.n, 1.0);
      DeviceBuffer ws = workspace(Gemm::workspaceBytes(s.m, s.n, s.k, s.gated, t));
      Workspace wsv{ws.get(), ws.bytes()};
      DConstMat av{a.get(), s.m, s.k, s.k}, wv{w.get(), s.n, s.k, s.k};
      DMat ov{out.get(), s.m, s.n, s.n};
      GatedResidual epi{ov, DConstMat{gate.get(), s.m / 256, s.n, s.n}, 256};
      double bare = medianMs(
          [&] { gemm.run(nullptr, t, av, wv, nullptr, Act::None, nullptr, ov, wsv); }, 3, 21);
      // The block's real layer: bias + tanh GELU for fc1, bias + gated
      // residual in place for proj and fc2, bias for qkv.
      double fused = medianMs(
          [&] {
            gemm.run(nullptr, t, av, wv, bias.get(), s.act, s.gated ? &epi : nullptr, ov, wsv);
          },
          3, 21);
      cudaOk(cudaGetLastError(), "timing");
      double flop = 2.0 * double(s.m) * double(s.n) * double(s.k);
      std::printf("%-8s %6lld %5lld %5lld %-5s %10.3f %10.1f %12.3f %12.1f\n", s.what,
                  static_cast<long long>(s.m), static_cast<long long>(s.k),
                  static_cast<long long>(s.n), typeName(t), bare, flop / bare * 1e-9, fused,
                  flop / fused * 1e-9);
    }
}

} // namespace
} // namespace diffrt::cuda::gputest
