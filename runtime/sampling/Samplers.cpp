//===- Samplers.cpp - diffusion schedules and sampling loops --------------===//
//
// Ports of DiT's gaussian_diffusion.py / respace.py, DiT-MoE's
// rectified_flow.py sampler and MicroDiT's edm_sampler_loop. The order of
// floating-point operations follows the references (including where they
// round float64 schedules to float32), so that results agree with them to
// the last bit wherever the math libraries agree.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Samplers.h"

#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

namespace diffrt {
namespace {

/// Python's round() on a float: halves go to the even neighbour.
int64_t roundHalfEven(double x) {
  double lower = std::floor(x);
  double diff = x - lower;
  int64_t base = static_cast<int64_t>(lower);
  if (diff > 0.5)
    return base + 1;
  if (diff < 0.5)
    return base;
  return (base % 2 == 0) ? base : base + 1;
}

/// A non-empty string of decimal digits that fits comfortably in int64.
bool parseCount(const std::string &text, int64_t &out) {
  if (text.empty() || text.size() > 12)
    return false;
  int64_t value = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9')
      return false;
    value = value * 10 + (ch - '0');
  }
  out = value;
  return true;
}

/// The integer stride for which range(0, T, stride) has exactly `count`
/// elements, searched as DiT does (smallest first, strides 1 .. T-1); 0 if
/// none exists.
int64_t ddimStride(int64_t numTimesteps, int64_t count) {
  for (int64_t stride = 1; stride < numTimesteps; ++stride)
    if ((numTimesteps + stride - 1) / stride == count)
      return stride;
  return 0;
}

const char *kAcceptedSamplers =
    "accepted forms: ddpm:<steps> (e.g. ddpm:250), ddim:<steps> (e.g. ddim:50), "
    "rf:<steps> (e.g. rf:50), edm:<steps> (e.g. edm:30)";

void checkOutput(const SamplerConfig &cfg, const std::vector<float> &out, int64_t n,
                 int64_t channels, int64_t h, int64_t w, const char *what) {
  size_t needed = size_t(n * channels * h * w);
  if (out.size() != needed)
    fail("runSampler (", samplerSpec(cfg), "): the model returned ", out.size(),
         " floats but ", what, " needs ", n, " x ", channels, " x ", h, " x ", w, " = ", needed);
}

/// Runs body(sample, channel) over every (sample, channel) plane of hw
/// values, in parallel: each plane is written by one call, so the result
/// does not depend on the thread count.
void forEachPlane(int64_t n, int64_t c, int64_t hw, const std::function<void(int64_t, int64_t)> &body) {
  cpu::parallelFor(n * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(hw, 1)),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r)
                       body(r / c, r % c);
                   });
}

/// Guidance shared by both published variants: only which channels are
/// guided differs.
void guideChannels(std::vector<float> &out, int64_t n2, int64_t cOut, int64_t hw, double scale,
                   int64_t channels, const char *who) {
  if (n2 < 2 || n2 % 2 != 0)
    fail(who, ": the doubled batch [cond; uncond] has ", n2, " samples; need an even count >= 2");
  if (hw < 1)
    fail(who, ": ", hw, " values per channel; need at least 1");
  if (channels < 0 || channels > cOut)
    fail(who, ": cannot guide ", channels, " channels of a ", cOut, "-channel output");
  if (out.size() != size_t(n2 * cOut * hw))
    fail(who, ": output has ", out.size(), " floats but ", n2, " x ", cOut, " x ", hw, " = ",
         n2 * cOut * hw, " were declared");
  // The references multiply a float32 tensor by a Python float, which
  // PyTorch rounds to float32 first.
  const float s = static_cast<float>(scale);
  int64_t half = n2 / 2;
  if (channels == 0)
    return;
  forEachPlane(half, channels, hw, [&](int64_t i, int64_t ch) {
    float *cond = out.data() + (i * cOut + ch) * hw;
    float *uncond = out.data() + ((i + half) * cOut + ch) * hw;
    for (int64_t k = 0; k < hw; ++k) {
      float g = uncond[k] + s * (cond[k] - uncond[k]);
      cond[k] = g;
      uncond[k] = g;
    }
  });
}

} // namespace

