//===- LayoutTest.cpp - tests of the token layout kernels -----------------===//
//
// Scan orders (hand-written tables, all 16 reorderings, DiG's period-4
// schedule replayed with explicit flips and transposes), the depth-wise
// convolution with its permuted output, patch embedding, unpatchify (a
// hand-written example and the inverse of its layout), token masking and
// unmasking with their index checks, and the token mean.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include <algorithm>
#include <numeric>

namespace diffrt::cpu::testing {
namespace {

constexpr ScanOrder kOrders[] = {ScanOrder::RowMajor, ScanOrder::RowMajorReversed,
                                 ScanOrder::ColMajor, ScanOrder::ColMajorReversed};

const char *orderName(ScanOrder o) {
  switch (o) {
  case ScanOrder::RowMajor:
    return "row_major";
  case ScanOrder::RowMajorReversed:
    return "row_major_reversed";
  case ScanOrder::ColMajor:
    return "col_major";
  case ScanOrder::ColMajorReversed:
    return "col_major_reversed";
  }
  return "?";
}

TEST(CpuScanPosition, HandWrittenTablesOnA3x3Grid) {
  const int64_t expected[4][3][3] = {
      {{0, 1, 2}, {3, 4, 5}, {6, 7, 8}}, // row-major
      {{8, 7, 6}, {5, 4, 3}, {2, 1, 0}}, // row-major reversed
      {{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}, // column-major
      {{8, 5, 2}, {7, 4, 1}, {6, 3, 0}}, // column-major reversed
  };
  for (int o = 0; o < 4; ++o)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(scanPosition(kOrders[o], 3, 3, r, c), expected[o][r][c])
            << orderName(kOrders[o]) << " cell (" << r << ", " << c << ")";
}

TEST(CpuScanPosition, HandWrittenTablesOnA2x3Grid) {
  const int64_t expected[4][2][3] = {
      {{0, 1, 2}, {3, 4, 5}},
      {{5, 4, 3}, {2, 1, 0}},
      {{0, 2, 4}, {1, 3, 5}},
      {{5, 3, 1}, {4, 2, 0}},
  };
  for (int o = 0; o < 4; ++o)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(scanPosition(kOrders[o], 2, 3, r, c), expected[o][r][c])
            << orderName(kOrders[o]) << " cell (" << r << ", " << c << ")";
  EXPECT_DIFFRT_ERROR(scanPosition(ScanOrder::RowMajor, 2, 3, 2, 0), "scanPosition", "(2, 0)",
                      "2 x 3");
}

/// Tokens of a random (batch, h, w, d) grid laid out in `order`.
Buffer gridInOrder(const Buffer &grid, int64_t batch, int64_t h, int64_t w, ScanOrder order) {
  Buffer x(batch * h * w, grid.cols);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c)
        for (int64_t j = 0; j < grid.cols; ++j)
          x.at(b * h * w + scanPosition(order, h, w, r, c), j) = grid.at(b * h * w + r * w + c, j);
  return x;
}

TEST(CpuReorderTokens, AllSixteenPairsOnSquareAndOblongGrids) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (auto [h, w] : {std::pair<int64_t, int64_t>{4, 4}, {3, 5}}) {
    int64_t batch = 2, d = rng.integer(1, 40);
    Buffer grid = normalBuffer(rng, batch * h * w, d);
    for (ScanOrder from : kOrders)
      for (ScanOrder to : kOrders) {
        SCOPED_TRACE(::testing::Message() << h << " x " << w << " from " << orderName(from)
                                          << " to " << orderName(to));
        Buffer x = gridInOrder(grid, batch, h, w, from);
        Buffer out = poisonedBuffer(batch * h * w, d, d + 3);
        reorderTokens(x.cmat(), batch, h, w, from, to, out.mat());
        expectExact(out, toRef(gridInOrder(grid, batch, h, w, to)));
      }
  }
}

TEST(CpuReorderTokens, DigScheduleMatchesFlipsAndTransposesAndHasPeriodFour) {
  // DiG after block i: flip the sequence; if i is odd, also transpose the
  // h x w grid view. The orders it produces are R, reversed R, column-major,
  // reversed column-major, then R again.
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t batch = 2, side = 5, d = 7, tokens = side * side;
  Buffer x0 = normalBuffer(rng, batch * tokens, d);
  Buffer current = x0, manual = x0;
  const ScanOrder schedule[] = {ScanOrder::RowMajor, ScanOrder::RowMajorReversed,
                                ScanOrder::ColMajor, ScanOrder::ColMajorReversed,
                                ScanOrder::RowMajor};
  for (int block = 0; block < 4; ++block) {
    SCOPED_TRACE(::testing::Message() << "after block " << block);
    Buffer flipped(batch * tokens, d);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < tokens; ++s)
        for (int64_t j = 0; j < d; ++j)
          flipped.at(b * tokens + s, j) = manual.at(b * tokens + tokens - 1 - s, j);
    manual = flipped;
    if (block % 2 == 1) {
      Buffer transposed(batch * tokens, d);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t r = 0; r < side; ++r)
          for (int64_t c = 0; c < side; ++c)
            for (int64_t j = 0; j < d; ++j)
              transposed.at(b * tokens + c * side + r, j) = manual.at(b * tokens + r * side + c, j);
      manual = transposed;
    }
    Buffer next = poisonedBuffer(batch * tokens, d);
    reorderTokens(current.cmat(), batch, side, side, schedule[block], schedule[block + 1],
                  next.mat());
    expectExact(next, toRef(manual));
    current = next;
  }
  expectExact(current, toRef(x0));
}

