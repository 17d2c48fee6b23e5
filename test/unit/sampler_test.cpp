//===- sampler_test.cpp - sampling semantics, kernel compile, GPU parity --===//
//
// The CPU reference against direct computations; the kernel source through
// NVRTC for sm_80 and sm_90 (no GPU needed); and, where a GPU is present,
// the kernel against the CPU reference token for token (skipped in CI).
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <map>
#include <new>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"

#ifdef TRENI_HAVE_CUDA
#include <chrono>
#include <cuda_runtime_api.h>
#include <nvrtc.h>
#endif

namespace treni {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SampleResult sampleOk(absl::Span<const float> logits,
                      const SamplingParams &params, uint64_t step = 0) {
  absl::StatusOr<SampleResult> result = sampleCpu(logits, params, step);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : SampleResult{-1, 0.0f, 0.0f, {}};
}

SamplingParams temperature(float value, int32_t topK = 0, float topP = 1.0f,
                           uint64_t seed = 0) {
  SamplingParams params;
  params.temperature = value;
  params.topK = topK;
  params.topP = topP;
  params.seed = seed;
  return params;
}

/// log-softmax computed directly, in long double.
std::vector<double> logSoftmax(absl::Span<const float> logits) {
  long double maxLogit = -kInf;
  for (float x : logits)
    maxLogit = std::max<long double>(maxLogit, x);
  long double sum = 0;
  for (float x : logits)
    sum += std::exp((long double)x - maxLogit);
  std::vector<double> out;
  for (float x : logits)
    out.push_back(double((long double)x - maxLogit - std::log(sum)));
  return out;
}

std::vector<float> randomLogits(int64_t vocab, uint32_t seed,
                                float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(vocab);
  for (float &x : logits)
    x = normal(rng);
  return logits;
}

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

TEST(SamplerValidate, AcceptsDefaultsAndLimits) {
  EXPECT_TRUE(validate(SamplingParams{}).ok());
  SamplingParams params = temperature(2.0f, 40, 0.5f);
  params.numAlternatives = kMaxAlternatives;
  EXPECT_TRUE(validate(params).ok());
}

TEST(SamplerValidate, MessagesNameTheField) {
  auto message = [](SamplingParams params) {
    absl::Status status = validate(params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    return std::string(status.message());
  };
  SamplingParams params;
  params.temperature = -0.5f;
  EXPECT_NE(message(params).find("temperature"), std::string::npos);
  params.temperature = kInf;
  EXPECT_NE(message(params).find("temperature"), std::string::npos);
  params.temperature = kNaN;
  EXPECT_NE(message(params).find("temperature"), std::string::npos);
  params = SamplingParams{};
  params.topK = -1;
  EXPECT_NE(message(params).find("topK"), std::string::npos);
  params = SamplingParams{};
  params.topP = 0.0f;
  EXPECT_NE(message(params).find("topP"), std::string::npos);
  params.topP = 1.5f;
  EXPECT_NE(message(params).find("topP"), std::string::npos);
  params.topP = kNaN;
  EXPECT_NE(message(params).find("topP"), std::string::npos);
  params = SamplingParams{};
  params.numAlternatives = 21;
  EXPECT_NE(message(params).find("numAlternatives"), std::string::npos);
  params.numAlternatives = -1;
  EXPECT_NE(message(params).find("numAlternatives"), std::string::npos);
}

// Tests that equal sampling parameters compare equal whatever their padding
// bytes hold (the GPU executor re-captures its decode graph when they
// differ; a memcmp once made that happen on every token), and that each
// field counts.
TEST(SamplerParams, EqualityIsFieldByField) {
  alignas(SamplingParams) unsigned char a[sizeof(SamplingParams)],
      b[sizeof(SamplingParams)];
  std::fill(std::begin(a), std::end(a), 0x00);
  std::fill(std::begin(b), std::end(b), 0xAB);
  SamplingParams *x = new (a) SamplingParams; // default-initialised:
  SamplingParams *y = new (b) SamplingParams; // padding keeps 0x00 / 0xAB
  EXPECT_TRUE(*x == *y);
  y->seed = 7;
  EXPECT_FALSE(*x == *y);
  *y = *x;
  y->numAlternatives = 3;
  EXPECT_FALSE(*x == *y);
  *y = *x;
  y->topP = 0.5f;
  EXPECT_FALSE(*x == *y);
}

TEST(SamplerValidate, SampleCpuRejectsBadParams) {
  std::vector<float> logits = {1.0f, 2.0f};
  SamplingParams params;
  params.topP = 0.0f;
  EXPECT_EQ(sampleCpu(logits, params, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

//===----------------------------------------------------------------------===//
// Greedy, logprob, entropy, alternatives
//===----------------------------------------------------------------------===//

TEST(SamplerCpu, GreedyIsArgmaxWithLowestIndexOnTies) {
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(sampleOk(logits, SamplingParams{}).token, 1);
  logits = {-kInf, -2.0f, -kInf, -2.0f};
  EXPECT_EQ(sampleOk(logits, SamplingParams{}).token, 1);
  logits = {7.0f};
  EXPECT_EQ(sampleOk(logits, SamplingParams{}).token, 0);
  // -0 and +0 are one value: the lower id wins.
  logits = {-1.0f, 0.0f, -0.0f};
  EXPECT_EQ(sampleOk(logits, SamplingParams{}).token, 1);
  logits = {-1.0f, -0.0f, 0.0f};
  EXPECT_EQ(sampleOk(logits, SamplingParams{}).token, 1);
}

TEST(SamplerCpu, UniformLogitsHaveEntropyLogV) {
  for (int64_t vocab : {1, 2, 1000, 151936}) {
    std::vector<float> logits(vocab, 0.7f);
    SamplingParams params;
    params.numAlternatives = 5;
    SampleResult result = sampleOk(logits, params);
    EXPECT_EQ(result.token, 0);
    EXPECT_NEAR(result.entropy, std::log(double(vocab)), 1e-5);
    EXPECT_NEAR(result.logprob, -std::log(double(vocab)), 1e-5);
    ASSERT_EQ(result.alternatives.size(), size_t(std::min<int64_t>(vocab, 5)));
    for (size_t i = 0; i < result.alternatives.size(); ++i)
      EXPECT_EQ(result.alternatives[i].token, int32_t(i)); // ties: low id
  }
}

TEST(SamplerCpu, LogprobAndEntropyMatchDirectComputation) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::vector<float> logits = randomLogits(5000, seed);
    logits[17] = -kInf; // masked tokens carry no mass
    std::vector<double> logprobs = logSoftmax(logits);
    double entropy = 0.0;
    for (double lp : logprobs)
      if (std::isfinite(lp))
        entropy -= std::exp(lp) * lp;
    for (SamplingParams params :
         {SamplingParams{}, temperature(0.6f, 50, 0.9f, seed),
          temperature(2.5f, 0, 1.0f, seed)}) {
      // The logprob is under the unmodified distribution, whatever the
      // temperature and limits.
      SampleResult result = sampleOk(logits, params, seed);
      EXPECT_NEAR(result.logprob, logprobs[result.token], 1e-5);
      EXPECT_NEAR(result.entropy, entropy, 1e-5);
    }
  }
}

TEST(SamplerCpu, AlternativesAreRankOrdered) {
  std::vector<float> logits = {1.0f, 3.0f, -kInf, 3.0f, 2.0f, 0.0f, 2.0f};
  std::vector<double> logprobs = logSoftmax(logits);
  SamplingParams params;
  params.numAlternatives = 5;
  SampleResult result = sampleOk(logits, params);
  std::vector<int32_t> expected = {1, 3, 4, 6, 0};
  ASSERT_EQ(result.alternatives.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(result.alternatives[i].token, expected[i]) << i;
    EXPECT_NEAR(result.alternatives[i].logprob, logprobs[expected[i]], 1e-6);
  }
  // More than the finite tokens: -inf is never an alternative.
  params.numAlternatives = 20;
  result = sampleOk(logits, params);
  EXPECT_EQ(result.alternatives.size(), 6u);
  for (const TokenChoice &choice : result.alternatives)
    EXPECT_NE(choice.token, 2);
  params.numAlternatives = 0;
  EXPECT_TRUE(sampleOk(logits, params).alternatives.empty());
}

TEST(SamplerCpu, BadLogitsAreErrors) {
  std::vector<float> logits = {1.0f, kNaN, 2.0f};
  absl::StatusOr<SampleResult> result = sampleCpu(logits, SamplingParams{}, 0);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("logits[1] is NaN"),
            std::string::npos);
  logits = {1.0f, kInf};
  EXPECT_EQ(sampleCpu(logits, SamplingParams{}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  logits = {-kInf, -kInf};
  EXPECT_EQ(sampleCpu(logits, temperature(1.0f), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampleCpu({}, SamplingParams{}, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

//===----------------------------------------------------------------------===//
// Temperature sampling
//===----------------------------------------------------------------------===//

TEST(SamplerCpu, DrawDependsOnlyOnSeedAndStep) {
  std::vector<float> logits = randomLogits(1000, 7, 0.5f);
  SamplingParams params = temperature(1.0f, 0, 1.0f, 42);
  std::vector<int32_t> first, again, otherSeed;
  for (uint64_t step = 0; step < 200; ++step) {
    first.push_back(sampleOk(logits, params, step).token);
    again.push_back(sampleOk(logits, params, step).token);
  }
  params.seed = 43;
  for (uint64_t step = 0; step < 200; ++step)
    otherSeed.push_back(sampleOk(logits, params, step).token);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, otherSeed);
  // A flat-ish distribution over 1000 tokens: 200 steps give many tokens.
  EXPECT_GT(std::set<int32_t>(first.begin(), first.end()).size(), 100u);
  EXPECT_NE(samplerRandomBits(0, 0), samplerRandomBits(0, 1));
  EXPECT_NE(samplerRandomBits(0, 0), samplerRandomBits(1, 0));
  EXPECT_EQ(samplerRandomBits(5, 9), samplerRandomBits(5, 9));
}

TEST(SamplerCpu, WeightsAreFixedPoint) {
  EXPECT_EQ(samplerWeight(3.0f, 3.0f, 1.0f), uint64_t(1) << 40);
  EXPECT_EQ(samplerWeight(-kInf, 3.0f, 1.0f), 0u);
  EXPECT_EQ(samplerWeight(-28.0f, 0.0f, 1.0f), 0u); // below 2^-40
  for (float x : {-0.001f, -0.3f, -0.35f, -1.0f, -5.5f, -20.0f, -27.0f}) {
    double expected = std::exp(double(x)) * std::ldexp(1.0, 40);
    EXPECT_NEAR(double(samplerWeight(x, 0.0f, 1.0f)), expected,
                expected * 3.5e-4 + 1.0) // log2 rounded to 1/1024
        << x;
  }
  // Temperature divides the logit difference.
  EXPECT_NEAR(double(samplerWeight(-2.0f, 0.0f, 2.0f)),
              double(samplerWeight(-1.0f, 0.0f, 1.0f)), 1e-6 * 0x1p40);
  // Monotone in the logit, across the polynomial's seams too.
  uint64_t previous = 0;
  for (float x = -27.5f; x <= 0.0f; x += 0.001f) {
    uint64_t weight = samplerWeight(x, 0.0f, 1.0f);
    EXPECT_GE(weight, previous) << x;
    previous = weight;
  }
}

/// Samples `steps` tokens and compares their frequencies with the
/// renormalised distribution the rules define, computed in double here
/// (softmax of logits / T, top-k by rank, then the nucleus of that).
void expectFrequencies(const std::vector<float> &logits,
                       const SamplingParams &params, int steps) {
  const int64_t vocab = int64_t(logits.size());
  std::vector<double> probs(vocab);
  double maxLogit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i)
    sum += probs[i] = std::exp((logits[i] - maxLogit) / params.temperature);
  for (double &p : probs)
    p /= sum;
  std::vector<int32_t> ranked(vocab);
  std::iota(ranked.begin(), ranked.end(), 0);
  std::stable_sort(ranked.begin(), ranked.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const int64_t topK = params.topK > 0 ? params.topK : vocab;
  double topKMass = 0.0;
  for (int64_t r = 0; r < topK; ++r)
    topKMass += probs[ranked[r]];
  std::vector<bool> kept(vocab, false);
  double cumulative = 0.0;
  for (int64_t r = 0; r < topK && cumulative < params.topP * topKMass; ++r) {
    kept[ranked[r]] = true;
    cumulative += probs[ranked[r]];
  }
  double keptMass = 0.0;
  for (int64_t i = 0; i < vocab; ++i)
    keptMass += kept[i] ? probs[i] : 0.0;

  std::vector<int> counts(vocab, 0);
  for (int step = 0; step < steps; ++step)
    ++counts[sampleOk(logits, params, step).token];
  double chiSquare = 0.0;
  int numKept = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!kept[i]) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the kept set";
      continue;
    }
    ++numKept;
    double expected = steps * probs[i] / keptMass;
    chiSquare += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  // Fixed seed, so not flaky; chi-square with <= 9 degrees of freedom stays
  // far below 40 (p ~ 1e-5) when the distribution is right.
  EXPECT_LT(chiSquare, 40.0) << "kept tokens: " << numKept;
  EXPECT_GE(numKept, 2);
}

TEST(SamplerCpu, FrequenciesMatchTemperatureDistribution) {
  std::vector<float> logits = {1.0f, 0.2f, -0.5f, 1.4f, 0.0f, -1.2f, 0.7f};
  expectFrequencies(logits, temperature(1.0f, 0, 1.0f, 11), 50000);
  expectFrequencies(logits, temperature(0.5f, 0, 1.0f, 12), 50000);
}

TEST(SamplerCpu, FrequenciesMatchTopKTopP) {
  std::vector<float> logits = {1.0f, 0.2f, -0.5f, 1.4f, 0.0f,  -1.2f,
                               0.7f, 2.1f, -2.0f, 0.4f, -0.9f, 1.8f};
  expectFrequencies(logits, temperature(0.8f, 5, 1.0f, 21), 50000);
  expectFrequencies(logits, temperature(0.8f, 0, 0.7f, 22), 50000);
  expectFrequencies(logits, temperature(1.3f, 8, 0.85f, 23), 50000);
  expectFrequencies(logits, temperature(1.3f, 4, 0.95f, 24), 50000);
}

TEST(SamplerCpu, TopKOneAndTinyTopPAreGreedy) {
  std::vector<float> logits = randomLogits(3000, 5, 1.0f);
  int32_t greedy = sampleOk(logits, SamplingParams{}).token;
  for (uint64_t step = 0; step < 50; ++step) {
    EXPECT_EQ(sampleOk(logits, temperature(1.5f, 1, 1.0f, 3), step).token,
              greedy);
    EXPECT_EQ(sampleOk(logits, temperature(1.5f, 0, 1e-6f, 3), step).token,
              greedy);
  }
  // top-k is by rank, so a tie at the top still gives the lowest id.
  std::vector<float> tied = {1.0f, 4.0f, 2.0f, 4.0f};
  for (uint64_t step = 0; step < 50; ++step)
    EXPECT_EQ(sampleOk(tied, temperature(1.0f, 1, 1.0f, 3), step).token, 1);
}

TEST(SamplerCpu, TopKBoundaryTiesGoByTokenId) {
  std::vector<float> logits = {1.0f, 5.0f, 5.0f, 5.0f, 0.0f};
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 200; ++step)
    seen.insert(sampleOk(logits, temperature(1.0f, 2, 1.0f, 9), step).token);
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2}));
}

TEST(SamplerCpu, NucleusBoundaryTiesAreAllKept) {
  // p(5) ~ 0.78 < topP: the nucleus needs the 3s, and takes both.
  std::vector<float> logits = {3.0f, 5.0f, 0.0f, 3.0f, 0.0f};
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 300; ++step)
    seen.insert(sampleOk(logits, temperature(1.0f, 0, 0.8f, 9), step).token);
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 3}));
}

