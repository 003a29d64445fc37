//===- Attention.cu - multi-head softmax attention on the GPU -------------===//
//
// Host side of cuda::attention: argument checks with the CPU reference's
// semantics (q: (batch·lq) x (heads·dk), k: (batch·lk) x (heads·dk),
// v: (batch·lk) x (heads·dv), out: (batch·lq) x (heads·dv), all strided
// views, so q, k and v can be column slices of one packed projection), and
// the choice of kernel:
//   f16/bf16, equal head dims 64 or 72 with aligned views: the wgmma
//     kernel below (DIFFRT_ATTENTION=mma selects the next one instead);
//   f16/bf16, head dims up to 128: the flash kernel of AttentionKernels.cuh,
//     instantiated natively for D = 32, 64, 72, 88 and 128; other dims run
//     in the smallest of those tiles that holds them, zero-padded;
//   f32, or head dims above 128: the exact SIMT kernel.
// Tiles move with 16-byte cp.async when every row start is 16-byte aligned
// and dk, dv are multiples of 8; otherwise the same kernel loads with
// scalar reads.
//
//===----------------------------------------------------------------------===//

#include "AttentionKernels.cuh"
#include "AttentionWgmma.cuh"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>

namespace diffrt::cuda {

namespace {

using attn::Params;

void checkView(const char *name, DConstMat m, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail("attention: ", name, " is ", m.rows, " x ", m.cols, ", expected ", rows, " x ", cols);
  if (m.ld < cols || m.ld < 1)
    fail("attention: ", name, " has leading dimension ", m.ld, " < ", cols, " columns");
  if (m.data == nullptr && rows > 0 && cols > 0)
    fail("attention: ", name, " is null");
}

/// Tile shape per head dim, chosen by measurement on an H100 (at B·N =
/// 16k tokens, 16 heads): 4 warps of two m16 tiles each (MT = 2: every K and
/// V fragment read from shared memory feeds two mma, and each warp has two
/// independent accumulator sets), 64-key tiles. D = 128 takes 32-key tiles
/// so that S, O and Q fit 255 registers (MT = 1 with 64 keys ran 10-15 %
/// slower). All reach 2 CTAs (8 warps) per multiprocessor, the register
/// limit.
template <int D> struct FlashChoice {
  static constexpr int kMT = 2;
  static constexpr int kBN = D <= 88 ? 64 : 32;
  static constexpr int kWarps = 4;
  static constexpr int kMinBlocks = 2;
};

/// CTAs of `Kernel` resident per multiprocessor, queried once per device.
template <auto Kernel> int residentBlocks(int threads, size_t smem) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int device = 0;
  check(cudaGetDevice(&device), "attention: cudaGetDevice");
  if (device >= 0 && device < kMaxDevices) {
    int known = cache[device].load(std::memory_order_relaxed);
    if (known > 0)
      return known;
  }
  int blocks = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, Kernel, threads, smem),
        "attention: occupancy query");
  if (blocks < 1)
    fail("attention: the flash kernel does not fit a multiprocessor (", smem,
         " bytes of shared memory)");
  if (device >= 0 && device < kMaxDevices)
    cache[device].store(blocks, std::memory_order_relaxed);
  return blocks;
}

template <typename T, int D> void launchFlash(cudaStream_t stream, Params p, int64_t pairs) {
  using F = FlashChoice<D>;
  using C = attn::TileConfig<D, F::kMT, F::kBN, F::kWarps>;
  constexpr auto kernel = attn::flashForward<T, D, F::kMT, F::kBN, F::kWarps, F::kMinBlocks>;
  const size_t smem = C::smemBytes(sizeof(T));
  allowSharedMemory<kernel>(smem, "attention: the flash kernel");
  p.rowTiles = static_cast<int32_t>((p.lq + C::kBM - 1) / C::kBM);
  int64_t items = p.rowTiles * pairs;
  if (items > INT32_MAX)
    fail("attention: ", items, " query tiles exceed the 32-bit work-item range");
  p.items = static_cast<int32_t>(items);
  // Persistent CTAs: exactly as many as can be resident, each looping over
  // items with a stride of the grid size.
  int64_t resident = static_cast<int64_t>(multiprocessorCount()) *
                     residentBlocks<kernel>(C::kThreads, smem);
  unsigned blocks = static_cast<unsigned>(std::min(items, resident));
  kernel<<<blocks, C::kThreads, smem, stream>>>(p);
  checkLaunch("attention (flash)");
}

