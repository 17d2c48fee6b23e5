//===- external_tools_test.cpp - JSON-lines processes, HTTP endpoints -----===//
//
// The process side is test/tools/json_lines_tool.cpp (built by CMake), which
// crashes, hangs, prints garbage or answers with the wrong id on request;
// /bin/sh covers a process that dies at once. Timing asserts are one-sided
// and generous ("returned long before the tool would have").
//
//===----------------------------------------------------------------------===//

#include "runtime/tools/external_tools.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <thread>
#include <unistd.h>

#include "test/unit/loopback_http_server.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <httplib.h>

namespace treni {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace std::chrono_literals;
using testing_util::messageOf;

ToolSignature sig(std::string name,
                  std::vector<std::pair<std::string, ToolType>> params = {},
                  bool required = true) {
  ToolSignature signature;
  signature.name = std::move(name);
  for (auto &[param, type] : params)
    signature.parameters.push_back({param, type, required, "", std::nullopt});
  return signature;
}

/// The test helper's tools, as the registry sees them (prefixed "t.").
ExternalProcessConfig helperConfig() {
  ExternalProcessConfig config;
  config.name = "helper";
  config.process.argv = {TRENI_JSON_LINES_TOOL};
  config.process.stderrLimit = 4096;
  config.defaultTimeout = 20s;
  config.tools = {
      sig("echo", {{"text", ToolType::String}}),
      sig("add", {{"a", ToolType::Int}, {"b", ToolType::Int}}),
      sig("pid"),
      sig("fail", {{"type", ToolType::String}}, /*required=*/false),
      sig("crash", {{"code", ToolType::Int}}, /*required=*/false),
      sig("crash_if_pid", {{"pid", ToolType::Int}}),
      sig("hang"),
      sig("hang_with_child", {{"pid_file", ToolType::String}}),
      sig("sleep", {{"ms", ToolType::Int}}),
      sig("garbage"),
      sig("wrong_id"),
      sig("stderr", {{"text", ToolType::String}, {"count", ToolType::Int}}),
      sig("env", {{"name", ToolType::String}}),
      sig("environ"),
      sig("deep", {{"depth", ToolType::Int}}),
      sig("big", {{"bytes", ToolType::Int}}),
  };
  return config;
}

std::shared_ptr<ExternalProcess>
registerHelper(ToolRegistry &registry,
               ExternalProcessConfig config = helperConfig()) {
  absl::StatusOr<std::shared_ptr<ExternalProcess>> process =
      registerExternalProcessTools(registry, std::move(config));
  EXPECT_TRUE(process.ok()) << process.status();
  return process.ok() ? *process : nullptr;
}

int64_t callPid(ToolRegistry &registry) {
  ToolResult result = registry.call("pid", {});
  EXPECT_TRUE(result.ok) << result.error.message;
  return result.ok ? result.value.get<int64_t>() : -1;
}

/// Whether `pid` is dead: gone, or a zombie nobody reaped yet (an orphan's
/// reaper may be slow in a container). Waits up to 10 s.
bool processGone(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    if (::kill(pid, 0) != 0 && errno == ESRCH)
      return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() &&
        (line[close + 2] == 'Z' || line[close + 2] == 'X'))
      return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

template <typename F> bool eventually(F condition) {
  for (int i = 0; i < 200; ++i) {
    if (condition())
      return true;
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

//===----------------------------------------------------------------------===//
// JSON-lines processes
//===----------------------------------------------------------------------===//

TEST(ExternalProcess, AnswersFromOneLongLivedProcess) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  ASSERT_TRUE(helper);
  int64_t pid = callPid(registry);
  for (int i = 0; i < 20; ++i) {
    ToolResult echo =
        registry.call("echo", {{"text", "hi " + std::to_string(i)}});
    ASSERT_TRUE(echo.ok) << echo.error.message;
    EXPECT_EQ(echo.value, (json{{"text", "hi " + std::to_string(i)}}));
  }
  ToolResult sum = registry.call("add", {{"a", 2}, {"b", 40}});
  ASSERT_TRUE(sum.ok);
  EXPECT_EQ(sum.value, 42);
  EXPECT_EQ(callPid(registry), pid); // spawned once
  EXPECT_EQ(helper->starts(), 1);
  EXPECT_EQ(helper->restarts(), 0);
  // Arguments are validated before anything is sent.
  ToolResult bad = registry.call("add", {{"a", "2"}, {"b", 1}});
  EXPECT_EQ(bad.error.type, "invalid_arguments");
}

TEST(ExternalProcess, ToolErrorsPassThroughAndKeepTheProcess) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  int64_t pid = callPid(registry);
  CallOptions options;
  options.retries = 2;
  ToolResult custom = registry.call("fail", {{"type", "bad_input"}}, options);
  EXPECT_FALSE(custom.ok);
  EXPECT_EQ(custom.error.type, "bad_input");
  EXPECT_EQ(custom.error.message, "asked to fail");
  EXPECT_EQ(custom.attempts, 1); // not a retryable type
  ToolResult transient = registry.call("fail", {{"type", "unavailable"}},
                                       CallOptions{0ms, 1, 1ms});
  EXPECT_EQ(transient.error.type, "unavailable");
  EXPECT_EQ(transient.attempts, 2);
  EXPECT_EQ(callPid(registry), pid);
  EXPECT_EQ(helper->restarts(), 0);
}

TEST(ExternalProcess, CrashIsReportedAndTheProcessRestarted) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  int64_t pid = callPid(registry);
  ToolResult crash = registry.call("crash", {{"code", 3}});
  EXPECT_FALSE(crash.ok);
  EXPECT_EQ(crash.error.type, "unavailable");
  EXPECT_TRUE(crash.error.retryable);
  EXPECT_THAT(crash.error.message,
              HasSubstr("external tool process 'helper' (pid " +
                        std::to_string(pid) +
                        ") exited with status 3 during "
                        "'crash'"));
  EXPECT_THAT(crash.error.message, HasSubstr("stderr: crashing"));
  EXPECT_THAT(helper->lastFailure(), HasSubstr("exited with status 3"));
  EXPECT_THAT(helper->stderrTail(), HasSubstr("crashing"));

