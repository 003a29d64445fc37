//===- AttentionWgmma.cuh - attention tiles on warpgroup products -*- CUDA -*-===//
//
// What the Hopper attention kernels (the forward in Attention.cu, the
// backward in GradAttention.cu) share: a warpgroup (128 threads) owns 64
// rows of one side and walks 64-row tiles of the other; a backward CTA is
// one warpgroup, a forward CTA two, sharing the other side's tiles. A tile
// is the head dim's first 64 columns in the 128-byte swizzled
// layout of Wgmma.cuh (8192 bytes) and, for D > 64, its tail (KD − 64
// columns, KD = D rounded up to 16, zero-filled past D) in the 32- or
// 64-byte swizzle of that width, so that no shared memory is spent on
// padding. Each part is read both ways: K-major where the head dim is the
// reduction (scores S = A Bᵀ, m64n64k16 with both operands in shared
// memory, the tail's steps through its own descriptors) and MN-major where
// a tile's 64 rows are the reduction (P V and the gradient products: an
// m64n64k16 on the first 64 columns and an m64n{8,24}k16 on the rest, each
// into its own accumulator). A score accumulator's registers, packed in
// pairs, are the A fragments of the next product (register-A wgmma), so
// probabilities never touch shared memory. f16/bf16, head dims 64, 72, 88,
// 16-byte aligned rows. Hopper only (sm_90a).
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_ATTENTION_WGMMA_CUH
#define DIFFRT_KERNELS_ATTENTION_WGMMA_CUH

#include "AttentionKernels.cuh"
#include "Wgmma.cuh"

namespace diffrt::cuda::wgattn {

/// The geometry of a 64-row tile of head dim D (the file comment's layout).
template <int D> struct WgTile {
  static_assert(D == 64 || D == 72 || D == 88, "instantiated for head dims 64, 72, 88");
  static constexpr int kRows = 64;
  static constexpr int kThreads = 128;
  /// Stages of the forward's key/value tiles (cp.async, two tiles ahead);
  /// the backward chooses its own (GradAttention.cu, BwdStages).
  static constexpr int kStages = 3;
  static constexpr int kKD = (D + 15) / 16 * 16;
  static constexpr int kTailCols = kKD - 64;        // 0, 16 or 32
  static constexpr int kTailBytes = 2 * kTailCols;  // row width of the tail part
  static constexpr int kTailN = D - 64;             // output columns past 64: 0, 8 or 24
  static constexpr int kTailAcc = kTailN > 0 ? kTailN / 2 : 1;
  static constexpr int kBytes = 8192 + kRows * kTailBytes;
  /// Staging pitch of a result tile (O, dQ, dK, dV) for its store
  /// (elements): the smallest at least D that puts rows 16 bytes apart
  /// modulo 128 (kPitch ≡ 8 mod 64), so that the eight rows of a fragment
  /// write land in distinct banks: 72 for head dims 64 and 72, 136 for 88.
  /// (D + 8 did this only for 64: at 72 ncu counted 2.6-way conflicts on
  /// the forward's shared stores.)
  static constexpr int kPitch = D + ((8 - D) % 64 + 64) % 64;
  static_assert(kPitch >= D && kPitch % 64 == 8, "rows 16 bytes apart modulo 128");
  static_assert(kBytes % 1024 == 0, "tiles keep the 1024-byte alignment of the swizzle atoms");
};

/// A thread's share of copying 64 x D tiles of one view (row stride ld),
/// t its index in its warpgroup: chunk t % 8 of rows t / 8 + 16i into the
/// first 64 columns and chunk t % tailChunks of rows t / tailChunks +
/// (128 / tailChunks)i into the tail. Offsets are fixed per thread and
/// stride by whole swizzle atoms, so a tile's copy is a few adds per chunk,
/// computed once. One warpgroup copies a whole tile.
template <typename T, int D> struct WgCopy {
  using W = WgTile<D>;
  static constexpr int kTailChunks = W::kTailCols / 8;
  static constexpr int kTailRows = kTailChunks > 0 ? W::kThreads / kTailChunks : W::kRows; // rows per tail pass
  int64_t mainAt, tailAt, ld;
  int mainRow, tailRow;
  uint32_t mainSmem, tailSmem;

  __device__ __forceinline__ explicit WgCopy(int64_t rowStride) : ld(rowStride) {
    const int t = threadIdx.x & (W::kThreads - 1);
    const int c = t & 7;
    mainRow = t >> 3;
    mainAt = static_cast<int64_t>(mainRow) * ld + c * 8;
    mainSmem = static_cast<uint32_t>(wgmma::swz128(mainRow, c));
    if constexpr (kTailChunks > 0) {
      const int tc = t % kTailChunks;
      tailRow = t / kTailChunks;
      tailAt = static_cast<int64_t>(tailRow) * ld + 64 + tc * 8;
      tailSmem = static_cast<uint32_t>(8192 + wgmma::swzNarrow<W::kTailBytes>(tailRow, tc));
      // Chunks past D (the zero padding of the reduction) read nothing.
      if (64 + tc * 8 >= D)
        tailRow = W::kRows;
    } else {
      tailAt = 0;
      tailRow = kTailRows; // no tail: every row past the tile
      tailSmem = 0;
    }
  }

  /// cp.async of rows [0, validRows) of the view at g (16-byte aligned
  /// rows) into `tile`; rows past validRows and columns past D become 0.
  __device__ __forceinline__ void load(uint8_t *tile, const T *g, int validRows) const {
    const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(tile));
#pragma unroll
    for (int i = 0; i < 4; ++i)
      cpAsync16(base + mainSmem + 2048 * i, g + mainAt + 16 * i * ld, mainRow + 16 * i < validRows);
    if constexpr (kTailChunks > 0) {
#pragma unroll
      for (int i = 0; i < W::kRows / kTailRows; ++i)
        cpAsync16(base + tailSmem + kTailRows * W::kTailBytes * i, g + tailAt + kTailRows * i * ld,
                  tailRow + kTailRows * i < validRows);
    }
  }
};

