//===- jinja_value.cpp - Python values of the Jinja2 interpreter ----------===//
//
// str(), repr(), ==, truthiness and json.dumps as CPython gives them, so that
// what a template prints is byte-identical to Python Jinja2's output.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/jinja.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/text/jinja_ast.h"
#include "support/status.h"
#include "utf8proc.h"

namespace treni::jinja {

using detail::appendUtf8;
using detail::decodeUtf8;

const Value *Dict::find(const Value &key) const {
  for (const auto &[k, v] : items)
    if (k.equals(key))
      return &v;
  return nullptr;
}

Value *Dict::find(const Value &key) {
  for (auto &[k, v] : items)
    if (k.equals(key))
      return &v;
  return nullptr;
}

void Dict::set(Value key, Value value) {
  if (Value *existing = find(key)) {
    *existing = std::move(value);
    return;
  }
  items.emplace_back(std::move(key), std::move(value));
}

Value Value::undefined(std::string hint) {
  Value v;
  v.string_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.bool_ = b;
  v.int_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::Int;
  v.int_ = i;
  return v;
}

Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::Float;
  v.float_ = d;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::String;
  v.string_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::list(ValueList items) {
  Value v;
  v.kind_ = Kind::List;
  v.list_ = std::make_shared<const ValueList>(std::move(items));
  return v;
}

Value Value::tuple(ValueList items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::Tuple;
  return v;
}

Value Value::generator(ValueList items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::Generator;
  return v;
}

Value Value::dict(Dict d) {
  Value v;
  v.kind_ = Kind::Dict;
  v.dict_ = std::make_shared<Dict>(std::move(d));
  return v;
}

Value Value::namespaceOf(Dict attributes) {
  Value v = dict(std::move(attributes));
  v.kind_ = Kind::Namespace;
  return v;
}

Value Value::function(std::shared_ptr<FunctionValue> fn) {
  Value v;
  v.kind_ = Kind::Function;
  v.function_ = std::move(fn);
  return v;
}

namespace {
template <typename Json> Value valueFromJson(const Json &json) {
  switch (json.type()) {
  case Json::value_t::null:
    return Value::none();
  case Json::value_t::boolean:
    return Value::boolean(json.template get<bool>());
  case Json::value_t::number_integer:
    return Value::integer(json.template get<int64_t>());
  case Json::value_t::number_unsigned: {
    uint64_t u = json.template get<uint64_t>();
    if (u <= uint64_t(INT64_MAX))
      return Value::integer(static_cast<int64_t>(u));
    return Value::number(static_cast<double>(u));
  }
  case Json::value_t::number_float:
    return Value::number(json.template get<double>());
  case Json::value_t::string:
    return Value::string(json.template get<std::string>());
  case Json::value_t::array: {
    ValueList items;
    items.reserve(json.size());
    for (const auto &item : json)
      items.push_back(valueFromJson(item));
    return Value::list(std::move(items));
  }
  case Json::value_t::object: {
    Dict d;
    d.items.reserve(json.size());
    for (auto it = json.begin(); it != json.end(); ++it)
      d.items.emplace_back(Value::string(it.key()), valueFromJson(it.value()));
    return Value::dict(std::move(d));
  }
  default: // binary, discarded
    return Value::none();
  }
}
} // namespace

Value Value::fromJson(const nlohmann::json &json) {
  return valueFromJson(json);
}
Value Value::fromJson(const nlohmann::ordered_json &json) {
  return valueFromJson(json);
}

bool Value::truthy() const {
  switch (kind_) {
  case Kind::Undefined:
  case Kind::None:
    return false;
  case Kind::Bool:
    return bool_;
  case Kind::Int:
    return int_ != 0;
  case Kind::Float:
    return float_ != 0;
  case Kind::String:
    return !string_->empty();
  case Kind::List:
  case Kind::Tuple:
    return !list_->empty();
  case Kind::Dict:
    return !dict_->items.empty();
  case Kind::Namespace:
  case Kind::Function:
  case Kind::Generator:
    return true;
  }
  return false;
}

std::string Value::typeName() const {
  switch (kind_) {
  case Kind::Undefined:
    return "Undefined";
  case Kind::None:
    return "NoneType";
  case Kind::Bool:
    return "bool";
  case Kind::Int:
    return "int";
  case Kind::Float:
    return "float";
  case Kind::String:
    return "str";
  case Kind::List:
    return "list";
  case Kind::Tuple:
    return "tuple";
  case Kind::Dict:
    return "dict";
  case Kind::Namespace:
    return "Namespace";
  case Kind::Function:
    return "function";
  case Kind::Generator:
    return "generator";
  }
  return "object";
}

std::string formatFloat(double value) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value > 0 ? "inf" : "-inf";
  // Shortest round-trip digits, then Python's repr layout: positional for
  // exponents -4..15, else d.ddde+XX.
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof(buf), value,
                              std::chars_format::scientific);
  std::string sci(buf, result.ptr);
  std::string out;
  size_t i = 0;
  if (sci[0] == '-') {
    out.push_back('-');
    i = 1;
  }
  size_t ePos = sci.find('e');
  std::string digits;
  for (size_t k = i; k < ePos; ++k)
    if (sci[k] != '.')
      digits.push_back(sci[k]);
  int exponent = std::atoi(sci.c_str() + ePos + 1);
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1)
      absl::StrAppend(&out, ".", digits.substr(1));
    absl::StrAppend(&out, exponent < 0 ? "e-" : "e+",
                    absl::StrFormat("%02d", std::abs(exponent)));
    return out;
  }
  int pointAt = exponent + 1; // digits before the decimal point
  if (pointAt <= 0) {
    absl::StrAppend(&out, "0.", std::string(-pointAt, '0'), digits);
  } else if (static_cast<size_t>(pointAt) >= digits.size()) {
    absl::StrAppend(&out, digits, std::string(pointAt - digits.size(), '0'),
                    ".0");
  } else {
    absl::StrAppend(&out, digits.substr(0, pointAt), ".",
                    digits.substr(pointAt));
  }
  return out;
}

