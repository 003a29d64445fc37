//===- DitOps.cpp - dit op type inference and verifiers -------------------===//
//
// Result-type inference is lenient: it computes the result from whatever the
// operands say and never reports errors, so that the verifier, which runs
// after it, can report the precise numbered constraint (Cn in the op's
// description) with both numbers of the mismatch.
//
//===----------------------------------------------------------------------===//

#include "dialects/Dit/IR/DitDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>
#include <cstdio>

using namespace mlir;
using namespace diffc::dit;

namespace {

RankedTensorType ranked(Value value) { return cast<RankedTensorType>(value.getType()); }

Type elementTypeOf(Value value) { return ranked(value).getElementType(); }

/// Prints a number the way a person writes it ("16", "0.01", "1e-06").
std::string num(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", value);
  return buffer;
}

/// Prints a shape as "2x256x384".
std::string shapeString(ArrayRef<int64_t> shape) {
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleave(shape, os, "x");
  return s;
}

/// Checks that every value has the element type of the first (constraint
/// `cnum`), naming the first one that differs.
LogicalResult verifySameElementType(Operation *op, ValueRange values, StringRef cnum) {
  Type expected = elementTypeOf(values.front());
  for (auto [index, value] : llvm::enumerate(values)) {
    if (elementTypeOf(value) != expected)
      return op->emitOpError() << cnum << ": operand #" << index << " has element type "
                               << elementTypeOf(value) << " but operand #0 has " << expected;
  }
  return success();
}

LogicalResult verifyGrid(Operation *op, ArrayRef<int64_t> grid, int64_t tokens, StringRef cnum) {
  if (grid.size() != 2 || grid[0] <= 0 || grid[1] <= 0)
    return op->emitOpError() << cnum << ": grid must have two positive entries, got ["
                             << llvm::make_range(grid.begin(), grid.end()) << "]";
  if (tokens >= 0 && grid[0] * grid[1] != tokens)
    return op->emitOpError() << cnum << ": grid " << grid[0] << "x" << grid[1] << " has "
                             << grid[0] * grid[1] << " cells but the input has " << tokens
                             << " tokens";
  return success();
}

/// Shape of `input` with its last dimension replaced.
RankedTensorType withLastDim(RankedTensorType type, int64_t last, Type element = {}) {
  SmallVector<int64_t> shape(type.getShape());
  if (!shape.empty())
    shape.back() = last;
  return RankedTensorType::get(shape, element ? element : type.getElementType());
}

} // namespace

//===----------------------------------------------------------------------===//
// Embeddings
//===----------------------------------------------------------------------===//

LogicalResult PatchEmbedOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                             Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto x = ranked(adaptor.getInput());
  auto w = ranked(adaptor.getWeight());
  int64_t p = w.getDimSize(2);
  if (p <= 0)
    return failure();
  int64_t tokens = (x.getDimSize(2) / p) * (x.getDimSize(3) / p);
  types.push_back(RankedTensorType::get({x.getDimSize(0), tokens, w.getDimSize(0)},
                                        x.getElementType()));
  return success();
}

LogicalResult PatchEmbedOp::verify() {
  auto x = ranked(getInput());
  auto w = ranked(getWeight());
  int64_t p = w.getDimSize(2);
  if (w.getDimSize(3) != p)
    return emitOpError() << "C1: weight kernel must be square, got " << p << "x"
                         << w.getDimSize(3);
  if (w.getDimSize(1) != x.getDimSize(1))
    return emitOpError() << "C2: weight expects " << w.getDimSize(1)
                         << " input channels but the input has " << x.getDimSize(1);
  if (x.getDimSize(2) % p || x.getDimSize(3) % p)
    return emitOpError() << "C3: input " << x.getDimSize(2) << "x" << x.getDimSize(3)
                         << " is not divisible by patch size " << p;
  if (ranked(getBias()).getDimSize(0) != w.getDimSize(0))
    return emitOpError() << "C4: bias has " << ranked(getBias()).getDimSize(0)
                         << " entries but the embedding width is " << w.getDimSize(0);
  return verifySameElementType(*this, getOperands(), "C5");
}

