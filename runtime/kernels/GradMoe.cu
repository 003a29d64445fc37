//===- GradMoe.cu - backward of the mixtures of experts on the GPU --------===//
//
// The GPU counterparts of cpu::moeTokenChoiceBackward and
// cpu::moeExpertChoiceBackward. Like the forward (Moe.cu) every
// data-dependent size stays on the device: a fixed sequence of launches
// whatever the routing, no host synchronisation, capturable in a graph.
//
// Routing is recomputed by the forward's own router kernel (MoeRouter.cuh:
// one compiled kernel, the same vectorisation decision, so the same experts
// and tokens are selected bit for bit), asked to keep the per-token
// probabilities and, for token choice, the sums of the chosen
// probabilities, which the backward needs. The forward's token-choice permutation orders the rows of
// an expert by atomics; a backward that sums over those rows (the weight
// gradients) would then depend on scheduling, so the permutation here is
// stable instead: per chunk of 256 slots a count per expert, one scan over
// the chunks, and a placement by warp match and per-warp counts. Rows of an
// expert are in slot order, as on the CPU, and every result is
// reproducible bit for bit. Expert choice reuses the forward's bitonic
// selection, which is deterministic already.
//
// Per expert (all experts in one launch each, groups read on the device):
//   expert activations      G, U = x[rows]·gateᵀ, x[rows]·upᵀ and
//                           H = silu(G)⊙U from one SwiGLU grouped product
//                           that stores all three, Y = H·downᵀ (tensor
//                           cores for aligned 16-bit operands): kept by the
//                           training forward (kern.moe's activations, in
//                           this stable slot order) or recomputed here;
//   routing-weight grads    a warp per row: dw = dy·Y, then dY = w·dy in
//                           place of Y (dy = gate ⊙ dOut is formed on the fly
//                           from dOut and the epilogue gate);
//   SwiGLU backward         dDown = dYᵀ·H, dH = dY·down (into H),
//                           dG, dU in place of G, U, dX rows = dG·gate and
//                           dU·up (two grouped products, summed later);
//   weight gradients        wgradKernel, see below.
// The shared expert is the same pipeline with one group of all tokens and
// unit weights. The epilogue gate's gradient needs the layer output before
// the gate, so it is summed (per gate row, rows in order) from the stored
// expert outputs before they are overwritten by their gradients. The
// router's gradient goes through the top-k renormalisation, the balance
// loss (which only needs the integer counts) and the softmax Jacobian in a
// thread per token. The final dX kernel adds, per element, the shared
// expert's two parts, the token's slots in slot order (or the experts that
// picked it in expert order) and dlogit·router: no float atomics anywhere.
//
// Weight gradients (dW_g = Σ_{rows r of g} A[r]ᵀ·B[r] over a row range
// only the device knows) were the bulk of the backward's time with a SIMT
// kernel (5 ms of a 5.1 ms DiT-MoE-S layer), so for 16-bit operands they
// use tensor cores (wgradTcKernel): a 128 x 128 output tile per block
// looping over its group's rows 32 at a time, both operands row-major over
// the rows and read as mma fragments with ldmatrix.trans, cp.async four
// stages deep (element loads when rows are not whole 16-byte chunks), the
// rows gathered through an optional index on either operand, f32
// accumulators. The grid is the worst case (output tiles x groups x
// splits); a block of an empty group writes zeros. f32 keeps the SIMT
// wgradKernel (64 x 64 tile, 16 rows per step staged as f32), exact like
// the CPU. When the output tiles are too few to fill the GPU (shared
// expert, router) the rows are split into a fixed number of ranges, each
// writing f32 partial sums that a second kernel adds in split order; the
// split count is a function of the shapes only, so results do not depend
// on the device, and every output element is summed in a fixed order:
// reproducible bit for bit, no atomics.
//
// The element-wise passes over the hidden activations (the SwiGLU
// gradient, the expert-choice activation) walk whole workspace buffers in
// 16-byte accesses; the router recomputation routes several tokens per warp
// so each router value read from shared memory serves all of them; the
// permutation's scan over chunk counts is block-parallel. The per-token
// sums (the epilogue gate's gradient, the final dX) and the
// routing-weight kernel use 16-byte accesses where the views allow; the
// epilogue gate's sum over a sample's tokens runs on 16 token lanes per
// column added in lane order, instead of one thread walking hundreds of
// tokens at a memory latency each.
//
// Intermediates are stored in the activation type (as in the forward), all
// sums and the routing arithmetic in f32 (the router's Jacobian in double,
// as the CPU).
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "GroupedGemm.cuh"
#include "MoeRouter.cuh"
#include "Wgmma.cuh"
#include "MoeSelect.cuh"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace diffrt::cuda {

using grouped::BLayout;
using grouped::Epilogue;
using grouped::GroupedGemmArgs;

namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * 32;
constexpr int kChunk = 256;                     // slots per block of the stable permutation

using moe::routerInSmem;

//===----------------------------------------------------------------------===//
// Stable token-choice permutation
//===----------------------------------------------------------------------===//

/// chunkCounts[chunk · E + e] = slots of the chunk routed to e.
__global__ void __launch_bounds__(kChunk)
    chunkCountKernel(const int32_t *expertOf, int64_t slots, int experts, int32_t *chunkCounts) {
  __shared__ int32_t cnt[kMaxExperts];
  if (threadIdx.x < kMaxExperts)
    cnt[threadIdx.x] = 0;
  __syncthreads();
  const int64_t s = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x;
  if (s < slots)
    atomicAdd(&cnt[expertOf[s]], 1); // integer: the count is exact whatever the order
  __syncthreads();
  if (threadIdx.x < experts)
    chunkCounts[static_cast<int64_t>(blockIdx.x) * experts + threadIdx.x] = cnt[threadIdx.x];
}

/// Per expert, the exclusive scan of the chunk counts in place; then the
/// expert offsets (experts + 1 values) and the totals. One block: thread
/// (segment j, expert e) sums a contiguous range of chunks of e, the
/// segment sums are scanned across segments in shared memory (log steps),
/// and each thread rewrites its range from its segment's base. A thread
/// per expert walking every chunk was a chain of dependent loads (30 µs
/// for 128 chunks); integer sums, so the result is exact in any order.
constexpr int kScanThreads = 1024;

__global__ void __launch_bounds__(kScanThreads)
    chunkScanKernel(int32_t *chunkCounts, int64_t chunks, int experts, int32_t *counts,
                    int32_t *offsets) {
  __shared__ int32_t seg[kScanThreads];
  const int tid = threadIdx.x;
  const int segs = kScanThreads / experts; // >= 16: experts <= kMaxExperts
  const int e = tid % experts, j = tid / experts;
  const bool owner = j < segs;
  const int64_t per = (chunks + segs - 1) / segs;
  const int64_t c0 = owner ? j * per : chunks;
  const int64_t c1 = c0 + per < chunks ? c0 + per : chunks;
  int32_t sum = 0;
  for (int64_t c = c0; c < c1; ++c)
    sum += chunkCounts[c * experts + e];
  seg[tid] = sum;
  __syncthreads();
  // Inclusive scan over the segments of each expert: element (j, e) is at
  // j·experts + e, so a step of 2^i segments is 2^i·experts elements.
  for (int off = experts; off < segs * experts; off <<= 1) {
    const int32_t v = owner && tid >= off ? seg[tid - off] : 0;
    __syncthreads();
    seg[tid] += v;
    __syncthreads();
  }
  int32_t run = seg[tid] - sum;
  for (int64_t c = c0; c < c1; ++c) {
    const int32_t v = chunkCounts[c * experts + e];
    chunkCounts[c * experts + e] = run;
    run += v;
  }
  if (tid < experts)
    counts[tid] = seg[(segs - 1) * experts + tid];
  if (tid == 0) {
    int32_t at = 0;
    for (int i = 0; i < experts; ++i) {
      offsets[i] = at;
      at += seg[(segs - 1) * experts + i];
    }
    offsets[experts] = at;
  }
}

/// Row of every slot: expert offset + earlier chunks + earlier warps of the
/// chunk + earlier lanes of the warp with the same expert (slot order).
__global__ void __launch_bounds__(kChunk)
    placeKernel(const int32_t *expertOf, int64_t slots, int topK, int experts,
                const int32_t *chunkBase, const int32_t *offsets, int32_t *slotRow,
                int32_t *rowToken, int32_t *rowSlot) {
  constexpr int kW = kChunk / 32;
  __shared__ int32_t warpCount[kW][kMaxExperts];
  for (int i = threadIdx.x; i < kW * kMaxExperts; i += kChunk)
    (&warpCount[0][0])[i] = 0;
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t s = static_cast<int64_t>(blockIdx.x) * kChunk + threadIdx.x;
  const bool active = s < slots;
  const int e = active ? expertOf[s] : -1;
  const unsigned peers = __match_any_sync(0xffffffffu, e);
  const int rank = __popc(peers & ((1u << lane) - 1u));
  if (active && lane == __ffs(peers) - 1)
    warpCount[warp][e] = __popc(peers);
  __syncthreads();
  if (!active)
    return;
  int32_t pos = offsets[e] + chunkBase[static_cast<int64_t>(blockIdx.x) * experts + e] + rank;
  for (int w = 0; w < warp; ++w)
    pos += warpCount[w][e];
  slotRow[s] = pos;
  rowToken[pos] = static_cast<int32_t>(s / topK);
  rowSlot[pos] = static_cast<int32_t>(s);
}

//===----------------------------------------------------------------------===//
// Element-wise pieces
//===----------------------------------------------------------------------===//

/// act'(x) in the CPU reference's forms (cpu::detail::actDerivative).
__device__ __forceinline__ float actDerivativeF(float x, int act) {
  switch (act) {
  case 1: {
    constexpr float kInvSqrt2Pi = 0.39894228040143268f;
    return 0.5f * erfcf(x * -0.70710678118654752f) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
  }
  case 2: {
    constexpr float kSqrt2OverPi = 0.79788456080286536f;
    const float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
    const float s = 1.0f / (1.0f + expf(-2.0f * u));
    const float du = kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
    return s + x * s * (1.0f - s) * 2.0f * du;
  }
  case 3: {
    const float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  default: return 1.0f;
  }
}

// The SwiGLU and activation passes run over whole workspace buffers (n
// contiguous values, 256-byte aligned bases), so each thread step moves
// kVec<T> values per operand in 16-byte accesses and the n % kVec<T> tail
// goes element by element. With 2-byte element accesses these passes ran
// at about half the memory bandwidth (a warp's load was 64 bytes); the
// per-element arithmetic is unchanged, so the results are the same bits.

/// With dh: g ← dh ⊙ u ⊙ silu'(g), u ← dh ⊙ silu(g).
__device__ __forceinline__ void swigluGradOne(float &g, float &u, float d) {
  const float s = 1.0f / (1.0f + expf(-g));
  const float dg = d * u * (s * (1.0f + g * (1.0f - s)));
  u = d * (g * s);
  g = dg;
}

template <typename T>
__global__ void __launch_bounds__(256) swigluGradKernel(const T *g, const T *u, const T *dh, T *dg, T *du,
                                                        int64_t n) {
  constexpr int V = kVec<T>;
  const int64_t vecs = n / V, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < vecs; i += stride) {
    float gv[V], uv[V], dv[V];
    loadVec<T>(g + i * V, gv);
    loadVec<T>(u + i * V, uv);
    loadVec<T>(dh + i * V, dv);
#pragma unroll
    for (int j = 0; j < V; ++j)
      swigluGradOne(gv[j], uv[j], dv[j]);
    storeVec<T>(dg + i * V, gv);
    storeVec<T>(du + i * V, uv);
  }
  for (int64_t i = vecs * V + first; i < n; i += stride) {
    float gi = toF<T>(g[i]), ui = toF<T>(u[i]);
    swigluGradOne(gi, ui, toF<T>(dh[i]));
    dg[i] = fromF<T>(gi);
    du[i] = fromF<T>(ui);
  }
}

