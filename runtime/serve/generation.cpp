//===- generation.cpp - prompt ids -> text, with stops and streaming -----===//

#include "runtime/serve/generation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "support/status.h"

namespace treni {

const char *toString(FinishReason reason) {
  switch (reason) {
  case FinishReason::Eos:
    return "eos";
  case FinishReason::Stop:
    return "stop";
  case FinishReason::Length:
    return "length";
  case FinishReason::Context:
    return "context";
  case FinishReason::Cancelled:
    return "cancelled";
  case FinishReason::Timeout:
    return "timeout";
  }
  return "unknown";
}

size_t stopPrefixHoldback(std::string_view text,
                          absl::Span<const std::string> stops) {
  size_t hold = 0;
  for (const std::string &stop : stops) {
    size_t longest =
        std::min(stop.size() - (stop.empty() ? 0 : 1), text.size());
    for (size_t n = longest; n > hold; --n)
      if (text.substr(text.size() - n) == std::string_view(stop).substr(0, n)) {
        hold = n;
        break;
      }
  }
  return hold;
}

namespace {

/// GPT-2's byte-level alphabet, inverted: code point -> byte.
const std::vector<int> &byteLevelDecoder() {
  static const std::vector<int> table = [] {
    std::vector<int> inverse(512, -1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                       (b >= 174 && b <= 255);
      inverse[printable ? b : next++] = b;
    }
    return inverse;
  }();
  return table;
}

/// Decodes one UTF-8 code point at `pos` (advancing it); -1 if malformed.
int32_t nextCodePoint(std::string_view text, size_t &pos) {
  unsigned char lead = text[pos];
  int length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  if (pos + length > text.size())
    return -1;
  int32_t cp = length == 1 ? lead : lead & (0xFF >> (length + 1));
  for (int i = 1; i < length; ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += length;
  return cp;
}

double secondsBetween(std::chrono::steady_clock::time_point from,
                      std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

} // namespace

absl::Status validateGeneration(const GenerationRequest &request,
                                int64_t maxSeq, int64_t vocab) {
  const std::vector<int32_t> &prompt = request.promptIds;
  if (prompt.empty())
    return absl::InvalidArgumentError("the prompt is empty");
  if (int64_t(prompt.size()) >= maxSeq)
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", prompt.size(), " tokens; max_seq is ",
                     maxSeq, ", so at most ", maxSeq - 1, " fit"));
  for (int32_t id : prompt)
    if (id < 0 || id >= vocab)
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id ", id,
                       " is outside the vocabulary [0, ", vocab, ")"));
  if (request.maxTokens < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 0, not ", request.maxTokens));
  TRENI_RETURN_IF_ERROR(validate(request.sampling));
  for (const std::string &stop : request.stop)
    if (stop.empty())
      return absl::InvalidArgumentError("a stop string is empty");
  return absl::OkStatus();
}

std::string tokenBytesOf(const Tokenizer &tokenizer, int32_t id) {
  for (const AddedToken &added : tokenizer.addedTokens())
    if (added.id == id)
      return added.content;
  std::optional<std::string> token = tokenizer.idToToken(id);
  if (!token)
    return "";
  const std::vector<int> &decoder = byteLevelDecoder();
  std::string bytes;
  for (size_t pos = 0; pos < token->size();) {
    int32_t cp = nextCodePoint(*token, pos);
    if (cp < 0 || cp >= int32_t(decoder.size()) || decoder[cp] < 0) {
      // Not a byte-level token: what the decoder makes of it alone.
      auto text = tokenizer.decode({id});
      return text.ok() ? *text : "";
    }
    bytes += char(decoder[cp]);
  }
  return bytes;
}

std::vector<std::string> constraintPieces(const Tokenizer &tokenizer,
                                          int64_t vocab) {
  std::vector<std::string> pieces(size_t(std::max<int64_t>(vocab, 0)));
  for (int64_t id = 0; id < vocab; ++id)
    // Special tokens (and ids the tokenizer lacks) never continue a
    // constrained output: an empty entry is never allowed.
    if (id < tokenizer.vocabSize() && !tokenizer.isSpecial(int32_t(id)))
      pieces[id] = tokenBytesOf(tokenizer, int32_t(id));
  return pieces;
}