  int64_t next = callPid(registry);
  EXPECT_NE(next, pid);
  EXPECT_EQ(helper->restarts(), 1);
  EXPECT_TRUE(registry.call("echo", {{"text", "back"}}).ok);
}

TEST(ExternalProcess, RetryRunsOnTheRestartedProcess) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  int64_t pid = callPid(registry);
  CallOptions options;
  options.retries = 1;
  options.backoffBase = 1ms;
  ToolResult result = registry.call("crash_if_pid", {{"pid", pid}}, options);
  ASSERT_TRUE(result.ok) << result.error.message;
  EXPECT_EQ(result.value, "survived");
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(result.attemptLog[0].error.type, "unavailable");
  EXPECT_EQ(helper->restarts(), 1);
}

TEST(ExternalProcess, HangIsKilledAtTheCallTimeout) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  int64_t pid = callPid(registry);
  CallOptions options;
  options.timeout = 200ms;
  ToolResult hang = registry.call("hang", {}, options);
  EXPECT_FALSE(hang.ok);
  // The helper's tools are not read-only: abandoned after it started, the
  // call's effect is unknown.
  EXPECT_EQ(hang.error.type, "outcome_unknown");
  EXPECT_LT(hang.latency, 8s);
  EXPECT_TRUE(processGone(pid_t(pid))); // killed, not left hanging
  EXPECT_TRUE(eventually([&] { return !helper->lastFailure().empty(); }));
  EXPECT_THAT(helper->lastFailure(), HasSubstr("did not answer 'hang' within"));
  EXPECT_NE(callPid(registry), pid);
  EXPECT_EQ(helper->restarts(), 1);
}

TEST(ExternalProcess, HangIsKilledAtTheDefaultTimeoutWithoutACallTimeout) {
  ToolRegistry registry;
  ExternalProcessConfig config = helperConfig();
  config.defaultTimeout = 300ms;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry, config);
  int64_t pid = callPid(registry);
  ToolResult hang = registry.call("hang", {});
  EXPECT_EQ(hang.error.type, "timeout");
  EXPECT_THAT(hang.error.message, HasSubstr("did not answer 'hang' within"));
  EXPECT_THAT(hang.error.message, HasSubstr("killed it"));
  EXPECT_TRUE(processGone(pid_t(pid)));
}

