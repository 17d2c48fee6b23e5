//===-- rms_norm.cuh: out = x / sqrt(mean(x^2) + eps) * weight -----------===//
//
// Grid (kDim / kGroup, rows): one block normalises one group of one row. A
// group is the whole row, or one head for Qwen3's per-head q/k norm; the
// weight has kGroup elements and is shared by every group. With kUnitOffset
// (Qwen3.5) the factor is 1 + weight, in fp32, and the result is rounded once.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, const weight_type *weight, out_type *out,
            int rows) {
  treniWaitForPreviousKernel();
  long long start =
      (long long)blockIdx.y * kDim + (long long)blockIdx.x * kGroup;
  const x_type *in = x + start;
  float sumSquares = 0.0f;
  for (int i = threadIdx.x; i < kGroup; i += kThreads) {
    float value = toFloat(in[i]);
    sumSquares += value * value;
  }
  sumSquares = blockReduceSum<kThreads>(sumSquares);
  float scale = rsqrtf(sumSquares / float(kGroup) + kEpsilon);
  for (int i = threadIdx.x; i < kGroup; i += kThreads) {
    float w = toFloat(weight[i]);
    if (kUnitOffset)
      w = 1.0f + w;
    out[start + i] = fromFloat<out_type>(toFloat(in[i]) * scale * w);
  }
}
