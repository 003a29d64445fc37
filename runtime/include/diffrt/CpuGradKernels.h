//===- CpuGradKernels.h - backward kernels of the CPU backend ---*- C++ -*-===//
//
// The vector-Jacobian product of every kernel-level op of CpuKernels.h, in
// float32: given the forward operands (and, where cheaper than recomputing,
// the forward result) and the gradient of the loss with respect to the
// result (`dOut`), each writes the gradients with respect to its operands.
// Outputs are overwritten, never accumulated: when a value feeds several
// kernels, the compiler adds the contributions. A gradient pointer or view
// that is null/empty is not wanted and is not computed. These kernels are
// the CPU training path and the oracle for the GPU backward kernels.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_CPUGRADKERNELS_H
#define DIFFRT_CPUGRADKERNELS_H

#include "diffrt/CpuKernels.h"

namespace diffrt::cpu {

/// Backward of gemm(a, w, bias, act, epilogue): with z = a·wᵀ + bias,
/// y = act(z), out = residual + gate[r / rowsPerGate] ⊙ y (or out = y):
///   dy = gate ⊙ dOut (or dOut);  dGate[n][j] = Σ_{r of sample n} dOut[r][j]·y[r][j];
///   dz = dy ⊙ act'(z);  dA = dz·w;  dW = dzᵀ·a;  dBias = Σ_r dz.
/// (dResidual = dOut is the caller's: it needs no kernel.) z is `preact`
/// when given (gemm's saved pre-activation), else recomputed from a, w and
/// bias; `scratch` holds 2·M·N floats. With `inputAct` (kern.vjp's
/// input_grad_act), a was act(inputPreact) and dA is the gradient with
/// respect to inputPreact: dA = (dz·w) ⊙ inputAct'(inputPreact).
struct GemmGrads {
  Mat dA;                   // M x K
  float *dW = nullptr;      // N x K
  float *dBias = nullptr;   // N
  Mat dGate;                // (M / rowsPerGate) x N
  Act inputAct = Act::None;
  ConstMat inputPreact{};   // M x K, with inputAct
};
void gemmBackward(ConstMat a, ConstMat w, const float *bias, Act act, const GatedResidual *epilogue,
                  ConstMat dOut, const GemmGrads &grads, float *scratch, ConstMat preact = {});

/// Backward of swiglu (same epilogue convention): h = silu(g)⊙u with
/// g = x·gateᵀ, u = x·upᵀ, y = h·downᵀ. dGateW, dUpW may point into one
/// packed (2F x K) gradient. `scratch` holds 4·M·F + M·N floats.
struct SwiGluGrads {
  Mat dX;
  float *dGateW = nullptr, *dUpW = nullptr, *dDownW = nullptr;
  int64_t gateLd = 0, upLd = 0; // row strides of dGateW/dUpW (K for separate weights)
  Mat dGate;                    // epilogue gate gradient
};
void swigluBackward(ConstMat x, ConstMat gate, ConstMat up, ConstMat down, const GatedResidual *epilogue,
                    ConstMat dOut, const SwiGluGrads &grads, float *scratch);

/// Backward of norm (all its fused parts): statistics recomputed from x.
/// dWeight/dBias are (group) vectors summed over all groups of all rows;
/// dShift/dScale are (rows / rowsPerSample) x cols; dSiluGate like x.
struct NormGrads {
  Mat dX;
  float *dWeight = nullptr, *dBias = nullptr;
  Mat dShift, dScale, dSiluGate;
  /// With dX: a gradient that reached x by another path (kern.vjp
  /// input_grad_addend); dX receives the sum. May be dX itself.
  ConstMat dXAddend;
};
void normBackward(ConstMat x, const NormArgs &args, ConstMat dOut, const NormGrads &grads);

/// Backward of attention: dQ, dK, dV with the same layouts as q, k, v
/// (possibly column slices of one packed gradient). The softmax is
/// recomputed; `scratch` holds batch·heads·lq·lk floats at most.
void attentionBackward(ConstMat q, ConstMat k, ConstMat v, int64_t batch, int64_t lq, int64_t lk,
                       int64_t heads, float scale, ConstMat dOut, Mat dQ, Mat dK, Mat dV,
                       float *scratch);

/// Backward of gated linear attention (chunked, exact): dQ, dK, dV and the
/// gradient of the gate logits (through logsigmoid(·)/normalizer).
void glaBackward(ConstMat q, ConstMat k, ConstMat v, ConstMat gateLogits, int64_t batch, int64_t t,
                 int64_t heads, float scale, float normalizer, int64_t chunk, ConstMat dOut, Mat dQ,
                 Mat dK, Mat dV, Mat dGateLogits);

/// Backward of the token-choice MoE (routing as in the forward; the
/// selection is piecewise constant, so gradients flow through the chosen
/// experts' outputs and their softmax weights): dX, the router gradient and
/// each expert's weight gradients (same layouts as the forward's; experts
/// that received no token get zero), the shared expert's, and dGate of the
/// epilogue. If balanceCoef > 0, also adds the gradient of DiT-MoE's
/// balance loss balanceCoef · Σ_i f_i · P̄_i (f counts, no gradient; P̄ the
/// mean router probability) to dRouter and dX, and writes the loss value
/// to *balanceLoss.
struct TokenChoiceGrads {
  Mat dX;
  float *dRouter = nullptr;
  float *dGate = nullptr, *dUp = nullptr, *dDown = nullptr;
  float *dSharedGate = nullptr, *dSharedUp = nullptr, *dSharedDown = nullptr;
  Mat dEpilogueGate;
  double balanceCoef = 0;
  float *balanceLoss = nullptr;
};
void moeTokenChoiceBackward(ConstMat x, const TokenChoiceArgs &args, ConstMat dOut,
                            const TokenChoiceGrads &grads);

/// Backward of the expert-choice MoE (selection fixed by the forward).
struct ExpertChoiceGrads {
  Mat dX;
  float *dRouter = nullptr, *dW1 = nullptr, *dW2 = nullptr;
  Mat dEpilogueGate;
};
void moeExpertChoiceBackward(ConstMat x, const ExpertChoiceArgs &args, ConstMat dOut,
                             const ExpertChoiceGrads &grads);

/// Backward of patchEmbed: dWeight (d, c, p, p), dBias (d); dX (NCHW) if
/// wanted (the input latents normally need none); positions are constant.
void patchEmbedBackward(const float *x, int64_t batch, int64_t c, int64_t height, int64_t width,
                        const float *weight, int64_t d, int64_t p, ConstMat dOut, float *dX,
                        float *dWeight, float *dBias);

/// dOut (batch, c, h·p, w·p) NCHW back to token layout (the inverse
/// permutation of unpatchify).
void unpatchifyBackward(const float *dOut, int64_t batch, int64_t h, int64_t w, int64_t p, int64_t c,
                        Mat dX);

/// dTable (numClasses + 1 rows of d) = Σ over samples with that label.
void labelEmbedBackward(const int32_t *labels, int64_t batch, int64_t numClasses, int64_t d,
                        ConstMat dOut, float *dTable);

/// Depth-wise convolution backward (with the output permutation).
void depthwiseConvBackward(ConstMat x, int64_t batch, int64_t h, int64_t w, const float *weight,
                           int64_t k, ScanOrder from, ScanOrder to, ConstMat dOut, Mat dX,
                           float *dWeight, float *dBias);

/// Element-wise backward: dX = dOut ⊙ act'(x).
void activateBackward(const float *x, const float *dOut, int64_t n, Act act, float *dX);

/// modulate backward: dX = dOut ⊙ (1 + scale); dShift = Σ_tokens dOut;
/// dScale = Σ_tokens dOut ⊙ x.
void modulateBackward(ConstMat x, ConstMat scale, int64_t rowsPerSample, ConstMat dOut, Mat dX,
                      Mat dShift, Mat dScale);

/// gatedResidual backward (dResidual = dOut is the caller's): dGate = Σ_tokens dOut ⊙ y;
/// dY = gate ⊙ dOut.
void gatedResidualBackward(ConstMat gate, ConstMat y, int64_t rowsPerSample, ConstMat dOut,
                           Mat dGate, Mat dY);

/// mul backward with suffix broadcast: dLhs = dOut ⊙ rhs; dRhs = Σ over the
/// broadcast copies of dOut ⊙ lhs. add's backward: dRhs = Σ copies of dOut.
void mulBroadcastBackward(const float *lhs, int64_t count, const float *rhs, int64_t rhsCount,
                          const float *dOut, float *dLhs, float *dRhs);
void addBroadcastBackwardRhs(const float *dOut, int64_t count, int64_t rhsCount, float *dRhs);

/// Gather/scatter backward: maskTokens' is unmaskTokens of the gradient and
/// vice versa, reorderTokens' is the reverse reorder; tokenMean's spreads
/// dOut / tokens.
void tokenMeanBackward(ConstMat dOut, int64_t batch, int64_t tokens, Mat dX);

//===----------------------------------------------------------------------===//
// Losses (per-sample values and their gradients)
//===----------------------------------------------------------------------===//

/// DiT's DDPM loss (spec 2.7) for a linear schedule of numTimesteps steps:
/// loss[n] = mean_{C,H,W} (eps − ε̂)² + VLB term (bits, mean detached,
/// discretised-Gaussian decoder NLL at t = 0). prediction: (N, 2C, H, W);
/// dPrediction gets d(Σ_n weight[n]·loss[n]) (weight = 1/N for a mean).
void ddpmLoss(const float *prediction, const float *xStart, const float *xT, const float *noise,
              const int32_t *timesteps, int64_t n, int64_t c, int64_t hw, int64_t numTimesteps,
              float *loss, const float *weight, float *dPrediction);

/// Rectified flow: loss[n] = mean (noise − x0 − v̂)² over the first C
/// channels of prediction (N, C', H, W); other channels get zero gradient.
void rfLoss(const float *prediction, const float *xStart, const float *noise, int64_t n, int64_t c,
            int64_t cPrediction, int64_t hw, float *loss, const float *weight, float *dPrediction);

/// MicroDiT's EDM loss (spec 4.7, 4.5) with optional kept-patch mask.
void edmLoss(const float *raw, const float *xNoisy, const float *xStart, const float *sigma,
             const int32_t *keep, int64_t kept, int64_t n, int64_t c, int64_t h, int64_t w,
             int64_t patch, double sigmaData, float *loss, const float *weight, float *dRaw);

} // namespace diffrt::cpu

#endif // DIFFRT_CPUGRADKERNELS_H
