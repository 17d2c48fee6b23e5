//===- http_server.cpp - the OpenAI-compatible HTTP server ---------------===//

#include "runtime/serve/http_server.h"

#include <csignal>

#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace treni {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct HttpServer::Job {
  enum class Kind { Chat, Completion, Streamed };
  Kind kind = Kind::Chat;
  std::function<void(Job &)> work; ///< Kind::Streamed: runs on the worker
  ChatRequest chat;
  CompletionRequest completion;
  bool stream = false;
  Clock::time_point submitted, deadline;
  std::atomic<bool> cancel{false};

  std::mutex mutex;
  std::condition_variable changed;
  bool started = false; ///< prepared: a stream's events follow
  bool done = false;
  std::optional<ApiError> error; ///< before started: the whole response
  std::deque<std::string> events;
  std::string body; ///< the response of a request that is not streamed

  void push(std::vector<std::string> more) {
    if (more.empty())
      return;
    std::lock_guard<std::mutex> lock(mutex);
    for (std::string &event : more)
      events.push_back(std::move(event));
    changed.notify_all();
  }
  void finish(std::optional<ApiError> failure = std::nullopt) {
    std::lock_guard<std::mutex> lock(mutex);
    if (failure)
      error = std::move(failure);
    done = true;
    changed.notify_all();
  }
};

namespace {

ApiError serverError(int status, std::string message, std::string type,
                     std::string code) {
  ApiError error;
  error.status = status;
  error.message = std::move(message);
  error.type = std::move(type);
  error.code = std::move(code);
  return error;
}

ApiError timeoutError(double seconds) {
  return serverError(
      504,
      absl::StrCat("the request did not finish within the server's "
                   "--request-timeout of ",
                   seconds, " s"),
      "timeout_error", "request_timeout");
}

void sendError(httplib::Response &res, const ApiError &error) {
  res.status = error.status;
  res.set_content(dumpJson(error.toJson()), "application/json");
}

const char *kEndpoints[] = {"/v1/chat/completions", "/v1/completions",
                            "/v1/models", "/health", "/metrics"};

} // namespace

HttpServer::HttpServer(Generator &generator, ServedModel model,
                       ServerOptions options)
    : generator_(generator), model_(std::move(model)),
      options_(std::move(options)) {
  limits_.maxSeq = model_.maxSeq;
  limits_.modelNames = {model_.name};
}

HttpServer::~HttpServer() { stop(); }

std::optional<ApiError> HttpServer::enqueue(std::shared_ptr<Job> job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (draining_)
    return serverError(503, "the server is shutting down", "server_error",
                       "shutting_down");
  if (int(queue_.size()) >= options_.queueSize)
    return serverError(429,
                       absl::StrCat("the server is busy: ", queue_.size(),
                                    " requests are waiting (--queue-size ",
                                    options_.queueSize, "); retry later"),
                       "rate_limit_error", "queue_full");
  queue_.push_back(std::move(job));
  metrics_.setQueueDepth(int64_t(queue_.size()), metrics_.running());
  queueChanged_.notify_all();
  return std::nullopt;
}

void HttpServer::workerLoop() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queueChanged_.wait(lock, [&] { return workerExit_ || !queue_.empty(); });
      if (queue_.empty())
        return;
      job = std::move(queue_.front());
      queue_.pop_front();
      metrics_.setQueueDepth(int64_t(queue_.size()), 1);
    }
    runJob(*job);
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.setQueueDepth(int64_t(queue_.size()), 0);
  }
}

