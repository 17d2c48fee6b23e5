//===- json_bounded.cpp - JSON parsing with bounded nesting ---------------===//

#include "support/json_bounded.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace treni {

int jsonNestingDepth(std::string_view text, int stopAbove) {
  int depth = 0, deepest = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i; // the escaped character cannot end the string
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > stopAbove)
          return stopAbove + 1;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

namespace {

/// nlohmann's message without its "[json.exception.parse_error.101] " tag:
/// the tag names library internals, the rest names the place.
std::string withoutExceptionId(std::string_view message) {
  if (message.starts_with("[json.exception.")) {
    size_t end = message.find("] ");
    if (end != std::string_view::npos)
      message.remove_prefix(end + 2);
  }
  return std::string(message);
}

template <typename Json>
absl::StatusOr<Json> parseBounded(std::string_view text, int maxDepth) {
  if (jsonNestingDepth(text, maxDepth) > maxDepth)
    return absl::InvalidArgumentError(absl::StrCat(
        "JSON nests deeper than ", maxDepth, " levels of arrays and objects"));
  Json value = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    // Parse again with exceptions for the message: it names the place. A
    // number too large for a double (1e400) is an out_of_range, not a
    // parse_error.
    try {
      (void)Json::parse(text);
    } catch (const typename Json::parse_error &error) {
      return absl::InvalidArgumentError(absl::StrCat(
          "byte ", error.byte, ": ", withoutExceptionId(error.what())));
    } catch (const typename Json::exception &error) {
      return absl::InvalidArgumentError(withoutExceptionId(error.what()));
    }
    return absl::InvalidArgumentError("not valid JSON");
  }
  return value;
}

template <typename Json> int valueDepth(const Json &root) {
  int deepest = 0;
  std::vector<std::pair<const Json *, int>> stack{{&root, 0}};
  while (!stack.empty()) {
    auto [value, depth] = stack.back();
    stack.pop_back();
    if (!value->is_structured())
      continue;
    deepest = std::max(deepest, depth + 1);
    for (const auto &child : *value)
      stack.emplace_back(&child, depth + 1);
  }
  return deepest;
}

} // namespace

absl::StatusOr<nlohmann::json> parseJsonBounded(std::string_view text,
                                                int maxDepth) {
  return parseBounded<nlohmann::json>(text, maxDepth);
}

absl::StatusOr<nlohmann::ordered_json>
parseOrderedJsonBounded(std::string_view text, int maxDepth) {
  return parseBounded<nlohmann::ordered_json>(text, maxDepth);
}

int jsonValueDepth(const nlohmann::json &value) { return valueDepth(value); }
int jsonValueDepth(const nlohmann::ordered_json &value) {
  return valueDepth(value);
}

} // namespace treni
