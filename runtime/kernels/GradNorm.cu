//===- GradNorm.cu - backward of the fused LayerNorm / RMSNorm ------------===//
//
// The vector-Jacobian product of norm() with all its fused parts (affine
// weight and bias, adaLN shift/scale, SiLU output gate), the GPU counterpart
// of runtime/cpu/GradNorm.cpp. Three launches:
//
//   1. Row pass, one warp per row, the row's groups one after the other:
//      group statistics recomputed (two-pass variance, warp shuffles), the
//      chain walked back through gate, modulation and affine, the
//      normalisation's Jacobian applied with the two group means, dX and
//      dSiluGate written. The statistics (mean, 1/std per row and group)
//      go to the workspace for pass 2. A warp per row handles any group
//      size (grouped norms with groups far below a block's width included)
//      without block-wide synchronisation; the rows are re-read from L1/L2
//      between the sub-passes.
//   2. Column pass for the parameter gradients, which are sums over rows:
//      one thread per column walks a fixed chunk of at most 64 rows (never
//      straddling a sample, so the per-sample shift/scale sums come out of
//      the same pass), recomputes the chain from the stored statistics and
//      writes its f32 partial sums (shift, scale, weight, bias terms) to
//      the workspace. Threads of a warp read consecutive columns of a row,
//      so the reads are coalesced.
//   3. Reduction of the chunk partials in chunk order (and, for the affine
//      weight and bias, over the groups of a row in group order).
//
// Every sum is taken in an order fixed by the shape alone, so the results
// are reproducible bit for bit, without float atomics. Accumulation is in
// f32 (the CPU reference uses double; the difference is within float
// roundoff for the tests' shapes).
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "Common.cuh"

#include <algorithm>

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunkRows = 64;

/// The shape-dependent blocking of the column pass.
struct Chunking {
  int64_t segment = 0, chunkRows = 0, chunksPerSegment = 0, segments = 0, chunks = 0;
};
Chunking chunking(int64_t rows, int64_t segment) {
  Chunking c;
  c.segment = segment;
  c.chunkRows = std::min(segment, kChunkRows);
  c.chunksPerSegment = (segment + c.chunkRows - 1) / c.chunkRows;
  c.segments = rows / segment;
  c.chunks = c.segments * c.chunksPerSegment;
  return c;
}

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

/// Workspace layout: group statistics (2 floats per row and group), then
/// four partial-sum planes (shift, scale, weight, bias terms) of
/// chunks x cols floats each.
struct Layout {
  size_t statsBytes = 0, planeFloats = 0, total = 0;
};
Layout layoutFor(int64_t rows, int64_t cols, int64_t groups, int64_t chunks) {
  Layout l;
  l.statsBytes = alignUp(static_cast<size_t>(rows * groups) * 2 * sizeof(float), 256);
  l.planeFloats = static_cast<size_t>(chunks * cols);
  l.total = l.statsBytes + 4 * alignUp(l.planeFloats * sizeof(float), 256);
  return l;
}

template <typename T> struct NormParams {
  const T *x, *dOut, *weight, *bias, *shift, *scale, *gate;
  int64_t ldx, ldd, lds, ldc, ldg;
  int64_t rows, cols, group, rowsPerSample;
  float eps;
  bool layer;
};

/// The forward chain of one element walked back: out = y2 · silu(gate) (or
/// y2) with y2 = y1·(1 + sc) + sh and y1 = x̂·w + b. Absent parts enter as
/// sc = sh = b = 0, w = 1, as in the CPU reference.
struct Chain {
  float xh, y1, dy2, dy1, dGate;
};
__device__ __forceinline__ Chain chainAt(float xv, float mean, float rstd, float w, float b,
                                         float d, float sc, float sh, bool hasGate, float gv) {
  Chain c;
  c.xh = (xv - mean) * rstd;
  c.y1 = c.xh * w + b;
  c.dy2 = d;
  c.dGate = 0.0f;
  if (hasGate) {
    const float s = 1.0f / (1.0f + expf(-gv));
    const float y2 = c.y1 * (1.0f + sc) + sh;
    c.dGate = d * y2 * s * (1.0f + gv * (1.0f - s));
    c.dy2 = d * (gv * s);
  }
  c.dy1 = c.dy2 * (1.0f + sc);
  return c;
}

