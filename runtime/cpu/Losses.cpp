//===- Losses.cpp - diffusion training losses and their gradients ---------===//
//
// The per-sample objectives of the three training set-ups, each returning
// loss[n] and, when asked, the gradient of Σ_n weight[n]·loss[n] with
// respect to the network output (weight null: 1/N, the batch mean):
//   * DiT's DDPM loss (spec 2.7): ε-MSE plus the variational bound term in
//     bits, whose model mean uses a stop-gradient ε̂, so ε̂ is trained by the
//     MSE alone and the learned-range variance v by the bound alone;
//   * DiT-MoE's rectified-flow velocity loss (spec 3.5(b));
//   * MicroDiT's EDM loss (spec 4.7) with the optional kept-patch mask of
//     deferred masking (spec 4.5).
// Schedules, preconditioning and every reduction are in double (the sums
// run over C·H·W values per sample, where float32 would lose digits); each
// sample is one task, so the results do not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

#include <cmath>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

namespace {

constexpr double kLn2 = 0.69314718055994530942;

/// weight[n], or the batch mean's 1/N when there is no weight vector.
double sampleWeight(const float *weight, int64_t n, int64_t count) {
  return weight != nullptr ? static_cast<double>(weight[n]) : 1.0 / static_cast<double>(count);
}

/// The linear-β DDPM schedule of guided-diffusion, in float64, with the
/// quantities the bound needs per timestep.
struct DdpmSchedule {
  std::vector<double> logBeta, logPosteriorClipped, coef1, coef2, sqrtRecip, sqrtRecipM1;

  explicit DdpmSchedule(int64_t steps) {
    size_t n = static_cast<size_t>(steps);
    // betas = linspace(s·1e-4, s·0.02, T), s = 1000/T, as numpy evaluates
    // it: start + i·step, the last value set to stop exactly.
    double s = 1000.0 / static_cast<double>(steps);
    double start = s * 1e-4, stop = s * 0.02;
    double step = (stop - start) / static_cast<double>(steps - 1);
    std::vector<double> beta(n), alphaBar(n), alphaBarPrev(n), posterior(n);
    for (size_t i = 0; i < n; ++i)
      beta[i] = static_cast<double>(i) * step + start;
    beta[n - 1] = stop;
    double prod = 1.0;
    for (size_t i = 0; i < n; ++i) {
      alphaBarPrev[i] = prod;
      prod *= 1.0 - beta[i];
      alphaBar[i] = prod;
    }
    logBeta.resize(n);
    logPosteriorClipped.resize(n);
    coef1.resize(n);
    coef2.resize(n);
    sqrtRecip.resize(n);
    sqrtRecipM1.resize(n);
    for (size_t i = 0; i < n; ++i) {
      posterior[i] = beta[i] * (1.0 - alphaBarPrev[i]) / (1.0 - alphaBar[i]);
      logBeta[i] = std::log(beta[i]);
      coef1[i] = beta[i] * std::sqrt(alphaBarPrev[i]) / (1.0 - alphaBar[i]);
      coef2[i] = (1.0 - alphaBarPrev[i]) * std::sqrt(1.0 - beta[i]) / (1.0 - alphaBar[i]);
      sqrtRecip[i] = std::sqrt(1.0 / alphaBar[i]);
      sqrtRecipM1[i] = std::sqrt(1.0 / alphaBar[i] - 1.0);
    }
    // β̃_0 = 0: the clipped log uses β̃_1 in its place.
    for (size_t i = 0; i < n; ++i)
      logPosteriorClipped[i] = std::log(i == 0 ? posterior[1] : posterior[i]);
  }
};

/// guided-diffusion's approx_standard_normal_cdf (the tanh form) and its
/// derivative.
inline double approxCdf(double z) {
  constexpr double kSqrt2OverPi = 0.79788456080286535588;
  return 0.5 * (1.0 + std::tanh(kSqrt2OverPi * (z + 0.044715 * z * z * z)));
}
inline double approxCdfDerivative(double z) {
  constexpr double kSqrt2OverPi = 0.79788456080286535588;
  double th = std::tanh(kSqrt2OverPi * (z + 0.044715 * z * z * z));
  return 0.5 * (1.0 - th * th) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * z * z);
}

