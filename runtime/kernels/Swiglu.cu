//===- Swiglu.cu - the SwiGLU feed-forward on the GPU ---------------------===//
//
// out = down · (silu(gate · x) ⊙ (up · x)), then the optional gated
// residual. The gate and up projections land side by side in one M x 2F
// workspace matrix: as a single product when up follows gate in one packed
// weight (the usual checkpoint layout), else as two products writing the
// two column halves. One element-wise kernel then overwrites the gate half
// with silu(g) ⊙ u, and the down product reads that half in place through
// its leading dimension 2F, so the hidden activation needs no second buffer.
//
//===----------------------------------------------------------------------===//

#include "Common.cuh"

#include <algorithm>

namespace diffrt::cuda {

namespace {

constexpr size_t kCarveAlign = 256;

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

void checkView(const char *name, DConstMat m, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail("swiglu: ", name, " is ", m.rows, " x ", m.cols, ", expected ", rows, " x ", cols);
  if (m.ld < cols || m.ld < 1)
    fail("swiglu: ", name, " has leading dimension ", m.ld, " < ", cols, " columns");
  if (m.data == nullptr && rows > 0 && cols > 0)
    fail("swiglu: ", name, " is null");
}

/// gu is rows x 2f with leading dimension ld: g in columns [0, f), u in
/// [f, 2f). Writes silu(g) ⊙ u over g; each thread reads both halves of its
/// elements before writing.
template <typename T, int V>
__global__ void siluMulKernel(T *gu, int64_t ld, int64_t rows, int64_t f) {
  int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= f)
    return;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    T *g = gu + r * ld + c;
    const T *u = g + f;
    if constexpr (V > 1) {
      float gv[V], uv[V];
      loadVec<T>(g, gv);
      loadVec<T>(u, uv);
#pragma unroll
      for (int i = 0; i < V; ++i)
        gv[i] = siluPrecise(gv[i]) * uv[i];
      storeVec<T>(g, gv);
    } else {
      *g = fromF<T>(siluPrecise(toF<T>(*g)) * toF<T>(*u));
    }
  }
}

template <typename T> void launchSiluMul(cudaStream_t stream, T *gu, int64_t ld, int64_t rows,
                                         int64_t f) {
  constexpr int kV = kVec<T>;
  bool vec = f % kV == 0 && vectorizable(gu, ld, f, sizeof(T));
  int width = vec ? kV : 1;
  int64_t perRow = (f + width - 1) / width;
  int tx = perRow >= 256 ? 256 : static_cast<int>((perRow + 31) / 32 * 32);
  int ty = 256 / tx;
  unsigned gx = static_cast<unsigned>((perRow + tx - 1) / tx);
  int64_t rowBlocks = (rows + ty - 1) / ty;
  int64_t cap = static_cast<int64_t>(multiprocessorCount()) * 16 / gx + 1;
  unsigned gy = static_cast<unsigned>(std::min<int64_t>({rowBlocks, cap, 65535}));
  dim3 block(tx, ty), grid(gx, gy);
  if (vec)
    siluMulKernel<T, kV><<<grid, block, 0, stream>>>(gu, ld, rows, f);
  else
    siluMulKernel<T, 1><<<grid, block, 0, stream>>>(gu, ld, rows, f);
  checkLaunch("swiglu silu-mul");
}

} // namespace

size_t swigluWorkspaceBytes(int64_t rows, int64_t hidden, int64_t out, DType dtype) {
  size_t hiddenBytes =
      alignUp(static_cast<size_t>(rows) * 2 * static_cast<size_t>(hidden) * dtypeSize(dtype),
              kCarveAlign);
  // The down product is the only one that may carry the gated residual, so
  // the largest Gemm demand is its own (the y copy plus cuBLASLt's share).
  return kCarveAlign + hiddenBytes + Gemm::workspaceBytes(rows, out, hidden, true, dtype);
}

void swiglu(Stream stream, Gemm &gemm, DType dtype, DConstMat x, DConstMat gate, DConstMat up,
            DConstMat down, const GatedResidual *epilogue, DMat out, Workspace ws) {
  if (dtype != DType::F16 && dtype != DType::BF16 && dtype != DType::F32)
    fail("swiglu: unsupported element type ", dtypeName(dtype));
  const int64_t m = x.rows, k = x.cols, f = gate.rows, n = down.rows;
  const size_t elem = dtypeSize(dtype);
  checkView("x", x, m, k);
  checkView("gate", gate, f, k);
  checkView("up", up, f, k);
  checkView("down", down, n, f);
  checkView("out", out, m, n);
  if (m == 0 || n == 0)
    return;

  char *base = static_cast<char *>(ws.data);
  size_t avail = base != nullptr ? ws.bytes : 0;
  if (base != nullptr) {
    size_t skew = alignUp(reinterpret_cast<uintptr_t>(base), kCarveAlign) -
                  reinterpret_cast<uintptr_t>(base);
    avail = avail > skew ? avail - skew : 0;
    base += skew;
  }
  size_t hiddenBytes = alignUp(static_cast<size_t>(m * 2 * f) * elem, kCarveAlign);
  if (avail < hiddenBytes)
    fail("swiglu: workspace of ", ws.bytes, " bytes is too small for ", m, " rows, hidden ", f,
         ": needs ", swigluWorkspaceBytes(m, f, n, dtype), " bytes");
  void *gu = base;
  const int64_t ldGu = std::max<int64_t>(2 * f, 1);
  Workspace rest{base + hiddenBytes, avail - hiddenBytes};
  cudaStream_t s = native(stream);

  if (f > 0) {
    // up directly below gate in one packed (2F x K) weight: one product.
    const bool packed = up.ld == gate.ld &&
                        static_cast<const char *>(up.data) ==
                            static_cast<const char *>(gate.data) +
                                static_cast<size_t>(f * gate.ld) * elem;
    DMat guAll{gu, m, 2 * f, ldGu};
    if (packed) {
      gemm.run(stream, dtype, x, DConstMat{gate.data, 2 * f, k, gate.ld}, nullptr, Act::None,
               nullptr, guAll, rest);
    } else {
      DMat gHalf{gu, m, f, ldGu};
      DMat uHalf{static_cast<char *>(gu) + static_cast<size_t>(f) * elem, m, f, ldGu};
      gemm.run(stream, dtype, x, gate, nullptr, Act::None, nullptr, gHalf, rest);
      gemm.run(stream, dtype, x, up, nullptr, Act::None, nullptr, uHalf, rest);
    }
    dispatchFloat(dtype, "swiglu", [&](auto tag) {
      using T = decltype(tag);
      launchSiluMul<T>(s, static_cast<T *>(gu), ldGu, m, f);
    });
  }
  // x is no longer read after the two products above (same stream), so out
  // may alias it; the hidden activation is the gate half of gu.
  gemm.run(stream, dtype, DConstMat{gu, m, f, ldGu}, down, nullptr, Act::None, epilogue, out,
           rest);
}

} // namespace diffrt::cuda