namespace {

/// Python's str.isprintable() for one code point.
bool isPrintable(uint32_t cp) {
  if (cp == ' ')
    return true;
  if (cp >= 0xdc80 && cp <= 0xdcff)
    return false;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
  case UTF8PROC_CATEGORY_CC:
  case UTF8PROC_CATEGORY_CF:
  case UTF8PROC_CATEGORY_CS:
  case UTF8PROC_CATEGORY_CO:
  case UTF8PROC_CATEGORY_CN:
  case UTF8PROC_CATEGORY_ZL:
  case UTF8PROC_CATEGORY_ZP:
  case UTF8PROC_CATEGORY_ZS:
    return false;
  default:
    return true;
  }
}

std::string reprString(const std::string &s) {
  bool hasSingle = s.find('\'') != std::string::npos;
  bool hasDouble = s.find('"') != std::string::npos;
  char quote = hasSingle && !hasDouble ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = decodeUtf8(s, i);
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x7f && cp >= 0x20) {
      out.push_back(static_cast<char>(cp));
    } else if (isPrintable(cp) && cp != 0x7f) {
      appendUtf8(out, cp);
    } else if (cp < 0x100) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", cp));
    } else if (cp < 0x10000) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", cp));
    } else {
      absl::StrAppend(&out, absl::StrFormat("\\U%08x", cp));
    }
  }
  out.push_back(quote);
  return out;
}

void appendRepr(std::string &out, const Value &v);

void appendSequence(std::string &out, const Value &v) {
  bool tuple = v.kind() == Value::Kind::Tuple;
  out.push_back(tuple ? '(' : '[');
  const ValueList &items = v.asList();
  for (size_t i = 0; i < items.size(); ++i) {
    if (i)
      out += ", ";
    appendRepr(out, items[i]);
  }
  if (tuple && items.size() == 1)
    out.push_back(',');
  out.push_back(tuple ? ')' : ']');
}

