//===- GradElementwiseTest.cpp - tests of the element-wise backward -------===//
//
// activateBackward for every activation (including far tails), modulate,
// the gated residual, broadcast multiply/add (a per-channel operand, a
// scalar, and a count that is not a multiple of the operand's length), each
// against central differences of its forward kernel.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

TEST(GradActivate, EveryActivation) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t n = 300;
  for (Act act : {Act::None, Act::Gelu, Act::GeluTanh, Act::Silu}) {
    SCOPED_TRACE(actName(act));
    std::vector<float> x = rng.normal(n, 3.0), dOut = rng.normal(n), dX = poisoned(n);
    activateBackward(x.data(), dOut.data(), n, act, dX.data());
    auto f = [&] {
      std::vector<float> y = x;
      activate(y.data(), n, act);
      return dot(dOut, y);
    };
    expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
    // Element-wise against the double derivative too, tails included.
    for (int64_t i = 0; i < n; ++i) {
      double h = 1e-4, xi = x[i];
      double d = (applyAct(xi + h, act) - applyAct(xi - h, act)) / (2 * h);
      EXPECT_NEAR(dX[i], dOut[i] * d, 1e-4 * (1.0 + std::fabs(dOut[i]))) << "x = " << xi;
    }
  }
}

TEST(GradModulate, ShiftScaleAndInput) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t rows = 8, cols = 5, rps = 4;
  Buffer x = normalBuffer(rng, rows, cols, cols + 1), shift = normalBuffer(rng, 2, cols, cols + 2);
  Buffer scale = normalBuffer(rng, 2, cols, cols + 1),
         dOut = normalBuffer(rng, rows, cols, cols + 3);
  Buffer dX = poisonedBuffer(rows, cols, cols + 1), dShift = poisonedBuffer(2, cols, cols + 1);
  Buffer dScale = poisonedBuffer(2, cols);
  modulateBackward(x.cmat(), scale.cmat(), rps, dOut.cmat(), dX.mat(), dShift.mat(), dScale.mat());
  auto f = [&] {
    Buffer out(rows, cols);
    modulate(x.cmat(), shift.cmat(), scale.cmat(), rps, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
  expectDirectional(rng, "dShift", operand(shift), gradOf(dShift), f);
  expectDirectional(rng, "dScale", operand(scale), gradOf(dScale), f);
  expectPaddingIntact("dX", dX);
  expectPaddingIntact("dShift", dShift);
}

TEST(GradGatedResidual, GateAndBranch) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // 200 rows per sample: several fixed row blocks per sum.
  const int64_t rows = 400, cols = 6, rps = 200;
  Buffer res = normalBuffer(rng, rows, cols), gate = normalBuffer(rng, 2, cols, cols + 1);
  Buffer y = normalBuffer(rng, rows, cols, cols + 2), dOut = normalBuffer(rng, rows, cols);
  Buffer dGate = poisonedBuffer(2, cols, cols + 2), dY = poisonedBuffer(rows, cols, cols + 1);
  gatedResidualBackward(gate.cmat(), y.cmat(), rps, dOut.cmat(), dGate.mat(), dY.mat());
  auto f = [&] {
    Buffer out(rows, cols);
    gatedResidual(res.cmat(), gate.cmat(), y.cmat(), rps, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dGate", operand(gate), gradOf(dGate), f);
  expectDirectional(rng, "dY", operand(y), gradOf(dY), f);
  expectPaddingIntact("dY", dY);
}

TEST(GradBroadcast, MulAndAdd) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  struct Shape {
    int64_t count, rhsCount;
  };
  // Per-channel, scalar (many copies: blocked sums), and a partial last copy.
  for (Shape s : {Shape{60, 12}, Shape{5000, 1}, Shape{50, 7}}) {
    SCOPED_TRACE("count " + std::to_string(s.count) + ", rhs " + std::to_string(s.rhsCount));
    // Offsets keep the sums over copies (the rhs gradients) away from 0,
    // where the error relative to their size would be all rounding noise.
    std::vector<float> lhs = rng.normal(s.count, 1.0, 0.5), rhs = rng.normal(s.rhsCount);
    std::vector<float> dOut = rng.normal(s.count, 1.0 / std::sqrt(double(s.count) / 60.0), 0.3);
    std::vector<float> dLhs = poisoned(s.count), dRhs = poisoned(s.rhsCount);
    mulBroadcastBackward(lhs.data(), s.count, rhs.data(), s.rhsCount, dOut.data(), dLhs.data(),
                         dRhs.data());
    auto fMul = [&] {
      std::vector<float> out(static_cast<size_t>(s.count));
      for (int64_t i = 0; i < s.count; ++i)
        out[i] = lhs[i] * rhs[i % s.rhsCount];
      return dot(dOut, out);
    };
    expectDirectional(rng, "mul dLhs", operand(lhs), gradOf(dLhs), fMul);
    expectDirectional(rng, "mul dRhs", operand(rhs), gradOf(dRhs), fMul);

    std::vector<float> dAdd = poisoned(s.rhsCount);
    addBroadcastBackwardRhs(dOut.data(), s.count, s.rhsCount, dAdd.data());
    auto fAdd = [&] {
      std::vector<float> out(static_cast<size_t>(s.count));
      for (int64_t i = 0; i < s.count; ++i)
        out[i] = lhs[i] + rhs[i % s.rhsCount];
      return dot(dOut, out);
    };
    expectDirectional(rng, "add dRhs", operand(rhs), gradOf(dAdd), fAdd);
  }
}

} // namespace
} // namespace diffrt::cpu::testing
