//===- tool_calls.cpp - tool calls out of generated text ------------------===//

#include "runtime/text/tool_calls.h"

#include "absl/strings/str_cat.h"
#include "runtime/text/jinja.h"
#include "support/json_bounded.h"

namespace treni {

namespace {

constexpr std::string_view kQwenOpen = "<tool_call>";
constexpr std::string_view kQwenClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back()))
    s.remove_suffix(1);
  return s;
}

/// End (one past the closing brace) of the JSON object starting at `start`
/// ('{'), skipping braces inside strings; npos when it does not close.
size_t jsonObjectEnd(std::string_view s, size_t start) {
  int depth = 0;
  bool inString = false;
  for (size_t i = start; i < s.size(); ++i) {
    char c = s[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"')
      inString = true;
    else if (c == '{' || c == '[')
      ++depth;
    else if (c == '}' || c == ']') {
      if (--depth == 0)
        return i + 1;
    }
  }
  return std::string_view::npos;
}

/// {"name": string, "arguments"|"parameters": object|string} -> an OpenAI
/// tool call, or an error.
bool makeCall(const nlohmann::ordered_json &call, std::string id,
              nlohmann::json &out, std::string &error) {
  if (!call.is_object()) {
    error = "not a JSON object";
    return false;
  }
  auto name = call.find("name");
  if (name == call.end() || !name->is_string() ||
      name->get<std::string>().empty()) {
    error = "no \"name\" string";
    return false;
  }
  auto args = call.find("arguments");
  if (args == call.end())
    args = call.find("parameters");
  std::string arguments = "{}";
  if (args != call.end()) {
    if (args->is_string()) {
      arguments = args->get<std::string>();
    } else if (args->is_object()) {
      absl::StatusOr<std::string> json =
          jinja::toJson(jinja::Value::fromJson(*args));
      if (!json.ok()) {
        error = std::string(json.status().message());
        return false;
      }
      arguments = std::move(*json);
    } else if (!args->is_null()) {
      error = "\"arguments\" is neither an object nor a string";
      return false;
    }
  }
  out = {{"id", std::move(id)},
         {"type", "function"},
         {"function",
          {{"name", name->get<std::string>()},
           {"arguments", std::move(arguments)}}}};
  return true;
}

/// Builds the call out of a model's JSON text for it, or says why not. The
/// text is the model's: its depth is bounded like a request's, as the
/// arguments are rebuilt recursively (and a tool gets them). Llama 3's
/// format needs the arguments key: without it, JSON is an answer.
bool parseCall(std::string_view text, bool argumentsRequired, std::string id,
               nlohmann::json &out, std::string &error) {
  absl::StatusOr<nlohmann::ordered_json> parsed = parseOrderedJsonBounded(text);
  if (!parsed.ok()) {
    error = std::string(parsed.status().message());
    return false;
  }
  if (argumentsRequired &&
      (!parsed->is_object() ||
       (!parsed->contains("parameters") && !parsed->contains("arguments")))) {
    error = "no \"parameters\"";
    return false;
  }
  return makeCall(*parsed, std::move(id), out, error);
}

ParsedToolCalls parseQwen(std::string_view text, std::string_view idPrefix) {
  ParsedToolCalls result;
  std::string content;
  size_t pos = 0;
  int index = 0;
  while (pos < text.size()) {
    size_t open = text.find(kQwenOpen, pos);
    if (open == std::string_view::npos) {
      content.append(text.substr(pos));
      break;
    }
    content.append(text.substr(pos, open - pos));
    size_t bodyStart = open + kQwenOpen.size();
    size_t close = text.find(kQwenClose, bodyStart);
    // An unclosed call (generation stopped) runs to the end.
    size_t bodyEnd = close == std::string_view::npos ? text.size() : close;
    size_t next = close == std::string_view::npos ? text.size()
                                                  : close + kQwenClose.size();
    std::string_view body = trim(text.substr(bodyStart, bodyEnd - bodyStart));
    nlohmann::json call;
    std::string error;
    if (parseCall(body, /*argumentsRequired=*/false,
                  absl::StrCat(std::string(idPrefix), index), call, error)) {
      result.toolCalls.push_back(std::move(call));
      ++index;
    } else {
      result.errors.push_back(
          absl::StrCat("tool call at byte ", open, ": ", error));
      content.append(text.substr(open, next - open));
    }
    pos = next;
  }
  result.content = result.toolCalls.empty() ? std::move(content)
                                            : std::string(trim(content));
  return result;
}

ParsedToolCalls parseLlama3(std::string_view text, std::string_view idPrefix) {
  ParsedToolCalls result;
  std::string_view rest = trim(text);
  bool tagged = rest.starts_with(kPythonTag);
  if (tagged)
    rest = trim(rest.substr(kPythonTag.size()));
  nlohmann::json calls = nlohmann::json::array();
  std::string error;
  size_t pos = 0;
  while (error.empty() && pos < rest.size()) {
    if (rest[pos] != '{') {
      error = "expected a JSON object";
      break;
    }
    size_t end = jsonObjectEnd(rest, pos);
    if (end == std::string_view::npos) {
      error = "unterminated JSON object";
      break;
    }
    std::string_view object = rest.substr(pos, end - pos);
    nlohmann::json call;
    if (parseCall(object, /*argumentsRequired=*/true,
                  absl::StrCat(std::string(idPrefix), calls.size()), call,
                  error))
      calls.push_back(std::move(call));
    pos = end;
    while (pos < rest.size() && (isSpace(rest[pos]) || rest[pos] == ';'))
      ++pos;
  }
  if (error.empty() && !calls.empty()) {
    result.toolCalls = std::move(calls);
    return result;
  }
  // Not a tool call: plain content. Only a tagged message was meant as one.
  result.content = std::string(text);
  if (tagged)
    result.errors.push_back(absl::StrCat("tool call after <|python_tag|>: ",
                                         error.empty() ? "no call" : error));
  return result;
}

} // namespace

