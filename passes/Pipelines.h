//===- Pipelines.h - the named compilation pipeline -------------*- C++ -*-===//
//
// diffc's pipeline from a frontend's dit module to a planned kernel program,
// as a sequence of named phases. `diffc compile --emit=<phase>` and the
// `diffc-pipeline` pass of diffc-opt both build it from here.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_PASSES_PIPELINES_H
#define DIFFC_PASSES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <string>

namespace diffc {

struct PipelineOptions {
  /// "cpu" or "cuda".
  std::string target = "cpu";
  /// Element type of activations and weights: "f32", "f16" or "bf16".
  std::string dtype = "f32";
  /// "sample": the @forward entry; "train": @train_step (loss and gradients).
  std::string mode = "sample";
  /// Training objective (ddpm, rf, edm); empty: the model's own.
  std::string objective;
  /// Rematerialisation in training (none, norms): see kern-autodiff.
  std::string remat = "none";
};

/// A stop of the pipeline: its name and what the IR looks like there.
struct Phase {
  llvm::StringLiteral name;
  llvm::StringLiteral description;
};

/// The phases in order; the last one is the input of artifact emission.
llvm::ArrayRef<Phase> pipelinePhases();

/// Index of `name` in pipelinePhases(), or -1.
int findPhase(llvm::StringRef name);

/// Adds the passes that take a module from the frontend contract to the end
/// of phase `last` (inclusive).
void buildPipeline(mlir::OpPassManager &pm, const PipelineOptions &options, int last);

/// Registers `diffc-pipeline{target=... dtype=... emit=...}` for diffc-opt.
void registerPipelines();

} // namespace diffc

#endif // DIFFC_PASSES_PIPELINES_H
