//===- Common.cpp - shared ops, tables and state-dict utilities -----------===//
//
// Shared ops, tables and state-dict utilities of the reference models.
//
// Implements ReferenceOps.h (the functional building blocks and the DiT-style trunk used by DiT,
// DiT-MoE and DiG) and the family-independent parts of TorchModels.h: the sin-cos positional
// table, numpy-exact linspace, element counting and deterministic random state dicts.
//
//===----------------------------------------------------------------------===//

#include "ReferenceOps.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace diffc::reference {
namespace detail {

void fail(const std::string &message) { throw std::invalid_argument(message); }

void require(bool condition, const std::string &message) {
  if (!condition)
    fail(message);
}

namespace {

std::string shapeString(at::IntArrayRef shape) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << ')';
  return os.str();
}

} // namespace

void checkStateDict(const StateDict &sd, const Shapes &expected, const std::string &model) {
  std::vector<std::string> problems;
  std::optional<torch::ScalarType> dtype;
  for (const auto &[name, shape] : expected) {
    auto it = sd.find(name);
    if (it == sd.end()) {
      problems.push_back("missing '" + name + "'");
      continue;
    }
    const torch::Tensor &tensor = it->second;
    if (!tensor.defined()) {
      problems.push_back("undefined tensor '" + name + "'");
      continue;
    }
    if (tensor.sizes() != at::IntArrayRef(shape))
      problems.push_back("'" + name + "' has shape " + shapeString(tensor.sizes()) + ", expected " +
                         shapeString(shape));
    if (!at::isFloatingType(tensor.scalar_type()))
      problems.push_back("'" + name + "' is not floating point");
    else if (!dtype)
      dtype = tensor.scalar_type();
    else if (*dtype != tensor.scalar_type())
      problems.push_back("'" + name + "' has dtype " +
                         std::string(c10::toString(tensor.scalar_type())) +
                         ", the state dict's first entry has " + c10::toString(*dtype));
  }
  for (const auto &entry : sd)
    if (!expected.count(entry.first))
      problems.push_back("unexpected '" + entry.first + "'");
  if (problems.empty())
    return;
  std::ostringstream os;
  os << model << " state dict does not match the configuration (" << problems.size() << " problem"
     << (problems.size() == 1 ? "" : "s") << "):";
  constexpr size_t kShown = 8;
  for (size_t i = 0; i < problems.size() && i < kShown; ++i)
    os << "\n  " << problems[i];
  if (problems.size() > kShown)
    os << "\n  ...";
  fail(os.str());
}

const torch::Tensor &param(const StateDict &sd, const std::string &name) {
  auto it = sd.find(name);
  require(it != sd.end(), "state dict has no entry '" + name + "'");
  return it->second;
}

torch::Tensor linear(const torch::Tensor &x, const StateDict &sd, const std::string &prefix,
                     bool bias) {
  return torch::linear(x, param(sd, prefix + ".weight"),
                       bias ? param(sd, prefix + ".bias") : torch::Tensor());
}

torch::Tensor layerNorm(const torch::Tensor &x, const torch::Tensor &weight,
                        const torch::Tensor &bias) {
  return torch::layer_norm(x, {x.size(-1)}, weight, bias, kNormEps);
}

torch::Tensor rmsNorm(const torch::Tensor &x, const torch::Tensor &weight) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + kNormEps) * weight;
}

torch::Tensor geluTanh(const torch::Tensor &x) { return torch::gelu(x, "tanh"); }

torch::Tensor modulate(const torch::Tensor &x, const torch::Tensor &shift,
                       const torch::Tensor &scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

torch::Tensor attention(const torch::Tensor &q, const torch::Tensor &k, const torch::Tensor &v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1)) * scale;
  return torch::matmul(torch::softmax(scores, -1), v);
}

