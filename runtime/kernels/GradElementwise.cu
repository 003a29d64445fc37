//===- GradElementwise.cu - backward of the element-wise CUDA kernels -----===//
//
// Vector-Jacobian products of activate, modulate, gatedResidual and the
// suffix-broadcast add and multiply (the GPU counterparts of
// runtime/cpu/GradElementwise.cpp).
//
// The element-wise gradients are grid-stride passes, one element per thread
// step, arithmetic in f32. The reductions over tokens (shift, scale and gate
// gradients, a broadcast operand's gradient) have no workspace to keep
// partial sums in, so they are done inside one block per (column strip,
// sample): the block's threads are laid out as TX columns x TY row lanes,
// lane y sums rows y, y + TY, ... in order, and the TY lane sums are added
// in lane order through shared memory. The sum order depends on the shape
// only, never on the scheduling, so results are reproducible bit for bit
// without float atomics. Narrow operands (few columns) get more row lanes,
// so a broadcast over a short vector still spreads its long rows over 256
// threads. As on the CPU, every reduction is launched before the
// element-wise gradient, so the latter may overwrite dOut in place (same
// stream: the launches run in order).
//
//===----------------------------------------------------------------------===//

#include "diffrt/CudaGradKernels.h"

#include "Common.cuh"

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;

//===----------------------------------------------------------------------===//
// Per-segment column sums
//===----------------------------------------------------------------------===//

/// Columns per block for a reduction over `cols` columns: a full warp of
/// columns (coalesced row reads) when there are that many, fewer otherwise
/// so that the spare threads become row lanes.
int columnsPerBlock(int64_t cols) {
  if (cols >= 24)
    return 32;
  if (cols >= 4)
    return 8;
  return 1;
}

/// For every segment s of rowsPerSeg rows and column j < cols, the NV sums
/// Σ_{r in s} value(r, j)[v], stored by store(s, j, sums). Block: TX x TY
/// threads (blockDim.x = TX columns, blockDim.y = TY row lanes); grid:
/// column strips x segments.
template <int NV, typename Value, typename Store>
__global__ void columnSumsKernel(int64_t rowsPerSeg, int64_t cols, Value value, Store store) {
  __shared__ float part[NV][kThreads];
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * TX + tx;
  const int64_t seg = blockIdx.y;
  float acc[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v)
    acc[v] = 0.0f;
  if (j < cols) {
    const int64_t r0 = seg * rowsPerSeg, r1 = r0 + rowsPerSeg;
    for (int64_t r = r0 + ty; r < r1; r += TY) {
      float vals[NV];
      value(r, j, vals);
#pragma unroll
      for (int v = 0; v < NV; ++v)
        acc[v] += vals[v];
    }
  }
#pragma unroll
  for (int v = 0; v < NV; ++v)
    part[v][ty * TX + tx] = acc[v];
  __syncthreads();
  if (ty != 0 || j >= cols)
    return;
  float total[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) {
    total[v] = 0.0f;
    for (int y = 0; y < TY; ++y)
      total[v] += part[v][y * TX + tx];
  }
  store(seg, j, total);
}

template <int NV, typename Value, typename Store>
void launchColumnSums(cudaStream_t stream, const char *kernel, int64_t segments, int64_t rowsPerSeg,
                      int64_t cols, Value value, Store store) {
  if (segments <= 0 || cols <= 0)
    return;
  if (segments > 65535)
    fail(kernel, ": ", segments, " samples exceed the 65535 of one grid dimension");
  const int tx = columnsPerBlock(cols), ty = kThreads / tx;
  const dim3 grid(static_cast<unsigned>((cols + tx - 1) / tx), static_cast<unsigned>(segments));
  columnSumsKernel<NV><<<grid, dim3(tx, ty), 0, stream>>>(rowsPerSeg, cols, value, store);
  checkLaunch(kernel);
}

/// Values of the reductions (functors: nvcc without --extended-lambda takes
/// no device lambdas).
template <typename T> struct ModulateSums {
  const T *x, *dOut;
  int64_t ldx, ldd;
  bool wantShift, wantScale;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[2]) const {
    const float d = toF<T>(dOut[r * ldd + j]);
    v[0] = d;
    v[1] = wantScale ? d * toF<T>(x[r * ldx + j]) : 0.0f;
  }
};
template <typename T> struct StoreModulate {
  T *dShift, *dScale;
  int64_t lds, ldc;
  __device__ void operator()(int64_t s, int64_t j, const float (&v)[2]) const {
    if (dShift != nullptr)
      dShift[s * lds + j] = fromF<T>(v[0]);
    if (dScale != nullptr)
      dScale[s * ldc + j] = fromF<T>(v[1]);
  }
};

