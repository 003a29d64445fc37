// kern-fold-attention-bias-grad: the qkv product's bias gradient comes from
// the attention backward's column sums, joined by a split backward with
// the bias standing for the split's input; the product's backward keeps
// only its input and weight gradients.
// RUN: diffc-opt %s --pass-pipeline='builtin.module(func.func(kern-fold-attention-bias-grad))' -split-input-file | FileCheck %s

// CHECK-LABEL: func @qkv
// CHECK: %[[A:.*]]:6 = kern.vjp "dit.attention"(%{{.*}}) {column_sums, forward_attrs = {num_heads = 2 : i64, scale = 2.500000e-01 : f64}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : ({{.*}}) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>)
// CHECK-NEXT: %[[DB:.*]] = kern.vjp "dit.split"(%arg2, %[[A]]#3, %[[A]]#4, %[[A]]#5) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<24xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<24xf32>
// CHECK-NEXT: %[[J:.*]] = kern.vjp "dit.split"(%{{.*}}, %[[A]]#0, %[[A]]#1, %[[A]]#2)
// CHECK-NEXT: %[[G:.*]]:2 = kern.vjp "kern.gemm"(%arg0, %arg1, %arg2, %[[J]]) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}, grads_of = array<i64: 0, 1>, present = array<i64: 0, 1, 2>} : ({{.*}}) -> (tensor<2x4x16xf32>, tensor<24x16xf32>)
// CHECK-NEXT: return %[[G]]#0, %[[G]]#1, %[[DB]]
func.func @qkv(%x: tensor<2x4x16xf32>, %w: tensor<24x16xf32>, %b: tensor<24xf32>, %dout: tensor<2x4x8xf32>) -> (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>) {
  %qkv = kern.gemm %x, %w bias %b : (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>) -> tensor<2x4x24xf32>
  %p:3 = dit.split %qkv : (tensor<2x4x24xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %a:3 = kern.vjp "dit.attention"(%p#0, %p#1, %p#2, %dout) {forward_attrs = {num_heads = 2 : i64, scale = 2.500000e-01 : f64}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %j = kern.vjp "dit.split"(%qkv, %a#0, %a#1, %a#2) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x24xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x24xf32>
  %g:3 = kern.vjp "kern.gemm"(%x, %w, %b, %j) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>, tensor<2x4x24xf32>) -> (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>)
  return %g#0, %g#1, %g#2 : tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>
}

// -----
// The joined gradient is read elsewhere too: its sums would be needed
// anyway, and the dense backward keeps its bias gradient.
// CHECK-LABEL: func @joined_gradient_escapes
// CHECK-NOT: column_sums
// CHECK: grads_of = array<i64: 0, 1, 2>
func.func @joined_gradient_escapes(%x: tensor<2x4x16xf32>, %w: tensor<24x16xf32>, %b: tensor<24xf32>, %dout: tensor<2x4x8xf32>) -> (tensor<2x4x16xf32>, tensor<24xf32>, tensor<2x4x24xf32>) {
  %qkv = kern.gemm %x, %w bias %b : (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>) -> tensor<2x4x24xf32>
  %p:3 = dit.split %qkv : (tensor<2x4x24xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %a:3 = kern.vjp "dit.attention"(%p#0, %p#1, %p#2, %dout) {forward_attrs = {num_heads = 2 : i64, scale = 2.500000e-01 : f64}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %j = kern.vjp "dit.split"(%qkv, %a#0, %a#1, %a#2) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x24xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x24xf32>
  %g:2 = kern.vjp "kern.gemm"(%x, %w, %b, %j) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}, grads_of = array<i64: 0, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>, tensor<2x4x24xf32>) -> (tensor<2x4x16xf32>, tensor<24xf32>)
  return %g#0, %g#1, %j : tensor<2x4x16xf32>, tensor<24xf32>, tensor<2x4x24xf32>
}

// -----
// A product with a gated residual: its bias gradient is the sum of the
// gated gradient, not of the incoming one.
// CHECK-LABEL: func @gated_product
// CHECK-NOT: column_sums
func.func @gated_product(%x: tensor<2x4x16xf32>, %w: tensor<24x16xf32>, %b: tensor<24xf32>, %r: tensor<2x4x24xf32>, %gate: tensor<2x24xf32>, %dout: tensor<2x4x8xf32>) -> (tensor<2x4x16xf32>, tensor<24xf32>) {
  %qkv, %z = kern.gemm %x, %w bias %b residual %r gate %gate : (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>, tensor<2x4x24xf32>, tensor<2x24xf32>) -> (tensor<2x4x24xf32>, tensor<2x4x24xf32>)
  %p:3 = dit.split %qkv : (tensor<2x4x24xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %a:3 = kern.vjp "dit.attention"(%p#0, %p#1, %p#2, %dout) {forward_attrs = {num_heads = 2 : i64, scale = 2.500000e-01 : f64}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %j = kern.vjp "dit.split"(%qkv, %a#0, %a#1, %a#2) {forward_attrs = {}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x24xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x24xf32>
  %g:2 = kern.vjp "kern.gemm"(%x, %w, %b, %r, %gate, %z, %j) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1>}, grads_of = array<i64: 0, 2>, num_saved = 1 : i64, present = array<i64: 0, 1, 2, 3, 4>} : (tensor<2x4x16xf32>, tensor<24x16xf32>, tensor<24xf32>, tensor<2x4x24xf32>, tensor<2x24xf32>, tensor<2x4x24xf32>, tensor<2x4x24xf32>) -> (tensor<2x4x16xf32>, tensor<24xf32>)
  return %g#0, %g#1 : tensor<2x4x16xf32>, tensor<24xf32>
}
