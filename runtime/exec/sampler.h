//===- sampler.h - token sampling with uncertainty outputs ------*- C++ -*-===//
//
// Picks the next token from fp32 logits (greedy, or temperature with top-k
// and top-p, seeded) and reports what the agent layer reads as uncertainty:
// the token's log-probability, the entropy and the top alternatives, all
// under the unmodified distribution (what OpenAI's logprobs report).
//
// Two implementations with one meaning: sampleCpu() here, and the CUDA kernel
// `treni_sample` (runtime/exec/sampler_kernel.cuh, compiled by NVRTC) that the
// GPU runtime launches inside its decode graph. They share the order key, the
// integer sampling weights, the RNG and the draw (the .cuh is compiled into
// sampler.cpp too), so for the same logits, parameters and step both pick
// the same token; logprob and entropy agree to float rounding.
//
// The rules:
//  - greedy (temperature 0): the largest logit, lowest id on ties.
//  - rank order: logit descending, then token id ascending. -inf logits are
//    masked: never sampled, never alternatives. NaN or +inf is an error.
//  - temperature > 0: token i weighs w_i ~ 2^40 * exp((l_i - max) / T), an
//    integer: the log2 of the relative weight is rounded to 1/1024 (a 0.03%
//    change at most, far below the logits' own precision) and looked up in a
//    table of floor(2^(40 - j/1024)). Below 2^-40 of the top token it is 0
//    and never drawn.
//  - top-k keeps the first topK tokens in rank order (ties at the boundary go
//    by token id, so top-k 1 is greedy). The nucleus is then taken on what
//    top-k kept, as transformers and vLLM do: with v the largest logit such
//    that the kept tokens with logit >= v weigh at least ceil(topP * their
//    total), it keeps every kept token with logit >= v (boundary ties all in).
//  - the draw: u = randomBits(seed, step) / 2^64; target = floor(u * kept
//    mass); the token is the first kept token, by ascending id, whose
//    cumulative weight exceeds target. Depends only on (seed, step).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace treni {

/// Most alternatives a result can carry (OpenAI's top_logprobs limit).
inline constexpr int kMaxAlternatives = 20;
/// Largest vocabulary the sampler takes (262144: the kernel's exact
/// histogram sums fit 32 bits).
inline constexpr int64_t kMaxSamplerVocab = int64_t(1) << 18;

struct SamplingParams {
  float temperature = 0.0f; ///< 0 = greedy (argmax, lowest index on ties)
  int32_t topK = 0;         ///< 0 = no top-k limit
  float topP = 1.0f;        ///< 1 = no nucleus limit
  uint64_t seed = 0;
  int32_t numAlternatives = 0; ///< how many top alternatives to report (<= 20)
  /// Field by field (never memcmp: the struct has padding bytes).
  bool operator==(const SamplingParams &) const = default;
};

/// temperature finite and >= 0, topK >= 0, 0 < topP <= 1, numAlternatives in
/// [0, 20]. The message names the bad field and its value.
absl::Status validate(const SamplingParams &params);

struct TokenChoice {
  int32_t token;
  float logprob;
};

struct SampleResult {
  int32_t token;
  /// log-softmax of `token` under the unmodified distribution (temperature
  /// 1, no top-k/p).
  float logprob;
  /// Entropy (nats) of the unmodified distribution.
  float entropy;
  /// The first numAlternatives tokens in rank order (fewer if fewer logits
  /// are finite), with their unmodified logprobs.
  std::vector<TokenChoice> alternatives;
};

/// Samples token number `step` of a generation. The random draw depends only
/// on (seed, step), so a run is reproducible and a replayed CUDA graph can
/// advance `step` on the device. InvalidArgument for bad parameters, empty or
/// oversized logits, a NaN or +inf logit, or all logits -inf.
absl::StatusOr<SampleResult> sampleCpu(absl::Span<const float> logits,
                                       const SamplingParams &params,
                                       uint64_t step);

/// The 64 random bits of (seed, step): splitmix64, the (step+1)-th output of
/// the stream whose state starts at mix64(seed). Same function on the GPU.
uint64_t samplerRandomBits(uint64_t seed, uint64_t step);

/// The integer sampling weight (see above) of `logit` given the largest logit
/// and the temperature. Same on the GPU.
uint64_t samplerWeight(float logit, float maxLogit, float temperature);

