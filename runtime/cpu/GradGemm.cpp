//===- GradGemm.cpp - backward of the dense layers on the CPU -------------===//
//
// Vector-Jacobian products of gemm (nn.Linear with its fused bias,
// activation and gated residual) and of the SwiGLU feed-forward, plus the
// SwiGLU pieces the token-choice MoE backward reuses per expert. The
// pre-activations are recomputed from the inputs (one product each) rather
// than kept from the forward pass; the three products of each backward and
// the weight gradients run in OpenBLAS from the calling thread, the
// element-wise parts on the worker pool. Every sum over rows (bias, gate)
// is blocked in a fixed order, so results do not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

namespace diffrt::cpu {

using namespace detail;

namespace {

/// act(z) as the forward epilogue computes it (same inline functions).
inline float actValue(float z, Act act) {
  switch (act) {
  case Act::None:
    return z;
  case Act::Gelu:
    return geluErf(z);
  case Act::GeluTanh:
    return geluTanh(z);
  case Act::Silu:
    return silu(z);
  }
  return z;
}

/// Checks a wanted gradient view against its operand's shape.
void checkGrad(const char *kernel, const char *name, ConstMat g, int64_t rows, int64_t cols) {
  if (!g.empty())
    checkView(kernel, name, g, rows, cols);
}

/// Checks dGate of an epilogue: wanted only where there is an epilogue.
void checkEpilogueGrad(const char *kernel, const GatedResidual *epilogue, ConstMat dGate,
                       int64_t rows, int64_t cols) {
  if (dGate.empty())
    return;
  if (epilogue == nullptr)
    fail(kernel, ": dGate is wanted but the product has no gated-residual epilogue");
  checkPerSample(kernel, "dGate", dGate, rows, epilogue->rowsPerGate, cols);
}

} // namespace

namespace detail {

void swigluHidden(ConstMat x, ConstMat gate, ConstMat up, float *g, float *u, float *h) {
  int64_t n = x.rows, k = x.cols, f = gate.rows;
  sgemmNT(n, f, k, 1.0f, x.data, x.ld, gate.data, gate.ld, 0.0f, g, f);
  sgemmNT(n, f, k, 1.0f, x.data, x.ld, up.data, up.ld, 0.0f, u, f);
  parallelFor(n * f, kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      h[i] = silu(g[i]) * u[i];
  });
}

void swigluBackwardFromHidden(ConstMat x, ConstMat gate, ConstMat up, ConstMat down, ConstMat dy,
                              float *g, float *u, const float *h, float *work, Mat dX,
                              bool accumulate, Mat dGate, Mat dUp, Mat dDown) {
  int64_t n = x.rows, k = x.cols, f = gate.rows, nOut = down.rows;
  // dDown = dyᵀ·h first: `work` is still free to hold the transposed dy.
  if (dDown.data != nullptr)
    sgemmTN(nOut, f, n, 1.0f, dy.data, dy.ld, h, f, 0.0f, dDown.data, dDown.ld, work, n * f);
  if (dX.data == nullptr && dGate.data == nullptr && dUp.data == nullptr)
    return;
  // dh = dy·down; dg = dh ⊙ u ⊙ silu'(g) and du = dh ⊙ silu(g) replace g, u.
  sgemmNN(n, f, nOut, 1.0f, dy.data, dy.ld, down.data, down.ld, 0.0f, work, f);
  parallelFor(n * f, kElementGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float gi = g[i], s = sigmoid(gi), dh = work[i];
      g[i] = dh * u[i] * (s * (1.0f + gi * (1.0f - s)));
      u[i] = dh * (gi * s);
    }
  });
  if (dX.data != nullptr) {
    sgemmNN(n, k, f, 1.0f, g, f, gate.data, gate.ld, accumulate ? 1.0f : 0.0f, dX.data, dX.ld);
    sgemmNN(n, k, f, 1.0f, u, f, up.data, up.ld, 1.0f, dX.data, dX.ld);
  }
  if (dGate.data != nullptr)
    sgemmTN(f, k, n, 1.0f, g, f, x.data, x.ld, 0.0f, dGate.data, dGate.ld, work, n * f);
  if (dUp.data != nullptr)
    sgemmTN(f, k, n, 1.0f, u, f, x.data, x.ld, 0.0f, dUp.data, dUp.ld, work, n * f);
}

} // namespace detail

