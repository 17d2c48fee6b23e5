//===- generation.cpp - prompt ids -> text, with stops and streaming -----===//

#include "runtime/serve/generation.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "frontends/safetensors/model_config.h"
#include "support/status.h"
#include "runtime/text/chat_template.h"
#include "runtime/exec/package.h"
#include "runtime/serve/progress.h"
#include "support/ascii.h"

namespace treni {

//===----------------------------------------------------------------------===//
// Constraints
//===----------------------------------------------------------------------===//

bool OutputConstraint::allows(std::string_view text) const {
  std::unique_ptr<OutputConstraint> copy = clone();
  for (char c : text)
    if (!copy->accept(c))
      return false;
  return true;
}

bool OutputConstraint::acceptAll(std::string_view text) {
  for (char c : text)
    if (!accept(c))
      return false;
  return true;
}

namespace {

bool isJsonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/// A byte-level JSON-object recognizer with a container stack.
class JsonObjectConstraint final : public OutputConstraint {
public:
  explicit JsonObjectConstraint(int maxDepth) : maxDepth_(maxDepth) {}

  std::unique_ptr<OutputConstraint> clone() const override {
    return std::make_unique<JsonObjectConstraint>(*this);
  }
  bool isComplete() const override { return mode_ == Mode::Done; }

  bool accept(char c) override {
    // Whitespace between tokens is capped: a weak model could otherwise
    // spend all of max_tokens on it.
    bool space = isJsonSpace(c) && mode_ != Mode::String &&
                 mode_ != Mode::Escape && mode_ != Mode::Unicode;
    if (space && spaceRun_ >= kMaxSpaceRun)
      return false;
    if (!acceptChar(c))
      return false;
    spaceRun_ = space ? spaceRun_ + 1 : 0;
    return true;
  }

private:
  static constexpr int kMaxSpaceRun = 16;

