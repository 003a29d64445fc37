//===- EmitArtifact.cpp - planned kern program to a .dfx artifact ---------===//
//
// Every value of @forward becomes a plan value at the place kern-plan-memory
// gave it; every op except views (dit.split) becomes one kernel whose
// operands follow the op's ODS operand order, absent optional operands as -1
// (the runtime's KernelSignatures defines the same order).
//
//===----------------------------------------------------------------------===//

#include "codegen/EmitArtifact.h"
#include "codegen/EmitPointwise.h"
#include "codegen/PointwiseCuda.h"

#include "dialects/Dit/IR/DitDialect.h"
#include "dialects/Kern/IR/KernDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace diffc;

namespace {

diffrt::DType dtypeOf(Type element) {
  if (element.isF16())
    return diffrt::DType::F16;
  if (element.isBF16())
    return diffrt::DType::BF16;
  if (element.isInteger(32))
    return diffrt::DType::I32;
  return diffrt::DType::F32;
}

/// The dit.model dictionary as JSON text.
void writeJson(Attribute attr, llvm::raw_ostream &os) {
  if (auto dict = dyn_cast<DictionaryAttr>(attr)) {
    os << "{";
    llvm::interleave(
        dict.getValue(), os,
        [&](NamedAttribute n) {
          os << "\"" << n.getName().getValue() << "\":";
          writeJson(n.getValue(), os);
        },
        ",");
    os << "}";
  } else if (auto s = dyn_cast<StringAttr>(attr)) {
    os << "\"";
    for (char c : s.getValue()) {
      if (c == '"' || c == '\\')
        os << '\\';
      os << c;
    }
    os << "\"";
  } else if (auto b = dyn_cast<BoolAttr>(attr)) {
    os << (b.getValue() ? "true" : "false");
  } else if (auto i = dyn_cast<IntegerAttr>(attr)) {
    os << i.getInt();
  } else if (auto f = dyn_cast<FloatAttr>(attr)) {
    os << llvm::formatv("{0:e}", f.getValueAsDouble());
  } else if (auto a = dyn_cast<DenseI64ArrayAttr>(attr)) {
    os << "[";
    llvm::interleave(a.asArrayRef(), os, ",");
    os << "]";
  } else {
    os << "null";
  }
}

std::string scanName(dit::ScanOrder o) { return dit::stringifyScanOrder(o).str(); }

class PlanBuilder {
public:
  explicit PlanBuilder(diffrt::Plan &plan) : plan(plan) {}

  int32_t id(Value v) {
    if (!v)
      return -1;
    return ids.lookup(v);
  }

  void addValue(Value v, ArrayRef<int64_t> slot) {
    auto type = cast<RankedTensorType>(v.getType());
    diffrt::ValueDesc d;
    d.dtype = dtypeOf(type.getElementType());
    d.shape.assign(type.getShape().begin(), type.getShape().end());
    d.region = static_cast<diffrt::Region>(slot[0]);
    d.offset = static_cast<uint64_t>(slot[1]);
    d.ld = slot[2];
    ids[v] = static_cast<int32_t>(plan.values.size());
    plan.values.push_back(std::move(d));
  }

