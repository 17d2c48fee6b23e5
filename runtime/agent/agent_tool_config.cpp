//===- agent_tool_config.cpp - tools a workflow run may call --------------===//

#include "runtime/agent/agent_tool_config.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/tools/builtin_tools.h"
#include "runtime/tools/external_tools.h"
#include "runtime/tools/tool_registry.h"

namespace treni {
using json = nlohmann::json;

absl::Status configureAgentTools(ToolRegistry &registry, const json &config,
                                 const std::string &baseDir) {
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
    if (key != "sqlite" && key != "files" && key != "http" &&
        key != "external" && key != "faults")
      return absl::InvalidArgumentError(
          absl::StrCat("tools configuration: unknown key '", key,
                       "' (expected sqlite, files, http, external, faults)"));
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
                                         const std::string &path) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded())
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is not valid JSON"));
  absl::Status status = configureAgentTools(
      registry, config, std::filesystem::absolute(path).parent_path().string());
  if (!status.ok())
    return absl::Status(
        status.code(), absl::StrCat(path, ": ", std::string(status.message())));
  return absl::OkStatus();
}

} // namespace treni
