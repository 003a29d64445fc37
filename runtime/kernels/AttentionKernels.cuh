//===- AttentionKernels.cuh - flash-attention forward kernels ---*- CUDA -*-===//
//
// The device side of cuda::attention. `flashForward` is a FlashAttention-2
// style forward pass on the mma.sync tensor-core path (f16/bf16 operands,
// f32 accumulators): persistent CTAs walk the (query tile, head, sample)
// work items, Q kept in registers, K and V streamed through double-buffered
// shared memory with cp.async (the next item's first tiles load during the
// current item's last one), online softmax with f32 statistics. It is
// templated on the head dimension D so that DiT-XL's 72 and DiT-MoE-G's 88
// run natively: the QKᵀ reduction is D/16 m16n8k16 steps plus one m16n8k8
// step when D is an odd multiple of 8 (no padding at all), and the PV
// product has D/8 n8 tiles. `attentionSimt` is the exact f32 fallback (f32
// plans, head dims above 128).
//
// Measured on an H100 (fp16, packed qkv, persistent grid): 184-190 TFLOP/s
// at DiT-XL's (B, H, N, D) = (64, 16, 256, 72), 246-250 at N = 1024 and
// 255-270 at N = 4096. Nsight Compute puts the remaining gap in the mma.sync
// pipe pacing and in fixed-latency dependencies with 2 warps per scheduler
// (the register file holds 2 CTAs of 4 warps); wgmma is the next step.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// lane = 4·g + t:
//   A 16x16 row-major: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..),
//                      a3 (g+8, 2t+8..)           [m16n8k8: a0, a1 only]
//   B 16x8 "col":      b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)   [k8: b0]
//   C 16x8 f32:        c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1)
// ldmatrix.x4 gives lane L the (row L/4, cols 2(L%4)..) pair of each of the
// four 8x8 matrices whose row addresses lanes 8i..8i+7 supply; .trans gives
// the transposed pair, which is exactly a B fragment of a row-major [k][n]
// tile such as V.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_ATTENTIONKERNELS_CUH
#define DIFFRT_KERNELS_ATTENTIONKERNELS_CUH

#include "Common.cuh"

#include <cstdint>

namespace diffrt::cuda::attn {

/// Kernel arguments (passed as a __grid_constant__ so that they stay in the
/// constant bank instead of registers).
struct Params {
  const void *q, *k, *v;
  void *o;
  /// Null, or per (sample·head, query) the natural-log log-sum-exp of the
  /// scaled scores.
  float *lse;
  int64_t ldq, ldk, ldv, ldo;
  int32_t lq, lk, heads, dk, dv;
  /// Query tiles (flash) or query-row blocks (SIMT) per (sample, head),
  /// and rowTiles · heads · batch work items (flash).
  int32_t rowTiles, items;
  /// |scale|·log2(e), at least FLT_MIN so that masked -inf scores stay -inf.
  float scaleLog2;
  /// The softmax scale as given (SIMT path).
  float scale;
  /// XORed into every packed pair of Q: 0x80008000 negates Q so that a
  /// negative scale becomes softmax(|scale| · (-q) kᵀ), exactly.
  uint32_t qSign;
  /// q, k, v and out rows start on 16-byte boundaries and dk, dv are
  /// multiples of 8: tiles move as 16-byte cp.async chunks.
  int32_t aligned;
};

//===----------------------------------------------------------------------===//
// PTX wrappers
//===----------------------------------------------------------------------===//

__device__ __forceinline__ uint32_t smemAddr(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsmX4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsmX2(uint32_t (&r)[2], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}
__device__ __forceinline__ void ldsmX4Trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsmX2Trans(uint32_t (&r)[2], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}

/// d += a (16x16) · b (16x8), f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4],
                                                 uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                        uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// d += a (16x8) · b (8x8): the tail step of a reduction over an odd
/// multiple of 8 (head dims 72 and 88).
template <typename T>
__device__ __forceinline__ void mma1688(float (&d)[4], const uint32_t (&a)[2], uint32_t b0);
template <>
__device__ __forceinline__ void mma1688<__half>(float (&d)[4], const uint32_t (&a)[2],
                                                uint32_t b0) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(b0));
}
template <>
__device__ __forceinline__ void mma1688<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[2],
                                                       uint32_t b0) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(b0));
}

