// Verifier errors of the kern dialect, one per split, named after the
// constraint they violate.
// RUN: diffc-opt %s -split-input-file -verify-diagnostics

// gemm C1: weight features.
func.func @gemm_c1(%x: tensor<2x8xf16>, %w: tensor<4x9xf16>) {
  // expected-error@+1 {{C1: weight 4x9 does not take 8 input features}}
  %0 = kern.gemm %x, %w : (tensor<2x8xf16>, tensor<4x9xf16>) -> tensor<2x4xf16>
  return
}

// -----
// gemm C2: result shape.
func.func @gemm_c2(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>) {
  // expected-error@+1 {{C2: result must have shape 2, 4}}
  %0 = kern.gemm %x, %w : (tensor<2x8xf16>, tensor<4x8xf16>) -> tensor<2x5xf16>
  return
}

// -----
// gemm C3: residual without gate.
func.func @gemm_c3(%x: tensor<2x3x8xf16>, %w: tensor<8x8xf16>) {
  // expected-error@+1 {{C3: residual and gate must come together}}
  %0 = kern.gemm %x, %w residual %x : (tensor<2x3x8xf16>, tensor<8x8xf16>, tensor<2x3x8xf16>) -> tensor<2x3x8xf16>
  return
}

// -----
// gemm C4: mixed element types.
func.func @gemm_c4(%x: tensor<2x8xf16>, %w: tensor<4x8xbf16>) {
  // expected-error@+1 {{C4: operands mix element types 'f16' and 'bf16'}}
  %0 = kern.gemm %x, %w : (tensor<2x8xf16>, tensor<4x8xbf16>) -> tensor<2x4xf16>
  return
}