//===----------------------------------------------------------------------===//
// GaussianDiffusion
//===----------------------------------------------------------------------===//

GaussianDiffusion::GaussianDiffusion(int64_t numTimesteps) {
  if (numTimesteps < 2)
    fail("GaussianDiffusion: ", numTimesteps, " timesteps; need at least 2");
  double scale = 1000.0 / double(numTimesteps);
  double start = scale * 0.0001, stop = scale * 0.02;
  if (stop >= 1.0)
    fail("GaussianDiffusion: the linear schedule over ", numTimesteps,
         " timesteps ends at beta = ", stop, " >= 1; use at least 21 timesteps");
  // numpy.linspace: y_i = i * step + start (two roundings, never fused),
  // with the endpoint stored exactly.
  double step = (stop - start) / double(numTimesteps - 1);
  betas_.resize(size_t(numTimesteps));
  for (int64_t i = 0; i < numTimesteps; ++i) {
    volatile double product = double(i) * step; // keeps the compiler from forming an FMA
    betas_[size_t(i)] = product + start;
  }
  betas_.back() = stop;
  timestepMap_.resize(size_t(numTimesteps));
  for (int64_t i = 0; i < numTimesteps; ++i)
    timestepMap_[size_t(i)] = i;
  computeSchedules();
}

GaussianDiffusion::GaussianDiffusion(std::vector<double> betas, std::vector<int64_t> timestepMap)
    : betas_(std::move(betas)), timestepMap_(std::move(timestepMap)) {
  if (betas_.size() < 2)
    fail("GaussianDiffusion: ", betas_.size(), " betas; need at least 2");
  if (timestepMap_.size() != betas_.size())
    fail("GaussianDiffusion: ", betas_.size(), " betas but ", timestepMap_.size(),
         " timestep-map entries");
  for (size_t i = 0; i < betas_.size(); ++i)
    if (!(betas_[i] > 0.0 && betas_[i] < 1.0))
      fail("GaussianDiffusion: beta[", i, "] = ", betas_[i], " is outside (0, 1)");
  computeSchedules();
}

void GaussianDiffusion::computeSchedules() {
  size_t T = betas_.size();
  logBetas_.resize(T);
  alphasCumprod_.resize(T);
  alphasCumprodPrev_.resize(T);
  sqrtRecipAlphasCumprod_.resize(T);
  sqrtRecipm1AlphasCumprod_.resize(T);
  posteriorVariance_.resize(T);
  posteriorLogVarianceClipped_.resize(T);
  posteriorMeanCoef1_.resize(T);
  posteriorMeanCoef2_.resize(T);
  double product = 1.0;
  for (size_t t = 0; t < T; ++t) {
    double beta = betas_[t];
    double alpha = 1.0 - beta;
    double prev = product;
    product *= alpha;
    logBetas_[t] = std::log(beta);
    alphasCumprod_[t] = product;
    alphasCumprodPrev_[t] = prev;
    sqrtRecipAlphasCumprod_[t] = std::sqrt(1.0 / product);
    sqrtRecipm1AlphasCumprod_[t] = std::sqrt(1.0 / product - 1.0);
    posteriorVariance_[t] = beta * (1.0 - prev) / (1.0 - product);
    posteriorMeanCoef1_[t] = beta * std::sqrt(prev) / (1.0 - product);
    posteriorMeanCoef2_[t] = (1.0 - prev) * std::sqrt(alpha) / (1.0 - product);
  }
  // beta~_0 is 0; its log would be -inf, so DiT substitutes beta~_1.
  posteriorLogVarianceClipped_[0] = std::log(posteriorVariance_[1]);
  for (size_t t = 1; t < T; ++t)
    posteriorLogVarianceClipped_[t] = std::log(posteriorVariance_[t]);
}

