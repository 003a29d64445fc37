//===- DitFolders.cpp - dit folds and canonicalisation patterns -----------===//
//
// Algebraic simplifications that need no cost model: identity modulation,
// one-way splits, and scan-order changes that cancel or compose.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dit/IR/DitDialect.h"

#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace diffc::dit;

/// modulate(x, 0, 0) = x.
OpFoldResult ModulateOp::fold(FoldAdaptor) {
  if (matchPattern(getShift(), m_AnyZeroFloat()) && matchPattern(getScale(), m_AnyZeroFloat()))
    return getInput();
  return {};
}

/// A split into one part is the input itself.
LogicalResult SplitOp::fold(FoldAdaptor, SmallVectorImpl<OpFoldResult> &results) {
  if (getNumResults() != 1)
    return failure();
  results.push_back(getInput());
  return success();
}

/// Reordering from an order to itself is the identity.
OpFoldResult ReorderTokensOp::fold(FoldAdaptor) {
  if (getFrom() == getTo())
    return getInput();
  return {};
}

namespace {
/// reorder(reorder(x, a -> b), b -> c) = reorder(x, a -> c): a scan order is
/// a fixed permutation of grid cells, so consecutive changes compose into one.
struct ComposeReorders : OpRewritePattern<ReorderTokensOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReorderTokensOp op, PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<ReorderTokensOp>();
    if (!inner || inner.getGrid() != op.getGrid() || inner.getTo() != op.getFrom())
      return failure();
    rewriter.replaceOpWithNewOp<ReorderTokensOp>(op, inner.getInput(), op.getGridAttr(),
                                                 inner.getFromAttr(), op.getToAttr());
    return success();
  }
};
} // namespace

void ReorderTokensOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                                  MLIRContext *context) {
  results.add<ComposeReorders>(context);
}
