//===- Gemm.cpp - dense layers of the CPU backend ---------------*- C++ -*-===//
//
// gemm (nn.Linear with a fused bias, activation and gated residual) and the
// SwiGLU feed-forward. The products run in OpenBLAS straight on the callers'
// strided views; the epilogue is one threaded pass over the result.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"
#include "Simd.h"

namespace diffrt::cpu {

using namespace detail;

namespace {

/// Whether the product cannot be written into `out` before the epilogue has
/// read its operands: the residual update x ← x + gate ⊙ f(x) writes over
/// the residual it reads.
bool epilogueReadsOut(const GatedResidual *epilogue, Mat out) {
  return epilogue != nullptr &&
         (overlaps(epilogue->residual, out) || overlaps(epilogue->gate, out));
}

} // namespace

void gemm(ConstMat a, ConstMat w, const float *bias, Act act, const GatedResidual *epilogue,
          Mat out, Mat preact) {
  const char *kernel = "gemm";
  int64_t m = a.rows, k = a.cols, n = w.rows;
  checkView(kernel, "a", a, m, k);
  checkView(kernel, "w", w, n, k);
  checkView(kernel, "out", out, m, n);
  checkEpilogue(kernel, epilogue, m, n);
  checkAct(kernel, act);
  if (overlaps(a, out) || overlaps(w, out))
    fail(kernel, ": out overlaps an input of the product");
  if (preact.data != nullptr) {
    checkView(kernel, "preact", preact, m, n);
    if (overlaps(preact, a) || overlaps(preact, w) || overlaps(preact, out) ||
        (epilogue != nullptr && (overlaps(preact, epilogue->residual) || overlaps(preact, epilogue->gate))))
      fail(kernel, ": preact overlaps another operand");
    sgemmNT(m, n, k, 1.0f, a.data, a.ld, w.data, w.ld, 0.0f, preact.data, preact.ld);
    finishRows(preact.data, preact.ld, bias, Act::None, nullptr, preact);
    finishRows(preact.data, preact.ld, nullptr, act, epilogue, out);
    return;
  }
  if (!epilogueReadsOut(epilogue, out)) {
    sgemmNT(m, n, k, 1.0f, a.data, a.ld, w.data, w.ld, 0.0f, out.data, out.ld);
    finishRows(out.data, out.ld, bias, act, epilogue, out);
    return;
  }
  Scratch y = scratch(m * n);
  sgemmNT(m, n, k, 1.0f, a.data, a.ld, w.data, w.ld, 0.0f, y.get(), n);
  finishRows(y.get(), n, bias, act, epilogue, out);
}

void swiglu(ConstMat x, ConstMat gate, ConstMat up, ConstMat down, const GatedResidual *epilogue,
            float *scratchBuf, Mat out) {
  const char *kernel = "swiglu";
  int64_t m = x.rows, k = x.cols, f = gate.rows, n = down.rows;
  checkView(kernel, "x", x, m, k);
  checkView(kernel, "gate", gate, f, k);
  checkView(kernel, "up", up, f, k);
  checkView(kernel, "down", down, n, f);
  checkView(kernel, "out", out, m, n);
  checkEpilogue(kernel, epilogue, m, n);
  if (scratchBuf == nullptr && m * f > 0)
    fail(kernel, ": null scratch for 2 x ", m, " x ", f, " floats");
  ConstMat scratchView{scratchBuf, 1, 2 * m * f, 2 * m * f};
  if (overlaps(scratchView, out) || overlaps(scratchView, x))
    fail(kernel, ": scratch overlaps x or out");

  float *g = scratchBuf, *u = scratchBuf + m * f;
  sgemmNT(m, f, k, 1.0f, x.data, x.ld, gate.data, gate.ld, 0.0f, g, f);
  sgemmNT(m, f, k, 1.0f, x.data, x.ld, up.data, up.ld, 0.0f, u, f);
  parallelFor(m * f, kElementGrain,
              [&](int64_t b, int64_t e) { simd::siluMul(g + b, u + b, e - b); });

  // x is no longer read, so out may alias it; only a residual living in out
  // needs the product kept apart, and the `up` half of scratch is free for
  // that when it is large enough.
  if (!epilogueReadsOut(epilogue, out)) {
    sgemmNT(m, n, f, 1.0f, g, f, down.data, down.ld, 0.0f, out.data, out.ld);
    finishRows(out.data, out.ld, nullptr, Act::None, epilogue, out);
    return;
  }
  Scratch owned;
  float *y = u;
  if (n > f) {
    owned = scratch(m * n);
    y = owned.get();
  }
  sgemmNT(m, n, f, 1.0f, g, f, down.data, down.ld, 0.0f, y, n);
  finishRows(y, n, nullptr, Act::None, epilogue, out);
}

} // namespace diffrt::cpu
