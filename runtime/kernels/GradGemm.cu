//===- GradGemm.cu - backward of the dense layers on the GPU --------------===//
//
// gemmBackward and swigluBackward: the products go to cuBLASLt through
// Gemm::product (the transposed forms dA = dz·w and dW = dzᵀ·a). The dense
// layer's pre-activation z comes from the forward (Gemm::run's preact,
// which kern-autodiff keeps) or, without it, is recomputed by Gemm::run.
// The chain rule through the fused activation and gated residual and the
// sums over rows (the bias gradient, the per-sample gate gradient) are one
// element-wise pass that reads dOut and z once: f32 partial sums over fixed
// chunks of rows, then a pass that adds the chunks in order, so results are
// reproducible bit for bit without float atomics. Intermediates (z, dz, h)
// are stored in the activation type, as mixed-precision training does; all
// sums are f32.
//
//===----------------------------------------------------------------------===//

#include "ColumnSums.cuh"
#include "Common.cuh"

#include "diffrt/CudaGradKernels.h"

#include <algorithm>
#include <type_traits>

namespace diffrt::cuda {

namespace {

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

/// Rows of a chunk of the fused chain-rule pass, and the threads (rows)
/// that share one chunk's columns: a block is 32 column vectors x
/// kRowLanes rows, a thread walks every kRowLanes-th row of its chunk, and
/// the lanes' sums are added in lane order through shared memory.
constexpr int64_t kFusedChunkRows = 64;
constexpr int kRowLanes = 8;
constexpr int kRowsPerLane = static_cast<int>(kFusedChunkRows) / kRowLanes;

/// dz = (gate ⊙ dOut) ⊙ act'(z) with the row sums taken on the way: over
/// each chunk of kFusedChunkRows rows inside a gate group, Σ dz (the bias
/// gradient's partial) and Σ dOut ⊙ act(z) (the gate's). One read of dOut
/// and z and one write of dz, where the chain rule and two column-sum
/// passes read them three times. dz is not written when it is dOut itself
/// (no gate, no activation).
template <typename T, int V, int Act>
__global__ void __launch_bounds__(32 * kRowLanes)
    gemmChainRuleSums(const T *__restrict__ dOut, int64_t ldd, const T *__restrict__ gate, int64_t ldg,
                      int64_t rowsPerGate, const T *__restrict__ z, int64_t ldz, int64_t cols,
                      int64_t chunksPerGroup, T *__restrict__ dz, int64_t lddz, float *biasPart, float *gatePart) {
  __shared__ float red[2][kRowLanes][32 * V];
  const int lane = threadIdx.x, rowLane = threadIdx.y;
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * 32 + lane) * V;
  const bool active = c < cols;
  const int64_t slot = blockIdx.y, group = slot / chunksPerGroup, chunk = slot % chunksPerGroup;
  const int64_t r0 = group * rowsPerGate + chunk * kFusedChunkRows;
  const int64_t r1 = min(group * rowsPerGate + rowsPerGate, r0 + kFusedChunkRows);
  float g[V], sumBias[V], sumGate[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    g[i] = 1.0f;
    sumBias[i] = 0.0f;
    sumGate[i] = 0.0f;
  }
  if (active && gate != nullptr) {
    if constexpr (V > 1)
      loadVec<T>(gate + group * ldg + c, g);
    else
      g[0] = toF<T>(gate[group * ldg + c]);
  }
  if (active) {
    // All of the thread's rows are loaded before any is used (packed, 16
    // bytes a row and operand), so each thread has kRowsPerLane loads of
    // each operand in flight instead of one or two.
    using Raw = std::conditional_t<(V > 1), uint4, T>;
    Raw dRaw[kRowsPerLane], zRaw[kRowsPerLane];
#pragma unroll
    for (int k = 0; k < kRowsPerLane; ++k) {
      const int64_t r = r0 + rowLane + k * kRowLanes;
      if (r < r1) {
        dRaw[k] = *reinterpret_cast<const Raw *>(dOut + r * ldd + c);
        if (z != nullptr)
          zRaw[k] = *reinterpret_cast<const Raw *>(z + r * ldz + c);
      }
    }
#pragma unroll
    for (int k = 0; k < kRowsPerLane; ++k) {
      const int64_t r = r0 + rowLane + k * kRowLanes;
      if (r >= r1)
        break;
      float d[V], zz[V] = {};
      if constexpr (V > 1) {
        unpackVec<T>(dRaw[k], d);
        if (z != nullptr)
          unpackVec<T>(zRaw[k], zz);
      } else {
        d[0] = toF<T>(dRaw[k]);
        if (z != nullptr)
          zz[0] = toF<T>(zRaw[k]);
      }
#pragma unroll
      for (int i = 0; i < V; ++i) {
        if (gatePart != nullptr)
          sumGate[i] += d[i] * applyActPrecise(zz[i], Act);
        d[i] *= g[i];
        if constexpr (Act != 0)
          d[i] *= sizeof(T) == 2 ? actDerivativeFast(zz[i], Act) : actDerivativePrecise(zz[i], Act);
      }
      if (dz != nullptr) {
        if constexpr (V > 1)
          storeVec<T>(dz + r * lddz + c, d);
        else
          dz[r * lddz + c] = fromF<T>(d[0]);
      }
      // The bias gradient sums dz as stored (rounded to T), as the
      // products read it.
#pragma unroll
      for (int i = 0; i < V; ++i)
        sumBias[i] += toF<T>(fromF<T>(d[i]));
    }
  }
#pragma unroll
  for (int i = 0; i < V; ++i) {
    red[0][rowLane][lane * V + i] = sumBias[i];
    red[1][rowLane][lane * V + i] = sumGate[i];
  }
  __syncthreads();
  // The block's 32·V columns, one per thread in turn, the row lanes added
  // in order.
  for (int j = rowLane * 32 + lane; j < 32 * V; j += 32 * kRowLanes) {
    const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 * V + j;
    if (col >= cols)
      continue;
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      float *part = q == 0 ? biasPart : gatePart;
      if (part == nullptr)
        continue;
      float total = 0.0f;
#pragma unroll
      for (int k = 0; k < kRowLanes; ++k)
        total += red[q][k][j];
      part[slot * cols + col] = total;
    }
  }
}

