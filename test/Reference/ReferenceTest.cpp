//===- ReferenceTest.cpp - tests of the LibTorch reference models ---------===//
//
// Tests of the LibTorch reference models against the specification.
//
// The references are only useful as ground truth if they are right, so every check here can fail
// for a concrete wiring mistake: parameter totals against the spec's published numbers (with the
// parameter-vs-buffer convention that reproduces each), MicroDiT's layer-wise widths against the
// spec 4.4 table, smoke/determinism runs on tiny configs, zero-initialised final layers, and
// independent cross-checks (identity blocks vs shallower models, two formulations of each MoE and
// of GLA, masking with every token kept, hand-computed sin-cos values), gradients through every
// forward, float64 runs, and the outputs of the original PyTorch code (golden/).
//
//===----------------------------------------------------------------------===//

#include "ReferenceOps.h"
#include "TestCases.h"
#include "TorchModels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

namespace diffc::reference {
namespace {

using namespace cases;

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

// Published totals are rounded to `decimals` digits of `unit`; demand exactly that rounding.
::testing::AssertionResult roundsTo(int64_t count, double unit, double published, int decimals) {
  const double factor = std::pow(10.0, decimals);
  const double mine = std::round(static_cast<double>(count) / unit * factor);
  const double theirs = std::round(published * factor);
  if (mine == theirs)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << count << " = " << static_cast<double>(count) / unit << " units, published " << published
         << " (" << decimals << " decimals)";
}
constexpr double kMillion = 1e6, kBillion = 1e9;

void expectUsable(const torch::Tensor &out, std::vector<int64_t> shape) {
  EXPECT_EQ(out.sizes(), at::IntArrayRef(shape));
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  // Random (non-zero-initialised) weights must give a visibly non-trivial output.
  EXPECT_GT(out.abs().max().item<double>(), 1e-3);
}

void expectClose(const torch::Tensor &a, const torch::Tensor &b, double tolerance) {
  ASSERT_EQ(a.sizes(), b.sizes());
  const double diff = (a - b).abs().max().item<double>();
  EXPECT_LE(diff, tolerance) << "max |a - b| = " << diff;
}

// Same, with the tolerance relative to the largest magnitude of `b`: for comparisons whose only
// expected difference is float32 summation order.
void expectRelativelyClose(const torch::Tensor &a, const torch::Tensor &b, double tolerance) {
  const double magnitude = b.abs().max().item<double>();
  ASSERT_GT(magnitude, 0.0);
  expectClose(a, b, tolerance * magnitude);
}

void zeroEntries(StateDict &sd, const std::vector<std::string> &names) {
  for (const std::string &name : names)
    sd.at(name) = torch::zeros_like(sd.at(name));
}

// (N, C, H, W) -> (N, T, p*p*C), inverse of unpatchify.
torch::Tensor patchify(const torch::Tensor &image, int64_t patch) {
  const int64_t n = image.size(0), c = image.size(1);
  const int64_t gh = image.size(2) / patch, gw = image.size(3) / patch;
  return image.reshape({n, c, gh, patch, gw, patch})
      .permute({0, 2, 4, 3, 5, 1})
      .reshape({n, gh * gw, patch * patch * c});
}

//===----------------------------------------------------------------------===//
// (1) Parameter totals of the full-size configurations
//===----------------------------------------------------------------------===//

DitConfig fullDit(int64_t hidden, int64_t depth, int64_t heads) {
  DitConfig cfg;
  cfg.hidden = hidden;
  cfg.depth = depth;
  cfg.heads = heads;
  return cfg;
}

TEST(ReferenceParameterCount, DitMatchesSpecIncludingPosEmbed) {
  EXPECT_TRUE(roundsTo(countElements(ditShapes(fullDit(384, 12, 6))), kMillion, 32.96, 2));
  EXPECT_TRUE(roundsTo(countElements(ditShapes(fullDit(768, 12, 12))), kMillion, 130.51, 2));
  EXPECT_TRUE(roundsTo(countElements(ditShapes(fullDit(1024, 24, 16))), kMillion, 458.10, 2));
  EXPECT_TRUE(roundsTo(countElements(ditShapes(fullDit(1152, 28, 16))), kMillion, 675.13, 2));
  // DiT holds pos_embed as a frozen nn.Parameter and the spec counts it: without it XL/2 would be
  // 674.83M.
  EXPECT_FALSE(roundsTo(countElements(ditShapes(fullDit(1152, 28, 16)), {"pos_embed"}), kMillion,
                        675.13, 2));
}

DitMoeConfig fullDitMoe(int64_t hidden, int64_t depth, int64_t heads, int64_t experts,
                        bool qkNorm) {
  DitMoeConfig cfg;
  cfg.base = fullDit(hidden, depth, heads);
  cfg.experts = experts;
  cfg.qkNorm = qkNorm;
  return cfg;
}

// Spec 3.4's convention: activated = total minus the (E - K) routed experts a token skips.
int64_t activated(const DitMoeConfig &cfg) {
  const int64_t d = cfg.base.hidden;
  return countElements(ditMoeShapes(cfg)) -
         cfg.base.depth * (cfg.experts - cfg.topK) * 3 * (4 * d) * d;
}

TEST(ReferenceParameterCount, DitMoeMatchesSpec) {
  // S/2 and B/2 checkpoints use timm attention; XL/2 and G/2 the q/k-norm flash variant.
  const DitMoeConfig s8 = fullDitMoe(384, 12, 6, 8, false);
  const DitMoeConfig s16 = fullDitMoe(384, 12, 6, 16, false);
  const DitMoeConfig b8 = fullDitMoe(768, 12, 12, 8, false);
  const DitMoeConfig l8 = fullDitMoe(1024, 24, 16, 8, false);
  const DitMoeConfig xl8 = fullDitMoe(1152, 28, 16, 8, true);
  const DitMoeConfig g16 = fullDitMoe(1408, 40, 16, 16, true);
  EXPECT_TRUE(roundsTo(countElements(ditMoeShapes(s8)), kMillion, 199.3, 1));
  EXPECT_TRUE(roundsTo(countElements(ditMoeShapes(s16)), kMillion, 369.2, 1));
  EXPECT_TRUE(roundsTo(countElements(ditMoeShapes(b8)), kMillion, 795.9, 1));
  EXPECT_TRUE(roundsTo(countElements(ditMoeShapes(l8)), kBillion, 2.82, 2));
  EXPECT_TRUE(roundsTo(countElements(ditMoeShapes(xl8)), kBillion, 4.17, 2));
  EXPECT_TRUE(roundsTo(countElements(ditMoeShapes(g16)), kBillion, 16.50, 2));
  // The q/k norms add only 4 * head_dim per block, invisible at the published precision.
  EXPECT_TRUE(
      roundsTo(countElements(ditMoeShapes(fullDitMoe(1152, 28, 16, 8, false))), kBillion, 4.17, 2));
  EXPECT_TRUE(roundsTo(activated(s8), kMillion, 71.9, 1));
  EXPECT_TRUE(roundsTo(activated(s16), kMillion, 71.9, 1));
  EXPECT_TRUE(roundsTo(activated(b8), kMillion, 286.3, 1));
  EXPECT_TRUE(roundsTo(activated(l8), kBillion, 1.01, 2));
  EXPECT_TRUE(roundsTo(activated(xl8), kBillion, 1.49, 2));
  EXPECT_TRUE(roundsTo(activated(g16), kBillion, 3.18, 2));
}

MicroDitConfig microDitXl() { return MicroDitConfig(); }

MicroDitConfig microDitTiny() {
  MicroDitConfig cfg;
  cfg.dim = 512;
  cfg.depth = 16;
  cfg.headDim = 32;
  cfg.mixerDepth = 4;
  cfg.mixerDim = 512;
  return cfg;
}

TEST(ReferenceParameterCount, MicroDitMatchesSpecExcludingBuffers) {
  const Shapes xl = microDitShapes(microDitXl());
  const Shapes tiny = microDitShapes(microDitTiny());
  EXPECT_TRUE(roundsTo(countElements(xl, kMicroDitBufferNames), kMillion, 1165.4, 1));
  EXPECT_TRUE(roundsTo(countElements(tiny, kMicroDitBufferNames), kMillion, 200.7, 1));
  // MicroDiT's pos_embed and mask_token are buffers, and the published totals leave them out:
  // with them XL would be 1165.70M and Tiny 200.82M.
  EXPECT_FALSE(roundsTo(countElements(xl), kMillion, 1165.4, 1));
  EXPECT_FALSE(roundsTo(countElements(tiny), kMillion, 200.7, 1));

  // Spec 4.3: the XL mixer with its projections is 186.45M, 113.2M of it routed-expert weights.
  int64_t mixer = 0, mixerExperts = 0;
  for (const auto &[name, shape] : xl) {
    if (name.rfind("patch_mixer", 0) != 0)
      continue;
    const int64_t numel = countElements({{name, shape}});
    mixer += numel;
    const bool expertWeight =
        name.size() > 7 && (name.compare(name.size() - 7, 7, ".mlp.w1") == 0 ||
                            name.compare(name.size() - 7, 7, ".mlp.w2") == 0);
    if (expertWeight && shape.size() == 3)
      mixerExperts += numel;
  }
  EXPECT_TRUE(roundsTo(mixer, kMillion, 186.45, 2));
  EXPECT_TRUE(roundsTo(mixerExperts, kMillion, 113.2, 1));
}

DigConfig fullDig(int64_t hidden, int64_t depth, int64_t heads) {
  DigConfig cfg;
  cfg.hidden = hidden;
  cfg.depth = depth;
  cfg.heads = heads;
  return cfg;
}

TEST(ReferenceParameterCount, DigMatchesSpecIncludingPosEmbed) {
  EXPECT_TRUE(roundsTo(countElements(digShapes(fullDig(384, 12, 6))), kMillion, 33.08, 2));
  EXPECT_TRUE(roundsTo(countElements(digShapes(fullDig(768, 12, 12))), kMillion, 130.75, 2));
  EXPECT_TRUE(roundsTo(countElements(digShapes(fullDig(1024, 24, 16))), kMillion, 465.02, 2));
  EXPECT_TRUE(roundsTo(countElements(digShapes(fullDig(1152, 28, 18))), kMillion, 675.95, 2));
  EXPECT_FALSE(roundsTo(countElements(digShapes(fullDig(1152, 28, 18)), {"pos_embed"}), kMillion,
                        675.95, 2));
}

//===----------------------------------------------------------------------===//
// (2) MicroDiT layer-wise scaling
//===----------------------------------------------------------------------===//

TEST(ReferenceMicroDitPlan, XlBackboneMatchesSpecTable) {
  struct Row {
    int64_t attnWidth, heads;
    bool moe;
    int64_t hidden;
  };
  // Spec 4.4 table, i = 0..27.
  const std::vector<Row> table = {
      {512, 8, false, 512},    {640, 10, true, 768},    {640, 10, false, 768},
      {640, 10, true, 1024},   {640, 10, false, 768},   {640, 10, true, 1280},
      {640, 10, false, 1024},  {768, 12, true, 1536},   {768, 12, false, 1280},
      {768, 12, true, 1792},   {768, 12, false, 1280},  {768, 12, true, 2048},
      {768, 12, false, 1536},  {768, 12, true, 2304},   {896, 14, false, 1792},
      {896, 14, true, 2560},   {896, 14, false, 1792},  {896, 14, true, 2816},
      {896, 14, false, 2048},  {896, 14, true, 3072},   {896, 14, false, 2304},
      {1024, 16, true, 3328},  {1024, 16, false, 2304}, {1024, 16, true, 3584},
      {1024, 16, false, 2560}, {1024, 16, true, 3840},  {1024, 16, false, 2816},
      {1024, 16, false, 2816}};
  const std::vector<MicroDitBlockPlan> plan = microDitBackbonePlan(microDitXl());
  ASSERT_EQ(plan.size(), table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    SCOPED_TRACE("block " + std::to_string(i));
    EXPECT_EQ(plan[i].width, 1024);
    EXPECT_EQ(plan[i].attnWidth, table[i].attnWidth);
    EXPECT_EQ(plan[i].selfHeads, table[i].heads);
    EXPECT_EQ(plan[i].crossHeads, 16);
    EXPECT_EQ(plan[i].moe, table[i].moe);
    EXPECT_EQ(plan[i].ffnHidden, table[i].hidden);
    // r(i) = lo + (hi - lo) i / (L - 1), up to float64 rounding (the spec prints 3 decimals).
    EXPECT_NEAR(plan[i].qkvRatio, 0.5 + 0.5 * double(i) / 27.0, 5e-16);
    EXPECT_NEAR(plan[i].mlpRatio, 0.5 + 3.5 * double(i) / 27.0, 5e-15);
  }
  // numpy.linspace pins the end point, which is what makes block 27 exactly full width.
  EXPECT_EQ(plan.back().qkvRatio, 1.0);
  EXPECT_EQ(plan.back().mlpRatio, 4.0);
}

TEST(ReferenceMicroDitPlan, MixersMatchSpec) {
  const std::vector<MicroDitBlockPlan> xl = microDitMixerPlan(microDitXl());
  ASSERT_EQ(xl.size(), 6u);
  for (size_t i = 0; i < xl.size(); ++i) {
    SCOPED_TRACE("XL mixer block " + std::to_string(i));
    EXPECT_EQ(xl[i].width, 768);
    EXPECT_EQ(xl[i].attnWidth, 768);
    EXPECT_EQ(xl[i].selfHeads, 12);
    EXPECT_EQ(xl[i].crossHeads, 12);
    EXPECT_EQ(xl[i].moe, i % 2 == 1); // blocks 1, 3, 5
    EXPECT_EQ(xl[i].ffnHidden, xl[i].moe ? 3072 : 2048);
  }
  const std::vector<MicroDitBlockPlan> tiny = microDitMixerPlan(microDitTiny());
  ASSERT_EQ(tiny.size(), 4u);
  for (size_t i = 0; i < tiny.size(); ++i) {
    EXPECT_EQ(tiny[i].moe, i % 2 == 1); // blocks 1, 3
    EXPECT_EQ(tiny[i].selfHeads, 16);
  }
  // Equal widths: no mixer projections in the layout.
  EXPECT_EQ(microDitShapes(microDitTiny()).count("patch_mixer_map_xin.1.weight"), 0u);
  EXPECT_EQ(microDitShapes(microDitXl()).count("patch_mixer_map_xin.1.weight"), 1u);
}

TEST(ReferenceMicroDitPlan, NumpyLinspace) {
  const std::vector<double> v = numpyLinspace(0.5, 4.0, 28);
  ASSERT_EQ(v.size(), 28u);
  EXPECT_EQ(v[0], 0.5);
  EXPECT_EQ(v[1], 1.0 * (3.5 / 27.0) + 0.5);
  EXPECT_EQ(v[27], 4.0);
  EXPECT_EQ(numpyLinspace(2.0, 3.0, 1), std::vector<double>{2.0});
  EXPECT_TRUE(numpyLinspace(2.0, 3.0, 0).empty());
}

//===----------------------------------------------------------------------===//
// (3) Forwards on tiny configs: shape, finiteness, determinism
//===----------------------------------------------------------------------===//

TEST(ReferenceForward, Dit) {
  const DitConfig cfg = tinyDit();
  const StateDict sd = randomStateDict(ditShapes(cfg), 1);
  const ClassInputs in = classInputs(2, 4, 16, cfg.numClasses);
  const torch::Tensor out = ditForward(cfg, sd, in.x, in.t, in.y);
  expectUsable(out, {2, 8, 16, 16});
  EXPECT_TRUE(torch::equal(out, ditForward(cfg, sd, in.x, in.t, in.y)));
}

TEST(ReferenceForward, DitWithoutLearnedSigma) {
  DitConfig cfg = tinyDit();
  cfg.learnSigma = false;
  const StateDict sd = randomStateDict(ditShapes(cfg), 1);
  const ClassInputs in = classInputs(2, 4, 16, cfg.numClasses);
  expectUsable(ditForward(cfg, sd, in.x, in.t, in.y), {2, 4, 16, 16});
}

TEST(ReferenceForward, DitMoe) {
  for (bool qkNorm : {false, true}) {
    SCOPED_TRACE(qkNorm ? "q/k-norm attention" : "timm attention");
    const DitMoeConfig cfg = tinyDitMoe(qkNorm);
    const StateDict sd = randomStateDict(ditMoeShapes(cfg), 2);
    const ClassInputs in = classInputs(2, 4, 16, cfg.base.numClasses);
    const torch::Tensor out = ditMoeForward(cfg, sd, in.x, in.t, in.y);
    expectUsable(out, {2, 8, 16, 16});
    EXPECT_TRUE(torch::equal(out, ditMoeForward(cfg, sd, in.x, in.t, in.y)));
  }
}

TEST(ReferenceForward, MicroDit) {
  MicroDitConfig sameWidth = tinyMicroDit();
  sameWidth.mixerDim = sameWidth.dim;
  for (const MicroDitConfig &cfg : {tinyMicroDit(), sameWidth}) {
    SCOPED_TRACE("mixerDim " + std::to_string(cfg.mixerDim));
    const StateDict sd = randomStateDict(microDitShapes(cfg), 3);
    const MicroInputs in = microInputs(cfg, 2);
    const torch::Tensor out = microDitForward(cfg, sd, in.x, in.cNoise, in.captions, std::nullopt);
    expectUsable(out, {2, 4, 16, 16});
    EXPECT_TRUE(
        torch::equal(out, microDitForward(cfg, sd, in.x, in.cNoise, in.captions, std::nullopt)));
    // The reference's (N, 1, L, C) caption layout and a broadcast noise level are accepted too.
    const torch::Tensor broadcast = microDitForward(cfg, sd, in.x, in.cNoise.narrow(0, 0, 1),
                                                    in.captions.unsqueeze(1), std::nullopt);
    EXPECT_TRUE(torch::equal(broadcast.narrow(0, 0, 1), out.narrow(0, 0, 1)));
  }
}

TEST(ReferenceForward, Dig) {
  const DigConfig cfg = tinyDig();
  const StateDict sd = randomStateDict(digShapes(cfg), 4);
  const ClassInputs in = classInputs(2, 4, 16, cfg.numClasses);
  const torch::Tensor out = digForward(cfg, sd, in.x, in.t, in.y);
  expectUsable(out, {2, 8, 16, 16});
  EXPECT_TRUE(torch::equal(out, digForward(cfg, sd, in.x, in.t, in.y)));
}

StateDict toDouble(const StateDict &sd) {
  StateDict out;
  for (const auto &[name, tensor] : sd)
    out[name] = tensor.to(torch::kFloat64);
  return out;
}

// Double precision is what finite-difference gradient checks need; it must be the same model.
TEST(ReferenceForward, Float64MatchesFloat32) {
  const ClassInputs in = classInputs(2, 4, 16, 10);
  const torch::Tensor x64 = in.x.to(torch::kFloat64);
  {
    const StateDict sd = randomStateDict(ditShapes(tinyDit()), 40);
    const torch::Tensor out = ditForward(tinyDit(), toDouble(sd), x64, in.t, in.y);
    EXPECT_EQ(out.scalar_type(), torch::kFloat64);
    expectRelativelyClose(out.to(torch::kFloat32), ditForward(tinyDit(), sd, in.x, in.t, in.y),
                          1e-5);
  }
  {
    const DitMoeConfig cfg = tinyDitMoe(true);
    const StateDict sd = randomStateDict(ditMoeShapes(cfg), 41);
    expectRelativelyClose(ditMoeForward(cfg, toDouble(sd), x64, in.t, in.y).to(torch::kFloat32),
                          ditMoeForward(cfg, sd, in.x, in.t, in.y), 1e-5);
  }
  {
    const StateDict sd = randomStateDict(digShapes(tinyDig()), 42);
    expectRelativelyClose(digForward(tinyDig(), toDouble(sd), x64, in.t, in.y).to(torch::kFloat32),
                          digForward(tinyDig(), sd, in.x, in.t, in.y), 1e-5);
  }
  {
    const MicroDitConfig cfg = tinyMicroDit();
    const StateDict sd = randomStateDict(microDitShapes(cfg), 43);
    const MicroInputs mi = microInputs(cfg, 2);
    const torch::Tensor kept = seededTokenSubset(2, 64, 16, 44);
    expectRelativelyClose(microDitForward(cfg, toDouble(sd), mi.x.to(torch::kFloat64), mi.cNoise,
                                          mi.captions.to(torch::kFloat64), kept)
                              .to(torch::kFloat32),
                          microDitForward(cfg, sd, mi.x, mi.cNoise, mi.captions, kept), 1e-5);
  }
}

TEST(ReferenceForward, RejectsMismatchedStateDicts) {
  const DitConfig cfg = tinyDit();
  const StateDict good = randomStateDict(ditShapes(cfg), 5);
  const ClassInputs in = classInputs(2, 4, 16, cfg.numClasses);

  StateDict missing = good;
  missing.erase("blocks.1.attn.proj.bias");
  EXPECT_THROW(ditForward(cfg, missing, in.x, in.t, in.y), std::invalid_argument);

  StateDict misshapen = good;
  misshapen.at("blocks.0.mlp.fc1.weight") = torch::zeros({64, 64});
  EXPECT_THROW(ditForward(cfg, misshapen, in.x, in.t, in.y), std::invalid_argument);

  StateDict extra = good;
  extra["blocks.0.mlp.fc3.weight"] = torch::zeros({4});
  EXPECT_THROW(ditForward(cfg, extra, in.x, in.t, in.y), std::invalid_argument);

  // A DiT-MoE checkpoint of the other attention layout must not load.
  const StateDict timm = randomStateDict(ditMoeShapes(tinyDitMoe(false)), 5);
  EXPECT_THROW(ditMoeForward(tinyDitMoe(true), timm, in.x, in.t, in.y), std::invalid_argument);

  EXPECT_THROW(ditForward(cfg, good, in.x, in.t, torch::full({2}, 11, torch::kInt64)),
               std::invalid_argument);
}

//===----------------------------------------------------------------------===//
// (4) Zero-initialised output layer gives exactly zero
//===----------------------------------------------------------------------===//

const std::vector<std::string> kFinalLinear = {"final_layer.linear.weight",
                                               "final_layer.linear.bias"};

TEST(ReferenceZeroInit, FinalLinearZeroGivesZeroOutput) {
  const ClassInputs in = classInputs(2, 4, 16, 10);
  {
    const DitConfig cfg = tinyDit();
    StateDict sd = randomStateDict(ditShapes(cfg), 6);
    zeroEntries(sd, kFinalLinear);
    EXPECT_EQ(torch::count_nonzero(ditForward(cfg, sd, in.x, in.t, in.y)).item<int64_t>(), 0);
  }
  for (bool qkNorm : {false, true}) {
    const DitMoeConfig cfg = tinyDitMoe(qkNorm);
    StateDict sd = randomStateDict(ditMoeShapes(cfg), 6);
    zeroEntries(sd, kFinalLinear);
    EXPECT_EQ(torch::count_nonzero(ditMoeForward(cfg, sd, in.x, in.t, in.y)).item<int64_t>(), 0);
  }
  {
    const DigConfig cfg = tinyDig();
    StateDict sd = randomStateDict(digShapes(cfg), 6);
    zeroEntries(sd, kFinalLinear);
    EXPECT_EQ(torch::count_nonzero(digForward(cfg, sd, in.x, in.t, in.y)).item<int64_t>(), 0);
  }
  {
    const MicroDitConfig cfg = tinyMicroDit();
    StateDict sd = randomStateDict(microDitShapes(cfg), 6);
    zeroEntries(sd, kFinalLinear);
    const MicroInputs mi = microInputs(cfg, 2);
    EXPECT_EQ(
        torch::count_nonzero(microDitForward(cfg, sd, mi.x, mi.cNoise, mi.captions, std::nullopt))
            .item<int64_t>(),
        0);
  }
}

//===----------------------------------------------------------------------===//
// (5) Independent cross-checks
//===----------------------------------------------------------------------===//

StateDict withoutBlocks(const StateDict &sd) {
  StateDict out;
  for (const auto &[name, tensor] : sd)
    if (name.rfind("blocks.", 0) != 0)
      out[name] = tensor;
  return out;
}

std::vector<std::string> adaLnEntries(int64_t depth) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < depth; ++i) {
    names.push_back("blocks." + std::to_string(i) + ".adaLN_modulation.1.weight");
    names.push_back("blocks." + std::to_string(i) + ".adaLN_modulation.1.bias");
  }
  return names;
}

