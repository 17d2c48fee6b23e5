//===- openai_api_test.cpp - OpenAI request validation and responses -----===//
//
// Tests that every malformed request is refused with the right status and an
// OpenAI error naming the parameter, that valid requests become the right
// sampling/stop/tool settings, and that responses and stream chunks have the
// shapes OpenAI clients read.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/openai_api.h"

#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "runtime/text/chat_template.h"
#include "runtime/text/tokenizer.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::fixtureDir;

ApiLimits limits() {
  ApiLimits l;
  l.maxSeq = 512;
  l.modelNames = {"qwen2"};
  return l;
}

template <typename T> ApiError errorOf(const ApiResult<T> &result) {
  const ApiError *error = std::get_if<ApiError>(&result);
  EXPECT_NE(error, nullptr) << "expected an error";
  return error ? *error : ApiError{};
}

ApiError chatError(const std::string &body) {
  return errorOf(parseChatRequest(body, limits()));
}
ApiError completionError(const std::string &body) {
  return errorOf(parseCompletionRequest(body, limits()));
}

ChatRequest chatOk(const std::string &body) {
  auto result = parseChatRequest(body, limits());
  if (auto *error = std::get_if<ApiError>(&result)) {
    ADD_FAILURE() << error->message;
    return {};
  }
  return std::get<ChatRequest>(result);
}

