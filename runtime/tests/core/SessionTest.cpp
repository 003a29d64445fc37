//===- SessionTest.cpp - sessions, weights and inputs ---------------------===//
//
// Runs hand-built plans on the CPU backend: numerics of a tiny program
// against a direct computation, checkpoint matching by name (missing, extra,
// mis-shaped, stacked, computed state), input validation, and errors raised
// inside kernels naming the kernel.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Error.h"
#include "diffrt/Safetensors.h"
#include "diffrt/Session.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <unistd.h>

using namespace diffrt;

namespace {

ValueDesc value(DType t, std::vector<int64_t> shape, Region r, uint64_t offset) {
  ValueDesc v;
  v.dtype = t;
  v.shape = std::move(shape);
  v.region = r;
  v.offset = offset;
  v.ld = v.shape.back();
  return v;
}

/// y = silu(x · wᵀ + b) with a stacked (2 x 3 x 4) weight of which slice 1
/// is used through a view, plus a label embedding.
Plan smallPlan() {
  Plan p;
  p.target = "cpu";
  p.weightsBytes = 1024;
  p.arenaBytes = 1024;
  p.constantsBytes = 256;
  p.values = {
      value(DType::F32, {2, 4}, Region::Arena, 0),        // 0 x
      value(DType::F32, {3, 4}, Region::Weights, 0),      // 1 w
      value(DType::F32, {3}, Region::Weights, 256),       // 2 b
      value(DType::F32, {2, 3}, Region::Arena, 256),      // 3 y
      value(DType::I32, {2}, Region::Arena, 512),         // 4 labels
      value(DType::F32, {4, 3}, Region::Weights, 512),    // 5 table (3 classes + null)
      value(DType::F32, {2, 3}, Region::Arena, 768),      // 6 embedding
      value(DType::F32, {2, 2, 2}, Region::Weights, 768), // 7 stacked experts.{e}.w
      value(DType::F32, {4, 4}, Region::Constants, 0),    // 8 position table
  };
  p.params = {{1, "lin.weight"}, {2, "lin.bias"}, {5, "table"}, {7, "experts.{e}.w"}};
  p.state = {{"pos_embed", 8, {1, 4, 4}, "value"}};
  KernelDesc pos{"dit.sincos_pos_embed", {}, {8},
                 {{"grid", std::vector<int64_t>{2, 2}}, {"dim", int64_t(4)}, {"interp_scale", 1.0}}};
  KernelDesc gemm{"kern.gemm", {0, 1, 2, -1, -1}, {3}, {{"act", std::string("silu")}}};
  KernelDesc label{"dit.label_embed", {4, 5}, {6}, {{"num_classes", int64_t(3)}}};
  p.entries = {{"init", {pos}, {}, {}}, {"forward", {gemm, label}, {{"x", 0}, {"y", 4}}, {3, 6}}};
  return p;
}

struct Files {
  std::string dir = ::testing::TempDir();
  std::string path(const std::string &name) { return dir + "/" + name + "_" + std::to_string(::getpid()); }
};

std::vector<float> randoms(size_t n, std::mt19937 &rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float &x : v)
    x = d(rng);
  return v;
}