/// out = act(z), or with dOut: out = dOut ⊙ act'(z) (out may be dOut).
template <typename T>
__global__ void __launch_bounds__(256) actKernel(const T *z, const T *dOut, T *out, int64_t n,
                                                 int act) {
  constexpr int V = kVec<T>;
  const int64_t vecs = n / V, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = first; i < vecs; i += stride) {
    float zv[V], ov[V];
    loadVec<T>(z + i * V, zv);
    if (dOut == nullptr) {
#pragma unroll
      for (int j = 0; j < V; ++j)
        ov[j] = applyActPrecise(zv[j], act);
    } else {
      loadVec<T>(dOut + i * V, ov);
#pragma unroll
      for (int j = 0; j < V; ++j)
        ov[j] *= actDerivativeF(zv[j], act);
    }
    storeVec<T>(out + i * V, ov);
  }
  for (int64_t i = vecs * V + first; i < n; i += stride) {
    const float zi = toF<T>(z[i]);
    out[i] = fromF<T>(dOut == nullptr ? applyActPrecise(zi, act)
                                      : toF<T>(dOut[i]) * actDerivativeF(zi, act));
  }
}

/// Blocks of 256 threads for the passes above over n values.
template <typename T> unsigned vecBlocks(int64_t n) {
  return gridStrideBlocks((n + kVec<T> - 1) / kVec<T>, 256, 8);
}

//===----------------------------------------------------------------------===//
// Routing-weight gradient: dw = dy·Y and dY = w·dy per grouped row
//===----------------------------------------------------------------------===//

template <typename T> struct GradYParams {
  const T *dOut;
  int64_t ldOut;
  const T *epiGate; // null: dy = dOut
  int64_t ldGate, rowsPerGate;
  const int32_t *rowToken; // null: row r is token r
  const int32_t *rowSlot;  // token choice: weight and dot index of row r
  int64_t groupRows;       // expert choice: index token·experts + r / groupRows
  int experts;
  const float *weight; // null: 1
  float *dot;          // null: not wanted
  const T *y;          // rows x d: Y, read when dot is wanted (else may be null)
  T *dy;               // rows x d: dY = w·dy out (may be y itself)
  int64_t rows, d;
};

/// V = kVec<T> (16-byte accesses) when every row allows, else 1.
template <int V, typename T>
__global__ void __launch_bounds__(kThreads) gradYKernel(GradYParams<T> p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
       r < p.rows; r += warps) {
    const int64_t token = p.rowToken != nullptr ? p.rowToken[r] : r;
    int64_t widx = 0;
    if (p.rowSlot != nullptr)
      widx = p.rowSlot[r];
    else if (p.groupRows > 0)
      widx = token * p.experts + r / p.groupRows;
    const float w = p.weight != nullptr ? p.weight[widx] : 1.0f;
    const T *dr = p.dOut + token * p.ldOut;
    const T *gr = p.epiGate != nullptr ? p.epiGate + (token / p.rowsPerGate) * p.ldGate : nullptr;
    const T *in = p.y != nullptr ? p.y + r * p.d : nullptr;
    T *out = p.dy + r * p.d;
    float acc = 0.0f;
    for (int64_t c = static_cast<int64_t>(lane) * V; c < p.d; c += 32 * V) {
      float dy[V], o[V];
      loadN<V>(dr + c, dy);
      if (gr != nullptr) {
        float gv[V];
        loadN<V>(gr + c, gv);
#pragma unroll
        for (int i = 0; i < V; ++i)
          dy[i] *= gv[i];
      }
      if (p.dot != nullptr) {
        loadN<V>(in + c, o); // each lane reads and then (when dy is y) rewrites its own elements
#pragma unroll
        for (int i = 0; i < V; ++i)
          acc += dy[i] * o[i];
      }
#pragma unroll
      for (int i = 0; i < V; ++i)
        o[i] = w * dy[i];
      storeN<V>(out + c, o);
    }
    if (p.dot != nullptr) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
      if (lane == 0)
        p.dot[widx] = acc;
    }
  }
}

template <typename T> void launchGradY(Stream stream, const GradYParams<T> &p) {
  constexpr int V = kVec<T>;
  const unsigned blocks = gridStrideBlocks(p.rows, kWarpsPerBlock, 8);
  const bool vec = vectorizable(p.dOut, p.ldOut, p.d, sizeof(T)) &&
                   vectorizable(p.epiGate, p.ldGate, p.d, sizeof(T)) &&
                   vectorizable(p.y, p.d, p.d, sizeof(T)) && vectorizable(p.dy, p.d, p.d, sizeof(T));
  if (vec)
    gradYKernel<V, T><<<blocks, kThreads, 0, native(stream)>>>(p);
  else
    gradYKernel<1, T><<<blocks, kThreads, 0, native(stream)>>>(p);
}

//===----------------------------------------------------------------------===//
// Epilogue gate gradient and the final dX
//===----------------------------------------------------------------------===//

template <typename T> struct TokenSumParams {
  const T *shared;      // per-token rows (ld d) or null
  const T *shared2;     // second per-token part (dX only) or null
  const T *slots;       // per-slot rows (ld d)
  const T *slots2;      // second per-slot part (dX only) or null
  const int32_t *slot;  // rows x perToken, < 0: none
  const float *weight;  // rows x perToken (epilogue only), null: 1
  int perToken;
  int64_t rows, d;
};

/// Σ of one token's parts at columns c .. c + V - 1: shared parts, then the
/// slots in order (V = kVec<T> with 16-byte loads when every buffer allows,
/// else 1).
template <int V, typename T>
__device__ __forceinline__ void tokenSum(const TokenSumParams<T> &p, int64_t t, int64_t c,
                                         float (&acc)[V]) {
  float v[V];
#pragma unroll
  for (int i = 0; i < V; ++i)
    acc[i] = 0.0f;
  if (p.shared != nullptr)
    loadN<V>(p.shared + t * p.d + c, acc);
  if (p.shared2 != nullptr) {
    loadN<V>(p.shared2 + t * p.d + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i)
      acc[i] += v[i];
  }
  for (int j = 0; j < p.perToken; ++j) {
    const int32_t s = p.slot[t * p.perToken + j];
    if (s < 0)
      continue;
    loadN<V>(p.slots + static_cast<int64_t>(s) * p.d + c, v);
    if (p.slots2 != nullptr) {
      float v2[V];
      loadN<V>(p.slots2 + static_cast<int64_t>(s) * p.d + c, v2);
#pragma unroll
      for (int i = 0; i < V; ++i)
        v[i] += v2[i];
    }
    const float w = p.weight != nullptr ? p.weight[t * p.perToken + j] : 1.0f;
#pragma unroll
    for (int i = 0; i < V; ++i)
      acc[i] += p.weight != nullptr ? w * v[i] : v[i];
  }
}

/// dGate[g][c] = Σ_{rows of gate row g} dOut ⊙ y, y the layer's output
/// before the gate. A gate row sums hundreds of tokens (a sample's), which
/// one thread per element would walk serially at a memory latency per
/// token; here a block takes 32 threads' worth of columns of one gate row
/// and 16 token lanes, lane j summing tokens j, j + 16, ... in order, and
/// the lanes' sums are added in lane order: fixed, so reproducible.
constexpr int kGateCols = 32, kGateLanes = 16;

template <int V, typename T>
__global__ void __launch_bounds__(kGateCols *kGateLanes)
    epilogueGateKernel(TokenSumParams<T> p, const T *dOut, int64_t ldOut, int64_t rowsPerGate,
                       T *dGate, int64_t ldGate, int64_t gateRows) {
  __shared__ float part[kGateLanes][V][kGateCols];
  const int tx = threadIdx.x % kGateCols, lane = threadIdx.x / kGateCols;
  const int64_t colTiles = (p.d + kGateCols * V - 1) / (kGateCols * V);
  for (int64_t blk = blockIdx.x; blk < gateRows * colTiles; blk += gridDim.x) {
    const int64_t g = blk / colTiles, c = (blk % colTiles) * (kGateCols * V) + tx * V;
    float acc[V];
#pragma unroll
    for (int i = 0; i < V; ++i)
      acc[i] = 0.0f;
    if (c < p.d)
      for (int64_t t = g * rowsPerGate + lane; t < (g + 1) * rowsPerGate; t += kGateLanes) {
        float y[V], dy[V];
        tokenSum<V>(p, t, c, y);
        loadN<V>(dOut + t * ldOut + c, dy);
#pragma unroll
        for (int i = 0; i < V; ++i)
          acc[i] += dy[i] * y[i];
      }
#pragma unroll
    for (int i = 0; i < V; ++i)
      part[lane][i][tx] = acc[i];
    __syncthreads();
    if (lane == 0 && c < p.d) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        float s = 0.0f;
        for (int j = 0; j < kGateLanes; ++j)
          s += part[j][i][tx];
        acc[i] = s;
      }
      storeN<V>(dGate + g * ldGate + c, acc);
    }
    __syncthreads(); // part is rewritten by the next tile
  }
}

/// dX = token parts + dlogit·router, V columns per thread.
template <int V, typename T>
__global__ void dxKernel(TokenSumParams<T> p, const float *dLogits, const T *router, int experts,
                         T *dX, int64_t ldx) {
  const int64_t perRow = p.d / V, n = p.rows * perRow;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / perRow, c = (i % perRow) * V;
    float acc[V];
    tokenSum<V>(p, t, c, acc);
    if (dLogits != nullptr)
      for (int e = 0; e < experts; ++e) {
        const float dl = dLogits[t * experts + e];
        float r[V];
        loadN<V>(router + e * p.d + c, r);
#pragma unroll
        for (int j = 0; j < V; ++j)
          acc[j] += dl * r[j];
      }
    storeN<V>(dX + t * ldx + c, acc);
  }
}

