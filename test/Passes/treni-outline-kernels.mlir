// RUN: treni-opt %s -split-input-file -treni-outline-kernels | FileCheck %s

// Tests that treni.embedding becomes the "embedding" kernel, specialised on the
// table's vocabulary size and width, and that the weight feeding it, the
// function arguments and the return are left alone.
// CHECK-LABEL: func.func @embedding
// CHECK-SAME:    (%[[IDS:.+]]: tensor<?xi32>)
// CHECK:         %[[TABLE:.+]] = treni.weight "embed" : tensor<128x64xf32>
// CHECK-NOT:     treni.embedding
// CHECK:         %[[H:.+]] = treni.kernel "embedding"(%[[IDS]], %[[TABLE]]) {constants = {dim = 64 : i64, vocab = 128 : i64}, origin = "treni.embedding"} : (tensor<?xi32>, tensor<128x64xf32>) -> tensor<?x64xf32>
// CHECK:         return %[[H]] : tensor<?x64xf32>
func.func @embedding(%ids: tensor<?xi32>) -> tensor<?x64xf32> {
  %table = treni.weight "embed" : tensor<128x64xf32>
  %h = treni.embedding %ids, %table : (tensor<?xi32>, tensor<128x64xf32>) -> tensor<?x64xf32>
  return %h : tensor<?x64xf32>
}

// -----

