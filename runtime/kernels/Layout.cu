//===- Layout.cu - token layout kernels -----------------------------------===//
//
// Kernels that move tokens between layouts: DiG's scan-order changes and its
// depth-wise convolution (which writes straight into the next block's scan
// order), unpatchify from token rows to NCHW images, MicroDiT's token
// masking and unmasking, and the mean over the tokens of each sample.
//
// Row moves copy 16-byte vectors when the views allow it (bit-exact, no
// conversion) and single elements otherwise. Index checks cannot throw on
// the device: a kernel records the first invalid or repeated kept-token
// index in the caller's error flag (codes in Common.cuh), writes zeros
// where the index was invalid and never reads outside the input.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;

/// Copies N elements (16-byte vectors when N is a whole number of them).
template <int N, typename T> __device__ __forceinline__ void copyN(const T *src, T *dst) {
  if constexpr (N % kVec<T> == 0) {
#pragma unroll
    for (int v = 0; v < N / kVec<T>; ++v)
      reinterpret_cast<uint4 *>(dst)[v] = reinterpret_cast<const uint4 *>(src)[v];
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i)
      dst[i] = src[i];
  }
}

template <int N, typename T> __device__ __forceinline__ void zeroN(T *dst) {
  if constexpr (N % kVec<T> == 0) {
#pragma unroll
    for (int v = 0; v < N / kVec<T>; ++v)
      reinterpret_cast<uint4 *>(dst)[v] = make_uint4(0, 0, 0, 0);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i)
      dst[i] = fromF<T>(0.0f);
  }
}

//===----------------------------------------------------------------------===//
// Scan orders (the same maps as runtime/cpu/Layout.cpp)
//===----------------------------------------------------------------------===//

__device__ __forceinline__ int64_t positionOf(int order, int64_t h, int64_t w, int64_t r,
                                              int64_t c) {
  switch (order) {
  case 0: return r * w + c;
  case 1: return h * w - 1 - (r * w + c);
  case 2: return c * h + r;
  default: return h * w - 1 - (c * h + r);
  }
}

/// Position in order `to` of the token at position s in order `from`.
__device__ __forceinline__ int64_t permuted(int from, int to, int64_t h, int64_t w, int64_t s) {
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
  return positionOf(to, h, w, r, c);
}

void checkOrder(const char *kernel, ScanOrder order) {
  switch (order) {
  case ScanOrder::RowMajor:
  case ScanOrder::RowMajorReversed:
  case ScanOrder::ColMajor:
  case ScanOrder::ColMajorReversed:
    return;
  }
  fail(kernel, ": unknown scan order ", static_cast<int32_t>(order));
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

template <typename T, int N>
__global__ void reorderKernel(const T *x, int64_t ldx, T *out, int64_t ldo, int64_t rows,
                              int64_t d, int64_t h, int64_t w, int from, int to) {
  const int64_t perRow = d / N, total = rows * perRow, tokens = h * w;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t row = g / perRow, c = (g - row * perRow) * N;
    const int64_t b = row / tokens, s = row - b * tokens;
    copyN<N>(x + row * ldx + c, out + (b * tokens + permuted(from, to, h, w, s)) * ldo + c);
  }
}

