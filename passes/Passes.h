//===- Passes.h - diffc passes and pipelines --------------------*- C++ -*-===//
//
// Declares every pass (generated from Passes.td) and the named pipelines that
// diffc and diffc-opt share.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_PASSES_PASSES_H
#define DIFFC_PASSES_PASSES_H

#include "dialects/Dit/IR/DitDialect.h"
#include "dialects/Kern/IR/KernDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace diffc {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace diffc

#endif // DIFFC_PASSES_PASSES_H
