//===- GradNorm.cu - backward of the fused LayerNorm / RMSNorm ------------===//
//
// The vector-Jacobian product of norm() with all its fused parts (affine
// weight and bias, adaLN shift/scale, SiLU output gate), the GPU counterpart
// of runtime/cpu/GradNorm.cpp.
//
// Fused path (a group is the whole row, vectorisable views, the rows fit a
// block's shared memory: the adaLN LayerNorms of DiT), two launches:
//
//   1. A block of 8 warps per chunk of at most 32 rows of one segment (a
//      sample when shift/scale gradients are wanted, all rows otherwise),
//      walked in sub-chunks of 8 rows through a two-stage cp.async
//      pipeline: the next sub-chunk's x and dOut rows land in shared memory
//      while a warp per row of the current one holds the row's 16-byte
//      vectors, so the statistics (two-pass variance), the two Jacobian
//      means and dX (and dSiluGate) come from one read of the row. Then a
//      thread per pair of columns adds the parameter terms (shift, scale,
//      weight, bias) over the sub-chunk's rows to the chunk's f32 sums in
//      shared memory; the block writes them as the chunk's partial row.
//      x and dOut are thus read from global memory once.
//   2. Reduction of the chunk partials in chunk order (pass 3 below).
//
// Generic path (groups narrower than the row, unaligned views, rows too
// long for the tile or tiles over the register budget), three launches:
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
//      one thread per column walks the same chunks as the fused path,
//      recomputes the chain from the stored statistics and writes its f32
//      partial sums (shift, scale, weight, bias terms) to the workspace.
//      Threads of a warp read consecutive columns of a row, so the reads
//      are coalesced.
//   3. Reduction of the chunk partials in chunk order (and, for the affine
//      weight and bias, over the groups of a row in group order).
//
// Every sum is taken in an order fixed by the shape alone, so the results
// are reproducible bit for bit, without float atomics. Accumulation is in
// f32 (the CPU reference uses double; the difference is within float
// roundoff for the tests' shapes). Both paths share the chunking, so one
// workspace layout serves both.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "Common.cuh"

#include <algorithm>

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;
/// Rows of a chunk: the rows one partial row of the parameter sums covers.
/// The fused path walks a chunk in sub-chunks of kSubRows rows, one per
/// warp of its block.
constexpr int64_t kChunkRows = 32;
constexpr int kSubRows = 8;

/// The shape-dependent blocking of the column pass.
struct Chunking {
  int64_t segment = 0, chunkRows = 0, chunksPerSegment = 0, segments = 0, chunks = 0;
};
Chunking chunking(int64_t rows, int64_t segment, int64_t maxChunkRows = kChunkRows) {
  Chunking c;
  c.segment = segment;
  c.chunkRows = std::min(segment, maxChunkRows);
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
/// Two warp sums with their shuffles interleaved.
__device__ __forceinline__ void warpSum2(float &a, float &b) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ta = __shfl_xor_sync(0xffffffffu, a, o), tb = __shfl_xor_sync(0xffffffffu, b, o);
    a += ta;
    b += tb;
  }
}

