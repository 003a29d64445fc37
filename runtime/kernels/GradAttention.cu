//===- GradAttention.cu - backward of multi-head attention on the GPU ----===//
//
// cuda::attentionBackward, the GPU counterpart of cpu::attentionBackward.
// With S = scale·Q Kᵀ, P = softmax(S), O = P V per (sample, head):
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − Δ),  Δ_i = rowsum(dO_i ⊙ O_i),
//   dQ = scale·dS K,  dK = scale·dSᵀ Q.
// FlashAttention-2 style: P is never stored. Three passes on the stream:
//   1. statistics: per query row the log-sum-exp L_i of the scaled scores
//      and Δ_i = rowsum(P ⊙ dP) (= rowsum(dO ⊙ O)), online over the key
//      tiles like a forward pass but with dP = dO Vᵀ in place of P V (this
//      costs one forward's worth of products). Both go to the workspace,
//      f32. When the forward's log-sum-exp and output are given
//      (kern.attention's saved values), this pass is instead one
//      memory-bound read of them: Δ_i = rowsum(dO_i ⊙ O_i) with the stored,
//      rounded O, as FlashAttention-2 takes it.
//   2. dQ: one CTA per (query tile, sample·head) walks the key tiles,
//      recomputes P = exp(S − L), dP and dS and accumulates dQ in registers.
//   3. dK, dV: one CTA per (key tile, sample·head) walks the query tiles and
//      accumulates dK and dV in registers.
//   Passes 2 and 3 are one launch (gradTc): the dK/dV CTAs first, then the
//   dQ CTAs, so that each fills the other's last partial wave.
// Every output element is written by exactly one CTA from a fixed-order
// reduction: no atomics, deterministic, and nothing outside the views'
// columns is written (dQ, dK, dV may be column slices of one packed
// gradient). Recomputing S and dP in both passes 2 and 3 (seven products
// where pass 3 with f32 atomics on dQ would need five) costs tensor-core
// work, but avoids a f32 dQ buffer, its zeroing and conversion, and
// non-determinism.
//
// f16/bf16 with equal head dims 64, 72 or 88 and aligned views run passes
// 2 and 3 on Hopper's warpgroup products (gradWg below, AttentionWgmma.cuh;
// at DiT-XL/2's shape 0.154 against 0.188 ms on an H100).
// DIFFRT_ATTENTION_BACKWARD=mma, and every other f16/bf16 case with head
// dims up to 128, take mma.sync with the fragment helpers and tile geometry
// of the forward's mma.sync kernel (AttentionKernels.cuh), natively
// for head-dim tiles 32, 64, 72, 88, 128 (other dims in the next tile up,
// zero-padded in shared memory only; global traffic stays unpadded). Each
// warp owns 16 rows of its CTA's 64 (queries in pass 2, keys in pass 3), so
// its A operands come from its own rows of shared memory. Pass 3 computes
// Sᵀ = K Qᵀ and dPᵀ = V dOᵀ directly: their accumulator fragments are then
// the A fragments of dV += Pᵀ dO and dK += dSᵀ Q, with Q and dO tiles as the
// row-major B operands (ldmatrix.trans), so nothing is transposed through
// shared memory. P and dS are rounded to the operand type before their
// products, as the forward rounds P; scores, L, Δ and all accumulators are
// f32. Softmax runs in the exp2 domain (L is stored as log2). Up to head
// dim 88 the two gradient passes are held to 168 registers: three CTAs then
// share a multiprocessor (their 172-177 registers allowed two; shared
// memory allows three). As one kernel they spill a few words at head dims
// 72 and 88 (116 and 36 bytes of spill loads), which the merged launch's
// fuller last wave outweighs (measured, H100).
//
// With column sums wanted (the q/k/v bias gradient, kern.vjp column_sums),
// every tensor-core CTA, once its gradient tile is staged in shared memory
// for the store, also adds the tile's valid rows per column into an f32
// partial for its (sample, tile) chunk; finishColumnSums then adds the
// chunks in a fixed order (one launch when the three sums are adjacent
// parts of one bias gradient). This replaces a pass that read the joined
// gradient back from memory.
//
// f32 (and 16-bit head dims above 128) run on SIMT kernels of the same
// three-pass structure with 32-row tiles and accurate expf: exact to f32
// rounding, not fast.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "AttentionKernels.cuh"
#include "AttentionWgmma.cuh"
#include "ColumnSums.cuh"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace diffrt::cuda {

namespace {

constexpr const char *kName = "attentionBackward";

struct GradParams {
  const void *q, *k, *v, *dO;
  void *dQ, *dK, *dV;
  int64_t ldq, ldk, ldv, ldo, lddq, lddk, lddv;
  int32_t lq, lk, heads, dk, dv;
  /// Tiles of the own side per (sample, head) of a single-pass launch: query
  /// tiles (pass 1, and pass 2 on the SIMT path), key tiles (pass 3 there).
  int32_t tiles;
  /// The tensor-core gradient launch (gradTc): query and key tiles per
  /// (sample, head), and the blocks of its dK/dV part, which come first.
  int32_t queryTiles, keyTiles, keyValueBlocks;
  /// Softmax scale as given, and in the exp2 domain: scale·log2(e) (signed),
  /// and |scale|·log2(e) floored at FLT_MIN for the forward helpers, which
  /// take the maximum of sign-corrected scores.
  float scale, scaleLog2, absScaleLog2;
  /// XORed into packed Q fragments in pass 1 for a negative scale.
  uint32_t qSign;
  /// Every view's rows start on 16 bytes and dk, dv are multiples of 8.
  int32_t aligned;
  /// Per (sample·head, query): log-sum-exp (log2 on the tensor-core path,
  /// natural log on the SIMT path) and Δ.
  float *lse, *delta;
  /// Column sums wanted (tensor-core path): per (sample, tile) chunk a row
  /// of f32 partials, head h's columns at h·d; null where not wanted.
  float *partQ, *partK, *partV;
  int64_t partLdQ, partLdK, partLdV;
};

//===----------------------------------------------------------------------===//
// Tensor-core path (f16, bf16)
//===----------------------------------------------------------------------===//

/// 4 warps of 16 own rows (MT = 1: dK and dV accumulators both live in
/// registers in pass 3); 64-row tiles of the other side, 32 at D = 128 so
/// that the score and dP fragments fit next to two D-wide accumulators.
template <int D> struct BwdTile {
  static constexpr int kWarps = 4;
  static constexpr int kBN = D <= 88 ? 64 : 32;
  using C = attn::TileConfig<D, 1, kBN, kWarps>;
};

/// A fragments of the warp's 16 rows of an own-side tile (row pitch
/// C::kStride): kK16 16x16 blocks and, for an odd multiple of 8, the k8 tail.
template <typename T, typename C>
__device__ __forceinline__ void loadA(uint32_t (&f)[1][C::kK16][4], uint32_t (&tail)[1][2],
                                      const T *sOwn, int warpRow, int lane, uint32_t sign) {
  const T *rowPtr = sOwn + (warpRow + (lane & 15)) * C::kStride;
#pragma unroll
  for (int ks = 0; ks < C::kK16; ++ks) {
    attn::ldsmX4(f[0][ks], attn::smemAddr(rowPtr + ks * 16 + (lane >> 4) * 8));
#pragma unroll
    for (int i = 0; i < 4; ++i)
      f[0][ks][i] ^= sign;
  }
  if constexpr (C::kK8Tail) {
    attn::ldsmX2(tail[0], attn::smemAddr(rowPtr + C::kK16 * 16));
    tail[0][0] ^= sign;
    tail[0][1] ^= sign;
  } else {
    tail[0][0] = tail[0][1] = 0;
  }
}

/// Accumulator fragments (rows g, g+8 of the warp's 16) times `mul`, packed
/// into the warp's own rows of a shared tile, then copied to global rows
/// [0, validRows) and columns [0, validCols) of g (leading dimension ld),
/// 16-byte chunks when aligned. Only the warp's own rows are touched, so a
/// __syncwarp suffices.
template <typename T, typename C>
__device__ __forceinline__ void storeRows(const float (&acc)[1][C::kDTiles][4], float mul,
                                          T *sOwn, int warpRow, int lane, T *g, int64_t ld,
                                          int validRows, int validCols, bool aligned) {
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    T *dst = sOwn + (warpRow + (lane >> 2) + 8 * hh) * C::kStride + 2 * (lane & 3);
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt)
      *reinterpret_cast<uint32_t *>(dst + dt * 8) =
          attn::pack2<T>(acc[0][dt][2 * hh] * mul, acc[0][dt][2 * hh + 1] * mul);
  }
  __syncwarp();
  constexpr int kWarpChunks = 16 * C::kChunks;
  for (int i = lane; i < kWarpChunks; i += 32) {
    const int r = i / C::kChunks, c = i - r * C::kChunks;
    const int row = warpRow + r;
    if (row >= validRows)
      continue;
    const T *src = sOwn + row * C::kStride + c * 8;
    T *out = g + static_cast<int64_t>(row) * ld + c * 8;
    if (aligned) {
      if (c * 8 < validCols)
        *reinterpret_cast<uint4 *>(out) = *reinterpret_cast<const uint4 *>(src);
    } else {
#pragma unroll
      for (int x = 0; x < 8; ++x)
        if (c * 8 + x < validCols)
          out[x] = src[x];
    }
  }
}

/// Per column c < cols, the sum of rows [0, validRows) of a staged tile
/// (pitch kStride, kThreads threads) into out[c]. A thread sums a pair of
/// adjacent columns over every `slices`-th row; the slices' sums meet in
/// `scratch` (slices · cols floats of shared memory the tile does not use)
/// and are added in slice order, a fixed order. Every warp's rows must be
/// staged, so the barrier comes first and all threads of the CTA call this.
template <typename T, int kStride, int kThreads>
__device__ __forceinline__ void tileColumnSums(const T *sTile, int validRows, int cols, float *scratch,
                                               float *out) {
  __syncthreads();
  const int pairs = (cols + 1) / 2, slices = max(1, kThreads / pairs);
  const int t = threadIdx.x;
  if (t < slices * pairs) {
    const int c = 2 * (t % pairs), slice = t / pairs;
    float a0 = 0.0f, a1 = 0.0f;
    // An odd width's last pair reads the column beside it (inside the
    // row: tile widths are even) and drops it.
    for (int r = slice; r < validRows; r += slices) {
      const T *x = sTile + r * kStride + c;
      a0 += toF<T>(x[0]);
      a1 += toF<T>(x[1]);
    }
    scratch[slice * cols + c] = a0;
    if (c + 1 < cols)
      scratch[slice * cols + c + 1] = a1;
  }
  __syncthreads();
  for (int c = t; c < cols; c += kThreads) {
    float acc = 0.0f;
    for (int sl = 0; sl < slices; ++sl)
      acc += scratch[sl * cols + c];
    out[c] = acc;
  }
}

