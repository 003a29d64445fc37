//===- Trainer.cpp - objectives, AdamW, EMA and checkpoints ---------------===//
//
// Host-side half of training: the objective's inputs for a step (spec 2.7
// DDPM, 3.5(b) rectified flow, 4.5-4.7 EDM with masking), the optimizer
// and the checkpoints. Randomness for step k comes from Philox(seed, k), so
// a resumed run draws exactly what an uninterrupted one would.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Trainer.h"

#include "diffrt/Error.h"
#include "diffrt/Rng.h"
#include "diffrt/Safetensors.h"
#include "diffrt/Samplers.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace diffrt {

namespace {

std::vector<int64_t> entryInputShape(const Plan &plan, const std::string &name) {
  const EntryDesc *e = plan.entry("train_step");
  for (auto &[n, id] : e->inputs)
    if (n == name)
      return plan.values[id].shape;
  return {};
}

/// A double as text that reads back to the same value.
std::string formatExact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

int64_t numel(const std::vector<int64_t> &s) {
  return std::accumulate(s.begin(), s.end(), int64_t(1), std::multiplies<int64_t>());
}

} // namespace

Trainer::Trainer(Session &session, TrainConfig config) : session_(session), config_(config) {
  const Plan &plan = session.module().plan();
  const EntryDesc *entry = plan.entry("train_step");
  if (!entry)
    fail(session.module().path(), ": not a training artifact (no 'train_step' entry); compile with "
         "--mode train");
  if (entry->outputs.size() != plan.params.size() + 1)
    fail(session.module().path(), ": train_step returns ", entry->outputs.size(),
         " values for ", plan.params.size(), " parameters (expected the loss and one gradient each)");
  xShape_ = entryInputShape(plan, "x");
  if (xShape_.size() != 4)
    fail(session.module().path(), ": train_step has no 4-d input 'x'");
  if (!entryInputShape(plan, "timesteps").empty())
    objective_ = "ddpm";
  else if (!entryInputShape(plan, "sigma").empty())
    objective_ = "edm";
  else
    objective_ = "rf";
  numClasses_ = session.module().modelInt("num_classes", 0);
  for (const ParamDesc &p : plan.params)
    names_.push_back(p.name);
  // f16 gradients underflow without a scaled loss; bf16 and f32 have f32's
  // exponent range and need none.
  dynamicScaling_ = !plan.params.empty() && plan.values[plan.params[0].value].dtype == DType::F16;
  // A power of two, so that scaling and unscaling are exact.
  int exponent = 0;
  if (!(config_.initialLossScale >= 1.0) || std::frexp(config_.initialLossScale, &exponent) != 0.5)
    fail("the initial loss scale must be a power of two of at least 1, got ", config_.initialLossScale);
  lossScale_ = dynamicScaling_ ? config_.initialLossScale : 1.0;
  session.initOptimizer(config_.emaDecay > 0);
}