LogicalResult UnpatchifyOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                             Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto x = ranked(adaptor.getInput());
  ArrayRef<int64_t> grid = adaptor.getGrid();
  int64_t p = adaptor.getPatchSize();
  if (grid.size() != 2 || p <= 0)
    return failure();
  types.push_back(RankedTensorType::get(
      {x.getDimSize(0), x.getDimSize(2) / (p * p), grid[0] * p, grid[1] * p},
      x.getElementType()));
  return success();
}

LogicalResult UnpatchifyOp::verify() {
  auto x = ranked(getInput());
  if (failed(verifyGrid(*this, getGrid(), x.getDimSize(1), "C1")))
    return failure();
  int64_t p = getPatchSize();
  if (p <= 0 || x.getDimSize(2) % (p * p))
    return emitOpError() << "C2: token width " << x.getDimSize(2)
                         << " is not a multiple of patch_size² = " << p * p;
  return success();
}

LogicalResult SinCosPosEmbedOp::inferReturnTypes(MLIRContext *context, std::optional<Location>,
                                                 Adaptor adaptor, SmallVectorImpl<Type> &types) {
  ArrayRef<int64_t> grid = adaptor.getGrid();
  if (grid.size() != 2)
    return failure();
  types.push_back(RankedTensorType::get({grid[0] * grid[1], static_cast<int64_t>(adaptor.getDim())},
                                        Float32Type::get(context)));
  return success();
}

LogicalResult SinCosPosEmbedOp::verify() {
  if (failed(verifyGrid(*this, getGrid(), -1, "C1")))
    return failure();
  if (getDim() <= 0 || getDim() % 4)
    return emitOpError() << "C2: dim must be a positive multiple of 4, got " << getDim();
  if (!(getInterpScale().convertToDouble() > 0))
    return emitOpError() << "C3: interp_scale must be positive, got "
                         << num(getInterpScale().convertToDouble());
  return success();
}

LogicalResult TimestepEmbedOp::inferReturnTypes(MLIRContext *context, std::optional<Location>,
                                                Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(RankedTensorType::get(
      {ranked(adaptor.getInput()).getDimSize(0), static_cast<int64_t>(adaptor.getDim())}, Float32Type::get(context)));
  return success();
}

LogicalResult TimestepEmbedOp::verify() {
  if (getDim() < 2)
    return emitOpError() << "C1: dim must be at least 2, got " << getDim();
  if (!(getMaxPeriod().convertToDouble() > 1))
    return emitOpError() << "C2: max_period must exceed 1, got "
                         << num(getMaxPeriod().convertToDouble());
  return success();
}

LogicalResult LabelEmbedOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                             Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto table = ranked(adaptor.getTable());
  types.push_back(RankedTensorType::get(
      {ranked(adaptor.getLabels()).getDimSize(0), table.getDimSize(1)}, table.getElementType()));
  return success();
}

LogicalResult LabelEmbedOp::verify() {
  if (getNumClasses() <= 0)
    return emitOpError() << "C1: num_classes must be positive, got " << getNumClasses();
  int64_t rows = ranked(getTable()).getDimSize(0);
  if (rows != getNumClasses() + 1)
    return emitOpError() << "C2: table has " << rows << " rows but " << getNumClasses()
                         << " classes need " << getNumClasses() + 1
                         << " (one extra for the null class)";
  return success();
}

LogicalResult TokenMeanOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                            Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto x = ranked(adaptor.getInput());
  types.push_back(
      RankedTensorType::get({x.getDimSize(0), x.getDimSize(2)}, x.getElementType()));
  return success();
}

LogicalResult TokenMeanOp::verify() {
  if (ranked(getInput()).getDimSize(1) < 1)
    return emitOpError() << "C1: needs at least one token, got "
                         << ranked(getInput()).getDimSize(1);
  return success();
}

//===----------------------------------------------------------------------===//
// Normalisation, conditioning, element-wise arithmetic
//===----------------------------------------------------------------------===//

namespace {
/// Shared checks of the grouped norms: C1 group, C2 affine shapes, C3 eps,
/// C4 element types.
LogicalResult verifyGroupedNorm(Operation *op, Value input, int64_t group, ValueRange affine,
                                double epsilon) {
  int64_t width = ranked(input).getShape().back();
  if (group <= 0 || width % group)
    return op->emitOpError() << "C1: group_size " << group
                             << " must be positive and divide the last dimension " << width;
  for (Value v : affine) {
    if (ranked(v).getDimSize(0) != group)
      return op->emitOpError() << "C2: affine parameter has " << ranked(v).getDimSize(0)
                               << " entries but the group size is " << group;
  }
  if (!(epsilon > 0))
    return op->emitOpError() << "C3: epsilon must be positive, got " << epsilon;
  SmallVector<Value> all{input};
  all.append(affine.begin(), affine.end());
  return verifySameElementType(op, all, "C4");
}
} // namespace