/// Packs a 16 x (8·kSTiles) accumulator tile into A fragments of 16-wide
/// reduction steps (the layout softmaxTile produces for P).
template <typename T, int kSTiles>
__device__ __forceinline__ void packA(const float (&s)[1][kSTiles][4],
                                      uint32_t (&f)[1][kSTiles / 2][4]) {
#pragma unroll
  for (int kk = 0; kk < kSTiles / 2; ++kk) {
    f[0][kk][0] = attn::pack2<T>(s[0][2 * kk][0], s[0][2 * kk][1]);
    f[0][kk][1] = attn::pack2<T>(s[0][2 * kk][2], s[0][2 * kk][3]);
    f[0][kk][2] = attn::pack2<T>(s[0][2 * kk + 1][0], s[0][2 * kk + 1][1]);
    f[0][kk][3] = attn::pack2<T>(s[0][2 * kk + 1][2], s[0][2 * kk + 1][3]);
  }
}

/// Pass 1: one CTA per (query tile of 64, sample·head), key tiles through a
/// two-stage cp.async pipeline. Online over the key tiles, per query row:
/// the running maximum m, Σ_j 2^(s_j·sc − m) and Σ_j 2^(s_j·sc − m)·dP_j
/// with dP = dO Vᵀ on the tensor cores, both rescaled when m grows; then
/// L = m·sc + log2 Σ and Δ = rowsum(P ⊙ dP), the CPU reference's form.
/// Computing Δ from f32 probabilities rather than from O = P V keeps it
/// free of the rounding of P to T that the PV product would need (with
/// peaked rows, dS = P ⊙ (dP − Δ) is a small difference and that rounding
/// would dominate it).
template <typename T, int D>
__global__ void __launch_bounds__(128) statsTc(const __grid_constant__ GradParams p) {
  using C = typename BwdTile<D>::C;
  constexpr int BN = BwdTile<D>::kBN;
  extern __shared__ __align__(128) unsigned char smemRaw[];
  T *sQ = reinterpret_cast<T *>(smemRaw);
  T *sO = sQ + C::kQElems;
  T *sK = sO + C::kQElems;
  T *sV = sK + 2 * C::kKVElems;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warpRow = warp * 16;
  const int qTile = blockIdx.x % p.tiles, pair = blockIdx.x / p.tiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int q0 = qTile * C::kBM;
  const int validQ = min(C::kBM, p.lq - q0);
  const bool aligned = p.aligned != 0;
  const int64_t qRow0 = static_cast<int64_t>(b) * p.lq + q0;
  const T *qG = static_cast<const T *>(p.q) + qRow0 * p.ldq + static_cast<int64_t>(h) * p.dk;
  const T *dOG = static_cast<const T *>(p.dO) + qRow0 * p.ldo + static_cast<int64_t>(h) * p.dv;
  const T *kG = static_cast<const T *>(p.k) + static_cast<int64_t>(b) * p.lk * p.ldk +
                static_cast<int64_t>(h) * p.dk;
  const T *vG = static_cast<const T *>(p.v) + static_cast<int64_t>(b) * p.lk * p.ldv +
                static_cast<int64_t>(h) * p.dv;

  attn::loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sQ, qG, p.ldq, validQ, p.dk, aligned);
  attn::loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sO, dOG, p.ldo, validQ, p.dv, aligned);
  attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sK, kG, p.ldk, min(BN, p.lk), p.dk, aligned);
  attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sV, vG, p.ldv, min(BN, p.lk), p.dv, aligned);
  cpAsyncCommit();

  // Rows g and g+8 of the warp. The maximum is quad-uniform; the sums are
  // per-thread parts (the rescale factor is the same for the whole quad),
  // reduced over the quad at the end.
  float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.0f, 0.0f}, rowDot[2] = {0.0f, 0.0f};
  uint32_t qf[1][C::kK16][4], qt[1][2], of[1][C::kK16][4], ot[1][2];
  const float sc = p.absScaleLog2;

  const int nTiles = (p.lk + BN - 1) / BN;
  int stage = 0;
  for (int j = 0; j < nTiles; ++j) {
    if (j + 1 < nTiles) {
      const int64_t off = static_cast<int64_t>(j + 1) * BN;
      const int valid = min(BN, p.lk - (j + 1) * BN);
      attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sK + (stage ^ 1) * C::kKVElems,
                                                        kG + off * p.ldk, p.ldk, valid, p.dk,
                                                        aligned);
      attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sV + (stage ^ 1) * C::kKVElems,
                                                        vG + off * p.ldv, p.ldv, valid, p.dv,
                                                        aligned);
    }
    cpAsyncCommit(); // possibly empty: keeps the group count uniform
    cpAsyncWait<1>();
    __syncthreads();
    if (j == 0) {
      // Q negated for a negative scale, so that the maximum below is that of
      // the scaled scores (as in the forward).
      loadA<T, C>(qf, qt, sQ, warpRow, lane, p.qSign);
      loadA<T, C>(of, ot, sO, warpRow, lane, 0u);
    }
    float s[1][C::kSTiles][4], dp[1][C::kSTiles][4];
    attn::qkTile<T, C, 1>(s, qf, qt, sK + stage * C::kKVElems, lane);
    attn::maskTile<C, 1>(s, p.lk - j * BN, lane);
    attn::qkTile<T, C, 1>(dp, of, ot, sV + stage * C::kKVElems, lane);
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float mx = rowMax[hh];
#pragma unroll
      for (int nt = 0; nt < C::kSTiles; ++nt)
        mx = fmaxf(mx, fmaxf(s[0][nt][2 * hh], s[0][nt][2 * hh + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // mx is finite (every tile holds a key < lk); 2^-inf = 0 on the first.
      const float alpha = attn::exp2Approx((rowMax[hh] - mx) * sc);
      const float shift = mx * sc;
      float sum = 0.0f, dot = 0.0f;
#pragma unroll
      for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          // Masked keys: 2^-inf = 0, and their dP is 0 (zero V rows).
          const float pr = attn::exp2Approx(fmaf(s[0][nt][2 * hh + e], sc, -shift));
          sum += pr;
          dot = fmaf(pr, dp[0][nt][2 * hh + e], dot);
        }
      rowSum[hh] = fmaf(rowSum[hh], alpha, sum);
      rowDot[hh] = fmaf(rowDot[hh], alpha, dot);
      rowMax[hh] = mx;
    }
    __syncthreads(); // this stage is reloaded by the next iteration's prefetch
    stage ^= 1;
  }

#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float l = rowSum[hh], d = rowDot[hh];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    d += __shfl_xor_sync(0xffffffffu, d, 1);
    d += __shfl_xor_sync(0xffffffffu, d, 2);
    const int row = warpRow + (lane >> 2) + 8 * hh;
    if (row < validQ && (lane & 3) == 0) {
      const int64_t at = static_cast<int64_t>(pair) * p.lq + q0 + row;
      p.lse[at] = fmaf(rowMax[hh], sc, log2f(l));
      p.delta[at] = d / l;
    }
  }
}

bool rowsAligned(DConstMat m, size_t elem) {
  return m.data == nullptr ||
         ((reinterpret_cast<uintptr_t>(m.data) % 16) == 0 && (m.ld * elem) % 16 == 0);
}

/// The forward's statistics, when the caller has them (both or neither).
struct SavedStatistics {
  const float *lse = nullptr;
  DConstMat out;
  int64_t batch = 0;
};

/// Pass 1 from the forward's statistics: per (query row, head), one thread
/// each (threads along the heads of a row read adjacent column ranges),
/// L = the saved natural-log log-sum-exp times `lseFactor` (log2 e for the
/// tensor-core passes, 1 for the SIMT ones) and Δ = rowsum(dO ⊙ O).
template <typename T, bool Vec>
__global__ void __launch_bounds__(256) savedStatistics(const __grid_constant__ GradParams p,
                                                       const float *savedLse, const T *o, int64_t ldo,
                                                       float lseFactor, int64_t rows) {
  const int64_t total = rows * p.heads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int h = static_cast<int>(i % p.heads);
    const int64_t row = i / p.heads, b = row / p.lq, qi = row - b * p.lq;
    const T *dO = static_cast<const T *>(p.dO) + row * p.ldo + static_cast<int64_t>(h) * p.dv;
    const T *out = o + row * ldo + static_cast<int64_t>(h) * p.dv;
    float d = 0.0f;
    if constexpr (Vec) {
      for (int c = 0; c < p.dv; c += kVec<T>) {
        float a[kVec<T>], x[kVec<T>];
        loadVec<T>(dO + c, a);
        loadVec<T>(out + c, x);
#pragma unroll
        for (int e = 0; e < kVec<T>; ++e)
          d = fmaf(a[e], x[e], d);
      }
    } else {
      for (int c = 0; c < p.dv; ++c)
        d = fmaf(toF<T>(dO[c]), toF<T>(out[c]), d);
    }
    const int64_t at = (b * p.heads + h) * p.lq + qi;
    p.delta[at] = d;
    p.lse[at] = savedLse[at] * lseFactor;
  }
}

/// The vectorised form of savedStatistics: a warp per query row (all
/// heads), lane l taking the row's 16-byte chunks l, l + 32, ... (at most
/// kRowChunksPerLane), so that a warp's loads are contiguous and all of a
/// lane's are in flight at once; each chunk's 8-term dot product goes to
/// shared memory and lane h then adds its head's chunks in order. A thread
/// per (row, head), walking its head's 144 bytes chunk by chunk, left the
/// loads of a warp 144 bytes apart (1.75 TB/s); on an H100 this form took the
/// backward with saved statistics from 0.215 to 0.207 ms at DiT-XL/2's
/// shape and from 0.677 to 0.62 ms at 16 heads of 128.
constexpr int kRowChunksPerLane = 8;
constexpr int kRowWarps = 8;

