//===- batch_generator.cpp - many generations in one batch loop -----------===//

#include "runtime/serve/batch_generator.h"

#include <algorithm>
#include <chrono>
#include <latch>
#include <optional>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/strings/str_cat.h"
#include "support/status.h"

namespace treni {

struct BatchGenerator::Pending {
  const GenerationRequest *request = nullptr;
  const StreamCallback *onDelta = nullptr;
  SequenceId id = 0;
  /// Made on the loop thread when the request is taken in, so its queue
  /// time counts from generate() to admission.
  std::optional<GenerationStream> stream;
  /// A failure of this sequence alone (its sampler or its text).
  absl::Status failure;
  // Guarded by the generator's mutex_:
  std::optional<absl::StatusOr<GenerationResult>> result;
  std::condition_variable done;
};

absl::StatusOr<std::unique_ptr<BatchGenerator>>
BatchGenerator::create(StepRunner &runner, const Tokenizer &tokenizer,
                       BatchGeneratorOptions options) {
  SchedulerConfig config = options.scheduler;
  config.maxSeqLen = config.maxSeqLen > 0
                         ? std::min(config.maxSeqLen, runner.maxSeq())
                         : runner.maxSeq();
  if (options.maxWaiting < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "the batch waiting queue must hold at least 1 request, not ",
        options.maxWaiting));
  auto pool = std::make_unique<KvBlockPool>(runner.numBlocks());
  TRENI_ASSIGN_OR_RETURN(Scheduler scheduler, Scheduler::create(config, *pool));
  options.scheduler = config;
  return std::unique_ptr<BatchGenerator>(
      new BatchGenerator(runner, tokenizer, std::move(options),
                         std::move(scheduler), std::move(pool)));
}

BatchGenerator::BatchGenerator(StepRunner &runner, const Tokenizer &tokenizer,
                               BatchGeneratorOptions options,
                               Scheduler scheduler,
                               std::unique_ptr<KvBlockPool> pool)
    : runner_(runner), tokenizer_(tokenizer), options_(std::move(options)),
      config_(options_.scheduler), pool_(std::move(pool)),
      scheduler_(std::move(scheduler)) {
  samplingThreads_ =
      options_.samplingThreads > 0
          ? size_t(options_.samplingThreads)
          : std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  if (samplingThreads_ > 1)
    samplers_ = std::make_unique<boost::asio::thread_pool>(samplingThreads_);
  publishStats();
  thread_ = std::thread([this] { loop(); });
}

BatchGenerator::~BatchGenerator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (samplers_)
    samplers_->join();
  // Callers woken with their result still hold (or are about to take)
  // mutex_ on their way out of generate(): wait for the last of them.
  std::unique_lock<std::mutex> lock(mutex_);
  callersLeft_.wait(lock, [&] { return callers_ == 0; });
}

absl::StatusOr<GenerationResult>
BatchGenerator::generate(const GenerationRequest &request,
                         const StreamCallback &onDelta) {
  TRENI_RETURN_IF_ERROR(
      validateGeneration(request, config_.maxSeqLen, runner_.vocabSize()));
  if (request.maxTokens == 0) {
    // Nothing to compute: the stream finishes as it starts (Length).
    GenerationStream stream(tokenizer_, options_.eosIds, config_.maxSeqLen,
                            request, onDelta);
    return stream.finish();
  }
  Pending pending;
  pending.request = &request;
  pending.onDelta = &onDelta;
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_)
    return absl::UnavailableError("the generator is shutting down");
  int64_t waiting = int64_t(arrived_.size()) + stats_.waiting;
  if (waiting >= options_.maxWaiting)
    return absl::ResourceExhaustedError(absl::StrCat(
        waiting, " requests are waiting for a batch slot (at most ",
        options_.maxWaiting, ")"));
  arrived_.push_back(&pending);
  ++callers_;
  wake_.notify_all();
  pending.done.wait(lock, [&] { return pending.result.has_value(); });
  absl::StatusOr<GenerationResult> result = std::move(*pending.result);
  if (--callers_ == 0)
    callersLeft_.notify_all();
  return result;
}

BatchStats BatchGenerator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void BatchGenerator::publishStats() {
  std::lock_guard<std::mutex> lock(mutex_);
  publishStatsLocked();
}

void BatchGenerator::publishStatsLocked() {
  stats_.running = scheduler_.numRunning();
  stats_.waiting = scheduler_.numWaiting();
  stats_.kv = pool_->stats();
  stats_.preemptions = scheduler_.numPreemptions();
}

