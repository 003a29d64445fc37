//===- CpuBackend.cpp - runs a plan's kernels on the CPU ------------------===//
//
// The CPU backend: the three regions are host buffers, and each kernel of an
// entry calls its reference implementation in diffrt::cpu. It executes f32
// plans only (the reference numerics); the artifact was validated on load,
// so operands are indexed without further checks.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuGradKernels.h"
#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"
#include "diffrt/KernelSignatures.h"
#include "diffrt/Pointwise.h"
#include "diffrt/Session.h"

#include "diffrt/Rng.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>

namespace diffrt {

namespace {

using namespace diffrt::cpu;

cpu::ScanOrder scanOrder(const std::string &name) {
  if (name == "row_major")
    return cpu::ScanOrder::RowMajor;
  if (name == "row_major_reversed")
    return cpu::ScanOrder::RowMajorReversed;
  if (name == "col_major")
    return cpu::ScanOrder::ColMajor;
  return cpu::ScanOrder::ColMajorReversed;
}

Act actOf(const std::string &name) {
  if (name == "gelu")
    return Act::Gelu;
  if (name == "gelu_tanh")
    return Act::GeluTanh;
  if (name == "silu")
    return Act::Silu;
  return Act::None;
}

/// 64-byte aligned host memory.
struct Buffer {
  float *data = nullptr;
  uint64_t bytes = 0;
  explicit Buffer(uint64_t n) : bytes(n) {
    if (n == 0)
      return;
    void *p = std::aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p)
      fail("out of host memory: the plan needs ", n, " bytes for one region");
    std::memset(p, 0, n);
    data = static_cast<float *>(p);
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
};

class CpuBackend : public Backend {
public:
  explicit CpuBackend(const Plan &plan)
      : plan(plan), weights(plan.weightsBytes), constants(plan.constantsBytes),
        arena(plan.arenaBytes) {
    for (size_t i = 0; i < plan.values.size(); ++i) {
      DType t = plan.values[i].dtype;
      if (t != DType::F32 && t != DType::I32)
        fail("the CPU backend runs f32 artifacts, but value #", i, " is ", dtypeName(t),
             "; compile with --target cpu --dtype f32");
    }
  }

  void upload(Region region, uint64_t offset, const void *data, uint64_t bytes) override {
    std::memcpy(base(region) + offset, data, bytes);
  }
  void download(Region region, uint64_t offset, void *data, uint64_t bytes) override {
    std::memcpy(data, base(region) + offset, bytes);
  }

  void run(const EntryDesc &entry) override {
    for (size_t i = 0; i < entry.kernels.size(); ++i) {
      const KernelDesc &k = entry.kernels[i];
      try {
        dispatch(k);
      } catch (const Error &e) {
        fail("kernel #", i, " (", k.op, ") of '", entry.name, "': ", e.what());
      }
    }
  }

  std::vector<double> profileKernels(const EntryDesc &entry, int iterations) override {
    std::vector<double> ms(entry.kernels.size(), 0.0);
    for (int it = 0; it < iterations; ++it)
      for (size_t i = 0; i < entry.kernels.size(); ++i) {
        auto start = std::chrono::steady_clock::now();
        dispatch(entry.kernels[i]);
        ms[i] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      }
    for (double &t : ms)
      t /= iterations;
    return ms;
  }

