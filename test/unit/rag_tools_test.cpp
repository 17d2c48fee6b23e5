//===- rag_tools_test.cpp - rag.ingest and rag.search ---------------------===//
//
// Tests the tools through a ToolRegistry, as the executor calls them, with
// a deterministic fake embedder (hashed bag of words, 64 dimensions) and a
// fake reranker: the right document comes first with its metadata,
// collections survive a restart, the model of a collection is kept,
// rerank reorders, every bound is an invalid_arguments error, a wrong
// embedder is an internal error, and a cancelled or timed-out ingest stops
// between embedding batches without storing anything.
//
//===----------------------------------------------------------------------===//

#include "runtime/tools/rag_tools.h"

#include <atomic>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <thread>
#include <unistd.h>

#include "runtime/tools/rag_store.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr size_t kDimension = 64;

/// Lower-cased words hashed into kDimension buckets, L2-normalised (a text
/// without words gets the first axis).
std::vector<float> bagOfWords(std::string_view text) {
  std::vector<float> vector(kDimension, 0.0f);
  std::string word;
  auto flush = [&] {
    if (word.empty())
      return;
    uint32_t hash = 2166136261u; // FNV-1a
    for (char c : word)
      hash = (hash ^ uint8_t(c)) * 16777619u;
    vector[hash % kDimension] += 1;
    word.clear();
  };
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      word += char(std::tolower(static_cast<unsigned char>(c)));
    else
      flush();
  }
  flush();
  double sum = 0;
  for (float value : vector)
    sum += value * value;
  if (sum == 0)
    vector[0] = 1;
  else
    for (float &value : vector)
      value = float(value / std::sqrt(sum));
  return vector;
}

/// The fake models, counting their calls.
struct FakeModels {
  std::atomic<int> embedCalls{0};
  std::atomic<int> queryCalls{0};
  /// Runs in every embed call before it answers (with the call's number).
  std::function<void(int call, const ToolContext &)> onEmbed;

  RagModels models(bool withReranker = true, std::string name = "fake-bow") {
    RagModels models;
    models.embeddingModel = std::move(name);
    models.embed = [this](absl::Span<const std::string> texts, bool isQuery,
                          const ToolContext &context)
        -> absl::StatusOr<std::vector<std::vector<float>>> {
      int call = ++embedCalls;
      if (isQuery)
        ++queryCalls;
      if (onEmbed)
        onEmbed(call, context);
      std::vector<std::vector<float>> vectors;
      for (const std::string &text : texts)
        vectors.push_back(bagOfWords(text));
      return vectors;
    };
    if (withReranker)
      // Prefers documents that mention "zebra", then shorter ones.
      models.rerank =
          [](const std::string &, absl::Span<const std::string> documents,
             const ToolContext &) -> absl::StatusOr<std::vector<float>> {
        std::vector<float> scores;
        for (const std::string &document : documents)
          scores.push_back(
              (document.find("zebra") != std::string::npos ? 1000.0f : 0.0f) -
              float(document.size()));
        return scores;
      };
    return models;
  }
};

json callOk(ToolRegistry &registry, const std::string &tool, const json &args,
            CallOptions options = {}) {
  ToolResult result = registry.call(tool, args, options);
  EXPECT_TRUE(result.ok) << tool << " " << args.dump().substr(0, 200) << ": "
                         << result.error.type << ": " << result.error.message;
  return result.value;
}

void expectFailure(ToolRegistry &registry, const std::string &tool,
                   const json &args, const std::string &type,
                   const std::string &expected) {
  ToolResult result = registry.call(tool, args);
  std::string shown = args.dump().substr(0, 200);
  EXPECT_FALSE(result.ok) << tool << " " << shown;
  EXPECT_EQ(result.error.type, type)
      << tool << " " << shown << ": " << result.error.message;
  EXPECT_THAT(result.error.message, HasSubstr(expected))
      << tool << " " << shown;
}

