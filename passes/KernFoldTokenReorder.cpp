//===- KernFoldTokenReorder.cpp - scan-order changes into dwconv ----------===//
//
// reorder_tokens(dwconv(x), a -> b) -> dwconv writing its output in order b:
// DiG's flip/transpose between blocks becomes part of the convolution's
// output indexing instead of a copy.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFOLDTOKENREORDER
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct FoldIntoDwConv : OpRewritePattern<dit::ReorderTokensOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::ReorderTokensOp op, PatternRewriter &rewriter) const override {
    auto conv = op.getInput().getDefiningOp<kern::DwConvOp>();
    if (!conv || !conv->hasOneUse() || conv.getFrom() != conv.getTo() ||
        conv.getGrid() != op.getGrid())
      return failure();
    rewriter.replaceOpWithNewOp<kern::DwConvOp>(op, op.getType(), conv.getInput(),
                                                conv.getWeight(), conv.getBias(),
                                                conv.getGridAttr(), op.getFromAttr(),
                                                op.getToAttr());
    rewriter.eraseOp(conv);
    return success();
  }
};

struct KernFoldTokenReorder : diffc::impl::KernFoldTokenReorderBase<KernFoldTokenReorder> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldIntoDwConv>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
