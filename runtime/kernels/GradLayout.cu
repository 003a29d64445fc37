//===- GradLayout.cu - backward of the token layout and embedding kernels -===//
//
// Vector-Jacobian products of patchEmbed, unpatchify, labelEmbed, the
// depth-wise convolution with its fused output permutation, and tokenMean:
// the GPU counterparts of runtime/cpu/GradLayout.cpp.
//
// patchEmbed's weight gradient is a product summed over tokens,
// dWeight = dOutᵀ · patches, whose inner dimension (batch · tokens, 8192 for
// DiT-XL) dwarfs the output (d x c·p·p, 1152 x 16). It runs as a small
// shared-memory tiled product split over the tokens: each split writes f32
// partial sums to the workspace and a second kernel adds the splits in
// order, so the result is deterministic and the grid has enough blocks for
// the whole GPU. The patches are gathered straight from the NCHW image
// (no im2col buffer) and the bias gradient rides along as one extra column
// of ones. dX = dOut · weight uses the same tiled kernel without a split
// and scatters each patch entry to its (only) pixel. cuBLAS is not used: the
// shapes are too lopsided for it to matter and the gather/scatter would need
// buffers of their own.
//
// The other gradients are gathers with one writer per output element
// (unpatchify's inverse permutation, the convolution's input gradient,
// tokenMean's spread) or sums in a fixed order: a label-embedding row sums
// its samples in sample order, and the convolution's weight and bias sums
// go through per-chunk f32 partials in the workspace added in chunk order.
// No float atomics anywhere, so every result is reproducible bit for bit.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "Common.cuh"

#include <algorithm>

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;

//===----------------------------------------------------------------------===//
// Tiled product C(m, n) = Σ_k a(m, k) · b(k, n) over a split of k
//===----------------------------------------------------------------------===//

constexpr int kTileM = 64, kTileN = 32, kTileK = 32;

/// Block: 256 threads, a 64 x 32 tile of C, 8 values per thread (rows
/// ty + 8i, column tx). blockIdx.z is the split of k. With kMajorA the
/// threads load A walking k fastest (a(m, k) contiguous in k), otherwise m
/// fastest; B is always loaded n fastest.
template <bool kMajorA, typename LoadA, typename LoadB, typename Store>
__global__ void tiledProductKernel(int64_t m, int64_t n, int64_t k, int64_t kPerSplit, LoadA la,
                                   LoadB lb, Store st) {
  __shared__ float as[kTileK][kTileM + 1];
  __shared__ float bs[kTileK][kTileN + 1];
  const int tid = threadIdx.x, tx = tid % 32, ty = tid / 32;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t split = blockIdx.z;
  const int64_t kBegin = split * kPerSplit, kEnd = min(k, kBegin + kPerSplit);
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
    acc[i] = 0.0f;
  for (int64_t k0 = kBegin; k0 < kEnd; k0 += kTileK) {
#pragma unroll
    for (int e = 0; e < kTileM * kTileK / kThreads; ++e) {
      const int idx = tid + e * kThreads;
      const int mm = kMajorA ? idx / kTileK : idx % kTileM;
      const int kk = kMajorA ? idx % kTileK : idx / kTileM;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      as[kk][mm] = gm < m && gk < kEnd ? la(gm, gk) : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < kTileN * kTileK / kThreads; ++e) {
      const int idx = tid + e * kThreads;
      const int nn = idx % kTileN, kk = idx / kTileN;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      bs[kk][nn] = gn < n && gk < kEnd ? lb(gk, gn) : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
      const float b = bs[kk][tx];
#pragma unroll
      for (int i = 0; i < 8; ++i)
        acc[i] += as[kk][ty + 8 * i] * b;
    }
    __syncthreads();
  }
  const int64_t gn = n0 + tx;
  if (gn >= n)
    return;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t gm = m0 + ty + 8 * i;
    if (gm < m)
      st(split, gm, gn, acc[i]);
  }
}

