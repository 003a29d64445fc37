//===- Norm.cu - fused LayerNorm / RMSNorm with modulation and gate -------===//
//
// One pass over each normalisation group (a row, or a contiguous slice of
// `group` columns of it: per-head q/k norm, GLA's RMSNorm-gate) computes
// the statistics and applies, in the order of cpu::norm, the affine weight
// and bias, the per-sample adaLN scale and shift and the SiLU output gate.
//
// A "team" of lanes owns one group: 8 lanes (short groups such as a 64-wide
// head), a warp (rows up to 1024 half values) or a whole block (longer
// rows), chosen so that a lane holds at most 4 vectors (8 for the longest
// rows). Each lane keeps its share of the group in registers as packed
// 16-byte words (unpacked to f32 where used, so a 16-bit row costs half the
// registers of its f32 image and more warps stay resident), so the two-pass
// statistics (mean, then the sum of squared deviations, both f32) cost no
// second read of memory; the reductions are
// xor-shuffles inside the warp and a shared-memory step across warps.
// Every team walks a contiguous range of groups with a trip count uniform
// across the grid, so that every lane of a warp takes part in each shuffle. Views whose pointers or
// leading dimensions are not 16-byte multiples, and groups too long for the
// register tile, go to a block-per-group kernel that re-reads the group from
// memory (L1/L2) for each pass.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

namespace diffrt::cuda {

namespace {

template <typename T> struct NormParams {
  const T *x;
  int64_t ldx;
  T *out;
  int64_t ldo;
  const T *weight, *bias;
  const T *shift;
  int64_t ldShift;
  const T *scale;
  int64_t ldScale;
  int64_t rowsPerSample;
  const T *gate;
  int64_t ldGate;
  int64_t groups;      // rows · groupsPerRow
  int64_t groupsPerRow;
  int64_t group;       // elements per group
  int64_t units;       // vectors per group (register path)
  float eps, invGroup;
  bool layer;
  // The residual form (normModulateKernel<..., true>): x is the update y,
  // and the row normalised is sum = residual + resGate[sample] ⊙ y.
  const T *residual;
  int64_t ldRes;
  const T *resGate;
  int64_t ldResGate;
  T *sum;
  int64_t ldSum;
};

/// Sum over a team of TEAM lanes. Teams up to a warp reduce with
/// xor-shuffles (all 32 lanes must call it); block teams add the per-warp
/// sums through `red` in a fixed order, so the result is deterministic and
/// identical in every thread.
template <int TEAM> __device__ __forceinline__ float teamSum(float v, float *red) {
  if constexpr (TEAM <= 32) {
#pragma unroll
    for (int o = TEAM / 2; o > 0; o >>= 1)
      v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
  } else {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
      v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); // the previous reduction's reads of `red` are done
    if ((threadIdx.x & 31) == 0)
      red[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < TEAM / 32; ++w)
      total += red[w];
    return total;
  }
}

/// The operand rows of group g, positioned at the group's first column (null
/// for absent operands). Divisions happen once per group, and only where
/// groups are narrower than a row or samples span several rows.
template <typename T> struct GroupRows {
  const T *x, *scale, *shift, *gate;
  T *out;
};

template <typename T>
__device__ __forceinline__ GroupRows<T> locate(const NormParams<T> &p, int64_t g) {
  int64_t r = g, col0 = 0;
  if (p.groupsPerRow != 1) {
    r = g / p.groupsPerRow;
    col0 = (g - r * p.groupsPerRow) * p.group;
  }
  const int64_t s = p.rowsPerSample == 1 ? r : r / p.rowsPerSample;
  GroupRows<T> rows;
  rows.x = p.x + r * p.ldx + col0;
  rows.out = p.out + r * p.ldo + col0;
  rows.scale = p.scale != nullptr ? p.scale + s * p.ldScale + col0 : nullptr;
  rows.shift = p.shift != nullptr ? p.shift + s * p.ldShift + col0 : nullptr;
  rows.gate = p.gate != nullptr ? p.gate + r * p.ldGate + col0 : nullptr;
  return rows;
}

/// Applies weight, bias, modulation and gate to the normalised values y of
/// the N elements at position `pos` of the group and stores them.
template <typename T, int N>
__device__ __forceinline__ void finishNorm(const NormParams<T> &p, const GroupRows<T> &rows,
                                           float (&y)[N], int64_t pos) {
  float t[N];
  if (p.weight != nullptr) {
    loadN<N>(p.weight + pos, t);
#pragma unroll
    for (int e = 0; e < N; ++e)
      y[e] *= t[e];
  }
  if (p.bias != nullptr) {
    loadN<N>(p.bias + pos, t);
#pragma unroll
    for (int e = 0; e < N; ++e)
      y[e] += t[e];
  }
  if (rows.scale != nullptr) {
    loadN<N>(rows.scale + pos, t);
#pragma unroll
    for (int e = 0; e < N; ++e)
      y[e] *= 1.0f + t[e];
  }
  if (rows.shift != nullptr) {
    loadN<N>(rows.shift + pos, t);
#pragma unroll
    for (int e = 0; e < N; ++e)
      y[e] += t[e];
  }
  if (rows.gate != nullptr) {
    loadN<N>(rows.gate + pos, t);
#pragma unroll
    for (int e = 0; e < N; ++e)
      y[e] *= siluPrecise(t[e]);
  }
  storeN<N>(rows.out + pos, y);
}

__device__ __forceinline__ void prefetchL1(const void *p) {
  asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}

/// Loads this lane's vectors of group g and asks L1 for the operands
/// finishNorm will read for them (per-sample shift and scale, per-row gate),
/// so that neither the group nor its epilogue operands are waited for when
/// the group's turn comes.
template <typename T, int TEAM, int V>
__device__ __forceinline__ void fetchGroup(const NormParams<T> &p, int64_t g, bool active,
                                           int lane, uint4 (&xv)[V]) {
  constexpr int N = kVec<T>;
  if (!active)
    return;
  const GroupRows<T> rows = locate(p, g);
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int64_t pos = static_cast<int64_t>(lane + v * TEAM) * N;
    if (pos < p.group) {
      xv[v] = *reinterpret_cast<const uint4 *>(rows.x + pos);
      if (rows.scale != nullptr)
        prefetchL1(rows.scale + pos);
      if (rows.shift != nullptr)
        prefetchL1(rows.shift + pos);
      if (rows.gate != nullptr)
        prefetchL1(rows.gate + pos);
    }
  }
}

