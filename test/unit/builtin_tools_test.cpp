//===- builtin_tools_test.cpp - SQLite, sandboxed files, http.get ---------===//
//
// SQLite with injection attempts that must stay inert, sandbox escapes that
// must be refused (checked against files outside the sandbox, which must
// stay untouched), and http.get against an in-process server on loopback.
//
//===----------------------------------------------------------------------===//

#include "runtime/tools/builtin_tools.h"

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#include "runtime/tools/sandbox_fs.h"
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
namespace fs = std::filesystem;
using testing_util::TempDir;

void writeText(const std::string &path, const std::string &text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Calls and asserts success.
json callOk(ToolRegistry &registry, const std::string &tool, const json &args,
            CallOptions options = {}) {
  ToolResult result = registry.call(tool, args, options);
  EXPECT_TRUE(result.ok) << tool << " " << args << ": " << result.error.type
                         << ": " << result.error.message;
  return result.value;
}

/// A call that must fail with `type`, its message naming `expected`.
void expectFailure(ToolRegistry &registry, const std::string &tool,
                   const json &args, const std::string &type,
                   const std::string &expected) {
  ToolResult result = registry.call(tool, args);
  EXPECT_FALSE(result.ok) << tool << " " << args;
  EXPECT_EQ(result.error.type, type) << tool << " " << args;
  EXPECT_THAT(result.error.message, HasSubstr(expected)) << tool << " " << args;
}

//===----------------------------------------------------------------------===//
// SQLite
//===----------------------------------------------------------------------===//

class SqliteToolsTest : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(registerSqliteTools(registry, {}).ok());
    callOk(registry, "sqlite.exec",
           {{"sql", "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, "
                    "score REAL, data BLOB)"}});
  }
  ToolRegistry registry;
};

TEST_F(SqliteToolsTest, InsertsAndQueriesWithBoundParameters) {
  json inserted =
      callOk(registry, "sqlite.exec",
             {{"sql", "INSERT INTO users(name, score) VALUES (?, ?)"},
              {"params", {"ada", 9.5}}});
  EXPECT_EQ(inserted["changes"], 1);
  EXPECT_EQ(inserted["last_insert_rowid"], 1);
  callOk(registry, "sqlite.exec",
         {{"sql", "INSERT INTO users(name, score, data) VALUES "
                  "(:name, @score, x'00ff')"},
          {"params", {{"name", "bob"}, {"@score", 7}}}});
  callOk(registry, "sqlite.exec",
         {{"sql", "INSERT INTO users(name) VALUES ($n)"},
          {"params", {{"n", nullptr}}}});

  json rows = callOk(registry, "sqlite.query",
                     {{"sql", "SELECT id, name, score, data FROM users "
                              "WHERE id >= ? ORDER BY id"},
                      {"params", {1}}});
  EXPECT_EQ(rows["columns"], json::array({"id", "name", "score", "data"}));
  EXPECT_EQ(rows["truncated"], false);
  ASSERT_EQ(rows["rows"].size(), 3u);
  EXPECT_EQ(
      rows["rows"][0],
      (json{{"id", 1}, {"name", "ada"}, {"score", 9.5}, {"data", nullptr}}));
  EXPECT_EQ(rows["rows"][1]["score"], 7.0);
  EXPECT_EQ(rows["rows"][1]["data"], (json{{"blob_base64", "AP8="}}));
  EXPECT_TRUE(rows["rows"][2]["name"].is_null());
}

TEST_F(SqliteToolsTest, InjectionAttemptsStayInert) {
  const std::string attacks[] = {
      "x'); DROP TABLE users; --",
      "' OR '1'='1",
      "1; DELETE FROM users",
      "\"; ATTACH DATABASE '/tmp/evil.db' AS evil; --",
  };
  for (const std::string &attack : attacks)
    callOk(
        registry, "sqlite.exec",
        {{"sql", "INSERT INTO users(name) VALUES (?)"}, {"params", {attack}}});
  // Every value was stored verbatim, the table still exists and nothing
  // else was touched.
  json all = callOk(registry, "sqlite.query",
                    {{"sql", "SELECT name FROM users ORDER BY id"}});
  ASSERT_EQ(all["rows"].size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(all["rows"][i]["name"], attacks[i]);
  // A classic tautology as a value matches nothing.
  json none =
      callOk(registry, "sqlite.query",
             {{"sql", "SELECT * FROM users WHERE name = :n AND id = 99"},
              {"params", {{"n", "' OR '1'='1"}}}});
  EXPECT_TRUE(none["rows"].empty());
  EXPECT_FALSE(fs::exists("/tmp/evil.db"));
}

TEST_F(SqliteToolsTest, QueryIsOneReadOnlyStatement) {
  callOk(registry, "sqlite.exec",
         {{"sql", "INSERT INTO users(name) VALUES ('a'); "
                  "INSERT INTO users(name) VALUES ('b');"}});
  ToolResult write =
      registry.call("sqlite.query", {{"sql", "DELETE FROM users"}});
  EXPECT_FALSE(write.ok);
  EXPECT_EQ(write.error.type, "invalid_arguments");
  EXPECT_THAT(write.error.message, HasSubstr("read-only statements"));
  ToolResult stacked =
      registry.call("sqlite.query", {{"sql", "SELECT 1; DROP TABLE users"}});
  EXPECT_FALSE(stacked.ok);
  EXPECT_THAT(stacked.error.message, HasSubstr("expected one statement"));
  json count = callOk(registry, "sqlite.query",
                      {{"sql", "SELECT count(*) AS n FROM users"}});
  EXPECT_EQ(count["rows"][0]["n"], 2);
}

TEST_F(SqliteToolsTest, ParamsWithSeveralStatementsRunNothing) {
  ToolResult result = registry.call(
      "sqlite.exec", {{"sql", "INSERT INTO users(name) VALUES (?); "
                              "DROP TABLE users"},
                      {"params", {"x"}}});
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error.message, HasSubstr("expected one statement"));
  json count = callOk(registry, "sqlite.query",
                      {{"sql", "SELECT count(*) AS n FROM users"}});
  EXPECT_EQ(count["rows"][0]["n"], 0);
}

