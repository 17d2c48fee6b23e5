//===- agent_request_test.cpp - the body of POST /v1/agent/run ------------===//

#include <string>

#include "runtime/agent/agent_request.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

std::string messageOf(const absl::Status &status) {
  return std::string(status.message());
}

// Tests that a full request is read field by field, and defaults fill in
// what it leaves out.
TEST(AgentRequest, ReadsEveryField) {
  auto full = parseAgentRunRequest(
      R"({"source": "workflow f() {}", "workflow": "f", "file": "x.agent",)"
      R"( "args": {"q": "text", "n": 3}})");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->source, "workflow f() {}");
  EXPECT_EQ(full->workflow, "f");
  EXPECT_EQ(full->file, "x.agent");
  EXPECT_EQ(full->args["n"], 3);
  auto minimal = parseAgentRunRequest(R"({"source": ""})");
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_EQ(minimal->workflow, "");
  EXPECT_EQ(minimal->file, "request.agent");
  EXPECT_TRUE(minimal->args.is_object() && minimal->args.empty());
}

// Tests that each bad field is an error naming it, and that arguments
// nested 100,000 deep are refused before anything recurses over them.
TEST(AgentRequest, RefusesBadFields) {
  auto deep = parseAgentRunRequest(R"({"source": "", "args": {"a": )" +
                                   std::string(100000, '[') +
                                   std::string(100000, ']') + "}}");
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(messageOf(deep.status()).find("deeper than 64"), std::string::npos);
  struct Case {
    const char *body, *field;
  } cases[] = {
      {R"([1])", "JSON object"},
      {R"({"args": {}})", "'source'"},
      {R"({"source": 1})", "'source'"},
      {R"({"source": "", "workflow": 1})", "'workflow'"},
      {R"({"source": "", "file": []})", "'file'"},
      {R"({"source": "", "args": [1]})", "'args'"},
      {R"({"source": )", "not usable JSON"},
  };
  for (const Case &c : cases) {
    auto request = parseAgentRunRequest(c.body);
    ASSERT_FALSE(request.ok()) << c.body;
    EXPECT_NE(messageOf(request.status()).find(c.field), std::string::npos)
        << c.body << " -> " << request.status();
  }
  std::string longName(kMaxAgentNameBytes + 1, 'w');
  auto tooLong = parseAgentRunRequest(R"({"source": "", "workflow": ")" +
                                      longName + "\"}");
  ASSERT_FALSE(tooLong.ok());
  EXPECT_NE(messageOf(tooLong.status()).find("at most 256"), std::string::npos);
}

} // namespace
} // namespace treni
