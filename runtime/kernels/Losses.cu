//===- Losses.cu - diffusion training losses and their gradients ----------===//
//
// The per-sample objectives of runtime/cpu/Losses.cpp on the device: DiT's
// DDPM loss (ε-MSE plus the variational bound with the learned-range
// variance, the model mean from a stop-gradient ε̂, and the discretised
// Gaussian decoder NLL at t = 0), DiT-MoE's rectified-flow velocity loss
// and MicroDiT's EDM loss with the optional kept-patch mask. Each writes
// loss[n] (f32) and, when asked, the gradient of Σ_n weight·lossScale·loss[n]
// with respect to the network output.
//
// One block per sample: the per-sample sums run over C·H·W values (a few
// thousand), which one block covers in a few strides, and a block-wide tree
// in a fixed order makes the values reproducible bit for bit without a
// workspace or atomics. The element math, the schedule and the sums are in
// double as in the CPU reference (the bound's terms are differences of
// logarithms where f32 would lose digits; the kernels are tiny next to the
// network, so FP64's lower rate costs nothing that matters).
//
// The DDPM schedule constants of a sample's timestep are computed on the
// device by one thread (the cumulative product over at most numTimesteps
// factors, in the CPU's order) and shared through shared memory: no host
// table, no host synchronisation, and the launch can be captured in a CUDA
// graph. Inputs the CPU reference rejects on the host (a timestep outside
// [0, numTimesteps), a non-positive sigma, kept-patch indices outside the
// grid) cannot be checked here without a synchronisation: an invalid
// timestep yields a NaN loss and NaN gradients, invalid kept indices are
// ignored, and a bad sigma propagates as the arithmetic dictates.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "Common.cuh"

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 512;
constexpr double kLn2 = 0.69314718055994530942;

/// Sum over the block, the same on every call: shuffles within warps, then
/// warp totals added in warp order. All threads get the result.
__device__ double blockSum(double v, double *scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  __syncthreads(); // scratch may still be read from a previous call
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  double total = 0.0;
  for (int i = 0; i < warps; ++i)
    total += scratch[i];
  return total;
}

__device__ __forceinline__ double gradScale(float weight, const float *lossScale) {
  return static_cast<double>(weight) * (lossScale != nullptr ? static_cast<double>(*lossScale) : 1.0);
}

//===----------------------------------------------------------------------===//
// DDPM
//===----------------------------------------------------------------------===//

/// The schedule quantities of one timestep (see DdpmSchedule in
/// runtime/cpu/Losses.cpp).
struct StepConstants {
  double logBeta, logPosteriorClipped, coef1, coef2, sqrtRecip, sqrtRecipM1;
};

/// betas = linspace(s·1e-4, s·0.02, T) with s = 1000/T as numpy evaluates
/// it (start + i·step, the last value exactly stop); the products are
/// rounded separately so that no fused multiply-add changes the CPU's
/// values.
__device__ double betaAt(int64_t i, int64_t steps) {
  const double s = 1000.0 / static_cast<double>(steps);
  const double start = s * 1e-4, stop = s * 0.02;
  const double step = (stop - start) / static_cast<double>(steps - 1);
  return i == steps - 1 ? stop : __dadd_rn(__dmul_rn(static_cast<double>(i), step), start);
}

__device__ StepConstants stepConstants(int64_t t, int64_t steps) {
  // alphaBar over the steps up to max(t, 1) (β̃_1 stands in for β̃_0).
  const int64_t last = t > 1 ? t : 1;
  double prod = 1.0, prevT = 1.0, barT = 1.0, prev1 = 1.0, bar1 = 1.0;
  for (int64_t i = 0; i <= last; ++i) {
    const double prev = prod;
    prod = prod * (1.0 - betaAt(i, steps));
    if (i == t) {
      prevT = prev;
      barT = prod;
    }
    if (i == 1) {
      prev1 = prev;
      bar1 = prod;
    }
  }
  const double beta = betaAt(t, steps), beta1 = betaAt(1, steps);
  StepConstants k;
  k.logBeta = log(beta);
  const double posterior =
      t == 0 ? beta1 * (1.0 - prev1) / (1.0 - bar1) : beta * (1.0 - prevT) / (1.0 - barT);
  k.logPosteriorClipped = log(posterior);
  k.coef1 = beta * sqrt(prevT) / (1.0 - barT);
  k.coef2 = (1.0 - prevT) * sqrt(1.0 - beta) / (1.0 - barT);
  k.sqrtRecip = sqrt(1.0 / barT);
  k.sqrtRecipM1 = sqrt(1.0 / barT - 1.0);
  return k;
}

