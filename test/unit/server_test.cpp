//===- server_test.cpp - `treni serve` over loopback (CPU executor) ------===//
//
// Tests that the HTTP server answers every endpoint with OpenAI's shapes,
// refuses each kind of bad input with the right 4xx and an OpenAI error while
// it keeps serving, queues (429 when full), cancels a generation whose client
// disconnected, times out, and gives concurrent clients their own answers;
// and what docs/server.md promises against hostile clients: JSON-only POSTs,
// Host/Origin checks, the API key, no exception text, whole bodies, header
// and body deadlines, the per-client connection limit.
// The server runs in-process on an ephemeral loopback port over the tiny
// Qwen2 fixture; the client is httplib's, or a raw socket for what httplib
// cannot send (a trickle, another source address, chunked or HTTP/1.0).
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "httplib.h"
#include "runtime/serve/loaded_model.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::fixtureDir;

struct Reply {
  int status = 0; ///< 0: no response (connection failed)
  std::string body;
  httplib::Headers headers;
};

/// One raw TCP connection to the server, from a chosen loopback address.
class RawConnection {
public:
  RawConnection(int port, const char *source = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &local.sin_addr);
    sockaddr_in remote{};
    remote.sin_family = AF_INET;
    remote.sin_port = htons(uint16_t(port));
    ::inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
    connected_ =
        ::bind(fd_, reinterpret_cast<sockaddr *>(&local), sizeof local) == 0 &&
        ::connect(fd_, reinterpret_cast<sockaddr *>(&remote), sizeof remote) ==
            0;
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection &) = delete;
  RawConnection &operator=(const RawConnection &) = delete;

  bool connected() const { return connected_; }
  bool send(std::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           ssize_t(bytes.size());
  }
  /// Reads what arrives within `timeout`; true when the server closed the
  /// connection (or reset it) by then.
  bool readUntilClosed(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    Read read;
    while ((read = readSome(end)) == Read::Data) {
    }
    return read == Read::Closed;
  }
  /// Reads until `text` has arrived (or `timeout`).
  bool readUntil(std::string_view text, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (received.find(text) == std::string::npos)
      if (readSome(end) != Read::Data)
        return false;
    return true;
  }
  /// The status of the response received so far (0: none).
  int status() const {
    if (received.rfind("HTTP/1.", 0) != 0 || received.size() < 12)
      return 0;
    return std::atoi(received.c_str() + 9);
  }

  std::string received;

private:
  enum class Read { Data, Closed, TimedOut };
  /// Appends what arrives before `end` to `received`.
  Read readSome(std::chrono::steady_clock::time_point end) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    pollfd entry{fd_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&entry, 1, int(left.count())) <= 0)
      return Read::TimedOut;
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0)
      return Read::Closed;
    received.append(chunk, size_t(n));
    return Read::Data;
  }

  int fd_ = -1;
  bool connected_ = false;
};

/// Every test runs twice: with the one generation worker, and with
/// continuous batching (a BatchGenerator over the CPU step runner).
class ServerTest : public ::testing::TestWithParam<bool> {
protected:
  static void SetUpTestSuite() {
    LoadOptions options;
    options.engine.maxSeq = 512;
    auto loaded = loadModel(fixtureDir("qwen2"), options);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = new LoadedModel(std::move(*loaded));
    ASSERT_NE(model_->chatTemplate, nullptr);
  }
  static void TearDownTestSuite() { delete model_; }

  void TearDown() override {
    if (server_)
      server_->stop();
    server_.reset();
    batch_.reset();
    runner_.reset();
    generator_.reset();
  }
  bool batched() const { return GetParam(); }

  /// Starts a server over the fixture; `beforeStart` may add routes.
  HttpServer &start(ServerOptions options = {},
                    const std::function<void(HttpServer &)> &beforeStart = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    if (options.maxBodyBytes == ServerOptions().maxBodyBytes)
      options.maxBodyBytes = 64 * 1024;
    generator_ =
        std::make_unique<Generator>(*model_->engine, *model_->tokenizer,
                                    GeneratorOptions{512, model_->eosIds});
    ServedModel served;
    served.name = "qwen2";
    served.tokenizer = model_->tokenizer.get();
    served.chatTemplate = model_->chatTemplate.get();
    served.toolFormat = servedToolCallFormat(model_->chatTemplateSource);
    served.maxSeq = 512;
    if (batched()) {
      auto runner =
          model_->engine->createStepRunner(4 * kvBlocksFor(512), 2048);
      EXPECT_TRUE(runner.ok()) << runner.status();
      runner_ = std::move(*runner);
      BatchGeneratorOptions batchOptions;
      batchOptions.scheduler.maxNumSeqs = options.maxNumSeqs;
      batchOptions.scheduler.maxSeqLen = 512;
      batchOptions.eosIds = model_->eosIds;
      auto batch = BatchGenerator::create(*runner_, *model_->tokenizer,
                                          std::move(batchOptions));
      EXPECT_TRUE(batch.ok()) << batch.status();
      batch_ = std::move(*batch);
    }
    server_ = std::make_unique<HttpServer>(*generator_, served, options,
                                           batch_.get());
    if (beforeStart)
      beforeStart(*server_);
    absl::Status status = server_->start();
    EXPECT_TRUE(status.ok()) << status;
    return *server_;
  }

  httplib::Client client() {
    httplib::Client cli("127.0.0.1", server_->port());
    cli.set_read_timeout(30, 0);
    return cli;
  }

  Reply post(const std::string &path, const std::string &body,
             std::function<bool(std::string_view)> onChunk = {}) {
    httplib::Client cli = client();
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.body = body;
    req.headers.emplace("Content-Type", "application/json");
    Reply reply;
    if (onChunk)
      req.content_receiver = [&](const char *data, size_t size, uint64_t,
                                 uint64_t) {
        reply.body.append(data, size);
        return onChunk(std::string_view(data, size));
      };
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    if (cli.send(req, res, error) || res.status > 0) {
      reply.status = res.status;
      if (!onChunk)
        reply.body = res.body;
    }
    return reply;
  }
  Reply get(const std::string &path) {
    httplib::Client cli = client();
    auto res = cli.Get(path.c_str());
    return res ? Reply{res->status, res->body, res->headers} : Reply{};
  }
  /// A request with exactly these headers (httplib adds Host unless given).
  Reply send(const std::string &method, const std::string &path,
             const std::string &body, httplib::Headers headers) {
    httplib::Client cli = client();
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.headers = std::move(headers);
    httplib::Response res;
    httplib::Error error = httplib::Error::Success;
    if (!cli.send(req, res, error) && res.status <= 0)
      return {};
    return {res.status, res.body, res.headers};
  }
  std::string hostHeader(const std::string &name) const {
    return name + ":" + std::to_string(server_->port());
  }

