//===- openai_api.cpp - OpenAI request parsing and chat preparation ------===//
//
// Request bodies are read as nlohmann::ordered_json, so the chat template
// sees tools, their parameters and tool-call arguments with their keys in the
// client's order, as transformers' apply_chat_template does. Responses are
// built in openai_response.cpp.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/openai_api.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "support/json.h"
#include "support/json_bounded.h"
#include "support/utf8.h"

namespace treni {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

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

const char *typeName(const ojson &value) {
  switch (value.type()) {
  case ojson::value_t::null:
    return "null";
  case ojson::value_t::boolean:
    return "a boolean";
  case ojson::value_t::number_integer:
  case ojson::value_t::number_unsigned:
    return "an integer";
  case ojson::value_t::number_float:
    return "a number";
  case ojson::value_t::string:
    return "a string";
  case ojson::value_t::array:
    return "an array";
  case ojson::value_t::object:
    return "an object";
  default:
    return "an unsupported value";
  }
}

ApiError wrongType(const std::string &param, const char *expected,
                   const ojson &value) {
  return invalidRequest(absl::StrCat("'", param, "' must be ", expected,
                                     ", not ", typeName(value)),
                        param, "invalid_type");
}

/// "'param'", or "the request body" for the empty param.
std::string quotedParam(const std::string &param) {
  return param.empty() ? "the request body" : absl::StrCat("'", param, "'");
}

ApiError tooDeep(const std::string &param) {
  return invalidRequest(absl::StrCat(quotedParam(param), " nests deeper than ",
                                     kMaxJsonDepth,
                                     " levels of arrays and objects"),
                        param);
}

/// `read()`, or `fallback()` if an exception escapes it: the last resort
/// for one that nothing in `read` foresaw (a bug, as every bad input has an
/// error of its own), which the response must not describe.
template <typename T, typename Read>
ApiResult<T> withoutEscapes(Read read, ApiError (*fallback)()) {
  try {
    return read();
  } catch (...) {
    return fallback();
  }
}

/// The fallback of parsing a request: a 400.
ApiError unexpectedParseError() {
  return invalidRequest("the request could not be read", "",
                        kUnexpectedErrorCode);
}

//===----------------------------------------------------------------------===//
// The body's shape, checked before it is built
//===----------------------------------------------------------------------===//

/// Where a client's own JSON starts below the body, as the steps to it ("*":
/// any array index): tool parameters and tool-call arguments. Each may nest
/// kMaxJsonDepth levels inside itself; so may every other top-level field.
constexpr std::string_view kArgumentsRoot[] = {
    "messages", "*", "tool_calls", "*", "function", "arguments"};
constexpr std::string_view kParametersRoot[] = {"tools", "*", "function",
                                                "parameters"};

/// How deep a body that passed BodyScan can be.
constexpr int kMaxBodyDepth = kMaxJsonDepth + int(std::size(kArgumentsRoot));

/// One step of a path into the body: an object key or an array index.
struct PathStep {
  bool index;
  std::string text; ///< the key, or the index in decimal
};

/// "tools[0].function.parameters" for the first `length` steps.
std::string paramOf(const std::vector<PathStep> &path, size_t length) {
  std::string param;
  for (size_t i = 0; i < length; ++i) {
    if (path[i].index)
      absl::StrAppend(&param, "[", path[i].text, "]");
    else
      absl::StrAppend(&param, i ? "." : "", path[i].text);
  }
  return param;
}

/// How many steps of `path` lead to the root whose depth budget applies:
/// a root of kArgumentsRoot / kParametersRoot, else the top-level field (0
/// in a body that is not an object).
template <size_t N>
bool startsWith(const std::vector<PathStep> &path,
                const std::string_view (&root)[N]) {
  if (path.size() < N)
    return false;
  for (size_t i = 0; i < N; ++i)
    if (root[i] == "*" ? !path[i].index
                       : path[i].index || path[i].text != root[i])
      return false;
  return true;
}
size_t rootLength(const std::vector<PathStep> &path) {
  if (startsWith(path, kArgumentsRoot))
    return std::size(kArgumentsRoot);
  if (startsWith(path, kParametersRoot))
    return std::size(kParametersRoot);
  return path.empty() || path[0].index ? 0 : 1;
}

/// A SAX pass over the body (nlohmann's parser does not recurse; copying,
/// comparing and dumping a built value do) that stops at the first array or
/// object nesting deeper than kMaxJsonDepth inside its root, or at a number
/// too large for a double, and names the field. Syntax errors are left to
/// the parse that follows.
class BodyScan {
public:
  std::optional<ApiError> error;

