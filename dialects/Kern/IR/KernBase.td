//===- KernBase.td - the kern dialect --------------------------*- tablegen -*-===//
//
// The kernel level of diffc: every kern op is one kernel launch or one library
// call, with its neighbours' element-wise work fused in (norm + modulate,
// GEMM + bias + activation + gated residual, MoE + shared expert, depth-wise
// convolution + scan-order change). A kernel-level program is kern ops plus
// the dit ops that are single kernels as they stand (attention, gla,
// embeddings, token layout, element-wise leftovers).
//
//===----------------------------------------------------------------------===//

#ifndef KERN_BASE_TD
#define KERN_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Kern_Dialect : Dialect {
  let name = "kern";
  let cppNamespace = "::diffc::kern";
  let summary = "Kernel-level program: one op per kernel launch";
  let description = [{
    Ops of this dialect have value semantics on ranked tensors like dit's,
    but each stands for exactly one kernel (or library call) of the runtime,
    whose CPU reference implementation is declared in
    runtime/include/diffrt/CpuKernels.h. Memory planning later assigns every
    value a place in the weights, constants or arena region.
  }];
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::diffc::dit::DitDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
}

class Kern_Op<string mnemonic, list<Trait> traits = []>
    : Op<Kern_Dialect, mnemonic, !listconcat(traits, [Pure])> {
  let hasVerifier = 1;
}

def Kern_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;

def Kern_Act : I32EnumAttr<"Act", "activation fused into a kernel's epilogue", [
    I32EnumAttrCase<"None", 0, "none">,
    I32EnumAttrCase<"Gelu", 1, "gelu">,
    I32EnumAttrCase<"GeluTanh", 2, "gelu_tanh">,
    I32EnumAttrCase<"Silu", 3, "silu">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::diffc::kern";
}
def Kern_ActAttr : EnumAttr<Kern_Dialect, Kern_Act, "act"> {
  let assemblyFormat = "`<` $value `>`";
}

def Kern_NormKind : I32EnumAttr<"NormKind", "normalisation", [
    I32EnumAttrCase<"Layer", 0, "layer">,
    I32EnumAttrCase<"Rms", 1, "rms">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::diffc::kern";
}
def Kern_NormKindAttr : EnumAttr<Kern_Dialect, Kern_NormKind, "norm"> {
  let assemblyFormat = "`<` $value `>`";
}

#endif // KERN_BASE_TD
