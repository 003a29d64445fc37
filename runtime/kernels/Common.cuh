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

#include <atomic>
#include <mutex>

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


//===----------------------------------------------------------------------===//
// Vectorised access, launch sizing and precise activations (added for the
// memory-bound, GLA and MoE kernels)
//===----------------------------------------------------------------------===//

/// Elements of T in one 16-byte access: 8 for the 16-bit types, 4 for f32.
template <typename T> constexpr int kVec = static_cast<int>(16 / sizeof(T));

/// The kVec<T> elements packed in one 16-byte word, as floats. Kernels that
/// keep data in registers hold it packed (4 registers per 16 bytes rather
/// than 8 for 16-bit types) and unpack it where it is used. The elements
/// come out of the four 32-bit words with register operations: reading
/// them through a T pointer into `raw` lets the compiler replace a caller's
/// 128-bit load by eight 16-bit loads (it did, in every kernel).
template <typename T> __device__ __forceinline__ void unpackWord(uint32_t w, float &lo, float &hi);
template <> __device__ __forceinline__ void unpackWord<__nv_bfloat16>(uint32_t w, float &lo, float &hi) {
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
}
template <> __device__ __forceinline__ void unpackWord<__half>(uint32_t w, float &lo, float &hi) {
  lo = __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
  hi = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
}
template <typename T>
__device__ __forceinline__ void unpackVec(const uint4 &raw, float (&f)[kVec<T>]) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4)
      f[i] = __uint_as_float(w[i]);
    else
      unpackWord<T>(w[i], f[2 * i], f[2 * i + 1]);
  }
}

/// Loads kVec<T> consecutive elements at p, which must be 16-byte aligned,
/// as floats: one 128-bit load whatever the element type.
template <typename T> __device__ __forceinline__ void loadVec(const T *p, float (&f)[kVec<T>]) {
  const uint4 raw = *reinterpret_cast<const uint4 *>(p);
  unpackVec<T>(raw, f);
}

/// Two floats rounded to T and packed in a 32-bit word (lo in the low half),
/// with register operations (see unpackVec).
template <typename T> __device__ __forceinline__ uint32_t packWord(float lo, float hi);
template <> __device__ __forceinline__ uint32_t packWord<__nv_bfloat16>(float lo, float hi) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
}
template <> __device__ __forceinline__ uint32_t packWord<__half>(float lo, float hi) {
  return static_cast<uint32_t>(__half_as_ushort(__float2half_rn(lo))) |
         (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(hi))) << 16);
}

/// kVec<T> floats rounded to T and packed in one 16-byte word.
template <typename T> __device__ __forceinline__ uint4 packVec(const float (&f)[kVec<T>]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4)
      w[i] = __float_as_uint(f[i]);
    else
      w[i] = packWord<T>(f[2 * i], f[2 * i + 1]);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

/// Stores kVec<T> floats at p (16-byte aligned, global memory) rounded to
/// T, one 128-bit store. The store is the explicit st.global.v4 intrinsic:
/// a plain uint4 assignment came out as four 32-bit stores in some kernels.
template <typename T> __device__ __forceinline__ void storeVec(T *p, const float (&f)[kVec<T>]) {
  __stwb(reinterpret_cast<uint4 *>(p), packVec<T>(f));
}

inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

/// Whether a rows x cols view of `elemBytes`-byte elements can be walked in
/// 16-byte vectors: the base is aligned and both the leading dimension and
/// the row length are whole vectors. Empty (null) views do not constrain.
inline bool vectorizable(const void *data, int64_t ld, int64_t cols, size_t elemBytes) {
  if (data == nullptr)
    return true;
  int64_t per = static_cast<int64_t>(16 / elemBytes);
  return aligned16(data) && ld % per == 0 && cols % per == 0;
}

/// Multiprocessors of the current device, cached per device (the attribute
/// query is a host call of about a microsecond); threads that race to fill
/// an entry store the same value.
inline int multiprocessorCount() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  const bool cached = device >= 0 && device < kMaxDevices;
  if (cached) {
    const int n = cache[device].load(std::memory_order_relaxed);
    if (n > 0)
      return n;
  }
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "SM count");
  if (cached)
    cache[device].store(n, std::memory_order_relaxed);
  return n;
}

