// RUN: treni-opt %s | treni-opt | FileCheck %s
// RUN: treni-opt %s -mlir-print-op-generic | treni-opt | FileCheck %s

// Tests that treni.matvec round-trips with every optional part: bias, norm,
// residual and gated.
// CHECK-LABEL: func.func @matvec
// CHECK: treni.matvec %{{.+}}, %{{.+}} bias %{{.+}} norm %{{.+}} {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x64xf32>, tensor<128x64xbf16>, tensor<128xbf16>, tensor<64xbf16>) -> tensor<1x128xbf16>
// CHECK: treni.matvec %{{.+}}, %{{.+}} residual %{{.+}} : (tensor<1x64xbf16>, tensor<64x64xbf16>, tensor<1x64xf32>) -> tensor<1x64xf32>
// CHECK: treni.matvec %{{.+}}, %{{.+}} norm %{{.+}} {epsilon = 9.9999999999999995E-7 : f64, gated} : (tensor<1x64xf32>, tensor<320x64xbf16>, tensor<64xbf16>) -> tensor<1x160xbf16>
func.func @matvec(%x: tensor<1x64xf32>, %a: tensor<1x64xbf16>, %wqkv: tensor<128x64xbf16>, %b: tensor<128xbf16>,
                  %g: tensor<64xbf16>, %wo: tensor<64x64xbf16>, %wgu: tensor<320x64xbf16>) -> (tensor<1x128xbf16>, tensor<1x64xf32>, tensor<1x160xbf16>) {
  %q = treni.matvec %x, %wqkv bias %b norm %g {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<128x64xbf16>, tensor<128xbf16>, tensor<64xbf16>) -> tensor<1x128xbf16>
  %s = treni.matvec %a, %wo residual %x : (tensor<1x64xbf16>, tensor<64x64xbf16>, tensor<1x64xf32>) -> tensor<1x64xf32>
  %act = treni.matvec %s, %wgu norm %g {epsilon = 1.0e-6 : f64, gated} : (tensor<1x64xf32>, tensor<320x64xbf16>, tensor<64xbf16>) -> tensor<1x160xbf16>
  return %q, %s, %act : tensor<1x128xbf16>, tensor<1x64xf32>, tensor<1x160xbf16>
}
