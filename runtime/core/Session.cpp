//===- Session.cpp - modules, sessions, weights and inputs ----------------===//
//
// Device-independent half of the runtime: loading artifacts, matching
// checkpoint tensors to parameters by name, converting host inputs and
// outputs to and from the plan's element types. Kernel execution is the
// backend's.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Session.h"

#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"
#include "diffrt/Rng.h"
#include "diffrt/Safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>

namespace diffrt {

using nlohmann::json;

std::string Device::name() const {
  return kind == Kind::Cpu ? "cpu" : "cuda:" + std::to_string(index);
}

HostTensor HostTensor::floats(std::vector<int64_t> shape, std::vector<float> data) {
  HostTensor t;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.f32 = std::move(data);
  return t;
}

HostTensor HostTensor::ints(std::vector<int64_t> shape, std::vector<int32_t> data) {
  HostTensor t;
  t.dtype = DType::I32;
  t.shape = std::move(shape);
  t.i32 = std::move(data);
  return t;
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

Backend::~Backend() = default;

namespace {

/// Elements per thread of the conversions: a sampling loop converts the
/// whole latent batch in both directions at every step.
constexpr int64_t kConvertGrain = 1 << 16;

/// Converts float32 values to `dtype` bytes.
std::vector<uint8_t> encodeFloats(const float *values, int64_t n, DType dtype) {
  std::vector<uint8_t> out(static_cast<size_t>(n) * dtypeSize(dtype));
  if (dtype == DType::F32) {
    std::memcpy(out.data(), values, out.size());
    return out;
  }
  if (dtype != DType::F16 && dtype != DType::BF16)
    fail("cannot store float values as ", dtypeName(dtype));
  cpu::parallelFor(n, kConvertGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint16_t h = dtype == DType::F16 ? floatToHalf(values[i]) : floatToBf16(values[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  });
  return out;
}

std::vector<float> decodeFloats(const uint8_t *bytes, int64_t n, DType dtype) {
  std::vector<float> out(n);
  if (dtype == DType::F32) {
    std::memcpy(out.data(), bytes, out.size() * 4);
    return out;
  }
  if (dtype != DType::F16 && dtype != DType::BF16)
    fail("cannot read ", dtypeName(dtype), " values as float");
  cpu::parallelFor(n, kConvertGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      out[i] = dtype == DType::F16 ? halfToFloat(h) : bf16ToFloat(h);
    }
  });
  return out;
}

/// Copies a contiguous host array into a value's place (rows may be
/// strided in the region).
void uploadValue(Backend &backend, const ValueDesc &v, const std::vector<uint8_t> &bytes) {
  size_t rowBytes = static_cast<size_t>(v.cols()) * dtypeSize(v.dtype);
  if (v.contiguous()) {
    backend.upload(v.region, v.offset, bytes.data(), bytes.size());
    return;
  }
  for (int64_t r = 0; r < v.rows(); ++r)
    backend.upload(v.region, v.offset + r * v.ld * dtypeSize(v.dtype), bytes.data() + r * rowBytes,
                   rowBytes);
}

std::vector<uint8_t> downloadValue(Backend &backend, const ValueDesc &v) {
  size_t esize = dtypeSize(v.dtype);
  std::vector<uint8_t> bytes(static_cast<size_t>(v.numel()) * esize);
  if (v.contiguous()) {
    backend.download(v.region, v.offset, bytes.data(), bytes.size());
    return bytes;
  }
  size_t rowBytes = static_cast<size_t>(v.cols()) * esize;
  for (int64_t r = 0; r < v.rows(); ++r)
    backend.download(v.region, v.offset + r * v.ld * esize, bytes.data() + r * rowBytes, rowBytes);
  return bytes;
}

/// The checkpoint names of one parameter: itself, or one per slice.
std::vector<std::string> expandName(const ParamDesc &p, const ValueDesc &v) {
  size_t at = p.name.find("{e}");
  if (at == std::string::npos)
    return {p.name};
  std::vector<std::string> names;
  for (int64_t e = 0; e < v.shape.at(0); ++e)
    names.push_back(p.name.substr(0, at) + std::to_string(e) + p.name.substr(at + 3));
  return names;
}

} // namespace

void checkNoisedInputs(const NoisedInputs &inputs, const std::vector<ValueDesc> &places) {
  if (inputs.samples < 0 || inputs.perSample < 0)
    fail("noised inputs: ", inputs.samples, " samples of ", inputs.perSample, " values");
  if (places.size() != inputs.targets.size())
    fail("noised inputs: ", inputs.targets.size(), " targets but ", places.size(), " places");
  const int64_t count = inputs.samples * inputs.perSample;
  if (count > 0 && inputs.x0 == nullptr)
    fail("noised inputs: no data for ", count, " values");
  for (size_t k = 0; k < places.size(); ++k) {
    const NoisedInputs::Target &t = inputs.targets[k];
    if (places[k].numel() != count)
      fail("noised input '", t.input, "' holds ", places[k].numel(), " values, not ", inputs.samples, " x ",
           inputs.perSample);
    if (places[k].dtype == DType::I32)
      fail("noised input '", t.input, "' is an integer input");
    if (t.kind == NoisedInputs::Kind::Mix) {
      const int64_t n = inputs.samples;
      if (static_cast<int64_t>(t.a.size()) != n || static_cast<int64_t>(t.b.size()) != n ||
          static_cast<int64_t>(t.c.size()) != n)
        fail("noised input '", t.input, "': ", t.a.size(), ", ", t.b.size(), " and ", t.c.size(),
             " mix coefficients for ", n, " samples");
    }
  }
}

void Backend::writeNoisedInputs(const NoisedInputs &inputs, const std::vector<ValueDesc> &places) {
  checkNoisedInputs(inputs, places);
  const int64_t count = inputs.samples * inputs.perSample;
  std::vector<float> noise(static_cast<size_t>(count)), values(static_cast<size_t>(count));
  Philox(inputs.seed, inputs.stream).fillNormal(noise.data(), count);
  for (size_t k = 0; k < places.size(); ++k) {
    const NoisedInputs::Target &t = inputs.targets[k];
    const float *source = t.kind == NoisedInputs::Kind::Data ? inputs.x0 : noise.data();
    if (t.kind == NoisedInputs::Kind::Mix) {
      for (int64_t s = 0; s < inputs.samples; ++s)
        for (int64_t j = s * inputs.perSample; j < (s + 1) * inputs.perSample; ++j) {
          const double mixed = t.a[s] * inputs.x0[j] + t.b[s] * noise[j];
          values[j] = static_cast<float>(t.c[s] * mixed);
        }
      source = values.data();
    }
    uploadValue(*this, places[k], encodeFloats(source, count, places[k].dtype));
  }
}

Module Module::load(const std::string &path) { return fromPlan(readArtifact(path), path); }

Module Module::fromPlan(Plan plan, std::string what) {
  Module m;
  m.plan_ = std::make_shared<const Plan>(std::move(plan));
  m.path_ = std::move(what);
  return m;
}

std::string Module::modelField(const std::string &name) const {
  json model = json::parse(plan_->modelJson);
  if (!model.contains(name))
    return {};
  return model.at(name).dump();
}

int64_t Module::modelInt(const std::string &name, int64_t fallback) const {
  json model = json::parse(plan_->modelJson);
  if (!model.contains(name) || !model.at(name).is_number_integer())
    return fallback;
  return model.at(name).get<int64_t>();
}

std::string Module::modelString(const std::string &name, const std::string &fallback) const {
  json model = json::parse(plan_->modelJson);
  if (!model.contains(name) || !model.at(name).is_string())
    return fallback;
  return model.at(name).get<std::string>();
}

Session::Session(const Module &module, Device device) : module_(module), device_(device) {
  const Plan &plan = module.plan();
  if (device.kind == Device::Kind::Cpu) {
    if (plan.target != "cpu")
      fail(module.path(), ": compiled for target '", plan.target,
           "'; recompile with --target cpu to run it on the CPU");
    backend_ = createCpuBackend(plan);
  } else {
    if (plan.target != "cuda")
      fail(module.path(), ": compiled for target '", plan.target,
           "'; recompile with --target cuda to run it on a GPU");
    backend_ = createCudaBackend(plan, device.index);
  }
  if (const EntryDesc *init = plan.entry("init"))
    for (const KernelDesc &k : init->kernels)
      for (int32_t id : k.operands)
        initReadsWeights_ |= id >= 0 && plan.values[id].region == Region::Weights;
  runInit();
}

Session::~Session() = default;
Session::Session(Session &&) noexcept = default;

void Session::runInit() {
  if (const EntryDesc *init = module_.plan().entry("init"))
    backend_->run(*init);
}

std::vector<std::string> Session::checkpointNames() const {
  std::vector<std::string> names;
  for (const ParamDesc &p : module_.plan().params)
    for (std::string &n : expandName(p, module_.plan().values[p.value]))
      names.push_back(std::move(n));
  return names;
}

void Session::loadWeights(const std::string &path) {
  const Plan &plan = module_.plan();
  SafetensorsFile file = SafetensorsFile::open(path);
  std::set<std::string> used;
  std::vector<std::string> missing, misshaped;
  struct Pending {
    const ParamDesc *param;
    std::vector<std::string> names;
  };
  std::vector<Pending> pending;
  for (const ParamDesc &p : plan.params) {
    const ValueDesc &v = plan.values[p.value];
    std::vector<std::string> names = expandName(p, v);
    bool stacked = names.size() != 1 || names[0] != p.name;
    std::vector<int64_t> sliceShape = stacked ? std::vector<int64_t>(v.shape.begin() + 1, v.shape.end())
                                              : v.shape;
    for (const std::string &n : names) {
      if (!file.contains(n)) {
        missing.push_back(n);
        continue;
      }
      used.insert(n);
      if (file.info(n).shape != sliceShape)
        misshaped.push_back("'" + n + "' is " + shapeText(file.info(n).shape) +
                            " in the file but the model needs " + shapeText(sliceShape));
    }
    pending.push_back({&p, std::move(names)});
  }
  for (const StateDesc &s : plan.state) {
    if (!file.contains(s.name))
      continue;
    used.insert(s.name);
    if (file.info(s.name).shape != s.shape)
      misshaped.push_back("'" + s.name + "' is " + shapeText(file.info(s.name).shape) +
                          " in the file but the model computes " + shapeText(s.shape));
  }
  std::vector<std::string> extra;
  for (const std::string &n : file.names())
    if (!used.count(n))
      extra.push_back(n);
  if (!missing.empty() || !misshaped.empty() || !extra.empty()) {
    std::ostringstream os;
    os << path << ": the checkpoint does not match " << module_.path() << ":";
    auto list = [&](const char *what, const std::vector<std::string> &items) {
      if (items.empty())
        return;
      os << "\n  " << items.size() << " " << what << ":";
      for (size_t i = 0; i < items.size() && i < 12; ++i)
        os << "\n    " << items[i];
      if (items.size() > 12)
        os << "\n    ... and " << items.size() - 12 << " more";
    };
    list("missing tensors", missing);
    list("mis-shaped tensors", misshaped);
    list("extra tensors the model does not have", extra);
    throw Error(os.str());
  }

  for (const Pending &p : pending) {
    const ValueDesc &v = plan.values[p.param->value];
    std::vector<float> all;
    all.reserve(v.numel());
    for (const std::string &n : p.names) {
      std::vector<float> part = file.readF32(n);
      all.insert(all.end(), part.begin(), part.end());
    }
    uploadValue(*backend_, v, encodeFloats(all.data(), static_cast<int64_t>(all.size()), v.dtype));
  }
  runInit();

  // Checkpoint copies of computed state must agree with the computation: a
  // differing position table means another resolution or interpolation.
  for (const StateDesc &s : plan.state) {
    if (!file.contains(s.name))
      continue;
    std::vector<float> stored = file.readF32(s.name);
    std::vector<float> expected(stored.size(), 0.0f);
    if (s.check == "value") {
      const ValueDesc &v = plan.values[s.value];
      expected = decodeFloats(downloadValue(*backend_, v).data(), v.numel(), v.dtype);
    }
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < stored.size() && i < expected.size(); ++i) {
      double d = std::fabs(static_cast<double>(stored[i]) - expected[i]);
      if (!(d <= worst)) {
        worst = d;
        at = i;
      }
    }
    if (!(worst <= 1e-4))
      fail(path, ": '", s.name, "' differs from what ", module_.path(), " computes (max difference ",
           worst, " at element ", at, "); the checkpoint was made for another resolution or "
           "interpolation scale");
  }
}