// -----
// gemm C5: the preactivation has the result's type.
func.func @gemm_c5_type(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>) {
  // expected-error@+1 {{C5: preactivation must have the result's type 'tensor<2x4xf16>', got 'tensor<2x4xf32>'}}
  %0, %1 = kern.gemm %x, %w {act = #kern.act<gelu>} : (tensor<2x8xf16>, tensor<4x8xf16>) -> (tensor<2x4xf16>, tensor<2x4xf32>)
  return
}

// -----
// gemm C5: no preactivation without an activation or a gated residual.
func.func @gemm_c5_plain(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>) {
  // expected-error@+1 {{C5: a preactivation without an activation or a gated residual is the result itself}}
  %0, %1 = kern.gemm %x, %w : (tensor<2x8xf16>, tensor<4x8xf16>) -> (tensor<2x4xf16>, tensor<2x4xf16>)
  return
}

// -----
// moe C5: expert choice keeps no activations.
func.func @moe_c5_routing(%x: tensor<2x4x8xf16>, %r: tensor<2x8xf16>, %w1: tensor<2x8x16xf16>, %w2: tensor<2x16x8xf16>) {
  // expected-error@+1 {{C5: only token-choice routing with SwiGLU experts saves activations}}
  %0, %1 = kern.moe %x, %r experts(%w1, %w2) {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.0>, weight_layout = #dit.weight_layout<in_out>} : (tensor<2x4x8xf16>, tensor<2x8xf16>, tensor<2x8x16xf16>, tensor<2x16x8xf16>) -> (tensor<2x4x8xf16>, tensor<10xf16>)
  return
}

// -----
// moe C5: the activations' size (8 tokens x top 1 x (3·16 + 8)).
func.func @moe_c5_size(%x: tensor<2x4x8xf16>, %r: tensor<2x8xf16>, %g: tensor<2x16x8xf16>, %u: tensor<2x16x8xf16>, %d: tensor<2x8x16xf16>) {
  // expected-error@+1 {{C5: activations must be 'tensor<448xf16>', got 'tensor<447xf16>'}}
  %0, %1 = kern.moe %x, %r experts(%g, %u, %d) {activation = #dit.activation<swiglu>, routing = #dit.token_choice<top_k = 1, normalize = false, balance_coef = 0.0>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x4x8xf16>, tensor<2x8xf16>, tensor<2x16x8xf16>, tensor<2x16x8xf16>, tensor<2x8x16xf16>) -> (tensor<2x4x8xf16>, tensor<447xf16>)
  return
}

// -----
// vjp C1: present slots increase.
func.func @vjp_c1(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>) {
  // expected-error@+1 {{C1: present slots must increase, got 1 then 0}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %d) {forward_attrs = {}, grads_of = array<i64: 1>, present = array<i64: 1, 0>} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>) -> tensor<4x8xf16>
  return
}

// -----
// vjp C2: a gradient has its operand's type.
func.func @vjp_c2(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>) {
  // expected-error@+1 {{C2: result #0 must be 'tensor<4x8xf16>', got 'tensor<2x8xf16>'}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %d) {forward_attrs = {}, grads_of = array<i64: 1>, present = array<i64: 0, 1>} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>) -> tensor<2x8xf16>
  return
}

// -----
// vjp C3: a backward kernel needs an incoming gradient.
func.func @vjp_c3(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>) {
  // expected-error@+1 {{C3: needs an incoming gradient, got 0}}
  %0 = kern.vjp "kern.gemm"(%x, %w) {forward_attrs = {}, grads_of = array<i64: 1>, present = array<i64: 0, 1>} : (tensor<2x8xf16>, tensor<4x8xf16>) -> tensor<4x8xf16>
  return
}

// -----
// vjp C4: saved values leave an incoming gradient.
func.func @vjp_c4(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %z: tensor<2x4xf16>) {
  // expected-error@+1 {{C4: needs an incoming gradient, got 0}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %z) {forward_attrs = {}, grads_of = array<i64: 1>, num_saved = 1 : i64, present = array<i64: 0, 1>} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>) -> tensor<4x8xf16>
  return
}

// -----
// vjp C4: a loss saves nothing.
func.func @vjp_c4_loss(%p: tensor<2x4xf32>, %x: tensor<2x4xf32>, %n: tensor<2x4xf32>) {
  // expected-error@+1 {{C4: 1 saved values for a loss}}
  %0 = kern.vjp "dit.rf_loss"(%p, %x, %n) {forward_attrs = {}, grads_of = array<i64: 0>, loss_weight = 1.0 : f64, num_saved = 1 : i64, present = array<i64: 0, 1>} : (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  return
}

// -----
// norm C1: group must divide the row.
func.func @norm_c1(%x: tensor<2x3x8xf16>) {
  // expected-error@+1 {{C1: group_size 3 must divide 8 and epsilon must be positive}}
  %0 = kern.norm %x {epsilon = 1.0e-6 : f64, group_size = 3 : i64, kind = #kern.norm<layer>} : (tensor<2x3x8xf16>) -> tensor<2x3x8xf16>
  return
}

// -----
// norm C2: modulation shape.
func.func @norm_c2(%x: tensor<2x3x8xf16>, %s: tensor<3x8xf16>) {
  // expected-error@+1 {{C2: modulation 3x8 must be batch x width of the input 2x3x8}}
  %0 = kern.norm %x shift %s scale %s {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x3x8xf16>, tensor<3x8xf16>, tensor<3x8xf16>) -> tensor<2x3x8xf16>
  return
}

// -----
// norm C5: the residual form needs residual, gate and the sum together.
func.func @norm_c5_together(%x: tensor<2x3x8xf16>, %g: tensor<2x8xf16>) {
  // expected-error@+1 {{C5: residual, residual_gate and the sum result must come together}}
  %0 = kern.norm %x residual %x residual_gate %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x3x8xf16>, tensor<2x3x8xf16>, tensor<2x8xf16>) -> tensor<2x3x8xf16>
  return
}

// -----
// norm C5: the gate is one row per sample.
func.func @norm_c5_gate(%x: tensor<2x3x8xf16>, %g: tensor<3x8xf16>) {
  // expected-error@+1 {{C5: residual_gate 3x8 must be batch x width of the input 2x3x8}}
  %0:2 = kern.norm %x residual %x residual_gate %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x3x8xf16>, tensor<2x3x8xf16>, tensor<3x8xf16>) -> (tensor<2x3x8xf16>, tensor<2x3x8xf16>)
  return
}

// -----
// norm C5: the residual has the input's type.
func.func @norm_c5_residual(%x: tensor<2x3x8xf16>, %r: tensor<2x4x8xf16>, %g: tensor<2x8xf16>) {
  // expected-error@+1 {{C5: residual 'tensor<2x4x8xf16>' must have the input's type 'tensor<2x3x8xf16>'}}
  %0:2 = kern.norm %x residual %r residual_gate %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x3x8xf16>, tensor<2x4x8xf16>, tensor<2x8xf16>) -> (tensor<2x3x8xf16>, tensor<2x3x8xf16>)
  return
}

// -----
// moe C2: shared weights all or nothing is enforced by the format; their
// shapes by the verifier.
func.func @moe_c2(%x: tensor<2x3x8xf16>, %r: tensor<4x8xf16>, %e1: tensor<4x16x8xf16>, %e2: tensor<4x8x16xf16>, %s: tensor<12x7xf16>) {
  // expected-error@+1 {{C2: shared weights 12x7, 12x7, 12x7 do not fit width 8}}
  %0 = kern.moe %x, %r experts(%e1, %e1, %e2) shared(%s, %s, %s) {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.0>, activation = #dit.activation<swiglu>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x3x8xf16>, tensor<4x8xf16>, tensor<4x16x8xf16>, tensor<4x16x8xf16>, tensor<4x8x16xf16>, tensor<12x7xf16>, tensor<12x7xf16>, tensor<12x7xf16>) -> tensor<2x3x8xf16>
  return
}

// -----
// dwconv C2: column-major orders need a square grid.
func.func @dwconv_c2(%x: tensor<2x8x4xf16>, %w: tensor<4x1x3x3xf16>, %b: tensor<4xf16>) {
  // expected-error@+1 {{C2: column-major orders need a square grid}}
  %0 = kern.dwconv %x, %w, %b {grid = array<i64: 2, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<col_major>} : (tensor<2x8x4xf16>, tensor<4x1x3x3xf16>, tensor<4xf16>) -> tensor<2x8x4xf16>
  return
}

// -----
// patch_embed C2: position table shape.
func.func @patch_c2(%x: tensor<2x4x8x8xf16>, %w: tensor<8x4x2x2xf16>, %b: tensor<8xf16>, %p: tensor<15x8xf16>) {
  // expected-error@+1 {{C2: positions 15x8 must be 16x8}}
  %0 = kern.patch_embed %x, %w, %b positions %p : (tensor<2x4x8x8xf16>, tensor<8x4x2x2xf16>, tensor<8xf16>, tensor<15x8xf16>) -> tensor<2x16x8xf16>
  return
}

// -----
// cast C1: shape-preserving.
func.func @cast_c1(%x: tensor<2x16xf32>) {
  // expected-error@+1 {{C1: shape changes from 2x16 to 2x8}}
  %0 = kern.cast %x : (tensor<2x16xf32>) -> tensor<2x8xf16>
  return
}

// -----
// pointwise C1: one body argument per input.
func.func @pointwise_c1(%x: tensor<2x8xf16>) {
  // expected-error@+1 {{C1: the body has 2 arguments for 1 inputs}}
  %0 = kern.pointwise ins(%x : tensor<2x8xf16>) {
  ^bb0(%a: f32, %b: f32):
    kern.yield %a : f32
  } : tensor<2x8xf16>
  return
}

// -----
// pointwise C1: body arguments are f32.
func.func @pointwise_c1_type(%x: tensor<2x8xf16>) {
  // expected-error@+1 {{C1: body argument #0 must be f32, got 'f16'}}
  %0 = kern.pointwise ins(%x : tensor<2x8xf16>) {
  ^bb0(%a: f16):
    %e = arith.extf %a : f16 to f32
    kern.yield %e : f32
  } : tensor<2x8xf16>
  return
}

// -----
// pointwise C2: inputs broadcast over leading dimensions only.
func.func @pointwise_c2(%x: tensor<2x3x8xf16>, %s: tensor<2x8xf16>) {
  // expected-error@+1 {{C2: input #1 (2x8) does not broadcast to the result (2x3x8)}}
  %0 = kern.pointwise ins(%x, %s : tensor<2x3x8xf16>, tensor<2x8xf16>) {
  ^bb0(%a: f32, %b: f32):
    %m = arith.mulf %a, %b : f32
    kern.yield %m : f32
  } : tensor<2x3x8xf16>
  return
}

// -----
// pointwise C3: only the listed scalar ops.
func.func @pointwise_c3(%x: tensor<2x8xf32>) {
  %0 = kern.pointwise ins(%x : tensor<2x8xf32>) {
  ^bb0(%a: f32):
    // expected-error@+1 {{C3: is not allowed in a kern.pointwise body}}
    %p = math.powf %a, %a : f32
    kern.yield %p : f32
  } : tensor<2x8xf32>
  return
}

// -----
// pointwise C3: f32 arithmetic.
func.func @pointwise_c3_f32(%x: tensor<2x8xf32>) {
  %0 = kern.pointwise ins(%x : tensor<2x8xf32>) {
  ^bb0(%a: f32):
    // expected-error@+1 {{C3: kern.pointwise bodies compute in f32, got 'f64'}}
    %c = arith.constant 1.0 : f64
    kern.yield %a : f32
  } : tensor<2x8xf32>
  return
}

// -----
// attention C1: heads divide the widths.
func.func @attention_c1(%q: tensor<2x4x8xf16>, %v: tensor<2x4x6xf16>) {
  // expected-error@+1 {{C1: value width 6 is not divisible by num_heads 4}}
  %o, %l = kern.attention %q, %q, %v {num_heads = 4 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x6xf16>) -> (tensor<2x4x6xf16>, tensor<2x4x4xf32>)
  return
}

// -----
// attention C2: query and key head widths.
func.func @attention_c2(%q: tensor<2x4x8xf16>, %k: tensor<2x4x12xf16>) {
  // expected-error@+1 {{C2: query head width 4 differs from key head width 6}}
  %o, %l = kern.attention %q, %k, %q {num_heads = 2 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x12xf16>, tensor<2x4x8xf16>) -> (tensor<2x4x8xf16>, tensor<2x2x4xf32>)
  return
}

// -----
// attention C3: key and value lengths.
func.func @attention_c3(%q: tensor<2x4x8xf16>, %v: tensor<2x5x8xf16>) {
  // expected-error@+1 {{C3: key is 2x4x8 but value is 2x5x8; batch and length must agree}}
  %o, %l = kern.attention %q, %q, %v {num_heads = 2 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x5x8xf16>) -> (tensor<2x4x8xf16>, tensor<2x2x4xf32>)
  return
}

// -----
// attention C4: one element type.
func.func @attention_c4(%q: tensor<2x4x8xf16>, %v: tensor<2x4x8xbf16>) {
  // expected-error@+1 {{C4: operands mix element types 'f16' and 'bf16'}}
  %o, %l = kern.attention %q, %q, %v {num_heads = 2 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xbf16>) -> (tensor<2x4x8xf16>, tensor<2x2x4xf32>)
  return
}

// -----
// attention C5: the log-sum-exp is (N, H, Lq).
func.func @attention_c5(%q: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C5: logsumexp must be 2x2x4, got 2x4x2}}
  %o, %l = kern.attention %q, %q, %q {num_heads = 2 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> (tensor<2x4x8xf16>, tensor<2x4x2xf32>)
  return
}

// -----
// attention C5: the result is (N, Lq, H·dv).
func.func @attention_c5_result(%q: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C5: result must be 2x4x8, got 2x8x4}}
  %o, %l = kern.attention %q, %q, %q {num_heads = 2 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> (tensor<2x8x4xf16>, tensor<2x2x4xf32>)
  return
}

// -----
// attention: the log-sum-exp is f32 whatever the element type.
func.func @attention_lse_f32(%q: tensor<2x4x8xf16>) {
  // expected-error@+1 {{result #1 must be tensor of 32-bit float values}}
  %o, %l = kern.attention %q, %q, %q {num_heads = 2 : i64, scale = 1.0 : f64} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> (tensor<2x4x8xf16>, tensor<2x2x4xf16>)
  return
}

// -----
// vjp C5: only a dense layer's backward folds an input activation.
func.func @vjp_c5_op(%x: tensor<2x4x8xf16>, %d: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C5: input_grad_act gelu_tanh on a backward of kern.norm; only a kern.gemm backward folds an activation}}
  %0 = kern.vjp "kern.norm"(%x, %d, %x) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>, input_grad_act = #kern.act<gelu_tanh>} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> tensor<2x4x8xf16>
  return
}

