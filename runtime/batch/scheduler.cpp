//===- scheduler.cpp - iteration-level scheduling of sequences ------------===//

#include "runtime/batch/scheduler.h"

#include <algorithm>
#include <cassert>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "support/status.h"

namespace treni {

absl::Status checkSchedulerConfig(const SchedulerConfig &config,
                                  const KvBlockPool &pool) {
  const std::pair<const char *, int64_t> bounds[] = {
      {"max_num_seqs", config.maxNumSeqs},
      {"max_batch_tokens", config.maxBatchTokens},
      {"prefill_chunk", config.prefillChunk},
      {"max_seq_len", config.maxSeqLen},
  };
  for (const auto &[name, value] : bounds)
    if (value < 1)
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be >= 1, not ", value));
  if (config.maxBatchTokens < config.maxNumSeqs)
    return absl::InvalidArgumentError(absl::StrCat(
        "max_batch_tokens (", config.maxBatchTokens,
        ") is below max_num_seqs (", config.maxNumSeqs,
        "): every running sequence's decode row must fit in one step"));
  int64_t blocksPerSequence = kvBlocksFor(config.maxSeqLen);
  if (pool.numBlocks() < blocksPerSequence)
    return absl::InvalidArgumentError(
        absl::StrCat("the KV pool holds ", pool.numBlocks(), " blocks of ",
                     kKvBlockTokens, " tokens; one sequence of max_seq_len ",
                     config.maxSeqLen, " needs ", blocksPerSequence));
  return absl::OkStatus();
}

absl::StatusOr<Scheduler> Scheduler::create(const SchedulerConfig &config,
                                            KvBlockPool &pool) {
  TRENI_RETURN_IF_ERROR(checkSchedulerConfig(config, pool));
  return Scheduler(config, pool);
}

//===----------------------------------------------------------------------===//
// Requests
//===----------------------------------------------------------------------===//

absl::Status Scheduler::add(SequenceId id, std::vector<int32_t> promptTokens,
                            int64_t maxNewTokens) {
  if (sequences_.contains(id))
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", id, " is already queued or running"));
  if (promptTokens.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", id, ": the prompt is empty"));
  if (int64_t(promptTokens.size()) >= config_.maxSeqLen)
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", id, ": the prompt has ", promptTokens.size(),
                     " tokens; max_seq_len is ", config_.maxSeqLen,
                     ", so at most ", config_.maxSeqLen - 1, " fit"));
  for (size_t index = 0; index < promptTokens.size(); ++index)
    if (promptTokens[index] < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", id, ": prompt token ", index,
                       " has the negative id ", promptTokens[index]));
  if (maxNewTokens < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence ", id, ": max new tokens must be >= 1, not ", maxNewTokens));

  auto sequence = std::make_unique<Sequence>();
  sequence->id = id;
  sequence->promptLength = int64_t(promptTokens.size());
  sequence->tokens = std::move(promptTokens);
  sequence->maxNewTokens = maxNewTokens;
  waiting_.push_back(sequence.get());
  sequences_.emplace(id, std::move(sequence));
  return absl::OkStatus();
}

absl::Status Scheduler::cancel(SequenceId id) {
  auto found = sequences_.find(id);
  if (found == sequences_.end())
    return absl::NotFoundError(
        absl::StrCat("sequence ", id, " is not queued or running"));
  Sequence *sequence = found->second.get();
  if (sequence->running)
    running_.erase(std::find(running_.begin(), running_.end(), sequence));
  else
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), sequence));
  // Safe while a step is outstanding: only schedule() hands blocks out, and
  // the next one comes after the runner has finished with this step.
  releaseBlocks(*sequence);
  sequences_.erase(found);
  return absl::OkStatus();
}

const Sequence *Scheduler::find(SequenceId id) const {
  auto found = sequences_.find(id);
  return found == sequences_.end() ? nullptr : found->second.get();
}

