// RUN: treni-opt %s -split-input-file -verify-diagnostics -treni-plan-buffers | FileCheck %s
// RUN: treni-opt %s -split-input-file -verify-diagnostics -treni-plan-buffers="alignment=64 row-alignment=16" | FileCheck %s --check-prefix=ALIGN
// The last two cases fail on purpose, so the report run expects a failing exit
// status and checks their errors along with the remarks.
// RUN: not treni-opt %s -split-input-file -treni-plan-buffers=report=true -o /dev/null 2>&1 | FileCheck %s --check-prefix=REPORT
// An alignment below the kernels' 16-byte vectors is refused.
// RUN: not treni-opt %s -split-input-file -treni-plan-buffers="row-alignment=8" 2>&1 | FileCheck %s --check-prefix=SMALL
// SMALL: treni-plan-buffers: alignments must be powers of two of at least 16 (kernels move 16-byte vectors), got 8

// All offsets below are worked out by hand: first-fit over the live buffers,
// static sizes rounded up to `alignment` (256), per-row sizes of token-dynamic
// buffers rounded up to `row-alignment` (64); a value is freed once the walk is
// past its last user, so an op's results never land on its own operands.

// Tests that a chain of ops reuses the buffer of a value as soon as it is dead,
// but never places a result on the operand it consumes. Each buffer is
// 4x64xf32 = 1024 bytes:
//   %x -> 0 (argument); %a -> 1024 (%x dies at %a but is still its operand);
//   %b -> 0 (%x freed); %c -> 1024 (%a freed); %d -> 0 (%b freed).
// The weight gets no buffer. Peak: 2048 bytes.
// CHECK-LABEL: func.func @reuse
// CHECK-SAME:    (%[[X:.+]]: tensor<4x64xf32> {treni.offset = 0 : i64})
// CHECK-SAME:    attributes {treni.arena_row_bytes = 0 : i64, treni.arena_static_bytes = 2048 : i64}
// CHECK:         %[[W:.+]] = treni.weight "w" : tensor<64x64xf32>
// CHECK:         %[[A:.+]] = treni.silu %[[X]] {treni.offsets = array<i64: 1024>}
// CHECK:         %[[B:.+]] = treni.silu %[[A]] {treni.offsets = array<i64: 0>}
// CHECK:         %[[C:.+]] = treni.silu %[[B]] {treni.offsets = array<i64: 1024>}
// CHECK:         %[[D:.+]] = treni.linear %[[C]], %[[W]] {treni.offsets = array<i64: 0>}
// CHECK:         return %[[D]]
// REPORT: remark: arena for @reuse: 2048 bytes + 0 bytes per token
func.func @reuse(%x: tensor<4x64xf32>) -> tensor<4x64xf32> {
  %w = treni.weight "w" : tensor<64x64xf32>
  %a = treni.silu %x : tensor<4x64xf32>
  %b = treni.silu %a : tensor<4x64xf32>
  %c = treni.silu %b : tensor<4x64xf32>
  %d = treni.linear %c, %w : (tensor<4x64xf32>, tensor<64x64xf32>) -> tensor<4x64xf32>
  return %d : tensor<4x64xf32>
}

// -----

// Tests that allocation is first-fit: the first gap big enough wins, a
// smaller one before it is skipped.
// 1x64xf32 is 256 bytes, 2x64xf32 512:
//   %s -> 0, %l -> 256, %keep -> 768 (arguments, back to back);
//   %t -> 1024 (everything below is live);
//   %u -> 1280 (%s freed, but the 256-byte gap at 0 is too small for 512);
//   %v -> 0 (%l freed: [0, 768) is free);
//   %w -> 256 (%t freed; [256, 768) between %v and %keep fits exactly).
// Peak: 1280 + 512 = 1792 bytes.
// CHECK-LABEL: func.func @first_fit
// CHECK-SAME:    (%[[S:.+]]: tensor<1x64xf32> {treni.offset = 0 : i64}, %[[L:.+]]: tensor<2x64xf32> {treni.offset = 256 : i64}, %[[KEEP:.+]]: tensor<1x64xf32> {treni.offset = 768 : i64})
// CHECK-SAME:    attributes {treni.arena_row_bytes = 0 : i64, treni.arena_static_bytes = 1792 : i64}
// CHECK:         %[[T:.+]] = treni.add %[[S]], %[[KEEP]] {treni.offsets = array<i64: 1024>}
// CHECK:         %[[U:.+]] = treni.mul %[[L]], %[[L]] {treni.offsets = array<i64: 1280>}
// CHECK:         %[[V:.+]] = treni.silu %[[T]] {treni.offsets = array<i64: 0>}
// CHECK:         %[[W:.+]] = treni.mul %[[U]], %[[U]] {treni.offsets = array<i64: 256>}
// CHECK:         return %[[V]], %[[W]], %[[KEEP]]
// REPORT: remark: arena for @first_fit: 1792 bytes + 0 bytes per token
func.func @first_fit(%s: tensor<1x64xf32>, %l: tensor<2x64xf32>, %keep: tensor<1x64xf32>) -> (tensor<1x64xf32>, tensor<2x64xf32>, tensor<1x64xf32>) {
  %t = treni.add %s, %keep : (tensor<1x64xf32>, tensor<1x64xf32>) -> tensor<1x64xf32>
  %u = treni.mul %l, %l : tensor<2x64xf32>
  %v = treni.silu %t : tensor<1x64xf32>
  %w = treni.mul %u, %u : tensor<2x64xf32>
  return %v, %w, %keep : tensor<1x64xf32>, tensor<2x64xf32>, tensor<1x64xf32>
}

