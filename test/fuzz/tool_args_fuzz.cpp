//===- tool_args_fuzz.cpp - libFuzzer target for tool inputs --------------===//
//
// What a model (or a tools config) hands the tool layer, as arbitrary bytes:
// the first byte picks the entry point, the rest is its input.
//   0: a tool signature (JSON) -> fromJson, and the round trip of what parses
//   1: a URL -> parseHttpUrl
//   2: a sandbox path -> Sandbox::splitPath
//   3: a fault injection spec (JSON) -> loadJson, then a few decisions
//   4..: a call of a built-in tool with JSON arguments (SQLite in memory, a
//        file sandbox in a temporary directory, http.get with no allowed
//        host, so nothing leaves the process), or of rag.ingest / rag.search
//        (in memory, with a fake embedder and reranker: hashed bytes; a
//        small exact limit, so the HNSW path runs too)
// JSON inputs are parsed as the server parses them (parseJsonBounded).
// Besides the sanitizers it checks the promises: a failure always has a
// type and a message, parsed URLs and paths are well formed, signatures
// round-trip, and every result serializes within the registry's result cap.
// The seeds include the hostile tester's reproducers (issue 16): huge
// SQLite values, leaking functions and PRAGMAs, ATTACH, deep expressions, a
// trailing slash, appends past the quota, Host and Content-Length headers,
// deeply nested arguments.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/tools/builtin_tools.h"
#include "runtime/tools/rag_tools.h"
#include "runtime/tools/sandbox_fs.h"
#include "support/json_bounded.h"

namespace {

using json = nlohmann::json;
using namespace treni;

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

/// A temporary directory, removed at exit (never destroyed before that).
const std::string &sandboxDir() {
  static const std::string *dir = [] {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "treni-fuzz-XXXXXX").string();
    check(::mkdtemp(pattern.data()) != nullptr);
    auto *path = new std::string(pattern);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(sandboxDir(), ignored);
    });
    return path;
  }();
  return *dir;
}

constexpr size_t kMaxResultBytes = 1 << 16;

/// A deterministic stand-in for an embedding model: byte trigrams hashed
/// into 16 dimensions (a text of fewer than 3 bytes gets the first axis).
std::vector<float> fakeEmbedding(std::string_view text) {
  std::vector<float> vector(16, 0.0f);
  for (size_t i = 0; i + 2 < text.size(); ++i)
    vector[(uint8_t(text[i]) * 31 + uint8_t(text[i + 1]) * 7 +
            uint8_t(text[i + 2])) %
           16] += 1;
  if (text.size() < 3)
    vector[0] = 1;
  return vector;
}

RagModels fakeRagModels() {
  RagModels models;
  models.embeddingModel = "fuzz-trigrams";
  models.embed = [](absl::Span<const std::string> texts, bool,
                    const ToolContext &)
      -> absl::StatusOr<std::vector<std::vector<float>>> {
    std::vector<std::vector<float>> vectors;
    for (const std::string &text : texts)
      vectors.push_back(fakeEmbedding(text));
    return vectors;
  };
  models.rerank =
      [](const std::string &query, absl::Span<const std::string> documents,
         const ToolContext &) -> absl::StatusOr<std::vector<float>> {
    std::vector<float> scores;
    for (const std::string &document : documents)
      scores.push_back(float(document.size() % 7) - float(query.size() % 3));
    return scores;
  };
  return models;
}

/// A registry with the built-ins, renewed now and then so the in-memory
/// database does not grow without bound.
ToolRegistry &registry() {
  static std::unique_ptr<ToolRegistry> instance;
  static int uses = 0;
  if (!instance || ++uses % 2000 == 0) {
    instance = std::make_unique<ToolRegistry>();
    BuiltinToolsConfig config;
    config.sqlite = SqliteToolConfig();
    config.sqlite->statementTimeout = std::chrono::milliseconds(20);
    config.sqlite->maxRows = 100;
    config.sqlite->maxValueBytes = 4096;
    config.sqlite->maxResultBytes = 16384;
    // Small quotas also keep the fuzzer's own disk use bounded.
    config.files = FileToolConfig{sandboxDir(), 4096, 4096, true, 8192, 65536};
    config.http = HttpGetConfig();
    config.http->allowedHosts = {};
    check(registerBuiltinTools(*instance, config).ok());
    RagToolConfig rag;
    rag.chunkChars = 64;
    rag.overlapChars = 16;
    rag.exactLimit = 32;
    rag.embedBatch = 8;
    check(registerRagTools(*instance, rag, fakeRagModels()).ok());
    instance->setMaxResultBytes(kMaxResultBytes);
  }
  return *instance;
}

