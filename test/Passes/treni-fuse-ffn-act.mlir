// RUN: treni-opt %s -split-input-file -treni-fuse-ffn-act | FileCheck %s
// RUN: treni-opt %s -split-input-file -pass-pipeline="builtin.module(treni-default-pipeline{disable=treni-fuse-ffn-act,treni-outline-kernels,treni-plan-buffers})" | FileCheck %s --check-prefix=OFF

// Tests that the gate and up projections feeding silu * mul become one GEMM
// over the concatenated weight and one silu_mul written in the activation type.
// CHECK-LABEL: func.func @ffn
// CHECK-SAME:    (%[[X:.+]]: tensor<?x64xbf16>)
// CHECK-DAG:     %[[WG:.+]] = treni.weight "gate" : tensor<128x64xbf16>
// CHECK-DAG:     %[[WU:.+]] = treni.weight "up" : tensor<128x64xbf16>
// CHECK:         %[[W:.+]] = treni.concat %[[WG]], %[[WU]] : (tensor<128x64xbf16>, tensor<128x64xbf16>) -> tensor<256x64xbf16>
// CHECK:         %[[GU:.+]] = treni.linear %[[X]], %[[W]] : (tensor<?x64xbf16>, tensor<256x64xbf16>) -> tensor<?x256xbf16>
// CHECK-NOT:     treni.silu %
// CHECK-NOT:     treni.mul
// CHECK:         %[[M:.+]] = treni.silu_mul %[[GU]] : (tensor<?x256xbf16>) -> tensor<?x128xbf16>
// CHECK:         return %[[M]]
// OFF-LABEL:     func.func @ffn
// OFF-NOT:       treni.concat
// OFF:           treni.silu
// OFF:           treni.mul
func.func @ffn(%x: tensor<?x64xbf16>) -> tensor<?x128xbf16> {
  %wg = treni.weight "gate" : tensor<128x64xbf16>
  %wu = treni.weight "up" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m : tensor<?x128xbf16>
}

// -----

// Tests that projections with a bias are left alone.
// CHECK-LABEL: func.func @ffn_bias
// CHECK-NOT:     treni.concat
// CHECK-NOT:     treni.silu_mul
// CHECK:         treni.silu
// CHECK:         treni.mul
func.func @ffn_bias(%x: tensor<?x64xbf16>) -> tensor<?x128xbf16> {
  %wg = treni.weight "gate" : tensor<128x64xbf16>
  %bg = treni.weight "gate.bias" : tensor<128xbf16>
  %wu = treni.weight "up" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg, %bg : (tensor<?x64xbf16>, tensor<128x64xbf16>, tensor<128xbf16>) -> tensor<?x128xbf16>
  %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m : tensor<?x128xbf16>
}

// -----

// Tests that a gate projection with a second user is left alone.
// CHECK-LABEL: func.func @ffn_multi_use
// CHECK-NOT:     treni.silu_mul
// CHECK:         return
func.func @ffn_multi_use(%x: tensor<?x64xbf16>) -> (tensor<?x128xbf16>, tensor<?x128xbf16>) {
  %wg = treni.weight "gate" : tensor<128x64xbf16>
  %wu = treni.weight "up" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m, %g : tensor<?x128xbf16>, tensor<?x128xbf16>
}

// -----

// Tests that an up projection with a second user is left alone.
// CHECK-LABEL: func.func @ffn_up_multi_use
// CHECK-NOT:     treni.silu_mul
// CHECK:         return
func.func @ffn_up_multi_use(%x: tensor<?x64xbf16>) -> (tensor<?x128xbf16>, tensor<?x128xbf16>) {
  %wg = treni.weight "gate" : tensor<128x64xbf16>
  %wu = treni.weight "up" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m, %u : tensor<?x128xbf16>, tensor<?x128xbf16>
}

// -----

// Tests that gate and up projections of different inputs are left alone.
// CHECK-LABEL: func.func @ffn_two_inputs
// CHECK-NOT:     treni.silu_mul
// CHECK:         return
func.func @ffn_two_inputs(%x: tensor<?x64xbf16>, %y: tensor<?x64xbf16>) -> tensor<?x128xbf16> {
  %wg = treni.weight "gate" : tensor<128x64xbf16>
  %wu = treni.weight "up" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %u = treni.linear %y, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m : tensor<?x128xbf16>
}

// -----

// Tests that weights of different types are left alone (here the gate
// weight is f32, the up weight bf16: the concatenation needs one type).
// CHECK-LABEL: func.func @ffn_weight_types
// CHECK-NOT:     treni.silu_mul
// CHECK:         return
func.func @ffn_weight_types(%x: tensor<?x64xbf16>) -> tensor<?x128xbf16> {
  %wg = treni.weight "gate" : tensor<128x64xf32>
  %wu = treni.weight "up" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xf32>) -> tensor<?x128xbf16>
  %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m : tensor<?x128xbf16>
}

// -----

// Tests that a weight that is not a checkpoint tensor (here a function
// argument) is left alone: only weights can be concatenated.
// CHECK-LABEL: func.func @ffn_weight_argument
// CHECK-NOT:     treni.silu_mul
// CHECK:         return
func.func @ffn_weight_argument(%x: tensor<?x64xbf16>, %wu: tensor<128x64xbf16>) -> tensor<?x128xbf16> {
  %wg = treni.weight "gate" : tensor<128x64xbf16>
  %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
  %s = treni.silu %g : tensor<?x128xbf16>
  %m = treni.mul %s, %u : tensor<?x128xbf16>
  return %m : tensor<?x128xbf16>
}