template <typename T>
__global__ void __launch_bounds__(32 * kRowWarps) savedStatisticsRows(const __grid_constant__ GradParams p,
                                                                      const float *savedLse, const T *o,
                                                                      int64_t ldo, float lseFactor, int64_t rows) {
  constexpr int N = kVec<T>;
  __shared__ float part[kRowWarps][32 * kRowChunksPerLane];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int chunksPerHead = p.dv / N, chunks = p.heads * chunksPerHead;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kRowWarps) {
    const T *dO = static_cast<const T *>(p.dO) + row * p.ldo;
    const T *out = o + row * ldo;
    uint4 a[kRowChunksPerLane], x[kRowChunksPerLane]; // packed: 16 registers a chunk pair
#pragma unroll
    for (int k = 0; k < kRowChunksPerLane; ++k) {
      const int c = lane + 32 * k;
      if (c < chunks) {
        a[k] = *reinterpret_cast<const uint4 *>(dO + c * N);
        x[k] = *reinterpret_cast<const uint4 *>(out + c * N);
      }
    }
#pragma unroll
    for (int k = 0; k < kRowChunksPerLane; ++k) {
      const int c = lane + 32 * k;
      if (c < chunks) {
        float af[N], xf[N], d = 0.0f;
        unpackVec<T>(a[k], af);
        unpackVec<T>(x[k], xf);
#pragma unroll
        for (int e = 0; e < N; ++e)
          d = fmaf(af[e], xf[e], d);
        part[warp][c] = d;
      }
    }
    __syncwarp();
    const int64_t b = row / p.lq, qi = row - b * p.lq;
    for (int h = lane; h < p.heads; h += 32) {
      float d = 0.0f;
      for (int c = h * chunksPerHead; c < (h + 1) * chunksPerHead; ++c)
        d += part[warp][c];
      const int64_t at = (b * p.heads + h) * p.lq + qi;
      p.delta[at] = d;
      p.lse[at] = savedLse[at] * lseFactor;
    }
    __syncwarp(); // part is rewritten for the next row
  }
}

template <typename T>
void launchSavedStatistics(cudaStream_t stream, const GradParams &p, const float *savedLse,
                           DConstMat savedOut, float lseFactor, int64_t batch) {
  const int64_t rows = batch * p.lq;
  const bool vec = p.dv % kVec<T> == 0 && rowsAligned(savedOut, sizeof(T)) &&
                   (reinterpret_cast<uintptr_t>(p.dO) % 16) == 0 && (p.ldo * sizeof(T)) % 16 == 0;
  const T *o = static_cast<const T *>(savedOut.data);
  const unsigned blocks = gridStrideBlocks(rows * p.heads, 256);
  if (vec && p.heads * p.dv <= 32 * kRowChunksPerLane * kVec<T>)
    savedStatisticsRows<T><<<gridStrideBlocks(rows, kRowWarps), 32 * kRowWarps, 0, stream>>>(
        p, savedLse, o, savedOut.ld, lseFactor, rows);
  else if (vec)
    savedStatistics<T, true><<<blocks, 256, 0, stream>>>(p, savedLse, o, savedOut.ld, lseFactor, rows);
  else
    savedStatistics<T, false><<<blocks, 256, 0, stream>>>(p, savedLse, o, savedOut.ld, lseFactor, rows);
  checkLaunch("attentionBackward (saved statistics)");
}

/// Pass 2: dQ for one (query tile of 64, sample·head). Q and dO fragments
/// stay in registers; K and V tiles stream through two cp.async stages.
///   S = Q Kᵀ, P = 2^(S·sc − L) (0 past lk), dP = dO Vᵀ,
///   dS = P ⊙ (dP − Δ) rounded to T, dQ += dS K (K as the row-major B).
template <typename T, int D>
__device__ __forceinline__ void queryGradTile(const GradParams &p, int block, int tiles) {
  using C = typename BwdTile<D>::C;
  constexpr int BN = BwdTile<D>::kBN;
  extern __shared__ __align__(128) unsigned char smemRaw[];
  T *sQ = reinterpret_cast<T *>(smemRaw);
  T *sO = sQ + C::kQElems;
  T *sK = sO + C::kQElems;
  T *sV = sK + 2 * C::kKVElems;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warpRow = warp * 16;
  const int qTile = block % tiles, pair = block / tiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int q0 = qTile * C::kBM;
  const int validQ = min(C::kBM, p.lq - q0);
  const bool aligned = p.aligned != 0;
  const int64_t qRow0 = static_cast<int64_t>(b) * p.lq + q0;
  const T *qG = static_cast<const T *>(p.q) + qRow0 * p.ldq + static_cast<int64_t>(h) * p.dk;
  const T *dOG = static_cast<const T *>(p.dO) + qRow0 * p.ldo + static_cast<int64_t>(h) * p.dv;
  const T *kG = static_cast<const T *>(p.k) + static_cast<int64_t>(b) * p.lk * p.ldk +
                static_cast<int64_t>(h) * p.dk;
  const T *vG = static_cast<const T *>(p.v) + static_cast<int64_t>(b) * p.lk * p.ldv +
                static_cast<int64_t>(h) * p.dv;

  attn::loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sQ, qG, p.ldq, validQ, p.dk, aligned);
  attn::loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sO, dOG, p.ldo, validQ, p.dv, aligned);
  attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sK, kG, p.ldk, min(BN, p.lk), p.dk, aligned);
  attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sV, vG, p.ldv, min(BN, p.lk), p.dv, aligned);
  cpAsyncCommit();

  // Rows g and g+8 of the warp: their statistics (rows past lq: 0, their
  // results are never stored).
  float rowL[2], rowDelta[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int row = warpRow + (lane >> 2) + 8 * hh;
    const int64_t at = static_cast<int64_t>(pair) * p.lq + q0 + row;
    rowL[hh] = row < validQ ? p.lse[at] : 0.0f;
    rowDelta[hh] = row < validQ ? p.delta[at] : 0.0f;
  }

  float dq[1][C::kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      dq[0][dt][i] = 0.0f;
  uint32_t qf[1][C::kK16][4], qt[1][2], of[1][C::kK16][4], ot[1][2];

  const int nTiles = (p.lk + BN - 1) / BN;
  int stage = 0;
  for (int j = 0; j < nTiles; ++j) {
    if (j + 1 < nTiles) {
      const int64_t off = static_cast<int64_t>(j + 1) * BN;
      const int valid = min(BN, p.lk - (j + 1) * BN);
      attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sK + (stage ^ 1) * C::kKVElems,
                                                        kG + off * p.ldk, p.ldk, valid, p.dk,
                                                        aligned);
      attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sV + (stage ^ 1) * C::kKVElems,
                                                        vG + off * p.ldv, p.ldv, valid, p.dv,
                                                        aligned);
    }
    cpAsyncCommit();
    cpAsyncWait<1>();
    __syncthreads();
    if (j == 0) {
      loadA<T, C>(qf, qt, sQ, warpRow, lane, 0u);
      loadA<T, C>(of, ot, sO, warpRow, lane, 0u);
    }
    const T *sKs = sK + stage * C::kKVElems;
    const T *sVs = sV + stage * C::kKVElems;
    const int validKeys = p.lk - j * BN;

    float s[1][C::kSTiles][4];
    attn::qkTile<T, C, 1>(s, qf, qt, sKs, lane);
    float dp[1][C::kSTiles][4];
    attn::qkTile<T, C, 1>(dp, of, ot, sVs, lane);
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = nt * 8 + 2 * (lane & 3) + (i & 1);
        const int hh = i >> 1;
        const float pr =
            key < validKeys ? attn::exp2Approx(fmaf(s[0][nt][i], p.scaleLog2, -rowL[hh])) : 0.0f;
        s[0][nt][i] = pr * (dp[0][nt][i] - rowDelta[hh]);
      }
    uint32_t dsf[1][C::kSTiles / 2][4];
    packA<T, C::kSTiles>(s, dsf);
    attn::pvTile<T, C, 1>(dq, dsf, sKs, lane);
    __syncthreads();
    stage ^= 1;
  }

  T *dQG = static_cast<T *>(p.dQ) + qRow0 * p.lddq + static_cast<int64_t>(h) * p.dk;
  storeRows<T, C>(dq, p.scale, sQ, warpRow, lane, dQG, p.lddq, validQ, p.dk, aligned);
  if (p.partQ != nullptr) // K's tiles are free now
    tileColumnSums<T, C::kStride, C::kThreads>(sQ, validQ, p.dk, reinterpret_cast<float *>(sK),
                                               p.partQ + (static_cast<int64_t>(b) * tiles + qTile) * p.partLdQ +
                                                   static_cast<int64_t>(h) * p.dk);
}

