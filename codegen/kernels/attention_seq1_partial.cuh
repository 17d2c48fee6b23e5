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
//
// With kTensorCores (GpuOptions::seq1TensorCores), a 16-bit cache, head
// dims a multiple of 64 and groups of up to 16 heads (kSeq1Mma), the
// products run on the tensor cores (mma.sync
// m16n8k16, fp32 accumulation), FlashAttention-2 style: warp w takes tiles
// of 16 positions (begin + 16 w, then every 16 kWarps); S = Q K^T with the
// group's heads as the MMA's 16 rows (zero past the group), p = exp(S - max)
// rounded to the cache type becomes the A operand of O += P V in registers.
// Fragments come straight from global memory, 16 bytes a load: for Q K^T
// thread (g, t) loads dims 32s + 8t .. +8 of its head / position rows (the
// same permutation of the dims for both operands, so the dots are
// unchanged); for P V it loads dims 64b + 8g .. +8 of positions 2t, 2t + 1,
// 2t + 8, 2t + 9 and pairs them by position (byte permutes), so n-index g
// of output tile j is dim 64b + 8g + j. One online softmax per head and
// tile (the row's max over the 4 lanes of a quad) instead of a warp
// reduction per position and head.

constexpr bool kSeq1Bf16 = SameType<cache_type, bf16>::value;
constexpr bool kSeq1Mma = kTensorCores != 0 &&
                          (kSeq1Bf16 || SameType<cache_type, f16>::value) &&
                          kHeadDim % 64 == 0 &&
                          kNumHeads / kNumKvHeads <= 16;

/// The bits of a 16-bit value (an f32 cache never takes the MMA path, but
/// the code is compiled for it too).
__device__ __forceinline__ unsigned seq1Bits(bf16 value) { return value.bits; }
__device__ __forceinline__ unsigned seq1Bits(f16 value) { return value.bits; }
__device__ __forceinline__ unsigned seq1Bits(float) { return 0; }

/// Two fp32 values as a 16-bit pair of the cache type, `low` in the low half.
__device__ __forceinline__ unsigned seq1Pack(float low, float high) {
  return seq1Bits(fromFloat<cache_type>(low)) |
         (seq1Bits(fromFloat<cache_type>(high)) << 16);
}

/// Element j of eight 16-bit values, from `a` and `b`, as a pair (a's low).
__device__ __forceinline__ unsigned seq1Pair(const uint4 &a, const uint4 &b,
                                             int j) {
  unsigned x = (&a.x)[j / 2], y = (&b.x)[j / 2];
  return __byte_perm(x, y, j % 2 ? 0x7632 : 0x5410);
}

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

  if constexpr (kSeq1Mma) {
    // (1 where the path is compiled but never taken: no empty arrays)
    constexpr int kSlabs = kSeq1Mma ? kHeadDim / 32 : 1,
                  kDimBlocks = kSeq1Mma ? kHeadDim / 64 : 1;
    const int g = lane / 4, t = lane % 4;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    // Heads g and g + 8 of the group (zero past it), dims 32s + 8t .. +8.
    uint4 qRows[2][kSlabs];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int s = 0; s < kSlabs; ++s) {
        unsigned words[4] = {0, 0, 0, 0};
        if (g + 8 * h < kGroup) {
          const query_type *q =
              query + (kvHead * kGroup + g + 8 * h) * kHeadDim + 32 * s + 8 * t;
#pragma unroll
          for (int e = 0; e < 4; ++e)
            words[e] = seq1Pack(toFloat(q[2 * e]), toFloat(q[2 * e + 1]));
        }
        qRows[h][s] = make_uint4(words[0], words[1], words[2], words[3]);
      }
    float runMax[2] = {negInf, negInf}, runSum[2] = {0.0f, 0.0f};
    float o[kDimBlocks][8][4];
