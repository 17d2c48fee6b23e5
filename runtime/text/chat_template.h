//===- chat_template.h - a checkpoint's own chat template -------*- C++ -*-===//
//
// Renders the `chat_template` of a `tokenizer_config.json` with the Jinja
// subset interpreter (runtime/text/jinja.h), as transformers'
// apply_chat_template does: `messages`, `tools`, `add_generation_prompt`,
// `bos_token`, `eos_token` and any extra variables (e.g. `enable_thinking`,
// `date_string`) are in scope; `raise_exception(msg)` is an error carrying msg.
// An unsupported construct is an error naming it and its line.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace treni {

/// JSON objects keep their key order (nlohmann::ordered_json), as Python's
/// dicts do: a tool schema or tool-call arguments render in the order the
/// request gave them (tojson). Parse requests with nlohmann::ordered_json to
/// get transformers' bytes; a nlohmann::json converts, with sorted keys.
struct ChatTemplateOptions {
  bool addGenerationPrompt = true;
  /// OpenAI-style tool definitions ({"type": "function", "function": {...}}),
  /// or null for none.
  nlohmann::ordered_json tools = nullptr;
  /// Extra template variables (enable_thinking, date_string, ...).
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class ChatTemplate {
public:
  /// Reads `tokenizer_config.json` (its chat_template, bos_token,
  /// eos_token; a template given as a list of named templates picks
  /// "default", or "tool_use" when tools are passed).
  static absl::StatusOr<std::unique_ptr<ChatTemplate>>
  fromTokenizerConfig(const std::string &path);
  static absl::StatusOr<std::unique_ptr<ChatTemplate>>
  fromSource(std::string source, std::string bosToken = "",
             std::string eosToken = "");
  ~ChatTemplate();

  /// `messages` is an OpenAI-style array of {role, content, tool_calls?,
  /// tool_call_id?, reasoning_content?}. Safe to call from several threads
  /// at once. A template's raise_exception(msg) is an InvalidArgument error
  /// whose message starts with msg.
  absl::StatusOr<std::string>
  render(const nlohmann::ordered_json &messages,
         const ChatTemplateOptions &options = {}) const;
  /// Same; object keys come in nlohmann::json's sorted order.
  absl::StatusOr<std::string>
  render(const nlohmann::json &messages,
         const ChatTemplateOptions &options = {}) const;

  /// The template's source (the "default" one of a named list).
  const std::string &source() const;

  const std::string &bosToken() const;
  const std::string &eosToken() const;

  struct Impl;

private:
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace treni
