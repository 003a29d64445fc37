//===- TrainerInputsTest.cpp - what a training step feeds train_step ------===//
//
// Trainer::step draws a step's noise where the step runs
// (Session::writeNoisedInputs) and the rest on the host. Here, for each
// objective (DDPM, rectified flow, EDM with masking and captions), the
// losses of two steps equal, bit for bit, train_step run on inputs built
// on the host by the rules Trainer.h documents; and the staging API's
// misuse gets clear errors.
//
//===----------------------------------------------------------------------===//

#include "IntegrationUtil.h"

#include "diffrt/Error.h"
#include "diffrt/Rng.h"
#include "diffrt/Samplers.h"
#include "diffrt/Session.h"
#include "diffrt/Trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

using namespace diffc::integration;
using diffrt::HostTensor;

namespace {

int64_t inputNumel(const diffrt::Plan &plan, const std::string &name) {
  for (auto &[n, id] : plan.entry("train_step")->inputs)
    if (n == name)
      return plan.values[id].numel();
  return 0;
}

/// train_step's inputs for step `step`, drawn on the host in the order
/// Trainer.h documents.
std::map<std::string, HostTensor> referenceInputs(const diffrt::Module &module, const diffrt::TrainConfig &config,
                                                  const diffrt::Batch &batch, const std::vector<int64_t> &shape,
                                                  uint64_t step) {
  const diffrt::Plan &plan = module.plan();
  const int64_t n = shape[0], per = static_cast<int64_t>(batch.x0.size()) / n;
  diffrt::Philox rng(config.seed, step);
  std::vector<float> noise(batch.x0.size());
  rng.fillNormal(noise.data(), static_cast<int64_t>(noise.size()));
  std::map<std::string, HostTensor> feed;
  if (inputNumel(plan, "y") > 0) {
    std::vector<int32_t> y = batch.labels;
    for (int32_t &label : y)
      if (rng.uniform() < config.conditionDropout)
        label = static_cast<int32_t>(module.modelInt("num_classes", 0));
    feed["y"] = HostTensor::ints({n}, y);
  }
  if (int64_t c = inputNumel(plan, "captions"); c > 0) {
    std::vector<float> captions = batch.captions;
    for (int64_t i = 0; i < n; ++i)
      if (rng.uniform() < config.conditionDropout)
        std::fill_n(captions.begin() + i * (c / n), c / n, 0.0f);
    for (auto &[name, id] : plan.entry("train_step")->inputs)
      if (name == "captions")
        feed["captions"] = HostTensor::floats(plan.values[id].shape, captions);
  }
  if (int64_t k = inputNumel(plan, "keep"); k > 0) {
    const int64_t patch = module.modelInt("patch_size", 2);
    const int64_t tokens = (shape[2] / patch) * (shape[3] / patch), kept = k / n;
    std::vector<int32_t> keep;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<int32_t> perm(tokens);
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t j = tokens - 1; j > 0; --j)
        std::swap(perm[j], perm[rng.nextU32() % (j + 1)]);
      keep.insert(keep.end(), perm.begin(), perm.begin() + kept);
    }
    feed["keep"] = HostTensor::ints({n, kept}, keep);
  }
  const std::string objective = module.modelString("objective", "ddpm");
  std::vector<float> x(batch.x0.size()), t(n);
  if (objective == "ddpm") {
    const diffrt::GaussianDiffusion diffusion(1000);
    std::vector<int32_t> steps(n);
    for (int64_t i = 0; i < n; ++i) {
      steps[i] = static_cast<int32_t>(std::min<uint32_t>(rng.nextU32() % 1000, 999));
      const double a = diffusion.alphasCumprod()[steps[i]];
      for (int64_t j = i * per; j < (i + 1) * per; ++j)
        x[j] = static_cast<float>(std::sqrt(a) * batch.x0[j] + std::sqrt(1.0 - a) * noise[j]);
      t[i] = static_cast<float>(steps[i]);
    }
    feed["timesteps"] = HostTensor::ints({n}, steps);
    feed["noise"] = HostTensor::floats(shape, noise);
  } else if (objective == "rf") {
    for (int64_t i = 0; i < n; ++i) {
      const double u = 1.0 / (1.0 + std::exp(-rng.normal64()));
      for (int64_t j = i * per; j < (i + 1) * per; ++j)
        x[j] = static_cast<float>((1 - u) * batch.x0[j] + u * noise[j]);
      t[i] = static_cast<float>(u);
    }
    feed["noise"] = HostTensor::floats(shape, noise);
  } else {
    std::vector<float> noisy(batch.x0.size()), sigma(n);
    for (int64_t i = 0; i < n; ++i) {
      const double s = std::exp(config.edmPMean + config.edmPStd * rng.normal64());
      const double cIn = 1.0 / std::sqrt(s * s + 0.9 * 0.9);
      for (int64_t j = i * per; j < (i + 1) * per; ++j) {
        const double xn = batch.x0[j] + s * noise[j];
        noisy[j] = static_cast<float>(xn);
        x[j] = static_cast<float>(cIn * xn);
      }
      sigma[i] = static_cast<float>(s);
      t[i] = static_cast<float>(std::log(s) / 4);
    }
    feed["x_noisy"] = HostTensor::floats(shape, noisy);
    feed["sigma"] = HostTensor::floats({n}, sigma);
  }
  feed["x_start"] = HostTensor::floats(shape, batch.x0);
  feed["x"] = HostTensor::floats(shape, x);
  feed["t"] = HostTensor::floats({n}, t);
  return feed;
}

