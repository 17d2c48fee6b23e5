//===- jinja_parser.cpp - lexer and parser of the Jinja2 subset -----------===//
//
// The lexer follows Jinja2's (jinja2/lexer.py): data up to the next `{{`,
// `{%` or `{#`; `-` strips all whitespace on that side of a tag; with
// lstrip_blocks, spaces and tabs between a line start and a block or comment
// tag are dropped (unless `{%+`); with trim_blocks, one newline after a block
// or comment tag is dropped (unless `+%}`); `}}`/`%}` inside brackets do not
// end a tag. The parser follows jinja2/parser.py's precedence:
//   ternary < or < and < not < comparisons/in < + - < ~ < * / // % < ** <
//   unary - + < filters, tests, calls < attribute/subscript.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/jinja_ast.h"

#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"
#include "support/ascii.h"

namespace treni::jinja::detail {

std::string formatPos(Pos pos) {
  return absl::StrCat("line ", pos.line, ":", pos.column);
}

bool isPythonSpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

uint32_t decodeUtf8(std::string_view s, size_t &pos) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b0 = byte(pos);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int length = 0;
  uint32_t cp = 0, min = 0;
  if ((b0 & 0xe0) == 0xc0) {
    length = 2, cp = b0 & 0x1f, min = 0x80;
  } else if ((b0 & 0xf0) == 0xe0) {
    length = 3, cp = b0 & 0x0f, min = 0x800;
  } else if ((b0 & 0xf8) == 0xf0) {
    length = 4, cp = b0 & 0x07, min = 0x10000;
  }
  if (length == 0 || pos + length > s.size()) {
    ++pos;
    return 0xdc00 + b0;
  }
  for (int i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xc0) != 0x80) {
      ++pos;
      return 0xdc00 + b0;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    ++pos;
    return 0xdc00 + b0;
  }
  pos += length;
  return cp;
}

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp >= 0xdc80 && cp <= 0xdcff) { // an undecodable byte, kept as is
    out.push_back(static_cast<char>(cp - 0xdc00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

namespace {

/// Thrown inside this file only; parseTemplate() turns it into a Status.
struct SyntaxError {
  Pos pos;
  std::string message;
};

enum class Tok {
  Data,
  VarBegin,
  VarEnd,
  BlockBegin,
  BlockEnd,
  Name,
  String,
  Int,
  Float,
  Op,
  Eof
};

struct Token {
  Tok type;
  Pos pos;
  std::string text; ///< data, name, decoded string, operator
  int64_t intValue = 0;
  double floatValue = 0;
};

std::string describe(const Token &t) {
  switch (t.type) {
  case Tok::Data:
    return "template data";
  case Tok::VarBegin:
    return "'{{'";
  case Tok::VarEnd:
    return "end of print statement '}}'";
  case Tok::BlockBegin:
    return "'{%'";
  case Tok::BlockEnd:
    return "end of statement block '%}'";
  case Tok::Name:
    return "name '" + t.text + "'";
  case Tok::String:
    return "string literal";
  case Tok::Int:
  case Tok::Float:
    return "number";
  case Tok::Op:
    return "'" + t.text + "'";
  case Tok::Eof:
    return "end of template";
  }
  return "token";
}

//===----------------------------------------------------------------------===//
// Lexer
//===----------------------------------------------------------------------===//

class Lexer {
public:
  Lexer(std::string_view src, const TemplateOptions &options)
      : src_(src), options_(options) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) {
      size_t tag = findTagStart(pos_);
      if (tag == std::string_view::npos) {
        emitData(std::string(src_.substr(pos_)), pos_);
        pos_ = src_.size();
        break;
      }
      bool lineStarting = pos_ == 0 || src_[pos_ - 1] == '\n';
      std::string text(src_.substr(pos_, tag - pos_));
      char kind = src_[tag + 1];
      char modifier = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (modifier != '-' && modifier != '+')
        modifier = '\0';
      size_t rawBodyStart = 0;
      bool raw = kind == '%' && matchRawBegin(tag, rawBodyStart);
      stripBefore(text, modifier, kind != '{', lineStarting);
      emitData(std::move(text), pos_);
      if (kind == '#') {
        lexComment(tag, modifier);
      } else if (raw) {
        lexRaw(tag, rawBodyStart);
      } else {
        lexTag(tag, kind, modifier);
      }
    }
    tokens_.push_back(Token{Tok::Eof, posOf(src_.size()), "", 0, 0});
    return std::move(tokens_);
  }

private:
  Pos posOf(size_t offset) {
    // Incremental: offsets are asked for in increasing order most of the time.
    if (offset < lineOffset_ || offset < columnOffset_) {
      line_ = 1;
      lineOffset_ = 0;
      scanned_ = 0;
      columnOffset_ = 0;
      column_ = 1;
    }
    for (; scanned_ < offset && scanned_ < src_.size(); ++scanned_) {
      if (src_[scanned_] == '\n') {
        ++line_;
        lineOffset_ = scanned_ + 1;
      }
    }
    if (columnOffset_ < lineOffset_) {
      columnOffset_ = lineOffset_;
      column_ = 1;
    }
    // Columns count code points, as Python does.
    while (columnOffset_ < offset) {
      decodeUtf8(src_, columnOffset_);
      ++column_;
    }
    return Pos{line_, column_};
  }

  size_t findTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string_view::npos;
         i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() &&
          (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    }
    return std::string_view::npos;
  }

  static size_t rstripLength(std::string_view text) {
    size_t end = text.size();
    while (end > 0) {
      // Step back over one code point.
      size_t start = end - 1;
      while (start > 0 &&
             (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80 &&
             end - start < 4)
        --start;
      size_t p = start;
      uint32_t cp = decodeUtf8(text, p);
      if (p != end || !isPythonSpace(cp))
        break;
      end = start;
    }
    return end;
  }

  size_t skipSpaces(size_t p) const {
    while (p < src_.size()) {
      size_t q = p;
      if (!isPythonSpace(decodeUtf8(src_, q)))
        break;
      p = q;
    }
    return p;
  }

  void stripBefore(std::string &text, char modifier, bool isBlockOrComment,
                   bool lineStarting) {
    if (modifier == '-') {
      text.resize(rstripLength(text));
    } else if (modifier != '+' && options_.lstripBlocks && isBlockOrComment) {
      size_t lineStart = text.rfind('\n');
      lineStart = lineStart == std::string::npos ? 0 : lineStart + 1;
      if (lineStart > 0 || lineStarting) {
        if (rstripLength(std::string_view(text).substr(lineStart)) == 0)
          text.resize(lineStart);
      }
    }
  }

  void emitData(std::string text, size_t offset) {
    if (!text.empty())
      tokens_.push_back(Token{Tok::Data, posOf(offset), std::move(text), 0, 0});
  }

  /// `{%[-+]? raw [-]%}` at `tag`; sets the offset after it.
  bool matchRawBegin(size_t tag, size_t &bodyStart) {
    size_t p = tag + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+'))
      ++p;
    p = skipSpaces(p);
    if (src_.substr(p, 3) != "raw")
      return false;
    p = skipSpaces(p + 3);
    if (src_.substr(p, 3) == "-%}") {
      bodyStart = skipSpaces(p + 3);
      return true;
    }
    if (src_.substr(p, 2) == "%}") {
      bodyStart = p + 2;
      return true;
    }
    return false;
  }

  void lexRaw(size_t tag, size_t bodyStart) {
    for (size_t i = src_.find("{%", bodyStart); i != std::string_view::npos;
         i = src_.find("{%", i + 1)) {
      size_t p = i + 2;
      char modifier = '\0';
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+'))
        modifier = src_[p++];
      p = skipSpaces(p);
      if (src_.substr(p, 6) != "endraw")
        continue;
      p = skipSpaces(p + 6);
      size_t end;
      if (src_.substr(p, 3) == "+%}") {
        end = p + 3;
      } else if (src_.substr(p, 3) == "-%}") {
        end = skipSpaces(p + 3);
      } else if (src_.substr(p, 2) == "%}") {
        end = p + 2;
        if (options_.trimBlocks && end < src_.size() && src_[end] == '\n')
          ++end;
      } else {
        continue;
      }
      std::string text(src_.substr(bodyStart, i - bodyStart));
      bool lineStarting = bodyStart == 0 || src_[bodyStart - 1] == '\n';
      stripBefore(text, modifier, true, lineStarting);
      emitData(std::move(text), bodyStart);
      pos_ = end;
      return;
    }
    throw SyntaxError{posOf(tag),
                      "missing end of raw directive ({% endraw %})"};
  }

  void lexComment(size_t tag, char modifier) {
    for (size_t p = tag + 2 + (modifier ? 1 : 0); p + 1 < src_.size(); ++p) {
      if (src_[p] == '+' && src_.substr(p, 3) == "+#}") {
        pos_ = p + 3;
        return;
      }
      if (src_[p] == '-' && src_.substr(p, 3) == "-#}") {
        pos_ = skipSpaces(p + 3);
        return;
      }
      if (src_[p] == '#' && src_[p + 1] == '}') {
        pos_ = p + 2;
        if (options_.trimBlocks && pos_ < src_.size() && src_[pos_] == '\n')
          ++pos_;
        return;
      }
    }
    throw SyntaxError{posOf(tag), "missing end of comment tag ('#}')"};
  }

  void lexTag(size_t tag, char kind, char modifier) {
    bool block = kind == '%';
    tokens_.push_back(
        Token{block ? Tok::BlockBegin : Tok::VarBegin, posOf(tag), "", 0, 0});
    size_t p = tag + 2 + (modifier ? 1 : 0);
    std::vector<char> balance;
    while (true) {
      p = skipSpaces(p);
      if (p >= src_.size())
        throw SyntaxError{posOf(tag),
                          block ? "unexpected end of template, expected '%}'"
                                : "unexpected end of template, expected '}}'"};
      if (balance.empty()) {
        std::string_view rest = src_.substr(p);
        if (block) {
          if (rest.starts_with("-%}")) {
            tokens_.push_back(Token{Tok::BlockEnd, posOf(p), "", 0, 0});
            pos_ = skipSpaces(p + 3);
            return;
          }
          if (rest.starts_with("+%}") || rest.starts_with("%}")) {
            tokens_.push_back(Token{Tok::BlockEnd, posOf(p), "", 0, 0});
            bool keep = rest[0] == '+';
            pos_ = p + (keep ? 3 : 2);
            if (!keep && options_.trimBlocks && pos_ < src_.size() &&
                src_[pos_] == '\n')
              ++pos_;
            return;
          }
        } else {
          if (rest.starts_with("-}}")) {
            tokens_.push_back(Token{Tok::VarEnd, posOf(p), "", 0, 0});
            pos_ = skipSpaces(p + 3);
            return;
          }
          if (rest.starts_with("}}")) {
            tokens_.push_back(Token{Tok::VarEnd, posOf(p), "", 0, 0});
            pos_ = p + 2;
            return;
          }
        }
      }
      p = lexExprToken(p, balance);
    }
  }

  static bool isNameStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  static bool isDigit(char c) { return c >= '0' && c <= '9'; }

  size_t lexExprToken(size_t p, std::vector<char> &balance) {
    char c = src_[p];
    Pos at = posOf(p);
    if (isNameStart(c)) {
      size_t e = p;
      while (e < src_.size() && (isNameStart(src_[e]) || isDigit(src_[e])))
        ++e;
      tokens_.push_back(
          Token{Tok::Name, at, std::string(src_.substr(p, e - p)), 0, 0});
      return e;
    }
    if (isDigit(c))
      return lexNumber(p, at);
    if (c == '\'' || c == '"')
      return lexString(p, at);
    static const char *const kOps[] = {
        "//", "**", "==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "~", "[",
        "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ",", ";"};
    for (const char *op : kOps) {
      std::string_view o(op);
      if (src_.substr(p, o.size()) != o)
        continue;
      if (o == "(" || o == "[" || o == "{") {
        balance.push_back(o[0]);
      } else if (o == ")" || o == "]" || o == "}") {
        char open = o == ")" ? '(' : o == "]" ? '[' : '{';
        if (balance.empty() || balance.back() != open)
          throw SyntaxError{at,
                            absl::StrCat("unexpected '", std::string(o), "'")};
        balance.pop_back();
      }
      tokens_.push_back(Token{Tok::Op, at, std::string(o), 0, 0});
      return p + o.size();
    }
    size_t q = p;
    uint32_t cp = decodeUtf8(src_, q);
    std::string ch;
    appendUtf8(ch, cp);
    throw SyntaxError{at, absl::StrCat("unexpected char '", ch, "'")};
  }

  size_t lexNumber(size_t p, Pos at) {
    size_t e = p;
    auto digits = [&] {
      while (
          e < src_.size() &&
          (isDigit(src_[e]) || (src_[e] == '_' && e + 1 < src_.size() &&
                                isDigit(src_[e + 1]) && isDigit(src_[e - 1]))))
        ++e;
    };
    digits();
    bool isFloat = false;
    if (e + 1 < src_.size() && src_[e] == '.' && isDigit(src_[e + 1])) {
      isFloat = true;
      ++e;
      digits();
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t f = e + 1;
      if (f < src_.size() && (src_[f] == '+' || src_[f] == '-'))
        ++f;
      if (f < src_.size() && isDigit(src_[f])) {
        isFloat = true;
        e = f;
        digits();
      }
    }
    std::string text;
    for (size_t i = p; i < e; ++i)
      if (src_[i] != '_')
        text.push_back(src_[i]);
    Token t{isFloat ? Tok::Float : Tok::Int, at, text, 0, 0};
    if (isFloat) {
      t.floatValue = std::strtod(text.c_str(), nullptr);
    } else {
      errno = 0;
      char *end = nullptr;
      t.intValue = std::strtoll(text.c_str(), &end, 10);
      if (errno == ERANGE)
        throw SyntaxError{at,
                          "integer literal " + text + " does not fit 64 bits"};
    }
    tokens_.push_back(std::move(t));
    return e;
  }

  /// A quoted string, escapes decoded as Python's unicode-escape codec does.
  size_t lexString(size_t p, Pos at) {
    char quote = src_[p];
    std::string out;
    size_t i = p + 1;
    while (true) {
      if (i >= src_.size())
        throw SyntaxError{at, "unterminated string literal"};
      char c = src_[i];
      if (c == quote)
        break;
      if (c != '\\') {
        out.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 >= src_.size())
        throw SyntaxError{at, "unterminated string literal"};
      char e = src_[i + 1];
      i += 2;
      switch (e) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        int count = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        for (int k = 0; k < count; ++k, ++i) {
          int h = i < src_.size() ? hexDigitValue(src_[i]) : -1;
          if (h < 0)
            throw SyntaxError{at,
                              absl::StrCat("truncated \\", std::string(1, e),
                                           " escape in string literal")};
          cp = cp * 16 + h;
        }
        if (cp > 0x10ffff)
          throw SyntaxError{at, "illegal Unicode character in string literal"};
        appendUtf8(out, cp);
        break;
      }
      case 'N':
        throw SyntaxError{at, "\\N{...} escapes are not supported"};
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = e - '0';
          for (int k = 0;
               k < 2 && i < src_.size() && src_[i] >= '0' && src_[i] <= '7';
               ++k, ++i)
            cp = cp * 8 + (src_[i] - '0');
          appendUtf8(out, cp);
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
      }
    }
    tokens_.push_back(Token{Tok::String, at, std::move(out), 0, 0});
    return i + 1;
  }

  std::string_view src_;
  const TemplateOptions &options_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
  int line_ = 1;
  size_t lineOffset_ = 0;
  size_t scanned_ = 0;
  size_t columnOffset_ = 0;
  int column_ = 1;
};

//===----------------------------------------------------------------------===//
// Parser
//===----------------------------------------------------------------------===//

constexpr int kMaxNesting = 200;

class Parser {
public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  NodeList parseTemplate() {
    std::string end;
    NodeList body = parseBody({}, end);
    return body;
  }

private:
  using ExprPtr = std::unique_ptr<Expr>;

  const Token &peek(size_t ahead = 0) const {
    size_t i = std::min(index_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const Token &next() {
    const Token &t = tokens_[index_];
    if (index_ + 1 < tokens_.size())
      ++index_;
    return t;
  }
  bool isOp(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).type == Tok::Op && peek(ahead).text == op;
  }
  bool isName(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).type == Tok::Name && peek(ahead).text == name;
  }
  [[noreturn]] void fail(const Token &t, std::string message) {
    throw SyntaxError{t.pos, std::move(message)};
  }
  void expectOp(std::string_view op) {
    if (!isOp(op))
      fail(peek(), absl::StrCat("expected '", std::string(op), "', got ",
                                describe(peek())));
    next();
  }
  std::string expectName(std::string_view what) {
    if (peek().type != Tok::Name)
      fail(peek(), absl::StrCat("expected ", std::string(what), ", got ",
                                describe(peek())));
    return next().text;
  }
  void expectBlockEnd() {
    if (peek().type != Tok::BlockEnd)
      fail(peek(), absl::StrCat("expected end of statement block, got ",
                                describe(peek())));
    next();
  }

  struct DepthGuard {
    DepthGuard(Parser &p, const Token &t) : parser(p) {
      if (++parser.depth_ > kMaxNesting)
        parser.fail(t, "template nested too deeply");
    }
    ~DepthGuard() { --parser.depth_; }
    Parser &parser;
  };

  /// Parses nodes until a block whose first name is in `endTags` (left
  /// consumed up to that name; `end` gets it) or the end of the template
  /// (only when endTags is empty).
  NodeList parseBody(const std::set<std::string> &endTags, std::string &end) {
    NodeList body;
    while (true) {
      const Token &t = peek();
      if (t.type == Tok::Eof) {
        if (!endTags.empty()) {
          std::string expected;
          for (const std::string &tag : endTags)
            absl::StrAppend(&expected, expected.empty() ? "" : " or ", "'", tag,
                            "'");
          fail(t,
               absl::StrCat("unexpected end of template, expected ", expected));
        }
        return body;
      }
      if (t.type == Tok::Data) {
        auto node = makeNode(Node::Kind::Text, t);
        node->text = t.text;
        body.push_back(std::move(node));
        next();
        continue;
      }
      if (t.type == Tok::VarBegin) {
        next();
        auto node = makeNode(Node::Kind::Output, t);
        node->expr = parseTuple(true);
        if (peek().type != Tok::VarEnd)
          fail(peek(), absl::StrCat("expected end of print statement, got ",
                                    describe(peek())));
        next();
        body.push_back(std::move(node));
        continue;
      }
      if (t.type != Tok::BlockBegin)
        fail(t, absl::StrCat("unexpected ", describe(t)));
      const Token &keyword = peek(1);
      if (keyword.type == Tok::Name && endTags.count(keyword.text)) {
        next();
        end = next().text;
        return body;
      }
      next();
      body.push_back(parseStatement(endTags));
    }
  }

  std::unique_ptr<Node> makeNode(Node::Kind kind, const Token &t) {
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->pos = t.pos;
    return node;
  }

  std::unique_ptr<Node> parseStatement(const std::set<std::string> &outerEnds) {
    const Token &t = peek();
    if (t.type != Tok::Name)
      fail(t, absl::StrCat("expected a statement name, got ", describe(t)));
    DepthGuard guard(*this, t);
    const std::string keyword = t.text;
    if (keyword == "if")
      return parseIf();
    if (keyword == "for")
      return parseFor();
    if (keyword == "set")
      return parseSet();
    if (keyword == "macro")
      return parseMacro();
    if (keyword == "break" || keyword == "continue") {
      auto node = makeNode(
          keyword == "break" ? Node::Kind::Break : Node::Kind::Continue, t);
      next();
      expectBlockEnd();
      if (loopDepth_ == 0)
        fail(t, absl::StrCat("'", keyword, "' outside of a loop"));
      return node;
    }
    if (keyword == "generation") {
      auto node = makeNode(Node::Kind::Scope, t);
      next();
      expectBlockEnd();
      std::string end;
      node->bodies.push_back(parseBody({"endgeneration"}, end));
      expectBlockEnd();
      return node;
    }
    if (keyword == "filter") {
      auto node = makeNode(Node::Kind::FilterBlock, t);
      next();
      node->filterChain = parseFilterChain(nullptr);
      expectBlockEnd();
      std::string end;
      node->bodies.push_back(parseBody({"endfilter"}, end));
      expectBlockEnd();
      return node;
    }
    static const std::set<std::string> kKnownUnsupported = {
        "call", "include", "extends",   "block",      "import", "from", "with",
        "do",   "trans",   "pluralize", "autoescape", "print",  "raw"};
    if (kKnownUnsupported.count(keyword))
      fail(t, absl::StrCat("unsupported statement '", keyword, "'"));
    if (keyword.starts_with("end") || keyword == "elif" || keyword == "else")
      fail(t, absl::StrCat("unexpected '", keyword, "'"));
    fail(t, absl::StrCat("unknown statement '", keyword, "'"));
  }

  std::unique_ptr<Node> parseIf() {
    auto node = makeNode(Node::Kind::If, next());
    node->exprs.push_back(parseTuple(false));
    expectBlockEnd();
    while (true) {
      std::string end;
      node->bodies.push_back(parseBody({"elif", "else", "endif"}, end));
      if (end == "elif") {
        node->exprs.push_back(parseTuple(false));
        expectBlockEnd();
        continue;
      }
      expectBlockEnd();
      if (end == "else") {
        node->bodies.push_back(parseBody({"endif"}, end));
        expectBlockEnd();
      } else {
        node->bodies.emplace_back();
      }
      return node;
    }
  }

  std::vector<std::string> parseTargets() {
    std::vector<std::string> names;
    bool paren = isOp("(");
    if (paren)
      next();
    names.push_back(expectName("a loop variable"));
    while (isOp(",")) {
      next();
      if (peek().type != Tok::Name)
        break;
      names.push_back(next().text);
    }
    if (paren)
      expectOp(")");
    return names;
  }

  std::unique_ptr<Node> parseFor() {
    auto node = makeNode(Node::Kind::For, next());
    node->names = parseTargets();
    if (!isName("in"))
      fail(peek(), absl::StrCat("expected 'in', got ", describe(peek())));
    next();
    node->expr = parseTuple(false, /*withCondExpr=*/false);
    if (isName("if")) {
      next();
      node->filter = parseExpression();
    }
    if (isName("recursive"))
      fail(peek(), "unsupported: recursive for loops");
    expectBlockEnd();
    ++loopDepth_;
    std::string end;
    node->bodies.push_back(parseBody({"else", "endfor"}, end));
    --loopDepth_;
    expectBlockEnd();
    if (end == "else") {
      int saved = loopDepth_;
      loopDepth_ =
          0; // break/continue in for-else belong to an outer loop, if any
      loopDepth_ = saved;
      node->bodies.push_back(parseBody({"endfor"}, end));
      expectBlockEnd();
    } else {
      node->bodies.emplace_back();
    }
    return node;
  }

  std::unique_ptr<Node> parseSet() {
    const Token &t = next();
    std::string first = expectName("a variable name");
    if (isOp(".")) {
      next();
      auto node = makeNode(Node::Kind::Set, t);
      node->names.push_back(first);
      node->attr = expectName("an attribute name");
      expectOp("=");
      node->expr = parseTuple(false);
      expectBlockEnd();
      return node;
    }
    std::vector<std::string> names{first};
    while (isOp(",")) {
      next();
      names.push_back(expectName("a variable name"));
    }
    if (isOp("=")) {
      next();
      auto node = makeNode(Node::Kind::Set, t);
      node->names = std::move(names);
      node->expr = parseTuple(false);
      expectBlockEnd();
      return node;
    }
    if (names.size() != 1)
      fail(peek(), absl::StrCat("expected '=', got ", describe(peek())));
    auto node = makeNode(Node::Kind::SetBlock, t);
    node->names = std::move(names);
    if (isOp("|"))
      node->filterChain = parseFilterChain(nullptr);
    expectBlockEnd();
    std::string end;
    node->bodies.push_back(parseBody({"endset"}, end));
    expectBlockEnd();
    return node;
  }

  std::unique_ptr<Node> parseMacro() {
    auto node = makeNode(Node::Kind::Macro, next());
    node->text = expectName("a macro name");
    expectOp("(");
    while (!isOp(")")) {
      if (!node->names.empty())
        expectOp(",");
      if (isOp(")"))
        break;
      node->names.push_back(expectName("a parameter name"));
      if (isOp("=")) {
        next();
        node->exprs.push_back(parseExpression());
      } else {
        if (!node->exprs.empty() && node->exprs.back())
          fail(peek(), "non-default argument follows default argument");
        node->exprs.push_back(nullptr);
      }
    }
    next();
    expectBlockEnd();
    int saved = loopDepth_;
    loopDepth_ = 0;
    std::string end;
    node->bodies.push_back(parseBody({"endmacro"}, end));
    loopDepth_ = saved;
    if (peek().type == Tok::Name && peek().text == node->text)
      next();
    expectBlockEnd();
    return node;
  }

  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  ExprPtr makeExpr(Expr::Kind kind, Pos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  /// `a, b, c` (a tuple when a comma is there) or one expression.
  ExprPtr parseTuple(bool allowEmpty, bool withCondExpr = true) {
    Pos pos = peek().pos;
    std::vector<ExprPtr> items;
    bool comma = false;
    while (true) {
      if (!items.empty()) {
        if (!isOp(","))
          break;
        next();
        comma = true;
      }
      if (peek().type == Tok::VarEnd || peek().type == Tok::BlockEnd ||
          isOp(")") || (!items.empty() && isName("if")) ||
          (!items.empty() && isName("in")))
        break;
      items.push_back(withCondExpr ? parseExpression() : parseOr());
    }
    if (items.size() == 1 && !comma)
      return std::move(items[0]);
    if (items.empty() && !allowEmpty)
      fail(peek(),
           absl::StrCat("expected an expression, got ", describe(peek())));
    auto tuple = makeExpr(Expr::Kind::Tuple, pos);
    tuple->children = std::move(items);
    return tuple;
  }

  ExprPtr parseExpression() {
    DepthGuard guard(*this, peek());
    ExprPtr expr = parseOr();
    while (isName("if")) {
      Pos pos = next().pos;
      auto cond = makeExpr(Expr::Kind::CondExpr, pos);
      ExprPtr test = parseOr();
      ExprPtr otherwise;
      if (isName("else")) {
        next();
        otherwise = parseExpression();
      }
      cond->children.push_back(std::move(test));
      cond->children.push_back(std::move(expr));
      cond->children.push_back(std::move(otherwise));
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr binary(std::string op, Pos pos, ExprPtr left, ExprPtr right) {
    auto e = makeExpr(Expr::Kind::Binary, pos);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr parseOr() {
    ExprPtr left = parseAnd();
    while (isName("or")) {
      Pos pos = next().pos;
      left = binary("or", pos, std::move(left), parseAnd());
    }
    return left;
  }

  ExprPtr parseAnd() {
    ExprPtr left = parseNot();
    while (isName("and")) {
      Pos pos = next().pos;
      left = binary("and", pos, std::move(left), parseNot());
    }
    return left;
  }

  ExprPtr parseNot() {
    if (isName("not")) {
      DepthGuard guard(*this, peek());
      auto e = makeExpr(Expr::Kind::Not, next().pos);
      e->children.push_back(parseNot());
      return e;
    }
    return parseCompare();
  }

  /// `a < b <= c` is `a < b and b <= c` (b evaluated once), as in Python.
  ExprPtr parseCompare() {
    Pos pos = peek().pos;
    ExprPtr first = parseMath1();
    auto chain = makeExpr(Expr::Kind::Compare, pos);
    chain->children.push_back(std::move(first));
    while (true) {
      const Token &t = peek();
      std::string op;
      if (t.type == Tok::Op &&
          (t.text == "==" || t.text == "!=" || t.text == "<" ||
           t.text == "<=" || t.text == ">" || t.text == ">=")) {
        op = t.text;
        next();
      } else if (isName("in")) {
        op = "in";
        next();
      } else if (isName("not") && isName("in", 1)) {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      chain->argNames.push_back(op);
      chain->children.push_back(parseMath1());
    }
    if (chain->argNames.empty())
      return std::move(chain->children[0]);
    return chain;
  }

  ExprPtr parseMath1() {
    ExprPtr left = parseConcat();
    while (isOp("+") || isOp("-")) {
      const Token &t = next();
      left = binary(t.text, t.pos, std::move(left), parseConcat());
    }
    return left;
  }

  ExprPtr parseConcat() {
    ExprPtr left = parseMath2();
    while (isOp("~")) {
      const Token &t = next();
      left = binary("~", t.pos, std::move(left), parseMath2());
    }
    return left;
  }

  ExprPtr parseMath2() {
    ExprPtr left = parsePow();
    while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
      const Token &t = next();
      left = binary(t.text, t.pos, std::move(left), parsePow());
    }
    return left;
  }

  ExprPtr parsePow() {
    ExprPtr left = parseUnary(true);
    while (isOp("**")) {
      const Token &t = next();
      left = binary("**", t.pos, std::move(left), parseUnary(true));
    }
    return left;
  }

  ExprPtr parseUnary(bool withFilter) {
    DepthGuard guard(*this, peek());
    ExprPtr node;
    if (isOp("-") || isOp("+")) {
      const Token &t = next();
      node = makeExpr(t.text == "-" ? Expr::Kind::Neg : Expr::Kind::Pos, t.pos);
      node->children.push_back(parseUnary(false));
    } else {
      node = parsePrimary();
    }
    node = parsePostfix(std::move(node));
    if (withFilter)
      node = parseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr parsePrimary() {
    const Token &t = peek();
    switch (t.type) {
    case Tok::Name: {
      next();
      if (t.text == "true" || t.text == "True" || t.text == "false" ||
          t.text == "False") {
        auto e = makeExpr(Expr::Kind::Const, t.pos);
        e->value = Value::boolean(t.text == "true" || t.text == "True");
        return e;
      }
      if (t.text == "none" || t.text == "None") {
        auto e = makeExpr(Expr::Kind::Const, t.pos);
        e->value = Value::none();
        return e;
      }
      auto e = makeExpr(Expr::Kind::Name, t.pos);
      e->name = t.text;
      return e;
    }
    case Tok::String: {
      std::string text;
      Pos pos = t.pos;
      while (peek().type == Tok::String) // adjacent literals concatenate
        text += next().text;
      auto e = makeExpr(Expr::Kind::Const, pos);
      e->value = Value::string(std::move(text));
      return e;
    }
    case Tok::Int:
    case Tok::Float: {
      next();
      auto e = makeExpr(Expr::Kind::Const, t.pos);
      e->value = t.type == Tok::Int ? Value::integer(t.intValue)
                                    : Value::number(t.floatValue);
      return e;
    }
    case Tok::Op:
      if (t.text == "(") {
        next();
        ExprPtr inner = parseTuple(true);
        expectOp(")");
        return inner;
      }
      if (t.text == "[") {
        next();
        auto e = makeExpr(Expr::Kind::List, t.pos);
        while (!isOp("]")) {
          if (!e->children.empty()) {
            expectOp(",");
            if (isOp("]"))
              break;
          }
          e->children.push_back(parseExpression());
        }
        next();
        return e;
      }
      if (t.text == "{") {
        next();
        auto e = makeExpr(Expr::Kind::Dict, t.pos);
        while (!isOp("}")) {
          if (!e->children.empty()) {
            expectOp(",");
            if (isOp("}"))
              break;
          }
          e->children.push_back(parseExpression());
          expectOp(":");
          e->children.push_back(parseExpression());
        }
        next();
        return e;
      }
      break;
    default:
      break;
    }
    fail(t, absl::StrCat("unexpected ", describe(t)));
  }

  ExprPtr parsePostfix(ExprPtr node) {
    while (true) {
      if (isOp(".")) {
        const Token &dot = next();
        auto e = makeExpr(Expr::Kind::GetAttr, dot.pos);
        if (peek().type == Tok::Int) { // foo.0 is foo[0]
          auto index = makeExpr(Expr::Kind::Const, peek().pos);
          index->value = Value::integer(next().intValue);
          e->kind = Expr::Kind::GetItem;
          e->children.push_back(std::move(node));
          e->children.push_back(std::move(index));
        } else {
          e->name = expectName("an attribute name");
          e->children.push_back(std::move(node));
        }
        node = std::move(e);
      } else if (isOp("[")) {
        node = parseSubscript(std::move(node));
      } else if (isOp("(")) {
        node = parseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parseSubscript(ExprPtr node) {
    const Token &open = next();
    DepthGuard guard(*this, open);
    ExprPtr parts[3];
    int colons = 0;
    while (!isOp("]")) {
      if (isOp(":")) {
        next();
        if (++colons > 2)
          fail(peek(), "expected ']'");
        continue;
      }
      if (parts[colons])
        fail(peek(), absl::StrCat("expected ']', got ", describe(peek())));
      parts[colons] = parseExpression();
      if (isOp(","))
        fail(peek(), "unsupported: tuple subscripts");
    }
    next();
    if (colons == 0) {
      if (!parts[0])
        fail(open, "expected a subscript expression");
      auto e = makeExpr(Expr::Kind::GetItem, open.pos);
      e->children.push_back(std::move(node));
      e->children.push_back(std::move(parts[0]));
      return e;
    }
    auto e = makeExpr(Expr::Kind::Slice, open.pos);
    e->children.push_back(std::move(node));
    for (auto &part : parts)
      e->children.push_back(std::move(part));
    return e;
  }

  void parseArgs(Expr &call) {
    expectOp("(");
    bool first = true;
    while (!isOp(")")) {
      if (!first) {
        expectOp(",");
        if (isOp(")"))
          break;
      }
      first = false;
      if (isOp("*") || isOp("**"))
        fail(peek(), "unsupported: *args/**kwargs in calls");
      if (peek().type == Tok::Name && isOp("=", 1)) {
        std::string name = next().text;
        next();
        call.argNames.push_back(name);
        call.children.push_back(parseExpression());
      } else {
        for (const std::string &n : call.argNames)
          if (!n.empty())
            fail(peek(), "positional argument follows keyword argument");
        call.argNames.push_back("");
        call.children.push_back(parseExpression());
      }
    }
    next();
  }

  ExprPtr parseCall(ExprPtr callee) {
    auto e = makeExpr(Expr::Kind::Call, peek().pos);
    e->children.push_back(std::move(callee));
    parseArgs(*e);
    return e;
  }

  /// `| name(args) | name ...`; `input` may be null (filter blocks).
  ExprPtr parseFilterChain(ExprPtr input) {
    bool first = true;
    while (first || isOp("|")) {
      if (!first || isOp("|"))
        next();
      first = false;
      const Token &t = peek();
      auto e = makeExpr(Expr::Kind::Filter, t.pos);
      e->name = expectName("a filter name");
      while (isOp(".")) {
        next();
        e->name.push_back('.');
        e->name.append(expectName("a filter name"));
      }
      e->children.push_back(std::move(input));
      if (isOp("("))
        parseArgs(*e);
      input = std::move(e);
    }
    return input;
  }

  ExprPtr parseFilterExpr(ExprPtr node) {
    while (true) {
      if (isOp("|")) {
        next();
        const Token &t = peek();
        auto e = makeExpr(Expr::Kind::Filter, t.pos);
        e->name = expectName("a filter name");
        e->children.push_back(std::move(node));
        if (isOp("("))
          parseArgs(*e);
        node = std::move(e);
      } else if (isName("is")) {
        next();
        auto e = makeExpr(Expr::Kind::Test, peek().pos);
        if (isName("not")) {
          next();
          e->negated = true;
        }
        const Token &t = peek();
        e->pos = t.pos;
        if (t.type == Tok::Name) {
          e->name = next().text;
        } else if (t.type == Tok::Op &&
                   (t.text == "==" || t.text == "!=" || t.text == "<" ||
                    t.text == "<=" || t.text == ">" || t.text == ">=")) {
          e->name = next().text;
        } else {
          fail(t, absl::StrCat("expected a test name, got ", describe(t)));
        }
        e->children.push_back(std::move(node));
        if (isOp("(")) {
          parseArgs(*e);
        } else {
          const Token &arg = peek();
          // As Jinja2: a name, literal or bracket starts an argument, except
          // the keywords that may follow a test.
          bool startsArg = arg.type == Tok::String || arg.type == Tok::Int ||
                           arg.type == Tok::Float || isOp("[") || isOp("{") ||
                           (arg.type == Tok::Name && arg.text != "else" &&
                            arg.text != "or" && arg.text != "and");
          if (startsArg) {
            e->argNames.push_back("");
            e->children.push_back(parsePostfix(parsePrimary()));
          }
        }
        if (isName("is"))
          fail(peek(), "You cannot chain multiple tests with is");
        node = std::move(e);
      } else if (isOp("(")) {
        node = parseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> tokens_;
  size_t index_ = 0;
  int depth_ = 0;
  int loopDepth_ = 0;
};

} // namespace

absl::StatusOr<NodeList> parseTemplate(std::string_view source,
                                       const TemplateOptions &options) {
  try {
    Lexer lexer(source, options);
    Parser parser(lexer.run());
    return parser.parseTemplate();
  } catch (const SyntaxError &e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "template syntax error at ", formatPos(e.pos), ": ", e.message));
  }
}

} // namespace treni::jinja::detail
