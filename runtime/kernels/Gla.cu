//===- Gla.cu - chunked causal gated linear attention ---------------------===//
//
// DiG's token mixer (spec 5.2) in the chunk-parallel form of cpu::gla. Per
// (sample, head) the dk x dv state S is carried through the sequence in
// chunks of C tokens (the last chunk may be shorter): with b the cumulative
// log-decay inside the chunk,
//   o_j   = (q_j ⊙ e^{b_j}) S + Σ_{i<=j} (Σ_c q_jc k_ic e^{b_jc - b_ic}) v_i
//   S_new = diag(e^{b_last}) S + Σ_i (k_i ⊙ e^{b_last - b_i})ᵀ v_i
// Only relative decays with i <= j (values in (0, 1]) are exponentiated, so
// no factor can overflow however strong the decay; all decay arithmetic is
// f32.
//
// Design. One block per (sample, head, slice of DVS value columns), so the
// grid covers batch · heads · ceil(dv / DVS) blocks and the value dimension
// is split across blocks (each recomputes the cheap C x C decayed scores of
// its head). Thread (kg, e) owns value column e of the slice and the 16 key
// rows kg·16 .. kg·16+15 of S in registers (KG = 1, 2, 4 or 8 groups, the
// power of two covering dk, so dk up to 128; DiG's dk = 32 gives 128-thread
// blocks); S never leaves registers. Per chunk the block
//   1. converts the chunk's q, k, gate logits and v (staged raw in shared
//      memory by cp.async one chunk ahead, double-buffered, so global
//      latency overlaps the previous chunk's arithmetic) to f32 tiles,
//   2. forms the cumulative log-decays (one thread per key channel, in
//      sequence order like the CPU reference),
//   3. forms q ⊙ e^{b}, k ⊙ e^{b_last - b} and the masked C x C scores,
//   4. computes its outputs (inter-chunk product with S, intra-chunk
//      product with the scores; key groups combine through shared memory
//      in a fixed order) and writes them, and
//   5. decays and updates its part of S.
// Everything is f32 FMA on CUDA cores (tensor cores would round the state
// or its products to 16 bits or tf32). Shared-memory tiles whose rows are
// read by different threads at the same column use a padded stride (one
// float more than the padded key width) so the score loop is free of bank
// conflicts; rows read as broadcasts use float4.
//
// Measured speed (H100, bf16, DiG-XL/2 heads: 18 heads, dk = 32, dv = 64,
// C = 16): batch 32 at T = 256 (256 px) 0.23 ms, T = 1024 0.89 ms; batch 4
// at T = 4096 2.4 ms; batch 1 at T = 16384 9.5 ms. Nsight Compute shows the
// 256-px case bound by instruction issue and shared-memory latency (about
// half the SM's issue rate at 3-5 resident blocks), not by memory (streaming
// q, k, v, gates and out once takes about 20 µs at that shape); registers are
// capped so that the 576 blocks fit in one wave. Small batches at long T run
// few blocks, each a sequential chain of T / C chunk steps, and are latency
// bound; splitting the sequence across blocks (a scan over chunk states)
// would be the next step there. The step-by-step recurrence needs T
// dependent state updates per (sample, head) against T / C here.
//
// Chunk lengths above 64, or whose tiles do not fit in shared memory, are
// processed as the largest halving that fits: the function is the same, only
// the rounding of the chunked form changes. No workspace is needed.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