torch::Tensor splitHeads(const torch::Tensor &x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

torch::Tensor mergeHeads(const torch::Tensor &x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

torch::Tensor timestepFeatures(const torch::Tensor &t, int64_t dim, torch::ScalarType dtype) {
  require(t.dim() == 1, "timestep tensor must be 1-D (N)");
  const int64_t half = dim / 2;
  // Same op sequence and float32 precision as the references, so the features match bit for bit.
  torch::Tensor freqs =
      torch::exp(torch::arange(0, half, torch::kFloat32) * -std::log(10000.0) / half);
  torch::Tensor args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  torch::Tensor embedding = torch::cat({torch::cos(args), torch::sin(args)}, -1);
  if (dim % 2)
    embedding = torch::cat({embedding, torch::zeros_like(embedding.narrow(1, 0, 1))}, -1);
  return embedding.to(dtype);
}

torch::Tensor patchEmbed(const torch::Tensor &x, const StateDict &sd, const std::string &prefix,
                         int64_t patch) {
  torch::Tensor y =
      torch::conv2d(x, param(sd, prefix + ".weight"), param(sd, prefix + ".bias"), {patch, patch});
  return y.flatten(2).transpose(1, 2);
}

torch::Tensor unpatchify(const torch::Tensor &x, int64_t gridH, int64_t gridW, int64_t patch,
                         int64_t channels) {
  const int64_t n = x.size(0);
  return x.reshape({n, gridH, gridW, patch, patch, channels})
      .permute({0, 5, 1, 3, 2, 4})
      .reshape({n, channels, gridH * patch, gridW * patch});
}

void checkImageInput(const torch::Tensor &x, int64_t inChannels, int64_t inputSize, int64_t patch,
                     const StateDict &sd, const std::string &model) {
  require(x.defined() && x.dim() == 4, model + ": x must be (N, C, H, W)");
  require(x.size(1) == inChannels && x.size(2) == inputSize && x.size(3) == inputSize,
          model + ": x must be (N, " + std::to_string(inChannels) + ", " +
              std::to_string(inputSize) + ", " + std::to_string(inputSize) + ")");
  require(inputSize % patch == 0, model + ": inputSize must be a multiple of the patch size");
  require(!sd.empty() && x.scalar_type() == sd.begin()->second.scalar_type(),
          model + ": x must have the state dict's dtype");
}

DitTrunkInput ditTrunkEmbed(const StateDict &sd, const torch::Tensor &x, const torch::Tensor &t,
                            const torch::Tensor &y, int64_t patch, int64_t numClasses) {
  const int64_t n = x.size(0);
  require(t.dim() == 1 && t.size(0) == n, "t must be (N)");
  require(y.dim() == 1 && y.size(0) == n && y.scalar_type() == torch::kInt64,
          "y must be (N) int64");
  require(n == 0 || (y.min().item<int64_t>() >= 0 && y.max().item<int64_t>() <= numClasses),
          "labels must lie in [0, numClasses]; numClasses is the null class");
  DitTrunkInput out;
  out.tokens = patchEmbed(x, sd, "x_embedder.proj", patch) + param(sd, "pos_embed");
  torch::Tensor tFreq = timestepFeatures(t, 256, x.scalar_type());
  torch::Tensor tEmb = linear(torch::silu(linear(tFreq, sd, "t_embedder.mlp.0", true)), sd,
                              "t_embedder.mlp.2", true);
  torch::Tensor yEmb = param(sd, "y_embedder.embedding_table.weight").index_select(0, y);
  out.c = tEmb + yEmb;
  return out;
}

torch::Tensor ditTrunkFinal(const StateDict &sd, const torch::Tensor &tokens,
                            const torch::Tensor &c, int64_t gridSide, int64_t patch,
                            int64_t outChannels) {
  std::vector<torch::Tensor> shiftScale =
      linear(torch::silu(c), sd, "final_layer.adaLN_modulation.1", true).chunk(2, 1);
  torch::Tensor out = linear(modulate(layerNorm(tokens), shiftScale[0], shiftScale[1]), sd,
                             "final_layer.linear", true);
  return unpatchify(out, gridSide, gridSide, patch, outChannels);
}

void addLinear(Shapes &shapes, const std::string &prefix, int64_t out, int64_t in, bool bias) {
  shapes[prefix + ".weight"] = {out, in};
  if (bias)
    shapes[prefix + ".bias"] = {out};
}

void addVector(Shapes &shapes, const std::string &name, int64_t size) { shapes[name] = {size}; }

void addDitTrunk(Shapes &shapes, int64_t inputSize, int64_t patch, int64_t inChannels,
                 int64_t hidden, int64_t numClasses, int64_t outChannels) {
  const int64_t side = inputSize / patch;
  shapes["x_embedder.proj.weight"] = {hidden, inChannels, patch, patch};
  addVector(shapes, "x_embedder.proj.bias", hidden);
  shapes["pos_embed"] = {1, side * side, hidden};
  addLinear(shapes, "t_embedder.mlp.0", hidden, 256, true);
  addLinear(shapes, "t_embedder.mlp.2", hidden, hidden, true);
  shapes["y_embedder.embedding_table.weight"] = {numClasses + 1, hidden};
  addLinear(shapes, "final_layer.linear", patch * patch * outChannels, hidden, true);
  addLinear(shapes, "final_layer.adaLN_modulation.1", 2 * hidden, hidden, true);
}

} // namespace detail

using detail::require;

const std::set<std::string> kMicroDitBufferNames = {"pos_embed", "mask_token"};

int64_t countElements(const Shapes &shapes, const std::set<std::string> &exclude) {
  int64_t total = 0;
  for (const auto &[name, shape] : shapes) {
    if (exclude.count(name))
      continue;
    int64_t numel = 1;
    for (int64_t extent : shape)
      numel *= extent;
    total += numel;
  }
  return total;
}

torch::Tensor sincosPosEmbed(int64_t gridH, int64_t gridW, int64_t dim, double interpScale) {
  require(gridH > 0 && gridW > 0, "sincosPosEmbed: empty grid");
  require(dim > 0 && dim % 4 == 0, "sincosPosEmbed: dim must be a positive multiple of 4");
  require(interpScale > 0, "sincosPosEmbed: interpScale must be positive");
  const int64_t quarter = dim / 4;
  std::vector<double> omega(quarter);
  for (int64_t k = 0; k < quarter; ++k)
    omega[k] = 1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(quarter));
  // The references hold grid coordinates as float32 arrays, so a scaled position is rounded to
  // float32 before the float64 outer product (exact for the shipped scales 1 and 2).
  auto position = [&](int64_t index) {
    return static_cast<double>(static_cast<float>(index) / static_cast<float>(interpScale));
  };
  torch::Tensor table = torch::empty({gridH * gridW, dim}, torch::kFloat32);
  float *out = table.data_ptr<float>();
  for (int64_t r = 0; r < gridH; ++r) {
    for (int64_t c = 0; c < gridW; ++c) {
      float *row = out + (r * gridW + c) * dim;
      const double pc = position(c), pr = position(r);
      for (int64_t k = 0; k < quarter; ++k) {
        row[k] = static_cast<float>(std::sin(pc * omega[k]));
        row[quarter + k] = static_cast<float>(std::cos(pc * omega[k]));
        row[2 * quarter + k] = static_cast<float>(std::sin(pr * omega[k]));
        row[3 * quarter + k] = static_cast<float>(std::cos(pr * omega[k]));
      }
    }
  }
  return table;
}