/// Reference depth-wise convolution over the row-major sequence grid.
Ref convReference(const Buffer &x, int64_t batch, int64_t h, int64_t w,
                  const std::vector<float> &weight, const std::vector<float> &bias, int64_t k) {
  int64_t d = x.cols, pad = k / 2;
  Ref y(batch * h * w, d);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c)
        for (int64_t ch = 0; ch < d; ++ch) {
          double acc = bias.empty() ? 0.0 : bias[ch];
          for (int64_t di = 0; di < k; ++di)
            for (int64_t dj = 0; dj < k; ++dj) {
              int64_t rr = r + di - pad, cc = c + dj - pad;
              if (rr >= 0 && rr < h && cc >= 0 && cc < w)
                acc += double(weight[(ch * k + di) * k + dj]) * x.at(b * h * w + rr * w + cc, ch);
            }
          y(b * h * w + r * w + c, ch) = acc;
        }
  return y;
}

TEST(CpuDepthwiseConv, IdentityKernelReturnsTheInput) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t batch = 2, h = 4, w = 4, d = 9, k = 3;
  Buffer x = normalBuffer(rng, batch * h * w, d);
  std::vector<float> weight(static_cast<size_t>(d * k * k), 0.0f), bias(static_cast<size_t>(d), 0.0f);
  for (int64_t ch = 0; ch < d; ++ch)
    weight[static_cast<size_t>(ch * k * k + (k / 2) * k + k / 2)] = 1.0f;
  for (ScanOrder from : kOrders)
    for (ScanOrder to : kOrders) {
      SCOPED_TRACE(::testing::Message() << "from " << orderName(from) << " to " << orderName(to));
      Buffer out = poisonedBuffer(batch * h * w, d, d + 1);
      depthwiseConv(x.cmat(), batch, h, w, weight.data(), bias.data(), k, from, to, out.mat());
      // The identity convolution followed by the order change is exactly
      // the order change.
      Buffer expected = poisonedBuffer(batch * h * w, d);
      reorderTokens(x.cmat(), batch, h, w, from, to, expected.mat());
      expectExact(out, toRef(expected));
    }
}

TEST(CpuDepthwiseConv, RandomKernelsMatchReference) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t k : {1, 3, 5}) {
    int64_t batch = 2, h = rng.integer(1, 7), w = rng.integer(1, 7), d = rng.integer(1, 40);
    SCOPED_TRACE(::testing::Message() << "k " << k << " grid " << h << " x " << w << " d " << d);
    Buffer x = normalBuffer(rng, batch * h * w, d, d + 2);
    std::vector<float> weight = rng.normal(d * k * k), bias = rng.normal(d);
    Buffer out = poisonedBuffer(batch * h * w, d, d + 3);
    depthwiseConv(x.cmat(), batch, h, w, weight.data(), bias.data(), k, ScanOrder::RowMajor,
                  ScanOrder::RowMajor, out.mat());
    expectMatches(out, convReference(x, batch, h, w, weight, bias, k));
  }
}

TEST(CpuDepthwiseConv, PermutedOutputForEveryOrderPair) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t batch = 2, side = 5, d = 6, k = 3, tokens = side * side;
  Buffer x = normalBuffer(rng, batch * tokens, d);
  std::vector<float> weight = rng.normal(d * k * k), bias = rng.normal(d);
  Ref conv = convReference(x, batch, side, side, weight, bias, k);
  for (ScanOrder from : kOrders)
    for (ScanOrder to : kOrders) {
      SCOPED_TRACE(::testing::Message() << "from " << orderName(from) << " to " << orderName(to));
      // Result token s (a cell of the row-major sequence grid, whatever
      // order `from` says the tokens are in) lands at permute(s).
      Ref expected(batch * tokens, d);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t r = 0; r < side; ++r)
          for (int64_t c = 0; c < side; ++c) {
            int64_t s = scanPosition(from, side, side, r, c);
            int64_t dst = scanPosition(to, side, side, r, c);
            for (int64_t j = 0; j < d; ++j)
              expected(b * tokens + dst, j) = conv(b * tokens + s, j);
          }
      Buffer out = poisonedBuffer(batch * tokens, d);
      depthwiseConv(x.cmat(), batch, side, side, weight.data(), bias.data(), k, from, to,
                    out.mat());
      expectMatches(out, expected);
    }
}