/// Register-tile kernel: a team of TEAM lanes per group, lane l holding the
/// vectors l, l + TEAM, ... (at most V of them), so consecutive lanes read
/// consecutive 16-byte pieces. Teams up to 128 lanes fetch their next group
/// before reducing and writing the current one (software pipelining), which
/// keeps memory busy through the reductions and the epilogue of every group.
/// Threads of a register-tile block, and the blocks per multiprocessor the
/// register budget must allow: 768 resident threads (at most 85 registers
/// each) keep enough loads in flight for memory-bound rows without spilling
/// the register tile.
template <int TEAM> constexpr int normBlock() { return TEAM > 32 ? TEAM : 256; }
template <int TEAM> constexpr int normMinBlocks() {
  return 768 / normBlock<TEAM>() > 0 ? 768 / normBlock<TEAM>() : 1;
}

template <typename T, int TEAM, int V>
__global__ void __launch_bounds__(normBlock<TEAM>(), normMinBlocks<TEAM>())
    normKernel(NormParams<T> p) {
  constexpr int N = kVec<T>;
  constexpr bool kBlockTeam = TEAM > 32;
  __shared__ float red[kBlockTeam ? TEAM / 32 : 1];
  const int lane = kBlockTeam ? static_cast<int>(threadIdx.x) : static_cast<int>(threadIdx.x) % TEAM;

  // Each team owns a contiguous range of `per` groups: consecutive rows
  // mostly share their sample, so its shift/scale rows stay in L1 instead of
  // every team fetching them from L2 for every row (all resident teams
  // reading the same few per-sample rows make those L2 lines hot).
  int64_t team, teams;
  if constexpr (kBlockTeam) {
    team = blockIdx.x;
    teams = gridDim.x;
  } else {
    team = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / TEAM;
    teams = static_cast<int64_t>(gridDim.x) * blockDim.x / TEAM;
  }
  const int64_t per = (p.groups + teams - 1) / teams;
  const int64_t first = team * per;
  const int64_t last = first + per < p.groups ? first + per : p.groups;

  // Pipelining doubles the register tile; the widest teams (rows of 4K
  // values and more) already have many loads in flight per row and would
  // spill, so they fetch each group when they reach it.
  constexpr bool kPipelined = TEAM <= 128;
  uint4 xv[V]; // packed: the register tile of a 16-bit row is as small as its bytes
  int64_t g = first;
  bool active = g < last;
  if constexpr (kPipelined)
    fetchGroup<T, TEAM, V>(p, g, active, lane, xv);
  // `per` is the same for every thread, so every lane of a warp (block) runs
  // the same iterations and takes part in every shuffle and barrier.
  for (int64_t i = 0; i < per; ++i) {
    const int64_t gNext = g + 1;
    const bool activeNext = gNext < last;
    uint4 xn[kPipelined ? V : 1];
    if constexpr (kPipelined)
      fetchGroup<T, TEAM, V>(p, gNext, activeNext, lane, xn);
    else
      fetchGroup<T, TEAM, V>(p, g, active, lane, xv);

    float sum = 0.0f;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int64_t u = lane + v * TEAM;
      if (active && u < p.units) {
        float f[N];
        unpackVec<T>(xv[v], f);
#pragma unroll
        for (int e = 0; e < N; ++e)
          sum += f[e];
      }
    }
    float mean = 0.0f;
    if (p.layer)
      mean = teamSum<TEAM>(sum, red) * p.invGroup;
    float sq = 0.0f;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int64_t u = lane + v * TEAM;
      if (active && u < p.units) {
        float f[N];
        unpackVec<T>(xv[v], f);
#pragma unroll
        for (int e = 0; e < N; ++e) {
          const float d = f[e] - mean;
          sq += d * d;
        }
      }
    }
    const float var = teamSum<TEAM>(sq, red) * p.invGroup;
    const float rstd = 1.0f / sqrtf(var + p.eps);
    if (active) {
      const GroupRows<T> rows = locate(p, g);
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int64_t u = lane + v * TEAM;
        if (u < p.units) {
          float y[N];
          unpackVec<T>(xv[v], y);
#pragma unroll
          for (int e = 0; e < N; ++e)
            y[e] = (y[e] - mean) * rstd;
          finishNorm<T, N>(p, rows, y, u * N);
        }
      }
    }

    if constexpr (kPipelined) {
#pragma unroll
      for (int v = 0; v < V; ++v)
        xv[v] = xn[v];
    }
    g = gNext;
    active = activeNext;
  }
}

