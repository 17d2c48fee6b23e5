//===- tool_registry_test.cpp - registry, timeouts, retries ---------------===//
//
// Timing: every timeout test uses a tool that would run for seconds and a
// timeout of a fraction of that, and asserts only "returned well before the
// tool would have", so a loaded 2-core machine cannot make them flaky.
//
//===----------------------------------------------------------------------===//

#include "runtime/tools/tool_registry.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using namespace std::chrono_literals;
using testing_util::messageOf;

ToolSignature echoSignature() {
  ToolSignature sig;
  sig.name = "test.echo";
  sig.description = "Returns its arguments.";
  sig.parameters = {
      {"text", ToolType::String, true, "what to echo", std::nullopt},
      {"count", ToolType::Int, false, "repetitions", json(1)},
      {"scale", ToolType::Float, false, "a factor", std::nullopt},
      {"loud", ToolType::Bool, false, "upper case", json(false)},
      {"extra", ToolType::Json, false, "anything", std::nullopt},
  };
  sig.resultType = ToolType::Json;
  sig.resultDescription = "the validated arguments";
  return sig;
}

ToolFunction echoFunction() {
  return [](const json &args, const ToolContext &) -> absl::StatusOr<json> {
    return args;
  };
}

/// Registers a tool with no parameters (state-changing unless readOnly).
void addTool(ToolRegistry &registry, std::string name, ToolFunction function,
             bool readOnly = false) {
  ToolSignature sig;
  sig.name = std::move(name);
  sig.readOnly = readOnly;
  ASSERT_TRUE(registry.add(sig, std::move(function)).ok());
}

