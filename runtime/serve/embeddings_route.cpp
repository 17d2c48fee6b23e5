//===- embeddings_route.cpp - POST /v1/embeddings -------------------------===//

#include "runtime/serve/embeddings_route.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "support/json.h"

namespace treni {
namespace {

/// The answer to a failed embedding or rerank: the caller's input error as a
/// 400 naming `param`, 504 past the deadline, 499 when cancelled, else a
/// 500 whose text (CUDA, file paths) goes to the log only.
ApiError failure(const absl::Status &status, const char *param,
                 const char *what) {
  if (absl::IsInvalidArgument(status))
    return invalidRequest(std::string(status.message()), param);
  ApiError error;
  if (absl::IsDeadlineExceeded(status)) {
    error.status = 504;
    error.message = "the request ran past --request-timeout";
    error.type = "timeout_error";
    return error;
  }
  if (absl::IsCancelled(status)) {
    error.status = 499;
    error.message = "the request was cancelled";
    return error;
  }
  std::fprintf(stderr, "treni serve: internal error in %s: %s\n", what,
               std::string(status.message()).c_str());
  error.status = 500;
  error.message = absl::StrCat(what, " failed (see the server's log)");
  error.type = "server_error";
  error.code = "engine_error";
  return error;
}

} // namespace

HttpServer::JsonWork rerankWork(Reranker &reranker, ApiLimits limits) {
  return [&reranker, limits = std::move(limits)](
             const std::string &body, const std::atomic<bool> &cancel,
             std::chrono::steady_clock::time_point deadline)
             -> ApiResult<std::string> {
    ApiResult<RerankRequest> parsed = parseRerankRequest(body, limits);
    if (auto *error = std::get_if<ApiError>(&parsed))
      return *error;
    const RerankRequest &request = std::get<RerankRequest>(parsed);
    auto scores = reranker.score(request.query, request.documents,
                                 request.instruction.empty()
                                     ? std::string(kDefaultRerankInstruction)
                                     : request.instruction,
                                 &cancel, deadline);
    if (!scores.ok())
      return failure(scores.status(), "documents", "rerank");
    return dumpJson(
        buildRerankResponse(request, scores->scores, scores->tokens));
  };
}

HttpServer::JsonWork embeddingsWork(Embedder &embedder,
                                    const Tokenizer &tokenizer,
                                    ApiLimits limits, int64_t vocabSize) {
  return [&embedder, &tokenizer, limits = std::move(limits),
          vocabSize](const std::string &body, const std::atomic<bool> &cancel,
                     std::chrono::steady_clock::time_point deadline)
             -> ApiResult<std::string> {
    ApiResult<EmbeddingsRequest> parsed = parseEmbeddingsRequest(body, limits);
    if (auto *error = std::get_if<ApiError>(&parsed))
      return *error;
    EmbeddingsRequest &request = std::get<EmbeddingsRequest>(parsed);
    std::vector<std::vector<int32_t>> inputs = std::move(request.tokenInputs);
    for (const std::string &text : request.texts)
      inputs.push_back(tokenizer.encode(text));
    const int64_t longest = embedder.maxInputTokens();
    int64_t tokens = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].empty())
        return invalidRequest(
            absl::StrCat("input ", i, " encodes to no tokens"), "input");
      if (int64_t(inputs[i].size()) > longest)
        return invalidRequest(
            absl::StrCat("input ", i, " has ", inputs[i].size(),
                         " tokens; this server embeds at most ", longest),
            "input", "context_length_exceeded");
      for (int32_t id : inputs[i])
        if (id >= vocabSize)
          return invalidRequest(absl::StrCat("input ", i, ": token id ", id,
                                             " is outside the vocabulary of ",
                                             vocabSize),
                                "input");
      tokens += int64_t(inputs[i].size());
    }
    if (request.dimensions > embedder.hiddenSize())
      return invalidRequest(
          absl::StrCat("'dimensions' must be at most ", embedder.hiddenSize(),
                       " (the model's), not ", request.dimensions),
          "dimensions");
    auto vectors =
        embedder.embed(inputs, request.dimensions, &cancel, deadline);
    if (!vectors.ok())
      return failure(vectors.status(), "input", "embeddings");
    return dumpJson(buildEmbeddingsResponse(request.model, *vectors,
                                            request.base64, tokens));
  };
}

} // namespace treni