  bool acceptChar(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (mode_) {
    case Mode::Start:
      return c == '{' && open('{');
    case Mode::ObjectOpen:
      if (isJsonSpace(c))
        return true;
      if (c == '"')
        return startString(/*isKey=*/true);
      return c == '}' && close('{');
    case Mode::Key:
      if (isJsonSpace(c))
        return true;
      return c == '"' && startString(/*isKey=*/true);
    case Mode::Colon:
      if (isJsonSpace(c))
        return true;
      if (c != ':')
        return false;
      mode_ = Mode::Value;
      return true;
    case Mode::Value:
      return isJsonSpace(c) || startValue(c);
    case Mode::ArrayOpen:
      if (isJsonSpace(c))
        return true;
      if (c == ']')
        return close('[');
      return startValue(c);
    case Mode::AfterValue:
      if (isJsonSpace(c))
        return true;
      if (c == ',') {
        mode_ = stack_.back() == '{' ? Mode::Key : Mode::Value;
        return true;
      }
      if (c == '}' || c == ']')
        return close(c == '}' ? '{' : '[');
      return false;
    case Mode::String:
      if (utf8Left_ > 0) {
        if (u < utf8Low_ || u > utf8High_)
          return false;
        --utf8Left_;
        utf8Low_ = 0x80;
        utf8High_ = 0xBF;
        return true;
      }
      if (c == '"') {
        mode_ = stringIsKey_ ? Mode::Colon : Mode::AfterValue;
        return true;
      }
      if (c == '\\') {
        mode_ = Mode::Escape;
        return true;
      }
      if (u < 0x20)
        return false;
      if (u < 0x80)
        return true;
      return startUtf8(u);
    case Mode::Escape:
      if (c == 'u') {
        mode_ = Mode::Unicode;
        hexLeft_ = 4;
        hexValue_ = 0;
        return true;
      }
      if (std::string_view("\"\\/bfnrt").find(c) == std::string_view::npos)
        return false;
      mode_ = Mode::String;
      return true;
    case Mode::Unicode: {
      int digit = hexDigitValue(c);
      if (digit < 0)
        return false;
      hexValue_ = hexValue_ * 16 + digit;
      // No surrogate escapes: a lone one is invalid for most JSON readers,
      // and raw UTF-8 says the same.
      if (--hexLeft_ == 2 && hexValue_ >= 0xD8 && hexValue_ <= 0xDF)
        return false;
      if (hexLeft_ == 0)
        mode_ = Mode::String;
      return true;
    }
    case Mode::Number:
      return acceptNumber(c);
    case Mode::Literal:
      if (literalPos_ >= literal_.size() || c != literal_[literalPos_])
        return false;
      if (++literalPos_ == literal_.size())
        mode_ = Mode::AfterValue;
      return true;
    case Mode::Done:
      return false;
    }
    return false;
  }

public:
  std::string completion() const override {
    std::string text;
    switch (mode_) {
    case Mode::Start:
      return "{}";
    case Mode::Done:
      return "";
    case Mode::ObjectOpen:
    case Mode::ArrayOpen:
    case Mode::AfterValue:
      break;
    case Mode::Key:
      text = "\"\":null";
      break;
    case Mode::Colon:
      text = ":null";
      break;
    case Mode::Value:
      text = "null";
      break;
    case Mode::String:
    case Mode::Escape:
    case Mode::Unicode:
      if (mode_ == Mode::Escape)
        text += 'n';
      if (mode_ == Mode::Unicode)
        text.append(hexLeft_, '0');
      if (mode_ == Mode::String && utf8Left_ > 0) {
        text += char(utf8Low_);
        text.append(utf8Left_ - 1, char(0x80));
      }
      text += '"';
      if (stringIsKey_)
        text += ":null";
      break;
    case Mode::Number:
      if (number_ == Number::Minus || number_ == Number::Dot ||
          number_ == Number::Exp || number_ == Number::ExpSign)
        text += '0';
      break;
    case Mode::Literal:
      text = literal_.substr(literalPos_);
      break;
    }
    for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
      text += *it == '{' ? '}' : ']';
    return text;
  }

private:
  enum class Mode {
    Start,
    ObjectOpen,
    Key,
    Colon,
    Value,
    ArrayOpen,
    AfterValue,
    String,
    Escape,
    Unicode,
    Number,
    Literal,
    Done
  };
  enum class Number { Minus, Zero, Int, Dot, Frac, Exp, ExpSign, ExpDigits };

