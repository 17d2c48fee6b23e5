//===- Parser.cpp - .agent source -> syntax tree -------------------------===//
//
// Recursive descent over the grammar in docs/agent-language.md. Nesting
// (blocks, parentheses, lists) is bounded so hostile input cannot exhaust
// the stack.
//
//===----------------------------------------------------------------------===//

#include "agent_dsl/Parser.h"

#include "agent_dsl/Lexer.h"
#include "agent_dsl/Sema.h"

#include <iterator>

namespace treni::agentdsl {
namespace {

constexpr int kMaxNesting = 200;

/// One precedence level of left-associative binary operators: the keyword,
/// the node it builds and its spelling in diagnostics.
struct BinaryLevel {
  TokenKind token;
  Expr::Kind kind;
  const char *spelling;
};

/// Binary operator precedence levels, loosest first.
constexpr BinaryLevel kBinaryLevels[] = {
    {TokenKind::KwOr, Expr::Kind::Or, "or"},
    {TokenKind::KwAnd, Expr::Kind::And, "and"},
};

class Parser {
public:
  Parser(std::vector<Token> tokens, DiagnosticEngine &diags)
      : tokens(std::move(tokens)), diags(diags) {}

  std::optional<Program> parseFile() {
    Program program;
    while (!at(TokenKind::Eof)) {
      if (at(TokenKind::KwExtern)) {
        auto decl = parseToolDecl();
        if (!decl)
          return std::nullopt;
        program.tools.push_back(std::move(*decl));
      } else if (at(TokenKind::KwWorkflow)) {
        auto workflow = parseWorkflow();
        if (!workflow)
          return std::nullopt;
        program.workflows.push_back(std::move(*workflow));
      } else {
        return fail(current(), "expected 'workflow' or 'extern tool' at the "
                               "top level"),
               std::nullopt;
      }
    }
    return program;
  }

private:
  std::vector<Token> tokens;
  DiagnosticEngine &diags;
  size_t index = 0;
  int depth = 0;

  const Token &current() const { return tokens[index]; }
  const Token &lookahead(size_t ahead) const {
    size_t at = index + ahead;
    return at < tokens.size() ? tokens[at] : tokens.back();
  }
  bool at(TokenKind kind) const { return current().kind == kind; }
  Token take() {
    Token token = tokens[index];
    if (index + 1 < tokens.size())
      ++index;
    return token;
  }

  /// Reports an error at `token` unless the lexer already did.
  bool fail(const Token &token, std::string message) {
    if (token.kind != TokenKind::Error)
      diags.error(token.loc, std::move(message));
    return false;
  }
  bool expect(TokenKind kind, std::string_view context) {
    if (at(kind)) {
      take();
      return true;
    }
    return fail(current(), "expected " + std::string(tokenKindName(kind)) +
                               " " + std::string(context) + ", found " +
                               describe(current()));
  }
  static std::string describe(const Token &token) {
    switch (token.kind) {
    case TokenKind::Eof:
      return "end of file";
    case TokenKind::String:
      return "a string";
    case TokenKind::Identifier:
      return "'" + token.text + "'";
    default:
      return token.text.empty() ? std::string(tokenKindName(token.kind))
                                : "'" + token.text + "'";
    }
  }
  /// An identifier, or a keyword where a plain name is wanted (reported).
  std::optional<Token> expectName(std::string_view what) {
    if (at(TokenKind::Identifier))
      return take();
    if (current().kind >= TokenKind::KwWorkflow)
      return fail(current(), "'" + current().text +
                                 "' is a keyword and cannot be used as " +
                                 std::string(what)),
             std::nullopt;
    return fail(current(), "expected " + std::string(what) + ", found " +
                               describe(current())),
           std::nullopt;
  }

  /// Items separated by commas (a trailing comma allowed) up to and
  /// including `close`, the opening bracket already taken: `parseItem`
  /// reads one and returns false after reporting an error.
  template <typename ParseItem>
  bool parseCommaList(TokenKind close, std::string_view closing,
                      ParseItem parseItem) {
    while (!at(close)) {
      if (!parseItem())
        return false;
      if (!at(TokenKind::Comma))
        break;
      take();
    }
    return expect(close, closing);
  }