void appendDict(std::string &out, const Dict &d) {
  out.push_back('{');
  for (size_t i = 0; i < d.items.size(); ++i) {
    if (i)
      out += ", ";
    appendRepr(out, d.items[i].first);
    out += ": ";
    appendRepr(out, d.items[i].second);
  }
  out.push_back('}');
}

void appendRepr(std::string &out, const Value &v) {
  switch (v.kind()) {
  case Value::Kind::String:
    out += reprString(v.asString());
    return;
  case Value::Kind::Undefined:
    out += "Undefined";
    return;
  default:
    out += v.str();
  }
}

} // namespace

std::string Value::str() const {
  switch (kind_) {
  case Kind::Undefined:
    return "";
  case Kind::None:
    return "None";
  case Kind::Bool:
    return bool_ ? "True" : "False";
  case Kind::Int:
    return absl::StrCat(int_);
  case Kind::Float:
    return formatFloat(float_);
  case Kind::String:
    return *string_;
  case Kind::List:
  case Kind::Tuple: {
    std::string out;
    appendSequence(out, *this);
    return out;
  }
  case Kind::Dict: {
    std::string out;
    appendDict(out, *dict_);
    return out;
  }
  case Kind::Namespace: {
    std::string out = "<Namespace ";
    appendDict(out, *dict_);
    return out + ">";
  }
  case Kind::Function:
    return "<function " + function_->name + ">";
  case Kind::Generator:
    return "<generator object>";
  }
  return "";
}

std::string Value::repr() const {
  std::string out;
  appendRepr(out, *this);
  return out;
}

bool Value::equals(const Value &other) const {
  if (isNumber() && other.isNumber()) {
    if (kind_ != Kind::Float && other.kind_ != Kind::Float)
      return int_ == other.int_;
    double a = kind_ == Kind::Float ? float_ : static_cast<double>(int_);
    double b = other.kind_ == Kind::Float ? other.float_
                                          : static_cast<double>(other.int_);
    return a == b;
  }
  if (kind_ != other.kind_)
    return false;
  switch (kind_) {
  case Kind::Undefined:
  case Kind::None:
    return true;
  case Kind::String:
    return *string_ == *other.string_;
  case Kind::List:
  case Kind::Tuple: {
    if (list_ == other.list_)
      return true;
    if (list_->size() != other.list_->size())
      return false;
    for (size_t i = 0; i < list_->size(); ++i)
      if (!(*list_)[i].equals((*other.list_)[i]))
        return false;
    return true;
  }
  case Kind::Dict: {
    if (dict_ == other.dict_)
      return true;
    if (dict_->items.size() != other.dict_->items.size())
      return false;
    for (const auto &[k, v] : dict_->items) {
      const Value *o = other.dict_->find(k);
      if (!o || !v.equals(*o))
        return false;
    }
    return true;
  }
  case Kind::Namespace:
    return dict_ == other.dict_;
  case Kind::Function:
    return function_ == other.function_;
  case Kind::Generator:
    return list_ == other.list_;
  default:
    return false;
  }
}

//===----------------------------------------------------------------------===//
// json.dumps
//===----------------------------------------------------------------------===//

namespace {

void appendJsonString(std::string &out, const std::string &s,
                      bool ensureAscii) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    uint32_t cp = decodeUtf8(s, i);
    switch (cp) {
    case '"':
      out += "\\\"";
      continue;
    case '\\':
      out += "\\\\";
      continue;
    case '\n':
      out += "\\n";
      continue;
    case '\r':
      out += "\\r";
      continue;
    case '\t':
      out += "\\t";
      continue;
    case '\b':
      out += "\\b";
      continue;
    case '\f':
      out += "\\f";
      continue;
    default:
      break;
    }
    if (cp < 0x20 || (ensureAscii && cp >= 0x7f)) {
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        absl::StrAppend(&out,
                        absl::StrFormat("\\u%04x\\u%04x", 0xd800 + (v >> 10),
                                        0xdc00 + (v & 0x3ff)));
      } else {
        absl::StrAppend(&out, absl::StrFormat("\\u%04x", cp));
      }
    } else {
      out.append(s, start, i - start);
    }
  }
  out.push_back('"');
}

