//===- openai_api.cpp - OpenAI request parsing and response building -----===//

#include "runtime/serve/openai_api.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "support/utf8.h"
#include "support/json.h"

namespace treni {

using json = nlohmann::json;

//===----------------------------------------------------------------------===//
// Errors and JSON text
//===----------------------------------------------------------------------===//

json ApiError::toJson() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

ApiError invalidRequest(std::string message, std::string param,
                        std::string code) {
  ApiError error;
  error.message = std::move(message);
  error.param = std::move(param);
  error.code = std::move(code);
  return error;
}

std::string sseEvent(const json &value) {
  return absl::StrCat("data: ", dumpJson(value), "\n\n");
}

namespace {

const char *typeName(const json &value) {
  switch (value.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
    return "an integer";
  case json::value_t::number_float:
    return "a number";
  case json::value_t::string:
    return "a string";
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  default:
    return "an unsupported value";
  }
}

ApiError wrongType(const std::string &param, const char *expected,
                   const json &value) {
  return invalidRequest(absl::StrCat("'", param, "' must be ", expected,
                                     ", not ", typeName(value)),
                        param, "invalid_type");
}

/// Parses the body into an object, or the error.
std::variant<json, ApiError> parseBody(std::string_view body) {
  if (body.empty())
    return invalidRequest("the request body is empty; expected a JSON object",
                          "", "invalid_json");
  if (size_t at = utf8::firstInvalid(body); at != std::string_view::npos)
    return invalidRequest(
        absl::StrCat("the request body is not valid UTF-8 (byte ", at, ")"), "",
        "invalid_utf8");
  json value;
  try {
    value = json::parse(body);
  } catch (const json::parse_error &error) {
    return invalidRequest(
        absl::StrCat("the request body is not valid JSON: ", error.what()), "",
        "invalid_json");
  }
  if (!value.is_object())
    return invalidRequest(
        absl::StrCat("the request body must be a JSON object, not ",
                     typeName(value)),
        "", "invalid_json");
  return value;
}

/// Reads optional fields of one JSON object; the first problem sticks.
class FieldReader {
public:
  explicit FieldReader(const json &object) : object_(object) {}
  std::optional<ApiError> error;

  const json *get(const std::string &name) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null())
      return nullptr;
    return &*it;
  }
  std::optional<double> number(const std::string &name, double low,
                               double high) {
    const json *value = get(name);
    if (!value || error)
      return std::nullopt;
    if (!value->is_number())
      return fail(wrongType(name, "a number", *value));
    double v = value->get<double>();
    if (!(v >= low && v <= high))
      return fail(invalidRequest(absl::StrCat("'", name, "' must be between ",
                                              low, " and ", high, ", not ", v),
                                 name));
    return v;
  }
  std::optional<int64_t> integer(const std::string &name, int64_t low,
                                 int64_t high) {
    const json *value = get(name);
    if (!value || error)
      return std::nullopt;
    bool integral =
        value->is_number_integer() ||
        (value->is_number_float() && std::isfinite(value->get<double>()) &&
         std::floor(value->get<double>()) == value->get<double>() &&
         std::abs(value->get<double>()) < 9e15);
    if (!integral)
      return fail(wrongType(name, "an integer", *value));
    int64_t v;
    if (value->is_number_unsigned() &&
        value->get<uint64_t>() > uint64_t(INT64_MAX))
      v = INT64_MAX;
    else
      v = value->is_number_float() ? int64_t(value->get<double>())
                                   : value->get<int64_t>();
    if (v < low || v > high)
      return fail(invalidRequest(absl::StrCat("'", name, "' must be between ",
                                              low, " and ", high, ", not ", v),
                                 name));
    return v;
  }
  std::optional<bool> boolean(const std::string &name) {
    const json *value = get(name);
    if (!value || error)
      return std::nullopt;
    if (!value->is_boolean())
      return fail(wrongType(name, "a boolean", *value));
    return value->get<bool>();
  }
  std::optional<std::string> string(const std::string &name) {
    const json *value = get(name);
    if (!value || error)
      return std::nullopt;
    if (!value->is_string())
      return fail(wrongType(name, "a string", *value));
    return value->get<std::string>();
  }

  template <typename T> std::optional<T> fail(ApiError e) {
    if (!error)
      error = std::move(e);
    return std::nullopt;
  }
  std::nullopt_t fail(ApiError e) {
    if (!error)
      error = std::move(e);
    return std::nullopt;
  }

private:
  const json &object_;
};

/// A seed for requests that give none: different per request.
uint64_t freshSeed() {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  return counter.fetch_add(0x9E3779B97F4A7C15ull);
}