#pragma unroll
    for (int b = 0; b < kDimBlocks; ++b)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c)
          o[b][j][c] = 0.0f;

    for (int tile = begin + 16 * warp; tile < end; tile += 16 * kWarps) {
      // K: positions tile + 8n + g; V: positions tile + 2t (+1, +8, +9).
      uint4 keys[2][kSlabs], values[4][kDimBlocks];
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        int t0 = tile + 8 * n + g;
        const cache_type *at =
            keyCache + (t0 < end ? cacheRow(pages, row, t0) : 0) * kKvDim +
            kvHead * kHeadDim + 8 * t;
#pragma unroll
        for (int s = 0; s < kSlabs; ++s)
          keys[n][s] = t0 < end
                           ? *reinterpret_cast<const uint4 *>(at + 32 * s)
                           : zero;
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        int t0 = tile + 2 * t + (i & 1) + 8 * (i >> 1);
        const cache_type *at =
            valueCache + (t0 < end ? cacheRow(pages, row, t0) : 0) * kKvDim +
            kvHead * kHeadDim + 8 * g;
#pragma unroll
        for (int b = 0; b < kDimBlocks; ++b)
          values[i][b] = t0 < end
                             ? *reinterpret_cast<const uint4 *>(at + 64 * b)
                             : zero;
      }
      // scores[n]: heads g (c 0, 1) and g + 8 (c 2, 3), positions
      // tile + 8n + 2t (+1).
      float scores[2][4];
#pragma unroll
      for (int n = 0; n < 2; ++n) {
#pragma unroll
        for (int c = 0; c < 4; ++c)
          scores[n][c] = 0.0f;
#pragma unroll
        for (int s = 0; s < kSlabs; ++s) {
          const uint4 &lo = qRows[0][s], &hi = qRows[1][s], &k = keys[n][s];
          mma16816<cache_type>(scores[n], lo.x, hi.x, lo.y, hi.y, k.x, k.y);
          mma16816<cache_type>(scores[n], lo.z, hi.z, lo.w, hi.w, k.z, k.w);
        }
#pragma unroll
        for (int c = 0; c < 4; ++c)
          scores[n][c] = tile + 8 * n + 2 * t + (c & 1) < end
                             ? scores[n][c] * kScale
                             : negInf;
      }
      // Online softmax per head row; position `tile` is inside, so the
      // tile's max is finite.
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float tileMax = fmaxf(fmaxf(scores[0][2 * h], scores[0][2 * h + 1]),
                              fmaxf(scores[1][2 * h], scores[1][2 * h + 1]));
        tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 1));
        tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, 2));
        float newMax = fmaxf(runMax[h], tileMax);
        float correction = expf(runMax[h] - newMax); // 0 on the first tile
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < 2; ++n)
#pragma unroll
          for (int c = 2 * h; c < 2 * h + 2; ++c) {
            scores[n][c] = expf(scores[n][c] - newMax);
            sum += scores[n][c];
          }
        runSum[h] = runSum[h] * correction + sum;
        runMax[h] = newMax;
#pragma unroll
        for (int b = 0; b < kDimBlocks; ++b)
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            o[b][j][2 * h] *= correction;
            o[b][j][2 * h + 1] *= correction;
          }
      }
      // P (heads x 16 positions) as the A operand; O += P V.
      unsigned a0 = seq1Pack(scores[0][0], scores[0][1]),
               a1 = seq1Pack(scores[0][2], scores[0][3]),
               a2 = seq1Pack(scores[1][0], scores[1][1]),
               a3 = seq1Pack(scores[1][2], scores[1][3]);
#pragma unroll
      for (int b = 0; b < kDimBlocks; ++b)
#pragma unroll
        for (int j = 0; j < 8; ++j)
          mma16816<cache_type>(o[b][j], a0, a1, a2, a3,
                  seq1Pair(values[0][b], values[1][b], j),
                  seq1Pair(values[2][b], values[3][b], j));
    }

    // The quad's partial sums; then the warp's state into shared memory.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      runSum[h] += __shfl_xor_sync(0xffffffffu, runSum[h], 1);
      runSum[h] += __shfl_xor_sync(0xffffffffu, runSum[h], 2);
      const int head = g + 8 * h;
      if (head >= kGroup)
        continue;
      if (t == 0) {
        warpMax[warp][head] = runMax[h];
        warpSum[warp][head] = runSum[h];
      }
#pragma unroll
      for (int b = 0; b < kDimBlocks; ++b)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          warpAcc[warp][head][64 * b + 16 * t + j] = o[b][j][2 * h];
          warpAcc[warp][head][64 * b + 16 * t + 8 + j] = o[b][j][2 * h + 1];
        }
    }
  } else {
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
  } // kSeq1Mma
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