// -----

// Tests that a result nobody uses is freed right after its op, and that a
// non-tensor argument gets no offset:
//   %x -> 0; %dead -> 256; %y -> 256 (%dead freed, %x still live).
// Peak: 512 bytes.
// CHECK-LABEL: func.func @dead_result
// CHECK-SAME:    (%[[X:.+]]: tensor<1x64xf32> {treni.offset = 0 : i64}, %{{.+}}: i32)
// CHECK-SAME:    attributes {treni.arena_row_bytes = 0 : i64, treni.arena_static_bytes = 512 : i64}
// CHECK:         treni.silu %[[X]] {treni.offsets = array<i64: 256>}
// CHECK:         %[[Y:.+]] = treni.silu %[[X]] {treni.offsets = array<i64: 256>}
// CHECK:         return %[[Y]]
// REPORT: remark: arena for @dead_result: 512 bytes + 0 bytes per token
func.func @dead_result(%x: tensor<1x64xf32>, %flag: i32) -> tensor<1x64xf32> {
  %dead = treni.silu %x : tensor<1x64xf32>
  %y = treni.silu %x : tensor<1x64xf32>
  return %y : tensor<1x64xf32>
}

// -----

// Tests that an op with several results gets one offset per result, side by
// side: %x -> 0; %a -> 256; %b (512 bytes) -> 512. Peak: 1024 bytes.
// CHECK-LABEL: func.func @multi_result
// CHECK-SAME:    attributes {treni.arena_row_bytes = 0 : i64, treni.arena_static_bytes = 1024 : i64}
// CHECK:         %[[R:.+]]:2 = treni.kernel "pair"(%{{.+}}) {constants = {}, origin = "test", treni.offsets = array<i64: 256, 512>}
// CHECK:         return %[[R]]#0, %[[R]]#1
// REPORT: remark: arena for @multi_result: 1024 bytes + 0 bytes per token
func.func @multi_result(%x: tensor<1x64xf32>) -> (tensor<1x64xf32>, tensor<2x64xf32>) {
  %a, %b = treni.kernel "pair" (%x) {constants = {}, origin = "test"} : (tensor<1x64xf32>) -> (tensor<1x64xf32>, tensor<2x64xf32>)
  return %a, %b : tensor<1x64xf32>, tensor<2x64xf32>
}

// -----

