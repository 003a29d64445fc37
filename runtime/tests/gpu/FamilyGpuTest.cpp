//===- FamilyGpuTest.cpp - every family on the GPU against the CPU --------===//
//
// End to end on the GPU machine: for each model family, artifacts compiled
// on the development machine (bench/prepare.sh writes them to the folder
// named by DIFFRT_FAMILY_ARTIFACTS) run on the CPU backend (f32, the oracle)
// and on the CUDA backend in f32 and, for families without data-dependent
// routing, in f16, with the same weights and inputs. In f32 the GPU must
// match to float32 tolerance; in f16 to what 16-bit activations allow.
// (MoE families are compared in f32 only: a 16-bit rounding can flip a
// near-tie in routing and send a token to another expert, which is a
// correct computation of a different function.)
//
//===----------------------------------------------------------------------===//

#include "GpuTestUtil.h"

#include <cstring>

#include "diffrt/Rng.h"
#include "diffrt/Session.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <random>
#include <unistd.h>

using namespace diffrt;
using diffrt::cuda::testing::gpuAvailable;

namespace {

std::string artifactDir() {
  const char *dir = std::getenv("DIFFRT_FAMILY_ARTIFACTS");
  return dir ? dir : "";
}

/// Random inputs of the right kind for each of the forward's inputs.
std::map<std::string, HostTensor> randomInputs(const Module &m, uint64_t seed) {
  const Plan &plan = m.plan();
  Philox rng(seed);
  std::map<std::string, HostTensor> feed;
  int64_t classes = m.modelInt("num_classes", 1);
  int64_t grid = m.modelInt("latent_size", 0) / std::max<int64_t>(1, m.modelInt("patch_size", 1));
  for (auto &[name, id] : plan.entry("forward")->inputs) {
    const ValueDesc &v = plan.values[id];
    if (v.dtype == DType::I32) {
      std::vector<int32_t> data(v.numel());
      if (name == "keep") {
        for (int64_t b = 0; b < v.shape[0]; ++b) {
          std::vector<int32_t> perm(grid * grid);
          std::iota(perm.begin(), perm.end(), 0);
          for (int64_t i = static_cast<int64_t>(perm.size()) - 1; i > 0; --i)
            std::swap(perm[i], perm[rng.nextU32() % (i + 1)]);
          std::copy_n(perm.begin(), v.shape[1], data.begin() + b * v.shape[1]);
        }
      } else {
        for (int32_t &x : data)
          x = static_cast<int32_t>(rng.nextU32() % (classes + 1)); // includes the null class
      }
      feed[name] = HostTensor::ints(v.shape, data);
    } else {
      std::vector<float> data(v.numel());
      rng.fillNormal(data.data(), v.numel());
      if (name == "t")
        for (float &x : data)
          x = std::floor(rng.uniform() * 999);
      feed[name] = HostTensor::floats(v.shape, data);
    }
  }
  return feed;
}

double relativeL2(const std::vector<float> &a, const std::vector<float> &b, double *worst) {
  double d = 0, n = 0;
  *worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double e = static_cast<double>(a[i]) - b[i];
    d += e * e;
    n += static_cast<double>(b[i]) * b[i];
    *worst = std::max(*worst, std::fabs(e));
  }
  return std::sqrt(d / std::max(n, 1e-30));
}

void compareFamilySeed(const std::string &family, bool f16, uint64_t seed) {
  std::string why;
  if (!gpuAvailable(&why))
    GTEST_SKIP() << why;
  std::string dir = artifactDir();
  if (dir.empty())
    GTEST_SKIP() << "DIFFRT_FAMILY_ARTIFACTS is not set (bench/prepare.sh writes the artifacts)";
  std::string cpuPath = dir + "/" + family + ".cpu.dfx";
  std::string gpuPath = dir + "/" + family + (f16 ? ".cuda16.dfx" : ".cuda32.dfx");
  ASSERT_TRUE(std::filesystem::exists(cpuPath) && std::filesystem::exists(gpuPath))
      << "missing " << cpuPath << " or " << gpuPath;
  SCOPED_TRACE("seed " + std::to_string(seed));
  Module cpuModule = Module::load(cpuPath);
  Session cpu(cpuModule, Device::cpu());
  cpu.randomizeParameters(seed, 0.05f);
  std::string weights = ::testing::TempDir() + "/family_" + family + "_" + std::to_string(::getpid()) + ".safetensors";
  cpu.saveWeights(weights);
  Module gpuModule = Module::load(gpuPath);
  Session gpu(gpuModule, Device::cuda(0));
  gpu.loadWeights(weights);
  std::remove(weights.c_str());
  auto feed = randomInputs(cpuModule, seed + 1);
  std::vector<float> expect = cpu.run("forward", feed).at(0).f32;
  // The first run is eager on one stream; later runs replay the captured
  // CUDA graph, whose independent kernels run on a second stream. Every
  // run must give the same bits: a missing dependency between the lanes
  // would show up as a difference.
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    std::vector<float> got = gpu.run("forward", feed).at(0).f32;
    if (run == 0)
      first = got;
    else
      EXPECT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0)
          << family << " run " << run << " differs from the eager run";
    ASSERT_EQ(got.size(), expect.size());
    for (float x : got)
      ASSERT_TRUE(std::isfinite(x)) << family << " run " << run;
    double worst = 0, rel = relativeL2(got, expect, &worst);
    // f32: different summation orders over a few layers; f16: activations
    // rounded to 11 bits at every kernel boundary.
    double tolerance = f16 ? 2e-2 : 2e-4;
    EXPECT_LT(rel, tolerance) << family << (f16 ? " f16" : " f32") << " run " << run
                              << ": relative L2 error " << rel << ", max abs " << worst;
    std::printf("%s %s run %d: relative L2 error %.3g, max abs %.3g\n", family.c_str(),
                f16 ? "f16" : "f32", run, rel, worst);
  }
  // Every family has work off the main chain: the conditioning projections
  // (and MicroDiT's caption projections).
  EXPECT_GT(gpu.sideStreamKernels("forward"), 0u) << family;
  std::printf("%s %s: %zu kernels on the side stream\n", family.c_str(), f16 ? "f16" : "f32",
              gpu.sideStreamKernels("forward"));
}

void compareFamily(const std::string &family, bool f16) {
  using diffrt::cuda::testing::comparisonSeeds;
  using diffrt::cuda::testing::isRoutedFamily;
  for (uint64_t seed : comparisonSeeds(isRoutedFamily(family)))
    compareFamilySeed(family, f16, seed);
}

} // namespace

TEST(GpuFamily, DiTf32) { compareFamily("dit", false); }
TEST(GpuFamily, DiTf16) { compareFamily("dit", true); }
TEST(GpuFamily, DiTMoEf32) { compareFamily("ditmoe", false); }
TEST(GpuFamily, DiTMoEQkNormf32) { compareFamily("ditmoe_qk", false); }
TEST(GpuFamily, DiGf32) { compareFamily("dig", false); }
TEST(GpuFamily, DiGf16) { compareFamily("dig", true); }
TEST(GpuFamily, MicroDiTf32) { compareFamily("microdit", false); }
TEST(GpuFamily, MicroDiTMaskedf32) { compareFamily("microdit_masked", false); }
