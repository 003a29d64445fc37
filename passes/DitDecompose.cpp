//===- DitDecompose.cpp - expand composite dit ops ------------------------===//
//
// dit.mlp -> dit.linear, activation, dit.linear, so that kernel selection and
// the epilogue fusions see the two products separately.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_DITDECOMPOSE
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;
using namespace diffc::dit;

namespace {

struct ExpandMlp : OpRewritePattern<MlpOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MlpOp op, PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value h = rewriter.create<LinearOp>(loc, op.getInput(), op.getFc1Weight(), op.getFc1Bias());
    switch (op.getActivation()) {
    case Activation::Silu:
      h = rewriter.create<SiluOp>(loc, h.getType(), h);
      break;
    case Activation::Gelu:
    case Activation::GeluTanh: {
      auto gelu = rewriter.create<GeluOp>(loc, h.getType(), h);
      if (op.getActivation() == Activation::GeluTanh)
        gelu.setApproximate(true);
      h = gelu;
      break;
    }
    case Activation::SwiGlu:
      return rewriter.notifyMatchFailure(op, "swiglu is not an MLP activation");
    }
    rewriter.replaceOpWithNewOp<LinearOp>(op, h, op.getFc2Weight(), op.getFc2Bias());
    return success();
  }
};

struct DitDecompose : diffc::impl::DitDecomposeBase<DitDecompose> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<ExpandMlp>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
