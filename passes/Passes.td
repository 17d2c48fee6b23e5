//===- Passes.td - treni passes ----------------------------*- tablegen -*-===//
#ifndef TRENI_PASSES_TD
#define TRENI_PASSES_TD

include "mlir/Pass/PassBase.td"

def FuseQkvSplitBiasPass : Pass<"treni-fuse-qkv-split-bias", "mlir::ModuleOp"> {
  let summary = "Fuse the Q, K and V projections, their biases, the head split, q/k norm, RoPE and the K/V cache write";
  let description = [{
    Before (Qwen2: biases; Qwen3 adds a per-head rms_norm of q and k):
    ```mlir
    %q = treni.linear %n, %wq, %bq : (tensor<?x64xbf16>, tensor<64x64xbf16>, tensor<64xbf16>) -> tensor<?x64xbf16>
    %k = treni.linear %n, %wk, %bk : (tensor<?x64xbf16>, tensor<32x64xbf16>, tensor<32xbf16>) -> tensor<?x32xbf16>
    %v = treni.linear %n, %wv, %bv : (tensor<?x64xbf16>, tensor<32x64xbf16>, tensor<32xbf16>) -> tensor<?x32xbf16>
    %qr = treni.rope %q, %pos {head_dim = 16 : i64, theta = 1.0e+04 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
    %kr = treni.rope %k, %pos {head_dim = 16 : i64, theta = 1.0e+04 : f64} : (tensor<?x32xbf16>, tensor<?xi32>) -> tensor<?x32xbf16>
    treni.cache_write %kr, %v, %pos {cache = @kv, layer = 0 : i64} : tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<?xi32>
    %a = treni.attention %qr, %pos {...}
    ```
    After:
    ```mlir
    %w = treni.concat %wq, %wk, %wv : (tensor<64x64xbf16>, tensor<32x64xbf16>, tensor<32x64xbf16>) -> tensor<128x64xbf16>
    %b = treni.concat %bq, %bk, %bv : (tensor<64xbf16>, tensor<32xbf16>, tensor<32xbf16>) -> tensor<128xbf16>
    %qkv = treni.linear %n, %w, %b : (tensor<?x64xbf16>, tensor<128x64xbf16>, tensor<128xbf16>) -> tensor<?x128xbf16>
    %qr = treni.qkv_rope_cache %qkv, %pos {cache = @kv, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64, theta = 1.0e+04 : f64} : (tensor<?x128xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
    %a = treni.attention %qr, %pos {...}
    ```

    Why it pays: one GEMM instead of three reads the normalised input once
    and launches once (at batch 1, three bandwidth-bound GEMVs become one);
    the biases ride in the GEMM epilogue; and one kernel (one block per head)
    replaces up to six (two norms, two ropes, the cache write), keeping q and
    k in registers between norm and rotation.

    Leaves a layer alone when the projections read different inputs, only
    some have biases, the k rope / cache write pattern is missing, only one
    of q and k is normalised, or an intermediate has another user.
  }];
  let dependentDialects = ["::treni::TreniDialect"];
}

def FuseFfnActPass : Pass<"treni-fuse-ffn-act", "mlir::ModuleOp"> {
  let summary = "Fuse the gate and up projections into one GEMM and SiLU(gate)*up into one kernel";
  let description = [{
    The SwiGLU feed-forward block reads the same input twice and makes two
    passes over the `[T, F]` intermediate:

    Before:
    ```mlir
    %g = treni.linear %x, %wg : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
    %u = treni.linear %x, %wu : (tensor<?x64xbf16>, tensor<128x64xbf16>) -> tensor<?x128xbf16>
    %s = treni.silu %g : tensor<?x128xbf16>
    %m = treni.mul %s, %u : tensor<?x128xbf16>
    ```
    After:
    ```mlir
    %wgu = treni.concat %wg, %wu : (tensor<128x64xbf16>, tensor<128x64xbf16>) -> tensor<256x64xbf16>
    %gu = treni.linear %x, %wgu : (tensor<?x64xbf16>, tensor<256x64xbf16>) -> tensor<?x256xbf16>
    %m = treni.silu_mul %gu : (tensor<?x256xbf16>) -> tensor<?x128xbf16>
    ```

    Why it pays: one GEMM instead of two reads `x` once and halves the GEMM
    launches (at batch 1 each launch is a bandwidth-bound GEMV); the
    activation is computed in fp32 and written once, straight in the 16-bit
    type the down projection reads, instead of a silu pass and a mul pass
    over `[T, F]`. The weight concatenation is free at run time: the plan
    stores the two checkpoint tensors back to back.

    Leaves the block alone when a projection has a bias, when the gate, the
    up projection or the silu has another user, when the weights differ in
    shape or element type, or when gate and up read different inputs.
  }];
  let dependentDialects = ["::treni::TreniDialect"];
}

