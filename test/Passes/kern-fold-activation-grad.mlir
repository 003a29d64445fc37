// kern-fold-activation-grad: the MLP's activation derivative moves into the
// next layer's input-gradient product, and the first layer's backward
// becomes a plain linear layer's (act none, nothing saved, dz incoming).
// RUN: diffc-opt %s --pass-pipeline='builtin.module(func.func(kern-fold-activation-grad))' -split-input-file | FileCheck %s

// CHECK-LABEL: func @mlp
// CHECK: %[[H:.*]], %[[Z:.*]] = kern.gemm
// CHECK: %[[G2:.*]]:2 = kern.vjp "kern.gemm"(%[[H]], %{{.*}}, %{{.*}}, %[[Z]]) {{{.*}}grads_of = array<i64: 0, 1>, input_grad_act = #kern.act<gelu_tanh>, present = array<i64: 0, 1>}
// CHECK: kern.vjp "kern.gemm"(%{{.*}}, %{{.*}}, %{{.*}}, %[[G2]]#0) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}, grads_of = array<i64: 0, 1, 2>, present = array<i64: 0, 1, 2>} : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<2x4x16xf32>) -> (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>)
// CHECK-NOT: num_saved
func.func @mlp(%x: tensor<2x4x8xf32>, %w1: tensor<16x8xf32>, %b1: tensor<16xf32>, %w2: tensor<8x16xf32>, %dy: tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<8x16xf32>) {
  %h, %z = kern.gemm %x, %w1 bias %b1 {act = #kern.act<gelu_tanh>} : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> (tensor<2x4x16xf32>, tensor<2x4x16xf32>)
  %g2:2 = kern.vjp "kern.gemm"(%h, %w2, %dy) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0>}, grads_of = array<i64: 0, 1>, present = array<i64: 0, 1>} : (tensor<2x4x16xf32>, tensor<8x16xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x16xf32>, tensor<8x16xf32>)
  %g1:3 = kern.vjp "kern.gemm"(%x, %w1, %b1, %z, %g2#0) {forward_attrs = {act = #kern.act<gelu_tanh>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}, grads_of = array<i64: 0, 1, 2>, num_saved = 1 : i64, present = array<i64: 0, 1, 2>} : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>)
  return %g1#0, %g1#1, %g1#2, %g2#1 : tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>, tensor<8x16xf32>
}

// -----
// The hidden gradient is read elsewhere too: dh itself must stay.
// CHECK-LABEL: func @hidden_gradient_escapes
// CHECK-NOT: input_grad_act
// CHECK: num_saved = 1
func.func @hidden_gradient_escapes(%x: tensor<2x4x8xf32>, %w1: tensor<16x8xf32>, %w2: tensor<8x16xf32>, %dy: tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x16xf32>) {
  %h, %z = kern.gemm %x, %w1 {act = #kern.act<gelu_tanh>} : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> (tensor<2x4x16xf32>, tensor<2x4x16xf32>)
  %g2 = kern.vjp "kern.gemm"(%h, %w2, %dy) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0>}, grads_of = array<i64: 0>, present = array<i64: 0, 1>} : (tensor<2x4x16xf32>, tensor<8x16xf32>, tensor<2x4x8xf32>) -> tensor<2x4x16xf32>
  %g1 = kern.vjp "kern.gemm"(%x, %w1, %z, %g2) {forward_attrs = {act = #kern.act<gelu_tanh>, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0>}, grads_of = array<i64: 0>, num_saved = 1 : i64, present = array<i64: 0, 1>} : (tensor<2x4x8xf32>, tensor<16x8xf32>, tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x8xf32>
  return %g1, %g2 : tensor<2x4x8xf32>, tensor<2x4x16xf32>
}

// -----
// A producer with a gated residual: its gate gradient needs act(z), which
// stays its own business.
// CHECK-LABEL: func @gated_producer
// CHECK-NOT: input_grad_act
func.func @gated_producer(%x: tensor<2x4x8xf32>, %w1: tensor<8x8xf32>, %g: tensor<2x8xf32>, %w2: tensor<8x8xf32>, %dy: tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>) {
  %h, %z = kern.gemm %x, %w1 residual %x gate %g {act = #kern.act<gelu_tanh>} : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %g2 = kern.vjp "kern.gemm"(%h, %w2, %dy) {forward_attrs = {act = #kern.act<none>, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0>}, grads_of = array<i64: 0>, present = array<i64: 0, 1>} : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %g1:2 = kern.vjp "kern.gemm"(%x, %w1, %x, %g, %z, %g2) {forward_attrs = {act = #kern.act<gelu_tanh>, operandSegmentSizes = array<i32: 1, 1, 0, 1, 1>}, grads_of = array<i64: 0, 4>, num_saved = 1 : i64, present = array<i64: 0, 1, 3, 4>} : (tensor<2x4x8xf32>, tensor<8x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>)
  return %g1#0, %g1#1 : tensor<2x4x8xf32>, tensor<2x8xf32>
}
