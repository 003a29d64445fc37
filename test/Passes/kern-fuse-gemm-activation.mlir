// kern-fuse-gemm-activation moves activations into the GEMM epilogue.
// RUN: diffc-opt %s --kern-fuse-gemm-activation | FileCheck %s

// tanh-GELU after a gemm becomes its act; SiLU likewise; exact GELU too.
// CHECK-LABEL: func @fuse
// CHECK: kern.gemm %{{.*}}, %{{.*}} bias %{{.*}} {act = #kern.act<gelu_tanh>}
// CHECK: kern.gemm %{{.*}}, %{{.*}} {act = #kern.act<silu>}
// CHECK: kern.gemm %{{.*}}, %{{.*}} {act = #kern.act<gelu>}
// CHECK-NOT: dit.gelu
// CHECK-NOT: dit.silu
func.func @fuse(%x: tensor<2x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) {
  %0 = kern.gemm %x, %w bias %b : (tensor<2x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  %1 = dit.gelu %0 {approximate} : tensor<2x8xf32>
  %2 = kern.gemm %x, %w : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32>
  %3 = dit.silu %2 : tensor<2x8xf32>
  %4 = kern.gemm %x, %w : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32>
  %5 = dit.gelu %4 : tensor<2x8xf32>
  return %1, %3, %5 : tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>
}

// An activation of a block input (not a gemm) stays, as does one whose gemm
// result is also used elsewhere.
// CHECK-LABEL: func @keep
// CHECK: dit.silu %arg0
// CHECK: %[[G:.*]] = kern.gemm
// CHECK-NOT: act =
// CHECK: dit.silu %[[G]]
func.func @keep(%x: tensor<2x8xf32>, %w: tensor<8x8xf32>) -> (tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) {
  %0 = dit.silu %x : tensor<2x8xf32>
  %1 = kern.gemm %x, %w : (tensor<2x8xf32>, tensor<8x8xf32>) -> tensor<2x8xf32>
  %2 = dit.silu %1 : tensor<2x8xf32>
  return %0, %1, %2 : tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>
}
