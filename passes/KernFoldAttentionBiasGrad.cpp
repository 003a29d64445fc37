//===- KernFoldAttentionBiasGrad.cpp - qkv bias gradient from attention ---===//
//
// kern.vjp "kern.gemm" (the q/k/v product, plain: no activation, no gated
// residual) whose incoming gradient is the split backward that joins the
// q, k and v gradients of one attention backward (kern.attention, or
// dit.attention where no statistics are saved): the attention
// backward gets column_sums and returns each gradient's row sums too, a
// new split backward joins those sums into the bias gradient, and the
// dense backward no longer computes it (no pass over the joined gradient).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFOLDATTENTIONBIASGRAD
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// Forward slots of kern.gemm: input, weight, bias, residual, gate.
constexpr int64_t kBiasSlot = 2, kResidualSlot = 3, kGateSlot = 4;

/// A dense backward whose bias gradient is the plain row sum of its
/// incoming gradient: bias present and wanted, no activation, no gated
/// residual, one incoming gradient.
bool plainBiasGrad(kern::VjpOp vjp) {
  if (vjp.getForward() != "kern.gemm" || vjp.getColumnSums())
    return false;
  ArrayRef<int64_t> present = vjp.getPresent();
  if (!llvm::is_contained(present, kBiasSlot) || llvm::is_contained(present, kResidualSlot) ||
      llvm::is_contained(present, kGateSlot) || !llvm::is_contained(vjp.getGradsOf(), kBiasSlot))
    return false;
  auto act = vjp.getForwardAttrs().getAs<kern::ActAttr>("act");
  return (!act || act.getValue() == kern::Act::None) && vjp.getIncoming().size() == 1;
}

/// The attention backward all of whose q, k and v gradients, and nothing
/// else, the split backward `split` joins, each used only there.
kern::VjpOp attentionOfParts(kern::VjpOp split) {
  ValueRange parts = split.getIncoming();
  if (parts.empty())
    return {};
  auto attention = parts.front().getDefiningOp<kern::VjpOp>();
  if (!attention || (attention.getForward() != "kern.attention" && attention.getForward() != "dit.attention") ||
      attention.getColumnSums() ||
      attention.getGradsOf().size() != parts.size())
    return {};
  for (Value part : parts)
    if (part.getDefiningOp() != attention.getOperation() || !part.hasOneUse())
      return {};
  return attention;
}

struct KernFoldAttentionBiasGrad : diffc::impl::KernFoldAttentionBiasGradBase<KernFoldAttentionBiasGrad> {
  void runOnOperation() override {
    SmallVector<kern::VjpOp> dense;
    getOperation().walk([&](kern::VjpOp vjp) {
      if (plainBiasGrad(vjp))
        dense.push_back(vjp);
    });
    for (kern::VjpOp gemm : dense) {
      Value joined = gemm.getIncoming().front();
      auto split = joined.getDefiningOp<kern::VjpOp>();
      if (!split || split.getForward() != "dit.split" || split.getNumResults() != 1 || !joined.hasOneUse())
        continue;
      kern::VjpOp attention = attentionOfParts(split);
      if (!attention)
        continue;
      MLIRContext *ctx = &getContext();

      // The attention backward, now also summing its gradients.
      OpBuilder b(attention);
      SmallVector<Type> types(attention.getResultTypes());
      for (Type t : attention.getResultTypes()) {
        auto grad = cast<RankedTensorType>(t);
        types.push_back(RankedTensorType::get({grad.getShape().back()}, grad.getElementType()));
      }
      auto summing = b.create<kern::VjpOp>(
          attention.getLoc(), types, attention.getInputs(), attention.getForwardAttr(),
          attention.getForwardAttrs(), attention.getPresentAttr(), attention.getGradsOfAttr(),
          attention.getLossWeightAttr(), attention.getNumSavedAttr(), kern::ActAttr(), UnitAttr(),
          UnitAttr::get(ctx));
      const size_t grads = attention.getNumResults();
      attention.replaceAllUsesWith(summing.getGradients());
      attention.erase();

      // The bias gradient: the sums joined in the order the split joins
      // their gradients (the bias stands in for the split's input, whose
      // last dimension it has).
      ArrayRef<int64_t> present = gemm.getPresent();
      Value bias = gemm.getInputs()[llvm::find(present, kBiasSlot) - present.begin()];
      SmallVector<Value> sumInputs{bias};
      for (Value part : split.getIncoming())
        sumInputs.push_back(summing.getResult(grads + cast<OpResult>(part).getResultNumber()));
      b.setInsertionPointAfter(summing);
      auto biasGrad = b.create<kern::VjpOp>(
          split.getLoc(), TypeRange{bias.getType()}, sumInputs, split.getForwardAttr(), split.getForwardAttrs(),
          b.getDenseI64ArrayAttr({0}), b.getDenseI64ArrayAttr({0}), FloatAttr(), b.getI64IntegerAttr(0),
          kern::ActAttr(), UnitAttr(), UnitAttr());

      // The dense backward without its bias gradient.
      SmallVector<int64_t> gradsOf;
      SmallVector<Type> gemmTypes;
      for (auto [i, slot] : llvm::enumerate(gemm.getGradsOf()))
        if (slot != kBiasSlot) {
          gradsOf.push_back(slot);
          gemmTypes.push_back(gemm.getResult(i).getType());
        }
      b.setInsertionPoint(gemm);
      auto rest = b.create<kern::VjpOp>(gemm.getLoc(), gemmTypes, gemm.getInputs(), gemm.getForwardAttr(),
                                        gemm.getForwardAttrs(), gemm.getPresentAttr(),
                                        b.getDenseI64ArrayAttr(gradsOf), gemm.getLossWeightAttr(),
                                        gemm.getNumSavedAttr(), gemm.getInputGradActAttr(),
                                        gemm.getInputGradAddendAttr(), UnitAttr());
      for (auto [i, slot] : llvm::enumerate(gemm.getGradsOf())) {
        Value replacement = slot == kBiasSlot
                                ? biasGrad.getResult(0)
                                : rest.getResult(llvm::find(gradsOf, slot) - gradsOf.begin());
        gemm.getResult(i).replaceAllUsesWith(replacement);
      }
      gemm.erase();
    }
  }
};

} // namespace
