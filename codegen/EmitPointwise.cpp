//===- EmitPointwise.cpp - kern.pointwise bodies to programs --------------===//
//
// The body of a kern.pointwise op becomes the artifact's straight-line
// program; the CUDA source is then written from the program
// (PointwiseCuda.cpp), so what the GPU computes is by construction what the
// CPU backend interprets.
//
//===----------------------------------------------------------------------===//

#include "codegen/EmitPointwise.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/TypeSwitch.h"

#include <functional>


using namespace mlir;
using namespace diffc;
using diffrt::PwInstr;
using diffrt::PwOp;
using diffrt::PwProgram;

FailureOr<PwProgram> codegen::encodePointwiseBody(kern::PointwiseOp op) {
  PwProgram program;
  program.numInputs = static_cast<int32_t>(op.getInputs().size());
  llvm::DenseMap<Value, int32_t> index;
  // Post-order from the yielded value: operands before users, the result
  // last, dead body ops never encoded.
  std::function<FailureOr<int32_t>(Value)> encode = [&](Value v) -> FailureOr<int32_t> {
    if (auto it = index.find(v); it != index.end())
      return it->second;
    PwInstr in;
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      in.op = PwOp::Input;
      in.a = static_cast<int32_t>(arg.getArgNumber());
    } else {
      Operation *def = v.getDefiningOp();
      bool known = true;
      llvm::TypeSwitch<Operation *>(def)
          .Case([&](arith::ConstantOp c) {
            in.op = PwOp::Const;
            in.value = static_cast<float>(cast<FloatAttr>(c.getValue()).getValueAsDouble());
          })
          .Case([&](arith::AddFOp) { in.op = PwOp::Add; })
          .Case([&](arith::SubFOp) { in.op = PwOp::Sub; })
          .Case([&](arith::MulFOp) { in.op = PwOp::Mul; })
          .Case([&](arith::DivFOp) { in.op = PwOp::Div; })
          .Case([&](arith::MaximumFOp) { in.op = PwOp::Max; })
          .Case([&](arith::MinimumFOp) { in.op = PwOp::Min; })
          .Case([&](arith::NegFOp) { in.op = PwOp::Neg; })
          .Case([&](math::ExpOp) { in.op = PwOp::Exp; })
          .Case([&](math::LogOp) { in.op = PwOp::Log; })
          .Case([&](math::TanhOp) { in.op = PwOp::Tanh; })
          .Case([&](math::ErfOp) { in.op = PwOp::Erf; })
          .Case([&](math::SqrtOp) { in.op = PwOp::Sqrt; })
          .Case([&](math::RsqrtOp) { in.op = PwOp::Rsqrt; })
          .Case([&](math::AbsFOp) { in.op = PwOp::Abs; })
          .Default([&](Operation *) { known = false; });
      if (!known)
        return def->emitOpError() << "has no pointwise program instruction";
      int arity = diffrt::pwArity(in.op);
      for (int k = 0; k < arity; ++k) {
        FailureOr<int32_t> operand = encode(def->getOperand(k));
        if (failed(operand))
          return failure();
        (k == 0 ? in.a : in.b) = *operand;
      }
    }
    program.code.push_back(in);
    return index[v] = static_cast<int32_t>(program.code.size() - 1);
  };
  if (failed(encode(op.getYielded())))
    return failure();
  return program;
}