TEST(SamplerCpu, MaskedTokensAreNeverSampled) {
  std::vector<float> logits(64, 0.0f);
  for (int i = 0; i < 64; i += 3)
    logits[i] = -kInf;
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 2000; ++step)
    seen.insert(sampleOk(logits, temperature(100.0f, 0, 1.0f, 1), step).token);
  for (int32_t token : seen)
    EXPECT_NE(token % 3, 0) << token;
  EXPECT_EQ(seen.size(), 64u - 22u); // every finite token shows up
  // One finite token left: every mode picks it.
  std::vector<float> one(10, -kInf);
  one[7] = -3.0f;
  EXPECT_EQ(sampleOk(one, temperature(2.0f, 5, 0.5f, 1)).token, 7);
  EXPECT_EQ(sampleOk(one, SamplingParams{}).token, 7);
  EXPECT_NEAR(sampleOk(one, SamplingParams{}).logprob, 0.0f, 1e-7);
}

TEST(SamplerCpu, FullVocabularySamplesInsideTheLimits) {
  std::vector<float> logits = randomLogits(151936, 99, 2.0f);
  std::vector<int32_t> ranked(logits.size());
  std::iota(ranked.begin(), ranked.end(), 0);
  std::partial_sort(
      ranked.begin(), ranked.begin() + 40, ranked.end(),
      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::set<int32_t> top40(ranked.begin(), ranked.begin() + 40);
  for (uint64_t step = 0; step < 20; ++step) {
    SampleResult result =
        sampleOk(logits, temperature(0.7f, 40, 0.95f, 5), step);
    EXPECT_TRUE(top40.count(result.token)) << result.token;
  }
}

TEST(SamplerDevice, ResultConversion) {
  SampleResultDevice device{};
  device.token = 5;
  device.logprob = -0.25f;
  device.entropy = 1.5f;
  device.numAlternatives = 2;
  device.alternativeTokens[0] = 5;
  device.alternativeTokens[1] = 9;
  device.alternativeLogprobs[0] = -0.25f;
  device.alternativeLogprobs[1] = -2.0f;
  absl::StatusOr<SampleResult> result = fromDeviceResult(device);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->token, 5);
  ASSERT_EQ(result->alternatives.size(), 2u);
  EXPECT_EQ(result->alternatives[1].token, 9);
  device.token = -1;
  EXPECT_EQ(fromDeviceResult(device).status().code(),
            absl::StatusCode::kInvalidArgument);
  SamplingParams params = temperature(0.7f, 40, 0.9f, 77);
  params.numAlternatives = 3;
  SamplingParamsDevice deviceParams = toDeviceParams(params);
  EXPECT_EQ(deviceParams.seed, 77u);
  EXPECT_EQ(deviceParams.topK, 40);
  EXPECT_EQ(deviceParams.numAlternatives, 3);
}