def FuseMatvecPass : Pass<"treni-fuse-matvec", "mlir::ModuleOp"> {
  let summary = "Turn one-row linears (decode) into matrix-vector kernels with the norm before and the activation or residual add after folded in";
  let description = [{
    At batch 1 a decode step is ~10 kernels per layer, most of them tiny:
    at the 0.5B shape launch latency, not bandwidth, sets the token time.
    A linear with one static row becomes `treni.matvec` (a generated
    matrix-vector kernel instead of a GEMM library call), and what sits
    around it moves into that kernel:

    - a full-row `treni.rms_norm` whose result only this linear reads becomes
      its prologue (each block normalises the row itself: it is a few KB);
    - a `treni.silu_mul` that is the linear's only user becomes its epilogue
      (`gated`: each block computes gate row i and up row i together);
    - a `treni.add` into the residual stream that is the linear's only user
      becomes its epilogue (`residual`).

    A `treni.residual_norm` between two such linears is split back into the
    add and the norm first, so both halves fold: per layer the decode step
    goes from norm, QKV, (attention), O, residual+norm, gate/up, silu_mul,
    down, residual+norm to QKV, (attention), O, gate/up, down. Roundings are
    kept where the unfused kernels had them (see treni.matvec), so the CPU
    reference gives the same logits with and without the pass.

    Before (@decode):
    ```mlir
    %o = treni.linear %a, %wo : (tensor<1x64xbf16>, tensor<64x64xbf16>) -> tensor<1x64xbf16>
    %s, %n = treni.residual_norm %h, %o, %g {epsilon = 1.0e-06 : f64} : (tensor<1x64xf32>, tensor<1x64xbf16>, tensor<64xbf16>) -> (tensor<1x64xf32>, tensor<1x64xbf16>)
    %gu = treni.linear %n, %wgu : (tensor<1x64xbf16>, tensor<320x64xbf16>) -> tensor<1x320xbf16>
    %act = treni.silu_mul %gu : (tensor<1x320xbf16>) -> tensor<1x160xbf16>
    ```
    After:
    ```mlir
    %s = treni.matvec %a, %wo residual %h : (tensor<1x64xbf16>, tensor<64x64xbf16>, tensor<1x64xf32>) -> tensor<1x64xf32>
    %act = treni.matvec %s, %wgu norm %g {epsilon = 1.0e-06 : f64, gated} : (tensor<1x64xf32>, tensor<320x64xbf16>, tensor<64xbf16>) -> tensor<1x160xbf16>
    ```
    Left alone: linears of more than one row (prefill's GEMMs stay on
    cuBLASLt), rows that are not a multiple of 16 bytes, an input whose type
    differs from the weight's, neighbours that have other users, and norms
    of rows wider than `fold-norm-max-width` (their residual_norm stays one
    kernel).
  }];
  let options = [
    Option<"foldNorm", "fold-norm", "bool", "true",
           "Fold a full-row rms_norm into the matvec that reads it">,
    Option<"foldNormMaxWidth", "fold-norm-max-width", "int64_t", "1024",
           "Fold norms of rows at most this wide only (every block of the "
           "matvec normalises the row again; on an H200 that costs more than "
           "the saved launch at widths 2048 and 3584)">,
    Option<"foldGated", "fold-gated", "bool", "true",
           "Fold silu_mul into the gate/up matvec">,
    Option<"foldResidual", "fold-residual", "bool", "true",
           "Fold the residual add into the matvec that produces its branch">,
  ];
  let dependentDialects = ["::treni::TreniDialect"];
}