/// Two floats rounded to T and packed, the lower column in the low half (the
/// element order of every mma fragment register).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}

/// 2^x on the SFU; exact 0 for -inf, which the masked scores rely on.
__device__ __forceinline__ float exp2Approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

//===----------------------------------------------------------------------===//
// Tile geometry
//===----------------------------------------------------------------------===//

/// A CTA of kWarps warps owns kBM = 16·MT·kWarps query rows (MT m16 tiles
/// per warp, sharing each K/V fragment MT times) and streams keys in tiles
/// of BN.
template <int D, int MT, int BN, int kWarps> struct TileConfig {
  static_assert(D % 8 == 0 && D >= 16 && D <= 128, "head dim tile must be 16..128, step 8");
  static_assert(BN % 32 == 0, "the k8 tail loads four key tiles per ldmatrix.x4");
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBM = 16 * MT * kWarps;
  static constexpr int kChunks = D / 8; // 16-byte chunks per row
  /// Shared-memory row pitch in elements: an odd number of 16-byte units, so
  /// the eight row addresses of an ldmatrix matrix (and the chunk writes of
  /// the loaders) fall in eight different 16-byte bank groups.
  static constexpr int kStride = (kChunks % 2 == 1) ? D : D + 8;
  static constexpr int kK16 = D / 16;
  static constexpr bool kK8Tail = (D % 16) != 0;
  static constexpr int kDTiles = D / 8;
  static constexpr int kSTiles = BN / 8;
  static constexpr int kQElems = kBM * kStride;
  static constexpr int kKVElems = BN * kStride;
  /// Two Q buffers (the next item's Q loads during the current item), then
  /// K and V with two stages each.
  static constexpr size_t smemBytes(size_t elem) {
    return static_cast<size_t>(2 * kQElems + 4 * kKVElems) * elem;
  }
};

/// Copies the valid part (validRows x validCols) of a ROWS x D tile at g
/// (leading dimension ld) into shared memory with row pitch STRIDE; the rest
/// of the tile (rows past the sequence, columns past a padded head dim) is
/// zero, so masked keys contribute 0·V = 0 and padded columns add nothing.
/// Each thread owns one 16-byte column chunk and walks rows with a stride of
/// THREADS / (D/8), so its addresses advance by constant increments (no
/// per-chunk division or 64-bit multiply in the key loop).
/// Aligned: 16-byte cp.async chunks (asynchronous, committed by the caller).
/// Otherwise: synchronous 2-byte loads, for rows that do not start on a
/// 16-byte boundary (odd offsets inside a packed qkv) or head dims that are
/// not multiples of 8.
template <typename T, int ROWS, int D, int STRIDE, int THREADS>
__device__ __forceinline__ void loadTile(T *smem, const T *g, int64_t ld, int validRows,
                                         int validCols, bool aligned) {
  constexpr int kChunks = D / 8;
  constexpr int kRowStep = THREADS / kChunks;
  constexpr int kPasses = (ROWS + kRowStep - 1) / kRowStep;
  static_assert(kRowStep >= 1, "a CTA must cover one row of chunks per pass");
  const int c = static_cast<int>(threadIdx.x) % kChunks;
  const int r0 = static_cast<int>(threadIdx.x) / kChunks;
  if (r0 >= kRowStep)
    return; // the remainder threads of THREADS / kChunks
  const T *src = g + static_cast<int64_t>(r0) * ld + c * 8;
  const int64_t srcStep = static_cast<int64_t>(kRowStep) * ld;
  T *dst = smem + r0 * STRIDE + c * 8;
  if (aligned) {
    const bool colOk = c * 8 < validCols;
    uint32_t dstAddr = smemAddr(dst);
#pragma unroll
    for (int k = 0; k < kPasses; ++k) {
      const int r = r0 + k * kRowStep;
      if (kPasses * kRowStep <= ROWS || r < ROWS) {
        const bool ok = colOk && r < validRows;
        cpAsync16(dstAddr, ok ? static_cast<const void *>(src) : static_cast<const void *>(g),
                  ok);
      }
      src += srcStep;
      dstAddr += kRowStep * STRIDE * sizeof(T);
    }
  } else {
#pragma unroll 1
    for (int k = 0; k < kPasses; ++k) {
      const int r = r0 + k * kRowStep;
      if (r < ROWS) {
        const unsigned short *raw = reinterpret_cast<const unsigned short *>(src);
        unsigned short e[8];
#pragma unroll
        for (int x = 0; x < 8; ++x)
          e[x] = (r < validRows && c * 8 + x < validCols) ? raw[x] : 0;
        uint4 v;
        v.x = e[0] | (uint32_t(e[1]) << 16);
        v.y = e[2] | (uint32_t(e[3]) << 16);
        v.z = e[4] | (uint32_t(e[5]) << 16);
        v.w = e[6] | (uint32_t(e[7]) << 16);
        *reinterpret_cast<uint4 *>(dst) = v;
      }
      src += srcStep;
      dst += kRowStep * STRIDE;
    }
  }
}

