//===-- sampler_kernel.cuh: token sampling with uncertainty outputs -------===//
//
// One kernel, `treni_sample`, launched as a single block of 1024 threads on
// the final logits (fp32, vocab <= 2^18). It writes the token, its logprob and
// the entropy under the unmodified distribution and the top alternatives,
// then advances the step counter it read, so a CUDA graph replayed every
// token draws a fresh number without the host. Given a feed (decode), it also
// writes the token and the next position into @decode's inputs: the next
// step can be enqueued before the host has read this one. Needs sm_80+.
//
// NVRTC compiles this text with no headers. runtime/exec/sampler.cpp includes it
// too: the order key, the integer sampling weight, the RNG and the draw
// below are then the same code on CPU and GPU, so both pick the same token.
//
// Semantics (runtime/exec/sampler.h states them for users):
//  - rank order: logit descending, token id ascending. -inf logits are
//    masked; NaN or +inf gives token -1.
//  - weight w_i ~ 2^40 exp((l_i - max) / T), an integer (the log2 rounded
//    to 1/1024, from a table), so masses and the CDF are exact sums, the
//    same in any order.
//  - top-k keeps the first k tokens in rank order; the nucleus is then taken
//    on them (as transformers and vLLM do): the largest logit v whose upper
//    set reaches ceil(topP * kept mass) keeps every kept token >= v.
//  - the draw: target = floor(random64(seed, step) * keptMass / 2^64); the
//    token is the first kept one by id whose cumulative weight exceeds it.
//
// How, with one block and no global atomics. Each warp owns a contiguous
// slice of the vocabulary and walks it with float4 loads (coalesced). One SM
// reads ~600 KB from L2 in ~5-10 us, so passes are what to save:
//  pass A  max and argmax, softmax sums for logprob/entropy (online: one
//          ex2.approx per token, rescaled when a thread's max grows),
//          finite count, each thread's maximum. Greedy stops here.
//  pass B  (only if needed) the weights of every token (top-p without
//          top-k, or no limit) and a compaction of the likely candidates
//          into shared memory: tokens >= the k-th largest warp/thread
//          maximum (a lower bound of the k-th largest logit) for top-k and
//          alternatives; tokens within 2^-14 of the top weight for top-p.
//  select  exact boundaries over the candidates: rank counting (<= 256
//          of them) or a radix select over 8-bit key digits (u32 shared
//          atomics). If they overflow (ties, flat distributions, k > 1024),
//          `locate` narrows a key range with a 1024-bin histogram per pass
//          (exact counts and masses) until it fits: ~60 us a pass.
//  draw    <= 256 kept tokens in shared memory: each sums the kept mass
//          before it in id order. Otherwise per-warp kept mass over the
//          slices, then over 1/32 of the chosen slice, then one warp scans
//          ~150 tokens. Alternatives come from the candidates too.
// Greedy without alternatives needs pass A alone: the host then launches
// kSamplerBlocks blocks, each runs pass A over its share of the vocabulary,
// and the last to finish combines their partials (splitPassA).
// Measured on an H100 (151936 logits, back-to-back launches): greedy 20 us
// on one block (9 us split over 32 blocks, on an H200), greedy + 20
// alternatives 37 us, T=1 47 us, T=0.7 top-k 40 39 us, top-k 40
// + top-p 0.9 + 20 alternatives 51 us, top-p 0.9 alone 86 us; the fallback
// cases (top-p 0.99, top-k 5000, near-uniform logits with top-p) ~270 us.
//
//===----------------------------------------------------------------------===//

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#define TRENI_SAMPLER_FN static __device__ __forceinline__
#else
// Host build: the includer provides <cmath>, <cstdint> and <cstring>.
#define TRENI_SAMPLER_FN static inline
#endif

/// Launch parameters, mirrored by treni::SamplingParamsDevice (sampler.h).
struct SamplingParamsDevice {
  unsigned long long seed;
  float temperature;   ///< 0 = greedy
  float topP;          ///< 1 = no nucleus limit
  int topK;            ///< 0 = no top-k limit
  int numAlternatives; ///< 0..20
};

/// Result, mirrored by treni::SampleResultDevice (sampler.h). token == -1:
/// NaN or +inf logits, all logits -inf, or invalid parameters.
struct SampleResultDevice {
  int token;
  float logprob; ///< of `token` under the unmodified distribution
  float entropy; ///< nats, unmodified distribution
  int numAlternatives;
  int alternativeTokens[20];
  float alternativeLogprobs[20];
};

/// Where a decode step's token goes next, mirrored by treni::SampleFeedDevice
/// (sampler.h). With `position` null the kernel writes out[0] and feeds
/// nothing. Otherwise *position is the position of the row just computed,
/// p: the result goes to out[p & 1] (two slots, so the host can read one
/// step while the next is writing), and the kernel then writes the token
/// (0 for -1) to ids[0], p + 1 to positions[0] and to *position: the inputs
/// of the next decode step, so that step can run without the host.
struct SampleFeedDevice {
  int *ids;
  int *positions;
  int *position;
};

/// One block's pass A when greedy sampling without alternatives is split
/// over several blocks, mirrored by treni::SamplePartialDevice (sampler.h):
/// the block's largest logit (lowest index), the softmax sums relative to it
/// and whether it saw a NaN.
struct SamplePartialDevice {
  double sumExp;     ///< sum 2^t, t = (x - best) log2 e
  double sumExpLog2; ///< sum 2^t t
  float best;
  int bestIndex;
  int nan;
  int unused;
};

//===-- Shared by CPU and GPU ---------------------------------------------===//

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
TRENI_SAMPLER_FN float treniFma(float a, float b, float c) {
  return __fmaf_rn(a, b, c);
}
TRENI_SAMPLER_FN float treniAdd(float a, float b) { return __fadd_rn(a, b); }
TRENI_SAMPLER_FN float treniSub(float a, float b) { return __fsub_rn(a, b); }
TRENI_SAMPLER_FN float treniMul(float a, float b) { return __fmul_rn(a, b); }
TRENI_SAMPLER_FN float treniDiv(float a, float b) { return __fdiv_rn(a, b); }
TRENI_SAMPLER_FN unsigned treniFloatBits(float x) { return __float_as_uint(x); }
TRENI_SAMPLER_FN float treniBitsFloat(unsigned x) { return __uint_as_float(x); }
TRENI_SAMPLER_FN unsigned long long treniMulHi(unsigned long long a,
                                               unsigned long long b) {
  return __umul64hi(a, b);
}
TRENI_SAMPLER_FN double treniU64ToDouble(unsigned long long x) {
  return __ull2double_rn(x);
}
TRENI_SAMPLER_FN double treniCeil(double x) { return ceil(x); }
#else
TRENI_SAMPLER_FN float treniFma(float a, float b, float c) {
  return std::fma(a, b, c);
}
TRENI_SAMPLER_FN float treniAdd(float a, float b) { return a + b; }
TRENI_SAMPLER_FN float treniSub(float a, float b) { return a - b; }
TRENI_SAMPLER_FN float treniMul(float a, float b) { return a * b; }
TRENI_SAMPLER_FN float treniDiv(float a, float b) { return a / b; }
TRENI_SAMPLER_FN unsigned treniFloatBits(float x) {
  unsigned bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}
TRENI_SAMPLER_FN float treniBitsFloat(unsigned x) {
  float value;
  std::memcpy(&value, &x, sizeof(value));
  return value;
}
TRENI_SAMPLER_FN unsigned long long treniMulHi(unsigned long long a,
                                               unsigned long long b) {
  return static_cast<unsigned long long>(
      (static_cast<unsigned __int128>(a) * b) >> 64);
}
TRENI_SAMPLER_FN double treniU64ToDouble(unsigned long long x) {
  return static_cast<double>(x);
}
TRENI_SAMPLER_FN double treniCeil(double x) { return std::ceil(x); }
#endif