/// JSON as the server reads it; nullopt when it is not (bounded) JSON.
std::optional<json> parse(std::string_view text) {
  absl::StatusOr<json> value = parseJsonBounded(text);
  if (!value.ok())
    return std::nullopt;
  return std::move(*value);
}

void fuzzSignature(std::string_view text) {
  std::optional<json> parsed = parse(text);
  if (!parsed)
    return;
  const json &value = *parsed;
  absl::StatusOr<ToolSignature> signature = ToolSignature::fromJson(value);
  if (!signature.ok()) {
    check(!signature.status().message().empty());
    return;
  }
  absl::StatusOr<ToolSignature> again =
      ToolSignature::fromJson(signature->toJson());
  check(again.ok() && again->toJson() == signature->toJson());
  (void)dumpJson(signature->toOpenAiTool());
  absl::StatusOr<json> args = validateToolArguments(*signature, value);
  check(args.ok() || !args.status().message().empty());
}

void fuzzUrl(std::string_view text) {
  absl::StatusOr<HttpUrl> url = parseHttpUrl(text);
  if (!url.ok()) {
    check(!url.status().message().empty());
    return;
  }
  check(url->scheme == "http" || url->scheme == "https");
  check(!url->host.empty() && url->port >= 1 && url->port <= 65535);
  check(!url->target.empty() && url->target[0] == '/');
  check(url->target.find_first_of(" \r\n#") == std::string::npos);
  check(!checkHostAllowed(*url, {}).ok());
}

void fuzzPath(std::string_view text) {
  absl::StatusOr<std::vector<std::string>> parts = Sandbox::splitPath(text);
  if (!parts.ok()) {
    check(!parts.status().message().empty());
    return;
  }
  check(!parts->empty());
  for (const std::string &part : *parts)
    check(!part.empty() && part != "." && part != ".." &&
          part.find('/') == std::string::npos &&
          part.find('\0') == std::string::npos);
}

void fuzzFaults(std::string_view text) {
  std::optional<json> value = parse(text);
  if (!value)
    return;
  FaultInjector injector;
  absl::Status status = injector.loadJson(*value);
  if (!status.ok()) {
    check(!status.message().empty());
    return;
  }
  for (int i = 0; i < 8; ++i) {
    FaultDecision decision = injector.next("t");
    check(decision.delay.count() >= 0);
  }
}

void fuzzCall(uint8_t selector, std::string_view text) {
  // The seeds' selectors (0..4) keep their tools as the list grows.
  static const char *const kTools[] = {
      "sqlite.exec", "sqlite.query", "file.read", "file.write",
      "http.get",    "rag.ingest",   "rag.search"};
  const char *tool = kTools[selector % std::size(kTools)];
  json args = parse(text).value_or(json(json::value_t::discarded));
  if (args.is_discarded()) {
    // Not JSON: the text as the tool's main string argument.
    std::string value(text);
    std::string_view name = tool;
    if (name.substr(0, 6) == "sqlite")
      args = {{"sql", value}};
    else if (name == "http.get")
      args = {{"url", value}};
    else if (name == "file.write")
      args = {{"path", value}, {"content", value}};
    else if (name == "rag.ingest")
      args = {{"collection", "fuzz"}, {"texts", {value}}};
    else if (name == "rag.search")
      args = {{"collection", "fuzz"}, {"query", value}};
    else
      args = {{"path", value}};
  }
  ToolResult result = registry().call(tool, args);
  if (!result.ok)
    check(!result.error.type.empty() && !result.error.message.empty());
  else
    check(jsonValueDepth(result.value) <= kMaxJsonDepth &&
          dumpJson(result.value).size() <= kMaxResultBytes);
  (void)dumpJson(result.toJson());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view text(reinterpret_cast<const char *>(data) + 1, size - 1);
  switch (data[0] % 8) {
  case 0:
    fuzzSignature(text);
    break;
  case 1:
    fuzzUrl(text);
    break;
  case 2:
    fuzzPath(text);
    break;
  case 3:
    fuzzFaults(text);
    break;
  default:
    fuzzCall(data[0] / 8, text);
    break;
  }
  return 0;
}
