//===- GradTestUtil.h - finite-difference checks of the backward kernels --===//
//
// The backward kernels are checked against the forward kernels they
// differentiate: for a scalar f(x) = ⟨dOut, forward(x)⟩ (or a loss), the
// analytic directional derivative ⟨grad, u⟩ along a random normal direction
// u is compared with the central difference D(ε) = (f(x + εu) − f(x − εu))/2ε,
// f evaluated in double from the float32 forward's outputs. D is
// Richardson-extrapolated with D(2ε): (4·D(ε) − D(2ε))/3, which cancels
// D's ε²·f‴/6 error term and leaves O(ε⁴).
//
// Why ε = 3e-3, the extrapolation, and a tolerance of 2e-3 relative to
// ‖grad‖ (the standard deviation of ⟨grad, u⟩ over u, so that a direction
// nearly orthogonal to the gradient cannot turn rounding into a large
// "relative" error):
//  * rounding: each float32 output carries a relative error of a few ulps
//    (≈ 1e-7 · √K for a length-K reduction), so f(x ± εu) err by about
//    1e-7 · √(#outputs) · |dOut·out|, and the difference quotient by that
//    over ε: 1e-5 … 3e-4 of ‖grad‖ for the tens to few hundred outputs of
//    these problems at ε = 3e-3 (three times more at ε = 1e-3, where it
//    came within a factor of two of the tolerance);
//  * truncation: the plain central difference errs by ε²/6 · f‴. Where the
//    first derivative partly cancels and the third does not (a softmax's
//    Jacobian rows sum to zero: the MoE router), f‴/f′ reaches the
//    hundreds and that error reached 5e-4 of ‖grad‖ at ε = 3e-3; the
//    extrapolated difference's O(ε⁴) term is negligible;
//  * the perturbation itself is rounded to float32 (x ± εu); the analytic
//    side uses the perturbations actually applied, in the same combination,
//    so that rounding cancels.
// A double-precision reference confirmed the GLA and MoE gradients to 1e-7
// element by element, so the spread seen here is the float forward's. The
// worst error over ~10⁵ checks (repeated runs) was 6.5e-4, a factor of
// three below the tolerance, while a wrong gradient element (an error of
// the size of one element's contribution, ≳ ‖grad‖/√n with n ≤ a few
// hundred) is still caught.
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_TESTS_CPU_GRADTESTUTIL_H
#define DIFFRT_TESTS_CPU_GRADTESTUTIL_H

#include "TestUtil.h"

#include "diffrt/CpuGradKernels.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

namespace diffrt::cpu::testing {

constexpr double kFdEps = 3e-3;
constexpr double kFdTol = 2e-3;

/// A float operand that the check perturbs in place: rows x cols at data
/// with leading dimension ld (ld > cols: the padding is left alone).
struct Operand {
  float *data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
};
inline Operand operand(Buffer &b) { return {b.data.data(), b.rows, b.cols, b.ld}; }
inline Operand operand(std::vector<float> &v) {
  int64_t n = static_cast<int64_t>(v.size());
  return {v.data(), 1, n, n};
}

/// A gradient laid out like its operand.
struct GradOf {
  const float *data = nullptr;
  int64_t ld = 0;
};
inline GradOf gradOf(const Buffer &b) { return {b.data.data(), b.ld}; }
inline GradOf gradOf(const std::vector<float> &v) {
  return {v.data(), static_cast<int64_t>(v.size())};
}

/// Every element of the gradient view was written (the test poisons it
/// with NaN first) and is finite.
inline void expectWritten(const std::string &name, Operand x, GradOf g) {
  int64_t bad = 0;
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.cols; ++c)
      bad += !std::isfinite(g.data[r * g.ld + c]);
  EXPECT_EQ(bad, 0) << name << ": gradient elements not written or not finite";
}

