//===- Lexer.cpp - tokens of the .agent workflow language ----------------===//
//
// Comments run from `#` to the end of the line. Strings are "..." (one line)
// or """...""" (may span lines); both take the escapes \n \t \r \\ \" and
// interpolate `{name.field}`; `{{` and `}}` are literal braces.
//
//===----------------------------------------------------------------------===//

#include "agent_dsl/Lexer.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace treni::agentdsl {

std::string_view tokenKindName(TokenKind kind) {
  switch (kind) {
  case TokenKind::Eof:
    return "end of file";
  case TokenKind::Error:
    return "invalid token";
  case TokenKind::Identifier:
    return "a name";
  case TokenKind::Integer:
    return "an integer";
  case TokenKind::Float:
    return "a number";
  case TokenKind::Duration:
    return "a duration (e.g. 2s, 500ms)";
  case TokenKind::String:
    return "a string";
  case TokenKind::LParen:
    return "'('";
  case TokenKind::RParen:
    return "')'";
  case TokenKind::LBrace:
    return "'{'";
  case TokenKind::RBrace:
    return "'}'";
  case TokenKind::LBracket:
    return "'['";
  case TokenKind::RBracket:
    return "']'";
  case TokenKind::Comma:
    return "','";
  case TokenKind::Colon:
    return "':'";
  case TokenKind::Dot:
    return "'.'";
  case TokenKind::Question:
    return "'?'";
  case TokenKind::Assign:
    return "'='";
  case TokenKind::Arrow:
    return "'->'";
  case TokenKind::EqEq:
    return "'=='";
  case TokenKind::NotEq:
    return "'!='";
  case TokenKind::Less:
    return "'<'";
  case TokenKind::LessEq:
    return "'<='";
  case TokenKind::Greater:
    return "'>'";
  case TokenKind::GreaterEq:
    return "'>='";
  case TokenKind::KwWorkflow:
    return "'workflow'";
  case TokenKind::KwExtern:
    return "'extern'";
  case TokenKind::KwTool:
    return "'tool'";
  case TokenKind::KwLet:
    return "'let'";
  case TokenKind::KwGenerate:
    return "'generate'";
  case TokenKind::KwRetry:
    return "'retry'";
  case TokenKind::KwWhen:
    return "'when'";
  case TokenKind::KwIf:
    return "'if'";
  case TokenKind::KwElse:
    return "'else'";
  case TokenKind::KwReturn:
    return "'return'";
  case TokenKind::KwAs:
    return "'as'";
  case TokenKind::KwAnd:
    return "'and'";
  case TokenKind::KwOr:
    return "'or'";
  case TokenKind::KwNot:
    return "'not'";
  case TokenKind::KwTrue:
    return "'true'";
  case TokenKind::KwFalse:
    return "'false'";
  }
  return "token";
}

