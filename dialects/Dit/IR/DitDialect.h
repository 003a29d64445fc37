//===- DitDialect.h - the dit dialect ---------------------------*- C++ -*-===//
//
// Declares the dit dialect class, its attributes and its ops. Include this one
// header to use the dialect.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_DIALECTS_DIT_IR_DITDIALECT_H
#define DIFFC_DIALECTS_DIT_IR_DITDIALECT_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Dialect.h"

#include "dialects/Dit/IR/DitOpsDialect.h.inc"

#include "dialects/Dit/IR/DitAttrs.h"
#include "dialects/Dit/IR/DitOps.h"

#endif // DIFFC_DIALECTS_DIT_IR_DITDIALECT_H