struct JsonWriter {
  const JsonOptions &options;
  std::string out;
  int depth = 0;

  absl::Status newline(int level) {
    if (!options.indent)
      return absl::OkStatus();
    out.push_back('\n');
    for (int i = 0; i < level; ++i)
      out += *options.indent;
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> keyString(const Value &key) {
    switch (key.kind()) {
    case Value::Kind::String:
      return key.asString();
    case Value::Kind::Bool:
      return std::string(key.asBool() ? "true" : "false");
    case Value::Kind::None:
      return std::string("null");
    case Value::Kind::Int:
      return absl::StrCat(key.asInt());
    case Value::Kind::Float:
      return formatFloat(key.asFloat());
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "keys must be str, int, float, bool or None, not ", key.typeName()));
    }
  }

  absl::Status write(const Value &v) {
    if (++depth > 512)
      return absl::InvalidArgumentError("tojson: value nested too deeply");
    absl::Status status = writeValue(v);
    --depth;
    return status;
  }

  absl::Status writeValue(const Value &v) {
    switch (v.kind()) {
    case Value::Kind::None:
      out += "null";
      return absl::OkStatus();
    case Value::Kind::Bool:
      out += v.asBool() ? "true" : "false";
      return absl::OkStatus();
    case Value::Kind::Int:
      absl::StrAppend(&out, v.asInt());
      return absl::OkStatus();
    case Value::Kind::Float: {
      double d = v.asFloat();
      if (std::isnan(d))
        out += "NaN";
      else if (std::isinf(d))
        out += d > 0 ? "Infinity" : "-Infinity";
      else
        out += formatFloat(d);
      return absl::OkStatus();
    }
    case Value::Kind::String:
      appendJsonString(out, v.asString(), options.ensureAscii);
      return absl::OkStatus();
    case Value::Kind::List:
    case Value::Kind::Tuple: {
      const ValueList &items = v.asList();
      if (items.empty()) {
        out += "[]";
        return absl::OkStatus();
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i)
          out += options.itemSeparator;
        TRENI_RETURN_IF_ERROR(newline(depth));
        TRENI_RETURN_IF_ERROR(write(items[i]));
      }
      TRENI_RETURN_IF_ERROR(newline(depth - 1));
      out.push_back(']');
      return absl::OkStatus();
    }
    case Value::Kind::Dict: {
      const Dict &d = v.asDict();
      if (d.items.empty()) {
        out += "{}";
        return absl::OkStatus();
      }
      std::vector<std::pair<std::string, const Value *>> entries;
      for (const auto &[key, value] : d.items) {
        absl::StatusOr<std::string> k = keyString(key);
        if (!k.ok())
          return k.status();
        entries.emplace_back(std::move(*k), &value);
      }
      if (options.sortKeys) {
        for (const auto &[key, value] : d.items)
          if (key.kind() != d.items[0].first.kind() &&
              !(key.isNumber() && d.items[0].first.isNumber()))
            return absl::InvalidArgumentError(
                "tojson: sort_keys needs keys of one comparable type");
        std::stable_sort(
            entries.begin(), entries.end(),
            [&](const auto &a, const auto &b) { return a.first < b.first; });
      }
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i)
          out += options.itemSeparator;
        TRENI_RETURN_IF_ERROR(newline(depth));
        appendJsonString(out, entries[i].first, options.ensureAscii);
        out += options.keySeparator;
        TRENI_RETURN_IF_ERROR(write(*entries[i].second));
      }
      TRENI_RETURN_IF_ERROR(newline(depth - 1));
      out.push_back('}');
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "Object of type ", v.typeName(), " is not JSON serializable"));
    }
  }
};

} // namespace

absl::StatusOr<std::string> toJson(const Value &value,
                                   const JsonOptions &options) {
  JsonWriter writer{options, {}, 0};
  absl::Status status = writer.write(value);
  if (!status.ok())
    return status;
  return std::move(writer.out);
}

} // namespace treni::jinja
