//===- jinja_test.cpp - the Jinja2-subset interpreter ---------------------===//
//
// Tests that every construct renders what Python Jinja2 renders in
// transformers' environment (test/chat/jinja_cases.json, made by
// test/chat/make_jinja_cases.py with Jinja2 itself), that what Jinja2 rejects
// fails here too, and that errors name the construct and its line:column.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/jinja.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni::jinja {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing_util::messageOf;

absl::StatusOr<std::string>
renderSource(std::string_view source,
             const nlohmann::ordered_json &variables = {},
             TemplateOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Template>> t =
      Template::parse(source, std::move(options));
  if (!t.ok())
    return t.status();
  return (*t)->render(variables.is_null() ? nlohmann::ordered_json::object()
                                          : variables);
}

std::string renderOk(std::string_view source,
                     const nlohmann::ordered_json &variables = {}) {
  absl::StatusOr<std::string> out = renderSource(source, variables);
  EXPECT_TRUE(out.ok()) << source << ": " << out.status();
  return out.ok() ? *out : "";
}

std::string errorOf(std::string_view source,
                    const nlohmann::ordered_json &variables = {}) {
  absl::StatusOr<std::string> out = renderSource(source, variables);
  EXPECT_FALSE(out.ok()) << source << " rendered " << (out.ok() ? *out : "");
  return out.ok() ? "" : messageOf(out.status());
}

//===----------------------------------------------------------------------===//
// Conformance with Jinja2 (generated cases)
//===----------------------------------------------------------------------===//

TEST(JinjaConformanceTest, EveryCaseRendersAsJinja2Does) {
  std::ifstream in(std::string(TRENI_SOURCE_DIR) +
                       "/test/chat/jinja_cases.json",
                   std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::ordered_json cases =
      nlohmann::ordered_json::parse(text.str(), nullptr, false);
  ASSERT_TRUE(cases.is_object())
      << "test/chat/jinja_cases.json is missing or invalid";
  int rendered = 0, rejected = 0;
  for (const auto &c : cases["cases"]) {
    std::string name = c["name"].get<std::string>();
    std::string source = c["template"].get<std::string>();
    SCOPED_TRACE(name + ": " + source);
    absl::StatusOr<std::string> out = renderSource(source, c["variables"]);
    if (c.contains("error")) {
      ++rejected;
      EXPECT_FALSE(out.ok())
          << "Jinja2 raised " << c["error_type"] << ": " << c["error"]
          << "; we rendered " << (out.ok() ? *out : "");
      if (!out.ok() && c.value("error_type", "") == "TemplateError") {
        EXPECT_THAT(messageOf(out.status()),
                    StartsWith(c["error"].get<std::string>()));
      }
      continue;
    }
    ++rendered;
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, c["expected"].get<std::string>());
  }
  EXPECT_GE(rendered, 50);
  EXPECT_GE(rejected, 20);
}

//===----------------------------------------------------------------------===//
// Errors: what and where
//===----------------------------------------------------------------------===//

TEST(JinjaErrorTest, SyntaxErrorsNameTheLineAndColumn) {
  EXPECT_THAT(errorOf("line one\n  {{ 1 + }}"), HasSubstr("line 2:10"));
  EXPECT_THAT(errorOf("{% if x %}\nunclosed"),
              HasSubstr("expected 'elif' or 'else' or 'endif'"));
  EXPECT_THAT(errorOf("a\nb {% frobnicate %}"),
              HasSubstr("line 2:6: unknown statement 'frobnicate'"));
  EXPECT_THAT(errorOf("{{ 'abc }}"), HasSubstr("unterminated string literal"));
  EXPECT_THAT(errorOf("{# open"),
              HasSubstr("line 1:1: missing end of comment tag"));
  EXPECT_THAT(errorOf("{{ x $ y }}"),
              HasSubstr("line 1:6: unexpected char '$'"));
  EXPECT_THAT(errorOf("{% for x in y %}{% endif %}"),
              HasSubstr("unexpected 'endif'"));
  EXPECT_THAT(errorOf("{% break %}"), HasSubstr("'break' outside of a loop"));
}

