//===- ModelZoo.cpp - DiT, DiT-MoE, MicroDiT and DiG as dit IR -------------===//
//
// Each family is written once as a function of its configuration, following
// spec/models.md. Parameters become arguments of @forward named as in the
// reference checkpoints; each block is a private function shared by all
// blocks of identical shape and called with that block's parameters.
//
//===----------------------------------------------------------------------===//

#include "frontends/ModelZoo.h"

#include "dialects/Dit/IR/DitDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <functional>
#include <map>
#include <set>

using namespace mlir;
using namespace diffc;
using namespace diffc::dit;

namespace {

constexpr double kNormEps = 1e-6;

//===----------------------------------------------------------------------===//
// Building blocks
//===----------------------------------------------------------------------===//

/// A function under construction whose parameters are added as they are
/// first used, each remembered with its (relative or full) checkpoint name.
class FunctionBuilder {
public:
  explicit FunctionBuilder(func::FuncOp func)
      : b(func.getContext()), func(func), loc(func.getLoc()) {
    b.setInsertionPointToEnd(&func.getBody().front());
  }

  /// Each function has its own builder, so building a block function never
  /// moves the insertion point of @forward.
  OpBuilder b;
  func::FuncOp func;
  Location loc;
  /// Names of the arguments added by param(), by argument index.
  std::map<unsigned, std::string> paramNames;

  Type f32() { return b.getF32Type(); }
  RankedTensorType tensor(ArrayRef<int64_t> shape, Type element = {}) {
    return RankedTensorType::get(shape, element ? element : f32());
  }

  Value arg(Type type) { return func.getBody().front().addArgument(type, loc); }

  Value param(const std::string &name, ArrayRef<int64_t> shape) {
    Value v = arg(tensor(shape));
    paramNames[cast<BlockArgument>(v).getArgNumber()] = name;
    return v;
  }

  /// Fixes the function type from the entry block's arguments and `results`.
  void finish(ValueRange results) {
    b.create<func::ReturnOp>(loc, results);
    SmallVector<Type> inputs(func.getBody().front().getArgumentTypes());
    func.setType(b.getFunctionType(inputs, TypeRange(results)));
  }

  // dit op shorthands; result types are inferred.
  Value linear(Value x, Value w, Value bias = {}) { return b.create<LinearOp>(loc, x, w, bias); }
  Value silu(Value x) { return b.create<SiluOp>(loc, x.getType(), x); }
  Value gelu(Value x, bool tanh) {
    auto op = b.create<GeluOp>(loc, x.getType(), x);
    if (tanh)
      op.setApproximate(true);
    return op;
  }
  Value layerNorm(Value x, Value weight = {}, Value bias = {}, std::optional<int64_t> group = {}) {
    auto op = b.create<LayerNormOp>(loc, x, weight, bias, b.getF64FloatAttr(kNormEps),
                                    group ? b.getI64IntegerAttr(*group) : IntegerAttr());
    return op;
  }
  Value rmsNorm(Value x, Value weight, int64_t group) {
    return b.create<RmsNormOp>(loc, x, weight, b.getF64FloatAttr(kNormEps),
                               b.getI64IntegerAttr(group));
  }
  Value modulate(Value x, Value shift, Value scale) {
    return b.create<ModulateOp>(loc, x, shift, scale);
  }
  Value gatedResidual(Value residual, Value gate, Value y) {
    return b.create<GatedResidualOp>(loc, residual, gate, y);
  }
  Value add(Value lhs, Value rhs) { return b.create<AddOp>(loc, lhs, rhs); }
  Value mul(Value lhs, Value rhs) { return b.create<MulOp>(loc, lhs, rhs); }
  SmallVector<Value> split(Value x, int64_t parts) {
    auto type = cast<RankedTensorType>(x.getType());
    SmallVector<int64_t> shape(type.getShape());
    shape.back() /= parts;
    SmallVector<Type> types(parts, RankedTensorType::get(shape, type.getElementType()));
    auto op = b.create<SplitOp>(loc, types, x);
    return SmallVector<Value>(op.getResults());
  }
  Value attention(Value q, Value k, Value v, int64_t heads) {
    return b.create<AttentionOp>(loc, q, k, v, b.getI64IntegerAttr(heads), FloatAttr());
  }
  Value mlp(Value x, Value w1, Value b1, Value w2, Value b2, Activation act) {
    return b.create<MlpOp>(loc, x, w1, w2, b1, b2, ActivationAttr::get(b.getContext(), act));
  }
  Value swiglu(Value x, Value gate, Value up, Value down) {
    return b.create<SwiGluOp>(loc, x, gate, up, down);
  }
};

int64_t dim(Value v, unsigned i) { return cast<RankedTensorType>(v.getType()).getDimSize(i); }

/// Everything @forward and the block functions are built into.
class ModelBuilder {
public:
  ModelBuilder(MLIRContext *context, const std::string &modelName)
      : builder(context), module(ModuleOp::create(UnknownLoc::get(context))) {
    builder.setInsertionPointToEnd(module->getBody());
    auto forwardFunc = builder.create<func::FuncOp>(NameLoc::get(builder.getStringAttr(modelName)),
                                                    "forward", builder.getFunctionType({}, {}));
    forwardFunc.addEntryBlock();
    forward = std::make_unique<FunctionBuilder>(forwardFunc);
  }

  OpBuilder builder;
  OwningOpRef<ModuleOp> module;
  std::unique_ptr<FunctionBuilder> forward;
  std::vector<std::pair<unsigned, std::string>> inputs;

  Value input(const std::string &name, RankedTensorType type) {
    Value v = forward->arg(type);
    inputs.emplace_back(cast<BlockArgument>(v).getArgNumber(), name);
    return v;
  }