std::vector<const Sequence *> Scheduler::running() const {
  return {running_.begin(), running_.end()};
}

std::vector<const Sequence *> Scheduler::waiting() const {
  return {waiting_.begin(), waiting_.end()};
}

//===----------------------------------------------------------------------===//
// Blocks
//===----------------------------------------------------------------------===//

void Scheduler::releaseBlocks(Sequence &sequence) {
  for (auto block = sequence.blockTable.rbegin();
       block != sequence.blockTable.rend(); ++block)
    pool_->release(*block);
  sequence.blockTable.clear();
}

void Scheduler::cacheFullBlocks(Sequence &sequence) {
  size_t fullBlocks = size_t(sequence.numComputed / kKvBlockTokens);
  while (sequence.blockHashes.size() < fullBlocks) {
    size_t index = sequence.blockHashes.size();
    KvBlockHash parentHash =
        index == 0 ? KvBlockPool::kRootHash : sequence.blockHashes.back();
    sequence.blockHashes.push_back(pool_->cacheFullBlock(
        sequence.blockTable[index], parentHash,
        absl::MakeConstSpan(sequence.tokens)
            .subspan(index * kKvBlockTokens, kKvBlockTokens)));
  }
}

void Scheduler::preempt(Sequence &sequence) {
  // Recompute rather than swap: the tokens are kept, the KV rows are not.
  releaseBlocks(sequence);
  sequence.numComputed = 0;
  sequence.blockHashes.clear();
  sequence.running = false;
  ++sequence.numPreemptions;
  ++numPreemptions_;
  running_.erase(std::find(running_.begin(), running_.end(), &sequence));
  waiting_.push_front(&sequence);
}

bool Scheduler::reserve(Sequence &sequence, int64_t tokens,
                        std::vector<Work> &work, StepPlan &plan) {
  int64_t needed = kvBlocksFor(sequence.numComputed + tokens) -
                   int64_t(sequence.blockTable.size());
  while (pool_->numAllocatable() < needed) {
    Sequence &victim = *running_.back();
    // The victim may already have work this step (a decode row planned
    // before a prefill chunk ran short): it is dropped with its blocks.
    std::erase_if(work,
                  [&](const Work &item) { return item.sequence == &victim; });
    preempt(victim);
    plan.preempted.push_back(victim.id);
    if (&victim == &sequence)
      return false;
  }
  for (int64_t block = 0; block < needed; ++block)
    sequence.blockTable.push_back(*pool_->allocate());
  return true;
}

//===----------------------------------------------------------------------===//
// Steps
//===----------------------------------------------------------------------===//

bool Scheduler::admitFront(int64_t budget, std::vector<Work> &work) {
  Sequence &sequence = *waiting_.front();
  // At most the blocks before the last token: it is always computed (its
  // logits are sampled), and it must not be written into a shared block.
  int64_t maxHitBlocks =
      config_.prefixCaching ? (sequence.numTokens() - 1) / kKvBlockTokens : 0;
  KvPrefixMatch match = pool_->matchPrefix(sequence.tokens, maxHitBlocks);
  int64_t hitBlocks = int64_t(match.blocks.size());
  int64_t hitTokens = hitBlocks * kKvBlockTokens;
  int64_t tokens = std::min(
      {sequence.numTokens() - hitTokens, config_.prefillChunk, budget});
  int64_t newBlocks = kvBlocksFor(hitTokens + tokens) - hitBlocks;
  // Hits nobody holds leave the evictable set when retained.
  int64_t revived = std::count_if(
      match.blocks.begin(), match.blocks.end(),
      [&](KvBlockId block) { return pool_->refCount(block) == 0; });
  if (pool_->numAllocatable() - revived < newBlocks)
    return false;

  for (KvBlockId block : match.blocks)
    pool_->retain(block);
  sequence.blockTable = std::move(match.blocks);
  sequence.blockHashes = std::move(match.hashes);
  for (int64_t block = 0; block < newBlocks; ++block)
    sequence.blockTable.push_back(*pool_->allocate());
  sequence.numComputed = hitTokens;
  pool_->recordPrefixQuery(sequence.numTokens(), hitTokens);
  if (!sequence.admitted)
    sequence.cachedPromptTokens = hitTokens;
  sequence.admitted = true;
  sequence.running = true;
  waiting_.pop_front();
  running_.push_back(&sequence);
  work.push_back({&sequence, tokens});
  return true;
}

