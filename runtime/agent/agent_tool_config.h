//===- agent_tool_config.h - tools a workflow run may call ------*- C++ -*-===//
//
// The `--tools-config` file of `treni agent run` and `treni serve`: which
// built-in tools to register (SQLite, sandboxed files, http.get), external
// tools, and fault injection for tests.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace treni {

class ToolRegistry;

/// A `--tools-config` file:
///   {"sqlite": {"path": ":memory:", "read_only": false},
///    "files": {"sandbox": "DIR", "allow_write": true},
///    "http": {"allowed_hosts": ["127.0.0.1"]},
///    "external": {<registerExternalToolsFromJson's format>},
///    "faults": {<FaultInjector::loadJson's format>}}
/// Every key is optional; an unknown key is an error. Registers the
/// configured tools in `registry` (relative paths against `baseDir`).
absl::Status configureAgentTools(ToolRegistry &registry,
                                 const nlohmann::json &config,
                                 const std::string &baseDir = "");

/// configureAgentTools() with the JSON file `path` (relative paths in it
/// against the file's directory). Errors name the file.
absl::Status configureAgentToolsFromFile(ToolRegistry &registry,
                                         const std::string &path);

} // namespace treni
