// RUN: treni-opt %s -split-input-file -treni-fuse-qkv-split-bias | FileCheck %s
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-fuse-qkv-split-bias,treni-outline-kernels,treni-plan-buffers})" | FileCheck %s --check-prefix=OFF

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that biased Q/K/V projections, RoPE and the cache write become one
// GEMM over the concatenated weight and bias and one qkv_rope_cache whose
// result feeds the attention.
// CHECK-LABEL: func.func @qkv_bias
// CHECK-SAME:    (%[[N:.+]]: tensor<?x64xbf16>, %[[POS:.+]]: tensor<?xi32>)
// CHECK-DAG:     %[[WQ:.+]] = treni.weight "wq"
// CHECK-DAG:     %[[WK:.+]] = treni.weight "wk"
// CHECK-DAG:     %[[WV:.+]] = treni.weight "wv"
// CHECK-DAG:     %[[BQ:.+]] = treni.weight "bq"
// CHECK-DAG:     %[[BK:.+]] = treni.weight "bk"
// CHECK-DAG:     %[[BV:.+]] = treni.weight "bv"
// CHECK:         %[[W:.+]] = treni.concat %[[WQ]], %[[WK]], %[[WV]] : (tensor<64x64xbf16>, tensor<32x64xbf16>, tensor<32x64xbf16>) -> tensor<128x64xbf16>
// CHECK:         %[[B:.+]] = treni.concat %[[BQ]], %[[BK]], %[[BV]] : (tensor<64xbf16>, tensor<32xbf16>, tensor<32xbf16>) -> tensor<128xbf16>
// CHECK:         %[[QKV:.+]] = treni.linear %[[N]], %[[W]], %[[B]] : (tensor<?x64xbf16>, tensor<128x64xbf16>, tensor<128xbf16>) -> tensor<?x128xbf16>
// CHECK:         %[[Q:.+]] = treni.qkv_rope_cache %[[QKV]], %[[POS]] {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, theta = 1.000000e+04 : f64} : (tensor<?x128xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
// CHECK-NOT:     treni.rope
// CHECK-NOT:     treni.cache_write
// CHECK:         %[[A:.+]] = treni.attention %[[Q]], %[[POS]]
// CHECK:         return %[[A]]
// OFF-LABEL:     func.func @qkv_bias
// OFF-NOT:       treni.qkv_rope_cache
// OFF:           treni.cache_write
func.func @qkv_bias(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %bq = treni.weight "bq" : tensor<64xbf16>
  %bk = treni.weight "bk" : tensor<32xbf16>
  %bv = treni.weight "bv" : tensor<32xbf16>
  %q = treni.linear %n, %wq, %bq : (tensor<?x64xbf16>, tensor<64x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk, %bk : (tensor<?x64xbf16>, tensor<32x64xbf16>, tensor<32xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv, %bv : (tensor<?x64xbf16>, tensor<32x64xbf16>, tensor<32xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that Qwen3's per-head q/k norms and Llama 3 RoPE scaling are carried
// into the fused op (norm weights as operands, epsilon and llama3_* as attributes).
// CHECK-LABEL: func.func @qkv_norm
// CHECK:         %[[W:.+]] = treni.concat
// CHECK-NOT:     treni.concat
// CHECK:         %[[QKV:.+]] = treni.linear %{{.+}}, %[[W]] : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
// CHECK:         %[[Q:.+]] = treni.qkv_rope_cache %[[QKV]], %{{.+}}, %{{.+}}, %{{.+}} {cache = @kv, epsilon = 9.9999999999999995E-7 : f64, head_dim = 16 : i64, layer = 0 : i64, llama3_factor = 3.200000e+01 : f64, llama3_high_freq_factor = 4.000000e+00 : f64, llama3_low_freq_factor = 1.000000e+00 : f64, llama3_original_max_position = 8192 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, theta = 5.000000e+05 : f64} : (tensor<?x128xbf16>, tensor<?xi32>, tensor<16xbf16>, tensor<16xbf16>) -> tensor<?x64xbf16>
// CHECK-NOT:     treni.rms_norm
// CHECK:         treni.attention %[[Q]]
func.func @qkv_norm(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %qn = treni.weight "qn" : tensor<16xbf16>
  %kn = treni.weight "kn" : tensor<16xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qq = treni.rms_norm %q, %qn {epsilon = 1.0e-6 : f64} : (tensor<?x64xbf16>, tensor<16xbf16>) -> tensor<?x64xbf16>
  %kk = treni.rms_norm %k, %kn {epsilon = 1.0e-6 : f64} : (tensor<?x32xbf16>, tensor<16xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %qq, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 1.0 : f64, llama3_high_freq_factor = 4.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %kk, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 1.0 : f64, llama3_high_freq_factor = 4.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that projections of different inputs are left alone.
// CHECK-LABEL: func.func @qkv_two_inputs
// CHECK-NOT:     treni.qkv_rope_cache
// CHECK:         treni.cache_write
func.func @qkv_two_inputs(%n: tensor<?x64xbf16>, %m: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %m, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that a layer where only q has a bias is left alone.
// CHECK-LABEL: func.func @qkv_some_bias
// CHECK-NOT:     treni.qkv_rope_cache
// CHECK:         treni.cache_write
func.func @qkv_some_bias(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %bq = treni.weight "bq" : tensor<64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %q = treni.linear %n, %wq, %bq : (tensor<?x64xbf16>, tensor<64x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that a layer whose k is not rotated before the cache write (no
// rope/cache_write pattern) is left alone.
// CHECK-LABEL: func.func @qkv_no_k_rope
// CHECK-NOT:     treni.qkv_rope_cache
// CHECK:         treni.cache_write
func.func @qkv_no_k_rope(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  treni.cache_write %k, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that a rotated k with a second user is left alone.
// CHECK-LABEL: func.func @qkv_extra_user
// CHECK-NOT:     treni.qkv_rope_cache
// CHECK:         treni.cache_write
func.func @qkv_extra_user(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> (tensor<?x64xbf16>, tensor<?x32xbf16>) {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a, %kr : tensor<?x64xbf16>, tensor<?x32xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that unit_offset q/k norms (Qwen3.5) are left alone:
// qkv_norm_rope_cache applies the norm weights as they are.
// CHECK-LABEL: func.func @qkv_unit_offset_norm
// CHECK-NOT:     treni.qkv_rope_cache
// CHECK:         treni.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, unit_offset}
// CHECK:         treni.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, unit_offset}
// CHECK:         treni.cache_write
func.func @qkv_unit_offset_norm(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %qn = treni.weight "qn" : tensor<16xbf16>
  %kn = treni.weight "kn" : tensor<16xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qq = treni.rms_norm %q, %qn {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<?x64xbf16>, tensor<16xbf16>) -> tensor<?x64xbf16>
  %kk = treni.rms_norm %k, %kn {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<?x32xbf16>, tensor<16xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %qq, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %kk, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that a partial RoPE (rotary_dim < head_dim, Qwen3.5) is left alone:
// qkv_rope_cache rotates whole heads.
// CHECK-LABEL: func.func @qkv_partial_rotary
// CHECK-NOT:     treni.qkv_rope_cache
// CHECK:         treni.rope %{{.+}}, %{{.+}} {head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 1.000000e+04 : f64}
// CHECK:         treni.rope %{{.+}}, %{{.+}} {head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 1.000000e+04 : f64}
// CHECK:         treni.cache_write
// OFF-LABEL:     func.func @qkv_partial_rotary
// OFF:           treni.rope %{{.+}}, %{{.+}} {head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 1.000000e+04 : f64}
func.func @qkv_partial_rotary(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, rotary_dim = 8 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that a rotary_dim spelling out the whole head fuses like no
// rotary_dim at all, even when only q says so.
// CHECK-LABEL: func.func @qkv_full_rotary
// CHECK:         treni.qkv_rope_cache %{{.+}}, %{{.+}} {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, theta = 1.000000e+04 : f64}
// CHECK-NOT:     treni.rope
func.func @qkv_full_rotary(%n: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %wq = treni.weight "wq" : tensor<64x64xbf16>
  %wk = treni.weight "wk" : tensor<32x64xbf16>
  %wv = treni.weight "wv" : tensor<32x64xbf16>
  %q = treni.linear %n, %wq : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %k = treni.linear %n, %wk : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %v = treni.linear %n, %wv : (tensor<?x64xbf16>, tensor<32x64xbf16>) -> tensor<?x32xbf16>
  %qr = treni.rope %q, %pos {head_dim = 16 : i64, rotary_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
  treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  %a = treni.attention %qr, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}
