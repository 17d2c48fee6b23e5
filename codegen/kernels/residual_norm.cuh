//===-- residual_norm.cuh: sum = residual + branch; out = rms_norm(sum) --===//
//
// Grid (1, rows): one block per row. Each thread owns kPerThread vectors of
// kVector consecutive columns (vector j * kThreads + thread; kVector divides
// kDim), issues all its loads at once (the loops unroll: kDim is a constant)
// and keeps the sums in registers for the normalisation; the block reduction
// is the only barrier. The sum is stored rounded to sum_type and normalised
// as stored, as the CPU reference does.

constexpr int kVectors = kDim / kVector;
constexpr int kPerThread = (kVectors + kThreads - 1) / kThreads;

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const residual_type *residual, const branch_type *branch,
            const weight_type *weight, sum_type *sum, out_type *out,
            int rows) {
  treniWaitForPreviousKernel();
  long long start = (long long)blockIdx.y * kDim;
  float values[kPerThread][kVector];
  float sumSquares = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    int i = (j * kThreads + threadIdx.x) * kVector;
    if (kVectors % kThreads == 0 || i < kDim) {
      Vector<residual_type, kVector> r =
          loadVector<kVector>(residual + start + i);
      Vector<branch_type, kVector> b = loadVector<kVector>(branch + start + i);
      Vector<sum_type, kVector> stored;
#pragma unroll
      for (int e = 0; e < kVector; ++e) {
        stored.v[e] = fromFloat<sum_type>(toFloat(r.v[e]) + toFloat(b.v[e]));
        values[j][e] = toFloat(stored.v[e]);
        sumSquares += values[j][e] * values[j][e];
      }
      storeVector(sum + start + i, stored);
    }
  }
  sumSquares = blockReduceSum<kThreads>(sumSquares);
  float scale = rsqrtf(sumSquares / float(kDim) + kEpsilon);
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    int i = (j * kThreads + threadIdx.x) * kVector;
    if (kVectors % kThreads == 0 || i < kDim) {
      Vector<weight_type, kVector> w = loadVector<kVector>(weight + i);
      Vector<out_type, kVector> result;
#pragma unroll
      for (int e = 0; e < kVector; ++e)
        result.v[e] =
            fromFloat<out_type>(values[j][e] * scale * toFloat(w.v[e]));
      storeVector(out + start + i, result);
    }
  }
}
