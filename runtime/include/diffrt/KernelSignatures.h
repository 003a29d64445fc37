//===- KernelSignatures.h - what each kernel of a plan may be ----*- C++ -*-===//
//
// The runtime's contract for every kernel op an artifact can contain: its
// operands (in order, which are optional), its attributes, and the shape and
// dtype relations between them. Loading an artifact checks every kernel
// against this, so a backend can index its operands without bounds checks.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_KERNELSIGNATURES_H
#define DIFFRT_KERNELSIGNATURES_H

#include "diffrt/Plan.h"

#include <string>
#include <vector>

namespace diffrt {

/// Throws diffrt::Error (prefixed by `where`) unless `kernel` is a known op
/// with operands, results and attributes that fit each other.
void validateKernel(const Plan &plan, const KernelDesc &kernel, const std::string &where);

/// The ops the runtime executes, for error messages and tests.
std::vector<std::string> knownKernelOps();

// Attribute access for backends; the kernel was validated, so these only
// throw on a programming error.
int64_t attrInt(const KernelDesc &k, const char *name);
double attrFloat(const KernelDesc &k, const char *name);
const std::string &attrString(const KernelDesc &k, const char *name);
const std::vector<int64_t> &attrInts(const KernelDesc &k, const char *name);
/// How many values a backward kernel ("vjp:OP") reads that OP saved for
/// it: its operands are OP's slots, then these, then the incoming gradients.
int64_t savedCount(const KernelDesc &k);
/// How many forward slots a backward kernel has gradient results for: its
/// results, less the row sums that follow them with "column_sums" (an
/// attention backward's, one per slot).
size_t slotCount(const KernelDesc &k);

} // namespace diffrt

#endif // DIFFRT_KERNELSIGNATURES_H