const json kDocuments = {
    "Cats are small domestic felines. A cat purrs, naps in the sun and "
    "chases mice; kittens play with yarn.",
    "Rockets reach orbit by burning fuel in stages. The rocket engine "
    "throttles during launch, and orbit needs about eight kilometres per "
    "second.",
    "To cook pasta, boil salted water, add the pasta and stir. Drain the "
    "pasta when al dente and toss it with the tomato sauce.",
    "The stock market rose today as shares of banks gained; investors "
    "bought stocks and bonds while the index climbed."};
const json kMetadata = json::array({{{"topic", "cats"}, {"n", 0}},
                                    {{"topic", "rockets"}, {"n", 1}},
                                    {{"topic", "pasta"}, {"n", 2}},
                                    {{"topic", "stocks"}, {"n", 3}}});

class RagToolsTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(registerRagTools(registry, config, fakes.models()).ok());
  }
  void ingestTopics() {
    json ingested = callOk(registry, "rag.ingest",
                           {{"collection", "topics"},
                            {"texts", kDocuments},
                            {"metadata", kMetadata}});
    ASSERT_EQ(ingested["documents"], 4);
  }

  RagToolConfig config;
  FakeModels fakes;
  ToolRegistry registry;
};

TEST_F(RagToolsTest, FindsTheRightDocumentWithItsMetadata) {
  json ingested = callOk(registry, "rag.ingest",
                         {{"collection", "topics"},
                          {"texts", kDocuments},
                          {"metadata", kMetadata}});
  EXPECT_EQ(ingested["collection"], "topics");
  EXPECT_EQ(ingested["documents"], 4);
  EXPECT_EQ(ingested["chunks"], 4); // each text fits one chunk
  EXPECT_EQ(ingested["first_document"], 0);
  ASSERT_EQ(ingested["ids"].size(), 4u);

  struct Case {
    std::string query;
    std::string topic;
    int document;
  };
  for (const Case &c : {Case{"how do rockets reach orbit", "rockets", 1},
                        Case{"my cat purrs and chases mice", "cats", 0},
                        Case{"boil the pasta in salted water", "pasta", 2},
                        Case{"shares and stocks on the market", "stocks", 3}}) {
    json found = callOk(registry, "rag.search",
                        {{"collection", "topics"}, {"query", c.query}});
    EXPECT_EQ(found["collection"], "topics");
    EXPECT_EQ(found["method"], "exact");
    EXPECT_EQ(found["searched"], 4);
    ASSERT_EQ(found["results"].size(), 4u) << c.query; // k = 5 > 4
    const json &top = found["results"][0];
    EXPECT_EQ(top["document"], c.document) << c.query;
    EXPECT_EQ(top["chunk"], 0);
    EXPECT_EQ(top["metadata"], kMetadata[c.document]) << c.query;
    EXPECT_EQ(top["text"], kDocuments[c.document]);
    EXPECT_EQ(top["id"], ingested["ids"][c.document]);
    EXPECT_FALSE(top.contains("rerank_score"));
    for (size_t i = 1; i < found["results"].size(); ++i)
      EXPECT_LE(found["results"][i]["score"].get<double>(),
                found["results"][i - 1]["score"].get<double>());
  }
  EXPECT_EQ(fakes.queryCalls.load(), 4);

  json one = callOk(registry, "rag.search",
                    {{"collection", "topics"}, {"query", "rocket"}, {"k", 1}});
  EXPECT_EQ(one["results"].size(), 1u);
}

