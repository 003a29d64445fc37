//===- KernSetPrecision.cpp - choose the element type of the program ------===//
//
// Everything becomes the requested dtype except the values whose precision
// the spec requires: the time input and the sinusoidal tables stay f32 and
// are converted where they are consumed; in a training program the
// per-sample losses (f32 by definition), EDM's noise levels and the
// attention log-sum-exp saved for the backward stay f32 too, while the
// gradients take the type of what they differentiate.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

namespace diffc {
#define GEN_PASS_DEF_KERNSETPRECISION
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

bool isF32Tensor(Type t) {
  auto r = dyn_cast<RankedTensorType>(t);
  return r && r.getElementType().isF32();
}

RankedTensorType withElement(Type t, Type element) {
  auto r = cast<RankedTensorType>(t);
  return RankedTensorType::get(r.getShape(), element);
}

/// Ops whose results the spec keeps in f32 (converted where consumed).
bool producesF32(Operation *op) {
  return isa<dit::TimestepEmbedOp, dit::SinCosPosEmbedOp>(op);
}

/// Losses: per-sample f32 values by definition (their result type is
/// inferred as f32), returned as they are; only their inputs are 16-bit.
bool isLoss(Operation *op) {
  return isa<dit::DdpmLossOp, dit::RfLossOp, dit::EdmLossOp, dit::MoeBalanceLossOp>(op);
}

/// Arguments that stay f32: the time input of the sinusoidal embedding and
/// EDM's noise levels, which the loss reads in f32.
bool keepsF32(BlockArgument arg) {
  return llvm::any_of(arg.getUses(), [](OpOperand &use) {
    Operation *u = use.getOwner();
    if (isa<dit::TimestepEmbedOp>(u))
      return true;
    if (auto edm = dyn_cast<dit::EdmLossOp>(u))
      return use.get() == edm.getSigma();
    if (auto vjp = dyn_cast<kern::VjpOp>(u)) {
      // Operand i of a vjp is forward slot present[i]; sigma is slot 3.
      ArrayRef<int64_t> present = vjp.getPresent();
      unsigned i = use.getOperandNumber();
      return vjp.getForward() == "dit.edm_loss" && i < present.size() && present[i] == 3;
    }
    return false;
  });
}

struct KernSetPrecision : diffc::impl::KernSetPrecisionBase<KernSetPrecision> {
  using KernSetPrecisionBase::KernSetPrecisionBase;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isDeclaration())
      return;
    Builder b(&getContext());
    Type target;
    if (dtype == "f32")
      return;
    if (dtype == "f16")
      target = b.getF16Type();
    else if (dtype == "bf16")
      target = b.getBF16Type();
    else {
      func.emitError() << "kern-set-precision: dtype must be f32, f16 or bf16, got '" << dtype
                       << "'";
      return signalPassFailure();
    }

    Block &entry = func.getBody().front();
    for (BlockArgument arg : entry.getArguments()) {
      if (!isF32Tensor(arg.getType()))
        continue;
      if (!keepsF32(arg))
        arg.setType(withElement(arg.getType(), target));
    }

    OpBuilder builder(&getContext());
    func.walk([&](Operation *op) {
      if (isa<kern::CastOp>(op) || isLoss(op))
        return;
      for (Value result : op->getResults()) {
        if (!isF32Tensor(result.getType()))
          continue;
        // Softmax statistics are f32 whatever the element type (kern.attention C5).
        if (auto attention = dyn_cast<kern::AttentionOp>(op); attention && result == attention.getLogsumexp())
          continue;
        if (!producesF32(op)) {
          result.setType(withElement(result.getType(), target));
          continue;
        }
        builder.setInsertionPointAfter(op);
        auto cast = builder.create<kern::CastOp>(op->getLoc(),
                                                 withElement(result.getType(), target), result);
        result.replaceAllUsesExcept(cast, cast);
      }
    });

    Operation *terminator = entry.getTerminator();
    func.setType(FunctionType::get(&getContext(), entry.getArgumentTypes(),
                                   terminator->getOperandTypes()));
  }
};

} // namespace