__device__ __forceinline__ double approxCdf(double z) {
  const double kSqrt2OverPi = 0.79788456080286535588;
  return 0.5 * (1.0 + tanh(kSqrt2OverPi * (z + 0.044715 * z * z * z)));
}
__device__ __forceinline__ double approxCdfDerivative(double z) {
  const double kSqrt2OverPi = 0.79788456080286535588;
  const double th = tanh(kSqrt2OverPi * (z + 0.044715 * z * z * z));
  return 0.5 * (1.0 - th * th) * kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * z * z);
}

/// discretized_gaussian_log_likelihood and its derivative in logScale
/// (clamped values carry no gradient, as torch's clamp).
__device__ double discretizedLogLikelihood(double x, double mean, double logScale,
                                           double &dLogScale) {
  const double kHalfBin = 1.0 / 255.0, kFloor = 1e-12;
  const double centered = x - mean, invStd = exp(-logScale);
  const double plusIn = invStd * (centered + kHalfBin), minIn = invStd * (centered - kHalfBin);
  const double cdfPlus = approxCdf(plusIn), cdfMin = approxCdf(minIn);
  const double dPlus = approxCdfDerivative(plusIn) * -plusIn;
  const double dMin = approxCdfDerivative(minIn) * -minIn;
  if (x < -0.999) {
    dLogScale = cdfPlus > kFloor ? dPlus / cdfPlus : 0.0;
    return log(fmax(cdfPlus, kFloor));
  }
  if (x > 0.999) {
    const double upper = 1.0 - cdfMin;
    dLogScale = upper > kFloor ? -dMin / upper : 0.0;
    return log(fmax(upper, kFloor));
  }
  const double delta = cdfPlus - cdfMin;
  dLogScale = delta > kFloor ? (dPlus - dMin) / delta : 0.0;
  return log(fmax(delta, kFloor));
}

template <typename T>
__global__ void ddpmLossKernel(const T *prediction, const T *xStart, const T *xT, const T *noise,
                               const int32_t *timesteps, int64_t count, int64_t steps, float *loss,
                               float weight, const float *lossScale, T *dPrediction) {
  __shared__ double scratch[32];
  __shared__ StepConstants shared;
  const int64_t s = blockIdx.x;
  const int64_t t = timesteps[s];
  const bool valid = t >= 0 && t < steps;
  if (threadIdx.x == 0 && valid)
    shared = stepConstants(t, steps);
  __syncthreads();
  const double nan = __longlong_as_double(0x7ff8000000000000ll);
  const T *epsHat = prediction + s * 2 * count, *v = epsHat + count;
  const T *x0 = xStart + s * count, *xt = xT + s * count, *eps = noise + s * count;
  T *dEps = dPrediction != nullptr ? dPrediction + s * 2 * count : nullptr;
  T *dV = dEps != nullptr ? dEps + count : nullptr;
  const double inv = 1.0 / static_cast<double>(count);
  const double w = gradScale(weight, lossScale);
  if (!valid) {
    if (dEps != nullptr)
      for (int64_t i = threadIdx.x; i < 2 * count; i += blockDim.x)
        dEps[i] = fromF<T>(static_cast<float>(nan));
    if (loss != nullptr && threadIdx.x == 0)
      loss[s] = static_cast<float>(nan);
    return;
  }
  const StepConstants k = shared;
  const double minLog = k.logPosteriorClipped, maxLog = k.logBeta;
  const double dLogVarDv = 0.5 * (maxLog - minLog);
  double mse = 0.0, vb = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const double e = toF<T>(epsHat[i]), diff = e - static_cast<double>(toF<T>(eps[i]));
    const double xtv = toF<T>(xt[i]), x0v = toF<T>(x0[i]);
    mse += diff * diff;
    const double x0Hat = k.sqrtRecip * xtv - k.sqrtRecipM1 * e;
    const double meanModel = k.coef1 * x0Hat + k.coef2 * xtv;
    const double frac = (static_cast<double>(toF<T>(v[i])) + 1.0) * 0.5;
    const double logVar = frac * maxLog + (1.0 - frac) * minLog;
    double term, dTermDLogVar;
    if (t > 0) {
      const double meanTrue = k.coef1 * x0v + k.coef2 * xtv;
      const double dm = meanTrue - meanModel;
      const double ratio = exp(minLog - logVar), scaled = dm * dm * exp(-logVar);
      term = 0.5 * (-1.0 + logVar - minLog + ratio + scaled);
      dTermDLogVar = 0.5 * (1.0 - ratio - scaled);
    } else {
      double dLogScale;
      term = -discretizedLogLikelihood(x0v, meanModel, 0.5 * logVar, dLogScale);
      dTermDLogVar = -0.5 * dLogScale;
    }
    vb += term;
    if (dEps != nullptr) {
      dEps[i] = fromF<T>(static_cast<float>(w * 2.0 * diff * inv));
      dV[i] = fromF<T>(static_cast<float>(w * dTermDLogVar * dLogVarDv * inv / kLn2));
    }
  }
  mse = blockSum(mse, scratch);
  vb = blockSum(vb, scratch);
  if (loss != nullptr && threadIdx.x == 0)
    loss[s] = static_cast<float>(mse * inv + vb * inv / kLn2);
}

