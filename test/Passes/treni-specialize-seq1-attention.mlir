// RUN: treni-opt %s -split-input-file -treni-specialize-seq1-attention | FileCheck %s
// RUN: treni-opt %s -split-input-file -treni-specialize-seq1-attention=num-splits=4 | FileCheck %s --check-prefix=SPLITS
// RUN: treni-opt %s -split-input-file -treni-specialize-seq1-attention -treni-outline-kernels | FileCheck %s --check-prefix=KERNEL
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-specialize-seq1-attention})" | FileCheck %s --check-prefix=OFF
// RUN: not treni-opt %s -split-input-file -treni-specialize-seq1-attention=num-splits=0 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not treni-opt %s -split-input-file -treni-specialize-seq1-attention=rows-num-splits=-1 2>&1 | FileCheck %s --check-prefix=BAD-ROWS

// Tests that a non-positive num-splits is an error, not a silent no-op.
// BAD: error: treni-specialize-seq1-attention: num-splits must be positive, got 0
// BAD-ROWS: error: treni-specialize-seq1-attention: rows-num-splits must be positive, got -1

// Tests that attention of one static query row (decode) becomes
// treni.attention_seq1 with the default 32 splits, and that outlining makes
// it two kernels: the f32 partials (4 heads * 32 splits * (16 + 2) = 2304
// floats a row) and their reduction.
// CHECK-LABEL: func.func @decode
// CHECK-SAME:    (%[[Q:.+]]: tensor<1x64xbf16>, %[[POS:.+]]: tensor<1xi32>)
// CHECK-NOT:     treni.attention %
// CHECK:         %[[A:.+]] = treni.attention_seq1 %[[Q]], %[[POS]] {cache = @kv, head_dim = 16 : i64, layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, num_splits = 32 : i64, scale = 2.500000e-01 : f64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
// CHECK:         return %[[A]]
// SPLITS-LABEL: func.func @decode
// SPLITS:         treni.attention_seq1 {{.+}} num_splits = 4 : i64
// KERNEL-LABEL: func.func @decode
// KERNEL-SAME:    (%[[Q:.+]]: tensor<1x64xbf16>, %[[POS:.+]]: tensor<1xi32>)
// KERNEL:         %[[P:.+]] = treni.kernel "attention_seq1_partial"(%[[Q]], %[[POS]]) {constants = {cache = @kv, head_dim = 16 : i64, layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, num_splits = 32 : i64, scale = 2.500000e-01 : f64}, origin = "treni.attention_seq1"} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x2304xf32>
// KERNEL:         %[[A:.+]] = treni.kernel "attention_seq1_reduce"(%[[P]]) {constants = {head_dim = 16 : i64, num_heads = 4 : i64, num_splits = 32 : i64}, origin = "treni.attention_seq1"} : (tensor<1x2304xf32>) -> tensor<1x64xbf16>
// KERNEL:         return %[[A]]
// OFF-LABEL: func.func @decode
// OFF-NOT:     attention_seq1
// OFF:         treni.kernel "attention"
treni.kv_cache @kv {num_layers = 2 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @decode(%q: tensor<1x64xbf16>, %pos: tensor<1xi32>) -> tensor<1x64xbf16> {
  %a = treni.attention %q, %pos {cache = @kv, layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
  return %a : tensor<1x64xbf16>
}

// -----

// Tests that prefill attention (dynamic rows of one sequence) is left alone.
// CHECK-LABEL: func.func @prefill
// CHECK-NOT:     treni.attention_seq1
// CHECK:         treni.attention %
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @prefill(%q: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> attributes {treni.one_sequence} {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

// Tests that a static query of several rows of one sequence is left alone.
// CHECK-LABEL: func.func @two_rows
// CHECK-NOT:     treni.attention_seq1
// CHECK:         treni.attention %
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @two_rows(%q: tensor<2x64xbf16>, %pos: tensor<2xi32>) -> tensor<2x64xbf16> attributes {treni.one_sequence} {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<2x64xbf16>, tensor<2xi32>) -> tensor<2x64xbf16>
  return %a : tensor<2x64xbf16>
}

// -----

// Tests that the attention of a function whose rows may be several sequences
// (@step: no treni.one_sequence) becomes treni.attention_seq1 row by row with
// rows-num-splits (default 4), its partials [rows, 4 * 4 * 18].
// CHECK-LABEL: func.func @step
// CHECK:         treni.attention_seq1 {{.+}} num_splits = 4 : i64{{.+}} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
// KERNEL-LABEL: func.func @step
// KERNEL:         treni.kernel "attention_seq1_partial"{{.+}} -> tensor<?x288xf32>
// KERNEL:         treni.kernel "attention_seq1_reduce"{{.+}} : (tensor<?x288xf32>) -> tensor<?x64xbf16>
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @step(%q: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}
