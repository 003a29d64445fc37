//===- TrainStepNumericsTest.cpp - compiled gradients against autograd ----===//
//
// A model compiled with `diffc compile --mode train` returns, from
// @train_step, the per-sample loss and the gradient of the batch-mean loss
// (plus DiT-MoE's balance losses) with respect to every parameter. Here each
// family's tiny configuration runs one step on the CPU and every one of those
// values is compared with LibTorch autograd through the reference models of
// test/Reference, on the same weights and inputs, with the objectives written
// out below from the spec in LibTorch:
//  * DDPM (spec 2.7): ε-MSE plus the variational bound in bits on the
//    learned-range variance, whose model mean takes a stop-gradient ε̂; the
//    batch includes t = 0 (the discretized decoder likelihood) and data
//    beyond ±0.999 (its open edge bins);
//  * rectified flow (spec 3.5(b)): velocity MSE against ε − x0;
//  * EDM (spec 4.7) with and without deferred masking (spec 4.5);
//  * DiT-MoE's balance loss α·Σ f_i·P̄_i per layer (spec 3.2), gradient only.
//
//===----------------------------------------------------------------------===//

#include "IntegrationUtil.h"

#include "diffrt/Session.h"

#include <torch/torch.h>

#include <cmath>
#include <functional>

using namespace diffc::reference;
using namespace diffc::integration;

namespace {

constexpr double kLn2 = 0.69314718055994530942;

/// guided-diffusion's DDPM quantities for the linear β schedule, float64.
struct DdpmTables {
  torch::Tensor coef1, coef2, sqrtRecip, sqrtRecipM1, logPosteriorClipped, logBeta, alphaBar;
  DdpmTables() {
    auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
    std::vector<double> b = numpyLinspace(1e-4, 0.02, 1000);
    torch::Tensor beta = torch::tensor(b, f64);
    alphaBar = torch::cumprod(1.0 - beta, 0);
    torch::Tensor prev = torch::cat({torch::ones({1}, f64), alphaBar.narrow(0, 0, 999)});
    torch::Tensor posterior = beta * (1.0 - prev) / (1.0 - alphaBar);
    logPosteriorClipped = torch::log(torch::cat({posterior.narrow(0, 1, 1), posterior.narrow(0, 1, 999)}));
    logBeta = torch::log(beta);
    coef1 = beta * torch::sqrt(prev) / (1.0 - alphaBar);
    coef2 = (1.0 - prev) * torch::sqrt(1.0 - beta) / (1.0 - alphaBar);
    sqrtRecip = torch::sqrt(1.0 / alphaBar);
    sqrtRecipM1 = torch::sqrt(1.0 / alphaBar - 1.0);
  }
};

const DdpmTables &ddpmTables() {
  static const DdpmTables tables;
  return tables;
}

torch::Tensor approxStandardNormalCdf(const torch::Tensor &z) {
  return 0.5 * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (z + 0.044715 * z.pow(3))));
}

/// Per-sample DDPM loss. prediction (N, 2C, H, W) holds ε̂ and v.
torch::Tensor ddpmLossReference(const torch::Tensor &prediction, const torch::Tensor &x0,
                                const torch::Tensor &xt, const torch::Tensor &noise,
                                const std::vector<int64_t> &timesteps) {
  const DdpmTables &d = ddpmTables();
  int64_t c = x0.size(1);
  std::vector<torch::Tensor> losses;
  for (size_t s = 0; s < timesteps.size(); ++s) {
    int64_t t = timesteps[s];
    torch::Tensor p = prediction[s].to(torch::kFloat64), a = x0[s].to(torch::kFloat64),
                  x = xt[s].to(torch::kFloat64), e = noise[s].to(torch::kFloat64);
    torch::Tensor epsHat = p.narrow(0, 0, c), v = p.narrow(0, c, c);
    torch::Tensor mse = (epsHat - e).pow(2).mean();
    double c1 = d.coef1[t].item<double>(), c2 = d.coef2[t].item<double>();
    double minLog = d.logPosteriorClipped[t].item<double>(), maxLog = d.logBeta[t].item<double>();
    torch::Tensor x0Hat = d.sqrtRecip[t].item<double>() * x - d.sqrtRecipM1[t].item<double>() * epsHat.detach();
    torch::Tensor meanModel = c1 * x0Hat + c2 * x;
    torch::Tensor frac = (v + 1.0) / 2.0;
    torch::Tensor logVar = frac * maxLog + (1.0 - frac) * minLog;
    torch::Tensor terms;
    if (t > 0) {
      torch::Tensor meanTrue = c1 * a + c2 * x;
      terms = 0.5 * (-1.0 + logVar - minLog + torch::exp(minLog - logVar) +
                     (meanTrue - meanModel).pow(2) * torch::exp(-logVar));
    } else {
      torch::Tensor centered = a - meanModel, invStd = torch::exp(-0.5 * logVar);
      torch::Tensor cdfPlus = approxStandardNormalCdf(invStd * (centered + 1.0 / 255));
      torch::Tensor cdfMin = approxStandardNormalCdf(invStd * (centered - 1.0 / 255));
      torch::Tensor logProb = torch::where(
          a < -0.999, torch::log(cdfPlus.clamp_min(1e-12)),
          torch::where(a > 0.999, torch::log((1.0 - cdfMin).clamp_min(1e-12)),
                       torch::log((cdfPlus - cdfMin).clamp_min(1e-12))));
      terms = -logProb;
    }
    losses.push_back(mse + terms.mean() / kLn2);
  }
  return torch::stack(losses);
}

