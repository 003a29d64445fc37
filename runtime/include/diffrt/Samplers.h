//===- Samplers.h - diffusion schedules and sampling loops ------*- C++ -*-===//
//
// Host-side numerics of the three diffusion formulations the runtime serves
// (docs: the model specification, sections 2.7, 2.8, 3.5(b), 3.7, 4.7, 4.8):
//
//  * DiT's Gaussian diffusion (also DiG and the DDPM DiT-MoE checkpoints):
//    1000 linear betas, respacing, learned-range variance, ancestral DDPM
//    and DDIM steps;
//  * DiT-MoE's rectified flow: Euler steps on t = 1 .. 1/steps;
//  * MicroDiT's EDM: Karras sigmas and the deterministic Heun sampler with
//    sigma_data = 0.9.
//
// Schedules are float64 as in the references. Per-element arithmetic
// mirrors the reference code's precision: DiT extracts its float64
// schedules as float32 and does the step in float32, rectified flow steps in
// float32, and EDM keeps a float64 ODE state while the preconditioned
// denoiser is evaluated in float32. Matching that makes the CPU sampler a
// usable oracle for the reference implementations.
//
// The model itself is a callback, so the same loops drive the CPU backend,
// the GPU backend and test oracles. Classifier-free guidance is the
// callback's business (it doubles the batch); guideDiT3Channel and
// guideAllChannels implement the two published combinations.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_SAMPLERS_H
#define DIFFRT_SAMPLERS_H

#include "diffrt/Rng.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace diffrt {

/// DiT's GaussianDiffusion: the float64 schedules of one (possibly
/// respaced) process and its two sampling steps. Index t below is the step
/// index of this process; timestepMap()[t] is the original index the
/// network is conditioned on.
class GaussianDiffusion {
public:
  /// DiT's "linear" schedule: numpy.linspace(s * 1e-4, s * 0.02, T) with
  /// s = 1000 / T, bit-identical to numpy.
  explicit GaussianDiffusion(int64_t numTimesteps = 1000);
  /// Any schedule of at least 2 betas in (0, 1); timestepMap has one entry
  /// per beta.
  GaussianDiffusion(std::vector<double> betas, std::vector<int64_t> timestepMap);

  /// DiT's space_timesteps for a process of numTimesteps steps, sorted:
  ///  * "N" or "N1,N2,..." — the steps are cut into equal sections (the
  ///    first T % sections get one extra step) and section i keeps N_i
  ///    evenly spaced indices start + round(k (size - 1) / (N_i - 1)),
  ///    rounding halves to even as Python does; "250" keeps
  ///    round(k * 999 / 249), k = 0 .. 249;
  ///  * "ddimN" — range(0, T, stride) for the smallest integer stride
  ///    giving exactly N steps.
  /// Invalid specs are errors naming the spec.
  static std::vector<int64_t> spacedTimesteps(int64_t numTimesteps, const std::string &spec);

  /// The process restricted to `kept` (strictly increasing indices of this
  /// process): beta'_i = 1 - abar[kept[i]] / abar[kept[i - 1]] with
  /// abar[kept[-1]] = 1, timestepMap'[i] = timestepMap[kept[i]].
  GaussianDiffusion respaced(const std::vector<int64_t> &kept) const;

  int64_t numTimesteps() const { return static_cast<int64_t>(betas_.size()); }
  const std::vector<int64_t> &timestepMap() const { return timestepMap_; }
  const std::vector<double> &betas() const { return betas_; }
  const std::vector<double> &logBetas() const { return logBetas_; }
  const std::vector<double> &alphasCumprod() const { return alphasCumprod_; }
  const std::vector<double> &alphasCumprodPrev() const { return alphasCumprodPrev_; }
  /// sqrt(1 / abar_t) and sqrt(1 / abar_t - 1): x0 = a x_t - b eps.
  const std::vector<double> &sqrtRecipAlphasCumprod() const { return sqrtRecipAlphasCumprod_; }
  const std::vector<double> &sqrtRecipm1AlphasCumprod() const { return sqrtRecipm1AlphasCumprod_; }
  /// beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).
  const std::vector<double> &posteriorVariance() const { return posteriorVariance_; }
  /// log beta~_t with beta~_1 in place of beta~_0 (which is 0).
  const std::vector<double> &posteriorLogVarianceClipped() const {
    return posteriorLogVarianceClipped_;
  }
  /// mu~ = coef1 x0 + coef2 x_t.
  const std::vector<double> &posteriorMeanCoef1() const { return posteriorMeanCoef1_; }
  const std::vector<double> &posteriorMeanCoef2() const { return posteriorMeanCoef2_; }

  /// One ancestral step x_t -> x_{t-1} for n samples of c x hw values.
  /// modelOut holds n x cOut x hw with eps-hat in channels 0 .. c-1; with
  /// learnedSigma, channels c .. 2c-1 hold v and the log variance is
  /// frac log beta_t + (1 - frac) log beta~_t,clipped, frac = (v + 1) / 2;
  /// without, DiT's fixed-large variance (beta~_1, beta_1, beta_2, ...).
  /// x0-hat is not clipped. noise (n x c x hw) is used unless t == 0 and may
  /// then be null. xPrev may alias x.
  void ddpmStep(int64_t t, int64_t n, int64_t c, int64_t hw, const float *x,
                const float *modelOut, int64_t cOut, bool learnedSigma, const float *noise,
                float *xPrev) const;