TEST(ReferenceCrossCheck, DitZeroGatedBlocksAreIdentities) {
  const DitConfig cfg = tinyDit(3);
  StateDict sd = randomStateDict(ditShapes(cfg), 7);
  const ClassInputs in = classInputs(2, 4, 16, cfg.numClasses);
  const torch::Tensor full = ditForward(cfg, sd, in.x, in.t, in.y);
  zeroEntries(sd, adaLnEntries(cfg.depth));
  const torch::Tensor gated = ditForward(cfg, sd, in.x, in.t, in.y);
  const torch::Tensor shallow = ditForward(tinyDit(0), withoutBlocks(sd), in.x, in.t, in.y);
  EXPECT_TRUE(torch::equal(gated, shallow));
  // ...and the blocks do matter when their gates are open.
  EXPECT_GT((full - shallow).abs().max().item<double>(), 1e-3);
}

// DiG with identity blocks (closed gates, identity depth-wise conv) only permutes tokens, so the
// SREM schedule is observable: depth 1 reverses the scan, depth 2 transposes the grid, depth 4
// is back to row-major (spec 5.3).
TEST(ReferenceCrossCheck, DigScanOrderSchedule) {
  const ClassInputs in = classInputs(2, 4, 16, 10);
  auto identityBlocks = [](const DigConfig &cfg) {
    StateDict sd = randomStateDict(digShapes(cfg), 8);
    zeroEntries(sd, adaLnEntries(cfg.depth));
    for (int64_t i = 0; i < cfg.depth; ++i) {
      const std::string p = "blocks." + std::to_string(i) + ".dw_conv.";
      torch::Tensor kernel = torch::zeros_like(sd.at(p + "weight"));
      kernel.select(2, 1).select(2, 1).fill_(1);
      sd.at(p + "weight") = kernel;
      sd.at(p + "bias") = torch::zeros_like(sd.at(p + "bias"));
    }
    return sd;
  };
  const StateDict deep = identityBlocks(tinyDig(4));
  const torch::Tensor reference = digForward(tinyDig(0), withoutBlocks(deep), in.x, in.t, in.y);
  const int64_t side = 8, patch = 2;
  const torch::Tensor grid = reference.reshape({2, 8, side, patch, side, patch});
  const torch::Tensor flipped = grid.flip({2, 4}).reshape({2, 8, 16, 16});
  const torch::Tensor transposed = grid.permute({0, 1, 4, 3, 2, 5}).reshape({2, 8, 16, 16});

  // Permuted rows may land on different GEMM micro-kernels, so only rounding-level differences are
  // tolerated; a wrong order would differ at the scale of the output itself.
  expectRelativelyClose(digForward(tinyDig(4), deep, in.x, in.t, in.y), reference, 1e-6);
  const DigConfig one = tinyDig(1), two = tinyDig(2);
  expectRelativelyClose(digForward(one, identityBlocks(one), in.x, in.t, in.y), flipped, 1e-6);
  expectRelativelyClose(digForward(two, identityBlocks(two), in.x, in.t, in.y), transposed, 1e-6);
  // Each check is sensitive to the order: the three expected images are pairwise different.
  EXPECT_GT((flipped - transposed).abs().max().item<double>(), 1e-3);
  EXPECT_GT((flipped - reference).abs().max().item<double>(), 1e-3);
}

