//===- DitOps.h - dit operations --------------------------------*- C++ -*-===//
//
// The generated op classes of the dit dialect. Include DitDialect.h instead.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_DIALECTS_DIT_IR_DITOPS_H
#define DIFFC_DIALECTS_DIT_IR_DITOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Dit/IR/DitAttrs.h"

#define GET_OP_CLASSES
#include "dialects/Dit/IR/DitOps.h.inc"

#endif // DIFFC_DIALECTS_DIT_IR_DITOPS_H