// -----
// vjp C5: the folded activation needs the input's gradient.
func.func @vjp_c5_slot(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>) {
  // expected-error@+1 {{C5: input_grad_act needs the gradient of slot 0 (the input)}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %d, %x) {forward_attrs = {}, grads_of = array<i64: 1>, present = array<i64: 0, 1>, input_grad_act = #kern.act<gelu_tanh>} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>, tensor<2x8xf16>) -> tensor<4x8xf16>
  return
}

// -----
// vjp C5: z has the input's type.
func.func @vjp_c5_type(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>, %z: tensor<2x8xf32>) {
  // expected-error@+1 {{C5: z must be 'tensor<2x8xf16>', got 'tensor<2x8xf32>'}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %d, %z) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0, 1>, input_grad_act = #kern.act<gelu_tanh>} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>, tensor<2x8xf32>) -> tensor<2x8xf16>
  return
}

// -----
// vjp C5: an activation, not none.
func.func @vjp_c5_none(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>) {
  // expected-error@+1 {{C5: input_grad_act none on a backward of kern.gemm}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %d, %x) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0, 1>, input_grad_act = #kern.act<none>} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>, tensor<2x8xf16>) -> tensor<2x8xf16>
  return
}

// -----
// vjp C6: only a norm's backward adds to its input gradient.
func.func @vjp_c6_op(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>) {
  // expected-error@+1 {{C6: input_grad_addend on a backward of kern.gemm; only a kern.norm backward adds to its input gradient}}
  %0 = kern.vjp "kern.gemm"(%x, %w, %d, %x) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0, 1>, input_grad_addend} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>, tensor<2x8xf16>) -> tensor<2x8xf16>
  return
}