TEST_F(SqliteToolsTest, ParameterErrorsAreClear) {
  struct Case {
    json args;
    std::string expected;
  } cases[] = {
      {{{"sql", "INSERT INTO users(name) VALUES (?)"}, {"params", {1, 2}}},
       "the statement has 1 parameter(s), params has 2 value(s)"},
      {{{"sql", "INSERT INTO users(name) VALUES (?)"}},
       "has 1 parameter(s) but no params were given"},
      {{{"sql", "INSERT INTO users(name) VALUES (:name)"},
        {"params", {{"nme", "x"}}}},
       "no parameter named 'nme'"},
      {{{"sql", "INSERT INTO users(name, score) VALUES (:name, :score)"},
        {"params", {{"name", "x"}}}},
       "parameter :score has no value"},
      {{{"sql", "INSERT INTO users(name) VALUES (?)"}, {"params", "x"}},
       "params must be an array or an object, got string"},
      {{{"sql", "SELEC 1"}}, "near \"SELEC\": syntax error"},
      {{{"sql", "  -- only a comment"}}, "the SQL has no statement"},
      {{{"sql", std::string("SELECT 1;\0 DROP TABLE users", 27)}},
       "the SQL contains a NUL byte"},
  };
  for (const Case &c : cases) {
    ToolResult result = registry.call("sqlite.exec", c.args);
    ASSERT_FALSE(result.ok) << c.args;
    EXPECT_EQ(result.error.type, "invalid_arguments") << c.args;
    EXPECT_THAT(result.error.message, HasSubstr(c.expected)) << c.args;
  }
}