double meanLoss(const std::vector<HostTensor> &out) {
  double loss = 0;
  for (float l : out[0].f32)
    loss += l;
  return loss / static_cast<double>(out[0].f32.size());
}

void expectTrainerFeedsTheDocumentedInputs(const std::string &zoo, const std::string &args, const std::string &tag,
                                           const std::string &objective) {
  SCOPED_TRACE(zoo + " (" + objective + ")");
  TempFiles files;
  std::string dfx = compileZoo(zoo, args, tag, "--mode train");
  files.paths = {dfx};
  diffrt::Module module = diffrt::Module::load(dfx);
  ASSERT_EQ(module.modelString("objective", ""), objective);
  diffrt::Session trained(module, diffrt::Device::cpu()), reference(module, diffrt::Device::cpu());
  // Weights large enough that the network's output dominates the loss: a
  // mix coefficient off by 1e-4 changes it (checked by mutation).
  trained.randomizeParameters(7, 0.5f);
  reference.randomizeParameters(7, 0.5f);
  diffrt::TrainConfig config;
  config.seed = 0x5eed1234abcdULL;
  config.conditionDropout = 0.5;
  config.lr = 0; // the weights stay as they are, so every step can be replayed
  diffrt::Trainer trainer(trained, config);
  const std::vector<int64_t> shape = trainer.inputShape();
  diffrt::Batch batch;
  diffrt::Philox data(99);
  batch.x0.resize(static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]));
  data.fillNormal(batch.x0.data(), static_cast<int64_t>(batch.x0.size()));
  for (int64_t i = 0; i < shape[0]; ++i)
    batch.labels.push_back(static_cast<int32_t>(data.nextU32() % 10));
  batch.captions.resize(static_cast<size_t>(inputNumel(module.plan(), "captions")));
  data.fillNormal(batch.captions.data(), static_cast<int64_t>(batch.captions.size()));
  for (uint64_t step = 0; step < 2; ++step) {
    const double got = trainer.step(batch);
    const double expected = meanLoss(reference.run("train_step", referenceInputs(module, config, batch, shape, step), 1));
    EXPECT_EQ(got, expected) << "step " << step;
  }
}

} // namespace

TEST(TrainerInputs, DdpmStepsFeedTheDocumentedInputs) {
  expectTrainerFeedsTheDocumentedInputs(
      "dit-s/2", "--depth 1 --hidden 32 --heads 2 --latent-size 8 --num-classes 10 --batch 3", "inputs_ddpm", "ddpm");
}