int64_t LayerNormOp::getGroup() {
  return getGroupSize() ? *getGroupSize() : ranked(getInput()).getShape().back();
}

LogicalResult LayerNormOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                            Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult LayerNormOp::verify() {
  SmallVector<Value> affine;
  if (getWeight())
    affine.push_back(getWeight());
  if (getBias())
    affine.push_back(getBias());
  return verifyGroupedNorm(*this, getInput(), getGroup(), affine,
                           getEpsilon().convertToDouble());
}

int64_t RmsNormOp::getGroup() {
  return getGroupSize() ? *getGroupSize() : ranked(getInput()).getShape().back();
}

LogicalResult RmsNormOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                          Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult RmsNormOp::verify() {
  SmallVector<Value> affine;
  if (getWeight())
    affine.push_back(getWeight());
  return verifyGroupedNorm(*this, getInput(), getGroup(), affine,
                           getEpsilon().convertToDouble());
}

namespace {
/// (N, D) vector broadcast over the tokens of x : (N, L, D).
LogicalResult verifyPerSampleVector(Operation *op, Value x, Value vec, StringRef what,
                                    StringRef cnum) {
  auto xt = ranked(x);
  auto vt = ranked(vec);
  if (vt.getDimSize(0) != xt.getDimSize(0) || vt.getDimSize(1) != xt.getDimSize(2))
    return op->emitOpError() << cnum << ": " << what << " must be " << xt.getDimSize(0) << "x"
                             << xt.getDimSize(2) << " (batch x width of the input), got "
                             << shapeString(vt.getShape());
  return success();
}
} // namespace

LogicalResult ModulateOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                           Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult ModulateOp::verify() {
  if (failed(verifyPerSampleVector(*this, getInput(), getShift(), "shift", "C1")) ||
      failed(verifyPerSampleVector(*this, getInput(), getScale(), "scale", "C1")))
    return failure();
  return verifySameElementType(*this, getOperands(), "C2");
}

LogicalResult GatedResidualOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                                Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getResidual().getType());
  return success();
}

LogicalResult GatedResidualOp::verify() {
  if (ranked(getResidual()).getShape() != ranked(getUpdate()).getShape())
    return emitOpError() << "C1: residual is " << shapeString(ranked(getResidual()).getShape())
                         << " but the update is " << shapeString(ranked(getUpdate()).getShape());
  if (failed(verifyPerSampleVector(*this, getResidual(), getGate(), "gate", "C2")))
    return failure();
  return verifySameElementType(*this, getOperands(), "C3");
}

namespace {
LogicalResult verifySuffixBroadcast(Operation *op, Value lhs, Value rhs) {
  ArrayRef<int64_t> l = ranked(lhs).getShape();
  ArrayRef<int64_t> r = ranked(rhs).getShape();
  if (r.size() > l.size() || l.take_back(r.size()) != r)
    return op->emitOpError() << "C1: rhs shape " << shapeString(r)
                             << " is not a suffix of lhs shape " << shapeString(l);
  return verifySameElementType(op, {lhs, rhs}, "C2");
}
} // namespace

LogicalResult AddOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                      SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getLhs().getType());
  return success();
}
LogicalResult AddOp::verify() { return verifySuffixBroadcast(*this, getLhs(), getRhs()); }

LogicalResult MulOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                      SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getLhs().getType());
  return success();
}
LogicalResult MulOp::verify() { return verifySuffixBroadcast(*this, getLhs(), getRhs()); }