/// The compiled step and the reference's loss for one family.
struct Case {
  std::string zoo, args, tag;
  Shapes shapes;
  uint64_t seed;
  /// Builds the feed of @train_step and returns the reference's per-sample
  /// losses and the scalar that autograd differentiates.
  std::function<std::pair<torch::Tensor, torch::Tensor>(const StateDict &,
                                                        std::map<std::string, diffrt::HostTensor> &)>
      reference;
};

/// The reference gradient for a parameter of the plan; stacked expert
/// parameters ("...experts.{e}...") stack the per-expert gradients.
torch::Tensor referenceGradient(const StateDict &sd, const std::string &name) {
  auto gradOf = [&](const std::string &key) {
    auto it = sd.find(key);
    if (it == sd.end())
      throw std::runtime_error("the reference has no parameter '" + key + "'");
    torch::Tensor g = it->second.grad();
    return g.defined() ? g : torch::zeros_like(it->second);
  };
  size_t at = name.find("{e}");
  if (at == std::string::npos)
    return gradOf(name);
  std::vector<torch::Tensor> experts;
  for (int e = 0; sd.count(name.substr(0, at) + std::to_string(e) + name.substr(at + 3)); ++e)
    experts.push_back(gradOf(name.substr(0, at) + std::to_string(e) + name.substr(at + 3)));
  return torch::stack(experts);
}

/// Float32 forward and backward in another summation order than LibTorch's.
/// The errors seen are 3e-7 .. 2e-5 (printed); 2e-4 leaves a 10x margin
/// while a wrong term in any backward kernel gives errors of order one.
constexpr double kGradientTolerance = 2e-4;