/// Unsigned key with the order of the float (-0 and +0 are one key). NaN is
/// rejected before keys matter.
TRENI_SAMPLER_FN unsigned treniOrderKey(float value) {
  unsigned bits = value == 0.0f ? 0u : treniFloatBits(value);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
TRENI_SAMPLER_FN float treniKeyValue(unsigned key) {
  return treniBitsFloat((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

/// 1024 log2(e) / temperature: a logit difference times this is the log2 of
/// the relative weight, in 1/1024ths.
TRENI_SAMPLER_FN float treniWeightScale(float temperature) {
  return treniDiv(0x1.715476p+10f, temperature);
}

/// floor(2^(40 + x)) for x in [-40, 0]: 2^k times a degree-6 polynomial in
/// f = x - k, |f| <= 1/2 (relative error ~2e-7), from IEEE add/mul/fma only,
/// so CPU and GPU agree bit for bit.
TRENI_SAMPLER_FN unsigned long long treniExp2Fixed(float x) {
  float shifted = treniAdd(x, 0x1.8p23f); // the integer nearest x, in its bits
  float f = treniSub(x, treniSub(shifted, 0x1.8p23f));
  float p = 0x1.430912p-13f; // ln2^n / n!
  p = treniFma(p, f, 0x1.5d87fep-10f);
  p = treniFma(p, f, 0x1.3b2ab6p-7f);
  p = treniFma(p, f, 0x1.c6b08ep-5f);
  p = treniFma(p, f, 0x1.ebfbe0p-3f);
  p = treniFma(p, f, 0x1.62e430p-1f);
  p = treniFma(p, f, 1.0f);
  int exponent = static_cast<int>(treniFloatBits(shifted)) - 0x4b400000 + 40;
  float value =
      treniMul(p, treniBitsFloat(static_cast<unsigned>(exponent + 127) << 23));
  // floor(value) from its bits (value in [0.7, 2^40]): no float->u64
  // conversion, which shares the GPU's slow pipe with exp2.
  unsigned bits = treniFloatBits(value);
  int shift = static_cast<int>(bits >> 23) - 150;
  unsigned long long mantissa = (bits & 0x7fffffu) | 0x800000u;
  return shift >= 0 ? mantissa << shift : mantissa >> -shift;
}

/// Entry j of the weight table: floor(2^(40 - j/1024)), j in [0, 1024).
TRENI_SAMPLER_FN unsigned long long treniWeightTableEntry(int j) {
  return treniExp2Fixed(treniMul(static_cast<float>(j), -0x1p-10f));
}

/// The integer sampling weight of a logit: 2^40 times its weight relative to
/// the top token, with the log2 rounded to 1/1024 (0.03% at most: far below
/// the logits' own precision): table[j % 1024] >> (j / 1024), j = round(-u),
/// u = (logit - maxLogit) * scale. 0 below 2^-40 (and for -inf). At most
/// 2^40, so 2^23 tokens sum below 2^64.
TRENI_SAMPLER_FN unsigned long long
treniSamplingWeight(float logit, float maxLogit, float scale,
                    const unsigned long long *table) {
  float u = treniMul(treniSub(logit, maxLogit), scale);
  if (!(u >= -40960.5f))
    return 0;
  int j = 0x4b400000 - static_cast<int>(treniFloatBits(treniAdd(u, 0x1.8p23f)));
  return j > 40960 ? 0ull : table[j & 1023] >> (static_cast<unsigned>(j) >> 10);
}

/// splitmix64's output function.
TRENI_SAMPLER_FN unsigned long long treniMix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// 64 random bits that depend only on (seed, step): the step-th output of a
/// splitmix64 stream whose state starts at mix64(seed).
TRENI_SAMPLER_FN unsigned long long treniRandomBits(unsigned long long seed,
                                                    unsigned long long step) {
  return treniMix64(treniMix64(seed) + (step + 1) * 0x9e3779b97f4a7c15ull);
}

/// floor(u * total) for u = bits / 2^64 in [0, 1): the CDF position to find.
TRENI_SAMPLER_FN unsigned long long treniDrawTarget(unsigned long long bits,
                                                    unsigned long long total) {
  return treniMulHi(bits, total);
}

/// The mass the nucleus must reach: ceil(topP * total), within [1, total].
TRENI_SAMPLER_FN unsigned long long treniNucleusMass(float topP,
                                                     unsigned long long total) {
  double need = treniCeil(static_cast<double>(topP) * treniU64ToDouble(total));
  unsigned long long mass = need >= treniU64ToDouble(total)
                                ? total
                                : static_cast<unsigned long long>(need);
  return mass < 1 ? 1 : mass;
}

//===-- GPU ---------------------------------------------------------------===//

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#ifdef TRENI_SAMPLER_DEBUG
// Phase timestamps (%globaltimer, ns) and locate pass counts, for tests.
__device__ unsigned long long treni_sampler_debug[16];
#define TRENI_SAMPLER_MARK(i)                                                  \
  do {                                                                         \
    if (threadIdx.x == 0) {                                                    \
      unsigned long long now;                                                  \
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));                  \
      treni_sampler_debug[i] = now;                                            \
    }                                                                          \
  } while (0)
#define TRENI_SAMPLER_COUNT(i)                                                 \
  do {                                                                         \
    if (threadIdx.x == 0)                                                      \
      ++treni_sampler_debug[i];                                                \
  } while (0)
#else
#define TRENI_SAMPLER_MARK(i) ((void)0)
#define TRENI_SAMPLER_COUNT(i) ((void)0)
#endif

namespace treni_sampler {

typedef unsigned long long u64;
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 1024;     ///< histogram bins of a locate pass
constexpr int kCapacity = 2048; ///< candidates held in shared memory
#ifndef TRENI_SAMPLER_UNROLL
#define TRENI_SAMPLER_UNROLL 4
#endif
constexpr int kUnroll = TRENI_SAMPLER_UNROLL; ///< float4 loads in flight/lane
constexpr int kMaxAlternatives = 20;
constexpr int kMaxVocab = 1 << 18;   ///< so 14-bit weight parts sum in u32
constexpr int kMaxLocatePasses = 12; ///< 32 key bits / 10 per pass, + slack
constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned kLowestFiniteKey = 0x00800000u; ///< key of -FLT_MAX
/// Nucleus candidates gathered in pass B: log2 weight >= this.
constexpr float kNucleusRegion = -14.0f;

struct Shared {
  u64 weightTable[1024]; ///< treniWeightTableEntry
  unsigned histCount[kBins];
  unsigned histMass[3][kBins]; ///< weight bits 0..13, 14..27, 28..41, summed
  unsigned bufferKey[kCapacity];
  int bufferId[kCapacity];
  int bufferCount;    ///< may exceed kCapacity: then the buffer is incomplete
  int bufferReplaced; ///< a locate pass refilled the buffer after pass B
  int failed;         ///< a locate did not converge (never expected)
  u64 scratchU[kWarps];
  u64 scratchV[kWarps];
  double scratchD[kWarps];
  float scratchF[kWarps];
  int scratchI[kWarps];
  u64 sliceMass[kWarps];
  unsigned sliceTies[kWarps];
  int selectedBin;
  u64 selectedAbove;
  int aboveTokens[kMaxAlternatives];
  int numAbove;
  int tieTokens[kWarps][kMaxAlternatives];
  int numTieTokens[kWarps];
  int pickSlice, pickToken;
  int numSmall; ///< entries gathered from the buffer (ties, kept tokens)
  int outIds[kMaxAlternatives];
  float outValues[kMaxAlternatives];
  int outCount;
  float tokenValue;
  u64 pickRest;
  unsigned pickTies;
};

__device__ __forceinline__ float negativeInfinity() {
  return __uint_as_float(0xff800000u);
}

__device__ __forceinline__ float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float4 load4(const float *__restrict__ logits,
                                        int first, int end, bool aligned) {
  if (aligned && first + 4 <= end)
    return __ldg(reinterpret_cast<const float4 *>(logits + first));
  float4 v = make_float4(negativeInfinity(), negativeInfinity(),
                         negativeInfinity(), negativeInfinity());
  if (first < end)
    v.x = __ldg(logits + first);
  if (first + 1 < end)
    v.y = __ldg(logits + first + 1);
  if (first + 2 < end)
    v.z = __ldg(logits + first + 2);
  if (first + 3 < end)
    v.w = __ldg(logits + first + 3);
  return v;
}

/// The calling warp walks [begin, end) (begin a multiple of 4), 128 tokens a
/// step, lane l taking the 4 at step + 4l; past the end they read -inf.
/// `f(first, values, count)` is called by every lane in token order (count
/// may be 0), so it may use warp collectives.
template <typename F>
__device__ __forceinline__ void forEachGroup(const float *__restrict__ logits,
                                             int begin, int end, bool aligned,
                                             F &&f) {
  const int lane = threadIdx.x & 31;
  for (int base = begin; base < end; base += 128 * kUnroll) {
    float4 values[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      values[u] = load4(logits, base + u * 128 + lane * 4, end, aligned);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      int first = base + u * 128 + lane * 4;
      f(first, values[u], min(max(end - first, 0), 4));
    }
  }
}

__device__ __forceinline__ float component(float4 v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

template <typename T> __device__ __forceinline__ T warpSum(T value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(kFullMask, value, offset);
  return value;
}
template <typename T> __device__ __forceinline__ T warpInclusiveScan(T value) {
  const int lane = threadIdx.x & 31;
  for (int offset = 1; offset < 32; offset *= 2) {
    T other = __shfl_up_sync(kFullMask, value, offset);
    if (lane >= offset)
      value += other;
  }
  return value;
}

/// Block-wide sum in a fixed order; every thread gets it.
template <typename T>
__device__ __forceinline__ T blockSum(T value, T *scratch) {
  value = warpSum(value);
  if ((threadIdx.x & 31) == 0)
    scratch[threadIdx.x / 32] = value;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < kWarps; ++w)
    total += scratch[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ unsigned blockMin(unsigned value, int *scratch) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = min(value, __shfl_xor_sync(kFullMask, value, offset));
  if ((threadIdx.x & 31) == 0)
    scratch[threadIdx.x / 32] = (int)value;
  __syncthreads();
  unsigned result = ~0u;
  for (int w = 0; w < kWarps; ++w)
    result = min(result, (unsigned)scratch[w]);
  __syncthreads();
  return result;
}

/// Exclusive prefix sum over the block, in thread order.
__device__ __forceinline__ u64 blockExclusiveScan(u64 value, u64 *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  u64 inclusive = warpInclusiveScan(value);
  if (lane == 31)
    scratch[warp] = inclusive;
  __syncthreads();
  u64 before = 0;
  for (int w = 0; w < warp; ++w)
    before += scratch[w];
  __syncthreads();
  return before + inclusive - value;
}

/// Walking bins from the highest down, the bin where the running sum of
/// `value(bin)` first reaches `target`, and the sum of the bins above it;
/// bin -1 if the total stays below. Every thread gets the answer. Up to 256
/// bins one warp does it; up to 2048 the block.
template <typename V>
__device__ __forceinline__ int
selectFromTop(Shared &sh, int numBins, u64 target, V &&value, u64 *above) {
  const int lane = threadIdx.x & 31;
  if (numBins <= 256) {
    if (threadIdx.x < 32) {
      // Lane l owns bins [top - 8l - 7, top - 8l], highest first.
      u64 values[8], sum = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        int b = numBins - 1 - 8 * lane - i;
        values[i] = b >= 0 ? value(b) : 0;
        sum += values[i];
      }
      u64 inclusive = warpInclusiveScan(sum);
      u64 before = inclusive - sum;
      if (lane == 0)
        sh.selectedBin = -1;
      __syncwarp();
      if (before < target && target <= inclusive) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (before + values[i] >= target) {
            sh.selectedBin = numBins - 1 - 8 * lane - i;
            sh.selectedAbove = before;
            break;
          }
          before += values[i];
        }
      }
    }
  } else {
    if (threadIdx.x == 0)
      sh.selectedBin = -1;
    const int j = 2 * threadIdx.x; // bins numBins-1-j and numBins-2-j
    u64 first = j < numBins ? value(numBins - 1 - j) : 0;
    u64 second = j + 1 < numBins ? value(numBins - 2 - j) : 0;
    u64 before = blockExclusiveScan(first + second, sh.scratchU);
    if (j < numBins && before < target && target <= before + first) {
      sh.selectedBin = numBins - 1 - j;
      sh.selectedAbove = before;
    }
    if (j + 1 < numBins && before + first < target &&
        target <= before + first + second) {
      sh.selectedBin = numBins - 2 - j;
      sh.selectedAbove = before + first;
    }
  }
  __syncthreads();
  int bin = sh.selectedBin;
  *above = sh.selectedAbove;
  __syncthreads();
  return bin;
}

__device__ __forceinline__ void clearHistograms(Shared &sh, int numBins,
                                                bool mass) {
  for (int i = threadIdx.x; i < numBins; i += kThreads) {
    sh.histCount[i] = 0;
    if (mass) {
      sh.histMass[0][i] = 0;
      sh.histMass[1][i] = 0;
      sh.histMass[2][i] = 0;
    }
  }
}

/// Exact per-bin masses from u32 atomics: a weight (< 2^41) in three 14-bit
/// parts, each summing below 2^32 over up to 2^18 tokens.
__device__ __forceinline__ void addMass(Shared &sh, unsigned bin, u64 weight) {
  if (weight == 0)
    return;
  atomicAdd(&sh.histMass[0][bin], (unsigned)(weight & 0x3fffu));
  atomicAdd(&sh.histMass[1][bin], (unsigned)((weight >> 14) & 0x3fffu));
  atomicAdd(&sh.histMass[2][bin], (unsigned)(weight >> 28));
}
__device__ __forceinline__ u64 binMass(const Shared &sh, int bin) {
  return (u64)sh.histMass[0][bin] + ((u64)sh.histMass[1][bin] << 14) +
         ((u64)sh.histMass[2][bin] << 28);
}

__device__ __forceinline__ float max4(float4 v) {
  return fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
}
__device__ __forceinline__ float min4(float4 v) {
  return fminf(fminf(v.x, v.y), fminf(v.z, v.w));
}

/// Appends the lane's tokens with take[j] (j < 4) to the buffer: one warp
/// scan and one shared atomic per call. Past kCapacity only counts.
__device__ __forceinline__ void appendGroup(Shared &sh, int first,
                                            float4 values, const bool take[4]) {
  const int lane = threadIdx.x & 31;
  unsigned count = take[0] + take[1] + take[2] + take[3];
  unsigned inclusive = warpInclusiveScan(count);
  unsigned total = __shfl_sync(kFullMask, inclusive, 31);
  int base = 0;
  if (lane == 31 && total)
    base = atomicAdd(&sh.bufferCount, (int)total);
  base = __shfl_sync(kFullMask, base, 31);
  int position = base + (int)(inclusive - count);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (take[j]) {
      if (position < kCapacity) {
        sh.bufferKey[position] = treniOrderKey(component(values, j));
        sh.bufferId[position] = first + j;
      }
      ++position;
    }
}

/// The float whose key is `key`, or -inf below the finite keys.
__device__ __forceinline__ float keyFloor(unsigned key) {
  return key <= kLowestFiniteKey ? negativeInfinity() : treniKeyValue(key);
}

/// Everything the phases share.
struct Context {
  const float *__restrict__ logits;
  int vocab;
  bool aligned;
  int sliceBegin, sliceEnd; ///< this warp's slice
  int slice;                ///< slice length
  float maxLogit;
  float scale;      ///< 1024 log2(e) / temperature (sampling only)
  const u64 *table; ///< Shared::weightTable

  __device__ u64 weight(float logit) const {
    return treniSamplingWeight(logit, maxLogit, scale, table);
  }
  __device__ u64 weightOfKey(unsigned key) const {
    return weight(treniKeyValue(key));
  }
  template <typename F> __device__ void forEachInSlice(F &&f) const {
    forEachGroup(logits, sliceBegin, sliceEnd, aligned, f);
  }
};

/// Amounts over a set of tokens: how many, and their weight.
struct Amount {
  u64 count, mass;
};

enum Metric { kCount, kMass };

/// Where a prefix of rank order ends: the key at which the running count or
/// mass first reaches the target, with the amounts strictly above it and the
/// number of tokens at it.
struct Located {
  unsigned key;
  Amount above;
  u64 countAt;
};

/// Radix select over the buffer's keys in [lo, hi] (the buffer must hold all
/// such tokens), `levels` digits of 8 bits from the top: the prefix of the
/// largest key whose running amount from the top reaches `rest`.
__device__ unsigned radixInBuffer(Shared &sh, const Context &ctx, Metric metric,
                                  u64 rest, unsigned lo, unsigned hi,
                                  int levels) {
  const int n = min(sh.bufferCount, kCapacity);
  const bool mass = metric == kMass;
  unsigned prefix = 0;
  for (int level = 0; level < levels; ++level) {
    const int shift = 24 - 8 * level;
    clearHistograms(sh, 256, mass);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += kThreads) {
      unsigned key = sh.bufferKey[i];
      if (key < lo || key > hi || (level > 0 && (key >> (shift + 8)) != prefix))
        continue;
      unsigned digit = (key >> shift) & 255u;
      atomicAdd(&sh.histCount[digit], 1u);
      if (mass)
        addMass(sh, digit, ctx.weightOfKey(key));
    }
    __syncthreads();
    u64 skipped = 0;
    int bin = selectFromTop(
        sh, 256, rest,
        [&](int b) -> u64 {
          return mass ? binMass(sh, b) : (u64)sh.histCount[b];
        },
        &skipped);
    prefix = (prefix << 8) | (unsigned)max(bin, 0);
    rest -= skipped;
  }
  return prefix;
}

