//===- tool_http_client.cpp - bounded HTTP requests for tools -------------===//

#include "runtime/tools/tool_http_client.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <httplib.h>

namespace treni {

namespace {

absl::Status urlError(std::string_view url, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("URL '", toAbsl(url), "': ", toAbsl(why)));
}

bool isHostNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.';
}

bool hasControlOrSpace(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 ||
           static_cast<unsigned char>(c) == 0x7f;
  });
}

/// RFC 9110 "tchar": what a header name is made of.
bool isTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

/// Headers the client owns: where the request goes (Host), how its body is
/// framed (Content-Length, Transfer-Encoding, TE, Trailer, Expect) and
/// what happens to the connection (the hop-by-hop ones). Set by a caller
/// they could aim the request at another virtual host than the allowlist
/// checked, or smuggle a second request through a proxy.
constexpr std::string_view kClientHeaders[] = {
    "host",       "content-length", "transfer-encoding",
    "connection", "keep-alive",     "upgrade",
    "te",         "trailer",        "expect"};

absl::Status checkRequestHeader(const std::string &name,
                                const std::string &value) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar))
    return absl::InvalidArgumentError(
        absl::StrCat("invalid HTTP header name '", name,
                     "' (letters, digits and !#$%&'*+-.^_`|~ only)"));
  std::string lower = absl::AsciiStrToLower(name);
  if (absl::StartsWith(lower, "proxy-") ||
      std::find(std::begin(kClientHeaders), std::end(kClientHeaders), lower) !=
          std::end(kClientHeaders))
    return absl::InvalidArgumentError(absl::StrCat(
        "HTTP header '", name,
        "' is not allowed: the client sets hop-by-hop and framing headers "
        "itself (Host, Content-Length, Transfer-Encoding, Connection, "
        "Keep-Alive, Upgrade, TE, Trailer, Expect, Proxy-*)"));
  if (std::any_of(value.begin(), value.end(), [](char c) {
        unsigned char u = static_cast<unsigned char>(c);
        return (u < 0x20 && u != '\t') || u == 0x7f;
      }))
    return absl::InvalidArgumentError(absl::StrCat(
        "HTTP header '", name, "' has a control character in its value"));
  return absl::OkStatus();
}

} // namespace

std::string HttpUrl::origin() const {
  bool ipv6 = host.find(':') != std::string::npos;
  return absl::StrCat(scheme, "://", ipv6 ? "[" : "", host, ipv6 ? "]" : "",
                      ":", port);
}

std::vector<std::string> loopbackHosts() {
  return {"127.0.0.1", "localhost", "::1"};
}

absl::StatusOr<HttpUrl> parseHttpUrl(std::string_view url) {
  if (hasControlOrSpace(url))
    return urlError(url, "contains a space or control character");
  size_t schemeEnd = url.find("://");
  if (schemeEnd == std::string_view::npos)
    return urlError(url, "expected http://host[:port]/path");
  HttpUrl result;
  result.scheme = absl::AsciiStrToLower(toAbsl(url.substr(0, schemeEnd)));
  if (result.scheme != "http" && result.scheme != "https")
    return urlError(
        url, absl::StrCat("scheme '", result.scheme, "' is not http or https"));
  std::string_view rest = url.substr(schemeEnd + 3);
  size_t authorityEnd = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authorityEnd);
  std::string_view target = authorityEnd == std::string_view::npos
                                ? std::string_view()
                                : rest.substr(authorityEnd);
  if (authority.find('@') != std::string_view::npos)
    return urlError(url, "user info ('user@host') is not allowed");
  std::string_view host, port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return urlError(url, "unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return urlError(url, "unexpected text after the IPv6 address");
      port = after.substr(1);
    }
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return urlError(url, "invalid IPv6 address");
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos)
      port = authority.substr(colon + 1);
  }
  if (host.empty())
    return urlError(url, "no host");
  result.host = absl::AsciiStrToLower(toAbsl(host));
  if (authority.front() != '[' &&
      !std::all_of(result.host.begin(), result.host.end(), isHostNameChar))
    return urlError(url, absl::StrCat("invalid host name '", result.host, "'"));
  if (port.empty()) {
    result.port = result.scheme == "https" ? 443 : 80;
  } else if (!std::all_of(port.begin(), port.end(),
                          [](char c) { return c >= '0' && c <= '9'; }) ||
             port.size() > 5 || !absl::SimpleAtoi(toAbsl(port), &result.port) ||
             result.port < 1 || result.port > 65535) {
    return urlError(url, absl::StrCat("invalid port '", toAbsl(port), "'"));
  }
  target = target.substr(0, target.find('#'));
  if (target.empty())
    result.target = "/";
  else if (target.front() == '?')
    result.target = absl::StrCat("/", toAbsl(target));
  else
    result.target = std::string(target);
  return result;
}