/// Depth-wise k x k convolution. Block (·, y) covers channels
/// [y·chunk, y·chunk + chunk): it stages their weights tap-major in f32
/// shared memory (so a thread's N channels of one tap are contiguous) and
/// the bias, then walks (token, channel vector) items of that chunk.
template <typename T, int N>
__global__ void __launch_bounds__(kThreads)
    dwconvKernel(const T *x, int64_t ldx, const T *weight, const T *bias, T *out, int64_t ldo,
                 int64_t rows, int64_t d, int64_t h, int64_t w, int k, int from, int to,
                 int chunk) {
  extern __shared__ float4 dwSmem[]; // float4 for the alignment of the vector reads
  float *wt = reinterpret_cast<float *>(dwSmem);
  const int taps = k * k, pad = k / 2;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * chunk;
  const int width = static_cast<int>(d - c0 < chunk ? d - c0 : chunk);
  float *bs = wt + static_cast<int64_t>(taps) * chunk;
  for (int i = threadIdx.x; i < taps * width; i += blockDim.x) {
    const int tap = i / width, cc = i - tap * width;
    wt[tap * chunk + cc] = toF<T>(weight[(c0 + cc) * taps + tap]);
  }
  for (int cc = threadIdx.x; cc < width; cc += blockDim.x)
    bs[cc] = bias != nullptr ? toF<T>(bias[c0 + cc]) : 0.0f;
  __syncthreads();

  const int64_t perToken = width / N, total = rows * perToken, tokens = h * w;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t row = g / perToken;
    const int cc = static_cast<int>(g - row * perToken) * N;
    const int64_t b = row / tokens, s = row - b * tokens;
    const int64_t r = s / w, c = s - r * w;
    float acc[N];
#pragma unroll
    for (int e = 0; e < N; ++e)
      acc[e] = bs[cc + e];
    for (int di = 0; di < k; ++di) {
      const int64_t rr = r + di - pad;
      if (rr < 0 || rr >= h)
        continue;
      for (int dj = 0; dj < k; ++dj) {
        const int64_t cl = c + dj - pad;
        if (cl < 0 || cl >= w)
          continue;
        float xv[N];
        loadN<N>(x + (b * tokens + rr * w + cl) * ldx + c0 + cc, xv);
        const float *wk = wt + (di * k + dj) * chunk + cc;
        if constexpr (N % 4 == 0) {
#pragma unroll
          for (int q = 0; q < N / 4; ++q) {
            const float4 wv = reinterpret_cast<const float4 *>(wk)[q];
            acc[4 * q + 0] += wv.x * xv[4 * q + 0];
            acc[4 * q + 1] += wv.y * xv[4 * q + 1];
            acc[4 * q + 2] += wv.z * xv[4 * q + 2];
            acc[4 * q + 3] += wv.w * xv[4 * q + 3];
          }
        } else {
#pragma unroll
          for (int e = 0; e < N; ++e)
            acc[e] += wk[e] * xv[e];
        }
      }
    }
    storeN<N>(out + (b * tokens + permuted(from, to, h, w, s)) * ldo + c0 + cc, acc);
  }
}

/// Four consecutive channels: one 16-byte access for f32, 8 bytes for the
/// 16-bit types (p aligned accordingly).
template <typename T> __device__ __forceinline__ void load4(const T *p, float (&f)[4]) {
  if constexpr (sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4 *>(p);
    f[0] = v.x;
    f[1] = v.y;
    f[2] = v.z;
    f[3] = v.w;
  } else {
    const uint2 raw = *reinterpret_cast<const uint2 *>(p);
    unpackWord<T>(raw.x, f[0], f[1]);
    unpackWord<T>(raw.y, f[2], f[3]);
  }
}
template <typename T> __device__ __forceinline__ void store4(T *p, const float (&f)[4]) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4 *>(p) = make_float4(f[0], f[1], f[2], f[3]);
  } else {
    *reinterpret_cast<uint2 *>(p) = make_uint2(packWord<T>(f[0], f[1]), packWord<T>(f[2], f[3]));
  }
}

/// The 3 x 3 case (DiG's convolution) on aligned views: each thread keeps
/// the 9 taps of its 4 channels and their bias in registers (no weight is
/// re-read from shared memory) and produces a strip of kStrip vertically
/// adjacent outputs of one grid column, so each input vector is loaded
/// (kStrip + 2) · 3 / kStrip = 6 times per output instead of 9. Threads
/// along x take consecutive channel groups of the same tokens (coalesced).
/// Four channels per thread rather than a 16-byte vector, and strips of 2,
/// keep the kernel within the 80 registers that let three blocks of 256
/// threads stay resident: the kernel waits on its loads (long-scoreboard
/// stalls dominate in Nsight Compute), so resident warps are what matter;
/// strips of 4 loaded less but, at 124 registers, took about 18% longer.
/// Measured on an H100 (bf16, 256 x 16 x 16 tokens x 1152 channels): about
/// 0.37 ms, 0.8 TB/s of the minimum traffic.
constexpr int kStrip = 2, kDwCols = 32, kDwRows = 8;

