//===- KernOps.td - kern operations ----------------------------*- tablegen -*-===//
//
// Fused kernels. Each description states what the kernel computes in terms
// of the dit ops it replaces, and its numbered constraints.
//
//===----------------------------------------------------------------------===//

#ifndef KERN_OPS_TD
#define KERN_OPS_TD

include "dialects/Kern/IR/KernBase.td"
include "dialects/Dit/IR/DitAttrs.td"

def Kern_GemmOp : Kern_Op<"gemm", [AttrSizedOperandSegments]> {
  let summary = "Matrix product with bias, activation and gated-residual epilogue";
  let description = [{
    `y = act(x · weightᵀ + bias)` over the last dimension of x (weight in
    `nn.Linear` layout (M, K)); with `residual` and `gate`,
    `out = residual + gate ⊙ y`, the gate (N, M) broadcast over the tokens of
    a (N, L, M) residual. Replaces dit.linear and the activation and
    dit.gated_residual that consumed it.

    With the second result `preactivation`, the kernel also writes
    `z = x · weightᵀ + bias`, the value before the activation and the gated
    residual. kern-autodiff asks for it in @train_step so that the backward
    kernel reads z instead of recomputing the product (its act'(z) and the
    gate's gradient Σ dOut ⊙ act(z) need it).

    Constraints:
    C1. weight is (M, K) with K the last dimension of x; bias, if any, (M).
    C2. The result is x's shape with the last dimension M.
    C3. residual and gate come together; residual has the result's type
        and rank 3, gate is (N, M) with N the residual's batch.
    C4. All operands share the element type.
    C5. preactivation has the result's type, and exists only when there is
        an activation or a gated residual (otherwise z is the result).
  }];
  let arguments = (ins Kern_FloatTensor:$input, Kern_FloatTensor:$weight,
                       Optional<Kern_FloatTensor>:$bias, Optional<Kern_FloatTensor>:$residual,
                       Optional<Kern_FloatTensor>:$gate,
                       DefaultValuedAttr<Kern_ActAttr, "Act::None">:$act);
  let results = (outs Kern_FloatTensor:$result, Optional<Kern_FloatTensor>:$preactivation);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? (`residual` $residual^)? (`gate` $gate^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Kern_SwiGluOp : Kern_Op<"swiglu", [AttrSizedOperandSegments]> {
  let summary = "SwiGLU feed-forward with gated-residual epilogue";
  let description = [{
    dit.swiglu (separate gate and up, or one packed gate/up weight whose
    first half is the gate), then optionally `residual + gate ⊙ y`.

    Constraints:
    C1. The dit.swiglu constraints on x and the three weights.
    C2. residual and residual_gate come together, as for kern.gemm.
    C3. All operands share the element type.
  }];
  let arguments = (ins Kern_FloatTensor:$input, Kern_FloatTensor:$gate_weight,
                       Optional<Kern_FloatTensor>:$up_weight, Kern_FloatTensor:$down_weight,
                       Optional<Kern_FloatTensor>:$residual, Optional<Kern_FloatTensor>:$residual_gate);
  let results = (outs Kern_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $gate_weight (`up` $up_weight^)? `down` $down_weight (`residual` $residual^)? (`gate` $residual_gate^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Kern_NormOp : Kern_Op<"norm", [AttrSizedOperandSegments]> {
  let summary = "LayerNorm or RMSNorm with affine, modulation and SiLU gate";
  let description = [{
    Over each contiguous group of `group_size` elements of the last
    dimension: normalise (`kind`), multiply by `weight` and add `bias`
    (shape (group_size), each optional), modulate with per-sample `shift`
    and `scale` ((N, D) for a (N, L, D) input; together or not at all), and
    multiply by `silu(silu_gate)` (same shape as the input). Replaces
    dit.layer_norm / dit.rms_norm and the dit.modulate or
    dit.mul(·, dit.silu(g)) after it.

    With `residual` and `residual_gate` (set by kern-fuse-residual-norm),
    the value normalised is `s = residual + residual_gate ⊙ input` instead
    of the input, the gate (N, D) broadcast over the tokens of a (N, L, D)
    input as in kern.gemm's gated residual, and the second result `sum` is
    s itself: DiT's `x + gate ⊙ y` followed by the next block's norm of x,
    in one pass over the rows instead of a gated-residual pass and a norm
    that reads x back. `sum` may take over the residual's memory (each
    element is read before it is written, by the same thread). There is no
    backward rule for this form: the fusion runs after kern-autodiff.

    Constraints:
    C1. group_size divides the last dimension; weight and bias are
        (group_size); epsilon > 0.
    C2. shift and scale come together and are (N, D) for a (N, L, D) input.
    C3. silu_gate has the input's type.
    C4. The result has the input's type; operands share the element type.
    C5. residual, residual_gate and the sum result come together; residual
        and sum have the input's type, residual_gate is (N, D) for a
        (N, L, D) input.
  }];
  let arguments = (ins Kern_FloatTensor:$input, Optional<Kern_FloatTensor>:$weight,
                       Optional<Kern_FloatTensor>:$bias, Optional<Kern_FloatTensor>:$shift,
                       Optional<Kern_FloatTensor>:$scale, Optional<Kern_FloatTensor>:$silu_gate,
                       Optional<Kern_FloatTensor>:$residual, Optional<Kern_FloatTensor>:$residual_gate,
                       Kern_NormKindAttr:$kind, F64Attr:$epsilon, I64Attr:$group_size);
  let results = (outs Kern_FloatTensor:$result, Optional<Kern_FloatTensor>:$sum);
  let assemblyFormat = [{
    $input (`weight` $weight^)? (`bias` $bias^)? (`shift` $shift^)? (`scale` $scale^)? (`silu_gate` $silu_gate^)? (`residual` $residual^)? (`residual_gate` $residual_gate^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Kern_MoeOp : Kern_Op<"moe", [AttrSizedOperandSegments]> {
  let summary = "Routed experts, shared expert and gated residual in one call";
  let description = [{
    dit.moe with the same routing, activation and layout; when the three
    shared weights are present the unweighted shared SwiGLU expert is added
    (DiT-MoE's `y + shared(u)`), then optionally `residual + gate ⊙ y`.
    Routing, permutation, the expert products and the combine stay on the
    device with no host synchronisation.

    With the second result `activations` (token-choice SwiGLU experts
    only), the kernel also writes the expert activations its backward
    kernel would otherwise recompute, as one flat tensor. Slots (token t's
    k-th choice is slot t·top_k + k) are ordered expert by expert, in slot
    order within an expert; for the S = N·L·top_k slot rows it holds
    G = x·gateᵀ, U = x·upᵀ, H = silu(G) ⊙ U (S x F each) and the expert
    outputs Y = H·downᵀ (S x D); then, with a shared expert, the same four
    over the N·L tokens (N·L x Fs three times, N·L x D). kern-autodiff asks
    for it in @train_step for CUDA targets.

    Constraints:
    C1. The dit.moe constraints on x, the router and the expert weights.
    C2. Shared weights are all three or none: (Fs, D), (Fs, D), (D, Fs).
    C3. residual and residual_gate come together, as for kern.gemm.
    C4. All operands share the element type.
    C5. activations exist only for token-choice routing with SwiGLU
        experts, and are a 1-D tensor of the element type with
        S·(3F + D) + (shared ? N·L·(3Fs + D) : 0) elements.
  }];
  let arguments = (ins Kern_FloatTensor:$input, Kern_FloatTensor:$router,
                       Variadic<Kern_FloatTensor>:$expert_weights,
                       Optional<Kern_FloatTensor>:$shared_gate, Optional<Kern_FloatTensor>:$shared_up,
                       Optional<Kern_FloatTensor>:$shared_down,
                       Optional<Kern_FloatTensor>:$residual, Optional<Kern_FloatTensor>:$residual_gate,
                       AnyAttrOf<[Dit_TokenChoiceAttr, Dit_ExpertChoiceAttr]>:$routing,
                       Dit_ActivationAttr:$activation, Dit_WeightLayoutAttr:$weight_layout);
  let results = (outs Kern_FloatTensor:$result, Optional<Kern_FloatTensor>:$activations);
  let extraClassDeclaration = [{
    /// The element count C5 requires of `activations` (token-choice SwiGLU
    /// experts), or nullopt for routings that save none.
    std::optional<int64_t> getActivationElements();
  }];
  let assemblyFormat = [{
    $input `,` $router `experts` `(` $expert_weights `)` (`shared` `(` $shared_gate^ `,` $shared_up `,` $shared_down `)`)? (`residual` $residual^)? (`gate` $residual_gate^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Kern_DwConvOp : Kern_Op<"dwconv"> {
  let summary = "Depth-wise convolution writing its output in another scan order";
  let description = [{
    dit.depthwise_conv2d, whose output token at sequence position s is
    written at the position that the dit.reorder_tokens from `from` to `to`
    would move it to — the DiG flip/transpose costs no extra pass.

    Constraints:
    C1. The dit.depthwise_conv2d constraints.
    C2. from == to unless both orders are defined on the grid (column-major
        orders need a square grid).
  }];
  let arguments = (ins Kern_FloatTensor:$input, Kern_FloatTensor:$weight, Kern_FloatTensor:$bias,
                       DenseI64ArrayAttr:$grid, Dit_ScanOrderAttr:$from, Dit_ScanOrderAttr:$to);
  let results = (outs Kern_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weight `,` $bias attr-dict `:` functional-type(operands, results)";
}

def Kern_PatchEmbedOp : Kern_Op<"patch_embed"> {
  let summary = "Patch embedding with the position table added";
  let description = [{
    dit.patch_embed, plus the (T, D) position table when `positions` is
    present (the dit.add that followed it).

    Constraints:
    C1. The dit.patch_embed constraints.
    C2. positions, if present, is (T, D) for the (N, T, D) result.
  }];
  let arguments = (ins Kern_FloatTensor:$input, Kern_FloatTensor:$weight, Kern_FloatTensor:$bias,
                       Optional<Kern_FloatTensor>:$positions);
  let results = (outs Kern_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weight `,` $bias (`positions` $positions^)? attr-dict `:` functional-type(operands, results)";
}

def Kern_CastOp : Kern_Op<"cast"> {
  let summary = "Element-type conversion";
  let description = [{
    Converts every element to the result's element type (round to nearest
    even). Inserted where the precision assignment keeps a value in f32
    (embeddings' sinusoids, losses) next to f16/bf16 activations.

    Constraints:
    C1. Input and result have the same shape.
  }];
  let arguments = (ins RankedTensorOf<[F32, F16, BF16]>:$input);
  let results = (outs RankedTensorOf<[F32, F16, BF16]>:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
}


def Kern_AttentionOp : Kern_Op<"attention"> {
  let summary = "Multi-head softmax attention that keeps its softmax statistics";
  let description = [{
    dit.attention's `out = softmax(scale · q kᵀ) v` per sample and head
    (same operand layout: heads contiguous in the last dimension), plus
    `logsumexp : (N, H, Lq)` in f32,
    `logsumexp[n, h, i] = log Σ_j exp(scale · q_{n,i,h} · k_{n,j,h})`
    (natural logarithm, over all Lk keys). kern-autodiff puts it in
    @train_step in place of a dit.attention when it saves attention
    statistics (CUDA targets), and its backward kernel reads `result` and
    `logsumexp` as saved values: the softmax is then `exp(s − logsumexp)`
    and `Δ = rowsum(dOut ⊙ result)` comes from one memory-bound pass, where
    recomputing them would cost a pass over Q·Kᵀ and dOut·Vᵀ. The flash
    forward has both statistics at hand, so writing them costs 4 bytes per
    query row and head.

    Constraints:
    C1. `num_heads` H is positive and divides the widths of q, k and v.
    C2. q and k have the same per-head width.
    C3. k and v have the same batch and length; q has the same batch.
    C4. q, k, v and result share the element type.
    C5. result is (N, Lq, H·dv); logsumexp is (N, H, Lq) f32.
  }];
  let arguments = (ins Kern_FloatTensor:$query, Kern_FloatTensor:$key, Kern_FloatTensor:$value,
                       I64Attr:$num_heads, F64Attr:$scale);
  let results = (outs Kern_FloatTensor:$result, F32Tensor:$logsumexp);
  let assemblyFormat = [{
    $query `,` $key `,` $value attr-dict `:` functional-type(operands, results)
  }];
}


def Kern_PointwiseOp : Kern_Op<"pointwise", [SingleBlock]> {
  let summary = "Generated element-wise kernel";
  let description = [{
    One generated kernel for a chain of element-wise work: for every element
    of the result, each input's element (inputs broadcast over the leading
    dimensions of the result, as dit.add's right-hand side does) is converted
    to f32 and bound to the body's argument of the same position; the body
    computes in f32 and its yielded value is rounded (to nearest even) to
    the result's element type. `kern-fuse-pointwise` builds these ops from
    dit.add, dit.mul, dit.silu, dit.gelu and kern.cast; `diffc compile`
    writes a CUDA kernel for each (built by the runtime through NVRTC) and
    the CPU backend evaluates the body.

    ```mlir
    %y = kern.pointwise ins(%a, %b : tensor<2x4x8xf16>, tensor<8xf16>) {
    ^bb0(%x: f32, %s: f32):
      %0 = arith.mulf %x, %s : f32
      kern.yield %0 : f32
    } : tensor<2x4x8xf16>
    ```

    Constraints:
    C1. At least one input; the body has one f32 argument per input.
    C2. Every input is a single element (of any shape) or has a shape that
        is a suffix of the result's shape.
    C3. The body holds only f32 scalar arith ops (constant, addf, subf,
        mulf, divf, negf, maximumf, minimumf) and math ops (exp, log, tanh,
        erf, sqrt, rsqrt, absf), and yields one f32 value.
  }];
  let arguments = (ins Variadic<Kern_FloatTensor>:$inputs);
  let results = (outs Kern_FloatTensor:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    `ins` `(` $inputs `:` type($inputs) `)` $body attr-dict `:` type($result)
  }];
  let extraClassDeclaration = [{
    /// The yielded value of the body.
    ::mlir::Value getYielded();
  }];
}

def Kern_YieldOp : Op<Kern_Dialect, "yield", [Pure, Terminator, HasParent<"PointwiseOp">]> {
  let summary = "The value a kern.pointwise body computes for one element";
  let description = [{
    Terminates a kern.pointwise body with the element's f32 value.
  }];
  let arguments = (ins F32:$value);
  let assemblyFormat = "$value attr-dict `:` type($value)";
}

def Kern_VjpOp : Kern_Op<"vjp"> {
  let summary = "Vector-Jacobian product of one kernel-level op";
  let description = [{
    The backward kernel of the op named `forward` (a kern op or a dit op
    that is a single kernel), produced by `kern-autodiff`. Its operands are
    the forward op's present operands (`present` lists their slots in the
    forward op's operand order) followed, unless the forward op is a loss,
    by the `num_saved` values the forward op saved for its backward (its
    results after the first, such as kern.gemm's preactivation; for
    kern.attention, its result and its logsumexp), then,
    unless the forward op is a loss, the gradients of the loss with respect
    to the forward op's other results. `forward_attrs` are the forward op's
    attributes. Result i is the
    gradient with respect to forward operand slot `grads_of[i]` and has that
    operand's type. For a loss op there is no incoming gradient: the kernel
    differentiates `loss_weight · Σ_n loss[n]`.

    The gradient of a MoE op with token-choice routing and a positive
    balance coefficient includes the balance loss's gradient (spec 3.2), so
    it trains the router without entering the logged loss.

    With `input_grad_act` (set by kern-fold-activation-grad, kern.gemm
    only), the forward op's input x was `act(z)` for the z given as the
    last operand (after the incoming gradients), and the result for slot 0
    is the gradient with respect to z instead of x:
    `dz = (dY_z · weight) ⊙ act'(z)`. The producer of x then takes dz as its
    incoming gradient without its own activation step; on the GPU the
    derivative runs in the product's epilogue.

    With `input_grad_addend` (set by kern-fold-norm-grad-sum, kern.norm
    only), the last operand is a gradient of the loss with respect to the
    forward op's input x that arrived by another path (a residual), and the
    result for slot 0 is the sum of both: `dx + addend`, in one pass
    instead of a separate element-wise sum.

    With `column_sums` (set by kern-fold-attention-bias-grad; kern.attention
    and dit.attention only), the op has one more result per gradient, after all of them: the
    sum of that gradient over its rows (every sample and position),
    `sum_i[c] = Σ_{n,l} grad_i[n, l, c]`, a vector of the gradient's last
    dimension and element type, summed in f32. These are the parts of the
    bias gradient of the product that made q, k and v, formed while the
    gradients are still on chip instead of in a pass that reads them again.

    Constraints:
    C1. `present` is strictly increasing and names as many slots as there
        are forward operands.
    C2. Every slot in `grads_of` is present, and the gradient result i has
        the type of that forward operand.
    C3. A non-loss op has at least one incoming gradient; a loss has none
        and carries `loss_weight`.
    C4. `num_saved` is not negative and leaves an incoming gradient; only
        a non-loss op saves values.
    C5. `input_grad_act` is an activation (not none) of a kern.gemm
        backward whose slot 0 gradient is wanted; z has slot 0's type.
    C6. `input_grad_addend` is on a kern.norm backward whose slot 0
        gradient is wanted; the addend has slot 0's type.
    C7. `column_sums` is on an attention backward; its sum results
        follow the gradients, one per gradient, each a rank-1 tensor of its
        gradient's last dimension and element type.
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs, StrAttr:$forward,
                       DictionaryAttr:$forward_attrs, DenseI64ArrayAttr:$present,
                       DenseI64ArrayAttr:$grads_of, OptionalAttr<F64Attr>:$loss_weight,
                       DefaultValuedAttr<I64Attr, "0">:$num_saved,
                       OptionalAttr<Kern_ActAttr>:$input_grad_act,
                       UnitAttr:$input_grad_addend, UnitAttr:$column_sums);
  let results = (outs Variadic<AnyRankedTensor>:$grads);
  let assemblyFormat = "$forward `(` $inputs `)` attr-dict `:` functional-type($inputs, results)";
  let extraClassDeclaration = [{
    /// Whether the forward op is a loss (no incoming gradient).
    bool isLoss();
    /// The forward op's saved values and the incoming gradients.
    ::mlir::ValueRange getSaved();
    ::mlir::ValueRange getIncoming();
    /// With input_grad_act: z, the pre-activation of slot 0's operand.
    ::mlir::Value getInputPreactivation();
    /// With input_grad_addend: what slot 0's gradient is added to.
    ::mlir::Value getInputGradAddendValue();
    /// The gradient results (one per grads_of slot), and with column_sums
    /// the row sums that follow them (empty otherwise).
    ::mlir::ResultRange getGradients();
    ::mlir::ResultRange getColumnSumResults();
  }];
}

#endif // KERN_OPS_TD
