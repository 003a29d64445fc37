// kern-fuse-gated-residual folds residual + gate * y into y's producer.
// RUN: diffc-opt %s --kern-fuse-gated-residual | FileCheck %s

// Into a gemm (keeping its activation), a swiglu and a moe.
// CHECK-LABEL: func @fuse
// CHECK-SAME: (%[[X:.*]]: tensor<2x4x8xf32>, %[[G:.*]]: tensor<2x8xf32>
// CHECK: %[[A:.*]] = kern.gemm %[[X]], %{{.*}} residual %[[X]] gate %[[G]] {act = #kern.act<silu>}
// CHECK: %[[B:.*]] = kern.swiglu %[[A]], %{{.*}} down %{{.*}} residual %[[A]] gate %[[G]]
// CHECK: kern.moe %[[B]], %{{.*}} experts(%{{.*}}) residual %[[B]] gate %[[G]]
// CHECK-NOT: dit.gated_residual
func.func @fuse(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %w: tensor<8x8xf32>, %p: tensor<32x8xf32>,
                %d: tensor<8x16xf32>, %r: tensor<4x8xf32>, %e1: tensor<4x8x16xf32>, %e2: tensor<4x16x8xf32>) -> tensor<2x4x8xf32> {
  %0 = kern.gemm %x, %w {act = #kern.act<silu>} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %1 = dit.gated_residual %x, %g, %0 : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %2 = kern.swiglu %1, %p down %d : (tensor<2x4x8xf32>, tensor<32x8xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %3 = dit.gated_residual %1, %g, %2 : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %4 = kern.moe %3, %r experts(%e1, %e2) {routing = #dit.expert_choice<capacity = 2.0>, activation = #dit.activation<gelu>, weight_layout = #dit.weight_layout<in_out>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<2x4x8xf32>
  %5 = dit.gated_residual %3, %g, %4 : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %5 : tensor<2x4x8xf32>
}

// An update that is not a fusible kernel's result, or has another use, stays.
// CHECK-LABEL: func @keep
// CHECK: dit.gated_residual
// CHECK: dit.gated_residual
func.func @keep(%x: tensor<2x4x8xf32>, %g: tensor<2x8xf32>, %w: tensor<8x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %0 = dit.gated_residual %x, %g, %x : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %1 = kern.gemm %x, %w : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %2 = dit.gated_residual %0, %g, %1 : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %2, %1 : tensor<2x4x8xf32>, tensor<2x4x8xf32>
}