/// A chat body with `extra` fields merged in.
json chatJson(json extra = json::object()) {
  json body = {
      {"model", "qwen2"},
      {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  body.update(extra);
  return body;
}
std::string chat(json extra = json::object()) { return chatJson(extra).dump(); }

/// A chat body whose second message is an assistant tool call of `name`
/// with these arguments.
json withToolCall(json arguments, json name = "f") {
  return chatJson(
      {{"messages",
        json::array({{{"role", "user"}, {"content", "hi"}},
                     {{"role", "assistant"},
                      {"content", nullptr},
                      {"tool_calls",
                       json::array({{{"id", "c1"},
                                     {"type", "function"},
                                     {"function",
                                      {{"name", name},
                                       {"arguments", arguments}}}}})}}})}});
}

/// The text of `body` with its "@@" string replaced by `raw` JSON text: what
/// a nlohmann::json cannot hold (1e400) or should not (20,000 levels, which
/// it copies and dumps recursively).
std::string splice(const json &body, const std::string &raw) {
  std::string text = body.dump();
  size_t at = text.find("\"@@\"");
  EXPECT_NE(at, std::string::npos) << text;
  return at == std::string::npos ? text : text.replace(at, 4, raw);
}

std::string nestedArrays(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

/// A tool whose parameters hold "@@" at properties.x (2 levels down).
json toolWithProperty() {
  return {
      {"type", "function"},
      {"function",
       {{"name", "f"},
        {"parameters", {{"type", "object"}, {"properties", {{"x", "@@"}}}}}}}};
}

constexpr const char *kArgumentsParam =
    "messages[1].tool_calls[0].function.arguments";

struct Case {
  std::string body;
  int status;
  std::string param;
  std::string code;
  std::string messagePart;
};

TEST(ChatRequestErrors, EachNamesTheProblem) {
  json weather = {
      {"type", "function"},
      {"function", {{"name", "get_weather"}, {"parameters", json::object()}}}};
  std::vector<Case> cases = {
      {"", 400, "", "invalid_json", "empty"},
      {"{\"model\": ", 400, "", "invalid_json", "not valid JSON"},
      {"[1, 2]", 400, "", "invalid_json", "must be a JSON object"},
      {std::string("{\"model\": \"qwen2\", \"messages\": [{\"role\": \"user\", "
                   "\"content\": \"\xff\"}]}"),
       400, "", "invalid_utf8", "not valid UTF-8"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\\ud800\"}], "
       "\"model\": \"qwen2\"}",
       400, "", "invalid_json", "surrogate"},
      {json{{"messages", json::array({{{"role", "user"}, {"content", "x"}}})}}
           .dump(),
       400, "model", "missing_required_parameter", "'model' is required"},
      {chat({{"model", 7}}), 400, "model", "invalid_type", "must be a string"},
      {chat({{"model", "gpt-4"}}), 404, "model", "model_not_found", "gpt-4"},
      {json{{"model", "qwen2"}}.dump(), 400, "messages",
       "missing_required_parameter", ""},
      {chat({{"messages", "hi"}}), 400, "messages", "invalid_type", "an array"},
      {chat({{"messages", json::array()}}), 400, "messages", "empty_array",
       "at least one"},
      {chat({{"messages", json::array({"hi"})}}), 400, "messages[0]",
       "invalid_type", ""},
      {chat({{"messages", json::array({{{"content", "x"}}})}}), 400,
       "messages[0].role", "invalid_type", ""},
      {chat({{"messages",
              json::array({{{"role", "robot"}, {"content", "x"}}})}}),
       400, "messages[0].role", "invalid_value", "robot"},
      {chat({{"messages", json::array({{{"role", "user"}}})}}), 400,
       "messages[0].content", "missing_required_parameter", ""},
      {chat({{"messages", json::array({{{"role", "user"}, {"content", 5}}})}}),
       400, "messages[0].content", "invalid_type", ""},
      {chat({{"messages",
              json::array(
                  {{{"role", "user"},
                    {"content", json::array({{{"type", "image_url"}}})}}})}}),
       400, "messages[0].content[0].type", "unsupported_value", "image_url"},
      {chat({{"temperature", "hot"}}), 400, "temperature", "invalid_type",
       "a number"},
      {chat({{"temperature", 3}}), 400, "temperature", "invalid_value",
       "between 0 and 2"},
      {chat({{"top_p", 0}}), 400, "top_p", "invalid_value", "greater than 0"},
      {chat({{"top_p", 1.5}}), 400, "top_p", "invalid_value", ""},
      {chat({{"top_k", -5}}), 400, "top_k", "invalid_value", ""},
      {chat({{"top_k", 2.5}}), 400, "top_k", "invalid_type", "an integer"},
      {chat({{"seed", "x"}}), 400, "seed", "invalid_type", ""},
      {chat({{"max_tokens", 0}}), 400, "max_tokens", "invalid_value", ""},
      {chat({{"max_tokens", 1000000000}}), 400, "max_tokens", "invalid_value",
       "--max-seq"},
      {chat({{"max_tokens", -1}}), 400, "max_tokens", "invalid_value", ""},
      {chat({{"max_completion_tokens", 513}}), 400, "max_completion_tokens",
       "invalid_value", ""},
      {chat({{"max_tokens", "10"}}), 400, "max_tokens", "invalid_type", ""},
      {chat({{"stop", 5}}), 400, "stop", "invalid_type", ""},
      {chat({{"stop", json::array({"a", 1})}}), 400, "stop", "invalid_type",
       ""},
      {chat({{"stop", ""}}), 400, "stop", "invalid_value", "empty"},
      {chat({{"stop", json(std::vector<std::string>(17, "x"))}}), 400, "stop",
       "invalid_value", "at most 16"},
      {chat({{"logprobs", "yes"}}), 400, "logprobs", "invalid_type",
       "a boolean"},
      {chat({{"logprobs", true}, {"top_logprobs", 21}}), 400, "top_logprobs",
       "invalid_value", ""},
      {chat({{"top_logprobs", 3}}), 400, "top_logprobs", "invalid_value",
       "logprobs"},
      {chat({{"n", 2}}), 400, "n", "unsupported_value", "n=1"},
      {chat({{"stream", "yes"}}), 400, "stream", "invalid_type", ""},
      {chat({{"ignore_eos", 1}}), 400, "ignore_eos", "invalid_type", ""},
      {chat({{"stream_options", {{"include_usage", true}}}}), 400,
       "stream_options", "invalid_value", "stream"},
      {chat({{"stream", true}, {"stream_options", {{"include_usage", 1}}}}),
       400, "stream_options.include_usage", "invalid_type", ""},
      {chat({{"presence_penalty", 0.5}}), 400, "presence_penalty",
       "unsupported_parameter", ""},
      {chat({{"tools", {{"type", "function"}}}}), 400, "tools", "invalid_type",
       "an array"},
      {chat({{"tools", json::array({{{"type", "code"}}})}}), 400,
       "tools[0].type", "unsupported_value", "\"function\""},
      // nlohmann's value("type", "") throws on a non-string type.
      {chat({{"tools",
              json::array({{{"type", 1}, {"function", {{"name", "f"}}}}})}}),
       400, "tools[0].type", "invalid_type", "not an integer"},
      {chat({{"tools",
              json::array({{{"type", "function"}, {"function", "f"}}})}}),
       400, "tools[0].function", "invalid_type", ""},
      {chat({{"tools", json::array({weather})},
             {"tool_choice", {{"type", 5}, {"function", {{"name", "f"}}}}}}),
       400, "tool_choice.type", "invalid_type", ""},
      {chat({{"tools", json::array({weather})},
             {"tool_choice",
              {{"type", "function"}, {"function", {{"name", 7}}}}}}),
       400, "tool_choice.function.name", "invalid_type", ""},
      {withToolCall("{}", 3).dump(), 400,
       "messages[1].tool_calls[0].function.name", "invalid_type", ""},
      {chat(
           {{"tools", json::array({{{"type", "function"},
                                    {"function", {{"name", "bad name!"}}}}})}}),
       400, "tools[0].function.name", "invalid_value", ""},
      {chat({{"tool_choice", "required"}}), 400, "tool_choice", "invalid_value",
       "requires 'tools'"},
      {chat({{"tools", json::array({weather})}, {"tool_choice", "sometimes"}}),
       400, "tool_choice", "invalid_value", "sometimes"},
      {chat({{"tools", json::array({weather})},
             {"tool_choice",
              {{"type", "function"}, {"function", {{"name", "other"}}}}}}),
       400, "tool_choice", "invalid_value", "not in 'tools'"},
      {chat({{"response_format", {{"type", "json_schema"}}}}), 400,
       "response_format.type", "unsupported_value", "json_schema"},
      {chat({{"response_format", "json"}}), 400, "response_format",
       "invalid_type", ""},
      {chat({{"chat_template_kwargs", 1}}), 400, "chat_template_kwargs",
       "invalid_type", ""},
      {chat({{"chat_template_kwargs", {{"messages", 1}}}}), 400,
       "chat_template_kwargs", "invalid_value", "messages"},
      {chat({{"chat_template_kwargs", {{"documents", 1}}}}), 400,
       "chat_template_kwargs", "invalid_value", "documents"},
      {chat({{"messages",
              json::array({{{"role", "assistant"},
                            {"content", nullptr},
                            {"tool_calls",
                             json::array({{{"type", "function"},
                                           {"function",
                                            {{"name", "f"},
                                             {"arguments", "{oops"}}}}})}}})}}),
       400, "messages[0].tool_calls[0].function.arguments", "invalid_value",
       "not valid JSON"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.body);
    ApiError error = chatError(c.body);
    EXPECT_EQ(error.status, c.status) << error.message;
    EXPECT_EQ(error.param, c.param) << error.message;
    EXPECT_EQ(error.code, c.code) << error.message;
    EXPECT_THAT(error.message, HasSubstr(c.messagePart));
    json shape = error.toJson();
    ASSERT_TRUE(shape.contains("error"));
    for (const char *key : {"message", "type", "param", "code"})
      EXPECT_TRUE(shape["error"].contains(key)) << key;
    EXPECT_EQ(shape["error"]["type"], "invalid_request_error");
  }
}

/// A request that must fail with a 400 invalid_value naming `param`.
struct FieldCase {
  std::string body;
  std::string param;
  std::string messagePart;
};

void expectFieldErrors(const std::vector<FieldCase> &cases) {
  for (const FieldCase &c : cases) {
    SCOPED_TRACE(c.param);
    ApiError error = chatError(c.body);
    EXPECT_EQ(error.status, 400);
    EXPECT_EQ(error.param, c.param);
    EXPECT_EQ(error.code, "invalid_value");
    EXPECT_THAT(error.message, HasSubstr(c.messagePart));
  }
}

// Tests that JSON nesting deeper than kMaxJsonDepth inside any field the
// request layer takes is a 400 naming the field: 20,000 nested arrays (40 KB
// of body) used to overflow the worker's stack in the recursive copy of the
// parsed body.
TEST(ChatRequestErrors, DeepJsonNamesTheField) {
  const std::string deep = nestedArrays(20000);
  auto deepCase = [](std::string body, std::string param) {
    std::string where = param.empty() ? "the request body" : "'" + param + "'";
    return FieldCase{std::move(body), std::move(param),
                     where + " nests deeper than 64 levels"};
  };
  expectFieldErrors({
      deepCase(splice(chatJson({{"tools", json::array({toolWithProperty()})}}),
                      deep),
               "tools[0].function.parameters"),
      deepCase(
          splice(chatJson({{"chat_template_kwargs", {{"x", "@@"}}}}), deep),
          "chat_template_kwargs"),
      deepCase(splice(withToolCall({{"a", "@@"}}), deep), kArgumentsParam),
      deepCase(withToolCall("{\"a\": " + deep + "}").dump(), kArgumentsParam),
      deepCase(splice(chatJson({{"messages", "@@"}}), deep), "messages"),
      // A field the server ignores is held to the same bound.
      deepCase(splice(chatJson({{"user", "@@"}}), deep), "user"),
      deepCase(deep, ""),
  });
  ApiError completion =
      completionError(splice(json{{"model", "qwen2"}, {"prompt", "@@"}}, deep));
  EXPECT_EQ(completion.param, "prompt");
  EXPECT_THAT(completion.message, HasSubstr("nests deeper than 64"));
}

// Tests that the depth limit counts from each field, not from the body: 64
// levels inside tool parameters, tool-call arguments (an object or a string)
// and chat_template_kwargs pass, 65 do not.
TEST(ChatRequestParse, DepthLimitCountsFromTheField) {
  // parameters is 2 levels above the arrays, the arguments and kwargs 1.
  auto parameters = [](int arrays) {
    return splice(chatJson({{"tools", json::array({toolWithProperty()})}}),
                  nestedArrays(arrays));
  };
  auto argumentsObject = [](int arrays) {
    return splice(withToolCall({{"a", "@@"}}), nestedArrays(arrays));
  };
  auto argumentsString = [](int arrays) {
    return withToolCall("{\"a\": " + nestedArrays(arrays) + "}").dump();
  };
  auto kwargs = [](int arrays) {
    return splice(chatJson({{"chat_template_kwargs", {{"x", "@@"}}}}),
                  nestedArrays(arrays));
  };
  EXPECT_EQ(chatOk(parameters(62)).tools.size(), 1u);
  EXPECT_EQ(chatError(parameters(63)).param, "tools[0].function.parameters");
  EXPECT_EQ(chatOk(argumentsObject(63)).messages.size(), 2u);
  EXPECT_EQ(chatError(argumentsObject(64)).param, kArgumentsParam);
  EXPECT_EQ(chatOk(argumentsString(63)).messages.size(), 2u);
  EXPECT_EQ(chatError(argumentsString(64)).param, kArgumentsParam);
  EXPECT_TRUE(chatOk(kwargs(63)).templateKwargs.contains("x"));
  EXPECT_EQ(chatError(kwargs(64)).param, "chat_template_kwargs");
}

// Tests that a number too large for a double, where nlohmann throws
// out_of_range (a 500 before), is a 400 naming the field.
TEST(ChatRequestErrors, HugeNumbersNameTheField) {
  expectFieldErrors({
      {splice(chatJson({{"temperature", "@@"}}), "1e400"), "temperature",
       "'temperature' is a number too large for a double (1e400)"},
      {splice(chatJson({{"top_p", "@@"}}), "-1e400"), "top_p", "-1e400"},
      {splice(chatJson({{"stop", json::array({"a", "@@"})}}), "1e400"),
       "stop[1]", "1e400"},
      {splice(chatJson({{"tools", json::array({toolWithProperty()})}}),
              "{\"type\": \"number\", \"maximum\": 1e400}"),
       "tools[0].function.parameters.properties.x.maximum", "1e400"},
      {withToolCall("{\"a\": 1e400}").dump(), kArgumentsParam, "1e400"},
  });
  ApiError completion =
      completionError(R"({"model": "qwen2", "prompt": [1, 2e308, 3]})");
  EXPECT_EQ(completion.param, "prompt[1]");
  EXPECT_THAT(completion.message, HasSubstr("2e308"));
}

// Tests that no error message carries internal text (nlohmann's exception
// tags, source files) and that none of these inputs reaches the catch-all.
TEST(ChatRequestErrors, MessagesCarryNoInternalText) {
  std::vector<std::string> bodies = {
      "{\"model\": ",
      "{\"a\": }",
      "[1e400]",
      "1e400",
      "{\"model\": \"qwen2\", \"messages\": [{\"role\": \"user\", "
      "\"content\": \"x\\ud800\"}]}",
      nestedArrays(100),
      withToolCall("{oops").dump(),
      withToolCall("[1e400]").dump(),
      withToolCall("{\"a\": \"\\ud800\"}").dump(),
      chat({{"tools", json::array({{{"type", 1}}})}}),
      chat({{"tool_choice", {{"type", 5}}}}),
      chat({{"response_format", {{"type", 1}}}}),
      chat({{"messages", json::array({{{"role", 1}, {"content", "x"}}})}}),
  };
  for (const std::string &body : bodies) {
    SCOPED_TRACE(body);
    for (const ApiError &error : {chatError(body), completionError(body)}) {
      EXPECT_EQ(error.status, 400);
      EXPECT_NE(error.code, kUnexpectedErrorCode);
      for (const char *internal :
           {"json.exception", "type_error", "out_of_range", ".cpp", ".h:"})
        EXPECT_THAT(error.message, Not(HasSubstr(internal)));
    }
  }
}

// Tests that the request keeps the client's key order everywhere the chat
// template looks: tools and their parameters, tool-call arguments given as
// a string or an object, and chat_template_kwargs.
TEST(ChatRequestParse, KeepsTheClientsKeyOrder) {
  const std::string tools =
      R"([{"type":"function","function":{"name":"f","parameters":)"
      R"({"type":"object","properties":{"zeta":{"type":"string"},)"
      R"("alpha":{"type":"integer"}},"required":["zeta"]},"description":"d"}}])";
  const std::string body =
      R"({"model":"qwen2","tools":)" + tools +
      R"(,"chat_template_kwargs":{"z":1,"a":{"y":2,"b":3}},"messages":[)"
      R"({"role":"user","content":"hi"},{"role":"assistant","content":null,)"
      R"("tool_calls":[{"id":"c1","type":"function","function":{"name":"f",)"
      R"("arguments":"{\"zeta\": \"x\", \"alpha\": 1}"}},{"id":"c2",)"
      R"("type":"function","function":{"name":"f","arguments":)"
      R"({"zeta":"y","alpha":[{"y":1,"b":2}]}}}]}]})";
  ChatRequest r = chatOk(body);
  EXPECT_EQ(dumpJson(r.tools), tools);
  EXPECT_EQ(dumpJson(r.templateKwargs), R"({"z":1,"a":{"y":2,"b":3}})");
  const auto &calls = r.messages[1]["tool_calls"];
  EXPECT_EQ(dumpJson(calls[0]["function"]["arguments"]),
            R"({"zeta":"x","alpha":1})");
  EXPECT_EQ(dumpJson(calls[1]["function"]["arguments"]),
            R"({"zeta":"y","alpha":[{"y":1,"b":2}]})");
}

TEST(CompletionRequestErrors, EachNamesTheProblem) {
  auto body = [](json extra) {
    json b = {{"model", "qwen2"}, {"prompt", "Hello"}};
    b.update(extra);
    return b.dump();
  };
  std::vector<Case> cases = {
      {json{{"model", "qwen2"}}.dump(), 400, "prompt",
       "missing_required_parameter", ""},
      {body({{"prompt", ""}}), 400, "prompt", "invalid_value", "empty"},
      {body({{"prompt", 5}}), 400, "prompt", "invalid_type", ""},
      {body({{"prompt", json::array({"a", "b"})}}), 400, "prompt",
       "invalid_type", "one prompt"},
      {body({{"prompt", json::array({1, -2})}}), 400, "prompt", "invalid_value",
       "-2"},
      {body({{"echo", true}}), 400, "echo", "unsupported_value", ""},
      {body({{"suffix", "x"}}), 400, "suffix", "unsupported_value", ""},
      {body({{"logprobs", 6}}), 400, "logprobs", "invalid_value", ""},
      {body({{"best_of", 3}}), 400, "best_of", "unsupported_value", ""},
      {body({{"max_tokens", 100000}}), 400, "max_tokens", "invalid_value",
       "--max-seq"},
      {body({{"model", "other"}}), 404, "model", "model_not_found", ""},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.body);
    ApiError error = completionError(c.body);
    EXPECT_EQ(error.status, c.status) << error.message;
    EXPECT_EQ(error.param, c.param) << error.message;
    EXPECT_EQ(error.code, c.code) << error.message;
    EXPECT_THAT(error.message, HasSubstr(c.messagePart));
  }
}

TEST(ChatRequestParse, ReadsEveryField) {
  json tools = json::array(
      {{{"type", "function"},
        {"function",
         {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}});
  ChatRequest r = chatOk(
      chat({{"temperature", 0.5},
            {"top_p", 0.9},
            {"top_k", 40},
            {"seed", 42},
            {"max_tokens", 7},
            {"max_completion_tokens", 9},
            {"stop", "END"},
            {"logprobs", true},
            {"top_logprobs", 3},
            {"stream", true},
            {"stream_options", {{"include_usage", true}}},
            {"tools", tools},
            {"tool_choice",
             {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
            {"response_format", {{"type", "json_object"}}},
            {"chat_template_kwargs", {{"enable_thinking", false}}},
            {"user", "ignored"},
            {"frequency_penalty", 0}}));
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.topP, 0.9f);
  EXPECT_EQ(r.sampling.topK, 40);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.maxTokens, 9); // max_completion_tokens wins
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.topLogprobs, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.includeUsage);
  EXPECT_EQ(r.toolChoice, ToolChoiceMode::Function);
  EXPECT_EQ(r.toolChoiceName, "get_weather");
  EXPECT_TRUE(r.jsonObject);
  EXPECT_EQ(dumpJson(r.templateKwargs), R"({"enable_thinking":false})");

  ChatRequest defaults = chatOk(chat());
  EXPECT_FLOAT_EQ(defaults.sampling.temperature, 1.0f); // OpenAI's default
  EXPECT_FALSE(defaults.maxTokens.has_value());
  EXPECT_EQ(defaults.toolChoice, ToolChoiceMode::Auto);
  // Unseeded requests get different seeds.
  EXPECT_NE(chatOk(chat()).sampling.seed, chatOk(chat()).sampling.seed);
  // top_k -1 means off, as in vLLM.
  EXPECT_EQ(chatOk(chat({{"top_k", -1}})).sampling.topK, 0);
}

TEST(ChatRequestParse, NormalizesMessages) {
  ChatRequest r = chatOk(chat(
      {{"messages",
        json::array(
            {{{"role", "developer"}, {"content", "Be brief."}},
             {{"role", "user"},
              {"content",
               json::array({{{"type", "text"}, {"text", "Hello, "}},
                            {{"type", "text"}, {"text", "world"}}})}},
             {{"role", "assistant"},
              {"content", nullptr},
              {"tool_calls", json::array({{{"id", "call_1"},
                                           {"type", "function"},
                                           {"function",
                                            {{"name", "f"},
                                             {"arguments", "{\"x\": 1}"}}}}})}},
             {{"role", "tool"},
              {"tool_call_id", "call_1"},
              {"content", "42"}}})}}));
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "Hello, world");
  EXPECT_TRUE(r.messages[2]["content"].is_null());
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["arguments"],
            nlohmann::ordered_json({{"x", 1}}));
  EXPECT_EQ(r.messages[3]["tool_call_id"], "call_1");
}