/// discretized_gaussian_log_likelihood of x under N(mean, e^{2·logScale})
/// with bins of width 2/255 (edge bins open to ±∞ beyond ±0.999), and its
/// derivative with respect to logScale. Clamped values (1e-12) carry no
/// gradient, as torch's clamp.
inline double discretizedLogLikelihood(double x, double mean, double logScale, double &dLogScale) {
  constexpr double kHalfBin = 1.0 / 255.0, kFloor = 1e-12;
  double centered = x - mean, invStd = std::exp(-logScale);
  double plusIn = invStd * (centered + kHalfBin), minIn = invStd * (centered - kHalfBin);
  double cdfPlus = approxCdf(plusIn), cdfMin = approxCdf(minIn);
  // d(plusIn)/d(logScale) = −plusIn, the same for minIn.
  double dPlus = approxCdfDerivative(plusIn) * -plusIn;
  double dMin = approxCdfDerivative(minIn) * -minIn;
  if (x < -0.999) {
    dLogScale = cdfPlus > kFloor ? dPlus / cdfPlus : 0.0;
    return std::log(std::max(cdfPlus, kFloor));
  }
  if (x > 0.999) {
    double upper = 1.0 - cdfMin;
    dLogScale = upper > kFloor ? -dMin / upper : 0.0;
    return std::log(std::max(upper, kFloor));
  }
  double delta = cdfPlus - cdfMin;
  dLogScale = delta > kFloor ? (dPlus - dMin) / delta : 0.0;
  return std::log(std::max(delta, kFloor));
}

void checkLossShape(const char *kernel, int64_t n, int64_t c, int64_t hw) {
  checkPositive(kernel, "batch", n);
  checkPositive(kernel, "channels", c);
  checkPositive(kernel, "pixels", hw);
}

} // namespace