void gemmBackward(ConstMat a, ConstMat w, const float *bias, Act act, const GatedResidual *epilogue,
                  ConstMat dOut, const GemmGrads &grads, float *scratchBuf, ConstMat preact) {
  const char *kernel = "gemmBackward";
  int64_t m = a.rows, k = a.cols, n = w.rows;
  checkView(kernel, "a", a, m, k);
  checkView(kernel, "w", w, n, k);
  checkView(kernel, "dOut", dOut, m, n);
  checkEpilogue(kernel, epilogue, m, n);
  checkAct(kernel, act);
  checkGrad(kernel, "dA", grads.dA, m, k);
  checkEpilogueGrad(kernel, epilogue, grads.dGate, m, n);
  if (grads.inputAct != Act::None) {
    checkAct(kernel, grads.inputAct);
    if (grads.dA.data == nullptr)
      fail(kernel, ": an input activation is folded in but dA is not wanted");
    checkView(kernel, "inputPreact", grads.inputPreact, m, k);
    if (overlaps(grads.inputPreact, grads.dA))
      fail(kernel, ": inputPreact overlaps dA");
  }
  if (scratchBuf == nullptr && m * n > 0)
    fail(kernel, ": null scratch for 2 x ", m, " x ", n, " floats");
  ConstMat scratchView{scratchBuf, 1, 2 * m * n, 2 * m * n};
  if (overlaps(scratchView, grads.dA) || overlaps(scratchView, grads.dGate) ||
      overlaps(scratchView, dOut) || overlaps(scratchView, a))
    fail(kernel, ": scratch overlaps an operand or a gradient");

  // z = a·wᵀ + bias (the saved one, or recomputed into scratch: the gate
  // gradient needs act(z)); dz = dy ⊙ act'(z).
  float *dz = scratchBuf + m * n;
  ConstMat z = preact;
  if (z.data != nullptr) {
    checkView(kernel, "preact", z, m, n);
  } else {
    sgemmNT(m, n, k, 1.0f, a.data, a.ld, w.data, w.ld, 0.0f, scratchBuf, n);
    z = {scratchBuf, m, n, n};
  }
  const bool addBias = preact.data == nullptr && bias != nullptr;
  parallelFor(m, rowGrain(n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float *dzr = dz + r * n;
      const float *zr = z.row(r);
      const float *dOutR = dOut.row(r);
      const float *gate =
          epilogue != nullptr ? epilogue->gate.row(r / epilogue->rowsPerGate) : nullptr;
      for (int64_t j = 0; j < n; ++j) {
        float zz = addBias ? zr[j] + bias[j] : zr[j];
        if (addBias)
          scratchBuf[r * n + j] = zz;
        float dy = gate != nullptr ? gate[j] * dOutR[j] : dOutR[j];
        dzr[j] = act == Act::None ? dy : dy * actDerivative(zz, act);
      }
    }
  });
  if (grads.dGate.data != nullptr)
    groupColumnSums(
        m, n, epilogue->rowsPerGate,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *zr = z.row(r), *dOutR = dOut.row(r);
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += static_cast<double>(dOutR[j] * actValue(zr[j], act));
        },
        StoreSums{grads.dGate});
  if (grads.dBias != nullptr)
    groupColumnSums(
        m, n, m,
        [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
          const float *dzr = dz + r * n;
          for (int64_t j = j0; j < j1; ++j)
            acc[j - j0] += dzr[j];
        },
        StoreSums{mat(grads.dBias, 1, n)});
  if (grads.dA.data != nullptr) {
    sgemmNN(m, k, n, 1.0f, dz, n, w.data, w.ld, 0.0f, grads.dA.data, grads.dA.ld);
    if (grads.inputAct != Act::None)
      parallelFor(m, rowGrain(k), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float *d = grads.dA.row(r);
          const float *zr = grads.inputPreact.row(r);
          for (int64_t c = 0; c < k; ++c)
            d[c] *= actDerivative(zr[c], grads.inputAct);
        }
      });
  }
  // z is no longer read: the first half of scratch holds the transposed dz.
  if (grads.dW != nullptr)
    sgemmTN(n, k, m, 1.0f, dz, n, a.data, a.ld, 0.0f, grads.dW, k, scratchBuf, m * n);
}