LogicalResult SplitOp::verify() {
  auto in = ranked(getInput());
  int64_t n = getNumResults();
  int64_t width = in.getShape().back();
  if (n < 1 || width % n)
    return emitOpError() << "C1: cannot split a last dimension of " << width << " into " << n
                         << " equal parts";
  auto expected = withLastDim(in, width / n);
  for (auto [index, result] : llvm::enumerate(getResults())) {
    if (result.getType() != expected)
      return emitOpError() << "C2: result #" << index << " must be " << expected << ", got "
                           << result.getType();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Dense layers
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                         Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(
      withLastDim(ranked(adaptor.getInput()), ranked(adaptor.getWeight()).getDimSize(0)));
  return success();
}

LogicalResult LinearOp::verify() {
  auto x = ranked(getInput());
  auto w = ranked(getWeight());
  if (x.getRank() < 1)
    return emitOpError() << "C1: the input needs at least one dimension";
  if (w.getDimSize(1) != x.getShape().back())
    return emitOpError() << "C1: weight " << shapeString(w.getShape()) << " expects "
                         << w.getDimSize(1) << " input features but the input has "
                         << x.getShape().back();
  if (getBias() && ranked(getBias()).getDimSize(0) != w.getDimSize(0))
    return emitOpError() << "C2: bias has " << ranked(getBias()).getDimSize(0)
                         << " entries but the weight has " << w.getDimSize(0) << " outputs";
  return verifySameElementType(*this, getOperands(), "C3");
}

LogicalResult MlpOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                      SmallVectorImpl<Type> &types) {
  types.push_back(
      withLastDim(ranked(adaptor.getInput()), ranked(adaptor.getFc2Weight()).getDimSize(0)));
  return success();
}

LogicalResult MlpOp::verify() {
  auto x = ranked(getInput());
  auto w1 = ranked(getFc1Weight());
  auto w2 = ranked(getFc2Weight());
  if (w1.getDimSize(1) != x.getShape().back())
    return emitOpError() << "C1: fc1 expects " << w1.getDimSize(1)
                         << " input features but the input has " << x.getShape().back();
  if (w2.getDimSize(1) != w1.getDimSize(0))
    return emitOpError() << "C2: fc2 expects " << w2.getDimSize(1)
                         << " input features but fc1 produces " << w1.getDimSize(0);
  if (bool(getFc1Bias()) != bool(getFc2Bias()))
    return emitOpError() << "C3: biases must be both present or both absent";
  if (getFc1Bias() && (ranked(getFc1Bias()).getDimSize(0) != w1.getDimSize(0) ||
                       ranked(getFc2Bias()).getDimSize(0) != w2.getDimSize(0)))
    return emitOpError() << "C3: biases must have " << w1.getDimSize(0) << " and "
                         << w2.getDimSize(0) << " entries, got "
                         << ranked(getFc1Bias()).getDimSize(0) << " and "
                         << ranked(getFc2Bias()).getDimSize(0);
  if (getActivation() == Activation::SwiGlu)
    return emitOpError() << "C4: activation must be gelu, gelu_tanh or silu; use dit.swiglu";
  return verifySameElementType(*this, getOperands(), "C5");
}

int64_t SwiGluOp::getHidden() {
  int64_t rows = ranked(getGateWeight()).getDimSize(0);
  return getUpWeight() ? rows : rows / 2;
}

LogicalResult SwiGluOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                         Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(
      withLastDim(ranked(adaptor.getInput()), ranked(adaptor.getDownWeight()).getDimSize(0)));
  return success();
}

LogicalResult SwiGluOp::verify() {
  auto x = ranked(getInput());
  auto gate = ranked(getGateWeight());
  if (gate.getDimSize(1) != x.getShape().back())
    return emitOpError() << "C1: gate expects " << gate.getDimSize(1)
                         << " input features but the input has " << x.getShape().back();
  if (getUpWeight()) {
    if (ranked(getUpWeight()).getShape() != gate.getShape())
      return emitOpError() << "C2: up is " << shapeString(ranked(getUpWeight()).getShape())
                           << " but gate is " << shapeString(gate.getShape());
  } else if (gate.getDimSize(0) % 2) {
    return emitOpError() << "C2: a packed gate/up weight needs an even number of rows, got "
                         << gate.getDimSize(0);
  }
  if (ranked(getDownWeight()).getDimSize(1) != getHidden())
    return emitOpError() << "C3: down expects " << ranked(getDownWeight()).getDimSize(1)
                         << " hidden features but the hidden width is " << getHidden();
  return verifySameElementType(*this, getOperands(), "C4");
}

//===----------------------------------------------------------------------===//
// Token mixers
//===----------------------------------------------------------------------===//