  bool null() { return scalar(); }
  bool boolean(bool) { return scalar(); }
  bool number_integer(ojson::number_integer_t) { return scalar(); }
  bool number_unsigned(ojson::number_unsigned_t) { return scalar(); }
  bool number_float(ojson::number_float_t, const std::string &) {
    return scalar();
  }
  bool string(std::string &) { return scalar(); }
  bool binary(ojson::binary_t &) { return scalar(); }
  bool key(std::string &name) {
    frames_.back().key = name;
    return true;
  }
  bool start_object(size_t) { return open(/*array=*/false); }
  bool start_array(size_t) { return open(/*array=*/true); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(size_t, const std::string &token,
                   const nlohmann::detail::exception &exception) {
    constexpr int kNumberOverflow = 406; // nlohmann's out_of_range.406
    if (exception.id == kNumberOverflow) {
      std::string param = paramOf(path(), frames_.size());
      error = invalidRequest(absl::StrCat(quotedParam(param),
                                          " is a number too large for a "
                                          "double (",
                                          token, ")"),
                             param);
    }
    return false;
  }

private:
  struct Frame {
    bool array;
    size_t count = 0; ///< elements of an array begun so far
    std::string key;  ///< the current key of an object
  };

  /// The steps to the value being read now (for an array, the element
  /// after the `count` begun).
  std::vector<PathStep> path() const {
    std::vector<PathStep> steps;
    for (size_t i = 0; i < frames_.size(); ++i) {
      const Frame &frame = frames_[i];
      size_t current = i + 1 == frames_.size() ? frame.count : frame.count - 1;
      steps.push_back(frame.array ? PathStep{true, std::to_string(current)}
                                  : PathStep{false, frame.key});
    }
    return steps;
  }
  bool scalar() {
    if (!frames_.empty() && frames_.back().array)
      ++frames_.back().count;
    return true;
  }
  bool open(bool array) {
    // Within the body, every root is at least one step down.
    int depth = int(frames_.size()) + 1;
    if (depth > kMaxJsonDepth + 1) {
      std::vector<PathStep> steps = path();
      size_t root = rootLength(steps);
      if (depth - int(root) > kMaxJsonDepth) {
        error = tooDeep(paramOf(steps, root));
        return false;
      }
    }
    scalar();
    frames_.push_back({array});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }

  std::vector<Frame> frames_;
};

/// Parses the body into an object, or the error.
std::variant<ojson, ApiError> parseBody(std::string_view body) {
  if (body.empty())
    return invalidRequest("the request body is empty; expected a JSON object",
                          "", "invalid_json");
  if (size_t at = utf8::firstInvalid(body); at != std::string_view::npos)
    return invalidRequest(
        absl::StrCat("the request body is not valid UTF-8 (byte ", at, ")"), "",
        "invalid_utf8");
  BodyScan scan;
  (void)ojson::sax_parse(body, &scan);
  if (scan.error)
    return *scan.error;
  absl::StatusOr<ojson> value = parseOrderedJsonBounded(body, kMaxBodyDepth);
  if (!value.ok())
    return invalidRequest(absl::StrCat("the request body is not valid JSON: ",
                                       value.status().message()),
                          "", "invalid_json");
  if (!value->is_object())
    return invalidRequest(
        absl::StrCat("the request body must be a JSON object, not ",
                     typeName(*value)),
        "", "invalid_json");
  return std::move(*value);
}

/// Reads optional fields of one JSON object; the first problem sticks.
class FieldReader {
public:
  explicit FieldReader(const ojson &object) : object_(object) {}
  std::optional<ApiError> error;

  const ojson *get(const std::string &name) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null())
      return nullptr;
    return &*it;
  }
  std::optional<double> number(const std::string &name, double low,
                               double high) {
    const ojson *value = get(name);
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
    const ojson *value = get(name);
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
    const ojson *value = get(name);
    if (!value || error)
      return std::nullopt;
    if (!value->is_boolean())
      return fail(wrongType(name, "a boolean", *value));
    return value->get<bool>();
  }