  static json chatBody(json extra = json::object()) {
    json body = {{"model", "qwen2"},
                 {"messages",
                  json::array({{{"role", "user"},
                                {"content", "Tell me about the compiler."}}})},
                 {"max_tokens", 12},
                 {"temperature", 0.8},
                 {"seed", 3}};
    body.update(extra);
    return body;
  }

  /// The data payloads of an SSE body (json, or "[DONE]").
  static std::vector<json> events(const std::string &body) {
    std::vector<json> out;
    size_t pos = 0;
    while ((pos = body.find("data: ", pos)) != std::string::npos) {
      size_t end = body.find("\n\n", pos);
      std::string payload = body.substr(pos + 6, end - pos - 6);
      out.push_back(payload == "[DONE]" ? json("[DONE]")
                                        : json::parse(payload));
      pos = end;
    }
    return out;
  }

  /// A reply's content and every token's logprob, from a plain or a
  /// streamed chat completion ("HTTP n" for a failure).
  static std::string answer(const Reply &reply, bool streamed) {
    if (reply.status != 200)
      return "HTTP " + std::to_string(reply.status);
    std::string content;
    json logprobs = json::array();
    if (!streamed) {
      json choice = json::parse(reply.body)["choices"][0];
      content = choice["message"]["content"];
      for (const json &token : choice["logprobs"]["content"])
        logprobs.push_back(token["logprob"]);
    } else {
      for (const json &chunk : events(reply.body)) {
        if (chunk == "[DONE]" || chunk["choices"].empty())
          continue;
        const json &choice = chunk["choices"][0];
        if (choice["delta"].contains("content"))
          content += choice["delta"]["content"].get<std::string>();
        if (choice["logprobs"].is_object())
          for (const json &token : choice["logprobs"]["content"])
            logprobs.push_back(token["logprob"]);
      }
    }
    return content + " " + logprobs.dump();
  }

  static void expectOpenAiError(const Reply &reply, int status,
                                const std::string &code) {
    EXPECT_EQ(reply.status, status) << reply.body;
    json body = json::parse(reply.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << reply.body;
    ASSERT_TRUE(body.contains("error")) << reply.body;
    for (const char *key : {"message", "type", "param", "code"})
      EXPECT_TRUE(body["error"].contains(key)) << key << " in " << reply.body;
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());
    if (!code.empty()) {
      EXPECT_EQ(body["error"]["code"], code) << reply.body;
    }
  }

  void expectGoodChat() {
    Reply good = post("/v1/chat/completions", chatBody().dump());
    ASSERT_EQ(good.status, 200) << good.body;
    EXPECT_EQ(json::parse(good.body)["object"], "chat.completion");
  }

  static LoadedModel *model_;
  std::unique_ptr<Generator> generator_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<BatchGenerator> batch_;
  std::unique_ptr<HttpServer> server_;
};
LoadedModel *ServerTest::model_ = nullptr;

INSTANTIATE_TEST_SUITE_P(Modes, ServerTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool> &info) {
                           return info.param ? "Batched" : "OneAtATime";
                         });

