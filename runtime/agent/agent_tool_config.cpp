//===- agent_tool_config.cpp - tools a workflow run may call --------------===//

#include "runtime/agent/agent_tool_config.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/tools/builtin_tools.h"
#include "runtime/tools/external_tools.h"
#include "runtime/tools/rag_tools.h"
#include "runtime/tools/tool_registry.h"
#include "support/status.h"

namespace treni {
using json = nlohmann::json;

namespace {

/// The "rag" section: its models from `resolve`, then the tools.
absl::Status configureRag(ToolRegistry &registry, const json &section,
                          const std::string &path,
                          const RagModelResolver &resolve) {
  for (auto &[key, value] : section.items())
    if (key != "path" && key != "embedding_model" && key != "reranker" &&
        key != "query_prefix" && key != "chunk_chars" &&
        key != "overlap_chars" && key != "exact_limit" &&
        key != "rerank_candidates")
      return absl::InvalidArgumentError(absl::StrCat(
          "tools configuration: rag: unknown key '", key,
          "' (expected path, embedding_model, reranker, query_prefix, "
          "chunk_chars, overlap_chars, exact_limit, rerank_candidates)"));
  if (!section.contains("embedding_model") ||
      !section["embedding_model"].is_string())
    return absl::InvalidArgumentError(
        "tools configuration: rag.embedding_model (the served embedding "
        "model's name) is required");
  if (!resolve)
    return absl::InvalidArgumentError(
        "tools configuration: the rag tools need an embedding model in the "
        "same process (treni serve --model NAME=DIR:embedding, or treni "
        "agent run --embedding-model NAME=DIR)");
  RagModelRequest request;
  request.embeddingModel = section["embedding_model"].get<std::string>();
  request.reranker = section.value("reranker", std::string());
  request.queryPrefix = section.value("query_prefix", std::string());
  TRENI_ASSIGN_OR_RETURN(RagModels models, resolve(request));
  RagToolConfig config;
  config.path = path;
  config.chunkChars = section.value("chunk_chars", config.chunkChars);
  config.overlapChars = section.value("overlap_chars", config.overlapChars);
  config.exactLimit = section.value("exact_limit", config.exactLimit);
  config.rerankCandidates =
      section.value("rerank_candidates", config.rerankCandidates);
  return registerRagTools(registry, config, std::move(models));
}

} // namespace

absl::Status configureAgentTools(ToolRegistry &registry, const json &config,
                                 const std::string &baseDir,
                                 const RagModelResolver &rag) {
  if (!config.is_object())
    return absl::InvalidArgumentError(
        "the tools configuration must be a JSON object");
  auto resolve = [&](const std::string &path) {
    if (path.empty() || path == ":memory:" || baseDir.empty() ||
        std::filesystem::path(path).is_absolute())
      return path;
    return (std::filesystem::path(baseDir) / path).string();
  };
  for (auto &[key, value] : config.items()) {
    if (key != "sqlite" && key != "files" && key != "http" && key != "rag" &&
        key != "external" && key != "faults")
      return absl::InvalidArgumentError(absl::StrCat(
          "tools configuration: unknown key '", key,
          "' (expected sqlite, files, http, rag, external, faults)"));
    if (!value.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat("tools configuration: '", key, "' must be an object"));
  }
  try {
    if (config.contains("sqlite")) {
      const json &s = config["sqlite"];
      SqliteToolConfig sqlite;
      sqlite.path = resolve(s.value("path", std::string(":memory:")));
      sqlite.readOnly = s.value("read_only", false);
      if (absl::Status st = registerSqliteTools(registry, sqlite); !st.ok())
        return st;
    }
    if (config.contains("files")) {
      const json &f = config["files"];
      if (!f.contains("sandbox") || !f["sandbox"].is_string())
        return absl::InvalidArgumentError(
            "tools configuration: files.sandbox (a directory) is required");
      FileToolConfig files;
      files.sandboxDir = resolve(f["sandbox"].get<std::string>());
      files.allowWrite = f.value("allow_write", true);
      if (absl::Status st = registerFileTools(registry, files); !st.ok())
        return st;
    }
    if (config.contains("http")) {
      HttpGetConfig http;
      if (config["http"].contains("allowed_hosts"))
        http.allowedHosts =
            config["http"]["allowed_hosts"].get<std::vector<std::string>>();
      if (absl::Status st = registerHttpGetTool(registry, http); !st.ok())
        return st;
    }
    if (config.contains("rag"))
      if (absl::Status st = configureRag(
              registry, config["rag"],
              resolve(config["rag"].value("path", std::string(":memory:"))),
              rag);
          !st.ok())
        return st;
    if (config.contains("external")) {
      auto processes =
          registerExternalToolsFromJson(registry, config["external"]);
      if (!processes.ok())
        return processes.status();
    }
    if (config.contains("faults"))
      if (absl::Status st = registry.faults().loadJson(config["faults"]);
          !st.ok())
        return st;
  } catch (const json::exception &e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tools configuration: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status configureAgentToolsFromFile(ToolRegistry &registry,
                                         const std::string &path,
                                         const RagModelResolver &rag) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded())
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not valid JSON"));
  absl::Status status = configureAgentTools(
      registry, config, std::filesystem::absolute(path).parent_path().string(),
      rag);
  if (!status.ok())
    return absl::Status(
        status.code(), absl::StrCat(path, ": ", std::string(status.message())));
  return absl::OkStatus();
}

} // namespace treni
