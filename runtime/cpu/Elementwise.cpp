//===- Elementwise.cpp - adaLN glue ---------------------------------------===//
//
// The memory-bound adaLN kernels between the matrix products: modulation and
// the gated residual update (other element-wise work runs as generated
// pointwise programs, Pointwise.cpp). Each is one threaded pass whose inner
// loops run over contiguous columns so that they vectorise.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <algorithm>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

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