/// Hopper kernel (wgmma, AttentionWgmma.cuh): a CTA is G warpgroups, each
/// owning 64 queries of the CTA's 64·G; the (sample, head)'s key and value
/// tiles stream through three cp.async stages, two tiles ahead, shared by
/// the G warpgroups (with G = 2 warpgroup 0 copies the key tiles and
/// warpgroup 1 the value tiles). Sharing is the point: at DiT's 256 tokens
/// a one-warpgroup CTA re-read each key and value tile for every 64
/// queries and the kernel was bound by L2 throughput (85 %, `ncu`). Per key
/// tile: S = Q Kᵀ (m64n64k16, both operands in shared memory), scaled by
/// scale·log2(e) (any sign), masked past lk, an online softmax in the exp2
/// domain (each row's maximum and sum are shared by the four threads of a
/// quad), O rescaled, and O += P V with P as register A fragments. O is
/// divided by the row sum at the end, staged in the key stages and stored
/// in 16-byte chunks. A warpgroup whose queries are all past lq computes on
/// the zero rows its Q copy left and stores nothing.
template <typename T, int D, int G>
__global__ void __launch_bounds__(128 * G, G == 1 ? 3 : 2) flashForwardWg(const __grid_constant__ Params p) {
  static_assert(G == 1 || G == 2, "one warpgroup copies each of the key and value tiles");
  using W = wgattn::WgTile<D>;
  constexpr int S = W::kStages;
  extern __shared__ float4 wgSmemRaw[];
  uint8_t *sQ = reinterpret_cast<uint8_t *>((reinterpret_cast<uintptr_t>(wgSmemRaw) + 1023) &
                                            ~static_cast<uintptr_t>(1023));
  uint8_t *sK = sQ + G * W::kBytes, *sV = sK + S * W::kBytes;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wg = warp >> 2;
  const wgattn::WgQueryItem<T, D, G * W::kRows> item(p, static_cast<int>(blockIdx.x), p.rowTiles);
  const int validQ = item.validRows;
  const wgattn::WgTileStream<T, D, S> kv = item.template keyValues<S>(p, sK, sV);
  const int nTiles = kv.tiles;
  // Key tile j, one commit group (possibly empty).
  auto loadKV = [&](int j) {
    kv.load(j, G == 1 ? -1 : wg);
    cpAsyncCommit();
  };
  uint8_t *sQg = sQ + wg * W::kBytes;
  const int ownRow0 = wg * W::kRows; // the warpgroup's first query in the item
  wgattn::WgCopy<T, D>(p.ldq).load(sQg, item.rows(static_cast<const T *>(p.q), p.ldq) + ownRow0 * p.ldq,
                                   validQ - ownRow0);
  loadKV(0);
  loadKV(1);

  const float sc = p.scale * 1.4426950408889634f;
  wgattn::WgAcc<D> o;
  o.zero();
  // Rows warp·16 + lane/4 + 8h: the running maximum (quad-uniform) and
  // this thread's part of the running sum.
  float rowMax[2] = {-INFINITY, -INFINITY}, rowSum[2] = {0.0f, 0.0f};
  for (int j = 0; j < nTiles; ++j) {
    cpAsyncWait<1>();
    wgmma::fenceProxyAsync();
    __syncthreads(); // also: every thread is done with stage (j + 2) % S, read in iteration j − 1
    loadKV(j + 2);
    const int validKeys = p.lk - j * W::kRows;

    float s[32];
    wgmma::fence();
    wgattn::scoreProduct<T, D>(s, sQg, kv.stage0(j));
    wgmma::commit();
    wgmma::wait<0>();
    // Columns are keys: s[4n + 2h + e] is key 8n + 2(lane % 4) + e of row h.
    float mx[2] = {rowMax[0], rowMax[1]};
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool valid = 8 * n + 2 * (lane & 3) + e < validKeys;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int i = 4 * n + 2 * hh + e;
          s[i] = valid ? s[i] * sc : -INFINITY;
          mx[hh] = fmaxf(mx[hh], s[i]);
        }
      }
    float alpha[2];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], 1));
      mx[hh] = fmaxf(mx[hh], __shfl_xor_sync(0xffffffffu, mx[hh], 2));
      // mx is finite: every tile holds a key below lk. 2^-inf = 0 on the first.
      alpha[hh] = attn::exp2Approx(rowMax[hh] - mx[hh]);
      rowMax[hh] = mx[hh];
      rowSum[hh] *= alpha[hh];
    }
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int hh = (i >> 1) & 1;
      s[i] = attn::exp2Approx(s[i] - mx[hh]);
      rowSum[hh] += s[i];
      o.main[i] *= alpha[hh];
    }
