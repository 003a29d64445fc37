// kern-set-precision gives the program its element type, keeping the time
// input and sinusoidal tables in f32.
// RUN: diffc-opt %s --pass-pipeline='builtin.module(func.func(kern-set-precision{dtype=f16}))' | FileCheck %s
// RUN: diffc-opt %s --pass-pipeline='builtin.module(func.func(kern-set-precision{dtype=bf16}))' | FileCheck %s --check-prefix=BF16
// RUN: not diffc-opt %s --pass-pipeline='builtin.module(func.func(kern-set-precision{dtype=f64}))' 2>&1 | FileCheck %s --check-prefix=BAD

// CHECK-LABEL: func @forward
// CHECK-SAME: (%[[T:.*]]: tensor<2xf32> {dit.input = "t"}, %[[W:.*]]: tensor<8x16xf16> {dit.param = "w"}) -> tensor<2x8xf16>
// CHECK: %[[E:.*]] = dit.timestep_embed %[[T]] {dim = 16 : i64} : (tensor<2xf32>) -> tensor<2x16xf32>
// CHECK: %[[C:.*]] = kern.cast %[[E]] : (tensor<2x16xf32>) -> tensor<2x16xf16>
// CHECK: kern.gemm %[[C]], %[[W]] : (tensor<2x16xf16>, tensor<8x16xf16>) -> tensor<2x8xf16>
// BF16: kern.gemm %{{.*}}, %{{.*}} : (tensor<2x16xbf16>, tensor<8x16xbf16>) -> tensor<2x8xbf16>
// BAD: kern-set-precision: dtype must be f32, f16 or bf16, got 'f64'
func.func @forward(%t: tensor<2xf32> {dit.input = "t"}, %w: tensor<8x16xf32> {dit.param = "w"}) -> tensor<2x8xf32> {
  %0 = dit.timestep_embed %t {dim = 16 : i64} : (tensor<2xf32>) -> tensor<2x16xf32>
  %1 = kern.gemm %0, %w : (tensor<2x16xf32>, tensor<8x16xf32>) -> tensor<2x8xf32>
  return %1 : tensor<2x8xf32>
}

// A training program: the per-sample loss stays f32 (its type is inferred
// as f32) and is returned as such, EDM's noise levels stay f32 for the
// loss, and the gradient takes the type of what it differentiates.
// BF16-LABEL: func @train_step
// BF16-SAME: (%{{.*}}: tensor<2x4x8x8xbf16> {dit.input = "raw"}, %{{.*}}: tensor<2x4x8x8xbf16> {dit.input = "x_noisy"}, %{{.*}}: tensor<2x4x8x8xbf16> {dit.input = "x_start"}, %{{.*}}: tensor<2xf32> {dit.input = "sigma"}) -> (tensor<2xf32>, tensor<2x4x8x8xbf16>)
// BF16: dit.edm_loss {{.*}} : (tensor<2x4x8x8xbf16>, tensor<2x4x8x8xbf16>, tensor<2x4x8x8xbf16>, tensor<2xf32>) -> tensor<2xf32>
// BF16-NOT: kern.cast
// BF16: kern.vjp "dit.edm_loss"{{.*}} -> tensor<2x4x8x8xbf16>
func.func @train_step(%raw: tensor<2x4x8x8xf32> {dit.input = "raw"}, %xn: tensor<2x4x8x8xf32> {dit.input = "x_noisy"},
                      %x0: tensor<2x4x8x8xf32> {dit.input = "x_start"}, %s: tensor<2xf32> {dit.input = "sigma"})
    -> (tensor<2xf32>, tensor<2x4x8x8xf32>) {
  %l = dit.edm_loss %raw, %xn, %x0, %s {sigma_data = 0.9 : f64, patch_size = 2 : i64} : (tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2xf32>) -> tensor<2xf32>
  %g = kern.vjp "dit.edm_loss"(%raw, %xn, %x0, %s) {forward_attrs = {sigma_data = 0.9 : f64, patch_size = 2 : i64}, present = array<i64: 0, 1, 2, 3>, grads_of = array<i64: 0>, loss_weight = 5.000000e-01 : f64} : (tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<2xf32>) -> tensor<2x4x8x8xf32>
  return %l, %g : tensor<2xf32>, tensor<2x4x8x8xf32>
}
