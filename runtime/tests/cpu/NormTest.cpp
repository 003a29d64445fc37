//===- NormTest.cpp - tests of norm and the element-wise kernels ----------===//
//
// norm in every combination of its options (layer/RMS, groups narrower than
// the row, affine weight and bias, adaLN modulation read from slices of one
// modulation matrix, SiLU output gate), then broadcast arithmetic,
// modulate and gatedResidual, all against double loops.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

namespace diffrt::cpu::testing {
namespace {

struct NormCase {
  NormKind kind;
  bool grouped, weight, bias, modulate, gate;
};

void runNorm(Rng &rng, const NormCase &nc, double offset = 0.0, int64_t minGroup = 1) {
  int64_t samples = rng.integer(1, 3), rowsPerSample = rng.integer(1, 5);
  int64_t rows = samples * rowsPerSample;
  int64_t group = rng.integer(minGroup, 40), groups = nc.grouped ? rng.integer(2, 5) : 1;
  int64_t cols = group * groups;
  SCOPED_TRACE(::testing::Message()
               << (nc.kind == NormKind::Layer ? "layer" : "rms") << " rows " << rows << " group "
               << group << " cols " << cols << " weight " << nc.weight << " bias " << nc.bias
               << " modulate " << nc.modulate << " gate " << nc.gate << " offset " << offset);
  Buffer x(rows, cols, cols + 3);
  std::vector<float> xv = rng.normal(rows * cols, 1.0, offset);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      x.at(r, c) = xv[static_cast<size_t>(r * cols + c)];
  std::vector<float> weight = rng.normal(group), bias = rng.normal(group);
  // shift and scale are two of the six adaLN vectors in one (samples x 6·cols)
  // modulation matrix.
  Buffer mod = normalBuffer(rng, samples, 6 * cols, 0, 0.5);
  ConstMat shift{mod.data.data() + 3 * cols, samples, cols, mod.ld};
  ConstMat scale{mod.data.data() + 4 * cols, samples, cols, mod.ld};
  Buffer gate = normalBuffer(rng, rows, cols, cols + 1);
  Buffer out = poisonedBuffer(rows, cols, cols + 2);

  NormArgs args;
  args.kind = nc.kind;
  args.group = group;
  args.eps = 1e-6f;
  args.weight = nc.weight ? weight.data() : nullptr;
  args.bias = nc.bias ? bias.data() : nullptr;
  if (nc.modulate) {
    args.shift = shift;
    args.scale = scale;
  }
  args.rowsPerSample = rowsPerSample;
  if (nc.gate)
    args.siluGate = gate.cmat();

  Ref ref(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g0 = 0; g0 < cols; g0 += group) {
      double mean = 0.0, var = 0.0;
      if (nc.kind == NormKind::Layer) {
        for (int64_t j = 0; j < group; ++j)
          mean += x.at(r, g0 + j);
        mean /= double(group);
      }
      for (int64_t j = 0; j < group; ++j)
        var += (x.at(r, g0 + j) - mean) * (x.at(r, g0 + j) - mean);
      var /= double(group);
      for (int64_t j = 0; j < group; ++j) {
        int64_t c = g0 + j;
        double y = (x.at(r, c) - mean) / std::sqrt(var + double(1e-6f));
        if (nc.weight)
          y *= weight[j];
        if (nc.bias)
          y += bias[j];
        if (nc.modulate)
          y = y * (1.0 + scale.row(r / rowsPerSample)[c]) + shift.row(r / rowsPerSample)[c];
        if (nc.gate)
          y *= silu(gate.at(r, c));
        ref(r, c) = y;
      }
    }
  norm(x.cmat(), args, out.mat());
  expectMatches(out, ref);
}

TEST(CpuNorm, EveryCombinationOfOptions) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (NormKind kind : {NormKind::Layer, NormKind::Rms})
    for (int mask = 0; mask < 32; ++mask)
      runNorm(rng, {kind, bool(mask & 1), bool(mask & 2), bool(mask & 4), bool(mask & 8),
                    bool(mask & 16)});
}

TEST(CpuNorm, LayerNormVarianceIsTwoPass) {
  // Inputs with mean 30 and unit spread: E[x²] - E[x]² in float32 would lose
  // about three digits of the variance, a two-pass variance keeps them.
  // Groups of at least 24 values keep the sample spread near 1 (in a group
  // of two nearly equal values even the exact float32 mean is too coarse).
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int i = 0; i < 4; ++i)
    runNorm(rng, {NormKind::Layer, true, false, false, false, false}, 30.0, 24);
}