//===----------------------------------------------------------------------===//
// The tensor-core forward kernel
//===----------------------------------------------------------------------===//

/// S = Q Kᵀ for one key tile. K is [key][d] in shared memory, i.e.
/// the "col" B operand as stored: a non-transposed ldmatrix.x4 yields b0, b1
/// of two key tiles (matrices: keys +0..7 at d +0 and +8, then keys +8..15);
/// the MT m tiles share each fragment. An odd multiple of 8 ends
/// with one m16n8k8 step whose ldmatrix.x4 gives b0 of four key tiles.
template <typename T, typename C, int MT>
__device__ __forceinline__ void qkTile(float (&s)[MT][C::kSTiles][4],
                                       const uint32_t (&qf)[MT][C::kK16][4],
                                       const uint32_t (&qt)[MT][2], const T *sKs, int lane) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i)
        s[mt][nt][i] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < C::kK16; ++ks) {
#pragma unroll
    for (int np = 0; np < C::kSTiles / 2; ++np) {
      uint32_t bk[4];
      ldsmX4(bk, smemAddr(sKs + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * C::kStride +
                          ks * 16 + ((lane >> 3) & 1) * 8));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma16816<T>(s[mt][2 * np], qf[mt][ks], bk[0], bk[1]);
        mma16816<T>(s[mt][2 * np + 1], qf[mt][ks], bk[2], bk[3]);
      }
    }
  }
  if constexpr (C::kK8Tail) {
#pragma unroll
    for (int nq = 0; nq < C::kSTiles / 4; ++nq) {
      uint32_t bk[4];
      ldsmX4(bk, smemAddr(sKs + (nq * 32 + lane) * C::kStride + C::kK16 * 16));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          mma1688<T>(s[mt][4 * nq + i], qt[mt], bk[i]);
    }
  }
}

/// Scores of keys at or past `validKeys` (tile-relative) become -inf.
template <typename C, int MT>
__device__ __forceinline__ void maskTile(float (&s)[MT][C::kSTiles][4], int validKeys, int lane) {
  if (validKeys >= C::kSTiles * 8)
    return;
#pragma unroll
  for (int nt = 0; nt < C::kSTiles; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e)
      if (nt * 8 + 2 * (lane & 3) + e >= validKeys)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          s[mt][nt][e] = -INFINITY;
          s[mt][nt][2 + e] = -INFINITY;
        }
}