//===----------------------------------------------------------------------===//
// Rectified flow
//===----------------------------------------------------------------------===//

template <typename T>
__global__ void rfLossKernel(const T *prediction, const T *xStart, const T *noise, int64_t count,
                             int64_t predCount, float *loss, float weight, const float *lossScale,
                             T *dPrediction) {
  __shared__ double scratch[32];
  const int64_t s = blockIdx.x;
  const T *vHat = prediction + s * predCount, *x0 = xStart + s * count, *eps = noise + s * count;
  T *g = dPrediction != nullptr ? dPrediction + s * predCount : nullptr;
  const double inv = 1.0 / static_cast<double>(count), w = gradScale(weight, lossScale);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    // Target velocity ε − x0 (t = 0 data, t = 1 noise).
    const double diff = static_cast<double>(toF<T>(vHat[i])) -
                        (static_cast<double>(toF<T>(eps[i])) - static_cast<double>(toF<T>(x0[i])));
    sum += diff * diff;
    if (g != nullptr)
      g[i] = fromF<T>(static_cast<float>(w * 2.0 * diff * inv));
  }
  if (g != nullptr)
    for (int64_t i = count + threadIdx.x; i < predCount; i += blockDim.x)
      g[i] = fromF<T>(0.0f);
  sum = blockSum(sum, scratch);
  if (loss != nullptr && threadIdx.x == 0)
    loss[s] = static_cast<float>(sum * inv);
}

//===----------------------------------------------------------------------===//
// EDM
//===----------------------------------------------------------------------===//

/// Dynamic shared memory: a bit per patch marking the kept ones (when
/// keep is given).
template <typename T>
__global__ void edmLossKernel(const T *raw, const T *xNoisy, const T *xStart, const float *sigma,
                              const int32_t *keep, int64_t kept, int64_t c, int64_t h, int64_t w,
                              int64_t patch, double sigmaData, float *loss, float weight,
                              const float *lossScale, T *dRaw) {
  extern __shared__ uint32_t keptBits[];
  __shared__ double scratch[32];
  const int64_t s = blockIdx.x, hw = h * w, count = c * hw;
  int64_t gridW = 0;
  double maskedWeight = 0.0;
  if (keep != nullptr) {
    gridW = w / patch;
    const int64_t patches = (h / patch) * gridW, words = (patches + 31) / 32;
    for (int64_t i = threadIdx.x; i < words; i += blockDim.x)
      keptBits[i] = 0u;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < kept; j += blockDim.x) {
      const int32_t idx = keep[s * kept + j];
      if (idx >= 0 && idx < patches)
        atomicOr(&keptBits[idx >> 5], 1u << (idx & 31));
    }
    __syncthreads();
    maskedWeight = 1.0 / static_cast<double>(c * patch * patch * kept);
  }
  const double sd = sigmaData, sd2 = sd * sd;
  const double sg = sigma[s], s2 = sg * sg;
  const double cSkip = sd2 / (s2 + sd2), cOut = sg * sd / sqrt(s2 + sd2);
  const double lambda = (s2 + sd2) / (s2 * sd2);
  const double wt = gradScale(weight, lossScale), plainWeight = 1.0 / static_cast<double>(count);
  const T *f = raw + s * count, *xn = xNoisy + s * count, *x0 = xStart + s * count;
  T *g = dRaw != nullptr ? dRaw + s * count : nullptr;
  double sum = 0.0;
  for (int64_t idx = threadIdx.x; idx < count; idx += blockDim.x) {
    const int64_t i = idx % hw;
    double pw = plainWeight;
    if (keep != nullptr) {
      const int64_t y = i / w, x = i - y * w;
      const int64_t pidx = (y / patch) * gridW + x / patch;
      pw = (keptBits[pidx >> 5] >> (pidx & 31)) & 1u ? maskedWeight : 0.0;
    }
    const double diff = cSkip * static_cast<double>(toF<T>(xn[idx])) +
                        cOut * static_cast<double>(toF<T>(f[idx])) -
                        static_cast<double>(toF<T>(x0[idx]));
    sum += pw * lambda * diff * diff;
    if (g != nullptr)
      g[idx] = fromF<T>(static_cast<float>(wt * pw * 2.0 * lambda * diff * cOut));
  }
  sum = blockSum(sum, scratch);
  if (loss != nullptr && threadIdx.x == 0)
    loss[s] = static_cast<float>(sum);
}

