//===- GradNormTest.cpp - tests of the fused norm backward ----------------===//
//
// normBackward for LayerNorm and RMSNorm, over several groups per row and
// a whole-row group, with and without the affine weight/bias, the adaLN
// modulation and the SiLU output gate: every combination, every gradient
// against central differences of norm() on strided views. A long sample
// (several row blocks per sample) exercises the blocked reductions, which
// must also give the same bits on a second run.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

struct NormCase {
  NormKind kind;
  int64_t group;
  bool affine, modulate, gate;
};

void checkNorm(Rng &rng, const NormCase &nc, int64_t rows, int64_t cols, int64_t rowsPerSample) {
  Buffer x = normalBuffer(rng, rows, cols, cols + 1, 1.5);
  // A group whose spread (layer) or size (rms) is small makes the norm
  // strongly curved at the step size of the finite difference; redraw
  // such groups (the tested function is the same, its conditioning is not
  // what the test is about).
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g0 = 0; g0 < cols; g0 += nc.group) {
      for (;;) {
        double mean = 0.0, sq = 0.0;
        for (int64_t j = 0; j < nc.group; ++j)
          mean += x.at(r, g0 + j);
        mean = nc.kind == NormKind::Layer ? mean / double(nc.group) : 0.0;
        for (int64_t j = 0; j < nc.group; ++j)
          sq += (x.at(r, g0 + j) - mean) * (x.at(r, g0 + j) - mean);
        if (std::sqrt(sq / double(nc.group)) >= 0.75)
          break;
        std::vector<float> fresh = rng.normal(nc.group, 1.5);
        for (int64_t j = 0; j < nc.group; ++j)
          x.at(r, g0 + j) = fresh[j];
      }
    }
  std::vector<float> weight = rng.normal(nc.group, 0.5, 1.0), bias = rng.normal(nc.group);
  int64_t samples = rows / rowsPerSample;
  Buffer shift = normalBuffer(rng, samples, cols, cols + 2);
  Buffer scale = normalBuffer(rng, samples, cols, cols + 2, 0.5);
  Buffer siluGate = normalBuffer(rng, rows, cols, cols + 3);
  Buffer dOut = normalBuffer(rng, rows, cols);
  NormArgs args;
  args.kind = nc.kind;
  args.group = nc.group;
  args.eps = 1e-5f;
  if (nc.affine) {
    args.weight = weight.data();
    args.bias = bias.data();
  }
  if (nc.modulate) {
    args.shift = shift.cmat();
    args.scale = scale.cmat();
    args.rowsPerSample = rowsPerSample;
  }
  if (nc.gate)
    args.siluGate = siluGate.cmat();

  Buffer dX = poisonedBuffer(rows, cols, cols + 2),
         dShift = poisonedBuffer(samples, cols, cols + 1);
  Buffer dScale = poisonedBuffer(samples, cols, cols + 1),
         dGate = poisonedBuffer(rows, cols, cols + 1);
  std::vector<float> dW = poisoned(nc.group), dB = poisoned(nc.group);
  NormGrads grads;
  grads.dX = dX.mat();
  if (nc.affine) {
    grads.dWeight = dW.data();
    grads.dBias = dB.data();
  }
  if (nc.modulate) {
    grads.dShift = dShift.mat();
    grads.dScale = dScale.mat();
  }
  if (nc.gate)
    grads.dSiluGate = dGate.mat();
  normBackward(x.cmat(), args, dOut.cmat(), grads);

  auto f = [&] {
    Buffer out(rows, cols);
    norm(x.cmat(), args, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
  expectPaddingIntact("dX", dX);
  if (nc.affine) {
    expectDirectional(rng, "dWeight", operand(weight), gradOf(dW), f);
    expectDirectional(rng, "dBias", operand(bias), gradOf(dB), f);
  }
  if (nc.modulate) {
    expectDirectional(rng, "dShift", operand(shift), gradOf(dShift), f);
    expectDirectional(rng, "dScale", operand(scale), gradOf(dScale), f);
    expectPaddingIntact("dShift", dShift);
  }
  if (nc.gate)
    expectDirectional(rng, "dSiluGate", operand(siluGate), gradOf(dGate), f);
}

TEST(GradNorm, EveryFusedCombination) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (NormKind kind : {NormKind::Layer, NormKind::Rms})
    for (int64_t group : {int64_t{4}, int64_t{12}})
      for (bool affine : {false, true})
        for (bool modulate : {false, true})
          for (bool gate : {false, true}) {
            SCOPED_TRACE(std::string(kind == NormKind::Layer ? "layer" : "rms") + ", group " +
                         std::to_string(group) + (affine ? ", affine" : "") +
                         (modulate ? ", modulate" : "") + (gate ? ", silu gate" : ""));
            checkNorm(rng, {kind, group, affine, modulate, gate}, 6, 12, 3);
          }
}

