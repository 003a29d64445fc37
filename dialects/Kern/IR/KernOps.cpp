//===- KernOps.cpp - kern op verifiers -------------------------------------===//
//
// Kern ops are produced by the compiler's own passes, so their verifiers
// guard the passes' invariants; each check carries the constraint number of
// the op's description.
//
//===----------------------------------------------------------------------===//

#include "dialects/Kern/IR/KernDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace diffc;
using namespace diffc::kern;

namespace {

RankedTensorType ranked(Value v) { return cast<RankedTensorType>(v.getType()); }

std::string shapeOf(Value v) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleave(ranked(v).getShape(), os, "x");
  return s;
}

LogicalResult sameElementType(Operation *op, StringRef cnum) {
  Type first;
  for (Value v : op->getOperands()) {
    Type e = ranked(v).getElementType();
    if (!first)
      first = e;
    else if (e != first)
      return op->emitOpError() << cnum << ": operands mix element types " << first << " and "
                               << e;
  }
  return success();
}

/// residual (N, L, M) with the result's type and gate (N, M), together.
LogicalResult verifyEpilogue(Operation *op, Value result, Value residual, Value gate,
                             StringRef cnum) {
  if (bool(residual) != bool(gate))
    return op->emitOpError() << cnum << ": residual and gate must come together";
  if (!residual)
    return success();
  auto r = ranked(residual);
  if (r != ranked(result) || r.getRank() != 3)
    return op->emitOpError() << cnum << ": residual must be a rank-3 tensor of the result's type "
                             << result.getType() << ", got " << residual.getType();
  auto g = ranked(gate);
  if (g.getRank() != 2 || g.getDimSize(0) != r.getDimSize(0) ||
      g.getDimSize(1) != r.getDimSize(2))
    return op->emitOpError() << cnum << ": gate must be " << r.getDimSize(0) << "x"
                             << r.getDimSize(2) << ", got " << shapeOf(gate);
  return success();
}

} // namespace

LogicalResult GemmOp::verify() {
  auto x = ranked(getInput());
  auto w = ranked(getWeight());
  if (w.getRank() != 2 || w.getDimSize(1) != x.getShape().back())
    return emitOpError() << "C1: weight " << shapeOf(getWeight()) << " does not take "
                         << x.getShape().back() << " input features";
  if (getBias() && (ranked(getBias()).getRank() != 1 ||
                    ranked(getBias()).getDimSize(0) != w.getDimSize(0)))
    return emitOpError() << "C1: bias " << shapeOf(getBias()) << " does not match "
                         << w.getDimSize(0) << " outputs";
  SmallVector<int64_t> shape(x.getShape());
  shape.back() = w.getDimSize(0);
  if (ranked(getResult()).getShape() != ArrayRef<int64_t>(shape))
    return emitOpError() << "C2: result must have shape " << llvm::make_range(shape.begin(), shape.end());
  if (failed(verifyEpilogue(*this, getResult(), getResidual(), getGate(), "C3")))
    return failure();
  if (Value z = getPreactivation()) {
    if (z.getType() != getResult().getType())
      return emitOpError() << "C5: preactivation must have the result's type " << getResult().getType()
                           << ", got " << z.getType();
    if (getAct() == Act::None && !getGate())
      return emitOpError() << "C5: a preactivation without an activation or a gated residual is the "
                              "result itself";
  }
  return sameElementType(*this, "C4");
}

LogicalResult AttentionOp::verify() {
  auto q = ranked(getQuery()), k = ranked(getKey()), v = ranked(getValue());
  if (q.getRank() != 3 || k.getRank() != 3 || v.getRank() != 3)
    return emitOpError() << "C1: query, key and value must be rank 3, got " << shapeOf(getQuery())
                         << ", " << shapeOf(getKey()) << ", " << shapeOf(getValue());
  int64_t h = getNumHeads();
  if (failed(dit::verifyAttentionOperands(*this, q, k, v, h)))
    return failure();
  if (failed(sameElementType(*this, "C4")))
    return failure();
  auto out = ranked(getResult());
  if (out.getElementType() != q.getElementType())
    return emitOpError() << "C4: result element type " << out.getElementType()
                         << " differs from the operands' " << q.getElementType();
  SmallVector<int64_t> outShape{q.getDimSize(0), q.getDimSize(1), v.getDimSize(2)};
  if (out.getShape() != ArrayRef<int64_t>(outShape))
    return emitOpError() << "C5: result must be " << outShape[0] << "x" << outShape[1] << "x"
                         << outShape[2] << ", got " << shapeOf(getResult());
  SmallVector<int64_t> lseShape{q.getDimSize(0), h, q.getDimSize(1)};
  if (ranked(getLogsumexp()).getShape() != ArrayRef<int64_t>(lseShape))
    return emitOpError() << "C5: logsumexp must be " << lseShape[0] << "x" << lseShape[1] << "x"
                         << lseShape[2] << ", got " << shapeOf(getLogsumexp());
  return success();
}

