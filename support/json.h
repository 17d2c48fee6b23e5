//===- json.h - JSON text that never throws ---------------------*- C++ -*-===//
#pragma once

#include <string>
#include <type_traits>

#include "nlohmann/json.hpp"

namespace treni {

/// JSON text of `value` that never throws: invalid UTF-8 in a string (a
/// token piece may split a character) becomes U+FFFD.
inline std::string dumpJson(const nlohmann::json &value, int indent = -1) {
  return value.dump(indent, ' ', false,
                    nlohmann::json::error_handler_t::replace);
}

/// The same for a value that keeps its keys in insertion order (a template,
/// so that a braced initializer list still means nlohmann::json).
template <typename Json>
requires std::is_same_v<Json, nlohmann::ordered_json> std::string
dumpJson(const Json &value, int indent = -1) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

} // namespace treni