/// The same for a buffer of at most 256 entries, without histograms: each
/// entry sums the amounts above and at its key; the one whose range holds
/// `rest` is the answer.
__device__ unsigned rankInBuffer(Shared &sh, const Context &ctx, Metric metric,
                                 u64 rest, unsigned lo, unsigned hi) {
  const int n = min(sh.bufferCount, kCapacity);
  const bool mass = metric == kMass;
  u64 *amounts = reinterpret_cast<u64 *>(sh.histMass[0]); // 512 fit
  const int t = threadIdx.x;
  unsigned key = 0;
  if (t < n) {
    key = sh.bufferKey[t];
    bool in = key >= lo && key <= hi;
    amounts[t] = !in ? 0 : mass ? ctx.weightOfKey(key) : 1;
  }
  if (t == 0)
    sh.selectedBin = (int)lo;
  __syncthreads();
  if (t < n && amounts[t] > 0) {
    u64 greater = 0, equal = 0;
    for (int j = 0; j < n; ++j) {
      unsigned other = sh.bufferKey[j];
      greater += other > key ? amounts[j] : 0;
      equal += other == key ? amounts[j] : 0;
    }
    if (greater < rest && rest <= greater + equal)
      sh.selectedBin = (int)key; // every such entry has this key
  }
  __syncthreads();
  key = (unsigned)sh.selectedBin;
  __syncthreads();
  return key;
}

