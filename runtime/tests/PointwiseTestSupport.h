//===- PointwiseTestSupport.h - building pointwise programs in tests -*- C++ -*-===//
//
// The CPU and GPU tests of generated element-wise kernels write their
// programs (diffrt/Pointwise.h) instruction by instruction.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "diffrt/Pointwise.h"

#include <cstdint>

namespace diffrt::testsupport {

/// Appends instructions to a program; each call returns the new value's
/// index.
struct ProgramBuilder {
  PwProgram p;
  explicit ProgramBuilder(int32_t inputs = 0) { p.numInputs = inputs; }
  int32_t push(PwInstr in) {
    p.code.push_back(in);
    return static_cast<int32_t>(p.code.size() - 1);
  }
  int32_t input(int32_t i) { return push({PwOp::Input, i, 0, 0.0f}); }
  int32_t constant(float v) { return push({PwOp::Const, 0, 0, v}); }
  int32_t op(PwOp o, int32_t a, int32_t b = 0) { return push({o, a, b, 0.0f}); }
};

} // namespace diffrt::testsupport