/// Pass 3: dK and dV for one (key tile of 64, sample·head). The warp's K and
/// V rows stay in shared memory (their A fragments are reloaded per query
/// tile to keep registers for the two accumulators); Q, dO, L and Δ tiles
/// stream through two stages.
///   Sᵀ = K Qᵀ, Pᵀ = 2^(Sᵀ·sc − L) (0 past lq), dV += Pᵀ dO,
///   dPᵀ = V dOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − Δ), dK += dSᵀ Q.
template <typename T, int D>
__device__ __forceinline__ void keyValueGradTile(const GradParams &p, int block, int tiles) {
  using C = typename BwdTile<D>::C;
  constexpr int BN = BwdTile<D>::kBN;
  extern __shared__ __align__(128) unsigned char smemRaw[];
  T *sK = reinterpret_cast<T *>(smemRaw);
  T *sV = sK + C::kQElems;
  T *sQ = sV + C::kQElems;
  T *sO = sQ + 2 * C::kKVElems;
  float *sL = reinterpret_cast<float *>(sO + 2 * C::kKVElems);
  float *sDelta = sL + 2 * BN;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warpRow = warp * 16;
  const int kTile = block % tiles, pair = block / tiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int k0 = kTile * C::kBM;
  const int validK = min(C::kBM, p.lk - k0);
  const bool aligned = p.aligned != 0;
  const int64_t kRow0 = static_cast<int64_t>(b) * p.lk + k0;
  const T *kG = static_cast<const T *>(p.k) + kRow0 * p.ldk + static_cast<int64_t>(h) * p.dk;
  const T *vG = static_cast<const T *>(p.v) + kRow0 * p.ldv + static_cast<int64_t>(h) * p.dv;
  const T *qG = static_cast<const T *>(p.q) + static_cast<int64_t>(b) * p.lq * p.ldq +
                static_cast<int64_t>(h) * p.dk;
  const T *dOG = static_cast<const T *>(p.dO) + static_cast<int64_t>(b) * p.lq * p.ldo +
                 static_cast<int64_t>(h) * p.dv;
  const float *lG = p.lse + static_cast<int64_t>(pair) * p.lq;
  const float *deltaG = p.delta + static_cast<int64_t>(pair) * p.lq;

  // Statistics of query tile t into stage `st` (plain loads: BN floats).
  auto loadStats = [&](int t, int st) {
    for (int i = threadIdx.x; i < BN; i += C::kThreads) {
      const int qi = t * BN + i;
      sL[st * BN + i] = qi < p.lq ? lG[qi] : 0.0f;
      sDelta[st * BN + i] = qi < p.lq ? deltaG[qi] : 0.0f;
    }
  };

  attn::loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sK, kG, p.ldk, validK, p.dk, aligned);
  attn::loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sV, vG, p.ldv, validK, p.dv, aligned);
  attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sQ, qG, p.ldq, min(BN, p.lq), p.dk, aligned);
  attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sO, dOG, p.ldo, min(BN, p.lq), p.dv, aligned);
  loadStats(0, 0);
  cpAsyncCommit();

  float dk[1][C::kDTiles][4], dv[1][C::kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      dk[0][dt][i] = 0.0f;
      dv[0][dt][i] = 0.0f;
    }

  const int nTiles = (p.lq + BN - 1) / BN;
  int stage = 0;
  for (int t = 0; t < nTiles; ++t) {
    if (t + 1 < nTiles) {
      const int64_t off = static_cast<int64_t>(t + 1) * BN;
      const int valid = min(BN, p.lq - (t + 1) * BN);
      attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sQ + (stage ^ 1) * C::kKVElems,
                                                        qG + off * p.ldq, p.ldq, valid, p.dk,
                                                        aligned);
      attn::loadTile<T, BN, D, C::kStride, C::kThreads>(sO + (stage ^ 1) * C::kKVElems,
                                                        dOG + off * p.ldo, p.ldo, valid, p.dv,
                                                        aligned);
      loadStats(t + 1, stage ^ 1);
    }
    cpAsyncCommit();
    cpAsyncWait<1>();
    __syncthreads();
    const T *sQs = sQ + stage * C::kKVElems;
    const T *sOs = sO + stage * C::kKVElems;
    const float *sLs = sL + stage * BN;
    const float *sDs = sDelta + stage * BN;
    const int validQ = p.lq - t * BN;

    uint32_t af[1][C::kK16][4], at[1][2];
    float s[1][C::kSTiles][4];
    loadA<T, C>(af, at, sK, warpRow, lane, 0u);
    attn::qkTile<T, C, 1>(s, af, at, sQs, lane);
    // Columns are queries: fragment element i of n tile nt is query
    // nt·8 + 2(lane%4) + i%2 (rows: keys g and g+8).
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int qc = nt * 8 + 2 * (lane & 3) + e;
        const float l = sLs[qc];
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          float &x = s[0][nt][2 * hh + e];
          x = qc < validQ ? attn::exp2Approx(fmaf(x, p.scaleLog2, -l)) : 0.0f;
        }
      }
    uint32_t pf[1][C::kSTiles / 2][4];
    packA<T, C::kSTiles>(s, pf);
    attn::pvTile<T, C, 1>(dv, pf, sOs, lane);

    float dp[1][C::kSTiles][4];
    loadA<T, C>(af, at, sV, warpRow, lane, 0u);
    attn::qkTile<T, C, 1>(dp, af, at, sOs, lane);
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float delta = sDs[nt * 8 + 2 * (lane & 3) + e];
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int i = 2 * hh + e;
          s[0][nt][i] *= dp[0][nt][i] - delta;
        }
      }
    packA<T, C::kSTiles>(s, pf);
    attn::pvTile<T, C, 1>(dk, pf, sQs, lane);
    __syncthreads(); // this stage is reloaded by the next iteration's prefetch
    stage ^= 1;
  }

  // Each warp stages its results in its own rows of sK and sV, which no
  // other warp reads.
  if (p.dK != nullptr) {
    T *dKG = static_cast<T *>(p.dK) + kRow0 * p.lddk + static_cast<int64_t>(h) * p.dk;
    storeRows<T, C>(dk, p.scale, sK, warpRow, lane, dKG, p.lddk, validK, p.dk, aligned);
  }
  if (p.dV != nullptr) {
    T *dVG = static_cast<T *>(p.dV) + kRow0 * p.lddv + static_cast<int64_t>(h) * p.dv;
    storeRows<T, C>(dv, 1.0f, sV, warpRow, lane, dVG, p.lddv, validK, p.dv, aligned);
  }
  // Q's tiles are free now: the sums' scratch.
  const int64_t chunk = static_cast<int64_t>(b) * tiles + kTile;
  float *scratch = reinterpret_cast<float *>(sQ);
  if (p.partK != nullptr)
    tileColumnSums<T, C::kStride, C::kThreads>(sK, validK, p.dk, scratch,
                                               p.partK + chunk * p.partLdK + static_cast<int64_t>(h) * p.dk);
  if (p.partV != nullptr)
    tileColumnSums<T, C::kStride, C::kThreads>(sV, validK, p.dv, scratch,
                                               p.partV + chunk * p.partLdV + static_cast<int64_t>(h) * p.dv);
}

/// Passes 2 and 3 in one launch: the grid's first keyValueBlocks blocks are
/// pass 3's (key tile, sample·head), the rest pass 2's (query tile,
/// sample·head). The two passes read the same inputs and write disjoint
/// outputs, so their CTAs may run side by side; as one grid the shorter dQ
/// CTAs, scheduled last, fill the last wave that each pass alone left
/// mostly idle (DiT-XL/2: 2048 CTAs a pass, 396 resident, 5.2 waves each).
template <typename T, int D>
__global__ void __launch_bounds__(128, D <= 88 ? 3 : 1) gradTc(const __grid_constant__ GradParams p) {
  const int block = static_cast<int>(blockIdx.x);
  if (block < p.keyValueBlocks)
    keyValueGradTile<T, D>(p, block, p.keyTiles);
  else
    queryGradTile<T, D>(p, block - p.keyValueBlocks, p.queryTiles);
}

//===----------------------------------------------------------------------===//
// Hopper path (wgmma): f16/bf16, dk = dv in {64, 72, 88}, aligned views
//===----------------------------------------------------------------------===//

/// The same two passes as gradTc on warpgroup products (AttentionWgmma.cuh:
/// tiles, copies, products): a CTA is one warpgroup (128 threads) owning 64
/// rows (keys for dK/dV, queries for dQ) and walking the other side's
/// 64-row tiles through three cp.async stages, two tiles ahead. The score
/// products reduce over the head dim (S = Q Kᵀ, dP = dO Vᵀ and their
/// transposes); the gradient products over the 64 rows of the other side
/// (dV += Pᵀ dO, dK += dSᵀ Q, dQ += dS K), with P and dS as register A
/// fragments. Up to head dim 72 the dK/dV pass leaves tile t's gradient
/// products in flight into iteration t + 1 (until its score products are
/// issued and the first wait), so the barrier and the next tile's copies
/// overlap them; the other side's tiles then run kAhead = kStages − 2
/// tiles ahead (the stage refilled in iteration t was read in iteration
/// t − 2). At 88 only three stages fit two CTAs a multiprocessor, and
/// draining each tile so that the copies run two ahead was faster (H100,
/// 64 x 16 heads x 256: 0.338 against 0.350 ms).
template <int D> struct BwdStages {
  static constexpr int kStages = D <= 72 ? 4 : 3;
  static constexpr bool kInFlight = D <= 72;
  static constexpr int kAhead = kInFlight ? kStages - 2 : kStages - 1;
};

/// Shared memory of a gradWg CTA: own K and V (or Q and dO), kStages
/// stages of the other side's two tiles, kStages stages of L and Δ, and
/// slack for 1024-byte alignment.
template <int D> constexpr size_t gradWgSmem() {
  using W = wgattn::WgTile<D>;
  constexpr int S = BwdStages<D>::kStages;
  return (2 + 2 * S) * static_cast<size_t>(W::kBytes) + 2 * S * W::kRows * sizeof(float) + 1024;
}

