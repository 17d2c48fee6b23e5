//===-- attention.cuh: causal grouped-query attention over the KV cache ---===//
//
// Grid (kNumHeads, rows); dynamic shared memory holds one fp32 score per
// cache position (4 bytes * maxSeq). Query row r attends to cache rows
// 0..positions[r]; query head h reads KV head h / (kNumHeads / kNumKvHeads).
// keyCache/valueCache are this layer's caches, row-major [cache rows, kKvDim];
// position t of query row r is cache row cacheRow(pages, r, t) (common.cuh),
// so the rows may belong to different sequences of a paged cache (@step).
//   1. one warp per position: score = (q . k) * kScale, lanes split the dims;
//   2. block max, then p = exp(score - max) and the block sum of p;
//   3. out = sum_t p[t] * v[t] / sum: the block is cut into kSlices slices of
//      kHeadDim threads, slice s takes every kSlices-th position, and the
//      slices' partial sums are added in a fixed order (deterministic).
// Plain and exact rather than fast: decode gets its own kernel later.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const query_type *query, const int *positions, out_type *out,
            cache_type *keyCache, cache_type *valueCache, KvPages pages,
            int rows) {
  treniWaitForPreviousKernel();
  constexpr int kGroupSize = kNumHeads / kNumKvHeads;
  constexpr int kKvDim = kNumKvHeads * kHeadDim;
  constexpr int kWarps = kThreads / 32;
  constexpr int kSlices = kThreads >= kHeadDim ? kThreads / kHeadDim : 1;
  extern __shared__ float scores[];
  __shared__ float q[kHeadDim];
  __shared__ float partial[kSlices][kHeadDim];

  int head = blockIdx.x, row = blockIdx.y;
  int kvHead = head / kGroupSize;
  int length = positions[row] + 1;
  long long rowStart = ((long long)row * kNumHeads + head) * kHeadDim;
  for (int i = threadIdx.x; i < kHeadDim; i += kThreads)
    q[i] = toFloat(query[rowStart + i]);
  __syncthreads();

  // 1. Scores.
  const cache_type *keys = keyCache + kvHead * kHeadDim;
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float localMax = __int_as_float(0xff800000); // -inf
  for (int t = warp; t < length; t += kWarps) {
    const cache_type *key = keys + cacheRow(pages, row, t) * kKvDim;
    float dot = 0.0f;
    for (int i = lane; i < kHeadDim; i += 32)
      dot += q[i] * toFloat(key[i]);
    float score = warpReduceSum(dot) * kScale;
    if (lane == 0)
      scores[t] = score;
    localMax = fmaxf(localMax, score);
  }
  // The reductions synchronise the block, so `scores` is complete after them.
  float maxScore = blockReduceMax<kThreads>(localMax);

  // 2. Softmax numerators and their sum.
  float localSum = 0.0f;
  for (int t = threadIdx.x; t < length; t += kThreads) {
    float p = expf(scores[t] - maxScore);
    scores[t] = p;
    localSum += p;
  }
  float total = blockReduceSum<kThreads>(localSum);

  // 3. Weighted sum of the values.
  const cache_type *values = valueCache + kvHead * kHeadDim;
  for (int index = threadIdx.x; index < kSlices * kHeadDim; index += kThreads) {
    int slice = index / kHeadDim, i = index % kHeadDim;
    float acc = 0.0f;
    for (int t = slice; t < length; t += kSlices)
      acc += scores[t] * toFloat(values[cacheRow(pages, row, t) * kKvDim + i]);
    partial[slice][i] = acc;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kHeadDim; i += kThreads) {
    float acc = 0.0f;
    for (int slice = 0; slice < kSlices; ++slice)
      acc += partial[slice][i];
    out[rowStart + i] = fromFloat<out_type>(acc / total);
  }
}