/// Pass 1: one warp per row (grid-stride over rows).
template <typename T>
__global__ void normRowKernel(NormParams<T> p, T *dX, int64_t lddx, const T *addend, int64_t ldadd, T *dGate,
                              int64_t lddg, float *stats) {
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
        const float plus = addend != nullptr ? toF<T>(addend[r * ldadd + g0 + jj]) : 0.0f;
        dX[r * lddx + g0 + jj] = fromF<T>(rstd * (c.dy1 * w - m1 - c.xh * m2) + plus);
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

/// The fused path's outputs: dX and dSiluGate (null: not wanted) and the
/// chunk partial planes of the four parameter sums (null: not wanted).
template <typename T> struct FusedOut {
  T *dX;
  int64_t lddx;
  /// Added to dX (null: nothing), read just before dX's same element.
  const T *addend;
  int64_t ldadd;
  T *dGate;
  int64_t lddg;
  float *part[4]; // shift, scale, weight, bias terms
};

constexpr int kFusedWarps = 8;
constexpr int kFusedThreads = kFusedWarps * 32;
static_assert(kSubRows == kFusedWarps, "the fused kernel's warps own one row of a sub-chunk each");

/// kVec<T> operand values at p (16-byte aligned), or `absent` for a null
/// operand.
template <typename T>
__device__ __forceinline__ void loadOr(const T *p, float (&f)[kVec<T>], float absent) {
  if (p != nullptr) {
    loadVec<T>(p, f);
  } else {
#pragma unroll
    for (int e = 0; e < kVec<T>; ++e)
      f[e] = absent;
  }
}

/// Two consecutive values at p (aligned to two elements).
template <typename T> __device__ __forceinline__ void loadPair(const T *p, float (&f)[2]) {
  if constexpr (sizeof(T) == 4) {
    const float2 v = *reinterpret_cast<const float2 *>(p);
    f[0] = v.x;
    f[1] = v.y;
  } else {
    unpackWord<T>(*reinterpret_cast<const uint32_t *>(p), f[0], f[1]);
  }
}
/// loadPair, or `absent` for a null operand.
template <typename T> __device__ __forceinline__ void loadPairOr(const T *p, float (&f)[2], float absent) {
  if (p == nullptr)
    f[0] = f[1] = absent;
  else
    loadPair<T>(p, f);
}

/// Row arrays a pipeline stage of the fused kernel holds: x and dOut, and
/// the SiLU gate.
constexpr int stagedArrays(bool gate) { return gate ? 3 : 2; }

/// Shared bytes of the fused kernel for rows of `cols` values: two stages of
/// kSubRows staged rows, the sub-chunk's dX addend rows, NQ f32 parameter
/// sums per column, then (mean, 1/std) per row of a sub-chunk.
template <typename T> constexpr size_t fusedSmemBytes(int64_t cols, bool gate, bool addend, int nq) {
  return static_cast<size_t>((2 * stagedArrays(gate) + (addend ? 1 : 0)) * kSubRows * cols) * sizeof(T) +
         static_cast<size_t>(nq * cols) * sizeof(float) + 2 * kSubRows * sizeof(float);
}

/// The row phase of a Plain norm with the row in registers: lane l holds
/// x (packed) and dx̂ = dOut·(1 + scale) (f32) of the row's vectors l,
/// l + 32, ... (at most V), read from shared memory (and the scale from
/// global memory) once; the statistics, the two Jacobian means and dX follow from
/// registers, where the generic loops re-read and re-unpack the row for
/// each of their three passes (DiT-XL/2's norm backward was bound by issuing
/// those instructions). Same sums in the same order as the generic path.
template <typename T, int V>
__device__ __forceinline__ void plainRow(const T *xr, const T *dr, const T *scr, const T *addRow,
                                         T *dxRow, int units, int lane, float invCols, float eps,
                                         bool layer, float &mean, float &rstd) {
  constexpr int N = kVec<T>;
  // x stays packed (exact, half the registers of f32 for 16-bit rows: the
  // f32 tile spilled at five vectors a lane); dx̂ is f32.
  uint4 xp[V];
  float dxh[V][N];
  float sum = 0.0f, sumD = 0.0f;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int u = lane + 32 * v;
    if (u < units) {
      float sc[N], xf[N];
      xp[v] = *reinterpret_cast<const uint4 *>(xr + u * N);
      loadVec<T>(dr + u * N, dxh[v]);
      loadVec<T>(scr + u * N, sc);
      unpackVec<T>(xp[v], xf);
#pragma unroll
      for (int e = 0; e < N; ++e) {
        dxh[v][e] *= 1.0f + sc[e];
        sum += xf[e];
        sumD += dxh[v][e];
      }
    }
  }
  warpSum2(sum, sumD);
  mean = layer ? sum * invCols : 0.0f;
  float sq = 0.0f, sumDC = 0.0f;
#pragma unroll
  for (int v = 0; v < V; ++v)
    if (lane + 32 * v < units) {
      float xf[N];
      unpackVec<T>(xp[v], xf);
#pragma unroll
      for (int e = 0; e < N; ++e) {
        const float xc = xf[e] - mean;
        sq += xc * xc;
        sumDC += dxh[v][e] * xc;
      }
    }
  warpSum2(sq, sumDC);
  rstd = 1.0f / sqrtf(sq * invCols + eps);
  const float m1 = layer ? sumD * invCols : 0.0f;
  const float m2 = rstd * sumDC * invCols;
  if (dxRow == nullptr)
    return;
  if (addRow != nullptr)
    cpAsyncWait<1>(); // this lane's addend vectors (see normFusedKernel)
  // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)).
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int u = lane + 32 * v;
    if (u < units) {
      float out[N], xf[N];
      unpackVec<T>(xp[v], xf);
#pragma unroll
      for (int e = 0; e < N; ++e) {
        const float xh = (xf[e] - mean) * rstd;
        out[e] = rstd * (dxh[v][e] - m1 - xh * m2);
      }
      if (addRow != nullptr) {
        float plus[N];
        loadVec<T>(addRow + u * N, plus);
#pragma unroll
        for (int e = 0; e < N; ++e)
          out[e] += plus[e];
      }
      storeVec<T>(dxRow + u * N, out);
    }
  }
}