std::vector<double> numpyLinspace(double lo, double hi, int64_t n) {
  std::vector<double> values;
  if (n <= 0)
    return values;
  if (n == 1)
    return {lo};
  const double div = static_cast<double>(n - 1);
  const double delta = hi - lo;
  const double step = delta / div;
  values.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const double index = static_cast<double>(i);
    // numpy divides first when the step underflows to zero (its denormal special case).
    values[i] = (step == 0 ? (index / div) * delta : index * step) + lo;
  }
  values[n - 1] = hi;
  return values;
}

namespace {

// SplitMix64 (Steele, Lea & Flood): a counter-based stream, so the draws depend on nothing but
// the seed.
class SplitMix64 {
public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // Uniform in (0, 1]: the top 53 bits plus one ulp, so that log() below never sees zero.
  double uniform() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }

private:
  uint64_t state_;
};

uint64_t fnv1a(const std::string &text) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (unsigned char ch : text) {
    hash ^= ch;
    hash *= 0x100000001B3ull;
  }
  return hash;
}

std::vector<std::string> splitName(const std::string &name) {
  std::vector<std::string> parts;
  std::string current;
  for (char ch : name) {
    if (ch == '.') {
      parts.push_back(current);
      current.clear();
    } else {
      current.push_back(ch);
    }
  }
  parts.push_back(current);
  return parts;
}