  bool open(char container) {
    if (int(stack_.size()) >= maxDepth_)
      return false;
    stack_.push_back(container);
    mode_ = container == '{' ? Mode::ObjectOpen : Mode::ArrayOpen;
    return true;
  }
  bool close(char container) {
    if (stack_.empty() || stack_.back() != container)
      return false;
    stack_.pop_back();
    mode_ = stack_.empty() ? Mode::Done : Mode::AfterValue;
    return true;
  }
  bool startString(bool isKey) {
    stringIsKey_ = isKey;
    utf8Left_ = 0;
    mode_ = Mode::String;
    return true;
  }
  bool startValue(char c) {
    switch (c) {
    case '{':
    case '[':
      return open(c);
    case '"':
      return startString(/*isKey=*/false);
    case '-':
      return startNumber(Number::Minus);
    case '0':
      return startNumber(Number::Zero);
    case 't':
      return startLiteral("true");
    case 'f':
      return startLiteral("false");
    case 'n':
      return startLiteral("null");
    default:
      if (c >= '1' && c <= '9')
        return startNumber(Number::Int);
      return false;
    }
  }
  bool startNumber(Number state) {
    mode_ = Mode::Number;
    number_ = state;
    return true;
  }
  bool startLiteral(const char *text) {
    mode_ = Mode::Literal;
    literal_ = text;
    literalPos_ = 1;
    return true;
  }
  bool startUtf8(unsigned char u) {
    // The well-formed sequences of Unicode's table 3-7.
    utf8Low_ = 0x80;
    utf8High_ = 0xBF;
    if (u >= 0xC2 && u <= 0xDF)
      utf8Left_ = 1;
    else if (u >= 0xE0 && u <= 0xEF)
      utf8Left_ = 2;
    else if (u >= 0xF0 && u <= 0xF4)
      utf8Left_ = 3;
    else
      return false;
    if (u == 0xE0)
      utf8Low_ = 0xA0;
    if (u == 0xED)
      utf8High_ = 0x9F;
    if (u == 0xF0)
      utf8Low_ = 0x90;
    if (u == 0xF4)
      utf8High_ = 0x8F;
    return true;
  }
  bool acceptNumber(char c) {
    bool digit = c >= '0' && c <= '9';
    switch (number_) {
    case Number::Minus:
      if (!digit)
        return false;
      number_ = c == '0' ? Number::Zero : Number::Int;
      return true;
    case Number::Zero:
    case Number::Int:
      if (digit && number_ == Number::Int)
        return true;
      if (c == '.') {
        number_ = Number::Dot;
        return true;
      }
      if (c == 'e' || c == 'E') {
        number_ = Number::Exp;
        return true;
      }
      break;
    case Number::Dot:
      if (!digit)
        return false;
      number_ = Number::Frac;
      return true;
    case Number::Frac:
      if (digit)
        return true;
      if (c == 'e' || c == 'E') {
        number_ = Number::Exp;
        return true;
      }
      break;
    case Number::Exp:
      if (c == '+' || c == '-') {
        number_ = Number::ExpSign;
        return true;
      }
      [[fallthrough]];
    case Number::ExpSign:
      if (!digit)
        return false;
      number_ = Number::ExpDigits;
      return true;
    case Number::ExpDigits:
      if (digit)
        return true;
      break;
    }
    // A complete number ends at the first byte that cannot extend it.
    mode_ = Mode::AfterValue;
    return acceptChar(c);
  }

  int maxDepth_;
  int spaceRun_ = 0;
  Mode mode_ = Mode::Start;
  std::string stack_;
  bool stringIsKey_ = false;
  int hexLeft_ = 0, hexValue_ = 0;
  int utf8Left_ = 0;
  unsigned char utf8Low_ = 0x80, utf8High_ = 0xBF;
  Number number_ = Number::Zero;
  std::string literal_;
  size_t literalPos_ = 0;
};

class LiteralConstraint final : public OutputConstraint {
public:
  explicit LiteralConstraint(std::string text) : text_(std::move(text)) {}
  std::unique_ptr<OutputConstraint> clone() const override {
    return std::make_unique<LiteralConstraint>(*this);
  }
  bool accept(char c) override {
    if (pos_ >= text_.size() || text_[pos_] != c)
      return false;
    ++pos_;
    return true;
  }
  bool isComplete() const override { return pos_ == text_.size(); }
  std::string completion() const override { return text_.substr(pos_); }

private:
  std::string text_;
  size_t pos_ = 0;
};

class ChoiceConstraint final : public OutputConstraint {
public:
  explicit ChoiceConstraint(std::vector<std::string> choices)
      : choices_(std::move(choices)) {}
  std::unique_ptr<OutputConstraint> clone() const override {
    return std::make_unique<ChoiceConstraint>(*this);
  }
  bool accept(char c) override {
    std::string next = prefix_ + c;
    for (const std::string &choice : choices_)
      if (choice.compare(0, next.size(), next) == 0) {
        prefix_ = std::move(next);
        return true;
      }
    return false;
  }
  bool isComplete() const override {
    return std::find(choices_.begin(), choices_.end(), prefix_) !=
           choices_.end();
  }
  std::string completion() const override {
    for (const std::string &choice : choices_)
      if (choice.compare(0, prefix_.size(), prefix_) == 0)
        return choice.substr(prefix_.size());
    return "";
  }

private:
  std::vector<std::string> choices_;
  std::string prefix_;
};

class SequenceConstraint final : public OutputConstraint {
public:
  explicit SequenceConstraint(
      std::vector<std::unique_ptr<OutputConstraint>> parts)
      : parts_(std::move(parts)) {}
  std::unique_ptr<OutputConstraint> clone() const override {
    std::vector<std::unique_ptr<OutputConstraint>> parts;
    for (const auto &part : parts_)
      parts.push_back(part->clone());
    auto copy = std::make_unique<SequenceConstraint>(std::move(parts));
    copy->index_ = index_;
    return copy;
  }
  bool accept(char c) override {
    // A complete part takes nothing more (no part here extends a complete
    // match), so the byte belongs to the next one.
    while (index_ < parts_.size() && parts_[index_]->isComplete())
      ++index_;
    return index_ < parts_.size() && parts_[index_]->accept(c);
  }
  bool isComplete() const override {
    for (size_t i = index_; i < parts_.size(); ++i)
      if (!parts_[i]->isComplete())
        return false;
    return true;
  }
  std::string completion() const override {
    std::string text;
    for (size_t i = index_; i < parts_.size(); ++i)
      text += parts_[i]->completion();
    return text;
  }

private:
  std::vector<std::unique_ptr<OutputConstraint>> parts_;
  size_t index_ = 0;
};

} // namespace

std::unique_ptr<OutputConstraint> jsonObjectConstraint(int maxDepth) {
  return std::make_unique<JsonObjectConstraint>(maxDepth);
}
std::unique_ptr<OutputConstraint> literalConstraint(std::string text) {
  return std::make_unique<LiteralConstraint>(std::move(text));
}
std::unique_ptr<OutputConstraint>
choiceConstraint(std::vector<std::string> choices) {
  return std::make_unique<ChoiceConstraint>(std::move(choices));
}
std::unique_ptr<OutputConstraint>
sequenceConstraint(std::vector<std::unique_ptr<OutputConstraint>> parts) {
  return std::make_unique<SequenceConstraint>(std::move(parts));
}

//===----------------------------------------------------------------------===//
// Generator
//===----------------------------------------------------------------------===//

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

Generator::Generator(Engine &engine, const Tokenizer &tokenizer,
                     GeneratorOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)) {}

