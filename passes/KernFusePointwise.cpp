//===- KernFusePointwise.cpp - element-wise chains into generated kernels -===//
//
// Every element-wise op left after the pattern fusions (dit.add, dit.mul,
// dit.silu, dit.gelu, kern.cast) becomes a kern.pointwise whose body spells
// out its arithmetic; then each pointwise op absorbs the pointwise producers
// of its inputs that have no other use and the result's shape, so a chain
// reads its inputs once and writes one result.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/IRMapping.h"

namespace diffc {
#define GEN_PASS_DEF_KERNFUSEPOINTWISE
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

/// Builds the body of a one-op pointwise kernel: `compute` receives the f32
/// arguments and returns the yielded value.
kern::PointwiseOp buildPointwise(OpBuilder &b, Location loc, Type resultType, ValueRange inputs,
                                 function_ref<Value(OpBuilder &, Location, ValueRange)> compute) {
  auto op = b.create<kern::PointwiseOp>(loc, resultType, inputs);
  Block *body = b.createBlock(&op.getBody());
  for (size_t i = 0; i < inputs.size(); ++i)
    body->addArgument(b.getF32Type(), loc);
  b.setInsertionPointToStart(body);
  b.create<kern::YieldOp>(loc, compute(b, loc, body->getArguments()));
  b.setInsertionPointAfter(op);
  return op;
}

Value constant(OpBuilder &b, Location loc, double v) {
  return b.create<arith::ConstantOp>(loc, b.getF32FloatAttr(static_cast<float>(v)));
}

/// x / (1 + exp(-x)).
Value silu(OpBuilder &b, Location loc, Value x) {
  Value e = b.create<math::ExpOp>(loc, b.create<arith::NegFOp>(loc, x));
  return b.create<arith::DivFOp>(loc, x, b.create<arith::AddFOp>(loc, constant(b, loc, 1.0), e));
}

/// 0.5·x·(1 + erf(x/√2)), or 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
Value gelu(OpBuilder &b, Location loc, Value x, bool approximate) {
  Value inner;
  if (approximate) {
    Value x3 = b.create<arith::MulFOp>(loc, b.create<arith::MulFOp>(loc, x, x), x);
    Value poly = b.create<arith::AddFOp>(
        loc, x, b.create<arith::MulFOp>(loc, constant(b, loc, 0.044715), x3));
    inner = b.create<math::TanhOp>(
        loc, b.create<arith::MulFOp>(loc, constant(b, loc, 0.7978845608028654), poly));
  } else {
    inner = b.create<math::ErfOp>(
        loc, b.create<arith::MulFOp>(loc, x, constant(b, loc, 0.7071067811865476)));
  }
  Value half = b.create<arith::MulFOp>(loc, constant(b, loc, 0.5), x);
  return b.create<arith::MulFOp>(loc, half,
                                 b.create<arith::AddFOp>(loc, constant(b, loc, 1.0), inner));
}

/// The pointwise form of one element-wise op, or null for any other op.
kern::PointwiseOp convert(Operation *op) {
  OpBuilder b(op);
  Location loc = op->getLoc();
  Type type = op->getResult(0).getType();
  kern::PointwiseOp p;
  if (isa<dit::AddOp, dit::MulOp>(op)) {
    bool add = isa<dit::AddOp>(op);
    p = buildPointwise(b, loc, type, op->getOperands(), [&](OpBuilder &b, Location l, ValueRange a) {
      return add ? Value(b.create<arith::AddFOp>(l, a[0], a[1]))
                 : Value(b.create<arith::MulFOp>(l, a[0], a[1]));
    });
  } else if (isa<dit::SiluOp>(op)) {
    p = buildPointwise(b, loc, type, op->getOperands(),
                       [&](OpBuilder &b, Location l, ValueRange a) { return silu(b, l, a[0]); });
  } else if (auto g = dyn_cast<dit::GeluOp>(op)) {
    bool approximate = g.getApproximate();
    p = buildPointwise(b, loc, type, op->getOperands(), [&](OpBuilder &b, Location l, ValueRange a) {
      return gelu(b, l, a[0], approximate);
    });
  } else if (isa<kern::CastOp>(op)) {
    p = buildPointwise(b, loc, type, op->getOperands(),
                       [&](OpBuilder &, Location, ValueRange a) { return a[0]; });
  } else {
    return {};
  }
  op->getResult(0).replaceAllUsesWith(p.getResult());
  op->erase();
  return p;
}

/// `consumer` with the pointwise producer of input `index` (used by the
/// consumer alone) inlined; repeated inputs share one argument.
kern::PointwiseOp absorb(kern::PointwiseOp consumer, unsigned index) {
  Value absorbed = consumer.getInputs()[index];
  auto producer = absorbed.getDefiningOp<kern::PointwiseOp>();
  SmallVector<Value> inputs;
  auto argumentOf = [&](Value v) {
    auto it = llvm::find(inputs, v);
    if (it != inputs.end())
      return static_cast<unsigned>(it - inputs.begin());
    inputs.push_back(v);
    return static_cast<unsigned>(inputs.size() - 1);
  };
  SmallVector<unsigned> consumerArgs, producerArgs;
  for (Value v : consumer.getInputs())
    consumerArgs.push_back(v == absorbed ? ~0u : argumentOf(v));
  for (Value v : producer.getInputs())
    producerArgs.push_back(argumentOf(v));

  OpBuilder b(consumer);
  auto fused = b.create<kern::PointwiseOp>(consumer.getLoc(), consumer.getType(), inputs);
  Block *body = b.createBlock(&fused.getBody());
  for (size_t i = 0; i < inputs.size(); ++i)
    body->addArgument(b.getF32Type(), consumer.getLoc());
  b.setInsertionPointToStart(body);
  IRMapping map;
  Block &pBody = producer.getBody().front();
  for (auto [arg, to] : llvm::zip(pBody.getArguments(), producerArgs))
    map.map(arg, body->getArgument(to));
  for (Operation &op : pBody.without_terminator())
    b.clone(op, map);
  Value produced = map.lookupOrDefault(producer.getYielded());
  Block &cBody = consumer.getBody().front();
  for (auto [arg, to] : llvm::zip(cBody.getArguments(), consumerArgs))
    map.map(arg, to == ~0u ? produced : Value(body->getArgument(to)));
  for (Operation &op : cBody)
    b.clone(op, map);
  consumer.getResult().replaceAllUsesWith(fused.getResult());
  consumer.erase();
  producer.erase();
  return fused;
}

struct KernFusePointwise : diffc::impl::KernFusePointwiseBase<KernFusePointwise> {
  void runOnOperation() override {
    SmallVector<Operation *> elementwise;
    getOperation().walk([&](Operation *op) {
      if (isa<dit::AddOp, dit::MulOp, dit::SiluOp, dit::GeluOp, kern::CastOp>(op))
        elementwise.push_back(op);
    });
    SmallVector<kern::PointwiseOp> pointwise;
    for (Operation *op : elementwise)
      pointwise.push_back(convert(op));
    // Program order: a producer is absorbed before its consumer is visited,
    // so chains collapse into their last op.
    for (kern::PointwiseOp op : pointwise) {
      bool changed = true;
      while (changed) {
        changed = false;
        for (auto [i, v] : llvm::enumerate(op.getInputs())) {
          auto producer = v.getDefiningOp<kern::PointwiseOp>();
          if (producer && v.getType() == op.getType() &&
              llvm::all_of(producer->getUsers(), [&](Operation *user) { return user == op; })) {
            op = absorb(op, static_cast<unsigned>(i));
            changed = true;
            break;
          }
        }
      }
    }
  }
};

} // namespace
