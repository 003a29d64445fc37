//===- DitAttrs.h - dit attributes and enums --------------------*- C++ -*-===//
//
// Routing attributes (#dit.token_choice, #dit.expert_choice) and the enums the
// ops share. Floating-point attribute parameters are f64 APFloats, parsed by the
// FieldParser specialisation below.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_DIALECTS_DIT_IR_DITATTRS_H
#define DIFFC_DIALECTS_DIT_IR_DITATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

namespace mlir {
/// Parses a floating-point attribute parameter (held as an f64 APFloat); MLIR
/// ships integer and string field parsers only.
template <>
struct FieldParser<llvm::APFloat> {
  static FailureOr<llvm::APFloat> parse(AsmParser &parser) {
    double value = 0;
    if (parser.parseFloat(value))
      return failure();
    return llvm::APFloat(value);
  }
};
} // namespace mlir

#include "dialects/Dit/IR/DitEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Dit/IR/DitAttrs.h.inc"

#endif // DIFFC_DIALECTS_DIT_IR_DITATTRS_H