std::string Generator::tokenBytes(int32_t id) const {
  for (const AddedToken &added : tokenizer_.addedTokens())
    if (added.id == id)
      return added.content;
  std::optional<std::string> token = tokenizer_.idToToken(id);
  if (!token)
    return "";
  const std::vector<int> &decoder = byteLevelDecoder();
  std::string bytes;
  for (size_t pos = 0; pos < token->size();) {
    int32_t cp = nextCodePoint(*token, pos);
    if (cp < 0 || cp >= int32_t(decoder.size()) || decoder[cp] < 0) {
      // Not a byte-level token: what the decoder makes of it alone.
      auto text = tokenizer_.decode({id});
      return text.ok() ? *text : "";
    }
    bytes += char(decoder[cp]);
  }
  return bytes;
}

absl::Span<const int32_t> Generator::cachedIds() const {
  if (engine_.cacheWrites() != cacheWrites_)
    return {};
  return cachedIds_;
}

void Generator::forgetCache() { cachedIds_.clear(); }

const std::vector<std::string> &Generator::vocabBytes() {
  if (vocabBytes_.empty()) {
    int64_t vocab = engine_.vocabSize();
    vocabBytes_.resize(vocab);
    for (int64_t id = 0; id < vocab; ++id)
      // Special tokens (and ids the tokenizer lacks) never continue a
      // constrained output: an empty entry is never allowed.
      if (id < tokenizer_.vocabSize() && !tokenizer_.isSpecial(int32_t(id)))
        vocabBytes_[id] = tokenBytes(int32_t(id));
  }
  return vocabBytes_;
}

absl::StatusOr<SampleResult>
Generator::constrainedSample(const SampleResult &engineResult,
                             const SamplingParams &params, uint64_t step,
                             const OutputConstraint &constraint) {
  TRENI_ASSIGN_OR_RETURN(std::vector<float> logits, engine_.lastLogits());
  const std::vector<std::string> &pieces = vocabBytes();
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
  SampleResult result = engineResult;
  result.token = token;
  result.logprob = float(double(logits[token]) - maxLogit - std::log(sum));
  return result;
}

