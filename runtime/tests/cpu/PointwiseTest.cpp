//===- PointwiseTest.cpp - generated element-wise programs on the CPU -----===//
//
// Decoding rejects malformed programs with the instruction and the numbers;
// the CPU evaluation matches double-precision references for every opcode,
// for broadcast, single-element, strided and aliased operands.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include "diffrt/Pointwise.h"
#include "../PointwiseTestSupport.h"

#include <cstring>

namespace diffrt::cpu::testing {
namespace {

using testsupport::ProgramBuilder;

double reference(PwOp op, double a, double b) {
  switch (op) {
  case PwOp::Add: return a + b;
  case PwOp::Sub: return a - b;
  case PwOp::Mul: return a * b;
  case PwOp::Div: return a / b;
  case PwOp::Max: return std::max(a, b);
  case PwOp::Min: return std::min(a, b);
  case PwOp::Neg: return -a;
  case PwOp::Exp: return std::exp(a);
  case PwOp::Log: return std::log(a);
  case PwOp::Tanh: return std::tanh(a);
  case PwOp::Erf: return std::erf(a);
  case PwOp::Sqrt: return std::sqrt(a);
  case PwOp::Rsqrt: return 1.0 / std::sqrt(a);
  case PwOp::Abs: return std::fabs(a);
  default: return NAN;
  }
}

TEST(CpuPointwise, EveryOpcodeAgainstDouble) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t rows = 7, cols = 300;
  for (int64_t code = static_cast<int64_t>(PwOp::Add); code <= static_cast<int64_t>(PwOp::Abs); ++code) {
    auto op = static_cast<PwOp>(code);
    SCOPED_TRACE(pwOpName(op));
    // Logarithms and roots of positive values; exp of moderate ones.
    bool positive = op == PwOp::Log || op == PwOp::Sqrt || op == PwOp::Rsqrt;
    Buffer a = normalBuffer(rng, rows, cols, 0, op == PwOp::Exp ? 3.0 : 1.0);
    Buffer b = normalBuffer(rng, rows, cols);
    if (positive)
      for (float &v : a.data)
        v = std::fabs(v) + 0.05f;
    ProgramBuilder pb(2);
    int32_t x = pb.input(0), y = pb.input(1);
    pb.op(op, x, y);
    ConstMat inputs[] = {a.cmat(), b.cmat()};
    Buffer out = poisonedBuffer(rows, cols);
    pointwise(pb.p, inputs, out.mat());
    Ref ref(rows, cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ref(r, c) = reference(op, a.at(r, c), b.at(r, c));
    // One f32 rounding of the operation (libm: within an ulp or two).
    expectMatches(out, ref, 1e-6);
  }
}

TEST(CpuPointwise, SiluOfBiasedSumTimesScalarOnStridedViews) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // y = silu(x + bias) * s over (samples x tokens) rows; bias is one row
  // broadcast over all, s a single element; x and y are column slices of
  // wider buffers.
  const int64_t rows = 2 * 37, cols = 520, ld = 600;
  Buffer x = normalBuffer(rng, rows, cols, ld, 2.0), bias = normalBuffer(rng, 1, cols);
  Buffer s = normalBuffer(rng, 1, 1);
  ProgramBuilder pb(3);
  int32_t sum = pb.op(PwOp::Add, pb.input(0), pb.input(1));
  int32_t e = pb.op(PwOp::Exp, pb.op(PwOp::Neg, sum));
  int32_t silu = pb.op(PwOp::Div, sum, pb.op(PwOp::Add, pb.constant(1.0f), e));
  pb.op(PwOp::Mul, silu, pb.input(2));
  ConstMat inputs[] = {x.cmat(), bias.cmat(), s.cmat()};
  Ref ref(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      double v = double(x.at(r, c)) + bias.at(0, c);
      ref(r, c) = v / (1.0 + std::exp(-v)) * s.at(0, 0);
    }
  Buffer out = poisonedBuffer(rows, cols, ld + 8);
  pointwise(pb.p, inputs, out.mat());
  expectMatches(out, ref, 1e-6);
  // In place: the result overwrites x.
  pointwise(pb.p, inputs, x.mat());
  expectMatches(x, ref, 1e-6);
}

TEST(CpuPointwise, BroadcastOverLeadingRowsAndTokens) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // A (tokens, d) table broadcast over (samples, tokens, d): row r reads
  // table row r mod tokens.
  const int64_t samples = 3, tokens = 5, d = 40;
  Buffer x = normalBuffer(rng, samples * tokens, d), table = normalBuffer(rng, tokens, d);
  ProgramBuilder pb(2);
  pb.op(PwOp::Sub, pb.input(0), pb.input(1));
  ConstMat inputs[] = {x.cmat(), table.cmat()};
  Buffer out = poisonedBuffer(samples * tokens, d);
  pointwise(pb.p, inputs, out.mat());
  Ref ref(samples * tokens, d);
  for (int64_t r = 0; r < samples * tokens; ++r)
    for (int64_t c = 0; c < d; ++c)
      ref(r, c) = double(x.at(r, c)) - table.at(r % tokens, c);
  // One f32 rounding of each difference.
  expectMatches(out, ref, 1e-7);
}

TEST(CpuPointwise, EncodeDecodeRoundTripsConstantBits) {
  ProgramBuilder pb(1);
  int32_t x = pb.input(0);
  int32_t m = pb.op(PwOp::Mul, x, pb.constant(-0.0f));
  pb.op(PwOp::Max, m, pb.constant(1.17549435e-38f));
  PwProgram q = decodePointwise(encodePointwise(pb.p), 1, "k");
  ASSERT_EQ(q.code.size(), pb.p.code.size());
  for (size_t i = 0; i < q.code.size(); ++i) {
    EXPECT_EQ(q.code[i].op, pb.p.code[i].op);
    EXPECT_EQ(std::memcmp(&q.code[i].value, &pb.p.code[i].value, 4), 0) << "instruction " << i;
  }
  EXPECT_TRUE(std::signbit(q.code[1].value));
}

TEST(CpuPointwise, DecodeNamesTheBadInstruction) {
  EXPECT_DIFFRT_ERROR(decodePointwise({}, 1, "kernel #4"), "kernel #4", "non-empty", "0 words");
  EXPECT_DIFFRT_ERROR(decodePointwise({0, 0}, 1, "k"), "2 words");
  EXPECT_DIFFRT_ERROR(decodePointwise({0, 0, 0, 99, 0, 0}, 1, "k"), "instruction #1", "unknown opcode 99");
  EXPECT_DIFFRT_ERROR(decodePointwise({0, 2, 0}, 2, "k"), "instruction #0", "input #2", "2 inputs");
  EXPECT_DIFFRT_ERROR(decodePointwise({0, 0, 0, 2, 0, 1}, 1, "k"), "instruction #1 (add)", "value #1");
  EXPECT_DIFFRT_ERROR(decodePointwise({0, 0, 0, 9, 5, 0}, 1, "k"), "instruction #1 (exp)", "value #5");
  EXPECT_DIFFRT_ERROR(decodePointwise({1, int64_t{1} << 33, 0}, 0, "k"), "constant bits");
}

} // namespace
} // namespace diffrt::cpu::testing
