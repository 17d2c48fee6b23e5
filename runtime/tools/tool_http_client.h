//===- tool_http_client.h - bounded HTTP requests for tools -----*- C++ -*-===//
//
// The HTTP client under `http.get` and HTTP endpoint tools: a strict URL
// parser (http/https, no user info, no control characters), a host
// allowlist checked before any connection is made (loopback by default),
// a deadline (the tool's and the request's own, whichever is first), and a
// cap on the response body, enforced while it streams in. Redirects are not
// followed (a redirect could leave the allowlist); the 3xx is returned.
//
// Request headers are the caller's except those the client owns: Host,
// Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE,
// Trailer, Expect and Proxy-* are refused (InvalidArgument naming the
// header, before any connection), not dropped, so a workflow learns that
// its header was not sent. Names must be RFC 9110 tokens and values free
// of control characters (a tab aside).
//
// Allowed hosts are compared by name, exactly (case-insensitive): an entry
// "localhost" allows the URL host "localhost", not "127.0.0.1", and a name
// is trusted to resolve where its owner says.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/tools/tool_context.h"

namespace treni {

struct HttpUrl {
  std::string scheme; ///< "http" or "https"
  std::string host;   ///< lower case; an IPv6 literal without brackets
  int port = 0;       ///< explicit or the scheme's default
  std::string target; ///< path and query ("/" when empty); no fragment

  /// "http://host:port" (IPv6 in brackets), as httplib::Client takes it.
  std::string origin() const;
};

/// InvalidArgument naming the URL and what is wrong with it.
absl::StatusOr<HttpUrl> parseHttpUrl(std::string_view url);

/// "127.0.0.1", "localhost", "::1".
std::vector<std::string> loopbackHosts();

/// PermissionDenied unless `url.host` is one of `allowedHosts`.
absl::Status checkHostAllowed(const HttpUrl &url,
                              const std::vector<std::string> &allowedHosts);

struct HttpRequestSpec {
  std::string method = "GET"; ///< GET or POST
  std::string url;
  std::string body;
  std::string contentType = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> allowedHosts = loopbackHosts();
  size_t maxResponseBytes = size_t(1) << 20;
  std::chrono::milliseconds timeout{10000};
};

struct HttpResponse {
  int status = 0;
  std::string body;
  /// Lower-case names; the last value of a repeated header.
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Sends the request. Errors: InvalidArgument (URL, header), PermissionDenied
/// (host not allowed), DeadlineExceeded (timeout or the context stopped),
/// Unavailable (connection failed), ResourceExhausted (body over the cap).
/// A non-2xx status is not an error here.
absl::StatusOr<HttpResponse> sendHttpRequest(const HttpRequestSpec &spec,
                                             const ToolContext &context);

} // namespace treni
