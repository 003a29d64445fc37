// Folds and canonicalisation patterns of the dit dialect.
// RUN: diffc-opt %s -canonicalize | FileCheck %s

// Modulation by zero shift and zero scale is the identity.
// CHECK-LABEL: func @modulate_zero
// CHECK-SAME: (%[[X:.*]]: tensor<2x4x8xf32>)
// CHECK-NOT: dit.modulate
// CHECK: return %[[X]]
func.func @modulate_zero(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %z = arith.constant dense<0.0> : tensor<2x8xf32>
  %0 = dit.modulate %x, %z, %z : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// A non-zero scale keeps the modulation.
// CHECK-LABEL: func @modulate_nonzero
// CHECK: dit.modulate
func.func @modulate_nonzero(%x: tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  %z = arith.constant dense<0.0> : tensor<2x8xf32>
  %o = arith.constant dense<1.0> : tensor<2x8xf32>
  %0 = dit.modulate %x, %z, %o : (tensor<2x4x8xf32>, tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// A split into one part is its input.
// CHECK-LABEL: func @split_one
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK-NOT: dit.split
// CHECK: return %[[X]]
func.func @split_one(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = dit.split %x : (tensor<2x8xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// Reordering to the order the tokens are already in is the identity.
// CHECK-LABEL: func @reorder_same
// CHECK-SAME: (%[[X:.*]]: tensor<2x16x8xf32>)
// CHECK-NOT: dit.reorder_tokens
// CHECK: return %[[X]]
func.func @reorder_same(%x: tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  %0 = dit.reorder_tokens %x {grid = array<i64: 4, 4>, from = #dit.scan_order<col_major>, to = #dit.scan_order<col_major>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %0 : tensor<2x16x8xf32>
}

// Two consecutive order changes compose into one.
// CHECK-LABEL: func @reorder_compose
// CHECK: %[[R:.*]] = dit.reorder_tokens %{{.*}} {from = #dit.scan_order<row_major>, grid = array<i64: 4, 4>, to = #dit.scan_order<col_major_reversed>}
// CHECK-NOT: dit.reorder_tokens
// CHECK: return %[[R]]
func.func @reorder_compose(%x: tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  %0 = dit.reorder_tokens %x {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<row_major_reversed>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %1 = dit.reorder_tokens %0 {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major_reversed>, to = #dit.scan_order<col_major_reversed>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %1 : tensor<2x16x8xf32>
}

// DiG's four order changes over a period of four blocks cancel entirely when
// nothing happens between them.
// CHECK-LABEL: func @reorder_cycle
// CHECK-SAME: (%[[X:.*]]: tensor<2x16x8xf32>)
// CHECK-NOT: dit.reorder_tokens
// CHECK: return %[[X]]
func.func @reorder_cycle(%x: tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  %0 = dit.reorder_tokens %x {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<row_major_reversed>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %1 = dit.reorder_tokens %0 {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major_reversed>, to = #dit.scan_order<col_major>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %2 = dit.reorder_tokens %1 {grid = array<i64: 4, 4>, from = #dit.scan_order<col_major>, to = #dit.scan_order<col_major_reversed>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %3 = dit.reorder_tokens %2 {grid = array<i64: 4, 4>, from = #dit.scan_order<col_major_reversed>, to = #dit.scan_order<row_major>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %3 : tensor<2x16x8xf32>
}

// Orders on different grids do not compose.
// CHECK-LABEL: func @reorder_other_grid
// CHECK-COUNT-2: dit.reorder_tokens
func.func @reorder_other_grid(%x: tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  %0 = dit.reorder_tokens %x {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<row_major_reversed>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %1 = dit.reorder_tokens %0 {grid = array<i64: 2, 8>, from = #dit.scan_order<row_major_reversed>, to = #dit.scan_order<row_major>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %1 : tensor<2x16x8xf32>
}
