//===- Elementwise.cpp - broadcast arithmetic and adaLN glue ----*- C++ -*-===//
//
// The memory-bound kernels between the matrix products: broadcast add and
// multiply, adaLN modulation and the gated residual update. Each is one
// threaded pass whose inner loops run over contiguous columns so that they
// vectorise.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <algorithm>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

namespace {

/// out[i] = op(lhs[i], rhs[i mod rhsCount]). The chunk is walked in runs
/// aligned with the period of rhs so the inner loop is a plain vector loop;
/// a short rhs is first tiled to at least kMinRun values so that runs stay
/// long (a scalar or per-channel broadcast would otherwise give runs of 1).
template <typename Op>
void broadcast(const char *kernel, const float *lhs, int64_t count, const float *rhs,
               int64_t rhsCount, float *out, Op op) {
  if (count == 0)
    return;
  if (count < 0)
    fail(kernel, ": negative count ", count);
  checkPositive(kernel, "rhsCount", rhsCount);
  if (lhs == nullptr || rhs == nullptr || out == nullptr)
    fail(kernel, ": null operand");
  constexpr int64_t kMinRun = 256;
  std::vector<float> tiled;
  const float *period = rhs;
  int64_t periodLen = rhsCount;
  if (rhsCount < kMinRun && count > rhsCount) {
    int64_t copies = (kMinRun + rhsCount - 1) / rhsCount;
    tiled.resize(static_cast<size_t>(copies * rhsCount));
    for (int64_t c = 0; c < copies; ++c)
      std::copy(rhs, rhs + rhsCount, tiled.begin() + c * rhsCount);
    period = tiled.data();
    periodLen = copies * rhsCount;
  }
  parallelFor(count, kElementGrain, [&](int64_t b, int64_t e) {
    int64_t i = b, j = b % periodLen;
    while (i < e) {
      int64_t run = std::min(e - i, periodLen - j);
      const float *l = lhs + i, *r = period + j;
      float *o = out + i;
      for (int64_t t = 0; t < run; ++t)
        o[t] = op(l[t], r[t]);
      i += run;
      j = 0;
    }
  });
}

} // namespace

void addBroadcast(const float *lhs, int64_t count, const float *rhs, int64_t rhsCount,
                  float *out) {
  broadcast("addBroadcast", lhs, count, rhs, rhsCount, out,
            [](float a, float b) { return a + b; });
}

void mulBroadcast(const float *lhs, int64_t count, const float *rhs, int64_t rhsCount,
                  float *out) {
  broadcast("mulBroadcast", lhs, count, rhs, rhsCount, out,
            [](float a, float b) { return a * b; });
}

void modulate(ConstMat x, ConstMat shift, ConstMat scale, int64_t rowsPerSample, Mat out) {
  const char *kernel = "modulate";
  int64_t rows = x.rows, cols = x.cols;
  checkView(kernel, "x", x, rows, cols);
  checkPerSample(kernel, "shift", shift, rows, rowsPerSample, cols);
  checkPerSample(kernel, "scale", scale, rows, rowsPerSample, cols);
  checkView(kernel, "out", out, rows, cols);
  parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x.row(r);
      const float *sh = shift.row(r / rowsPerSample), *sc = scale.row(r / rowsPerSample);
      float *o = out.row(r);
      for (int64_t j = 0; j < cols; ++j)
        o[j] = xr[j] * (1.0f + sc[j]) + sh[j];
    }
  });
}

void gatedResidual(ConstMat residual, ConstMat gate, ConstMat y, int64_t rowsPerSample, Mat out) {
  const char *kernel = "gatedResidual";
  int64_t rows = residual.rows, cols = residual.cols;
  checkView(kernel, "residual", residual, rows, cols);
  checkPerSample(kernel, "gate", gate, rows, rowsPerSample, cols);
  checkView(kernel, "y", y, rows, cols);
  checkView(kernel, "out", out, rows, cols);
  parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *res = residual.row(r), *g = gate.row(r / rowsPerSample), *yr = y.row(r);
      float *o = out.row(r);
      for (int64_t j = 0; j < cols; ++j)
        o[j] = res[j] + g[j] * yr[j];
    }
  });
}

} // namespace diffrt::cpu