double Trainer::step(const Batch &batch) {
  const Plan &plan = session_.module().plan();
  int64_t n = xShape_[0], per = numel(xShape_) / n;
  if (static_cast<int64_t>(batch.x0.size()) != n * per)
    fail("training batch holds ", batch.x0.size(), " values; the artifact was compiled for ",
         n * per, " (", n, " samples)");
  Philox rng(config_.seed, static_cast<uint64_t>(step_));
  std::map<std::string, HostTensor> feed;
  // The step's noise is the first n·per normals of this stream, drawn
  // where the step runs; the host draws what follows them.
  rng.skipNormals(n * per);
  NoisedInputs noised;
  noised.x0 = batch.x0.data();
  noised.samples = n;
  noised.perSample = per;
  noised.seed = config_.seed;
  noised.stream = static_cast<uint64_t>(step_);
  using Kind = NoisedInputs::Kind;

  if (!entryInputShape(plan, "y").empty()) {
    if (static_cast<int64_t>(batch.labels.size()) != n)
      fail("training batch has ", batch.labels.size(), " labels for ", n, " samples");
    std::vector<int32_t> y = batch.labels;
    for (int32_t &label : y) {
      if (label < 0 || label >= numClasses_)
        fail("training label ", label, " is outside [0, ", numClasses_, ")");
      if (rng.uniform() < config_.conditionDropout)
        label = static_cast<int32_t>(numClasses_);
    }
    feed["y"] = HostTensor::ints({n}, y);
  }
  if (std::vector<int64_t> cs = entryInputShape(plan, "captions"); !cs.empty()) {
    if (static_cast<int64_t>(batch.captions.size()) != numel(cs))
      fail("training batch has ", batch.captions.size(), " caption values, expected ", numel(cs));
    std::vector<float> c = batch.captions;
    int64_t perCaption = numel(cs) / n;
    for (int64_t i = 0; i < n; ++i)
      if (rng.uniform() < config_.conditionDropout)
        std::fill_n(c.begin() + i * perCaption, perCaption, 0.0f);
    feed["captions"] = HostTensor::floats(cs, c);
  }
  if (std::vector<int64_t> ks = entryInputShape(plan, "keep"); !ks.empty()) {
    int64_t tokens = (xShape_[2] / session_.module().modelInt("patch_size", 2)) *
                     (xShape_[3] / session_.module().modelInt("patch_size", 2));
    std::vector<int32_t> keep(numel(ks));
    for (int64_t i = 0; i < n; ++i) {
      // A uniformly random subset per sample (MicroDiT's argsort of noise).
      std::vector<int32_t> perm(tokens);
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t j = tokens - 1; j > 0; --j)
        std::swap(perm[j], perm[rng.nextU32() % (j + 1)]);
      std::copy_n(perm.begin(), ks[1], keep.begin() + i * ks[1]);
    }
    feed["keep"] = HostTensor::ints(ks, keep);
  }

  // x (and EDM's x_noisy) per sample s: c·(a·x0 + b·noise).
  NoisedInputs::Target mix{"x", Kind::Mix, std::vector<double>(n), std::vector<double>(n),
                           std::vector<double>(n, 1.0)};
  std::vector<float> t(n);
  if (objective_ == "ddpm") {
    static const GaussianDiffusion diffusion(1000);
    std::vector<int32_t> steps(n);
    for (int64_t i = 0; i < n; ++i) {
      steps[i] = static_cast<int32_t>(std::min<uint32_t>(rng.nextU32() % 1000, 999));
      double a = diffusion.alphasCumprod()[steps[i]];
      mix.a[i] = std::sqrt(a);
      mix.b[i] = std::sqrt(1.0 - a);
      t[i] = static_cast<float>(steps[i]);
    }
    feed["timesteps"] = HostTensor::ints({n}, steps);
    noised.targets = {mix, {"x_start", Kind::Data, {}, {}, {}}, {"noise", Kind::Noise, {}, {}, {}}};
  } else if (objective_ == "rf") {
    for (int64_t i = 0; i < n; ++i) {
      double u = 1.0 / (1.0 + std::exp(-rng.normal64())); // logit-normal(0, 1)
      mix.a[i] = 1 - u;
      mix.b[i] = u;
      t[i] = static_cast<float>(u);
    }
    noised.targets = {mix, {"x_start", Kind::Data, {}, {}, {}}, {"noise", Kind::Noise, {}, {}, {}}};
  } else {
    double sd = 0.9;
    std::vector<float> sigma(n);
    NoisedInputs::Target noisy{"x_noisy", Kind::Mix, std::vector<double>(n, 1.0), std::vector<double>(n),
                               std::vector<double>(n, 1.0)};
    for (int64_t i = 0; i < n; ++i) {
      double s = std::exp(config_.edmPMean + config_.edmPStd * rng.normal64());
      mix.a[i] = 1.0;
      mix.b[i] = noisy.b[i] = s;
      mix.c[i] = 1.0 / std::sqrt(s * s + sd * sd); // c_in
      sigma[i] = static_cast<float>(s);
      t[i] = static_cast<float>(std::log(s) / 4);
    }
    feed["sigma"] = HostTensor::floats({n}, sigma);
    noised.targets = {mix, noisy, {"x_start", Kind::Data, {}, {}, {}}};
  }
  feed["t"] = HostTensor::floats({n}, t);
  session_.writeNoisedInputs("train_step", noised);

  AdamWStep hyper;
  hyper.lr = config_.lr;
  hyper.beta1 = config_.beta1;
  hyper.beta2 = config_.beta2;
  hyper.eps = config_.eps;
  hyper.weightDecay = config_.weightDecay;
  hyper.gradClip = config_.gradClip;
  hyper.emaDecay = config_.emaDecay;
  hyper.step = appliedSteps_ + 1;
  hyper.lossScale = lossScale_;
  // Without clipping and loss scaling the backend may run the update inside
  // train_step, overlapped with the backward pass.
  const bool fused = config_.overlapOptimizer && config_.gradClip <= 0 && !dynamicScaling_ &&
                     lossScale_ == 1.0 && session_.fuseOptimizerStep(hyper);

  // Only the loss comes back; the gradients stay where the optimizer runs.
  session_.setLossScale(lossScale_);
  std::vector<HostTensor> out = session_.run("train_step", feed, 1);
  double loss = 0;
  for (float l : out[0].f32)
    loss += l;
  loss /= n;
  if (!std::isfinite(loss))
    fail("step ", step_, ": the loss is not finite (", loss, ")");

  if (fused) {
    lastGradNorm_ = session_.fusedGradNorm();
    ++step_;
    if (!std::isfinite(lastGradNorm_))
      fail("step ", step_ - 1, ": the gradient norm is not finite (", lastGradNorm_, "); the update is applied");
    ++appliedSteps_;
    return loss;
  }
  lastGradNorm_ = session_.optimizerStep(hyper);
  ++step_;
  if (!std::isfinite(lastGradNorm_)) {
    // f16 overflowed at this scale: skip the update and halve the scale
    // (the data of this step is consumed, as in PyTorch's GradScaler).
    if (!dynamicScaling_)
      fail("step ", step_ - 1, ": the gradient norm is not finite (", lastGradNorm_, ")");
    lossScale_ /= 2;
    goodSteps_ = 0;
    ++skippedSteps_;
    if (lossScale_ < 1.0 / 65536)
      fail("step ", step_ - 1, ": gradients are not finite even at loss scale ", lossScale_ * 2);
    return loss;
  }
  ++appliedSteps_;
  if (dynamicScaling_ && ++goodSteps_ >= kScaleGrowthInterval) {
    lossScale_ *= 2;
    goodSteps_ = 0;
  }
  return loss;
}