/// Pass 3 on warpgroup products: dK and dV for one (key tile, sample·head).
///   Sᵀ = K Qᵀ, dPᵀ = V dOᵀ, Pᵀ = 2^(Sᵀ·sc − L) (0 past lq),
///   dSᵀ = Pᵀ ⊙ (dPᵀ − Δ), dV += Pᵀ dO, dK += dSᵀ Q.
template <typename T, int D>
__device__ __forceinline__ void keyValueGradWg(const GradParams &p, int block, uint8_t *smem) {
  using W = wgattn::WgTile<D>;
  constexpr int S = BwdStages<D>::kStages, A = BwdStages<D>::kAhead;
  uint8_t *sK = smem, *sV = sK + W::kBytes, *sQ = sV + W::kBytes, *sO = sQ + S * W::kBytes;
  float *sL = reinterpret_cast<float *>(sO + S * W::kBytes), *sDelta = sL + S * W::kRows;
  const int lane = threadIdx.x & 31;
  const int kTile = block % p.keyTiles, pair = block / p.keyTiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int k0 = kTile * W::kRows;
  const int validK = min(W::kRows, p.lk - k0);
  const int64_t kRow0 = static_cast<int64_t>(b) * p.lk + k0;
  const T *kG = static_cast<const T *>(p.k) + kRow0 * p.ldk + static_cast<int64_t>(h) * D;
  const T *vG = static_cast<const T *>(p.v) + kRow0 * p.ldv + static_cast<int64_t>(h) * D;
  const T *qG = static_cast<const T *>(p.q) + static_cast<int64_t>(b) * p.lq * p.ldq + static_cast<int64_t>(h) * D;
  const T *dOG = static_cast<const T *>(p.dO) + static_cast<int64_t>(b) * p.lq * p.ldo + static_cast<int64_t>(h) * D;
  const float *lG = p.lse + static_cast<int64_t>(pair) * p.lq;
  const float *deltaG = p.delta + static_cast<int64_t>(pair) * p.lq;
  const wgattn::WgTileStream<T, D, S> other(qG, p.ldq, sQ, dOG, p.ldo, sO, p.lq);
  const int nTiles = other.tiles;
  // Query tile t and its L and Δ (by cp.async too: a plain load would stall
  // the warpgroup's next products until it returned), one commit group.
  auto loadOther = [&](int t) {
    other.load(t);
    if (t < nTiles) {
      static_assert(W::kThreads == 2 * W::kRows, "a thread per statistic");
      const int i = threadIdx.x, r = i % W::kRows, qi = t * W::kRows + r;
      cpAsync4((i < W::kRows ? sL : sDelta) + (t % S) * W::kRows + r, (i < W::kRows ? lG : deltaG) + qi, qi < p.lq);
    }
    cpAsyncCommit();
  };
  wgattn::WgCopy<T, D>(p.ldk).load(sK, kG, validK);
  wgattn::WgCopy<T, D>(p.ldv).load(sV, vG, validK);
  for (int t = 0; t < A; ++t)
    loadOther(t);

  wgattn::WgAcc<D> dk, dv;
  dk.zero();
  dv.zero();
  for (int t = 0; t < nTiles; ++t) {
    const int st = t % S;
    cpAsyncWait<A - 1>();     // tile t (and the own tiles) landed; later tiles may be in flight
    wgmma::fenceProxyAsync(); // cp.async wrote through the generic proxy; wgmma reads through the async one
    __syncthreads();          // also: every thread has waited for the products that read stage (t + A) % S
    loadOther(t + A);
    const uint8_t *sQs = other.stage0(t), *sOs = other.stage1(t);
    const float *sLs = sL + st * W::kRows, *sDs = sDelta + st * W::kRows;
    const int validQ = p.lq - t * W::kRows;

    // Product groups in flight in turn: the last iteration's dV and dK
    // while these scores start, Pᵀ is taken while dPᵀ is computed, and
    // dSᵀ while dV accumulates.
    float s[32], dp[32];
    wgattn::scorePair<T, D>(s, sK, sQs, dp, sV, sOs);
    wgmma::wait<1>(); // all but dPᵀ: the last iteration's products (their pf, dsf are free) and Sᵀ
    // Columns are queries: s[4j + 2h + e] is query 8j + 2(lane % 4) + e.
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 l = *reinterpret_cast<const float2 *>(sLs + 8 * j + 2 * (lane & 3));
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int qc = 8 * j + 2 * (lane & 3) + e;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int i = 4 * j + 2 * hh + e;
          s[i] = qc < validQ ? attn::exp2Approx(fmaf(s[i], p.scaleLog2, -(e ? l.y : l.x))) : 0.0f;
        }
      }
    }
    uint32_t pf[4][4], dsf[4][4];
    wgattn::packWgA<T>(s, pf);
    wgmma::fence();
    wgattn::rowProduct<T, D>(dv, pf, sOs);
    wgmma::commit();
    wgmma::wait<1>();
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float2 delta = *reinterpret_cast<const float2 *>(sDs + 8 * j + 2 * (lane & 3));
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        dp[4 * j + 2 * hh] = s[4 * j + 2 * hh] * (dp[4 * j + 2 * hh] - delta.x);
        dp[4 * j + 2 * hh + 1] = s[4 * j + 2 * hh + 1] * (dp[4 * j + 2 * hh + 1] - delta.y);
      }
    }
    wgattn::packWgA<T>(dp, dsf);
    wgmma::fence();
    wgattn::rowProduct<T, D>(dk, dsf, sQs);
    wgmma::commit();
    if constexpr (!BwdStages<D>::kInFlight)
      wgmma::wait<0>();
  }
  wgmma::wait<0>();
  cpAsyncWait<0>();

  // Every warp's products have read the tiles before any is overwritten.
  // The other side's stages hold the staged gradients.
  __syncthreads();
  static_assert(S * W::kBytes >= W::kRows * W::kPitch * sizeof(T), "the other side's stages hold a staged gradient");
  T *stageK = reinterpret_cast<T *>(sQ), *stageV = reinterpret_cast<T *>(sO);
  if (p.dK != nullptr)
    wgattn::storeWgRows<T, D>(dk, p.scale, stageK,
                      static_cast<T *>(p.dK) + kRow0 * p.lddk + static_cast<int64_t>(h) * D, p.lddk, validK);
  if (p.dV != nullptr)
    wgattn::storeWgRows<T, D>(dv, 1.0f, stageV, static_cast<T *>(p.dV) + kRow0 * p.lddv + static_cast<int64_t>(h) * D,
                      p.lddv, validK);
  const int64_t chunk = static_cast<int64_t>(b) * p.keyTiles + kTile;
  float *scratch = reinterpret_cast<float *>(sK); // K's tile is free now
  if (p.partK != nullptr)
    tileColumnSums<T, W::kPitch, W::kThreads>(stageK, validK, D, scratch,
                                               p.partK + chunk * p.partLdK + static_cast<int64_t>(h) * D);
  if (p.partV != nullptr)
    tileColumnSums<T, W::kPitch, W::kThreads>(stageV, validK, D, scratch,
                                               p.partV + chunk * p.partLdV + static_cast<int64_t>(h) * D);
}

/// Pass 2 on warpgroup products: dQ for one (query tile, sample·head).
///   S = Q Kᵀ, dP = dO Vᵀ, P = 2^(S·sc − L) (0 past lk),
///   dS = P ⊙ (dP − Δ), dQ += dS K.
template <typename T, int D>
__device__ __forceinline__ void queryGradWg(const GradParams &p, int block, uint8_t *smem) {
  using W = wgattn::WgTile<D>;
  constexpr int S = BwdStages<D>::kStages, A = BwdStages<D>::kAhead;
  uint8_t *sQ = smem, *sO = sQ + W::kBytes, *sK = sO + W::kBytes, *sV = sK + S * W::kBytes;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const wgattn::WgQueryItem<T, D> item(p, block, p.queryTiles);
  const int validQ = item.validRows;
  const wgattn::WgTileStream<T, D, S> other = item.template keyValues<S>(p, sK, sV);
  const int nTiles = other.tiles;
  auto loadOther = [&](int j) {
    other.load(j);
    cpAsyncCommit();
  };
  wgattn::WgCopy<T, D>(p.ldq).load(sQ, item.rows(static_cast<const T *>(p.q), p.ldq), validQ);
  wgattn::WgCopy<T, D>(p.ldo).load(sO, item.rows(static_cast<const T *>(p.dO), p.ldo), validQ);
  for (int j = 0; j < A; ++j)
    loadOther(j);

  // The thread's rows warp·16 + lane/4 + 8h (rows past lq: 0, never stored).
  float rowL[2], rowDelta[2];
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int row = warp * 16 + (lane >> 2) + 8 * hh;
    rowL[hh] = row < validQ ? p.lse[item.statAt(p.lq, row)] : 0.0f;
    rowDelta[hh] = row < validQ ? p.delta[item.statAt(p.lq, row)] : 0.0f;
  }
  wgattn::WgAcc<D> dq;
  dq.zero();

  for (int j = 0; j < nTiles; ++j) {
    cpAsyncWait<A - 1>();
    wgmma::fenceProxyAsync();
    __syncthreads();
    loadOther(j + A);
    const uint8_t *sKs = other.stage0(j), *sVs = other.stage1(j);
    const int validKeys = p.lk - j * W::kRows;

    // P is taken while dP is computed.
    float s[32], dp[32];
    wgattn::scorePair<T, D>(s, sQ, sKs, dp, sO, sVs);
    wgmma::wait<1>(); // S
    // Columns are keys: s[4n + 2h + e] is key 8n + 2(lane % 4) + e of row h.
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool valid = 8 * n + 2 * (lane & 3) + e < validKeys;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int i = 4 * n + 2 * hh + e;
          s[i] = valid ? attn::exp2Approx(fmaf(s[i], p.scaleLog2, -rowL[hh])) : 0.0f;
        }
      }
    wgmma::wait<0>();
#pragma unroll
    for (int i = 0; i < 32; ++i)
      s[i] *= dp[i] - rowDelta[(i >> 1) & 1];
    uint32_t dsf[4][4];
    wgattn::packWgA<T>(s, dsf);
    wgmma::fence();
    wgattn::rowProduct<T, D>(dq, dsf, sKs);
    wgmma::commit();
    // Left in flight into the next iteration, this product made ptxas
    // serialize every wgmma of the kernel (C7515); the dK/dV loop's do not.
    wgmma::wait<0>();
  }
  cpAsyncWait<0>();

  __syncthreads();
  static_assert(S * W::kBytes >= W::kRows * W::kPitch * sizeof(T), "K's stages hold the staged dQ");
  T *stage = reinterpret_cast<T *>(sK); // K's stages hold the staged dQ
  wgattn::storeWgRows<T, D>(dq, p.scale, stage, item.rows(static_cast<T *>(p.dQ), p.lddq), p.lddq, validQ);
  if (p.partQ != nullptr) {
    // The (sample, tile) chunk's row of partials, this head's columns.
    const int64_t chunk = static_cast<int64_t>(item.pair / p.heads) * p.queryTiles + item.tile;
    tileColumnSums<T, W::kPitch, W::kThreads>(stage, validQ, D, reinterpret_cast<float *>(sV),
                                               p.partQ + chunk * p.partLdQ + item.col);
  }
}

/// Passes 2 and 3 in one launch, as gradTc: the dK/dV CTAs first.
template <typename T, int D>
__global__ void __launch_bounds__(128, 2) gradWg(const __grid_constant__ GradParams p) {
  extern __shared__ float4 wgSmemRaw[];
  uint8_t *smem = reinterpret_cast<uint8_t *>((reinterpret_cast<uintptr_t>(wgSmemRaw) + 1023) &
                                              ~static_cast<uintptr_t>(1023));
  const int block = static_cast<int>(blockIdx.x);
  if (block < p.keyValueBlocks)
    keyValueGradWg<T, D>(p, block, smem);
  else
    queryGradWg<T, D>(p, block - p.keyValueBlocks, smem);
}

//===----------------------------------------------------------------------===//
// SIMT path (f32; 16-bit head dims above 128)
//===----------------------------------------------------------------------===//

/// 32 own rows per CTA of 8 warps; warp w owns rows w, w+8, w+16, w+24 and
/// lane j takes row j of the other side's 32-row tile, so that one warp
/// computes 32 scores of an own row at once (a warp-wide softmax step), and
/// then, lanes over columns, folds them into the row's accumulators. Other-
/// side tiles use an odd row pitch (d + 1) so that the 32 lanes reading one
/// column of 32 rows hit 32 banks.
constexpr int kSimtRows = 32;
constexpr int kSimtThreads = 256;
constexpr int kSimtRowsPerWarp = kSimtRows / (kSimtThreads / 32);

__device__ __forceinline__ float warpSum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}
__device__ __forceinline__ float warpMax(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  return x;
}

/// Rows [0, valid) of a 32 x cols block at g into shared memory with pitch
/// `pitch`, zeros below.
template <typename T>
__device__ __forceinline__ void loadRowsF(float *s, int pitch, const T *g, int64_t ld, int valid,
                                          int cols) {
  for (int i = threadIdx.x; i < kSimtRows * cols; i += kSimtThreads) {
    const int r = i / cols, c = i - r * cols;
    s[r * pitch + c] = r < valid ? toF<T>(g[static_cast<int64_t>(r) * ld + c]) : 0.0f;
  }
}

/// Shared floats of the three SIMT kernels.
inline size_t simtStatsFloats(int dk, int dv) {
  return size_t(kSimtRows) * (dk + dv + (dk + 1) + (dv + 1));
}
inline size_t simtQueryFloats(int dk, int dv) {
  return size_t(kSimtRows) * (2 * dk + dv + (dk + 1) + (dv + 1) + kSimtRows);
}
inline size_t simtKeyValueFloats(int dk, int dv) {
  return size_t(kSimtRows) * (2 * dk + 2 * dv + (dk + 1) + (dv + 1) + 2 * kSimtRows + 2);
}