void ddpmLoss(const float *prediction, const float *xStart, const float *xT, const float *noise,
              const int32_t *timesteps, int64_t n, int64_t c, int64_t hw, int64_t numTimesteps,
              float *loss, const float *weight, float *dPrediction) {
  const char *kernel = "ddpmLoss";
  checkLossShape(kernel, n, c, hw);
  if (numTimesteps < 2)
    fail(kernel, ": numTimesteps must be at least 2, got ", numTimesteps);
  if (prediction == nullptr || xStart == nullptr || xT == nullptr || noise == nullptr ||
      timesteps == nullptr)
    fail(kernel, ": null prediction, x_start, x_t, noise or timesteps");
  for (int64_t i = 0; i < n; ++i)
    if (timesteps[i] < 0 || timesteps[i] >= numTimesteps)
      fail(kernel, ": sample ", i, ": timestep ", timesteps[i], " is outside [0, ", numTimesteps,
           ")");
  DdpmSchedule sched(numTimesteps);
  int64_t count = c * hw;
  double inv = 1.0 / static_cast<double>(count);

  parallelFor(n, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      int64_t t = timesteps[s];
      const float *epsHat = prediction + s * 2 * count, *v = epsHat + count;
      const float *x0 = xStart + s * count, *xt = xT + s * count, *eps = noise + s * count;
      float *dEps = dPrediction != nullptr ? dPrediction + s * 2 * count : nullptr;
      float *dV = dEps != nullptr ? dEps + count : nullptr;
      double w = sampleWeight(weight, s, n);
      double c1 = sched.coef1[t], c2 = sched.coef2[t];
      double minLog = sched.logPosteriorClipped[t], maxLog = sched.logBeta[t];
      // log σ² = frac·maxLog + (1 − frac)·minLog, frac = (v + 1)/2.
      double dLogVarDv = 0.5 * (maxLog - minLog);
      double mse = 0.0, vb = 0.0;
      for (int64_t i = 0; i < count; ++i) {
        double e = epsHat[i], diff = e - eps[i];
        mse += diff * diff;
        // The model mean from the stop-gradient ε̂: no gradient flows to ε̂
        // through the bound.
        double x0Hat = sched.sqrtRecip[t] * xt[i] - sched.sqrtRecipM1[t] * e;
        double meanModel = c1 * x0Hat + c2 * xt[i];
        double frac = (static_cast<double>(v[i]) + 1.0) * 0.5;
        double logVar = frac * maxLog + (1.0 - frac) * minLog;
        double term, dTermDLogVar;
        if (t > 0) {
          // KL(q ‖ p) of two Gaussians; q's log-variance is the clipped one.
          double meanTrue = c1 * x0[i] + c2 * xt[i];
          double dm = meanTrue - meanModel;
          double ratio = std::exp(minLog - logVar), scaled = dm * dm * std::exp(-logVar);
          term = 0.5 * (-1.0 + logVar - minLog + ratio + scaled);
          dTermDLogVar = 0.5 * (1.0 - ratio - scaled);
        } else {
          // Decoder NLL with log-scale = ½ log σ².
          double dLogScale;
          term = -discretizedLogLikelihood(x0[i], meanModel, 0.5 * logVar, dLogScale);
          dTermDLogVar = -0.5 * dLogScale;
        }
        vb += term;
        if (dEps != nullptr) {
          dEps[i] = static_cast<float>(w * 2.0 * diff * inv);
          dV[i] = static_cast<float>(w * dTermDLogVar * dLogVarDv * inv / kLn2);
        }
      }
      if (loss != nullptr)
        loss[s] = static_cast<float>(mse * inv + vb * inv / kLn2);
    }
  });
}

void rfLoss(const float *prediction, const float *xStart, const float *noise, int64_t n, int64_t c,
            int64_t cPrediction, int64_t hw, float *loss, const float *weight, float *dPrediction) {
  const char *kernel = "rfLoss";
  checkLossShape(kernel, n, c, hw);
  if (cPrediction < c)
    fail(kernel, ": prediction has ", cPrediction, " channels, fewer than the ", c,
         " of the target");
  if (prediction == nullptr || xStart == nullptr || noise == nullptr)
    fail(kernel, ": null prediction, x_start or noise");
  int64_t count = c * hw;
  double inv = 1.0 / static_cast<double>(count);
  parallelFor(n, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const float *vHat = prediction + s * cPrediction * hw;
      const float *x0 = xStart + s * count, *eps = noise + s * count;
      double w = sampleWeight(weight, s, n), sum = 0.0;
      float *g = dPrediction != nullptr ? dPrediction + s * cPrediction * hw : nullptr;
      for (int64_t i = 0; i < count; ++i) {
        // Target velocity ε − x0 (t = 0 data, t = 1 noise).
        double diff = static_cast<double>(vHat[i]) - (static_cast<double>(eps[i]) - x0[i]);
        sum += diff * diff;
        if (g != nullptr)
          g[i] = static_cast<float>(w * 2.0 * diff * inv);
      }
      if (g != nullptr)
        std::fill(g + count, g + cPrediction * hw, 0.0f);
      if (loss != nullptr)
        loss[s] = static_cast<float>(sum * inv);
    }
  });
}

