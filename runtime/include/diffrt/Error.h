//===- Error.h - the runtime's error type -----------------------*- C++ -*-===//
//
// Every failure the runtime reports to a user is a diffrt::Error whose
// message names the file or object, the field, and the numbers involved
// ("model.dfx: kernel #12 (attention): operand #2 offset 4096 + 65536 bytes
// exceeds the arena of 8192 bytes").
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_ERROR_H
#define DIFFRT_ERROR_H

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace diffrt {

class Error : public std::runtime_error {
public:
  explicit Error(const std::string &message) : std::runtime_error(message) {}
};

namespace detail {
inline void appendAll(std::ostringstream &) {}
template <typename T, typename... Rest>
void appendAll(std::ostringstream &os, const T &first, const Rest &...rest) {
  os << first;
  appendAll(os, rest...);
}
} // namespace detail

/// Builds a message from streamable pieces and throws it as a diffrt::Error.
template <typename... Parts>
[[noreturn]] void fail(const Parts &...parts) {
  std::ostringstream os;
  detail::appendAll(os, parts...);
  throw Error(os.str());
}

/// A shape as messages write it: "2x3x4", or "scalar".
inline std::string shapeText(const std::vector<int64_t> &shape) {
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i)
    out += (i ? "x" : "") + std::to_string(shape[i]);
  return shape.empty() ? "scalar" : out;
}

} // namespace diffrt

#endif // DIFFRT_ERROR_H