def OutlineKernelsPass : Pass<"treni-outline-kernels", "mlir::ModuleOp"> {
  let summary = "Turn every compute op into a treni.kernel naming its template and constants";
  let description = [{
    After fusion, each remaining compute op is one kernel launch. This pass
    makes that explicit so codegen and the executors see one op type with a
    template name (`rms_norm`, `gemm`, `attention`...) and the compile-time
    constants the template is specialised with. Weights, concatenations of
    weights, function arguments and the return stay as they are.

    Before:
    ```mlir
    %y = treni.rms_norm %x, %w {epsilon = 1.0e-06 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
    ```
    After:
    ```mlir
    %y = treni.kernel "rms_norm" (%x, %w) {constants = {dim = 64 : i64, epsilon = 1.0e-06 : f64, group = 64 : i64}, origin = "treni.rms_norm"} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
    ```
    An op without a kernel template is an error: codegen could not run it.
  }];
  let dependentDialects = ["::treni::TreniDialect"];
}

def FuseResidualNormPass : Pass<"treni-fuse-residual-norm", "mlir::ModuleOp"> {
  let summary = "Fuse a residual add with the full-row RMSNorm that reads its sum";
  let description = [{
    Every decoder layer adds a branch into the residual stream and normalises
    the sum right away (post-attention norm, the next layer's input norm, the
    final norm before the logits in @decode). Unfused, the f32 sum is written
    by one kernel and read back by the next; fused, one block per row writes
    the sum once and normalises it while it is on chip: one launch and one
    read of the row less per fusion.

    Before:
    ```mlir
    %s = treni.add %h, %o : (tensor<1x64xf32>, tensor<1x64xbf16>) -> tensor<1x64xf32>
    %n = treni.rms_norm %s, %w {epsilon = 1.0e-06 : f64} : (tensor<1x64xf32>, tensor<64xbf16>) -> tensor<1x64xbf16>
    ```
    After:
    ```mlir
    %s, %n = treni.residual_norm %h, %o, %w {epsilon = 1.0e-06 : f64} : (tensor<1x64xf32>, tensor<1x64xbf16>, tensor<64xbf16>) -> (tensor<1x64xf32>, tensor<1x64xbf16>)
    ```
    Other users of the sum (the next residual add, take_last) read `%s`. Left
    alone: an add no rms_norm reads, and per-head norms (weight narrower than
    the row).
  }];
  let dependentDialects = ["::treni::TreniDialect"];
}

