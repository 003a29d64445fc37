//===- GroupedGemm.cu - grouped matrix products of the MoE kernels --------===//
//
// Three kernels behind groupedGemm (see GroupedGemm.cuh for the contract).
//
// Tensor-core kernel (f16/bf16 with 16-byte aligned rows): an Ampere-style
// 128 x 128 x 32 tile, four warps of 64 x 64, mma.sync m16n8k16 with f32
// accumulators, operands read from shared memory by ldmatrix (.trans for
// K x N weights) and filled by cp.async four stages deep, so the loads of
// tile k+3 overlap the products of tile k and there is one barrier per K
// step. Shared rows are XOR-swizzled at 16-byte granularity so that the
// eight row addresses of every ldmatrix phase hit distinct banks. Rows past
// a group's end and columns/K past the matrix are zero-filled by cp.async
// (src-size 0) and never stored. In SwiGLU mode the 128 B-tile rows are 64
// gate and 64 up rows arranged so that each warp holds the gate and the up
// accumulator of the same output element in the same thread, and the
// epilogue stores silu(gate) · up without a round trip through memory.
//
// Measured on an H100 (bf16, whole MoE layers, so routing, permutation and
// combine included): DiT-MoE-XL token choice (16384 tokens, top 2 of 8
// experts, d 1152, hidden 4608) 3.1-3.2 ms, about 330 TFLOP/s of the routed
// experts' FLOPs; DiT-MoE-S (d 384) 0.57 ms, about 200 TFLOP/s; MicroDiT-
// sized expert choice (32768 tokens, d 1024, hidden 4096, capacity 2) 5.6 ms
// (nn.Linear weights) to 6.2 ms (K x N weights, ldmatrix.trans), 180-195
// TFLOP/s. The Hopper kernel below (wgmma) has replaced it on tensor
// cores; DIFFRT_GROUPED_GEMM=mma still selects it, for comparisons.
//
// SIMT kernel (f32, and 16-bit views that break the alignment rules): a
// 64 x 64 x 16 tile of f32 FMAs, 4 x 4 outputs per thread, operands staged
// in shared memory as f32. It keeps f32 inputs exact (tensor-core f32 modes
// would round them to tf32).
//
// Both find their group with tileRows: tile t belongs to the first group
// whose cumulative tile count exceeds t, with at most `groups` iterations
// over the device offsets, so the grid may be sized for the worst case
// (ceil(rows / BM) + groups) without knowing the routing on the host. The
// grid is one-dimensional and rasterised in bands of row tiles (rasterTile)
// for L2 reuse of both operands.
//
//===----------------------------------------------------------------------===//

#include "GroupedGemm.cuh"
#include "Wgmma.cuh"

#include <cstdlib>
#include <string>
#include <type_traits>

