//===- GradGla.cu - backward of chunked gated linear attention ------------===//
//
// The gradient of gla() (spec 5.2) on the GPU, the same function as
// cpu::glaBackward: the exact gradient of the recurrence
//   S_t = diag(α_t) S_{t-1} + k_tᵀ v_t,  o_t = scale·q_t S_t,
// α_t = exp(logsigmoid(a_t)/normalizer), here in chunk-parallel form. Per
// (sample, head) and chunk of L tokens, with b the cumulative log-decay
// inside the chunk (b_{-1} = 0), S0 the state before the chunk and R the
// gradient reaching the chunk's last state from later chunks
// (R = diag(α_next) dS_next):
//   P[j,i] = dO_j · v_i,  A[j,i] = scale Σ_c q_jc k_ic e^{b_jc - b_ic}  (i <= j)
//   dq_j = scale e^{b_j} ⊙ (S0 dO_jᵀ) + scale Σ_{i<=j} P[j,i] k_i ⊙ e^{b_j - b_i}
//   dk_j = e^{b_L - b_j} ⊙ (R v_jᵀ)   + scale Σ_{i>=j} P[i,j] q_i ⊙ e^{b_i - b_j}
//   dv_j = Σ_{i>=j} A[i,j] dO_i + (k_j ⊙ e^{b_L - b_j}) R
//   R_prev = diag(e^{b_L}) R + scale Σ_j (q_j ⊙ e^{b_j})ᵀ dO_j
// where b_L is the chunk's last cumulative decay. Only decays of the form
// e^{b_later - b_earlier} (values in (0, 1]) are exponentiated, so nothing
// overflows however strong the decay.
//
// The gate gradient. d(log α_u) = α_u Σ_e dS_u ⊙ S_{u-1}; expanding both
// factors in the chunk form gives four sums whose terms carry no
// cancellation:
//   dlog_u = e^{b_L} ⊙ rowsum(R ⊙ S0)                   (state × carried)
//          + Σ_{i<u} k_i ⊙ [R part of dk_i]             (prefix sum)
//          + Σ_{j>=u} q_j ⊙ [S0 part of dq_j]           (suffix sum)
//          + scale Σ_{j>=u} Σ_{i<u} P[j,i] q_j ⊙ k_i ⊙ e^{b_j - b_i}
// and da_u = dlog_u · sigmoid(-a_u) / normalizer. The shorter identity
// dlog_u = Σ_{t>=u} (q_t ⊙ dq_t - k_t ⊙ dk_t) is the same value but as a
// difference of large sums (zero for the first token of the sequence), so
// it would be mostly rounding error exactly where the reference is small;
// the last term costs O(L³·dk) per chunk, which is why chunks are capped at
// 32 tokens (the gradient does not depend on the chunk length, only the
// rounding and the speed do).
//
// Design. One block of 256 threads per (sample, head, slice of 64 value
// columns). Pass 1 walks the chunks forward and writes the state before
// each chunk (dk x 64 f32 per chunk) to the workspace; it is skipped when
// neither dq nor the gate gradient is wanted (they are the only users of
// S). Pass 2 walks the chunks backwards carrying R in shared memory and
// produces every gradient of the chunk from f32 tiles of q, k, b, v and dO
// in shared memory (thread per output element, loops over the reduction
// dimension, padded row strides so the column-wise reads of the score loops
// are free of bank conflicts). The state and R are owned element-wise by
// fixed threads, so they are updated in place with no extra barrier. dv
// sums over key channels only and is complete in its block; dq, dk and the
// gate gradient sum over value columns, so with more than one slice
// (dv > 64) each slice writes f32 partial sums to the workspace and a
// second kernel adds the slices in a fixed order (deterministic, no float
// atomics) and rounds to the element type. DiG's heads (dk 32, dv 64) are
// one slice and write their gradients directly.
//
// Cost per chunk of L tokens: O(L·dk·dv) for the state products, O(L²·(dk
// + dv)) for the scores and O(L³·dk/6) for the gate gradient's cross term,
// all f32 FMA on CUDA cores (tensor cores would round to tf32 or 16 bits).
// With DiG's shapes (dk 32, dv 64, chunk 16) a block uses 44 KB of shared
// memory, so 5 blocks fit on a multiprocessor and DiG-XL/2 at batch 32 (576
// blocks) runs in one wave on an H100. Expected time is a few times the
// forward's (about 3x the arithmetic, plus the state round trip through
// the workspace: 8 KB per chunk and block, written and read once).
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include "diffrt/CudaGradKernels.h"

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kDvs = 64;      // value columns per block
constexpr int kMaxChunk = 32; // see the gate gradient's O(L³) term above
// Shared memory a block may use: the largest tiles then fit on A100 and
// Hopper alike; larger keys get shorter chunks.
constexpr size_t kSmemBudget = 160 * 1024;
constexpr size_t kAlign = 256;

