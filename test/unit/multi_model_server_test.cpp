//===- multi_model_server_test.cpp - several models in one server ---------===//
//
// Tests that one HttpServer serves several models (issue 17): two chat
// models (one batching, one a request at a time) and an embedding model over
// the CPU fixtures; that /v1/models and /health list them with their kinds;
// that each request reaches the model its `model` names (the response says
// which); that a request naming a model of the wrong kind gets a 400 naming
// the models that serve the route, an unknown one a 404, and that the
// models' workers run side by side.
//
//===----------------------------------------------------------------------===//

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "httplib.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/serve/batch_generator.h"
#include "runtime/serve/embedder.h"
#include "runtime/serve/embeddings_route.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/loaded_model.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using json = nlohmann::json;
using ::testing::HasSubstr;
using testing_util::fixtureDir;

class MultiModelServerTest : public ::testing::Test {
protected:
  static LoadedModel load(const std::string &fixture) {
    LoadOptions options;
    options.engine.maxSeq = 256;
    auto loaded = loadModel(fixtureDir(fixture), options);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return std::move(*loaded);
  }

  void SetUp() override {
    chatA_ = load("qwen2");
    chatB_ = load("qwen2");
    embedding_ = load("qwen3");
    generatorA_ =
        std::make_unique<Generator>(*chatA_.engine, *chatA_.tokenizer,
                                    GeneratorOptions{256, chatA_.eosIds});
    generatorB_ =
        std::make_unique<Generator>(*chatB_.engine, *chatB_.tokenizer,
                                    GeneratorOptions{256, chatB_.eosIds});
    auto runner = chatA_.engine->createStepRunner(4 * kvBlocksFor(256), 256);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runnerA_ = std::move(*runner);
    BatchGeneratorOptions batchOptions;
    batchOptions.scheduler.maxNumSeqs = 4;
    batchOptions.scheduler.maxBatchTokens = 256;
    batchOptions.scheduler.maxSeqLen = 256;
    batchOptions.eosIds = chatA_.eosIds;
    auto batch = BatchGenerator::create(*runnerA_, *chatA_.tokenizer,
                                        std::move(batchOptions));
    ASSERT_TRUE(batch.ok()) << batch.status();
    batchA_ = std::move(*batch);
    auto embedRunner = embedding_.engine->createStepRunner(8, 64);
    ASSERT_TRUE(embedRunner.ok()) << embedRunner.status();
    runnerE_ = std::move(*embedRunner);
    embedder_ = std::make_unique<Embedder>(*runnerE_, Pooling::LastToken, 64);

    auto served = [](const std::string &name, const LoadedModel &model) {
      ServedModel out;
      out.name = name;
      out.tokenizer = model.tokenizer.get();
      out.chatTemplate = model.chatTemplate.get();
      out.maxSeq = 256;
      return out;
    };
    ServerOptions options;
    options.port = 0;
    options.maxNumSeqs = 4;
    std::vector<ServedEndpoint> endpoints = {
        {served("a", chatA_), ModelKind::Chat, generatorA_.get(),
         batchA_.get()},
        {served("b", chatB_), ModelKind::Chat, generatorB_.get(), nullptr},
        {served("emb", embedding_), ModelKind::Embedding, nullptr, nullptr}};
    server_ = std::make_unique<HttpServer>(endpoints, options);
    ApiLimits limits;
    limits.maxSeq = 256;
    limits.modelNames = {"emb"};
    server_->addJsonRoute("/v1/embeddings", "emb",
                          embeddingsWork(*embedder_, *embedding_.tokenizer,
                                         limits,
                                         embedding_.engine->vocabSize()));
    ASSERT_TRUE(server_->start().ok());
  }

  void TearDown() override {
    if (server_)
      server_->stop();
  }

  httplib::Result post(const std::string &path, const json &body) {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(60, 0);
    return client.Post(path, body.dump(), "application/json");
  }
  httplib::Result get(const std::string &path) {
    httplib::Client client("127.0.0.1", server_->port());
    return client.Get(path);
  }
  static json chat(const std::string &model) {
    return {{"model", model},
            {"messages", {{{"role", "user"}, {"content", "hi"}}}},
            {"max_tokens", 4},
            {"temperature", 0}};
  }

  LoadedModel chatA_, chatB_, embedding_;
  std::unique_ptr<Generator> generatorA_, generatorB_;
  std::unique_ptr<StepRunner> runnerA_, runnerE_;
  std::unique_ptr<BatchGenerator> batchA_;
  std::unique_ptr<Embedder> embedder_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(MultiModelServerTest, ListsEveryModelWithItsKind) {
  auto models = get("/v1/models");
  ASSERT_TRUE(models);
  ASSERT_EQ(models->status, 200);
  json list = json::parse(models->body)["data"];
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["id"], "a");
  EXPECT_EQ(list[0]["kind"], "chat");
  EXPECT_EQ(list[1]["id"], "b");
  EXPECT_EQ(list[2]["id"], "emb");
  EXPECT_EQ(list[2]["kind"], "embedding");
  auto one = get("/v1/models/emb");
  ASSERT_TRUE(one);
  EXPECT_EQ(json::parse(one->body)["kind"], "embedding");
  EXPECT_EQ(get("/v1/models/c")->status, 404);
  json health = json::parse(get("/health")->body);
  EXPECT_EQ(health["models"], json({"a", "b", "emb"}));
}