template <bool kMajorA, typename LoadA, typename LoadB, typename Store>
void launchTiledProduct(cudaStream_t stream, const char *kernel, int64_t m, int64_t n, int64_t k,
                        int64_t splits, LoadA la, LoadB lb, Store st) {
  const int64_t mTiles = (m + kTileM - 1) / kTileM, nTiles = (n + kTileN - 1) / kTileN;
  if (mTiles > 65535 || splits > 65535)
    fail(kernel, ": product of ", m, " rows in ", splits, " splits exceeds the grid");
  const int64_t kPerSplit = (k + splits - 1) / splits;
  const dim3 grid(static_cast<unsigned>(nTiles), static_cast<unsigned>(mTiles),
                  static_cast<unsigned>(splits));
  tiledProductKernel<kMajorA><<<grid, kThreads, 0, stream>>>(m, n, k, kPerSplit, la, lb, st);
  checkLaunch(kernel);
}

//===----------------------------------------------------------------------===//
// patchEmbed
//===----------------------------------------------------------------------===//

struct PatchGeometry {
  int64_t c, height, width, p, wp, tokens, patchLen;
  /// Offset in the NCHW image of entry j of the patch of token row `row`.
  __device__ __forceinline__ int64_t pixel(int64_t row, int64_t j) const {
    const int64_t b = row / tokens, t = row - b * tokens, pr = t / wp, pc = t - pr * wp;
    const int64_t ch = j / (p * p), rem = j - ch * p * p, i = rem / p, jj = rem - i * p;
    return ((b * c + ch) * height + pr * p + i) * width + pc * p + jj;
  }
};

/// a(i, r) = dOut[r][i]: dOutᵀ for the weight gradient.
template <typename T> struct DOutTransposed {
  const T *dOut;
  int64_t ld;
  __device__ float operator()(int64_t i, int64_t r) const { return toF<T>(dOut[r * ld + i]); }
};
/// b(r, n) = patch entry n + first of token row r, or 1 for the bias column
/// (entry patchLen).
template <typename T> struct PatchColumns {
  const T *x;
  PatchGeometry geo;
  int64_t first;
  __device__ float operator()(int64_t r, int64_t n) const {
    const int64_t j = n + first;
    return j < geo.patchLen ? toF<T>(x[geo.pixel(r, j)]) : 1.0f;
  }
};
struct StorePartial {
  float *part;
  int64_t m, n;
  __device__ void operator()(int64_t split, int64_t i, int64_t j, float v) const {
    part[(split * m + i) * n + j] = v;
  }
};

/// dWeight[i][j] (or dBias[i] for column patchLen) = Σ_splits in order.
template <typename T>
__global__ void patchWeightSumKernel(const float *part, int64_t splits, int64_t d, int64_t n,
                                     int64_t first, int64_t patchLen, T *dWeight, T *dBias) {
  const int64_t total = d * n;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    float s = 0.0f;
    for (int64_t sp = 0; sp < splits; ++sp)
      s += part[sp * total + idx];
    const int64_t i = idx / n, j = idx - i * n + first;
    if (j < patchLen)
      dWeight[i * patchLen + j] = fromF<T>(s);
    else
      dBias[i] = fromF<T>(s);
  }
}

/// a(r, i) = dOut[r][i]; b(i, j) = weight[i][j]; the store scatters entry j
/// of token row r to its pixel of dX.
template <typename T> struct DOutRows {
  const T *dOut;
  int64_t ld;
  __device__ float operator()(int64_t r, int64_t i) const { return toF<T>(dOut[r * ld + i]); }
};
template <typename T> struct WeightRows {
  const T *weight;
  int64_t patchLen;
  __device__ float operator()(int64_t i, int64_t j) const { return toF<T>(weight[i * patchLen + j]); }
};
template <typename T> struct ScatterPixels {
  T *dX;
  PatchGeometry geo;
  __device__ void operator()(int64_t, int64_t r, int64_t j, float v) const {
    dX[geo.pixel(r, j)] = fromF<T>(v);
  }
};

/// Splits of the token sum: a function of the shape alone (so the sum order
/// is), about 256 tokens each, at most 64.
int64_t patchSplits(int64_t rows) { return std::clamp<int64_t>((rows + 255) / 256, 1, 64); }

//===----------------------------------------------------------------------===//
// Other gradients
//===----------------------------------------------------------------------===//