/// `model`, sampling, stop, stream and stream_options: shared by both
/// endpoints, read into the fields of the same names of a ChatRequest or a
/// CompletionRequest.
template <typename Request>
std::optional<ApiError> readCommon(const json &body, FieldReader &reader,
                                   const ApiLimits &limits, Request &out) {
  const json *model = reader.get("model");
  if (!model)
    return invalidRequest("'model' is required", "model",
                          "missing_required_parameter");
  if (!model->is_string())
    return wrongType("model", "a string", *model);
  out.model = model->get<std::string>();
  if (!limits.modelNames.empty() &&
      std::find(limits.modelNames.begin(), limits.modelNames.end(),
                out.model) == limits.modelNames.end()) {
    ApiError error = invalidRequest(
        absl::StrCat("the model '", out.model,
                     "' does not exist; this server serves '",
                     absl::StrJoin(limits.modelNames, "', '"), "'"),
        "model", "model_not_found");
    error.status = 404;
    return error;
  }
  // OpenAI's default temperature is 1.
  out.sampling.temperature =
      float(reader.number("temperature", 0, 2).value_or(1.0));
  out.sampling.topP = float(reader.number("top_p", 0, 1).value_or(1.0));
  if (!reader.error && out.sampling.topP <= 0)
    return invalidRequest("'top_p' must be greater than 0", "top_p");
  // vLLM's -1 and 0 both mean no top-k limit.
  int64_t topK = reader.integer("top_k", -1, 1 << 30).value_or(0);
  out.sampling.topK = int32_t(std::max<int64_t>(topK, 0));
  if (std::optional<int64_t> seed =
          reader.integer("seed", std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max()))
    out.sampling.seed = uint64_t(*seed);
  else
    out.sampling.seed = freshSeed();
  for (const char *penalty : {"presence_penalty", "frequency_penalty"})
    if (std::optional<double> value = reader.number(penalty, -2, 2);
        value && *value != 0)
      return invalidRequest(
          absl::StrCat("'", penalty, "' is not supported (only 0)"), penalty,
          "unsupported_parameter");
  if (reader.error)
    return reader.error;
  if (const json *stop = reader.get("stop")) {
    if (stop->is_string()) {
      out.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json &item : *stop) {
        if (!item.is_string())
          return wrongType("stop", "a string or an array of strings", *stop);
        out.stop.push_back(item.get<std::string>());
      }
    } else {
      return wrongType("stop", "a string or an array of strings", *stop);
    }
    if (int(out.stop.size()) > limits.maxStopStrings)
      return invalidRequest(absl::StrCat("'stop' has ", out.stop.size(),
                                         " strings; at most ",
                                         limits.maxStopStrings),
                            "stop");
    for (const std::string &s : out.stop)
      if (s.empty())
        return invalidRequest("'stop' strings must not be empty", "stop");
  }
  out.stream = reader.boolean("stream").value_or(false);
  if (const json *options = reader.get("stream_options")) {
    if (!options->is_object())
      return wrongType("stream_options", "an object", *options);
    if (!out.stream)
      return invalidRequest(
          "'stream_options' is only allowed when 'stream' is true",
          "stream_options");
    FieldReader optionReader(*options);
    out.includeUsage = optionReader.boolean("include_usage").value_or(false);
    if (optionReader.error) {
      optionReader.error->param = "stream_options.include_usage";
      return optionReader.error;
    }
  }
  if (std::optional<int64_t> n = reader.integer("n", 1, 128); n && *n != 1)
    return invalidRequest("only n=1 is supported", "n", "unsupported_value");
  return reader.error;
}

/// The text of a message's content: a string, null, or text parts.
std::variant<json, ApiError> messageContent(const json &content,
                                            const std::string &param) {
  if (content.is_null() || content.is_string())
    return content;
  if (!content.is_array())
    return wrongType(param, "a string or an array of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json &part = content[i];
    std::string partParam = absl::StrCat(param, "[", i, "]");
    if (!part.is_object())
      return wrongType(partParam, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string())
      return invalidRequest(
          absl::StrCat("'", partParam, ".type' must be a string"),
          partParam + ".type", "invalid_type");
    if (*type != "text")
      return invalidRequest(absl::StrCat("content part type '",
                                         type->get<std::string>(),
                                         "' is not supported; only 'text'"),
                            partParam + ".type", "unsupported_value");
    auto partText = part.find("text");
    if (partText == part.end() || !partText->is_string())
      return invalidRequest(
          absl::StrCat("'", partParam, ".text' must be a string"),
          partParam + ".text", "invalid_type");
    text += partText->get<std::string>();
  }
  return json(text);
}

