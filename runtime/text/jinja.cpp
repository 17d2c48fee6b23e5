//===- jinja.cpp - interpreter of the Jinja2 subset -----------------------===//
//
// Walks the tree jinja_parser.cpp builds. Semantics follow Jinja2 3.1 in an
// ImmutableSandboxedEnvironment as transformers creates it:
//  - attribute access tries the attribute (a method) first, then the item;
//    subscripts try the item first, then the attribute; a missing one is
//    Undefined, and so is an out-of-range index. Taking an attribute or item
//    of Undefined, calling it or doing arithmetic with it is an error.
//  - `set` inside a for body or a macro is local to it (one scope per loop
//    iteration); at the top level, and inside if, it sets the template's
//    variable. namespace() attributes are shared.
//  - `a and b` / `a or b` give an operand, as in Python.
// Errors are thrown as RenderError inside this file and returned as a Status
// (with the line:column of the expression) from Template::render().
//
//===----------------------------------------------------------------------===//

#include "runtime/text/jinja.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/text/jinja_ast.h"
#include "utf8proc.h"

namespace treni::jinja {

using detail::appendUtf8;
using detail::decodeUtf8;
using detail::Expr;
using detail::formatPos;
using detail::isPythonSpace;
using detail::Node;
using detail::NodeList;
using detail::Pos;

namespace {

struct RenderError {
  Pos pos;
  std::string message;
  bool raised = false; ///< raise_exception()
};

/// A Status from a native function, raised at `pos`.
[[noreturn]] void throwStatus(const absl::Status &status, Pos pos) {
  bool raised = absl::StrContains(status.message(), "\x01raised\x01");
  std::string message(status.message());
  if (raised)
    message = message.substr(0, message.find("\x01raised\x01"));
  throw RenderError{pos, std::move(message), raised};
}

[[noreturn]] void fail(Pos pos, std::string message) {
  throw RenderError{pos, std::move(message)};
}

std::string undefinedMessage(const Value &v) {
  if (v.undefinedHint().empty())
    return "value is undefined";
  return v.undefinedHint();
}

//===----------------------------------------------------------------------===//
// Unicode string helpers (code points, as Python's str)
//===----------------------------------------------------------------------===//

std::vector<uint32_t> codePoints(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();)
    out.push_back(decodeUtf8(s, i));
  return out;
}

std::string fromCodePoints(const std::vector<uint32_t> &cps, size_t begin,
                           size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i)
    appendUtf8(out, cps[i]);
  return out;
}

int64_t codePointLength(std::string_view s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++n)
    decodeUtf8(s, i);
  return n;
}

uint32_t toUpper(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
  if (cp >= 0xdc80 && cp <= 0xdcff)
    return cp;
  return static_cast<uint32_t>(
      utf8proc_toupper(static_cast<utf8proc_int32_t>(cp)));
}

uint32_t toLower(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  if (cp >= 0xdc80 && cp <= 0xdcff)
    return cp;
  return static_cast<uint32_t>(
      utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
}

bool isCased(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  if (cp >= 0xdc80 && cp <= 0xdcff)
    return false;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL ||
         cat == UTF8PROC_CATEGORY_LT;
}

std::string mapCase(std::string_view s, uint32_t (*fn)(uint32_t)) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();)
    appendUtf8(out, fn(decodeUtf8(s, i)));
  return out;
}

/// Python str.title().
std::string pythonTitle(std::string_view s) {
  std::string out;
  bool previousCased = false;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = decodeUtf8(s, i);
    appendUtf8(out, previousCased ? toLower(cp) : toUpper(cp));
    previousCased = isCased(cp);
  }
  return out;
}

/// Python str.capitalize().
std::string pythonCapitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = decodeUtf8(s, i);
    appendUtf8(out, first ? toUpper(cp) : toLower(cp));
    first = false;
  }
  return out;
}

/// Jinja's `title` filter: capitalizes words split at whitespace, - ( { [ <.
std::string jinjaTitle(std::string_view s) {
  std::string out;
  bool wordStart = true;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = decodeUtf8(s, i);
    bool separator = isPythonSpace(cp) || cp == '-' || cp == '(' || cp == '{' ||
                     cp == '[' || cp == '<';
    if (separator) {
      appendUtf8(out, cp);
      wordStart = true;
    } else {
      appendUtf8(out, wordStart ? toUpper(cp) : toLower(cp));
      wordStart = false;
    }
  }
  return out;
}

/// Python str.strip/lstrip/rstrip; `chars` null = whitespace.
std::string pythonStrip(std::string_view s, const std::string *chars, bool left,
                        bool right) {
  std::vector<uint32_t> cps = codePoints(s);
  std::vector<uint32_t> set;
  if (chars)
    set = codePoints(*chars);
  auto strip = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end()
                 : isPythonSpace(cp);
  };
  size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strip(cps[begin]))
      ++begin;
  if (right)
    while (end > begin && strip(cps[end - 1]))
      --end;
  return fromCodePoints(cps, begin, end);
}

/// Python str.split(sep=None, maxsplit=-1).
ValueList pythonSplit(std::string_view s, const std::string *sep,
                      int64_t maxSplit, Pos pos) {
  ValueList out;
  if (sep) {
    if (sep->empty())
      fail(pos, "split(): empty separator");
    size_t start = 0;
    while (maxSplit < 0 || static_cast<int64_t>(out.size()) < maxSplit) {
      size_t found = s.find(*sep, start);
      if (found == std::string_view::npos)
        break;
      out.push_back(Value::string(std::string(s.substr(start, found - start))));
      start = found + sep->size();
    }
    out.push_back(Value::string(std::string(s.substr(start))));
    return out;
  }
  std::vector<uint32_t> cps = codePoints(s);
  size_t i = 0;
  while (true) {
    while (i < cps.size() && isPythonSpace(cps[i]))
      ++i;
    if (i == cps.size())
      break;
    if (maxSplit >= 0 && static_cast<int64_t>(out.size()) == maxSplit) {
      size_t end = cps.size();
      while (end > i && isPythonSpace(cps[end - 1]))
        --end;
      out.push_back(Value::string(fromCodePoints(cps, i, end)));
      break;
    }
    size_t start = i;
    while (i < cps.size() && !isPythonSpace(cps[i]))
      ++i;
    out.push_back(Value::string(fromCodePoints(cps, start, i)));
  }
  return out;
}

/// Python str.replace(old, new, count).
std::string pythonReplace(std::string_view s, const std::string &from,
                          const std::string &to, int64_t count, size_t limit,
                          Pos pos) {
  std::string out;
  if (from.empty()) {
    std::vector<uint32_t> cps = codePoints(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < cps.size())
        appendUtf8(out, cps[i]);
      if (out.size() > limit)
        fail(pos, "replace(): result too large");
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t found = s.find(from, start);
    if (found == std::string_view::npos)
      break;
    out.append(s.substr(start, found - start));
    out += to;
    if (out.size() > limit)
      fail(pos, "replace(): result too large");
    start = found + from.size();
    ++done;
  }
  out.append(s.substr(start));
  return out;
}

//===----------------------------------------------------------------------===//
// Arguments of native functions
//===----------------------------------------------------------------------===//

/// Binds CallArgs to a Python-style signature.
class Args {
public:
  Args(std::string function, const CallArgs &args,
       std::vector<std::string> params)
      : function_(std::move(function)), values_(params.size()),
        given_(params.size(), false), params_(std::move(params)) {
    if (args.positional.size() > params_.size())
      error_ =
          absl::StrCat(function_, "() takes at most ", params_.size(),
                       " argument(s) (", args.positional.size(), " given)");
    for (size_t i = 0; i < args.positional.size() && i < params_.size(); ++i) {
      values_[i] = args.positional[i];
      given_[i] = true;
    }
    for (const auto &[name, value] : args.keyword) {
      auto it = std::find(params_.begin(), params_.end(), name);
      if (it == params_.end()) {
        error_ = absl::StrCat(
            function_, "() got an unexpected keyword argument '", name, "'");
        continue;
      }
      size_t index = it - params_.begin();
      if (given_[index])
        error_ = absl::StrCat(
            function_, "() got multiple values for argument '", name, "'");
      values_[index] = value;
      given_[index] = true;
    }
  }
  absl::Status status() const {
    return error_.empty() ? absl::OkStatus()
                          : absl::InvalidArgumentError(error_);
  }
  bool has(size_t i) const { return given_[i]; }
  const Value &operator[](size_t i) const { return values_[i]; }
  absl::StatusOr<std::string> string(size_t i, std::string fallback) const {
    if (!given_[i])
      return fallback;
    if (!values_[i].isString())
      return absl::InvalidArgumentError(
          absl::StrCat(function_, "(): argument '", params_[i],
                       "' must be a string, not ", values_[i].typeName()));
    return values_[i].asString();
  }
  absl::StatusOr<int64_t> integer(size_t i, int64_t fallback) const {
    if (!given_[i] || values_[i].isNone())
      return fallback;
    if (values_[i].kind() != Value::Kind::Int &&
        values_[i].kind() != Value::Kind::Bool)
      return absl::InvalidArgumentError(
          absl::StrCat(function_, "(): argument '", params_[i],
                       "' must be an integer, not ", values_[i].typeName()));
    return values_[i].asInt();
  }

private:
  std::string function_;
  std::vector<Value> values_;
  std::vector<bool> given_;
  std::vector<std::string> params_;
  std::string error_;
};

#define JINJA_BIND(argsVar, fnName, callArgs, ...)                             \
  Args argsVar(fnName, callArgs, {__VA_ARGS__});                               \
  TRENI_JINJA_RETURN(argsVar.status())

