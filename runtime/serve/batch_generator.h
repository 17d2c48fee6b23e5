//===- batch_generator.h - many generations in one batch loop --*- C++ -*-===//
//
// Continuous batching for the server: any number of threads call generate()
// at once; one loop thread advances all their sequences together. Each
// iteration it
//
//   1. admits the requests that arrived (the Scheduler's waiting queue) and
//      ends the ones whose client cancelled or whose deadline passed;
//   2. asks the Scheduler for a StepPlan (every running sequence's next
//      token plus prompt chunks under the token budget) and the StepRunner
//      to compute it;
//   3. samples each sampled row with its own request's parameters (seed,
//      temperature, top-k/p, alternatives, output constraint) - the step
//      number is the sequence's own token count, so a sequence samples the
//      same tokens whatever it shares a step with - and feeds the token to
//      the request's GenerationStream (text, stops, streaming callback);
//   4. commits the plan, marking sequences whose stream finished, and hands
//      every finished generation back to its caller.
//
// Streaming callbacks run on the loop thread: they must be quick and must
// not call back into the generator. Prefix caching is the KV pool's: a
// prompt whose leading full blocks are cached skips computing them
// (usage.prompt_tokens_details.cached_tokens).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/batch/scheduler.h"
#include "runtime/batch/step_runner.h"
#include "runtime/serve/generation.h"
#include "runtime/text/tokenizer.h"

namespace boost::asio {
class thread_pool;
} // namespace boost::asio

namespace treni {

struct BatchGeneratorOptions {
  /// maxSeqLen 0: the runner's maxSeq().
  SchedulerConfig scheduler;
  std::vector<int32_t> eosIds;
  /// Requests waiting for admission at most (generate() answers
  /// ResourceExhausted beyond).
  int64_t maxWaiting = 1024;
  /// Threads that sample a step's rows in parallel (each row's draw reads
  /// the whole vocabulary; 0: up to 8, as the machine has cores).
  int samplingThreads = 0;
};

/// A snapshot for /metrics.
struct BatchStats {
  int64_t running = 0, waiting = 0;
  KvPoolStats kv;
  int64_t steps = 0;         ///< non-empty steps computed
  int64_t stepTokens = 0;    ///< tokens computed over those steps
  int64_t stepSequences = 0; ///< sequences summed over those steps
  int64_t preemptions = 0;
  int64_t maxStepSequences = 0;
};

class BatchGenerator : public TextGenerator {
public:
  /// Starts the loop over `runner` (which must outlive the generator; its
  /// pool's blocks are the scheduler's). InvalidArgument for a scheduler
  /// configuration the pool cannot serve.
  static absl::StatusOr<std::unique_ptr<BatchGenerator>>
  create(StepRunner &runner, const Tokenizer &tokenizer,
         BatchGeneratorOptions options);
  /// Stops the loop: generations still running end as Cancelled.
  ~BatchGenerator();

  /// Generates for `request` together with whatever else is running; blocks
  /// until it finishes. Errors: an invalid request (InvalidArgument, as
  /// Generator::generate), a full waiting queue (ResourceExhausted), a step
  /// that failed (the runner's error, for the sequences of that step), or a
  /// generator shutting down (Unavailable). Cancellation and deadlines are
  /// finish reasons, as for Generator.
  absl::StatusOr<GenerationResult>
  generate(const GenerationRequest &request,
           const StreamCallback &onDelta = {}) override;
  const Tokenizer &tokenizer() const override { return tokenizer_; }
  bool concurrent() const override { return true; }

  BatchStats stats() const;
  const SchedulerConfig &config() const { return config_; }

private:
  /// One generate() call on its way through the loop.
  struct Pending;

  BatchGenerator(StepRunner &runner, const Tokenizer &tokenizer,
                 BatchGeneratorOptions options, Scheduler scheduler,
                 std::unique_ptr<KvBlockPool> pool);
  void loop();
  /// Takes what arrived (unlocking `lock`), ends what was cancelled.
  void admit(std::unique_lock<std::mutex> &lock);
  /// One scheduled step: compute, sample, commit. False when the plan was
  /// empty.
  bool step();
  /// Hands `pending` its result and forgets it.
  void complete(SequenceId id, absl::StatusOr<GenerationResult> result);
  /// Cancels `id` in the scheduler (its blocks go back) and completes it.
  void end(SequenceId id, absl::StatusOr<GenerationResult> result);
  /// The sequences taken in and not completed, for loops that end some.
  std::vector<SequenceId> activeIds() const;
  /// Runs `plan` and draws every sampled row (pendings in
  /// plan.sampledSequences() order): on the runner when it samples and no
  /// row has a constraint, else from its logits here, in parallel. An error
  /// is the whole step's; a row's own (a constraint nothing fits) is its.
  absl::StatusOr<std::vector<absl::StatusOr<SampleResult>>>
  runAndDraw(const StepPlan &plan, const std::vector<Pending *> &pendings);
  /// Samples `pending`'s next token from its row of logits.
  absl::StatusOr<SampleResult> sample(Pending &pending,
                                      absl::Span<const float> logits);
  void publishStats();
  void publishStatsLocked(); ///< under mutex_

  StepRunner &runner_;
  const Tokenizer &tokenizer_;
  BatchGeneratorOptions options_;
  SchedulerConfig config_;
  std::unique_ptr<KvBlockPool> pool_; ///< the scheduler's; loop thread only
  Scheduler scheduler_;               ///< loop thread only
  std::vector<std::string> pieces_;   ///< constraint pieces, lazily
  /// Samples the rows of a step in parallel; null with one thread.
  std::unique_ptr<boost::asio::thread_pool> samplers_;
  size_t samplingThreads_ = 1;
  /// Whether runner_.runSampled works (until it answers Unimplemented).
  bool runnerSamples_ = true;
  absl::flat_hash_map<SequenceId, Pending *> active_; ///< loop thread only
  SequenceId nextId_ = 1;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  /// generate() calls that queued a request and have not returned; the
  /// destructor waits for none (guarded by mutex_).
  int64_t callers_ = 0;
  std::condition_variable callersLeft_;
  std::deque<Pending *> arrived_; ///< guarded by mutex_
  bool stopping_ = false;         ///< guarded by mutex_
  BatchStats stats_;              ///< guarded by mutex_
  std::thread thread_;
};

} // namespace treni
