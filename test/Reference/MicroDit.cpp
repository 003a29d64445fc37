//===- MicroDit.cpp - reference MicroDiT (spec 4) -------------------------===//
//
// Reference MicroDiT (spec section 4): patch-mixer, deferred masking, layer-wise scaling and
// expert-choice MoE.
//
// The same block class (spec 4.2) serves the patch-mixer and the backbone; only the widths come
// from the per-block plan (spec 4.3/4.4), which is also what the state-dict layout is built from,
// so layout and forward cannot disagree about a width. Masking is expressed through the kept
// token ids: the forward gathers them after the mixer and scatters the final-layer outputs back
// over mask_token, exactly as the reference's mask_out_token / unmask_tokens pair does.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOps.h"

namespace diffc::reference {

using detail::layerNorm;
using detail::linear;
using detail::param;
using detail::require;

namespace {

// Frequency dimension of MicroDiT's timestep embedder (spec 1.2).
constexpr int64_t kTimestepFeatures = 512;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void checkConfig(const MicroDitConfig &cfg) {
  require(cfg.inputSize > 0 && cfg.patch > 0 && cfg.inputSize % cfg.patch == 0,
          "MicroDiT: inputSize must be a positive multiple of patch");
  require(cfg.inChannels > 0 && cfg.depth >= 0 && cfg.mixerDepth >= 0,
          "MicroDiT: invalid channel or depth counts");
  require(cfg.headDim > 0 && cfg.dim % cfg.headDim == 0 && cfg.mixerDim % cfg.headDim == 0,
          "MicroDiT: dim and mixerDim must be multiples of headDim");
  require(cfg.dim % 4 == 0, "MicroDiT: dim must be divisible by 4 (sin-cos table)");
  require(cfg.multipleOf > 0 && cfg.experts > 0 && cfg.expertsEveryN > 0,
          "MicroDiT: multipleOf, experts and expertsEveryN must be positive");
  require(cfg.captionChannels > 0 && cfg.captionTokens > 0, "MicroDiT: empty captions");
  require(cfg.expertCapacity > 0 && cfg.posInterpScale > 0,
          "MicroDiT: expertCapacity and posInterpScale must be positive");
}

// DiTBlock.__init__ width rules. The int() truncations are applied to float64 products, exactly as
// Python evaluates them, because a one-ulp difference in a ratio can move a width by a multiple.
MicroDitBlockPlan makePlan(const MicroDitConfig &cfg, int64_t width, double qkvRatio,
                           double mlpRatio, bool moe) {
  MicroDitBlockPlan plan;
  plan.width = width;
  plan.qkvRatio = qkvRatio;
  plan.mlpRatio = mlpRatio;
  const int64_t attnQuantum = 2 * cfg.headDim;
  plan.attnWidth =
      qkvRatio != 1.0
          ? attnQuantum *
                ceilDiv(static_cast<int64_t>(static_cast<double>(width) * qkvRatio), attnQuantum)
          : width;
  plan.selfHeads = plan.attnWidth / cfg.headDim;
  plan.crossHeads = width / cfg.headDim;
  plan.moe = moe;
  const auto mlpHidden = static_cast<int64_t>(static_cast<double>(width) * mlpRatio);
  if (moe) {
    plan.ffnHidden = cfg.multipleOf * ceilDiv(mlpHidden, cfg.multipleOf);
  } else {
    const auto swiglu = static_cast<int64_t>(2.0 * static_cast<double>(mlpHidden) / 3.0);
    plan.ffnHidden = cfg.multipleOf * ceilDiv(swiglu, cfg.multipleOf);
  }
  require(plan.attnWidth > 0 && plan.ffnHidden > 0, "MicroDiT: a block width rounds to zero");
  return plan;
}

// The caption-refinement block uses FeedForward(dim, int(dim * 4.0)) (spec 4.1 step 7).
int64_t promptFfnHidden(const MicroDitConfig &cfg) {
  const auto mlpHidden = static_cast<int64_t>(static_cast<double>(cfg.dim) * 4.0);
  const auto swiglu = static_cast<int64_t>(2.0 * static_cast<double>(mlpHidden) / 3.0);
  return cfg.multipleOf * ceilDiv(swiglu, cfg.multipleOf);
}

bool mixerIsMapped(const MicroDitConfig &cfg) { return cfg.mixerDim != cfg.dim; }

void addDenseFfn(Shapes &shapes, const std::string &prefix, int64_t width, int64_t hidden) {
  detail::addLinear(shapes, prefix + ".w1", hidden, width, false);
  detail::addLinear(shapes, prefix + ".w2", hidden, width, false);
  detail::addLinear(shapes, prefix + ".w3", width, hidden, false);
}

void addBlock(Shapes &shapes, const std::string &prefix, const MicroDitBlockPlan &plan,
              const MicroDitConfig &cfg) {
  const int64_t d = plan.width;
  detail::addVector(shapes, prefix + ".norm1.weight", d);
  detail::addLinear(shapes, prefix + ".attn.qkv", 3 * plan.attnWidth, d, false);
  detail::addLinear(shapes, prefix + ".attn.proj", d, plan.attnWidth, false);
  detail::addLinear(shapes, prefix + ".cross_attn.q_linear", d, d, false);
  detail::addLinear(shapes, prefix + ".cross_attn.kv_linear", 2 * d, d, false);
  detail::addLinear(shapes, prefix + ".cross_attn.proj", d, d, false);
  detail::addVector(shapes, prefix + ".norm2.weight", d);
  detail::addVector(shapes, prefix + ".norm3.weight", d);
  detail::addLinear(shapes, prefix + ".adaLN_modulation.1", 6 * d, cfg.dim, true);
  if (plan.moe) {
    shapes[prefix + ".mlp.w1"] = {cfg.experts, d, plan.ffnHidden};
    shapes[prefix + ".mlp.w2"] = {cfg.experts, plan.ffnHidden, d};
    detail::addLinear(shapes, prefix + ".mlp.gate", cfg.experts, d, false);
  } else {
    addDenseFfn(shapes, prefix + ".mlp", d, plan.ffnHidden);
  }
}

// timm-style Mlp with a norm between activation and fc2: fc1 -> GELU(tanh) -> LayerNorm -> fc2.
void addNormedMlp(Shapes &shapes, const std::string &prefix, int64_t in, int64_t width) {
  detail::addLinear(shapes, prefix + ".fc1", width, in, true);
  detail::addVector(shapes, prefix + ".norm.weight", width);
  detail::addLinear(shapes, prefix + ".fc2", width, width, true);
}

torch::Tensor normedMlp(const StateDict &sd, const std::string &prefix, const torch::Tensor &x) {
  torch::Tensor h = detail::geluTanh(linear(x, sd, prefix + ".fc1", true));
  return linear(layerNorm(h, param(sd, prefix + ".norm.weight")), sd, prefix + ".fc2", true);
}

// Self-attention with LayerNorm (no affine) on q and k over the whole attention width, all heads
// jointly, before splitting into heads.
torch::Tensor selfAttention(const StateDict &sd, const std::string &prefix, const torch::Tensor &x,
                            int64_t heads) {
  std::vector<torch::Tensor> qkv = linear(x, sd, prefix + ".qkv", false).chunk(3, -1);
  torch::Tensor out = detail::attention(detail::splitHeads(layerNorm(qkv[0]), heads),
                                        detail::splitHeads(layerNorm(qkv[1]), heads),
                                        detail::splitHeads(qkv[2], heads));
  return linear(detail::mergeHeads(out), sd, prefix + ".proj", false);
}

torch::Tensor crossAttention(const StateDict &sd, const std::string &prefix, const torch::Tensor &x,
                             const torch::Tensor &y, int64_t heads) {
  torch::Tensor q = layerNorm(linear(x, sd, prefix + ".q_linear", false));
  std::vector<torch::Tensor> kv = linear(y, sd, prefix + ".kv_linear", false).chunk(2, -1);
  torch::Tensor out =
      detail::attention(detail::splitHeads(q, heads), detail::splitHeads(layerNorm(kv[0]), heads),
                        detail::splitHeads(kv[1], heads));
  return linear(detail::mergeHeads(out), sd, prefix + ".proj", false);
}

torch::Tensor denseFfn(const StateDict &sd, const std::string &prefix, const torch::Tensor &x) {
  return linear(torch::silu(linear(x, sd, prefix + ".w1", false)) *
                    linear(x, sd, prefix + ".w2", false),
                sd, prefix + ".w3", false);
}

// Spec 4.2: adaLN from GELU(tanh)(c); the cross-attention branch is neither modulated nor gated.
torch::Tensor block(const MicroDitConfig &cfg, const StateDict &sd, const std::string &prefix,
                    const MicroDitBlockPlan &plan, const torch::Tensor &x, const torch::Tensor &y,
                    const torch::Tensor &c) {
  std::vector<torch::Tensor> m =
      linear(detail::geluTanh(c), sd, prefix + ".adaLN_modulation.1", true).chunk(6, 1);
  torch::Tensor h =
      x + m[2].unsqueeze(1) *
              selfAttention(
                  sd, prefix + ".attn",
                  detail::modulate(layerNorm(x, param(sd, prefix + ".norm1.weight")), m[0], m[1]),
                  plan.selfHeads);
  h = h + crossAttention(sd, prefix + ".cross_attn",
                         layerNorm(h, param(sd, prefix + ".norm2.weight")), y, plan.crossHeads);
  torch::Tensor u = detail::modulate(layerNorm(h, param(sd, prefix + ".norm3.weight")), m[3], m[4]);
  torch::Tensor ffn = plan.moe ? microDitExpertChoiceMoe(cfg, sd, prefix + ".mlp", u)
                               : denseFfn(sd, prefix + ".mlp", u);
  return h + m[5].unsqueeze(1) * ffn;
}

// LayerNorm(weight only) -> bias-free Linear, the patch-mixer's width adapters.
torch::Tensor mixerMap(const StateDict &sd, const std::string &prefix, const torch::Tensor &x) {
  return linear(layerNorm(x, param(sd, prefix + ".0.weight")), sd, prefix + ".1", false);
}

void checkIdsKeep(const torch::Tensor &ids, int64_t batch, int64_t tokens) {
  require(ids.dim() == 2 && ids.size(0) == batch && ids.scalar_type() == torch::kInt64,
          "MicroDiT: idsKeep must be (N, K) int64");
  require(ids.size(1) >= 1 && ids.size(1) <= tokens, "MicroDiT: idsKeep must keep 1..T tokens");
  require(ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() < tokens,
          "MicroDiT: idsKeep entries must lie in [0, T)");
  torch::Tensor sorted = std::get<0>(ids.sort(1));
  require(ids.size(1) == 1 ||
              (sorted.narrow(1, 1, ids.size(1) - 1) > sorted.narrow(1, 0, ids.size(1) - 1))
                  .all()
                  .item<bool>(),
          "MicroDiT: idsKeep must not repeat a token within a sample");
}

} // namespace

std::vector<MicroDitBlockPlan> microDitBackbonePlan(const MicroDitConfig &cfg) {
  checkConfig(cfg);
  const std::vector<double> qkv = numpyLinspace(cfg.qkvRatioLo, cfg.qkvRatioHi, cfg.depth);
  const std::vector<double> mlp = numpyLinspace(cfg.mlpRatioLo, cfg.mlpRatioHi, cfg.depth);
  std::vector<MicroDitBlockPlan> plans;
  for (int64_t i = 0; i < cfg.depth; ++i) {
    // The last block is dense by design.
    const bool moe = i < cfg.depth - 1 && (i + 1) % cfg.expertsEveryN == 0;
    plans.push_back(makePlan(cfg, cfg.dim, qkv[i], mlp[i], moe));
  }
  return plans;
}

std::vector<MicroDitBlockPlan> microDitMixerPlan(const MicroDitConfig &cfg) {
  checkConfig(cfg);
  std::vector<MicroDitBlockPlan> plans;
  for (int64_t i = 0; i < cfg.mixerDepth; ++i) {
    const bool moe = i >= 1 && (i + 1) % cfg.expertsEveryN == 0;
    plans.push_back(makePlan(cfg, cfg.mixerDim, cfg.mixerQkvRatio, cfg.mixerMlpRatio, moe));
  }
  return plans;
}

Shapes microDitShapes(const MicroDitConfig &cfg) {
  checkConfig(cfg);
  const int64_t dim = cfg.dim;
  const int64_t side = cfg.inputSize / cfg.patch;
  const int64_t outWidth = cfg.patch * cfg.patch * cfg.inChannels;
  Shapes shapes;
  shapes["x_embedder.proj.weight"] = {dim, cfg.inChannels, cfg.patch, cfg.patch};
  detail::addVector(shapes, "x_embedder.proj.bias", dim);
  shapes["pos_embed"] = {1, side * side, dim};
  detail::addLinear(shapes, "t_embedder.mlp.0", dim, kTimestepFeatures, true);
  detail::addLinear(shapes, "t_embedder.mlp.2", dim, dim, true);
  addNormedMlp(shapes, "y_embedder.y_proj", cfg.captionChannels, dim);

  detail::addVector(shapes, "y_emb_preprocess.norm1.weight", dim);
  detail::addLinear(shapes, "y_emb_preprocess.attn.qkv", 3 * dim, dim, false);
  detail::addLinear(shapes, "y_emb_preprocess.attn.proj", dim, dim, false);
  detail::addVector(shapes, "y_emb_preprocess.norm2.weight", dim);
  addDenseFfn(shapes, "y_emb_preprocess.mlp", dim, promptFfnHidden(cfg));
  addNormedMlp(shapes, "pooled_y_emb_process", dim, dim);

  if (mixerIsMapped(cfg)) {
    detail::addVector(shapes, "patch_mixer_map_xin.0.weight", dim);
    detail::addLinear(shapes, "patch_mixer_map_xin.1", cfg.mixerDim, dim, false);
    detail::addVector(shapes, "patch_mixer_map_xout.0.weight", cfg.mixerDim);
    detail::addLinear(shapes, "patch_mixer_map_xout.1", dim, cfg.mixerDim, false);
    detail::addVector(shapes, "patch_mixer_map_y.0.weight", dim);
    detail::addLinear(shapes, "patch_mixer_map_y.1", cfg.mixerDim, dim, false);
  }
  const std::vector<MicroDitBlockPlan> mixer = microDitMixerPlan(cfg);
  for (size_t i = 0; i < mixer.size(); ++i)
    addBlock(shapes, "patch_mixer." + std::to_string(i), mixer[i], cfg);
  const std::vector<MicroDitBlockPlan> backbone = microDitBackbonePlan(cfg);
  for (size_t i = 0; i < backbone.size(); ++i)
    addBlock(shapes, "blocks." + std::to_string(i), backbone[i], cfg);

  detail::addLinear(shapes, "final_layer.linear", outWidth, dim, true);
  detail::addLinear(shapes, "final_layer.adaLN_modulation.1", 2 * dim, dim, true);
  detail::addVector(shapes, "final_layer.norm_final.weight", dim);
  shapes["mask_token"] = {1, 1, outWidth};
  return shapes;
}

torch::Tensor microDitExpertChoiceMoe(const MicroDitConfig &cfg, const StateDict &sd,
                                      const std::string &prefix, const torch::Tensor &x) {
  require(x.dim() == 3, "MicroDiT expert-choice MoE input must be (N, T, d)");
  const int64_t n = x.size(0), t = x.size(1), d = x.size(2);
  const int64_t experts = cfg.experts;
  // int(capacity * T / E) evaluated left to right in float64, as in the reference.
  const auto capacity = static_cast<int64_t>(cfg.expertCapacity * static_cast<double>(t) /
                                             static_cast<double>(experts));
  require(capacity <= t, "MicroDiT: expert capacity exceeds the number of tokens");
  torch::Tensor probs = torch::softmax(linear(x, sd, prefix + ".gate", false), -1); // (N, T, E)
  // Each expert picks its top-`capacity` tokens of the sample by its own probability column.
  auto [gates, picks] = torch::topk(probs.transpose(1, 2), capacity, -1); // (N, E, k)
  torch::Tensor chosen = x.unsqueeze(1)
                             .expand({n, experts, t, d})
                             .gather(2, picks.unsqueeze(-1).expand({n, experts, capacity, d}));
  torch::Tensor hidden = torch::gelu(torch::matmul(chosen, param(sd, prefix + ".w1")));
  torch::Tensor out = torch::matmul(hidden, param(sd, prefix + ".w2")) * gates.unsqueeze(-1);
  torch::Tensor index =
      picks.reshape({n, experts * capacity}).unsqueeze(-1).expand({n, experts * capacity, d});
  return torch::zeros_like(x).scatter_add(1, index, out.reshape({n, experts * capacity, d}));
}

torch::Tensor microDitForward(const MicroDitConfig &cfg, const StateDict &sd, torch::Tensor x,
                              torch::Tensor cNoise, torch::Tensor captions,
                              std::optional<torch::Tensor> idsKeep) {
  detail::checkStateDict(sd, microDitShapes(cfg), "MicroDiT");
  detail::checkImageInput(x, cfg.inChannels, cfg.inputSize, cfg.patch, sd, "MicroDiT");
  const int64_t n = x.size(0);
  const int64_t side = cfg.inputSize / cfg.patch;
  const int64_t tokens = side * side;
  if (captions.dim() == 4) {
    require(captions.size(1) == 1, "MicroDiT: 4-D captions must be (N, 1, L, C)");
    captions = captions.squeeze(1);
  }
  require(captions.dim() == 3 && captions.size(0) == n && captions.size(1) == cfg.captionTokens &&
              captions.size(2) == cfg.captionChannels,
          "MicroDiT: captions must be (N, captionTokens, captionChannels)");
  require(captions.scalar_type() == x.scalar_type(), "MicroDiT: captions must have x's dtype");
  // The reference broadcasts a single noise level over the batch (t.expand(N)).
  cNoise = cNoise.reshape({-1});
  require(cNoise.size(0) == n || cNoise.size(0) == 1, "MicroDiT: cNoise must be (N) or (1)");
  cNoise = cNoise.expand({n});
  if (idsKeep)
    checkIdsKeep(*idsKeep, n, tokens);

  torch::Tensor h =
      detail::patchEmbed(x, sd, "x_embedder.proj", cfg.patch) + param(sd, "pos_embed");
  torch::Tensor tEmb = linear(
      detail::geluTanh(linear(detail::timestepFeatures(cNoise, kTimestepFeatures, x.scalar_type()),
                              sd, "t_embedder.mlp.0", true)),
      sd, "t_embedder.mlp.2", true);

  torch::Tensor y = normedMlp(sd, "y_embedder.y_proj", captions);
  const int64_t promptHeads = cfg.dim / cfg.headDim;
  y = y + selfAttention(sd, "y_emb_preprocess.attn",
                        layerNorm(y, param(sd, "y_emb_preprocess.norm1.weight")), promptHeads);
  y = y + denseFfn(sd, "y_emb_preprocess.mlp",
                   layerNorm(y, param(sd, "y_emb_preprocess.norm2.weight")));
  torch::Tensor c = tEmb + normedMlp(sd, "pooled_y_emb_process", y.mean(1));

  const bool mapped = mixerIsMapped(cfg);
  torch::Tensor yMixer = mapped ? mixerMap(sd, "patch_mixer_map_y", y) : y;
  if (mapped)
    h = mixerMap(sd, "patch_mixer_map_xin", h);
  const std::vector<MicroDitBlockPlan> mixer = microDitMixerPlan(cfg);
  for (size_t i = 0; i < mixer.size(); ++i)
    h = block(cfg, sd, "patch_mixer." + std::to_string(i), mixer[i], h, yMixer, c);

  // Deferred masking: drop tokens after the mixer but before its out-projection (spec 4.5).
  if (idsKeep)
    h = h.gather(1, idsKeep->unsqueeze(-1).expand({n, idsKeep->size(1), h.size(2)}));
  if (mapped)
    h = mixerMap(sd, "patch_mixer_map_xout", h);
  const std::vector<MicroDitBlockPlan> backbone = microDitBackbonePlan(cfg);
  for (size_t i = 0; i < backbone.size(); ++i)
    h = block(cfg, sd, "blocks." + std::to_string(i), backbone[i], h, y, c);

  std::vector<torch::Tensor> shiftScale =
      linear(detail::geluTanh(c), sd, "final_layer.adaLN_modulation.1", true).chunk(2, 1);
  torch::Tensor out =
      linear(detail::modulate(layerNorm(h, param(sd, "final_layer.norm_final.weight")),
                              shiftScale[0], shiftScale[1]),
             sd, "final_layer.linear", true);
  if (idsKeep) {
    // Un-masking: every dropped token becomes mask_token, kept ones return to their positions.
    torch::Tensor filled = param(sd, "mask_token").expand({n, tokens, out.size(2)}).contiguous();
    out = filled.scatter(1, idsKeep->unsqueeze(-1).expand({n, idsKeep->size(1), out.size(2)}), out);
  }
  return detail::unpatchify(out, side, side, cfg.patch, cfg.inChannels);
}

} // namespace diffc::reference
