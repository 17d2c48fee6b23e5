//===-- attention_seq1_partial.cuh: split-KV decode attention, step 1 ----===//
//
// Grid (kNumKvHeads * kNumSplits, rows): block (b, r) takes query row r, KV
// head b / kNumSplits and split b % kNumSplits of r's positions
// 0..positions[r], cut into kNumSplits slices of ceil(length / kNumSplits)
// (runtime/exec/cpu_kernels.cpp, seq1SplitStart, uses the same rule), read
// through r's block table when the cache is paged (cacheRow, common.cuh): the
// rows may be several sequences (@step). The launch shape depends only on the
// rows, so one CUDA graph serves every decode step.
// The block handles every query head of its KV head's group, so each K/V row
// is read once for the group. Warp w takes rows begin+w, begin+w+kWarps, ...,
// kRowBatch of them at a time (their loads issued together, so a long slice
// is not one memory round trip per row), and keeps an fp32 online softmax
// per query head (running max, sum of exponentials, unnormalised output;
// lane l owns dims l, l+32, ...). The warps' states meet in shared memory
// after one barrier; every thread merges a few (head, dim) entries over the
// warps and the block writes, per query head h of row r,
// partials[((r * kNumHeads + h) * kNumSplits + split) * (kHeadDim+2)] = (max,
// sum, acc[kHeadDim]). An empty split writes (-inf, 0, 0, ...).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const query_type *query, const int *positions,
            partials_type *partials, cache_type *keyCache,
            cache_type *valueCache, KvPages pages, int rows) {
  treniWaitForPreviousKernel();
  constexpr int kGroup = kNumHeads / kNumKvHeads;
  constexpr int kKvDim = kNumKvHeads * kHeadDim;
  constexpr int kWarps = kThreads / 32;
  constexpr int kPerLane = (kHeadDim + 31) / 32;
  constexpr int kRowBatch = 4;
  constexpr int kStride = kHeadDim + 2; // one partial: max, sum, acc
  const float negInf = __int_as_float(0xff800000);
  __shared__ float warpMax[kWarps][kGroup], warpSum[kWarps][kGroup];
  __shared__ float warpAcc[kWarps][kGroup][kHeadDim];

  int kvHead = blockIdx.x / kNumSplits, split = blockIdx.x % kNumSplits;
  int row = blockIdx.y;
  int length = positions[row] + 1;
  query += (long long)row * kNumHeads * kHeadDim;
  partials += (long long)row * kNumHeads * kNumSplits * kStride;
  int chunk = (length + kNumSplits - 1) / kNumSplits;
  int begin = min(length, split * chunk);
  int end = min(length, begin + chunk);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  // This lane's query dims, pre-scaled, for every head of the group.
  float q[kGroup][kPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g)
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      int i = lane + 32 * j;
      q[g][j] = i < kHeadDim ? toFloat(query[(kvHead * kGroup + g) * kHeadDim +
                                             i]) * kScale
                             : 0.0f;
    }
  float runningMax[kGroup], runningSum[kGroup], acc[kGroup][kPerLane];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    runningMax[g] = negInf;
    runningSum[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j)
      acc[g][j] = 0.0f;
  }

  for (int first = begin + warp; first < end; first += kWarps * kRowBatch) {
    float k[kRowBatch][kPerLane], v[kRowBatch][kPerLane];
#pragma unroll
    for (int b = 0; b < kRowBatch; ++b) {
      int t = first + b * kWarps;
      long long offset =
          (t < end ? cacheRow(pages, row, t) : 0) * kKvDim + kvHead * kHeadDim;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        int i = lane + 32 * j;
        bool inside = t < end && i < kHeadDim;
        k[b][j] = inside ? toFloat(keyCache[offset + i]) : 0.0f;
        v[b][j] = inside ? toFloat(valueCache[offset + i]) : 0.0f;
      }
    }
#pragma unroll
    for (int b = 0; b < kRowBatch; ++b) {
      if (first + b * kWarps >= end)
        break;
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int j = 0; j < kPerLane; ++j)
          dot += q[g][j] * k[b][j];
        float score = warpReduceSum(dot);
        float newMax = fmaxf(runningMax[g], score);
        float correction = expf(runningMax[g] - newMax); // 0 on the first row
        float p = expf(score - newMax);
        runningSum[g] = runningSum[g] * correction + p;
#pragma unroll
        for (int j = 0; j < kPerLane; ++j)
          acc[g][j] = acc[g][j] * correction + p * v[b][j];
        runningMax[g] = newMax;
      }
    }
  }

  // The warps' states meet in shared memory (a warp without rows has max
  // -inf and weighs 0).
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      int i = lane + 32 * j;
      if (i < kHeadDim)
        warpAcc[warp][g][i] = acc[g][j];
    }
    if (lane == 0) {
      warpMax[warp][g] = runningMax[g];
      warpSum[warp][g] = runningSum[g];
    }
  }
  __syncthreads();

  // Merge the warps in a fixed order (deterministic).
  for (int index = threadIdx.x; index < kGroup * kStride; index += kThreads) {
    int g = index / kStride, i = index % kStride;
    float maxScore = negInf;
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
      maxScore = fmaxf(maxScore, warpMax[w][g]);
    float result = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
      if (warpMax[w][g] != negInf)
        result += (i == 1 ? warpSum[w][g] : i >= 2 ? warpAcc[w][g][i - 2] : 0.0f) *
                  expf(warpMax[w][g] - maxScore);
    if (i == 0)
      result = maxScore;
    long long head = (long long)kvHead * kGroup + g;
    partials[(head * kNumSplits + split) * kStride + i] = result;
  }
}