struct GlaInputs {
  torch::Tensor q, k, v, gk;
};

GlaInputs glaInputs(int64_t steps, double gateSpread, uint64_t seed) {
  const int64_t n = 2, heads = 3, dk = 8, dv = 12;
  return {seededRandn({n, heads, steps, dk}, seed), seededRandn({n, heads, steps, dk}, seed + 1),
          seededRandn({n, heads, steps, dv}, seed + 2),
          torch::log_sigmoid(seededRandn({n, heads, steps, dk}, seed + 3) * gateSpread) / 16.0};
}

TEST(ReferenceCrossCheck, GlaChunkedMatchesRecurrence) {
  // T not a multiple of the chunk; DiG's gate statistics and much stronger decays.
  for (double spread : {1.0, 40.0}) {
    SCOPED_TRACE("gate spread " + std::to_string(spread));
    const GlaInputs in = glaInputs(37, spread, 300);
    const torch::Tensor recurrent = glaRecurrent(in.q, in.k, in.v, in.gk);
    EXPECT_EQ(recurrent.sizes(), at::IntArrayRef({2, 3, 37, 12}));
    expectClose(glaChunked(in.q, in.k, in.v, in.gk, 16), recurrent, 1e-5);
    expectClose(glaChunked(in.q, in.k, in.v, in.gk, 5), recurrent, 1e-5);
  }
}