LogicalResult SwiGluOp::verify() {
  auto x = ranked(getInput());
  auto gate = ranked(getGateWeight());
  int64_t hidden = getUpWeight() ? gate.getDimSize(0) : gate.getDimSize(0) / 2;
  if (gate.getDimSize(1) != x.getShape().back() ||
      (getUpWeight() && ranked(getUpWeight()) != gate) ||
      ranked(getDownWeight()).getDimSize(1) != hidden)
    return emitOpError() << "C1: weights " << shapeOf(getGateWeight()) << ", "
                         << (getUpWeight() ? shapeOf(getUpWeight()) : std::string("(packed)"))
                         << ", " << shapeOf(getDownWeight()) << " do not fit input width "
                         << x.getShape().back();
  if (failed(verifyEpilogue(*this, getResult(), getResidual(), getResidualGate(), "C2")))
    return failure();
  return sameElementType(*this, "C3");
}

LogicalResult NormOp::verify() {
  auto x = ranked(getInput());
  int64_t group = getGroupSize();
  if (group <= 0 || x.getShape().back() % group || !(getEpsilon().convertToDouble() > 0))
    return emitOpError() << "C1: group_size " << group << " must divide "
                         << x.getShape().back() << " and epsilon must be positive";
  for (Value v : {getWeight(), getBias()})
    if (v && (ranked(v).getRank() != 1 || ranked(v).getDimSize(0) != group))
      return emitOpError() << "C1: affine parameter " << shapeOf(v) << " must be " << group;
  if (bool(getShift()) != bool(getScale()))
    return emitOpError() << "C2: shift and scale must come together";
  if (getShift()) {
    for (Value v : {getShift(), getScale()}) {
      auto t = ranked(v);
      if (x.getRank() != 3 || t.getRank() != 2 || t.getDimSize(0) != x.getDimSize(0) ||
          t.getDimSize(1) != x.getDimSize(2))
        return emitOpError() << "C2: modulation " << shapeOf(v)
                             << " must be batch x width of the input " << shapeOf(getInput());
    }
  }
  if (getSiluGate() && ranked(getSiluGate()) != x)
    return emitOpError() << "C3: silu_gate " << getSiluGate().getType()
                         << " must have the input's type " << getInput().getType();
  if (ranked(getResult()) != x)
    return emitOpError() << "C4: result type must be the input's " << getInput().getType();
  if (bool(getResidual()) != bool(getResidualGate()) || bool(getResidual()) != bool(getSum()))
    return emitOpError() << "C5: residual, residual_gate and the sum result must come together";
  if (getResidual()) {
    for (Value v : {getResidual(), getSum()})
      if (ranked(v) != x)
        return emitOpError() << "C5: " << (v == getSum() ? "sum " : "residual ") << v.getType()
                             << " must have the input's type " << getInput().getType();
    auto g = ranked(getResidualGate());
    if (x.getRank() != 3 || g.getRank() != 2 || g.getDimSize(0) != x.getDimSize(0) ||
        g.getDimSize(1) != x.getDimSize(2))
      return emitOpError() << "C5: residual_gate " << shapeOf(getResidualGate())
                           << " must be batch x width of the input " << shapeOf(getInput());
  }
  return sameElementType(*this, "C4");
}

