//===- GradGemmTest.cpp - tests of the dense-layer backward kernels -------===//
//
// gemmBackward for every activation, with and without bias and the gated-
// residual epilogue, and swigluBackward with and without the epilogue and
// with separate or interleaved (packed) gate/up weights and gradients, each
// operand's gradient against central differences of the forward kernel on
// strided views. Gradients are poisoned first, so an element left unwritten
// fails; padding columns must keep their sentinel.
//
//===----------------------------------------------------------------------===//

#include "GradTestUtil.h"

namespace diffrt::cpu::testing {
namespace {

/// One dense layer of the case grid below: random operands on strided
/// views, an incoming gradient, and the optional bias and gated residual.
struct GemmCase {
  static constexpr int64_t m = 6, k = 5, n = 7, rowsPerGate = 3;
  Act act;
  bool withBias, withEpilogue;
  Buffer a, w, residual, gate, dOut;
  std::vector<float> bias;
  GatedResidual epi;
  const GatedResidual *epiPtr() const { return withEpilogue ? &epi : nullptr; }
  const float *biasPtr() const { return withBias ? bias.data() : nullptr; }

  /// Poisoned gradient outputs (dA and dGate with padding columns), filled
  /// by backward().
  struct Grads {
    Buffer dA = poisonedBuffer(m, k, k + 1), dGate = poisonedBuffer(m / rowsPerGate, n, n + 2);
    std::vector<float> dW = poisoned(n * k), dBias = poisoned(n);
  };
  /// gemmBackward of the case into g: every gradient the case has (bias and
  /// gate only when present), from the saved pre-activation when given.
  void backward(Grads &g, ConstMat preact = {}) const {
    std::vector<float> work = poisoned(2 * m * n);
    GemmGrads grads;
    grads.dA = g.dA.mat();
    grads.dW = g.dW.data();
    grads.dBias = withBias ? g.dBias.data() : nullptr;
    if (withEpilogue)
      grads.dGate = g.dGate.mat();
    gemmBackward(a.cmat(), w.cmat(), biasPtr(), act, epiPtr(), dOut.cmat(), grads, work.data(), preact);
  }
};

/// `check` on every activation, with and without bias and epilogue (the
/// case's operands may be perturbed: directional derivatives).
template <typename Check> void forEachGemmCase(Rng &rng, Check check) {
  const int64_t m = GemmCase::m, k = GemmCase::k, n = GemmCase::n, rpg = GemmCase::rowsPerGate;
  for (Act act : {Act::None, Act::Gelu, Act::GeluTanh, Act::Silu})
    for (bool withBias : {false, true})
      for (bool withEpilogue : {false, true}) {
        SCOPED_TRACE(std::string("act ") + actName(act) + (withBias ? ", bias" : "") +
                     (withEpilogue ? ", epilogue" : ""));
        GemmCase c{act, withBias, withEpilogue, normalBuffer(rng, m, k, k + 3), normalBuffer(rng, n, k, k + 2),
                   normalBuffer(rng, m, n), normalBuffer(rng, m / rpg, n, n + 1), normalBuffer(rng, m, n, n + 2),
                   rng.normal(n), {}};
        c.epi = {c.residual.cmat(), c.gate.cmat(), rpg};
        check(c);
      }
}

TEST(GradGemm, EveryActivationBiasAndEpilogue) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  forEachGemmCase(rng, [&](GemmCase &c) {
    GemmCase::Grads g;
    c.backward(g);
    auto f = [&] {
      Buffer out(c.m, c.n);
      gemm(c.a.cmat(), c.w.cmat(), c.biasPtr(), c.act, c.epiPtr(), out.mat());
      return dot(c.dOut, out);
    };
    expectDirectional(rng, "dA", operand(c.a), gradOf(g.dA), f);
    expectDirectional(rng, "dW", operand(c.w), {g.dW.data(), c.k}, f);
    if (c.withBias)
      expectDirectional(rng, "dBias", operand(c.bias), gradOf(g.dBias), f);
    if (c.withEpilogue)
      expectDirectional(rng, "dGate", operand(c.gate), gradOf(g.dGate), f);
    expectPaddingIntact("dA", g.dA);
    expectPaddingIntact("dGate", g.dGate);
  });
}

// kern-fold-activation-grad: with the input a = inputAct(zIn), dA becomes
// the gradient with respect to zIn, and the other gradients keep their
// bits.
TEST(GradGemm, FoldedInputActivation) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  forEachGemmCase(rng, [&](GemmCase &c) {
    for (Act inputAct : {Act::Gelu, Act::GeluTanh, Act::Silu}) {
      SCOPED_TRACE(std::string("input act ") + actName(inputAct));
      Buffer zIn = normalBuffer(rng, c.m, c.k, c.k + 2);
      auto activated = [&] {
        Buffer a(c.m, c.k, c.k + 3);
        for (int64_t r = 0; r < c.m; ++r) {
          std::copy(zIn.mat().row(r), zIn.mat().row(r) + c.k, a.mat().row(r));
          activate(a.mat().row(r), c.k, inputAct);
        }
        return a;
      };
      c.a = activated();
      GemmCase::Grads plain, folded;
      c.backward(plain);
      {
        std::vector<float> work = poisoned(2 * c.m * c.n);
        GemmGrads grads;
        grads.dA = folded.dA.mat();
        grads.dW = folded.dW.data();
        grads.dBias = c.withBias ? folded.dBias.data() : nullptr;
        if (c.withEpilogue)
          grads.dGate = folded.dGate.mat();
        grads.inputAct = inputAct;
        grads.inputPreact = zIn.cmat();
        gemmBackward(c.a.cmat(), c.w.cmat(), c.biasPtr(), c.act, c.epiPtr(), c.dOut.cmat(), grads,
                     work.data());
      }
      auto f = [&] {
        Buffer a = activated(), out(c.m, c.n);
        gemm(a.cmat(), c.w.cmat(), c.biasPtr(), c.act, c.epiPtr(), out.mat());
        return dot(c.dOut, out);
      };
      expectDirectional(rng, "dzIn", operand(zIn), gradOf(folded.dA), f);
      expectPaddingIntact("dA", folded.dA);
      EXPECT_TRUE(sameBits(plain.dW, folded.dW));
      if (c.withBias)
        EXPECT_TRUE(sameBits(plain.dBias, folded.dBias));
      if (c.withEpilogue)
        EXPECT_TRUE(sameBits(plain.dGate.data, folded.dGate.data));
    }
  });
}

