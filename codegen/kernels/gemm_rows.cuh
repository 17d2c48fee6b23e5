//===-- gemm_rows.cuh: out[r, j] = dot(x[r, :], w[j, :]) (+ bias[j]), r < 32 ===//
//
// The GEMM of a batched decode step with few rows (a plan `gemm` step run on
// at most 8 * kRowTiles rows, in place of cuBLASLt): like gemv it must
// stream w (kN x kK, row-major as in the checkpoint) once at full memory
// bandwidth, but every weight element meets up to 32 rows of x, so the
// products run on the tensor cores (mma.sync m16n8k16, 16-bit inputs, fp32
// accumulation): w is the MMA's A operand (16 output features a tile), x the
// B operand (8 rows a tile), out^T the accumulator.
//
// Fragments straight from global memory, 16 bytes a load: within a slab of
// 32 columns, thread (g = lane / 4, t = lane % 4) loads columns 8t..8t+7 of
// weight rows g and g + 8 and of x row g, and feeds columns 8t, 8t+1 where
// the MMA expects k = 2t, 2t+1, columns 8t+2, 8t+3 where it expects 2t+8,
// 2t+9, and columns 8t+4..8t+7 likewise to a second MMA. A and B go through
// the same permutation of k, so the dot products are unchanged, and every
// load is one 128-bit transaction (a warp reads 64 contiguous bytes of each
// of its 16 weight rows). The block's warps split the slabs (warp w takes
// w, w + kWarps, ...); each thread issues the loads of kUnroll slabs before
// any MMA, and the first batch before treniWaitForPreviousKernel() (weights
// never change). Weights are read with the streaming hint, x through the
// read-only path (it is read once per 16 * kFeatureTiles features). The
// warps' accumulators meet in shared memory; the sum, plus bias, is rounded
// once to out_type, as cuBLASLt's epilogue rounds it.
// Grid (ceil(kN / (16 * kFeatureTiles)), 1); rows past `rows` read as zero
// and are not stored.

constexpr bool kGemmRowsBf16 = SameType<w_type, bf16>::value;
static_assert((kGemmRowsBf16 || SameType<w_type, f16>::value) &&
                  SameType<x_type, w_type>::value &&
                  SameType<bias_type, w_type>::value,
              "gemm_rows multiplies 16-bit x and w of one type");
static_assert(kK % 32 == 0, "gemm_rows reads slabs of 32 columns");
constexpr int kWarps = kThreads / 32;
constexpr int kSlabs = kK / 32;
constexpr int kFeatures = 16 * kFeatureTiles;
constexpr int kSlabsPerWarp = (kSlabs + kWarps - 1) / kWarps;

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, const w_type *w, const bias_type *bias,
            out_type *out, int rows) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int firstFeature = blockIdx.x * kFeatures;

  // Rows g and g + 8 of each feature tile (a feature past the end re-reads
  // the last row; it is not stored), from this thread's 16 bytes of a slab.
  const uint4 *weightRows[kFeatureTiles][2];
#pragma unroll
  for (int f = 0; f < kFeatureTiles; ++f)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int feature = min(firstFeature + 16 * f + 8 * h + g, kN - 1);
      weightRows[f][h] =
          reinterpret_cast<const uint4 *>(w + (long long)feature * kK) + t;
    }
  const uint4 zero = make_uint4(0, 0, 0, 0);
  uint4 wc[kUnroll][kFeatureTiles][2];
  auto loadWeights = [&](int first) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int slab = warp + kWarps * (first + u);
      bool inside = first + u < kSlabsPerWarp && slab < kSlabs;
#pragma unroll
      for (int f = 0; f < kFeatureTiles; ++f)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wc[u][f][h] = inside ? __ldcs(weightRows[f][h] + 4 * slab) : zero;
    }
  };
  loadWeights(0);
  treniWaitForPreviousKernel();

  float acc[kFeatureTiles][kRowTiles][4];
#pragma unroll
  for (int f = 0; f < kFeatureTiles; ++f)
#pragma unroll
    for (int r = 0; r < kRowTiles; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        acc[f][r][c] = 0.0f;

  for (int first = 0; first < kSlabsPerWarp; first += kUnroll) {
    if (first > 0)
      loadWeights(first);
    uint4 xc[kUnroll][kRowTiles];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int slab = warp + kWarps * (first + u);
      bool inside = first + u < kSlabsPerWarp && slab < kSlabs;
#pragma unroll
      for (int r = 0; r < kRowTiles; ++r) {
        int row = 8 * r + g;
        xc[u][r] = inside && row < rows
                       ? __ldg(reinterpret_cast<const uint4 *>(
                                   x + (long long)row * kK) +
                               4 * slab + t)
                       : zero;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int f = 0; f < kFeatureTiles; ++f)
#pragma unroll
        for (int r = 0; r < kRowTiles; ++r) {
          const uint4 &low = wc[u][f][0], &high = wc[u][f][1], &b = xc[u][r];
          mma16816<w_type>(acc[f][r], low.x, high.x, low.y, high.y, b.x, b.y);
          mma16816<w_type>(acc[f][r], low.z, high.z, low.w, high.w, b.z, b.w);
        }
  }

  // acc[f][r][c] of lane (g, t): feature 16 f + g (+ 8 for c >= 2), row
  // 8 r + 2 t + (c & 1). The warps' partial sums meet in shared memory.
  constexpr int kValues = kFeatureTiles * kRowTiles * 4 * 32;
  __shared__ float partials[kWarps][kValues];
#pragma unroll
  for (int f = 0; f < kFeatureTiles; ++f)
#pragma unroll
    for (int r = 0; r < kRowTiles; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        partials[warp][((f * kRowTiles + r) * 4 + c) * 32 + lane] = acc[f][r][c];
  __syncthreads();
  for (int v = threadIdx.x; v < kValues; v += kThreads) {
    const int valueLane = v % 32, c = (v / 32) % 4, r = (v / 128) % kRowTiles,
              f = v / (128 * kRowTiles);
    const int feature =
        firstFeature + 16 * f + valueLane / 4 + (c >= 2 ? 8 : 0);
    const int row = 8 * r + 2 * (valueLane % 4) + (c & 1);
    if (feature >= kN || row >= rows)
      continue;
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kWarps; ++i)
      sum += partials[i][v];
    if (kBias)
      sum += toFloat(bias[feature]);
    out[(long long)row * kN + feature] = fromFloat<out_type>(sum);
  }
}
