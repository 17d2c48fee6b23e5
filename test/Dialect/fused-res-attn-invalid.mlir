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

// Tests that attention_seq1 over more than one query row is rejected.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @seq1_dynamic_rows(%q: tensor<?x64xbf16>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention_seq1' op needs exactly one query row, got ?}}
  %a = treni.attention_seq1 %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, num_splits = 8 : i64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
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