  /// Operands and attributes of one kernel, or failure for an op with no
  /// kernel.
  LogicalResult kernel(Operation *op, diffrt::KernelDesc &k) {
    k.op = op->getName().getStringRef().str();
    auto ids = [&](std::initializer_list<Value> values) {
      for (Value v : values)
        k.operands.push_back(id(v));
    };
    bool known = true, encodeFailed = false;
    llvm::TypeSwitch<Operation *>(op)
        .Case([&](kern::GemmOp o) {
          ids({o.getInput(), o.getWeight(), o.getBias(), o.getResidual(), o.getGate()});
          k.attrs["act"] = kern::stringifyAct(o.getAct()).str();
        })
        .Case([&](kern::SwiGluOp o) {
          ids({o.getInput(), o.getGateWeight(), o.getUpWeight(), o.getDownWeight(), o.getResidual(),
               o.getResidualGate()});
        })
        .Case([&](kern::NormOp o) {
          ids({o.getInput(), o.getWeight(), o.getBias(), o.getShift(), o.getScale(), o.getSiluGate(),
               o.getResidual(), o.getResidualGate()});
          k.attrs["kind"] = kern::stringifyNormKind(o.getKind()).str();
          k.attrs["epsilon"] = o.getEpsilon().convertToDouble();
          k.attrs["group_size"] = static_cast<int64_t>(o.getGroupSize());
        })
        .Case([&](kern::MoeOp o) {
          ValueRange w = o.getExpertWeights();
          ids({o.getInput(), o.getRouter(), w[0], w[1], w.size() > 2 ? w[2] : Value(),
               o.getSharedGate(), o.getSharedUp(), o.getSharedDown(), o.getResidual(),
               o.getResidualGate()});
          if (auto tc = dyn_cast<dit::TokenChoiceAttr>(o.getRouting())) {
            k.attrs["routing"] = std::string("token_choice");
            k.attrs["top_k"] = tc.getTopK();
            k.attrs["normalize"] = static_cast<int64_t>(tc.getNormalize());
            k.attrs["balance_coef"] = tc.getBalanceCoef().convertToDouble();
          } else {
            k.attrs["routing"] = std::string("expert_choice");
            k.attrs["capacity"] = cast<dit::ExpertChoiceAttr>(o.getRouting()).getCapacity().convertToDouble();
          }
          k.attrs["activation"] = dit::stringifyActivation(o.getActivation()).str();
          k.attrs["weight_layout"] = dit::stringifyWeightLayout(o.getWeightLayout()).str();
        })
        .Case([&](kern::DwConvOp o) {
          ids({o.getInput(), o.getWeight(), o.getBias()});
          k.attrs["grid"] = std::vector<int64_t>(o.getGrid().begin(), o.getGrid().end());
          k.attrs["from"] = scanName(o.getFrom());
          k.attrs["to"] = scanName(o.getTo());
        })
        .Case([&](kern::PatchEmbedOp o) {
          ids({o.getInput(), o.getWeight(), o.getBias(), o.getPositions()});
        })
        .Case([&](kern::PointwiseOp o) {
          for (Value v : o.getInputs())
            k.operands.push_back(id(v));
          FailureOr<diffrt::PwProgram> program = codegen::encodePointwiseBody(o);
          if (failed(program))
            encodeFailed = true; // the body op has said why
          else
            k.attrs["program"] = diffrt::encodePointwise(*program);
        })
        .Case([&](dit::AttentionOp o) {
          ids({o.getQuery(), o.getKey(), o.getValue()});
          k.attrs["num_heads"] = static_cast<int64_t>(o.getNumHeads());
          k.attrs["scale"] = o.getScaleValue();
        })
        .Case([&](kern::AttentionOp o) {
          ids({o.getQuery(), o.getKey(), o.getValue()});
          k.attrs["num_heads"] = static_cast<int64_t>(o.getNumHeads());
          k.attrs["scale"] = o.getScale().convertToDouble();
        })
        .Case([&](dit::GlaOp o) {
          ids({o.getQuery(), o.getKey(), o.getValue(), o.getGateLogits()});
          k.attrs["num_heads"] = static_cast<int64_t>(o.getNumHeads());
          k.attrs["scale"] = o.getScaleValue();
          k.attrs["gate_normalizer"] = o.getGateNormalizer().convertToDouble();
          k.attrs["chunk_size"] = static_cast<int64_t>(o.getChunkSize());
        })
        .Case([&](dit::UnpatchifyOp o) {
          ids({o.getInput()});
          k.attrs["grid"] = std::vector<int64_t>(o.getGrid().begin(), o.getGrid().end());
          k.attrs["patch_size"] = static_cast<int64_t>(o.getPatchSize());
        })
        .Case([&](dit::SinCosPosEmbedOp o) {
          k.attrs["grid"] = std::vector<int64_t>(o.getGrid().begin(), o.getGrid().end());
          k.attrs["dim"] = static_cast<int64_t>(o.getDim());
          k.attrs["interp_scale"] = o.getInterpScale().convertToDouble();
        })
        .Case([&](dit::TimestepEmbedOp o) {
          ids({o.getInput()});
          k.attrs["dim"] = static_cast<int64_t>(o.getDim());
          k.attrs["max_period"] = o.getMaxPeriod().convertToDouble();
        })
        .Case([&](dit::LabelEmbedOp o) {
          ids({o.getLabels(), o.getTable()});
          k.attrs["num_classes"] = static_cast<int64_t>(o.getNumClasses());
        })
        .Case([&](dit::TokenMeanOp o) { ids({o.getInput()}); })
        .Case([&](dit::MaskTokensOp o) { ids({o.getInput(), o.getKeep()}); })
        .Case([&](dit::UnmaskTokensOp o) {
          ids({o.getInput(), o.getKeep()});
          k.attrs["num_tokens"] = static_cast<int64_t>(o.getNumTokens());
        })
        .Case([&](dit::ReorderTokensOp o) {
          ids({o.getInput()});
          k.attrs["grid"] = std::vector<int64_t>(o.getGrid().begin(), o.getGrid().end());
          k.attrs["from"] = scanName(o.getFrom());
          k.attrs["to"] = scanName(o.getTo());
        })
        .Case<dit::AddOp, dit::MulOp>([&](auto o) { ids({o.getLhs(), o.getRhs()}); })
        .Case([&](dit::SiluOp o) { ids({o.getInput()}); })
        .Case([&](dit::GeluOp o) {
          ids({o.getInput()});
          k.attrs["approximate"] = static_cast<int64_t>(o.getApproximate());
        })
        .Case([&](dit::ModulateOp o) { ids({o.getInput(), o.getShift(), o.getScale()}); })
        .Case([&](dit::GatedResidualOp o) { ids({o.getResidual(), o.getGate(), o.getUpdate()}); })
        .Case([&](dit::SplitOp o) {
          ids({o.getInput()});
          k.attrs["parts"] = static_cast<int64_t>(o.getNumResults());
        })
        .Case([&](dit::DdpmLossOp o) {
          ids({o.getPrediction(), o.getXStart(), o.getXT(), o.getNoise(), o.getTimesteps()});
          k.attrs["num_timesteps"] = static_cast<int64_t>(o.getNumTimesteps());
        })
        .Case([&](dit::RfLossOp o) { ids({o.getPrediction(), o.getXStart(), o.getNoise()}); })
        .Case([&](dit::EdmLossOp o) {
          ids({o.getRaw(), o.getXNoisy(), o.getXStart(), o.getSigma(), o.getKeep()});
          k.attrs["sigma_data"] = o.getSigmaData().convertToDouble();
          k.attrs["patch_size"] = static_cast<int64_t>(o.getPatchSize());
        })
        .Case([&](kern::VjpOp o) { known = succeeded(vjpKernel(o, k)); })
        .Default([&](Operation *) { known = false; });
    if (encodeFailed)
      return failure();
    if (!known)
      return op->emitError() << "has no kernel: the kernel-level program may only hold kern ops "
                                "and dit ops that are single kernels";
    if (!isa<kern::VjpOp>(op))
      for (Value r : op->getResults())
        k.results.push_back(id(r));
    return success();
  }