template <typename T, typename Index>
__global__ void __launch_bounds__(kDwCols *kDwRows, 3)
    dwconv3Kernel(const T *x, int64_t ldx, const T *weight, const T *bias, T *out, int64_t ldo,
                  int64_t batch, int64_t d, int64_t h, int64_t w, int from, int to) {
  constexpr int N = 4;
  const int64_t cg = static_cast<int64_t>(blockIdx.y) * kDwCols + threadIdx.x;
  if (cg * N >= d)
    return; // no barriers below: idle lanes may leave
  const int64_t ch0 = cg * N;
  float wt[9][N], bs[N];
#pragma unroll
  for (int e = 0; e < N; ++e) {
#pragma unroll
    for (int tap = 0; tap < 9; ++tap)
      wt[tap][e] = toF<T>(weight[(ch0 + e) * 9 + tap]);
    bs[e] = bias != nullptr ? toF<T>(bias[ch0 + e]) : 0.0f;
  }
  const int64_t tokens = h * w, rowStep = w * ldx;
  // Strip decoding in Index (int32 when the strip count allows): 64-bit
  // divisions are software routines that would dominate this loop.
  const Index wI = static_cast<Index>(w);
  const Index stripsPerCol = static_cast<Index>((h + kStrip - 1) / kStrip);
  const Index strips = static_cast<Index>(batch) * stripsPerCol * wI;
  const Index stride = static_cast<Index>(gridDim.x) * kDwRows;
  for (Index sidx = static_cast<Index>(blockIdx.x) * kDwRows + threadIdx.y; sidx < strips;
       sidx += stride) {
    const Index q1 = sidx / wI, q2 = q1 / stripsPerCol;
    const int64_t c = sidx - q1 * wI, r0 = static_cast<int64_t>(q1 - q2 * stripsPerCol) * kStrip;
    const int64_t b = q2;
    // Input (r0 - 1 + q, c - 1 + dj) is xs + q·rowStep + dj·ldx.
    const T *xs = x + ((b * tokens + (r0 - 1) * w + c - 1) * ldx + ch0);
    float acc[kStrip][N];
#pragma unroll
    for (int o = 0; o < kStrip; ++o)
#pragma unroll
      for (int e = 0; e < N; ++e)
        acc[o][e] = bs[e];
    // Input row r0 - 1 + q feeds output row r0 + o through tap row q - o.
#pragma unroll
    for (int q = 0; q < kStrip + 2; ++q) {
      const int64_t rr = r0 - 1 + q;
      if (rr < 0 || rr >= h)
        continue;
#pragma unroll
      for (int dj = 0; dj < 3; ++dj) {
        const int64_t cl = c + dj - 1;
        if (cl < 0 || cl >= w)
          continue;
        float xv[N];
        load4<T>(xs + q * rowStep + dj * ldx, xv);
#pragma unroll
        for (int o = 0; o < kStrip; ++o) {
          const int di = q - o;
          if (di < 0 || di > 2)
            continue;
#pragma unroll
          for (int e = 0; e < N; ++e)
            acc[o][e] += wt[di * 3 + dj][e] * xv[e];
        }
      }
    }
#pragma unroll
    for (int o = 0; o < kStrip; ++o) {
      const int64_t r = r0 + o;
      if (r < h) {
        const int64_t s = r * w + c;
        store4<T>(out + (b * tokens + permuted(from, to, h, w, s)) * ldo + ch0, acc[o]);
      }
    }
  }
}

/// One output element per step: pixel (b, ch, y, xx) of the NCHW image
/// comes from token (b, y / p, xx / p), column ((y % p)·p + xx % p)·c + ch.
/// Index is int32_t when the image fits, which keeps the divisions cheap.
template <typename T, typename Index>
__global__ void unpatchifyKernel(const T *x, int64_t ldx, T *out, Index batch, Index h, Index w,
                                 Index p, Index c) {
  const Index width = w * p, height = h * p;
  const Index total = batch * c * height * width;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index idx = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const Index xx = idx % width;
    const Index rest = idx / width;
    const Index y = rest % height;
    const Index rest2 = rest / height;
    const Index ch = rest2 % c, b = rest2 / c;
    const Index r = y / p, i = y - r * p, col = xx / p, j = xx - col * p;
    const int64_t token = (static_cast<int64_t>(b) * h + r) * w + col;
    out[idx] = x[token * ldx + (i * p + j) * c + ch];
  }
}

