//===- output_constraints.cpp - constrained-decoding automata -----------===//

#include "runtime/serve/output_constraints.h"

#include <algorithm>

#include "support/ascii.h"

namespace treni {

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

} // namespace treni