void checkTrainStep(const Case &c) {
  SCOPED_TRACE(c.tag + ", seed " + std::to_string(c.seed));
  TempFiles files;
  std::string dfx = compileZoo(c.zoo, c.args, c.tag, "--mode train");
  std::string weights = tempPath(c.tag + ".safetensors");
  files.paths = {dfx, weights};
  StateDict sd = randomStateDict(c.shapes, c.seed);
  writeStateDict(sd, weights);
  diffrt::Session session(diffrt::Module::load(dfx), diffrt::Device::cpu());
  session.loadWeights(weights);
  const diffrt::Plan &plan = session.module().plan();

  for (const diffrt::ParamDesc &p : plan.params) {
    std::string key = p.name;
    if (size_t at = key.find("{e}"); at != std::string::npos)
      key.replace(at, 3, "0");
    ASSERT_TRUE(sd.count(key)) << "parameter " << p.name << " has no reference weight";
  }
  for (auto &[name, w] : sd)
    w.requires_grad_(true);
  std::map<std::string, diffrt::HostTensor> feed;
  auto [lossRef, objective] = c.reference(sd, feed);
  objective.backward();
  std::vector<diffrt::HostTensor> out = session.run("train_step", feed);
  ASSERT_EQ(out.size(), plan.params.size() + 1);
  expectClose(out[0].f32, lossRef, 1e-5, c.tag + " per-sample loss");

  double total = 0;
  std::vector<torch::Tensor> refs;
  for (const diffrt::ParamDesc &p : plan.params) {
    refs.push_back(referenceGradient(sd, p.name).to(torch::kFloat64));
    total += refs.back().pow(2).sum().item<double>();
  }
  total = std::sqrt(total);
  ASSERT_GT(total, 0) << "the reference gradient is zero; the test would prove nothing";
  double worst = 0;
  std::string worstName;
  for (size_t i = 0; i < plan.params.size(); ++i) {
    const std::vector<float> &g = out[i + 1].f32;
    ASSERT_EQ(static_cast<int64_t>(g.size()), refs[i].numel()) << plan.params[i].name;
    torch::Tensor ours = torch::tensor(g, torch::kFloat64).reshape(refs[i].sizes());
    ASSERT_TRUE(torch::isfinite(ours).all().item<bool>()) << plan.params[i].name;
    // Relative to the parameter's own gradient, or to a thousandth of the
    // whole gradient where a parameter barely gets any (unrouted experts).
    double scale = std::max(refs[i].norm().item<double>(), 1e-3 * total);
    double err = (ours - refs[i]).norm().item<double>() / scale;
    EXPECT_LT(err, kGradientTolerance) << "gradient of " << plan.params[i].name;
    if (err > worst)
      worst = err, worstName = plan.params[i].name;
  }
  std::printf("%s: %zu parameter gradients, worst relative error %.3g (%s), gradient norm %.4g\n",
              c.tag.c_str(), plan.params.size(), worst, worstName.c_str(), total);
}

using Forward = std::function<torch::Tensor(const StateDict &, torch::Tensor, torch::Tensor,
                                            torch::Tensor, std::vector<torch::Tensor> *)>;

/// A class-conditional model trained with DDPM (learned sigma) or rectified
/// flow; balanceCoef > 0 adds DiT-MoE's balance losses.
Case classConditional(std::string zoo, std::string args, std::string tag, Shapes shapes,
                      uint64_t seed, int64_t batch, int64_t latent, bool rectifiedFlow,
                      double balanceCoef, Forward forward, int64_t channels = 4) {
  Case c{std::move(zoo), std::move(args) + " --batch " + std::to_string(batch), std::move(tag),
         std::move(shapes), seed, nullptr};
  c.reference = [=](const StateDict &sd, std::map<std::string, diffrt::HostTensor> &feed) {
    std::vector<int64_t> shape = {batch, channels, latent, latent};
    // Data beyond ±0.999 exercises the decoder likelihood's edge bins.
    torch::Tensor x0 = deterministicNormal(shape, seed + 1);
    torch::Tensor noise = deterministicNormal(shape, seed + 2);
    torch::Tensor y = torch::arange(batch, torch::kInt64).remainder(11); // 10 is the null class
    torch::Tensor x, t;
    std::vector<int64_t> steps;
    if (rectifiedFlow) {
      torch::Tensor u = torch::sigmoid(deterministicNormal({batch}, seed + 3));
      torch::Tensor ub = u.view({batch, 1, 1, 1});
      x = (1 - ub) * x0 + ub * noise;
      t = u;
    } else {
      for (int64_t i = 0; i < batch; ++i)
        steps.push_back(i == 0 ? 0 : (i * 397 + static_cast<int64_t>(seed % 100)) % 1000);
      torch::Tensor ab = ddpmTables().alphaBar.index_select(0, torch::tensor(steps)).to(torch::kFloat32)
                             .view({batch, 1, 1, 1});
      x = torch::sqrt(ab) * x0 + torch::sqrt(1 - ab) * noise;
      t = torch::tensor(steps).to(torch::kFloat32);
      feed["timesteps"] = diffrt::HostTensor::ints({batch}, toInts(t));
    }
    feed["x"] = diffrt::HostTensor::floats(shape, toVector(x));
    feed["t"] = diffrt::HostTensor::floats({batch}, toVector(t));
    feed["y"] = diffrt::HostTensor::ints({batch}, toInts(y));
    feed["x_start"] = diffrt::HostTensor::floats(shape, toVector(x0));
    feed["noise"] = diffrt::HostTensor::floats(shape, toVector(noise));
    std::vector<torch::Tensor> balance;
    torch::Tensor prediction = forward(sd, x, t, y, balanceCoef > 0 ? &balance : nullptr);
    torch::Tensor loss =
        rectifiedFlow
            ? (prediction.narrow(1, 0, channels).to(torch::kFloat64) - (noise - x0).to(torch::kFloat64))
                  .pow(2).mean({1, 2, 3})
            : ddpmLossReference(prediction, x0, x, noise, steps);
    torch::Tensor objective = loss.mean();
    for (const torch::Tensor &b : balance)
      objective = objective + balanceCoef * b.to(torch::kFloat64);
    return std::make_pair(loss.detach(), objective);
  };
  return c;
}