TEST_F(SqliteToolsTest, AttachIsRefused) {
  TempDir dir;
  std::string target = dir / "other.db";
  ToolResult attach =
      registry.call("sqlite.exec", {{"sql", "ATTACH DATABASE ? AS other"},
                                    {"params", {target}}});
  EXPECT_FALSE(attach.ok);
  ToolResult vacuum = registry.call(
      "sqlite.exec", {{"sql", "VACUUM INTO ?"}, {"params", {target}}});
  EXPECT_FALSE(vacuum.ok);
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(SqliteToolsTest, MaxRowsTruncates) {
  callOk(
      registry, "sqlite.exec",
      {{"sql", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
               "FROM c WHERE x < 50) INSERT INTO users(id) SELECT x FROM c"}});
  json rows = callOk(registry, "sqlite.query",
                     {{"sql", "SELECT id FROM users"}, {"max_rows", 10}});
  EXPECT_EQ(rows["rows"].size(), 10u);
  EXPECT_EQ(rows["truncated"], true);
  json all =
      callOk(registry, "sqlite.query", {{"sql", "SELECT id FROM users"}});
  EXPECT_EQ(all["rows"].size(), 50u);
  EXPECT_EQ(all["truncated"], false);
}

TEST_F(SqliteToolsTest, HugeValuesStopAtTheLengthLimit) {
  // Without a limit each of these builds a value of most of a gigabyte (the
  // first came back as 11.9 GB of JSON); SQLite now refuses them before
  // allocating.
  for (const char *sql :
       {"SELECT randomblob(900000000)", "SELECT zeroblob(900000000)",
        "SELECT hex(randomblob(600000))",
        "SELECT group_concat(zeroblob(300000)) FROM (SELECT 1 UNION ALL "
        "SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4)"}) {
    expectFailure(registry, "sqlite.query", {{"sql", sql}}, "too_large",
                  "a value is at most 1048576 bytes");
    expectFailure(registry, "sqlite.exec", {{"sql", sql}}, "too_large",
                  "string or blob too big");
  }
  expectFailure(registry, "sqlite.exec",
                {{"sql", "INSERT INTO users(name) VALUES (?)"},
                 {"params", {std::string((1 << 20) + 1, 'x')}}},
                "too_large", "a value is at most 1048576 bytes");
  // printf() gives up (NULL) at the limit instead of growing past it.
  json printed = callOk(registry, "sqlite.query",
                        {{"sql", "SELECT printf('%900000000d', 5) AS p"}});
  EXPECT_TRUE(printed["rows"][0]["p"].is_null());
  // At the limit is fine.
  json atLimit = callOk(registry, "sqlite.query",
                        {{"sql", "SELECT length(zeroblob(1048576)) AS n"}});
  EXPECT_EQ(atLimit["rows"][0]["n"], 1048576);
}

TEST(SqliteTools, QueryResultIsCappedInBytes) {
  ToolRegistry registry;
  SqliteToolConfig config;
  config.maxResultBytes = 10000;
  ASSERT_TRUE(registerSqliteTools(registry, config).ok());
  callOk(registry, "sqlite.exec",
         {{"sql", "CREATE TABLE t(v TEXT); WITH RECURSIVE c(x) AS (SELECT 1 "
                  "UNION ALL SELECT x + 1 FROM c WHERE x < 100) INSERT INTO "
                  "t SELECT printf('%.200c', 'v') FROM c"}});
  // 100 rows of 200 bytes: each value is small, together they are not.
  expectFailure(registry, "sqlite.query", {{"sql", "SELECT v FROM t"}},
                "too_large",
                "the result is over the limit of 10000 bytes (maxResultBytes)");
  json some = callOk(registry, "sqlite.query",
                     {{"sql", "SELECT v FROM t"}, {"max_rows", 20}});
  EXPECT_EQ(some["rows"].size(), 20u);
  EXPECT_EQ(some["truncated"], true);
}

TEST_F(SqliteToolsTest, ConnectionLimitsAreTight) {
  std::string deep = "SELECT 1";
  for (int i = 0; i < 300; ++i)
    deep += " + 1";
  expectFailure(registry, "sqlite.query", {{"sql", deep}}, "invalid_arguments",
                "Expression tree is too large");
  std::string compound = "SELECT 1";
  for (int i = 0; i < 200; ++i)
    compound += " UNION ALL SELECT 1";
  expectFailure(registry, "sqlite.query", {{"sql", compound}},
                "invalid_arguments", "too many terms in compound SELECT");
  expectFailure(registry, "sqlite.query", {{"sql", "SELECT ?5000"}},
                "invalid_arguments", "variable number must be between ?1 and");
  std::string wide = "CREATE TABLE wide(";
  for (int i = 0; i < 600; ++i)
    wide += (i ? ", c" : "c") + std::to_string(i);
  expectFailure(registry, "sqlite.exec", {{"sql", wide + ")"}},
                "invalid_arguments", "too many columns");
  expectFailure(
      registry, "sqlite.query",
      {{"sql", "SELECT 'x' LIKE ?"}, {"params", {std::string(2000, '%')}}},
      "invalid_arguments", "LIKE or GLOB pattern too complex");
  std::string longSql = "SELECT '" + std::string((1 << 20) + 10, 'x') + "'";
  expectFailure(registry, "sqlite.query", {{"sql", longSql}}, "too_large",
                "statement too long");
  // A chain of triggers, each inserting into the next table.
  std::string chain;
  for (int i = 0; i < 12; ++i)
    chain += "CREATE TABLE n" + std::to_string(i) + "(x);";
  for (int i = 0; i + 1 < 12; ++i)
    chain += "CREATE TRIGGER t" + std::to_string(i) + " AFTER INSERT ON n" +
             std::to_string(i) + " BEGIN INSERT INTO n" +
             std::to_string(i + 1) + " VALUES (new.x); END;";
  callOk(registry, "sqlite.exec", {{"sql", chain}});
  expectFailure(registry, "sqlite.exec", {{"sql", "INSERT INTO n0 VALUES (1)"}},
                "invalid_arguments", "too many levels of trigger recursion");
  callOk(registry, "sqlite.exec", {{"sql", "INSERT INTO n3 VALUES (1)"}});
}

TEST_F(SqliteToolsTest, AuthorizerRefusesPragmasThatChangeOrLeak) {
  for (const char *sql :
       {"PRAGMA temp_store_directory = '/tmp'", "PRAGMA writable_schema = 1",
        "PRAGMA database_list", "PRAGMA temp_store = MEMORY",
        "PRAGMA user_version = 7", "PRAGMA journal_mode = OFF",
        "PRAGMA mmap_size = 1000000", "PRAGMA trusted_schema = 1",
        "PRAGMA cell_size_check = 0"})
    expectFailure(registry, "sqlite.exec", {{"sql", sql}}, "permission_denied",
                  "is not allowed");
  expectFailure(registry, "sqlite.exec",
                {{"sql", "PRAGMA temp_store_directory = '/tmp'"}},
                "permission_denied",
                "PRAGMA temp_store_directory is not allowed");
  // The read-only ones that describe the schema stay.
  json info =
      callOk(registry, "sqlite.query", {{"sql", "PRAGMA table_info(users)"}});
  EXPECT_EQ(info["rows"].size(), 4u);
  json version =
      callOk(registry, "sqlite.query", {{"sql", "PRAGMA user_version"}});
  EXPECT_EQ(version["rows"][0]["user_version"], 0);
  json columns = callOk(registry, "sqlite.query",
                        {{"sql", "SELECT name FROM pragma_table_info('users') "
                                 "ORDER BY cid"}});
  EXPECT_EQ(columns["rows"][1]["name"], "name");
  // The table-valued form does not get around the allow-list.
  expectFailure(registry, "sqlite.query",
                {{"sql", "SELECT file FROM pragma_database_list"}},
                "permission_denied", "pragma_database_list");
}

TEST_F(SqliteToolsTest, AuthorizerRefusesFunctionsThatLeakOrEscape) {
  // fts3_tokenizer('simple') returns the address of a tokenizer module (a
  // code pointer, which defeats ASLR); with two arguments it installs one.
  expectFailure(registry, "sqlite.query",
                {{"sql", "SELECT hex(fts3_tokenizer('simple'))"}},
                "permission_denied", "function fts3_tokenizer");
  expectFailure(registry, "sqlite.exec",
                {{"sql", "SELECT fts3_tokenizer('x', x'4141414141414141')"}},
                "permission_denied", "function fts3_tokenizer");
  expectFailure(registry, "sqlite.query",
                {{"sql", "SELECT load_extension('/tmp/evil.so')"}},
                "permission_denied", "function load_extension");
  // Not through a view or a trigger either (SQLite refuses functions that
  // are not innocuous there: the schema is untrusted).
  callOk(registry, "sqlite.exec",
         {{"sql", "CREATE VIEW leak AS SELECT fts3_tokenizer('simple') AS p; "
                  "CREATE TABLE log(x); CREATE TRIGGER leaky AFTER INSERT ON "
                  "log BEGIN SELECT fts3_tokenizer('simple'); END"}});
  for (const char *sql : {"SELECT p FROM leak", "INSERT INTO log VALUES (1)"}) {
    ToolResult result = registry.call("sqlite.exec", {{"sql", sql}});
    EXPECT_FALSE(result.ok) << sql;
    EXPECT_THAT(result.error.message, HasSubstr("fts3_tokenizer")) << sql;
  }
  // FTS itself works.
  callOk(registry, "sqlite.exec",
         {{"sql", "CREATE VIRTUAL TABLE docs USING fts5(body); INSERT INTO "
                  "docs VALUES ('hello tools')"}});
  json hit =
      callOk(registry, "sqlite.query",
             {{"sql", "SELECT body FROM docs WHERE docs MATCH 'tools'"}});
  EXPECT_EQ(hit["rows"].size(), 1u);
}

constexpr char kEndlessQuery[] =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c";

TEST_F(SqliteToolsTest, RunawayStatementStopsAtTheCallTimeout) {
  CallOptions options;
  options.timeout = 200ms;
  ToolResult result =
      registry.call("sqlite.query", {{"sql", kEndlessQuery}}, options);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "timeout");
  // The statement itself was interrupted (not just abandoned): the
  // connection is free for the next call.
  EXPECT_TRUE([&] {
    for (int i = 0; i < 100; ++i) {
      if (registry.stats("sqlite.query").running == 0)
        return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }());
  json one = callOk(registry, "sqlite.query", {{"sql", "SELECT 1 AS one"}});
  EXPECT_EQ(one["rows"][0]["one"], 1);
}

TEST(SqliteTools, StatementTimeoutWithoutACallTimeout) {
  ToolRegistry registry;
  SqliteToolConfig config;
  config.statementTimeout = 200ms;
  ASSERT_TRUE(registerSqliteTools(registry, config).ok());
  ToolResult result = registry.call("sqlite.query", {{"sql", kEndlessQuery}});
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error.type, "timeout");
  EXPECT_THAT(result.error.message, HasSubstr("statement timeout 200 ms"));
}

