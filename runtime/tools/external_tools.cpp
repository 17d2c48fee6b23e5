//===- external_tools.cpp - tools in another process or behind HTTP -------===//

#include "runtime/tools/external_tools.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "support/json_bounded.h"

namespace treni {

namespace {

using json = nlohmann::json;

/// At most the last `limit` bytes of `text`, for messages.
std::string tail(const std::string &text, size_t limit = 500) {
  if (text.size() <= limit)
    return text;
  return "..." + text.substr(text.size() - limit);
}

std::string head(const std::string &text, size_t limit = 200) {
  if (text.size() <= limit)
    return text;
  return text.substr(0, limit) + "...";
}

int64_t millisSince(ToolClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             ToolClock::now() - start)
      .count();
}

/// The status for an {"ok": false, "error": ...} answer.
absl::Status errorFromEnvelope(const json &error, const std::string &who) {
  std::string type(tool_error::kToolError), message;
  if (error.is_string()) {
    message = error.get<std::string>();
  } else if (error.is_object()) {
    if (auto it = error.find("type"); it != error.end() && it->is_string())
      type = it->get<std::string>();
    if (auto it = error.find("message"); it != error.end() && it->is_string())
      message = it->get<std::string>();
  }
  if (message.empty())
    message = absl::StrCat(who, " reported an error without a message");
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (type == tool_error::kInvalidArguments)
    code = absl::StatusCode::kInvalidArgument;
  else if (type == tool_error::kTimeout)
    code = absl::StatusCode::kDeadlineExceeded;
  else if (type == tool_error::kUnavailable)
    code = absl::StatusCode::kUnavailable;
  else if (type == tool_error::kNotFound)
    code = absl::StatusCode::kNotFound;
  else if (type == tool_error::kPermissionDenied)
    code = absl::StatusCode::kPermissionDenied;
  return toolErrorStatus(code, type, message);
}

absl::Status protocolError(const std::string &message) {
  return toolErrorStatus(absl::StatusCode::kInternal,
                         tool_error::kProtocolError, message);
}

} // namespace

//===----------------------------------------------------------------------===//
// JSON-lines processes
//===----------------------------------------------------------------------===//

ExternalProcess::ExternalProcess(ExternalProcessConfig config)
    : config_(std::move(config)) {}

ExternalProcess::~ExternalProcess() = default;

absl::Status ExternalProcess::start() {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  return startLocked();
}