#define TRENI_JINJA_RETURN(expr)                                               \
  do {                                                                         \
    absl::Status _s = (expr);                                                  \
    if (!_s.ok())                                                              \
      return _s;                                                               \
  } while (0)

#define TRENI_JINJA_ASSIGN(lhs, expr)                                          \
  auto TRENI_JINJA_CAT(_v, __LINE__) = (expr);                                 \
  if (!TRENI_JINJA_CAT(_v, __LINE__).ok())                                     \
    return TRENI_JINJA_CAT(_v, __LINE__).status();                             \
  lhs = std::move(*TRENI_JINJA_CAT(_v, __LINE__))
#define TRENI_JINJA_CAT_INNER(a, b) a##b
#define TRENI_JINJA_CAT(a, b) TRENI_JINJA_CAT_INNER(a, b)

std::shared_ptr<FunctionValue> makeFunction(
    std::string name,
    std::function<absl::StatusOr<Value>(Interpreter &, const CallArgs &)> fn) {
  auto f = std::make_shared<FunctionValue>();
  f->name = std::move(name);
  f->call = std::move(fn);
  return f;
}

} // namespace

//===----------------------------------------------------------------------===//
// Interpreter
//===----------------------------------------------------------------------===//

class Interpreter {
public:
  using Scope = std::unordered_map<std::string, Value>;

  Interpreter(const TemplateOptions &options,
              std::map<std::string, Value> variables)
      : options_(options) {
    scopes_.emplace_back();
    for (auto &[name, value] : variables)
      scopes_[0][name] = std::move(value);
    installGlobals();
  }

  std::string render(const NodeList &body) {
    std::string out;
    out_ = &out;
    execBody(body);
    return out;
  }

  const TemplateOptions &options() const { return options_; }

private:
  enum class Flow { Normal, Break, Continue };

  //===--------------------------------------------------------------------===//
  // Statements
  //===--------------------------------------------------------------------===//

  void write(std::string_view text, Pos pos) {
    out_->append(text);
    totalOutput_ += text.size();
    if (totalOutput_ > options_.maxOutputBytes)
      fail(pos, absl::StrCat("output larger than ", options_.maxOutputBytes,
                             " bytes"));
  }

  Flow execBody(const NodeList &body) {
    for (const auto &node : body) {
      Flow flow = exec(*node);
      if (flow != Flow::Normal)
        return flow;
    }
    return Flow::Normal;
  }

  Flow exec(const Node &node) {
    switch (node.kind) {
    case Node::Kind::Text:
      write(node.text, node.pos);
      return Flow::Normal;
    case Node::Kind::Output: {
      Value v = eval(*node.expr);
      if (v.kind() == Value::Kind::Generator)
        fail(node.expr->pos,
             "unsupported: printing a generator (Jinja2 prints its address); "
             "add |list");
      write(v.str(), node.pos);
      return Flow::Normal;
    }
    case Node::Kind::If:
      for (size_t i = 0; i < node.exprs.size(); ++i)
        if (eval(*node.exprs[i]).truthy())
          return execBody(node.bodies[i]);
      return execBody(node.bodies[node.exprs.size()]);
    case Node::Kind::For:
      return execFor(node);
    case Node::Kind::Set: {
      Value v = eval(*node.expr);
      if (!node.attr.empty()) {
        Value target = lookup(node.names[0]);
        if (target.kind() != Value::Kind::Namespace)
          fail(node.pos,
               absl::StrCat("cannot assign attribute on non-namespace object '",
                            node.names[0], "'"));
        target.mutableDict().set(Value::string(node.attr), std::move(v));
        return Flow::Normal;
      }
      assignTargets(node.names, std::move(v), node.pos);
      return Flow::Normal;
    }
    case Node::Kind::SetBlock: {
      Value v = Value::string(capture(node.bodies[0]));
      if (node.filterChain)
        v = evalFilter(*node.filterChain, &v);
      assign(node.names[0], std::move(v));
      return Flow::Normal;
    }
    case Node::Kind::FilterBlock: {
      Value v = Value::string(capture(node.bodies[0]));
      write(evalFilter(*node.filterChain, &v).str(), node.pos);
      return Flow::Normal;
    }
    case Node::Kind::Macro:
      assign(node.text, makeMacro(node));
      return Flow::Normal;
    case Node::Kind::Break:
      return Flow::Break;
    case Node::Kind::Continue:
      return Flow::Continue;
    case Node::Kind::Scope:
      return execBody(node.bodies[0]);
    }
    return Flow::Normal;
  }

  std::string capture(const NodeList &body) {
    std::string buffer;
    std::string *saved = out_;
    out_ = &buffer;
    execBody(body);
    out_ = saved;
    return buffer;
  }

  void assign(const std::string &name, Value v) {
    scopes_.back()[name] = std::move(v);
  }

  void assignTargets(const std::vector<std::string> &names, Value v, Pos pos) {
    if (names.size() == 1) {
      assign(names[0], std::move(v));
      return;
    }
    ValueList items = iterate(v, pos);
    if (items.size() != names.size())
      fail(pos,
           absl::StrCat(items.size() < names.size() ? "not enough" : "too many",
                        " values to unpack (expected ", names.size(), ", got ",
                        items.size(), ")"));
    for (size_t i = 0; i < names.size(); ++i)
      assign(names[i], items[i]);
  }