/// Exact select over the buffer (keys in [lo, hi], all present): the largest
/// key whose running amount from the top reaches `target`, given `above` for
/// keys > hi.
__device__ Located selectInBuffer(Shared &sh, const Context &ctx, Metric metric,
                                  u64 target, unsigned lo, unsigned hi,
                                  Amount above) {
  const int n = min(sh.bufferCount, kCapacity);
  const u64 rest = target - (metric == kMass ? above.mass : above.count);
  const unsigned key = n <= 256
                           ? rankInBuffer(sh, ctx, metric, rest, lo, hi)
                           : radixInBuffer(sh, ctx, metric, rest, lo, hi, 4);
  u64 countAbove = 0, massAbove = 0, countAt = 0;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    unsigned k = sh.bufferKey[i];
    if (k < lo || k > hi || k < key)
      continue;
    if (k == key) {
      ++countAt;
    } else {
      ++countAbove;
      massAbove += ctx.weightOfKey(k);
    }
  }
  countAbove = warpSum(countAbove);
  massAbove = warpSum(massAbove);
  countAt = warpSum(countAt);
  if ((threadIdx.x & 31) == 0) {
    sh.scratchV[threadIdx.x / 32] = massAbove;
    sh.scratchU[threadIdx.x / 32] = countAbove | (countAt << 32);
  }
  __syncthreads();
  Located result;
  result.key = key;
  result.above = above;
  result.countAt = 0;
  for (int w = 0; w < kWarps; ++w) {
    result.above.count += sh.scratchU[w] & 0xffffffffu;
    result.countAt += sh.scratchU[w] >> 32;
    result.above.mass += sh.scratchV[w];
  }
  __syncthreads();
  return result;
}

/// Finds where the prefix of rank order reaching `target` ends. The
/// boundary lies in keys [lo, hi] (tokens below `floor` do not count),
/// `above` holds the exact amounts of keys > hi, and `bufferValid` says the
/// buffer holds every token of [lo, hi]. Each pass over the logits counts
/// the range into a 1024-bin histogram (exact counts and masses) and gathers
/// it into the buffer; when it fits the select finishes there, otherwise the
/// range narrows to the bin holding the boundary (1024x per pass).
/// `withMass`: the mass above the result is needed (count metric).
__device__ Located locate(Shared &sh, const Context &ctx, Metric metric,
                          u64 target, bool withMass, unsigned floor,
                          unsigned lo, unsigned hi, Amount above,
                          bool bufferValid) {
  const bool mass = metric == kMass;
  const bool massBins = mass || withMass;
  for (int pass = 0; pass < kMaxLocatePasses; ++pass) {
    Amount range = {0, 0};
    int shift = 0;
    while (((hi - lo) >> shift) >= (unsigned)kBins)
      ++shift;
    const int numBins = (int)((hi - lo) >> shift) + 1;
    if (bufferValid) {
      u64 count = 0, weight = 0;
      for (int i = threadIdx.x; i < min(sh.bufferCount, kCapacity);
           i += kThreads) {
        unsigned key = sh.bufferKey[i];
        if (key >= lo && key <= hi) {
          ++count;
          weight += mass ? ctx.weightOfKey(key) : 0;
        }
      }
      range.count = blockSum<u64>(count, sh.scratchU);
      range.mass = blockSum<u64>(weight, sh.scratchU);
    } else {
      TRENI_SAMPLER_COUNT(8);
      clearHistograms(sh, numBins, massBins);
      if (threadIdx.x == 0) {
        sh.bufferCount = 0;
        sh.bufferReplaced = 1;
      }
      __syncthreads();
      const float loValue = keyFloor(max(lo, floor));
      const float hiValue = treniKeyValue(hi);
      u64 count = 0, weight = 0;
      ctx.forEachInSlice([&](int first, float4 values, int n) {
        bool maybe = max4(values) >= loValue && min4(values) <= hiValue;
        if (!__any_sync(kFullMask, maybe))
          return;
        bool in[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float x = component(values, j);
          in[j] = j < n && x >= loValue && x <= hiValue;
          if (in[j]) {
            unsigned bin = (treniOrderKey(x) - lo) >> shift;
            ++count;
            atomicAdd(&sh.histCount[bin], 1u);
            if (massBins) {
              u64 w = ctx.weight(x);
              weight += w;
              addMass(sh, bin, w);
            }
          }
        }
        appendGroup(sh, first, values, in);
      });
      range.count = blockSum<u64>(count, sh.scratchU);
      range.mass = blockSum<u64>(weight, sh.scratchU);
      bufferValid = range.count <= (u64)kCapacity;
    }
    const u64 aboveAmount = mass ? above.mass : above.count;
    const u64 rangeAmount = mass ? range.mass : range.count;
    if (aboveAmount + rangeAmount < target) {
      // The boundary is below the range: all of it is above from now on.
      if (lo <= floor)
        break; // unreachable target
      above.count += range.count;
      above.mass += range.mass;
      hi = lo - 1;
      lo = floor;
      bufferValid = false;
      continue;
    }
    if (bufferValid)
      return selectInBuffer(sh, ctx, metric, target, lo, hi, above);
    if (lo == hi) { // one key, too many ties to hold: that is the boundary
      Located tied = {lo, above, range.count};
      return tied;
    }
    // Narrow [lo, hi] to the bin holding the boundary.
    u64 skipped;
    const int bin = selectFromTop(
        sh, numBins, target - aboveAmount,
        [&](int b) -> u64 {
          return mass ? binMass(sh, b) : (u64)sh.histCount[b];
        },
        &skipped);
    if (bin < 0)
      break;
    u64 countAbove = 0, massAbove = 0;
    for (int b = bin + 1 + (int)threadIdx.x; b < numBins; b += kThreads) {
      countAbove += sh.histCount[b];
      massAbove += massBins ? binMass(sh, b) : 0;
    }
    above.count += blockSum<u64>(countAbove, sh.scratchU);
    above.mass += blockSum<u64>(massAbove, sh.scratchU);
    const unsigned newLo = lo + ((unsigned)bin << shift);
    hi = (unsigned)min((u64)hi, (u64)lo + (((u64)bin + 1) << shift) - 1);
    lo = newLo;
    bufferValid = false;
  }
  if (threadIdx.x == 0)
    sh.failed = 1;
  __syncthreads();
  Located failed = {lo, above, 0};
  return failed;
}

