//===- metrics.cpp - Prometheus counters for `treni serve` ---------------===//

#include "runtime/serve/metrics.h"

#include "runtime/serve/batch_generator.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace treni {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i])
    ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string &name) const {
  std::string text;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(&text, name, "_bucket{le=\"",
                    absl::StrFormat("%g", bounds_[i]), "\"} ", cumulative,
                    "\n");
  }
  absl::StrAppend(&text, name, "_bucket{le=\"+Inf\"} ", count_, "\n", name,
                  "_sum ", absl::StrFormat("%.6f", sum_), "\n", name, "_count ",
                  count_, "\n");
  return text;
}

Metrics::Metrics()
    : ttft_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
             10}),
      latency_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                120}),
      interToken_({0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32,
                   0.64, 1.28}) {}

void Metrics::countRequest(const std::string &endpoint, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::countError(const std::string &type) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++errors_[type];
}

void Metrics::countCancelled() { ++cancelled_; }
void Metrics::countTimeout() { ++timeouts_; }

void Metrics::addTokens(int64_t prompt, int64_t completion) {
  promptTokens_ += uint64_t(prompt);
  completionTokens_ += uint64_t(completion);
}

void Metrics::observeTimeToFirstToken(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::addCachedTokens(int64_t cached) {
  cachedTokens_ += uint64_t(cached);
}

void Metrics::observeInterTokenLatency(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  interToken_.observe(seconds);
}

void Metrics::observeLatency(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  latency_.observe(seconds);
}

void Metrics::setQueueDepth(int64_t waiting, int64_t running) {
  waiting_ = waiting;
  running_ = running;
}

uint64_t Metrics::requests(const std::string &endpoint, int status) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = requests_.find({endpoint, status});
  return it == requests_.end() ? 0 : it->second;
}

uint64_t Metrics::errors(const std::string &type) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = errors_.find(type);
  return it == errors_.end() ? 0 : it->second;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string text;
  absl::StrAppend(
      &text,
      "# HELP treni_requests_total HTTP requests by endpoint and status.\n"
      "# TYPE treni_requests_total counter\n");
  for (const auto &[key, count] : requests_)
    absl::StrAppend(&text, "treni_requests_total{endpoint=\"", key.first,
                    "\",status=\"", key.second, "\"} ", count, "\n");
  absl::StrAppend(
      &text, "# HELP treni_errors_total Error responses by OpenAI error type.\n"
             "# TYPE treni_errors_total counter\n");
  for (const auto &[type, count] : errors_)
    absl::StrAppend(&text, "treni_errors_total{type=\"", type, "\"} ", count,
                    "\n");
  absl::StrAppend(
      &text,
      "# HELP treni_prompt_tokens_total Prompt tokens of generated requests.\n"
      "# TYPE treni_prompt_tokens_total counter\ntreni_prompt_tokens_total ",
      promptTokens_.load(), "\n",
      "# HELP treni_prompt_tokens_cached_total Prompt tokens whose KV rows "
      "were reused (prefix cache).\n"
      "# TYPE treni_prompt_tokens_cached_total counter\n"
      "treni_prompt_tokens_cached_total ",
      cachedTokens_.load(), "\n",
      "# HELP treni_completion_tokens_total Generated tokens.\n"
      "# TYPE treni_completion_tokens_total "
      "counter\ntreni_completion_tokens_total ",
      completionTokens_.load(), "\n",
      "# HELP treni_requests_cancelled_total Generations cancelled by a client "
      "disconnect.\n"
      "# TYPE treni_requests_cancelled_total "
      "counter\ntreni_requests_cancelled_total ",
      cancelled_.load(), "\n",
      "# HELP treni_requests_timed_out_total Requests past --request-timeout.\n"
      "# TYPE treni_requests_timed_out_total "
      "counter\ntreni_requests_timed_out_total ",
      timeouts_.load(), "\n",
      "# HELP treni_queue_depth Requests waiting for the engine.\n"
      "# TYPE treni_queue_depth gauge\ntreni_queue_depth ",
      waiting_.load(), "\n",
      "# HELP treni_requests_running Requests the engine is generating.\n"
      "# TYPE treni_requests_running gauge\ntreni_requests_running ",
      running_.load(), "\n",
      "# HELP treni_time_to_first_token_seconds Queue + prefill time to the "
      "first "
      "token.\n# TYPE treni_time_to_first_token_seconds histogram\n",
      ttft_.render("treni_time_to_first_token_seconds"),
      "# HELP treni_request_latency_seconds Queue + generation time of a "
      "request.\n"
      "# TYPE treni_request_latency_seconds histogram\n",
      latency_.render("treni_request_latency_seconds"),
      "# HELP treni_inter_token_latency_seconds Mean time between a "
      "request's tokens (one observation per request of 2+ tokens).\n"
      "# TYPE treni_inter_token_latency_seconds histogram\n",
      interToken_.render("treni_inter_token_latency_seconds"));
  return text;
}