/// The other side of one (sample, head): two views of `rows` rows (K and V,
/// or Q and dO) whose 64-row tiles go through Stages pairs of shared tiles,
/// tile j into stage j % Stages.
template <typename T, int D, int Stages> struct WgTileStream {
  using W = WgTile<D>;
  WgCopy<T, D> copy0, copy1;
  const T *g0, *g1;
  uint8_t *s0, *s1;
  int rows, tiles;

  __device__ __forceinline__ WgTileStream(const T *view0, int64_t ld0, uint8_t *stages0, const T *view1, int64_t ld1,
                                          uint8_t *stages1, int rowCount)
      : copy0(ld0), copy1(ld1), g0(view0), g1(view1), s0(stages0), s1(stages1), rows(rowCount),
        tiles((rowCount + W::kRows - 1) / W::kRows) {}

  /// Tile j's copies (none past the last tile), not committed: callers
  /// commit one group per tile, possibly empty, so that group counts stay
  /// uniform. `view` 0 or 1 copies only that view's tile (a CTA of two
  /// warpgroups gives each one view), -1 both.
  __device__ __forceinline__ void load(int j, int view = -1) const {
    if (j >= tiles)
      return;
    const int st = j % Stages;
    const int64_t off = static_cast<int64_t>(j) * W::kRows;
    const int valid = min(W::kRows, rows - j * W::kRows);
    if (view != 1)
      copy0.load(s0 + st * W::kBytes, g0 + off * copy0.ld, valid);
    if (view != 0)
      copy1.load(s1 + st * W::kBytes, g1 + off * copy1.ld, valid);
  }
  __device__ __forceinline__ const uint8_t *stage0(int j) const { return s0 + (j % Stages) * W::kBytes; }
  __device__ __forceinline__ const uint8_t *stage1(int j) const { return s1 + (j % Stages) * W::kBytes; }
};

/// A query-side work item (the forward, the backward's dQ pass): query
/// tile `tile` (Rows queries, one 64-row tile per warpgroup of the CTA) of
/// (sample, head) `pair`, read through any parameter block with q, k, v,
/// their strides, lq, lk and heads.
template <typename T, int D, int Rows = WgTile<D>::kRows> struct WgQueryItem {
  using W = WgTile<D>;
  static_assert(Rows % W::kRows == 0, "an item is whole 64-row tiles");
  int tile, pair, validRows;
  int64_t row0, col;

  template <typename P> __device__ __forceinline__ WgQueryItem(const P &p, int block, int tiles) {
    tile = block % tiles;
    pair = block / tiles;
    const int b = pair / p.heads;
    validRows = min(Rows, p.lq - tile * Rows);
    row0 = static_cast<int64_t>(b) * p.lq + tile * Rows;
    col = static_cast<int64_t>(pair % p.heads) * D;
  }
  /// The tile's first row in a (batch·lq)-row view (q, dO, O, dQ).
  template <typename V> __device__ __forceinline__ V *rows(V *base, int64_t ld) const {
    return base + row0 * ld + col;
  }
  /// Where row r of the tile's statistics (log-sum-exp, Δ) lives in a
  /// (sample·head, lq) array.
  __device__ __forceinline__ int64_t statAt(int lq, int r) const {
    return static_cast<int64_t>(pair) * lq + tile * Rows + r;
  }
  /// Its (sample, head)'s keys and values as a stream into the given stages.
  template <int Stages, typename P>
  __device__ __forceinline__ WgTileStream<T, D, Stages> keyValues(const P &p, uint8_t *sK, uint8_t *sV) const {
    const int64_t kvRow0 = static_cast<int64_t>(pair / p.heads) * p.lk;
    return WgTileStream<T, D, Stages>(static_cast<const T *>(p.k) + kvRow0 * p.ldk + col, p.ldk, sK,
                                      static_cast<const T *>(p.v) + kvRow0 * p.ldv + col, p.ldv, sV, p.lk);
  }
};

