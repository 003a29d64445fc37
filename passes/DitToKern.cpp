//===- DitToKern.cpp - select kernels for dit ops ---------------------------===//
//
// One-to-one selection of the kernel that implements each dit op that is not
// already a single kernel. Fusion happens afterwards, on kern ops.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace diffc {
#define GEN_PASS_DEF_DITTOKERN
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

struct SelectGemm : OpRewritePattern<dit::LinearOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::LinearOp op, PatternRewriter &rewriter) const override {
    rewriter.replaceOpWithNewOp<kern::GemmOp>(op, op.getType(), Type(), op.getInput(), op.getWeight(),
                                              op.getBias(), Value(), Value(), kern::Act::None);
    return success();
  }
};

template <typename NormOpT, kern::NormKind kind>
struct SelectNorm : OpRewritePattern<NormOpT> {
  using OpRewritePattern<NormOpT>::OpRewritePattern;
  LogicalResult matchAndRewrite(NormOpT op, PatternRewriter &rewriter) const override {
    Value bias;
    if constexpr (std::is_same_v<NormOpT, dit::LayerNormOp>)
      bias = op.getBias();
    rewriter.replaceOpWithNewOp<kern::NormOp>(
        op, op.getType(), Type(), op.getInput(), op.getWeight(), bias, Value(), Value(), Value(), Value(),
        Value(), kind, op.getEpsilon(), op.getGroup());
    return success();
  }
};

struct SelectSwiGlu : OpRewritePattern<dit::SwiGluOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::SwiGluOp op, PatternRewriter &rewriter) const override {
    rewriter.replaceOpWithNewOp<kern::SwiGluOp>(op, op.getType(), op.getInput(),
                                                op.getGateWeight(), op.getUpWeight(),
                                                op.getDownWeight(), Value(), Value());
    return success();
  }
};

struct SelectMoe : OpRewritePattern<dit::MoeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::MoeOp op, PatternRewriter &rewriter) const override {
    rewriter.replaceOpWithNewOp<kern::MoeOp>(
        op, op.getType(), Type(), op.getInput(), op.getRouter(), op.getExpertWeights(), Value(), Value(),
        Value(), Value(), Value(), op.getRouting(), op.getActivationAttr(), op.getWeightLayoutAttr());
    return success();
  }
};

struct SelectDwConv : OpRewritePattern<dit::DepthwiseConv2dOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::DepthwiseConv2dOp op,
                                PatternRewriter &rewriter) const override {
    // The convolution keeps the order its input is in until a reorder folds
    // in; from == to means "no permutation".
    auto same = dit::ScanOrderAttr::get(op.getContext(), dit::ScanOrder::RowMajor);
    rewriter.replaceOpWithNewOp<kern::DwConvOp>(op, op.getType(), op.getInput(), op.getWeight(),
                                                op.getBias(), op.getGridAttr(), same, same);
    return success();
  }
};

struct SelectPatchEmbed : OpRewritePattern<dit::PatchEmbedOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(dit::PatchEmbedOp op, PatternRewriter &rewriter) const override {
    rewriter.replaceOpWithNewOp<kern::PatchEmbedOp>(op, op.getType(), op.getInput(),
                                                    op.getWeight(), op.getBias(), Value());
    return success();
  }
};

struct DitToKern : diffc::impl::DitToKernBase<DitToKern> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<SelectGemm, SelectNorm<dit::LayerNormOp, kern::NormKind::Layer>,
                 SelectNorm<dit::RmsNormOp, kern::NormKind::Rms>, SelectSwiGlu, SelectMoe,
                 SelectDwConv, SelectPatchEmbed>(&getContext());
    if (failed(applyPatternsAndFoldGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
