//===-- residual_norm.cuh: sum = residual + branch; out = rms_norm(sum) --===//
//
// Grid (1, rows): one block per row. Each thread adds its columns in fp32,
// writes them to `sum` once and keeps the sum of squares; after the block
// reduction the same thread reads back only the columns it wrote (no barrier
// needed; f32 sums read back exactly) and writes the normalised row once.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const residual_type *residual, const branch_type *branch,
            const weight_type *weight, sum_type *sum, out_type *out,
            int rows) {
  treniWaitForPreviousKernel();
  long long start = (long long)blockIdx.y * kDim;
  float sumSquares = 0.0f;
  for (int i = threadIdx.x; i < kDim; i += kThreads) {
    sum_type stored = fromFloat<sum_type>(toFloat(residual[start + i]) +
                                          toFloat(branch[start + i]));
    sum[start + i] = stored;
    float value = toFloat(stored);
    sumSquares += value * value;
  }
  sumSquares = blockReduceSum<kThreads>(sumSquares);
  float scale = rsqrtf(sumSquares / float(kDim) + kEpsilon);
  for (int i = threadIdx.x; i < kDim; i += kThreads)
    out[start + i] = fromFloat<out_type>(toFloat(sum[start + i]) * scale *
                                         toFloat(weight[i]));
}