TEST(GradNorm, LongSamplesUseBlockedSums) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // 16384 / 256 = 64 rows per block: 150-row samples span three blocks.
  checkNorm(rng, {NormKind::Layer, 256, true, true, false}, 300, 256, 150);
  checkNorm(rng, {NormKind::Rms, 64, true, false, true}, 300, 256, 300);
}

TEST(GradNorm, Deterministic) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t rows = 400, cols = 128;
  Buffer x = normalBuffer(rng, rows, cols), dOut = normalBuffer(rng, rows, cols);
  Buffer shift = normalBuffer(rng, 2, cols), scale = normalBuffer(rng, 2, cols);
  std::vector<float> weight = rng.normal(cols), bias = rng.normal(cols);
  NormArgs args;
  args.group = cols;
  args.weight = weight.data();
  args.bias = bias.data();
  args.shift = shift.cmat();
  args.scale = scale.cmat();
  args.rowsPerSample = rows / 2;
  std::vector<float> results[2];
  for (std::vector<float> &r : results) {
    r.assign(static_cast<size_t>(rows * cols + 2 * cols + 4 * cols), 0.0f);
    NormGrads g;
    g.dX = mat(r.data(), rows, cols);
    g.dWeight = r.data() + rows * cols;
    g.dBias = g.dWeight + cols;
    g.dShift = mat(g.dBias + cols, 2, cols);
    g.dScale = mat(g.dBias + 3 * cols, 2, cols);
    normBackward(x.cmat(), args, dOut.cmat(), g);
  }
  EXPECT_TRUE(sameBits(results[0], results[1]));
}

// kern-fold-norm-grad-sum: dX receives the input gradient plus a gradient
// that arrived by another path, from a separate view or in place.
TEST(GradNorm, AddendJoinsTheInputGradient) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t rows = 6, cols = 16;
  Buffer x = normalBuffer(rng, rows, cols), dOut = normalBuffer(rng, rows, cols);
  Buffer shift = normalBuffer(rng, 2, cols), scale = normalBuffer(rng, 2, cols);
  Buffer addend = normalBuffer(rng, rows, cols, cols + 3);
  NormArgs args;
  args.group = cols;
  args.shift = shift.cmat();
  args.scale = scale.cmat();
  args.rowsPerSample = 3;
  auto run = [&](Mat dX, ConstMat plus) {
    Buffer dShift(2, cols), dScale(2, cols);
    NormGrads g;
    g.dX = dX;
    g.dShift = dShift.mat();
    g.dScale = dScale.mat();
    g.dXAddend = plus;
    normBackward(x.cmat(), args, dOut.cmat(), g);
  };
  Buffer alone(rows, cols), summed = poisonedBuffer(rows, cols, cols + 1), inPlace(rows, cols);
  run(alone.mat(), {});
  run(summed.mat(), addend.cmat());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      inPlace.at(r, c) = addend.at(r, c);
      ASSERT_EQ(summed.at(r, c), alone.at(r, c) + addend.at(r, c)) << "row " << r << ", column " << c;
    }
  expectPaddingIntact("dX", summed);
  run(inPlace.mat(), inPlace.cmat());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      ASSERT_EQ(inPlace.at(r, c), summed.at(r, c)) << "in place: row " << r << ", column " << c;

  NormGrads noX;
  noX.dXAddend = addend.cmat();
  EXPECT_DIFFRT_ERROR(normBackward(x.cmat(), args, dOut.cmat(), noX), "normBackward", "dX is not wanted");
  // One row off: element i would read what element i - cols just wrote.
  std::vector<float> shared(static_cast<size_t>((rows + 1) * cols));
  NormGrads skewed;
  skewed.dX = mat(shared.data(), rows, cols);
  skewed.dXAddend = constMat(shared.data() + cols, rows, cols);
  EXPECT_DIFFRT_ERROR(normBackward(x.cmat(), args, dOut.cmat(), skewed), "normBackward",
                      "dXAddend overlaps dX");
}

TEST(GradNorm, ErrorsNameTheProblem) {
  std::vector<float> x(12), dOut(12), dGate(12);
  NormArgs args;
  args.group = 4;
  NormGrads grads;
  grads.dSiluGate = mat(dGate.data(), 3, 4);
  EXPECT_DIFFRT_ERROR(
      normBackward(constMat(x.data(), 3, 4), args, constMat(dOut.data(), 3, 4), grads),
      "normBackward", "dSiluGate");
  args.group = 5;
  EXPECT_DIFFRT_ERROR(
      normBackward(constMat(x.data(), 3, 4), args, constMat(dOut.data(), 3, 4), NormGrads{}),
      "normBackward", "group 5");
}

} // namespace
} // namespace diffrt::cpu::testing