std::vector<int64_t> GaussianDiffusion::spacedTimesteps(int64_t numTimesteps,
                                                        const std::string &spec) {
  if (numTimesteps < 1)
    fail("timestep respacing '", spec, "': the process has ", numTimesteps, " timesteps");
  std::vector<int64_t> steps;
  if (spec.rfind("ddim", 0) == 0) {
    int64_t count = 0;
    if (!parseCount(spec.substr(4), count) || count < 1)
      fail("timestep respacing '", spec, "': expected ddim<N> with a positive integer N");
    int64_t stride = ddimStride(numTimesteps, count);
    if (stride == 0)
      fail("timestep respacing '", spec, "': no integer stride gives exactly ", count,
           " steps out of ", numTimesteps);
    for (int64_t t = 0; t < numTimesteps; t += stride)
      steps.push_back(t);
    return steps;
  }

  std::vector<int64_t> counts;
  std::stringstream parts(spec);
  std::string part;
  while (std::getline(parts, part, ',')) {
    int64_t count = 0;
    if (!parseCount(part, count) || count < 1)
      fail("timestep respacing '", spec, "': section '", part,
           "' is not a positive integer (expected \"N\", \"N1,N2,...\" or \"ddimN\")");
    counts.push_back(count);
  }
  if (counts.empty() || spec.back() == ',')
    fail("timestep respacing '", spec, "': expected \"N\", \"N1,N2,...\" or \"ddimN\"");
  int64_t sections = int64_t(counts.size());
  int64_t sizePer = numTimesteps / sections, extra = numTimesteps % sections;
  int64_t start = 0;
  for (int64_t i = 0; i < sections; ++i) {
    int64_t size = sizePer + (i < extra ? 1 : 0);
    int64_t count = counts[size_t(i)];
    if (size < count)
      fail("timestep respacing '", spec, "': cannot take ", count, " steps from section ", i,
           " of ", size, " timesteps (", numTimesteps, " timesteps in ", sections,
           " sections)");
    // DiT accumulates the fractional stride rather than multiplying; the
    // sum is kept to reproduce its roundings.
    double stride = count <= 1 ? 1.0 : double(size - 1) / double(count - 1);
    double position = 0.0;
    for (int64_t k = 0; k < count; ++k) {
      steps.push_back(start + roundHalfEven(position));
      position += stride;
    }
    start += size;
  }
  std::sort(steps.begin(), steps.end());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  return steps;
}

GaussianDiffusion GaussianDiffusion::respaced(const std::vector<int64_t> &kept) const {
  int64_t T = numTimesteps();
  if (kept.size() < 2)
    fail("GaussianDiffusion::respaced: ", kept.size(), " kept timesteps; need at least 2");
  std::vector<double> betas;
  std::vector<int64_t> map;
  betas.reserve(kept.size());
  map.reserve(kept.size());
  double last = 1.0;
  for (size_t i = 0; i < kept.size(); ++i) {
    int64_t t = kept[i];
    if (t < 0 || t >= T)
      fail("GaussianDiffusion::respaced: kept[", i, "] = ", t, " is outside 0 .. ", T - 1);
    if (i > 0 && t <= kept[i - 1])
      fail("GaussianDiffusion::respaced: kept[", i, "] = ", t, " does not exceed kept[", i - 1,
           "] = ", kept[i - 1], "; indices must be strictly increasing");
    double abar = alphasCumprod_[size_t(t)];
    betas.push_back(1.0 - abar / last);
    last = abar;
    map.push_back(timestepMap_[size_t(t)]);
  }
  return GaussianDiffusion(std::move(betas), std::move(map));
}

