// The frontend contract: what every frontend's module must look like. Each
// case breaks one rule and expects the error that names it.
// RUN: diffc-opt %s -split-input-file -verify-diagnostics --dit-verify-frontend-contract

// A well-formed module passes unchanged.
func.func private @blk(%x: tensor<2x4xf32>, %w: tensor<4x4xf32>) -> tensor<2x4xf32> attributes {dit.block_kind = "dense"} {
  %0 = dit.linear %x, %w : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}
func.func @forward(%x: tensor<2x4xf32> {dit.input = "x"}, %w: tensor<4x4xf32> {dit.param = "blocks.0.w"},
                   %e: tensor<3x4x4xf32> {dit.param = "moe.experts.{e}.w"}) -> tensor<2x4xf32> {
  %0 = func.call @blk(%x, %w) : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}

// -----
// Rule 1: there is a @forward.
// expected-error@+1 {{frontend contract rule 1: no public @forward function}}
module {
  func.func private @helper() {
    return
  }
}

// -----
// Rule 1: no other public function.
func.func @forward(%x: tensor<2xf32> {dit.input = "x"}) -> tensor<2xf32> {
  return %x : tensor<2xf32>
}
// expected-error@+1 {{frontend contract rule 1: the only public function must be @forward, found @other}}
func.func @other(%x: tensor<2xf32>) -> tensor<2xf32> {
  return %x : tensor<2xf32>
}

// -----
// Rule 1: private functions are called.
// expected-error@+1 {{frontend contract rule 1: private function @unused is never called}}
func.func private @unused(%x: tensor<2xf32>) -> tensor<2xf32> attributes {dit.block_kind = "dense"} {
  return %x : tensor<2xf32>
}
func.func @forward(%x: tensor<2xf32> {dit.input = "x"}) -> tensor<2xf32> {
  return %x : tensor<2xf32>
}

// -----
// Rule 2: static shapes only.
// expected-error@+1 {{frontend contract rule 2: 'tensor<?x4xf32>' is not a statically shaped tensor}}
func.func @forward(%x: tensor<?x4xf32> {dit.input = "x"}) -> tensor<?x4xf32> {
  return %x : tensor<?x4xf32>
}

// -----
// Rule 2: element types diffc executes.
// expected-error@+1 {{frontend contract rule 2: element type 'f64' is not one of f32, f16, bf16, i32}}
func.func @forward(%x: tensor<4xf64> {dit.input = "x"}) -> tensor<4xf64> {
  return %x : tensor<4xf64>
}

// -----
// Rule 3: every argument is an input or a parameter.
func.func @forward(%x: tensor<4xf32> {dit.input = "x"},
                   // expected-error@+1 {{frontend contract rule 3: argument #1 of @forward must be exactly one of dit.input or dit.param}}
                   %w: tensor<4xf32>) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 3: not both.
// expected-error@+1 {{frontend contract rule 3: argument #0 of @forward must be exactly one of dit.input or dit.param}}
func.func @forward(%x: tensor<4xf32> {dit.input = "x", dit.param = "w"}) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 4: unique parameter names.
func.func @forward(%x: tensor<4xf32> {dit.input = "x"}, %a: tensor<4xf32> {dit.param = "w"},
                   // expected-error@+1 {{frontend contract rule 4: parameter name 'w' is used twice}}
                   %b: tensor<4xf32> {dit.param = "w"}) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 4: unique input names.
func.func @forward(%x: tensor<4xf32> {dit.input = "x"},
                   // expected-error@+1 {{frontend contract rule 4: input name 'x' is used twice}}
                   %y: tensor<4xf32> {dit.input = "x"}) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 4: names are state-dict keys.
func.func @forward(%x: tensor<4xf32> {dit.input = "x"},
                   // expected-error@+1 {{frontend contract rule 4: 'blocks..w' is not a well-formed state-dict key}}
                   %w: tensor<4xf32> {dit.param = "blocks..w"}) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 4: a stacked parameter has a leading expert dimension.
func.func @forward(%x: tensor<4xf32> {dit.input = "x"},
                   // expected-error@+1 {{frontend contract rule 4: stacked parameter 'experts.{e}.w' needs a leading expert dimension}}
                   %w: tensor<4xf32> {dit.param = "experts.{e}.w"}) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 4: a stacked parameter's slices do not collide with other names.
// expected-error@+1 {{frontend contract rule 4: slice 'experts.1.w' of stacked parameter 'experts.{e}.w' is also a parameter of its own}}
func.func @forward(%x: tensor<4xf32> {dit.input = "x"}, %w: tensor<2x4xf32> {dit.param = "experts.{e}.w"},
                   %v: tensor<4xf32> {dit.param = "experts.1.w"}) -> tensor<4xf32> {
  return %x : tensor<4xf32>
}

// -----
// Rule 5: block functions carry their kind.
// expected-error@+1 {{frontend contract rule 5: block function @blk has no dit.block_kind}}
func.func private @blk(%x: tensor<2xf32>) -> tensor<2xf32> {
  return %x : tensor<2xf32>
}
func.func @forward(%x: tensor<2xf32> {dit.input = "x"}) -> tensor<2xf32> {
  %0 = func.call @blk(%x) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----
// Rule 5: names belong to @forward.
// expected-error@+1 {{frontend contract rule 5: argument #0 of block @blk carries a name; only @forward's do}}
func.func private @blk(%x: tensor<2xf32> {dit.param = "w"}) -> tensor<2xf32> attributes {dit.block_kind = "k"} {
  return %x : tensor<2xf32>
}
func.func @forward(%x: tensor<2xf32> {dit.input = "x"}) -> tensor<2xf32> {
  %0 = func.call @blk(%x) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32>
}