void swigluBackward(ConstMat x, ConstMat gate, ConstMat up, ConstMat down,
                    const GatedResidual *epilogue, ConstMat dOut, const SwiGluGrads &grads,
                    float *scratchBuf) {
  const char *kernel = "swigluBackward";
  int64_t m = x.rows, k = x.cols, f = gate.rows, n = down.rows;
  checkView(kernel, "x", x, m, k);
  checkView(kernel, "gate", gate, f, k);
  checkView(kernel, "up", up, f, k);
  checkView(kernel, "down", down, n, f);
  checkView(kernel, "dOut", dOut, m, n);
  checkEpilogue(kernel, epilogue, m, n);
  checkGrad(kernel, "dX", grads.dX, m, k);
  checkEpilogueGrad(kernel, epilogue, grads.dGate, m, n);
  int64_t gateLd = grads.gateLd > 0 ? grads.gateLd : k, upLd = grads.upLd > 0 ? grads.upLd : k;
  if (gateLd < k || upLd < k)
    fail(kernel, ": gradient row strides ", gateLd, " / ", upLd, " are below the ", k, " columns");
  int64_t total = 4 * m * f + m * n;
  if (scratchBuf == nullptr && total > 0)
    fail(kernel, ": null scratch for 4 x ", m, " x ", f, " + ", m, " x ", n, " floats");
  ConstMat scratchView{scratchBuf, 1, total, total};
  if (overlaps(scratchView, grads.dX) || overlaps(scratchView, dOut) || overlaps(scratchView, x) ||
      overlaps(scratchView, grads.dGate))
    fail(kernel, ": scratch overlaps an operand or a gradient");

  float *g = scratchBuf, *u = g + m * f, *h = u + m * f, *work = h + m * f, *yBuf = work + m * f;
  swigluHidden(x, gate, up, g, u, h);
  ConstMat dy = dOut;
  if (epilogue != nullptr) {
    if (grads.dGate.data != nullptr) {
      sgemmNT(m, n, f, 1.0f, h, f, down.data, down.ld, 0.0f, yBuf, n);
      groupColumnSums(
          m, n, epilogue->rowsPerGate,
          [&](int64_t r, int64_t j0, int64_t j1, double *acc) {
            const float *yr = yBuf + r * n, *dOutR = dOut.row(r);
            for (int64_t j = j0; j < j1; ++j)
              acc[j - j0] += static_cast<double>(dOutR[j] * yr[j]);
          },
          StoreSums{grads.dGate});
    }
    parallelFor(m, rowGrain(n), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float *gr = epilogue->gate.row(r / epilogue->rowsPerGate), *dOutR = dOut.row(r);
        float *yr = yBuf + r * n;
        for (int64_t j = 0; j < n; ++j)
          yr[j] = gr[j] * dOutR[j];
      }
    });
    dy = constMat(yBuf, m, n);
  }
  swigluBackwardFromHidden(x, gate, up, down, dy, g, u, h, work, grads.dX, false,
                           Mat{grads.dGateW, f, k, gateLd}, Mat{grads.dUpW, f, k, upLd},
                           Mat{grads.dDownW, n, f, f});
}

} // namespace diffrt::cpu
