// kern-fuse-residual-norm moves a dense layer's gated residual into the norm
// that first reads its result.
// RUN: diffc-opt %s -split-input-file --kern-fuse-residual-norm | FileCheck %s

// Sampling: the gemm loses its residual; the norm forms x + g ⊙ y and
// returns it, which the next gated residual reads.
// CHECK-LABEL: func @sample
// CHECK-SAME: (%[[X:.*]]: tensor<2x4x8xf32>, %[[G:.*]]: tensor<2x8xf32>, %[[W:.*]]: tensor<8x8xf32>
// CHECK: %[[Y:.*]] = kern.gemm %[[X]], %[[W]] :
// CHECK: %[[H:[0-9a-z_]+]], %[[S:[0-9a-z_]+]] = kern.norm %[[Y]] shift %[[G]] scale %[[G]] residual %[[X]] residual_gate %[[G]]
// CHECK: kern.gemm %[[H]], %[[W]] residual %[[S]] gate %[[G]]
func.func @sample(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %w: tensor<8x8xf32>) -> tensor<2x4x8xf32> {
  %0 = kern.gemm %x, %w residual %x gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %1 = kern.norm %0 shift %g scale %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %2 = kern.gemm %1, %w residual %0 gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %2 : tensor<2x4x8xf32>
}

// -----
// Training (after kern-autodiff): the saved pre-activation of a gemm without
// an activation is the new gemm's result; one with an activation keeps its
// own.
// CHECK-LABEL: func @saved
// CHECK: %[[Y:.*]] = kern.gemm %{{.*}}, %{{.*}} bias %{{.*}} :
// CHECK-NOT: residual
// CHECK: %[[H:[0-9a-z_]+]], %[[S:[0-9a-z_]+]] = kern.norm %[[Y]] residual
// CHECK: %[[Z:[0-9a-z_]+]], %[[ZP:[0-9a-z_]+]] = kern.gemm %[[H]], %{{.*}} {act = #kern.act<gelu_tanh>}
// CHECK: kern.norm %[[Z]] residual %[[S]]
// CHECK: return %[[H]], %[[Y]], %{{.*}}, %[[ZP]]
func.func @saved(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>)
    -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %0:2 = kern.gemm %x, %w bias %b residual %x gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %1 = kern.norm %0#0 {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %2:2 = kern.gemm %1, %w residual %0#0 gate %g {act = #kern.act<gelu_tanh>} : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %3 = kern.norm %2#0 {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %1, %0#1, %3, %2#1 : tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>
}

// -----
// Not fused: the gemm's result is read before the norm, or the norm reads
// it twice, or the first reader is not a norm.
// CHECK-LABEL: func @keep
// CHECK-COUNT-3: kern.gemm %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} residual %{{[a-z0-9_]+}} gate %{{[a-z0-9_]+}} :
// CHECK-NOT: residual_gate
func.func @keep(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %w: tensor<8x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %0 = kern.gemm %x, %w residual %x gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %1 = dit.add %0, %x : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %2 = kern.norm %0 {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %3 = kern.gemm %x, %w residual %x gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %4 = kern.norm %3 silu_gate %3 {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<rms>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %5 = kern.gemm %x, %w residual %x gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %2, %4, %5 : tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>
}
