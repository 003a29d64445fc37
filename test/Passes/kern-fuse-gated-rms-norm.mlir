// kern-fuse-gated-rms-norm puts DiG's SiLU output gate into the norm.
// RUN: diffc-opt %s --kern-fuse-gated-rms-norm | FileCheck %s

// CHECK-LABEL: func @fuse
// CHECK-SAME: (%[[O:.*]]: tensor<2x4x8xf32>, %[[G:.*]]: tensor<2x4x8xf32>, %[[W:.*]]: tensor<4xf32>)
// CHECK: kern.norm %[[O]] weight %[[W]] silu_gate %[[G]] {epsilon = {{.*}}, group_size = 4 : i64, kind = #kern.norm<rms>}
// CHECK-NOT: dit.mul
// CHECK-NOT: dit.silu
func.func @fuse(%o: tensor<2x4x8xf32>, %g: tensor<2x4x8xf32>, %w: tensor<4xf32>) -> tensor<2x4x8xf32> {
  %n = kern.norm %o weight %w {epsilon = 1.0e-6 : f64, group_size = 4 : i64, kind = #kern.norm<rms>} : (tensor<2x4x8xf32>, tensor<4xf32>) -> tensor<2x4x8xf32>
  %s = dit.silu %g : tensor<2x4x8xf32>
  %y = dit.mul %n, %s : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %y : tensor<2x4x8xf32>
}

// A product with a plain tensor (no SiLU) stays.
// CHECK-LABEL: func @keep
// CHECK: dit.mul
func.func @keep(%o: tensor<2x4x8xf32>, %g: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %n = kern.norm %o {epsilon = 1.0e-6 : f64, group_size = 4 : i64, kind = #kern.norm<rms>} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %y = dit.mul %n, %g : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %y : tensor<2x4x8xf32>
}