TEST(ReferenceCrossCheck, GlaIsCausalAndInclusive) {
  const GlaInputs in = glaInputs(20, 1.0, 310);
  const torch::Tensor base = glaRecurrent(in.q, in.k, in.v, in.gk);
  // Changing token 12 leaves outputs 0..11 untouched and changes output 12 itself.
  torch::Tensor v2 = in.v.clone();
  v2.select(2, 12).add_(1.0);
  const torch::Tensor changed = glaRecurrent(in.q, in.k, v2, in.gk);
  EXPECT_TRUE(torch::equal(changed.narrow(2, 0, 12), base.narrow(2, 0, 12)));
  EXPECT_GT((changed.select(2, 12) - base.select(2, 12)).abs().max().item<double>(), 1e-3);
  // Token 0 sees only itself: o_0 = dk^-1/2 (q_0 . k_0) v_0.
  const torch::Tensor first =
      (in.q.select(2, 0) * in.k.select(2, 0)).sum(-1, true) * in.v.select(2, 0) / std::sqrt(8.0);
  expectClose(base.select(2, 0), first, 1e-6);
}

// Dense formulation of DiT-MoE routing: every expert on every token, weighted by a routing matrix
// that holds the top-k softmax probabilities and zeros elsewhere.
torch::Tensor denseSparseMoe(const DitMoeConfig &cfg, const StateDict &sd,
                             const std::string &prefix, const torch::Tensor &u) {
  auto swiglu = [&](const std::string &p, const torch::Tensor &x) {
    return torch::linear(torch::silu(torch::linear(x, sd.at(p + ".gate_proj.weight"))) *
                             torch::linear(x, sd.at(p + ".up_proj.weight")),
                         sd.at(p + ".down_proj.weight"));
  };
  const torch::Tensor tokens = u.reshape({-1, u.size(2)});
  const torch::Tensor probs =
      torch::softmax(torch::matmul(tokens, sd.at(prefix + ".gate.weight").t()), -1);
  auto [weights, ids] = torch::topk(probs, cfg.topK, -1);
  if (cfg.normalizeTopK)
    weights = weights / (weights.sum(-1, true) + 1e-20);
  const torch::Tensor routing = torch::zeros_like(probs).scatter(1, ids, weights);
  torch::Tensor out = swiglu(prefix + ".shared_experts", tokens);
  for (int64_t e = 0; e < cfg.experts; ++e)
    out = out + routing.narrow(1, e, 1) * swiglu(prefix + ".experts." + std::to_string(e), tokens);
  return out.reshape(u.sizes());
}