ParsedToolCalls parseToolCalls(std::string_view text, ToolCallFormat format,
                               std::string_view idPrefix) {
  switch (format) {
  case ToolCallFormat::Qwen:
    return parseQwen(text, idPrefix);
  case ToolCallFormat::Llama3Json:
    return parseLlama3(text, idPrefix);
  case ToolCallFormat::None:
    break;
  }
  ParsedToolCalls result;
  result.content = std::string(text);
  return result;
}

size_t streamableContentLength(std::string_view text, ToolCallFormat format) {
  switch (format) {
  case ToolCallFormat::None:
    return text.size();
  case ToolCallFormat::Qwen: {
    size_t open = text.find(kQwenOpen);
    if (open != std::string_view::npos)
      return open;
    // Hold back a tail that could be the start of "<tool_call>".
    for (size_t keep = std::min(text.size(), kQwenOpen.size() - 1); keep > 0;
         --keep)
      if (kQwenOpen.starts_with(text.substr(text.size() - keep)))
        return text.size() - keep;
    return text.size();
  }
  case ToolCallFormat::Llama3Json: {
    // The call is the whole message: hold everything while it may be one.
    std::string_view start = trim(text);
    if (start.empty() || start.starts_with('{') ||
        start.starts_with(kPythonTag) || kPythonTag.starts_with(start))
      return 0;
    return text.size();
  }
  }
  return text.size();
}

ToolCallFormat detectToolCallFormat(std::string_view source) {
  if (source.find("<tool_call>") != std::string_view::npos)
    return ToolCallFormat::Qwen;
  if (source.find("\"parameters\"") != std::string_view::npos ||
      source.find("<|python_tag|>") != std::string_view::npos)
    return ToolCallFormat::Llama3Json;
  return ToolCallFormat::None;
}

} // namespace treni
