// RUN: treni-opt %s -split-input-file -treni-fuse-residual-norm | FileCheck %s
// RUN: treni-opt %s -split-input-file -treni-fuse-residual-norm -treni-outline-kernels | FileCheck %s --check-prefix=KERNEL
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-fuse-residual-norm})" | FileCheck %s --check-prefix=OFF

// Tests that a residual add read by a full-row rms_norm becomes one
// treni.residual_norm; the next residual add keeps reading the sum, and the
// norm's weight moves above the fused op.
// CHECK-LABEL: func.func @layer
// CHECK-SAME:    (%[[H:.+]]: tensor<?x64xf32>, %[[O:.+]]: tensor<?x64xbf16>, %[[D:.+]]: tensor<?x64xbf16>)
// CHECK:         %[[W:.+]] = treni.weight "ln" : tensor<64xbf16>
// CHECK-NOT:     treni.rms_norm
// CHECK:         %[[S:.+]], %[[N:.+]] = treni.residual_norm %[[H]], %[[O]], %[[W]] {epsilon = 9.9999999999999995E-7 : f64} : (tensor<?x64xf32>, tensor<?x64xbf16>, tensor<64xbf16>) -> (tensor<?x64xf32>, tensor<?x64xbf16>)
// CHECK:         %[[M:.+]] = treni.mul %[[N]], %[[D]] : tensor<?x64xbf16>
// CHECK:         %[[NEXT:.+]] = treni.add %[[S]], %[[M]] : (tensor<?x64xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
// CHECK:         return %[[NEXT]]
// KERNEL-LABEL: func.func @layer
// KERNEL:         treni.kernel "residual_norm"(%{{.+}}, %{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, epsilon = 9.9999999999999995E-7 : f64}, origin = "treni.residual_norm"} : (tensor<?x64xf32>, tensor<?x64xbf16>, tensor<64xbf16>) -> (tensor<?x64xf32>, tensor<?x64xbf16>)
// OFF-LABEL: func.func @layer
// OFF-NOT:     "residual_norm"
// OFF:         treni.kernel "add"
// OFF:         treni.kernel "rms_norm"
func.func @layer(%h: tensor<?x64xf32>, %o: tensor<?x64xbf16>, %d: tensor<?x64xbf16>) -> tensor<?x64xf32> {
  %s = treni.add %h, %o : (tensor<?x64xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
  %w = treni.weight "ln" : tensor<64xbf16>
  %n = treni.rms_norm %s, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xbf16>
  %m = treni.mul %n, %d : tensor<?x64xbf16>
  %next = treni.add %s, %m : (tensor<?x64xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
  return %next : tensor<?x64xf32>
}

// -----

// Tests that in @decode the last residual add fuses with the final norm that
// feeds the logits (the sum has no other user).
// CHECK-LABEL: func.func @final_norm
// CHECK-NOT:     treni.add
// CHECK:         %{{.+}}, %[[N:.+]] = treni.residual_norm %{{.+}}, %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x64xf32>, tensor<1x64xbf16>, tensor<64xbf16>) -> (tensor<1x64xf32>, tensor<1x64xbf16>)
// CHECK:         %[[L:.+]] = treni.linear %[[N]], %{{.+}} : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xf32>
// CHECK:         return %[[L]]
func.func @final_norm(%h: tensor<1x64xf32>, %d: tensor<1x64xbf16>) -> tensor<1x128xf32> {
  %s = treni.add %h, %d : (tensor<1x64xf32>, tensor<1x64xbf16>) -> tensor<1x64xf32>
  %w = treni.weight "norm" : tensor<64xbf16>
  %n = treni.rms_norm %s, %w {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
  %head = treni.weight "head" : tensor<128x64xbf16>
  %l = treni.linear %n, %head : (tensor<1x64xbf16>, tensor<128x64xbf16>) -> tensor<1x128xf32>
  return %l : tensor<1x128xf32>
}

// -----

// Tests that an add no rms_norm reads (prefill's last add feeds take_last) is
// left alone.
// CHECK-LABEL: func.func @no_norm
// CHECK-NOT:     treni.residual_norm
// CHECK:         treni.add
// CHECK:         treni.take_last
// CHECK:         treni.rms_norm
func.func @no_norm(%h: tensor<?x64xf32>, %d: tensor<?x64xbf16>) -> tensor<1x64xbf16> {
  %s = treni.add %h, %d : (tensor<?x64xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
  %t = treni.take_last %s : (tensor<?x64xf32>) -> tensor<1x64xf32>
  %w = treni.weight "norm" : tensor<64xbf16>
  %n = treni.rms_norm %t, %w {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
  return %n : tensor<1x64xbf16>
}

// -----

// Tests that a per-head norm (weight narrower than the row) is not fused.
// CHECK-LABEL: func.func @per_head
// CHECK-NOT:     treni.residual_norm
// CHECK:         treni.add
// CHECK:         treni.rms_norm
func.func @per_head(%h: tensor<?x64xf32>, %d: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %s = treni.add %h, %d : (tensor<?x64xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
  %w = treni.weight "q_norm" : tensor<16xbf16>
  %n = treni.rms_norm %s, %w {epsilon = 1.0e-6 : f64} : (tensor<?x64xf32>, tensor<16xbf16>) -> tensor<?x64xbf16>
  return %n : tensor<?x64xbf16>
}

// -----

// Tests that a unit_offset norm (Qwen3.5) is left alone: residual_norm applies
// the weight as is. The outlined rms_norm keeps the flag in its constants.
// CHECK-LABEL: func.func @unit_offset
// CHECK-NOT:     treni.residual_norm
// CHECK:         %[[S:.+]] = treni.add
// CHECK:         treni.rms_norm %[[S]], %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, unit_offset} : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xbf16>
// KERNEL-LABEL: func.func @unit_offset
// KERNEL:         treni.kernel "add"
// KERNEL:         treni.kernel "rms_norm"(%{{.+}}, %{{.+}}) {constants = {dim = 64 : i64, epsilon = 9.9999999999999995E-7 : f64, group = 64 : i64, unit_offset = true}, origin = "treni.rms_norm"}
// OFF-LABEL: func.func @unit_offset
// OFF:         treni.kernel "rms_norm"{{.*}}unit_offset = true
func.func @unit_offset(%h: tensor<?x64xf32>, %o: tensor<?x64xbf16>) -> (tensor<?x64xf32>, tensor<?x64xbf16>) {
  %s = treni.add %h, %o : (tensor<?x64xf32>, tensor<?x64xbf16>) -> tensor<?x64xf32>
  %w = treni.weight "ln" : tensor<64xbf16>
  %n = treni.rms_norm %s, %w {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<?x64xf32>, tensor<64xbf16>) -> tensor<?x64xbf16>
  return %s, %n : tensor<?x64xf32>, tensor<?x64xbf16>
}