//===----------------------------------------------------------------------===//
// GPU kernel interface
//===----------------------------------------------------------------------===//

/// Source of the CUDA kernel (runtime/exec/sampler_kernel.cuh, embedded at
/// build time). No #include; needs sm_80 or newer.
const std::string &samplerKernelSource();

/// extern "C" __global__ void treni_sample(const float *logits, int vocab,
///     SamplingParamsDevice params, unsigned long long *stepCounter,
///     SampleResultDevice *out, SampleFeedDevice feed,
///     SamplePartialDevice *partials, unsigned *arrivals)
/// Launch: samplerBlocks(params) blocks of kSamplerThreads, no dynamic shared
/// memory. Reads *stepCounter as `step`, writes the result, then increments
/// *stepCounter. Without a feed (feed.position null) the result goes to
/// out[0]; with one, see SampleFeedDevice. With several blocks, `partials`
/// holds one SamplePartialDevice a block and *arrivals (zero before the
/// first launch) counts the blocks done; the kernel leaves it zero.
inline constexpr const char *kSamplerKernelName = "treni_sample";
inline constexpr int kSamplerThreads = 1024;
/// Blocks of a split greedy launch (at most 32).
inline constexpr int kSamplerBlocks = 32;

/// Host mirror of the kernel's parameter struct (layout checked below and
/// against the .cuh's own definition in sampler.cpp).
struct SamplingParamsDevice {
  uint64_t seed;
  float temperature;
  float topP;
  int32_t topK;
  int32_t numAlternatives;
};
static_assert(sizeof(SamplingParamsDevice) == 24);
static_assert(offsetof(SamplingParamsDevice, seed) == 0);
static_assert(offsetof(SamplingParamsDevice, temperature) == 8);
static_assert(offsetof(SamplingParamsDevice, topP) == 12);
static_assert(offsetof(SamplingParamsDevice, topK) == 16);
static_assert(offsetof(SamplingParamsDevice, numAlternatives) == 20);

/// Host mirror of the kernel's result struct. token == -1: NaN/+inf logits,
/// all logits -inf, or invalid parameters.
struct SampleResultDevice {
  int32_t token;
  float logprob;
  float entropy;
  int32_t numAlternatives;
  int32_t alternativeTokens[kMaxAlternatives];
  float alternativeLogprobs[kMaxAlternatives];
};
static_assert(sizeof(SampleResultDevice) == 176);
static_assert(offsetof(SampleResultDevice, token) == 0);
static_assert(offsetof(SampleResultDevice, logprob) == 4);
static_assert(offsetof(SampleResultDevice, entropy) == 8);
static_assert(offsetof(SampleResultDevice, numAlternatives) == 12);
static_assert(offsetof(SampleResultDevice, alternativeTokens) == 16);
static_assert(offsetof(SampleResultDevice, alternativeLogprobs) == 96);

/// Host mirror of the kernel's feed: @decode's token-id and position input
/// buffers (one row) and a device int holding the position p of the row the
/// step computes. The kernel writes its result to out[p & 1] (two slots: the
/// host reads step p while step p + 1 writes the other one), then the token
/// (0 for -1) to ids[0] and p + 1 to positions[0] and *position, so the next
/// decode step runs without the host writing its inputs.
struct SampleFeedDevice {
  int32_t *ids = nullptr;
  int32_t *positions = nullptr;
  int32_t *position = nullptr;
};
static_assert(sizeof(SampleFeedDevice) == 24);

/// Host mirror of the kernel's per-block partial of a split greedy launch.
struct SamplePartialDevice {
  double sumExp;
  double sumExpLog2;
  float best;
  int32_t bestIndex;
  int32_t nan;
  int32_t unused;
};
static_assert(sizeof(SamplePartialDevice) == 32);

/// The sampler's grid for `params`: kSamplerBlocks for greedy sampling
/// without alternatives (pass A alone, split over the blocks), else 1.
int samplerBlocks(const SamplingParams &params);

/// `params` as the kernel takes them (validate() them first: the kernel
/// answers token -1 to invalid ones).
SamplingParamsDevice toDeviceParams(const SamplingParams &params);

/// The kernel's result as a SampleResult; token -1 becomes InvalidArgument
/// (NaN or +inf logits, every logit -inf, or invalid parameters).
absl::StatusOr<SampleResult> fromDeviceResult(const SampleResultDevice &result);

} // namespace treni
