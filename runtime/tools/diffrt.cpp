//===- diffrt.cpp - the runtime's command-line tool -----------------------===//
//
// `diffrt sample` and `diffrt bench` without the compiler: the same commands
// as `diffc sample` and `diffc bench`, for machines that have the runtime but
// no LLVM (the GPU machine).
//
//===----------------------------------------------------------------------===//

#include "diffrt/Commands.h"

#include <iostream>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  std::vector<std::string> rest(argv + std::min(argc, 2), argv + argc);
  std::string command = argc > 1 ? argv[1] : "";
  if (command == "sample")
    return diffrt::runSampleCommand(rest);
  if (command == "bench")
    return diffrt::runBenchCommand(rest);
  if (command == "train")
    return diffrt::runTrainCommand(rest);
  std::cerr << "usage: diffrt sample|bench|train MODEL.dfx [options]  (see diffc --help)\n";
  return command.empty() || command == "--help" ? 0 : 2;
}