namespace diffrt::cuda::grouped {

namespace {

template <typename T> struct KParams {
  const T *a;
  int64_t lda;
  const int32_t *rowIndex;
  const T *b, *b2;
  int64_t ldb, strideB;
  T *c;
  int64_t ldc;
  T *cg, *cu; // SwiGLU: G and U kept beside c, or null
  int64_t n, k;
  const int32_t *offsets;
  int64_t groupRows;
  int groups;
  int act;
  int64_t mTiles, nTiles;
};

/// Row and column tile of block `pid` of the 1-D grid. Blocks walk bands of
/// kBand row tiles with the row tile fastest, so the blocks resident at one
/// time cover about kBand row tiles and (resident / kBand) column tiles:
/// both operands' tiles are reused from L2 instead of one of them being
/// streamed from memory once per column (or row) of tiles.
constexpr int64_t kBand = 16;

__device__ __forceinline__ void rasterTile(int64_t pid, int64_t mTiles, int64_t nTiles,
                                           int64_t &tileM, int64_t &tileN) {
  const int64_t perBand = kBand * nTiles;
  const int64_t band = pid / perBand, firstM = band * kBand;
  const int64_t rows = mTiles - firstM < kBand ? mTiles - firstM : kBand;
  const int64_t local = pid - band * perBand;
  tileM = firstM + local % rows;
  tileN = local / rows;
}

/// The group and row range [begin, end) of row tile `tile` (BM rows), or
/// false when the tile lies past the last group.
template <int BM, typename P>
__device__ __forceinline__ bool tileRows(const P &p, int64_t tile, int &group, int64_t &begin,
                                         int64_t &end) {
  if (p.offsets != nullptr) {
    int64_t first = 0;
    for (int g = 0; g < p.groups; ++g) {
      const int64_t b0 = p.offsets[g], b1 = p.offsets[g + 1];
      const int64_t tiles = b1 > b0 ? (b1 - b0 + BM - 1) / BM : 0;
      if (tile < first + tiles) {
        group = g;
        begin = b0 + (tile - first) * BM;
        end = b1;
        return true;
      }
      first += tiles;
    }
    return false;
  }
  const int64_t per = (p.groupRows + BM - 1) / BM;
  if (per == 0)
    return false;
  const int64_t g = tile / per;
  if (g >= p.groups)
    return false;
  group = static_cast<int>(g);
  begin = g * p.groupRows + (tile - g * per) * BM;
  end = (g + 1) * p.groupRows;
  return true;
}

//===----------------------------------------------------------------------===//
// Tensor-core kernel
//===----------------------------------------------------------------------===//

constexpr int kBM = 128, kBN = 128, kBK = 32, kStages = 4, kTcThreads = 128;
constexpr int kAStage = kBM * kBK, kBStage = kBN * kBK; // elements per stage
constexpr size_t kTcSmem = static_cast<size_t>(kStages) * (kAStage + kBStage) * 2;

__device__ __forceinline__ unsigned smemAddr(const void *p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrixX4(unsigned (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}
__device__ __forceinline__ void ldmatrixX4Trans(unsigned (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}

template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4],
                                         const unsigned (&b)[2]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

/// Two adjacent outputs as one 32-bit store.
template <typename T> __device__ __forceinline__ void storePair(T *p, float v0, float v1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(v0, v1);
  else
    *reinterpret_cast<__half2 *>(p) = __floats2half2_rn(v0, v1);
}

/// Swizzled element offset of 16-byte chunk `chunk` of row `row` in a tile
/// with 64-byte rows (kBK = 32 16-bit values): rows r and r ^ 2, r ^ 4, r ^ 6
/// would share banks; XOR-ing the chunk with bits 1-2 of the row separates
/// the eight rows of an ldmatrix phase.
__device__ __forceinline__ int swzK(int row, int chunk) {
  return row * kBK + ((chunk ^ ((row >> 1) & 3)) << 3);
}
/// The same for K x N tiles with 256-byte rows (kBN = 128 values).
__device__ __forceinline__ int swzN(int krow, int chunk) {
  return krow * kBN + ((chunk ^ (krow & 7)) << 3);
}

template <typename T, BLayout L, Epilogue E>
__global__ void __launch_bounds__(kTcThreads) tcKernel(KParams<T> p) {
  constexpr bool kDual = E == Epilogue::SwiGlu;
  static_assert(!(kDual && L == BLayout::KN), "SwiGLU tiles read N x K weights");
  extern __shared__ float4 tcSmem[];
  T *sA = reinterpret_cast<T *>(tcSmem);
  T *sB = sA + kStages * kAStage;

  int64_t tileM, tileN;
  rasterTile(blockIdx.x, p.mTiles, p.nTiles, tileM, tileN);
  int group;
  int64_t rowBegin, rowEnd;
  if (!tileRows<kBM>(p, tileM, group, rowBegin, rowEnd))
    return;
  const int64_t nBase = tileN * (kDual ? kBN / 2 : kBN);
  const T *B = p.b + group * p.strideB;
  const T *B2 = kDual ? p.b2 + group * p.strideB : nullptr;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp & 1, wn = warp >> 1;

  // Loader roles. A (and N x K B): this thread copies 16-byte chunk
  // tid & 3 of tile rows (tid >> 2) + 32·i. K x N B: chunk tid & 15 of
  // K rows (tid >> 4) + 8·i.
  const int chunk4 = tid & 3;
  const T *aSrc[4];
  bool aOk[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = rowBegin + (tid >> 2) + 32 * i;
    aOk[i] = row < rowEnd;
    const int64_t idx = aOk[i] ? (p.rowIndex != nullptr ? p.rowIndex[row] : row) : 0;
    aSrc[i] = p.a + idx * p.lda + chunk4 * 8;
  }
  const T *bSrc[4];
  bool bOk[4];
  const int chunk16 = tid & 15;
  int64_t bCol = 0;
  if constexpr (L == BLayout::NK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = (tid >> 2) + 32 * i;
      int64_t wrow;
      const T *src = B;
      if constexpr (kDual) {
        // Warp column block r / 64: its first 32 rows gate, next 32 up,
        // for output columns nBase + (r / 64)·32 + (r % 32).
        wrow = nBase + (r >> 6) * 32 + (r & 31);
        src = (r & 63) < 32 ? B : B2;
      } else {
        wrow = nBase + r;
      }
      bOk[i] = wrow < p.n;
      bSrc[i] = src + (bOk[i] ? wrow : 0) * p.ldb + chunk4 * 8;
    }
  } else {
    bCol = nBase + chunk16 * 8;
  }

  auto loadStage = [&](int stage, int64_t k0) {
    T *a = sA + stage * kAStage;
    T *b = sB + stage * kBStage;
    const bool kOk4 = k0 + chunk4 * 8 < p.k;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = (tid >> 2) + 32 * i;
      cpAsync16(a + swzK(row, chunk4), aSrc[i] + k0, aOk[i] && kOk4);
    }
    if constexpr (L == BLayout::NK) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = (tid >> 2) + 32 * i;
        cpAsync16(b + swzK(row, chunk4), bSrc[i] + k0, bOk[i] && kOk4);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int krow = (tid >> 4) + 8 * i;
        const int64_t kk = k0 + krow;
        const bool ok = kk < p.k && bCol < p.n;
        cpAsync16(b + swzN(krow, chunk16), B + (ok ? kk * p.ldb + bCol : 0), ok);
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

  const int64_t kTiles = (p.k + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < kTiles)
      loadStage(s, static_cast<int64_t>(s) * kBK);
    cpAsyncCommit();
  }

  for (int64_t kt = 0; kt < kTiles; ++kt) {
    cpAsyncWait<kStages - 2>();
    __syncthreads(); // tile kt landed for all threads; stage (kt-1) % kStages is free
    const int64_t next = kt + kStages - 1;
    if (next < kTiles)
      loadStage(static_cast<int>(next % kStages), next * kBK);
    cpAsyncCommit();

    const T *a = sA + (kt % kStages) * kAStage;
    const T *b = sB + (kt % kStages) * kBStage;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      unsigned af[4][4], bf[8][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const int row = wm * 64 + mi * 16 + (lane & 15);
        ldmatrixX4(af[mi], a + swzK(row, kk * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        unsigned r[4];
        if constexpr (L == BLayout::NK) {
          const int nrow = wn * 64 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
          ldmatrixX4(r, b + swzK(nrow, kk * 2 + ((lane >> 3) & 1)));
        } else {
          const int m = lane >> 3;
          const int krow = kk * 16 + (lane & 7) + ((m & 1) << 3);
          const int nchunk = (wn * 64 + np * 16 + ((m >> 1) << 3)) >> 3;
          ldmatrixX4Trans(r, b + swzN(krow, nchunk));
        }
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 8; ++ni)
          mma16816<T>(acc[mi][ni], af[mi], bf[ni]);
    }
  }
  cpAsyncWait<0>();

  // Accumulator (mi, ni, q): row wm·64 + mi·16 + lane/4 (+8 for q >= 2),
  // columns wn·64 + ni·8 + 2·(lane % 4) (+1 for odd q).
  const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = rowBegin + wm * 64 + mi * 16 + g + half * 8;
      if (row >= rowEnd)
        continue;
      T *crow = p.c + row * p.ldc;
      if constexpr (kDual) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const int64_t col = nBase + wn * 32 + ni * 8 + 2 * t4;
          if (col < p.n) {
            const float g0 = acc[mi][ni][2 * half], g1 = acc[mi][ni][2 * half + 1];
            const float u0 = acc[mi][ni + 4][2 * half], u1 = acc[mi][ni + 4][2 * half + 1];
            storePair<T>(crow + col, siluPrecise(g0) * u0, siluPrecise(g1) * u1);
            if (p.cg != nullptr) {
              storePair<T>(p.cg + row * p.ldc + col, g0, g1);
              storePair<T>(p.cu + row * p.ldc + col, u0, u1);
            }
          }
        }
      } else {
#pragma unroll
        for (int ni = 0; ni < 8; ++ni) {
          const int64_t col = nBase + wn * 64 + ni * 8 + 2 * t4;
          if (col < p.n) {
            float v0 = acc[mi][ni][2 * half], v1 = acc[mi][ni][2 * half + 1];
            if constexpr (E == Epilogue::Act) {
              v0 = applyActPrecise(v0, p.act);
              v1 = applyActPrecise(v1, p.act);
            }
            storePair<T>(crow + col, v0, v1);
          }
        }
      }
    }
}