namespace {

bool isIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool isIdentChar(char c) { return isIdentStart(c) || (c >= '0' && c <= '9'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

TokenKind keywordKind(std::string_view word) {
  static const std::pair<std::string_view, TokenKind> keywords[] = {
      {"workflow", TokenKind::KwWorkflow},
      {"extern", TokenKind::KwExtern},
      {"tool", TokenKind::KwTool},
      {"let", TokenKind::KwLet},
      {"generate", TokenKind::KwGenerate},
      {"retry", TokenKind::KwRetry},
      {"when", TokenKind::KwWhen},
      {"if", TokenKind::KwIf},
      {"else", TokenKind::KwElse},
      {"return", TokenKind::KwReturn},
      {"as", TokenKind::KwAs},
      {"and", TokenKind::KwAnd},
      {"or", TokenKind::KwOr},
      {"not", TokenKind::KwNot},
      {"true", TokenKind::KwTrue},
      {"false", TokenKind::KwFalse},
  };
  for (const auto &[spelling, kind] : keywords)
    if (word == spelling)
      return kind;
  return TokenKind::Identifier;
}

class Lexer {
public:
  Lexer(std::string_view source, DiagnosticEngine &diags)
      : source(source), diags(diags) {}

  std::vector<Token> run() {
    std::vector<Token> tokens;
    while (true) {
      Token token = next();
      TokenKind kind = token.kind;
      tokens.push_back(std::move(token));
      if (kind == TokenKind::Eof || kind == TokenKind::Error)
        break;
    }
    return tokens;
  }

private:
  std::string_view source;
  DiagnosticEngine &diags;
  size_t pos = 0;
  uint32_t line = 1;
  uint32_t column = 1;

  char peek(size_t ahead = 0) const {
    return pos + ahead < source.size() ? source[pos + ahead] : '\0';
  }
  bool atEnd() const { return pos >= source.size(); }
  SourceLoc here() const { return {line, column}; }
  void advance() {
    if (atEnd())
      return;
    if (source[pos] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    ++pos;
  }

  Token error(SourceLoc loc, std::string message) {
    diags.error(loc, std::move(message));
    Token token;
    token.kind = TokenKind::Error;
    token.loc = loc;
    return token;
  }

  void skipSpaceAndComments() {
    while (!atEnd()) {
      char c = peek();
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        advance();
      } else if (c == '#') {
        while (!atEnd() && peek() != '\n')
          advance();
      } else {
        break;
      }
    }
  }

  Token make(TokenKind kind, SourceLoc loc, size_t length) {
    Token token;
    token.kind = kind;
    token.loc = loc;
    token.text = std::string(source.substr(pos, length));
    for (size_t i = 0; i < length; ++i)
      advance();
    return token;
  }

  Token next() {
    skipSpaceAndComments();
    SourceLoc loc = here();
    if (atEnd()) {
      Token token;
      token.kind = TokenKind::Eof;
      token.loc = loc;
      return token;
    }
    char c = peek();
    if (isIdentStart(c)) {
      size_t start = pos;
      while (isIdentChar(peek()))
        advance();
      Token token;
      token.text = std::string(source.substr(start, pos - start));
      token.kind = keywordKind(token.text);
      token.loc = loc;
      return token;
    }
    if (isDigit(c) || (c == '-' && isDigit(peek(1))))
      return number(loc);
    if (c == '"')
      return string(loc);
    switch (c) {
    case '(':
      return make(TokenKind::LParen, loc, 1);
    case ')':
      return make(TokenKind::RParen, loc, 1);
    case '{':
      return make(TokenKind::LBrace, loc, 1);
    case '}':
      return make(TokenKind::RBrace, loc, 1);
    case '[':
      return make(TokenKind::LBracket, loc, 1);
    case ']':
      return make(TokenKind::RBracket, loc, 1);
    case ',':
      return make(TokenKind::Comma, loc, 1);
    case ':':
      return make(TokenKind::Colon, loc, 1);
    case '.':
      return make(TokenKind::Dot, loc, 1);
    case '?':
      return make(TokenKind::Question, loc, 1);
    case '-':
      if (peek(1) == '>')
        return make(TokenKind::Arrow, loc, 2);
      break;
    case '=':
      return peek(1) == '=' ? make(TokenKind::EqEq, loc, 2)
                            : make(TokenKind::Assign, loc, 1);
    case '!':
      if (peek(1) == '=')
        return make(TokenKind::NotEq, loc, 2);
      return error(loc, "unexpected '!': write 'not' for negation and '!=' "
                        "for inequality");
    case '<':
      return peek(1) == '=' ? make(TokenKind::LessEq, loc, 2)
                            : make(TokenKind::Less, loc, 1);
    case '>':
      return peek(1) == '=' ? make(TokenKind::GreaterEq, loc, 2)
                            : make(TokenKind::Greater, loc, 1);
    case '&':
      return error(loc, "unexpected '&': write 'and'");
    case '|':
      return error(loc, "unexpected '|': write 'or'");
    default:
      break;
    }
    unsigned char byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) {
      char hex[8];
      static const char digits[] = "0123456789abcdef";
      hex[0] = '0';
      hex[1] = 'x';
      hex[2] = digits[byte >> 4];
      hex[3] = digits[byte & 15];
      hex[4] = '\0';
      return error(loc, std::string("unexpected byte ") + hex +
                            " (non-ASCII text is only allowed inside strings)");
    }
    return error(loc, std::string("unexpected character '") + c + "'");
  }

  Token number(SourceLoc loc) {
    size_t start = pos;
    if (peek() == '-')
      advance();
    while (isDigit(peek()))
      advance();
    bool isFloat = false;
    if (peek() == '.' && isDigit(peek(1))) {
      isFloat = true;
      advance();
      while (isDigit(peek()))
        advance();
    }
    if ((peek() == 'e' || peek() == 'E') &&
        (isDigit(peek(1)) ||
         ((peek(1) == '+' || peek(1) == '-') && isDigit(peek(2))))) {
      isFloat = true;
      advance();
      if (peek() == '+' || peek() == '-')
        advance();
      while (isDigit(peek()))
        advance();
    }
    std::string spelling(source.substr(start, pos - start));
    // A unit right after the digits makes a duration.
    size_t unitStart = pos;
    SourceLoc unitLoc = here();
    while (isIdentChar(peek()))
      advance();
    std::string unit(source.substr(unitStart, pos - unitStart));

    Token token;
    token.loc = loc;
    token.text = spelling + unit;
    errno = 0;
    double value = std::strtod(spelling.c_str(), nullptr);
    if (!unit.empty()) {
      double scale = unit == "ms" ? 1.0 : unit == "s" ? 1000.0 : 0.0;
      if (scale == 0.0)
        return error(unitLoc,
                     "unknown unit '" + unit +
                         "' after a number (durations take 'ms' or 's')");
      double millis = value * scale;
      if (!(millis >= 0 && millis <= 1e12))
        return error(loc, "duration '" + token.text + "' is out of range");
      token.kind = TokenKind::Duration;
      token.intValue = static_cast<int64_t>(std::llround(millis));
      return token;
    }
    if (isFloat) {
      if (errno == ERANGE || !std::isfinite(value))
        return error(loc, "number '" + spelling + "' is out of range");
      token.kind = TokenKind::Float;
      token.floatValue = value;
      return token;
    }
    errno = 0;
    long long integer = std::strtoll(spelling.c_str(), nullptr, 10);
    if (errno == ERANGE)
      return error(loc, "integer '" + spelling + "' does not fit in 64 bits");
    token.kind = TokenKind::Integer;
    token.intValue = integer;
    return token;
  }

  Token string(SourceLoc loc) {
    bool triple = peek(1) == '"' && peek(2) == '"';
    for (int i = 0; i < (triple ? 3 : 1); ++i)
      advance();
    Token token;
    token.kind = TokenKind::String;
    token.loc = loc;
    std::string literal;
    SourceLoc literalLoc = here();
    auto flush = [&] {
      if (!literal.empty())
        token.pieces.push_back({false, std::move(literal), literalLoc});
      literal.clear();
    };
    while (true) {
      if (atEnd())
        return error(loc, "unterminated string (it starts here)");
      char c = peek();
      if (c == '"') {
        if (!triple) {
          advance();
          break;
        }
        if (peek(1) == '"' && peek(2) == '"') {
          advance();
          advance();
          advance();
          break;
        }
      }
      if (c == '\n' && !triple)
        return error(loc, "unterminated string: a \"...\" string ends on its "
                          "line (use \"\"\"...\"\"\" for several lines)");
      if (literal.empty())
        literalLoc = here();
      if (c == '\\') {
        SourceLoc escapeLoc = here();
        advance();
        char e = peek();
        switch (e) {
        case 'n':
          literal += '\n';
          break;
        case 't':
          literal += '\t';
          break;
        case 'r':
          literal += '\r';
          break;
        case '\\':
          literal += '\\';
          break;
        case '"':
          literal += '"';
          break;
        default:
          return error(
              escapeLoc,
              std::string("unknown escape '\\") +
                  (e == '\0' || e == '\n' ? std::string() : std::string(1, e)) +
                  "' (known: \\n \\t \\r \\\\ \\\"; write "
                  "{{ and }} for braces)");
        }
        advance();
        continue;
      }
      if (c == '}') {
        if (peek(1) == '}') {
          literal += '}';
          advance();
          advance();
          continue;
        }
        return error(here(), "unmatched '}' in a string (write '}}' for a "
                             "literal brace)");
      }
      if (c == '{') {
        if (peek(1) == '{') {
          literal += '{';
          advance();
          advance();
          continue;
        }
        flush();
        SourceLoc braceLoc = here();
        advance();
        while (peek() == ' ')
          advance();
        SourceLoc pathLoc = here();
        std::string path;
        while (true) {
          if (!isIdentStart(peek()))
            return error(here(), "expected a name like 'draft.text' inside "
                                 "'{...}' (write '{{' for a literal brace)");
          while (isIdentChar(peek())) {
            path += peek();
            advance();
          }
          if (peek() != '.')
            break;
          path += '.';
          advance();
        }
        while (peek() == ' ')
          advance();
        if (peek() != '}')
          return error(atEnd() ? braceLoc : here(),
                       "expected '}' to close the '{' of an interpolation");
        advance();
        token.pieces.push_back({true, std::move(path), pathLoc});
        continue;
      }
      literal += c;
      advance();
    }
    flush();
    return token;
  }
};

} // namespace

std::vector<Token> lex(std::string_view source, DiagnosticEngine &diags) {
  return Lexer(source, diags).run();
}

} // namespace treni::agentdsl
