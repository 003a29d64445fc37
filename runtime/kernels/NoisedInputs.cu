//===- NoisedInputs.cu - a training step's noise and noised inputs --------===//
//
// The trainer's per-element work of a step on the device: the standard
// normal noise (Philox4x32-10 and Box–Muller in float64, by the block rules
// of Rng.h, so element i is the host's fillNormal element i) and the inputs
// made from it and the batch's clean data. Drawn on the host and uploaded,
// they kept the GPU of an H100 machine idle for 2.1 ms of every DiT-XL/2
// step (1.4 ms drawing, 0.7 ms copying); now the host uploads the data once
// and the step's host part is 0.2 ms.
//
// The host and this kernel must produce the same bits: the normal's double
// math is products and library functions only (nothing for the compiler to
// fuse), and the mixes are spelled with round-to-nearest intrinsics so that
// nvcc cannot contract them into fused multiply-adds, which the host does
// not use. What can differ is the last bit of the double log, sin and cos
// between CUDA's library and the host's; after rounding to float that
// changes a value about once in 10^8.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

namespace diffrt::cuda {

namespace {

struct TargetList {
  NoisedTarget t[kMaxNoisedTargets];
  int count;
};

/// philox4x32_10 of Rng.cpp.
__device__ __forceinline__ uint4 philox10(uint4 c, uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    if (i > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint32_t hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
    c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
  }
  return c;
}

__device__ __forceinline__ void store(const NoisedTarget &t, int64_t i, float v) {
  const int64_t at = i / t.cols * t.ld + i % t.cols;
  switch (t.dtype) {
  case DType::BF16: static_cast<__nv_bfloat16 *>(t.data)[at] = __float2bfloat16_rn(v); break;
  case DType::F16: static_cast<__half *>(t.data)[at] = __float2half_rn(v); break;
  default: static_cast<float *>(t.data)[at] = v; break;
  }
}

/// A thread per pair of elements (one Philox block).
__global__ void noisedInputsKernel(const float *x0, int64_t samples, int64_t perSample, uint32_t key0,
                                   uint32_t key1, uint64_t philoxStream, TargetList targets) {
  const int64_t count = samples * perSample, pairs = (count + 1) / 2;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < pairs;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint4 w = philox10(make_uint4(static_cast<uint32_t>(j), static_cast<uint32_t>(j >> 32),
                                        static_cast<uint32_t>(philoxStream),
                                        static_cast<uint32_t>(philoxStream >> 32)),
                             key0, key1);
    const uint64_t a = (static_cast<uint64_t>(w.y) << 32) | w.x, b = (static_cast<uint64_t>(w.w) << 32) | w.z;
    const double u = static_cast<double>(2 * (a >> 12) + 1) * 0x1p-53;
    const double v = static_cast<double>(2 * (b >> 12) + 1) * 0x1p-53;
    const double r = sqrt(-2.0 * log(u)), theta = 6.283185307179586476925286766559 * v;
    const float noise[2] = {static_cast<float>(r * cos(theta)), static_cast<float>(r * sin(theta))};
    for (int e = 0; e < 2; ++e) {
      const int64_t i = 2 * j + e;
      if (i >= count)
        break;
      const int64_t s = i / perSample;
      const float x = x0[i];
      for (int k = 0; k < targets.count; ++k) {
        const NoisedTarget &t = targets.t[k];
        float value = x;
        if (t.kind == NoisedTarget::Kind::Noise) {
          value = noise[e];
        } else if (t.kind == NoisedTarget::Kind::Mix) {
          const double *c = t.coef + 3 * s;
          const double mixed = __dadd_rn(__dmul_rn(c[0], static_cast<double>(x)),
                                         __dmul_rn(c[1], static_cast<double>(noise[e])));
          value = static_cast<float>(__dmul_rn(c[2], mixed));
        }
        store(t, i, value);
      }
    }
  }
}

} // namespace

void noisedInputs(Stream stream, const float *x0, int64_t samples, int64_t perSample, uint64_t seed,
                  uint64_t philoxStream, const NoisedTarget *targets, int count) {
  if (count < 0 || count > kMaxNoisedTargets)
    fail("noisedInputs: ", count, " targets (at most ", kMaxNoisedTargets, ")");
  TargetList list{};
  for (int k = 0; k < count; ++k) {
    const NoisedTarget &t = targets[k];
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
      fail("noisedInputs: target ", k, " has element type ", dtypeName(t.dtype));
    if (t.cols < 1 || t.ld < t.cols || (perSample * samples) % t.cols != 0)
      fail("noisedInputs: target ", k, " has rows of ", t.cols, " with leading dimension ", t.ld, " for ",
           samples, " x ", perSample, " values");
    if (t.kind == NoisedTarget::Kind::Mix && t.coef == nullptr)
      fail("noisedInputs: target ", k, " mixes without coefficients");
    list.t[k] = t;
  }
  list.count = count;
  const int64_t pairs = (samples * perSample + 1) / 2;
  if (pairs == 0 || count == 0)
    return;
  noisedInputsKernel<<<gridStrideBlocks(pairs, 256), 256, 0, native(stream)>>>(
      x0, samples, perSample, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), philoxStream, list);
  checkLaunch("noised training inputs");
}

} // namespace diffrt::cuda
