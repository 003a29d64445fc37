//===- TestCases.h - tiny configurations and golden cases -----------------===//
//
// Tiny configurations, fixed inputs and golden cases shared by the reference tests and the
// golden-data exporter.
//
// The golden outputs in golden/ were produced by running the original PyTorch model code on
// exactly these weights and inputs (see golden/make_golden.py), so the exporter and the tests must
// build them identically; defining them once here guarantees that. Weights come from
// randomStateDict and inputs from deterministicNormal, both portable across platforms and LibTorch
// versions, so nothing but the small output tensors needs to be stored.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "TorchModels.h"

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace diffc::reference::cases {

inline torch::Tensor seededRandn(std::vector<int64_t> shape, uint64_t seed) {
  return deterministicNormal(shape, seed);
}

// Labels in [0, numClasses]; numClasses itself is the null label, so it is a valid input too.
inline torch::Tensor seededLabels(int64_t n, int64_t numClasses, uint64_t seed) {
  // The normal CDF maps the portable normals onto uniform class indices.
  torch::Tensor uniform =
      0.5 * torch::erfc(-deterministicNormal({n}, seed).to(torch::kFloat64) / std::sqrt(2.0));
  return (uniform * static_cast<double>(numClasses + 1))
      .floor()
      .clamp(0, static_cast<double>(numClasses))
      .to(torch::kInt64);
}

// A per-sample random permutation of 0..tokens-1, truncated to `keep` entries.
inline torch::Tensor seededTokenSubset(int64_t n, int64_t tokens, int64_t keep, uint64_t seed) {
  return std::get<1>(seededRandn({n, tokens}, seed).sort(1)).narrow(1, 0, keep).contiguous();
}

inline DitConfig tinyDit(int64_t depth = 2) {
  DitConfig cfg;
  cfg.inputSize = 16;
  cfg.hidden = 64;
  cfg.heads = 4;
  cfg.depth = depth;
  cfg.numClasses = 10;
  return cfg;
}

inline DitMoeConfig tinyDitMoe(bool qkNorm) {
  DitMoeConfig cfg;
  cfg.base = tinyDit();
  cfg.experts = 4;
  cfg.topK = 2;
  cfg.qkNorm = qkNorm;
  return cfg;
}

inline DigConfig tinyDig(int64_t depth = 4) {
  DigConfig cfg;
  cfg.inputSize = 16;
  cfg.hidden = 64;
  cfg.heads = 2;
  cfg.depth = depth;
  cfg.numClasses = 10;
  return cfg;
}

// Mixer narrower than the backbone, so the map_xin/xout/y projections are exercised.
inline MicroDitConfig tinyMicroDit() {
  MicroDitConfig cfg;
  cfg.inputSize = 16;
  cfg.dim = 64;
  cfg.depth = 4;
  cfg.headDim = 16;
  cfg.multipleOf = 32;
  cfg.captionChannels = 48;
  cfg.captionTokens = 7;
  cfg.mixerDepth = 2;
  cfg.mixerDim = 48;
  cfg.experts = 4;
  return cfg;
}

struct ClassInputs {
  torch::Tensor x, t, y;
};

inline ClassInputs classInputs(int64_t n, int64_t channels, int64_t size, int64_t numClasses) {
  return {seededRandn({n, channels, size, size}, 101),
          torch::tensor({7.0f, 913.0f}).narrow(0, 0, n), seededLabels(n, numClasses, 102)};
}

struct MicroInputs {
  torch::Tensor x, cNoise, captions;
};

inline MicroInputs microInputs(const MicroDitConfig &cfg, int64_t n) {
  return {seededRandn({n, cfg.inChannels, cfg.inputSize, cfg.inputSize}, 201),
          torch::tensor({-0.4f, 0.9f}).narrow(0, 0, n),
          seededRandn({n, cfg.captionTokens, cfg.captionChannels}, 202)};
}

// One model evaluation whose output is pinned by a golden file produced by the original code.
struct GoldenCase {
  std::string name;
  StateDict weights;
  // Named inputs as the exporter writes them: x, t, y (class-conditional families) or x, cNoise,
  // captions and optionally idsKeep (MicroDiT).
  std::vector<std::pair<std::string, torch::Tensor>> inputs;
  std::function<torch::Tensor()> run;
};

inline std::vector<GoldenCase> goldenCases() {
  std::vector<GoldenCase> cases;
  const ClassInputs cls = classInputs(2, 4, 16, 10);
  const std::vector<std::pair<std::string, torch::Tensor>> clsInputs = {
      {"x", cls.x}, {"t", cls.t}, {"y", cls.y}};

  {
    const DitConfig cfg = tinyDit();
    const StateDict sd = randomStateDict(ditShapes(cfg), 21);
    cases.push_back(
        {"dit", sd, clsInputs, [=] { return ditForward(cfg, sd, cls.x, cls.t, cls.y); }});
  }
  for (bool qkNorm : {false, true}) {
    const DitMoeConfig cfg = tinyDitMoe(qkNorm);
    const StateDict sd = randomStateDict(ditMoeShapes(cfg), 22);
    cases.push_back({qkNorm ? "ditmoe_qknorm" : "ditmoe_timm", sd, clsInputs,
                     [=] { return ditMoeForward(cfg, sd, cls.x, cls.t, cls.y); }});
  }
  for (int64_t depth : {4, 6}) {
    const DigConfig cfg = tinyDig(depth);
    const StateDict sd = randomStateDict(digShapes(cfg), 26);
    cases.push_back({"dig_depth" + std::to_string(depth), sd, clsInputs,
                     [=] { return digForward(cfg, sd, cls.x, cls.t, cls.y); }});
  }

  MicroDitConfig sameWidth = tinyMicroDit();
  sameWidth.mixerDim = sameWidth.dim;
  for (const auto &[name, cfg] :
       {std::pair<std::string, MicroDitConfig>{"microdit", tinyMicroDit()},
        {"microdit_samewidth", sameWidth}}) {
    const StateDict sd = randomStateDict(microDitShapes(cfg), 24);
    const MicroInputs in = microInputs(cfg, 2);
    const std::vector<std::pair<std::string, torch::Tensor>> inputs = {
        {"x", in.x}, {"cNoise", in.cNoise}, {"captions", in.captions}};
    const MicroDitConfig c = cfg;
    cases.push_back({name, sd, inputs, [=] {
                       return microDitForward(c, sd, in.x, in.cNoise, in.captions, std::nullopt);
                     }});
    // 75% masking, the training configuration (spec 4.5): 16 of 64 tokens kept.
    const torch::Tensor ids = seededTokenSubset(2, 64, 16, 203);
    std::vector<std::pair<std::string, torch::Tensor>> maskedInputs = inputs;
    maskedInputs.push_back({"idsKeep", ids});
    cases.push_back({name + "_masked", sd, maskedInputs,
                     [=] { return microDitForward(c, sd, in.x, in.cNoise, in.captions, ids); }});
  }
  return cases;
}

} // namespace diffc::reference::cases
