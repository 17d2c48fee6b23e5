//===-- gemv.cuh: out[n] = dot(x, w[n, :]) (+ bias[n]) for one row --------===//
//
// The decode-step linear layer (one token): a matrix-vector product that
// must stream w (kN x kK, row-major as in the checkpoint) at full memory
// bandwidth. Each block computes kRowsPerBlock consecutive outputs; its
// threads split the kK columns in 16-byte chunks, so every load is one
// 128-bit transaction and each thread has kRowsPerBlock such loads in
// flight per chunk (the chunk loop is fully unrolled: kK is a constant).
// Weights are read with the streaming hint (read once per token, they should
// not evict the activations from L2); x is read through the read-only path.
// fp32 accumulation, a warp-shuffle + shared-memory reduction, one rounding.
// Grid (ceil(kN / kRowsPerBlock), 1).

constexpr int kVector = 16 / sizeof(w_type); // elements per 16-byte chunk
constexpr int kChunks = kK / kVector;
static_assert(kK % kVector == 0, "gemv needs kK to be a multiple of 16 bytes");
static_assert(sizeof(x_type) == sizeof(w_type), "x and w share one chunking");

union Chunk {
  uint4 raw;
  w_type elements[kVector];
};

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, const w_type *w, const bias_type *bias,
            out_type *out, int rows) {
  treniWaitForPreviousKernel();
  const int firstRow = blockIdx.x * kRowsPerBlock;
  float accumulators[kRowsPerBlock];
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; ++r)
    accumulators[r] = 0.0f;

  const uint4 *xChunks = reinterpret_cast<const uint4 *>(x);
#pragma unroll
  for (int chunk = threadIdx.x; chunk < kChunks; chunk += kThreads) {
    Chunk xc;
    xc.raw = __ldg(xChunks + chunk);
#pragma unroll
    for (int r = 0; r < kRowsPerBlock; ++r) {
      if (kN % kRowsPerBlock != 0 && firstRow + r >= kN)
        break;
      Chunk wc;
      wc.raw = __ldcs(reinterpret_cast<const uint4 *>(
                          w + (long long)(firstRow + r) * kK) +
                      chunk);
#pragma unroll
      for (int e = 0; e < kVector; ++e)
        accumulators[r] += toFloat(xc.elements[e]) * toFloat(wc.elements[e]);
    }
  }

  __shared__ float warpSums[kRowsPerBlock][kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; ++r) {
    float value = warpReduceSum(accumulators[r]);
    if (lane == 0)
      warpSums[r][warp] = value;
  }
  __syncthreads();
  if (threadIdx.x < kRowsPerBlock && firstRow + threadIdx.x < kN) {
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kThreads / 32; ++i)
      total += warpSums[threadIdx.x][i];
    if (kBias)
      total += toFloat(bias[firstRow + threadIdx.x]);
    out[firstRow + threadIdx.x] = fromFloat<out_type>(total);
  }
}