LogicalResult MoeOp::verify() {
  auto x = ranked(getInput());
  int64_t d = x.getShape().back();
  auto router = ranked(getRouter());
  if (router.getRank() != 2 || router.getDimSize(1) != d || x.getRank() != 3)
    return emitOpError() << "C1: router " << shapeOf(getRouter()) << " does not fit input "
                         << shapeOf(getInput());
  size_t expected = getActivation() == dit::Activation::SwiGlu ? 3 : 2;
  if (getExpertWeights().size() != expected)
    return emitOpError() << "C1: expected " << expected << " expert weights, got "
                         << getExpertWeights().size();
  for (Value w : getExpertWeights())
    if (ranked(w).getRank() != 3 || ranked(w).getDimSize(0) != router.getDimSize(0))
      return emitOpError() << "C1: expert weight " << shapeOf(w) << " must lead with "
                           << router.getDimSize(0) << " experts";
  int present = bool(getSharedGate()) + bool(getSharedUp()) + bool(getSharedDown());
  if (present != 0 && present != 3)
    return emitOpError() << "C2: shared expert weights must be all three or none";
  if (present) {
    auto g = ranked(getSharedGate());
    if (g.getRank() != 2 || g.getDimSize(1) != d || ranked(getSharedUp()) != g ||
        ranked(getSharedDown()).getDimSize(0) != d ||
        ranked(getSharedDown()).getDimSize(1) != g.getDimSize(0))
      return emitOpError() << "C2: shared weights " << shapeOf(getSharedGate()) << ", "
                           << shapeOf(getSharedUp()) << ", " << shapeOf(getSharedDown())
                           << " do not fit width " << d;
  }
  if (failed(verifyEpilogue(*this, getResult(), getResidual(), getResidualGate(), "C3")))
    return failure();
  if (Value act = getActivations()) {
    std::optional<int64_t> n = getActivationElements();
    if (!n)
      return emitOpError() << "C5: only token-choice routing with SwiGLU experts saves activations";
    auto expected = RankedTensorType::get({*n}, x.getElementType());
    if (act.getType() != expected)
      return emitOpError() << "C5: activations must be " << expected << ", got " << act.getType();
  }
  return sameElementType(*this, "C4");
}

std::optional<int64_t> MoeOp::getActivationElements() {
  auto tc = dyn_cast<dit::TokenChoiceAttr>(getRouting());
  if (!tc || getActivation() != dit::Activation::SwiGlu)
    return std::nullopt;
  auto x = ranked(getInput());
  int64_t tokens = x.getDimSize(0) * x.getDimSize(1), d = x.getDimSize(2);
  auto w = ranked(getExpertWeights()[0]);
  int64_t f = getWeightLayout() == dit::WeightLayout::OutIn ? w.getDimSize(1) : w.getDimSize(2);
  int64_t n = tokens * tc.getTopK() * (3 * f + d);
  if (Value g = getSharedGate())
    n += tokens * (3 * ranked(g).getDimSize(0) + d);
  return n;
}

LogicalResult DwConvOp::verify() {
  auto x = ranked(getInput());
  ArrayRef<int64_t> grid = getGrid();
  if (grid.size() != 2 || x.getRank() != 3 || grid[0] * grid[1] != x.getDimSize(1))
    return emitOpError() << "C1: grid does not cover the " << x.getDimSize(1) << " tokens";
  auto w = ranked(getWeight());
  if (w.getRank() != 4 || w.getDimSize(0) != x.getDimSize(2) || w.getDimSize(2) % 2 == 0)
    return emitOpError() << "C1: weight " << shapeOf(getWeight()) << " is not Dx1xkxk with odd k";
  auto colMajor = [](dit::ScanOrder o) {
    return o == dit::ScanOrder::ColMajor || o == dit::ScanOrder::ColMajorReversed;
  };
  if ((colMajor(getFrom()) || colMajor(getTo())) && grid[0] != grid[1])
    return emitOpError() << "C2: column-major orders need a square grid";
  return success();
}

LogicalResult PatchEmbedOp::verify() {
  auto x = ranked(getInput());
  auto w = ranked(getWeight());
  auto r = ranked(getResult());
  if (x.getRank() != 4 || w.getRank() != 4 || w.getDimSize(1) != x.getDimSize(1) ||
      r.getRank() != 3 || r.getDimSize(2) != w.getDimSize(0))
    return emitOpError() << "C1: input " << shapeOf(getInput()) << " and weight "
                         << shapeOf(getWeight()) << " do not give " << shapeOf(getResult());
  if (getPositions()) {
    auto p = ranked(getPositions());
    if (p.getRank() != 2 || p.getDimSize(0) != r.getDimSize(1) || p.getDimSize(1) != r.getDimSize(2))
      return emitOpError() << "C2: positions " << shapeOf(getPositions()) << " must be "
                           << r.getDimSize(1) << "x" << r.getDimSize(2);
  }
  return success();
}