  /// "NAME: TYPE" of a tool or workflow parameter; tool parameters pass
  /// `optional`, set by a '?' after the name.
  template <typename Parameter>
  bool parseParam(Parameter &param, bool *optional) {
    auto name = expectName("a parameter name");
    if (!name)
      return false;
    param.name = name->text;
    param.loc = name->loc;
    if (optional && at(TokenKind::Question)) {
      take();
      *optional = true;
    }
    if (!expect(TokenKind::Colon, "after the parameter name"))
      return false;
    auto type = parseType();
    if (!type)
      return false;
    param.type = *type;
    return true;
  }

  struct DepthGuard {
    Parser &parser;
    bool ok;
    DepthGuard(Parser &parser, SourceLoc loc) : parser(parser) {
      ok = ++parser.depth <= kMaxNesting;
      if (!ok && parser.depth == kMaxNesting + 1)
        parser.diags.error(loc, "nesting is too deep (more than " +
                                    std::to_string(kMaxNesting) + " levels)");
    }
    ~DepthGuard() { --parser.depth; }
  };

  std::optional<Type> parseType() {
    if (!at(TokenKind::Identifier))
      return fail(current(), "expected a type (string, int, float, bool, "
                             "json), found " +
                                 describe(current())),
             std::nullopt;
    const std::string &word = current().text;
    Type type = word == "string"  ? Type::String
                : word == "int"   ? Type::Int
                : word == "float" ? Type::Float
                : word == "bool"  ? Type::Bool
                : word == "json"  ? Type::Json
                                  : Type::Error;
    if (type == Type::Error)
      return fail(current(), "unknown type '" + word +
                                 "' (string, int, float, bool, json)"),
             std::nullopt;
    take();
    return type;
  }

  /// tool_name = IDENT { "." IDENT }
  std::optional<std::string> parseDottedName(std::string_view what) {
    auto first = expectName(what);
    if (!first)
      return std::nullopt;
    std::string name = first->text;
    while (at(TokenKind::Dot)) {
      take();
      auto part = expectName("a name after '.'");
      if (!part)
        return std::nullopt;
      name += "." + part->text;
    }
    return name;
  }

  std::optional<ToolDecl> parseToolDecl() {
    take(); // extern
    if (!expect(TokenKind::KwTool, "after 'extern'"))
      return std::nullopt;
    ToolDecl decl;
    decl.loc = current().loc;
    auto name = parseDottedName("a tool name");
    if (!name)
      return std::nullopt;
    decl.name = *name;
    if (!expect(TokenKind::LParen, "after the tool name"))
      return std::nullopt;
    if (!parseCommaList(TokenKind::RParen, "to close the parameter list", [&] {
          ToolDecl::Parameter param;
          if (!parseParam(param, &param.optional))
            return false;
          decl.params.push_back(std::move(param));
          return true;
        }))
      return std::nullopt;
    if (at(TokenKind::Identifier) && current().text == "readonly") {
      take();
      decl.readonly = true;
    }
    return decl;
  }

  std::optional<Workflow> parseWorkflow() {
    take(); // workflow
    Workflow workflow;
    auto name = expectName("a workflow name");
    if (!name)
      return std::nullopt;
    workflow.name = name->text;
    workflow.loc = name->loc;
    if (!expect(TokenKind::LParen, "after the workflow name"))
      return std::nullopt;
    if (!parseCommaList(TokenKind::RParen, "to close the parameter list", [&] {
          Param param;
          if (!parseParam(param, /*optional=*/nullptr))
            return false;
          if (at(TokenKind::Assign)) {
            take();
            param.defaultValue = parsePrimary();
            if (!param.defaultValue)
              return false;
          }
          workflow.params.push_back(std::move(param));
          return true;
        }))
      return std::nullopt;
    if (at(TokenKind::Arrow)) {
      take();
      workflow.returnTypeLoc = current().loc;
      auto type = parseType();
      if (!type)
        return std::nullopt;
      workflow.returnType = *type;
    }
    if (!parseBlock(workflow.body, &workflow.endLoc))
      return std::nullopt;
    return workflow;
  }

  bool parseBlock(Block &block, SourceLoc *endLoc = nullptr) {
    DepthGuard guard(*this, current().loc);
    if (!guard.ok)
      return false;
    if (!expect(TokenKind::LBrace, "to open a block"))
      return false;
    while (!at(TokenKind::RBrace)) {
      if (at(TokenKind::Eof))
        return fail(current(), "expected '}' to close the block, found end "
                               "of file");
      StmtPtr stmt = parseStatement();
      if (!stmt)
        return false;
      block.push_back(std::move(stmt));
    }
    if (endLoc)
      *endLoc = current().loc;
    take();
    return true;
  }

