// kern-autodiff refuses an op it has no backward rule for, with its location.
// RUN: diffc-opt %s -split-input-file --kern-autodiff='objective=rf' -verify-diagnostics

// kern.norm's residual form is made after the backward exists.
func.func @forward(%x: tensor<2x2x4x4xf32> {dit.input = "x"}, %g: tensor<2x8xf32> {dit.input = "g"},
                   %pw: tensor<8x2x2x2xf32> {dit.param = "pw"}, %pb: tensor<8xf32> {dit.param = "pb"})
    -> tensor<2x2x4x4xf32> {
  %t = kern.patch_embed %x, %pw, %pb : (tensor<2x2x4x4xf32>, tensor<8x2x2x2xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  // expected-error@+1 {{kern-autodiff: no VJP rule for kern.norm with a residual (kern-fuse-residual-norm forms it after kern-autodiff)}}
  %h:2 = kern.norm %t residual %t residual_gate %g {epsilon = 1.0e-6 : f64, group_size = 8 : i64, kind = #kern.norm<layer>} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>)
  %img = dit.unpatchify %h#0 {grid = array<i64: 2, 2>, patch_size = 2 : i64} : (tensor<2x4x8xf32>) -> tensor<2x2x4x4xf32>
  return %img : tensor<2x2x4x4xf32>
}
