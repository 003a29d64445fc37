//===- KernFuseMoeSharedExpert.cpp - shared expert into the MoE combine ---===//
//
// add(moe(u), swiglu(u)) -> one moe kernel that adds the shared expert.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSEMOESHAREDEXPERT
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct FuseShared : OpRewritePattern<dit::AddOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::AddOp op, PatternRewriter &rewriter) const override {
    auto match = [&](Value a, Value b) -> std::pair<kern::MoeOp, kern::SwiGluOp> {
      auto moe = a.getDefiningOp<kern::MoeOp>();
      auto shared = b.getDefiningOp<kern::SwiGluOp>();
      if (!moe || !shared || !moe->hasOneUse() || !shared->hasOneUse() ||
          moe.getInput() != shared.getInput() || moe.getSharedGate() || moe.getResidual() ||
          shared.getResidual() || !shared.getUpWeight())
        return {};
      return {moe, shared};
    };
    auto [moe, shared] = match(op.getLhs(), op.getRhs());
    if (!moe)
      std::tie(moe, shared) = match(op.getRhs(), op.getLhs());
    if (!moe)
      return failure();
    rewriter.replaceOpWithNewOp<kern::MoeOp>(
        op, op.getType(), Type(), moe.getInput(), moe.getRouter(), moe.getExpertWeights(),
        shared.getGateWeight(), shared.getUpWeight(), shared.getDownWeight(), Value(), Value(),
        moe.getRouting(), moe.getActivationAttr(), moe.getWeightLayoutAttr());
    rewriter.eraseOp(moe);
    rewriter.eraseOp(shared);
    return success();
  }
};

struct KernFuseMoeSharedExpert
    : diffc::impl::KernFuseMoeSharedExpertBase<KernFuseMoeSharedExpert> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseShared>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
