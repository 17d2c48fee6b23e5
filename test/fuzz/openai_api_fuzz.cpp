//===- openai_api_fuzz.cpp - libFuzzer target for the OpenAI request layer ===//
//
// Feeds arbitrary bytes as a request body to /v1/chat/completions' and
// /v1/completions' parsers, and prepares whatever parses with the tokenizers
// and chat templates of the Qwen2 and Llama fixtures (no model): the
// template renders the request's messages, tools and chat_template_kwargs,
// a forced tool call opens, the prompt is tokenized. Besides the
// sanitizers, it checks the layer's promises: an error is a 400 or 404 (a
// 500 only from preparing), has a message that carries no library or source
// text, and never comes from the catch-all (an exception that escaped); a
// prepared chat fits the context.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/serve/openai_api.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"

namespace {

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

/// A served fixture: its tokenizer and chat template, loaded once.
struct Fixture {
  std::unique_ptr<treni::Tokenizer> tokenizer;
  std::unique_ptr<treni::ChatTemplate> chatTemplate;
  treni::ServedModel model;
};

Fixture load(const std::string &name) {
  std::string dir = std::string(TRENI_SOURCE_DIR) + "/test/fixtures/" + name;
  Fixture fixture;
  auto tokenizer = treni::Tokenizer::fromFile(dir + "/tokenizer.json");
  auto chatTemplate =
      treni::ChatTemplate::fromTokenizerConfig(dir + "/tokenizer_config.json");
  check(tokenizer.ok() && chatTemplate.ok());
  fixture.tokenizer = std::move(*tokenizer);
  fixture.chatTemplate = std::move(*chatTemplate);
  fixture.model.name = "qwen2";
  fixture.model.tokenizer = fixture.tokenizer.get();
  fixture.model.chatTemplate = fixture.chatTemplate.get();
  fixture.model.toolFormat =
      treni::servedToolCallFormat(fixture.chatTemplate->source());
  fixture.model.maxSeq = 4096;
  return fixture;
}

const Fixture *fixtures() {
  static const Fixture kFixtures[] = {load("qwen2"), load("llama")};
  return kFixtures;
}

/// Messages quote the request (a field name, the token JSON broke at), so
/// internal text counts only where the body does not have it.
void checkError(const treni::ApiError &error, std::string_view body,
                bool preparing) {
  check(error.status == 400 || error.status == 404 ||
        (preparing && error.status == 500));
  check(!error.message.empty());
  check(error.code != treni::kUnexpectedErrorCode);
  for (std::string_view internal :
       {"json.exception", "type_error", "out_of_range", ".cpp", ".hpp"})
    check(error.message.find(internal) == std::string::npos ||
          body.find(internal) != std::string_view::npos);
}

} // namespace