template <typename T> struct ElementLoader {
  const NormParams<T> &p;
  int64_t r;
  __device__ __forceinline__ Chain at(int64_t j, int64_t jj, float mean, float rstd) const {
    const int64_t s = r / p.rowsPerSample;
    const float w = p.weight != nullptr ? toF<T>(p.weight[jj]) : 1.0f;
    const float b = p.bias != nullptr ? toF<T>(p.bias[jj]) : 0.0f;
    const float sc = p.scale != nullptr ? toF<T>(p.scale[s * p.ldc + j]) : 0.0f;
    const float sh = p.shift != nullptr ? toF<T>(p.shift[s * p.lds + j]) : 0.0f;
    const float gv = p.gate != nullptr ? toF<T>(p.gate[r * p.ldg + j]) : 0.0f;
    return chainAt(toF<T>(p.x[r * p.ldx + j]), mean, rstd, w, b, toF<T>(p.dOut[r * p.ldd + j]), sc,
                   sh, p.gate != nullptr, gv);
  }
};

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// Pass 1: one warp per row (grid-stride over rows).
template <typename T>
__global__ void normRowKernel(NormParams<T> p, T *dX, int64_t lddx, T *dGate, int64_t lddg,
                              float *stats) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  const int64_t groups = p.cols / p.group;
  const float invGroup = 1.0f / static_cast<float>(p.group);
  for (int64_t r = warp; r < p.rows; r += warps) {
    const T *xr = p.x + r * p.ldx;
    const ElementLoader<T> el{p, r};
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t g0 = g * p.group;
      float mean = 0.0f;
      if (p.layer) {
        float s = 0.0f;
        for (int64_t jj = lane; jj < p.group; jj += 32)
          s += toF<T>(xr[g0 + jj]);
        mean = warpSum(s) * invGroup;
      }
      float v = 0.0f;
      for (int64_t jj = lane; jj < p.group; jj += 32) {
        const float d = toF<T>(xr[g0 + jj]) - mean;
        v += d * d;
      }
      const float rstd = 1.0f / sqrtf(warpSum(v) * invGroup + p.eps);
      if (stats != nullptr && lane == 0) {
        stats[(r * groups + g) * 2] = mean;
        stats[(r * groups + g) * 2 + 1] = rstd;
      }
      if (dX == nullptr && dGate == nullptr)
        continue;
      float sumD = 0.0f, sumDX = 0.0f;
      for (int64_t jj = lane; jj < p.group; jj += 32) {
        const Chain c = el.at(g0 + jj, jj, mean, rstd);
        if (dGate != nullptr)
          dGate[r * lddg + g0 + jj] = fromF<T>(c.dGate);
        const float w = p.weight != nullptr ? toF<T>(p.weight[jj]) : 1.0f;
        const float dxh = c.dy1 * w;
        sumD += dxh;
        sumDX += dxh * c.xh;
      }
      if (dX == nullptr)
        continue;
      // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)); RMSNorm keeps
      // the mean of dx̂.
      const float m1 = p.layer ? warpSum(sumD) * invGroup : 0.0f;
      const float m2 = warpSum(sumDX) * invGroup;
      for (int64_t jj = lane; jj < p.group; jj += 32) {
        const Chain c = el.at(g0 + jj, jj, mean, rstd);
        const float w = p.weight != nullptr ? toF<T>(p.weight[jj]) : 1.0f;
        dX[r * lddx + g0 + jj] = fromF<T>(rstd * (c.dy1 * w - m1 - c.xh * m2));
      }
    }
  }
}

/// Pass 2: thread per column, block.x = one chunk of rows, block.y = a
/// strip of kThreads columns. Writes the chunk's partial sums.
template <typename T>
__global__ void normColumnKernel(NormParams<T> p, const float *stats, Chunking ck, float *shiftPart,
                                 float *scalePart, float *weightPart, float *biasPart) {
  const int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= p.cols)
    return;
  const int64_t chunk = blockIdx.x;
  const int64_t seg = chunk / ck.chunksPerSegment, inSeg = chunk % ck.chunksPerSegment;
  const int64_t r0 = seg * ck.segment + inSeg * ck.chunkRows;
  const int64_t r1 = min((seg + 1) * ck.segment, r0 + ck.chunkRows);
  const int64_t groups = p.cols / p.group, g = j / p.group, jj = j - g * p.group;
  float accShift = 0.0f, accScale = 0.0f, accW = 0.0f, accB = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    const float mean = stats[(r * groups + g) * 2], rstd = stats[(r * groups + g) * 2 + 1];
    const Chain c = ElementLoader<T>{p, r}.at(j, jj, mean, rstd);
    accShift += c.dy2;
    accScale += c.dy2 * c.y1;
    accW += c.dy1 * c.xh;
    accB += c.dy1;
  }
  const int64_t at = chunk * p.cols + j;
  if (shiftPart != nullptr)
    shiftPart[at] = accShift;
  if (scalePart != nullptr)
    scalePart[at] = accScale;
  if (weightPart != nullptr)
    weightPart[at] = accW;
  if (biasPart != nullptr)
    biasPart[at] = accB;
}

