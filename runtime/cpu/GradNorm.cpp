//===- GradNorm.cpp - backward of the fused LayerNorm / RMSNorm -----------===//
//
// The vector-Jacobian product of norm() with all its fused parts (affine
// weight and bias, adaLN shift/scale, SiLU output gate). Each row is
// re-normalised with its statistics recomputed in double, the chain is
// walked back through gate, modulation and affine, and the normalisation's
// own Jacobian is applied with the two group means (of dx̂ and of dx̂ ⊙ x̂)
// in double: those means are differences of nearly equal sums, which is
// where float32 would lose the digits.
//
// The parameter gradients are sums over rows. Rows are processed in fixed
// blocks, each block writing its partial sums (double) to a slot of its
// own, and the slots are added in block order afterwards: the result is the
// same whatever the thread count. Blocks never straddle a sample, so the
// per-sample shift/scale gradients come out of the same pass.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"

#include "Internal.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace diffrt::cpu {

using namespace detail;

void normBackward(ConstMat x, const NormArgs &args, ConstMat dOut, const NormGrads &grads) {
  const char *kernel = "normBackward";
  int64_t rows = x.rows, cols = x.cols, group = args.group;
  checkView(kernel, "x", x, rows, cols);
  checkView(kernel, "dOut", dOut, rows, cols);
  checkPositive(kernel, "group", group);
  if (cols % group != 0)
    fail(kernel, ": group ", group, " does not divide the ", cols, " columns");
  if (args.kind != NormKind::Layer && args.kind != NormKind::Rms)
    fail(kernel, ": unknown norm kind ", static_cast<int32_t>(args.kind));
  if (!(args.eps >= 0.0f))
    fail(kernel, ": eps must be non-negative, got ", args.eps);
  bool hasShift = !args.shift.empty(), hasScale = !args.scale.empty();
  bool hasGate = !args.siluGate.empty();
  if (hasShift)
    checkPerSample(kernel, "shift", args.shift, rows, args.rowsPerSample, cols);
  if (hasScale)
    checkPerSample(kernel, "scale", args.scale, rows, args.rowsPerSample, cols);
  if (hasGate)
    checkView(kernel, "siluGate", args.siluGate, rows, cols);
  bool wantX = grads.dX.data != nullptr, wantShift = grads.dShift.data != nullptr;
  bool wantScale = grads.dScale.data != nullptr, wantGate = grads.dSiluGate.data != nullptr;
  bool wantW = grads.dWeight != nullptr, wantB = grads.dBias != nullptr;
  if (wantX)
    checkView(kernel, "dX", grads.dX, rows, cols);
  if (wantGate) {
    if (!hasGate)
      fail(kernel, ": dSiluGate is wanted but the norm has no SiLU gate");
    checkView(kernel, "dSiluGate", grads.dSiluGate, rows, cols);
  }
  if (wantShift || wantScale) {
    // Modulation gradients are per sample even when only one of shift and
    // scale is present; their layout is that of the operands.
    if (args.rowsPerSample < 1 || rows % args.rowsPerSample != 0)
      fail(kernel, ": ", rows, " rows are not a whole number of samples of ", args.rowsPerSample,
           " rows");
    if (wantShift)
      checkPerSample(kernel, "dShift", grads.dShift, rows, args.rowsPerSample, cols);
    if (wantScale)
      checkPerSample(kernel, "dScale", grads.dScale, rows, args.rowsPerSample, cols);
  }
  if (wantX && (overlaps(grads.dX, x) || overlaps(grads.dX, dOut)))
    fail(kernel, ": dX overlaps x or dOut");
  const bool hasAddend = grads.dXAddend.data != nullptr;
  if (hasAddend) {
    if (!wantX)
      fail(kernel, ": an addend for dX, but dX is not wanted");
    checkView(kernel, "dXAddend", grads.dXAddend, rows, cols);
    // Element i is read just before dX's element i is written: only an
    // exact alias is safe.
    bool same = grads.dXAddend.data == grads.dX.data && grads.dXAddend.ld == grads.dX.ld;
    if (!same && overlaps(grads.dX, grads.dXAddend))
      fail(kernel, ": dXAddend overlaps dX without being dX itself");
  }
  if (rows == 0 || cols == 0)
    return;

  // Blocks of rows inside one segment: a sample when per-sample gradients
  // are wanted, all rows otherwise. The block length depends on the shape
  // only (never on the threads), which fixes the order of every sum.
  bool perSample = wantShift || wantScale;
  int64_t segment = perSample ? args.rowsPerSample : rows;
  int64_t blockRows = std::min(segment, std::clamp<int64_t>(kElementGrain / cols, 1, 64));
  int64_t blocksPerSegment = (segment + blockRows - 1) / blockRows;
  int64_t segments = rows / segment, blocks = segments * blocksPerSegment;
  // A segment of one block writes its sums straight out; longer ones keep
  // a partial per block.
  bool directSample = blocksPerSegment == 1;
  std::vector<double> partShift, partScale, partWeight, partBias;
  if (wantShift && !directSample)
    partShift.resize(static_cast<size_t>(blocks * cols));
  if (wantScale && !directSample)
    partScale.resize(static_cast<size_t>(blocks * cols));
  if (wantW)
    partWeight.resize(static_cast<size_t>(blocks * group));
  if (wantB)
    partBias.resize(static_cast<size_t>(blocks * group));

  bool layer = args.kind == NormKind::Layer;
  double invGroup = 1.0 / static_cast<double>(group);
  parallelFor(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> accShift(wantShift ? cols : 0), accScale(wantScale ? cols : 0);
    std::vector<double> accW(wantW ? group : 0), accB(wantB ? group : 0);
    std::vector<double> xhat(static_cast<size_t>(group)), dxhat(static_cast<size_t>(group));
    for (int64_t blk = b0; blk < b1; ++blk) {
      int64_t seg = blk / blocksPerSegment, inSeg = blk % blocksPerSegment;
      int64_t r0 = seg * segment + inSeg * blockRows;
      int64_t r1 = std::min((seg + 1) * segment, r0 + blockRows);
      std::fill(accShift.begin(), accShift.end(), 0.0);
      std::fill(accScale.begin(), accScale.end(), 0.0);
      std::fill(accW.begin(), accW.end(), 0.0);
      std::fill(accB.begin(), accB.end(), 0.0);
      for (int64_t r = r0; r < r1; ++r) {
        const float *xr = x.row(r), *dOutR = dOut.row(r);
        const float *sc = hasScale ? args.scale.row(r / args.rowsPerSample) : nullptr;
        const float *sh = hasShift ? args.shift.row(r / args.rowsPerSample) : nullptr;
        const float *gr = hasGate ? args.siluGate.row(r) : nullptr;
        for (int64_t g0 = 0; g0 < cols; g0 += group) {
          const float *xg = xr + g0;
          double mean = 0.0;
          if (layer) {
            for (int64_t j = 0; j < group; ++j)
              mean += xg[j];
            mean *= invGroup;
          }
          double var = 0.0;
          for (int64_t j = 0; j < group; ++j) {
            double d = xg[j] - mean;
            var += d * d;
          }
          var *= invGroup;
          double rstd = 1.0 / std::sqrt(var + static_cast<double>(args.eps));
          double sumD = 0.0, sumDX = 0.0;
          for (int64_t jj = 0; jj < group; ++jj) {
            int64_t j = g0 + jj;
            double xh = (xg[jj] - mean) * rstd;
            double w = args.weight != nullptr ? args.weight[jj] : 1.0;
            double y1 = xh * w + (args.bias != nullptr ? args.bias[jj] : 0.0);
            double dy2 = dOutR[j];
            if (gr != nullptr) {
              // out = y2 · silu(gate): the gate's gradient needs y2 itself.
              double gv = gr[j], s = 1.0 / (1.0 + std::exp(-gv));
              if (wantGate) {
                double y2 =
                    y1 * (sc != nullptr ? 1.0 + sc[j] : 1.0) + (sh != nullptr ? sh[j] : 0.0);
                grads.dSiluGate.row(r)[j] =
                    static_cast<float>(dy2 * y2 * s * (1.0 + gv * (1.0 - s)));
              }
              dy2 *= gv * s;
            }
            if (wantShift)
              accShift[j] += dy2;
            if (wantScale)
              accScale[j] += dy2 * y1;
            double dy1 = sc != nullptr ? dy2 * (1.0 + sc[j]) : dy2;
            if (wantW)
              accW[jj] += dy1 * xh;
            if (wantB)
              accB[jj] += dy1;
            double dxh = dy1 * w;
            xhat[jj] = xh;
            dxhat[jj] = dxh;
            sumD += dxh;
            sumDX += dxh * xh;
          }
          if (!wantX)
            continue;
          // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)); RMSNorm has no
          // mean subtracted, so its dx̂ keeps its mean.
          double m1 = layer ? sumD * invGroup : 0.0, m2 = sumDX * invGroup;
          float *dx = grads.dX.row(r) + g0;
          const float *addend = hasAddend ? grads.dXAddend.row(r) + g0 : nullptr;
          for (int64_t jj = 0; jj < group; ++jj)
            dx[jj] = static_cast<float>(rstd * (dxhat[jj] - m1 - xhat[jj] * m2)) + (addend ? addend[jj] : 0.0f);
        }
      }
      if (directSample) {
        if (wantShift)
          for (int64_t j = 0; j < cols; ++j)
            grads.dShift.row(seg)[j] = static_cast<float>(accShift[j]);
        if (wantScale)
          for (int64_t j = 0; j < cols; ++j)
            grads.dScale.row(seg)[j] = static_cast<float>(accScale[j]);
      } else {
        if (wantShift)
          std::copy(accShift.begin(), accShift.end(), partShift.begin() + blk * cols);
        if (wantScale)
          std::copy(accScale.begin(), accScale.end(), partScale.begin() + blk * cols);
      }
      if (wantW)
        std::copy(accW.begin(), accW.end(), partWeight.begin() + blk * group);
      if (wantB)
        std::copy(accB.begin(), accB.end(), partBias.begin() + blk * group);
    }
  });

  // Block partials in block order.
  if (!directSample && (wantShift || wantScale))
    parallelFor(segments * cols, kElementGrain / 4, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        int64_t seg = i / cols, j = i % cols;
        double s = 0.0, c = 0.0;
        for (int64_t b = seg * blocksPerSegment; b < (seg + 1) * blocksPerSegment; ++b) {
          if (wantShift)
            s += partShift[b * cols + j];
          if (wantScale)
            c += partScale[b * cols + j];
        }
        if (wantShift)
          grads.dShift.row(seg)[j] = static_cast<float>(s);
        if (wantScale)
          grads.dScale.row(seg)[j] = static_cast<float>(c);
      }
    });
  if (wantW || wantB)
    parallelFor(group, std::max<int64_t>(1, kElementGrain / blocks), [&](int64_t j0, int64_t j1) {
      for (int64_t jj = j0; jj < j1; ++jj) {
        double w = 0.0, b = 0.0;
        for (int64_t blk = 0; blk < blocks; ++blk) {
          if (wantW)
            w += partWeight[blk * group + jj];
          if (wantB)
            b += partBias[blk * group + jj];
        }
        if (wantW)
          grads.dWeight[jj] = static_cast<float>(w);
        if (wantB)
          grads.dBias[jj] = static_cast<float>(b);
      }
    });
}

} // namespace diffrt::cpu
