//===- generation.h - prompt ids to text, stops, streaming ---*- C++ -*-===//
//
// The generation loop shared by `treni run`, `treni chat` and `treni serve`:
// one Engine and its Tokenizer turn prompt ids into generated tokens, each
// with its log-probability, entropy and top alternatives, and into text.
//
//  - Stops: an EOS id (the tokenizer config's eos_token and
//    generation_config.json's eos_token_id), a `stop` string, max_tokens, or
//    the end of the KV cache (max_seq). Stop strings are matched on the
//    detokenized text, across token boundaries; text that might be the start
//    of a stop string is held back, so a stop string is never streamed.
//  - Streaming: the callback gets text deltas that are always complete UTF-8
//    (Tokenizer::StreamDecoder holds the bytes of a split character) and the
//    tokens whose text the delta releases.
//  - Cancellation (a flag, or the callback returning false) and a deadline
//    are checked every token.
//  - An OutputConstraint (output_constraints.h) masks tokens whose text would
//    break it: the server uses it to force a JSON object for
//    response_format json_object and for the arguments of a forced tool call.
//
//  - Prefix caching (as llama.cpp's cache_prompt and vLLM's prefix caching
//    do for one sequence): the Generator remembers which ids its engine's KV
//    cache holds (the last prompt and the tokens fed back through decode) and
//    prefills only what follows the longest common prefix of a new prompt
//    with them (at least the prompt's last token, whose logits are needed).
//    The memory is dropped when it may be wrong: an engine error, or another
//    caller having used the engine since (Engine::cacheWrites()). A cancelled
//    or timed-out generation stops between engine calls, so what it fed is
//    still known and stays reusable.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/exec/sampler.h"
#include "runtime/serve/awareness.h"
#include "runtime/serve/output_constraints.h"
#include "runtime/text/tokenizer.h"
// Model loading (loadModel, LoadedModel, readEosIds) lives in
// loaded_model.h; included here for the callers that still reach it through
// this header.
#include "runtime/serve/loaded_model.h"

namespace treni {

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

enum class FinishReason {
  Eos,       ///< an EOS token
  Stop,      ///< a stop string, or the constraint completed
  Length,    ///< max_tokens
  Context,   ///< the KV cache is full (max_seq)
  Cancelled, ///< the cancel flag or the stream callback
  Timeout,   ///< the deadline passed
};
/// "eos", "stop", "length", "context", "cancelled", "timeout".
const char *toString(FinishReason reason);

struct GeneratedToken {
  int32_t id;
  float logprob; ///< under the unmodified distribution
  float entropy; ///< nats, under the unmodified distribution
  std::vector<TokenChoice> alternatives;
};

struct GenerationRequest {
  std::vector<int32_t> promptIds;
  SamplingParams sampling;
  int64_t maxTokens = 16; ///< new tokens at most
  std::vector<std::string> stop;
  bool ignoreEos = false;
  /// Checked before every token; set by another thread to cancel.
  const std::atomic<bool> *cancel = nullptr;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  /// When the request was queued (for the awareness queue time).
  std::optional<std::chrono::steady_clock::time_point> submitted;
  /// Constrained decoding; owned by the caller, mutated by generate().
  OutputConstraint *constraint = nullptr;
  double lowConfidenceThreshold = kDefaultLowConfidenceProbability;
  /// Test hook: sleep this long after every token (queue and cancellation
  /// tests need slow requests on a fast fixture model).
  std::chrono::milliseconds tokenDelay{0};
};

struct GenerationResult {
  /// The text of the generated tokens: special tokens skipped, a matched
  /// stop string and what followed it removed, a completed constraint's
  /// closing text appended when max_tokens cut it short.
  std::string text;
  std::vector<GeneratedToken> tokens;
  FinishReason finishReason = FinishReason::Length;
  std::string matchedStop; ///< the stop string that ended it, if any
  Awareness awareness;     ///< includes the timing
};

/// A text delta (complete UTF-8; may be empty when only tokens are released)
/// and the tokens generated since the previous call. Return false to cancel.
using StreamCallback = std::function<bool(
    std::string_view delta, absl::Span<const GeneratedToken> tokens)>;

struct GeneratorOptions {
  int64_t maxSeq = 4096; ///< the engine's KV cache length
  std::vector<int32_t> eosIds;
  /// Reuse the KV cache of the longest prefix a prompt shares with the ids
  /// already there (`--no-prefix-cache` turns it off: every prompt is
  /// prefilled from position 0).
  bool prefixCache = true;
};

/// What turns a request into generated text for a caller that does not
/// care how: one sequence on an engine (Generator), or many sharing batch
/// steps (BatchGenerator, runtime/serve/batch_generator.h). The agent
/// executor and the server's routes take this.
class TextGenerator {
public:
  virtual ~TextGenerator() = default;
  /// Generates for `request`. Errors: an empty prompt, a prompt that does not
  /// fit max_seq, an id outside the vocabulary, invalid sampling parameters
  /// (InvalidArgument), or an engine failure. A stream that was cancelled or
  /// timed out is not an error: see finishReason.
  virtual absl::StatusOr<GenerationResult>
  generate(const GenerationRequest &request,
           const StreamCallback &onDelta = {}) = 0;
  virtual const Tokenizer &tokenizer() const = 0;
  /// Whether generate() may be called from several threads at once.
  virtual bool concurrent() const = 0;

  /// The bytes token `id` stands for on its own (its byte-level BPE bytes,
  /// possibly part of a UTF-8 character; a special token's content).
  std::string tokenBytes(int32_t id) const;
};

/// One sequence at a time on one engine; not thread-safe.
class Generator : public TextGenerator {
public:
  Generator(Engine &engine, const Tokenizer &tokenizer,
            GeneratorOptions options);

