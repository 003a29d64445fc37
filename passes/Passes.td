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

def DitDecompose : Pass<"dit-decompose", "::mlir::func::FuncOp"> {
  let summary = "Expand composite dit ops into the ones kernels are selected for";
  let description = [{
    `dit.mlp` becomes `dit.linear`, the activation, `dit.linear`, so that the
    activation can later fuse into the first product's epilogue and the
    second product can take a gated-residual epilogue.
  }];
  let dependentDialects = ["::diffc::dit::DitDialect"];
}

def DitToKern : Pass<"dit-to-kern", "::mlir::func::FuncOp"> {
  let summary = "Select a kernel for every dit op that needs one";
  let description = [{
    One-to-one kernel selection: dit.linear to kern.gemm, dit.layer_norm and
    dit.rms_norm to kern.norm, dit.swiglu to kern.swiglu, dit.moe to
    kern.moe, dit.depthwise_conv2d to kern.dwconv, dit.patch_embed to
    kern.patch_embed. Ops that are single kernels as they stand (attention,
    gla, embeddings, token layout, element-wise) stay. The fusion passes
    then merge neighbours into these kernels.
  }];
  let dependentDialects = ["::diffc::kern::KernDialect"];
}

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

//===----------------------------------------------------------------------===//
// kern level
//===----------------------------------------------------------------------===//

