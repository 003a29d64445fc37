//===- KernSetPrecision.cpp - choose the element type of the program ------===//
//
// Everything becomes the requested dtype except the values whose precision
// the spec requires: the time input and the sinusoidal tables stay f32 and
// are converted where they are consumed.
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

/// Ops whose results the spec keeps in f32.
bool producesF32(Operation *op) {
  return isa<dit::TimestepEmbedOp, dit::SinCosPosEmbedOp>(op);
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
      bool keep = llvm::any_of(arg.getUsers(), [](Operation *u) { return isa<dit::TimestepEmbedOp>(u); });
      if (!keep)
        arg.setType(withElement(arg.getType(), target));
    }

    OpBuilder builder(&getContext());
    func.walk([&](Operation *op) {
      if (isa<kern::CastOp>(op))
        return;
      for (Value result : op->getResults()) {
        if (!isF32Tensor(result.getType()))
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
