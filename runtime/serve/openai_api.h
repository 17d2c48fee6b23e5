//===- openai_api.h - OpenAI requests and responses ----------*- C++ -*-===//
//
// The HTTP-free half of `treni serve`: request bodies of /v1/chat/completions
// and /v1/completions become validated structs (or an ApiError carrying the
// OpenAI error object and the HTTP status), a validated request becomes a
// GenerationRequest (chat template, tokenizer, tool-call forcing, JSON
// constraint), and a GenerationResult becomes the response body or the SSE
// chunks of a stream. Every response carries `usage` and `awareness`.
//
// Tool calls. Tools are rendered by the checkpoint's chat template. With
// tool_choice "auto" the model decides and its output is parsed for tool
// calls. With "required" or a named function the server does not trust a
// model to comply: it appends the start of the call to the prompt (Qwen's
// `<tool_call>\n{"name": "`, Llama 3's `{"name": "`), constrains the name to
// the declared tools and the arguments to one JSON object (constrained
// decoding, see OutputConstraint), and closes the call itself. The argument
// values are the model's; only their syntax is forced.
//
// response_format {"type": "json_object"} adds a system instruction and
// constrains the output to one JSON object; a JSON schema is not enforced
// (json_schema is refused).
//
// Request JSON keeps the client's key order (nlohmann::ordered_json) from the
// body to the chat template, as transformers' tojson does, and nests at most
// kMaxJsonDepth levels inside each field (support/json_bounded.h).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/sampler.h"
#include "runtime/serve/generation.h"
#include "runtime/text/tool_calls.h"
#include "support/json.h"
#include "support/json_bounded.h"

namespace treni {

class ChatTemplate;
class Tokenizer;

/// An OpenAI-style error: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param; ///< empty: null
  std::string code;  ///< empty: null
  nlohmann::json toJson() const;
};

ApiError invalidRequest(std::string message, std::string param = "",
                        std::string code = "invalid_value");

/// The `code` of the error that parsing or preparing a request returns when
/// an exception escaped it: a bug, since every bad input has an error of its
/// own (the fuzz targets count it as a finding). The message says nothing
/// of the exception.
inline constexpr char kUnexpectedErrorCode[] = "unexpected_error";

template <typename T> using ApiResult = std::variant<T, ApiError>;

/// Limits the server enforces while parsing.
struct ApiLimits {
  int64_t maxSeq = 4096;               ///< the engine's context
  std::vector<std::string> modelNames; ///< accepted `model` values
  int maxStopStrings = 16;
};

enum class ToolChoiceMode { None, Auto, Required, Function };

struct ChatRequest {
  std::string model;
  /// Normalized: each {role, content: string|null, tool_calls?, tool_call_id?,
  /// name?}; "developer" becomes "system"; content parts joined; tool-call
  /// arguments parsed into objects (what chat templates expect).
  nlohmann::ordered_json messages;
  std::optional<int64_t> maxTokens;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool logprobs = false;
  int topLogprobs = 0;
  nlohmann::ordered_json tools =
      nullptr; ///< array of {"type": "function", ...} or null
  ToolChoiceMode toolChoice = ToolChoiceMode::Auto;
  std::string toolChoiceName; ///< for ToolChoiceMode::Function
  bool jsonObject = false;    ///< response_format json_object
  /// vLLM's chat_template_kwargs: extra template variables (e.g. Qwen3's
  /// enable_thinking).
  nlohmann::ordered_json templateKwargs = nlohmann::ordered_json::object();
  bool stream = false;
  bool includeUsage = false;
  /// vLLM's ignore_eos: generate max_tokens even past an EOS (benchmarks).
  bool ignoreEos = false;
};

struct CompletionRequest {
  std::string model;
  std::string prompt;             ///< a string prompt, or
  std::vector<int32_t> promptIds; ///< a token-id prompt
  int64_t maxTokens = 16;         ///< OpenAI's default
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::optional<int> logprobs; ///< 0..5 alternatives per token
  bool stream = false;
  bool includeUsage = false;
  /// vLLM's ignore_eos: generate max_tokens even past an EOS (benchmarks).
  bool ignoreEos = false;
};