TEST(ExternalProcess, KillTakesTheWholeProcessGroup) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  std::string pidFile = (std::filesystem::temp_directory_path() /
                         ("treni-child-" + std::to_string(::getpid()) + ".pid"))
                            .string();
  CallOptions options;
  options.timeout = 500ms;
  ToolResult hang =
      registry.call("hang_with_child", {{"pid_file", pidFile}}, options);
  EXPECT_EQ(hang.error.type, "outcome_unknown");
  pid_t child = 0;
  ASSERT_TRUE(eventually([&] {
    std::ifstream in(pidFile);
    return bool(in >> child) && child > 0;
  }));
  std::filesystem::remove(pidFile);
  EXPECT_TRUE(processGone(child)); // the grandchild went with it
  EXPECT_TRUE(registry.call("echo", {{"text", "x"}}).ok);
}

TEST(ExternalProcess, GarbageAndWrongIdsAreProtocolErrors) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  ToolResult garbage = registry.call("garbage", {});
  EXPECT_EQ(garbage.error.type, "protocol_error");
  EXPECT_FALSE(garbage.error.retryable);
  EXPECT_THAT(garbage.error.message,
              HasSubstr("answered with a line that is not a JSON object: "
                        "'this is not json'"));
  ToolResult wrongId = registry.call("wrong_id", {});
  EXPECT_EQ(wrongId.error.type, "protocol_error");
  EXPECT_THAT(wrongId.error.message, HasSubstr("whose id is not"));
  EXPECT_TRUE(registry.call("echo", {{"text", "x"}}).ok);
  EXPECT_EQ(helper->restarts(), 2); // each protocol error replaced it
}

TEST(ExternalProcess, StderrIsKeptBounded) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  // 100 KB through a 4 KB buffer; the process never blocks on it.
  ToolResult noisy =
      registry.call("stderr", {{"text", "0123456789"}, {"count", 10000}});
  ASSERT_TRUE(noisy.ok) << noisy.error.message;
  ToolResult last = registry.call("stderr", {{"text", "END"}, {"count", 1}});
  ASSERT_TRUE(last.ok);
  ASSERT_TRUE(eventually([&] {
    std::string tail = helper->stderrTail();
    return tail.size() >= 3 && tail.substr(tail.size() - 3) == "END";
  }));
  EXPECT_LE(helper->stderrTail().size(), 4096u);
  EXPECT_GE(helper->stderrTail().size(), 4000u);
}

TEST(ExternalProcess, ConcurrentCallsAreSerializedSafely) {
  ToolRegistry registry;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        CallOptions options;
        options.timeout = 20s;
        ToolResult sum = registry.call("add", {{"a", t}, {"b", i}}, options);
        wrong += !sum.ok || sum.value != t + i;
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(helper->starts(), 1);
}

TEST(ExternalProcess, ProcessThatDiesAtOnceIsReportedWithItsStderr) {
  ToolRegistry registry;
  ExternalProcessConfig config;
  config.name = "dies";
  config.process.argv = {"/bin/sh", "-c", "echo boom >&2; exit 7"};
  config.tools = {sig("anything")};
  std::shared_ptr<ExternalProcess> process = registerHelper(registry, config);
  ASSERT_TRUE(process);
  ToolResult result = registry.call("anything", {});
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "unavailable");
  EXPECT_THAT(result.error.message, HasSubstr("exited with status 7"));
  EXPECT_THAT(result.error.message, HasSubstr("boom"));
}

