//===- CudaBackend.cu - runs a plan's kernels on a GPU --------------------===//
//
// The CUDA backend: weights, constants and arena are single device
// allocations, plus one workspace sized for the most demanding kernel of the
// plan. An entry's kernels are launched on one stream; after the first
// (checked) run of "forward", the whole entry is captured into a CUDA graph
// and replayed, so a sampling step costs one launch. The captured forward
// runs in two lanes (launchInLanes): kernels independent of the main chain
// overlap it on a second stream. Index errors found on
// the device (labels, kept-token indices) set a flag that is read after
// each call.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"
#include "diffrt/CudaKernels.h"
#include "diffrt/Error.h"
#include "diffrt/KernelSignatures.h"
#include "diffrt/Session.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include <cmath>
#include <memory>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace diffrt {

namespace {

namespace cu = diffrt::cuda;

/// N(0, scale²) fill from a counter hash (splitmix64 of seed and index,
/// Box–Muller): reproducible, fast enough for billions of parameters.
template <typename T>
__global__ void fillNormalKernel(T *out, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float u1 = ((z >> 40) + 0.5f) / 16777216.0f;
    float u2 = (((z >> 16) & 0xffffff) + 0.5f) / 16777216.0f;
    float v = scale * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    if constexpr (std::is_same_v<T, float>)
      out[i] = v;
    else if constexpr (std::is_same_v<T, __half>)
      out[i] = __float2half_rn(v);
    else
      out[i] = __float2bfloat16_rn(v);
  }
}

cu::ScanOrder scanOrder(const std::string &name) {
  if (name == "row_major")
    return cu::ScanOrder::RowMajor;
  if (name == "row_major_reversed")
    return cu::ScanOrder::RowMajorReversed;
  if (name == "col_major")
    return cu::ScanOrder::ColMajor;
  return cu::ScanOrder::ColMajorReversed;
}

cu::Act actOf(const std::string &name) {
  if (name == "gelu")
    return cu::Act::Gelu;
  if (name == "gelu_tanh")
    return cu::Act::GeluTanh;
  if (name == "silu")
    return cu::Act::Silu;
  return cu::Act::None;
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / 1048576.0);
  return buf;
}

class CudaBackend : public Backend {
public:
  CudaBackend(const Plan &plan, int device) : plan(plan), device(device) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
      fail("no usable CUDA device: ",
           e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount reports 0 devices");
    if (device >= count)
      fail("CUDA device ", device, " requested but only ", count, " present");
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    for (size_t i = 0; i < plan.values.size(); ++i) {
      DType t = plan.values[i].dtype;
      if (t != DType::F16 && t != DType::BF16 && t != DType::F32 && t != DType::I32)
        fail("value #", i, " has dtype ", dtypeName(t), ", which the CUDA backend does not run");
    }
    workspaceBytes = 0;
    for (const EntryDesc &entry : plan.entries)
      for (const KernelDesc &k : entry.kernels)
        workspaceBytes = std::max(workspaceBytes, workspaceFor(k));

    size_t freeBytes = 0, totalBytes = 0;
    cu::check(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    uint64_t need = plan.weightsBytes + plan.constantsBytes + plan.arenaBytes + workspaceBytes + 256;
    if (need > freeBytes)
      fail("out of GPU memory: the model needs ", mib(need), " (weights ", mib(plan.weightsBytes),
           ", constants ", mib(plan.constantsBytes), ", arena ", mib(plan.arenaBytes),
           ", kernel workspace ", mib(workspaceBytes), ") but device ", device, " has ",
           mib(freeBytes), " free of ", mib(totalBytes));
    regions[0] = allocate(plan.weightsBytes, "weights");
    regions[1] = allocate(plan.constantsBytes, "constants");
    if (const char *poison = std::getenv("DIFFRT_POISON_MEMORY"); poison && std::string(poison) == "1")
      poisonScratch = true;
    regions[2] = allocateScratch(plan.arenaBytes, "arena");
    workspace = allocateScratch(workspaceBytes, "kernel workspace");
    errorFlag = reinterpret_cast<int32_t *>(allocate(sizeof(int32_t), "error flag"));
    lossScale = reinterpret_cast<float *>(allocate(sizeof(float), "loss scale"));
    const float one = 1.0f;
    cu::check(cudaMemcpy(lossScale, &one, sizeof(float), cudaMemcpyHostToDevice), "loss scale");
    cu::check(cudaMemset(errorFlag, 0, sizeof(int32_t)), "cudaMemset(error flag)");
    cu::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    current = stream;
    currentWorkspace = {workspace, workspaceBytes};
    if (!plan.deviceCode.empty())
      generated = std::make_unique<cu::GeneratedKernels>(
          std::string(plan.deviceCode.begin(), plan.deviceCode.end()), "the artifact's generated kernels");
    // The set-up above ran on the legacy stream, which the non-blocking
    // stream of every later call does not wait for.
    cu::check(cudaDeviceSynchronize(), "device set-up");
  }

  ~CudaBackend() override {
    cudaSetDevice(device);
    releaseFusedOptimizer();
    for (auto &[name, exec] : graphs)
      cudaGraphExecDestroy(exec);
    for (auto &[name, sched] : lanes)
      for (cudaEvent_t e : sched.eventAfter)
        if (e)
          cudaEventDestroy(e);
    for (auto &[name, sched] : weightGradLanes)
      for (const auto *events : {&sched.ready, &sched.done})
        for (cudaEvent_t e : *events)
          if (e)
            cudaEventDestroy(e);
    if (forkEvent)
      cudaEventDestroy(forkEvent);
    if (joinEvent)
      cudaEventDestroy(joinEvent);
    if (sideStream)
      cudaStreamDestroy(sideStream);
    if (stream)
      cudaStreamDestroy(stream);
    for (void *p : allocations)
      cudaFree(p);
  }

  void upload(Region region, uint64_t offset, const void *data, uint64_t bytes) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    cu::check(cudaMemcpyAsync(base(region) + offset, data, bytes, cudaMemcpyHostToDevice, stream),
              "copy to the GPU");
    cu::check(cudaStreamSynchronize(stream), "copy to the GPU");
  }