std::variant<json, ApiError> normalizeMessages(const json *messages) {
  if (!messages)
    return invalidRequest("'messages' is required", "messages",
                          "missing_required_parameter");
  if (!messages->is_array())
    return wrongType("messages", "an array", *messages);
  if (messages->empty())
    return invalidRequest("'messages' must contain at least one message",
                          "messages", "empty_array");
  json normalized = json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json &message = (*messages)[i];
    std::string param = absl::StrCat("messages[", i, "]");
    if (!message.is_object())
      return wrongType(param, "an object", message);
    auto role = message.find("role");
    if (role == message.end() || !role->is_string())
      return invalidRequest(
          absl::StrCat("'", param, ".role' is required (a string)"),
          param + ".role", "invalid_type");
    std::string roleName = role->get<std::string>();
    if (roleName == "developer")
      roleName = "system";
    if (roleName != "system" && roleName != "user" && roleName != "assistant" &&
        roleName != "tool")
      return invalidRequest(
          absl::StrCat("'", param,
                       ".role' must be system, developer, user, "
                       "assistant or tool, not '",
                       role->get<std::string>(), "'"),
          param + ".role");
    json out = {{"role", roleName}};
    auto content = message.find("content");
    json text = nullptr;
    if (content != message.end()) {
      auto converted = messageContent(*content, param + ".content");
      if (auto *error = std::get_if<ApiError>(&converted))
        return *error;
      text = std::get<json>(converted);
    }
    bool hasToolCalls =
        message.contains("tool_calls") && !message["tool_calls"].is_null();
    if (text.is_null() && !(roleName == "assistant" && hasToolCalls))
      return invalidRequest(absl::StrCat("'", param, ".content' is required"),
                            param + ".content", "missing_required_parameter");
    out["content"] = text;
    if (hasToolCalls) {
      const json &calls = message["tool_calls"];
      if (roleName != "assistant" || !calls.is_array())
        return invalidRequest(
            absl::StrCat("'", param,
                         ".tool_calls' must be an array on an "
                         "assistant message"),
            param + ".tool_calls", "invalid_type");
      json outCalls = json::array();
      for (size_t k = 0; k < calls.size(); ++k) {
        std::string callParam = absl::StrCat(param, ".tool_calls[", k, "]");
        const json &call = calls[k];
        if (!call.is_object() || !call.contains("function") ||
            !call["function"].is_object() ||
            !call["function"].contains("name") ||
            !call["function"]["name"].is_string())
          return invalidRequest(
              absl::StrCat("'", callParam,
                           "' must be {\"type\": \"function\", "
                           "\"function\": {\"name\", \"arguments\"}}"),
              callParam, "invalid_type");
        json arguments = json::object();
        if (call["function"].contains("arguments")) {
          const json &raw = call["function"]["arguments"];
          if (raw.is_string()) {
            arguments = json::parse(raw.get<std::string>(), nullptr, false);
            if (arguments.is_discarded())
              return invalidRequest(
                  absl::StrCat("'", callParam,
                               ".function.arguments' is not valid JSON"),
                  callParam + ".function.arguments");
          } else if (raw.is_object()) {
            arguments = raw;
          } else if (!raw.is_null()) {
            return wrongType(callParam + ".function.arguments", "a JSON string",
                             raw);
          }
        }
        json outCall = {
            {"type", "function"},
            {"function",
             {{"name", call["function"]["name"]}, {"arguments", arguments}}}};
        if (call.contains("id") && call["id"].is_string())
          outCall["id"] = call["id"];
        outCalls.push_back(std::move(outCall));
      }
      out["tool_calls"] = std::move(outCalls);
    }
    for (const char *field : {"tool_call_id", "name"})
      if (message.contains(field) && message[field].is_string())
        out[field] = message[field];
    normalized.push_back(std::move(out));
  }
  return normalized;
}

std::optional<ApiError> readTools(const json &body, ChatRequest &out) {
  if (const auto it = body.find("tools"); it != body.end() && !it->is_null()) {
    if (!it->is_array())
      return wrongType("tools", "an array", *it);
    static const std::regex namePattern("^[a-zA-Z0-9_-]{1,64}$");
    for (size_t i = 0; i < it->size(); ++i) {
      const json &tool = (*it)[i];
      std::string param = absl::StrCat("tools[", i, "]");
      if (!tool.is_object() || tool.value("type", "") != "function" ||
          !tool.contains("function") || !tool["function"].is_object())
        return invalidRequest(absl::StrCat("'", param,
                                           "' must be {\"type\": \"function\", "
                                           "\"function\": {...}}"),
                              param, "invalid_type");
      const json &function = tool["function"];
      if (!function.contains("name") || !function["name"].is_string() ||
          !std::regex_match(function["name"].get<std::string>(), namePattern))
        return invalidRequest(
            absl::StrCat("'", param,
                         ".function.name' must be 1-64 letters, "
                         "digits, '_' or '-'"),
            param + ".function.name");
      if (function.contains("parameters") &&
          !function["parameters"].is_null() &&
          !function["parameters"].is_object())
        return wrongType(param + ".function.parameters", "an object",
                         function["parameters"]);
    }
    if (!it->empty())
      out.tools = *it;
  }
  if (const auto it = body.find("tool_choice");
      it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      std::string mode = it->get<std::string>();
      if (mode == "none")
        out.toolChoice = ToolChoiceMode::None;
      else if (mode == "auto")
        out.toolChoice = ToolChoiceMode::Auto;
      else if (mode == "required")
        out.toolChoice = ToolChoiceMode::Required;
      else
        return invalidRequest(
            absl::StrCat("'tool_choice' must be none, auto, required "
                         "or a function, not '",
                         mode, "'"),
            "tool_choice");
    } else if (it->is_object()) {
      const json &choice = *it;
      if (choice.value("type", "") != "function" ||
          !choice.contains("function") || !choice["function"].is_object() ||
          !choice["function"].contains("name") ||
          !choice["function"]["name"].is_string())
        return invalidRequest("'tool_choice' must be {\"type\": \"function\", "
                              "\"function\": {\"name\": ...}}",
                              "tool_choice", "invalid_type");
      out.toolChoice = ToolChoiceMode::Function;
      out.toolChoiceName = choice["function"]["name"].get<std::string>();
    } else {
      return wrongType("tool_choice", "a string or an object", *it);
    }
    if ((out.toolChoice == ToolChoiceMode::Required ||
         out.toolChoice == ToolChoiceMode::Function) &&
        out.tools.is_null())
      return invalidRequest("'tool_choice' requires 'tools'", "tool_choice");
    if (out.toolChoice == ToolChoiceMode::Function) {
      bool declared = false;
      for (const json &tool : out.tools)
        declared |= tool["function"]["name"] == out.toolChoiceName;
      if (!declared)
        return invalidRequest(absl::StrCat("'tool_choice' names '",
                                           out.toolChoiceName,
                                           "', which is not in 'tools'"),
                              "tool_choice");
    }
  }
  return std::nullopt;
}

} // namespace

