//===- TrainCommandTest.cpp - diffc train end to end on the CPU -----------===//
//
// `diffc train` on a small dit-moe-fmnist and real Fashion-MNIST (Debian's
// dataset-fashion-mnist, which tools/setup.sh installs): the loss falls, a
// run stopped and resumed ends bit for bit where an uninterrupted one does,
// the weights it writes sample, and misuse or a damaged checkpoint gets an
// error that names the file and the field.
//
//===----------------------------------------------------------------------===//

#include "IntegrationUtil.h"

#include "diffrt/Safetensors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace diffc::integration;

namespace {

/// A small dit-moe-fmnist training artifact (2 blocks of width 64, 4 experts).
struct TrainArtifact {
  TempFiles files;
  std::string dfx;
  explicit TrainArtifact(const std::string &tag, int batch = 8) {
    dfx = compileZoo("dit-moe-fmnist",
                     "--batch " + std::to_string(batch) + " --depth 2 --hidden 64 --heads 2 --experts 4",
                     tag, "--mode train");
    files.paths = {dfx};
  }
};

struct TempDir {
  std::string path;
  explicit TempDir(const std::string &tag) : path(tempPath(tag)) {
    std::filesystem::remove_all(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::pair<int, std::string> train(const std::string &dfx, const std::string &dir, const std::string &options) {
  return shell(diffcBinary() + " train " + dfx + " --ckpt-dir " + dir + " --quiet " + options);
}

/// Every tensor and the metadata of two safetensors files are identical.
void expectIdenticalFiles(const std::string &a, const std::string &b) {
  diffrt::SafetensorsFile fa = diffrt::SafetensorsFile::open(a), fb = diffrt::SafetensorsFile::open(b);
  ASSERT_EQ(fa.names(), fb.names());
  EXPECT_EQ(fa.metadata(), fb.metadata());
  for (const std::string &name : fa.names())
    EXPECT_EQ(fa.readF32(name), fb.readF32(name)) << name << " differs between " << a << " and " << b;
}

std::vector<double> loggedLosses(const std::string &dir) {
  std::ifstream log(dir + "/log.csv");
  std::string line;
  std::getline(log, line);
  EXPECT_EQ(line, "step,loss,grad_norm,seconds");
  std::vector<double> losses;
  while (std::getline(log, line)) {
    std::stringstream fields(line);
    std::string step, loss;
    std::getline(fields, step, ',');
    std::getline(fields, loss, ',');
    EXPECT_EQ(std::stoll(step), static_cast<long long>(losses.size()) + 1) << line;
    losses.push_back(std::stod(loss));
  }
  return losses;
}

double mean(const std::vector<double> &v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i)
    s += v[i];
  return s / static_cast<double>(to - from);
}

} // namespace

TEST(TrainCommand, LossFallsOnFashionMnistAndTheWeightsSample) {
  TrainArtifact artifact("train_fmnist");
  TempDir dir("train_fmnist_run");
  auto [status, out] = train(artifact.dfx, dir.path, "--steps 120 --lr 1e-3 --seed 3 --ema-decay 0.99");
  ASSERT_EQ(status, 0) << out;
  std::vector<double> losses = loggedLosses(dir.path);
  ASSERT_EQ(losses.size(), 120u);
  // The untrained network outputs zero (adaLN-zero and a zero final layer):
  // the loss starts near E[ε²] plus the bound, and 120 steps of Adam at 1e-3
  // bring it below a third of that (0.76 -> 0.15 in the runs seen).
  double first = mean(losses, 0, 10), last = mean(losses, 110, 120);
  EXPECT_GT(first, 0.5);
  EXPECT_LT(last, first / 3) << "the loss went from " << first << " to " << last;

  // weights.safetensors holds the EMA under the checkpoint names, stacked
  // experts split back into one tensor each.
  diffrt::SafetensorsFile ckpt = diffrt::SafetensorsFile::open(dir.path + "/checkpoint.safetensors");
  diffrt::SafetensorsFile weights = diffrt::SafetensorsFile::open(dir.path + "/weights.safetensors");
  EXPECT_EQ(weights.readF32("final_layer.linear.weight"), ckpt.readF32("ema/final_layer.linear.weight"));
  EXPECT_NE(weights.readF32("final_layer.linear.weight"), ckpt.readF32("param/final_layer.linear.weight"));
  std::vector<float> stacked = ckpt.readF32("ema/blocks.1.moe.experts.{e}.up_proj.weight");
  std::vector<float> expert2 = weights.readF32("blocks.1.moe.experts.2.up_proj.weight");
  ASSERT_EQ(stacked.size(), 4 * expert2.size());
  EXPECT_TRUE(std::equal(expert2.begin(), expert2.end(), stacked.begin() + 2 * expert2.size()));

  // The EMA weights load into a sampling artifact of the same model.
  std::string sampler = compileZoo("dit-moe-fmnist", "--batch 2 --depth 2 --hidden 64 --heads 2 --experts 4",
                                   "train_fmnist_sampler");
  TempFiles cleanup{{sampler, tempPath("fmnist.png")}};
  auto [s2, out2] = shell(diffcBinary() + " sample " + sampler + " --weights " + dir.path +
                          "/weights.safetensors --sampler ddim:10 --class 1 --quiet -o " + tempPath("fmnist.png"));
  EXPECT_EQ(s2, 0) << out2;
}

TEST(TrainCommand, ResumedRunEndsBitForBitWhereAnUninterruptedOneDoes) {
  TrainArtifact artifact("train_resume");
  TempDir straight("train_straight"), resumed("train_resumed");
  const std::string options = " --lr 1e-3 --seed 11 --grad-clip 0.5 --ema-decay 0.9 --weight-decay 0.01";
  auto a = train(artifact.dfx, straight.path, "--steps 6" + options);
  ASSERT_EQ(a.first, 0) << a.second;
  auto b = train(artifact.dfx, resumed.path, "--steps 3" + options);
  ASSERT_EQ(b.first, 0) << b.second;
  diffrt::SafetensorsFile half = diffrt::SafetensorsFile::open(resumed.path + "/checkpoint.safetensors");
  EXPECT_EQ(half.metadata().at("step"), "3");
  std::vector<float> midway = half.readF32("param/final_layer.linear.weight");
  auto c = train(artifact.dfx, resumed.path, "--steps 6 --resume" + options);
  ASSERT_EQ(c.first, 0) << c.second;

  expectIdenticalFiles(straight.path + "/checkpoint.safetensors", resumed.path + "/checkpoint.safetensors");
  expectIdenticalFiles(straight.path + "/weights.safetensors", resumed.path + "/weights.safetensors");
  EXPECT_EQ(loggedLosses(straight.path), loggedLosses(resumed.path));
  EXPECT_NE(diffrt::SafetensorsFile::open(resumed.path + "/checkpoint.safetensors")
                .readF32("param/final_layer.linear.weight"),
            midway)
      << "steps 4-6 did not change the weights";
}

TEST(TrainCommand, MisuseAndDamagedCheckpointsGetClearErrors) {
  TrainArtifact artifact("train_errors");
  TempDir dir("train_errors_run");
  auto expectError = [&](const std::string &options, const std::string &message) {
    auto [status, out] = train(artifact.dfx, dir.path, options);
    EXPECT_NE(status, 0) << options;
    EXPECT_NE(out.find(message), std::string::npos) << options << ": " << out;
  };
  expectError("--steps 2 --resume", "--resume: no checkpoint at " + dir.path + "/checkpoint.safetensors");
  expectError("--steps 2 --data fashion-mnist:" + dir.path + "/nowhere", dir.path + "/nowhere");
  expectError("--steps 2 --data imagenet", "--data must be fashion-mnist[:DIR] or latents:FILE.safetensors");
  expectError("--steps two", "--steps expects a number, got 'two'");
  expectError("--steps 2 --loss-scale 3", "the initial loss scale must be a power of two of at least 1, got 3");

  ASSERT_EQ(train(artifact.dfx, dir.path, "--steps 1 --seed 4").first, 0);
  expectError("--steps 2 --seed 5 --resume", "written by a run with seed 4, this run uses seed 5");

  // A checkpoint of another model: the shapes are named.
  std::string other = compileZoo("dit-moe-fmnist", "--batch 8 --depth 2 --hidden 32 --heads 2 --experts 4",
                                 "train_errors_narrow", "--mode train");
  TempFiles cleanup{{other}};
  auto [status, out] = train(other, dir.path, "--steps 2 --seed 4 --resume");
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("checkpoint.safetensors: tensor 'param/x_embedder.proj.weight' has shape 64x1x4x4 but"),
            std::string::npos) << out;
  EXPECT_NE(out.find("needs 32x1x4x4"), std::string::npos) << out;

  // A truncated checkpoint names the file and what is missing.
  std::string ckpt = dir.path + "/checkpoint.safetensors";
  std::filesystem::resize_file(ckpt, std::filesystem::file_size(ckpt) / 2);
  expectError("--steps 2 --seed 4 --resume", ckpt);
}
