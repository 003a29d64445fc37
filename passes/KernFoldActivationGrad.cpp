//===- KernFoldActivationGrad.cpp - act'(z) into the next input gradient --===//
//
// kern.vjp "kern.gemm" (consumer, input x = act(z)) producing dx, whose only
// use is the incoming gradient of kern.vjp "kern.gemm" (producer, act,
// saved z): the consumer's vjp gets input_grad_act and z and returns dz;
// the producer's becomes a plain linear layer's backward taking dz.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFOLDACTIVATIONGRAD
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// The forward op's activation recorded in a kern.gemm vjp.
kern::Act actOf(kern::VjpOp vjp) {
  if (auto act = vjp.getForwardAttrs().getAs<kern::ActAttr>("act"))
    return act.getValue();
  return kern::Act::None;
}

/// The gemm backward that can hand its activation step to its consumer: an
/// activation, its pre-activation saved, no gated residual (slots 3, 4),
/// one incoming gradient.
bool foldableProducer(kern::VjpOp vjp) {
  return vjp.getForward() == "kern.gemm" && actOf(vjp) != kern::Act::None &&
         vjp.getNumSaved() == 1 && !llvm::is_contained(vjp.getPresent(), 3) &&
         !llvm::is_contained(vjp.getPresent(), 4) && vjp.getIncoming().size() == 1 &&
         !vjp.getInputGradAct();
}

struct KernFoldActivationGrad : diffc::impl::KernFoldActivationGradBase<KernFoldActivationGrad> {
  void runOnOperation() override {
    SmallVector<kern::VjpOp> producers;
    getOperation().walk([&](kern::VjpOp vjp) {
      if (foldableProducer(vjp))
        producers.push_back(vjp);
    });
    for (kern::VjpOp producer : producers) {
      Value dx = producer.getIncoming().front();
      auto consumer = dx.getDefiningOp<kern::VjpOp>();
      if (!consumer || consumer.getForward() != "kern.gemm" || consumer.getInputGradAct() ||
          !dx.hasOneUse())
        continue;
      // dx must be the consumer's gradient of its input (slot 0).
      unsigned index = cast<OpResult>(dx).getResultNumber();
      if (consumer.getGradsOf()[index] != 0)
        continue;
      Value z = producer.getSaved().front();

      OpBuilder b(consumer);
      consumer->insertOperands(consumer->getNumOperands(), z);
      consumer.setInputGradActAttr(kern::ActAttr::get(b.getContext(), actOf(producer)));

      // The producer: a linear layer's backward (act none, nothing saved)
      // whose incoming gradient is dz.
      b.setInsertionPoint(producer);
      NamedAttrList attrs(producer.getForwardAttrs());
      attrs.set("act", kern::ActAttr::get(b.getContext(), kern::Act::None));
      SmallVector<Value> inputs(producer.getInputs().take_front(producer.getPresent().size()));
      inputs.push_back(dx);
      auto linear = b.create<kern::VjpOp>(producer.getLoc(), producer.getResultTypes(), inputs,
                                          producer.getForwardAttr(), attrs.getDictionary(b.getContext()),
                                          producer.getPresentAttr(), producer.getGradsOfAttr(),
                                          producer.getLossWeightAttr(), b.getI64IntegerAttr(0),
                                          kern::ActAttr(), UnitAttr(), UnitAttr());
      producer.replaceAllUsesWith(linear.getResults());
      producer.erase();
    }
  }
};

} // namespace
