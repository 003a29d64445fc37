//===- DitAttrs.td - dit attributes and enums ------------------*- tablegen -*-===//
//
// Routing descriptions for mixtures of experts, the token scan orders of gated
// linear attention, and the small enums the ops share.
//
//===----------------------------------------------------------------------===//

#ifndef DIT_ATTRS_TD
#define DIT_ATTRS_TD

include "dialects/Dit/IR/DitBase.td"

def Dit_ScanOrder : I32EnumAttr<"ScanOrder", "order in which a causal scan visits the tokens of an h x w grid", [
    I32EnumAttrCase<"RowMajor", 0, "row_major">,
    I32EnumAttrCase<"RowMajorReversed", 1, "row_major_reversed">,
    I32EnumAttrCase<"ColMajor", 2, "col_major">,
    I32EnumAttrCase<"ColMajorReversed", 3, "col_major_reversed">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::diffc::dit";
}
def Dit_ScanOrderAttr : EnumAttr<Dit_Dialect, Dit_ScanOrder, "scan_order"> {
  let assemblyFormat = "`<` $value `>`";
}

def Dit_Activation : I32EnumAttr<"Activation", "element-wise activation", [
    I32EnumAttrCase<"Gelu", 0, "gelu">,
    I32EnumAttrCase<"GeluTanh", 1, "gelu_tanh">,
    I32EnumAttrCase<"Silu", 2, "silu">,
    I32EnumAttrCase<"SwiGlu", 3, "swiglu">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::diffc::dit";
}
def Dit_ActivationAttr : EnumAttr<Dit_Dialect, Dit_Activation, "activation"> {
  let assemblyFormat = "`<` $value `>`";
}

def Dit_WeightLayout : I32EnumAttr<"WeightLayout", "storage order of a weight matrix", [
    I32EnumAttrCase<"OutIn", 0, "out_in">,
    I32EnumAttrCase<"InOut", 1, "in_out">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::diffc::dit";
}
def Dit_WeightLayoutAttr : EnumAttr<Dit_Dialect, Dit_WeightLayout, "weight_layout"> {
  let assemblyFormat = "`<` $value `>`";
}

def Dit_TokenChoiceAttr : Dit_Attr<"TokenChoice", "token_choice"> {
  let summary = "Token-choice routing: every token picks its top-k experts";
  let description = [{
    DiT-MoE routing. For every token u (all tokens of all samples together):
    `p = softmax(router · u)` over the E experts; the k largest entries of p
    select the experts and are their weights. With `normalize` the k weights
    are divided by their sum (DiT-MoE releases: off, so they sum to < 1). No
    capacity limit: each expert gets exactly the tokens that chose it.

    `balance_coef` is the coefficient α of the expert-level balance loss
    `α · Σ_i f_i · P̄_i` that training adds to the gradient (not to the
    logged loss); 0 disables it.

    ```mlir
    #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>
    ```
  }];
  let parameters = (ins "int64_t":$top_k, "bool":$normalize,
                        APFloatParameter<"balance-loss coefficient">:$balance_coef);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Dit_ExpertChoiceAttr : Dit_Attr<"ExpertChoice", "expert_choice"> {
  let summary = "Expert-choice routing: every expert picks its top tokens";
  let description = [{
    MicroDiT routing, done within each sample. `p = softmax(router · u)` per
    token; each expert e takes the `k = int(capacity · T / E)` tokens with
    the largest `p[:, e]` (T tokens in the sample) and weights its output by
    those probabilities. A token may be chosen by 0 to E experts. No balance
    loss.

    ```mlir
    #dit.expert_choice<capacity = 2.0>
    ```
  }];
  let parameters = (ins APFloatParameter<"expert capacity factor">:$capacity);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // DIT_ATTRS_TD
