//===- KernPlanMemory.cpp - static memory plan of @forward ----------------===//
//
// Assigns every value of the kernel-level @forward a place in the weights,
// constants or arena region (see the pass description). The arena is
// planned by liveness in program order with first fit; a kernel whose
// epilogue adds a residual, and the element-wise dit ops, may write over
// their first input where that input dies. A weight-gradient window keeps
// the inputs of dense-layer weight gradients live a little longer.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SetVector.h"

namespace diffc {
#define GEN_PASS_DEF_KERNPLANMEMORY
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

constexpr int64_t kAlign = 256;
enum Region : int64_t { Weights = 0, Constants = 1, Arena = 2 };

int64_t alignUp(int64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

int64_t bytesOf(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  unsigned bits = t.getElementType().getIntOrFloatBitWidth();
  return t.getNumElements() * static_cast<int64_t>(bits / 8);
}

int64_t lastDim(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  return t.getRank() ? t.getShape().back() : 1;
}

struct Slot {
  Region region;
  int64_t offset;
  int64_t ld;
};

/// The operand a kernel may overwrite with one of its results (the result's
/// index beside it), or null.
std::pair<Value, unsigned> inPlaceOperand(Operation *op) {
  if (auto g = dyn_cast<kern::GemmOp>(op))
    return {g.getResidual(), 0};
  if (auto s = dyn_cast<kern::SwiGluOp>(op))
    return {s.getResidual(), 0};
  if (auto m = dyn_cast<kern::MoeOp>(op))
    return {m.getResidual(), 0};
  if (auto r = dyn_cast<dit::GatedResidualOp>(op))
    return {r.getResidual(), 0};
  // The residual form's sum x + g ⊙ y, a row read before it is written.
  if (auto n = dyn_cast<kern::NormOp>(op))
    return {n.getResidual(), 1};
  // Each element is read before it is written, by the same thread.
  if (auto p = dyn_cast<kern::PointwiseOp>(op))
    for (Value input : p.getInputs())
      if (input.getType() == p.getType())
        return {input, 0};
  if (auto m = dyn_cast<dit::ModulateOp>(op))
    return {m.getInput(), 0};
  return {};
}

struct KernPlanMemory : diffc::impl::KernPlanMemoryBase<KernPlanMemory> {
  using KernPlanMemoryBase::KernPlanMemoryBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    // The entry: @forward, or @train_step after kern-autodiff.
    func::FuncOp func;
    for (auto f : module.getOps<func::FuncOp>()) {
      if (!f.isPublic() || f.isDeclaration())
        continue;
      if (func) {
        module.emitError() << "kern-plan-memory plans one entry function, found @"
                           << func.getSymName() << " and @" << f.getSymName();
        return signalPassFailure();
      }
      func = f;
    }
    if (!func) {
      module.emitError() << "kern-plan-memory needs a public function with a body";
      return signalPassFailure();
    }
    Block &entry = func.getBody().front();
    Builder b(&getContext());
    llvm::DenseMap<Value, Slot> slots;

    // Weights: parameters, in argument order.
    int64_t weightsBytes = 0;
    for (BlockArgument arg : entry.getArguments()) {
      if (!func.getArgAttr(arg.getArgNumber(), dit::DitDialect::kParamAttrName))
        continue;
      slots[arg] = {Weights, weightsBytes, lastDim(arg)};
      weightsBytes = alignUp(weightsBytes + bytesOf(arg));
    }

    // Constants: values computed from parameters and attributes alone.
    llvm::DenseSet<Value> constant;
    for (BlockArgument arg : entry.getArguments())
      if (slots.count(arg))
        constant.insert(arg);
    int64_t constantsBytes = 0;
    for (Operation &op : entry.without_terminator()) {
      bool allConstant = llvm::all_of(op.getOperands(), [&](Value v) { return constant.count(v); });
      if (!allConstant || isa<dit::SplitOp>(op))
        continue;
      // Ops that only read parameters (a gemm of two weights, say) would be
      // constants too; the frontends produce only tables and their casts.
      op.setAttr("kern.init", b.getUnitAttr());
      for (Value r : op.getResults()) {
        constant.insert(r);
        slots[r] = {Constants, constantsBytes, lastDim(r)};
        constantsBytes = alignUp(constantsBytes + bytesOf(r));
      }
    }

    // Last use of every value, program positions 0..n-1, the return at n.
    llvm::DenseMap<Operation *, int64_t> position;
    int64_t n = 0;
    for (Operation &op : entry)
      position[&op] = n++;
    // The storage a value lives in: itself, or the value it is a view of.
    llvm::DenseMap<Value, Value> owner;
    for (Operation &op : entry)
      if (auto split = dyn_cast<dit::SplitOp>(op))
        for (Value r : split.getResults()) {
          Value root = split.getInput();
          while (owner.count(root))
            root = owner[root];
          owner[r] = root;
        }
    auto rootOf = [&](Value v) { return owner.count(v) ? owner[v] : v; };
    llvm::DenseMap<Value, int64_t> lastUse;
    for (Operation &op : entry)
      for (Value v : op.getOperands()) {
        Value root = rootOf(v);
        lastUse[root] = std::max(lastUse.lookup(root), position[&op]);
      }
    // What a weight-gradient product reads lives on through the window
    // (see the pass description).
    if (weightGradWindow > 0) {
      SmallVector<kern::VjpOp> denseBackward;
      for (Operation &op : entry)
        if (auto vjp = dyn_cast<kern::VjpOp>(op);
            vjp && vjp.getForward() == "kern.gemm" && llvm::is_contained(vjp.getGradsOf(), 1) &&
            !vjp.getPresent().empty() && vjp.getPresent().front() == 0)
          denseBackward.push_back(vjp);
      for (auto [i, vjp] : llvm::enumerate(denseBackward)) {
        size_t until = std::min(i + weightGradWindow, denseBackward.size() - 1);
        int64_t end = position[denseBackward[until].getOperation()];
        SmallVector<Value> read = {vjp.getInputs().front()};
        read.append(vjp.getIncoming().begin(), vjp.getIncoming().end());
        for (Value v : read) {
          Value root = rootOf(v);
          lastUse[root] = std::max(lastUse.lookup(root), end);
        }
      }
    }

    // Gradients written in place: the q, k and v gradients of an attention
    // backward kernel that only feed the backward of the split that made
    // q, k and v are column views of that split gradient (the kernel takes
    // strided outputs), so the split's backward copies nothing. The same
    // holds for their row sums (column_sums) and the bias gradient they are
    // the parts of.
    llvm::DenseMap<Value, std::pair<Value, int64_t>> partOf; // part gradient -> (whole, index)
    for (Operation &op : entry) {
      auto split = dyn_cast<kern::VjpOp>(op);
      if (!split || split.getForward() != "dit.split" || split.getNumResults() != 1)
        continue;
      ValueRange parts = split.getIncoming();
      auto attention = parts.empty() ? kern::VjpOp() : parts[0].getDefiningOp<kern::VjpOp>();
      if (!attention ||
          (attention.getForward() != "dit.attention" && attention.getForward() != "kern.attention") ||
          attention.getGradsOf().size() != parts.size())
        continue;
      // The gradients, or their sums, in the attention's result order.
      const bool sums = parts[0] != attention.getResult(0);
      const unsigned first = sums ? attention.getGradsOf().size() : 0;
      bool inPlace = !sums || attention.getColumnSums();
      for (auto [i, part] : llvm::enumerate(parts))
        inPlace &= part == attention.getResult(first + i) && part.hasOneUse() &&
                   llvm::count(split->getOperands(), part) == 1;
      if (!inPlace)
        continue;
      for (auto [i, part] : llvm::enumerate(parts))
        partOf[part] = {split.getResult(0), static_cast<int64_t>(i)};
    }

    // Arena: first fit over the live allocations.
    struct Live {
      int64_t offset, size, end;
    };
    std::vector<Live> live;
    int64_t arenaBytes = 0;
    auto allocate = [&](int64_t size, int64_t end) {
      std::sort(live.begin(), live.end(), [](const Live &a, const Live &c) { return a.offset < c.offset; });
      int64_t at = 0;
      for (const Live &l : live) {
        if (at + size <= l.offset)
          break;
        at = std::max(at, alignUp(l.offset + l.size));
      }
      live.push_back({at, size, end});
      arenaBytes = std::max(arenaBytes, alignUp(at + size));
      return at;
    };
    auto release = [&](int64_t before) {
      live.erase(std::remove_if(live.begin(), live.end(), [&](const Live &l) { return l.end < before; }),
                 live.end());
    };
    llvm::DenseSet<Value> inputs;
    for (BlockArgument arg : entry.getArguments()) {
      if (slots.count(arg))
        continue;
      // Inputs stay intact for the whole call, so that an entry can be
      // replayed (graph replay, timing, a sampler's repeated calls) without
      // copying them in again.
      inputs.insert(arg);
      slots[arg] = {Arena, allocate(bytesOf(arg), n), lastDim(arg)};
    }
    for (Operation &op : entry.without_terminator()) {
      if (constant.count(op.getNumResults() ? op.getResult(0) : Value()))
        continue;
      int64_t here = position[&op];
      if (auto split = dyn_cast<dit::SplitOp>(op)) {
        Slot parent = slots[split.getInput()];
        int64_t width = lastDim(split.getResult(0));
        unsigned bytes = cast<RankedTensorType>(split.getInput().getType()).getElementTypeBitWidth() / 8;
        for (auto [i, r] : llvm::enumerate(split.getResults()))
          slots[r] = {parent.region, parent.offset + static_cast<int64_t>(i) * width * bytes, parent.ld};
        continue;
      }
      release(here);
      for (Value r : op.getResults()) {
        if (slots.count(r))
          continue; // a split gradient its parts' kernel already placed
        int64_t end = lastUse.count(r) ? lastUse[r] : here;
        if (auto it = partOf.find(r); it != partOf.end()) {
          Value whole = it->second.first;
          if (!slots.count(whole))
            slots[whole] = {Arena, allocate(bytesOf(whole), lastUse.count(whole) ? lastUse[whole] : here),
                            lastDim(whole)};
          auto type = cast<RankedTensorType>(r.getType());
          const int64_t elementBytes = type.getElementTypeBitWidth() / 8;
          slots[r] = {Arena, slots[whole].offset + it->second.second * lastDim(r) * elementBytes, lastDim(whole)};
          continue;
        }
        auto [reuse, into] = inPlaceOperand(&op);
        // Only that result takes over the operand (another one, such as a
        // saved pre-activation, is written beside it).
        if (reuse && r == op.getResult(into) && !inputs.count(reuse) && !owner.count(reuse) &&
            llvm::count(op.getOperands(), reuse) == 1 &&
            !constant.count(reuse) && slots[reuse].region == Arena && lastUse[reuse] == here &&
            bytesOf(reuse) == bytesOf(r)) {
          // Take over the dying operand's allocation.
          for (Live &l : live)
            if (l.offset == slots[reuse].offset && l.end == here)
              l.end = end;
          slots[r] = {Arena, slots[reuse].offset, lastDim(r)};
          continue;
        }
        slots[r] = {Arena, allocate(bytesOf(r), end), lastDim(r)};
      }
    }

    auto slotAttr = [&](const Slot &s) {
      return b.getDenseI64ArrayAttr({static_cast<int64_t>(s.region), s.offset, s.ld});
    };
    for (BlockArgument arg : entry.getArguments())
      func.setArgAttr(arg.getArgNumber(), "kern.slot", slotAttr(slots[arg]));
    for (Operation &op : entry.without_terminator()) {
      SmallVector<Attribute> attrs;
      for (Value r : op.getResults())
        attrs.push_back(slotAttr(slots[r]));
      op.setAttr("kern.slots", b.getArrayAttr(attrs));
    }
    func->setAttr("kern.plan", b.getDictionaryAttr({
                                   b.getNamedAttr("weights_bytes", b.getI64IntegerAttr(weightsBytes)),
                                   b.getNamedAttr("constants_bytes", b.getI64IntegerAttr(constantsBytes)),
                                   b.getNamedAttr("arena_bytes", b.getI64IntegerAttr(arenaBytes)),
                               }));
  }
};

} // namespace
