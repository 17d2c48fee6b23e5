//===- reranker.h - relevance scores from a reranker model ------*- C++ -*-===//
//
// Qwen3-Reranker is a decoder asked, in a fixed chat format, whether a
// document meets a query; its score is the probability of "yes" against "no"
// at the last position: exp(yes) / (exp(yes) + exp(no)) of the two logits.
// The Reranker formats and tokenizes every (query, document) pair and runs
// them all through a StepRunner in shared steps (runPromptSteps, the last
// position's logits of each), nothing kept afterwards.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/batch/step_runner.h"
#include "runtime/text/tokenizer.h"

namespace treni {

/// The instruction Qwen3-Reranker's model card uses when none is given.
inline constexpr char kDefaultRerankInstruction[] =
    "Given a web search query, retrieve relevant passages that answer the "
    "query";

/// The text of one pair in Qwen3-Reranker's format (system prompt, the
/// instruction, query and document, an empty think block).
std::string rerankPrompt(std::string_view instruction, std::string_view query,
                         std::string_view document);

/// The ids of the answer tokens: "yes" and "no" must be tokens of the
/// vocabulary (FailedPrecondition otherwise: not a reranker's tokenizer).
struct RerankTokens {
  int32_t yes = 0, no = 0;
};
absl::StatusOr<RerankTokens> rerankTokens(const Tokenizer &tokenizer);

class Reranker {
public:
  /// Over `runner` (which must outlive it and have no other user), steps of
  /// at most `maxStepTokens` rows.
  Reranker(StepRunner &runner, const Tokenizer &tokenizer, RerankTokens tokens,
           int64_t maxStepTokens);

  struct Scores {
    std::vector<double> scores; ///< per document, in input order, in [0, 1]
    int64_t tokens = 0;         ///< prompt tokens computed
  };
  /// One score per document. A pair longer than the pool holds is an
  /// InvalidArgument naming the document; Cancelled / DeadlineExceeded as
  /// runPromptSteps. Calls are serialised.
  absl::StatusOr<Scores>
  score(std::string_view query, absl::Span<const std::string> documents,
        std::string_view instruction = kDefaultRerankInstruction,
        const std::atomic<bool> *cancel = nullptr,
        std::chrono::steady_clock::time_point deadline =
            std::chrono::steady_clock::time_point::max());

private:
  StepRunner &runner_;
  const Tokenizer &tokenizer_;
  RerankTokens tokens_;
  int64_t maxStepTokens_;
  std::mutex mutex_;
};

} // namespace treni
