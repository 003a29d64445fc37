// Every verifier error of the dit dialect, one case per split, named after
// the numbered constraint it violates.
// RUN: diffc-opt %s -split-input-file -verify-diagnostics

// patch_embed C1: non-square kernel.
func.func @patch_embed_c1(%x: tensor<2x4x32x32xf32>, %w: tensor<8x4x2x4xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C1: weight kernel must be square, got 2x4}}
  %0 = dit.patch_embed %x, %w, %b : (tensor<2x4x32x32xf32>, tensor<8x4x2x4xf32>, tensor<8xf32>) -> tensor<2x256x8xf32>
  return
}

// -----
// patch_embed C2: channel mismatch.
func.func @patch_embed_c2(%x: tensor<2x3x32x32xf32>, %w: tensor<8x4x2x2xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C2: weight expects 4 input channels but the input has 3}}
  %0 = dit.patch_embed %x, %w, %b : (tensor<2x3x32x32xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x256x8xf32>
  return
}

// -----
// patch_embed C3: image not divisible by the patch.
func.func @patch_embed_c3(%x: tensor<2x4x33x32xf32>, %w: tensor<8x4x2x2xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C3: input 33x32 is not divisible by patch size 2}}
  %0 = dit.patch_embed %x, %w, %b : (tensor<2x4x33x32xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x256x8xf32>
  return
}

// -----
// patch_embed C4: bias width.
func.func @patch_embed_c4(%x: tensor<2x4x32x32xf32>, %w: tensor<8x4x2x2xf32>, %b: tensor<9xf32>) {
  // expected-error@+1 {{C4: bias has 9 entries but the embedding width is 8}}
  %0 = dit.patch_embed %x, %w, %b : (tensor<2x4x32x32xf32>, tensor<8x4x2x2xf32>, tensor<9xf32>) -> tensor<2x256x8xf32>
  return
}