  /// Builds a block function of `kind` from `body` (which declares the
  /// block's parameters by relative name and returns its results), reuses
  /// an identical earlier one, and calls it with the parameters named
  /// `prefix` + relative name.
  SmallVector<Value> callBlock(const std::string &kind, const std::string &prefix,
                               ValueRange activations,
                               const std::function<SmallVector<Value>(FunctionBuilder &,
                                                                      ValueRange)> &body) {
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPoint(forward->func);
    auto func = builder.create<func::FuncOp>(NameLoc::get(builder.getStringAttr(kind)),
                                             kind + "_block", builder.getFunctionType({}, {}));
    func.setPrivate();
    Block *entry = func.addEntryBlock();
    SmallVector<Value> acts;
    for (Value a : activations)
      acts.push_back(entry->addArgument(a.getType(), func.getLoc()));
    FunctionBuilder fb(func);
    SmallVector<Value> results = body(fb, acts);
    fb.finish(results);
    func->setAttr(DitDialect::kBlockKindAttrName, builder.getStringAttr(kind));

    std::vector<std::string> names;
    for (auto &[index, name] : fb.paramNames)
      names.push_back(name);
    std::string key = kind + "|" + printType(func.getFunctionType()) + "|" +
                      llvm::join(names.begin(), names.end(), ",");
    auto found = blockFunctions.find(key);
    if (found != blockFunctions.end()) {
      func.erase();
      func = found->second;
    } else {
      // Distinct shapes of one kind get numbered names in build order.
      int &count = kindCounts[kind];
      if (count > 0)
        func.setSymName(kind + "_block_" + std::to_string(count));
      ++count;
      blockFunctions[key] = func;
    }

    // Parameters are the arguments after the activations, in order.
    SmallVector<Value> operands(activations.begin(), activations.end());
    unsigned first = activations.size();
    for (unsigned i = first; i < func.getNumArguments(); ++i) {
      auto type = cast<RankedTensorType>(func.getArgumentTypes()[i]);
      operands.push_back(forward->param(prefix + names[i - first], type.getShape()));
    }
    auto call = forward->b.create<func::CallOp>(NameLoc::get(builder.getStringAttr(prefix)),
                                                func, operands);
    return SmallVector<Value>(call.getResults());
  }

  OwningOpRef<ModuleOp> finish(ValueRange results, DictionaryAttr description) {
    forward->finish(results);
    func::FuncOp f = forward->func;
    for (auto &[index, name] : inputs)
      f.setArgAttr(index, DitDialect::kInputAttrName, builder.getStringAttr(name));
    for (auto &[index, name] : forward->paramNames)
      f.setArgAttr(index, DitDialect::kParamAttrName, builder.getStringAttr(name));
    module->getOperation()->setAttr(DitDialect::kModelAttrName, description);
    return std::move(module);
  }

private:
  std::map<std::string, func::FuncOp> blockFunctions;
  std::map<std::string, int> kindCounts;