/// Whether the token sums can use 16-byte loads: every per-token and
/// per-slot buffer is the workspace's (rows of d, 256-byte aligned bases),
/// so d and the caller's own views decide.
template <typename T> bool tokenSumVec(const TokenSumParams<T> &p) {
  return p.d % kVec<T> == 0 && vectorizable(p.shared, p.d, p.d, sizeof(T)) &&
         vectorizable(p.shared2, p.d, p.d, sizeof(T)) &&
         vectorizable(p.slots, p.d, p.d, sizeof(T)) &&
         vectorizable(p.slots2, p.d, p.d, sizeof(T));
}

template <typename T>
void launchEpilogueGate(Stream stream, const TokenSumParams<T> &p, const T *dOut, int64_t ldOut,
                        int64_t rowsPerGate, T *dGate, int64_t ldGate) {
  const int64_t gateRows = p.rows / rowsPerGate;
  constexpr int V = kVec<T>;
  const bool vec = tokenSumVec(p) && vectorizable(dOut, ldOut, p.d, sizeof(T)) &&
                   vectorizable(dGate, ldGate, p.d, sizeof(T));
  auto go = [&](auto kernel, int v) {
    const int64_t tiles = gateRows * ((p.d + kGateCols * v - 1) / (kGateCols * v));
    kernel<<<gridStrideBlocks(tiles, 1, 4), kGateCols * kGateLanes, 0, native(stream)>>>(
        p, dOut, ldOut, rowsPerGate, dGate, ldGate, gateRows);
    checkLaunch("moe backward epilogue gate");
  };
  if (vec)
    go(epilogueGateKernel<V, T>, V);
  else
    go(epilogueGateKernel<1, T>, 1);
}

template <typename T>
void launchDx(Stream stream, const TokenSumParams<T> &p, const float *dLogits, const T *router,
              int experts, T *dX, int64_t ldx) {
  constexpr int V = kVec<T>;
  const bool vec = tokenSumVec(p) && vectorizable(router, p.d, p.d, sizeof(T)) &&
                   vectorizable(dX, ldx, p.d, sizeof(T));
  if (vec)
    dxKernel<V, T><<<gridStrideBlocks(p.rows * p.d / V, 256, 8), 256, 0, native(stream)>>>(
        p, dLogits, router, experts, dX, ldx);
  else
    dxKernel<1, T><<<gridStrideBlocks(p.rows * p.d, 256, 8), 256, 0, native(stream)>>>(p, dLogits, router,
                                                                           experts, dX, ldx);
  checkLaunch("moe backward dX");
}

//===----------------------------------------------------------------------===//
// Router Jacobians
//===----------------------------------------------------------------------===//

/// Token choice, a thread per token: the probabilities' gradient (balance
/// loss, routing weights through the renormalisation) then the softmax
/// backward, as cpu::moeTokenChoiceBackward.
__global__ void tokenLogitsKernel(const float *probs, const int32_t *expertOf,
                                  const float *weightOf, const float *totals, const float *dw, const int32_t *counts,
                                  int64_t rows, int experts, int topK, bool normalize,
                                  double balanceCoef, float *dLogits) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float *g = dLogits + r * experts;
    for (int i = 0; i < experts; ++i) {
      double bg = 0.0;
      if (balanceCoef > 0.0) {
        const double fi = static_cast<double>(experts) /
                          static_cast<double>(static_cast<int64_t>(topK) * rows) *
                          static_cast<double>(counts[i]);
        bg = balanceCoef * fi / static_cast<double>(rows);
      }
      g[i] = static_cast<float>(bg);
    }
    const int32_t *ids = expertOf + r * topK;
    const float *dwr = dw + r * topK, *wr = weightOf + r * topK;
    if (normalize) {
      double c = 0.0;
      for (int s = 0; s < topK; ++s)
        c += static_cast<double>(dwr[s]) * wr[s];
      for (int s = 0; s < topK; ++s)
        g[ids[s]] += static_cast<float>((dwr[s] - c) / totals[r]);
    } else {
      for (int s = 0; s < topK; ++s)
        g[ids[s]] += dwr[s];
    }
    const float *p = probs + r * experts;
    double dot = 0.0;
    for (int i = 0; i < experts; ++i)
      dot += static_cast<double>(p[i]) * g[i];
    const float fdot = static_cast<float>(dot);
    for (int i = 0; i < experts; ++i)
      g[i] = p[i] * (g[i] - fdot);
  }
}

/// Softmax backward in place (expert choice).
__global__ void softmaxBackwardKernel(const float *probs, float *g, int64_t rows, int experts) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float *p = probs + r * experts;
    float *gr = g + r * experts;
    double dot = 0.0;
    for (int i = 0; i < experts; ++i)
      dot += static_cast<double>(p[i]) * gr[i];
    const float fdot = static_cast<float>(dot);
    for (int i = 0; i < experts; ++i)
      gr[i] = p[i] * (gr[i] - fdot);
  }
}

//===----------------------------------------------------------------------===//
// Grouped weight gradient: C_g (n x k) = Σ_{rows r of g} A[r]ᵀ · B[r]
//===----------------------------------------------------------------------===//

constexpr int kWT = 64, kWR = 16, kWThreads = 256;
/// Output tiles below which the rows are split (fixed: results must not
/// depend on the device).
constexpr int64_t kWTargetBlocks = 256;

template <typename TA, typename T> struct WgradParams {
  const TA *a;
  int64_t lda;
  const int32_t *aIndex;
  const T *b;
  int64_t ldb;
  const int32_t *bIndex;
  int64_t n, k;
  const int32_t *offsets; // null: uniform groups of groupRows
  int64_t groupRows;
  int groups, splits;
  T *c;
  int64_t ldc, strideC;
  bool pairs;     // tensor-core kernel: C takes 2-element stores
  float *partial; // splits > 1: splits x groups x n x k
};

template <typename TA, typename T>
__global__ void __launch_bounds__(kWThreads) wgradKernel(WgradParams<TA, T> p) {
  __shared__ float4 aStore[kWR * kWT / 4];
  __shared__ float4 bStore[kWR * kWT / 4];
  float *As = reinterpret_cast<float *>(aStore);
  float *Bs = reinterpret_cast<float *>(bStore);
  const int64_t tilesK = (p.k + kWT - 1) / kWT;
  const int64_t nBase = (blockIdx.x / tilesK) * kWT, kBase = (blockIdx.x % tilesK) * kWT;
  const int g = blockIdx.y, split = blockIdx.z;
  int64_t b0, b1;
  if (p.offsets != nullptr) {
    b0 = p.offsets[g];
    b1 = p.offsets[g + 1];
  } else {
    b0 = g * p.groupRows;
    b1 = b0 + p.groupRows;
  }
  const int64_t per = ((b1 - b0 + p.splits - 1) / p.splits + kWR - 1) / kWR * kWR;
  const int64_t r0 = b0 + split * per;
  const int64_t r1 = r0 + per < b1 ? r0 + per : b1;

  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const int lr = tid >> 4, lc = (tid & 15) * 4;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      acc[i][j] = 0.0f;

  for (int64_t r = r0; r < r1; r += kWR) {
    const int64_t row = r + lr;
    const bool ok = row < r1;
    const int64_t ia = ok ? (p.aIndex != nullptr ? p.aIndex[row] : row) : 0;
    const int64_t ib = ok ? (p.bIndex != nullptr ? p.bIndex[row] : row) : 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t cn = nBase + lc + q, ck = kBase + lc + q;
      As[lr * kWT + lc + q] = ok && cn < p.n ? toF<TA>(p.a[ia * p.lda + cn]) : 0.0f;
      Bs[lr * kWT + lc + q] = ok && ck < p.k ? toF<T>(p.b[ib * p.ldb + ck]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kWR; ++q) {
      const float4 a4 = reinterpret_cast<const float4 *>(As + q * kWT)[ty];
      const float4 b4 = reinterpret_cast<const float4 *>(Bs + q * kWT)[tx];
      const float av[4] = {a4.x, a4.y, a4.z, a4.w}, bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t nn = nBase + ty * 4 + i;
    if (nn >= p.n)
      continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t kk = kBase + tx * 4 + j;
      if (kk >= p.k)
        continue;
      if (p.splits == 1)
        p.c[g * p.strideC + nn * p.ldc + kk] = fromF<T>(acc[i][j]);
      else
        p.partial[((static_cast<int64_t>(split) * p.groups + g) * p.n + nn) * p.k + kk] =
            acc[i][j];
    }
  }
}

template <typename T>
__global__ void wgradReduceKernel(const float *partial, int splits, int groups, int64_t n,
                                  int64_t k, T *c, int64_t ldc, int64_t strideC) {
  const int64_t total = static_cast<int64_t>(groups) * n * k;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s)
      acc += partial[s * total + i];
    const int64_t g = i / (n * k), nn = (i / k) % n, kk = i % k;
    c[g * strideC + nn * ldc + kk] = fromF<T>(acc);
  }
}

//===----------------------------------------------------------------------===//
// Tensor-core weight gradient (f16/bf16): the same product as wgradKernel
//===----------------------------------------------------------------------===//

// A 128 (n) x 128 (k) output tile per block, four warps of 64 x 64, the
// reduction over the group's rows 32 at a time. Both operands are
// row-major over the rows (A[r] is a row of n values, B[r] of k values), so
// a stage holds 32 rows x 128 columns of each, and both mma operands come
// from ldmatrix.trans: for A the stored [row][n] slab read transposed is
// the row-major n x rows fragment; for B the stored [row][k] slab read
// transposed is the "col" rows x k fragment. Rows are 256 bytes, so
// 16-byte chunks are XOR-swizzled with the row's low three bits: the eight
// consecutive rows of an ldmatrix phase then hit eight distinct bank
// groups. Four cp.async stages, one barrier per step.
constexpr int kTcM = 128, kTcN = 128, kTcR = 32, kTcStages = 4, kTcThreads = 128;
constexpr int kTcStage = kTcR * kTcM; // elements per operand per stage
constexpr size_t kTcSmem = static_cast<size_t>(kTcStages) * 2 * kTcStage * 2;
/// Blocks below which the rows are split (about two resident tiles per
/// multiprocessor of an H100, but a constant: results must not depend on
/// the device), and the fewest rows a split may get (fewer would spend
/// more on the f32 partials than the split gains).
constexpr int64_t kTcTargetBlocks = 264, kTcMinSplitRows = 512;

__device__ __forceinline__ unsigned smemAddrW(const void *p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsmX4Trans(unsigned (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddrW(p)));
}