absl::Status ExternalProcess::startLocked() {
  if (process_ && !process_->exitDescription(false))
    return absl::OkStatus();
  if (process_) {
    lastStderr_ = process_->stderrTail();
    process_.reset();
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> spawned =
      Subprocess::spawn(config_.process);
  if (!spawned.ok())
    return absl::Status(spawned.status().code(),
                        absl::StrCat("external tool process '", config_.name,
                                     "': ", spawned.status().message()));
  process_ = std::move(*spawned);
  ++starts_;
  return absl::OkStatus();
}

void ExternalProcess::stop() {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  if (!process_)
    return;
  lastStderr_ = process_->stderrTail();
  process_.reset(); // kills and reaps
}

std::optional<pid_t> ExternalProcess::pid() const {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  if (!process_)
    return std::nullopt;
  return process_->pid();
}

int64_t ExternalProcess::starts() const {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  return starts_;
}

int64_t ExternalProcess::restarts() const {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  return std::max<int64_t>(0, starts_ - 1);
}

std::string ExternalProcess::stderrTail() const {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  return process_ ? process_->stderrTail() : lastStderr_;
}

std::string ExternalProcess::lastFailure() const {
  std::lock_guard<std::timed_mutex> lock(mutex_);
  return lastFailure_;
}

absl::Status ExternalProcess::fail(absl::Status status, const std::string &tool,
                                   ToolClock::time_point started) {
  pid_t pid = process_->pid();
  std::string what = absl::StrCat("external tool process '", config_.name,
                                  "' (pid ", pid, ")");
  std::string message;
  absl::StatusCode code = status.code();
  switch (code) {
  case absl::StatusCode::kDeadlineExceeded:
  case absl::StatusCode::kCancelled:
    process_->kill();
    message = absl::StrCat(
        what, " did not answer '", tool, "' within ", millisSince(started),
        " ms; killed it (a new one starts on the next call)");
    code = absl::StatusCode::kDeadlineExceeded;
    break;
  case absl::StatusCode::kUnavailable: {
    // It closed its pipes: it is exiting, or should be.
    std::optional<std::string> exit = process_->exitDescription(false);
    if (!exit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      exit = process_->exitDescription(false);
    }
    if (!exit) {
      process_->kill();
      exit = process_->exitDescription(true);
      *exit = absl::StrCat("closed its pipes (", status.message(),
                           ") and was killed");
    }
    message = absl::StrCat(what, " ", *exit, " during '", tool, "'");
    break;
  }
  default:
    process_->kill();
    message = absl::StrCat(what, ": ", status.message(), " (during '", tool,
                           "'); killed it");
    break;
  }
  process_->exitDescription(true);
  // What it wrote just before dying may still be in the pipe.
  process_->waitStderrClosed(std::chrono::milliseconds(500));
  lastStderr_ = process_->stderrTail();
  if (!lastStderr_.empty())
    absl::StrAppend(&message, "; stderr: ", tail(lastStderr_));
  lastFailure_ = message;
  process_.reset();
  if (toolErrorFromStatus(status).type == tool_error::kProtocolError)
    return toolErrorStatus(code, tool_error::kProtocolError, message);
  return absl::Status(code, message);
}

absl::StatusOr<json> ExternalProcess::call(const std::string &tool,
                                           const json &args,
                                           const ToolContext &context) {
  ToolClock::time_point started = ToolClock::now();
  ToolClock::time_point deadline = context.hasDeadline()
                                       ? context.deadline
                                       : started + config_.defaultTimeout;
  std::unique_lock<std::timed_mutex> lock(mutex_, std::defer_lock);
  if (!lock.try_lock_until(deadline))
    return absl::DeadlineExceededError(
        absl::StrCat("external tool process '", config_.name,
                     "' stayed busy with other calls until the deadline"));
  if (absl::Status status = startLocked(); !status.ok())
    return absl::UnavailableError(status.message());

  int64_t id = ++nextId_;
  std::string request =
      dumpJson({{"id", id}, {"tool", tool}, {"args", args}}) + "\n";
  std::function<bool()> stop = [&context] {
    return context.cancel && context.cancel->cancelled();
  };
  if (absl::Status status = process_->writeAll(request, deadline, stop);
      !status.ok())
    return fail(status, tool, started);
  absl::StatusOr<std::string> line =
      process_->readLine(deadline, stop, config_.maxResponseBytes);
  if (!line.ok())
    return fail(line.status(), tool, started);

  absl::StatusOr<json> parsed = parseJsonBounded(*line);
  if (!parsed.ok() || !parsed->is_object())
    return fail(protocolError(absl::StrCat(
                    "answered with a line that is not a JSON object: '",
                    head(*line), "' (",
                    parsed.ok() ? absl::StrCat("a JSON ", parsed->type_name())
                                : std::string(parsed.status().message()),
                    ")")),
                tool, started);
  json &response = *parsed;
  auto idField = response.find("id");
  if (idField == response.end() || !idField->is_number_integer() ||
      idField->get<int64_t>() != id)
    return fail(protocolError(absl::StrCat("answered request ", id,
                                           " with a line whose id is not ", id,
                                           ": '", head(*line), "'")),
                tool, started);
  auto ok = response.find("ok");
  if (ok == response.end() || !ok->is_boolean())
    return fail(protocolError(absl::StrCat("answered without a boolean "
                                           "\"ok\": '",
                                           head(*line), "'")),
                tool, started);
  if (ok->get<bool>()) {
    auto result = response.find("result");
    return result == response.end() ? json() : std::move(*result);
  }
  auto error = response.find("error");
  return errorFromEnvelope(error == response.end() ? json() : *error,
                           absl::StrCat("external tool '", tool, "'"));
}

absl::StatusOr<std::shared_ptr<ExternalProcess>>
registerExternalProcessTools(ToolRegistry &registry,
                             ExternalProcessConfig config) {
  if (config.tools.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "external tool process '", config.name, "' declares no tools"));
  for (const ToolSignature &signature : config.tools) {
    if (absl::Status status = validateSignature(signature); !status.ok())
      return status;
    if (registry.contains(signature.name))
      return absl::AlreadyExistsError(
          absl::StrCat("tool '", signature.name, "' is already registered"));
  }
  auto process = std::make_shared<ExternalProcess>(std::move(config));
  if (absl::Status status = process->start(); !status.ok())
    return status;
  std::vector<std::string> added;
  for (const ToolSignature &signature : process->config().tools) {
    std::string name = signature.name;
    absl::Status status =
        registry.add(signature, [process, name](const json &args,
                                                const ToolContext &context) {
          return process->call(name, args, context);
        });
    if (!status.ok()) {
      for (const std::string &done : added)
        registry.remove(done);
      process->stop();
      return status;
    }
    added.push_back(name);
  }
  return process;
}

