// RUN: treni-opt %s | treni-opt | FileCheck %s
// RUN: treni-opt %s -mlir-print-op-generic | treni-opt | FileCheck %s

// Tests that treni.residual_norm and treni.attention_seq1 round-trip through
// the custom and generic forms.
treni.kv_cache @kv {num_layers = 1 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64} : bf16
// CHECK-LABEL: func.func @fused
func.func @fused(%h: tensor<1x64xf32>, %o: tensor<1x64xbf16>, %w: tensor<64xbf16>, %pos: tensor<1xi32>) -> tensor<1x64xbf16> {
  // CHECK: %{{.+}}, %[[N:.+]] = treni.residual_norm %{{.+}}, %{{.+}}, %{{.+}} {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x64xf32>, tensor<1x64xbf16>, tensor<64xbf16>) -> (tensor<1x64xf32>, tensor<1x64xbf16>)
  %s, %n = treni.residual_norm %h, %o, %w {epsilon = 1.0e-6 : f64} : (tensor<1x64xf32>, tensor<1x64xbf16>, tensor<64xbf16>) -> (tensor<1x64xf32>, tensor<1x64xbf16>)
  // CHECK: treni.attention_seq1 %[[N]], %{{.+}} {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, num_splits = 8 : i64, scale = 2.500000e-01 : f64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
  %a = treni.attention_seq1 %n, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, scale = 0.25 : f64, num_splits = 8 : i64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
  return %a : tensor<1x64xbf16>
}
