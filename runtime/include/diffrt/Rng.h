//===- Rng.h - counter-based random numbers (Philox4x32-10) -----*- C++ -*-===//
//
// Sampling noise must be reproducible across the CPU and GPU backends and
// across batch splits, so the generator is counter-based: output block k of
// stream s under seed K is philox4x32_10((k_lo, k_hi, s_lo, s_hi), K) and
// any device can compute element i of a fill without the ones before it.
//
// Derived values and how they consume blocks (a GPU kernel that wants the
// same numbers follows these rules):
//  * nextU32 / uniform: the 4 words of a block in order, then the next block;
//    uniform(u) = (2 * (u >> 9) + 1) * 2^-24, odd multiples of 2^-24, so it
//    lies strictly inside (0, 1), is exactly representable and symmetric
//    about 1/2.
//  * normal64 / normal: one block per pair. Its words form two 64-bit values
//    a = w1:w0 and b = w3:w2 (high:low), uniforms u = (2 * (a >> 12) + 1) *
//    2^-53 and v likewise, and Box–Muller in float64 gives
//    r cos(2 pi v) then r sin(2 pi v), r = sqrt(-2 ln u). normal() rounds to
//    float. The second value of a pair is kept for the next call.
//  * The word buffer and the pending normal are separate, and both take new
//    blocks from the same counter. From a fresh generator, fillNormal's
//    element i therefore comes from block i / 2, and fillUniform's from word
//    i % 4 of block i / 4.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_RNG_H
#define DIFFRT_RNG_H

#include <array>
#include <cstdint>

namespace diffrt {

/// The Philox4x32 bijection with 10 rounds (Salmon et al., SC'11), as in
/// Random123 and cuRAND.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter,
                                      std::array<uint32_t, 2> key);

class Philox {
public:
  explicit Philox(uint64_t seed, uint64_t stream = 0);

  uint32_t nextU32();
  /// Uniform in (0, 1) on a grid of 2^-24 (see the file comment).
  float uniform();
  /// Standard normal: Box–Muller in float64, rounded to float.
  float normal();
  double normal64();
  void fillNormal(float *out, int64_t n);
  /// Leaves the generator as fillNormal(·, n) would, without the values:
  /// for a fill made elsewhere (a training step's noise, drawn on the
  /// device by these rules) before the host draws what follows it.
  void skipNormals(int64_t n);
  void fillUniform(float *out, int64_t n);

  /// Index of the next block the generator will take from the counter.
  uint64_t blockIndex() const { return block_; }

private:
  std::array<uint32_t, 4> nextBlock();

  std::array<uint32_t, 2> key_;
  uint64_t stream_;
  uint64_t block_ = 0;
  std::array<uint32_t, 4> words_{};
  int wordsLeft_ = 0;
  double pendingNormal_ = 0.0;
  bool hasPendingNormal_ = false;
};

} // namespace diffrt

#endif // DIFFRT_RNG_H