TEST(JinjaErrorTest, UnsupportedConstructsAreNamed) {
  EXPECT_THAT(errorOf("{% include 'x' %}"),
              HasSubstr("unsupported statement 'include'"));
  EXPECT_THAT(errorOf("{% extends 'x' %}"),
              HasSubstr("line 1:4: unsupported statement 'extends'"));
  EXPECT_THAT(errorOf("\n {{ x|wordcount }}"),
              HasSubstr("line 2:7: unsupported filter 'wordcount'"));
  EXPECT_THAT(errorOf("{{ x|nosuch }}"), HasSubstr("no filter named 'nosuch'"));
  EXPECT_THAT(errorOf("{{ x is nosuch }}"),
              HasSubstr("no test named 'nosuch'"));
  EXPECT_THAT(errorOf("{{ '%s' % 1 }}"),
              HasSubstr("unsupported: string formatting"));
  EXPECT_THAT(errorOf("{{ 'a'.format(1) }}"),
              HasSubstr("'str object' has no attribute 'format'"));
  EXPECT_THAT(errorOf("{{ f(*x) }}"), HasSubstr("unsupported: *args"));
  EXPECT_THAT(errorOf("{% for x in y recursive %}{% endfor %}"),
              HasSubstr("recursive"));
}

TEST(JinjaErrorTest, RuntimeErrorsNameTheExpression) {
  EXPECT_THAT(errorOf("ok\n{{ missing.attr }}"),
              HasSubstr("line 2:11: 'missing' is undefined"));
  EXPECT_THAT(errorOf("{{ m.content.x.y }}", {{"m", {{"role", "u"}}}}),
              HasSubstr("'dict object' has no attribute 'content'"));
  EXPECT_THAT(errorOf("{{ 'x' in none }}"),
              HasSubstr("argument of type 'NoneType' is not iterable"));
  EXPECT_THAT(errorOf("{{ 1 // 0 }}"), HasSubstr("division or modulo by zero"));
  EXPECT_THAT(errorOf("{{ 9223372036854775807 + 1 }}"),
              HasSubstr("integer overflow"));
  EXPECT_THAT(errorOf("{{ [1]|tojson(indent=[]) }}"), HasSubstr("indent"));
  EXPECT_THAT(errorOf("{{ 'a'.split('') }}"), HasSubstr("empty separator"));
  EXPECT_THAT(errorOf("{{ x() }}", {{"x", 1}}),
              HasSubstr("'int' object is not callable"));
}

TEST(JinjaErrorTest, RaiseExceptionCarriesTheTemplatesMessage) {
  std::string message =
      errorOf("{% if messages|length == 0 %}\n"
              "  {{ raise_exception('No messages: ' ~ 3) }}\n"
              "{% endif %}",
              {{"messages", nlohmann::ordered_json::array()}});
  EXPECT_THAT(message, StartsWith("No messages: 3"));
  EXPECT_THAT(message, HasSubstr("line 2:"));
  // Inside a macro too.
  EXPECT_THAT(errorOf("{% macro m() %}{{ raise_exception('from macro') }}{% "
                      "endmacro %}{{ m() }}"),
              StartsWith("from macro"));
}

