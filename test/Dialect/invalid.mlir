// RUN: treni-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// treni.kv_cache
//===----------------------------------------------------------------------===//

// Tests that a cache with no layers is rejected.
// expected-error @+1 {{attribute 'num_layers' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
treni.kv_cache @kv {num_layers = 0 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32

// -----

// Tests that a cache with no KV heads is rejected.
// expected-error @+1 {{attribute 'num_kv_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 0 : i64, head_dim = 16 : i64} : f32

// -----

// Tests that a negative cache head_dim is rejected.
// expected-error @+1 {{attribute 'head_dim' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = -16 : i64} : f32

// -----

// Tests that a cache needs all of its size attributes.
// expected-error @+1 {{requires attribute 'head_dim'}}
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64} : f32

// -----

// Tests that a cache of integers is rejected.
// expected-error @+1 {{'treni.kv_cache' op attribute 'element_type' failed to satisfy constraint: type attribute of bfloat16 type or 16-bit float or 32-bit float}}
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : i32

// -----

// Tests that a cache declared outside a module (inside a function) is rejected.
func.func @cache_in_function() {
  // expected-error @+1 {{'treni.kv_cache' op expects parent op 'builtin.module'}}
  treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
  return
}

//===----------------------------------------------------------------------===//
// treni.weight
//===----------------------------------------------------------------------===//

// -----

// Tests that a weight needs a name.
func.func @weight_empty_name() {
  // expected-error @+1 {{'treni.weight' op needs a non-empty tensor name}}
  %w = treni.weight "" : tensor<4x8xf32>
  return
}

// -----

// Tests that a weight with a dynamic dimension is rejected.
func.func @weight_dynamic() {
  // expected-error @+1 {{'treni.weight' op weights must have a static shape}}
  %w = treni.weight "w" : tensor<?x8xf32>
  return
}

// -----

// Tests that a weight of integers is rejected.
func.func @weight_integer() {
  // expected-error @+1 {{'treni.weight' op result #0 must be ranked tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<4x8xi32>'}}
  %w = treni.weight "w" : tensor<4x8xi32>
  return
}

// -----

// Tests that, once the module has a weight map, a weight missing from it is
// rejected (and one present with its shape is accepted).
module attributes {treni.weights = {"w" = {file = "model.safetensors", offset = 0 : i64, dtype = "F32", shape = array<i64: 4, 8>}}} {
  func.func @weight_not_in_map() {
    %ok = treni.weight "w" : tensor<4x8xf32>
    // expected-error @+1 {{'treni.weight' op 'missing' is not in the module's weight map}}
    %w = treni.weight "missing" : tensor<4x8xf32>
    return
  }
}

// -----

// Tests that a weight whose type disagrees with the shape in the map is
// rejected.
module attributes {treni.weights = {"w" = {file = "model.safetensors", offset = 0 : i64, dtype = "F32", shape = array<i64: 4, 8>}}} {
  func.func @weight_shape_mismatch() {
    // expected-error @+1 {{'treni.weight' op type 'tensor<8x4xf32>' does not match the shape of 'w' in the weight map}}
    %w = treni.weight "w" : tensor<8x4xf32>
    return
  }
}

// -----

// Tests that a weight whose rank disagrees with the map is rejected.
module attributes {treni.weights = {"w" = {file = "model.safetensors", offset = 0 : i64, dtype = "F32", shape = array<i64: 4, 8>}}} {
  func.func @weight_rank_mismatch() {
    // expected-error @+1 {{'treni.weight' op type 'tensor<32xf32>' does not match the shape of 'w' in the weight map}}
    %w = treni.weight "w" : tensor<32xf32>
    return
  }
}

// -----

// Tests that a map entry without a shape cannot vouch for a weight.
module attributes {treni.weights = {"w" = {file = "model.safetensors", offset = 0 : i64, dtype = "F32"}}} {
  func.func @weight_entry_without_shape() {
    // expected-error @+1 {{'treni.weight' op type 'tensor<4x8xf32>' does not match the shape of 'w' in the weight map}}
    %w = treni.weight "w" : tensor<4x8xf32>
    return
  }
}

