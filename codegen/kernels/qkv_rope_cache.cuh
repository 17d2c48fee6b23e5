//===-- qkv_rope_cache.cuh: fused q|k|v row -> rope of q and k, cache ----===//
//
// Grid (ceil((kNumHeads + kNumKvHeads) / kHeadsPerBlock), rows): query heads
// are rotated into `out`; key heads j are rotated into cache row
// positions[row] (through `pages`, common.cuh) and value heads j copied there (qkv_rope_head.cuh).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const qkv_type *qkv, const int *positions, out_type *out,
            cache_type *keyCache, cache_type *valueCache, KvPages pages,
            int rows) {
  treniWaitForPreviousKernel();
  HeadPart part = headPart();
  if (!part.active)
    return;
  ropeIntoCache(qkv, positions, part, loadHead(qkv, part), out, keyCache,
                valueCache, pages);
}