TEST(JinjaErrorTest, HostileTemplatesAreBounded) {
  // Deep nesting is a syntax error, not a stack overflow.
  EXPECT_THAT(errorOf("{{ " + std::string(5000, '(') + "1" +
                      std::string(5000, ')') + " }}"),
              HasSubstr("nested too deeply"));
  EXPECT_THAT(errorOf("{{ " + std::string(5000, '[') + " }}"),
              HasSubstr("line 1:5005: unexpected '}'"));
  EXPECT_THAT(errorOf(std::string(3000, '-').insert(0, "{{ ") + "1 }}"),
              HasSubstr("nested too deeply"));
  std::string longChain = "{{ 1";
  for (int i = 0; i < 3000; ++i)
    longChain += " + 1";
  EXPECT_THAT(errorOf(longChain + " }}"),
              HasSubstr("expression nested too deeply"));
  EXPECT_EQ(renderOk("{{ 1" + std::string(" + 1").append(" + 1") + " }}"), "3");
  std::string deepIfs;
  for (int i = 0; i < 1000; ++i)
    deepIfs += "{% if true %}";
  EXPECT_THAT(errorOf(deepIfs), HasSubstr("nested too deeply"));
  // Runaway recursion, loops and output stop with an error.
  EXPECT_THAT(errorOf("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
              HasSubstr("nested deeper than"));
  TemplateOptions small;
  small.maxLoopIterations = 1000;
  EXPECT_THAT(messageOf(renderSource(
                            "{% for i in range(100) %}{% for j in range(100) %}"
                            "{% endfor %}{% endfor %}",
                            {}, small)
                            .status()),
              HasSubstr("loop iterations"));
  small.maxOutputBytes = 100;
  EXPECT_THAT(messageOf(renderSource("{% for i in range(1000) %}xx{% endfor %}",
                                     {}, small)
                            .status()),
              HasSubstr("output larger than"));
  EXPECT_THAT(errorOf("{{ 'x' * 999999999999 }}"), HasSubstr("too large"));
}

//===----------------------------------------------------------------------===//
// Undefined and values
//===----------------------------------------------------------------------===//

TEST(JinjaUndefinedTest, MissingThingsAreUndefinedNotErrors) {
  nlohmann::ordered_json vars = {{"m", {{"role", "user"}}}, {"l", {1, 2}}};
  EXPECT_EQ(renderOk("[{{ x }}][{{ m.content }}][{{ m['nope'] }}][{{ l[5] "
                     "}}][{{ l[-9] }}]",
                     vars),
            "[][][][][]");
  EXPECT_EQ(renderOk("{{ m.content is defined }} {{ m.content is none }} {{ "
                     "not m.content }} "
                     "{{ m.content|length }} {{ m.content|default('d') }}",
                     vars),
            "False False True 0 d");
  EXPECT_EQ(renderOk("{% for x in nothing %}x{% else %}none{% endfor %}"),
            "none");
  EXPECT_EQ(renderOk("{% if m.tool_calls %}yes{% else %}no{% endif %}", vars),
            "no");
  EXPECT_EQ(renderOk("{{ x == y }} {{ x ~ 'a' }} {{ 'k' in x }}"),
            "True a False");
  // The else-less inline if is Undefined too.
  EXPECT_EQ(renderOk("[{{ 1 if false }}]{{ (1 if false) is defined }}"),
            "[]False");
}

TEST(JinjaValueTest, FloatsPrintAsPythonRepr) {
  EXPECT_EQ(formatFloat(1.0), "1.0");
  EXPECT_EQ(formatFloat(-0.0), "-0.0");
  EXPECT_EQ(formatFloat(0.1), "0.1");
  EXPECT_EQ(formatFloat(1e-5), "1e-05");
  EXPECT_EQ(formatFloat(0.0001), "0.0001");
  EXPECT_EQ(formatFloat(1e16), "1e+16");
  EXPECT_EQ(formatFloat(1e15), "1000000000000000.0");
  EXPECT_EQ(formatFloat(1.5e300), "1.5e+300");
  EXPECT_EQ(formatFloat(123456.789), "123456.789");
  EXPECT_EQ(formatFloat(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(formatFloat(std::nan("")), "nan");
}

TEST(JinjaValueTest, TojsonIsPythonJsonDumps) {
  nlohmann::ordered_json doc = nlohmann::ordered_json::parse(
      R"({"z": 1, "a": [1.5, -2, null, true, "é\u0001\"\\/"], "m": {}, "e": []})");
  Value v = Value::fromJson(doc);
  auto plain = toJson(v);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(
      *plain,
      R"({"z": 1, "a": [1.5, -2, null, true, "é\u0001\"\\/"], "m": {}, "e": []})");
  JsonOptions pretty;
  pretty.indent = "  ";
  pretty.itemSeparator = ",";
  pretty.sortKeys = true;
  auto indented = toJson(v, pretty);
  ASSERT_TRUE(indented.ok());
  EXPECT_EQ(
      *indented,
      "{\n  \"a\": [\n    1.5,\n    -2,\n    null,\n    true,\n    "
      "\"é\\u0001\\\"\\\\/\"\n  ],\n  \"e\": [],\n  \"m\": {},\n  \"z\": 1\n}");
  JsonOptions ascii;
  ascii.ensureAscii = true;
  EXPECT_EQ(*toJson(Value::string("é🙂\x7f"), ascii),
            R"("\u00e9\ud83d\ude42\u007f")");
  EXPECT_FALSE(toJson(Value()).ok());
  EXPECT_EQ(*toJson(Value::number(std::numeric_limits<double>::infinity())),
            "Infinity");
}

