//===- rag_workflow_test.cpp - docs/examples/rag.agent in-process ---------===//
//
// Tests the retrieval tools as `treni serve` wires them (issue 17): a tools
// configuration's "rag" section, its models resolved to an Embedder and a
// Reranker over the CPU fixtures (ragModels), and the documented workflow
// (ingest -> search -> rerank -> answer) run by the agent executor on the
// chat fixture. Random weights: the checks are the numbers the models give,
// never wording. Each search score must be the cosine of the Embedder's own
// query and passage vectors, each rerank score the Reranker's own score of
// that passage, the results best first, and the answer's prompt must carry
// the cited ids. Configuration errors name what is wrong.
//
//===----------------------------------------------------------------------===//

#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/agent/agent_compiler.h"
#include "runtime/agent/agent_executor.h"
#include "runtime/agent/agent_tool_config.h"
#include "runtime/agent/rag_models.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/serve/generation.h"
#include "runtime/text/chat_template.h"
#include "runtime/tools/tool_registry.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using json = nlohmann::json;
using testing::HasSubstr;
using testing_util::fixtureDir;

class RagWorkflowTest : public ::testing::Test {
protected:
  void SetUp() override {
    for (auto *engine : {&chatEngine_, &embedEngine_, &rerankEngine_}) {
      EngineOptions options;
      options.maxSeq = engine == &chatEngine_ ? 2048 : 512; // the prompt
      auto loaded = loadEngine(
          fixtureDir(engine == &chatEngine_ ? "qwen2" : "qwen3"), options);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      *engine = std::move(*loaded);
    }
    for (auto *tokenizer : {&chatTokenizer_, &tokenizer_}) {
      auto loaded = Tokenizer::fromFile(
          fixtureDir(tokenizer == &chatTokenizer_ ? "qwen2" : "qwen3") +
          "/tokenizer.json");
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      *tokenizer = std::move(*loaded);
    }
    auto chat = ChatTemplate::fromTokenizerConfig(fixtureDir("qwen2") +
                                                  "/tokenizer_config.json");
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_ = std::move(*chat);
    generator_ = std::make_unique<Generator>(*chatEngine_, *chatTokenizer_,
                                             GeneratorOptions{2048, {}});
    auto embedRunner = embedEngine_->createStepRunner(32, 128);
    ASSERT_TRUE(embedRunner.ok()) << embedRunner.status();
    embedRunner_ = std::move(*embedRunner);
    embedder_ =
        std::make_unique<Embedder>(*embedRunner_, Pooling::LastToken, 128);
    auto rerankRunner = rerankEngine_->createStepRunner(32, 128);
    ASSERT_TRUE(rerankRunner.ok()) << rerankRunner.status();
    rerankRunner_ = std::move(*rerankRunner);
    // The fixture's vocabulary has no "yes"/"no": two ids stand in.
    reranker_ = std::make_unique<Reranker>(*rerankRunner_, *tokenizer_,
                                           RerankTokens{17, 42}, 128);
  }

  /// Resolves the names "emb" and "rr" to the fixtures' models.
  RagModelResolver resolver() {
    return [this](const RagModelRequest &request) -> absl::StatusOr<RagModels> {
      if (request.embeddingModel != "emb")
        return absl::InvalidArgumentError("no embedding model " +
                                          request.embeddingModel);
      return ragModels("emb", *embedder_, *tokenizer_,
                       request.reranker == "rr" ? reranker_.get() : nullptr,
                       request.queryPrefix);
    };
  }

  /// The Embedder's vector of `text` (with `prefix`), as the tools make it.
  std::vector<float> embed(const std::string &text) {
    auto vectors = embedder_->embed({tokenizer_->encode(text)});
    EXPECT_TRUE(vectors.ok()) << vectors.status();
    return vectors.ok() ? (*vectors)[0] : std::vector<float>();
  }

