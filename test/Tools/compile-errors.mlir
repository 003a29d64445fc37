// Malformed IR given to diffc compile gets a located diagnostic and a
// non-zero exit, never a crash.
// RUN: not diffc compile %s -o %t.dfx 2>&1 | FileCheck %s
// CHECK: compile-errors.mlir:[[@LINE+3]]:{{[0-9]+}}: error: 'dit.linear' op C1: weight 8x9 expects 9 input features but the input has 8
func.func @forward(%x: tensor<2x8xf32> {dit.input = "x"}, %w: tensor<8x9xf32> {dit.param = "w"})
    -> tensor<2x8xf32> {
  %0 = dit.linear %x, %w : (tensor<2x8xf32>, tensor<8x9xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}
