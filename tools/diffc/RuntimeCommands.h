//===- RuntimeCommands.h - diffc subcommands that run models ----*- C++ -*-===//
//
// Subcommands implemented on the runtime (libdiffrt). They live in their own
// translation unit, built with exceptions, because the runtime reports
// errors as diffrt::Error while the MLIR half of diffc is built without.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_TOOLS_DIFFC_RUNTIMECOMMANDS_H
#define DIFFC_TOOLS_DIFFC_RUNTIMECOMMANDS_H

#include <string>
#include <vector>

namespace diffc::tool {

/// `diffc sample ARTIFACT ...`; returns the process exit code.
int runSampleCommand(const std::vector<std::string> &argv);

} // namespace diffc::tool

#endif // DIFFC_TOOLS_DIFFC_RUNTIMECOMMANDS_H