/// Blocks for a grid-stride loop over `work` items of `perBlock` items per
/// block pass: enough to cover the work, capped at `blocksPerSm` resident
/// blocks per multiprocessor so that each thread loops instead of paying
/// for block launches.
inline unsigned gridStrideBlocks(int64_t work, int64_t perBlock, int blocksPerSm = 8) {
  int64_t need = (work + perBlock - 1) / perBlock;
  int64_t cap = static_cast<int64_t>(multiprocessorCount()) * blocksPerSm;
  int64_t blocks = need < cap ? need : cap;
  return static_cast<unsigned>(blocks > 0 ? blocks : 1);
}

/// N consecutive elements at p as floats: 16-byte accesses when N is a
/// whole number of vectors (p must then be 16-byte aligned), element by
/// element otherwise. The kernels instantiate N = kVec<T> for their
/// vectorised path and N = 1 for unaligned views.
template <int N, typename T> __device__ __forceinline__ void loadN(const T *p, float (&f)[N]) {
  if constexpr (N % kVec<T> == 0) {
#pragma unroll
    for (int v = 0; v < N / kVec<T>; ++v)
      loadVec<T>(p + v * kVec<T>, *reinterpret_cast<float(*)[kVec<T>]>(&f[v * kVec<T>]));
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i)
      f[i] = toF<T>(p[i]);
  }
}
template <int N, typename T> __device__ __forceinline__ void storeN(T *p, const float (&f)[N]) {
  if constexpr (N % kVec<T> == 0) {
#pragma unroll
    for (int v = 0; v < N / kVec<T>; ++v)
      storeVec<T>(p + v * kVec<T>, *reinterpret_cast<const float(*)[kVec<T>]>(&f[v * kVec<T>]));
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i)
      p[i] = fromF<T>(f[i]);
  }
}

/// Ampere-style asynchronous copies (cp.async, sm_80+): 16 bytes from
/// global to shared memory without passing through registers, so loads of
/// the next tile overlap work on the current one. With valid == false the
/// 16 shared bytes are zero-filled and global memory is not read (`src`
/// must still be a valid address expression, it is not dereferenced).
__device__ __forceinline__ void cpAsync16(void *smem, const void *src, bool valid = true) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes)
               : "memory");
}
/// The same copy to a shared-memory address already converted (a loop over
/// a tile steps the address instead of converting a pointer per chunk).
__device__ __forceinline__ void cpAsync16(uint32_t smemAddress, const void *src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddress), "l"(src),
               "r"(valid ? 16 : 0));
}
/// The same for 4 bytes (cp.async.ca: 4- and 8-byte copies go through L1).
__device__ __forceinline__ void cpAsync4(void *smem, const void *src, bool valid = true) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/// Waits until at most `Pending` committed groups are still in flight.
template <int Pending> __device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

/// Host-side argument checks with messages in the style of the CPU
/// reference: kernel, operand and the numbers.
inline void checkDView(const char *kernel, const char *name, DConstMat m, int64_t rows,
                       int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail(kernel, ": ", name, " is ", m.rows, " x ", m.cols, ", expected ", rows, " x ", cols);
  if (m.ld < cols || m.ld < 1)
    fail(kernel, ": ", name, " has leading dimension ", m.ld, " < ", cols, " columns");
  if (m.data == nullptr && rows > 0 && cols > 0)
    fail(kernel, ": ", name, " is null");
}
inline void checkDPerSample(const char *kernel, const char *name, DConstMat m, int64_t rows,
                            int64_t rowsPerSample, int64_t cols) {
  if (rowsPerSample < 1 || rows % rowsPerSample != 0)
    fail(kernel, ": ", rows, " rows are not a whole number of samples of ", rowsPerSample,
         " rows (", name, ")");
  checkDView(kernel, name, m, rows / rowsPerSample, cols);
}
inline void checkDPositive(const char *kernel, const char *name, int64_t value) {
  if (value <= 0)
    fail(kernel, ": ", name, " must be positive, got ", value);
}
inline void checkDEpilogue(const char *kernel, const GatedResidual *epilogue, int64_t rows,
                           int64_t cols) {
  if (epilogue == nullptr)
    return;
  checkDView(kernel, "epilogue residual", epilogue->residual, rows, cols);
  checkDPerSample(kernel, "epilogue gate", epilogue->gate, rows, epilogue->rowsPerGate, cols);
}
/// Whether the bytes spanned by two views of `elemBytes`-byte elements overlap.
inline bool overlapsD(DConstMat a, DConstMat b, size_t elemBytes) {
  if (a.data == nullptr || b.data == nullptr || a.rows == 0 || b.rows == 0 || a.cols == 0 ||
      b.cols == 0)
    return false;
  auto begin = [](DConstMat m) { return reinterpret_cast<uintptr_t>(m.data); };
  auto end = [&](DConstMat m) {
    return begin(m) + static_cast<uintptr_t>((m.rows - 1) * m.ld + m.cols) * elemBytes;
  };
  return begin(a) < end(b) && begin(b) < end(a);
}

