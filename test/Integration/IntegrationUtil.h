//===- IntegrationUtil.h - shared helpers of the end-to-end tests ---*- C++ -*-===//
//
// Temporary files, the diffc binary, and the conversions between LibTorch
// reference tensors and the runtime's host tensors and safetensors files.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "TorchModels.h"

#include "diffrt/Safetensors.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

namespace diffc::integration {

using reference::StateDict;

inline std::string tempPath(const std::string &name) {
  return ::testing::TempDir() + "/" + name + "_" + std::to_string(::getpid());
}

/// Runs a shell command, returning its exit status and combined output.
inline std::pair<int, std::string> shell(const std::string &command) {
  std::string output;
  FILE *pipe = ::popen((command + " 2>&1").c_str(), "r");
  std::array<char, 512> buffer;
  while (pipe && std::fgets(buffer.data(), buffer.size(), pipe))
    output += buffer.data();
  int status = pipe ? ::pclose(pipe) : -1;
  return {status, output};
}

inline std::string diffcBinary() { return DIFFC_BINARY; }

/// Runs `diffc import NAME ARGS` and `diffc compile [COMPILE_ARGS]` into a
/// .dfx, returning its path.
inline std::string compileZoo(const std::string &name, const std::string &args,
                              const std::string &tag, const std::string &compileArgs = "") {
  std::string mlir = tempPath(tag + ".mlir"), dfx = tempPath(tag + ".dfx");
  auto imported = shell(diffcBinary() + " import " + name + " " + args + " -o " + mlir);
  EXPECT_EQ(imported.first, 0) << imported.second;
  auto compiled = shell(diffcBinary() + " compile " + mlir + " " + compileArgs + " -o " + dfx);
  EXPECT_EQ(compiled.first, 0) << compiled.second;
  std::remove(mlir.c_str());
  return dfx;
}

inline void writeStateDict(const StateDict &sd, const std::string &path) {
  diffrt::SafetensorsWriter w;
  for (auto &[name, tensor] : sd) {
    torch::Tensor t = tensor.detach().to(torch::kFloat32).contiguous();
    w.addF32(name, t.sizes().vec(), t.data_ptr<float>());
  }
  w.write(path);
}

inline std::vector<float> toVector(const torch::Tensor &t) {
  torch::Tensor c = t.detach().to(torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

inline std::vector<int32_t> toInts(const torch::Tensor &t) {
  torch::Tensor c = t.to(torch::kInt32).contiguous();
  return std::vector<int32_t>(c.data_ptr<int32_t>(), c.data_ptr<int32_t>() + c.numel());
}

inline uint64_t freshSeed() {
  return (static_cast<uint64_t>(std::random_device{}()) << 20) ^ std::random_device{}();
}

/// ‖a − b‖ / ‖b‖ and every element finite.
inline void expectClose(const std::vector<float> &ours, const torch::Tensor &reference, double tolerance,
                 const std::string &what) {
  std::vector<float> ref = toVector(reference);
  ASSERT_EQ(ours.size(), ref.size()) << what;
  double diff = 0, norm = 0, worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_TRUE(std::isfinite(ours[i])) << what << ": element " << i << " is " << ours[i];
    double d = static_cast<double>(ours[i]) - ref[i];
    diff += d * d;
    norm += static_cast<double>(ref[i]) * ref[i];
    worst = std::max(worst, std::fabs(d));
  }
  ASSERT_GT(norm, 0) << what << ": the reference output is zero, the test would prove nothing";
  double rel = std::sqrt(diff / norm);
  EXPECT_LT(rel, tolerance) << what << ": relative L2 error " << rel << ", max abs error " << worst;
  std::printf("%s: relative L2 error %.3g, max abs error %.3g\n", what.c_str(), rel, worst);
}

/// Files removed when the test ends, passed or not.
struct TempFiles {
  std::vector<std::string> paths;
  ~TempFiles() {
    for (const std::string &p : paths)
      std::remove(p.c_str());
  }
};

} // namespace diffc::integration