/// Pass 1 (SIMT): natural-log L = max + log Σ and Δ = rowsum(P ⊙ dP), online
/// over key tiles of 32 as in statsTc.
template <typename T>
__global__ void __launch_bounds__(kSimtThreads) statsSimt(const __grid_constant__ GradParams p) {
  extern __shared__ float smemF[];
  const int dk = p.dk, dv = p.dv;
  float *sQ = smemF;                     // 32 x dk
  float *sO = sQ + kSimtRows * dk;       // 32 x dv (dO)
  float *sK = sO + kSimtRows * dv;       // 32 x (dk + 1)
  float *sV = sK + kSimtRows * (dk + 1); // 32 x (dv + 1)

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qTile = blockIdx.x % p.tiles, pair = blockIdx.x / p.tiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int q0 = qTile * kSimtRows;
  const int validQ = min(kSimtRows, p.lq - q0);
  const int64_t qRow0 = static_cast<int64_t>(b) * p.lq + q0;
  const T *kG = static_cast<const T *>(p.k) + static_cast<int64_t>(b) * p.lk * p.ldk +
                static_cast<int64_t>(h) * dk;
  const T *vG = static_cast<const T *>(p.v) + static_cast<int64_t>(b) * p.lk * p.ldv +
                static_cast<int64_t>(h) * dv;
  loadRowsF<T>(sQ, dk, static_cast<const T *>(p.q) + qRow0 * p.ldq + static_cast<int64_t>(h) * dk,
               p.ldq, validQ, dk);
  loadRowsF<T>(sO, dv, static_cast<const T *>(p.dO) + qRow0 * p.ldo + static_cast<int64_t>(h) * dv,
               p.ldo, validQ, dv);

  float runMax[kSimtRowsPerWarp], runSum[kSimtRowsPerWarp], runDot[kSimtRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    runMax[r] = -INFINITY;
    runSum[r] = 0.0f;
    runDot[r] = 0.0f;
  }
  for (int j0 = 0; j0 < p.lk; j0 += kSimtRows) {
    __syncthreads(); // the previous tile is consumed
    const int validK = min(kSimtRows, p.lk - j0);
    loadRowsF<T>(sK, dk + 1, kG + static_cast<int64_t>(j0) * p.ldk, p.ldk, validK, dk);
    loadRowsF<T>(sV, dv + 1, vG + static_cast<int64_t>(j0) * p.ldv, p.ldv, validK, dv);
    __syncthreads();
    const bool valid = lane < validK;
    // Unrolled so that the per-row statistics stay in registers.
#pragma unroll
    for (int r = 0; r < kSimtRowsPerWarp; ++r) {
      const int i = warp + 8 * r;
      float dot = 0.0f, dp = 0.0f;
      for (int c = 0; c < dk; ++c)
        dot = fmaf(sQ[i * dk + c], sK[lane * (dk + 1) + c], dot);
      for (int c = 0; c < dv; ++c)
        dp = fmaf(sO[i * dv + c], sV[lane * (dv + 1) + c], dp);
      const float score = valid ? p.scale * dot : -INFINITY;
      const float newMax = fmaxf(runMax[r], warpMax(score)); // finite: key j0 is valid
      const float alpha = runMax[r] == -INFINITY ? 0.0f : expf(runMax[r] - newMax);
      const float pr = valid ? expf(score - newMax) : 0.0f;
      runSum[r] = runSum[r] * alpha + warpSum(pr);
      runDot[r] = runDot[r] * alpha + warpSum(pr * dp);
      runMax[r] = newMax;
    }
  }
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const int i = warp + 8 * r;
    if (i < validQ && lane == 0) {
      const int64_t at = static_cast<int64_t>(pair) * p.lq + q0 + i;
      p.lse[at] = runMax[r] + logf(runSum[r]);
      p.delta[at] = runDot[r] / runSum[r];
    }
  }
}

/// Pass 2 (SIMT): dQ for 32 query rows, key tiles of 32.
template <typename T>
__global__ void __launch_bounds__(kSimtThreads) queryGradSimt(const __grid_constant__ GradParams p) {
  extern __shared__ float smemF[];
  const int dk = p.dk, dv = p.dv;
  float *sQ = smemF;                      // 32 x dk
  float *sO = sQ + kSimtRows * dk;        // 32 x dv (dO)
  float *sK = sO + kSimtRows * dv;        // 32 x (dk + 1)
  float *sV = sK + kSimtRows * (dk + 1);  // 32 x (dv + 1)
  float *sDs = sV + kSimtRows * (dv + 1); // 32 x 32
  float *sAcc = sDs + kSimtRows * kSimtRows; // 32 x dk

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int qTile = blockIdx.x % p.tiles, pair = blockIdx.x / p.tiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int q0 = qTile * kSimtRows;
  const int validQ = min(kSimtRows, p.lq - q0);
  const int64_t qRow0 = static_cast<int64_t>(b) * p.lq + q0;
  const T *kG = static_cast<const T *>(p.k) + static_cast<int64_t>(b) * p.lk * p.ldk +
                static_cast<int64_t>(h) * dk;
  const T *vG = static_cast<const T *>(p.v) + static_cast<int64_t>(b) * p.lk * p.ldv +
                static_cast<int64_t>(h) * dv;
  loadRowsF<T>(sQ, dk, static_cast<const T *>(p.q) + qRow0 * p.ldq + static_cast<int64_t>(h) * dk,
               p.ldq, validQ, dk);
  loadRowsF<T>(sO, dv, static_cast<const T *>(p.dO) + qRow0 * p.ldo + static_cast<int64_t>(h) * dv,
               p.ldo, validQ, dv);
  for (int i = threadIdx.x; i < kSimtRows * dk; i += kSimtThreads)
    sAcc[i] = 0.0f;
  float rowL[kSimtRowsPerWarp], rowDelta[kSimtRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const int i = warp + 8 * r;
    const int64_t at = static_cast<int64_t>(pair) * p.lq + q0 + i;
    rowL[r] = i < validQ ? p.lse[at] : 0.0f;
    rowDelta[r] = i < validQ ? p.delta[at] : 0.0f;
  }

  for (int j0 = 0; j0 < p.lk; j0 += kSimtRows) {
    __syncthreads();
    const int validK = min(kSimtRows, p.lk - j0);
    loadRowsF<T>(sK, dk + 1, kG + static_cast<int64_t>(j0) * p.ldk, p.ldk, validK, dk);
    loadRowsF<T>(sV, dv + 1, vG + static_cast<int64_t>(j0) * p.ldv, p.ldv, validK, dv);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kSimtRowsPerWarp; ++r) {
      const int i = warp + 8 * r;
      float dot = 0.0f, dp = 0.0f;
      for (int c = 0; c < dk; ++c)
        dot = fmaf(sQ[i * dk + c], sK[lane * (dk + 1) + c], dot);
      for (int c = 0; c < dv; ++c)
        dp = fmaf(sO[i * dv + c], sV[lane * (dv + 1) + c], dp);
      const float pr = lane < validK ? expf(p.scale * dot - rowL[r]) : 0.0f;
      sDs[i * kSimtRows + lane] = pr * (dp - rowDelta[r]);
      __syncwarp();
      for (int c = lane; c < dk; c += 32) {
        float a = sAcc[i * dk + c];
        for (int jj = 0; jj < kSimtRows; ++jj)
          a = fmaf(sDs[i * kSimtRows + jj], sK[jj * (dk + 1) + c], a);
        sAcc[i * dk + c] = a;
      }
      __syncwarp();
    }
  }
  T *dQG = static_cast<T *>(p.dQ) + qRow0 * p.lddq + static_cast<int64_t>(h) * dk;
#pragma unroll 1
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const int i = warp + 8 * r;
    if (i < validQ)
      for (int c = lane; c < dk; c += 32)
        dQG[static_cast<int64_t>(i) * p.lddq + c] = fromF<T>(p.scale * sAcc[i * dk + c]);
  }
}

/// Pass 3 (SIMT): dK and dV for 32 key rows, query tiles of 32.
template <typename T>
__global__ void __launch_bounds__(kSimtThreads) keyValueGradSimt(const __grid_constant__ GradParams p) {
  extern __shared__ float smemF[];
  const int dk = p.dk, dv = p.dv;
  float *sK = smemF;                        // 32 x dk
  float *sV = sK + kSimtRows * dk;          // 32 x dv
  float *sQ = sV + kSimtRows * dv;          // 32 x (dk + 1)
  float *sO = sQ + kSimtRows * (dk + 1);    // 32 x (dv + 1) (dO)
  float *sP = sO + kSimtRows * (dv + 1);    // 32 x 32 (key, query)
  float *sDs = sP + kSimtRows * kSimtRows;  // 32 x 32
  float *sAccK = sDs + kSimtRows * kSimtRows; // 32 x dk
  float *sAccV = sAccK + kSimtRows * dk;      // 32 x dv
  float *sL = sAccV + kSimtRows * dv;         // 32
  float *sDelta = sL + kSimtRows;             // 32

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kTile = blockIdx.x % p.tiles, pair = blockIdx.x / p.tiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int k0 = kTile * kSimtRows;
  const int validK = min(kSimtRows, p.lk - k0);
  const int64_t kRow0 = static_cast<int64_t>(b) * p.lk + k0;
  const T *qG = static_cast<const T *>(p.q) + static_cast<int64_t>(b) * p.lq * p.ldq +
                static_cast<int64_t>(h) * dk;
  const T *dOG = static_cast<const T *>(p.dO) + static_cast<int64_t>(b) * p.lq * p.ldo +
                 static_cast<int64_t>(h) * dv;
  const float *lG = p.lse + static_cast<int64_t>(pair) * p.lq;
  const float *deltaG = p.delta + static_cast<int64_t>(pair) * p.lq;
  loadRowsF<T>(sK, dk, static_cast<const T *>(p.k) + kRow0 * p.ldk + static_cast<int64_t>(h) * dk,
               p.ldk, validK, dk);
  loadRowsF<T>(sV, dv, static_cast<const T *>(p.v) + kRow0 * p.ldv + static_cast<int64_t>(h) * dv,
               p.ldv, validK, dv);
  for (int i = threadIdx.x; i < kSimtRows * dk; i += kSimtThreads)
    sAccK[i] = 0.0f;
  for (int i = threadIdx.x; i < kSimtRows * dv; i += kSimtThreads)
    sAccV[i] = 0.0f;

  for (int i0 = 0; i0 < p.lq; i0 += kSimtRows) {
    __syncthreads();
    const int validQ = min(kSimtRows, p.lq - i0);
    loadRowsF<T>(sQ, dk + 1, qG + static_cast<int64_t>(i0) * p.ldq, p.ldq, validQ, dk);
    loadRowsF<T>(sO, dv + 1, dOG + static_cast<int64_t>(i0) * p.ldo, p.ldo, validQ, dv);
    if (threadIdx.x < kSimtRows) {
      const bool ok = static_cast<int>(threadIdx.x) < validQ;
      sL[threadIdx.x] = ok ? lG[i0 + threadIdx.x] : 0.0f;
      sDelta[threadIdx.x] = ok ? deltaG[i0 + threadIdx.x] : 0.0f;
    }
    __syncthreads();
#pragma unroll 1
    for (int r = 0; r < kSimtRowsPerWarp; ++r) {
      const int j = warp + 8 * r;
      float dot = 0.0f, dp = 0.0f;
      for (int c = 0; c < dk; ++c)
        dot = fmaf(sK[j * dk + c], sQ[lane * (dk + 1) + c], dot);
      for (int c = 0; c < dv; ++c)
        dp = fmaf(sV[j * dv + c], sO[lane * (dv + 1) + c], dp);
      const float pr = lane < validQ ? expf(p.scale * dot - sL[lane]) : 0.0f;
      sP[j * kSimtRows + lane] = pr;
      sDs[j * kSimtRows + lane] = pr * (dp - sDelta[lane]);
      __syncwarp();
      for (int c = lane; c < dv; c += 32) {
        float a = sAccV[j * dv + c];
        for (int ii = 0; ii < kSimtRows; ++ii)
          a = fmaf(sP[j * kSimtRows + ii], sO[ii * (dv + 1) + c], a);
        sAccV[j * dv + c] = a;
      }
      for (int c = lane; c < dk; c += 32) {
        float a = sAccK[j * dk + c];
        for (int ii = 0; ii < kSimtRows; ++ii)
          a = fmaf(sDs[j * kSimtRows + ii], sQ[ii * (dk + 1) + c], a);
        sAccK[j * dk + c] = a;
      }
      __syncwarp();
    }
  }
#pragma unroll 1
  for (int r = 0; r < kSimtRowsPerWarp; ++r) {
    const int j = warp + 8 * r;
    if (j >= validK)
      continue;
    if (p.dK != nullptr) {
      T *row = static_cast<T *>(p.dK) + (kRow0 + j) * p.lddk + static_cast<int64_t>(h) * dk;
      for (int c = lane; c < dk; c += 32)
        row[c] = fromF<T>(p.scale * sAccK[j * dk + c]);
    }
    if (p.dV != nullptr) {
      T *row = static_cast<T *>(p.dV) + (kRow0 + j) * p.lddv + static_cast<int64_t>(h) * dv;
      for (int c = lane; c < dv; c += 32)
        row[c] = fromF<T>(sAccV[j * dv + c]);
    }
  }
}