/// POST /v1/embeddings: `input` is a string, an array of strings, an array of
/// token ids (one input) or an array of such arrays; at most
/// kMaxEmbeddingInputs inputs, none empty.
inline constexpr int64_t kMaxEmbeddingInputs = 2048;
struct EmbeddingsRequest {
  std::string model;
  std::vector<std::string> texts;                ///< string inputs, or
  std::vector<std::vector<int32_t>> tokenInputs; ///< token-id inputs
  bool base64 = false;    ///< encoding_format "base64" (else "float")
  int64_t dimensions = 0; ///< 0: the model's; else the first N values
};
ApiResult<EmbeddingsRequest> parseEmbeddingsRequest(std::string_view body,
                                                    const ApiLimits &limits);
/// The response: one {"object": "embedding", "index", "embedding"} per
/// vector (floats, or base64 of their little-endian float32 bytes), the
/// model and usage (prompt_tokens = total_tokens = `promptTokens`).
nlohmann::json
buildEmbeddingsResponse(const std::string &model,
                        absl::Span<const std::vector<float>> vectors,
                        bool base64, int64_t promptTokens);

/// POST /v1/rerank (the shape Cohere, Jina, vLLM and llama-server take):
/// `query`, `documents` (strings or {"text": ...} objects, at most
/// kMaxRerankDocuments), `top_n` (default: all), `return_documents` (default
/// true), and `instruction` (Qwen3-Reranker's, optional).
inline constexpr int64_t kMaxRerankDocuments = 1024;
struct RerankRequest {
  std::string model, query, instruction;
  std::vector<std::string> documents;
  int64_t topN = 0; ///< 0: every document
  bool returnDocuments = true;
};
ApiResult<RerankRequest> parseRerankRequest(std::string_view body,
                                            const ApiLimits &limits);
/// {"id", "model", "results": [{"index", "relevance_score", "document":
/// {"text"}}] (best first, top_n of them), "usage": {"total_tokens"}}.
nlohmann::json buildRerankResponse(const RerankRequest &request,
                                   absl::Span<const double> scores,
                                   int64_t tokens);

/// Parses and validates a request body. Errors name the parameter: malformed
/// JSON or invalid UTF-8, JSON nesting deeper than kMaxJsonDepth inside a
/// field, numbers too large for a double, wrong types, out-of-range values,
/// an unknown model (404), unsupported options (n > 1, echo, json_schema,
/// ...). Never throws.
ApiResult<ChatRequest> parseChatRequest(std::string_view body,
                                        const ApiLimits &limits);
ApiResult<CompletionRequest> parseCompletionRequest(std::string_view body,
                                                    const ApiLimits &limits);

/// The top-level `model` string of a request body, read without parsing
/// the rest (the server routes by it before the model's own parser runs);
/// nullopt when the body is no JSON object or has no string `model` (the
/// parser then says what is wrong). Never throws.
std::optional<std::string> requestedModel(std::string_view body);

/// The tool-call format of a chat template (runtime/text/tool_calls.h); a
/// template that names none is treated as Qwen's <tool_call> tags.
ToolCallFormat servedToolCallFormat(std::string_view templateSource);

/// What the API layer needs of the served model (all owned elsewhere).
struct ServedModel {
  std::string name;
  const Tokenizer *tokenizer = nullptr;
  const ChatTemplate *chatTemplate = nullptr; ///< null: chat answers 400
  ToolCallFormat toolFormat = ToolCallFormat::Qwen;
  int64_t maxSeq = 4096;
  double lowConfidenceThreshold = kDefaultLowConfidenceProbability;
};

/// A request made ready for the Generator.
struct PreparedRequest {
  GenerationRequest generation;
  std::unique_ptr<OutputConstraint>
      constraint; ///< generation.constraint points here
  /// Output text the server wrote itself around the generated text (a
  /// forced tool call's opening and closing).
  std::string outputPrefix, outputSuffix;
  bool forcedToolCall = false;
  bool parseToolCalls = false; ///< tools offered and tool_choice not none
  std::string forcedToolName;  ///< for a named function
  bool logprobs = false;
  int topLogprobs = 0;
};