int64_t fusedChunks(int64_t rowsPerGroup) { return (rowsPerGroup + kFusedChunkRows - 1) / kFusedChunkRows; }

/// Launches gemmChainRuleSums over groups of rowsPerGroup rows, vectorised
/// when every view allows it.
template <typename T>
void launchChainRuleSums(cudaStream_t s, const T *dOut, int64_t ldd, const T *gate, int64_t ldg, int64_t rowsPerGroup,
                         const T *z, int64_t ldz, int act, int64_t rows, int64_t cols, T *dz, int64_t lddz,
                         float *biasPart, float *gatePart) {
  const size_t e = sizeof(T);
  const bool vec = vectorizable(dOut, ldd, cols, e) && vectorizable(gate, ldg, cols, e) &&
                   vectorizable(z, ldz, cols, e) && vectorizable(dz, lddz, cols, e);
  const int v = vec ? kVec<T> : 1;
  const int64_t perRow = (cols + v - 1) / v;
  const int64_t chunks = fusedChunks(rowsPerGroup), slots = rows / rowsPerGroup * chunks;
  if (slots > 0x7fffffff)
    fail("gemmBackward: ", slots, " row chunks exceed one grid dimension");
  const dim3 grid(static_cast<unsigned>((perRow + 31) / 32), static_cast<unsigned>(slots)), block(32, kRowLanes);
  // The activation is a template argument: with it a runtime value, every
  // element of the unrolled rows carried every activation's code (22,000
  // lines of PTX for one kernel) and the DiT-XL dense backward ran 15 ms
  // slower.
  auto launch = [&](auto v, auto act) {
    gemmChainRuleSums<T, decltype(v)::value, decltype(act)::value><<<grid, block, 0, s>>>(
        dOut, ldd, gate, ldg, rowsPerGroup, z, ldz, cols, chunks, dz, lddz, biasPart, gatePart);
  };
  auto withAct = [&](auto v) {
    switch (act) {
    case 0: launch(v, std::integral_constant<int, 0>{}); break;
    case 1: launch(v, std::integral_constant<int, 1>{}); break;
    case 2: launch(v, std::integral_constant<int, 2>{}); break;
    case 3: launch(v, std::integral_constant<int, 3>{}); break;
    default: fail("gemmBackward: unknown activation ", act);
    }
  };
  if (vec)
    withAct(std::integral_constant<int, kVec<T>>{});
  else
    withAct(std::integral_constant<int, 1>{});
  checkLaunch("gemm backward chain rule and sums");
}

/// The two planes of per-chunk partial sums (bias, gate) of the fused pass.
size_t chainSumBytes(int64_t m, int64_t n, int64_t rowsPerGate) {
  const int64_t rpg = rowsPerGate > 0 && rowsPerGate <= m && m % rowsPerGate == 0 ? rowsPerGate : 1;
  return 2 * alignUp(static_cast<size_t>(m / rpg * fusedChunks(rpg) * n) * sizeof(float));
}

