//===- KernAutodiff.cpp - reverse mode over the kernel-level program ------===//
//
// Builds @train_step from @forward: the objective's loss on the forward's
// output, then one kern.vjp per op a parameter reaches, in reverse program
// order. VJP rules are per op: which operand slots its backward kernel
// differentiates, and which slots' gradient is the incoming gradient itself
// (residual paths, which need no kernel).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"

namespace diffc {
#define GEN_PASS_DEF_KERNAUTODIFF
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// How an op is differentiated: its operand slots in ODS order (null for an
/// absent optional operand), the slots its backward kernel computes, and the
/// slots whose gradient is the incoming gradient unchanged.
struct Rule {
  SmallVector<Value> slots;
  SmallVector<int64_t> kernel;
  SmallVector<int64_t> alias;
};

/// The VJP rule of `op`, nullopt if it has none, or a rule with no
/// differentiable slots for ops gradients do not cross (the time embedding,
/// constant tables).
std::optional<Rule> ruleFor(Operation *op) {
  Rule r;
  bool known = true;
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](kern::GemmOp o) {
        r.slots = {o.getInput(), o.getWeight(), o.getBias(), o.getResidual(), o.getGate()};
        r.kernel = {0, 1, 2, 4};
        r.alias = {3};
      })
      .Case([&](kern::SwiGluOp o) {
        r.slots = {o.getInput(), o.getGateWeight(), o.getUpWeight(), o.getDownWeight(),
                   o.getResidual(), o.getResidualGate()};
        r.kernel = {0, 1, 2, 3, 5};
        r.alias = {4};
      })
      .Case([&](kern::NormOp o) {
        // The residual form is made after the backward (kern-fuse-residual-norm).
        known = !o.getResidual();
        r.slots = {o.getInput(), o.getWeight(), o.getBias(), o.getShift(), o.getScale(), o.getSiluGate()};
        r.kernel = {0, 1, 2, 3, 4, 5};
      })
      .Case([&](kern::MoeOp o) {
        ValueRange w = o.getExpertWeights();
        r.slots = {o.getInput(), o.getRouter(), w[0], w[1], w.size() > 2 ? w[2] : Value(),
                   o.getSharedGate(), o.getSharedUp(), o.getSharedDown(), o.getResidual(),
                   o.getResidualGate()};
        r.kernel = {0, 1, 2, 3, 4, 5, 6, 7, 9};
        r.alias = {8};
      })
      .Case([&](kern::DwConvOp o) {
        r.slots = {o.getInput(), o.getWeight(), o.getBias()};
        r.kernel = {0, 1, 2};
      })
      .Case([&](kern::PatchEmbedOp o) {
        r.slots = {o.getInput(), o.getWeight(), o.getBias(), o.getPositions()};
        r.kernel = {0, 1, 2};
      })
      .Case([&](kern::CastOp o) {
        r.slots = {o.getInput()};
        r.kernel = {0};
      })
      .Case<dit::AttentionOp, kern::AttentionOp>([&](Operation *o) {
        r.slots = {o->getOperand(0), o->getOperand(1), o->getOperand(2)};
        r.kernel = {0, 1, 2};
      })
      .Case([&](dit::GlaOp o) {
        r.slots = {o.getQuery(), o.getKey(), o.getValue(), o.getGateLogits()};
        r.kernel = {0, 1, 2, 3};
      })
      .Case<dit::UnpatchifyOp, dit::TokenMeanOp, dit::ReorderTokensOp, dit::SiluOp, dit::GeluOp,
            dit::SplitOp>([&](Operation *o) {
        r.slots = {o->getOperand(0)};
        r.kernel = {0};
      })
      .Case([&](dit::LabelEmbedOp o) {
        r.slots = {o.getLabels(), o.getTable()};
        r.kernel = {1};
      })
      .Case<dit::MaskTokensOp, dit::UnmaskTokensOp>([&](Operation *o) {
        r.slots = {o->getOperand(0), o->getOperand(1)};
        r.kernel = {0};
      })
      .Case([&](dit::AddOp o) {
        r.slots = {o.getLhs(), o.getRhs()};
        r.alias = {0};
        if (o.getLhs().getType() == o.getRhs().getType())
          r.alias.push_back(1);
        else
          r.kernel = {1};
      })
      .Case([&](dit::MulOp o) {
        r.slots = {o.getLhs(), o.getRhs()};
        r.kernel = {0, 1};
      })
      .Case([&](dit::ModulateOp o) {
        r.slots = {o.getInput(), o.getShift(), o.getScale()};
        r.kernel = {0, 1, 2};
      })
      .Case([&](dit::GatedResidualOp o) {
        r.slots = {o.getResidual(), o.getGate(), o.getUpdate()};
        r.kernel = {1, 2};
        r.alias = {0};
      })
      .Case<dit::SinCosPosEmbedOp, dit::TimestepEmbedOp>([&](Operation *o) {
        r.slots.assign(o->getOperands().begin(), o->getOperands().end());
      })
      .Default([&](Operation *) { known = false; });
  if (!known)
    return std::nullopt;
  return r;
}

