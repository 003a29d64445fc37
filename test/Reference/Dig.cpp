//===- Dig.cpp - reference DiG (spec 5) -----------------------------------===//
//
// Reference DiG (spec section 5): DiT with causal gated linear attention, a SwiGLU MLP and the
// SREM depth-wise convolution + scan-order schedule.
//
// The forward runs GLA as the literal token-by-token state recurrence; glaChunked is the
// chunk-parallel formulation that fused kernels implement, kept here so that the two forms can be
// checked against each other and so that compiled kernels have a same-algorithm reference.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOps.h"

#include <cmath>
#include <limits>

namespace diffc::reference {

using detail::layerNorm;
using detail::linear;
using detail::param;
using detail::require;

namespace {

// GLAConfig values DiG fixes (spec 5.2): low-rank forget-gate projection and logit normaliser.
constexpr int64_t kGateLowRank = 16;
constexpr double kGateLogitNormalizer = 16.0;
constexpr int64_t kConvKernel = 3;

void checkConfig(const DigConfig &cfg) {
  require(cfg.inputSize > 0 && cfg.patch > 0 && cfg.inputSize % cfg.patch == 0,
          "DiG: inputSize must be a positive multiple of patch");
  require(cfg.inChannels > 0 && cfg.numClasses > 0 && cfg.depth >= 0,
          "DiG: invalid channel/class/depth counts");
  require(cfg.hidden % 4 == 0, "DiG: hidden must be divisible by 4 (sin-cos table)");
  require(cfg.heads > 0 && (cfg.hidden / 2) % cfg.heads == 0,
          "DiG: hidden/2 (the key width) must be divisible by heads");
}

int64_t outChannels(const DigConfig &cfg) {
  return cfg.learnSigma ? 2 * cfg.inChannels : cfg.inChannels;
}

// GLAMLP: intermediate = int(D * 4 * 2 / 3) rounded up to a multiple of 256.
int64_t mlpHidden(int64_t hidden) {
  const auto raw = static_cast<int64_t>(static_cast<double>(hidden * 4 * 2) / 3.0);
  return 256 * ((raw + 255) / 256);
}

void checkGlaInputs(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v,
                    const torch::Tensor &gk) {
  require(q.dim() == 4 && k.sizes() == q.sizes() && gk.sizes() == q.sizes(),
          "GLA: q, k and gk must be (N, H, T, dk) of one shape");
  require(v.dim() == 4 && v.size(0) == q.size(0) && v.size(1) == q.size(1) &&
              v.size(2) == q.size(2),
          "GLA: v must be (N, H, T, dv) matching q");
}

torch::Tensor gatedLinearAttention(const DigConfig &cfg, const StateDict &sd,
                                   const std::string &prefix, const torch::Tensor &u) {
  const int64_t heads = cfg.heads;
  torch::Tensor q = detail::splitHeads(linear(u, sd, prefix + ".q_proj", false), heads);
  torch::Tensor k = detail::splitHeads(linear(u, sd, prefix + ".k_proj", false), heads);
  torch::Tensor v = detail::splitHeads(linear(u, sd, prefix + ".v_proj", false), heads);
  torch::Tensor gk =
      linear(linear(u, sd, prefix + ".gk_proj.0", false), sd, prefix + ".gk_proj.1", true);
  gk = torch::log_sigmoid(detail::splitHeads(gk, heads)) / kGateLogitNormalizer;
  torch::Tensor o = glaRecurrent(q, k, v, gk).transpose(1, 2); // (N, T, H, dv)
  torch::Tensor g = linear(u, sd, prefix + ".g_proj", false).reshape(o.sizes());
  // Fused RMSNorm-swish gate: per-head RMSNorm with one weight shared by all heads.
  o = detail::rmsNorm(o, param(sd, prefix + ".g_norm_swish_gate.weight")) * torch::silu(g);
  return linear(o.flatten(2), sd, prefix + ".o_proj", false);
}

// GLAMLP: gate_proj output halves [a, b] -> down(silu(a) * b).
torch::Tensor swigluMlp(const StateDict &sd, const std::string &prefix, const torch::Tensor &u) {
  std::vector<torch::Tensor> ab = linear(u, sd, prefix + ".gate_proj", false).chunk(2, -1);
  return linear(torch::silu(ab[0]) * ab[1], sd, prefix + ".down_proj", false);
}

// Spec 5.1 steps 1-4. The depth-wise conv sees the tokens as a grid in the *current* scan order and
// replaces x (no residual).
torch::Tensor digBlock(const DigConfig &cfg, const StateDict &sd, const std::string &prefix,
                       const torch::Tensor &x, const torch::Tensor &c, int64_t side) {
  std::vector<torch::Tensor> m =
      linear(torch::silu(c), sd, prefix + ".adaLN_modulation.1", true).chunk(6, 1);
  torch::Tensor h =
      x + m[2].unsqueeze(1) * gatedLinearAttention(cfg, sd, prefix + ".attn",
                                                   detail::modulate(layerNorm(x), m[0], m[1]));
  h = h + m[5].unsqueeze(1) *
              swigluMlp(sd, prefix + ".mlp", detail::modulate(layerNorm(h), m[3], m[4]));
  torch::Tensor grid = h.transpose(1, 2).reshape({h.size(0), cfg.hidden, side, side});
  grid = torch::conv2d(grid, param(sd, prefix + ".dw_conv.weight"),
                       param(sd, prefix + ".dw_conv.bias"), /*stride=*/{1, 1},
                       /*padding=*/{kConvKernel / 2, kConvKernel / 2}, /*dilation=*/{1, 1},
                       /*groups=*/cfg.hidden);
  return grid.flatten(2).transpose(1, 2);
}

} // namespace

Shapes digShapes(const DigConfig &cfg) {
  checkConfig(cfg);
  const int64_t d = cfg.hidden;
  const int64_t keyWidth = d / 2;
  Shapes shapes;
  detail::addDitTrunk(shapes, cfg.inputSize, cfg.patch, cfg.inChannels, d, cfg.numClasses,
                      outChannels(cfg));
  for (int64_t i = 0; i < cfg.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    detail::addLinear(shapes, p + ".adaLN_modulation.1", 6 * d, d, true);
    detail::addLinear(shapes, p + ".attn.q_proj", keyWidth, d, false);
    detail::addLinear(shapes, p + ".attn.k_proj", keyWidth, d, false);
    detail::addLinear(shapes, p + ".attn.v_proj", d, d, false);
    detail::addLinear(shapes, p + ".attn.g_proj", d, d, false);
    detail::addLinear(shapes, p + ".attn.gk_proj.0", kGateLowRank, d, false);
    detail::addLinear(shapes, p + ".attn.gk_proj.1", keyWidth, kGateLowRank, true);
    detail::addVector(shapes, p + ".attn.g_norm_swish_gate.weight", d / cfg.heads);
    detail::addLinear(shapes, p + ".attn.o_proj", d, d, false);
    const int64_t hidden = mlpHidden(d);
    detail::addLinear(shapes, p + ".mlp.gate_proj", 2 * hidden, d, false);
    detail::addLinear(shapes, p + ".mlp.down_proj", d, hidden, false);
    shapes[p + ".dw_conv.weight"] = {d, 1, kConvKernel, kConvKernel};
    detail::addVector(shapes, p + ".dw_conv.bias", d);
  }
  return shapes;
}

torch::Tensor glaRecurrent(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v,
                           const torch::Tensor &gk) {
  checkGlaInputs(q, k, v, gk);
  const int64_t steps = q.size(2);
  if (steps == 0)
    return torch::zeros({q.size(0), q.size(1), 0, v.size(3)}, v.options());
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  torch::Tensor decay = gk.exp();
  torch::Tensor state = torch::zeros({q.size(0), q.size(1), q.size(3), v.size(3)}, v.options());
  std::vector<torch::Tensor> outputs;
  outputs.reserve(steps);
  for (int64_t t = 0; t < steps; ++t) {
    // S_t = diag(alpha_t) S_{t-1} + k_t^T v_t ;  o_t = (scale q_t) S_t  (inclusive of token t).
    state = state * decay.select(2, t).unsqueeze(-1) +
            k.select(2, t).unsqueeze(-1) * v.select(2, t).unsqueeze(-2);
    outputs.push_back(torch::matmul((q.select(2, t) * scale).unsqueeze(-2), state).squeeze(-2));
  }
  return torch::stack(outputs, 2);
}

torch::Tensor glaChunked(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v,
                         const torch::Tensor &gk, int64_t chunk) {
  checkGlaInputs(q, k, v, gk);
  require(chunk > 0, "GLA: chunk length must be positive");
  const int64_t steps = q.size(2);
  const int64_t padding = (chunk - steps % chunk) % chunk;
  // Zero padding is inert: zero q/k/v contribute nothing and a zero log-decay keeps the state.
  auto pad = [&](const torch::Tensor &x) { return torch::constant_pad_nd(x, {0, 0, 0, padding}); };
  const torch::Tensor qp = pad(q) / std::sqrt(static_cast<double>(q.size(3)));
  const torch::Tensor kp = pad(k), vp = pad(v), gp = pad(gk);
  const torch::Tensor causal =
      torch::ones({chunk, chunk}, torch::TensorOptions().dtype(torch::kBool)).tril().unsqueeze(-1);
  torch::Tensor state = torch::zeros({q.size(0), q.size(1), q.size(3), v.size(3)}, v.options());
  std::vector<torch::Tensor> outputs;
  for (int64_t start = 0; start < steps + padding; start += chunk) {
    torch::Tensor qc = qp.narrow(2, start, chunk), kc = kp.narrow(2, start, chunk);
    torch::Tensor vc = vp.narrow(2, start, chunk);
    torch::Tensor b = gp.narrow(2, start, chunk).cumsum(2); // b_j = sum_{u <= j} log alpha_u
    torch::Tensor inter = torch::matmul(qc * b.exp(), state);
    // Relative decays e^{b_j - b_i} for i <= j only; masking before exp keeps every factor <= 1.
    torch::Tensor relative = (b.unsqueeze(3) - b.unsqueeze(2))
                                 .masked_fill(causal.logical_not(),
                                              -std::numeric_limits<double>::infinity())
                                 .exp(); // (N, H, j, i, dk)
    torch::Tensor scores = (qc.unsqueeze(3) * kc.unsqueeze(2) * relative).sum(-1);
    outputs.push_back(inter + torch::matmul(scores, vc));
    torch::Tensor last = b.narrow(2, chunk - 1, 1); // (N, H, 1, dk)
    state = state * last.exp().transpose(-2, -1) +
            torch::matmul((kc * (last - b).exp()).transpose(-2, -1), vc);
  }
  if (outputs.empty())
    return torch::zeros({q.size(0), q.size(1), 0, v.size(3)}, v.options());
  return torch::cat(outputs, 2).narrow(2, 0, steps);
}

torch::Tensor digForward(const DigConfig &cfg, const StateDict &sd, torch::Tensor x,
                         torch::Tensor t, torch::Tensor y) {
  detail::checkStateDict(sd, digShapes(cfg), "DiG");
  detail::checkImageInput(x, cfg.inChannels, cfg.inputSize, cfg.patch, sd, "DiG");
  const int64_t side = cfg.inputSize / cfg.patch;
  detail::DitTrunkInput in = detail::ditTrunkEmbed(sd, x, t, y, cfg.patch, cfg.numClasses);
  torch::Tensor h = in.tokens;
  for (int64_t i = 0; i < cfg.depth; ++i) {
    h = digBlock(cfg, sd, "blocks." + std::to_string(i), h, in.c, side);
    // SREM direction change after every block, the last one included (spec 5.1 step 5): reverse
    // the scan, and after odd blocks also transpose the grid, giving the period-4 schedule of 5.3.
    h = h.flip(1);
    if (i % 2 == 1)
      h = h.reshape({h.size(0), side, side, cfg.hidden})
              .transpose(1, 2)
              .reshape({h.size(0), side * side, cfg.hidden});
  }
  return detail::ditTrunkFinal(sd, h, in.c, side, cfg.patch, outChannels(cfg));
}

} // namespace diffc::reference
