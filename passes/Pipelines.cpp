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
      {"kern", "a kernel selected for every op: the unfused kernel-level program"},
      {"kern-fused", "neighbouring element-wise work fused into the kernels"},
      {"kern-autodiff", "with --mode train: @train_step, the loss and every parameter's gradient "
                        "(activation derivatives folded into the next layer's input-gradient products, the q/k/v bias "
                        "gradient into the attention backward)"},
      {"kern-typed", "dense layers' gated residuals fused into the norms after them, activations and weights in the "
                     "chosen element type"},
      {"kern-pointwise", "the remaining element-wise chains as generated kernels"},
      {"kern-planned", "every value placed in the weights, constants or arena region"},
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
  if (last < 2)
    return;
  pm.addNestedPass<func::FuncOp>(createDitDecompose());
  pm.addNestedPass<func::FuncOp>(createDitToKern());
  if (last < 3)
    return;
  pm.addNestedPass<func::FuncOp>(createKernFuseNormModulate());
  pm.addNestedPass<func::FuncOp>(createKernFuseGemmActivation());
  pm.addNestedPass<func::FuncOp>(createKernFuseMoeSharedExpert());
  pm.addNestedPass<func::FuncOp>(createKernFuseGatedResidual());
  pm.addNestedPass<func::FuncOp>(createKernFuseGatedRmsNorm());
  pm.addNestedPass<func::FuncOp>(createKernFusePatchEmbedPositions());
  pm.addNestedPass<func::FuncOp>(createKernFoldTokenReorder());
  pm.addPass(createCSEPass());
  if (last < 4)
    return;
  if (options.mode == "train") {
    // The CUDA backward reads saved expert activations and attention
    // statistics; the CPU's recomputes them.
    pm.addPass(createKernAutodiff(
        KernAutodiffOptions{options.objective, options.target == "cuda", options.target == "cuda",
                            options.remat}));
    pm.addPass(createCSEPass());
    pm.addNestedPass<func::FuncOp>(createKernFoldActivationGrad());
    pm.addNestedPass<func::FuncOp>(createKernFoldNormGradSum());
    pm.addNestedPass<func::FuncOp>(createKernFoldAttentionBiasGrad());
  }
  if (last < 5)
    return;
  pm.addNestedPass<func::FuncOp>(createKernFuseResidualNorm());
  pm.addNestedPass<func::FuncOp>(createKernSetPrecision(KernSetPrecisionOptions{options.dtype}));
  if (last < 6)
    return;
  pm.addNestedPass<func::FuncOp>(createKernFusePointwise());
  if (last < 7)
    return;
  // The CUDA training step runs weight-gradient products on a lane of
  // their own (CudaBackend); three dense backwards of slack let them run
  // beside the kernels that follow (in DiT-XL/2's plan, with two a third
  // of them are waited for within eight kernels; with three, one of 144).
  KernPlanMemoryOptions plan;
  if (options.mode == "train" && options.target == "cuda")
    plan.weightGradWindow = 3;
  pm.addPass(createKernPlanMemory(plan));
}

namespace {
struct PipelineCliOptions : public PassPipelineOptions<PipelineCliOptions> {
  Option<std::string> target{*this, "target", llvm::cl::desc("cpu or cuda"),
                             llvm::cl::init("cpu")};
  Option<std::string> dtype{*this, "dtype", llvm::cl::desc("f32, f16 or bf16"),
                            llvm::cl::init("f32")};
  Option<std::string> emit{*this, "emit", llvm::cl::desc("last phase to run"),
                           llvm::cl::init("")};
  Option<std::string> mode{*this, "mode", llvm::cl::desc("sample or train"), llvm::cl::init("sample")};
  Option<std::string> objective{*this, "objective", llvm::cl::desc("ddpm, rf or edm"),
                                llvm::cl::init("")};
  Option<std::string> remat{*this, "remat", llvm::cl::desc("none, or norms and/or products, comma-separated"), llvm::cl::init("none")};
};
} // namespace

void registerPipelines() {
  PassPipelineRegistration<PipelineCliOptions>(
      "diffc-pipeline", "diffc's compilation pipeline up to a phase (default: the last)",
      [](OpPassManager &pm, const PipelineCliOptions &cli) {
        PipelineOptions options;
        options.target = cli.target;
        options.dtype = cli.dtype;
        options.mode = cli.mode;
        options.objective = cli.objective;
        options.remat = cli.remat;
        int last = cli.emit.empty() ? static_cast<int>(pipelinePhases().size()) - 1
                                    : findPhase(cli.emit);
        if (last < 0)
          last = static_cast<int>(pipelinePhases().size()) - 1;
        buildPipeline(pm, options, last);
      });
}

} // namespace diffc
