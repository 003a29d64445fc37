//===- GradGemm.cu - backward of the dense layers on the GPU --------------===//
//
// gemmBackward and swigluBackward: the products go to cuBLASLt through
// Gemm::run (recomputing the pre-activations, which is cheaper than keeping
// them from the forward pass across a whole step) and Gemm::product (the
// transposed forms dA = dz·w and dW = dzᵀ·a); the chain rule through the
// fused activation and gated residual is one element-wise pass. Sums over
// rows (the bias gradient, the per-sample gate gradient) are two-stage:
// f32 partial sums over fixed chunks of 64 rows, then a pass that adds the
// chunks in order, so results are reproducible bit for bit without float
// atomics. Intermediates (z, dz, h) are stored in the activation type, as
// mixed-precision training does; all sums are f32.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include "diffrt/CudaGradKernels.h"

#include <algorithm>

namespace diffrt::cuda {

namespace {

constexpr int64_t kChunkRows = 64;
constexpr size_t kAlign = 256;

size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

/// Carves aligned pieces off a workspace, failing with the total needed.
class Carver {
public:
  Carver(const char *kernel, Workspace ws, size_t needed) : kernel(kernel), ws(ws), needed(needed) {
    base = static_cast<char *>(ws.data);
    if (base == nullptr || ws.bytes < needed)
      fail(kernel, ": workspace of ", ws.bytes, " bytes is too small: needs ", needed, " bytes");
    size_t skew = alignUp(reinterpret_cast<uintptr_t>(base)) - reinterpret_cast<uintptr_t>(base);
    base += skew;
    left = ws.bytes - skew;
  }
  void *take(size_t bytes) {
    bytes = alignUp(bytes);
    if (bytes > left)
      fail(kernel, ": workspace of ", ws.bytes, " bytes is too small: needs ", needed, " bytes");
    void *p = base;
    base += bytes;
    left -= bytes;
    return p;
  }
  Workspace rest() const { return {base, left}; }

private:
  const char *kernel;
  Workspace ws;
  size_t needed;
  char *base = nullptr;
  size_t left = 0;
};

/// Partial column sums over chunks of kChunkRows rows inside groups of
/// rowsPerGroup rows: partial[(group·chunks + chunk)·cols + c] =
/// Σ_r a[r][c] (· act(b[r][c]) when b is given).
template <typename T>
__global__ void chunkColumnSums(const T *a, int64_t lda, const T *b, int64_t ldb, int act, int64_t rows,
                                int64_t cols, int64_t rowsPerGroup, int64_t chunks, float *partial) {
  int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t slot = blockIdx.y; // group·chunks + chunk
  if (c >= cols)
    return;
  int64_t group = slot / chunks, chunk = slot % chunks;
  int64_t r0 = group * rowsPerGroup + chunk * kChunkRows;
  int64_t r1 = min(group * rowsPerGroup + rowsPerGroup, r0 + kChunkRows);
  float acc = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    float v = toF<T>(a[r * lda + c]);
    if (b != nullptr)
      v *= applyActPrecise(toF<T>(b[r * ldb + c]), act);
    acc += v;
  }
  partial[slot * cols + c] = acc;
}

template <typename T>
__global__ void finishColumnSums(const float *partial, int64_t groups, int64_t chunks, int64_t cols, T *out,
                                 int64_t ldo) {
  int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t group = blockIdx.y;
  if (c >= cols || group >= groups)
    return;
  float acc = 0.0f;
  for (int64_t k = 0; k < chunks; ++k)
    acc += partial[(group * chunks + k) * cols + c];
  out[group * ldo + c] = fromF<T>(acc);
}

int64_t chunksPerGroup(int64_t rowsPerGroup) { return std::max<int64_t>(1, (rowsPerGroup + kChunkRows - 1) / kChunkRows); }

size_t columnSumBytes(int64_t rows, int64_t cols, int64_t rowsPerGroup) {
  int64_t groups = rowsPerGroup > 0 ? rows / rowsPerGroup : 1;
  return alignUp(static_cast<size_t>(groups * chunksPerGroup(rowsPerGroup) * cols) * sizeof(float));
}

/// out (rows / rowsPerGroup) x cols = per-group column sums of a (⊙ act(b)).
template <typename T>
void columnSums(cudaStream_t s, const void *a, int64_t lda, const void *b, int64_t ldb, int act, int64_t rows,
                int64_t cols, int64_t rowsPerGroup, float *partial, void *out, int64_t ldo) {
  if (rows == 0 || cols == 0)
    return;
  int64_t groups = rows / rowsPerGroup, chunks = chunksPerGroup(rowsPerGroup);
  dim3 grid(blocksFor(cols, 128), static_cast<unsigned>(groups * chunks));
  chunkColumnSums<T><<<grid, 128, 0, s>>>(static_cast<const T *>(a), lda, static_cast<const T *>(b), ldb, act,
                                          rows, cols, rowsPerGroup, chunks, partial);
  checkLaunch("column sums (backward)");
  dim3 grid2(blocksFor(cols, 128), static_cast<unsigned>(groups));
  finishColumnSums<T><<<grid2, 128, 0, s>>>(partial, groups, chunks, cols, static_cast<T *>(out), ldo);
  checkLaunch("column sums (backward, finish)");
}

/// dz = (gate ⊙ dOut) ⊙ act'(z), gate per group of rowsPerGate rows (or 1).
/// Threads along x cover V-element column vectors of a row, blocks along y
/// rows by grid stride: no per-element division, and with V = kVec<T> one
/// 16-byte access per operand (fc1 of DiT-XL moves 226 MB per call).
template <typename T, int V>
__global__ void gemmChainRule(const T *dOut, int64_t ldd, const T *gate, int64_t ldg, int64_t rowsPerGate,
                              const T *z, int64_t ldz, int act, int64_t rows, int64_t cols, T *dz, int64_t lddz) {
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= cols)
    return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    float d[V], g[V], zz[V];
    if constexpr (V > 1) {
      loadVec<T>(dOut + r * ldd + c, d);
      if (gate != nullptr)
        loadVec<T>(gate + (r / rowsPerGate) * ldg + c, g);
      if (z != nullptr)
        loadVec<T>(z + r * ldz + c, zz);
    } else {
      d[0] = toF<T>(dOut[r * ldd + c]);
      if (gate != nullptr)
        g[0] = toF<T>(gate[(r / rowsPerGate) * ldg + c]);
      if (z != nullptr)
        zz[0] = toF<T>(z[r * ldz + c]);
    }
#pragma unroll
    for (int i = 0; i < V; ++i) {
      if (gate != nullptr)
        d[i] *= g[i];
      if (z != nullptr)
        d[i] *= actDerivativePrecise(zz[i], act);
    }
    if constexpr (V > 1)
      storeVec<T>(dz + r * lddz + c, d);
    else
      dz[r * lddz + c] = fromF<T>(d[0]);
  }
}

