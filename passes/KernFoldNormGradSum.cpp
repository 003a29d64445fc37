//===- KernFoldNormGradSum.cpp - residual gradient sums into norm backward ===//
//
// dit.add(a, b) with b the input gradient of a kern.norm backward (its only
// use): the backward takes a as input_grad_addend and returns a + b itself.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Dominance.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFOLDNORMGRADSUM
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// The norm backward whose slot 0 (input) gradient `v` is, if it can take
/// an addend: no addend yet and `v` used only once.
kern::VjpOp foldableNormGrad(Value v) {
  auto vjp = v.getDefiningOp<kern::VjpOp>();
  if (!vjp || vjp.getForward() != "kern.norm" || vjp.getInputGradAddend() || !v.hasOneUse())
    return {};
  if (vjp.getGradsOf()[cast<OpResult>(v).getResultNumber()] != 0)
    return {};
  return vjp;
}

/// Whether every use of op's results is `point` or after it in its block.
bool usedFrom(Operation *op, Operation *point) {
  for (Operation *user : op->getUsers())
    if (user != point && (user->getBlock() != point->getBlock() || !point->isBeforeInBlock(user)))
      return false;
  return true;
}

struct KernFoldNormGradSum : diffc::impl::KernFoldNormGradSumBase<KernFoldNormGradSum> {
  void runOnOperation() override {
    DominanceInfo dominance(getOperation());
    SmallVector<dit::AddOp> sums;
    getOperation().walk([&](dit::AddOp add) { sums.push_back(add); });
    for (dit::AddOp add : sums) {
      for (unsigned side = 0; side < 2; ++side) {
        Value grad = add->getOperand(side), addend = add->getOperand(1 - side);
        kern::VjpOp norm = foldableNormGrad(grad);
        if (!norm || grad.getType() != add.getType() || addend.getType() != add.getType())
          continue;
        // Where the new backward can stand: the old one's place if the
        // addend is defined there, else the sum's if nothing reads the old
        // backward's results before it.
        Operation *at = nullptr;
        if (dominance.properlyDominates(addend, norm))
          at = norm;
        else if (norm->getBlock() == add->getBlock() && usedFrom(norm, add))
          at = add;
        if (at == nullptr)
          continue;
        OpBuilder b(at);
        SmallVector<Value> inputs(norm.getInputs());
        inputs.push_back(addend);
        auto summed = b.create<kern::VjpOp>(norm.getLoc(), norm.getResultTypes(), inputs, norm.getForwardAttr(),
                                            norm.getForwardAttrs(), norm.getPresentAttr(), norm.getGradsOfAttr(),
                                            norm.getLossWeightAttr(), norm.getNumSavedAttr(), kern::ActAttr(),
                                            b.getUnitAttr(), UnitAttr());
        Value total = summed.getResult(cast<OpResult>(grad).getResultNumber());
        norm.replaceAllUsesWith(summed.getResults());
        add.getResult().replaceAllUsesWith(total);
        add.erase();
        norm.erase();
        break;
      }
    }
  }
};

} // namespace