/// The fused path for rows that are one group and vectorisable views. A
/// block of kFusedWarps warps owns one chunk of at most kChunkRows rows
/// (the column pass's chunking) and walks it in sub-chunks of kSubRows rows
/// through a two-stage shared-memory pipeline:
///   1. the next sub-chunk's x and dOut (and SiLU gate) rows are copied to
///      shared memory with cp.async while the current one is worked on;
///      each warp also copies its own row's dX addend, lane by lane, so it
///      is in shared memory (and waited for by its lane alone) when dX is
///      written;
///   2. a warp per row of the sub-chunk: lane l walks the row's 16-byte
///      vectors l, l + 32, ... in shared memory for the statistics (two-pass
///      variance), the two Jacobian means and dX (and dSiluGate); the row's
///      (mean, 1/std) go to shared memory;
///   3. (NQ > 0) a thread per pair of columns walks the sub-chunk's rows in
///      shared memory and adds the NQ parameter terms (0: none, 2: shift
///      and scale, 4: also weight and bias) in row order to the chunk's f32
///      sums in shared memory, which the block writes as the chunk's
///      partial rows at the end; pass 3 adds those in chunk order.
/// x and dOut are read from global memory once, and the copies of one
/// sub-chunk overlap the work on the previous one, which a block staging its
/// whole chunk at once could not do (it measured 1.1 TB/s on DiT-XL/2's
/// rows). A chunk of 32 rows (rather than one block per sub-chunk) halves
/// the partial rows pass 3 reads; two blocks share a multiprocessor when
/// their stages fit (16-bit rows up to about 1200 values with an addend).
template <typename T, int NQ, bool Gate, int PlainV>
__global__ void __launch_bounds__(kFusedThreads, 2)
    normFusedKernel(NormParams<T> p, FusedOut<T> o, Chunking ck) {
  constexpr int N = kVec<T>;
  // A Plain norm (DiT's adaLN: a scale, no affine weight or bias, no gate;
  // PlainV > 0, its rows at most PlainV vectors a lane) holds its row in
  // registers (plainRow), and its column pass knows at compile time that
  // weight and bias are absent.
  constexpr bool Plain = PlainV > 0;
  static_assert(!(Plain && Gate), "a Plain norm has no gate");
  const T *weight = Plain ? nullptr : p.weight;
  const T *bias = Plain ? nullptr : p.bias;
  extern __shared__ uint4 fusedSmem[];
  const int64_t cols = p.cols;
  const int units = static_cast<int>(cols / N);
  // Shared-memory offsets in 32-bit arithmetic (a fused row fits a block's
  // shared memory, so cols is far below 2^31).
  const int colsI = static_cast<int>(cols);
  const int64_t stageElems = stagedArrays(Gate) * kSubRows * cols;
  T *stages = reinterpret_cast<T *>(fusedSmem);
  T *sAdd = stages + 2 * stageElems;
  const bool addend = o.addend != nullptr && o.dX != nullptr;
  float *sAcc = reinterpret_cast<float *>(sAdd + (addend ? kSubRows * cols : 0));
  float *sStats = sAcc + NQ * cols;

  const int64_t chunk = blockIdx.x;
  const int64_t seg = chunk / ck.chunksPerSegment, inSeg = chunk - seg * ck.chunksPerSegment;
  const int64_t r0 = seg * ck.segment + inSeg * ck.chunkRows;
  const int64_t r1 = min((seg + 1) * ck.segment, r0 + ck.chunkRows);
  const int subs = static_cast<int>((r1 - r0 + kSubRows - 1) / kSubRows);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // x, dOut (and gate) rows of sub-chunk `sub` into stage sub & 1.
  auto issue = [&](int sub) {
    T *st = stages + (sub & 1) * stageElems;
    const int64_t base = r0 + static_cast<int64_t>(sub) * kSubRows;
    const int n = static_cast<int>(min(static_cast<int64_t>(kSubRows), r1 - base));
    // A warp per row (kSubRows == kFusedWarps): no division per vector.
    if (warp < n) {
      const int64_t r = base + warp;
      const T *xg = p.x + r * p.ldx, *dg = p.dOut + r * p.ldd;
      T *sxr = st + warp * colsI, *sdr = st + (kSubRows + warp) * colsI;
      for (int u = lane; u < units; u += 32) {
        cpAsync16(sxr + u * N, xg + u * N);
        cpAsync16(sdr + u * N, dg + u * N);
        if constexpr (Gate)
          cpAsync16(st + (2 * kSubRows + warp) * colsI + u * N, p.gate + r * p.ldg + u * N);
      }
    }
  };
  for (int j = tid; j < NQ * cols; j += kFusedThreads)
    sAcc[j] = 0.0f;
  issue(0);
  cpAsyncCommit();

  const float invCols = 1.0f / static_cast<float>(cols);
  for (int sub = 0; sub < subs; ++sub) {
    const int64_t base = r0 + static_cast<int64_t>(sub) * kSubRows;
    const int n = static_cast<int>(min(static_cast<int64_t>(kSubRows), r1 - base));
    const bool ownRow = warp < n;
    // Commit order per thread: ..., X(sub) [previous iteration], A(sub),
    // X(sub + 1). Every thread commits both groups, empty or not, so the
    // counts below hold in every lane.
    if (addend && ownRow)
      for (int u = lane; u < units; u += 32)
        cpAsync16(sAdd + warp * cols + u * N, o.addend + (base + warp) * o.ldadd + u * N);
    cpAsyncCommit();
    if (sub + 1 < subs)
      issue(sub + 1);
    cpAsyncCommit();
    cpAsyncWait<2>(); // X(sub) has landed
    __syncthreads();

    const T *st = stages + (sub & 1) * stageElems;
    if (ownRow) {
      const int64_t r = base + warp;
      const T *xr = st + warp * cols, *dr = st + (kSubRows + warp) * cols;
      const T *gr = st + (2 * kSubRows + warp) * cols;
      const int64_t smp = r / p.rowsPerSample;
      const T *scr = p.scale != nullptr ? p.scale + smp * p.ldc : nullptr;
      const T *shr = p.shift != nullptr ? p.shift + smp * p.lds : nullptr;
      float mean, rstd;
      if constexpr (Plain) {
        plainRow<T, PlainV>(xr, dr, scr, addend ? sAdd + warp * cols : nullptr,
                            o.dX != nullptr ? o.dX + r * o.lddx : nullptr, units, lane, invCols,
                            p.eps, p.layer, mean, rstd);
        if (lane == 0) {
          sStats[2 * warp] = mean;
          sStats[2 * warp + 1] = rstd;
        }
      } else {
        float m1, m2;
        if constexpr (!Gate) {
          // Without a gate dx̂ = dOut·(1 + scale)·w does not depend on the
          // statistics, so its two sums ride along with them: Σx and Σdx̂,
          // then Σ(x − mean)² and Σdx̂·(x − mean), each pair in one pass and
          // one reduction. Both second sums are taken about the mean, so
          // neither the variance nor mean(dx̂ ⊙ x̂) cancels.
          // f(x, dx̂) for each of the lane's vectors of the row.
          auto eachVector = [&](auto &&f) {
            for (int u = lane; u < units; u += 32) {
              const int64_t pos = static_cast<int64_t>(u) * N;
              float xf[N], dxh[N], w[N], sc[N];
              loadVec<T>(xr + pos, xf);
              loadVec<T>(dr + pos, dxh);
              loadOr<T>(weight != nullptr ? weight + pos : nullptr, w, 1.0f);
              loadOr<T>(scr != nullptr ? scr + pos : nullptr, sc, 0.0f);
  #pragma unroll
              for (int e = 0; e < N; ++e)
                dxh[e] = dxh[e] * (1.0f + sc[e]) * w[e];
              f(xf, dxh);
            }
          };
          float sum = 0.0f, sumD = 0.0f;
          eachVector([&](const float(&xf)[N], const float(&dxh)[N]) {
  #pragma unroll
            for (int e = 0; e < N; ++e) {
              sum += xf[e];
              sumD += dxh[e];
            }
          });
          warpSum2(sum, sumD);
          mean = p.layer ? sum * invCols : 0.0f;
          float sq = 0.0f, sumDC = 0.0f;
          eachVector([&](const float(&xf)[N], const float(&dxh)[N]) {
  #pragma unroll
            for (int e = 0; e < N; ++e) {
              const float xc = xf[e] - mean;
              sq += xc * xc;
              sumDC += dxh[e] * xc;
            }
          });
          warpSum2(sq, sumDC);
          rstd = 1.0f / sqrtf(sq * invCols + p.eps);
          m1 = p.layer ? sumD * invCols : 0.0f;
          m2 = rstd * sumDC * invCols;
        } else {
          float sum = 0.0f;
          for (int u = lane; u < units; u += 32) {
            float f[N];
            loadVec<T>(xr + u * N, f);
  #pragma unroll
            for (int e = 0; e < N; ++e)
              sum += f[e];
          }
          mean = p.layer ? warpSum(sum) * invCols : 0.0f;
          float sq = 0.0f;
          for (int u = lane; u < units; u += 32) {
            float f[N];
            loadVec<T>(xr + u * N, f);
  #pragma unroll
            for (int e = 0; e < N; ++e) {
              const float d = f[e] - mean;
              sq += d * d;
            }
          }
          rstd = 1.0f / sqrtf(warpSum(sq) * invCols + p.eps);
          // With a gate dx̂ depends on the statistics through silu's argument
          // chain: a third pass, which also writes dSiluGate.
          float sumD = 0.0f, sumDX = 0.0f;
          for (int u = lane; u < units; u += 32) {
            const int64_t pos = static_cast<int64_t>(u) * N;
            float xf[N], df[N], w[N], b[N], sc[N], sh[N], gv[N], dg[N];
            loadVec<T>(xr + pos, xf);
            loadVec<T>(dr + pos, df);
            loadOr<T>(weight != nullptr ? weight + pos : nullptr, w, 1.0f);
            loadOr<T>(scr != nullptr ? scr + pos : nullptr, sc, 0.0f);
            loadOr<T>(bias != nullptr ? bias + pos : nullptr, b, 0.0f);
            loadOr<T>(shr != nullptr ? shr + pos : nullptr, sh, 0.0f);
            loadVec<T>(gr + pos, gv);
  #pragma unroll
            for (int e = 0; e < N; ++e) {
              const Chain c = chainAt(xf[e], mean, rstd, w[e], b[e], df[e], sc[e], sh[e], true, gv[e]);
              const float dxh = c.dy1 * w[e];
              sumD += dxh;
              sumDX += dxh * c.xh;
              dg[e] = c.dGate;
            }
            if (o.dGate != nullptr)
              storeVec<T>(o.dGate + r * o.lddg + pos, dg);
          }
          warpSum2(sumD, sumDX);
          m1 = p.layer ? sumD * invCols : 0.0f;
          m2 = sumDX * invCols;
        }
        if (lane == 0) {
          sStats[2 * warp] = mean;
          sStats[2 * warp + 1] = rstd;
        }
        if (o.dX != nullptr) {
          cpAsyncWait<1>(); // this lane's A(sub): the addend vectors it reads below
          // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), as in pass 1 of
          // the generic path.
          for (int u = lane; u < units; u += 32) {
            const int64_t pos = static_cast<int64_t>(u) * N;
            float xf[N], df[N], w[N], sc[N], gv[N], out[N];
            loadVec<T>(xr + pos, xf);
            loadVec<T>(dr + pos, df);
            loadOr<T>(weight != nullptr ? weight + pos : nullptr, w, 1.0f);
            loadOr<T>(scr != nullptr ? scr + pos : nullptr, sc, 0.0f);
            if constexpr (Gate)
              loadVec<T>(gr + pos, gv);
  #pragma unroll
            for (int e = 0; e < N; ++e) {
              const Chain c = chainAt(xf[e], mean, rstd, w[e], 0.0f, df[e], sc[e], 0.0f, Gate,
                                      Gate ? gv[e] : 0.0f);
              out[e] = rstd * (c.dy1 * w[e] - m1 - c.xh * m2);
            }
            if (addend) {
              float plus[N];
              loadVec<T>(sAdd + warp * cols + pos, plus);
  #pragma unroll
              for (int e = 0; e < N; ++e)
                out[e] += plus[e];
            }
            storeVec<T>(o.dX + r * o.lddx + pos, out);
          }
        }
      }
    }
    // The statistics are visible, and (NQ == 0) every read of this stage is
    // done before the next iteration refills it.
    __syncthreads();

    if constexpr (NQ > 0) {
      // A chunk lies in one sample when shift/scale sums are wanted (the
      // chunking is per sample); with weight and bias sums alone it may
      // span samples, and the row's own shift and scale are read.
      const bool oneSample = base / p.rowsPerSample == (base + n - 1) / p.rowsPerSample;
      const T *sx = st, *sd = st + kSubRows * cols, *sg = st + 2 * kSubRows * cols;
      for (int j = 2 * tid; j < colsI; j += 2 * kFusedThreads) {
        float w[2], b[2], sc[2], sh[2];
        loadPairOr<T>(weight != nullptr ? weight + j : nullptr, w, 1.0f);
        loadPairOr<T>(bias != nullptr ? bias + j : nullptr, b, 0.0f);
        float acc[NQ][2];
#pragma unroll
        for (int q = 0; q < NQ; ++q)
          acc[q][0] = acc[q][1] = 0.0f;
        for (int rr = 0; rr < n; ++rr) {
          if (rr == 0 || !oneSample) {
            const int64_t smp = (base + rr) / p.rowsPerSample;
            loadPairOr<T>(Plain || p.scale != nullptr ? p.scale + smp * p.ldc + j : nullptr, sc, 0.0f);
            loadPairOr<T>(p.shift != nullptr ? p.shift + smp * p.lds + j : nullptr, sh, 0.0f);
          }
          const float mean = sStats[2 * rr], rstd = sStats[2 * rr + 1];
          float xf[2], df[2], gv[2] = {0.0f, 0.0f};
          loadPair<T>(sx + rr * colsI + j, xf);
          loadPair<T>(sd + rr * colsI + j, df);
          if constexpr (Gate)
            loadPair<T>(sg + rr * colsI + j, gv);
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const Chain c = chainAt(xf[e], mean, rstd, w[e], b[e], df[e], sc[e], sh[e], Gate, gv[e]);
            acc[0][e] += c.dy2;
            acc[1][e] += c.dy2 * c.y1;
            if constexpr (NQ >= 4) {
              acc[2][e] += c.dy1 * c.xh;
              acc[3][e] += c.dy1;
            }
          }
        }
        // Each thread owns its columns of sAcc in every sub-chunk: no race.
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
          sAcc[q * colsI + j] += acc[q][0];
          sAcc[q * colsI + j + 1] += acc[q][1];
        }
      }
      __syncthreads(); // the stage and the statistics are free for the next sub-chunk
    }
  }

  if constexpr (NQ > 0) {
    for (int64_t j = tid; j < cols; j += kFusedThreads)
#pragma unroll
      for (int q = 0; q < NQ; ++q)
        if (o.part[q] != nullptr)
          o.part[q][chunk * cols + j] = sAcc[q * cols + j];
  }
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