double millis(std::chrono::nanoseconds duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

/// `depth` nested arrays around 1, built in place (no copies, no recursion).
json nestedArrays(int depth) {
  json value = json::array();
  json *inner = &value;
  for (int i = 1; i < depth; ++i) {
    inner->push_back(json::array());
    inner = &inner->back();
  }
  inner->push_back(1);
  return value;
}

/// Waits (up to 10 s) until `condition` holds.
template <typename F> bool eventually(F condition) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

//===----------------------------------------------------------------------===//
// Signatures and argument validation
//===----------------------------------------------------------------------===//

TEST(ToolSignature, ValidationFillsDefaultsAndKeepsGivenValues) {
  absl::StatusOr<json> args =
      validateToolArguments(echoSignature(), {{"text", "hi"}, {"scale", 2}});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(
      *args,
      (json{{"text", "hi"}, {"scale", 2}, {"count", 1}, {"loud", false}}));
}

TEST(ToolSignature, NullOptionalArgumentCountsAsAbsent) {
  absl::StatusOr<json> args = validateToolArguments(
      echoSignature(),
      {{"text", "hi"}, {"count", nullptr}, {"extra", nullptr}});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ((*args)["count"], 1);
  EXPECT_TRUE(args->contains("extra")); // null is a json value
}

TEST(ToolSignature, RejectsMistypedArgumentsNamingThem) {
  struct Case {
    json args;
    std::string expected;
  } cases[] = {
      {{{"text", 3}}, "argument 'text' must be a string, got number 3"},
      {{{"text", "a"}, {"count", 1.5}},
       "argument 'count' must be an int, got number 1.5"},
      {{{"text", "a"}, {"count", "2"}},
       "argument 'count' must be an int, got string \"2\""},
      {{{"text", "a"}, {"scale", "x"}}, "argument 'scale' must be a float"},
      {{{"text", "a"}, {"loud", 1}},
       "argument 'loud' must be a bool, got number"},
      {{{"text", nullptr}}, "argument 'text' must be a string, got null"},
  };
  for (const Case &c : cases) {
    absl::StatusOr<json> args = validateToolArguments(echoSignature(), c.args);
    ASSERT_FALSE(args.ok()) << c.args;
    EXPECT_EQ(args.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(messageOf(args.status()), HasSubstr("tool 'test.echo'"));
    EXPECT_THAT(messageOf(args.status()), HasSubstr(c.expected)) << c.args;
  }
}

TEST(ToolSignature, RejectsMissingUnknownAndNonObjectArguments) {
  absl::StatusOr<json> missing =
      validateToolArguments(echoSignature(), json::object());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(messageOf(missing.status()),
              HasSubstr("missing required argument 'text' (string)"));

  absl::StatusOr<json> unknown =
      validateToolArguments(echoSignature(), {{"text", "a"}, {"txt", "b"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(
      messageOf(unknown.status()),
      HasSubstr("unknown argument 'txt' (expected one of: text, count"));

  absl::StatusOr<json> array =
      validateToolArguments(echoSignature(), json::array());
  ASSERT_FALSE(array.ok());
  EXPECT_THAT(messageOf(array.status()),
              HasSubstr("arguments must be a JSON object, got array"));
}

TEST(ToolSignature, IntAcceptsOnlyIntegersFloatAcceptsAnyNumber) {
  EXPECT_TRUE(matchesToolType(json(3), ToolType::Int));
  EXPECT_TRUE(matchesToolType(json(-3), ToolType::Int));
  EXPECT_FALSE(matchesToolType(json(3.0), ToolType::Int));
  EXPECT_TRUE(matchesToolType(json(3), ToolType::Float));
  EXPECT_TRUE(matchesToolType(json(0.5), ToolType::Float));
  EXPECT_FALSE(matchesToolType(json(true), ToolType::Int));
  EXPECT_FALSE(matchesToolType(json("1"), ToolType::Float));
  EXPECT_TRUE(matchesToolType(json::array(), ToolType::Json));
}

TEST(ToolSignature, JsonRoundTrip) {
  ToolSignature sig = echoSignature();
  json exported = sig.toJson();
  EXPECT_EQ(exported["parameters"][1], (json{{"name", "count"},
                                             {"type", "int"},
                                             {"required", false},
                                             {"description", "repetitions"},
                                             {"default", 1}}));
  EXPECT_EQ(exported["result"]["type"], "json");
  EXPECT_EQ(exported["readonly"], false);
  absl::StatusOr<ToolSignature> parsed = ToolSignature::fromJson(exported);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->toJson(), exported);
  sig.readOnly = true;
  absl::StatusOr<ToolSignature> readOnly =
      ToolSignature::fromJson(sig.toJson());
  ASSERT_TRUE(readOnly.ok());
  EXPECT_TRUE(readOnly->readOnly);
}

TEST(ToolSignature, FromJsonRejectsBadDeclarations) {
  struct Case {
    json declaration;
    std::string expected;
  } cases[] = {
      {json::array(), "expected an object"},
      {{{"description", "x"}}, "\"name\" must be a string"},
      {{{"name", "Bad Name"}}, "invalid tool name 'Bad Name'"},
      {{{"name", ".x"}}, "invalid tool name '.x'"},
      {{{"name", "t"}, {"parameters", {{{"name", "a"}, {"type", "integer"}}}}},
       "parameter 'a': unknown tool type 'integer'"},
      {{{"name", "t"},
        {"parameters",
         {{{"name", "a"}, {"type", "int"}}, {{"name", "a"}, {"type", "int"}}}}},
       "parameter 'a' is declared twice"},
      {{{"name", "t"},
        {"parameters", {{{"name", "a"}, {"type", "int"}, {"default", 1}}}}},
       "required parameter 'a' cannot have a default"},
      {{{"name", "t"},
        {"parameters",
         {{{"name", "a"},
           {"type", "int"},
           {"required", false},
           {"default", "1"}}}}},
       "default of parameter 'a' must be an int, got string"},
      {{{"name", "t"}, {"result", {{"type", "table"}}}},
       "result: unknown tool type 'table'"},
      {{{"name", "t"}, {"readonly", "yes"}}, "\"readonly\" must be a bool"},
  };
  for (const Case &c : cases) {
    absl::StatusOr<ToolSignature> sig = ToolSignature::fromJson(c.declaration);
    ASSERT_FALSE(sig.ok()) << c.declaration;
    EXPECT_THAT(messageOf(sig.status()), HasSubstr(c.expected))
        << c.declaration;
  }
}

TEST(ToolSignature, OpenAiDefinition) {
  json tool = echoSignature().toOpenAiTool();
  EXPECT_EQ(tool["type"], "function");
  EXPECT_EQ(tool["function"]["name"], "test_echo");
  const json &params = tool["function"]["parameters"];
  EXPECT_EQ(params["type"], "object");
  EXPECT_EQ(params["required"], json::array({"text"}));
  EXPECT_EQ(params["properties"]["count"]["type"], "integer");
  EXPECT_EQ(params["properties"]["scale"]["type"], "number");
  EXPECT_EQ(params["properties"]["loud"]["type"], "boolean");
  EXPECT_FALSE(params["properties"]["extra"].contains("type"));
  EXPECT_EQ(params["properties"]["count"]["default"], 1);
  EXPECT_EQ(params["additionalProperties"], false);
}

//===----------------------------------------------------------------------===//
// treni.tools/1 documents
//===----------------------------------------------------------------------===//

TEST(ToolSignatures, DocumentReadsTheRegistryExport) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  addTool(registry, "a.first", echoFunction(), /*readOnly=*/true);
  absl::StatusOr<std::vector<ToolSignature>> parsed =
      parseToolSignatures(registry.toJson());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  std::vector<ToolSignature> expected = registry.signatures();
  ASSERT_EQ(parsed->size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ((*parsed)[i].toJson(), expected[i].toJson());
  EXPECT_TRUE((*parsed)[0].readOnly);
  // "format" may be left out.
  absl::StatusOr<std::vector<ToolSignature>> bare =
      parseToolSignatures(json{{"tools", json::array()}});
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->empty());
}

TEST(ToolSignatures, DocumentErrorsNameTheEntry) {
  struct Case {
    json document;
    std::string expected;
  } cases[] = {
      {json::array(), "expected an object with a \"tools\" array"},
      {{{"tools", json::object()}},
       "expected an object with a \"tools\" array"},
      {{{"format", "treni.tools/2"}, {"tools", json::array()}},
       "format is string \"treni.tools/2\", expected 'treni.tools/1'"},
      {{{"tools",
         {{{"name", "a.ok"}},
          {{"name", "b.bad"},
           {"parameters", {{{"name", "path"}, {"type", "text"}}}}}}}},
       "tools[1]: tool signature 'b.bad': parameter 'path': unknown tool type "
       "'text'"},
  };
  for (const Case &c : cases) {
    absl::StatusOr<std::vector<ToolSignature>> parsed =
        parseToolSignatures(c.document);
    ASSERT_FALSE(parsed.ok()) << c.document;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(messageOf(parsed.status()), HasSubstr(c.expected))
        << c.document;
  }
}

TEST(ToolSignatures, FileErrorsNameTheFile) {
  std::string dir = ::testing::TempDir();
  std::string good = dir + "/treni-tools-good.json";
  std::string bad = dir + "/treni-tools-bad.json";
  std::string missing = dir + "/treni-tools-missing.json";
  std::ofstream(good) << json{{"format", "treni.tools/1"},
                              {"tools", {echoSignature().toJson()}}}
                             .dump();
  std::ofstream(bad) << "{\"tools\": [";
  std::remove(missing.c_str());

  absl::StatusOr<std::vector<ToolSignature>> parsed =
      readToolSignaturesFile(good);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ((*parsed)[0].toJson(), echoSignature().toJson());

  absl::StatusOr<std::vector<ToolSignature>> notJson =
      readToolSignaturesFile(bad);
  ASSERT_FALSE(notJson.ok());
  EXPECT_THAT(messageOf(notJson.status()),
              HasSubstr("tool registry '" + bad + "': "));

  absl::StatusOr<std::vector<ToolSignature>> absent =
      readToolSignaturesFile(missing);
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(absent.status()),
              HasSubstr("cannot read tool registry '" + missing + "'"));
  // Only regular files are read: a directory is refused.
  absl::StatusOr<std::vector<ToolSignature>> directory =
      readToolSignaturesFile(dir);
  EXPECT_THAT(messageOf(directory.status()),
              HasSubstr("cannot read tool registry '" + dir + "'"));
}

//===----------------------------------------------------------------------===//
// Registry
//===----------------------------------------------------------------------===//

TEST(ToolRegistry, RejectsDuplicateAndCollidingNames) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  absl::Status duplicate = registry.add(echoSignature(), echoFunction());
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  ToolSignature colliding;
  colliding.name = "test_echo"; // the OpenAI name of test.echo
  absl::Status collision = registry.add(colliding, echoFunction());
  EXPECT_THAT(messageOf(collision), HasSubstr("OpenAI name 'test_echo'"));
  ToolSignature bad;
  bad.name = "no spaces";
  EXPECT_EQ(registry.add(bad, echoFunction()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.add(ToolSignature{"t.none"}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ToolRegistry, ExportsSortedSignaturesAndOpenAiTools) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  addTool(registry, "a.first", echoFunction());
  json exported = registry.toJson();
  EXPECT_EQ(exported["format"], "treni.tools/1");
  ASSERT_EQ(exported["tools"].size(), 2u);
  EXPECT_EQ(exported["tools"][0]["name"], "a.first");
  EXPECT_EQ(exported["tools"][1], echoSignature().toJson());
  json openAi = registry.toOpenAiTools();
  ASSERT_EQ(openAi.size(), 2u);
  EXPECT_EQ(openAi[1]["function"]["name"], "test_echo");
}

TEST(ToolRegistry, CallsByNameOrOpenAiName) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  ToolResult result = registry.call("test.echo", {{"text", "hi"}});
  ASSERT_TRUE(result.ok) << result.error.message;
  EXPECT_EQ(result.value["text"], "hi");
  EXPECT_EQ(result.value["count"], 1); // default filled in
  EXPECT_EQ(result.attempts, 1);
  EXPECT_TRUE(result.error.type.empty());

  ToolResult viaOpenAi = registry.call("test_echo", {{"text", "yo"}});
  ASSERT_TRUE(viaOpenAi.ok);
  EXPECT_EQ(viaOpenAi.value["text"], "yo");
  EXPECT_EQ(registry.resolveName("test_echo").value(), "test.echo");
  EXPECT_EQ(registry.stats("test.echo").calls, 2);
}

TEST(ToolRegistry, UnknownToolListsRegisteredOnes) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  ToolResult result = registry.call("test.ech0", json::object());
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "unknown_tool");
  EXPECT_FALSE(result.error.retryable);
  EXPECT_EQ(result.attempts, 0);
  EXPECT_THAT(result.error.message,
              HasSubstr("unknown tool 'test.ech0' (registered: test.echo)"));
}

