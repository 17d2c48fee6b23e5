//===- tool_calls.h - tool calls out of generated text ----------*- C++ -*-===//
//
// Turns what a model generated into OpenAI's assistant message fields:
// `tool_calls` ([{id, type: "function", function: {name, arguments}}], with
// arguments a JSON string) and the remaining `content`. Two formats:
//  - Qwen (Hermes style): any number of
//      <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>
//    with text around them; the text outside the calls is the content. A call
//    whose JSON is malformed is left in the content and reported in errors.
//  - Llama 3 JSON: the whole message is {"name": ..., "parameters": {...}}
//    (several joined by ';' allowed), optionally after <|python_tag|>.
// Arguments are re-serialized as Python's json.dumps(ensure_ascii=False)
// would ({"a": 1, "b": [1, 2]}), as vLLM's parsers do; a string given as
// arguments is kept as it is.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace treni {

enum class ToolCallFormat {
  None,       ///< never parse tool calls
  Qwen,       ///< <tool_call>{json}</tool_call>
  Llama3Json, ///< [<|python_tag|>]{"name":..., "parameters":...}
};

struct ParsedToolCalls {
  /// Text outside the tool calls (trimmed when calls were taken out).
  std::string content;
  /// OpenAI `tool_calls` array; empty when there were none.
  nlohmann::json toolCalls = nlohmann::json::array();
  /// One line per call that could not be parsed (left in `content`).
  std::vector<std::string> errors;
};

/// Parses `text` in `format`. Ids are `idPrefix` + the call's index (a server
/// passes something unique per request). Never fails: what is not a
/// well-formed call stays content.
ParsedToolCalls parseToolCalls(std::string_view text, ToolCallFormat format,
                               std::string_view idPrefix = "call_");

/// For streaming: how many leading bytes of the text generated so far are
/// plain content for sure. The rest may be (the start of) a tool call and
/// is held back until generation ends or it is clearly not one.
size_t streamableContentLength(std::string_view generatedSoFar,
                               ToolCallFormat format);

/// The format a chat template's source prompts the model to use (Qwen's
/// <tool_call> tags, or Llama 3's "parameters" JSON), or None.
ToolCallFormat detectToolCallFormat(std::string_view templateSource);

} // namespace treni