/// The draw among the kept tokens: key > threshold, or == threshold within
/// the first `quota` such tokens by id (quota ~0u: all). Each warp's slice
/// mass, then the chosen slice split over the warps, then one warp scans.
/// `sliceMassReady`: pass B already summed the slices (everything kept).
/// `gather` (alternatives, merged into the first pass) runs on every group.
template <typename Gather>
__device__ int drawToken(Shared &sh, const Context &ctx, unsigned threshold,
                         unsigned quota, u64 bits, bool sliceMassReady,
                         Gather &&gather) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  const bool quotaActive = quota != ~0u;
  const float thresholdValue = keyFloor(threshold);
  const u64 tieWeight = quotaActive ? ctx.weightOfKey(threshold) : 0;
  // Mass above the threshold and the ties in [begin, end), this warp.
  auto sliceAmounts = [&](int begin, int end, bool withGather, u64 *massOut,
                          unsigned *tiesOut) {
    u64 massAbove = 0;
    unsigned ties = 0;
    forEachGroup(ctx.logits, begin, end, ctx.aligned,
                 [&](int first, float4 values, int n) {
                   if (withGather)
                     gather(first, values, n);
                   if (!(max4(values) >= thresholdValue))
                     return; // nothing kept here (the common case)
#pragma unroll
                   for (int j = 0; j < 4; ++j) {
                     float x = component(values, j);
                     bool counted = j < n && x >= thresholdValue;
                     bool tie = counted && quotaActive && x == thresholdValue;
                     ties += tie;
                     if (counted && !tie)
                       massAbove += ctx.weight(x);
                   }
                 });
    *massOut = warpSum(massAbove);
    *tiesOut = warpSum(ties);
  };
  // Kept mass of a piece given the ties before it (ties share one weight).
  auto keptMass = [&](u64 massAbove, unsigned ties, unsigned tiesBefore) {
    if (!quotaActive)
      return massAbove;
    unsigned kept = tiesBefore >= quota ? 0u : min(ties, quota - tiesBefore);
    return massAbove + (u64)kept * tieWeight;
  };

  // Level 1: the slices.
  if (!sliceMassReady) {
    u64 massAbove;
    unsigned ties;
    sliceAmounts(ctx.sliceBegin, ctx.sliceEnd, true, &massAbove, &ties);
    if (lane == 0) {
      sh.sliceMass[warp] = massAbove;
      sh.sliceTies[warp] = ties;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    u64 total = 0;
    unsigned tiesBefore = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (!sliceMassReady) {
        sh.sliceMass[w] =
            keptMass(sh.sliceMass[w], sh.sliceTies[w], tiesBefore);
        tiesBefore += sh.sliceTies[w];
      }
      total += sh.sliceMass[w];
    }
    u64 target = treniDrawTarget(bits, total);
    u64 before = 0;
    unsigned ties = 0;
    int w = 0;
    while (w < kWarps - 1 && before + sh.sliceMass[w] <= target) {
      before += sh.sliceMass[w];
      ties += sliceMassReady ? 0 : sh.sliceTies[w];
      ++w;
    }
    sh.pickSlice = w;
    sh.pickRest = target - before;
    sh.pickTies = ties;
    sh.pickToken = -1;
  }
  __syncthreads();

  // Level 2: the chosen slice, split over the warps.
  const int outerBegin = min(sh.pickSlice * ctx.slice, ctx.vocab);
  const int outerEnd = min(outerBegin + ctx.slice, ctx.vocab);
  const int inner = ((outerEnd - outerBegin + kWarps - 1) / kWarps + 3) & ~3;
  {
    const int begin = min(outerBegin + warp * inner, outerEnd);
    const int end = min(begin + inner, outerEnd);
    u64 massAbove;
    unsigned ties;
    sliceAmounts(begin, end, false, &massAbove, &ties);
    __syncthreads(); // everyone has read the level-1 slice masses
    if (lane == 0) {
      sh.sliceMass[warp] = massAbove;
      sh.sliceTies[warp] = ties;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const u64 rest = sh.pickRest;
    unsigned tiesBefore = sh.pickTies;
    u64 before = 0;
    int w = 0;
    for (;; ++w) {
      u64 mass = keptMass(sh.sliceMass[w], sh.sliceTies[w], tiesBefore);
      if (w == kWarps - 1 || before + mass > rest)
        break;
      before += mass;
      tiesBefore += sh.sliceTies[w];
    }
    sh.pickSlice = w;
    sh.pickRest = rest - before;
    sh.pickTies = tiesBefore;
  }
  __syncthreads();

  // Level 3: one warp scans the chosen ~150 tokens in id order.
  if (warp == 0) {
    const int begin = min(outerBegin + sh.pickSlice * inner, outerEnd);
    const int end = min(begin + inner, outerEnd);
    const u64 rest = sh.pickRest;
    unsigned tiesBefore = sh.pickTies;
    u64 base = 0;
    bool found = false;
    forEachGroup(ctx.logits, begin, end, ctx.aligned,
                 [&](int first, float4 values, int n) {
                   if (found)
                     return;
                   u64 weights[4];
                   bool tie[4];
                   unsigned ties = 0;
#pragma unroll
                   for (int j = 0; j < 4; ++j) {
                     float x = component(values, j);
                     bool counted = j < n && x >= thresholdValue;
                     tie[j] = counted && quotaActive && x == thresholdValue;
                     ties += tie[j];
                     weights[j] = counted ? ctx.weight(x) : 0;
                   }
                   unsigned tiesInclusive = warpInclusiveScan(ties);
                   unsigned ordinal = tiesBefore + tiesInclusive - ties;
                   tiesBefore += __shfl_sync(kFullMask, tiesInclusive, 31);
                   u64 laneMass = 0;
#pragma unroll
                   for (int j = 0; j < 4; ++j) {
                     if (tie[j] && ordinal++ >= quota)
                       weights[j] = 0;
                     laneMass += weights[j];
                   }
                   u64 inclusive = warpInclusiveScan(laneMass);
                   unsigned hit =
                       __ballot_sync(kFullMask, base + inclusive > rest);
                   if (hit) {
                     if (lane == __ffs(hit) - 1) {
                       u64 cumulative = base + inclusive - laneMass;
                       for (int j = 0; j < 4; ++j) {
                         cumulative += weights[j];
                         if (cumulative > rest) {
                           sh.pickToken = first + j;
                           break;
                         }
                       }
                     }
                     found = true;
                   } else {
                     base += __shfl_sync(kFullMask, inclusive, 31);
                   }
                 });
  }
  __syncthreads();
  return sh.pickToken; // -1 only if the exact arithmetic above is broken
}

/// Alternatives straight from the buffer (it holds every token >= `key`):
/// the tokens above `key`, then the `quota` lowest ids at it. False (and
/// nothing decided) when more than 256 tokens tie at `key`.
__device__ bool alternativesFromBuffer(Shared &sh, unsigned key,
                                       unsigned quota) {
  const int n = min(sh.bufferCount, kCapacity);
  int *tieIds = reinterpret_cast<int *>(sh.histCount);
  if (threadIdx.x == 0) {
    sh.numAbove = 0;
    sh.numSmall = 0;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += kThreads) {
    unsigned k = sh.bufferKey[i];
    if (k > key) {
      int slot = atomicAdd(&sh.numAbove, 1);
      if (slot < kMaxAlternatives) // fewer by construction
        sh.aboveTokens[slot] = sh.bufferId[i];
    } else if (k == key) {
      int slot = atomicAdd(&sh.numSmall, 1);
      if (slot < kBins)
        tieIds[slot] = sh.bufferId[i];
    }
  }
  __syncthreads();
  const int ties = sh.numSmall;
  if (ties > 256) {
    __syncthreads();
    return false;
  }
  for (int t = threadIdx.x; t < ties; t += kThreads) {
    int id = tieIds[t];
    unsigned rank = 0;
    for (int j = 0; j < ties; ++j)
      rank += tieIds[j] < id;
    if (rank < quota)
      sh.tieTokens[0][rank] = id;
  }
  if (threadIdx.x < kWarps)
    sh.numTieTokens[threadIdx.x] =
        threadIdx.x == 0 ? (int)min((unsigned)ties, quota) : 0;
  __syncthreads();
  return true;
}

/// The draw straight from the buffer (it holds every token >= threshold),
/// when at most 256 tokens are kept: each finds the kept mass before it in
/// id order. False (nothing decided) when more are kept.
__device__ bool drawFromBuffer(Shared &sh, const Context &ctx,
                               unsigned threshold, unsigned quota, u64 bits,
                               int *token) {
  const int n = min(sh.bufferCount, kCapacity);
  int *ids = reinterpret_cast<int *>(sh.histMass[0]);
  unsigned *keys = sh.histMass[1];
  u64 *weights = reinterpret_cast<u64 *>(sh.histMass[2]); // 512 fit
  if (threadIdx.x == 0) {
    sh.numSmall = 0;
    sh.pickToken = -1;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += kThreads)
    if (sh.bufferKey[i] >= threshold) {
      int slot = atomicAdd(&sh.numSmall, 1);
      if (slot < 256) {
        ids[slot] = sh.bufferId[i];
        keys[slot] = sh.bufferKey[i];
      }
    }
  __syncthreads();
  const int kept = sh.numSmall;
  if (kept > 256) {
    __syncthreads();
    return false;
  }
  const int t = threadIdx.x;
  u64 weight = 0;
  if (t < kept) {
    weight = ctx.weightOfKey(keys[t]);
    if (quota != ~0u && keys[t] == threshold) { // first `quota` ties by id
      unsigned ordinal = 0;
      for (int j = 0; j < kept; ++j)
        ordinal += keys[j] == threshold && ids[j] < ids[t];
      if (ordinal >= quota)
        weight = 0;
    }
    weights[t] = weight;
  }
  const u64 total = blockSum<u64>(weight, sh.scratchU); // syncs: weights set
  const u64 target = treniDrawTarget(bits, total);
  if (t < kept && weight > 0) {
    u64 before = 0;
    for (int j = 0; j < kept; ++j)
      before += ids[j] < ids[t] ? weights[j] : 0;
    if (before <= target && target < before + weight)
      sh.pickToken = ids[t];
  }
  __syncthreads();
  *token = sh.pickToken;
  __syncthreads();
  return true;
}

