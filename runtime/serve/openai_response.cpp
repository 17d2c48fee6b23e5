//===- openai_response.cpp - OpenAI responses and stream chunks ----------===//
//
// Responses are built as nlohmann::json (their key order is ours): the whole
// body of a request that is not streamed, and the SSE chunks of one that is
// (StreamEncoder). Requests are read in openai_api.cpp.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "runtime/serve/openai_api.h"
#include "runtime/text/tool_calls.h"
#include "support/json.h"

namespace treni {

using json = nlohmann::json;

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

/// A logprob as the API reports it: a number, at least kLogprobFloor. JSON
/// has no -Infinity (a token the model gives no chance) nor NaN, and OpenAI's
/// schema wants a number: like vLLM, anything below the floor, non-finite
/// values included, is the floor, so reported logprobs keep their order.
json reportedLogprob(float value) {
  constexpr double kLogprobFloor = -9999.0;
  return std::isfinite(value) && value > kLogprobFloor ? json(value)
                                                       : json(kLogprobFloor);
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
      top.push_back(
          {{"token", altBytes},
           {"logprob", reportedLogprob(token.alternatives[i].logprob)},
           {"bytes", bytesArray(altBytes)}});
    }
    content.push_back({{"token", bytes},
                       {"logprob", reportedLogprob(token.logprob)},
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
    logprobs.push_back(reportedLogprob(token.logprob));
    json top = json::object();
    for (int i = 0; i < topLogprobs && i < int(token.alternatives.size()); ++i)
      top[tokenBytes(token.alternatives[i].token)] =
          reportedLogprob(token.alternatives[i].logprob);
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
