// kern-autodiff turns @forward into @train_step: the objective's loss, then
// one backward kernel per op in reverse order, alias gradients for residual
// paths, summed gradients for values with several consumers.
// RUN: diffc-opt %s -split-input-file --kern-autodiff='objective=rf' | FileCheck %s
// RUN: not diffc-opt %s -split-input-file --kern-autodiff='objective=score' 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: diffc-opt %s -split-input-file --kern-autodiff='objective=rf remat=norms' | FileCheck %s --check-prefix=REMAT
// RUN: diffc-opt %s -split-input-file --kern-autodiff='objective=rf' | FileCheck %s --check-prefix=NOREMAT
// RUN: diffc-opt %s -split-input-file --kern-autodiff='objective=rf remat=norms,products' | FileCheck %s --check-prefix=PRODUCTS
// RUN: not diffc-opt %s -split-input-file --kern-autodiff='objective=rf remat=all' 2>&1 | FileCheck %s --check-prefix=BADREMAT
// RUN: not diffc-opt %s -split-input-file --kern-autodiff='objective=rf remat=none,norms' 2>&1 | FileCheck %s --check-prefix=BADREMAT2
// BADREMAT: kern-autodiff: remat must be none, or norms and/or products separated by a comma, got 'all'
// BADREMAT2: kern-autodiff: remat must be none, or norms and/or products separated by a comma, got 'none,norms'