void writeWeights(const std::string &path, std::mt19937 &rng, bool withPos = false) {
  SafetensorsWriter w;
  w.addF32("lin.weight", {3, 4}, randoms(12, rng).data());
  w.addF32("lin.bias", {3}, randoms(3, rng).data());
  w.addF32("table", {4, 3}, randoms(12, rng).data());
  w.addF32("experts.0.w", {2, 2}, randoms(4, rng).data());
  w.addF32("experts.1.w", {2, 2}, randoms(4, rng).data());
  if (withPos) {
    // The 2x2-grid, width-4 table of spec 1.1: [sin c, cos c, sin r, cos r].
    std::vector<float> pos;
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 2; ++c)
        for (float v : {std::sin(float(c)), std::cos(float(c)), std::sin(float(r)), std::cos(float(r))})
          pos.push_back(v);
    w.addF32("pos_embed", {1, 4, 4}, pos.data());
  }
  w.write(path);
}

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST(Session, RunsAPlanAndMatchesADirectComputation) {
  std::mt19937 rng(std::random_device{}());
  Files files;
  std::string weights = files.path("w.safetensors");
  writeWeights(weights, rng, true);
  Session s(Module::fromPlan(smallPlan(), "small.dfx"), Device::cpu());
  s.loadWeights(weights);
  std::vector<float> x = randoms(8, rng);
  auto out = s.run("forward", {{"x", HostTensor::floats({2, 4}, x)}, {"y", HostTensor::ints({2}, {2, 3})}});
  std::vector<float> w = s.getParameter("lin.weight"), b = s.getParameter("lin.bias");
  std::vector<float> table = s.getParameter("table");
  ASSERT_EQ(out.size(), 2u);
  for (int r = 0; r < 2; ++r)
    for (int o = 0; o < 3; ++o) {
      double acc = b[o];
      for (int k = 0; k < 4; ++k)
        acc += double(x[r * 4 + k]) * w[o * 4 + k];
      double expect = acc / (1 + std::exp(-acc));
      EXPECT_NEAR(out[0].f32[r * 3 + o], expect, 1e-5 * (1 + std::fabs(expect)));
    }
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(out[1].f32[j], table[2 * 3 + j]);
    EXPECT_EQ(out[1].f32[3 + j], table[3 * 3 + j]) << "label 3 is the null class row";
  }
  std::remove(weights.c_str());
}

TEST(Session, CheckpointMismatchesAreReportedTogether) {
  std::mt19937 rng(std::random_device{}());
  Files files;
  std::string path = files.path("bad.safetensors");
  SafetensorsWriter w;
  w.addF32("lin.weight", {4, 3}, randoms(12, rng).data()); // transposed
  w.addF32("table", {4, 3}, randoms(12, rng).data());
  w.addF32("experts.0.w", {2, 2}, randoms(4, rng).data());
  w.addF32("blocks.0.extra", {2}, randoms(2, rng).data());
  w.write(path);
  Session s(Module::fromPlan(smallPlan(), "small.dfx"), Device::cpu());
  std::string e = errorOf([&] { s.loadWeights(path); });
  EXPECT_NE(e.find(path + ": the checkpoint does not match small.dfx:"), std::string::npos) << e;
  EXPECT_NE(e.find("2 missing tensors:\n    lin.bias\n    experts.1.w"), std::string::npos) << e;
  EXPECT_NE(e.find("'lin.weight' is 4x3 in the file but the model needs 3x4"), std::string::npos) << e;
  EXPECT_NE(e.find("1 extra tensors the model does not have:\n    blocks.0.extra"), std::string::npos) << e;
  std::remove(path.c_str());
}

TEST(Session, StackedParametersRoundTripThroughSaveAndLoad) {
  std::mt19937 rng(std::random_device{}());
  Files files;
  std::string in = files.path("in.safetensors"), out = files.path("out.safetensors");
  writeWeights(in, rng);
  Session s(Module::fromPlan(smallPlan(), "small.dfx"), Device::cpu());
  s.loadWeights(in);
  SafetensorsFile file = SafetensorsFile::open(in);
  std::vector<float> stacked = s.getParameter("experts.{e}.w");
  std::vector<float> e0 = file.readF32("experts.0.w"), e1 = file.readF32("experts.1.w");
  EXPECT_EQ(std::vector<float>(stacked.begin(), stacked.begin() + 4), e0);
  EXPECT_EQ(std::vector<float>(stacked.begin() + 4, stacked.end()), e1);
  s.saveWeights(out);
  SafetensorsFile saved = SafetensorsFile::open(out);
  EXPECT_EQ(saved.names(), (std::vector<std::string>{"experts.0.w", "experts.1.w", "lin.bias", "lin.weight", "table"}));
  EXPECT_EQ(saved.readF32("experts.1.w"), e1);
  std::remove(in.c_str());
  std::remove(out.c_str());
}