TEST(ToolRegistry, InvalidArgumentsNeverReachTheTool) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  ASSERT_TRUE(registry
                  .add(echoSignature(),
                       [&](const json &args, const ToolContext &) {
                         ++calls;
                         return absl::StatusOr<json>(args);
                       })
                  .ok());
  CallOptions options;
  options.retries = 3;
  ToolResult result = registry.call("test.echo", {{"text", 1}}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "invalid_arguments");
  EXPECT_THAT(result.error.message,
              HasSubstr("argument 'text' must be a string"));
  EXPECT_EQ(result.attempts, 0);
  // Nor do arguments nested deeper than any JSON the server accepts (they
  // were built in code: copying them would recurse as deep).
  ToolResult deep = registry.call(
      "test.echo", {{"text", "x"}, {"extra", nestedArrays(1000)}});
  EXPECT_EQ(deep.error.type, "invalid_arguments");
  EXPECT_THAT(deep.error.message,
              HasSubstr("the arguments are nested deeper than 64 levels"));
  EXPECT_EQ(calls.load(), 0);
}

TEST(ToolRegistry, ToolErrorsMapToTypesAndOnlyTransientOnesRetry) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  addTool(registry, "t.bad", [&](const json &, const ToolContext &) {
    ++calls;
    return absl::StatusOr<json>(absl::InvalidArgumentError("no such row"));
  });
  addTool(registry, "t.custom", [&](const json &, const ToolContext &) {
    return absl::StatusOr<json>(toolErrorStatus(
        absl::StatusCode::kFailedPrecondition, "quota", "over quota"));
  });
  addTool(registry, "t.throws", [&](const json &, const ToolContext &) {
    return absl::StatusOr<json>(json::object().at("missing"));
  });
  CallOptions options;
  options.retries = 2;
  options.backoffBase = 1ms;

  ToolResult bad = registry.call("t.bad", {}, options);
  EXPECT_EQ(bad.error.type, "invalid_arguments");
  EXPECT_EQ(bad.error.message, "no such row");
  EXPECT_EQ(bad.attempts, 1);
  EXPECT_EQ(calls.load(), 1);

  ToolResult custom = registry.call("t.custom", {}, options);
  EXPECT_EQ(custom.error.type, "quota");
  EXPECT_EQ(custom.attempts, 1);

  ToolResult threw = registry.call("t.throws", {}, options);
  EXPECT_EQ(threw.error.type, "tool_error");
  EXPECT_THAT(threw.error.message, HasSubstr("tool 't.throws' threw:"));
}

