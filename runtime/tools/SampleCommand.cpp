//===- SampleCommand.cpp - diffc sample -----------------------------------===//
//
// Samples images from a compiled model with each family's conventions: the
// sampler (DDPM 250 for DiT/DiG/DiT-MoE S,B; rectified-flow Euler 50 for
// DiT-MoE XL,G; EDM Heun for MicroDiT), classifier-free guidance in the
// model's form (DiT's 3-channel or all channels) on a doubled batch
// [conditional; unconditional], reproducible seeds, a PNG grid and, on
// request, the raw arrays.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Commands.h"

#include "diffrt/Args.h"
#include "diffrt/Error.h"
#include "diffrt/Png.h"
#include "diffrt/Safetensors.h"
#include "diffrt/Samplers.h"
#include "diffrt/Session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <unistd.h>

namespace diffrt {

namespace {

std::vector<int32_t> parseClasses(const std::string &text) {
  std::vector<int32_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char *end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end)
      fail("--class expects comma-separated integers, got '", text, "'");
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

/// A progress bar on stderr that redraws in place.
class Progress {
public:
  explicit Progress(bool enabled)
      : enabled(enabled), terminal(::isatty(STDERR_FILENO) != 0), start(std::chrono::steady_clock::now()) {}
  void operator()(int64_t step, int64_t total) {
    if (!enabled)
      return;
    // A log file gets one line per tenth of the run instead of a redrawn bar.
    if (!terminal && step != total && step % std::max<int64_t>(1, total / 10) != 0)
      return;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!terminal) {
      std::fprintf(stderr, "%lld/%lld steps, %.1f s\n", static_cast<long long>(step),
                   static_cast<long long>(total), secs);
      return;
    }
    int filled = total ? static_cast<int>(30 * step / total) : 30;
    std::fprintf(stderr, "\r[%-30s] %lld/%lld steps, %.1f s", std::string(filled, '#').c_str(),
                 static_cast<long long>(step), static_cast<long long>(total), secs);
    if (step == total)
      std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

private:
  bool enabled, terminal;
  std::chrono::steady_clock::time_point start;
};

int sample(const std::vector<std::string> &argv) {
  Args args;
  std::string message;
  if (!args.parse(argv,
                  {"--weights", "--sampler", "--cfg", "--class", "--seed", "-o", "--raw",
                   "--captions", "--device", "--columns", "--zoom"},
                  {"--quiet"}, message))
    fail(message);
  if (args.positional.size() != 1)
    fail("sample takes one compiled model (.dfx)");
  Module module = Module::load(args.positional[0]);
  const Plan &plan = module.plan();
  const EntryDesc *forward = plan.entry("forward");
  std::map<std::string, const ValueDesc *> inputs;
  for (auto &[name, id] : forward->inputs)
    inputs[name] = &plan.values[id];
  if (!inputs.count("x") || !inputs.count("t"))
    fail(module.path(), ": the model has no 'x' and 't' inputs to sample with");
  if (inputs.count("keep"))
    fail(module.path(), ": this MicroDiT was compiled with token masking (a training "
         "configuration); import it without --mask-ratio to sample");
  const ValueDesc &xDesc = *inputs["x"];
  int64_t batch = xDesc.shape[0], c = xDesc.shape[1], h = xDesc.shape[2], w = xDesc.shape[3];
  const ValueDesc &outDesc = plan.values[forward->outputs.at(0)];
  int64_t cOut = outDesc.shape.at(1);

  std::string objective = module.modelString("objective", "ddpm");
  std::string guidance = module.modelString("guidance", "dit_3channel");
  int64_t numClasses = module.modelInt("num_classes", 0);
  bool learnSigma = module.modelField("learn_sigma") == "true";
  std::string defaultSampler = objective == "rf" ? "rf:50" : objective == "edm" ? "edm:30" : "ddpm:250";
  double defaultCfg = objective == "rf" ? 7.0 : objective == "edm" ? 5.0 : 4.0;
  SamplerConfig cfg = parseSampler(args.get("--sampler").value_or(defaultSampler));
  cfg.learnedSigma = learnSigma;
  if ((objective == "edm") != (cfg.kind == SamplerConfig::EdmHeun) ||
      (objective == "rf") != (cfg.kind == SamplerConfig::RectifiedFlow))
    fail("sampler '", samplerSpec(cfg), "' does not fit a model trained with ", objective,
         " (use ", defaultSampler, ")");
  double scale = args.number("--cfg", defaultCfg);
  bool guided = scale != 1.0;
  if (guided && batch % 2)
    fail(module.path(), ": compiled for batch ", batch, "; classifier-free guidance needs an even "
         "batch (2 x images) — import with --batch ", 2 * batch, " or pass --cfg 1");
  int64_t images = guided ? batch / 2 : batch;
  uint64_t seed = static_cast<uint64_t>(args.integer("--seed", 0));

  // Conditioning.
  std::vector<int32_t> labels;
  if (inputs.count("y")) {
    std::vector<int32_t> wanted;
    if (auto v = args.get("--class"))
      wanted = parseClasses(*v);
    else if (numClasses == 1000)
      wanted = {207, 360, 387, 974, 88, 979, 417, 279}; // DiT's sample.py classes
    else
      for (int32_t k = 0; k < numClasses; ++k)
        wanted.push_back(k);
    for (int32_t k : wanted)
      if (k < 0 || k >= numClasses)
        fail("--class ", k, " is outside [0, ", numClasses, ") for this model");
    for (int64_t i = 0; i < images; ++i)
      labels.push_back(wanted[i % wanted.size()]);
  } else if (args.has("--class")) {
    fail("--class does not apply to ", module.modelString("name", "this model"), " (no class input)");
  }
  std::vector<float> captions;
  std::vector<int64_t> captionShape;
  if (inputs.count("captions")) {
    captionShape = inputs["captions"]->shape;
    int64_t per = captionShape[1] * captionShape[2];
    captions.assign(images * per, 0.0f);
    if (auto path = args.get("--captions")) {
      SafetensorsFile file = SafetensorsFile::open(*path);
      if (!file.contains("captions"))
        fail(*path, ": no tensor 'captions' (expected ", images, "x", captionShape[1], "x",
             captionShape[2], " caption embeddings)");
      const TensorInfo &info = file.info("captions");
      if (info.shape.size() != 3 || info.shape[1] != captionShape[1] || info.shape[2] != captionShape[2] ||
          info.shape[0] < 1)
        fail(*path, ": tensor 'captions' is the wrong shape; expected Nx", captionShape[1], "x",
             captionShape[2]);
      std::vector<float> file_captions = file.readF32("captions");
      for (int64_t i = 0; i < images; ++i)
        std::copy_n(file_captions.begin() + (i % info.shape[0]) * per, per, captions.begin() + i * per);
    }
  } else if (args.has("--captions")) {
    fail("--captions does not apply to ", module.modelString("name", "this model"));
  }

  Device device = Device::cpu();
  std::string deviceName = args.get("--device").value_or(plan.target);
  if (deviceName == "cuda")
    device = Device::cuda(0);
  else if (deviceName != "cpu")
    fail("--device must be cpu or cuda, got '", deviceName, "'");
  Session session(module, device);
  auto weights = args.get("--weights");
  if (!weights)
    fail("sample needs --weights FILE.safetensors (parameters by checkpoint name)");
  session.loadWeights(*weights);

  Philox rng(seed);
  std::vector<float> x(images * c * h * w);
  rng.fillNormal(x.data(), static_cast<int64_t>(x.size()));
  int64_t hw = h * w;
  ModelFn model = [&](const std::vector<float> &xIn, const std::vector<float> &tIn,
                      std::vector<float> &out) {
    std::vector<float> xb(batch * c * hw), tb(batch);
    std::vector<int32_t> yb(batch);
    std::vector<float> cb;
    for (int64_t half = 0; half < (guided ? 2 : 1); ++half) {
      std::copy(xIn.begin(), xIn.end(), xb.begin() + half * images * c * hw);
      std::copy(tIn.begin(), tIn.end(), tb.begin() + half * images);
      for (int64_t i = 0; i < images && !labels.empty(); ++i)
        yb[half * images + i] = half ? static_cast<int32_t>(numClasses) : labels[i];
    }
    std::map<std::string, HostTensor> feed = {{"x", HostTensor::floats({batch, c, h, w}, xb)},
                                              {"t", HostTensor::floats({batch}, tb)}};
    if (!labels.empty())
      feed["y"] = HostTensor::ints({batch}, yb);
    if (!captionShape.empty()) {
      cb.assign(batch * captionShape[1] * captionShape[2], 0.0f);
      std::copy(captions.begin(), captions.end(), cb.begin()); // the second half stays the null caption
      feed["captions"] = HostTensor::floats(captionShape, cb);
    }
    std::vector<float> result = std::move(session.run("forward", feed)[0].f32);
    if (guided) {
      if (guidance == "dit_3channel")
        guideDiT3Channel(result, batch, cOut, hw, scale);
      else
        guideAllChannels(result, batch, cOut, hw, scale, c);
    }
    out.assign(result.begin(), result.begin() + images * cOut * hw);
  };
  Progress progress(!args.has("--quiet"));
  auto start = std::chrono::steady_clock::now();
  runSampler(cfg, images, c, h, w, x, model, rng, std::ref(progress));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::string output = args.get("-o").value_or("samples.png");
  int64_t columns = args.integer("--columns", std::min<int64_t>(images, 8));
  // --zoom N shows each pixel as N x N (small images such as
  // Fashion-MNIST's 32 x 32); the raw samples keep their size.
  int64_t zoom = args.integer("--zoom", 1);
  if (zoom < 1 || zoom > 16)
    fail("--zoom must be between 1 and 16, got ", zoom);
  std::vector<float> shown = x;
  if (zoom > 1) {
    shown.assign(x.size() * zoom * zoom, 0.0f);
    for (int64_t plane = 0; plane < images * c; ++plane)
      for (int64_t r = 0; r < h * zoom; ++r)
        for (int64_t col = 0; col < w * zoom; ++col)
          shown[(plane * h * zoom + r) * w * zoom + col] = x[(plane * h + r / zoom) * w + col / zoom];
  }
  writeImageGrid(output, shown.data(), images, c, h * zoom, w * zoom, std::max<int64_t>(1, columns));
  if (auto raw = args.get("--raw")) {
    SafetensorsWriter writer;
    writer.addF32("samples", {images, c, h, w}, x.data());
    if (!labels.empty())
      writer.add("labels", DType::I32, {images}, labels.data());
    writer.setMetadata("sampler", samplerSpec(cfg));
    writer.setMetadata("cfg", std::to_string(scale));
    writer.setMetadata("seed", std::to_string(seed));
    writer.write(*raw);
  }
  std::cerr << "diffc: wrote " << output << ": " << images << " samples of "
            << module.modelString("name", "the model") << " (" << samplerSpec(cfg) << ", cfg "
            << scale << ", seed " << seed << ", " << device.name() << ", " << seconds << " s)\n";
  return 0;
}

} // namespace

int runSampleCommand(const std::vector<std::string> &argv) {
  try {
    return sample(argv);
  } catch (const std::exception &e) {
    std::cerr << "diffc: error: " << e.what() << "\n";
    return 1;
  }
}

} // namespace diffrt
