// RUN: treni-opt %s -split-input-file -treni-specialize-flash-attention | FileCheck %s
// RUN: treni-opt %s -split-input-file -treni-specialize-flash-attention -treni-outline-kernels | FileCheck %s --check-prefix=KERNEL
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline)" | FileCheck %s --check-prefix=PIPELINE
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-specialize-flash-attention})" | FileCheck %s --check-prefix=OFF

// Tests that prefill attention (dynamic rows, bf16, head_dim 16, in a
// function of one sequence) becomes treni.attention_flash with the same
// attributes, that outlining makes it the "attention_flash" kernel, and that
// the default pipeline picks it (while disabling the pass keeps the generic
// kernel).
// CHECK-LABEL: func.func @prefill
// CHECK-SAME:    (%[[Q:.+]]: tensor<?x64xbf16>, %[[POS:.+]]: tensor<?xi32>)
// CHECK-NOT:     treni.attention %
// CHECK:         %[[A:.+]] = treni.attention_flash %[[Q]], %[[POS]] {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
// CHECK:         return %[[A]]
// KERNEL-LABEL: func.func @prefill
// KERNEL:         treni.kernel "attention_flash"(%{{.+}}, %{{.+}}) {constants = {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64}, origin = "treni.attention_flash"}
// PIPELINE-LABEL: func.func @prefill
// PIPELINE:         treni.kernel "attention_flash"
// OFF-LABEL: func.func @prefill
// OFF-NOT:     attention_flash
// OFF:         treni.kernel "attention"
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @prefill(%q: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> attributes {treni.one_sequence} {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}

// -----

// Tests that a static query of several rows (f16, head_dim 128) is taken too.
// CHECK-LABEL: func.func @static_rows
// CHECK:         treni.attention_flash {{.+}} : (tensor<8x256xf16>, tensor<8xi32>) -> tensor<8x256xf16>
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 1 : i64, head_dim = 128 : i64} : f16
func.func @static_rows(%q: tensor<8x256xf16>, %pos: tensor<8xi32>) -> tensor<8x256xf16> attributes {treni.one_sequence} {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 128 : i64, scale = 0.08 : f64} : (tensor<8x256xf16>, tensor<8xi32>) -> tensor<8x256xf16>
  return %a : tensor<8x256xf16>
}

// -----

// Tests that one query row (decode, the seq1 pass's), f32 activations and
// head dims the kernel does not support (not a multiple of 16; above 128)
// keep the generic op, even in a function of one sequence.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT:     treni.attention_flash
// CHECK-COUNT-4: treni.attention %
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 1 : i64, head_dim = 24 : i64} : bf16
treni.kv_cache @kv32 {num_layers = 1 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64} : f32
treni.kv_cache @kv256 {num_layers = 1 : i64, num_kv_heads = 1 : i64, head_dim = 256 : i64} : bf16
func.func @left_alone(%q1: tensor<1x24xbf16>, %q: tensor<?x24xbf16>, %q32: tensor<?x16xf32>, %q256: tensor<?x256xbf16>, %pos1: tensor<1xi32>, %pos: tensor<?xi32>) -> (tensor<1x24xbf16>, tensor<?x24xbf16>, tensor<?x16xf32>, tensor<?x256xbf16>) attributes {treni.one_sequence} {
  %a = treni.attention %q1, %pos1 {cache = @kv, layer = 0 : i64, num_heads = 1 : i64, num_kv_heads = 1 : i64, head_dim = 24 : i64, scale = 0.2 : f64} : (tensor<1x24xbf16>, tensor<1xi32>) -> tensor<1x24xbf16>
  %b = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 1 : i64, num_kv_heads = 1 : i64, head_dim = 24 : i64, scale = 0.2 : f64} : (tensor<?x24xbf16>, tensor<?xi32>) -> tensor<?x24xbf16>
  %c = treni.attention %q32, %pos {cache = @kv32, layer = 0 : i64, num_heads = 1 : i64, num_kv_heads = 1 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  %d = treni.attention %q256, %pos {cache = @kv256, layer = 0 : i64, num_heads = 1 : i64, num_kv_heads = 1 : i64, head_dim = 256 : i64, scale = 0.06 : f64} : (tensor<?x256xbf16>, tensor<?xi32>) -> tensor<?x256xbf16>
  return %a, %b, %c, %d : tensor<1x24xbf16>, tensor<?x24xbf16>, tensor<?x16xf32>, tensor<?x256xbf16>
}

// -----

// Tests that attention in a function not marked treni.one_sequence (@step:
// rows of several sequences, each reading its own KV rows) is not the flash
// kernel, though its rows, type and head dim would suit it: this pass keeps
// the generic op, and the default pipeline makes it the row-by-row split-KV
// kernel (treni-specialize-seq1-attention); the marked function beside it is
// still specialised.
// CHECK-LABEL: func.func @step
// CHECK-NOT:     treni.attention_flash
// CHECK:         treni.attention %
// CHECK-LABEL: func.func @prefill_beside
// CHECK:         treni.attention_flash
// PIPELINE-LABEL: func.func @step
// PIPELINE-NOT:     attention_flash
// PIPELINE:         treni.kernel "attention_seq1_partial"
// PIPELINE-LABEL: func.func @prefill_beside
// PIPELINE:         treni.kernel "attention_flash"
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
func.func @step(%q: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}
func.func @prefill_beside(%q: tensor<?x64xbf16>, %pos: tensor<?xi32>) -> tensor<?x64xbf16> attributes {treni.one_sequence} {
  %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
  return %a : tensor<?x64xbf16>
}