TEST(Session, ComputedStateInACheckpointIsChecked) {
  std::mt19937 rng(std::random_device{}());
  Files files;
  std::string good = files.path("pos_good.safetensors"), bad = files.path("pos_bad.safetensors");
  writeWeights(good, rng, true);
  Session s(Module::fromPlan(smallPlan(), "small.dfx"), Device::cpu());
  EXPECT_NO_THROW(s.loadWeights(good));
  SafetensorsFile g = SafetensorsFile::open(good);
  SafetensorsWriter w;
  for (const std::string &n : g.names()) {
    std::vector<float> v = g.readF32(n);
    if (n == "pos_embed")
      v[5] += 0.5f;
    w.addF32(n, g.info(n).shape, v.data());
  }
  w.write(bad);
  std::string e = errorOf([&] { s.loadWeights(bad); });
  EXPECT_NE(e.find("'pos_embed' differs from what small.dfx computes (max difference 0.5 at element 5)"),
            std::string::npos)
      << e;
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

TEST(Session, InputsAreValidated) {
  Session s(Module::fromPlan(smallPlan(), "small.dfx"), Device::cpu());
  std::vector<float> x(8, 0.5f);
  EXPECT_NE(errorOf([&] { s.run("forward", {{"x", HostTensor::floats({2, 4}, x)}}); })
                .find("forward: missing input 'y' (2)"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              s.run("forward", {{"x", HostTensor::floats({4, 2}, x)}, {"y", HostTensor::ints({2}, {0, 1})}});
            }).find("input 'x' is 4x2 but the model was compiled for 2x4"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              s.run("forward", {{"x", HostTensor::floats({2, 4}, x)}, {"y", HostTensor::ints({2}, {0, 1})},
                                {"z", HostTensor::ints({1}, {0})}});
            }).find("unexpected input 'z'"),
            std::string::npos);
  std::string e = errorOf([&] {
    s.run("forward", {{"x", HostTensor::floats({2, 4}, x)}, {"y", HostTensor::ints({2}, {0, 7})}});
  });
  EXPECT_NE(e.find("kernel #1 (dit.label_embed) of 'forward'"), std::string::npos) << e;
}

TEST(Session, RefusesAPlanForAnotherDevice) {
  Plan p = smallPlan();
  p.target = "cuda";
  EXPECT_NE(errorOf([&] { Session s(Module::fromPlan(p, "g.dfx"), Device::cpu()); })
                .find("g.dfx: compiled for target 'cuda'; recompile with --target cpu"),
            std::string::npos);
}

TEST(Session, CpuRefusesHalfPrecisionPlans) {
  Plan p = smallPlan();
  p.values[3].dtype = DType::F16;
  EXPECT_NE(errorOf([&] { Session s(Module::fromPlan(p, "h.dfx"), Device::cpu()); })
                .find("the CPU backend runs f32 artifacts, but value #3 is F16"),
            std::string::npos);
}

TEST(DType, HalfConversionsRoundTripEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = halfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f))
      continue;
    EXPECT_EQ(floatToHalf(f), h) << "half bits " << h;
  }
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00) << "rounds to infinity";
  EXPECT_EQ(floatToHalf(1.0f + 1.0f / 2048), floatToHalf(1.0f)) << "ties to even";
  EXPECT_EQ(halfToFloat(floatToHalf(5.96e-8f)), 5.9604644775390625e-8f) << "smallest subnormal";
}

TEST(DType, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(bf16ToFloat(floatToBf16(1.0f)), 1.0f);
  EXPECT_EQ(floatToBf16(1.0f + 1.0f / 256), floatToBf16(1.0f)) << "tie to even";
  EXPECT_EQ(bf16ToFloat(floatToBf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(std::nanf("")))));
}
