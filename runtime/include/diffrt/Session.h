//===- Session.h - loading and running compiled models ----------*- C++ -*-===//
//
// The API a trainer or sampler links (no MLIR anywhere below it):
//
//   diffrt::Module m = diffrt::Module::load("model.dfx");
//   diffrt::Session s(m, diffrt::Device::cpu());
//   s.loadWeights("w.safetensors");
//   auto out = s.run("forward", {{"x", x}, {"t", t}, {"y", y}});
//
// A Session owns the three memory regions of the plan on its device: the
// weights (loaded by checkpoint name), the constants (computed by the plan's
// "init" entry), and one arena for the activations of a call.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_SESSION_H
#define DIFFRT_SESSION_H

#include "diffrt/Plan.h"

#include <map>
#include <memory>
#include <cmath>
#include <string>
#include <vector>

namespace diffrt {

struct Device {
  enum class Kind { Cpu, Cuda } kind = Kind::Cpu;
  int index = 0;
  static Device cpu() { return {Kind::Cpu, 0}; }
  static Device cuda(int index = 0) { return {Kind::Cuda, index}; }
  std::string name() const;
};

/// A host tensor: float32 or int32 data with a shape.
struct HostTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<float> f32;
  std::vector<int32_t> i32;

  static HostTensor floats(std::vector<int64_t> shape, std::vector<float> data);
  static HostTensor ints(std::vector<int64_t> shape, std::vector<int32_t> data);
  int64_t numel() const;
};

/// A loaded, validated artifact.
class Module {
public:
  static Module load(const std::string &path);
  static Module fromPlan(Plan plan, std::string what);

  const Plan &plan() const { return *plan_; }
  const std::string &path() const { return path_; }
  /// A field of the model description (dit.model), as JSON text; empty when
  /// absent.
  std::string modelField(const std::string &name) const;
  int64_t modelInt(const std::string &name, int64_t fallback) const;
  std::string modelString(const std::string &name, const std::string &fallback) const;

private:
  std::shared_ptr<const Plan> plan_;
  std::string path_;
};

/// One AdamW step over every parameter (decoupled weight decay, bias
/// corrections for `step`, global-norm clipping, then the EMA).
struct AdamWStep {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.0;
  /// Clip the global gradient norm to this; 0: no clipping.
  double gradClip = 0.0;
  /// EMA decay; 0: no EMA update.
  double emaDecay = 0.0;
  /// 1-based count of applied steps, for the bias corrections.
  int64_t step = 1;
  /// The gradients are scaled by this (dynamic loss scaling); the step
  /// divides it out.
  double lossScale = 1.0;
};

/// The optimizer state of one parameter. Master is the f32 copy the
/// updates are applied to: the weights themselves in an f32 plan, a
/// separate copy (rounded into the weights after every step) in a 16-bit
/// plan.
enum class OptimizerSlot { Master, Moment1, Moment2, Ema };

/// A training step's noised inputs, made where the step runs from the
/// batch's clean data x0 (samples x perSample floats) and a standard normal
/// noise whose element i is element i of Philox(seed, stream).fillNormal
/// from a fresh generator (block i / 2; see Rng.h). Each target is one input
/// of the step: the data itself, the noise, or per sample s the mix
/// c[s]·(a[s]·x0 + b[s]·noise), taken in float64 (products and the sum
/// each rounded, no fused multiply-add), rounded to float and then to the
/// input's element type.
struct NoisedInputs {
  enum class Kind { Data, Noise, Mix };
  struct Target {
    std::string input;
    Kind kind = Kind::Data;
    std::vector<double> a, b, c;
  };
  const float *x0 = nullptr;
  int64_t samples = 0, perSample = 0;
  uint64_t seed = 0, stream = 0;
  std::vector<Target> targets;
};

/// Throws diffrt::Error unless `places` (one per target) can hold
/// `inputs`' targets and every mix has a coefficient per sample.
void checkNoisedInputs(const NoisedInputs &inputs, const std::vector<ValueDesc> &places);

/// Executes a plan's kernels on one device. Implemented per device kind.
class Backend {
public:
  virtual ~Backend();
  virtual void upload(Region region, uint64_t offset, const void *data, uint64_t bytes) = 0;
  virtual void download(Region region, uint64_t offset, void *data, uint64_t bytes) = 0;
  virtual void run(const EntryDesc &entry) = 0;
  /// Runs `entry` `warmup` times, then returns the time in milliseconds of
  /// each of `iterations` further runs, measured on the device (CUDA events
  /// around graph replays; the host clock on the CPU), inputs as they are.
  virtual std::vector<double> time(const EntryDesc &entry, int warmup, int iterations) = 0;
  /// The mean time in milliseconds of each kernel of `entry` over
  /// `iterations` runs, kernel by kernel (no graph: CUDA events between the
  /// launches on the GPU, the host clock on the CPU). Their sum exceeds a
  /// graph replay's time by the launch gaps.
  virtual std::vector<double> profileKernels(const EntryDesc &entry, int iterations) = 0;
  /// Fills `count` elements at a place with N(0, scale²) values from a
  /// counter-based generator seeded with `seed` (benchmarks and tests).
  virtual void fillNormal(Region region, uint64_t offset, DType dtype, int64_t count, uint64_t seed,
                          float scale) = 0;
  /// Writes `inputs`' targets into `places` (one value each, in order, with
  /// samples x perSample elements). This implementation computes them on
  /// the host and uploads them; a device that can draws them itself, to
  /// the same values (the reference for its tests).
  virtual void writeNoisedInputs(const NoisedInputs &inputs, const std::vector<ValueDesc> &places);