namespace diffrt::cuda {

namespace {

constexpr int kMaxChunk = 64;
constexpr int kRows = 16; // key rows of S per thread

struct GlaLayout {
  int dkp, dks, as; // padded key width, padded Q/K/B row stride, score row stride
  size_t q, k, b, qe, kd, v, a, dl, op, rawQ, rawK, rawG, rawV, total;
};

__host__ __device__ inline size_t take(size_t &offset, size_t bytes) {
  const size_t at = offset;
  offset += (bytes + 15) / 16 * 16;
  return at;
}

/// Shared-memory carve-up, the same on host (sizing) and device.
__host__ __device__ inline GlaLayout glaLayout(int c, int dk, int kg, int dvs, int elem) {
  GlaLayout l;
  l.dkp = kg * kRows;
  l.dks = l.dkp + 1;
  l.as = c + 1;
  size_t off = 0;
  const size_t f = sizeof(float);
  l.q = take(off, c * l.dks * f);
  l.k = take(off, c * l.dks * f);
  l.b = take(off, c * l.dks * f);
  l.qe = take(off, c * l.dkp * f);
  l.kd = take(off, c * l.dkp * f);
  l.v = take(off, c * dvs * f);
  l.a = take(off, c * l.as * f);
  l.dl = take(off, l.dkp * f);
  l.op = take(off, kg > 1 ? kg * c * dvs * f : 0);
  l.rawQ = take(off, 2 * c * dk * elem);
  l.rawK = take(off, 2 * c * dk * elem);
  l.rawG = take(off, 2 * c * dk * elem);
  l.rawV = take(off, 2 * c * dvs * elem);
  l.total = off;
  return l;
}

template <typename T> struct GlaParams {
  const T *q, *k, *v, *g;
  int64_t ldq, ldk, ldv, ldg;
  T *out;
  int64_t ldo;
  int64_t t;
  int heads, dk, dv, chunk, slices;
  float scale, invNorm;
  bool async; // every row piece is a 16-byte aligned multiple: cp.async
};

__device__ __forceinline__ float logSigmoid(float x) {
  return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

/// Stages the raw rows [row0, row0 + len) of q, k, gate logits (this head)
/// and v (this slice) into raw buffer `buf`.
template <typename T, int DVS>
__device__ __forceinline__ void stageChunk(const GlaParams<T> &p, char *smem, const GlaLayout &l,
                                           int buf, int64_t row0, int len, int h, int v0,
                                           int width) {
  constexpr int E = 16 / sizeof(T); // elements per 16 bytes
  const int nt = blockDim.x, tid = threadIdx.x, dk = p.dk, c = p.chunk;
  T *rq = reinterpret_cast<T *>(smem + l.rawQ) + buf * c * dk;
  T *rk = reinterpret_cast<T *>(smem + l.rawK) + buf * c * dk;
  T *rg = reinterpret_cast<T *>(smem + l.rawG) + buf * c * dk;
  T *rv = reinterpret_cast<T *>(smem + l.rawV) + buf * c * DVS;
  const int64_t kcol = static_cast<int64_t>(h) * dk, vcol = static_cast<int64_t>(h) * p.dv + v0;
  if (p.async) {
    const int per = dk / E;
    for (int i = tid; i < len * per; i += nt) {
      const int j = i / per, o = (i - j * per) * E;
      const int64_t row = row0 + j;
      cpAsync16(rq + j * dk + o, p.q + row * p.ldq + kcol + o);
      cpAsync16(rk + j * dk + o, p.k + row * p.ldk + kcol + o);
      cpAsync16(rg + j * dk + o, p.g + row * p.ldg + kcol + o);
    }
    const int perV = width / E;
    for (int i = tid; i < len * perV; i += nt) {
      const int j = i / perV, o = (i - j * perV) * E;
      cpAsync16(rv + j * DVS + o, p.v + (row0 + j) * p.ldv + vcol + o);
    }
  } else {
    for (int i = tid; i < len * dk; i += nt) {
      const int j = i / dk, o = i - j * dk;
      const int64_t row = row0 + j;
      rq[j * dk + o] = p.q[row * p.ldq + kcol + o];
      rk[j * dk + o] = p.k[row * p.ldk + kcol + o];
      rg[j * dk + o] = p.g[row * p.ldg + kcol + o];
    }
    for (int i = tid; i < len * width; i += nt) {
      const int j = i / width, o = i - j * width;
      rv[j * DVS + o] = p.v[(row0 + j) * p.ldv + vcol + o];
    }
  }
  cpAsyncCommit();
}

/// Register budget: at least 640 resident threads per multiprocessor (about
/// 100 registers each), so that DiG's 576 (sample, head) blocks of 128
/// threads fit in one wave on 132 multiprocessors instead of two.
template <int NT> constexpr int glaMinBlocks() { return 640 / NT > 0 ? 640 / NT : 1; }

template <typename T, int KG, int DVS>
__global__ void __launch_bounds__(KG *DVS, glaMinBlocks<KG * DVS>()) glaKernel(GlaParams<T> p) {
  constexpr int NT = KG * DVS;
  extern __shared__ float4 glaSmem[];
  char *smem = reinterpret_cast<char *>(glaSmem);

  const int tid = threadIdx.x, kg = tid / DVS, e = tid - kg * DVS;
  const int64_t cta = blockIdx.x;
  const int sl = static_cast<int>(cta % p.slices);
  const int64_t bh = cta / p.slices;
  const int h = static_cast<int>(bh % p.heads);
  const int64_t b = bh / p.heads;
  const int v0 = sl * DVS;
  const int width = p.dv - v0 < DVS ? p.dv - v0 : DVS;
  const int dk = p.dk, C = p.chunk;

  const GlaLayout l = glaLayout(C, dk, KG, DVS, sizeof(T));
  const int DKP = l.dkp, DKS = l.dks, AS = l.as;
  float *Q = reinterpret_cast<float *>(smem + l.q);
  float *K = reinterpret_cast<float *>(smem + l.k);
  float *B = reinterpret_cast<float *>(smem + l.b);
  float *QE = reinterpret_cast<float *>(smem + l.qe);
  float *KD = reinterpret_cast<float *>(smem + l.kd);
  float *V = reinterpret_cast<float *>(smem + l.v);
  float *A = reinterpret_cast<float *>(smem + l.a);
  float *DL = reinterpret_cast<float *>(smem + l.dl);
  float *OP = reinterpret_cast<float *>(smem + l.op);

  float s[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
    s[r] = 0.0f;

  const int64_t nChunks = (p.t + C - 1) / C;
  stageChunk<T, DVS>(p, smem, l, 0, b * p.t, static_cast<int>(p.t < C ? p.t : C), h, v0, width);

  for (int64_t ci = 0; ci < nChunks; ++ci) {
    const int64_t s0 = ci * C, row0 = b * p.t + s0;
    const int L = static_cast<int>(p.t - s0 < C ? p.t - s0 : C);
    if (ci + 1 < nChunks) {
      const int64_t n0 = s0 + C;
      const int nl = static_cast<int>(p.t - n0 < C ? p.t - n0 : C);
      stageChunk<T, DVS>(p, smem, l, static_cast<int>((ci + 1) & 1), b * p.t + n0, nl, h, v0,
                         width);
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();

    // 1. f32 tiles; padding key channels are zero (they then add nothing
    //    and keep their rows of S at zero).
    {
      const int buf = static_cast<int>(ci & 1);
      const T *rq = reinterpret_cast<const T *>(smem + l.rawQ) + buf * C * dk;
      const T *rk = reinterpret_cast<const T *>(smem + l.rawK) + buf * C * dk;
      const T *rg = reinterpret_cast<const T *>(smem + l.rawG) + buf * C * dk;
      const T *rv = reinterpret_cast<const T *>(smem + l.rawV) + buf * C * DVS;
      for (int i = tid; i < L * DKP; i += NT) {
        const int j = i / DKP, c = i - j * DKP;
        float qv = 0.0f, kv = 0.0f, gv = 0.0f;
        if (c < dk) {
          qv = p.scale * toF<T>(rq[j * dk + c]);
          kv = toF<T>(rk[j * dk + c]);
          gv = logSigmoid(toF<T>(rg[j * dk + c])) * p.invNorm;
        }
        Q[j * DKS + c] = qv;
        K[j * DKS + c] = kv;
        B[j * DKS + c] = gv;
      }
      for (int i = tid; i < L * DVS; i += NT) {
        const int j = i / DVS, c = i - j * DVS;
        V[j * DVS + c] = c < width ? toF<T>(rv[j * DVS + c]) : 0.0f;
      }
    }
    __syncthreads();

    // 2. Cumulative log-decays b_j = Σ_{u<=j} g_u, in sequence order.
    if (tid < DKP) {
      float acc = B[tid];
      for (int j = 1; j < L; ++j) {
        acc += B[j * DKS + tid];
        B[j * DKS + tid] = acc;
      }
      DL[tid] = __expf(acc);
    }
    __syncthreads();

    // 3. Decayed queries and keys, and the masked scores.
    for (int i = tid; i < L * DKP; i += NT) {
      const int j = i / DKP, c = i - j * DKP;
      const float bj = B[j * DKS + c];
      QE[j * DKP + c] = Q[j * DKS + c] * __expf(bj);
      KD[j * DKP + c] = K[j * DKS + c] * __expf(B[(L - 1) * DKS + c] - bj);
    }
    for (int pr = tid; pr < L * L; pr += NT) {
      const int j = pr / L, i = pr - j * L;
      if (i > j)
        continue;
      const float *qj = Q + j * DKS, *ki = K + i * DKS, *bj = B + j * DKS, *bi = B + i * DKS;
      float acc = 0.0f;
      for (int c = 0; c < dk; ++c)
        acc += qj[c] * ki[c] * __expf(bj[c] - bi[c]);
      A[j * AS + i] = acc;
    }
    __syncthreads();

    // 4. Outputs of this chunk, 16 rows at a time (register accumulators).
    T *outBase = p.out + row0 * p.ldo + static_cast<int64_t>(h) * p.dv + v0 + e;
    for (int jb = 0; jb < L; jb += 16) {
      float acc[16];
#pragma unroll
      for (int jj = 0; jj < 16; ++jj) {
        acc[jj] = 0.0f;
        const int j = jb + jj;
        if (j < L) {
          const float4 *q4 = reinterpret_cast<const float4 *>(QE + j * DKP + kg * kRows);
          float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
          for (int r4 = 0; r4 < kRows / 4; r4 += 2) {
            const float4 x = q4[r4], y = q4[r4 + 1];
            a0 += x.x * s[4 * r4 + 0] + x.y * s[4 * r4 + 1] + x.z * s[4 * r4 + 2] +
                  x.w * s[4 * r4 + 3];
            a1 += y.x * s[4 * r4 + 4] + y.y * s[4 * r4 + 5] + y.z * s[4 * r4 + 6] +
                  y.w * s[4 * r4 + 7];
          }
          acc[jj] = a0 + a1;
        }
      }
      const int iEnd = jb + 16 < L ? jb + 16 : L;
      for (int i = kg; i < iEnd; i += KG) {
        const float vi = V[i * DVS + e];
#pragma unroll
        for (int jj = 0; jj < 16; ++jj) {
          const int j = jb + jj;
          if (j < L && i <= j)
            acc[jj] += A[j * AS + i] * vi;
        }
      }
      if constexpr (KG == 1) {
        if (e < width) {
#pragma unroll
          for (int jj = 0; jj < 16; ++jj)
            if (jb + jj < L)
              outBase[(jb + jj) * p.ldo] = fromF<T>(acc[jj]);
        }
      } else {
#pragma unroll
        for (int jj = 0; jj < 16; ++jj)
          if (jb + jj < L)
            OP[(kg * C + jb + jj) * DVS + e] = acc[jj];
      }
    }
    if constexpr (KG > 1) {
      __syncthreads();
      if (e < width)
        for (int j = kg; j < L; j += KG) {
          float o = 0.0f;
#pragma unroll
          for (int g = 0; g < KG; ++g)
            o += OP[(g * C + j) * DVS + e];
          outBase[j * p.ldo] = fromF<T>(o);
        }
    }

    // 5. S = diag(e^{b_last}) S + Σ_i (k_i ⊙ e^{b_last - b_i})ᵀ v_i.
    {
      const float4 *d4 = reinterpret_cast<const float4 *>(DL + kg * kRows);
#pragma unroll
      for (int r4 = 0; r4 < kRows / 4; ++r4) {
        const float4 d = d4[r4];
        s[4 * r4 + 0] *= d.x;
        s[4 * r4 + 1] *= d.y;
        s[4 * r4 + 2] *= d.z;
        s[4 * r4 + 3] *= d.w;
      }
      for (int i = 0; i < L; ++i) {
        const float vi = V[i * DVS + e];
        const float4 *k4 = reinterpret_cast<const float4 *>(KD + i * DKP + kg * kRows);
#pragma unroll
        for (int r4 = 0; r4 < kRows / 4; ++r4) {
          const float4 kd = k4[r4];
          s[4 * r4 + 0] += kd.x * vi;
          s[4 * r4 + 1] += kd.y * vi;
          s[4 * r4 + 2] += kd.z * vi;
          s[4 * r4 + 3] += kd.w * vi;
        }
      }
    }
  }
}

template <typename T, int KG, int DVS>
void launchGla(const GlaParams<T> &p, int64_t blocks, size_t smem, Stream stream) {
  auto kernel = glaKernel<T, KG, DVS>;
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)),
          "gla: shared memory limit");
  kernel<<<static_cast<unsigned>(blocks), KG * DVS, smem, native(stream)>>>(p);
  checkLaunch("gla");
}

template <typename T, int DVS>
void launchGlaKG(int kg, const GlaParams<T> &p, int64_t blocks, size_t smem, Stream stream) {
  switch (kg) {
  case 1: launchGla<T, 1, DVS>(p, blocks, smem, stream); return;
  case 2: launchGla<T, 2, DVS>(p, blocks, smem, stream); return;
  case 4: launchGla<T, 4, DVS>(p, blocks, smem, stream); return;
  default: launchGla<T, 8, DVS>(p, blocks, smem, stream); return;
  }
}

} // namespace

size_t glaWorkspaceBytes(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {
  return 0; // the state lives in registers
}

void gla(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, DConstMat gateLogits,
         int64_t batch, int64_t t, int64_t heads, float scale, float normalizer, int64_t chunk,
         DMat out, Workspace) {
  const char *kernel = "gla";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "t", t);
  checkDPositive(kernel, "heads", heads);
  checkDPositive(kernel, "chunk", chunk);
  if (!(normalizer > 0.0f))
    fail(kernel, ": gate normalizer must be positive, got ", normalizer);
  if (q.cols % heads != 0 || v.cols % heads != 0)
    fail(kernel, ": ", heads, " heads do not divide the q width ", q.cols, " or the v width ",
         v.cols);
  const int64_t dk = q.cols / heads, dv = v.cols / heads;
  checkDView(kernel, "q", q, batch * t, heads * dk);
  checkDView(kernel, "k", k, batch * t, heads * dk);
  checkDView(kernel, "gateLogits", gateLogits, batch * t, heads * dk);
  checkDView(kernel, "v", v, batch * t, heads * dv);
  checkDView(kernel, "out", out, batch * t, heads * dv);
  checkDPositive(kernel, "key width per head", dk);
  checkDPositive(kernel, "value width per head", dv);
  if (dk > 8 * kRows)
    fail(kernel, ": key width per head ", dk, " exceeds the supported 128");
  if (heads > INT32_MAX || dv > INT32_MAX)
    fail(kernel, ": ", heads, " heads of width ", dv, " exceed the int32 range");

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    const size_t es = sizeof(T);
    if (overlapsD(out, q, es) || overlapsD(out, k, es) || overlapsD(out, v, es) ||
        overlapsD(out, gateLogits, es))
      fail(kernel, ": out overlaps an input");
    // Key-row groups, rounded up to a power of two (1, 2, 4, 8).
    int kg = 1;
    while (kg * kRows < dk)
      kg *= 2;
    // Narrow value slices double the blocks where (sample, head) pairs are
    // too few to fill the multiprocessors, at the price of recomputing the
    // scores per slice.
    const int64_t sms = multiprocessorCount();
    const bool narrow = dv <= 32 || batch * heads * ((dv + 63) / 64) < 2 * sms;
    const int dvs = narrow ? 32 : 64;
    const int64_t slices = (dv + dvs - 1) / dvs;
    const int64_t blocks = batch * heads * slices;
    if (blocks > INT32_MAX)
      fail(kernel, ": ", blocks, " (sample, head, slice) blocks exceed one launch");

    int device = 0, smemLimit = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&smemLimit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
          "shared memory limit");
    int64_t c = chunk < kMaxChunk ? chunk : kMaxChunk;
    c = c < t ? c : t;
    size_t smem = glaLayout(static_cast<int>(c), static_cast<int>(dk), kg, dvs, es).total;
    while (smem > static_cast<size_t>(smemLimit) && c > 1) {
      c = (c + 1) / 2;
      smem = glaLayout(static_cast<int>(c), static_cast<int>(dk), kg, dvs, es).total;
    }
    if (smem > static_cast<size_t>(smemLimit))
      fail(kernel, ": tiles of ", smem, " bytes exceed the shared memory of a block");

