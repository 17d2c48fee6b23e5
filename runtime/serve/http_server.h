//===- http_server.h - the OpenAI-compatible HTTP server -----*- C++ -*-===//
//
// `treni serve`: cpp-httplib in front of ONE engine. HTTP threads parse and
// validate requests (runtime/serve/openai_api.h) and put them on a bounded queue;
// a single worker thread owns the Generator (engine, tokenizer, template)
// and runs the requests one at a time. A full queue answers 429; a request
// past --request-timeout answers 504 (or ends its stream with an error
// event); a client that disconnects mid-stream cancels its generation. Every
// error is an OpenAI error object with a 4xx/5xx status; the server keeps
// serving.
//
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models
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
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "runtime/serve/generation.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/openai_api.h"

namespace httplib {
class Server;
}

namespace treni {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080; ///< 0: any free port (see HttpServer::port())
  /// Requests waiting for the engine (the running one excluded).
  int queueSize = 16;
  double requestTimeoutSeconds = 600;
  size_t maxBodyBytes = 4 << 20;
  int httpThreads = 0; ///< 0: queueSize + 8
  /// Test hook: sleep this long after every generated token.
  std::chrono::milliseconds tokenDelay{0};
};

class HttpServer {
public:
  /// `generator` and everything `model` points to must outlive the server.
  HttpServer(Generator &generator, ServedModel model, ServerOptions options);
  ~HttpServer();

  /// Binds (a taken port is an error naming it) and starts the worker and
  /// the listener threads; returns once requests are accepted.
  absl::Status start();
  /// The bound port.
  int port() const { return port_; }
  /// Graceful: refuses new requests (503), lets the ones in flight finish,
  /// stops the worker. Idempotent; safe from any thread but a handler.
  void stop();
  /// Blocks until stop() has finished.
  void wait();

  const Metrics &metrics() const { return metrics_; }

  /// Work for a streamed route: runs on the generation worker (serialized
  /// with every generation, so it may use the Generator), reading the
  /// request body and calling `emit` with each Server-Sent Event's data
  /// (one JSON text, without the `data: ` framing). `cancel` turns true when
  /// the client goes away or the request times out.
  using StreamedWork = std::function<void(const std::string &body,
                                          const std::function<void(const std::string &)> &emit,
                                          const std::atomic<bool> &cancel)>;
  /// Adds `POST path` answered as `text/event-stream` by `work`, queued like
  /// a generation; the stream ends with `data: [DONE]`. Call before start().
  void addStreamedRoute(std::string path, StreamedWork work);

  struct Job;

private:
  void registerRoutes();
  void workerLoop();
  void runJob(Job &job);
  /// Queues `job`; the error when the queue is full or the server stops.
  std::optional<ApiError> enqueue(std::shared_ptr<Job> job);

  Generator &generator_;
  ServedModel model_;
  ServerOptions options_;
  ApiLimits limits_;
  Metrics metrics_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;

  std::mutex mutex_;
  std::condition_variable queueChanged_, stopped_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool draining_ = false, workerExit_ = false, started_ = false,
       finished_ = false;
  std::thread worker_, listener_;
  std::mutex stopMutex_;
  std::vector<std::pair<std::string, StreamedWork>> streamedRoutes_;
};

} // namespace treni
