// kern-fuse-moe-shared-expert adds DiT-MoE's shared expert inside the MoE.
// RUN: diffc-opt %s --kern-fuse-moe-shared-expert | FileCheck %s

// routed + shared on the same input becomes one moe with shared weights,
// in either operand order of the add.
// CHECK-LABEL: func @fuse
// CHECK-SAME: (%[[U:.*]]: tensor<2x4x8xf32>, %[[R:.*]]: tensor<4x8xf32>, %[[G:.*]]: tensor<4x16x8xf32>, %[[D:.*]]: tensor<4x8x16xf32>, %[[SG:.*]]: tensor<12x8xf32>, %[[SD:.*]]: tensor<8x12xf32>)
// CHECK: kern.moe %[[U]], %[[R]] experts(%[[G]], %[[G]], %[[D]]) shared(%[[SG]], %[[SG]], %[[SD]])
// CHECK: kern.moe %[[U]], %[[R]] experts(%[[G]], %[[G]], %[[D]]) shared(%[[SG]], %[[SG]], %[[SD]])
// CHECK-NOT: kern.swiglu
// CHECK-NOT: dit.add
func.func @fuse(%u: tensor<2x4x8xf32>, %r: tensor<4x8xf32>, %g: tensor<4x16x8xf32>, %d: tensor<4x8x16xf32>,
                %sg: tensor<12x8xf32>, %sd: tensor<8x12xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  %0 = kern.moe %u, %r experts(%g, %g, %d) {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>, activation = #dit.activation<swiglu>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x4x8xf32>
  %1 = kern.swiglu %u, %sg up %sg down %sd : (tensor<2x4x8xf32>, tensor<12x8xf32>, tensor<12x8xf32>, tensor<8x12xf32>) -> tensor<2x4x8xf32>
  %2 = dit.add %0, %1 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %3 = kern.moe %u, %r experts(%g, %g, %d) {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>, activation = #dit.activation<swiglu>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x4x8xf32>
  %4 = kern.swiglu %u, %sg up %sg down %sd : (tensor<2x4x8xf32>, tensor<12x8xf32>, tensor<12x8xf32>, tensor<8x12xf32>) -> tensor<2x4x8xf32>
  %5 = dit.add %4, %3 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %2, %5 : tensor<2x4x8xf32>, tensor<2x4x8xf32>
}

// A SwiGLU on another input is not a shared expert of this MoE.
// CHECK-LABEL: func @other_input
// CHECK: kern.swiglu
// CHECK: dit.add
func.func @other_input(%u: tensor<2x4x8xf32>, %v: tensor<2x4x8xf32>, %r: tensor<4x8xf32>, %g: tensor<4x16x8xf32>, %d: tensor<4x8x16xf32>,
                       %sg: tensor<12x8xf32>, %sd: tensor<8x12xf32>) -> tensor<2x4x8xf32> {
  %0 = kern.moe %u, %r experts(%g, %g, %d) {routing = #dit.token_choice<top_k = 2, normalize = false, balance_coef = 0.01>, activation = #dit.activation<swiglu>, weight_layout = #dit.weight_layout<out_in>} : (tensor<2x4x8xf32>, tensor<4x8xf32>, tensor<4x16x8xf32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<2x4x8xf32>
  %1 = kern.swiglu %v, %sg up %sg down %sd : (tensor<2x4x8xf32>, tensor<12x8xf32>, tensor<12x8xf32>, tensor<8x12xf32>) -> tensor<2x4x8xf32>
  %2 = dit.add %0, %1 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  return %2 : tensor<2x4x8xf32>
}