/// Per sample (block): marks each kept index in a shared bitmap; an index
/// outside [0, tokens) or seen twice raises the error flag.
__global__ void validateKeepKernel(const int32_t *keep, int64_t tokens, int64_t kept,
                                   int32_t *errorFlag) {
  extern __shared__ unsigned seen[];
  const int64_t words = (tokens + 31) / 32, b = blockIdx.x;
  for (int64_t i = threadIdx.x; i < words; i += blockDim.x)
    seen[i] = 0u;
  __syncthreads();
  for (int64_t j = threadIdx.x; j < kept; j += blockDim.x) {
    const int32_t idx = keep[b * kept + j];
    if (idx < 0 || idx >= tokens) {
      raiseIndexError(errorFlag, kIndexOutOfRange);
      continue;
    }
    const unsigned bit = 1u << (idx & 31);
    if (atomicOr(&seen[idx >> 5], bit) & bit)
      raiseIndexError(errorFlag, kIndexRepeated);
  }
}

/// out[b·kept + j] = x[b·tokens + keep[b·kept + j]]; zeros for an invalid
/// index (reported by validateKeepKernel).
template <typename T, int N>
__global__ void maskKernel(const T *x, int64_t ldx, const int32_t *keep, T *out, int64_t ldo,
                           int64_t rows, int64_t d, int64_t tokens, int64_t kept) {
  const int64_t perRow = d / N, total = rows * perRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t row = g / perRow, c = (g - row * perRow) * N;
    const int32_t idx = keep[row];
    T *dst = out + row * ldo + c;
    if (idx < 0 || idx >= tokens)
      zeroN<N>(dst);
    else
      copyN<N>(x + ((row / kept) * tokens + idx) * ldx + c, dst);
  }
}

/// Unmasking, block (chunk, sample): builds the sample's inverse map (token
/// -> kept slot or -1) in shared memory from the kept indices, then writes
/// every output row of its chunk of tokens exactly once, copied or zero.
template <typename T, int N>
__global__ void unmaskKernel(const T *x, int64_t ldx, const int32_t *keep, T *out, int64_t ldo,
                             int64_t d, int64_t tokens, int64_t kept, int64_t rowsPerBlock) {
  extern __shared__ int32_t slot[];
  const int64_t b = blockIdx.y;
  for (int64_t t = threadIdx.x; t < tokens; t += blockDim.x)
    slot[t] = -1;
  __syncthreads();
  for (int64_t j = threadIdx.x; j < kept; j += blockDim.x) {
    const int32_t idx = keep[b * kept + j];
    if (idx >= 0 && idx < tokens)
      slot[idx] = static_cast<int32_t>(j); // a repeat was flagged; either copy is written
  }
  __syncthreads();
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * rowsPerBlock;
  const int64_t t1 = t0 + rowsPerBlock < tokens ? t0 + rowsPerBlock : tokens;
  const int64_t perRow = d / N, total = (t1 - t0) * perRow;
  for (int64_t g = threadIdx.x; g < total; g += blockDim.x) {
    const int64_t t = t0 + g / perRow, c = (g % perRow) * N;
    T *dst = out + (b * tokens + t) * ldo + c;
    const int32_t j = slot[t];
    if (j < 0)
      zeroN<N>(dst);
    else
      copyN<N>(x + (b * kept + j) * ldx + c, dst);
  }
}

/// Unmasking for sequences too long for the shared inverse map: zero every
/// row (zeroRowsKernel), then scatter the kept rows (this kernel).
template <typename T, int N>
__global__ void scatterKeptKernel(const T *x, int64_t ldx, const int32_t *keep, T *out,
                                  int64_t ldo, int64_t rows, int64_t d, int64_t tokens,
                                  int64_t kept) {
  const int64_t perRow = d / N, total = rows * perRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t row = g / perRow, c = (g - row * perRow) * N;
    const int32_t idx = keep[row];
    if (idx >= 0 && idx < tokens)
      copyN<N>(x + row * ldx + c, out + ((row / kept) * tokens + idx) * ldo + c);
  }
}

template <typename T, int N>
__global__ void zeroRowsKernel(T *out, int64_t ldo, int64_t rows, int64_t d) {
  const int64_t perRow = d / N, total = rows * perRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t row = g / perRow, c = (g - row * perRow) * N;
    zeroN<N>(out + row * ldo + c);
  }
}