template <typename T>
__device__ __forceinline__ void mmaW(float (&d)[4], const unsigned (&a)[4], unsigned b0,
                                     unsigned b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

/// Element offset of 16-byte chunk `chunk` (0-15) of stage row `row`.
__device__ __forceinline__ int swzW(int row, int chunk) {
  return row * kTcM + ((chunk ^ (row & 7)) << 3);
}

/// Eight values from `src` (columns col .. col + 7 of a row with `cols`
/// columns, those past the end zero) into 16 shared bytes, element by
/// element: rows that are not 16-byte aligned or widths that are not
/// whole chunks.
template <typename T>
__device__ __forceinline__ void loadChunkScalar(T *dst, const T *src, int64_t col, int64_t cols,
                                                bool ok) {
  const unsigned short *s = reinterpret_cast<const unsigned short *>(src);
  unsigned w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int j = 0; j < 8; ++j)
    if (ok && col + j < cols)
      w[j >> 1] |= static_cast<unsigned>(s[j]) << ((j & 1) * 16);
  *reinterpret_cast<uint4 *>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
}

/// The rows [r0, r1) of `group` that split `split` of a weight gradient
/// reduces: the group's rows cut into splits of whole kTcR-row steps.
template <typename P>
__device__ __forceinline__ void wgradRows(const P &p, int group, int split, int64_t &r0, int64_t &r1) {
  int64_t b0, b1;
  if (p.offsets != nullptr) {
    b0 = p.offsets[group];
    b1 = p.offsets[group + 1];
  } else {
    b0 = group * p.groupRows;
    b1 = b0 + p.groupRows;
  }
  const int64_t per = ((b1 - b0 + p.splits - 1) / p.splits + kTcR - 1) / kTcR * kTcR;
  r0 = b0 + split * per;
  r1 = r0 + per < b1 ? r0 + per : b1;
}

/// Output elements (nn, kk) and (nn, kk + 1) of a 16-bit weight gradient:
/// into C when the rows are not split, else into the split's f32 partial
/// sums; kk is even, so pairs are 4-byte (T) or 8-byte (f32) aligned when
/// the host said so.
template <typename T>
__device__ __forceinline__ void wgradStore(const WgradParams<T, T> &p, int group, int split, int64_t nn,
                                           int64_t kk, float v0, float v1) {
  const bool both = kk + 1 < p.k;
  if (p.splits == 1) {
    T *dst = p.c + group * p.strideC + nn * p.ldc + kk;
    if (both && p.pairs) {
      if constexpr (std::is_same_v<T, __nv_bfloat16>)
        *reinterpret_cast<__nv_bfloat162 *>(dst) = __floats2bfloat162_rn(v0, v1);
      else
        *reinterpret_cast<__half2 *>(dst) = __floats2half2_rn(v0, v1);
    } else {
      dst[0] = fromF<T>(v0);
      if (both)
        dst[1] = fromF<T>(v1);
    }
  } else {
    float *dst = p.partial + ((static_cast<int64_t>(split) * p.groups + group) * p.n + nn) * p.k + kk;
    if (both && p.k % 2 == 0) {
      *reinterpret_cast<float2 *>(dst) = make_float2(v0, v1);
    } else {
      dst[0] = v0;
      if (both)
        dst[1] = v1;
    }
  }
}

template <typename T, bool kAligned>
__global__ void __launch_bounds__(kTcThreads) wgradTcKernel(WgradParams<T, T> p) {
  extern __shared__ float4 wgradSmem[];
  T *sA = reinterpret_cast<T *>(wgradSmem);
  T *sB = sA + kTcStages * kTcStage;

  const int64_t tilesK = (p.k + kTcN - 1) / kTcN;
  const int64_t nBase = (blockIdx.x / tilesK) * kTcM, kBase = (blockIdx.x % tilesK) * kTcN;
  const int group = blockIdx.y, split = blockIdx.z;
  int64_t r0, r1;
  wgradRows(p, group, split, r0, r1);
  const int64_t steps = r1 > r0 ? (r1 - r0 + kTcR - 1) / kTcR : 0;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp & 1, wn = warp >> 1;

  // Loader role: 16-byte chunk tid & 15 of stage rows (tid >> 4) + 8·i of
  // both operands. The (gathered) row offsets of the next stage to load
  // are fetched one stage ahead, so the index loads are not waited for
  // right before the copies.
  const int chunk = tid & 15, rowL = tid >> 4;
  const int64_t colA = nBase + chunk * 8, colB = kBase + chunk * 8;
  const bool colAOk = colA < p.n, colBOk = colB < p.k;
  int64_t offA[4], offB[4];
  bool rowOk[4];
  auto fetchRows = [&](int64_t rbase) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t row = rbase + rowL + 8 * i;
      rowOk[i] = row < r1;
      const int64_t ia = rowOk[i] ? (p.aIndex != nullptr ? p.aIndex[row] : row) : 0;
      const int64_t ib = rowOk[i] ? (p.bIndex != nullptr ? p.bIndex[row] : row) : 0;
      offA[i] = ia * p.lda + colA;
      offB[i] = ib * p.ldb + colB;
    }
  };
  auto loadStage = [&](int stage) {
    T *a = sA + stage * kTcStage;
    T *b = sB + stage * kTcStage;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = rowL + 8 * i;
      const bool okA = rowOk[i] && colAOk, okB = rowOk[i] && colBOk;
      if constexpr (kAligned) {
        cpAsync16(a + swzW(row, chunk), okA ? p.a + offA[i] : p.a, okA);
        cpAsync16(b + swzW(row, chunk), okB ? p.b + offB[i] : p.b, okB);
      } else {
        loadChunkScalar<T>(a + swzW(row, chunk), okA ? p.a + offA[i] : p.a, colA, p.n, okA);
        loadChunkScalar<T>(b + swzW(row, chunk), okB ? p.b + offB[i] : p.b, colB, p.k, okB);
      }
    }
  };

  float acc[4][8][4];
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 8; ++ni)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        acc[mi][ni][q] = 0.0f;

  fetchRows(r0);
#pragma unroll
  for (int s = 0; s < kTcStages - 1; ++s) {
    if (s < steps) {
      loadStage(s);
      fetchRows(r0 + static_cast<int64_t>(s + 1) * kTcR);
    }
    cpAsyncCommit();
  }

  // ldmatrix roles: matrix q = lane / 8 of an x4 load takes its eight row
  // addresses from lanes 8q .. 8q + 7. For A (m16 x k16, m = n-columns,
  // k = rows) matrices 0-3 are (m 0-7, k 0-7), (m 8-15, k 0-7),
  // (m 0-7, k 8-15), (m 8-15, k 8-15); for a pair of B fragments (k16 x
  // n8 each, n = k-columns) (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7,
  // n 8-15), (k 8-15, n 8-15).
  const int q = lane >> 3;
  const int aRow = (lane & 7) + ((q >> 1) << 3), aCol = (q & 1) << 3;
  const int bRow = (lane & 7) + ((q & 1) << 3), bCol = (q >> 1) << 3;

  for (int64_t st = 0; st < steps; ++st) {
    cpAsyncWait<kTcStages - 2>();
    __syncthreads(); // step st landed for all threads; stage (st-1) % kTcStages is free
    const int64_t next = st + kTcStages - 1;
    if (next < steps) {
      loadStage(static_cast<int>(next % kTcStages));
      fetchRows(r0 + (next + 1) * kTcR);
    }
    cpAsyncCommit();

    const T *a = sA + (st % kTcStages) * kTcStage;
    const T *b = sB + (st % kTcStages) * kTcStage;
#pragma unroll
    for (int kk = 0; kk < kTcR / 16; ++kk) {
      unsigned af[4][4], bf[8][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
        ldsmX4Trans(af[mi], a + swzW(kk * 16 + aRow, (wm * 64 + mi * 16 + aCol) >> 3));
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        unsigned r[4];
        ldsmX4Trans(r, b + swzW(kk * 16 + bRow, (wn * 64 + np * 16 + bCol) >> 3));
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 8; ++ni)
          mmaW<T>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
  }
  cpAsyncWait<0>();

  // Accumulator (mi, ni, e): output row (n) wm·64 + mi·16 + lane/4 (+8 for
  // e >= 2), column (k) wn·64 + ni·8 + 2·(lane % 4) (+1 for odd e); the
  // column is even, so pairs are 4-byte (T) or 8-byte (f32) aligned when
  // the host said so.
  const int gq = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t nn = nBase + wm * 64 + mi * 16 + gq + half * 8;
      if (nn >= p.n)
        continue;
#pragma unroll
      for (int ni = 0; ni < 8; ++ni) {
        const int64_t kk = kBase + wn * 64 + ni * 8 + 2 * t4;
        if (kk >= p.k)
          continue;
        wgradStore(p, group, split, nn, kk, acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
      }
    }
}

//===----------------------------------------------------------------------===//
// Hopper weight gradient (wgmma)
//===----------------------------------------------------------------------===//

// The same product and output tiles (128 x 128) as wgradTcKernel, for
// aligned 16-bit operands, on wgmma: two warpgroups of 64 (n) x 128 (k),
// 64 rows per stage. Both operands are MN-major over the rows (a stage
// row holds 128 n values of A and 128 k values of B), which wgmma reads
// transposed from the 128-byte swizzled layout (Wgmma.cuh). Three stages,
// filled two ahead, each step's products finished before the next barrier;
// two blocks per multiprocessor, so one block's products overlap the
// other's loads and barriers. (One block of four stages with a product
// group in flight was slower than the mma.sync kernel.)
constexpr int kWgR = 64, kWgStages = 3, kWgThreads = 256;
constexpr int kWgStageBytes = kWgR * kTcM * 2; // per operand
constexpr size_t kWgSmem = static_cast<size_t>(kWgStages) * 2 * kWgStageBytes + 1024;

template <typename T>
__global__ void __launch_bounds__(kWgThreads, 2) wgradWgmmaKernel(WgradParams<T, T> p) {
  extern __shared__ float4 wgSmemRaw[];
  uint8_t *base = reinterpret_cast<uint8_t *>(
      (reinterpret_cast<uintptr_t>(wgSmemRaw) + 1023) & ~static_cast<uintptr_t>(1023));
  uint8_t *sA = base, *sB = base + kWgStages * kWgStageBytes;

  const int64_t tilesK = (p.k + kTcN - 1) / kTcN;
  const int64_t nBase = (blockIdx.x / tilesK) * kTcM, kBase = (blockIdx.x % tilesK) * kTcN;
  const int group = blockIdx.y, split = blockIdx.z;
  int64_t r0, r1;
  wgradRows(p, group, split, r0, r1);
  const int64_t steps = r1 > r0 ? (r1 - r0 + kWgR - 1) / kWgR : 0;

  // Loader role: 16-byte column chunk tid % 16 of stage rows tid / 16 + 16i
  // of both operands; chunk c of a 128-value row lands in 64-value block
  // c / 8.
  const int tid = threadIdx.x, chunk = tid & 15, rowL = tid >> 4;
  const int64_t colA = nBase + chunk * 8, colB = kBase + chunk * 8;
  const bool colAOk = colA < p.n, colBOk = colB < p.k;
  const int blockOff = (chunk >> 3) * 8192;
  auto loadStage = [&](int slot, int64_t rbase) {
    uint8_t *a = sA + slot * kWgStageBytes, *b = sB + slot * kWgStageBytes;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = rowL + 16 * i;
      const int64_t r = rbase + row;
      const bool ok = r < r1;
      const int64_t ia = ok ? (p.aIndex != nullptr ? p.aIndex[r] : r) : 0;
      const int64_t ib = ok ? (p.bIndex != nullptr ? p.bIndex[r] : r) : 0;
      const int at = blockOff + wgmma::swz128(row, chunk & 7);
      cpAsync16(a + at, ok && colAOk ? p.a + ia * p.lda + colA : p.a, ok && colAOk);
      cpAsync16(b + at, ok && colBOk ? p.b + ib * p.ldb + colB : p.b, ok && colBOk);
    }
  };

  float d[64];
