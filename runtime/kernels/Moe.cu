//===- Moe.cu - token-choice and expert-choice mixtures of experts --------===//
//
// Both routings of cpu::moeTokenChoice / cpu::moeExpertChoice with every
// data-dependent size kept on the device: no host synchronisation, a fixed
// sequence of launches whatever the routing, so the layer can be captured in
// a CUDA graph.
//
// Token choice (DiT-MoE, spec 3.2):
//   1. routerKernel: a warp per token computes the E logits against the
//      router staged in shared memory as f32, the softmax in f32 and the
//      top-k (ties to the lower expert index, NaN ranked lowest), optionally
//      renormalises, and counts slots per expert (block-level counters in
//      shared memory, then one global atomic per expert and block);
//   2. permuteKernel: each block re-derives the exclusive scan of the
//      counts (E <= 64 values), block 0 publishes the offsets and the int64
//      routed counts, and every slot gets its row in expert order through
//      warp-aggregated atomics (__match_any_sync: one atomic per expert and
//      warp); the order inside an expert is arbitrary, which does not change
//      any result because each row's product is computed independently;
//   3. the grouped GEMM (GroupedGemm.cu) with the gate and up weights in one
//      tile, the token gather fused into its A loads, storing
//      h = silu(x·gateᵀ) ⊙ (x·upᵀ), then the grouped down projection;
//   4. the shared expert, through cuda::swiglu on the unpermuted input;
//   5. combineKernel: a warp per token sums its k weighted slots in slot
//      order (no float atomics, so the output is bitwise reproducible), adds
//      the shared expert and applies the gated residual.
//
// Expert choice (MicroDiT, spec 4.6): the same router kernel stores the
// per-token probabilities; selectKernel, one block per (sample, expert),
// sorts the sample's probabilities for that expert as 64-bit keys (ordered
// float bits, then the complemented token index, so ties go to the lower
// token index) with a shared-memory bitonic sort and keeps the first k;
// every (expert) group then has exactly batch·k rows, so the grouped GEMM
// runs with uniform groups (activation fused into the first product); the
// combine sums, per token, the weighted outputs of the experts that picked
// it in expert order.
//
// Intermediates (h, y, the shared expert's output) are stored in the
// activation type; all accumulation, softmax and weighting is f32.
//
//===----------------------------------------------------------------------===//

#include "GroupedGemm.cuh"
#include "MoeRouter.cuh"
#include "MoeSelect.cuh"