void edmLoss(const float *raw, const float *xNoisy, const float *xStart, const float *sigma,
             const int32_t *keep, int64_t kept, int64_t n, int64_t c, int64_t h, int64_t w,
             int64_t patch, double sigmaData, float *loss, const float *weight, float *dRaw) {
  const char *kernel = "edmLoss";
  checkPositive(kernel, "batch", n);
  checkPositive(kernel, "channels", c);
  checkPositive(kernel, "height", h);
  checkPositive(kernel, "width", w);
  if (!(sigmaData > 0.0))
    fail(kernel, ": sigma_data must be positive, got ", sigmaData);
  if (raw == nullptr || xNoisy == nullptr || xStart == nullptr || sigma == nullptr)
    fail(kernel, ": null raw, x_noisy, x_start or sigma");
  for (int64_t i = 0; i < n; ++i)
    if (!(sigma[i] > 0.0f))
      fail(kernel, ": sample ", i, ": sigma ", sigma[i], " is not positive");
  int64_t gridW = 0, patches = 0;
  if (keep != nullptr) {
    checkPositive(kernel, "patch size", patch);
    if (h % patch != 0 || w % patch != 0)
      fail(kernel, ": image ", h, " x ", w, " is not a multiple of patch size ", patch);
    gridW = w / patch;
    patches = (h / patch) * gridW;
    if (kept < 1 || kept > patches)
      fail(kernel, ": kept count ", kept, " is outside [1, ", patches, "]");
    std::vector<char> seen(static_cast<size_t>(patches));
    for (int64_t s = 0; s < n; ++s) {
      std::fill(seen.begin(), seen.end(), 0);
      for (int64_t j = 0; j < kept; ++j) {
        int32_t idx = keep[s * kept + j];
        if (idx < 0 || idx >= patches)
          fail(kernel, ": sample ", s, ": keep[", j, "] = ", idx, " is outside [0, ", patches, ")");
        if (seen[idx])
          fail(kernel, ": sample ", s, ": patch ", idx, " is kept twice");
        seen[idx] = 1;
      }
    }
  }
  int64_t hw = h * w, count = c * hw;
  double sd2 = sigmaData * sigmaData;

  parallelFor(n, 1, [&](int64_t s0, int64_t s1) {
    // Per-pixel weight of the reduction: 1/(C·H·W) without a mask; with one,
    // 1/(C·p²·kept) inside a kept patch (channel mean, p x p average pool,
    // mean over kept patches) and 0 elsewhere.
    std::vector<double> pixelWeight(static_cast<size_t>(hw));
    for (int64_t s = s0; s < s1; ++s) {
      if (keep == nullptr) {
        std::fill(pixelWeight.begin(), pixelWeight.end(), 1.0 / static_cast<double>(count));
      } else {
        std::fill(pixelWeight.begin(), pixelWeight.end(), 0.0);
        double pw = 1.0 / static_cast<double>(c * patch * patch * kept);
        for (int64_t j = 0; j < kept; ++j) {
          int64_t idx = keep[s * kept + j], pr = idx / gridW, pc = idx % gridW;
          for (int64_t i = 0; i < patch; ++i)
            for (int64_t jj = 0; jj < patch; ++jj)
              pixelWeight[(pr * patch + i) * w + pc * patch + jj] = pw;
        }
      }
      double sg = sigma[s], s2 = sg * sg;
      double cSkip = sd2 / (s2 + sd2), cOut = sg * sigmaData / std::sqrt(s2 + sd2);
      double lambda = (s2 + sd2) / (s2 * sd2);
      double wt = sampleWeight(weight, s, n), sum = 0.0;
      const float *f = raw + s * count, *xn = xNoisy + s * count, *x0 = xStart + s * count;
      float *g = dRaw != nullptr ? dRaw + s * count : nullptr;
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t i = 0; i < hw; ++i) {
          int64_t idx = ch * hw + i;
          double diff = cSkip * xn[idx] + cOut * f[idx] - x0[idx];
          double pw = pixelWeight[i];
          sum += pw * lambda * diff * diff;
          if (g != nullptr)
            g[idx] = static_cast<float>(wt * pw * 2.0 * lambda * diff * cOut);
        }
      if (loss != nullptr)
        loss[s] = static_cast<float>(sum);
    }
  });
}

} // namespace diffrt::cpu