TEST_F(RagToolsTest, ChunksLongTextsAndSharesOneMetadataObject) {
  std::string longText;
  for (int i = 0; i < 200; ++i)
    longText += "Sentence number " + std::to_string(i) +
                " talks about gardening and tomatoes. ";
  json ingested = callOk(registry, "rag.ingest",
                         {{"collection", "garden"},
                          {"texts", {longText, "   ", "zebra stripes"}},
                          {"metadata", {{"source", "almanac"}}}});
  int64_t chunks = ingested["chunks"].get<int64_t>();
  EXPECT_GT(chunks, int64_t(longText.size() / config.chunkChars));
  EXPECT_EQ(ingested["documents"], 3);
  // Embedded in batches of embedBatch.
  EXPECT_EQ(fakes.embedCalls.load(),
            int((chunks + config.embedBatch - 1) / config.embedBatch));

  json found =
      callOk(registry, "rag.search",
             {{"collection", "garden"}, {"query", "zebra"}, {"k", 100}});
  ASSERT_EQ(found["results"].size(), size_t(chunks));
  EXPECT_EQ(found["results"][0]["text"], "zebra stripes");
  EXPECT_EQ(found["results"][0]["document"], 2); // the blank one took 1
  for (const json &result : found["results"]) {
    EXPECT_EQ(result["metadata"], (json{{"source", "almanac"}}));
    EXPECT_LE(result["text"].get<std::string>().size(), config.chunkChars);
  }

  // Absent metadata is {}; documents number on.
  json more = callOk(registry, "rag.ingest",
                     {{"collection", "garden"}, {"texts", {"zebra walk"}}});
  EXPECT_EQ(more["first_document"], 3);
  found = callOk(registry, "rag.search",
                 {{"collection", "garden"}, {"query", "walk"}});
  EXPECT_EQ(found["results"][0]["metadata"], json::object());
  EXPECT_EQ(found["results"][0]["document"], 3);
}

TEST_F(RagToolsTest, RerankReordersByTheRerankerAndFillsItsScore) {
  ingestTopics();
  callOk(registry, "rag.ingest",
         {{"collection", "topics"},
          {"texts",
           {"A zebra rocket, very long text about zebras and the "
            "savanna where they graze all day long."}}});
  json plain = callOk(registry, "rag.search",
                      {{"collection", "topics"},
                       {"query", "rockets orbit launch fuel"},
                       {"k", 3}});
  ASSERT_EQ(plain["results"].size(), 3u);
  EXPECT_EQ(plain["results"][0]["document"], 1);

  json reranked = callOk(registry, "rag.search",
                         {{"collection", "topics"},
                          {"query", "rockets orbit launch fuel"},
                          {"k", 3},
                          {"rerank", true}});
  const json &results = reranked["results"];
  ASSERT_EQ(results.size(), 3u);
  // The zebra document first, then by length: all five were candidates.
  EXPECT_EQ(results[0]["document"], 4);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].contains("rerank_score"));
    if (i > 0) {
      EXPECT_LE(results[i]["rerank_score"].get<double>(),
                results[i - 1]["rerank_score"].get<double>());
    }
  }
  EXPECT_GT(results[1]["text"].get<std::string>().size(), 0u);
  EXPECT_LE(results[1]["text"].get<std::string>().size(),
            results[2]["text"].get<std::string>().size());
  EXPECT_NEAR(results[1]["rerank_score"].get<double>(),
              -double(results[1]["text"].get<std::string>().size()), 1e-3);
}

TEST_F(RagToolsTest, UnknownCollectionAndMissingRerankerAreClearErrors) {
  expectFailure(registry, "rag.search",
                {{"collection", "nowhere"}, {"query", "x"}}, "not_found",
                "no collection named 'nowhere'");

  ToolRegistry plain;
  FakeModels fakes2;
  ASSERT_TRUE(registerRagTools(plain, {}, fakes2.models(false)).ok());
  callOk(plain, "rag.ingest", {{"collection", "c"}, {"texts", {"hello"}}});
  expectFailure(plain, "rag.search",
                {{"collection", "c"}, {"query", "hello"}, {"rerank", true}},
                "invalid_arguments", "no reranker model is loaded");
  callOk(plain, "rag.search", {{"collection", "c"}, {"query", "hello"}});
}