double AttentionOp::getScaleValue() {
  if (getScale())
    return getScale()->convertToDouble();
  int64_t dk = ranked(getQuery()).getDimSize(2) / getNumHeads();
  return 1.0 / std::sqrt(static_cast<double>(dk));
}

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                            Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto q = ranked(adaptor.getQuery());
  types.push_back(RankedTensorType::get(
      {q.getDimSize(0), q.getDimSize(1), ranked(adaptor.getValue()).getDimSize(2)},
      q.getElementType()));
  return success();
}

LogicalResult diffc::dit::verifyAttentionOperands(Operation *op, RankedTensorType q, RankedTensorType k,
                                                  RankedTensorType v, int64_t h) {
  for (auto [name, t] : {std::pair{"query", q}, {"key", k}, {"value", v}}) {
    if (h <= 0 || t.getDimSize(2) % h)
      return op->emitOpError() << "C1: " << name << " width " << t.getDimSize(2)
                               << " is not divisible by num_heads " << h;
  }
  if (q.getDimSize(2) != k.getDimSize(2))
    return op->emitOpError() << "C2: query head width " << q.getDimSize(2) / h
                             << " differs from key head width " << k.getDimSize(2) / h;
  if (k.getDimSize(0) != v.getDimSize(0) || k.getDimSize(1) != v.getDimSize(1))
    return op->emitOpError() << "C3: key is " << shapeString(k.getShape()) << " but value is "
                             << shapeString(v.getShape()) << "; batch and length must agree";
  if (q.getDimSize(0) != k.getDimSize(0))
    return op->emitOpError() << "C3: query batch " << q.getDimSize(0) << " differs from key batch "
                             << k.getDimSize(0);
  return success();
}

LogicalResult AttentionOp::verify() {
  if (failed(verifyAttentionOperands(*this, ranked(getQuery()), ranked(getKey()), ranked(getValue()),
                                     getNumHeads())))
    return failure();
  return verifySameElementType(*this, getOperands(), "C4");
}

double GlaOp::getScaleValue() {
  if (getScale())
    return getScale()->convertToDouble();
  int64_t dk = ranked(getQuery()).getDimSize(2) / getNumHeads();
  return 1.0 / std::sqrt(static_cast<double>(dk));
}

LogicalResult GlaOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                      SmallVectorImpl<Type> &types) {
  auto q = ranked(adaptor.getQuery());
  types.push_back(RankedTensorType::get(
      {q.getDimSize(0), q.getDimSize(1), ranked(adaptor.getValue()).getDimSize(2)},
      q.getElementType()));
  return success();
}

LogicalResult GlaOp::verify() {
  auto q = ranked(getQuery());
  auto v = ranked(getValue());
  int64_t h = getNumHeads();
  for (Value t : getOperands()) {
    if (h <= 0 || ranked(t).getDimSize(2) % h)
      return emitOpError() << "C1: width " << ranked(t).getDimSize(2)
                           << " is not divisible by num_heads " << h;
  }
  for (Value t : {getKey(), getGateLogits()}) {
    if (ranked(t).getShape() != q.getShape())
      return emitOpError() << "C2: query is " << shapeString(q.getShape()) << " but "
                           << (t == getKey() ? "key" : "gate_logits") << " is "
                           << shapeString(ranked(t).getShape());
  }
  if (v.getDimSize(0) != q.getDimSize(0) || v.getDimSize(1) != q.getDimSize(1))
    return emitOpError() << "C3: value is " << shapeString(v.getShape())
                         << " but batch and length must match the query's "
                         << shapeString(q.getShape());
  if (!(getGateNormalizer().convertToDouble() > 0) || getChunkSize() <= 0)
    return emitOpError() << "C4: gate_normalizer and chunk_size must be positive, got "
                         << num(getGateNormalizer().convertToDouble()) << " and " << getChunkSize();
  return verifySameElementType(*this, getOperands(), "C5");
}

LogicalResult ReorderTokensOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                                Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult ReorderTokensOp::verify() {
  if (failed(verifyGrid(*this, getGrid(), ranked(getInput()).getDimSize(1), "C1")))
    return failure();
  auto colMajor = [](ScanOrder o) {
    return o == ScanOrder::ColMajor || o == ScanOrder::ColMajorReversed;
  };
  if ((colMajor(getFrom()) || colMajor(getTo())) && getGrid()[0] != getGrid()[1])
    return emitOpError() << "C2: column-major orders need a square grid, got " << getGrid()[0]
                         << "x" << getGrid()[1];
  return success();
}