/// Renders the chat template (tools included), appends a forced tool-call
/// opening, tokenizes, and checks the prompt fits max_seq (400,
/// context_length_exceeded). max_tokens defaults to what is left of the
/// context. Never throws.
ApiResult<PreparedRequest> prepareChat(const ChatRequest &request,
                                       const ServedModel &model);
ApiResult<PreparedRequest> prepareCompletion(const CompletionRequest &request,
                                             const ServedModel &model);

/// The bytes of a token on its own (Generator::tokenBytes).
using TokenBytesFn = std::function<std::string(int32_t)>;

/// Identity of one response: id ("chatcmpl-..." / "cmpl-..."), created (Unix
/// seconds), model name.
struct ResponseIdentity {
  std::string id;
  int64_t created = 0;
  std::string model;
};
ResponseIdentity newIdentity(std::string_view prefix, std::string model);

/// The assistant message's content and tool calls from the full output.
struct ParsedOutput {
  std::optional<std::string> content; ///< null when only tool calls
  nlohmann::json toolCalls = nlohmann::json::array(); ///< OpenAI tool_calls
};
ParsedOutput parseOutput(const PreparedRequest &prepared,
                         const std::string &text, ToolCallFormat format);

/// OpenAI's finish_reason for a finished generation ("stop", "length",
/// "tool_calls").
std::string finishReasonOf(const GenerationResult &result,
                           const ParsedOutput &output);

nlohmann::json usageJson(const GenerationResult &result);

nlohmann::json buildChatResponse(const ResponseIdentity &identity,
                                 const PreparedRequest &prepared,
                                 const GenerationResult &result,
                                 const ParsedOutput &output,
                                 const TokenBytesFn &tokenBytes);
nlohmann::json buildCompletionResponse(const ResponseIdentity &identity,
                                       const PreparedRequest &prepared,
                                       const GenerationResult &result,
                                       const TokenBytesFn &tokenBytes);

/// {"token", "logprob", "bytes", "top_logprobs"} for chat logprobs.
nlohmann::json chatLogprobs(absl::Span<const GeneratedToken> tokens,
                            int topLogprobs, const TokenBytesFn &tokenBytes);

/// Turns a generation into SSE events ("data: {...}\n\n" strings) for a
/// streamed chat completion or completion. Feed it the generator's deltas,
/// then finish().
class StreamEncoder {
public:
  enum class Kind { Chat, Completion };
  StreamEncoder(Kind kind, ResponseIdentity identity,
                const PreparedRequest &prepared, ToolCallFormat toolFormat,
                bool includeUsage, TokenBytesFn tokenBytes);
  /// The opening events (chat: the role delta).
  std::vector<std::string> start();
  /// Events for one generator delta (none while tool calls are buffered).
  std::vector<std::string> delta(std::string_view text,
                                 absl::Span<const GeneratedToken> tokens);
  /// The remaining content or tool calls, the finish_reason chunk (with
  /// awareness), the usage chunk if asked, and `data: [DONE]`.
  std::vector<std::string> finish(const GenerationResult &result);

private:
  std::vector<std::string> delta(std::string_view text,
                                 absl::Span<const GeneratedToken> tokens,
                                 bool raw);
  nlohmann::json chunk(nlohmann::json choice) const;
  Kind kind_;
  ResponseIdentity identity_;
  const PreparedRequest &prepared_;
  ToolCallFormat toolFormat_;
  bool includeUsage_;
  TokenBytesFn tokenBytes_;
  bool toolCalls_; ///< tool calls possible: hold back what may be one
  bool buffering_; ///< a forced tool call: send it at the end
  std::vector<GeneratedToken> bufferedTokens_;
  std::string generated_; ///< all text so far (tool calls possible)
  size_t sent_ = 0;       ///< bytes of generated_ sent as content
};

/// One SSE event carrying `json`.
std::string sseEvent(const nlohmann::json &json);

} // namespace treni
