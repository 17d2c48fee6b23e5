//===-- cache_write.cuh: key/value rows -> KV cache rows positions[r] -----===//
//
// Grid (ceil(kDim / kThreads), rows). keyCache/valueCache are this layer's
// caches, row-major [cache rows, kDim]; position p of row r goes to cache row
// cacheRow(pages, r, p) (common.cuh). The runtime checks positions and tables.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const key_type *key, const value_type *value, const int *positions,
            cache_type *keyCache, cache_type *valueCache, KvPages pages,
            int rows) {
  treniWaitForPreviousKernel();
  int column = blockIdx.x * kThreads + threadIdx.x;
  if (column >= kDim)
    return;
  long long source = (long long)blockIdx.y * kDim + column;
  long long target =
      cacheRow(pages, blockIdx.y, positions[blockIdx.y]) * kDim + column;
  keyCache[target] = fromFloat<cache_type>(toFloat(key[source]));
  valueCache[target] = fromFloat<cache_type>(toFloat(value[source]));
}