#pragma unroll
    for (int i = 0; i < W::kTailN / 2; ++i)
      o.tail[i] *= alpha[(i >> 1) & 1];
    uint32_t pf[4][4];
    wgattn::packWgA<T>(s, pf);
    wgmma::fence();
    wgattn::rowProduct<T, D>(o, pf, kv.stage1(j));
    wgmma::commit();
    wgmma::wait<0>();
  }
  cpAsyncWait<0>();

#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    rowSum[hh] += __shfl_xor_sync(0xffffffffu, rowSum[hh], 1);
    rowSum[hh] += __shfl_xor_sync(0xffffffffu, rowSum[hh], 2);
    const int row = warp * 16 + (lane >> 2) + 8 * hh;
    if (p.lse != nullptr && (lane & 3) == 0 && row < validQ)
      p.lse[item.statAt(p.lq, row)] = (rowMax[hh] + log2f(rowSum[hh])) * 0.6931471805599453f;
  }
  const float inv[2] = {1.0f / rowSum[0], 1.0f / rowSum[1]};
#pragma unroll
  for (int i = 0; i < 32; ++i)
    o.main[i] *= inv[(i >> 1) & 1];
#pragma unroll
  for (int i = 0; i < W::kTailN / 2; ++i)
    o.tail[i] *= inv[(i >> 1) & 1];
  __syncthreads(); // every warp's products have read the key stages, which now stage O
  wgattn::storeWgRows<T, D>(o, 1.0f, reinterpret_cast<T *>(sK),
                            item.rows(static_cast<T *>(p.o), p.ldo), p.ldo, validQ);
}

/// Warpgroups per CTA: two (128 queries sharing each key and value tile)
/// unless DIFFRT_ATTENTION_WARPGROUPS=1 asks for the one-warpgroup CTAs
/// (read per call, for comparisons and tests).
int forwardWarpgroups() {
  const char *v = std::getenv("DIFFRT_ATTENTION_WARPGROUPS");
  if (v == nullptr || *v == '\0' || std::string(v) == "2")
    return 2;
  if (std::string(v) == "1")
    return 1;
  fail("DIFFRT_ATTENTION_WARPGROUPS is '", v, "'; expected 1 or 2");
}

template <typename T, int D, int G> void launchFlashWg(cudaStream_t stream, Params p, int64_t pairs) {
  using W = wgattn::WgTile<D>;
  constexpr auto kernel = flashForwardWg<T, D, G>;
  constexpr size_t smem = (G + 2 * W::kStages) * static_cast<size_t>(W::kBytes) + 1024;
  static_assert(2 * W::kStages * W::kBytes >= G * W::kRows * W::kPitch * 2,
                "the key and value stages hold the staged output");
  allowSharedMemory<kernel>(smem, "attention: the wgmma kernel");
  p.rowTiles = static_cast<int32_t>((p.lq + G * W::kRows - 1) / (G * W::kRows));
  const int64_t blocks = p.rowTiles * pairs;
  if (blocks > INT32_MAX)
    fail("attention: ", blocks, " query tiles exceed the grid limit");
  kernel<<<static_cast<unsigned>(blocks), G * W::kThreads, smem, stream>>>(p);
  checkLaunch("attention (wgmma)");
}

template <typename T> void launchSimt(cudaStream_t stream, Params p, int64_t pairs) {
  constexpr auto kernel = attn::attentionSimt<T>;
  const size_t smem = attn::simtSmemBytes(p.dk, p.dv);
  allowSharedMemory<kernel>(smem, "attention: the f32 kernel");
  p.rowTiles = static_cast<int32_t>((p.lq + attn::kSimtRows - 1) / attn::kSimtRows);
  int64_t blocks = p.rowTiles * pairs;
  if (blocks > INT32_MAX)
    fail("attention: ", blocks, " query blocks exceed the grid limit");
  kernel<<<static_cast<unsigned>(blocks), attn::kSimtRows * 32, smem, stream>>>(p);
  checkLaunch("attention (simt)");
}

