//===- MoeTestSupport.h - routing helpers of the MoE tests ------*- C++ -*-===//
//
// The router probabilities of a token in double precision, and the check
// that a set of probabilities has a clear top-k boundary: the CPU and GPU
// MoE tests (forward and backward) draw inputs whose routing no float32
// or 16-bit rounding can flip, so that every implementation routes alike.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace diffrt::testsupport {

/// The smallest gap between the k-th and (k+1)-th probability that counts
/// as a clear routing decision.
constexpr double kGap = 1e-4;

/// softmax(router · x) in double; router is e x d row-major.
inline std::vector<double> routerProbs(const float *x, const std::vector<float> &router, int64_t e, int64_t d) {
  std::vector<double> p(static_cast<size_t>(e));
  double mx = -INFINITY;
  for (int64_t i = 0; i < e; ++i) {
    double acc = 0.0;
    for (int64_t j = 0; j < d; ++j)
      acc += double(router[i * d + j]) * x[j];
    p[i] = acc;
    mx = std::max(mx, acc);
  }
  double total = 0.0;
  for (double &v : p) {
    v = std::exp(v - mx);
    total += v;
  }
  for (double &v : p)
    v /= total;
  return p;
}

/// Whether the k-th and (k+1)-th largest values are at least kGap apart.
inline bool clearBoundary(const std::vector<double> &v, int64_t k) {
  if (k >= static_cast<int64_t>(v.size()))
    return true;
  std::vector<double> s = v;
  std::sort(s.begin(), s.end(), std::greater<double>());
  return s[k - 1] - s[k] >= kGap;
}

} // namespace diffrt::testsupport