//===----------------------------------------------------------------------===//
// The kernel: NVRTC compile (no GPU) and GPU parity (skipped without one)
//===----------------------------------------------------------------------===//

#ifdef TRENI_HAVE_CUDA

/// Device-side checks of the kernel's structs as NVRTC lays them out: size
/// and alignment (NVRTC has no offsetof). The field offsets are checked on the
/// host against the .cuh's own definitions (sampler.cpp), and CUDA lays out
/// such structs identically on host and device.
std::string layoutAsserts() {
  return absl::StrCat(
      "\nstatic_assert(sizeof(SamplingParamsDevice) == ",
      sizeof(SamplingParamsDevice), ", \"params size\");\n",
      "static_assert(alignof(SamplingParamsDevice) == ",
      alignof(SamplingParamsDevice), ", \"params alignment\");\n",
      "static_assert(sizeof(SampleResultDevice) == ",
      sizeof(SampleResultDevice), ", \"result size\");\n",
      "static_assert(alignof(SampleResultDevice) == ",
      alignof(SampleResultDevice), ", \"result alignment\");\n");
}

/// Compiles `source` for `arch` with NVRTC; the cubin, or a failure with the
/// log.
::testing::AssertionResult compileKernel(const std::string &source,
                                         const std::string &arch,
                                         std::vector<char> *cubin,
                                         bool fastMath = false) {
  nvrtcProgram program;
  nvrtcResult result = nvrtcCreateProgram(
      &program, source.c_str(), "sampler_kernel.cu", 0, nullptr, nullptr);
  if (result != NVRTC_SUCCESS)
    return ::testing::AssertionFailure()
           << "nvrtcCreateProgram: " << nvrtcGetErrorString(result);
  std::string archOption = "--gpu-architecture=" + arch;
  std::vector<const char *> options = {archOption.c_str()};
  if (fastMath)
    options.push_back("--use_fast_math");
  result = nvrtcCompileProgram(program, int(options.size()), options.data());
  size_t logSize = 0;
  nvrtcGetProgramLogSize(program, &logSize);
  std::string log(logSize, '\0');
  if (logSize)
    nvrtcGetProgramLog(program, log.data());
  if (result == NVRTC_SUCCESS && cubin) {
    size_t size = 0;
    nvrtcGetCUBINSize(program, &size);
    cubin->resize(size);
    nvrtcGetCUBIN(program, cubin->data());
  }
  nvrtcDestroyProgram(&program);
  if (result != NVRTC_SUCCESS)
    return ::testing::AssertionFailure()
           << arch << ": " << nvrtcGetErrorString(result) << "\n"
           << log;
  return ::testing::AssertionSuccess();
}