/// Rows of the modulate kernel's grid: a warp per row, 8 warps a block.
constexpr int kModulateWarps = 8;
/// The residual form's three rows take 162 registers a lane at five vectors
/// (under the plain kernel's bound of 128 they spilled, and the fused
/// kernel was no faster than the pass and the norm apart): its blocks are
/// 4 warps, three to a multiprocessor.
template <bool Residual> __host__ __device__ constexpr int modulateWarps() {
  return Residual ? 4 : kModulateWarps;
}

/// DiT's adaLN LayerNorm (and its RMS form): whole rows of at most 32·V
/// vectors, a per-sample scale and shift, no affine weight or bias, no
/// gate, vectorisable views. The general kernel above checks each operand
/// for presence per vector and keeps its tile packed; at DiT-XL/2's rows it
/// executed about 300 instructions per 16-byte vector (ncu, H100) and was
/// bound by issuing them. Here the operands are known, the row is unpacked
/// once into f32 registers, its sample's scale and shift vectors are loaded
/// before the reductions (so their latency hides behind the shuffles), and
/// the normalisation and modulation are two fused multiply-adds an element.
///
/// Residual (kern.norm's residual form): the row normalised is first formed
/// from the update x, the residual row and the sample's gate, rounded to T
/// and stored to `sum` as the gated-residual pass would store it (the same
/// expression, so the same bits), then normalised from registers: the
/// pass's write and the norm's read of that row become one write. Its scale
/// and shift are loaded after the reductions, and its blocks are smaller
/// (modulateWarps).
template <typename T, int V, bool Residual>
__global__ void __launch_bounds__(32 * modulateWarps<Residual>(), Residual ? 3 : 2)
    normModulateKernel(NormParams<T> p) {
  constexpr int N = kVec<T>, W = modulateWarps<Residual>();
  const int lane = threadIdx.x & 31;
  const int units = static_cast<int>(p.units);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * W;
  // The warp's rows are uniform across its lanes, so every lane takes part
  // in every shuffle; no block barrier is used.
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * W + (threadIdx.x >> 5); r < p.groups;
       r += warps) {
    const int64_t s = r / p.rowsPerSample;
    const T *xr = p.x + r * p.ldx;
    const T *scr = p.scale + s * p.ldScale, *shr = p.shift + s * p.ldShift;
    uint4 xv[V], cv[V], hv[V];
    // The sample's scale and shift vectors of this lane.
    auto loadScaleShift = [&] {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int u = lane + 32 * v;
        if (u < units) {
          cv[v] = *reinterpret_cast<const uint4 *>(scr + u * N);
          hv[v] = *reinterpret_cast<const uint4 *>(shr + u * N);
        }
      }
    };
    if constexpr (Residual) {
      // All three rows' loads first (the gate is the sample's, mostly from
      // L2), then the sum, stored and kept packed in xv.
      const T *rr = p.residual + r * p.ldRes, *gr = p.resGate + s * p.ldResGate;
      uint4 rv[V], gv[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int u = lane + 32 * v;
        if (u < units) {
          xv[v] = *reinterpret_cast<const uint4 *>(xr + u * N);
          rv[v] = *reinterpret_cast<const uint4 *>(rr + u * N);
          gv[v] = *reinterpret_cast<const uint4 *>(gr + u * N);
        }
      }
      T *sumRow = p.sum + r * p.ldSum;
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int u = lane + 32 * v;
        if (u < units) {
          float y[N], res[N], g[N];
          unpackVec<T>(xv[v], y);
          unpackVec<T>(rv[v], res);
          unpackVec<T>(gv[v], g);
#pragma unroll
          for (int e = 0; e < N; ++e)
            res[e] = res[e] + g[e] * y[e];
          // The stored (rounded) value is the one normalised.
          xv[v] = packVec<T>(res);
          __stwb(reinterpret_cast<uint4 *>(sumRow + u * N), xv[v]);
        }
      }
    } else {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const int u = lane + 32 * v;
        if (u < units)
          xv[v] = *reinterpret_cast<const uint4 *>(xr + u * N);
      }
      loadScaleShift();
    }
    float f[V][N];
    float sum = 0.0f;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      if (lane + 32 * v < units) {
        unpackVec<T>(xv[v], f[v]);
#pragma unroll
        for (int e = 0; e < N; ++e)
          sum += f[v][e];
      }
    }
    float mean = 0.0f;
    if (p.layer)
      mean = teamSum<32>(sum, nullptr) * p.invGroup;
    float sq = 0.0f;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      if (lane + 32 * v < units) {
#pragma unroll
        for (int e = 0; e < N; ++e) {
          const float d = f[v][e] - mean;
          sq += d * d;
        }
      }
    }
    if constexpr (Residual) {
      // The sample's scale and shift (L2 hits) only now: loaded beside the
      // three rows they made the tile spill. The empty asm keeps the
      // compiler from hoisting them back above the reductions.
      asm volatile("" ::: "memory");
      loadScaleShift();
    }
    const float rstd = 1.0f / sqrtf(teamSum<32>(sq, nullptr) * p.invGroup + p.eps);
    const float shiftMean = -mean * rstd;
    T *outRow = p.out + r * p.ldo;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const int u = lane + 32 * v;
      if (u < units) {
        float sc[N], sh[N], y[N];
        unpackVec<T>(cv[v], sc);
        unpackVec<T>(hv[v], sh);
#pragma unroll
        for (int e = 0; e < N; ++e) {
          const float xh = fmaf(f[v][e], rstd, shiftMean);
          y[e] = fmaf(xh, sc[e], xh) + sh[e]; // x̂·(1 + scale) + shift
        }
        storeVec<T>(outRow + u * N, y);
      }
    }
  }
}