size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

/// Offsets (in floats) of the shared-memory tiles; the same on host (sizing)
/// and device.
struct BwdLayout {
  int dks, vs, as; // row strides: key tiles, value tiles (and S0, R), scores
  size_t q, k, b, qe, kd, dqs, dkr, rect, v, dO, s, r, a, p, dl, rs0, total;
};

__host__ __device__ inline size_t carve(size_t &offset, size_t floats) {
  const size_t at = offset;
  offset += (floats + 3) / 4 * 4; // 16-byte aligned tiles
  return at;
}

__host__ __device__ inline BwdLayout bwdLayout(int c, int dk) {
  BwdLayout l;
  l.dks = dk + 1;
  l.vs = kDvs + 1;
  l.as = c + 1;
  size_t off = 0;
  const size_t key = static_cast<size_t>(c) * l.dks;
  l.q = carve(off, key);
  l.k = carve(off, key);
  l.b = carve(off, key);
  l.qe = carve(off, key);
  l.kd = carve(off, key);
  l.dqs = carve(off, key);
  l.dkr = carve(off, key);
  l.rect = carve(off, key);
  l.v = carve(off, static_cast<size_t>(c) * l.vs);
  l.dO = carve(off, static_cast<size_t>(c) * l.vs);
  l.s = carve(off, static_cast<size_t>(dk) * l.vs);
  l.r = carve(off, static_cast<size_t>(dk) * l.vs);
  l.a = carve(off, static_cast<size_t>(c) * l.as);
  l.p = carve(off, static_cast<size_t>(c) * l.as);
  l.dl = carve(off, dk);
  l.rs0 = carve(off, dk);
  l.total = off;
  return l;
}

/// The chunk length, slices and workspace pieces of one problem.
struct BwdPlan {
  int64_t c = 0, chunks = 0, slices = 0;
  size_t smem = 0, stateBytes = 0, partialBytes = 0;
};

BwdPlan planBackward(int64_t batch, int64_t t, int64_t heads, int64_t dk, int64_t dv,
                     int64_t chunk) {
  BwdPlan p;
  int64_t c = chunk < kMaxChunk ? chunk : kMaxChunk;
  c = c < t ? c : t;
  size_t smem = bwdLayout(static_cast<int>(c), static_cast<int>(dk)).total * sizeof(float);
  while (smem > kSmemBudget && c > 1) {
    c = (c + 1) / 2;
    smem = bwdLayout(static_cast<int>(c), static_cast<int>(dk)).total * sizeof(float);
  }
  p.c = c;
  p.smem = smem;
  p.chunks = (t + c - 1) / c;
  p.slices = (dv + kDvs - 1) / kDvs;
  p.stateBytes =
      alignUp(static_cast<size_t>(batch * heads * p.slices * p.chunks * dk * kDvs) * sizeof(float));
  p.partialBytes =
      p.slices > 1 ? alignUp(static_cast<size_t>(3 * p.slices * batch * t * heads * dk) * sizeof(float))
                   : 0;
  return p;
}

template <typename T> struct BwdParams {
  const T *q, *k, *v, *g, *dO;
  int64_t ldq, ldk, ldv, ldg, ldo;
  T *dq, *dk, *dv, *dg; // null: not wanted
  int64_t lddq, lddk, lddv, lddg;
  float *states;  // [sample·head][slice][chunk][dk][kDvs]; null when S is not needed
  float *partial; // [kind: dq, dk, dlog][slice][row][heads·dk]; null with one slice
  int64_t t, rows;
  int heads, dkw, dvw, chunk, chunks, slices;
  float scale, invNorm;
};

