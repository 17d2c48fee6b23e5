// RUN: treni-opt %s -split-input-file -treni-fuse-matvec | FileCheck %s
// RUN: treni-opt %s -split-input-file -treni-fuse-matvec -treni-outline-kernels | FileCheck %s --check-prefix=KERNEL
// RUN: treni-opt %s -split-input-file -treni-fuse-matvec="fold-norm=false fold-gated=false fold-residual=false" | FileCheck %s --check-prefix=PLAIN
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-fuse-matvec,treni-plan-buffers})" | FileCheck %s --check-prefix=OFF
// RUN: treni-opt %s -split-input-file -treni-fuse-matvec="fold-norm-max-width=32" | FileCheck %s --check-prefix=NARROW

// Tests a decode layer's MLP half: the residual_norm between the O projection
// and gate/up is split, its add folds into O's matvec (residual) and its norm
// into gate/up's (norm), silu_mul folds into gate/up (gated), and the next
// residual add into down's matvec. Nothing but matvecs is left.
// CHECK-LABEL: func.func @mlp
// CHECK-SAME:    (%[[A:.+]]: tensor<1x64xbf16>, %[[H:.+]]: tensor<1x64xf32>)
// CHECK-DAG:     %[[WO:.+]] = treni.weight "o"
// CHECK-DAG:     %[[G:.+]] = treni.weight "ln"
// CHECK:         %[[S:.+]] = treni.matvec %[[A]], %[[WO]] residual %[[H]] : (tensor<1x64xbf16>, tensor<64x64xbf16>, tensor<1x64xf32>) -> tensor<1x64xf32>
// CHECK:         %[[WGU:.+]] = treni.weight "gu"
// CHECK:         %[[ACT:.+]] = treni.matvec %[[S]], %[[WGU]] norm %[[G]] {epsilon = 9.9999999999999995E-7 : f64, gated} : (tensor<1x64xf32>, tensor<320x64xbf16>, tensor<64xbf16>) -> tensor<1x160xbf16>
// CHECK:         %[[WD:.+]] = treni.weight "down"
// CHECK:         %[[NEXT:.+]] = treni.matvec %[[ACT]], %[[WD]] residual %[[S]] : (tensor<1x160xbf16>, tensor<64x160xbf16>, tensor<1x64xf32>) -> tensor<1x64xf32>
// CHECK:         return %[[NEXT]]
// CHECK-NOT:     treni.residual_norm
// CHECK-NOT:     treni.silu_mul
// KERNEL-LABEL: func.func @mlp
// KERNEL:         treni.kernel "gemv"(%{{.+}}, %[[WO:.+]], %[[WO]], %[[WO]], %{{.+}}) {constants = {bias = false, gated = false, k = 64 : i64, n = 64 : i64, norm = false, residual = true}, origin = "treni.matvec"}
// KERNEL:         treni.kernel "gemv"(%{{.+}}, %[[WGU:.+]], %[[WGU]], %{{.+}}, %[[WGU]]) {constants = {bias = false, epsilon = 9.9999999999999995E-7 : f64, gated = true, k = 64 : i64, n = 320 : i64, norm = true, residual = false}, origin = "treni.matvec"}
// PLAIN-LABEL: func.func @mlp
// PLAIN:         treni.matvec %{{.+}}, %{{.+}} : (tensor<1x64xbf16>, tensor<64x64xbf16>) -> tensor<1x64xbf16>
// PLAIN:         treni.residual_norm
// PLAIN:         treni.matvec %{{.+}}, %{{.+}} : (tensor<1x64xbf16>, tensor<320x64xbf16>) -> tensor<1x320xbf16>
// PLAIN:         treni.silu_mul
// PLAIN:         treni.matvec
// PLAIN:         treni.add
// Rows wider than fold-norm-max-width keep their norm: residual_norm stays one
// kernel, the other folds still happen.
// NARROW-LABEL: func.func @mlp
// NARROW:         %[[O:.+]] = treni.matvec %{{.+}}, %{{.+}} : (tensor<1x64xbf16>, tensor<64x64xbf16>) -> tensor<1x64xbf16>
// NARROW:         %[[S:.+]], %[[N:.+]] = treni.residual_norm %{{.+}}, %[[O]], %{{.+}}
// NARROW:         %[[ACT:.+]] = treni.matvec %[[N]], %{{.+}} {gated} : (tensor<1x64xbf16>, tensor<320x64xbf16>) -> tensor<1x160xbf16>
// NARROW:         treni.matvec %[[ACT]], %{{.+}} residual %[[S]]
// OFF-LABEL: func.func @mlp
// OFF-NOT:     "gemv"
// OFF:         treni.kernel "gemm"
// OFF:         treni.kernel "residual_norm"
// OFF:         treni.kernel "gemm"
// OFF:         treni.kernel "silu_mul"
func.func @mlp(%a: tensor<1x64xbf16>, %h: tensor<1x64xf32>) -> tensor<1x64xf32> {
  %wo = treni.weight "o" : tensor<64x64xbf16>
  %o = treni.linear %a, %wo : (tensor<1x64xbf16>, tensor<64x64xbf16>) -> tensor<1x64xbf16>
  %g = treni.weight "ln" : tensor<64xbf16>
  %s, %n = treni.residual_norm %h, %o, %g {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<1x64xbf16>, tensor<64xbf16>) -> (tensor<1x64xf32>, tensor<1x64xbf16>)
  %wgu = treni.weight "gu" : tensor<320x64xbf16>
  %gu = treni.linear %n, %wgu : (tensor<1x64xbf16>, tensor<320x64xbf16>) -> tensor<1x320xbf16>
  %act = treni.silu_mul %gu : (tensor<1x320xbf16>) -> tensor<1x160xbf16>
  %wd = treni.weight "down" : tensor<64x160xbf16>
  %d = treni.linear %act, %wd : (tensor<1x160xbf16>, tensor<64x160xbf16>) -> tensor<1x64xbf16>
  %next = treni.add %s, %d : (tensor<1x64xf32>, tensor<1x64xbf16>) -> tensor<1x64xf32>
  return %next : tensor<1x64xf32>
}

