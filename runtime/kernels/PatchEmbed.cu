//===- PatchEmbed.cu - patch embedding (stride-p convolution) on the GPU --===//
//
// The p x p, stride-p convolution of an NCHW image as one matrix product:
// a gather kernel lays every patch out as a row of c·p·p values in the
// (channel, row, column) order of the flattened (d, c, p, p) weight
// (im2col without overlap, so it is a pure permutation of x), the product
// with the weight runs through Gemm with cuBLASLt's bias epilogue, and a
// final pass adds the position table row of each token (the positions
// operand has the activation dtype in plans: a cast precedes it).
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include <algorithm>

namespace diffrt::cuda {

namespace {

constexpr size_t kCarveAlign = 256;

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

/// patches[row][col] for row = (b, pr, pc) over the patch grid and
/// col = (ch, i, j) within a patch. Consecutive threads write consecutive
/// columns; the reads of one patch row (j) are contiguous in x.
template <typename T>
__global__ void gatherPatches(const T *__restrict__ x, int64_t c, int64_t height, int64_t width,
                              int64_t p, int64_t wp, int64_t tokens, int64_t total,
                              T *__restrict__ patches) {
  const int64_t patchLen = c * p * p;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t row = idx / patchLen, col = idx - row * patchLen;
    int64_t b = row / tokens, t = row - b * tokens;
    int64_t pr = t / wp, pc = t - pr * wp;
    int64_t ch = col / (p * p), within = col - ch * p * p;
    int64_t i = within / p, j = within - i * p;
    patches[idx] = x[((b * c + ch) * height + pr * p + i) * width + pc * p + j];
  }
}

/// out[r][j] += pos[r mod tokens][j]; pos is tokens x d, contiguous.
template <typename T, int V>
__global__ void addPositions(T *out, int64_t ldo, const T *pos, int64_t rows, int64_t d,
                             int64_t tokens) {
  int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= d)
    return;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    T *o = out + r * ldo + c;
    const T *q = pos + (r % tokens) * d + c;
    if constexpr (V > 1) {
      float ov[V], pv[V];
      loadVec<T>(o, ov);
      loadVec<T>(q, pv);
#pragma unroll
      for (int i = 0; i < V; ++i)
        ov[i] += pv[i];
      storeVec<T>(o, ov);
    } else {
      *o = fromF<T>(toF<T>(*o) + toF<T>(*q));
    }
  }
}

template <typename T>
void launchAddPositions(cudaStream_t stream, T *out, int64_t ldo, const T *pos, int64_t rows,
                        int64_t d, int64_t tokens) {
  constexpr int kV = kVec<T>;
  bool vec = d % kV == 0 && vectorizable(out, ldo, d, sizeof(T)) && aligned16(pos);
  int width = vec ? kV : 1;
  int64_t perRow = (d + width - 1) / width;
  int tx = perRow >= 256 ? 256 : static_cast<int>((perRow + 31) / 32 * 32);
  int ty = 256 / tx;
  unsigned gx = static_cast<unsigned>((perRow + tx - 1) / tx);
  int64_t rowBlocks = (rows + ty - 1) / ty;
  int64_t cap = static_cast<int64_t>(multiprocessorCount()) * 16 / gx + 1;
  unsigned gy = static_cast<unsigned>(std::min<int64_t>({rowBlocks, cap, 65535}));
  dim3 block(tx, ty), grid(gx, gy);
  if (vec)
    addPositions<T, kV><<<grid, block, 0, stream>>>(out, ldo, pos, rows, d, tokens);
  else
    addPositions<T, 1><<<grid, block, 0, stream>>>(out, ldo, pos, rows, d, tokens);
  checkLaunch("patchEmbed positions");
}

} // namespace

size_t patchEmbedWorkspaceBytes(int64_t batch, int64_t c, int64_t height, int64_t width,
                                int64_t p, DType dtype) {
  if (batch <= 0 || c <= 0 || p <= 0 || height <= 0 || width <= 0)
    return 0;
  int64_t rows = batch * (height / p) * (width / p), patchLen = c * p * p;
  return kCarveAlign +
         alignUp(static_cast<size_t>(rows * patchLen) * dtypeSize(dtype), kCarveAlign) +
         Gemm::workspaceBytes(rows, 0, patchLen, false, dtype);
}

void patchEmbed(Stream stream, Gemm &gemm, DType dtype, const void *x, int64_t batch, int64_t c,
                int64_t height, int64_t width, const void *weight, const void *bias, int64_t d,
                int64_t p, const void *pos, DMat out, Workspace ws) {
  const char *kernel = "patchEmbed";
  if (dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F32)
    fail(kernel, ": unsupported element type ", dtypeName(dtype));
  if (batch <= 0 || c <= 0 || d <= 0 || p <= 0)
    fail(kernel, ": batch ", batch, ", channels ", c, ", d ", d, " and patch size ", p,
         " must be positive");
  if (height <= 0 || width <= 0 || height % p != 0 || width % p != 0)
    fail(kernel, ": image ", height, " x ", width, " is not a positive multiple of patch size ",
         p);
  if (x == nullptr || weight == nullptr)
    fail(kernel, ": null image or weight");
  const int64_t hp = height / p, wp = width / p, tokens = hp * wp, rows = batch * tokens;
  const int64_t patchLen = c * p * p;
  const size_t elem = dtypeSize(dtype);
  if (out.rows != rows || out.cols != d || out.ld < d || out.data == nullptr)
    fail(kernel, ": out is ", out.rows, " x ", out.cols, " (ld ", out.ld, "), expected ", rows,
         " x ", d);

  char *base = static_cast<char *>(ws.data);
  size_t avail = base != nullptr ? ws.bytes : 0;
  if (base != nullptr) {
    size_t skew = alignUp(reinterpret_cast<uintptr_t>(base), kCarveAlign) -
                  reinterpret_cast<uintptr_t>(base);
    avail = avail > skew ? avail - skew : 0;
    base += skew;
  }
  size_t patchBytes = alignUp(static_cast<size_t>(rows * patchLen) * elem, kCarveAlign);
  if (avail < patchBytes)
    fail(kernel, ": workspace of ", ws.bytes, " bytes is too small: needs ",
         patchEmbedWorkspaceBytes(batch, c, height, width, p, dtype), " bytes");
  cudaStream_t s = native(stream);

  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    int64_t total = rows * patchLen;
    unsigned blocks = gridStrideBlocks(total, 256);
    gatherPatches<T><<<blocks, 256, 0, s>>>(static_cast<const T *>(x), c, height, width, p, wp,
                                            tokens, total, reinterpret_cast<T *>(base));
    checkLaunch("patchEmbed gather");
  });
  gemm.run(stream, dtype, DConstMat{base, rows, patchLen, patchLen},
           DConstMat{weight, d, patchLen, patchLen}, bias, Act::None, nullptr, out,
           Workspace{base + patchBytes, avail - patchBytes});
  if (pos != nullptr)
    dispatchFloat(dtype, kernel, [&](auto tag) {
      using T = decltype(tag);
      launchAddPositions<T>(s, static_cast<T *>(out.data), out.ld, static_cast<const T *>(pos),
                            rows, d, tokens);
    });
}

} // namespace diffrt::cuda