void Session::saveWeights(const std::string &path) const {
  const Plan &plan = module_.plan();
  SafetensorsWriter writer;
  for (const ParamDesc &p : plan.params) {
    const ValueDesc &v = plan.values[p.value];
    std::vector<float> values = decodeFloats(downloadValue(*backend_, v).data(), v.numel(), v.dtype);
    std::vector<std::string> names = expandName(p, v);
    if (names.size() == 1 && names[0] == p.name) {
      writer.addF32(p.name, v.shape, values.data());
      continue;
    }
    std::vector<int64_t> slice(v.shape.begin() + 1, v.shape.end());
    int64_t per = v.numel() / v.shape[0];
    for (size_t e = 0; e < names.size(); ++e)
      writer.addF32(names[e], slice, values.data() + e * per);
  }
  writer.write(path);
}

void Session::setParameter(const std::string &name, const std::vector<float> &values) {
  const Plan &plan = module_.plan();
  for (const ParamDesc &p : plan.params) {
    if (p.name != name)
      continue;
    const ValueDesc &v = plan.values[p.value];
    if (static_cast<int64_t>(values.size()) != v.numel())
      fail("parameter '", name, "' has ", v.numel(), " elements, got ", values.size());
    uploadValue(*backend_, v, encodeFloats(values.data(), v.numel(), v.dtype));
    runInit();
    return;
  }
  fail(module_.path(), ": no parameter named '", name, "'");
}