void GaussianDiffusion::ddpmStep(int64_t t, int64_t n, int64_t c, int64_t hw, const float *x,
                                 const float *modelOut, int64_t cOut, bool learnedSigma,
                                 const float *noise, float *xPrev) const {
  if (t < 0 || t >= numTimesteps())
    fail("ddpmStep: t = ", t, " is outside 0 .. ", numTimesteps() - 1);
  if (cOut < (learnedSigma ? 2 * c : c))
    fail("ddpmStep: model output has ", cOut, " channels but ", c, " image channels",
         learnedSigma ? " with learned sigma need " : " need ", learnedSigma ? 2 * c : c);
  if (t > 0 && noise == nullptr)
    fail("ddpmStep: t = ", t, " needs noise");
  size_t ut = size_t(t);
  // DiT's _extract_into_tensor turns each float64 coefficient into float32
  // and the step runs in float32.
  const float recip = float(sqrtRecipAlphasCumprod_[ut]);
  const float recipm1 = float(sqrtRecipm1AlphasCumprod_[ut]);
  const float coef1 = float(posteriorMeanCoef1_[ut]);
  const float coef2 = float(posteriorMeanCoef2_[ut]);
  const float maxLog = float(logBetas_[ut]);
  const float minLog = float(posteriorLogVarianceClipped_[ut]);
  // Fixed-large variance: (beta~_1, beta_1, beta_2, ...).
  const float fixedLog = float(t == 0 ? std::log(posteriorVariance_[1]) : logBetas_[ut]);
  forEachPlane(n, c, hw, [&](int64_t i, int64_t ch) {
    int64_t xo = (i * c + ch) * hw;
    const float *eps = modelOut + (i * cOut + ch) * hw;
    const float *v = modelOut + (i * cOut + c + ch) * hw;
    for (int64_t k = 0; k < hw; ++k) {
      float xt = x[xo + k];
      float x0 = recip * xt - recipm1 * eps[k];
      float mean = coef1 * x0 + coef2 * xt;
      if (t == 0) {
        xPrev[xo + k] = mean;
        continue;
      }
      float logVar;
      if (learnedSigma) {
        float frac = (v[k] + 1.0f) / 2.0f;
        logVar = frac * maxLog + (1.0f - frac) * minLog;
      } else {
        logVar = fixedLog;
      }
      xPrev[xo + k] = mean + std::exp(0.5f * logVar) * noise[xo + k];
    }
  });
}

void GaussianDiffusion::ddimStep(int64_t t, int64_t n, int64_t c, int64_t hw, const float *x,
                                 const float *modelOut, int64_t cOut, double eta,
                                 const float *noise, float *xPrev) const {
  if (t < 0 || t >= numTimesteps())
    fail("ddimStep: t = ", t, " is outside 0 .. ", numTimesteps() - 1);
  if (cOut < c)
    fail("ddimStep: model output has ", cOut, " channels but the image has ", c);
  if (!(eta >= 0.0))
    fail("ddimStep: eta = ", eta, " must be >= 0");
  size_t ut = size_t(t);
  const float recip = float(sqrtRecipAlphasCumprod_[ut]);
  const float recipm1 = float(sqrtRecipm1AlphasCumprod_[ut]);
  const float abar = float(alphasCumprod_[ut]);
  const float abarPrev = float(alphasCumprodPrev_[ut]);
  const float sigma = float(eta) * std::sqrt((1.0f - abarPrev) / (1.0f - abar)) *
                      std::sqrt(1.0f - abar / abarPrev);
  const float sqrtAbarPrev = std::sqrt(abarPrev);
  const float dirScale = std::sqrt(1.0f - abarPrev - sigma * sigma);
  bool addNoise = t > 0 && sigma > 0.0f;
  if (addNoise && noise == nullptr)
    fail("ddimStep: t = ", t, " with eta = ", eta, " needs noise");
  forEachPlane(n, c, hw, [&](int64_t i, int64_t ch) {
    int64_t xo = (i * c + ch) * hw;
    const float *eps = modelOut + (i * cOut + ch) * hw;
    for (int64_t k = 0; k < hw; ++k) {
      float xt = x[xo + k];
      float x0 = recip * xt - recipm1 * eps[k];
      float epsRe = (recip * xt - x0) / recipm1;
      float next = x0 * sqrtAbarPrev + dirScale * epsRe;
      if (addNoise)
        next = next + sigma * noise[xo + k];
      xPrev[xo + k] = next;
    }
  });
}

//===----------------------------------------------------------------------===//
// Sampler configuration
//===----------------------------------------------------------------------===//