TEST(SqliteTools, FileDatabasePersistsAndReadOnlyRefusesWrites) {
  TempDir dir;
  SqliteToolConfig config;
  config.path = dir / "kv.db";
  {
    ToolRegistry registry;
    ASSERT_TRUE(registerSqliteTools(registry, config).ok());
    callOk(registry, "sqlite.exec",
           {{"sql", "CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT)"}});
    callOk(registry, "sqlite.exec",
           {{"sql", "INSERT INTO kv VALUES (?, ?)"}, {"params", {"a", "1"}}});
  }
  config.readOnly = true;
  ToolRegistry registry;
  ASSERT_TRUE(registerSqliteTools(registry, config).ok());
  json rows = callOk(registry, "sqlite.query", {{"sql", "SELECT v FROM kv"}});
  EXPECT_EQ(rows["rows"][0]["v"], "1");
  ToolResult write = registry.call(
      "sqlite.exec", {{"sql", "INSERT INTO kv VALUES ('b', '2')"}});
  EXPECT_FALSE(write.ok);
  EXPECT_EQ(write.error.type, "permission_denied");
}

TEST(SqliteTools, UnopenableDatabaseNamesThePath) {
  ToolRegistry registry;
  SqliteToolConfig config;
  config.path = "/nonexistent-dir/x.db";
  absl::Status status = registerSqliteTools(registry, config);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(testing_util::messageOf(status),
              HasSubstr("cannot open database '/nonexistent-dir/x.db'"));
}

TEST_F(SqliteToolsTest, ConcurrentCallsShareOneConnection) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        CallOptions options;
        options.timeout = 30s;
        ToolResult result = registry.call(
            "sqlite.exec",
            {{"sql", "INSERT INTO users(name) VALUES (?)"},
             {"params", {"t" + std::to_string(t) + "-" + std::to_string(i)}}},
            options);
        failures += !result.ok;
        ToolResult read = registry.call(
            "sqlite.query", {{"sql", "SELECT count(*) AS n FROM users"}});
        failures += !read.ok;
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(failures.load(), 0);
  json count = callOk(registry, "sqlite.query",
                      {{"sql", "SELECT count(DISTINCT name) AS n FROM users"}});
  EXPECT_EQ(count["rows"][0]["n"], 100);
}

//===----------------------------------------------------------------------===//
// Sandboxed files
//===----------------------------------------------------------------------===//

class FileToolsTest : public ::testing::Test {
protected:
  void SetUp() override {
    sandbox = std::make_unique<TempDir>();
    outside = std::make_unique<TempDir>();
    FileToolConfig config;
    config.sandboxDir = sandbox->path();
    config.maxReadBytes = 1000;
    config.maxWriteBytes = 1000;
    ASSERT_TRUE(registerFileTools(registry, config).ok());
    writeText(*outside / "secret.txt", "outside secret");
  }

  /// Asserts `tool` refuses `args` with `type`, naming `expected`.
  void expectRefused(const std::string &tool, const json &args,
                     const std::string &type, const std::string &expected) {
    expectFailure(registry, tool, args, type, expected);
  }

  std::unique_ptr<TempDir> sandbox, outside;
  ToolRegistry registry;
};

TEST_F(FileToolsTest, WritesAndReadsText) {
  json written = callOk(registry, "file.write",
                        {{"path", "notes.txt"}, {"content", "héllo\n"}});
  EXPECT_EQ(written["bytes"], 7);
  EXPECT_EQ(readText(*sandbox / "notes.txt"), "héllo\n");
  callOk(registry, "file.write",
         {{"path", "./notes.txt"}, {"content", "more"}, {"append", true}});
  json read = callOk(registry, "file.read", {{"path", "notes.txt"}});
  EXPECT_EQ(read["content"], "héllo\nmore");
  EXPECT_EQ(read["encoding"], "utf8");
  EXPECT_EQ(read["bytes"], 11);
  // Replacing truncates.
  callOk(registry, "file.write", {{"path", "notes.txt"}, {"content", "x"}});
  EXPECT_EQ(readText(*sandbox / "notes.txt"), "x");
}