ApiResult<ChatRequest> parseChatRequest(std::string_view text,
                                        const ApiLimits &limits) {
  auto parsed = parseBody(text);
  if (auto *error = std::get_if<ApiError>(&parsed))
    return *error;
  const json &body = std::get<json>(parsed);
  FieldReader reader(body);
  ChatRequest out;
  if (auto error = readCommon(body, reader, limits, out))
    return *error;

  auto messages = normalizeMessages(reader.get("messages"));
  if (auto *error = std::get_if<ApiError>(&messages))
    return *error;
  out.messages = std::move(std::get<json>(messages));

  // max_completion_tokens is the newer name; it wins when both are given.
  for (const char *name : {"max_tokens", "max_completion_tokens"})
    if (std::optional<int64_t> value = reader.integer(name, 1, limits.maxSeq))
      out.maxTokens = value;
  if (reader.error) {
    if (reader.error->message.find("between") != std::string::npos)
      reader.error->message += absl::StrCat(" (the context, --max-seq, is ",
                                            limits.maxSeq, " tokens)");
    return *reader.error;
  }
  out.logprobs = reader.boolean("logprobs").value_or(false);
  out.topLogprobs =
      int(reader.integer("top_logprobs", 0, kMaxAlternatives).value_or(0));
  if (reader.error)
    return *reader.error;
  if (out.topLogprobs > 0 && !out.logprobs)
    return invalidRequest("'top_logprobs' needs 'logprobs': true",
                          "top_logprobs");
  if (auto error = readTools(body, out))
    return *error;
  if (const json *kwargs = reader.get("chat_template_kwargs")) {
    if (!kwargs->is_object())
      return wrongType("chat_template_kwargs", "an object", *kwargs);
    for (const char *reserved : {"messages", "tools", "add_generation_prompt"})
      if (kwargs->contains(reserved))
        return invalidRequest(
            absl::StrCat("'chat_template_kwargs' may not set '", reserved, "'"),
            "chat_template_kwargs");
    out.templateKwargs = *kwargs;
  }
  if (const json *format = reader.get("response_format")) {
    if (!format->is_object() || !format->contains("type") ||
        !(*format)["type"].is_string())
      return invalidRequest("'response_format' must be {\"type\": \"text\"} or "
                            "{\"type\": \"json_object\"}",
                            "response_format", "invalid_type");
    std::string type = (*format)["type"].get<std::string>();
    if (type == "json_object")
      out.jsonObject = true;
    else if (type != "text")
      return invalidRequest(absl::StrCat("response_format type '", type,
                                         "' is not supported; use 'text' or "
                                         "'json_object'"),
                            "response_format.type", "unsupported_value");
  }
  return out;
}