namespace diffrt::cuda {

using grouped::BLayout;
using grouped::Epilogue;
using grouped::GroupedGemmArgs;

namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * 32;
using moe::routerInSmem;

//===----------------------------------------------------------------------===//
// Router (shared with the backward through MoeRouter.cuh)
//===----------------------------------------------------------------------===//

template <typename T> struct RouterParams {
  const T *x;
  int64_t ldx, rows, d;
  const T *router;
  const float *routerF32;
  int experts, topK;
  bool normalize, vec;
  float *probs;      // rows x experts, or null
  int32_t *expertOf; // token choice: rows x topK
  float *weightOf;   // token choice: rows x topK
  int32_t *counts;   // token choice, or null: tokens per expert (added to)
  float *totals;     // token choice, or null: rows (sum of the chosen probabilities)
};

/// Tokens a warp routes at once: every router value read from shared
/// memory serves that many tokens. One token per warp read the whole f32
/// router (E·d·4 bytes) per token, which made the kernel bound by
/// shared-memory bandwidth; each token's sums are still formed exactly as
/// the forward forms them (same lanes, same order), only interleaved with
/// other tokens'.
template <int EMAX> constexpr int kRouterTokens = EMAX <= 16 ? 4 : (EMAX <= 32 ? 2 : 1);

// Two blocks per multiprocessor (two f32 routers of up to 100 KB fit)
// where the sums fit in 128 registers; 64 experts keep the forward's bound.
template <typename T, int EMAX, bool kTokenChoice>
__global__ void __launch_bounds__(kThreads, EMAX <= 32 ? 2 : 1) routerKernel(RouterParams<T> p) {
  extern __shared__ float4 routerSmem[];
  __shared__ int blockCounts[EMAX];
  constexpr int TB = kRouterTokens<EMAX>;
  const int tid = threadIdx.x, lane = tid & 31, E = p.experts;
  const float *W = p.routerF32;
  if (W == nullptr) {
    float *w = reinterpret_cast<float *>(routerSmem);
    for (int64_t i = tid; i < E * p.d; i += kThreads)
      w[i] = toF<T>(p.router[i]);
    W = w;
  }
  if (tid < EMAX)
    blockCounts[tid] = 0;
  __syncthreads();

  constexpr int V = kVec<T>;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t t0 = (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (tid >> 5)) * TB;
       t0 < p.rows; t0 += warps * TB) {
    float acc[TB][EMAX];
#pragma unroll
    for (int b = 0; b < TB; ++b)
#pragma unroll
      for (int e = 0; e < EMAX; ++e)
        acc[b][e] = 0.0f;
    // The logits exactly as routerKernel in Moe.cu computes them: the same
    // per-lane partial sums in the same order, the same butterfly. Rows
    // past the end compute on zeros and are not stored.
    if (p.vec) {
      for (int64_t c = static_cast<int64_t>(lane) * V; c < p.d; c += 32 * V) {
        float xv[TB][V];
#pragma unroll
        for (int b = 0; b < TB; ++b) {
          if (t0 + b < p.rows) {
            loadN<V>(p.x + (t0 + b) * p.ldx + c, xv[b]);
          } else {
#pragma unroll
            for (int i = 0; i < V; ++i)
              xv[b][i] = 0.0f;
          }
        }
#pragma unroll
        for (int e = 0; e < EMAX; ++e) {
          if (e < E) {
            const float4 *w4 = reinterpret_cast<const float4 *>(W + e * p.d + c);
#pragma unroll
            for (int q = 0; q < V / 4; ++q) {
              const float4 wv = w4[q];
#pragma unroll
              for (int b = 0; b < TB; ++b)
                acc[b][e] += wv.x * xv[b][4 * q] + wv.y * xv[b][4 * q + 1] +
                             wv.z * xv[b][4 * q + 2] + wv.w * xv[b][4 * q + 3];
            }
          }
        }
      }
    } else {
      for (int64_t c = lane; c < p.d; c += 32) {
        float xv[TB];
#pragma unroll
        for (int b = 0; b < TB; ++b)
          xv[b] = t0 + b < p.rows ? toF<T>(p.x[(t0 + b) * p.ldx + c]) : 0.0f;
#pragma unroll
        for (int e = 0; e < EMAX; ++e)
          if (e < E) {
            const float w = W[e * p.d + c];
#pragma unroll
            for (int b = 0; b < TB; ++b)
              acc[b][e] += w * xv[b];
          }
      }
    }
#pragma unroll
    for (int b = 0; b < TB; ++b)
#pragma unroll
      for (int e = 0; e < EMAX; ++e)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
          acc[b][e] += __shfl_xor_sync(0xffffffffu, acc[b][e], o);

#pragma unroll
    for (int b = 0; b < TB; ++b) {
      const int64_t t = t0 + b;
      float mx = acc[b][0];
#pragma unroll
      for (int e = 1; e < EMAX; ++e)
        if (e < E)
          mx = fmaxf(mx, acc[b][e]);
      float total = 0.0f;
#pragma unroll
      for (int e = 0; e < EMAX; ++e)
        if (e < E) {
          acc[b][e] = expf(acc[b][e] - mx);
          total += acc[b][e];
        }
      const float inv = 1.0f / total;
#pragma unroll
      for (int e = 0; e < EMAX; ++e)
        acc[b][e] *= inv;

      if (lane == 0 && t < p.rows) {
        if (p.probs != nullptr) {
#pragma unroll
          for (int e = 0; e < EMAX; ++e)
            if (e < E)
              p.probs[t * E + e] = acc[b][e];
        }
        if constexpr (kTokenChoice) {
          unsigned long long chosen = 0ull;
          float picked = 0.0f;
          for (int s = 0; s < p.topK; ++s) {
            int best = -1;
            float bestRank = 0.0f, bestP = 0.0f;
#pragma unroll
            for (int e = 0; e < EMAX; ++e) {
              if (e < E && !((chosen >> e) & 1ull)) {
                const float r = rankKey(acc[b][e]);
                if (best < 0 || r > bestRank) {
                  best = e;
                  bestRank = r;
                  bestP = acc[b][e];
                }
              }
            }
            chosen |= 1ull << best;
            p.expertOf[t * p.topK + s] = best;
            p.weightOf[t * p.topK + s] = bestP;
            picked += bestP;
            if (p.counts != nullptr)
              atomicAdd(&blockCounts[best], 1);
          }
          if (p.totals != nullptr)
            p.totals[t] = picked;
          if (p.normalize)
            for (int s = 0; s < p.topK; ++s)
              p.weightOf[t * p.topK + s] /= picked;
        }
      }
    }
  }
  if constexpr (kTokenChoice) {
    if (p.counts != nullptr) {
      __syncthreads();
      if (tid < E && blockCounts[tid] != 0)
        atomicAdd(&p.counts[tid], blockCounts[tid]);
    }
  }
}