/// Sets environment variables for one test, and restores them after it.
class ScopedEnv {
public:
  void set(const std::string &name, const std::string &value) {
    const char *old = std::getenv(name.c_str());
    saved_.emplace_back(name,
                        old ? std::optional<std::string>(old) : std::nullopt);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }

private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(Subprocess, ChildEnvironmentIsAllowListed) {
  std::vector<std::string> parent = {"PATH=/usr/bin", "AWS_SECRET_ACCESS_KEY=k",
                                     "LC_ALL=C",      "LCX=no",
                                     "LANG=en_US",    "HOMEDIR=no",
                                     "HOME=/h",       "TZ=UTC",
                                     "TMPDIR=/t",     "OPENAI_API_KEY=sk",
                                     "PASS_ME=1",     "=odd",
                                     "NOEQUALS"};
  std::vector<char *> parentEnv;
  for (std::string &entry : parent)
    parentEnv.push_back(entry.data());
  parentEnv.push_back(nullptr);
  SubprocessOptions options;
  EXPECT_EQ(options.inheritEnv, defaultInheritedEnv());
  EXPECT_EQ(childEnvironment(options, parentEnv.data()),
            (std::vector<std::string>{"PATH=/usr/bin", "LC_ALL=C", "LANG=en_US",
                                      "HOME=/h", "TZ=UTC", "TMPDIR=/t"}));
  // Named variables join them; set ones win over inherited ones.
  options.inheritEnv.push_back("PASS_ME");
  options.env = {"HOME=/configured", "EXTRA=x"};
  EXPECT_EQ(childEnvironment(options, parentEnv.data()),
            (std::vector<std::string>{"PATH=/usr/bin", "LC_ALL=C", "LANG=en_US",
                                      "TZ=UTC", "TMPDIR=/t", "PASS_ME=1",
                                      "HOME=/configured", "EXTRA=x"}));
}

TEST(ExternalProcess, ServerSecretsDoNotReachTheTool) {
  ScopedEnv env;
  env.set("TRENI_TEST_SECRET_TOKEN", "hunter2");
  env.set("LC_TRENI_TEST", "lc");
  env.set("TRENI_TEST_PASSED", "named in the config");
  auto envOf = [](ToolRegistry &registry, const std::string &name) {
    ToolResult result = registry.call("env", {{"name", name}});
    EXPECT_TRUE(result.ok) << result.error.message;
    return result.value;
  };
  // Nothing configured: the allow-list alone (this used to be the whole
  // environment).
  ToolRegistry plain;
  ASSERT_TRUE(registerHelper(plain));
  EXPECT_TRUE(envOf(plain, "TRENI_TEST_SECRET_TOKEN").is_null());
  EXPECT_TRUE(envOf(plain, "TRENI_TEST_PASSED").is_null());
  EXPECT_EQ(envOf(plain, "PATH"), std::getenv("PATH"));
  EXPECT_EQ(envOf(plain, "LC_TRENI_TEST"), "lc");

  ToolRegistry registry;
  ExternalProcessConfig config = helperConfig();
  config.process.inheritEnv.push_back("TRENI_TEST_PASSED");
  config.process.env = {"TRENI_TEST_SET=configured"};
  ASSERT_TRUE(registerHelper(registry, config));
  EXPECT_TRUE(envOf(registry, "TRENI_TEST_SECRET_TOKEN").is_null());
  EXPECT_EQ(envOf(registry, "PATH"), std::getenv("PATH"));
  EXPECT_EQ(envOf(registry, "TRENI_TEST_PASSED"), "named in the config");
  EXPECT_EQ(envOf(registry, "TRENI_TEST_SET"), "configured");
  ToolResult names = registry.call("environ", {});
  ASSERT_TRUE(names.ok) << names.error.message;
  const std::set<std::string> allowed = {
      "PATH",          "HOME", "LANG", "TZ", "TMPDIR", "TRENI_TEST_PASSED",
      "TRENI_TEST_SET"};
  for (const json &name : names.value)
    EXPECT_TRUE(allowed.count(name.get<std::string>()) ||
                name.get<std::string>().rfind("LC_", 0) == 0)
        << name;
}

TEST(ExternalProcess, DeepLongAndLargeAnswersAreBounded) {
  ToolRegistry registry;
  ExternalProcessConfig config = helperConfig();
  config.maxResponseBytes = 100000;
  std::shared_ptr<ExternalProcess> helper = registerHelper(registry, config);
  ASSERT_TRUE(helper);
  ToolResult shallow = registry.call("deep", {{"depth", 10}});
  ASSERT_TRUE(shallow.ok) << shallow.error.message;
  ToolResult deep = registry.call("deep", {{"depth", 20000}});
  EXPECT_EQ(deep.error.type, "protocol_error");
  EXPECT_THAT(deep.error.message,
              HasSubstr("JSON nests deeper than 64 levels"));
  EXPECT_THAT(helper->lastFailure(), HasSubstr("nests deeper"));
  ToolResult line = registry.call("big", {{"bytes", 200000}});
  EXPECT_EQ(line.error.type, "too_large");
  EXPECT_THAT(line.error.message,
              HasSubstr("wrote a line longer than 100000 bytes"));
  registry.setMaxResultBytes(1000);
  ToolResult result = registry.call("big", {{"bytes", 5000}});
  EXPECT_EQ(result.error.type, "too_large");
  EXPECT_THAT(result.error.message, HasSubstr("over the limit of 1000 bytes"));
  EXPECT_TRUE(registry.call("big", {{"bytes", 500}}).ok);
  // Replaced after the deep answer and after the long line (too large a
  // result is the registry's refusal: the process answered correctly).
  EXPECT_EQ(helper->restarts(), 2);
}

TEST(ExternalProcess, RegistrationErrors) {
  ToolRegistry registry;
  ExternalProcessConfig missing = helperConfig();
  missing.process.argv = {"/nonexistent/treni-tool"};
  absl::StatusOr<std::shared_ptr<ExternalProcess>> notFound =
      registerExternalProcessTools(registry, missing);
  EXPECT_EQ(notFound.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(notFound.status()),
              HasSubstr("cannot start '/nonexistent/treni-tool'"));
  EXPECT_FALSE(registry.contains("echo"));

  ExternalProcessConfig empty = helperConfig();
  empty.tools.clear();
  EXPECT_THAT(messageOf(registerExternalProcessTools(registry, empty).status()),
              HasSubstr("declares no tools"));

  ASSERT_TRUE(registry
                  .add(sig("echo"),
                       [](const json &, const ToolContext &) {
                         return absl::StatusOr<json>(json());
                       })
                  .ok());
  EXPECT_EQ(
      registerExternalProcessTools(registry, helperConfig()).status().code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(registry.contains("add")); // nothing half-registered
}

//===----------------------------------------------------------------------===//
// HTTP endpoints
//===----------------------------------------------------------------------===//

/// The loopback server the HTTP endpoint tools post to.
class EndpointServer : public testing_util::LoopbackHttpServer {
public:
  EndpointServer() {
    server.Post(
        "/tool", [](const httplib::Request &req, httplib::Response &res) {
          json body = json::parse(req.body, nullptr, false);
          json args = body.value("args", json::object());
          json reply;
          if (body.value("tool", "") == "add")
            reply = {{"ok", true},
                     {"result", args.value("a", 0) + args.value("b", 0)}};
          else
            reply = {{"ok", false},
                     {"error",
                      {{"type", "not_found"}, {"message", "no such tool"}}}};
          res.set_content(reply.dump(), "application/json");
        });
    server.Post("/bare", [](const httplib::Request &req,
                            httplib::Response &res) {
      res.set_content(json::parse(req.body)["args"].dump(), "application/json");
    });
    server.Post("/down", [](const httplib::Request &, httplib::Response &res) {
      res.status = 503;
      res.set_content("overloaded", "text/plain");
    });
    server.Post("/html", [](const httplib::Request &, httplib::Response &res) {
      res.set_content("<html>", "text/html");
    });
    server.Post("/slow", slowHandler("{}", "application/json"));
    server.Post("/deep", [](const httplib::Request &, httplib::Response &res) {
      res.set_content(std::string(50000, '[') + std::string(50000, ']'),
                      "application/json");
    });
    start();
  }
};

HttpEndpointConfig endpoint(std::string name, std::string url) {
  HttpEndpointConfig config;
  config.signature =
      sig(std::move(name), {{"a", ToolType::Int}, {"b", ToolType::Int}},
          /*required=*/false);
  config.url = std::move(url);
  config.timeout = 5s;
  return config;
}

TEST(HttpEndpointTool, PostsArgumentsAndReadsTheEnvelope) {
  EndpointServer server;
  ToolRegistry registry;
  ASSERT_TRUE(
      registerHttpEndpointTool(registry, endpoint("add", server.url("/tool")))
          .ok());
  ASSERT_TRUE(
      registerHttpEndpointTool(registry, endpoint("sub", server.url("/tool")))
          .ok());
  ASSERT_TRUE(
      registerHttpEndpointTool(registry, endpoint("bare", server.url("/bare")))
          .ok());
  ToolResult sum = registry.call("add", {{"a", 1}, {"b", 2}});
  ASSERT_TRUE(sum.ok) << sum.error.message;
  EXPECT_EQ(sum.value, 3);
  ToolResult error = registry.call("sub", {{"a", 1}});
  EXPECT_EQ(error.error.type, "not_found");
  EXPECT_EQ(error.error.message, "no such tool");
  ToolResult bare = registry.call("bare", {{"a", 5}});
  ASSERT_TRUE(bare.ok);
  EXPECT_EQ(bare.value, (json{{"a", 5}}));
}

TEST(HttpEndpointTool, FailuresAreTyped) {
  EndpointServer server;
  ToolRegistry registry;
  HttpEndpointConfig slow = endpoint("slow", server.url("/slow"));
  slow.timeout = 300ms;
  ASSERT_TRUE(
      registerHttpEndpointTool(registry, endpoint("down", server.url("/down")))
          .ok());
  ASSERT_TRUE(
      registerHttpEndpointTool(registry, endpoint("html", server.url("/html")))
          .ok());
  ASSERT_TRUE(registerHttpEndpointTool(registry, slow).ok());

  ToolResult down = registry.call("down", {}, CallOptions{0ms, 2, 1ms});
  EXPECT_EQ(down.error.type, "unavailable");
  EXPECT_EQ(down.attempts, 3);
  EXPECT_THAT(down.error.message, HasSubstr("answered HTTP 503: overloaded"));
  ToolResult html = registry.call("html", {});
  EXPECT_EQ(html.error.type, "protocol_error");
  EXPECT_THAT(html.error.message, HasSubstr("not JSON: '<html>'"));
  ASSERT_TRUE(
      registerHttpEndpointTool(registry, endpoint("deep", server.url("/deep")))
          .ok());
  ToolResult deep = registry.call("deep", {});
  EXPECT_EQ(deep.error.type, "protocol_error");
  EXPECT_THAT(deep.error.message,
              HasSubstr("JSON nests deeper than 64 levels"));
  ToolResult timedOut = registry.call("slow", {});
  EXPECT_EQ(timedOut.error.type, "timeout");
  EXPECT_LT(timedOut.latency, 4s);
}

TEST(HttpEndpointTool, HostsOffTheAllowlistAreRefusedAtRegistration) {
  ToolRegistry registry;
  absl::Status status = registerHttpEndpointTool(
      registry, endpoint("remote", "http://tools.example.com/run"));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(messageOf(status),
              HasSubstr("host 'tools.example.com' is not allowed"));
  EXPECT_FALSE(registry.contains("remote"));
  EXPECT_EQ(
      registerHttpEndpointTool(registry, endpoint("bad", "ftp://127.0.0.1/"))
          .code(),
      absl::StatusCode::kInvalidArgument);
}

//===----------------------------------------------------------------------===//
// JSON configuration
//===----------------------------------------------------------------------===//

TEST(ExternalToolsConfig, RegistersProcessesAndEndpoints) {
  EndpointServer server;
  ToolRegistry registry;
  ScopedEnv env;
  env.set("TRENI_TEST_SECRET_TOKEN", "hunter2");
  env.set("TRENI_TEST_PASSED", "passed");
  std::string cwd = std::filesystem::temp_directory_path().string();
  json config = {{"processes",
                  {{{"name", "helper"},
                    {"command", {TRENI_JSON_LINES_TOOL}},
                    {"env", {{"TRENI_TEST", "from config"}}},
                    {"inherit_env", {"TRENI_TEST_PASSED"}},
                    {"cwd", cwd},
                    {"timeout_ms", 10000},
                    {"tools",
                     {sig("echo", {{"text", ToolType::String}}).toJson(),
                      sig("env", {{"name", ToolType::String}}).toJson(),
                      sig("cwd").toJson()}}}}},
                 {"endpoints",
                  {{{"url", server.url("/tool")},
                    {"timeout_ms", 5000},
                    {"tool", endpoint("add", "").signature.toJson()}}}}};
  absl::StatusOr<std::vector<std::shared_ptr<ExternalProcess>>> processes =
      registerExternalToolsFromJson(registry, config);
  ASSERT_TRUE(processes.ok()) << processes.status();
  ASSERT_EQ(processes->size(), 1u);
  EXPECT_EQ(registry.call("echo", {{"text", "cfg"}}).value["text"], "cfg");
  // The configured environment joins the allow-listed part of this
  // process's, and the variables named in inherit_env; cwd is applied.
  EXPECT_EQ(registry.call("env", {{"name", "TRENI_TEST"}}).value,
            "from config");
  EXPECT_EQ(registry.call("env", {{"name", "PATH"}}).value,
            std::getenv("PATH"));
  EXPECT_EQ(registry.call("env", {{"name", "TRENI_TEST_PASSED"}}).value,
            "passed");
  EXPECT_TRUE(registry.call("env", {{"name", "TRENI_TEST_SECRET_TOKEN"}})
                  .value.is_null());
  EXPECT_EQ(
      std::filesystem::path(registry.call("cwd", {}).value.get<std::string>()),
      std::filesystem::canonical(cwd));
  EXPECT_EQ(registry.call("add", {{"a", 20}, {"b", 22}}).value, 42);
}

TEST(ExternalToolsConfig, ErrorsNameTheEntryAndRegisterNothing) {
  ToolRegistry registry;
  json good = {
      {"name", "helper"},
      {"command", json::array({TRENI_JSON_LINES_TOOL})},
      {"tools",
       json::array({sig("echo", {{"text", ToolType::String}}).toJson()})}};
  json bad = {{"name", "x"}};
  struct Case {
    json config;
    std::string expected;
  } cases[] = {
      {json::array(), "must be an object"},
      {json::parse(R"({"proceses": []})"), "unknown key \"proceses\""},
      {json{{"processes", json::array({good, bad})}},
       "processes[1]: \"command\" is missing"},
      {json::parse(R"({"processes": [{"name": "x", "command": []}]})"),
       "\"command\" must be a non-empty array of strings"},
      {json::parse(R"({"processes": [{"name": "x", "command": ["x"],
                                      "tools": [{"name": "A B"}]}]})"),
       "processes[0].tools[0]: tool signature 'A B': invalid tool name"},
      {json::parse(R"({"processes": [{"name": "x", "command": ["x"],
                                      "env": {"A=B": "c"}}]})"),
       "env name \"A=B\" must be non-empty, without '=' or NUL"},
      {json::parse(R"({"processes": [{"name": "x", "command": ["x"],
                                      "inherit_env": "PATH"}]})"),
       "\"inherit_env\" must be an array of variable names"},
      {json::parse(R"({"processes": [{"name": "x", "command": ["x"],
                                      "inherit_env": ["A=B"]}]})"),
       "\"inherit_env\" must be an array of variable names"},
      {json::parse(R"({"processes": [{"name": "x", "command": ["x"],
                                      "timeout_ms": -1,
                                      "tools": [{"name": "t"}]}]})"),
       "\"timeout_ms\" must be a positive integer"},
      {json{{"processes", json::array({good})},
            {"endpoints", json::parse(R"([{"url": "http://127.0.0.1:1/"}])")}},
       "endpoints[0]: \"tool\" (a signature) is missing"},
  };
  for (const Case &c : cases) {
    auto result = registerExternalToolsFromJson(registry, c.config);
    ASSERT_FALSE(result.ok()) << c.config;
    EXPECT_THAT(messageOf(result.status()), HasSubstr(c.expected)) << c.config;
    EXPECT_FALSE(registry.contains("echo")) << c.config;
  }
  // A failure while registering (a host off the allowlist) rolls back the
  // process registered before it.
  json remote = {{"url", "http://example.com/"},
                 {"tool", sig("remote").toJson()}};
  json late = {{"processes", json::array({good})},
               {"endpoints", json::array({remote})}};
  auto result = registerExternalToolsFromJson(registry, late);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(registry.contains("echo"));
}

} // namespace
} // namespace treni