  Flow execFor(const Node &node) {
    Value iterable = eval(*node.expr);
    ValueList items = iterate(iterable, node.expr->pos);
    if (node.filter) {
      ValueList kept;
      for (Value &item : items) {
        scopes_.emplace_back();
        assignTargets(node.names, item, node.pos);
        bool keep = eval(*node.filter).truthy();
        scopes_.pop_back();
        if (keep)
          kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty())
      return execBody(node.bodies[1]);
    int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      countIteration(node.pos);
      Dict loop;
      auto set = [&](const char *key, Value v) {
        loop.items.emplace_back(Value::string(key), v);
      };
      set("index", Value::integer(i + 1));
      set("index0", Value::integer(i));
      set("revindex", Value::integer(length - i));
      set("revindex0", Value::integer(length - i - 1));
      set("first", Value::boolean(i == 0));
      set("last", Value::boolean(i == length - 1));
      set("length", Value::integer(length));
      set("depth", Value::integer(1));
      set("depth0", Value::integer(0));
      set("previtem",
          i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
      set("nextitem", i + 1 < length
                          ? items[i + 1]
                          : Value::undefined("there is no next item"));
      set("cycle", Value::function(makeFunction(
                       "loop.cycle",
                       [i](Interpreter &,
                           const CallArgs &args) -> absl::StatusOr<Value> {
                         if (args.positional.empty())
                           return absl::InvalidArgumentError(
                               "no items for cycling given");
                         return args.positional[i % args.positional.size()];
                       })));
      scopes_.emplace_back();
      scopes_.back()["loop"] = Value::namespaceOf(std::move(loop));
      assignTargets(node.names, items[i], node.pos);
      Flow flow = execBody(node.bodies[0]);
      scopes_.pop_back();
      if (flow == Flow::Break)
        break;
    }
    return Flow::Normal;
  }

  void countIteration(Pos pos) {
    if (++iterations_ > options_.maxLoopIterations)
      fail(pos, absl::StrCat("more than ", options_.maxLoopIterations,
                             " loop iterations"));
  }

  //===--------------------------------------------------------------------===//
  // Macros
  //===--------------------------------------------------------------------===//

  Value makeMacro(const Node &node) {
    const Node *macro = &node;
    return Value::function(
        makeFunction(node.text,
                     [macro](Interpreter &interp,
                             const CallArgs &args) -> absl::StatusOr<Value> {
                       return interp.callMacro(*macro, args);
                     }));
  }

public:
  absl::StatusOr<Value> callMacro(const Node &macro, const CallArgs &args) {
    const std::vector<std::string> &params = macro.names;
    if (args.positional.size() > params.size())
      return absl::InvalidArgumentError(
          absl::StrCat("macro '", macro.text, "' takes not more than ",
                       params.size(), " argument(s)"));
    if (++callDepth_ > options_.maxCallDepth) {
      --callDepth_;
      return absl::InvalidArgumentError(absl::StrCat(
          "macro calls nested deeper than ", options_.maxCallDepth));
    }
    Scope frame;
    std::vector<bool> given(params.size(), false);
    for (size_t i = 0; i < args.positional.size(); ++i) {
      frame[params[i]] = args.positional[i];
      given[i] = true;
    }
    for (const auto &[name, value] : args.keyword) {
      auto it = std::find(params.begin(), params.end(), name);
      if (it == params.end()) {
        --callDepth_;
        return absl::InvalidArgumentError(absl::StrCat(
            "macro '", macro.text, "' takes no keyword argument '", name, "'"));
      }
      frame[name] = value;
      given[it - params.begin()] = true;
    }
    // The macro sees the template's variables, its arguments and its own sets.
    std::vector<Scope> saved;
    saved.swap(scopes_);
    scopes_.push_back(saved[0]);
    scopes_.push_back(std::move(frame));
    std::string result;
    try {
      for (size_t i = 0; i < params.size(); ++i) {
        if (given[i])
          continue;
        scopes_.back()[params[i]] =
            macro.exprs[i]
                ? eval(*macro.exprs[i])
                : Value::undefined(absl::StrCat(
                      "'", params[i], "' is undefined (missing argument)"));
      }
      result = capture(macro.bodies[0]);
    } catch (...) {
      scopes_.swap(saved);
      --callDepth_;
      throw;
    }
    // Top-level variables changed inside the macro stay local to it.
    scopes_.swap(saved);
    --callDepth_;
    return Value::string(std::move(result));
  }

private:
  //===--------------------------------------------------------------------===//
  // Expressions
  //===--------------------------------------------------------------------===//

  Value lookup(const std::string &name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end())
        return found->second;
    }
    auto global = globals_.find(name);
    if (global != globals_.end())
      return global->second;
    return Value::undefined(absl::StrCat("'", name, "' is undefined"));
  }

  Value eval(const Expr &e) {
    // Long operator or attribute chains parse without recursion but
    // evaluate with it: bound the depth so no input exhausts the stack.
    if (++evalDepth_ > kMaxEvalDepth) {
      evalDepth_ = 0;
      fail(e.pos, "expression nested too deeply");
    }
    Value v = evalNode(e);
    --evalDepth_;
    return v;
  }

  Value evalNode(const Expr &e) {
    switch (e.kind) {
    case Expr::Kind::Const:
      return e.value;
    case Expr::Kind::Name:
      return lookup(e.name);
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      ValueList items;
      items.reserve(e.children.size());
      for (const auto &child : e.children)
        items.push_back(eval(*child));
      return e.kind == Expr::Kind::List ? Value::list(std::move(items))
                                        : Value::tuple(std::move(items));
    }
    case Expr::Kind::Dict: {
      Dict d;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        Value key = eval(*e.children[i]);
        checkHashable(key, e.children[i]->pos);
        d.set(std::move(key), eval(*e.children[i + 1]));
      }
      return Value::dict(std::move(d));
    }
    case Expr::Kind::GetAttr: {
      Value obj = eval(*e.children[0]);
      if (obj.isUndefined())
        fail(e.pos, undefinedMessage(obj));
      return getAttr(obj, e.name);
    }
    case Expr::Kind::GetItem: {
      Value obj = eval(*e.children[0]);
      if (obj.isUndefined())
        fail(e.pos, undefinedMessage(obj));
      return getItem(obj, eval(*e.children[1]));
    }
    case Expr::Kind::Slice:
      return evalSlice(e);
    case Expr::Kind::Call:
      return evalCall(e);
    case Expr::Kind::Filter:
      return evalFilter(e, nullptr);
    case Expr::Kind::Test: {
      bool result = evalTest(e);
      return Value::boolean(e.negated ? !result : result);
    }
    case Expr::Kind::Not:
      return Value::boolean(!eval(*e.children[0]).truthy());
    case Expr::Kind::Neg:
    case Expr::Kind::Pos: {
      Value v = eval(*e.children[0]);
      if (v.isUndefined())
        fail(e.pos, undefinedMessage(v));
      bool neg = e.kind == Expr::Kind::Neg;
      if (v.kind() == Value::Kind::Float)
        return Value::number(neg ? -v.asFloat() : v.asFloat());
      if (v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool) {
        if (neg && v.asInt() == INT64_MIN)
          fail(e.pos, "integer overflow");
        return Value::integer(neg ? -v.asInt() : v.asInt());
      }
      fail(e.pos, absl::StrCat("bad operand type for unary ", neg ? "-" : "+",
                               ": '", v.typeName(), "'"));
    }
    case Expr::Kind::Binary:
      return evalBinary(e);
    case Expr::Kind::Compare: {
      Value left = eval(*e.children[0]);
      for (size_t i = 1; i < e.children.size(); ++i) {
        Value right = eval(*e.children[i]);
        if (!compare(e.argNames[i - 1], left, right, *e.children[i]))
          return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case Expr::Kind::CondExpr:
      if (eval(*e.children[0]).truthy())
        return eval(*e.children[1]);
      if (e.children[2])
        return eval(*e.children[2]);
      return Value::undefined(
          "the inline if-expression evaluated to false and no else "
          "section was defined");
    }
    fail(e.pos, "unsupported expression");
  }

  void checkHashable(const Value &key, Pos pos) {
    switch (key.kind()) {
    case Value::Kind::List:
    case Value::Kind::Dict:
    case Value::Kind::Namespace:
      fail(pos, absl::StrCat("unhashable type: '", key.typeName(), "'"));
    default:
      return;
    }
  }

  /// Elements of an iterable (list, tuple, dict keys, string characters,
  /// Undefined = empty).
  ValueList iterate(const Value &v, Pos pos) {
    switch (v.kind()) {
    case Value::Kind::Undefined:
      return {};
    case Value::Kind::List:
    case Value::Kind::Tuple:
    case Value::Kind::Generator:
      return v.asList();
    case Value::Kind::Dict: {
      ValueList keys;
      for (const auto &[k, value] : v.asDict().items)
        keys.push_back(k);
      return keys;
    }
    case Value::Kind::String: {
      ValueList chars;
      const std::string &s = v.asString();
      for (size_t i = 0; i < s.size();) {
        std::string ch;
        appendUtf8(ch, decodeUtf8(s, i));
        chars.push_back(Value::string(std::move(ch)));
      }
      return chars;
    }
    default:
      fail(pos, absl::StrCat("'", v.typeName(), "' object is not iterable"));
    }
  }

  Value boundMethod(const Value &self, const std::string &name) {
    std::string qualified = absl::StrCat(self.typeName(), ".", name);
    return Value::function(makeFunction(
        qualified,
        [self, name, qualified](Interpreter &interp,
                                const CallArgs &args) -> absl::StatusOr<Value> {
          return interp.callMethod(self, name, qualified, args);
        }));
  }

  static bool isStringMethod(const std::string &name) {
    static const std::set<std::string> kMethods = {
        "strip", "lstrip",  "rstrip",  "split",   "startswith", "endswith",
        "upper", "lower",   "replace", "title",   "capitalize", "find",
        "count", "isdigit", "isalpha", "isspace", "isupper",    "islower"};
    return kMethods.count(name) > 0;
  }

  Value getAttr(const Value &obj, const std::string &name) {
    std::string hint = absl::StrCat("'", obj.typeName(),
                                    " object' has no attribute '", name, "'");
    switch (obj.kind()) {
    case Value::Kind::Dict: {
      if (name == "get" || name == "items" || name == "keys" ||
          name == "values")
        return boundMethod(obj, name);
      if (const Value *v = obj.asDict().find(Value::string(name)))
        return *v;
      return Value::undefined(hint);
    }
    case Value::Kind::Namespace:
      if (const Value *v = obj.asDict().find(Value::string(name)))
        return *v;
      return Value::undefined(hint);
    case Value::Kind::String:
      if (isStringMethod(name))
        return boundMethod(obj, name);
      return Value::undefined(hint);
    case Value::Kind::List:
    case Value::Kind::Tuple:
      if (name == "count" || name == "index")
        return boundMethod(obj, name);
      return Value::undefined(hint);
    default:
      return Value::undefined(hint);
    }
  }

  Value getItem(const Value &obj, const Value &key) {
    std::string hint = absl::StrCat("'", obj.typeName(),
                                    " object' has no attribute ", key.repr());
    switch (obj.kind()) {
    case Value::Kind::Dict:
      if (const Value *v = obj.asDict().find(key))
        return *v;
      break;
    case Value::Kind::List:
    case Value::Kind::Tuple:
    case Value::Kind::String: {
      if (key.kind() != Value::Kind::Int && key.kind() != Value::Kind::Bool)
        break;
      int64_t index = key.asInt();
      if (obj.isString()) {
        std::vector<uint32_t> cps = codePoints(obj.asString());
        int64_t n = static_cast<int64_t>(cps.size());
        if (index < 0)
          index += n;
        if (index < 0 || index >= n)
          return Value::undefined(
              absl::StrCat("string index ", key.asInt(), " out of range"));
        return Value::string(fromCodePoints(cps, index, index + 1));
      }
      const ValueList &items = obj.asList();
      int64_t n = static_cast<int64_t>(items.size());
      if (index < 0)
        index += n;
      if (index < 0 || index >= n)
        return Value::undefined(absl::StrCat(obj.typeName(), " index ",
                                             key.asInt(), " out of range"));
      return items[index];
    }
    default:
      break;
    }
    if (key.isString())
      return getAttr(obj, key.asString());
    return Value::undefined(hint);
  }

  Value evalSlice(const Expr &e) {
    Value obj = eval(*e.children[0]);
    if (obj.isUndefined())
      fail(e.pos, undefinedMessage(obj));
    std::optional<int64_t> bounds[3];
    for (int i = 0; i < 3; ++i) {
      if (!e.children[i + 1])
        continue;
      Value b = eval(*e.children[i + 1]);
      if (b.isNone())
        continue;
      if (b.kind() != Value::Kind::Int && b.kind() != Value::Kind::Bool)
        fail(e.children[i + 1]->pos,
             "slice indices must be integers or None, not " + b.typeName());
      bounds[i] = b.asInt();
    }
    int64_t step = bounds[2].value_or(1);
    if (step == 0)
      fail(e.pos, "slice step cannot be zero");
    std::vector<uint32_t> cps;
    int64_t n;
    if (obj.isString()) {
      cps = codePoints(obj.asString());
      n = static_cast<int64_t>(cps.size());
    } else if (obj.isSequence()) {
      n = static_cast<int64_t>(obj.asList().size());
    } else {
      // Jinja2 compiles slices as plain Python subscripts: a TypeError.
      fail(e.pos,
           absl::StrCat("'", obj.typeName(), "' object is not subscriptable"));
    }
    // CPython's PySlice_AdjustIndices.
    auto adjust = [&](std::optional<int64_t> v, int64_t fallback, bool isStop) {
      if (!v)
        return fallback;
      int64_t x = *v;
      if (x < 0) {
        x += n;
        if (x < 0)
          x = step < 0 ? -1 : 0;
      } else if (x >= n) {
        x = step < 0 ? n - 1 : n;
      }
      (void)isStop;
      return x;
    };
    int64_t start = adjust(bounds[0], step < 0 ? n - 1 : 0, false);
    int64_t stop = adjust(bounds[1], step < 0 ? -1 : n, true);
    std::vector<int64_t> indices;
    if (step > 0)
      for (int64_t i = start; i < stop; i += step)
        indices.push_back(i);
    else
      for (int64_t i = start; i > stop; i += step)
        indices.push_back(i);
    if (obj.isString()) {
      std::string out;
      for (int64_t i : indices)
        appendUtf8(out, cps[i]);
      return Value::string(std::move(out));
    }
    ValueList out;
    for (int64_t i : indices)
      out.push_back(obj.asList()[i]);
    return obj.kind() == Value::Kind::Tuple ? Value::tuple(std::move(out))
                                            : Value::list(std::move(out));
  }

  CallArgs evalArgs(const Expr &e, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.children.size(); ++i) {
      const std::string &name = e.argNames[i - first];
      Value v = eval(*e.children[i]);
      if (name.empty())
        args.positional.push_back(std::move(v));
      else
        args.keyword.emplace_back(name, std::move(v));
    }
    return args;
  }

  Value evalCall(const Expr &e) {
    Value callee = eval(*e.children[0]);
    CallArgs args = evalArgs(e, 1);
    if (callee.isUndefined())
      fail(e.pos, undefinedMessage(callee));
    if (callee.kind() != Value::Kind::Function)
      fail(e.pos,
           absl::StrCat("'", callee.typeName(), "' object is not callable"));
    absl::StatusOr<Value> result = absl::InternalError("not called");
    try {
      result = callee.asFunction()->call(*this, args);
    } catch (RenderError &error) {
      if (error.pos.line ==
          0) // raised by a native function: locate it at the call
        error.pos = e.pos;
      throw;
    }
    if (!result.ok())
      throwStatus(result.status(), e.pos);
    return std::move(*result);
  }

  //===--------------------------------------------------------------------===//
  // Operators
  //===--------------------------------------------------------------------===//

  static bool isIntLike(const Value &v) {
    return v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool;
  }
  static double toDouble(const Value &v) {
    return v.kind() == Value::Kind::Float ? v.asFloat()
                                          : static_cast<double>(v.asInt());
  }

  [[noreturn]] void operandError(const Expr &e, const Value &a,
                                 const Value &b) {
    fail(e.pos, absl::StrCat("unsupported operand type(s) for ", e.name, ": '",
                             a.typeName(), "' and '", b.typeName(), "'"));
  }

  Value repeat(const Value &seq, int64_t times, const Expr &e) {
    times = std::max<int64_t>(times, 0);
    if (seq.isString()) {
      size_t size = seq.asString().size();
      if (size && static_cast<uint64_t>(times) > options_.maxOutputBytes / size)
        fail(e.pos, "string repetition too large");
      std::string out;
      for (int64_t i = 0; i < times; ++i)
        out += seq.asString();
      return Value::string(std::move(out));
    }
    size_t size = seq.asList().size();
    if (size &&
        static_cast<uint64_t>(times) > (options_.maxOutputBytes / 8) / size)
      fail(e.pos, "list repetition too large");
    ValueList out;
    for (int64_t i = 0; i < times; ++i)
      out.insert(out.end(), seq.asList().begin(), seq.asList().end());
    return seq.kind() == Value::Kind::Tuple ? Value::tuple(std::move(out))
                                            : Value::list(std::move(out));
  }

  bool lessThan(const Value &a, const Value &b, const Expr &e) {
    if (a.isUndefined() || b.isUndefined())
      fail(e.pos, undefinedMessage(a.isUndefined() ? a : b));
    if (a.isNumber() && b.isNumber()) {
      if (isIntLike(a) && isIntLike(b))
        return a.asInt() < b.asInt();
      return toDouble(a) < toDouble(b);
    }
    if (a.isString() && b.isString())
      return a.asString() < b.asString();
    if (a.kind() == b.kind() && a.isSequence()) {
      const ValueList &x = a.asList(), &y = b.asList();
      for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
        if (x[i].equals(y[i]))
          continue;
        return lessThan(x[i], y[i], e);
      }
      return x.size() < y.size();
    }
    fail(e.pos, absl::StrCat("'<' not supported between instances of '",
                             a.typeName(), "' and '", b.typeName(), "'"));
  }

  bool contains(const Value &container, const Value &item, const Expr &e) {
    switch (container.kind()) {
    case Value::Kind::String:
      if (!item.isString())
        fail(e.pos,
             absl::StrCat("'in <string>' requires string as left operand, not ",
                          item.typeName()));
      return container.asString().find(item.asString()) != std::string::npos;
    case Value::Kind::List:
    case Value::Kind::Tuple:
    case Value::Kind::Generator:
      for (const Value &v : container.asList())
        if (v.equals(item))
          return true;
      return false;
    case Value::Kind::Dict:
      return container.asDict().find(item) != nullptr;
    case Value::Kind::Undefined:
      return false;
    default:
      fail(e.pos, absl::StrCat("argument of type '", container.typeName(),
                               "' is not iterable"));
    }
  }

  bool compare(const std::string &op, const Value &a, const Value &b,
               const Expr &e) {
    if (op == "==")
      return a.equals(b);
    if (op == "!=")
      return !a.equals(b);
    if (op == "<")
      return lessThan(a, b, e);
    if (op == ">")
      return lessThan(b, a, e);
    if (op == "<=")
      return !lessThan(b, a, e);
    if (op == ">=")
      return !lessThan(a, b, e);
    if (op == "in")
      return contains(b, a, e);
    return !contains(b, a, e); // notin
  }

  Value evalBinary(const Expr &e) {
    const std::string &op = e.name;
    if (op == "and") {
      Value a = eval(*e.children[0]);
      return a.truthy() ? eval(*e.children[1]) : a;
    }
    if (op == "or") {
      Value a = eval(*e.children[0]);
      return a.truthy() ? a : eval(*e.children[1]);
    }
    Value a = eval(*e.children[0]);
    Value b = eval(*e.children[1]);
    if (op == "~") {
      std::string s = a.str();
      s += b.str();
      if (s.size() > options_.maxOutputBytes)
        fail(e.pos, "string too large");
      return Value::string(std::move(s));
    }
    if (a.isUndefined() || b.isUndefined())
      fail(e.pos, undefinedMessage(a.isUndefined() ? a : b));
    if (op == "+") {
      if (a.isString() && b.isString()) {
        if (a.asString().size() + b.asString().size() > options_.maxOutputBytes)
          fail(e.pos, "string too large");
        return Value::string(a.asString() + b.asString());
      }
      if (a.isSequence() && a.kind() == b.kind()) {
        ValueList items = a.asList();
        items.insert(items.end(), b.asList().begin(), b.asList().end());
        return a.kind() == Value::Kind::Tuple ? Value::tuple(std::move(items))
                                              : Value::list(std::move(items));
      }
    }
    if (op == "*") {
      if ((a.isString() || a.isSequence()) && isIntLike(b))
        return repeat(a, b.asInt(), e);
      if (isIntLike(a) && (b.isString() || b.isSequence()))
        return repeat(b, a.asInt(), e);
    }
    if (op == "%" && a.isString())
      fail(e.pos, "unsupported: string formatting with '%'");
    if (!a.isNumber() || !b.isNumber())
      operandError(e, a, b);
    if (isIntLike(a) && isIntLike(b)) {
      int64_t x = a.asInt(), y = b.asInt(), r = 0;
      if (op == "+") {
        if (__builtin_add_overflow(x, y, &r))
          fail(e.pos, "integer overflow");
        return Value::integer(r);
      }
      if (op == "-") {
        if (__builtin_sub_overflow(x, y, &r))
          fail(e.pos, "integer overflow");
        return Value::integer(r);
      }
      if (op == "*") {
        if (__builtin_mul_overflow(x, y, &r))
          fail(e.pos, "integer overflow");
        return Value::integer(r);
      }
      if (op == "/") {
        if (y == 0)
          fail(e.pos, "division by zero");
        return Value::number(static_cast<double>(x) / static_cast<double>(y));
      }
      if (op == "//" || op == "%") {
        if (y == 0)
          fail(e.pos, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1)
          fail(e.pos, "integer overflow");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          --q;
          m += y;
        }
        return Value::integer(op == "//" ? q : m);
      }
      if (op == "**") {
        if (y < 0)
          return Value::number(
              std::pow(static_cast<double>(x), static_cast<double>(y)));
        int64_t result = 1, base = x;
        for (int64_t exp = y; exp > 0; exp >>= 1) {
          if (exp & 1)
            if (__builtin_mul_overflow(result, base, &result))
              fail(e.pos, "integer overflow");
          if (exp > 1 && __builtin_mul_overflow(base, base, &base))
            fail(e.pos, "integer overflow");
        }
        return Value::integer(result);
      }
    }
    double x = toDouble(a), y = toDouble(b);
    if (op == "+")
      return Value::number(x + y);
    if (op == "-")
      return Value::number(x - y);
    if (op == "*")
      return Value::number(x * y);
    if (op == "/") {
      if (y == 0)
        fail(e.pos, "float division by zero");
      return Value::number(x / y);
    }
    if (op == "//" || op == "%") {
      if (y == 0)
        fail(e.pos, "float modulo");
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0)))
        m += y;
      if (op == "%")
        return Value::number(m);
      return Value::number(std::floor((x - m) / y + 0.5) == (x - m) / y
                               ? (x - m) / y
                               : std::floor(x / y));
    }
    if (op == "**")
      return Value::number(std::pow(x, y));
    operandError(e, a, b);
  }

  //===--------------------------------------------------------------------===//
  // Tests
  //===--------------------------------------------------------------------===//