__device__ __forceinline__ float logSigmoid(float x) {
  return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

/// Rows [row0, row0 + len) of columns [col, col + cols) of src as f32 into
/// dst (row stride `stride`), zero in columns [cols, padCols).
template <typename T>
__device__ __forceinline__ void loadTile(const T *src, int64_t ld, int64_t row0, int64_t col, int len,
                                         int cols, int padCols, float *dst, int stride) {
  for (int i = threadIdx.x; i < len * padCols; i += kThreads) {
    const int j = i / padCols, c = i - j * padCols;
    dst[j * stride + c] = c < cols ? toF<T>(src[(row0 + j) * ld + col + c]) : 0.0f;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) glaBackwardKernel(BwdParams<T> p) {
  extern __shared__ float4 glaBwdSmem[];
  float *sm = reinterpret_cast<float *>(glaBwdSmem);

  const int tid = threadIdx.x;
  const int64_t cta = blockIdx.x;
  const int sl = static_cast<int>(cta % p.slices);
  const int64_t bh = cta / p.slices;
  const int h = static_cast<int>(bh % p.heads);
  const int64_t b = bh / p.heads;
  const int v0 = sl * kDvs;
  const int width = p.dvw - v0 < kDvs ? p.dvw - v0 : kDvs;
  const int dk = p.dkw, C = p.chunk;
  const int64_t kcol = static_cast<int64_t>(h) * dk, vcol = static_cast<int64_t>(h) * p.dvw + v0;
  const int64_t qw = static_cast<int64_t>(p.heads) * dk;

  const BwdLayout l = bwdLayout(C, dk);
  const int DKS = l.dks, VS = l.vs, AS = l.as;
  float *Q = sm + l.q, *K = sm + l.k, *B = sm + l.b, *QE = sm + l.qe, *KD = sm + l.kd;
  float *DQS = sm + l.dqs, *DKR = sm + l.dkr, *RECT = sm + l.rect;
  float *V = sm + l.v, *DO = sm + l.dO, *S = sm + l.s, *R = sm + l.r;
  float *A = sm + l.a, *P = sm + l.p, *DL = sm + l.dl, *RS0 = sm + l.rs0;

  const bool wantQ = p.dq != nullptr, wantK = p.dk != nullptr, wantV = p.dv != nullptr;
  const bool wantG = p.dg != nullptr;
  const bool needS = wantQ || wantG;
  const bool needR = wantK || wantV || wantG;
  float *states = needS ? p.states + (bh * p.slices + sl) * p.chunks * dk * kDvs : nullptr;
  const int stateLen = dk * kDvs;

  // Cumulative log-decays of the chunk's rows, in sequence order like the
  // reference, and e^{b_L}.
  auto cumulate = [&](int L) {
    if (tid < dk) {
      float acc = 0.0f;
      for (int j = 0; j < L; ++j) {
        acc += B[j * DKS + tid];
        B[j * DKS + tid] = acc;
      }
      DL[tid] = __expf(acc);
    }
  };
  auto loadGates = [&](int64_t row0, int L) {
    for (int i = tid; i < L * dk; i += kThreads) {
      const int j = i / dk, c = i - j * dk;
      B[j * DKS + c] = logSigmoid(toF<T>(p.g[(row0 + j) * p.ldg + kcol + c])) * p.invNorm;
    }
  };
  // One gradient value of key channel c at `row`: to the output (one slice)
  // or to this slice's partial sums.
  auto emit = [&](int kind, T *out, int64_t ld, int64_t row, int c, float value) {
    if (p.partial == nullptr)
      out[row * ld + kcol + c] = fromF<T>(value);
    else
      p.partial[((static_cast<int64_t>(kind) * p.slices + sl) * p.rows + row) * qw + kcol + c] = value;
  };

  // Pass 1: the state before every chunk, to the workspace.
  if (needS) {
    for (int i = tid; i < dk * VS; i += kThreads)
      S[i] = 0.0f;
    for (int ci = 0; ci < p.chunks; ++ci) {
      const int64_t s0 = static_cast<int64_t>(ci) * C, row0 = b * p.t + s0;
      const int L = static_cast<int>(p.t - s0 < C ? p.t - s0 : C);
      __syncthreads();
      loadTile<T>(p.k, p.ldk, row0, kcol, L, dk, dk, K, DKS);
      loadTile<T>(p.v, p.ldv, row0, vcol, L, width, kDvs, V, VS);
      loadGates(row0, L);
      __syncthreads();
      cumulate(L);
      __syncthreads();
      for (int i = tid; i < L * dk; i += kThreads) {
        const int j = i / dk, c = i - j * dk;
        KD[j * DKS + c] = K[j * DKS + c] * __expf(B[(L - 1) * DKS + c] - B[j * DKS + c]);
      }
      __syncthreads();
      // Each thread owns the same state entries in every chunk, so the
      // update is in place. S_next = diag(e^{b_L}) S + Σ_i kdᵢᵀ v_i.
      float *dst = states + static_cast<int64_t>(ci) * stateLen;
      const bool last = ci + 1 == p.chunks;
      for (int i = tid; i < stateLen; i += kThreads) {
        const int c = i / kDvs, e = i - c * kDvs;
        const float s = S[c * VS + e];
        dst[i] = s;
        if (!last) {
          float acc = s * DL[c];
          for (int j = 0; j < L; ++j)
            acc += KD[j * DKS + c] * V[j * VS + e];
          S[c * VS + e] = acc;
        }
      }
    }
  }

  // Pass 2: chunks in reverse, carrying R.
  for (int i = tid; i < dk * VS; i += kThreads)
    R[i] = 0.0f;
  for (int ci = p.chunks - 1; ci >= 0; --ci) {
    const int64_t s0 = static_cast<int64_t>(ci) * C, row0 = b * p.t + s0;
    const int L = static_cast<int>(p.t - s0 < C ? p.t - s0 : C);
    __syncthreads(); // the previous chunk's readers are done with the tiles
    loadTile<T>(p.q, p.ldq, row0, kcol, L, dk, dk, Q, DKS);
    loadTile<T>(p.k, p.ldk, row0, kcol, L, dk, dk, K, DKS);
    loadTile<T>(p.v, p.ldv, row0, vcol, L, width, kDvs, V, VS);
    loadTile<T>(p.dO, p.ldo, row0, vcol, L, width, kDvs, DO, VS);
    loadGates(row0, L);
    if (needS) {
      // Written by this block in pass 1; visible after the barriers.
      const float *src = states + static_cast<int64_t>(ci) * stateLen;
      for (int i = tid; i < stateLen; i += kThreads) {
        const int c = i / kDvs, e = i - c * kDvs;
        S[c * VS + e] = src[i];
      }
    }
    __syncthreads();
    cumulate(L);
    __syncthreads();

    // Decayed queries and keys, the score matrices and rowsum(R ⊙ S0).
    for (int i = tid; i < L * dk; i += kThreads) {
      const int j = i / dk, c = i - j * dk;
      const float bj = B[j * DKS + c];
      QE[j * DKS + c] = Q[j * DKS + c] * __expf(bj);
      KD[j * DKS + c] = K[j * DKS + c] * __expf(B[(L - 1) * DKS + c] - bj);
    }
    for (int pr = tid; pr < L * L; pr += kThreads) {
      const int j = pr / L, i = pr - j * L;
      if (i > j)
        continue;
      const float *dj = DO + j * VS, *vi = V + i * VS;
      float acc = 0.0f;
      for (int e = 0; e < width; ++e)
        acc += dj[e] * vi[e];
      P[j * AS + i] = acc;
      if (wantV) {
        const float *qj = Q + j * DKS, *ki = K + i * DKS, *bj = B + j * DKS, *bi = B + i * DKS;
        float sc = 0.0f;
        for (int c = 0; c < dk; ++c)
          sc += qj[c] * ki[c] * __expf(bj[c] - bi[c]);
        A[j * AS + i] = p.scale * sc;
      }
    }
    if (wantG && tid < dk) {
      const float *rr = R + tid * VS, *ss = S + tid * VS;
      float acc = 0.0f;
      for (int e = 0; e < width; ++e)
        acc += rr[e] * ss[e];
      RS0[tid] = DL[tid] * acc;
    }
    __syncthreads();

    // dq, dk and the gate gradient's per-row pieces: thread per (row, channel).
    for (int idx = tid; idx < L * dk; idx += kThreads) {
      const int j = idx / dk, c = idx - j * dk;
      const float bj = B[j * DKS + c];
      const int64_t row = row0 + j;
      float dqs = 0.0f, dkr = 0.0f;
      if (needS) {
        const float *sc = S + c * VS, *dj = DO + j * VS;
        float acc = 0.0f;
        for (int e = 0; e < width; ++e)
          acc += sc[e] * dj[e];
        dqs = p.scale * __expf(bj) * acc;
      }
      if (wantQ) {
        float acc = 0.0f;
        for (int i = 0; i <= j; ++i)
          acc += P[j * AS + i] * K[i * DKS + c] * __expf(bj - B[i * DKS + c]);
        emit(0, p.dq, p.lddq, row, c, dqs + p.scale * acc);
      }
      if (wantK || wantG) {
        const float *rc = R + c * VS, *vj = V + j * VS;
        float acc = 0.0f;
        for (int e = 0; e < width; ++e)
          acc += rc[e] * vj[e];
        dkr = __expf(B[(L - 1) * DKS + c] - bj) * acc;
      }
      if (wantK) {
        float acc = 0.0f;
        for (int i = j; i < L; ++i)
          acc += P[i * AS + j] * Q[i * DKS + c] * __expf(B[i * DKS + c] - bj);
        emit(1, p.dk, p.lddk, row, c, dkr + p.scale * acc);
      }
      if (wantG) {
        // Σ_{i>=j} q_i Σ_{m<j} P[i,m] k_m e^{b_i - b_m}, every exponent <= 0.
        float acc = 0.0f;
        for (int i = j; i < L; ++i) {
          const float bi = B[i * DKS + c];
          float inner = 0.0f;
          for (int m = 0; m < j; ++m)
            inner += P[i * AS + m] * K[m * DKS + c] * __expf(bi - B[m * DKS + c]);
          acc += Q[i * DKS + c] * inner;
        }
        RECT[j * DKS + c] = p.scale * acc;
        DQS[j * DKS + c] = dqs;
        DKR[j * DKS + c] = dkr;
      }
    }
    // dv: thread per (row, value column); complete in this block.
    if (wantV) {
      for (int idx = tid; idx < L * kDvs; idx += kThreads) {
        const int j = idx / kDvs, e = idx - j * kDvs;
        if (e >= width)
          continue;
        float acc = 0.0f;
        for (int i = j; i < L; ++i)
          acc += A[i * AS + j] * DO[i * VS + e];
        const float *kdj = KD + j * DKS;
        for (int c = 0; c < dk; ++c)
          acc += kdj[c] * R[c * VS + e];
        p.dv[(row0 + j) * p.lddv + vcol + e] = fromF<T>(acc);
      }
    }
    __syncthreads();

    // Gate gradient: prefix and suffix sums along the chunk, one thread per
    // key channel (it alone touches that column of DKR).
    if (wantG && tid < dk) {
      const int c = tid;
      float pre = 0.0f;
      for (int u = 0; u < L; ++u) {
        const float term = K[u * DKS + c] * DKR[u * DKS + c];
        DKR[u * DKS + c] = pre; // Σ_{i<u}
        pre += term;
      }
      float suf = 0.0f;
      const float base = RS0[c];
      for (int u = L - 1; u >= 0; --u) {
        suf += Q[u * DKS + c] * DQS[u * DKS + c];
        const float dlog = base + DKR[u * DKS + c] + suf + RECT[u * DKS + c];
        const int64_t row = row0 + u;
        if (p.partial == nullptr) {
          const float a = toF<T>(p.g[row * p.ldg + kcol + c]);
          // d logsigmoid(a)/da = sigmoid(-a).
          p.dg[row * p.lddg + kcol + c] = fromF<T>(dlog * (1.0f / (1.0f + expf(a))) * p.invNorm);
        } else {
          emit(2, p.dg, p.lddg, row, c, dlog);
        }
      }
    }
    // R_prev = diag(e^{b_L}) R + scale Σ_j (q_j ⊙ e^{b_j})ᵀ dO_j, in place by
    // the entries' owners (no thread reads R again before the next barrier).
    if (needR && ci > 0) {
      for (int i = tid; i < stateLen; i += kThreads) {
        const int c = i / kDvs, e = i - c * kDvs;
        float acc = 0.0f;
        for (int j = 0; j < L; ++j)
          acc += QE[j * DKS + c] * DO[j * VS + e];
        R[c * VS + e] = DL[c] * R[c * VS + e] + p.scale * acc;
      }
    }
  }
}

/// Adds the slices' partial sums in slice order and rounds: dq, dk, and the
/// gate gradient through logsigmoid and the normalizer.
template <typename T>
__global__ void __launch_bounds__(256) glaBackwardFinish(BwdParams<T> p) {
  const int64_t qw = static_cast<int64_t>(p.heads) * p.dkw, n = p.rows * qw;
  const int64_t plane = p.rows * qw;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / qw, col = i - row * qw;
    T *outs[3] = {p.dq, p.dk, p.dg};
    const int64_t lds[3] = {p.lddq, p.lddk, p.lddg};
#pragma unroll
    for (int kind = 0; kind < 3; ++kind) {
      if (outs[kind] == nullptr)
        continue;
      const float *src = p.partial + static_cast<int64_t>(kind) * p.slices * plane + i;
      float acc = 0.0f;
      for (int s = 0; s < p.slices; ++s)
        acc += src[s * plane];
      if (kind == 2) {
        const float a = toF<T>(p.g[row * p.ldg + col]);
        acc *= (1.0f / (1.0f + expf(a))) * p.invNorm;
      }
      outs[kind][row * lds[kind] + col] = fromF<T>(acc);
    }
  }
}

} // namespace

