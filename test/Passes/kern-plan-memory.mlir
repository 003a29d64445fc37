// kern-plan-memory places every value of @forward in a region.
// RUN: diffc-opt %s -split-input-file --kern-plan-memory | FileCheck %s

// Parameters go to weights (region 0) in order, 256-byte aligned; the
// position table to constants (region 1) and is marked kern.init; inputs
// and activations to the arena (region 2); split results are views with
// the parent's row stride; a gemm whose residual dies there writes over it.
// CHECK-LABEL: func @forward
// CHECK-SAME: %{{.*}}: tensor<2x4x8xf32> {dit.input = "x", kern.slot = array<i64: 2, 0, 8>}
// CHECK-SAME: %{{.*}}: tensor<2x16xf32> {dit.input = "c", kern.slot = array<i64: 2, 256, 16>}
// CHECK-SAME: %{{.*}}: tensor<8x8xf32> {dit.param = "w", kern.slot = array<i64: 0, 0, 8>}
// CHECK-SAME: %{{.*}}: tensor<3xf32> {dit.param = "b", kern.slot = array<i64: 0, 256, 3>}
// CHECK-SAME: attributes {kern.plan = {arena_bytes = 768 : i64, constants_bytes = 256 : i64, weights_bytes = 512 : i64}}
// CHECK: dit.sincos_pos_embed {{.*}}kern.init, kern.slots = [array<i64: 1, 0, 8>]
// CHECK: dit.split %{{.*}} {kern.slots = [array<i64: 2, 256, 16>, array<i64: 2, 288, 16>]}
// CHECK: dit.add %{{.*}} {kern.slots = [array<i64: 2, 512, 8>]}
// CHECK: kern.gemm %{{.*}}, %{{.*}} residual %{{.*}} gate %{{.*}} {kern.slots = [array<i64: 2, 512, 8>]}
func.func @forward(%x: tensor<2x4x8xf32> {dit.input = "x"}, %c: tensor<2x16xf32> {dit.input = "c"},
                   %w: tensor<8x8xf32> {dit.param = "w"}, %b: tensor<3xf32> {dit.param = "b"}) -> tensor<2x4x8xf32> {
  %p = dit.sincos_pos_embed {grid = array<i64: 2, 2>, dim = 8 : i64, interp_scale = 1.0 : f64} : () -> tensor<4x8xf32>
  %g:2 = dit.split %c : (tensor<2x16xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>)
  %h = dit.add %x, %p : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x8xf32>
  %y = kern.gemm %x, %w residual %h gate %g#1 : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %y : tensor<2x4x8xf32>
}

// -----

// Inputs keep their place for the whole call (an entry is replayed without
// copying inputs again), so a value created after an input's last use does
// not take it; activations that die are reused.
// CHECK-LABEL: func @forward
// CHECK-SAME: {dit.input = "x", kern.slot = array<i64: 2, 0, 8>}
// CHECK: dit.silu %arg0 {kern.slots = [array<i64: 2, 256, 8>]}
// CHECK: dit.gelu %{{.*}} {kern.slots = [array<i64: 2, 512, 8>]}
// CHECK: dit.silu %{{.*}} {kern.slots = [array<i64: 2, 256, 8>]}
func.func @forward(%x: tensor<2x8xf32> {dit.input = "x"}) -> tensor<2x8xf32> {
  %0 = dit.silu %x : tensor<2x8xf32>
  %1 = dit.gelu %0 : tensor<2x8xf32>
  %2 = dit.silu %1 : tensor<2x8xf32>
  return %2 : tensor<2x8xf32>
}

// -----

// A gemm that also writes its pre-activation: its result still takes over
// the residual that dies there; the pre-activation gets an allocation of
// its own.
// CHECK-LABEL: func @forward
// CHECK: dit.add %{{.*}} {kern.slots = [array<i64: 2, [[H:[0-9]+]], 8>]}
// CHECK: kern.gemm %{{.*}} {kern.slots = [array<i64: 2, [[H]], 8>, array<i64: 2, [[Z:[0-9]+]], 8>]}
// CHECK-NOT: array<i64: 2, [[H]], 8>]
func.func @forward(%x: tensor<2x4x8xf32> {dit.input = "x"}, %g: tensor<2x8xf32> {dit.input = "g"},
                   %w: tensor<8x8xf32> {dit.param = "w"}) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %h = dit.add %x, %x : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %y, %z = kern.gemm %x, %w residual %h gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  return %y, %z : tensor<2x4x8xf32>, tensor<2x4x8xf32>
}
