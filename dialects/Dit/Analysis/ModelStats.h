//===- ModelStats.h - parameter and cost counts of a dit model --*- C++ -*-===//
//
// Counts a model's parameters (total and activated per token, MoE experts
// that a token does not use excluded) and its forward cost in
// multiply-accumulates, per model and per block kind, from dit IR alone.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_DIALECTS_DIT_ANALYSIS_MODELSTATS_H
#define DIFFC_DIALECTS_DIT_ANALYSIS_MODELSTATS_H

#include "mlir/IR/BuiltinOps.h"

#include <map>
#include <string>

namespace diffc::dit {

struct CostCounts {
  /// Parameters, including frozen state such as the position table.
  double params = 0;
  /// Parameters a token uses: unused routed experts excluded.
  double activatedParams = 0;
  /// Multiply-accumulates of one forward, per sample.
  double macs = 0;
  /// The attention and gated-linear-attention cores' share of `macs`.
  double coreMacs = 0;
  /// The SwiGLU down-projections' share of `macs` (DiG's published counts
  /// leave them out).
  double swigluDownMacs = 0;
  int64_t instances = 0;

  CostCounts &operator+=(const CostCounts &o);
};

struct ModelStats {
  std::string name;
  int64_t batch = 1;
  CostCounts total;
  /// Per dit.block_kind; ops outside blocks under "(outside blocks)".
  std::map<std::string, CostCounts> byKind;
};

/// Counts a verified module in the frontend contract's form.
mlir::FailureOr<ModelStats> computeModelStats(mlir::ModuleOp module);

/// The report `diffc stats` prints.
std::string formatModelStats(const ModelStats &stats);

} // namespace diffc::dit

#endif // DIFFC_DIALECTS_DIT_ANALYSIS_MODELSTATS_H