/// Online softmax of m tile mt in the exp2 domain: new running maximum,
/// O and the running sum rescaled, P = 2^(s·sc - max·sc) packed into the A
/// fragments of the PV product (the accumulator layout of two adjacent key
/// tiles is the A layout of one 16-key step). Each thread holds rows g and
/// g+8; a row's scores are spread over the 4 lanes of a quad, so the
/// maximum needs two shuffles, and the sum stays per-thread (reduced once at
/// the end: the rescale factor is the same for the whole quad). Reductions
/// are trees: a left-to-right chain of 16 maxima or 32 additions is a
/// dependency chain that two warps per scheduler cannot hide.
template <typename T, typename C, int MT>
__device__ __forceinline__ void softmaxTile(float (&s)[MT][C::kSTiles][4],
                                            uint32_t (&pf)[MT][C::kSTiles / 2][4],
                                            float (&o)[MT][C::kDTiles][4], float (&rowMax)[MT][2],
                                            float (&rowSum)[MT][2], float sc, int mt) {
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    float part[C::kSTiles];
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt)
      part[nt] = fmaxf(s[mt][nt][2 * hh], s[mt][nt][2 * hh + 1]);
#pragma unroll
    for (int w = C::kSTiles / 2; w >= 1; w /= 2)
#pragma unroll
      for (int nt = 0; nt < w; ++nt)
        part[nt] = fmaxf(part[nt], part[nt + w]);
    float mx = fmaxf(rowMax[mt][hh], part[0]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    // mx is finite: every tile holds at least one key < lk. On the first
    // tile rowMax is -inf and alpha = 2^-inf = 0 (O and the sum are 0).
    const float alpha = exp2Approx((rowMax[mt][hh] - mx) * sc);
    rowMax[mt][hh] = mx;
    const float shift = mx * sc;
#pragma unroll
    for (int nt = 0; nt < C::kSTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e)
        s[mt][nt][2 * hh + e] = exp2Approx(fmaf(s[mt][nt][2 * hh + e], sc, -shift));
      part[nt] = s[mt][nt][2 * hh] + s[mt][nt][2 * hh + 1];
    }
#pragma unroll
    for (int w = C::kSTiles / 2; w >= 1; w /= 2)
#pragma unroll
      for (int nt = 0; nt < w; ++nt)
        part[nt] += part[nt + w];
    rowSum[mt][hh] = fmaf(rowSum[mt][hh], alpha, part[0]);
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt) {
      o[mt][dt][2 * hh] *= alpha;
      o[mt][dt][2 * hh + 1] *= alpha;
    }
  }
#pragma unroll
  for (int kk = 0; kk < C::kSTiles / 2; ++kk) {
    pf[mt][kk][0] = pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
    pf[mt][kk][1] = pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
    pf[mt][kk][2] = pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
    pf[mt][kk][3] = pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
  }
}

/// O += P V for one key tile. V is [key][d] = row-major [k][n]:
/// ldmatrix.x4.trans yields b0, b1 of two d tiles (matrices: keys +0..7 and
/// +8..15 at d +0, then at d +8); an odd tile count ends with an x2.
template <typename T, typename C, int MT>
__device__ __forceinline__ void pvTile(float (&o)[MT][C::kDTiles][4],
                                       const uint32_t (&pf)[MT][C::kSTiles / 2][4],
                                       const T *sVs, int lane) {
#pragma unroll
  for (int kk = 0; kk < C::kSTiles / 2; ++kk) {
    const T *keyRow = sVs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * C::kStride;
#pragma unroll
    for (int dp = 0; dp < C::kDTiles / 2; ++dp) {
      uint32_t bv[4];
      ldsmX4Trans(bv, smemAddr(keyRow + dp * 16 + (lane >> 4) * 8));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma16816<T>(o[mt][2 * dp], pf[mt][kk], bv[0], bv[1]);
        mma16816<T>(o[mt][2 * dp + 1], pf[mt][kk], bv[2], bv[3]);
      }
    }
    if constexpr (C::kDTiles % 2 == 1) {
      uint32_t bv[2];
      ldsmX2Trans(bv, smemAddr(keyRow + (C::kDTiles - 1) * 8));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        mma16816<T>(o[mt][C::kDTiles - 1], pf[mt][kk], bv[0], bv[1]);
    }
  }
}