//===----------------------------------------------------------------------===//
// HTTP endpoints
//===----------------------------------------------------------------------===//

namespace {

absl::StatusOr<json> callEndpoint(const HttpEndpointConfig &config,
                                  const json &args,
                                  const ToolContext &context) {
  const std::string &tool = config.signature.name;
  HttpRequestSpec spec;
  spec.method = "POST";
  spec.url = config.url;
  spec.body = dumpJson({{"tool", tool}, {"args", args}});
  spec.allowedHosts = config.allowedHosts;
  spec.maxResponseBytes = config.maxResponseBytes;
  spec.timeout = config.timeout;
  absl::StatusOr<HttpResponse> response = sendHttpRequest(spec, context);
  std::string who = absl::StrCat("HTTP tool '", tool, "'");
  if (!response.ok())
    return absl::Status(response.status().code(),
                        absl::StrCat(who, ": ", response.status().message()));
  if (response->status < 200 || response->status > 299) {
    std::string message =
        absl::StrCat(who, ": ", config.url, " answered HTTP ", response->status,
                     ": ", head(response->body));
    if (response->status >= 500 || response->status == 429)
      return absl::UnavailableError(message);
    return toolErrorStatus(absl::StatusCode::kFailedPrecondition,
                           tool_error::kToolError, message);
  }
  absl::StatusOr<json> parsed = parseJsonBounded(response->body);
  if (!parsed.ok())
    return protocolError(absl::StrCat(
        who, ": ", config.url, " answered with a body that is not JSON: '",
        head(response->body), "' (", parsed.status().message(), ")"));
  json &body = *parsed;
  if (!body.is_object() || !body.contains("ok"))
    return body;
  if (!body["ok"].is_boolean())
    return protocolError(
        absl::StrCat(who, ": \"ok\" in the answer is not a boolean"));
  if (body["ok"].get<bool>())
    return body.contains("result") ? body["result"] : json();
  return errorFromEnvelope(body.contains("error") ? body["error"] : json(),
                           who);
}

} // namespace

absl::Status registerHttpEndpointTool(ToolRegistry &registry,
                                      HttpEndpointConfig config) {
  absl::StatusOr<HttpUrl> url = parseHttpUrl(config.url);
  if (!url.ok())
    return url.status();
  if (absl::Status status = checkHostAllowed(*url, config.allowedHosts);
      !status.ok())
    return absl::PermissionDeniedError(absl::StrCat(
        "HTTP tool '", config.signature.name, "': ", status.message()));
  ToolSignature signature = config.signature;
  auto shared = std::make_shared<const HttpEndpointConfig>(std::move(config));
  return registry.add(std::move(signature),
                      [shared](const json &args, const ToolContext &context) {
                        return callEndpoint(*shared, args, context);
                      });
}

//===----------------------------------------------------------------------===//
// JSON configuration
//===----------------------------------------------------------------------===//