TEST(ReferenceCrossCheck, DitMoeRoutingMatchesDenseFormulation) {
  for (bool normalize : {false, true}) {
    SCOPED_TRACE(normalize ? "renormalised top-k" : "raw top-k");
    DitMoeConfig cfg = tinyDitMoe(false);
    cfg.normalizeTopK = normalize;
    const StateDict sd = randomStateDict(ditMoeShapes(cfg), 9, 0.3);
    const torch::Tensor u = seededRandn({2, 64, 64}, 400);
    expectRelativelyClose(ditMoeSparseMoe(cfg, sd, "blocks.1.moe", u),
                          denseSparseMoe(cfg, sd, "blocks.1.moe", u), 1e-6);
  }
}

// The reference's own formulation of expert choice: one-hot dispatch/combine tensors and einsums.
torch::Tensor oneHotExpertChoice(const MicroDitConfig &cfg, const StateDict &sd,
                                 const std::string &prefix, const torch::Tensor &x) {
  const int64_t t = x.size(1);
  const auto capacity = static_cast<int64_t>(cfg.expertCapacity * double(t) / double(cfg.experts));
  const torch::Tensor probs =
      torch::softmax(torch::matmul(x, sd.at(prefix + ".gate.weight").t()), -1);
  auto [gates, picks] = torch::topk(probs.permute({0, 2, 1}), capacity, -1);
  const torch::Tensor dispatch = torch::one_hot(picks, t).to(x.scalar_type()); // (N, E, k, T)
  torch::Tensor h = torch::einsum("nekt,ntd->nekd", {dispatch, x});
  h = torch::gelu(torch::einsum("nekd,edf->nekf", {h, sd.at(prefix + ".w1")}));
  h = torch::einsum("nekf,efd->nekd", {h, sd.at(prefix + ".w2")}) * gates.unsqueeze(-1);
  return torch::einsum("nekt,nekd->ntd", {dispatch, h});
}

