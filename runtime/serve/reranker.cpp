//===- reranker.cpp - relevance scores from a reranker model --------------===//

#include "runtime/serve/reranker.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/serve/embedder.h"
#include "support/status.h"

namespace treni {

std::string rerankPrompt(std::string_view instruction, std::string_view query,
                         std::string_view document) {
  std::string prompt =
      "<|im_start|>system\nJudge whether the Document meets the requirements "
      "based on the Query and the Instruct provided. Note that the answer can "
      "only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n<Instruct>: ";
  prompt.append(instruction).append("\n<Query>: ").append(query);
  prompt.append("\n<Document>: ").append(document);
  prompt += "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
  return prompt;
}

absl::StatusOr<RerankTokens> rerankTokens(const Tokenizer &tokenizer) {
  std::optional<int32_t> yes = tokenizer.tokenToId("yes"),
                         no = tokenizer.tokenToId("no");
  if (!yes || !no)
    return absl::FailedPreconditionError(
        "the tokenizer has no \"yes\" and \"no\" tokens, so the model cannot "
        "be a Qwen3-Reranker-style reranker");
  return RerankTokens{*yes, *no};
}

Reranker::Reranker(StepRunner &runner, const Tokenizer &tokenizer,
                   RerankTokens tokens, int64_t maxStepTokens)
    : runner_(runner), tokenizer_(tokenizer), tokens_(tokens),
      maxStepTokens_(maxStepTokens) {}

absl::StatusOr<Reranker::Scores>
Reranker::score(std::string_view query, absl::Span<const std::string> documents,
                std::string_view instruction, const std::atomic<bool> *cancel,
                std::chrono::steady_clock::time_point deadline) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t vocab = runner_.vocabSize();
  if (tokens_.yes < 0 || tokens_.yes >= vocab || tokens_.no < 0 ||
      tokens_.no >= vocab)
    return absl::FailedPreconditionError(
        "the answer tokens lie outside the model's vocabulary");
  const int64_t longest = longestPrompt(runner_);
  std::vector<std::vector<int32_t>> prompts;
  Scores out;
  for (size_t i = 0; i < documents.size(); ++i) {
    // The special tokens are in the text (as the model card tokenizes it).
    prompts.push_back(tokenizer_.encode(
        rerankPrompt(instruction, query, documents[i]), false));
    if (int64_t(prompts.back().size()) > longest)
      return absl::InvalidArgumentError(absl::StrCat(
          "document ", i, " makes a prompt of ", prompts.back().size(),
          " tokens; at most ", longest, " fit"));
    out.tokens += int64_t(prompts.back().size());
  }
  out.scores.assign(documents.size(), 0.0);
  TRENI_RETURN_IF_ERROR(runPromptSteps(runner_, prompts, maxStepTokens_,
                                       StepOutput::LastLogits, cancel, deadline,
                                       [&](const PromptChunk &chunk) {
                                         if (!chunk.last)
                                           return;
                                         double yes = chunk.rows[tokens_.yes],
                                                no = chunk.rows[tokens_.no];
                                         // softmax over (no, yes), yes's share.
                                         out.scores[chunk.input] =
                                             1.0 / (1.0 + std::exp(no - yes));
                                       })
                            .status());
  return out;
}

} // namespace treni
