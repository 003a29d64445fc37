//===- Trainer.h - training compiled models ---------------------*- C++ -*-===//
//
// Runs a training artifact (compiled with --mode train): draws each step's
// noise, times and dropouts from a counter-based generator keyed by
// (seed, step), runs @train_step for the loss and every parameter's
// gradient, clips the global gradient norm, applies AdamW, and keeps an EMA
// of the weights, on the session's device (the gradients never leave it).
// f16 plans use dynamic loss scaling. Checkpoints hold the f32 master
// parameters, optimizer moments, the EMA and the step, and are written
// crash-safely; a run resumed from one ends
// with the same weights, bit for bit, as one that was not interrupted.
//
// Step k's draws from Philox(seed, k), in this order: the noise (the first
// N·C·H·W normals, drawn where the step runs: Session::writeNoisedInputs);
// a uniform per sample for label dropout and one per sample for caption
// dropout (where the model has them); MicroDiT's kept tokens (a Fisher–Yates
// shuffle per sample, nextU32 % (j + 1) from the last position down); then
// per sample the noise level: DDPM's timestep nextU32 % 1000, rectified
// flow's logit-normal u from normal64, EDM's log-normal sigma from normal64.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_TRAINER_H
#define DIFFRT_TRAINER_H

#include "diffrt/Session.h"

#include <string>
#include <vector>

namespace diffrt {

struct TrainConfig {
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0;
  /// Global gradient-norm clip; 0 disables it.
  double gradClip = 0.0;
  /// EMA decay per step (DiT: 0.9999); 0 disables the EMA.
  double emaDecay = 0.9999;
  uint64_t seed = 0;
  /// Probability of replacing a label by the null class (caption by zeros).
  double conditionDropout = 0.1;
  /// EDM's log-normal noise levels (MicroDiT 256 px stages).
  double edmPMean = -0.6, edmPStd = 1.2;
  /// Dynamic loss scaling of f16 plans: the starting scale (a power of two).
  double initialLossScale = 65536.0;
  /// Let the backend run the optimizer inside train_step, each parameter's
  /// update as soon as the backward pass is done with it (the CUDA backend
  /// overlaps it with the rest of the backward). Only steps without
  /// clipping and loss scaling can; the result is the same bits either way.
  bool overlapOptimizer = true;
};

/// One training batch of clean data.
struct Batch {
  std::vector<float> x0;          // N x C x H x W
  std::vector<int32_t> labels;    // N (class-conditional models)
  std::vector<float> captions;    // N x L x D (MicroDiT)
};

/// Initialises every parameter as the reference implementations do (spec
/// 2.5 and the families' variations): Xavier-uniform linear weights (the
/// patch embedding viewed as a (D, C·p·p) matrix; DiG's GLA projections with
/// gain 2^-2.5), zero biases, N(0, 0.02) label table and timestep MLP,
/// Kaiming-uniform(√5) MoE routers, unit norm weights, identity depth-wise
/// kernels, and zeros for every adaLN output layer and the final linear
/// layer (so the untrained network outputs exactly 0). Stacked expert
/// weights are initialised per expert.
void initializeParameters(Session &session, uint64_t seed);

class Trainer {
public:
  Trainer(Session &session, TrainConfig config);

  /// One optimizer step; returns the batch-mean loss (without auxiliary
  /// balance losses, which only enter the gradient).
  double step(const Batch &batch);
  int64_t stepCount() const { return step_; }
  /// Global gradient norm of the last step, before clipping.
  double lastGradNorm() const { return lastGradNorm_; }
  /// The current loss scale (1 unless the plan is f16) and the steps whose
  /// update was skipped because f16 gradients overflowed.
  double lossScale() const { return lossScale_; }
  int64_t skippedSteps() const { return skippedSteps_; }

  void saveCheckpoint(const std::string &path) const;
  void loadCheckpoint(const std::string &path);
  /// Writes the EMA weights (or the weights, without an EMA) under their
  /// checkpoint names: what sampling loads.
  void saveWeights(const std::string &path, bool ema = true) const;

  /// Shape of the training batch the artifact was compiled for.
  const std::vector<int64_t> &inputShape() const { return xShape_; }

private:
  Session &session_;
  TrainConfig config_;
  std::string objective_;
  std::vector<int64_t> xShape_;
  int64_t numClasses_ = 0;
  /// Batches consumed (the data and noise of step k come from Philox(seed, k)).
  int64_t step_ = 0;
  /// Optimizer updates applied (fewer than step_ when f16 overflow skipped some).
  int64_t appliedSteps_ = 0;
  double lastGradNorm_ = 0;
  std::vector<std::string> names_;
  /// Dynamic loss scaling (f16 plans): halve on overflow, double after
  /// kScaleGrowthInterval good steps.
  static constexpr int64_t kScaleGrowthInterval = 2000;
  bool dynamicScaling_ = false;
  double lossScale_ = 1.0;
  int64_t goodSteps_ = 0;
  int64_t skippedSteps_ = 0;
};

} // namespace diffrt

#endif // DIFFRT_TRAINER_H