  absl::StatusOr<GenerationResult>
  generate(const GenerationRequest &request,
           const StreamCallback &onDelta = {}) override;
  const Tokenizer &tokenizer() const override { return tokenizer_; }
  bool concurrent() const override { return false; }

  const GeneratorOptions &options() const { return options_; }
  Engine &engine() { return engine_; }

  /// The ids the engine's KV cache holds at positions 0.. as far as this
  /// Generator knows (empty when unknown, or with prefixCache off).
  absl::Span<const int32_t> cachedIds() const;
  /// Forgets what the KV cache holds: the next prompt is prefilled whole.
  void forgetCache();

private:
  const std::vector<std::string> &vocabBytes();

  /// The state of one generate() call (generation.cpp).
  class Run;

  Engine &engine_;
  const Tokenizer &tokenizer_;
  GeneratorOptions options_;
  std::vector<std::string> vocabBytes_; ///< lazily, for constrained decoding
  /// What KV-cache rows 0.. hold after this Generator's last engine call,
  /// and the engine's cacheWrites() right after it.
  std::vector<int32_t> cachedIds_;
  uint64_t cacheWrites_ = 0;
};

/// Length of the longest suffix of `text` that is a proper prefix of one of
/// `stops` (the text to hold back while streaming).
size_t stopPrefixHoldback(std::string_view text,
                          absl::Span<const std::string> stops);

//===----------------------------------------------------------------------===//
// The engine-independent half of a generation
//===----------------------------------------------------------------------===//

/// Whether `request` can run against a cache of `maxSeq` positions and a
/// vocabulary of `vocab` ids (InvalidArgument naming the problem).
absl::Status validateGeneration(const GenerationRequest &request,
                                int64_t maxSeq, int64_t vocab);

/// The bytes token `id` stands for on its own (see Generator::tokenBytes).
std::string tokenBytesOf(const Tokenizer &tokenizer, int32_t id);

/// Every id's bytes for output constraints: empty for special tokens and ids
/// the tokenizer lacks (an empty entry is never allowed).
std::vector<std::string> constraintPieces(const Tokenizer &tokenizer,
                                          int64_t vocab);

/// The token `constraint` allows that the sampler would pick from `logits`
/// (greedy: the best allowed one; sampling: a draw from the allowed ones
/// with the same (seed, step)), its logprob under the unmodified
/// distribution; `sampled` (the unconstrained result) gives the entropy and
/// alternatives. NotFound when no token can continue the output.
absl::StatusOr<SampleResult>
sampleConstrained(absl::Span<const float> logits, const SampleResult &sampled,
                  const SamplingParams &params, uint64_t step,
                  const OutputConstraint &constraint,
                  absl::Span<const std::string> pieces);

/// What one generation has produced so far, whoever computes its tokens (the
/// Generator's engine calls, or a batch step shared with other sequences):
/// the tokens, their text, the stop checks, the stream of deltas, the
/// cancellation and deadline checks, the timing and the awareness summary.
/// A caller feeds each sampled token to accept() until finished(), then
/// calls finish() once.
class GenerationStream {
public:
  using Clock = std::chrono::steady_clock;

  /// `request` and `onDelta` must outlive the stream; `maxSeq` is the
  /// positions the sequence may reach (the Context limit).
  GenerationStream(const Tokenizer &tokenizer, absl::Span<const int32_t> eosIds,
                   int64_t maxSeq, const GenerationRequest &request,
                   const StreamCallback &onDelta);

  /// Takes the next token (after any constraint chose it): its text, the
  /// constraint's progress, EOS, stop strings and the limits; streams what
  /// is safe to stream. The first token sets the prefill time.
  absl::Status accept(SampleResult sample);
  /// Sets the finish reason when the request was cancelled (its flag, or the
  /// stream callback returned false) or its deadline passed; true when the
  /// generation is over for any reason.
  bool interrupted();
  /// Ends the generation for a reason found outside (nothing fits a
  /// constraint, the sequence's context ended); a reason already set stays.
  void finishWith(FinishReason reason);
  bool finished() const { return finish_.has_value(); }
  /// Prompt tokens whose KV rows were reused (usage's cached_tokens).
  void setCachedPromptTokens(int64_t tokens);

  int64_t numTokens() const { return int64_t(result_.tokens.size()); }
  /// The last token accepted; -1 before the first.
  int32_t lastToken() const { return previous_; }
  const GenerationRequest &request() const { return request_; }

  /// The held-back text, a constraint's closing text, the last delta and the
  /// awareness summary. Once, after finished().
  GenerationResult finish();

private:
  bool isEos(int32_t id) const;
  absl::Status appendText(int32_t id);
  bool matchStop(size_t before);
  void checkLimits();
  void emit(size_t upto);

  const Tokenizer &tokenizer_;
  std::vector<int32_t> eosIds_;
  int64_t maxSeq_;
  const GenerationRequest &request_;
  const StreamCallback &onDelta_;
  Clock::time_point start_, firstToken_;
  GenerationResult result_;
  Tokenizer::StreamDecoder decoder_;
  size_t emitted_ = 0;        ///< bytes of the text streamed
  size_t releasedTokens_ = 0; ///< tokens handed to the callback
  bool callbackCancelled_ = false;
  size_t longestStop_ = 0;
  std::optional<FinishReason> finish_;
  int32_t previous_ = -1;
  bool stoppedByString_ = false;
};

} // namespace treni
