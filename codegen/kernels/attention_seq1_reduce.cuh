//===-- attention_seq1_reduce.cuh: split-KV decode attention, step 2 -----===//
//
// Grid (kNumHeads, rows): block (h, r) combines the kNumSplits partials of
// query head h of row r written by attention_seq1_partial: with M the
// largest split max,
//   out[h][i] = sum_s acc_s[i] * exp(max_s - M) / sum_s sum_s * exp(max_s - M),
// skipping empty splits (sum 0, max -inf). Every thread reads the (max, sum)
// pairs itself (kNumSplits of them; the loops unroll so the loads issue
// together) and owns dims i, i + kThreads, ...

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const partials_type *partials, out_type *out, int rows) {
  treniWaitForPreviousKernel();
  long long head = (long long)blockIdx.y * kNumHeads + blockIdx.x;
  const partials_type *first =
      partials + (long long)head * kNumSplits * (kHeadDim + 2);
  float maxScore = __int_as_float(0xff800000);
#pragma unroll
  for (int s = 0; s < kNumSplits; ++s)
    maxScore = fmaxf(maxScore, toFloat(first[s * (kHeadDim + 2)]));
  float total = 0.0f;
#pragma unroll
  for (int s = 0; s < kNumSplits; ++s) {
    float sum = toFloat(first[s * (kHeadDim + 2) + 1]);
    if (sum != 0.0f)
      total += sum * expf(toFloat(first[s * (kHeadDim + 2)]) - maxScore);
  }
  for (int i = threadIdx.x; i < kHeadDim; i += kThreads) {
    float acc = 0.0f;
  #pragma unroll
  for (int s = 0; s < kNumSplits; ++s) {
      const partials_type *partial = first + s * (kHeadDim + 2);
      if (toFloat(partial[1]) != 0.0f)
        acc += toFloat(partial[2 + i]) *
               expf(toFloat(partial[0]) - maxScore);
    }
    out[head * kHeadDim + i] = fromFloat<out_type>(acc / total);
  }
}
