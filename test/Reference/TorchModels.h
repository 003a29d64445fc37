//===- TorchModels.h - reference models of the four families --------------===//
//
// LibTorch reference implementations of DiT, DiT-MoE, MicroDiT and DiG.
//
// These are the numerical ground truth that diffc's compiled models are checked against: plain
// eager LibTorch (CPU), written from the model specification (spec/models.md of the steering repository,
// sections 1-5), consuming state dicts keyed exactly like the reference PyTorch checkpoints. Every
// forward is built from differentiable out-of-place ops so that gradients can later be taken with
// autograd through the same code. Speed is deliberately not a goal: data-dependent parts (MoE
// routing, the GLA scan) are written in the most literal form the spec allows.
//
// Conventions shared by all entry points:
//  * Weights may be float32 or float64, but all of a state dict must share one dtype and the
//    image/caption inputs must have that dtype too; the sinusoidal timestep features are always
//    computed in float32 (as the references do) and then cast to it.
//  * A state dict must match the model's *Shapes() exactly (no missing, extra or mis-shaped
//    entries); violations throw std::invalid_argument naming the offending entry, so a loader with
//    a naming bug fails loudly instead of silently running with partial weights.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace diffc::reference {

using StateDict = std::map<std::string, torch::Tensor>;
using Shapes = std::map<std::string, std::vector<int64_t>>;

//===----------------------------------------------------------------------===//
// Configurations (defaults are the "S/2 at 256 px" or released-model values from the spec).
//===----------------------------------------------------------------------===//

struct DitConfig {
  int64_t inputSize = 32, patch = 2, inChannels = 4, hidden = 384, depth = 12, heads = 6,
          numClasses = 1000;
  bool learnSigma = true;
};

struct DitMoeConfig {
  DitConfig base;
  int64_t experts = 8, topK = 2;
  bool normalizeTopK = false;
  // false: timm attention (attn.qkv / attn.proj), as in the S/2 and B/2 checkpoints.
  // true: DiT-MoE's flash variant (attn.Wqkv, attn.q_norm, attn.k_norm, attn.out_proj) with an
  // affine LayerNorm over head_dim on q and k, as in the XL/2 and G/2 checkpoints.
  bool qkNorm = false;
};

struct MicroDitConfig {
  int64_t inputSize = 32, patch = 2, inChannels = 4, dim = 1024, depth = 28, headDim = 64,
          multipleOf = 256, captionChannels = 1024, captionTokens = 77, mixerDepth = 6,
          mixerDim = 768, experts = 8;
  double expertCapacity = 2.0, posInterpScale = 1.0, qkvRatioLo = 0.5, qkvRatioHi = 1.0,
         mlpRatioLo = 0.5, mlpRatioHi = 4.0, mixerQkvRatio = 1.0, mixerMlpRatio = 4.0;
  int64_t expertsEveryN = 2;
};

struct DigConfig {
  int64_t inputSize = 32, patch = 2, inChannels = 4, hidden = 384, depth = 12, heads = 6,
          numClasses = 1000;
  bool learnSigma = true;
};

//===----------------------------------------------------------------------===//
// State-dict layouts. Every entry of the reference state_dict(): parameters and persistent buffers
// (pos_embed everywhere; MicroDiT's mask_token). Computing them allocates no tensors, so they are
// usable for full-size parameter counting.
//===----------------------------------------------------------------------===//

Shapes ditShapes(const DitConfig &cfg);
Shapes ditMoeShapes(const DitMoeConfig &cfg);
Shapes microDitShapes(const MicroDitConfig &cfg);
Shapes digShapes(const DigConfig &cfg);

// MicroDiT registers pos_embed and mask_token as buffers (DiT, DiT-MoE and DiG hold pos_embed as a
// frozen nn.Parameter), so MicroDiT's published parameter totals exclude exactly these entries.
extern const std::set<std::string> kMicroDitBufferNames;

// Total number of elements over all entries whose name is not in `exclude`.
int64_t countElements(const Shapes &shapes, const std::set<std::string> &exclude = {});

// float32 N(0, 1) samples from a self-contained generator (SplitMix64 + Box-Muller in float64):
// the same values for a seed on every platform and LibTorch version, which is what lets golden
// outputs be stored without their weights and lets two builds generate identical test models.
torch::Tensor deterministicNormal(const std::vector<int64_t> &shape, uint64_t seed);

// Deterministic float32 weights for every entry of `shapes`: N(0, scale^2), except
//  * pos_embed: the exact sin-cos table (posInterpScale is MicroDiT's interpolation scale);
//  * mask_token: zeros (the reference buffer is never trained);
//  * LayerNorm / RMSNorm weights: 1 + N(0, scale^2);
//  * DiG's depth-wise conv kernels: the identity tap (centre = 1) + N(0, scale^2), mirroring the
//    reference's identity initialisation. A plain N(0, scale^2) kernel would scale the residual
//    stream by ~0.15 at every block, hiding early blocks from any numerical comparison.
// Each entry draws from its own deterministicNormal stream seeded by (seed, name), so adding or
// removing entries never changes the values of the others.
StateDict randomStateDict(const Shapes &shapes, uint64_t seed, double scale = 0.05,
                          double posInterpScale = 1.0);