// Tests that a full-width treni.rms_norm becomes "rms_norm" with group = dim
// and the epsilon carried over as f64.
// CHECK-LABEL: func.func @rms_norm
// CHECK-SAME:    (%[[X:.+]]: tensor<?x64xbf16>, %[[W:.+]]: tensor<64xbf16>)
// CHECK-NOT:     treni.rms_norm
// CHECK:         %[[Y:.+]] = treni.kernel "rms_norm"(%[[X]], %[[W]]) {constants = {dim = 64 : i64, epsilon = 9.9999999999999995E-7 : f64, group = 64 : i64}, origin = "treni.rms_norm"} : (tensor<?x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
// CHECK:         return %[[Y]]
func.func @rms_norm(%x: tensor<?x64xbf16>, %w: tensor<64xbf16>) -> tensor<?x64xbf16> {
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Tests that a per-head treni.rms_norm (Qwen3's q/k norm) keeps its group
// size apart from the row width.
// CHECK-LABEL: func.func @rms_norm_per_head
// CHECK:         treni.kernel "rms_norm"(%{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, epsilon = 9.9999997473787516E-6 : f64, group = 16 : i64}, origin = "treni.rms_norm"} : (tensor<?x64xf16>, tensor<16xf16>) -> tensor<?x64xf16>
func.func @rms_norm_per_head(%x: tensor<?x64xf16>, %w: tensor<16xf16>) -> tensor<?x64xf16> {
  %y = treni.rms_norm %x, %w {epsilon = 9.9999997473787516E-6 : f64} : (tensor<?x64xf16>, tensor<16xf16>) -> tensor<?x64xf16>
  return %y : tensor<?x64xf16>
}

// -----

// Tests that treni.linear becomes "gemm" with n = outputs, k = inputs, and
// bias = true with the bias as third operand, or bias = false without it.
// CHECK-LABEL: func.func @linear
// CHECK-SAME:    (%[[X:.+]]: tensor<?x64xf32>, %[[W:.+]]: tensor<32x64xf32>, %[[B:.+]]: tensor<32xf32>)
// CHECK-NOT:     treni.linear
// CHECK:         %[[Q:.+]] = treni.kernel "gemm"(%[[X]], %[[W]], %[[B]]) {constants = {bias = true, k = 64 : i64, n = 32 : i64}, origin = "treni.linear"} : (tensor<?x64xf32>, tensor<32x64xf32>, tensor<32xf32>) -> tensor<?x32xf32>
// CHECK:         %[[K:.+]] = treni.kernel "gemm"(%[[X]], %[[W]]) {constants = {bias = false, k = 64 : i64, n = 32 : i64}, origin = "treni.linear"} : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
// CHECK:         return %[[Q]], %[[K]]
func.func @linear(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %q = treni.linear %x, %w, %b : (tensor<?x64xf32>, tensor<32x64xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %k = treni.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
  return %q, %k : tensor<?x32xf32>, tensor<?x32xf32>
}

// -----

// Tests that a logits treni.linear whose result element type differs from its
// input keeps the result type on the kernel.
// CHECK-LABEL: func.func @linear_logits
// CHECK:         treni.kernel "gemm"(%{{.+}}, %{{.+}}) {constants = {bias = false, k = 64 : i64, n = 128 : i64}, origin = "treni.linear"} : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xf32>
func.func @linear_logits(%x: tensor<1x64xbf16>, %w: tensor<128x64xbf16>) -> tensor<1x128xf32> {
  %y = treni.linear %x, %w : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xf32>
  return %y : tensor<1x128xf32>
}

// -----

// Tests that plain treni.rope becomes "rope" with dim, head_dim and theta, and
// no llama3 constants.
// CHECK-LABEL: func.func @rope
// CHECK-SAME:    (%[[X:.+]]: tensor<?x64xf32>, %[[POS:.+]]: tensor<?xi32>)
// CHECK-NOT:     treni.rope
// CHECK:         %[[R:.+]] = treni.kernel "rope"(%[[X]], %[[POS]]) {constants = {dim = 64 : i64, head_dim = 16 : i64, theta = 1.000000e+06 : f64}, origin = "treni.rope"} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
// CHECK-NOT:     llama3
// CHECK:         return %[[R]]
func.func @rope(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) -> tensor<?x64xf32> {
  %r = treni.rope %x, %pos {head_dim = 16 : i64, theta = 1.0e6 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}

// -----

// Tests that a unit_offset norm (Qwen3.5) carries the flag into the rms_norm
// constants (a norm without it has no unit_offset constant at all, above).
// CHECK-LABEL: func.func @rms_norm_unit_offset
// CHECK:         treni.kernel "rms_norm"(%{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, epsilon = 9.9999999999999995E-7 : f64, group = 16 : i64, unit_offset = true}, origin = "treni.rms_norm"} : (tensor<?x64xbf16>, tensor<16xbf16>) -> tensor<?x64xbf16>
func.func @rms_norm_unit_offset(%x: tensor<?x64xbf16>, %w: tensor<16xbf16>) -> tensor<?x64xbf16> {
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<?x64xbf16>, tensor<16xbf16>) -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}

// -----

// Tests that a partial RoPE (Qwen3.5) carries rotary_dim into the rope
// constants.
// CHECK-LABEL: func.func @rope_partial
// CHECK:         treni.kernel "rope"(%{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, head_dim = 16 : i64, rotary_dim = 4 : i64, theta = 1.000000e+07 : f64}, origin = "treni.rope"}
func.func @rope_partial(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) -> tensor<?x64xf32> {
  %r = treni.rope %x, %pos {head_dim = 16 : i64, rotary_dim = 4 : i64, theta = 1.0e7 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}

// -----

// Tests that Llama 3 frequency scaling travels into the rope constants.
// CHECK-LABEL: func.func @rope_llama3
// CHECK:         treni.kernel "rope"(%{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, head_dim = 16 : i64, llama3_factor = 3.200000e+01 : f64, llama3_high_freq_factor = 4.000000e+00 : f64, llama3_low_freq_factor = 1.000000e+00 : f64, llama3_original_max_position = 8192 : i64, theta = 5.000000e+05 : f64}, origin = "treni.rope"}
func.func @rope_llama3(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) -> tensor<?x64xf32> {
  %r = treni.rope %x, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 1.0 : f64, llama3_high_freq_factor = 4.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}

// -----

// Tests that treni.cache_write becomes a result-less "cache_write" kernel that
// keeps the cache symbol and layer, and treni.attention an "attention" kernel
// with its head layout and scale; the treni.kv_cache declaration stays.
// CHECK:       treni.kv_cache @kv {head_dim = 16 : i64, num_kv_heads = 2 : i64, num_layers = 2 : i64} : f32
// CHECK-LABEL: func.func @cache
// CHECK-SAME:    (%[[Q:.+]]: tensor<?x64xf32>, %[[K:.+]]: tensor<?x32xf32>, %[[V:.+]]: tensor<?x32xf32>, %[[POS:.+]]: tensor<?xi32>)
// CHECK-NOT:     treni.cache_write
// CHECK-NOT:     treni.attention
// CHECK:         treni.kernel "cache_write"(%[[K]], %[[V]], %[[POS]]) {constants = {cache = @kv, dim = 32 : i64, layer = 1 : i64}, origin = "treni.cache_write"} : (tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>) -> ()
// CHECK:         %[[A:.+]] = treni.kernel "attention"(%[[Q]], %[[POS]]) {constants = {cache = @kv, head_dim = 16 : i64, layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64}, origin = "treni.attention"} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
// CHECK:         return %[[A]]
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache(%q: tensor<?x64xf32>, %k: tensor<?x32xf32>, %v: tensor<?x32xf32>, %pos: tensor<?xi32>) -> tensor<?x64xf32> {
  treni.cache_write %k, %v, %pos {cache = @kv, layer = 1 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  %a = treni.attention %q, %pos {cache = @kv, layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

// Tests that silu, mul and add become one-constant kernels named after the op,
// chained through the new results.
// CHECK-LABEL: func.func @elementwise
// CHECK-SAME:    (%[[G:.+]]: tensor<?x96xf32>, %[[U:.+]]: tensor<?x96xf32>)
// CHECK-NOT:     treni.silu
// CHECK-NOT:     treni.mul
// CHECK-NOT:     treni.add
// CHECK:         %[[S:.+]] = treni.kernel "silu"(%[[G]]) {constants = {dim = 96 : i64}, origin = "treni.silu"} : (tensor<?x96xf32>) -> tensor<?x96xf32>
// CHECK:         %[[M:.+]] = treni.kernel "mul"(%[[S]], %[[U]]) {constants = {dim = 96 : i64}, origin = "treni.mul"} : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
// CHECK:         %[[R:.+]] = treni.kernel "add"(%[[M]], %[[G]]) {constants = {dim = 96 : i64}, origin = "treni.add"} : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
// CHECK:         return %[[R]]
func.func @elementwise(%g: tensor<?x96xf32>, %u: tensor<?x96xf32>) -> tensor<?x96xf32> {
  %s = treni.silu %g : tensor<?x96xf32>
  %m = treni.mul %s, %u : tensor<?x96xf32>
  %r = treni.add %m, %g : (tensor<?x96xf32>, tensor<?x96xf32>) -> tensor<?x96xf32>
  return %r : tensor<?x96xf32>
}

// -----

// Tests that treni.take_last becomes "take_last" with the row width.
// CHECK-LABEL: func.func @take_last
// CHECK-SAME:    (%[[H:.+]]: tensor<?x64xf32>)
// CHECK-NOT:     treni.take_last
// CHECK:         %[[L:.+]] = treni.kernel "take_last"(%[[H]]) {constants = {dim = 64 : i64}, origin = "treni.take_last"} : (tensor<?x64xf32>) -> tensor<1x64xf32>
// CHECK:         return %[[L]]
func.func @take_last(%h: tensor<?x64xf32>) -> tensor<1x64xf32> {
  %l = treni.take_last %h : (tensor<?x64xf32>) -> tensor<1x64xf32>
  return %l : tensor<1x64xf32>
}

// -----

// Tests that a function with nothing to outline (a weight, an argument passed
// straight to the return, and an already outlined kernel with hand-written
// constants) comes out unchanged.
// CHECK-LABEL: func.func @leave_alone
// CHECK-SAME:    (%[[X:.+]]: tensor<1x64xf32>)
// CHECK:         %[[W:.+]] = treni.weight "w" : tensor<64xf32>
// CHECK:         %[[K:.+]] = treni.kernel "custom"(%[[X]], %[[W]]) {constants = {answer = 42 : i64}, origin = "hand.written"} : (tensor<1x64xf32>, tensor<64xf32>) -> tensor<1x64xf32>
// CHECK-NOT:     treni.kernel
// CHECK:         return %[[X]], %[[W]], %[[K]] : tensor<1x64xf32>, tensor<64xf32>, tensor<1x64xf32>
func.func @leave_alone(%x: tensor<1x64xf32>) -> (tensor<1x64xf32>, tensor<64xf32>, tensor<1x64xf32>) {
  %w = treni.weight "w" : tensor<64xf32>
  %k = treni.kernel "custom" (%x, %w) {constants = {answer = 42 : i64}, origin = "hand.written"} : (tensor<1x64xf32>, tensor<64xf32>) -> tensor<1x64xf32>
  return %x, %w, %k : tensor<1x64xf32>, tensor<64xf32>, tensor<1x64xf32>
}
