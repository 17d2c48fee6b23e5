//===-- gemv.cuh: out[n] = dot(x, w[n, :]) (+ bias[n]) for one row --------===//
//
// The decode-step linear layer (one token): a matrix-vector product that
// must stream w (kN x kK, row-major as in the checkpoint) at full memory
// bandwidth. Each block computes kRowsPerBlock consecutive outputs; its
// threads split the kK columns in 16-byte chunks, so every load is one
// 128-bit transaction. A thread issues the loads of kBatch chunks for all
// its rows before it does any arithmetic, so up to 8 loads per thread are in
// flight (kK is a constant: the loops unroll completely). The first batch of
// weight loads is issued before treniWaitForPreviousKernel(): weights never
// change, so under programmatic launch they stream in while the previous
// kernel finishes, and only the x loads wait for it.
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
  constexpr int kIterations = (kChunks + kThreads - 1) / kThreads;
  constexpr int kBatch = kRowsPerBlock >= 8 ? 1 : 8 / kRowsPerBlock;
  const int firstRow = blockIdx.x * kRowsPerBlock;
  const uint4 *xChunks = reinterpret_cast<const uint4 *>(x);
  const uint4 *rowChunks[kRowsPerBlock];
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; ++r) // a row past kN re-reads the last
    rowChunks[r] = reinterpret_cast<const uint4 *>(
        w + (long long)min(firstRow + r, kN - 1) * kK);
  float accumulators[kRowsPerBlock];
#pragma unroll
  for (int r = 0; r < kRowsPerBlock; ++r)
    accumulators[r] = 0.0f;

  Chunk wc[kBatch][kRowsPerBlock];
  auto loadWeights = [&](int first) {
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      int chunk = threadIdx.x + (first + b) * kThreads;
      bool inside = first + b < kIterations && chunk < kChunks;
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; ++r)
        wc[b][r].raw = inside ? __ldcs(rowChunks[r] + chunk) : make_uint4(0, 0, 0, 0);
    }
  };
  loadWeights(0);
  treniWaitForPreviousKernel();

#pragma unroll
  for (int first = 0; first < kIterations; first += kBatch) {
    if (first > 0)
      loadWeights(first);
    Chunk xc[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      int chunk = threadIdx.x + (first + b) * kThreads;
      xc[b].raw = first + b < kIterations && chunk < kChunks
                      ? __ldg(xChunks + chunk)
                      : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b)
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; ++r)
#pragma unroll
        for (int e = 0; e < kVector; ++e)
          accumulators[r] += toFloat(xc[b].elements[e]) * toFloat(wc[b][r].elements[e]);
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
