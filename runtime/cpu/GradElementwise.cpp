//===- GradElementwise.cpp - backward of the element-wise CPU kernels -----===//
//
// Vector-Jacobian products of activate, modulate, gatedResidual and the
// broadcast add/multiply. The element-wise parts are single threaded passes;
// the reductions over tokens (shift, scale and gate gradients, a broadcast
// operand's gradient) go through groupColumnSums, whose fixed blocking
// makes them independent of the thread count. Every reduction runs before
// the element-wise gradient is written, so that gradient may overwrite dOut
// in place.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

namespace diffrt::cpu {

using namespace detail;

namespace {

/// Σ over the broadcast copies of value(i) for each of the rhsCount
/// positions of a suffix-broadcast operand (the last copy may be partial).
template <typename Value>
void broadcastSums(int64_t count, int64_t rhsCount, float *dRhs, const Value &value) {
  int64_t copies = (count + rhsCount - 1) / rhsCount;
  if (copies == 0) {
    std::fill(dRhs, dRhs + rhsCount, 0.0f);
    return;
  }
  groupColumnSums(
      copies, rhsCount, copies,
      [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
        int64_t base = r * rhsCount;
        int64_t end = std::min(j1, count - base);
        for (int64_t j = j0; j < end; ++j)
          acc[j - j0] += value(base + j);
      },
      StoreSums{mat(dRhs, 1, rhsCount)});
}

void checkBroadcast(const char *kernel, int64_t count, int64_t rhsCount) {
  if (count < 0)
    fail(kernel, ": negative count ", count);
  checkPositive(kernel, "rhsCount", rhsCount);
}

} // namespace

void activateBackward(const float *x, const float *dOut, int64_t n, Act act, float *dX) {
  const char *kernel = "activateBackward";
  checkAct(kernel, act);
  if (n < 0)
    fail(kernel, ": negative count ", n);
  if (n > 0 && (x == nullptr || dOut == nullptr || dX == nullptr))
    fail(kernel, ": null operand for ", n, " values");
  parallelFor(n, kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      dX[i] = dOut[i] * actDerivative(x[i], act);
  });
}

void modulateBackward(ConstMat x, ConstMat scale, int64_t rowsPerSample, ConstMat dOut, Mat dX,
                      Mat dShift, Mat dScale) {
  const char *kernel = "modulateBackward";
  int64_t rows = x.rows, cols = x.cols;
  checkView(kernel, "x", x, rows, cols);
  checkView(kernel, "dOut", dOut, rows, cols);
  if (dX.data != nullptr) {
    checkView(kernel, "dX", dX, rows, cols);
    checkPerSample(kernel, "scale", scale, rows, rowsPerSample, cols);
  }
  if (dShift.data != nullptr)
    checkPerSample(kernel, "dShift", dShift, rows, rowsPerSample, cols);
  if (dScale.data != nullptr)
    checkPerSample(kernel, "dScale", dScale, rows, rowsPerSample, cols);
  if (dShift.data != nullptr)
    groupColumnSums(
        rows, cols, rowsPerSample,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *d = dOut.row(r);
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += d[j];
        },
        StoreSums{dShift});
  if (dScale.data != nullptr)
    groupColumnSums(
        rows, cols, rowsPerSample,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *d = dOut.row(r), *xr = x.row(r);
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += static_cast<double>(d[j] * xr[j]);
        },
        StoreSums{dScale});
  if (dX.data == nullptr)
    return;
  parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *d = dOut.row(r), *sc = scale.row(r / rowsPerSample);
      float *o = dX.row(r);
      for (int64_t j = 0; j < cols; ++j)
        o[j] = d[j] * (1.0f + sc[j]);
    }
  });
}

void gatedResidualBackward(ConstMat gate, ConstMat y, int64_t rowsPerSample, ConstMat dOut,
                           Mat dGate, Mat dY) {
  const char *kernel = "gatedResidualBackward";
  int64_t rows = dOut.rows, cols = dOut.cols;
  checkView(kernel, "dOut", dOut, rows, cols);
  if (dGate.data != nullptr) {
    checkView(kernel, "y", y, rows, cols);
    checkPerSample(kernel, "dGate", dGate, rows, rowsPerSample, cols);
    groupColumnSums(
        rows, cols, rowsPerSample,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *d = dOut.row(r), *yr = y.row(r);
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += static_cast<double>(d[j] * yr[j]);
        },
        StoreSums{dGate});
  }
  if (dY.data == nullptr)
    return;
  checkPerSample(kernel, "gate", gate, rows, rowsPerSample, cols);
  checkView(kernel, "dY", dY, rows, cols);
  parallelFor(rows, rowGrain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *d = dOut.row(r), *g = gate.row(r / rowsPerSample);
      float *o = dY.row(r);
      for (int64_t j = 0; j < cols; ++j)
        o[j] = g[j] * d[j];
    }
  });
}

void mulBroadcastBackward(const float *lhs, int64_t count, const float *rhs, int64_t rhsCount,
                          const float *dOut, float *dLhs, float *dRhs) {
  const char *kernel = "mulBroadcastBackward";
  checkBroadcast(kernel, count, rhsCount);
  if (count > 0 && dOut == nullptr)
    fail(kernel, ": null dOut");
  if (dRhs != nullptr) {
    if (count > 0 && lhs == nullptr)
      fail(kernel, ": null lhs");
    broadcastSums(count, rhsCount, dRhs,
                  [&](int64_t i) { return static_cast<double>(dOut[i] * lhs[i]); });
  }
  if (dLhs == nullptr)
    return;
  if (rhs == nullptr)
    fail(kernel, ": null rhs");
  parallelFor(count, kElementGrain, [&](int64_t b, int64_t e) {
    int64_t i = b, j = b % rhsCount;
    while (i < e) {
      int64_t run = std::min(e - i, rhsCount - j);
      for (int64_t t = 0; t < run; ++t)
        dLhs[i + t] = dOut[i + t] * rhs[j + t];
      i += run;
      j = 0;
    }
  });
}

void addBroadcastBackwardRhs(const float *dOut, int64_t count, int64_t rhsCount, float *dRhs) {
  const char *kernel = "addBroadcastBackwardRhs";
  checkBroadcast(kernel, count, rhsCount);
  if (dRhs == nullptr)
    fail(kernel, ": null dRhs");
  if (count > 0 && dOut == nullptr)
    fail(kernel, ": null dOut");
  broadcastSums(count, rhsCount, dRhs, [&](int64_t i) { return static_cast<double>(dOut[i]); });
}

} // namespace diffrt::cpu
