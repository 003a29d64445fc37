//===- CudaGradKernels.h - backward kernels of the CUDA backend -*- C++ -*-===//
//
// The GPU counterparts of CpuGradKernels.h: the same vector-Jacobian
// products with the same conventions (outputs overwritten, never
// accumulated; a null pointer or empty view is a gradient not wanted and not
// computed), on device pointers in one element type (f32, bf16 or f16) with
// f32 accumulation, on one stream, with no host synchronisation. Every
// kernel is checked against its CPU reference on the GPU machine (ctest
// label gpu). Kernels that need scratch memory take a Workspace sized by
// their *WorkspaceBytes function and fail with the bytes needed when it is
// too small.
//
// This header has no CUDA types so that host-only code can include it.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CUDAGRADKERNELS_H
#define DIFFRT_CUDAGRADKERNELS_H

#include "diffrt/CudaKernels.h"

#include <vector>

namespace diffrt::cuda {

//===----------------------------------------------------------------------===//
// Dense layers
//===----------------------------------------------------------------------===//

/// Backward of Gemm::run (see cpu::gemmBackward): z = a·wᵀ + bias is
/// `preact` when given (Gemm::run's saved pre-activation), else recomputed;
/// dA = dz·w, dW = dzᵀ·a, dBias = Σ_rows dz, dGate of the gated residual
/// epilogue per group of rowsPerGate rows.
struct GemmGrads {
  DMat dA;                 // M x K
  void *dW = nullptr;      // N x K, contiguous
  void *dBias = nullptr;   // N
  DMat dGate;              // (M / rowsPerGate) x N
  /// a = inputAct(inputPreact): dA is then the gradient with respect to
  /// inputPreact (see cpu::GemmGrads). bf16/f16 tanh GELU runs in the dA
  /// product's epilogue (cuBLASLt DGELU), the rest in a pass after it.
  Act inputAct = Act::None;
  DConstMat inputPreact{}; // M x K
};
/// Where gemmBackward runs its weight-gradient product when it is not on
/// the main stream (the training step's weight-gradient lane): on `stream`,
/// with its own cuBLASLt workspace, after `ready` (a cudaEvent_t) is
/// recorded on the main stream past the chain-rule pass. dz is then written
/// to `dz` (at least gemmBackwardDzBytes), which the caller keeps unchanged
/// until the product has run; the caller orders later work against `stream`.
struct WeightGradLane {
  Stream stream = nullptr;
  Workspace workspace;
  void *ready = nullptr;
  Workspace dz;
  /// Nanoseconds the lane idles before the product, and the main stream
  /// before the chain rule (0 in production): tests widen the race windows
  /// so that a missing wait shows up as wrong bits.
  uint64_t delayNs = 0;
};
void gemmBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat a, DConstMat w, const void *bias,
                  Act act, const GatedResidual *epilogue, DConstMat dOut, const GemmGrads &grads,
                  Workspace ws, DConstMat preact = {}, const WeightGradLane *lane = nullptr);
/// Bytes of dz a WeightGradLane needs for this product (0: dz is dOut
/// itself, there is no chain rule to apply).
size_t gemmBackwardDzBytes(int64_t m, int64_t n, DType dtype, Act act, bool gated);
/// Idles `stream` for `ns` nanoseconds (a one-thread kernel): see
/// WeightGradLane::delayNs.
void idleStream(Stream stream, uint64_t ns);
/// rowsPerGate: the gated residual's rows per gate row (0: no gate).
size_t gemmBackwardWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType dtype, bool preactSaved = false,
                                  int64_t rowsPerGate = 0);

/// Backward of swiglu (see cpu::swigluBackward). dGateW and dUpW may point
/// into one packed (2F x K) gradient: gateLd/upLd are their row strides.
struct SwiGluGrads {
  DMat dX;
  void *dGateW = nullptr, *dUpW = nullptr, *dDownW = nullptr;
  int64_t gateLd = 0, upLd = 0;
  DMat dGate;
};
void swigluBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat x, DConstMat gate, DConstMat up,
                    DConstMat down, const GatedResidual *epilogue, DConstMat dOut,
                    const SwiGluGrads &grads, Workspace ws);