TEST_P(ServerTest, HealthModelsMetrics) {
  start();
  Reply health = get("/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(json::parse(health.body)["status"], "ok");
  Reply models = get("/v1/models");
  ASSERT_EQ(models.status, 200);
  json list = json::parse(models.body);
  EXPECT_EQ(list["object"], "list");
  EXPECT_EQ(list["data"][0]["id"], "qwen2");
  EXPECT_EQ(list["data"][0]["object"], "model");
  expectGoodChat();
  // The request counter is bumped after the response is written: poll.
  Reply metrics = get("/metrics");
  for (int i = 0;
       i < 100 && metrics.body.find("chat/completions\",status=\"200\"} 1") ==
                      std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    metrics = get("/metrics");
  }
  ASSERT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("# TYPE treni_requests_total counter"));
  EXPECT_THAT(metrics.body, HasSubstr("treni_requests_total{endpoint=\"/v1/"
                                      "chat/completions\",status=\"200\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("treni_completion_tokens_total 12"));
  EXPECT_THAT(metrics.body,
              HasSubstr("treni_time_to_first_token_seconds_count 1"));
  EXPECT_THAT(metrics.body,
              HasSubstr("treni_request_latency_seconds_bucket{le=\"+Inf\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("treni_queue_depth 0"));
}

TEST_P(ServerTest, ChatCompletionShapeAndLogprobs) {
  start();
  Reply reply =
      post("/v1/chat/completions",
           chatBody({{"logprobs", true}, {"top_logprobs", 3}}).dump());
  ASSERT_EQ(reply.status, 200) << reply.body;
  json body = json::parse(reply.body);
  EXPECT_EQ(body["model"], "qwen2");
  EXPECT_THAT(body["id"].get<std::string>(),
              ::testing::StartsWith("chatcmpl-"));
  const json &choice = body["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_TRUE(choice["message"]["content"].is_string());
  EXPECT_THAT(std::string(choice["finish_reason"]),
              ::testing::AnyOf("stop", "length"));
  int completion = body["usage"]["completion_tokens"];
  EXPECT_EQ(body["usage"]["total_tokens"],
            body["usage"]["prompt_tokens"].get<int>() + completion);
  ASSERT_EQ(int(choice["logprobs"]["content"].size()), completion);
  for (const json &token : choice["logprobs"]["content"]) {
    EXPECT_LE(token["logprob"].get<double>(), 0);
    EXPECT_EQ(token["top_logprobs"].size(), 3u);
  }
  const json &awareness = body["awareness"];
  EXPECT_GE(awareness["perplexity"].get<double>(), 1.0);
  EXPECT_EQ(awareness["tokens"], completion);
  EXPECT_TRUE(awareness["timing"].contains("ttft_ms"));
  EXPECT_TRUE(awareness["low_confidence"]["positions"].is_array());
}

// Tests that a stream carries the role first, then content that adds up to
// the same text as the same seeded request unstreamed, the finish_reason,
// the usage chunk and [DONE].
TEST_P(ServerTest, StreamedChatMatchesUnstreamed) {
  start();
  Reply plain = post("/v1/chat/completions", chatBody().dump());
  ASSERT_EQ(plain.status, 200);
  std::string expected =
      json::parse(plain.body)["choices"][0]["message"]["content"];

  Reply stream = post("/v1/chat/completions",
                      chatBody({{"stream", true},
                                {"stream_options", {{"include_usage", true}}}})
                          .dump(),
                      [](std::string_view) { return true; });
  ASSERT_EQ(stream.status, 200) << stream.body;
  std::vector<json> chunks = events(stream.body);
  ASSERT_GE(chunks.size(), 4u);
  EXPECT_EQ(chunks.front()["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  std::string finish;
  json usage;
  for (const json &chunk : chunks) {
    if (chunk == "[DONE]")
      continue;
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk.contains("usage")) {
      usage = chunk["usage"];
      continue;
    }
    const json &choice = chunk["choices"][0];
    if (choice["delta"].contains("content"))
      content += choice["delta"]["content"].get<std::string>();
    if (!choice["finish_reason"].is_null()) {
      finish = choice["finish_reason"];
      EXPECT_TRUE(chunk.contains("awareness"));
    }
  }
  EXPECT_EQ(content, expected);
  EXPECT_FALSE(finish.empty());
  EXPECT_EQ(usage["completion_tokens"],
            json::parse(plain.body)["usage"]["completion_tokens"]);
  EXPECT_EQ(chunks.back(), "[DONE]");
}

TEST_P(ServerTest, Completions) {
  start();
  json body = {{"model", "qwen2"},
               {"prompt", "The plan is"},
               {"max_tokens", 8},
               {"temperature", 0},
               {"logprobs", 2}};
  Reply reply = post("/v1/completions", body.dump());
  ASSERT_EQ(reply.status, 200) << reply.body;
  json out = json::parse(reply.body);
  EXPECT_EQ(out["object"], "text_completion");
  std::string text = out["choices"][0]["text"];
  EXPECT_EQ(out["choices"][0]["logprobs"]["tokens"].size(),
            size_t(out["usage"]["completion_tokens"]));
  EXPECT_TRUE(out.contains("awareness"));

  body["stream"] = true;
  Reply stream = post("/v1/completions", body.dump(),
                      [](std::string_view) { return true; });
  ASSERT_EQ(stream.status, 200);
  std::string streamed;
  for (const json &chunk : events(stream.body))
    if (chunk != "[DONE]")
      streamed += chunk["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(streamed, text);
}

struct BadCase {
  std::string method, path, body;
  int status;
  std::string code;
};

// Tests every kind of bad input: the right status, an OpenAI error, and the
// next good request still answered.
TEST_P(ServerTest, BadInputGetsOpenAiErrorsAndServingContinues) {
  start();
  std::string longPrompt;
  for (int i = 0; i < 300; ++i)
    longPrompt += "the compiler reads a model ";
  std::vector<BadCase> cases = {
      {"POST", "/v1/chat/completions", "{\"model\": \"qwen2\", \"messages\": [",
       400, "invalid_json"},
      {"POST", "/v1/chat/completions", "", 400, "invalid_json"},
      {"POST", "/v1/chat/completions",
       chatBody({{"temperature", "warm"}}).dump(), 400, "invalid_type"},
      {"POST", "/v1/chat/completions", chatBody({{"model", "gpt-4o"}}).dump(),
       404, "model_not_found"},
      {"POST", "/v1/chat/completions",
       chatBody({{"messages", json::array()}}).dump(), 400, "empty_array"},
      {"POST", "/v1/chat/completions",
       chatBody({{"messages",
                  json::array({{{"role", "user"}, {"content", longPrompt}}})}})
           .dump(),
       400, "context_length_exceeded"},
      {"POST", "/v1/chat/completions",
       std::string("{\"model\": \"qwen2\", \"messages\": [{\"role\": \"user\", "
                   "\"content\": \"bad \xc3\x28 byte\"}]}"),
       400, "invalid_utf8"},
      {"POST", "/v1/chat/completions",
       chatBody({{"max_tokens", 1 << 30}}).dump(), 400, "invalid_value"},
      {"POST", "/v1/chat/completions", chatBody({{"n", 3}}).dump(), 400,
       "unsupported_value"},
      {"POST", "/v1/chat/completions", std::string(100 * 1024, ' '), 413,
       "body_too_large"},
      {"POST", "/v1/completions", "{\"model\": \"qwen2\"}", 400,
       "missing_required_parameter"},
      {"GET", "/v1/chat/completions", "", 405, "method_not_allowed"},
      {"DELETE", "/v1/models", "", 405, "method_not_allowed"},
      {"GET", "/v1/nothing", "", 404, "not_found"},
      {"POST", "/v2/chat", "{}", 404, "not_found"},
  };
  for (const BadCase &c : cases) {
    SCOPED_TRACE(c.method + " " + c.path + " " + c.body.substr(0, 80));
    Reply reply;
    if (c.method == "POST") {
      reply = post(c.path, c.body);
    } else {
      httplib::Client cli = client();
      auto res = c.method == "GET" ? cli.Get(c.path.c_str())
                                   : cli.Delete(c.path.c_str());
      ASSERT_TRUE(res);
      reply = {res->status, res->body};
    }
    expectOpenAiError(reply, c.status, c.code);
    expectGoodChat();
  }
  EXPECT_GE(server_->metrics().errors("invalid_request_error"), cases.size());
  Reply metrics = get("/metrics");
  EXPECT_THAT(metrics.body,
              HasSubstr("treni_errors_total{type=\"invalid_request_error\"}"));
  EXPECT_THAT(metrics.body, HasSubstr("treni_requests_total{endpoint=\"/v1/"
                                      "chat/completions\",status=\"413\"} 1"));
}

// Tests the queue bound: with one request running and one waiting, a third
// is refused with 429 and the first two still complete.
TEST_P(ServerTest, FullQueueAnswers429) {
  ServerOptions options;
  options.queueSize = 1;
  options.maxNumSeqs = 1; // batched: one batch worker, one request running
  options.tokenDelay = std::chrono::milliseconds(20);
  HttpServer &server = start(options);
  auto slow = [&] {
    return post("/v1/chat/completions", chatBody({{"max_tokens", 25}}).dump());
  };
  auto first = std::async(std::launch::async, slow);
  auto waitFor = [&](auto condition) {
    for (int i = 0; i < 500 && !condition(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return condition();
  };
  ASSERT_TRUE(waitFor([&] { return server.metrics().running() == 1; }));
  auto second = std::async(std::launch::async, slow);
  ASSERT_TRUE(waitFor([&] { return server.metrics().queueDepth() == 1; }));
  Reply third = slow();
  expectOpenAiError(third, 429, "queue_full");
  EXPECT_EQ(json::parse(third.body)["error"]["type"], "rate_limit_error");
  EXPECT_EQ(first.get().status, 200);
  EXPECT_EQ(second.get().status, 200);
  expectGoodChat();
}

// Tests that a client that goes away mid-stream cancels its generation (it
// stops long before max_tokens) and the server keeps serving.
TEST_P(ServerTest, DisconnectCancelsTheGeneration) {
  ServerOptions options;
  options.tokenDelay = std::chrono::milliseconds(10);
  HttpServer &server = start(options);
  int chunks = 0;
  post("/v1/chat/completions",
       chatBody({{"max_tokens", 200}, {"stream", true}}).dump(),
       [&](std::string_view) { return ++chunks < 3; });
  for (int i = 0; i < 300 && server.metrics().cancelled() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server.metrics().cancelled(), 1u);
  // 200 tokens take at least 2 s; the cancelled one stopped well before.
  EXPECT_LT(server.metrics().completionTokens(), 100u);
  expectGoodChat();
}

// Tests that a client that closes its connection while its non-streamed
// request generates (nothing written to it yet) cancels the generation.
TEST_P(ServerTest, NonStreamingDisconnectCancels) {
  ServerOptions options;
  options.tokenDelay = std::chrono::milliseconds(10);
  HttpServer &server = start(options);
  std::string body = chatBody({{"max_tokens", 200}}).dump();
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: " + hostHeader("127.0.0.1") +
      "\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  {
    RawConnection client(server_->port());
    ASSERT_TRUE(client.connected());
    ASSERT_TRUE(client.send(request));
    for (int i = 0; i < 300 && server.metrics().running() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(server.metrics().running(), 1);
  } // closed mid-generation
  for (int i = 0; i < 300 && server.metrics().cancelled() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server.metrics().cancelled(), 1u);
  // 200 tokens take at least 2 s; the cancelled one stopped well before.
  EXPECT_LT(server.metrics().completionTokens(), 100u);
  expectGoodChat();
}

TEST_P(ServerTest, RequestTimeout) {
  ServerOptions options;
  options.tokenDelay = std::chrono::milliseconds(20);
  options.requestTimeoutSeconds = 1.0; // 100 tokens take >= 2 s
  start(options);
  Reply reply =
      post("/v1/chat/completions", chatBody({{"max_tokens", 100}}).dump());
  expectOpenAiError(reply, 504, "request_timeout");
  Reply stream = post("/v1/chat/completions",
                      chatBody({{"max_tokens", 100}, {"stream", true}}).dump(),
                      [](std::string_view) { return true; });
  EXPECT_EQ(stream.status, 200);
  EXPECT_THAT(stream.body, HasSubstr("request_timeout"));
  EXPECT_THAT(stream.body, HasSubstr("data: [DONE]"));
  Reply quick =
      post("/v1/chat/completions", chatBody({{"max_tokens", 2}}).dump());
  EXPECT_EQ(quick.status, 200) << quick.body;
}

// Tests that concurrent clients each get the answer their own request gives
// when run alone. The fixture model mostly repeats itself whatever the seed,
// so requests differ by prompt and the comparison includes every token's
// logprob, which depends on the whole prompt.
TEST_P(ServerTest, ConcurrentClientsGetTheirOwnAnswers) {
  start();
  constexpr int kClients = 6;
  auto body = [](int i) {
    std::string content = "Client " + std::to_string(i) + ":";
    for (int k = 0; k <= i; ++k)
      content += " the plan";
    return chatBody({{"messages",
                      json::array({{{"role", "user"}, {"content", content}}})},
                     {"seed", 100 + i},
                     {"max_tokens", 6},
                     {"logprobs", true}})
        .dump();
  };
  std::vector<std::string> sequential;
  for (int i = 0; i < kClients; ++i)
    sequential.push_back(answer(post("/v1/chat/completions", body(i)), false));
  // All different, so a mix-up would show.
  EXPECT_EQ(std::set<std::string>(sequential.begin(), sequential.end()).size(),
            size_t(kClients));
  std::vector<std::future<std::string>> futures;
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < kClients; ++i)
      futures.push_back(std::async(std::launch::async, [&, i, round] {
        if (round == 0)
          return answer(post("/v1/chat/completions", body(i)), false);
        json streamed = json::parse(body(i));
        streamed["stream"] = true;
        return answer(post("/v1/chat/completions", streamed.dump(),
                           [](std::string_view) { return true; }),
                      true);
      }));
  for (int k = 0; k < int(futures.size()); ++k)
    EXPECT_EQ(futures[k].get(), sequential[k % kClients]) << "client " << k;
}

// Tests that with continuous batching concurrent requests really share
// engine steps, and that /metrics reports the batch: KV blocks (all free
// again afterwards), steps, the largest step, prefix-cache hits for a
// repeated prompt (also in usage.prompt_tokens_details.cached_tokens).
TEST_P(ServerTest, BatchMetricsAndSharedSteps) {
  if (!batched())
    GTEST_SKIP() << "continuous batching only";
  ServerOptions options;
  options.tokenDelay = std::chrono::milliseconds(2);
  start(options);
  std::string longPrompt;
  for (int i = 0; i < 40; ++i)
    longPrompt += "the plan compiles the model ";
  auto body = [&](int i) {
    return chatBody({{"messages", json::array({{{"role", "user"},
                                                {"content", longPrompt}}})},
                     {"seed", i},
                     {"max_tokens", 16}})
        .dump();
  };
  std::vector<std::future<Reply>> replies;
  for (int i = 0; i < 6; ++i)
    replies.push_back(std::async(std::launch::async, [&, i] {
      return post("/v1/chat/completions", body(i));
    }));
  for (auto &reply : replies)
    EXPECT_EQ(reply.get().status, 200);
  Reply again = post("/v1/chat/completions", body(7));
  ASSERT_EQ(again.status, 200) << again.body;
  json usage = json::parse(again.body)["usage"];
  EXPECT_GE(usage["prompt_tokens_details"]["cached_tokens"].get<int64_t>(),
            int64_t(kKvBlockTokens));
  Reply metrics = get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  // The batch loop's samples carry the model's name; the server's do not.
  auto value = [&](const std::string &name) -> int64_t {
    for (const std::string &sample :
         {"\n" + name + "{model=\"qwen2\"} ", "\n" + name + " "})
      if (size_t at = metrics.body.find(sample); at != std::string::npos)
        return std::stoll(metrics.body.substr(at + sample.size()));
    return -1;
  };
  EXPECT_EQ(value("treni_kv_blocks_total"), 4 * kvBlocksFor(512));
  EXPECT_EQ(value("treni_kv_blocks_used"), 0);
  EXPECT_EQ(value("treni_batch_sequences_running"), 0);
  EXPECT_GT(value("treni_batch_steps_total"), 0);
  EXPECT_GT(value("treni_batch_step_sequences_max"), 1);
  EXPECT_GT(value("treni_prefix_cache_hit_tokens_total"), 0);
  EXPECT_GT(value("treni_prompt_tokens_cached_total"), 0);
  EXPECT_THAT(metrics.body,
              HasSubstr("treni_inter_token_latency_seconds_count 7"));
}

// Tests that no request is lost or mixed up under load (issue 15): 1000
// requests from 256 concurrent clients - good ones over 40 distinct prompts
// (plain and streamed, greedy and seeded), bad ones (malformed JSON, a bad
// parameter) and streamed ones whose client leaves after the first chunk -
// and every good answer equals its serial reference, every bad one is a
// 400, and the server serves normally afterwards with every KV block free.
TEST_P(ServerTest, ThousandMixedRequestsUnderLoad) {
  if (!batched())
    GTEST_SKIP() << "continuous batching only";
  ServerOptions options;
  options.maxNumSeqs = 256;
  options.queueSize = 1024;
  options.maxConnectionsPerClient = 512;
  options.maxConnections = 2000;
  start(options);
  constexpr int kPrompts = 40, kRequests = 1000, kClients = 256;
  auto good = [](int prompt, bool stream) {
    std::string content = "Request " + std::to_string(prompt) + ":";
    for (int k = 0; k <= prompt % 9; ++k)
      content += " the plan";
    json body = chatBody(
        {{"messages", json::array({{{"role", "user"}, {"content", content}}})},
         {"max_tokens", 6 + prompt % 5},
         {"temperature", prompt % 2 ? 0.7 : 0.0},
         {"seed", prompt},
         {"logprobs", true}});
    if (stream)
      body["stream"] = true;
    return body.dump();
  };
  std::vector<std::string> reference;
  for (int i = 0; i < kPrompts; ++i)
    reference.push_back(
        answer(post("/v1/chat/completions", good(i, false)), false));

  std::atomic<int> next{0}, goodOk{0}, badOk{0}, left{0};
  std::vector<std::string> mismatches;
  std::mutex mismatchMutex;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&] {
      for (int i = next++; i < kRequests; i = next++) {
        int kind = i % 10;
        if (kind == 0) { // malformed JSON
          Reply bad = post("/v1/chat/completions", "{\"model\": \"qwen2\", ");
          badOk += bad.status == 400;
        } else if (kind == 1) { // a bad parameter
          Reply bad = post("/v1/chat/completions",
                           chatBody({{"temperature", -1}}).dump());
          badOk += bad.status == 400;
        } else if (kind == 2) { // the client leaves after the first chunk
          post("/v1/chat/completions",
               chatBody({{"max_tokens", 300}, {"stream", true}}).dump(),
               [](std::string_view) { return false; });
          ++left;
        } else {
          int prompt = i % kPrompts;
          bool stream = kind % 2 == 1;
          std::string got = answer(
              post("/v1/chat/completions", good(prompt, stream)), stream);
          if (got == reference[prompt]) {
            ++goodOk;
          } else {
            std::lock_guard<std::mutex> lock(mismatchMutex);
            mismatches.push_back("request " + std::to_string(i) + ": " + got +
                                 " vs " + reference[prompt]);
          }
        }
      }
    });
  for (std::thread &client : clients)
    client.join();
  EXPECT_EQ(goodOk.load(), kRequests * 7 / 10);
  EXPECT_EQ(badOk.load(), kRequests * 2 / 10);
  EXPECT_EQ(left.load(), kRequests / 10);
  for (size_t i = 0; i < std::min<size_t>(mismatches.size(), 5); ++i)
    ADD_FAILURE() << mismatches[i];
  expectGoodChat();
  // The abandoned streams end at their next step; then every block is free.
  for (int i = 0; i < 500 && batch_->stats().kv.usedBlocks > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(batch_->stats().kv.usedBlocks, 0);
  EXPECT_EQ(batch_->stats().running, 0);
}

// Tests a tool-call round trip: a named tool_choice yields a tool call with
// JSON arguments and finish_reason tool_calls; the tool result goes back in.
TEST_P(ServerTest, ToolCallRoundTrip) {
  start();
  json tools =
      json::array({{{"type", "function"},
                    {"function",
                     {{"name", "get_weather"},
                      {"description", "Weather of a city"},
                      {"parameters",
                       {{"type", "object"},
                        {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
  json request = chatBody(
      {{"tools", tools},
       {"tool_choice",
        {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
       {"max_tokens", 24}});
  Reply reply = post("/v1/chat/completions", request.dump());
  ASSERT_EQ(reply.status, 200) << reply.body;
  json body = json::parse(reply.body);
  const json &message = body["choices"][0]["message"];
  EXPECT_EQ(body["choices"][0]["finish_reason"], "tool_calls");
  ASSERT_EQ(message["tool_calls"].size(), 1u) << reply.body;
  const json &call = message["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  json arguments = json::parse(call["function"]["arguments"].get<std::string>(),
                               nullptr, false);
  EXPECT_TRUE(arguments.is_object()) << call.dump();

  json followUp = chatBody({{"tools", tools}});
  followUp["messages"].push_back(message);
  followUp["messages"].push_back({{"role", "tool"},
                                  {"tool_call_id", call["id"]},
                                  {"content", "{\"temp\": 21}"}});
  Reply second = post("/v1/chat/completions", followUp.dump());
  EXPECT_EQ(second.status, 200) << second.body;

  request["tool_choice"] = "required";
  request["stream"] = true;
  Reply stream = post("/v1/chat/completions", request.dump(),
                      [](std::string_view) { return true; });
  ASSERT_EQ(stream.status, 200);
  json streamedCall;
  std::string finish;
  for (const json &chunk : events(stream.body)) {
    if (chunk == "[DONE]")
      continue;
    const json &choice = chunk["choices"][0];
    if (choice["delta"].contains("tool_calls"))
      streamedCall = choice["delta"]["tool_calls"][0];
    if (!choice["finish_reason"].is_null())
      finish = choice["finish_reason"];
  }
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(streamedCall["function"]["name"], "get_weather");
  EXPECT_EQ(streamedCall["index"], 0);
}

TEST_P(ServerTest, JsonObjectResponseFormat) {
  start();
  Reply reply = post("/v1/chat/completions",
                     chatBody({{"response_format", {{"type", "json_object"}}},
                               {"max_tokens", 30}})
                         .dump());
  ASSERT_EQ(reply.status, 200) << reply.body;
  std::string content =
      json::parse(reply.body)["choices"][0]["message"]["content"]
          .get<std::string>();
  EXPECT_TRUE(json::parse(content, nullptr, false).is_object()) << content;
}

// Tests a graceful stop: a request in flight completes, then the port closes.
TEST_P(ServerTest, StopFinishesWhatIsInFlight) {
  ServerOptions options;
  options.tokenDelay = std::chrono::milliseconds(10);
  HttpServer &server = start(options);
  auto inFlight = std::async(std::launch::async, [&] {
    return post("/v1/chat/completions", chatBody({{"max_tokens", 20}}).dump());
  });
  for (int i = 0; i < 300 && server.metrics().running() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.stop();
  EXPECT_EQ(inFlight.get().status, 200);
  EXPECT_EQ(get("/health").status, 0); // nothing listens any more
}

// Tests that a POST must carry Content-Type: application/json (a browser's
// cross-site form or text/plain POST needs no preflight): 415 otherwise,
// whatever its size (httplib refused form bodies over 8 KiB with 413).
TEST_P(ServerTest, PostBodiesMustBeJson) {
  start();
  std::string body = chatBody().dump();
  for (const char *type :
       {"text/plain", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x", "application/jsonx"}) {
    SCOPED_TRACE(type);
    expectOpenAiError(
        send("POST", "/v1/chat/completions", body, {{"Content-Type", type}}),
        415, "unsupported_media_type");
  }
  expectOpenAiError(send("POST", "/v1/completions", body, {}), 415,
                    "unsupported_media_type");
  expectOpenAiError(
      send("POST", "/v1/chat/completions", "a=" + std::string(20000, 'b'),
           {{"Content-Type", "application/x-www-form-urlencoded"}}),
      415, "unsupported_media_type");
  Reply charset = send("POST", "/v1/chat/completions", body,
                       {{"Content-Type", "Application/JSON; charset=utf-8"}});
  EXPECT_EQ(charset.status, 200) << charset.body;
}

// Tests the defence against DNS rebinding and cross-site requests: a Host
// that is not one of the server's names and a foreign browser Origin get
// 403; the loopback names (with or without a port) and the server's own
// Origin pass; --allowed-hosts adds names, and "*" turns the check off.
TEST_P(ServerTest, HostAndOriginAreChecked) {
  start();
  std::string body = chatBody({{"max_tokens", 2}}).dump();
  httplib::Headers json = {{"Content-Type", "application/json"}};
  for (const std::string &host :
       {hostHeader("localhost"), hostHeader("127.0.0.1"), hostHeader("[::1]"),
        hostHeader("LocalHost"), std::string("localhost")}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(send("GET", "/v1/models", "", {{"Host", host}}).status, 200);
  }
  for (const std::string &host :
       {hostHeader("evil.example"), hostHeader("localhost.evil.example"),
        hostHeader("10.0.0.1"), std::string("127.0.0.1.nip.io")}) {
    SCOPED_TRACE(host);
    expectOpenAiError(send("GET", "/v1/models", "", {{"Host", host}}), 403,
                      "invalid_host");
    expectOpenAiError(send("GET", "/health", "", {{"Host", host}}), 403,
                      "invalid_host");
  }
  auto withOrigin = [&](const std::string &origin) {
    httplib::Headers headers = json;
    headers.emplace("Origin", origin);
    return send("POST", "/v1/chat/completions", body, headers);
  };
  for (const std::string &origin :
       {std::string("http://evil.example"), std::string("null"),
        "http://" + hostHeader("localhost"),
        std::string("http://127.0.0.1:1")}) {
    SCOPED_TRACE(origin);
    expectOpenAiError(withOrigin(origin), 403, "invalid_origin");
  }
  EXPECT_EQ(withOrigin("http://" + hostHeader("127.0.0.1")).status, 200);

  server_->stop();
  ServerOptions options;
  options.allowedHosts = {"api.example.com", "proxy.example:9000"};
  start(options);
  EXPECT_EQ(send("GET", "/v1/models", "", {{"Host", "api.example.com"}}).status,
            200);
  EXPECT_EQ(
      send("GET", "/v1/models", "", {{"Host", "API.example.com:443"}}).status,
      200);
  EXPECT_EQ(
      send("GET", "/v1/models", "", {{"Host", "proxy.example:9000"}}).status,
      200);
  EXPECT_EQ(
      send("GET", "/v1/models", "", {{"Host", "proxy.example:9001"}}).status,
      403);
  EXPECT_EQ(send("GET", "/v1/models", "", {{"Host", "evil.example"}}).status,
            403);

  server_->stop();
  options.allowedHosts = {"*"};
  start(options);
  EXPECT_EQ(send("GET", "/v1/models", "", {{"Host", "evil.example"}}).status,
            200);
}

// Tests --api-key: every route but /health needs `Authorization: Bearer
// <key>`, a wrong or missing key gets 401 with WWW-Authenticate, and a
// rejected POST's answer reaches a client that sends its whole body first.
TEST_P(ServerTest, ApiKeyGuardsEverythingButHealth) {
  ServerOptions options;
  options.apiKey = "sk-treni-test";
  start(options);
  for (const char *path :
       {"/v1/models", "/metrics", "/v1/models/qwen2", "/v1/nothing"}) {
    SCOPED_TRACE(path);
    Reply missing = send("GET", path, "", {});
    expectOpenAiError(missing, 401, "invalid_api_key");
    EXPECT_EQ(missing.headers.count("WWW-Authenticate"), 1u);
    for (const char *wrong :
         {"Bearer sk-treni-tesT", "Bearer sk-treni-test2", "Bearer ",
          "sk-treni-test", "Basic sk-treni-test"})
      expectOpenAiError(send("GET", path, "", {{"Authorization", wrong}}), 401,
                        "invalid_api_key");
  }
  EXPECT_EQ(send("GET", "/health", "", {}).status, 200);
  EXPECT_EQ(
      send("GET", "/v1/models", "", {{"Authorization", "Bearer sk-treni-test"}})
          .status,
      200);
  EXPECT_EQ(
      send("GET", "/v1/models", "", {{"Authorization", "bearer sk-treni-test"}})
          .status,
      200);
  json big = chatBody();
  big["user"] = std::string(60 * 1024, 'u');
  expectOpenAiError(send("POST", "/v1/chat/completions", big.dump(),
                         {{"Content-Type", "application/json"}}),
                    401, "invalid_api_key");
  Reply chat = send("POST", "/v1/chat/completions", chatBody().dump(),
                    {{"Content-Type", "application/json"},
                     {"Authorization", "Bearer sk-treni-test"}});
  EXPECT_EQ(chat.status, 200) << chat.body;
}

// Tests that no response carries an exception's text: an input that throws
// while it is validated (tool_choice {"type": 1}; httplib answered 500 with
// the text in an EXCEPTION_WHAT header) and a streamed route whose work
// throws on the worker (which used to end the process) get a generic error,
// and the server keeps serving.
TEST_P(ServerTest, NoExceptionTextInResponses) {
  start({}, [](HttpServer &server) {
    server.addStreamedRoute(
        "/v1/throws", [](const std::string &body,
                         const std::function<void(const std::string &)> &emit,
                         const std::atomic<bool> &) {
          emit("{\"event\": \"start\"}");
          throw std::runtime_error("secret detail " + body.substr(0, 8));
        });
  });

  Reply thrown = post("/v1/chat/completions",
                      chatBody({{"tool_choice", {{"type", 1}}}}).dump());
  EXPECT_TRUE(thrown.status == 400 || thrown.status == 500) << thrown.status;
  expectOpenAiError(thrown, thrown.status, "");
  EXPECT_THAT(thrown.body, Not(HasSubstr("json.exception")));
  EXPECT_THAT(thrown.body, Not(HasSubstr("type must be")));
  for (const auto &[name, value] : thrown.headers)
    EXPECT_THAT(name, Not(HasSubstr("EXCEPTION"))) << value;
  if (thrown.status == 500) {
    EXPECT_EQ(json::parse(thrown.body)["error"]["code"], "internal_error");
  }

  for (int i = 0; i < 2; ++i) {
    Reply stream =
        post("/v1/throws", "{\"a\": 1}", [](std::string_view) { return true; });
    EXPECT_EQ(stream.status, 200);
    std::vector<json> chunks = events(stream.body);
    ASSERT_EQ(chunks.size(), 3u) << stream.body;
    EXPECT_EQ(chunks[0]["event"], "start");
    EXPECT_EQ(chunks[1]["error"]["code"], "internal_error");
    EXPECT_EQ(chunks[2], "[DONE]");
    EXPECT_THAT(stream.body, Not(HasSubstr("secret")));
  }
  expectGoodChat();
}

// Tests GET /v1/models/{id}: the model object for the served name (percent-
// decoded), an OpenAI 404 for any other.
TEST_P(ServerTest, ModelById) {
  start();
  for (const char *path : {"/v1/models/qwen2", "/v1/models/qw%65n2"}) {
    Reply reply = get(path);
    ASSERT_EQ(reply.status, 200) << path;
    json model = json::parse(reply.body);
    EXPECT_EQ(model["id"], "qwen2");
    EXPECT_EQ(model["object"], "model");
    EXPECT_EQ(model["owned_by"], "treni");
  }
  Reply other = get("/v1/models/gpt-4o");
  expectOpenAiError(other, 404, "model_not_found");
  EXPECT_EQ(json::parse(other.body)["error"]["param"], "model");
  expectOpenAiError(get("/v1/models/"), 404, "model_not_found");
  expectOpenAiError(send("POST", "/v1/models/qwen2", "{}",
                         {{"Content-Type", "application/json"}}),
                    405, "method_not_allowed");
}

// Tests that a body is taken whole and bounded: bytes after a NUL are not
// ignored (nlohmann stops at a NUL), 20,000 nested arrays are refused before
// anything recurses, a body over --max-body-kib gets 413 whether it says its
// length or comes chunked, and one just under the limit is read.
TEST_P(ServerTest, BodiesAreTakenWholeAndBounded) {
  start(); // a 64 KiB limit
  std::string good = chatBody({{"max_tokens", 2}}).dump();
  EXPECT_EQ(post("/v1/chat/completions", good).status, 200);
  expectOpenAiError(
      post("/v1/chat/completions", good + std::string("\0trailing", 9)), 400,
      "invalid_json");
  expectOpenAiError(
      post("/v1/chat/completions",
           good.substr(0, 10) + std::string(1, '\0') + good.substr(10)),
      400, "invalid_json");
  std::string deep = std::string(20000, '[') + std::string(20000, ']');
  std::string deepBody =
      "{\"model\": \"qwen2\", \"messages\": [{\"role\": \"user\", \"content\": "
      "\"hi\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": "
      "\"f\", \"parameters\": {\"type\": \"object\", \"default\": " +
      deep + "}}}]}";
  expectOpenAiError(post("/v1/chat/completions", deepBody), 400,
                    "invalid_json");

  json padded = chatBody({{"max_tokens", 2}});
  padded["user"] = "";
  size_t room = 64 * 1024 - padded.dump().size();
  padded["user"] = std::string(room, 'u');
  ASSERT_EQ(padded.dump().size(), 64u * 1024);
  EXPECT_EQ(post("/v1/chat/completions", padded.dump()).status, 200);
  padded["user"] = std::string(room + 1, 'u');
  expectOpenAiError(post("/v1/chat/completions", padded.dump()), 413,
                    "body_too_large");

  RawConnection chunked(server_->port());
  ASSERT_TRUE(chunked.connected());
  std::string head =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: " + hostHeader("127.0.0.1") +
      "\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  chunked.send(head);
  std::string piece(16 * 1024, ' ');
  for (int i = 0; i < 5; ++i)
    chunked.send("4000\r\n" + piece + "\r\n");
  chunked.readUntilClosed(std::chrono::seconds(5));
  EXPECT_EQ(chunked.status(), 413) << chunked.received.substr(0, 200);
  EXPECT_THAT(chunked.received, HasSubstr("body_too_large"));
  expectGoodChat();
}

// Tests the whole-request deadlines: a client that trickles its headers (a
// line every 100 ms) or its body is cut off at --header-timeout /
// --body-timeout, however steadily it sends, while /health answers at once;
// and stop() does not wait for such a client.
TEST_P(ServerTest, SlowClientsAreCutOff) {
  ServerOptions options;
  options.headerTimeoutSeconds = 0.5;
  options.bodyTimeoutSeconds = 0.5;
  start(options);
  using namespace std::chrono_literals;
  std::string host = "Host: " + hostHeader("127.0.0.1") + "\r\n";
  RawConnection headers(server_->port());
  RawConnection body(server_->port());
  ASSERT_TRUE(headers.connected() && body.connected());
  headers.send("POST /v1/chat/completions HTTP/1.1\r\n" + host);
  body.send("POST /v1/chat/completions HTTP/1.1\r\n" + host +
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
  auto begin = std::chrono::steady_clock::now();
  bool headersClosed = false, bodyClosed = false;
  double headersAt = 0, bodyAt = 0;
  for (int i = 0; i < 30 && !(headersClosed && bodyClosed); ++i) {
    auto health =
        std::async(std::launch::async, [&] { return get("/health"); });
    if (!headersClosed &&
        (!headers.send("X-Trickle: x\r\n") || headers.readUntilClosed(100ms))) {
      headersClosed = true;
      headersAt = std::chrono::duration<double>(
                      std::chrono::steady_clock::now() - begin)
                      .count();
    }
    if (!bodyClosed && (!body.send(" ") || body.readUntilClosed(1ms))) {
      bodyClosed = true;
      bodyAt = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                             begin)
                   .count();
    }
    auto started = std::chrono::steady_clock::now();
    EXPECT_EQ(health.get().status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 500ms);
  }
  EXPECT_TRUE(headersClosed);
  EXPECT_TRUE(bodyClosed);
  EXPECT_GE(headersAt, 0.4);
  EXPECT_LT(headersAt, 1.5);
  EXPECT_GE(bodyAt, 0.4);
  EXPECT_LT(bodyAt, 1.5);

  RawConnection idle(server_->port());
  ASSERT_TRUE(idle.connected());
  idle.send("GET /health HTTP/1.1\r\n");
  auto stopping = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 400ms);
}

// Tests the per-client connection limit: past it a client's connection gets
// 503 and is closed, while another address is served; once the client's
// connections close, it is served again.
TEST_P(ServerTest, ConnectionLimitPerClient) {
  ServerOptions options;
  options.maxConnectionsPerClient = 2;
  start(options);
  using namespace std::chrono_literals;
  std::string request =
      "GET /health HTTP/1.1\r\nHost: " + hostHeader("127.0.0.1") + "\r\n\r\n";
  auto first = std::make_unique<RawConnection>(server_->port(), "127.0.0.2");
  auto second = std::make_unique<RawConnection>(server_->port(), "127.0.0.2");
  ASSERT_TRUE(first->connected() && second->connected());
  for (RawConnection *connection : {first.get(), second.get()}) {
    connection->send(request);
    ASSERT_TRUE(connection->readUntil("\"status\":\"ok\"", 2s))
        << connection->received;
  }
  RawConnection third(server_->port(), "127.0.0.2");
  ASSERT_TRUE(third.connected());
  EXPECT_TRUE(third.readUntilClosed(3s));
  EXPECT_EQ(third.status(), 503) << third.received;
  EXPECT_THAT(third.received, HasSubstr("too_many_connections"));
  RawConnection other(server_->port(), "127.0.0.3");
  other.send(request);
  EXPECT_TRUE(other.readUntil("\"status\":\"ok\"", 2s)) << other.received;

  first.reset();
  second.reset();
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    RawConnection again(server_->port(), "127.0.0.2");
    again.send(request);
    again.readUntil("\r\n\r\n", 2s);
    status = again.status();
    if (status != 200)
      std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(status, 200);
}

// Tests the HTTP details a raw client relies on: `Expect: 100-continue` gets
// its interim answer before the body is sent, an HTTP/1.0 stream comes
// unchunked and ends with the connection, and keep-alive serves several
// requests on one connection.
TEST_P(ServerTest, ContinueHttp10AndKeepAlive) {
  start();
  using namespace std::chrono_literals;
  std::string host = "Host: " + hostHeader("127.0.0.1") + "\r\n";
  std::string body = chatBody({{"max_tokens", 2}}).dump();
  RawConnection expect(server_->port());
  expect.send("POST /v1/chat/completions HTTP/1.1\r\n" + host +
              "Content-Type: application/json\r\nExpect: 100-continue\r\n"
              "Content-Length: " +
              std::to_string(body.size()) + "\r\n\r\n");
  ASSERT_TRUE(expect.readUntil("\r\n\r\n", 2s));
  EXPECT_EQ(expect.status(), 100);
  expect.received.clear();
  expect.send(body);
  ASSERT_TRUE(expect.readUntil("chat.completion", 10s)) << expect.received;
  EXPECT_EQ(expect.status(), 200);

  RawConnection old(server_->port());
  std::string streamed = chatBody({{"max_tokens", 3}, {"stream", true}}).dump();
  old.send(
      "POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(streamed.size()) + "\r\n\r\n" + streamed);
  EXPECT_TRUE(old.readUntilClosed(10s));
  EXPECT_EQ(old.status(), 200);
  EXPECT_THAT(old.received, Not(HasSubstr("chunked")));
  EXPECT_THAT(old.received, HasSubstr("\r\n\r\ndata: {"));
  EXPECT_THAT(old.received, HasSubstr("data: [DONE]\n\n"));

  RawConnection kept(server_->port());
  for (int i = 0; i < 3; ++i) {
    kept.received.clear();
    ASSERT_TRUE(kept.send("GET /health HTTP/1.1\r\n" + host + "\r\n"));
    ASSERT_TRUE(kept.readUntil("\"status\":\"ok\"", 2s)) << i;
  }
}

} // namespace
} // namespace treni