//===----------------------------------------------------------------------===//
// Host side
//===----------------------------------------------------------------------===//

unsigned gridOf(int64_t tiles, int64_t pairs) {
  const int64_t blocks = tiles * pairs;
  if (blocks > INT32_MAX)
    fail(kName, ": ", tiles, " tiles x ", pairs, " (sample, head) pairs exceed the grid limit");
  return static_cast<unsigned>(blocks);
}

/// out[c] = Σ_r g[r·ld + c] in row order, a thread per column: the column
/// sums of the SIMT path (f32 and head dims above 128, where the
/// gradients' own kernels take no partials).
template <typename T>
__global__ void columnSumsSimt(const T *g, int64_t rows, int64_t cols, int64_t ld, T *out) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols)
    return;
  float acc = 0.0f;
  for (int64_t r = 0; r < rows; ++r)
    acc += toF<T>(g[r * ld + c]);
  out[c] = fromF<T>(acc);
}

/// Rows of the tensor-core passes' own tiles (BwdTile: 4 warps of 16), and
/// so of the column sums' chunks.
constexpr int64_t kSumTileRows = 64;

/// Where the tensor-core passes leave the column sums' partials: the three
/// sums side by side in one row per (sample, tile) chunk when the query
/// and key tiles agree and the outputs are adjacent parts of one vector
/// (one finishing launch then covers all three), else a plane each.
struct SumPlan {
  bool joined = false;
  int64_t qChunks = 0, kChunks = 0;
};

SumPlan planSums(GradParams &p, const AttentionGradSums &sums, int64_t batch, int64_t qTiles, int64_t kTiles,
                 size_t elem, float *base) {
  SumPlan plan;
  plan.qChunks = batch * qTiles;
  plan.kChunks = batch * kTiles;
  const int64_t wq = static_cast<int64_t>(p.heads) * p.dk, wk = wq, wv = static_cast<int64_t>(p.heads) * p.dv;
  const char *q = static_cast<const char *>(sums.q), *k = static_cast<const char *>(sums.k),
             *v = static_cast<const char *>(sums.v);
  plan.joined = q != nullptr && k == q + wq * elem && v == k + wk * elem && qTiles == kTiles;
  if (plan.joined) {
    p.partQ = base;
    p.partK = base + wq;
    p.partV = base + wq + wk;
    p.partLdQ = p.partLdK = p.partLdV = wq + wk + wv;
    return plan;
  }
  p.partQ = q != nullptr ? base : nullptr;
  p.partK = k != nullptr ? base + plan.qChunks * wq : nullptr;
  p.partV = v != nullptr ? base + plan.qChunks * wq + plan.kChunks * wk : nullptr;
  p.partLdQ = wq;
  p.partLdK = wk;
  p.partLdV = wv;
  return plan;
}

template <typename T>
void finishSums(cudaStream_t stream, const GradParams &p, const SumPlan &plan, const AttentionGradSums &sums) {
  const char *what = "attentionBackward (column sums)";
  if (plan.joined) {
    launchFinishColumnSums<T>(stream, p.partQ, 1, plan.qChunks, p.partLdQ, static_cast<T *>(sums.q), 0, what);
    return;
  }
  if (p.partQ != nullptr)
    launchFinishColumnSums<T>(stream, p.partQ, 1, plan.qChunks, p.partLdQ, static_cast<T *>(sums.q), 0, what);
  if (p.partK != nullptr)
    launchFinishColumnSums<T>(stream, p.partK, 1, plan.kChunks, p.partLdK, static_cast<T *>(sums.k), 0, what);
  if (p.partV != nullptr)
    launchFinishColumnSums<T>(stream, p.partV, 1, plan.kChunks, p.partLdV, static_cast<T *>(sums.v), 0, what);
}

/// Pass 1 for the tensor-core passes: L (log2 units) and Δ, from the
/// forward's statistics when given, else by statsTc.
template <typename T, int D>
void launchStatisticsTc(cudaStream_t stream, GradParams p, int64_t pairs, int64_t qTiles,
                        const SavedStatistics &saved) {
  using C = typename BwdTile<D>::C;
  if (saved.lse != nullptr) {
    launchSavedStatistics<T>(stream, p, saved.lse, saved.out, 1.4426950408889634f, saved.batch);
    return;
  }
  constexpr auto kernel = statsTc<T, D>;
  const size_t smem = static_cast<size_t>(2 * C::kQElems + 4 * C::kKVElems) * sizeof(T);
  allowSharedMemory<kernel>(smem, kName);
  p.tiles = static_cast<int32_t>(qTiles);
  kernel<<<gridOf(qTiles, pairs), C::kThreads, smem, stream>>>(p);
  checkLaunch("attentionBackward (statistics)");
}

template <typename T, int D>
void launchTc(cudaStream_t stream, GradParams p, int64_t pairs, bool wantQ, bool wantKV,
              const SavedStatistics &saved, const AttentionGradSums &sums, float *partials) {
  using C = typename BwdTile<D>::C;
  constexpr int BN = BwdTile<D>::kBN;
  static_assert(C::kBM == kSumTileRows, "the column sums' workspace assumes 64-row tiles");
  const int64_t qTiles = (p.lq + C::kBM - 1) / C::kBM;
  const int64_t kTiles = (p.lk + C::kBM - 1) / C::kBM;
  const size_t elem = sizeof(T);
  const SumPlan sumPlan = sums.any() ? planSums(p, sums, saved.batch, qTiles, kTiles, elem, partials) : SumPlan{};
  launchStatisticsTc<T, D>(stream, p, pairs, qTiles, saved);
  if (!wantQ && !wantKV)
    return;
  constexpr auto kernel = gradTc<T, D>;
  const size_t querySmem = static_cast<size_t>(2 * C::kQElems + 4 * C::kKVElems) * elem;
  const size_t keyValueSmem = querySmem + 4 * BN * sizeof(float);
  const size_t smem = wantKV ? keyValueSmem : querySmem;
  allowSharedMemory<kernel>(smem, kName);
  p.queryTiles = static_cast<int32_t>(qTiles);
  p.keyTiles = static_cast<int32_t>(kTiles);
  const unsigned blocks = gridOf((wantKV ? kTiles : 0) + (wantQ ? qTiles : 0), pairs);
  p.keyValueBlocks = static_cast<int32_t>(wantKV ? kTiles * pairs : 0); // <= blocks
  kernel<<<blocks, C::kThreads, smem, stream>>>(p);
  checkLaunch("attentionBackward (dQ, dK, dV)");
  if (sums.any())
    finishSums<T>(stream, p, sumPlan, sums);
}

template <typename T, int D>
void launchWg(cudaStream_t stream, GradParams p, int64_t pairs, bool wantQ, bool wantKV,
              const SavedStatistics &saved, const AttentionGradSums &sums, float *partials) {
  using W = wgattn::WgTile<D>;
  static_assert(W::kRows == kSumTileRows, "the column sums' workspace assumes 64-row tiles");
  const int64_t qTiles = (p.lq + W::kRows - 1) / W::kRows;
  const int64_t kTiles = (p.lk + W::kRows - 1) / W::kRows;
  const SumPlan sumPlan = sums.any() ? planSums(p, sums, saved.batch, qTiles, kTiles, sizeof(T), partials) : SumPlan{};
  launchStatisticsTc<T, D>(stream, p, pairs, qTiles, saved);
  if (!wantQ && !wantKV)
    return;
  constexpr auto kernel = gradWg<T, D>;
  constexpr size_t smem = gradWgSmem<D>();
  allowSharedMemory<kernel>(smem, kName);
  p.queryTiles = static_cast<int32_t>(qTiles);
  p.keyTiles = static_cast<int32_t>(kTiles);
  const unsigned blocks = gridOf((wantKV ? kTiles : 0) + (wantQ ? qTiles : 0), pairs);
  p.keyValueBlocks = static_cast<int32_t>(wantKV ? kTiles * pairs : 0);
  kernel<<<blocks, W::kThreads, smem, stream>>>(p);
  checkLaunch("attentionBackward (dQ, dK, dV; wgmma)");
  if (sums.any())
    finishSums<T>(stream, p, sumPlan, sums);
}

