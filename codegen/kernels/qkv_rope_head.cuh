//===-- qkv_rope_head.cuh: rope of q and k heads, the K/V cache write ----===//
//
// Shared by qkv_rope_cache and qkv_norm_rope_cache, which differ only in what
// they feed the rotation (the head as is, or RMS-normalised). It follows their
// specialisation: it reads kNumHeads, kNumKvHeads, kHeadDim, kInvFreq, the
// operand types, kVector and kHeadsPerBlock.
//
// The q and k heads of a row are slots 0 .. kNumHeads + kNumKvHeads - 1 (slot
// h < kNumHeads is query head h, the others key head j = h - kNumHeads). In
// the grid (ceil(slots / kHeadsPerBlock), rows), kLanes threads own one slot,
// each kVector consecutive rotation pairs (i, i + kHeadDim / 2), moved as
// vectors (kVector divides kHeadDim / 2). A key slot's threads also copy the
// same columns of value head j.

constexpr int kHalf = kHeadDim / 2;
constexpr int kLanes = kHalf / kVector;
constexpr int kSlots = kNumHeads + kNumKvHeads;

/// This thread's slot, row and first pair; `active` is false for the threads
/// that round the block up to whole warps or run past the last slot.
struct HeadPart {
  int local; ///< slot within the block
  int slot;
  int first;
  long long row;
  bool active;
  __device__ bool isQuery() const { return slot < kNumHeads; }
};

__device__ __forceinline__ HeadPart headPart() {
  HeadPart part;
  part.local = threadIdx.x / kLanes;
  part.slot = blockIdx.x * kHeadsPerBlock + part.local;
  part.first = (threadIdx.x % kLanes) * kVector;
  part.row = blockIdx.y;
  part.active = part.local < kHeadsPerBlock && part.slot < kSlots;
  return part;
}

/// Elements first .. first + kVector of this part's head (`low`) and the
/// same columns of its second half (`high`), as fp32.
struct HeadHalves {
  float low[kVector], high[kVector];
};

__device__ __forceinline__ HeadHalves loadHead(const qkv_type *qkv,
                                               const HeadPart &part) {
  constexpr int kRow = (kNumHeads + 2 * kNumKvHeads) * kHeadDim;
  const qkv_type *head =
      qkv + part.row * kRow + (long long)part.slot * kHeadDim + part.first;
  Vector<qkv_type, kVector> low = loadVector<kVector>(head);
  Vector<qkv_type, kVector> high = loadVector<kVector>(head + kHalf);
  HeadHalves halves;
#pragma unroll
  for (int j = 0; j < kVector; ++j) {
    halves.low[j] = toFloat(low.v[j]);
    halves.high[j] = toFloat(high.v[j]);
  }
  return halves;
}

/// Rotates `in` (this part's pairs, as the caller feeds them) as rope does
/// (kInvFreq from the host, fp32 angle, sincosf) and stores it rounded once:
/// a query head into `out`, a key head into key cache row positions[row],
/// with the same columns of its value head copied to the value cache.
__device__ __forceinline__ void
ropeIntoCache(const qkv_type *qkv, const int *positions, const HeadPart &part,
              const HeadHalves &in, out_type *out, cache_type *keyCache,
              cache_type *valueCache, const KvPages &pages) {
  constexpr int kRow = (kNumHeads + 2 * kNumKvHeads) * kHeadDim;
  constexpr int kQWidth = kNumHeads * kHeadDim;
  constexpr int kKvWidth = kNumKvHeads * kHeadDim;
  if (!part.active)
    return;
  int position = positions[part.row];
  Vector<qkv_type, kVector> valueLow, valueHigh;
  if (!part.isQuery()) { // value head j follows the key heads
    const qkv_type *value = qkv + part.row * kRow + kQWidth + kKvWidth +
                            (long long)(part.slot - kNumHeads) * kHeadDim +
                            part.first;
    valueLow = loadVector<kVector>(value);
    valueHigh = loadVector<kVector>(value + kHalf);
  }
  float low[kVector], high[kVector];
#pragma unroll
  for (int j = 0; j < kVector; ++j) {
    float angle = float(position) * kInvFreq[part.first + j];
    float sine, cosine;
    sincosf(angle, &sine, &cosine);
    float a = in.low[j], b = in.high[j];
    low[j] = a * cosine - b * sine;
    high[j] = b * cosine + a * sine;
  }
  if (part.isQuery()) {
    Vector<out_type, kVector> outLow, outHigh;
#pragma unroll
    for (int j = 0; j < kVector; ++j) {
      outLow.v[j] = fromFloat<out_type>(low[j]);
      outHigh.v[j] = fromFloat<out_type>(high[j]);
    }
    out_type *target =
        out + part.row * kQWidth + (long long)part.slot * kHeadDim + part.first;
    storeVector(target, outLow);
    storeVector(target + kHalf, outHigh);
    return;
  }
  Vector<cache_type, kVector> keyLow, keyHigh, copyLow, copyHigh;
#pragma unroll
  for (int j = 0; j < kVector; ++j) {
    keyLow.v[j] = fromFloat<cache_type>(low[j]);
    keyHigh.v[j] = fromFloat<cache_type>(high[j]);
    copyLow.v[j] = fromFloat<cache_type>(toFloat(valueLow.v[j]));
    copyHigh.v[j] = fromFloat<cache_type>(toFloat(valueHigh.v[j]));
  }
  long long target = cacheRow(pages, part.row, position) * kKvWidth +
                     (long long)(part.slot - kNumHeads) * kHeadDim + part.first;
  storeVector(keyCache + target, keyLow);
  storeVector(keyCache + target + kHalf, keyHigh);
  storeVector(valueCache + target, copyLow);
  storeVector(valueCache + target + kHalf, copyHigh);
}