void BatchGenerator::complete(SequenceId id,
                              absl::StatusOr<GenerationResult> result) {
  auto it = active_.find(id);
  if (it == active_.end())
    return;
  Pending *pending = it->second;
  active_.erase(it);
  std::lock_guard<std::mutex> lock(mutex_);
  // A caller that has its result sees its blocks released in stats().
  publishStatsLocked();
  pending->result = std::move(result);
  // The caller may destroy `pending` as soon as the lock is released.
  pending->done.notify_one();
}

void BatchGenerator::end(SequenceId id,
                         absl::StatusOr<GenerationResult> result) {
  (void)scheduler_.cancel(id); // NotFound: the scheduler finished it already
  complete(id, std::move(result));
}

std::vector<SequenceId> BatchGenerator::activeIds() const {
  std::vector<SequenceId> ids;
  for (const auto &[id, pending] : active_)
    ids.push_back(id);
  return ids;
}

void BatchGenerator::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] {
      return stopping_ || !arrived_.empty() || !active_.empty();
    });
    if (stopping_)
      break;
    admit(lock);
    bool progressed = scheduler_.hasWork() && step();
    publishStats();
    lock.lock();
    // Nothing could run (cannot happen with a pool that holds one sequence
    // of max_seq_len, checked at create): do not spin.
    if (!progressed && !active_.empty())
      wake_.wait_for(lock, std::chrono::milliseconds(1));
  }
  // Shutting down: nothing more is computed.
  std::deque<Pending *> arrived;
  arrived.swap(arrived_);
  lock.unlock();
  for (Pending *pending : arrived) {
    std::lock_guard<std::mutex> guard(mutex_);
    pending->result = absl::UnavailableError("the generator is shutting down");
    pending->done.notify_one();
  }
  for (SequenceId id : activeIds()) {
    GenerationStream &stream = *active_[id]->stream;
    stream.finishWith(FinishReason::Cancelled);
    end(id, stream.finish());
  }
}

void BatchGenerator::admit(std::unique_lock<std::mutex> &lock) {
  std::deque<Pending *> arrived;
  arrived.swap(arrived_);
  lock.unlock();
  for (Pending *pending : arrived) {
    const GenerationRequest &request = *pending->request;
    pending->id = nextId_++;
    pending->stream.emplace(tokenizer_, options_.eosIds, config_.maxSeqLen,
                            request, *pending->onDelta);
    active_[pending->id] = pending;
    absl::Status added =
        scheduler_.add(pending->id, request.promptIds, request.maxTokens);
    if (!added.ok())
      complete(pending->id, added);
  }
  // Cancelled (the flag, or a stream callback that said stop) and timed-out
  // sequences end between steps: their blocks go back at once.
  for (SequenceId id : activeIds())
    if (GenerationStream &stream = *active_[id]->stream; stream.interrupted())
      end(id, stream.finish());
}

absl::StatusOr<SampleResult>
BatchGenerator::sample(Pending &pending, absl::Span<const float> logits) {
  const GenerationRequest &request = *pending.request;
  // The sequence's own token count: the same draw as a generation alone.
  uint64_t step = uint64_t(pending.stream->numTokens());
  TRENI_ASSIGN_OR_RETURN(SampleResult sampled,
                         sampleCpu(logits, request.sampling, step));
  if (!request.constraint)
    return sampled;
  return sampleConstrained(logits, sampled, request.sampling, step,
                           *request.constraint, pieces_);
}