  std::vector<double> time(const EntryDesc &entry, int warmup, int iterations) override {
    for (int i = 0; i < warmup; ++i)
      run(entry);
    std::vector<double> ms;
    for (int i = 0; i < iterations; ++i) {
      auto start = std::chrono::steady_clock::now();
      run(entry);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    return ms;
  }

  void fillNormal(Region region, uint64_t offset, DType dtype, int64_t count, uint64_t seed,
                  float scale) override {
    if (dtype != DType::F32)
      fail("the CPU backend fills f32 values only, got ", dtypeName(dtype));
    Philox rng(seed);
    float *out = reinterpret_cast<float *>(base(region) + offset);
    rng.fillNormal(out, count);
    for (int64_t i = 0; i < count; ++i)
      out[i] *= scale;
  }

  void initOptimizer(const std::vector<int32_t> &params, const std::vector<int32_t> &grads, bool ema) override {
    paramIds = params;
    gradIds = grads;
    moment1.assign(params.size(), {});
    moment2.assign(params.size(), {});
    emaState.assign(ema ? params.size() : 0, {});
    for (size_t p = 0; p < params.size(); ++p) {
      int64_t n = desc(params[p]).numel();
      moment1[p].assign(n, 0.0f);
      moment2[p].assign(n, 0.0f);
      if (ema)
        emaState[p].assign(ptr(params[p]), ptr(params[p]) + n);
    }
  }

  double optimizerStep(const AdamWStep &step) override {
    if (paramIds.empty())
      fail("optimizerStep before initOptimizer");
    double sq = 0;
    for (int32_t g : gradIds) {
      const float *gp = ptr(g);
      for (int64_t i = 0, n = desc(g).numel(); i < n; ++i)
        sq += static_cast<double>(gp[i]) * gp[i];
    }
    double norm = std::sqrt(sq) / step.lossScale;
    if (!std::isfinite(norm))
      return norm;
    double clip = step.gradClip > 0 && norm > step.gradClip ? step.gradClip / (norm + 1e-6) : 1.0;
    double unscale = clip / step.lossScale;
    double b1 = step.beta1, b2 = step.beta2;
    double c1 = 1 - std::pow(b1, static_cast<double>(step.step));
    double c2 = 1 - std::pow(b2, static_cast<double>(step.step));
    double decay = 1 - step.lr * step.weightDecay;
    for (size_t p = 0; p < paramIds.size(); ++p) {
      float *w = ptr(paramIds[p]);
      const float *g = ptr(gradIds[p]);
      float *m = moment1[p].data(), *v = moment2[p].data();
      int64_t n = desc(paramIds[p]).numel();
      for (int64_t i = 0; i < n; ++i) {
        double gi = g[i] * unscale;
        m[i] = static_cast<float>(b1 * m[i] + (1 - b1) * gi);
        v[i] = static_cast<float>(b2 * v[i] + (1 - b2) * gi * gi);
        double update = (m[i] / c1) / (std::sqrt(v[i] / c2) + step.eps);
        w[i] = static_cast<float>(w[i] * decay - step.lr * update);
      }
      if (!emaState.empty() && step.emaDecay > 0) {
        float *e = emaState[p].data();
        for (int64_t i = 0; i < n; ++i)
          e[i] = static_cast<float>(step.emaDecay * e[i] + (1 - step.emaDecay) * w[i]);
      }
    }
    return norm;
  }

  std::vector<float> readOptimizer(OptimizerSlot slot, size_t param) override {
    std::vector<float> &state = stateOf(slot, param);
    if (slot != OptimizerSlot::Master)
      return state;
    const float *w = ptr(paramIds[param]);
    return {w, w + desc(paramIds[param]).numel()};
  }

  void writeOptimizer(OptimizerSlot slot, size_t param, const std::vector<float> &values) override {
    std::vector<float> &state = stateOf(slot, param);
    if (slot != OptimizerSlot::Master) {
      state = values;
      return;
    }
    std::memcpy(ptr(paramIds[param]), values.data(), values.size() * sizeof(float));
  }

  void setLossScale(double scale) override { lossScale = static_cast<float>(scale); }

  uint64_t deviceBytes() const override {
    uint64_t bytes = weights.bytes + constants.bytes + arena.bytes + scratch.size() * sizeof(float);
    for (const auto *state : {&moment1, &moment2, &emaState})
      for (const std::vector<float> &v : *state)
        bytes += v.size() * sizeof(float);
    return bytes;
  }

private:
  const Plan &plan;
  Buffer weights, constants, arena;
  std::vector<float> scratch;
  std::vector<int32_t> paramIds, gradIds;
  std::vector<std::vector<float>> moment1, moment2, emaState;
  std::vector<float> noState;
  float lossScale = 1.0f;

  std::vector<float> &stateOf(OptimizerSlot slot, size_t param) {
    if (param >= paramIds.size())
      fail("optimizer state of parameter #", param, " requested, but the optimizer holds ", paramIds.size());
    switch (slot) {
    case OptimizerSlot::Moment1: return moment1[param];
    case OptimizerSlot::Moment2: return moment2[param];
    case OptimizerSlot::Ema:
      if (emaState.empty())
        fail("the optimizer keeps no EMA");
      return emaState[param];
    default: return noState;
    }
  }

  uint8_t *base(Region r) {
    Buffer &b = r == Region::Weights ? weights : r == Region::Constants ? constants : arena;
    return reinterpret_cast<uint8_t *>(b.data);
  }
  const ValueDesc &desc(int32_t id) { return plan.values[id]; }
  float *ptr(int32_t id) {
    if (id < 0)
      return nullptr;
    return reinterpret_cast<float *>(base(desc(id).region) + desc(id).offset);
  }
  const int32_t *iptr(int32_t id) {
    return reinterpret_cast<const int32_t *>(base(desc(id).region) + desc(id).offset);
  }
  ConstMat cm(int32_t id) {
    if (id < 0)
      return {};
    const ValueDesc &v = desc(id);
    return {ptr(id), v.rows(), v.cols(), v.ld};
  }
  Mat m(int32_t id) {
    const ValueDesc &v = desc(id);
    return {ptr(id), v.rows(), v.cols(), v.ld};
  }
  float *scratchFor(int64_t n) {
    if (static_cast<int64_t>(scratch.size()) < n)
      scratch.resize(n);
    return scratch.data();
  }

  /// The residual epilogue at operands r, r+1.
  bool epilogue(const KernelDesc &k, size_t r, GatedResidual &out) {
    if (k.operands[r] < 0)
      return false;
    out.residual = cm(k.operands[r]);
    out.gate = cm(k.operands[r + 1]);
    out.rowsPerGate = desc(k.operands[r]).shape[1];
    return true;
  }

  Mat mOpt(int32_t id) { return id < 0 ? Mat{} : m(id); }
  float *fOpt(int32_t id) { return id < 0 ? nullptr : ptr(id); }

  /// Backward kernels: operands are the forward slots, the values the
  /// forward op saved, then the incoming gradients; result i is the
  /// gradient of forward slot i (-1: not wanted).
  void dispatchVjp(const KernelDesc &k) {
    const std::string op = k.op.substr(4);
    const auto &o = k.operands;
    const auto &r = k.results;
    const size_t s = slotCount(k), saved = static_cast<size_t>(savedCount(k));
    auto dOut = [&](size_t i = 0) { return cm(o[s + saved + i]); };
    if (op == "kern.gemm") {
      GatedResidual e;
      bool hasE = epilogue(k, 3, e);
      const ValueDesc &out = desc(o[s + saved]);
      GemmGrads g;
      g.dA = mOpt(r[0]);
      g.dW = fOpt(r[1]);
      g.dBias = fOpt(r[2]);
      g.dGate = mOpt(r[4]);
      if (k.attrs.count("input_grad_act")) {
        g.inputAct = actOf(attrString(k, "input_grad_act"));
        g.inputPreact = cm(o.back());
      }
      gemmBackward(cm(o[0]), cm(o[1]), ptr(o[2]), actOf(attrString(k, "act")), hasE ? &e : nullptr, dOut(), g,
                   scratchFor(2 * out.rows() * out.cols()), saved > 0 ? cm(o[s]) : ConstMat{});
    } else if (op == "kern.swiglu") {
      ConstMat gate = cm(o[1]), up;
      SwiGluGrads g;
      g.dX = mOpt(r[0]);
      g.dDownW = fOpt(r[3]);
      g.dGate = mOpt(r[5]);
      int64_t f;
      if (o[2] >= 0) {
        up = cm(o[2]);
        f = gate.rows;
        g.dGateW = fOpt(r[1]);
        g.dUpW = fOpt(r[2]);
      } else {
        f = gate.rows / 2;
        up = {gate.data + f * gate.ld, f, gate.cols, gate.ld};
        gate.rows = f;
        g.dGateW = fOpt(r[1]);
        g.dUpW = r[1] >= 0 ? ptr(r[1]) + f * gate.cols : nullptr;
      }
      g.gateLd = g.upLd = gate.cols;
      GatedResidual e;
      bool hasE = epilogue(k, 4, e);
      int64_t rows = desc(o[0]).rows(), n = desc(o[3]).shape[0];
      swigluBackward(cm(o[0]), gate, up, cm(o[3]), hasE ? &e : nullptr, dOut(), g,
                     scratchFor(4 * rows * f + rows * n));
    } else if (op == "kern.norm") {
      NormArgs a = normArgs(k);
      NormGrads g;
      g.dX = mOpt(r[0]);
      g.dWeight = fOpt(r[1]);
      g.dBias = fOpt(r[2]);
      g.dShift = mOpt(r[3]);
      g.dScale = mOpt(r[4]);
      g.dSiluGate = mOpt(r[5]);
      if (k.attrs.count("input_grad_addend"))
        g.dXAddend = cm(o.back());
      normBackward(cm(o[0]), a, dOut(), g);
    } else if (op == "kern.moe") {
      GatedResidual e;
      bool hasE = epilogue(k, 8, e);
      if (attrString(k, "routing") == "token_choice") {
        TokenChoiceArgs a = tokenChoice(k, hasE ? &e : nullptr);
        TokenChoiceGrads g;
        g.dX = mOpt(r[0]);
        g.dRouter = fOpt(r[1]);
        g.dGate = fOpt(r[2]);
        g.dUp = fOpt(r[3]);
        g.dDown = fOpt(r[4]);
        g.dSharedGate = fOpt(r[5]);
        g.dSharedUp = fOpt(r[6]);
        g.dSharedDown = fOpt(r[7]);
        g.dEpilogueGate = mOpt(r[9]);
        g.balanceCoef = attrFloat(k, "balance_coef");
        float balance = 0;
        g.balanceLoss = &balance;
        moeTokenChoiceBackward(cm(o[0]), a, dOut(), g);
      } else {
        ExpertChoiceArgs a = expertChoice(k, hasE ? &e : nullptr);
        ExpertChoiceGrads g{mOpt(r[0]), fOpt(r[1]), fOpt(r[2]), fOpt(r[3]), mOpt(r[9])};
        moeExpertChoiceBackward(cm(o[0]), a, dOut(), g);
      }
    } else if (op == "kern.dwconv") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      depthwiseConvBackward(cm(o[0]), x.shape[0], grid[0], grid[1], ptr(o[1]), desc(o[1]).shape[2],
                            scanOrder(attrString(k, "from")), scanOrder(attrString(k, "to")), dOut(),
                            mOpt(r[0]), fOpt(r[1]), fOpt(r[2]));
    } else if (op == "kern.patch_embed") {
      const ValueDesc &x = desc(o[0]), &w = desc(o[1]);
      patchEmbedBackward(ptr(o[0]), x.shape[0], x.shape[1], x.shape[2], x.shape[3], ptr(o[1]), w.shape[0],
                         w.shape[2], dOut(), fOpt(r[0]), fOpt(r[1]), fOpt(r[2]));
    } else if (op == "kern.cast") {
      std::memcpy(ptr(r[0]), ptr(o[s]), desc(r[0]).numel() * sizeof(float));
    } else if (op == "dit.attention" || op == "kern.attention") {
      // kern.attention's saved output and log-sum-exp go unread: this
      // backward materialises the probabilities, which costs the same
      // product whether or not the statistics are known.
      const ValueDesc &q = desc(o[0]), &kk = desc(o[1]);
      int64_t heads = attrInt(k, "num_heads");
      attentionBackward(cm(o[0]), cm(o[1]), cm(o[2]), q.shape[0], q.shape[1], kk.shape[1], heads,
                        static_cast<float>(attrFloat(k, "scale")), dOut(), mOpt(r[0]), mOpt(r[1]),
                        mOpt(r[2]), scratchFor(q.shape[0] * heads * q.shape[1] * kk.shape[1]));
      // column_sums: each gradient's sum over its rows, in row order.
      for (size_t g = 0; g < 3 && s + g < r.size(); ++g) {
        if (r[s + g] < 0)
          continue;
        const Mat grad = m(r[g]);
        float *sum = ptr(r[s + g]);
        std::fill(sum, sum + grad.cols, 0.0f);
        for (int64_t row = 0; row < grad.rows; ++row)
          for (int64_t c = 0; c < grad.cols; ++c)
            sum[c] += grad.row(row)[c];
      }
    } else if (op == "dit.gla") {
      const ValueDesc &q = desc(o[0]);
      glaBackward(cm(o[0]), cm(o[1]), cm(o[2]), cm(o[3]), q.shape[0], q.shape[1], attrInt(k, "num_heads"),
                  static_cast<float>(attrFloat(k, "scale")), static_cast<float>(attrFloat(k, "gate_normalizer")),
                  attrInt(k, "chunk_size"), dOut(), mOpt(r[0]), mOpt(r[1]), mOpt(r[2]), mOpt(r[3]));
    } else if (op == "dit.unpatchify") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      int64_t p = attrInt(k, "patch_size");
      unpatchifyBackward(ptr(o[s]), x.shape[0], grid[0], grid[1], p, x.shape[2] / (p * p), m(r[0]));
    } else if (op == "dit.token_mean") {
      const ValueDesc &x = desc(o[0]);
      tokenMeanBackward(dOut(), x.shape[0], x.shape[1], m(r[0]));
    } else if (op == "dit.reorder_tokens") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      reorderTokens(dOut(), x.shape[0], grid[0], grid[1], scanOrder(attrString(k, "to")),
                    scanOrder(attrString(k, "from")), m(r[0]));
    } else if (op == "dit.silu" || op == "dit.gelu") {
      Act act = op == "dit.silu" ? Act::Silu : attrInt(k, "approximate") ? Act::GeluTanh : Act::Gelu;
      activateBackward(ptr(o[0]), ptr(o[s]), desc(o[0]).numel(), act, ptr(r[0]));
    } else if (op == "dit.label_embed") {
      const ValueDesc &table = desc(o[1]);
      labelEmbedBackward(iptr(o[0]), desc(o[0]).shape[0], attrInt(k, "num_classes"), table.shape[1], dOut(),
                         ptr(r[1]));
    } else if (op == "dit.mask_tokens") {
      const ValueDesc &x = desc(o[0]), &keep = desc(o[1]);
      unmaskTokens(dOut(), iptr(o[1]), x.shape[0], x.shape[1], keep.shape[1], m(r[0]));
    } else if (op == "dit.unmask_tokens") {
      const ValueDesc &x = desc(o[0]);
      maskTokens(dOut(), iptr(o[1]), x.shape[0], attrInt(k, "num_tokens"), x.shape[1], m(r[0]));
    } else if (op == "dit.add") {
      addBroadcastBackwardRhs(ptr(o[s]), desc(o[0]).numel(), desc(o[1]).numel(), ptr(r[1]));
    } else if (op == "dit.mul") {
      mulBroadcastBackward(ptr(o[0]), desc(o[0]).numel(), ptr(o[1]), desc(o[1]).numel(), ptr(o[s]),
                           fOpt(r[0]), fOpt(r[1]));
    } else if (op == "dit.modulate") {
      modulateBackward(cm(o[0]), cm(o[2]), desc(o[0]).shape[1], dOut(), mOpt(r[0]), mOpt(r[1]), mOpt(r[2]));
    } else if (op == "dit.gated_residual") {
      gatedResidualBackward(cm(o[1]), cm(o[2]), desc(o[0]).shape[1], dOut(), mOpt(r[1]), mOpt(r[2]));
    } else if (op == "dit.split") {
      // A part already in place (written as a column view of the whole)
      // is not copied.
      Mat whole = m(r[0]);
      for (size_t part = 0; part + s < o.size(); ++part) {
        ConstMat g = dOut(part);
        if (g.data == whole.data + part * g.cols && g.ld == whole.ld)
          continue;
        for (int64_t row = 0; row < g.rows; ++row)
          std::memcpy(whole.row(row) + part * g.cols, g.row(row), g.cols * sizeof(float));
      }
    } else if (op == "dit.ddpm_loss" || op == "dit.rf_loss" || op == "dit.edm_loss") {
      int64_t n = desc(o[0]).shape[0];
      std::vector<float> weight(n, static_cast<float>(attrFloat(k, "loss_weight")) * lossScale), loss(n);
      loss_(k, loss.data(), weight.data(), ptr(r[0]));
    } else {
      fail("the CPU backend has no backward kernel for ", op);
    }
  }