LogicalResult DepthwiseConv2dOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                                  Adaptor adaptor,
                                                  SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult DepthwiseConv2dOp::verify() {
  auto x = ranked(getInput());
  if (failed(verifyGrid(*this, getGrid(), x.getDimSize(1), "C1")))
    return failure();
  auto w = ranked(getWeight());
  int64_t d = x.getDimSize(2);
  if (w.getDimSize(0) != d || w.getDimSize(1) != 1 || w.getDimSize(2) != w.getDimSize(3) ||
      w.getDimSize(2) % 2 == 0)
    return emitOpError() << "C2: weight must be " << d << "x1xkxk with odd k, got "
                         << shapeString(w.getShape());
  if (ranked(getBias()).getDimSize(0) != d)
    return emitOpError() << "C3: bias has " << ranked(getBias()).getDimSize(0)
                         << " entries but the input has " << d << " channels";
  return verifySameElementType(*this, getOperands(), "C4");
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

int64_t MoeOp::getNumExperts() { return ranked(getRouter()).getDimSize(0); }

int64_t MoeOp::getExpertHidden() {
  if (getExpertWeights().empty())
    return 0;
  auto first = ranked(getExpertWeights().front());
  // swiglu's gate is (E, F, D) in out_in layout; gelu's W1 is (E, F, D) out_in
  // or (E, D, F) in_out.
  return getWeightLayout() == WeightLayout::OutIn ? first.getDimSize(1) : first.getDimSize(2);
}

int64_t MoeOp::getSlotsPerSample() {
  int64_t tokens = ranked(getInput()).getDimSize(1);
  if (auto tc = dyn_cast<TokenChoiceAttr>(getRouting()))
    return tc.getTopK() * tokens;
  auto ec = cast<ExpertChoiceAttr>(getRouting());
  int64_t experts = getNumExperts();
  return experts * static_cast<int64_t>(ec.getCapacity().convertToDouble() * tokens / experts);
}

LogicalResult MoeOp::inferReturnTypes(MLIRContext *, std::optional<Location>, Adaptor adaptor,
                                      SmallVectorImpl<Type> &types) {
  types.push_back(adaptor.getInput().getType());
  return success();
}

LogicalResult MoeOp::verify() {
  auto x = ranked(getInput());
  int64_t d = x.getDimSize(2);
  int64_t tokens = x.getDimSize(1);
  auto router = ranked(getRouter());
  int64_t e = router.getDimSize(0);
  if (e < 1 || router.getDimSize(1) != d)
    return emitOpError() << "C1: router must be Ex" << d << " with E >= 1, got "
                         << shapeString(router.getShape());
  bool swiglu = getActivation() == Activation::SwiGlu;
  if (getActivation() == Activation::Silu)
    return emitOpError() << "C2: expert activation must be swiglu, gelu or gelu_tanh";
  size_t expected = swiglu ? 3 : 2;
  if (getExpertWeights().size() != expected)
    return emitOpError() << "C2: " << stringifyActivation(getActivation()) << " experts take "
                         << expected << " weights, got " << getExpertWeights().size();
  int64_t f = getExpertHidden();
  bool outIn = getWeightLayout() == WeightLayout::OutIn;
  // Expected shape of each expert matrix mapping `in` features to `out`.
  auto matrix = [&](int64_t out, int64_t in) -> SmallVector<int64_t> {
    return outIn ? SmallVector<int64_t>{e, out, in} : SmallVector<int64_t>{e, in, out};
  };
  SmallVector<SmallVector<int64_t>> shapes;
  if (swiglu)
    shapes = {matrix(f, d), matrix(f, d), matrix(d, f)};
  else
    shapes = {matrix(f, d), matrix(d, f)};
  for (auto [index, weight] : llvm::enumerate(getExpertWeights())) {
    if (ranked(weight).getShape() != ArrayRef<int64_t>(shapes[index]))
      return emitOpError() << "C3: expert weight #" << index << " must be "
                           << shapeString(shapes[index]) << " for "
                           << stringifyWeightLayout(getWeightLayout()) << " layout, got "
                           << shapeString(ranked(weight).getShape());
  }
  if (auto tc = dyn_cast<TokenChoiceAttr>(getRouting())) {
    if (tc.getTopK() > e)
      return emitOpError() << "C4: top_k " << tc.getTopK() << " exceeds the " << e
                           << " experts";
  } else {
    auto ec = cast<ExpertChoiceAttr>(getRouting());
    int64_t perExpert = static_cast<int64_t>(ec.getCapacity().convertToDouble() * tokens / e);
    if (perExpert < 1 || perExpert > tokens)
      return emitOpError() << "C5: capacity " << num(ec.getCapacity().convertToDouble()) << " gives " << perExpert
                           << " tokens per expert for " << tokens << " tokens and " << e
                           << " experts; need 1 to " << tokens;
  }
  return verifySameElementType(*this, getOperands(), "C6");
}

//===----------------------------------------------------------------------===//
// Token masking
//===----------------------------------------------------------------------===//

LogicalResult MaskTokensOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                             Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto x = ranked(adaptor.getInput());
  types.push_back(RankedTensorType::get(
      {x.getDimSize(0), ranked(adaptor.getKeep()).getDimSize(1), x.getDimSize(2)},
      x.getElementType()));
  return success();
}