TEST(GradGemm, FoldedInputActivationRejectsBadViews) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 4, k = 3, n = 2;
  Buffer a = normalBuffer(rng, m, k), w = normalBuffer(rng, n, k), dOut = normalBuffer(rng, m, n);
  Buffer dA(m, k), z = normalBuffer(rng, m, k + 1);
  std::vector<float> work(2 * m * n);
  GemmGrads grads;
  grads.dA = dA.mat();
  grads.inputAct = Act::Gelu;
  grads.inputPreact = z.cmat();
  EXPECT_DIFFRT_ERROR(gemmBackward(a.cmat(), w.cmat(), nullptr, Act::None, nullptr, dOut.cmat(), grads,
                                   work.data()),
                      "inputPreact");
  grads.inputPreact = dA.cmat();
  EXPECT_DIFFRT_ERROR(gemmBackward(a.cmat(), w.cmat(), nullptr, Act::None, nullptr, dOut.cmat(), grads,
                                   work.data()),
                      "inputPreact overlaps dA");
  grads.dA = {};
  grads.inputPreact = a.cmat();
  EXPECT_DIFFRT_ERROR(gemmBackward(a.cmat(), w.cmat(), nullptr, Act::None, nullptr, dOut.cmat(), grads,
                                   work.data()),
                      "dA is not wanted");
}

// The forward's saved pre-activation: gemm writes z = a·wᵀ + bias to a
// strided view without changing its output, and gemmBackward reading that
// z gives the bits it gives when it recomputes z.
TEST(GradGemm, SavedPreactivationMatchesRecomputation) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  forEachGemmCase(rng, [&](GemmCase &c) {
    const int64_t m = c.m, n = c.n;
    Buffer out(m, n), outKeeping(m, n), z = poisonedBuffer(m, n, n + 3), plain(m, n);
    gemm(c.a.cmat(), c.w.cmat(), c.biasPtr(), c.act, c.epiPtr(), out.mat());
    gemm(c.a.cmat(), c.w.cmat(), c.biasPtr(), c.act, c.epiPtr(), outKeeping.mat(), z.mat());
    gemm(c.a.cmat(), c.w.cmat(), c.biasPtr(), Act::None, nullptr, plain.mat());
    EXPECT_TRUE(sameBits(out.data, outKeeping.data));
    for (int64_t r = 0; r < m; ++r)
      for (int64_t col = 0; col < n; ++col)
        EXPECT_EQ(z.mat().row(r)[col], plain.mat().row(r)[col]) << "z[" << r << "][" << col << "]";
    expectPaddingIntact("z", z);

    auto backward = [&](ConstMat preact) {
      GemmCase::Grads g;
      c.backward(g, preact);
      std::vector<float> all = g.dA.data;
      all.insert(all.end(), g.dW.begin(), g.dW.end());
      if (c.withBias)
        all.insert(all.end(), g.dBias.begin(), g.dBias.end());
      if (c.withEpilogue)
        all.insert(all.end(), g.dGate.data.begin(), g.dGate.data.end());
      return all;
    };
    EXPECT_TRUE(sameBits(backward({}), backward(z.cmat())));
  });
}