//===----------------------------------------------------------------------===//
// Hopper kernel (wgmma)
//===----------------------------------------------------------------------===//

// 128 x 256 x 64 tiles, two warpgroups of 64 x 256 (wgmma m64n256k16, f32
// accumulators in 128 registers per thread), operands in shared memory in
// the 128-byte swizzled K-major layout that wgmma descriptors read (row r's
// 16-byte chunk c at r·128 + ((c ^ r % 8)·16), 1024-byte aligned 8-row
// atoms). cp.async fills four stages two tiles ahead while one wgmma group
// stays in flight, so loads, barriers and products overlap. SwiGLU tiles
// hold 128 gate and 128 up rows: a thread's gate and up accumulators of one
// output element are registers j and j + 64 of the same thread.
constexpr int kWBM = 128, kWBN = 256, kWBK = 64, kWStages = 4, kWThreads = 256;
constexpr int kWAStage = kWBM * kWBK, kWBStage = kWBN * kWBK; // elements
constexpr size_t kWSmem = static_cast<size_t>(kWStages) * (kWAStage + kWBStage) * 2 + 1024;

template <typename T, BLayout L, Epilogue E>
__global__ void __launch_bounds__(kWThreads, 1) wgmmaKernel(KParams<T> p) {
  constexpr bool kDual = E == Epilogue::SwiGlu;
  constexpr bool kTransB = L == BLayout::KN;
  static_assert(!(kDual && kTransB), "SwiGLU tiles read N x K weights");
  extern __shared__ float4 wSmemRaw[];
  // 1024-byte alignment for the swizzle atoms.
  uint8_t *base = reinterpret_cast<uint8_t *>(
      (reinterpret_cast<uintptr_t>(wSmemRaw) + 1023) & ~static_cast<uintptr_t>(1023));
  uint8_t *sA = base;
  uint8_t *sB = base + kWStages * kWAStage * 2;

  int64_t tileM, tileN;
  rasterTile(blockIdx.x, p.mTiles, p.nTiles, tileM, tileN);
  int group;
  int64_t rowBegin, rowEnd;
  if (!tileRows<kWBM>(p, tileM, group, rowBegin, rowEnd))
    return;
  const int64_t nBase = tileN * (kDual ? kWBN / 2 : kWBN);
  const T *B = p.b + group * p.strideB;
  const T *B2 = kDual ? p.b2 + group * p.strideB : nullptr;
  const int tid = threadIdx.x, chunk = tid & 7, rowOf = tid >> 3;

  // This thread copies chunk `chunk` of A rows rowOf + 32i (i < 4) and of
  // B rows rowOf + 32i (i < 8).
  const T *aSrc[4];
  bool aOk[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = rowBegin + rowOf + 32 * i;
    aOk[i] = row < rowEnd;
    const int64_t idx = aOk[i] ? (p.rowIndex != nullptr ? p.rowIndex[row] : row) : 0;
    aSrc[i] = p.a + idx * p.lda + chunk * 8;
  }
  // N x K weights: chunk `chunk` of B rows rowOf + 32i (i < 8). K x N
  // weights: 16-byte column chunk tid % 32 of K rows tid / 32 + 8i, stored
  // in 64-column blocks (MN-major).
  const T *bSrc[8];
  bool bOk[8];
  const int colChunk = tid & 31, kRowOf = tid >> 5;
  const bool bColOk = nBase + colChunk * 8 < p.n;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    if constexpr (kTransB) {
      bOk[i] = bColOk;
      bSrc[i] = B + static_cast<int64_t>(kRowOf + 8 * i) * p.ldb + (bColOk ? nBase + colChunk * 8 : 0);
    } else {
      const int r = rowOf + 32 * i;
      int64_t wrow;
      const T *src = B;
      if constexpr (kDual) {
        wrow = nBase + (r & 127);
        src = r < 128 ? B : B2;
      } else {
        wrow = nBase + r;
      }
      bOk[i] = wrow < p.n;
      bSrc[i] = src + (bOk[i] ? wrow : 0) * p.ldb + chunk * 8;
    }
  }
  auto loadStage = [&](int stage, int64_t k0) {
    uint8_t *a = sA + stage * kWAStage * 2;
    uint8_t *b = sB + stage * kWBStage * 2;
    const bool kOk = k0 + chunk * 8 < p.k;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      cpAsync16(a + wgmma::swz128(rowOf + 32 * i, chunk), aSrc[i] + k0, aOk[i] && kOk);
    if constexpr (kTransB) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int krow = kRowOf + 8 * i;
        const bool ok = bOk[i] && k0 + krow < p.k;
        cpAsync16(b + (colChunk >> 3) * 8192 + wgmma::swz128(krow, colChunk & 7), bSrc[i] + (ok ? k0 * p.ldb : 0), ok);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        cpAsync16(b + wgmma::swz128(rowOf + 32 * i, chunk), bSrc[i] + k0, bOk[i] && kOk);
    }
  };

  float d[128];