/// Pass 3a: dShift/dScale[seg][j] = Σ over the segment's chunks in order.
template <typename T>
__global__ void normSampleSumKernel(const float *shiftPart, const float *scalePart, Chunking ck,
                                    int64_t cols, T *dShift, int64_t lds, T *dScale, int64_t ldc) {
  const int64_t total = ck.segments * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t seg = i / cols, j = i - seg * cols;
    float s = 0.0f, c = 0.0f;
    for (int64_t k = seg * ck.chunksPerSegment; k < (seg + 1) * ck.chunksPerSegment; ++k) {
      if (shiftPart != nullptr)
        s += shiftPart[k * cols + j];
      if (scalePart != nullptr)
        c += scalePart[k * cols + j];
    }
    if (dShift != nullptr)
      dShift[seg * lds + j] = fromF<T>(s);
    if (dScale != nullptr)
      dScale[seg * ldc + j] = fromF<T>(c);
  }
}

/// Pass 3b: dWeight/dBias[jj] = Σ over chunks, then groups, in order.
template <typename T>
__global__ void normAffineSumKernel(const float *weightPart, const float *biasPart, int64_t chunks,
                                    int64_t cols, int64_t group, T *dWeight, T *dBias) {
  const int64_t jj = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (jj >= group)
    return;
  float w = 0.0f, b = 0.0f;
  for (int64_t k = 0; k < chunks; ++k)
    for (int64_t g0 = 0; g0 < cols; g0 += group) {
      if (weightPart != nullptr)
        w += weightPart[k * cols + g0 + jj];
      if (biasPart != nullptr)
        b += biasPart[k * cols + g0 + jj];
    }
  if (dWeight != nullptr)
    dWeight[jj] = fromF<T>(w);
  if (dBias != nullptr)
    dBias[jj] = fromF<T>(b);
}

/// The chunking the column pass uses: per sample when shift/scale
/// gradients are wanted, over all rows otherwise.
Chunking chunkingFor(int64_t rows, int64_t rowsPerSample, bool perSample) {
  return chunking(rows, perSample ? rowsPerSample : rows);
}

} // namespace

size_t normBackwardWorkspaceBytes(int64_t rows, int64_t cols, int64_t group, int64_t rowsPerSample,
                                  DType dtype) {
  (void)dtype;
  if (rows <= 0 || cols <= 0 || group <= 0 || cols % group != 0)
    return 0;
  int64_t chunks = chunkingFor(rows, rows, false).chunks;
  if (rowsPerSample >= 1 && rows % rowsPerSample == 0)
    chunks = std::max(chunks, chunkingFor(rows, rowsPerSample, true).chunks);
  return layoutFor(rows, cols, cols / group, chunks).total;
}