//===----------------------------------------------------------------------===//
// Preparing and responding (the fixture's tokenizer and template)
//===----------------------------------------------------------------------===//

class PrepareTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    auto tokenizer =
        Tokenizer::fromFile(fixtureDir("qwen2") + "/tokenizer.json");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = std::move(*tokenizer).release();
    auto chatTemplate = ChatTemplate::fromTokenizerConfig(
        fixtureDir("qwen2") + "/tokenizer_config.json");
    ASSERT_TRUE(chatTemplate.ok()) << chatTemplate.status();
    template_ = std::move(*chatTemplate).release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete template_;
  }
  ServedModel model(int64_t maxSeq = 512) {
    ServedModel m;
    m.name = "qwen2";
    m.tokenizer = tokenizer_;
    m.chatTemplate = template_;
    m.toolFormat = ToolCallFormat::Qwen;
    m.maxSeq = maxSeq;
    return m;
  }
  static Tokenizer *tokenizer_;
  static ChatTemplate *template_;
};
Tokenizer *PrepareTest::tokenizer_ = nullptr;
ChatTemplate *PrepareTest::template_ = nullptr;

TEST_F(PrepareTest, RendersTheTemplateAndDefaultsMaxTokens) {
  ChatRequest r = chatOk(
      chat({{"temperature", 0}, {"logprobs", true}, {"top_logprobs", 2}}));
  auto prepared = prepareChat(r, model());
  ASSERT_TRUE(std::holds_alternative<PreparedRequest>(prepared));
  const PreparedRequest &p = std::get<PreparedRequest>(prepared);
  auto expected = template_->render(r.messages);
  ASSERT_TRUE(expected.ok());
  auto text = tokenizer_->decode(p.generation.promptIds);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, *expected);
  EXPECT_EQ(p.generation.maxTokens,
            512 - int64_t(p.generation.promptIds.size()));
  EXPECT_EQ(p.generation.sampling.numAlternatives, 2);
  EXPECT_EQ(p.generation.constraint, nullptr);
  EXPECT_FALSE(p.parseToolCalls);
}

