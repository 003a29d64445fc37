//===- Dit.cpp - reference DiT (spec 2) and DiT-MoE (spec 3) --------------===//
//
// Reference DiT (spec section 2) and DiT-MoE (spec section 3).
//
// DiT-MoE is DiT with the block MLP replaced by a token-choice sparse MoE (top-k softmax router,
// SwiGLU experts, an always-on shared SwiGLU expert) and, for the XL/G checkpoints, an attention
// variant with per-head q/k LayerNorm. Both share the trunk in ReferenceOps.h and the adaLN-Zero
// block skeleton below, so the two models differ exactly where the spec says they do.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOps.h"

#include <functional>

namespace diffc::reference {

using detail::linear;
using detail::param;
using detail::require;

namespace {

int64_t outChannels(const DitConfig &cfg) {
  return cfg.learnSigma ? 2 * cfg.inChannels : cfg.inChannels;
}

void checkConfig(const DitConfig &cfg, const std::string &model) {
  require(cfg.inputSize > 0 && cfg.patch > 0 && cfg.inputSize % cfg.patch == 0,
          model + ": inputSize must be a positive multiple of patch");
  require(cfg.inChannels > 0 && cfg.numClasses > 0 && cfg.depth >= 0,
          model + ": invalid channel/class/depth counts");
  require(cfg.heads > 0 && cfg.hidden % cfg.heads == 0,
          model + ": hidden must be divisible by heads");
  require(cfg.hidden % 4 == 0, model + ": hidden must be divisible by 4 (sin-cos table)");
}

void checkMoeConfig(const DitMoeConfig &cfg) {
  checkConfig(cfg.base, "DiT-MoE");
  require(cfg.experts > 0 && cfg.topK > 0 && cfg.topK <= cfg.experts,
          "DiT-MoE: need 0 < topK <= experts");
}

std::string blockPrefix(int64_t i) { return "blocks." + std::to_string(i); }

// Timm Attention: fused qkv with bias, heads split as (3, heads, headDim), output projection.
torch::Tensor timmAttention(const StateDict &sd, const std::string &prefix, const torch::Tensor &x,
                            int64_t heads) {
  std::vector<torch::Tensor> qkv = linear(x, sd, prefix + ".qkv", true).chunk(3, -1);
  torch::Tensor out =
      detail::attention(detail::splitHeads(qkv[0], heads), detail::splitHeads(qkv[1], heads),
                        detail::splitHeads(qkv[2], heads));
  return linear(detail::mergeHeads(out), sd, prefix + ".proj", true);
}

// DiT-MoE's FlashSelfMHAModified with qk_norm: affine LayerNorm over head_dim on q and k before
// attention. The reference then casts q and k to fp16 for FlashAttention; this fp32 reference
// deliberately omits that rounding.
torch::Tensor qkNormAttention(const StateDict &sd, const std::string &prefix,
                              const torch::Tensor &x, int64_t heads) {
  std::vector<torch::Tensor> qkv = linear(x, sd, prefix + ".Wqkv", true).chunk(3, -1);
  torch::Tensor q = detail::splitHeads(qkv[0], heads);
  torch::Tensor k = detail::splitHeads(qkv[1], heads);
  q = detail::layerNorm(q, param(sd, prefix + ".q_norm.weight"),
                        param(sd, prefix + ".q_norm.bias"));
  k = detail::layerNorm(k, param(sd, prefix + ".k_norm.weight"),
                        param(sd, prefix + ".k_norm.bias"));
  torch::Tensor out = detail::attention(q, k, detail::splitHeads(qkv[2], heads));
  return linear(detail::mergeHeads(out), sd, prefix + ".out_proj", true);
}

// Bias-free SwiGLU: down(silu(gate u) * up u).
torch::Tensor swiglu(const StateDict &sd, const std::string &prefix, const torch::Tensor &u) {
  return linear(torch::silu(linear(u, sd, prefix + ".gate_proj", false)) *
                    linear(u, sd, prefix + ".up_proj", false),
                sd, prefix + ".down_proj", false);
}

using TokenMixer = std::function<torch::Tensor(const std::string &, const torch::Tensor &)>;

// adaLN-Zero block (spec 2.3): six modulation vectors from SiLU(c), in the order shift_msa,
// scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
torch::Tensor adaLnZeroBlock(const StateDict &sd, const std::string &prefix, const torch::Tensor &x,
                             const torch::Tensor &c, const TokenMixer &attention,
                             const TokenMixer &channelMixer) {
  std::vector<torch::Tensor> m =
      linear(torch::silu(c), sd, prefix + ".adaLN_modulation.1", true).chunk(6, 1);
  torch::Tensor h =
      x + m[2].unsqueeze(1) * attention(prefix, detail::modulate(detail::layerNorm(x), m[0], m[1]));
  return h + m[5].unsqueeze(1) *
                 channelMixer(prefix, detail::modulate(detail::layerNorm(h), m[3], m[4]));
}

void addAdaLn(Shapes &shapes, const std::string &prefix, int64_t hidden) {
  detail::addLinear(shapes, prefix + ".adaLN_modulation.1", 6 * hidden, hidden, true);
}

} // namespace

Shapes ditShapes(const DitConfig &cfg) {
  checkConfig(cfg, "DiT");
  const int64_t d = cfg.hidden;
  Shapes shapes;
  detail::addDitTrunk(shapes, cfg.inputSize, cfg.patch, cfg.inChannels, d, cfg.numClasses,
                      outChannels(cfg));
  for (int64_t i = 0; i < cfg.depth; ++i) {
    const std::string p = blockPrefix(i);
    detail::addLinear(shapes, p + ".attn.qkv", 3 * d, d, true);
    detail::addLinear(shapes, p + ".attn.proj", d, d, true);
    detail::addLinear(shapes, p + ".mlp.fc1", 4 * d, d, true);
    detail::addLinear(shapes, p + ".mlp.fc2", d, 4 * d, true);
    addAdaLn(shapes, p, d);
  }
  return shapes;
}

Shapes ditMoeShapes(const DitMoeConfig &cfg) {
  checkMoeConfig(cfg);
  const int64_t d = cfg.base.hidden;
  Shapes shapes;
  detail::addDitTrunk(shapes, cfg.base.inputSize, cfg.base.patch, cfg.base.inChannels, d,
                      cfg.base.numClasses, outChannels(cfg.base));
  for (int64_t i = 0; i < cfg.base.depth; ++i) {
    const std::string p = blockPrefix(i);
    if (cfg.qkNorm) {
      const int64_t headDim = d / cfg.base.heads;
      detail::addLinear(shapes, p + ".attn.Wqkv", 3 * d, d, true);
      detail::addVector(shapes, p + ".attn.q_norm.weight", headDim);
      detail::addVector(shapes, p + ".attn.q_norm.bias", headDim);
      detail::addVector(shapes, p + ".attn.k_norm.weight", headDim);
      detail::addVector(shapes, p + ".attn.k_norm.bias", headDim);
      detail::addLinear(shapes, p + ".attn.out_proj", d, d, true);
    } else {
      detail::addLinear(shapes, p + ".attn.qkv", 3 * d, d, true);
      detail::addLinear(shapes, p + ".attn.proj", d, d, true);
    }
    detail::addLinear(shapes, p + ".moe.gate", cfg.experts, d, false);
    // Routed experts have hidden 4D (integer mlp_ratio 4); the "2 shared experts" are one SwiGLU
    // of hidden 2D (spec 3.2 item 7).
    for (int64_t e = 0; e < cfg.experts; ++e) {
      const std::string ep = p + ".moe.experts." + std::to_string(e);
      detail::addLinear(shapes, ep + ".gate_proj", 4 * d, d, false);
      detail::addLinear(shapes, ep + ".up_proj", 4 * d, d, false);
      detail::addLinear(shapes, ep + ".down_proj", d, 4 * d, false);
    }
    const std::string sp = p + ".moe.shared_experts";
    detail::addLinear(shapes, sp + ".gate_proj", 2 * d, d, false);
    detail::addLinear(shapes, sp + ".up_proj", 2 * d, d, false);
    detail::addLinear(shapes, sp + ".down_proj", d, 2 * d, false);
    addAdaLn(shapes, p, d);
  }
  return shapes;
}

torch::Tensor ditForward(const DitConfig &cfg, const StateDict &sd, torch::Tensor x,
                         torch::Tensor t, torch::Tensor y) {
  detail::checkStateDict(sd, ditShapes(cfg), "DiT");
  detail::checkImageInput(x, cfg.inChannels, cfg.inputSize, cfg.patch, sd, "DiT");
  detail::DitTrunkInput in = detail::ditTrunkEmbed(sd, x, t, y, cfg.patch, cfg.numClasses);
  const TokenMixer attention = [&](const std::string &p, const torch::Tensor &u) {
    return timmAttention(sd, p + ".attn", u, cfg.heads);
  };
  const TokenMixer mlp = [&](const std::string &p, const torch::Tensor &u) {
    return linear(detail::geluTanh(linear(u, sd, p + ".mlp.fc1", true)), sd, p + ".mlp.fc2", true);
  };
  torch::Tensor h = in.tokens;
  for (int64_t i = 0; i < cfg.depth; ++i)
    h = adaLnZeroBlock(sd, blockPrefix(i), h, in.c, attention, mlp);
  return detail::ditTrunkFinal(sd, h, in.c, cfg.inputSize / cfg.patch, cfg.patch, outChannels(cfg));
}

torch::Tensor ditMoeSparseMoe(const DitMoeConfig &cfg, const StateDict &sd,
                              const std::string &prefix, const torch::Tensor &u,
                              std::vector<torch::Tensor> *balanceTerms) {
  require(u.dim() == 3 && u.size(2) == cfg.base.hidden, "DiT-MoE MoE input must be (N, T, D)");
  // Routing is over all tokens of all samples at once (spec 3.2: M = N*T).
  torch::Tensor tokens = u.reshape({-1, u.size(2)});
  torch::Tensor probs = torch::softmax(linear(tokens, sd, prefix + ".gate", false), -1);
  auto [weights, experts] = torch::topk(probs, cfg.topK, -1, /*largest=*/true, /*sorted=*/false);
  if (balanceTerms != nullptr) {
    // f_i = E/(K·M) · (slots routed to i), a constant; P̄_i = mean router probability.
    int64_t m = tokens.size(0);
    torch::Tensor slots = torch::zeros({cfg.experts}, probs.options())
                              .index_add(0, experts.reshape({-1}),
                                         torch::ones({m * cfg.topK}, probs.options()));
    torch::Tensor f = (slots * (static_cast<double>(cfg.experts) / (cfg.topK * m))).detach();
    balanceTerms->push_back((f * probs.mean(0)).sum());
  }
  if (cfg.normalizeTopK)
    weights = weights / (weights.sum(-1, /*keepdim=*/true) + 1e-20);
  torch::Tensor routed = torch::zeros_like(tokens);
  for (int64_t e = 0; e < cfg.experts; ++e) {
    // A token lists each expert at most once among its top-k, so summing the masked weights
    // picks out that one slot.
    torch::Tensor hit = experts.eq(e);
    torch::Tensor ids = hit.any(1).nonzero().squeeze(1);
    if (ids.numel() == 0)
      continue;
    torch::Tensor tokenWeight =
        (weights * hit.to(weights.scalar_type())).sum(1).index_select(0, ids);
    torch::Tensor out =
        swiglu(sd, prefix + ".experts." + std::to_string(e), tokens.index_select(0, ids));
    routed = routed.index_add(0, ids, out * tokenWeight.unsqueeze(1));
  }
  routed = routed + swiglu(sd, prefix + ".shared_experts", tokens);
  return routed.reshape(u.sizes());
}

torch::Tensor ditMoeForward(const DitMoeConfig &cfg, const StateDict &sd, torch::Tensor x,
                            torch::Tensor t, torch::Tensor y,
                            std::vector<torch::Tensor> *balanceTerms) {
  const DitConfig &base = cfg.base;
  detail::checkStateDict(sd, ditMoeShapes(cfg), "DiT-MoE");
  detail::checkImageInput(x, base.inChannels, base.inputSize, base.patch, sd, "DiT-MoE");
  detail::DitTrunkInput in = detail::ditTrunkEmbed(sd, x, t, y, base.patch, base.numClasses);
  const TokenMixer attention = [&](const std::string &p, const torch::Tensor &u) {
    return cfg.qkNorm ? qkNormAttention(sd, p + ".attn", u, base.heads)
                      : timmAttention(sd, p + ".attn", u, base.heads);
  };
  const TokenMixer moe = [&](const std::string &p, const torch::Tensor &u) {
    return ditMoeSparseMoe(cfg, sd, p + ".moe", u, balanceTerms);
  };
  torch::Tensor h = in.tokens;
  for (int64_t i = 0; i < base.depth; ++i)
    h = adaLnZeroBlock(sd, blockPrefix(i), h, in.c, attention, moe);
  return detail::ditTrunkFinal(sd, h, in.c, base.inputSize / base.patch, base.patch,
                               outChannels(base));
}

} // namespace diffc::reference
