//===- agent_values.cpp - run-time values of the agent executor ----------===//

#include "runtime/agent/agent_values.h"

#include <charconv>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "ir/AgentDialect.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "support/json.h"
#include "support/utf8.h"

namespace treni {
using json = nlohmann::json;

namespace {
std::string formatDouble(double value) {
  if (std::isnan(value))
    return "nan";
  if (std::isinf(value))
    return value > 0 ? "inf" : "-inf";
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  return text;
}

/// `text` read whole as a T (std::from_chars), or nullopt.
template <typename T> std::optional<T> parseWhole(const std::string &text) {
  T value{};
  auto [ptr, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc() && ptr == text.data() + text.size() && !text.empty())
    return value;
  return std::nullopt;
}

} // namespace

std::string renderValue(const AgentValue &value) {
  if (auto *s = std::get_if<std::string>(&value))
    return *s;
  if (auto *i = std::get_if<int64_t>(&value))
    return std::to_string(*i);
  if (auto *d = std::get_if<double>(&value))
    return formatDouble(*d);
  if (auto *b = std::get_if<bool>(&value))
    return *b ? "true" : "false";
  if (auto *j = std::get_if<JsonValue>(&value))
    return dumpJson(j->value);
  return "";
}

json toJsonValue(const AgentValue &value) {
  if (auto *s = std::get_if<std::string>(&value))
    return utf8::repair(*s);
  if (auto *i = std::get_if<int64_t>(&value))
    return *i;
  if (auto *d = std::get_if<double>(&value))
    return std::isfinite(*d) ? json(*d) : json(formatDouble(*d));
  if (auto *b = std::get_if<bool>(&value))
    return *b;
  if (auto *j = std::get_if<JsonValue>(&value))
    return j->value;
  if (auto *g = std::get_if<std::shared_ptr<const GenerationValue>>(&value))
    return utf8::repair((*g)->text);
  if (auto *t = std::get_if<std::shared_ptr<const ToolValue>>(&value))
    return (*t)->output;
  return nullptr;
}

AgentValue emptyValueOf(mlir::Type type) {
  if (mlir::isa<agent::StringType>(type))
    return std::string();
  if (type.isInteger(1))
    return false;
  if (type.isInteger(64))
    return int64_t(0);
  if (type.isF64())
    return 0.0;
  if (mlir::isa<agent::JsonType>(type))
    return JsonValue{nullptr};
  if (mlir::isa<agent::GenerationType>(type))
    return std::shared_ptr<const GenerationValue>(
        std::make_shared<GenerationValue>());
  if (mlir::isa<agent::ToolResultType>(type))
    return std::shared_ptr<const ToolValue>(std::make_shared<ToolValue>());
  return std::monostate();
}

std::string parameterTypeName(mlir::Type type) {
  if (mlir::isa<agent::StringType>(type))
    return "string";
  if (type.isInteger(1))
    return "bool";
  if (type.isInteger(64))
    return "int";
  if (type.isF64())
    return "float";
  if (mlir::isa<agent::JsonType>(type))
    return "json";
  return "value";
}

absl::StatusOr<AgentValue> bindArgument(const json &arg, mlir::Type type,
                                        std::string_view name) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("argument '", std::string(name), "' (",
                     parameterTypeName(type), "): ", std::string(why)));
  };
  if (mlir::isa<agent::StringType>(type)) {
    if (arg.is_string())
      return arg.get<std::string>();
    return dumpJson(arg);
  }
  if (mlir::isa<agent::JsonType>(type)) {
    if (arg.is_string()) {
      json parsed = json::parse(arg.get<std::string>(), nullptr,
                                /*allow_exceptions=*/false);
      if (parsed.is_discarded())
        return JsonValue{arg}; // a plain string is a JSON string
      return JsonValue{parsed};
    }
    return JsonValue{arg};
  }
  if (type.isInteger(1)) {
    if (arg.is_boolean())
      return arg.get<bool>();
    if (arg.is_string() && (arg == "true" || arg == "false"))
      return arg == "true";
    return bad(absl::StrCat("expected true or false, got ", dumpJson(arg)));
  }
  if (type.isInteger(64)) {
    if (arg.is_number_integer())
      return arg.get<int64_t>();
    if (arg.is_string())
      if (std::optional<int64_t> value =
              parseWhole<int64_t>(arg.get<std::string>()))
        return *value;
    return bad(absl::StrCat("expected an integer, got ", dumpJson(arg)));
  }
  if (type.isF64()) {
    if (arg.is_number())
      return arg.get<double>();
    if (arg.is_string())
      if (std::optional<double> value =
              parseWhole<double>(arg.get<std::string>()))
        return *value;
    return bad(absl::StrCat("expected a number, got ", dumpJson(arg)));
  }
  return bad("unsupported parameter type");
}

absl::StatusOr<AgentValue> attributeValue(mlir::Attribute attr,
                                          mlir::Type type) {
  if (auto s = mlir::dyn_cast<mlir::StringAttr>(attr)) {
    if (mlir::isa<agent::JsonType>(type)) {
      json parsed = json::parse(s.getValue().str(), nullptr, false);
      if (parsed.is_discarded())
        return absl::InvalidArgumentError(
            absl::StrCat("default is not valid JSON: ", s.getValue().str()));
      return JsonValue{parsed};
    }
    return s.getValue().str();
  }
  if (auto b = mlir::dyn_cast<mlir::BoolAttr>(attr))
    return b.getValue();
  if (auto i = mlir::dyn_cast<mlir::IntegerAttr>(attr)) {
    if (i.getType().isInteger(1))
      return i.getValue().getBoolValue();
    return i.getValue().getSExtValue();
  }
  if (auto f = mlir::dyn_cast<mlir::FloatAttr>(attr))
    return f.getValueAsDouble();
  return absl::InvalidArgumentError("unsupported constant attribute");
}

} // namespace treni
