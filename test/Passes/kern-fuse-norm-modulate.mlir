// kern-fuse-norm-modulate merges adaLN modulation into the norm before it.
// RUN: diffc-opt %s --kern-fuse-norm-modulate | FileCheck %s

// A single-use norm followed by modulate becomes one norm with shift/scale.
// CHECK-LABEL: func @fuse
// CHECK-SAME: (%[[X:.*]]: tensor<2x4x8xf32>, %[[S:.*]]: tensor<2x8xf32>, %[[C:.*]]: tensor<2x8xf32>)
// CHECK: %[[N:.*]] = kern.norm %[[X]] shift %[[S]] scale %[[C]] {epsilon = {{.*}}, group_size = 8 : i64, kind = #kern.norm<layer>}
// CHECK-NOT: dit.modulate
// CHECK: return %[[N]]
func.func @fuse(%x: tensor<2x4x8xf32>, %s: tensor<2x8xf32>, %c: tensor<2x8xf32>) -> tensor<2x4x8xf32> {
  %n = kern.norm %x {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %m = dit.modulate %n, %s, %c : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %m : tensor<2x4x8xf32>
}

// A norm with another use keeps both ops: fusing would compute it twice.
// CHECK-LABEL: func @shared_norm
// CHECK: kern.norm %{{.*}} {epsilon
// CHECK: dit.modulate
func.func @shared_norm(%x: tensor<2x4x8xf32>, %s: tensor<2x8xf32>, %c: tensor<2x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %n = kern.norm %x {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %m = dit.modulate %n, %s, %c : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %m, %n : tensor<2x4x8xf32>, tensor<2x4x8xf32>
}
