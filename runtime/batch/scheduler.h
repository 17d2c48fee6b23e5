//===- scheduler.h - iteration-level scheduling of sequences ----*- C++ -*-===//
//
// Continuous batching: every engine step takes the next decode token of each
// running sequence plus chunks of prompts, under a token budget, so a long
// prompt never stalls the streams already running. The scheduler is pure,
// deterministic bookkeeping over a KvBlockPool; it runs no model. A step is
//
//   StepPlan plan = schedule();            // rows, chunks, block tables
//   ... the runner computes the plan and samples its sampled rows ...
//   commit(plan, sampledTokens);           // append, cache, finish
//
// and exactly one plan is outstanding at a time: blocks released between
// schedule() and commit() (a cancellation) are handed out again only by a
// later schedule(), after the runner has finished writing them.
//
// Policy (first come, first served):
//   1. decode rows of the running sequences, oldest first (each one token;
//      max_batch_tokens >= max_num_seqs, so they always fit);
//   2. the next chunk of each running sequence still prefilling, at most
//      prefill_chunk tokens, within what is left of the budget;
//   3. when nothing was preempted this step: admissions from the front of
//      the waiting queue while the budget, max_num_seqs and the free blocks
//      allow (the front blocks the rest: no overtaking). A new sequence
//      first takes the full blocks of its prompt found in the prefix cache;
//      its last token is always computed, so there are logits to sample.
// When a running sequence needs a block and none can be allocated, the
// newest running sequence (possibly itself) is preempted: its blocks are
// released and it goes to the front of the waiting queue, keeping its
// tokens; readmitted, it prefills prompt + generated tokens again (its full
// blocks are often still in the prefix cache) and goes on sampling where it
// stopped.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/batch/sequence.h"
#include "runtime/batch/step_plan.h"

namespace treni {

struct SchedulerConfig {
  int64_t maxNumSeqs = 256;      ///< running sequences at once (--max-num-seqs)
  int64_t maxBatchTokens = 2048; ///< tokens computed per step, all rows
  int64_t prefillChunk = 512;    ///< tokens of one prompt per step
  int64_t maxSeqLen = 4096;      ///< positions of one sequence (--max-seq)
  /// Full blocks enter the prefix cache and admissions look them up
  /// (--no-prefix-cache: every prompt is computed whole).
  bool prefixCaching = true;
};

/// Why a configuration cannot schedule over `pool`: a bound below 1, a token
/// budget smaller than max_num_seqs (the decode rows would not fit), or a
/// pool that cannot hold one sequence of max_seq_len (it could never finish).
absl::Status checkSchedulerConfig(const SchedulerConfig &config,
                                  const KvBlockPool &pool);

class Scheduler {
public:
  /// A scheduler over `pool`, which must outlive it and have no other user.
  static absl::StatusOr<Scheduler> create(const SchedulerConfig &config,
                                          KvBlockPool &pool);

  /// Queues a request at the back of the waiting queue. InvalidArgument for
  /// a duplicate id, an empty prompt, a negative token id, a prompt of
  /// max_seq_len tokens or more, or maxNewTokens < 1.
  absl::Status add(SequenceId id, std::vector<int32_t> promptTokens,
                   int64_t maxNewTokens);

  /// Plans the next step (empty when nothing can run; it is committed all
  /// the same). FailedPrecondition while the previous plan is neither
  /// committed nor aborted.
  absl::StatusOr<StepPlan> schedule();

  /// Applies the outstanding plan: its rows' KV rows now exist (newly full
  /// blocks enter the prefix cache) and `sampled` holds one token per
  /// sampled row, in plan.sampledSequences() order. Returns the sequences
  /// that finished (blocks released, no longer known here). Rows of
  /// sequences cancelled since schedule() are skipped. Nothing changes on an
  /// error (a stale plan, or results that do not match it).
  absl::StatusOr<std::vector<FinishedSequence>>
  commit(const StepPlan &plan, absl::Span<const SampledToken> sampled);

  /// The runner could not compute the outstanding plan: its sequences keep
  /// what was computed before it (they are scheduled again) and the blocks
  /// allocated for it are released.
  absl::Status abortStep(const StepPlan &plan);

  /// Ends a running or waiting sequence (the client went away), releasing
  /// its blocks at once. NotFound when `id` is not held (finished, never
  /// added, or cancelled already).
  absl::Status cancel(SequenceId id);

  int64_t numRunning() const { return int64_t(running_.size()); }
  int64_t numWaiting() const { return int64_t(waiting_.size()); }
  bool hasWork() const { return !running_.empty() || !waiting_.empty(); }
  /// Preemptions since creation.
  int64_t numPreemptions() const { return numPreemptions_; }

  /// A held sequence, or null.
  const Sequence *find(SequenceId id) const;
  /// Running sequences, oldest admission first.
  std::vector<const Sequence *> running() const;
  /// Waiting sequences, next to admit first.
  std::vector<const Sequence *> waiting() const;

  const SchedulerConfig &config() const { return config_; }
  const KvBlockPool &pool() const { return *pool_; }

private:
  Scheduler(const SchedulerConfig &config, KvBlockPool &pool)
      : config_(config), pool_(&pool) {}

  /// A sequence's work decided for this step (materialised into the plan at
  /// the end of schedule(), once preemptions can no longer drop it).
  struct Work {
    Sequence *sequence;
    int64_t tokens;
  };

  /// Grows `sequence`'s table to cover `tokens` more positions, preempting
  /// the newest running sequences while blocks are short. False when
  /// `sequence` itself was preempted.
  bool reserve(Sequence &sequence, int64_t tokens, std::vector<Work> &work,
               StepPlan &plan);
  void preempt(Sequence &sequence);
  /// Tries to admit the front of the waiting queue within `budget` tokens.
  bool admitFront(int64_t budget, std::vector<Work> &work);
  /// Releases the table back to front, so a sequence's deepest blocks are
  /// evicted before the prefix blocks that lead to them.
  void releaseBlocks(Sequence &sequence);
  /// Enters the full blocks computed so far into the prefix cache.
  void cacheFullBlocks(Sequence &sequence);
  StepPlan materialize(const std::vector<Work> &work, StepPlan plan) const;

  SchedulerConfig config_;
  KvBlockPool *pool_;
  absl::flat_hash_map<SequenceId, std::unique_ptr<Sequence>> sequences_;
  std::vector<Sequence *> running_; ///< admission order: newest at the back
  std::deque<Sequence *> waiting_;
  uint64_t nextStep_ = 0;
  bool stepOutstanding_ = false;
  int64_t numPreemptions_ = 0;
};

} // namespace treni