  StmtPtr parseStatement() {
    switch (current().kind) {
    case TokenKind::KwLet:
      return parseLet();
    case TokenKind::KwGenerate:
      return parseGenerate();
    case TokenKind::KwTool:
      return parseTool();
    case TokenKind::KwRetry:
      return parseRetry();
    case TokenKind::KwIf:
      return parseIf();
    case TokenKind::KwReturn:
      return parseReturn();
    default:
      fail(current(), "expected a statement (let, generate, tool, retry, if, "
                      "return), found " +
                          describe(current()));
      return nullptr;
    }
  }

  StmtPtr parseLet() {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::Let, take().loc);
    auto name = expectName("a variable name after 'let'");
    if (!name)
      return nullptr;
    stmt->name = name->text;
    stmt->nameLoc = name->loc;
    if (!expect(TokenKind::Assign, "after the variable name"))
      return nullptr;
    stmt->value = parseExpr();
    return stmt->value ? std::move(stmt) : nullptr;
  }

  /// `{ IDENT value }` until `as`, the end of the statement or the block.
  bool parseOptions(Stmt &stmt) {
    while (at(TokenKind::Identifier)) {
      StepOption option;
      option.name = current().text;
      option.loc = take().loc;
      if (at(TokenKind::Duration)) {
        Token duration = take();
        option.value = std::make_unique<Expr>(Expr::Kind::Int, duration.loc);
        option.value->intValue = duration.intValue;
        option.value->isDuration = true;
      } else {
        option.value = parsePrimary();
        if (!option.value)
          return false;
      }
      stmt.options.push_back(std::move(option));
    }
    return true;
  }

  bool parseAs(Stmt &stmt) {
    if (!at(TokenKind::KwAs))
      return true;
    take();
    auto name = expectName("a step name after 'as'");
    if (!name)
      return false;
    stmt.name = name->text;
    stmt.nameLoc = name->loc;
    return true;
  }

  StmtPtr parseGenerate() {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::Generate, take().loc);
    if (!at(TokenKind::String) && !at(TokenKind::Identifier) &&
        !at(TokenKind::LParen))
      return fail(current(), "expected a prompt (a string or a name) after "
                             "'generate', found " +
                                 describe(current())),
             nullptr;
    stmt->value = parsePrimary();
    if (!stmt->value || !parseOptions(*stmt) || !parseAs(*stmt))
      return nullptr;
    return stmt;
  }