/// dX token row (b, r, col), element (i·p + j)·c + ch = the pixel
/// (ch, r·p + i, col·p + j) of dOut: a bit-exact gather.
template <typename T>
__global__ void unpatchifyBackwardKernel(const T *dOut, int64_t batch, int64_t h, int64_t w,
                                         int64_t p, int64_t c, T *dX, int64_t ld) {
  const int64_t width = p * c, total = batch * h * w * p * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t row = idx / (p * width), e = idx - row * p * width;
    const int64_t b = row / (h * w), t = row - b * h * w, r = t / w, col = t - r * w;
    const int64_t ij = e / c, ch = e - ij * c, i = ij / p, j = ij - i * p;
    dX[row * ld + e] = dOut[((b * c + ch) * h * p + r * p + i) * (w * p) + col * p + j];
  }
}

/// Block (x: a strip of columns, y: one table row l): Σ over the samples of
/// label l in sample order. The labels go through shared memory in tiles,
/// and the branch on the label is uniform across the block.
template <typename T>
__global__ void labelEmbedBackwardKernel(const int32_t *labels, int64_t batch, int64_t d,
                                         const T *dOut, int64_t ld, T *dTable) {
  __shared__ int32_t tile[kThreads];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t l = blockIdx.y;
  float acc = 0.0f;
  for (int64_t b0 = 0; b0 < batch; b0 += kThreads) {
    const int64_t len = min(static_cast<int64_t>(kThreads), batch - b0);
    __syncthreads();
    if (threadIdx.x < len)
      tile[threadIdx.x] = labels[b0 + threadIdx.x];
    __syncthreads();
    if (j < d)
      for (int64_t i = 0; i < len; ++i)
        if (tile[i] == l)
          acc += toF<T>(dOut[(b0 + i) * ld + j]);
  }
  if (j < d)
    dTable[l * d + j] = fromF<T>(acc);
}

/// Position in order `to` of the token at position s in order `from` (the
/// maps of runtime/cpu/Layout.cpp).
__device__ __forceinline__ int64_t scanPositionD(int order, int64_t h, int64_t w, int64_t r,
                                                 int64_t c) {
  switch (order) {
  case 0: return r * w + c;
  case 1: return h * w - 1 - (r * w + c);
  case 2: return c * h + r;
  default: return h * w - 1 - (c * h + r);
  }
}
__device__ __forceinline__ int64_t permutedD(int from, int to, int64_t h, int64_t w, int64_t s) {
  if (from == to)
    return s;
  const bool reversed = from == 1 || from == 3;
  const int64_t u = reversed ? h * w - 1 - s : s;
  int64_t r, c;
  if (from == 0 || from == 1) {
    r = u / w;
    c = u - r * w;
  } else {
    c = u / h;
    r = u - c * h;
  }
  return scanPositionD(to, h, w, r, c);
}

struct ConvGeometry {
  int64_t batch, h, w, k, d;
  int from, to;
  /// Row of dOut holding the result of sequence position s of sample b.
  __device__ __forceinline__ int64_t gradRow(int64_t b, int64_t s) const {
    return b * h * w + permutedD(from, to, h, w, s);
  }
};

/// dX at cell (r, c), channel ch = Σ_taps w[ch][tap] · g at the cell that
/// read (r, c) through that tap, taps in the CPU's order.
template <typename T>
__global__ void convInputGradKernel(ConvGeometry geo, const T *weight, const T *dOut, int64_t ldd,
                                    T *dX, int64_t ldx) {
  const int64_t tokens = geo.h * geo.w, rows = geo.batch * tokens, total = rows * geo.d;
  const int64_t pad = geo.k / 2, taps = geo.k * geo.k;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t row = idx / geo.d, ch = idx - row * geo.d;
    const int64_t b = row / tokens, s = row - b * tokens, r = s / geo.w, c = s - r * geo.w;
    float acc = 0.0f;
    for (int64_t di = 0; di < geo.k; ++di) {
      const int64_t rr = r - di + pad;
      if (rr < 0 || rr >= geo.h)
        continue;
      for (int64_t dj = 0; dj < geo.k; ++dj) {
        const int64_t cc = c - dj + pad;
        if (cc < 0 || cc >= geo.w)
          continue;
        const float g = toF<T>(dOut[geo.gradRow(b, rr * geo.w + cc) * ldd + ch]);
        acc += toF<T>(weight[ch * taps + di * geo.k + dj]) * g;
      }
    }
    dX[row * ldx + ch] = fromF<T>(acc);
  }
}

constexpr int64_t kConvChunkRows = 128;

int64_t convChunks(int64_t rows) { return (rows + kConvChunkRows - 1) / kConvChunkRows; }