//===----------------------------------------------------------------------===//
// treni.embedding
//===----------------------------------------------------------------------===//

// -----

// Tests that token ids must be i32.
func.func @embedding_i64_ids(%ids: tensor<4xi64>, %table: tensor<16x8xf32>) {
  // expected-error @+1 {{'treni.embedding' op operand #0 must be 1D tensor of 32-bit signless integer values, but got 'tensor<4xi64>'}}
  %h = treni.embedding %ids, %table : (tensor<4xi64>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

// Tests that token ids must be a vector.
func.func @embedding_2d_ids(%ids: tensor<1x4xi32>, %table: tensor<16x8xf32>) {
  // expected-error @+1 {{'treni.embedding' op operand #0 must be 1D tensor of 32-bit signless integer values, but got 'tensor<1x4xi32>'}}
  %h = treni.embedding %ids, %table : (tensor<1x4xi32>, tensor<16x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

// Tests that the table must be a matrix.
func.func @embedding_1d_table(%ids: tensor<4xi32>, %table: tensor<128xf32>) {
  // expected-error @+1 {{'treni.embedding' op operand #1 must be 2D tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<128xf32>'}}
  %h = treni.embedding %ids, %table : (tensor<4xi32>, tensor<128xf32>) -> tensor<4x8xf32>
  return
}

// -----

// Tests that the result has one row per token id.
func.func @embedding_rows(%ids: tensor<4xi32>, %table: tensor<16x8xf32>) {
  // expected-error @+1 {{'treni.embedding' op result has 5 rows but the input has 4}}
  %h = treni.embedding %ids, %table : (tensor<4xi32>, tensor<16x8xf32>) -> tensor<5x8xf32>
  return
}

// -----

// Tests that the result is as wide as the table.
func.func @embedding_width(%ids: tensor<?xi32>, %table: tensor<16x8xf32>) {
  // expected-error @+1 {{'treni.embedding' op result has 16 columns, expected 8}}
  %h = treni.embedding %ids, %table : (tensor<?xi32>, tensor<16x8xf32>) -> tensor<?x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// treni.rms_norm
//===----------------------------------------------------------------------===//

// -----

// Tests that a zero epsilon is rejected.
func.func @rms_norm_zero_epsilon(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{attribute 'epsilon' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %y = treni.rms_norm %x, %w {epsilon = 0.0 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a negative epsilon is rejected.
func.func @rms_norm_negative_epsilon(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{attribute 'epsilon' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %y = treni.rms_norm %x, %w {epsilon = -1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that epsilon must be an f64 attribute.
func.func @rms_norm_f32_epsilon(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{attribute 'epsilon' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f32} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the row must split into whole groups of the weight's size.
func.func @rms_norm_group(%x: tensor<?x64xf32>, %w: tensor<24xf32>) {
  // expected-error @+1 {{'treni.rms_norm' op row width 64 is not a multiple of the weight size 24}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<24xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that an empty weight is rejected rather than dividing by zero.
func.func @rms_norm_empty_weight(%x: tensor<?x64xf32>, %w: tensor<0xf32>) {
  // expected-error @+1 {{'treni.rms_norm' op row width 64 is not a multiple of the weight size 0}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<0xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a weight of unknown size is rejected: the group must be static.
func.func @rms_norm_dynamic_weight(%x: tensor<?x64xf32>, %w: tensor<?xf32>) {
  // expected-error @+1 {{'treni.rms_norm' op row width and weight size must be static}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<?xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the weight must be a vector.
func.func @rms_norm_2d_weight(%x: tensor<?x64xf32>, %w: tensor<1x64xf32>) {
  // expected-error @+1 {{'treni.rms_norm' op operand #1 must be 1D tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<1x64xf32>'}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<1x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the result has the input's shape (its element type may differ).
func.func @rms_norm_result(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'treni.rms_norm' op result type 'tensor<?x32xf16>' differs in shape from the input type 'tensor<?x64xf32>'}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x32xf16>
  return
}

// -----

// Tests that unit_offset is a unit attribute, not a value.
func.func @rms_norm_unit_offset_value(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{'treni.rms_norm' op attribute 'unit_offset' failed to satisfy constraint: unit attribute}}
  %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64, unit_offset = 1 : i64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// treni.linear
//===----------------------------------------------------------------------===//

// -----

// Tests that the input features must match the weight's in dimension.
func.func @linear_features(%x: tensor<?x64xf32>, %w: tensor<32x48xf32>) {
  // expected-error @+1 {{'treni.linear' op input has 64 features but the weight expects 48}}
  %y = treni.linear %x, %w : (tensor<?x64xf32>, tensor<32x48xf32>) -> tensor<?x32xf32>
  return
}

// -----

// Tests that the bias must have one element per output.
func.func @linear_bias(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %b: tensor<64xf32>) {
  // expected-error @+1 {{'treni.linear' op bias has 64 elements but the weight has 32 outputs}}
  %y = treni.linear %x, %w, %b : (tensor<?x64xf32>, tensor<32x64xf32>, tensor<64xf32>) -> tensor<?x32xf32>
  return
}

// -----

// Tests that the bias must be a vector.
func.func @linear_2d_bias(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %b: tensor<1x32xf32>) {
  // expected-error @+1 {{'treni.linear' op operand #2 must be 1D tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<1x32xf32>'}}
  %y = treni.linear %x, %w, %b : (tensor<?x64xf32>, tensor<32x64xf32>, tensor<1x32xf32>) -> tensor<?x32xf32>
  return
}

// -----

// Tests that the input must be a matrix.
func.func @linear_3d_input(%x: tensor<1x4x64xf32>, %w: tensor<32x64xf32>) {
  // expected-error @+1 {{'treni.linear' op operand #0 must be 2D tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<1x4x64xf32>'}}
  %y = treni.linear %x, %w : (tensor<1x4x64xf32>, tensor<32x64xf32>) -> tensor<4x32xf32>
  return
}

// -----

// Tests that the result keeps the input's row count.
func.func @linear_rows(%x: tensor<4x64xf32>, %w: tensor<32x64xf32>) {
  // expected-error @+1 {{'treni.linear' op result has 8 rows but the input has 4}}
  %y = treni.linear %x, %w : (tensor<4x64xf32>, tensor<32x64xf32>) -> tensor<8x32xf32>
  return
}

// -----

// Tests that the result has one column per weight output.
func.func @linear_columns(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>) {
  // expected-error @+1 {{'treni.linear' op result has 64 columns, expected 32}}
  %y = treni.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// treni.rope
//===----------------------------------------------------------------------===//

// -----

// Tests that an odd head_dim is rejected: rotate-half needs pairs.
func.func @rope_odd_head_dim(%x: tensor<?x63xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op head_dim 21 must be even}}
  %y = treni.rope %x, %pos {head_dim = 21 : i64, theta = 1.0e4 : f64} : (tensor<?x63xf32>, tensor<?xi32>) -> tensor<?x63xf32>
  return
}

// -----

// Tests that a zero head_dim is rejected.
func.func @rope_zero_head_dim(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{attribute 'head_dim' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %y = treni.rope %x, %pos {head_dim = 0 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a non-positive theta is rejected.
func.func @rope_zero_theta(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{attribute 'theta' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 0.0 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that an odd rotary_dim is rejected: the rotated part is pairs too.
func.func @rope_odd_rotary_dim(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op rotary_dim 7 must be even and in [2, head_dim = 16]}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, rotary_dim = 7 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a rotary_dim wider than the head is rejected.
func.func @rope_wide_rotary_dim(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op rotary_dim 32 must be even and in [2, head_dim = 16]}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, rotary_dim = 32 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a zero rotary_dim is rejected (a rope that rotates nothing).
func.func @rope_zero_rotary_dim(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op rotary_dim 0 must be even and in [2, head_dim = 16]}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, rotary_dim = 0 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a negative rotary_dim is rejected.
func.func @rope_negative_rotary_dim(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op rotary_dim -4 must be even and in [2, head_dim = 16]}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, rotary_dim = -4 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the row must hold a whole number of heads.
func.func @rope_width(%x: tensor<?x40xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op row width 40 is not a multiple of head_dim 16}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x40xf32>, tensor<?xi32>) -> tensor<?x40xf32>
  return
}

// -----

// Tests that there is one position per input row.
func.func @rope_positions(%x: tensor<4x64xf32>, %pos: tensor<3xi32>) {
  // expected-error @+1 {{'treni.rope' op needs one position per input row}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<4x64xf32>, tensor<3xi32>) -> tensor<4x64xf32>
  return
}

// -----

// Tests that positions must be i32.
func.func @rope_i64_positions(%x: tensor<?x64xf32>, %pos: tensor<?xi64>) {
  // expected-error @+1 {{'treni.rope' op operand #1 must be 1D tensor of 32-bit signless integer values, but got 'tensor<?xi64>'}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi64>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the result has the input's type.
func.func @rope_result(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op failed to verify that all of {input, result} have same type}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf16>
  return
}

// -----

// Tests that a lone llama3_factor is rejected.
func.func @rope_llama3_factor_only(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op llama3 scaling needs all of llama3_factor, llama3_low_freq_factor, llama3_high_freq_factor and llama3_original_max_position}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that three of the four llama3 attributes are rejected.
func.func @rope_llama3_missing_max_position(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op llama3 scaling needs all of llama3_factor, llama3_low_freq_factor, llama3_high_freq_factor and llama3_original_max_position}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 1.0 : f64, llama3_high_freq_factor = 4.0 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that equal low and high frequency factors are rejected (the smoothing
// divides by their difference).
func.func @rope_llama3_equal_factors(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op llama3_high_freq_factor must exceed llama3_low_freq_factor}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 4.0 : f64, llama3_high_freq_factor = 4.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a high frequency factor below the low one is rejected.
func.func @rope_llama3_swapped_factors(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op llama3_high_freq_factor must exceed llama3_low_freq_factor}}
  %y = treni.rope %x, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 32.0 : f64, llama3_low_freq_factor = 4.0 : f64, llama3_high_freq_factor = 1.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// treni.cache_write
//===----------------------------------------------------------------------===//

// -----

// Tests that keys and values must have one type.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_types(%k: tensor<?x32xf32>, %v: tensor<?x32xf16>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op key type 'tensor<?x32xf32>' differs from value type 'tensor<?x32xf16>'}}
  treni.cache_write %k, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xf32>, tensor<?x32xf16>, tensor<?xi32>
  return
}

// -----

// Tests that there is one position per key row.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_positions(%k: tensor<4x32xf32>, %pos: tensor<2xi32>) {
  // expected-error @+1 {{'treni.cache_write' op needs one position per key row}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<4x32xf32>, tensor<4x32xf32>, tensor<2xi32>
  return
}

// -----

// Tests that the cache symbol must exist.
func.func @cache_write_no_cache(%k: tensor<?x32xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op 'kv' does not name a treni.kv_cache}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  return
}

// -----

// Tests that the cache symbol must name a treni.kv_cache, not another symbol.
func.func private @kv()
func.func @cache_write_not_a_cache(%k: tensor<?x32xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op 'kv' does not name a treni.kv_cache}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  return
}

// -----

// Tests that the layer must exist in the cache (layers count from 0).
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_layer(%k: tensor<?x32xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op layer 2 is out of range: cache 'kv' has 2 layers}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 2 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  return
}

// -----

// Tests that a negative layer is rejected.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_negative_layer(%k: tensor<?x32xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{attribute 'layer' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = -1 : i64} : tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>
  return
}

// -----

// Tests that the key rows must hold as many KV heads as the cache.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_heads(%k: tensor<?x16xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op uses 1 KV heads of 16 but cache 'kv' holds 2 KV heads of 16}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?xi32>
  return
}

// -----

// Tests that key rows that are not whole cache heads are rejected.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_head_dim(%k: tensor<?x40xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op key rows have 40 elements, not a multiple of the head_dim 16 of cache 'kv'}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<?x40xf32>, tensor<?x40xf32>, tensor<?xi32>
  return
}

//===----------------------------------------------------------------------===//
// treni.attention
//===----------------------------------------------------------------------===//

// -----

// Tests that query heads must split evenly over the KV heads.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_groups(%q: tensor<?x48xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op num_heads 3 is not a multiple of num_kv_heads 2}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 3 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x48xf32>, tensor<?xi32>) -> tensor<?x48xf32>
  return
}

// -----

// Tests that the query width must be num_heads * head_dim.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_width(%q: tensor<?x48xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op query rows have 48 elements, expected num_heads * head_dim = 64}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x48xf32>, tensor<?xi32>) -> tensor<?x48xf32>
  return
}

// -----

// Tests that there is one position per query row.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_positions(%q: tensor<1x64xf32>, %pos: tensor<2xi32>) {
  // expected-error @+1 {{'treni.attention' op needs one position per query row}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<1x64xf32>, tensor<2xi32>) -> tensor<1x64xf32>
  return
}

// -----

// Tests that the result has the query's type.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_result(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op failed to verify that all of {query, result} have same type}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<1x64xf32>
  return
}

// -----

// Tests that a zero scale is rejected.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_scale(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{attribute 'scale' failed to satisfy constraint: 64-bit float attribute whose value is positive}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.0 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that zero query heads are rejected.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_zero_heads(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{attribute 'num_heads' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 0 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the cache symbol must exist.
func.func @attention_no_cache(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op 'kv' does not name a treni.kv_cache}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the cache symbol must name a treni.kv_cache, not another symbol.
func.func @attention_not_a_cache(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op 'attention_not_a_cache' does not name a treni.kv_cache}}
  %a = treni.attention %q, %pos {cache = @attention_not_a_cache, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that the layer must exist in the cache.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_layer(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op layer 5 is out of range: cache 'kv' has 2 layers}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 5 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that num_kv_heads must match the cache.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_kv_heads(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op uses 4 KV heads of 16 but cache 'kv' holds 2 KV heads of 16}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 4 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that head_dim must match the cache.
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_head_dim(%q: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op uses 2 KV heads of 32 but cache 'kv' holds 2 KV heads of 16}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 32 : i64, scale = 0.25 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

//===----------------------------------------------------------------------===//
// Elementwise ops
//===----------------------------------------------------------------------===//

// -----

// Tests that mul operands must have one type (generic form: the custom
// form cannot even spell two types).
func.func @mul_types(%a: tensor<?x64xf32>, %b: tensor<?x64xf16>) {
  // expected-error @+1 {{'treni.mul' op requires the same type for all operands and results}}
  %y = "treni.mul"(%a, %b) : (tensor<?x64xf32>, tensor<?x64xf16>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that add operands and result share a shape (their element types may
// differ: an f32 residual plus a bf16 branch).
func.func @add_shapes(%a: tensor<?x64xf32>, %b: tensor<?x32xbf16>) {
  // expected-error @+1 {{'treni.add' op requires the same shape for all operands and results}}
  %y = treni.add %a, %b : (tensor<?x64xf32>, tensor<?x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that an elementwise result must have the operands' type.
func.func @mul_result(%a: tensor<?x64xf32>) {
  // expected-error @+1 {{'treni.mul' op all non-scalar operands/results must have the same shape and base type}}
  %y = "treni.mul"(%a, %a) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x32xf32>
  return
}

// -----

// Tests that elementwise ops take matrices.
func.func @silu_vector(%a: tensor<64xf32>) {
  // expected-error @+1 {{'treni.silu' op operand #0 must be 2D tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<64xf32>'}}
  %y = treni.silu %a : tensor<64xf32>
  return
}

// -----

// Tests that elementwise ops take floats.
func.func @add_integers(%a: tensor<?x64xi32>) {
  // expected-error @+1 {{'treni.add' op operand #0 must be 2D tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<?x64xi32>'}}
  %y = treni.add %a, %a : (tensor<?x64xi32>, tensor<?x64xi32>) -> tensor<?x64xi32>
  return
}

//===----------------------------------------------------------------------===//
// treni.take_last
//===----------------------------------------------------------------------===//

// -----

// Tests that take_last yields exactly one row.
func.func @take_last_rows(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{'treni.take_last' op result must have one row, got 2}}
  %y = treni.take_last %h : (tensor<?x64xf32>) -> tensor<2x64xf32>
  return
}

// -----

// Tests that take_last yields a dynamic row count as an error too.
func.func @take_last_dynamic_rows(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{'treni.take_last' op result must have one row, got}}
  %y = treni.take_last %h : (tensor<?x64xf32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that take_last keeps the row width.
func.func @take_last_width(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{'treni.take_last' op result row type 'tensor<1x32xf32>' does not match the input 'tensor<?x64xf32>'}}
  %y = treni.take_last %h : (tensor<?x64xf32>) -> tensor<1x32xf32>
  return
}

// -----

// Tests that take_last keeps the element type.
func.func @take_last_element_type(%h: tensor<?x64xf32>) {
  // expected-error @+1 {{'treni.take_last' op result row type 'tensor<1x64xf16>' does not match the input 'tensor<?x64xf32>'}}
  %y = treni.take_last %h : (tensor<?x64xf32>) -> tensor<1x64xf16>
  return
}

//===----------------------------------------------------------------------===//
// treni.kernel
//===----------------------------------------------------------------------===//

// -----

// Tests that a kernel must name its template.
func.func @kernel_empty_template(%x: tensor<1x64xf32>) {
  // expected-error @+1 {{'treni.kernel' op needs a template name}}
  %y = treni.kernel "" (%x) {constants = {dim = 64 : i64}, origin = "treni.silu"} : (tensor<1x64xf32>) -> tensor<1x64xf32>
  return
}

// -----

// Tests that a kernel must carry its constants.
func.func @kernel_no_constants(%x: tensor<1x64xf32>) {
  // expected-error @+1 {{requires attribute 'constants'}}
  %y = treni.kernel "silu" (%x) {origin = "treni.silu"} : (tensor<1x64xf32>) -> tensor<1x64xf32>
  return
}

// -----

// Tests that a cache write of another element type than the cache is rejected.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @cache_write_element_type(%k: tensor<?x32xbf16>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.cache_write' op element type 'bf16' differs from cache 'kv' of 'f32'}}
  treni.cache_write %k, %k, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
  return
}

// -----

// Tests that attention reading a cache of another element type is rejected.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32
func.func @attention_element_type(%q: tensor<?x64xf16>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.attention' op element type 'f16' differs from cache 'kv' of 'f32'}}
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xf16>, tensor<?xi32>) -> tensor<?x64xf16>
  return
}

// -----

// Tests that a weight whose element type differs from its map dtype is rejected.
module attributes {treni.weights = {"w" = {file = "model.safetensors", offset = 0 : i64, dtype = "BF16", shape = array<i64: 4, 8>}}} {
  func.func @weight_dtype() {
    // expected-error @+1 {{'treni.weight' op element type 'f32' does not match the dtype of 'w' in the weight map}}
    %w = treni.weight "w" : tensor<4x8xf32>
    return
  }
}

// -----

// Tests that llama3 scaling with a non-positive factor is rejected.
func.func @rope_llama3_zero_factor(%x: tensor<?x64xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op llama3 factors and original max position must be positive}}
  %r = treni.rope %x, %pos {head_dim = 16 : i64, theta = 5.0e5 : f64, llama3_factor = 0.0 : f64, llama3_low_freq_factor = 1.0 : f64, llama3_high_freq_factor = 4.0 : f64, llama3_original_max_position = 8192 : i64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that a rope over rows of unknown width is rejected, whatever head_dim is.
func.func @rope_dynamic_width(%x: tensor<?x?xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{'treni.rope' op row width must be static}}
  %r = treni.rope %x, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x?xf32>, tensor<?xi32>) -> tensor<?x?xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// treni.concat
//===----------------------------------------------------------------------===//

// Tests that a concat of one part is rejected.
func.func @concat_one_part() {
  %w = treni.weight "w" : tensor<4x8xf32>
  // expected-error @+1 {{needs at least two parts}}
  %c = treni.concat %w : (tensor<4x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

// Tests that only weights can be concatenated.
func.func @concat_not_weight(%x: tensor<4x8xf32>) {
  %w = treni.weight "w" : tensor<4x8xf32>
  // expected-error @+1 {{parts must be treni.weight or treni.concat results}}
  %c = treni.concat %w, %x : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
  return
}

// -----

// Tests that parts of different element types are rejected.
func.func @concat_element_types() {
  %a = treni.weight "a" : tensor<4x8xf32>
  %b = treni.weight "b" : tensor<4x8xbf16>
  // expected-error @+1 {{differs in element type}}
  %c = treni.concat %a, %b : (tensor<4x8xf32>, tensor<4x8xbf16>) -> tensor<8x8xf32>
  return
}

// -----

// Tests that parts of different trailing dimensions are rejected.
func.func @concat_trailing_dims() {
  %a = treni.weight "a" : tensor<4x8xf32>
  %b = treni.weight "b" : tensor<4x16xf32>
  // expected-error @+1 {{differs in trailing dimensions}}
  %c = treni.concat %a, %b : (tensor<4x8xf32>, tensor<4x16xf32>) -> tensor<8x8xf32>
  return
}

// -----

// Tests that a result that is not the sum of the parts is rejected.
func.func @concat_result() {
  %a = treni.weight "a" : tensor<4x8xf32>
  %b = treni.weight "b" : tensor<2x8xf32>
  // expected-error @+1 {{is not the concatenation of the parts}}
  %c = treni.concat %a, %b : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<8x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// treni.silu_mul
//===----------------------------------------------------------------------===//

// Tests that an odd input width is rejected.
func.func @silu_mul_odd(%x: tensor<?x7xf32>) {
  // expected-error @+1 {{expected an even number}}
  %y = treni.silu_mul %x : (tensor<?x7xf32>) -> tensor<?x3xf32>
  return
}

// -----

// Tests that a result wider than half the input is rejected.
func.func @silu_mul_width(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{result has 8 columns, expected 4}}
  %y = treni.silu_mul %x : (tensor<?x8xf32>) -> tensor<?x8xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// treni.qkv_rope_cache
//===----------------------------------------------------------------------===//

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32

// Tests that a qkv row of the wrong width is rejected.
func.func @qkv_width(%qkv: tensor<?x120xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{qkv rows have 120 elements, expected (num_heads + 2 * num_kv_heads) * head_dim = 128}}
  %q = treni.qkv_rope_cache %qkv, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x120xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32

// Tests that norms without an epsilon are rejected.
func.func @qkv_norm_epsilon(%qkv: tensor<?x128xf32>, %pos: tensor<?xi32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{epsilon goes with the norms, and only with them}}
  %q = treni.qkv_rope_cache %qkv, %pos, %w, %w {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x128xf32>, tensor<?xi32>, tensor<16xf32>, tensor<16xf32>) -> tensor<?x64xf32>
  return
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : f32

// Tests that a single norm is rejected.
func.func @qkv_one_norm(%qkv: tensor<?x128xf32>, %pos: tensor<?xi32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{takes no norms or two (q and k)}}
  %q = treni.qkv_rope_cache %qkv, %pos, %w {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64, epsilon = 1.0e-6 : f64} : (tensor<?x128xf32>, tensor<?xi32>, tensor<16xf32>) -> tensor<?x64xf32>
  return
}

// -----

treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16

// Tests that the cache's element type must match.
func.func @qkv_cache_type(%qkv: tensor<?x128xf32>, %pos: tensor<?xi32>) {
  // expected-error @+1 {{element type 'f32' differs from cache 'kv' of 'bf16'}}
  %q = treni.qkv_rope_cache %qkv, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x128xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  return
}

// -----

// Tests that treni.one_sequence is a unit attribute.
// expected-error @+1 {{'treni.one_sequence' must be a unit attribute}}
func.func @one_sequence_value() attributes {treni.one_sequence = true} {
  return
}

// -----

// Tests that treni.one_sequence marks functions only.
// expected-error @+1 {{'treni.one_sequence' marks functions only}}
module attributes {treni.one_sequence} {
}
