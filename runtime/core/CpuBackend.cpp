//===- CpuBackend.cpp - runs a plan's kernels on the CPU ------------------===//
//
// The CPU backend: the three regions are host buffers, and each kernel of an
// entry calls its reference implementation in diffrt::cpu. It executes f32
// plans only (the reference numerics); the artifact was validated on load,
// so operands are indexed without further checks.
//
//===----------------------------------------------------------------------===//

#include "diffrt/CpuKernels.h"
#include "diffrt/Error.h"
#include "diffrt/KernelSignatures.h"
#include "diffrt/Session.h"

#include "diffrt/Rng.h"

#include <algorithm>
#include <chrono>
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

private:
  const Plan &plan;
  Buffer weights, constants, arena;
  std::vector<float> scratch;

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

  void dispatch(const KernelDesc &k) {
    const auto &o = k.operands;
    int32_t res = k.results[0];
    const std::string &op = k.op;
    if (op == "kern.gemm") {
      GatedResidual e;
      bool hasE = epilogue(k, 3, e);
      gemm(cm(o[0]), cm(o[1]), ptr(o[2]), actOf(attrString(k, "act")), hasE ? &e : nullptr, m(res));
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
      norm(cm(o[0]), a, m(res));
    } else if (op == "kern.moe") {
      const ValueDesc &x = desc(o[0]);
      GatedResidual e;
      bool hasE = epilogue(k, 8, e);
      int64_t experts = desc(o[1]).shape[0];
      bool outIn = attrString(k, "weight_layout") == "out_in";
      int64_t hidden = outIn ? desc(o[2]).shape[1] : desc(o[2]).shape[2];
      if (attrString(k, "routing") == "token_choice") {
        TokenChoiceArgs a;
        a.router = ptr(o[1]);
        a.experts = experts;
        a.hidden = hidden;
        a.topK = attrInt(k, "top_k");
        a.normalize = attrInt(k, "normalize") != 0;
        a.gate = ptr(o[2]);
        a.up = ptr(o[3]);
        a.down = ptr(o[4]);
        if (!outIn || !a.down)
          fail("token-choice experts must be swiglu in out_in layout");
        a.sharedGate = ptr(o[5]);
        a.sharedUp = ptr(o[6]);
        a.sharedDown = ptr(o[7]);
        a.sharedHidden = o[5] >= 0 ? desc(o[5]).shape[0] : 0;
        a.epilogue = hasE ? &e : nullptr;
        moeTokenChoice(cm(o[0]), a, m(res));
      } else {
        ExpertChoiceArgs a;
        a.router = ptr(o[1]);
        a.experts = experts;
        a.hidden = hidden;
        a.tokens = x.shape[1];
        a.capacity = attrFloat(k, "capacity");
        a.inOut = !outIn;
        a.act = attrString(k, "activation") == "gelu_tanh" ? Act::GeluTanh : Act::Gelu;
        if (attrString(k, "activation") == "swiglu" || o[5] >= 0)
          fail("expert-choice experts must be gelu without a shared expert");
        a.w1 = ptr(o[2]);
        a.w2 = ptr(o[3]);
        a.epilogue = hasE ? &e : nullptr;
        moeExpertChoice(cm(o[0]), a, m(res));
      }
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
    } else if (op == "kern.cast") {
      std::memcpy(ptr(res), ptr(o[0]), desc(res).numel() * sizeof(float));
    } else if (op == "dit.attention") {
      const ValueDesc &q = desc(o[0]), &kk = desc(o[1]);
      attention(cm(o[0]), cm(o[1]), cm(o[2]), q.shape[0], q.shape[1], kk.shape[1],
                attrInt(k, "num_heads"), static_cast<float>(attrFloat(k, "scale")), m(res));
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
    } else if (op == "dit.add" || op == "dit.mul") {
      int64_t n = desc(o[0]).numel(), nr = desc(o[1]).numel();
      (op == "dit.add" ? addBroadcast : mulBroadcast)(ptr(o[0]), n, ptr(o[1]), nr, ptr(res));
    } else if (op == "dit.silu" || op == "dit.gelu") {
      int64_t n = desc(res).numel();
      if (ptr(res) != ptr(o[0]))
        std::memcpy(ptr(res), ptr(o[0]), n * sizeof(float));
      Act act = op == "dit.silu" ? Act::Silu : attrInt(k, "approximate") ? Act::GeluTanh : Act::Gelu;
      activate(ptr(res), n, act);
    } else if (op == "dit.modulate") {
      modulate(cm(o[0]), cm(o[1]), cm(o[2]), desc(o[0]).shape[1], m(res));
    } else if (op == "dit.gated_residual") {
      gatedResidual(cm(o[0]), cm(o[1]), cm(o[2]), desc(o[0]).shape[1], m(res));
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