/// Mean over the tokens of each sample. Block (column chunk, sample) of
/// kMeanCols x kMeanRows threads: thread (cx, ty) sums tokens ty, ty +
/// kMeanRows, ... of one column vector; the kMeanRows partial sums are then
/// added in a fixed order, so the result does not depend on timing.
constexpr int kMeanCols = 32, kMeanRows = 16;

template <typename T, int N>
__global__ void __launch_bounds__(kMeanCols *kMeanRows)
    tokenMeanKernel(const T *x, int64_t ldx, T *out, int64_t ldo, int64_t tokens, int64_t d,
                    float inv) {
  __shared__ float part[kMeanRows][kMeanCols * N];
  const int64_t b = blockIdx.y;
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * kMeanCols + threadIdx.x) * N;
  const bool valid = c < d;
  float acc[N];
#pragma unroll
  for (int e = 0; e < N; ++e)
    acc[e] = 0.0f;
  if (valid)
    for (int64_t t = threadIdx.y; t < tokens; t += kMeanRows) {
      float v[N];
      loadN<N>(x + (b * tokens + t) * ldx + c, v);
#pragma unroll
      for (int e = 0; e < N; ++e)
        acc[e] += v[e];
    }
#pragma unroll
  for (int e = 0; e < N; ++e)
    part[threadIdx.y][threadIdx.x * N + e] = acc[e];
  __syncthreads();
  if (threadIdx.y == 0 && valid) {
    for (int y = 1; y < kMeanRows; ++y)
#pragma unroll
      for (int e = 0; e < N; ++e)
        acc[e] += part[y][threadIdx.x * N + e];
#pragma unroll
    for (int e = 0; e < N; ++e)
      acc[e] *= inv;
    storeN<N>(out + b * ldo + c, acc);
  }
}

/// Shared memory a block may use after opting in (227 KB on Hopper).
size_t maxDynamicSmem() {
  int device = 0, bytes = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "shared memory limit");
  return static_cast<size_t>(bytes);
}

template <typename K> void allowSmem(K kernel, size_t bytes, const char *what) {
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(bytes)),
          what);
}

void checkKeepArgs(const char *kernel, const int32_t *keep, int64_t batch, int64_t tokens,
                   int64_t kept) {
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "tokens", tokens);
  if (kept < 0 || kept > tokens)
    fail(kernel, ": kept count ", kept, " is outside [0, ", tokens, "]");
  if (keep == nullptr && kept > 0)
    fail(kernel, ": null keep indices");
  if (tokens > INT32_MAX)
    fail(kernel, ": ", tokens, " tokens exceed the int32 index range");
}

void launchValidateKeep(const char *kernel, Stream stream, const int32_t *keep, int64_t batch,
                        int64_t tokens, int64_t kept, int32_t *errorFlag) {
  if (kept == 0)
    return;
  const size_t bytes = static_cast<size_t>((tokens + 31) / 32) * sizeof(unsigned);
  if (bytes > maxDynamicSmem())
    fail(kernel, ": ", tokens, " tokens per sample exceed the shared-memory bitmap of the index "
         "check (", bytes, " bytes)");
  allowSmem(validateKeepKernel, bytes, kernel);
  validateKeepKernel<<<static_cast<unsigned>(batch), kThreads, bytes, native(stream)>>>(
      keep, tokens, kept, errorFlag);
  checkLaunch(kernel);
}

/// Whether a view of T can be moved in 16-byte vectors.
template <typename T> bool vecView(const void *data, int64_t ld, int64_t cols) {
  return vectorizable(data, ld, cols, sizeof(T));
}

} // namespace

void reorderTokens(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                   ScanOrder from, ScanOrder to, DMat out) {
  const char *kernel = "reorderTokens";
  checkOrder(kernel, from);
  checkOrder(kernel, to);
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "h", h);
  checkDPositive(kernel, "w", w);
  const int64_t rows = batch * h * w, d = x.cols;
  checkDView(kernel, "x", x, rows, d);
  checkDView(kernel, "out", out, rows, d);
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    if (overlapsD(x, out, sizeof(T)))
      fail(kernel, ": out overlaps x");
    if (d == 0)
      return;
    constexpr int V = kVec<T>;
    const T *src = static_cast<const T *>(x.data);
    T *dst = static_cast<T *>(out.data);
    const int f = static_cast<int>(from), t = static_cast<int>(to);
    if (vecView<T>(src, x.ld, d) && vecView<T>(dst, out.ld, d))
      reorderKernel<T, V><<<gridStrideBlocks(rows * (d / V), kThreads), kThreads, 0,
                            native(stream)>>>(src, x.ld, dst, out.ld, rows, d, h, w, f, t);
    else
      reorderKernel<T, 1><<<gridStrideBlocks(rows * d, kThreads), kThreads, 0, native(stream)>>>(
          src, x.ld, dst, out.ld, rows, d, h, w, f, t);
    checkLaunch(kernel);
  });
}

