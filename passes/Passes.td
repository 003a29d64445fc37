//===- Passes.td - diffc passes --------------------------------*- tablegen -*-===//
//
// Every pass of the compiler, grouped by the level it works on, alphabetical
// within a group. Each pass lives in its own file named after its flag.
//
//===----------------------------------------------------------------------===//

#ifndef DIFFC_PASSES_TD
#define DIFFC_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// dit level
//===----------------------------------------------------------------------===//

def DitVerifyFrontendContract : Pass<"dit-verify-frontend-contract", "::mlir::ModuleOp"> {
  let summary = "Check that a module is what every frontend must produce";
  let description = [{
    The contract between frontends and the rest of the compiler. A module
    passes when:
    1. it has exactly one public function, `@forward`, and every other
       function is private and called;
    2. every tensor in every function has a static shape and an element type
       diffc executes (f32, f16, bf16, i32);
    3. every argument of `@forward` is either a model input (`dit.input`) or
       a parameter (`dit.param`), never both, never neither;
    4. input and parameter names are unique, parameter names are
       well-formed state-dict keys (dot-separated identifiers, an `{e}`
       placeholder only in the first dimension of a stacked parameter), and
       no stacked parameter expands to a name another parameter has;
    5. block functions carry `dit.block_kind`; their arguments carry no
       names (names belong to `@forward`).
  }];
  let dependentDialects = ["::diffc::dit::DitDialect"];
}

#endif // DIFFC_PASSES_TD
