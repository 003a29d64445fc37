//===- DitBase.td - the dit dialect and its shared op class ---*- tablegen -*-===//
//
// The `dit` dialect speaks the vocabulary of the diffusion-transformer papers
// (DiT, DiT-MoE, MicroDiT, DiG): patch embedding, adaLN modulation, gated
// residuals, attention, gated linear attention, mixtures of experts, token
// masking and the diffusion losses. Ops have value semantics on ranked tensors.
//
//===----------------------------------------------------------------------===//

#ifndef DIT_BASE_TD
#define DIT_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Dit_Dialect : Dialect {
  let name = "dit";
  let cppNamespace = "::diffc::dit";
  let summary = "Diffusion-transformer model dialect";
  let description = [{
    The model level of diffc. A model is a `func.func @forward` whose
    arguments are the model inputs (`dit.input = "x"`) and its parameters
    (`dit.param = "blocks.0.attn.qkv.weight"`, the name the parameter has in
    the reference PyTorch state dict). A stacked parameter, such as the
    routed-expert weights of one MoE layer, names its slices with an `{e}`
    placeholder (`blocks.0.moe.experts.{e}.up_proj.weight`): slice `e` of the
    leading dimension is the checkpoint tensor with `{e}` replaced by `e`.

    Repeated blocks are private functions carrying `dit.block_kind`, called
    from `@forward`; the compiler inlines them before fusion, and
    `diffc stats` reports cost per block kind.

    All element types are f32, f16 or bf16 for floating-point tensors and i32
    for labels and token indices. Every op states its semantics and numbered
    constraints (C1, C2, ...); the verifier checks each and names it.
  }];
  let useDefaultAttributePrinterParser = 1;
  let dependentDialects = ["::mlir::func::FuncDialect"];
  let extraClassDeclaration = [{
    /// Argument attribute naming a parameter by its checkpoint name.
    static constexpr ::llvm::StringLiteral kParamAttrName = "dit.param";
    /// Argument attribute marking a parameter that training leaves unchanged.
    static constexpr ::llvm::StringLiteral kFrozenAttrName = "dit.frozen";
    /// Argument attribute naming a model input ("x", "t", "y", ...).
    static constexpr ::llvm::StringLiteral kInputAttrName = "dit.input";
    /// Function attribute naming the kind of a block function.
    static constexpr ::llvm::StringLiteral kBlockKindAttrName = "dit.block_kind";
    /// Module attribute describing the model (family, config, sizes).
    static constexpr ::llvm::StringLiteral kModelAttrName = "dit.model";
  }];
}

class Dit_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Dit_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

// Shared base: every dit op is side-effect free.
class Dit_Op<string mnemonic, list<Trait> traits = []>
    : Op<Dit_Dialect, mnemonic, !listconcat(traits, [Pure])>;

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def Dit_FloatElement : AnyTypeOf<[F32, F16, BF16]>;
def Dit_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def Dit_IndexTensor : TensorRankOf<[I32], [1, 2]>;
class Dit_FloatTensorOfRank<list<int> ranks>
    : TensorRankOf<[F32, F16, BF16], ranks>;
def Dit_F32Scalar : 0DTensorOf<[F32]>;

#endif // DIT_BASE_TD
