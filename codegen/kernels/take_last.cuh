//===-- take_last.cuh: out[0] = x[rows - 1] -------------------------------===//
//
// Grid (ceil(kDim / kThreads), 1): the row count is an argument, not a grid
// dimension, so the same launch serves every prompt length.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = blockIdx.x * kThreads + threadIdx.x;
  if (column >= kDim)
    return;
  out[column] =
      fromFloat<out_type>(toFloat(x[(long long)(rows - 1) * kDim + column]));
}