absl::Status checkHostAllowed(const HttpUrl &url,
                              const std::vector<std::string> &allowedHosts) {
  for (const std::string &allowed : allowedHosts) {
    std::string bare = absl::AsciiStrToLower(allowed);
    if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']')
      bare = bare.substr(1, bare.size() - 2);
    if (bare == url.host)
      return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("host '", url.host, "' is not allowed (allowed hosts: ",
                   allowedHosts.empty() ? std::string("none")
                                        : absl::StrJoin(allowedHosts, ", "),
                   ")"));
}

absl::StatusOr<HttpResponse> sendHttpRequest(const HttpRequestSpec &spec,
                                             const ToolContext &context) {
  absl::StatusOr<HttpUrl> url = parseHttpUrl(spec.url);
  if (!url.ok())
    return url.status();
  if (spec.method != "GET" && spec.method != "POST")
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP method '", spec.method, "' is not GET or POST"));
  for (const auto &[name, value] : spec.headers)
    if (absl::Status status = checkRequestHeader(name, value); !status.ok())
      return status;
  if (absl::Status status = checkHostAllowed(*url, spec.allowedHosts);
      !status.ok())
    return status;

  ToolClock::time_point deadline =
      std::min(context.deadline, ToolClock::now() + spec.timeout);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - ToolClock::now());
  if (left.count() <= 0 || context.shouldStop())
    return absl::DeadlineExceededError(
        absl::StrCat(spec.method, " ", spec.url, ": no time left"));

  httplib::Client client(url->origin());
  if (!client.is_valid())
    return absl::InvalidArgumentError(
        absl::StrCat("URL '", spec.url, "': the HTTP client rejects it"));
  // A little past the deadline, so that a socket timeout is recognisable
  // as the deadline having passed (below).
  std::chrono::milliseconds socketTimeout =
      left + std::chrono::milliseconds(20);
  client.set_connection_timeout(socketTimeout);
  client.set_read_timeout(socketTimeout);
  client.set_write_timeout(socketTimeout);
  client.set_follow_location(false);
  client.set_keep_alive(false);

  httplib::Request request;
  request.method = spec.method;
  request.path = url->target;
  for (const auto &[name, value] : spec.headers)
    request.headers.emplace(name, value);
  if (spec.method == "POST") {
    request.body = spec.body;
    request.set_header("Content-Type", spec.contentType);
  }
  std::string body;
  bool tooLarge = false, stopped = false;
  request.content_receiver = [&](const char *data, size_t length, uint64_t,
                                 uint64_t) {
    if (context.shouldStop() || ToolClock::now() >= deadline) {
      stopped = true;
      return false;
    }
    if (body.size() + length > spec.maxResponseBytes) {
      tooLarge = true;
      return false;
    }
    body.append(data, length);
    return true;
  };

  httplib::Result result = client.send(request);
  std::string what = absl::StrCat(spec.method, " ", spec.url);
  if (tooLarge)
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": the response is over the limit of ",
                     spec.maxResponseBytes, " bytes"));
  if (!result) {
    httplib::Error error = result.error();
    if (stopped || error == httplib::Error::ConnectionTimeout ||
        ToolClock::now() >= deadline)
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": no complete response within ", left.count(), " ms"));
    return absl::UnavailableError(
        absl::StrCat(what, ": ", httplib::to_string(error)));
  }
  HttpResponse response;
  response.status = result->status;
  response.body = std::move(body);
  for (const auto &[name, value] : result->headers) {
    std::string lower = absl::AsciiStrToLower(name);
    auto it = std::find_if(response.headers.begin(), response.headers.end(),
                           [&](const auto &h) { return h.first == lower; });
    if (it != response.headers.end())
      it->second = value;
    else
      response.headers.emplace_back(lower, value);
  }
  return response;
}

} // namespace treni