#ifdef TRENI_FUZZ_STUB_CONSTRAINTS
// Until runtime/serve/generation.cpp's constrained-decoding automata live in
// a file of their own (output_constraints.cpp), compiling them means the
// engine: prepareChat only builds them, so trivial ones do here.
namespace treni {
namespace {
struct AnyOutput final : OutputConstraint {
  std::unique_ptr<OutputConstraint> clone() const override {
    return std::make_unique<AnyOutput>();
  }
  bool accept(char) override { return true; }
  bool isComplete() const override { return false; }
  std::string completion() const override { return ""; }
};
} // namespace
std::unique_ptr<OutputConstraint> jsonObjectConstraint(int) {
  return std::make_unique<AnyOutput>();
}
std::unique_ptr<OutputConstraint> literalConstraint(std::string) {
  return std::make_unique<AnyOutput>();
}
std::unique_ptr<OutputConstraint> choiceConstraint(std::vector<std::string>) {
  return std::make_unique<AnyOutput>();
}
std::unique_ptr<OutputConstraint>
sequenceConstraint(std::vector<std::unique_ptr<OutputConstraint>>) {
  return std::make_unique<AnyOutput>();
}
} // namespace treni
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view body(reinterpret_cast<const char *>(data), size);
  treni::ApiLimits limits;
  limits.maxSeq = 4096;
  limits.modelNames = {"qwen2"};

  auto chat = treni::parseChatRequest(body, limits);
  if (auto *error = std::get_if<treni::ApiError>(&chat)) {
    checkError(*error, body, /*preparing=*/false);
  } else {
    for (int i = 0; i < 2; ++i) {
      const Fixture &fixture = fixtures()[i];
      auto prepared =
          treni::prepareChat(std::get<treni::ChatRequest>(chat), fixture.model);
      if (auto *error = std::get_if<treni::ApiError>(&prepared)) {
        checkError(*error, body, /*preparing=*/true);
        continue;
      }
      const auto &generation =
          std::get<treni::PreparedRequest>(prepared).generation;
      check(!generation.promptIds.empty());
      check(int64_t(generation.promptIds.size()) < fixture.model.maxSeq);
      check(generation.maxTokens >= 1);
    }
  }

  auto completion = treni::parseCompletionRequest(body, limits);
  if (auto *error = std::get_if<treni::ApiError>(&completion)) {
    checkError(*error, body, /*preparing=*/false);
  } else {
    auto prepared = treni::prepareCompletion(
        std::get<treni::CompletionRequest>(completion), fixtures()[0].model);
    if (auto *error = std::get_if<treni::ApiError>(&prepared))
      checkError(*error, body, /*preparing=*/true);
  }

  // /v1/embeddings: what parses has 1..kMaxEmbeddingInputs non-empty inputs
  // of one kind, and its response builds (base64 or floats).
  auto embeddings = treni::parseEmbeddingsRequest(body, limits);
  if (auto *error = std::get_if<treni::ApiError>(&embeddings)) {
    checkError(*error, body, /*preparing=*/false);
  } else {
    const auto &request = std::get<treni::EmbeddingsRequest>(embeddings);
    size_t inputs = request.texts.size() + request.tokenInputs.size();
    check(inputs >= 1 && int64_t(inputs) <= treni::kMaxEmbeddingInputs);
    check(request.texts.empty() || request.tokenInputs.empty());
    for (const std::string &text : request.texts)
      check(!text.empty());
    for (const auto &ids : request.tokenInputs) {
      check(!ids.empty());
      for (int32_t id : ids)
        check(id >= 0);
    }
    check(request.dimensions >= 0);
    std::vector<std::vector<float>> vectors(inputs, {0.5f, -1.0f});
    auto response = treni::buildEmbeddingsResponse(request.model, vectors,
                                                   request.base64, 3);
    check(response["data"].size() == inputs);
  }

  // /v1/rerank: a non-empty query, 1..kMaxRerankDocuments documents, top_n
  // within them; the response keeps top_n results, best first.
  auto rerank = treni::parseRerankRequest(body, limits);
  if (auto *error = std::get_if<treni::ApiError>(&rerank)) {
    checkError(*error, body, /*preparing=*/false);
  } else {
    const auto &request = std::get<treni::RerankRequest>(rerank);
    check(!request.query.empty());
    check(!request.documents.empty() &&
          int64_t(request.documents.size()) <= treni::kMaxRerankDocuments);
    check(request.topN >= 0 && request.topN <= treni::kMaxRerankDocuments);
    std::vector<double> scores;
    for (size_t i = 0; i < request.documents.size(); ++i)
      scores.push_back(double((i * 7) % 5) / 5);
    auto response = treni::buildRerankResponse(request, scores, 1);
    size_t expected = request.topN > 0 ? std::min(request.documents.size(),
                                                  size_t(request.topN))
                                       : request.documents.size();
    check(response["results"].size() == expected);
    for (size_t i = 1; i < expected; ++i)
      check(response["results"][i - 1]["relevance_score"].get<double>() >=
            response["results"][i]["relevance_score"].get<double>());
  }
  return 0;
}