template <typename T, bool kTokenChoice>
void launchRouter(Stream stream, RouterParams<T> p) {
  const size_t smem =
      p.routerF32 == nullptr ? static_cast<size_t>(p.experts * p.d) * sizeof(float) : 0;
  auto pick = [&](auto kernel, int tokens) {
    if (smem > 48 * 1024)
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem)),
            "moe router: shared memory limit");
    const unsigned blocks = gridStrideBlocks(p.rows, kWarpsPerBlock * tokens, 2);
    kernel<<<blocks, kThreads, smem, native(stream)>>>(p);
    checkLaunch("moe router");
  };
  if (p.experts <= 8)
    pick(routerKernel<T, 8, kTokenChoice>, kRouterTokens<8>);
  else if (p.experts <= 16)
    pick(routerKernel<T, 16, kTokenChoice>, kRouterTokens<16>);
  else if (p.experts <= 32)
    pick(routerKernel<T, 32, kTokenChoice>, kRouterTokens<32>);
  else
    pick(routerKernel<T, 64, kTokenChoice>, kRouterTokens<64>);
}

//===----------------------------------------------------------------------===//
// Token-choice permutation
//===----------------------------------------------------------------------===//

__global__ void __launch_bounds__(kThreads)
    permuteKernel(const int32_t *expertOf, int64_t slots, int topK, int experts,
                  const int32_t *counts, int32_t *fill, int32_t *offsets, int64_t *routedCounts,
                  int32_t *slotRow, int32_t *rowToken) {
  __shared__ int32_t off[kMaxExperts + 1];
  if (threadIdx.x == 0) {
    int32_t run = 0;
    for (int e = 0; e < experts; ++e) {
      off[e] = run;
      run += counts[e];
    }
    off[experts] = run;
  }
  __syncthreads();
  if (blockIdx.x == 0)
    for (int e = threadIdx.x; e <= experts; e += blockDim.x) {
      offsets[e] = off[e];
      if (routedCounts != nullptr && e < experts)
        routedCounts[e] = counts[e];
    }

  const int lane = threadIdx.x & 31;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  // Warp-uniform steps so that the whole warp takes part in the match.
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x + (threadIdx.x & ~31);
       base < slots; base += stride) {
    const int64_t s = base + lane;
    const bool active = s < slots;
    const unsigned mask = __ballot_sync(0xffffffffu, active);
    if (!active)
      continue;
    const int e = expertOf[s];
    const unsigned peers = __match_any_sync(mask, e);
    const int leader = __ffs(peers) - 1;
    const int rank = __popc(peers & ((1u << lane) - 1u));
    int first = 0;
    if (lane == leader)
      first = atomicAdd(&fill[e], __popc(peers));
    first = __shfl_sync(peers, first, leader);
    const int32_t pos = off[e] + first + rank;
    slotRow[s] = pos;
    rowToken[pos] = static_cast<int32_t>(s / topK);
  }
}

//===----------------------------------------------------------------------===//
// Combine
//===----------------------------------------------------------------------===//

template <typename T> struct CombineParams {
  const T *y;        // slot outputs, ld = d
  const T *shared;   // shared expert outputs (rows x d, ld = d) or null
  const int32_t *slot;
  const float *weight;
  int perToken;      // entries of slot/weight per token; slot < 0: none
  const T *residual;
  int64_t ldRes;
  const T *gate;
  int64_t ldGate, rowsPerGate;
  T *out;
  int64_t ldo, rows, d;
};

