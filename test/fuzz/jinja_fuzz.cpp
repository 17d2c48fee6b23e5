//===- jinja_fuzz.cpp - libFuzzer target for the chat-template interpreter ===//
//
// Parses arbitrary bytes as a Jinja template and renders it with a fixed chat
// context (messages with tool calls, tools, special tokens), under small
// limits so that each input stays fast. The same bytes go through the tool
// call parsers and the streaming hold-back. Besides the sanitizers, it checks
// the interpreter's promises: a failure always says why (and a syntax error
// where), the hold-back never exceeds the text, parsed calls are well formed.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/text/jinja.h"
#include "runtime/text/tool_calls.h"

namespace {

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

const nlohmann::ordered_json &context() {
  static const nlohmann::ordered_json kContext =
      nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Weather in Zürich? 🙂"},
      {"role": "assistant", "content": "<think>\nplan\n</think>\n\n", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather",
         "arguments": {"city": "Zürich", "days": 2, "flags": [true, null, 1.5]}}}]},
      {"role": "tool", "content": "{\"t\": 21}"},
      {"role": "assistant", "content": "It is 21 °C.", "reasoning_content": "r"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather",
      "description": "Weather — 東京", "parameters": {"type": "object",
      "properties": {"city": {"type": "string", "enum": ["a", "b"]}}, "required": ["city"]}}}],
    "documents": null,
    "add_generation_prompt": true,
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "enable_thinking": false,
    "date_string": "26 Jul 2024"
  })");
  return kContext;
}

void checkToolCalls(std::string_view text, treni::ToolCallFormat format) {
  treni::ParsedToolCalls parsed = treni::parseToolCalls(text, format, "id");
  check(parsed.toolCalls.is_array());
  for (const auto &call : parsed.toolCalls) {
    check(call["type"] == "function");
    check(call["function"]["arguments"].is_string());
    check(!call["function"]["name"].get<std::string>().empty());
  }
  for (const std::string &error : parsed.errors)
    check(!error.empty());
  check(treni::streamableContentLength(text, format) <= text.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view source(reinterpret_cast<const char *>(data), size);

  treni::jinja::TemplateOptions options;
  options.maxOutputBytes = 1 << 20;
  options.maxLoopIterations = 20000;
  options.maxCallDepth = 32;
  options.now = [] { return std::time_t(1721952000); };
  absl::StatusOr<std::unique_ptr<treni::jinja::Template>> parsed =
      treni::jinja::Template::parse(source, options);
  if (!parsed.ok()) {
    check(!parsed.status().message().empty());
    check(parsed.status().message().find("line ") != std::string_view::npos);
  } else {
    absl::StatusOr<std::string> out = (*parsed)->render(context());
    if (!out.ok())
      check(!out.status().message().empty());
    else
      check(out->size() <= options.maxOutputBytes);
  }

  checkToolCalls(source, treni::ToolCallFormat::Qwen);
  checkToolCalls(source, treni::ToolCallFormat::Llama3Json);
  return 0;
}