  /// The loss kernels, forward (weight and gradient null) or with gradient.
  void loss_(const KernelDesc &k, float *loss, const float *weight, float *dPrediction) {
    const std::string op = k.op.rfind("vjp:", 0) == 0 ? k.op.substr(4) : k.op;
    const auto &o = k.operands;
    if (op == "dit.ddpm_loss") {
      const ValueDesc &x0 = desc(o[1]);
      ddpmLoss(ptr(o[0]), ptr(o[1]), ptr(o[2]), ptr(o[3]), iptr(o[4]), x0.shape[0], x0.shape[1],
               x0.shape[2] * x0.shape[3], attrInt(k, "num_timesteps"), loss, weight, dPrediction);
    } else if (op == "dit.rf_loss") {
      const ValueDesc &p = desc(o[0]), &x0 = desc(o[1]);
      rfLoss(ptr(o[0]), ptr(o[1]), ptr(o[2]), x0.shape[0], x0.shape[1], p.shape[1], x0.shape[2] * x0.shape[3],
             loss, weight, dPrediction);
    } else {
      const ValueDesc &x0 = desc(o[2]);
      edmLoss(ptr(o[0]), ptr(o[1]), ptr(o[2]), ptr(o[3]), o[4] >= 0 ? iptr(o[4]) : nullptr,
              o[4] >= 0 ? desc(o[4]).shape[1] : 0, x0.shape[0], x0.shape[1], x0.shape[2], x0.shape[3],
              attrInt(k, "patch_size"), attrFloat(k, "sigma_data"), loss, weight, dPrediction);
    }
  }