/// A warp per token: acc = shared + Σ_j weight_j · y[slot_j] in j order,
/// then out = residual + gate ⊙ acc (or acc). out may alias the residual
/// or the input: it is written only here.
template <typename T, int N>
__global__ void __launch_bounds__(kThreads, 1) combineKernel(CombineParams<T> p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
       t < p.rows; t += warps) {
    for (int64_t c = static_cast<int64_t>(lane) * N; c < p.d; c += 32 * N) {
      float acc[N];
      if (p.shared != nullptr) {
        loadN<N>(p.shared + t * p.d + c, acc);
      } else {
#pragma unroll
        for (int e = 0; e < N; ++e)
          acc[e] = 0.0f;
      }
      for (int j = 0; j < p.perToken; ++j) {
        const int32_t s = p.slot[t * p.perToken + j];
        if (s < 0)
          continue;
        const float w = p.weight[t * p.perToken + j];
        float yv[N];
        loadN<N>(p.y + static_cast<int64_t>(s) * p.d + c, yv);
#pragma unroll
        for (int e = 0; e < N; ++e)
          acc[e] += w * yv[e];
      }
      if (p.residual != nullptr) {
        float res[N], g[N];
        loadN<N>(p.residual + t * p.ldRes + c, res);
        loadN<N>(p.gate + (t / p.rowsPerGate) * p.ldGate + c, g);
#pragma unroll
        for (int e = 0; e < N; ++e)
          acc[e] = res[e] + g[e] * acc[e];
      }
      storeN<N>(p.out + t * p.ldo + c, acc);
    }
  }
}

template <typename T>
void launchCombine(Stream stream, CombineParams<T> p, const GatedResidual *epi, DMat out) {
  constexpr int V = kVec<T>;
  const size_t es = sizeof(T);
  bool vec = p.d % V == 0 && aligned16(p.y) && (p.shared == nullptr || aligned16(p.shared)) &&
             vectorizable(out.data, out.ld, out.cols, es);
  if (epi != nullptr) {
    p.residual = static_cast<const T *>(epi->residual.data);
    p.ldRes = epi->residual.ld;
    p.gate = static_cast<const T *>(epi->gate.data);
    p.ldGate = epi->gate.ld;
    p.rowsPerGate = epi->rowsPerGate;
    vec = vec && vectorizable(epi->residual.data, epi->residual.ld, out.cols, es) &&
          vectorizable(epi->gate.data, epi->gate.ld, out.cols, es);
  } else {
    p.residual = nullptr;
    p.gate = nullptr;
    p.ldRes = p.ldGate = 0;
    p.rowsPerGate = 1;
  }
  p.out = static_cast<T *>(out.data);
  p.ldo = out.ld;
  const unsigned blocks = gridStrideBlocks(p.rows, kWarpsPerBlock, 8);
  if (vec)
    combineKernel<T, V><<<blocks, kThreads, 0, native(stream)>>>(p);
  else
    combineKernel<T, 1><<<blocks, kThreads, 0, native(stream)>>>(p);
  checkLaunch("moe combine");
}

//===----------------------------------------------------------------------===//
// Workspace layouts (shared by the size queries and the launches)
//===----------------------------------------------------------------------===//

struct Carve {
  size_t bytes = 0;
  size_t take(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) / 256 * 256;
    return at;
  }
};

struct TokenLayout {
  size_t counts, offsets, expertOf, weightOf, slotRow, rowToken, h, y, shared, swigluWs,
      swigluBytes, routerF32, total;
};

TokenLayout tokenLayout(int64_t m, int64_t d, const TokenChoiceArgs &a, DType dtype) {
  const size_t es = dtypeSize(dtype);
  const int64_t e = a.experts, slots = m * a.topK, f = a.hidden;
  Carve c;
  TokenLayout l;
  l.counts = c.take(2 * e * sizeof(int32_t)); // counts, then the fill cursors
  l.offsets = c.take((e + 1) * sizeof(int32_t));
  l.expertOf = c.take(slots * sizeof(int32_t));
  l.weightOf = c.take(slots * sizeof(float));
  l.slotRow = c.take(slots * sizeof(int32_t));
  l.rowToken = c.take(slots * sizeof(int32_t));
  l.h = c.take(slots * f * es);
  l.y = c.take(slots * d * es);
  l.swigluBytes = 0;
  if (a.sharedGate != nullptr) {
    l.shared = c.take(m * d * es);
    l.swigluBytes = swigluWorkspaceBytes(m, a.sharedHidden, d, dtype);
    l.swigluWs = c.take(l.swigluBytes);
  } else {
    l.shared = l.swigluWs = 0;
  }
  l.routerF32 = routerInSmem(e, d) ? 0 : c.take(e * d * sizeof(float));
  l.total = c.bytes;
  return l;
}

