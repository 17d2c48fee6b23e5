//===- agent_tool_config.h - tools a workflow run may call ------*- C++ -*-===//
//
// The `--tools-config` file of `treni agent run` and `treni serve`: which
// built-in tools to register (SQLite, sandboxed files, http.get, retrieval
// over the served embedding model), external tools, and fault injection for
// tests.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "runtime/agent/rag_models.h"

namespace treni {

class ToolRegistry;

/// The models of rag.ingest / rag.search: the served models a "rag"
/// section names (an error naming what is missing or of the wrong kind).
using RagModelResolver =
    std::function<absl::StatusOr<RagModels>(const RagModelRequest &request)>;

/// A `--tools-config` file:
///   {"sqlite": {"path": ":memory:", "read_only": false},
///    "files": {"sandbox": "DIR", "allow_write": true},
///    "http": {"allowed_hosts": ["127.0.0.1"]},
///    "rag": {"path": "rag.db", "embedding_model": "NAME", "reranker": "NAME",
///            "query_prefix": "...", "chunk_chars": 1200,
///            "overlap_chars": 200, "exact_limit": 1000000,
///            "rerank_candidates": 20},
///    "external": {<registerExternalToolsFromJson's format>},
///    "faults": {<FaultInjector::loadJson's format>}}
/// Every key is optional; an unknown key is an error. Registers the
/// configured tools in `registry` (relative paths against `baseDir`); "rag"
/// needs `rag` to find its models (`treni serve`'s served ones, `treni
/// agent run`'s --embedding-model and --reranker-model).
absl::Status configureAgentTools(ToolRegistry &registry,
                                 const nlohmann::json &config,
                                 const std::string &baseDir = "",
                                 const RagModelResolver &rag = nullptr);

/// configureAgentTools() with the JSON file `path` (relative paths in it
/// against the file's directory). Errors name the file.
absl::Status configureAgentToolsFromFile(ToolRegistry &registry,
                                         const std::string &path,
                                         const RagModelResolver &rag = nullptr);

} // namespace treni