def KernAutodiff : Pass<"kern-autodiff", "::mlir::ModuleOp"> {
  let summary = "Turn @forward into @train_step: loss and every parameter's gradient";
  let description = [{
    Builds `@train_step` from the kernel-level `@forward` and the model's
    objective and removes `@forward`. `@train_step` takes the forward's
    inputs plus the objective's (`ddpm`: `x_start`, `noise`, `timesteps`
    with `x` = x_t; `rf`: `x_start`, `noise`; `edm`: `x_start`, `sigma`,
    with `x` = c_in·x_noisy supplied by the trainer) and returns the
    per-sample loss followed by the gradient of the batch-mean loss with
    respect to every parameter, in the order of the parameters.

    Reverse mode over the program: every op that a parameter reaches gets a
    `kern.vjp` (its backward kernel) in reverse program order; gradients of
    values with several consumers are summed; gradients that are the
    incoming gradient itself (a residual, the left side of an add) are
    reused without a kernel. Forward values the backward reads stay alive
    through ordinary liveness in the memory plan. DiT-MoE's balance loss
    enters the router's gradient through the MoE's backward kernel, not the
    returned loss (spec 3.2).

    A kern.gemm with an activation or a gated residual also saves its
    pre-activation z = x·Wᵀ + b for its backward kernel (kern.gemm's
    `preactivation` result, the vjp's saved operand): the backward then
    runs the two gradient products only, where recomputing z would cost a
    third, and z is stored in the activation type as PyTorch's autograd
    stores it. With `save-expert-activations` (set for CUDA targets), a
    token-choice kern.moe with SwiGLU experts likewise saves its expert
    activations (kern.moe's `activations` result) unless remat names
    products. With `save-attention-statistics` (set for CUDA targets), each
    dit.attention becomes a kern.attention that also writes its softmax
    log-sum-exp, and its backward kernel reads that and the attention
    output (which the output projection's backward keeps alive anyway)
    instead of recomputing the softmax statistics.

    Rematerialisation (`remat`, `none` or a comma-separated list of
    `norms` and `products`): `none` keeps every forward value the
    backward reads alive from the forward to its backward kernel;
    `products` saves no pre-activation and recomputes z in the backward
    (one more product per such layer, for memory); `norms`
    recomputes the outputs of `kern.norm` (norm + adaLN modulate, which are
    memory-bound and cheap) just before the backward kernel that reads
    them, from the norm's inputs, which its own backward keeps alive anyway.
    The forward copy then dies at its last forward use, so the memory plan
    reuses its space: two activations of the residual width per transformer
    block, for one more norm pass each. The recomputed norms carry the unit
    attribute `kern.remat`, which also keeps CSE from merging them back
    into the forward ones.
  }];
  let options = [
    Option<"objective", "objective", "std::string", /*default=*/"\"\"",
           "ddpm, rf or edm; empty: the model description's objective">,
    Option<"saveExpertActivations", "save-expert-activations", "bool", /*default=*/"false",
           "token-choice SwiGLU kern.moe ops save their expert activations for the backward (the CUDA backward reads them; the CPU backward recomputes)">,
    Option<"saveAttentionStatistics", "save-attention-statistics", "bool", /*default=*/"false",
           "dit.attention becomes kern.attention, whose output and log-sum-exp the backward reads (the CUDA backward skips its statistics pass; the CPU backward recomputes)">,
    Option<"remat", "remat", "std::string", /*default=*/"\"none\"",
           "none, or a comma-separated list of norms (recompute norm outputs in the backward) and products (recompute dense-layer pre-activations)">,
  ];
  let dependentDialects = ["::diffc::kern::KernDialect"];
}

def KernFoldActivationGrad : Pass<"kern-fold-activation-grad", "::mlir::func::FuncOp"> {
  let summary = "Fold a dense layer's activation derivative into the next layer's input-gradient product";
  let description = [{
    In a training program, a kern.gemm `y = act(z)` with an activation, no
    gated residual and a saved pre-activation z, whose only consumer in
    the backward is a kern.gemm reading y (DiT's fc1 → fc2): the consumer's
    backward returns dz = (dOut₂ · W₂) ⊙ act'(z) directly (kern.vjp
    `input_grad_act`, z as its last operand) and the producer's backward
    becomes that of a plain linear layer taking dz (act none, nothing
    saved). On the GPU the derivative then runs in cuBLASLt's DGELU
    epilogue of the product instead of a separate pass over dOut₂·W₂ and
    z (for bf16/f16 tanh GELU; other cases apply it in a pass after the
    product); the producer's backward keeps only its bias column sums.
  }];
}

def KernFoldNormGradSum : Pass<"kern-fold-norm-grad-sum", "::mlir::func::FuncOp"> {
  let summary = "Add a residual's gradient inside the norm backward that meets it";
  let description = [{
    In a training program, the gradient of a value used both by a kern.norm
    and by another path (a pre-norm block's residual stream) is the sum
    `dit.add(a, b)` that kern-autodiff emits. When one term is the kern.norm
    backward's input gradient and that is its only use, the backward takes
    the other term as its `input_grad_addend` (last operand) and returns the
    sum itself: one pass writes dx + addend where the norm backward and the
    sum each read and wrote a full activation. The new backward stands
    where the old one stood when the addend is already defined there, else
    where the sum stood when nothing used the old backward's results in
    between; otherwise the sum stays.
  }];
}

def KernFoldAttentionBiasGrad : Pass<"kern-fold-attention-bias-grad", "::mlir::func::FuncOp"> {
  let summary = "Sum the q/k/v bias gradient inside the attention backward";
  let description = [{
    In a training program, a plain dense layer (bias, no activation, no
    gated residual) whose output is split into the q, k and v of one
    attention: its backward's incoming gradient is the split backward that
    joins the attention backward's three gradients, and its bias gradient
    is that joined gradient's sum over rows, one more pass over it. The
    attention backward instead gets `column_sums` and returns the row sums
    of its gradients beside them (on the GPU, per-tile partial sums taken
    while the gradient tiles are still in shared memory, then added in a
    fixed order); a split backward of those sums, with the bias standing
    for the split's input, is the bias gradient; and the dense backward no
    longer computes one. Applies only when each gradient is used by that
    split alone, and the joined gradient by that dense backward alone.
  }];
}

def KernFoldTokenReorder : Pass<"kern-fold-token-reorder", "::mlir::func::FuncOp"> {
  let summary = "Fold scan-order changes into the depth-wise convolution before them";
  let description = [{
    `dit.reorder_tokens(kern.dwconv(x))` becomes one kern.dwconv that writes
    its output in the new order: DiG's flip and transpose between blocks cost
    no copy. A reorder with another producer stays (a permuting copy).
  }];
}

def KernFuseGatedResidual : Pass<"kern-fuse-gated-residual", "::mlir::func::FuncOp"> {
  let summary = "Fuse residual + gate ⊙ y into the kernel producing y";
  let description = [{
    `dit.gated_residual(r, g, y)` where y is the only use of a kern.gemm,
    kern.swiglu or kern.moe without an epilogue becomes that kernel with the
    residual epilogue, so the branch output is never written on its own.
  }];
}

def KernFuseGatedRmsNorm : Pass<"kern-fuse-gated-rms-norm", "::mlir::func::FuncOp"> {
  let summary = "Fuse the SiLU output gate into the norm before it";
  let description = [{
    `dit.mul(kern.norm(o), dit.silu(g))` (DiG's RMSNorm-gated output) becomes
    one kern.norm with a silu_gate operand.
  }];
}

def KernFusePointwise : Pass<"kern-fuse-pointwise", "::mlir::func::FuncOp"> {
  let summary = "Group the remaining element-wise ops into generated kernels";
  let description = [{
    Every dit.add, dit.mul, dit.silu, dit.gelu and kern.cast left after the
    pattern fusions becomes a kern.pointwise whose body spells out its f32
    arithmetic. A pointwise op then absorbs each pointwise producer of an
    input that has no other use and the consumer's shape and element type,
    so a chain of element-wise ops is one generated kernel that reads its
    inputs once. Values with other uses (a gradient's saved input, say)
    stay materialised. Runs after kern-set-precision, so casts fuse too.
  }];
  let dependentDialects = ["::diffc::kern::KernDialect", "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect"];
}

def KernFuseGemmActivation : Pass<"kern-fuse-gemm-activation", "::mlir::func::FuncOp"> {
  let summary = "Fuse an activation into the matrix product before it";
  let description = [{
    `dit.gelu` or `dit.silu` of a single-use kern.gemm without an activation
    or epilogue becomes that gemm's activation epilogue.
  }];
}

def KernFuseMoeSharedExpert : Pass<"kern-fuse-moe-shared-expert", "::mlir::func::FuncOp"> {
  let summary = "Add the always-on shared expert inside the MoE kernel";
  let description = [{
    `dit.add(kern.moe(u), kern.swiglu(u))` (DiT-MoE's routed plus shared
    experts on the same input, both single-use and without epilogues)
    becomes one kern.moe with shared weights, whose combine adds the shared
    expert.
  }];
}

def KernFuseNormModulate : Pass<"kern-fuse-norm-modulate", "::mlir::func::FuncOp"> {
  let summary = "Fuse adaLN modulation into the norm before it";
  let description = [{
    `dit.modulate(kern.norm(x), shift, scale)` with a single-use norm becomes
    one kern.norm with shift and scale: one pass over each row.
  }];
}

def KernFuseResidualNorm : Pass<"kern-fuse-residual-norm", "::mlir::func::FuncOp"> {
  let summary = "Fuse a dense layer's gated residual into the norm after it";
  let description = [{
    `kern.norm(kern.gemm(a, w) residual x gate g)`, where the norm is the
    first user of the gemm's result x1, becomes a gemm without the residual
    and a kern.norm with `residual x residual_gate g`, whose second result
    is x1: DiT's `x + gate ⊙ attn(...)` and the next norm of it in one pass
    over the rows. Every other user of x1 reads the norm's sum; a saved
    pre-activation without an activation is the gemm's result itself. Runs
    after kern-autodiff (the residual form has no backward rule), in both
    modes.
  }];
}

def KernFusePatchEmbedPositions : Pass<"kern-fuse-patch-embed-positions", "::mlir::func::FuncOp"> {
  let summary = "Add the position table inside the patch embedding";
  let description = [{
    `dit.add(kern.patch_embed(x), pos)` with a (T, D) table becomes one
    kern.patch_embed with positions.
  }];
}

def KernPlanMemory : Pass<"kern-plan-memory", "::mlir::ModuleOp"> {
  let summary = "Assign every value of @forward a place in one of three regions";
  let description = [{
    Static memory plan of the kernel-level program:
    - parameters get consecutive places in the `weights` region;
    - values computed from parameters and attributes alone (the position
      table and its casts) get places in the `constants` region and are
      computed once when a session starts;
    - every other value (inputs, activations, the output) gets a place in
      the `arena` region, reused after the value's last use (first fit by
      liveness), with kernels whose epilogue adds a residual writing over
      that residual where it dies there; inputs are never reused, so an
      entry can be replayed without copying them in again;
    - `dit.split` results are views: the parent's place plus a column
      offset, with the parent's row stride.
    - with `weight-grad-window` N > 0, the input x and the incoming
      gradient of a dense layer's backward that computes a weight gradient
      (`kern.vjp "kern.gemm"` with slot 1 in `grads_of`) stay live until
      the N-th such backward after it (or the last one). The CUDA backend
      runs weight-gradient products on a second stream beside the kernels
      that follow (its weight-gradient lane); a kernel that writes where a
      pending product still reads must wait for it, and without the window
      the first-fit plan gives the dying x to the very next kernel, so
      nearly every product would be waited for at once.
    Places are 256-byte aligned. The plan is recorded as attributes:
    `kern.slot = array<i64: region, offset, row_stride>` on arguments,
    `kern.slots = [...]` on ops (one per result) and
    `kern.plan = {weights_bytes, constants_bytes, arena_bytes}` on @forward;
    `kern.init` marks ops that run once at session start.
  }];
  let options = [
    Option<"weightGradWindow", "weight-grad-window", "unsigned", /*default=*/"0",
           "dense-layer backwards after one with a weight gradient until which its x and incoming gradient stay live (0: their last use)">,
  ];
}

def KernSetPrecision : Pass<"kern-set-precision", "::mlir::func::FuncOp"> {
  let summary = "Give activations and weights the chosen element type";
  let description = [{
    Rewrites every f32 tensor of the kernel-level program to `dtype`, except
    where precision matters (spec 8.6): the time input and the sinusoidal
    embeddings stay f32 and a kern.cast converts their results. Norm
    statistics, softmax and GLA decays are f32 inside the kernels whatever
    the element type.
  }];
  let options = [
    Option<"dtype", "dtype", "std::string", /*default=*/"\"f32\"", "f32, f16 or bf16">,
  ];
}

#endif // DIFFC_PASSES_TD