#pragma unroll
  for (int i = 0; i < 64; ++i)
    d[i] = 0.0f;
  const int wg = tid >> 7;
  for (int s = 0; s < 2; ++s) {
    if (s < steps)
      loadStage(s, r0 + static_cast<int64_t>(s) * kWgR);
    cpAsyncCommit();
  }
  for (int64_t st = 0; st < steps; ++st) {
    cpAsyncWait<1>();
    wgmma::fenceProxyAsync();
    __syncthreads();
    if (st + 2 < steps)
      loadStage(static_cast<int>((st + 2) % kWgStages), r0 + (st + 2) * kWgR);
    cpAsyncCommit();
    const int slot = static_cast<int>(st % kWgStages);
    // The next 16 rows: 16 rows of 128 bytes further in both operands.
    const uint64_t descA = wgmma::descMN(sA + slot * kWgStageBytes + wg * 8192);
    const uint64_t descB = wgmma::descMN(sB + slot * kWgStageBytes);
    wgmma::fence();
#pragma unroll
    for (int j = 0; j < kWgR / 16; ++j)
      wgmma::wgmma128<T, true, true>(d, descA + 128 * j, descB + 128 * j, st > 0 || j > 0);
    wgmma::commit();
    wgmma::wait<0>();
  }
  cpAsyncWait<0>();

  // d[4j + 2h + c]: output row (n) wg·64 + warp·16 + lane/4 + 8h, column
  // (k) 8j + 2·(lane % 4) + c.
  const int lane = tid & 31, warp = (tid >> 5) & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t nn = nBase + wg * 64 + warp * 16 + (lane >> 2) + 8 * h;
    if (nn >= p.n)
      continue;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int64_t kk = kBase + 8 * j + 2 * (lane & 3);
      if (kk >= p.k)
        continue;
      wgradStore(p, group, split, nn, kk, d[4 * j + 2 * h], d[4 * j + 2 * h + 1]);
    }
  }
}

/// Row splits of a weight gradient, a function of the shapes only (the
/// summation order, hence the result, must not depend on the device):
/// enough blocks to fill the GPU, but not fewer rows per split than the
/// partial sums are worth. `rows` is the typical rows of a group (for
/// routed experts their mean, the real counts being on the device).
int wgradSplits(bool tc, int64_t n, int64_t k, int64_t groups, int64_t rows) {
  const int64_t tm = tc ? kTcM : kWT, tn = tc ? kTcN : kWT;
  const int64_t target = tc ? kTcTargetBlocks : kWTargetBlocks;
  const int64_t minRows = tc ? kTcMinSplitRows : 64;
  const int64_t tiles = ((n + tm - 1) / tm) * ((k + tn - 1) / tn) * groups;
  if (tiles >= target)
    return 1;
  int64_t s = (target + tiles - 1) / tiles;
  const int64_t byRows = (rows + minRows - 1) / minRows;
  if (s > byRows)
    s = byRows;
  return static_cast<int>(s > 1 ? s : 1);
}

size_t wgradPartialBytes(bool tc, int64_t n, int64_t k, int64_t groups, int64_t rows) {
  const int s = wgradSplits(tc, n, k, groups, rows);
  return s > 1 ? static_cast<size_t>(s) * groups * n * k * sizeof(float) : 0;
}

/// The weight gradient C_g = Σ_{rows of g} A[r]ᵀ·B[r] of every group:
/// tensor cores when both operands are 16-bit (cp.async for 16-byte
/// aligned rows of whole chunks, element loads otherwise), the SIMT kernel
/// for f32 (exact) and the router's f32 logit gradients. `rows` as in
/// wgradSplits; the workspace was sized with the same arguments.
template <typename TA, typename T>
void launchWgrad(Stream stream, WgradParams<TA, T> p, int64_t rows, float *partial) {
  constexpr bool kTc = std::is_same_v<TA, T> && !std::is_same_v<T, float>;
  p.splits = wgradSplits(kTc, p.n, p.k, p.groups, rows);
  p.partial = partial;
  const int64_t tm = kTc ? kTcM : kWT, tn = kTc ? kTcN : kWT;
  const int64_t tiles = ((p.n + tm - 1) / tm) * ((p.k + tn - 1) / tn);
  if (tiles > INT32_MAX || p.groups > 65535 || p.splits > 65535)
    fail("moe backward weight gradient: ", tiles, " tiles x ", p.groups, " groups x ", p.splits,
         " splits exceed one launch");
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(p.groups),
                  static_cast<unsigned>(p.splits));
  if constexpr (kTc) {
    const bool aligned = p.n % 8 == 0 && p.k % 8 == 0 && p.lda % 8 == 0 && p.ldb % 8 == 0 &&
                         aligned16(p.a) && aligned16(p.b);
    p.pairs = (reinterpret_cast<uintptr_t>(p.c) & 3u) == 0 && p.ldc % 2 == 0 &&
              p.strideC % 2 == 0;
    auto go = [&](auto kernel) {
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(kTcSmem)),
            "moe backward weight gradient: shared memory limit");
      kernel<<<grid, kTcThreads, kTcSmem, native(stream)>>>(p);
      checkLaunch("moe backward weight gradient (tensor cores)");
    };
    // DIFFRT_GROUPED_GEMM=mma keeps the mma.sync kernel (comparisons).
    static const bool forceMma = [] {
      const char *v = std::getenv("DIFFRT_GROUPED_GEMM");
      return v && std::string(v) == "mma";
    }();
    if (aligned && !forceMma) {
      check(cudaFuncSetAttribute(wgradWgmmaKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(kWgSmem)),
            "moe backward weight gradient: shared memory limit");
      wgradWgmmaKernel<T><<<grid, kWgThreads, kWgSmem, native(stream)>>>(p);
      checkLaunch("moe backward weight gradient (wgmma)");
    } else if (aligned) {
      go(wgradTcKernel<T, true>);
    } else {
      go(wgradTcKernel<T, false>);
    }
  } else {
    wgradKernel<TA, T><<<grid, kWThreads, 0, native(stream)>>>(p);
    checkLaunch("moe backward weight gradient");
  }
  if (p.splits > 1) {
    const int64_t total = static_cast<int64_t>(p.groups) * p.n * p.k;
    wgradReduceKernel<T><<<gridStrideBlocks(total, 256, 8), 256, 0, native(stream)>>>(
        partial, p.splits, p.groups, p.n, p.k, p.c, p.ldc, p.strideC);
    checkLaunch("moe backward weight gradient reduction");
  }
}

//===----------------------------------------------------------------------===//
// Small launch helpers
//===----------------------------------------------------------------------===//

unsigned elementBlocks(int64_t n) { return gridStrideBlocks(n, 256, 8); }

/// A grouped product C = A[rows]·op(B_g) through GroupedGemm (Store).
GroupedGemmArgs product(DType dtype, const void *a, int64_t lda, const int32_t *rowIndex,
                        const void *b, int64_t ldb, int64_t strideB, BLayout layout, void *c,
                        int64_t n, int64_t k, const int32_t *offsets, int64_t groupRows,
                        int groups, int64_t maxRows) {
  GroupedGemmArgs g;
  g.dtype = dtype;
  g.a = a;
  g.lda = lda;
  g.rowIndex = rowIndex;
  g.b = b;
  g.ldb = ldb;
  g.groupStrideB = strideB;
  g.layout = layout;
  g.c = c;
  g.ldc = n;
  g.n = n;
  g.k = k;
  g.offsets = offsets;
  g.groupRows = groupRows;
  g.groups = groups;
  g.maxRows = maxRows;
  g.epilogue = Epilogue::Store;
  return g;
}