TEST(ToolRegistry, RetriesTransientErrorsWithBackoff) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  addTool(registry, "t.flaky", [&](const json &, const ToolContext &context) {
    EXPECT_EQ(context.attempt, calls.load() + 1);
    if (++calls < 3)
      return absl::StatusOr<json>(absl::UnavailableError("busy"));
    return absl::StatusOr<json>(json("done"));
  });
  CallOptions options;
  options.retries = 5;
  options.backoffBase = 4ms;
  options.backoffCap = 100ms;
  options.jitterSeed = 11;
  ToolResult result = registry.call("t.flaky", {}, options);
  ASSERT_TRUE(result.ok) << result.error.message;
  EXPECT_EQ(result.value, "done");
  EXPECT_EQ(result.attempts, 3);
  ASSERT_EQ(result.attemptLog.size(), 3u);
  EXPECT_EQ(result.attemptLog[0].error.type, "unavailable");
  EXPECT_TRUE(result.attemptLog[0].error.retryable);
  EXPECT_EQ(result.attemptLog[0].backoffBefore, 0ns);
  EXPECT_EQ(result.attemptLog[1].backoffBefore, backoffDelay(options, 1));
  EXPECT_EQ(result.attemptLog[2].backoffBefore, backoffDelay(options, 2));
  EXPECT_TRUE(result.attemptLog[2].ok);
  // The call took at least its backoff.
  EXPECT_GE(result.latency,
            backoffDelay(options, 1) + backoffDelay(options, 2));

  ToolStats stats = registry.stats("t.flaky");
  EXPECT_EQ(stats.calls, 1);
  EXPECT_EQ(stats.attempts, 3);
  EXPECT_EQ(stats.successes, 1);
}

TEST(ToolRegistry, GivesUpAfterTheLastRetry) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  addTool(registry, "t.down", [&](const json &, const ToolContext &) {
    ++calls;
    return absl::StatusOr<json>(absl::UnavailableError("connection refused"));
  });
  CallOptions options;
  options.retries = 2;
  options.backoffBase = 1ms;
  ToolResult result = registry.call("t.down", {}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(result.error.type, "unavailable");
  EXPECT_EQ(result.error.message, "connection refused");
  EXPECT_EQ(registry.stats("t.down").failures, 1);

  json exported = result.toJson();
  EXPECT_EQ(exported["ok"], false);
  EXPECT_EQ(exported["error"]["type"], "unavailable");
  EXPECT_EQ(exported["attempts"], 3);
  EXPECT_EQ(exported["attempt_log"].size(), 3u);
  EXPECT_FALSE(exported.contains("value"));
}

