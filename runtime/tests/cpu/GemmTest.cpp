//===- GemmTest.cpp - tests of activate, gemm and swiglu ------------------===//
//
// The dense kernels against double-precision loops: every activation, with
// and without bias, with the gated-residual epilogue (including out aliasing
// the residual, the DiT block's x ← x + gate ⊙ f(x)), and on strided column
// slices of wider buffers as the packed projections produce them.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

namespace diffrt::cpu::testing {
namespace {

constexpr Act kActs[] = {Act::None, Act::Gelu, Act::GeluTanh, Act::Silu};

TEST(CpuActivate, MatchesTheDefinitionsElementwise) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  std::vector<float> base = rng.normal(50000, 4.0);
  // The tails: exp overflow/underflow must give the limits, not NaN.
  for (float x : {-1000.0f, -100.0f, -87.5f, -30.0f, -1e-20f, 1e-20f, 30.0f, 88.9f, 100.0f, 1000.0f})
    base.push_back(x);
  for (Act act : kActs) {
    SCOPED_TRACE(actName(act));
    std::vector<float> x = base;
    activate(x.data(), static_cast<int64_t>(x.size()), act);
    int64_t bad = 0;
    Ref ref(1, static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      ref.v[i] = applyAct(base[i], act);
      // Elementwise: a few ulp of the result, or an error at the resolution
      // of the input (1e-7·|x|) where the result is far smaller than x:
      // rounding x/√2 to float32 moves erfc in the far negative tail by a
      // relative 2z²·6e-8, which is exact behaviour for a float32 input.
      double err = std::fabs(x[i] - ref.v[i]);
      if (!(err <= 2e-6 * std::fabs(ref.v[i]) + 1e-7 * std::fabs(base[i])) && bad++ < 5) {
        ADD_FAILURE() << "x = " << base[i] << ": got " << x[i] << ", expected " << ref.v[i];
      }
    }
    EXPECT_EQ(bad, 0);
    expectMatches(x, ref, 1e-6);
  }
}

struct GemmCase {
  Act act;
  bool bias, epilogue, strided, aliasResidual;
};

void runGemm(Rng &rng, const GemmCase &gc, int64_t m, int64_t k, int64_t n) {
  SCOPED_TRACE(::testing::Message() << "act " << actName(gc.act) << " bias " << gc.bias
                                    << " epilogue " << gc.epilogue << " strided " << gc.strided
                                    << " alias " << gc.aliasResidual << " m " << m << " k " << k
                                    << " n " << n);
  // Strided: a is a column slice at an offset inside a wider buffer, as q is
  // inside a packed qkv projection; w and out have padded rows too.
  int64_t aOff = gc.strided ? 3 : 0;
  Buffer aBuf = normalBuffer(rng, m, k + (gc.strided ? 11 : 0));
  ConstMat a{aBuf.data.data() + aOff, m, k, aBuf.ld};
  Buffer w = normalBuffer(rng, n, k, gc.strided ? k + 5 : 0, 1.0 / std::sqrt(double(k)));
  std::vector<float> bias = rng.normal(n);
  int64_t rowsPerGate = m % 3 == 0 ? 3 : 1;
  Buffer gate = normalBuffer(rng, m / rowsPerGate, n);
  Buffer residual = normalBuffer(rng, m, n, gc.strided ? n + 7 : 0);
  Buffer out = poisonedBuffer(m, n, gc.strided ? n + 7 : 0);

  Ref ref = matmulNT(a, w.cmat());
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double v = applyAct(ref(r, c) + (gc.bias ? bias[c] : 0.0), gc.act);
      ref(r, c) = gc.epilogue ? residual.at(r, c) + gate.at(r / rowsPerGate, c) * v : v;
    }

  GatedResidual epi{residual.cmat(), gate.cmat(), rowsPerGate};
  Mat outMat = gc.aliasResidual ? residual.mat() : out.mat();
  gemm(a, w.cmat(), gc.bias ? bias.data() : nullptr, gc.act, gc.epilogue ? &epi : nullptr, outMat);
  expectMatches(gc.aliasResidual ? residual : out, ref);
}

