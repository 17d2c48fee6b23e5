//===-- qkv_rope_cache.cuh: fused q|k|v row -> rope of q and k, cache ----===//
//
// Grid (kNumHeads + kNumKvHeads, rows): block h < kNumHeads rotates query
// head h into `out`; the others rotate key head j = h - kNumHeads into cache
// row positions[row] and copy value head j there. The rotation is rope's
// (kInvFreq from the host, fp32 angle, sincosf); each output is rounded once.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const qkv_type *qkv, const int *positions, out_type *out,
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

  int position = positions[row];
  long long kvTarget =
      (long long)position * kKvWidth + (long long)(head - kNumHeads) * kHeadDim;
  for (int i = threadIdx.x; i < kHalf; i += kThreads) {
    float a = toFloat(in[i]), b = toFloat(in[i + kHalf]);
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