TEST(Backoff, ExponentialCappedAndDeterministicallyJittered) {
  CallOptions options;
  options.backoffBase = 10ms;
  options.backoffCap = 50ms;
  options.jitter = false;
  EXPECT_EQ(backoffDelay(options, 1), 10ms);
  EXPECT_EQ(backoffDelay(options, 2), 20ms);
  EXPECT_EQ(backoffDelay(options, 3), 40ms);
  EXPECT_EQ(backoffDelay(options, 4), 50ms);
  EXPECT_EQ(backoffDelay(options, 60), 50ms); // no overflow
  EXPECT_EQ(backoffDelay(options, 0), 0ms);

  options.jitter = true;
  options.backoffBase = 1000ms;
  options.backoffCap = 100000ms;
  std::set<int64_t> values;
  for (int retry = 1; retry <= 6; ++retry) {
    int64_t full = 1000 << (retry - 1);
    int64_t delay = backoffDelay(options, retry).count();
    EXPECT_GE(delay, full / 2);
    EXPECT_LT(delay, full);
    EXPECT_EQ(backoffDelay(options, retry).count(), delay); // deterministic
    values.insert(delay * 64 / full);
  }
  EXPECT_GT(values.size(), 1u); // actually jittered
  CallOptions other = options;
  other.jitterSeed = 99;
  bool differs = false;
  for (int retry = 1; retry <= 6; ++retry)
    differs |= backoffDelay(other, retry) != backoffDelay(options, retry);
  EXPECT_TRUE(differs);
}

//===----------------------------------------------------------------------===//
// Timeouts
//===----------------------------------------------------------------------===//

TEST(ToolTimeout, CooperativeToolIsCancelled) {
  ToolRegistry registry;
  std::atomic<bool> sawCancel{false};
  addTool(
      registry, "t.sleep",
      [&](const json &, const ToolContext &context) {
        if (context.sleepFor(20s))
          return absl::StatusOr<json>(json("slept"));
        sawCancel = context.shouldStop();
        return absl::StatusOr<json>(absl::DeadlineExceededError("cut short"));
      },
      /*readOnly=*/true);
  CallOptions options;
  options.timeout = 100ms;
  ToolResult result = registry.call("t.sleep", {}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "timeout");
  EXPECT_TRUE(result.error.retryable);
  EXPECT_LT(millis(result.latency), 10000.0);
  EXPECT_GE(millis(result.latency), 99.0);
  // The abandoned attempt saw the cancellation and ended.
  EXPECT_TRUE(
      eventually([&] { return registry.stats("t.sleep").running == 0; }));
  EXPECT_TRUE(sawCancel.load());
  EXPECT_EQ(registry.stats("t.sleep").timeouts, 1);
}

TEST(ToolTimeout, HungToolIsAbandoned) {
  ToolRegistry registry;
  // Ignores its context entirely.
  addTool(
      registry, "t.hang",
      [](const json &, const ToolContext &) {
        std::this_thread::sleep_for(4s);
        return absl::StatusOr<json>(json("late"));
      },
      /*readOnly=*/true);
  CallOptions options;
  options.timeout = 100ms;
  ToolResult result = registry.call("t.hang", {}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "timeout");
  EXPECT_THAT(result.error.message,
              HasSubstr("tool 't.hang' did not finish within 100 ms"));
  EXPECT_LT(millis(result.latency), 3500.0); // did not wait for the tool
  EXPECT_EQ(registry.stats("t.hang").running, 1);
}

TEST(ToolTimeout, RetryAfterTimeoutSucceeds) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  addTool(
      registry, "t.slow_once",
      [&](const json &, const ToolContext &context) {
        if (++calls == 1 && !context.sleepFor(20s))
          return absl::StatusOr<json>(absl::DeadlineExceededError("cut"));
        return absl::StatusOr<json>(json(context.attempt));
      },
      /*readOnly=*/true);
  CallOptions options;
  options.timeout = 100ms;
  options.retries = 1;
  options.backoffBase = 1ms;
  ToolResult result = registry.call("t.slow_once", {}, options);
  ASSERT_TRUE(result.ok) << result.error.message;
  EXPECT_EQ(result.value, 2);
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(result.attemptLog[0].error.type, "timeout");
}

// Tests that a state-changing tool abandoned at its deadline after it had
// started is not retried: it may still take effect (here it does, once),
// and a retry could apply it twice.
TEST(ToolTimeout, StartedStateChangingToolIsNotRetried) {
  ToolRegistry registry;
  std::atomic<int> applied{0};
  addTool(registry, "t.apply_then_hang",
          [&](const json &, const ToolContext &) {
            ++applied;
            std::this_thread::sleep_for(1500ms); // ignores its context
            return absl::StatusOr<json>(json("late"));
          });
  CallOptions options;
  options.timeout = 300ms;
  options.retries = 2;
  options.backoffBase = 1ms;
  ToolResult result = registry.call("t.apply_then_hang", {}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "outcome_unknown");
  EXPECT_FALSE(result.error.retryable);
  EXPECT_THAT(result.error.message,
              HasSubstr("did not finish within 300 ms and may still take "
                        "effect"));
  EXPECT_EQ(result.attempts, 1);
  EXPECT_TRUE(eventually(
      [&] { return registry.stats("t.apply_then_hang").running == 0; }));
  EXPECT_EQ(applied.load(), 1);
  EXPECT_EQ(registry.stats("t.apply_then_hang").timeouts, 1);
}

