//===- awareness.h - how sure the model was, per generation --*- C++ -*-===//
//
// The `awareness` summary every served response carries: perplexity (exp of
// the mean negative log-probability of the generated tokens), mean and max
// token entropy, the tokens whose probability fell under a threshold, and
// where the time went (queue, prefill, decode). Computed from the per-token
// SampleResult fields (logprob and entropy under the unmodified
// distribution), so it means the same on the CPU and the GPU.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace treni {

/// Default probability under which a generated token counts as
/// low-confidence (the model gave it less than even odds).
inline constexpr double kDefaultLowConfidenceProbability = 0.5;

struct GenerationTiming {
  double queueSeconds = 0;   ///< submitted -> the engine started on it
  double prefillSeconds = 0; ///< engine start -> first token (TTFT minus queue)
  double decodeSeconds = 0;  ///< first token -> last token
  int64_t promptTokens = 0;
  /// Prompt tokens whose KV-cache rows were kept from an earlier generation
  /// (prefix caching) instead of being prefilled.
  int64_t cachedPromptTokens = 0;
  int64_t completionTokens = 0;

  double timeToFirstTokenSeconds() const {
    return queueSeconds + prefillSeconds;
  }
  double totalSeconds() const {
    return queueSeconds + prefillSeconds + decodeSeconds;
  }
  /// Tokens after the first per second of decode (0 when fewer than two).
  double decodeTokensPerSecond() const;
};

struct Awareness {
  int64_t numTokens = 0;
  /// exp(-mean logprob); 1 for no tokens (nothing was uncertain).
  double perplexity = 1;
  double meanLogprob = 0;
  double meanEntropy = 0; ///< nats
  double maxEntropy = 0;  ///< nats
  int64_t maxEntropyPosition = -1;
  double lowConfidenceThreshold = kDefaultLowConfidenceProbability;
  /// Indices (into the generated tokens) with probability < threshold.
  std::vector<int64_t> lowConfidencePositions;
  GenerationTiming timing;
};

/// One generated token's uncertainty inputs.
struct TokenUncertainty {
  float logprob;
  float entropy;
};

/// Summarizes `tokens` (in generation order). `threshold` is a probability in
/// [0, 1]: a token is low-confidence when exp(logprob) < threshold.
Awareness
summarizeAwareness(absl::Span<const TokenUncertainty> tokens,
                   double threshold = kDefaultLowConfidenceProbability);

/// {"perplexity", "mean_logprob", "mean_entropy", "max_entropy",
///  "max_entropy_position", "tokens", "low_confidence": {"threshold", "count",
///  "positions"}, "timing": {"queue_ms", "prefill_ms", "ttft_ms",
///  "decode_ms", "total_ms", "decode_tokens_per_second",
///  "cached_prompt_tokens"}}
nlohmann::json toJson(const Awareness &awareness);

} // namespace treni