ApiResult<CompletionRequest> parseCompletionRequest(std::string_view text,
                                                    const ApiLimits &limits) {
  auto parsed = parseBody(text);
  if (auto *error = std::get_if<ApiError>(&parsed))
    return *error;
  const json &body = std::get<json>(parsed);
  FieldReader reader(body);
  CompletionRequest out;
  if (auto error = readCommon(body, reader, limits, out))
    return *error;

  const json *prompt = reader.get("prompt");
  if (!prompt)
    return invalidRequest("'prompt' is required", "prompt",
                          "missing_required_parameter");
  const json *single = prompt;
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string())
    single = &(*prompt)[0];
  if (single->is_string()) {
    out.prompt = single->get<std::string>();
    if (out.prompt.empty())
      return invalidRequest("'prompt' must not be empty", "prompt");
  } else if (prompt->is_array() && !prompt->empty() &&
             std::all_of(prompt->begin(), prompt->end(),
                         [](const json &v) { return v.is_number_integer(); })) {
    for (const json &id : *prompt) {
      int64_t value = id.get<int64_t>();
      if (value < 0 || value > INT32_MAX)
        return invalidRequest(
            absl::StrCat("'prompt' token id ", value, " is invalid"), "prompt");
      out.promptIds.push_back(int32_t(value));
    }
  } else {
    return invalidRequest(
        "'prompt' must be a string, an array of one string or an "
        "array of token ids (one prompt per request)",
        "prompt", "invalid_type");
  }
  if (std::optional<int64_t> value =
          reader.integer("max_tokens", 1, limits.maxSeq))
    out.maxTokens = *value;
  if (std::optional<int64_t> logprobs = reader.integer("logprobs", 0, 5))
    out.logprobs = int(*logprobs);
  if (reader.boolean("echo").value_or(false))
    return invalidRequest("'echo' is not supported", "echo",
                          "unsupported_value");
  if (reader.get("suffix"))
    return invalidRequest("'suffix' is not supported", "suffix",
                          "unsupported_value");
  if (std::optional<int64_t> bestOf = reader.integer("best_of", 1, 128);
      bestOf && *bestOf != 1)
    return invalidRequest("only best_of=1 is supported", "best_of",
                          "unsupported_value");
  if (reader.error) {
    if (reader.error->param == "max_tokens")
      reader.error->message += absl::StrCat(" (the context, --max-seq, is ",
                                            limits.maxSeq, " tokens)");
    return *reader.error;
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Preparing a generation
//===----------------------------------------------------------------------===//

namespace {

ApiError contextExceeded(size_t promptTokens, int64_t maxSeq) {
  return invalidRequest(
      absl::StrCat("the prompt has ", promptTokens,
                   " tokens; this server's context (--max-seq) is ", maxSeq,
                   " tokens, so at most ", maxSeq - 1, " fit"),
      "messages", "context_length_exceeded");
}

/// Tokens of a rendered chat prompt: the template wrote the special tokens
/// itself (transformers tokenizes chat prompts with add_special_tokens=False).
std::vector<int32_t> encodeRendered(const Tokenizer &tokenizer,
                                    const std::string &text) {
  return tokenizer.encode(text, /*addSpecialTokens=*/false);
}

void applyCommon(PreparedRequest &prepared, const SamplingParams &sampling,
                 const std::vector<std::string> &stop,
                 const ServedModel &model) {
  prepared.generation.sampling = sampling;
  prepared.generation.stop = stop;
  prepared.generation.lowConfidenceThreshold = model.lowConfidenceThreshold;
}

} // namespace

ApiResult<PreparedRequest> prepareChat(const ChatRequest &request,
                                       const ServedModel &model) {
  if (!model.chatTemplate)
    return invalidRequest(
        "this model has no chat template (tokenizer_config.json "
        "chat_template); use /v1/completions or --chat-template",
        "messages", "no_chat_template");
  PreparedRequest prepared;
  applyCommon(prepared, request.sampling, request.stop, model);
  prepared.logprobs = request.logprobs;
  prepared.topLogprobs = request.topLogprobs;
  prepared.generation.sampling.numAlternatives =
      request.logprobs ? request.topLogprobs : 0;

  json messages = request.messages;
  if (request.jsonObject) {
    const char *instruction = "Respond with one JSON object and nothing else.";
    if (!messages.empty() && messages[0]["role"] == "system" &&
        messages[0]["content"].is_string())
      messages[0]["content"] =
          messages[0]["content"].get<std::string>() + "\n\n" + instruction;
    else
      messages.insert(messages.begin(),
                      json{{"role", "system"}, {"content", instruction}});
  }
  ChatTemplateOptions options;
  options.extra = request.templateKwargs;
  bool toolsOffered =
      !request.tools.is_null() && request.toolChoice != ToolChoiceMode::None;
  if (toolsOffered)
    options.tools = request.tools;
  absl::StatusOr<std::string> rendered =
      model.chatTemplate->render(messages, options);
  if (!rendered.ok())
    return invalidRequest(
        absl::StrCat("the chat template failed on these messages: ",
                     rendered.status().message()),
        "messages", "template_error");
  std::string prompt = *rendered;

  prepared.parseToolCalls = toolsOffered;
  bool forced =
      toolsOffered && (request.toolChoice == ToolChoiceMode::Required ||
                       request.toolChoice == ToolChoiceMode::Function);
  std::string argumentsKey =
      model.toolFormat == ToolCallFormat::Qwen ? "arguments" : "parameters";
  std::string opening = model.toolFormat == ToolCallFormat::Qwen
                            ? "<tool_call>\n{\"name\": \""
                            : "{\"name\": \"";
  if (forced) {
    prepared.forcedToolCall = true;
    prepared.outputSuffix =
        model.toolFormat == ToolCallFormat::Qwen ? "}\n</tool_call>" : "}";
    std::vector<std::unique_ptr<OutputConstraint>> parts;
    if (request.toolChoice == ToolChoiceMode::Function) {
      prepared.forcedToolName = request.toolChoiceName;
      prepared.outputPrefix = absl::StrCat(opening, request.toolChoiceName,
                                           "\", \"", argumentsKey, "\": ");
    } else {
      prepared.outputPrefix = opening;
      std::vector<std::string> names;
      for (const json &tool : request.tools)
        names.push_back(tool["function"]["name"].get<std::string>() + "\"");
      parts.push_back(choiceConstraint(std::move(names)));
      parts.push_back(
          literalConstraint(absl::StrCat(", \"", argumentsKey, "\": ")));
    }
    parts.push_back(jsonObjectConstraint());
    prepared.constraint = sequenceConstraint(std::move(parts));
  } else if (request.jsonObject) {
    prepared.constraint = jsonObjectConstraint();
  }
  prepared.generation.constraint = prepared.constraint.get();
  prompt += prepared.outputPrefix;

  prepared.generation.promptIds = encodeRendered(*model.tokenizer, prompt);
  size_t promptTokens = prepared.generation.promptIds.size();
  if (promptTokens == 0)
    return invalidRequest("the rendered prompt has no tokens", "messages");
  if (int64_t(promptTokens) >= model.maxSeq)
    return contextExceeded(promptTokens, model.maxSeq);
  prepared.generation.maxTokens =
      request.maxTokens.value_or(model.maxSeq - int64_t(promptTokens));
  return prepared;
}

ApiResult<PreparedRequest> prepareCompletion(const CompletionRequest &request,
                                             const ServedModel &model) {
  PreparedRequest prepared;
  applyCommon(prepared, request.sampling, request.stop, model);
  prepared.logprobs = request.logprobs.has_value();
  prepared.topLogprobs = request.logprobs.value_or(0);
  prepared.generation.sampling.numAlternatives = prepared.topLogprobs;
  if (!request.promptIds.empty()) {
    prepared.generation.promptIds = request.promptIds;
    int64_t vocab = model.tokenizer->vocabSize();
    for (int32_t id : request.promptIds)
      if (id >= vocab)
        return invalidRequest(absl::StrCat("'prompt' token id ", id,
                                           " is outside the vocabulary (",
                                           vocab, ")"),
                              "prompt");
  } else {
    prepared.generation.promptIds = model.tokenizer->encode(request.prompt);
  }
  size_t promptTokens = prepared.generation.promptIds.size();
  if (promptTokens == 0)
    return invalidRequest("the prompt has no tokens", "prompt");
  if (int64_t(promptTokens) >= model.maxSeq) {
    ApiError error = contextExceeded(promptTokens, model.maxSeq);
    error.param = "prompt";
    return error;
  }
  prepared.generation.maxTokens = request.maxTokens;
  return prepared;
}

//===----------------------------------------------------------------------===//
// Responses
//===----------------------------------------------------------------------===//

ToolCallFormat servedToolCallFormat(std::string_view templateSource) {
  ToolCallFormat format = detectToolCallFormat(templateSource);
  return format == ToolCallFormat::None ? ToolCallFormat::Qwen : format;
}

ResponseIdentity newIdentity(std::string_view prefix, std::string model) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  uint64_t n = counter.fetch_add(1) ^ (salt << 20);
  ResponseIdentity identity;
  identity.id =
      absl::StrCat(std::string(prefix), "-", absl::Hex(n, absl::kZeroPad16));
  identity.created = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  identity.model = std::move(model);
  return identity;
}