#pragma unroll
  for (int i = 0; i < 128; ++i)
    d[i] = 0.0f;
  const int wg = tid >> 7;
  const int64_t kTiles = (p.k + kWBK - 1) / kWBK;
  // Two tiles ahead: stage kt + 2 reuses the slot of tile kt - 2, whose
  // products every warpgroup finished (wait_group 1 in iteration kt - 1)
  // before the barrier of iteration kt.
  for (int s = 0; s < 2; ++s) {
    if (s < kTiles)
      loadStage(s, static_cast<int64_t>(s) * kWBK);
    cpAsyncCommit();
  }
  for (int64_t kt = 0; kt < kTiles; ++kt) {
    cpAsyncWait<1>();
    wgmma::fenceProxyAsync(); // cp.async wrote through the generic proxy; wgmma reads through the async one
    __syncthreads();
    if (kt + 2 < kTiles)
      loadStage(static_cast<int>((kt + 2) % kWStages), (kt + 2) * kWBK);
    cpAsyncCommit();
    const int slot = static_cast<int>(kt % kWStages);
    const uint64_t descA = wgmma::descK(sA + slot * kWAStage * 2 + wg * 64 * 128);
    const uint64_t descB = kTransB ? wgmma::descMN(sB + slot * kWBStage * 2) : wgmma::descK(sB + slot * kWBStage * 2);
    // The next 16 K values: 32 bytes further along a K-major row, or 16
    // rows (2048 bytes) further down an MN-major tile.
    const uint64_t stepB = kTransB ? 2048 >> 4 : 32 >> 4;
    wgmma::fence();
#pragma unroll
    for (int j = 0; j < kWBK / 16; ++j)
      wgmma::wgmma256<T, false, kTransB>(d, descA + 2 * j, descB + stepB * j, kt > 0 || j > 0);
    wgmma::commit();
    wgmma::wait<1>();
  }
  wgmma::wait<0>();
  cpAsyncWait<0>();

  // d[4j + 2h + c]: row wg·64 + warp·16 + lane/4 + 8h, column 8j + 2·(lane % 4) + c.
  const int lane = tid & 31, warp = (tid >> 5) & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = rowBegin + wg * 64 + warp * 16 + (lane >> 2) + 8 * h;
    if (row >= rowEnd)
      continue;
    T *crow = p.c + row * p.ldc;
    if constexpr (kDual) {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int64_t col = nBase + 8 * j + 2 * (lane & 3);
        if (col < p.n) {
          const float g0 = d[4 * j + 2 * h], g1 = d[4 * j + 2 * h + 1];
          const float u0 = d[4 * (j + 16) + 2 * h], u1 = d[4 * (j + 16) + 2 * h + 1];
          storePair<T>(crow + col, siluPrecise(g0) * u0, siluPrecise(g1) * u1);
          if (p.cg != nullptr) {
            storePair<T>(p.cg + row * p.ldc + col, g0, g1);
            storePair<T>(p.cu + row * p.ldc + col, u0, u1);
          }
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const int64_t col = nBase + 8 * j + 2 * (lane & 3);
        if (col < p.n) {
          float v0 = d[4 * j + 2 * h], v1 = d[4 * j + 2 * h + 1];
          if constexpr (E == Epilogue::Act) {
            v0 = applyActPrecise(v0, p.act);
            v1 = applyActPrecise(v1, p.act);
          }
          storePair<T>(crow + col, v0, v1);
        }
      }
    }
  }
}

