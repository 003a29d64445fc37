// kern-fuse-patch-embed-positions adds the position table inside the embedding.
// RUN: diffc-opt %s --kern-fuse-patch-embed-positions | FileCheck %s

// CHECK-LABEL: func @fuse
// CHECK: %[[P:.*]] = dit.sincos_pos_embed
// CHECK: kern.patch_embed %{{.*}}, %{{.*}}, %{{.*}} positions %[[P]]
// CHECK-NOT: dit.add
func.func @fuse(%x: tensor<2x4x8x8xf32>, %w: tensor<8x4x2x2xf32>, %b: tensor<8xf32>) -> tensor<2x16x8xf32> {
  %0 = kern.patch_embed %x, %w, %b : (tensor<2x4x8x8xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %p = dit.sincos_pos_embed {grid = array<i64: 4, 4>, dim = 8 : i64, interp_scale = 1.0 : f64} : () -> tensor<16x8xf32>
  %1 = dit.add %0, %p : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x8xf32>
  return %1 : tensor<2x16x8xf32>
}

// Adding a full-shape tensor is not a position table.
// CHECK-LABEL: func @keep
// CHECK: dit.add
func.func @keep(%x: tensor<2x4x8x8xf32>, %w: tensor<8x4x2x2xf32>, %b: tensor<8xf32>, %y: tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  %0 = kern.patch_embed %x, %w, %b : (tensor<2x4x8x8xf32>, tensor<8x4x2x2xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %1 = dit.add %0, %y : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %1 : tensor<2x16x8xf32>
}