TEST(SamplerKernel, SourceIsEmbedded) {
  const std::string &source = samplerKernelSource();
  EXPECT_NE(source.find("treni_sample"), std::string::npos);
  EXPECT_NE(source.find("struct SampleResultDevice"), std::string::npos);
  EXPECT_EQ(source.find("#include"), std::string::npos);
}

TEST(SamplerKernel, CompilesWithNvrtcForSm80AndSm90) {
  for (const char *arch : {"sm_80", "sm_90"}) {
    std::vector<char> cubin;
    EXPECT_TRUE(
        compileKernel(samplerKernelSource() + layoutAsserts(), arch, &cubin));
    EXPECT_FALSE(cubin.empty()) << arch;
  }
}

#define CUDA_OK(call)                                                          \
  do {                                                                         \
    cudaError_t error = (call);                                                \
    ASSERT_EQ(error, cudaSuccess)                                              \
        << #call << ": " << cudaGetErrorString(error);                         \
  } while (0)

/// The kernel on the present GPU, launched the way the runtime does.
class GpuSampler : public ::testing::Test {
protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();
      GTEST_SKIP() << "no GPU";
    }
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    std::vector<char> cubin;
    std::string source = samplerKernelSource();
    if (debug())
      source = "#define TRENI_SAMPLER_DEBUG\n" + source;
    // Experiments (e.g. "#define TRENI_SAMPLER_UNROLL 2") without a rebuild.
    if (const char *extra = std::getenv("TRENI_SAMPLER_EXTRA_SOURCE"))
      source = std::string(extra) + "\n" + source;
    ASSERT_TRUE(compileKernel(source,
                              absl::StrCat("sm_", prop.major, prop.minor),
                              &cubin, fastMath()));
    CUDA_OK(cudaLibraryLoadData(&library_, cubin.data(), nullptr, nullptr, 0,
                                nullptr, nullptr, 0));
    CUDA_OK(cudaLibraryGetKernel(&kernel_, library_, kSamplerKernelName));
    CUDA_OK(cudaMalloc((void **)&logits_, (kMaxVocab + 4) * sizeof(float)));
    CUDA_OK(cudaMalloc((void **)&step_, sizeof(unsigned long long)));
    CUDA_OK(cudaMalloc((void **)&result_, 2 * sizeof(SampleResultDevice)));
    CUDA_OK(cudaMalloc((void **)&partials_,
                       kSamplerBlocks * sizeof(SamplePartialDevice)));
    CUDA_OK(cudaMalloc((void **)&arrivals_, sizeof(unsigned)));
    CUDA_OK(cudaMemset(arrivals_, 0, sizeof(unsigned)));
  }
  void TearDown() override {
    cudaFree(logits_);
    cudaFree(step_);
    cudaFree(result_);
    cudaFree(partials_);
    cudaFree(arrivals_);
    if (library_)
      cudaLibraryUnload(library_);
  }
  virtual bool fastMath() const { return false; }
  virtual bool debug() const { return false; }

  /// With TRENI_SAMPLER_DEBUG: the last launch's phase times and passes.
  std::string phases() {
    unsigned long long marks[16] = {};
    void *address = nullptr;
    size_t size = 0;
    if (cudaLibraryGetGlobal(&address, &size, library_,
                             "treni_sampler_debug") != cudaSuccess ||
        cudaMemcpy(marks, address, sizeof(marks), cudaMemcpyDeviceToHost) !=
            cudaSuccess)
      return "(no phase marks)";
    auto us = [&](int from, int to) {
      return absl::StrFormat("%.1f", (marks[to] - marks[from]) / 1000.0);
    };
    return absl::StrCat("A ", us(0, 1), " B ", us(1, 2), " bounds ", us(2, 4),
                        " draw ", us(4, 3), " out ", us(3, 5), " (us), ",
                        marks[8], " locate passes");
  }

  /// Launches the kernel as the runtime does: samplerBlocks(params) blocks
  /// (one with oneBlock_), on the default stream.
  void launchKernel(const float *logits, int vocab,
                    const SamplingParams &params,
                    SampleFeedDevice feed = SampleFeedDevice{}) {
    SamplingParamsDevice device = toDeviceParams(params);
    void *args[] = {&logits,  &vocab, &device,    &step_,
                    &result_, &feed,  &partials_, &arrivals_};
    CUDA_OK(cudaLaunchKernel((const void *)kernel_,
                             dim3(oneBlock_ ? 1 : samplerBlocks(params)),
                             dim3(kSamplerThreads), args, 0, nullptr));
  }

  void upload(const std::vector<float> &logits, int offset = 0) {
    ASSERT_LE(logits.size() + offset, size_t(kMaxVocab + 4));
    CUDA_OK(cudaMemcpy(logits_ + offset, logits.data(),
                       logits.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  /// Runs the kernel at `step` on logits already uploaded at `offset`.
  void launch(int vocab, const SamplingParams &params, uint64_t step,
              SampleResultDevice *out, int offset = 0) {
    unsigned long long stepValue = step;
    CUDA_OK(cudaMemcpy(step_, &stepValue, sizeof(stepValue),
                       cudaMemcpyHostToDevice));
    ASSERT_NO_FATAL_FAILURE(launchKernel(logits_ + offset, vocab, params));
    CUDA_OK(cudaMemcpy(out, result_, sizeof(*out), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&stepValue, step_, sizeof(stepValue),
                       cudaMemcpyDeviceToHost));
    EXPECT_EQ(stepValue, step + 1);
  }
  /// GPU and CPU agree: the same token and alternatives, logprob and
  /// entropy to float rounding.
  void expectParity(const std::vector<float> &logits,
                    const SamplingParams &params, uint64_t step,
                    int offset = 0) {
    SampleResultDevice gpu;
    ASSERT_NO_FATAL_FAILURE(
        launch(int(logits.size()), params, step, &gpu, offset));
    SampleResult cpu = sampleOk(logits, params, step);
    std::string where = absl::StrCat(
        "vocab ", logits.size(), " T ", params.temperature, " topK ",
        params.topK, " topP ", params.topP, " alts ", params.numAlternatives,
        " step ", step, " offset ", offset);
    ++compared_;
    ASSERT_EQ(gpu.token, cpu.token) << where;
    EXPECT_NEAR(gpu.logprob, cpu.logprob, 2e-5 + 1e-6 * std::abs(cpu.logprob))
        << where;
    EXPECT_NEAR(gpu.entropy, cpu.entropy, 2e-5 + 1e-5 * cpu.entropy) << where;
    ASSERT_EQ(gpu.numAlternatives, int(cpu.alternatives.size())) << where;
    for (int i = 0; i < gpu.numAlternatives; ++i) {
      EXPECT_EQ(gpu.alternativeTokens[i], cpu.alternatives[i].token)
          << where << " alternative " << i;
      EXPECT_NEAR(gpu.alternativeLogprobs[i], cpu.alternatives[i].logprob,
                  2e-5 + 1e-6 * std::abs(cpu.alternatives[i].logprob))
          << where << " alternative " << i;
    }
  }

  static constexpr int kMaxVocab = 152064;
  cudaLibrary_t library_ = nullptr;
  cudaKernel_t kernel_ = nullptr;
  float *logits_ = nullptr;
  unsigned long long *step_ = nullptr;
  SampleResultDevice *result_ = nullptr;
  SamplePartialDevice *partials_ = nullptr;
  unsigned *arrivals_ = nullptr;
  /// Greedy without alternatives on one block instead of kSamplerBlocks.
  bool oneBlock_ = false;
  int compared_ = 0;
};

std::vector<SamplingParams> parityParams() {
  std::vector<SamplingParams> all;
  for (int alternatives : {0, 5, 20}) {
    for (SamplingParams params :
         {SamplingParams{}, temperature(1.0f, 0, 1.0f, 1),
          temperature(0.7f, 50, 1.0f, 2), temperature(0.7f, 0, 0.9f, 3),
          temperature(0.8f, 40, 0.95f, 4), temperature(1.5f, 1000, 0.99f, 5),
          temperature(1.0f, 1, 1.0f, 6), temperature(1e-3f, 0, 0.5f, 7),
          temperature(5.0f, 0, 0.3f, 8), temperature(1.0f, 5000, 1.0f, 9),
          temperature(1.0f, 0, 0.99f, 10),
          temperature(2.0f, 3000, 0.95f, 11)}) {
      params.numAlternatives = alternatives;
      all.push_back(params);
    }
  }
  return all;
}

/// Logit vectors with the shapes that matter: LM-like spreads, heavy ties,
/// masked tokens, a flat distribution, odd sizes.
std::vector<std::vector<float>> parityLogits() {
  std::vector<std::vector<float>> all;
  all.push_back(randomLogits(151936, 1, 3.0f));
  all.push_back(randomLogits(152064, 2, 1.0f));
  std::vector<float> quantized = randomLogits(151936, 3, 2.0f);
  for (float &x : quantized) // bf16-like: many exact ties
    x = std::round(x * 4.0f) / 4.0f;
  all.push_back(quantized);
  std::vector<float> masked = randomLogits(32000, 4, 4.0f);
  for (size_t i = 0; i < masked.size(); i += 2)
    masked[i] = -kInf;
  all.push_back(masked);
  all.push_back(std::vector<float>(151936, 0.5f)); // uniform
  all.push_back(randomLogits(1, 5));
  all.push_back(randomLogits(3, 6));
  all.push_back(randomLogits(1001, 7, 5.0f));
  std::vector<float> peaked = randomLogits(50257, 8, 1.0f);
  peaked[123] = 40.0f; // one dominant token
  all.push_back(peaked);
  // A random-weight model: every logit close together (dense ranges).
  all.push_back(randomLogits(151936, 9, 0.05f));
  // A grammar mask: few allowed tokens, the rest a large finite negative.
  std::vector<float> grammar(151936, -1e9f);
  for (int i : {5, 77, 1000, 1001, 90000, 151935, 42})
    grammar[i] = float(i % 13) * 0.5f;
  all.push_back(grammar);
  return all;
}

TEST_F(GpuSampler, MatchesCpuTokenForToken) {
  for (const std::vector<float> &logits : parityLogits()) {
    ASSERT_NO_FATAL_FAILURE(upload(logits));
    for (const SamplingParams &params : parityParams())
      for (uint64_t step : {0ull, 1ull, 12345ull})
        ASSERT_NO_FATAL_FAILURE(expectParity(logits, params, step));
  }
  std::printf("GPU == CPU for %d samples\n", compared_);
}

// Tests greedy sampling without alternatives on a single block too (the
// runtime splits it over kSamplerBlocks): the same results, bad logits
// included.
TEST_F(GpuSampler, GreedyOnOneBlockToo) {
  oneBlock_ = true;
  for (const std::vector<float> &logits : parityLogits()) {
    ASSERT_NO_FATAL_FAILURE(upload(logits));
    ASSERT_NO_FATAL_FAILURE(expectParity(logits, SamplingParams{}, 0));
  }
  std::vector<float> logits = randomLogits(151936, 19);
  logits[100000] = kNaN;
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  SampleResultDevice out;
  ASSERT_NO_FATAL_FAILURE(launch(151936, SamplingParams{}, 0, &out));
  EXPECT_EQ(out.token, -1);
  oneBlock_ = false;
  ASSERT_NO_FATAL_FAILURE(launch(151936, SamplingParams{}, 0, &out));
  EXPECT_EQ(out.token, -1);
  // A clean launch after a failed one: the arrival count was reset.
  ASSERT_NO_FATAL_FAILURE(upload(randomLogits(151936, 19)));
  ASSERT_NO_FATAL_FAILURE(
      expectParity(randomLogits(151936, 19), SamplingParams{}, 0));
}

TEST_F(GpuSampler, ManyStepsMatchCpu) {
  std::vector<float> logits = randomLogits(151936, 11, 2.5f);
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  for (uint64_t step = 0; step < 300; ++step)
    ASSERT_NO_FATAL_FAILURE(
        expectParity(logits, temperature(1.0f, 0, 0.95f, 2024), step));
}

TEST_F(GpuSampler, UnalignedLogits) {
  std::vector<float> logits = randomLogits(10007, 12, 2.0f);
  for (int offset : {1, 2, 3}) {
    ASSERT_NO_FATAL_FAILURE(upload(logits, offset));
    for (const SamplingParams &params : parityParams())
      ASSERT_NO_FATAL_FAILURE(expectParity(logits, params, 3, offset));
  }
}

TEST_F(GpuSampler, FeedWritesTheNextStepsInputs) {
  // A decode step at position p: the result goes to slot p & 1, the token
  // (0 for -1) and p + 1 to the next step's inputs, p + 1 to the feed.
  int32_t *feedWords = nullptr; // ids, positions, position
  CUDA_OK(cudaMalloc((void **)&feedWords, 3 * sizeof(int32_t)));
  SampleFeedDevice feed{feedWords, feedWords + 1, feedWords + 2};
  SampleResultDevice sentinel{};
  sentinel.token = 777;
  CUDA_OK(
      cudaMemcpy(result_, &sentinel, sizeof(sentinel), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(result_ + 1, &sentinel, sizeof(sentinel),
                     cudaMemcpyHostToDevice));
  int32_t position = 41;
  CUDA_OK(cudaMemcpy(feed.position, &position, sizeof(position),
                     cudaMemcpyHostToDevice));
  struct Step {
    int argmax;      ///< -1: a NaN logit
    int slot, token; ///< expected
  };
  int vocab = 1000;
  SamplingParams greedy;
  for (Step step :
       {Step{5, 1, 5}, Step{9, 0, 9}, Step{-1, 1, -1}, Step{999, 0, 999}}) {
    std::vector<float> values = randomLogits(vocab, 20 + position, 1.0f);
    if (step.argmax >= 0)
      values[step.argmax] = 50.0f;
    else
      values[3] = std::nanf("");
    ASSERT_NO_FATAL_FAILURE(upload(values));
    ASSERT_NO_FATAL_FAILURE(launchKernel(logits_, vocab, greedy, feed));
    SampleResultDevice slots[2];
    int32_t words[3];
    CUDA_OK(cudaMemcpy(slots, result_, sizeof(slots), cudaMemcpyDeviceToHost));
    CUDA_OK(
        cudaMemcpy(words, feedWords, sizeof(words), cudaMemcpyDeviceToHost));
    std::string where = absl::StrCat("position ", position);
    EXPECT_EQ(position & 1, step.slot) << where;
    EXPECT_EQ(slots[step.slot].token, step.token) << where;
    EXPECT_EQ(words[0], std::max(step.token, 0)) << where;
    EXPECT_EQ(words[1], position + 1) << where;
    EXPECT_EQ(words[2], position + 1) << where;
    // The other slot still holds the previous step's result.
    if (position > 41)
      EXPECT_NE(slots[1 - step.slot].token, 777) << where;
    else
      EXPECT_EQ(slots[1 - step.slot].token, 777) << where;
    ++position;
  }
  cudaFree(feedWords);
}

TEST_F(GpuSampler, BadLogitsGiveMinusOne) {
  SampleResultDevice out;
  std::vector<float> logits = randomLogits(1000, 13);
  logits[500] = kNaN;
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  ASSERT_NO_FATAL_FAILURE(launch(1000, temperature(1.0f), 0, &out));
  EXPECT_EQ(out.token, -1);
  logits[500] = kInf;
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  ASSERT_NO_FATAL_FAILURE(launch(1000, SamplingParams{}, 0, &out));
  EXPECT_EQ(out.token, -1);
  ASSERT_NO_FATAL_FAILURE(upload(std::vector<float>(1000, -kInf)));
  ASSERT_NO_FATAL_FAILURE(launch(1000, SamplingParams{}, 0, &out));
  EXPECT_EQ(out.token, -1);
  SamplingParams invalid;
  invalid.topP = 0.0f;
  ASSERT_NO_FATAL_FAILURE(upload(randomLogits(1000, 14)));
  ASSERT_NO_FATAL_FAILURE(launch(1000, invalid, 0, &out));
  EXPECT_EQ(out.token, -1);
  EXPECT_FALSE(fromDeviceResult(out).ok());
}

/// Fast math must not change the draw: the shared arithmetic uses explicit
/// round-to-nearest intrinsics.
class GpuSamplerFastMath : public GpuSampler {
  bool fastMath() const override { return true; }
};
TEST_F(GpuSamplerFastMath, MatchesCpuTokenForToken) {
  std::vector<float> logits = randomLogits(151936, 15, 3.0f);
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  for (const SamplingParams &params : parityParams())
    ASSERT_NO_FATAL_FAILURE(expectParity(logits, params, 7));
}

/// Timing, with the kernel's phase marks compiled in.
class GpuSamplerTiming : public GpuSampler {
  bool debug() const override { return true; }
};

TEST_F(GpuSamplerTiming, Timing) {
  std::vector<float> logits = randomLogits(151936, 16, 3.0f);
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  const float *deviceLogits = logits_;
  int vocab = int(logits.size());
  struct Case {
    const char *name;
    SamplingParams params;
    bool oneBlock = false;
  };
  SamplingParams greedyAlts;
  greedyAlts.numAlternatives = 20;
  SamplingParams fullAlts = temperature(0.7f, 40, 0.9f, 1);
  fullAlts.numAlternatives = 20;
  std::vector<Case> cases = {
      {"greedy", SamplingParams{}},
      {"greedy, one block", SamplingParams{}, true},
      {"greedy + 20 alternatives", greedyAlts},
      {"T=1", temperature(1.0f, 0, 1.0f, 1)},
      {"T=0.7 top-k 40", temperature(0.7f, 40, 1.0f, 1)},
      {"T=0.7 top-p 0.9", temperature(0.7f, 0, 0.9f, 1)},
      {"T=0.7 top-k 40 top-p 0.9 + 20 alts", fullAlts},
      {"T=1 top-p 0.99", temperature(1.0f, 0, 0.99f, 1)},
      {"T=1 top-k 5000", temperature(1.0f, 5000, 1.0f, 1)},
  };
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  std::printf("treni_sample, vocab %d, blocks of %d threads:\n", vocab,
              kSamplerThreads);
  for (const Case &c : cases) {
    oneBlock_ = c.oneBlock;
    std::vector<float> times;
    for (int rep = 0; rep < 7; ++rep) {
      constexpr int kLaunches = 200;
      CUDA_OK(cudaEventRecord(start));
      for (int i = 0; i < kLaunches; ++i)
        ASSERT_NO_FATAL_FAILURE(launchKernel(deviceLogits, vocab, c.params));
      CUDA_OK(cudaEventRecord(stop));
      CUDA_OK(cudaEventSynchronize(stop));
      float ms = 0.0f;
      CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
      times.push_back(ms * 1000.0f / kLaunches);
    }
    std::sort(times.begin(), times.end());
    std::printf("  %-40s %8.2f us (median of 7 x 200 launches); %s\n", c.name,
                times[times.size() / 2],
                oneBlock_ || samplerBlocks(c.params) == 1
                    ? phases().c_str()
                    : "split over blocks, no phase marks");
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

TEST_F(GpuSamplerTiming, TimingFlat) {
  // Random-weight models: logits within a few tenths, huge nuclei.
  std::vector<float> logits = randomLogits(151936, 17, 0.05f);
  ASSERT_NO_FATAL_FAILURE(upload(logits));
  const float *deviceLogits = logits_;
  int vocab = int(logits.size());
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  SamplingParams alts;
  alts.numAlternatives = 20;
  for (SamplingParams params :
       {alts, temperature(1.0f, 0, 0.9f, 1), temperature(0.7f, 40, 0.9f, 1)}) {
    CUDA_OK(cudaEventRecord(start));
    for (int i = 0; i < 200; ++i)
      ASSERT_NO_FATAL_FAILURE(launchKernel(deviceLogits, vocab, params));
    CUDA_OK(cudaEventRecord(stop));
    CUDA_OK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
    std::printf("  flat logits, T %.1f top-k %d top-p %.2f alts %d: %.2f us; "
                "%s\n",
                params.temperature, params.topK, params.topP,
                params.numAlternatives, ms * 1000.0f / 200, phases().c_str());
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

#endif // TRENI_HAVE_CUDA

} // namespace
} // namespace treni
