//===- Norm.cpp - fused LayerNorm / RMSNorm of the CPU backend --*- C++ -*-===//
//
// One pass over each row computes the group statistics and applies the
// affine weight, adaLN modulation and SiLU output gate in the order the
// header states, so the fused ops of the compiled program (LN + modulate,
// per-head q/k norm, GLA's RMSNorm-gate) each cost a single read and write.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <cmath>

namespace diffrt::cpu {

using namespace detail;

namespace {

/// Float32 sum over eight interleaved accumulators: the independent lanes
/// let the loop vectorise and shorten the rounding-error chains eightfold.
float sum(const float *x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l)
      acc[l] += x[i + l];
  for (int l = 0; i < n; ++i, ++l)
    acc[l] += x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/// Σ (x - c)², same scheme.
float sumSquares(const float *x, int64_t n, float c) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      float d = x[i + l] - c;
      acc[l] += d * d;
    }
  for (int l = 0; i < n; ++i, ++l) {
    float d = x[i] - c;
    acc[l] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

} // namespace

void norm(ConstMat x, const NormArgs &args, Mat out) {
  const char *kernel = "norm";
  int64_t rows = x.rows, cols = x.cols, group = args.group;
  checkView(kernel, "x", x, rows, cols);
  checkView(kernel, "out", out, rows, cols);
  checkPositive(kernel, "group", group);
  if (cols % group != 0)
    fail(kernel, ": group ", group, " does not divide the ", cols, " columns");
  if (args.kind != NormKind::Layer && args.kind != NormKind::Rms)
    fail(kernel, ": unknown norm kind ", static_cast<int32_t>(args.kind));
  if (!(args.eps >= 0.0f))
    fail(kernel, ": eps must be non-negative, got ", args.eps);
  bool hasShift = !args.shift.empty(), hasScale = !args.scale.empty();
  if (hasShift)
    checkPerSample(kernel, "shift", args.shift, rows, args.rowsPerSample, cols);
  if (hasScale)
    checkPerSample(kernel, "scale", args.scale, rows, args.rowsPerSample, cols);
  bool hasGate = !args.siluGate.empty();
  if (hasGate)
    checkView(kernel, "siluGate", args.siluGate, rows, cols);

  bool layer = args.kind == NormKind::Layer;
  float invGroup = 1.0f / static_cast<float>(group);
  parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x.row(r);
      float *o = out.row(r);
      for (int64_t g0 = 0; g0 < cols; g0 += group) {
        const float *xg = xr + g0;
        float mean = layer ? sum(xg, group) * invGroup : 0.0f;
        float var = sumSquares(xg, group, mean) * invGroup;
        float rstd = 1.0f / std::sqrt(var + args.eps);
        float *og = o + g0;
        for (int64_t j = 0; j < group; ++j)
          og[j] = (xg[j] - mean) * rstd;
        if (args.weight != nullptr)
          for (int64_t j = 0; j < group; ++j)
            og[j] *= args.weight[j];
        if (args.bias != nullptr)
          for (int64_t j = 0; j < group; ++j)
            og[j] += args.bias[j];
      }
      if (hasScale) {
        const float *sc = args.scale.row(r / args.rowsPerSample);
        for (int64_t j = 0; j < cols; ++j)
          o[j] *= 1.0f + sc[j];
      }
      if (hasShift) {
        const float *sh = args.shift.row(r / args.rowsPerSample);
        for (int64_t j = 0; j < cols; ++j)
          o[j] += sh[j];
      }
      if (hasGate) {
        const float *gr = args.siluGate.row(r);
        for (int64_t j = 0; j < cols; ++j)
          o[j] *= silu(gr[j]);
      }
    }
  });
}

} // namespace diffrt::cpu