struct ExpertLayout {
  size_t probs, rows, slotMap, h, y, routerF32, total;
};

ExpertLayout expertLayout(int64_t m, int64_t d, int64_t k, const ExpertChoiceArgs &a,
                          DType dtype) {
  const size_t es = dtypeSize(dtype);
  const int64_t e = a.experts, f = a.hidden, batch = a.tokens > 0 ? m / a.tokens : 0;
  const int64_t selected = e * batch * k;
  Carve c;
  ExpertLayout l;
  l.probs = c.take(m * e * sizeof(float));
  l.rows = c.take(selected * sizeof(int32_t));
  l.slotMap = c.take(m * e * sizeof(int32_t));
  l.h = c.take(selected * f * es);
  l.y = c.take(selected * d * es);
  l.routerF32 = routerInSmem(e, d) ? 0 : c.take(e * d * sizeof(float));
  l.total = c.bytes;
  return l;
}

void checkWorkspace(const char *kernel, const Workspace &ws, size_t need) {
  if (need > 0 && (ws.data == nullptr || ws.bytes < need))
    fail(kernel, ": workspace of ", ws.bytes, " bytes is too small, ", need, " bytes needed");
  if (need > 0 && !aligned16(ws.data))
    fail(kernel, ": workspace is not 16-byte aligned");
}

template <typename U> U *at(const Workspace &ws, size_t offset) {
  return reinterpret_cast<U *>(static_cast<uint8_t *>(ws.data) + offset);
}

} // namespace

//===----------------------------------------------------------------------===//
// Token choice
//===----------------------------------------------------------------------===//

size_t moeTokenChoiceWorkspaceBytes(int64_t tokens, int64_t d, const TokenChoiceArgs &args,
                                    DType dtype, bool keepActivations) {
  if (tokens <= 0 || d <= 0 || args.experts <= 0 || args.topK <= 0 || args.hidden <= 0)
    return 0;
  if (keepActivations)
    return moe::tokenChoiceKeepingWorkspaceBytes(tokens, d, args, dtype);
  return tokenLayout(tokens, d, args, dtype).total;
}

void moe::combineTokenChoice(Stream stream, DType dtype, const void *y, const void *shared, const int32_t *slotRow,
                             const float *weightOf, int topK, int64_t rows, int64_t d,
                             const GatedResidual *epilogue, DMat out) {
  dispatchFloat(dtype, "moe combine", [&](auto zero) {
    using T = decltype(zero);
    CombineParams<T> cp{};
    cp.y = static_cast<const T *>(y);
    cp.shared = static_cast<const T *>(shared);
    cp.slot = slotRow;
    cp.weight = weightOf;
    cp.perToken = topK;
    cp.rows = rows;
    cp.d = d;
    launchCombine<T>(stream, cp, epilogue, out);
  });
}

