//===- http_access_test.cpp - Host, Origin and API-key checks -------------===//
//
// Tests that AccessPolicy accepts the Host names of each kind of bound
// address and refuses the rest (what a DNS-rebinding page sends), passes
// only the server's own Origin, and matches the API key exactly.
//
//===----------------------------------------------------------------------===//

#include "runtime/serve/http_access.h"

#include "gtest/gtest.h"

namespace treni {
namespace {

TEST(HttpAccessTest, LoopbackBindAcceptsLoopbackNamesOnly) {
  AccessPolicy policy("127.0.0.1", "127.0.0.1", {}, "");
  for (const char *host : {"127.0.0.1:8080", "localhost:8080", "LOCALHOST",
                           "[::1]:8080", "localhost", "127.0.0.1"})
    EXPECT_TRUE(policy.hostAllowed(host)) << host;
  for (const char *host :
       {"evil.example:8080", "localhost.evil.example", "127.0.0.2:8080",
        "10.0.0.1:8080", "", ":8080", "[::1", "127.0.0.1.nip.io"})
    EXPECT_FALSE(policy.hostAllowed(host)) << host;
}

TEST(HttpAccessTest, NamedHostAndSpecificAddress) {
  AccessPolicy byName("Box.Internal", "10.1.2.3", {}, "");
  EXPECT_TRUE(byName.hostAllowed("box.internal:8080"));
  EXPECT_TRUE(byName.hostAllowed("10.1.2.3:8080"));
  EXPECT_FALSE(byName.hostAllowed("localhost:8080")); // not reachable that way
  EXPECT_FALSE(byName.hostAllowed("10.1.2.4:8080"));
  AccessPolicy v6("::1", "::1", {}, "");
  EXPECT_TRUE(v6.hostAllowed("[::1]:8080"));
  EXPECT_TRUE(v6.hostAllowed("localhost:8080"));
}

// Tests that a wildcard bind accepts any IP literal (a rebinding page cannot
// send one: it needs a name) and localhost, but no other name.
TEST(HttpAccessTest, WildcardBindAcceptsIpLiterals) {
  for (const char *wildcard : {"0.0.0.0", "::"}) {
    AccessPolicy policy(wildcard, wildcard, {}, "");
    for (const char *host : {"192.168.1.20:8080", "10.0.0.1", "[fe80::1]:8080",
                             "localhost:8080", "[::1]"})
      EXPECT_TRUE(policy.hostAllowed(host)) << wildcard << " " << host;
    for (const char *host : {"evil.example:8080", "192.168.1.20.evil.example",
                             "[evil]:8080", "999.1.1.1:8080"})
      EXPECT_FALSE(policy.hostAllowed(host)) << wildcard << " " << host;
  }
}

TEST(HttpAccessTest, AllowedHosts) {
  AccessPolicy policy("127.0.0.1", "127.0.0.1",
                      {"API.example.com", "proxy.example:9000"}, "");
  EXPECT_TRUE(policy.hostAllowed("api.example.com"));
  EXPECT_TRUE(policy.hostAllowed("api.example.com:443"));
  EXPECT_TRUE(policy.hostAllowed("proxy.example:9000"));
  EXPECT_FALSE(policy.hostAllowed("proxy.example:9001"));
  EXPECT_FALSE(policy.hostAllowed("proxy.example"));
  EXPECT_FALSE(policy.hostAllowed("other.example.com"));
  AccessPolicy any("127.0.0.1", "127.0.0.1", {"*"}, "");
  EXPECT_TRUE(any.hostAllowed("anything.example:1"));
}

TEST(HttpAccessTest, OriginMustBeTheServersOwn) {
  EXPECT_TRUE(
      AccessPolicy::originAllowed("http://127.0.0.1:8080", "127.0.0.1:8080"));
  EXPECT_TRUE(AccessPolicy::originAllowed("HTTPS://Api.Example.com",
                                          "api.example.com"));
  EXPECT_FALSE(
      AccessPolicy::originAllowed("http://evil.example", "127.0.0.1:8080"));
  EXPECT_FALSE(
      AccessPolicy::originAllowed("http://127.0.0.1:8081", "127.0.0.1:8080"));
  EXPECT_FALSE(
      AccessPolicy::originAllowed("http://localhost:8080", "127.0.0.1:8080"));
  EXPECT_FALSE(AccessPolicy::originAllowed("null", "127.0.0.1:8080"));
  EXPECT_FALSE(AccessPolicy::originAllowed("file://", ""));
  EXPECT_FALSE(
      AccessPolicy::originAllowed("http://127.0.0.1:8080/x", "127.0.0.1:8080"));
}

TEST(HttpAccessTest, ApiKey) {
  AccessPolicy none("127.0.0.1", "127.0.0.1", {}, "");
  EXPECT_FALSE(none.keyRequired());
  EXPECT_FALSE(none.keyMatches("Bearer "));
  AccessPolicy policy("127.0.0.1", "127.0.0.1", {}, "sk-123");
  EXPECT_TRUE(policy.keyRequired());
  EXPECT_TRUE(policy.keyMatches("Bearer sk-123"));
  EXPECT_TRUE(policy.keyMatches("bearer  sk-123 "));
  for (const char *wrong : {"Bearer sk-124", "Bearer sk-1234", "Bearer sk-12",
                            "Bearer ", "sk-123", "Basic sk-123", ""})
    EXPECT_FALSE(policy.keyMatches(wrong)) << wrong;
}

TEST(HttpAccessTest, LoopbackAddresses) {
  for (const char *address :
       {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(isLoopbackAddress(address)) << address;
  for (const char *address :
       {"0.0.0.0", "::", "10.0.0.1", "localhost", "", "::ffff:10.0.0.1"})
    EXPECT_FALSE(isLoopbackAddress(address)) << address;
}

} // namespace
} // namespace treni