void Trainer::saveCheckpoint(const std::string &path) const {
  const Plan &plan = session_.module().plan();
  SafetensorsWriter w;
  for (size_t p = 0; p < names_.size(); ++p) {
    const std::vector<int64_t> &shape = plan.values[plan.params[p].value].shape;
    w.addF32("param/" + names_[p], shape, session_.optimizerState(OptimizerSlot::Master, p).data());
    w.addF32("adam_m/" + names_[p], shape, session_.optimizerState(OptimizerSlot::Moment1, p).data());
    w.addF32("adam_v/" + names_[p], shape, session_.optimizerState(OptimizerSlot::Moment2, p).data());
    if (config_.emaDecay > 0)
      w.addF32("ema/" + names_[p], shape, session_.optimizerState(OptimizerSlot::Ema, p).data());
  }
  w.setMetadata("diffc_checkpoint", "1");
  w.setMetadata("step", std::to_string(step_));
  w.setMetadata("applied_steps", std::to_string(appliedSteps_));
  w.setMetadata("loss_scale", formatExact(lossScale_));
  w.setMetadata("good_steps", std::to_string(goodSteps_));
  w.setMetadata("seed", std::to_string(config_.seed));
  w.setMetadata("model", session_.module().modelString("name", ""));
  w.write(path);
}

void Trainer::loadCheckpoint(const std::string &path) {
  const Plan &plan = session_.module().plan();
  SafetensorsFile f = SafetensorsFile::open(path);
  std::map<std::string, std::string> meta = f.metadata();
  if (!meta.count("diffc_checkpoint") || !meta.count("step"))
    fail(path, ": not a diffc training checkpoint (no diffc_checkpoint/step metadata)");
  if (meta.count("seed") && meta["seed"] != std::to_string(config_.seed))
    fail(path, ": written by a run with seed ", meta["seed"], ", this run uses seed ", config_.seed,
         "; resume with the same --seed");
  auto read = [&](const std::string &name, const std::vector<int64_t> &shape) {
    if (!f.contains(name))
      fail(path, ": missing tensor '", name, "'");
    if (f.info(name).shape != shape)
      fail(path, ": tensor '", name, "' has shape ", shapeText(f.info(name).shape), " but ",
           session_.module().path(), " needs ", shapeText(shape));
    return f.readF32(name);
  };
  for (size_t p = 0; p < names_.size(); ++p) {
    const std::vector<int64_t> &shape = plan.values[plan.params[p].value].shape;
    session_.setOptimizerState(OptimizerSlot::Master, p, read("param/" + names_[p], shape));
    session_.setOptimizerState(OptimizerSlot::Moment1, p, read("adam_m/" + names_[p], shape));
    session_.setOptimizerState(OptimizerSlot::Moment2, p, read("adam_v/" + names_[p], shape));
    if (config_.emaDecay > 0)
      session_.setOptimizerState(OptimizerSlot::Ema, p, read("ema/" + names_[p], shape));
  }
  auto integer = [&](const char *key, int64_t fallback) {
    if (!meta.count(key))
      return fallback;
    try {
      return static_cast<int64_t>(std::stoll(meta[key]));
    } catch (const std::exception &) {
      fail(path, ": metadata '", key, "' is not an integer: '", meta[key], "'");
    }
  };
  step_ = integer("step", 0);
  appliedSteps_ = integer("applied_steps", step_);
  goodSteps_ = integer("good_steps", 0);
  if (meta.count("loss_scale")) {
    try {
      lossScale_ = std::stod(meta["loss_scale"]);
    } catch (const std::exception &) {
      fail(path, ": metadata 'loss_scale' is not a number: '", meta["loss_scale"], "'");
    }
  }
}

void Trainer::saveWeights(const std::string &path, bool ema) const {
  if (!ema || config_.emaDecay <= 0) {
    session_.saveWeights(path);
    return;
  }
  const Plan &plan = session_.module().plan();
  SafetensorsWriter w;
  for (size_t p = 0; p < names_.size(); ++p) {
    const ValueDesc &v = plan.values[plan.params[p].value];
    const std::string &name = names_[p];
    std::vector<float> values = session_.optimizerState(OptimizerSlot::Ema, p);
    size_t at = name.find("{e}");
    if (at == std::string::npos) {
      w.addF32(name, v.shape, values.data());
      continue;
    }
    std::vector<int64_t> slice(v.shape.begin() + 1, v.shape.end());
    int64_t per = v.numel() / v.shape[0];
    for (int64_t e = 0; e < v.shape[0]; ++e)
      w.addF32(name.substr(0, at) + std::to_string(e) + name.substr(at + 3), slice, values.data() + e * per);
  }
  w.write(path);
}

} // namespace diffrt