TEST(CpuGemm, EveryActivationBiasEpilogueAndStride) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (Act act : kActs)
    for (bool bias : {false, true})
      for (bool epilogue : {false, true})
        for (bool strided : {false, true})
          for (bool alias : {false, true}) {
            if (alias && !epilogue)
              continue;
            GemmCase gc{act, bias, epilogue, strided, alias};
            runGemm(rng, gc, rng.integer(1, 70), rng.integer(1, 300), rng.integer(1, 200));
          }
}

TEST(CpuGemm, LargerThanOneBlasBlock) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  runGemm(rng, {Act::GeluTanh, true, true, true, true}, 300, 520, 384);
  runGemm(rng, {Act::Silu, true, false, false, false}, 513, 64, 1030);
}

TEST(CpuGemm, RejectsMismatchedShapes) {
  Buffer a(4, 8), w(5, 7), out(4, 5);
  EXPECT_DIFFRT_ERROR(gemm(a.cmat(), w.cmat(), nullptr, Act::None, nullptr, out.mat()), "gemm",
                      "w", "5 x 7", "5 x 8");
  Buffer w2(5, 8);
  Mat inA{a.data.data(), 4, 5, 8};
  EXPECT_DIFFRT_ERROR(gemm(a.cmat(), w2.cmat(), nullptr, Act::None, nullptr, inA), "gemm",
                      "overlaps");
}

void runSwiglu(Rng &rng, int64_t m, int64_t k, int64_t f, int64_t n, bool epilogue, bool alias,
               bool strided) {
  SCOPED_TRACE(::testing::Message() << "m " << m << " k " << k << " f " << f << " n " << n
                                    << " epilogue " << epilogue << " alias " << alias
                                    << " strided " << strided);
  Buffer xBuf = normalBuffer(rng, m, k + (strided ? 9 : 0));
  ConstMat x{xBuf.data.data() + (strided ? 4 : 0), m, k, xBuf.ld};
  double s = 1.0 / std::sqrt(double(k));
  Buffer gate = normalBuffer(rng, f, k, 0, s), up = normalBuffer(rng, f, k, 0, s);
  Buffer down = normalBuffer(rng, n, f, strided ? f + 3 : 0, 1.0 / std::sqrt(double(f)));
  int64_t rowsPerGate = m % 2 == 0 ? 2 : 1;
  Buffer g = normalBuffer(rng, m / rowsPerGate, n);
  Buffer residual = normalBuffer(rng, m, n);
  Buffer out = poisonedBuffer(m, n, strided ? n + 2 : 0);
  std::vector<float> scratchBuf = poisoned(2 * m * f);

  Ref hg = matmulNT(x, gate.cmat()), hu = matmulNT(x, up.cmat());
  Ref ref(m, n);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double acc = 0.0;
      for (int64_t j = 0; j < f; ++j)
        acc += silu(hg(r, j)) * hu(r, j) * down.at(c, j);
      ref(r, c) = epilogue ? residual.at(r, c) + g.at(r / rowsPerGate, c) * acc : acc;
    }
  GatedResidual epi{residual.cmat(), g.cmat(), rowsPerGate};
  swiglu(x, gate.cmat(), up.cmat(), down.cmat(), epilogue ? &epi : nullptr, scratchBuf.data(),
         alias ? residual.mat() : out.mat());
  expectMatches(alias ? residual : out, ref);
}

TEST(CpuSwiglu, MatchesReference) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (bool strided : {false, true}) {
    runSwiglu(rng, rng.integer(1, 40), rng.integer(1, 100), rng.integer(1, 150),
              rng.integer(1, 100), false, false, strided);
    runSwiglu(rng, rng.integer(1, 40), rng.integer(1, 100), rng.integer(1, 150),
              rng.integer(1, 100), true, false, strided);
  }
  // Out aliasing the residual, with the down product's temporary both inside
  // scratch (n <= f) and separately allocated (n > f).
  runSwiglu(rng, 24, 48, 96, 40, true, true, false);
  runSwiglu(rng, 24, 48, 32, 40, true, true, true);
}

} // namespace
} // namespace diffrt::cpu::testing
