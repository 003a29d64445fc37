//===- Init.cpp - reference initialisation of parameters ------------------===//
//
// The initialisation rules of the reference implementations, applied by
// checkpoint name (see Trainer.h). Names decide because the same shape means
// different things in different places (an adaLN output layer is zero, a
// qkv projection is Xavier).
//
//===----------------------------------------------------------------------===//

#include "diffrt/Trainer.h"

#include "diffrt/Error.h"
#include "diffrt/Rng.h"

#include <cmath>

namespace diffrt {

namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

void fillUniform(Philox &rng, float *out, int64_t n, double bound) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
}

void fillNormal(Philox &rng, float *out, int64_t n, double std) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(std * rng.normal64());
}

/// Initialises one matrix (a parameter, or one expert's slice of a stacked
/// parameter) of `shape` in place.
void initialize(const std::string &name, const std::vector<int64_t> &shape, Philox &rng, float *out) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  bool bias = endsWith(name, ".bias") || shape.size() == 1;
  if (contains(name, "adaLN_modulation.1.") || contains(name, "final_layer.linear.") ||
      endsWith(name, "y_emb_preprocess.attn.proj.weight") || endsWith(name, "y_emb_preprocess.mlp.w3.weight")) {
    std::fill_n(out, n, 0.0f);
  } else if (shape.size() == 1 && contains(name, "norm") && endsWith(name, ".weight")) {
    std::fill_n(out, n, 1.0f);
  } else if (bias) {
    std::fill_n(out, n, 0.0f);
  } else if (endsWith(name, "dw_conv.weight")) {
    // Identity: only the centre tap of each channel's k x k kernel is 1.
    std::fill_n(out, n, 0.0f);
    int64_t k = shape.at(2);
    for (int64_t c = 0; c < shape[0]; ++c)
      out[c * k * k + (k / 2) * k + k / 2] = 1.0f;
  } else if (endsWith(name, "y_embedder.embedding_table.weight") || contains(name, "t_embedder.mlp.") ||
             contains(name, "pooled_y_emb_process.fc") || contains(name, "y_embedder.y_proj.fc")) {
    fillNormal(rng, out, n, 0.02);
  } else if (endsWith(name, "moe.gate.weight")) {
    fillUniform(rng, out, n, 1.0 / std::sqrt(static_cast<double>(shape.at(1))));
  } else {
    // Xavier-uniform on the matrix (out, in·receptive field); the patch
    // embedding is viewed as (D, C·p·p) by the references, as for a linear.
    int64_t fanOut = shape.at(0), fanIn = n / shape.at(0);
    double gain = contains(name, ".attn.") && (contains(name, "_proj") || contains(name, "gk_proj"))
                      ? std::pow(2.0, -2.5) // DiG's GLA projections
                      : 1.0;
    fillUniform(rng, out, n, gain * std::sqrt(6.0 / static_cast<double>(fanIn + fanOut)));
  }
}

} // namespace

void initializeParameters(Session &session, uint64_t seed) {
  const Plan &plan = session.module().plan();
  for (size_t p = 0; p < plan.params.size(); ++p) {
    const ParamDesc &param = plan.params[p];
    const ValueDesc &v = plan.values[param.value];
    Philox rng(seed, 1000000 + p);
    std::vector<float> values(v.numel());
    size_t at = param.name.find("{e}");
    if (at == std::string::npos) {
      initialize(param.name, v.shape, rng, values.data());
    } else {
      std::vector<int64_t> slice(v.shape.begin() + 1, v.shape.end());
      int64_t per = v.numel() / v.shape[0];
      for (int64_t e = 0; e < v.shape[0]; ++e)
        initialize(param.name.substr(0, at) + std::to_string(e) + param.name.substr(at + 3), slice, rng,
                   values.data() + e * per);
    }
    session.setParameter(param.name, values);
  }
}

} // namespace diffrt
