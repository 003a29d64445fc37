//===- GradLayoutTest.cpp - tests of the layout and embedding backward ----===//
//
// patchEmbed (image, weight and bias gradients, with positions added),
// unpatchify, labelEmbed (repeated labels and the null class), the
// depth-wise convolution under every pair of scan orders (the fused output
// permutation) and for two kernel sizes, and tokenMean: each gradient
// against central differences of its forward kernel. The gradients of the
// linear kernels are also checked exactly as adjoints where that is cheap.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

TEST(GradPatchEmbed, ImageWeightAndBias) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 2, c = 3, height = 4, width = 6, p = 2, d = 5;
  const int64_t tokens = (height / p) * (width / p);
  std::vector<float> x = rng.normal(batch * c * height * width);
  std::vector<float> weight = rng.normal(d * c * p * p, 0.5), bias = rng.normal(d);
  std::vector<float> pos = rng.normal(tokens * d);
  Buffer dOut = normalBuffer(rng, batch * tokens, d, d + 2);
  std::vector<float> dX = poisoned(x.size()), dW = poisoned(weight.size()), dB = poisoned(d);
  patchEmbedBackward(x.data(), batch, c, height, width, weight.data(), d, p, dOut.cmat(), dX.data(),
                     dW.data(), dB.data());
  auto f = [&] {
    Buffer out(batch * tokens, d);
    patchEmbed(x.data(), batch, c, height, width, weight.data(), bias.data(), d, p, pos.data(),
               out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
  expectDirectional(rng, "dWeight", operand(weight), gradOf(dW), f);
  expectDirectional(rng, "dBias", operand(bias), gradOf(dB), f);
}

TEST(GradUnpatchify, InversePermutation) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 2, h = 2, w = 3, p = 2, c = 3;
  Buffer x = normalBuffer(rng, batch * h * w, p * p * c, p * p * c + 1);
  std::vector<float> dOut = rng.normal(batch * c * h * p * w * p);
  Buffer dX = poisonedBuffer(batch * h * w, p * p * c, p * p * c + 2);
  unpatchifyBackward(dOut.data(), batch, h, w, p, c, dX.mat());
  auto f = [&] {
    std::vector<float> out(dOut.size());
    unpatchify(x.cmat(), batch, h, w, p, c, out.data());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
  expectPaddingIntact("dX", dX);
  // A permutation's adjoint is its inverse: unpatchify(dX) is dOut, bit
  // for bit.
  std::vector<float> back(dOut.size());
  unpatchify(dX.cmat(), batch, h, w, p, c, back.data());
  EXPECT_TRUE(sameBits(back, dOut));
}

TEST(GradLabelEmbed, RepeatedLabelsAndNullClass) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 9, classes = 4, d = 3;
  std::vector<int32_t> labels = {0, 2, 2, 4, 1, 2, 4, 0, 2}; // 3 is never used
  std::vector<float> table = rng.normal((classes + 1) * d);
  Buffer dOut = normalBuffer(rng, batch, d, d + 1);
  std::vector<float> dTable = poisoned(table.size());
  labelEmbedBackward(labels.data(), batch, classes, d, dOut.cmat(), dTable.data());
  auto f = [&] {
    Buffer out(batch, d);
    labelEmbed(labels.data(), batch, table.data(), classes, d, out.data.data());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dTable", operand(table), gradOf(dTable), f);
  for (int64_t j = 0; j < d; ++j)
    EXPECT_EQ(dTable[3 * d + j], 0.0f);
  labels[4] = 5;
  EXPECT_DIFFRT_ERROR(
      labelEmbedBackward(labels.data(), batch, classes, d, dOut.cmat(), dTable.data()),
      "labelEmbedBackward", "sample 4", "label 5");
}

TEST(GradDepthwiseConv, EveryScanOrderPairAndKernelSize) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const ScanOrder orders[] = {ScanOrder::RowMajor, ScanOrder::RowMajorReversed, ScanOrder::ColMajor,
                              ScanOrder::ColMajorReversed};
  for (int64_t k : {int64_t{3}, int64_t{5}})
    for (ScanOrder from : orders)
      for (ScanOrder to : orders) {
        SCOPED_TRACE("k " + std::to_string(k) + ", order " + std::to_string(int(from)) + " -> " +
                     std::to_string(int(to)));
        const int64_t batch = 2, h = 3, w = 4, d = 3, rows = batch * h * w;
        Buffer x = normalBuffer(rng, rows, d, d + 1);
        std::vector<float> weight = rng.normal(d * k * k, 0.5), bias = rng.normal(d);
        Buffer dOut = normalBuffer(rng, rows, d, d + 2);
        Buffer dX = poisonedBuffer(rows, d, d + 1);
        std::vector<float> dW = poisoned(weight.size()), dB = poisoned(d);
        depthwiseConvBackward(x.cmat(), batch, h, w, weight.data(), k, from, to, dOut.cmat(),
                              dX.mat(), dW.data(), dB.data());
        auto f = [&] {
          Buffer out(rows, d);
          depthwiseConv(x.cmat(), batch, h, w, weight.data(), bias.data(), k, from, to, out.mat());
          return dot(dOut, out);
        };
        expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
        expectDirectional(rng, "dWeight", operand(weight), gradOf(dW), f);
        expectDirectional(rng, "dBias", operand(bias), gradOf(dB), f);
        expectPaddingIntact("dX", dX);
      }
}

TEST(GradDepthwiseConv, ManyRowsUseBlockedSums) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 3, h = 12, w = 10, d = 4, k = 3, rows = batch * h * w;
  Buffer x = normalBuffer(rng, rows, d);
  std::vector<float> weight = rng.normal(d * k * k, 0.5), bias = rng.normal(d);
  Buffer dOut = normalBuffer(rng, rows, d, d, 0.1);
  std::vector<float> dW = poisoned(weight.size()), dB = poisoned(d);
  depthwiseConvBackward(x.cmat(), batch, h, w, weight.data(), k, ScanOrder::ColMajor,
                        ScanOrder::RowMajorReversed, dOut.cmat(), Mat{}, dW.data(), dB.data());
  auto f = [&] {
    Buffer out(rows, d);
    depthwiseConv(x.cmat(), batch, h, w, weight.data(), bias.data(), k, ScanOrder::ColMajor,
                  ScanOrder::RowMajorReversed, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dWeight", operand(weight), gradOf(dW), f);
  expectDirectional(rng, "dBias", operand(bias), gradOf(dB), f);
}

TEST(GradTokenMean, SpreadsOverTokens) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t batch = 3, tokens = 7, d = 5;
  Buffer x = normalBuffer(rng, batch * tokens, d, d + 2);
  Buffer dOut = normalBuffer(rng, batch, d, d + 1);
  Buffer dX = poisonedBuffer(batch * tokens, d, d + 1);
  tokenMeanBackward(dOut.cmat(), batch, tokens, dX.mat());
  auto f = [&] {
    Buffer out(batch, d);
    tokenMean(x.cmat(), batch, tokens, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dX", operand(x), gradOf(dX), f);
  expectPaddingIntact("dX", dX);
}

} // namespace
} // namespace diffrt::cpu::testing
