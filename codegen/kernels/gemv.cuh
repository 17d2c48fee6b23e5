//===-- gemv.cuh: out[j] = epilogue(dot(prologue(x), w[j, :]) (+ bias[j])) ===//
//
// The decode-step linear layer (treni.matvec: one token) with its
// neighbours folded in:
//   kNorm:     x is first RMS-normalised with `norm` and rounded to w_type,
//              as the rms_norm kernel would have stored it;
//   kGated:    w holds kN / 2 gate rows then kN / 2 up rows; output j is
//              silu(gate_j) * up_j, both rounded to w_type first (silu_mul);
//   kResidual: output j is residual[j] + y_j, y_j rounded to w_type first
//              (the residual add).
// It must stream w (kN x kK, row-major as in the checkpoint) at full memory
// bandwidth. Each block computes kRowsPerBlock consecutive outputs (twice as
// many weight rows when gated); its threads split the kK columns in 16-byte
// chunks of w, so every weight load is one 128-bit transaction. A thread
// issues the loads of kBatch chunks for all its rows before it does any
// arithmetic, so up to 8 loads per thread are in flight (kK is a constant:
// the loops unroll completely). The first batch of weight loads is issued
// before treniWaitForPreviousKernel(): weights never change, so under
// programmatic launch they stream in while the previous kernel finishes, and
// only the x loads wait for it. With kNorm every block first reduces the sum
// of squares of x itself (a few KB, from L2): there is no grid-wide barrier.
// Weights are read with the streaming hint (read once per token, they should
// not evict the activations from L2); x is read through the read-only path.
// fp32 accumulation, a warp-shuffle + shared-memory reduction.
// Grid (ceil(outputs / kRowsPerBlock), 1).

constexpr int kVector = 16 / sizeof(w_type); // elements per 16-byte chunk
constexpr int kChunks = kK / kVector;
constexpr int kOutputs = kGated ? kN / 2 : kN;
constexpr int kLoadRows = kGated ? 2 * kRowsPerBlock : kRowsPerBlock;
static_assert(kK % kVector == 0, "gemv needs kK to be a multiple of 16 bytes");
static_assert(sizeof(x_type) == sizeof(w_type) || (kNorm && sizeof(x_type) == 4),
              "x is read in w's chunking (an f32 x only as a norm input)");

union Chunk {
  uint4 raw;
  w_type elements[kVector];
};
/// kVector elements of x: one 16-byte load, or two for an f32 x.
union XChunk {
  uint4 raw[kVector * sizeof(x_type) / 16];
  x_type elements[kVector];
};

__device__ __forceinline__ XChunk loadX(const x_type *x, int chunk) {
  XChunk c;
  const uint4 *words = reinterpret_cast<const uint4 *>(x + chunk * kVector);
#pragma unroll
  for (int i = 0; i < int(sizeof(c.raw) / 16); ++i)
    c.raw[i] = __ldg(words + i);
  return c;
}

/// Value x_i goes into the dot product as: the row, or its normalised and
/// rounded form.
__device__ __forceinline__ float rounded(float value) {
  return toFloat(fromFloat<w_type>(value));
}

extern "C" __global__ void __launch_bounds__(kThreads)
TRENI_ENTRY(const x_type *x, const w_type *w, const bias_type *bias,
            const norm_type *norm, const residual_type *residual,
            out_type *out, int rows) {
  constexpr int kIterations = (kChunks + kThreads - 1) / kThreads;
  constexpr int kBatch = kLoadRows >= 8 ? 1 : 8 / kLoadRows;
  const int firstOutput = blockIdx.x * kRowsPerBlock;
  const uint4 *rowChunks[kLoadRows];
#pragma unroll
  for (int r = 0; r < kLoadRows; ++r) { // an output past the end re-reads the last
    int output = min(firstOutput + r % kRowsPerBlock, kOutputs - 1);
    int row = r < kRowsPerBlock ? output : kOutputs + output; // gated: up row
    rowChunks[r] = reinterpret_cast<const uint4 *>(w + (long long)row * kK);
  }
  float accumulators[kLoadRows];
#pragma unroll
  for (int r = 0; r < kLoadRows; ++r)
    accumulators[r] = 0.0f;

  Chunk wc[kBatch][kLoadRows];
  auto loadWeights = [&](int first) {
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      int chunk = threadIdx.x + (first + b) * kThreads;
      bool inside = first + b < kIterations && chunk < kChunks;
#pragma unroll
      for (int r = 0; r < kLoadRows; ++r)
        wc[b][r].raw = inside ? __ldcs(rowChunks[r] + chunk) : make_uint4(0, 0, 0, 0);
    }
  };
  loadWeights(0);
  treniWaitForPreviousKernel();

  float scale = 1.0f;
  if (kNorm) {
    float sumSquares = 0.0f;
#pragma unroll
    for (int i = 0; i < kIterations; ++i) {
      int chunk = threadIdx.x + i * kThreads;
      if (chunk < kChunks) {
        XChunk xc = loadX(x, chunk);
#pragma unroll
        for (int e = 0; e < kVector; ++e)
          sumSquares += toFloat(xc.elements[e]) * toFloat(xc.elements[e]);
      }
    }
    scale = rsqrtf(blockReduceSum<kThreads>(sumSquares) / float(kK) + kEpsilon);
  }

#pragma unroll
  for (int first = 0; first < kIterations; first += kBatch) {
    if (first > 0)
      loadWeights(first);
    float xv[kBatch][kVector];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      int chunk = threadIdx.x + (first + b) * kThreads;
      bool inside = first + b < kIterations && chunk < kChunks;
      XChunk xc;
      Chunk gc;
      if (inside) {
        xc = loadX(x, chunk);
        if (kNorm)
          gc.raw = __ldg(reinterpret_cast<const uint4 *>(norm) + chunk);
      }
#pragma unroll
      for (int e = 0; e < kVector; ++e) {
        float value = inside ? toFloat(xc.elements[e]) : 0.0f;
        xv[b][e] = kNorm && inside
                       ? rounded(value * scale * toFloat(gc.elements[e]))
                       : value;
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b)
#pragma unroll
      for (int r = 0; r < kLoadRows; ++r)
#pragma unroll
        for (int e = 0; e < kVector; ++e)
          accumulators[r] += xv[b][e] * toFloat(wc[b][r].elements[e]);
  }

  __shared__ float warpSums[kLoadRows][kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < kLoadRows; ++r) {
    float value = warpReduceSum(accumulators[r]);
    if (lane == 0)
      warpSums[r][warp] = value;
  }
  __syncthreads();
  const int j = firstOutput + threadIdx.x;
  if (threadIdx.x < kRowsPerBlock && j < kOutputs) {
    float y = 0.0f, up = 0.0f;
#pragma unroll
    for (int i = 0; i < kThreads / 32; ++i) {
      y += warpSums[threadIdx.x][i];
      if (kGated)
        up += warpSums[kRowsPerBlock + threadIdx.x][i];
    }
    if (kBias) {
      y += toFloat(bias[j]);
      if (kGated)
        up += toFloat(bias[kOutputs + j]);
    }
    if (kGated) {
      float gate = rounded(y);
      y = gate / (1.0f + expf(-gate)) * rounded(up);
    } else if (kResidual) {
      y = toFloat(residual[j]) + rounded(y);
    }
    out[j] = fromFloat<out_type>(y);
  }
}
