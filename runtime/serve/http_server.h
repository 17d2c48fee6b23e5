//===- http_server.h - the OpenAI-compatible HTTP server -----*- C++ -*-===//
//
// `treni serve`: an HTTP/1.1 server (Boost.Beast, confined to
// http_server.cpp) in front of one or more models (ServedEndpoint: a chat
// model's engine, an embedding model's or a reranker's). A request goes to
// the model its body's `model` field names (404 for a name not served, 400
// for a model of the wrong kind: chat and completions need a chat model,
// /v1/embeddings an embedding model, /v1/rerank a reranker). docs/server.md
// states what it promises: limits, timeouts, what is exposed, the security
// options.
//
// Threads, and what may block where (the queues and workers are each
// model's own, so one model's load does not wait on another's):
//   - I/O threads (ServerOptions::ioThreads): every socket read and write,
//     every timer, routing, the access checks, and the small answers
//     (/health, /metrics, /v1/models, errors). All of it is asynchronous: a
//     slow or silent client holds a connection (bounded per client address
//     and in total) and a timer, never a thread.
//   - the request pool (2 threads): the CPU work of a POST body (the NUL
//     and nesting-depth scans, JSON parsing and validation), so that a
//     4 MiB body does not delay /health.
//   - a model's generation worker (one each): owns its Generator (engine,
//     tokenizer, template) or its embedding/rerank work, and runs its
//     queued requests one at a time.
//   - with a BatchGenerator (continuous batching, --max-num-seqs N > 1):
//     N batch workers take the chat and completion requests instead, each
//     waiting on its request while the BatchGenerator's loop computes all of
//     them in shared steps; streamed routes added as concurrent (the agent
//     API given the BatchGenerator) run there too, the others stay on the
//     one worker, which may use the Generator.
// A validated request goes on its model's bounded queue (--queue-size
// each); a full queue answers 429; a
// request past --request-timeout answers 504 (or ends its stream with an
// error event); a client that disconnects mid-stream cancels its
// generation. The worker pushes a stream's events to the connection, which
// writes them as the client reads. Every error is an OpenAI error object
// with a 4xx/5xx status, and no response carries an exception's text (it
// goes to stderr); the server keeps serving.
//
//   POST /v1/chat/completions   POST /v1/completions
//   POST /v1/embeddings, /v1/rerank (added by `treni serve`, addJsonRoute)
//   GET /v1/models              GET /v1/models/{id} (with each one's kind)
//   GET /health                 GET /metrics (Prometheus text)
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "runtime/serve/batch_generator.h"
#include "runtime/serve/generation.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/openai_api.h"

namespace treni {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080; ///< 0: any free port (see HttpServer::port())
  /// Requests waiting for the engine (the running ones excluded).
  int queueSize = 16;
  /// Chat and completion requests generated at once: the batch workers of a
  /// server given a BatchGenerator (ignored without one: one at a time).
  int maxNumSeqs = 64;
  double requestTimeoutSeconds = 600;
  size_t maxBodyBytes = 4 << 20;

  /// A request's line and headers must arrive whole within this many
  /// seconds of the connection's being ready for them (accepted, or done
  /// with the previous response); else the connection is closed.
  double headerTimeoutSeconds = 10;
  /// Its body must arrive whole within this many seconds of the headers.
  double bodyTimeoutSeconds = 30;
  /// Each write of a response must be taken by the client within this many
  /// seconds; else the connection is closed (and its generation cancelled).
  double writeTimeoutSeconds = 30;
  /// Open connections from one client address (more: 503, then closed).
  int maxConnectionsPerClient = 64;
  /// Open connections in all (more: closed at once).
  int maxConnections = 1000;
  /// The listen backlog (connections the kernel holds before accept).
  int listenBacklog = 1024;
  /// Threads that do the sockets' I/O (none of it blocks).
  int ioThreads = 2;

  /// Host header values accepted besides the bound address's own names
  /// (`name` matches any port, `name:port` that port); "*" accepts any.
  std::vector<std::string> allowedHosts;
  /// When not empty, every route but /health requires
  /// `Authorization: Bearer <apiKey>` (401 otherwise).
  std::string apiKey;
  /// Test hook: sleep this long after every generated token.
  std::chrono::milliseconds tokenDelay{0};
};

/// What a served model answers: chat and completions (Chat), POST
/// /v1/embeddings (Embedding), POST /v1/rerank (Reranker).
enum class ModelKind { Chat, Embedding, Reranker };

/// "chat", "embedding" or "reranker".
const char *modelKindName(ModelKind kind);
/// The kind `name` names (modelKindName's), or nullopt.
std::optional<ModelKind> parseModelKind(std::string_view name);

/// One model the server answers for.
struct ServedEndpoint {
  ServedModel model; ///< its name is what requests' `model` field says
  ModelKind kind = ModelKind::Chat;
  /// Chat: generates one request at a time (and renders token bytes).
  Generator *generator = nullptr;
  /// Chat: continuous batching for chat and completions, when given.
  BatchGenerator *batch = nullptr;
};

