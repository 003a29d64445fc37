//===- ModelZoo.h - named models written as dit IR --------------*- C++ -*-===//
//
// The model zoo: every family of the specification (DiT, DiT-MoE, MicroDiT,
// DiG) at its published sizes, plus the project's small Fashion-MNIST
// DiT-MoE, written as dit IR with parameters named as in the reference
// checkpoints.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_FRONTENDS_MODELZOO_H
#define DIFFC_FRONTENDS_MODELZOO_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <optional>
#include <string>
#include <vector>

namespace diffc::frontends {

/// Options of `diffc import`. Unset fields take the model's defaults.
struct ZooOptions {
  int64_t batch = 1;
  /// Image size in pixels (latent side = size / 8), or for the Fashion-MNIST
  /// model the image side itself.
  std::optional<int64_t> imageSize;
  std::optional<bool> learnSigma;
  std::optional<int64_t> numClasses;
  /// DiT-MoE attention variant: "plain" (timm qkv) or "qk-norm" (the flash
  /// variant with per-head q/k LayerNorm of the XL and G checkpoints).
  std::optional<std::string> attention;
  /// MicroDiT: fraction of tokens masked after the patch-mixer (training).
  std::optional<double> maskRatio;
  /// DiT-MoE: balance-loss coefficient.
  std::optional<double> balanceCoef;

  // Architecture overrides for experiments and tests (tiny configurations
  // of a family); each is checked against the family's constraints.
  std::optional<int64_t> depth, hidden, heads, experts, latentSize;
  std::optional<int64_t> headDim, mixerDepth, mixerHidden, captionChannels, captionTokens;
};

/// One entry of the zoo, for listings and errors.
struct ZooEntry {
  std::string name;
  std::string description;
};
const std::vector<ZooEntry> &zooEntries();

/// Builds the named model. On failure returns null and sets `error` to a
/// message that names the problem and lists what exists.
mlir::OwningOpRef<mlir::ModuleOp> importZooModel(mlir::MLIRContext *context,
                                                 const std::string &name,
                                                 const ZooOptions &options, std::string &error);

} // namespace diffc::frontends

#endif // DIFFC_FRONTENDS_MODELZOO_H