def SpecializeSeq1AttentionPass
    : Pass<"treni-specialize-seq1-attention", "mlir::ModuleOp"> {
  let summary = "Turn single-query-row attention (decode) into split-KV flash-decoding attention";
  let description = [{
    Decode attention reads the whole KV cache for one query row: it is
    latency- and bandwidth-bound. The generic kernel runs one block per query
    head, which leaves most SMs idle (14 heads on 132 SMs) and, with grouped
    query attention, re-reads every K/V row once per query head of the group.
    `treni.attention_seq1` instead runs one block per (KV head, slice of
    positions): each block reads its K/V rows once for all query heads of
    the group, and the slices spread a long context over the GPU. A second
    step combines the slices' partial softmaxes. The slices are derived from
    the device-resident position, so one CUDA graph serves every step.

    Before (in @decode, query of one static row):
    ```mlir
    %a = treni.attention %q, %pos {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
    ```
    After:
    ```mlir
    %a = treni.attention_seq1 %q, %pos {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, num_splits = 32 : i64, scale = 2.500000e-01 : f64} : (tensor<1x64xbf16>, tensor<1xi32>) -> tensor<1x64xbf16>
    ```
    The same rewrite takes the attention of a function whose rows may be
    several sequences (@step, no `treni.one_sequence`): each row is one query
    vector attending to its own sequence's positions through its own block
    table, so the row-by-row split-KV kernel fits (reading each K/V row once
    per KV group, where the generic kernel reads it once per query head), and
    the rows give the parallelism, so it uses `rows-num-splits`.

    Left alone: @prefill (dynamic rows of one sequence: the flash kernel's)
    and static queries of more than one row.
  }];
  let options = [
    Option<"numSplits", "num-splits", "int64_t", "32",
           "Slices of the KV positions per KV head. 32 gives 64-256 blocks "
           "for 2-8 KV heads (on the order of an H100's 132 SMs) while a "
           "2K-token context still gives each block 64 positions; the "
           "combine step reads only num_splits partials per head">,
    Option<"rowsNumSplits", "rows-num-splits", "int64_t", "4",
           "Slices per KV head of each row of a several-sequence function "
           "(@step): its rows already fill the GPU (64 decode rows of 4 KV "
           "heads are 1024 blocks), and every slice adds a partial per "
           "head to write and combine">,
  ];
  let dependentDialects = ["::treni::TreniDialect"];
}

def SpecializeFlashAttentionPass
    : Pass<"treni-specialize-flash-attention", "mlir::ModuleOp"> {
  let summary = "Turn many-row attention (prefill) into tensor-core flash attention";
  let description = [{
    The generic `treni.attention` kernel runs one block per (query head,
    row) and keeps one fp32 score per cache position in shared memory: exact
    and simple, but no tensor cores, and its time grows with the square of the
    prompt. `treni.attention_flash` computes the same thing FlashAttention-2
    style (tiles of query vectors against tiles of K/V, online softmax, 16-bit
    MMA with fp32 accumulation; the heads of a KV group share each K/V tile).
    The generic op stays the CPU reference and the oracle the flash kernel is
    checked against (`--disable treni-specialize-flash-attention` keeps it).

    Before (in @prefill, dynamic rows, marked `treni.one_sequence`):
    ```mlir
    %a = treni.attention %q, %pos {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
    ```
    After:
    ```mlir
    %a = treni.attention_flash %q, %pos {cache = @kv, head_dim = 16 : i64, layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, scale = 2.500000e-01 : f64} : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
    ```
    Only inside functions marked `treni.one_sequence` (`@prefill`): a block
    of the kernel loads one run of cache rows, keys 0 up to its largest
    position, and shares it between all its query rows, which is right only
    when they are one sequence. `@step` (rows of several sequences, each
    reading its own KV rows) keeps the generic kernel, whose rows are
    independent. Also left alone: single-row queries
    (treni-specialize-seq1-attention's), f32 activations, and head dims the
    kernel does not support (not a multiple of 16, or above 128).
  }];
  let dependentDialects = ["::treni::TreniDialect"];
}

def PlanBuffersPass : Pass<"treni-plan-buffers", "mlir::ModuleOp"> {
  let summary = "Assign every activation a static arena offset, reusing memory of dead values";
  let description = [{
    Every tensor a function computes (and every tensor argument) gets a byte
    offset in one activation arena, so the runtime allocates once and launches
    kernels on fixed pointers (what CUDA-graph capture needs). Values whose
    last use has passed give their space back (first-fit), so the arena is the
    peak of live bytes, not the sum.

    Shapes are static except the leading token dimension of `@prefill`. Those
    buffers live in a second region laid out per token row: a dynamic buffer
    at row offset `r` starts at `static_bytes + tokens * r`, so one plan serves
    every prompt length and the peak is `static_bytes + tokens * row_bytes`.

    Results: `treni.offsets` on each op (one entry per result), `treni.offset`
    on each argument, `treni.arena_static_bytes` / `treni.arena_row_bytes` on
    the function.
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", "256",
           "Byte alignment of static buffers">,
    Option<"rowAlignment", "row-alignment", "int64_t", "64",
           "Byte alignment of the per-token row of dynamic buffers">,
    Option<"report", "report", "bool", "false",
           "Emit a remark with each function's peak arena bytes">,
  ];
}

#endif // TRENI_PASSES_TD