TEST(CpuDepthwiseConv, RejectsAnEvenKernel) {
  Buffer x(4, 2), out(4, 2);
  std::vector<float> weight(8, 0.0f), bias(2, 0.0f);
  EXPECT_DIFFRT_ERROR(depthwiseConv(x.cmat(), 1, 2, 2, weight.data(), bias.data(), 2,
                                    ScanOrder::RowMajor, ScanOrder::RowMajor, out.mat()),
                      "depthwiseConv", "even");
}

TEST(CpuPatchEmbed, MatchesTheStridedConvolution) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int64_t p : {1, 2, 4})
    for (bool withPos : {false, true})
      for (bool withBias : {false, true}) {
        int64_t batch = 2, c = rng.integer(1, 4), hp = rng.integer(1, 5), wp = rng.integer(1, 5);
        int64_t height = hp * p, width = wp * p, d = rng.integer(1, 50), tokens = hp * wp;
        SCOPED_TRACE(::testing::Message() << "p " << p << " c " << c << " image " << height << " x "
                                          << width << " d " << d << " pos " << withPos
                                          << " bias " << withBias);
        std::vector<float> img = rng.normal(batch * c * height * width);
        std::vector<float> weight = rng.normal(d * c * p * p), bias = rng.normal(d);
        std::vector<float> pos = rng.normal(tokens * d);
        Ref ref(batch * tokens, d);
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t r = 0; r < hp; ++r)
            for (int64_t col = 0; col < wp; ++col)
              for (int64_t o = 0; o < d; ++o) {
                double acc = withBias ? bias[o] : 0.0;
                for (int64_t ch = 0; ch < c; ++ch)
                  for (int64_t i = 0; i < p; ++i)
                    for (int64_t j = 0; j < p; ++j)
                      acc += double(weight[((o * c + ch) * p + i) * p + j]) *
                             img[((b * c + ch) * height + r * p + i) * width + col * p + j];
                if (withPos)
                  acc += pos[(r * wp + col) * d + o];
                ref(b * tokens + r * wp + col, o) = acc;
              }
        Buffer out = poisonedBuffer(batch * tokens, d, d + 4);
        patchEmbed(img.data(), batch, c, height, width, weight.data(),
                   withBias ? bias.data() : nullptr, d, p, withPos ? pos.data() : nullptr,
                   out.mat());
        expectMatches(out, ref);
      }
}

TEST(CpuUnpatchify, HandWrittenTwoByTwoPatches) {
  // One sample, a 1 x 2 patch grid, p = 2, two channels: token t holds
  // 100·t + e at element e = (i·2 + j)·2 + ch.
  Buffer x(2, 8);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t e = 0; e < 8; ++e)
      x.at(t, e) = float(100 * t + e);
  const float expected[16] = {0, 2, 100, 102, 4, 6, 104, 106,  // channel 0, rows 0 and 1
                              1, 3, 101, 103, 5, 7, 105, 107}; // channel 1
  std::vector<float> out = poisoned(16);
  unpatchify(x.cmat(), 1, 1, 2, 2, 2, out.data());
  for (int i = 0; i < 16; ++i)
    EXPECT_EQ(out[i], expected[i]) << "pixel " << i;
}

TEST(CpuUnpatchify, InvertsThePatchLayout) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t batch = 2, h = rng.integer(1, 5), w = rng.integer(1, 5), p = rng.integer(1, 4);
  int64_t c = rng.integer(1, 8), height = h * p, width = w * p;
  SCOPED_TRACE(::testing::Message() << "grid " << h << " x " << w << " p " << p << " c " << c);
  std::vector<float> img = rng.normal(batch * c * height * width);
  // The layout unpatchify inverts (spec 1): element (i·p + j)·c + ch of
  // token r·w + col is pixel (ch, r·p + i, col·p + j).
  Buffer tokens(batch * h * w, p * p * c, p * p * c + 3);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t col = 0; col < w; ++col)
        for (int64_t i = 0; i < p; ++i)
          for (int64_t j = 0; j < p; ++j)
            for (int64_t ch = 0; ch < c; ++ch)
              tokens.at(b * h * w + r * w + col, (i * p + j) * c + ch) =
                  img[((b * c + ch) * height + r * p + i) * width + col * p + j];
  std::vector<float> out = poisoned(batch * c * height * width);
  unpatchify(tokens.cmat(), batch, h, w, p, c, out.data());
  EXPECT_EQ(out, img);
}