template <typename T, int V> void launchModulate(const NormParams<T> &p, Stream stream) {
  if (p.residual != nullptr)
    normModulateKernel<T, V, true><<<gridStrideBlocks(p.groups, modulateWarps<true>(), 12),
                                     32 * modulateWarps<true>(), 0, native(stream)>>>(p);
  else
    normModulateKernel<T, V, false><<<gridStrideBlocks(p.groups, kModulateWarps, 8), 32 * kModulateWarps, 0,
                                      native(stream)>>>(p);
  checkLaunch("norm");
}

constexpr int kFallbackThreads = 256;

/// Any alignment and group length: a block per group, each pass re-reading
/// the group (from L1/L2 after the first).
template <typename T>
__global__ void __launch_bounds__(kFallbackThreads) normFallbackKernel(NormParams<T> p) {
  __shared__ float red[kFallbackThreads / 32];
  for (int64_t g = blockIdx.x; g < p.groups; g += gridDim.x) {
    const GroupRows<T> rows = locate(p, g);
    const T *xr = rows.x;
    float mean = 0.0f;
    if (p.layer) {
      float sum = 0.0f;
      for (int64_t j = threadIdx.x; j < p.group; j += kFallbackThreads)
        sum += toF<T>(xr[j]);
      mean = teamSum<kFallbackThreads>(sum, red) * p.invGroup;
    }
    float sq = 0.0f;
    for (int64_t j = threadIdx.x; j < p.group; j += kFallbackThreads) {
      const float d = toF<T>(xr[j]) - mean;
      sq += d * d;
    }
    const float rstd = 1.0f / sqrtf(teamSum<kFallbackThreads>(sq, red) * p.invGroup + p.eps);
    for (int64_t j = threadIdx.x; j < p.group; j += kFallbackThreads) {
      float y[1] = {(toF<T>(xr[j]) - mean) * rstd};
      finishNorm<T, 1>(p, rows, y, j);
    }
  }
}