/// ⟨grad, u⟩ against the central difference of f along `directions` random
/// directions u (see the file comment). Returns the largest relative error
/// seen.
inline double expectDirectional(Rng &rng, const std::string &name, Operand x, GradOf g,
                                const std::function<double()> &f, double eps = kFdEps,
                                double tol = kFdTol, int directions = 2) {
  expectWritten(name, x, g);
  double gNorm2 = 0.0;
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.cols; ++c) {
      double v = g.data[r * g.ld + c];
      gNorm2 += v * v;
    }
  double gNorm = std::sqrt(gNorm2), worst = 0.0;
  size_t n = static_cast<size_t>(x.rows * x.cols);
  std::vector<float> orig(n);
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t c = 0; c < x.cols; ++c)
      orig[r * x.cols + c] = x.data[r * x.ld + c];
  // Steps −2ε, −ε, ε, 2ε combined as the Richardson extrapolation of the
  // central difference D(h) = (f(h) − f(−h))/2h: f′ ≈ (4·D(ε) − D(2ε))/3
  // = (8·(f(ε) − f(−ε)) − (f(2ε) − f(−2ε)))/12ε. Differences are taken
  // first, so a function that does not depend on x gives exactly 0.
  const double steps[4] = {-2.0, -1.0, 1.0, 2.0};
  for (int dir = 0; dir < directions; ++dir) {
    std::vector<float> u = rng.normal(x.rows * x.cols);
    std::vector<float> applied[4];
    double values[4];
    for (int s = 0; s < 4; ++s) {
      applied[s].resize(n);
      for (int64_t r = 0; r < x.rows; ++r)
        for (int64_t c = 0; c < x.cols; ++c) {
          size_t i = static_cast<size_t>(r * x.cols + c);
          applied[s][i] = static_cast<float>(orig[i] + steps[s] * eps * u[i]);
          x.data[r * x.ld + c] = applied[s][i];
        }
      values[s] = f();
    }
    double fd = (8.0 * (values[2] - values[1]) - (values[3] - values[0])) / (12.0 * eps);
    std::vector<double> delta(n);
    for (size_t i = 0; i < n; ++i)
      delta[i] = (8.0 * (double(applied[2][i]) - applied[1][i]) -
                  (double(applied[3][i]) - applied[0][i])) /
                 (12.0 * eps);
    for (int64_t r = 0; r < x.rows; ++r)
      for (int64_t c = 0; c < x.cols; ++c)
        x.data[r * x.ld + c] = orig[r * x.cols + c];
    double predicted = 0.0;
    for (int64_t r = 0; r < x.rows; ++r)
      for (int64_t c = 0; c < x.cols; ++c)
        predicted += static_cast<double>(g.data[r * g.ld + c]) * delta[r * x.cols + c];
    double err = std::fabs(predicted - fd) / std::max(gNorm, 1e-30);
    worst = std::max(worst, err);
    EXPECT_LT(err, tol) << name << ": analytic " << predicted << " vs finite difference " << fd
                        << " (|grad| " << gNorm << ", direction " << dir << ")";
  }
  // DIFFRT_GRAD_VERBOSE=1 prints every check's worst error, to see the
  // margin the tolerance leaves.
  if (std::getenv("DIFFRT_GRAD_VERBOSE") != nullptr)
    std::printf("  %-24s worst relative error %.3g\n", name.c_str(), worst);
  return worst;
}

/// ⟨a, b⟩ over a rows x cols view pair, in double.
inline double dot(const Buffer &a, const Buffer &b) {
  double acc = 0.0;
  for (int64_t r = 0; r < a.rows; ++r)
    for (int64_t c = 0; c < a.cols; ++c)
      acc += static_cast<double>(a.at(r, c)) * b.at(r, c);
  return acc;
}
inline double dot(const std::vector<float> &a, const std::vector<float> &b) {
  double acc = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    acc += static_cast<double>(a[i]) * b[i];
  return acc;
}

/// Bitwise equality of two buffers (determinism checks).
inline bool sameBits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Padding columns of a strided gradient still hold the sentinel.
inline void expectPaddingIntact(const std::string &name, const Buffer &b) {
  int64_t touched = 0;
  for (int64_t r = 0; r < b.rows; ++r)
    for (int64_t c = b.cols; c < b.ld; ++c)
      touched += b.at(r, c) != kSentinel;
  EXPECT_EQ(touched, 0) << name << ": padding columns outside the view were overwritten";
}

} // namespace diffrt::cpu::testing

#endif // DIFFRT_TESTS_CPU_GRADTESTUTIL_H
