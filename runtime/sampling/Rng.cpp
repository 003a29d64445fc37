//===- Rng.cpp - counter-based random numbers (Philox4x32-10) -------------===//
//
// Philox4x32-10 and the derived uniform and normal streams. The constants
// are those of the Philox paper; the known-answer tests pin them.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Rng.h"

#include "diffrt/CpuKernels.h"

#include <cmath>

namespace diffrt {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u; // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u; // sqrt(3) - 1
constexpr double kTwoPi = 6.283185307179586476925286766559;

inline void philoxRound(std::array<uint32_t, 4> &ctr, const std::array<uint32_t, 2> &key) {
  uint64_t p0 = uint64_t(kMul0) * ctr[0];
  uint64_t p1 = uint64_t(kMul1) * ctr[2];
  uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
  uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
  ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
}

} // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter,
                                      std::array<uint32_t, 2> key) {
  for (int i = 0; i < 10; ++i) {
    if (i > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    philoxRound(counter, key);
  }
  return counter;
}

Philox::Philox(uint64_t seed, uint64_t stream)
    : key_{uint32_t(seed), uint32_t(seed >> 32)}, stream_(stream) {}

std::array<uint32_t, 4> Philox::nextBlock() {
  std::array<uint32_t, 4> counter = {uint32_t(block_), uint32_t(block_ >> 32), uint32_t(stream_),
                                     uint32_t(stream_ >> 32)};
  ++block_;
  return philox4x32_10(counter, key_);
}

uint32_t Philox::nextU32() {
  if (wordsLeft_ == 0) {
    words_ = nextBlock();
    wordsLeft_ = 4;
  }
  return words_[4 - wordsLeft_--];
}

float Philox::uniform() {
  // 23 random bits as an odd multiple of 2^-24: exact in float and never 0
  // or 1, which Box-Muller style transforms (log u) rely on.
  uint32_t k = nextU32() >> 9;
  return float(2 * k + 1) * 0x1p-24f;
}

double Philox::normal64() {
  if (hasPendingNormal_) {
    hasPendingNormal_ = false;
    return pendingNormal_;
  }
  std::array<uint32_t, 4> w = nextBlock();
  uint64_t a = (uint64_t(w[1]) << 32) | w[0];
  uint64_t b = (uint64_t(w[3]) << 32) | w[2];
  double u = double(2 * (a >> 12) + 1) * 0x1p-53;
  double v = double(2 * (b >> 12) + 1) * 0x1p-53;
  double r = std::sqrt(-2.0 * std::log(u));
  double theta = kTwoPi * v;
  pendingNormal_ = r * std::sin(theta);
  hasPendingNormal_ = true;
  return r * std::cos(theta);
}

float Philox::normal() { return static_cast<float>(normal64()); }

void Philox::fillNormal(float *out, int64_t n) {
  if (n <= 0)
    return;
  if (hasPendingNormal_) {
    *out++ = normal();
    --n;
  }
  // Pair j of the rest comes from block block_ + j: independent of the
  // pairs before it, so chunks of pairs fill in parallel with exactly the
  // values the sequential calls give.
  const uint64_t first = block_;
  const int64_t pairs = n / 2;
  cpu::parallelFor(pairs, 4096, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      uint64_t block = first + static_cast<uint64_t>(j);
      std::array<uint32_t, 4> w = philox4x32_10(
          {uint32_t(block), uint32_t(block >> 32), uint32_t(stream_), uint32_t(stream_ >> 32)}, key_);
      uint64_t a = (uint64_t(w[1]) << 32) | w[0];
      uint64_t b = (uint64_t(w[3]) << 32) | w[2];
      double u = double(2 * (a >> 12) + 1) * 0x1p-53;
      double v = double(2 * (b >> 12) + 1) * 0x1p-53;
      double r = std::sqrt(-2.0 * std::log(u)), theta = kTwoPi * v;
      out[2 * j] = static_cast<float>(r * std::cos(theta));
      out[2 * j + 1] = static_cast<float>(r * std::sin(theta));
    }
  });
  block_ = first + static_cast<uint64_t>(pairs);
  if (n % 2 != 0)
    out[n - 1] = normal();
}

void Philox::skipNormals(int64_t n) {
  if (n <= 0)
    return;
  if (hasPendingNormal_) {
    hasPendingNormal_ = false;
    --n;
  }
  block_ += static_cast<uint64_t>(n / 2);
  // An odd count ends on the first value of a new pair, whose second one
  // stays pending.
  if (n % 2 != 0)
    normal();
}

void Philox::fillUniform(float *out, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = uniform();
}

} // namespace diffrt