  /// A backward kernel: the forward op's operand slots and attributes (from
  /// a detached copy of the forward op rebuilt from the vjp's operands and
  /// attributes), then the values the forward op saved (attribute "saved"
  /// counts them), then the incoming gradients; one result per forward
  /// slot, -1 where no gradient is wanted, and with "column_sums" one more
  /// per slot for its gradient's row sums.
  LogicalResult vjpKernel(kern::VjpOp vjp, diffrt::KernelDesc &k) {
    ArrayRef<int64_t> present = vjp.getPresent();
    OperationState state(vjp.getLoc(), vjp.getForward());
    state.addOperands(vjp.getInputs().take_front(present.size()));
    ValueRange saved = vjp.getSaved(), incoming = vjp.getIncoming();
    if (vjp.isLoss()) {
      int64_t batch = cast<RankedTensorType>(vjp.getInputs().front().getType()).getDimSize(0);
      state.addTypes(RankedTensorType::get({batch}, Float32Type::get(vjp.getContext())));
    } else if (!saved.empty() && saved.front().getDefiningOp() &&
               saved.front().getDefiningOp()->getName().getStringRef() == vjp.getForward()) {
      // The op that saved the values: its results are the forward's (for
      // kern.attention the first saved value is the result itself).
      state.addTypes(saved.front().getDefiningOp()->getResultTypes());
    } else {
      for (Value g : incoming)
        state.addTypes(g.getType());
      for (Value v : saved)
        state.addTypes(v.getType());
    }
    Operation *forward = Operation::create(state);
    // setAttr routes inherent attributes into the op's properties.
    for (NamedAttribute a : vjp.getForwardAttrs())
      forward->setAttr(a.getName(), a.getValue());
    diffrt::KernelDesc f;
    LogicalResult ok = kernel(forward, f);
    forward->destroy();
    if (failed(ok))
      return failure();
    k.op = "vjp:" + f.op;
    k.attrs = std::move(f.attrs);
    if (auto w = vjp.getLossWeight())
      k.attrs["loss_weight"] = w->convertToDouble();
    k.operands = std::move(f.operands);
    size_t slots = k.operands.size();
    if (!saved.empty())
      k.attrs["saved"] = static_cast<int64_t>(saved.size());
    for (Value v : saved)
      k.operands.push_back(id(v));
    for (Value g : incoming)
      k.operands.push_back(id(g));
    if (Value z = vjp.getInputPreactivation()) {
      // After the incoming gradients: z of the input x = act(z).
      k.operands.push_back(id(z));
      k.attrs["input_grad_act"] = kern::stringifyAct(*vjp.getInputGradAct()).str();
    }
    if (Value addend = vjp.getInputGradAddendValue()) {
      // After the incoming gradients: added to the input's gradient.
      k.operands.push_back(id(addend));
      k.attrs["input_grad_addend"] = int64_t(1);
    }
    k.results.assign(slots, -1);
    for (auto [i, slot] : llvm::enumerate(vjp.getGradsOf()))
      k.results[slot] = id(vjp.getResult(i));
    if (vjp.getColumnSums()) {
      // After the slots: slot i's row sums, -1 where its gradient is not
      // wanted.
      k.attrs["column_sums"] = int64_t(1);
      k.results.resize(2 * slots, -1);
      ResultRange sums = vjp.getColumnSumResults();
      for (auto [i, slot] : llvm::enumerate(vjp.getGradsOf()))
        k.results[slots + slot] = id(sums[i]);
    }
    return success();
  }