namespace {

/// A prefix for this response's tool-call ids ("call_<16 hex>_").
std::string newToolCallPrefix() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  return absl::StrCat(
      "call_",
      absl::Hex((counter.fetch_add(1) + 1) * 0x9E3779B97F4A7C15ull ^ salt,
                absl::kZeroPad16),
      "_");
}

} // namespace

ParsedOutput parseOutput(const PreparedRequest &prepared,
                         const std::string &text, ToolCallFormat format) {
  ParsedOutput output;
  if (!prepared.parseToolCalls) {
    output.content = text;
    return output;
  }
  ParsedToolCalls parsed = parseToolCalls(text, format, newToolCallPrefix());
  output.toolCalls = std::move(parsed.toolCalls);
  if (output.toolCalls.empty())
    output.content = text;
  else if (!parsed.content.empty())
    output.content = std::move(parsed.content);
  return output;
}

std::string finishReasonOf(const GenerationResult &result,
                           const ParsedOutput &output) {
  if (!output.toolCalls.empty())
    return "tool_calls";
  switch (result.finishReason) {
  case FinishReason::Length:
  case FinishReason::Context:
    return "length";
  default:
    return "stop";
  }
}

json usageJson(const GenerationResult &result) {
  int64_t prompt = result.awareness.timing.promptTokens;
  int64_t completion = int64_t(result.tokens.size());
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details",
           {{"cached_tokens", result.awareness.timing.cachedPromptTokens}}}};
}

