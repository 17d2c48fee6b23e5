//===-- attention_seq1_partial.cuh: split-KV decode attention, step 1 ----===//
//
// Grid (kNumKvHeads * kNumSplits): block b takes KV head b / kNumSplits and
// split b % kNumSplits of the cache rows 0..positions[0], cut into kNumSplits
// slices of ceil(length / kNumSplits) rows (runtime/cpu_kernels.cpp,
// seq1SplitStart, uses the same rule). The launch shape never depends on the
// position, so one CUDA graph serves every decode step.
// The block handles every query head of its KV head's group, so each K/V row
// is read once for the group. Warp w takes rows begin+w, begin+w+kWarps, ...
// and keeps an fp32 online softmax per query head (running max, sum of
// exponentials, unnormalised output; lane l owns dims l, l+32, ...). The
// warps are then merged one after another in shared memory, and the block
// writes, per query head h, partials[(h * kNumSplits + split) * (kHeadDim+2)]
// = (max, sum, acc[kHeadDim]). An empty split writes (-inf, 0, 0, ...).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const query_type *query, const int *positions,
            partials_type *partials, cache_type *keyCache,
            cache_type *valueCache, int rows) {
  treniWaitForPreviousKernel();
  constexpr int kGroup = kNumHeads / kNumKvHeads;
  constexpr int kKvDim = kNumKvHeads * kHeadDim;
  constexpr int kWarps = kThreads / 32;
  constexpr int kPerLane = (kHeadDim + 31) / 32;
  const float negInf = __int_as_float(0xff800000);
  __shared__ float sharedMax[kGroup], sharedSum[kGroup];
  __shared__ float sharedAcc[kGroup][kHeadDim];

  int kvHead = blockIdx.x / kNumSplits, split = blockIdx.x % kNumSplits;
  int length = positions[0] + 1;
  int chunk = (length + kNumSplits - 1) / kNumSplits;
  int begin = min(length, split * chunk);
  int end = min(length, begin + chunk);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  // This lane's query dims, pre-scaled, for every head of the group.
  float q[kGroup][kPerLane];
  for (int g = 0; g < kGroup; ++g)
    for (int j = 0; j < kPerLane; ++j) {
      int i = lane + 32 * j;
      q[g][j] = i < kHeadDim ? toFloat(query[(kvHead * kGroup + g) * kHeadDim +
                                             i]) * kScale
                             : 0.0f;
    }
  float runningMax[kGroup], runningSum[kGroup], acc[kGroup][kPerLane];
  for (int g = 0; g < kGroup; ++g) {
    runningMax[g] = negInf;
    runningSum[g] = 0.0f;
    for (int j = 0; j < kPerLane; ++j)
      acc[g][j] = 0.0f;
  }

  for (int t = begin + warp; t < end; t += kWarps) {
    const cache_type *key = keyCache + (long long)t * kKvDim + kvHead * kHeadDim;
    const cache_type *value =
        valueCache + (long long)t * kKvDim + kvHead * kHeadDim;
    float k[kPerLane], v[kPerLane];
    for (int j = 0; j < kPerLane; ++j) {
      int i = lane + 32 * j;
      k[j] = i < kHeadDim ? toFloat(key[i]) : 0.0f;
      v[j] = i < kHeadDim ? toFloat(value[i]) : 0.0f;
    }
    for (int g = 0; g < kGroup; ++g) {
      float dot = 0.0f;
      for (int j = 0; j < kPerLane; ++j)
        dot += q[g][j] * k[j];
      float score = warpReduceSum(dot);
      float newMax = fmaxf(runningMax[g], score);
      float correction = expf(runningMax[g] - newMax); // 0 on the first row
      float p = expf(score - newMax);
      runningSum[g] = runningSum[g] * correction + p;
      for (int j = 0; j < kPerLane; ++j)
        acc[g][j] = acc[g][j] * correction + p * v[j];
      runningMax[g] = newMax;
    }
  }

  // Merge the warps' states in a fixed order (deterministic).
  for (int w = 0; w < kWarps; ++w) {
    if (warp == w) {
      for (int g = 0; g < kGroup; ++g) {
        float oldMax = w == 0 ? negInf : sharedMax[g];
        float newMax = fmaxf(oldMax, runningMax[g]);
        // Either side may be empty (max -inf): it then weighs 0.
        float oldWeight = oldMax == negInf ? 0.0f : expf(oldMax - newMax);
        float newWeight =
            runningMax[g] == negInf ? 0.0f : expf(runningMax[g] - newMax);
        float oldSum = w == 0 ? 0.0f : sharedSum[g];
        for (int j = 0; j < kPerLane; ++j) {
          int i = lane + 32 * j;
          if (i < kHeadDim) {
            float old = w == 0 ? 0.0f : sharedAcc[g][i];
            sharedAcc[g][i] = old * oldWeight + acc[g][j] * newWeight;
          }
        }
        __syncwarp();
        if (lane == 0) {
          sharedMax[g] = newMax;
          sharedSum[g] = oldSum * oldWeight + runningSum[g] * newWeight;
        }
        __syncwarp();
      }
    }
    __syncthreads();
  }

  for (int index = threadIdx.x; index < kGroup * (kHeadDim + 2);
       index += kThreads) {
    int g = index / (kHeadDim + 2), i = index % (kHeadDim + 2);
    float result = i == 0   ? sharedMax[g]
                   : i == 1 ? sharedSum[g]
                            : sharedAcc[g][i - 2];
    long long head = (long long)kvHead * kGroup + g;
    partials[(head * kNumSplits + split) * (kHeadDim + 2) + i] = result;
  }
}