  diffrt::Plan &plan;
  llvm::DenseMap<Value, int32_t> ids;
};

} // namespace

FailureOr<diffrt::Plan> diffc::codegen::buildPlan(ModuleOp module, StringRef target) {
  func::FuncOp func;
  for (auto f : module.getOps<func::FuncOp>())
    if (f.isPublic() && !f.isDeclaration())
      func = f;
  auto planAttr = func ? func->getAttrOfType<DictionaryAttr>("kern.plan") : nullptr;
  if (!planAttr) {
    module.emitError() << "artifact emission needs a module at the kern-planned phase";
    return failure();
  }
  diffrt::Plan plan;
  plan.target = target.str();
  auto size = [&](StringRef name) {
    return static_cast<uint64_t>(cast<IntegerAttr>(planAttr.get(name)).getInt());
  };
  plan.weightsBytes = size("weights_bytes");
  plan.constantsBytes = size("constants_bytes");
  plan.arenaBytes = size("arena_bytes");
  if (auto model = module->getAttr(dit::DitDialect::kModelAttrName)) {
    llvm::raw_string_ostream os(plan.modelJson);
    writeJson(model, os);
  }

  PlanBuilder pb(plan);
  Block &entry = func.getBody().front();
  diffrt::EntryDesc init{"init", {}, {}, {}};
  diffrt::EntryDesc forward{func.getSymName().str(), {}, {}, {}};
  for (BlockArgument arg : entry.getArguments()) {
    auto slot = func.getArgAttrOfType<DenseI64ArrayAttr>(arg.getArgNumber(), "kern.slot");
    if (!slot) {
      func.emitError() << "argument #" << arg.getArgNumber() << " has no kern.slot";
      return failure();
    }
    pb.addValue(arg, slot.asArrayRef());
    if (auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), dit::DitDialect::kParamAttrName))
      plan.params.push_back({pb.id(arg), name.str()});
    if (auto name = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), dit::DitDialect::kInputAttrName))
      forward.inputs.emplace_back(name.str(), pb.id(arg));
  }
  for (Operation &op : entry.without_terminator()) {
    auto slots = op.getAttrOfType<ArrayAttr>("kern.slots");
    if (!slots || slots.size() != op.getNumResults())
      return op.emitError() << "has no kern.slots for its results";
    for (auto [r, s] : llvm::zip(op.getResults(), slots))
      pb.addValue(r, cast<DenseI64ArrayAttr>(s).asArrayRef());
    if (isa<dit::SplitOp>(op))
      continue;
    diffrt::KernelDesc k;
    if (failed(pb.kernel(&op, k)))
      return failure();
    (op.hasAttr("kern.init") ? init : forward).kernels.push_back(std::move(k));

    if (auto pos = dyn_cast<dit::SinCosPosEmbedOp>(op); pos && pos.getStateName()) {
      auto t = cast<RankedTensorType>(pos.getType());
      plan.state.push_back({pos.getStateName()->str(), pb.id(pos), {1, t.getDimSize(0), t.getDimSize(1)}, "value"});
    }
    if (auto unmask = dyn_cast<dit::UnmaskTokensOp>(op); unmask && unmask.getStateName()) {
      auto t = cast<RankedTensorType>(unmask.getType());
      plan.state.push_back({unmask.getStateName()->str(), -1, {1, 1, t.getDimSize(2)}, "zeros"});
    }
  }
  for (Value v : entry.getTerminator()->getOperands())
    forward.outputs.push_back(pb.id(v));
  // Zero buffers that checkpoints carry whether or not an op uses them.
  if (auto model = module->getAttrOfType<DictionaryAttr>(dit::DitDialect::kModelAttrName))
    if (auto zeros = model.getAs<DictionaryAttr>("zero_state"))
      for (NamedAttribute n : zeros) {
        std::string name = n.getName().str();
        bool declared = llvm::any_of(plan.state, [&](const diffrt::StateDesc &s) { return s.name == name; });
        auto shape = dyn_cast<DenseI64ArrayAttr>(n.getValue());
        if (!declared && shape)
          plan.state.push_back({name, -1, std::vector<int64_t>(shape.asArrayRef().begin(), shape.asArrayRef().end()), "zeros"});
      }
  if (!init.kernels.empty())
    plan.entries.push_back(std::move(init));
  plan.entries.push_back(std::move(forward));
  // Every pointwise kernel is named; only CUDA artifacts carry the source.
  std::string source = codegen::writeCudaPointwiseKernels(plan);
  if (plan.target == "cuda")
    plan.deviceCode.assign(source.begin(), source.end());
  return plan;
}

LogicalResult diffc::codegen::emitArtifact(ModuleOp module, StringRef target, StringRef path) {
  FailureOr<diffrt::Plan> plan = buildPlan(module, target);
  if (failed(plan))
    return failure();
  std::string error;
  if (!diffrt::writeArtifact(*plan, path.str(), error))
    return module.emitError() << error;
  return success();
}