namespace {

absl::Status configError(const std::string &where, const std::string &what) {
  return absl::InvalidArgumentError(
      absl::StrCat("tools config ", where, ": ", what));
}

absl::Status checkKeys(const json &object, const std::string &where,
                       std::initializer_list<const char *> known) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool found = false;
    for (const char *key : known)
      found |= it.key() == key;
    if (!found)
      return configError(where, absl::StrCat("unknown key \"", it.key(),
                                             "\" (expected ",
                                             absl::StrJoin(known, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::chrono::milliseconds>
millisField(const json &object, const char *key, const std::string &where,
            std::chrono::milliseconds fallback) {
  auto it = object.find(key);
  if (it == object.end())
    return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() <= 0)
    return configError(
        where, absl::StrCat("\"", key, "\" must be a positive integer"));
  return std::chrono::milliseconds(it->get<int64_t>());
}

absl::StatusOr<std::vector<std::string>>
stringList(const json &value, const std::string &where, const char *key) {
  if (!value.is_array() || value.empty())
    return configError(
        where,
        absl::StrCat("\"", key, "\" must be a non-empty array of strings"));
  std::vector<std::string> result;
  for (const json &item : value) {
    if (!item.is_string())
      return configError(
          where, absl::StrCat("\"", key, "\" must be an array of strings"));
    result.push_back(item.get<std::string>());
  }
  return result;
}

/// A name an environment entry can have: not empty, no '=' or NUL.
bool isEnvName(const std::string &name) {
  return !name.empty() &&
         name.find_first_of(std::string("=\0", 2)) == std::string::npos;
}

absl::StatusOr<ExternalProcessConfig> parseProcess(const json &entry,
                                                   const std::string &where) {
  if (!entry.is_object())
    return configError(where, "must be an object");
  if (absl::Status s =
          checkKeys(entry, where,
                    {"name", "command", "env", "inherit_env", "cwd",
                     "timeout_ms", "stderr_limit", "tools"});
      !s.ok())
    return s;
  ExternalProcessConfig config;
  if (!entry.contains("name") || !entry["name"].is_string())
    return configError(where, "\"name\" must be a string");
  config.name = entry["name"].get<std::string>();
  if (!entry.contains("command"))
    return configError(where, "\"command\" is missing");
  absl::StatusOr<std::vector<std::string>> command =
      stringList(entry["command"], where, "command");
  if (!command.ok())
    return command.status();
  config.process.argv = std::move(*command);
  if (entry.contains("env")) {
    const json &env = entry["env"];
    if (!env.is_object())
      return configError(where, "\"env\" must be an object of name -> string");
    for (auto it = env.begin(); it != env.end(); ++it) {
      if (!isEnvName(it.key()))
        return configError(where, absl::StrCat("env name \"", it.key(),
                                               "\" must be non-empty, "
                                               "without '=' or NUL"));
      if (!it->is_string() ||
          it->get_ref<const std::string &>().find('\0') != std::string::npos)
        return configError(where,
                           absl::StrCat("env \"", it.key(),
                                        "\" must be a string without NUL"));
      config.process.env.push_back(
          absl::StrCat(it.key(), "=", it->get<std::string>()));
    }
  }
  if (entry.contains("inherit_env")) {
    const json &names = entry["inherit_env"];
    if (!names.is_array() ||
        !std::all_of(names.begin(), names.end(), [](const json &name) {
          return name.is_string() && isEnvName(name.get<std::string>());
        }))
      return configError(where, "\"inherit_env\" must be an array of "
                                "variable names (\"NAME\", or \"PREFIX*\")");
    for (const json &name : names)
      config.process.inheritEnv.push_back(name.get<std::string>());
  }
  if (entry.contains("cwd")) {
    if (!entry["cwd"].is_string())
      return configError(where, "\"cwd\" must be a string");
    config.process.workingDir = entry["cwd"].get<std::string>();
  }
  absl::StatusOr<std::chrono::milliseconds> timeout =
      millisField(entry, "timeout_ms", where, config.defaultTimeout);
  if (!timeout.ok())
    return timeout.status();
  config.defaultTimeout = *timeout;
  if (entry.contains("stderr_limit")) {
    if (!entry["stderr_limit"].is_number_unsigned())
      return configError(where, "\"stderr_limit\" must be a non-negative "
                                "integer");
    config.process.stderrLimit = entry["stderr_limit"].get<size_t>();
  }
  if (!entry.contains("tools") || !entry["tools"].is_array() ||
      entry["tools"].empty())
    return configError(where, "\"tools\" must be a non-empty array of "
                              "signatures");
  for (size_t i = 0; i < entry["tools"].size(); ++i) {
    absl::StatusOr<ToolSignature> signature =
        ToolSignature::fromJson(entry["tools"][i]);
    if (!signature.ok())
      return configError(absl::StrCat(where, ".tools[", i, "]"),
                         std::string(signature.status().message()));
    config.tools.push_back(std::move(*signature));
  }
  return config;
}

absl::StatusOr<HttpEndpointConfig> parseEndpoint(const json &entry,
                                                 const std::string &where) {
  if (!entry.is_object())
    return configError(where, "must be an object");
  if (absl::Status s = checkKeys(
          entry, where,
          {"url", "timeout_ms", "allowed_hosts", "max_response_bytes", "tool"});
      !s.ok())
    return s;
  HttpEndpointConfig config;
  if (!entry.contains("url") || !entry["url"].is_string())
    return configError(where, "\"url\" must be a string");
  config.url = entry["url"].get<std::string>();
  absl::StatusOr<std::chrono::milliseconds> timeout =
      millisField(entry, "timeout_ms", where, config.timeout);
  if (!timeout.ok())
    return timeout.status();
  config.timeout = *timeout;
  if (entry.contains("allowed_hosts")) {
    absl::StatusOr<std::vector<std::string>> hosts =
        stringList(entry["allowed_hosts"], where, "allowed_hosts");
    if (!hosts.ok())
      return hosts.status();
    config.allowedHosts = std::move(*hosts);
  }
  if (entry.contains("max_response_bytes")) {
    if (!entry["max_response_bytes"].is_number_unsigned())
      return configError(where, "\"max_response_bytes\" must be a "
                                "non-negative integer");
    config.maxResponseBytes = entry["max_response_bytes"].get<size_t>();
  }
  if (!entry.contains("tool"))
    return configError(where, "\"tool\" (a signature) is missing");
  absl::StatusOr<ToolSignature> signature =
      ToolSignature::fromJson(entry["tool"]);
  if (!signature.ok())
    return configError(absl::StrCat(where, ".tool"),
                       std::string(signature.status().message()));
  config.signature = std::move(*signature);
  return config;
}

} // namespace

absl::StatusOr<std::vector<std::shared_ptr<ExternalProcess>>>
registerExternalToolsFromJson(ToolRegistry &registry, const json &config) {
  if (!config.is_object())
    return configError("", "must be an object with \"processes\" and/or "
                           "\"endpoints\"");
  if (absl::Status s = checkKeys(config, "", {"processes", "endpoints"});
      !s.ok())
    return s;
  // Parse everything before starting or registering anything.
  std::vector<ExternalProcessConfig> processes;
  std::vector<HttpEndpointConfig> endpoints;
  if (config.contains("processes")) {
    if (!config["processes"].is_array())
      return configError("", "\"processes\" must be an array");
    for (size_t i = 0; i < config["processes"].size(); ++i) {
      absl::StatusOr<ExternalProcessConfig> process = parseProcess(
          config["processes"][i], absl::StrCat("processes[", i, "]"));
      if (!process.ok())
        return process.status();
      processes.push_back(std::move(*process));
    }
  }
  if (config.contains("endpoints")) {
    if (!config["endpoints"].is_array())
      return configError("", "\"endpoints\" must be an array");
    for (size_t i = 0; i < config["endpoints"].size(); ++i) {
      absl::StatusOr<HttpEndpointConfig> endpoint = parseEndpoint(
          config["endpoints"][i], absl::StrCat("endpoints[", i, "]"));
      if (!endpoint.ok())
        return endpoint.status();
      endpoints.push_back(std::move(*endpoint));
    }
  }

  std::vector<std::shared_ptr<ExternalProcess>> started;
  std::vector<std::string> added;
  auto rollback = [&](absl::Status status) {
    for (const std::string &name : added)
      registry.remove(name);
    for (const std::shared_ptr<ExternalProcess> &process : started)
      process->stop();
    return status;
  };
  for (ExternalProcessConfig &process : processes) {
    std::vector<std::string> names;
    for (const ToolSignature &signature : process.tools)
      names.push_back(signature.name);
    absl::StatusOr<std::shared_ptr<ExternalProcess>> handle =
        registerExternalProcessTools(registry, std::move(process));
    if (!handle.ok())
      return rollback(handle.status());
    started.push_back(*handle);
    added.insert(added.end(), names.begin(), names.end());
  }
  for (HttpEndpointConfig &endpoint : endpoints) {
    std::string name = endpoint.signature.name;
    if (absl::Status status =
            registerHttpEndpointTool(registry, std::move(endpoint));
        !status.ok())
      return rollback(status);
    added.push_back(name);
  }
  return started;
}

} // namespace treni