absl::StatusOr<GenerationResult>
Generator::generate(const GenerationRequest &request,
                    const StreamCallback &onDelta) {
  using Clock = std::chrono::steady_clock;
  const std::vector<int32_t> &prompt = request.promptIds;
  if (prompt.empty())
    return absl::InvalidArgumentError("the prompt is empty");
  if (int64_t(prompt.size()) >= options_.maxSeq)
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt.size(), " tokens; max_seq is ",
        options_.maxSeq, ", so at most ", options_.maxSeq - 1, " fit"));
  int64_t vocab = engine_.vocabSize();
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

  GenerationResult result;
  Clock::time_point start = Clock::now();
  GenerationTiming &timing = result.awareness.timing;
  timing.promptTokens = int64_t(prompt.size());
  if (request.submitted)
    timing.queueSeconds =
        std::max(0.0, secondsBetween(*request.submitted, start));

  Tokenizer::StreamDecoder decoder(tokenizer_, /*skipSpecialTokens=*/true);
  std::string &text = result.text;
  size_t emitted = 0;        // bytes of `text` streamed
  size_t releasedTokens = 0; // tokens handed to the callback
  bool callbackCancelled = false;
  auto emit = [&](size_t upto) {
    if (!onDelta || callbackCancelled)
      return;
    upto = std::max(upto, emitted);
    if (upto == emitted && releasedTokens == result.tokens.size())
      return;
    std::string_view delta =
        std::string_view(text).substr(emitted, upto - emitted);
    absl::Span<const GeneratedToken> tokens =
        absl::MakeConstSpan(result.tokens).subspan(releasedTokens);
    emitted = upto;
    releasedTokens = result.tokens.size();
    if (!onDelta(delta, tokens))
      callbackCancelled = true;
  };
  size_t longestStop = 0;
  for (const std::string &stop : request.stop)
    longestStop = std::max(longestStop, stop.size());
  auto isEos = [&](int32_t id) {
    return std::find(options_.eosIds.begin(), options_.eosIds.end(), id) !=
           options_.eosIds.end();
  };

  std::optional<FinishReason> finish;
  if (request.maxTokens == 0)
    finish = FinishReason::Length;
  Clock::time_point firstToken = start;
  int32_t previous = -1;
  bool stoppedByString = false;

  // Prefix caching: KV-cache rows 0..reuse-1 already hold prompt[0..reuse-1]
  // when this Generator made the engine's last call and remembers it. At
  // least the last prompt token is prefilled: its logits sample the first
  // new token.
  absl::Span<const int32_t> cached = cachedIds();
  size_t reuse = 0;
  size_t reuseLimit = std::min(cached.size(), prompt.size() - 1);
  while (reuse < reuseLimit && cached[reuse] == prompt[reuse])
    ++reuse;
  // After each engine call: what the cache holds now (nothing known when the
  // call failed; it may have written some rows).
  auto track = [&](const absl::StatusOr<SampleResult> &sample, bool isPrefill) {
    if (!sample.ok() || !options_.prefixCache) {
      cachedIds_.clear();
    } else if (isPrefill) {
      cachedIds_.assign(prompt.begin(), prompt.end());
    } else {
      cachedIds_.push_back(previous);
    }
    cacheWrites_ = engine_.cacheWrites();
  };
  // Sets `finish` when the request was cancelled or its deadline passed.
  auto interrupted = [&]() {
    if (callbackCancelled ||
        (request.cancel && request.cancel->load(std::memory_order_relaxed)))
      finish = FinishReason::Cancelled;
    else if (request.deadline && Clock::now() >= *request.deadline)
      finish = FinishReason::Timeout;
    return finish.has_value();
  };
  // Takes one engine result: the token, its text, the stop checks; sets
  // `finish` when the generation is over.
  auto accept = [&](absl::StatusOr<SampleResult> sample,
                    bool isPrefill) -> absl::Status {
    uint64_t step = result.tokens.size();
    track(sample, isPrefill);
    if (!sample.ok())
      return sample.status();
    if (isPrefill)
      timing.cachedPromptTokens = int64_t(reuse);
    if (request.constraint) {
      sample = constrainedSample(*sample, request.sampling, step,
                                 *request.constraint);
      if (absl::IsNotFound(sample.status())) {
        finish = FinishReason::Stop; // nothing fits: close it below
        return absl::OkStatus();
      }
      if (!sample.ok())
        return sample.status();
    }
    if (isPrefill) {
      firstToken = Clock::now();
      timing.prefillSeconds = secondsBetween(start, firstToken);
    }
    result.tokens.push_back(GeneratedToken{sample->token, sample->logprob,
                                           sample->entropy,
                                           std::move(sample->alternatives)});
    previous = sample->token;

    if (!request.ignoreEos && !request.constraint && isEos(previous)) {
      finish = FinishReason::Eos;
      return absl::OkStatus();
    }
    size_t before = text.size();
    // An id past the tokenizer's vocabulary (models pad their embedding
    // table) has no text.
    if (previous < tokenizer_.vocabSize() && tokenizer_.idToToken(previous)) {
      TRENI_ASSIGN_OR_RETURN(std::string piece, decoder.push(previous));
      text += piece;
    }
    if (request.constraint)
      request.constraint->acceptAll(tokenBytes(previous));

    // A stop string may have started in text already held back.
    if (longestStop > 0 && text.size() > before) {
      size_t from = before >= longestStop - 1 ? before - (longestStop - 1) : 0;
      size_t best = std::string::npos;
      for (const std::string &stop : request.stop) {
        size_t at = text.find(stop, from);
        if (at < best) {
          best = at;
          result.matchedStop = stop;
        }
      }
      if (best != std::string::npos) {
        text.resize(best);
        stoppedByString = true;
        finish = FinishReason::Stop;
        return absl::OkStatus();
      }
    }
    if (request.constraint && request.constraint->isComplete())
      finish = FinishReason::Stop;
    else if (int64_t(result.tokens.size()) >= request.maxTokens)
      finish = FinishReason::Length;
    else if (int64_t(prompt.size() + result.tokens.size()) - 1 >=
             options_.maxSeq)
      finish = FinishReason::Context; // the next decode would not fit
    if (!finish) {
      emit(text.size() - stopPrefixHoldback(text, request.stop));
      if (request.tokenDelay.count() > 0)
        std::this_thread::sleep_for(request.tokenDelay);
    }
    return absl::OkStatus();
  };

  if (!finish && !interrupted())
    TRENI_RETURN_IF_ERROR(
        accept(engine_.prefill(absl::MakeConstSpan(prompt).subspan(reuse),
                               int64_t(reuse), request.sampling),
               /*isPrefill=*/true));
  if (request.constraint) {
    // The constraint may replace the sampled token: one step at a time.
    while (!finish && !interrupted())
      TRENI_RETURN_IF_ERROR(accept(
          engine_.decode(previous,
                         int64_t(prompt.size() + result.tokens.size() - 1),
                         request.sampling),
          /*isPrefill=*/false));
  } else if (!finish && !interrupted()) {
    // Each step is fed the token the previous one sampled, so the engine
    // may run a step ahead of this loop (Engine::decodeStream). The bounds
    // are those of Length and Context above: no step runs past them.
    int64_t position = int64_t(prompt.size());
    int64_t count =
        std::min<int64_t>(request.maxTokens - 1, options_.maxSeq - position);
    absl::Status accepted;
    absl::Status streamed = engine_.decodeStream(
        previous, position, count, request.sampling,
        [&](const SampleResult &sample) {
          accepted = accept(sample, /*isPrefill=*/false);
          return accepted.ok() && !finish && !interrupted();
        });
    if (!streamed.ok())
      track(streamed, /*isPrefill=*/false);
    TRENI_RETURN_IF_ERROR(streamed);
    TRENI_RETURN_IF_ERROR(accepted);
    if (!finish) // the engine stopped early without saying why
      return absl::InternalError("decoding ended before the generation did");
  }

  if (!stoppedByString && *finish != FinishReason::Cancelled)
    text += decoder.flush();
  if (request.constraint && !request.constraint->isComplete() &&
      *finish != FinishReason::Cancelled && *finish != FinishReason::Timeout)
    text += request.constraint->completion();
  result.finishReason = *finish;
  if (*finish != FinishReason::Cancelled)
    emit(text.size());

  Clock::time_point end = Clock::now();
  if (!result.tokens.empty())
    timing.decodeSeconds = secondsBetween(firstToken, end);
  timing.completionTokens = int64_t(result.tokens.size());
  std::vector<TokenUncertainty> uncertainty;
  uncertainty.reserve(result.tokens.size());
  for (const GeneratedToken &token : result.tokens)
    uncertainty.push_back({token.logprob, token.entropy});
  GenerationTiming savedTiming = timing;
  result.awareness =
      summarizeAwareness(uncertainty, request.lowConfidenceThreshold);
  result.awareness.timing = savedTiming;
  return result;
}