TEST_F(RagToolsTest, BoundsAreInvalidArguments) {
  ingestTopics();
  for (const std::string &name :
       std::vector<std::string>{"", "a b", "../x", "x/y", std::string(65, 'n')})
    expectFailure(registry, "rag.ingest",
                  {{"collection", name}, {"texts", {"x"}}}, "invalid_arguments",
                  "collection name");
  expectFailure(registry, "rag.search",
                {{"collection", "no way"}, {"query", "x"}}, "invalid_arguments",
                "collection name");

  expectFailure(registry, "rag.ingest",
                {{"collection", "c"}, {"texts", "not an array"}},
                "invalid_arguments", "non-empty array");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"}, {"texts", json::array()}},
                "invalid_arguments", "non-empty array");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"}, {"texts", {"ok", 3}}},
                "invalid_arguments", "texts[1] must be a string");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"},
                 {"texts", json(std::vector<std::string>(1025, "x"))}},
                "invalid_arguments", "1025 texts; at most 1024");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"},
                 {"texts", {std::string(kRagMaxTextBytes + 1, 'x')}}},
                "invalid_arguments", "texts[0] is 1048577 bytes");
  expectFailure(
      registry, "rag.ingest",
      {{"collection", "c"},
       {"texts", json(std::vector<std::string>(9, std::string(1 << 20, 'x')))}},
      "invalid_arguments", "at most 8388608 in one call");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"},
                 {"texts", {"x"}},
                 {"metadata", {{"big", std::string(70 << 10, 'm')}}}},
                "invalid_arguments", "metadata is");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"}, {"texts", {"x"}}, {"metadata", 3}},
                "invalid_arguments", "metadata must be an object");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"},
                 {"texts", {"x", "y"}},
                 {"metadata", {json::object()}}},
                "invalid_arguments", "metadata has 1 entries for 2 texts");
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"},
                 {"texts", {"x", "y"}},
                 {"metadata", {json::object(), "no"}}},
                "invalid_arguments", "metadata[1] must be an object");

  for (int k : {0, -3, 101})
    expectFailure(registry, "rag.search",
                  {{"collection", "topics"}, {"query", "cats"}, {"k", k}},
                  "invalid_arguments", "k must be 1 to 100");
  expectFailure(registry, "rag.search",
                {{"collection", "topics"}, {"query", "  "}},
                "invalid_arguments", "the query is empty");
  expectFailure(registry, "rag.search", {{"collection", "topics"}, {"k", 2}},
                "invalid_arguments", "query");
  // Nothing of the refused ingests was stored.
  json found = callOk(registry, "rag.search",
                      {{"collection", "topics"}, {"query", "x"}, {"k", 100}});
  EXPECT_EQ(found["searched"], 4);
  expectFailure(registry, "rag.search", {{"collection", "c"}, {"query", "x"}},
                "not_found", "'c'");
}

TEST(RagToolsConfigTest, RefusesBadConfigs) {
  FakeModels fakes;
  ToolRegistry registry;
  RagModels noEmbed = fakes.models();
  noEmbed.embed = nullptr;
  EXPECT_EQ(registerRagTools(registry, {}, noEmbed).code(),
            absl::StatusCode::kInvalidArgument);
  RagToolConfig config;
  config.overlapChars = config.chunkChars;
  EXPECT_EQ(registerRagTools(registry, config, fakes.models()).code(),
            absl::StatusCode::kInvalidArgument);
  config = {};
  config.rerankCandidates = 101;
  EXPECT_EQ(registerRagTools(registry, config, fakes.models()).code(),
            absl::StatusCode::kInvalidArgument);
  config = {};
  config.embedBatch = 0;
  EXPECT_EQ(registerRagTools(registry, config, fakes.models()).code(),
            absl::StatusCode::kInvalidArgument);
  config = {};
  config.path = "/nonexistent-dir/x/rag.db";
  absl::Status status = registerRagTools(registry, config, fakes.models());
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("/nonexistent-dir/x/rag.db"));
  EXPECT_FALSE(registry.contains("rag.ingest"));

  std::vector<ToolSignature> signatures = ragToolSignatures();
  ASSERT_EQ(signatures.size(), 2u);
  EXPECT_EQ(signatures[0].name, "rag.ingest");
  EXPECT_FALSE(signatures[0].readOnly);
  EXPECT_EQ(signatures[1].name, "rag.search");
  EXPECT_TRUE(signatures[1].readOnly);
  for (const ToolSignature &signature : signatures)
    EXPECT_TRUE(validateSignature(signature).ok()) << signature.name;
}

