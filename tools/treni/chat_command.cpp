//===- chat_command.cpp - `treni chat` ------------------------------------===//
//
//   treni chat [MODEL] [--system TEXT] [--chat-template FILE] [--max-tokens N]
//              [--temperature T --top-k K --top-p P --seed S --stop STR]
//
// A multi-turn chat on stdin, one line per user turn, through the model's
// chat template: `/reset` clears the history, `/exit` quits. Each reply is
// streamed on stdout and followed by its tokens, TTFT, tok/s and perplexity
// on stderr.
//
//===----------------------------------------------------------------------===//

#include <cstdio>
#include <iostream>
#include <string>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "runtime/text/chat_template.h"
#include "tools/treni/cli_flags.h"

namespace cl = llvm::cl;

namespace treni::cli {
namespace {

cl::opt<std::string> chatModel(cl::Positional,
                               cl::desc("[MODEL_DIR | model.treni]"),
                               cl::init(kDefaultModelDir),
                               cl::sub(chatSubcommand()));
cl::opt<std::string> systemPrompt("system", cl::desc("System message"),
                                  cl::init(""), cl::sub(chatSubcommand()));

/// Tokens a reply may take unless --max-tokens says otherwise.
constexpr int64_t kChatMaxTokens = 512;

/// The conversation so far, as the chat template takes it.
class History {
public:
  History() { reset(); }
  void reset() {
    messages_ = nlohmann::json::array();
    if (!systemPrompt.empty())
      add("system", systemPrompt);
  }
  void add(const std::string &role, const std::string &content) {
    messages_.push_back({{"role", role}, {"content", content}});
  }
  /// Drops the last message (a turn that failed).
  void dropLast() { messages_.erase(messages_.end() - 1); }
  const nlohmann::json &messages() const { return messages_; }

private:
  nlohmann::json messages_;
};

/// One user turn: renders the history, streams the reply and records it.
/// An error leaves the history as it was. Turn k samples with seed + k.
absl::Status chatTurn(const TextModel &model, Generator &generator,
                      GenerationRequest request, History &history,
                      const std::string &line, uint64_t &turn) {
  history.add("user", line);
  auto prompt = model.loaded.chatTemplate->render(history.messages());
  if (!prompt.ok()) {
    history.dropLast();
    return prompt.status();
  }
  request.sampling.seed += turn++;
  // The template writes the special tokens itself.
  request.promptIds =
      model.loaded.tokenizer->encode(*prompt, /*addSpecialTokens=*/false);
  auto result = generator.generate(request, printDelta);
  std::printf("\n");
  std::fflush(stdout);
  if (!result.ok()) {
    history.dropLast();
    return absl::Status(result.status().code(),
                        absl::StrCat(result.status().message(),
                                     " (/reset clears the history)"));
  }
  history.add("assistant", result->text);
  const GenerationTiming &t = result->awareness.timing;
  std::fprintf(
      stderr,
      "[%lld tokens, TTFT %.1f ms (%lld of %lld prompt tokens cached), "
      "%.1f tok/s, perplexity %.2f]\n",
      (long long)t.completionTokens, t.timeToFirstTokenSeconds() * 1e3,
      (long long)t.cachedPromptTokens, (long long)t.promptTokens,
      t.decodeTokensPerSecond(), result->awareness.perplexity);
  return absl::OkStatus();
}

} // namespace

int runChatCommand() {
  auto request = requestFromFlags(kChatMaxTokens);
  if (!request.ok())
    return fail(request.status());
  auto model = loadForText(chatModel);
  if (!model.ok())
    return fail(model.status());
  if (!model->loaded.chatTemplate)
    return fail(absl::NotFoundError(
        "the model has no chat template (tokenizer_config.json "
        "chat_template); give one with --chat-template FILE"));
  Generator generator(*model->loaded.engine, *model->loaded.tokenizer,
                      model->generatorOptions());
  History history;
  bool interactive = isatty(fileno(stdin));
  if (interactive)
    std::fprintf(stderr, "chat: /exit to quit, /reset to start over\n");
  uint64_t turn = 0;
  std::string line;
  while (true) {
    if (interactive) {
      std::fprintf(stderr, "> ");
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line) || line == "/exit" || line == "/quit")
      break;
    if (line == "/reset") {
      history.reset();
      std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line.empty())
      continue;
    if (absl::Status status =
            chatTurn(*model, generator, *request, history, line, turn);
        !status.ok())
      fail(status); // the chat goes on
  }
  return 0;
}

} // namespace treni::cli