/// Random keep indices: per sample a random subset of `kept` of `tokens`.
std::vector<int32_t> randomKeep(Rng &rng, int64_t batch, int64_t tokens, int64_t kept) {
  std::vector<int32_t> keep;
  std::vector<int32_t> perm(static_cast<size_t>(tokens));
  for (int64_t b = 0; b < batch; ++b) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng.gen());
    keep.insert(keep.end(), perm.begin(), perm.begin() + kept);
  }
  return keep;
}

TEST(CpuMaskTokens, GatherAndScatterRoundTrip) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t batch = 3, tokens = rng.integer(2, 300), kept = rng.integer(1, tokens);
  int64_t d = rng.integer(1, 40);
  SCOPED_TRACE(::testing::Message() << "tokens " << tokens << " kept " << kept << " d " << d);
  std::vector<int32_t> keep = randomKeep(rng, batch, tokens, kept);
  Buffer x = normalBuffer(rng, batch * tokens, d, d + 2);

  Ref gathered(batch * kept, d);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < kept; ++j)
      for (int64_t c = 0; c < d; ++c)
        gathered(b * kept + j, c) = x.at(b * tokens + keep[b * kept + j], c);
  Buffer masked = poisonedBuffer(batch * kept, d, d + 1);
  maskTokens(x.cmat(), keep.data(), batch, tokens, kept, masked.mat());
  expectExact(masked, gathered);

  Ref scattered(batch * tokens, d);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < kept; ++j)
      for (int64_t c = 0; c < d; ++c)
        scattered(b * tokens + keep[b * kept + j], c) = x.at(b * tokens + keep[b * kept + j], c);
  Buffer unmasked = poisonedBuffer(batch * tokens, d, d + 5);
  unmaskTokens(masked.cmat(), keep.data(), batch, tokens, kept, unmasked.mat());
  expectExact(unmasked, scattered);
}

TEST(CpuMaskTokens, RejectsOutOfRangeAndRepeatedIndices) {
  int64_t batch = 2, tokens = 6, kept = 3, d = 2;
  Buffer x(batch * tokens, d), small(batch * kept, d);
  std::vector<int32_t> keep = {0, 1, 2, 3, 6, 1};
  EXPECT_DIFFRT_ERROR(maskTokens(x.cmat(), keep.data(), batch, tokens, kept, small.mat()),
                      "maskTokens", "sample 1", "6", "[0, 6)");
  EXPECT_DIFFRT_ERROR(unmaskTokens(small.cmat(), keep.data(), batch, tokens, kept, x.mat()),
                      "unmaskTokens", "sample 1", "6");
  keep = {0, -1, 2, 3, 4, 5};
  EXPECT_DIFFRT_ERROR(maskTokens(x.cmat(), keep.data(), batch, tokens, kept, small.mat()),
                      "maskTokens", "sample 0", "-1");
  keep = {0, 1, 2, 4, 5, 4};
  EXPECT_DIFFRT_ERROR(maskTokens(x.cmat(), keep.data(), batch, tokens, kept, small.mat()),
                      "maskTokens", "sample 1", "token 4", "twice");
  EXPECT_DIFFRT_ERROR(unmaskTokens(small.cmat(), keep.data(), batch, tokens, kept, x.mat()),
                      "unmaskTokens", "sample 1", "token 4", "twice");
}

TEST(CpuTokenMean, MatchesReference) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int trial = 0; trial < 3; ++trial) {
    int64_t batch = rng.integer(1, 4), tokens = rng.integer(1, 300), d = rng.integer(1, 700);
    SCOPED_TRACE(::testing::Message() << "batch " << batch << " tokens " << tokens << " d " << d);
    Buffer x = normalBuffer(rng, batch * tokens, d, d + 3);
    Ref ref(batch, d);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0.0;
        for (int64_t t = 0; t < tokens; ++t)
          acc += x.at(b * tokens + t, c);
        ref(b, c) = acc / double(tokens);
      }
    Buffer out = poisonedBuffer(batch, d, d + 2);
    tokenMean(x.cmat(), batch, tokens, out.mat());
    expectMatches(out, ref);
  }
}

} // namespace
} // namespace diffrt::cpu::testing