LogicalResult MaskTokensOp::verify() {
  auto x = ranked(getInput());
  auto keep = ranked(getKeep());
  if (keep.getDimSize(0) != x.getDimSize(0) || keep.getDimSize(1) < 1 ||
      keep.getDimSize(1) > x.getDimSize(1))
    return emitOpError() << "C1: keep must be " << x.getDimSize(0) << "xK with 1 <= K <= "
                         << x.getDimSize(1) << ", got " << shapeString(keep.getShape());
  return success();
}

LogicalResult UnmaskTokensOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                               Adaptor adaptor, SmallVectorImpl<Type> &types) {
  auto x = ranked(adaptor.getInput());
  types.push_back(RankedTensorType::get(
      {x.getDimSize(0), static_cast<int64_t>(adaptor.getNumTokens()), x.getDimSize(2)},
      x.getElementType()));
  return success();
}

LogicalResult UnmaskTokensOp::verify() {
  auto x = ranked(getInput());
  auto keep = ranked(getKeep());
  if (keep.getDimSize(0) != x.getDimSize(0) || keep.getDimSize(1) != x.getDimSize(1))
    return emitOpError() << "C1: keep must be " << x.getDimSize(0) << "x" << x.getDimSize(1)
                         << ", got " << shapeString(keep.getShape());
  if (static_cast<int64_t>(getNumTokens()) < x.getDimSize(1))
    return emitOpError() << "C2: num_tokens " << getNumTokens() << " is less than the "
                         << x.getDimSize(1) << " kept tokens";
  return success();
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

namespace {
RankedTensorType perSampleLoss(Value batched) {
  return RankedTensorType::get({ranked(batched).getDimSize(0)},
                               Float32Type::get(batched.getContext()));
}

/// Prediction (N, C', H, W) against targets (N, C, H, W): same batch and
/// spatial size.
LogicalResult verifyImageLike(Operation *op, Value prediction, Value target, StringRef cnum) {
  ArrayRef<int64_t> p = ranked(prediction).getShape();
  ArrayRef<int64_t> t = ranked(target).getShape();
  if (p[0] != t[0] || p[2] != t[2] || p[3] != t[3])
    return op->emitOpError() << cnum << ": prediction " << shapeString(p)
                             << " must have the batch and spatial size of " << shapeString(t);
  return success();
}
} // namespace

LogicalResult DdpmLossOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                           Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(perSampleLoss(adaptor.getXStart()));
  return success();
}