// Tests that token-dynamic buffers are planned per row in their own arena,
// apart from the static ones, and that an op without results (the cache
// write) gets no offsets. Row sizes: ?xi32 is 4 -> 64, ?x64xf32 is 256.
//   rows:   %ids -> 0, %pos -> 64; %h -> 128; %n -> 384 (%ids freed, but
//           [0, 64) is too small); %r -> 128 (%h freed; [128, 384) fits).
//           Peak: 384 + 256 = 640 bytes per token.
//   static: %last (1x64xf32, 256) -> 0; %logits (1x128xf32, 512) -> 256.
//           Peak: 768 bytes.
// CHECK-LABEL: func.func @prefill
// CHECK-SAME:    (%[[IDS:.+]]: tensor<?xi32> {treni.offset = 0 : i64}, %[[POS:.+]]: tensor<?xi32> {treni.offset = 64 : i64})
// CHECK-SAME:    attributes {treni.arena_row_bytes = 640 : i64, treni.arena_static_bytes = 768 : i64}
// CHECK:         %[[H:.+]] = treni.embedding %[[IDS]], %{{.+}} {treni.offsets = array<i64: 128>}
// CHECK:         %[[N:.+]] = treni.rms_norm %[[H]], %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, treni.offsets = array<i64: 384>}
// CHECK:         %[[R:.+]] = treni.rope %[[N]], %[[POS]] {head_dim = 16 : i64, theta = 1.000000e+04 : f64, treni.offsets = array<i64: 128>}
// CHECK:         treni.cache_write %[[R]], %[[R]], %[[POS]] {cache = @kv, layer = 0 : i64} :
// CHECK:         %[[LAST:.+]] = treni.take_last %[[R]] {treni.offsets = array<i64: 0>}
// CHECK:         %[[LOGITS:.+]] = treni.linear %[[LAST]], %{{.+}} {treni.offsets = array<i64: 256>}
// CHECK:         return %[[LOGITS]]
// REPORT: remark: arena for @prefill: 768 bytes + 640 bytes per token
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 4 : i64, head_dim = 16 : i64} : f32
func.func @prefill(%ids: tensor<?xi32>, %pos: tensor<?xi32>) -> tensor<1x128xf32> {
  %table = treni.weight "embed" : tensor<128x64xf32>
  %ln = treni.weight "ln" : tensor<64xf32>
  %h = treni.embedding %ids, %table : (tensor<?xi32>, tensor<128x64xf32>) -> tensor<?x64xf32>
  %n = treni.rms_norm %h, %ln {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
  %r = treni.rope %n, %pos {head_dim = 16 : i64, theta = 1.0e4 : f64} : (tensor<?x64xf32>, tensor<?xi32>) -> tensor<?x64xf32>
  treni.cache_write %r, %r, %pos {cache = @kv, layer = 0 : i64} : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?xi32>
  %last = treni.take_last %r : (tensor<?x64xf32>) -> tensor<1x64xf32>
  %logits = treni.linear %last, %table : (tensor<1x64xf32>, tensor<128x64xf32>) -> tensor<1x128xf32>
  return %logits : tensor<1x128xf32>
}

// -----

// Tests that `alignment` and `row-alignment` set the rounding of static
// buffers and of dynamic rows. ?x24xf16 is 48 bytes per row, 3x24xf16 144
// bytes.
//   Defaults (256 / 64): %x -> row 0 (64), %y -> 0 (256); %a -> row 64,
//   %b -> 256. Rows: 128 bytes; static: 512 bytes.
//   alignment=64 row-alignment=16: %x -> row 0 (48), %y -> 0 (192);
//   %a -> row 48, %b -> 192. Rows: 96 bytes; static: 384 bytes.
// CHECK-LABEL: func.func @aligned
// CHECK-SAME:    (%[[X:.+]]: tensor<?x24xf16> {treni.offset = 0 : i64}, %[[Y:.+]]: tensor<3x24xf16> {treni.offset = 0 : i64})
// CHECK-SAME:    attributes {treni.arena_row_bytes = 128 : i64, treni.arena_static_bytes = 512 : i64}
// CHECK:         treni.silu %[[X]] {treni.offsets = array<i64: 64>}
// CHECK:         treni.silu %[[Y]] {treni.offsets = array<i64: 256>}
// ALIGN-LABEL: func.func @aligned
// ALIGN-SAME:    (%[[X:.+]]: tensor<?x24xf16> {treni.offset = 0 : i64}, %[[Y:.+]]: tensor<3x24xf16> {treni.offset = 0 : i64})
// ALIGN-SAME:    attributes {treni.arena_row_bytes = 96 : i64, treni.arena_static_bytes = 384 : i64}
// ALIGN:         treni.silu %[[X]] {treni.offsets = array<i64: 48>}
// ALIGN:         treni.silu %[[Y]] {treni.offsets = array<i64: 192>}
// REPORT: remark: arena for @aligned: 512 bytes + 128 bytes per token
func.func @aligned(%x: tensor<?x24xf16>, %y: tensor<3x24xf16>) -> (tensor<?x24xf16>, tensor<3x24xf16>) {
  %a = treni.silu %x : tensor<?x24xf16>
  %b = treni.silu %y : tensor<3x24xf16>
  return %a, %b : tensor<?x24xf16>, tensor<3x24xf16>
}

// -----

// Tests that an argument with a dynamic dimension other than the leading one
// is rejected: a per-row plan cannot size it.
// REPORT: error: 'func.func' op cannot plan 'tensor<4x?xf32>': only the leading dimension may be dynamic
// REPORT-NOT: remark: arena for @bad_argument
// expected-error @+1 {{'func.func' op cannot plan 'tensor<4x?xf32>': only the leading dimension may be dynamic}}
func.func @bad_argument(%x: tensor<4x?xf32>) {
  return
}

// -----

// Tests that a computed value with a dynamic dimension other than the leading
// one is rejected at the op that defines it.
// REPORT: error: 'treni.kernel' op cannot plan 'tensor<?x?xf32>': only the leading dimension may be dynamic
// REPORT-NOT: remark: arena for @bad_result
func.func @bad_result(%x: tensor<?x64xf32>) -> tensor<?x?xf32> {
  // expected-error @+1 {{'treni.kernel' op cannot plan 'tensor<?x?xf32>': only the leading dimension may be dynamic}}
  %y = treni.kernel "reshape" (%x) {constants = {}, origin = "test"} : (tensor<?x64xf32>) -> tensor<?x?xf32>
  return %y : tensor<?x?xf32>
}

// -----

// Tests that an empty tensor still gets its own slot instead of aliasing a live
// buffer (a zero-byte allocation used to land on an occupied offset). %z is
// never read, so its slot is free again by the time the silu is placed.
// CHECK-LABEL: func.func @empty_tensor
// CHECK-SAME:    %{{.+}}: tensor<4x64xf32> {treni.offset = 0 : i64}
// CHECK-SAME:    %{{.+}}: tensor<0x64xf32> {treni.offset = 1024 : i64}
// CHECK:         treni.silu {{.+}} {treni.offsets = array<i64: 1024>}
func.func @empty_tensor(%x: tensor<4x64xf32>, %z: tensor<0x64xf32>) -> tensor<4x64xf32> {
  %y = treni.silu %x : tensor<4x64xf32>
  return %y : tensor<4x64xf32>
}
