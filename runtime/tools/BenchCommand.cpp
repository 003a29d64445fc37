//===- BenchCommand.cpp - bench: time a compiled model --------------------===//
//
// Loads an artifact, gives it random parameters (on the device) and random
// inputs of the right kinds, runs the forward once with every check, then
// times it with the backend's own clock (CUDA events around graph replays on
// a GPU). Prints the median, the spread and the useful TFLOP/s counted from
// the plan's kernels; --json appends one machine-readable line. A training
// artifact is timed by whole optimizer steps instead.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Commands.h"

#include "diffrt/Args.h"
#include "diffrt/Error.h"
#include "diffrt/KernelSignatures.h"
#include "diffrt/Rng.h"
#include "diffrt/Samplers.h"
#include "diffrt/Session.h"
#include "diffrt/Trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

namespace diffrt {

namespace {

/// Useful floating-point operations of one kernel (2 per multiply-add;
/// attention counts its two products); 0 for memory-bound kernels.
double kernelFlops(const Plan &plan, const KernelDesc &k) {
  auto v = [&](int32_t id) -> const ValueDesc & { return plan.values[id]; };
  double flops = 0;
  {
    const auto &o = k.operands;
    if (k.op == "kern.gemm") {
      flops += 2.0 * v(o[0]).rows() * v(o[1]).shape[0] * v(o[1]).shape[1];
    } else if (k.op == "kern.swiglu") {
      double rows = v(o[0]).rows();
      flops += 2.0 * rows * (v(o[1]).numel() + (o[2] >= 0 ? v(o[2]).numel() : 0) + v(o[3]).numel());
    } else if (k.op == "kern.patch_embed") {
      flops += 2.0 * v(k.results[0]).rows() * v(o[1]).numel();
    } else if (k.op == "dit.attention" || k.op == "kern.attention") {
      const ValueDesc &q = v(o[0]), &kk = v(o[1]), &vv = v(o[2]);
      flops += 2.0 * q.shape[0] * q.shape[1] * kk.shape[1] * (q.shape[2] + vv.shape[2]);
    } else if (k.op == "dit.gla") {
      const ValueDesc &q = v(o[0]), &vv = v(o[2]);
      double h = attrInt(k, "num_heads"), t = q.shape[1];
      double dk = q.shape[2] / h, dv = vv.shape[2] / h, chunk = std::min<double>(attrInt(k, "chunk_size"), t);
      flops += 2.0 * q.shape[0] * h * (t * chunk * (dk + dv) + 2 * t * dk * dv);
    } else if (k.op == "kern.moe") {
      const ValueDesc &x = v(o[0]), &router = v(o[1]);
      double e = router.shape[0], perExpert = 0;
      for (size_t i = 2; i <= 4; ++i)
        if (o[i] >= 0)
          perExpert += v(o[i]).numel() / e;
      double slots = attrString(k, "routing") == "token_choice"
                         ? attrInt(k, "top_k") * x.rows()
                         : x.shape[0] * e * std::floor(attrFloat(k, "capacity") * x.shape[1] / e);
      flops += 2.0 * (x.rows() * router.numel() + slots * perExpert);
      if (o[5] >= 0)
        flops += 2.0 * x.rows() * (v(o[5]).numel() + v(o[6]).numel() + v(o[7]).numel());
    }
  }
  return flops;
}

double entryFlops(const Plan &plan, const EntryDesc &entry) {
  double flops = 0;
  for (const KernelDesc &k : entry.kernels)
    flops += kernelFlops(plan, k);
  return flops;
}

/// The profile's row label of a kernel: its op and the fused parts that
/// change its cost.
std::string kernelClass(const KernelDesc &k) {
  std::string label = k.op;
  auto has = [&](size_t i) { return k.operands.size() > i && k.operands[i] >= 0; };
  if (k.op == "kern.gemm") {
    if (attrString(k, "act") != "none")
      label += " +" + attrString(k, "act");
    if (has(3))
      label += " +gated residual";
  } else if (k.op == "kern.norm") {
    label += " " + attrString(k, "kind");
    if (has(3))
      label += " +modulate";
    if (has(6))
      label += " +residual";
  } else if (k.op == "kern.moe") {
    label += " " + attrString(k, "routing");
  }
  return label;
}

std::string formatTflops(double tflops) {
  char buf[32];
  std::snprintf(buf, sizeof buf, tflops < 10 ? "%.3f" : "%.1f", tflops);
  return buf;
}

/// Per-kernel times summed by kernel class, largest first, then their sum
/// beside the measured whole (`whole` names it).
void printProfile(const Plan &plan, const EntryDesc &entry, const std::vector<double> &ms, double wholeMs,
                  const char *whole) {
  struct Row {
    int count = 0;
    double ms = 0, flops = 0;
  };
  std::map<std::string, Row> rows;
  double total = 0;
  for (size_t i = 0; i < entry.kernels.size(); ++i) {
    Row &r = rows[kernelClass(entry.kernels[i])];
    ++r.count;
    r.ms += ms[i];
    r.flops += kernelFlops(plan, entry.kernels[i]);
    total += ms[i];
  }
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end(), [](auto &a, auto &b) { return a.second.ms > b.second.ms; });
  std::printf("%-36s %6s %10s %7s %9s\n", "kernel class", "count", "ms", "share", "TFLOP/s");
  for (auto &[name, r] : sorted)
    std::printf("%-36s %6d %10.3f %6.1f%% %9s\n", name.c_str(), r.count, r.ms, 100.0 * r.ms / total,
                r.flops > 0 ? formatTflops(r.flops / r.ms / 1e9).c_str() : "-");
  std::printf("%-36s %6zu %10.3f  (%s: %.3f ms)\n", "sum of kernels", entry.kernels.size(), total, whole,
              wholeMs);
}

/// Whole training steps: a Trainer on random weights and random batches,
/// timed on the host clock around Trainer::step (the step's inputs drawn
/// and uploaded, train_step, the loss read back, the fused AdamW), which is
/// what a training loop pays per step. The optimizer is PyTorch's
/// baseline's: AdamW alone, no EMA and no gradient clipping (which adds a
/// pass over the gradients).
int benchTraining(const Args &args, const Module &module, Session &session, int warmup, int iterations,
                  uint64_t seed) {
  const Plan &plan = module.plan();
  TrainConfig config;
  config.seed = seed;
  config.emaDecay = 0;
  config.gradClip = 0;
  Trainer trainer(session, config);
  const std::vector<int64_t> &shape = trainer.inputShape();
  int64_t per = shape[1] * shape[2] * shape[3];
  int64_t numClasses = module.modelInt("num_classes", 1);
  Philox rng(seed + 3);
  Batch batch;
  batch.x0.resize(shape[0] * per);
  rng.fillNormal(batch.x0.data(), static_cast<int64_t>(batch.x0.size()));
  for (int64_t i = 0; i < shape[0]; ++i)
    batch.labels.push_back(static_cast<int32_t>(rng.nextU32() % std::max<int64_t>(numClasses, 1)));
  for (auto &[name, id] : plan.entry("train_step")->inputs)
    if (name == "captions") {
      batch.captions.resize(plan.values[id].numel());
      rng.fillNormal(batch.captions.data(), static_cast<int64_t>(batch.captions.size()));
    }
  for (int i = 0; i < std::max(warmup, 2); ++i) // the first two steps capture the graph
    trainer.step(batch);
  std::vector<double> ms;
  for (int i = 0; i < iterations; ++i) {
    auto start = std::chrono::steady_clock::now();
    double loss = trainer.step(batch);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (!std::isfinite(loss))
      fail(module.path(), ": a training step produced a non-finite loss with random weights");
  }
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  // The optimizer's f32 moments (plus f32 master weights for a 16-bit plan);
  // the device total also counts weights, arena and kernel workspace.
  double params = 0;
  for (const ParamDesc &p : plan.params)
    params += plan.values[p.value].numel();
  bool sixteen = !plan.params.empty() && plan.values[plan.params[0].value].dtype != DType::F32;
  double stateMib = params * 4 * (sixteen ? 3 : 2) / 1048576.0;
  std::string label = args.get("--label").value_or(module.modelString("name", module.path()));
  double deviceMib = session.deviceBytes() / 1048576.0;
  std::printf("%-28s %-8s train batch %-4lld median %9.3f ms  (min %.3f, max %.3f)  device memory %.0f MiB "
              "(optimizer state %.0f MiB)\n",
              label.c_str(), session.device().name().c_str(), static_cast<long long>(shape[0]), median, ms.front(),
              ms.back(), deviceMib, stateMib);
  if (args.has("--profile")) {
    const EntryDesc &entry = *plan.entry("train_step");
    // train_step's kernels one by one; the step also runs the optimizer
    // (AdamW, in the graph or after it), uploads the batch and reads the
    // loss, which the per-kernel profile does not time.
    printProfile(plan, entry, session.profileKernels("train_step", iterations), median,
                 "whole step, with AdamW and the host's part");
    // train_step's graph replayed alone (gradients only, the weights stay):
    // what the step spends beyond it is the optimizer's serial part and the
    // host's (drawing, copies, the loss read back). That split found the
    // 2.1 ms the host's noise cost each DiT-XL/2 step.
    std::vector<double> alone = session.time("train_step", 1, iterations);
    std::sort(alone.begin(), alone.end());
    const double graphMs = alone[alone.size() / 2];
    std::printf("train_step alone %.3f ms (%s); the rest of the step, %.3f ms: the optimizer and the host's part\n",
                graphMs, session.device().kind == Device::Kind::Cpu ? "host clock" : "device clock",
                median - graphMs);
  }
  if (auto json = args.get("--json")) {
    std::ofstream f(*json, std::ios::app);
    f << "{\"case\":\"" << label << "\",\"variant\":\"diffc\",\"device\":\"" << session.device().name()
      << "\",\"ms\":" << median << ",\"min_ms\":" << ms.front() << ",\"arena_mib\":" << plan.arenaBytes / 1048576.0
      << ",\"weights_mib\":" << plan.weightsBytes / 1048576.0 << ",\"optimizer_mib\":" << stateMib
      << ",\"device_mib\":" << deviceMib << "}\n";
  }
  return 0;
}

int bench(const std::vector<std::string> &argv) {
  Args args;
  std::string message;
  if (!args.parse(argv, {"--iterations", "--warmup", "--device", "--seed", "--json", "--label", "--sample",
                         "--cfg"},
                  {"--profile"}, message))
    fail(message);
  if (args.positional.size() != 1)
    fail("bench takes one compiled model (.dfx)");
  Module module = Module::load(args.positional[0]);
  const Plan &plan = module.plan();
  int iterations = static_cast<int>(args.integer("--iterations", 20));
  int warmup = static_cast<int>(args.integer("--warmup", 3));
  uint64_t seed = static_cast<uint64_t>(args.integer("--seed", 1));
  std::string deviceName = args.get("--device").value_or(plan.target);
  Device device = deviceName == "cuda" ? Device::cuda(0) : Device::cpu();
  Session session(module, device);
  session.randomizeParameters(seed, 0.02f);
  if (plan.entry("train_step"))
    return benchTraining(args, module, session, warmup, iterations, seed);

  // Random inputs of each kind: latents N(0,1), times in the training range,
  // labels over the classes, kept-token sets as random subsets.
  Philox rng(seed + 7);
  std::map<std::string, HostTensor> inputs;
  const EntryDesc *forward = plan.entry("forward");
  int64_t numClasses = module.modelInt("num_classes", 1);
  std::string objective = module.modelString("objective", "ddpm");
  for (auto &[name, id] : forward->inputs) {
    const ValueDesc &v = plan.values[id];
    if (v.dtype == DType::I32) {
      std::vector<int32_t> data(v.numel());
      if (name == "keep") {
        int64_t tokens = module.modelInt("latent_size", 0) / module.modelInt("patch_size", 1);
        tokens *= tokens;
        for (int64_t b = 0; b < v.shape[0]; ++b) {
          std::vector<int32_t> perm(tokens);
          for (int64_t i = 0; i < tokens; ++i)
            perm[i] = static_cast<int32_t>(i);
          for (int64_t i = tokens - 1; i > 0; --i)
            std::swap(perm[i], perm[rng.nextU32() % (i + 1)]);
          std::copy_n(perm.begin(), v.shape[1], data.begin() + b * v.shape[1]);
        }
      } else {
        for (int32_t &x : data)
          x = static_cast<int32_t>(rng.nextU32() % std::max<int64_t>(numClasses, 1));
      }
      inputs[name] = HostTensor::ints(v.shape, data);
    } else {
      std::vector<float> data(v.numel());
      rng.fillNormal(data.data(), v.numel());
      if (name == "t")
        for (float &x : data)
          x = objective == "rf" ? rng.uniform() : objective == "edm" ? x : std::floor(rng.uniform() * 1000);
      inputs[name] = HostTensor::floats(v.shape, data);
    }
  }
  std::vector<HostTensor> out = session.run("forward", inputs);
  for (float x : out.at(0).f32)
    if (!std::isfinite(x))
      fail(module.path(), ": the forward produced a non-finite value with random weights");
  if (auto spec = args.get("--sample")) {
    // A whole sampling run: the sampler on the host, one batched forward
    // (conditional and unconditional halves) per model evaluation.
    SamplerConfig cfg = parseSampler(*spec);
    cfg.learnedSigma = module.modelField("learn_sigma") == "true";
    const ValueDesc &x = plan.values[forward->inputs.at(0).second];
    double scale = args.number("--cfg", 4.0);
    int64_t batch = x.shape[0], images = batch / 2, c = x.shape[1], h = x.shape[2], w = x.shape[3];
    int64_t cOut = plan.values[forward->outputs.at(0)].shape.at(1);
    std::map<std::string, HostTensor> feed = inputs;
    int64_t calls = 0;
    ModelFn model = [&](const std::vector<float> &xIn, const std::vector<float> &tIn, std::vector<float> &o) {
      std::vector<float> xb(batch * c * h * w), tb(batch);
      for (int half = 0; half < 2; ++half) {
        std::copy(xIn.begin(), xIn.end(), xb.begin() + half * images * c * h * w);
        std::copy(tIn.begin(), tIn.end(), tb.begin() + half * images);
      }
      feed["x"] = HostTensor::floats(x.shape, xb);
      feed["t"] = HostTensor::floats({batch}, tb);
      std::vector<float> r = std::move(session.run("forward", feed)[0].f32);
      if (module.modelString("guidance", "dit_3channel") == "dit_3channel")
        guideDiT3Channel(r, batch, cOut, h * w, scale);
      else
        guideAllChannels(r, batch, cOut, h * w, scale, c);
      o.assign(r.begin(), r.begin() + images * cOut * h * w);
      ++calls;
    };
    std::vector<float> z(images * c * h * w);
    Philox noise(seed + 11);
    noise.fillNormal(z.data(), static_cast<int64_t>(z.size()));
    auto start = std::chrono::steady_clock::now();
    runSampler(cfg, images, c, h, w, z, model, noise);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string label = args.get("--label").value_or(module.modelString("name", module.path()));
    std::printf("%-28s %-8s %lld images with guidance, %s: %.2f s end to end (%lld forwards of batch %lld)\n",
                label.c_str(), device.name().c_str(), static_cast<long long>(images), samplerSpec(cfg).c_str(),
                seconds, static_cast<long long>(calls), static_cast<long long>(batch));
    if (auto json = args.get("--json")) {
      std::ofstream f(*json, std::ios::app);
      f << "{\"case\":\"" << label << ":" << samplerSpec(cfg) << "\",\"variant\":\"diffc\",\"device\":\""
        << device.name() << "\",\"seconds\":" << seconds << ",\"forwards\":" << calls << "}\n";
    }
    return 0;
  }
  std::vector<double> ms = session.time("forward", warmup, iterations);
  std::sort(ms.begin(), ms.end());
  double median = ms[ms.size() / 2];
  double flops = entryFlops(plan, *forward);
  std::string label = args.get("--label").value_or(module.modelString("name", module.path()));
  std::printf("%-28s %-8s batch %-4lld median %9.3f ms  (min %.3f, max %.3f)  %7.1f TFLOP/s",
              label.c_str(), device.name().c_str(),
              static_cast<long long>(plan.values[forward->inputs.at(0).second].shape.at(0)), median,
              ms.front(), ms.back(), flops / median / 1e9);
  if (size_t side = session.sideStreamKernels("forward"))
    std::printf("  (%zu of %zu kernels on the side stream)", side, forward->kernels.size());
  std::printf("\n");
  if (args.has("--profile"))
    printProfile(plan, *forward, session.profileKernels("forward", iterations), median, "one graph replay");
  if (auto json = args.get("--json")) {
    std::ofstream f(*json, std::ios::app);
    f << "{\"case\":\"" << label << "\",\"variant\":\"diffc\",\"device\":\"" << device.name()
      << "\",\"ms\":" << median << ",\"min_ms\":" << ms.front() << ",\"tflops\":" << flops / median / 1e9
      << ",\"arena_mib\":" << plan.arenaBytes / 1048576.0 << ",\"weights_mib\":" << plan.weightsBytes / 1048576.0
      << "}\n";
  }
  return 0;
}

} // namespace

int runBenchCommand(const std::vector<std::string> &argv) {
  try {
    return bench(argv);
  } catch (const std::exception &e) {
    std::cerr << "diffc: error: " << e.what() << "\n";
    return 1;
  }
}

} // namespace diffrt