absl::StatusOr<std::vector<absl::StatusOr<SampleResult>>>
BatchGenerator::runAndDraw(const StepPlan &plan,
                           const std::vector<Pending *> &pendings) {
  const size_t rows = pendings.size();
  bool constrained = false;
  for (Pending *pending : pendings)
    constrained |= bool(pending->request->constraint);
  // Where the runner samples (the GPU), only the tokens come back; a
  // constraint needs the logits here.
  if (runnerSamples_ && !constrained) {
    std::vector<RowSampling> sampling(rows);
    for (size_t i = 0; i < rows; ++i)
      sampling[i] = {pendings[i]->request->sampling,
                     uint64_t(pendings[i]->stream->numTokens())};
    absl::StatusOr<std::vector<SampleResult>> results =
        runner_.runSampled(plan, sampling);
    if (results.ok()) {
      if (results->size() != rows)
        return absl::InternalError(absl::StrCat("a step drew ", results->size(),
                                                " tokens for ", rows,
                                                " sampled rows"));
      return std::vector<absl::StatusOr<SampleResult>>(
          std::make_move_iterator(results->begin()),
          std::make_move_iterator(results->end()));
    }
    if (!absl::IsUnimplemented(results.status()))
      return results.status();
    runnerSamples_ = false;
  }

  TRENI_ASSIGN_OR_RETURN(absl::Span<const float> logits, runner_.run(plan));
  const int64_t vocab = runner_.vocabSize();
  if (int64_t(logits.size()) != int64_t(rows) * vocab)
    return absl::InternalError(absl::StrCat("a step returned ", logits.size(),
                                            " logits for ", rows,
                                            " sampled rows of ", vocab));
  if (constrained && pieces_.empty())
    pieces_ = constraintPieces(tokenizer_, vocab);
  // Every row's draw reads the whole vocabulary: the rows are sampled in
  // parallel (sample() touches only its own sequence), then accepted in
  // order by the caller (streaming, stops).
  std::vector<absl::StatusOr<SampleResult>> draws(
      rows, absl::UnknownError("not sampled"));
  auto drawRows = [&](size_t first, size_t stride) {
    for (size_t i = first; i < rows; i += stride)
      draws[i] = sample(*pendings[i], logits.subspan(i * vocab, vocab));
  };
  const size_t tasks = samplers_ ? std::min(rows, samplingThreads_) : 1;
  if (tasks > 1) {
    std::latch done(std::ptrdiff_t(tasks - 1));
    for (size_t t = 1; t < tasks; ++t)
      boost::asio::post(*samplers_, [&, t] {
        drawRows(t, tasks);
        done.count_down();
      });
    drawRows(0, tasks);
    done.wait();
  } else {
    drawRows(0, 1);
  }
  return draws;
}

bool BatchGenerator::step() {
  absl::StatusOr<StepPlan> plan = scheduler_.schedule();
  auto failAll = [&](const absl::Status &status) {
    for (SequenceId id : activeIds())
      end(id, status);
  };
  if (!plan.ok()) {
    failAll(plan.status());
    return true;
  }
  if (plan->empty()) {
    (void)scheduler_.commit(*plan, {});
    return false;
  }
  std::vector<SequenceId> sampledIds = plan->sampledSequences();
  const size_t rows = sampledIds.size();
  std::vector<Pending *> pendings(rows);
  for (size_t i = 0; i < rows; ++i)
    pendings[i] = active_.at(sampledIds[i]);
  absl::StatusOr<std::vector<absl::StatusOr<SampleResult>>> drawn =
      runAndDraw(*plan, pendings);
  if (!drawn.ok()) {
    // The step's sequences fail; the others go on.
    (void)scheduler_.abortStep(*plan);
    for (const DecodeRow &row : plan->decodes)
      end(row.sequence, drawn.status());
    for (const PrefillChunk &chunk : plan->prefills)
      end(chunk.sequence, drawn.status());
    return true;
  }
  std::vector<absl::StatusOr<SampleResult>> &draws = *drawn;

  std::vector<SampledToken> sampled;
  sampled.reserve(rows);
  for (size_t i = 0; i < rows; ++i) {
    SequenceId id = sampledIds[i];
    Pending &pending = *pendings[i];
    GenerationStream &stream = *pending.stream;
    if (stream.numTokens() == 0)
      if (const Sequence *sequence = scheduler_.find(id))
        stream.setCachedPromptTokens(sequence->cachedPromptTokens);
    absl::StatusOr<SampleResult> &token = draws[i];
    int32_t id32 = 0;
    if (token.ok()) {
      id32 = token->token;
      pending.failure = stream.accept(*std::move(token));
    } else if (absl::IsNotFound(token.status())) {
      stream.finishWith(FinishReason::Stop); // nothing fits the constraint
    } else {
      pending.failure = token.status();
    }
    sampled.push_back(
        SampledToken{id, id32, stream.finished() || !pending.failure.ok()});
  }
  absl::StatusOr<std::vector<FinishedSequence>> finished =
      scheduler_.commit(*plan, sampled);
  if (!finished.ok()) {
    failAll(finished.status());
    return true;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.steps;
    stats_.stepTokens += plan->numTokens();
    int64_t sequences = int64_t(plan->decodes.size() + plan->prefills.size());
    stats_.stepSequences += sequences;
    stats_.maxStepSequences = std::max(stats_.maxStepSequences, sequences);
  }
  for (const FinishedSequence &done : *finished) {
    auto it = active_.find(done.id);
    if (it == active_.end())
      continue;
    Pending &pending = *it->second;
    if (!pending.failure.ok()) {
      complete(done.id, pending.failure);
      continue;
    }
    // The scheduler's own limits (max tokens, the context) agree with the
    // stream's; should one end a sequence first, the reason is its.
    pending.stream->finishWith(done.reason == SequenceFinish::Length
                                   ? FinishReason::Length
                                   : FinishReason::Context);
    complete(done.id, pending.stream->finish());
  }
  return true;
}

} // namespace treni