namespace {

json bytesArray(const std::string &bytes) {
  json array = json::array();
  for (unsigned char c : bytes)
    array.push_back(int(c));
  return array;
}

json finiteOrNull(float value) {
  return std::isfinite(value) ? json(value) : json(-9999.0);
}

} // namespace

json chatLogprobs(absl::Span<const GeneratedToken> tokens, int topLogprobs,
                  const TokenBytesFn &tokenBytes) {
  json content = json::array();
  for (const GeneratedToken &token : tokens) {
    std::string bytes = tokenBytes(token.id);
    json top = json::array();
    for (int i = 0; i < topLogprobs && i < int(token.alternatives.size());
         ++i) {
      std::string altBytes = tokenBytes(token.alternatives[i].token);
      top.push_back({{"token", altBytes},
                     {"logprob", finiteOrNull(token.alternatives[i].logprob)},
                     {"bytes", bytesArray(altBytes)}});
    }
    content.push_back({{"token", bytes},
                       {"logprob", finiteOrNull(token.logprob)},
                       {"bytes", bytesArray(bytes)},
                       {"top_logprobs", std::move(top)}});
  }
  return content;
}

namespace {

json toolCallsWithIndex(const json &calls) {
  json array = json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    json call = calls[i];
    call["index"] = i;
    array.push_back(std::move(call));
  }
  return array;
}

