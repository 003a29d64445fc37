//===- Pointwise.cpp - decoding and CPU evaluation of pointwise programs --===//
//
// The CPU backend runs a generated element-wise kernel by interpreting its
// program over blocks of a row: each instruction is one vectorisable loop
// over the block, so the interpretation cost is per block, not per element.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"
#include "diffrt/Pointwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace diffrt {

int pwArity(PwOp op) {
  switch (op) {
  case PwOp::Input:
  case PwOp::Const:
    return 0;
  case PwOp::Add:
  case PwOp::Sub:
  case PwOp::Mul:
  case PwOp::Div:
  case PwOp::Max:
  case PwOp::Min:
    return 2;
  default:
    return 1;
  }
}

const char *pwOpName(PwOp op) {
  static const char *names[] = {"input", "const", "add", "sub",  "mul", "div",   "max",   "min",
                                "neg",   "exp",   "log", "tanh", "erf", "sqrt", "rsqrt", "abs"};
  auto i = static_cast<int64_t>(op);
  return i >= 0 && i <= static_cast<int64_t>(PwOp::Abs) ? names[i] : "unknown";
}

PwProgram decodePointwise(const std::vector<int64_t> &words, int32_t numInputs, const std::string &where) {
  if (words.empty() || words.size() % 3 != 0)
    fail(where, ": a pointwise program is a non-empty list of (opcode, a, b) triples, got ", words.size(),
         " words");
  PwProgram p;
  p.numInputs = numInputs;
  int64_t n = static_cast<int64_t>(words.size() / 3);
  for (int64_t i = 0; i < n; ++i) {
    int64_t opcode = words[3 * i], a = words[3 * i + 1], b = words[3 * i + 2];
    if (opcode < 0 || opcode > static_cast<int64_t>(PwOp::Abs))
      fail(where, ": pointwise instruction #", i, " has unknown opcode ", opcode);
    PwInstr in;
    in.op = static_cast<PwOp>(opcode);
    if (in.op == PwOp::Input) {
      if (a < 0 || a >= numInputs)
        fail(where, ": pointwise instruction #", i, " reads input #", a, " of a kernel with ", numInputs,
             " inputs");
      in.a = static_cast<int32_t>(a);
    } else if (in.op == PwOp::Const) {
      if (a < 0 || a > 0xffffffffll)
        fail(where, ": pointwise instruction #", i, " has constant bits ", a, " outside 32 bits");
      uint32_t bits = static_cast<uint32_t>(a);
      std::memcpy(&in.value, &bits, 4);
    } else {
      int arity = pwArity(in.op);
      for (int k = 0; k < arity; ++k) {
        int64_t ref = k == 0 ? a : b;
        if (ref < 0 || ref >= i)
          fail(where, ": pointwise instruction #", i, " (", pwOpName(in.op), ") uses value #", ref,
               ", which is not an earlier instruction");
      }
      in.a = static_cast<int32_t>(a);
      in.b = arity == 2 ? static_cast<int32_t>(b) : 0;
    }
    p.code.push_back(in);
  }
  return p;
}

std::vector<int64_t> encodePointwise(const PwProgram &program) {
  std::vector<int64_t> words;
  for (const PwInstr &in : program.code) {
    int64_t a = in.a, b = in.b;
    if (in.op == PwOp::Const) {
      uint32_t bits;
      std::memcpy(&bits, &in.value, 4);
      a = bits;
      b = 0;
    }
    words.insert(words.end(), {static_cast<int64_t>(in.op), a, b});
  }
  return words;
}

namespace cpu {

void pointwise(const PwProgram &program, const ConstMat *inputs, Mat out) {
  constexpr int64_t kBlock = 256;
  const int64_t rows = out.rows, cols = out.cols;
  const size_t n = program.code.size();
  parallelFor(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    std::vector<float> values(n * kBlock);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
        const int64_t len = std::min(kBlock, cols - c0);
        for (size_t i = 0; i < n; ++i) {
          const PwInstr &in = program.code[i];
          float *v = values.data() + i * kBlock;
          const float *a = values.data() + static_cast<size_t>(in.a) * kBlock;
          const float *b = values.data() + static_cast<size_t>(in.b) * kBlock;
          switch (in.op) {
          case PwOp::Input: {
            const ConstMat &x = inputs[in.a];
            if (x.rows * x.cols == 1) {
              std::fill(v, v + len, x.data[0]);
            } else {
              const float *src = x.row(r % x.rows) + c0;
              std::copy(src, src + len, v);
            }
            break;
          }
          case PwOp::Const:
            std::fill(v, v + len, in.value);
            break;
          case PwOp::Add:
            for (int64_t j = 0; j < len; ++j) v[j] = a[j] + b[j];
            break;
          case PwOp::Sub:
            for (int64_t j = 0; j < len; ++j) v[j] = a[j] - b[j];
            break;
          case PwOp::Mul:
            for (int64_t j = 0; j < len; ++j) v[j] = a[j] * b[j];
            break;
          case PwOp::Div:
            for (int64_t j = 0; j < len; ++j) v[j] = a[j] / b[j];
            break;
          case PwOp::Max:
            for (int64_t j = 0; j < len; ++j) v[j] = std::isnan(a[j]) || std::isnan(b[j]) ? NAN : std::max(a[j], b[j]);
            break;
          case PwOp::Min:
            for (int64_t j = 0; j < len; ++j) v[j] = std::isnan(a[j]) || std::isnan(b[j]) ? NAN : std::min(a[j], b[j]);
            break;
          case PwOp::Neg:
            for (int64_t j = 0; j < len; ++j) v[j] = -a[j];
            break;
          case PwOp::Exp:
            for (int64_t j = 0; j < len; ++j) v[j] = std::exp(a[j]);
            break;
          case PwOp::Log:
            for (int64_t j = 0; j < len; ++j) v[j] = std::log(a[j]);
            break;
          case PwOp::Tanh:
            for (int64_t j = 0; j < len; ++j) v[j] = std::tanh(a[j]);
            break;
          case PwOp::Erf:
            for (int64_t j = 0; j < len; ++j) v[j] = std::erf(a[j]);
            break;
          case PwOp::Sqrt:
            for (int64_t j = 0; j < len; ++j) v[j] = std::sqrt(a[j]);
            break;
          case PwOp::Rsqrt:
            for (int64_t j = 0; j < len; ++j) v[j] = 1.0f / std::sqrt(a[j]);
            break;
          case PwOp::Abs:
            for (int64_t j = 0; j < len; ++j) v[j] = std::fabs(a[j]);
            break;
          }
        }
        const float *result = values.data() + (n - 1) * kBlock;
        std::copy(result, result + len, out.row(r) + c0);
      }
    }
  });
}

} // namespace cpu
} // namespace diffrt
