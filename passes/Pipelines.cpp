//===- Pipelines.cpp - the named compilation pipeline ---------------------===//
//
// One definition of the pipeline, used by diffc and diffc-opt.
//
//===----------------------------------------------------------------------===//

#include "passes/Pipelines.h"

#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace diffc {

ArrayRef<Phase> pipelinePhases() {
  static const Phase phases[] = {
      {"dit", "the frontend's module, checked against the frontend contract"},
      {"dit-inlined", "block functions inlined, common subexpressions merged"},
  };
  return phases;
}

int findPhase(StringRef name) {
  for (auto [index, phase] : llvm::enumerate(pipelinePhases()))
    if (phase.name == name)
      return static_cast<int>(index);
  return -1;
}

void buildPipeline(OpPassManager &pm, const PipelineOptions &options, int last) {
  pm.addPass(createDitVerifyFrontendContract());
  if (last < 1)
    return;
  pm.addPass(createInlinerPass());
  pm.addPass(createSymbolDCEPass());
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
}

namespace {
struct PipelineCliOptions : public PassPipelineOptions<PipelineCliOptions> {
  Option<std::string> target{*this, "target", llvm::cl::desc("cpu or cuda"),
                             llvm::cl::init("cpu")};
  Option<std::string> dtype{*this, "dtype", llvm::cl::desc("f32, f16 or bf16"),
                            llvm::cl::init("f32")};
  Option<std::string> emit{*this, "emit", llvm::cl::desc("last phase to run"),
                           llvm::cl::init("")};
};
} // namespace

void registerPipelines() {
  PassPipelineRegistration<PipelineCliOptions>(
      "diffc-pipeline", "diffc's compilation pipeline up to a phase (default: the last)",
      [](OpPassManager &pm, const PipelineCliOptions &cli) {
        PipelineOptions options;
        options.target = cli.target;
        options.dtype = cli.dtype;
        int last = cli.emit.empty() ? static_cast<int>(pipelinePhases().size()) - 1
                                    : findPhase(cli.emit);
        if (last < 0)
          last = static_cast<int>(pipelinePhases().size()) - 1;
        buildPipeline(pm, options, last);
      });
}

} // namespace diffc