TEST(ReferenceCrossCheck, MicroDitExpertChoiceMatchesOneHotFormulation) {
  const MicroDitConfig cfg = tinyMicroDit();
  const StateDict sd = randomStateDict(microDitShapes(cfg), 10, 0.3);
  for (int64_t tokens : {64, 16, 9}) {
    SCOPED_TRACE(std::to_string(tokens) + " tokens");
    const torch::Tensor x = seededRandn({2, tokens, 64}, 500 + tokens);
    expectRelativelyClose(microDitExpertChoiceMoe(cfg, sd, "blocks.1.mlp", x),
                          oneHotExpertChoice(cfg, sd, "blocks.1.mlp", x), 1e-6);
  }
}

TEST(ReferenceCrossCheck, MicroDitKeepingAllTokensEqualsUnmasked) {
  const MicroDitConfig cfg = tinyMicroDit();
  const StateDict sd = randomStateDict(microDitShapes(cfg), 11);
  const MicroInputs in = microInputs(cfg, 2);
  const torch::Tensor unmasked =
      microDitForward(cfg, sd, in.x, in.cNoise, in.captions, std::nullopt);
  const torch::Tensor inOrder = torch::arange(64, torch::kInt64).unsqueeze(0).repeat({2, 1});
  EXPECT_TRUE(
      torch::equal(microDitForward(cfg, sd, in.x, in.cNoise, in.captions, inOrder), unmasked));
  // After the mixer nothing depends on token order (no positions, per-sample expert choice over a
  // set), so a shuffled full keep-list must scatter back to the same image up to rounding.
  const torch::Tensor shuffled = seededTokenSubset(2, 64, 64, 600);
  expectClose(microDitForward(cfg, sd, in.x, in.cNoise, in.captions, shuffled), unmasked, 1e-5);
}

