//===- TestUtil.h - shared helpers of the CPU kernel tests ------*- C++ -*-===//
//
// Random inputs from a std::random_device seed that every failure message
// repeats, strided buffers whose padding is guarded by a sentinel, NaN
// poisoning of outputs and the norm-wise relative error against a double
// reference. Each kernel test computes its reference with naive loops in
// double and compares through expectMatches.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_TESTS_CPU_TESTUTIL_H
#define DIFFRT_TESTS_CPU_TESTUTIL_H

#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace diffrt::cpu::testing {

/// Float32-accumulated results of the kernels against double references:
/// norm-wise errors are a few float32 epsilons (6e-8) times a growth factor
/// of the order of the square root of the reduction length, which stays far
/// below this bound for the sizes tested.
constexpr double kTol = 1e-5;

inline const float kNaN = std::numeric_limits<float>::quiet_NaN();
/// Written into padding columns (ld > cols) and checked afterwards: a kernel
/// must not touch memory outside its views.
constexpr float kSentinel = -12345.5f;

/// The random source of one test. Construct it first and put
/// SCOPED_TRACE(rng.trace()) next to it, so every failure names the seed.
class Rng {
public:
  Rng() : seed_(std::random_device{}()), gen_(seed_) {}
  std::string trace() const { return "random seed " + std::to_string(seed_); }
  std::mt19937 &gen() { return gen_; }

  /// Normal values (never exactly zero with probability one).
  std::vector<float> normal(int64_t n, double stddev = 1.0, double mean = 0.0) {
    std::normal_distribution<double> dist(mean, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (float &x : v) {
      do
        x = static_cast<float>(dist(gen_));
      while (x == 0.0f);
    }
    return v;
  }
  std::vector<float> uniform(int64_t n, double lo, double hi) {
    std::uniform_real_distribution<double> dist(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float &x : v) {
      do
        x = static_cast<float>(dist(gen_));
      while (x == 0.0f);
    }
    return v;
  }
  int64_t integer(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen_);
  }

private:
  uint32_t seed_;
  std::mt19937 gen_;
};

/// A rows x cols matrix stored with leading dimension ld >= cols; the
/// padding columns hold kSentinel.
struct Buffer {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> data;

  Buffer() = default;
  Buffer(int64_t r, int64_t c, int64_t l = 0)
      : rows(r), cols(c), ld(l > 0 ? l : c), data(static_cast<size_t>(r * (l > 0 ? l : c)),
                                                 kSentinel) {}

  float &at(int64_t r, int64_t c) { return data[static_cast<size_t>(r * ld + c)]; }
  const float &at(int64_t r, int64_t c) const { return data[static_cast<size_t>(r * ld + c)]; }
  Mat mat() { return {data.data(), rows, cols, ld}; }
  ConstMat cmat() const { return {data.data(), rows, cols, ld}; }

  void fillNormal(Rng &rng, double stddev = 1.0) {
    std::vector<float> v = rng.normal(rows * cols, stddev);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        at(r, c) = v[static_cast<size_t>(r * cols + c)];
  }
  void poison() {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        at(r, c) = kNaN;
  }
};

inline Buffer normalBuffer(Rng &rng, int64_t rows, int64_t cols, int64_t ld = 0,
                           double stddev = 1.0) {
  Buffer b(rows, cols, ld);
  b.fillNormal(rng, stddev);
  return b;
}

inline Buffer poisonedBuffer(int64_t rows, int64_t cols, int64_t ld = 0) {
  Buffer b(rows, cols, ld);
  b.poison();
  return b;
}

/// Reference matrix in double, row-major contiguous.
struct Ref {
  int64_t rows = 0, cols = 0;
  std::vector<double> v;
  Ref(int64_t r, int64_t c) : rows(r), cols(c), v(static_cast<size_t>(r * c), 0.0) {}
  double &operator()(int64_t r, int64_t c) { return v[static_cast<size_t>(r * cols + c)]; }
  double operator()(int64_t r, int64_t c) const { return v[static_cast<size_t>(r * cols + c)]; }
};

