//===- chat_template_test.cpp - real chat templates against transformers --===//
//
// Renders every conversation of test/chat/conversations.json with the real
// chat templates of Qwen2.5, Qwen3, Llama 3 and Llama 3.2 (fetched by
// test/tokenizers/fetch.sh) and compares byte for byte with what transformers'
// apply_chat_template gave (test/chat/expected.json, made by
// test/chat/make_expected.py). A case transformers rejected must fail here
// too, with the template's own message for raise_exception(). Missing files
// are failures, not skips.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/chat_template.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing_util::messageOf;

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

[[maybe_unused]] nlohmann::ordered_json readJson(const std::string &path) {
  std::string text = readText(path);
  return nlohmann::ordered_json::parse(text, nullptr, false);
}

[[maybe_unused]] std::string expectedPath() {
  // TRENI_CHAT_EXPECTED overrides the committed goldens (for trying a file
  // made elsewhere).
  if (const char *override = std::getenv("TRENI_CHAT_EXPECTED"))
    return override;
  return std::string(TRENI_SOURCE_DIR) + "/test/chat/expected.json";
}

std::string configPath(const std::string &name) {
  return std::string(TRENI_TOKENIZERS_DIR) + "/" + name +
         "/tokenizer_config.json";
}

/// The first position where two strings differ, with context, for failures.
[[maybe_unused]] std::string firstDifference(const std::string &actual,
                                             const std::string &expected) {
  size_t i = 0;
  while (i < actual.size() && i < expected.size() && actual[i] == expected[i])
    ++i;
  size_t from = i < 40 ? 0 : i - 40;
  nlohmann::json a = actual.substr(from, 80), e = expected.substr(from, 80);
  return "first difference at byte " + std::to_string(i) + "\n  actual:   " +
         a.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n  expected: " +
         e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

#ifndef TRENI_CHAT_NO_PARITY
class RealTemplateTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTemplateTest, MatchesTransformersForEveryConversation) {
  const std::string name = GetParam();
  nlohmann::ordered_json conversations =
      readJson(std::string(TRENI_SOURCE_DIR) + "/test/chat/conversations.json");
  ASSERT_TRUE(conversations.is_array())
      << "test/chat/conversations.json is missing or invalid";
  nlohmann::ordered_json expected = readJson(expectedPath());
  ASSERT_TRUE(expected.is_object())
      << expectedPath()
      << " is missing or invalid: run test/chat/make_expected.py on a machine "
         "with transformers";
  ASSERT_TRUE(expected["templates"].contains(name))
      << "no goldens for " << name;
  const nlohmann::ordered_json &goldens = expected["templates"][name]["cases"];

  absl::StatusOr<std::unique_ptr<ChatTemplate>> chat =
      ChatTemplate::fromTokenizerConfig(configPath(name));
  ASSERT_TRUE(chat.ok()) << chat.status()
                         << " (run test/tokenizers/fetch.sh build/tokenizers)";

  int compared = 0, rejected = 0;
  for (const nlohmann::ordered_json &conversation : conversations) {
    const std::string caseName = conversation["name"].get<std::string>();
    SCOPED_TRACE(name + " / " + caseName);
    ASSERT_TRUE(goldens.contains(caseName))
        << "expected.json has no case " << caseName
        << ": regenerate it with make_expected.py";
    const nlohmann::ordered_json &golden = goldens[caseName];
    ChatTemplateOptions options;
    options.addGenerationPrompt =
        conversation["add_generation_prompt"].get<bool>();
    if (conversation.contains("tools"))
      options.tools = conversation["tools"];
    if (conversation.contains("extra"))
      options.extra = conversation["extra"];
    absl::StatusOr<std::string> text =
        (*chat)->render(conversation["messages"], options);
    if (golden.contains("error")) {
      ++rejected;
      EXPECT_FALSE(text.ok())
          << "transformers raised " << golden["error"] << " but we rendered:\n"
          << (text.ok() ? *text : "");
      if (!text.ok() && golden.value("type", "") == "TemplateError")
        EXPECT_THAT(messageOf(text.status()),
                    StartsWith(golden["error"].get<std::string>()));
      continue;
    }
    ++compared;
    ASSERT_TRUE(text.ok()) << text.status();
    const std::string want = golden["text"].get<std::string>();
    EXPECT_EQ(*text, want) << firstDifference(*text, want);
  }
  EXPECT_EQ(compared + rejected, static_cast<int>(conversations.size()));
  EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, RealTemplateTest,
                         ::testing::Values("qwen2_5", "qwen3", "llama3",
                                           "llama3_2"));
#endif // TRENI_CHAT_NO_PARITY