//===----------------------------------------------------------------------===//
// EOS ids
//===----------------------------------------------------------------------===//

namespace {
absl::StatusOr<std::optional<nlohmann::json>>
readJsonFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::optional<nlohmann::json>();
  std::string text((std::istreambuf_iterator<char>(in)), {});
  nlohmann::json json =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded())
    return absl::InvalidArgumentError(path + " is not valid JSON");
  return std::optional<nlohmann::json>(std::move(json));
}
} // namespace

absl::StatusOr<std::vector<int32_t>> readEosIds(const std::string &modelDir,
                                                const Tokenizer &tokenizer) {
  std::vector<int32_t> ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < tokenizer.vocabSize() &&
        std::find(ids.begin(), ids.end(), int32_t(id)) == ids.end())
      ids.push_back(int32_t(id));
  };
  namespace fs = std::filesystem;
  TRENI_ASSIGN_OR_RETURN(
      auto config,
      readJsonFile((fs::path(modelDir) / "tokenizer_config.json").string()));
  if (config && config->is_object() && config->contains("eos_token")) {
    const nlohmann::json &eos = (*config)["eos_token"];
    std::string content;
    if (eos.is_string())
      content = eos.get<std::string>();
    else if (eos.is_object() && eos.contains("content") &&
             eos["content"].is_string())
      content = eos["content"].get<std::string>();
    if (std::optional<int32_t> id = tokenizer.tokenToId(content))
      add(*id);
  }
  std::string generationPath =
      (fs::path(modelDir) / "generation_config.json").string();
  TRENI_ASSIGN_OR_RETURN(auto generation, readJsonFile(generationPath));
  if (generation && generation->is_object() &&
      generation->contains("eos_token_id")) {
    TRENI_ASSIGN_OR_RETURN(std::vector<int32_t> generationIds,
                           eosTokenIds((*generation)["eos_token_id"],
                                       generationPath, tokenizer.vocabSize()));
    for (int32_t id : generationIds)
      add(id);
  }
  return ids;
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

