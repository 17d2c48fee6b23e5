//===-- embedding.cuh: out[r] = table[ids[r]] -----------------------------===//
//
// Grid (ceil(kDim / kThreads), rows). An id outside [0, kVocab) yields a zero
// row instead of a wild read (the executors reject such ids before launch).

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const int *ids, const table_type *table, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = blockIdx.x * kThreads + threadIdx.x;
  if (column >= kDim)
    return;
  int id = ids[blockIdx.y];
  float value = 0.0f;
  if (id >= 0 && id < kVocab)
    value = toFloat(table[(long long)id * kDim + column]);
  out[(long long)blockIdx.y * kDim + column] = fromFloat<out_type>(value);
}