/// rowsPerGate: the gated residual's rows per gate row (0: no gate).
size_t swigluBackwardWorkspaceBytes(int64_t rows, int64_t hidden, int64_t out, DType dtype, int64_t rowsPerGate = 0);

//===----------------------------------------------------------------------===//
// Norms and element-wise kernels
//===----------------------------------------------------------------------===//

/// Backward of norm with all its fused parts (see cpu::normBackward).
/// dWeight/dBias: (group) vectors summed over every group of every row;
/// dShift/dScale: (rows / rowsPerSample) x cols; dSiluGate like x.
struct NormGrads {
  DMat dX;
  void *dWeight = nullptr, *dBias = nullptr;
  DMat dShift, dScale, dSiluGate;
  /// With dX: a gradient that reached x by another path (kern.vjp
  /// input_grad_addend); dX receives the sum, rounded once. May be dX
  /// itself.
  DConstMat dXAddend;
};
void normBackward(Stream stream, DType dtype, DConstMat x, const NormArgs &args, DConstMat dOut,
                  const NormGrads &grads, Workspace ws);
size_t normBackwardWorkspaceBytes(int64_t rows, int64_t cols, int64_t group, int64_t rowsPerSample,
                                  DType dtype);

/// dX = dOut ⊙ act'(x), n contiguous values.
void activateBackward(Stream stream, DType dtype, const void *x, const void *dOut, int64_t n, Act act,
                      void *dX);
/// dX = dOut ⊙ (1 + scale); dShift = Σ_tokens dOut; dScale = Σ_tokens dOut ⊙ x.
void modulateBackward(Stream stream, DType dtype, DConstMat x, DConstMat scale, int64_t rowsPerSample,
                      DConstMat dOut, DMat dX, DMat dShift, DMat dScale);
/// dGate = Σ_tokens dOut ⊙ y; dY = gate ⊙ dOut.
void gatedResidualBackward(Stream stream, DType dtype, DConstMat gate, DConstMat y, int64_t rowsPerSample,
                           DConstMat dOut, DMat dGate, DMat dY);
/// Suffix-broadcast products and sums (rhs repeats every rhsCount values).
void mulBroadcastBackward(Stream stream, DType dtype, const void *lhs, int64_t count, const void *rhs,
                          int64_t rhsCount, const void *dOut, void *dLhs, void *dRhs);
void addBroadcastBackwardRhs(Stream stream, DType dtype, const void *dOut, int64_t count, int64_t rhsCount,
                             void *dRhs);

//===----------------------------------------------------------------------===//
// Token mixers
//===----------------------------------------------------------------------===//

/// Backward of attention: dQ, dK, dV in the layouts of q, k, v (possibly
/// column slices of one packed gradient), head dims 64, 72, 88, 128 (any
/// multiple of 8 up to 128), lq != lk. The softmax statistics are
/// recomputed, unless the forward's are given: its log-sum-exp
/// (cuda::attention's `logsumexp`) together with its output `savedOut`
/// (laid out like dOut), from which Δ = rowsum(dOut ⊙ out). Each non-null
/// pointer of `sums` receives the sum over all rows of its gradient (a
/// vector of the gradient's width, in dtype, summed in f32): the q/k/v
/// bias gradient, taken from the gradient tiles before they leave the chip
/// (kern.vjp column_sums); a sum needs its gradient.
struct AttentionGradSums {
  void *q = nullptr, *k = nullptr, *v = nullptr;
  bool any() const { return q != nullptr || k != nullptr || v != nullptr; }
};
void attentionBackward(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, int64_t batch,
                       int64_t lq, int64_t lk, int64_t heads, float scale, DConstMat dOut, DMat dQ,
                       DMat dK, DMat dV, Workspace ws, const float *savedLogsumexp = nullptr,
                       DConstMat savedOut = {}, const AttentionGradSums &sums = {});
/// The workspace attentionBackward needs; with `columnSums`, room for the
/// sums' per-tile partials too (valueDim: v's head width).
size_t attentionBackwardWorkspaceBytes(int64_t batch, int64_t lq, int64_t lk, int64_t heads,
                                       int64_t headDim, DType dtype, int64_t valueDim = 0,
                                       bool columnSums = false);

