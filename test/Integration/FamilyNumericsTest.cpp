//===- FamilyNumericsTest.cpp - compiled models against LibTorch ----------===//
//
// End to end on the CPU: every family (tiny configurations through the zoo's
// architecture overrides) is imported and compiled by the diffc binary, run
// by libdiffrt with weights written to safetensors, and compared with the
// LibTorch reference implementation of test/Reference on the same weights
// and inputs, to float32 tolerance.
//
// Seeds: dense families draw fresh weights and inputs on every run. The MoE
// families use fixed seeds: routing is discontinuous, and a near-tie between
// two independently summed router logits would flip an expert and make a
// fresh-random comparison fail by chance; their kernels are tested on fresh
// inputs (including constructed ties) in the CPU kernel suite.
//
//===----------------------------------------------------------------------===//

#include "IntegrationUtil.h"

#include "diffrt/Error.h"
#include "diffrt/Safetensors.h"
#include "diffrt/Session.h"

#include <gtest/gtest.h>

using namespace diffc::reference;
using namespace diffc::integration;

namespace {

struct Artifacts {
  std::string dfx, weights;
  ~Artifacts() {
    std::remove(dfx.c_str());
    std::remove(weights.c_str());
  }
};

/// Float32 sums in a different order than LibTorch's: 1e-4 relative leaves
/// a margin of ~100x over what the comparisons show (see the printed errors).
constexpr double kTolerance = 1e-4;

void checkClassConditional(const std::string &zooName, const std::string &args,
                           const Shapes &shapes, uint64_t seed, int64_t batch, int64_t channels,
                           int64_t latent, int64_t numClasses,
                           const std::function<torch::Tensor(const StateDict &, torch::Tensor,
                                                             torch::Tensor, torch::Tensor)> &reference,
                           const std::string &tag) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  Artifacts run{compileZoo(zooName, args + " --batch " + std::to_string(batch), tag), tempPath(tag + ".safetensors")};
  StateDict sd = randomStateDict(shapes, seed);
  writeStateDict(sd, run.weights);
  diffrt::Session session(diffrt::Module::load(run.dfx), diffrt::Device::cpu());
  session.loadWeights(run.weights);

  torch::Tensor x = deterministicNormal({batch, channels, latent, latent}, seed + 1);
  torch::Tensor t = (deterministicNormal({batch}, seed + 2).abs() * 300).floor();
  torch::Tensor y = torch::arange(batch, torch::kInt64).remainder(numClasses + 1); // includes the null class
  auto out = session.run("forward", {{"x", diffrt::HostTensor::floats({batch, channels, latent, latent}, toVector(x))},
                                     {"t", diffrt::HostTensor::floats({batch}, toVector(t))},
                                     {"y", diffrt::HostTensor::ints({batch}, toInts(y))}});
  torch::NoGradGuard noGrad;
  expectClose(out.at(0).f32, reference(sd, x, t, y), kTolerance, tag);
}

} // namespace

TEST(FamilyNumerics, DiT) {
  DitConfig cfg;
  cfg.inputSize = 16, cfg.hidden = 64, cfg.heads = 4, cfg.depth = 2, cfg.numClasses = 10;
  for (uint64_t seed : {freshSeed(), freshSeed()})
    checkClassConditional("dit-s/2", "--depth 2 --hidden 64 --heads 4 --latent-size 16 --num-classes 10",
                          ditShapes(cfg), seed, 3, 4, 16, 10,
                          [&](const StateDict &sd, auto x, auto t, auto y) { return ditForward(cfg, sd, x, t, y); },
                          "dit");
}

TEST(FamilyNumerics, DiTPatch4WithoutLearnedSigma) {
  DitConfig cfg;
  cfg.inputSize = 16, cfg.patch = 4, cfg.hidden = 48, cfg.heads = 3, cfg.depth = 3, cfg.numClasses = 5;
  cfg.learnSigma = false;
  checkClassConditional("dit-b/4", "--depth 3 --hidden 48 --heads 3 --latent-size 16 --num-classes 5 --learn-sigma false",
                        ditShapes(cfg), freshSeed(), 2, 4, 16, 5,
                        [&](const StateDict &sd, auto x, auto t, auto y) { return ditForward(cfg, sd, x, t, y); },
                        "dit_p4");
}

TEST(FamilyNumerics, DiTMoEPlainAttention) {
  DitMoeConfig cfg;
  cfg.base.inputSize = 16, cfg.base.hidden = 64, cfg.base.heads = 4, cfg.base.depth = 2, cfg.base.numClasses = 10;
  cfg.experts = 4;
  for (uint64_t seed : {11u, 12u})
    checkClassConditional("dit-moe-s/2-8e2a",
                          "--depth 2 --hidden 64 --heads 4 --latent-size 16 --num-classes 10 --experts 4",
                          ditMoeShapes(cfg), seed, 3, 4, 16, 10,
                          [&](const StateDict &sd, auto x, auto t, auto y) { return ditMoeForward(cfg, sd, x, t, y); },
                          "ditmoe");
}

