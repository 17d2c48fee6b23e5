//===-- qkv_norm_rope_cache.cuh: q|k|v row -> q/k norm, rope, cache -----===//
//
// Grid (kNumHeads + kNumKvHeads, rows): block h < kNumHeads handles query
// head h, the others key head j = h - kNumHeads and value head j. A head is
// RMS-normalised over its kHeadDim elements (Qwen3's q/k norm, as rms_norm
// does), then rotated and written to `out` (q) or to the cache row
// positions[row] (k; v is copied unchanged) by qkv_rope_head.cuh. All math
// is fp32; each output is rounded once.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const qkv_type *qkv, const int *positions,
            const q_norm_type *q_norm, const k_norm_type *k_norm, out_type *out,
            cache_type *keyCache, cache_type *valueCache, int rows) {
  treniWaitForPreviousKernel();
  const qkv_type *in = qkvBlockHead(qkv);
  bool isQuery = int(blockIdx.x) < kNumHeads;

  float sumSquares = 0.0f;
  for (int i = threadIdx.x; i < kHeadDim; i += kThreads) {
    float value = toFloat(in[i]);
    sumSquares += value * value;
  }
  sumSquares = blockReduceSum<kThreads>(sumSquares);
  float scale = rsqrtf(sumSquares / float(kHeadDim) + kEpsilon);

  auto normed = [&](int i) {
    float weight = isQuery ? toFloat(q_norm[i]) : toFloat(k_norm[i]);
    return toFloat(in[i]) * scale * weight;
  };
  ropeHeadIntoCache(in, positions, normed, out, keyCache, valueCache);
}