//===----------------------------------------------------------------------===//
// SIMT kernel
//===----------------------------------------------------------------------===//

constexpr int kSBM = 64, kSBN = 64, kSBK = 16, kSThreads = 256, kSPad = 4;

template <typename T, BLayout L, Epilogue E>
__global__ void __launch_bounds__(kSThreads) simtKernel(KParams<T> p) {
  constexpr bool kDual = E == Epilogue::SwiGlu;
  // A transposed ([k][m]) so that both operands are read as float4 rows;
  // the 4-float padding keeps rows 16-byte aligned and spreads the
  // transposing stores over the banks.
  __shared__ float4 aStore[kSBK * (kSBM + kSPad) / 4];
  __shared__ float4 bStore[kSBK * (kSBN + kSPad) / 4];
  __shared__ float4 b2Store[kDual ? kSBK * (kSBN + kSPad) / 4 : 1];
  float *As = reinterpret_cast<float *>(aStore);
  float *Bs = reinterpret_cast<float *>(bStore);
  float *Bs2 = reinterpret_cast<float *>(b2Store);
  constexpr int AS = kSBM + kSPad, BS = kSBN + kSPad;

  int64_t tileM, tileN;
  rasterTile(blockIdx.x, p.mTiles, p.nTiles, tileM, tileN);
  int group;
  int64_t rowBegin, rowEnd;
  if (!tileRows<kSBM>(p, tileM, group, rowBegin, rowEnd))
    return;
  const int64_t nBase = tileN * kSBN;
  const T *B = p.b + group * p.strideB;
  const T *B2 = kDual ? p.b2 + group * p.strideB : nullptr;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;

  const T *aSrc[4];
  bool aOk[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = rowBegin + ty + 16 * i;
    aOk[i] = row < rowEnd;
    const int64_t idx = aOk[i] ? (p.rowIndex != nullptr ? p.rowIndex[row] : row) : 0;
    aSrc[i] = p.a + idx * p.lda;
  }

  float acc[4][4], acc2[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      acc[i][j] = 0.0f;
      acc2[i][j] = 0.0f;
    }

  for (int64_t k0 = 0; k0 < p.k; k0 += kSBK) {
    const int64_t kk = k0 + tx;
    const bool kOk = kk < p.k;
#pragma unroll
    for (int i = 0; i < 4; ++i)
      As[tx * AS + ty + 16 * i] = aOk[i] && kOk ? toF<T>(aSrc[i][kk]) : 0.0f;
    if constexpr (L == BLayout::NK) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t col = nBase + ty + 16 * i;
        const bool ok = kOk && col < p.n;
        Bs[tx * BS + ty + 16 * i] = ok ? toF<T>(B[col * p.ldb + kk]) : 0.0f;
        if constexpr (kDual)
          Bs2[tx * BS + ty + 16 * i] = ok ? toF<T>(B2[col * p.ldb + kk]) : 0.0f;
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int krow = (tid >> 6) + 4 * i, n = tid & 63;
        const int64_t kr = k0 + krow, col = nBase + n;
        Bs[krow * BS + n] = kr < p.k && col < p.n ? toF<T>(B[kr * p.ldb + col]) : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kSBK; ++q) {
      const float4 a4 = reinterpret_cast<const float4 *>(As + q * AS)[ty];
      const float4 b4 = reinterpret_cast<const float4 *>(Bs + q * BS)[tx];
      const float av[4] = {a4.x, a4.y, a4.z, a4.w}, bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
          acc[i][j] += av[i] * bv[j];
      if constexpr (kDual) {
        const float4 c4 = reinterpret_cast<const float4 *>(Bs2 + q * BS)[tx];
        const float cv[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j)
            acc2[i][j] += av[i] * cv[j];
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = rowBegin + ty * 4 + i;
    if (row >= rowEnd)
      continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = nBase + tx * 4 + j;
      if (col >= p.n)
        continue;
      float v = acc[i][j];
      if constexpr (kDual) {
        if (p.cg != nullptr) {
          p.cg[row * p.ldc + col] = fromF<T>(v);
          p.cu[row * p.ldc + col] = fromF<T>(acc2[i][j]);
        }
        v = siluPrecise(v) * acc2[i][j];
      } else if constexpr (E == Epilogue::Act)
        v = applyActPrecise(v, p.act);
      p.c[row * p.ldc + col] = fromF<T>(v);
    }
  }
}