  void download(Region region, uint64_t offset, void *data, uint64_t bytes) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    cu::check(cudaMemcpyAsync(data, base(region) + offset, bytes, cudaMemcpyDeviceToHost, stream),
              "copy from the GPU");
    cu::check(cudaStreamSynchronize(stream), "copy from the GPU");
  }

  void run(const EntryDesc &entry) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    // A fused optimizer step applies to this run only (and only to
    // train_step); its graph is a separate one.
    const bool withOptimizer = fusePending && entry.name == "train_step";
    fusePending = false;
    const std::string key = withOptimizer ? entry.name + "+optimizer" : entry.name;
    // The captured graph: the forward in two lanes, the training step with
    // its weight-gradient products (and the fused optimizer) on a lane of
    // their own. The first, uncaptured run is single-stream: the GEMM tuner
    // times its candidates there, undisturbed.
    auto launchOnce = [&] {
      if (entry.name == "train_step" && !singleStream())
        launchTrainLanes(entry, withOptimizer);
      else if (withOptimizer)
        launchWithOptimizer(entry);
      else if (entry.name == "forward" && !singleStream())
        launchInLanes(entry);
      else
        launchAll(entry);
    };
    auto graph = graphs.find(key);
    if (graph != graphs.end()) {
      cu::check(cudaGraphLaunch(graph->second, stream), "cudaGraphLaunch");
    } else {
      if (withOptimizer)
        launchWithOptimizer(entry);
      else
        launchAll(entry);
      // Capture once the entry has run cleanly; "init" runs rarely.
      if (entry.name == "forward" || entry.name == "train_step") {
        cu::check(cudaStreamSynchronize(stream), "forward");
        // Schedules allocate their buffers, which a capture forbids.
        if (!singleStream())
          entry.name == "forward" ? (void)scheduleLanes(entry) : (void)scheduleWeightGrads(entry);
        cudaGraph_t g;
        cu::check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "graph capture");
        try {
          launchOnce();
        } catch (...) {
          cudaStreamEndCapture(stream, &g);
          current = stream;
          currentWorkspace = {workspace, workspaceBytes};
          throw;
        }
        cu::check(cudaStreamEndCapture(stream, &g), "graph capture");
        cudaGraphExec_t exec;
        cu::check(cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate");
        cudaGraphDestroy(g);
        graphs[key] = exec;
      }
    }
    cu::check(cudaStreamSynchronize(stream), ("entry '" + entry.name + "'").c_str());
    int32_t flag = 0;
    cu::check(cudaMemcpy(&flag, errorFlag, sizeof(flag), cudaMemcpyDeviceToHost), "error flag");
    if (flag) {
      cudaMemsetAsync(errorFlag, 0, sizeof(int32_t), stream);
      cudaStreamSynchronize(stream);
      fail("entry '", entry.name, "': an input index was out of range (a class label outside "
           "[0, num_classes] or a kept-token index outside the sequence or repeated; code ", flag, ")");
    }
  }

  std::vector<double> time(const EntryDesc &entry, int warmup, int iterations) override {
    for (int i = 0; i < std::max(warmup, 2); ++i) // the first two runs capture the graph
      run(entry);
    cudaEvent_t start, stop;
    cu::check(cudaEventCreate(&start), "cudaEventCreate");
    cu::check(cudaEventCreate(&stop), "cudaEventCreate");
    std::vector<double> ms;
    for (int i = 0; i < iterations; ++i) {
      cu::check(cudaEventRecord(start, stream), "cudaEventRecord");
      launch(entry);
      cu::check(cudaEventRecord(stop, stream), "cudaEventRecord");
      cu::check(cudaEventSynchronize(stop), ("timing entry '" + entry.name + "'").c_str());
      float elapsed = 0;
      cu::check(cudaEventElapsedTime(&elapsed, start, stop), "cudaEventElapsedTime");
      ms.push_back(elapsed);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return ms;
  }

  std::vector<double> profileKernels(const EntryDesc &entry, int iterations) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    size_t n = entry.kernels.size();
    std::vector<cudaEvent_t> events(n + 1);
    for (cudaEvent_t &e : events)
      cu::check(cudaEventCreate(&e), "cudaEventCreate");
    std::vector<double> ms(n, 0.0);
    try {
      for (int it = 0; it < iterations; ++it) {
        for (size_t i = 0; i < n; ++i) {
          cu::check(cudaEventRecord(events[i], stream), "cudaEventRecord");
          dispatch(entry.kernels[i]);
        }
        cu::check(cudaEventRecord(events[n], stream), "cudaEventRecord");
        cu::check(cudaEventSynchronize(events[n]), ("profiling entry '" + entry.name + "'").c_str());
        for (size_t i = 0; i < n; ++i) {
          float elapsed = 0;
          cu::check(cudaEventElapsedTime(&elapsed, events[i], events[i + 1]), "cudaEventElapsedTime");
          ms[i] += elapsed;
        }
      }
    } catch (...) {
      for (cudaEvent_t e : events)
        cudaEventDestroy(e);
      throw;
    }
    for (cudaEvent_t e : events)
      cudaEventDestroy(e);
    for (double &t : ms)
      t /= iterations;
    return ms;
  }

  void fillNormal(Region region, uint64_t offset, DType dtype, int64_t count, uint64_t seed,
                  float scale) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    void *p = base(region) + offset;
    unsigned blocks = static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 65536));
    if (dtype == DType::F16)
      fillNormalKernel<<<blocks, 256, 0, stream>>>(static_cast<__half *>(p), count, seed, scale);
    else if (dtype == DType::BF16)
      fillNormalKernel<<<blocks, 256, 0, stream>>>(static_cast<__nv_bfloat16 *>(p), count, seed, scale);
    else if (dtype == DType::F32)
      fillNormalKernel<<<blocks, 256, 0, stream>>>(static_cast<float *>(p), count, seed, scale);
    else
      fail("fillNormal: unsupported dtype ", dtypeName(dtype));
    cu::check(cudaGetLastError(), "fillNormal launch");
    cu::check(cudaStreamSynchronize(stream), "fillNormal");
  }

  void writeNoisedInputs(const NoisedInputs &inputs, const std::vector<ValueDesc> &places) override {
    checkNoisedInputs(inputs, places);
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    const int64_t count = inputs.samples * inputs.perSample;
    if (count == 0 || places.empty())
      return;
    // One buffer: the data, then (a, b, c) per sample for each mix.
    std::vector<double> coef;
    std::vector<size_t> coefAt(places.size(), 0);
    for (size_t k = 0; k < places.size(); ++k) {
      const NoisedInputs::Target &t = inputs.targets[k];
      if (t.kind != NoisedInputs::Kind::Mix)
        continue;
      coefAt[k] = coef.size();
      for (int64_t s = 0; s < inputs.samples; ++s)
        coef.insert(coef.end(), {t.a[s], t.b[s], t.c[s]});
    }
    const uint64_t dataBytes = (static_cast<uint64_t>(count) * sizeof(float) + 255) / 256 * 256;
    uint8_t *scratch = noisedScratch(dataBytes + coef.size() * sizeof(double));
    // Pageable copies return once the host memory is read.
    cu::check(cudaMemcpyAsync(scratch, inputs.x0, static_cast<size_t>(count) * sizeof(float),
                              cudaMemcpyHostToDevice, stream),
              "training batch upload");
    const double *coefOnDevice = reinterpret_cast<const double *>(scratch + dataBytes);
    if (!coef.empty())
      cu::check(cudaMemcpyAsync(scratch + dataBytes, coef.data(), coef.size() * sizeof(double),
                                cudaMemcpyHostToDevice, stream),
                "noised input coefficients upload");
    std::vector<cu::NoisedTarget> targets;
    for (size_t k = 0; k < places.size(); ++k) {
      const ValueDesc &v = places[k];
      cu::NoisedTarget t;
      switch (inputs.targets[k].kind) {
      case NoisedInputs::Kind::Data: t.kind = cu::NoisedTarget::Kind::Data; break;
      case NoisedInputs::Kind::Noise: t.kind = cu::NoisedTarget::Kind::Noise; break;
      case NoisedInputs::Kind::Mix: t.kind = cu::NoisedTarget::Kind::Mix; break;
      }
      t.data = base(v.region) + v.offset;
      t.cols = v.cols();
      t.ld = v.ld;
      t.dtype = v.dtype;
      t.coef = coefOnDevice + coefAt[k];
      targets.push_back(t);
    }
    cu::noisedInputs(stream, reinterpret_cast<const float *>(scratch), inputs.samples, inputs.perSample,
                     inputs.seed, inputs.stream, targets.data(), static_cast<int>(targets.size()));
  }

  void initOptimizer(const std::vector<int32_t> &params, const std::vector<int32_t> &grads, bool ema) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    if (params.empty())
      fail("initOptimizer: no parameters");
    DType dt = desc(params[0]).dtype;
    int64_t total = 0;
    for (size_t p = 0; p < params.size(); ++p) {
      if (desc(params[p]).dtype != dt || desc(grads[p]).dtype != dt)
        fail("initOptimizer: parameter #", p, " or its gradient is not ", dtypeName(dt),
             " like the first parameter; the fused optimizer takes one element type");
      total += desc(params[p]).numel();
    }
    const bool needMaster = dt != DType::F32;
    const int slots = 2 + (ema ? 1 : 0) + (needMaster ? 1 : 0);
    size_t freeBytes = 0, totalBytes = 0;
    cu::check(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    uint64_t need = static_cast<uint64_t>(slots) * total * sizeof(float);
    if (need > freeBytes)
      fail("out of GPU memory: the optimizer state (", slots, " f32 copies of ", total, " parameters) needs ",
           mib(need), " but device ", device, " has ", mib(freeBytes), " free of ", mib(totalBytes));
    float *m = reinterpret_cast<float *>(allocate(total * sizeof(float), "AdamW first moments"));
    float *v = reinterpret_cast<float *>(allocate(total * sizeof(float), "AdamW second moments"));
    float *e = ema ? reinterpret_cast<float *>(allocate(total * sizeof(float), "EMA weights")) : nullptr;
    float *master = needMaster ? reinterpret_cast<float *>(allocate(total * sizeof(float), "f32 master weights"))
                               : nullptr;
    cu::check(cudaMemsetAsync(m, 0, total * sizeof(float), stream), "optimizer state clear");
    cu::check(cudaMemsetAsync(v, 0, total * sizeof(float), stream), "optimizer state clear");
    optimizer.clear();
    optimizerParams = params;
    optimizerGrads = grads;
    releaseFusedOptimizer();
    std::vector<cu::AdamWTensor> tensors;
    int64_t at = 0;
    for (size_t p = 0; p < params.size(); ++p) {
      int64_t n = desc(params[p]).numel();
      cu::AdamWTensor t;
      t.weight = ptr(params[p]);
      t.grad = ptr(grads[p]);
      t.m = m + at;
      t.v = v + at;
      t.ema = e ? e + at : nullptr;
      t.master = master ? master + at : nullptr;
      t.n = n;
      // The master and the EMA start from the current weights.
      for (float *copy : {t.master, t.ema})
        if (copy)
          cu::cast(s(), dt, t.weight, DType::F32, copy, n);
      tensors.push_back(t);
      optimizer.push_back(t);
      at += n;
    }
    adamw = std::make_unique<cu::MultiTensorAdamW>(tensors, dt);
    optimizerTableBytes = adamw->deviceBytes();
    normOnDevice = reinterpret_cast<double *>(allocate(sizeof(double), "gradient norm"));
    cu::check(cudaStreamSynchronize(stream), "optimizer set-up");
  }

  bool fuseOptimizerStep(const AdamWStep &step) override {
    if (!adamw)
      fail("fuseOptimizerStep before initOptimizer");
    static const bool disabled = [] {
      const char *v = std::getenv("DIFFRT_OPTIMIZER_IN_GRAPH");
      return v && std::string(v) == "0";
    }();
    if (disabled || step.gradClip > 0 || step.lossScale != 1.0)
      return false;
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    adamw->setHyper(s(), hyperOf(step));
    fusePending = true;
    return true;
  }

  double fusedGradNorm() override {
    double norm = 0;
    copyOnStream(&norm, normOnDevice, sizeof(double), cudaMemcpyDeviceToHost, "gradient norm");
    return norm;
  }

  static cu::AdamWHyper hyperOf(const AdamWStep &step) {
    cu::AdamWHyper h;
    h.lr = static_cast<float>(step.lr);
    h.beta1 = static_cast<float>(step.beta1);
    h.beta2 = static_cast<float>(step.beta2);
    h.eps = static_cast<float>(step.eps);
    h.weightDecay = static_cast<float>(step.weightDecay);
    h.gradClip = static_cast<float>(step.gradClip);
    h.emaDecay = static_cast<float>(step.emaDecay);
    h.correction1 = static_cast<float>(1.0 / (1.0 - std::pow(step.beta1, static_cast<double>(step.step))));
    h.correction2 = static_cast<float>(1.0 / (1.0 - std::pow(step.beta2, static_cast<double>(step.step))));
    h.lossScale = static_cast<float>(step.lossScale);
    return h;
  }

  double optimizerStep(const AdamWStep &step) override {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    if (!adamw)
      fail("optimizerStep before initOptimizer");
    cu::AdamWHyper h = hyperOf(step);
    adamw->step(s(), h, normOnDevice);
    double norm = 0;
    cu::check(cudaMemcpyAsync(&norm, normOnDevice, sizeof(double), cudaMemcpyDeviceToHost, stream),
              "gradient norm");
    cu::check(cudaStreamSynchronize(stream), "optimizer step");
    return norm;
  }

  std::vector<float> readOptimizer(OptimizerSlot slot, size_t param) override {
    const cu::AdamWTensor &t = optimizerTensor(param);
    std::vector<float> out(t.n);
    if (slot == OptimizerSlot::Master && !t.master) {
      download(desc(paramValue(param)).region, desc(paramValue(param)).offset, out.data(), t.n * sizeof(float));
      return out;
    }
    const float *src = slotPtr(slot, t);
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    copyOnStream(out.data(), src, t.n * sizeof(float), cudaMemcpyDeviceToHost, "optimizer state download");
    return out;
  }

  void writeOptimizer(OptimizerSlot slot, size_t param, const std::vector<float> &values) override {
    const cu::AdamWTensor &t = optimizerTensor(param);
    if (slot == OptimizerSlot::Master && !t.master) {
      upload(desc(paramValue(param)).region, desc(paramValue(param)).offset, values.data(), t.n * sizeof(float));
      return;
    }
    float *dst = const_cast<float *>(slotPtr(slot, t));
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    copyOnStream(dst, values.data(), t.n * sizeof(float), cudaMemcpyHostToDevice, "optimizer state upload");
    if (slot == OptimizerSlot::Master) {
      cu::cast(s(), DType::F32, t.master, desc(paramValue(param)).dtype, t.weight, t.n);
      cu::check(cudaStreamSynchronize(stream), "master weights to the plan's weights");
    }
  }

  uint64_t deviceBytes() const override { return allocatedBytes + optimizerTableBytes; }

  size_t sideStreamKernels(const std::string &entry) const override {
    if (auto w = weightGradLanes.find(entry); w != weightGradLanes.end())
      return static_cast<size_t>(std::count(w->second.onLane.begin(), w->second.onLane.end(), 1));
    auto it = lanes.find(entry);
    return it == lanes.end() ? 0 : static_cast<size_t>(std::count(it->second.lane.begin(), it->second.lane.end(), 1));
  }

  void setLossScale(double scale) override {
    float v = static_cast<float>(scale);
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    copyOnStream(lossScale, &v, sizeof(float), cudaMemcpyHostToDevice, "loss scale");
  }