TEST_F(PrepareTest, PromptOverMaxSeqIsContextLengthExceeded) {
  std::string longText;
  for (int i = 0; i < 200; ++i)
    longText += "the compiler reads a model ";
  ChatRequest r = chatOk(
      chat({{"messages",
             json::array({{{"role", "user"}, {"content", longText}}})}}));
  ApiError error = errorOf(prepareChat(r, model(64)));
  EXPECT_EQ(error.status, 400);
  EXPECT_EQ(error.code, "context_length_exceeded");
  EXPECT_THAT(error.message, HasSubstr("64"));

  auto completion = parseCompletionRequest(
      json{{"model", "qwen2"}, {"prompt", longText}}.dump(), limits());
  ASSERT_TRUE(std::holds_alternative<CompletionRequest>(completion));
  ApiError completionError = errorOf(
      prepareCompletion(std::get<CompletionRequest>(completion), model(64)));
  EXPECT_EQ(completionError.code, "context_length_exceeded");
  EXPECT_EQ(completionError.param, "prompt");
}

// vLLM's ignore_eos reaches the generation of both routes; off by default.
TEST_F(PrepareTest, IgnoreEosReachesTheGeneration) {
  for (bool ignore : {false, true}) {
    json body = {{"model", "qwen2"}, {"prompt", "hello"}};
    if (ignore)
      body["ignore_eos"] = true;
    auto completion = parseCompletionRequest(body.dump(), limits());
    ASSERT_TRUE(std::holds_alternative<CompletionRequest>(completion));
    auto prepared =
        prepareCompletion(std::get<CompletionRequest>(completion), model());
    ASSERT_TRUE(std::holds_alternative<PreparedRequest>(prepared));
    EXPECT_EQ(std::get<PreparedRequest>(prepared).generation.ignoreEos, ignore);
    ChatRequest r = chatOk(chat({{"ignore_eos", ignore}}));
    auto chatPrepared = prepareChat(r, model());
    ASSERT_TRUE(std::holds_alternative<PreparedRequest>(chatPrepared));
    EXPECT_EQ(std::get<PreparedRequest>(chatPrepared).generation.ignoreEos,
              ignore);
  }
}

