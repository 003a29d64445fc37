//===- MoeSelect.cuh - routing pieces shared by the MoE forward and backward -===//
//
// The expert-choice selection (one block per sample and expert sorts the
// sample's router probabilities for that expert and keeps the top k) and
// the ranking of router probabilities, used by Moe.cu and by GradMoe.cu,
// whose backward must reproduce the forward's selection exactly. Included
// by those two files only: the definitions live in an anonymous namespace
// so that each translation unit has its own copy of the kernel.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_MOESELECT_CUH
#define DIFFRT_KERNELS_MOESELECT_CUH

#include "Common.cuh"

namespace diffrt::cuda {
namespace {

/// Router probabilities in rank order: NaN ranked lowest (as cpu::rankKey).
__device__ __forceinline__ float rankKey(float p) { return isnan(p) ? -INFINITY : p; }

constexpr int kSelectThreads = 1024;

/// Sort key: probability first (NaN ranked as -inf, like cpu::rankKey),
/// then the complemented token index, so that a descending sort puts ties
/// in ascending token order. Padding keys are 0, below every real key.
__device__ __forceinline__ unsigned long long selectKey(float prob, int64_t token) {
  const float r = rankKey(prob);
  const unsigned bits = __float_as_uint(r);
  const unsigned ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) |
         static_cast<unsigned>(0xFFFFFFFFu - static_cast<unsigned>(token));
}

__global__ void __launch_bounds__(kSelectThreads)
    selectKernel(const float *probs, int64_t tokens, int experts, int64_t batch, int64_t k,
                 int pow2, int32_t *rows, int32_t *slotMap) {
  extern __shared__ unsigned long long keys[];
  const int64_t b = blockIdx.x / experts;
  const int e = static_cast<int>(blockIdx.x % experts);
  const int tid = threadIdx.x;
  for (int i = tid; i < pow2; i += kSelectThreads)
    keys[i] = i < tokens ? selectKey(probs[(b * tokens + i) * experts + e], i) : 0ull;
  __syncthreads();
  // Bitonic sort, descending overall.
  for (int size = 2; size <= pow2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < pow2; i += kSelectThreads) {
        const int j = i ^ stride;
        if (j > i) {
          const unsigned long long a = keys[i], c = keys[j];
          const bool descending = (i & size) == 0;
          if (descending ? a < c : a > c) {
            keys[i] = c;
            keys[j] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  const int64_t perExpert = batch * k;
  for (int64_t j = tid; j < k; j += kSelectThreads) {
    const int64_t token = 0xFFFFFFFFu - static_cast<unsigned>(keys[j] & 0xFFFFFFFFull);
    const int64_t row = b * tokens + token;
    const int64_t slot = e * perExpert + b * k + j;
    rows[slot] = static_cast<int32_t>(row);
    slotMap[row * experts + e] = static_cast<int32_t>(slot);
  }
}

} // namespace
} // namespace diffrt::cuda

#endif // DIFFRT_KERNELS_MOESELECT_CUH
