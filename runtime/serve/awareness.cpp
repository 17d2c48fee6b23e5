//===- awareness.cpp - how sure the model was, per generation ------------===//

#include "runtime/serve/awareness.h"

#include <cmath>

namespace treni {

double GenerationTiming::decodeTokensPerSecond() const {
  if (completionTokens < 2 || decodeSeconds <= 0)
    return 0;
  return double(completionTokens - 1) / decodeSeconds;
}

Awareness summarizeAwareness(absl::Span<const TokenUncertainty> tokens,
                             double threshold) {
  Awareness awareness;
  awareness.lowConfidenceThreshold = threshold;
  awareness.numTokens = int64_t(tokens.size());
  if (tokens.empty())
    return awareness;
  // Sums in double: long generations of float logprobs lose digits otherwise.
  double logprobSum = 0, entropySum = 0;
  double logThreshold = threshold > 0 ? std::log(threshold) : -INFINITY;
  for (size_t i = 0; i < tokens.size(); ++i) {
    logprobSum += tokens[i].logprob;
    entropySum += tokens[i].entropy;
    if (awareness.maxEntropyPosition < 0 ||
        tokens[i].entropy > awareness.maxEntropy) {
      awareness.maxEntropy = tokens[i].entropy;
      awareness.maxEntropyPosition = int64_t(i);
    }
    if (double(tokens[i].logprob) < logThreshold)
      awareness.lowConfidencePositions.push_back(int64_t(i));
  }
  awareness.meanLogprob = logprobSum / double(tokens.size());
  awareness.meanEntropy = entropySum / double(tokens.size());
  awareness.perplexity = std::exp(-awareness.meanLogprob);
  return awareness;
}

nlohmann::json toJson(const Awareness &awareness) {
  const GenerationTiming &t = awareness.timing;
  // JSON has no infinity: a -inf logprob (impossible under the unmodified
  // distribution, but cheap to guard) is reported as null.
  auto finite = [](double v) -> nlohmann::json {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  return {
      {"tokens", awareness.numTokens},
      {"perplexity", finite(awareness.perplexity)},
      {"mean_logprob", finite(awareness.meanLogprob)},
      {"mean_entropy", finite(awareness.meanEntropy)},
      {"max_entropy", finite(awareness.maxEntropy)},
      {"max_entropy_position", awareness.maxEntropyPosition},
      {"low_confidence",
       {{"threshold", awareness.lowConfidenceThreshold},
        {"count", awareness.lowConfidencePositions.size()},
        {"positions", awareness.lowConfidencePositions}}},
      {"timing",
       {{"queue_ms", t.queueSeconds * 1e3},
        {"prefill_ms", t.prefillSeconds * 1e3},
        {"ttft_ms", t.timeToFirstTokenSeconds() * 1e3},
        {"decode_ms", t.decodeSeconds * 1e3},
        {"total_ms", t.totalSeconds() * 1e3},
        {"decode_tokens_per_second", t.decodeTokensPerSecond()},
        {"cached_prompt_tokens", t.cachedPromptTokens}}},
  };
}

} // namespace treni
