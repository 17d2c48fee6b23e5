// RUN: treni-opt %s -split-input-file -verify-diagnostics

// Tests that treni.matvec takes exactly one input row.
func.func @two_rows(%x: tensor<2x64xbf16>, %w: tensor<32x64xbf16>) {
  // expected-error @+1 {{'treni.matvec' op input must be one row, got 2}}
  %y = treni.matvec %x, %w : (tensor<2x64xbf16>, tensor<32x64xbf16>) -> tensor<1x32xbf16>
  return
}

// -----

func.func @features(%x: tensor<1x64xbf16>, %w: tensor<32x48xbf16>) {
  // expected-error @+1 {{'treni.matvec' op input has 64 features but the weight expects 48}}
  %y = treni.matvec %x, %w : (tensor<1x64xbf16>, tensor<32x48xbf16>) -> tensor<1x32xbf16>
  return
}

// -----

func.func @norm_without_epsilon(%x: tensor<1x64xf32>, %w: tensor<32x64xbf16>, %g: tensor<64xbf16>) {
  // expected-error @+1 {{'treni.matvec' op norm and epsilon come together}}
  %y = treni.matvec %x, %w norm %g : (tensor<1x64xf32>, tensor<32x64xbf16>, tensor<64xbf16>) -> tensor<1x32xbf16>
  return
}

// -----

func.func @narrow_norm(%x: tensor<1x64xf32>, %w: tensor<32x64xbf16>, %g: tensor<16xbf16>) {
  // expected-error @+1 {{'treni.matvec' op norm weight has 16 elements but the row has 64}}
  %y = treni.matvec %x, %w norm %g {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<32x64xbf16>, tensor<16xbf16>) -> tensor<1x32xbf16>
  return
}

// -----

func.func @gated_width(%x: tensor<1x64xbf16>, %w: tensor<32x64xbf16>) {
  // expected-error @+1 {{'treni.matvec' op result has 32 columns, expected 16}}
  %y = treni.matvec %x, %w {gated} : (tensor<1x64xbf16>, tensor<32x64xbf16>) -> tensor<1x32xbf16>
  return
}

// -----

func.func @gated_residual(%x: tensor<1x64xbf16>, %w: tensor<32x64xbf16>, %r: tensor<1x16xf32>) {
  // expected-error @+1 {{'treni.matvec' op gated and residual do not combine}}
  %y = treni.matvec %x, %w residual %r {gated} : (tensor<1x64xbf16>, tensor<32x64xbf16>, tensor<1x16xf32>) -> tensor<1x16xf32>
  return
}

// -----

func.func @residual_type(%x: tensor<1x64xbf16>, %w: tensor<32x64xbf16>, %r: tensor<1x32xbf16>) {
  // expected-error @+1 {{'treni.matvec' op residual type 'tensor<1x32xbf16>' differs from the result type 'tensor<1x32xf32>'}}
  %y = treni.matvec %x, %w residual %r : (tensor<1x64xbf16>, tensor<32x64xbf16>, tensor<1x32xbf16>) -> tensor<1x32xf32>
  return
}