template <typename T> struct ProductSum {
  const T *a, *b;
  int64_t lda, ldb;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[1]) const {
    v[0] = toF<T>(a[r * lda + j]) * toF<T>(b[r * ldb + j]);
  }
};
template <typename T> struct StoreOne {
  T *out;
  int64_t ld;
  __device__ void operator()(int64_t s, int64_t j, const float (&v)[1]) const {
    out[s * ld + j] = fromF<T>(v[0]);
  }
};

/// Broadcast copies: row r, column j is flat index r·rhsCount + j, absent
/// (zero) past `count` in the last, partial copy. lhs null: dOut alone.
template <typename T> struct BroadcastSum {
  const T *dOut, *lhs;
  int64_t count, rhsCount;
  __device__ void operator()(int64_t r, int64_t j, float (&v)[1]) const {
    const int64_t i = r * rhsCount + j;
    if (i >= count) {
      v[0] = 0.0f;
      return;
    }
    const float d = toF<T>(dOut[i]);
    v[0] = lhs != nullptr ? d * toF<T>(lhs[i]) : d;
  }
};

//===----------------------------------------------------------------------===//
// Element-wise gradients
//===----------------------------------------------------------------------===//

template <typename T>
__global__ void activateBackwardKernel(const T *x, const T *dOut, int64_t n, int act, T *dX) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dX[i] = fromF<T>(toF<T>(dOut[i]) * actDerivativePrecise(toF<T>(x[i]), act));
}

/// out[r][j] = dOut[r][j] · (bias + p[r / rowsPerSample][j]): modulate's
/// dX (bias 1, p = scale) and the gated residual's dY (bias 0, p = gate).
template <typename T>
__global__ void perSampleScaleKernel(const T *dOut, int64_t ldd, const T *p, int64_t ldp,
                                     int64_t rowsPerSample, float bias, T *out, int64_t ldo,
                                     int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t r = i / cols, j = i - r * cols;
    const float f = bias + toF<T>(p[(r / rowsPerSample) * ldp + j]);
    out[r * ldo + j] = fromF<T>(toF<T>(dOut[r * ldd + j]) * f);
  }
}

/// dLhs[i] = dOut[i] · rhs[i mod rhsCount].
template <typename T>
__global__ void broadcastMulKernel(const T *dOut, int64_t count, const T *rhs, int64_t rhsCount,
                                   T *dLhs) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride)
    dLhs[i] = fromF<T>(toF<T>(dOut[i]) * toF<T>(rhs[i % rhsCount]));
}

void checkActD(const char *kernel, Act act) {
  switch (act) {
  case Act::None:
  case Act::Gelu:
  case Act::GeluTanh:
  case Act::Silu:
    return;
  }
  fail(kernel, ": unknown activation ", static_cast<int32_t>(act));
}

void checkBroadcastD(const char *kernel, int64_t count, int64_t rhsCount) {
  if (count < 0)
    fail(kernel, ": negative count ", count);
  checkDPositive(kernel, "rhsCount", rhsCount);
}

/// Σ over the broadcast copies into dRhs (rhsCount values); lhs null for
/// add's backward.
template <typename T>
void broadcastSums(cudaStream_t stream, const char *kernel, const T *dOut, const T *lhs,
                   int64_t count, int64_t rhsCount, T *dRhs) {
  const int64_t copies = (count + rhsCount - 1) / rhsCount;
  if (copies == 0) {
    check(cudaMemsetAsync(dRhs, 0, static_cast<size_t>(rhsCount) * sizeof(T), stream), kernel);
    return;
  }
  launchColumnSums<1>(stream, kernel, 1, copies, rhsCount,
                      BroadcastSum<T>{dOut, lhs, count, rhsCount}, StoreOne<T>{dRhs, rhsCount});
}

} // namespace

void activateBackward(Stream stream, DType dtype, const void *x, const void *dOut, int64_t n,
                      Act act, void *dX) {
  const char *kernel = "activateBackward";
  checkActD(kernel, act);
  if (n < 0)
    fail(kernel, ": negative count ", n);
  if (n == 0)
    return;
  if (x == nullptr || dOut == nullptr || dX == nullptr)
    fail(kernel, ": null operand for ", n, " values");
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    activateBackwardKernel<T><<<gridStrideBlocks(n, kThreads), kThreads, 0, native(stream)>>>(
        static_cast<const T *>(x), static_cast<const T *>(dOut), n, static_cast<int>(act),
        static_cast<T *>(dX));
    checkLaunch(kernel);
  });
}

