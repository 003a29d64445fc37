//===- Elementwise.cu - broadcast arithmetic, activations, adaLN glue -----===//
//
// The memory-bound kernels between the matrix products: in-place
// activations, adaLN modulation, the gated residual update and element-type
// casts (the compiled program's other element-wise work runs as generated
// kernels, GeneratedKernels.cu). Each is one grid-stride pass in which a
// thread moves 16 bytes per access (8 half/bfloat16 or 4 float values) when
// the base pointers, leading dimensions and row lengths allow it, and one
// element per access otherwise; arithmetic is in f32. The grid is capped at a
// few resident blocks per multiprocessor so that threads loop rather than
// pay for block launches, which keeps large tensors near copy bandwidth.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include <type_traits>

namespace diffrt::cuda {

namespace {

constexpr int kThreads = 256;

//===----------------------------------------------------------------------===//
// Flat kernels over contiguous values
//===----------------------------------------------------------------------===//

template <typename T, int N> __global__ void activateKernel(T *x, int64_t n, int act) {
  const int64_t groups = n / N;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += stride) {
    float v[N];
    loadN<N>(x + g * N, v);
#pragma unroll
    for (int e = 0; e < N; ++e)
      v[e] = applyActPrecise(v[e], act);
    storeN<N>(x + g * N, v);
  }
  if (N > 1 && blockIdx.x == 0 && threadIdx.x < n - groups * N) {
    const int64_t i = groups * N + threadIdx.x;
    x[i] = fromF<T>(applyActPrecise(toF<T>(x[i]), act));
  }
}

/// Conversion in groups of 8 values: one 16-byte access on the 16-bit side
/// and two on the f32 side when both pointers are aligned (kVecPath).
template <typename From, typename To, bool kVecPath>
__global__ void castKernel(const From *in, To *out, int64_t n) {
  constexpr int N = kVecPath ? 8 : 1;
  const int64_t groups = n / N;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups;
       g += stride) {
    float v[N];
    loadN<N>(in + g * N, v);
    storeN<N>(out + g * N, v);
  }
  if (N > 1 && blockIdx.x == 0 && threadIdx.x < n - groups * N) {
    const int64_t i = groups * N + threadIdx.x;
    out[i] = fromF<To>(toF<From>(in[i]));
  }
}

//===----------------------------------------------------------------------===//
// Row-view kernels (strided rows, per-sample broadcast rows)
//===----------------------------------------------------------------------===//

/// A strided operand of a row kernel.
template <typename T> struct RowView {
  T *data;
  int64_t ld;
};

/// out[r][j] = x[r][j] · (1 + scale[s][j]) + shift[s][j], s = r / rowsPerSample.
template <typename T, int N>
__global__ void modulateKernel(RowView<const T> x, RowView<const T> shift,
                               RowView<const T> scale, RowView<T> out, int64_t rows,
                               int64_t cols, int64_t rowsPerSample) {
  const int64_t perRow = cols / N, total = rows * perRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t r = g / perRow, c = (g - r * perRow) * N, s = r / rowsPerSample;
    float xv[N], sh[N], sc[N];
    loadN<N>(x.data + r * x.ld + c, xv);
    loadN<N>(shift.data + s * shift.ld + c, sh);
    loadN<N>(scale.data + s * scale.ld + c, sc);
#pragma unroll
    for (int e = 0; e < N; ++e)
      xv[e] = xv[e] * (1.0f + sc[e]) + sh[e];
    storeN<N>(out.data + r * out.ld + c, xv);
  }
}

/// out[r][j] = residual[r][j] + gate[s][j] · y[r][j]; out may alias residual
/// (each element is read and written by the same thread).
template <typename T, int N>
__global__ void gatedResidualKernel(RowView<const T> residual, RowView<const T> gate,
                                    RowView<const T> y, RowView<T> out, int64_t rows,
                                    int64_t cols, int64_t rowsPerSample) {
  const int64_t perRow = cols / N, total = rows * perRow;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < total;
       g += stride) {
    const int64_t r = g / perRow, c = (g - r * perRow) * N, s = r / rowsPerSample;
    float res[N], gt[N], yv[N];
    loadN<N>(residual.data + r * residual.ld + c, res);
    loadN<N>(gate.data + s * gate.ld + c, gt);
    loadN<N>(y.data + r * y.ld + c, yv);
#pragma unroll
    for (int e = 0; e < N; ++e)
      res[e] = res[e] + gt[e] * yv[e];
    storeN<N>(out.data + r * out.ld + c, res);
  }
}

template <typename T> RowView<const T> rowView(DConstMat m) {
  return {static_cast<const T *>(m.data), m.ld};
}
template <typename T> RowView<T> rowView(DMat m) { return {static_cast<T *>(m.data), m.ld}; }

void checkCount(const char *kernel, int64_t count, const void *a, const void *b) {
  if (count < 0)
    fail(kernel, ": negative count ", count);
  if (count > 0 && (a == nullptr || b == nullptr))
    fail(kernel, ": null operand");
}

template <typename From, typename To>
void launchCast(Stream stream, const void *in, void *out, int64_t n) {
  const From *src = static_cast<const From *>(in);
  To *dst = static_cast<To *>(out);
  if (aligned16(src) && aligned16(dst))
    castKernel<From, To, true>
        <<<gridStrideBlocks(n / 8, kThreads), kThreads, 0, native(stream)>>>(src, dst, n);
  else
    castKernel<From, To, false>
        <<<gridStrideBlocks(n, kThreads), kThreads, 0, native(stream)>>>(src, dst, n);
  checkLaunch("cast");
}

} // namespace