/// dz = (gate ⊙ dOut) ⊙ act'(z) into dz (null: not wanted, dz is dOut),
/// dBias = Σ_rows dz and dGate = Σ over each gate group's rows of
/// dOut ⊙ act(z) (each null when not wanted): the fused pass, then the
/// chunk partials (two planes of chainSumBytes) added in chunk order.
template <typename T>
void chainRuleAndSums(cudaStream_t s, DConstMat dOut, const GatedResidual *epilogue, const void *z, int64_t ldz,
                      int act, int64_t rows, int64_t cols, void *dz, float *partials, void *dBias, DMat dGate) {
  const int64_t rowsPerGroup = epilogue != nullptr ? epilogue->rowsPerGate : rows;
  const int64_t chunks = fusedChunks(rowsPerGroup), groups = rows / rowsPerGroup;
  float *biasPart = partials, *gatePart = partials + alignUp(static_cast<size_t>(groups * chunks * cols) * sizeof(float)) / sizeof(float);
  launchChainRuleSums<T>(s, static_cast<const T *>(dOut.data), dOut.ld,
                         epilogue ? static_cast<const T *>(epilogue->gate.data) : nullptr,
                         epilogue ? epilogue->gate.ld : 0, rowsPerGroup, static_cast<const T *>(z), ldz, act, rows,
                         cols, static_cast<T *>(dz), cols, dBias ? biasPart : nullptr,
                         dGate.data ? gatePart : nullptr);
  if (dBias != nullptr) {
    launchFinishColumnSums<T>(s, biasPart, 1, groups * chunks, cols, static_cast<T *>(dBias), cols,
                              "gemm backward bias gradient");
  }
  if (dGate.data != nullptr) {
    launchFinishColumnSums<T>(s, gatePart, groups, chunks, cols, static_cast<T *>(dGate.data), dGate.ld,
                              "gemm backward gate gradient");
  }
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

size_t gemmBackwardWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType dtype, bool preactSaved,
                                  int64_t rowsPerGate) {
  size_t mat = alignUp(static_cast<size_t>(m * n) * dtypeSize(dtype));
  return kAlign + (preactSaved ? 1 : 2) * mat + chainSumBytes(m, n, rowsPerGate > 0 ? rowsPerGate : m) +
         Gemm::workspaceBytes(m, n, k, false, dtype) + Gemm::productWorkspaceBytes();
}

size_t gemmBackwardDzBytes(int64_t m, int64_t n, DType dtype, Act act, bool gated) {
  return act != Act::None || gated ? static_cast<size_t>(m * n) * dtypeSize(dtype) : 0;
}

namespace {
__global__ void idleKernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}
} // namespace

void idleStream(Stream stream, uint64_t ns) {
  if (ns == 0)
    return;
  idleKernel<<<1, 1, 0, native(stream)>>>(ns);
  check(cudaGetLastError(), "idleStream");
}

void gemmBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat a, DConstMat w, const void *bias, Act act,
                  const GatedResidual *epilogue, DConstMat dOut, const GemmGrads &grads, Workspace ws,
                  DConstMat preact, const WeightGradLane *lane) {
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
  const size_t elem = dtypeSize(dtype);
  if (grads.inputAct != Act::None) {
    if (grads.dA.data == nullptr)
      fail(kernel, ": an input activation is folded in but dA is not wanted");
    checkDView(kernel, "inputPreact", grads.inputPreact, m, k);
    if (overlapsD(grads.inputPreact, grads.dA, elem))
      fail(kernel, ": inputPreact overlaps dA");
  }
  if (m == 0 || n == 0)
    return;
  cudaStream_t s = native(stream);
  const int actCode = static_cast<int>(act);
  const bool saved = preact.data != nullptr;
  const int64_t rowsPerGroup = epilogue != nullptr ? epilogue->rowsPerGate : m;
  Carver carve(kernel, ws, gemmBackwardWorkspaceBytes(m, n, k, dtype, saved, rowsPerGroup));
  void *zBuf = saved ? nullptr : carve.take(static_cast<size_t>(m * n) * elem);
  void *dz = carve.take(static_cast<size_t>(m * n) * elem);
  // The weight-gradient lane reads dz after this kernel has returned, so
  // dz lives in the lane's buffer rather than in the shared workspace.
  const bool laneDW = lane != nullptr && grads.dW != nullptr;
  if (laneDW) {
    const size_t need = gemmBackwardDzBytes(m, n, dtype, act, epilogue != nullptr);
    if (need > 0 && (lane->dz.data == nullptr || lane->dz.bytes < need))
      fail(kernel, ": the weight-gradient lane's dz buffer holds ", lane->dz.bytes, " bytes; ", need,
           " are needed (", m, " x ", n, ")");
    if (need > 0)
      dz = lane->dz.data;
    idleStream(stream, lane->delayNs);
  }
  float *partials = static_cast<float *>(carve.take(chainSumBytes(m, n, rowsPerGroup)));
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
  // dz and the row sums of dz (bias) and dOut ⊙ act(z) (gate) in one pass.
  const bool writeDz = act != Act::None || epilogue != nullptr;
  DConstMat dZ = writeDz ? DConstMat{dz, m, n, n} : dOut;
  if (writeDz || grads.dBias != nullptr || grads.dGate.data != nullptr)
    dispatchFloat(dtype, kernel, [&](auto tag) {
      chainRuleAndSums<decltype(tag)>(s, dOut, epilogue, z, ldz, actCode, m, n, writeDz ? dz : nullptr, partials,
                                      grads.dBias, grads.dGate);
    });
  if (laneDW) {
    cudaEvent_t ready = static_cast<cudaEvent_t>(lane->ready);
    check(cudaEventRecord(ready, s), "gemmBackward: the weight-gradient lane's event");
    check(cudaStreamWaitEvent(native(lane->stream), ready, 0), "gemmBackward: the weight-gradient lane's event");
    idleStream(lane->stream, lane->delayNs);
    gemm.product(lane->stream, dtype, dZ, true, a, false, DMat{grads.dW, n, k, k}, 0.0f, lane->workspace);
  }
  if (grads.dA.data != nullptr) {
    // A folded tanh GELU runs in the product's DGELU epilogue when its z is
    // laid out like dA; anything else in a pass over dA afterwards.
    const DConstMat z = grads.inputPreact;
    const bool epilogueAct = grads.inputAct == Act::GeluTanh && dtype != DType::F32 &&
                             z.ld == grads.dA.ld && (z.ld * elem) % 16 == 0 && aligned16(z.data);
    gemm.product(stream, dtype, dZ, false, w, false, grads.dA, 0.0f, rest, epilogueAct ? z : DConstMat{});
    if (grads.inputAct != Act::None && !epilogueAct) {
      if (z.ld == k && grads.dA.ld == k)
        activateBackward(stream, dtype, z.data, grads.dA.data, m * k, grads.inputAct, grads.dA.data);
      else
        for (int64_t r = 0; r < m; ++r)
          activateBackward(stream, dtype, static_cast<const char *>(z.data) + r * z.ld * elem,
                           static_cast<const char *>(grads.dA.data) + r * grads.dA.ld * elem, k,
                           grads.inputAct, static_cast<char *>(grads.dA.data) + r * grads.dA.ld * elem);
    }
  }
  if (grads.dW != nullptr && !laneDW)
    gemm.product(stream, dtype, dZ, true, a, false, DMat{grads.dW, n, k, k}, 0.0f, rest);
}

//===----------------------------------------------------------------------===//
// swiglu
//===----------------------------------------------------------------------===//

size_t swigluBackwardWorkspaceBytes(int64_t rows, int64_t hidden, int64_t out, DType dtype, int64_t rowsPerGate) {
  size_t hid = alignUp(static_cast<size_t>(rows * hidden) * dtypeSize(dtype));
  size_t outs = alignUp(static_cast<size_t>(rows * out) * dtypeSize(dtype));
  return kAlign + 4 * hid + 2 * outs + chainSumBytes(rows, out, rowsPerGate > 0 ? rowsPerGate : rows) +
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
  const int64_t rowsPerGate = epilogue != nullptr ? epilogue->rowsPerGate : 0;
  Carver carve(kernel, ws, swigluBackwardWorkspaceBytes(m, f, n, dtype, rowsPerGate));
  void *g = carve.take(static_cast<size_t>(m * f) * elem);
  void *u = carve.take(static_cast<size_t>(m * f) * elem);
  void *h = carve.take(static_cast<size_t>(m * f) * elem);
  void *dh = carve.take(static_cast<size_t>(m * f) * elem);
  void *y = carve.take(static_cast<size_t>(m * n) * elem);
  void *dyBuf = carve.take(static_cast<size_t>(m * n) * elem);
  float *partials = static_cast<float *>(carve.take(chainSumBytes(m, n, rowsPerGate > 0 ? rowsPerGate : m)));
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
    // The gate's gradient needs the output before the gate, y = h·downᵀ.
    const bool wantGate = grads.dGate.data != nullptr;
    if (wantGate)
      gemm.run(stream, dtype, DConstMat{h, m, f, f}, down, nullptr, Act::None, nullptr, DMat{y, m, n, n}, rest);
    dispatchFloat(dtype, kernel, [&](auto tag) {
      chainRuleAndSums<decltype(tag)>(s, dOut, epilogue, wantGate ? y : nullptr, n, 0, m, n, dyBuf, partials,
                                      nullptr, grads.dGate);
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