void depthwiseConv(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                   const void *weight, const void *bias, int64_t k, ScanOrder from, ScanOrder to,
                   DMat out) {
  const char *kernel = "depthwiseConv";
  checkOrder(kernel, from);
  checkOrder(kernel, to);
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "h", h);
  checkDPositive(kernel, "w", w);
  checkDPositive(kernel, "k", k);
  if (k % 2 == 0)
    fail(kernel, ": kernel size ", k, " is even; 'same' padding k/2 needs an odd size");
  const int64_t rows = batch * h * w, d = x.cols, taps = k * k;
  checkDView(kernel, "x", x, rows, d);
  checkDView(kernel, "out", out, rows, d);
  if (weight == nullptr)
    fail(kernel, ": null weight");
  // Shared memory per block: taps weights and one bias per channel of the
  // chunk, f32, within the default 48 KB.
  constexpr int64_t kSmemFloats = 48 * 1024 / 4;
  if (taps + 1 > kSmemFloats)
    fail(kernel, ": kernel size ", k, " is too large for the shared-memory weight tile");
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    if (overlapsD(x, out, sizeof(T)))
      fail(kernel, ": out overlaps x");
    if (d == 0)
      return;
    constexpr int V = kVec<T>;
    const T *src = static_cast<const T *>(x.data);
    T *dst = static_cast<T *>(out.data);
    const T *wt = static_cast<const T *>(weight), *bs = static_cast<const T *>(bias);
    const int f = static_cast<int>(from), t = static_cast<int>(to);
    if (k == 3 && vecView<T>(src, x.ld, d) && vecView<T>(dst, out.ld, d)) {
      const int64_t groups = d / 4; // d is a whole number of 16-byte vectors
      const int64_t strips = batch * ((h + kStrip - 1) / kStrip) * w;
      const int64_t colBlocks = (groups + kDwCols - 1) / kDwCols;
      if (colBlocks > 65535)
        fail(kernel, ": ", d, " channels exceed one launch");
      const int64_t perSm = 2048 / (kDwCols * kDwRows);
      int64_t bx = (strips + kDwRows - 1) / kDwRows;
      const int64_t cap = multiprocessorCount() * perSm / colBlocks + 1;
      bx = bx < cap ? bx : cap;
      dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(colBlocks));
      if (strips + bx * kDwRows < INT32_MAX)
        dwconv3Kernel<T, int32_t><<<grid, dim3(kDwCols, kDwRows), 0, native(stream)>>>(
            src, x.ld, wt, bs, dst, out.ld, batch, d, h, w, f, t);
      else
        dwconv3Kernel<T, int64_t><<<grid, dim3(kDwCols, kDwRows), 0, native(stream)>>>(
            src, x.ld, wt, bs, dst, out.ld, batch, d, h, w, f, t);
      checkLaunch(kernel);
      return;
    }
    int64_t fit = kSmemFloats / (taps + 1); // channels whose weights fit
    const bool vec = fit >= V && vecView<T>(src, x.ld, d) && vecView<T>(dst, out.ld, d);
    const int n = vec ? V : 1;
    // A chunk is a whole number of vectors, and of 4 channels so that the
    // float4 weight reads stay aligned.
    const int64_t unit = n < 4 ? 4 : n;
    int64_t chunk = d < fit ? d : fit;
    chunk = (chunk + unit - 1) / unit * unit;
    if (chunk > fit)
      chunk = fit / unit * unit > 0 ? fit / unit * unit : fit;
    const int64_t chunks = (d + chunk - 1) / chunk;
    if (chunks > 65535)
      fail(kernel, ": ", d, " channels need more than 65535 channel chunks");
    const size_t smem = static_cast<size_t>((taps + 1) * chunk) * sizeof(float);
    const int64_t work = rows * ((chunk + n - 1) / n);
    const unsigned bx = gridStrideBlocks(work, kThreads, static_cast<int>(8 / chunks > 0 ? 8 / chunks : 1));
    dim3 grid(bx, static_cast<unsigned>(chunks));
    if (vec)
      dwconvKernel<T, V><<<grid, kThreads, smem, native(stream)>>>(
          src, x.ld, wt, bs, dst, out.ld, rows, d, h, w, static_cast<int>(k), f, t,
          static_cast<int>(chunk));
    else
      dwconvKernel<T, 1><<<grid, kThreads, smem, native(stream)>>>(
          src, x.ld, wt, bs, dst, out.ld, rows, d, h, w, static_cast<int>(k), f, t,
          static_cast<int>(chunk));
    checkLaunch(kernel);
  });
}