TEST(RagToolsPersistenceTest, CollectionsSurviveARestartAndKeepTheirModel) {
  testing_util::TempDir file;
  RagToolConfig config;
  config.path = (file / "rag.db");
  FakeModels fakes;
  {
    ToolRegistry registry;
    ASSERT_TRUE(registerRagTools(registry, config, fakes.models()).ok());
    callOk(registry, "rag.ingest",
           {{"collection", "topics"},
            {"texts", kDocuments},
            {"metadata", kMetadata}});
  }
  {
    ToolRegistry registry;
    ASSERT_TRUE(registerRagTools(registry, config, fakes.models()).ok());
    json found = callOk(registry, "rag.search",
                        {{"collection", "topics"}, {"query", "pasta sauce"}});
    EXPECT_EQ(found["results"][0]["metadata"], kMetadata[2]);
  }
  // Another embedding model may neither add to nor search the collection.
  ToolRegistry registry;
  ASSERT_TRUE(
      registerRagTools(registry, config, fakes.models(true, "other-model"))
          .ok());
  int callsBefore = fakes.embedCalls.load();
  expectFailure(registry, "rag.ingest",
                {{"collection", "topics"}, {"texts", {"more"}}},
                "invalid_arguments",
                "was embedded with model 'fake-bow'; the loaded embedding "
                "model is 'other-model'");
  expectFailure(registry, "rag.search",
                {{"collection", "topics"}, {"query", "pasta"}},
                "invalid_arguments", "'other-model'");
  EXPECT_EQ(fakes.embedCalls.load(), callsBefore); // refused before embedding
  // A new collection is its own.
  callOk(registry, "rag.ingest", {{"collection", "fresh"}, {"texts", {"x"}}});
}

TEST(RagToolsEmbedderTest, WrongCountOrDimensionIsAnInternalError) {
  struct Case {
    std::string name;
    std::function<std::vector<std::vector<float>>(size_t count)> answer;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"too few",
       [](size_t count) {
         return std::vector<std::vector<float>>(count - 1,
                                                std::vector<float>(8, 1.0f));
       },
       "returned 1 vectors for 2 texts"},
      {"ragged",
       [](size_t count) {
         std::vector<std::vector<float>> vectors(count,
                                                 std::vector<float>(8, 1.0f));
         vectors.back().resize(9, 1.0f);
         return vectors;
       },
       "returned a 9-dimensional vector; expected 8"},
      {"nan",
       [](size_t count) {
         return std::vector<std::vector<float>>(
             count, std::vector<float>(8, std::nanf("")));
       },
       "zero or not finite"},
  };
  for (const Case &c : cases) {
    ToolRegistry registry;
    RagModels models;
    models.embeddingModel = "broken";
    models.embed = [&c](absl::Span<const std::string> texts, bool,
                        const ToolContext &)
        -> absl::StatusOr<std::vector<std::vector<float>>> {
      return c.answer(texts.size());
    };
    ASSERT_TRUE(registerRagTools(registry, {}, models).ok());
    expectFailure(registry, "rag.ingest",
                  {{"collection", "c"}, {"texts", {"one", "two"}}},
                  "tool_error", c.expected);
  }

  // An embedder's own failure keeps its code.
  ToolRegistry registry;
  RagModels models;
  models.embeddingModel = "busy";
  models.embed = [](absl::Span<const std::string>, bool, const ToolContext &)
      -> absl::StatusOr<std::vector<std::vector<float>>> {
    return absl::UnavailableError("the engine is busy");
  };
  ASSERT_TRUE(registerRagTools(registry, {}, models).ok());
  expectFailure(registry, "rag.ingest",
                {{"collection", "c"}, {"texts", {"one"}}}, "unavailable",
                "embedding with 'busy': the engine is busy");
}

