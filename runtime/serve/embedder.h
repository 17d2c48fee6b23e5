//===- embedder.h - embeddings from an engine's @embed ----------*- C++ -*-===//
//
// An embedding model is a decoder whose final-norm hidden states are pooled
// into one vector per input (Qwen3-Embedding: the last token's). The Embedder
// runs many inputs through a StepRunner's @embed together: each step takes
// the next chunk of every input it has admitted (as many tokens as the step
// holds), each input through block tables of its own in the runner's pool,
// so a long input is computed chunk by chunk against its earlier chunks'
// K/V and inputs are admitted while blocks are free. Nothing is kept once an
// input is pooled: the blocks go back for the next inputs. Vectors are
// L2-normalised; `dimensions` truncates them first (Matryoshka models).
//
// The pooling is the checkpoint's: sentence-transformers' modules.json names
// a Pooling module whose config.json picks last-token, mean or CLS pooling;
// without one, a decoder's embedding is its last token's state.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/batch/step_runner.h"

namespace treni {

enum class Pooling { LastToken, Mean, Cls };

/// "last_token", "mean" or "cls".
const char *poolingName(Pooling pooling);

/// The pooling a model directory declares: modules.json's
/// sentence_transformers.models.Pooling module, its config.json's
/// pooling_mode_lasttoken / pooling_mode_mean_tokens / pooling_mode_cls_token
/// (exactly one set). No modules.json, or one without a Pooling module: last
/// token. A file that is not JSON, larger than 1 MiB, asks for another mode
/// (max, weighted mean) or several, or names a path outside the directory, is
/// an InvalidArgument naming the file.
absl::StatusOr<Pooling> readPooling(const std::string &modelDir);

/// Whether `modelDir` is a sentence-transformers model (a modules.json with a
/// Pooling module): `treni serve` then serves it as an embedding model.
bool declaresEmbeddingModel(const std::string &modelDir);

/// What runPromptSteps hands back of each computed chunk of an input.
struct PromptChunk {
  size_t input = 0;             ///< index into the inputs
  int64_t first = 0;            ///< the chunk's first position
  int64_t count = 0;            ///< its tokens
  bool last = false;            ///< it ends the input
  absl::Span<const float> rows; ///< see StepOutput
};
enum class StepOutput {
  /// @embed: the chunk's rows' hidden states (count x hiddenSize).
  HiddenStates,
  /// @step: the logits of the input's last position (vocabSize), only on
  /// its last chunk (empty on the others).
  LastLogits,
};

/// The longest prompt-only input `runner` takes: its positions, and what its
/// pool holds.
int64_t longestPrompt(const StepRunner &runner);

/// Computes prompt-only inputs (token ids, 1 to longestPrompt each)
/// through `runner` in shared steps of at most `maxStepTokens` rows: each
/// step takes the next chunk of every admitted input (oldest first), each
/// through block tables of its own; inputs are admitted while the pool has
/// blocks for them whole and give them back after their last chunk. Calls
/// `onChunk` for every chunk in order; returns the steps run. Stops with
/// Cancelled when `cancel` turns true and DeadlineExceeded past `deadline`
/// (between steps). The runner must have no other user meanwhile.
absl::StatusOr<int64_t> runPromptSteps(
    StepRunner &runner, absl::Span<const std::vector<int32_t>> inputs,
    int64_t maxStepTokens, StepOutput output, const std::atomic<bool> *cancel,
    std::chrono::steady_clock::time_point deadline,
    absl::FunctionRef<void(const PromptChunk &)> onChunk);

class Embedder {
public:
  /// Over `runner`'s @embed and KV pool (which must outlive it and not be
  /// used by anything else), steps of at most `maxStepTokens` rows.
  Embedder(StepRunner &runner, Pooling pooling, int64_t maxStepTokens);

  /// One L2-normalised vector per input (token ids, 1 to maxInputTokens()
  /// each), in input order; `dimensions` > 0 keeps the first `dimensions`
  /// values before normalising (at most the hidden size). Stops with
  /// Cancelled when `cancel` turns true and DeadlineExceeded past
  /// `deadline`, checked between steps. Calls are serialised.
  absl::StatusOr<std::vector<std::vector<float>>>
  embed(absl::Span<const std::vector<int32_t>> inputs, int64_t dimensions = 0,
        const std::atomic<bool> *cancel = nullptr,
        std::chrono::steady_clock::time_point deadline =
            std::chrono::steady_clock::time_point::max());

  /// The longest input: the runner's positions and what its pool holds.
  int64_t maxInputTokens() const;
  int64_t hiddenSize() const { return runner_.hiddenSize(); }
  Pooling pooling() const { return pooling_; }
  /// Steps run since creation (for tests and /metrics).
  int64_t steps() const { return steps_; }

private:
  StepRunner &runner_;
  Pooling pooling_;
  int64_t maxStepTokens_;
  std::mutex mutex_;
  std::atomic<int64_t> steps_{0};
};

} // namespace treni
