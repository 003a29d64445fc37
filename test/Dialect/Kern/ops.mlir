// Every kern op parses, verifies and prints back the same, directly and
// through the generic form.
// RUN: diffc-opt %s | diffc-opt | FileCheck %s
// RUN: diffc-opt %s --mlir-print-op-generic | diffc-opt | FileCheck %s

// CHECK-LABEL: func @ops
func.func @ops(%x: tensor<2x16x8xf16>, %w: tensor<8x8xf16>, %b: tensor<8xf16>, %g: tensor<2x8xf16>,
               %p: tensor<32x8xf16>, %d: tensor<8x16xf16>, %r: tensor<4x8xf16>, %e1: tensor<4x16x8xf16>,
               %e2: tensor<4x8x16xf16>, %sg: tensor<12x8xf16>, %sd: tensor<8x12xf16>,
               %cw: tensor<8x1x3x3xf16>, %img: tensor<2x4x8x8xf16>, %pw: tensor<8x4x2x2xf16>,
               %pos: tensor<16x8xf16>, %t: tensor<2x16xf32>) {
  // CHECK: kern.gemm %{{.*}}, %{{.*}} bias %{{.*}} residual %{{.*}} gate %{{.*}} {act = #kern.act<gelu_tanh>}
  %0 = kern.gemm %x, %w bias %b residual %x gate %g {act = #kern.act<gelu_tanh>} : (tensor<2x16x8xf16>, tensor<8x8xf16>, tensor<8xf16>, tensor<2x16x8xf16>, tensor<2x8xf16>) -> tensor<2x16x8xf16>
  // CHECK: %[[Y:.*]], %[[Z:.*]] = kern.gemm %{{.*}}, %{{.*}} bias %{{.*}} {act = #kern.act<gelu>} : {{.*}} -> (tensor<2x16x8xf16>, tensor<2x16x8xf16>)
  %y, %z = kern.gemm %x, %w bias %b {act = #kern.act<gelu>} : (tensor<2x16x8xf16>, tensor<8x8xf16>, tensor<8xf16>) -> (tensor<2x16x8xf16>, tensor<2x16x8xf16>)
  // CHECK: kern.vjp "kern.gemm"(%{{.*}}, %{{.*}}, %{{.*}}, %[[Z]], %[[Y]]) {{{.*}}num_saved = 1 : i64
  %dw = kern.vjp "kern.gemm"(%x, %w, %b, %z, %y) {forward_attrs = {act = #kern.act<gelu>}, grads_of = array<i64: 1>, num_saved = 1 : i64, present = array<i64: 0, 1, 2>} : (tensor<2x16x8xf16>, tensor<8x8xf16>, tensor<8xf16>, tensor<2x16x8xf16>, tensor<2x16x8xf16>) -> tensor<8x8xf16>
  // CHECK: kern.swiglu %{{.*}}, %{{.*}} down %{{.*}} residual %{{.*}} gate %{{.*}} :
  %1 = kern.swiglu %x, %p down %d residual %x gate %g : (tensor<2x16x8xf16>, tensor<32x8xf16>, tensor<8x16xf16>, tensor<2x16x8xf16>, tensor<2x8xf16>) -> tensor<2x16x8xf16>
  // CHECK: kern.norm %{{.*}} weight %{{.*}} bias %{{.*}} shift %{{.*}} scale %{{.*}} {epsilon
  %2 = kern.norm %x weight %b bias %b shift %g scale %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x16x8xf16>, tensor<8xf16>, tensor<8xf16>, tensor<2x8xf16>, tensor<2x8xf16>) -> tensor<2x16x8xf16>
  // CHECK: kern.vjp "kern.norm"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) {{{.*}}input_grad_addend
  %dx:2 = kern.vjp "kern.norm"(%x, %g, %x, %x) {forward_attrs = {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>}, grads_of = array<i64: 0, 3>, present = array<i64: 0, 3>, input_grad_addend} : (tensor<2x16x8xf16>, tensor<2x8xf16>, tensor<2x16x8xf16>, tensor<2x16x8xf16>) -> (tensor<2x16x8xf16>, tensor<2x8xf16>)
  // CHECK: kern.norm %{{.*}} shift %{{.*}} scale %{{.*}} residual %{{.*}} residual_gate %{{.*}} {epsilon
  %sum:2 = kern.norm %x shift %g scale %g residual %x residual_gate %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x16x8xf16>, tensor<2x8xf16>, tensor<2x8xf16>, tensor<2x16x8xf16>, tensor<2x8xf16>) -> (tensor<2x16x8xf16>, tensor<2x16x8xf16>)
  // CHECK: kern.norm %{{.*}} silu_gate %{{.*}} {epsilon = {{.*}}, group_size = 4 : i64, kind = #kern.norm<rms>}
  %3 = kern.norm %x silu_gate %x {epsilon = 1.0e-6 : f64, group_size = 4 : i64, kind = #kern.norm<rms>} : (tensor<2x16x8xf16>, tensor<2x16x8xf16>) -> tensor<2x16x8xf16>
  // CHECK: kern.moe %{{.*}}, %{{.*}} experts(%{{.*}}, %{{.*}}, %{{.*}}) shared(%{{.*}}, %{{.*}}, %{{.*}}) residual %{{.*}} gate %{{.*}} {activation = #dit.activation<swiglu>
  %4 = kern.moe %x, %r experts(%e1, %e1, %e2) shared(%sg, %sg, %sd) residual %x gate %g {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>, activation = #dit.activation<swiglu>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x16x8xf16>, tensor<4x8xf16>, tensor<4x16x8xf16>, tensor<4x16x8xf16>, tensor<4x8x16xf16>, tensor<12x8xf16>, tensor<12x8xf16>, tensor<8x12xf16>, tensor<2x16x8xf16>, tensor<2x8xf16>) -> tensor<2x16x8xf16>
  // CHECK: kern.dwconv %{{.*}}, %{{.*}}, %{{.*}} {from = #dit.scan_order<row_major>, grid = array<i64: 4, 4>, to = #dit.scan_order<col_major_reversed>}
  %5 = kern.dwconv %x, %cw, %b {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<col_major_reversed>} : (tensor<2x16x8xf16>, tensor<8x1x3x3xf16>, tensor<8xf16>) -> tensor<2x16x8xf16>
  // CHECK: kern.patch_embed %{{.*}}, %{{.*}}, %{{.*}} positions %{{.*}} :
  %6 = kern.patch_embed %img, %pw, %b positions %pos : (tensor<2x4x8x8xf16>, tensor<8x4x2x2xf16>, tensor<8xf16>, tensor<16x8xf16>) -> tensor<2x16x8xf16>
  // CHECK: kern.cast %{{.*}} : (tensor<2x16xf32>) -> tensor<2x16xbf16>
  %7 = kern.cast %t : (tensor<2x16xf32>) -> tensor<2x16xbf16>
  return
}

// A generated element-wise kernel round-trips with its body; a bias and a
// single-element scale broadcast.
// CHECK-LABEL: func @pointwise
// CHECK: kern.pointwise ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<2x16x8xf16>, tensor<8xf32>, tensor<1xbf16>) {
// CHECK-NEXT: ^bb0(%{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32):
// CHECK: math.tanh
// CHECK: kern.yield %{{.*}} : f32
// CHECK-NEXT: } : tensor<2x16x8xf16>
func.func @pointwise(%x: tensor<2x16x8xf16>, %bias: tensor<8xf32>, %s: tensor<1xbf16>) -> tensor<2x16x8xf16> {
  %0 = kern.pointwise ins(%x, %bias, %s : tensor<2x16x8xf16>, tensor<8xf32>, tensor<1xbf16>) {
  ^bb0(%a: f32, %b: f32, %c: f32):
    %sum = arith.addf %a, %b : f32
    %t = math.tanh %sum : f32
    %m = arith.mulf %t, %c : f32
    kern.yield %m : f32
  } : tensor<2x16x8xf16>
  return %0 : tensor<2x16x8xf16>
}

// CHECK-LABEL: func @attention
func.func @attention(%q: tensor<2x16x8xbf16>, %k: tensor<2x5x8xbf16>, %v: tensor<2x5x12xbf16>) -> (tensor<2x16x12xbf16>, tensor<2x2x16xf32>) {
  // CHECK: %[[O:.*]], %[[L:.*]] = kern.attention %{{.*}}, %{{.*}}, %{{.*}} {num_heads = 2 : i64, scale = 5.000000e-01 : f64} : (tensor<2x16x8xbf16>, tensor<2x5x8xbf16>, tensor<2x5x12xbf16>) -> (tensor<2x16x12xbf16>, tensor<2x2x16xf32>)
  %o, %l = kern.attention %q, %k, %v {num_heads = 2 : i64, scale = 0.5 : f64} : (tensor<2x16x8xbf16>, tensor<2x5x8xbf16>, tensor<2x5x12xbf16>) -> (tensor<2x16x12xbf16>, tensor<2x2x16xf32>)
  return %o, %l : tensor<2x16x12xbf16>, tensor<2x2x16xf32>
}