absl::StatusOr<SampleResult>
sampleConstrained(absl::Span<const float> logits, const SampleResult &sampled,
                  const SamplingParams &params, uint64_t step,
                  const OutputConstraint &constraint,
                  absl::Span<const std::string> pieces) {
  const float negInf = -std::numeric_limits<float>::infinity();
  auto allowed = [&](size_t id) {
    return id < pieces.size() && !pieces[id].empty() &&
           constraint.allows(pieces[id]);
  };
  int32_t token = -1;
  if (params.temperature == 0) {
    // Greedy: only tokens that beat the best allowed one so far are checked.
    for (size_t id = 0; id < logits.size(); ++id)
      if ((token < 0 || logits[id] > logits[token]) &&
          std::isfinite(logits[id]) && allowed(id))
        token = int32_t(id);
  } else {
    std::vector<float> masked(logits.size(), negInf);
    bool any = false;
    for (size_t id = 0; id < logits.size(); ++id)
      if (std::isfinite(logits[id]) && allowed(id)) {
        masked[id] = logits[id];
        any = true;
      }
    if (any) {
      SamplingParams maskedParams = params;
      maskedParams.numAlternatives = 0;
      TRENI_ASSIGN_OR_RETURN(SampleResult picked,
                             sampleCpu(masked, maskedParams, step));
      token = picked.token;
    }
  }
  if (token < 0)
    return absl::NotFoundError("no token can continue the constrained output");
  // The logprob under the unmodified distribution, as for any other token.
  float maxLogit = negInf;
  for (float l : logits)
    maxLogit = std::max(maxLogit, l);
  double sum = 0;
  for (float l : logits)
    if (std::isfinite(l))
      sum += std::exp(double(l) - maxLogit);
  SampleResult result = sampled;
  result.token = token;
  result.logprob = float(double(logits[token]) - maxLogit - std::log(sum));
  return result;
}

//===----------------------------------------------------------------------===//
// Generator
//===----------------------------------------------------------------------===//

Generator::Generator(Engine &engine, const Tokenizer &tokenizer,
                     GeneratorOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)) {}

std::string TextGenerator::tokenBytes(int32_t id) const {
  return tokenBytesOf(tokenizer(), id);
}

absl::Span<const int32_t> Generator::cachedIds() const {
  if (engine_.cacheWrites() != cacheWrites_)
    return {};
  return cachedIds_;
}

void Generator::forgetCache() { cachedIds_.clear(); }

const std::vector<std::string> &Generator::vocabBytes() {
  if (vocabBytes_.empty())
    vocabBytes_ = constraintPieces(tokenizer_, engine_.vocabSize());
  return vocabBytes_;
}

//===----------------------------------------------------------------------===//
// GenerationStream
//===----------------------------------------------------------------------===//

GenerationStream::GenerationStream(const Tokenizer &tokenizer,
                                   absl::Span<const int32_t> eosIds,
                                   int64_t maxSeq,
                                   const GenerationRequest &request,
                                   const StreamCallback &onDelta)
    : tokenizer_(tokenizer), eosIds_(eosIds.begin(), eosIds.end()),
      maxSeq_(maxSeq), request_(request), onDelta_(onDelta),
      start_(Clock::now()), firstToken_(start_),
      decoder_(tokenizer, /*skipSpecialTokens=*/true) {
  GenerationTiming &timing = result_.awareness.timing;
  timing.promptTokens = int64_t(request.promptIds.size());
  if (request.submitted)
    timing.queueSeconds =
        std::max(0.0, secondsBetween(*request.submitted, start_));
  for (const std::string &stop : request.stop)
    longestStop_ = std::max(longestStop_, stop.size());
  if (request.maxTokens == 0)
    finish_ = FinishReason::Length;
}

void GenerationStream::setCachedPromptTokens(int64_t tokens) {
  result_.awareness.timing.cachedPromptTokens = tokens;
}

void GenerationStream::finishWith(FinishReason reason) {
  if (!finish_)
    finish_ = reason;
}

absl::Status GenerationStream::accept(SampleResult sample) {
  if (result_.tokens.empty()) {
    firstToken_ = Clock::now();
    result_.awareness.timing.prefillSeconds =
        secondsBetween(start_, firstToken_);
  }
  result_.tokens.push_back(GeneratedToken{sample.token, sample.logprob,
                                          sample.entropy,
                                          std::move(sample.alternatives)});
  previous_ = sample.token;

  if (!request_.ignoreEos && !request_.constraint && isEos(previous_)) {
    finish_ = FinishReason::Eos;
    return absl::OkStatus();
  }
  size_t before = result_.text.size();
  TRENI_RETURN_IF_ERROR(appendText(previous_));
  if (matchStop(before))
    return absl::OkStatus();
  checkLimits();
  if (!finish_) {
    emit(result_.text.size() - stopPrefixHoldback(result_.text, request_.stop));
    if (request_.tokenDelay.count() > 0)
      std::this_thread::sleep_for(request_.tokenDelay);
  }
  return absl::OkStatus();
}

bool GenerationStream::isEos(int32_t id) const {
  return std::find(eosIds_.begin(), eosIds_.end(), id) != eosIds_.end();
}

