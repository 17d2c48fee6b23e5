//===- jinja_ast.h - syntax tree of the Jinja2 subset -----------*- C++ -*-===//
//
// Internal to runtime/jinja*.cpp: the lexer/parser (jinja_parser.cpp) builds
// these nodes, the interpreter (jinja.cpp) walks them. Every node keeps the
// line:column it came from, for error messages.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/text/jinja.h"

namespace treni::jinja::detail {

struct Pos {
  int line = 1;
  int column = 1;
};

/// "line L:C".
std::string formatPos(Pos pos);

struct Expr {
  enum class Kind {
    Const,   ///< value
    Name,    ///< name
    List,    ///< children
    Tuple,   ///< children
    Dict,    ///< children: key, value, key, value, ...
    GetAttr, ///< children[0].name
    GetItem, ///< children[0][children[1]]
    Slice,   ///< children[0][children[1]:children[2]:children[3]] (null =
             ///< omitted)
    Call, ///< children[0](children[1..]); argNames[i] names children[i+1] ("" =
          ///< positional)
    Filter,   ///< children[0] | name(children[1..]) with argNames
    Test,     ///< children[0] is [not] name(children[1..]); negated
    Not,      ///< not children[0]
    Neg,      ///< -children[0]
    Pos,      ///< +children[0]
    Binary,   ///< children[0] op children[1]
    Compare,  ///< children[0] argNames[0] children[1] argNames[1] ... (chained)
    CondExpr, ///< children[1] if children[0] else children[2] (null =
              ///< undefined)
  };
  Kind kind;
  Pos pos;
  Value value;
  std::string name; ///< names, attributes, filters, tests, operators
  bool negated = false;
  std::vector<std::unique_ptr<Expr>>
      children; ///< may hold nulls (Slice, CondExpr)
  std::vector<std::string> argNames;
};

struct Node;
using NodeList = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind {
    Text,   ///< text
    Output, ///< {{ expr }}
    If,  ///< exprs[i] -> bodies[i]; bodies[exprs.size()] = else (may be empty)
    For, ///< for names in expr [if filter]: bodies[0], else bodies[1]
    Set, ///< set names = expr, or set names[0].attr = expr
    SetBlock, ///< set names[0] %}bodies[0]{% endset (filters: filterChain)
    Macro,    ///< macro text(names = exprs defaults) bodies[0]
    Break,
    Continue,
    Scope,       ///< bodies[0] (generation blocks: rendered as is)
    FilterBlock, ///< filter filterChain %} bodies[0]
  };
  Kind kind;
  Pos pos;
  std::string text;
  std::string attr;
  std::unique_ptr<Expr> expr;
  std::unique_ptr<Expr> filter;
  /// For SetBlock / FilterBlock: a Filter chain whose innermost input is null.
  std::unique_ptr<Expr> filterChain;
  std::vector<std::unique_ptr<Expr>>
      exprs; ///< If conditions; Macro defaults (null = none)
  std::vector<std::string> names;
  std::vector<NodeList> bodies;
};

/// Lexes and parses `source` (newlines already normalized by the caller).
absl::StatusOr<NodeList> parseTemplate(std::string_view source,
                                       const TemplateOptions &options);

/// Python's str.isspace() for one code point.
bool isPythonSpace(uint32_t codePoint);
/// Decodes one UTF-8 code point at `pos` (advancing it); an invalid byte is
/// taken as one code point of its own (U+DC80 + byte, as Python's
/// surrogateescape), so no input is lost.
uint32_t decodeUtf8(std::string_view text, size_t &pos);
void appendUtf8(std::string &out, uint32_t codePoint);

} // namespace treni::jinja::detail
