//===-- qkv_norm_rope_cache.cuh: q|k|v row -> q/k norm, rope, cache -----===//
//
// Grid (kNumHeads + kNumKvHeads, rows): block h < kNumHeads handles query
// head h, the others key head j = h - kNumHeads and value head j. A head is
// RMS-normalised over its kHeadDim elements (Qwen3's q/k norm, as rms_norm
// does), rotated as rope does (kInvFreq from the host), then written to `out`
// (q) or to the cache row positions[row] (k; v is copied unchanged). All math
// is fp32; each output is rounded once.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const qkv_type *qkv, const int *positions,
            const q_norm_type *q_norm, const k_norm_type *k_norm, out_type *out,
            cache_type *keyCache, cache_type *valueCache, int rows) {
  treniWaitForPreviousKernel();
  constexpr int kHalf = kHeadDim / 2;
  constexpr int kQWidth = kNumHeads * kHeadDim;
  constexpr int kKvWidth = kNumKvHeads * kHeadDim;
  constexpr int kRow = kQWidth + 2 * kKvWidth;
  int head = blockIdx.x;
  long long row = blockIdx.y;
  bool isQuery = head < kNumHeads;
  const qkv_type *in = qkv + row * kRow + (long long)head * kHeadDim;

  float sumSquares = 0.0f;
  for (int i = threadIdx.x; i < kHeadDim; i += kThreads) {
    float value = toFloat(in[i]);
    sumSquares += value * value;
  }
  sumSquares = blockReduceSum<kThreads>(sumSquares);
  float scale = rsqrtf(sumSquares / float(kHeadDim) + kEpsilon);

  int position = positions[row];
  long long kvTarget =
      (long long)position * kKvWidth + (long long)(head - kNumHeads) * kHeadDim;
  for (int i = threadIdx.x; i < kHalf; i += kThreads) {
    float wa = isQuery ? toFloat(q_norm[i]) : toFloat(k_norm[i]);
    float wb = isQuery ? toFloat(q_norm[i + kHalf]) : toFloat(k_norm[i + kHalf]);
    float a = toFloat(in[i]) * scale * wa;
    float b = toFloat(in[i + kHalf]) * scale * wb;
    float angle = float(position) * kInvFreq[i];
    float sine, cosine;
    sincosf(angle, &sine, &cosine);
    float ra = a * cosine - b * sine, rb = b * cosine + a * sine;
    if (isQuery) {
      long long target = row * kQWidth + (long long)head * kHeadDim;
      out[target + i] = fromFloat<out_type>(ra);
      out[target + i + kHalf] = fromFloat<out_type>(rb);
    } else {
      keyCache[kvTarget + i] = fromFloat<cache_type>(ra);
      keyCache[kvTarget + i + kHalf] = fromFloat<cache_type>(rb);
    }
  }
  if (!isQuery) {
    const qkv_type *value = in + kKvWidth; // value head j follows key heads
    for (int i = threadIdx.x; i < kHeadDim; i += kThreads)
      valueCache[kvTarget + i] = fromFloat<cache_type>(toFloat(value[i]));
  }
}
