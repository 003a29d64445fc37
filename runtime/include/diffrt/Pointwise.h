//===- Pointwise.h - programs of generated element-wise kernels -*- C++ -*-===//
//
// A kern.pointwise op travels in an artifact as a straight-line program over
// f32 scalars: instruction i computes value i from the kernel's inputs,
// constants and earlier values, and the last instruction is the result.
// `diffc compile` encodes it (and, for CUDA artifacts, writes the same
// arithmetic as CUDA source); the runtime decodes and validates it, the CPU
// backend evaluates it, and the CUDA backend launches the generated kernel.
//
// Encoding: three int64 words per instruction, (opcode, a, b). For Input, a
// is the input index; for Const, a holds the f32 bit pattern; for unary ops
// a, and for binary ops a and b, are indices of earlier instructions.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_POINTWISE_H
#define DIFFRT_POINTWISE_H

#include <cstdint>
#include <string>
#include <vector>

namespace diffrt {

enum class PwOp : int64_t {
  Input = 0,
  Const = 1,
  Add = 2,
  Sub = 3,
  Mul = 4,
  Div = 5,
  Max = 6,
  Min = 7,
  Neg = 8,
  Exp = 9,
  Log = 10,
  Tanh = 11,
  Erf = 12,
  Sqrt = 13,
  Rsqrt = 14,
  Abs = 15,
};

/// Number of instruction operands (0 for Input and Const).
int pwArity(PwOp op);
const char *pwOpName(PwOp op);

struct PwInstr {
  PwOp op = PwOp::Input;
  int32_t a = 0, b = 0;
  /// The constant of a Const instruction.
  float value = 0.0f;
};

struct PwProgram {
  std::vector<PwInstr> code;
  int32_t numInputs = 0;
};

/// Decodes and validates `words` for a kernel of `numInputs` inputs: known
/// opcodes, input indices in range, operands referring to earlier
/// instructions, at least one instruction. Throws diffrt::Error prefixed by
/// `where` naming the instruction and the numbers otherwise.
PwProgram decodePointwise(const std::vector<int64_t> &words, int32_t numInputs, const std::string &where);

std::vector<int64_t> encodePointwise(const PwProgram &program);

} // namespace diffrt

#endif // DIFFRT_POINTWISE_H