const char *kDitArgs = "--depth 2 --hidden 64 --heads 4 --latent-size 8 --num-classes 10";

DitConfig tinyDit() {
  DitConfig cfg;
  cfg.inputSize = 8, cfg.hidden = 64, cfg.heads = 4, cfg.depth = 2, cfg.numClasses = 10;
  return cfg;
}

} // namespace

TEST(TrainStepNumerics, DiTWithDdpmAndTheVariationalBound) {
  DitConfig cfg = tinyDit();
  checkTrainStep(classConditional("dit-s/2", kDitArgs, "train_dit", ditShapes(cfg), freshSeed(), 4,
                                  8, false, 0.0,
                                  [&](const StateDict &sd, auto x, auto t, auto y, auto *) {
                                    return ditForward(cfg, sd, x, t, y);
                                  }));
}

TEST(TrainStepNumerics, DiTMoEWithBalanceLoss) {
  // Fixed seeds for the MoE families: see FamilyNumericsTest.cpp.
  DitMoeConfig cfg;
  cfg.base = tinyDit();
  cfg.experts = 4;
  checkTrainStep(classConditional("dit-moe-s/2-8e2a", std::string(kDitArgs) + " --experts 4", "train_moe",
                                  ditMoeShapes(cfg), 71, 3, 8, false, 0.01,
                                  [&](const StateDict &sd, auto x, auto t, auto y, auto *balance) {
                                    return ditMoeForward(cfg, sd, x, t, y, balance);
                                  }));
}

TEST(TrainStepNumerics, DiTMoEQkNormWithRectifiedFlow) {
  DitMoeConfig cfg;
  cfg.base = tinyDit();
  cfg.experts = 8;
  cfg.qkNorm = true;
  checkTrainStep(classConditional("dit-moe-xl/2-8e2a", std::string(kDitArgs) + " --experts 8",
                                  "train_moe_rf", ditMoeShapes(cfg), 83, 3, 8, true, 0.01,
                                  [&](const StateDict &sd, auto x, auto t, auto y, auto *balance) {
                                    return ditMoeForward(cfg, sd, x, t, y, balance);
                                  }));
}

TEST(TrainStepNumerics, FashionMnistModel) {
  // The project's default model: one channel, patch 4, 32x32, 4 experts.
  DitMoeConfig cfg;
  cfg.base.inputSize = 32, cfg.base.patch = 4, cfg.base.inChannels = 1, cfg.base.hidden = 48;
  cfg.base.heads = 3, cfg.base.depth = 2, cfg.base.numClasses = 10;
  cfg.experts = 4;
  checkTrainStep(classConditional("dit-moe-fmnist", "--depth 2 --hidden 48 --heads 3", "train_fmnist",
                                  ditMoeShapes(cfg), 61, 3, 32, false, 0.01,
                                  [&](const StateDict &sd, auto x, auto t, auto y, auto *balance) {
                                    return ditMoeForward(cfg, sd, x, t, y, balance);
                                  },
                                  1));
}

TEST(TrainStepNumerics, DiGWithDdpm) {
  DigConfig cfg;
  cfg.inputSize = 8, cfg.hidden = 64, cfg.heads = 2, cfg.depth = 4, cfg.numClasses = 10;
  checkTrainStep(classConditional("dig-s/2", "--depth 4 --hidden 64 --heads 2 --latent-size 8 --num-classes 10",
                                  "train_dig", digShapes(cfg), freshSeed(), 3, 8, false, 0.0,
                                  [&](const StateDict &sd, auto x, auto t, auto y, auto *) {
                                    return digForward(cfg, sd, x, t, y);
                                  }));
}

