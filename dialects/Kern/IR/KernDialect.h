//===- KernDialect.h - the kern dialect -------------------------*- C++ -*-===//
//
// Declares the kern dialect and its ops: fused kernels of the kernel-level
// program.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_DIALECTS_KERN_IR_KERNDIALECT_H
#define DIFFC_DIALECTS_KERN_IR_KERNDIALECT_H

#include "dialects/Dit/IR/DitDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Kern/IR/KernOpsDialect.h.inc"
#include "dialects/Kern/IR/KernEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Kern/IR/KernAttrs.h.inc"

#define GET_OP_CLASSES
#include "dialects/Kern/IR/KernOps.h.inc"

#endif // DIFFC_DIALECTS_KERN_IR_KERNDIALECT_H
