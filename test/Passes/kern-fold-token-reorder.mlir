// kern-fold-token-reorder folds DiG's scan-order change into the depth-wise
// convolution, so it costs no copy.
// RUN: diffc-opt %s --kern-fold-token-reorder | FileCheck %s

// CHECK-LABEL: func @fold
// CHECK: kern.dwconv %{{.*}}, %{{.*}}, %{{.*}} {from = #dit.scan_order<row_major_reversed>, grid = array<i64: 4, 4>, to = #dit.scan_order<col_major>}
// CHECK-NOT: dit.reorder_tokens
func.func @fold(%x: tensor<2x16x8xf32>, %w: tensor<8x1x3x3xf32>, %b: tensor<8xf32>) -> tensor<2x16x8xf32> {
  %0 = kern.dwconv %x, %w, %b {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<row_major>} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %1 = dit.reorder_tokens %0 {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major_reversed>, to = #dit.scan_order<col_major>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %1 : tensor<2x16x8xf32>
}

// A reorder of anything else remains a permuting copy.
// CHECK-LABEL: func @keep
// CHECK: dit.reorder_tokens
func.func @keep(%x: tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  %0 = dit.reorder_tokens %x {grid = array<i64: 4, 4>, from = #dit.scan_order<row_major>, to = #dit.scan_order<col_major>} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  return %0 : tensor<2x16x8xf32>
}
