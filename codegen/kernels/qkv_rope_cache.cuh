//===-- qkv_rope_cache.cuh: fused q|k|v row -> rope of q and k, cache ----===//
//
// Grid (kNumHeads + kNumKvHeads, rows): block h < kNumHeads rotates query
// head h into `out`; the others rotate key head j = h - kNumHeads into cache
// row positions[row] and copy value head j there (qkv_rope_head.cuh).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const qkv_type *qkv, const int *positions, out_type *out,
            cache_type *keyCache, cache_type *valueCache, int rows) {
  treniWaitForPreviousKernel();
  const qkv_type *in = qkvBlockHead(qkv);
  auto asIs = [&](int i) { return toFloat(in[i]); };
  ropeHeadIntoCache(in, positions, asIs, out, keyCache, valueCache);
}