template <typename T> void dispatch16(cudaStream_t stream, Params p, int64_t pairs) {
  // Equal head dims of 64 or 72 with aligned views take the wgmma kernel,
  // unless DIFFRT_ATTENTION=mma asks for the mma.sync one (read per call,
  // for comparisons and tests). At 88 the mma.sync kernel is faster (H100,
  // 64 x 16 heads x 256: 0.122 against 0.132 ms).
  const char *path = std::getenv("DIFFRT_ATTENTION");
  const bool forceMma = path != nullptr && std::string(path) == "mma";
  if (!forceMma && p.aligned && p.dk == p.dv) {
    const bool pair = forwardWarpgroups() == 2;
    if (p.dk == 64)
      return pair ? launchFlashWg<T, 64, 2>(stream, p, pairs) : launchFlashWg<T, 64, 1>(stream, p, pairs);
    if (p.dk == 72)
      return pair ? launchFlashWg<T, 72, 2>(stream, p, pairs) : launchFlashWg<T, 72, 1>(stream, p, pairs);
  }
  const int need = std::max(p.dk, p.dv);
  if (need <= 32)
    launchFlash<T, 32>(stream, p, pairs);
  else if (need <= 64)
    launchFlash<T, 64>(stream, p, pairs);
  else if (need <= 72)
    launchFlash<T, 72>(stream, p, pairs);
  else if (need <= 88)
    launchFlash<T, 88>(stream, p, pairs);
  else if (need <= 128)
    launchFlash<T, 128>(stream, p, pairs);
  else
    launchSimt<T>(stream, p, pairs);
}

bool rowsAligned(DConstMat m, size_t elem) {
  return (reinterpret_cast<uintptr_t>(m.data) % 16) == 0 && (m.ld * elem) % 16 == 0;
}

} // namespace

void attention(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, int64_t batch,
               int64_t lq, int64_t lk, int64_t heads, float scale, DMat out, float *logsumexp) {
  if (dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F32)
    fail("attention: unsupported element type ", dtypeName(dtype));
  if (batch <= 0 || lq <= 0 || lk <= 0 || heads <= 0)
    fail("attention: batch ", batch, ", lq ", lq, ", lk ", lk, " and heads ", heads,
         " must be positive");
  if (q.cols % heads != 0 || v.cols % heads != 0)
    fail("attention: ", heads, " heads do not divide the q width ", q.cols, " or the v width ",
         v.cols);
  const int64_t dk = q.cols / heads, dv = v.cols / heads;
  checkView("q", q, batch * lq, heads * dk);
  checkView("k", k, batch * lk, heads * dk);
  checkView("v", v, batch * lk, heads * dv);
  checkView("out", out, batch * lq, heads * dv);
  const size_t elem = dtypeSize(dtype);
  if (overlapsD(out, q, elem) || overlapsD(out, k, elem) || overlapsD(out, v, elem))
    fail("attention: out overlaps q, k or v");
  if (lq > INT32_MAX || lk > INT32_MAX || heads > INT32_MAX || dk > INT32_MAX || dv > INT32_MAX)
    fail("attention: sequence lengths, heads and head dims must fit 32 bits");
  if (dk == 0 || dv == 0)
    fail("attention: empty head dims (", dk, ", ", dv, ")");

  Params p{};
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.o = out.data;
  p.lse = logsumexp;
  p.ldq = q.ld;
  p.ldk = k.ld;
  p.ldv = v.ld;
  p.ldo = out.ld;
  p.lq = static_cast<int32_t>(lq);
  p.lk = static_cast<int32_t>(lk);
  p.heads = static_cast<int32_t>(heads);
  p.dk = static_cast<int32_t>(dk);
  p.dv = static_cast<int32_t>(dv);
  p.scale = scale;
  // exp2 domain: softmax(s·scale) = 2^(s·scale·log2 e - max). The kernel
  // multiplies by |scale| and negates q for a negative scale; the floor keeps
  // masked -inf scores at -inf (instead of -inf·0 = NaN) when scale is 0.
  p.scaleLog2 = std::max(std::fabs(scale) * 1.4426950408889634f, FLT_MIN);
  p.qSign = scale < 0.0f ? 0x80008000u : 0u;
  p.aligned = rowsAligned(q, elem) && rowsAligned(k, elem) && rowsAligned(v, elem) &&
              rowsAligned(out, elem) && dk % 8 == 0 && dv % 8 == 0;
  const int64_t pairs = batch * heads;
  cudaStream_t s = native(stream);

  switch (dtype) {
  case DType::F16: dispatch16<__half>(s, p, pairs); break;
  case DType::BF16: dispatch16<__nv_bfloat16>(s, p, pairs); break;
  default: launchSimt<float>(s, p, pairs); break;
  }
}

} // namespace diffrt::cuda