/// Block (x: chunk of rows, y: tap, or taps for the bias, z: channel strip):
/// the chunk's partial sum of g · x(neighbour) (or of g).
template <typename T>
__global__ void convParamPartialKernel(ConvGeometry geo, const T *x, int64_t ldx, const T *dOut,
                                       int64_t ldd, int64_t firstTap, float *part) {
  const int64_t ch = static_cast<int64_t>(blockIdx.z) * blockDim.x + threadIdx.x;
  if (ch >= geo.d)
    return;
  const int64_t chunk = blockIdx.x, tap = blockIdx.y + firstTap, taps = geo.k * geo.k, pad = geo.k / 2;
  const int64_t tokens = geo.h * geo.w, rows = geo.batch * tokens;
  const int64_t r0 = chunk * kConvChunkRows, r1 = min(rows, r0 + kConvChunkRows);
  const bool bias = tap == taps;
  const int64_t di = bias ? 0 : tap / geo.k, dj = bias ? 0 : tap - di * geo.k;
  float acc = 0.0f;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t b = row / tokens, s = row - b * tokens, r = s / geo.w, c = s - r * geo.w;
    const float g = toF<T>(dOut[geo.gradRow(b, s) * ldd + ch]);
    if (bias) {
      acc += g;
      continue;
    }
    const int64_t rr = r + di - pad, cc = c + dj - pad;
    if (rr < 0 || rr >= geo.h || cc < 0 || cc >= geo.w)
      continue;
    acc += g * toF<T>(x[(b * tokens + rr * geo.w + cc) * ldx + ch]);
  }
  part[(chunk * (taps + 1) + tap) * geo.d + ch] = acc;
}

template <typename T>
__global__ void convParamSumKernel(const float *part, int64_t chunks, int64_t taps, int64_t d,
                                   T *dWeight, T *dBias) {
  const int64_t total = (taps + 1) * d;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t tap = idx / d, ch = idx - tap * d;
    if (tap < taps ? dWeight == nullptr : dBias == nullptr)
      continue;
    float s = 0.0f;
    for (int64_t chunk = 0; chunk < chunks; ++chunk)
      s += part[chunk * total + idx];
    if (tap < taps)
      dWeight[ch * taps + tap] = fromF<T>(s);
    else
      dBias[ch] = fromF<T>(s);
  }
}

template <typename T>
__global__ void tokenMeanBackwardKernel(const T *dOut, int64_t ldd, int64_t tokens, int64_t d,
                                        int64_t rows, float inv, T *dX, int64_t ldx) {
  const int64_t total = rows * d;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t row = idx / d, j = idx - row * d;
    dX[row * ldx + j] = fromF<T>(toF<T>(dOut[(row / tokens) * ldd + j]) * inv);
  }
}

void checkOrderD(const char *kernel, ScanOrder order) {
  switch (order) {
  case ScanOrder::RowMajor:
  case ScanOrder::RowMajorReversed:
  case ScanOrder::ColMajor:
  case ScanOrder::ColMajorReversed:
    return;
  }
  fail(kernel, ": unknown scan order ", static_cast<int32_t>(order));
}

} // namespace

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

size_t patchEmbedBackwardWorkspaceBytes(int64_t batch, int64_t c, int64_t height, int64_t width,
                                        int64_t d, int64_t p, DType dtype) {
  (void)dtype;
  if (batch <= 0 || c <= 0 || d <= 0 || p <= 0 || height <= 0 || width <= 0)
    return 0;
  const int64_t rows = batch * (height / p) * (width / p);
  return static_cast<size_t>(patchSplits(rows) * d * (c * p * p + 1)) * sizeof(float);
}

