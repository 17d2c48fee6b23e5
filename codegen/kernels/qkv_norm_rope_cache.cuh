//===-- qkv_norm_rope_cache.cuh: q|k|v row -> q/k norm, rope, cache -----===//
//
// Grid (ceil((kNumHeads + kNumKvHeads) / kHeadsPerBlock), rows), threads as
// in qkv_rope_head.cuh. A q or k head is RMS-normalised over its kHeadDim
// elements (Qwen3's q/k norm, as rms_norm does: the sum of squares of its
// threads meets in shared memory), then rotated and written to `out` (q) or
// to the cache row positions[row] (k; v is copied unchanged). All math is
// fp32; each output is rounded once.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const qkv_type *qkv, const int *positions,
            const q_norm_type *q_norm, const k_norm_type *k_norm, out_type *out,
            cache_type *keyCache, cache_type *valueCache, KvPages pages,
            int rows) {
  __shared__ float sumSquares[kHeadsPerBlock];
  treniWaitForPreviousKernel();
  HeadPart part = headPart();
  HeadHalves in = {};
  float partial = 0.0f;
  if (part.active) {
    in = loadHead(qkv, part);
#pragma unroll
    for (int j = 0; j < kVector; ++j)
      partial += in.low[j] * in.low[j] + in.high[j] * in.high[j];
  }
  for (int i = threadIdx.x; i < kHeadsPerBlock; i += kThreads)
    sumSquares[i] = 0.0f;
  __syncthreads();
  if (part.active)
    atomicAdd(&sumSquares[part.local], partial);
  __syncthreads();
  if (!part.active)
    return;
  float scale = rsqrtf(sumSquares[part.local] / float(kHeadDim) + kEpsilon);
#pragma unroll
  for (int j = 0; j < kVector; ++j) {
    int i = part.first + j;
    float low = part.isQuery() ? toFloat(q_norm[i]) : toFloat(k_norm[i]);
    float high = part.isQuery() ? toFloat(q_norm[i + kHalf])
                                : toFloat(k_norm[i + kHalf]);
    in.low[j] = in.low[j] * scale * low;
    in.high[j] = in.high[j] * scale * high;
  }
  ropeIntoCache(qkv, positions, part, in, out, keyCache, valueCache, pages);
}