std::vector<float> Session::getParameter(const std::string &name) const {
  const Plan &plan = module_.plan();
  for (const ParamDesc &p : plan.params)
    if (p.name == name) {
      const ValueDesc &v = plan.values[p.value];
      return decodeFloats(downloadValue(*backend_, v).data(), v.numel(), v.dtype);
    }
  fail(module_.path(), ": no parameter named '", name, "'");
}

void Session::randomizeParameters(uint64_t seed, float scale) {
  const Plan &plan = module_.plan();
  for (size_t i = 0; i < plan.params.size(); ++i) {
    const ValueDesc &v = plan.values[plan.params[i].value];
    backend_->fillNormal(v.region, v.offset, v.dtype, v.numel(), seed * 1000003 + i, scale);
  }
  runInit();
}

std::vector<double> Session::time(const std::string &entryName, int warmup, int iterations) {
  const EntryDesc *entry = module_.plan().entry(entryName);
  if (!entry)
    fail(module_.path(), ": no entry point '", entryName, "'");
  if (warmup < 0 || iterations < 1)
    fail("timing needs warmup >= 0 and iterations >= 1, got ", warmup, " and ", iterations);
  return backend_->time(*entry, warmup, iterations);
}

std::vector<double> Session::profileKernels(const std::string &entryName, int iterations) {
  const EntryDesc *entry = module_.plan().entry(entryName);
  if (!entry)
    fail(module_.path(), ": no entry point '", entryName, "'");
  if (iterations < 1)
    fail("profiling needs iterations >= 1, got ", iterations);
  backend_->run(*entry);
  return backend_->profileKernels(*entry, iterations);
}