// Tests that an attempt still in its injected delay (the tool never
// started) is a plain, retried timeout even for a state-changing tool.
TEST(ToolTimeout, StateChangingToolInAnInjectedDelayIsRetried) {
  ToolRegistry registry;
  std::atomic<int> applied{0};
  addTool(registry, "t.apply", [&](const json &, const ToolContext &) {
    ++applied;
    return absl::StatusOr<json>(json(true));
  });
  FaultSpec spec;
  spec.delay = 3000ms;
  spec.delayEvery = 2; // the second attempt overall
  registry.faults().set("t.apply", spec);
  CallOptions options;
  options.timeout = 300ms;
  options.retries = 2;
  options.backoffBase = 1ms;
  ASSERT_TRUE(registry.call("t.apply", {}, options).ok);
  ToolResult result = registry.call("t.apply", {}, options);
  ASSERT_TRUE(result.ok) << result.error.message;
  EXPECT_EQ(result.attempts, 2);
  EXPECT_EQ(result.attemptLog[0].error.type, "timeout");
  EXPECT_TRUE(result.attemptLog[0].injectedDelay);
  EXPECT_EQ(applied.load(), 2);
}

TEST(ToolTimeout, FastToolUnderATimeoutReturnsItsValue) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  CallOptions options;
  options.timeout = 5s;
  ToolResult result = registry.call("test.echo", {{"text", "x"}}, options);
  ASSERT_TRUE(result.ok);
  EXPECT_EQ(result.value["text"], "x");
}

//===----------------------------------------------------------------------===//
// Cancellation by the caller
//===----------------------------------------------------------------------===//

TEST(CancelToken, LinkedChildrenAreCancelledWithTheParent) {
  auto parent = std::make_shared<CancelToken>();
  auto child = std::make_shared<CancelToken>();
  auto grandchild = std::make_shared<CancelToken>();
  parent->link(child);
  child->link(grandchild);
  EXPECT_FALSE(grandchild->cancelled());
  parent->cancel();
  EXPECT_TRUE(child->cancelled());
  EXPECT_TRUE(grandchild->cancelled());
  auto late = std::make_shared<CancelToken>();
  parent->link(late); // already cancelled: at once
  EXPECT_TRUE(late->cancelled());
  EXPECT_FALSE(late->sleepFor(10s));
}

TEST(ToolCancel, CancelledCallRunsNothing) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  addTool(registry, "t.ok", [&](const json &, const ToolContext &) {
    ++calls;
    return absl::StatusOr<json>(json(1));
  });
  CallOptions options;
  options.cancel = std::make_shared<CancelToken>();
  options.cancel->cancel();
  ToolResult result = registry.call("t.ok", {}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "cancelled");
  EXPECT_FALSE(result.error.retryable);
  EXPECT_EQ(result.attempts, 0);
  EXPECT_EQ(calls.load(), 0);
}

TEST(ToolCancel, CancelStopsARunningAttempt) {
  ToolRegistry registry;
  std::atomic<bool> sawCancel{false};
  addTool(registry, "t.sleep", [&](const json &, const ToolContext &context) {
    if (context.sleepFor(20s))
      return absl::StatusOr<json>(json("slept"));
    sawCancel = context.shouldStop();
    return absl::StatusOr<json>(absl::CancelledError("woken"));
  });
  CallOptions options; // no timeout: only the cancellation ends it
  options.cancel = std::make_shared<CancelToken>();
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    options.cancel->cancel();
  });
  ToolResult result = registry.call("t.sleep", {}, options);
  canceller.join();
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "cancelled");
  EXPECT_LT(millis(result.latency), 10000.0);
  EXPECT_TRUE(
      eventually([&] { return registry.stats("t.sleep").running == 0; }));
  EXPECT_TRUE(sawCancel.load());
}

TEST(ToolCancel, CancelStopsTheBackoff) {
  ToolRegistry registry;
  addTool(registry, "t.down", [](const json &, const ToolContext &) {
    return absl::StatusOr<json>(absl::UnavailableError("down"));
  });
  CallOptions options;
  options.retries = 5;
  options.backoffBase = 20s;
  options.backoffCap = 20s;
  options.cancel = std::make_shared<CancelToken>();
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    options.cancel->cancel();
  });
  ToolResult result = registry.call("t.down", {}, options);
  canceller.join();
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "cancelled");
  EXPECT_EQ(result.attempts, 1);
  EXPECT_LT(millis(result.latency), 9000.0); // not the 10-20 s backoff
}

//===----------------------------------------------------------------------===//
// Fault injection
//===----------------------------------------------------------------------===//

TEST(FaultInjection, FailEveryNthAttempt) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  addTool(registry, "t.ok", [&](const json &, const ToolContext &) {
    ++calls;
    return absl::StatusOr<json>(json(true));
  });
  FaultSpec spec;
  spec.failEvery = 3;
  registry.faults().set("t.ok", spec);
  std::vector<bool> outcomes;
  for (int i = 0; i < 9; ++i) {
    ToolResult result = registry.call("t.ok", {});
    outcomes.push_back(result.ok);
    if (!result.ok) {
      EXPECT_EQ(result.error.type, "injected_fault");
      EXPECT_THAT(result.error.message, HasSubstr("fail_every 3 (attempt "));
    }
  }
  EXPECT_EQ(outcomes, (std::vector<bool>{true, true, false, true, true, false,
                                         true, true, false}));
  EXPECT_EQ(calls.load(), 6); // injected failures never reach the tool
  EXPECT_EQ(registry.stats("t.ok").injectedFailures, 3);

  // With a retry every call succeeds; the retries are attempts too.
  registry.faults().set("t.ok", spec); // resets the counter
  CallOptions options;
  options.retries = 1;
  options.backoffBase = 1ms;
  std::vector<int> attempts;
  for (int i = 0; i < 4; ++i) {
    ToolResult result = registry.call("t.ok", {}, options);
    EXPECT_TRUE(result.ok);
    attempts.push_back(result.attempts);
  }
  // Attempts 1 | 2 | 3 (fails), 4 | 5: the third call needs two.
  EXPECT_EQ(attempts, (std::vector<int>{1, 1, 2, 1}));
}

