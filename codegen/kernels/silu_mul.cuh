//===-- silu_mul.cuh: out[i] = silu(gu[i]) * gu[kDim + i] -----------------===//
//
// The input row is a fused [gate | up] projection (2 * kDim columns). The
// math is fp32 and the result is rounded once, to out_type.
// Grid (ceil(kDim / kVector / kThreads), rows): each thread takes kVector
// consecutive columns (8 when kDim allows it: one 16-byte load of the gate,
// one of the up half and one 16-byte store for 16-bit types).

template <typename T> struct SiluMulVector {
  T values[kVector];
};

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const gu_type *gu, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  int column = (blockIdx.x * kThreads + threadIdx.x) * kVector;
  if (column >= kDim)
    return;
  long long row = blockIdx.y;
  // Aligned: kDim is a multiple of kVector, so every row and column offset
  // is a multiple of the vector's size.
  SiluMulVector<gu_type> gate =
      *reinterpret_cast<const SiluMulVector<gu_type> *>(gu + row * 2 * kDim +
                                                        column);
  SiluMulVector<gu_type> up = *reinterpret_cast<const SiluMulVector<gu_type> *>(
      gu + row * 2 * kDim + kDim + column);
  SiluMulVector<out_type> result;
#pragma unroll
  for (int i = 0; i < kVector; ++i) {
    float g = toFloat(gate.values[i]);
    result.values[i] =
        fromFloat<out_type>(g / (1.0f + expf(-g)) * toFloat(up.values[i]));
  }
  *reinterpret_cast<SiluMulVector<out_type> *>(out + row * kDim + column) =
      result;
}
