//===-- mul.cuh: out = a * b ----------------------------------------------===//
//
// Grid (ceil(kDim / kThreads), rows).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const a_type *a, const b_type *b, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = blockIdx.x * kThreads + threadIdx.x;
  if (column >= kDim)
    return;
  long long index = (long long)blockIdx.y * kDim + column;
  out[index] = fromFloat<out_type>(toFloat(a[index]) * toFloat(b[index]));
}