TEST_F(PrepareTest, ForcedToolCallsOpenTheCallAndConstrainTheRest) {
  json tools = json::array(
      {{{"type", "function"}, {"function", {{"name", "get_weather"}}}},
       {{"type", "function"}, {"function", {{"name", "get_time"}}}}});
  ChatRequest named = chatOk(
      chat({{"tools", tools},
            {"tool_choice",
             {{"type", "function"}, {"function", {{"name", "get_time"}}}}}}));
  auto prepared = prepareChat(named, model());
  ASSERT_TRUE(std::holds_alternative<PreparedRequest>(prepared));
  PreparedRequest &p = std::get<PreparedRequest>(prepared);
  EXPECT_TRUE(p.forcedToolCall);
  EXPECT_EQ(p.outputPrefix,
            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": ");
  ASSERT_NE(p.generation.constraint, nullptr);
  EXPECT_TRUE(p.generation.constraint->allows("{\"tz\": 1}"));
  EXPECT_FALSE(p.generation.constraint->allows("hello"));
  auto text = tokenizer_->decode(p.generation.promptIds);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, HasSubstr("get_weather")); // tools rendered
  EXPECT_THAT(*text, ::testing::EndsWith(p.outputPrefix));

  // The whole output parses to the call.
  ParsedOutput output =
      parseOutput(p, p.outputPrefix + "{\"tz\": \"UTC\"}" + p.outputSuffix,
                  ToolCallFormat::Qwen);
  ASSERT_EQ(output.toolCalls.size(), 1u);
  EXPECT_EQ(output.toolCalls[0]["function"]["name"], "get_time");
  EXPECT_EQ(
      json::parse(
          output.toolCalls[0]["function"]["arguments"].get<std::string>()),
      json({{"tz", "UTC"}}));
  EXPECT_FALSE(output.content.has_value());

  ChatRequest required =
      chatOk(chat({{"tools", tools}, {"tool_choice", "required"}}));
  auto prepared2 = prepareChat(required, model());
  ASSERT_TRUE(std::holds_alternative<PreparedRequest>(prepared2));
  PreparedRequest &q = std::get<PreparedRequest>(prepared2);
  EXPECT_EQ(q.outputPrefix, "<tool_call>\n{\"name\": \"");
  EXPECT_TRUE(q.generation.constraint->allows("get_time\", \"arguments\": {}"));
  EXPECT_FALSE(q.generation.constraint->allows("launch_missiles\""));

  ChatRequest none = chatOk(chat({{"tools", tools}, {"tool_choice", "none"}}));
  auto prepared3 = prepareChat(none, model());
  ASSERT_TRUE(std::holds_alternative<PreparedRequest>(prepared3));
  EXPECT_FALSE(std::get<PreparedRequest>(prepared3).parseToolCalls);
}