LogicalResult DdpmLossOp::verify() {
  auto x0 = ranked(getXStart());
  if (ranked(getPrediction()).getDimSize(1) != 2 * x0.getDimSize(1))
    return emitOpError() << "C1: prediction has " << ranked(getPrediction()).getDimSize(1)
                         << " channels but learned variance needs " << 2 * x0.getDimSize(1);
  for (Value v : {getXT(), getNoise()}) {
    if (ranked(v).getShape() != x0.getShape())
      return emitOpError() << "C2: " << shapeString(ranked(v).getShape())
                           << " differs from x_start " << shapeString(x0.getShape());
  }
  if (failed(verifyImageLike(*this, getPrediction(), getXStart(), "C2")))
    return failure();
  if (ranked(getTimesteps()).getDimSize(0) != x0.getDimSize(0) || getNumTimesteps() < 2)
    return emitOpError() << "C3: timesteps must have " << x0.getDimSize(0)
                         << " entries and num_timesteps >= 2, got "
                         << ranked(getTimesteps()).getDimSize(0) << " and "
                         << getNumTimesteps();
  return success();
}

LogicalResult RfLossOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                         Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(perSampleLoss(adaptor.getXStart()));
  return success();
}

LogicalResult RfLossOp::verify() {
  auto x0 = ranked(getXStart());
  if (ranked(getNoise()).getShape() != x0.getShape())
    return emitOpError() << "C1: noise " << shapeString(ranked(getNoise()).getShape())
                         << " differs from x_start " << shapeString(x0.getShape());
  if (failed(verifyImageLike(*this, getPrediction(), getXStart(), "C2")))
    return failure();
  if (ranked(getPrediction()).getDimSize(1) < x0.getDimSize(1))
    return emitOpError() << "C2: prediction has " << ranked(getPrediction()).getDimSize(1)
                         << " channels, fewer than the " << x0.getDimSize(1) << " of x_start";
  return success();
}

LogicalResult EdmLossOp::inferReturnTypes(MLIRContext *, std::optional<Location>,
                                          Adaptor adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(perSampleLoss(adaptor.getXStart()));
  return success();
}

LogicalResult EdmLossOp::verify() {
  auto x0 = ranked(getXStart());
  for (Value v : {getRaw(), getXNoisy()}) {
    if (ranked(v).getShape() != x0.getShape())
      return emitOpError() << "C1: " << shapeString(ranked(v).getShape())
                           << " differs from x_start " << shapeString(x0.getShape());
  }
  if (ranked(getSigma()).getDimSize(0) != x0.getDimSize(0))
    return emitOpError() << "C2: sigma has " << ranked(getSigma()).getDimSize(0)
                         << " entries for a batch of " << x0.getDimSize(0);
  if (!(getSigmaData().convertToDouble() > 0))
    return emitOpError() << "C2: sigma_data must be positive, got "
                         << num(getSigmaData().convertToDouble());
  if (getKeep()) {
    int64_t p = getPatchSize();
    if (p <= 0 || x0.getDimSize(2) % p || x0.getDimSize(3) % p)
      return emitOpError() << "C3: image " << x0.getDimSize(2) << "x" << x0.getDimSize(3)
                           << " is not divisible by patch_size " << p;
    int64_t patches = (x0.getDimSize(2) / p) * (x0.getDimSize(3) / p);
    auto keep = ranked(getKeep());
    if (keep.getDimSize(0) != x0.getDimSize(0) || keep.getDimSize(1) < 1 ||
        keep.getDimSize(1) > patches)
      return emitOpError() << "C3: keep must be " << x0.getDimSize(0) << "xK with 1 <= K <= "
                           << patches << ", got " << shapeString(keep.getShape());
  }
  return success();
}

LogicalResult MoeBalanceLossOp::inferReturnTypes(MLIRContext *context, std::optional<Location>,
                                                 Adaptor, SmallVectorImpl<Type> &types) {
  types.push_back(RankedTensorType::get({}, Float32Type::get(context)));
  return success();
}

LogicalResult MoeBalanceLossOp::verify() {
  auto router = ranked(getRouter());
  int64_t d = ranked(getInput()).getDimSize(2);
  if (router.getDimSize(1) != d)
    return emitOpError() << "C1: router is " << shapeString(router.getShape())
                         << " but the input width is " << d;
  if (getTopK() < 1 || getTopK() > router.getDimSize(0) ||
      !(getCoefficient().convertToDouble() >= 0))
    return emitOpError() << "C2: need 1 <= top_k <= " << router.getDimSize(0)
                         << " and coefficient >= 0, got " << getTopK() << " and "
                         << num(getCoefficient().convertToDouble());
  return success();
}

#define GET_OP_CLASSES
#include "dialects/Dit/IR/DitOps.cpp.inc"