void moeTokenChoice(Stream stream, Gemm &gemm, DType dtype, DConstMat x,
                    const TokenChoiceArgs &args, DMat out, Workspace ws) {
  const char *kernel = "moeTokenChoice";
  const int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, topK = args.topK;
  checkDView(kernel, "x", x, m, d);
  checkDView(kernel, "out", out, m, d);
  const bool shared = checkTokenChoice(kernel, args);
  checkDEpilogue(kernel, args.epilogue, m, d);
  if (m * topK > INT32_MAX)
    fail(kernel, ": ", m, " tokens x top ", topK, " exceed the int32 slot range");
  if (m == 0 || d == 0) {
    if (args.routedCounts != nullptr)
      check(cudaMemsetAsync(args.routedCounts, 0, e * sizeof(int64_t), native(stream)),
            "moeTokenChoice: routed counts");
    return;
  }
  if (args.activations != nullptr)
    return moe::tokenChoiceKeepingActivations(stream, dtype, x, args, out, ws);
  const TokenLayout l = tokenLayout(m, d, args, dtype);
  checkWorkspace(kernel, ws, l.total);
  const int64_t slots = m * topK;

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    int32_t *counts = at<int32_t>(ws, l.counts), *fill = counts + e;
    int32_t *offsets = at<int32_t>(ws, l.offsets);
    int32_t *expertOf = at<int32_t>(ws, l.expertOf), *slotRow = at<int32_t>(ws, l.slotRow);
    int32_t *rowToken = at<int32_t>(ws, l.rowToken);
    float *weightOf = at<float>(ws, l.weightOf);
    T *h = at<T>(ws, l.h), *y = at<T>(ws, l.y);
    float *routerF32 = l.routerF32 != 0 ? at<float>(ws, l.routerF32) : nullptr;

    check(cudaMemsetAsync(counts, 0, 2 * e * sizeof(int32_t), native(stream)),
          "moeTokenChoice: expert counters");
    moe::RouterArgs rp = moe::routerArgs(stream, dtype, x, args.router, routerF32, e);
    rp.topK = static_cast<int>(topK);
    rp.normalize = args.normalize;
    rp.expertOf = expertOf;
    rp.weightOf = weightOf;
    rp.counts = counts;
    moe::route(stream, rp, true);

    permuteKernel<<<gridStrideBlocks(slots, kThreads, 4), kThreads, 0, native(stream)>>>(
        expertOf, slots, static_cast<int>(topK), static_cast<int>(e), counts, fill, offsets,
        args.routedCounts, slotRow, rowToken);
    checkLaunch("moe permute");

    // h = silu(x[rows]·gateᵀ) ⊙ (x[rows]·upᵀ), rows gathered by expert.
    GroupedGemmArgs up;
    up.dtype = dtype;
    up.a = x.data;
    up.lda = x.ld;
    up.rowIndex = rowToken;
    up.b = args.gate;
    up.b2 = args.up;
    up.ldb = d;
    up.groupStrideB = f * d;
    up.layout = BLayout::NK;
    up.c = h;
    up.ldc = f;
    up.n = f;
    up.k = d;
    up.offsets = offsets;
    up.groups = static_cast<int>(e);
    up.maxRows = slots;
    up.epilogue = Epilogue::SwiGlu;
    grouped::groupedGemm(stream, up);

    // y = h·downᵀ per expert.
    GroupedGemmArgs dn;
    dn.dtype = dtype;
    dn.a = h;
    dn.lda = f;
    dn.b = args.down;
    dn.ldb = f;
    dn.groupStrideB = d * f;
    dn.layout = BLayout::NK;
    dn.c = y;
    dn.ldc = d;
    dn.n = d;
    dn.k = f;
    dn.offsets = offsets;
    dn.groups = static_cast<int>(e);
    dn.maxRows = slots;
    dn.epilogue = Epilogue::Store;
    grouped::groupedGemm(stream, dn);

    T *sharedY = nullptr;
    if (shared) {
      const int64_t fs = args.sharedHidden;
      sharedY = at<T>(ws, l.shared);
      DConstMat sg{args.sharedGate, fs, d, d}, su{args.sharedUp, fs, d, d};
      DConstMat sd{args.sharedDown, d, fs, fs};
      DMat so{sharedY, m, d, d};
      swiglu(stream, gemm, dtype, x, sg, su, sd, nullptr, so,
             Workspace{at<uint8_t>(ws, l.swigluWs), l.swigluBytes});
    }

    moe::combineTokenChoice(stream, dtype, y, sharedY, slotRow, weightOf, static_cast<int>(topK), m, d,
                            args.epilogue, out);
  });
}

//===----------------------------------------------------------------------===//
// Expert choice
//===----------------------------------------------------------------------===//

size_t moeExpertChoiceWorkspaceBytes(int64_t rows, int64_t d, const ExpertChoiceArgs &args,
                                     DType dtype) {
  const int64_t k = expertCapacity(args);
  if (rows <= 0 || d <= 0 || k == 0 || args.hidden <= 0)
    return 0;
  return expertLayout(rows, d, k, args, dtype).total;
}