absl::StatusOr<StepPlan> Scheduler::schedule() {
  if (stepOutstanding_)
    return absl::FailedPreconditionError(absl::StrCat(
        "the plan of step ", nextStep_, " is neither committed nor aborted"));
  StepPlan plan;
  plan.step = nextStep_;
  std::vector<Work> work;
  auto budgetLeft = [&] {
    int64_t left = config_.maxBatchTokens;
    for (const Work &item : work)
      left -= item.tokens;
    return left;
  };

  // 1. Decode rows. Preemption takes the newest running sequence, which
  // this oldest-first walk has not reached yet, or the current one.
  for (size_t index = 0; index < running_.size(); ++index) {
    Sequence &sequence = *running_[index];
    if (sequence.numUncomputed() != 1)
      continue;
    if (!reserve(sequence, 1, work, plan))
      break;
    work.push_back({&sequence, 1});
  }
  // 2. The next chunk of each running sequence still prefilling.
  for (size_t index = 0; index < running_.size(); ++index) {
    Sequence &sequence = *running_[index];
    int64_t budget = budgetLeft();
    if (budget == 0)
      break;
    if (sequence.numUncomputed() == 1)
      continue;
    int64_t tokens =
        std::min({sequence.numUncomputed(), config_.prefillChunk, budget});
    if (!reserve(sequence, tokens, work, plan))
      break;
    work.push_back({&sequence, tokens});
  }
  // 3. Admissions, unless blocks ran short this step.
  if (plan.preempted.empty())
    while (!waiting_.empty() && numRunning() < config_.maxNumSeqs &&
           budgetLeft() > 0 && admitFront(budgetLeft(), work)) {
    }

  // Even an empty plan is outstanding: every plan is committed or aborted.
  stepOutstanding_ = true;
  return materialize(work, std::move(plan));
}

StepPlan Scheduler::materialize(const std::vector<Work> &work,
                                StepPlan plan) const {
  auto appendTable = [&](const Sequence &sequence) {
    BlockTableRef ref{int64_t(plan.blockTables.size()),
                      int64_t(sequence.blockTable.size())};
    plan.blockTables.insert(plan.blockTables.end(), sequence.blockTable.begin(),
                            sequence.blockTable.end());
    return ref;
  };
  // A one-token step that ends the list is a decode row, whether it
  // follows a sampled token or ends a prompt: the same computation.
  auto isDecode = [](const Work &item) {
    return item.tokens == 1 && item.sequence->numUncomputed() == 1;
  };
  for (const Work &item : work) {
    if (!isDecode(item))
      continue;
    const Sequence &sequence = *item.sequence;
    plan.decodes.push_back({sequence.id, sequence.numComputed,
                            sequence.tokens.back(), appendTable(sequence)});
  }
  for (const Work &item : work) {
    if (isDecode(item))
      continue;
    const Sequence &sequence = *item.sequence;
    auto first = sequence.tokens.begin() + sequence.numComputed;
    plan.prefills.push_back(
        {sequence.id,
         sequence.numComputed,
         {first, first + item.tokens},
         sequence.numComputed + item.tokens == sequence.numTokens(),
         appendTable(sequence)});
  }
  return plan;
}

