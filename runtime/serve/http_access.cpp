//===- http_access.cpp - who may talk to `treni serve` --------------------===//

#include "runtime/serve/http_access.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "support/sha256.h"

namespace treni {
namespace {

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char &c : out)
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
  return out;
}

bool startsWithIgnoringCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         lowerCase(text.substr(0, prefix.size())) == lowerCase(prefix);
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() &&
         absl::ascii_isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() &&
         absl::ascii_isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

/// An address literal: IPv4, or IPv6 without brackets.
struct Address {
  bool valid = false, v6 = false, loopback = false, unspecified = false;
};

Address parseAddress(std::string_view text) {
  Address out;
  std::string copy(text);
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, copy.c_str(), &v4) == 1) {
    uint32_t value = ntohl(v4.s_addr);
    out.valid = true;
    out.loopback = (value >> 24) == 127;
    out.unspecified = value == 0;
  } else if (inet_pton(AF_INET6, copy.c_str(), &v6) == 1) {
    out.valid = out.v6 = true;
    out.loopback = IN6_IS_ADDR_LOOPBACK(&v6) ||
                   (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    out.unspecified = IN6_IS_ADDR_UNSPECIFIED(&v6);
  }
  return out;
}

/// The name part of a Host value: "name:port" -> "name"; "[v6]:port" ->
/// "[v6]" (brackets kept).
std::string_view hostName(std::string_view host) {
  if (!host.empty() && host.front() == '[')
    return host.substr(0, host.find(']') + 1);
  return host.substr(0, host.rfind(':'));
}

bool isIpLiteral(std::string_view name) {
  if (name.size() > 2 && name.front() == '[' && name.back() == ']')
    return parseAddress(name.substr(1, name.size() - 2)).v6;
  Address address = parseAddress(name);
  return address.valid && !address.v6;
}

} // namespace

bool isLoopbackAddress(std::string_view address) {
  return parseAddress(address).loopback;
}

AccessPolicy::AccessPolicy(std::string_view host, std::string_view boundAddress,
                           const std::vector<std::string> &allowedHosts,
                           std::string_view apiKey) {
  Address bound = parseAddress(boundAddress);
  names_.push_back(lowerCase(host));
  names_.push_back(bound.v6 ? "[" + lowerCase(boundAddress) + "]"
                            : lowerCase(boundAddress));
  if (bound.loopback)
    for (const char *name : {"localhost", "127.0.0.1", "[::1]"})
      names_.push_back(name);
  if (bound.unspecified) {
    anyIpLiteral_ = true;
    names_.push_back("localhost");
  }
  for (const std::string &allowed : allowedHosts) {
    anyHost_ |= allowed == "*";
    extra_.push_back(lowerCase(allowed));
  }
  if (!apiKey.empty())
    keyDigest_ = sha256Hex(apiKey);
}

bool AccessPolicy::hostAllowed(std::string_view host) const {
  if (anyHost_)
    return true;
  std::string lower = lowerCase(host);
  std::string_view name = hostName(lower);
  for (const std::string &entry : extra_)
    if (entry == lower || entry == name)
      return true;
  for (const std::string &own : names_)
    if (own == name)
      return true;
  return anyIpLiteral_ && isIpLiteral(name);
}

bool AccessPolicy::originAllowed(std::string_view origin,
                                 std::string_view host) {
  for (std::string_view scheme : {"http://", "https://"})
    if (startsWithIgnoringCase(origin, scheme))
      return lowerCase(origin.substr(scheme.size())) == lowerCase(host);
  return false;
}

bool AccessPolicy::keyMatches(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (keyDigest_.empty() || !startsWithIgnoringCase(authorization, kBearer))
    return false;
  std::string digest = sha256Hex(trimmed(authorization.substr(kBearer.size())));
  unsigned difference = 0;
  for (size_t i = 0; i < digest.size(); ++i)
    difference |= unsigned(digest[i] ^ keyDigest_[i]);
  return difference == 0;
}

} // namespace treni