void HttpServer::runJob(Job &job) {
  if (job.cancel) {
    metrics_.countCancelled();
    job.finish();
    return;
  }
  if (Clock::now() >= job.deadline) {
    metrics_.countTimeout();
    job.finish(timeoutError(options_.requestTimeoutSeconds));
    return;
  }
  if (job.kind == Job::Kind::Streamed) {
    {
      std::lock_guard<std::mutex> lock(job.mutex);
      job.started = true;
      job.changed.notify_all();
    }
    job.work(job);
    job.push({"data: [DONE]\n\n"});
    job.finish();
    return;
  }
  bool chat = job.kind == Job::Kind::Chat;
  ApiResult<PreparedRequest> preparedOr =
      chat ? prepareChat(job.chat, model_)
           : prepareCompletion(job.completion, model_);
  if (auto *error = std::get_if<ApiError>(&preparedOr)) {
    job.finish(*error);
    return;
  }
  PreparedRequest &prepared = std::get<PreparedRequest>(preparedOr);
  GenerationRequest &request = prepared.generation;
  request.cancel = &job.cancel;
  request.deadline = job.deadline;
  request.submitted = job.submitted;
  request.tokenDelay = options_.tokenDelay;

  ResponseIdentity identity =
      newIdentity(chat ? "chatcmpl" : "cmpl", model_.name);
  TokenBytesFn tokenBytes = [this](int32_t id) {
    return generator_.tokenBytes(id);
  };
  std::optional<StreamEncoder> encoder;
  if (job.stream) {
    encoder.emplace(
        chat ? StreamEncoder::Kind::Chat : StreamEncoder::Kind::Completion,
        identity, prepared, model_.toolFormat,
        chat ? job.chat.includeUsage : job.completion.includeUsage, tokenBytes);
    job.push(encoder->start());
  }
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    job.started = true;
    job.changed.notify_all();
  }
  StreamCallback onDelta;
  if (encoder)
    onDelta = [&](std::string_view text,
                  absl::Span<const GeneratedToken> tokens) {
      job.push(encoder->delta(text, tokens));
      return !job.cancel.load();
    };
  absl::StatusOr<GenerationResult> result =
      generator_.generate(request, onDelta);

  std::optional<ApiError> failure;
  if (!result.ok()) {
    failure = absl::IsInvalidArgument(result.status())
                  ? invalidRequest(std::string(result.status().message()))
                  : serverError(500,
                                absl::StrCat("generation failed: ",
                                             result.status().message()),
                                "server_error", "engine_error");
  } else {
    metrics_.addTokens(result->awareness.timing.promptTokens,
                       int64_t(result->tokens.size()));
    if (!result->tokens.empty())
      metrics_.observeTimeToFirstToken(
          result->awareness.timing.timeToFirstTokenSeconds());
    metrics_.observeLatency(result->awareness.timing.totalSeconds());
    if (result->finishReason == FinishReason::Cancelled) {
      metrics_.countCancelled();
      job.finish();
      return;
    }
    if (result->finishReason == FinishReason::Timeout) {
      metrics_.countTimeout();
      failure = timeoutError(options_.requestTimeoutSeconds);
    }
  }
  if (failure) {
    if (job.stream) {
      // The status line is sent: the stream ends with an error event.
      metrics_.countError(failure->type);
      job.push({sseEvent(failure->toJson()), "data: [DONE]\n\n"});
      job.finish();
    } else {
      job.finish(failure);
    }
    return;
  }
  if (job.stream) {
    job.push(encoder->finish(*result));
    job.finish();
    return;
  }
  json body;
  if (chat) {
    std::string full =
        prepared.outputPrefix + result->text + prepared.outputSuffix;
    ParsedOutput output = parseOutput(prepared, full, model_.toolFormat);
    body = buildChatResponse(identity, prepared, *result, output, tokenBytes);
  } else {
    body = buildCompletionResponse(identity, prepared, *result, tokenBytes);
  }
  {
    std::lock_guard<std::mutex> lock(job.mutex);
    job.body = dumpJson(body);
  }
  job.finish();
}