    GlaParams<T> p;
    p.q = static_cast<const T *>(q.data);
    p.k = static_cast<const T *>(k.data);
    p.v = static_cast<const T *>(v.data);
    p.g = static_cast<const T *>(gateLogits.data);
    p.ldq = q.ld;
    p.ldk = k.ld;
    p.ldv = v.ld;
    p.ldg = gateLogits.ld;
    p.out = static_cast<T *>(out.data);
    p.ldo = out.ld;
    p.t = t;
    p.heads = static_cast<int>(heads);
    p.dk = static_cast<int>(dk);
    p.dv = static_cast<int>(dv);
    p.chunk = static_cast<int>(c);
    p.slices = static_cast<int>(slices);
    p.scale = scale;
    p.invNorm = 1.0f / normalizer;
    // Row pieces are whole 16-byte units at 16-byte aligned addresses.
    p.async = vectorizable(p.q, q.ld, dk, es) && vectorizable(p.k, k.ld, dk, es) &&
              vectorizable(p.g, gateLogits.ld, dk, es) && vectorizable(p.v, v.ld, dv, es);
    if (dvs == 32)
      launchGlaKG<T, 32>(kg, p, blocks, smem, stream);
    else
      launchGlaKG<T, 64>(kg, p, blocks, smem, stream);
  });
}

} // namespace diffrt::cuda
