//===- Common.cuh - shared helpers of the CUDA kernels ----------*- CUDA -*-===//
//
// Element-type dispatch, conversions to and from f32, launch checking and
// small math helpers used by every kernel file.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_COMMON_CUH
#define DIFFRT_KERNELS_COMMON_CUH

#include "diffrt/CudaKernels.h"
#include "diffrt/Error.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace diffrt::cuda {

inline cudaStream_t native(Stream s) { return static_cast<cudaStream_t>(s); }

/// Checks the last launch; names the kernel in the error.
inline void checkLaunch(const char *kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("CUDA kernel ", kernel, " failed to launch: ", cudaGetErrorString(e));
}

template <typename T> __device__ __forceinline__ float toF(T v);
template <> __device__ __forceinline__ float toF<float>(float v) { return v; }
template <> __device__ __forceinline__ float toF<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float toF<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T> __device__ __forceinline__ T fromF(float v);
template <> __device__ __forceinline__ float fromF<float>(float v) { return v; }
template <> __device__ __forceinline__ __half fromF<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 fromF<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float sigmoidF(float x) { return 1.0f / (1.0f + __expf(-x)); }
__device__ __forceinline__ float siluF(float x) { return x * sigmoidF(x); }
__device__ __forceinline__ float geluTanhF(float x) {
  const float k = 0.7978845608028654f; // sqrt(2/pi)
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float geluF(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }
__device__ __forceinline__ float applyAct(float x, int act) {
  switch (act) {
  case 1: return geluF(x);
  case 2: return geluTanhF(x);
  case 3: return siluF(x);
  default: return x;
  }
}

/// Calls f with a value of the CUDA element type matching `dtype`.
template <typename F> void dispatchFloat(DType dtype, const char *what, F &&f) {
  switch (dtype) {
  case DType::F16: f(__half{}); return;
  case DType::BF16: f(__nv_bfloat16{}); return;
  case DType::F32: f(float{}); return;
  default: fail(what, ": unsupported element type ", dtypeName(dtype));
  }
}

inline unsigned blocksFor(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

} // namespace diffrt::cuda

#endif // DIFFRT_KERNELS_COMMON_CUH
