//===- rag_models.cpp - served models as rag.* tools' models --------------===//

#include "runtime/agent/rag_models.h"

#include <algorithm>
#include <vector>

namespace treni {

RagModels ragModels(const std::string &embeddingModel, Embedder &embedder,
                    const Tokenizer &tokenizer, Reranker *reranker,
                    std::string queryPrefix) {
  RagModels models;
  models.embeddingModel = embeddingModel;
  models.embed = [&embedder, &tokenizer, prefix = std::move(queryPrefix)](
                     absl::Span<const std::string> texts, bool isQuery,
                     const ToolContext &context)
      -> absl::StatusOr<std::vector<std::vector<float>>> {
    if (context.shouldStop())
      return absl::DeadlineExceededError("the tool call was stopped");
    const size_t longest =
        size_t(std::max<int64_t>(embedder.maxInputTokens(), 1));
    std::vector<std::vector<int32_t>> inputs;
    inputs.reserve(texts.size());
    for (const std::string &text : texts) {
      std::vector<int32_t> ids =
          tokenizer.encode(isQuery ? prefix + text : text);
      // Too long: the text's first tokens and the post-processor's last
      // (the EOS that last-token pooling reads), as sentence-transformers
      // truncates before adding special tokens.
      if (ids.size() > longest)
        ids.erase(ids.begin() + int64_t(longest) - 1, ids.end() - 1);
      if (ids.empty())
        return absl::InvalidArgumentError(
            "a text encodes to no tokens, so it has no embedding");
      inputs.push_back(std::move(ids));
    }
    return embedder.embed(inputs, 0, nullptr, context.deadline);
  };
  if (reranker)
    models.rerank =
        [reranker](
            const std::string &query, absl::Span<const std::string> documents,
            const ToolContext &context) -> absl::StatusOr<std::vector<float>> {
      if (context.shouldStop())
        return absl::DeadlineExceededError("the tool call was stopped");
      auto scores = reranker->score(query, documents, kDefaultRerankInstruction,
                                    nullptr, context.deadline);
      if (!scores.ok())
        return scores.status();
      return std::vector<float>(scores->scores.begin(), scores->scores.end());
    };
  return models;
}

} // namespace treni
