//===- MoeRouter.cuh - the MoE router, shared by forward and backward -*- CUDA -*-===//
//
// The backward (GradMoe.cu) recomputes the forward's routing instead of
// storing it, so it must select exactly the experts (token choice) and
// tokens (expert choice) the forward selected. A router probability one
// ulp apart flips a near-tie, and two separately compiled copies of the
// same arithmetic need not agree to the last bit (the compiler may
// contract multiply-adds differently in each), so there is one router
// kernel, compiled once in Moe.cu, and the backward launches it through
// route().
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELS_MOEROUTER_CUH
#define DIFFRT_KERNELS_MOEROUTER_CUH

#include "Common.cuh"

namespace diffrt::cuda::moe {

/// Routers up to this size are staged in shared memory as f32; larger ones
/// are converted once into a workspace copy (routerF32) and read through L1.
constexpr size_t kRouterSmemBytes = 100 * 1024;
inline bool routerInSmem(int64_t experts, int64_t d) {
  return static_cast<size_t>(experts * d) * sizeof(float) <= kRouterSmemBytes;
}

struct RouterArgs {
  DType dtype = DType::F32;
  /// rows x d tokens (row stride ldx) and the experts x d router, both in
  /// dtype; routerF32 is the f32 copy when !routerInSmem, else null.
  const void *x = nullptr;
  int64_t ldx = 0, rows = 0, d = 0;
  const void *router = nullptr;
  const float *routerF32 = nullptr;
  int experts = 0, topK = 0;
  bool normalize = false;
  /// Whether rows are read 16 bytes at a time (the forward and the
  /// backward must decide alike: it fixes the order of the sums).
  bool vec = false;
  /// Outputs, each optional: probabilities (rows x experts); token choice:
  /// chosen experts and weights (rows x topK), tokens per expert (added
  /// to), the sum of each token's chosen probabilities.
  float *probs = nullptr;
  int32_t *expertOf = nullptr;
  float *weightOf = nullptr;
  int32_t *counts = nullptr;
  float *totals = nullptr;
};

/// The arguments for tokens x (rows x d view) and an experts x d router,
/// with the 16-byte-read decision made from x alone, so that the forward
/// and the backward make it alike; outputs are set by the caller. A
/// non-null routerF32 (a workspace of experts x d floats, for routers too
/// large for shared memory) receives the router converted to f32 on
/// `stream` first.
inline RouterArgs routerArgs(Stream stream, DType dtype, DConstMat x, const void *router, float *routerF32,
                             int64_t experts) {
  if (routerF32 != nullptr)
    cast(stream, dtype, router, DType::F32, routerF32, experts * x.cols);
  RouterArgs a;
  a.dtype = dtype;
  a.x = x.data;
  a.ldx = x.ld;
  a.rows = x.rows;
  a.d = x.cols;
  a.router = router;
  a.routerF32 = routerF32;
  a.experts = static_cast<int>(experts);
  a.vec = vectorizable(x.data, x.ld, x.cols, dtypeSize(dtype));
  return a;
}

/// Softmax router probabilities of every token and, for token choice, its
/// top-k experts (ties to the lower index), with the arithmetic of
/// cpu::moe*: logits in f32, max subtracted, exponentials summed in
/// expert order.
void route(Stream stream, const RouterArgs &args, bool tokenChoice);

/// out = (residual + gate ⊙) (shared + Σ_j weight_j · y[slot_j]), per token
/// over its topK slots in order (Moe.cu's combine).
void combineTokenChoice(Stream stream, DType dtype, const void *y, const void *shared, const int32_t *slotRow,
                        const float *weightOf, int topK, int64_t rows, int64_t d, const GatedResidual *epilogue,
                        DMat out);

/// The token-choice forward of training, which writes args.activations
/// (kern.moe's C5 layout): the backward's routing and stable permutation,
/// the unfused expert products into the activations, then the combine
/// (GradMoe.cu, beside the backward that reads them).
void tokenChoiceKeepingActivations(Stream stream, DType dtype, DConstMat x, const TokenChoiceArgs &args, DMat out,
                                   Workspace ws);
size_t tokenChoiceKeepingWorkspaceBytes(int64_t tokens, int64_t d, const TokenChoiceArgs &args, DType dtype);

} // namespace diffrt::cuda::moe

#endif // DIFFRT_KERNELS_MOEROUTER_CUH
