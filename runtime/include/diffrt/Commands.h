//===- Commands.h - command-line subcommands that run models ----*- C++ -*-===//
//
// Subcommands implemented on the runtime alone: `diffc sample` and
// `diffc bench`, also available without the compiler as the `diffrt` tool
// (the GPU machine has no LLVM). They live in the runtime, built with
// exceptions, because the runtime reports errors as diffrt::Error while the
// MLIR half of diffc is built without.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFRT_COMMANDS_H
#define DIFFRT_COMMANDS_H

#include <string>
#include <vector>

namespace diffrt {

/// `sample ARTIFACT ...`; returns the process exit code.
int runSampleCommand(const std::vector<std::string> &argv);
/// `bench ARTIFACT ...`: random weights and inputs, times the forward entry.
int runBenchCommand(const std::vector<std::string> &argv);
/// `train ARTIFACT ...`: trains a --mode train artifact.
int runTrainCommand(const std::vector<std::string> &argv);

} // namespace diffrt

#endif // DIFFRT_COMMANDS_H
