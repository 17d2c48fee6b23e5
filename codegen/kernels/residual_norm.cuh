//===-- residual_norm.cuh: sum = residual + branch; out = rms_norm(sum) --===//
//
// Grid (1, rows): one block per row, which at batch 1 makes this kernel pure
// latency: so each thread owns kPerThread columns (j * kThreads + thread),
// issues all its loads at once (the loops unroll: kDim is a constant), keeps
// the sums in registers for the normalisation, and the block reduction is
// the only barrier. The sum is stored rounded to sum_type and normalised as
// stored, as the CPU reference does.

constexpr int kPerThread = (kDim + kThreads - 1) / kThreads;

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const residual_type *residual, const branch_type *branch,
            const weight_type *weight, sum_type *sum, out_type *out,
            int rows) {
  treniWaitForPreviousKernel();
  long long start = (long long)blockIdx.y * kDim;
  float values[kPerThread];
  float sumSquares = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    int i = j * kThreads + threadIdx.x;
    values[j] = 0.0f;
    if (kDim % kThreads == 0 || i < kDim) {
      sum_type stored = fromFloat<sum_type>(toFloat(residual[start + i]) +
                                            toFloat(branch[start + i]));
      sum[start + i] = stored;
      values[j] = toFloat(stored);
    }
    sumSquares += values[j] * values[j];
  }
  sumSquares = blockReduceSum<kThreads>(sumSquares);
  float scale = rsqrtf(sumSquares / float(kDim) + kEpsilon);
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    int i = j * kThreads + threadIdx.x;
    if (kDim % kThreads == 0 || i < kDim)
      out[start + i] = fromFloat<out_type>(values[j] * scale * toFloat(weight[i]));
  }
}