std::vector<HostTensor> Session::run(const std::string &entryName,
                                     const std::map<std::string, HostTensor> &inputs) {
  return run(entryName, inputs, std::numeric_limits<size_t>::max());
}

void Session::writeNoisedInputs(const std::string &entryName, const NoisedInputs &inputs) {
  const Plan &plan = module_.plan();
  const EntryDesc *entry = plan.entry(entryName);
  if (!entry)
    fail(module_.path(), ": no entry point '", entryName, "'");
  std::vector<ValueDesc> places;
  std::vector<std::string> names;
  for (const NoisedInputs::Target &t : inputs.targets) {
    auto it = std::find_if(entry->inputs.begin(), entry->inputs.end(),
                           [&](const auto &input) { return input.first == t.input; });
    if (it == entry->inputs.end())
      fail(module_.path(), ": '", entryName, "' has no input '", t.input, "'");
    if (std::find(names.begin(), names.end(), t.input) != names.end())
      fail("noised input '", t.input, "' is given twice");
    names.push_back(t.input);
    places.push_back(plan.values[it->second]);
  }
  stagedEntry_.clear();
  staged_.clear();
  backend_->writeNoisedInputs(inputs, places);
  stagedEntry_ = entryName;
  staged_ = std::move(names);
}

std::vector<HostTensor> Session::run(const std::string &entryName,
                                     const std::map<std::string, HostTensor> &inputs, size_t count) {
  const Plan &plan = module_.plan();
  const EntryDesc *entry = plan.entry(entryName);
  if (!entry)
    fail(module_.path(), ": no entry point '", entryName, "'");
  // Inputs written by writeNoisedInputs count for this run only.
  std::vector<std::string> staged;
  if (stagedEntry_ == entryName)
    staged = std::move(staged_);
  stagedEntry_.clear();
  staged_.clear();
  std::set<std::string> expected;
  for (auto &[name, id] : entry->inputs) {
    expected.insert(name);
    auto it = inputs.find(name);
    if (it == inputs.end()) {
      if (std::find(staged.begin(), staged.end(), name) != staged.end())
        continue;
      fail(entryName, ": missing input '", name, "' (", shapeText(plan.values[id].shape), ")");
    }
    const HostTensor &t = it->second;
    const ValueDesc &v = plan.values[id];
    if (t.shape != v.shape)
      fail(entryName, ": input '", name, "' is ", shapeText(t.shape), " but the model was compiled for ",
           shapeText(v.shape));
    if (v.dtype == DType::I32) {
      if (t.dtype != DType::I32 || static_cast<int64_t>(t.i32.size()) != t.numel())
        fail(entryName, ": input '", name, "' must hold ", t.numel(), " int32 values");
      std::vector<uint8_t> bytes(t.i32.size() * 4);
      std::memcpy(bytes.data(), t.i32.data(), bytes.size());
      uploadValue(*backend_, v, bytes);
    } else {
      if (t.dtype != DType::F32 || static_cast<int64_t>(t.f32.size()) != t.numel())
        fail(entryName, ": input '", name, "' must hold ", t.numel(), " float values");
      uploadValue(*backend_, v, encodeFloats(t.f32.data(), t.numel(), v.dtype));
    }
  }
  for (auto &[name, tensor] : inputs)
    if (!expected.count(name))
      fail(entryName, ": unexpected input '", name, "'");
  backend_->run(*entry);
  std::vector<HostTensor> outputs;
  for (int32_t id : entry->outputs) {
    if (outputs.size() >= count)
      break;
    const ValueDesc &v = plan.values[id];
    outputs.push_back(HostTensor::floats(v.shape, decodeFloats(downloadValue(*backend_, v).data(),
                                                               v.numel(), v.dtype)));
  }
  return outputs;
}