  /// Training: the optimizer runs where the gradients are. `params` are the
  /// parameters' value ids and `grads` those of their gradients (outputs of
  /// train_step), in the same order; state starts at zero moments, the EMA
  /// (when wanted) at the current weights.
  virtual void initOptimizer(const std::vector<int32_t> &params, const std::vector<int32_t> &grads,
                             bool ema) = 0;
  /// One step over every parameter. Returns the global norm of the
  /// unscaled gradients; when it is not finite nothing is changed.
  virtual double optimizerStep(const AdamWStep &step) = 0;
  /// Makes the next run of train_step also apply `step` (no clipping, no
  /// loss scaling), each parameter updated as soon as the backward pass no
  /// longer needs its weights and its gradient is final; returns false
  /// where the backend cannot (then call optimizerStep after the run). The
  /// global gradient norm of that step is then fusedGradNorm(); a
  /// non-finite one has already been applied.
  virtual bool fuseOptimizerStep(const AdamWStep & /*step*/) { return false; }
  virtual double fusedGradNorm() { return std::nan(""); }
  virtual std::vector<float> readOptimizer(OptimizerSlot slot, size_t param) = 0;
  /// Writing Master also sets the weights.
  virtual void writeOptimizer(OptimizerSlot slot, size_t param, const std::vector<float> &values) = 0;
  /// The factor the loss kernels' gradients are multiplied by.
  virtual void setLossScale(double scale) = 0;
  /// Bytes this backend holds on its device: regions, kernel workspace and
  /// optimizer state (what a peak-memory comparison counts).
  virtual uint64_t deviceBytes() const = 0;
  /// Kernels of `entry`'s captured graph that run on a second stream,
  /// overlapping the main chain (0 where there is none).
  virtual size_t sideStreamKernels(const std::string &/*entry*/) const { return 0; }
};

std::unique_ptr<Backend> createCpuBackend(const Plan &plan);
/// Throws diffrt::Error when this runtime was built without CUDA or no GPU
/// is usable.
std::unique_ptr<Backend> createCudaBackend(const Plan &plan, int device);

class Session {
public:
  Session(const Module &module, Device device);
  ~Session();
  Session(Session &&) noexcept;

  const Module &module() const { return module_; }
  Device device() const { return device_; }

  /// Loads every parameter from a safetensors checkpoint by name, converting
  /// dtypes. Missing, extra or mis-shaped tensors are reported together,
  /// naming the file; checkpoint copies of computed state (pos_embed,
  /// mask_token) are checked against what the model computes.
  void loadWeights(const std::string &path);
  /// Writes every parameter under its checkpoint name (stacked parameters
  /// as one tensor per slice), crash-safely.
  void saveWeights(const std::string &path) const;
  /// Sets one parameter (by its plan name) from float32 values.
  void setParameter(const std::string &name, const std::vector<float> &values);
  std::vector<float> getParameter(const std::string &name) const;
  /// Names of every parameter, with stacked ones expanded.
  std::vector<std::string> checkpointNames() const;
  /// Gives every parameter N(0, scale²) values (on the device, so even a
  /// 16B-parameter model is filled in seconds): for benchmarks, never zeros.
  void randomizeParameters(uint64_t seed, float scale);
  /// Device-timed runs of an entry with the inputs of the last run().
  std::vector<double> time(const std::string &entry, int warmup, int iterations);
  /// Per-kernel times of an entry (see Backend::profileKernels), after one
  /// warm-up run; inputs as they are.
  std::vector<double> profileKernels(const std::string &entry, int iterations);

  /// Runs an entry; inputs by name, float inputs as f32 and integer inputs
  /// as i32 whatever the plan's element types; outputs come back as f32.
  std::vector<HostTensor> run(const std::string &entry,
                              const std::map<std::string, HostTensor> &inputs);
  /// Like run, but downloads only the first `count` outputs; the others
  /// stay on the device (a training step's gradients, for the optimizer).
  std::vector<HostTensor> run(const std::string &entry, const std::map<std::string, HostTensor> &inputs,
                              size_t count);
  /// Writes noised inputs of `entry` on its device (see NoisedInputs); the
  /// next run() takes them as given when it runs `entry`, and its `inputs`
  /// name the others. Any run drops them (another entry may reuse their
  /// memory). A training step thus uploads the batch instead of drawing and
  /// uploading its noise and mixes on the host.
  void writeNoisedInputs(const std::string &entry, const NoisedInputs &inputs);

  /// Training (see Backend): state for every parameter, whose gradients
  /// are train_step's outputs 1..P.
  void initOptimizer(bool ema);
  /// One optimizer step; re-runs "init" when it reads parameters.
  double optimizerStep(const AdamWStep &step);
  /// See Backend::fuseOptimizerStep; fusedGradNorm() after the run.
  bool fuseOptimizerStep(const AdamWStep &step);
  double fusedGradNorm();
  std::vector<float> optimizerState(OptimizerSlot slot, size_t param) const;
  void setOptimizerState(OptimizerSlot slot, size_t param, const std::vector<float> &values);
  void setLossScale(double scale);
  /// Bytes held on the device (see Backend::deviceBytes).
  uint64_t deviceBytes() const;
  /// See Backend::sideStreamKernels.
  size_t sideStreamKernels(const std::string &entry) const;

private:
  void runInit();
  Module module_;
  Device device_;
  std::unique_ptr<Backend> backend_;
  /// Whether "init" reads a parameter, so that an optimizer step must
  /// re-run it (none of today's models; the plan format allows it).
  bool initReadsWeights_ = false;
  /// Inputs written by writeNoisedInputs for the next run of entry
  /// stagedEntry_.
  std::string stagedEntry_;
  std::vector<std::string> staged_;
};

} // namespace diffrt

#endif // DIFFRT_SESSION_H