struct Carve {
  size_t bytes = 0;
  size_t take(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

template <typename U> U *at(const Workspace &ws, size_t offset) {
  return reinterpret_cast<U *>(static_cast<uint8_t *>(ws.data) + offset);
}

void checkWorkspace(const char *kernel, const Workspace &ws, size_t need) {
  if (need > 0 && (ws.data == nullptr || ws.bytes < need))
    fail(kernel, ": workspace of ", ws.bytes, " bytes is too small, ", need, " bytes needed");
  if (need > 0 && !aligned16(ws.data))
    fail(kernel, ": workspace is not 16-byte aligned");
}

//===----------------------------------------------------------------------===//
// Workspace layouts
//===----------------------------------------------------------------------===//

/// Mean rows of a routed expert (the split argument of its weight
/// gradients; the real counts are on the device).
int64_t routedRows(int64_t m, int64_t topK, int64_t e) { return (m * topK + e - 1) / e; }

struct TokenLayout {
  size_t chunkCounts, counts, offsets, expertOf, slotRow, rowToken, rowSlot;
  size_t probs, weightOf, totals, dw, dLogits, routerF32, partial;
  size_t g, u, h, y, xu;          // routed, per slot
  size_t gs, us, hs, ys, dys;     // shared, per token
  size_t total;
};

/// The backward's workspace, or with routingOnly the routing and stable
/// permutation only (the forward that keeps activations).
TokenLayout tokenLayout(int64_t m, int64_t d, const TokenChoiceArgs &a, DType dtype, bool routingOnly = false) {
  const size_t es = dtypeSize(dtype);
  const int64_t e = a.experts, slots = m * a.topK, f = a.hidden, fs = a.sharedHidden;
  const int64_t chunks = (slots + kChunk - 1) / kChunk;
  const bool shared = a.sharedGate != nullptr;
  Carve c;
  TokenLayout l{};
  l.chunkCounts = c.take(chunks * e * sizeof(int32_t));
  l.counts = c.take(e * sizeof(int32_t));
  l.offsets = c.take((e + 1) * sizeof(int32_t));
  l.expertOf = c.take(slots * sizeof(int32_t));
  l.slotRow = c.take(slots * sizeof(int32_t));
  l.rowToken = c.take(slots * sizeof(int32_t));
  l.rowSlot = c.take(slots * sizeof(int32_t));
  l.probs = c.take(m * e * sizeof(float));
  l.weightOf = c.take(slots * sizeof(float));
  l.totals = c.take(m * sizeof(float));
  l.dw = c.take(slots * sizeof(float));
  l.dLogits = c.take(m * e * sizeof(float));
  l.routerF32 = routerInSmem(e, d) ? 0 : c.take(e * d * sizeof(float));
  if (routingOnly) {
    l.total = c.bytes;
    return l;
  }
  // The same shapes and split arguments as the launches below.
  const bool tc = dtype != DType::F32;
  const int64_t routed = routedRows(m, a.topK, e);
  size_t partial = std::max({wgradPartialBytes(tc, f, d, e, routed),
                             wgradPartialBytes(tc, d, f, e, routed),
                             wgradPartialBytes(false, e, d, 1, m)});
  if (shared)
    partial = std::max(
        {partial, wgradPartialBytes(tc, fs, d, 1, m), wgradPartialBytes(tc, d, fs, 1, m)});
  l.partial = partial > 0 ? c.take(partial) : 0;
  l.g = c.take(slots * f * es);
  l.u = c.take(slots * f * es);
  l.h = c.take(slots * f * es);
  l.y = c.take(slots * d * es);
  l.xu = c.take(slots * d * es);
  if (shared) {
    l.gs = c.take(m * fs * es);
    l.us = c.take(m * fs * es);
    l.hs = c.take(m * fs * es);
    l.ys = c.take(m * d * es);
    l.dys = c.take(m * d * es);
  }
  l.total = c.bytes;
  return l;
}

struct ExpertLayout {
  size_t probs, rows, slotMap, dLogits, routerF32, partial, z, a, y, total;
};

ExpertLayout expertLayout(int64_t m, int64_t d, int64_t k, const ExpertChoiceArgs &a,
                          DType dtype) {
  const size_t es = dtypeSize(dtype);
  const int64_t e = a.experts, f = a.hidden, batch = a.tokens > 0 ? m / a.tokens : 0;
  const int64_t per = batch * k, selected = e * per;
  Carve c;
  ExpertLayout l{};
  l.probs = c.take(m * e * sizeof(float));
  l.rows = c.take(selected * sizeof(int32_t));
  l.slotMap = c.take(m * e * sizeof(int32_t));
  l.dLogits = c.take(m * e * sizeof(float));
  l.routerF32 = routerInSmem(e, d) ? 0 : c.take(e * d * sizeof(float));
  const bool tc = dtype != DType::F32;
  const size_t partial =
      std::max({wgradPartialBytes(tc, f, d, e, per), wgradPartialBytes(tc, d, f, e, per),
                wgradPartialBytes(false, e, d, 1, m)});
  l.partial = partial > 0 ? c.take(partial) : 0;
  l.z = c.take(selected * f * es);
  l.a = c.take(selected * f * es);
  l.y = c.take(selected * d * es);
  l.total = c.bytes;
  return l;
}


} // namespace

//===----------------------------------------------------------------------===//
// Token choice
//===----------------------------------------------------------------------===//

namespace {

/// The expert activations kern.moe keeps for its backward (its C5 layout):
/// G, U, H (slots x F), Y (slots x D), then the shared expert's Gs, Us, Hs
/// (tokens x Fs), Ys (tokens x D).
template <typename T> struct ExpertActivations {
  T *g = nullptr, *u = nullptr, *h = nullptr, *y = nullptr;
  T *gs = nullptr, *us = nullptr, *hs = nullptr, *ys = nullptr;
};

template <typename T>
ExpertActivations<T> activationViews(void *base, int64_t m, int64_t d, const TokenChoiceArgs &a) {
  const int64_t slots = m * a.topK, f = a.hidden, fs = a.sharedHidden;
  T *p = static_cast<T *>(base);
  ExpertActivations<T> v;
  v.g = p;
  v.u = v.g + slots * f;
  v.h = v.u + slots * f;
  v.y = v.h + slots * f;
  if (a.sharedGate != nullptr) {
    v.gs = v.y + slots * d;
    v.us = v.gs + m * fs;
    v.hs = v.us + m * fs;
    v.ys = v.hs + m * fs;
  }
  return v;
}

/// Routing (the forward's router kernel, keeping the probabilities and the
/// chosen sums) and the stable expert-major permutation of the slots.
void routeStable(Stream stream, DType dtype, DConstMat x, const TokenChoiceArgs &args, const TokenLayout &l,
                 Workspace ws) {
  const int64_t m = x.rows, e = args.experts, topK = args.topK;
  const int64_t slots = m * topK, chunks = (slots + kChunk - 1) / kChunk;
  cudaStream_t s = native(stream);
  int32_t *chunkCounts = at<int32_t>(ws, l.chunkCounts), *counts = at<int32_t>(ws, l.counts);
  int32_t *offsets = at<int32_t>(ws, l.offsets), *expertOf = at<int32_t>(ws, l.expertOf);
  float *routerF32 = l.routerF32 != 0 ? at<float>(ws, l.routerF32) : nullptr;
  moe::RouterArgs rp = moe::routerArgs(stream, dtype, x, args.router, routerF32, e);
  rp.topK = static_cast<int>(topK);
  rp.normalize = args.normalize;
  rp.probs = at<float>(ws, l.probs);
  rp.expertOf = expertOf;
  rp.weightOf = at<float>(ws, l.weightOf);
  rp.totals = at<float>(ws, l.totals);
  moe::route(stream, rp, true);
  chunkCountKernel<<<static_cast<unsigned>(chunks), kChunk, 0, s>>>(expertOf, slots, static_cast<int>(e),
                                                                    chunkCounts);
  checkLaunch("moe chunk counts");
  chunkScanKernel<<<1, kScanThreads, 0, s>>>(chunkCounts, chunks, static_cast<int>(e), counts, offsets);
  checkLaunch("moe chunk scan");
  placeKernel<<<static_cast<unsigned>(chunks), kChunk, 0, s>>>(
      expertOf, slots, static_cast<int>(topK), static_cast<int>(e), chunkCounts, offsets, at<int32_t>(ws, l.slotRow),
      at<int32_t>(ws, l.rowToken), at<int32_t>(ws, l.rowSlot));
  checkLaunch("moe stable permutation");
}

/// The expert forward over the permuted slot rows (and the shared expert
/// over every token): one SwiGLU product writing G, U and H = silu(G) ⊙ U,
/// then Y = H·downᵀ; the shared Y only when sharedOutputs.
template <typename T>
void expertForward(Stream stream, DType dtype, DConstMat x, const TokenChoiceArgs &args, const int32_t *offsets,
                   const int32_t *rowToken, const ExpertActivations<T> &a, bool sharedOutputs) {
  const int64_t m = x.rows, d = x.cols, f = args.hidden, fs = args.sharedHidden, slots = m * args.topK;
  const int groups = static_cast<int>(args.experts);
  auto swiglu = [&](const int32_t *rows, const void *gate, const void *up, int64_t hidden, int64_t stride,
                    T *g, T *u, T *h, const int32_t *offs, int64_t groupRows, int count, int64_t maxRows) {
    GroupedGemmArgs p = product(dtype, x.data, x.ld, rows, gate, d, stride, BLayout::NK, h, hidden, d, offs,
                                groupRows, count, maxRows);
    p.b2 = up;
    p.epilogue = Epilogue::SwiGlu;
    p.cGate = g;
    p.cUp = u;
    grouped::groupedGemm(stream, p);
  };
  swiglu(rowToken, args.gate, args.up, f, f * d, a.g, a.u, a.h, offsets, 0, groups, slots);
  grouped::groupedGemm(stream, product(dtype, a.h, f, nullptr, args.down, f, d * f, BLayout::NK, a.y, d, f,
                                       offsets, 0, groups, slots));
  if (args.sharedGate == nullptr)
    return;
  swiglu(nullptr, args.sharedGate, args.sharedUp, fs, 0, a.gs, a.us, a.hs, nullptr, m, 1, m);
  if (sharedOutputs)
    grouped::groupedGemm(stream, product(dtype, a.hs, fs, nullptr, args.sharedDown, fs, 0, BLayout::NK, a.ys, d,
                                         fs, nullptr, m, 1, m));
}

} // namespace

int64_t moeTokenChoiceActivationElements(int64_t tokens, int64_t d, const TokenChoiceArgs &args) {
  int64_t n = tokens * args.topK * (3 * args.hidden + d);
  if (args.sharedGate != nullptr)
    n += tokens * (3 * args.sharedHidden + d);
  return n;
}

namespace moe {

size_t tokenChoiceKeepingWorkspaceBytes(int64_t tokens, int64_t d, const TokenChoiceArgs &args, DType dtype) {
  return tokenLayout(tokens, d, args, dtype, true).total;
}

void tokenChoiceKeepingActivations(Stream stream, DType dtype, DConstMat x, const TokenChoiceArgs &args,
                                   DMat out, Workspace ws) {
  const char *kernel = "moeTokenChoice (keeping activations)";
  const int64_t m = x.rows, d = x.cols;
  if (args.routedCounts != nullptr)
    fail(kernel, ": routed counts are not reported while keeping activations");
  const TokenLayout l = tokenLayout(m, d, args, dtype, true);
  checkWorkspace(kernel, ws, l.total);
  routeStable(stream, dtype, x, args, l, ws);
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    const ExpertActivations<T> a = activationViews<T>(args.activations, m, d, args);
    expertForward<T>(stream, dtype, x, args, at<int32_t>(ws, l.offsets), at<int32_t>(ws, l.rowToken), a, true);
    combineTokenChoice(stream, dtype, a.y, a.ys, at<int32_t>(ws, l.slotRow), at<float>(ws, l.weightOf),
                       static_cast<int>(args.topK), m, d, args.epilogue, out);
  });
}

} // namespace moe

size_t moeTokenChoiceBackwardWorkspaceBytes(int64_t tokens, int64_t d, const TokenChoiceArgs &args,
                                            DType dtype) {
  if (tokens <= 0 || d <= 0 || args.experts <= 0 || args.topK <= 0 || args.hidden <= 0)
    return 0;
  return tokenLayout(tokens, d, args, dtype).total;
}

