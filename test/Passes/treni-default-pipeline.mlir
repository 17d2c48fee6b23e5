// RUN: treni-opt %s -treni-default-pipeline | FileCheck %s
// RUN: treni-opt %s -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-outline-kernels})" | FileCheck %s --check-prefix=NO-OUTLINE

// Tests that the default pipeline runs end to end on a small prefill:
// canonicalize drops the dead silu, cse merges the duplicate rms_norm, every compute op becomes a
// kernel (the one-row logits linear a matvec), and the kernels get arena offsets computed after that cleanup:
//   rows:   %ids (?xi32, 64) -> 0; %h (?x64xf32, 256) -> 64; %n -> 320
//           (%ids freed, [0, 64) too small); %s -> 0 (%h freed).
//           Peak: 320 + 256 = 576 bytes per token.
//   static: %last (256) -> 0; %logits (1x128xf32, 512) -> 256. Peak: 768.
// CHECK-LABEL: func.func @prefill
// CHECK-SAME:    (%[[IDS:.+]]: tensor<?xi32> {treni.offset = 0 : i64})
// CHECK-SAME:    attributes {treni.arena_row_bytes = 576 : i64, treni.arena_static_bytes = 768 : i64}
// CHECK-DAG:     %[[TABLE:.+]] = treni.weight "embed" : tensor<128x64xf32>
// CHECK-DAG:     %[[LN:.+]] = treni.weight "ln" : tensor<64xf32>
// CHECK-NOT:     treni.silu
// CHECK:         %[[H:.+]] = treni.kernel "embedding"(%[[IDS]], %[[TABLE]]) {constants = {dim = 64 : i64, vocab = 128 : i64}, origin = "treni.embedding", treni.offsets = array<i64: 64>}
// CHECK:         %[[N:.+]] = treni.kernel "rms_norm"(%[[H]], %[[LN]]) {constants = {dim = 64 : i64, epsilon = 9.9999999999999995E-7 : f64, group = 64 : i64}, origin = "treni.rms_norm", treni.offsets = array<i64: 320>}
// CHECK-NOT:     "rms_norm"
// CHECK:         %[[S:.+]] = treni.kernel "add"(%[[N]], %[[N]]) {constants = {dim = 64 : i64}, origin = "treni.add", treni.offsets = array<i64: 0>}
// CHECK:         %[[LAST:.+]] = treni.kernel "take_last"(%[[S]]) {constants = {dim = 64 : i64}, origin = "treni.take_last", treni.offsets = array<i64: 0>}
// CHECK:         %[[LOGITS:.+]] = treni.kernel "gemv"(%[[LAST]], %[[TABLE]], %[[TABLE]], %[[TABLE]], %[[TABLE]]) {constants = {bias = false, gated = false, k = 64 : i64, n = 128 : i64, norm = false, residual = false}, origin = "treni.matvec", treni.offsets = array<i64: 256>}
// CHECK:         return %[[LOGITS]]

// Tests that disabling treni-outline-kernels leaves the transformer-level ops
// in place while the cleanup and the buffer plan still run (same offsets).
// NO-OUTLINE-LABEL: func.func @prefill
// NO-OUTLINE-SAME:    (%[[IDS:.+]]: tensor<?xi32> {treni.offset = 0 : i64})
// NO-OUTLINE-SAME:    attributes {treni.arena_row_bytes = 576 : i64, treni.arena_static_bytes = 768 : i64}
// NO-OUTLINE-NOT:     treni.kernel
// NO-OUTLINE-NOT:     treni.silu
// NO-OUTLINE:         %[[H:.+]] = treni.embedding %[[IDS]], %{{.+}} {treni.offsets = array<i64: 64>}
// NO-OUTLINE:         %[[N:.+]] = treni.rms_norm %[[H]], %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, treni.offsets = array<i64: 320>}
// NO-OUTLINE-NOT:     treni.rms_norm
// NO-OUTLINE:         %[[S:.+]] = treni.add %[[N]], %[[N]] {treni.offsets = array<i64: 0>}
// NO-OUTLINE:         %[[LAST:.+]] = treni.take_last %[[S]] {treni.offsets = array<i64: 0>}
// NO-OUTLINE:         %[[LOGITS:.+]] = treni.matvec %[[LAST]], %{{.+}} {treni.offsets = array<i64: 256>}
// NO-OUTLINE-NOT:     treni.kernel
// NO-OUTLINE:         return %[[LOGITS]]
func.func @prefill(%ids: tensor<?xi32>) -> tensor<1x128xf32> {
  %table = treni.weight "embed" : tensor<128x64xf32>
  %ln = treni.weight "ln" : tensor<64xf32>
  %h = treni.embedding %ids, %table : (tensor<?xi32>, tensor<128x64xf32>) -> tensor<?x64xf32>
  %n = treni.rms_norm %h, %ln {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  %dup = treni.rms_norm %h, %ln {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  %dead = treni.silu %h : tensor<?x64xf32>
  %s = treni.add %n, %dup : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  %last = treni.take_last %s : (tensor<?x64xf32>) -> tensor<1x64xf32>
  %logits = treni.linear %last, %table : (tensor<1x64xf32>, tensor<128x64xf32>) -> tensor<1x128xf32>
  return %logits : tensor<1x128xf32>
}