// -----
// vjp C6: the addend is added to the input's gradient, which must be wanted.
func.func @vjp_c6_slot(%x: tensor<2x4x8xf16>, %s: tensor<2x8xf16>, %d: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C6: input_grad_addend needs the gradient of slot 0 (the input)}}
  %0 = kern.vjp "kern.norm"(%x, %s, %d, %x) {forward_attrs = {}, grads_of = array<i64: 3>, present = array<i64: 0, 3>, input_grad_addend} : (tensor<2x4x8xf16>, tensor<2x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> tensor<2x8xf16>
  return
}

// -----
// vjp C6: the addend has the input's type.
func.func @vjp_c6_type(%x: tensor<2x4x8xf16>, %d: tensor<2x4x8xf16>, %a: tensor<2x4x8xf32>) {
  // expected-error@+1 {{C6: the addend must be 'tensor<2x4x8xf16>', got 'tensor<2x4x8xf32>'}}
  %0 = kern.vjp "kern.norm"(%x, %d, %a) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>, input_grad_addend} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf32>) -> tensor<2x4x8xf16>
  return
}

// -----
// vjp C5: a backward folds an activation or adds an addend, not both.
func.func @vjp_c5_both(%x: tensor<2x4x8xf16>, %d: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C5: input_grad_act and input_grad_addend are exclusive (kern.gemm, kern.norm)}}
  %0 = kern.vjp "kern.norm"(%x, %d, %x) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>, input_grad_act = #kern.act<gelu_tanh>, input_grad_addend} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> tensor<2x4x8xf16>
  return
}

