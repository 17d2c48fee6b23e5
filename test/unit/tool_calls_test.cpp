//===- tool_calls_test.cpp - tool calls out of generated text -------------===//
//
// Tests that Qwen's <tool_call> blocks and Llama 3's JSON calls become OpenAI
// tool_calls with the rest as content; that malformed calls stay content and
// are reported; and the streaming hold-back.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/tool_calls.h"

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

nlohmann::json call(const std::string &id, const std::string &name,
                    const std::string &arguments) {
  return {{"id", id},
          {"type", "function"},
          {"function", {{"name", name}, {"arguments", arguments}}}};
}

TEST(QwenToolCallsTest, OneCallIsTheWholeMessage) {
  ParsedToolCalls parsed =
      parseToolCalls("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                     "{\"location\": {\"city\": \"Zürich\"}, "
                     "\"days\": 2}}\n</tool_call>",
                     ToolCallFormat::Qwen);
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_EQ(parsed.content, "");
  ASSERT_THAT(parsed.toolCalls, SizeIs(1));
  // Arguments keep the model's key order and are serialized as json.dumps does.
  EXPECT_EQ(parsed.toolCalls[0],
            call("call_0", "get_weather",
                 R"({"location": {"city": "Zürich"}, "days": 2})"));
}

TEST(QwenToolCallsTest, SeveralCallsWithTextAround) {
  ParsedToolCalls parsed = parseToolCalls(
      "Let me check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, "
      "2.5, "
      "null]}}\n</tool_call>\nDone.",
      ToolCallFormat::Qwen, "req7-");
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_EQ(parsed.content, "Let me check both.\n\n\nDone.");
  ASSERT_THAT(parsed.toolCalls, SizeIs(2));
  EXPECT_EQ(parsed.toolCalls[0], call("req7-0", "a", "{}"));
  EXPECT_EQ(parsed.toolCalls[1],
            call("req7-1", "b", R"({"x": [1, 2.5, null]})"));
}

TEST(QwenToolCallsTest, MalformedCallsStayContentAndAreReported) {
  std::string text = "Sure.\n<tool_call>\n{\"name\": \"a\", \"arguments\": "
                     "{\"x\": }\n</tool_call>\n"
                     "<tool_call>{\"arguments\": {}}</tool_call>"
                     "<tool_call>\n{\"name\": \"ok\", \"arguments\": {\"y\": "
                     "\"v\"}}\n</tool_call>";
  ParsedToolCalls parsed = parseToolCalls(text, ToolCallFormat::Qwen);
  ASSERT_THAT(parsed.errors, SizeIs(2));
  EXPECT_THAT(parsed.errors[0], HasSubstr("byte 6"));
  EXPECT_THAT(parsed.errors[0], HasSubstr("parse error"));
  EXPECT_THAT(parsed.errors[1], HasSubstr("no \"name\""));
  EXPECT_THAT(parsed.content,
              HasSubstr("{\"name\": \"a\", \"arguments\": {\"x\": }"));
  EXPECT_THAT(parsed.content,
              HasSubstr("<tool_call>{\"arguments\": {}}</tool_call>"));
  ASSERT_THAT(parsed.toolCalls, SizeIs(1));
  EXPECT_EQ(parsed.toolCalls[0], call("call_0", "ok", R"({"y": "v"})"));
}

TEST(QwenToolCallsTest, UnclosedCallAtTheEndOfGeneration) {
  ParsedToolCalls complete = parseToolCalls(
      "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
      ToolCallFormat::Qwen);
  ASSERT_THAT(complete.toolCalls, SizeIs(1));
  EXPECT_EQ(complete.toolCalls[0]["function"]["arguments"], R"({"a": 1})");
  ParsedToolCalls cut = parseToolCalls(
      "text <tool_call>\n{\"name\": \"f\", \"argu", ToolCallFormat::Qwen);
  EXPECT_TRUE(cut.toolCalls.empty());
  EXPECT_EQ(cut.content, "text <tool_call>\n{\"name\": \"f\", \"argu");
  EXPECT_THAT(cut.errors, SizeIs(1));
}

TEST(QwenToolCallsTest, StringArgumentsAndPlainText) {
  ParsedToolCalls parsed =
      parseToolCalls("<tool_call>{\"name\": \"f\", \"arguments\": "
                     "\"{\\\"q\\\": 1}\"}</tool_call>",
                     ToolCallFormat::Qwen);
  ASSERT_THAT(parsed.toolCalls, SizeIs(1));
  EXPECT_EQ(parsed.toolCalls[0]["function"]["arguments"], "{\"q\": 1}");
  ParsedToolCalls plain =
      parseToolCalls("  no calls here  ", ToolCallFormat::Qwen);
  EXPECT_TRUE(plain.toolCalls.empty());
  EXPECT_TRUE(plain.errors.empty());
  EXPECT_EQ(plain.content, "  no calls here  ");
}

TEST(Llama3ToolCallsTest, JsonMessageIsACall) {
  ParsedToolCalls parsed =
      parseToolCalls("{\"name\": \"get_weather\", \"parameters\": {\"city\": "
                     "\"Paris\", \"unit\": \"celsius\"}}",
                     ToolCallFormat::Llama3Json);
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_EQ(parsed.content, "");
  ASSERT_THAT(parsed.toolCalls, SizeIs(1));
  EXPECT_EQ(
      parsed.toolCalls[0],
      call("call_0", "get_weather", R"({"city": "Paris", "unit": "celsius"})"));
}

TEST(Llama3ToolCallsTest, PythonTagAndSeveralCalls) {
  ParsedToolCalls parsed =
      parseToolCalls("<|python_tag|>{\"name\": \"a\", \"parameters\": {\"s\": "
                     "\"}{\"}}; {\"name\": \"b\", "
                     "\"parameters\": {}}",
                     ToolCallFormat::Llama3Json);
  EXPECT_TRUE(parsed.errors.empty());
  ASSERT_THAT(parsed.toolCalls, SizeIs(2));
  EXPECT_EQ(parsed.toolCalls[0], call("call_0", "a", R"({"s": "}{"})"));
  EXPECT_EQ(parsed.toolCalls[1], call("call_1", "b", "{}"));
}

TEST(Llama3ToolCallsTest, OtherTextIsContent) {
  for (const char *text :
       {"The answer is 42.", "{\"name\": \"Bob\", \"age\": 3}",
        "{\"name\": \"f\", \"parameters\": {}} and then some text"}) {
    ParsedToolCalls parsed = parseToolCalls(text, ToolCallFormat::Llama3Json);
    EXPECT_TRUE(parsed.toolCalls.empty()) << text;
    EXPECT_TRUE(parsed.errors.empty()) << text;
    EXPECT_EQ(parsed.content, text);
  }
  ParsedToolCalls broken =
      parseToolCalls("<|python_tag|>{\"name\": \"f\", \"parameters\": {",
                     ToolCallFormat::Llama3Json);
  EXPECT_TRUE(broken.toolCalls.empty());
  ASSERT_THAT(broken.errors, SizeIs(1));
  EXPECT_THAT(broken.errors[0], HasSubstr("unterminated"));
}

// Tests that a model's tool call nesting deeper than kMaxJsonDepth (20,000
// arrays: its arguments are rebuilt recursively) stays content with an error
// naming the limit, in both formats; 64 levels are still a call.
TEST(ToolCallsTest, DeepArgumentsStayContent) {
  auto nested = [](int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  std::string qwen =
      "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": " + nested(20000) +
      "}}</tool_call>";
  std::string llama =
      "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": " +
      nested(20000) + "}}";
  for (auto [text, format] : {std::pair{qwen, ToolCallFormat::Qwen},
                              std::pair{llama, ToolCallFormat::Llama3Json}}) {
    ParsedToolCalls parsed = parseToolCalls(text, format);
    EXPECT_TRUE(parsed.toolCalls.empty());
    EXPECT_EQ(parsed.content, text);
    ASSERT_THAT(parsed.errors, SizeIs(1));
    EXPECT_THAT(parsed.errors[0], HasSubstr("deeper than 64"));
  }
  // The call object is level 1 and its arguments level 2: 62 arrays below.
  ParsedToolCalls atLimit = parseToolCalls(
      "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": " + nested(62) +
          "}}</tool_call>",
      ToolCallFormat::Qwen);
  EXPECT_THAT(atLimit.toolCalls, SizeIs(1));
}

// Tests that a number too large for a double in a model's call is a parse
// error without nlohmann's internal exception tag, not an exception.
TEST(ToolCallsTest, HugeNumbersAreErrors) {
  ParsedToolCalls parsed = parseToolCalls(
      "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1e400}}</tool_call>",
      ToolCallFormat::Qwen);
  EXPECT_TRUE(parsed.toolCalls.empty());
  ASSERT_THAT(parsed.errors, SizeIs(1));
  EXPECT_THAT(parsed.errors[0], HasSubstr("1e400"));
  EXPECT_THAT(parsed.errors[0], ::testing::Not(HasSubstr("json.exception")));
}

TEST(ToolCallFormatTest, NoneNeverParses) {
  ParsedToolCalls parsed = parseToolCalls(
      "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
      ToolCallFormat::None);
  EXPECT_TRUE(parsed.toolCalls.empty());
  EXPECT_EQ(parsed.content,
            "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>");
}

TEST(StreamingTest, QwenHoldsBackFromAPossibleTag) {
  EXPECT_EQ(streamableContentLength("Hello world", ToolCallFormat::Qwen), 11u);
  EXPECT_EQ(streamableContentLength("Hello <tool", ToolCallFormat::Qwen), 6u);
  EXPECT_EQ(streamableContentLength("Hello <", ToolCallFormat::Qwen), 6u);
  EXPECT_EQ(streamableContentLength("a < b", ToolCallFormat::Qwen), 5u);
  EXPECT_EQ(
      streamableContentLength("x<tool_call>\n{\"na", ToolCallFormat::Qwen), 1u);
  EXPECT_EQ(streamableContentLength("<tool_call>{}</tool_call> after",
                                    ToolCallFormat::Qwen),
            0u);
}

TEST(StreamingTest, Llama3HoldsBackWhileTheMessageMayBeACall) {
  EXPECT_EQ(streamableContentLength("", ToolCallFormat::Llama3Json), 0u);
  EXPECT_EQ(streamableContentLength("  {\"name\"", ToolCallFormat::Llama3Json),
            0u);
  EXPECT_EQ(streamableContentLength("<|python", ToolCallFormat::Llama3Json),
            0u);
  EXPECT_EQ(streamableContentLength("Sure, here", ToolCallFormat::Llama3Json),
            10u);
  EXPECT_EQ(streamableContentLength("anything", ToolCallFormat::None), 8u);
}

std::string configTemplate(const std::string &name) {
  std::ifstream in(std::string(TRENI_TOKENIZERS_DIR) + "/" + name +
                   "/tokenizer_config.json");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json config = nlohmann::json::parse(text.str(), nullptr, false);
  if (!config.is_object() || !config["chat_template"].is_string())
    return "";
  return config["chat_template"].get<std::string>();
}

TEST(ToolCallFormatTest, DetectedFromTheRealTemplates) {
  std::string qwen = configTemplate("qwen2_5");
  std::string llama32 = configTemplate("llama3_2");
  std::string llama3 = configTemplate("llama3");
  ASSERT_FALSE(qwen.empty()) << "run test/tokenizers/fetch.sh build/tokenizers";
  ASSERT_FALSE(llama32.empty());
  ASSERT_FALSE(llama3.empty());
  EXPECT_EQ(detectToolCallFormat(qwen), ToolCallFormat::Qwen);
  EXPECT_EQ(detectToolCallFormat(configTemplate("qwen3")),
            ToolCallFormat::Qwen);
  EXPECT_EQ(detectToolCallFormat(llama32), ToolCallFormat::Llama3Json);
  EXPECT_EQ(detectToolCallFormat(llama3),
            ToolCallFormat::None); // Llama 3.0 has no tools
}

} // namespace
} // namespace treni