SamplerConfig parseSampler(const std::string &spec) {
  size_t colon = spec.find(':');
  if (colon == std::string::npos)
    fail("sampler spec '", spec, "': missing ':<steps>'; ", kAcceptedSamplers);
  std::string kind = spec.substr(0, colon);
  int64_t steps = 0;
  if (!parseCount(spec.substr(colon + 1), steps) || steps < 1)
    fail("sampler spec '", spec, "': '", spec.substr(colon + 1),
         "' is not a positive step count; ", kAcceptedSamplers);
  SamplerConfig cfg;
  cfg.steps = steps;
  if (kind == "ddpm") {
    cfg.kind = SamplerConfig::Ddpm;
    if (steps < 2 || steps > cfg.diffusionSteps)
      fail("sampler spec '", spec, "': DDPM takes 2 .. ", cfg.diffusionSteps, " steps, not ",
           steps);
  } else if (kind == "ddim") {
    cfg.kind = SamplerConfig::Ddim;
    if (steps < 2 || ddimStride(cfg.diffusionSteps, steps) == 0) {
      // Suggest the reachable counts on either side.
      int64_t below = 0, above = 0;
      for (int64_t s = steps - 1; s >= 2 && !below; --s)
        if (ddimStride(cfg.diffusionSteps, s))
          below = s;
      for (int64_t s = steps + 1; s <= cfg.diffusionSteps && !above; ++s)
        if (ddimStride(cfg.diffusionSteps, s))
          above = s;
      std::ostringstream hint;
      if (below)
        hint << " ddim:" << below;
      if (above)
        hint << (below ? " or" : "") << " ddim:" << above;
      fail("sampler spec '", spec, "': no integer stride of the ", cfg.diffusionSteps,
           " diffusion steps gives exactly ", steps, " DDIM steps; nearest valid:", hint.str());
    }
  } else if (kind == "rf") {
    cfg.kind = SamplerConfig::RectifiedFlow;
  } else if (kind == "edm") {
    cfg.kind = SamplerConfig::EdmHeun;
    if (steps < 2)
      fail("sampler spec '", spec, "': the EDM sampler needs at least 2 steps");
  } else {
    fail("sampler spec '", spec, "': unknown sampler '", kind, "'; ", kAcceptedSamplers);
  }
  return cfg;
}

std::string samplerSpec(const SamplerConfig &cfg) {
  const char *kind = "?";
  switch (cfg.kind) {
  case SamplerConfig::Ddpm: kind = "ddpm"; break;
  case SamplerConfig::Ddim: kind = "ddim"; break;
  case SamplerConfig::RectifiedFlow: kind = "rf"; break;
  case SamplerConfig::EdmHeun: kind = "edm"; break;
  }
  return std::string(kind) + ":" + std::to_string(cfg.steps);
}

std::vector<double> edmSigmas(const SamplerConfig &cfg) {
  int64_t N = cfg.steps;
  if (N < 2)
    fail("edmSigmas (", samplerSpec(cfg), "): need at least 2 steps");
  if (!(cfg.sigmaMin > 0.0 && cfg.sigmaMax > cfg.sigmaMin && cfg.rho > 0.0))
    fail("edmSigmas (", samplerSpec(cfg), "): need 0 < sigmaMin < sigmaMax and rho > 0, got "
         "sigmaMin ", cfg.sigmaMin, ", sigmaMax ", cfg.sigmaMax, ", rho ", cfg.rho);
  double maxRoot = std::pow(cfg.sigmaMax, 1.0 / cfg.rho);
  double minRoot = std::pow(cfg.sigmaMin, 1.0 / cfg.rho);
  std::vector<double> sigmas(size_t(N + 1));
  for (int64_t i = 0; i < N; ++i)
    sigmas[size_t(i)] =
        std::pow(maxRoot + double(i) / double(N - 1) * (minRoot - maxRoot), cfg.rho);
  sigmas[size_t(N)] = 0.0;
  return sigmas;
}

//===----------------------------------------------------------------------===//
// Sampling loops
//===----------------------------------------------------------------------===//

