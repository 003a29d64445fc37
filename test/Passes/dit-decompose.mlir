// dit-decompose expands dit.mlp into its two products and the activation.
// RUN: diffc-opt %s --dit-decompose | FileCheck %s

// A GELU(tanh) MLP with biases becomes linear, tanh-GELU, linear.
// CHECK-LABEL: func @mlp_gelu_tanh
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>, %[[W1:.*]]: tensor<32x8xf32>, %[[B1:.*]]: tensor<32xf32>, %[[W2:.*]]: tensor<8x32xf32>, %[[B2:.*]]: tensor<8xf32>)
// CHECK: %[[H:.*]] = dit.linear %[[X]], %[[W1]] bias %[[B1]]
// CHECK: %[[A:.*]] = dit.gelu %[[H]] {approximate}
// CHECK: %[[Y:.*]] = dit.linear %[[A]], %[[W2]] bias %[[B2]]
// CHECK: return %[[Y]]
// CHECK-NOT: dit.mlp
func.func @mlp_gelu_tanh(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %b1: tensor<32xf32>, %w2: tensor<8x32xf32>, %b2: tensor<8xf32>) -> tensor<2x8xf32> {
  %0 = dit.mlp %x, %w1, %w2 biases %b1, %b2 {activation = #dit.activation<gelu_tanh>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xf32>, tensor<32xf32>, tensor<8xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// The timestep embedder's SiLU MLP without biases keeps them absent.
// CHECK-LABEL: func @mlp_silu
// CHECK: %[[H:.*]] = dit.linear %{{.*}}, %{{.*}} :
// CHECK: %[[A:.*]] = dit.silu %[[H]]
// CHECK: dit.linear %[[A]], %{{.*}} :
func.func @mlp_silu(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %w2: tensor<8x32xf32>) -> tensor<2x8xf32> {
  %0 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<silu>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// Exact GELU stays exact.
// CHECK-LABEL: func @mlp_gelu
// CHECK: dit.gelu %{{.*}} : tensor<2x32xf32>
// CHECK-NOT: approximate
func.func @mlp_gelu(%x: tensor<2x8xf32>, %w1: tensor<32x8xf32>, %w2: tensor<8x32xf32>) -> tensor<2x8xf32> {
  %0 = dit.mlp %x, %w1, %w2 {activation = #dit.activation<gelu>} : (tensor<2x8xf32>, tensor<32x8xf32>, tensor<8x32xf32>) -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}
