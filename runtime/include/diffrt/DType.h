//===- DType.h - element types the runtime stores ---------------*- C++ -*-===//
//
// Element types of tensors in artifacts, checkpoints and arenas, with their
// sizes, names, and the conversions between float32 and the 16-bit formats.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_DTYPE_H
#define DIFFRT_DTYPE_H

#include <cstdint>
#include <cstring>
#include <string>

namespace diffrt {

enum class DType : uint32_t { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, I64 = 4, F64 = 5, U8 = 6 };

inline size_t dtypeSize(DType t) {
  switch (t) {
  case DType::F32: return 4;
  case DType::F16: return 2;
  case DType::BF16: return 2;
  case DType::I32: return 4;
  case DType::I64: return 8;
  case DType::F64: return 8;
  case DType::U8: return 1;
  }
  return 0;
}

/// Names as safetensors spells them.
inline const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32: return "F32";
  case DType::F16: return "F16";
  case DType::BF16: return "BF16";
  case DType::I32: return "I32";
  case DType::I64: return "I64";
  case DType::F64: return "F64";
  case DType::U8: return "U8";
  }
  return "?";
}

inline bool isValidDType(uint32_t raw) { return raw <= static_cast<uint32_t>(DType::U8); }

/// IEEE binary16 from float32, round to nearest even, with infinities, NaN
/// and subnormals.
inline uint16_t floatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
  if (mag >= 0x477ff000u) // rounds to >= 65520: overflow to inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (mag < 0x38800000u) { // subnormal or zero in half
    if (mag < 0x33000000u)
      return static_cast<uint16_t>(sign);
    // value = mant24 * 2^(e - 150) and a half subnormal is m * 2^-24, so
    // m = mant24 >> (126 - e), rounded to nearest even.
    uint32_t mant = (mag & 0x7fffffu) | 0x800000u;
    int shift = 126 - static_cast<int>(mag >> 23);
    uint32_t half = mant >> shift;
    uint32_t rest = mant & ((1u << shift) - 1);
    uint32_t midpoint = 1u << (shift - 1);
    if (rest > midpoint || (rest == midpoint && (half & 1u)))
      ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((mag - 0x38000000u) >> 13);
  uint32_t rest = mag & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    ++half;
  return static_cast<uint16_t>(sign | half);
}

inline float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else { // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      x = sign | ((112 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

/// bfloat16 from float32, round to nearest even; NaN stays NaN.
inline uint16_t floatToBf16(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

inline float bf16ToFloat(uint16_t b) {
  uint32_t x = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

} // namespace diffrt

#endif // DIFFRT_DTYPE_H