template <typename T, BLayout L, Epilogue E>
void launch(Stream stream, KParams<T> p, int64_t maxRows, bool tensorCores) {
  // N x K weights on tensor cores take the wgmma kernel, unless
  // DIFFRT_GROUPED_GEMM=mma asks for the mma.sync one (for comparisons).
  static const bool forceMma = [] {
    const char *v = std::getenv("DIFFRT_GROUPED_GEMM");
    return v && std::string(v) == "mma";
  }();
  const bool hopper = tensorCores && !forceMma;
  const int64_t bm = hopper ? kWBM : tensorCores ? kBM : kSBM;
  int64_t mTiles;
  if (p.offsets != nullptr)
    mTiles = (maxRows + bm - 1) / bm + p.groups;
  else
    mTiles = p.groups * ((p.groupRows + bm - 1) / bm);
  const int64_t bn = hopper        ? (E == Epilogue::SwiGlu ? kWBN / 2 : kWBN)
                     : tensorCores ? (E == Epilogue::SwiGlu ? kBN / 2 : kBN)
                                   : kSBN;
  const int64_t nTiles = (p.n + bn - 1) / bn;
  if (mTiles <= 0 || nTiles <= 0)
    return;
  if (mTiles * nTiles > INT32_MAX)
    fail("groupedGemm: ", mTiles, " x ", nTiles, " tiles exceed one launch");
  p.mTiles = mTiles;
  p.nTiles = nTiles;
  const dim3 grid(static_cast<unsigned>(mTiles * nTiles));
  if constexpr (!std::is_same_v<T, float>) {
    if (hopper) {
      auto kernel = wgmmaKernel<T, L, E>;
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(kWSmem)),
            "groupedGemm: shared memory limit");
      kernel<<<grid, kWThreads, kWSmem, native(stream)>>>(p);
      checkLaunch("groupedGemm (wgmma)");
      return;
    }
    if (tensorCores) {
      auto kernel = tcKernel<T, L, E>;
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(kTcSmem)),
            "groupedGemm: shared memory limit");
      kernel<<<grid, kTcThreads, kTcSmem, native(stream)>>>(p);
      checkLaunch("groupedGemm (tensor cores)");
      return;
    }
  }
  simtKernel<T, L, E><<<grid, kSThreads, 0, native(stream)>>>(p);
  checkLaunch("groupedGemm (simt)");
}