TEST(CpuNorm, WorksInPlaceOnLongRows) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  int64_t rows = 37, cols = 1152;
  Buffer x = normalBuffer(rng, rows, cols);
  Ref ref(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0.0;
    for (int64_t c = 0; c < cols; ++c)
      ms += double(x.at(r, c)) * x.at(r, c);
    ms /= double(cols);
    for (int64_t c = 0; c < cols; ++c)
      ref(r, c) = x.at(r, c) / std::sqrt(ms + double(1e-5f));
  }
  NormArgs args;
  args.kind = NormKind::Rms;
  args.group = cols;
  args.eps = 1e-5f;
  norm(x.cmat(), args, x.mat());
  expectMatches(x, ref);
}

TEST(CpuNorm, RejectsAGroupThatDoesNotDivideTheRow) {
  Buffer x(2, 10), out(2, 10);
  NormArgs args;
  args.group = 4;
  EXPECT_DIFFRT_ERROR(norm(x.cmat(), args, out.mat()), "norm", "group 4", "10");
}

TEST(CpuModulate, MatchesReferenceOnStridedSlices) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (bool inPlace : {false, true}) {
    int64_t samples = rng.integer(1, 4), rowsPerSample = rng.integer(1, 50);
    int64_t rows = samples * rowsPerSample, cols = rng.integer(1, 600);
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols << " in place "
                                      << inPlace);
    Buffer x = normalBuffer(rng, rows, cols, cols + 5);
    Buffer mod = normalBuffer(rng, samples, 2 * cols);
    ConstMat shift{mod.data.data(), samples, cols, mod.ld};
    ConstMat scale{mod.data.data() + cols, samples, cols, mod.ld};
    Ref ref(rows, cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ref(r, c) = double(x.at(r, c)) * (1.0 + scale.row(r / rowsPerSample)[c]) +
                    shift.row(r / rowsPerSample)[c];
    Buffer out = poisonedBuffer(rows, cols, cols + 5);
    modulate(x.cmat(), shift, scale, rowsPerSample, inPlace ? x.mat() : out.mat());
    expectMatches(inPlace ? x : out, ref);
  }
}

TEST(CpuGatedResidual, MatchesReferenceIncludingInPlace) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (bool inPlace : {false, true}) {
    int64_t samples = rng.integer(1, 4), rowsPerSample = rng.integer(1, 50);
    int64_t rows = samples * rowsPerSample, cols = rng.integer(1, 600);
    SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols << " in place "
                                      << inPlace);
    Buffer residual = normalBuffer(rng, rows, cols, cols + 2);
    Buffer mod = normalBuffer(rng, samples, 6 * cols);
    ConstMat gate{mod.data.data() + 2 * cols, samples, cols, mod.ld};
    Buffer y = normalBuffer(rng, rows, cols, cols + 9);
    Ref ref(rows, cols);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        ref(r, c) = double(residual.at(r, c)) + double(gate.row(r / rowsPerSample)[c]) * y.at(r, c);
    Buffer out = poisonedBuffer(rows, cols, cols + 2);
    gatedResidual(residual.cmat(), gate, y.cmat(), rowsPerSample,
                  inPlace ? residual.mat() : out.mat());
    expectMatches(inPlace ? residual : out, ref);
  }
}

} // namespace
} // namespace diffrt::cpu::testing