/// One unit of work: a query tile of one (sample, head).
template <typename T> struct WorkItem {
  int q0;
  const T *q, *k, *v;
  T *o;
};

template <typename T, int BM>
__device__ __forceinline__ WorkItem<T> workItem(const Params &p, int item) {
  const int qTile = item % p.rowTiles;
  const int pair = item / p.rowTiles;
  const int h = pair % p.heads, b = pair / p.heads;
  WorkItem<T> w;
  w.q0 = qTile * BM;
  w.q = static_cast<const T *>(p.q) + (static_cast<int64_t>(b) * p.lq + w.q0) * p.ldq +
        static_cast<int64_t>(h) * p.dk;
  w.k = static_cast<const T *>(p.k) + static_cast<int64_t>(b) * p.lk * p.ldk +
        static_cast<int64_t>(h) * p.dk;
  w.v = static_cast<const T *>(p.v) + static_cast<int64_t>(b) * p.lk * p.ldv +
        static_cast<int64_t>(h) * p.dv;
  w.o = static_cast<T *>(p.o) + (static_cast<int64_t>(b) * p.lq + w.q0) * p.ldo +
        static_cast<int64_t>(h) * p.dv;
  return w;
}

/// Persistent: a grid of (resident CTAs) loops over the work items
/// item = blockIdx.x + i·gridDim.x, query tile fastest, so that the CTAs
/// sharing one head's K and V run at the same time and hit L2.
///
/// The key tiles of consecutive items form one stream through two shared-
/// memory stages, one tile of lookahead (two cp.async groups in flight):
///   top:  wait K_j (and Q at j = 0), barrier; issue the next K tile
///         (K_{j+1}, or K_0 and Q of the next item after the last tile)
///   S = Q K_jᵀ, mask keys >= lk, online softmax, P packed to T
///   mid:  wait V_j, barrier; issue the next V tile
///   O += P V_j
/// so an item's loads overlap the previous item's last tile and store, the
/// short-sequence case (DiT at 256 tokens: 4 key tiles per item) included.
/// The top barrier of a tile frees the other K stage (every warp has
/// finished the previous S), the mid barrier the other V stage; Q is double
/// buffered, and a warp stages its output rows in its own rows of the
/// current Q buffer, which the next-but-one item's load reaches only after
/// further barriers.
template <typename T, int D, int MT, int BN, int kWarps, int kMinBlocks>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    flashForward(const __grid_constant__ Params p) {
  using C = TileConfig<D, MT, BN, kWarps>;
  extern __shared__ __align__(128) unsigned char smemRaw[];
  T *sQbase = reinterpret_cast<T *>(smemRaw);
  T *sK = sQbase + 2 * C::kQElems;
  T *sV = sK + 2 * C::kKVElems;

  int item = blockIdx.x;
  if (item >= p.items)
    return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const bool aligned = p.aligned != 0;
  const int nTiles = (p.lk + BN - 1) / BN;
  const int warpRow = warp * 16 * MT;
  const float sc = p.scaleLog2;

  {
    // Prologue: {Q, K_0} as one group, V_0 as the next.
    const WorkItem<T> first = workItem<T, C::kBM>(p, item);
    loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sQbase, first.q, p.ldq,
                                                    min(C::kBM, p.lq - first.q0), p.dk, aligned);
    loadTile<T, BN, D, C::kStride, C::kThreads>(sK, first.k, p.ldk, min(BN, p.lk), p.dk,
                                                aligned);
    cpAsyncCommit();
    loadTile<T, BN, D, C::kStride, C::kThreads>(sV, first.v, p.ldv, min(BN, p.lk), p.dv,
                                                aligned);
    cpAsyncCommit();
  }

  int qBuf = 0, stage = 0;
  for (;;) {
    // Only the current K and V bases stay live through the key loop; the
    // other item addresses are recomputed where needed (registers are the
    // occupancy limit).
    const int nextItem = item + static_cast<int>(gridDim.x);
    const bool hasNext = nextItem < p.items;
    const T *kCur, *vCur;
    {
      const WorkItem<T> cur = workItem<T, C::kBM>(p, item);
      kCur = cur.k;
      vCur = cur.v;
    }
    T *sQ = sQbase + qBuf * C::kQElems;

    uint32_t qf[MT][C::kK16][4];
    uint32_t qt[MT][2];
    float o[MT][C::kDTiles][4];
    float rowMax[MT][2], rowSum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
        for (int i = 0; i < 4; ++i)
          o[mt][dt][i] = 0.0f;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        rowMax[mt][hh] = -INFINITY;
        rowSum[mt][hh] = 0.0f;
      }
    }

    for (int j = 0; j < nTiles; ++j) {
      cpAsyncWait<1>();
      __syncthreads();
      if (j == 0) {
        // Q fragments stay in registers for the item's key loop. Lane L
        // addresses row L%16 and column half L/16 of each 16x16 block
        // (matrices: rows 0-7 and 8-15 of the low half, then of the high
        // half = a0..a3).
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          const T *rowPtr = sQ + (warpRow + mt * 16 + (lane & 15)) * C::kStride;
#pragma unroll
          for (int ks = 0; ks < C::kK16; ++ks) {
            ldsmX4(qf[mt][ks], smemAddr(rowPtr + ks * 16 + (lane >> 4) * 8));
#pragma unroll
            for (int i = 0; i < 4; ++i)
              qf[mt][ks][i] ^= p.qSign;
          }
          if constexpr (C::kK8Tail) {
            // Columns D-8..D-1 only: rows 0-7 and 8-15 are a0, a1 of m16n8k8.
            ldsmX2(qt[mt], smemAddr(rowPtr + C::kK16 * 16));
            qt[mt][0] ^= p.qSign;
            qt[mt][1] ^= p.qSign;
          }
        }
      }
      const bool lastTile = j + 1 == nTiles;
      if (!lastTile) {
        loadTile<T, BN, D, C::kStride, C::kThreads>(
            sK + (stage ^ 1) * C::kKVElems, kCur + static_cast<int64_t>(j + 1) * BN * p.ldk,
            p.ldk, min(BN, p.lk - (j + 1) * BN), p.dk, aligned);
      } else if (hasNext) {
        const WorkItem<T> nxt = workItem<T, C::kBM>(p, nextItem);
        loadTile<T, C::kBM, D, C::kStride, C::kThreads>(sQbase + (qBuf ^ 1) * C::kQElems, nxt.q,
                                                        p.ldq, min(C::kBM, p.lq - nxt.q0), p.dk,
                                                        aligned);
        loadTile<T, BN, D, C::kStride, C::kThreads>(sK + (stage ^ 1) * C::kKVElems, nxt.k, p.ldk,
                                                    min(BN, p.lk), p.dk, aligned);
      }
      cpAsyncCommit(); // possibly empty: keeps the group count uniform

      const T *sKs = sK + stage * C::kKVElems;
      const T *sVs = sV + stage * C::kKVElems;
      float s[MT][C::kSTiles][4];
      uint32_t pf[MT][C::kSTiles / 2][4];
      // Keys past lk (only in the last tile) get -inf before the maximum.
      const int validKeys = p.lk - j * BN;
      qkTile<T, C, MT>(s, qf, qt, sKs, lane);
      maskTile<C, MT>(s, validKeys, lane);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        softmaxTile<T, C, MT>(s, pf, o, rowMax, rowSum, sc, mt);

      cpAsyncWait<1>();
      __syncthreads();
      if (!lastTile)
        loadTile<T, BN, D, C::kStride, C::kThreads>(
            sV + (stage ^ 1) * C::kKVElems, vCur + static_cast<int64_t>(j + 1) * BN * p.ldv,
            p.ldv, min(BN, p.lk - (j + 1) * BN), p.dv, aligned);
      else if (hasNext)
        loadTile<T, BN, D, C::kStride, C::kThreads>(sV + (stage ^ 1) * C::kKVElems,
                                                    workItem<T, C::kBM>(p, nextItem).v, p.ldv,
                                                    min(BN, p.lk), p.dv, aligned);
      cpAsyncCommit();

      pvTile<T, C, MT>(o, pf, sVs, lane);
      stage ^= 1;
    }

    // Normalise, stage this warp's rows in its own rows of sQ (no other warp
    // reads them), then write 16-byte chunks so that a warp's stores cover
    // whole row segments.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        float l = rowSum[mt][hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = 1.0f / l;
        if (p.lse != nullptr && (lane & 3) == 0) {
          // rowMax is in raw score units (exp2 of (s - max)·sc above).
          const int row = warpRow + mt * 16 + (lane >> 2) + 8 * hh;
          const int q0 = (item % p.rowTiles) * C::kBM;
          if (q0 + row < p.lq)
            p.lse[static_cast<int64_t>(item / p.rowTiles) * p.lq + q0 + row] =
                fmaf(rowMax[mt][hh], sc, log2f(l)) * 0.6931471805599453f;
        }
        T *dst = sQ + (warpRow + mt * 16 + (lane >> 2) + 8 * hh) * C::kStride + 2 * (lane & 3);