public:
  static bool isKnownTest(const std::string &name) {
    static const std::set<std::string> kTests = {
        "defined",  "undefined", "none",   "boolean", "false",       "true",
        "integer",  "float",     "number", "string",  "mapping",     "iterable",
        "sequence", "callable",  "odd",    "even",    "divisibleby", "eq",
        "equalto",  "==",        "ne",     "!=",      "lt",          "lessthan",
        "<",        "le",        "<=",     "gt",      "greaterthan", ">",
        "ge",       ">=",        "in",     "sameas",  "lower",       "upper",
        "escaped"};
    return kTests.count(name) > 0;
  }

  bool applyTest(const std::string &name, const Value &v, const ValueList &args,
                 const Expr &e) {
    auto needArgs = [&](size_t n) {
      if (args.size() != n)
        fail(e.pos, absl::StrCat("test '", name, "' takes ", n,
                                 " argument(s), got ", args.size()));
    };
    if (name == "defined")
      return !v.isUndefined();
    if (name == "undefined")
      return v.isUndefined();
    if (name == "none")
      return v.isNone();
    if (name == "boolean")
      return v.kind() == Value::Kind::Bool;
    if (name == "false")
      return v.kind() == Value::Kind::Bool && !v.asBool();
    if (name == "true")
      return v.kind() == Value::Kind::Bool && v.asBool();
    if (name == "integer")
      return v.kind() == Value::Kind::Int;
    if (name == "float")
      return v.kind() == Value::Kind::Float;
    if (name == "number")
      return v.isNumber();
    if (name == "string")
      return v.isString();
    if (name == "mapping")
      return v.isMapping();
    if (name == "iterable")
      return v.isUndefined() || v.isString() || v.isSequence() ||
             v.isMapping() || v.kind() == Value::Kind::Generator;
    if (name == "sequence")
      return v.isUndefined() || v.isString() || v.isSequence() || v.isMapping();
    if (name == "callable")
      return v.kind() == Value::Kind::Function;
    if (name == "lower" || name == "upper") {
      std::string s = v.str();
      return name == "lower"
                 ? mapCase(s, toLower) == s && mapCase(s, toUpper) != s
                 : mapCase(s, toUpper) == s && mapCase(s, toLower) != s;
    }
    if (name == "escaped")
      return false;
    if (name == "odd" || name == "even" || name == "divisibleby") {
      // value % 2 == 1, value % 2 == 0, value % num == 0, as Python computes
      // them.
      Value divisor = Value::integer(2);
      if (name == "divisibleby") {
        needArgs(1);
        divisor = args[0];
      }
      if (!v.isNumber() || !divisor.isNumber())
        fail(e.pos,
             absl::StrCat("unsupported operand type(s) for %: '", v.typeName(),
                          "' and '", divisor.typeName(), "'"));
      if (toDouble(divisor) == 0)
        fail(e.pos, "integer division or modulo by zero");
      double m;
      if (isIntLike(v) && isIntLike(divisor)) {
        int64_t d = divisor.asInt(), r = d == -1 ? 0 : v.asInt() % d;
        if (r != 0 && ((r < 0) != (d < 0)))
          r += d;
        m = static_cast<double>(r);
      } else {
        double d = toDouble(divisor);
        m = std::fmod(toDouble(v), d);
        if (m != 0 && ((m < 0) != (d < 0)))
          m += d;
      }
      return name == "odd" ? m == 1 : m == 0;
    }
    needArgs(1);
    const Value &other = args[0];
    if (name == "eq" || name == "equalto" || name == "==")
      return v.equals(other);
    if (name == "ne" || name == "!=")
      return !v.equals(other);
    if (name == "lt" || name == "lessthan" || name == "<")
      return lessThan(v, other, e);
    if (name == "le" || name == "<=")
      return !lessThan(other, v, e);
    if (name == "gt" || name == "greaterthan" || name == ">")
      return lessThan(other, v, e);
    if (name == "ge" || name == ">=")
      return !lessThan(v, other, e);
    if (name == "in")
      return contains(other, v, e);
    if (name == "sameas") {
      if (v.kind() != other.kind())
        return false;
      switch (v.kind()) {
      case Value::Kind::None:
      case Value::Kind::Undefined:
        return true;
      case Value::Kind::Bool:
        return v.asBool() == other.asBool();
      case Value::Kind::Int:
        return v.asInt() == other.asInt() && v.asInt() >= -5 &&
               v.asInt() <= 256;
      case Value::Kind::List:
      case Value::Kind::Tuple:
        return &v.asList() == &other.asList();
      case Value::Kind::Dict:
      case Value::Kind::Namespace:
        return &v.asDict() == &other.asDict();
      default:
        return false;
      }
    }
    fail(e.pos, absl::StrCat("no test named '", name, "'"));
  }