void checkLossShapeD(const char *kernel, int64_t n, int64_t c, int64_t hw) {
  checkDPositive(kernel, "batch", n);
  checkDPositive(kernel, "channels", c);
  checkDPositive(kernel, "pixels", hw);
  if (n > 0x7fffffff)
    fail(kernel, ": batch ", n, " exceeds one grid dimension");
}

} // namespace

void ddpmLoss(Stream stream, DType dtype, const void *prediction, const void *xStart, const void *xT,
              const void *noise, const int32_t *timesteps, int64_t n, int64_t c, int64_t hw,
              int64_t numTimesteps, float *loss, float weight, const float *lossScale, void *dPrediction) {
  const char *kernel = "ddpmLoss";
  checkLossShapeD(kernel, n, c, hw);
  if (numTimesteps < 2)
    fail(kernel, ": numTimesteps must be at least 2, got ", numTimesteps);
  if (prediction == nullptr || xStart == nullptr || xT == nullptr || noise == nullptr ||
      timesteps == nullptr)
    fail(kernel, ": null prediction, x_start, x_t, noise or timesteps");
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    ddpmLossKernel<T><<<static_cast<unsigned>(n), kThreads, 0, native(stream)>>>(
        static_cast<const T *>(prediction), static_cast<const T *>(xStart),
        static_cast<const T *>(xT), static_cast<const T *>(noise), timesteps, c * hw, numTimesteps,
        loss, weight, lossScale, static_cast<T *>(dPrediction));
    checkLaunch(kernel);
  });
}

void rfLoss(Stream stream, DType dtype, const void *prediction, const void *xStart, const void *noise,
            int64_t n, int64_t c, int64_t cPrediction, int64_t hw, float *loss, float weight,
            const float *lossScale, void *dPrediction) {
  const char *kernel = "rfLoss";
  checkLossShapeD(kernel, n, c, hw);
  if (cPrediction < c)
    fail(kernel, ": prediction has ", cPrediction, " channels, fewer than the ", c,
         " of the target");
  if (prediction == nullptr || xStart == nullptr || noise == nullptr)
    fail(kernel, ": null prediction, x_start or noise");
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    rfLossKernel<T><<<static_cast<unsigned>(n), kThreads, 0, native(stream)>>>(
        static_cast<const T *>(prediction), static_cast<const T *>(xStart),
        static_cast<const T *>(noise), c * hw, cPrediction * hw, loss, weight, lossScale,
        static_cast<T *>(dPrediction));
    checkLaunch(kernel);
  });
}

void edmLoss(Stream stream, DType dtype, const void *raw, const void *xNoisy, const void *xStart,
             const float *sigma, const int32_t *keep, int64_t kept, int64_t n, int64_t c, int64_t h,
             int64_t w, int64_t patch, double sigmaData, float *loss, float weight, const float *lossScale,
             void *dRaw) {
  const char *kernel = "edmLoss";
  checkLossShapeD(kernel, n, c, h * w);
  checkDPositive(kernel, "height", h);
  checkDPositive(kernel, "width", w);
  if (!(sigmaData > 0.0))
    fail(kernel, ": sigma_data must be positive, got ", sigmaData);
  if (raw == nullptr || xNoisy == nullptr || xStart == nullptr || sigma == nullptr)
    fail(kernel, ": null raw, x_noisy, x_start or sigma");
  size_t smem = 0;
  if (keep != nullptr) {
    checkDPositive(kernel, "patch size", patch);
    if (h % patch != 0 || w % patch != 0)
      fail(kernel, ": image ", h, " x ", w, " is not a multiple of patch size ", patch);
    const int64_t patches = (h / patch) * (w / patch);
    if (kept < 1 || kept > patches)
      fail(kernel, ": kept count ", kept, " is outside [1, ", patches, "]");
    smem = static_cast<size_t>((patches + 31) / 32) * sizeof(uint32_t);
    if (smem > 48 * 1024)
      fail(kernel, ": ", patches, " patches exceed the kept-patch mask's shared memory");
  }
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    edmLossKernel<T><<<static_cast<unsigned>(n), kThreads, smem, native(stream)>>>(
        static_cast<const T *>(raw), static_cast<const T *>(xNoisy), static_cast<const T *>(xStart),
        sigma, keep, kept, c, h, w, patch, sigmaData, loss, weight, lossScale,
        static_cast<T *>(dRaw));
    checkLaunch(kernel);
  });
}

} // namespace diffrt::cuda