void moeExpertChoice(Stream stream, Gemm &, DType dtype, DConstMat x,
                     const ExpertChoiceArgs &args, DMat out, Workspace ws) {
  const char *kernel = "moeExpertChoice";
  const int64_t m = x.rows, d = x.cols, e = args.experts, f = args.hidden, tokens = args.tokens;
  checkDView(kernel, "x", x, m, d);
  checkDView(kernel, "out", out, m, d);
  const int64_t k = checkExpertChoice(kernel, m, args);
  checkDEpilogue(kernel, args.epilogue, m, d);
  if (m * e > INT32_MAX)
    fail(kernel, ": ", m, " rows x ", e, " experts exceed the int32 index range");
  if (m == 0 || d == 0)
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
    fail(kernel, ": ", tokens, " tokens per sample exceed the shared-memory sort (",
         selectSmem, " bytes)");
  const ExpertLayout l = expertLayout(m, d, k, args, dtype);
  checkWorkspace(kernel, ws, l.total);
  const int64_t perExpert = batch * k;

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    float *probs = at<float>(ws, l.probs);
    int32_t *rows = at<int32_t>(ws, l.rows), *slotMap = at<int32_t>(ws, l.slotMap);
    T *h = at<T>(ws, l.h), *y = at<T>(ws, l.y);
    float *routerF32 = l.routerF32 != 0 ? at<float>(ws, l.routerF32) : nullptr;
    moe::RouterArgs rp = moe::routerArgs(stream, dtype, x, args.router, routerF32, e);
    rp.probs = probs;
    moe::route(stream, rp, false);

    // -1 everywhere: tokens no expert picks stay unmapped.
    check(cudaMemsetAsync(slotMap, 0xFF, m * e * sizeof(int32_t), native(stream)),
          "moeExpertChoice: slot map");
    if (selectSmem > 48 * 1024)
      check(cudaFuncSetAttribute(selectKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(selectSmem)),
            "moeExpertChoice: shared memory limit");
    selectKernel<<<static_cast<unsigned>(batch * e), kSelectThreads, selectSmem,
                   native(stream)>>>(probs, tokens, static_cast<int>(e), batch, k, pow2, rows,
                                     slotMap);
    checkLaunch("moe select");

    // inOut: w1 e x d x f and w2 e x f x d are K x N; otherwise nn.Linear.
    const BLayout layout = args.inOut ? BLayout::KN : BLayout::NK;
    GroupedGemmArgs g1;
    g1.dtype = dtype;
    g1.a = x.data;
    g1.lda = x.ld;
    g1.rowIndex = rows;
    g1.b = args.w1;
    g1.ldb = args.inOut ? f : d;
    g1.groupStrideB = d * f;
    g1.layout = layout;
    g1.c = h;
    g1.ldc = f;
    g1.n = f;
    g1.k = d;
    g1.groupRows = perExpert;
    g1.groups = static_cast<int>(e);
    g1.maxRows = e * perExpert;
    g1.epilogue = Epilogue::Act;
    g1.act = args.act;
    grouped::groupedGemm(stream, g1);

    GroupedGemmArgs g2;
    g2.dtype = dtype;
    g2.a = h;
    g2.lda = f;
    g2.b = args.w2;
    g2.ldb = args.inOut ? d : f;
    g2.groupStrideB = f * d;
    g2.layout = layout;
    g2.c = y;
    g2.ldc = d;
    g2.n = d;
    g2.k = f;
    g2.groupRows = perExpert;
    g2.groups = static_cast<int>(e);
    g2.maxRows = e * perExpert;
    g2.epilogue = Epilogue::Store;
    grouped::groupedGemm(stream, g2);

    CombineParams<T> cp{};
    cp.y = y;
    cp.shared = nullptr;
    cp.slot = slotMap;
    cp.weight = probs;
    cp.perToken = static_cast<int>(e);
    cp.rows = m;
    cp.d = d;
    launchCombine<T>(stream, cp, args.epilogue, out);
  });
}

void moe::route(Stream stream, const RouterArgs &a, bool tokenChoice) {
  dispatchFloat(a.dtype, "moe router", [&](auto zero) {
    using T = decltype(zero);
    RouterParams<T> p{};
    p.x = static_cast<const T *>(a.x);
    p.ldx = a.ldx;
    p.rows = a.rows;
    p.d = a.d;
    p.router = static_cast<const T *>(a.router);
    p.routerF32 = a.routerF32;
    p.experts = a.experts;
    p.topK = a.topK;
    p.normalize = a.normalize;
    p.vec = a.vec;
    p.probs = a.probs;
    p.expertOf = a.expertOf;
    p.weightOf = a.weightOf;
    p.counts = a.counts;
    p.totals = a.totals;
    if (tokenChoice)
      launchRouter<T, true>(stream, p);
    else
      launchRouter<T, false>(stream, p);
  });
}

} // namespace diffrt::cuda
