//===- KernDialect.cpp - kern dialect registration ------------------------===//
//
// Registers the kern ops and attributes.
//
//===----------------------------------------------------------------------===//

#include "dialects/Kern/IR/KernDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "mlir/Transforms/InliningUtils.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace diffc::kern;

#include "dialects/Kern/IR/KernOpsDialect.cpp.inc"
#include "dialects/Kern/IR/KernEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/Kern/IR/KernAttrs.cpp.inc"

namespace {
/// Every op of the dialect is pure, so inlining a block function that holds
/// them is always legal.
struct PureOpsInliner : public DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;
  bool isLegalToInline(Operation *, Region *, bool, IRMapping &) const final { return true; }
};
} // namespace

void KernDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/Kern/IR/KernOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Kern/IR/KernAttrs.cpp.inc"
      >();
  addInterfaces<PureOpsInliner>();
}