size_t glaBackwardWorkspaceBytes(int64_t batch, int64_t t, int64_t heads, int64_t dk, int64_t dv,
                                 int64_t chunk) {
  if (batch <= 0 || t <= 0 || heads <= 0 || dk <= 0 || dv <= 0 || chunk <= 0)
    return 0;
  const BwdPlan plan = planBackward(batch, t, heads, dk, dv, chunk);
  return plan.stateBytes + plan.partialBytes;
}

void glaBackward(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, DConstMat gateLogits,
                 int64_t batch, int64_t t, int64_t heads, float scale, float normalizer, int64_t chunk,
                 DConstMat dOut, DMat dQ, DMat dK, DMat dV, DMat dGateLogits, Workspace ws) {
  const char *kernel = "glaBackward";
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
  checkDPositive(kernel, "key width per head", dk);
  checkDPositive(kernel, "value width per head", dv);
  checkDView(kernel, "q", q, batch * t, heads * dk);
  checkDView(kernel, "k", k, batch * t, heads * dk);
  checkDView(kernel, "gateLogits", gateLogits, batch * t, heads * dk);
  checkDView(kernel, "v", v, batch * t, heads * dv);
  checkDView(kernel, "dOut", dOut, batch * t, heads * dv);
  const bool wantQ = dQ.data != nullptr, wantK = dK.data != nullptr, wantV = dV.data != nullptr;
  const bool wantG = dGateLogits.data != nullptr;
  if (wantQ)
    checkDView(kernel, "dQ", dQ, batch * t, heads * dk);
  if (wantK)
    checkDView(kernel, "dK", dK, batch * t, heads * dk);
  if (wantV)
    checkDView(kernel, "dV", dV, batch * t, heads * dv);
  if (wantG)
    checkDView(kernel, "dGateLogits", dGateLogits, batch * t, heads * dk);
  if (heads > INT32_MAX || dk > INT32_MAX / kDvs || dv > INT32_MAX || chunk > INT32_MAX)
    fail(kernel, ": ", heads, " heads of key width ", dk, " and value width ", dv,
         " exceed the int32 range");

  const BwdPlan plan = planBackward(batch, t, heads, dk, dv, chunk);
  int device = 0, smemLimit = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&smemLimit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "shared memory limit");
  const size_t smemCap = kSmemBudget < static_cast<size_t>(smemLimit) ? kSmemBudget
                                                                       : static_cast<size_t>(smemLimit);
  if (plan.smem > smemCap)
    fail(kernel, ": key width per head ", dk, " needs ", plan.smem,
         " bytes of shared memory per block even with one-token chunks, more than the ", smemCap,
         " available");
  const int64_t blocks = batch * heads * plan.slices;
  if (blocks > INT32_MAX)
    fail(kernel, ": ", blocks, " (sample, head, slice) blocks exceed one launch");

  const bool needS = wantQ || wantG;
  const bool partial = plan.slices > 1 && (wantQ || wantK || wantG);
  const size_t needed = (needS ? plan.stateBytes : 0) + (partial ? plan.partialBytes : 0);
  if (needed > 0 && (ws.data == nullptr || ws.bytes < needed))
    fail(kernel, ": workspace of ", ws.bytes, " bytes is too small: needs ", needed, " bytes");
  if (needed > 0 && !aligned16(ws.data))
    fail(kernel, ": workspace is not 16-byte aligned");
  if (!wantQ && !wantK && !wantV && !wantG)
    return;

  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    const size_t es = sizeof(T);
    for (DConstMat g : {DConstMat(dQ), DConstMat(dK), DConstMat(dV), DConstMat(dGateLogits)})
      if (overlapsD(g, q, es) || overlapsD(g, k, es) || overlapsD(g, v, es) ||
          overlapsD(g, gateLogits, es) || overlapsD(g, dOut, es))
        fail(kernel, ": a gradient overlaps an input or dOut");

    BwdParams<T> p;
    p.q = static_cast<const T *>(q.data);
    p.k = static_cast<const T *>(k.data);
    p.v = static_cast<const T *>(v.data);
    p.g = static_cast<const T *>(gateLogits.data);
    p.dO = static_cast<const T *>(dOut.data);
    p.ldq = q.ld;
    p.ldk = k.ld;
    p.ldv = v.ld;
    p.ldg = gateLogits.ld;
    p.ldo = dOut.ld;
    p.dq = static_cast<T *>(dQ.data);
    p.dk = static_cast<T *>(dK.data);
    p.dv = static_cast<T *>(dV.data);
    p.dg = static_cast<T *>(dGateLogits.data);
    p.lddq = dQ.ld;
    p.lddk = dK.ld;
    p.lddv = dV.ld;
    p.lddg = dGateLogits.ld;
    char *base = static_cast<char *>(ws.data);
    p.states = needS ? reinterpret_cast<float *>(base) : nullptr;
    p.partial = partial ? reinterpret_cast<float *>(base + (needS ? plan.stateBytes : 0)) : nullptr;
    p.t = t;
    p.rows = batch * t;
    p.heads = static_cast<int>(heads);
    p.dkw = static_cast<int>(dk);
    p.dvw = static_cast<int>(dv);
    p.chunk = static_cast<int>(plan.c);
    p.chunks = static_cast<int>(plan.chunks);
    p.slices = static_cast<int>(plan.slices);
    p.scale = scale;
    p.invNorm = 1.0f / normalizer;

    auto fn = glaBackwardKernel<T>;
    if (plan.smem > 48 * 1024)
      check(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(plan.smem)),
            "glaBackward: shared memory limit");
    fn<<<static_cast<unsigned>(blocks), kThreads, plan.smem, native(stream)>>>(p);
    checkLaunch("glaBackward");
    if (partial) {
      glaBackwardFinish<T><<<gridStrideBlocks(p.rows * heads * dk, 256), 256, 0, native(stream)>>>(p);
      checkLaunch("glaBackward (slice sums)");
    }
  });
}

} // namespace diffrt::cuda