TEST(ReferenceCrossCheck, MicroDitMaskedTokensAreZero) {
  const MicroDitConfig cfg = tinyMicroDit();
  const StateDict sd = randomStateDict(microDitShapes(cfg), 12);
  const MicroInputs in = microInputs(cfg, 2);
  const torch::Tensor kept = seededTokenSubset(2, 64, 16, 700);
  const torch::Tensor tokens =
      patchify(microDitForward(cfg, sd, in.x, in.cNoise, in.captions, kept), cfg.patch);
  const torch::Tensor isKept = torch::zeros({2, 64}, torch::kBool).scatter(1, kept, true);
  const torch::Tensor perToken = tokens.abs().amax(-1);
  EXPECT_EQ(torch::count_nonzero(perToken.masked_select(isKept.logical_not())).item<int64_t>(), 0);
  EXPECT_GT(perToken.masked_select(isKept).min().item<double>(), 0.0);

  EXPECT_THROW(
      microDitForward(cfg, sd, in.x, in.cNoise, in.captions, torch::zeros({2, 4}, torch::kInt64)),
      std::invalid_argument);
}

TEST(ReferenceCrossCheck, SincosTable) {
  const torch::Tensor table = sincosPosEmbed(4, 4, 16, 1.0);
  ASSERT_EQ(table.sizes(), at::IntArrayRef({16, 16}));
  EXPECT_EQ(table.scalar_type(), torch::kFloat32);
  // Token (0, 0): sin 0 = 0 and cos 0 = 1 in each half.
  const std::vector<float> first = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1};
  EXPECT_TRUE(torch::equal(table[0], torch::tensor(first)));
  // Token (r = 2, c = 3) = index 11, omega = 1, 0.1, 0.01, 0.001: columns first, then rows.
  const torch::Tensor row = table[2 * 4 + 3];
  auto value = [&](int64_t i) { return row[i].item<float>(); };
  EXPECT_FLOAT_EQ(value(0), 0.14112000805986721f);   // sin(3)
  EXPECT_FLOAT_EQ(value(1), 0.29552020666133955f);   // sin(0.3)
  EXPECT_FLOAT_EQ(value(3), 0.0029999955000020f);    // sin(0.003)
  EXPECT_FLOAT_EQ(value(4), -0.98999249660044542f);  // cos(3)
  EXPECT_FLOAT_EQ(value(8), 0.90929742682568170f);   // sin(2)
  EXPECT_FLOAT_EQ(value(12), -0.41614683654714241f); // cos(2)
  EXPECT_FLOAT_EQ(value(13), 0.98006657784124163f);  // cos(0.2)
  // MicroDiT's interpolation scale 2 halves the positions: column 3 sits at 1.5.
  const torch::Tensor scaled = sincosPosEmbed(4, 4, 16, 2.0);
  EXPECT_FLOAT_EQ(scaled[3][0].item<float>(), 0.99749498660405443f); // sin(1.5)
  EXPECT_FLOAT_EQ(scaled[3][4].item<float>(), 0.07073720166770291f); // cos(1.5)

  // The random state dicts carry the exact table, with MicroDiT's scale passed through.
  const StateDict dit = randomStateDict(ditShapes(tinyDit()), 13);
  EXPECT_TRUE(torch::equal(dit.at("pos_embed"), sincosPosEmbed(8, 8, 64, 1.0).unsqueeze(0)));
  const StateDict micro = randomStateDict(microDitShapes(tinyMicroDit()), 13, 0.05, 2.0);
  EXPECT_TRUE(torch::equal(micro.at("pos_embed"), sincosPosEmbed(8, 8, 64, 2.0).unsqueeze(0)));
  EXPECT_EQ(torch::count_nonzero(micro.at("mask_token")).item<int64_t>(), 0);
}

TEST(ReferenceCrossCheck, TimestepFeatures) {
  // dim 4: half 2, frequencies 1 and 10000^-1/2 = 0.01; [cos, cos, sin, sin].
  const torch::Tensor f =
      detail::timestepFeatures(torch::tensor({0.0f, 1.0f, 250.0f}), 4, torch::kFloat32);
  EXPECT_TRUE(torch::equal(f[0], torch::tensor({1.0f, 1.0f, 0.0f, 0.0f})));
  EXPECT_FLOAT_EQ(f[1][0].item<float>(), 0.54030230586813977f); // cos(1)
  EXPECT_FLOAT_EQ(f[1][1].item<float>(), 0.99995000041666526f); // cos(0.01)
  EXPECT_FLOAT_EQ(f[1][2].item<float>(), 0.84147098480789650f); // sin(1)
  // 250 * float32(0.01) is not exactly 2.5, hence the looser bound.
  EXPECT_NEAR(f[2][3].item<float>(), 0.59847214410395655, 1e-6); // sin(2.5)
  // Odd widths are zero-padded at the end.
  const torch::Tensor odd = detail::timestepFeatures(torch::tensor({1.0f}), 5, torch::kFloat32);
  EXPECT_EQ(odd.size(1), 5);
  EXPECT_EQ(odd[0][4].item<float>(), 0.0f);
}

TEST(ReferenceCrossCheck, DeterministicNormalMoments) {
  const torch::Tensor z = deterministicNormal({100001}, 42).to(torch::kFloat64);
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(z.std().item<double>(), 1.0, 0.01);
  EXPECT_NEAR((z.abs() < 1.0).to(torch::kFloat64).mean().item<double>(), 0.6827, 0.005);
  EXPECT_TRUE(torch::equal(deterministicNormal({7}, 42),
                           deterministicNormal({100001}, 42).narrow(0, 0, 7)));
  EXPECT_FALSE(torch::equal(deterministicNormal({7}, 42), deterministicNormal({7}, 43)));
}