template <typename T>
void dispatchShape(Stream stream, const KParams<T> &p, int64_t maxRows, bool tc, BLayout layout,
                   Epilogue epi) {
  if (layout == BLayout::NK) {
    switch (epi) {
    case Epilogue::Store: launch<T, BLayout::NK, Epilogue::Store>(stream, p, maxRows, tc); return;
    case Epilogue::Act: launch<T, BLayout::NK, Epilogue::Act>(stream, p, maxRows, tc); return;
    case Epilogue::SwiGlu: launch<T, BLayout::NK, Epilogue::SwiGlu>(stream, p, maxRows, tc); return;
    }
  } else {
    switch (epi) {
    case Epilogue::Store: launch<T, BLayout::KN, Epilogue::Store>(stream, p, maxRows, tc); return;
    case Epilogue::Act: launch<T, BLayout::KN, Epilogue::Act>(stream, p, maxRows, tc); return;
    case Epilogue::SwiGlu: break;
    }
  }
  fail("groupedGemm: SwiGLU needs N x K weights");
}

bool aligned(const void *p) { return p == nullptr || aligned16(p); }

} // namespace

void groupedGemm(Stream stream, const GroupedGemmArgs &g) {
  const char *kernel = "groupedGemm";
  if (g.groups <= 0 || g.n <= 0 || g.k <= 0)
    fail(kernel, ": groups, n and k must be positive (", g.groups, ", ", g.n, ", ", g.k, ")");
  if (g.a == nullptr || g.b == nullptr || g.c == nullptr)
    fail(kernel, ": null operand");
  if (g.epilogue == Epilogue::SwiGlu && g.b2 == nullptr)
    fail(kernel, ": SwiGLU needs the up weights");
  if ((g.cGate != nullptr || g.cUp != nullptr) && (g.epilogue != Epilogue::SwiGlu || g.cGate == nullptr || g.cUp == nullptr))
    fail(kernel, ": the kept pre-activations need the SwiGLU epilogue and both outputs");
  if (g.offsets == nullptr && g.groupRows < 0)
    fail(kernel, ": negative group size ", g.groupRows);
  if (g.maxRows <= 0 && g.offsets != nullptr)
    return;
  dispatchFloat(g.dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    KParams<T> p;
    p.a = static_cast<const T *>(g.a);
    p.lda = g.lda;
    p.rowIndex = g.rowIndex;
    p.b = static_cast<const T *>(g.b);
    p.b2 = static_cast<const T *>(g.b2);
    p.ldb = g.ldb;
    p.strideB = g.groupStrideB;
    p.c = static_cast<T *>(g.c);
    p.ldc = g.ldc;
    p.cg = static_cast<T *>(g.cGate);
    p.cu = static_cast<T *>(g.cUp);
    p.n = g.n;
    p.k = g.k;
    p.offsets = g.offsets;
    p.groupRows = g.groupRows;
    p.groups = g.groups;
    p.act = static_cast<int>(g.act);
    // Tensor cores need whole 16-byte chunks everywhere: K and N multiples
    // of 8 values, 16-byte aligned bases and leading dimensions.
    bool tc = !std::is_same_v<T, float> && g.k % 8 == 0 && g.n % 8 == 0 && g.lda % 8 == 0 &&
              g.ldb % 8 == 0 && g.groupStrideB % 8 == 0 && g.ldc % 8 == 0 && aligned(g.a) &&
              aligned(g.b) && aligned(g.b2) && aligned(g.c) && aligned(g.cGate) && aligned(g.cUp);
    dispatchShape<T>(stream, p, g.maxRows, tc, g.layout, g.epilogue);
  });
}

} // namespace diffrt::cuda::grouped
