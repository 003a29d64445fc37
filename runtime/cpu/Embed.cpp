//===- Embed.cpp - positional, timestep and label embeddings ----*- C++ -*-===//
//
// The conditioning inputs of every family: the fixed 2D sin-cos table
// (spec 1.1, computed in double as the references' numpy code does), the
// sinusoidal timestep embedding (spec 1.2, float32 arguments as the
// references' torch code computes them) and the class-label lookup with its
// null class.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <cmath>
#include <cstring>

namespace diffrt::cpu {

using namespace detail;

void sincosPosEmbed(int64_t h, int64_t w, int64_t d, double interpScale, float *out) {
  const char *kernel = "sincosPosEmbed";
  checkPositive(kernel, "h", h);
  checkPositive(kernel, "w", w);
  checkPositive(kernel, "d", d);
  if (d % 4 != 0)
    fail(kernel, ": width ", d, " is not divisible by 4");
  if (!(interpScale > 0.0))
    fail(kernel, ": interpScale must be positive, got ", interpScale);
  if (out == nullptr)
    fail(kernel, ": null output");
  int64_t quarter = d / 4;
  parallelFor(h * w, rowGrain(d), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      double r = static_cast<double>(t / w) / interpScale;
      double c = static_cast<double>(t % w) / interpScale;
      float *o = out + t * d;
      for (int64_t k = 0; k < quarter; ++k) {
        double omega = 1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(quarter));
        o[k] = static_cast<float>(std::sin(c * omega));
        o[quarter + k] = static_cast<float>(std::cos(c * omega));
        o[2 * quarter + k] = static_cast<float>(std::sin(r * omega));
        o[3 * quarter + k] = static_cast<float>(std::cos(r * omega));
      }
    }
  });
}

void timestepEmbed(const float *t, int64_t batch, int64_t dim, double maxPeriod, float *out) {
  const char *kernel = "timestepEmbed";
  checkPositive(kernel, "batch", batch);
  if (dim < 2)
    fail(kernel, ": dim must be at least 2, got ", dim);
  if (!(maxPeriod > 1.0))
    fail(kernel, ": maxPeriod must exceed 1, got ", maxPeriod);
  if (t == nullptr || out == nullptr)
    fail(kernel, ": null input or output");
  int64_t half = dim / 2;
  // torch: exp(-ln(maxPeriod) · arange(half, float32) / half), each step in
  // float32, then t · freqs in float32.
  float negLog = static_cast<float>(-std::log(maxPeriod));
  float halfF = static_cast<float>(half);
  parallelFor(batch, rowGrain(dim), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float *o = out + b * dim;
      for (int64_t k = 0; k < half; ++k) {
        float freq = std::exp(negLog * static_cast<float>(k) / halfF);
        float arg = t[b] * freq;
        o[k] = std::cos(arg);
        o[half + k] = std::sin(arg);
      }
      if (dim % 2 != 0)
        o[dim - 1] = 0.0f;
    }
  });
}

void labelEmbed(const int32_t *labels, int64_t batch, const float *table, int64_t numClasses,
                int64_t d, float *out) {
  const char *kernel = "labelEmbed";
  checkPositive(kernel, "batch", batch);
  checkPositive(kernel, "numClasses", numClasses);
  checkPositive(kernel, "d", d);
  if (labels == nullptr || table == nullptr || out == nullptr)
    fail(kernel, ": null labels, table or output");
  for (int64_t b = 0; b < batch; ++b)
    if (labels[b] < 0 || labels[b] > numClasses)
      fail(kernel, ": sample ", b, ": label ", labels[b], " is outside [0, ", numClasses,
           "] (", numClasses, " is the null class)");
  parallelFor(batch, rowGrain(d), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      std::memcpy(out + b * d, table + static_cast<int64_t>(labels[b]) * d,
                  static_cast<size_t>(d) * sizeof(float));
  });
}

} // namespace diffrt::cpu