  StmtPtr parseTool() {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::Tool, take().loc);
    stmt->toolLoc = current().loc;
    auto name = parseDottedName("a tool name after 'tool'");
    if (!name)
      return nullptr;
    stmt->toolName = *name;
    if (!expect(TokenKind::LParen, "after the tool name"))
      return nullptr;
    if (!parseCommaList(TokenKind::RParen, "to close the argument list", [&] {
          ToolArgument argument;
          auto argName = expectName("an argument name");
          if (!argName)
            return false;
          argument.name = argName->text;
          argument.loc = argName->loc;
          if (!expect(TokenKind::Colon, "after the argument name (arguments "
                                        "are 'name: value')"))
            return false;
          argument.value = parseExpr();
          if (!argument.value)
            return false;
          stmt->arguments.push_back(std::move(argument));
          return true;
        }))
      return nullptr;
    if (!parseOptions(*stmt) || !parseAs(*stmt))
      return nullptr;
    return stmt;
  }

  StmtPtr parseRetry() {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::Retry, take().loc);
    if (!parseBlock(stmt->body))
      return nullptr;
    if (!expect(TokenKind::KwWhen, "after the retry block"))
      return nullptr;
    stmt->value = parseExpr();
    if (!stmt->value)
      return nullptr;
    if (!at(TokenKind::Identifier) || current().text != "max")
      return fail(current(), "expected 'max N' after the retry condition, "
                             "found " +
                                 describe(current())),
             nullptr;
    take();
    stmt->maxLoc = current().loc;
    if (!at(TokenKind::Integer))
      return fail(current(), "expected the number of attempts after 'max', "
                             "found " +
                                 describe(current())),
             nullptr;
    stmt->maxAttempts = take().intValue;
    return stmt;
  }

  StmtPtr parseIf() {
    DepthGuard guard(*this, current().loc);
    if (!guard.ok)
      return nullptr;
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::If, take().loc);
    stmt->value = parseExpr();
    if (!stmt->value || !parseBlock(stmt->body))
      return nullptr;
    if (at(TokenKind::KwElse)) {
      take();
      stmt->hasElse = true;
      if (at(TokenKind::KwIf)) {
        StmtPtr nested = parseIf();
        if (!nested)
          return nullptr;
        stmt->elseBody.push_back(std::move(nested));
      } else if (!parseBlock(stmt->elseBody)) {
        return nullptr;
      }
    }
    return stmt;
  }

  StmtPtr parseReturn() {
    auto stmt = std::make_unique<Stmt>(Stmt::Kind::Return, take().loc);
    if (at(TokenKind::RBrace))
      return stmt;
    stmt->value = parseExpr();
    return stmt->value ? std::move(stmt) : nullptr;
  }

  // Expressions, loosest first: the binary levels (or, and), not,
  // comparison, primary.

  ExprPtr parseExpr() {
    DepthGuard guard(*this, current().loc);
    if (!guard.ok)
      return nullptr;
    return parseBinary(0);
  }

  /// Parses the left-associative binary operators from precedence level
  /// `level` of kBinaryLevels down; below the last level come 'not' and
  /// comparisons.
  ExprPtr parseBinary(size_t level) {
    if (level == std::size(kBinaryLevels))
      return parseNot();
    const BinaryLevel &op = kBinaryLevels[level];
    ExprPtr lhs = parseBinary(level + 1);
    int chain = 0;
    while (lhs && at(op.token)) {
      // The tree is left-deep: a long chain is as deep as it is long.
      if (++chain > kMaxNesting)
        return fail(current(), "too many '" + std::string(op.spelling) +
                                   "' operators in one expression (more "
                                   "than " +
                                   std::to_string(kMaxNesting) + ")"),
               nullptr;
      SourceLoc loc = take().loc;
      ExprPtr rhs = parseBinary(level + 1);
      if (!rhs)
        return nullptr;
      auto node = std::make_unique<Expr>(op.kind, loc);
      node->operands.push_back(std::move(lhs));
      node->operands.push_back(std::move(rhs));
      lhs = std::move(node);
    }
    return lhs;
  }

  ExprPtr parseNot() {
    if (!at(TokenKind::KwNot))
      return parseComparison();
    DepthGuard guard(*this, current().loc);
    if (!guard.ok)
      return nullptr;
    SourceLoc loc = take().loc;
    ExprPtr operand = parseNot();
    if (!operand)
      return nullptr;
    auto node = std::make_unique<Expr>(Expr::Kind::Not, loc);
    node->operands.push_back(std::move(operand));
    return node;
  }

  std::optional<CompareOp> comparisonAt() const {
    switch (current().kind) {
    case TokenKind::EqEq:
      return CompareOp::Eq;
    case TokenKind::NotEq:
      return CompareOp::Ne;
    case TokenKind::Less:
      return CompareOp::Lt;
    case TokenKind::LessEq:
      return CompareOp::Le;
    case TokenKind::Greater:
      return CompareOp::Gt;
    case TokenKind::GreaterEq:
      return CompareOp::Ge;
    default:
      return std::nullopt;
    }
  }

  ExprPtr parseComparison() {
    ExprPtr lhs = parsePrimary();
    if (!lhs)
      return nullptr;
    auto op = comparisonAt();
    if (!op)
      return lhs;
    SourceLoc loc = take().loc;
    ExprPtr rhs = parsePrimary();
    if (!rhs)
      return nullptr;
    if (comparisonAt())
      return fail(current(), "comparisons do not chain: write 'a < b and b "
                             "< c'"),
             nullptr;
    auto node = std::make_unique<Expr>(Expr::Kind::Compare, loc);
    node->compareOp = *op;
    node->operands.push_back(std::move(lhs));
    node->operands.push_back(std::move(rhs));
    return node;
  }

  /// Builds a Path expression from "a.b.c" starting at `loc` (used for
  /// string interpolations, whose paths the lexer already split out).
  static ExprPtr pathFromText(const std::string &text, SourceLoc loc) {
    auto node = std::make_unique<Expr>(Expr::Kind::Path, loc);
    size_t start = 0;
    SourceLoc partLoc = loc;
    while (true) {
      size_t dot = text.find('.', start);
      std::string part = text.substr(
          start, dot == std::string::npos ? std::string::npos : dot - start);
      node->path.push_back(part);
      node->pathLocs.push_back(partLoc);
      if (dot == std::string::npos)
        break;
      partLoc.column += static_cast<uint32_t>(part.size() + 1);
      start = dot + 1;
    }
    return node;
  }

  /// Comma-separated expressions up to and including `close`, as the
  /// operands of a list or a call whose opening bracket is already taken.
  bool parseOperands(TokenKind close, std::string_view closing, Expr &node) {
    return parseCommaList(close, closing, [&] {
      ExprPtr operand = parseExpr();
      if (!operand)
        return false;
      node.operands.push_back(std::move(operand));
      return true;
    });
  }

  ExprPtr parsePrimary() {
    const Token &token = current();
    switch (token.kind) {
    case TokenKind::String: {
      Token string = take();
      auto node = std::make_unique<Expr>(Expr::Kind::String, string.loc);
      for (StringPiece &piece : string.pieces) {
        TemplatePart part;
        if (piece.isInterpolation)
          part.path = pathFromText(piece.text, piece.loc);
        else
          part.literal = std::move(piece.text);
        node->parts.push_back(std::move(part));
      }
      return node;
    }
    case TokenKind::Integer: {
      auto node = std::make_unique<Expr>(Expr::Kind::Int, token.loc);
      node->intValue = take().intValue;
      return node;
    }
    case TokenKind::Float: {
      auto node = std::make_unique<Expr>(Expr::Kind::Float, token.loc);
      node->floatValue = take().floatValue;
      return node;
    }
    case TokenKind::KwTrue:
    case TokenKind::KwFalse: {
      auto node = std::make_unique<Expr>(Expr::Kind::Bool, token.loc);
      node->boolValue = take().kind == TokenKind::KwTrue;
      return node;
    }
    case TokenKind::Duration:
      fail(token, "a duration like '" + token.text +
                      "' is only allowed after 'timeout'");
      return nullptr;
    case TokenKind::LParen: {
      take();
      ExprPtr inner = parseExpr();
      if (!inner || !expect(TokenKind::RParen, "to close '('"))
        return nullptr;
      return inner;
    }
    case TokenKind::LBracket: {
      DepthGuard guard(*this, token.loc);
      if (!guard.ok)
        return nullptr;
      auto node = std::make_unique<Expr>(Expr::Kind::List, take().loc);
      if (!parseOperands(TokenKind::RBracket, "to close the list", *node))
        return nullptr;
      return node;
    }
    case TokenKind::Identifier: {
      Token first = take();
      if (at(TokenKind::LParen)) {
        take();
        auto node = std::make_unique<Expr>(Expr::Kind::Call, first.loc);
        node->callee = first.text;
        if (!parseOperands(TokenKind::RParen, "to close the call", *node))
          return nullptr;
        return node;
      }
      auto node = std::make_unique<Expr>(Expr::Kind::Path, first.loc);
      node->path.push_back(first.text);
      node->pathLocs.push_back(first.loc);
      while (at(TokenKind::Dot)) {
        take();
        auto field = expectName("a field name after '.'");
        if (!field)
          return nullptr;
        node->path.push_back(field->text);
        node->pathLocs.push_back(field->loc);
      }
      return node;
    }
    default:
      if (token.kind >= TokenKind::KwWorkflow && token.kind != TokenKind::KwNot)
        fail(token, "'" + token.text +
                        "' is a keyword and cannot start an expression");
      else
        fail(token, "expected an expression, found " + describe(token));
      return nullptr;
    }
  }
};

} // namespace

std::optional<Program> parseProgram(std::string_view source,
                                    DiagnosticEngine &diags) {
  std::vector<Token> tokens = lex(source, diags);
  if (diags.hasErrors())
    return std::nullopt;
  return Parser(std::move(tokens), diags).parseFile();
}

std::optional<Program> parseAndCheck(std::string_view source,
                                     DiagnosticEngine &diags) {
  std::optional<Program> program = parseProgram(source, diags);
  if (!program)
    return std::nullopt;
  if (!checkProgram(*program, diags))
    return std::nullopt;
  return program;
}

} // namespace treni::agentdsl
