//===- PointwiseCuda.h - CUDA source of generated kernels -------*- C++ -*-===//
//
// The CUDA C++ translation unit of an artifact's kern.pointwise kernels,
// which the runtime compiles through NVRTC (diffrt::cuda::GeneratedKernels).
// Uses no MLIR or LLVM, so runtime-only builds (the GPU tests) use it too.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_CODEGEN_POINTWISECUDA_H
#define DIFFC_CODEGEN_POINTWISECUDA_H

#include "diffrt/Plan.h"

#include <string>

namespace diffc::codegen {

/// Writes the CUDA source of every "kern.pointwise" kernel of `plan` (its
/// "program" attribute and operand types) and names each kernel's function
/// in its "kernel" attribute. Identical programs over the same operand
/// types share a function. Returns "" when the plan has no such kernel.
std::string writeCudaPointwiseKernels(diffrt::Plan &plan);

} // namespace diffc::codegen

#endif // DIFFC_CODEGEN_POINTWISECUDA_H