void HttpServer::registerRoutes() {
  httplib::Server &server = *server_;

  // A job's submission time and its --request-timeout deadline.
  auto startClock = [this](Job &job) {
    job.submitted = Clock::now();
    job.deadline =
        job.submitted +
        std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(options_.requestTimeoutSeconds));
  };
  // Answers 200 and streams the job's SSE events as the worker pushes them;
  // a client that goes away cancels the job.
  auto streamEvents = [](httplib::Response &res, std::shared_ptr<Job> job) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [job](size_t, httplib::DataSink &sink) {
          std::deque<std::string> batch;
          bool done;
          {
            std::unique_lock<std::mutex> jobLock(job->mutex);
            job->changed.wait_for(jobLock, std::chrono::milliseconds(100), [&] {
              return !job->events.empty() || job->done;
            });
            batch.swap(job->events);
            done = job->done;
          }
          for (const std::string &event : batch)
            if (!sink.write(event.data(), event.size())) {
              job->cancel = true; // the client went away
              return false;
            }
          if (done)
            sink.done();
          return true;
        },
        [job](bool) { job->cancel = true; });
  };

  auto generate = [this, startClock, streamEvents](Job::Kind kind, const httplib::Request &req,
                         httplib::Response &res) {
    auto job = std::make_shared<Job>();
    job->kind = kind;
    if (kind == Job::Kind::Chat) {
      ApiResult<ChatRequest> parsed = parseChatRequest(req.body, limits_);
      if (auto *error = std::get_if<ApiError>(&parsed))
        return sendError(res, *error);
      job->chat = std::move(std::get<ChatRequest>(parsed));
      job->stream = job->chat.stream;
    } else {
      ApiResult<CompletionRequest> parsed =
          parseCompletionRequest(req.body, limits_);
      if (auto *error = std::get_if<ApiError>(&parsed))
        return sendError(res, *error);
      job->completion = std::move(std::get<CompletionRequest>(parsed));
      job->stream = job->completion.stream;
    }
    startClock(*job);
    if (std::optional<ApiError> error = enqueue(job))
      return sendError(res, *error);

    std::unique_lock<std::mutex> lock(job->mutex);
    auto ready = [&] { return job->done || (job->stream && job->started); };
    if (!job->changed.wait_until(lock, job->deadline, ready)) {
      job->cancel = true;
      metrics_.countTimeout();
      return sendError(res, timeoutError(options_.requestTimeoutSeconds));
    }
    if (job->error)
      return sendError(res, *job->error);
    if (!job->stream) {
      res.status = 200;
      res.set_content(std::move(job->body), "application/json");
      return;
    }
    lock.unlock();
    streamEvents(res, job);
  };

  server.Post("/v1/chat/completions",
              [generate](const httplib::Request &req, httplib::Response &res) {
                generate(Job::Kind::Chat, req, res);
              });
  server.Post("/v1/completions",
              [generate](const httplib::Request &req, httplib::Response &res) {
                generate(Job::Kind::Completion, req, res);
              });
  for (auto &[path, work] : streamedRoutes_) {
    server.Post(path, [this, startClock, streamEvents, work = work](const httplib::Request &req,
                                          httplib::Response &res) {
      auto job = std::make_shared<Job>();
      job->kind = Job::Kind::Streamed;
      job->stream = true;
      std::string body = req.body;
      job->work = [work, body](Job &j) {
        work(
            body,
            [&j](const std::string &data) {
              j.push({"data: " + data + "\n\n"});
            },
            j.cancel);
      };
      startClock(*job);
      if (std::optional<ApiError> error = enqueue(job))
        return sendError(res, *error);
      streamEvents(res, job);
    });
  }

  server.Get("/v1/models", [this](const httplib::Request &,
                                  httplib::Response &res) {
    json models = {{"object", "list"},
                   {"data", json::array({{{"id", model_.name},
                                          {"object", "model"},
                                          {"created", 0},
                                          {"owned_by", "treni"},
                                          {"max_model_len", model_.maxSeq}}})}};
    res.set_content(dumpJson(models), "application/json");
  });
  server.Get(
      "/health", [this](const httplib::Request &, httplib::Response &res) {
        bool draining;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          draining = draining_;
        }
        res.status = draining ? 503 : 200;
        res.set_content(dumpJson({{"status", draining ? "shutting_down" : "ok"},
                                  {"model", model_.name},
                                  {"queue_depth", metrics_.queueDepth()},
                                  {"running", metrics_.running()}}),
                        "application/json");
      });
  server.Get("/metrics",
             [this](const httplib::Request &, httplib::Response &res) {
               res.set_content(metrics_.render(), "text/plain; version=0.0.4");
             });

  // A known path with the wrong method: 405 naming the right one.
  auto wrongMethod = [](const char *allowed) {
    return [allowed](const httplib::Request &req, httplib::Response &res) {
      res.set_header("Allow", allowed);
      sendError(res,
                serverError(405,
                            absl::StrCat(req.method, " is not allowed on ",
                                         req.path, "; use ", allowed),
                            "invalid_request_error", "method_not_allowed"));
    };
  };
  for (const char *path : {"/v1/chat/completions", "/v1/completions"}) {
    server.Get(path, wrongMethod("POST"));
    server.Put(path, wrongMethod("POST"));
    server.Delete(path, wrongMethod("POST"));
    server.Patch(path, wrongMethod("POST"));
  }
  for (const char *path : {"/v1/models", "/health", "/metrics"}) {
    server.Post(path, wrongMethod("GET"));
    server.Put(path, wrongMethod("GET"));
    server.Delete(path, wrongMethod("GET"));
    server.Patch(path, wrongMethod("GET"));
  }

  // Statuses httplib produces itself (404 routes, 413 bodies, 400 malformed
  // HTTP) get an OpenAI error body too.
  server.set_error_handler([](const httplib::Request &req,
                              httplib::Response &res) {
    if (!res.body.empty())
      return;
    ApiError error;
    error.status = res.status;
    switch (res.status) {
    case 404:
      error.message = absl::StrCat("no route for ", req.method, " ", req.path);
      error.code = "not_found";
      break;
    case 413:
      error.message = "the request body is too large";
      error.code = "body_too_large";
      break;
    default:
      error.message =
          absl::StrCat("HTTP ", res.status, " for ", req.method, " ", req.path);
      break;
    }
    res.set_content(dumpJson(error.toJson()), "application/json");
  });

  server.set_logger(
      [this](const httplib::Request &req, const httplib::Response &res) {
        std::string endpoint = "other";
        for (const char *known : kEndpoints)
          if (req.path == known)
            endpoint = known;
        metrics_.countRequest(endpoint, res.status);
        if (res.status >= 400 && !res.body.empty()) {
          json body = json::parse(res.body, nullptr, false);
          if (body.is_object() && body.contains("error") &&
              body["error"].is_object() && body["error"].contains("type") &&
              body["error"]["type"].is_string())
            metrics_.countError(body["error"]["type"].get<std::string>());
        }
      });
}