/// The token's text (to the output) and bytes (to the constraint).
absl::Status GenerationStream::appendText(int32_t id) {
  // An id past the tokenizer's vocabulary (models pad their embedding
  // table) has no text.
  if (id < tokenizer_.vocabSize() && tokenizer_.idToToken(id)) {
    TRENI_ASSIGN_OR_RETURN(std::string piece, decoder_.push(id));
    result_.text += piece;
  }
  if (request_.constraint)
    request_.constraint->acceptAll(tokenBytesOf(tokenizer_, id));
  return absl::OkStatus();
}

/// Whether a stop string now appears in the text (it may have started in
/// text already held back); cuts the text there and finishes.
bool GenerationStream::matchStop(size_t before) {
  std::string &text = result_.text;
  if (longestStop_ == 0 || text.size() <= before)
    return false;
  size_t from = before >= longestStop_ - 1 ? before - (longestStop_ - 1) : 0;
  size_t best = std::string::npos;
  for (const std::string &stop : request_.stop) {
    size_t at = text.find(stop, from);
    if (at < best) {
      best = at;
      result_.matchedStop = stop;
    }
  }
  if (best == std::string::npos)
    return false;
  text.resize(best);
  stoppedByString_ = true;
  finish_ = FinishReason::Stop;
  return true;
}

/// A completed constraint, max_tokens, or a full KV cache.
void GenerationStream::checkLimits() {
  if (request_.constraint && request_.constraint->isComplete())
    finish_ = FinishReason::Stop;
  else if (int64_t(result_.tokens.size()) >= request_.maxTokens)
    finish_ = FinishReason::Length;
  else if (int64_t(request_.promptIds.size() + result_.tokens.size()) - 1 >=
           maxSeq_)
    finish_ = FinishReason::Context; // the next decode would not fit
}

bool GenerationStream::interrupted() {
  if (finish_)
    return true;
  if (callbackCancelled_ ||
      (request_.cancel && request_.cancel->load(std::memory_order_relaxed)))
    finish_ = FinishReason::Cancelled;
  else if (request_.deadline && Clock::now() >= *request_.deadline)
    finish_ = FinishReason::Timeout;
  return finish_.has_value();
}

/// Streams the text up to byte `upto` and the tokens not yet released.
void GenerationStream::emit(size_t upto) {
  if (!onDelta_ || callbackCancelled_)
    return;
  upto = std::max(upto, emitted_);
  if (upto == emitted_ && releasedTokens_ == result_.tokens.size())
    return;
  std::string_view delta =
      std::string_view(result_.text).substr(emitted_, upto - emitted_);
  absl::Span<const GeneratedToken> tokens =
      absl::MakeConstSpan(result_.tokens).subspan(releasedTokens_);
  emitted_ = upto;
  releasedTokens_ = result_.tokens.size();
  if (!onDelta_(delta, tokens))
    callbackCancelled_ = true;
}

GenerationResult GenerationStream::finish() {
  std::string &text = result_.text;
  FinishReason reason = finish_.value_or(FinishReason::Length);
  if (!stoppedByString_ && reason != FinishReason::Cancelled)
    text += decoder_.flush();
  if (request_.constraint && !request_.constraint->isComplete() &&
      reason != FinishReason::Cancelled && reason != FinishReason::Timeout)
    text += request_.constraint->completion();
  result_.finishReason = reason;
  if (reason != FinishReason::Cancelled)
    emit(text.size());

  GenerationTiming timing = result_.awareness.timing;
  if (!result_.tokens.empty())
    timing.decodeSeconds = secondsBetween(firstToken_, Clock::now());
  timing.completionTokens = int64_t(result_.tokens.size());
  std::vector<TokenUncertainty> uncertainty;
  uncertainty.reserve(result_.tokens.size());
  for (const GeneratedToken &token : result_.tokens)
    uncertainty.push_back({token.logprob, token.entropy});
  result_.awareness =
      summarizeAwareness(uncertainty, request_.lowConfidenceThreshold);
  result_.awareness.timing = timing;
  return std::move(result_);
}

//===----------------------------------------------------------------------===//
// One generation on the Generator's engine
//===----------------------------------------------------------------------===//

/// The engine side of one generate() call: prefill, then decode (step by
/// step under a constraint, streamed otherwise) until the stream is
/// finished, tracking what the KV cache holds for prefix reuse. Every engine
/// result goes through accept().
class Generator::Run {
public:
  Run(Generator &generator, const GenerationRequest &request,
      const StreamCallback &onDelta)
      : gen_(generator), request_(request), prompt_(request.promptIds),
        stream_(generator.tokenizer_, generator.options_.eosIds,
                generator.options_.maxSeq, request, onDelta) {
    reuse_ = reusablePrefix();
  }

