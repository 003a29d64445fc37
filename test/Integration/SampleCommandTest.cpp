//===- SampleCommandTest.cpp - diffc sample end to end on the CPU ----------===//
//
// Runs `diffc sample` on tiny compiled models of each sampler family with
// random weights: the PNG grid has the right geometry, the raw samples are
// reproducible from the seed and change with it, guidance changes them, and
// misuse gets a clear error. (Image quality needs trained weights; the
// sampler formulas are tested in the runtime's sampling suite.)
//
//===----------------------------------------------------------------------===//

#include "IntegrationUtil.h"

#include "diffrt/Png.h"
#include "diffrt/Safetensors.h"

#include <gtest/gtest.h>

#include <memory>

using namespace diffc::reference;
using namespace diffc::integration;

namespace {

/// A compiled tiny model with random weights.
struct Model {
  std::string dfx, weights;
  Model(const std::string &zoo, const std::string &args, const Shapes &shapes, const std::string &tag)
      : dfx(tempPath(tag + ".dfx")), weights(tempPath(tag + ".safetensors")) {
    std::string mlir = tempPath(tag + ".mlir");
    EXPECT_EQ(shell(diffcBinary() + " import " + zoo + " " + args + " -o " + mlir).first, 0);
    EXPECT_EQ(shell(diffcBinary() + " compile " + mlir + " -o " + dfx).first, 0);
    std::remove(mlir.c_str());
    writeStateDict(randomStateDict(shapes, 3), weights);
  }
  ~Model() {
    std::remove(dfx.c_str());
    std::remove(weights.c_str());
  }
  std::pair<int, std::string> sample(const std::string &options, const std::string &png,
                                     const std::string &raw) const {
    return shell(diffcBinary() + " sample " + dfx + " --weights " + weights + " --quiet -o " + png +
                 (raw.empty() ? "" : " --raw " + raw) + " " + options);
  }
};

std::vector<float> samplesOf(const std::string &raw) {
  return diffrt::SafetensorsFile::open(raw).readF32("samples");
}

DitConfig tinyDit() {
  DitConfig cfg;
  cfg.inputSize = 8, cfg.hidden = 32, cfg.heads = 2, cfg.depth = 1, cfg.numClasses = 10;
  return cfg;
}
const char *kDitArgs = "--depth 1 --hidden 32 --heads 2 --latent-size 8 --num-classes 10 --batch 4";

} // namespace