void normBackward(Stream stream, DType dtype, DConstMat x, const NormArgs &args, DConstMat dOut,
                  const NormGrads &grads, Workspace ws) {
  const char *kernel = "normBackward";
  const int64_t rows = x.rows, cols = x.cols, group = args.group;
  checkDView(kernel, "x", x, rows, cols);
  checkDView(kernel, "dOut", dOut, rows, cols);
  checkDPositive(kernel, "group", group);
  if (cols % group != 0)
    fail(kernel, ": group ", group, " does not divide the ", cols, " columns");
  if (args.kind != NormKind::Layer && args.kind != NormKind::Rms)
    fail(kernel, ": unknown norm kind ", static_cast<int32_t>(args.kind));
  if (!(args.eps >= 0.0f))
    fail(kernel, ": eps must be non-negative, got ", args.eps);
  const bool hasShift = !args.shift.empty(), hasScale = !args.scale.empty();
  const bool hasGate = !args.siluGate.empty();
  if (hasShift)
    checkDPerSample(kernel, "shift", args.shift, rows, args.rowsPerSample, cols);
  if (hasScale)
    checkDPerSample(kernel, "scale", args.scale, rows, args.rowsPerSample, cols);
  if (hasGate)
    checkDView(kernel, "siluGate", args.siluGate, rows, cols);
  const bool wantX = grads.dX.data != nullptr, wantShift = grads.dShift.data != nullptr;
  const bool wantScale = grads.dScale.data != nullptr, wantGate = grads.dSiluGate.data != nullptr;
  const bool wantW = grads.dWeight != nullptr, wantB = grads.dBias != nullptr;
  if (wantX)
    checkDView(kernel, "dX", grads.dX, rows, cols);
  if (wantGate) {
    if (!hasGate)
      fail(kernel, ": dSiluGate is wanted but the norm has no SiLU gate");
    checkDView(kernel, "dSiluGate", grads.dSiluGate, rows, cols);
  }
  const bool perSample = wantShift || wantScale;
  if (perSample) {
    if (args.rowsPerSample < 1 || rows % args.rowsPerSample != 0)
      fail(kernel, ": ", rows, " rows are not a whole number of samples of ", args.rowsPerSample,
           " rows");
    if (wantShift)
      checkDPerSample(kernel, "dShift", grads.dShift, rows, args.rowsPerSample, cols);
    if (wantScale)
      checkDPerSample(kernel, "dScale", grads.dScale, rows, args.rowsPerSample, cols);
  }
  const size_t es = dtypeSize(dtype);
  if (wantX && (overlapsD(grads.dX, x, es) || overlapsD(grads.dX, dOut, es)))
    fail(kernel, ": dX overlaps x or dOut");
  if (rows == 0 || cols == 0)
    return;

  const bool wantColumns = perSample || wantW || wantB;
  const int64_t groups = cols / group;
  const Chunking ck = chunkingFor(rows, args.rowsPerSample, perSample);
  const Layout lay = layoutFor(rows, cols, groups, wantColumns ? ck.chunks : 0);
  if (wantColumns && (ws.data == nullptr || ws.bytes < lay.total))
    fail(kernel, ": workspace of ", ws.bytes, " bytes is too small, ", lay.total,
         " bytes needed");
  if (wantColumns && static_cast<int64_t>(ck.chunks) > 0x7fffffff)
    fail(kernel, ": ", ck.chunks, " row chunks exceed one grid dimension");
  if (wantColumns && (cols + kThreads - 1) / kThreads > 65535)
    fail(kernel, ": ", cols, " columns exceed the column grid of the parameter pass");

  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t s = native(stream);
    NormParams<T> p;
    p.x = static_cast<const T *>(x.data);
    p.ldx = x.ld;
    p.dOut = static_cast<const T *>(dOut.data);
    p.ldd = dOut.ld;
    p.weight = static_cast<const T *>(args.weight);
    p.bias = static_cast<const T *>(args.bias);
    p.shift = hasShift ? static_cast<const T *>(args.shift.data) : nullptr;
    p.lds = args.shift.ld;
    p.scale = hasScale ? static_cast<const T *>(args.scale.data) : nullptr;
    p.ldc = args.scale.ld;
    p.gate = hasGate ? static_cast<const T *>(args.siluGate.data) : nullptr;
    p.ldg = args.siluGate.ld;
    p.rows = rows;
    p.cols = cols;
    p.group = group;
    p.rowsPerSample = (hasShift || hasScale || perSample) ? args.rowsPerSample : 1;
    p.eps = args.eps;
    p.layer = args.kind == NormKind::Layer;

    uint8_t *base = static_cast<uint8_t *>(ws.data);
    float *stats = wantColumns ? reinterpret_cast<float *>(base) : nullptr;
    float *planes[4] = {nullptr, nullptr, nullptr, nullptr};
    if (wantColumns) {
      const size_t planeBytes = alignUp(lay.planeFloats * sizeof(float), 256);
      for (int q = 0; q < 4; ++q)
        planes[q] = reinterpret_cast<float *>(base + lay.statsBytes + q * planeBytes);
    }
    if (wantX || wantGate || wantColumns) {
      const unsigned blocks = gridStrideBlocks(rows, kThreads / 32);
      normRowKernel<T><<<blocks, kThreads, 0, s>>>(
          p, static_cast<T *>(grads.dX.data), grads.dX.ld, static_cast<T *>(grads.dSiluGate.data),
          grads.dSiluGate.ld, stats);
      checkLaunch(kernel);
    }
    if (!wantColumns)
      return;
    float *shiftPart = wantShift ? planes[0] : nullptr, *scalePart = wantScale ? planes[1] : nullptr;
    float *weightPart = wantW ? planes[2] : nullptr, *biasPart = wantB ? planes[3] : nullptr;
    const dim3 grid(static_cast<unsigned>(ck.chunks),
                    static_cast<unsigned>((cols + kThreads - 1) / kThreads));
    normColumnKernel<T><<<grid, kThreads, 0, s>>>(p, stats, ck, shiftPart, scalePart, weightPart,
                                                  biasPart);
    checkLaunch(kernel);
    if (perSample) {
      normSampleSumKernel<T><<<gridStrideBlocks(ck.segments * cols, kThreads), kThreads, 0, s>>>(
          shiftPart, scalePart, ck, cols, static_cast<T *>(grads.dShift.data), grads.dShift.ld,
          static_cast<T *>(grads.dScale.data), grads.dScale.ld);
      checkLaunch(kernel);
    }
    if (wantW || wantB) {
      normAffineSumKernel<T><<<blocksFor(group, kThreads), kThreads, 0, s>>>(
          weightPart, biasPart, ck.chunks, cols, group, static_cast<T *>(grads.dWeight),
          static_cast<T *>(grads.dBias));
      checkLaunch(kernel);
    }
  });
}

} // namespace diffrt::cuda
