// kern-plan-memory places every value of @forward in a region.
// RUN: diffc-opt %s -split-input-file --kern-plan-memory | FileCheck %s
// RUN: diffc-opt %s -split-input-file --kern-plan-memory="weight-grad-window=1" | FileCheck %s --check-prefix=WINDOW

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

// -----

// The q, k and v gradients of an attention backward that only feed the
// backward of the split that made q, k and v are column views of the split
// gradient (rows of 3·8 floats, parts 32 bytes apart), so that backward
// copies nothing.
// CHECK-LABEL: func @train_step
// CHECK: kern.vjp "dit.attention"{{.*}}kern.slots = [array<i64: 2, [[#W:]], 24>,
// CHECK-SAME: array<i64: 2, [[#W+32]], 24>, array<i64: 2, [[#W+64]], 24>]
// CHECK: kern.vjp "dit.split"{{.*}}kern.slots = [array<i64: 2, [[#W]], 24>]
func.func @train_step(%qkv: tensor<2x4x24xf32> {dit.input = "qkv"}, %d: tensor<2x4x8xf32> {dit.input = "d"})
    -> tensor<2x4x24xf32> {
  %q:3 = dit.split %qkv : (tensor<2x4x24xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %g:3 = kern.vjp "dit.attention"(%q#0, %q#1, %q#2, %d) {forward_attrs = {num_heads = 2 : i64}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %w = kern.vjp "dit.split"(%qkv, %g#0, %g#1, %g#2) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x24xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x24xf32>
  return %w : tensor<2x4x24xf32>
}

// -----

// A dense layer's backward with a weight gradient reads its input x (here
// %h). Without a window the next kernel takes x's place where x dies; with
// weight-grad-window=1, x stays live until the next such backward, so the
// weight-gradient product can run beside the kernels in between.
// CHECK-LABEL: func @train_step
// CHECK: dit.silu %arg0 {kern.slots = [array<i64: 2, [[X:[0-9]+]], 8>]}
// CHECK: kern.vjp "kern.gemm"
// CHECK: dit.gelu %{{.*}} {kern.slots = [array<i64: 2, [[X]], 8>]}
// WINDOW-LABEL: func @train_step
// WINDOW: dit.silu %arg0 {kern.slots = [array<i64: 2, [[X:[0-9]+]], 8>]}
// WINDOW: kern.vjp "kern.gemm"
// WINDOW-NOT: array<i64: 2, [[X]], 8>
// WINDOW: kern.vjp "kern.gemm"
// WINDOW: return
func.func @train_step(%x: tensor<4x8xf32> {dit.input = "x"}, %d: tensor<4x8xf32> {dit.input = "d"},
                      %w: tensor<8x8xf32> {dit.param = "w"}) -> (tensor<4x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>) {
  %h = dit.silu %x : tensor<4x8xf32>
  %g:2 = kern.vjp "kern.gemm"(%h, %w, %d) {forward_attrs = {}, grads_of = array<i64: 0, 1>, present = array<i64: 0, 1>} : (tensor<4x8xf32>, tensor<8x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<8x8xf32>)
  %s = dit.gelu %g#0 : tensor<4x8xf32>
  %t = dit.silu %s : tensor<4x8xf32>
  %k:2 = kern.vjp "kern.gemm"(%t, %w, %s) {forward_attrs = {}, grads_of = array<i64: 0, 1>, present = array<i64: 0, 1>} : (tensor<4x8xf32>, tensor<8x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<8x8xf32>)
  return %k#0, %g#1, %k#1 : tensor<4x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>
}
