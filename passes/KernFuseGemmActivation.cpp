//===- KernFuseGemmActivation.cpp - activation into the GEMM epilogue -----===//
//
// gelu/silu(gemm(x)) -> gemm with the activation applied in its epilogue.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSEGEMMACTIVATION
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// The gemm whose plain output `v` is, if it can take an activation.
kern::GemmOp fusibleGemm(Value v) {
  auto gemm = v.getDefiningOp<kern::GemmOp>();
  if (!gemm || !gemm->hasOneUse() || gemm.getAct() != kern::Act::None || gemm.getResidual())
    return {};
  return gemm;
}

void replaceWithActivated(Operation *op, kern::GemmOp gemm, kern::Act act,
                          PatternRewriter &rewriter) {
  rewriter.replaceOpWithNewOp<kern::GemmOp>(op, gemm.getResult().getType(), Type(), gemm.getInput(),
                                            gemm.getWeight(), gemm.getBias(), Value(), Value(),
                                            act);
  rewriter.eraseOp(gemm);
}

struct FuseGelu : OpRewritePattern<dit::GeluOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::GeluOp op, PatternRewriter &rewriter) const override {
    kern::GemmOp gemm = fusibleGemm(op.getInput());
    if (!gemm)
      return failure();
    replaceWithActivated(op, gemm, op.getApproximate() ? kern::Act::GeluTanh : kern::Act::Gelu,
                         rewriter);
    return success();
  }
};

struct FuseSilu : OpRewritePattern<dit::SiluOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::SiluOp op, PatternRewriter &rewriter) const override {
    kern::GemmOp gemm = fusibleGemm(op.getInput());
    if (!gemm)
      return failure();
    replaceWithActivated(op, gemm, kern::Act::Silu, rewriter);
    return success();
  }
};

struct KernFuseGemmActivation : diffc::impl::KernFuseGemmActivationBase<KernFuseGemmActivation> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseGelu, FuseSilu>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
