//===- TreniOps.td - treni dialect operations --------------*- tablegen -*-===//
#ifndef TRENI_OPS_TD
#define TRENI_OPS_TD

include "ir/TreniBase.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Treni_F64Positive : AttrConstraint<
    CPred<"::llvm::cast<::mlir::FloatAttr>($_self).getValueAsDouble() > 0.0">,
    "whose value is positive">;

/// The KV cache as a side-effect resource: it orders cache writes before the
/// attention reads of the same step, and keeps writes from being erased.
def Treni_KVCacheResource : Resource<"::treni::KVCacheResource">;

//===----------------------------------------------------------------------===//
// State and weights
//===----------------------------------------------------------------------===//

def Treni_KvCacheOp : Treni_Op<"kv_cache", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "Declares the key/value cache shared by @prefill and @decode";
  let description = [{
    Per layer, a key and a value tensor of `[max_seq, num_kv_heads * head_dim]`
    rows of `element_type`. `max_seq` is a runtime setting (`--max-seq`), not
    part of the IR.

    ```mlir
    treni.kv_cache @kv {num_layers = 24 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64} : bf16
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, ConfinedAttr<I64Attr, [IntPositive]>:$num_layers,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                   TypeAttrOf<Treni_Float>:$element_type);
  let assemblyFormat = "$sym_name attr-dict `:` $element_type";
}

def Treni_WeightOp : Treni_Op<"weight", [Pure]> {
  let summary = "A tensor of the checkpoint, referenced by name";
  let description = [{
    The data stays in the safetensors file; the module attribute
    `treni.weights` (a dictionary: name -> {file, offset, dtype, shape}) says
    where. When that map is present, the name must be in it with the same
    shape.

    ```mlir
    %w = treni.weight "model.layers.0.mlp.up_proj.weight" : tensor<4864x896xbf16>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs RankedTensorOf<[BF16, F16, F32]>:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}


def Treni_ConcatOp : Treni_Op<"concat", [Pure]> {
  let summary = "Checkpoint tensors back to back along dimension 0";
  let description = [{
    Only weights (results of `treni.weight` or of another `treni.concat`)
    may be concatenated: the plan turns the op into one weight whose data is
    its parts back to back, so it costs nothing at run time. All parts share
    the element type and the trailing dimensions; 1-D parts (biases) are
    allowed.

    ```mlir
    %w = treni.concat %wg, %wu : (tensor<4864x896xbf16>, tensor<4864x896xbf16>) -> tensor<9728x896xbf16>
    ```
  }];
  let arguments = (ins Variadic<RankedTensorOf<[BF16, F16, F32]>>:$parts);
  let results = (outs RankedTensorOf<[BF16, F16, F32]>:$result);
  let assemblyFormat = "$parts attr-dict `:` functional-type($parts, $result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Compute
//===----------------------------------------------------------------------===//

def Treni_EmbeddingOp : Treni_Op<"embedding", [Pure]> {
  let summary = "Gathers rows of the embedding table";
  let description = [{
    ```mlir
    %h = treni.embedding %ids, %table : (tensor<?xi32>, tensor<151936x896xbf16>) -> tensor<?x896xbf16>
    ```
  }];
  let arguments = (ins Treni_IndexTensor:$ids, Treni_FloatTensor2D:$table);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$ids `,` $table attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_RmsNormOp : Treni_Op<"rms_norm", [Pure]> {
  let summary = "RMS normalization over groups of the last dimension";
  let description = [{
    Each row is split into groups of `dim(weight)` elements; every group is
    scaled by `rsqrt(mean(x^2) + epsilon)` and multiplied by the weight. With a
    weight as wide as the row this is the usual RMSNorm; with a `head_dim`
    weight it is Qwen3's per-head q/k norm. The result has the input's shape;
    its element type may differ (an f32 residual stream normalised to bf16).

    With `unit_offset` (Qwen3.5's norms, whose weight is stored centred on
    zero) the factor is `1 + weight` instead: `x̂ · (1 + w)`, with `1 + w`
    and the product in f32, rounded once to the result type.

    ```mlir
    %y = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64} : (tensor<?x896xbf16>, tensor<896xbf16>) -> tensor<?x896xbf16>
    %z = treni.rms_norm %x, %w {epsilon = 1.0e-6 : f64, unit_offset} : (tensor<?x896xbf16>, tensor<896xbf16>) -> tensor<?x896xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$input, Treni_FloatTensor1D:$weight,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$epsilon,
                   UnitAttr:$unit_offset);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$input `,` $weight attr-dict `:` functional-type(operands, results)";
  // The plain norm without unit_offset, as every architecture but Qwen3.5
  // builds it.
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input,
                   "::mlir::Value":$weight, "::mlir::FloatAttr":$epsilon), [{
      build($_builder, $_state, result, input, weight, epsilon,
            ::mlir::UnitAttr());
    }]>
  ];
  let hasVerifier = 1;
}

def Treni_LinearOp : Treni_Op<"linear", [Pure]> {
  let summary = "x @ weight^T (+ bias), weight in the checkpoint's [out, in] layout";
  let description = [{
    The result element type may differ from the input's (logits are f32).

    ```mlir
    %q = treni.linear %x, %w, %b : (tensor<?x896xbf16>, tensor<896x896xbf16>, tensor<896xbf16>) -> tensor<?x896xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$input, Treni_FloatTensor2D:$weight,
                   Optional<Treni_FloatTensor1D>:$bias);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_RopeOp : Treni_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "Rotary position embedding (rotate-half layout) per head";
  let description = [{
    Rotates each `head_dim` group of a row by angles `position * inv_freq`,
    `inv_freq[i] = theta^(-2i/head_dim)`. The four `llama3_*` attributes,
    present together or not at all, apply Llama 3's frequency scaling.

    `rotary_dim` (even, 2 ..= head_dim; default head_dim) rotates only the
    first `rotary_dim` elements of each head (Qwen3.5's partial RoPE): pairs
    `(j, j + rotary_dim/2)` by `position * theta^(-2j/rotary_dim)`; elements
    `rotary_dim .. head_dim-1` pass through unchanged.

    ```mlir
    %r = treni.rope %q, %pos {head_dim = 64 : i64, theta = 1.0e+06 : f64} : (tensor<?x896xbf16>, tensor<?xi32>) -> tensor<?x896xbf16>
    %p = treni.rope %q, %pos {head_dim = 256 : i64, rotary_dim = 64 : i64, theta = 1.0e+07 : f64} : (tensor<?x2048xbf16>, tensor<?xi32>) -> tensor<?x2048xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$input, Treni_IndexTensor:$positions,
                   ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$theta,
                   OptionalAttr<F64Attr>:$llama3_factor,
                   OptionalAttr<F64Attr>:$llama3_low_freq_factor,
                   OptionalAttr<F64Attr>:$llama3_high_freq_factor,
                   OptionalAttr<I64Attr>:$llama3_original_max_position,
                   OptionalAttr<I64Attr>:$rotary_dim);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$input `,` $positions attr-dict `:` functional-type(operands, results)";
  // Whole-head RoPE (no rotary_dim), as every architecture but Qwen3.5
  // builds it.
  let builders = [
    OpBuilder<(ins "::mlir::Type":$result, "::mlir::Value":$input,
                   "::mlir::Value":$positions, "::mlir::IntegerAttr":$head_dim,
                   "::mlir::FloatAttr":$theta, "::mlir::FloatAttr":$llama3_factor,
                   "::mlir::FloatAttr":$llama3_low_freq_factor,
                   "::mlir::FloatAttr":$llama3_high_freq_factor,
                   "::mlir::IntegerAttr":$llama3_original_max_position), [{
      build($_builder, $_state, result, input, positions, head_dim, theta,
            llama3_factor, llama3_low_freq_factor, llama3_high_freq_factor,
            llama3_original_max_position, ::mlir::IntegerAttr());
    }]>
  ];
  let extraClassDeclaration = [{
    /// The rotated width of each head: rotary_dim, or the whole head.
    int64_t getRotaryWidth() {
      return getRotaryDim() ? int64_t(*getRotaryDim()) : int64_t(getHeadDim());
    }
  }];
  let hasVerifier = 1;
}

def Treni_CacheWriteOp : Treni_Op<"cache_write", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    MemoryEffects<[MemWrite<Treni_KVCacheResource>]>]> {
  let summary = "Writes key and value rows into a layer of the KV cache";
  let description = [{
    Row `i` of `key`/`value` goes to cache row `positions[i]` of layer `layer`.

    ```mlir
    treni.cache_write %k, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x128xbf16>, tensor<?x128xbf16>, tensor<?xi32>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$key, Treni_FloatTensor2D:$value,
                   Treni_IndexTensor:$positions, FlatSymbolRefAttr:$cache,
                   ConfinedAttr<I64Attr, [IntNonNegative]>:$layer);
  let assemblyFormat = "$key `,` $value `,` $positions attr-dict `:` type($key) `,` type($value) `,` type($positions)";
  let hasVerifier = 1;
}

def Treni_QkvRopeCacheOp : Treni_Op<"qkv_rope_cache", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    MemoryEffects<[MemWrite<Treni_KVCacheResource>]>]> {
  let summary = "Splits a fused Q|K|V row, norms and rotates q and k, writes k and v to the cache";
  let description = [{
    Each row of `qkv` holds `num_heads` query heads, then `num_kv_heads` key
    heads, then `num_kv_heads` value heads of `head_dim` elements. With the
    two `norms` (Qwen3's q and k norm weights, `head_dim` each) every q and k
    head is RMS-normalised with `epsilon` first. q and k are rotated as
    `treni.rope` does (same attributes); k and v are written to cache rows
    `positions[i]` of layer `layer`; the result is q, `[rows, num_heads * head_dim]`.

    ```mlir
    %q = treni.qkv_rope_cache %qkv, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e+04 : f64} : (tensor<?x128xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$qkv, Treni_IndexTensor:$positions,
                   Variadic<Treni_FloatTensor1D>:$norms,
                   FlatSymbolRefAttr:$cache, ConfinedAttr<I64Attr, [IntNonNegative]>:$layer,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$theta,
                   OptionalAttr<F64Attr>:$llama3_factor,
                   OptionalAttr<F64Attr>:$llama3_low_freq_factor,
                   OptionalAttr<F64Attr>:$llama3_high_freq_factor,
                   OptionalAttr<I64Attr>:$llama3_original_max_position,
                   OptionalAttr<F64Attr>:$epsilon);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$qkv `,` $positions (`,` $norms^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_AttentionOp : Treni_Op<"attention", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    MemoryEffects<[MemRead<Treni_KVCacheResource>]>,
    AllTypesMatch<["query", "result"]>]> {
  let summary = "Causal grouped-query attention over the KV cache";
  let description = [{
    Query row `i` attends to cache rows `0 ..= positions[i]` of layer `layer`;
    query head `h` uses KV head `h / (num_heads / num_kv_heads)`. Scores are
    scaled by `scale` (usually `1/sqrt(head_dim)`).

    ```mlir
    %a = treni.attention %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 14 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64, scale = 1.250000e-01 : f64} : (tensor<?x896xbf16>, tensor<?xi32>) -> tensor<?x896xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$query, Treni_IndexTensor:$positions,
                   FlatSymbolRefAttr:$cache, ConfinedAttr<I64Attr, [IntNonNegative]>:$layer,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$scale);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$query `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_AttentionSeq1Op : Treni_Op<"attention_seq1", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    MemoryEffects<[MemRead<Treni_KVCacheResource>]>,
    AllTypesMatch<["query", "result"]>]> {
  let summary = "Attention of query rows over the KV cache, each row split over its positions (produced by treni-specialize-seq1-attention)";
  let description = [{
    Same semantics as `treni.attention`, computed flash-decoding style for
    each query row on its own: row r's positions `0 ..= positions[r]` are cut
    into `num_splits` slices of `ceil((positions[r] + 1) / num_splits)` rows
    (the last ones may be empty); each (row, KV head, slice) produces a
    partial softmax (max, sum, unnormalised output) for every query head of
    the group, and a second step combines the slices. The slices are computed
    from the positions at run time, so the launch shape depends only on the
    number of rows. Rows share no work, so they may belong to different
    sequences (decode's one row; @step's rows, each through its own block
    table).

    ```mlir
    %a = treni.attention_seq1 %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 14 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64, scale = 1.250000e-01 : f64, num_splits = 32 : i64} : (tensor<1x896xbf16>, tensor<1xi32>) -> tensor<1x896xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$query, Treni_IndexTensor:$positions,
                   FlatSymbolRefAttr:$cache, ConfinedAttr<I64Attr, [IntNonNegative]>:$layer,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$scale,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_splits);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$query `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_AttentionFlashOp : Treni_Op<"attention_flash", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    MemoryEffects<[MemRead<Treni_KVCacheResource>]>,
    AllTypesMatch<["query", "result"]>]> {
  let summary = "Causal attention of many query rows on tensor cores (produced by treni-specialize-flash-attention)";
  let description = [{
    Same semantics as `treni.attention`, computed FlashAttention-2 style:
    tiles of query vectors (the heads of a KV group packed together) against
    tiles of K/V rows read from the cache, online softmax, 16-bit MMA with
    fp32 accumulation. The query must be bf16 or f16 (the cache's type) and
    `head_dim` a multiple of 16, at most 128.

    ```mlir
    %a = treni.attention_flash %q, %pos {cache = @kv, layer = 0 : i64, num_heads = 14 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64, scale = 1.250000e-01 : f64} : (tensor<?x896xbf16>, tensor<?xi32>) -> tensor<?x896xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$query, Treni_IndexTensor:$positions,
                   FlatSymbolRefAttr:$cache, ConfinedAttr<I64Attr, [IntNonNegative]>:$layer,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$num_kv_heads,
                   ConfinedAttr<I64Attr, [IntPositive]>:$head_dim,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$scale);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$query `,` $positions attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Head dims the kernel supports (the attention_flash launch rule's
    /// flashAttentionHeadDim): multiples of 16 up to 128.
    static bool supportsHeadDim(int64_t headDim) {
      return headDim > 0 && headDim % 16 == 0 && headDim <= 128;
    }
    static bool supportsElementType(::mlir::Type type) {
      return type.isBF16() || type.isF16();
    }
  }];
}

def Treni_ResidualNormOp : Treni_Op<"residual_norm", [Pure]> {
  let summary = "Residual add followed by a full-row RMSNorm of the sum (produced by treni-fuse-residual-norm)";
  let description = [{
    `sum = residual + branch` and `normed = rms_norm(sum, weight)` in one
    pass over the row: the sum is written once (in the residual stream's type,
    f32) and normalised while it is still on chip, instead of being written by
    one kernel and read back by the next. The weight is as wide as the row.

    ```mlir
    %s, %n = treni.residual_norm %h, %o, %w {epsilon = 1.0e-06 : f64} : (tensor<?x896xf32>, tensor<?x896xbf16>, tensor<896xbf16>) -> (tensor<?x896xf32>, tensor<?x896xbf16>)
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$residual, Treni_FloatTensor2D:$branch,
                   Treni_FloatTensor1D:$weight,
                   ConfinedAttr<F64Attr, [Treni_F64Positive]>:$epsilon);
  let results = (outs Treni_FloatTensor2D:$sum, Treni_FloatTensor2D:$normed);
  let assemblyFormat = "$residual `,` $branch `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_MatvecOp : Treni_Op<"matvec", [Pure, AttrSizedOperandSegments]> {
  let summary = "A one-row linear with its neighbours folded in (produced by treni-fuse-matvec)";
  let description = [{
    `input` is a single row (the decode step). In order:

    - `norm %g` (with `epsilon`): the row is first RMS-normalised with weight
      `%g` (as wide as the row) and rounded to the weight's element type,
      exactly as a separate `treni.rms_norm` would have written it;
    - `y = input @ weight^T (+ bias)`;
    - `gated`: the weight holds gate rows then up rows (`2F` of them); the
      result is `silu(y[i]) * y[F + i]` (`treni.silu_mul`);
    - `residual %r`: the result is `r + y` (`treni.add`), in `%r`'s type.

    With `gated` or `residual`, `y` is first rounded to the weight's element
    type, as the unfused linear's output was. The whole chain is one
    matrix-vector kernel that streams the weight once: the norm is a
    prologue, the rest an epilogue, and no intermediate touches memory.

    ```mlir
    %h2 = treni.matvec %a, %wo residual %h : (tensor<1x896xbf16>, tensor<896x896xbf16>, tensor<1x896xf32>) -> tensor<1x896xf32>
    %act = treni.matvec %h2, %wgu norm %g {epsilon = 1.0e-06 : f64, gated} : (tensor<1x896xf32>, tensor<9728x896xbf16>, tensor<896xbf16>) -> tensor<1x4864xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$input, Treni_FloatTensor2D:$weight,
                   Optional<Treni_FloatTensor1D>:$bias,
                   Optional<Treni_FloatTensor1D>:$normWeight,
                   Optional<Treni_FloatTensor2D>:$residual,
                   UnitAttr:$gated,
                   OptionalAttr<ConfinedAttr<F64Attr, [Treni_F64Positive]>>:$epsilon);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? (`norm` $normWeight^)?
    (`residual` $residual^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

class Treni_ElementwiseOp<string mnemonic, string doc>
    : Treni_Op<mnemonic, [Pure, Elementwise, SameOperandsAndResultType]> {
  let summary = doc;
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "operands attr-dict `:` type($result)";
}

def Treni_SiluOp : Treni_ElementwiseOp<"silu", "x * sigmoid(x)"> {
  let arguments = (ins Treni_FloatTensor2D:$input);
  let description = [{
    ```mlir
    %y = treni.silu %x : tensor<?x4864xbf16>
    ```
  }];
}

def Treni_MulOp : Treni_ElementwiseOp<"mul", "Elementwise product"> {
  let arguments = (ins Treni_FloatTensor2D:$lhs, Treni_FloatTensor2D:$rhs);
  let description = [{
    ```mlir
    %y = treni.mul %a, %b : tensor<?x4864xbf16>
    ```
  }];
}


def Treni_SiluMulOp : Treni_Op<"silu_mul", [Pure]> {
  let summary = "silu(gate) * up of a fused [gate | up] projection";
  let description = [{
    The input row holds the gate half then the up half (`2F` columns); the
    result row `i` is `silu(input[i]) * input[F + i]`, computed in fp32 and
    rounded once to the result element type.

    ```mlir
    %y = treni.silu_mul %gu : (tensor<?x9728xbf16>) -> tensor<?x4864xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$input);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Treni_AddOp : Treni_Op<"add", [Pure, SameOperandsAndResultShape]> {
  let summary = "Elementwise sum (the residual add)";
  let description = [{
    Operands and result share a shape; their element types may differ, so the
    residual stream can stay in f32 while the branches it adds are 16-bit.

    ```mlir
    %y = treni.add %a, %b : (tensor<?x896xf32>, tensor<?x896xbf16>) -> tensor<?x896xf32>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$lhs, Treni_FloatTensor2D:$rhs);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
}

def Treni_TakeLastOp : Treni_Op<"take_last", [Pure]> {
  let summary = "The last row of a matrix (prefill only needs the last token's logits)";
  let description = [{
    ```mlir
    %y = treni.take_last %h : (tensor<?x896xbf16>) -> tensor<1x896xbf16>
    ```
  }];
  let arguments = (ins Treni_FloatTensor2D:$input);
  let results = (outs Treni_FloatTensor2D:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Kernels (produced by treni-outline-kernels)
//===----------------------------------------------------------------------===//

def Treni_KernelOp : Treni_Op<"kernel", [
    MemoryEffects<[MemRead<Treni_KVCacheResource>, MemWrite<Treni_KVCacheResource>]>]> {
  let summary = "One kernel launch: a template name specialised by constants";
  let description = [{
    What codegen turns into CUDA C++ (or cuBLASLt for `gemm`) and what the CPU
    reference executor interprets. `constants` holds the compile-time values
    the template is specialised with; `origin` names the op(s) it came from.

    ```mlir
    %y = treni.kernel "rms_norm" (%x, %w) {constants = {dim = 896 : i64, group = 896 : i64, epsilon = 1.0e-06 : f64}, origin = "treni.rms_norm"} : (tensor<?x896xbf16>, tensor<896xbf16>) -> tensor<?x896xbf16>
    ```
  }];
  let arguments = (ins StrAttr:$template_name, Variadic<AnyRankedTensor>:$args,
                   DictionaryAttr:$constants, StrAttr:$origin);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = "$template_name `(` $args `)` attr-dict `:` functional-type($args, $results)";
  let hasVerifier = 1;
}

#endif // TRENI_OPS_TD