class HttpServer {
public:
  /// Serves `models` (at least one, names distinct; a chat model needs its
  /// generator); everything they point to must outlive the server. The
  /// first chat model takes the streamed routes (addStreamedRoute).
  HttpServer(std::vector<ServedEndpoint> models, ServerOptions options);
  /// One chat model: `generator`, `batch` (when given: continuous batching
  /// for chat and completions) and everything `model` points to must
  /// outlive the server.
  HttpServer(Generator &generator, ServedModel model, ServerOptions options,
             BatchGenerator *batch = nullptr);
  ~HttpServer();

  /// Binds (a taken port is an error naming it) and starts the worker, the
  /// request pool and the I/O threads; returns once requests are accepted.
  /// Bounds glibc's malloc arenas (a process-wide setting): every thread
  /// that parses a multi-MiB body would otherwise keep an arena of its own.
  absl::Status start();
  /// The bound port.
  int port() const { return port_; }
  /// Graceful: stops accepting, closes the connections that wait for a
  /// request, lets the requests in flight finish (queued ones included; a
  /// request that arrives meanwhile gets 503), then stops the threads.
  /// Idempotent; safe from any thread but the server's own.
  void stop();
  /// Blocks until stop() has finished.
  void wait();

  const Metrics &metrics() const { return metrics_; }

  /// Work for a streamed route: runs on the generation worker (serialized
  /// with every generation, so it may use the Generator) or, when added as
  /// concurrent, on a batch worker; reading the
  /// request body and calling `emit` with each Server-Sent Event's data
  /// (one JSON text, without the `data: ` framing). `cancel` turns true when
  /// the client goes away or the request times out.
  using StreamedWork =
      std::function<void(const std::string &body,
                         const std::function<void(const std::string &)> &emit,
                         const std::atomic<bool> &cancel)>;
  /// Adds `POST path` answered as `text/event-stream` by `work`, queued like
  /// a generation; the stream ends with `data: [DONE]`. The body has passed
  /// the checks every POST gets (application/json, the size limit, no NUL
  /// byte, bounded nesting). It runs for the first chat model (else the
  /// first model): `concurrent` work may run on its batch workers beside
  /// other requests (it must not use the Generator); other work runs on its
  /// one worker. Call before start().
  void addStreamedRoute(std::string path, StreamedWork work,
                        bool concurrent = false);

  /// Work for a JSON route: the response body (status 200) or the error,
  /// from the request body. Runs on the generation worker; `cancel` turns
  /// true when the client goes away, and the work should stop by `deadline`
  /// (--request-timeout after the request arrived).
  using JsonWork = std::function<ApiResult<std::string>(
      const std::string &body, const std::atomic<bool> &cancel,
      std::chrono::steady_clock::time_point deadline)>;
  /// Adds `POST path` for the served model `model`, answered as one
  /// application/json response by `work`, queued on that model's worker
  /// like a generation (the body has passed every POST's checks). Requests
  /// go to the route of the model their `model` field names; one naming a
  /// model that has no route of this path is a 400 naming the models that
  /// do. Call before start().
  void addJsonRoute(std::string path, std::string model, JsonWork work);

  struct Job;
  struct Impl;
  struct Connection;
  /// A served model with its limits, queues and workers.
  struct Endpoint {
    ServedEndpoint served;
    ApiLimits limits; ///< its name and context
    std::deque<std::shared_ptr<Job>> queue;
    std::deque<std::shared_ptr<Job>> batchQueue; ///< with a BatchGenerator
    std::thread worker;
    std::vector<std::thread> batchWorkers;
  };

private:
  /// Runs the jobs of `queue` until stop() (a model's worker: its queue; a
  /// batch worker: its batchQueue).
  void workerLoop(std::deque<std::shared_ptr<Job>> &queue);
  void publishQueueDepth(); ///< under mutex_
  /// GET /metrics: the counters, and each batch loop's gauges.
  std::string metricsText() const;
  void runJob(Job &job);
  /// After an exception escaped runJob: a generic error for the client.
  void failJob(Job &job);
  /// A served model as GET /v1/models lists it.
  nlohmann::json modelObject(const Endpoint &endpoint) const;
  /// The served model named `name`, or null.
  Endpoint *findEndpoint(std::string_view name) const;
  /// Where the streamed routes run: the first chat model, else the first.
  Endpoint *streamedEndpoint() const;
  /// 404: no served model is named `name`.
  ApiError modelNotFound(std::string_view name) const;
  /// Queues `job`; the error when the queue is full or the server stops.
  std::optional<ApiError> enqueue(std::shared_ptr<Job> job);

  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  ServerOptions options_;
  Metrics metrics_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;

  std::mutex mutex_;
  std::condition_variable queueChanged_, stopped_;
  int64_t runningJobs_ = 0;
  bool draining_ = false, workerExit_ = false, started_ = false,
       finished_ = false;
  std::mutex stopMutex_;
  struct StreamedRoute {
    std::string path;
    StreamedWork work;
    bool concurrent = false;
  };
  std::vector<StreamedRoute> streamedRoutes_;
  struct JsonRoute {
    std::string path;
    Endpoint *endpoint = nullptr;
    JsonWork work;
  };
  std::vector<JsonRoute> jsonRoutes_;
};

} // namespace treni