TEST(JinjaValueTest, ReprOfStringsAndContainers) {
  EXPECT_EQ(Value::string("it's").repr(), "\"it's\"");
  EXPECT_EQ(Value::string("a\nb\x01\\").repr(), "'a\\nb\\x01\\\\'");
  EXPECT_EQ(Value::string("é\u00a0").repr(), "'é\\xa0'");
  EXPECT_EQ(Value::tuple({Value::integer(1)}).str(), "(1,)");
  EXPECT_EQ(Value::fromJson(nlohmann::ordered_json::parse(
                                R"({"b": [true, null], "a": 1.0})"))
                .str(),
            "{'b': [True, None], 'a': 1.0}");
}

TEST(JinjaValueTest, KeyOrderIsKeptFromOrderedJson) {
  nlohmann::ordered_json tools = nlohmann::ordered_json::parse(
      R"([{"type": "function", "b": 2, "a": 1}])");
  EXPECT_EQ(renderOk("{{ tools[0]|tojson }}", {{"tools", tools}}),
            R"({"type": "function", "b": 2, "a": 1})");
}

//===----------------------------------------------------------------------===//
// transformers' environment
//===----------------------------------------------------------------------===//

TEST(JinjaEnvironmentTest, GenerationBlocksRenderTheirBody) {
  EXPECT_EQ(renderOk("{% generation %}a{{ 1 }}{% endgeneration %}b"), "a1b");
}

TEST(JinjaEnvironmentTest, StrftimeNowUsesTheConfiguredClock) {
  TemplateOptions options;
  options.now = [] { return std::time_t(1721952000); }; // 2024-07-26 00:00 UTC
  setenv("TZ", "UTC", 1);
  tzset();
  auto out = renderSource("{{ strftime_now('%d %b %Y') }}", {}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "26 Jul 2024");
}

TEST(JinjaEnvironmentTest, JinjaDefaultsCanBeRestored) {
  TemplateOptions plain;
  plain.trimBlocks = false;
  plain.lstripBlocks = false;
  plain.keepTrailingNewline = true;
  auto out = renderSource("  {% if true %}\nx\n  {% endif %}\n", {}, plain);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "  \nx\n  \n");
  auto transformers = renderSource("  {% if true %}\nx\n  {% endif %}\n");
  ASSERT_TRUE(transformers.ok());
  EXPECT_EQ(*transformers, "x\n");
}

TEST(JinjaEnvironmentTest, NamespacesAreSharedAcrossScopes) {
  EXPECT_EQ(renderOk("{% set ns = namespace(n=0) %}{% macro bump() %}{% set "
                     "ns.n = ns.n + 1 %}"
                     "{% endmacro %}{% for i in range(3) %}{{ bump() }}{% "
                     "endfor %}{{ ns.n }}"),
            "3");
}

} // namespace
} // namespace treni::jinja
