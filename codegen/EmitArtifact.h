//===- EmitArtifact.h - planned kern program to a .dfx artifact -*- C++ -*-===//
//
// The last step of `diffc compile`: turns a module at the kern-planned phase
// into the runtime's Plan (values, parameter table, kernels of the "init"
// and "forward" entries) and writes it.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_CODEGEN_EMITARTIFACT_H
#define DIFFC_CODEGEN_EMITARTIFACT_H

#include "diffrt/Plan.h"

#include "mlir/IR/BuiltinOps.h"

namespace diffc::codegen {

/// Builds the plan of a planned module; emits an error on the offending op
/// and fails if something has no kernel.
mlir::FailureOr<diffrt::Plan> buildPlan(mlir::ModuleOp module, llvm::StringRef target);

/// buildPlan + diffrt::writeArtifact.
mlir::LogicalResult emitArtifact(mlir::ModuleOp module, llvm::StringRef target,
                                 llvm::StringRef path);

} // namespace diffc::codegen

#endif // DIFFC_CODEGEN_EMITARTIFACT_H