TEST_F(FileToolsTest, NestedPathsNeedCreateDirs) {
  expectRefused("file.write", {{"path", "a/b/c.txt"}, {"content", "1"}},
                "not_found", "'a' does not exist");
  callOk(registry, "file.write",
         {{"path", "a/b/c.txt"}, {"content", "1"}, {"create_dirs", true}});
  EXPECT_EQ(readText(*sandbox / "a/b/c.txt"), "1");
  EXPECT_EQ(
      callOk(registry, "file.read", {{"path", "a//b/./c.txt"}})["content"],
      "1");
}

TEST_F(FileToolsTest, BinaryContentNeedsBase64) {
  std::string bytes("\x00\xff\xfe\x01", 4);
  writeText(*sandbox / "bin", bytes);
  expectRefused("file.read", {{"path", "bin"}}, "invalid_arguments",
                "is not valid UTF-8; read it with encoding \"base64\"");
  json read =
      callOk(registry, "file.read", {{"path", "bin"}, {"encoding", "base64"}});
  EXPECT_EQ(read["content"], "AP/+AQ==");
  callOk(registry, "file.write",
         {{"path", "copy"}, {"content", "AP/+AQ=="}, {"encoding", "base64"}});
  EXPECT_EQ(readText(*sandbox / "copy"), bytes);
  expectRefused("file.write",
                {{"path", "x"}, {"content", "!!"}, {"encoding", "base64"}},
                "invalid_arguments", "not valid base64");
  expectRefused("file.read", {{"path", "bin"}, {"encoding", "latin1"}},
                "invalid_arguments", "encoding must be \"utf8\" or \"base64\"");
}

TEST_F(FileToolsTest, TraversalAndAbsolutePathsAreRefused) {
  writeText(*sandbox / "ok.txt", "ok");
  for (const char *path :
       {"../secret.txt", "a/../../secret.txt", "..", "ok.txt/../../x", "./.."})
    expectRefused("file.read", {{"path", path}}, "permission_denied",
                  "contains '..'");
  expectRefused("file.read", {{"path", "/etc/passwd"}}, "permission_denied",
                "is absolute");
  expectRefused("file.read", {{"path", *outside / "secret.txt"}},
                "permission_denied", "is absolute");
  expectRefused("file.write", {{"path", "../escape.txt"}, {"content", "x"}},
                "permission_denied", "contains '..'");
  expectRefused("file.read", {{"path", ""}}, "invalid_arguments",
                "the path is empty");
  expectRefused("file.read", {{"path", "./"}}, "invalid_arguments",
                "names the sandbox directory");
  expectRefused("file.read", {{"path", std::string("a\0b", 3)}},
                "invalid_arguments", "NUL byte");
  EXPECT_FALSE(
      fs::exists(fs::path(sandbox->path()).parent_path() / "escape.txt"));
}