private:
  bool evalTest(const Expr &e) {
    Value v = eval(*e.children[0]);
    CallArgs args = evalArgs(e, 1);
    if (!args.keyword.empty())
      fail(e.pos, "unsupported: keyword arguments to tests");
    return applyTest(e.name, v, args.positional, e);
  }

  //===--------------------------------------------------------------------===//
  // Filters
  //===--------------------------------------------------------------------===//

public:
  static bool isKnownFilter(const std::string &name) {
    static const std::set<std::string> kFilters = {"tojson",
                                                   "trim",
                                                   "length",
                                                   "count",
                                                   "first",
                                                   "last",
                                                   "join",
                                                   "upper",
                                                   "lower",
                                                   "capitalize",
                                                   "title",
                                                   "default",
                                                   "d",
                                                   "items",
                                                   "list",
                                                   "string",
                                                   "int",
                                                   "float",
                                                   "replace",
                                                   "safe",
                                                   "abs",
                                                   "reverse",
                                                   "map",
                                                   "select",
                                                   "reject",
                                                   "selectattr",
                                                   "rejectattr",
                                                   "unique",
                                                   "indent",
                                                   "dictsort",
                                                   "sum",
                                                   "min",
                                                   "max",
                                                   "round",
                                                   "wordcount",
                                                   "batch",
                                                   "slice",
                                                   "center",
                                                   "format",
                                                   "truncate",
                                                   "escape",
                                                   "e",
                                                   "striptags",
                                                   "urlencode",
                                                   "xmlattr",
                                                   "pprint",
                                                   "filesizeformat",
                                                   "random",
                                                   "attr",
                                                   "groupby",
                                                   "wordwrap",
                                                   "forceescape",
                                                   "urlize",
                                                   "sort",
                                                   "items"};
    return kFilters.count(name) > 0;
  }

  static bool isSupportedFilter(const std::string &name) {
    return filters().count(name) > 0;
  }