TEST(TrainerInputs, RectifiedFlowStepsFeedTheDocumentedInputs) {
  expectTrainerFeedsTheDocumentedInputs(
      "dit-moe-xl/2-8e2a", "--depth 1 --hidden 32 --heads 2 --latent-size 8 --num-classes 10 --experts 4 --batch 3",
      "inputs_rf", "rf");
}

TEST(TrainerInputs, EdmStepsWithMaskingAndCaptionsFeedTheDocumentedInputs) {
  expectTrainerFeedsTheDocumentedInputs("microdit-tiny/2",
                                        "--depth 2 --hidden 32 --head-dim 16 --mixer-depth 1 --mixer-hidden 32 "
                                        "--caption-channels 16 --caption-tokens 5 --latent-size 8 --experts 4 "
                                        "--mask-ratio 0.5 --batch 2",
                                        "inputs_edm", "edm");
}

TEST(TrainerInputs, StagedInputsCountForOneRunAndMisuseIsReported) {
  TempFiles files;
  std::string dfx = compileZoo("dit-s/2", "--depth 1 --hidden 32 --heads 2 --latent-size 8 --num-classes 10 --batch 2",
                               "inputs_misuse", "--mode train");
  files.paths = {dfx};
  diffrt::Module module = diffrt::Module::load(dfx);
  diffrt::Session session(module, diffrt::Device::cpu());
  session.randomizeParameters(3, 0.05f);
  const int64_t per = 4 * 8 * 8;
  std::vector<float> x0(2 * per, 0.25f);
  diffrt::NoisedInputs noised;
  noised.x0 = x0.data();
  noised.samples = 2;
  noised.perSample = per;
  noised.seed = 11;
  using Kind = diffrt::NoisedInputs::Kind;
  auto expectError = [&](const diffrt::NoisedInputs &in, const std::string &part) {
    try {
      session.writeNoisedInputs("train_step", in);
      ADD_FAILURE() << "no error; expected one containing: " << part;
    } catch (const diffrt::Error &e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  diffrt::NoisedInputs unknown = noised;
  unknown.targets = {{"x_noisy", Kind::Data, {}, {}, {}}};
  expectError(unknown, "'train_step' has no input 'x_noisy'");
  diffrt::NoisedInputs twice = noised;
  twice.targets = {{"noise", Kind::Noise, {}, {}, {}}, {"noise", Kind::Noise, {}, {}, {}}};
  expectError(twice, "noised input 'noise' is given twice");
  diffrt::NoisedInputs shortMix = noised;
  shortMix.targets = {{"x", Kind::Mix, {1.0}, {0.5}, {1.0}}};
  expectError(shortMix, "noised input 'x': 1, 1 and 1 mix coefficients for 2 samples");
  diffrt::NoisedInputs wrongSize = noised;
  wrongSize.perSample = per - 1;
  wrongSize.targets = {{"x_start", Kind::Data, {}, {}, {}}};
  expectError(wrongSize, "noised input 'x_start' holds 512 values, not 2 x 255");
  diffrt::NoisedInputs integer = noised;
  integer.perSample = 1;
  integer.targets = {{"timesteps", Kind::Data, {}, {}, {}}};
  expectError(integer, "noised input 'timesteps' is an integer input");

  // Staged inputs stand in for one run only.
  diffrt::NoisedInputs good = noised;
  good.targets = {{"x", Kind::Mix, {0.5, 0.25}, {0.5, 0.75}, {1.0, 1.0}},
                  {"x_start", Kind::Data, {}, {}, {}},
                  {"noise", Kind::Noise, {}, {}, {}}};
  std::map<std::string, HostTensor> rest = {{"t", HostTensor::floats({2}, {10.0f, 500.0f})},
                                            {"timesteps", HostTensor::ints({2}, {10, 500})},
                                            {"y", HostTensor::ints({2}, {1, 2})}};
  session.writeNoisedInputs("train_step", good);
  EXPECT_EQ(session.run("train_step", rest, 1).size(), 1u);
  try {
    session.run("train_step", rest, 1);
    ADD_FAILURE() << "a second run took the staged inputs again";
  } catch (const diffrt::Error &e) {
    EXPECT_NE(std::string(e.what()).find("missing input 'x"), std::string::npos) << e.what();
  }
}
