//===- ColumnSums.cuh - fixed-order sums of per-chunk partials --*- CUDA -*-===//
//
// The second half of every column sum over rows that the backward kernels
// take on the way (the dense layers' bias and gate gradients, the attention
// backward's q/k/v bias gradient): the first kernel leaves f32 partial sums
// per chunk of rows, and finishColumnSums adds the chunks in a fixed order,
// so results are reproducible bit for bit without float atomics.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_COLUMNSUMS_CUH
#define DIFFRT_KERNELS_COLUMNSUMS_CUH

#include "Common.cuh"

namespace diffrt::cuda {

/// Threads of finishColumnSums: 32 columns x kChunkLanes chunk lanes.
constexpr int kChunkLanes = 8;

/// out[group][c] = Σ_k partial[group][k][c] over the chunks k. Lane l of a
/// column adds chunks l, l + kChunkLanes, ... (up to four loads in flight),
/// then the lanes' sums are added in lane order: a fixed order for the
/// shape, with kChunkLanes times the threads of a thread per column (these
/// sums are short, and a thread per column left them latency-bound).
template <typename T>
__global__ void __launch_bounds__(32 * kChunkLanes)
    finishColumnSums(const float *partial, int64_t chunks, int64_t cols, T *out, int64_t ldo) {
  __shared__ float red[kChunkLanes][32];
  const int lane = threadIdx.x, chunkLane = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  const int64_t group = blockIdx.y;
  float acc = 0.0f;
  if (c < cols) {
    const float *p = partial + group * chunks * cols + c;
    int64_t k = chunkLane;
    for (; k + 3 * kChunkLanes < chunks; k += 4 * kChunkLanes) {
      float v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        v[i] = p[(k + i * kChunkLanes) * cols];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        acc += v[i];
    }
    for (; k < chunks; k += kChunkLanes)
      acc += p[k * cols];
  }
  red[chunkLane][lane] = acc;
  __syncthreads();
  if (chunkLane == 0 && c < cols) {
    float total = 0.0f;
#pragma unroll
    for (int l = 0; l < kChunkLanes; ++l)
      total += red[l][lane];
    out[group * ldo + c] = fromF<T>(total);
  }
}

/// Launches finishColumnSums over `groups` planes of chunks x cols partials
/// (a plane per grid row).
template <typename T>
void launchFinishColumnSums(cudaStream_t s, const float *partial, int64_t groups, int64_t chunks, int64_t cols,
                            T *out, int64_t ldo, const char *what) {
  finishColumnSums<T><<<dim3(blocksFor(cols, 32), static_cast<unsigned>(groups)), dim3(32, kChunkLanes), 0, s>>>(
      partial, chunks, cols, out, ldo);
  checkLaunch(what);
}

} // namespace diffrt::cuda

#endif // DIFFRT_KERNELS_COLUMNSUMS_CUH
