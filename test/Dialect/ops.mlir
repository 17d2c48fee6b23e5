// RUN: treni-opt %s | treni-opt | FileCheck %s
// RUN: treni-opt %s -mlir-print-op-generic | treni-opt | FileCheck %s

// Tests that every treni op round-trips through the custom and generic forms.

// CHECK: treni.kv_cache @kv {head_dim = 16 : i64, num_kv_heads = 2 : i64, num_layers = 1 : i64} : f32
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32

// CHECK-LABEL: func.func @layer
func.func @layer(%ids: tensor<?xi32>, %pos: tensor<?xi32>) -> tensor<1x128xf32> {
  // CHECK: %[[EMB:.+]] = treni.weight "model.embed_tokens.weight" : tensor<128x64xf32>
  %emb = treni.weight "model.embed_tokens.weight" : tensor<128x64xf32>
  %ln = treni.weight "ln" : tensor<64xf32>
  %wq = treni.weight "wq" : tensor<64x64xf32>
  %bq = treni.weight "bq" : tensor<64xf32>
  %wk = treni.weight "wk" : tensor<32x64xf32>
  %qn = treni.weight "qn" : tensor<16xf32>
  // CHECK: %[[H:.+]] = treni.embedding %{{.+}}, %[[EMB]] : (tensor<?xi32>, tensor<128x64xf32>) -> tensor<?x64xf32>
  %h = treni.embedding %ids, %emb : (tensor<?xi32>, tensor<128x64xf32>) -> tensor<?x64xf32>
  // CHECK: treni.rms_norm %[[H]], %{{.+}} {epsilon = 9.9999999999999995E-7 : f64}
  %n = treni.rms_norm %h, %ln {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  // CHECK: treni.linear %{{.+}}, %{{.+}}, %{{.+}} : (tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  %q = treni.linear %n, %wq, %bq : (tensor<?x64xf32>, tensor<64x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  // CHECK: treni.linear %{{.+}}, %{{.+}} : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
  %k = treni.linear %n, %wk : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
  // CHECK: treni.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64} : (tensor<?x64xf32>, tensor<16xf32>)
  %qnorm = treni.rms_norm %q, %qn {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<16xf32>) -> tensor<?x64xf32>
  // CHECK: treni.rope %{{.+}}, %{{.+}} {head_dim = 16 : i64, llama3_factor = 3.200000e+01 : f64, llama3_high_freq_factor = 4.000000e+00 : f64, llama3_low_freq_factor = 1.000000e+00 : f64, llama3_original_max_position = 8192 : i64, theta = 5.000000e+05 : f64}
  %qr = treni.rope %qnorm, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 1.0 : f64, llama3_high_freq_factor = 4.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xf32>, tensor<?xi32>) -> tensor<?x32xf32>
  // CHECK: treni.cache_write %{{.+}}, %{{.+}}, %{{.+}} {cache = @kv, layer = 0 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  treni.cache_write %kr, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  // CHECK: treni.attention %{{.+}}, %{{.+}} {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64}
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  // CHECK: treni.silu %{{.+}} : tensor<?x64xf32>
  %s = treni.silu %a : tensor<?x64xf32>
  // CHECK: treni.mul %{{.+}}, %{{.+}} : tensor<?x64xf32>
  %m = treni.mul %s, %a : tensor<?x64xf32>
  // CHECK: %[[WQK:.+]] = treni.concat %{{.+}}, %{{.+}} : (tensor<64x64xf32>, tensor<32x64xf32>) -> tensor<96x64xf32>
  %wqk = treni.concat %wq, %wk : (tensor<64x64xf32>, tensor<32x64xf32>) -> tensor<96x64xf32>
  // CHECK: treni.concat %[[WQK]], %{{.+}} : (tensor<96x64xf32>, tensor<64x64xf32>) -> tensor<160x64xf32>
  %wqkq = treni.concat %wqk, %wq : (tensor<96x64xf32>, tensor<64x64xf32>) -> tensor<160x64xf32>
  // CHECK: treni.concat %{{.+}}, %{{.+}} : (tensor<64xf32>, tensor<64xf32>) -> tensor<128xf32>
  %bqq = treni.concat %bq, %bq : (tensor<64xf32>, tensor<64xf32>) -> tensor<128xf32>
  %wqkv2 = treni.concat %wq, %wk, %wk : (tensor<64x64xf32>, tensor<32x64xf32>, tensor<32x64xf32>) -> tensor<128x64xf32>
  // CHECK: treni.qkv_rope_cache %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} {cache = @kv, epsilon = 9.9999999999999995E-7 : f64, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, theta = 1.000000e+04 : f64} : (tensor<?x128xf32>, tensor<?xi32>, tensor<16xf32>, tensor<16xf32>) -> tensor<?x64xf32>
  %qkvRows = treni.linear %n, %wqkv2 : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
  %qf = treni.qkv_rope_cache %qkvRows, %pos, %qn, %qn {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64, epsilon = 1.0e-6 : f64} : (tensor<?x128xf32>, tensor<?xi32>, tensor<16xf32>, tensor<16xf32>) -> tensor<?x64xf32>
  // CHECK: treni.silu_mul %{{.+}} : (tensor<?x64xf32>) -> tensor<?x32xf32>
  %sm = treni.silu_mul %a : (tensor<?x64xf32>) -> tensor<?x32xf32>
  // CHECK: treni.add %{{.+}}, %{{.+}} : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  %r = treni.add %m, %h : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  // CHECK: treni.take_last %{{.+}} : (tensor<?x64xf32>) -> tensor<1x64xf32>
  %last = treni.take_last %r : (tensor<?x64xf32>) -> tensor<1x64xf32>
  // CHECK: treni.linear %{{.+}}, %[[EMB]] : (tensor<1x64xf32>, tensor<128x64xf32>) -> tensor<1x128xf32>
  %logits = treni.linear %last, %emb : (tensor<1x64xf32>, tensor<128x64xf32>) -> tensor<1x128xf32>
  // CHECK: treni.kernel "add"(%{{.+}}, %{{.+}}) {constants = {dim = 128 : i64}, origin = "treni.add"} : (tensor<1x128xf32>, tensor<1x128xf32>) -> tensor<1x128xf32>
  %sum = treni.kernel "add" (%logits, %logits) {constants = {dim = 128 : i64}, origin = "treni.add"} : (tensor<1x128xf32>, tensor<1x128xf32>) -> tensor<1x128xf32>
  return %sum : tensor<1x128xf32>
}

// Tests that the treni.one_sequence mark of a function round-trips.
// CHECK-LABEL: func.func @one_sequence
// CHECK-SAME:    attributes {treni.one_sequence}
func.func @one_sequence() attributes {treni.one_sequence} {
  return
}

// Tests that Qwen3.5's unit_offset norm and partial RoPE keep their
// attributes through both forms.
// CHECK-LABEL: func.func @qwen3_5_attributes
func.func @qwen3_5_attributes(%x: tensor<?x64xf32>, %w: tensor<16xf32>, %pos: tensor<?xi32>) -> tensor<?x64xf32> {
  // CHECK: treni.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, unit_offset} : (tensor<?x64xf32>, tensor<16xf32>) -> tensor<?x64xf32>
  %n = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<?x64xf32>, tensor<16xf32>) -> tensor<?x64xf32>
  // CHECK: treni.rope %{{.+}}, %{{.+}} {head_dim = 16 : i64, rotary_dim = 4 : i64, theta = 1.000000e+07 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  %r = treni.rope %n, %pos {head_dim = 16 : i64, rotary_dim = 4 : i64, theta = 1.0e7 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}
