//===- KernFuseNormModulate.cpp - norm + adaLN modulation -----------------===//
//
// modulate(norm(x), shift, scale) -> one norm kernel with shift and scale.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSENORMMODULATE
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct FuseModulate : OpRewritePattern<dit::ModulateOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::ModulateOp op, PatternRewriter &rewriter) const override {
    auto norm = op.getInput().getDefiningOp<kern::NormOp>();
    if (!norm || !norm->hasOneUse() || norm.getShift() || norm.getSiluGate())
      return failure();
    rewriter.replaceOpWithNewOp<kern::NormOp>(
        op, op.getType(), Type(), norm.getInput(), norm.getWeight(), norm.getBias(), op.getShift(),
        op.getScale(), Value(), Value(), Value(), norm.getKindAttr(), norm.getEpsilonAttr(),
        norm.getGroupSizeAttr());
    rewriter.eraseOp(norm);
    return success();
  }
};

struct KernFuseNormModulate : diffc::impl::KernFuseNormModulateBase<KernFuseNormModulate> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseModulate>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