bool isFloatTensor(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

struct KernAutodiff : diffc::impl::KernAutodiffBase<KernAutodiff> {
  using KernAutodiffBase::KernAutodiffBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto forward = module.lookupSymbol<func::FuncOp>("forward");
    if (!forward) {
      module.emitError() << "kern-autodiff needs a @forward function";
      return signalPassFailure();
    }
    std::string objective = this->objective;
    if (objective.empty())
      if (auto model = module->getAttrOfType<DictionaryAttr>(dit::DitDialect::kModelAttrName))
        if (auto o = model.getAs<StringAttr>("objective"))
          objective = o.str();
    bool rematNorms = false, rematProducts = false;
    SmallVector<StringRef> rematParts;
    StringRef(remat).split(rematParts, ',');
    for (StringRef part : rematParts) {
      if (part == "norms")
        rematNorms = true;
      else if (part == "products")
        rematProducts = true;
      else if (part != "none" || rematParts.size() != 1) {
        module.emitError() << "kern-autodiff: remat must be none, or norms and/or products separated "
                              "by a comma, got '"
                           << remat << "'";
        return signalPassFailure();
      }
    }
    if (objective != "ddpm" && objective != "rf" && objective != "edm") {
      module.emitError() << "kern-autodiff: objective must be ddpm, rf or edm, got '" << objective
                         << "'";
      return signalPassFailure();
    }

    OpBuilder b(module.getContext());
    b.setInsertionPoint(forward);
    auto train = cast<func::FuncOp>(b.clone(*forward));
    train.setSymName("train_step");
    Block &entry = train.getBody().front();
    Operation *ret = entry.getTerminator();
    Value out = ret->getOperand(0);
    auto outType = cast<RankedTensorType>(out.getType());
    Location loc = train.getLoc();

    auto inputNamed = [&](StringRef name) -> Value {
      for (BlockArgument arg : entry.getArguments())
        if (auto n = train.getArgAttrOfType<StringAttr>(arg.getArgNumber(), dit::DitDialect::kInputAttrName))
          if (n.getValue() == name)
            return arg;
      return {};
    };
    auto addInput = [&](StringRef name, Type type) {
      train.insertArgument(train.getNumArguments(), type,
                           b.getDictionaryAttr(b.getNamedAttr(dit::DitDialect::kInputAttrName,
                                                              b.getStringAttr(name))),
                           loc);
      return entry.getArguments().back();
    };
    Value x = inputNamed("x");
    if (!x) {
      forward.emitError() << "kern-autodiff needs a model input named 'x'";
      return signalPassFailure();
    }
    auto xType = cast<RankedTensorType>(x.getType());
    int64_t batch = xType.getDimSize(0);

    // The objective's loss on the forward output.
    b.setInsertionPoint(ret);
    Operation *loss;
    if (objective == "ddpm") {
      Value x0 = addInput("x_start", xType), noise = addInput("noise", xType);
      Value steps = addInput("timesteps", RankedTensorType::get({batch}, b.getI32Type()));
      loss = b.create<dit::DdpmLossOp>(loc, out, x0, x, noise, steps, b.getI64IntegerAttr(1000));
    } else if (objective == "rf") {
      Value x0 = addInput("x_start", xType), noise = addInput("noise", xType);
      loss = b.create<dit::RfLossOp>(loc, out, x0, noise);
    } else {
      Value xNoisy = addInput("x_noisy", xType), x0 = addInput("x_start", xType);
      Value sigma = addInput("sigma", RankedTensorType::get({batch}, b.getF32Type()));
      double sigmaData = 0.9;
      if (auto model = module->getAttrOfType<DictionaryAttr>(dit::DitDialect::kModelAttrName))
        if (auto sd = model.getAs<FloatAttr>("sigma_data"))
          sigmaData = sd.getValueAsDouble();
      int64_t patch = 2;
      if (auto model = module->getAttrOfType<DictionaryAttr>(dit::DitDialect::kModelAttrName))
        if (auto p = model.getAs<IntegerAttr>("patch_size"))
          patch = p.getInt();
      loss = b.create<dit::EdmLossOp>(loc, out, xNoisy, x0, sigma, inputNamed("keep"),
                                      b.getF64FloatAttr(sigmaData), b.getI64IntegerAttr(patch));
    }
    (void)outType;

    // Which values carry a gradient: parameters and what they reach.
    llvm::DenseSet<Value> needs;
    SmallVector<BlockArgument> params;
    for (BlockArgument arg : entry.getArguments())
      if (train.getArgAttr(arg.getArgNumber(), dit::DitDialect::kParamAttrName) && isFloatTensor(arg)) {
        needs.insert(arg);
        params.push_back(arg);
      }
    SmallVector<Operation *> ops;
    for (Operation &op : entry.without_terminator())
      if (&op != loss)
        ops.push_back(&op);
    for (Operation *op : ops) {
      std::optional<Rule> rule = ruleFor(op);
      if (!rule) {
        auto diag = op->emitError() << "kern-autodiff: no VJP rule for " << op->getName();
        if (auto norm = dyn_cast<kern::NormOp>(op); norm && norm.getResidual())
          diag << " with a residual (kern-fuse-residual-norm forms it after kern-autodiff)";
        return signalPassFailure();
      }
      bool reached = false;
      for (int64_t s : llvm::concat<int64_t>(rule->kernel, rule->alias))
        if (rule->slots[s] && needs.count(rule->slots[s]))
          reached = true;
      if (reached)
        for (Value r : op->getResults())
          needs.insert(r);
    }
    if (!needs.count(out)) {
      forward.emitError() << "kern-autodiff: no parameter reaches the output";
      return signalPassFailure();
    }

    // Reverse sweep.
    llvm::DenseMap<Value, SmallVector<Value>> contributions;
    auto gradOf = [&](Value v) -> Value {
      auto it = contributions.find(v);
      if (it == contributions.end() || it->second.empty())
        return {};
      Value sum = it->second.front();
      for (Value c : ArrayRef<Value>(it->second).drop_front())
        sum = b.create<dit::AddOp>(loc, sum, c);
      it->second = {sum};
      return sum;
    };
    // remat=norms: a norm output read by a backward kernel is recomputed
    // right before it (once per backward kernel: the recomputation lives
    // only as long as that kernel needs it).
    auto rematerialise = [&](Value v) -> Value {
      auto norm = v.getDefiningOp<kern::NormOp>();
      if (!rematNorms || !norm)
        return v;
      Operation *copy = b.clone(*norm);
      copy->setAttr("kern.remat", b.getUnitAttr());
      return copy->getResult(0);
    };
    // What a forward op saves for its backward kernel, rebuilding it with
    // the results that hold those values. A dense layer with an activation
    // or a gated residual keeps its pre-activation z (unless remat names
    // products): its backward then costs two products instead of three.
    auto saveForBackward = [&](Operation *&op) -> SmallVector<Value> {
      if (auto moe = dyn_cast<kern::MoeOp>(op)) {
        std::optional<int64_t> n = moe.getActivationElements();
        if (rematProducts || !saveExpertActivations || !n || moe.getActivations())
          return {};
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(moe);
        Type type = moe.getResult().getType();
        auto saved = RankedTensorType::get({*n}, cast<RankedTensorType>(type).getElementType());
        auto keeping = b.create<kern::MoeOp>(
            moe.getLoc(), type, saved, moe.getInput(), moe.getRouter(), moe.getExpertWeights(),
            moe.getSharedGate(), moe.getSharedUp(), moe.getSharedDown(), moe.getResidual(),
            moe.getResidualGate(), moe.getRouting(), moe.getActivationAttr(), moe.getWeightLayoutAttr());
        moe.getResult().replaceAllUsesWith(keeping.getResult());
        moe.erase();
        op = keeping;
        return {keeping.getActivations()};
      }
      if (auto attention = dyn_cast<dit::AttentionOp>(op)) {
        if (!saveAttentionStatistics)
          return {};
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPoint(attention);
        auto q = cast<RankedTensorType>(attention.getQuery().getType());
        auto lse = RankedTensorType::get({q.getDimSize(0), static_cast<int64_t>(attention.getNumHeads()),
                                          q.getDimSize(1)},
                                         b.getF32Type());
        auto keeping = b.create<kern::AttentionOp>(
            attention.getLoc(), attention.getResult().getType(), lse, attention.getQuery(),
            attention.getKey(), attention.getValue(), attention.getNumHeadsAttr(),
            b.getF64FloatAttr(attention.getScaleValue()));
        attention.getResult().replaceAllUsesWith(keeping.getResult());
        attention.erase();
        op = keeping;
        return {keeping.getResult(), keeping.getLogsumexp()};
      }
      auto gemm = dyn_cast<kern::GemmOp>(op);
      if (rematProducts || !gemm || gemm.getPreactivation() ||
          (gemm.getAct() == kern::Act::None && !gemm.getGate()))
        return {};
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(gemm);
      Type type = gemm.getResult().getType();
      auto keeping = b.create<kern::GemmOp>(gemm.getLoc(), type, type, gemm.getInput(), gemm.getWeight(),
                                            gemm.getBias(), gemm.getResidual(), gemm.getGate(), gemm.getAct());
      gemm.getResult().replaceAllUsesWith(keeping.getResult());
      gemm.erase();
      op = keeping;
      return {keeping.getPreactivation()};
    };
    auto vjp = [&](Operation *forwardOp, ArrayRef<Value> slots, ArrayRef<Value> saved, ArrayRef<Value> incoming,
                   ArrayRef<int64_t> gradSlots, std::optional<double> lossWeight) {
      SmallVector<Value> inputs;
      SmallVector<int64_t> present;
      for (auto [i, v] : llvm::enumerate(slots))
        if (v) {
          inputs.push_back(rematerialise(v));
          present.push_back(static_cast<int64_t>(i));
        }
      inputs.append(saved.begin(), saved.end());
      inputs.append(incoming.begin(), incoming.end());
      SmallVector<Type> types;
      for (int64_t s : gradSlots)
        types.push_back(slots[s].getType());
      auto op = b.create<kern::VjpOp>(
          forwardOp->getLoc(), types, inputs, b.getStringAttr(forwardOp->getName().getStringRef()),
          forwardOp->getAttrDictionary(), b.getDenseI64ArrayAttr(present),
          b.getDenseI64ArrayAttr(gradSlots),
          lossWeight ? b.getF64FloatAttr(*lossWeight) : FloatAttr(),
          b.getI64IntegerAttr(static_cast<int64_t>(saved.size())), kern::ActAttr(), UnitAttr(), UnitAttr());
      return op;
    };

    // The loss: d(mean over the batch)/d(output).
    SmallVector<Value> lossSlots(loss->getOperands());
    auto seed = vjp(loss, lossSlots, {}, {}, {0}, 1.0 / static_cast<double>(batch));
    contributions[out].push_back(seed.getResult(0));

    for (Operation *op : llvm::reverse(ops)) {
      SmallVector<Value> incoming;
      bool any = false;
      for (Value r : op->getResults()) {
        Value g = gradOf(r);
        incoming.push_back(g);
        any |= bool(g);
      }
      if (!any)
        continue;
      if (llvm::any_of(incoming, [](Value g) { return !g; })) {
        op->emitError() << "kern-autodiff: some results of this op reach the loss and others do "
                           "not; its backward kernel needs every result's gradient";
        return signalPassFailure();
      }
      Rule rule = *ruleFor(op);
      for (int64_t s : rule.alias)
        if (rule.slots[s] && needs.count(rule.slots[s]))
          contributions[rule.slots[s]].push_back(incoming.front());
      SmallVector<int64_t> wanted;
      for (int64_t s : rule.kernel)
        if (rule.slots[s] && needs.count(rule.slots[s]))
          wanted.push_back(s);
      if (wanted.empty())
        continue;
      SmallVector<Value> saved = saveForBackward(op);
      auto v = vjp(op, rule.slots, saved, incoming, wanted, std::nullopt);
      for (auto [i, s] : llvm::enumerate(wanted))
        contributions[rule.slots[s]].push_back(v.getResult(i));
    }

    SmallVector<Value> results{loss->getResult(0)};
    for (BlockArgument p : params) {
      Value g = gradOf(p);
      if (!g) {
        train.emitError() << "kern-autodiff: parameter '"
                          << train.getArgAttrOfType<StringAttr>(p.getArgNumber(), dit::DitDialect::kParamAttrName).getValue()
                          << "' does not affect the loss";
        return signalPassFailure();
      }
      results.push_back(g);
    }
    b.create<func::ReturnOp>(loc, results);
    ret->erase();
    SmallVector<Type> resultTypes;
    for (Value v : results)
      resultTypes.push_back(v.getType());
    train.setType(b.getFunctionType(entry.getArgumentTypes(), resultTypes));
    forward.erase();
  }
};

} // namespace