/// The largest dynamic shared memory a block may ask for on sm_90.
constexpr size_t kMaxBlockSmem = 227u << 10;

template <typename T, int NQ, bool Gate, int PlainV>
void launchFused(const NormParams<T> &p, const FusedOut<T> &o, const Chunking &ck, cudaStream_t s) {
  allowSharedMemory<normFusedKernel<T, NQ, Gate, PlainV>>(kMaxBlockSmem, "normBackward (fused)");
  normFusedKernel<T, NQ, Gate, PlainV>
      <<<static_cast<unsigned>(ck.chunks), kFusedThreads,
         fusedSmemBytes<T>(p.cols, Gate, o.addend != nullptr && o.dX != nullptr, NQ), s>>>(p, o, ck);
  checkLaunch("normBackward");
}

/// Launches the fused path if a chunk's rows fit a block's shared memory
/// (16-bit rows of DiT's widths up to 1152 values with every part and two
/// blocks a multiprocessor; up to about 2400 values, 2000 with a SiLU gate,
/// at one). Returns false otherwise.
template <typename T, int NQ>
bool tryFused(const NormParams<T> &p, const FusedOut<T> &o, const Chunking &ck, cudaStream_t s) {
  const bool gate = p.gate != nullptr;
  if (fusedSmemBytes<T>(p.cols, gate, o.addend != nullptr && o.dX != nullptr, NQ) > kMaxBlockSmem)
    return false;
  const int64_t units = p.cols / kVec<T>;
  const bool plain = !gate && p.weight == nullptr && p.bias == nullptr && p.scale != nullptr;
  if (gate)
    launchFused<T, NQ, true, 0>(p, o, ck, s);
  else if (plain && units <= 32 * 3)
    launchFused<T, NQ, false, 3>(p, o, ck, s);
  else if (plain && units <= 32 * 5)
    launchFused<T, NQ, false, 5>(p, o, ck, s);
  else
    launchFused<T, NQ, false, 0>(p, o, ck, s);
  return true;
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
  const bool hasAddend = grads.dXAddend.data != nullptr;
  if (hasAddend) {
    if (!wantX)
      fail(kernel, ": an addend for dX, but dX is not wanted");
    checkDView(kernel, "dXAddend", grads.dXAddend, rows, cols);
    // Element i is read just before dX's element i is written: only an
    // exact alias is safe.
    const bool same = grads.dXAddend.data == grads.dX.data && grads.dXAddend.ld == grads.dX.ld;
    if (!same && overlapsD(grads.dX, grads.dXAddend, es))
      fail(kernel, ": dXAddend overlaps dX without being dX itself");
  }
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
    float *shiftPart = wantShift ? planes[0] : nullptr, *scalePart = wantScale ? planes[1] : nullptr;
    float *weightPart = wantW ? planes[2] : nullptr, *biasPart = wantB ? planes[3] : nullptr;
    auto finish = [&] {
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
    };
    if (!wantX && !wantGate && !wantColumns)
      return;

    // Rows of one group in vectorisable views: the fused path (one read of
    // x and dOut, no column pass).
    const size_t es = sizeof(T);
    const bool vec =
        groups == 1 && cols % kVec<T> == 0 && rows / kChunkRows < 0x7fffffff &&
        vectorizable(p.x, x.ld, cols, es) && vectorizable(p.dOut, dOut.ld, cols, es) &&
        vectorizable(grads.dX.data, grads.dX.ld, cols, es) &&
        vectorizable(grads.dXAddend.data, grads.dXAddend.ld, cols, es) &&
        vectorizable(grads.dSiluGate.data, grads.dSiluGate.ld, cols, es) &&
        vectorizable(p.shift, p.lds, cols, es) && vectorizable(p.scale, p.ldc, cols, es) &&
        vectorizable(p.gate, p.ldg, cols, es) && (p.weight == nullptr || aligned16(p.weight)) &&
        (p.bias == nullptr || aligned16(p.bias));
    if (vec) {
      const Chunking fck = wantColumns ? ck : chunking(rows, rows);
      FusedOut<T> o;
      o.dX = static_cast<T *>(grads.dX.data);
      o.lddx = grads.dX.ld;
      o.addend = static_cast<const T *>(grads.dXAddend.data);
      o.ldadd = grads.dXAddend.ld;
      o.dGate = static_cast<T *>(grads.dSiluGate.data);
      o.lddg = grads.dSiluGate.ld;
      o.part[0] = shiftPart;
      o.part[1] = scalePart;
      o.part[2] = weightPart;
      o.part[3] = biasPart;
      const bool fused = (wantW || wantB) ? tryFused<T, 4>(p, o, fck, s)
                         : perSample      ? tryFused<T, 2>(p, o, fck, s)
                                          : tryFused<T, 0>(p, o, fck, s);
      if (fused) {
        finish();
        return;
      }
    }

    {
      const unsigned blocks = gridStrideBlocks(rows, kThreads / 32);
      normRowKernel<T><<<blocks, kThreads, 0, s>>>(
          p, static_cast<T *>(grads.dX.data), grads.dX.ld, static_cast<const T *>(grads.dXAddend.data),
          grads.dXAddend.ld, static_cast<T *>(grads.dSiluGate.data), grads.dSiluGate.ld, stats);
      checkLaunch(kernel);
    }
    if (!wantColumns)
      return;
    const dim3 grid(static_cast<unsigned>(ck.chunks),
                    static_cast<unsigned>((cols + kThreads - 1) / kThreads));
    normColumnKernel<T><<<grid, kThreads, 0, s>>>(p, stats, ck, shiftPart, scalePart, weightPart,
                                                  biasPart);
    checkLaunch(kernel);
    finish();
  });
}

} // namespace diffrt::cuda
