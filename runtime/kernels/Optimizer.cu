//===- Optimizer.cu - fused multi-tensor AdamW on the GPU -----------------===//
//
// A training step's optimizer touches every parameter once: launching a
// kernel per tensor (hundreds for DiT-XL) would cost more than the work, so
// every tensor is cut into chunks of kChunk elements listed in one device
// table, and three launches cover them all: partial sums of squared
// gradients per chunk (one per warp), a single-block reduction of the partials in a fixed
// order (so the norm, and hence every update, is reproducible bit for bit)
// that also derives the clipping factor, and the update itself. The
// in-graph step (no clipping, no loss scaling) updates first and takes the
// squares in the same pass, then reduces them for the reported norm. The update
// reads the clipping factor and the finiteness of the norm from the device,
// so the host never waits between the three; an overflowed f16 step (a
// non-finite norm) changes nothing. The optimizer is bandwidth-bound (about
// 28 bytes per parameter, 10 ms of a DiT-MoE-B step), so both passes move
// 16 bytes per access wherever a chunk's arrays allow, element by element
// otherwise.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include "diffrt/CudaGradKernels.h"

#include <cmath>

namespace diffrt::cuda {

namespace {

constexpr int64_t kChunk = 16384;
constexpr int kThreads = 256;

struct Chunk {
  AdamWTensor tensor;
  int64_t begin, count;
};

/// What the reduction leaves for the update.
struct StepState {
  double norm;
  float unscale; // clip / lossScale
  int finite;
};

__device__ __forceinline__ bool deviceAligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

/// kVec<T> f32 values at p (16-byte aligned) in 16-byte loads and stores.
template <typename T> __device__ __forceinline__ void loadF32(const float *p, float (&f)[kVec<T>]) {
#pragma unroll
  for (int k = 0; k < kVec<T>; k += 4) {
    const float4 v = *reinterpret_cast<const float4 *>(p + k);
    f[k] = v.x;
    f[k + 1] = v.y;
    f[k + 2] = v.z;
    f[k + 3] = v.w;
  }
}
template <typename T> __device__ __forceinline__ void storeF32(float *p, const float (&f)[kVec<T>]) {
#pragma unroll
  for (int k = 0; k < kVec<T>; k += 4)
    *reinterpret_cast<float4 *>(p + k) = make_float4(f[k], f[k + 1], f[k + 2], f[k + 3]);
}

/// Partial sums of squares: one per warp of each chunk's block (a shuffle
/// tree, with no shared memory or block barriers at the end of every
/// update block), added in index order by finishNormKernel.
constexpr int kWarps = kThreads / 32;

/// The warp's per-thread sums added in a fixed shuffle tree into
/// partial[warp].
__device__ __forceinline__ void warpSumTo(float acc, double *partial) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1)
    acc += __shfl_xor_sync(0xffffffffu, acc, s);
  if ((threadIdx.x & 31) == 0)
    partial[threadIdx.x >> 5] = acc;
}

/// This thread's share of the squared gradients of a chunk of `count`
/// gradients at g, in the order both chunkSquares and the in-graph update
/// take them: 16-byte vectors (when g is aligned), then the tail.
template <typename T> __device__ __forceinline__ float threadSquares(const T *g, int64_t count) {
  constexpr int V = kVec<T>;
  float acc = 0.0f;
  const int64_t vecs = deviceAligned16(g) ? count / V : 0;
  for (int64_t j = threadIdx.x; j < vecs; j += kThreads) {
    float v[V];
    loadVec<T>(g + j * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k)
      acc += v[k] * v[k];
  }
  for (int64_t i = vecs * V + threadIdx.x; i < count; i += kThreads) {
    float v = toF<T>(g[i]);
    acc += v * v;
  }
  return acc;
}

