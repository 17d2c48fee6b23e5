//===- http_job.h - a request on its way through treni serve ---*- C++ -*-===//
//
// Private to the server (http_server.cpp: connections, on Boost.Beast;
// http_worker.cpp: the generation worker, no Boost): the job a connection
// hands the worker, and the error answers both sides give.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/serve/http_server.h"
#include "runtime/serve/openai_api.h"

namespace treni {

using Clock = std::chrono::steady_clock;

struct HttpServer::Job {
  enum class Kind { Chat, Completion, Streamed, Json };
  Kind kind = Kind::Chat;
  /// The served model whose worker runs the job (and whose engine it uses).
  Endpoint *endpoint = nullptr;
  /// Kind::Streamed and Kind::Json: runs on the worker (a Json job's work
  /// sets the body and finishes the job).
  std::function<void(Job &)> work;
  /// Kind::Streamed: may run on a batch worker (StreamedRoute::concurrent).
  bool concurrent = false;
  ChatRequest chat;
  CompletionRequest completion;
  bool stream = false;
  Clock::time_point submitted, deadline;
  std::atomic<bool> cancel{false};
  /// Set before the job is queued: schedules the connection's pump after
  /// every change below (the worker makes them; the connection reads them).
  std::function<void()> notify;

  std::mutex mutex;
  bool started = false; ///< prepared: a stream's events follow
  bool done = false;
  std::optional<ApiError> error; ///< before started: the whole response
  std::deque<std::string> events;
  std::string body; ///< the response of a request that is not streamed

  void push(std::vector<std::string> more) {
    if (more.empty())
      return;
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (std::string &event : more)
        events.push_back(std::move(event));
    }
    notify();
  }
  void markStarted() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      started = true;
    }
    notify();
  }
  bool hasStarted() {
    std::lock_guard<std::mutex> lock(mutex);
    return started;
  }
  void finish(std::optional<ApiError> failure = std::nullopt) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (failure)
        error = std::move(failure);
      done = true;
    }
    notify();
  }
};

namespace http_detail {

/// An OpenAI-style error answer with `status`.
ApiError serverError(int status, std::string message, std::string type,
                     std::string code);
/// 504: the request outlived --request-timeout.
ApiError timeoutError(double seconds);
/// What a client sees of an exception or an engine failure: nothing of its
/// text (that goes to logInternalError).
ApiError internalError();
/// The text a client must not see, on stderr.
void logInternalError(std::string_view where, std::string_view what);

} // namespace http_detail
} // namespace treni
