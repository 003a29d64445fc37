//===- TrainCommand.cpp - train: train a compiled model -------------------===//
//
// `diffc train MODEL.dfx --data fashion-mnist --steps N --ckpt-dir DIR`
// on the artifact's device (--device to choose): batches from Fashion-MNIST (Debian's dataset-fashion-mnist) or from
// precomputed latents, the reference initialisation or given weights,
// resumable checkpoints written crash-safely every --save-every steps, and
// the loss logged to the terminal and to DIR/log.csv.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Commands.h"

#include "diffrt/Args.h"
#include "diffrt/Datasets.h"
#include "diffrt/Error.h"
#include "diffrt/Rng.h"
#include "diffrt/Trainer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace diffrt {

namespace {

int train(const std::vector<std::string> &argv) {
  Args args;
  std::string message;
  if (!args.parse(argv,
                  {"--data", "--steps", "--lr", "--ckpt-dir", "--save-every", "--log-every", "--seed",
                   "--ema-decay", "--grad-clip", "--weights", "--weight-decay", "--device", "--loss-scale"},
                  {"--resume", "--quiet"}, message))
    fail(message);
  if (args.positional.size() != 1)
    fail("train takes one training artifact (compile with --mode train)");
  Module module = Module::load(args.positional[0]);
  // The artifact's target is the default device; the CPU backend refuses
  // 16-bit plans with a message saying how to compile for it.
  std::string deviceName = args.get("--device").value_or(module.plan().target);
  Device device = Device::cpu();
  if (deviceName == "cuda")
    device = Device::cuda(0);
  else if (deviceName != "cpu")
    fail("--device must be cpu or cuda, got '", deviceName, "'");
  Session session(module, device);

  TrainConfig config;
  config.lr = args.number("--lr", 1e-4);
  config.seed = static_cast<uint64_t>(args.integer("--seed", 0));
  config.emaDecay = args.number("--ema-decay", 0.9999);
  config.gradClip = args.number("--grad-clip", 0);
  config.weightDecay = args.number("--weight-decay", 0);
  config.initialLossScale = args.number("--loss-scale", 65536.0);
  int64_t steps = args.integer("--steps", 1000);
  int64_t saveEvery = args.integer("--save-every", 500);
  int64_t logEvery = args.integer("--log-every", 50);
  std::string dir = args.get("--ckpt-dir").value_or("");
  if (dir.empty())
    fail("train needs --ckpt-dir DIR for checkpoints and the log");
  std::filesystem::create_directories(dir);
  std::string checkpoint = dir + "/checkpoint.safetensors";

  if (auto w = args.get("--weights"))
    session.loadWeights(*w);
  else
    initializeParameters(session, config.seed);
  Trainer trainer(session, config);
  if (args.has("--resume")) {
    if (!std::filesystem::exists(checkpoint))
      fail("--resume: no checkpoint at ", checkpoint);
    trainer.loadCheckpoint(checkpoint);
  }

  // Data.
  std::string data = args.get("--data").value_or("fashion-mnist");
  const std::vector<int64_t> &shape = trainer.inputShape();
  int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  ImageDataset images;
  LatentDataset latents;
  bool useImages = data.rfind("fashion-mnist", 0) == 0;
  if (useImages) {
    std::string where = data.size() > 14 ? data.substr(14) : "/usr/share/datasets/fashion-mnist";
    images = loadFashionMnist(where, "train");
    if (c != 1 || h != w || h < images.height)
      fail(module.path(), " takes ", c, "x", h, "x", w, " inputs; Fashion-MNIST needs 1 channel and "
           "a square side of at least ", images.height, " (import dit-moe-fmnist)");
  } else if (data.rfind("latents:", 0) == 0) {
    latents = loadLatents(data.substr(8));
    if (latents.channels != c || latents.height != h || latents.width != w)
      fail(data.substr(8), ": latents are ", latents.channels, "x", latents.height, "x", latents.width,
           " but the model takes ", c, "x", h, "x", w);
  } else {
    fail("--data must be fashion-mnist[:DIR] or latents:FILE.safetensors, got '", data, "'");
  }
  int64_t count = useImages ? images.count : latents.count;

  std::ofstream log(dir + "/log.csv", std::ios::app);
  if (trainer.stepCount() == 0)
    log << "step,loss,grad_norm,seconds\n";
  auto start = std::chrono::steady_clock::now();
  double window = 0;
  int64_t windowSteps = 0;
  while (trainer.stepCount() < steps) {
    // The batch of step k is drawn from (seed, k) too: resuming reproduces it.
    Philox pick(config.seed ^ 0x5eedull, static_cast<uint64_t>(trainer.stepCount()));
    Batch batch;
    batch.x0.resize(n * c * h * w);
    batch.labels.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      int64_t index = static_cast<int64_t>(pick.nextU32() % static_cast<uint32_t>(count));
      if (useImages) {
        std::vector<float> one = toModelInput(images, index, 1, h);
        std::copy(one.begin(), one.end(), batch.x0.begin() + i * c * h * w);
        batch.labels[i] = images.labels[index];
      } else {
        std::copy_n(latents.latents.begin() + index * c * h * w, c * h * w, batch.x0.begin() + i * c * h * w);
        batch.labels[i] = latents.labels.empty() ? 0 : latents.labels[index];
      }
    }
    double loss = trainer.step(batch);
    window += loss;
    ++windowSteps;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log << trainer.stepCount() << "," << loss << "," << trainer.lastGradNorm() << "," << secs << "\n";
    if (trainer.stepCount() % logEvery == 0 || trainer.stepCount() == steps) {
      if (!args.has("--quiet"))
        std::fprintf(stderr, "step %lld/%lld  loss %.4f  grad norm %.3f  %.1f s%s\n",
                     static_cast<long long>(trainer.stepCount()), static_cast<long long>(steps),
                     window / windowSteps, trainer.lastGradNorm(), secs,
                     trainer.skippedSteps() > 0
                         ? (" (f16 loss scale " + std::to_string(trainer.lossScale()) + ", " +
                            std::to_string(trainer.skippedSteps()) + " overflowed steps skipped)").c_str()
                         : "");
      window = 0;
      windowSteps = 0;
      log.flush();
    }
    if (trainer.stepCount() % saveEvery == 0 || trainer.stepCount() == steps) {
      trainer.saveCheckpoint(checkpoint);
      trainer.saveWeights(dir + "/weights.safetensors", /*ema=*/config.emaDecay > 0);
    }
  }
  std::cerr << "diffc: trained " << module.modelString("name", "the model") << " to step "
            << trainer.stepCount() << "; EMA weights in " << dir << "/weights.safetensors\n";
  return 0;
}

} // namespace

int runTrainCommand(const std::vector<std::string> &argv) {
  try {
    return train(argv);
  } catch (const std::exception &e) {
    std::cerr << "diffc: error: " << e.what() << "\n";
    return 1;
  }
}

} // namespace diffrt