/// Launches gemmChainRule, vectorised when every view allows it.
template <typename T>
void launchChainRule(cudaStream_t s, const T *dOut, int64_t ldd, const T *gate, int64_t ldg, int64_t rowsPerGate,
                     const T *z, int64_t ldz, int act, int64_t rows, int64_t cols, T *dz, int64_t lddz) {
  const size_t e = sizeof(T);
  const bool vec = vectorizable(dOut, ldd, cols, e) && vectorizable(gate, ldg, cols, e) &&
                   vectorizable(z, ldz, cols, e) && vectorizable(dz, lddz, cols, e);
  const int v = vec ? kVec<T> : 1;
  const int64_t perRow = (cols + v - 1) / v;
  const int threads = perRow >= 256 ? 256 : static_cast<int>((perRow + 31) / 32 * 32);
  const unsigned gx = static_cast<unsigned>((perRow + threads - 1) / threads);
  const unsigned gy = static_cast<unsigned>(std::min<int64_t>(rows, std::max<int64_t>(1, 65535 / gx)));
  if (vec)
    gemmChainRule<T, kVec<T>><<<dim3(gx, gy), threads, 0, s>>>(dOut, ldd, gate, ldg, rowsPerGate, z, ldz, act, rows,
                                                                cols, dz, lddz);
  else
    gemmChainRule<T, 1><<<dim3(gx, gy), threads, 0, s>>>(dOut, ldd, gate, ldg, rowsPerGate, z, ldz, act, rows, cols,
                                                         dz, lddz);
  checkLaunch("gemm backward chain rule");
}

