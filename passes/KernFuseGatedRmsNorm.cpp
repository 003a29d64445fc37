//===- KernFuseGatedRmsNorm.cpp - SiLU output gate into the norm ----------===//
//
// mul(norm(o), silu(g)) -> norm with a silu_gate (DiG's RMSNorm-gated output).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSEGATEDRMSNORM
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct FuseSiluGate : OpRewritePattern<dit::MulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::MulOp op, PatternRewriter &rewriter) const override {
    auto match = [](Value a, Value b) -> std::pair<kern::NormOp, dit::SiluOp> {
      auto norm = a.getDefiningOp<kern::NormOp>();
      auto silu = b.getDefiningOp<dit::SiluOp>();
      if (!norm || !silu || !norm->hasOneUse() || !silu->hasOneUse() || norm.getSiluGate() ||
          norm.getShift() || a.getType() != b.getType())
        return {};
      return {norm, silu};
    };
    auto [norm, silu] = match(op.getLhs(), op.getRhs());
    if (!norm)
      std::tie(norm, silu) = match(op.getRhs(), op.getLhs());
    if (!norm)
      return failure();
    rewriter.replaceOpWithNewOp<kern::NormOp>(
        op, op.getType(), Type(), norm.getInput(), norm.getWeight(), norm.getBias(), Value(), Value(),
        silu.getInput(), Value(), Value(), norm.getKindAttr(), norm.getEpsilonAttr(), norm.getGroupSizeAttr());
    rewriter.eraseOp(norm);
    rewriter.eraseOp(silu);
    return success();
  }
};

struct KernFuseGatedRmsNorm : diffc::impl::KernFuseGatedRmsNormBase<KernFuseGatedRmsNorm> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseSiluGate>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
