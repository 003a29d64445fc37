// dit-to-kern selects one kernel per dit op that is not a kernel by itself.
// RUN: diffc-opt %s --dit-to-kern | FileCheck %s

// Linear, norms, SwiGLU, MoE, depth-wise conv and patch embedding map to
// their kern ops; attention and element-wise ops stay.
// CHECK-LABEL: func @select
func.func @select(%x: tensor<2x16x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>, %lw: tensor<8xf32>,
                  %g: tensor<16x8xf32>, %d: tensor<8x16xf32>, %r: tensor<4x8xf32>,
                  %eg: tensor<4x16x8xf32>, %ed: tensor<4x8x16xf32>, %cw: tensor<8x1x3x3xf32>,
                  %img: tensor<2x4x8x8xf32>, %pw: tensor<8x4x2x2xf32>) -> (tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) {
  // CHECK: kern.gemm %{{.*}}, %{{.*}} bias %{{.*}} : (tensor<2x16x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %0 = dit.linear %x, %w bias %b : (tensor<2x16x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  // CHECK: kern.norm %{{.*}} weight %{{.*}} {epsilon = {{.*}}, group_size = 8 : i64, kind = #kern.norm<layer>}
  %1 = dit.layer_norm %x weight %lw {epsilon = 1.0e-6 : f64} : (tensor<2x16x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  // CHECK: kern.norm %{{.*}} {epsilon = {{.*}}, group_size = 4 : i64, kind = #kern.norm<rms>}
  %2 = dit.rms_norm %x {epsilon = 1.0e-6 : f64, group_size = 4 : i64} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  // CHECK: kern.swiglu %{{.*}}, %{{.*}} up %{{.*}} down %{{.*}} :
  %3 = dit.swiglu %x, %g up %g down %d : (tensor<2x16x8xf32>, tensor<16x8xf32>, tensor<16x8xf32>, tensor<8x16xf32>) -> tensor<2x16x8xf32>
  // CHECK: kern.moe %{{.*}}, %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) {activation = #dit.activation<swiglu>, routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 1.000000e-02>, weight_layout = #dit.weight_layout<out_in>}
  %4 = dit.moe %x, %r, %eg, %eg, %ed {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>, activation = #dit.activation<swiglu>} : (tensor<2x16x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x16x8xf32>
  // The convolution starts without an order change.
  // CHECK: kern.dwconv %{{.*}}, %{{.*}}, %{{.*}} {from = #dit.scan_order<row_major>, grid = array<i64: 4, 4>, to = #dit.scan_order<row_major>}
  %5 = dit.depthwise_conv2d %x, %cw, %b {grid = array<i64: 4, 4>} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  // CHECK: kern.patch_embed %{{.*}}, %{{.*}}, %{{.*}} : (tensor<2x4x8x8xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %6 = dit.patch_embed %img, %pw, %b : (tensor<2x4x8x8xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  // CHECK: dit.attention
  %7 = dit.attention %6, %6, %6 {num_heads = 2 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  // CHECK-NOT: dit.linear
  // CHECK-NOT: dit.layer_norm
  return %0, %1, %2, %3, %4, %5, %7 : tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>, tensor<2x16x8xf32>
}