TEST(ChatTemplateTest, RendersFromManyThreadsAtOnce) {
  auto chat = ChatTemplate::fromTokenizerConfig(configPath("qwen3"));
  ASSERT_TRUE(chat.ok()) << chat.status();
  nlohmann::ordered_json messages = nlohmann::ordered_json::parse(
      R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nyo"}])");
  ChatTemplateOptions options;
  options.tools = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "f", "parameters": {"b": 1, "a": 2}}}])");
  auto reference = (*chat)->render(messages, options);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_THAT(*reference, HasSubstr(R"({"b": 1, "a": 2})"));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto text = (*chat)->render(messages, options);
        if (!text.ok() || *text != *reference)
          ++mismatches;
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(ChatTemplateTest, ReadsSpecialTokensFromTheConfig) {
  auto llama = ChatTemplate::fromTokenizerConfig(configPath("llama3_2"));
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ((*llama)->bosToken(), "<|begin_of_text|>");
  EXPECT_EQ((*llama)->eosToken(), "<|eot_id|>");
  auto qwen = ChatTemplate::fromTokenizerConfig(configPath("qwen2_5"));
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ((*qwen)->bosToken(), "");
  EXPECT_EQ((*qwen)->eosToken(), "<|im_end|>");
}

class TempDir {
public:
  TempDir() {
    char pattern[] = "/tmp/treni_chat_XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string write(const std::string &name, const std::string &text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

private:
  std::string path_;
};

TEST(ChatTemplateTest, NamedTemplatesPickToolUseWhenToolsArePassed) {
  TempDir dir;
  nlohmann::json config = {
      {"bos_token", {{"content", "<s>"}, {"lstrip", false}}},
      {"eos_token", "</s>"},
      {"chat_template",
       {{{"name", "default"},
         {"template", "D{{ bos_token }}{{ messages|length }}"}},
        {{"name", "tool_use"},
         {"template", "T{{ tools[0].function.name }}{{ eos_token }}"}}}}};
  auto chat = ChatTemplate::fromTokenizerConfig(
      dir.write("tokenizer_config.json", config.dump()));
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ((*chat)->bosToken(), "<s>");
  nlohmann::json messages = {{{"role", "user"}, {"content", "hi"}}};
  auto plain = (*chat)->render(messages);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, "D<s>1");
  ChatTemplateOptions options;
  options.tools = {{{"type", "function"}, {"function", {{"name", "f"}}}}};
  auto withTools = (*chat)->render(messages, options);
  ASSERT_TRUE(withTools.ok()) << withTools.status();
  EXPECT_EQ(*withTools, "Tf</s>");
}

TEST(ChatTemplateTest, StandardVariablesAreAlwaysDefined) {
  auto chat = ChatTemplate::fromSource(
      "{{ tools is none }} {{ documents is none }} {{ add_generation_prompt }} "
      "{{ bos_token is defined }} {{ enable_thinking }}");
  ASSERT_TRUE(chat.ok()) << chat.status();
  ChatTemplateOptions options;
  options.addGenerationPrompt = false;
  options.extra = {{"enable_thinking", false}};
  auto text = (*chat)->render(nlohmann::json::array(), options);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "True True False False False");
}

TEST(ChatTemplateTest, BadInputsAreErrorsNamingTheProblem) {
  TempDir dir;
  auto missing =
      ChatTemplate::fromTokenizerConfig(dir.write("x", "") + ".absent");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  auto notJson =
      ChatTemplate::fromTokenizerConfig(dir.write("bad.json", "{not json"));
  EXPECT_THAT(messageOf(notJson.status()), HasSubstr("not a JSON object"));

  auto noTemplate =
      ChatTemplate::fromTokenizerConfig(dir.write("none.json", "{}"));
  EXPECT_THAT(messageOf(noTemplate.status()), HasSubstr("no chat_template"));

  auto badToken = ChatTemplate::fromTokenizerConfig(
      dir.write("tok.json", R"({"chat_template": "x", "bos_token": 5})"));
  EXPECT_THAT(messageOf(badToken.status()), HasSubstr("bos_token"));

  auto syntax = ChatTemplate::fromTokenizerConfig(
      dir.write("syntax.json", R"({"chat_template": "a\n{% if x %}b"})"));
  EXPECT_THAT(messageOf(syntax.status()), HasSubstr("line 2:"));
  EXPECT_THAT(messageOf(syntax.status()), HasSubstr("endif"));

  auto chat = ChatTemplate::fromSource("{{ messages[0].content }}");
  ASSERT_TRUE(chat.ok());
  EXPECT_FALSE((*chat)->render(nlohmann::json::object()).ok());
  ChatTemplateOptions clash;
  clash.extra = {{"messages", 1}};
  EXPECT_THAT(
      messageOf((*chat)->render(nlohmann::json::array(), clash).status()),
      HasSubstr("messages"));
}

TEST(ChatTemplateTest, ChatTemplateJinjaBesideTheConfig) {
  TempDir dir;
  dir.write("chat_template.jinja", "J{{ messages[0]['content'] }}\n");
  auto chat = ChatTemplate::fromTokenizerConfig(
      dir.write("tokenizer_config.json", "{}"));
  ASSERT_TRUE(chat.ok()) << chat.status();
  auto text = (*chat)->render(
      nlohmann::json::parse(R"([{"role":"user","content":"x"}])"));
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "Jx"); // Jinja drops one trailing newline
}

} // namespace
} // namespace treni
