//===- KernFuseGatedResidual.cpp - residual + gate * y into y's producer --===//
//
// gated_residual(r, g, y) where y comes from a gemm, swiglu or moe kernel ->
// that kernel with the residual epilogue.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSEGATEDRESIDUAL
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct FuseIntoProducer : OpRewritePattern<dit::GatedResidualOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::GatedResidualOp op, PatternRewriter &rewriter) const override {
    Operation *producer = op.getUpdate().getDefiningOp();
    if (!producer || !producer->hasOneUse())
      return failure();
    Value r = op.getResidual(), g = op.getGate();
    if (auto gemm = dyn_cast<kern::GemmOp>(producer)) {
      if (gemm.getResidual())
        return failure();
      rewriter.replaceOpWithNewOp<kern::GemmOp>(op, op.getType(), Type(), gemm.getInput(),
                                                gemm.getWeight(), gemm.getBias(), r, g,
                                                gemm.getAct());
    } else if (auto swiglu = dyn_cast<kern::SwiGluOp>(producer)) {
      if (swiglu.getResidual())
        return failure();
      rewriter.replaceOpWithNewOp<kern::SwiGluOp>(op, op.getType(), swiglu.getInput(),
                                                  swiglu.getGateWeight(), swiglu.getUpWeight(),
                                                  swiglu.getDownWeight(), r, g);
    } else if (auto moe = dyn_cast<kern::MoeOp>(producer)) {
      if (moe.getResidual())
        return failure();
      rewriter.replaceOpWithNewOp<kern::MoeOp>(
          op, op.getType(), Type(), moe.getInput(), moe.getRouter(), moe.getExpertWeights(),
          moe.getSharedGate(), moe.getSharedUp(), moe.getSharedDown(), r, g, moe.getRouting(),
          moe.getActivationAttr(), moe.getWeightLayoutAttr());
    } else {
      return failure();
    }
    rewriter.eraseOp(producer);
    return success();
  }
};

struct KernFuseGatedResidual : diffc::impl::KernFuseGatedResidualBase<KernFuseGatedResidual> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseIntoProducer>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