template <typename T>
void launchSimt(cudaStream_t stream, GradParams p, int64_t pairs, bool wantQ, bool wantKV,
                const SavedStatistics &saved, const AttentionGradSums &sums) {
  const int64_t qTiles = (p.lq + kSimtRows - 1) / kSimtRows;
  const int64_t kTiles = (p.lk + kSimtRows - 1) / kSimtRows;
  if (saved.lse != nullptr) {
    launchSavedStatistics<T>(stream, p, saved.lse, saved.out, 1.0f, saved.batch);
  } else {
    constexpr auto kernel = statsSimt<T>;
    const size_t smem = simtStatsFloats(p.dk, p.dv) * sizeof(float);
    allowSharedMemory<kernel>(smem, kName);
    p.tiles = static_cast<int32_t>(qTiles);
    kernel<<<gridOf(qTiles, pairs), kSimtThreads, smem, stream>>>(p);
    checkLaunch("attentionBackward (statistics, simt)");
  }
  if (wantQ) {
    constexpr auto kernel = queryGradSimt<T>;
    const size_t smem = simtQueryFloats(p.dk, p.dv) * sizeof(float);
    allowSharedMemory<kernel>(smem, kName);
    p.tiles = static_cast<int32_t>(qTiles);
    kernel<<<gridOf(qTiles, pairs), kSimtThreads, smem, stream>>>(p);
    checkLaunch("attentionBackward (dQ, simt)");
  }
  if (wantKV) {
    constexpr auto kernel = keyValueGradSimt<T>;
    const size_t smem = simtKeyValueFloats(p.dk, p.dv) * sizeof(float);
    allowSharedMemory<kernel>(smem, kName);
    p.tiles = static_cast<int32_t>(kTiles);
    kernel<<<gridOf(kTiles, pairs), kSimtThreads, smem, stream>>>(p);
    checkLaunch("attentionBackward (dK, dV, simt)");
  }
  const int64_t qRows = saved.batch * p.lq, kRows = saved.batch * p.lk;
  auto sum = [&](const void *g, int64_t rows, int64_t cols, int64_t ld, void *out) {
    if (out == nullptr)
      return;
    columnSumsSimt<T><<<blocksFor(cols, 128), 128, 0, stream>>>(static_cast<const T *>(g), rows, cols, ld,
                                                                static_cast<T *>(out));
    checkLaunch("attentionBackward (column sums, simt)");
  };
  sum(p.dQ, qRows, static_cast<int64_t>(p.heads) * p.dk, p.lddq, sums.q);
  sum(p.dK, kRows, static_cast<int64_t>(p.heads) * p.dk, p.lddk, sums.k);
  sum(p.dV, kRows, static_cast<int64_t>(p.heads) * p.dv, p.lddv, sums.v);
}

template <typename T>
void dispatch16(cudaStream_t s, const GradParams &p, int64_t pairs, bool wantQ, bool wantKV,
                const SavedStatistics &saved, const AttentionGradSums &sums, float *partials) {
  // Equal head dims of 64, 72 or 88 with aligned views take the wgmma
  // kernels, unless DIFFRT_ATTENTION_BACKWARD=mma asks for the mma.sync
  // ones (read per call, for comparisons and tests).
  const char *path = std::getenv("DIFFRT_ATTENTION_BACKWARD");
  const bool forceMma = path != nullptr && std::string(path) == "mma";
  if (!forceMma && p.aligned && p.dk == p.dv) {
    if (p.dk == 64)
      return launchWg<T, 64>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
    if (p.dk == 72)
      return launchWg<T, 72>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
    if (p.dk == 88)
      return launchWg<T, 88>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
  }
  const int need = std::max(p.dk, p.dv);
  if (need <= 32)
    launchTc<T, 32>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
  else if (need <= 64)
    launchTc<T, 64>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
  else if (need <= 72)
    launchTc<T, 72>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
  else if (need <= 88)
    launchTc<T, 88>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
  else if (need <= 128)
    launchTc<T, 128>(s, p, pairs, wantQ, wantKV, saved, sums, partials);
  else
    launchSimt<T>(s, p, pairs, wantQ, wantKV, saved, sums);
}

} // namespace

size_t attentionBackwardWorkspaceBytes(int64_t batch, int64_t lq, int64_t lk, int64_t heads,
                                       int64_t headDim, DType dtype, int64_t valueDim, bool columnSums) {
  (void)dtype;
  if (batch <= 0 || lq <= 0 || heads <= 0)
    return 0;
  // L and Δ: one f32 each per (sample, head, query).
  size_t floats = 2 * static_cast<size_t>(batch * heads * lq);
  if (columnSums) {
    // The sums' partials: a row per (sample, 64-row tile) of q, and of k
    // and v (see planSums).
    const int64_t dv = valueDim > 0 ? valueDim : headDim;
    const int64_t qTiles = (lq + kSumTileRows - 1) / kSumTileRows, kTiles = (lk + kSumTileRows - 1) / kSumTileRows;
    floats += static_cast<size_t>(batch * heads * (qTiles * headDim + kTiles * (headDim + dv)));
  }
  return floats * sizeof(float);
}

void attentionBackward(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v,
                       int64_t batch, int64_t lq, int64_t lk, int64_t heads, float scale,
                       DConstMat dOut, DMat dQ, DMat dK, DMat dV, Workspace ws,
                       const float *savedLogsumexp, DConstMat savedOut, const AttentionGradSums &sums) {
  if (dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F32)
    fail(kName, ": unsupported element type ", dtypeName(dtype));
  checkDPositive(kName, "batch", batch);
  checkDPositive(kName, "lq", lq);
  checkDPositive(kName, "lk", lk);
  checkDPositive(kName, "heads", heads);
  if (q.cols % heads != 0 || v.cols % heads != 0)
    fail(kName, ": ", heads, " heads do not divide the q width ", q.cols, " or the v width ",
         v.cols);
  const int64_t dk = q.cols / heads, dv = v.cols / heads;
  if (dk == 0 || dv == 0)
    fail(kName, ": empty head dims (", dk, ", ", dv, ")");
  checkDView(kName, "q", q, batch * lq, heads * dk);
  checkDView(kName, "k", k, batch * lk, heads * dk);
  checkDView(kName, "v", v, batch * lk, heads * dv);
  checkDView(kName, "dOut", dOut, batch * lq, heads * dv);
  const bool wantQ = dQ.data != nullptr, wantK = dK.data != nullptr, wantV = dV.data != nullptr;
  if ((savedLogsumexp == nullptr) != (savedOut.data == nullptr))
    fail(kName, ": the forward's log-sum-exp and output come together (got only the ",
         savedLogsumexp != nullptr ? "log-sum-exp" : "output", ")");
  if (savedOut.data != nullptr)
    checkDView(kName, "the saved output", savedOut, batch * lq, heads * dv);
  if (wantQ)
    checkDView(kName, "dQ", dQ, batch * lq, heads * dk);
  if (wantK)
    checkDView(kName, "dK", dK, batch * lk, heads * dk);
  if (wantV)
    checkDView(kName, "dV", dV, batch * lk, heads * dv);
  const size_t elem = dtypeSize(dtype);
  // dQ, dK and dV may share one packed buffer (disjoint columns), so only
  // overlaps with the inputs are errors, as in the CPU reference.
  for (DConstMat g : {DConstMat(dQ), DConstMat(dK), DConstMat(dV)})
    if (overlapsD(g, q, elem) || overlapsD(g, k, elem) || overlapsD(g, v, elem) ||
        overlapsD(g, dOut, elem) || overlapsD(g, savedOut, elem))
      fail(kName, ": a gradient overlaps q, k, v, dOut or the saved output");
  if ((sums.q != nullptr && !wantQ) || (sums.k != nullptr && !wantK) || (sums.v != nullptr && !wantV))
    fail(kName, ": a gradient's column sums are wanted without the gradient");
  if (!wantQ && !wantK && !wantV)
    return;
  if (lq > INT32_MAX || lk > INT32_MAX || heads > INT32_MAX || dk > INT32_MAX / 4 ||
      dv > INT32_MAX / 4 || batch * heads > INT32_MAX)
    fail(kName, ": sequence lengths ", lq, ", ", lk, ", heads ", heads, " and head dims ", dk, ", ",
         dv, " must fit 32 bits");
  const size_t need = attentionBackwardWorkspaceBytes(batch, lq, lk, heads, dk, dtype, dv, sums.any());
  if (ws.bytes < need || (need > 0 && ws.data == nullptr))
    fail(kName, ": workspace of ", ws.bytes, " bytes is too small, ", need, " bytes needed");
  if (reinterpret_cast<uintptr_t>(ws.data) % alignof(float) != 0)
    fail(kName, ": workspace is not 4-byte aligned");

  GradParams p{};
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.dO = dOut.data;
  p.dQ = dQ.data;
  p.dK = dK.data;
  p.dV = dV.data;
  p.ldq = q.ld;
  p.ldk = k.ld;
  p.ldv = v.ld;
  p.ldo = dOut.ld;
  p.lddq = dQ.ld;
  p.lddk = dK.ld;
  p.lddv = dV.ld;
  p.lq = static_cast<int32_t>(lq);
  p.lk = static_cast<int32_t>(lk);
  p.heads = static_cast<int32_t>(heads);
  p.dk = static_cast<int32_t>(dk);
  p.dv = static_cast<int32_t>(dv);
  p.scale = scale;
  p.scaleLog2 = scale * 1.4426950408889634f;
  // As in the forward: the floor keeps 0·(-inf) for masked keys out of the
  // statistics pass when scale is 0.
  p.absScaleLog2 = std::max(std::fabs(scale) * 1.4426950408889634f, FLT_MIN);
  p.qSign = scale < 0.0f ? 0x80008000u : 0u;
  p.aligned = rowsAligned(q, elem) && rowsAligned(k, elem) && rowsAligned(v, elem) &&
              rowsAligned(dOut, elem) && rowsAligned(dQ, elem) && rowsAligned(dK, elem) &&
              rowsAligned(dV, elem) && dk % 8 == 0 && dv % 8 == 0;
  p.lse = static_cast<float *>(ws.data);
  p.delta = p.lse + batch * heads * lq;
  const int64_t pairs = batch * heads;
  const bool wantKV = wantK || wantV;
  cudaStream_t s = native(stream);
  const SavedStatistics saved{savedLogsumexp, savedOut, batch};

  dispatchFloat(dtype, kName, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float>)
      launchSimt<float>(s, p, pairs, wantQ, wantKV, saved, sums);
    else
      dispatch16<T>(s, p, pairs, wantQ, wantKV, saved, sums, p.delta + batch * heads * lq);
  });
}

} // namespace diffrt::cuda
