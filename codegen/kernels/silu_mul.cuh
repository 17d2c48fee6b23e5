//===-- silu_mul.cuh: out[i] = silu(gu[i]) * gu[kDim + i] -----------------===//
//
// The input row is a fused [gate | up] projection (2 * kDim columns). The
// math is fp32 and the result is rounded once, to out_type.
// Grid (ceil(kDim / kVector / kThreads), rows): each thread owns kVector
// consecutive columns (kVector divides kDim), loaded and stored as vectors.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const gu_type *gu, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = (blockIdx.x * kThreads + threadIdx.x) * kVector;
  if (column >= kDim)
    return;
  long long row = blockIdx.y;
  Vector<gu_type, kVector> gate =
      loadVector<kVector>(gu + row * 2 * kDim + column);
  Vector<gu_type, kVector> up =
      loadVector<kVector>(gu + row * 2 * kDim + kDim + column);
  Vector<out_type, kVector> result;
#pragma unroll
  for (int j = 0; j < kVector; ++j) {
    float g = toFloat(gate.v[j]);
    result.v[j] = fromFloat<out_type>(g / (1.0f + expf(-g)) * toFloat(up.v[j]));
  }
  storeVector(out + row * kDim + column, result);
}
