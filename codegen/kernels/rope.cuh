//===-- rope.cuh: rotate-half rotary embedding of every head --------------===//
//
// Grid (ceil(kDim / 2 / kThreads), rows): one thread rotates the pair
// (i, i + kHeadDim / 2) of one head. kInvFreq is computed on the host
// (codegen/Rope.cpp, shared with the CPU reference); the angle is taken in
// fp32 as transformers does, then sinf/cosf at full precision.

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, const int *positions, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  constexpr int kHalf = kHeadDim / 2;
  int pair = blockIdx.x * kThreads + threadIdx.x;
  if (pair >= kDim / 2)
    return;
  int head = pair / kHalf, i = pair % kHalf;
  long long base = (long long)blockIdx.y * kDim + head * kHeadDim;
  float angle = float(positions[blockIdx.y]) * kInvFreq[i];
  float sine, cosine;
  sincosf(angle, &sine, &cosine);
  float a = toFloat(x[base + i]), b = toFloat(x[base + i + kHalf]);
  out[base + i] = fromFloat<out_type>(a * cosine - b * sine);
  out[base + i + kHalf] = fromFloat<out_type>(b * cosine + a * sine);
}
