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