  /// One DDIM step with the given eta; channels beyond c of modelOut are
  /// ignored. noise is used only when eta > 0 and t > 0, else may be null.
  /// xPrev may alias x.
  void ddimStep(int64_t t, int64_t n, int64_t c, int64_t hw, const float *x,
                const float *modelOut, int64_t cOut, double eta, const float *noise,
                float *xPrev) const;

private:
  void computeSchedules();

  std::vector<double> betas_, logBetas_, alphasCumprod_, alphasCumprodPrev_,
      sqrtRecipAlphasCumprod_, sqrtRecipm1AlphasCumprod_, posteriorVariance_,
      posteriorLogVarianceClipped_, posteriorMeanCoef1_, posteriorMeanCoef2_;
  std::vector<int64_t> timestepMap_;
};

/// The inputs of one network evaluation as the sampler prepares them.
struct ModelCall {
  /// N x C x H x W.
  std::vector<float> x;
  /// N per-sample model-time values.
  std::vector<float> t;
};

/// The network: reads xIn (N x C x H x W) and tIn (N values) and fills out
/// (resized by the callee) with N x C_out x H x W.
///  * DDPM / DDIM: tIn is the original timestep index as a float; C_out is
///    2C with learned sigma (eps-hat, then v), else C.
///  * Rectified flow: tIn is t in (0, 1], unscaled; only the first C
///    channels of out (the velocity) are used, so C_out may be C or larger.
///  * EDM: xIn is already c_in * x and tIn is c_noise = ln(sigma) / 4;
///    out is the raw network output F with C_out = C.
using ModelFn = std::function<void(const std::vector<float> &xIn, const std::vector<float> &tIn,
                                   std::vector<float> &out)>;

struct SamplerConfig {
  enum Kind { Ddpm, Ddim, RectifiedFlow, EdmHeun } kind = Ddpm;
  int64_t steps = 250;
  double ddimEta = 0;
  /// DDPM/DDIM: the model predicts eps-hat and v (C_out = 2C).
  bool learnedSigma = true;
  double sigmaData = 0.9, sigmaMin = 0.002, sigmaMax = 80, rho = 7;
  /// Length of the trained Gaussian-diffusion process DDPM/DDIM respace.
  int64_t diffusionSteps = 1000;
};

/// "ddpm:<steps>", "ddim:<steps>", "rf:<steps>" or "edm:<steps>", e.g.
/// "ddpm:250", "ddim:50", "rf:50", "edm:30". DDPM keeps <steps> evenly
/// spaced timesteps (DiT's "<steps>" respacing); DDIM uses DiT's
/// "ddim<steps>" integer-stride respacing, so <steps> must be reachable by
/// an integer stride of 1000; EDM needs at least 2 steps. Errors list the
/// accepted forms.
SamplerConfig parseSampler(const std::string &spec);

/// The spec parseSampler would accept for cfg ("ddim:50").
std::string samplerSpec(const SamplerConfig &cfg);

/// EDM's time steps: Karras sigmas t_0 .. t_{N-1} (float64) followed by
/// t_N = 0.
std::vector<double> edmSigmas(const SamplerConfig &cfg);

/// Runs cfg's sampling loop on x (in: N(0, 1) noise of n x c x h x w; out:
/// the sample). Per sampler:
///  * DDPM: ancestral steps over the respaced schedule; fresh normals from
///    rng (n c h w of them) on every step but the last.
///  * DDIM: eta from cfg; normals only when eta > 0, on every step but the
///    last.
///  * Rectified flow: t_i = i / steps for i = steps .. 1, x -= (1 / steps) v.
///  * EDM Heun: x = z t_0 in float64, Euler step plus Heun correction on all
///    but the last step (2N - 1 model calls), D = c_skip x + c_out F.
/// progress(k, total) is called after each of the `total` steps.
void runSampler(const SamplerConfig &cfg, int64_t n, int64_t c, int64_t h, int64_t w,
                std::vector<float> &x, const ModelFn &model, Philox &rng,
                const std::function<void(int64_t step, int64_t total)> &progress = {});

/// DiT's forward_with_cfg on a model output for the doubled batch
/// [cond; uncond] (n2 samples of cOut x hw): on channels
/// 0 .. guidedChannels-1, g = uncond + scale (cond - uncond) (float32) is
/// written into both halves; the other channels (eps channel 3 and the
/// variance channels for DiT) keep each half's own values. This is the
/// published DiT behaviour, needed to reproduce its FIDs.
void guideDiT3Channel(std::vector<float> &out, int64_t n2, int64_t cOut, int64_t hw, double scale,
                      int64_t guidedChannels = 3);

/// Standard guidance, uncond + scale (cond - uncond), on the first
/// `channels` channels, written into both halves of [cond; uncond]
/// (DiT-MoE's rectified flow guides all 4 velocity channels, MicroDiT all
/// channels of F). Channels beyond `channels` are untouched.
void guideAllChannels(std::vector<float> &out, int64_t n2, int64_t cOut, int64_t hw, double scale,
                      int64_t channels);

} // namespace diffrt

#endif // DIFFRT_SAMPLERS_H