#pragma unroll
        for (int dt = 0; dt < C::kDTiles; ++dt)
          *reinterpret_cast<uint32_t *>(dst + dt * 8) =
              pack2<T>(o[mt][dt][2 * hh] * inv, o[mt][dt][2 * hh + 1] * inv);
      }
    __syncwarp();
    const WorkItem<T> cur = workItem<T, C::kBM>(p, item);
    const int validRows = min(C::kBM, p.lq - cur.q0);
    constexpr int kWarpChunks = 16 * MT * C::kChunks;
#pragma unroll
    for (int i = lane; i < kWarpChunks; i += 32) {
      int r = i / C::kChunks, c = i - r * C::kChunks;
      int row = warpRow + r;
      if (row >= validRows)
        continue;
      const T *src = sQ + row * C::kStride + c * 8;
      T *dst = cur.o + static_cast<int64_t>(row) * p.ldo + c * 8;
      if (aligned) {
        if (c * 8 < p.dv)
          *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
      } else {
#pragma unroll
        for (int x = 0; x < 8; ++x)
          if (c * 8 + x < p.dv)
            dst[x] = src[x];
      }
    }

    if (!hasNext)
      break;
    item = nextItem;
    qBuf ^= 1;
  }
}

//===----------------------------------------------------------------------===//
// The exact fallback
//===----------------------------------------------------------------------===//

