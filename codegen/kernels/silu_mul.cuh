//===-- silu_mul.cuh: out[i] = silu(gu[i]) * gu[kDim + i] -----------------===//
//
// The input row is a fused [gate | up] projection (2 * kDim columns). The
// math is fp32 and the result is rounded once, to out_type.
// Grid (ceil(kDim / kThreads), rows).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const gu_type *gu, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = blockIdx.x * kThreads + threadIdx.x;
  if (column >= kDim)
    return;
  long long row = blockIdx.y;
  float gate = toFloat(gu[row * 2 * kDim + column]);
  float up = toFloat(gu[row * 2 * kDim + kDim + column]);
  out[row * kDim + column] = fromFloat<out_type>(gate / (1.0f + expf(-gate)) * up);
}