TEST(FamilyNumerics, DiTMoEQkNormAttention) {
  DitMoeConfig cfg;
  cfg.base.inputSize = 16, cfg.base.hidden = 64, cfg.base.heads = 4, cfg.base.depth = 2, cfg.base.numClasses = 10;
  cfg.experts = 8;
  cfg.qkNorm = true;
  checkClassConditional("dit-moe-xl/2-8e2a",
                        "--depth 2 --hidden 64 --heads 4 --latent-size 16 --num-classes 10 --experts 8",
                        ditMoeShapes(cfg), 21, 2, 4, 16, 10,
                        [&](const StateDict &sd, auto x, auto t, auto y) { return ditMoeForward(cfg, sd, x, t, y); },
                        "ditmoe_qk");
}

TEST(FamilyNumerics, DiG) {
  DigConfig cfg;
  cfg.inputSize = 16, cfg.hidden = 64, cfg.heads = 2, cfg.depth = 4, cfg.numClasses = 10;
  for (uint64_t seed : {freshSeed(), freshSeed()})
    checkClassConditional("dig-s/2", "--depth 4 --hidden 64 --heads 2 --latent-size 16 --num-classes 10",
                          digShapes(cfg), seed, 2, 4, 16, 10,
                          [&](const StateDict &sd, auto x, auto t, auto y) { return digForward(cfg, sd, x, t, y); },
                          "dig");
}

namespace {

MicroDitConfig tinyMicroDit() {
  MicroDitConfig cfg;
  cfg.inputSize = 16, cfg.dim = 64, cfg.depth = 4, cfg.headDim = 16, cfg.mixerDepth = 2, cfg.mixerDim = 48;
  cfg.captionChannels = 32, cfg.captionTokens = 7, cfg.experts = 4;
  return cfg;
}

const char *kMicroArgs = "--depth 4 --hidden 64 --head-dim 16 --mixer-depth 2 --mixer-hidden 48 "
                         "--caption-channels 32 --caption-tokens 7 --latent-size 16 --experts 4";

void checkMicroDit(uint64_t seed, double maskRatio) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", mask ratio " + std::to_string(maskRatio));
  MicroDitConfig cfg = tinyMicroDit();
  int64_t batch = 2, tokens = 64, kept = static_cast<int64_t>(tokens * (1.0 - maskRatio));
  std::string args = std::string(kMicroArgs) + " --batch 2";
  if (maskRatio > 0)
    args += " --mask-ratio " + std::to_string(maskRatio);
  std::string tag = maskRatio > 0 ? "microdit_masked" : "microdit";
  Artifacts run{compileZoo("microdit-tiny/2", args, tag), tempPath(tag + ".safetensors")};
  StateDict sd = randomStateDict(microDitShapes(cfg), seed);
  writeStateDict(sd, run.weights);
  diffrt::Session session(diffrt::Module::load(run.dfx), diffrt::Device::cpu());
  session.loadWeights(run.weights);

  torch::Tensor x = deterministicNormal({batch, 4, 16, 16}, seed + 1);
  torch::Tensor cNoise = deterministicNormal({batch}, seed + 2);
  torch::Tensor captions = deterministicNormal({batch, 7, 32}, seed + 3);
  std::map<std::string, diffrt::HostTensor> feed = {
      {"x", diffrt::HostTensor::floats({batch, 4, 16, 16}, toVector(x))},
      {"t", diffrt::HostTensor::floats({batch}, toVector(cNoise))},
      {"captions", diffrt::HostTensor::floats({batch, 7, 32}, toVector(captions))}};
  std::optional<torch::Tensor> keep;
  if (maskRatio > 0) {
    keep = std::get<1>(deterministicNormal({batch, tokens}, seed + 4).sort(1)).narrow(1, 0, kept).contiguous();
    feed["keep"] = diffrt::HostTensor::ints({batch, kept}, toInts(*keep));
  }
  auto out = session.run("forward", feed);
  torch::NoGradGuard noGrad;
  expectClose(out.at(0).f32, microDitForward(cfg, sd, x, cNoise, captions, keep), kTolerance, tag);
}

} // namespace

TEST(FamilyNumerics, MicroDiT) { checkMicroDit(31, 0.0); }

TEST(FamilyNumerics, MicroDiTWithDeferredMasking) { checkMicroDit(41, 0.75); }

TEST(FamilyNumerics, CheckpointFromAnotherResolutionIsRejected) {
  // A checkpoint's pos_embed made for interpolation scale 2 (512 px) is not
  // the table of a 256 px model: loading must say so, naming pos_embed.
  DitConfig cfg;
  cfg.inputSize = 16, cfg.hidden = 64, cfg.heads = 4, cfg.depth = 1, cfg.numClasses = 10;
  Artifacts run{compileZoo("dit-s/2", "--depth 1 --hidden 64 --heads 4 --latent-size 16 --num-classes 10", "dit_pos"),
          tempPath("dit_pos.safetensors")};
  writeStateDict(randomStateDict(ditShapes(cfg), 5, 0.05, /*posInterpScale=*/2.0), run.weights);
  diffrt::Session session(diffrt::Module::load(run.dfx), diffrt::Device::cpu());
  try {
    session.loadWeights(run.weights);
    FAIL() << "a pos_embed of another resolution was accepted";
  } catch (const diffrt::Error &e) {
    EXPECT_NE(std::string(e.what()).find("'pos_embed' differs from what"), std::string::npos) << e.what();
  }
}