/// Waits until no attempt of `tool` is running (an abandoned one finishes).
void waitIdle(ToolRegistry &registry, const std::string &tool) {
  for (int i = 0; i < 500 && registry.stats(tool).running > 0; ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_EQ(registry.stats(tool).running, 0);
}

std::vector<std::string> manyTexts(size_t count) {
  std::vector<std::string> texts;
  for (size_t i = 0; i < count; ++i)
    texts.push_back("text number " + std::to_string(i));
  return texts;
}

TEST(RagToolsStopTest, CancellationStopsAnIngestBetweenEmbedBatches) {
  FakeModels fakes;
  auto cancel = std::make_shared<CancelToken>();
  fakes.onEmbed = [&](int call, const ToolContext &) {
    if (call == 2)
      cancel->cancel();
  };
  RagToolConfig config;
  config.embedBatch = 2;
  ToolRegistry registry;
  ASSERT_TRUE(registerRagTools(registry, config, fakes.models()).ok());
  CallOptions options;
  options.cancel = cancel;
  ToolResult result = registry.call(
      "rag.ingest", {{"collection", "c"}, {"texts", manyTexts(20)}}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "cancelled");
  waitIdle(registry, "rag.ingest");
  EXPECT_EQ(fakes.embedCalls.load(), 2); // of 10 batches
  expectFailure(registry, "rag.search", {{"collection", "c"}, {"query", "x"}},
                "not_found", "'c'");
}

TEST(RagToolsStopTest, DeadlineStopsAnIngestBetweenEmbedBatches) {
  FakeModels fakes;
  fakes.onEmbed = [](int, const ToolContext &context) {
    context.sleepFor(60ms);
  };
  RagToolConfig config;
  config.embedBatch = 1;
  ToolRegistry registry;
  ASSERT_TRUE(registerRagTools(registry, config, fakes.models()).ok());
  CallOptions options;
  options.timeout = 150ms;
  ToolResult result = registry.call(
      "rag.ingest", {{"collection", "c"}, {"texts", manyTexts(20)}}, options);
  EXPECT_FALSE(result.ok);
  // The registry gives up at the deadline (outcome_unknown: a
  // state-changing tool), unless the ingest's own stop answers first.
  EXPECT_THAT(result.error.type,
              ::testing::AnyOf("outcome_unknown", "timeout"));
  waitIdle(registry, "rag.ingest");
  EXPECT_LE(fakes.embedCalls.load(), 4); // of 20 batches
  expectFailure(registry, "rag.search", {{"collection", "c"}, {"query", "x"}},
                "not_found", "'c'");
}

TEST(RagToolsConcurrencyTest, ManyThreadsIngestAndSearchAtOnce) {
  FakeModels fakes;
  RagToolConfig config;
  config.exactLimit = 30; // the shared collection crosses into HNSW
  ToolRegistry registry;
  ASSERT_TRUE(registerRagTools(registry, config, fakes.models()).ok());
  constexpr int kThreads = 6, kRounds = 10;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        std::string word =
            "thread" + std::to_string(t) + "round" + std::to_string(round);
        for (const std::string &collection :
             std::vector<std::string>{"shared", "own" + std::to_string(t)}) {
          ToolResult ingested = registry.call(
              "rag.ingest", {{"collection", collection},
                             {"texts", {word + " alpha", word + " beta"}},
                             {"metadata", {{"thread", t}}}});
          ToolResult found =
              registry.call("rag.search", {{"collection", collection},
                                           {"query", word},
                                           {"k", 3},
                                           {"rerank", round % 2 == 1}});
          if (!ingested.ok || !found.ok || found.value["results"].empty())
            ++failures;
        }
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(failures.load(), 0);
  json found = callOk(registry, "rag.search",
                      {{"collection", "shared"}, {"query", "thread3round7"}});
  EXPECT_EQ(found["searched"], kThreads * kRounds * 2);
  EXPECT_EQ(found["method"], "hnsw");
  // (64 hashed dimensions: other threads' words may tie with the query.)
  const json &top = found["results"][0];
  EXPECT_THAT(top["text"].get<std::string>(), HasSubstr("thread"));
  EXPECT_EQ(top["metadata"].size(), 1u);
  EXPECT_GE(top["metadata"]["thread"].get<int>(), 0);
  EXPECT_LT(top["metadata"]["thread"].get<int>(), kThreads);
}

} // namespace
} // namespace treni