TEST(FaultInjection, SeededProbabilityIsReproducible) {
  auto pattern = [](uint64_t seed) {
    FaultInjector injector;
    FaultSpec spec;
    spec.failProbability = 0.3;
    spec.seed = seed;
    injector.set("x", spec);
    std::vector<bool> fails;
    for (int i = 0; i < 400; ++i)
      fails.push_back(injector.next("x").fail);
    return fails;
  };
  std::vector<bool> a = pattern(7), b = pattern(7), c = pattern(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  int64_t failures = std::count(a.begin(), a.end(), true);
  EXPECT_GT(failures, 80); // expected 120
  EXPECT_LT(failures, 160);
}

TEST(FaultInjection, DelayEveryNthCountsAgainstTheTimeout) {
  ToolRegistry registry;
  addTool(registry, "t.ok", [](const json &, const ToolContext &) {
    return absl::StatusOr<json>(json(true));
  });
  FaultSpec spec;
  spec.delay = 3000ms;
  spec.delayEvery = 2;
  registry.faults().set("t.ok", spec);
  CallOptions options;
  options.timeout = 100ms;
  std::vector<std::string> types;
  for (int i = 0; i < 4; ++i) {
    ToolResult result = registry.call("t.ok", {}, options);
    types.push_back(result.ok ? "ok" : result.error.type);
    EXPECT_LT(millis(result.latency), 2500.0);
    EXPECT_EQ(result.attemptLog[0].injectedDelay, i % 2 == 1);
  }
  EXPECT_EQ(types,
            (std::vector<std::string>{"ok", "timeout", "ok", "timeout"}));

  // Without a timeout the delay is simply spent.
  spec.delay = 60ms;
  spec.delayEvery = 1;
  registry.faults().set("t.ok", spec);
  ToolResult delayed = registry.call("t.ok", {});
  EXPECT_TRUE(delayed.ok);
  EXPECT_GE(millis(delayed.latency), 59.0);
}

TEST(FaultInjection, JsonSpecWithWildcard) {
  ToolRegistry registry;
  for (const char *name : {"a.one", "b.two"})
    addTool(registry, name, [](const json &, const ToolContext &) {
      return absl::StatusOr<json>(json(1));
    });
  json spec = {{"a.one", {{"fail_every", 2}}}, {"*", {{"fail_every", 3}}}};
  ASSERT_TRUE(registry.faults().loadJson(spec).ok());
  EXPECT_EQ(registry.faults().toJson()["a.one"]["fail_every"], 2);
  std::vector<bool> one, two;
  for (int i = 0; i < 6; ++i) {
    one.push_back(registry.call("a.one", {}).ok);
    two.push_back(registry.call("b.two", {}).ok);
  }
  EXPECT_EQ(one, (std::vector<bool>{true, false, true, false, true, false}));
  EXPECT_EQ(two, (std::vector<bool>{true, true, false, true, true, false}));
  registry.faults().clearAll();
  EXPECT_TRUE(registry.call("a.one", {}).ok);
  EXPECT_TRUE(registry.call("a.one", {}).ok);
}

TEST(FaultInjection, JsonSpecErrorsNameToolAndKey) {
  FaultInjector injector;
  struct Case {
    json spec;
    std::string expected;
  } cases[] = {
      {json::array(), "must be an object of tool name -> spec"},
      {{{"t", {{"fail_evry", 2}}}},
       "fault injection for 't': fault spec: unknown key \"fail_evry\""},
      {{{"t", {{"fail_every", -1}}}},
       "\"fail_every\" must be a non-negative integer"},
      {{{"t", {{"fail_probability", 1.5}}}},
       "\"fail_probability\" must be a number in [0, 1]"},
      {{{"t", {{"delay_every", 0}}}}, "\"delay_every\" must be at least 1"},
      {{{"t", 3}}, "fault spec must be an object"},
  };
  for (const Case &c : cases) {
    absl::Status status = injector.loadJson(c.spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_THAT(messageOf(status), HasSubstr(c.expected)) << c.spec;
  }
  // A failed load leaves the previous specs in place.
  ASSERT_TRUE(injector.loadJson({{"t", {{"fail_every", 1}}}}).ok());
  EXPECT_FALSE(injector.loadJson({{"t", {{"bogus", 1}}}}).ok());
  EXPECT_TRUE(injector.next("t").fail);
}

//===----------------------------------------------------------------------===//
// Concurrency
//===----------------------------------------------------------------------===//

TEST(ToolRegistry, ConcurrentCallsAreSafe) {
  ToolRegistry registry;
  std::atomic<int> calls{0};
  ToolSignature sig;
  sig.name = "t.count";
  sig.parameters = {{"i", ToolType::Int, true, "", std::nullopt}};
  ASSERT_TRUE(registry
                  .add(sig,
                       [&](const json &args, const ToolContext &) {
                         ++calls;
                         return absl::StatusOr<json>(args["i"].get<int>() * 2);
                       })
                  .ok());
  FaultSpec spec;
  spec.failEvery = 4;
  registry.faults().set("t.count", spec);

  constexpr int kThreads = 8, kCallsPerThread = 50;
  std::atomic<int> okCount{0}, injected{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        CallOptions options;
        if (i % 2)
          options.timeout = 30s; // the threaded path
        int value = t * 1000 + i;
        ToolResult result = registry.call("t.count", {{"i", value}}, options);
        if (result.ok)
          ++okCount, wrong += result.value != value * 2;
        else
          injected += result.error.type == "injected_fault";
      }
    });
  // Registering and exporting while calls run.
  for (int i = 0; i < 20; ++i) {
    addTool(registry, "t.extra" + std::to_string(i),
            [](const json &, const ToolContext &) {
              return absl::StatusOr<json>(json(0));
            });
    EXPECT_GE(registry.toJson()["tools"].size(), 2u);
  }
  for (std::thread &thread : threads)
    thread.join();
  constexpr int kTotal = kThreads * kCallsPerThread;
  EXPECT_EQ(injected.load(), kTotal / 4); // exactly every 4th attempt
  EXPECT_EQ(okCount.load(), kTotal - kTotal / 4);
  EXPECT_EQ(calls.load(), okCount.load());
  EXPECT_EQ(wrong.load(), 0);
  ToolStats stats = registry.stats("t.count");
  EXPECT_EQ(stats.calls, kTotal);
  EXPECT_EQ(stats.successes + stats.failures, kTotal);
  EXPECT_TRUE(
      eventually([&] { return registry.stats("t.count").running == 0; }));
}