  static std::string printType(Type t) {
    std::string s;
    llvm::raw_string_ostream os(s);
    t.print(os);
    return s;
  }
};

//===----------------------------------------------------------------------===//
// Pieces shared by the families
//===----------------------------------------------------------------------===//

/// Patch embedding plus the fixed position table.
Value embedPatches(FunctionBuilder &f, Value x, int64_t hidden, int64_t patch, double interpScale,
                   bool posIsParameter) {
  int64_t channels = dim(x, 1);
  Value w = f.param("x_embedder.proj.weight", {hidden, channels, patch, patch});
  Value bias = f.param("x_embedder.proj.bias", {hidden});
  Value tokens = f.b.create<PatchEmbedOp>(f.loc, x, w, bias);
  int64_t gh = dim(x, 2) / patch, gw = dim(x, 3) / patch;
  Value pos = f.b.create<SinCosPosEmbedOp>(
      f.loc, f.b.getDenseI64ArrayAttr({gh, gw}), f.b.getI64IntegerAttr(hidden),
      f.b.getF64FloatAttr(interpScale), f.b.getStringAttr("pos_embed"),
      posIsParameter ? f.b.getUnitAttr() : UnitAttr());
  return f.add(tokens, pos);
}

/// TimestepEmbedder: sinusoidal features then a two-layer MLP.
Value embedTimestep(FunctionBuilder &f, Value t, int64_t hidden, int64_t freqDim, Activation act) {
  Value freq = f.b.create<TimestepEmbedOp>(f.loc, t, f.b.getI64IntegerAttr(freqDim),
                                           f.b.getF64FloatAttr(10000.0));
  return f.mlp(freq, f.param("t_embedder.mlp.0.weight", {hidden, freqDim}),
               f.param("t_embedder.mlp.0.bias", {hidden}),
               f.param("t_embedder.mlp.2.weight", {hidden, hidden}),
               f.param("t_embedder.mlp.2.bias", {hidden}), act);
}

/// adaLN: act(c) -> Linear(cWidth -> parts * width) -> split.
SmallVector<Value> adaLN(FunctionBuilder &f, Value c, const std::string &prefix, int64_t width,
                         int64_t parts, bool geluTanh) {
  int64_t cWidth = dim(c, 1);
  Value a = geluTanh ? f.gelu(c, true) : f.silu(c);
  Value m = f.linear(a, f.param(prefix + "adaLN_modulation.1.weight", {parts * width, cWidth}),
                     f.param(prefix + "adaLN_modulation.1.bias", {parts * width}));
  return f.split(m, parts);
}

/// DiT's final layer: LayerNorm, adaLN shift/scale (shift first), Linear,
/// then unpatchify.
Value finalLayer(FunctionBuilder &f, Value x, Value c, int64_t patch, int64_t outChannels,
                 ArrayRef<int64_t> grid, bool geluTanh, bool normWeight) {
  int64_t hidden = dim(x, 2);
  SmallVector<Value> m = adaLN(f, c, "final_layer.", hidden, 2, geluTanh);
  Value norm = f.layerNorm(x, normWeight ? f.param("final_layer.norm_final.weight", {hidden})
                                         : Value());
  Value h = f.modulate(norm, m[0], m[1]);
  int64_t out = patch * patch * outChannels;
  return f.linear(h, f.param("final_layer.linear.weight", {out, hidden}),
                  f.param("final_layer.linear.bias", {out}));
}

Value unpatchify(FunctionBuilder &f, Value tokens, ArrayRef<int64_t> grid, int64_t patch) {
  return f.b.create<UnpatchifyOp>(f.loc, tokens, f.b.getDenseI64ArrayAttr(grid),
                                  f.b.getI64IntegerAttr(patch));
}

NamedAttribute named(OpBuilder &b, StringRef name, Attribute value) {
  return b.getNamedAttr(name, value);
}

//===----------------------------------------------------------------------===//
// DiT and DiT-MoE
//===----------------------------------------------------------------------===//

struct DitConfig {
  std::string name;
  int64_t depth = 12, hidden = 384, heads = 6, patch = 2;
  int64_t latent = 32, channels = 4, numClasses = 1000;
  bool learnSigma = true;
  // DiT-MoE: experts == 0 means the dense GELU MLP.
  int64_t experts = 0, topK = 2;
  bool qkNorm = false;
  double balanceCoef = 0.01;
  std::string objective = "ddpm";
};

/// Self-attention of a DiT block: timm's qkv/proj, or DiT-MoE's flash
/// variant with per-head q/k LayerNorm.
Value ditAttention(FunctionBuilder &f, Value h, int64_t hidden, int64_t heads, bool qkNorm) {
  int64_t headDim = hidden / heads;
  std::string qkv = qkNorm ? "attn.Wqkv." : "attn.qkv.";
  std::string proj = qkNorm ? "attn.out_proj." : "attn.proj.";
  SmallVector<Value> parts = f.split(
      f.linear(h, f.param(qkv + "weight", {3 * hidden, hidden}), f.param(qkv + "bias", {3 * hidden})),
      3);
  Value q = parts[0], k = parts[1];
  if (qkNorm) {
    q = f.layerNorm(q, f.param("attn.q_norm.weight", {headDim}), f.param("attn.q_norm.bias", {headDim}),
                    headDim);
    k = f.layerNorm(k, f.param("attn.k_norm.weight", {headDim}), f.param("attn.k_norm.bias", {headDim}),
                    headDim);
  }
  Value o = f.attention(q, k, parts[2], heads);
  return f.linear(o, f.param(proj + "weight", {hidden, hidden}), f.param(proj + "bias", {hidden}));
}

OwningOpRef<ModuleOp> buildDit(MLIRContext *context, const DitConfig &cfg, int64_t batch) {
  ModelBuilder mb(context, cfg.name);
  FunctionBuilder &f = *mb.forward;
  int64_t d = cfg.hidden;
  int64_t grid = cfg.latent / cfg.patch;
  Value x = mb.input("x", f.tensor({batch, cfg.channels, cfg.latent, cfg.latent}));
  Value t = mb.input("t", f.tensor({batch}));
  Value y = mb.input("y", f.tensor({batch}, f.b.getI32Type()));

  Value tokens = embedPatches(f, x, d, cfg.patch, 1.0, /*posIsParameter=*/true);
  Value tEmb = embedTimestep(f, t, d, 256, Activation::Silu);
  Value yEmb = f.b.create<LabelEmbedOp>(
      f.loc, y, f.param("y_embedder.embedding_table.weight", {cfg.numClasses + 1, d}),
      f.b.getI64IntegerAttr(cfg.numClasses));
  Value c = f.add(tEmb, yEmb);

  std::string kind = cfg.experts ? "dit_moe" : "dit";
  for (int64_t i = 0; i < cfg.depth; ++i) {
    tokens = mb.callBlock(kind, "blocks." + std::to_string(i) + ".", {tokens, c},
                          [&](FunctionBuilder &g, ValueRange a) -> SmallVector<Value> {
      Value xb = a[0], cb = a[1];
      SmallVector<Value> m = adaLN(g, cb, "", d, 6, false);
      Value h = g.modulate(g.layerNorm(xb), m[0], m[1]);
      xb = g.gatedResidual(xb, m[2], ditAttention(g, h, d, cfg.heads, cfg.qkNorm));
      h = g.modulate(g.layerNorm(xb), m[3], m[4]);
      Value ff;
      if (!cfg.experts) {
        ff = g.mlp(h, g.param("mlp.fc1.weight", {4 * d, d}), g.param("mlp.fc1.bias", {4 * d}),
                   g.param("mlp.fc2.weight", {d, 4 * d}), g.param("mlp.fc2.bias", {d}),
                   Activation::GeluTanh);
      } else {
        int64_t e = cfg.experts, hid = 4 * d, shared = 2 * d;
        auto routing = TokenChoiceAttr::get(g.b.getContext(), cfg.topK, false,
                                            llvm::APFloat(cfg.balanceCoef));
        Value routed = g.b.create<MoeOp>(
            g.loc, h, g.param("moe.gate.weight", {e, d}),
            ValueRange{g.param("moe.experts.{e}.gate_proj.weight", {e, hid, d}),
                       g.param("moe.experts.{e}.up_proj.weight", {e, hid, d}),
                       g.param("moe.experts.{e}.down_proj.weight", {e, d, hid})},
            routing, ActivationAttr::get(g.b.getContext(), Activation::SwiGlu),
            WeightLayoutAttr::get(g.b.getContext(), WeightLayout::OutIn));
        Value sharedOut = g.swiglu(h, g.param("moe.shared_experts.gate_proj.weight", {shared, d}),
                                   g.param("moe.shared_experts.up_proj.weight", {shared, d}),
                                   g.param("moe.shared_experts.down_proj.weight", {d, shared}));
        ff = g.add(routed, sharedOut);
      }
      return {g.gatedResidual(xb, m[5], ff)};
    })[0];
  }

  int64_t outChannels = cfg.learnSigma ? 2 * cfg.channels : cfg.channels;
  Value out = finalLayer(f, tokens, c, cfg.patch, outChannels, {grid, grid}, false, false);
  Value image = unpatchify(f, out, {grid, grid}, cfg.patch);

  OpBuilder &b = f.b;
  auto description = b.getDictionaryAttr({
      named(b, "name", b.getStringAttr(cfg.name)),
      named(b, "family", b.getStringAttr(cfg.experts ? "dit-moe" : "dit")),
      named(b, "in_channels", b.getI64IntegerAttr(cfg.channels)),
      named(b, "out_channels", b.getI64IntegerAttr(outChannels)),
      named(b, "learn_sigma", b.getBoolAttr(cfg.learnSigma)),
      named(b, "num_classes", b.getI64IntegerAttr(cfg.numClasses)),
      named(b, "latent_size", b.getI64IntegerAttr(cfg.latent)),
      named(b, "patch_size", b.getI64IntegerAttr(cfg.patch)),
      named(b, "objective", b.getStringAttr(cfg.objective)),
      // DiT's published guidance mixes only 3 of the 4 latent channels;
      // that quirk exists for 4-channel latents alone, so other channel
      // counts (Fashion-MNIST's 1) guide every ε channel.
      named(b, "guidance", b.getStringAttr(cfg.objective == "rf" || cfg.channels != 4 ? "all_channels"
                                                                                      : "dit_3channel")),
  });
  return mb.finish(image, description);
}

//===----------------------------------------------------------------------===//
// DiG
//===----------------------------------------------------------------------===//

struct DigConfig {
  std::string name;
  int64_t depth = 12, hidden = 384, heads = 6, patch = 2, latent = 32, channels = 4,
          numClasses = 1000;
  bool learnSigma = true;
};

/// Scan order seen by block i (spec 5.3, period 4).
ScanOrder digOrder(int64_t block) {
  static const ScanOrder orders[] = {ScanOrder::RowMajor, ScanOrder::RowMajorReversed,
                                     ScanOrder::ColMajor, ScanOrder::ColMajorReversed};
  return orders[block % 4];
}

OwningOpRef<ModuleOp> buildDig(MLIRContext *context, const DigConfig &cfg, int64_t batch) {
  ModelBuilder mb(context, cfg.name);
  FunctionBuilder &f = *mb.forward;
  int64_t d = cfg.hidden, heads = cfg.heads;
  int64_t dk = d / 2, dv = d;
  int64_t grid = cfg.latent / cfg.patch;
  int64_t ffn = 256 * ((static_cast<int64_t>(8.0 * d / 3.0) + 255) / 256);
  Value x = mb.input("x", f.tensor({batch, cfg.channels, cfg.latent, cfg.latent}));
  Value t = mb.input("t", f.tensor({batch}));
  Value y = mb.input("y", f.tensor({batch}, f.b.getI32Type()));

  Value tokens = embedPatches(f, x, d, cfg.patch, 1.0, /*posIsParameter=*/true);
  Value c = f.add(embedTimestep(f, t, d, 256, Activation::Silu),
                  f.b.create<LabelEmbedOp>(
                      f.loc, y, f.param("y_embedder.embedding_table.weight", {cfg.numClasses + 1, d}),
                      f.b.getI64IntegerAttr(cfg.numClasses)));

  for (int64_t i = 0; i < cfg.depth; ++i) {
    tokens = mb.callBlock("dig", "blocks." + std::to_string(i) + ".", {tokens, c},
                          [&](FunctionBuilder &g, ValueRange a) -> SmallVector<Value> {
      Value xb = a[0], cb = a[1];
      SmallVector<Value> m = adaLN(g, cb, "", d, 6, false);
      Value h = g.modulate(g.layerNorm(xb), m[0], m[1]);
      Value q = g.linear(h, g.param("attn.q_proj.weight", {dk, d}));
      Value k = g.linear(h, g.param("attn.k_proj.weight", {dk, d}));
      Value v = g.linear(h, g.param("attn.v_proj.weight", {dv, d}));
      Value gate = g.linear(h, g.param("attn.g_proj.weight", {dv, d}));
      Value gk = g.linear(g.linear(h, g.param("attn.gk_proj.0.weight", {16, d})),
                          g.param("attn.gk_proj.1.weight", {dk, 16}),
                          g.param("attn.gk_proj.1.bias", {dk}));
      Value o = g.b.create<GlaOp>(g.loc, q, k, v, gk, g.b.getI64IntegerAttr(heads), FloatAttr(),
                                  g.b.getF64FloatAttr(16.0), g.b.getI64IntegerAttr(16));
      o = g.rmsNorm(o, g.param("attn.g_norm_swish_gate.weight", {dv / heads}), dv / heads);
      o = g.linear(g.mul(o, g.silu(gate)), g.param("attn.o_proj.weight", {d, dv}));
      xb = g.gatedResidual(xb, m[2], o);
      h = g.modulate(g.layerNorm(xb), m[3], m[4]);
      h = g.swiglu(h, g.param("mlp.gate_proj.weight", {2 * ffn, d}), Value(),
                   g.param("mlp.down_proj.weight", {d, ffn}));
      xb = g.gatedResidual(xb, m[5], h);
      return {g.b.create<DepthwiseConv2dOp>(g.loc, xb, g.param("dw_conv.weight", {d, 1, 3, 3}),
                                            g.param("dw_conv.bias", {d}),
                                            g.b.getDenseI64ArrayAttr({grid, grid}))};
    })[0];
    tokens = f.b.create<ReorderTokensOp>(
        f.loc, tokens, f.b.getDenseI64ArrayAttr({grid, grid}),
        ScanOrderAttr::get(context, digOrder(i)), ScanOrderAttr::get(context, digOrder(i + 1)));
  }

  int64_t outChannels = cfg.learnSigma ? 2 * cfg.channels : cfg.channels;
  Value out = finalLayer(f, tokens, c, cfg.patch, outChannels, {grid, grid}, false, false);
  Value image = unpatchify(f, out, {grid, grid}, cfg.patch);
  OpBuilder &b = f.b;
  auto description = b.getDictionaryAttr({
      named(b, "name", b.getStringAttr(cfg.name)),
      named(b, "family", b.getStringAttr("dig")),
      named(b, "in_channels", b.getI64IntegerAttr(cfg.channels)),
      named(b, "out_channels", b.getI64IntegerAttr(outChannels)),
      named(b, "learn_sigma", b.getBoolAttr(cfg.learnSigma)),
      named(b, "num_classes", b.getI64IntegerAttr(cfg.numClasses)),
      named(b, "latent_size", b.getI64IntegerAttr(cfg.latent)),
      named(b, "patch_size", b.getI64IntegerAttr(cfg.patch)),
      named(b, "objective", b.getStringAttr("ddpm")),
      named(b, "guidance", b.getStringAttr("dit_3channel")),
  });
  return mb.finish(image, description);
}

//===----------------------------------------------------------------------===//
// MicroDiT
//===----------------------------------------------------------------------===//

struct MicroDitConfig {
  std::string name;
  int64_t latent = 32, patch = 2, channels = 4, dim = 1024, depth = 28, headDim = 64;
  int64_t multipleOf = 256, captionChannels = 1024, captionTokens = 77;
  int64_t mixerDepth = 6, mixerDim = 768, experts = 8, expertsEveryN = 2;
  double capacity = 2.0, posInterpScale = 1.0, maskRatio = 0.0;
  double qkvLo = 0.5, qkvHi = 1.0, mlpLo = 0.5, mlpHi = 4.0;
  double mixerQkvRatio = 1.0, mixerMlpRatio = 4.0;
};

int64_t roundUp(int64_t value, int64_t multiple) {
  return multiple * ((value + multiple - 1) / multiple);
}

/// numpy.linspace(lo, hi, n)[i]: i·step + lo in float64, the last element
/// exactly hi.
double linspace(double lo, double hi, int64_t n, int64_t i) {
  if (n == 1)
    return lo;
  if (i == n - 1)
    return hi;
  double step = (hi - lo) / static_cast<double>(n - 1);
  return static_cast<double>(i) * step + lo;
}

/// The shape of one MicroDiT block (spec 4.2, 4.4).
struct MicroBlockShape {
  int64_t width, attnWidth, hidden;
  bool moe;
};

MicroBlockShape microBlockShape(const MicroDitConfig &cfg, int64_t width, double qkvRatio,
                                double mlpRatio, bool moe) {
  MicroBlockShape s;
  s.width = width;
  s.moe = moe;
  int64_t twoHeads = 2 * cfg.headDim;
  s.attnWidth = qkvRatio == 1.0
                    ? width
                    : twoHeads * ((static_cast<int64_t>(width * qkvRatio) + twoHeads - 1) / twoHeads);
  int64_t mlpHidden = static_cast<int64_t>(width * mlpRatio);
  s.hidden = moe ? roundUp(mlpHidden, cfg.multipleOf)
                 : roundUp(static_cast<int64_t>(2.0 * mlpHidden / 3.0), cfg.multipleOf);
  return s;
}

/// MicroDiT's self-attention: bias-free qkv and proj, q/k LayerNorm over the
/// whole attention width without affine.
Value microSelfAttention(FunctionBuilder &g, Value h, const std::string &prefix, int64_t width,
                         int64_t attnWidth, int64_t headDim) {
  SmallVector<Value> qkv =
      g.split(g.linear(h, g.param(prefix + "qkv.weight", {3 * attnWidth, width})), 3);
  Value o = g.attention(g.layerNorm(qkv[0]), g.layerNorm(qkv[1]), qkv[2], attnWidth / headDim);
  return g.linear(o, g.param(prefix + "proj.weight", {width, attnWidth}));
}

OwningOpRef<ModuleOp> buildMicroDit(MLIRContext *context, const MicroDitConfig &cfg,
                                    int64_t batch) {
  ModelBuilder mb(context, cfg.name);
  FunctionBuilder &f = *mb.forward;
  int64_t d = cfg.dim, grid = cfg.latent / cfg.patch, tokensCount = grid * grid;
  int64_t kept = static_cast<int64_t>(tokensCount * (1.0 - cfg.maskRatio));
  Value x = mb.input("x", f.tensor({batch, cfg.channels, cfg.latent, cfg.latent}));
  Value t = mb.input("t", f.tensor({batch}));
  Value captions =
      mb.input("captions", f.tensor({batch, cfg.captionTokens, cfg.captionChannels}));
  Value keep;
  if (cfg.maskRatio > 0)
    keep = mb.input("keep", f.tensor({batch, kept}, f.b.getI32Type()));

  Value tokens = embedPatches(f, x, d, cfg.patch, cfg.posInterpScale, /*posIsParameter=*/false);
  Value tEmb = embedTimestep(f, t, d, 512, Activation::GeluTanh);

  // Caption projection: fc1 -> GELU(tanh) -> LayerNorm(weight) -> fc2.
  auto mlpWithNorm = [&](Value in, const std::string &prefix, int64_t inWidth) {
    Value h = f.linear(in, f.param(prefix + "fc1.weight", {d, inWidth}), f.param(prefix + "fc1.bias", {d}));
    h = f.layerNorm(f.gelu(h, true), f.param(prefix + "norm.weight", {d}));
    return f.linear(h, f.param(prefix + "fc2.weight", {d, d}), f.param(prefix + "fc2.bias", {d}));
  };
  Value y = mlpWithNorm(captions, "y_embedder.y_proj.", cfg.captionChannels);
  int64_t refinerHidden = roundUp(static_cast<int64_t>(2.0 * (d * 4) / 3.0), cfg.multipleOf);
  y = mb.callBlock("caption_refiner", "y_emb_preprocess.", {y},
                   [&](FunctionBuilder &g, ValueRange a) -> SmallVector<Value> {
    Value yb = a[0];
    yb = g.add(yb, microSelfAttention(g, g.layerNorm(yb, g.param("norm1.weight", {d})), "attn.", d, d,
                                      cfg.headDim));
    Value h = g.layerNorm(yb, g.param("norm2.weight", {d}));
    h = g.swiglu(h, g.param("mlp.w1.weight", {refinerHidden, d}),
                 g.param("mlp.w2.weight", {refinerHidden, d}), g.param("mlp.w3.weight", {d, refinerHidden}));
    return {g.add(yb, h)};
  })[0];
  Value pooled = mlpWithNorm(f.b.create<TokenMeanOp>(f.loc, y), "pooled_y_emb_process.", d);
  Value c = f.add(tEmb, pooled);

  auto block = [&](const std::string &kindBase, const std::string &prefix,
                   const MicroBlockShape &s, Value xIn, Value yIn) {
    std::string kind = kindBase + (s.moe ? "_moe" : "_dense");
    return mb.callBlock(kind, prefix, {xIn, yIn, c},
                        [&](FunctionBuilder &g, ValueRange a) -> SmallVector<Value> {
      Value xb = a[0], yb = a[1], cb = a[2];
      int64_t w = s.width;
      SmallVector<Value> m = adaLN(g, cb, "", w, 6, true);
      Value h = g.modulate(g.layerNorm(xb, g.param("norm1.weight", {w})), m[0], m[1]);
      xb = g.gatedResidual(xb, m[2], microSelfAttention(g, h, "attn.", w, s.attnWidth, cfg.headDim));
      h = g.layerNorm(xb, g.param("norm2.weight", {w}));
      Value q = g.layerNorm(g.linear(h, g.param("cross_attn.q_linear.weight", {w, w})));
      SmallVector<Value> kv = g.split(g.linear(yb, g.param("cross_attn.kv_linear.weight", {2 * w, w})), 2);
      Value o = g.attention(q, g.layerNorm(kv[0]), kv[1], w / cfg.headDim);
      xb = g.add(xb, g.linear(o, g.param("cross_attn.proj.weight", {w, w})));
      h = g.modulate(g.layerNorm(xb, g.param("norm3.weight", {w})), m[3], m[4]);
      Value ff;
      if (s.moe) {
        int64_t e = cfg.experts;
        ff = g.b.create<MoeOp>(
            g.loc, h, g.param("mlp.gate.weight", {e, w}),
            ValueRange{g.param("mlp.w1", {e, w, s.hidden}), g.param("mlp.w2", {e, s.hidden, w})},
            ExpertChoiceAttr::get(context, llvm::APFloat(cfg.capacity)),
            ActivationAttr::get(context, Activation::Gelu),
            WeightLayoutAttr::get(context, WeightLayout::InOut));
      } else {
        ff = g.swiglu(h, g.param("mlp.w1.weight", {s.hidden, w}), g.param("mlp.w2.weight", {s.hidden, w}),
                      g.param("mlp.w3.weight", {w, s.hidden}));
      }
      return {g.gatedResidual(xb, m[5], ff)};
    })[0];
  };

  bool mapped = cfg.mixerDim != d;
  auto project = [&](Value in, const std::string &prefix, int64_t from, int64_t to) {
    Value h = f.layerNorm(in, f.param(prefix + "0.weight", {from}));
    return f.linear(h, f.param(prefix + "1.weight", {to, from}));
  };
  Value xm = mapped ? project(tokens, "patch_mixer_map_xin.", d, cfg.mixerDim) : tokens;
  Value ym = mapped ? project(y, "patch_mixer_map_y.", d, cfg.mixerDim) : y;
  for (int64_t i = 0; i < cfg.mixerDepth; ++i) {
    bool moe = i >= 1 && (i + 1) % cfg.expertsEveryN == 0;
    xm = block("microdit_mixer", "patch_mixer." + std::to_string(i) + ".",
               microBlockShape(cfg, cfg.mixerDim, cfg.mixerQkvRatio, cfg.mixerMlpRatio, moe), xm, ym);
  }
  if (keep)
    xm = f.b.create<MaskTokensOp>(f.loc, xm, keep);
  tokens = mapped ? project(xm, "patch_mixer_map_xout.", cfg.mixerDim, d) : xm;

  for (int64_t i = 0; i < cfg.depth; ++i) {
    bool moe = i < cfg.depth - 1 && (i + 1) % cfg.expertsEveryN == 0;
    auto s = microBlockShape(cfg, d, linspace(cfg.qkvLo, cfg.qkvHi, cfg.depth, i),
                             linspace(cfg.mlpLo, cfg.mlpHi, cfg.depth, i), moe);
    tokens = block("microdit", "blocks." + std::to_string(i) + ".", s, tokens, y);
  }

  Value out = finalLayer(f, tokens, c, cfg.patch, cfg.channels, {grid, grid}, true, true);
  if (keep)
    out = f.b.create<UnmaskTokensOp>(f.loc, out, keep, f.b.getI64IntegerAttr(tokensCount),
                                     f.b.getStringAttr("mask_token"));
  Value image = unpatchify(f, out, {grid, grid}, cfg.patch);
  OpBuilder &b = f.b;
  auto description = b.getDictionaryAttr({
      named(b, "name", b.getStringAttr(cfg.name)),
      named(b, "family", b.getStringAttr("microdit")),
      named(b, "in_channels", b.getI64IntegerAttr(cfg.channels)),
      named(b, "out_channels", b.getI64IntegerAttr(cfg.channels)),
      named(b, "learn_sigma", b.getBoolAttr(false)),
      named(b, "num_classes", b.getI64IntegerAttr(0)),
      named(b, "latent_size", b.getI64IntegerAttr(cfg.latent)),
      named(b, "patch_size", b.getI64IntegerAttr(cfg.patch)),
      named(b, "caption_tokens", b.getI64IntegerAttr(cfg.captionTokens)),
      named(b, "caption_channels", b.getI64IntegerAttr(cfg.captionChannels)),
      named(b, "mask_ratio", b.getF64FloatAttr(cfg.maskRatio)),
      named(b, "objective", b.getStringAttr("edm")),
      named(b, "sigma_data", b.getF64FloatAttr(0.9)),
      named(b, "guidance", b.getStringAttr("all_channels")),
      // MicroDiT checkpoints carry the zero mask_token buffer even when the
      // model runs unmasked; the runtime accepts and checks it.
      named(b, "zero_state", b.getDictionaryAttr({named(
                                 b, "mask_token",
                                 b.getDenseI64ArrayAttr({1, 1, cfg.patch * cfg.patch * cfg.channels}))})),
  });
  return mb.finish(image, description);
}

//===----------------------------------------------------------------------===//
// The zoo
//===----------------------------------------------------------------------===//

struct Size {
  int64_t depth, hidden, heads;
};

const std::map<std::string, Size> &ditSizes() {
  static const std::map<std::string, Size> sizes = {
      {"s", {12, 384, 6}}, {"b", {12, 768, 12}}, {"l", {24, 1024, 16}}, {"xl", {28, 1152, 16}}};
  return sizes;
}


/// Applies the architecture overrides shared by DiT, DiT-MoE and DiG, with
/// errors that name the option and the rule.
bool applyOverrides(const diffc::frontends::ZooOptions &o, int64_t &depth, int64_t &hidden,
                    int64_t &heads, int64_t &latent, int64_t patch, std::string &error) {
  depth = o.depth.value_or(depth);
  hidden = o.hidden.value_or(hidden);
  heads = o.heads.value_or(heads);
  latent = o.latentSize.value_or(latent);
  if (depth < 1 || hidden < 4 || heads < 1) {
    error = "--depth, --hidden and --heads must be positive (hidden at least 4)";
    return false;
  }
  if (hidden % 4) {
    error = "--hidden " + std::to_string(hidden) + " must be a multiple of 4 (the 2D position table)";
    return false;
  }
  if (hidden % heads) {
    error = "--hidden " + std::to_string(hidden) + " is not divisible by --heads " + std::to_string(heads);
    return false;
  }
  if (latent < patch || latent % patch) {
    error = "--latent-size " + std::to_string(latent) + " must be a positive multiple of the patch size " +
            std::to_string(patch);
    return false;
  }
  return true;
}

} // namespace