  std::unique_ptr<Engine> chatEngine_, embedEngine_, rerankEngine_;
  std::unique_ptr<Tokenizer> chatTokenizer_, tokenizer_;
  std::unique_ptr<ChatTemplate> chat_;
  std::unique_ptr<Generator> generator_;
  std::unique_ptr<StepRunner> embedRunner_, rerankRunner_;
  std::unique_ptr<Embedder> embedder_;
  std::unique_ptr<Reranker> reranker_;
};

TEST_F(RagWorkflowTest, DocumentedWorkflowIngestsSearchesRerankesAndCites) {
  ToolRegistry registry;
  const std::string prefix = "Query: ";
  ASSERT_TRUE(configureAgentTools(registry,
                                  {{"rag",
                                    {{"embedding_model", "emb"},
                                     {"reranker", "rr"},
                                     {"query_prefix", prefix},
                                     {"rerank_candidates", 5}}}},
                                  "", resolver())
                  .ok());
  std::ifstream file(std::string(TRENI_SOURCE_DIR) +
                     "/docs/examples/rag.agent");
  ASSERT_TRUE(file) << "docs/examples/rag.agent";
  std::stringstream source;
  source << file.rdbuf();
  mlir::MLIRContext context;
  auto module = compileAgentSource(source.str(), "rag.agent", context,
                                   {.tools = registry.signatures()});
  ASSERT_TRUE(module.ok()) << module.status();
  AgentExecutor executor(registry, {});
  executor.addModel({"qwen2", generator_.get(), chat_.get()});
  const std::vector<std::string> documents = {
      "Cats purr when they are content.", "Dogs bark at strangers at night.",
      "GPUs multiply matrices quickly.", "Tea is brewed from leaves."};
  json sources = json::array();
  for (size_t i = 0; i < documents.size(); ++i)
    sources.push_back({{"source", "doc" + std::to_string(i)}});
  const std::string question = "Why do cats purr?";
  auto result = executor.run(
      **module, "answer",
      {{"question", question}, {"documents", documents}, {"sources", sources}});
  ASSERT_TRUE(result.ok()) << result.status();

  json stored, hits, prompt;
  for (const json &event : result->trace) {
    if (event["event"] != "step")
      continue;
    if (event["step"] == "stored")
      stored = event["outputs"];
    if (event["step"] == "hits")
      hits = event["outputs"];
    if (event["step"] == "reply")
      prompt = event["inputs"];
  }
  ASSERT_TRUE(stored["ok"].get<bool>()) << stored.dump();
  EXPECT_EQ(stored["output"]["documents"], 4);
  EXPECT_EQ(stored["output"]["chunks"], 4);
  ASSERT_TRUE(hits["ok"].get<bool>()) << hits.dump();
  const json &results = hits["output"]["results"];
  ASSERT_EQ(results.size(), 4u); // k 4 of 4 chunks
  EXPECT_EQ(hits["output"]["method"], "exact");
  std::vector<float> query = embed(prefix + question);
  double previous = 2;
  for (const json &hit : results) {
    const std::string text = hit["text"];
    size_t document = hit["document"];
    ASSERT_LT(document, documents.size());
    EXPECT_EQ(text, documents[document]);
    EXPECT_EQ(hit["metadata"]["source"], "doc" + std::to_string(document));
    // The search score: the cosine of the Embedder's own vectors.
    std::vector<float> passage = embed(text);
    double dot = 0;
    for (size_t i = 0; i < query.size(); ++i)
      dot += double(query[i]) * passage[i];
    EXPECT_NEAR(hit["score"].get<double>(), dot, 1e-4) << text;
    // The rerank score: the Reranker's own, best first.
    auto own = reranker_->score(question, {text});
    ASSERT_TRUE(own.ok()) << own.status();
    EXPECT_NEAR(hit["rerank_score"].get<double>(), own->scores[0], 1e-5);
    EXPECT_LE(hit["rerank_score"].get<double>(), previous);
    previous = hit["rerank_score"].get<double>();
    // The answer's prompt quotes the passage with its id.
    const std::string shown = prompt["prompt"].get<std::string>();
    EXPECT_THAT(shown, HasSubstr("\"id\":" + hit["id"].dump()));
    EXPECT_THAT(shown, HasSubstr("\"text\":" + json(text).dump()));
  }
  EXPECT_EQ(result->value.is_string(), true);
}