TEST(ReferenceCrossCheck, RandomStateDictConventions) {
  const Shapes shapes = digShapes(tinyDig(1));
  const StateDict a = randomStateDict(shapes, 14), b = randomStateDict(shapes, 14);
  const StateDict c = randomStateDict(shapes, 15);
  ASSERT_EQ(a.size(), shapes.size());
  for (const auto &[name, tensor] : a) {
    EXPECT_TRUE(torch::equal(tensor, b.at(name))) << name;
    if (name != "pos_embed") {
      EXPECT_FALSE(torch::equal(tensor, c.at(name))) << name;
    }
  }
  // Entries are seeded by name: a different layout leaves shared entries unchanged.
  EXPECT_TRUE(
      torch::equal(a.at("blocks.0.attn.q_proj.weight"),
                   randomStateDict(digShapes(tinyDig(3)), 14).at("blocks.0.attn.q_proj.weight")));
  const double normMean = a.at("blocks.0.attn.g_norm_swish_gate.weight").mean().item<double>();
  EXPECT_NEAR(normMean, 1.0, 0.05);
  const torch::Tensor conv = a.at("blocks.0.dw_conv.weight");
  EXPECT_NEAR(conv.select(2, 1).select(2, 1).mean().item<double>(), 1.0, 0.05);
  EXPECT_NEAR(conv.select(2, 0).mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(a.at("blocks.0.attn.o_proj.weight").std().item<double>(), 0.05, 0.005);
}

//===----------------------------------------------------------------------===//
// Autograd: every entry receives a finite, non-zero gradient through each forward
//===----------------------------------------------------------------------===//

StateDict trainable(const StateDict &sd) {
  StateDict out;
  for (const auto &[name, tensor] : sd)
    out[name] = tensor.clone().set_requires_grad(true);
  return out;
}

void expectGradients(const StateDict &sd, const torch::Tensor &out) {
  // A random linear probe rather than a squared norm, whose gradient would vanish wherever the
  // output is zero (e.g. at MicroDiT's masked tokens, which carry mask_token).
  (out * seededRandn(out.sizes().vec(), 99)).sum().backward();
  for (const auto &[name, tensor] : sd) {
    const torch::Tensor &grad = tensor.grad();
    ASSERT_TRUE(grad.defined()) << name << " received no gradient";
    EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << name;
    EXPECT_GT(grad.abs().max().item<double>(), 0.0) << name;
  }
}

TEST(ReferenceAutograd, GradientsReachEveryWeight) {
  const ClassInputs in = classInputs(2, 4, 16, 10);
  {
    SCOPED_TRACE("DiT");
    const StateDict sd = trainable(randomStateDict(ditShapes(tinyDit()), 30));
    expectGradients(sd, ditForward(tinyDit(), sd, in.x, in.t, in.y));
  }
  for (bool qkNorm : {false, true}) {
    SCOPED_TRACE(qkNorm ? "DiT-MoE, q/k-norm attention" : "DiT-MoE, timm attention");
    const DitMoeConfig cfg = tinyDitMoe(qkNorm);
    const StateDict sd = trainable(randomStateDict(ditMoeShapes(cfg), 31));
    expectGradients(sd, ditMoeForward(cfg, sd, in.x, in.t, in.y));
  }
  {
    SCOPED_TRACE("DiG");
    const StateDict sd = trainable(randomStateDict(digShapes(tinyDig()), 32));
    expectGradients(sd, digForward(tinyDig(), sd, in.x, in.t, in.y));
  }
  {
    SCOPED_TRACE("MicroDiT, masked");
    const MicroDitConfig cfg = tinyMicroDit();
    const StateDict sd = trainable(randomStateDict(microDitShapes(cfg), 33));
    const MicroInputs mi = microInputs(cfg, 2);
    const torch::Tensor kept = seededTokenSubset(2, 64, 16, 34);
    expectGradients(sd, microDitForward(cfg, sd, mi.x, mi.cNoise, mi.captions, kept));
  }
}

//===----------------------------------------------------------------------===//
// (6) Golden outputs of the original PyTorch code (golden/make_golden.py)
//===----------------------------------------------------------------------===//

// Raw little-endian float32 in C order, as make_golden.py writes it.
torch::Tensor readGolden(const std::string &name, at::IntArrayRef shape) {
  const std::string path = std::string(DIFFC_REFERENCE_GOLDEN_DIR) + "/" + name + ".f32";
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file)
    throw std::runtime_error("cannot open " + path);
  torch::Tensor out = torch::empty(shape, torch::kFloat32);
  const auto bytes = static_cast<std::streamsize>(out.numel() * sizeof(float));
  if (file.tellg() != bytes)
    throw std::runtime_error(path + " does not hold a tensor of the expected size");
  file.seekg(0);
  file.read(static_cast<char *>(out.data_ptr()), bytes);
  return out;
}

// The originals ran in float32 on a different PyTorch build, so summation order differs; a wiring
// or convention error shows up at the scale of the output itself.
constexpr double kGoldenTolerance = 1e-5;

// One test for all cases keeps the process count (and LibTorch start-ups) down; the trace names
// the failing case.
TEST(ReferenceGolden, MatchesOriginalPyTorchCode) {
  const std::vector<GoldenCase> all = goldenCases();
  // dit, ditmoe_{timm,qknorm}, dig_depth{4,6}, microdit{,_samewidth}{,_masked}
  EXPECT_EQ(all.size(), 9u);
  for (const GoldenCase &c : all) {
    SCOPED_TRACE("golden case " + c.name);
    const torch::Tensor out = c.run();
    expectRelativelyClose(out, readGolden(c.name, out.sizes()), kGoldenTolerance);
  }
}

} // namespace
} // namespace diffc::reference
