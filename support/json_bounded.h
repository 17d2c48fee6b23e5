//===- json_bounded.h - JSON parsing with bounded nesting -------*- C++ -*-===//
//
// Everything that parses JSON from outside (request bodies, tool-call
// arguments, tool results, workflow arguments, files a tool reads) goes
// through these. nlohmann's parser does not recurse, but copying, comparing
// and dumping a value do: 20,000 nested arrays overflow a worker's stack
// long after the parse. So the depth is checked first, by a scan that does
// not recurse, and a deeper document is an error that names the limit.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace treni {

/// The nesting depth every external JSON document is held to by default.
inline constexpr int kMaxJsonDepth = 64;

/// Deepest nesting of arrays and objects in `text` (0 for a scalar), counted
/// without parsing; brackets inside strings do not count. Stops counting,
/// and returns `stopAbove + 1`, once the depth exceeds `stopAbove`.
int jsonNestingDepth(std::string_view text, int stopAbove);

/// Parses `text` as JSON whose arrays and objects nest at most `maxDepth`
/// deep. The error (InvalidArgument) says what is wrong: too deep (naming
/// the limit) or not JSON (where: "parse error at line 1, column 7: ...").
absl::StatusOr<nlohmann::json> parseJsonBounded(std::string_view text,
                                                int maxDepth = kMaxJsonDepth);

/// The same, keeping the keys of every object in the order they came.
absl::StatusOr<nlohmann::ordered_json>
parseOrderedJsonBounded(std::string_view text, int maxDepth = kMaxJsonDepth);

/// Depth of an already-built value, measured without recursion (a value
/// built in code, or by a parser that did not bound it).
int jsonValueDepth(const nlohmann::json &value);
int jsonValueDepth(const nlohmann::ordered_json &value);

} // namespace treni