  /// The decoded program of a kern.pointwise kernel (validated on load).
  const PwProgram &program(const KernelDesc &k) {
    auto it = programs.find(&k);
    if (it == programs.end())
      it = programs.emplace(&k, decodePointwise(attrInts(k, "program"),
                                                static_cast<int32_t>(k.operands.size()), k.op))
               .first;
    return it->second;
  }
  std::map<const KernelDesc *, PwProgram> programs;

  NormArgs normArgs(const KernelDesc &k) {
    const auto &o = k.operands;
    NormArgs a;
    a.kind = attrString(k, "kind") == "rms" ? NormKind::Rms : NormKind::Layer;
    a.group = attrInt(k, "group_size");
    a.eps = static_cast<float>(attrFloat(k, "epsilon"));
    a.weight = ptr(o[1]);
    a.bias = ptr(o[2]);
    a.shift = cm(o[3]);
    a.scale = cm(o[4]);
    if (o[3] >= 0)
      a.rowsPerSample = desc(o[0]).shape[1];
    a.siluGate = cm(o[5]);
    return a;
  }

  TokenChoiceArgs tokenChoice(const KernelDesc &k, const GatedResidual *e) {
    const auto &o = k.operands;
    TokenChoiceArgs a;
    a.router = ptr(o[1]);
    a.experts = desc(o[1]).shape[0];
    a.hidden = desc(o[2]).shape[1];
    a.topK = attrInt(k, "top_k");
    a.normalize = attrInt(k, "normalize") != 0;
    a.gate = ptr(o[2]);
    a.up = ptr(o[3]);
    a.down = ptr(o[4]);
    if (attrString(k, "weight_layout") != "out_in" || !a.down)
      fail("token-choice experts must be swiglu in out_in layout");
    a.sharedGate = ptr(o[5]);
    a.sharedUp = ptr(o[6]);
    a.sharedDown = ptr(o[7]);
    a.sharedHidden = o[5] >= 0 ? desc(o[5]).shape[0] : 0;
    a.epilogue = e;
    return a;
  }