LogicalResult CastOp::verify() {
  if (ranked(getInput()).getShape() != ranked(getResult()).getShape())
    return emitOpError() << "C1: shape changes from " << shapeOf(getInput()) << " to "
                         << shapeOf(getResult());
  return success();
}

bool VjpOp::isLoss() {
  StringRef f = getForward();
  return f == "dit.ddpm_loss" || f == "dit.rf_loss" || f == "dit.edm_loss";
}

ValueRange VjpOp::getSaved() {
  return getInputs().drop_front(getPresent().size()).take_front(getNumSaved());
}

ValueRange VjpOp::getIncoming() {
  return getInputs()
      .drop_front(getPresent().size() + getNumSaved())
      .drop_back((getInputGradAct() ? 1 : 0) + (getInputGradAddend() ? 1 : 0));
}

Value VjpOp::getInputPreactivation() {
  return getInputGradAct() ? getInputs().back() : Value();
}

Value VjpOp::getInputGradAddendValue() {
  return getInputGradAddend() ? getInputs().back() : Value();
}

ResultRange VjpOp::getGradients() { return getResults().take_front(getGradsOf().size()); }

ResultRange VjpOp::getColumnSumResults() {
  return getResults().drop_front(std::min<size_t>(getGradsOf().size(), getNumResults()));
}

LogicalResult VjpOp::verify() {
  ArrayRef<int64_t> present = getPresent();
  if (present.size() > getInputs().size())
    return emitOpError() << "C1: " << present.size() << " present slots but only "
                         << getInputs().size() << " operands";
  int64_t saved = getNumSaved();
  if (saved < 0 || (saved > 0 && isLoss()))
    return emitOpError() << "C4: " << saved << " saved values for a "
                         << (isLoss() ? "loss" : "backward kernel");
  if (present.size() + saved > getInputs().size())
    return emitOpError() << "C4: " << present.size() << " present slots and " << saved
                         << " saved values but only " << getInputs().size() << " operands";
  const bool folded = getInputGradAct().has_value();
  const bool summed = getInputGradAddend();
  if (folded && summed)
    return emitOpError() << "C5: input_grad_act and input_grad_addend are exclusive (kern.gemm, kern.norm)";
  if (present.size() + saved + (folded ? 1 : 0) > getInputs().size())
    return emitOpError() << "C5: input_grad_act needs z after the incoming gradients";
  if (present.size() + saved + (summed ? 1 : 0) > getInputs().size())
    return emitOpError() << "C6: input_grad_addend needs the addend after the incoming gradients";
  size_t incoming = getInputs().size() - present.size() - saved - (folded || summed ? 1 : 0);
  if (isLoss() != (incoming == 0))
    return emitOpError() << "C" << (saved > 0 ? "4" : "3") << ": "
                         << (isLoss() ? "a loss takes no incoming gradient, got "
                                      : "needs an incoming gradient, got ")
                         << incoming;
  for (size_t i = 1; i < present.size(); ++i)
    if (present[i] <= present[i - 1])
      return emitOpError() << "C1: present slots must increase, got " << present[i - 1] << " then "
                           << present[i];
  const size_t grads = getGradsOf().size();
  if (getColumnSums()) {
    if (getForward() != "kern.attention" && getForward() != "dit.attention")
      return emitOpError() << "C7: column_sums on a backward of " << getForward()
                           << "; only an attention backward sums its gradients";
    if (getNumResults() != 2 * grads)
      return emitOpError() << "C7: " << grads << " gradients and their column sums need " << 2 * grads
                           << " results, got " << getNumResults();
    for (size_t i = 0; i < grads; ++i) {
      auto grad = cast<RankedTensorType>(getResult(i).getType());
      auto want = RankedTensorType::get({grad.getShape().back()}, grad.getElementType());
      if (getResult(grads + i).getType() != want)
        return emitOpError() << "C7: column sum result #" << grads + i << " must be " << want << ", got "
                             << getResult(grads + i).getType();
    }
  } else if (grads != getNumResults()) {
    return emitOpError() << "C2: " << grads << " gradient slots for " << getNumResults() << " results";
  }
  for (auto [i, slot] : llvm::enumerate(getGradsOf())) {
    auto it = llvm::find(present, slot);
    if (it == present.end())
      return emitOpError() << "C2: gradient of slot " << slot << ", which is not present";
    Type expected = getInputs()[it - present.begin()].getType();
    if (getResult(i).getType() != expected)
      return emitOpError() << "C2: result #" << i << " must be " << expected << ", got "
                           << getResult(i).getType();
  }
  if (!isLoss() && getLossWeight())
    return emitOpError() << "C3: only loss gradients take a loss_weight";
  if (isLoss() && !getLossWeight())
    return emitOpError() << "C3: a loss gradient needs a loss_weight";
  // Both folds act on the input's gradient, which must be wanted, and
  // their extra operand has the input's type.
  auto checkInputGradOperand = [&](const char *c, const char *attr, Value extra,
                                   const char *what) -> LogicalResult {
    if (present.empty() || present[0] != 0 || !llvm::is_contained(getGradsOf(), 0))
      return emitOpError() << c << ": " << attr << " needs the gradient of slot 0 (the input)";
    if (extra.getType() != getInputs()[0].getType())
      return emitOpError() << c << ": " << what << " must be " << getInputs()[0].getType() << ", got "
                           << extra.getType();
    return success();
  };
  if (folded) {
    if (getForward() != "kern.gemm" || *getInputGradAct() == Act::None)
      return emitOpError() << "C5: input_grad_act " << stringifyAct(*getInputGradAct())
                           << " on a backward of " << getForward()
                           << "; only a kern.gemm backward folds an activation";
    return checkInputGradOperand("C5", "input_grad_act", getInputPreactivation(), "z");
  }
  if (summed) {
    if (getForward() != "kern.norm")
      return emitOpError() << "C6: input_grad_addend on a backward of " << getForward()
                           << "; only a kern.norm backward adds to its input gradient";
    return checkInputGradOperand("C6", "input_grad_addend", getInputGradAddendValue(), "the addend");
  }
  return success();
}