/// Query rows per CTA (one per warp) and keys per shared-memory tile.
constexpr int kSimtRows = 8;
constexpr int kSimtKeys = 32;

/// Shared-memory row pitch of the K tile: odd, so that the 32 lanes (one key
/// each) reading the same column hit 32 different banks.
__host__ __device__ inline int simtKeyStride(int dk) { return dk % 2 == 0 ? dk + 1 : dk; }

inline size_t simtSmemBytes(int dk, int dv) {
  return sizeof(float) * (static_cast<size_t>(kSimtKeys) * (simtKeyStride(dk) + dv) +
                          static_cast<size_t>(kSimtRows) * (dk + dv + kSimtKeys));
}

/// Plain f32 attention with any head dims: CTA = 8 warps = 8 query rows of
/// one (sample, head); K and V tiles of 32 keys are staged in shared memory
/// as f32 and shared by the 8 rows. Lane j scores key j of the tile; the
/// online softmax uses expf; each lane then accumulates its own output
/// columns. Used for f32 (where it is exact to f32 rounding) and for 16-bit
/// head dims beyond the tensor-core kernel's 128.
template <typename T>
__global__ void __launch_bounds__(kSimtRows * 32) attentionSimt(const __grid_constant__ Params p) {
  extern __shared__ float smemF[];
  const int strideK = simtKeyStride(p.dk);
  float *sK = smemF;
  float *sV = sK + kSimtKeys * strideK;
  float *sQ = sV + kSimtKeys * p.dv;
  float *sO = sQ + kSimtRows * p.dk;
  float *sP = sO + kSimtRows * p.dv;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rowBlock = blockIdx.x % p.rowTiles;
  const int pair = blockIdx.x / p.rowTiles;
  const int h = pair % p.heads, b = pair / p.heads;
  const int row = rowBlock * kSimtRows + warp;
  const bool active = row < p.lq; // warp-uniform

  const T *kG = static_cast<const T *>(p.k) + static_cast<int64_t>(b) * p.lk * p.ldk +
                static_cast<int64_t>(h) * p.dk;
  const T *vG = static_cast<const T *>(p.v) + static_cast<int64_t>(b) * p.lk * p.ldv +
                static_cast<int64_t>(h) * p.dv;
  float *q = sQ + warp * p.dk;
  float *acc = sO + warp * p.dv;
  float *prob = sP + warp * kSimtKeys;
  if (active) {
    const T *qG = static_cast<const T *>(p.q) + (static_cast<int64_t>(b) * p.lq + row) * p.ldq +
                  static_cast<int64_t>(h) * p.dk;
    for (int c = lane; c < p.dk; c += 32)
      q[c] = toF<T>(qG[c]);
  }
  for (int c = lane; c < p.dv; c += 32)
    acc[c] = 0.0f;

  float runMax = -INFINITY, runSum = 0.0f;
  for (int k0 = 0; k0 < p.lk; k0 += kSimtKeys) {
    __syncthreads(); // the previous tile is fully consumed
    for (int i = threadIdx.x; i < kSimtKeys * p.dk; i += blockDim.x) {
      int r = i / p.dk, c = i - r * p.dk;
      sK[r * strideK + c] =
          k0 + r < p.lk ? toF<T>(kG[static_cast<int64_t>(k0 + r) * p.ldk + c]) : 0.0f;
    }
    for (int i = threadIdx.x; i < kSimtKeys * p.dv; i += blockDim.x) {
      int r = i / p.dv, c = i - r * p.dv;
      sV[r * p.dv + c] =
          k0 + r < p.lk ? toF<T>(vG[static_cast<int64_t>(k0 + r) * p.ldv + c]) : 0.0f;
    }
    __syncthreads();
    if (!active)
      continue;
    const bool valid = k0 + lane < p.lk;
    float score = -INFINITY;
    if (valid) {
      float dot = 0.0f;
      const float *kr = sK + lane * strideK;
      for (int c = 0; c < p.dk; ++c)
        dot = fmaf(q[c], kr[c], dot);
      score = p.scale * dot;
    }
    float mx = score;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float newMax = fmaxf(runMax, mx); // finite: key k0 is valid
    const float alpha = runMax == -INFINITY ? 0.0f : expf(runMax - newMax);
    const float pr = valid ? expf(score - newMax) : 0.0f;
    float total = pr;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
      total += __shfl_xor_sync(0xffffffffu, total, off);
    runSum = runSum * alpha + total;
    runMax = newMax;
    prob[lane] = pr;
    __syncwarp();
    for (int c = lane; c < p.dv; c += 32) {
      float a = acc[c] * alpha;
      for (int jj = 0; jj < kSimtKeys; ++jj)
        a = fmaf(prob[jj], sV[jj * p.dv + c], a);
      acc[c] = a;
    }
    __syncwarp(); // prob is rewritten by the next tile
  }
  if (!active)
    return;
  T *oG = static_cast<T *>(p.o) + (static_cast<int64_t>(b) * p.lq + row) * p.ldo +
          static_cast<int64_t>(h) * p.dv;
  const float inv = 1.0f / runSum;
  for (int c = lane; c < p.dv; c += 32)
    oG[c] = fromF<T>(acc[c] * inv);
  if (p.lse != nullptr && lane == 0)
    p.lse[static_cast<int64_t>(pair) * p.lq + row] = runMax + logf(runSum);
}

} // namespace diffrt::cuda::attn

#endif // DIFFRT_KERNELS_ATTENTIONKERNELS_CUH