TEST(SampleCommand, DdpmGridIsReproducibleAndGuided) {
  Model m("dit-s/2", kDitArgs, ditShapes(tinyDit()), "sample_dit");
  std::string png = tempPath("grid.png"), a = tempPath("a.safetensors"), b = tempPath("b.safetensors"),
              c = tempPath("c.safetensors"), d = tempPath("d.safetensors");
  auto [status, out] = m.sample("--sampler ddpm:20 --cfg 4 --seed 7 --class 3,5 --columns 2", png, a);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("2 samples of dit-s/2 (ddpm:20, cfg 4, seed 7, cpu"), std::string::npos) << out;
  diffrt::Image grid = diffrt::readPng(png);
  // 2 images of 4 channels (a latent preview, RGB) of 8x8 with 2-pixel padding.
  EXPECT_EQ(grid.width, 2 * 8 + 3 * 2);
  EXPECT_EQ(grid.height, 8 + 2 * 2);
  EXPECT_EQ(grid.channels, 3);
  ASSERT_EQ(m.sample("--sampler ddpm:20 --cfg 4 --seed 7 --class 3,5 --zoom 3", png, b).first, 0);
  diffrt::Image zoomed = diffrt::readPng(png);
  EXPECT_EQ(zoomed.width, 2 * 24 + 3 * 2);
  EXPECT_EQ(zoomed.height, 24 + 2 * 2);
  // Each sample pixel is a 3 x 3 block: rows 2..4 of the first image agree.
  for (int col = 2; col < 2 + 24; ++col)
    EXPECT_EQ(zoomed.pixels[size_t(2 * zoomed.width + col) * 3], zoomed.pixels[size_t(4 * zoomed.width + col) * 3]);
  ASSERT_EQ(m.sample("--sampler ddpm:20 --cfg 4 --seed 8 --class 3,5", png, c).first, 0);
  ASSERT_EQ(m.sample("--sampler ddpm:20 --cfg 1.5 --seed 7 --class 3,5", png, d).first, 0);
  EXPECT_EQ(samplesOf(a), samplesOf(b)) << "the same seed must give the same samples";
  EXPECT_NE(samplesOf(a), samplesOf(c)) << "another seed must give other samples";
  EXPECT_NE(samplesOf(a), samplesOf(d)) << "the guidance scale must matter";
  diffrt::SafetensorsFile raw = diffrt::SafetensorsFile::open(a);
  EXPECT_EQ(raw.info("samples").shape, (std::vector<int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(raw.metadata().at("sampler"), "ddpm:20");
  for (const std::string &f : {png, a, b, c, d})
    std::remove(f.c_str());
}

TEST(SampleCommand, UnguidedUsesTheWholeBatch) {
  Model m("dit-s/2", kDitArgs, ditShapes(tinyDit()), "sample_unguided");
  std::string png = tempPath("u.png"), raw = tempPath("u.safetensors");
  auto [status, out] = m.sample("--sampler ddim:10 --cfg 1", png, raw);
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(diffrt::SafetensorsFile::open(raw).info("samples").shape[0], 4);
  std::remove(png.c_str());
  std::remove(raw.c_str());
}

TEST(SampleCommand, RectifiedFlowAndEdmFamilies) {
  DitMoeConfig moe;
  moe.base = tinyDit();
  moe.experts = 4;
  moe.qkNorm = true;
  Model rf("dit-moe-xl/2-8e2a", std::string(kDitArgs) + " --experts 4", ditMoeShapes(moe), "sample_rf");
  std::string png = tempPath("rf.png"), raw = tempPath("rf.safetensors");
  auto [status, out] = rf.sample("--seed 1", png, raw);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("(rf:50, cfg 7"), std::string::npos) << "XL/G default to 50 Euler steps, cfg 7: " << out;

  MicroDitConfig micro;
  micro.inputSize = 8, micro.dim = 32, micro.depth = 2, micro.headDim = 16, micro.mixerDepth = 1,
  micro.mixerDim = 32, micro.captionChannels = 16, micro.captionTokens = 5, micro.experts = 4;
  Model edm("microdit-tiny/2",
            "--depth 2 --hidden 32 --head-dim 16 --mixer-depth 1 --mixer-hidden 32 --caption-channels 16 "
            "--caption-tokens 5 --latent-size 8 --experts 4 --batch 2",
            microDitShapes(micro), "sample_edm");
  std::string captions = tempPath("captions.safetensors");
  diffrt::SafetensorsWriter w;
  std::vector<float> embedding(5 * 16, 0.25f);
  w.addF32("captions", {1, 5, 16}, embedding.data());
  w.write(captions);
  auto [s2, out2] = edm.sample("--sampler edm:6 --captions " + captions, png, raw);
  ASSERT_EQ(s2, 0) << out2;
  EXPECT_NE(out2.find("(edm:6, cfg 5"), std::string::npos) << out2;
  for (float v : samplesOf(raw))
    ASSERT_TRUE(std::isfinite(v));
  for (const std::string &f : {png, raw, captions})
    std::remove(f.c_str());
}

TEST(SampleCommand, MisuseGetsClearErrors) {
  Model m("dit-s/2", kDitArgs, ditShapes(tinyDit()), "sample_errors");
  std::string png = tempPath("e.png");
  auto expectError = [&](const std::string &options, const std::string &message) {
    auto [status, out] = m.sample(options, png, "");
    EXPECT_NE(status, 0) << options;
    EXPECT_NE(out.find(message), std::string::npos) << options << ": " << out;
  };
  expectError("--sampler rf:10", "sampler 'rf:10' does not fit a model trained with ddpm (use ddpm:250)");
  expectError("--class 12", "--class 12 is outside [0, 10) for this model");
  expectError("--sampler ddpm:ten", "ddpm:ten");
  expectError("--captions x.safetensors", "--captions does not apply to dit-s/2");
  expectError("--zoom 0", "--zoom must be between 1 and 16, got 0");
  auto [status, out] = shell(diffcBinary() + " sample " + m.dfx + " -o " + png);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("sample needs --weights FILE.safetensors"), std::string::npos) << out;
  std::remove(png.c_str());
}