void moeTokenChoiceBackward(Stream stream, Gemm &, DType dtype, DConstMat x,
                            const TokenChoiceArgs &args, DConstMat dOut,
                            const TokenChoiceGrads &grads, Workspace ws) {
  const char *kernel = "moeTokenChoiceBackward";
  const int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, topK = args.topK;
  checkDView(kernel, "x", x, m, d);
  checkDView(kernel, "dOut", dOut, m, d);
  const bool shared = checkTokenChoice(kernel, args);
  const int64_t fs = args.sharedHidden;
  if (!shared && (grads.dSharedGate != nullptr || grads.dSharedUp != nullptr || grads.dSharedDown != nullptr))
    fail(kernel, ": shared-expert gradients are wanted but there is no shared expert");
  const GatedResidual *epi = args.epilogue;
  checkDEpilogue(kernel, epi, m, d);
  const bool wantX = grads.dX.data != nullptr;
  if (wantX)
    checkDView(kernel, "dX", grads.dX, m, d);
  const bool wantEpiGate = grads.dEpilogueGate.data != nullptr;
  if (wantEpiGate) {
    if (epi == nullptr)
      fail(kernel, ": dEpilogueGate is wanted but there is no gated-residual epilogue");
    checkDPerSample(kernel, "dEpilogueGate", grads.dEpilogueGate, m, epi->rowsPerGate, d);
  }
  if (!(grads.balanceCoef >= 0.0))
    fail(kernel, ": balance coefficient must be non-negative, got ", grads.balanceCoef);
  const size_t es = dtypeSize(dtype);
  if (wantX && (overlapsD(grads.dX, x, es) || overlapsD(grads.dX, dOut, es)))
    fail(kernel, ": dX overlaps x or dOut");
  if (m * topK > INT32_MAX)
    fail(kernel, ": ", m, " tokens x top ", topK, " exceed the int32 slot range");
  if (m == 0)
    return;
  const TokenLayout l = tokenLayout(m, d, args, dtype);
  checkWorkspace(kernel, ws, l.total);
  const int64_t slots = m * topK;
  const int64_t routed = routedRows(m, topK, e);
  const bool wantRouter = grads.dRouter != nullptr || wantX;

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    cudaStream_t s = native(stream);
    int32_t *counts = at<int32_t>(ws, l.counts);
    int32_t *offsets = at<int32_t>(ws, l.offsets), *expertOf = at<int32_t>(ws, l.expertOf);
    int32_t *slotRow = at<int32_t>(ws, l.slotRow), *rowToken = at<int32_t>(ws, l.rowToken);
    int32_t *rowSlot = at<int32_t>(ws, l.rowSlot);
    float *probs = at<float>(ws, l.probs), *weightOf = at<float>(ws, l.weightOf);
    float *totals = at<float>(ws, l.totals), *dw = at<float>(ws, l.dw);
    float *dLogits = at<float>(ws, l.dLogits);
    float *partial = l.partial != 0 ? at<float>(ws, l.partial) : nullptr;
    // The workspace's G, U, H, Y (and shared) buffers: the recomputed
    // activations, then their gradients; with kept activations (read-only
    // forward values) only the gradients.
    T *G = at<T>(ws, l.g), *U = at<T>(ws, l.u), *H = at<T>(ws, l.h), *Y = at<T>(ws, l.y);
    T *XU = at<T>(ws, l.xu);
    const T *dOutT = static_cast<const T *>(dOut.data);
    const T *epiGate = epi != nullptr ? static_cast<const T *>(epi->gate.data) : nullptr;
    T *Gs = nullptr, *Us = nullptr, *Hs = nullptr, *Ys = nullptr, *DYs = nullptr;
    if (shared) {
      Gs = at<T>(ws, l.gs);
      Us = at<T>(ws, l.us);
      Hs = at<T>(ws, l.hs);
      Ys = at<T>(ws, l.ys);
      DYs = at<T>(ws, l.dys);
    }

    // Routing and the stable permutation (the order the forward kept its
    // activations in), then the activations: kept, or recomputed.
    routeStable(stream, dtype, x, args, l, ws);
    ExpertActivations<T> act;
    if (args.activations != nullptr) {
      act = activationViews<T>(args.activations, m, d, args);
    } else {
      act = ExpertActivations<T>{G, U, H, Y, Gs, Us, Hs, Ys};
      expertForward<T>(stream, dtype, x, args, offsets, rowToken, act, wantEpiGate);
    }
    const int groups = static_cast<int>(e);

    // dEpilogueGate from the expert outputs.
    if (wantEpiGate) {
      TokenSumParams<T> tp{};
      tp.shared = act.ys;
      tp.slots = act.y;
      tp.slot = slotRow;
      tp.weight = weightOf;
      tp.perToken = static_cast<int>(topK);
      tp.rows = m;
      tp.d = d;
      launchEpilogueGate<T>(stream, tp, dOutT, dOut.ld, epi->rowsPerGate,
                            static_cast<T *>(grads.dEpilogueGate.data), grads.dEpilogueGate.ld);
    }

    // dw = dy·Y per slot, Y ← w·dy.
    GradYParams<T> gp{};
    gp.dOut = dOutT;
    gp.ldOut = dOut.ld;
    gp.epiGate = epiGate;
    gp.ldGate = epi != nullptr ? epi->gate.ld : 0;
    gp.rowsPerGate = epi != nullptr ? epi->rowsPerGate : 1;
    gp.rowToken = rowToken;
    gp.rowSlot = rowSlot;
    gp.experts = static_cast<int>(e);
    gp.weight = weightOf;
    gp.dot = dw;
    gp.y = act.y;
    gp.dy = Y;
    gp.rows = slots;
    gp.d = d;
    launchGradY<T>(stream, gp);
    checkLaunch("moe backward routing weights");

    // SwiGLU backward of the routed experts.
    if (grads.dDown != nullptr) {
      WgradParams<T, T> wp{};
      wp.a = Y;
      wp.lda = d;
      wp.b = act.h;
      wp.ldb = f;
      wp.n = d;
      wp.k = f;
      wp.offsets = offsets;
      wp.groups = groups;
      wp.c = static_cast<T *>(grads.dDown);
      wp.ldc = f;
      wp.strideC = d * f;
      launchWgrad<T, T>(stream, wp, routed, partial);
    }
    const bool wantExpertIn = wantX || grads.dGate != nullptr || grads.dUp != nullptr;
    if (wantExpertIn) {
      // dH = dY·down (into H), then dG, dU in place of G, U.
      grouped::groupedGemm(stream, product(dtype, Y, d, nullptr, args.down, f, d * f,
                                           BLayout::KN, H, f, d, offsets, 0, groups, slots));
      swigluGradKernel<T><<<vecBlocks<T>(slots * f), 256, 0, s>>>(act.g, act.u, H, G, U, slots * f);
      checkLaunch("moe backward swiglu gradient");
      WgradParams<T, T> wp{};
      wp.lda = f;
      wp.b = static_cast<const T *>(x.data);
      wp.ldb = x.ld;
      wp.bIndex = rowToken;
      wp.n = f;
      wp.k = d;
      wp.offsets = offsets;
      wp.groups = groups;
      wp.ldc = d;
      wp.strideC = f * d;
      if (grads.dGate != nullptr) {
        wp.a = G;
        wp.c = static_cast<T *>(grads.dGate);
        launchWgrad<T, T>(stream, wp, routed, partial);
      }
      if (grads.dUp != nullptr) {
        wp.a = U;
        wp.c = static_cast<T *>(grads.dUp);
        launchWgrad<T, T>(stream, wp, routed, partial);
      }
      if (wantX) {
        // dX rows of each slot: dG·gate into Y (dY is spent), dU·up into XU.
        grouped::groupedGemm(stream, product(dtype, G, f, nullptr, args.gate, d, f * d,
                                             BLayout::KN, Y, d, f, offsets, 0, groups, slots));
        grouped::groupedGemm(stream, product(dtype, U, f, nullptr, args.up, d, f * d,
                                             BLayout::KN, XU, d, f, offsets, 0, groups, slots));
      }
    }

    // SwiGLU backward of the shared expert.
    const bool wantShared = shared && (wantX || grads.dSharedGate != nullptr ||
                                       grads.dSharedUp != nullptr || grads.dSharedDown != nullptr);
    if (wantShared) {
      GradYParams<T> sp = gp;
      sp.rowToken = nullptr;
      sp.rowSlot = nullptr;
      sp.groupRows = 0;
      sp.weight = nullptr;
      sp.dot = nullptr;
      sp.y = nullptr;
      sp.dy = DYs;
      sp.rows = m;
      launchGradY<T>(stream, sp);
      checkLaunch("moe backward shared dy");
      if (grads.dSharedDown != nullptr) {
        WgradParams<T, T> wp{};
        wp.a = DYs;
        wp.lda = d;
        wp.b = act.hs;
        wp.ldb = fs;
        wp.n = d;
        wp.k = fs;
        wp.groupRows = m;
        wp.groups = 1;
        wp.c = static_cast<T *>(grads.dSharedDown);
        wp.ldc = fs;
        launchWgrad<T, T>(stream, wp, m, partial);
      }
      if (wantX || grads.dSharedGate != nullptr || grads.dSharedUp != nullptr) {
        grouped::groupedGemm(stream, product(dtype, DYs, d, nullptr, args.sharedDown, fs, 0,
                                             BLayout::KN, Hs, fs, d, nullptr, m, 1, m));
        swigluGradKernel<T><<<vecBlocks<T>(m * fs), 256, 0, s>>>(act.gs, act.us, Hs, Gs, Us, m * fs);
        checkLaunch("moe backward swiglu gradient");
        WgradParams<T, T> wp{};
        wp.lda = fs;
        wp.b = static_cast<const T *>(x.data);
        wp.ldb = x.ld;
        wp.n = fs;
        wp.k = d;
        wp.groupRows = m;
        wp.groups = 1;
        wp.ldc = d;
        if (grads.dSharedGate != nullptr) {
          wp.a = Gs;
          wp.c = static_cast<T *>(grads.dSharedGate);
          launchWgrad<T, T>(stream, wp, m, partial);
        }
        if (grads.dSharedUp != nullptr) {
          wp.a = Us;
          wp.c = static_cast<T *>(grads.dSharedUp);
          launchWgrad<T, T>(stream, wp, m, partial);
        }
        if (wantX) {
          // dG·gate into Ys, dU·up into DYs (both spent).
          grouped::groupedGemm(stream, product(dtype, Gs, fs, nullptr, args.sharedGate, d, 0,
                                               BLayout::KN, Ys, d, fs, nullptr, m, 1, m));
          grouped::groupedGemm(stream, product(dtype, Us, fs, nullptr, args.sharedUp, d, 0,
                                               BLayout::KN, DYs, d, fs, nullptr, m, 1, m));
        }
      }
    }

    // The router: probabilities' gradient, softmax, dRouter, then dX.
    if (!wantRouter)
      return;
    tokenLogitsKernel<<<elementBlocks(m), 256, 0, s>>>(
        probs, expertOf, weightOf, totals, dw, counts, m, static_cast<int>(e),
        static_cast<int>(topK), args.normalize, grads.balanceCoef, dLogits);
    checkLaunch("moe backward router logits");
    if (grads.dRouter != nullptr) {
      WgradParams<float, T> wp{};
      wp.a = dLogits;
      wp.lda = e;
      wp.b = static_cast<const T *>(x.data);
      wp.ldb = x.ld;
      wp.n = e;
      wp.k = d;
      wp.groupRows = m;
      wp.groups = 1;
      wp.c = static_cast<T *>(grads.dRouter);
      wp.ldc = d;
      launchWgrad<float, T>(stream, wp, m, partial);
    }
    if (wantX) {
      TokenSumParams<T> tp{};
      tp.shared = wantShared ? Ys : nullptr;
      tp.shared2 = wantShared ? DYs : nullptr;
      tp.slots = Y;
      tp.slots2 = XU;
      tp.slot = slotRow;
      tp.perToken = static_cast<int>(topK);
      tp.rows = m;
      tp.d = d;
      launchDx<T>(stream, tp, dLogits, static_cast<const T *>(args.router), static_cast<int>(e),
                  static_cast<T *>(grads.dX.data), grads.dX.ld);
    }
  });
}