// -----

// Tests the first layer's input norm (a plain rms_norm of the embedding) and
// a bias: both fold into the QKV matvec.
// NARROW-LABEL: func.func @qkv
// NARROW:         treni.rms_norm
// NARROW:         treni.matvec %{{.+}}, %{{.+}} bias %{{.+}} : (tensor<1x64xbf16>, tensor<128x64xbf16>, tensor<128xbf16>) -> tensor<1x128xbf16>
// CHECK-LABEL: func.func @qkv
// CHECK-NOT:     treni.rms_norm
// CHECK:         treni.matvec %{{.+}}, %{{.+}} bias %{{.+}} norm %{{.+}} {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x64xf32>, tensor<128x64xbf16>, tensor<128xbf16>, tensor<64xbf16>) -> tensor<1x128xbf16>
func.func @qkv(%e: tensor<1x64xf32>) -> tensor<1x128xbf16> {
  %g = treni.weight "ln" : tensor<64xbf16>
  %n = treni.rms_norm %e, %g {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
  %w = treni.weight "qkv" : tensor<128x64xbf16>
  %b = treni.weight "qkv_bias" : tensor<128xbf16>
  %y = treni.linear %n, %w, %b : (tensor<1x64xbf16>, tensor<128x64xbf16>, tensor<128xbf16>) -> tensor<1x128xbf16>
  return %y : tensor<1x128xbf16>
}

// -----

// Tests what must not fold: a norm whose result is also returned (another
// user), a silu_mul of a linear whose result is also returned, an f32 logits
// output is a plain matvec.
// CHECK-LABEL: func.func @shared
// CHECK:         %[[N:.+]] = treni.rms_norm
// CHECK:         %[[Y:.+]] = treni.matvec %[[N]], %{{.+}} : (tensor<1x64xbf16>, tensor<320x64xbf16>) -> tensor<1x320xbf16>
// CHECK:         treni.silu_mul %[[Y]]
// CHECK:         treni.matvec %{{.+}}, %{{.+}} : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xf32>
func.func @shared(%e: tensor<1x64xf32>) -> (tensor<1x64xbf16>, tensor<1x320xbf16>, tensor<1x160xbf16>, tensor<1x128xf32>) {
  %g = treni.weight "ln" : tensor<64xbf16>
  %n = treni.rms_norm %e, %g {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
  %w = treni.weight "gu" : tensor<320x64xbf16>
  %y = treni.linear %n, %w : (tensor<1x64xbf16>, tensor<320x64xbf16>) -> tensor<1x320xbf16>
  %act = treni.silu_mul %y : (tensor<1x320xbf16>) -> tensor<1x160xbf16>
  %head = treni.weight "head" : tensor<128x64xbf16>
  %l = treni.linear %n, %head : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xf32>
  return %n, %y, %act, %l : tensor<1x64xbf16>, tensor<1x320xbf16>, tensor<1x160xbf16>, tensor<1x128xf32>
}

// -----

// Tests that prefill's linears (dynamic rows) and a one-row linear whose row
// is not whole 16-byte chunks (60 bf16 values) stay treni.linear.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT:     treni.matvec
// CHECK:         treni.linear %{{.+}} : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
// CHECK:         treni.linear %{{.+}} : (tensor<1x60xbf16>, tensor<64x60xbf16>) -> tensor<1x64xbf16>
func.func @left_alone(%x: tensor<?x64xbf16>, %z: tensor<1x60xbf16>) -> (tensor<?x64xbf16>, tensor<1x64xbf16>) {
  %w = treni.weight "w" : tensor<64x64xbf16>
  %y = treni.linear %x, %w : (tensor<?x64xbf16>, tensor<64x64xbf16>) -> tensor<?x64xbf16>
  %v = treni.weight "v" : tensor<64x60xbf16>
  %u = treni.linear %z, %v : (tensor<1x60xbf16>, tensor<64x60xbf16>) -> tensor<1x64xbf16>
  return %y, %u : tensor<?x64xbf16>, tensor<1x64xbf16>
}

// -----

// Tests that a unit_offset norm (Qwen3.5) does not fold: the gemv prologue
// applies the weight as is. The matvec reads the norm's result, which the
// outlined rms_norm kernel computes with unit_offset.
// CHECK-LABEL: func.func @unit_offset_norm
// CHECK:         %[[N:.+]] = treni.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, unit_offset} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
// CHECK:         treni.matvec %[[N]], %{{.+}} : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xbf16>
// KERNEL-LABEL: func.func @unit_offset_norm
// KERNEL:         treni.kernel "rms_norm"(%{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, epsilon = 9.9999999999999995E-7 : f64, group = 64 : i64, unit_offset = true}, origin = "treni.rms_norm"}
// KERNEL:         treni.kernel "gemv"(%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}) {constants = {bias = false, gated = false, k = 64 : i64, n = 128 : i64, norm = false, residual = false}, origin = "treni.matvec"}
func.func @unit_offset_norm(%e: tensor<1x64xf32>) -> tensor<1x128xbf16> {
  %g = treni.weight "ln" : tensor<64xbf16>
  %n = treni.rms_norm %e, %g {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
  %w = treni.weight "qkv" : tensor<128x64xbf16>
  %y = treni.linear %n, %w : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xbf16>
  return %y : tensor<1x128xbf16>
}