/// Completions-style logprobs: parallel arrays over the tokens.
json completionLogprobs(absl::Span<const GeneratedToken> tokens,
                        int topLogprobs, const TokenBytesFn &tokenBytes,
                        size_t textOffset) {
  json strings = json::array(), logprobs = json::array(), tops = json::array(),
       offsets = json::array();
  for (const GeneratedToken &token : tokens) {
    std::string bytes = tokenBytes(token.id);
    strings.push_back(bytes);
    logprobs.push_back(finiteOrNull(token.logprob));
    json top = json::object();
    for (int i = 0; i < topLogprobs && i < int(token.alternatives.size()); ++i)
      top[tokenBytes(token.alternatives[i].token)] =
          finiteOrNull(token.alternatives[i].logprob);
    tops.push_back(std::move(top));
    offsets.push_back(textOffset);
    textOffset += bytes.size();
  }
  return {{"tokens", strings},
          {"token_logprobs", logprobs},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

/// What every response and stream chunk carries around its one choice.
json responseEnvelope(const ResponseIdentity &identity, const char *object,
                      json choice) {
  return {{"id", identity.id},
          {"object", object},
          {"created", identity.created},
          {"model", identity.model},
          {"system_fingerprint", "treni"},
          {"choices", json::array({std::move(choice)})}};
}

/// A whole (not streamed) response: the envelope, usage and awareness.
json fullResponse(const ResponseIdentity &identity, const char *object,
                  json choice, const GenerationResult &result) {
  json response = responseEnvelope(identity, object, std::move(choice));
  response["usage"] = usageJson(result);
  response["awareness"] = toJson(result.awareness);
  return response;
}

} // namespace

json buildChatResponse(const ResponseIdentity &identity,
                       const PreparedRequest &prepared,
                       const GenerationResult &result,
                       const ParsedOutput &output,
                       const TokenBytesFn &tokenBytes) {
  json message = {
      {"role", "assistant"},
      {"content", output.content ? json(*output.content) : json(nullptr)}};
  if (!output.toolCalls.empty())
    message["tool_calls"] = output.toolCalls;
  json choice = {{"index", 0},
                 {"message", std::move(message)},
                 {"logprobs", nullptr},
                 {"finish_reason", finishReasonOf(result, output)}};
  if (prepared.logprobs)
    choice["logprobs"] = {
        {"content",
         chatLogprobs(result.tokens, prepared.topLogprobs, tokenBytes)}};
  return fullResponse(identity, "chat.completion", std::move(choice), result);
}

json buildCompletionResponse(const ResponseIdentity &identity,
                             const PreparedRequest &prepared,
                             const GenerationResult &result,
                             const TokenBytesFn &tokenBytes) {
  ParsedOutput none;
  json choice = {{"index", 0},
                 {"text", result.text},
                 {"logprobs", nullptr},
                 {"finish_reason", finishReasonOf(result, none)}};
  if (prepared.logprobs)
    choice["logprobs"] =
        completionLogprobs(result.tokens, prepared.topLogprobs, tokenBytes, 0);
  return fullResponse(identity, "text_completion", std::move(choice), result);
}

//===----------------------------------------------------------------------===//
// Streaming
//===----------------------------------------------------------------------===//

StreamEncoder::StreamEncoder(Kind kind, ResponseIdentity identity,
                             const PreparedRequest &prepared,
                             ToolCallFormat toolFormat, bool includeUsage,
                             TokenBytesFn tokenBytes)
    : kind_(kind), identity_(std::move(identity)), prepared_(prepared),
      toolFormat_(toolFormat), includeUsage_(includeUsage),
      tokenBytes_(std::move(tokenBytes)),
      toolCalls_(kind == Kind::Chat && prepared.parseToolCalls),
      buffering_(kind == Kind::Chat && prepared.forcedToolCall) {}

json StreamEncoder::chunk(json choice) const {
  return responseEnvelope(identity_,
                          kind_ == Kind::Chat ? "chat.completion.chunk"
                                              : "text_completion",
                          std::move(choice));
}

std::vector<std::string> StreamEncoder::start() {
  if (kind_ != Kind::Chat)
    return {};
  return {sseEvent(chunk({{"index", 0},
                          {"delta", {{"role", "assistant"}, {"content", ""}}},
                          {"logprobs", nullptr},
                          {"finish_reason", nullptr}}))};
}

std::vector<std::string>
StreamEncoder::delta(std::string_view text,
                     absl::Span<const GeneratedToken> tokens) {
  if (toolCalls_) {
    // Content is sent as soon as it cannot be part of a tool call.
    generated_ += text;
    bufferedTokens_.insert(bufferedTokens_.end(), tokens.begin(), tokens.end());
    if (buffering_)
      return {};
    size_t streamable = streamableContentLength(generated_, toolFormat_);
    if (streamable <= sent_)
      return {};
    std::string content = generated_.substr(sent_, streamable - sent_);
    sent_ = streamable;
    std::vector<GeneratedToken> released;
    released.swap(bufferedTokens_);
    return delta(content, released, /*raw=*/true);
  }
  return delta(text, tokens, /*raw=*/true);
}

std::vector<std::string>
StreamEncoder::delta(std::string_view text,
                     absl::Span<const GeneratedToken> tokens, bool) {
  if (text.empty() && tokens.empty())
    return {};
  if (kind_ == Kind::Chat) {
    json choice = {{"index", 0},
                   {"delta", {{"content", std::string(text)}}},
                   {"logprobs", nullptr},
                   {"finish_reason", nullptr}};
    if (prepared_.logprobs)
      choice["logprobs"] = {
          {"content",
           chatLogprobs(tokens, prepared_.topLogprobs, tokenBytes_)}};
    return {sseEvent(chunk(std::move(choice)))};
  }
  json choice = {{"index", 0},
                 {"text", std::string(text)},
                 {"logprobs", nullptr},
                 {"finish_reason", nullptr}};
  if (prepared_.logprobs)
    choice["logprobs"] =
        completionLogprobs(tokens, prepared_.topLogprobs, tokenBytes_, 0);
  return {sseEvent(chunk(std::move(choice)))};
}

std::vector<std::string> StreamEncoder::finish(const GenerationResult &result) {
  std::vector<std::string> events;
  ParsedOutput output;
  if (toolCalls_) {
    std::string full =
        prepared_.outputPrefix + result.text + prepared_.outputSuffix;
    output = parseOutput(prepared_, full, toolFormat_);
    // What is left of the content after what was streamed.
    std::string rest;
    std::string content = output.content.value_or("");
    std::string sentText = generated_.substr(0, sent_);
    if (content.compare(0, sentText.size(), sentText) == 0)
      rest = content.substr(sentText.size());
    json delta = json::object();
    if (!rest.empty())
      delta["content"] = rest;
    if (!output.toolCalls.empty())
      delta["tool_calls"] = toolCallsWithIndex(output.toolCalls);
    if (!delta.empty() || !bufferedTokens_.empty()) {
      json choice = {{"index", 0},
                     {"delta", std::move(delta)},
                     {"logprobs", nullptr},
                     {"finish_reason", nullptr}};
      if (prepared_.logprobs)
        choice["logprobs"] = {
            {"content", chatLogprobs(bufferedTokens_, prepared_.topLogprobs,
                                     tokenBytes_)}};
      events.push_back(sseEvent(chunk(std::move(choice))));
    }
  }
  json last = {{"index", 0},
               {"logprobs", nullptr},
               {"finish_reason", finishReasonOf(result, output)}};
  if (kind_ == Kind::Chat)
    last["delta"] = json::object();
  else
    last["text"] = "";
  json finishChunk = chunk(std::move(last));
  finishChunk["awareness"] = toJson(result.awareness);
  events.push_back(sseEvent(finishChunk));
  if (includeUsage_) {
    json usage = chunk(nullptr);
    usage["choices"] = json::array();
    usage["usage"] = usageJson(result);
    usage["awareness"] = toJson(result.awareness);
    events.push_back(sseEvent(usage));
  }
  events.push_back("data: [DONE]\n\n");
  return events;
}

} // namespace treni
