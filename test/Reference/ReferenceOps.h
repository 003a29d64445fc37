//===- ReferenceOps.h - shared building blocks of the references ----------===//
//
// Internal building blocks shared by the reference model implementations.
//
// Private to test/Reference: state-dict access with layout validation, the small functional ops
// every family is made of (linear, norms, attention, modulation, patchify/unpatchify), the
// DiT-style embedding trunk and final layer that DiT, DiT-MoE and DiG share verbatim, and the
// helpers that build state-dict layouts. Keeping them in one place means the families differ only
// where the spec says they differ.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "TorchModels.h"

#include <string>

namespace diffc::reference::detail {

// LayerNorm epsilon used by every family (spec 2.3, 4.2, 5.1) and by the RMSNorms inside GLA.
inline constexpr double kNormEps = 1e-6;

[[noreturn]] void fail(const std::string &message);
void require(bool condition, const std::string &message);

// Throws unless `sd` has exactly the entries of `expected` with those shapes, all floating point
// of one dtype. `model` names the family in the error messages.
void checkStateDict(const StateDict &sd, const Shapes &expected, const std::string &model);

const torch::Tensor &param(const StateDict &sd, const std::string &name);

// Reference nn.Linear named `prefix` (prefix.weight, optional prefix.bias).
torch::Tensor linear(const torch::Tensor &x, const StateDict &sd, const std::string &prefix,
                     bool bias);

// LayerNorm over the last dimension; weight/bias are skipped when undefined.
torch::Tensor layerNorm(const torch::Tensor &x, const torch::Tensor &weight = {},
                        const torch::Tensor &bias = {});

// RMSNorm over the last dimension (fla's RMSNorm: x / sqrt(mean(x^2) + eps) * weight).
torch::Tensor rmsNorm(const torch::Tensor &x, const torch::Tensor &weight);

torch::Tensor geluTanh(const torch::Tensor &x);

// x * (1 + scale) + shift with (N, D) shift/scale broadcast over tokens.
torch::Tensor modulate(const torch::Tensor &x, const torch::Tensor &shift,
                       const torch::Tensor &scale);

// Non-causal softmax attention on (N, H, T, d) tensors with scale d^-1/2.
torch::Tensor attention(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v);

// (N, T, H*d) <-> (N, H, T, d).
torch::Tensor splitHeads(const torch::Tensor &x, int64_t heads);
torch::Tensor mergeHeads(const torch::Tensor &x);

// Sinusoidal timestep features [cos, sin] (spec 1.2), computed in float32 like the references,
// then cast to `dtype`. t: (N).
torch::Tensor timestepFeatures(const torch::Tensor &t, int64_t dim, torch::ScalarType dtype);

// timm PatchEmbed (conv p x p stride p, bias) + row-major flatten: (N, C, H, W) -> (N, T, D).
torch::Tensor patchEmbed(const torch::Tensor &x, const StateDict &sd, const std::string &prefix,
                         int64_t patch);

// (N, h*w, p*p*C) -> (N, C, h*p, w*p), element (i*p + j)*C + ch of a token is pixel (i, j).
torch::Tensor unpatchify(const torch::Tensor &x, int64_t gridH, int64_t gridW, int64_t patch,
                         int64_t channels);

// Checks x (N, C, H, W) against a DiT-family config and the state-dict dtype.
void checkImageInput(const torch::Tensor &x, int64_t inChannels, int64_t inputSize, int64_t patch,
                     const StateDict &sd, const std::string &model);

// DiT / DiT-MoE / DiG share everything outside the blocks (spec 2.1-2.4, 3.1, 5).
struct DitTrunkInput {
  torch::Tensor tokens; // (N, T, D): patch embedding + pos_embed
  torch::Tensor c;      // (N, D): timestep embedding + label embedding
};
DitTrunkInput ditTrunkEmbed(const StateDict &sd, const torch::Tensor &x, const torch::Tensor &t,
                            const torch::Tensor &y, int64_t patch, int64_t numClasses);
// adaLN shift/scale from SiLU(c), no-affine LayerNorm, Linear; then unpatchify.
torch::Tensor ditTrunkFinal(const StateDict &sd, const torch::Tensor &tokens,
                            const torch::Tensor &c, int64_t gridSide, int64_t patch,
                            int64_t outChannels);

// Layout helpers.
void addLinear(Shapes &shapes, const std::string &prefix, int64_t out, int64_t in, bool bias);
void addVector(Shapes &shapes, const std::string &name, int64_t size);
// The entries ditTrunkEmbed and ditTrunkFinal read (x_embedder, pos_embed, t_embedder,
// y_embedder, final_layer).
void addDitTrunk(Shapes &shapes, int64_t inputSize, int64_t patch, int64_t inChannels,
                 int64_t hidden, int64_t numClasses, int64_t outChannels);

} // namespace diffc::reference::detail