/// One thread's part of pass A over its warp's slice [begin, end) (walked by
/// forEachGroup): its max (lowest index on ties), the softmax sums relative
/// to that max (online: one ex2.approx per token, rescaled when the max
/// grows), its count of finite tokens and whether it saw a NaN.
struct PassA {
  float best;
  int bestIndex;
  float sumExp, sumExpLog2; ///< sum 2^t and sum 2^t t, t = (x - best) log2 e
  unsigned finite;
  bool sawNaN;
};

__device__ __forceinline__ PassA passA(const float *__restrict__ logits,
                                       int begin, int end, bool aligned,
                                       int vocab, bool wantFinite) {
  // In log2 units: e = 2^t, t = (x - max) log2(e).
  const float log2e = 1.44269504f;
  float best = negativeInfinity();
  int bestIndex = vocab;
  float shiftLog2 = 0.0f; // -best * log2(e)
  float sumExp = 0.0f, sumExpLog2 = 0.0f;
  unsigned finite = 0;
  bool sawNaN = false;
  forEachGroup(
      logits, begin, end, aligned, [&](int first, float4 values, int n) {
        float groupMax = max4(values); // ignores NaN; -inf past the end
        if (groupMax > best) {         // ids ascend within a lane: first max
          bestIndex = first + (values.x == groupMax   ? 0
                               : values.y == groupMax ? 1
                               : values.z == groupMax ? 2
                                                      : 3);
          if (best > negativeInfinity()) {
            float d = fmaxf((best - groupMax) * log2e, -1e30f);
            float f = fastExp2(d);
            sumExpLog2 = f * fmaf(d, sumExp, sumExpLog2);
            sumExp *= f;
          }
          best = groupMax;
          shiftLog2 = -best * log2e;
        }
        if (best > negativeInfinity()) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            // -inf weighs nothing; NaN (and +inf - +inf) stays NaN: checked
            // below
            float t = fmaf(component(values, j), log2e, shiftLog2);
            float e = fastExp2(t);
            sumExp += e;
            sumExpLog2 = fmaf(e, fmaxf(t, -1e30f), sumExpLog2);
          }
        } else {
          sawNaN |= !(values.x == values.x) || !(values.y == values.y) ||
                    !(values.z == values.z) || !(values.w == values.w);
        }
        if (wantFinite) {
          if (min4(values) > negativeInfinity())
            finite += 4;
          else
            finite += (values.x > negativeInfinity()) +
                      (values.y > negativeInfinity()) +
                      (values.z > negativeInfinity()) +
                      (values.w > negativeInfinity());
        }
      });
  return PassA{best,       bestIndex, sumExp,
               sumExpLog2, finite,    sawNaN || !(sumExp == sumExp)};
}

/// The block's largest value, lowest index on ties (warps in order); every
/// thread gets it. Uses scratchF/scratchI.
__device__ __forceinline__ void blockArgmax(float &best, int &bestIndex,
                                            float *scratchF, int *scratchI) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) {
    float otherValue = __shfl_xor_sync(kFullMask, best, offset);
    int otherIndex = __shfl_xor_sync(kFullMask, bestIndex, offset);
    if (otherValue > best || (otherValue == best && otherIndex < bestIndex)) {
      best = otherValue;
      bestIndex = otherIndex;
    }
  }
  if (lane == 0) {
    scratchF[warp] = best;
    scratchI[warp] = bestIndex;
  }
  __syncthreads();
  best = scratchF[0];
  bestIndex = scratchI[0];
  for (int w = 1; w < kWarps; ++w)
    if (scratchF[w] > best ||
        (scratchF[w] == best && scratchI[w] < bestIndex)) {
      best = scratchF[w];
      bestIndex = scratchI[w];
    }
  __syncthreads();
}

/// A thread's sums, relative to its own max, rescaled to the block's max
/// `best` in double and summed over the block (fixed order).
__device__ __forceinline__ void blockSums(const PassA &a, float best,
                                          double *scratchD, double &sumExpTotal,
                                          double &sumExpLog2Total) {
  double scaled = 0.0, scaledLog2 = 0.0;
  if (a.best > negativeInfinity()) {
    double d = ((double)a.best - (double)best) * 1.4426950408889634;
    double f = exp2(d);
    scaled = f * a.sumExp;
    scaledLog2 = f * (a.sumExpLog2 + d * a.sumExp);
  }
  sumExpTotal = blockSum<double>(scaled, scratchD);
  sumExpLog2Total = blockSum<double>(scaledLog2, scratchD);
}

/// Greedy sampling without alternatives needs pass A alone, which one block
/// spends most of its time on: split over the launch's blocks, each runs it
/// over its share of the vocabulary (shares and warp slices start at
/// multiples of 4) and writes a partial; the last block to arrive (counted
/// in *arrivals, which it resets for the next launch) combines them in block
/// order, lowest index on ties. Returns false in the other blocks.
__device__ bool splitPassA(Shared &sh, const float *__restrict__ logits,
                           int vocab, SamplePartialDevice *partials,
                           unsigned *arrivals, float &best, int &bestIndex,
                           bool &anyNaN, double &sumExpTotal,
                           double &sumExpLog2Total) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
  const float inf = __uint_as_float(0x7f800000u);
  const int share = ((vocab + gridDim.x - 1) / gridDim.x + 3) & ~3;
  const int blockBegin = min((int)blockIdx.x * share, vocab);
  const int blockEnd = min(blockBegin + share, vocab);
  const int slice = ((blockEnd - blockBegin + kWarps - 1) / kWarps + 3) & ~3;
  const int begin = min(blockBegin + warp * slice, blockEnd);
  const int end = min(begin + slice, blockEnd);
  const PassA a = passA(logits, begin, end,
                        ((unsigned long long)logits & 15u) == 0, vocab, false);
  const bool blockNaN = __syncthreads_or(a.sawNaN);
  float blockBest = a.best;
  int blockBestIndex = a.bestIndex;
  blockArgmax(blockBest, blockBestIndex, sh.scratchF, sh.scratchI);
  double sumExp = 0.0, sumExpLog2 = 0.0;
  if (!blockNaN && blockBest > negativeInfinity() && blockBest < inf)
    blockSums(a, blockBest, sh.scratchD, sumExp, sumExpLog2);
  if (tid == 0) {
    SamplePartialDevice &partial = partials[blockIdx.x];
    partial.sumExp = sumExp;
    partial.sumExpLog2 = sumExpLog2;
    partial.best = blockBest;
    partial.bestIndex = blockBestIndex;
    partial.nan = blockNaN;
    __threadfence(); // the partial is visible before the arrival counts
    sh.scratchI[0] = atomicAdd(arrivals, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!sh.scratchI[0])
    return false;
  __threadfence();
  if (warp == 0) { // one partial a lane (gridDim.x <= 32), L2 reads
    float value = negativeInfinity();
    int index = vocab, nan = 0;
    double partSum = 0.0, partSumLog2 = 0.0;
    if (lane < (int)gridDim.x) {
      value = __ldcg(&partials[lane].best);
      index = __ldcg(&partials[lane].bestIndex);
      nan = __ldcg(&partials[lane].nan);
      partSum = __ldcg(&partials[lane].sumExp);
      partSumLog2 = __ldcg(&partials[lane].sumExpLog2);
    }
    float m = value;
    int mIndex = index;
    for (int offset = 16; offset > 0; offset /= 2) {
      float otherValue = __shfl_xor_sync(kFullMask, m, offset);
      int otherIndex = __shfl_xor_sync(kFullMask, mIndex, offset);
      if (otherValue > m || (otherValue == m && otherIndex < mIndex)) {
        m = otherValue;
        mIndex = otherIndex;
      }
    }
    double scaled = 0.0, scaledLog2 = 0.0;
    if (value > negativeInfinity() && m < inf) {
      double d = ((double)value - (double)m) * 1.4426950408889634;
      double f = exp2(d);
      scaled = f * partSum;
      scaledLog2 = f * (partSumLog2 + d * partSum);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      scaled += __shfl_xor_sync(kFullMask, scaled, offset);
      scaledLog2 += __shfl_xor_sync(kFullMask, scaledLog2, offset);
    }
    const bool anyPartNaN = __any_sync(kFullMask, nan != 0);
    if (lane == 0) {
      sh.scratchF[0] = m;
      sh.scratchI[1] = mIndex;
      sh.scratchI[2] = anyPartNaN;
      sh.scratchD[0] = scaled;
      sh.scratchD[1] = scaledLog2;
      *arrivals = 0;
    }
  }
  __syncthreads();
  best = sh.scratchF[0];
  bestIndex = sh.scratchI[1];
  anyNaN = sh.scratchI[2] != 0;
  sumExpTotal = sh.scratchD[0];
  sumExpLog2Total = sh.scratchD[1];
  return true;
}

} // namespace treni_sampler