// -----
// vjp C7: only an attention backward sums its gradients.
func.func @vjp_c7_op(%x: tensor<2x8xf16>, %w: tensor<4x8xf16>, %d: tensor<2x4xf16>) {
  // expected-error@+1 {{C7: column_sums on a backward of kern.gemm; only an attention backward sums its gradients}}
  %0:2 = kern.vjp "kern.gemm"(%x, %w, %d) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0, 1>, column_sums} : (tensor<2x8xf16>, tensor<4x8xf16>, tensor<2x4xf16>) -> (tensor<2x8xf16>, tensor<8xf16>)
  return
}

// -----
// vjp C7: one sum result per gradient.
func.func @vjp_c7_count(%q: tensor<2x4x8xf16>, %d: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C7: 3 gradients and their column sums need 6 results, got 5}}
  %0:5 = kern.vjp "dit.attention"(%q, %q, %q, %d) {forward_attrs = {num_heads = 2 : i64, scale = 1.0 : f64}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>, column_sums} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<8xf16>, tensor<8xf16>)
  return
}

// -----
// vjp C7: a sum is a vector of its gradient's width and element type.
func.func @vjp_c7_type(%q: tensor<2x4x8xf16>, %d: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C7: column sum result #2 must be 'tensor<8xf16>', got 'tensor<8xf32>'}}
  %0:4 = kern.vjp "dit.attention"(%q, %q, %q, %d) {forward_attrs = {num_heads = 2 : i64, scale = 1.0 : f64}, grads_of = array<i64: 0, 2>, present = array<i64: 0, 1, 2>, column_sums} : (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> (tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<8xf32>, tensor<8xf16>)
  return
}
