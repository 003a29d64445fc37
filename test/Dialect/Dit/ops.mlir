// Every dit op parses, verifies and prints back to the same text, directly
// and through the generic form.
// RUN: diffc-opt %s | diffc-opt | FileCheck %s
// RUN: diffc-opt %s --mlir-print-op-generic | diffc-opt | FileCheck %s

// CHECK-LABEL: func @embeddings
func.func @embeddings(%x: tensor<2x4x32x32xf32>, %w: tensor<384x4x2x2xf32>, %b: tensor<384xf32>,
                      %t: tensor<2xf32>, %y: tensor<2xi32>, %table: tensor<1001x384xf32>,
                      %cap: tensor<2x77x1024xf32>)
    -> (tensor<2x256x384xf32>, tensor<2x256xf32>, tensor<2x384xf32>, tensor<2x1024xf32>, tensor<256x384xf32>) {
  // CHECK: dit.patch_embed %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x4x32x32xf32>, tensor<384x4x2x2xf32>, tensor<384xf32>) -> tensor<2x256x384xf32>
  %tokens = dit.patch_embed %x, %w, %b : (tensor<2x4x32x32xf32>, tensor<384x4x2x2xf32>, tensor<384xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.sincos_pos_embed {dim = 384 : i64, frozen_parameter, grid = array<i64: 16, 16>, interp_scale = 2.000000e+00 : f64, state_name = "pos_embed"}
  %pos = dit.sincos_pos_embed {grid = array<i64: 16, 16>, dim = 384 : i64, interp_scale = 2.0 : f64, state_name = "pos_embed", frozen_parameter} : () -> tensor<256x384xf32>
  // CHECK: dit.add %{{.*}}, %{{.*}} : (tensor<2x256x384xf32>, tensor<256x384xf32>) -> tensor<2x256x384xf32>
  %x1 = dit.add %tokens, %pos : (tensor<2x256x384xf32>, tensor<256x384xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.timestep_embed %{{.*}} {dim = 256 : i64} : (tensor<2xf32>) -> tensor<2x256xf32>
  %f = dit.timestep_embed %t {dim = 256 : i64, max_period = 10000.0 : f64} : (tensor<2xf32>) -> tensor<2x256xf32>
  // CHECK: dit.label_embed %{{.*}}, %{{.*}} {num_classes = 1000 : i64}
  %e = dit.label_embed %y, %table {num_classes = 1000 : i64} : (tensor<2xi32>, tensor<1001x384xf32>) -> tensor<2x384xf32>
  // CHECK: dit.token_mean %{{.*}} : (tensor<2x77x1024xf32>) -> tensor<2x1024xf32>
  %m = dit.token_mean %cap : (tensor<2x77x1024xf32>) -> tensor<2x1024xf32>
  return %x1, %f, %e, %m, %pos : tensor<2x256x384xf32>, tensor<2x256xf32>, tensor<2x384xf32>, tensor<2x1024xf32>, tensor<256x384xf32>
}

// CHECK-LABEL: func @unpatchify
func.func @unpatchify(%x: tensor<2x256x32xf16>) -> tensor<2x8x32x32xf16> {
  // CHECK: dit.unpatchify %{{.*}} {grid = array<i64: 16, 16>, patch_size = 2 : i64} : (tensor<2x256x32xf16>) -> tensor<2x8x32x32xf16>
  %0 = dit.unpatchify %x {grid = array<i64: 16, 16>, patch_size = 2 : i64} : (tensor<2x256x32xf16>) -> tensor<2x8x32x32xf16>
  return %0 : tensor<2x8x32x32xf16>
}

// CHECK-LABEL: func @conditioning
func.func @conditioning(%x: tensor<2x256x384xbf16>, %c: tensor<2x384xbf16>, %w: tensor<2304x384xbf16>,
                        %b: tensor<2304xbf16>, %ln_w: tensor<384xbf16>, %qk_w: tensor<64xbf16>)
    -> (tensor<2x256x384xbf16>, tensor<2x256x384xbf16>, tensor<2x256x384xbf16>) {
  // CHECK: dit.silu %{{.*}} : tensor<2x384xbf16>
  %a = dit.silu %c : tensor<2x384xbf16>
  // CHECK: dit.linear %{{.*}}, %{{.*}} bias %{{.*}} :
  %mod = dit.linear %a, %w bias %b : (tensor<2x384xbf16>, tensor<2304x384xbf16>, tensor<2304xbf16>) -> tensor<2x2304xbf16>
  // CHECK: dit.split %{{.*}} : (tensor<2x2304xbf16>) -> (tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>)
  %s0, %s1, %g0, %s2, %s3, %g1 = dit.split %mod : (tensor<2x2304xbf16>) -> (tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>)
  // CHECK: dit.layer_norm %{{.*}} {epsilon = 9.9999999999999995E-7 : f64}
  %n = dit.layer_norm %x {epsilon = 1.0e-6 : f64} : (tensor<2x256x384xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.layer_norm %{{.*}} weight %{{.*}} {epsilon
  %n2 = dit.layer_norm %x weight %ln_w {epsilon = 1.0e-6 : f64} : (tensor<2x256x384xbf16>, tensor<384xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.layer_norm %{{.*}} weight %{{.*}} bias %{{.*}} {epsilon = {{.*}}, group_size = 64 : i64}
  %n3 = dit.layer_norm %x weight %qk_w bias %qk_w {epsilon = 1.0e-6 : f64, group_size = 64 : i64} : (tensor<2x256x384xbf16>, tensor<64xbf16>, tensor<64xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.rms_norm %{{.*}} weight %{{.*}} {epsilon = {{.*}}, group_size = 64 : i64}
  %r = dit.rms_norm %n3 weight %qk_w {epsilon = 1.0e-6 : f64, group_size = 64 : i64} : (tensor<2x256x384xbf16>, tensor<64xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.modulate %{{.*}}, %{{.*}}, %{{.*}} :
  %mm = dit.modulate %n, %s0, %s1 : (tensor<2x256x384xbf16>, tensor<2x384xbf16>, tensor<2x384xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.gated_residual %{{.*}}, %{{.*}}, %{{.*}} :
  %res = dit.gated_residual %x, %g0, %mm : (tensor<2x256x384xbf16>, tensor<2x384xbf16>, tensor<2x256x384xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.mul %{{.*}}, %{{.*}} :
  %p = dit.mul %res, %r : (tensor<2x256x384xbf16>, tensor<2x256x384xbf16>) -> tensor<2x256x384xbf16>
  // CHECK: dit.gelu %{{.*}} {approximate} : tensor<2x256x384xbf16>
  %ge = dit.gelu %p {approximate} : tensor<2x256x384xbf16>
  // CHECK: dit.gelu %{{.*}} : tensor<2x256x384xbf16>
  %gx = dit.gelu %n2 : tensor<2x256x384xbf16>
  return %ge, %gx, %n2 : tensor<2x256x384xbf16>, tensor<2x256x384xbf16>, tensor<2x256x384xbf16>
}

// CHECK-LABEL: func @dense
func.func @dense(%x: tensor<2x256x384xf32>, %w1: tensor<1536x384xf32>, %b1: tensor<1536xf32>,
                 %w2: tensor<384x1536xf32>, %b2: tensor<384xf32>, %wp: tensor<2048x384xf32>,
                 %wd: tensor<384x1024xf32>) -> (tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<2x256x384xf32>) {
  // CHECK: dit.mlp %{{.*}}, %{{.*}}, %{{.*}} biases %{{.*}}, %{{.*}} {activation = #dit.activation<gelu_tanh>}
  %0 = dit.mlp %x, %w1, %w2 biases %b1, %b2 {activation = #dit.activation<gelu_tanh>} : (tensor<2x256x384xf32>, tensor<1536x384xf32>, tensor<384x1536xf32>, tensor<1536xf32>, tensor<384xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.mlp %{{.*}}, %{{.*}}, %{{.*}} {activation = #dit.activation<silu>}
  %1 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<silu>} : (tensor<2x256x384xf32>, tensor<1536x384xf32>, tensor<384x1536xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.swiglu %{{.*}}, %{{.*}} up %{{.*}} down %{{.*}} :
  %2 = dit.swiglu %x, %w1 up %w1 down %w2 : (tensor<2x256x384xf32>, tensor<1536x384xf32>, tensor<1536x384xf32>, tensor<384x1536xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.swiglu %{{.*}}, %{{.*}} down %{{.*}} :
  %3 = dit.swiglu %x, %wp down %wd : (tensor<2x256x384xf32>, tensor<2048x384xf32>, tensor<384x1024xf32>) -> tensor<2x256x384xf32>
  return %0, %1, %2, %3 : tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<2x256x384xf32>
}

// CHECK-LABEL: func @mixers
func.func @mixers(%q: tensor<2x64x1024xf16>, %k: tensor<2x77x1024xf16>, %v: tensor<2x77x1024xf16>,
                  %gq: tensor<2x256x192xf16>, %gv: tensor<2x256x384xf16>, %cw: tensor<384x1x3x3xf16>,
                  %cb: tensor<384xf16>) -> (tensor<2x64x1024xf16>, tensor<2x256x384xf16>) {
  // CHECK: dit.attention %{{.*}}, %{{.*}}, %{{.*}} {num_heads = 16 : i64} : (tensor<2x64x1024xf16>, tensor<2x77x1024xf16>, tensor<2x77x1024xf16>) -> tensor<2x64x1024xf16>
  %0 = dit.attention %q, %k, %v {num_heads = 16 : i64} : (tensor<2x64x1024xf16>, tensor<2x77x1024xf16>, tensor<2x77x1024xf16>) -> tensor<2x64x1024xf16>
  // CHECK: dit.gla %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {num_heads = 6 : i64} :
  %1 = dit.gla %gq, %gq, %gv, %gq {num_heads = 6 : i64, gate_normalizer = 16.0 : f64, chunk_size = 16 : i64} : (tensor<2x256x192xf16>, tensor<2x256x192xf16>, tensor<2x256x384xf16>, tensor<2x256x192xf16>) -> tensor<2x256x384xf16>
  // CHECK: dit.depthwise_conv2d %{{.*}}, %{{.*}}, %{{.*}} {grid = array<i64: 16, 16>}
  %2 = dit.depthwise_conv2d %1, %cw, %cb {grid = array<i64: 16, 16>} : (tensor<2x256x384xf16>, tensor<384x1x3x3xf16>, tensor<384xf16>) -> tensor<2x256x384xf16>
  // CHECK: dit.reorder_tokens %{{.*}} {from = #dit.scan_order<row_major_reversed>, grid = array<i64: 16, 16>, to = #dit.scan_order<col_major>}
  %3 = dit.reorder_tokens %2 {grid = array<i64: 16, 16>, from = #dit.scan_order<row_major_reversed>, to = #dit.scan_order<col_major>} : (tensor<2x256x384xf16>) -> tensor<2x256x384xf16>
  return %0, %3 : tensor<2x64x1024xf16>, tensor<2x256x384xf16>
}

// CHECK-LABEL: func @experts
func.func @experts(%x: tensor<2x256x384xf32>, %r: tensor<8x384xf32>, %wg: tensor<8x1536x384xf32>,
                   %wd: tensor<8x384x1536xf32>, %w1: tensor<8x384x768xf32>, %w2: tensor<8x768x384xf32>)
    -> (tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<f32>) {
  // CHECK: dit.moe {{.*}} {activation = #dit.activation<swiglu>, routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 1.000000e-02>}
  %0 = dit.moe %x, %r, %wg, %wg, %wd {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>, activation = #dit.activation<swiglu>} : (tensor<2x256x384xf32>, tensor<8x384xf32>, tensor<8x1536x384xf32>, tensor<8x1536x384xf32>, tensor<8x384x1536xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.moe {{.*}} {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>}
  %1 = dit.moe %x, %r, %w1, %w2 {routing = #dit.expert_choice<capacity = 2.0>, activation = #dit.activation<gelu>, weight_layout = #dit.weight_layout<in_out>} : (tensor<2x256x384xf32>, tensor<8x384xf32>, tensor<8x384x768xf32>, tensor<8x768x384xf32>) -> tensor<2x256x384xf32>
  // CHECK: dit.moe_balance_loss %{{.*}}, %{{.*}} {coefficient = 5.000000e-03 : f64, top_k = 2 : i64} : (tensor<2x256x384xf32>, tensor<8x384xf32>) -> tensor<f32>
  %2 = dit.moe_balance_loss %x, %r {top_k = 2 : i64, coefficient = 0.005 : f64} : (tensor<2x256x384xf32>, tensor<8x384xf32>) -> tensor<f32>
  return %0, %1, %2 : tensor<2x256x384xf32>, tensor<2x256x384xf32>, tensor<f32>
}

// CHECK-LABEL: func @masking
func.func @masking(%x: tensor<2x256x768xf32>, %keep: tensor<2x64xi32>, %y: tensor<2x64x16xf32>)
    -> (tensor<2x64x768xf32>, tensor<2x256x16xf32>) {
  // CHECK: dit.mask_tokens %{{.*}}, %{{.*}} : (tensor<2x256x768xf32>, tensor<2x64xi32>) -> tensor<2x64x768xf32>
  %0 = dit.mask_tokens %x, %keep : (tensor<2x256x768xf32>, tensor<2x64xi32>) -> tensor<2x64x768xf32>
  // CHECK: dit.unmask_tokens %{{.*}}, %{{.*}} {num_tokens = 256 : i64, state_name = "mask_token"}
  %1 = dit.unmask_tokens %y, %keep {num_tokens = 256 : i64, state_name = "mask_token"} : (tensor<2x64x16xf32>, tensor<2x64xi32>) -> tensor<2x256x16xf32>
  return %0, %1 : tensor<2x64x768xf32>, tensor<2x256x16xf32>
}

// CHECK-LABEL: func @losses
func.func @losses(%p: tensor<2x8x32x32xf32>, %x0: tensor<2x4x32x32xf32>, %xt: tensor<2x4x32x32xf32>,
                  %eps: tensor<2x4x32x32xf32>, %t: tensor<2xi32>, %s: tensor<2xf32>,
                  %keep: tensor<2x64xi32>) -> (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) {
  // CHECK: dit.ddpm_loss %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x8x32x32xf32>
  %0 = dit.ddpm_loss %p, %x0, %xt, %eps, %t {num_timesteps = 1000 : i64} : (tensor<2x8x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2xi32>) -> tensor<2xf32>
  // CHECK: dit.rf_loss %{{.*}}, %{{.*}}, %{{.*}} :
  %1 = dit.rf_loss %p, %x0, %eps : (tensor<2x8x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>) -> tensor<2xf32>
  // CHECK: dit.edm_loss %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {sigma_data = 9.000000e-01 : f64} :
  %2 = dit.edm_loss %xt, %xt, %x0, %s {sigma_data = 0.9 : f64, patch_size = 2 : i64} : (tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2xf32>) -> tensor<2xf32>
  // CHECK: dit.edm_loss %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} keep %{{.*}} {
  %3 = dit.edm_loss %xt, %xt, %x0, %s keep %keep {sigma_data = 0.9 : f64} : (tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2x4x32x32xf32>, tensor<2xf32>, tensor<2x64xi32>) -> tensor<2xf32>
  return %0, %1, %2, %3 : tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
}