/// SwiGLU's hidden layer: h = silu(g) ⊙ u, element-wise on contiguous M x F.
template <typename T> __global__ void swigluHidden(const T *g, const T *u, int64_t n, T *h) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    h[i] = fromF<T>(siluPrecise(toF<T>(g[i])) * toF<T>(u[i]));
}

/// dg = dh ⊙ u ⊙ silu'(g), du = dh ⊙ silu(g), written over g and u.
template <typename T> __global__ void swigluHiddenGrad(T *g, T *u, const T *dh, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float gi = toF<T>(g[i]), ui = toF<T>(u[i]), d = toF<T>(dh[i]);
    float s = 1.0f / (1.0f + expf(-gi));
    g[i] = fromF<T>(d * ui * (s * (1.0f + gi * (1.0f - s))));
    u[i] = fromF<T>(d * gi * s);
  }
}

unsigned elementBlocks(int64_t n) { return gridStrideBlocks(n, 256); }

void checkGradView(const char *kernel, const char *name, DConstMat g, int64_t rows, int64_t cols) {
  if (g.data != nullptr)
    checkDView(kernel, name, g, rows, cols);
}

} // namespace

//===----------------------------------------------------------------------===//
// gemm
//===----------------------------------------------------------------------===//

size_t gemmBackwardWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType dtype, bool preactSaved) {
  size_t mat = alignUp(static_cast<size_t>(m * n) * dtypeSize(dtype));
  return kAlign + (preactSaved ? 1 : 2) * mat + columnSumBytes(m, n, 1) +
         Gemm::workspaceBytes(m, n, k, false, dtype) + Gemm::productWorkspaceBytes();
}

void gemmBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat a, DConstMat w, const void *bias, Act act,
                  const GatedResidual *epilogue, DConstMat dOut, const GemmGrads &grads, Workspace ws,
                  DConstMat preact) {
  const char *kernel = "gemmBackward";
  const int64_t m = a.rows, k = a.cols, n = w.rows;
  checkDView(kernel, "a", a, m, k);
  checkDView(kernel, "w", w, n, k);
  checkDView(kernel, "dOut", dOut, m, n);
  checkDEpilogue(kernel, epilogue, m, n);
  checkGradView(kernel, "dA", grads.dA, m, k);
  if (grads.dGate.data != nullptr) {
    if (epilogue == nullptr)
      fail(kernel, ": dGate is wanted but the product has no gated-residual epilogue");
    checkDPerSample(kernel, "dGate", grads.dGate, m, epilogue->rowsPerGate, n);
  }
  if (preact.data != nullptr)
    checkDView(kernel, "preact", preact, m, n);
  if (m == 0 || n == 0)
    return;
  cudaStream_t s = native(stream);
  const size_t elem = dtypeSize(dtype);
  const int actCode = static_cast<int>(act);
  const bool saved = preact.data != nullptr;
  Carver carve(kernel, ws, gemmBackwardWorkspaceBytes(m, n, k, dtype, saved));
  void *zBuf = saved ? nullptr : carve.take(static_cast<size_t>(m * n) * elem);
  void *dz = carve.take(static_cast<size_t>(m * n) * elem);
  float *partial = static_cast<float *>(carve.take(columnSumBytes(m, n, 1)));
  Workspace rest = carve.rest();

  // z = a·wᵀ + bias, needed for act'(z) and for the gate's act(z): the one
  // the forward saved, else recomputed.
  const bool needZ = act != Act::None || grads.dGate.data != nullptr;
  DConstMat zm = preact;
  if (needZ && zm.data == nullptr) {
    gemm.run(stream, dtype, a, w, bias, Act::None, nullptr, DMat{zBuf, m, n, n}, rest);
    zm = {zBuf, m, n, n};
  }
  const void *z = zm.data;
  const int64_t ldz = zm.ld;
  DConstMat dZ = dOut;
  if (act != Act::None || epilogue != nullptr) {
    dispatchFloat(dtype, kernel, [&](auto tag) {
      using T = decltype(tag);
      launchChainRule<T>(s, static_cast<const T *>(dOut.data), dOut.ld,
                         epilogue ? static_cast<const T *>(epilogue->gate.data) : nullptr,
                         epilogue ? epilogue->gate.ld : 0, epilogue ? epilogue->rowsPerGate : 1,
                         act != Act::None ? static_cast<const T *>(z) : nullptr, ldz, actCode, m, n,
                         static_cast<T *>(dz), n);
    });
    dZ = {dz, m, n, n};
  }
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    if (grads.dGate.data != nullptr)
      columnSums<T>(s, dOut.data, dOut.ld, z, ldz, actCode, m, n, epilogue->rowsPerGate, partial,
                    grads.dGate.data, grads.dGate.ld);
    if (grads.dBias != nullptr)
      columnSums<T>(s, dZ.data, dZ.ld, nullptr, 0, 0, m, n, m, partial, grads.dBias, n);
  });
  if (grads.dA.data != nullptr)
    gemm.product(stream, dtype, dZ, false, w, false, grads.dA, 0.0f, rest);
  if (grads.dW != nullptr)
    gemm.product(stream, dtype, dZ, true, a, false, DMat{grads.dW, n, k, k}, 0.0f, rest);
}

//===----------------------------------------------------------------------===//
// swiglu
//===----------------------------------------------------------------------===//

size_t swigluBackwardWorkspaceBytes(int64_t rows, int64_t hidden, int64_t out, DType dtype) {
  size_t hid = alignUp(static_cast<size_t>(rows * hidden) * dtypeSize(dtype));
  size_t outs = alignUp(static_cast<size_t>(rows * out) * dtypeSize(dtype));
  return kAlign + 4 * hid + 2 * outs + columnSumBytes(rows, out, 1) +
         std::max(Gemm::workspaceBytes(rows, std::max(hidden, out), 1, false, dtype), Gemm::productWorkspaceBytes());
}

void swigluBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat x, DConstMat gate, DConstMat up,
                    DConstMat down, const GatedResidual *epilogue, DConstMat dOut, const SwiGluGrads &grads,
                    Workspace ws) {
  const char *kernel = "swigluBackward";
  const int64_t m = x.rows, k = x.cols, f = gate.rows, n = down.rows;
  checkDView(kernel, "x", x, m, k);
  checkDView(kernel, "gate", gate, f, k);
  checkDView(kernel, "up", up, f, k);
  checkDView(kernel, "down", down, n, f);
  checkDView(kernel, "dOut", dOut, m, n);
  checkDEpilogue(kernel, epilogue, m, n);
  checkGradView(kernel, "dX", grads.dX, m, k);
  if (grads.dGate.data != nullptr) {
    if (epilogue == nullptr)
      fail(kernel, ": dGate is wanted but the product has no gated-residual epilogue");
    checkDPerSample(kernel, "dGate", grads.dGate, m, epilogue->rowsPerGate, n);
  }
  const int64_t gateLd = grads.gateLd > 0 ? grads.gateLd : k, upLd = grads.upLd > 0 ? grads.upLd : k;
  if (gateLd < k || upLd < k)
    fail(kernel, ": gradient row strides ", gateLd, " / ", upLd, " are below the ", k, " columns");
  if (m == 0)
    return;
  cudaStream_t s = native(stream);
  const size_t elem = dtypeSize(dtype);
  Carver carve(kernel, ws, swigluBackwardWorkspaceBytes(m, f, n, dtype));
  void *g = carve.take(static_cast<size_t>(m * f) * elem);
  void *u = carve.take(static_cast<size_t>(m * f) * elem);
  void *h = carve.take(static_cast<size_t>(m * f) * elem);
  void *dh = carve.take(static_cast<size_t>(m * f) * elem);
  void *y = carve.take(static_cast<size_t>(m * n) * elem);
  void *dyBuf = carve.take(static_cast<size_t>(m * n) * elem);
  float *partial = static_cast<float *>(carve.take(columnSumBytes(m, n, 1)));
  Workspace rest = carve.rest();

  gemm.run(stream, dtype, x, gate, nullptr, Act::None, nullptr, DMat{g, m, f, f}, rest);
  gemm.run(stream, dtype, x, up, nullptr, Act::None, nullptr, DMat{u, m, f, f}, rest);
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    swigluHidden<T><<<elementBlocks(m * f), 256, 0, s>>>(static_cast<const T *>(g), static_cast<const T *>(u),
                                                         m * f, static_cast<T *>(h));
    checkLaunch("swiglu backward hidden");
  });
  DConstMat dy = dOut;
  if (epilogue != nullptr) {
    dispatchFloat(dtype, kernel, [&](auto tag) {
      using T = decltype(tag);
      if (grads.dGate.data != nullptr) {
        gemm.run(stream, dtype, DConstMat{h, m, f, f}, down, nullptr, Act::None, nullptr, DMat{y, m, n, n}, rest);
        columnSums<T>(s, dOut.data, dOut.ld, y, n, 0, m, n, epilogue->rowsPerGate, partial, grads.dGate.data,
                      grads.dGate.ld);
      }
      launchChainRule<T>(s, static_cast<const T *>(dOut.data), dOut.ld, static_cast<const T *>(epilogue->gate.data),
                         epilogue->gate.ld, epilogue->rowsPerGate, nullptr, 0, 0, m, n, static_cast<T *>(dyBuf), n);
    });
    dy = {dyBuf, m, n, n};
  }
  if (grads.dDownW != nullptr)
    gemm.product(stream, dtype, dy, true, DConstMat{h, m, f, f}, false, DMat{grads.dDownW, n, f, f}, 0.0f, rest);
  if (grads.dX.data == nullptr && grads.dGateW == nullptr && grads.dUpW == nullptr)
    return;
  gemm.product(stream, dtype, dy, false, down, false, DMat{dh, m, f, f}, 0.0f, rest);
  dispatchFloat(dtype, kernel, [&](auto tag) {
    using T = decltype(tag);
    swigluHiddenGrad<T><<<elementBlocks(m * f), 256, 0, s>>>(static_cast<T *>(g), static_cast<T *>(u),
                                                             static_cast<const T *>(dh), m * f);
    checkLaunch("swiglu backward hidden gradient");
  });
  DConstMat dG{g, m, f, f}, dU{u, m, f, f};
  if (grads.dX.data != nullptr) {
    gemm.product(stream, dtype, dG, false, gate, false, grads.dX, 0.0f, rest);
    gemm.product(stream, dtype, dU, false, up, false, grads.dX, 1.0f, rest);
  }
  if (grads.dGateW != nullptr)
    gemm.product(stream, dtype, dG, true, x, false, DMat{grads.dGateW, f, k, gateLd}, 0.0f, rest);
  if (grads.dUpW != nullptr)
    gemm.product(stream, dtype, dU, true, x, false, DMat{grads.dUpW, f, k, upLd}, 0.0f, rest);
}

} // namespace diffrt::cuda
