//===-- rope.cuh: rotate-half rotary embedding of every head --------------===//
//
// Grid (ceil(kDim / 2 / kThreads), rows): one thread handles pair i of
// kHeadDim / 2 of one head. The first kRotaryDim / 2 pairs rotate
// (i, i + kRotaryDim / 2); with a partial rotary_dim the others copy two of
// the elements kRotaryDim .. kHeadDim - 1, which pass through. kInvFreq
// (kRotaryDim / 2 values) is computed on the host (codegen/Rope.cpp, shared
// with the CPU reference); the angle is taken in fp32 as transformers does,
// then sinf/cosf at full precision.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, const int *positions, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  constexpr int kHalf = kHeadDim / 2, kRotaryHalf = kRotaryDim / 2;
  int pair = blockIdx.x * kThreads + threadIdx.x;
  if (pair >= kDim / 2)
    return;
  int head = pair / kHalf, i = pair % kHalf;
  long long base = (long long)blockIdx.y * kDim + head * kHeadDim;
  if (i >= kRotaryHalf) { // only when kRotaryDim < kHeadDim
    int j = kRotaryDim + 2 * (i - kRotaryHalf);
    out[base + j] = fromFloat<out_type>(toFloat(x[base + j]));
    out[base + j + 1] = fromFloat<out_type>(toFloat(x[base + j + 1]));
    return;
  }
  float angle = float(positions[blockIdx.y]) * kInvFreq[i];
  float sine, cosine;
  sincosf(angle, &sine, &cosine);
  float a = toFloat(x[base + i]), b = toFloat(x[base + i + kRotaryHalf]);
  out[base + i] = fromFloat<out_type>(a * cosine - b * sine);
  out[base + i + kRotaryHalf] = fromFloat<out_type>(b * cosine + a * sine);
}