/// Activations in the forms of the CPU reference (runtime/cpu/Internal.h):
/// accurate expf/erfcf, GELU as 0.5·x·erfc(-x/√2) and tanh-GELU as
/// x·sigmoid(2u), which do not cancel to garbage for large negative x the
/// way 1 + erf and 1 + tanh do.
__device__ __forceinline__ float siluPrecise(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float geluPrecise(float x) {
  return 0.5f * x * erfcf(x * -0.70710678118654752f);
}
__device__ __forceinline__ float geluTanhPrecise(float x) {
  const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return x / (1.0f + expf(-2.0f * u));
}
__device__ __forceinline__ float applyActPrecise(float x, int act) {
  switch (act) {
  case 1: return geluPrecise(x);
  case 2: return geluTanhPrecise(x);
  case 3: return siluPrecise(x);
  default: return x;
  }
}
/// d act / dx in the forms of cpu::detail::actDerivative (the backward
/// kernels' chain rule through the fused activations).
__device__ __forceinline__ float actDerivativePrecise(float x, int act) {
  switch (act) {
  case 1:
    return 0.5f * erfcf(x * -0.70710678118654752f) + x * 0.39894228040143268f * expf(-0.5f * x * x);
  case 2: {
    const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    const float s = 1.0f / (1.0f + expf(-2.0f * u));
    const float du = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
    return s + x * s * (1.0f - s) * 2.0f * du;
  }
  case 3: {
    const float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  default: return 1.0f;
  }
}

/// actDerivativePrecise with the hardware exponential and reciprocal
/// (about 2⁻²¹ relative error): for 16-bit results, whose rounding (2⁻⁹ for
/// bf16) dwarfs it; the accurate forms cost the backward's element-wise
/// passes more instructions than their memory traffic.
__device__ __forceinline__ float actDerivativeFast(float x, int act) {
  switch (act) {
  case 2: {
    const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    const float s = __frcp_rn(1.0f + __expf(-2.0f * u));
    const float du = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
    return s + x * s * (1.0f - s) * 2.0f * du;
  }
  case 3: {
    const float s = __frcp_rn(1.0f + __expf(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  default: return actDerivativePrecise(x, act);
  }
}

/// Codes the index-checking kernels (maskTokens, unmaskTokens, labelEmbed)
/// store in their device error flag; the first error of a launch wins.
enum IndexErrorCode : int32_t {
  kIndexOutOfRange = 1, ///< a kept-token index outside [0, tokens)
  kIndexRepeated = 2,   ///< a kept-token index listed twice in one sample
  kLabelOutOfRange = 3, ///< a class label outside [0, numClasses]
};

/// Records `code` in the flag unless an earlier error is already there.
__device__ __forceinline__ void raiseIndexError(int32_t *flag, int32_t code) {
  if (flag != nullptr)
    atomicCAS(flag, 0, code);
}

/// Makes Kernel's dynamic shared-memory limit at least `bytes` (above the
/// 48 KB default) on the current device: the attribute belongs to the
/// function in each device's context, so a process that launches on a
/// second GPU must set it there too, and a launch asking for more than an
/// earlier one (other head dims) must raise it again. The largest limit set
/// so far is kept per device, so the attribute call is made only when it
/// grows. `what` names the kernel in errors.
template <auto Kernel> void allowSharedMemory(size_t bytes, const char *what) {
  if (bytes <= 48 * 1024)
    return;
  constexpr int kMaxDevices = 64;
  static std::atomic<size_t> granted[kMaxDevices] = {};
  static std::mutex mutex;
  int device = 0;
  check(cudaGetDevice(&device), what);
  if (device < 0 || device >= kMaxDevices)
    fail(what, ": device ", device, " is beyond the ", kMaxDevices, " this runtime tracks");
  if (granted[device].load(std::memory_order_acquire) >= bytes)
    return;
  std::lock_guard<std::mutex> lock(mutex);
  if (granted[device].load(std::memory_order_relaxed) >= bytes)
    return;
  int limit = 0;
  check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), what);
  if (bytes > static_cast<size_t>(limit))
    fail(what, " needs ", bytes, " bytes of shared memory, the device allows ", limit);
  check(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
        what);
  granted[device].store(bytes, std::memory_order_release);
}

} // namespace diffrt::cuda

#endif // DIFFRT_KERNELS_COMMON_CUH
