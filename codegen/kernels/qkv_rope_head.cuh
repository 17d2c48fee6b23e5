//===-- qkv_rope_head.cuh: rope of one q or k head, the K/V cache write --===//
//
// Shared by qkv_rope_cache and qkv_norm_rope_cache, which differ only in what
// they feed the rotation (the head as is, or RMS-normalised). It follows their
// specialisation: it reads kNumHeads, kNumKvHeads, kHeadDim, kInvFreq and the
// operand types. In the grid (kNumHeads + kNumKvHeads, rows), block h of a row
// owns query head h when h < kNumHeads, else key head j = h - kNumHeads and
// value head j.

/// This block's head in its q|k|v row (query heads, key heads, value heads).
__device__ __forceinline__ const qkv_type *qkvBlockHead(const qkv_type *qkv) {
  constexpr int kRow = (kNumHeads + 2 * kNumKvHeads) * kHeadDim;
  int head = blockIdx.x;
  long long row = blockIdx.y;
  return qkv + row * kRow + (long long)head * kHeadDim;
}

/// Rotates each pair (i, i + kHeadDim / 2) of this block's head `in`, whose
/// element i enters the rotation as `element(i)`, as rope does (kInvFreq from
/// the host, fp32 angle, sincosf), and stores it rounded once: a query head
/// into `out`, a key head into key cache row positions[row]; a key block
/// also copies its value head there.
template <typename Element>
__device__ __forceinline__ void
ropeHeadIntoCache(const qkv_type *in, const int *positions, Element element,
                  out_type *out, cache_type *keyCache, cache_type *valueCache) {
  constexpr int kHalf = kHeadDim / 2;
  constexpr int kQWidth = kNumHeads * kHeadDim;
  constexpr int kKvWidth = kNumKvHeads * kHeadDim;
  int head = blockIdx.x;
  long long row = blockIdx.y;
  bool isQuery = head < kNumHeads;
  int position = positions[row];
  long long kvTarget =
      (long long)position * kKvWidth + (long long)(head - kNumHeads) * kHeadDim;
  for (int i = threadIdx.x; i < kHalf; i += kThreads) {
    float a = element(i), b = element(i + kHalf);
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