/// ‖out − ref‖ / ‖ref‖ over the view.
inline double relativeError(const float *out, int64_t ld, const Ref &ref) {
  double num = 0.0, den = 0.0;
  for (int64_t r = 0; r < ref.rows; ++r)
    for (int64_t c = 0; c < ref.cols; ++c) {
      double d = static_cast<double>(out[r * ld + c]) - ref(r, c);
      num += d * d;
      den += ref(r, c) * ref(r, c);
    }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// Every element of the rows x cols view at `out` was written (no NaN left)
/// and the relative error to ref is below tol.
inline void expectMatches(const float *out, int64_t ld, const Ref &ref, double tol = kTol) {
  int64_t unwritten = 0, firstBad = -1;
  for (int64_t r = 0; r < ref.rows; ++r)
    for (int64_t c = 0; c < ref.cols; ++c)
      if (std::isnan(out[r * ld + c]) && unwritten++ == 0)
        firstBad = r * ref.cols + c;
  EXPECT_EQ(unwritten, 0) << "elements not written (or NaN), first at flat index " << firstBad;
  if (unwritten == 0) {
    EXPECT_LT(relativeError(out, ld, ref), tol);
  }
}

/// The same, and the buffer's padding columns still hold the sentinel.
inline void expectMatches(const Buffer &out, const Ref &ref, double tol = kTol) {
  ASSERT_EQ(out.rows, ref.rows);
  ASSERT_EQ(out.cols, ref.cols);
  int64_t touched = 0;
  for (int64_t r = 0; r < out.rows; ++r)
    for (int64_t c = out.cols; c < out.ld; ++c)
      touched += out.at(r, c) != kSentinel;
  EXPECT_EQ(touched, 0) << "padding columns outside the view were overwritten";
  expectMatches(out.data.data(), out.ld, ref, tol);
}

inline void expectMatches(const std::vector<float> &out, const Ref &ref, double tol = kTol) {
  ASSERT_EQ(static_cast<int64_t>(out.size()), ref.rows * ref.cols);
  expectMatches(out.data(), ref.cols, ref, tol);
}

/// Exact equality for the kernels that only move values: every element of
/// the view written and equal to ref, padding untouched.
inline void expectExact(const Buffer &out, const Ref &ref) {
  ASSERT_EQ(out.rows, ref.rows);
  ASSERT_EQ(out.cols, ref.cols);
  int64_t wrong = 0, touched = 0;
  for (int64_t r = 0; r < out.rows; ++r) {
    for (int64_t c = 0; c < out.cols; ++c)
      if (!(double(out.at(r, c)) == ref(r, c)) && wrong++ < 3) {
        ADD_FAILURE() << "element (" << r << ", " << c << "): got " << out.at(r, c)
                      << ", expected " << ref(r, c);
      }
    for (int64_t c = out.cols; c < out.ld; ++c)
      touched += out.at(r, c) != kSentinel;
  }
  EXPECT_EQ(wrong, 0) << "elements differ";
  EXPECT_EQ(touched, 0) << "padding columns outside the view were overwritten";
}

inline Ref toRef(const Buffer &b) {
  Ref r(b.rows, b.cols);
  for (int64_t i = 0; i < b.rows; ++i)
    for (int64_t j = 0; j < b.cols; ++j)
      r(i, j) = b.at(i, j);
  return r;
}

inline std::vector<float> poisoned(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n), kNaN);
}

inline double silu(double x) { return x / (1.0 + std::exp(-x)); }
inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
/// 0.5·x·(1 + tanh(u)) evaluated as x / (1 + e^(-2u)), an identity: in the
/// tanh form even double cancels to 0 for x below about -6, and the
/// reference must stay exact there.
inline double geluTanh(double x) {
  const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return x / (1.0 + std::exp(-2.0 * u));
}
inline double applyAct(double x, Act act) {
  switch (act) {
  case Act::None:
    return x;
  case Act::Gelu:
    return gelu(x);
  case Act::GeluTanh:
    return geluTanh(x);
  case Act::Silu:
    return silu(x);
  }
  return x;
}
inline const char *actName(Act act) {
  switch (act) {
  case Act::None:
    return "none";
  case Act::Gelu:
    return "gelu";
  case Act::GeluTanh:
    return "gelu_tanh";
  case Act::Silu:
    return "silu";
  }
  return "?";
}

/// Reference y = x · wᵀ in double for strided float inputs.
inline Ref matmulNT(ConstMat x, ConstMat w) {
  Ref y(x.rows, w.rows);
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t n = 0; n < w.rows; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < x.cols; ++k)
        acc += static_cast<double>(x.row(r)[k]) * w.row(n)[k];
      y(r, n) = acc;
    }
  return y;
}

/// Expects `statement` to throw diffrt::Error whose message contains every
/// one of the given fragments.
#define EXPECT_DIFFRT_ERROR(statement, ...)                                                        \
  do {                                                                                             \
    bool thrown = false;                                                                           \
    try {                                                                                          \
      statement;                                                                                   \
    } catch (const ::diffrt::Error &error) {                                                       \
      thrown = true;                                                                               \
      std::string message = error.what();                                                          \
      for (const char *fragment : {__VA_ARGS__})                                                   \
        EXPECT_NE(message.find(fragment), std::string::npos)                                       \
            << "message '" << message << "' lacks '" << fragment << "'";                           \
    }                                                                                              \
    EXPECT_TRUE(thrown) << #statement " did not throw diffrt::Error";                              \
  } while (0)

} // namespace diffrt::cpu::testing

#endif // DIFFRT_TESTS_CPU_TESTUTIL_H
