//===- http_access.h - who may talk to `treni serve` ------------*- C++ -*-===//
//
// The checks a request passes before its route is looked at (HttpServer runs
// them on every request; docs/server.md states them for users):
//
//   Host    DNS rebinding (a page on evil.example whose name comes to resolve
//           to 127.0.0.1) sends its own name as Host. Accepted: the --host
//           value, the bound address, the loopback names when it is a
//           loopback address, IP literals and localhost when it is a wildcard
//           address, and --allowed-hosts ("*": any).
//   Origin  A browser's cross-site request carries its page's origin: only
//           the server's own (http or https, the Host just accepted) passes.
//   API key `Authorization: Bearer <key>`, compared through SHA-256 digests
//           so that the time taken says nothing about where a guess differs
//           or how long the key is.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace treni {

class AccessPolicy {
public:
  AccessPolicy() = default;
  /// `host`: the --host value; `boundAddress`: the address the server bound
  /// it to, as text ("127.0.0.1", "::", ...); `allowedHosts`: names,
  /// `name:port` pairs or "*"; `apiKey`: empty for none.
  AccessPolicy(std::string_view host, std::string_view boundAddress,
               const std::vector<std::string> &allowedHosts,
               std::string_view apiKey);

  /// `host` is a Host header value. The port is not compared with the bound
  /// one: rebinding is about the name, and a mapped port (docker -p
  /// 9000:8080) shows the client's side.
  bool hostAllowed(std::string_view host) const;
  /// `origin` (an Origin header) names `host` (an accepted Host) over http or
  /// https; "null" (a sandboxed or file: page) never passes.
  static bool originAllowed(std::string_view origin, std::string_view host);

  bool keyRequired() const { return !keyDigest_.empty(); }
  /// `authorization` (an Authorization header) is "Bearer <the key>".
  bool keyMatches(std::string_view authorization) const;

private:
  bool anyHost_ = false, anyIpLiteral_ = false;
  std::vector<std::string> names_; ///< the bound address's, lower case
  std::vector<std::string> extra_; ///< --allowed-hosts, lower case
  std::string keyDigest_;
};

/// Whether `address` (text) is a loopback address (127.0.0.0/8, ::1, or
/// IPv4-mapped 127.x); false for what is not an address.
bool isLoopbackAddress(std::string_view address);

} // namespace treni