private:
  /// Evaluates a Filter node; `input` replaces the innermost null input
  /// (filter blocks, set blocks).
  Value evalFilter(const Expr &e, const Value *input) {
    Value v;
    if (e.children[0])
      v = e.children[0]->kind == Expr::Kind::Filter
              ? evalFilter(*e.children[0], input)
              : eval(*e.children[0]);
    else if (input)
      v = *input;
    CallArgs args = evalArgs(e, 1);
    return applyFilter(e.name, v, args, e);
  }

  Value applyFilter(const std::string &name, const Value &v,
                    const CallArgs &callArgs, const Expr &e) {
    absl::StatusOr<Value> result = filterImpl(name, v, callArgs, e);
    if (!result.ok())
      throwStatus(result.status(), e.pos);
    return std::move(*result);
  }

  using FilterFn = absl::StatusOr<Value> (Interpreter::*)(const std::string &,
                                                          const Value &,
                                                          const CallArgs &,
                                                          const Expr &);

  /// Every supported filter, by name: adding a filter is one entry here and
  /// one member function below.
  static const std::map<std::string, FilterFn, std::less<>> &filters() {
    static const std::map<std::string, FilterFn, std::less<>> kFilters = {
        {"tojson", &Interpreter::filterTojson},
        {"trim", &Interpreter::filterTrim},
        {"length", &Interpreter::filterLength},
        {"count", &Interpreter::filterLength},
        {"first", &Interpreter::filterFirstOrLast},
        {"last", &Interpreter::filterFirstOrLast},
        {"join", &Interpreter::filterJoin},
        {"upper", &Interpreter::filterCase},
        {"lower", &Interpreter::filterCase},
        {"capitalize", &Interpreter::filterCase},
        {"title", &Interpreter::filterCase},
        {"default", &Interpreter::filterDefault},
        {"d", &Interpreter::filterDefault},
        {"items", &Interpreter::filterItems},
        {"list", &Interpreter::filterList},
        {"string", &Interpreter::filterString},
        {"safe", &Interpreter::filterString},
        {"int", &Interpreter::filterInt},
        {"float", &Interpreter::filterFloat},
        {"replace", &Interpreter::filterReplace},
        {"abs", &Interpreter::filterAbs},
        {"reverse", &Interpreter::filterReverse},
        {"unique", &Interpreter::filterUnique},
        {"map", &Interpreter::filterMap},
        {"select", &Interpreter::filterSelect},
        {"reject", &Interpreter::filterSelect},
        {"selectattr", &Interpreter::filterSelect},
        {"rejectattr", &Interpreter::filterSelect},
    };
    return kFilters;
  }

  absl::StatusOr<Value> filterImpl(const std::string &name, const Value &v,
                                   const CallArgs &callArgs, const Expr &e) {
    auto filter = filters().find(name);
    if (filter == filters().end())
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported filter '", name, "'"));
    return (this->*filter->second)(name, v, callArgs, e);
  }

  //===--------------------------------------------------------------------===//
  // Filters, one member function each (Jinja2's names and semantics)
  //===--------------------------------------------------------------------===//

  absl::StatusOr<Value> filterTojson(const std::string & /*name*/,
                                     const Value &v, const CallArgs &callArgs,
                                     const Expr &e) {
    JINJA_BIND(args, "tojson", callArgs, "ensure_ascii", "indent", "separators",
               "sort_keys");
    JsonOptions options;
    options.ensureAscii = args.has(0) && args[0].truthy();
    options.sortKeys = args.has(3) && args[3].truthy();
    if (args.has(1) && !args[1].isNone()) {
      if (isIntLike(args[1]))
        options.indent = std::string(
            std::max<int64_t>(0, std::min<int64_t>(args[1].asInt(), 256)), ' ');
      else if (args[1].isString())
        options.indent = args[1].asString();
      else
        return absl::InvalidArgumentError(
            "tojson: indent must be an integer or a string");
      options.itemSeparator = ",";
    }
    if (args.has(2) && !args[2].isNone()) {
      if (!args[2].isSequence() || args[2].asList().size() != 2 ||
          !args[2].asList()[0].isString() || !args[2].asList()[1].isString())
        return absl::InvalidArgumentError(
            "tojson: separators must be a pair of strings");
      options.itemSeparator = args[2].asList()[0].asString();
      options.keySeparator = args[2].asList()[1].asString();
    }
    TRENI_JINJA_ASSIGN(std::string json, toJson(v, options));
    return Value::string(std::move(json));
  }

  absl::StatusOr<Value> filterTrim(const std::string & /*name*/, const Value &v,
                                   const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, "trim", callArgs, "chars");
    std::string chars;
    bool haveChars = args.has(0) && !args[0].isNone();
    if (haveChars) {
      TRENI_JINJA_ASSIGN(chars, args.string(0, ""));
    }
    return Value::string(
        pythonStrip(v.str(), haveChars ? &chars : nullptr, true, true));
  }

  absl::StatusOr<Value> filterLength(const std::string &name, const Value &v,
                                     const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, name, callArgs);
    switch (v.kind()) {
    case Value::Kind::Undefined:
      return Value::integer(0);
    case Value::Kind::String:
      return Value::integer(codePointLength(v.asString()));
    case Value::Kind::List:
    case Value::Kind::Tuple:
      return Value::integer(static_cast<int64_t>(v.asList().size()));
    case Value::Kind::Dict:
      return Value::integer(static_cast<int64_t>(v.asDict().items.size()));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("object of type '", v.typeName(), "' has no len()"));
    }
  }

  absl::StatusOr<Value> filterFirstOrLast(const std::string &name,
                                          const Value &v,
                                          const CallArgs &callArgs,
                                          const Expr &e) {
    JINJA_BIND(args, name, callArgs);
    if (name == "last" && v.kind() == Value::Kind::Generator)
      return absl::InvalidArgumentError("'generator' object is not reversible");
    ValueList items = iterate(v, e.pos);
    if (items.empty())
      return Value::undefined(
          absl::StrCat("No ", name, " item, sequence was empty."));
    return name == "first" ? items.front() : items.back();
  }

  absl::StatusOr<Value> filterJoin(const std::string & /*name*/, const Value &v,
                                   const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, "join", callArgs, "d", "attribute");
    TRENI_JINJA_ASSIGN(std::string separator, args.string(0, ""));
    std::vector<std::string> parts;
    for (const Value &item : iterate(v, e.pos))
      parts.push_back(args.has(1) ? attribute(item, args[1], e).str()
                                  : item.str());
    std::string joined = absl::StrJoin(parts, separator);
    if (joined.size() > options_.maxOutputBytes)
      return absl::InvalidArgumentError("join: result too large");
    return Value::string(std::move(joined));
  }

  absl::StatusOr<Value> filterCase(const std::string &name, const Value &v,
                                   const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, name, callArgs);
    std::string s = v.str();
    if (name == "upper")
      return Value::string(mapCase(s, toUpper));
    if (name == "lower")
      return Value::string(mapCase(s, toLower));
    if (name == "capitalize")
      return Value::string(pythonCapitalize(s));
    return Value::string(jinjaTitle(s));
  }

  absl::StatusOr<Value> filterDefault(const std::string &name, const Value &v,
                                      const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, name, callArgs, "default_value", "boolean");
    bool boolean = args.has(1) && args[1].truthy();
    if (v.isUndefined() || (boolean && !v.truthy()))
      return args.has(0) ? args[0] : Value::string("");
    return v;
  }

  absl::StatusOr<Value> filterItems(const std::string & /*name*/,
                                    const Value &v, const CallArgs &callArgs,
                                    const Expr &e) {
    JINJA_BIND(args, "items", callArgs);
    if (v.isUndefined())
      return Value::list({});
    if (!v.isMapping())
      return absl::InvalidArgumentError(
          "Can only get item pairs from a mapping.");
    return dictItems(v);
  }

  absl::StatusOr<Value> filterList(const std::string & /*name*/, const Value &v,
                                   const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, "list", callArgs);
    return Value::list(iterate(v, e.pos));
  }

  absl::StatusOr<Value> filterString(const std::string &name, const Value &v,
                                     const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, name, callArgs);
    return v.isString() ? v : Value::string(v.str());
  }

  absl::StatusOr<Value> filterInt(const std::string & /*name*/, const Value &v,
                                  const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, "int", callArgs, "default", "base");
    TRENI_JINJA_ASSIGN(int64_t base, args.integer(1, 10));
    Value fallback = args.has(0) ? args[0] : Value::integer(0);
    if (v.isUndefined())
      return absl::InvalidArgumentError(undefinedMessage(v));
    if (isIntLike(v))
      return Value::integer(v.asInt());
    if (v.kind() == Value::Kind::Float) {
      if (!std::isfinite(v.asFloat()) || std::fabs(v.asFloat()) >= 9.2e18)
        return fallback;
      return Value::integer(static_cast<int64_t>(v.asFloat()));
    }
    if (v.isString()) {
      std::string s = pythonStrip(v.asString(), nullptr, true, true);
      std::string digits;
      for (char c : s)
        if (c != '_')
          digits.push_back(c);
      if (!digits.empty() && base >= 2 && base <= 36) {
        errno = 0;
        char *end = nullptr;
        long long parsed =
            std::strtoll(digits.c_str(), &end, static_cast<int>(base));
        if (errno == 0 && end && *end == '\0')
          return Value::integer(parsed);
      }
      char *end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && *end == '\0' && std::isfinite(d) &&
          std::fabs(d) < 9.2e18)
        return Value::integer(static_cast<int64_t>(d));
    }
    return fallback;
  }

  absl::StatusOr<Value> filterFloat(const std::string & /*name*/,
                                    const Value &v, const CallArgs &callArgs,
                                    const Expr &e) {
    JINJA_BIND(args, "float", callArgs, "default");
    Value fallback = args.has(0) ? args[0] : Value::number(0.0);
    if (v.isUndefined())
      return absl::InvalidArgumentError(undefinedMessage(v));
    if (v.isNumber())
      return Value::number(toDouble(v));
    if (v.isString()) {
      std::string s = pythonStrip(v.asString(), nullptr, true, true);
      char *end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && *end == '\0')
        return Value::number(d);
    }
    return fallback;
  }

  absl::StatusOr<Value> filterReplace(const std::string & /*name*/,
                                      const Value &v, const CallArgs &callArgs,
                                      const Expr &e) {
    JINJA_BIND(args, "replace", callArgs, "old", "new", "count");
    TRENI_JINJA_ASSIGN(std::string from, args.string(0, ""));
    TRENI_JINJA_ASSIGN(std::string to, args.string(1, ""));
    TRENI_JINJA_ASSIGN(int64_t count, args.integer(2, -1));
    if (!args.has(0) || !args.has(1))
      return absl::InvalidArgumentError("replace() needs old and new");
    return Value::string(pythonReplace(v.str(), from, to, count,
                                       options_.maxOutputBytes, e.pos));
  }

  absl::StatusOr<Value> filterAbs(const std::string & /*name*/, const Value &v,
                                  const CallArgs &callArgs, const Expr &e) {
    JINJA_BIND(args, "abs", callArgs);
    if (isIntLike(v)) {
      if (v.asInt() == INT64_MIN)
        return absl::InvalidArgumentError("integer overflow");
      return Value::integer(std::abs(v.asInt()));
    }
    if (v.kind() == Value::Kind::Float)
      return Value::number(std::fabs(v.asFloat()));
    return absl::InvalidArgumentError(
        absl::StrCat("bad operand type for abs(): '", v.typeName(), "'"));
  }

  absl::StatusOr<Value> filterReverse(const std::string & /*name*/,
                                      const Value &v, const CallArgs &callArgs,
                                      const Expr &e) {
    JINJA_BIND(args, "reverse", callArgs);
    if (v.isString()) {
      std::vector<uint32_t> cps = codePoints(v.asString());
      std::reverse(cps.begin(), cps.end());
      return Value::string(fromCodePoints(cps, 0, cps.size()));
    }
    // Jinja2 gives reversed(value): an iterator, like a generator.
    ValueList items = iterate(v, e.pos);
    std::reverse(items.begin(), items.end());
    return Value::generator(std::move(items));
  }

  absl::StatusOr<Value> filterUnique(const std::string & /*name*/,
                                     const Value &v, const CallArgs &callArgs,
                                     const Expr &e) {
    JINJA_BIND(args, "unique", callArgs, "case_sensitive", "attribute");
    bool caseSensitive = args.has(0) && args[0].truthy();
    ValueList out, seen;
    for (const Value &item : iterate(v, e.pos)) {
      Value key = args.has(1) ? attribute(item, args[1], e) : item;
      if (!caseSensitive && key.isString())
        key = Value::string(mapCase(key.asString(), toLower));
      bool found = false;
      for (const Value &s : seen)
        found = found || s.equals(key);
      if (!found) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return Value::generator(std::move(out));
  }

  absl::StatusOr<Value> filterMap(const std::string &name, const Value &v,
                                  const CallArgs &callArgs, const Expr &e) {
    ValueList out;
    std::optional<Value> attr;
    for (const auto &[k, value] : callArgs.keyword) {
      if (k == "attribute")
        attr = value;
      else if (k != "default")
        return absl::InvalidArgumentError("map: unexpected keyword argument '" +
                                          k + "'");
    }
    Value fallback;
    for (const auto &[k, value] : callArgs.keyword)
      if (k == "default")
        fallback = value;
    for (const Value &item : iterate(v, e.pos)) {
      if (attr) {
        Value got = attribute(item, *attr, e);
        out.push_back(got.isUndefined() && !fallback.isUndefined() ? fallback
                                                                   : got);
      } else {
        if (callArgs.positional.empty() || !callArgs.positional[0].isString())
          return absl::InvalidArgumentError(
              "map: needs a filter name or attribute=");
        CallArgs rest;
        rest.positional.assign(callArgs.positional.begin() + 1,
                               callArgs.positional.end());
        std::string filter = callArgs.positional[0].asString();
        if (!isSupportedFilter(filter))
          return absl::InvalidArgumentError("map: unsupported filter '" +
                                            filter + "'");
        out.push_back(applyFilter(filter, item, rest, e));
      }
    }
    return Value::generator(std::move(out));
  }

  absl::StatusOr<Value> filterSelect(const std::string &name, const Value &v,
                                     const CallArgs &callArgs, const Expr &e) {
    if (!callArgs.keyword.empty())
      return absl::InvalidArgumentError(name + ": unexpected keyword argument");
    bool byAttr = name == "selectattr" || name == "rejectattr";
    bool select = name == "select" || name == "selectattr";
    const ValueList &p = callArgs.positional;
    size_t next = 0;
    Value attr;
    if (byAttr) {
      if (p.empty())
        return absl::InvalidArgumentError(name + ": needs an attribute name");
      attr = p[next++];
    }
    std::optional<std::string> test;
    if (next < p.size()) {
      if (!p[next].isString())
        return absl::InvalidArgumentError(name +
                                          ": the test name must be a string");
      test = p[next++].asString();
      if (!isKnownTest(*test))
        return absl::InvalidArgumentError(
            absl::StrCat("no test named '", *test, "'"));
    }
    ValueList testArgs(p.begin() + next, p.end());
    ValueList out;
    for (const Value &item : iterate(v, e.pos)) {
      Value subject = byAttr ? attribute(item, attr, e) : item;
      bool pass =
          test ? applyTest(*test, subject, testArgs, e) : subject.truthy();
      if (pass == select)
        out.push_back(item);
    }
    return Value::generator(std::move(out));
  }

  /// `attribute="a.b"` (dotted, integers as indexes) of an item, as Jinja's
  /// make_attrgetter.
  Value attribute(const Value &item, const Value &path, const Expr &e) {
    if (isIntLike(path))
      return getItemChecked(item, path, e);
    if (!path.isString())
      fail(e.pos, "attribute must be a string or an integer");
    Value current = item;
    std::vector<std::string> parts = absl::StrSplit(path.asString(), '.');
    for (const std::string &key : parts) {
      bool numeric =
          !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit);
      current = numeric
                    ? getItemChecked(current,
                                     Value::integer(std::atoll(key.c_str())), e)
                    : getItemChecked(current, Value::string(key), e);
    }
    return current;
  }

  Value getItemChecked(const Value &obj, const Value &key, const Expr &e) {
    if (obj.isUndefined())
      fail(e.pos, undefinedMessage(obj));
    return getItem(obj, key);
  }

  static Value dictItems(const Value &dict) {
    ValueList items;
    for (const auto &[k, value] : dict.asDict().items)
      items.push_back(Value::tuple({k, value}));
    return Value::list(std::move(items));
  }

  //===--------------------------------------------------------------------===//
  // Methods
  //===--------------------------------------------------------------------===//

  /// keys(), values(), items(), get() of a mapping.
  absl::StatusOr<Value> callDictMethod(const Value &self,
                                       const std::string &name,
                                       const std::string &qualified,
                                       const CallArgs &callArgs) {
    if (name == "get") {
      JINJA_BIND(args, qualified, callArgs, "key", "default");
      if (!args.has(0))
        return absl::InvalidArgumentError("dict.get() needs a key");
      if (const Value *found = self.asDict().find(args[0]))
        return *found;
      return args.has(1) ? args[1] : Value::none();
    }
    JINJA_BIND(args, qualified, callArgs);
    if (name == "items")
      return dictItems(self);
    ValueList out;
    for (const auto &[k, value] : self.asDict().items)
      out.push_back(name == "keys" ? k : value);
    return Value::list(std::move(out));
  }

  /// index() and count() of a list or tuple.
  absl::StatusOr<Value> callListMethod(const Value &self,
                                       const std::string &name,
                                       const std::string &qualified,
                                       const CallArgs &callArgs) {
    JINJA_BIND(args, qualified, callArgs, "value");
    if (!args.has(0))
      return absl::InvalidArgumentError(
          qualified + "() takes exactly one argument (0 given)");
    const ValueList &items = self.asList();
    int64_t n = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].equals(args[0]))
        continue;
      if (name == "index")
        return Value::integer(static_cast<int64_t>(i));
      ++n;
    }
    if (name == "index")
      return absl::InvalidArgumentError(
          absl::StrCat(args[0].repr(), " is not in list"));
    return Value::integer(n);
  }