LoadedModel::LoadedModel() = default;
LoadedModel::LoadedModel(LoadedModel &&) = default;
LoadedModel &LoadedModel::operator=(LoadedModel &&) = default;
LoadedModel::~LoadedModel() = default;

namespace {
/// A tokenizer_config.json special-token field: a string or {"content"}.
std::string tokenField(const nlohmann::json &config, const char *name) {
  if (!config.is_object() || !config.contains(name))
    return "";
  const nlohmann::json &value = config[name];
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_object() && value.contains("content") &&
      value["content"].is_string())
    return value["content"].get<std::string>();
  return "";
}

/// The template text of a chat_template field (a string, or a list of named
/// templates: "default").
std::string templateText(const nlohmann::json &config) {
  if (!config.is_object() || !config.contains("chat_template"))
    return "";
  const nlohmann::json &value = config["chat_template"];
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_array())
    for (const nlohmann::json &entry : value)
      if (entry.is_object() && entry.value("name", "") == "default" &&
          entry.contains("template") && entry["template"].is_string())
        return entry["template"].get<std::string>();
  return "";
}
} // namespace

absl::StatusOr<LoadedModel> loadModel(const std::string &model,
                                      const LoadOptions &options) {
  namespace fs = std::filesystem;
  LoadedModel loaded;
  if (options.progress)
    options.progress->step("tokenizer");
  loaded.tokenizerDir = options.tokenizerDir;
  if (loaded.tokenizerDir.empty()) {
    if (fs::is_directory(model)) {
      loaded.tokenizerDir = model;
    } else {
      TRENI_ASSIGN_OR_RETURN(Package package, readPackage(model));
      loaded.tokenizerDir = package.modelDir;
    }
  }
  std::string tokenizerPath =
      (fs::path(loaded.tokenizerDir) / "tokenizer.json").string();
  if (!fs::exists(tokenizerPath))
    return absl::NotFoundError(absl::StrCat("no tokenizer.json in ",
                                            loaded.tokenizerDir,
                                            " (use --tokenizer DIR)"));
  TRENI_ASSIGN_OR_RETURN(loaded.tokenizer, Tokenizer::fromFile(tokenizerPath));
  TRENI_ASSIGN_OR_RETURN(loaded.eosIds,
                         readEosIds(loaded.tokenizerDir, *loaded.tokenizer));

  if (options.progress)
    options.progress->step("chat template");
  std::string configPath =
      (fs::path(loaded.tokenizerDir) / "tokenizer_config.json").string();
  TRENI_ASSIGN_OR_RETURN(auto config, readJsonFile(configPath));
  nlohmann::json tokenizerConfig = config ? *config : nlohmann::json::object();
  if (!options.chatTemplateFile.empty()) {
    std::ifstream in(options.chatTemplateFile, std::ios::binary);
    if (!in)
      return absl::NotFoundError("cannot read --chat-template " +
                                 options.chatTemplateFile);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    if (options.chatTemplateFile.size() > 5 &&
        options.chatTemplateFile.substr(options.chatTemplateFile.size() - 5) ==
            ".json") {
      nlohmann::json other = nlohmann::json::parse(text, nullptr, false);
      if (other.is_discarded())
        return absl::InvalidArgumentError(options.chatTemplateFile +
                                          " is not valid JSON");
      loaded.chatTemplateSource = templateText(other);
      TRENI_ASSIGN_OR_RETURN(
          loaded.chatTemplate,
          ChatTemplate::fromTokenizerConfig(options.chatTemplateFile));
    } else {
      loaded.chatTemplateSource = text;
      TRENI_ASSIGN_OR_RETURN(loaded.chatTemplate,
                             ChatTemplate::fromSource(
                                 text, tokenField(tokenizerConfig, "bos_token"),
                                 tokenField(tokenizerConfig, "eos_token")));
    }
  } else if (!templateText(tokenizerConfig).empty()) {
    loaded.chatTemplateSource = templateText(tokenizerConfig);
    TRENI_ASSIGN_OR_RETURN(loaded.chatTemplate,
                           ChatTemplate::fromTokenizerConfig(configPath));
  }

  if (options.progress)
    options.progress->step(fs::is_directory(model) &&
                                   options.engine.device == Device::Gpu
                               ? "engine (compiles on first load)"
                               : "engine");
  TRENI_ASSIGN_OR_RETURN(loaded.engine, loadEngine(model, options.engine));
  if (loaded.engine->vocabSize() < loaded.tokenizer->vocabSize() &&
      !loaded.eosIds.empty())
    for (int32_t id : loaded.eosIds)
      if (id >= loaded.engine->vocabSize())
        return absl::InvalidArgumentError(absl::StrCat(
            "EOS id ", id, " is outside the model's vocabulary (",
            loaded.engine->vocabSize(), "): tokenizer and model do not match"));
  return loaded;
}

} // namespace treni
