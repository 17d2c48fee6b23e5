//===- Lexer.h - tokens of the .agent workflow language ---------*- C++ -*-===//
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent_dsl/Ast.h"
#include "agent_dsl/Diagnostics.h"

namespace treni::agentdsl {

enum class TokenKind : uint8_t {
  Eof,
  Error, ///< The lexer already reported why.
  Identifier,
  Integer,
  Float,
  Duration, ///< `2s`, `500ms`, `1.5s`: intValue in milliseconds.
  String,   ///< "..." or """...""" with its template parts.
  // Punctuation.
  LParen,
  RParen,
  LBrace,
  RBrace,
  LBracket,
  RBracket,
  Comma,
  Colon,
  Dot,
  Question,
  Assign,
  Arrow,
  EqEq,
  NotEq,
  Less,
  LessEq,
  Greater,
  GreaterEq,
  // Keywords.
  KwWorkflow,
  KwExtern,
  KwTool,
  KwLet,
  KwGenerate,
  KwRetry,
  KwWhen,
  KwIf,
  KwElse,
  KwReturn,
  KwAs,
  KwAnd,
  KwOr,
  KwNot,
  KwTrue,
  KwFalse,
};

/// How a token kind reads in "expected X" messages.
std::string_view tokenKindName(TokenKind kind);

/// A piece of a string literal: literal text, or the path inside `{...}`.
struct StringPiece {
  bool isInterpolation = false;
  std::string text; ///< Unescaped literal text, or the path "a.b.c".
  SourceLoc loc;    ///< Where the piece starts (the path's first letter).
};

struct Token {
  TokenKind kind = TokenKind::Eof;
  SourceLoc loc;
  std::string text; ///< The spelling (identifiers, numbers, punctuation).
  int64_t intValue = 0;
  double floatValue = 0;
  std::vector<StringPiece> pieces; ///< For strings.
};

/// Splits `source` into tokens. Errors (an unterminated string, a stray
/// character, a number out of range) go to `diags`; the token list then
/// ends at the first error with an Error token.
std::vector<Token> lex(std::string_view source, DiagnosticEngine &diags);

} // namespace treni::agentdsl