// -----
// patch_embed C5: element types differ.
func.func @patch_embed_c5(%x: tensor<2x4x32x32xf16>, %w: tensor<8x4x2x2xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C5: operand #1 has element type 'f32' but operand #0 has 'f16'}}
  %0 = dit.patch_embed %x, %w, %b : (tensor<2x4x32x32xf16>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x256x8xf16>
  return
}

// -----
// A declared result type that contradicts inference is rejected.
func.func @patch_embed_result(%x: tensor<2x4x32x32xf32>, %w: tensor<8x4x2x2xf32>, %b: tensor<8xf32>) {
  // expected-error@+2 {{inferred type(s) 'tensor<2x256x8xf32>' are incompatible with return type(s) of operation 'tensor<2x128x8xf32>'}}
  // expected-error@+1 {{failed to infer returned types}}
  %0 = dit.patch_embed %x, %w, %b : (tensor<2x4x32x32xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x128x8xf32>
  return
}

// -----
// unpatchify C1: grid does not cover the tokens.
func.func @unpatchify_c1(%x: tensor<2x256x32xf32>) {
  // expected-error@+1 {{C1: grid 16x8 has 128 cells but the input has 256 tokens}}
  %0 = dit.unpatchify %x {grid = array<i64: 16, 8>, patch_size = 2 : i64} : (tensor<2x256x32xf32>) -> tensor<2x8x32x16xf32>
  return
}

// -----
// unpatchify C2: token width not a multiple of p².
func.func @unpatchify_c2(%x: tensor<2x256x30xf32>) {
  // expected-error@+1 {{C2: token width 30 is not a multiple of patch_size² = 4}}
  %0 = dit.unpatchify %x {grid = array<i64: 16, 16>, patch_size = 2 : i64} : (tensor<2x256x30xf32>) -> tensor<2x7x32x32xf32>
  return
}

// -----
// sincos_pos_embed C1: grid needs two entries.
func.func @sincos_c1() {
  // expected-error@+1 {{C1: grid must have two positive entries, got [16]}}
  %0 = dit.sincos_pos_embed {grid = array<i64: 16>, dim = 8 : i64, interp_scale = 1.0 : f64} : () -> tensor<16x8xf32>
  return
}

// -----
// sincos_pos_embed C2: width not divisible by 4.
func.func @sincos_c2() {
  // expected-error@+1 {{C2: dim must be a positive multiple of 4, got 6}}
  %0 = dit.sincos_pos_embed {grid = array<i64: 4, 4>, dim = 6 : i64, interp_scale = 1.0 : f64} : () -> tensor<16x6xf32>
  return
}

// -----
// sincos_pos_embed C3: scale must be positive.
func.func @sincos_c3() {
  // expected-error@+1 {{C3: interp_scale must be positive, got 0}}
  %0 = dit.sincos_pos_embed {grid = array<i64: 4, 4>, dim = 8 : i64, interp_scale = 0.0 : f64} : () -> tensor<16x8xf32>
  return
}

// -----
// timestep_embed C1: width at least 2.
func.func @timestep_c1(%t: tensor<2xf32>) {
  // expected-error@+1 {{C1: dim must be at least 2, got 1}}
  %0 = dit.timestep_embed %t {dim = 1 : i64} : (tensor<2xf32>) -> tensor<2x1xf32>
  return
}

// -----
// timestep_embed C2: max_period above 1.
func.func @timestep_c2(%t: tensor<2xf32>) {
  // expected-error@+1 {{C2: max_period must exceed 1, got 1}}
  %0 = dit.timestep_embed %t {dim = 8 : i64, max_period = 1.0 : f64} : (tensor<2xf32>) -> tensor<2x8xf32>
  return
}

// -----
// label_embed C1: positive class count.
func.func @label_c1(%y: tensor<2xi32>, %t: tensor<1x8xf32>) {
  // expected-error@+1 {{C1: num_classes must be positive, got 0}}
  %0 = dit.label_embed %y, %t {num_classes = 0 : i64} : (tensor<2xi32>, tensor<1x8xf32>) -> tensor<2x8xf32>
  return
}

// -----
// label_embed C2: the table needs the null-class row.
func.func @label_c2(%y: tensor<2xi32>, %t: tensor<1000x8xf32>) {
  // expected-error@+1 {{C2: table has 1000 rows but 1000 classes need 1001 (one extra for the null class)}}
  %0 = dit.label_embed %y, %t {num_classes = 1000 : i64} : (tensor<2xi32>, tensor<1000x8xf32>) -> tensor<2x8xf32>
  return
}

// -----
// token_mean C1: at least one token.
func.func @token_mean_c1(%x: tensor<2x0x8xf32>) {
  // expected-error@+1 {{C1: needs at least one token, got 0}}
  %0 = dit.token_mean %x : (tensor<2x0x8xf32>) -> tensor<2x8xf32>
  return
}

// -----
// layer_norm C1: group must divide the row.
func.func @layer_norm_c1(%x: tensor<2x4x384xf32>) {
  // expected-error@+1 {{C1: group_size 72 must be positive and divide the last dimension 384}}
  %0 = dit.layer_norm %x {epsilon = 1.0e-6 : f64, group_size = 72 : i64} : (tensor<2x4x384xf32>) -> tensor<2x4x384xf32>
  return
}

// -----
// layer_norm C2: affine shape matches the group.
func.func @layer_norm_c2(%x: tensor<2x4x384xf32>, %w: tensor<64xf32>) {
  // expected-error@+1 {{C2: affine parameter has 64 entries but the group size is 384}}
  %0 = dit.layer_norm %x weight %w {epsilon = 1.0e-6 : f64} : (tensor<2x4x384xf32>, tensor<64xf32>) -> tensor<2x4x384xf32>
  return
}

// -----
// layer_norm C3: positive epsilon.
func.func @layer_norm_c3(%x: tensor<2x4x384xf32>) {
  // expected-error@+1 {{C3: epsilon must be positive, got 0}}
  %0 = dit.layer_norm %x {epsilon = 0.0 : f64} : (tensor<2x4x384xf32>) -> tensor<2x4x384xf32>
  return
}

// -----
// layer_norm C4: weight element type.
func.func @layer_norm_c4(%x: tensor<2x4x384xf32>, %w: tensor<384xf16>) {
  // expected-error@+1 {{C4: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.layer_norm %x weight %w {epsilon = 1.0e-6 : f64} : (tensor<2x4x384xf32>, tensor<384xf16>) -> tensor<2x4x384xf32>
  return
}

// -----
// rms_norm C1: group must divide the row.
func.func @rms_norm_c1(%x: tensor<2x4x384xf32>) {
  // expected-error@+1 {{C1: group_size 0 must be positive and divide the last dimension 384}}
  %0 = dit.rms_norm %x {epsilon = 1.0e-6 : f64, group_size = 0 : i64} : (tensor<2x4x384xf32>) -> tensor<2x4x384xf32>
  return
}

// -----
// rms_norm C2: weight shape matches the group.
func.func @rms_norm_c2(%x: tensor<2x4x384xf32>, %w: tensor<384xf32>) {
  // expected-error@+1 {{C2: affine parameter has 384 entries but the group size is 64}}
  %0 = dit.rms_norm %x weight %w {epsilon = 1.0e-6 : f64, group_size = 64 : i64} : (tensor<2x4x384xf32>, tensor<384xf32>) -> tensor<2x4x384xf32>
  return
}

// -----
// rms_norm C3: positive epsilon.
func.func @rms_norm_c3(%x: tensor<2x4x384xf32>) {
  // expected-error@+1 {{C3: epsilon must be positive, got -1}}
  %0 = dit.rms_norm %x {epsilon = -1.0 : f64} : (tensor<2x4x384xf32>) -> tensor<2x4x384xf32>
  return
}

// -----
// rms_norm C4: weight element type.
func.func @rms_norm_c4(%x: tensor<2x4x64xbf16>, %w: tensor<64xf32>) {
  // expected-error@+1 {{C4: operand #1 has element type 'f32' but operand #0 has 'bf16'}}
  %0 = dit.rms_norm %x weight %w {epsilon = 1.0e-6 : f64} : (tensor<2x4x64xbf16>, tensor<64xf32>) -> tensor<2x4x64xbf16>
  return
}

// -----
// modulate C1: shift must be per sample.
func.func @modulate_c1(%x: tensor<2x4x8xf32>, %s: tensor<2x16xf32>, %c: tensor<2x8xf32>) {
  // expected-error@+1 {{C1: shift must be 2x8 (batch x width of the input), got 2x16}}
  %0 = dit.modulate %x, %s, %c : (tensor<2x4x8xf32>, tensor<2x16xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// modulate C2: element types.
func.func @modulate_c2(%x: tensor<2x4x8xf32>, %s: tensor<2x8xf16>, %c: tensor<2x8xf32>) {
  // expected-error@+1 {{C2: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.modulate %x, %s, %c : (tensor<2x4x8xf32>, tensor<2x8xf16>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// gated_residual C1: residual and update shapes.
func.func @gated_residual_c1(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %y: tensor<2x5x8xf32>) {
  // expected-error@+1 {{C1: residual is 2x4x8 but the update is 2x5x8}}
  %0 = dit.gated_residual %x, %g, %y : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x5x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// gated_residual C2: gate per sample.
func.func @gated_residual_c2(%x: tensor<2x4x8xf32>, %g: tensor<3x8xf32>, %y: tensor<2x4x8xf32>) {
  // expected-error@+1 {{C2: gate must be 2x8 (batch x width of the input), got 3x8}}
  %0 = dit.gated_residual %x, %g, %y : (tensor<2x4x8xf32>, tensor<3x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// gated_residual C3: element types.
func.func @gated_residual_c3(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %y: tensor<2x4x8xbf16>) {
  // expected-error@+1 {{C3: operand #2 has element type 'bf16' but operand #0 has 'f32'}}
  %0 = dit.gated_residual %x, %g, %y : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xbf16>) -> tensor<2x4x8xf32>
  return
}

// -----
// add C1: rhs must be a suffix.
func.func @add_c1(%x: tensor<2x4x8xf32>, %p: tensor<8x4xf32>) {
  // expected-error@+1 {{C1: rhs shape 8x4 is not a suffix of lhs shape 2x4x8}}
  %0 = dit.add %x, %p : (tensor<2x4x8xf32>, tensor<8x4xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// add C2: element types.
func.func @add_c2(%x: tensor<2x4x8xf32>, %p: tensor<4x8xf16>) {
  // expected-error@+1 {{C2: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.add %x, %p : (tensor<2x4x8xf32>, tensor<4x8xf16>) -> tensor<2x4x8xf32>
  return
}

// -----
// mul C1: rhs must be a suffix.
func.func @mul_c1(%x: tensor<2x4x8xf32>, %p: tensor<2x4x8x1xf32>) {
  // expected-error@+1 {{C1: rhs shape 2x4x8x1 is not a suffix of lhs shape 2x4x8}}
  %0 = dit.mul %x, %p : (tensor<2x4x8xf32>, tensor<2x4x8x1xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// split C1: width must divide.
func.func @split_c1(%x: tensor<2x10xf32>) {
  // expected-error@+1 {{C1: cannot split a last dimension of 10 into 3 equal parts}}
  %0:3 = dit.split %x : (tensor<2x10xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x4xf32>)
  return
}

// -----
// split C2: result shapes.
func.func @split_c2(%x: tensor<2x12xf32>) {
  // expected-error@+1 {{C2: result #1 must be 'tensor<2x6xf32>', got 'tensor<2x6xf16>'}}
  %0:2 = dit.split %x : (tensor<2x12xf32>) -> (tensor<2x6xf32>, tensor<2x6xf16>)
  return
}

// -----
// linear C1: feature mismatch.
func.func @linear_c1(%x: tensor<2x4x8xf32>, %w: tensor<16x9xf32>) {
  // expected-error@+1 {{C1: weight 16x9 expects 9 input features but the input has 8}}
  %0 = dit.linear %x, %w : (tensor<2x4x8xf32>, tensor<16x9xf32>) -> tensor<2x4x16xf32>
  return
}

// -----
// linear C2: bias width.
func.func @linear_c2(%x: tensor<2x4x8xf32>, %w: tensor<16x8xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C2: bias has 8 entries but the weight has 16 outputs}}
  %0 = dit.linear %x, %w bias %b : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<8xf32>) -> tensor<2x4x16xf32>
  return
}

// -----
// linear C3: element types.
func.func @linear_c3(%x: tensor<2x4x8xf32>, %w: tensor<16x8xf16>) {
  // expected-error@+1 {{C3: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.linear %x, %w : (tensor<2x4x8xf32>, tensor<16x8xf16>) -> tensor<2x4x16xf32>
  return
}

// -----
// mlp C1: fc1 features.
func.func @mlp_c1(%x: tensor<2x8xf32>, %w1: tensor<32x7xf32>, %w2: tensor<8x32xf32>) {
  // expected-error@+1 {{C1: fc1 expects 7 input features but the input has 8}}
  %0 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<silu>} : (tensor<2x8xf32>, tensor<32x7xf32>, tensor<8x32xf32>) -> tensor<2x8xf32>
  return
}

// -----
// mlp C2: fc2 features.
func.func @mlp_c2(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %w2: tensor<8x31xf32>) {
  // expected-error@+1 {{C2: fc2 expects 31 input features but fc1 produces 32}}
  %0 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<silu>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x31xf32>) -> tensor<2x8xf32>
  return
}

// -----
// mlp C3: bias widths.
func.func @mlp_c3(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %w2: tensor<8x32xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C3: biases must have 32 and 8 entries, got 8 and 8}}
  %0 = dit.mlp %x, %w1, %w2 biases %b, %b {activation = #dit.activation<silu>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return
}

// -----
// mlp C4: swiglu belongs to dit.swiglu.
func.func @mlp_c4(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %w2: tensor<8x32xf32>) {
  // expected-error@+1 {{C4: activation must be gelu, gelu_tanh or silu; use dit.swiglu}}
  %0 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<swiglu>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xf32>) -> tensor<2x8xf32>
  return
}

// -----
// mlp C5: element types.
func.func @mlp_c5(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %w2: tensor<8x32xbf16>) {
  // expected-error@+1 {{C5: operand #2 has element type 'bf16' but operand #0 has 'f32'}}
  %0 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<gelu>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xbf16>) -> tensor<2x8xf32>
  return
}

// -----
// swiglu C1: gate features.
func.func @swiglu_c1(%x: tensor<2x8xf32>, %g: tensor<16x9xf32>, %d: tensor<8x16xf32>) {
  // expected-error@+1 {{C1: gate expects 9 input features but the input has 8}}
  %0 = dit.swiglu %x, %g up %g down %d : (tensor<2x8xf32>, tensor<16x9xf32>, tensor<16x9xf32>, tensor<8x16xf32>) -> tensor<2x8xf32>
  return
}

// -----
// swiglu C2: a packed gate/up needs an even row count.
func.func @swiglu_c2(%x: tensor<2x8xf32>, %g: tensor<15x8xf32>, %d: tensor<8x7xf32>) {
  // expected-error@+1 {{C2: a packed gate/up weight needs an even number of rows, got 15}}
  %0 = dit.swiglu %x, %g down %d : (tensor<2x8xf32>, tensor<15x8xf32>, tensor<8x7xf32>) -> tensor<2x8xf32>
  return
}

// -----
// swiglu C2: separate gate and up agree.
func.func @swiglu_c2_up(%x: tensor<2x8xf32>, %g: tensor<16x8xf32>, %u: tensor<32x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error@+1 {{C2: up is 32x8 but gate is 16x8}}
  %0 = dit.swiglu %x, %g up %u down %d : (tensor<2x8xf32>, tensor<16x8xf32>, tensor<32x8xf32>, tensor<8x16xf32>) -> tensor<2x8xf32>
  return
}

// -----
// swiglu C3: down's hidden width.
func.func @swiglu_c3(%x: tensor<2x8xf32>, %g: tensor<32x8xf32>, %d: tensor<8x32xf32>) {
  // expected-error@+1 {{C3: down expects 32 hidden features but the hidden width is 16}}
  %0 = dit.swiglu %x, %g down %d : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xf32>) -> tensor<2x8xf32>
  return
}

// -----
// swiglu C4: element types.
func.func @swiglu_c4(%x: tensor<2x8xf32>, %g: tensor<32x8xf32>, %d: tensor<8x16xf16>) {
  // expected-error@+1 {{C4: operand #2 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.swiglu %x, %g down %d : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x16xf16>) -> tensor<2x8xf32>
  return
}

// -----
// attention C1: heads divide every width.
func.func @attention_c1(%q: tensor<2x4x12xf32>) {
  // expected-error@+1 {{C1: query width 12 is not divisible by num_heads 5}}
  %0 = dit.attention %q, %q, %q {num_heads = 5 : i64} : (tensor<2x4x12xf32>, tensor<2x4x12xf32>, tensor<2x4x12xf32>) -> tensor<2x4x12xf32>
  return
}

// -----
// attention C2: q and k head widths.
func.func @attention_c2(%q: tensor<2x4x12xf32>, %k: tensor<2x4x8xf32>) {
  // expected-error@+1 {{C2: query head width 6 differs from key head width 4}}
  %0 = dit.attention %q, %k, %k {num_heads = 2 : i64} : (tensor<2x4x12xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// attention C3: key and value lengths.
func.func @attention_c3(%q: tensor<2x4x8xf32>, %k: tensor<2x77x8xf32>, %v: tensor<2x76x8xf32>) {
  // expected-error@+1 {{C3: key is 2x77x8 but value is 2x76x8; batch and length must agree}}
  %0 = dit.attention %q, %k, %v {num_heads = 2 : i64} : (tensor<2x4x8xf32>, tensor<2x77x8xf32>, tensor<2x76x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// attention C3: query batch.
func.func @attention_c3_batch(%q: tensor<3x4x8xf32>, %k: tensor<2x77x8xf32>) {
  // expected-error@+1 {{C3: query batch 3 differs from key batch 2}}
  %0 = dit.attention %q, %k, %k {num_heads = 2 : i64} : (tensor<3x4x8xf32>, tensor<2x77x8xf32>, tensor<2x77x8xf32>) -> tensor<3x4x8xf32>
  return
}

// -----
// attention C4: element types.
func.func @attention_c4(%q: tensor<2x4x8xf32>, %k: tensor<2x4x8xf16>) {
  // expected-error@+1 {{C4: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.attention %q, %k, %q {num_heads = 2 : i64} : (tensor<2x4x8xf32>, tensor<2x4x8xf16>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// gla C1: heads divide every width.
func.func @gla_c1(%q: tensor<2x16x6xf32>, %v: tensor<2x16x12xf32>) {
  // expected-error@+1 {{C1: width 6 is not divisible by num_heads 4}}
  %0 = dit.gla %q, %q, %v, %q {num_heads = 4 : i64} : (tensor<2x16x6xf32>, tensor<2x16x6xf32>, tensor<2x16x12xf32>, tensor<2x16x6xf32>) -> tensor<2x16x12xf32>
  return
}

// -----
// gla C2: q, k and gate logits share a shape.
func.func @gla_c2(%q: tensor<2x16x8xf32>, %k: tensor<2x16x4xf32>, %v: tensor<2x16x8xf32>) {
  // expected-error@+1 {{C2: query is 2x16x8 but key is 2x16x4}}
  %0 = dit.gla %q, %k, %v, %q {num_heads = 2 : i64} : (tensor<2x16x8xf32>, tensor<2x16x4xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// gla C3: value batch and length.
func.func @gla_c3(%q: tensor<2x16x8xf32>, %v: tensor<2x15x8xf32>) {
  // expected-error@+1 {{C3: value is 2x15x8 but batch and length must match the query's 2x16x8}}
  %0 = dit.gla %q, %q, %v, %q {num_heads = 2 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x15x8xf32>, tensor<2x16x8xf32>) -> tensor<2x15x8xf32>
  return
}

// -----
// gla C4: positive chunk size.
func.func @gla_c4(%q: tensor<2x16x8xf32>) {
  // expected-error@+1 {{C4: gate_normalizer and chunk_size must be positive, got 16 and 0}}
  %0 = dit.gla %q, %q, %q, %q {num_heads = 2 : i64, chunk_size = 0 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// gla C5: element types.
func.func @gla_c5(%q: tensor<2x16x8xf32>, %v: tensor<2x16x8xf16>) {
  // expected-error@+1 {{C5: operand #2 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.gla %q, %q, %v, %q {num_heads = 2 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf16>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// reorder_tokens C1: grid covers the tokens.
func.func @reorder_c1(%x: tensor<2x256x8xf32>) {
  // expected-error@+1 {{C1: grid 8x8 has 64 cells but the input has 256 tokens}}
  %0 = dit.reorder_tokens %x {grid = array<i64: 8, 8>, from = #dit.scan_order<row_major>, to = #dit.scan_order<row_major_reversed>} : (tensor<2x256x8xf32>) -> tensor<2x256x8xf32>
  return
}

// -----
// reorder_tokens C2: column-major orders need a square grid.
func.func @reorder_c2(%x: tensor<2x128x8xf32>) {
  // expected-error@+1 {{C2: column-major orders need a square grid, got 8x16}}
  %0 = dit.reorder_tokens %x {grid = array<i64: 8, 16>, from = #dit.scan_order<row_major>, to = #dit.scan_order<col_major>} : (tensor<2x128x8xf32>) -> tensor<2x128x8xf32>
  return
}

// -----
// depthwise_conv2d C1: grid covers the tokens.
func.func @dwconv_c1(%x: tensor<2x16x8xf32>, %w: tensor<8x1x3x3xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C1: grid 2x4 has 8 cells but the input has 16 tokens}}
  %0 = dit.depthwise_conv2d %x, %w, %b {grid = array<i64: 2, 4>} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// depthwise_conv2d C2: odd square kernel per channel.
func.func @dwconv_c2(%x: tensor<2x16x8xf32>, %w: tensor<8x1x2x2xf32>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C2: weight must be 8x1xkxk with odd k, got 8x1x2x2}}
  %0 = dit.depthwise_conv2d %x, %w, %b {grid = array<i64: 4, 4>} : (tensor<2x16x8xf32>, tensor<8x1x2x2xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// depthwise_conv2d C3: bias width.
func.func @dwconv_c3(%x: tensor<2x16x8xf32>, %w: tensor<8x1x3x3xf32>, %b: tensor<4xf32>) {
  // expected-error@+1 {{C3: bias has 4 entries but the input has 8 channels}}
  %0 = dit.depthwise_conv2d %x, %w, %b {grid = array<i64: 4, 4>} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<4xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// depthwise_conv2d C4: element types.
func.func @dwconv_c4(%x: tensor<2x16x8xf32>, %w: tensor<8x1x3x3xf16>, %b: tensor<8xf32>) {
  // expected-error@+1 {{C4: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.depthwise_conv2d %x, %w, %b {grid = array<i64: 4, 4>} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf16>, tensor<8xf32>) -> tensor<2x16x8xf32>
  return
}

// -----
// moe C1: router width.
func.func @moe_c1(%x: tensor<2x4x8xf32>, %r: tensor<4x9xf32>, %w: tensor<4x8x8xf32>) {
  // expected-error@+1 {{C1: router must be Ex8 with E >= 1, got 4x9}}
  %0 = dit.moe %x, %r, %w, %w {routing = #dit.expert_choice<capacity = 2.0>, activation = #dit.activation<gelu>} : (tensor<2x4x8xf32>, tensor<4x9xf32>, tensor<4x8x8xf32>, tensor<4x8x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// moe C2: swiglu experts take three weights.
func.func @moe_c2(%x: tensor<2x4x8xf32>, %r: tensor<4x8xf32>, %w: tensor<4x16x8xf32>) {
  // expected-error@+1 {{C2: swiglu experts take 3 weights, got 2}}
  %0 = dit.moe %x, %r, %w, %w {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.0>, activation = #dit.activation<swiglu>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// moe C2: silu is not an expert kind.
func.func @moe_c2_silu(%x: tensor<2x4x8xf32>, %r: tensor<4x8xf32>, %w: tensor<4x16x8xf32>) {
  // expected-error@+1 {{C2: expert activation must be swiglu, gelu or gelu_tanh}}
  %0 = dit.moe %x, %r, %w, %w {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.0>, activation = #dit.activation<silu>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// moe C3: the down projection's shape in out_in layout.
func.func @moe_c3(%x: tensor<2x4x8xf32>, %r: tensor<4x8xf32>, %w: tensor<4x16x8xf32>) {
  // expected-error@+1 {{C3: expert weight #2 must be 4x8x16 for out_in layout, got 4x16x8}}
  %0 = dit.moe %x, %r, %w, %w, %w {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.0>, activation = #dit.activation<swiglu>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// moe C4: top_k within the expert count.
func.func @moe_c4(%x: tensor<2x4x8xf32>, %r: tensor<4x8xf32>, %w: tensor<4x16x8xf32>, %d: tensor<4x8x16xf32>) {
  // expected-error@+1 {{C4: top_k 5 exceeds the 4 experts}}
  %0 = dit.moe %x, %r, %w, %w, %d {routing = #dit.token_choice<top_k = 5, normalize = true, balance_coef = 0.0>, activation = #dit.activation<swiglu>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// moe C5: expert choice must give each expert a token.
func.func @moe_c5(%x: tensor<2x4x8xf32>, %r: tensor<8x8xf32>, %w1: tensor<8x8x16xf32>, %w2: tensor<8x16x8xf32>) {
  // expected-error@+1 {{C5: capacity 1 gives 0 tokens per expert for 4 tokens and 8 experts; need 1 to 4}}
  %0 = dit.moe %x, %r, %w1, %w2 {routing = #dit.expert_choice<capacity = 1.0>, activation = #dit.activation<gelu>, weight_layout = #dit.weight_layout<in_out>} : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<8x8x16xf32>, tensor<8x16x8xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// moe C6: element types.
func.func @moe_c6(%x: tensor<2x4x8xf32>, %r: tensor<4x8xf16>, %w1: tensor<4x16x8xf32>, %w2: tensor<4x8x16xf32>) {
  // expected-error@+1 {{C6: operand #1 has element type 'f16' but operand #0 has 'f32'}}
  %0 = dit.moe %x, %r, %w1, %w2 {routing = #dit.expert_choice<capacity = 2.0>, activation = #dit.activation<gelu_tanh>} : (tensor<2x4x8xf32>, tensor<4x8xf16>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x4x8xf32>
  return
}

// -----
// token_choice needs top_k >= 1.
func.func @token_choice_top_k() attributes {
  // expected-error@+1 {{token_choice needs top_k >= 1, got 0}}
  r = #dit.token_choice<top_k = 0, normalize = false, balance_coef = 0.0>
} {
  return
}

// -----
// token_choice needs a non-negative balance coefficient.
func.func @token_choice_coef() attributes {
  // expected-error@+1 {{token_choice needs balance_coef >= 0, got -0.5}}
  r = #dit.token_choice<top_k = 2, normalize = false, balance_coef = -0.5>
} {
  return
}

// -----
// expert_choice needs a positive capacity.
func.func @expert_choice_capacity() attributes {
  // expected-error@+1 {{expert_choice needs capacity > 0, got 0}}
  r = #dit.expert_choice<capacity = 0.0>
} {
  return
}

// -----
// mask_tokens C1: keep indices per sample, no more than the tokens.
func.func @mask_c1(%x: tensor<2x16x8xf32>, %k: tensor<2x17xi32>) {
  // expected-error@+1 {{C1: keep must be 2xK with 1 <= K <= 16, got 2x17}}
  %0 = dit.mask_tokens %x, %k : (tensor<2x16x8xf32>, tensor<2x17xi32>) -> tensor<2x17x8xf32>
  return
}

// -----
// unmask_tokens C1: keep matches the kept tokens.
func.func @unmask_c1(%x: tensor<2x4x8xf32>, %k: tensor<2x5xi32>) {
  // expected-error@+1 {{C1: keep must be 2x4, got 2x5}}
  %0 = dit.unmask_tokens %x, %k {num_tokens = 16 : i64} : (tensor<2x4x8xf32>, tensor<2x5xi32>) -> tensor<2x16x8xf32>
  return
}

// -----
// unmask_tokens C2: the full sequence is at least as long.
func.func @unmask_c2(%x: tensor<2x4x8xf32>, %k: tensor<2x4xi32>) {
  // expected-error@+1 {{C2: num_tokens 3 is less than the 4 kept tokens}}
  %0 = dit.unmask_tokens %x, %k {num_tokens = 3 : i64} : (tensor<2x4x8xf32>, tensor<2x4xi32>) -> tensor<2x3x8xf32>
  return
}

// -----
// ddpm_loss C1: learned variance doubles the channels.
func.func @ddpm_c1(%p: tensor<2x4x8x8xf32>, %x: tensor<2x4x8x8xf32>, %t: tensor<2xi32>) {
  // expected-error@+1 {{C1: prediction has 4 channels but learned variance needs 8}}
  %0 = dit.ddpm_loss %p, %x, %x, %x, %t : (tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2xi32>) -> tensor<2xf32>
  return
}

// -----
// ddpm_loss C2: targets share a shape.
func.func @ddpm_c2(%p: tensor<2x8x8x8xf32>, %x: tensor<2x4x8x8xf32>, %n: tensor<2x4x8x4xf32>, %t: tensor<2xi32>) {
  // expected-error@+1 {{C2: 2x4x8x4 differs from x_start 2x4x8x8}}
  %0 = dit.ddpm_loss %p, %x, %x, %n, %t : (tensor<2x8x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x4xf32>, tensor<2xi32>) -> tensor<2xf32>
  return
}

// -----
// ddpm_loss C3: one timestep per sample.
func.func @ddpm_c3(%p: tensor<2x8x8x8xf32>, %x: tensor<2x4x8x8xf32>, %t: tensor<3xi32>) {
  // expected-error@+1 {{C3: timesteps must have 2 entries and num_timesteps >= 2, got 3 and 1000}}
  %0 = dit.ddpm_loss %p, %x, %x, %x, %t : (tensor<2x8x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<3xi32>) -> tensor<2xf32>
  return
}

// -----
// rf_loss C1: noise and data shapes.
func.func @rf_c1(%p: tensor<2x8x8x8xf32>, %x: tensor<2x4x8x8xf32>, %n: tensor<2x3x8x8xf32>) {
  // expected-error@+1 {{C1: noise 2x3x8x8 differs from x_start 2x4x8x8}}
  %0 = dit.rf_loss %p, %x, %n : (tensor<2x8x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x3x8x8xf32>) -> tensor<2xf32>
  return
}

// -----
// rf_loss C2: prediction needs the data's channels.
func.func @rf_c2(%p: tensor<2x3x8x8xf32>, %x: tensor<2x4x8x8xf32>) {
  // expected-error@+1 {{C2: prediction has 3 channels, fewer than the 4 of x_start}}
  %0 = dit.rf_loss %p, %x, %x : (tensor<2x3x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>) -> tensor<2xf32>
  return
}

// -----
// edm_loss C1: raw output shape.
func.func @edm_c1(%f: tensor<2x4x8x4xf32>, %x: tensor<2x4x8x8xf32>, %s: tensor<2xf32>) {
  // expected-error@+1 {{C1: 2x4x8x4 differs from x_start 2x4x8x8}}
  %0 = dit.edm_loss %f, %x, %x, %s {sigma_data = 0.9 : f64} : (tensor<2x4x8x4xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2xf32>) -> tensor<2xf32>
  return
}

// -----
// edm_loss C2: one sigma per sample.
func.func @edm_c2(%x: tensor<2x4x8x8xf32>, %s: tensor<1xf32>) {
  // expected-error@+1 {{C2: sigma has 1 entries for a batch of 2}}
  %0 = dit.edm_loss %x, %x, %x, %s {sigma_data = 0.9 : f64} : (tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<1xf32>) -> tensor<2xf32>
  return
}

// -----
// edm_loss C3: kept patches within the patch grid.
func.func @edm_c3(%x: tensor<2x4x8x8xf32>, %s: tensor<2xf32>, %k: tensor<2x17xi32>) {
  // expected-error@+1 {{C3: keep must be 2xK with 1 <= K <= 16, got 2x17}}
  %0 = dit.edm_loss %x, %x, %x, %s keep %k {sigma_data = 0.9 : f64} : (tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2xf32>, tensor<2x17xi32>) -> tensor<2xf32>
  return
}

// -----
// moe_balance_loss C1: router width.
func.func @balance_c1(%x: tensor<2x4x8xf32>, %r: tensor<4x7xf32>) {
  // expected-error@+1 {{C1: router is 4x7 but the input width is 8}}
  %0 = dit.moe_balance_loss %x, %r {top_k = 2 : i64, coefficient = 0.01 : f64} : (tensor<2x4x8xf32>, tensor<4x7xf32>) -> tensor<f32>
  return
}

// -----
// moe_balance_loss C2: top_k within the experts.
func.func @balance_c2(%x: tensor<2x4x8xf32>, %r: tensor<4x8xf32>) {
  // expected-error@+1 {{C2: need 1 <= top_k <= 4 and coefficient >= 0, got 5 and 0.01}}
  %0 = dit.moe_balance_loss %x, %r {top_k = 5 : i64, coefficient = 0.01 : f64} : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<f32>
  return
}