void unpatchify(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                int64_t p, int64_t c, void *out) {
  const char *kernel = "unpatchify";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "h", h);
  checkDPositive(kernel, "w", w);
  checkDPositive(kernel, "patch size", p);
  checkDPositive(kernel, "channels", c);
  checkDView(kernel, "x", x, batch * h * w, p * p * c);
  if (out == nullptr)
    fail(kernel, ": null output");
  const int64_t total = batch * c * h * p * w * p;
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    const T *src = static_cast<const T *>(x.data);
    T *dst = static_cast<T *>(out);
    const unsigned blocks = gridStrideBlocks(total, kThreads);
    if (total + static_cast<int64_t>(blocks) * kThreads < INT32_MAX)
      unpatchifyKernel<T, int32_t><<<blocks, kThreads, 0, native(stream)>>>(
          src, x.ld, dst, static_cast<int32_t>(batch), static_cast<int32_t>(h),
          static_cast<int32_t>(w), static_cast<int32_t>(p), static_cast<int32_t>(c));
    else
      unpatchifyKernel<T, int64_t><<<blocks, kThreads, 0, native(stream)>>>(src, x.ld, dst, batch,
                                                                             h, w, p, c);
    checkLaunch(kernel);
  });
}

void maskTokens(Stream stream, DType dtype, DConstMat x, const int32_t *keep, int64_t batch,
                int64_t tokens, int64_t kept, DMat out, int32_t *errorFlag) {
  const char *kernel = "maskTokens";
  checkKeepArgs(kernel, keep, batch, tokens, kept);
  const int64_t d = x.cols;
  checkDView(kernel, "x", x, batch * tokens, d);
  checkDView(kernel, "out", out, batch * kept, d);
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    if (overlapsD(x, out, sizeof(T)))
      fail(kernel, ": out overlaps x");
    launchValidateKeep(kernel, stream, keep, batch, tokens, kept, errorFlag);
    const int64_t rows = batch * kept;
    if (rows == 0 || d == 0)
      return;
    constexpr int V = kVec<T>;
    const T *src = static_cast<const T *>(x.data);
    T *dst = static_cast<T *>(out.data);
    if (vecView<T>(src, x.ld, d) && vecView<T>(dst, out.ld, d))
      maskKernel<T, V><<<gridStrideBlocks(rows * (d / V), kThreads), kThreads, 0,
                         native(stream)>>>(src, x.ld, keep, dst, out.ld, rows, d, tokens, kept);
    else
      maskKernel<T, 1><<<gridStrideBlocks(rows * d, kThreads), kThreads, 0, native(stream)>>>(
          src, x.ld, keep, dst, out.ld, rows, d, tokens, kept);
    checkLaunch(kernel);
  });
}