/// Backward of chunked gated linear attention (see cpu::glaBackward).
void glaBackward(Stream stream, DType dtype, DConstMat q, DConstMat k, DConstMat v, DConstMat gateLogits,
                 int64_t batch, int64_t t, int64_t heads, float scale, float normalizer, int64_t chunk,
                 DConstMat dOut, DMat dQ, DMat dK, DMat dV, DMat dGateLogits, Workspace ws);
size_t glaBackwardWorkspaceBytes(int64_t batch, int64_t t, int64_t heads, int64_t dk, int64_t dv,
                                 int64_t chunk);

//===----------------------------------------------------------------------===//
// Mixtures of experts (routing recomputed on the device, no host sync)
//===----------------------------------------------------------------------===//

/// See cpu::moeTokenChoiceBackward; the balance loss's gradient is added
/// when balanceCoef > 0 (its value is not reported).
struct TokenChoiceGrads {
  DMat dX;
  void *dRouter = nullptr;
  void *dGate = nullptr, *dUp = nullptr, *dDown = nullptr;
  void *dSharedGate = nullptr, *dSharedUp = nullptr, *dSharedDown = nullptr;
  DMat dEpilogueGate;
  double balanceCoef = 0;
};
void moeTokenChoiceBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat x, const TokenChoiceArgs &args,
                            DConstMat dOut, const TokenChoiceGrads &grads, Workspace ws);
size_t moeTokenChoiceBackwardWorkspaceBytes(int64_t tokens, int64_t d, const TokenChoiceArgs &args,
                                            DType dtype);

struct ExpertChoiceGrads {
  DMat dX;
  void *dRouter = nullptr, *dW1 = nullptr, *dW2 = nullptr;
  DMat dEpilogueGate;
};
void moeExpertChoiceBackward(Stream stream, Gemm &gemm, DType dtype, DConstMat x,
                             const ExpertChoiceArgs &args, DConstMat dOut, const ExpertChoiceGrads &grads,
                             Workspace ws);
size_t moeExpertChoiceBackwardWorkspaceBytes(int64_t rows, int64_t d, const ExpertChoiceArgs &args,
                                             DType dtype);

//===----------------------------------------------------------------------===//
// Token layout and embeddings
//===----------------------------------------------------------------------===//

/// dWeight (d, c, p, p), dBias (d), dX (NCHW) when wanted.
void patchEmbedBackward(Stream stream, Gemm &gemm, DType dtype, const void *x, int64_t batch, int64_t c,
                        int64_t height, int64_t width, const void *weight, int64_t d, int64_t p,
                        DConstMat dOut, void *dX, void *dWeight, void *dBias, Workspace ws);
size_t patchEmbedBackwardWorkspaceBytes(int64_t batch, int64_t c, int64_t height, int64_t width,
                                        int64_t d, int64_t p, DType dtype);
void unpatchifyBackward(Stream stream, DType dtype, const void *dOut, int64_t batch, int64_t h, int64_t w,
                        int64_t p, int64_t c, DMat dX);
/// dTable: all numClasses + 1 rows written (zero for labels not present).
void labelEmbedBackward(Stream stream, DType dtype, const int32_t *labels, int64_t batch, int64_t numClasses,
                        int64_t d, DConstMat dOut, void *dTable);
void depthwiseConvBackward(Stream stream, DType dtype, DConstMat x, int64_t batch, int64_t h, int64_t w,
                           const void *weight, int64_t k, ScanOrder from, ScanOrder to, DConstMat dOut,
                           DMat dX, void *dWeight, void *dBias, Workspace ws);
size_t depthwiseConvBackwardWorkspaceBytes(int64_t batch, int64_t h, int64_t w, int64_t channels,
                                           int64_t k);
void tokenMeanBackward(Stream stream, DType dtype, DConstMat dOut, int64_t batch, int64_t tokens, DMat dX);
/// Backward of split: the parts' gradients (each rows x cols/count) side by
/// side as the column blocks of `whole` (rows x cols), in one launch.
void splitBackward(Stream stream, DType dtype, const DConstMat *parts, int count, DMat whole);