//===----------------------------------------------------------------------===//
// Forwards. x: (N, C, H, W) latents with H == W == inputSize.
//===----------------------------------------------------------------------===//

// t: (N) timestep values (DDPM index or RF time, fed unscaled); y: (N) int64 labels in
// [0, numClasses], numClasses being the null class. Returns (N, Cout, H, W), Cout = 2C if
// learnSigma else C.
torch::Tensor ditForward(const DitConfig &cfg, const StateDict &sd, torch::Tensor x,
                         torch::Tensor t, torch::Tensor y);
// balanceTerms, when given, receives each MoE layer's Σ_i f_i·P̄_i (spec 3.2's balance loss
// without α; f_i carries no gradient), in block order, for training checks.
torch::Tensor ditMoeForward(const DitMoeConfig &cfg, const StateDict &sd, torch::Tensor x,
                            torch::Tensor t, torch::Tensor y,
                            std::vector<torch::Tensor> *balanceTerms = nullptr);
torch::Tensor digForward(const DigConfig &cfg, const StateDict &sd, torch::Tensor x,
                         torch::Tensor t, torch::Tensor y);

// cNoise: (N) or (1) EDM noise conditioning ln(sigma)/4; captions: (N, captionTokens,
// captionChannels) or the reference's (N, 1, captionTokens, captionChannels). idsKeep: (N, K)
// int64 token ids kept after the patch-mixer (distinct per row), or none for the unmasked
// network. Returns F (N, C, H, W); tokens not in idsKeep hold mask_token (zero).
torch::Tensor microDitForward(const MicroDitConfig &cfg, const StateDict &sd, torch::Tensor x,
                              torch::Tensor cNoise, torch::Tensor captions,
                              std::optional<torch::Tensor> idsKeep);

//===----------------------------------------------------------------------===//
// Building blocks exposed for cross-checks and for kernel-level comparisons.
//===----------------------------------------------------------------------===//

// (gridH * gridW, dim) float32 sin-cos table of spec 1.1, evaluated in float64. Token n = r*gridW
// + c; the first half of the channels encodes the column c, the second half the row r. Positions
// are divided by interpScale in float32 first, as MicroDiT's numpy code does.
torch::Tensor sincosPosEmbed(int64_t gridH, int64_t gridW, int64_t dim, double interpScale);

// numpy.linspace(lo, hi, n) bit for bit: lo + i * ((hi - lo) / (n - 1)), last element = hi.
std::vector<double> numpyLinspace(double lo, double hi, int64_t n);

// Per-block widths of MicroDiT (spec 4.2-4.4), shared by microDitShapes and the forward.
struct MicroDitBlockPlan {
  int64_t width;      // d: residual width of the block
  double qkvRatio;    // r_q
  double mlpRatio;    // r_m
  int64_t attnWidth;  // d_a: self-attention q/k/v width
  int64_t selfHeads;  // d_a / headDim
  int64_t crossHeads; // d / headDim (cross-attention is not layer-scaled)
  bool moe;           // expert-choice MoE instead of the dense SwiGLU
  int64_t ffnHidden;  // dense SwiGLU hidden, or per-expert hidden when moe
};
std::vector<MicroDitBlockPlan> microDitBackbonePlan(const MicroDitConfig &cfg);
std::vector<MicroDitBlockPlan> microDitMixerPlan(const MicroDitConfig &cfg);

// DiT-MoE's SparseMoeBlock on u (N, T, D) for the block whose MoE lives under `prefix`
// (e.g. "blocks.3.moe"): top-k softmax routing, routed SwiGLU experts, unweighted shared expert.
torch::Tensor ditMoeSparseMoe(const DitMoeConfig &cfg, const StateDict &sd,
                              const std::string &prefix, const torch::Tensor &u,
                              std::vector<torch::Tensor> *balanceTerms = nullptr);

// MicroDiT's expert-choice MoE (spec 4.6) on x (N, T, d) for the FFN under `prefix`
// (e.g. "blocks.1.mlp"); routing is per sample.
torch::Tensor microDitExpertChoiceMoe(const MicroDitConfig &cfg, const StateDict &sd,
                                      const std::string &prefix, const torch::Tensor &x);

// Causal gated linear attention, spec 5.2. q, k, gk: (N, H, T, dk); v: (N, H, T, dv); gk is the
// log-decay (<= 0). Returns o (N, H, T, dv) including the dk^-1/2 scale.
// glaRecurrent runs the state recurrence token by token; glaChunked is the chunk-parallel form
// (intra-chunk masked products with relative decays + inter-chunk state), zero-padding T up to a
// multiple of `chunk`.
torch::Tensor glaRecurrent(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v,
                           const torch::Tensor &gk);
torch::Tensor glaChunked(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v,
                         const torch::Tensor &gk, int64_t chunk = 16);

} // namespace diffc::reference
