//===- DitVerifyFrontendContract.cpp - the frontend contract ----------------===//
//
// Checks the subset of IR every frontend must produce (see the pass
// description in Passes.td). Errors sit on the offending function or argument
// and say which rule failed.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSet.h"

namespace diffc {
#define GEN_PASS_DEF_DITVERIFYFRONTENDCONTRACT
#include "passes/Passes.h.inc"
} // namespace diffc

using namespace mlir;
using namespace diffc;

namespace {

bool isIdentifierChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

/// A state-dict key: dot-separated non-empty components of [A-Za-z0-9_],
/// with at most one `{e}` component when `allowPlaceholder`.
bool isWellFormedKey(StringRef name, bool allowPlaceholder, bool &hasPlaceholder) {
  hasPlaceholder = false;
  SmallVector<StringRef> parts;
  name.split(parts, '.');
  for (StringRef part : parts) {
    if (part == "{e}") {
      if (!allowPlaceholder || hasPlaceholder)
        return false;
      hasPlaceholder = true;
      continue;
    }
    if (part.empty() || !llvm::all_of(part, isIdentifierChar))
      return false;
  }
  return true;
}

LogicalResult checkTypes(func::FuncOp func) {
  auto check = [&](Type type, Location loc) -> LogicalResult {
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || !tensor.hasStaticShape())
      return emitError(loc) << "frontend contract rule 2: " << type
                            << " is not a statically shaped tensor";
    Type e = tensor.getElementType();
    if (!e.isF32() && !e.isF16() && !e.isBF16() && !e.isInteger(32))
      return emitError(loc) << "frontend contract rule 2: element type " << e
                            << " is not one of f32, f16, bf16, i32";
    return success();
  };
  for (BlockArgument arg : func.getArguments())
    if (failed(check(arg.getType(), arg.getLoc())))
      return failure();
  WalkResult walk = func.walk([&](Operation *op) {
    for (Value result : op->getResults())
      if (failed(check(result.getType(), op->getLoc())))
        return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

struct DitVerifyFrontendContract
    : diffc::impl::DitVerifyFrontendContractBase<DitVerifyFrontendContract> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    func::FuncOp forward;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isPublic()) {
        if (func.getSymName() != "forward" || forward) {
          func.emitError() << "frontend contract rule 1: the only public function must be "
                              "@forward, found @"
                           << func.getSymName();
          return signalPassFailure();
        }
        forward = func;
      }
    }
    if (!forward) {
      module.emitError() << "frontend contract rule 1: no public @forward function";
      return signalPassFailure();
    }

    llvm::StringSet<> called;
    module.walk([&](func::CallOp call) { called.insert(call.getCallee()); });
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isDeclaration()) {
        func.emitError() << "frontend contract rule 1: @" << func.getSymName()
                         << " has no body";
        return signalPassFailure();
      }
      if (failed(checkTypes(func)))
        return signalPassFailure();
      if (func == forward)
        continue;
      if (!called.contains(func.getSymName())) {
        func.emitError() << "frontend contract rule 1: private function @" << func.getSymName()
                         << " is never called";
        return signalPassFailure();
      }
      if (!func->hasAttrOfType<StringAttr>(dit::DitDialect::kBlockKindAttrName)) {
        func.emitError() << "frontend contract rule 5: block function @" << func.getSymName()
                         << " has no dit.block_kind";
        return signalPassFailure();
      }
      for (unsigned i = 0; i < func.getNumArguments(); ++i) {
        if (func.getArgAttr(i, dit::DitDialect::kParamAttrName) ||
            func.getArgAttr(i, dit::DitDialect::kInputAttrName)) {
          func.emitError() << "frontend contract rule 5: argument #" << i << " of block @"
                           << func.getSymName() << " carries a name; only @forward's do";
          return signalPassFailure();
        }
      }
    }

    llvm::StringSet<> inputs, params;
    SmallVector<std::pair<std::string, unsigned>> stacked;
    for (unsigned i = 0; i < forward.getNumArguments(); ++i) {
      auto input = forward.getArgAttrOfType<StringAttr>(i, dit::DitDialect::kInputAttrName);
      auto param = forward.getArgAttrOfType<StringAttr>(i, dit::DitDialect::kParamAttrName);
      Location loc = forward.getArgument(i).getLoc();
      if (bool(input) == bool(param)) {
        emitError(loc) << "frontend contract rule 3: argument #" << i
                       << " of @forward must be exactly one of dit.input or dit.param";
        return signalPassFailure();
      }
      if (input) {
        if (!inputs.insert(input.getValue()).second) {
          emitError(loc) << "frontend contract rule 4: input name '" << input.getValue()
                         << "' is used twice";
          return signalPassFailure();
        }
        continue;
      }
      bool placeholder = false;
      if (!isWellFormedKey(param.getValue(), /*allowPlaceholder=*/true, placeholder)) {
        emitError(loc) << "frontend contract rule 4: '" << param.getValue()
                       << "' is not a well-formed state-dict key";
        return signalPassFailure();
      }
      if (!params.insert(param.getValue()).second) {
        emitError(loc) << "frontend contract rule 4: parameter name '" << param.getValue()
                       << "' is used twice";
        return signalPassFailure();
      }
      if (placeholder) {
        auto type = cast<RankedTensorType>(forward.getArgument(i).getType());
        if (type.getRank() < 2) {
          emitError(loc) << "frontend contract rule 4: stacked parameter '" << param.getValue()
                         << "' needs a leading expert dimension";
          return signalPassFailure();
        }
        stacked.emplace_back(param.getValue().str(), type.getDimSize(0));
      }
    }
    // A stacked parameter's slices must not collide with plain parameters.
    for (auto &[pattern, count] : stacked) {
      size_t at = pattern.find("{e}");
      for (unsigned e = 0; e < count; ++e) {
        std::string name = pattern.substr(0, at) + std::to_string(e) + pattern.substr(at + 3);
        if (params.contains(name)) {
          forward.emitError() << "frontend contract rule 4: slice '" << name
                              << "' of stacked parameter '" << pattern
                              << "' is also a parameter of its own";
          return signalPassFailure();
        }
      }
    }
  }
};

} // namespace
