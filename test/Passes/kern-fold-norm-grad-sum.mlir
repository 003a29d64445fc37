// kern-fold-norm-grad-sum: the residual stream's gradient sum moves into the
// norm backward that meets it (input_grad_addend, the addend last).
// RUN: diffc-opt %s --pass-pipeline='builtin.module(func.func(kern-fold-norm-grad-sum))' -split-input-file | FileCheck %s

// The addend is defined before the norm backward: the new backward stands
// in the old one's place, and the sum is gone.
// CHECK-LABEL: func @residual_stream
// CHECK: %[[G:.*]]:3 = kern.vjp "kern.norm"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[R:[a-z0-9]+]]) {{{.*}}input_grad_addend{{.*}}} : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>)
// CHECK-NOT: dit.add
// CHECK: return %[[G]]#0, %[[G]]#1, %[[G]]#2
func.func @residual_stream(%x: tensor<2x4x8xf32>, %shift: tensor<2x8xf32>, %scale: tensor<2x8xf32>, %dy: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) {
  %g:3 = kern.vjp "kern.norm"(%x, %shift, %scale, %dy) {forward_attrs = {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>, operandSegmentSizes = array<i32: 1, 0, 0, 1, 1, 0>}, grads_of = array<i64: 0, 3, 4>, present = array<i64: 0, 3, 4>} : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>)
  %sum = dit.add %r, %g#0 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %sum, %g#1, %g#2 : tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>
}

// -----
// The addend comes later and nothing reads the old backward in between:
// the new backward stands where the sum stood.
// CHECK-LABEL: func @addend_later
// CHECK: %[[A:.*]] = dit.mul
// CHECK-NEXT: %[[G:.*]] = kern.vjp "kern.norm"(%{{.*}}, %{{.*}}, %[[A]]) {{{.*}}input_grad_addend
// CHECK-NEXT: return %[[G]]
func.func @addend_later(%x: tensor<2x4x8xf32>, %dy: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %g = kern.vjp "kern.norm"(%x, %dy) {forward_attrs = {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>, operandSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0>}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %a = dit.mul %r, %r : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %sum = dit.add %g, %a : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %sum : tensor<2x4x8xf32>
}

// -----
// The addend comes later and the old backward's shift gradient is read
// before it: the sum stays.
// CHECK-LABEL: func @read_between
// CHECK-NOT: input_grad_addend
// CHECK: dit.add
func.func @read_between(%x: tensor<2x4x8xf32>, %shift: tensor<2x8xf32>, %dy: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>) {
  %g:2 = kern.vjp "kern.norm"(%x, %shift, %dy) {forward_attrs = {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>, operandSegmentSizes = array<i32: 1, 0, 0, 1, 0, 0>}, grads_of = array<i64: 0, 3>, present = array<i64: 0, 3>} : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x8xf32>)
  %s = dit.mul %g#1, %g#1 : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %a = dit.mul %r, %r : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %sum = dit.add %g#0, %a : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %sum, %s : tensor<2x4x8xf32>, tensor<2x8xf32>
}

// -----
// The input gradient is read elsewhere too, or the sum broadcasts: both
// sums stay.
// CHECK-LABEL: func @not_foldable
// CHECK-NOT: input_grad_addend
// CHECK: dit.add
// CHECK: dit.add
func.func @not_foldable(%x: tensor<2x4x8xf32>, %dy: tensor<2x4x8xf32>, %r: tensor<2x4x8xf32>, %p: tensor<4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %g = kern.vjp "kern.norm"(%x, %dy) {forward_attrs = {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>, operandSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0>}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %sum = dit.add %g, %r : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %h = kern.vjp "kern.norm"(%x, %dy) {forward_attrs = {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>, operandSegmentSizes = array<i32: 1, 0, 0, 0, 0, 0>}, grads_of = array<i64: 0>, present = array<i64: 0>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %bsum = dit.add %h, %p : (tensor<2x4x8xf32>, tensor<4x8xf32>) -> tensor<2x4x8xf32>
  return %sum, %g, %bsum : tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>
}