TEST_F(FileToolsTest, SymlinksAnywhereOnThePathAreRefused) {
  // A link to a file outside, to /etc/passwd, to a directory outside, and
  // even to a file inside the sandbox.
  writeText(*sandbox / "inside.txt", "inside");
  ASSERT_EQ(::symlink((*outside / "secret.txt").c_str(),
                      (*sandbox / "secret").c_str()),
            0);
  ASSERT_EQ(::symlink("/etc/passwd", (*sandbox / "passwd").c_str()), 0);
  ASSERT_EQ(::symlink("/etc", (*sandbox / "etc").c_str()), 0);
  ASSERT_EQ(::symlink(outside->path().c_str(), (*sandbox / "out").c_str()), 0);
  ASSERT_EQ(::symlink("inside.txt", (*sandbox / "alias").c_str()), 0);
  ASSERT_EQ(::mkdir((*sandbox / "sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("../out", (*sandbox / "sub/up").c_str()), 0);

  for (const char *path : {"secret", "passwd", "alias"})
    expectRefused("file.read", {{"path", path}}, "permission_denied",
                  "is a symbolic link");
  expectRefused("file.read", {{"path", "etc/passwd"}}, "permission_denied",
                "'etc' is a symbolic link");
  expectRefused("file.read", {{"path", "out/secret.txt"}}, "permission_denied",
                "'out' is a symbolic link");
  expectRefused("file.read", {{"path", "sub/up/secret.txt"}},
                "permission_denied", "'sub/up' is a symbolic link");

  // Writes through links leave the targets untouched.
  expectRefused("file.write", {{"path", "secret"}, {"content", "pwned"}},
                "permission_denied", "is a symbolic link");
  expectRefused("file.write", {{"path", "out/new.txt"}, {"content", "pwned"}},
                "permission_denied", "'out' is a symbolic link");
  expectRefused("file.write",
                {{"path", "out/deep/new.txt"},
                 {"content", "pwned"},
                 {"create_dirs", true}},
                "permission_denied", "'out' is a symbolic link");
  EXPECT_EQ(readText(*outside / "secret.txt"), "outside secret");
  EXPECT_FALSE(fs::exists(*outside / "new.txt"));
  EXPECT_FALSE(fs::exists(*outside / "deep"));
  EXPECT_EQ(fs::read_symlink(*sandbox / "secret"), *outside / "secret.txt");
}

TEST_F(FileToolsTest, OnlyRegularSingleLinkFilesWithinLimits) {
  ASSERT_EQ(::mkfifo((*sandbox / "fifo").c_str(), 0644), 0);
  expectRefused("file.read", {{"path", "fifo"}}, "permission_denied",
                "is not a regular file"); // and did not block
  expectRefused("file.write", {{"path", "fifo"}, {"content", "x"}},
                "permission_denied", "is not a regular file");
  ASSERT_EQ(::mkdir((*sandbox / "dir").c_str(), 0755), 0);
  ToolResult dir = registry.call("file.read", {{"path", "dir"}});
  EXPECT_FALSE(dir.ok);
  ASSERT_EQ(
      ::link((*outside / "secret.txt").c_str(), (*sandbox / "hard").c_str()),
      0);
  expectRefused("file.read", {{"path", "hard"}}, "permission_denied",
                "hard links");
  expectRefused("file.write", {{"path", "hard"}, {"content", "pwned"}},
                "permission_denied", "hard links");
  EXPECT_EQ(readText(*outside / "secret.txt"), "outside secret");

  writeText(*sandbox / "big", std::string(1001, 'x'));
  expectRefused("file.read", {{"path", "big"}}, "too_large",
                "over the read limit of 1000 bytes");
  expectRefused("file.write",
                {{"path", "w"}, {"content", std::string(1001, 'y')}},
                "too_large", "over the write limit of 1000 bytes");
  EXPECT_FALSE(fs::exists(*sandbox / "w"));
  expectRefused("file.read", {{"path", "missing.txt"}}, "not_found",
                "'missing.txt' does not exist");
}

TEST_F(FileToolsTest, TrailingSlashesAndDirectoriesAreRefused) {
  writeText(*sandbox / "ok.txt", "ok");
  ASSERT_EQ(::mkdir((*sandbox / "dir").c_str(), 0755), 0);
  // "ok.txt/" used to read ok.txt: the slash was dropped with the empty
  // component after it.
  for (const char *path : {"ok.txt/", "ok.txt/.", "ok.txt//", "dir/"})
    expectRefused("file.read", {{"path", path}}, "invalid_arguments",
                  "names a directory");
  expectRefused("file.write", {{"path", "new.txt/"}, {"content", "x"}},
                "invalid_arguments", "names a directory");
  EXPECT_FALSE(fs::exists(*sandbox / "new.txt"));
  expectRefused("file.read", {{"path", "dir"}}, "permission_denied",
                "'dir' is not a regular file");
  expectRefused("file.write", {{"path", "dir"}, {"content", "x"}},
                "invalid_arguments", "'dir' is a directory");
  EXPECT_EQ(callOk(registry, "file.read", {{"path", "./ok.txt"}})["content"],
            "ok");
}

TEST(FileTools, AppendsStopAtTheFileAndSandboxQuotas) {
  TempDir dir;
  writeText(dir / "existing.bin", std::string(500, 'e'));
  ToolRegistry registry;
  FileToolConfig config;
  config.sandboxDir = dir.path();
  config.maxWriteBytes = 1000;
  config.maxFileBytes = 1500;
  config.maxSandboxBytes = 3000;
  ASSERT_TRUE(registerFileTools(registry, config).ok());
  std::string chunk(1000, 'a');
  json append = {{"path", "log.txt"}, {"content", chunk}, {"append", true}};
  callOk(registry, "file.write", append);
  // Each call is under the write limit; the file would not be.
  expectFailure(registry, "file.write", append, "too_large",
                "'log.txt' would grow to 2000 bytes, over the per-file quota "
                "of 1500 bytes (maxFileBytes)");
  EXPECT_EQ(fs::file_size(dir / "log.txt"), 1000u);
  // Replacing counts the new size, not the old plus the new.
  callOk(registry, "file.write", {{"path", "log.txt"}, {"content", chunk}});
  callOk(registry, "file.write",
         {{"path", "two.txt"}, {"content", chunk}, {"create_dirs", true}});
  // 500 (there before) + 1000 + 1000 + 1000 would be 3500.
  expectFailure(
      registry, "file.write",
      {{"path", "sub/three.txt"}, {"content", chunk}, {"create_dirs", true}},
      "too_large",
      "the sandbox would hold 3500 bytes, over its quota of 3000 "
      "bytes (maxSandboxBytes)");
  EXPECT_FALSE(fs::exists(dir / "sub/three.txt"));
  callOk(registry, "file.write",
         {{"path", "sub/three.txt"},
          {"content", std::string(500, 'c')},
          {"create_dirs", true}});
  expectFailure(registry, "file.write",
                {{"path", "one-more"}, {"content", "x"}}, "too_large",
                "over its quota of 3000 bytes");
  // Shrinking a file makes room again.
  callOk(registry, "file.write", {{"path", "log.txt"}, {"content", "small"}});
  callOk(registry, "file.write", {{"path", "one-more"}, {"content", "x"}});
}

TEST(FileTools, QuotasHaveSaneDefaults) {
  FileToolConfig config;
  EXPECT_EQ(config.maxFileBytes, size_t(16) << 20);
  EXPECT_EQ(config.maxSandboxBytes, size_t(256) << 20);
}

TEST(FileTools, RegistrationChecksTheSandboxAndWritePermission) {
  ToolRegistry registry;
  FileToolConfig config;
  config.sandboxDir = "/nonexistent-treni-sandbox";
  absl::Status status = registerFileTools(registry, config);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(testing_util::messageOf(status),
              HasSubstr("/nonexistent-treni-sandbox"));

  TempDir dir;
  config.sandboxDir = dir.path();
  config.allowWrite = false;
  ASSERT_TRUE(registerFileTools(registry, config).ok());
  EXPECT_TRUE(registry.contains("file.read"));
  EXPECT_FALSE(registry.contains("file.write"));
}

//===----------------------------------------------------------------------===//
// http.get
//===----------------------------------------------------------------------===//

TEST(HttpUrl, ParsesStrictly) {
  absl::StatusOr<HttpUrl> url =
      parseHttpUrl("HTTP://LocalHost:8080/a/b?q=1#frag");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, "http");
  EXPECT_EQ(url->host, "localhost");
  EXPECT_EQ(url->port, 8080);
  EXPECT_EQ(url->target, "/a/b?q=1");
  EXPECT_EQ(url->origin(), "http://localhost:8080");

  absl::StatusOr<HttpUrl> v6 = parseHttpUrl("https://[::1]?x");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 443);
  EXPECT_EQ(v6->target, "/?x");
  EXPECT_EQ(v6->origin(), "https://[::1]:443");

  struct Case {
    const char *url;
    const char *expected;
  } cases[] = {
      {"ftp://127.0.0.1/", "scheme 'ftp' is not http or https"},
      {"127.0.0.1/x", "expected http://host[:port]/path"},
      {"http://user@127.0.0.1/", "user info"},
      {"http://127.0.0.1:99999/", "invalid port '99999'"},
      {"http://127.0.0.1:80x/", "invalid port"},
      {"http:///x", "no host"},
      {"http://exa%6Dple.com/", "invalid host name"},
      {"http://127.0.0.1/a b", "space or control character"},
      {"http://127.0.0.1/\r\nHost: evil", "space or control character"},
      {"http://[::1/", "unterminated IPv6"},
  };
  for (const Case &c : cases) {
    absl::StatusOr<HttpUrl> bad = parseHttpUrl(c.url);
    ASSERT_FALSE(bad.ok()) << c.url;
    EXPECT_THAT(testing_util::messageOf(bad.status()), HasSubstr(c.expected))
        << c.url;
  }
}

/// The loopback server http.get fetches from.
class LoopbackServer : public testing_util::LoopbackHttpServer {
public:
  LoopbackServer() {
    server.Get(
        "/hello", [](const httplib::Request &req, httplib::Response &res) {
          res.set_header("X-Test", "yes");
          res.set_content("hi " + req.get_header_value("X-Name"), "text/plain");
        });
    server.Get("/big", [](const httplib::Request &, httplib::Response &res) {
      res.set_content(std::string(2 << 20, 'b'), "text/plain");
    });
    server.Get("/binary", [](const httplib::Request &, httplib::Response &res) {
      res.set_content(std::string("\xff\xfe\x00", 3),
                      "application/octet-stream");
    });
    server.Get("/redirect",
               [](const httplib::Request &, httplib::Response &res) {
                 res.set_redirect("http://example.com/");
               });
    server.Get("/missing",
               [](const httplib::Request &, httplib::Response &res) {
                 res.status = 404;
                 res.set_content("nope", "text/plain");
               });
    server.Get("/slow", slowHandler("late", "text/plain"));
    server.Get("/headers",
               [this](const httplib::Request &req, httplib::Response &res) {
                 ++headerRequests;
                 json seen = json::object();
                 for (const auto &[name, value] : req.headers)
                   seen[name] = value;
                 res.set_content(seen.dump(), "application/json");
               });
    start();
  }
  std::atomic<int> headerRequests{0};
};

TEST(HttpGetTool, FetchesFromLoopback) {
  LoopbackServer server;
  ASSERT_GT(server.port, 0);
  ToolRegistry registry;
  ASSERT_TRUE(registerHttpGetTool(registry, {}).ok());
  json hello = callOk(
      registry, "http.get",
      {{"url", server.url("/hello")}, {"headers", {{"X-Name", "treni"}}}});
  EXPECT_EQ(hello["status"], 200);
  EXPECT_EQ(hello["body"], "hi treni");
  EXPECT_EQ(hello["headers"]["x-test"], "yes");

  json missing =
      callOk(registry, "http.get", {{"url", server.url("/missing")}});
  EXPECT_EQ(missing["status"], 404); // a status, not a tool error
  EXPECT_EQ(missing["body"], "nope");

  json redirect =
      callOk(registry, "http.get", {{"url", server.url("/redirect")}});
  EXPECT_EQ(redirect["status"], 302); // not followed off the allowlist
  EXPECT_EQ(redirect["headers"]["location"], "http://example.com/");

  json binary = callOk(registry, "http.get", {{"url", server.url("/binary")}});
  EXPECT_EQ(binary["body_base64"], "//4A");
  EXPECT_FALSE(binary.contains("body"));
}

TEST(HttpGetTool, RefusesHostsOffTheAllowlist) {
  ToolRegistry registry;
  ASSERT_TRUE(registerHttpGetTool(registry, {}).ok());
  for (const char *url :
       {"http://example.com/", "https://10.0.0.1/", "http://127.0.0.1.nip.io/",
        "http://169.254.169.254/latest/meta-data/"}) {
    ToolResult result = registry.call("http.get", {{"url", url}});
    EXPECT_FALSE(result.ok) << url;
    EXPECT_EQ(result.error.type, "permission_denied") << url;
    EXPECT_THAT(result.error.message,
                HasSubstr("is not allowed (allowed hosts: "
                          "127.0.0.1, localhost, ::1)"));
  }
  // An allowlist without loopback refuses loopback too.
  ToolRegistry strict;
  HttpGetConfig config;
  config.allowedHosts = {"api.example.org"};
  ASSERT_TRUE(registerHttpGetTool(strict, config).ok());
  ToolResult loopback =
      strict.call("http.get", {{"url", "http://127.0.0.1:1/"}});
  EXPECT_EQ(loopback.error.type, "permission_denied");
  ToolResult headerInjection =
      registry.call("http.get", {{"url", "http://127.0.0.1:1/"},
                                 {"headers", {{"X-A", "1\r\nHost: evil"}}}});
  EXPECT_EQ(headerInjection.error.type, "invalid_arguments");
}

TEST(HttpGetTool, RefusesHopByHopAndFramingHeaders) {
  LoopbackServer server;
  ToolRegistry registry;
  ASSERT_TRUE(registerHttpGetTool(registry, {}).ok());
  // A workflow could set Host (to reach another virtual host than the
  // allowlist named) or Content-Length / Transfer-Encoding (to smuggle a
  // second request past a proxy): the client sets these itself.
  const std::pair<const char *, const char *> refused[] = {
      {"Host", "internal.example"},
      {"content-length", "5"},
      {"Transfer-Encoding", "chunked"},
      {"Connection", "keep-alive, X-Secret"},
      {"Keep-Alive", "timeout=99"},
      {"Upgrade", "websocket"},
      {"TE", "trailers"},
      {"Trailer", "X-Late"},
      {"Expect", "100-continue"},
      {"Proxy-Authorization", "Basic Zm9vOmJhcg=="},
      {"proxy-connection", "keep-alive"},
  };
  for (const auto &[name, value] : refused)
    expectFailure(
        registry, "http.get",
        {{"url", server.url("/headers")}, {"headers", {{name, value}}}},
        "invalid_arguments",
        std::string("HTTP header '") + name +
            "' is not allowed: the client sets hop-by-hop and "
            "framing headers itself");
  // Names must be tokens (a colon would start the value early).
  for (const char *name : {"X-A:B", "X A", "X\tA", "X(A)"})
    expectFailure(registry, "http.get",
                  {{"url", server.url("/headers")}, {"headers", {{name, "1"}}}},
                  "invalid_arguments", "invalid HTTP header name");
  expectFailure(registry, "http.get",
                {{"url", server.url("/headers")},
                 {"headers", {{"X-A", std::string("a\0b", 3)}}}},
                "invalid_arguments", "control character");
  EXPECT_EQ(server.headerRequests.load(), 0); // refused before connecting

  json seen = callOk(registry, "http.get",
                     {{"url", server.url("/headers")},
                      {"headers",
                       {{"X-Name", "treni"},
                        {"Authorization", "Bearer t"},
                        {"Accept", "text/plain"}}}});
  json headers = json::parse(seen["body"].get<std::string>());
  EXPECT_EQ(headers["X-Name"], "treni");
  EXPECT_EQ(headers["Authorization"], "Bearer t");
  EXPECT_EQ(headers["Host"], "127.0.0.1:" + std::to_string(server.port));
  EXPECT_EQ(server.headerRequests.load(), 1);
}

TEST(HttpGetTool, SizeLimitTimeoutAndRefusedConnection) {
  LoopbackServer server;
  ToolRegistry registry;
  HttpGetConfig config;
  config.maxResponseBytes = 1 << 20;
  config.timeout = 300ms;
  ASSERT_TRUE(registerHttpGetTool(registry, config).ok());

  ToolResult big = registry.call("http.get", {{"url", server.url("/big")}});
  EXPECT_FALSE(big.ok);
  EXPECT_EQ(big.error.type, "too_large");
  EXPECT_THAT(big.error.message, HasSubstr("over the limit of 1048576 bytes"));

  ToolResult slow = registry.call("http.get", {{"url", server.url("/slow")}});
  EXPECT_FALSE(slow.ok);
  EXPECT_EQ(slow.error.type, "timeout");
  EXPECT_LT(slow.latency, 4s);

  // A port nobody listens on (bound, never listened on, closed).
  int closedPort = 0;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(addr);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &length),
              0);
    closedPort = ntohs(addr.sin_port);
    ::close(fd);
  }
  ToolResult refused = registry.call(
      "http.get",
      {{"url", "http://127.0.0.1:" + std::to_string(closedPort) + "/"}});
  EXPECT_FALSE(refused.ok);
  EXPECT_EQ(refused.error.type, "unavailable");
  EXPECT_TRUE(refused.error.retryable);
}