//===----------------------------------------------------------------------===//
// Expert choice
//===----------------------------------------------------------------------===//

size_t moeExpertChoiceBackwardWorkspaceBytes(int64_t rows, int64_t d, const ExpertChoiceArgs &args,
                                             DType dtype) {
  const int64_t k = expertCapacity(args);
  if (rows <= 0 || d <= 0 || k == 0 || args.hidden <= 0)
    return 0;
  return expertLayout(rows, d, k, args, dtype).total;
}

void moeExpertChoiceBackward(Stream stream, Gemm &, DType dtype, DConstMat x,
                             const ExpertChoiceArgs &args, DConstMat dOut,
                             const ExpertChoiceGrads &grads, Workspace ws) {
  const char *kernel = "moeExpertChoiceBackward";
  const int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, tokens = args.tokens;
  checkDView(kernel, "x", x, m, d);
  checkDView(kernel, "dOut", dOut, m, d);
  const int64_t k = checkExpertChoice(kernel, m, args);
  const GatedResidual *epi = args.epilogue;
  checkDEpilogue(kernel, epi, m, d);
  const bool wantX = grads.dX.data != nullptr;
  if (wantX)
    checkDView(kernel, "dX", grads.dX, m, d);
  const bool wantEpiGate = grads.dEpilogueGate.data != nullptr;
  if (wantEpiGate) {
    if (epi == nullptr)
      fail(kernel, ": dEpilogueGate is wanted but there is no gated-residual epilogue");
    checkDPerSample(kernel, "dEpilogueGate", grads.dEpilogueGate, m, epi->rowsPerGate, d);
  }
  const size_t es = dtypeSize(dtype);
  if (wantX && (overlapsD(grads.dX, x, es) || overlapsD(grads.dX, dOut, es)))
    fail(kernel, ": dX overlaps x or dOut");
  if (m * e > INT32_MAX)
    fail(kernel, ": ", m, " rows x ", e, " experts exceed the int32 index range");
  if (m == 0)
    return;
  const int64_t batch = m / tokens;
  int pow2 = 1;
  while (pow2 < tokens)
    pow2 <<= 1;
  int device = 0, smemLimit = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&smemLimit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "shared memory limit");
  const size_t selectSmem = static_cast<size_t>(pow2) * sizeof(unsigned long long);
  if (selectSmem > static_cast<size_t>(smemLimit))
    fail(kernel, ": ", tokens, " tokens per sample exceed the shared-memory sort (", selectSmem,
         " bytes)");
  const ExpertLayout l = expertLayout(m, d, k, args, dtype);
  checkWorkspace(kernel, ws, l.total);
  const int64_t per = batch * k, selected = e * per;
  const bool wantRouter = grads.dRouter != nullptr || wantX;

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    cudaStream_t s = native(stream);
    float *probs = at<float>(ws, l.probs), *dLogits = at<float>(ws, l.dLogits);
    int32_t *rows = at<int32_t>(ws, l.rows), *slotMap = at<int32_t>(ws, l.slotMap);
    float *routerF32 = l.routerF32 != 0 ? at<float>(ws, l.routerF32) : nullptr;
    float *partial = l.partial != 0 ? at<float>(ws, l.partial) : nullptr;
    T *Z = at<T>(ws, l.z), *A = at<T>(ws, l.a), *Y = at<T>(ws, l.y);
    const T *dOutT = static_cast<const T *>(dOut.data);

    moe::RouterArgs rp = moe::routerArgs(stream, dtype, x, args.router, routerF32, e);
    rp.probs = probs;
    moe::route(stream, rp, false);
    check(cudaMemsetAsync(slotMap, 0xFF, m * e * sizeof(int32_t), s),
          "moeExpertChoiceBackward: slot map");
    check(cudaMemsetAsync(dLogits, 0, m * e * sizeof(float), s),
          "moeExpertChoiceBackward: router gradient");
    if (selectSmem > 48 * 1024)
      check(cudaFuncSetAttribute(selectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(selectSmem)),
            "moeExpertChoiceBackward: shared memory limit");
    selectKernel<<<static_cast<unsigned>(batch * e), kSelectThreads, selectSmem, s>>>(
        probs, tokens, static_cast<int>(e), batch, k, pow2, rows, slotMap);
    checkLaunch("moe backward select");

    // Forward recomputation: Z = x[rows]·W1, A = act(Z), Y = A·W2.
    const bool inOut = args.inOut;
    const int groups = static_cast<int>(e);
    const int act = static_cast<int>(args.act);
    grouped::groupedGemm(stream, product(dtype, x.data, x.ld, rows, args.w1, inOut ? f : d, d * f,
                                         inOut ? BLayout::KN : BLayout::NK, Z, f, d, nullptr,
                                         per, groups, selected));
    actKernel<T><<<vecBlocks<T>(selected * f), 256, 0, s>>>(Z, nullptr, A, selected * f, act);
    checkLaunch("moe backward activation");
    grouped::groupedGemm(stream, product(dtype, A, f, nullptr, args.w2, inOut ? d : f, f * d,
                                         inOut ? BLayout::KN : BLayout::NK, Y, d, f, nullptr,
                                         per, groups, selected));

    if (wantEpiGate) {
      TokenSumParams<T> tp{};
      tp.slots = Y;
      tp.slot = slotMap;
      tp.weight = probs;
      tp.perToken = static_cast<int>(e);
      tp.rows = m;
      tp.d = d;
      launchEpilogueGate<T>(stream, tp, dOutT, dOut.ld, epi->rowsPerGate,
                            static_cast<T *>(grads.dEpilogueGate.data), grads.dEpilogueGate.ld);
    }

    // dp[token][expert] = dy·Y, Y ← p·dy.
    GradYParams<T> gp{};
    gp.dOut = dOutT;
    gp.ldOut = dOut.ld;
    gp.epiGate = epi != nullptr ? static_cast<const T *>(epi->gate.data) : nullptr;
    gp.ldGate = epi != nullptr ? epi->gate.ld : 0;
    gp.rowsPerGate = epi != nullptr ? epi->rowsPerGate : 1;
    gp.rowToken = rows;
    gp.groupRows = per;
    gp.experts = static_cast<int>(e);
    gp.weight = probs;
    gp.dot = wantRouter ? dLogits : nullptr;
    gp.y = Y;
    gp.dy = Y;
    gp.rows = selected;
    gp.d = d;
    launchGradY<T>(stream, gp);
    checkLaunch("moe backward routing weights");

    if (grads.dW2 != nullptr) {
      // inOut: dW2 (f x d) = Aᵀ·dY; else dW2 (d x f) = dYᵀ·A.
      WgradParams<T, T> wp{};
      wp.a = inOut ? A : Y;
      wp.lda = inOut ? f : d;
      wp.b = inOut ? Y : A;
      wp.ldb = inOut ? d : f;
      wp.n = inOut ? f : d;
      wp.k = inOut ? d : f;
      wp.groupRows = per;
      wp.groups = groups;
      wp.c = static_cast<T *>(grads.dW2);
      wp.ldc = wp.k;
      wp.strideC = f * d;
      launchWgrad<T, T>(stream, wp, per, partial);
    }
    if (wantX || grads.dW1 != nullptr) {
      // dA = dY·W2ᵀ (into A), dZ = dA ⊙ act'(Z) (into A).
      grouped::groupedGemm(stream, product(dtype, Y, d, nullptr, args.w2, inOut ? d : f, f * d,
                                           inOut ? BLayout::NK : BLayout::KN, A, f, d, nullptr,
                                           per, groups, selected));
      actKernel<T><<<vecBlocks<T>(selected * f), 256, 0, s>>>(Z, A, A, selected * f, act);
      checkLaunch("moe backward activation gradient");
      if (grads.dW1 != nullptr) {
        // inOut: dW1 (d x f) = xsᵀ·dZ; else dW1 (f x d) = dZᵀ·xs.
        WgradParams<T, T> wp{};
        wp.a = inOut ? static_cast<const T *>(x.data) : A;
        wp.lda = inOut ? x.ld : f;
        wp.aIndex = inOut ? rows : nullptr;
        wp.b = inOut ? A : static_cast<const T *>(x.data);
        wp.ldb = inOut ? f : x.ld;
        wp.bIndex = inOut ? nullptr : rows;
        wp.n = inOut ? d : f;
        wp.k = inOut ? f : d;
        wp.groupRows = per;
        wp.groups = groups;
        wp.c = static_cast<T *>(grads.dW1);
        wp.ldc = wp.k;
        wp.strideC = d * f;
        launchWgrad<T, T>(stream, wp, per, partial);
      }
      if (wantX)
        // dX rows = dZ·W1ᵀ into Y (dY is spent).
        grouped::groupedGemm(stream, product(dtype, A, f, nullptr, args.w1, inOut ? f : d, d * f,
                                             inOut ? BLayout::NK : BLayout::KN, Y, d, f,
                                             nullptr, per, groups, selected));
    }

    if (!wantRouter)
      return;
    softmaxBackwardKernel<<<elementBlocks(m), 256, 0, s>>>(probs, dLogits, m, static_cast<int>(e));
    checkLaunch("moe backward softmax");
    if (grads.dRouter != nullptr) {
      WgradParams<float, T> wp{};
      wp.a = dLogits;
      wp.lda = e;
      wp.b = static_cast<const T *>(x.data);
      wp.ldb = x.ld;
      wp.n = e;
      wp.k = d;
      wp.groupRows = m;
      wp.groups = 1;
      wp.c = static_cast<T *>(grads.dRouter);
      wp.ldc = d;
      launchWgrad<float, T>(stream, wp, m, partial);
    }
    if (wantX) {
      TokenSumParams<T> tp{};
      tp.slots = Y;
      tp.slot = slotMap;
      tp.perToken = static_cast<int>(e);
      tp.rows = m;
      tp.d = d;
      launchDx<T>(stream, tp, dLogits, static_cast<const T *>(args.router), static_cast<int>(e),
                  static_cast<T *>(grads.dX.data), grads.dX.ld);
    }
  });
}

} // namespace diffrt::cuda