template <typename T, int TEAM, int V> void launchNorm(const NormParams<T> &p, Stream stream) {
  unsigned blocks;
  if constexpr (TEAM > 32) {
    const int64_t cap = static_cast<int64_t>(multiprocessorCount()) * (2048 / TEAM);
    blocks = static_cast<unsigned>(p.groups < cap ? p.groups : cap);
    normKernel<T, TEAM, V><<<blocks, TEAM, 0, native(stream)>>>(p);
  } else {
    blocks = gridStrideBlocks(p.groups, 256 / TEAM, 8);
    normKernel<T, TEAM, V><<<blocks, 256, 0, native(stream)>>>(p);
  }
  checkLaunch("norm");
}

} // namespace

void norm(Stream stream, DType dtype, DConstMat x, const NormArgs &args, DMat out) {
  const char *kernel = "norm";
  const int64_t rows = x.rows, cols = x.cols, group = args.group;
  checkDView(kernel, "x", x, rows, cols);
  checkDView(kernel, "out", out, rows, cols);
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
  const bool hasResidual = !args.residual.empty();
  if (hasResidual) {
    checkDView(kernel, "residual", args.residual, rows, cols);
    checkDView(kernel, "sum", args.sum, rows, cols);
    if (args.residualGate.rows < 1 || rows % args.residualGate.rows != 0)
      fail(kernel, ": ", rows, " rows are not a whole number of samples of the residual gate's ",
           args.residualGate.rows);
    checkDPerSample(kernel, "residualGate", args.residualGate, rows, rows / args.residualGate.rows, cols);
    const size_t es = dtypeSize(dtype);
    const bool inPlace = args.sum.data == args.residual.data && args.sum.ld == args.residual.ld;
    if (overlapsD(args.sum, x, es) || overlapsD(args.sum, out, es) ||
        (!inPlace && overlapsD(args.sum, args.residual, es)))
      fail(kernel, ": sum overlaps the update, the result or (not exactly) the residual");
  }
  if (rows == 0)
    return;

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    constexpr int N = kVec<T>;
    NormParams<T> p;
    p.x = static_cast<const T *>(x.data);
    p.ldx = x.ld;
    p.out = static_cast<T *>(out.data);
    p.ldo = out.ld;
    p.weight = static_cast<const T *>(args.weight);
    p.bias = static_cast<const T *>(args.bias);
    p.shift = hasShift ? static_cast<const T *>(args.shift.data) : nullptr;
    p.ldShift = args.shift.ld;
    p.scale = hasScale ? static_cast<const T *>(args.scale.data) : nullptr;
    p.ldScale = args.scale.ld;
    p.rowsPerSample = hasShift || hasScale ? args.rowsPerSample : 1;
    p.gate = hasGate ? static_cast<const T *>(args.siluGate.data) : nullptr;
    p.ldGate = args.siluGate.ld;
    p.groupsPerRow = cols / group;
    p.groups = rows * p.groupsPerRow;
    p.group = group;
    p.eps = args.eps;
    p.invGroup = 1.0f / static_cast<float>(group);
    p.layer = args.kind == NormKind::Layer;
    p.residual = nullptr;

    const size_t es = sizeof(T);
    const bool vec = group % N == 0 && vectorizable(p.x, x.ld, cols, es) &&
                     vectorizable(p.out, out.ld, cols, es) &&
                     (p.shift == nullptr || vectorizable(p.shift, args.shift.ld, cols, es)) &&
                     (p.scale == nullptr || vectorizable(p.scale, args.scale.ld, cols, es)) &&
                     (p.gate == nullptr || vectorizable(p.gate, args.siluGate.ld, cols, es)) &&
                     (p.weight == nullptr || aligned16(p.weight)) &&
                     (p.bias == nullptr || aligned16(p.bias));
    p.units = group / N;
    const int64_t u = p.units;
    const bool modulateOnly = vec && p.groupsPerRow == 1 && p.shift != nullptr && p.scale != nullptr &&
                              p.weight == nullptr && p.bias == nullptr && p.gate == nullptr;
    if (hasResidual) {
      // DiT's adaLN rows form the sum in the modulate kernel; the other
      // kernels normalise what is in memory, so the sum is written first.
      if (!(modulateOnly && u <= 32 * 5 && vectorizable(args.residual.data, args.residual.ld, cols, es) &&
            vectorizable(args.residualGate.data, args.residualGate.ld, cols, es) &&
            vectorizable(args.sum.data, args.sum.ld, cols, es))) {
        gatedResidual(stream, dtype, args.residual, args.residualGate, x, rows / args.residualGate.rows, args.sum);
        NormArgs plain = args;
        plain.residual = plain.residualGate = DConstMat{};
        plain.sum = DMat{};
        norm(stream, dtype, DConstMat{args.sum.data, rows, cols, args.sum.ld}, plain, out);
        return;
      }
      p.residual = static_cast<const T *>(args.residual.data);
      p.ldRes = args.residual.ld;
      p.resGate = static_cast<const T *>(args.residualGate.data);
      p.ldResGate = args.residualGate.ld;
      p.sum = static_cast<T *>(args.sum.data);
      p.ldSum = args.sum.ld;
    }
    // Smallest team whose register tile holds the group; see the banner.
    // (Five vectors a lane take 128 registers; longer rows would spill.)
    if (modulateOnly && u <= 32 * 5) {
      if (u <= 32 * 2)
        launchModulate<T, 2>(p, stream);
      else if (u <= 32 * 3)
        launchModulate<T, 3>(p, stream);
      else
        launchModulate<T, 5>(p, stream);
    } else if (!vec || u > 512 * 8) {
      const int64_t cap = static_cast<int64_t>(multiprocessorCount()) * (2048 / kFallbackThreads);
      const unsigned blocks = static_cast<unsigned>(p.groups < cap ? p.groups : cap);
      normFallbackKernel<T><<<blocks, kFallbackThreads, 0, native(stream)>>>(p);
      checkLaunch(kernel);
    } else if (u <= 8) {
      launchNorm<T, 8, 1>(p, stream);
    } else if (u <= 16) {
      launchNorm<T, 8, 2>(p, stream);
    } else if (u <= 32) {
      launchNorm<T, 32, 1>(p, stream);
    } else if (u <= 64) {
      launchNorm<T, 32, 2>(p, stream);
    } else if (u <= 128) {
      launchNorm<T, 64, 2>(p, stream);
    } else if (u <= 256) {
      launchNorm<T, 64, 4>(p, stream);
    } else if (u <= 512) {
      launchNorm<T, 128, 4>(p, stream);
    } else if (u <= 1024) {
      launchNorm<T, 256, 4>(p, stream);
    } else {
      launchNorm<T, 512, 8>(p, stream);
    }
  });
}

} // namespace diffrt::cuda
