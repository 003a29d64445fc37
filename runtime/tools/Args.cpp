//===- Args.cpp - numeric option values -----------------------------------===//
//
// Kept out of Args.h: they throw, and the compiler's MLIR-side sources that
// include the header build without exceptions.
//
//===----------------------------------------------------------------------===//

#include "diffrt/Args.h"

#include "diffrt/Error.h"

#include <cstdlib>

namespace diffrt {

double Args::number(const std::string &name, double fallback) const {
  auto v = get(name);
  if (!v)
    return fallback;
  char *end = nullptr;
  double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end)
    fail(name, " expects a number, got '", *v, "'");
  return d;
}

int64_t Args::integer(const std::string &name, int64_t fallback) const {
  double d = number(name, static_cast<double>(fallback));
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    fail(name, " expects a whole number, got '", *get(name), "'");
  return static_cast<int64_t>(d);
}

} // namespace diffrt
