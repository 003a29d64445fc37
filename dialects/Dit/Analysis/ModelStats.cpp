//===- ModelStats.cpp - parameter and cost counts of a dit model ----------===//
//
// Costs follow the convention DiT's published "Gflops" use (they are
// multiply-accumulates): every matrix product counts M·N·K, the attention
// core counts its two products, element-wise work counts nothing. Families
// that published counts without some parts (DiT-MoE without attention cores,
// DiG without the GLA core and the SwiGLU down-projection) can be compared
// through the separate core and down-projection totals.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dit/Analysis/ModelStats.h"

#include "dialects/Dit/IR/DitDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

using namespace mlir;
using namespace diffc;
using namespace diffc::dit;

CostCounts &CostCounts::operator+=(const CostCounts &o) {
  params += o.params;
  activatedParams += o.activatedParams;
  macs += o.macs;
  coreMacs += o.coreMacs;
  swigluDownMacs += o.swigluDownMacs;
  instances += o.instances;
  return *this;
}

namespace {

double numel(Value v) {
  return static_cast<double>(cast<RankedTensorType>(v.getType()).getNumElements());
}
int64_t dimOf(Value v, unsigned i) { return cast<RankedTensorType>(v.getType()).getDimSize(i); }
double rowsOf(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  return static_cast<double>(t.getNumElements() / t.getShape().back());
}

/// Cost of one op for the whole batch; parameters unused by a token (MoE)
/// reported through `unusedParams` given the op's parameter operands.
void costOf(Operation *op, CostCounts &c, double &unusedParams) {
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](LinearOp o) { c.macs += numel(o.getResult()) * dimOf(o.getWeight(), 1); })
      .Case([&](MlpOp o) {
        c.macs += rowsOf(o.getInput()) *
                  (numel(o.getFc1Weight()) + numel(o.getFc2Weight()));
      })
      .Case([&](SwiGluOp o) {
        double rows = rowsOf(o.getInput());
        double down = rows * numel(o.getDownWeight());
        double in = rows * (numel(o.getGateWeight()) + (o.getUpWeight() ? numel(o.getUpWeight()) : 0));
        c.macs += in + down;
        c.swigluDownMacs += down;
      })
      .Case([&](PatchEmbedOp o) { c.macs += rowsOf(o.getResult()) * numel(o.getWeight()); })
      .Case([&](AttentionOp o) {
        double n = dimOf(o.getQuery(), 0), lq = dimOf(o.getQuery(), 1), lk = dimOf(o.getKey(), 1);
        double m = n * lq * lk * (dimOf(o.getQuery(), 2) + dimOf(o.getValue(), 2));
        c.macs += m;
        c.coreMacs += m;
      })
      .Case([&](GlaOp o) {
        double n = dimOf(o.getQuery(), 0), t = dimOf(o.getQuery(), 1);
        double h = o.getNumHeads();
        double dk = dimOf(o.getQuery(), 2) / h, dv = dimOf(o.getValue(), 2) / h;
        double chunk = std::min<double>(o.getChunkSize(), t);
        // Chunk form per head: intra-chunk scores and values, inter-chunk
        // query-state product and state update.
        double m = n * h * (t * chunk * (dk + dv) + 2 * t * dk * dv);
        c.macs += m;
        c.coreMacs += m;
      })
      .Case([&](DepthwiseConv2dOp o) {
        c.macs += numel(o.getResult()) * dimOf(o.getWeight(), 2) * dimOf(o.getWeight(), 3);
      })
      .Case([&](MoeOp o) {
        double rows = rowsOf(o.getInput());
        double e = o.getNumExperts();
        double perExpert = 0;
        for (Value w : o.getExpertWeights())
          perExpert += numel(w) / e;
        double router = rows * numel(o.getRouter());
        double slots = o.getSlotsPerSample() * dimOf(o.getInput(), 0);
        c.macs += router + slots * perExpert;
        // A token uses its share of the expert slots: top_k of E (token
        // choice) or E·k/T slots on average (expert choice).
        double used = slots / rows;
        unusedParams += (e - used) * perExpert;
      });
}

/// Parameters an op reads directly from function arguments.
void countBody(func::FuncOp func, CostCounts &c, double &unusedParams) {
  func.walk([&](Operation *op) {
    costOf(op, c, unusedParams);
    if (auto pos = dyn_cast<SinCosPosEmbedOp>(op))
      if (pos.getFrozenParameter())
        c.params += numel(pos.getResult());
  });
}

} // namespace