void HttpServer::addStreamedRoute(std::string path, StreamedWork work) {
  streamedRoutes_.emplace_back(std::move(path), std::move(work));
}

absl::Status HttpServer::start() {
  std::lock_guard<std::mutex> stopLock(stopMutex_);
  if (started_)
    return absl::FailedPreconditionError("the server is already started");
  // A client that disconnects must not kill the process on the next write.
  std::signal(SIGPIPE, SIG_IGN);
  server_ = std::make_unique<httplib::Server>();
  int threads =
      options_.httpThreads > 0 ? options_.httpThreads : options_.queueSize + 8;
  server_->new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  server_->set_payload_max_length(options_.maxBodyBytes);
  registerRoutes();
  if (options_.port == 0) {
    port_ = server_->bind_to_any_port(options_.host);
  } else {
    port_ = server_->bind_to_port(options_.host, options_.port) ? options_.port
                                                                : -1;
  }
  if (port_ <= 0)
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                     " (in use, or not a local address?)"));
  worker_ = std::thread([this] { workerLoop(); });
  listener_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs.
  while (!server_->is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  started_ = true;
  return absl::OkStatus();
}

void HttpServer::stop() {
  std::lock_guard<std::mutex> stopLock(stopMutex_);
  if (!started_ || finished_)
    return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_ = true;
  }
  // Closes the listening socket; listen_after_bind returns once the HTTP
  // threads have answered what they hold (the worker still runs for them).
  server_->stop();
  if (listener_.joinable())
    listener_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    workerExit_ = true;
    queueChanged_.notify_all();
  }
  if (worker_.joinable())
    worker_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  finished_ = true;
  stopped_.notify_all();
}

void HttpServer::wait() {
  std::unique_lock<std::mutex> lock(mutex_);
  stopped_.wait(lock, [&] { return finished_; });
}

} // namespace treni
