//===- KernFusePatchEmbedPositions.cpp - positions into the patch embedding ===//
//
// add(patch_embed(x), pos) with a (T, D) table -> patch_embed with positions.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSEPATCHEMBEDPOSITIONS
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct FusePositions : OpRewritePattern<dit::AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::AddOp op, PatternRewriter &rewriter) const override {
    auto embed = op.getLhs().getDefiningOp<kern::PatchEmbedOp>();
    auto table = cast<RankedTensorType>(op.getRhs().getType());
    if (!embed || !embed->hasOneUse() || embed.getPositions() || table.getRank() != 2)
      return failure();
    rewriter.replaceOpWithNewOp<kern::PatchEmbedOp>(op, op.getType(), embed.getInput(),
                                                    embed.getWeight(), embed.getBias(),
                                                    op.getRhs());
    rewriter.eraseOp(embed);
    return success();
  }
};

struct KernFusePatchEmbedPositions
    : diffc::impl::KernFusePatchEmbedPositionsBase<KernFusePatchEmbedPositions> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FusePositions>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
