//===- KernFuseResidualNorm.cpp - gated residual into the norm after it ---===//
//
// x1 = kern.gemm(a, w, b) residual x gate g; h = kern.norm(x1, ...)
//   -> y = kern.gemm(a, w, b); h, x1 = kern.norm(y, ...) residual x
//      residual_gate g
// when the norm is x1's first user: the norm forms x + g ⊙ y as it reads
// the row, writes it as its second result, and normalises it, so that x1
// is not written by one pass and read back by the next. The gemm keeps its
// activation (and its pre-activation, which is y itself without one). Runs
// after kern-autodiff: the backward kernels read x1, y and the gate as
// before, from the new ops' results.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSERESIDUALNORM
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// The norm to fuse into: x1's first user in the block, a kern.norm of x1
/// without a residual of its own, before every other user (which then read
/// the norm's sum), or null.
kern::NormOp fusableNorm(kern::GemmOp gemm) {
  Value x1 = gemm.getResult();
  Operation *first = nullptr;
  for (Operation *user : x1.getUsers()) {
    if (user->getBlock() != gemm->getBlock())
      return {};
    if (!first || user->isBeforeInBlock(first))
      first = user;
  }
  auto norm = dyn_cast_or_null<kern::NormOp>(first);
  if (!norm || norm.getInput() != x1 || norm.getResidual() || llvm::count(norm->getOperands(), x1) != 1)
    return {};
  return norm;
}

struct KernFuseResidualNorm : diffc::impl::KernFuseResidualNormBase<KernFuseResidualNorm> {
  void runOnOperation() override {
    SmallVector<kern::GemmOp> gemms;
    getOperation().walk([&](kern::GemmOp g) {
      if (g.getResidual())
        gemms.push_back(g);
    });
    for (kern::GemmOp gemm : gemms) {
      kern::NormOp norm = fusableNorm(gemm);
      if (!norm)
        continue;
      OpBuilder b(gemm);
      const bool keepsPreact = gemm.getPreactivation() && gemm.getAct() != kern::Act::None;
      Type type = gemm.getResult().getType();
      auto product = b.create<kern::GemmOp>(gemm.getLoc(), type, keepsPreact ? type : Type(), gemm.getInput(),
                                            gemm.getWeight(), gemm.getBias(), Value(), Value(), gemm.getAct());
      b.setInsertionPoint(norm);
      auto fused = b.create<kern::NormOp>(norm.getLoc(), norm.getResult().getType(), type, product.getResult(),
                                          norm.getWeight(), norm.getBias(), norm.getShift(), norm.getScale(),
                                          norm.getSiluGate(), gemm.getResidual(), gemm.getGate(),
                                          norm.getKindAttr(), norm.getEpsilonAttr(), norm.getGroupSizeAttr());
      fused->setDiscardableAttrs(norm->getDiscardableAttrDictionary());
      if (Value z = gemm.getPreactivation())
        z.replaceAllUsesWith(keepsPreact ? product.getPreactivation() : product.getResult());
      norm.getResult().replaceAllUsesWith(fused.getResult());
      norm.erase();
      gemm.getResult().replaceAllUsesWith(fused.getSum());
      gemm.erase();
    }
  }
};

} // namespace