/// One row's draw: the body of both entries below (blockIdx.x and gridDim.x
/// are the row's blocks).
__device__ __forceinline__ void
treniSampleRow(const float *__restrict__ logits, int vocab,
               SamplingParamsDevice params, unsigned long long *stepCounter,
               SampleResultDevice *out, SampleFeedDevice feed,
               SamplePartialDevice *partials, unsigned *arrivals) {
  using namespace treni_sampler;
  __shared__ Shared sh;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
  const float inf = __uint_as_float(0x7f800000u);
  // Every thread reads the position before thread 0 advances it: after a
  // barrier, or in the early failure, where no other thread uses it.
  const int position = feed.position ? *feed.position : 0;
  out += position & 1;

  auto finish = [&](int token) { // thread 0, last: feed the next step
    *stepCounter = *stepCounter + 1;
    if (feed.position) {
      feed.ids[0] = token >= 0 ? token : 0;
      feed.positions[0] = position + 1;
      *feed.position = position + 1;
    }
  };
  auto fail = [&]() { // thread 0: the error result
    out->token = -1;
    out->logprob = 0.0f;
    out->entropy = 0.0f;
    out->numAlternatives = 0;
    finish(-1);
  };
  if (!(vocab >= 1 && vocab <= kMaxVocab && params.temperature >= 0.0f &&
        params.temperature < inf && params.topK >= 0 && params.topP > 0.0f &&
        params.topP <= 1.0f && params.numAlternatives >= 0 &&
        params.numAlternatives <= kMaxAlternatives)) {
    if (tid == 0 && blockIdx.x == 0)
      fail();
    return;
  }
  if (gridDim.x > 1) {
    // Greedy without alternatives, split over the blocks: the host launches
    // several only then (logprob and entropy as below, token = argmax).
    float best;
    int bestIndex;
    bool anyNaN;
    double sumExpTotal, sumExpLog2Total;
    if (params.temperature != 0.0f || params.numAlternatives != 0 ||
        gridDim.x > 32) {
      if (tid == 0 && blockIdx.x == 0)
        fail();
      return;
    }
    if (!splitPassA(sh, logits, vocab, partials, arrivals, best, bestIndex,
                    anyNaN, sumExpTotal, sumExpLog2Total) ||
        tid != 0)
      return;
    if (anyNaN || !(best > negativeInfinity()) || !(best < inf)) {
      fail();
      return;
    }
    const double logSum = log(sumExpTotal);
    const double entropy =
        logSum - 0.6931471805599453 * sumExpLog2Total / sumExpTotal;
    out->token = bestIndex;
    out->logprob = (float)fmin(-logSum, 0.0);
    out->entropy = entropy > 0.0 ? (float)entropy : 0.0f;
    out->numAlternatives = 0;
    finish(bestIndex);
    return;
  }
  TRENI_SAMPLER_MARK(0);
#ifdef TRENI_SAMPLER_DEBUG
  if (tid == 0)
    treni_sampler_debug[8] = 0;
#endif
  const bool sampling = params.temperature > 0.0f;
  Context ctx;
  ctx.logits = logits;
  ctx.vocab = vocab;
  ctx.aligned = ((unsigned long long)logits & 15u) == 0;
  ctx.slice = ((vocab + kWarps - 1) / kWarps + 3) & ~3;
  ctx.sliceBegin = min(warp * ctx.slice, vocab);
  ctx.sliceEnd = min(ctx.sliceBegin + ctx.slice, vocab);
  ctx.scale = sampling ? treniWeightScale(params.temperature) : 0.0f;
  ctx.table = sh.weightTable;
  sh.weightTable[tid] = treniWeightTableEntry(tid); // read after syncs
  // The counts of finite tokens matter only to cap k.
  const bool wantFinite =
      params.numAlternatives > 0 || (sampling && params.topK > 0);

  //===-- Pass A: max (lowest index), softmax sums, finite count ---------===//
  const PassA a = passA(ctx.logits, ctx.sliceBegin, ctx.sliceEnd, ctx.aligned,
                        vocab, wantFinite);
  const float threadMax = a.best;
  float best = a.best;
  int bestIndex = a.bestIndex;
  const unsigned finite = warpSum(a.finite);
  if (lane == 0)
    sh.sliceTies[warp] = finite;
  const bool anyNaN = __syncthreads_or(a.sawNaN);
  u64 numFinite = 0;
  for (int w = 0; w < kWarps; ++w)
    numFinite += sh.sliceTies[w];
  blockArgmax(best, bestIndex, sh.scratchF, sh.scratchI);
  if (anyNaN || !(best > negativeInfinity()) || !(best < inf)) {
    if (tid == 0)
      fail();
    return;
  }
  // The sums of all threads, relative to the max (double from here).
  double sumExpTotal, sumExpLog2Total;
  blockSums(a, best, sh.scratchD, sumExpTotal, sumExpLog2Total);
  TRENI_SAMPLER_MARK(1);
  ctx.maxLogit = best;
  const unsigned maxKey = treniOrderKey(best);
  const int numAlternatives = (int)min((u64)params.numAlternatives, numFinite);
  const int topK = sampling && params.topK > 0 && (u64)params.topK < numFinite
                       ? params.topK
                       : 0;
  const bool useTopP = sampling && params.topP < 1.0f;
  const bool keepAll = sampling && topK == 0 && !useTopP;

  // Count candidates: tokens >= a lower bound of the k-th largest logit: the
  // 16-bit key prefix of the k-th largest thread maximum (the k threads above
  // it hold k tokens >= it).
  const int countTarget = max(numAlternatives, topK);
  unsigned countFloor = kLowestFiniteKey;
  if (countTarget > 0 && countTarget <= kWarps) {
    // Cheaper for small k: the k-th largest warp maximum.
    float warpMax = threadMax;
    for (int offset = 16; offset > 0; offset /= 2)
      warpMax = fmaxf(warpMax, __shfl_xor_sync(kFullMask, warpMax, offset));
    if (lane == 0)
      sh.scratchF[warp] = warpMax;
    if (tid == 0)
      sh.selectedBin = (int)kLowestFiniteKey;
    __syncthreads();
    if (warp == 0) {
      float value = sh.scratchF[lane];
      int greater = 0, equal = 0;
      for (int w = 0; w < kWarps; ++w) {
        greater += sh.scratchF[w] > value;
        equal += sh.scratchF[w] == value;
      }
      if (value > negativeInfinity() && greater < countTarget &&
          countTarget <= greater + equal)
        sh.selectedBin = (int)treniOrderKey(value);
    }
    __syncthreads();
    countFloor = (unsigned)sh.selectedBin;
    __syncthreads();
  } else if (countTarget > 0 && countTarget <= kThreads) {
    unsigned key = treniOrderKey(threadMax);
    sh.bufferKey[tid] = key;
    unsigned present = __syncthreads_count(key >= kLowestFiniteKey);
    if (tid == 0)
      sh.bufferCount = kThreads;
    __syncthreads();
    if (present >= (unsigned)countTarget)
      countFloor =
          max(kLowestFiniteKey, radixInBuffer(sh, ctx, kCount, countTarget,
                                              kLowestFiniteKey, maxKey, 2)
                                    << 16);
  }
  // Nucleus candidates (top-p without top-k): weight >= 2^-14 of the top.
  const bool nucleusRegion = useTopP && topK == 0;
  float candidateFloor = inf;
  if (countTarget > 0)
    candidateFloor = keyFloor(countFloor);
  if (nucleusRegion)
    candidateFloor = fminf(candidateFloor,
                           ctx.maxLogit + kNucleusRegion * 1024.0f / ctx.scale);

  //===-- Pass B: weights and candidates --------------------------------===//
  if (tid == 0) {
    sh.bufferCount = 0;
    sh.bufferReplaced = 0;
    sh.failed = 0;
  }
  __syncthreads();
  const bool wantWeights = sampling && topK == 0;
  const bool wantCandidates = countTarget > 0 || nucleusRegion;
  u64 totalWeight = 0;
  if (wantWeights || wantCandidates)
    ctx.forEachInSlice([&](int first, float4 values, int n) {
      if (wantWeights)
#pragma unroll
        for (int j = 0; j < 4; ++j) // -inf past the end weighs nothing
          totalWeight += ctx.weight(component(values, j));
      if (wantCandidates &&
          __any_sync(kFullMask, max4(values) >= candidateFloor)) {
        bool take[4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
          take[j] = j < n && component(values, j) >= candidateFloor;
        appendGroup(sh, first, values, take);
      }
    });
  if (keepAll) { // pass B summed every weight: the slice masses of the draw
    u64 sliceWeight = warpSum(totalWeight);
    if (lane == 0)
      sh.sliceMass[warp] = sliceWeight;
  }
  if (nucleusRegion)
    totalWeight = blockSum<u64>(totalWeight, sh.scratchU);
  __syncthreads();
  const bool bufferComplete = sh.bufferCount <= kCapacity;
  // The buffer holds every token with a key >= this.
  const unsigned bufferFloor =
      max(kLowestFiniteKey, treniOrderKey(candidateFloor));
  __syncthreads();
  TRENI_SAMPLER_MARK(2);

  //===-- Boundaries: alternatives, top-k, nucleus -----------------------===//
  const Amount none = {0, 0};
  Located alternatives = {0, none, 0};
  if (numAlternatives > 0)
    alternatives =
        locate(sh, ctx, kCount, numAlternatives, false, kLowestFiniteKey,
               countFloor, maxKey, none, bufferComplete);
  unsigned threshold = 0, quota = ~0u;
  if (sampling && !keepAll) {
    u64 baseMass = totalWeight;
    if (topK > 0) {
      Located top =
          locate(sh, ctx, kCount, topK, true, kLowestFiniteKey, countFloor,
                 maxKey, none, bufferComplete && !sh.bufferReplaced);
      u64 tieQuota = topK - top.above.count;
      baseMass = top.above.mass + tieQuota * ctx.weightOfKey(top.key);
      threshold = top.key;
      quota = (unsigned)tieQuota;
      if (useTopP) {
        const u64 need = treniNucleusMass(params.topP, baseMass);
        if (top.above.mass >= need) { // the boundary is above the k-th key
          Located nucleus =
              locate(sh, ctx, kMass, need, false, top.key + 1, top.key + 1,
                     maxKey, none, bufferComplete && !sh.bufferReplaced);
          threshold = nucleus.key;
          quota = ~0u;
        }
      }
    } else {
      // The region's mass decides whether it holds the nucleus.
      const u64 need = treniNucleusMass(params.topP, baseMass);
      const unsigned regionFloor =
          max(kLowestFiniteKey, treniOrderKey(candidateFloor));
      bool inRegion = false;
      if (bufferComplete && !sh.bufferReplaced) {
        u64 regionWeight = 0;
        for (int i = tid; i < sh.bufferCount; i += kThreads)
          regionWeight += sh.bufferKey[i] >= regionFloor
                              ? ctx.weightOfKey(sh.bufferKey[i])
                              : 0;
        inRegion = blockSum<u64>(regionWeight, sh.scratchU) >= need;
      }
      Located nucleus =
          inRegion ? locate(sh, ctx, kMass, need, false, kLowestFiniteKey,
                            regionFloor, maxKey, none, true)
                   : locate(sh, ctx, kMass, need, false, kLowestFiniteKey,
                            kLowestFiniteKey, maxKey, none, false);
      threshold = nucleus.key;
    }
  }
  TRENI_SAMPLER_MARK(4);

  //===-- Alternatives: above the boundary, then the first ties by id ----===//
  const unsigned quotaA = numAlternatives - (unsigned)alternatives.above.count;
  const float alternativeValue =
      numAlternatives > 0 ? treniKeyValue(alternatives.key) : inf;
  bool alternativesDone = numAlternatives == 0;
  if (!alternativesDone && bufferComplete && !sh.bufferReplaced)
    alternativesDone = alternativesFromBuffer(sh, alternatives.key, quotaA);
  unsigned warpTiesA = 0; // the gather pass: ties so far in this warp's slice
  if (!alternativesDone) {
    if (tid == 0)
      sh.numAbove = 0;
    __syncthreads();
  }
  auto gather = [&](int first, float4 values, int n) {
    if (alternativesDone ||
        !__any_sync(kFullMask, max4(values) >= alternativeValue))
      return;
    unsigned ties = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float x = component(values, j);
      if (j < n && x > alternativeValue) {
        int slot = atomicAdd(&sh.numAbove, 1);
        if (slot < kMaxAlternatives) // fewer by construction
          sh.aboveTokens[slot] = first + j;
      }
      ties += j < n && x == alternativeValue;
    }
    unsigned inclusive = warpInclusiveScan(ties);
    unsigned position = warpTiesA + inclusive - ties;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < n && component(values, j) == alternativeValue) {
        if (position < quotaA)
          sh.tieTokens[warp][position] = first + j;
        ++position;
      }
    warpTiesA += __shfl_sync(kFullMask, inclusive, 31);
  };

  //===-- The token ------------------------------------------------------===//
  int token = bestIndex;
  bool gathered = alternativesDone;
  if (sampling) {
    const u64 bits = treniRandomBits(params.seed, *stepCounter);
    bool drawn = false;
    if (!keepAll && bufferComplete && !sh.bufferReplaced &&
        threshold >= bufferFloor)
      drawn = drawFromBuffer(sh, ctx, threshold, quota, bits, &token);
    if (!drawn) {
      token = drawToken(sh, ctx, threshold, quota, bits, keepAll, gather);
      gathered |= !keepAll; // its first pass ran the gather
    }
  }
  TRENI_SAMPLER_MARK(3);
  if (!gathered) {
    ctx.forEachInSlice(gather);
    gathered = true;
  }
  if (!alternativesDone && lane == 0)
    sh.numTieTokens[warp] = (int)min(warpTiesA, quotaA);
  __syncthreads();
  if (sh.failed)
    token = -1;

  //===-- Result ---------------------------------------------------------===//
  if (tid == 0) {
    int n = 0;
    for (int i = 0;
         i < min(sh.numAbove, kMaxAlternatives) && n < numAlternatives; ++i)
      sh.outIds[n++] = sh.aboveTokens[i];
    for (int w = 0; w < kWarps && numAlternatives > 0; ++w)
      for (int i = 0; i < sh.numTieTokens[w] && n < numAlternatives; ++i)
        sh.outIds[n++] = sh.tieTokens[w][i];
    sh.outCount = n;
  }
  __syncthreads();
  const int numOut = sh.outCount;
  if (tid < numOut) // the loads in parallel, one per thread
    sh.outValues[tid] = logits[sh.outIds[tid]];
  if (tid == kMaxAlternatives && token >= 0)
    sh.tokenValue = logits[token];
  __syncthreads();
  const double logSum = log(sumExpTotal);
  if (tid < numOut) { // rank order: value descending, id ascending
    const float value = sh.outValues[tid];
    const int id = sh.outIds[tid];
    int rank = 0;
    for (int j = 0; j < numOut; ++j)
      rank += sh.outValues[j] > value ||
              (sh.outValues[j] == value && sh.outIds[j] < id);
    out->alternativeTokens[rank] = id;
    // A log-probability is <= 0; the rounding of logSum (when the top token
    // holds nearly all the mass) must not make it positive.
    out->alternativeLogprobs[rank] =
        (float)fmin((double)(value - ctx.maxLogit) - logSum, 0.0);
  }
  if (tid == 0) {
    const double entropy =
        logSum - 0.6931471805599453 * sumExpLog2Total / sumExpTotal;
    out->token = token;
    out->logprob =
        token >= 0
            ? (float)fmin((double)(sh.tokenValue - ctx.maxLogit) - logSum, 0.0)
            : 0.0f;
    out->entropy = entropy > 0.0 ? (float)entropy : 0.0f;
    out->numAlternatives = numOut;
    finish(token);
  }
  TRENI_SAMPLER_MARK(5);
}