public:
  absl::StatusOr<Value> callMethod(const Value &self, const std::string &name,
                                   const std::string &qualified,
                                   const CallArgs &callArgs) {
    if (self.isMapping())
      return callDictMethod(self, name, qualified, callArgs);
    if (self.isSequence())
      return callListMethod(self, name, qualified, callArgs);
    const std::string &s = self.asString();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      JINJA_BIND(args, qualified, callArgs, "chars");
      std::string chars;
      bool haveChars = args.has(0) && !args[0].isNone();
      if (haveChars) {
        TRENI_JINJA_ASSIGN(chars, args.string(0, ""));
      }
      return Value::string(pythonStrip(s, haveChars ? &chars : nullptr,
                                       name != "rstrip", name != "lstrip"));
    }
    if (name == "split") {
      JINJA_BIND(args, qualified, callArgs, "sep", "maxsplit");
      std::string sep;
      bool haveSep = args.has(0) && !args[0].isNone();
      if (haveSep) {
        TRENI_JINJA_ASSIGN(sep, args.string(0, ""));
        if (sep.empty())
          return absl::InvalidArgumentError("str.split(): empty separator");
      }
      TRENI_JINJA_ASSIGN(int64_t maxSplit, args.integer(1, -1));
      return Value::list(
          pythonSplit(s, haveSep ? &sep : nullptr, maxSplit, Pos{0, 0}));
    }
    if (name == "startswith" || name == "endswith") {
      JINJA_BIND(args, qualified, callArgs, "prefix");
      if (!args.has(0))
        return absl::InvalidArgumentError(
            qualified + "() takes at least 1 argument (0 given)");
      ValueList candidates;
      if (args[0].kind() == Value::Kind::Tuple)
        candidates = args[0].asList();
      else
        candidates.push_back(args[0]);
      for (const Value &c : candidates) {
        if (!c.isString())
          return absl::InvalidArgumentError(absl::StrCat(
              qualified, " first arg must be str or a tuple of str, not ",
              c.typeName()));
        if (name == "startswith" ? s.starts_with(c.asString())
                                 : s.ends_with(c.asString()))
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (name == "upper" || name == "lower" || name == "title" ||
        name == "capitalize") {
      JINJA_BIND(args, qualified, callArgs);
      if (name == "upper")
        return Value::string(mapCase(s, toUpper));
      if (name == "lower")
        return Value::string(mapCase(s, toLower));
      if (name == "title")
        return Value::string(pythonTitle(s));
      return Value::string(pythonCapitalize(s));
    }
    if (name == "replace") {
      JINJA_BIND(args, qualified, callArgs, "old", "new", "count");
      if (!args.has(0) || !args.has(1))
        return absl::InvalidArgumentError("str.replace() needs old and new");
      TRENI_JINJA_ASSIGN(std::string from, args.string(0, ""));
      TRENI_JINJA_ASSIGN(std::string to, args.string(1, ""));
      TRENI_JINJA_ASSIGN(int64_t count, args.integer(2, -1));
      return Value::string(pythonReplace(s, from, to, count,
                                         options_.maxOutputBytes, Pos{0, 0}));
    }
    if (name == "find" || name == "count") {
      JINJA_BIND(args, qualified, callArgs, "sub");
      TRENI_JINJA_ASSIGN(std::string sub, args.string(0, ""));
      if (!args.has(0))
        return absl::InvalidArgumentError(
            qualified + "() takes at least 1 argument (0 given)");
      if (name == "find") {
        size_t at = s.find(sub);
        return Value::integer(
            at == std::string::npos ? -1 : codePointLength(s.substr(0, at)));
      }
      if (sub.empty())
        return Value::integer(codePointLength(s) + 1);
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos;
           at = s.find(sub, at + sub.size()))
        ++n;
      return Value::integer(n);
    }
    if (name == "isdigit" || name == "isalpha" || name == "isspace" ||
        name == "isupper" || name == "islower") {
      JINJA_BIND(args, qualified, callArgs);
      std::vector<uint32_t> cps = codePoints(s);
      if (name == "isupper" || name == "islower") {
        bool anyCased = false;
        for (uint32_t cp : cps) {
          if (!isCased(cp))
            continue;
          anyCased = true;
          if ((name == "isupper") != (toUpper(cp) == cp && toLower(cp) != cp))
            return Value::boolean(false);
        }
        return Value::boolean(anyCased);
      }
      if (cps.empty())
        return Value::boolean(false);
      for (uint32_t cp : cps) {
        bool ok = name == "isspace" ? isPythonSpace(cp)
                  : name == "isdigit"
                      ? utf8proc_category(static_cast<utf8proc_int32_t>(cp)) ==
                            UTF8PROC_CATEGORY_ND
                      : (isCased(cp) || (cp >= 0x80 && [&] {
                           auto c = utf8proc_category(
                               static_cast<utf8proc_int32_t>(cp));
                           return c == UTF8PROC_CATEGORY_LM ||
                                  c == UTF8PROC_CATEGORY_LO;
                         }()));
        if (!ok)
          return Value::boolean(false);
      }
      return Value::boolean(true);
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported method '", qualified, "'"));
  }

private:
  //===--------------------------------------------------------------------===//
  // Globals
  //===--------------------------------------------------------------------===//

  void installGlobals() {
    auto add = [&](const std::string &name,
                   std::function<absl::StatusOr<Value>(Interpreter &,
                                                       const CallArgs &)>
                       fn) {
      globals_[name] = Value::function(makeFunction(name, std::move(fn)));
    };
    add("raise_exception",
        [](Interpreter &, const CallArgs &args) -> absl::StatusOr<Value> {
          std::string message =
              args.positional.empty() ? "" : args.positional[0].str();
          return absl::InvalidArgumentError(message + "\x01raised\x01");
        });
    add("range",
        [](Interpreter &, const CallArgs &callArgs) -> absl::StatusOr<Value> {
          JINJA_BIND(args, "range", callArgs, "start", "stop", "step");
          int64_t start = 0, stop = 0, step = 1;
          for (size_t i = 0; i < 3; ++i)
            if (args.has(i) && !isIntLike(args[i]))
              return absl::InvalidArgumentError(
                  absl::StrCat("range(): '", args[i].typeName(),
                               "' object cannot be interpreted as an integer"));
          if (!args.has(0))
            return absl::InvalidArgumentError(
                "range expected at least 1 argument, got 0");
          if (!args.has(1)) {
            stop = args[0].asInt();
          } else {
            start = args[0].asInt();
            stop = args[1].asInt();
            if (args.has(2))
              step = args[2].asInt();
          }
          if (step == 0)
            return absl::InvalidArgumentError("range() arg 3 must not be zero");
          ValueList out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (out.size() >= 100000) // jinja2.sandbox.MAX_RANGE
              return absl::InvalidArgumentError(
                  "Range too big. The sandbox blocks ranges larger than "
                  "MAX_RANGE (100000).");
            out.push_back(Value::integer(i));
            if (__builtin_add_overflow(i, step, &i))
              break;
            i -= step;
          }
          return Value::list(std::move(out));
        });
    add("namespace",
        [](Interpreter &, const CallArgs &args) -> absl::StatusOr<Value> {
          Dict attributes;
          for (const Value &p : args.positional) {
            if (!p.isMapping())
              return absl::InvalidArgumentError(
                  "namespace() takes keyword arguments or a dict");
            for (const auto &[k, v] : p.asDict().items)
              attributes.set(k, v);
          }
          for (const auto &[k, v] : args.keyword)
            attributes.set(Value::string(k), v);
          return Value::namespaceOf(std::move(attributes));
        });
    add("dict",
        [](Interpreter &, const CallArgs &args) -> absl::StatusOr<Value> {
          Dict d;
          for (const Value &p : args.positional) {
            if (!p.isMapping())
              return absl::InvalidArgumentError(
                  "dict() takes keyword arguments or a dict");
            for (const auto &[k, v] : p.asDict().items)
              d.set(k, v);
          }
          for (const auto &[k, v] : args.keyword)
            d.set(Value::string(k), v);
          return Value::dict(std::move(d));
        });
    add("strftime_now",
        [](Interpreter &interp,
           const CallArgs &callArgs) -> absl::StatusOr<Value> {
          JINJA_BIND(args, "strftime_now", callArgs, "format");
          TRENI_JINJA_ASSIGN(std::string format, args.string(0, ""));
          std::time_t now = interp.options().now ? interp.options().now()
                                                 : std::time(nullptr);
          std::tm local{};
          localtime_r(&now, &local);
          char buf[512];
          size_t n = format.empty() ? 0
                                    : std::strftime(buf, sizeof(buf),
                                                    format.c_str(), &local);
          if (n == 0 && !format.empty())
            return absl::InvalidArgumentError(
                "strftime_now: format too long or invalid");
          return Value::string(std::string(buf, n));
        });
  }

  const TemplateOptions &options_;
  std::vector<Scope> scopes_;
  Scope globals_;
  std::string *out_ = nullptr;
  size_t totalOutput_ = 0;
  int64_t iterations_ = 0;
  int callDepth_ = 0;
  static constexpr int kMaxEvalDepth = 1000;
  int evalDepth_ = 0;
};