/// S (64 x 64) = A Bᵀ over the head dim, A and B K-major tiles: 16 columns
/// a step, 32 bytes along a 128-byte row, then along the tail's rows.
template <typename T, int D>
__device__ __forceinline__ void scoreProduct(float (&s)[32], const uint8_t *a, const uint8_t *b) {
  using W = WgTile<D>;
  const uint64_t da = wgmma::descK(a), db = wgmma::descK(b);
  wgmma::wgmmaSS64Init<T>(s, da, db);
#pragma unroll
  for (int j = 1; j < 4; ++j)
    wgmma::wgmmaSS64<T>(s, da + 2 * j, db + 2 * j, 1);
  if constexpr (W::kTailCols > 0) {
    const uint64_t ta = wgmma::descKNarrow<W::kTailBytes>(a + 8192), tb = wgmma::descKNarrow<W::kTailBytes>(b + 8192);
#pragma unroll
    for (int j = 0; j < W::kTailCols / 16; ++j)
      wgmma::wgmmaSS64<T>(s, ta + 2 * j, tb + 2 * j, 1);
  }
}

/// S = A0 B0ᵀ and, in a second commit group, the same product of A1 and
/// B1 (the backward's scores and dP), so that the first can be waited for
/// while the second runs.
template <typename T, int D>
__device__ __forceinline__ void scorePair(float (&s0)[32], const uint8_t *a0, const uint8_t *b0, float (&s1)[32],
                                          const uint8_t *a1, const uint8_t *b1) {
  wgmma::fence();
  scoreProduct<T, D>(s0, a0, b0);
  wgmma::commit();
  scoreProduct<T, D>(s1, a1, b1);
  wgmma::commit();
}

/// A fragments of reduction step kk (columns 16kk..16kk+15) of a 64 x 64
/// accumulator: thread registers 8kk..8kk+7 in pairs.
template <typename T>
__device__ __forceinline__ void packWgA(const float (&s)[32], uint32_t (&f)[4][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      f[kk][i] = attn::pack2<T>(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
}

/// A 64 x D accumulator: columns 0..63 and the tail's columns 64..D−1,
/// each in the m64nNk16 register layout (reg 4j + 2h + e: row warp·16 +
/// lane/4 + 8h, column 8j + 2·(lane % 4) + e of its part).
template <int D> struct WgAcc {
  float main[32];
  float tail[WgTile<D>::kTailAcc];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 32; ++i)
      main[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < WgTile<D>::kTailAcc; ++i)
      tail[i] = 0.0f;
  }
};

/// acc += A B, A the four register fragments of a 64-wide reduction, B a
/// tile read MN-major (its 64 rows are the reduction): 16 rows a step.
template <typename T, int D>
__device__ __forceinline__ void rowProduct(WgAcc<D> &acc, const uint32_t (&a)[4][4], const uint8_t *b) {
  using W = WgTile<D>;
  const uint64_t db = wgmma::descMN(b);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    wgmma::wgmmaRSTransB<T, 64>(acc.main, a[kk], db + ((kk * 2048) >> 4), 1);
  if constexpr (W::kTailN > 0) {
    const uint64_t dt = wgmma::descMNNarrow<W::kTailBytes>(b + 8192);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      wgmma::wgmmaRSTransB<T, W::kTailN>(acc.tail, a[kk], dt + ((kk * 16 * W::kTailBytes) >> 4), 1);
  }
}

/// The accumulator times `mul`, staged row-major (pitch kPitch) and copied
/// to global rows [0, validRows), columns [0, D), in 16-byte chunks; each
/// warp stages and copies only its own 16 rows (rows 16w.. of the CTA's
/// item for warp w, so warpgroup g's tile is rows 64g..64g+63).
template <typename T, int D>
__device__ __forceinline__ void storeWgRows(const WgAcc<D> &acc, float mul, T *stage, T *g, int64_t ld,
                                            int validRows) {
  using W = WgTile<D>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    T *dst = stage + (warp * 16 + (lane >> 2) + 8 * h) * W::kPitch + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      *reinterpret_cast<uint32_t *>(dst + 8 * j) =
          attn::pack2<T>(acc.main[4 * j + 2 * h] * mul, acc.main[4 * j + 2 * h + 1] * mul);
#pragma unroll
    for (int j = 0; j < W::kTailN / 8; ++j)
      *reinterpret_cast<uint32_t *>(dst + 64 + 8 * j) =
          attn::pack2<T>(acc.tail[4 * j + 2 * h] * mul, acc.tail[4 * j + 2 * h + 1] * mul);
  }
  __syncwarp();
  constexpr int kRowChunks = D / 8;
  for (int i = lane; i < 16 * kRowChunks; i += 32) {
    const int r = warp * 16 + i / kRowChunks, c = i % kRowChunks;
    if (r < validRows)
      *reinterpret_cast<uint4 *>(g + static_cast<int64_t>(r) * ld + c * 8) =
          *reinterpret_cast<const uint4 *>(stage + r * W::kPitch + c * 8);
  }
}

} // namespace diffrt::cuda::wgattn

#endif // DIFFRT_KERNELS_ATTENTION_WGMMA_CUH