TEST_F(PrepareTest, JsonObjectAddsAnInstructionAndAConstraint) {
  ChatRequest r =
      chatOk(chat({{"response_format", {{"type", "json_object"}}}}));
  auto prepared = prepareChat(r, model());
  ASSERT_TRUE(std::holds_alternative<PreparedRequest>(prepared));
  PreparedRequest &p = std::get<PreparedRequest>(prepared);
  ASSERT_NE(p.generation.constraint, nullptr);
  EXPECT_FALSE(p.generation.constraint->allows("Sure"));
  auto text = tokenizer_->decode(p.generation.promptIds);
  EXPECT_THAT(*text, HasSubstr("JSON object"));
}

//===----------------------------------------------------------------------===//
// Real checkpoints' templates (test/tokenizers/fetch.sh) through the request
// layer
//===----------------------------------------------------------------------===//

std::string checkpointDir(const std::string &name) {
  return std::string(TRENI_TOKENIZERS_DIR) + "/" + name;
}

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The prompt that prepareChat makes of `body` with a real checkpoint's
/// tokenizer and chat template, decoded back to text.
std::string preparedPrompt(const std::string &checkpoint,
                           const std::string &body) {
  auto tokenizer =
      Tokenizer::fromFile(checkpointDir(checkpoint) + "/tokenizer.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto chatTemplate = ChatTemplate::fromTokenizerConfig(
      checkpointDir(checkpoint) + "/tokenizer_config.json");
  EXPECT_TRUE(chatTemplate.ok()) << chatTemplate.status();
  if (!tokenizer.ok() || !chatTemplate.ok())
    return "";
  ServedModel model;
  model.name = "qwen2";
  model.tokenizer = tokenizer->get();
  model.chatTemplate = chatTemplate->get();
  model.toolFormat = servedToolCallFormat((*chatTemplate)->source());
  model.maxSeq = 8192;
  auto prepared = prepareChat(chatOk(body), model);
  if (auto *error = std::get_if<ApiError>(&prepared)) {
    ADD_FAILURE() << error->message;
    return "";
  }
  auto text =
      (*tokenizer)
          ->decode(std::get<PreparedRequest>(prepared).generation.promptIds);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

/// A request whose tool and tool-call arguments have keys out of sorted
/// order ("parameters" before "description", "unit" before "city").
const char *kUnsortedToolRequest = R"({
  "model": "qwen2",
  "messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
      "type": "function", "function": {"name": "get_weather",
      "arguments": "{\"unit\": \"c\", \"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "21"}],
  "tools": [{"type": "function", "function": {"name": "get_weather",
    "parameters": {"type": "object", "properties": {"unit": {"type": "string"},
    "city": {"type": "string"}}, "required": ["city"]},
    "description": "Weather"}}],
  "chat_template_kwargs": {"date_string": "26 Jul 2024"}})";

// Tests that Qwen2.5's template lists a tool's keys and a tool call's
// arguments in the client's order, byte for byte what transformers renders
// (tojson is json.dumps without sort_keys).
TEST(RealTemplates, QwenSeesTheClientsKeyOrder) {
  EXPECT_EQ(preparedPrompt("qwen2_5", kUnsortedToolRequest),
            R"(<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"unit": {"type": "string"}, "city": {"type": "string"}}, "required": ["city"]}, "description": "Weather"}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
Weather in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
21
</tool_response><|im_end|>
<|im_start|>assistant
)");
}

// Tests the same with Llama 3.2's template (Llama 3.1's tool format; the
// Llama 3 template has no tools): tojson(indent=4) of the tool and the
// arguments in the client's order.
TEST(RealTemplates, LlamaSeesTheClientsKeyOrder) {
  EXPECT_EQ(preparedPrompt("llama3_2", kUnsortedToolRequest),
            R"(<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

{
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "unit": {
                    "type": "string"
                },
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ]
        },
        "description": "Weather"
    }
}

Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_weather", "parameters": {"unit": "c", "city": "Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

