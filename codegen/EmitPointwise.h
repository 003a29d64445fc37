//===- EmitPointwise.h - kern.pointwise bodies to programs ------*- C++ -*-===//
//
// kern.pointwise ops become the artifact's straight-line programs
// (diffrt/Pointwise.h); PointwiseCuda.h writes their CUDA source.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_CODEGEN_EMITPOINTWISE_H
#define DIFFC_CODEGEN_EMITPOINTWISE_H

#include "dialects/Kern/IR/KernDialect.h"
#include "diffrt/Pointwise.h"

namespace diffc::codegen {

/// The op's body as a program whose last instruction is the yielded value
/// (only values the result depends on, each once); emits an error on the op
/// and fails on an op the program format cannot express.
mlir::FailureOr<diffrt::PwProgram> encodePointwiseBody(kern::PointwiseOp op);

} // namespace diffc::codegen

#endif // DIFFC_CODEGEN_EMITPOINTWISE_H