private:
  std::vector<cu::AdamWTensor> optimizer;
  /// The optimizer's parameters and their gradients (value ids).
  std::vector<int32_t> optimizerParams, optimizerGrads;
  /// The next run of train_step applies the step given to fuseOptimizerStep.
  bool fusePending = false;
  std::unique_ptr<cu::MultiTensorAdamW> adamw;
  double *normOnDevice = nullptr;
  /// Device f32 factor of the loss gradients (dynamic loss scaling).
  float *lossScale = nullptr;

  /// A copy ordered with the kernels on `stream` and finished on return.
  /// (cudaMemcpy from pageable memory may return before its DMA lands, and
  /// runs on the legacy stream, which `stream` does not wait for: a kernel
  /// launched next could read the old values.)
  void copyOnStream(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what) {
    cu::check(cudaMemcpyAsync(dst, src, bytes, kind, stream), what);
    cu::check(cudaStreamSynchronize(stream), what);
  }

  const cu::AdamWTensor &optimizerTensor(size_t param) {
    if (param >= optimizer.size())
      fail("optimizer state of parameter #", param, " requested, but the optimizer holds ", optimizer.size());
    return optimizer[param];
  }
  int32_t paramValue(size_t param) { return plan.params.at(param).value; }
  const float *slotPtr(OptimizerSlot slot, const cu::AdamWTensor &t) {
    switch (slot) {
    case OptimizerSlot::Master: return t.master;
    case OptimizerSlot::Moment1: return t.m;
    case OptimizerSlot::Moment2: return t.v;
    case OptimizerSlot::Ema:
      if (!t.ema)
        fail("the optimizer keeps no EMA");
      return t.ema;
    }
    return nullptr;
  }

  /// One launch of an entry: its graph if captured, else its kernels.
  void launch(const EntryDesc &entry) {
    auto graph = graphs.find(entry.name);
    if (graph != graphs.end())
      cu::check(cudaGraphLaunch(graph->second, stream), "cudaGraphLaunch");
    else
      launchAll(entry);
  }

  const Plan &plan;
  int device;
  cudaStream_t stream = nullptr;
  uint8_t *regions[3] = {nullptr, nullptr, nullptr};
  void *workspace = nullptr;
  uint64_t workspaceBytes = 0;
  int32_t *errorFlag = nullptr;
  std::vector<void *> allocations;
  uint64_t allocatedBytes = 0, optimizerTableBytes = 0;
  std::map<std::string, cudaGraphExec_t> graphs;
  cu::Gemm gemm;
  // The stream and workspace the kernel being dispatched uses: the main
  // ones, or the side lane's while capturing a forward graph in two lanes.
  cudaStream_t current = nullptr;
  cu::Workspace currentWorkspace;

  /// Two-lane schedule of a captured entry (see launchInLanes).
  struct LaneSchedule {
    std::vector<uint8_t> lane;
    /// Kernel of the other lane this kernel waits for, or -1.
    std::vector<int> waitFor;
    /// Events recorded after the kernels some other-lane kernel waits for.
    std::vector<cudaEvent_t> eventAfter;
  };
  std::map<std::string, LaneSchedule> lanes;
  cudaStream_t sideStream = nullptr;
  void *sideWorkspace = nullptr;
  uint64_t sideWorkspaceBytes = 0;
  cudaEvent_t forkEvent = nullptr, joinEvent = nullptr;

  static bool singleStream() {
    const char *v = std::getenv("DIFFRT_SINGLE_STREAM");
    return v && std::string(v) == "1";
  }

  /// Bytes a kernel reads or writes: [begin, end) in a space, which is a
  /// Region or one of the weight-gradient lane's dz buffers.
  struct Extent {
    uint32_t space;
    uint64_t begin, end;
  };
  static constexpr uint32_t kDzBufferSpace = 16;
  Extent extentOf(int32_t id) {
    return {static_cast<uint32_t>(desc(id).region), desc(id).offset, desc(id).offset + desc(id).extentBytes()};
  }
  /// The extents of `ids` outside the weights (read-only while sampling).
  void extentsOf(const std::vector<int32_t> &ids, std::vector<Extent> &out) {
    for (int32_t id : ids)
      if (id >= 0 && desc(id).region != Region::Weights)
        out.push_back(extentOf(id));
  }
  static bool overlap(const std::vector<Extent> &a, const std::vector<Extent> &b) {
    for (const Extent &x : a)
      for (const Extent &y : b)
        if (x.space == y.space && x.begin < y.end && y.begin < x.end)
          return true;
    return false;
  }

  /// Splits an entry over the main stream and a side stream. Kernel j
  /// depends on an earlier kernel i when one writes bytes the other reads or
  /// writes (the arena planner reuses memory, so write-after-read counts).
  /// A small kernel (results of at most kSideRows rows: the per-sample
  /// conditioning path, not token-level work) that does not depend on the
  /// last main-lane kernel before it goes to the side lane, where it
  /// overlaps that kernel; each kernel waits for the latest kernel of the
  /// other lane it depends on. Kernels of one lane keep program order.
  /// Token-level kernels stay on the main lane: run beside each other they
  /// contend for the SMs (MicroDiT's caption projections on the side lane
  /// made its forward 2% slower on an H100).
  const LaneSchedule &scheduleLanes(const EntryDesc &entry) {
    auto found = lanes.find(entry.name);
    if (found != lanes.end())
      return found->second;
    constexpr uint64_t kSideWorkspaceLimit = 32ull << 20;
    constexpr int64_t kSideRows = 1024;
    auto small = [&](const KernelDesc &k) {
      for (int32_t id : k.results)
        if (id >= 0 && desc(id).rows() > kSideRows)
          return false;
      return true;
    };
    size_t n = entry.kernels.size();
    std::vector<std::vector<Extent>> reads(n), writes(n);
    for (size_t i = 0; i < n; ++i) {
      extentsOf(entry.kernels[i].operands, reads[i]);
      extentsOf(entry.kernels[i].results, writes[i]);
    }
    auto depends = [&](size_t j, size_t i) {
      return overlap(writes[i], reads[j]) || overlap(writes[i], writes[j]) || overlap(reads[i], writes[j]);
    };
    LaneSchedule sched;
    sched.lane.assign(n, 0);
    sched.waitFor.assign(n, -1);
    sched.eventAfter.assign(n, nullptr);
    int lastMain = -1;
    uint64_t sideBytes = 0;
    for (size_t j = 0; j < n; ++j) {
      uint64_t need = workspaceFor(entry.kernels[j]);
      bool side = lastMain >= 0 && need <= kSideWorkspaceLimit && small(entry.kernels[j]) &&
                  !depends(j, static_cast<size_t>(lastMain));
      sched.lane[j] = side ? 1 : 0;
      if (side)
        sideBytes = std::max(sideBytes, need);
      else
        lastMain = static_cast<int>(j);
      for (size_t i = j; i-- > 0;)
        if (sched.lane[i] != sched.lane[j] && depends(j, i)) {
          sched.waitFor[j] = static_cast<int>(i);
          break;
        }
    }
    if (std::count(sched.lane.begin(), sched.lane.end(), 1) > 0) {
      ensureSideStream();
      if (sideBytes > sideWorkspaceBytes) {
        sideWorkspace = allocateScratch(sideBytes, "side-lane workspace");
        sideWorkspaceBytes = sideBytes;
      }
      for (size_t j = 0; j < n; ++j)
        if (sched.waitFor[j] >= 0 && !sched.eventAfter[sched.waitFor[j]])
          cu::check(cudaEventCreateWithFlags(&sched.eventAfter[sched.waitFor[j]], cudaEventDisableTiming),
                    "cudaEventCreate");
    }
    return lanes[entry.name] = std::move(sched);
  }

  /// launchAll over two lanes (during graph capture: the graph gets the
  /// lanes as parallel branches joined at the end).
  void launchInLanes(const EntryDesc &entry) {
    const LaneSchedule &sched = scheduleLanes(entry);
    if (!sideStream)
      return launchAll(entry);
    cu::check(cudaEventRecord(forkEvent, stream), "fork to the side lane");
    cu::check(cudaStreamWaitEvent(sideStream, forkEvent, 0), "fork to the side lane");
    for (size_t i = 0; i < entry.kernels.size(); ++i) {
      bool side = sched.lane[i] == 1;
      current = side ? sideStream : stream;
      currentWorkspace = side ? cu::Workspace{sideWorkspace, sideWorkspaceBytes} : cu::Workspace{workspace, workspaceBytes};
      if (sched.waitFor[i] >= 0)
        cu::check(cudaStreamWaitEvent(current, sched.eventAfter[sched.waitFor[i]], 0), "lane dependency");
      dispatchAt(entry, i);
      if (sched.eventAfter[i])
        cu::check(cudaEventRecord(sched.eventAfter[i], current), "lane dependency");
    }
    current = stream;
    currentWorkspace = {workspace, workspaceBytes};
    cu::check(cudaEventRecord(joinEvent, sideStream), "join the side lane");
    cu::check(cudaStreamWaitEvent(stream, joinEvent, 0), "join the side lane");
  }
  /// The training step's weight-gradient lane. A dense layer's backward
  /// (vjp:kern.gemm) runs its chain rule and input-gradient product on the
  /// main stream and its weight-gradient product dW = dzᵀ·a on the side
  /// stream, which nothing on the main stream waits for unless it must: the
  /// products then fill the SMs the main stream's tails and memory-bound
  /// passes leave idle, and the fused optimizer's updates follow them on the
  /// same lane. A product reads `a`, and dOut or its dz buffer; it writes
  /// dW. A main-stream kernel that writes what a pending product reads (the
  /// arena planner reuses memory), or touches what it writes, first waits
  /// for the latest such product (the lane runs in order, so the earlier
  /// ones are done too). dz goes to one of kDzBuffers buffers in turn
  /// rather than to the shared workspace; the chain rule that next writes a
  /// buffer waits for the product that read it.
  struct WeightGradSchedule {
    /// Per kernel: its weight-gradient product runs on the lane.
    std::vector<uint8_t> onLane;
    /// Per kernel: the lane's product (by kernel) to wait for first, or -1.
    std::vector<int> waitFor;
    /// Per kernel on the lane: its dz buffer, or -1 (it reads dOut).
    std::vector<int> dzBuffer;
    /// Per kernel on the lane: recorded on the main stream once dz is
    /// written (the product's start), and on the lane after the product.
    std::vector<cudaEvent_t> ready, done;
  };
  static constexpr int kDzBuffers = 3;
  std::map<std::string, WeightGradSchedule> weightGradLanes;
  std::vector<void *> dzBuffers;
  uint64_t dzBufferBytes = 0;
  /// The lane the dense-layer backward being dispatched uses, or null.
  const cu::WeightGradLane *pendingLane = nullptr;

  static uint64_t laneDelayNs() {
    const char *v = std::getenv("DIFFRT_LANE_DELAY_US");
    return v ? std::strtoull(v, nullptr, 10) * 1000 : 0;
  }

  uint64_t dzBytesOf(const KernelDesc &k) {
    const ValueDesc &a = desc(k.operands[0]);
    return cu::gemmBackwardDzBytes(a.rows(), desc(k.operands[1]).shape[0], a.dtype,
                                   actOf(attrString(k, "act")), k.operands[3] >= 0);
  }

  const WeightGradSchedule &scheduleWeightGrads(const EntryDesc &entry) {
    auto found = weightGradLanes.find(entry.name);
    if (found != weightGradLanes.end())
      return found->second;
    const size_t n = entry.kernels.size();
    WeightGradSchedule sched;
    sched.onLane.assign(n, 0);
    sched.waitFor.assign(n, -1);
    sched.dzBuffer.assign(n, -1);
    sched.ready.assign(n, nullptr);
    sched.done.assign(n, nullptr);
    // The lane's products so far: kernel, what it reads, what it writes.
    struct Pending {
      size_t kernel;
      std::vector<Extent> reads, writes;
    };
    std::vector<Pending> lane;
    uint64_t dzNeed = 0;
    int nextBuffer = 0;
    for (size_t j = 0; j < n; ++j) {
      const KernelDesc &k = entry.kernels[j];
      std::vector<Extent> reads, writes;
      // Every region: the lane writes gradients wherever they live.
      for (int32_t id : k.operands)
        if (id >= 0)
          reads.push_back(extentOf(id));
      std::optional<Pending> product;
      if (k.op == "vjp:kern.gemm" && k.results.size() > 1 && k.results[1] >= 0) {
        const size_t sl = k.results.size(), saved = static_cast<size_t>(savedCount(k));
        Pending p{j, {extentOf(k.operands[0])}, {extentOf(k.results[1])}};
        const uint64_t dz = dzBytesOf(k);
        if (dz > 0) {
          sched.dzBuffer[j] = nextBuffer;
          nextBuffer = (nextBuffer + 1) % kDzBuffers;
          dzNeed = std::max(dzNeed, dz);
          Extent buffer{kDzBufferSpace + static_cast<uint32_t>(sched.dzBuffer[j]), 0, dz};
          p.reads.push_back(buffer);
          writes.push_back(buffer);
        } else {
          p.reads.push_back(extentOf(k.operands[sl + saved]));
        }
        product = std::move(p);
      }
      for (size_t r = 0; r < k.results.size(); ++r)
        if (k.results[r] >= 0 && !(product && r == 1))
          writes.push_back(extentOf(k.results[r]));
      // A kernel whose own results overlap what its product reads or
      // writes (an in-place result) keeps its product on the main stream.
      if (product && (overlap(writes, product->reads) || overlap(writes, product->writes))) {
        if (sched.dzBuffer[j] >= 0)
          nextBuffer = sched.dzBuffer[j];
        sched.dzBuffer[j] = -1;
        writes.push_back(product->writes.front());
        product.reset();
      }
      for (size_t q = lane.size(); q-- > 0;) {
        const Pending &p = lane[q];
        if (overlap(writes, p.reads) || overlap(writes, p.writes) || overlap(reads, p.writes)) {
          sched.waitFor[j] = static_cast<int>(p.kernel);
          break;
        }
      }
      if (product) {
        sched.onLane[j] = 1;
        lane.push_back(std::move(*product));
      }
    }
    if (!lane.empty()) {
      ensureSideStream();
      const uint64_t sideNeed = cu::Gemm::productWorkspaceBytes();
      if (sideNeed > sideWorkspaceBytes) {
        sideWorkspace = allocateScratch(sideNeed, "weight-gradient lane workspace");
        sideWorkspaceBytes = sideNeed;
      }
      if (dzNeed > dzBufferBytes) {
        dzBuffers.clear();
        for (int b = 0; b < kDzBuffers; ++b)
          dzBuffers.push_back(allocateScratch(dzNeed, "weight-gradient lane dz buffers"));
        dzBufferBytes = dzNeed;
      }
      for (size_t j = 0; j < n; ++j) {
        if (!sched.onLane[j])
          continue;
        cu::check(cudaEventCreateWithFlags(&sched.ready[j], cudaEventDisableTiming), "cudaEventCreate");
        cu::check(cudaEventCreateWithFlags(&sched.done[j], cudaEventDisableTiming), "cudaEventCreate");
      }
    }
    return weightGradLanes[entry.name] = std::move(sched);
  }

  /// train_step with its weight-gradient products on the side stream (see
  /// WeightGradSchedule), and the fused optimizer's updates after them when
  /// `withOptimizer` (see launchWithOptimizer); the lane is joined at the
  /// end.
  void launchTrainLanes(const EntryDesc &entry, bool withOptimizer) {
    const WeightGradSchedule &sched = scheduleWeightGrads(entry);
    if (std::count(sched.onLane.begin(), sched.onLane.end(), 1) == 0)
      return withOptimizer ? launchWithOptimizer(entry) : launchAll(entry);
    const OptimizerSegments *seg = withOptimizer ? &segmentsFor(entry) : nullptr;
    const uint64_t delay = laneDelayNs();
    cu::check(cudaEventRecord(forkEvent, stream), "fork to the weight-gradient lane");
    cu::check(cudaStreamWaitEvent(sideStream, forkEvent, 0), "fork to the weight-gradient lane");
    current = stream;
    currentWorkspace = {workspace, workspaceBytes};
    try {
      for (size_t i = 0; i < entry.kernels.size(); ++i) {
        if (sched.waitFor[i] >= 0)
          cu::check(cudaStreamWaitEvent(stream, sched.done[sched.waitFor[i]], 0), "weight-gradient lane dependency");
        cu::WeightGradLane lane;
        if (sched.onLane[i]) {
          lane.stream = sideStream;
          lane.workspace = {sideWorkspace, sideWorkspaceBytes};
          lane.ready = sched.ready[i];
          if (sched.dzBuffer[i] >= 0)
            lane.dz = {dzBuffers[static_cast<size_t>(sched.dzBuffer[i])], dzBufferBytes};
          lane.delayNs = delay;
          pendingLane = &lane;
        }
        dispatchAt(entry, i);
        pendingLane = nullptr;
        if (sched.onLane[i])
          cu::check(cudaEventRecord(sched.done[i], sideStream), "weight-gradient lane dependency");
        if (seg && !seg->after[i].empty()) {
          cu::check(cudaEventRecord(seg->ready[i], stream), "optimizer dependency");
          cu::check(cudaStreamWaitEvent(sideStream, seg->ready[i], 0), "optimizer dependency");
          for (auto [first, count] : seg->after[i])
            adamw->stepTensors(cu::Stream{sideStream}, first, count);
        }
      }
    } catch (...) {
      pendingLane = nullptr;
      throw;
    }
    if (seg)
      adamw->finishNorm(cu::Stream{sideStream}, normOnDevice);
    cu::check(cudaEventRecord(joinEvent, sideStream), "join the weight-gradient lane");
    cu::check(cudaStreamWaitEvent(stream, joinEvent, 0), "join the weight-gradient lane");
  }

  /// Where a fused optimizer step updates each parameter: after the last
  /// kernel of the entry that writes its gradient or reads its weights
  /// (later kernels must see the old weights), as runs of consecutive
  /// parameters per kernel.
  struct OptimizerSegments {
    /// Per kernel: (first parameter, count) runs updated after it.
    std::vector<std::vector<std::pair<size_t, size_t>>> after;
    std::vector<cudaEvent_t> ready;
  };
  std::map<std::string, OptimizerSegments> optimizerSegments;

  /// Forgets what a fused optimizer step captured: the graphs with the
  /// optimizer in them (they point at its tables) and the segments' events.
  void releaseFusedOptimizer() {
    for (auto it = graphs.begin(); it != graphs.end();) {
      if (it->first.size() > 10 && it->first.compare(it->first.size() - 10, 10, "+optimizer") == 0) {
        cudaGraphExecDestroy(it->second);
        it = graphs.erase(it);
      } else {
        ++it;
      }
    }
    for (auto &[name, seg] : optimizerSegments)
      for (cudaEvent_t e : seg.ready)
        if (e)
          cudaEventDestroy(e);
    optimizerSegments.clear();
  }

  const OptimizerSegments &segmentsFor(const EntryDesc &entry) {
    auto found = optimizerSegments.find(entry.name);
    if (found != optimizerSegments.end())
      return found->second;
    struct Span {
      Region region;
      uint64_t begin, end;
    };
    auto spanOf = [&](int32_t id) {
      const ValueDesc &v = desc(id);
      return Span{v.region, v.offset, v.offset + v.extentBytes()};
    };
    auto hits = [](const Span &a, const Span &b) {
      return a.region == b.region && a.begin < b.end && b.begin < a.end;
    };
    const size_t n = entry.kernels.size(), params = optimizerParams.size();
    std::vector<int64_t> last(params, 0);
    for (size_t p = 0; p < params; ++p) {
      const Span weight = spanOf(optimizerParams[p]), grad = spanOf(optimizerGrads[p]);
      for (size_t i = 0; i < n; ++i) {
        const KernelDesc &k = entry.kernels[i];
        bool touches = false;
        for (int32_t id : k.operands)
          touches |= id >= 0 && hits(spanOf(id), weight);
        for (int32_t id : k.results)
          touches |= id >= 0 && (hits(spanOf(id), grad) || hits(spanOf(id), weight));
        if (touches)
          last[p] = static_cast<int64_t>(i);
      }
    }
    OptimizerSegments seg;
    seg.after.resize(n);
    seg.ready.assign(n, nullptr);
    for (size_t p = 0; p < params; ++p) {
      auto &runs = seg.after[static_cast<size_t>(last[p])];
      if (!runs.empty() && runs.back().first + runs.back().second == p)
        ++runs.back().second;
      else
        runs.push_back({p, 1});
    }
    for (size_t i = 0; i < n; ++i)
      if (!seg.after[i].empty())
        cu::check(cudaEventCreateWithFlags(&seg.ready[i], cudaEventDisableTiming), "cudaEventCreate");
    return optimizerSegments[entry.name] = std::move(seg);
  }

  /// launchAll with the fused optimizer step on the side stream: each run
  /// of parameters is updated once the main stream is past its last kernel,
  /// overlapping the backward kernels after it; the gradient norm is
  /// finished at the end and the side stream joined.
  void launchWithOptimizer(const EntryDesc &entry) {
    const OptimizerSegments &seg = segmentsFor(entry);
    ensureSideStream();
    cu::check(cudaEventRecord(forkEvent, stream), "fork to the optimizer stream");
    cu::check(cudaStreamWaitEvent(sideStream, forkEvent, 0), "fork to the optimizer stream");
    current = stream;
    currentWorkspace = {workspace, workspaceBytes};
    for (size_t i = 0; i < entry.kernels.size(); ++i) {
      dispatchAt(entry, i);
      if (seg.after[i].empty())
        continue;
      cu::check(cudaEventRecord(seg.ready[i], stream), "optimizer dependency");
      cu::check(cudaStreamWaitEvent(sideStream, seg.ready[i], 0), "optimizer dependency");
      for (auto [first, count] : seg.after[i])
        adamw->stepTensors(cu::Stream{sideStream}, first, count);
    }
    adamw->finishNorm(cu::Stream{sideStream}, normOnDevice);
    cu::check(cudaEventRecord(joinEvent, sideStream), "join the optimizer stream");
    cu::check(cudaStreamWaitEvent(stream, joinEvent, 0), "join the optimizer stream");
  }

  void ensureSideStream() {
    if (sideStream)
      return;
    cu::check(cudaStreamCreateWithFlags(&sideStream, cudaStreamNonBlocking), "cudaStreamCreate (side lane)");
    cu::check(cudaEventCreateWithFlags(&forkEvent, cudaEventDisableTiming), "cudaEventCreate");
    cu::check(cudaEventCreateWithFlags(&joinEvent, cudaEventDisableTiming), "cudaEventCreate");
  }

  std::unique_ptr<cu::GeneratedKernels> generated;

  /// DIFFRT_POISON_MEMORY=1 fills every scratch buffer (the arena, the
  /// workspaces, the lanes' dz buffers, the batch copy) with NaN as it is
  /// allocated (all bits set, NaN in every float type), so a kernel that
  /// reads memory no kernel wrote shows up as NaN in its first run instead
  /// of as values that depend on what the previous call left behind.
  bool poisonScratch = false;

  /// allocate(), poisoned under DIFFRT_POISON_MEMORY=1. Buffers are
  /// allocated on a call's first, uncaptured run; the fill completes before
  /// any stream can use the buffer.
  uint8_t *allocateScratch(uint64_t bytes, const char *what) {
    uint8_t *p = allocate(bytes, what);
    if (poisonScratch) {
      cu::check(cudaMemset(p, 0xff, bytes), "poisoning a scratch buffer");
      cu::check(cudaDeviceSynchronize(), "poisoning a scratch buffer");
    }
    return p;
  }

  uint8_t *allocate(uint64_t bytes, const char *what) {
    if (bytes == 0)
      bytes = 256;
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation)
      fail("out of GPU memory allocating the ", what, " (", mib(bytes), "): ", cudaGetErrorString(e));
    if (e != cudaSuccess)
      fail("allocating the ", what, " (", mib(bytes), "): ", cudaGetErrorString(e));
    allocations.push_back(p);
    allocatedBytes += bytes;
    return static_cast<uint8_t *>(p);
  }

  /// writeNoisedInputs' device copy of the batch, grown to the largest
  /// asked for (one size per plan in practice).
  uint8_t *noisedScratch(uint64_t bytes) {
    if (bytes > noisedBytes) {
      if (noised != nullptr) {
        cudaFree(noised);
        allocations.erase(std::find(allocations.begin(), allocations.end(), static_cast<void *>(noised)));
        allocatedBytes -= noisedBytes;
        noised = nullptr;
        noisedBytes = 0;
      }
      noised = allocateScratch(bytes, "training batch");
      noisedBytes = bytes;
    }
    return noised;
  }
  uint8_t *noised = nullptr;
  uint64_t noisedBytes = 0;

  uint8_t *base(Region r) { return regions[static_cast<int>(r)]; }
  const ValueDesc &desc(int32_t id) { return plan.values[id]; }
  void *ptr(int32_t id) { return id < 0 ? nullptr : base(desc(id).region) + desc(id).offset; }
  cu::DConstMat cm(int32_t id) {
    if (id < 0)
      return {};
    const ValueDesc &v = desc(id);
    return {ptr(id), v.rows(), v.cols(), v.ld};
  }
  cu::DMat m(int32_t id) {
    const ValueDesc &v = desc(id);
    return {ptr(id), v.rows(), v.cols(), v.ld};
  }
  cu::Workspace ws() { return currentWorkspace; }
  cu::Stream s() { return current; }

  bool epilogue(const KernelDesc &k, size_t r, cu::GatedResidual &out) {
    if (k.operands[r] < 0)
      return false;
    out.residual = cm(k.operands[r]);
    out.gate = cm(k.operands[r + 1]);
    out.rowsPerGate = desc(k.operands[r]).shape[1];
    return true;
  }

  uint64_t workspaceFor(const KernelDesc &k) {
    if (k.op.rfind("vjp:", 0) == 0)
      return vjpWorkspaceFor(k);
    const auto &o = k.operands;
    if (k.op == "kern.gemm") {
      const ValueDesc &a = desc(o[0]), &w = desc(o[1]);
      return cu::Gemm::workspaceBytes(a.rows(), w.shape[0], w.shape[1], o[3] >= 0, a.dtype);
    }
    if (k.op == "kern.swiglu") {
      const ValueDesc &x = desc(o[0]), &g = desc(o[1]), &d = desc(o[3]);
      int64_t hidden = o[2] >= 0 ? g.shape[0] : g.shape[0] / 2;
      return cu::swigluWorkspaceBytes(x.rows(), hidden, d.shape[0], x.dtype);
    }
    if (k.op == "kern.patch_embed") {
      const ValueDesc &x = desc(o[0]), &w = desc(o[1]);
      return cu::patchEmbedWorkspaceBytes(x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[2],
                                          x.dtype);
    }
    if (k.op == "dit.gla") {
      const ValueDesc &q = desc(o[0]), &v = desc(o[2]);
      int64_t h = attrInt(k, "num_heads");
      return cu::glaWorkspaceBytes(q.shape[0], q.shape[1], h, q.shape[2] / h, v.shape[2] / h,
                                   attrInt(k, "chunk_size"));
    }
    if (k.op == "kern.moe") {
      const ValueDesc &x = desc(o[0]);
      if (attrString(k, "routing") == "token_choice") {
        cu::TokenChoiceArgs a = tokenChoice(k, nullptr);
        const bool keep = k.results.size() > 1 && k.results[1] >= 0;
        return cu::moeTokenChoiceWorkspaceBytes(x.rows(), x.cols(), a, x.dtype, keep);
      }
      cu::ExpertChoiceArgs a = expertChoice(k, nullptr);
      return cu::moeExpertChoiceWorkspaceBytes(x.rows(), x.cols(), a, x.dtype);
    }
    return 0;
  }

  /// Scratch of a backward kernel (operands: the forward slots, then the
  /// incoming gradients).
  uint64_t vjpWorkspaceFor(const KernelDesc &k) {
    const std::string op = k.op.substr(4);
    const auto &o = k.operands;
    if (op == "kern.gemm") {
      const ValueDesc &a = desc(o[0]), &w = desc(o[1]);
      return cu::gemmBackwardWorkspaceBytes(a.rows(), w.shape[0], w.shape[1], a.dtype, savedCount(k) > 0,
                                            o[3] >= 0 ? desc(o[3]).shape[1] : 0);
    }
    if (op == "kern.swiglu") {
      const ValueDesc &x = desc(o[0]), &g = desc(o[1]), &d = desc(o[3]);
      int64_t hidden = o[2] >= 0 ? g.shape[0] : g.shape[0] / 2;
      return cu::swigluBackwardWorkspaceBytes(x.rows(), hidden, d.shape[0], x.dtype,
                                              o[4] >= 0 ? desc(o[4]).shape[1] : 0);
    }
    if (op == "kern.norm") {
      const ValueDesc &x = desc(o[0]);
      return cu::normBackwardWorkspaceBytes(x.rows(), x.cols(), attrInt(k, "group_size"),
                                            o[3] >= 0 ? x.shape[1] : 1, x.dtype);
    }
    if (op == "kern.moe") {
      const ValueDesc &x = desc(o[0]);
      if (attrString(k, "routing") == "token_choice")
        return cu::moeTokenChoiceBackwardWorkspaceBytes(x.rows(), x.cols(), tokenChoice(k, nullptr), x.dtype);
      return cu::moeExpertChoiceBackwardWorkspaceBytes(x.rows(), x.cols(), expertChoice(k, nullptr), x.dtype);
    }
    if (op == "kern.dwconv") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      return cu::depthwiseConvBackwardWorkspaceBytes(x.shape[0], grid[0], grid[1], x.shape[2],
                                                     desc(o[1]).shape[2]);
    }
    if (op == "kern.patch_embed") {
      const ValueDesc &x = desc(o[0]), &w = desc(o[1]);
      return cu::patchEmbedBackwardWorkspaceBytes(x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0],
                                                  w.shape[2], x.dtype);
    }
    if (op == "dit.attention" || op == "kern.attention") {
      const ValueDesc &q = desc(o[0]), &kk = desc(o[1]);
      int64_t h = attrInt(k, "num_heads");
      return cu::attentionBackwardWorkspaceBytes(q.shape[0], q.shape[1], kk.shape[1], h, q.shape[2] / h, q.dtype,
                                                 desc(o[2]).shape[2] / h, k.attrs.count("column_sums") > 0);
    }
    if (op == "dit.gla") {
      const ValueDesc &q = desc(o[0]), &v = desc(o[2]);
      int64_t h = attrInt(k, "num_heads");
      return cu::glaBackwardWorkspaceBytes(q.shape[0], q.shape[1], h, q.shape[2] / h, v.shape[2] / h,
                                           attrInt(k, "chunk_size"));
    }
    if (op == "dit.ddpm_loss" || op == "dit.rf_loss" || op == "dit.edm_loss")
      return static_cast<uint64_t>(desc(o[0]).shape[0]) * sizeof(float);
    return 0;
  }

  cu::TokenChoiceArgs tokenChoice(const KernelDesc &k, const cu::GatedResidual *e) {
    const auto &o = k.operands;
    cu::TokenChoiceArgs a;
    a.router = ptr(o[1]);
    a.experts = desc(o[1]).shape[0];
    a.hidden = desc(o[2]).shape[1];
    a.topK = attrInt(k, "top_k");
    a.normalize = attrInt(k, "normalize") != 0;
    a.gate = ptr(o[2]);
    a.up = ptr(o[3]);
    a.down = ptr(o[4]);
    a.sharedGate = ptr(o[5]);
    a.sharedUp = ptr(o[6]);
    a.sharedDown = ptr(o[7]);
    a.sharedHidden = o[5] >= 0 ? desc(o[5]).shape[0] : 0;
    a.epilogue = e;
    return a;
  }

  cu::ExpertChoiceArgs expertChoice(const KernelDesc &k, const cu::GatedResidual *e) {
    const auto &o = k.operands;
    bool outIn = attrString(k, "weight_layout") == "out_in";
    cu::ExpertChoiceArgs a;
    a.router = ptr(o[1]);
    a.experts = desc(o[1]).shape[0];
    a.hidden = outIn ? desc(o[2]).shape[1] : desc(o[2]).shape[2];
    a.tokens = desc(o[0]).shape[1];
    a.capacity = attrFloat(k, "capacity");
    a.inOut = !outIn;
    a.act = attrString(k, "activation") == "gelu_tanh" ? cu::Act::GeluTanh : cu::Act::Gelu;
    a.w1 = ptr(o[2]);
    a.w2 = ptr(o[3]);
    a.epilogue = e;
    return a;
  }

  /// Kernel i of `entry`, its errors named by its place in the entry.
  void dispatchAt(const EntryDesc &entry, size_t i) {
    const KernelDesc &k = entry.kernels[i];
    try {
      dispatch(k);
    } catch (const Error &e) {
      fail("kernel #", i, " (", k.op, ") of '", entry.name, "': ", e.what());
    }
  }

  void launchAll(const EntryDesc &entry) {
    for (size_t i = 0; i < entry.kernels.size(); ++i)
      dispatchAt(entry, i);
  }

  cu::DMat mOpt(int32_t id) { return id < 0 ? cu::DMat{} : m(id); }

  cu::NormArgs normArgs(const KernelDesc &k) {
    const auto &o = k.operands;
    cu::NormArgs a;
    a.kind = attrString(k, "kind") == "rms" ? cu::NormKind::Rms : cu::NormKind::Layer;
    a.group = attrInt(k, "group_size");
    a.eps = static_cast<float>(attrFloat(k, "epsilon"));
    a.weight = ptr(o[1]);
    a.bias = ptr(o[2]);
    a.shift = cm(o[3]);
    a.scale = cm(o[4]);
    if (o[3] >= 0)
      a.rowsPerSample = desc(o[0]).shape[1];
    a.siluGate = cm(o[5]);
    return a;
  }

  /// The loss kernels: values into `loss` (f32), and with `weight` > 0 the
  /// gradient of weight·lossScale·Σ loss into dPrediction.
  void loss(const KernelDesc &k, const std::string &op, float *lossOut, float weight, void *dPrediction) {
    const auto &o = k.operands;
    DType dt = desc(o[0]).dtype;
    auto f32 = [&](int32_t id) {
      if (desc(id).dtype != DType::F32)
        fail(op, ": operand #", id, " must be f32, got ", dtypeName(desc(id).dtype));
      return static_cast<const float *>(ptr(id));
    };
    if (op == "dit.ddpm_loss") {
      const ValueDesc &x0 = desc(o[1]);
      cu::ddpmLoss(s(), dt, ptr(o[0]), ptr(o[1]), ptr(o[2]), ptr(o[3]), static_cast<const int32_t *>(ptr(o[4])),
                   x0.shape[0], x0.shape[1], x0.shape[2] * x0.shape[3], attrInt(k, "num_timesteps"), lossOut,
                   weight, lossScale, dPrediction);
    } else if (op == "dit.rf_loss") {
      const ValueDesc &p = desc(o[0]), &x0 = desc(o[1]);
      cu::rfLoss(s(), dt, ptr(o[0]), ptr(o[1]), ptr(o[2]), x0.shape[0], x0.shape[1], p.shape[1],
                 x0.shape[2] * x0.shape[3], lossOut, weight, lossScale, dPrediction);
    } else {
      const ValueDesc &x0 = desc(o[2]);
      cu::edmLoss(s(), dt, ptr(o[0]), ptr(o[1]), ptr(o[2]), f32(o[3]),
                  o[4] >= 0 ? static_cast<const int32_t *>(ptr(o[4])) : nullptr, o[4] >= 0 ? desc(o[4]).shape[1] : 0,
                  x0.shape[0], x0.shape[1], x0.shape[2], x0.shape[3], attrInt(k, "patch_size"),
                  attrFloat(k, "sigma_data"), lossOut, weight, lossScale, dPrediction);
    }
  }

  /// Backward kernels: operands are the forward slots, the values the
  /// forward op saved, then the incoming gradients; result i is the
  /// gradient of forward slot i (-1: not wanted).
  void dispatchVjp(const KernelDesc &k) {
    const std::string op = k.op.substr(4);
    const auto &o = k.operands;
    const auto &r = k.results;
    const size_t sl = slotCount(k), saved = static_cast<size_t>(savedCount(k));
    auto dOut = [&](size_t i = 0) { return cm(o[sl + saved + i]); };
    DType dt = desc(o[0]).dtype;
    if (op == "kern.gemm") {
      cu::GatedResidual e;
      bool hasE = epilogue(k, 3, e);
      cu::GemmGrads g{mOpt(r[0]), ptr(r[1]), ptr(r[2]), mOpt(r[4])};
      if (k.attrs.count("input_grad_act")) {
        g.inputAct = actOf(attrString(k, "input_grad_act"));
        g.inputPreact = cm(o.back());
      }
      cu::gemmBackward(s(), gemm, dt, cm(o[0]), cm(o[1]), ptr(o[2]), actOf(attrString(k, "act")),
                       hasE ? &e : nullptr, dOut(), g, ws(), saved > 0 ? cm(o[sl]) : cu::DConstMat{}, pendingLane);
    } else if (op == "kern.swiglu") {
      cu::DConstMat gate = cm(o[1]), up;
      cu::SwiGluGrads g;
      g.dX = mOpt(r[0]);
      g.dDownW = ptr(r[3]);
      g.dGate = mOpt(r[5]);
      if (o[2] >= 0) {
        up = cm(o[2]);
        g.dGateW = ptr(r[1]);
        g.dUpW = ptr(r[2]);
      } else {
        int64_t f = gate.rows / 2;
        up = {static_cast<const uint8_t *>(gate.data) + f * gate.ld * dtypeSize(dt), f, gate.cols, gate.ld};
        gate.rows = f;
        g.dGateW = ptr(r[1]);
        g.dUpW = r[1] >= 0 ? static_cast<uint8_t *>(ptr(r[1])) + f * gate.cols * dtypeSize(dt) : nullptr;
      }
      g.gateLd = g.upLd = gate.cols;
      cu::GatedResidual e;
      bool hasE = epilogue(k, 4, e);
      cu::swigluBackward(s(), gemm, dt, cm(o[0]), gate, up, cm(o[3]), hasE ? &e : nullptr, dOut(), g, ws());
    } else if (op == "kern.norm") {
      cu::NormGrads g;
      g.dX = mOpt(r[0]);
      g.dWeight = ptr(r[1]);
      g.dBias = ptr(r[2]);
      g.dShift = mOpt(r[3]);
      g.dScale = mOpt(r[4]);
      g.dSiluGate = mOpt(r[5]);
      if (k.attrs.count("input_grad_addend"))
        g.dXAddend = cm(o.back());
      cu::normBackward(s(), dt, cm(o[0]), normArgs(k), dOut(), g, ws());
    } else if (op == "kern.moe") {
      cu::GatedResidual e;
      bool hasE = epilogue(k, 8, e);
      if (attrString(k, "routing") == "token_choice") {
        cu::TokenChoiceGrads g;
        g.dX = mOpt(r[0]);
        g.dRouter = ptr(r[1]);
        g.dGate = ptr(r[2]);
        g.dUp = ptr(r[3]);
        g.dDown = ptr(r[4]);
        g.dSharedGate = ptr(r[5]);
        g.dSharedUp = ptr(r[6]);
        g.dSharedDown = ptr(r[7]);
        g.dEpilogueGate = mOpt(r[9]);
        g.balanceCoef = attrFloat(k, "balance_coef");
        cu::TokenChoiceArgs a = tokenChoice(k, hasE ? &e : nullptr);
        if (saved > 0)
          a.activations = ptr(o[sl]);
        cu::moeTokenChoiceBackward(s(), gemm, dt, cm(o[0]), a, dOut(), g, ws());
      } else {
        cu::ExpertChoiceGrads g{mOpt(r[0]), ptr(r[1]), ptr(r[2]), ptr(r[3]), mOpt(r[9])};
        cu::moeExpertChoiceBackward(s(), gemm, dt, cm(o[0]), expertChoice(k, hasE ? &e : nullptr), dOut(), g, ws());
      }
    } else if (op == "kern.dwconv") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      cu::depthwiseConvBackward(s(), dt, cm(o[0]), x.shape[0], grid[0], grid[1], ptr(o[1]), desc(o[1]).shape[2],
                                scanOrder(attrString(k, "from")), scanOrder(attrString(k, "to")), dOut(),
                                mOpt(r[0]), ptr(r[1]), ptr(r[2]), ws());
    } else if (op == "kern.patch_embed") {
      const ValueDesc &x = desc(o[0]), &w = desc(o[1]);
      cu::patchEmbedBackward(s(), gemm, dt, ptr(o[0]), x.shape[0], x.shape[1], x.shape[2], x.shape[3], ptr(o[1]),
                             w.shape[0], w.shape[2], dOut(), ptr(r[0]), ptr(r[1]), ptr(r[2]), ws());
    } else if (op == "kern.cast") {
      cu::cast(s(), desc(o[sl]).dtype, ptr(o[sl]), desc(r[0]).dtype, ptr(r[0]), desc(r[0]).numel());
    } else if (op == "dit.attention" || op == "kern.attention") {
      // kern.attention saved its output and log-sum-exp (in that order).
      const ValueDesc &q = desc(o[0]), &kk = desc(o[1]);
      const bool statistics = saved == 2;
      // column_sums: the gradients' row sums follow the slots.
      cu::AttentionGradSums sums;
      if (r.size() > sl)
        sums = {ptr(r[sl]), ptr(r[sl + 1]), ptr(r[sl + 2])};
      cu::attentionBackward(s(), dt, cm(o[0]), cm(o[1]), cm(o[2]), q.shape[0], q.shape[1], kk.shape[1],
                            attrInt(k, "num_heads"), static_cast<float>(attrFloat(k, "scale")), dOut(), mOpt(r[0]),
                            mOpt(r[1]), mOpt(r[2]), ws(),
                            statistics ? static_cast<const float *>(ptr(o[sl + 1])) : nullptr,
                            statistics ? cm(o[sl]) : cu::DConstMat{}, sums);
    } else if (op == "dit.gla") {
      const ValueDesc &q = desc(o[0]);
      cu::glaBackward(s(), dt, cm(o[0]), cm(o[1]), cm(o[2]), cm(o[3]), q.shape[0], q.shape[1],
                      attrInt(k, "num_heads"), static_cast<float>(attrFloat(k, "scale")),
                      static_cast<float>(attrFloat(k, "gate_normalizer")), attrInt(k, "chunk_size"), dOut(),
                      mOpt(r[0]), mOpt(r[1]), mOpt(r[2]), mOpt(r[3]), ws());
    } else if (op == "dit.unpatchify") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      int64_t p = attrInt(k, "patch_size");
      cu::unpatchifyBackward(s(), dt, ptr(o[sl]), x.shape[0], grid[0], grid[1], p, x.shape[2] / (p * p), m(r[0]));
    } else if (op == "dit.token_mean") {
      const ValueDesc &x = desc(o[0]);
      cu::tokenMeanBackward(s(), dt, dOut(), x.shape[0], x.shape[1], m(r[0]));
    } else if (op == "dit.reorder_tokens") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      cu::reorderTokens(s(), dt, dOut(), x.shape[0], grid[0], grid[1], scanOrder(attrString(k, "to")),
                        scanOrder(attrString(k, "from")), m(r[0]));
    } else if (op == "dit.silu" || op == "dit.gelu") {
      cu::Act act = op == "dit.silu" ? cu::Act::Silu : attrInt(k, "approximate") ? cu::Act::GeluTanh : cu::Act::Gelu;
      cu::activateBackward(s(), dt, ptr(o[0]), ptr(o[sl]), desc(o[0]).numel(), act, ptr(r[0]));
    } else if (op == "dit.label_embed") {
      const ValueDesc &table = desc(o[1]);
      cu::labelEmbedBackward(s(), desc(o[1]).dtype, static_cast<const int32_t *>(ptr(o[0])), desc(o[0]).shape[0],
                             attrInt(k, "num_classes"), table.shape[1], dOut(), ptr(r[1]));
    } else if (op == "dit.mask_tokens") {
      const ValueDesc &x = desc(o[0]), &keep = desc(o[1]);
      cu::unmaskTokens(s(), dt, dOut(), static_cast<const int32_t *>(ptr(o[1])), x.shape[0], x.shape[1],
                       keep.shape[1], m(r[0]), errorFlag);
    } else if (op == "dit.unmask_tokens") {
      const ValueDesc &x = desc(o[0]);
      cu::maskTokens(s(), dt, dOut(), static_cast<const int32_t *>(ptr(o[1])), x.shape[0], attrInt(k, "num_tokens"),
                     x.shape[1], m(r[0]), errorFlag);
    } else if (op == "dit.add") {
      cu::addBroadcastBackwardRhs(s(), dt, ptr(o[sl]), desc(o[0]).numel(), desc(o[1]).numel(), ptr(r[1]));
    } else if (op == "dit.mul") {
      cu::mulBroadcastBackward(s(), dt, ptr(o[0]), desc(o[0]).numel(), ptr(o[1]), desc(o[1]).numel(), ptr(o[sl]),
                               ptr(r[0]), ptr(r[1]));
    } else if (op == "dit.modulate") {
      cu::modulateBackward(s(), dt, cm(o[0]), cm(o[2]), desc(o[0]).shape[1], dOut(), mOpt(r[0]), mOpt(r[1]),
                           mOpt(r[2]));
    } else if (op == "dit.gated_residual") {
      cu::gatedResidualBackward(s(), dt, cm(o[1]), cm(o[2]), desc(o[0]).shape[1], dOut(), mOpt(r[1]), mOpt(r[2]));
    } else if (op == "dit.split") {
      // Each part's gradient is a column block of the whole's.
      std::vector<cu::DConstMat> parts;
      for (size_t part = 0; part + sl < o.size(); ++part)
        parts.push_back(dOut(part));
      cu::splitBackward(s(), desc(r[0]).dtype, parts.data(), static_cast<int>(parts.size()), m(r[0]));
    } else if (op == "dit.ddpm_loss" || op == "dit.rf_loss" || op == "dit.edm_loss") {
      loss(k, op, static_cast<float *>(workspace), static_cast<float>(attrFloat(k, "loss_weight")), ptr(r[0]));
    } else {
      fail("the CUDA backend has no backward kernel for ", op);
    }
  }

  void dispatch(const KernelDesc &k) {
    if (k.op.rfind("vjp:", 0) == 0)
      return dispatchVjp(k);
    const auto &o = k.operands;
    int32_t res = k.results[0];
    const std::string &op = k.op;
    DType dt = desc(res).dtype;
    if (op == "kern.gemm") {
      cu::GatedResidual e;
      bool hasE = epilogue(k, 3, e);
      const int32_t z = k.results.size() > 1 ? k.results[1] : -1;
      gemm.run(s(), dt, cm(o[0]), cm(o[1]), ptr(o[2]), actOf(attrString(k, "act")),
               hasE ? &e : nullptr, m(res), ws(), z >= 0 ? m(z) : cu::DMat{});
    } else if (op == "kern.swiglu") {
      cu::DConstMat gate = cm(o[1]), up;
      if (o[2] >= 0) {
        up = cm(o[2]);
      } else {
        int64_t f = gate.rows / 2;
        up = {static_cast<const uint8_t *>(gate.data) + f * gate.ld * dtypeSize(dt), f, gate.cols, gate.ld};
        gate.rows = f;
      }
      cu::GatedResidual e;
      bool hasE = epilogue(k, 4, e);
      cu::swiglu(s(), gemm, dt, cm(o[0]), gate, up, cm(o[3]), hasE ? &e : nullptr, m(res), ws());
    } else if (op == "kern.norm") {
      cu::NormArgs a = normArgs(k);
      if (o[6] >= 0) {
        a.residual = cm(o[6]);
        a.residualGate = cm(o[7]);
        a.sum = m(k.results[1]);
      }
      cu::norm(s(), dt, cm(o[0]), a, m(res));
    } else if (op == "kern.moe") {
      cu::GatedResidual e;
      bool hasE = epilogue(k, 8, e);
      if (attrString(k, "routing") == "token_choice") {
        cu::TokenChoiceArgs a = tokenChoice(k, hasE ? &e : nullptr);
        if (k.results.size() > 1 && k.results[1] >= 0)
          a.activations = ptr(k.results[1]);
        cu::moeTokenChoice(s(), gemm, dt, cm(o[0]), a, m(res), ws());
      }
      else
        cu::moeExpertChoice(s(), gemm, dt, cm(o[0]), expertChoice(k, hasE ? &e : nullptr), m(res), ws());
    } else if (op == "kern.dwconv") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      cu::depthwiseConv(s(), dt, cm(o[0]), x.shape[0], grid[0], grid[1], ptr(o[1]), ptr(o[2]),
                        desc(o[1]).shape[2], scanOrder(attrString(k, "from")),
                        scanOrder(attrString(k, "to")), m(res));
    } else if (op == "kern.patch_embed") {
      const ValueDesc &x = desc(o[0]), &w = desc(o[1]);
      cu::patchEmbed(s(), gemm, dt, ptr(o[0]), x.shape[0], x.shape[1], x.shape[2], x.shape[3], ptr(o[1]),
                     ptr(o[2]), w.shape[0], w.shape[2], ptr(o[3]), m(res), ws());
    } else if (op == "dit.attention" || op == "kern.attention") {
      const ValueDesc &q = desc(o[0]), &kk = desc(o[1]);
      cu::attention(s(), dt, cm(o[0]), cm(o[1]), cm(o[2]), q.shape[0], q.shape[1], kk.shape[1],
                    attrInt(k, "num_heads"), static_cast<float>(attrFloat(k, "scale")), m(res),
                    k.results.size() > 1 ? static_cast<float *>(ptr(k.results[1])) : nullptr);
    } else if (op == "dit.gla") {
      const ValueDesc &q = desc(o[0]);
      cu::gla(s(), dt, cm(o[0]), cm(o[1]), cm(o[2]), cm(o[3]), q.shape[0], q.shape[1],
              attrInt(k, "num_heads"), static_cast<float>(attrFloat(k, "scale")),
              static_cast<float>(attrFloat(k, "gate_normalizer")), attrInt(k, "chunk_size"), m(res), ws());
    } else if (op == "dit.unpatchify") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      int64_t p = attrInt(k, "patch_size");
      cu::unpatchify(s(), dt, cm(o[0]), x.shape[0], grid[0], grid[1], p, x.shape[2] / (p * p), ptr(res));
    } else if (op == "dit.sincos_pos_embed") {
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      cu::sincosPosEmbed(s(), grid[0], grid[1], attrInt(k, "dim"), attrFloat(k, "interp_scale"),
                         static_cast<float *>(ptr(res)));
    } else if (op == "dit.timestep_embed") {
      cu::timestepEmbed(s(), static_cast<const float *>(ptr(o[0])), desc(o[0]).shape[0],
                        attrInt(k, "dim"), attrFloat(k, "max_period"), static_cast<float *>(ptr(res)));
    } else if (op == "dit.label_embed") {
      cu::labelEmbed(s(), dt, static_cast<const int32_t *>(ptr(o[0])), desc(o[0]).shape[0], ptr(o[1]),
                     attrInt(k, "num_classes"), desc(o[1]).shape[1], ptr(res), errorFlag);
    } else if (op == "dit.token_mean") {
      const ValueDesc &x = desc(o[0]);
      cu::tokenMean(s(), dt, cm(o[0]), x.shape[0], x.shape[1], m(res));
    } else if (op == "dit.mask_tokens") {
      const ValueDesc &x = desc(o[0]), &keep = desc(o[1]);
      cu::maskTokens(s(), dt, cm(o[0]), static_cast<const int32_t *>(ptr(o[1])), x.shape[0], x.shape[1],
                     keep.shape[1], m(res), errorFlag);
    } else if (op == "dit.unmask_tokens") {
      const ValueDesc &x = desc(o[0]);
      cu::unmaskTokens(s(), dt, cm(o[0]), static_cast<const int32_t *>(ptr(o[1])), x.shape[0],
                       attrInt(k, "num_tokens"), x.shape[1], m(res), errorFlag);
    } else if (op == "dit.reorder_tokens") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      cu::reorderTokens(s(), dt, cm(o[0]), x.shape[0], grid[0], grid[1],
                        scanOrder(attrString(k, "from")), scanOrder(attrString(k, "to")), m(res));
    } else if (op == "kern.pointwise") {
      std::vector<cu::PointwiseOperand> inputs;
      for (int32_t id : o) {
        const ValueDesc &v = desc(id);
        inputs.push_back({ptr(id), v.dtype, v.rows(), v.ld, v.numel() == 1});
      }
      const ValueDesc &out = desc(res);
      generated->pointwise(s(), attrString(k, "kernel"), inputs.data(), inputs.size(),
                           {ptr(res), out.dtype, out.rows(), out.ld, false}, out.rows(), out.cols());
    } else if (op == "dit.modulate") {
      cu::modulate(s(), dt, cm(o[0]), cm(o[1]), cm(o[2]), desc(o[0]).shape[1], m(res));
    } else if (op == "dit.gated_residual") {
      cu::gatedResidual(s(), dt, cm(o[0]), cm(o[1]), cm(o[2]), desc(o[0]).shape[1], m(res));
    } else if (op == "dit.ddpm_loss" || op == "dit.rf_loss" || op == "dit.edm_loss") {
      if (dt != DType::F32)
        fail(op, ": the per-sample loss must be f32, got ", dtypeName(dt));
      loss(k, op, static_cast<float *>(ptr(res)), 0.0f, nullptr);
    } else {
      fail("the CUDA backend has no kernel for ", op);
    }
  }
};

} // namespace

std::unique_ptr<Backend> createCudaBackend(const Plan &plan, int device) {
  return std::make_unique<CudaBackend>(plan, device);
}

} // namespace diffrt