TEST_F(MultiModelServerTest, RoutesEachRequestToTheModelItNames) {
  // Both chat models at once (a batches, b runs one at a time).
  auto a = std::async(std::launch::async,
                      [&] { return post("/v1/chat/completions", chat("a")); });
  auto b = std::async(std::launch::async,
                      [&] { return post("/v1/chat/completions", chat("b")); });
  for (auto *reply : {&a, &b}) {
    auto result = reply->get();
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 200) << result->body;
  }
  auto answer = post("/v1/chat/completions", chat("b"));
  ASSERT_TRUE(answer);
  EXPECT_EQ(json::parse(answer->body)["model"], "b");
  auto completion =
      post("/v1/completions",
           {{"model", "a"}, {"prompt", "hello"}, {"max_tokens", 2}});
  ASSERT_TRUE(completion);
  ASSERT_EQ(completion->status, 200) << completion->body;
  EXPECT_EQ(json::parse(completion->body)["model"], "a");
  auto embedded = post("/v1/embeddings", {{"model", "emb"}, {"input", "hi"}});
  ASSERT_TRUE(embedded);
  ASSERT_EQ(embedded->status, 200) << embedded->body;
  EXPECT_EQ(json::parse(embedded->body)["model"], "emb");
  EXPECT_EQ(json::parse(embedded->body)["data"].size(), 1u);
}

TEST_F(MultiModelServerTest, RefusesAModelOfTheWrongKindOrNone) {
  auto wrong = post("/v1/chat/completions", chat("emb"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 400);
  json error = json::parse(wrong->body)["error"];
  EXPECT_EQ(error["code"], "wrong_model_kind");
  EXPECT_EQ(error["param"], "model");
  EXPECT_THAT(error["message"].get<std::string>(),
              HasSubstr("'emb' is an embedding model"));
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("'a', 'b'"));

  auto notEmbedding =
      post("/v1/embeddings", {{"model", "a"}, {"input", "hello"}});
  ASSERT_TRUE(notEmbedding);
  EXPECT_EQ(notEmbedding->status, 400);
  error = json::parse(notEmbedding->body)["error"];
  EXPECT_EQ(error["code"], "wrong_model_kind");
  EXPECT_THAT(error["message"].get<std::string>(),
              HasSubstr("'a' is a chat model; POST /v1/embeddings needs an "
                        "embedding model (this server's: 'emb')"));

  for (const char *path : {"/v1/chat/completions", "/v1/embeddings"}) {
    auto unknown = post(
        path, {{"model", "zzz"}, {"input", "x"}, {"messages", json::array()}});
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404) << path;
    EXPECT_EQ(json::parse(unknown->body)["error"]["code"], "model_not_found");
  }
  // A body that is no JSON is a 400 saying so, whatever model it names.
  for (const char *model : {"zzz", "emb"}) {
    httplib::Client client("127.0.0.1", server_->port());
    auto broken = client.Post("/v1/chat/completions",
                              std::string(R"({"model": ")") + model +
                                  R"(", "messages": [)",
                              "application/json");
    ASSERT_TRUE(broken);
    EXPECT_EQ(broken->status, 400) << model;
    EXPECT_THAT(broken->body, HasSubstr("not valid JSON")) << model;
  }
  // No model: the first chat model's parser says what is missing.
  json noModel = chat("a");
  noModel.erase("model");
  auto missing = post("/v1/chat/completions", noModel);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 400);
  EXPECT_THAT(missing->body, HasSubstr("'model' is required"));
  // A name that is not a string: the parser's type error.
  json numbered = chat("a");
  numbered["model"] = 7;
  auto typed = post("/v1/chat/completions", numbered);
  ASSERT_TRUE(typed);
  EXPECT_EQ(typed->status, 400);
  // The server still serves.
  EXPECT_EQ(post("/v1/chat/completions", chat("a"))->status, 200);
}

TEST(RequestedModelTest, ReadsOnlyTheTopLevelModelString) {
  EXPECT_EQ(requestedModel(R"({"model": "x", "a": 1})"), "x");
  EXPECT_EQ(requestedModel(R"({"messages": [{"model": "inner"}],
                               "model": "outer"})"),
            "outer");
  EXPECT_EQ(requestedModel(R"({"a": {"model": "inner"}})"), std::nullopt);
  EXPECT_EQ(requestedModel(R"({"model": 3})"), std::nullopt);
  EXPECT_EQ(requestedModel(R"({"model": ["x"]})"), std::nullopt);
  EXPECT_EQ(requestedModel(R"(["model", "x"])"), std::nullopt);
  EXPECT_EQ(requestedModel(R"({"model": "x")"), "x"); // stops at the name
  EXPECT_EQ(requestedModel(R"({"model" "x"})"), std::nullopt);
  EXPECT_EQ(requestedModel(""), std::nullopt);
  EXPECT_EQ(requestedModel(R"("model")"), std::nullopt);
}

} // namespace
} // namespace treni