void patchEmbedBackward(Stream stream, Gemm &gemm, DType dtype, const void *x, int64_t batch, int64_t c,
                        int64_t height, int64_t width, const void *weight, int64_t d, int64_t p,
                        DConstMat dOut, void *dX, void *dWeight, void *dBias, Workspace ws) {
  (void)gemm; // the products are too lopsided for cuBLAS to pay off (see the file header)
  const char *kernel = "patchEmbedBackward";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "channels", c);
  checkDPositive(kernel, "d", d);
  checkDPositive(kernel, "patch size", p);
  if (height <= 0 || width <= 0 || height % p != 0 || width % p != 0)
    fail(kernel, ": image ", height, " x ", width, " is not a positive multiple of patch size ", p);
  const int64_t hp = height / p, wp = width / p, tokens = hp * wp, patchLen = c * p * p;
  const int64_t rows = batch * tokens;
  checkDView(kernel, "dOut", dOut, rows, d);
  if (dWeight != nullptr && x == nullptr)
    fail(kernel, ": dWeight is wanted but the image is null");
  if (dX != nullptr && weight == nullptr)
    fail(kernel, ": dX is wanted but the weight is null");
  const PatchGeometry geo{c, height, width, p, wp, tokens, patchLen};
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t s = native(stream);
    if (dWeight != nullptr || dBias != nullptr) {
      const int64_t splits = patchSplits(rows);
      // Columns [first, patchLen]: the weight's entries and the bias column,
      // or the bias column alone.
      const int64_t first = dWeight != nullptr ? 0 : patchLen;
      const int64_t n = (dBias != nullptr ? patchLen + 1 : patchLen) - first;
      const size_t need = static_cast<size_t>(splits * d * n) * sizeof(float);
      const size_t needed = patchEmbedBackwardWorkspaceBytes(batch, c, height, width, d, p, dtype);
      if (ws.data == nullptr || ws.bytes < need)
        fail(kernel, ": workspace of ", ws.bytes, " bytes is too small, ", needed,
             " bytes needed");
      float *part = static_cast<float *>(ws.data);
      launchTiledProduct<false>(s, kernel, d, n, rows, splits,
                                DOutTransposed<T>{static_cast<const T *>(dOut.data), dOut.ld},
                                PatchColumns<T>{static_cast<const T *>(x), geo, first},
                                StorePartial{part, d, n});
      patchWeightSumKernel<T><<<gridStrideBlocks(d * n, kThreads), kThreads, 0, s>>>(
          part, splits, d, n, first, patchLen, static_cast<T *>(dWeight), static_cast<T *>(dBias));
      checkLaunch(kernel);
    }
    if (dX != nullptr)
      launchTiledProduct<true>(s, kernel, rows, patchLen, d, 1,
                               DOutRows<T>{static_cast<const T *>(dOut.data), dOut.ld},
                               WeightRows<T>{static_cast<const T *>(weight), patchLen},
                               ScatterPixels<T>{static_cast<T *>(dX), geo});
  });
}

void unpatchifyBackward(Stream stream, DType dtype, const void *dOut, int64_t batch, int64_t h, int64_t w,
                        int64_t p, int64_t c, DMat dX) {
  const char *kernel = "unpatchifyBackward";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "h", h);
  checkDPositive(kernel, "w", w);
  checkDPositive(kernel, "patch size", p);
  checkDPositive(kernel, "channels", c);
  checkDView(kernel, "dX", dX, batch * h * w, p * p * c);
  if (dOut == nullptr)
    fail(kernel, ": null dOut");
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    const int64_t total = batch * h * w * p * p * c;
    unpatchifyBackwardKernel<T><<<gridStrideBlocks(total, kThreads), kThreads, 0, native(stream)>>>(
        static_cast<const T *>(dOut), batch, h, w, p, c, static_cast<T *>(dX.data), dX.ld);
    checkLaunch(kernel);
  });
}

void labelEmbedBackward(Stream stream, DType dtype, const int32_t *labels, int64_t batch, int64_t numClasses,
                        int64_t d, DConstMat dOut, void *dTable) {
  const char *kernel = "labelEmbedBackward";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "numClasses", numClasses);
  checkDPositive(kernel, "d", d);
  checkDView(kernel, "dOut", dOut, batch, d);
  if (labels == nullptr || dTable == nullptr)
    fail(kernel, ": null labels or table gradient");
  if (numClasses + 1 > 65535)
    fail(kernel, ": ", numClasses + 1, " table rows exceed the 65535 of one grid dimension");
  // Labels outside [0, numClasses] (which the forward flags) match no row
  // and contribute nothing.
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    const dim3 grid(blocksFor(d, kThreads), static_cast<unsigned>(numClasses + 1));
    labelEmbedBackwardKernel<T><<<grid, kThreads, 0, native(stream)>>>(
        labels, batch, d, static_cast<const T *>(dOut.data), dOut.ld, static_cast<T *>(dTable));
    checkLaunch(kernel);
  });
}