void unmaskTokens(Stream stream, DType dtype, DConstMat x, const int32_t *keep, int64_t batch,
                  int64_t tokens, int64_t kept, DMat out, int32_t *errorFlag) {
  const char *kernel = "unmaskTokens";
  checkKeepArgs(kernel, keep, batch, tokens, kept);
  const int64_t d = x.cols;
  checkDView(kernel, "x", x, batch * kept, d);
  checkDView(kernel, "out", out, batch * tokens, d);
  if (batch > 65535)
    fail(kernel, ": batch ", batch, " exceeds the 65535 samples of one launch");
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    if (overlapsD(x, out, sizeof(T)))
      fail(kernel, ": out overlaps x");
    launchValidateKeep(kernel, stream, keep, batch, tokens, kept, errorFlag);
    if (d == 0)
      return;
    constexpr int V = kVec<T>;
    const T *src = static_cast<const T *>(x.data);
    T *dst = static_cast<T *>(out.data);
    const bool vec = vecView<T>(src, x.ld, d) && vecView<T>(dst, out.ld, d);
    const int64_t perRow = vec ? d / V : d;
    const size_t smem = static_cast<size_t>(tokens) * sizeof(int32_t);
    if (smem <= maxDynamicSmem()) {
      // About 2048 vectors per block: enough work to amortise rebuilding
      // the inverse map (kept int32 reads) in every block.
      int64_t rowsPerBlock = (2048 + perRow - 1) / perRow;
      if (rowsPerBlock > tokens)
        rowsPerBlock = tokens;
      dim3 grid(static_cast<unsigned>((tokens + rowsPerBlock - 1) / rowsPerBlock),
                static_cast<unsigned>(batch));
      if (vec) {
        allowSmem(unmaskKernel<T, V>, smem, kernel);
        unmaskKernel<T, V><<<grid, kThreads, smem, native(stream)>>>(src, x.ld, keep, dst, out.ld,
                                                                     d, tokens, kept, rowsPerBlock);
      } else {
        allowSmem(unmaskKernel<T, 1>, smem, kernel);
        unmaskKernel<T, 1><<<grid, kThreads, smem, native(stream)>>>(src, x.ld, keep, dst, out.ld,
                                                                     d, tokens, kept, rowsPerBlock);
      }
      checkLaunch(kernel);
      return;
    }
    const int64_t outRows = batch * tokens, inRows = batch * kept;
    if (vec) {
      zeroRowsKernel<T, V><<<gridStrideBlocks(outRows * perRow, kThreads), kThreads, 0,
                             native(stream)>>>(dst, out.ld, outRows, d);
      checkLaunch(kernel);
      if (inRows > 0)
        scatterKeptKernel<T, V><<<gridStrideBlocks(inRows * perRow, kThreads), kThreads, 0,
                                  native(stream)>>>(src, x.ld, keep, dst, out.ld, inRows, d,
                                                    tokens, kept);
    } else {
      zeroRowsKernel<T, 1><<<gridStrideBlocks(outRows * perRow, kThreads), kThreads, 0,
                             native(stream)>>>(dst, out.ld, outRows, d);
      checkLaunch(kernel);
      if (inRows > 0)
        scatterKeptKernel<T, 1><<<gridStrideBlocks(inRows * perRow, kThreads), kThreads, 0,
                                  native(stream)>>>(src, x.ld, keep, dst, out.ld, inRows, d,
                                                    tokens, kept);
    }
    checkLaunch(kernel);
  });
}

void tokenMean(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t tokens, DMat out) {
  const char *kernel = "tokenMean";
  checkDPositive(kernel, "batch", batch);
  checkDPositive(kernel, "tokens", tokens);
  const int64_t d = x.cols;
  checkDView(kernel, "x", x, batch * tokens, d);
  checkDView(kernel, "out", out, batch, d);
  if (batch > 65535)
    fail(kernel, ": batch ", batch, " exceeds the 65535 samples of one launch");
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    if (overlapsD(x, out, sizeof(T)))
      fail(kernel, ": out overlaps x");
    if (d == 0)
      return;
    constexpr int V = kVec<T>;
    const T *src = static_cast<const T *>(x.data);
    T *dst = static_cast<T *>(out.data);
    const float inv = 1.0f / static_cast<float>(tokens);
    const dim3 block(kMeanCols, kMeanRows);
    if (vecView<T>(src, x.ld, d) && vecView<T>(dst, out.ld, d)) {
      dim3 grid(static_cast<unsigned>((d / V + kMeanCols - 1) / kMeanCols),
                static_cast<unsigned>(batch));
      tokenMeanKernel<T, V><<<grid, block, 0, native(stream)>>>(src, x.ld, dst, out.ld, tokens, d,
                                                                inv);
    } else {
      dim3 grid(static_cast<unsigned>((d + kMeanCols - 1) / kMeanCols),
                static_cast<unsigned>(batch));
      tokenMeanKernel<T, 1><<<grid, block, 0, native(stream)>>>(src, x.ld, dst, out.ld, tokens, d,
                                                                inv);
    }
    checkLaunch(kernel);
  });
}

} // namespace diffrt::cuda
