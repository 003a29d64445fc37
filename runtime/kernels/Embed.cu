//===- Embed.cu - positional, timestep and label embeddings ---------------===//
//
// The conditioning inputs of every family: the fixed 2D sin-cos table
// (spec 1.1, computed in double as the references' numpy code does), the
// sinusoidal timestep embedding (spec 1.2, with float32 arguments as the
// references' torch code computes them) and the class-label lookup with its
// null class. These are tiny (a table or a batch of rows), so the kernels
// favour matching the CPU reference bit for bit over speed: the frequencies
// and the sines and cosines are evaluated in double and rounded once, which
// reproduces correctly rounded float32 results.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include <cmath>

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;

/// One thread per (token, k) frequency pair writes the four entries of
/// that frequency: sin/cos of the column and of the row coordinate.
__global__ void sincosKernel(int64_t h, int64_t w, int64_t quarter, double interpScale,
                             float *out) {
  const int64_t total = h * w * quarter, d = 4 * quarter;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t t = i / quarter, k = i - t * quarter;
    const double r = static_cast<double>(t / w) / interpScale;
    const double c = static_cast<double>(t % w) / interpScale;
    const double omega =
        1.0 / pow(10000.0, static_cast<double>(k) / static_cast<double>(quarter));
    float *o = out + t * d;
    o[k] = static_cast<float>(sin(c * omega));
    o[quarter + k] = static_cast<float>(cos(c * omega));
    o[2 * quarter + k] = static_cast<float>(sin(r * omega));
    o[3 * quarter + k] = static_cast<float>(cos(r * omega));
  }
}

/// freq_k = exp(-ln(maxPeriod)·k/half) with the exponent formed in float32
/// step by step as torch does, the exponential evaluated in double and
/// rounded (the correctly rounded float32 value, which glibc's expf returns
/// as well); then t·freq in float32 and its cosine and sine, again through
/// double so that both backends agree to the last bit nearly always.
__global__ void timestepKernel(const float *t, int64_t batch, int64_t dim, float negLog,
                               float halfF, float *out) {
  const int64_t half = dim / 2, total = batch * half;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t b = i / half, k = i - b * half;
    const float exponent = __fdiv_rn(__fmul_rn(negLog, static_cast<float>(k)), halfF);
    const float freq = static_cast<float>(exp(static_cast<double>(exponent)));
    const float arg = __fmul_rn(t[b], freq);
    float *o = out + b * dim;
    o[k] = static_cast<float>(cos(static_cast<double>(arg)));
    o[half + k] = static_cast<float>(sin(static_cast<double>(arg)));
    if (k == 0 && dim % 2 != 0)
      o[dim - 1] = 0.0f;
  }
}

/// out[b] = table[labels[b]]; an invalid label raises the error flag and
/// its row is written as zeros.
template <typename T, int N>
__global__ void labelKernel(const int32_t *labels, int64_t batch, const T *table,
                            int64_t numClasses, int64_t d, T *out, int32_t *errorFlag) {
  const int64_t perRow = d / N, total = batch * perRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t b = g / perRow, c = (g - b * perRow) * N;
    const int32_t label = labels[b];
    float v[N];
    if (label < 0 || label > numClasses) {
      if (c == 0)
        raiseIndexError(errorFlag, kLabelOutOfRange);
#pragma unroll
      for (int e = 0; e < N; ++e)
        v[e] = 0.0f;
    } else {
      loadN<N>(table + static_cast<int64_t>(label) * d + c, v);
    }
    storeN<N>(out + b * d + c, v);
  }
}

} // namespace

void sincosPosEmbed(Stream stream, int64_t h, int64_t w, int64_t d, double interpScale,
                    float *out) {
  const char *kernel = "sincosPosEmbed";
  checkDPositive(kernel, "h", h);
  checkDPositive(kernel, "w", w);
  checkDPositive(kernel, "d", d);
  if (d % 4 != 0)
    fail(kernel, ": width ", d, " is not divisible by 4");
  if (!(interpScale > 0.0))
    fail(kernel, ": interpScale must be positive, got ", interpScale);
  if (out == nullptr)
    fail(kernel, ": null output");
  const int64_t total = h * w * (d / 4);
  sincosKernel<<<gridStrideBlocks(total, kThreads), kThreads, 0, native(stream)>>>(
      h, w, d / 4, interpScale, out);
  checkLaunch(kernel);
}

void timestepEmbed(Stream stream, const float *t, int64_t batch, int64_t dim, double maxPeriod,
                   float *out) {
  const char *kernel = "timestepEmbed";
  checkDPositive(kernel, "batch", batch);
  if (dim < 2)
    fail(kernel, ": dim must be at least 2, got ", dim);
  if (!(maxPeriod > 1.0))
    fail(kernel, ": maxPeriod must exceed 1, got ", maxPeriod);
  if (t == nullptr || out == nullptr)
    fail(kernel, ": null input or output");
  const int64_t half = dim / 2;
  const float negLog = static_cast<float>(-std::log(maxPeriod));
  timestepKernel<<<gridStrideBlocks(batch * half, kThreads), kThreads, 0, native(stream)>>>(
      t, batch, dim, negLog, static_cast<float>(half), out);
  checkLaunch(kernel);
}

void labelEmbed(Stream stream, DType dtype, const int32_t *labels, int64_t batch,
                const void *table, int64_t numClasses, int64_t d, void *out,
                int32_t *errorFlag) {
  const char *kernel = "labelEmbed";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "numClasses", numClasses);
  checkDPositive(kernel, "d", d);
  if (labels == nullptr || table == nullptr || out == nullptr)
    fail(kernel, ": null labels, table or output");
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = kVec<T>;
    const T *tb = static_cast<const T *>(table);
    T *o = static_cast<T *>(out);
    if (vectorizable(tb, d, d, sizeof(T)) && vectorizable(o, d, d, sizeof(T)))
      labelKernel<T, V><<<gridStrideBlocks(batch * (d / V), kThreads), kThreads, 0,
                          native(stream)>>>(labels, batch, tb, numClasses, d, o, errorFlag);
    else
      labelKernel<T, 1><<<gridStrideBlocks(batch * d, kThreads), kThreads, 0, native(stream)>>>(
          labels, batch, tb, numClasses, d, o, errorFlag);
    checkLaunch(kernel);
  });
}

} // namespace diffrt::cuda