  ExpertChoiceArgs expertChoice(const KernelDesc &k, const GatedResidual *e) {
    const auto &o = k.operands;
    bool outIn = attrString(k, "weight_layout") == "out_in";
    ExpertChoiceArgs a;
    a.router = ptr(o[1]);
    a.experts = desc(o[1]).shape[0];
    a.hidden = outIn ? desc(o[2]).shape[1] : desc(o[2]).shape[2];
    a.tokens = desc(o[0]).shape[1];
    a.capacity = attrFloat(k, "capacity");
    a.inOut = !outIn;
    a.act = attrString(k, "activation") == "gelu_tanh" ? Act::GeluTanh : Act::Gelu;
    if (attrString(k, "activation") == "swiglu" || o[5] >= 0)
      fail("expert-choice experts must be gelu without a shared expert");
    a.w1 = ptr(o[2]);
    a.w2 = ptr(o[3]);
    a.epilogue = e;
    return a;
  }

  void dispatch(const KernelDesc &k) {
    if (k.op.rfind("vjp:", 0) == 0)
      return dispatchVjp(k);
    const auto &o = k.operands;
    int32_t res = k.results[0];
    const std::string &op = k.op;
    if (op == "kern.gemm") {
      GatedResidual e;
      bool hasE = epilogue(k, 3, e);
      gemm(cm(o[0]), cm(o[1]), ptr(o[2]), actOf(attrString(k, "act")), hasE ? &e : nullptr, m(res),
           k.results.size() > 1 ? mOpt(k.results[1]) : Mat{});
    } else if (op == "kern.swiglu") {
      ConstMat gate = cm(o[1]), up;
      if (o[2] >= 0) {
        up = cm(o[2]);
      } else {
        int64_t f = gate.rows / 2;
        up = {gate.data + f * gate.ld, f, gate.cols, gate.ld};
        gate.rows = f;
      }
      GatedResidual e;
      bool hasE = epilogue(k, 4, e);
      int64_t rows = desc(o[0]).rows();
      swiglu(cm(o[0]), gate, up, cm(o[3]), hasE ? &e : nullptr,
             scratchFor(2 * rows * gate.rows), m(res));
    } else if (op == "kern.norm") {
      if (o[6] >= 0) {
        // The residual form: the sum, then its norm.
        Mat sum = m(k.results[1]);
        gatedResidual(cm(o[6]), cm(o[7]), cm(o[0]), desc(o[0]).shape[1], sum);
        norm(ConstMat{sum.data, sum.rows, sum.cols, sum.ld}, normArgs(k), m(res));
      } else {
        norm(cm(o[0]), normArgs(k), m(res));
      }
    } else if (op == "kern.moe") {
      GatedResidual e;
      bool hasE = epilogue(k, 8, e);
      if (attrString(k, "routing") == "token_choice")
        moeTokenChoice(cm(o[0]), tokenChoice(k, hasE ? &e : nullptr), m(res));
      else
        moeExpertChoice(cm(o[0]), expertChoice(k, hasE ? &e : nullptr), m(res));
    } else if (op == "kern.dwconv") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      depthwiseConv(cm(o[0]), x.shape[0], grid[0], grid[1], ptr(o[1]), ptr(o[2]),
                    desc(o[1]).shape[2], scanOrder(attrString(k, "from")),
                    scanOrder(attrString(k, "to")), m(res));
    } else if (op == "kern.patch_embed") {
      const ValueDesc &x = desc(o[0]), &w = desc(o[1]);
      patchEmbed(ptr(o[0]), x.shape[0], x.shape[1], x.shape[2], x.shape[3], ptr(o[1]), ptr(o[2]),
                 w.shape[0], w.shape[2], ptr(o[3]), m(res));
    } else if (op == "kern.pointwise") {
      std::vector<ConstMat> inputs;
      for (int32_t id : o)
        inputs.push_back(cm(id));
      pointwise(program(k), inputs.data(), m(res));
    } else if (op == "dit.attention" || op == "kern.attention") {
      const ValueDesc &q = desc(o[0]), &kk = desc(o[1]);
      attention(cm(o[0]), cm(o[1]), cm(o[2]), q.shape[0], q.shape[1], kk.shape[1],
                attrInt(k, "num_heads"), static_cast<float>(attrFloat(k, "scale")), m(res),
                k.results.size() > 1 ? fOpt(k.results[1]) : nullptr);
    } else if (op == "dit.gla") {
      const ValueDesc &q = desc(o[0]);
      gla(cm(o[0]), cm(o[1]), cm(o[2]), cm(o[3]), q.shape[0], q.shape[1], attrInt(k, "num_heads"),
          static_cast<float>(attrFloat(k, "scale")), static_cast<float>(attrFloat(k, "gate_normalizer")),
          attrInt(k, "chunk_size"), m(res));
    } else if (op == "dit.unpatchify") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      int64_t p = attrInt(k, "patch_size");
      unpatchify(cm(o[0]), x.shape[0], grid[0], grid[1], p, x.shape[2] / (p * p), ptr(res));
    } else if (op == "dit.sincos_pos_embed") {
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      sincosPosEmbed(grid[0], grid[1], attrInt(k, "dim"), attrFloat(k, "interp_scale"), ptr(res));
    } else if (op == "dit.timestep_embed") {
      timestepEmbed(ptr(o[0]), desc(o[0]).shape[0], attrInt(k, "dim"), attrFloat(k, "max_period"),
                    ptr(res));
    } else if (op == "dit.label_embed") {
      const ValueDesc &table = desc(o[1]);
      labelEmbed(iptr(o[0]), desc(o[0]).shape[0], ptr(o[1]), attrInt(k, "num_classes"),
                 table.shape[1], ptr(res));
    } else if (op == "dit.token_mean") {
      const ValueDesc &x = desc(o[0]);
      tokenMean(cm(o[0]), x.shape[0], x.shape[1], m(res));
    } else if (op == "dit.mask_tokens") {
      const ValueDesc &x = desc(o[0]), &keep = desc(o[1]);
      maskTokens(cm(o[0]), iptr(o[1]), x.shape[0], x.shape[1], keep.shape[1], m(res));
    } else if (op == "dit.unmask_tokens") {
      const ValueDesc &x = desc(o[0]);
      unmaskTokens(cm(o[0]), iptr(o[1]), x.shape[0], attrInt(k, "num_tokens"), x.shape[1], m(res));
    } else if (op == "dit.reorder_tokens") {
      const ValueDesc &x = desc(o[0]);
      const std::vector<int64_t> &grid = attrInts(k, "grid");
      reorderTokens(cm(o[0]), x.shape[0], grid[0], grid[1], scanOrder(attrString(k, "from")),
                    scanOrder(attrString(k, "to")), m(res));
    } else if (op == "dit.modulate") {
      modulate(cm(o[0]), cm(o[1]), cm(o[2]), desc(o[0]).shape[1], m(res));
    } else if (op == "dit.gated_residual") {
      gatedResidual(cm(o[0]), cm(o[1]), cm(o[2]), desc(o[0]).shape[1], m(res));
    } else if (op == "dit.ddpm_loss" || op == "dit.rf_loss" || op == "dit.edm_loss") {
      loss_(k, ptr(res), nullptr, nullptr);
    } else {
      fail("the CPU backend has no kernel for ", op);
    }
  }
};

} // namespace

std::unique_ptr<Backend> createCpuBackend(const Plan &plan) {
  return std::make_unique<CpuBackend>(plan);
}

} // namespace diffrt