  std::nullopt_t fail(ApiError e) {
    if (!error)
      error = std::move(e);
    return std::nullopt;
  }

private:
  const ojson &object_;
};

/// A seed for requests that give none: different per request.
uint64_t freshSeed() {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  return counter.fetch_add(0x9E3779B97F4A7C15ull);
}

/// `model`, sampling, stop, stream and stream_options: shared by both
/// endpoints, read into the fields of the same names of a ChatRequest or a
/// CompletionRequest.
/// `model`: required, a string, one the server serves (404 otherwise).
std::optional<ApiError> readModel(FieldReader &reader, const ApiLimits &limits,
                                  std::string &out) {
  const ojson *model = reader.get("model");
  if (!model)
    return invalidRequest("'model' is required", "model",
                          "missing_required_parameter");
  if (!model->is_string())
    return wrongType("model", "a string", *model);
  out = model->get<std::string>();
  if (!limits.modelNames.empty() &&
      std::find(limits.modelNames.begin(), limits.modelNames.end(), out) ==
          limits.modelNames.end()) {
    ApiError error = invalidRequest(
        absl::StrCat("the model '", out,
                     "' does not exist; this server serves '",
                     absl::StrJoin(limits.modelNames, "', '"), "'"),
        "model", "model_not_found");
    error.status = 404;
    return error;
  }
  return std::nullopt;
}