//===----------------------------------------------------------------------===//
// Losses: per-sample f32 values and the gradient of Σ_n weight·lossScale·loss[n]
//===----------------------------------------------------------------------===//

/// `dtype` is the element type of the tensor operands and of dPrediction;
/// `loss` is f32. `lossScale` is a device f32 (dynamic loss scaling) or
/// null for 1. dPrediction null: the values only.
void ddpmLoss(Stream stream, DType dtype, const void *prediction, const void *xStart, const void *xT,
              const void *noise, const int32_t *timesteps, int64_t n, int64_t c, int64_t hw,
              int64_t numTimesteps, float *loss, float weight, const float *lossScale, void *dPrediction);
void rfLoss(Stream stream, DType dtype, const void *prediction, const void *xStart, const void *noise,
            int64_t n, int64_t c, int64_t cPrediction, int64_t hw, float *loss, float weight,
            const float *lossScale, void *dPrediction);
/// `sigma` is f32 (n values).
void edmLoss(Stream stream, DType dtype, const void *raw, const void *xNoisy, const void *xStart,
             const float *sigma, const int32_t *keep, int64_t kept, int64_t n, int64_t c, int64_t h,
             int64_t w, int64_t patch, double sigmaData, float *loss, float weight, const float *lossScale,
             void *dRaw);

//===----------------------------------------------------------------------===//
// Optimizer: AdamW over every parameter in three launches
//===----------------------------------------------------------------------===//

/// One parameter of a multi-tensor step: its weights (element type of the
/// plan), gradient (same type), and f32 state. master is null when the
/// weights are f32 (they are their own master copy); ema may be null.
struct AdamWTensor {
  void *weight = nullptr;
  const void *grad = nullptr;
  float *master = nullptr, *m = nullptr, *v = nullptr, *ema = nullptr;
  int64_t n = 0;
};

struct AdamWHyper {
  float lr, beta1, beta2, eps, weightDecay, gradClip, emaDecay;
  /// 1 / (1 − β^step) of both moments.
  float correction1, correction2;
  float lossScale;
};

/// A fused AdamW over a fixed set of tensors: the global gradient norm
/// (fixed-order reduction), then clipping, the update, the rounded
/// 16-bit weights and the EMA in one pass over fixed-size chunks of every
/// tensor. Owns its device chunk table; step() only enqueues work.
class MultiTensorAdamW {
public:
  MultiTensorAdamW(std::vector<AdamWTensor> tensors, DType dtype);
  ~MultiTensorAdamW();
  MultiTensorAdamW(const MultiTensorAdamW &) = delete;
  MultiTensorAdamW &operator=(const MultiTensorAdamW &) = delete;
  /// Enqueues the step; the unscaled global gradient norm lands in
  /// *deviceNorm (an f64 on the device). Non-finite norm: nothing changes.
  void step(Stream stream, const AdamWHyper &hyper, double *deviceNorm);

  /// The step in pieces, for an optimizer overlapped with the backward pass
  /// (no clipping, no loss scaling: each tensor's update needs only its own
  /// gradient): setHyper() enqueues the copy of the step's hyperparameters
  /// to the device, where stepTensors() reads them (so a captured graph
  /// replays with each step's values); stepTensors() updates tensors
  /// [first, first + count) and keeps their chunks' squared-gradient sums;
  /// finishNorm() writes the global norm from all of them. Every tensor
  /// must be stepped once between setHyper() and finishNorm(). The
  /// arithmetic is step()'s, so the results are the same bits.
  void setHyper(Stream stream, const AdamWHyper &hyper);
  void stepTensors(Stream stream, size_t first, size_t count);
  void finishNorm(Stream stream, double *deviceNorm);
  size_t tensorCount() const;

  /// Device bytes of the chunk table and partial sums.
  size_t deviceBytes() const;

private:
  struct Impl;
  Impl *impl;
};

} // namespace diffrt::cuda

#endif // DIFFRT_CUDAGRADKERNELS_H