// t = patch_embed(x); y = t + gate * (h·wᵀ) with h = silu(t·vᵀ): the gemm
// with a residual epilogue gets one vjp for its input and weight; the
// residual's gradient is the incoming one, summed with the path through the
// first gemm before the patch embedding's vjp. Both gemms (one with an
// activation, one with a gated residual) save their pre-activation for
// their backward kernel; with remat=products they save nothing.
// CHECK-LABEL: func @train_step
// CHECK-SAME: %[[X:arg[0-9]+]]: tensor<2x2x4x4xf32> {dit.input = "x"}
// CHECK-SAME: %[[W:arg[0-9]+]]: tensor<8x8xf32> {dit.param = "w"}, %[[V:arg[0-9]+]]: tensor<8x8xf32> {dit.param = "v"}
// CHECK-SAME: %[[X0:arg[0-9]+]]: tensor<2x2x4x4xf32> {dit.input = "x_start"}, %[[N:arg[0-9]+]]: tensor<2x2x4x4xf32> {dit.input = "noise"}
// CHECK-SAME: -> (tensor<2xf32>, tensor<8x2x2x2xf32>, tensor<8xf32>, tensor<8x8xf32>, tensor<8x8xf32>)
// CHECK: %[[T:.*]] = kern.patch_embed %[[X]]
// CHECK: %[[H:[0-9a-z_]+]], %[[HZ:[0-9a-z_]+]] = kern.gemm %[[T]], %[[V]] {act = #kern.act<silu>}
// CHECK-SAME: -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
// CHECK: %[[Y:[0-9a-z_]+]], %[[YZ:[0-9a-z_]+]] = kern.gemm %[[H]], %[[W]] residual %[[T]] gate
// CHECK: %[[LOSS:.*]] = dit.rf_loss %{{.*}}, %[[X0]], %[[N]]
// CHECK: %[[DP:.*]] = kern.vjp "dit.rf_loss"({{.*}}) {{{.*}}loss_weight = 5.000000e-01
// CHECK: %[[DY:.*]] = kern.vjp "dit.unpatchify"(%[[Y]], %[[DP]])
// The gate is an input, not a parameter: no gradient for it.
// CHECK: %[[G2:.*]]:2 = kern.vjp "kern.gemm"(%[[H]], %[[W]], %[[T]], %{{.*}}, %[[YZ]], %[[DY]]) {{{.*}}grads_of = array<i64: 0, 1>, num_saved = 1
// CHECK: %[[G1:.*]]:2 = kern.vjp "kern.gemm"(%[[T]], %[[V]], %[[HZ]], %[[G2]]#0) {{{.*}}grads_of = array<i64: 0, 1>, num_saved = 1
// CHECK: %[[DT:.*]] = dit.add %[[DY]], %[[G1]]#0
// CHECK: %[[GP:.*]]:2 = kern.vjp "kern.patch_embed"(%[[X]], %{{.*}}, %{{.*}}, %[[DT]]) {{{.*}}grads_of = array<i64: 1, 2>
// CHECK: return %[[LOSS]], %[[GP]]#0, %[[GP]]#1, %[[G2]]#1, %[[G1]]#1
// CHECK-NOT: func.func @forward
// BAD: kern-autodiff: objective must be ddpm, rf or edm, got 'score'
// PRODUCTS-LABEL: func @train_step
// PRODUCTS-NOT: preactivation
// PRODUCTS: kern.vjp "kern.gemm"(%{{[^)]*}}) {{{.*}}grads_of = array<i64: 0, 1>, present = array<i64: 0, 1, 3, 4>}
// PRODUCTS: kern.vjp "kern.gemm"(%{{[^)]*}}) {{{.*}}grads_of = array<i64: 0, 1>, present = array<i64: 0, 1>}
func.func @forward(%x: tensor<2x2x4x4xf32> {dit.input = "x"}, %g: tensor<2x8xf32> {dit.input = "g"},
                   %pw: tensor<8x2x2x2xf32> {dit.param = "pw"}, %pb: tensor<8xf32> {dit.param = "pb"},
                   %w: tensor<8x8xf32> {dit.param = "w"}, %v: tensor<8x8xf32> {dit.param = "v"})
    -> tensor<2x2x4x4xf32> {
  %t = kern.patch_embed %x, %pw, %pb : (tensor<2x2x4x4xf32>, tensor<8x2x2x2xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %h = kern.gemm %t, %v {act = #kern.act<silu>} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %y = kern.gemm %h, %w residual %t gate %g : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %img = dit.unpatchify %y {grid = array<i64: 2, 2>, patch_size = 2 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x4x4xf32>
  return %img : tensor<2x2x4x4xf32>
}

// -----

// remat=norms: the gemm's backward reads the norm's output; it gets a
// recomputed copy (kern.remat, from the same input, shift and scale) made
// right before it, so the forward copy's last use is the forward gemm.
// Without the option the backward reads the forward copy.
// REMAT-LABEL: func @train_step
// REMAT: %[[N:.*]] = kern.norm %[[T:[0-9a-z_]+]] shift %[[S:arg[0-9]+]] scale %[[C:arg[0-9]+]] {
// REMAT-NOT: kern.remat
// REMAT: kern.gemm %[[N]], %{{.*}} :
// REMAT: %[[R:.*]] = kern.norm %[[T]] shift %[[S]] scale %[[C]] {{{.*}}kern.remat
// REMAT-NEXT: kern.vjp "kern.gemm"(%[[R]],
// REMAT: kern.vjp "kern.norm"(%[[T]], %[[S]], %[[C]],
// NOREMAT-LABEL: func @train_step
// NOREMAT: %[[N:.*]] = kern.norm
// NOREMAT-NOT: kern.remat
// NOREMAT: kern.vjp "kern.gemm"(%[[N]],
func.func @forward(%x: tensor<2x2x4x4xf32> {dit.input = "x"}, %shift: tensor<2x8xf32> {dit.input = "shift"},
                   %scale: tensor<2x8xf32> {dit.input = "scale"}, %pw: tensor<8x2x2x2xf32> {dit.param = "pw"},
                   %pb: tensor<8xf32> {dit.param = "pb"}, %w: tensor<8x8xf32> {dit.param = "w"})
    -> tensor<2x2x4x4xf32> {
  %t = kern.patch_embed %x, %pw, %pb : (tensor<2x2x4x4xf32>, tensor<8x2x2x2xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %n = kern.norm %t shift %shift scale %scale {epsilon = 1.0e-06 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %y = kern.gemm %n, %w : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %img = dit.unpatchify %y {grid = array<i64: 2, 2>, patch_size = 2 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x4x4xf32>
  return %img : tensor<2x2x4x4xf32>
}