namespace {

void runGaussian(const SamplerConfig &cfg, int64_t n, int64_t c, int64_t h, int64_t w,
                 std::vector<float> &x, const ModelFn &model, Philox &rng,
                 const std::function<void(int64_t, int64_t)> &progress) {
  bool ddpm = cfg.kind == SamplerConfig::Ddpm;
  std::string respacing = ddpm ? std::to_string(cfg.steps) : "ddim" + std::to_string(cfg.steps);
  GaussianDiffusion base(cfg.diffusionSteps);
  GaussianDiffusion process =
      base.respaced(GaussianDiffusion::spacedTimesteps(cfg.diffusionSteps, respacing));
  int64_t total = process.numTimesteps();
  int64_t cOut = cfg.learnedSigma ? 2 * c : c;
  int64_t hw = h * w;
  ModelCall call;
  call.t.resize(size_t(n));
  std::vector<float> out, noise;
  for (int64_t k = 0; k < total; ++k) {
    int64_t t = total - 1 - k;
    call.x = x;
    std::fill(call.t.begin(), call.t.end(), float(process.timestepMap()[size_t(t)]));
    model(call.x, call.t, out);
    checkOutput(cfg, out, n, cOut, h, w,
                cfg.learnedSigma ? "eps-hat and v (learned sigma)" : "eps-hat");
    bool needNoise = t > 0 && (ddpm || cfg.ddimEta > 0.0);
    if (needNoise) {
      noise.resize(x.size());
      rng.fillNormal(noise.data(), int64_t(noise.size()));
    }
    if (ddpm)
      process.ddpmStep(t, n, c, hw, x.data(), out.data(), cOut, cfg.learnedSigma,
                       needNoise ? noise.data() : nullptr, x.data());
    else
      process.ddimStep(t, n, c, hw, x.data(), out.data(), cOut, cfg.ddimEta,
                       needNoise ? noise.data() : nullptr, x.data());
    if (progress)
      progress(k + 1, total);
  }
}

void runRectifiedFlow(const SamplerConfig &cfg, int64_t n, int64_t c, int64_t h, int64_t w,
                      std::vector<float> &x, const ModelFn &model,
                      const std::function<void(int64_t, int64_t)> &progress) {
  int64_t total = cfg.steps;
  int64_t hw = h * w;
  // The reference builds t and dt as Python floats and then float32 tensors.
  const float dt = float(1.0 / double(total));
  ModelCall call;
  call.t.resize(size_t(n));
  std::vector<float> out;
  for (int64_t k = 0; k < total; ++k) {
    int64_t i = total - k;
    call.x = x;
    std::fill(call.t.begin(), call.t.end(), float(double(i) / double(total)));
    model(call.x, call.t, out);
    size_t perChannel = size_t(n * hw);
    if (out.size() % perChannel != 0 || out.size() / perChannel < size_t(c))
      fail("runSampler (", samplerSpec(cfg), "): the model returned ", out.size(),
           " floats; the velocity needs ", n, " x C_out x ", h, " x ", w, " with C_out >= ", c);
    int64_t cOut = int64_t(out.size() / perChannel);
    forEachPlane(n, c, hw, [&](int64_t s, int64_t ch) {
      float *xs = x.data() + (s * c + ch) * hw;
      const float *v = out.data() + (s * cOut + ch) * hw;
      for (int64_t p = 0; p < hw; ++p)
        xs[p] = xs[p] - dt * v[p];
    });
    if (progress)
      progress(k + 1, total);
  }
}

void runEdmHeun(const SamplerConfig &cfg, int64_t n, int64_t c, int64_t h, int64_t w,
                std::vector<float> &x, const ModelFn &model,
                const std::function<void(int64_t, int64_t)> &progress) {
  if (!(cfg.sigmaData > 0.0))
    fail("runSampler (", samplerSpec(cfg), "): sigmaData = ", cfg.sigmaData, " must be > 0");
  std::vector<double> sigmas = edmSigmas(cfg);
  int64_t total = cfg.steps;
  size_t size = x.size();
  ModelCall call;
  call.x.resize(size);
  call.t.resize(size_t(n));
  std::vector<float> out;
  std::vector<float> x32(size);
  // MicroDiT's model_forward_wrapper runs in the float32 of its input:
  // sigma and the preconditioners are float32, sigma_data ** 2 is a Python
  // float rounded to float32 when combined with them.
  const float sd = float(cfg.sigmaData);
  const float sd2 = float(cfg.sigmaData * cfg.sigmaData);
  auto denoise = [&](const std::vector<double> &state, double sigma, std::vector<double> &d) {
    const float s = float(sigma);
    const float cSkip = sd2 / (s * s + sd2);
    const float cOut = s * sd / std::sqrt(s * s + sd2);
    const float cIn = 1.0f / std::sqrt(sd2 + s * s);
    const float cNoise = std::log(s) / 4.0f;
    for (size_t k = 0; k < size; ++k) {
      x32[k] = float(state[k]);
      call.x[k] = cIn * x32[k];
    }
    std::fill(call.t.begin(), call.t.end(), cNoise);
    model(call.x, call.t, out);
    checkOutput(cfg, out, n, c, h, w, "F");
    for (size_t k = 0; k < size; ++k)
      d[k] = double(cSkip * x32[k] + cOut * out[k]);
  };

  std::vector<double> cur(size), next(size), denoised(size), dCur(size);
  for (size_t k = 0; k < size; ++k)
    cur[k] = double(x[k]) * sigmas[0];
  for (int64_t i = 0; i < total; ++i) {
    // S_churn = 0: t_hat = t_cur and no noise is added.
    double tCur = sigmas[size_t(i)], tNext = sigmas[size_t(i + 1)];
    denoise(cur, tCur, denoised);
    for (size_t k = 0; k < size; ++k) {
      dCur[k] = (cur[k] - denoised[k]) / tCur;
      next[k] = cur[k] + (tNext - tCur) * dCur[k];
    }
    if (i < total - 1) {
      denoise(next, tNext, denoised);
      for (size_t k = 0; k < size; ++k) {
        double dPrime = (next[k] - denoised[k]) / tNext;
        next[k] = cur[k] + (tNext - tCur) * (0.5 * dCur[k] + 0.5 * dPrime);
      }
    }
    cur.swap(next);
    if (progress)
      progress(i + 1, total);
  }
  for (size_t k = 0; k < size; ++k)
    x[k] = float(cur[k]);
}

} // namespace