absl::StatusOr<std::vector<FinishedSequence>>
Scheduler::commit(const StepPlan &plan,
                  absl::Span<const SampledToken> sampled) {
  if (!stepOutstanding_ || plan.step != nextStep_)
    return absl::FailedPreconditionError(
        absl::StrCat("commit of step ", plan.step, ", but ",
                     stepOutstanding_ ? absl::StrCat("step ", nextStep_)
                                      : std::string("no step"),
                     " is outstanding"));
  std::vector<SequenceId> expected = plan.sampledSequences();
  if (sampled.size() != expected.size())
    return absl::InvalidArgumentError(
        absl::StrCat("step ", plan.step, " samples ", expected.size(),
                     " rows, but ", sampled.size(), " tokens were given"));
  for (size_t index = 0; index < sampled.size(); ++index) {
    if (sampled[index].sequence != expected[index])
      return absl::InvalidArgumentError(
          absl::StrCat("sampled token ", index, " is for sequence ",
                       sampled[index].sequence, ", but the plan's sampled row ",
                       index, " is sequence ", expected[index]));
    if (sampled[index].token < 0)
      return absl::InvalidArgumentError(absl::StrCat("sampled token ", index,
                                                     " has the negative id ",
                                                     sampled[index].token));
  }

  stepOutstanding_ = false;
  ++nextStep_;
  std::vector<FinishedSequence> finished;
  // A row's KV rows exist now; null when the sequence was cancelled since
  // schedule() (a new sequence under the same id would be waiting).
  auto advance = [&](SequenceId id, int64_t position,
                     int64_t tokens) -> Sequence * {
    auto found = sequences_.find(id);
    if (found == sequences_.end() || !found->second->running)
      return nullptr;
    Sequence &sequence = *found->second;
    assert(sequence.numComputed == position && "plan and state disagree");
    (void)position;
    sequence.numComputed += tokens;
    if (config_.prefixCaching)
      cacheFullBlocks(sequence);
    return &sequence;
  };
  auto append = [&](Sequence *sequence, const SampledToken &token) {
    if (!sequence)
      return;
    sequence->tokens.push_back(token.token);
    std::optional<SequenceFinish> reason;
    if (token.stop)
      reason = SequenceFinish::Stop;
    else if (sequence->numGenerated() >= sequence->maxNewTokens)
      reason = SequenceFinish::Length;
    else if (sequence->numTokens() - 1 >= config_.maxSeqLen)
      reason = SequenceFinish::Context; // the next decode would not fit
    if (!reason)
      return;
    finished.push_back({sequence->id, *reason,
                        std::vector<int32_t>(sequence->generated().begin(),
                                             sequence->generated().end()),
                        sequence->cachedPromptTokens,
                        sequence->numPreemptions});
    SequenceId id = sequence->id;
    running_.erase(std::find(running_.begin(), running_.end(), sequence));
    releaseBlocks(*sequence);
    sequences_.erase(id);
  };

  size_t next = 0;
  for (const DecodeRow &row : plan.decodes)
    append(advance(row.sequence, row.position, 1), sampled[next++]);
  for (const PrefillChunk &chunk : plan.prefills) {
    Sequence *sequence = advance(chunk.sequence, chunk.firstPosition,
                                 int64_t(chunk.tokens.size()));
    if (chunk.samplesLast)
      append(sequence, sampled[next++]);
  }
  return finished;
}

absl::Status Scheduler::abortStep(const StepPlan &plan) {
  if (!stepOutstanding_ || plan.step != nextStep_)
    return absl::FailedPreconditionError(absl::StrCat(
        "abort of step ", plan.step, ", which is not outstanding"));
  stepOutstanding_ = false;
  ++nextStep_;
  for (Sequence *sequence : running_) {
    size_t keep = size_t(kvBlocksFor(sequence->numComputed));
    while (sequence->blockTable.size() > keep) {
      pool_->release(sequence->blockTable.back());
      sequence->blockTable.pop_back();
    }
  }
  return absl::OkStatus();
}

} // namespace treni