namespace {

/// A Prometheus label value: backslash, quote and newline escaped.
std::string escapeLabel(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"')
      out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

} // namespace

std::string renderBatchMetrics(
    const std::vector<std::pair<std::string, BatchStats>> &loops) {
  std::string text;
  if (loops.empty())
    return text;
  auto metric = [&](const char *name, const char *type, const char *help,
                    auto value) {
    absl::StrAppend(&text, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n");
    for (const auto &[model, stats] : loops)
      absl::StrAppend(&text, name, "{model=\"", escapeLabel(model), "\"} ",
                      value(stats), "\n");
  };
  metric("treni_batch_sequences_running", "gauge",
         "Sequences in the running batch.",
         [](const BatchStats &s) { return s.running; });
  metric("treni_batch_sequences_waiting", "gauge",
         "Sequences waiting for admission (KV blocks or a batch slot).",
         [](const BatchStats &s) { return s.waiting; });
  metric("treni_kv_blocks_total", "gauge", "KV blocks in the pool.",
         [](const BatchStats &s) { return s.kv.totalBlocks; });
  metric("treni_kv_blocks_used", "gauge",
         "KV blocks held by running sequences.",
         [](const BatchStats &s) { return s.kv.usedBlocks; });
  metric("treni_kv_blocks_free", "gauge", "KV blocks neither held nor cached.",
         [](const BatchStats &s) { return s.kv.freeBlocks; });
  metric("treni_kv_blocks_cached_idle", "gauge",
         "Unheld blocks kept for the prefix cache (evictable).",
         [](const BatchStats &s) { return s.kv.evictableBlocks; });
  metric("treni_prefix_cache_query_tokens_total", "counter",
         "Prompt tokens looked up in the prefix cache at admission.",
         [](const BatchStats &s) { return s.kv.prefixQueryTokens; });
  metric("treni_prefix_cache_hit_tokens_total", "counter",
         "Prompt tokens found there (hit rate: hit / query).",
         [](const BatchStats &s) { return s.kv.prefixHitTokens; });
  metric("treni_prefix_cache_evictions_total", "counter",
         "Cached blocks taken for new content.",
         [](const BatchStats &s) { return s.kv.evictions; });
  metric("treni_batch_steps_total", "counter", "Engine steps computed.",
         [](const BatchStats &s) { return s.steps; });
  metric("treni_batch_step_sequences_total", "counter",
         "Sequences summed over the steps (mean batch size: this / steps).",
         [](const BatchStats &s) { return s.stepSequences; });
  metric("treni_batch_step_tokens_total", "counter",
         "Tokens computed summed over the steps.",
         [](const BatchStats &s) { return s.stepTokens; });
  metric("treni_batch_step_sequences_max", "gauge",
         "The largest batch of one step so far.",
         [](const BatchStats &s) { return s.maxStepSequences; });
  metric("treni_batch_preemptions_total", "counter",
         "Sequences sent back to wait for KV blocks (recomputed later).",
         [](const BatchStats &s) { return s.preemptions; });
  return text;
}

} // namespace treni
