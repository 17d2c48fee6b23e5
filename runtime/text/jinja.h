//===- jinja.h - a Jinja2-subset template interpreter -----------*- C++ -*-===//
//
// Parses and renders the subset of Jinja2 that Hugging Face chat templates
// use, with the output Python's Jinja2 (3.1) gives for it, configured as
// transformers configures it (ImmutableSandboxedEnvironment, trim_blocks and
// lstrip_blocks on, the loopcontrols extension, `tojson` as json.dumps with
// ensure_ascii=False, `raise_exception` and `strftime_now` globals).
//
// Values are Python's: None, bool, int (64-bit here), float, str (UTF-8,
// indexed by code point), list, tuple, dict (insertion-ordered), namespace,
// and Undefined (what a missing variable, attribute, key or index gives:
// falsy, renders as nothing, iterates as empty; using it in arithmetic,
// calling it or taking an attribute of it is an error).
//
// Supported: {{ }}, {% if/elif/else %}, {% for %} (tuple targets, an inline
// `if` filter, for-else, loop.index/index0/revindex/revindex0/first/last/
// length/previtem/nextitem/cycle, break/continue), {% set %} (also
// `set ns.attr =`, tuple targets and block set), {% macro %}, {% raw %},
// {% generation %}, {# #}, whitespace control; expressions with literals,
// attribute/subscript/slice access, arithmetic, `~`, comparisons, `in`,
// and/or/not, ternaries, filters, tests, string/dict methods and the
// globals range/namespace/dict/raise_exception/strftime_now.
// Anything else is an error naming the construct and its line:column.
// Internal errors never escape: parse() and render() return a Status.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace treni::jinja {

class Value;
struct FunctionValue;
using ValueList = std::vector<Value>;

/// An insertion-ordered dict (Python's dict): keys are Values.
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  const Value *find(const Value &key) const;
  Value *find(const Value &key);
  void set(Value key, Value value);
};

class Value {
public:
  enum class Kind {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Tuple,
    Dict,
    Namespace,
    Function,
    /// What Jinja2's select/reject/selectattr/rejectattr/map/unique filters
    /// give: an iterable that is always true, has no len() and cannot be
    /// printed (Python shows its address).
    Generator
  };

  Value() = default; ///< Undefined
  static Value undefined(std::string hint = "");
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value list(ValueList items);
  static Value tuple(ValueList items);
  static Value generator(ValueList items);
  static Value dict(Dict d = {});
  static Value namespaceOf(Dict attributes);
  static Value function(std::shared_ptr<FunctionValue> fn);
  /// A Python value for a JSON document, as json.loads gives it (integers
  /// beyond 64 bits become floats).
  static Value fromJson(const nlohmann::json &json);
  /// Same, keeping the objects' key order.
  static Value fromJson(const nlohmann::ordered_json &json);

  Kind kind() const { return kind_; }
  bool isUndefined() const { return kind_ == Kind::Undefined; }
  bool isNone() const { return kind_ == Kind::None; }
  bool isString() const { return kind_ == Kind::String; }
  bool isNumber() const {
    return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool;
  }
  bool isSequence() const {
    return kind_ == Kind::List || kind_ == Kind::Tuple;
  }
  bool isMapping() const { return kind_ == Kind::Dict; }

  bool asBool() const { return bool_; }
  int64_t asInt() const { return int_; }
  double asFloat() const { return float_; }
  const std::string &asString() const { return *string_; }
  const ValueList &asList() const {
    return *list_;
  } ///< lists, tuples, generators
  const Dict &asDict() const { return *dict_; }
  Dict &mutableDict() const { return *dict_; } ///< dicts and namespaces
  const std::shared_ptr<FunctionValue> &asFunction() const { return function_; }
  /// Name or expression that produced an Undefined (for error messages).
  const std::string &undefinedHint() const { return *string_; }

  /// Python truthiness.
  bool truthy() const;
  /// Python str(): what {{ value }} renders.
  std::string str() const;
  /// Python repr().
  std::string repr() const;
  /// Python's type name ('str', 'int', 'dict', 'Undefined', ...).
  std::string typeName() const;
  /// Python ==.
  bool equals(const Value &other) const;

private:
  Kind kind_ = Kind::Undefined;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<FunctionValue> function_;
};

/// Options of json.dumps, as transformers' `tojson` filter passes them.
struct JsonOptions {
  bool ensureAscii = false;
  bool sortKeys = false;
  /// json.dumps' indent: none, or the string for one level (an int n is n
  /// spaces).
  std::optional<std::string> indent;
  std::string itemSeparator = ", "; ///< ",", with an indent, unless given
  std::string keySeparator = ": ";
};

/// json.dumps(value, ...). An error for values JSON cannot hold (Undefined,
/// functions, namespaces).
absl::StatusOr<std::string> toJson(const Value &value,
                                   const JsonOptions &options = {});
/// Python float repr ('1.0', '1e-05', '1.5e+16', 'inf', 'nan').
std::string formatFloat(double value);

/// The interpreter's state a native function sees.
class Interpreter;

struct CallArgs {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

/// A callable: builtins (global functions, bound methods) and macros.
struct FunctionValue {
  std::string name;
  /// Errors are returned as absl::Status; the interpreter adds the position.
  std::function<absl::StatusOr<Value>(Interpreter &, const CallArgs &)> call;
};

struct TemplateOptions {
  bool trimBlocks = true;   ///< transformers: True (Jinja's default: False)
  bool lstripBlocks = true; ///< transformers: True (Jinja's default: False)
  bool keepTrailingNewline = false; ///< Jinja's default
  /// Local time for strftime_now (tests fix it); the system clock if unset.
  std::function<std::time_t()> now;
  /// Limits that keep hostile templates bounded.
  size_t maxOutputBytes = size_t(64) << 20;
  int maxCallDepth = 256;
  int64_t maxLoopIterations = 10'000'000;
};

namespace detail {
struct Node;
}

class Template {
public:
  /// Parses `source`; a syntax error names what was found and its
  /// line:column.
  static absl::StatusOr<std::unique_ptr<Template>>
  parse(std::string_view source, TemplateOptions options = {});
  ~Template();

  /// Renders with `variables` (a JSON object, converted with
  /// Value::fromJson) in scope, plus the globals.
  absl::StatusOr<std::string> render(const nlohmann::json &variables) const;
  absl::StatusOr<std::string>
  render(const nlohmann::ordered_json &variables) const;
  absl::StatusOr<std::string>
  render(const std::map<std::string, Value> &variables) const;

private:
  Template() = default;
  TemplateOptions options_;
  std::vector<std::unique_ptr<detail::Node>> body_;
};

} // namespace treni::jinja