void runSampler(const SamplerConfig &cfg, int64_t n, int64_t c, int64_t h, int64_t w,
                std::vector<float> &x, const ModelFn &model, Philox &rng,
                const std::function<void(int64_t step, int64_t total)> &progress) {
  if (n < 1 || c < 1 || h < 1 || w < 1)
    fail("runSampler (", samplerSpec(cfg), "): batch ", n, " x ", c, " x ", h, " x ", w,
         " must be at least 1 in every dimension");
  if (x.size() != size_t(n * c * h * w))
    fail("runSampler (", samplerSpec(cfg), "): x has ", x.size(), " floats but ", n, " x ", c,
         " x ", h, " x ", w, " = ", n * c * h * w);
  if (!model)
    fail("runSampler (", samplerSpec(cfg), "): no model function");
  if (cfg.steps < 1)
    fail("runSampler (", samplerSpec(cfg), "): ", cfg.steps, " steps; need at least 1");
  switch (cfg.kind) {
  case SamplerConfig::Ddpm:
  case SamplerConfig::Ddim:
    runGaussian(cfg, n, c, h, w, x, model, rng, progress);
    return;
  case SamplerConfig::RectifiedFlow:
    runRectifiedFlow(cfg, n, c, h, w, x, model, progress);
    return;
  case SamplerConfig::EdmHeun:
    runEdmHeun(cfg, n, c, h, w, x, model, progress);
    return;
  }
  fail("runSampler: unknown sampler kind ", int(cfg.kind));
}

void guideDiT3Channel(std::vector<float> &out, int64_t n2, int64_t cOut, int64_t hw, double scale,
                      int64_t guidedChannels) {
  guideChannels(out, n2, cOut, hw, scale, guidedChannels, "guideDiT3Channel");
}

void guideAllChannels(std::vector<float> &out, int64_t n2, int64_t cOut, int64_t hw, double scale,
                      int64_t channels) {
  guideChannels(out, n2, cOut, hw, scale, channels, "guideAllChannels");
}

} // namespace diffrt