namespace diffc::frontends {

const std::vector<ZooEntry> &zooEntries() {
  static const std::vector<ZooEntry> entries = [] {
    std::vector<ZooEntry> e;
    for (const char *size : {"s", "b", "l", "xl"})
      for (int p : {2, 4, 8})
        e.push_back({llvm::formatv("dit-{0}/{1}", size, p).str(),
                     "DiT, class-conditional, 256 or 512 px (--image-size)"});
    for (const char *name : {"dit-moe-s/2-8e2a", "dit-moe-s/2-16e2a", "dit-moe-b/2-8e2a",
                             "dit-moe-l/2-8e2a", "dit-moe-xl/2-8e2a", "dit-moe-g/2-16e2a"})
      e.push_back({name, "DiT-MoE: top-2 SwiGLU experts + shared expert (--attention plain|qk-norm)"});
    e.push_back({"microdit-tiny/2", "MicroDiT Tiny: patch-mixer, layer-wise scaling, expert-choice MoE"});
    e.push_back({"microdit-xl/2", "MicroDiT XL (1.16B): patch-mixer, layer-wise scaling, expert-choice MoE"});
    for (const char *size : {"s", "b", "l", "xl"})
      e.push_back({llvm::formatv("dig-{0}/2", size).str(),
                   "DiG: gated linear attention with the four-direction scan"});
    e.push_back({"dit-moe-fmnist",
                 "the project's default: a small DiT-MoE for 32x32 Fashion-MNIST, 10 classes"});
    return e;
  }();
  return entries;
}

OwningOpRef<ModuleOp> importZooModel(MLIRContext *context, const std::string &name,
                                     const ZooOptions &options, std::string &error) {
  context->loadDialect<DitDialect, func::FuncDialect>();
  auto fail = [&](const std::string &message) {
    error = message;
    return OwningOpRef<ModuleOp>();
  };
  auto known = [&] {
    std::string s = "known models:";
    for (const ZooEntry &e : zooEntries())
      s += " " + e.name;
    return s;
  };
  if (options.batch < 1)
    return fail("--batch must be at least 1, got " + std::to_string(options.batch));
  std::string lower = llvm::StringRef(name).lower();
  auto latentFor = [&](int64_t defaultImage) -> std::optional<int64_t> {
    int64_t image = options.imageSize.value_or(defaultImage);
    if (image != 256 && image != 512) {
      error = "--image-size must be 256 or 512 for " + name + ", got " + std::to_string(image);
      return std::nullopt;
    }
    return image / 8;
  };
  auto rejectUnused = [&](bool used, const char *option) {
    if (!used)
      error = std::string(option) + " does not apply to " + name;
    return used;
  };

  llvm::StringRef rest(lower);
  OwningOpRef<ModuleOp> module;
  if (rest.consume_front("dit-moe-")) {
    if (options.maskRatio && !rejectUnused(false, "--mask-ratio"))
      return fail(error);
    DitConfig cfg;
    cfg.name = lower;
    int64_t batch = options.batch;
    if (rest == "fmnist") {
      cfg.depth = 6, cfg.hidden = 96, cfg.heads = 3, cfg.patch = 4, cfg.channels = 1;
      cfg.latent = options.imageSize.value_or(32);
      cfg.numClasses = options.numClasses.value_or(10);
      cfg.experts = 4;
      if (cfg.latent % cfg.patch || cfg.latent < cfg.patch)
        return fail("--image-size must be a positive multiple of 4 for dit-moe-fmnist, got " +
                    std::to_string(cfg.latent));
    } else {
      auto [sizePart, expertPart] = rest.split("/2-");
      static const std::map<std::string, Size> moeSizes = {
          {"s", {12, 384, 6}}, {"b", {12, 768, 12}}, {"l", {24, 1024, 16}},
          {"xl", {28, 1152, 16}}, {"g", {40, 1408, 16}}};
      auto size = moeSizes.find(sizePart.str());
      int64_t experts = 0;
      bool ok = size != moeSizes.end() && expertPart.consume_back("e2a") &&
                !expertPart.getAsInteger(10, experts);
      static const std::set<std::string> published = {"s/8", "s/16", "b/8", "l/8", "xl/8", "g/16"};
      if (!ok || !published.count(sizePart.str() + "/" + std::to_string(experts)))
        return fail("unknown model '" + name + "'; " + known());
      cfg.depth = size->second.depth, cfg.hidden = size->second.hidden, cfg.heads = size->second.heads;
      cfg.experts = experts;
      auto latent = latentFor(256);
      if (!latent)
        return fail(error);
      cfg.latent = *latent;
      cfg.numClasses = options.numClasses.value_or(1000);
      // XL and G were trained with rectified flow and the q/k-norm attention.
      bool large = sizePart == "xl" || sizePart == "g";
      cfg.qkNorm = large;
      cfg.objective = large ? "rf" : "ddpm";
    }
    if (!applyOverrides(options, cfg.depth, cfg.hidden, cfg.heads, cfg.latent, cfg.patch, error))
      return fail(error);
    cfg.experts = options.experts.value_or(cfg.experts);
    if (cfg.experts < cfg.topK)
      return fail("--experts " + std::to_string(cfg.experts) + " must be at least top_k = " +
                  std::to_string(cfg.topK));
    cfg.learnSigma = options.learnSigma.value_or(true);
    cfg.balanceCoef = options.balanceCoef.value_or(0.01);
    if (cfg.balanceCoef < 0)
      return fail("--balance-coef must be >= 0, got " + std::to_string(cfg.balanceCoef));
    if (options.attention) {
      if (*options.attention == "plain")
        cfg.qkNorm = false;
      else if (*options.attention == "qk-norm")
        cfg.qkNorm = true;
      else
        return fail("--attention must be 'plain' or 'qk-norm', got '" + *options.attention + "'");
    }
    if (cfg.numClasses < 1)
      return fail("--num-classes must be at least 1, got " + std::to_string(cfg.numClasses));
    module = buildDit(context, cfg, batch);
  } else if (rest.consume_front("dit-")) {
    if (options.attention || options.balanceCoef || options.maskRatio)
      return fail(std::string(options.attention ? "--attention" : options.balanceCoef ? "--balance-coef" : "--mask-ratio") +
                  " does not apply to " + name);
    auto [sizePart, patchPart] = rest.split('/');
    auto size = ditSizes().find(sizePart.str());
    int64_t patch = 0;
    if (size == ditSizes().end() || patchPart.getAsInteger(10, patch) ||
        (patch != 2 && patch != 4 && patch != 8))
      return fail("unknown model '" + name + "'; " + known());
    DitConfig cfg;
    cfg.name = lower;
    cfg.depth = size->second.depth, cfg.hidden = size->second.hidden, cfg.heads = size->second.heads;
    cfg.patch = patch;
    auto latent = latentFor(256);
    if (!latent)
      return fail(error);
    cfg.latent = *latent;
    if (options.experts)
      return fail("--experts does not apply to " + name);
    if (!applyOverrides(options, cfg.depth, cfg.hidden, cfg.heads, cfg.latent, cfg.patch, error))
      return fail(error);
    cfg.learnSigma = options.learnSigma.value_or(true);
    cfg.numClasses = options.numClasses.value_or(1000);
    if (cfg.numClasses < 1)
      return fail("--num-classes must be at least 1, got " + std::to_string(cfg.numClasses));
    module = buildDit(context, cfg, options.batch);
  } else if (rest.consume_front("dig-")) {
    if (options.attention || options.balanceCoef || options.maskRatio)
      return fail(std::string(options.attention ? "--attention" : options.balanceCoef ? "--balance-coef" : "--mask-ratio") +
                  " does not apply to " + name);
    static const std::map<std::string, Size> digSizes = {
        {"s", {12, 384, 6}}, {"b", {12, 768, 12}}, {"l", {24, 1024, 16}}, {"xl", {28, 1152, 18}}};
    auto [sizePart, patchPart] = rest.split('/');
    auto size = digSizes.find(sizePart.str());
    if (size == digSizes.end() || patchPart != "2")
      return fail("unknown model '" + name + "'; " + known());
    DigConfig cfg;
    cfg.name = lower;
    cfg.depth = size->second.depth, cfg.hidden = size->second.hidden, cfg.heads = size->second.heads;
    auto latent = latentFor(256);
    if (!latent)
      return fail(error);
    cfg.latent = *latent;
    if (options.experts)
      return fail("--experts does not apply to " + name);
    if (!applyOverrides(options, cfg.depth, cfg.hidden, cfg.heads, cfg.latent, cfg.patch, error))
      return fail(error);
    if (cfg.depth % 4)
      return fail("--depth " + std::to_string(cfg.depth) +
                  " must be a multiple of 4: the scan order has period 4 and the final layer "
                  "expects row-major tokens");
    if ((cfg.hidden / 2) % cfg.heads)
      return fail("--hidden/2 = " + std::to_string(cfg.hidden / 2) + " (the key width) is not divisible by --heads " +
                  std::to_string(cfg.heads));
    cfg.learnSigma = options.learnSigma.value_or(true);
    cfg.numClasses = options.numClasses.value_or(1000);
    if (cfg.numClasses < 1)
      return fail("--num-classes must be at least 1, got " + std::to_string(cfg.numClasses));
    module = buildDig(context, cfg, options.batch);
  } else if (rest.consume_front("microdit-")) {
    if (options.attention || options.balanceCoef || options.numClasses || options.learnSigma)
      return fail(std::string(options.attention ? "--attention" : options.balanceCoef ? "--balance-coef" : options.numClasses ? "--num-classes" : "--learn-sigma") +
                  " does not apply to " + name + " (a text-to-image model with EDM)");
    MicroDitConfig cfg;
    cfg.name = lower;
    if (rest == "xl/2") {
      // Defaults are the XL configuration.
    } else if (rest == "tiny/2") {
      cfg.dim = 512, cfg.depth = 16, cfg.headDim = 32, cfg.mixerDepth = 4, cfg.mixerDim = 512;
    } else {
      return fail("unknown model '" + name + "'; " + known());
    }
    auto latent = latentFor(256);
    if (!latent)
      return fail(error);
    cfg.latent = *latent;
    cfg.posInterpScale = cfg.latent == 64 ? 2.0 : 1.0;
    cfg.latent = options.latentSize.value_or(cfg.latent);
    cfg.depth = options.depth.value_or(cfg.depth);
    cfg.dim = options.hidden.value_or(cfg.dim);
    cfg.headDim = options.headDim.value_or(cfg.headDim);
    cfg.mixerDepth = options.mixerDepth.value_or(cfg.mixerDepth);
    cfg.mixerDim = options.mixerHidden.value_or(cfg.mixerDim);
    cfg.captionChannels = options.captionChannels.value_or(cfg.captionChannels);
    cfg.captionTokens = options.captionTokens.value_or(cfg.captionTokens);
    cfg.experts = options.experts.value_or(cfg.experts);
    if (options.heads)
      return fail("--heads does not apply to " + name + " (heads follow --head-dim)");
    if (cfg.depth < 2 || cfg.mixerDepth < 0 || cfg.headDim < 1 || cfg.captionChannels < 1 ||
        cfg.captionTokens < 1 || cfg.experts < 1 || cfg.latent < cfg.patch || cfg.latent % cfg.patch)
      return fail("MicroDiT overrides out of range: --depth >= 2, --mixer-depth >= 0, positive "
                  "--head-dim, --caption-channels, --caption-tokens, --experts, and --latent-size a "
                  "multiple of 2");
    for (int64_t width : {cfg.dim, cfg.mixerDim})
      if (width % 4 || width % cfg.headDim)
        return fail("--hidden and --mixer-hidden must be multiples of 4 and of --head-dim " +
                    std::to_string(cfg.headDim));
    cfg.maskRatio = options.maskRatio.value_or(0.0);
    int64_t tokens = (cfg.latent / cfg.patch) * (cfg.latent / cfg.patch);
    if (cfg.maskRatio < 0 || cfg.maskRatio >= 1 ||
        static_cast<int64_t>(tokens * (1.0 - cfg.maskRatio)) < 1)
      return fail("--mask-ratio must be in [0, 1) and keep at least one of the " +
                  std::to_string(tokens) + " tokens, got " + std::to_string(cfg.maskRatio));
    module = buildMicroDit(context, cfg, options.batch);
  } else {
    return fail("unknown model '" + name + "'; " + known());
  }

  if (failed(verify(*module))) {
    error = "internal error: the generated IR for " + name + " does not verify";
    return {};
  }
  return module;
}

} // namespace diffc::frontends