TEST(GradGemm, PartialGradientsAndDeterminism) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  // Only dW wanted: the other outputs are not touched; a second run gives
  // the same bits.
  const int64_t m = 130, k = 9, n = 11;
  Buffer a = normalBuffer(rng, m, k), w = normalBuffer(rng, n, k), dOut = normalBuffer(rng, m, n);
  std::vector<float> bias = rng.normal(n), work(2 * m * n);
  std::vector<float> dW1 = poisoned(n * k), dW2 = poisoned(n * k), dB1 = poisoned(n),
                     dB2 = poisoned(n);
  GemmGrads g1, g2;
  g1.dW = dW1.data();
  g1.dBias = dB1.data();
  g2.dW = dW2.data();
  g2.dBias = dB2.data();
  gemmBackward(a.cmat(), w.cmat(), bias.data(), Act::Gelu, nullptr, dOut.cmat(), g1, work.data());
  gemmBackward(a.cmat(), w.cmat(), bias.data(), Act::Gelu, nullptr, dOut.cmat(), g2, work.data());
  EXPECT_TRUE(sameBits(dW1, dW2));
  EXPECT_TRUE(sameBits(dB1, dB2));
  auto f = [&] {
    Buffer out(m, n);
    gemm(a.cmat(), w.cmat(), bias.data(), Act::Gelu, nullptr, out.mat());
    return dot(dOut, out);
  };
  expectDirectional(rng, "dW", operand(w), {dW1.data(), k}, f);
  expectDirectional(rng, "dBias", operand(bias), gradOf(dB1), f);
}

TEST(GradGemm, ErrorsNameTheProblem) {
  std::vector<float> a(6), w(6), dOut(4), work(8), dGate(4);
  GemmGrads grads;
  grads.dGate = mat(dGate.data(), 2, 2);
  EXPECT_DIFFRT_ERROR(gemmBackward(constMat(a.data(), 2, 3), constMat(w.data(), 2, 3), nullptr,
                                   Act::None, nullptr, constMat(dOut.data(), 2, 2), grads,
                                   work.data()),
                      "gemmBackward", "epilogue");
  EXPECT_DIFFRT_ERROR(gemmBackward(constMat(a.data(), 2, 3), constMat(w.data(), 2, 3), nullptr,
                                   Act::None, nullptr, constMat(dOut.data(), 2, 2), GemmGrads{},
                                   nullptr),
                      "gemmBackward", "scratch");
}

TEST(GradSwiglu, EpilogueAndPackedWeights) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  const int64_t m = 6, k = 5, f = 4, n = 7, rowsPerGate = 2;
  for (bool withEpilogue : {false, true})
    for (bool packed : {false, true}) {
      SCOPED_TRACE(std::string(withEpilogue ? "epilogue" : "plain") + (packed ? ", packed" : ""));
      Buffer x = normalBuffer(rng, m, k, k + 2);
      // Packed: gate and up rows interleaved in one (2F x K) matrix, the
      // layout of a fused projection, read with a row stride of 2K.
      Buffer gateUp = normalBuffer(rng, 2 * f, k);
      ConstMat gate = packed ? ConstMat{gateUp.data.data(), f, k, 2 * k}
                             : ConstMat{gateUp.data.data(), f, k, k};
      ConstMat up = packed ? ConstMat{gateUp.data.data() + k, f, k, 2 * k}
                           : ConstMat{gateUp.data.data() + f * k, f, k, k};
      Buffer down = normalBuffer(rng, n, f, f + 1);
      Buffer residual = normalBuffer(rng, m, n), egate = normalBuffer(rng, m / rowsPerGate, n);
      Buffer dOut = normalBuffer(rng, m, n);
      GatedResidual epi{residual.cmat(), egate.cmat(), rowsPerGate};
      const GatedResidual *epiPtr = withEpilogue ? &epi : nullptr;

      Buffer dX = poisonedBuffer(m, k, k + 3), dEGate = poisonedBuffer(m / rowsPerGate, n);
      std::vector<float> dGateUp = poisoned(2 * f * k), dDown = poisoned(n * f);
      std::vector<float> work(4 * m * f + m * n);
      SwiGluGrads grads;
      grads.dX = dX.mat();
      grads.dGateW = dGateUp.data();
      grads.dUpW = packed ? dGateUp.data() + k : dGateUp.data() + f * k;
      grads.gateLd = grads.upLd = packed ? 2 * k : k;
      grads.dDownW = dDown.data();
      if (withEpilogue)
        grads.dGate = dEGate.mat();
      swigluBackward(x.cmat(), gate, up, ConstMat{down.data.data(), n, f, f + 1}, epiPtr,
                     dOut.cmat(), grads, work.data());

      auto fn = [&] {
        Buffer out(m, n);
        std::vector<float> s(2 * m * f);
        swiglu(x.cmat(), gate, up, down.cmat(), epiPtr, s.data(), out.mat());
        return dot(dOut, out);
      };
      expectDirectional(rng, "dX", operand(x), gradOf(dX), fn);
      expectDirectional(rng, "dGateUp", operand(gateUp), {dGateUp.data(), k}, fn);
      expectDirectional(rng, "dDown", operand(down), {dDown.data(), f}, fn);
      if (withEpilogue)
        expectDirectional(rng, "dGate", operand(egate), gradOf(dEGate), fn);
      expectPaddingIntact("dX", dX);
    }
}

} // namespace
} // namespace diffrt::cpu::testing