"21"<|eot_id|><|start_header_id|>assistant<|end_header_id|>

)");
}

// Tests that every conversation of test/chat/conversations.json that an
// OpenAI request can carry, sent as a request body, reaches the chat
// templates of all four checkpoints as transformers' apply_chat_template got
// it: the rendering equals test/chat/expected.json byte for byte.
TEST(RealTemplates, RequestsRenderAsTransformersDoes) {
  nlohmann::ordered_json conversations = nlohmann::ordered_json::parse(
      readText(std::string(TRENI_SOURCE_DIR) + "/test/chat/conversations.json"),
      nullptr, false);
  nlohmann::ordered_json expected = nlohmann::ordered_json::parse(
      readText(std::string(TRENI_SOURCE_DIR) + "/test/chat/expected.json"),
      nullptr, false);
  ASSERT_TRUE(conversations.is_array());
  ASSERT_TRUE(expected.is_object());
  // What the request layer changes on purpose: string arguments are parsed
  // (vLLM does so; transformers renders the string), reasoning_content and
  // structured tool results are not OpenAI request fields.
  const std::set<std::string> notRequests = {"tool_call_string_arguments",
                                             "reasoning_content_field",
                                             "tool_result_structured_content"};
  int compared = 0;
  for (const char *checkpoint : {"qwen2_5", "qwen3", "llama3", "llama3_2"}) {
    auto chatTemplate = ChatTemplate::fromTokenizerConfig(
        checkpointDir(checkpoint) + "/tokenizer_config.json");
    ASSERT_TRUE(chatTemplate.ok()) << chatTemplate.status();
    for (const auto &conversation : conversations) {
      std::string name = conversation["name"].get<std::string>();
      const auto &golden = expected["templates"][checkpoint]["cases"][name];
      if (notRequests.count(name) || golden.contains("error"))
        continue;
      SCOPED_TRACE(std::string(checkpoint) + " / " + name);
      nlohmann::ordered_json body = {{"model", "qwen2"},
                                     {"messages", conversation["messages"]}};
      if (conversation.contains("tools"))
        body["tools"] = conversation["tools"];
      if (conversation.contains("extra"))
        body["chat_template_kwargs"] = conversation["extra"];
      ChatRequest request = chatOk(dumpJson(body));
      ChatTemplateOptions options;
      options.addGenerationPrompt =
          conversation["add_generation_prompt"].get<bool>();
      options.tools = request.tools;
      options.extra = request.templateKwargs;
      auto text = (*chatTemplate)->render(request.messages, options);
      ASSERT_TRUE(text.ok()) << text.status();
      EXPECT_EQ(*text, golden["text"].get<std::string>());
      ++compared;
    }
  }
  EXPECT_GT(compared, 40);
}

GenerationResult fakeResult() {
  GenerationResult result;
  result.text = "Hello";
  result.finishReason = FinishReason::Length;
  result.tokens = {{5, -0.25f, 1.0f, {{5, -0.25f}, {9, -1.5f}}},
                   {6, -2.0f, 2.0f, {{7, -0.5f}, {6, -2.0f}}}};
  result.awareness = summarizeAwareness(
      std::vector<TokenUncertainty>{{-0.25f, 1.0f}, {-2.0f, 2.0f}});
  result.awareness.timing.promptTokens = 11;
  result.awareness.timing.completionTokens = 2;
  return result;
}

std::string bytesOf(int32_t id) {
  return id == 5 ? "Hel" : id == 6 ? "lo" : "\xe2\x82";
}

