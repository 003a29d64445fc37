// kern-fuse-pointwise turns the element-wise ops into generated kernels and
// fuses single-use chains.
// RUN: diffc-opt %s --kern-fuse-pointwise --split-input-file | FileCheck %s

// silu(a + b) · c is one kernel reading a, b and c once; the sum and the
// SiLU are never written.
// CHECK-LABEL: func @chain
// CHECK-SAME: (%[[A:.*]]: tensor<2x4x8xf16>, %[[B:.*]]: tensor<8xf16>, %[[C:.*]]: tensor<2x4x8xf16>)
// CHECK: %[[Y:.*]] = kern.pointwise ins(%[[C]], %[[A]], %[[B]] : tensor<2x4x8xf16>, tensor<2x4x8xf16>, tensor<8xf16>)
// CHECK-NEXT: ^bb0(%[[XC:.*]]: f32, %[[XA:.*]]: f32, %[[XB:.*]]: f32):
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[XA]], %[[XB]]
// CHECK-NEXT: %[[N:.*]] = arith.negf %[[S]]
// CHECK-NEXT: %[[E:.*]] = math.exp %[[N]]
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT: %[[D:.*]] = arith.addf %[[ONE]], %[[E]]
// CHECK-NEXT: %[[SILU:.*]] = arith.divf %[[S]], %[[D]]
// CHECK-NEXT: %[[P:.*]] = arith.mulf %[[SILU]], %[[XC]]
// CHECK-NEXT: kern.yield %[[P]]
// CHECK-NOT: kern.pointwise
// CHECK: return %[[Y]]
func.func @chain(%a: tensor<2x4x8xf16>, %b: tensor<8xf16>, %c: tensor<2x4x8xf16>) -> tensor<2x4x8xf16> {
  %s = dit.add %a, %b : (tensor<2x4x8xf16>, tensor<8xf16>) -> tensor<2x4x8xf16>
  %g = dit.silu %s : tensor<2x4x8xf16>
  %y = dit.mul %g, %c : (tensor<2x4x8xf16>, tensor<2x4x8xf16>) -> tensor<2x4x8xf16>
  return %y : tensor<2x4x8xf16>
}

// -----
// A value with another use stays materialised: two kernels.
// CHECK-LABEL: func @shared
// CHECK: %[[S:.*]] = kern.pointwise
// CHECK: arith.addf
// CHECK: kern.pointwise ins(%[[S]] :
// CHECK: math.erf
// CHECK: return
func.func @shared(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %s = dit.add %a, %b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %g = dit.gelu %s : tensor<4x8xf32>
  return %s, %g : tensor<4x8xf32>, tensor<4x8xf32>
}

// -----
// A producer of a broadcast input (a different shape) is not absorbed: it
// would be recomputed for every row.
// CHECK-LABEL: func @broadcast_producer
// CHECK: %[[G:.*]] = kern.pointwise ins(%{{.*}} : tensor<8xf32>)
// CHECK: math.tanh
// CHECK: kern.pointwise ins(%{{.*}}, %[[G]] : tensor<4x8xf32>, tensor<8xf32>)
func.func @broadcast_producer(%x: tensor<4x8xf32>, %b: tensor<8xf32>) -> tensor<4x8xf32> {
  %g = dit.gelu %b {approximate} : tensor<8xf32>
  %y = dit.add %x, %g : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}

// -----
// A cast becomes an identity body and fuses with its consumer, so the f32
// value is rounded once, at the end; an input used twice is read once.
// CHECK-LABEL: func @cast_and_repeat
// CHECK-SAME: (%[[X:.*]]: tensor<4x8xf32>)
// CHECK: kern.pointwise ins(%[[X]] : tensor<4x8xf32>) {
// CHECK-NEXT: ^bb0(%[[V:.*]]: f32):
// CHECK-NEXT: %[[SQ:.*]] = arith.mulf %[[V]], %[[V]] : f32
// CHECK-NEXT: kern.yield %[[SQ]]
// CHECK-NEXT: } : tensor<4x8xf16>
func.func @cast_and_repeat(%x: tensor<4x8xf32>) -> tensor<4x8xf16> {
  %c = kern.cast %x : (tensor<4x8xf32>) -> tensor<4x8xf16>
  %y = dit.mul %c, %c : (tensor<4x8xf16>, tensor<4x8xf16>) -> tensor<4x8xf16>
  return %y : tensor<4x8xf16>
}

// -----
// Gradient accumulation chains (kern-autodiff's sums) collapse into one
// kernel per chain.
// CHECK-LABEL: func @sum_of_four
// CHECK: kern.pointwise ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} :
// CHECK-COUNT-3: arith.addf
// CHECK-NOT: kern.pointwise
func.func @sum_of_four(%a: tensor<4x8xbf16>, %b: tensor<4x8xbf16>, %c: tensor<4x8xbf16>, %d: tensor<4x8xbf16>) -> tensor<4x8xbf16> {
  %0 = dit.add %a, %b : (tensor<4x8xbf16>, tensor<4x8xbf16>) -> tensor<4x8xbf16>
  %1 = dit.add %0, %c : (tensor<4x8xbf16>, tensor<4x8xbf16>) -> tensor<4x8xbf16>
  %2 = dit.add %1, %d : (tensor<4x8xbf16>, tensor<4x8xbf16>) -> tensor<4x8xbf16>
  return %2 : tensor<4x8xbf16>
}