extern "C" __global__ void __launch_bounds__(1024, 1)
    treni_sample(const float *__restrict__ logits, int vocab,
                 SamplingParamsDevice params, unsigned long long *stepCounter,
                 SampleResultDevice *out, SampleFeedDevice feed,
                 SamplePartialDevice *partials, unsigned *arrivals) {
#if __CUDA_ARCH__ >= 900
  // Launched programmatically: the logits are complete past this point.
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  treniSampleRow(logits, vocab, params, stepCounter, out, feed, partials,
                 arrivals);
}

/// Several rows of a batched step at once: block (x, y) is block x of row
/// i = rows[y], which draws from logits[i * vocab ..] with params[i] at step
/// steps[i] into out[i] (no feed), its split state partials[i * 32 ..] and
/// arrivals[i]. Every row of a launch takes the same grid.x: greedy rows
/// without alternatives split over the blocks, the others one block.
extern "C" __global__ void __launch_bounds__(1024, 1)
    treni_sample_rows(const float *__restrict__ logits, int vocab,
                      const SamplingParamsDevice *params, const int *rows,
                      unsigned long long *steps, SampleResultDevice *out,
                      SamplePartialDevice *partials, unsigned *arrivals) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  const int row = rows[blockIdx.y];
  treniSampleRow(logits + (long long)row * vocab, vocab, params[row],
                 steps + row, out + row, SampleFeedDevice{},
                 partials + row * 32, arrivals + row);
}
#endif // __CUDACC_RTC__ || __CUDACC__
