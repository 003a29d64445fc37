//===- DitDialect.cpp - dit dialect registration --------------------------===//
//
// Registers the dit ops and attributes and verifies the routing attributes'
// parameters.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dit/IR/DitDialect.h"

#include "mlir/IR/DialectImplementation.h"
#include "mlir/Transforms/InliningUtils.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace diffc::dit;

#include "dialects/Dit/IR/DitOpsDialect.cpp.inc"
#include "dialects/Dit/IR/DitEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/Dit/IR/DitAttrs.cpp.inc"

namespace {
/// Every op of the dialect is pure, so inlining a block function that holds
/// them is always legal.
struct PureOpsInliner : public DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;
  bool isLegalToInline(Operation *, Region *, bool, IRMapping &) const final { return true; }
};
} // namespace

void DitDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/Dit/IR/DitOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Dit/IR/DitAttrs.cpp.inc"
      >();
  addInterfaces<PureOpsInliner>();
}

LogicalResult TokenChoiceAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                      int64_t topK, bool normalize,
                                      llvm::APFloat balanceCoef) {
  if (topK < 1)
    return emitError() << "token_choice needs top_k >= 1, got " << topK;
  if (!(balanceCoef.convertToDouble() >= 0))
    return emitError() << "token_choice needs balance_coef >= 0, got "
                       << llvm::formatv("{0}", balanceCoef.convertToDouble()).str();
  return success();
}

LogicalResult ExpertChoiceAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                       llvm::APFloat capacity) {
  if (!(capacity.convertToDouble() > 0))
    return emitError() << "expert_choice needs capacity > 0, got "
                       << llvm::formatv("{0}", capacity.convertToDouble()).str();
  return success();
}