template <typename Request>
std::optional<ApiError> readCommon(FieldReader &reader, const ApiLimits &limits,
                                   Request &out) {
  if (auto error = readModel(reader, limits, out.model))
    return error;
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
  if (const ojson *stop = reader.get("stop")) {
    if (stop->is_string()) {
      out.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const ojson &item : *stop) {
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
  out.ignoreEos = reader.boolean("ignore_eos").value_or(false);
  if (const ojson *options = reader.get("stream_options")) {
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
std::variant<ojson, ApiError> messageContent(const ojson &content,
                                             const std::string &param) {
  if (content.is_null() || content.is_string())
    return content;
  if (!content.is_array())
    return wrongType(param, "a string or an array of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const ojson &part = content[i];
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
  return ojson(text);
}

/// Tool-call arguments given as a JSON string, parsed into the value a chat
/// template expects (the string comes from outside: its depth is bounded
/// like the body's).
std::variant<ojson, ApiError> parseArguments(const std::string &text,
                                             const std::string &param) {
  if (jsonNestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth)
    return tooDeep(param);
  absl::StatusOr<ojson> arguments = parseOrderedJsonBounded(text);
  if (!arguments.ok())
    return invalidRequest(absl::StrCat("'", param, "' is not valid JSON: ",
                                       arguments.status().message()),
                          param);
  return std::move(*arguments);
}

/// The field `name` of `object` when it is a string, else null.
const ojson *stringField(const ojson &object, const char *name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? &*it : nullptr;
}

/// {"type": "function", "function": {"name": string, ...}} at `param` (a
/// tool, a tool call or a named tool_choice): the function object, or an
/// error naming the first field that is wrong.
std::variant<const ojson *, ApiError>
functionOf(const ojson &value, const std::string &param, bool typeRequired) {
  if (!value.is_object())
    return wrongType(param, "an object", value);
  auto type = value.find("type");
  if (type != value.end() && !type->is_string())
    return wrongType(param + ".type", "\"function\"", *type);
  if (type == value.end() ? typeRequired : *type != "function")
    return invalidRequest(
        absl::StrCat("'", param, ".type' must be \"function\""),
        param + ".type", "unsupported_value");
  auto function = value.find("function");
  if (function == value.end() || !function->is_object())
    return invalidRequest(absl::StrCat("'", param,
                                       ".function' must be an "
                                       "object with a string \"name\""),
                          param + ".function", "invalid_type");
  if (!stringField(*function, "name"))
    return invalidRequest(
        absl::StrCat("'", param, ".function.name' must be a string"),
        param + ".function.name", "invalid_type");
  return &*function;
}

/// The tool calls of an assistant message, with arguments given as a string
/// parsed into a value.
std::variant<ojson, ApiError> normalizeToolCalls(const ojson &calls,
                                                 const std::string &param) {
  ojson outCalls = ojson::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    std::string callParam = absl::StrCat(param, "[", k, "]");
    auto function = functionOf(calls[k], callParam, /*typeRequired=*/false);
    if (auto *error = std::get_if<ApiError>(&function))
      return *error;
    const ojson &call = calls[k];
    const ojson &fields = *std::get<const ojson *>(function);
    std::string argumentsParam = callParam + ".function.arguments";
    ojson arguments = ojson::object();
    if (auto raw = fields.find("arguments"); raw != fields.end()) {
      if (raw->is_string()) {
        auto parsed =
            parseArguments(raw->get_ref<const std::string &>(), argumentsParam);
        if (auto *error = std::get_if<ApiError>(&parsed))
          return *error;
        arguments = std::move(std::get<ojson>(parsed));
      } else if (raw->is_object()) {
        arguments = *raw;
      } else if (!raw->is_null()) {
        return wrongType(argumentsParam, "a JSON string", *raw);
      }
    }
    ojson outCall = {
        {"type", "function"},
        {"function",
         {{"name", fields["name"]}, {"arguments", std::move(arguments)}}}};
    if (const ojson *id = stringField(call, "id"))
      outCall["id"] = *id;
    outCalls.push_back(std::move(outCall));
  }
  return outCalls;
}

std::variant<ojson, ApiError> normalizeMessages(const ojson *messages) {
  if (!messages)
    return invalidRequest("'messages' is required", "messages",
                          "missing_required_parameter");
  if (!messages->is_array())
    return wrongType("messages", "an array", *messages);
  if (messages->empty())
    return invalidRequest("'messages' must contain at least one message",
                          "messages", "empty_array");
  ojson normalized = ojson::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const ojson &message = (*messages)[i];
    std::string param = absl::StrCat("messages[", i, "]");
    if (!message.is_object())
      return wrongType(param, "an object", message);
    const ojson *role = stringField(message, "role");
    if (!role)
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
    ojson out = {{"role", roleName}};
    auto content = message.find("content");
    ojson text = nullptr;
    if (content != message.end()) {
      auto converted = messageContent(*content, param + ".content");
      if (auto *error = std::get_if<ApiError>(&converted))
        return *error;
      text = std::move(std::get<ojson>(converted));
    }
    auto calls = message.find("tool_calls");
    bool hasToolCalls = calls != message.end() && !calls->is_null();
    if (text.is_null() && !(roleName == "assistant" && hasToolCalls))
      return invalidRequest(absl::StrCat("'", param, ".content' is required"),
                            param + ".content", "missing_required_parameter");
    out["content"] = std::move(text);
    if (hasToolCalls) {
      if (roleName != "assistant" || !calls->is_array())
        return invalidRequest(
            absl::StrCat("'", param,
                         ".tool_calls' must be an array on an "
                         "assistant message"),
            param + ".tool_calls", "invalid_type");
      auto outCalls = normalizeToolCalls(*calls, param + ".tool_calls");
      if (auto *error = std::get_if<ApiError>(&outCalls))
        return *error;
      out["tool_calls"] = std::move(std::get<ojson>(outCalls));
    }
    for (const char *field : {"tool_call_id", "name"})
      if (const ojson *value = stringField(message, field))
        out[field] = *value;
    normalized.push_back(std::move(out));
  }
  return normalized;
}

/// A tool's function name as OpenAI allows it: 1-64 letters, digits, '_'
/// or '-'.
bool isFunctionName(std::string_view name) {
  return !name.empty() && name.size() <= 64 &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                  c == '_' || c == '-';
         });
}

std::optional<ApiError> readTools(const ojson &body, ChatRequest &out) {
  if (const auto it = body.find("tools"); it != body.end() && !it->is_null()) {
    if (!it->is_array())
      return wrongType("tools", "an array", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      std::string param = absl::StrCat("tools[", i, "]");
      auto function = functionOf((*it)[i], param, /*typeRequired=*/true);
      if (auto *error = std::get_if<ApiError>(&function))
        return *error;
      const ojson &fields = *std::get<const ojson *>(function);
      if (!isFunctionName(fields["name"].get_ref<const std::string &>()))
        return invalidRequest(
            absl::StrCat("'", param,
                         ".function.name' must be 1-64 letters, "
                         "digits, '_' or '-'"),
            param + ".function.name");
      auto parameters = fields.find("parameters");
      if (parameters != fields.end() && !parameters->is_null() &&
          !parameters->is_object())
        return wrongType(param + ".function.parameters", "an object",
                         *parameters);
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
      auto function = functionOf(*it, "tool_choice", /*typeRequired=*/true);
      if (auto *error = std::get_if<ApiError>(&function))
        return *error;
      out.toolChoice = ToolChoiceMode::Function;
      out.toolChoiceName =
          (*std::get<const ojson *>(function))["name"].get<std::string>();
    } else {
      return wrongType("tool_choice", "a string or an object", *it);
    }
    if ((out.toolChoice == ToolChoiceMode::Required ||
         out.toolChoice == ToolChoiceMode::Function) &&
        out.tools.is_null())
      return invalidRequest("'tool_choice' requires 'tools'", "tool_choice");
    if (out.toolChoice == ToolChoiceMode::Function) {
      bool declared = false;
      for (const ojson &tool : out.tools)
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

ApiResult<ChatRequest> readChatRequest(std::string_view text,
                                       const ApiLimits &limits) {
  auto parsed = parseBody(text);
  if (auto *error = std::get_if<ApiError>(&parsed))
    return *error;
  const ojson &body = std::get<ojson>(parsed);
  FieldReader reader(body);
  ChatRequest out;
  if (auto error = readCommon(reader, limits, out))
    return *error;

  auto messages = normalizeMessages(reader.get("messages"));
  if (auto *error = std::get_if<ApiError>(&messages))
    return *error;
  out.messages = std::move(std::get<ojson>(messages));

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
  if (const ojson *kwargs = reader.get("chat_template_kwargs")) {
    if (!kwargs->is_object())
      return wrongType("chat_template_kwargs", "an object", *kwargs);
    for (const char *reserved :
         {"messages", "tools", "documents", "add_generation_prompt"})
      if (kwargs->contains(reserved))
        return invalidRequest(
            absl::StrCat("'chat_template_kwargs' may not set '", reserved, "'"),
            "chat_template_kwargs");
    out.templateKwargs = *kwargs;
  }
  if (const ojson *format = reader.get("response_format")) {
    const ojson *type =
        format->is_object() ? stringField(*format, "type") : nullptr;
    if (!type)
      return invalidRequest("'response_format' must be {\"type\": \"text\"} or "
                            "{\"type\": \"json_object\"}",
                            "response_format", "invalid_type");
    if (*type == "json_object")
      out.jsonObject = true;
    else if (*type != "text")
      return invalidRequest(absl::StrCat("response_format type '",
                                         type->get<std::string>(),
                                         "' is not supported; use 'text' or "
                                         "'json_object'"),
                            "response_format.type", "unsupported_value");
  }
  return out;
}

ApiResult<CompletionRequest> readCompletionRequest(std::string_view text,
                                                   const ApiLimits &limits) {
  auto parsed = parseBody(text);
  if (auto *error = std::get_if<ApiError>(&parsed))
    return *error;
  const ojson &body = std::get<ojson>(parsed);
  FieldReader reader(body);
  CompletionRequest out;
  if (auto error = readCommon(reader, limits, out))
    return *error;

  const ojson *prompt = reader.get("prompt");
  if (!prompt)
    return invalidRequest("'prompt' is required", "prompt",
                          "missing_required_parameter");
  const ojson *single = prompt;
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string())
    single = &(*prompt)[0];
  if (single->is_string()) {
    out.prompt = single->get<std::string>();
    if (out.prompt.empty())
      return invalidRequest("'prompt' must not be empty", "prompt");
  } else if (prompt->is_array() && !prompt->empty() &&
             std::all_of(prompt->begin(), prompt->end(), [](const ojson &v) {
               return v.is_number_integer();
             })) {
    for (const ojson &id : *prompt) {
      // An unsigned id past INT64_MAX would wrap to a negative one.
      if (id.is_number_unsigned() && id.get<uint64_t>() > uint64_t(INT32_MAX))
        return invalidRequest(absl::StrCat("'prompt' token id ",
                                           id.get<uint64_t>(), " is invalid"),
                              "prompt");
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

/// Token ids of one token-array input (`what` names it in errors).
std::optional<ApiError> readTokenIds(const ojson &array,
                                     const std::string &what,
                                     std::vector<int32_t> &out) {
  if (array.empty())
    return invalidRequest(absl::StrCat(what, " must not be empty"), "input");
  for (const ojson &id : array) {
    if (!id.is_number_integer())
      return invalidRequest(absl::StrCat(what, " must hold token ids"), "input",
                            "invalid_type");
    if ((id.is_number_unsigned() && id.get<uint64_t>() > uint64_t(INT32_MAX)) ||
        (!id.is_number_unsigned() &&
         (id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)))
      return invalidRequest(absl::StrCat(what, " holds an invalid token id"),
                            "input");
    out.push_back(int32_t(id.get<int64_t>()));
  }
  return std::nullopt;
}

ApiResult<EmbeddingsRequest> readEmbeddingsRequest(std::string_view text,
                                                   const ApiLimits &limits) {
  auto parsed = parseBody(text);
  if (auto *error = std::get_if<ApiError>(&parsed))
    return *error;
  const ojson &body = std::get<ojson>(parsed);
  FieldReader reader(body);
  EmbeddingsRequest out;
  if (auto error = readModel(reader, limits, out.model))
    return *error;
  const ojson *input = reader.get("input");
  if (!input)
    return invalidRequest("'input' is required", "input",
                          "missing_required_parameter");
  const char *kInputTypes =
      "'input' must be a string, an array of strings, an array of token ids "
      "or an array of arrays of token ids";
  if (input->is_string()) {
    if (input->get_ref<const std::string &>().empty())
      return invalidRequest("'input' must not be empty", "input");
    out.texts.push_back(input->get<std::string>());
  } else if (!input->is_array() || input->empty()) {
    return input->is_array()
               ? invalidRequest("'input' must not be an empty array", "input")
               : invalidRequest(kInputTypes, "input", "invalid_type");
  } else if (int64_t(input->size()) > kMaxEmbeddingInputs) {
    return invalidRequest(absl::StrCat("'input' holds ", input->size(),
                                       " inputs; at most ", kMaxEmbeddingInputs,
                                       " per request"),
                          "input");
  } else if ((*input)[0].is_number_integer()) {
    out.tokenInputs.emplace_back();
    if (auto error = readTokenIds(*input, "'input'", out.tokenInputs.back()))
      return *error;
  } else if ((*input)[0].is_string()) {
    for (size_t i = 0; i < input->size(); ++i) {
      const ojson &item = (*input)[i];
      if (!item.is_string())
        return invalidRequest(kInputTypes, "input", "invalid_type");
      if (item.get_ref<const std::string &>().empty())
        return invalidRequest(
            absl::StrCat("'input[", i, "]' must not be empty"), "input");
      out.texts.push_back(item.get<std::string>());
    }
  } else if ((*input)[0].is_array()) {
    for (size_t i = 0; i < input->size(); ++i) {
      const ojson &item = (*input)[i];
      if (!item.is_array())
        return invalidRequest(kInputTypes, "input", "invalid_type");
      out.tokenInputs.emplace_back();
      if (auto error = readTokenIds(item, absl::StrCat("'input[", i, "]'"),
                                    out.tokenInputs.back()))
        return *error;
    }
  } else {
    return invalidRequest(kInputTypes, "input", "invalid_type");
  }
  if (const ojson *format = reader.get("encoding_format")) {
    if (!format->is_string() || (*format != "float" && *format != "base64"))
      return invalidRequest("'encoding_format' must be \"float\" or "
                            "\"base64\"",
                            "encoding_format");
    out.base64 = *format == "base64";
  }
  out.dimensions = reader.integer("dimensions", 1, 1 << 20).value_or(0);
  if (const ojson *user = reader.get("user"); user && !user->is_string())
    return wrongType("user", "a string", *user);
  if (reader.error)
    return *reader.error;
  return out;
}

ApiResult<RerankRequest> readRerankRequest(std::string_view text,
                                           const ApiLimits &limits) {
  auto parsed = parseBody(text);
  if (auto *error = std::get_if<ApiError>(&parsed))
    return *error;
  const ojson &body = std::get<ojson>(parsed);
  FieldReader reader(body);
  RerankRequest out;
  if (auto error = readModel(reader, limits, out.model))
    return *error;
  const ojson *query = reader.get("query");
  if (!query)
    return invalidRequest("'query' is required", "query",
                          "missing_required_parameter");
  if (!query->is_string())
    return wrongType("query", "a string", *query);
  out.query = query->get<std::string>();
  if (out.query.empty())
    return invalidRequest("'query' must not be empty", "query");
  const ojson *documents = reader.get("documents");
  if (!documents)
    return invalidRequest("'documents' is required", "documents",
                          "missing_required_parameter");
  if (!documents->is_array())
    return wrongType("documents", "an array", *documents);
  if (documents->empty())
    return invalidRequest("'documents' must not be empty", "documents");
  if (int64_t(documents->size()) > kMaxRerankDocuments)
    return invalidRequest(absl::StrCat("'documents' holds ", documents->size(),
                                       " documents; at most ",
                                       kMaxRerankDocuments, " per request"),
                          "documents");
  for (size_t i = 0; i < documents->size(); ++i) {
    const ojson &item = (*documents)[i];
    const ojson *text = &item;
    if (item.is_object()) {
      auto it = item.find("text");
      text = it == item.end() ? nullptr : &*it;
    }
    if (!text || !text->is_string())
      return invalidRequest(absl::StrCat("'documents[", i,
                                         "]' must be a string or an object "
                                         "with a \"text\" string"),
                            "documents", "invalid_type");
    out.documents.push_back(text->get<std::string>());
  }
  out.topN = reader.integer("top_n", 1, kMaxRerankDocuments).value_or(0);
  out.returnDocuments = reader.boolean("return_documents").value_or(true);
  if (const ojson *instruction = reader.get("instruction")) {
    if (!instruction->is_string())
      return wrongType("instruction", "a string", *instruction);
    out.instruction = instruction->get<std::string>();
  }
  if (reader.error)
    return *reader.error;
  return out;
}

} // namespace

namespace {

/// SAX events of a body until its top-level "model" value: stops there (or
/// at the first event that shows there is none to find).
class ModelFinder : public nlohmann::json_sax<json> {
public:
  std::optional<std::string> model;

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t, const string_t &) override {
    return scalar();
  }
  bool string(string_t &value) override {
    if (depth_ == 1 && atModel_) {
      model = value;
      return false;
    }
    return scalar();
  }
  bool binary(binary_t &) override { return scalar(); }
  bool start_object(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override {
    // A top-level array is no request; an array as model's value is no name.
    return depth_ > 0 && !(depth_ == 1 && atModel_) && open();
  }
  bool end_array() override { return close(); }
  bool key(string_t &value) override {
    atModel_ = depth_ == 1 && value == "model";
    return true;
  }
  bool parse_error(std::size_t, const std::string &,
                   const nlohmann::detail::exception &) override {
    return false;
  }

private:
  bool scalar() { return depth_ > 0 && !(depth_ == 1 && atModel_); }
  bool open() {
    if (depth_ == 1 && atModel_)
      return false;
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return depth_ > 0; // the top-level object ended without a model
  }
  int depth_ = 0;
  bool atModel_ = false;
};

} // namespace

std::optional<std::string> requestedModel(std::string_view body) {
  ModelFinder finder;
  try {
    json::sax_parse(body.begin(), body.end(), &finder);
  } catch (const std::exception &) {
    return std::nullopt;
  }
  return finder.model;
}

ApiResult<RerankRequest> parseRerankRequest(std::string_view body,
                                            const ApiLimits &limits) {
  return withoutEscapes<RerankRequest>(
      [&] { return readRerankRequest(body, limits); }, unexpectedParseError);
}

nlohmann::json buildRerankResponse(const RerankRequest &request,
                                   absl::Span<const double> scores,
                                   int64_t tokens) {
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  if (request.topN > 0 && size_t(request.topN) < order.size())
    order.resize(size_t(request.topN));
  nlohmann::json results = nlohmann::json::array();
  for (size_t i : order) {
    nlohmann::json result = {{"index", int64_t(i)},
                             {"relevance_score", scores[i]}};
    if (request.returnDocuments && i < request.documents.size())
      result["document"] = {{"text", request.documents[i]}};
    results.push_back(std::move(result));
  }
  return {{"id", newIdentity("rerank", request.model).id},
          {"model", request.model},
          {"results", std::move(results)},
          {"usage", {{"total_tokens", tokens}}}};
}

ApiResult<EmbeddingsRequest> parseEmbeddingsRequest(std::string_view body,
                                                    const ApiLimits &limits) {
  return withoutEscapes<EmbeddingsRequest>(
      [&] { return readEmbeddingsRequest(body, limits); },
      unexpectedParseError);
}

nlohmann::json
buildEmbeddingsResponse(const std::string &model,
                        absl::Span<const std::vector<float>> vectors,
                        bool base64, int64_t promptTokens) {
  nlohmann::json data = nlohmann::json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    nlohmann::json embedding;
    if (base64) {
      std::string bytes(vectors[i].size() * sizeof(float), '\0');
      for (size_t v = 0; v < vectors[i].size(); ++v) {
        uint32_t bits;
        std::memcpy(&bits, &vectors[i][v], sizeof(bits));
        for (int b = 0; b < 4; ++b) // little-endian, whatever the host
          bytes[v * 4 + b] = char((bits >> (8 * b)) & 0xff);
      }
      embedding = absl::Base64Escape(bytes);
    } else {
      embedding = vectors[i];
    }
    data.push_back({{"object", "embedding"},
                    {"index", int64_t(i)},
                    {"embedding", std::move(embedding)}});
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage",
           {{"prompt_tokens", promptTokens}, {"total_tokens", promptTokens}}}};
}

ApiResult<ChatRequest> parseChatRequest(std::string_view body,
                                        const ApiLimits &limits) {
  return withoutEscapes<ChatRequest>(
      [&] { return readChatRequest(body, limits); }, unexpectedParseError);
}

ApiResult<CompletionRequest> parseCompletionRequest(std::string_view body,
                                                    const ApiLimits &limits) {
  return withoutEscapes<CompletionRequest>(
      [&] { return readCompletionRequest(body, limits); },
      unexpectedParseError);
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

template <typename Request>
void applyCommon(PreparedRequest &prepared, const Request &request,
                 const ServedModel &model) {
  prepared.generation.sampling = request.sampling;
  prepared.generation.stop = request.stop;
  prepared.generation.ignoreEos = request.ignoreEos;
  prepared.generation.lowConfidenceThreshold = model.lowConfidenceThreshold;
}

ApiResult<PreparedRequest> buildChat(const ChatRequest &request,
                                     const ServedModel &model) {
  if (!model.chatTemplate)
    return invalidRequest(
        "this model has no chat template (tokenizer_config.json "
        "chat_template); use /v1/completions or --chat-template",
        "messages", "no_chat_template");
  PreparedRequest prepared;
  applyCommon(prepared, request, model);
  prepared.logprobs = request.logprobs;
  prepared.topLogprobs = request.topLogprobs;
  prepared.generation.sampling.numAlternatives =
      request.logprobs ? request.topLogprobs : 0;

  ojson messages = request.messages;
  if (request.jsonObject) {
    const char *instruction = "Respond with one JSON object and nothing else.";
    if (!messages.empty() && messages[0]["role"] == "system" &&
        messages[0]["content"].is_string())
      messages[0]["content"] =
          messages[0]["content"].get<std::string>() + "\n\n" + instruction;
    else
      messages.insert(messages.begin(),
                      ojson{{"role", "system"}, {"content", instruction}});
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
      for (const ojson &tool : request.tools)
        names.push_back(tool.at("function").at("name").get<std::string>() +
                        "\"");
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

ApiResult<PreparedRequest> buildCompletion(const CompletionRequest &request,
                                           const ServedModel &model) {
  PreparedRequest prepared;
  applyCommon(prepared, request, model);
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

/// The fallback of preparing a request: a 500 (the request was valid).
ApiError unexpectedPrepareError() {
  ApiError error;
  error.status = 500;
  error.message = "the request could not be prepared";
  error.type = "server_error";
  error.code = kUnexpectedErrorCode;
  return error;
}

} // namespace

ApiResult<PreparedRequest> prepareChat(const ChatRequest &request,
                                       const ServedModel &model) {
  return withoutEscapes<PreparedRequest>(
      [&] { return buildChat(request, model); }, unexpectedPrepareError);
}

ApiResult<PreparedRequest> prepareCompletion(const CompletionRequest &request,
                                             const ServedModel &model) {
  return withoutEscapes<PreparedRequest>(
      [&] { return buildCompletion(request, model); }, unexpectedPrepareError);
}

} // namespace treni
