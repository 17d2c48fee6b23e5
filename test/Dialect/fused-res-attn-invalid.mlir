// RUN: treni-opt %s -split-input-file -verify-diagnostics

// Tests that a residual_norm whose weight is narrower than the row is rejected.
func.func @residual_norm_per_head(%h: tensor<?x64xf32>, %o: tensor<?x64xbf16>, %w: tensor<16xbf16>) {
  // expected-error @+1 {{'treni.residual_norm' op weight has 16 elements, expected the row width 64}}
  %s, %n = treni.residual_norm %h, %o, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<?x64xbf16>, tensor<16xbf16>) -> (tensor<?x64xf32>, tensor<?x64xbf16>)
  return
}

// -----

// Tests that residual_norm operands of different shapes are rejected.
func.func @residual_norm_shapes(%h: tensor<?x64xf32>, %o: tensor<2x64xbf16>, %w: tensor<64xbf16>) {
  // expected-error @+1 {{'treni.residual_norm' op residual, branch, sum and normed must share a shape}}
  %s, %n = treni.residual_norm %h, %o, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<2x64xbf16>, tensor<64xbf16>) -> (tensor<?x64xf32>, tensor<?x64xbf16>)
  return
}

// -----

// Tests that attention_seq1 needs one position per query row.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @seq1_positions(%q: tensor<2x64xbf16>, %pos: tensor<3xi32>) {
  // expected-error @+1 {{'treni.attention_seq1' op needs one position per query row}}
  %a = treni.attention_seq1 %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, num_splits = 8 : i64} : (tensor<2x64xbf16>, tensor<3xi32>) -> tensor<2x64xbf16>
  return
}

// -----

// Tests that attention_seq1 with zero splits is rejected.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @seq1_zero_splits(%q: tensor<1x64xbf16>, %pos: tensor<1xi32>) {
  // expected-error @+1 {{'treni.attention_seq1' op attribute 'num_splits' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %a = treni.attention_seq1 %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, num_splits = 0 : i64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
  return
}

// -----

// Tests that attention_flash over f32 activations is rejected (the kernel
// multiplies 16-bit values on tensor cores).
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @flash_f32(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention_flash' op needs a bf16 or f16 query, got 'f32'}}
  %a = treni.attention_flash %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that attention_flash with a head dim the kernel lacks is rejected.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 24 : i64} : bf16
func.func @flash_head_dim(%q: tensor<?x96xbf16>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention_flash' op head_dim 24 is not a multiple of 16 in [16, 128]}}
  %a = treni.attention_flash %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 24 : i64, scale = 0.25 : f64} : (tensor<?x96xbf16>, tensor<?xi32>) -> tensor<?x96xbf16>
  return
}