//===----------------------------------------------------------------------===//
// All together
//===----------------------------------------------------------------------===//

TEST(BuiltinTools, SignaturesMatchTheRegisteredTools) {
  TempDir dir;
  ToolRegistry registry;
  BuiltinToolsConfig config;
  config.sqlite = SqliteToolConfig();
  config.files = FileToolConfig{dir.path()};
  config.http = HttpGetConfig();
  ASSERT_TRUE(registerBuiltinTools(registry, config).ok());
  json exported = registry.toJson();
  json expected = json::array();
  for (const ToolSignature &sig : builtinToolSignatures()) {
    expected.push_back(sig.toJson());
    absl::StatusOr<ToolSignature> parsed =
        ToolSignature::fromJson(sig.toJson());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
  }
  EXPECT_EQ(exported["tools"], expected);
  // What agent-hoist-tools may overlap: the tools that change nothing.
  for (const json &tool : exported["tools"])
    EXPECT_EQ(tool["readonly"], tool["name"] == "sqlite.query" ||
                                    tool["name"] == "file.read" ||
                                    tool["name"] == "http.get")
        << tool["name"];
  EXPECT_EQ(registry.toOpenAiTools().size(), 5u);
  // Registering twice collides.
  EXPECT_EQ(registerBuiltinTools(registry, config).code(),
            absl::StatusCode::kAlreadyExists);
}

} // namespace
} // namespace treni
