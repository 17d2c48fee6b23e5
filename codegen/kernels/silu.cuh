//===-- silu.cuh: out = x / (1 + exp(-x)) ---------------------------------===//
//
// Grid (ceil(kDim / kThreads), rows).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = blockIdx.x * kThreads + threadIdx.x;
  if (column >= kDim)
    return;
  long long index = (long long)blockIdx.y * kDim + column;
  float value = toFloat(x[index]);
  out[index] = fromFloat<out_type>(value / (1.0f + expf(-value)));
}