// A chunk longer than the embedding model takes keeps its first tokens and
// its last (the tokenizer's closing token, which last-token pooling reads).
TEST_F(RagWorkflowTest, LongChunksKeepTheirFirstTokensAndTheLast) {
  ToolRegistry registry;
  ASSERT_TRUE(
      configureAgentTools(
          registry,
          {{"rag", {{"embedding_model", "emb"}, {"chunk_chars", 8192}}}}, "",
          resolver())
          .ok());
  std::string text;
  for (int i = 0; text.size() < 6000; ++i)
    text += "word" + std::to_string(i) + " ";
  ToolResult stored = registry.call(
      "rag.ingest", {{"collection", "long"}, {"texts", {text}}}, {});
  ASSERT_TRUE(stored.ok) << stored.error.message;
  EXPECT_EQ(stored.value["chunks"], 1);
  ToolResult hits = registry.call(
      "rag.search", {{"collection", "long"}, {"query", "what words?"}}, {});
  ASSERT_TRUE(hits.ok) << hits.error.message;
  ASSERT_EQ(hits.value["results"].size(), 1u);
  const json &hit = hits.value["results"][0];

  // The chunk (the text, trimmed) as the tools must have embedded it.
  std::vector<int32_t> ids = tokenizer_->encode(hit["text"].get<std::string>());
  const size_t longest = size_t(embedder_->maxInputTokens());
  ASSERT_GT(ids.size(), longest);
  std::vector<int32_t> kept(ids.begin(), ids.begin() + int64_t(longest) - 1);
  kept.push_back(ids.back());
  auto expected = embedder_->embed({kept});
  ASSERT_TRUE(expected.ok()) << expected.status();
  std::vector<float> query = embed("what words?");
  double dot = 0;
  for (size_t i = 0; i < query.size(); ++i)
    dot += double(query[i]) * (*expected)[0][i];
  EXPECT_NEAR(hit["score"].get<double>(), dot, 1e-4);
}

TEST_F(RagWorkflowTest, ConfigurationErrorsNameTheProblem) {
  auto error = [&](const json &config, const RagModelResolver &resolve) {
    ToolRegistry registry;
    absl::Status status = configureAgentTools(registry, config, "", resolve);
    EXPECT_FALSE(status.ok());
    EXPECT_FALSE(registry.contains("rag.search"));
    return std::string(status.message());
  };
  EXPECT_THAT(error({{"rag", {{"embedding_model", "emb"}}}}, nullptr),
              HasSubstr("need an embedding model in the same process"));
  EXPECT_THAT(error({{"rag", json::object()}}, resolver()),
              HasSubstr("rag.embedding_model"));
  EXPECT_THAT(
      error({{"rag", {{"embedding_model", "emb"}, {"k", 3}}}}, resolver()),
      HasSubstr("rag: unknown key 'k'"));
  EXPECT_THAT(error({{"rag", {{"embedding_model", "other"}}}}, resolver()),
              HasSubstr("no embedding model other"));
  EXPECT_THAT(
      error({{"rag", {{"embedding_model", "emb"}, {"chunk_chars", "many"}}}},
            resolver()),
      HasSubstr("tools configuration"));
  EXPECT_THAT(error({{"rag", {{"embedding_model", "emb"}, {"chunk_chars", 4}}}},
                    resolver()),
              HasSubstr("chunk"));
  ToolRegistry registry;
  ASSERT_TRUE(configureAgentTools(registry,
                                  {{"rag", {{"embedding_model", "emb"}}}}, "",
                                  resolver())
                  .ok());
  EXPECT_TRUE(registry.contains("rag.ingest"));
  EXPECT_TRUE(registry.contains("rag.search"));
}

} // namespace
} // namespace treni