// Norm modules across the four layouts: DiT-MoE's q_norm/k_norm, DiG's g_norm_swish_gate, and
// MicroDiT's norm1-3, norm, norm_final and the LayerNorm at index 0 of its mixer projections.
bool isNormWeight(const std::string &name) {
  std::vector<std::string> parts = splitName(name);
  if (parts.size() < 2 || parts.back() != "weight")
    return false;
  const std::string &module = parts[parts.size() - 2];
  static const std::set<std::string> kNormModules = {
      "norm", "norm1", "norm2", "norm3", "norm_final", "q_norm", "k_norm", "g_norm_swish_gate"};
  if (kNormModules.count(module))
    return true;
  return module == "0" && parts.size() >= 3 &&
         parts[parts.size() - 3].rfind("patch_mixer_map_", 0) == 0;
}

bool isDepthwiseConvWeight(const std::string &name) {
  std::vector<std::string> parts = splitName(name);
  return parts.size() >= 2 && parts.back() == "weight" && parts[parts.size() - 2] == "dw_conv";
}

} // namespace

torch::Tensor deterministicNormal(const std::vector<int64_t> &shape, uint64_t seed) {
  torch::Tensor out = torch::empty(shape, torch::kFloat32);
  float *data = out.data_ptr<float>();
  const int64_t count = out.numel();
  SplitMix64 stream(seed);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  // Box-Muller in float64, one pair of normals per pair of uniforms.
  for (int64_t i = 0; i < count; i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(stream.uniform()));
    const double angle = kTwoPi * stream.uniform();
    data[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < count)
      data[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
  return out;
}

StateDict randomStateDict(const Shapes &shapes, uint64_t seed, double scale,
                          double posInterpScale) {
  StateDict sd;
  for (const auto &[name, shape] : shapes) {
    if (name == "pos_embed") {
      require(shape.size() == 3 && shape[0] == 1, "pos_embed must be (1, T, D)");
      const auto side = static_cast<int64_t>(std::llround(std::sqrt(double(shape[1]))));
      require(side * side == shape[1], "pos_embed must cover a square grid");
      sd[name] = sincosPosEmbed(side, side, shape[2], posInterpScale).unsqueeze(0);
      continue;
    }
    if (name == "mask_token") {
      sd[name] = torch::zeros(shape, torch::kFloat32);
      continue;
    }
    torch::Tensor value = deterministicNormal(shape, SplitMix64(seed ^ fnv1a(name)).next()) * scale;
    if (isNormWeight(name)) {
      value = value + 1;
    } else if (isDepthwiseConvWeight(name)) {
      require(shape.size() == 4 && shape[2] % 2 == 1 && shape[3] % 2 == 1,
              "dw_conv kernels must be odd-sized (D, 1, k, k)");
      value.select(2, shape[2] / 2).select(2, shape[3] / 2).add_(1);
    }
    sd[name] = value;
  }
  return sd;
}

} // namespace diffc::reference
