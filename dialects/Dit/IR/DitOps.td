//===- DitOps.td - dit operations ------------------------------*- tablegen -*-===//
//
// The operations of the dit dialect, grouped as: embeddings, normalisation and
// conditioning, dense layers, token mixers, mixtures of experts, token
// masking, and losses. Each description states the semantics and the
// numbered constraints its verifier checks.
//
//===----------------------------------------------------------------------===//

#ifndef DIT_OPS_TD
#define DIT_OPS_TD

include "dialects/Dit/IR/DitBase.td"
include "dialects/Dit/IR/DitAttrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

// Ops whose result types follow from operands and attributes. Inference is
// lenient (it never reports errors); the verifier checks the constraints.
class Dit_InferredOp<string mnemonic, list<Trait> traits = []>
    : Dit_Op<mnemonic, !listconcat(traits,
        [InferTypeOpAdaptor])> {
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Embeddings
//===----------------------------------------------------------------------===//

def Dit_PatchEmbedOp : Dit_InferredOp<"patch_embed"> {
  let summary = "Non-overlapping p x p patches projected to tokens";
  let description = [{
    `x : (N, C, H, W)`, `weight : (D, C, p, p)`, `bias : (D)`. Equivalent to
    a stride-p convolution followed by flattening the patch grid in row-major
    order: token `n = r·(W/p) + c` of sample i is
    `bias + Σ_{ch,a,b} weight[:, ch, a, b] · x[i, ch, r·p + a, c·p + b]`.
    Result `(N, T, D)` with `T = (H/p)·(W/p)`.

    Constraints:
    C1. weight has a square spatial kernel p x p.
    C2. weight's input channels equal x's channels C.
    C3. H and W are divisible by p.
    C4. bias has shape (D).
    C5. x, weight and bias share the element type.

    ```mlir
    %t = dit.patch_embed %x, %w, %b : (tensor<2x4x32x32xf32>, tensor<384x4x2x2xf32>, tensor<384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[4]>:$input,
                       Dit_FloatTensorOfRank<[4]>:$weight,
                       Dit_FloatTensorOfRank<[1]>:$bias);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$input `,` $weight `,` $bias attr-dict `:` functional-type(operands, results)";
}

def Dit_UnpatchifyOp : Dit_InferredOp<"unpatchify"> {
  let summary = "Tokens of p x p x C values back to a (N, C, H, W) image";
  let description = [{
    `x : (N, h·w, p·p·C)` to `(N, C, h·p, w·p)`: element `(i·p + j)·C + ch`
    of token `r·w + c` becomes pixel `(ch, r·p + i, c·p + j)` (i is the row
    inside the patch, channels fastest), as every family's reference does.

    Constraints:
    C1. `grid` has two positive entries h and w, and the token count is h·w.
    C2. `patch_size` p is positive and the token width is divisible by p·p.

    ```mlir
    %img = dit.unpatchify %t {grid = array<i64: 16, 16>, patch_size = 2 : i64} : (tensor<2x256x32xf32>) -> tensor<2x8x32x32xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input,
                       DenseI64ArrayAttr:$grid, I64Attr:$patch_size);
  let results = (outs Dit_FloatTensorOfRank<[4]>:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
}

def Dit_SinCosPosEmbedOp : Dit_InferredOp<"sincos_pos_embed"> {
  let summary = "Fixed 2D sine-cosine position table";
  let description = [{
    The `(h·w, D)` f32 table of the spec (section 1.1). With `D4 = D/4`,
    `ω_k = 10000^(-k/D4)` and positions scaled as `c' = c / interp_scale`,
    `r' = r / interp_scale`, token `r·w + c` holds
    `[sin(c'ω), cos(c'ω), sin(r'ω), cos(r'ω)]` (column half first), computed
    in float64 and rounded to f32. `interp_scale` is 1 for DiT, DiT-MoE and
    DiG and MicroDiT at 256 px, 2 for MicroDiT at 512 px.

    `state_name`, when present, is the name under which reference
    checkpoints store this table (`pos_embed`); the runtime accepts that
    tensor in a checkpoint and checks it against the computed table.
    `frozen_parameter` says the reference registers the table as a frozen
    `nn.Parameter` (DiT, DiT-MoE, DiG) rather than a buffer (MicroDiT), so
    parameter counts include it as the published counts do.

    Constraints:
    C1. `grid` has two positive entries.
    C2. `dim` is positive and divisible by 4.
    C3. `interp_scale` is positive.
    C4. The result is `(h·w, dim)` f32.

    ```mlir
    %pos = dit.sincos_pos_embed {grid = array<i64: 16, 16>, dim = 384 : i64, interp_scale = 1.0 : f64} : () -> tensor<256x384xf32>
    ```
  }];
  let arguments = (ins DenseI64ArrayAttr:$grid, I64Attr:$dim, F64Attr:$interp_scale,
                       OptionalAttr<StrAttr>:$state_name, UnitAttr:$frozen_parameter);
  let results = (outs TensorRankOf<[F32], [2]>:$result);
  let assemblyFormat = "attr-dict `:` functional-type(operands, results)";
}

def Dit_TimestepEmbedOp : Dit_InferredOp<"timestep_embed"> {
  let summary = "Sinusoidal embedding of a (possibly fractional) time value";
  let description = [{
    `t : (N)` f32 to `(N, dim)` f32: with `half = dim/2` and
    `f_k = exp(-ln(max_period)·k/half)`, the row is
    `[cos(t·f), sin(t·f)]` (cosines first), zero-padded by one column when
    `dim` is odd. Computed in f32 whatever the model's dtype, because DiT
    feeds indices up to 999 and fp16 arguments would lose the phase.

    Constraints:
    C1. `dim` is at least 2.
    C2. `max_period` is greater than 1.

    ```mlir
    %f = dit.timestep_embed %t {dim = 256 : i64, max_period = 10000.0 : f64} : (tensor<2xf32>) -> tensor<2x256xf32>
    ```
  }];
  let arguments = (ins TensorRankOf<[F32], [1]>:$input, I64Attr:$dim,
                       DefaultValuedAttr<F64Attr, "10000.0">:$max_period);
  let results = (outs TensorRankOf<[F32], [2]>:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
}

def Dit_LabelEmbedOp : Dit_InferredOp<"label_embed"> {
  let summary = "Class-label lookup with a null class for guidance";
  let description = [{
    `labels : (N)` i32, `table : (num_classes + 1, D)` to `(N, D)`: row
    `labels[i]` of the table. Label `num_classes` is the null (unconditional)
    class used by classifier-free guidance and by class dropout, which the
    trainer applies to the labels before the model sees them. A label outside
    `[0, num_classes]` is undefined behaviour here; the runtime rejects it
    before running.

    Constraints:
    C1. `num_classes` is positive.
    C2. The table has `num_classes + 1` rows.

    ```mlir
    %e = dit.label_embed %y, %table {num_classes = 1000 : i64} : (tensor<2xi32>, tensor<1001x384xf32>) -> tensor<2x384xf32>
    ```
  }];
  let arguments = (ins TensorRankOf<[I32], [1]>:$labels,
                       Dit_FloatTensorOfRank<[2]>:$table, I64Attr:$num_classes);
  let results = (outs Dit_FloatTensorOfRank<[2]>:$result);
  let assemblyFormat = "$labels `,` $table attr-dict `:` functional-type(operands, results)";
}

def Dit_TokenMeanOp : Dit_InferredOp<"token_mean"> {
  let summary = "Mean over the token axis";
  let description = [{
    `x : (N, L, D)` to `(N, D)`, `out[i] = (1/L) Σ_l x[i, l]`. MicroDiT pools
    its caption tokens this way.

    Constraints:
    C1. L is positive.

    ```mlir
    %p = dit.token_mean %y : (tensor<2x77x1024xf32>) -> tensor<2x1024xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input);
  let results = (outs Dit_FloatTensorOfRank<[2]>:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Normalisation, conditioning, element-wise arithmetic
//===----------------------------------------------------------------------===//

def Dit_LayerNormOp : Dit_InferredOp<"layer_norm", [AttrSizedOperandSegments]> {
  let summary = "LayerNorm over groups of the last dimension";
  let description = [{
    Normalises each contiguous group of `group_size` elements of the last
    dimension (the whole row when `group_size` is absent):
    `y = (x - mean) / sqrt(var + epsilon) · weight + bias`, with the biased
    variance, statistics in f32. `weight` and `bias` are optional and have
    shape `(group_size)`; a group smaller than the row expresses per-head
    q/k normalisation (DiT-MoE's flash variant) without reshapes.

    Constraints:
    C1. `group_size` is positive and divides the last dimension.
    C2. weight and bias, when present, have shape (group_size).
    C3. `epsilon` is positive.
    C4. Operands share the element type.

    ```mlir
    %n = dit.layer_norm %x {epsilon = 1.0e-06 : f64} : (tensor<2x256x384xf32>) -> tensor<2x256x384xf32>
    %q = dit.layer_norm %q0 weight %w bias %b {epsilon = 1.0e-06 : f64, group_size = 72 : i64} : (tensor<2x256x1152xf32>, tensor<72xf32>, tensor<72xf32>) -> tensor<2x256x1152xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input, Optional<Dit_FloatTensorOfRank<[1]>>:$weight,
                       Optional<Dit_FloatTensorOfRank<[1]>>:$bias, F64Attr:$epsilon,
                       OptionalAttr<I64Attr>:$group_size);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`weight` $weight^)? (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    /// The number of elements normalised together.
    int64_t getGroup();
  }];
}

def Dit_RmsNormOp : Dit_InferredOp<"rms_norm"> {
  let summary = "RMSNorm over groups of the last dimension";
  let description = [{
    `y = x / sqrt(mean(x²) + epsilon) · weight` over each contiguous group of
    `group_size` elements of the last dimension (the whole row by default);
    statistics in f32. DiG's gated output norm is per head (group = d_v).

    Constraints:
    C1. `group_size` is positive and divides the last dimension.
    C2. weight, when present, has shape (group_size).
    C3. `epsilon` is positive.
    C4. Operands share the element type.

    ```mlir
    %n = dit.rms_norm %o weight %w {epsilon = 1.0e-06 : f64, group_size = 64 : i64} : (tensor<2x256x384xf32>, tensor<64xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input, Optional<Dit_FloatTensorOfRank<[1]>>:$weight,
                       F64Attr:$epsilon, OptionalAttr<I64Attr>:$group_size);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = [{
    $input (`weight` $weight^)? attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    int64_t getGroup();
  }];
}

def Dit_ModulateOp : Dit_InferredOp<"modulate"> {
  let summary = "adaLN modulation x·(1 + scale) + shift";
  let description = [{
    `x : (N, L, D)`, `shift, scale : (N, D)` broadcast over the L tokens of
    each sample: `y[i, l] = x[i, l] ⊙ (1 + scale[i]) + shift[i]`.

    Constraints:
    C1. shift and scale have shape (N, D) for x of shape (N, L, D).
    C2. Operands share the element type.

    ```mlir
    %m = dit.modulate %n, %shift, %scale : (tensor<2x256x384xf32>, tensor<2x384xf32>, tensor<2x384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, Dit_FloatTensorOfRank<[2]>:$shift,
                       Dit_FloatTensorOfRank<[2]>:$scale);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$input `,` $shift `,` $scale attr-dict `:` functional-type(operands, results)";
  let hasFolder = 1;
}

def Dit_GatedResidualOp : Dit_InferredOp<"gated_residual"> {
  let summary = "Residual update residual + gate ⊙ y";
  let description = [{
    `residual, y : (N, L, D)`, `gate : (N, D)` broadcast over tokens:
    `out[i, l] = residual[i, l] + gate[i] ⊙ y[i, l]` (adaLN-Zero's gated
    branch).

    Constraints:
    C1. residual and y have the same shape (N, L, D).
    C2. gate has shape (N, D).
    C3. Operands share the element type.

    ```mlir
    %x1 = dit.gated_residual %x0, %gate, %y : (tensor<2x256x384xf32>, tensor<2x384xf32>, tensor<2x256x384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$residual, Dit_FloatTensorOfRank<[2]>:$gate,
                       Dit_FloatTensorOfRank<[3]>:$update);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$residual `,` $gate `,` $update attr-dict `:` functional-type(operands, results)";
}

class Dit_SuffixBroadcastBinaryOp<string mnemonic, string what> : Dit_InferredOp<mnemonic> {
  let summary = "Element-wise " # what # " with a broadcast trailing operand";
  let description = [{
    `lhs : (d0, ..., dn)`, `rhs` of shape `(dk, ..., dn)` for some k (a
    suffix of lhs's shape, possibly all of it). The rhs is repeated over the
    leading dimensions it lacks: `out[i] = lhs[i] OP rhs[i mod numel(rhs)]`
    in row-major order. This covers adding the position table to every
    sample and same-shape sums such as `t_emb + y_emb`.

    Constraints:
    C1. rhs's shape is a suffix of lhs's shape.
    C2. Operands share the element type.

    ```mlir
    %y = dit.add %x, %pos : (tensor<2x256x384xf32>, tensor<256x384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$lhs, Dit_FloatTensor:$rhs);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)";
}
def Dit_AddOp : Dit_SuffixBroadcastBinaryOp<"add", "sum">;
def Dit_MulOp : Dit_SuffixBroadcastBinaryOp<"mul", "product">;

def Dit_SiluOp : Dit_Op<"silu", [SameOperandsAndResultType]> {
  let summary = "SiLU (swish) x·sigmoid(x)";
  let description = [{
    Element-wise `x / (1 + exp(-x))`. No constraints beyond the types.

    ```mlir
    %a = dit.silu %c : tensor<2x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Dit_GeluOp : Dit_Op<"gelu", [SameOperandsAndResultType]> {
  let summary = "GELU, exact or with the tanh approximation";
  let description = [{
    Element-wise `0.5·x·(1 + erf(x/√2))`, or with `approximate`
    `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (PyTorch's
    `approximate="tanh"`). No constraints beyond the types.

    ```mlir
    %a = dit.gelu %c {approximate} : tensor<2x1024xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input, UnitAttr:$approximate);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def Dit_SplitOp : Dit_Op<"split"> {
  let summary = "Equal chunks of the last dimension";
  let description = [{
    Splits the last dimension into `n` equal consecutive chunks, in order
    (PyTorch's `chunk(n, dim=-1)`): adaLN's six modulation vectors, qkv's
    three projections, cross-attention's key and value.

    Constraints:
    C1. There are n ≥ 1 results and n divides the last dimension.
    C2. Every result has the input's shape with the last dimension divided
        by n, and the input's element type.

    ```mlir
    %q, %k, %v = dit.split %qkv : (tensor<2x256x1152xf32>) -> (tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<2x256x384xf32>)
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input);
  let results = (outs Variadic<Dit_FloatTensor>:$results);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Dense layers
//===----------------------------------------------------------------------===//

def Dit_LinearOp : Dit_InferredOp<"linear"> {
  let summary = "Affine map x·weightᵀ + bias over the last dimension";
  let description = [{
    `x : (..., K)`, `weight : (M, K)` (PyTorch's `nn.Linear` layout),
    optional `bias : (M)`; result `(..., M)`.

    Constraints:
    C1. weight's second dimension equals x's last dimension K.
    C2. bias, when present, has shape (M).
    C3. Operands share the element type.

    ```mlir
    %y = dit.linear %x, %w bias %b : (tensor<2x256x384xf32>, tensor<1152x384xf32>, tensor<1152xf32>) -> tensor<2x256x1152xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input, Dit_FloatTensorOfRank<[2]>:$weight,
                       Optional<Dit_FloatTensorOfRank<[1]>>:$bias);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Dit_MlpOp : Dit_InferredOp<"mlp", [AttrSizedOperandSegments]> {
  let summary = "Two-layer perceptron fc2(act(fc1(x)))";
  let description = [{
    `fc1_weight : (F, K)`, `fc2_weight : (M, F)`, optional biases `(F)` and
    `(M)` (both or neither); `activation` is `gelu_tanh` (DiT's MLP),
    `gelu` or `silu` (the timestep embedder). Result `(..., M)`.

    Constraints:
    C1. fc1's input width equals x's last dimension.
    C2. fc2's input width equals fc1's output width F.
    C3. Biases are both present or both absent, with shapes (F) and (M).
    C4. `activation` is gelu, gelu_tanh or silu.
    C5. Operands share the element type.

    ```mlir
    %h = dit.mlp %x, %w1, %w2 biases %b1, %b2 {activation = #dit.activation<gelu_tanh>} : (tensor<2x256x384xf32>, tensor<1536x384xf32>, tensor<384x1536xf32>, tensor<1536xf32>, tensor<384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input, Dit_FloatTensorOfRank<[2]>:$fc1_weight,
                       Dit_FloatTensorOfRank<[2]>:$fc2_weight,
                       Optional<Dit_FloatTensorOfRank<[1]>>:$fc1_bias,
                       Optional<Dit_FloatTensorOfRank<[1]>>:$fc2_bias,
                       Dit_ActivationAttr:$activation);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $fc1_weight `,` $fc2_weight (`biases` $fc1_bias^ `,` $fc2_bias)? attr-dict `:` functional-type(operands, results)
  }];
}

def Dit_SwiGluOp : Dit_InferredOp<"swiglu"> {
  let summary = "SwiGLU feed-forward down(silu(gate(x)) ⊙ up(x))";
  let description = [{
    Bias-free gated MLP: `down · (silu(W_gate x) ⊙ (W_up x))`. With separate
    `gate : (F, K)` and `up : (F, K)` (DiT-MoE, MicroDiT) or, when `up` is
    absent, one packed `gate : (2F, K)` whose first F rows are the gate and
    last F rows the up projection (DiG's `gate_proj`). `down : (M, F)`.

    Constraints:
    C1. The gate (and up) input width equals x's last dimension K.
    C2. Without `up`, the gate has an even number of rows 2F; with `up`,
        both have the same shape (F, K).
    C3. down has F columns.
    C4. Operands share the element type.

    ```mlir
    %h = dit.swiglu %x, %wg up %wu down %wd : (tensor<2x256x384xf32>, tensor<768x384xf32>, tensor<768x384xf32>, tensor<384x768xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensor:$input, Dit_FloatTensorOfRank<[2]>:$gate_weight,
                       Optional<Dit_FloatTensorOfRank<[2]>>:$up_weight,
                       Dit_FloatTensorOfRank<[2]>:$down_weight);
  let results = (outs Dit_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gate_weight (`up` $up_weight^)? `down` $down_weight attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    /// Hidden width F.
    int64_t getHidden();
  }];
}

//===----------------------------------------------------------------------===//
// Token mixers
//===----------------------------------------------------------------------===//

def Dit_AttentionOp : Dit_InferredOp<"attention"> {
  let summary = "Multi-head scaled dot-product attention (self or cross)";
  let description = [{
    `q : (N, Lq, H·dk)`, `k : (N, Lk, H·dk)`, `v : (N, Lk, H·dv)`, heads laid
    out contiguously in the last dimension (head h owns columns
    `[h·dk, (h+1)·dk)`). For each sample and head:
    `out = softmax(scale · q kᵀ) v` over all Lk keys (non-causal, no mask);
    result `(N, Lq, H·dv)`. `scale` defaults to `dk^-1/2`. Softmax statistics
    are f32 whatever the element type. Self-attention has Lq = Lk and one
    source; MicroDiT's cross-attention reads 77 caption tokens.

    Constraints:
    C1. `num_heads` H is positive and divides the widths of q, k and v.
    C2. q and k have the same per-head width dk.
    C3. k and v have the same batch and length; q has the same batch.
    C4. Operands share the element type.

    ```mlir
    %o = dit.attention %q, %k, %v {num_heads = 6 : i64} : (tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<2x256x384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$query, Dit_FloatTensorOfRank<[3]>:$key,
                       Dit_FloatTensorOfRank<[3]>:$value, I64Attr:$num_heads,
                       OptionalAttr<F64Attr>:$scale);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$query `,` $key `,` $value attr-dict `:` functional-type(operands, results)";
  let extraClassDeclaration = [{
    /// The softmax scale, explicit or dk^-1/2.
    double getScaleValue();
  }];
}

def Dit_GlaOp : Dit_InferredOp<"gla"> {
  let summary = "Causal gated linear attention with data-dependent decay";
  let description = [{
    DiG's token mixer. `q, k : (N, T, H·dk)`, `v : (N, T, H·dv)`,
    `gate_logits : (N, T, H·dk)`. Per sample and head, in the current token
    order t = 1..T, with log-decay `g_t = logsigmoid(gate_logits_t) /
    gate_normalizer` and state `S_0 = 0 ∈ R^{dk×dv}`:
    `S_t = Diag(exp(g_t)) S_{t-1} + k_tᵀ v_t`, `o_t = (scale · q_t) S_t`
    (causal, inclusive of token t). Result `(N, T, H·dv)`. `scale` defaults
    to `dk^-1/2`. Decay arithmetic is f32. `chunk_size` is the length of the
    chunks of the equivalent chunk-parallel form kernels use; it does not
    change the result.

    Constraints:
    C1. `num_heads` H divides the widths of q, k, v and gate_logits.
    C2. q, k and gate_logits have the same shape.
    C3. v has the batch and length of q.
    C4. `gate_normalizer` is positive; `chunk_size` is positive.
    C5. Operands share the element type.

    ```mlir
    %o = dit.gla %q, %k, %v, %g {num_heads = 6 : i64, gate_normalizer = 16.0 : f64, chunk_size = 16 : i64} : (tensor<2x256x192xf32>, tensor<2x256x192xf32>, tensor<2x256x384xf32>, tensor<2x256x192xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$query, Dit_FloatTensorOfRank<[3]>:$key,
                       Dit_FloatTensorOfRank<[3]>:$value, Dit_FloatTensorOfRank<[3]>:$gate_logits,
                       I64Attr:$num_heads, OptionalAttr<F64Attr>:$scale,
                       DefaultValuedAttr<F64Attr, "16.0">:$gate_normalizer,
                       DefaultValuedAttr<I64Attr, "16">:$chunk_size);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$query `,` $key `,` $value `,` $gate_logits attr-dict `:` functional-type(operands, results)";
  let extraClassDeclaration = [{
    double getScaleValue();
  }];
}

def Dit_ReorderTokensOp : Dit_InferredOp<"reorder_tokens"> {
  let summary = "Change the scan order of the tokens of an h x w grid";
  let description = [{
    `x : (N, h·w, D)` whose tokens are in scan order `from` becomes the same
    tokens in scan order `to`. The orders visit the grid cell (r, c) at
    sequence position: `row_major` r·w + c; `row_major_reversed`
    h·w-1-(r·w+c); `col_major` c·h + r; `col_major_reversed`
    h·w-1-(c·h+r). DiG changes order after every block (row-major,
    reversed, column-major, reversed column-major, period 4); the compiler
    folds these permutations into neighbouring kernels' indexing.

    Constraints:
    C1. `grid` has two positive entries and h·w equals the token count.
    C2. Column-major orders need a square grid (later blocks view the
        sequence as an h x w image again).

    ```mlir
    %y = dit.reorder_tokens %x {grid = array<i64: 16, 16>, from = #dit.scan_order<row_major>, to = #dit.scan_order<row_major_reversed>} : (tensor<2x256x384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, DenseI64ArrayAttr:$grid,
                       Dit_ScanOrderAttr:$from, Dit_ScanOrderAttr:$to);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def Dit_DepthwiseConv2dOp : Dit_InferredOp<"depthwise_conv2d"> {
  let summary = "Per-channel k x k convolution over the token grid";
  let description = [{
    `x : (N, h·w, D)` read as an h x w grid in the current sequence order
    (sequence position s is grid cell (s / w, s mod w)), `weight : (D, 1,
    k, k)`, `bias : (D)`; stride 1, zero padding k/2, result in the same
    layout. DiG's identity-initialised 3 x 3 convolution after every block.

    Constraints:
    C1. `grid` has two positive entries and h·w equals the token count.
    C2. weight is (D, 1, k, k) with odd k.
    C3. bias has shape (D).
    C4. Operands share the element type.

    ```mlir
    %y = dit.depthwise_conv2d %x, %w, %b {grid = array<i64: 16, 16>} : (tensor<2x256x384xf32>, tensor<384x1x3x3xf32>, tensor<384xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, Dit_FloatTensorOfRank<[4]>:$weight,
                       Dit_FloatTensorOfRank<[1]>:$bias, DenseI64ArrayAttr:$grid);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$input `,` $weight `,` $bias attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Dit_MoeOp : Dit_InferredOp<"moe"> {
  let summary = "Routed mixture of experts";
  let description = [{
    `x : (N, L, D)`, `router : (E, D)` (no bias), and the expert weights
    stacked over the leading expert dimension. `routing` is
    `#dit.token_choice` (DiT-MoE) or `#dit.expert_choice` (MicroDiT); its
    description gives the selection and weighting. Each selected
    (token, expert) pair contributes `weight · Expert_e(x_token)`; the output
    is the sum of contributions per token (0 for a token no expert took).
    Always-on shared experts are separate ops added to this result.

    `activation = swiglu`: three weights `gate, up : (E, F, D)` and
    `down : (E, D, F)`, `Expert(u) = down·(silu(gate·u) ⊙ up·u)`.
    `activation = gelu` or `gelu_tanh`: two weights, `Expert(u) =
    W2ᵀ act(W1ᵀ u)`. `weight_layout` says how each expert matrix is stored:
    `out_in` as `nn.Linear` (rows are outputs; the swiglu shapes above),
    `in_out` as MicroDiT's einsum parameters (`w1 : (E, D, F)`,
    `w2 : (E, F, D)`).

    Constraints:
    C1. router is (E, D) with D the width of x and E ≥ 1.
    C2. swiglu has exactly 3 expert weights; gelu and gelu_tanh have 2.
    C3. Every expert weight has E as its leading dimension and the shape its
        activation and layout require.
    C4. token_choice: 1 ≤ top_k ≤ E and balance_coef ≥ 0.
    C5. expert_choice: capacity > 0 and every expert takes at least one
        token: int(capacity · L / E) ≥ 1, and at most L.
    C6. Operands share the element type.

    ```mlir
    %y = dit.moe %u, %router, %wg, %wu, %wd {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 1.000000e-02>, activation = #dit.activation<swiglu>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x256x384xf32>, tensor<8x384xf32>, tensor<8x1536x384xf32>, tensor<8x1536x384xf32>, tensor<8x384x1536xf32>) -> tensor<2x256x384xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, Dit_FloatTensorOfRank<[2]>:$router,
                       Variadic<Dit_FloatTensorOfRank<[3]>>:$expert_weights,
                       AnyAttrOf<[Dit_TokenChoiceAttr, Dit_ExpertChoiceAttr]>:$routing,
                       Dit_ActivationAttr:$activation,
                       DefaultValuedAttr<Dit_WeightLayoutAttr, "WeightLayout::OutIn">:$weight_layout);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = [{
    $input `,` $router `,` $expert_weights attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    int64_t getNumExperts();
    /// Hidden width F of one expert.
    int64_t getExpertHidden();
    /// Expert slots filled per sample of L tokens (token choice: top_k·L;
    /// expert choice: E·int(capacity·L/E)).
    int64_t getSlotsPerSample();
  }];
}

//===----------------------------------------------------------------------===//
// Token masking (MicroDiT's deferred masking)
//===----------------------------------------------------------------------===//

def Dit_MaskTokensOp : Dit_InferredOp<"mask_tokens"> {
  let summary = "Keep a per-sample subset of tokens";
  let description = [{
    `x : (N, T, D)`, `keep : (N, K)` i32 token indices: `out[i, j] =
    x[i, keep[i, j]]`, result `(N, K, D)`. MicroDiT keeps a uniformly random
    25% of tokens per sample while training; the trainer draws `keep`. Index
    values outside [0, T) or repeated within a sample are undefined
    behaviour here; the runtime rejects them.

    Constraints:
    C1. keep has x's batch N and 1 ≤ K ≤ T.

    ```mlir
    %k = dit.mask_tokens %x, %keep : (tensor<2x256x768xf32>, tensor<2x64xi32>) -> tensor<2x64x768xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, TensorRankOf<[I32], [2]>:$keep);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$input `,` $keep attr-dict `:` functional-type(operands, results)";
}

def Dit_UnmaskTokensOp : Dit_InferredOp<"unmask_tokens"> {
  let summary = "Scatter kept tokens back, zeros elsewhere";
  let description = [{
    Inverse of `dit.mask_tokens`: `x : (N, K, E)`, `keep : (N, K)` to
    `(N, num_tokens, E)` with `out[i, keep[i, j]] = x[i, j]` and every other
    token zero (MicroDiT's zero `mask_token` buffer; `state_name` names it
    in reference checkpoints).

    Constraints:
    C1. keep is (N, K) for x of shape (N, K, E).
    C2. K ≤ num_tokens.

    ```mlir
    %f = dit.unmask_tokens %y, %keep {num_tokens = 256 : i64} : (tensor<2x64x16xf32>, tensor<2x64xi32>) -> tensor<2x256x16xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, TensorRankOf<[I32], [2]>:$keep,
                       I64Attr:$num_tokens, OptionalAttr<StrAttr>:$state_name);
  let results = (outs Dit_FloatTensorOfRank<[3]>:$result);
  let assemblyFormat = "$input `,` $keep attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

def Dit_DdpmLossOp : Dit_InferredOp<"ddpm_loss"> {
  let summary = "DDPM ε-prediction loss with the learned-variance VLB term";
  let description = [{
    Per-sample loss of DiT's Gaussian diffusion (spec 2.7) with a linear β
    schedule over `num_timesteps` steps. `prediction : (N, 2C, H, W)` holds
    ε̂ (first C channels) and the variance interpolation v (last C);
    `x_start`, `x_t`, `noise : (N, C, H, W)`; `timesteps : (N)` i32 in
    [0, num_timesteps). Loss = mean over (C, H, W) of (ε - ε̂)² plus the
    KL term in bits between q(x_{t-1} | x_t, x_0) and the model's Gaussian
    built from a stop-gradient ε̂ (the discretised-Gaussian decoder NLL at
    t = 0). Result `(N)` f32.

    Constraints:
    C1. prediction has twice the channels of x_start.
    C2. x_start, x_t and noise have the same shape; prediction has their
        batch and spatial size.
    C3. timesteps has shape (N); num_timesteps ≥ 2.

    ```mlir
    %l = dit.ddpm_loss %p, %x0, %xt, %eps, %t {num_timesteps = 1000 : i64} : (tensor<2x8x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2xi32>) -> tensor<2xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[4]>:$prediction, Dit_FloatTensorOfRank<[4]>:$x_start,
                       Dit_FloatTensorOfRank<[4]>:$x_t, Dit_FloatTensorOfRank<[4]>:$noise,
                       TensorRankOf<[I32], [1]>:$timesteps,
                       DefaultValuedAttr<I64Attr, "1000">:$num_timesteps);
  let results = (outs TensorRankOf<[F32], [1]>:$result);
  let assemblyFormat = [{
    $prediction `,` $x_start `,` $x_t `,` $noise `,` $timesteps attr-dict `:` functional-type(operands, results)
  }];
}

def Dit_RfLossOp : Dit_InferredOp<"rf_loss"> {
  let summary = "Rectified-flow velocity loss";
  let description = [{
    DiT-MoE's rectified flow (t = 0 data, t = 1 noise): the target velocity
    is `noise - x_start`; loss per sample = mean over (C, H, W) of
    `(noise - x_start - v̂)²` where v̂ is the first C channels of
    `prediction` (extra channels, such as the unused variance half, are
    ignored). Result `(N)` f32.

    Constraints:
    C1. x_start and noise have the same shape (N, C, H, W).
    C2. prediction has their batch and spatial size and at least C channels.

    ```mlir
    %l = dit.rf_loss %p, %x0, %eps : (tensor<2x8x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>) -> tensor<2xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[4]>:$prediction, Dit_FloatTensorOfRank<[4]>:$x_start,
                       Dit_FloatTensorOfRank<[4]>:$noise);
  let results = (outs TensorRankOf<[F32], [1]>:$result);
  let assemblyFormat = "$prediction `,` $x_start `,` $noise attr-dict `:` functional-type(operands, results)";
}

def Dit_EdmLossOp : Dit_InferredOp<"edm_loss"> {
  let summary = "EDM denoising loss with optional patch mask";
  let description = [{
    MicroDiT's EDM objective. `raw : (N, C, H, W)` is the network output F,
    `x_noisy = x_start + σ·ε`, `sigma : (N)`. With `σ_d = sigma_data`,
    `D = c_skip·x_noisy + c_out·F`, `c_skip = σ_d²/(σ²+σ_d²)`,
    `c_out = σσ_d/√(σ²+σ_d²)`; per-element loss `λ(σ)·(D - x_start)²`,
    `λ = (σ²+σ_d²)/(σσ_d)²`, averaged over channels. Without `keep` the
    per-sample loss is the mean over pixels; with `keep : (N, K)` (kept
    token indices of a p x p patch grid, p = `patch_size`) it is the mean
    over the kept patches of the per-patch average. All arithmetic f32.
    Result `(N)` f32.

    Constraints:
    C1. raw, x_noisy and x_start have the same shape (N, C, H, W).
    C2. sigma has shape (N); sigma_data > 0.
    C3. With keep: H and W are divisible by patch_size and keep is (N, K)
        with 1 ≤ K ≤ (H/p)·(W/p).

    ```mlir
    %l = dit.edm_loss %f, %xn, %x0, %s {sigma_data = 0.9 : f64, patch_size = 2 : i64} : (tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2xf32>) -> tensor<2xf32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[4]>:$raw, Dit_FloatTensorOfRank<[4]>:$x_noisy,
                       Dit_FloatTensorOfRank<[4]>:$x_start, TensorRankOf<[F32], [1]>:$sigma,
                       Optional<TensorRankOf<[I32], [2]>>:$keep,
                       F64Attr:$sigma_data, DefaultValuedAttr<I64Attr, "2">:$patch_size);
  let results = (outs TensorRankOf<[F32], [1]>:$result);
  let assemblyFormat = [{
    $raw `,` $x_noisy `,` $x_start `,` $sigma (`keep` $keep^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Dit_MoeBalanceLossOp : Dit_InferredOp<"moe_balance_loss"> {
  let summary = "DiT-MoE expert-level balance loss of one MoE layer";
  let description = [{
    For the M = N·L tokens of `x : (N, L, D)` and `router : (E, D)`:
    `P = softmax(router · u)`, `f_i = E/(k·M) · #{slots routed to i}` with
    the top-k selection of token choice, `P̄_i = mean_m P[m, i]`; result
    `coefficient · Σ_i f_i · P̄_i` (a 0-d f32 tensor). f is a count and
    carries no gradient; the gradient flows through P̄.

    Constraints:
    C1. router is (E, D) with D the width of x.
    C2. 1 ≤ top_k ≤ E; coefficient ≥ 0.

    ```mlir
    %b = dit.moe_balance_loss %u, %router {top_k = 2 : i64, coefficient = 0.01 : f64} : (tensor<2x256x384xf32>, tensor<8x384xf32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins Dit_FloatTensorOfRank<[3]>:$input, Dit_FloatTensorOfRank<[2]>:$router,
                       I64Attr:$top_k, F64Attr:$coefficient);
  let results = (outs Dit_F32Scalar:$result);
  let assemblyFormat = "$input `,` $router attr-dict `:` functional-type(operands, results)";
}

#endif // DIT_OPS_TD