size_t depthwiseConvBackwardWorkspaceBytes(int64_t batch, int64_t h, int64_t w, int64_t channels,
                                           int64_t k) {
  if (batch <= 0 || h <= 0 || w <= 0 || channels <= 0 || k <= 0)
    return 0;
  return static_cast<size_t>(convChunks(batch * h * w) * (k * k + 1) * channels) * sizeof(float);
}

void depthwiseConvBackward(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                           const void *weight, int64_t k, ScanOrder from, ScanOrder to, DConstMat dOut,
                           DMat dX, void *dWeight, void *dBias, Workspace ws) {
  const char *kernel = "depthwiseConvBackward";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "h", h);
  checkDPositive(kernel, "w", w);
  checkDPositive(kernel, "k", k);
  if (k % 2 == 0)
    fail(kernel, ": kernel size ", k, " is even; 'same' padding k/2 needs an odd size");
  checkOrderD(kernel, from);
  checkOrderD(kernel, to);
  const int64_t tokens = h * w, d = x.cols, taps = k * k, rows = batch * tokens;
  checkDView(kernel, "x", x, rows, d);
  checkDView(kernel, "dOut", dOut, rows, d);
  const size_t es = dtypeSize(dtype);
  if (dX.data != nullptr) {
    checkDView(kernel, "dX", dX, rows, d);
    if (weight == nullptr)
      fail(kernel, ": dX is wanted but the weight is null");
    if (overlapsD(dX, x, es) || overlapsD(dX, dOut, es))
      fail(kernel, ": dX overlaps x or dOut");
  }
  const bool wantParams = dWeight != nullptr || dBias != nullptr;
  const int64_t chunks = convChunks(rows);
  if (wantParams) {
    const size_t need = depthwiseConvBackwardWorkspaceBytes(batch, h, w, d, k);
    if (ws.data == nullptr || ws.bytes < need)
      fail(kernel, ": workspace of ", ws.bytes, " bytes is too small, ", need, " bytes needed");
    if (chunks > 0x7fffffff || taps + 1 > 65535 || (d + kThreads - 1) / kThreads > 65535)
      fail(kernel, ": ", rows, " rows, kernel size ", k, " and ", d,
           " channels exceed the grid of the parameter pass");
  }
  if (rows == 0 || d == 0)
    return;
  const ConvGeometry geo{batch, h, w, k, d, static_cast<int>(from), static_cast<int>(to)};
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t s = native(stream);
    if (dX.data != nullptr) {
      convInputGradKernel<T><<<gridStrideBlocks(rows * d, kThreads), kThreads, 0, s>>>(
          geo, static_cast<const T *>(weight), static_cast<const T *>(dOut.data), dOut.ld,
          static_cast<T *>(dX.data), dX.ld);
      checkLaunch(kernel);
    }
    if (!wantParams)
      return;
    float *part = static_cast<float *>(ws.data);
    // The weight taps are skipped when only the bias is wanted.
    const int64_t firstTap = dWeight != nullptr ? 0 : taps;
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(taps + 1 - firstTap),
                    static_cast<unsigned>((d + kThreads - 1) / kThreads));
    convParamPartialKernel<T><<<grid, kThreads, 0, s>>>(geo, static_cast<const T *>(x.data), x.ld,
                                                        static_cast<const T *>(dOut.data), dOut.ld,
                                                        firstTap, part);
    checkLaunch(kernel);
    convParamSumKernel<T><<<gridStrideBlocks((taps + 1) * d, kThreads), kThreads, 0, s>>>(
        part, chunks, taps, d, static_cast<T *>(dWeight), static_cast<T *>(dBias));
    checkLaunch(kernel);
  });
}

void tokenMeanBackward(Stream stream, DType dtype, DConstMat dOut, int64_t batch, int64_t tokens, DMat dX) {
  const char *kernel = "tokenMeanBackward";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "tokens", tokens);
  const int64_t d = dOut.cols;
  checkDView(kernel, "dOut", dOut, batch, d);
  checkDView(kernel, "dX", dX, batch * tokens, d);
  if (overlapsD(dX, dOut, dtypeSize(dtype)))
    fail(kernel, ": dX overlaps dOut");
  if (d == 0)
    return;
  // The forward multiplies the float sum by 1/tokens; so does this.
  const float inv = 1.0f / static_cast<float>(tokens);
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    const int64_t rows = batch * tokens;
    tokenMeanBackwardKernel<T><<<gridStrideBlocks(rows * d, kThreads), kThreads, 0, native(stream)>>>(
        static_cast<const T *>(dOut.data), dOut.ld, tokens, d, rows, inv, static_cast<T *>(dX.data),
        dX.ld);
    checkLaunch(kernel);
  });
}