void activate(Stream stream, DType dtype, void *x, int64_t n, Act act) {
  const char *kernel = "activate";
  if (n < 0)
    fail(kernel, ": negative count ", n);
  if (n > 0 && x == nullptr)
    fail(kernel, ": null data for ", n, " values");
  switch (act) {
  case Act::None:
  case Act::Gelu:
  case Act::GeluTanh:
  case Act::Silu:
    break;
  default:
    fail(kernel, ": unknown activation ", static_cast<int32_t>(act));
  }
  if (act == Act::None || n == 0)
    return;
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = kVec<T>;
    T *p = static_cast<T *>(x);
    if (aligned16(p))
      activateKernel<T, V><<<gridStrideBlocks(n / V, kThreads), kThreads, 0, native(stream)>>>(
          p, n, static_cast<int>(act));
    else
      activateKernel<T, 1><<<gridStrideBlocks(n, kThreads), kThreads, 0, native(stream)>>>(
          p, n, static_cast<int>(act));
    checkLaunch(kernel);
  });
}

void modulate(Stream stream, DType dtype, DConstMat x, DConstMat shift, DConstMat scale,
              int64_t rowsPerSample, DMat out) {
  const char *kernel = "modulate";
  const int64_t rows = x.rows, cols = x.cols;
  checkDView(kernel, "x", x, rows, cols);
  checkDPerSample(kernel, "shift", shift, rows, rowsPerSample, cols);
  checkDPerSample(kernel, "scale", scale, rows, rowsPerSample, cols);
  checkDView(kernel, "out", out, rows, cols);
  if (rows == 0 || cols == 0)
    return;
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = kVec<T>;
    const size_t es = sizeof(T);
    bool vec = vectorizable(x.data, x.ld, cols, es) && vectorizable(shift.data, shift.ld, cols, es) &&
               vectorizable(scale.data, scale.ld, cols, es) &&
               vectorizable(out.data, out.ld, cols, es);
    if (vec)
      modulateKernel<T, V><<<gridStrideBlocks(rows * (cols / V), kThreads), kThreads, 0,
                             native(stream)>>>(rowView<T>(x), rowView<T>(shift),
                                               rowView<T>(scale), rowView<T>(out), rows, cols,
                                               rowsPerSample);
    else
      modulateKernel<T, 1><<<gridStrideBlocks(rows * cols, kThreads), kThreads, 0,
                             native(stream)>>>(rowView<T>(x), rowView<T>(shift),
                                               rowView<T>(scale), rowView<T>(out), rows, cols,
                                               rowsPerSample);
    checkLaunch(kernel);
  });
}

void gatedResidual(Stream stream, DType dtype, DConstMat residual, DConstMat gate, DConstMat y,
                   int64_t rowsPerSample, DMat out) {
  const char *kernel = "gatedResidual";
  const int64_t rows = residual.rows, cols = residual.cols;
  checkDView(kernel, "residual", residual, rows, cols);
  checkDPerSample(kernel, "gate", gate, rows, rowsPerSample, cols);
  checkDView(kernel, "y", y, rows, cols);
  checkDView(kernel, "out", out, rows, cols);
  if (rows == 0 || cols == 0)
    return;
  dispatchFloat(dtype, kernel, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = kVec<T>;
    const size_t es = sizeof(T);
    bool vec = vectorizable(residual.data, residual.ld, cols, es) &&
               vectorizable(gate.data, gate.ld, cols, es) &&
               vectorizable(y.data, y.ld, cols, es) && vectorizable(out.data, out.ld, cols, es);
    if (vec)
      gatedResidualKernel<T, V><<<gridStrideBlocks(rows * (cols / V), kThreads), kThreads, 0,
                                  native(stream)>>>(rowView<T>(residual), rowView<T>(gate),
                                                    rowView<T>(y), rowView<T>(out), rows, cols,
                                                    rowsPerSample);
    else
      gatedResidualKernel<T, 1><<<gridStrideBlocks(rows * cols, kThreads), kThreads, 0,
                                  native(stream)>>>(rowView<T>(residual), rowView<T>(gate),
                                                    rowView<T>(y), rowView<T>(out), rows, cols,
                                                    rowsPerSample);
    checkLaunch(kernel);
  });
}

void cast(Stream stream, DType from, const void *in, DType to, void *out, int64_t n) {
  const char *kernel = "cast";
  checkCount(kernel, n, in, out);
  if (n == 0)
    return;
  // Both types must be float types, also when they are equal.
  dispatchFloat(from, kernel, [](auto) {});
  dispatchFloat(to, kernel, [](auto) {});
  if (from == to) {
    // Same element type: a stream-ordered device copy (a graph memcpy node
    // under capture), unless the call is in place.
    if (in != out)
      check(cudaMemcpyAsync(out, in, static_cast<size_t>(n) * dtypeSize(from),
                            cudaMemcpyDeviceToDevice, native(stream)),
            "cast: cudaMemcpyAsync");
    return;
  }
  dispatchFloat(from, kernel, [&](auto f) {
    using From = decltype(f);
    dispatchFloat(to, kernel, [&](auto t) {
      using To = decltype(t);
      if constexpr (!std::is_same_v<From, To>)
        launchCast<From, To>(stream, in, out, n);
    });
  });
}

} // namespace diffrt::cuda