template <typename T> __global__ void chunkSquares(const Chunk *chunks, double *partial) {
  chunks += blockIdx.x; // callers pass the table from their first chunk
  const Chunk c = *chunks;
  warpSumTo(threadSquares(static_cast<const T *>(c.tensor.grad) + c.begin, c.count), partial + blockIdx.x * kWarps);
}

__global__ void finishNormKernel(const double *partial, int64_t count, AdamWHyper h, StepState *state,
                                 double *normOut) {
  __shared__ double red[1024];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x)
    acc += partial[i];
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s)
      red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double norm = sqrt(red[0]) / h.lossScale;
    double clip = h.gradClip > 0 && norm > h.gradClip ? h.gradClip / (norm + 1e-6) : 1.0;
    state->norm = norm;
    state->unscale = static_cast<float>(clip / h.lossScale);
    state->finite = isfinite(norm) ? 1 : 0;
    *normOut = norm;
  }
}

/// With Squares, the update also writes the chunk's sum of squared
/// gradients to its warps' partials, as chunkSquares would to the bit: the
/// in-graph step (whose state is the unit state) reads the gradients once
/// instead of twice.
template <typename T, bool Squares>
__global__ void adamwUpdate(const Chunk *chunks, const AdamWHyper *hyper, const StepState *state, double *partial) {
  if (!Squares && !state->finite)
    return;
  const AdamWHyper h = *hyper;
  const float unscale = state->unscale;
  const Chunk c = chunks[blockIdx.x];
  const T *g = static_cast<const T *>(c.tensor.grad) + c.begin;
  T *weight = static_cast<T *>(c.tensor.weight) + c.begin;
  float *master = c.tensor.master != nullptr ? c.tensor.master + c.begin : reinterpret_cast<float *>(weight);
  float *m = c.tensor.m + c.begin, *v = c.tensor.v + c.begin;
  float *ema = c.tensor.ema != nullptr ? c.tensor.ema + c.begin : nullptr;
  const float decay = 1.0f - h.lr * h.weightDecay;
  const bool keepEma = ema != nullptr && h.emaDecay > 0;
  // The same arithmetic as the element loop below, kVec<T> elements at a time.
  constexpr int V = kVec<T>;
  const bool vec = deviceAligned16(g) && deviceAligned16(master) && deviceAligned16(m) && deviceAligned16(v) &&
                   (c.tensor.master == nullptr || deviceAligned16(weight)) && (!keepEma || deviceAligned16(ema));
  const int64_t vecs = vec ? c.count / V : 0;
  // The update's loops walk the gradients in threadSquares's order unless
  // another of the chunk's arrays is misaligned; then the squares take
  // their own pass.
  const bool squaresInline = vec == deviceAligned16(g);
  float squares = Squares && !squaresInline ? threadSquares(g, c.count) : 0.0f;
  // Two vectors a thread per trip, every load issued before the first
  // store (the stores may alias later loads as far as the compiler knows,
  // so one vector a trip left 7 loads in flight per thread). The squares
  // are still added in threadSquares's order: vector j, then j + kThreads.
  constexpr int U = 2;
  for (int64_t j0 = threadIdx.x; j0 < vecs; j0 += U * kThreads) {
    float gv[U][V], mv[U][V], vv[U][V], wv[U][V];
    bool live[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = (j0 + u * kThreads) * V;
      live[u] = j0 + u * kThreads < vecs;
      if (!live[u])
        continue;
      loadVec<T>(g + i, gv[u]);
      loadF32<T>(m + i, mv[u]);
      loadF32<T>(v + i, vv[u]);
      loadF32<T>(master + i, wv[u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (!live[u])
        continue;
      const int64_t i = (j0 + u * kThreads) * V;
      if (Squares && squaresInline) {
#pragma unroll
        for (int k = 0; k < V; ++k)
          squares += gv[u][k] * gv[u][k];
      }
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float gi = gv[u][k] * unscale;
        mv[u][k] = h.beta1 * mv[u][k] + (1.0f - h.beta1) * gi;
        vv[u][k] = h.beta2 * vv[u][k] + (1.0f - h.beta2) * gi * gi;
        const float update = (mv[u][k] * h.correction1) / (sqrtf(vv[u][k] * h.correction2) + h.eps);
        wv[u][k] = wv[u][k] * decay - h.lr * update;
      }
      storeF32<T>(m + i, mv[u]);
      storeF32<T>(v + i, vv[u]);
      storeF32<T>(master + i, wv[u]);
      if (c.tensor.master != nullptr)
        storeVec<T>(weight + i, wv[u]);
      if (keepEma) {
        float ev[V];
        loadF32<T>(ema + i, ev);
#pragma unroll
        for (int k = 0; k < V; ++k)
          ev[k] = h.emaDecay * ev[k] + (1.0f - h.emaDecay) * wv[u][k];
        storeF32<T>(ema + i, ev);
      }
    }
  }
  for (int64_t i = vecs * V + threadIdx.x; i < c.count; i += kThreads) {
    const float graw = toF<T>(g[i]);
    if (Squares && squaresInline)
      squares += graw * graw;
    float gi = graw * unscale;
    float mi = h.beta1 * m[i] + (1.0f - h.beta1) * gi;
    float vi = h.beta2 * v[i] + (1.0f - h.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float update = (mi * h.correction1) / (sqrtf(vi * h.correction2) + h.eps);
    float w = master[i] * decay - h.lr * update;
    master[i] = w;
    if (c.tensor.master != nullptr)
      weight[i] = fromF<T>(w);
    if (keepEma)
      ema[i] = h.emaDecay * ema[i] + (1.0f - h.emaDecay) * w;
  }
  if constexpr (Squares)
    warpSumTo(squares, partial + blockIdx.x * kWarps);
}

} // namespace

struct MultiTensorAdamW::Impl {
  DType dtype;
  Chunk *chunks = nullptr;
  int64_t chunkCount = 0;
  double *partial = nullptr;
  StepState *state = nullptr;
  /// The step's hyperparameters on the device, and the state of a step in
  /// pieces (no clipping or scaling: unscale 1, finite).
  AdamWHyper *hyper = nullptr;
  StepState *unitState = nullptr;
  /// Tensor t's chunks: [firstChunk[t], firstChunk[t + 1]).
  std::vector<int64_t> firstChunk;
};

MultiTensorAdamW::MultiTensorAdamW(std::vector<AdamWTensor> tensors, DType dtype) : impl(new Impl) {
  impl->dtype = dtype;
  if (dtype == DType::F32)
    for (const AdamWTensor &t : tensors)
      if (t.master != nullptr)
        fail("MultiTensorAdamW: f32 weights are their own master copy");
  std::vector<Chunk> chunks;
  for (const AdamWTensor &t : tensors) {
    impl->firstChunk.push_back(static_cast<int64_t>(chunks.size()));
    for (int64_t b = 0; b < t.n; b += kChunk)
      chunks.push_back({t, b, std::min(kChunk, t.n - b)});
  }
  impl->firstChunk.push_back(static_cast<int64_t>(chunks.size()));
  impl->chunkCount = static_cast<int64_t>(chunks.size());
  auto release = [&] {
    cudaFree(impl->chunks);
    cudaFree(impl->partial);
    cudaFree(impl->state);
    cudaFree(impl->hyper);
    cudaFree(impl->unitState);
  };
  try {
    check(cudaMalloc(&impl->chunks, std::max<size_t>(1, chunks.size()) * sizeof(Chunk)), "optimizer chunk table");
    check(cudaMalloc(&impl->partial, std::max<size_t>(1, chunks.size()) * kWarps * sizeof(double)),
          "optimizer partial sums");
    check(cudaMalloc(&impl->state, sizeof(StepState)), "optimizer state");
    check(cudaMalloc(&impl->hyper, sizeof(AdamWHyper)), "optimizer hyperparameters");
    check(cudaMalloc(&impl->unitState, sizeof(StepState)), "optimizer state");
    check(cudaMemcpy(impl->chunks, chunks.data(), chunks.size() * sizeof(Chunk), cudaMemcpyHostToDevice),
          "optimizer chunk table upload");
    const StepState unit{0.0, 1.0f, 1};
    check(cudaMemcpy(impl->unitState, &unit, sizeof(unit), cudaMemcpyHostToDevice), "optimizer state upload");
  } catch (...) {
    release();
    delete impl;
    throw;
  }
}

MultiTensorAdamW::~MultiTensorAdamW() {
  cudaFree(impl->chunks);
  cudaFree(impl->partial);
  cudaFree(impl->state);
  cudaFree(impl->hyper);
  cudaFree(impl->unitState);
  delete impl;
}

size_t MultiTensorAdamW::deviceBytes() const {
  return static_cast<size_t>(impl->chunkCount) * (sizeof(Chunk) + kWarps * sizeof(double)) + 2 * sizeof(StepState) +
         sizeof(AdamWHyper);
}

size_t MultiTensorAdamW::tensorCount() const { return impl->firstChunk.size() - 1; }

void MultiTensorAdamW::setHyper(Stream stream, const AdamWHyper &hyper) {
  // Pinned staging is not needed: a pageable copy is complete for the host
  // when the call returns.
  check(cudaMemcpyAsync(impl->hyper, &hyper, sizeof(hyper), cudaMemcpyHostToDevice, native(stream)),
        "optimizer hyperparameters");
}

void MultiTensorAdamW::stepTensors(Stream stream, size_t first, size_t count) {
  if (first + count > tensorCount())
    fail("MultiTensorAdamW: tensors ", first, " + ", count, " of ", tensorCount());
  const int64_t begin = impl->firstChunk[first], end = impl->firstChunk[first + count];
  if (end == begin)
    return;
  cudaStream_t s = native(stream);
  const unsigned blocks = static_cast<unsigned>(end - begin);
  dispatchFloat(impl->dtype, "MultiTensorAdamW", [&](auto tag) {
    using T = decltype(tag);
    adamwUpdate<T, true><<<blocks, kThreads, 0, s>>>(impl->chunks + begin, impl->hyper, impl->unitState,
                                                       impl->partial + begin * kWarps);
    checkLaunch("optimizer update");
  });
}

void MultiTensorAdamW::finishNorm(Stream stream, double *deviceNorm) {
  AdamWHyper unit{};
  unit.lossScale = 1.0f;
  // Writes step()'s state, which step() rewrites before reading; the
  // updates already ran with the unit state.
  finishNormKernel<<<1, 1024, 0, native(stream)>>>(impl->partial, impl->chunkCount * kWarps, unit, impl->state, deviceNorm);
  checkLaunch("optimizer gradient norm");
}

void MultiTensorAdamW::step(Stream stream, const AdamWHyper &hyper, double *deviceNorm) {
  cudaStream_t s = native(stream);
  if (impl->chunkCount == 0)
    return;
  unsigned blocks = static_cast<unsigned>(impl->chunkCount);
  dispatchFloat(impl->dtype, "MultiTensorAdamW", [&](auto tag) {
    using T = decltype(tag);
    check(cudaMemcpyAsync(impl->hyper, &hyper, sizeof(hyper), cudaMemcpyHostToDevice, s), "optimizer hyperparameters");
    chunkSquares<T><<<blocks, kThreads, 0, s>>>(impl->chunks, impl->partial);
    checkLaunch("optimizer gradient squares");
    finishNormKernel<<<1, 1024, 0, s>>>(impl->partial, impl->chunkCount * kWarps, hyper, impl->state, deviceNorm);
    checkLaunch("optimizer gradient norm");
    adamwUpdate<T, false><<<blocks, kThreads, 0, s>>>(impl->chunks, impl->hyper, impl->state, nullptr);
    checkLaunch("optimizer update");
  });
}

} // namespace diffrt::cuda