void modulateBackward(Stream stream, DType dtype, DConstMat x, DConstMat scale, int64_t rowsPerSample,
                      DConstMat dOut, DMat dX, DMat dShift, DMat dScale) {
  const char *kernel = "modulateBackward";
  const int64_t rows = x.rows, cols = x.cols;
  checkDView(kernel, "dOut", dOut, rows, cols);
  const bool wantX = dX.data != nullptr, wantShift = dShift.data != nullptr,
             wantScale = dScale.data != nullptr;
  if (wantScale)
    checkDView(kernel, "x", x, rows, cols);
  if (wantX) {
    checkDView(kernel, "dX", dX, rows, cols);
    checkDPerSample(kernel, "scale", scale, rows, rowsPerSample, cols);
  }
  if (wantShift)
    checkDPerSample(kernel, "dShift", dShift, rows, rowsPerSample, cols);
  if (wantScale)
    checkDPerSample(kernel, "dScale", dScale, rows, rowsPerSample, cols);
  if (rows == 0 || cols == 0)
    return;
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t s = native(stream);
    if (wantShift || wantScale)
      launchColumnSums<2>(
          s, kernel, rows / rowsPerSample, rowsPerSample, cols,
          ModulateSums<T>{static_cast<const T *>(x.data), static_cast<const T *>(dOut.data), x.ld,
                          dOut.ld, wantShift, wantScale},
          StoreModulate<T>{static_cast<T *>(dShift.data), static_cast<T *>(dScale.data), dShift.ld,
                           dScale.ld});
    if (wantX) {
      perSampleScaleKernel<T><<<gridStrideBlocks(rows * cols, kThreads), kThreads, 0, s>>>(
          static_cast<const T *>(dOut.data), dOut.ld, static_cast<const T *>(scale.data), scale.ld,
          rowsPerSample, 1.0f, static_cast<T *>(dX.data), dX.ld, rows, cols);
      checkLaunch(kernel);
    }
  });
}

void gatedResidualBackward(Stream stream, DType dtype, DConstMat gate, DConstMat y, int64_t rowsPerSample,
                           DConstMat dOut, DMat dGate, DMat dY) {
  const char *kernel = "gatedResidualBackward";
  const int64_t rows = dOut.rows, cols = dOut.cols;
  checkDView(kernel, "dOut", dOut, rows, cols);
  const bool wantGate = dGate.data != nullptr, wantY = dY.data != nullptr;
  if (wantGate) {
    checkDView(kernel, "y", y, rows, cols);
    checkDPerSample(kernel, "dGate", dGate, rows, rowsPerSample, cols);
  }
  if (wantY) {
    checkDPerSample(kernel, "gate", gate, rows, rowsPerSample, cols);
    checkDView(kernel, "dY", dY, rows, cols);
  }
  if (rows == 0 || cols == 0)
    return;
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t s = native(stream);
    if (wantGate)
      launchColumnSums<1>(s, kernel, rows / rowsPerSample, rowsPerSample, cols,
                          ProductSum<T>{static_cast<const T *>(dOut.data),
                                        static_cast<const T *>(y.data), dOut.ld, y.ld},
                          StoreOne<T>{static_cast<T *>(dGate.data), dGate.ld});
    if (wantY) {
      perSampleScaleKernel<T><<<gridStrideBlocks(rows * cols, kThreads), kThreads, 0, s>>>(
          static_cast<const T *>(dOut.data), dOut.ld, static_cast<const T *>(gate.data), gate.ld,
          rowsPerSample, 0.0f, static_cast<T *>(dY.data), dY.ld, rows, cols);
      checkLaunch(kernel);
    }
  });
}

void mulBroadcastBackward(Stream stream, DType dtype, const void *lhs, int64_t count, const void *rhs,
                          int64_t rhsCount, const void *dOut, void *dLhs, void *dRhs) {
  const char *kernel = "mulBroadcastBackward";
  checkBroadcastD(kernel, count, rhsCount);
  if (count > 0 && dOut == nullptr)
    fail(kernel, ": null dOut");
  if (dRhs != nullptr && count > 0 && lhs == nullptr)
    fail(kernel, ": null lhs");
  if (dLhs != nullptr && rhs == nullptr)
    fail(kernel, ": null rhs");
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    cudaStream_t s = native(stream);
    if (dRhs != nullptr)
      broadcastSums<T>(s, kernel, static_cast<const T *>(dOut), static_cast<const T *>(lhs), count,
                       rhsCount, static_cast<T *>(dRhs));
    if (dLhs != nullptr && count > 0) {
      broadcastMulKernel<T><<<gridStrideBlocks(count, kThreads), kThreads, 0, s>>>(
          static_cast<const T *>(dOut), count, static_cast<const T *>(rhs), rhsCount,
          static_cast<T *>(dLhs));
      checkLaunch(kernel);
    }
  });
}

void addBroadcastBackwardRhs(Stream stream, DType dtype, const void *dOut, int64_t count,
                             int64_t rhsCount, void *dRhs) {
  const char *kernel = "addBroadcastBackwardRhs";
  checkBroadcastD(kernel, count, rhsCount);
  if (dRhs == nullptr)
    fail(kernel, ": null dRhs");
  if (count > 0 && dOut == nullptr)
    fail(kernel, ": null dOut");
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    broadcastSums<T>(native(stream), kernel, static_cast<const T *>(dOut), nullptr, count, rhsCount,
                     static_cast<T *>(dRhs));
  });
}

} // namespace diffrt::cuda