FailureOr<ModelStats> diffc::dit::computeModelStats(ModuleOp module) {
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward) {
    module.emitError() << "diffc stats needs a @forward function";
    return failure();
  }
  ModelStats stats;
  if (auto model = module->getAttrOfType<DictionaryAttr>(DitDialect::kModelAttrName))
    if (auto name = model.getAs<StringAttr>("name"))
      stats.name = name.str();
  for (BlockArgument arg : forward.getArguments())
    if (forward.getArgAttr(arg.getArgNumber(), DitDialect::kInputAttrName)) {
      stats.batch = cast<RankedTensorType>(arg.getType()).getDimSize(0);
      break;
    }

  // Outside blocks: forward's own ops and the parameters they read.
  CostCounts outside;
  double outsideUnused = 0;
  llvm::DenseSet<Value> blockParams;
  forward.walk([&](func::CallOp call) {
    for (Value v : call.getOperands())
      blockParams.insert(v);
  });
  countBody(forward, outside, outsideUnused);
  for (BlockArgument arg : forward.getArguments())
    if (forward.getArgAttr(arg.getArgNumber(), DitDialect::kParamAttrName) &&
        !blockParams.contains(arg))
      outside.params += numel(arg);
  outside.activatedParams = outside.params - outsideUnused;
  outside.instances = 1;
  stats.byKind["(outside blocks)"] = outside;

  // Each block call: its callee's costs and the parameters it is passed.
  WalkResult walk = forward.walk([&](func::CallOp call) {
    auto callee = module.lookupSymbol<func::FuncOp>(call.getCallee());
    auto kind = callee ? callee->getAttrOfType<StringAttr>(DitDialect::kBlockKindAttrName) : nullptr;
    if (!kind) {
      call.emitError() << "calls @" << call.getCallee() << ", which is not a block function";
      return WalkResult::interrupt();
    }
    CostCounts c;
    double unused = 0;
    countBody(callee, c, unused);
    for (Value v : call.getOperands()) {
      auto arg = dyn_cast<BlockArgument>(v);
      if (arg && arg.getOwner()->getParentOp() == forward &&
          forward.getArgAttr(arg.getArgNumber(), DitDialect::kParamAttrName))
        c.params += numel(arg);
    }
    c.activatedParams = c.params - unused;
    c.instances = 1;
    stats.byKind[kind.str()] += c;
    return WalkResult::advance();
  });
  if (walk.wasInterrupted())
    return failure();

  for (auto &[kind, c] : stats.byKind) {
    // Costs so far are for the whole batch; report them per sample.
    c.macs /= stats.batch;
    c.coreMacs /= stats.batch;
    c.swigluDownMacs /= stats.batch;
    stats.total += c;
  }
  stats.total.instances = 1;
  return stats;
}

std::string diffc::dit::formatModelStats(const ModelStats &s) {
  auto millions = [](double v) { return llvm::formatv("{0:F2}M", v / 1e6).str(); };
  auto giga = [](double v) { return llvm::formatv("{0:F2}", v / 1e9).str(); };
  std::string out;
  llvm::raw_string_ostream os(out);
  os << "model: " << (s.name.empty() ? "(unnamed)" : s.name) << " (batch " << s.batch << ")\n";
  os << "parameters: " << millions(s.total.params) << " total, "
     << millions(s.total.activatedParams) << " activated per token\n";
  os << "forward GMACs per sample: " << giga(s.total.macs) << " total, "
     << giga(s.total.macs - s.total.coreMacs) << " without attention cores, "
     << giga(s.total.macs - s.total.coreMacs - s.total.swigluDownMacs)
     << " without attention cores and SwiGLU down-projections\n";
  os << llvm::formatv("{0,-24} {1,6} {2,14} {3,14} {4,12} {5,12}\n", "block kind", "count",
                      "params", "activated", "GMACs", "core GMACs");
  for (auto &[kind, c] : s.byKind)
    os << llvm::formatv("{0,-24} {1,6} {2,14} {3,14} {4,12} {5,12}\n", kind, c.instances,
                        millions(c.params), millions(c.activatedParams), giga(c.macs),
                        giga(c.coreMacs));
  return out;
}