TEST(ToolRegistry, RemovedToolIsUnknown) {
  ToolRegistry registry;
  ASSERT_TRUE(registry.add(echoSignature(), echoFunction()).ok());
  EXPECT_TRUE(registry.remove("test.echo"));
  EXPECT_FALSE(registry.remove("test.echo"));
  EXPECT_FALSE(registry.contains("test_echo"));
  EXPECT_EQ(registry.call("test.echo", {{"text", "x"}}).error.type,
            "unknown_tool");
  // The OpenAI name is free again.
  ToolSignature sig;
  sig.name = "test_echo";
  EXPECT_TRUE(registry.add(sig, echoFunction()).ok());
}

TEST(ToolResultBounds, ResultOverTheSizeLimitIsAnError) {
  ToolRegistry registry;
  EXPECT_EQ(registry.maxResultBytes(), kDefaultMaxToolResultBytes);
  EXPECT_EQ(kDefaultMaxToolResultBytes, size_t(16) << 20);
  std::atomic<int> calls{0};
  addTool(registry, "t.big", [&](const json &, const ToolContext &) {
    ++calls;
    return absl::StatusOr<json>(std::string(2000, 'x'));
  });
  // Under the default limit: returned whole.
  ToolResult whole = registry.call("t.big", {});
  ASSERT_TRUE(whole.ok);
  EXPECT_EQ(whole.value.get<std::string>().size(), 2000u);

  registry.setMaxResultBytes(1000);
  CallOptions options;
  options.retries = 3;
  ToolResult big = registry.call("t.big", {}, options);
  EXPECT_FALSE(big.ok);
  EXPECT_TRUE(big.value.is_null()); // nothing of it is kept
  EXPECT_EQ(big.error.type, "too_large");
  EXPECT_FALSE(big.error.retryable);
  EXPECT_EQ(big.attempts, 1);
  EXPECT_THAT(big.error.message,
              HasSubstr("tool 't.big' returned 2002 bytes of JSON, over the "
                        "limit of 1000 bytes"));
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(registry.stats("t.big").failures, 1);
  // The same under a timeout (the attempt on its own thread).
  options.timeout = 10s;
  EXPECT_EQ(registry.call("t.big", {}, options).error.type, "too_large");
}

TEST(ToolResultBounds, DeeplyNestedResultIsAnError) {
  ToolRegistry registry;
  addTool(registry, "t.deep", [](const json &, const ToolContext &) {
    return absl::StatusOr<json>(nestedArrays(100000));
  });
  addTool(registry, "t.ok", [](const json &, const ToolContext &) {
    return absl::StatusOr<json>(nestedArrays(kMaxJsonDepth));
  });
  ToolResult deep = registry.call("t.deep", {});
  EXPECT_FALSE(deep.ok);
  EXPECT_EQ(deep.error.type, "too_large");
  EXPECT_THAT(deep.error.message,
              HasSubstr("tool 't.deep' returned JSON nested deeper than 64 "
                        "levels"));
  // The result and the call's JSON serialize (no recursion blows up).
  EXPECT_FALSE(deep.toJson().dump().empty());
  EXPECT_TRUE(registry.call("t.ok", {}).ok);
}

} // namespace
} // namespace treni