Value PointwiseOp::getYielded() {
  return cast<YieldOp>(getBody().front().getTerminator()).getValue();
}

LogicalResult PointwiseOp::verify() {
  Block &body = getBody().front();
  if (getInputs().empty())
    return emitOpError() << "C1: needs at least one input";
  if (body.getNumArguments() != getInputs().size())
    return emitOpError() << "C1: the body has " << body.getNumArguments() << " arguments for "
                         << getInputs().size() << " inputs";
  for (BlockArgument arg : body.getArguments())
    if (!arg.getType().isF32())
      return emitOpError() << "C1: body argument #" << arg.getArgNumber() << " must be f32, got "
                           << arg.getType();
  ArrayRef<int64_t> shape = ranked(getResult()).getShape();
  for (auto [i, input] : llvm::enumerate(getInputs())) {
    auto type = ranked(input);
    ArrayRef<int64_t> in = type.getShape();
    bool suffix = in.size() <= shape.size() && in == shape.take_back(in.size());
    if (type.getNumElements() != 1 && !suffix)
      return emitOpError() << "C2: input #" << i << " (" << shapeOf(input)
                           << ") does not broadcast to the result (" << shapeOf(getResult()) << ")";
  }
  for (Operation &op : body.without_terminator()) {
    bool allowed = isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp, arith::NegFOp,
                       arith::MaximumFOp, arith::MinimumFOp, math::ExpOp, math::LogOp, math::TanhOp,
                       math::ErfOp, math::SqrtOp, math::RsqrtOp, math::AbsFOp>(op);
    if (auto c = dyn_cast<arith::ConstantOp>(op))
      allowed = isa<FloatAttr>(c.getValue());
    if (!allowed)
      return op.emitOpError() << "C3: is not allowed in a kern.pointwise body";
    for (Type t : op.getResultTypes())
      if (!t.isF32())
        return op.emitOpError() << "C3: kern.pointwise bodies compute in f32, got " << t;
  }
  if (!isa<YieldOp>(body.getTerminator()))
    return emitOpError() << "C3: the body must end in kern.yield";
  return success();
}

#define GET_OP_CLASSES
#include "dialects/Kern/IR/KernOps.cpp.inc"