//===----------------------------------------------------------------------===//
// Template
//===----------------------------------------------------------------------===//

namespace {

/// Rejects unknown or unsupported filters and tests at parse time, as
/// Jinja2 does for unknown ones.
absl::Status checkExpr(const Expr *e) {
  if (!e)
    return absl::OkStatus();
  if (e->kind == Expr::Kind::Filter) {
    if (!Interpreter::isKnownFilter(e->name))
      return absl::InvalidArgumentError(
          absl::StrCat("template error at ", formatPos(e->pos),
                       ": no filter named '", e->name, "'"));
    if (!Interpreter::isSupportedFilter(e->name))
      return absl::InvalidArgumentError(
          absl::StrCat("template error at ", formatPos(e->pos),
                       ": unsupported filter '", e->name, "'"));
  }
  if (e->kind == Expr::Kind::Test && !Interpreter::isKnownTest(e->name))
    return absl::InvalidArgumentError(
        absl::StrCat("template error at ", formatPos(e->pos),
                     ": no test named '", e->name, "'"));
  for (const auto &child : e->children)
    TRENI_JINJA_RETURN(checkExpr(child.get()));
  return absl::OkStatus();
}

absl::Status checkNodes(const NodeList &nodes) {
  for (const auto &node : nodes) {
    TRENI_JINJA_RETURN(checkExpr(node->expr.get()));
    TRENI_JINJA_RETURN(checkExpr(node->filter.get()));
    TRENI_JINJA_RETURN(checkExpr(node->filterChain.get()));
    for (const auto &e : node->exprs)
      TRENI_JINJA_RETURN(checkExpr(e.get()));
    for (const auto &body : node->bodies)
      TRENI_JINJA_RETURN(checkNodes(body));
  }
  return absl::OkStatus();
}

} // namespace

Template::~Template() = default;

absl::StatusOr<std::unique_ptr<Template>>
Template::parse(std::string_view source, TemplateOptions options) {
  // Jinja2 normalizes \r\n and \r to \n and drops one trailing newline.
  std::string normalized;
  normalized.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      normalized.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n')
        ++i;
    } else {
      normalized.push_back(source[i]);
    }
  }
  if (!options.keepTrailingNewline && !normalized.empty() &&
      normalized.back() == '\n')
    normalized.pop_back();
  absl::StatusOr<NodeList> body = detail::parseTemplate(normalized, options);
  if (!body.ok())
    return body.status();
  TRENI_JINJA_RETURN(checkNodes(*body));
  std::unique_ptr<Template> t(new Template());
  t->options_ = std::move(options);
  t->body_ = std::move(*body);
  return t;
}

absl::StatusOr<std::string>
Template::render(const nlohmann::json &variables) const {
  return render(nlohmann::ordered_json(variables));
}

absl::StatusOr<std::string>
Template::render(const nlohmann::ordered_json &variables) const {
  if (!variables.is_object())
    return absl::InvalidArgumentError(
        "template variables must be a JSON object");
  std::map<std::string, Value> values;
  for (auto it = variables.begin(); it != variables.end(); ++it)
    values[it.key()] = Value::fromJson(it.value());
  return render(values);
}

absl::StatusOr<std::string>
Template::render(const std::map<std::string, Value> &variables) const {
  try {
    Interpreter interpreter(options_, variables);
    return interpreter.render(body_);
  } catch (const RenderError &e) {
    if (e.raised)
      return absl::InvalidArgumentError(absl::StrCat(
          e.message, " (raise_exception at ", formatPos(e.pos), ")"));
    return absl::InvalidArgumentError(
        absl::StrCat("template error at ", formatPos(e.pos), ": ", e.message));
  } catch (const std::bad_alloc &) {
    return absl::ResourceExhaustedError("template rendering ran out of memory");
  }
}

} // namespace treni::jinja