  absl::StatusOr<GenerationResult> run() {
    if (!stream_.interrupted())
      TRENI_RETURN_IF_ERROR(prefill());
    if (request_.constraint)
      TRENI_RETURN_IF_ERROR(decodeConstrained());
    else if (!stream_.interrupted())
      TRENI_RETURN_IF_ERROR(decodeStreamed());
    return stream_.finish();
  }

private:
  /// Prefix caching: KV-cache rows 0..n-1 already hold prompt[0..n-1] when
  /// this Generator made the engine's last call and remembers it. At least
  /// the last prompt token is prefilled: its logits sample the first new
  /// token.
  size_t reusablePrefix() const {
    absl::Span<const int32_t> cached = gen_.cachedIds();
    size_t reuse = 0;
    size_t limit = std::min(cached.size(), prompt_.size() - 1);
    while (reuse < limit && cached[reuse] == prompt_[reuse])
      ++reuse;
    return reuse;
  }

  absl::Status prefill() {
    return accept(
        gen_.engine_.prefill(absl::MakeConstSpan(prompt_).subspan(reuse_),
                             int64_t(reuse_), request_.sampling),
        /*isPrefill=*/true);
  }

  /// The constraint may replace the sampled token: one step at a time.
  absl::Status decodeConstrained() {
    while (!stream_.interrupted())
      TRENI_RETURN_IF_ERROR(accept(
          gen_.engine_.decode(stream_.lastToken(),
                              int64_t(prompt_.size()) + stream_.numTokens() - 1,
                              request_.sampling),
          /*isPrefill=*/false));
    return absl::OkStatus();
  }

  /// Each step is fed the token the previous one sampled, so the engine may
  /// run a step ahead of this loop (Engine::decodeStream). The bounds are
  /// those of Length and Context in the stream's limits: no step runs past
  /// them.
  absl::Status decodeStreamed() {
    int64_t position = int64_t(prompt_.size());
    int64_t count = std::min<int64_t>(request_.maxTokens - 1,
                                      gen_.options_.maxSeq - position);
    absl::Status accepted;
    absl::Status streamed = gen_.engine_.decodeStream(
        stream_.lastToken(), position, count, request_.sampling,
        [&](const SampleResult &sample) {
          accepted = accept(sample, /*isPrefill=*/false);
          return accepted.ok() && !stream_.interrupted();
        });
    if (!streamed.ok())
      track(/*ok=*/false, /*isPrefill=*/false);
    TRENI_RETURN_IF_ERROR(streamed);
    TRENI_RETURN_IF_ERROR(accepted);
    if (!stream_.finished()) // the engine stopped early without saying why
      return absl::InternalError("decoding ended before the generation did");
    return absl::OkStatus();
  }

  /// Takes one engine result: the constraint's choice, then the stream.
  absl::Status accept(absl::StatusOr<SampleResult> sample, bool isPrefill) {
    uint64_t step = uint64_t(stream_.numTokens());
    track(sample.ok(), isPrefill);
    if (!sample.ok())
      return sample.status();
    if (isPrefill)
      stream_.setCachedPromptTokens(int64_t(reuse_));
    if (request_.constraint) {
      TRENI_ASSIGN_OR_RETURN(std::vector<float> logits,
                             gen_.engine_.lastLogits());
      sample = sampleConstrained(logits, *sample, request_.sampling, step,
                                 *request_.constraint, gen_.vocabBytes());
      if (absl::IsNotFound(sample.status())) {
        // Nothing fits: finish() closes the output.
        stream_.finishWith(FinishReason::Stop);
        return absl::OkStatus();
      }
      if (!sample.ok())
        return sample.status();
    }
    return stream_.accept(*std::move(sample));
  }

  /// After each engine call: what the KV cache holds now (nothing known when
  /// the call failed; it may have written some rows).
  void track(bool ok, bool isPrefill) {
    if (!ok || !gen_.options_.prefixCache)
      gen_.cachedIds_.clear();
    else if (isPrefill)
      gen_.cachedIds_.assign(prompt_.begin(), prompt_.end());
    else
      gen_.cachedIds_.push_back(stream_.lastToken());
    gen_.cacheWrites_ = gen_.engine_.cacheWrites();
  }

  Generator &gen_;
  const GenerationRequest &request_;
  const std::vector<int32_t> &prompt_;
  GenerationStream stream_;
  size_t reuse_ = 0; ///< prompt tokens whose KV cache is reused
};

absl::StatusOr<GenerationResult>
Generator::generate(const GenerationRequest &request,
                    const StreamCallback &onDelta) {
  TRENI_RETURN_IF_ERROR(
      validateGeneration(request, options_.maxSeq, engine_.vocabSize()));
  return Run(*this, request, onDelta).run();
}

} // namespace treni