//===----------------------------------------------------------------------===//
// split backward: one launch for all parts (the adaLN split has six small
// parts; a copy per part cost more in launches than in bytes)
//===----------------------------------------------------------------------===//

namespace {

constexpr int kMaxSplitParts = 16;

template <typename T> struct SplitParts {
  const T *data[kMaxSplitParts];
  int64_t ld[kMaxSplitParts];
};

/// Block (x: a strip of one part's columns, y: rows by grid stride); each
/// thread copies V consecutive elements, as one 16-byte access when every
/// view allows it (the q/k/v gradients of DiT-XL are 28M values per call).
template <typename T, int V>
__global__ void splitBackwardKernel(SplitParts<T> parts, int64_t partCols, int64_t stripsPerPart, int64_t rows,
                                    T *whole, int64_t ld) {
  const int64_t part = blockIdx.x / stripsPerPart, strip = blockIdx.x - part * stripsPerPart;
  const int64_t c = (strip * blockDim.x + threadIdx.x) * V;
  if (c >= partCols)
    return;
  const T *src = parts.data[part];
  const int64_t lds = parts.ld[part];
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    if constexpr (V > 1) {
      *reinterpret_cast<uint4 *>(whole + r * ld + part * partCols + c) =
          *reinterpret_cast<const uint4 *>(src + r * lds + c);
    } else {
      whole[r * ld + part * partCols + c] = src[r * lds + c];
    }
  }
}

} // namespace

void splitBackward(Stream stream, DType dtype, const DConstMat *parts, int count, DMat whole) {
  const char *kernel = "splitBackward";
  if (count < 1 || count > kMaxSplitParts)
    fail(kernel, ": ", count, " parts; one launch takes 1 to ", kMaxSplitParts);
  if (whole.cols % count != 0)
    fail(kernel, ": ", whole.cols, " columns do not split into ", count, " parts");
  const int64_t partCols = whole.cols / count;
  checkDView(kernel, "whole", whole, whole.rows, whole.cols);
  for (int i = 0; i < count; ++i)
    checkDView(kernel, "part", parts[i], whole.rows, partCols);
  if (whole.rows == 0 || whole.cols == 0)
    return;
  // Parts already in place (the memory plan can have their kernel write
  // them as column views of the whole) need no copy.
  const size_t es = dtypeSize(dtype);
  bool allInPlace = true;
  for (int i = 0; i < count; ++i)
    allInPlace &= parts[i].data == static_cast<const uint8_t *>(whole.data) + i * partCols * es &&
                  parts[i].ld == whole.ld;
  if (allInPlace)
    return;
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    SplitParts<T> p{};
    for (int i = 0; i < count; ++i) {
      p.data[i] = static_cast<const T *>(parts[i].data);
      p.ld[i] = parts[i].ld;
    }
    constexpr int kV = static_cast<int>(16 / sizeof(T));
    bool vec = partCols % kV == 0 && whole.ld % kV == 0 && aligned16(whole.data);
    for (int i = 0; i < count; ++i)
      vec = vec && parts[i].ld % kV == 0 && aligned16(parts[i].data);
    const int v = vec ? kV : 1;
    const int64_t strips = (partCols + int64_t(kThreads) * v - 1) / (int64_t(kThreads) * v);
    const dim3 grid(static_cast<unsigned>(strips * count), static_cast<unsigned>(std::min<int64_t>(whole.rows, 65535)));
    if (vec)
      splitBackwardKernel<T, kV><<<grid, kThreads, 0, native(stream)>>>(p, partCols, strips, whole.rows,
                                                                         static_cast<T *>(whole.data), whole.ld);
    else
      splitBackwardKernel<T, 1><<<grid, kThreads, 0, native(stream)>>>(p, partCols, strips, whole.rows,
                                                                        static_cast<T *>(whole.data), whole.ld);
    checkLaunch(kernel);
  });
}

} // namespace diffrt::cuda