TEST(Responses, ChatShape) {
  PreparedRequest prepared;
  prepared.logprobs = true;
  prepared.topLogprobs = 2;
  GenerationResult result = fakeResult();
  ParsedOutput output =
      parseOutput(prepared, result.text, ToolCallFormat::Qwen);
  json body = buildChatResponse({"chatcmpl-1", 123, "qwen2"}, prepared, result,
                                output, bytesOf);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["id"], "chatcmpl-1");
  EXPECT_EQ(body["model"], "qwen2");
  const json &choice = body["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["message"]["content"], "Hello");
  EXPECT_EQ(choice["finish_reason"], "length");
  const json &lp = choice["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_EQ(lp[0]["token"], "Hel");
  EXPECT_FLOAT_EQ(lp[0]["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(lp[0]["bytes"], json({72, 101, 108}));
  ASSERT_EQ(lp[1]["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp[1]["top_logprobs"][0]["bytes"],
            json({0xe2, 0x82})); // a split character
  EXPECT_EQ(body["usage"],
            json({{"prompt_tokens", 11},
                  {"completion_tokens", 2},
                  {"total_tokens", 13},
                  {"prompt_tokens_details", {{"cached_tokens", 0}}}}));
  EXPECT_NEAR(body["awareness"]["perplexity"].get<double>(), std::exp(1.125),
              1e-6);
  EXPECT_EQ(body["awareness"]["low_confidence"]["positions"], json({1}));
  // The dump survives the invalid UTF-8 of a split character's token.
  EXPECT_THAT(dumpJson(body), HasSubstr("\"top_logprobs\""));
}

TEST(Responses, CompletionShape) {
  PreparedRequest prepared;
  prepared.logprobs = true;
  prepared.topLogprobs = 1;
  GenerationResult result = fakeResult();
  result.finishReason = FinishReason::Eos;
  json body = buildCompletionResponse({"cmpl-1", 1, "qwen2"}, prepared, result,
                                      bytesOf);
  EXPECT_EQ(body["object"], "text_completion");
  const json &choice = body["choices"][0];
  EXPECT_EQ(choice["text"], "Hello");
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["logprobs"]["tokens"], json({"Hel", "lo"}));
  EXPECT_EQ(choice["logprobs"]["text_offset"], json({0, 3}));
  ASSERT_EQ(choice["logprobs"]["top_logprobs"][1].size(), 1u);
  EXPECT_FLOAT_EQ(
      choice["logprobs"]["top_logprobs"][1].begin().value().get<float>(),
      -0.5f);
  EXPECT_EQ(body["usage"]["total_tokens"], 13);
  EXPECT_TRUE(body.contains("awareness"));
}

// Tests that a logprob below -9999 or not finite (a token the model gives no
// chance, NaN from broken logits) is reported as -9999.0, as vLLM does, in
// chat and completion logprobs alike, and that other values pass unchanged.
TEST(Responses, LogprobsBelowTheFloorAreTheFloor) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  GenerationResult result = fakeResult();
  result.tokens = {{5, -inf, 1.0f, {{5, -inf}, {9, nan}}},
                   {6, -12345.0f, 2.0f, {{7, -0.5f}, {6, -12345.0f}}}};
  json chat = chatLogprobs(result.tokens, 2, bytesOf);
  EXPECT_EQ(chat[0]["logprob"], -9999.0);
  EXPECT_EQ(chat[0]["top_logprobs"][0]["logprob"], -9999.0);
  EXPECT_EQ(chat[0]["top_logprobs"][1]["logprob"], -9999.0);
  EXPECT_EQ(chat[1]["logprob"], -9999.0);
  EXPECT_EQ(chat[1]["top_logprobs"][0]["logprob"], -0.5);

  PreparedRequest prepared;
  prepared.logprobs = true;
  prepared.topLogprobs = 2;
  json body = buildCompletionResponse({"cmpl-2", 1, "qwen2"}, prepared, result,
                                      bytesOf);
  const json &logprobs = body["choices"][0]["logprobs"];
  EXPECT_EQ(logprobs["token_logprobs"], json({-9999.0, -9999.0}));
  EXPECT_EQ(logprobs["top_logprobs"][1]["\xe2\x82"], -0.5);
  EXPECT_EQ(logprobs["top_logprobs"][1]["lo"], -9999.0);
}

std::vector<json> parseEvents(const std::vector<std::string> &events) {
  std::vector<json> chunks;
  for (const std::string &event : events) {
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
    std::string payload = event.substr(6, event.size() - 8);
    chunks.push_back(payload == "[DONE]" ? json("[DONE]")
                                         : json::parse(payload));
  }
  return chunks;
}

TEST(Streaming, ChatChunksInOrder) {
  PreparedRequest prepared;
  prepared.logprobs = true;
  GenerationResult result = fakeResult();
  StreamEncoder encoder(StreamEncoder::Kind::Chat, {"chatcmpl-2", 5, "qwen2"},
                        prepared, ToolCallFormat::Qwen, /*includeUsage=*/true,
                        bytesOf);
  std::vector<std::string> events = encoder.start();
  for (std::string e :
       encoder.delta("Hel", absl::MakeConstSpan(result.tokens).subspan(0, 1)))
    events.push_back(e);
  for (std::string e :
       encoder.delta("lo", absl::MakeConstSpan(result.tokens).subspan(1)))
    events.push_back(e);
  for (std::string e : encoder.finish(result))
    events.push_back(e);
  std::vector<json> chunks = parseEvents(events);
  ASSERT_EQ(chunks.size(), 6u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks[1]["choices"][0]["delta"]["content"], "Hel");
  EXPECT_EQ(chunks[1]["choices"][0]["logprobs"]["content"][0]["token"], "Hel");
  EXPECT_EQ(chunks[2]["choices"][0]["delta"]["content"], "lo");
  EXPECT_EQ(chunks[3]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(chunks[3].contains("awareness"));
  EXPECT_TRUE(chunks[4]["choices"].empty());
  EXPECT_EQ(chunks[4]["usage"]["completion_tokens"], 2);
  EXPECT_EQ(chunks[5], "[DONE]");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(chunks[i]["object"], "chat.completion.chunk");
    EXPECT_EQ(chunks[i]["id"], "chatcmpl-2");
  }
}

TEST(Streaming, ToolCallsArriveAsOneDelta) {
  PreparedRequest prepared;
  prepared.parseToolCalls = true;
  GenerationResult result;
  result.text = "Let me check.<tool_call>\n{\"name\": \"f\", \"arguments\": "
                "{\"a\": 1}}\n</tool_call>";
  result.finishReason = FinishReason::Eos;
  StreamEncoder encoder(StreamEncoder::Kind::Chat, {"chatcmpl-3", 5, "qwen2"},
                        prepared, ToolCallFormat::Qwen, /*includeUsage=*/false,
                        bytesOf);
  std::vector<std::string> events = encoder.start();
  std::string text = result.text;
  for (size_t i = 0; i < text.size(); i += 7)
    for (std::string e : encoder.delta(text.substr(i, 7), {}))
      events.push_back(e);
  for (std::string e : encoder.finish(result))
    events.push_back(e);
  std::vector<json> chunks = parseEvents(events);
  std::string content;
  json toolCalls;
  std::string finish;
  for (const json &c : chunks) {
    if (c == "[DONE]")
      continue;
    const json &choice = c["choices"][0];
    if (choice["delta"].contains("content"))
      content += choice["delta"]["content"].get<std::string>();
    if (choice["delta"].contains("tool_calls"))
      toolCalls = choice["delta"]["tool_calls"];
    if (!choice["finish_reason"].is_null())
      finish = choice["finish_reason"];
  }
  EXPECT_EQ(content, "Let me check.");
  ASSERT_EQ(toolCalls.size(), 1u);
  EXPECT_EQ(toolCalls[0]["index"], 0);
  EXPECT_EQ(toolCalls[0]["function"]["name"], "f");
  EXPECT_EQ(finish, "tool_calls");
  EXPECT_EQ(chunks.back(), "[DONE]");
}

} // namespace
} // namespace treni
