//===- Attention.cu - multi-head softmax attention on the GPU -------------===//
//
// Host side of cuda::attention: argument checks with the CPU reference's
// semantics (q: (batch·lq) x (heads·dk), k: (batch·lk) x (heads·dk),
// v: (batch·lk) x (heads·dv), out: (batch·lq) x (heads·dv), all strided
// views, so q, k and v can be column slices of one packed projection), and
// the choice of kernel:
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

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <climits>
#include <cmath>

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

bool overlaps(DConstMat a, DConstMat b, size_t elem) {
  if (a.data == nullptr || b.data == nullptr || a.rows == 0 || b.rows == 0 || a.cols == 0 ||
      b.cols == 0)
    return false;
  auto begin = [](DConstMat v) { return reinterpret_cast<uintptr_t>(v.data); };
  auto end = [elem](DConstMat v) {
    return reinterpret_cast<uintptr_t>(v.data) + ((v.rows - 1) * v.ld + v.cols) * elem;
  };
  return begin(a) < end(b) && begin(b) < end(a);
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
  if (overlaps(out, q, elem) || overlaps(out, k, elem) || overlaps(out, v, elem))
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
