//===- http_worker.cpp - the generation worker of treni serve -------------===//
//
// Each served model's thread takes jobs from its bounded queue in order and
// runs them on its generator (or its batch workers on its BatchGenerator);
// connections (http_server.cpp) read what they push into the job.
//
//===----------------------------------------------------------------------===//

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "runtime/serve/http_job.h"
#include "support/json.h"

namespace treni {
namespace http_detail {

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

ApiError internalError() {
  return serverError(500, "internal server error", "server_error",
                     "internal_error");
}

void logInternalError(std::string_view where, std::string_view what) {
  std::fprintf(stderr, "treni serve: internal error in %.*s: %.*s\n",
               int(where.size()), where.data(), int(what.size()), what.data());
  std::fflush(stderr);
}

} // namespace http_detail

using namespace http_detail;
using json = nlohmann::json;

std::optional<ApiError> HttpServer::enqueue(std::shared_ptr<Job> job) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (draining_)
    return serverError(503, "the server is shutting down", "server_error",
                       "shutting_down");
  // Chat and completions go to the model's batch workers when it has any;
  // the streamed routes use the Generator, on its one worker.
  Endpoint &endpoint = *job->endpoint;
  std::deque<std::shared_ptr<Job>> &queue =
      endpoint.served.batch &&
              (job->kind == Job::Kind::Chat ||
               job->kind == Job::Kind::Completion ||
               (job->kind == Job::Kind::Streamed && job->concurrent))
          ? endpoint.batchQueue
          : endpoint.queue;
  if (int(queue.size()) >= options_.queueSize)
    return serverError(429,
                       absl::StrCat("the server is busy: ", queue.size(),
                                    " requests are waiting for the model '",
                                    endpoint.served.model.name,
                                    "' (--queue-size ", options_.queueSize,
                                    "); retry later"),
                       "rate_limit_error", "queue_full");
  queue.push_back(std::move(job));
  publishQueueDepth();
  queueChanged_.notify_all();
  return std::nullopt;
}

void HttpServer::publishQueueDepth() {
  size_t waiting = 0;
  for (const auto &endpoint : endpoints_)
    waiting += endpoint->queue.size() + endpoint->batchQueue.size();
  metrics_.setQueueDepth(int64_t(waiting), runningJobs_);
}

std::string HttpServer::metricsText() const {
  std::vector<std::pair<std::string, BatchStats>> batches;
  for (const auto &endpoint : endpoints_)
    if (endpoint->served.batch)
      batches.emplace_back(endpoint->served.model.name,
                           endpoint->served.batch->stats());
  return metrics_.render() + renderBatchMetrics(batches);
}

void HttpServer::workerLoop(std::deque<std::shared_ptr<Job>> &queue) {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queueChanged_.wait(lock, [&] { return workerExit_ || !queue.empty(); });
      if (queue.empty())
        return;
      job = std::move(queue.front());
      queue.pop_front();
      ++runningJobs_;
      publishQueueDepth();
    }
    try {
      runJob(*job);
    } catch (const std::exception &error) {
      logInternalError("the generation worker", error.what());
      failJob(*job);
    } catch (...) {
      logInternalError("the generation worker", "unknown exception");
      failJob(*job);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    --runningJobs_;
    publishQueueDepth();
  }
}

void HttpServer::failJob(Job &job) {
  metrics_.countError(internalError().type);
  if (job.stream && job.hasStarted()) {
    job.push({sseEvent(internalError().toJson()), "data: [DONE]\n\n"});
    job.finish();
  } else {
    job.finish(internalError());
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
  if (job.kind == Job::Kind::Json) {
    job.work(job);
    return;
  }
  if (job.kind == Job::Kind::Streamed) {
    job.markStarted();
    job.work(job);
    job.push({"data: [DONE]\n\n"});
    job.finish();
    return;
  }
  const ServedEndpoint &served = job.endpoint->served;
  const ServedModel &model = served.model;
  bool chat = job.kind == Job::Kind::Chat;
  ApiResult<PreparedRequest> preparedOr =
      chat ? prepareChat(job.chat, model)
           : prepareCompletion(job.completion, model);
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
      newIdentity(chat ? "chatcmpl" : "cmpl", model.name);
  TokenBytesFn tokenBytes = [&generator = *served.generator](int32_t id) {
    return generator.tokenBytes(id);
  };
  std::optional<StreamEncoder> encoder;
  if (job.stream) {
    encoder.emplace(
        chat ? StreamEncoder::Kind::Chat : StreamEncoder::Kind::Completion,
        identity, prepared, model.toolFormat,
        chat ? job.chat.includeUsage : job.completion.includeUsage, tokenBytes);
    job.push(encoder->start());
  }
  job.markStarted();
  StreamCallback onDelta;
  if (encoder)
    onDelta = [&](std::string_view text,
                  absl::Span<const GeneratedToken> tokens) {
      job.push(encoder->delta(text, tokens));
      return !job.cancel.load();
    };
  absl::StatusOr<GenerationResult> result =
      served.batch ? served.batch->generate(request, onDelta)
                   : served.generator->generate(request, onDelta);

  std::optional<ApiError> failure;
  if (!result.ok()) {
    // An engine failure's text (CUDA, NVRTC, file paths) stays in the log.
    if (absl::IsInvalidArgument(result.status())) {
      failure = invalidRequest(std::string(result.status().message()));
    } else if (absl::IsResourceExhausted(result.status())) {
      failure = serverError(
          429, "the server is busy: every batch slot is taken; retry later",
          "rate_limit_error", "queue_full");
    } else {
      logInternalError("generation", std::string(result.status().message()));
      failure = serverError(500, "generation failed (see the server's log)",
                            "server_error", "engine_error");
    }
  } else {
    const GenerationTiming &timing = result->awareness.timing;
    metrics_.addTokens(timing.promptTokens, int64_t(result->tokens.size()));
    metrics_.addCachedTokens(timing.cachedPromptTokens);
    if (!result->tokens.empty())
      metrics_.observeTimeToFirstToken(timing.timeToFirstTokenSeconds());
    if (result->tokens.size() > 1)
      metrics_.observeInterTokenLatency(timing.decodeSeconds /
                                        double(result->tokens.size() - 1));
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
    ParsedOutput output = parseOutput(prepared, full, model.toolFormat);
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

} // namespace treni