namespace {

Case microDitCase(uint64_t seed, double maskRatio) {
  MicroDitConfig cfg;
  cfg.inputSize = 8, cfg.dim = 64, cfg.depth = 4, cfg.headDim = 16, cfg.mixerDepth = 2, cfg.mixerDim = 48;
  cfg.captionChannels = 32, cfg.captionTokens = 7, cfg.experts = 4;
  const int64_t batch = 2, tokens = 16, patch = 2, kept = static_cast<int64_t>(tokens * (1.0 - maskRatio));
  std::string args = "--depth 4 --hidden 64 --head-dim 16 --mixer-depth 2 --mixer-hidden 48 "
                     "--caption-channels 32 --caption-tokens 7 --latent-size 8 --experts 4";
  if (maskRatio > 0)
    args += " --mask-ratio " + std::to_string(maskRatio);
  Case c{"microdit-tiny/2", args + " --batch " + std::to_string(batch),
         maskRatio > 0 ? "train_microdit_masked" : "train_microdit", microDitShapes(cfg), seed, nullptr};
  c.reference = [=](const StateDict &sd, std::map<std::string, diffrt::HostTensor> &feed) {
    std::vector<int64_t> shape = {batch, 4, 8, 8};
    const double sigmaData = 0.9;
    torch::Tensor x0 = deterministicNormal(shape, seed + 1), noise = deterministicNormal(shape, seed + 2);
    torch::Tensor sigma = torch::exp(-0.6 + 1.2 * deterministicNormal({batch}, seed + 3));
    torch::Tensor captions = deterministicNormal({batch, 7, 32}, seed + 4);
    torch::Tensor sb = sigma.view({batch, 1, 1, 1});
    torch::Tensor xNoisy = x0 + sb * noise;
    torch::Tensor x = xNoisy / torch::sqrt(sb * sb + sigmaData * sigmaData);
    torch::Tensor cNoise = torch::log(sigma) / 4;
    std::optional<torch::Tensor> keep;
    // Per-pixel weights of the loss: the mean over all pixels, or over the
    // kept patches only.
    torch::Tensor pixelWeight = torch::full({batch, 1, 8, 8}, 1.0 / (4 * 64), torch::kFloat64);
    if (maskRatio > 0) {
      keep = std::get<1>(deterministicNormal({batch, tokens}, seed + 5).sort(1)).narrow(1, 0, kept).contiguous();
      torch::Tensor patchMask = torch::zeros({batch, tokens}, torch::kFloat64)
                                    .scatter(1, *keep, torch::ones({batch, kept}, torch::kFloat64));
      pixelWeight = patchMask.view({batch, 1, 4, 4})
                        .repeat_interleave(patch, 2)
                        .repeat_interleave(patch, 3) /
                    static_cast<double>(4 * patch * patch * kept);
      feed["keep"] = diffrt::HostTensor::ints({batch, kept}, toInts(*keep));
    }
    feed["x"] = diffrt::HostTensor::floats(shape, toVector(x));
    feed["t"] = diffrt::HostTensor::floats({batch}, toVector(cNoise));
    feed["captions"] = diffrt::HostTensor::floats({batch, 7, 32}, toVector(captions));
    feed["x_noisy"] = diffrt::HostTensor::floats(shape, toVector(xNoisy));
    feed["x_start"] = diffrt::HostTensor::floats(shape, toVector(x0));
    feed["sigma"] = diffrt::HostTensor::floats({batch}, toVector(sigma));
    torch::Tensor raw = microDitForward(cfg, sd, x, cNoise, captions, keep).to(torch::kFloat64);
    torch::Tensor s = sb.to(torch::kFloat64), s2 = s * s, sd2 = torch::full({}, sigmaData * sigmaData, torch::kFloat64);
    torch::Tensor cSkip = sd2 / (s2 + sd2), cOut = s * sigmaData / torch::sqrt(s2 + sd2);
    torch::Tensor lambda = (s2 + sd2) / (s2 * sd2);
    torch::Tensor denoised = cSkip * xNoisy.to(torch::kFloat64) + cOut * raw;
    torch::Tensor loss = (lambda * pixelWeight * (denoised - x0.to(torch::kFloat64)).pow(2)).sum({1, 2, 3});
    return std::make_pair(loss.detach(), loss.mean());
  };
  return c;
}

} // namespace

TEST(TrainStepNumerics, MicroDiTWithEdm) { checkTrainStep(microDitCase(91, 0.0)); }

TEST(TrainStepNumerics, MicroDiTWithEdmAndDeferredMasking) { checkTrainStep(microDitCase(97, 0.75)); }