void Session::initOptimizer(bool ema) {
  const Plan &plan = module_.plan();
  const EntryDesc *entry = plan.entry("train_step");
  if (!entry)
    fail(module_.path(), ": not a training artifact (no 'train_step' entry); compile with --mode train");
  if (entry->outputs.size() != plan.params.size() + 1)
    fail(module_.path(), ": train_step returns ", entry->outputs.size(), " values for ", plan.params.size(),
         " parameters (expected the loss and one gradient each)");
  std::vector<int32_t> params, grads;
  for (size_t p = 0; p < plan.params.size(); ++p) {
    const ValueDesc &w = plan.values[plan.params[p].value], &g = plan.values[entry->outputs[p + 1]];
    if (w.shape != g.shape || w.dtype != g.dtype)
      fail(module_.path(), ": the gradient of '", plan.params[p].name, "' is ", shapeText(g.shape), " ",
           dtypeName(g.dtype), " but the parameter is ", shapeText(w.shape), " ", dtypeName(w.dtype));
    params.push_back(plan.params[p].value);
    grads.push_back(entry->outputs[p + 1]);
  }
  backend_->initOptimizer(params, grads, ema);
}

double Session::optimizerStep(const AdamWStep &step) {
  double norm = backend_->optimizerStep(step);
  // Constants computed from parameters must follow the new weights.
  if (std::isfinite(norm) && initReadsWeights_)
    runInit();
  return norm;
}

bool Session::fuseOptimizerStep(const AdamWStep &step) { return backend_->fuseOptimizerStep(step); }

double Session::fusedGradNorm() {
  double norm = backend_->fusedGradNorm();
  if (initReadsWeights_)
    runInit();
  return norm;
}

std::vector<float> Session::optimizerState(OptimizerSlot slot, size_t param) const {
  return backend_->readOptimizer(slot, param);
}

void Session::setOptimizerState(OptimizerSlot slot, size_t param, const std::vector<float> &values) {
  const ValueDesc &v = module_.plan().values[module_.plan().params.at(param).value];
  if (static_cast<int64_t>(values.size()) != v.numel())
    fail("optimizer state of '", module_.plan().params[param].name, "' has ", v.numel(), " elements, got ",
         values.size());
  backend_->writeOptimizer(slot, param, values);
}

void Session::setLossScale(double scale) { backend_->setLossScale(scale); }

uint64_t Session::deviceBytes() const { return backend_->deviceBytes(); }

size_t Session::sideStreamKernels(const std::string &entry) const { return backend_->sideStreamKernels(entry); }

#ifndef DIFFRT_WITH_CUDA
std::unique_ptr<Backend> createCudaBackend(const Plan &, int) {
  fail("this runtime was built without CUDA (DIFFC_ENABLE_CUDA=OFF or no CUDA compiler)");
}
#endif

} // namespace diffrt
