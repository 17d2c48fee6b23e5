//===- utf8.cpp - UTF-8 validation, repair and decoding -------------------===//

#include "support/utf8.h"

#include <vector>

#include <utf8proc.h>

namespace treni::utf8 {
namespace {

/// What a lead byte asks for: the sequence length (0: never a lead) and the
/// range of the second byte, which is narrower than 80..BF for E0, ED, F0
/// and F4 (no overlongs, no surrogates, nothing above U+10FFFF).
struct Lead {
  uint8_t length;
  uint8_t low;
  uint8_t high;
};

Lead leadOf(uint8_t byte) {
  if (byte < 0x80)
    return {1, 0, 0};
  if (byte >= 0xC2 && byte <= 0xDF)
    return {2, 0x80, 0xBF};
  if (byte == 0xE0)
    return {3, 0xA0, 0xBF};
  if (byte == 0xED)
    return {3, 0x80, 0x9F};
  if (byte >= 0xE1 && byte <= 0xEF)
    return {3, 0x80, 0xBF};
  if (byte == 0xF0)
    return {4, 0x90, 0xBF};
  if (byte >= 0xF1 && byte <= 0xF3)
    return {4, 0x80, 0xBF};
  if (byte == 0xF4)
    return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

/// Bytes of a well-formed prefix at `pos` (lead included; 0 for a byte that
/// never starts a sequence) and the full length its lead asks for.
size_t wellFormedPrefix(std::string_view text, size_t pos, size_t &wanted) {
  Lead lead = leadOf(static_cast<uint8_t>(text[pos]));
  wanted = lead.length;
  if (lead.length <= 1)
    return lead.length;
  size_t have = 1;
  while (have < lead.length && pos + have < text.size()) {
    uint8_t byte = static_cast<uint8_t>(text[pos + have]);
    uint8_t low = have == 1 ? lead.low : 0x80;
    uint8_t high = have == 1 ? lead.high : 0xBF;
    if (byte < low || byte > high)
      break;
    ++have;
  }
  return have;
}

} // namespace

size_t decode(std::string_view text, size_t pos, char32_t &codePoint) {
  uint8_t first = static_cast<uint8_t>(text[pos]);
  if (first < 0x80) {
    codePoint = first;
    return 1;
  }
  size_t wanted = 0;
  size_t have = wellFormedPrefix(text, pos, wanted);
  if (wanted == 0 || have != wanted)
    return 0;
  static constexpr uint8_t kLeadMask[5] = {0, 0, 0x1F, 0x0F, 0x07};
  char32_t value = first & kLeadMask[wanted];
  for (size_t i = 1; i < wanted; ++i)
    value = (value << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  codePoint = value;
  return wanted;
}

size_t maximalSubpart(std::string_view text, size_t pos) {
  size_t wanted = 0;
  size_t have = wellFormedPrefix(text, pos, wanted);
  return have == 0 ? 1 : have;
}

size_t firstInvalid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII runs are the common case: skip 8 bytes at a time.
    while (pos + 8 <= text.size()) {
      uint64_t word = 0;
      for (int i = 0; i < 8; ++i)
        word |= static_cast<uint64_t>(static_cast<uint8_t>(text[pos + i]))
                << (8 * i);
      if (word & 0x8080808080808080ull)
        break;
      pos += 8;
    }
    if (pos >= text.size())
      break;
    char32_t codePoint;
    size_t length = decode(text, pos, codePoint);
    if (length == 0)
      return pos;
    pos += length;
  }
  return std::string_view::npos;
}

bool isValid(std::string_view text) {
  return firstInvalid(text) == std::string_view::npos;
}

std::string repair(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  size_t pos = 0;
  while (pos < text.size()) {
    char32_t codePoint;
    size_t length = decode(text, pos, codePoint);
    if (length != 0) {
      out.append(text.substr(pos, length));
      pos += length;
    } else {
      out.append(kReplacement);
      pos += maximalSubpart(text, pos);
    }
  }
  return out;
}

void append(std::string &out, char32_t codePoint) {
  if (codePoint < 0x80) {
    out.push_back(static_cast<char>(codePoint));
  } else if (codePoint < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (codePoint >> 6)));
    out.push_back(static_cast<char>(0x80 | (codePoint & 0x3F)));
  } else if (codePoint < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (codePoint >> 12)));
    out.push_back(static_cast<char>(0x80 | ((codePoint >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (codePoint & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (codePoint >> 18)));
    out.push_back(static_cast<char>(0x80 | ((codePoint >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((codePoint >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (codePoint & 0x3F)));
  }
}

size_t incompleteTail(std::string_view text) {
  // A lead byte is never a continuation byte, so the only candidate start is
  // the last non-continuation byte among the final three.
  size_t size = text.size();
  for (size_t back = 1; back <= 3 && back <= size; ++back) {
    size_t pos = size - back;
    uint8_t byte = static_cast<uint8_t>(text[pos]);
    if (byte >= 0x80 && byte <= 0xBF)
      continue;
    size_t wanted = 0;
    size_t have = wellFormedPrefix(text, pos, wanted);
    return wanted > back && have == back ? back : 0;
  }
  return 0;
}

namespace {

/// Characters below this bound have a precomputed answer; the rare ones
/// above it (plane 3 and up) take the slow path.
constexpr char32_t kNfcTableEnd = 0x30000;

/// inert[c]: c has combining class 0, NFC(c) == c, and neither c nor the
/// first character of its canonical decomposition is the second character
/// of a canonical composition. A string of inert characters is in NFC:
/// NFD splits it into blocks that each start with a starter, canonical
/// ordering stays inside a block, and no block's first starter composes
/// with the preceding one.
std::vector<uint8_t> buildNfcInertTable() {
  std::vector<uint8_t> second(kNfcTableEnd, 0);
  std::vector<utf8proc_int32_t> firstOfDecomposition(kNfcTableEnd, -1);
  utf8proc_int32_t buffer[32];
  for (char32_t c = 0; c < kNfcTableEnd; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    int boundClass = 0;
    utf8proc_ssize_t length =
        utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buffer, 32,
                                UTF8PROC_DECOMPOSE, &boundClass);
    if (length <= 0)
      continue;
    firstOfDecomposition[c] = buffer[0];
    for (utf8proc_ssize_t i = 1; i < length; ++i)
      if (buffer[i] >= 0 && static_cast<char32_t>(buffer[i]) < kNfcTableEnd)
        second[buffer[i]] = 1;
  }
  std::vector<uint8_t> inert(kNfcTableEnd, 0);
  for (char32_t c = 0; c < kNfcTableEnd; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    auto codePoint = static_cast<utf8proc_int32_t>(c);
    if (utf8proc_get_property(codePoint)->combining_class != 0 || second[c])
      continue;
    utf8proc_int32_t first = firstOfDecomposition[c];
    if (first < 0 ||
        (static_cast<char32_t>(first) < kNfcTableEnd && second[first]))
      continue;
    int boundClass = 0;
    utf8proc_ssize_t length = utf8proc_decompose_char(
        codePoint, buffer, 32, UTF8PROC_DECOMPOSE, &boundClass);
    if (length <= 0)
      continue;
    length = utf8proc_normalize_utf32(
        buffer, length,
        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    inert[c] = length == 1 && buffer[0] == codePoint;
  }
  return inert;
}

} // namespace

bool isKnownNfc(std::string_view text) {
  static const std::vector<uint8_t> inert = buildNfcInertTable();
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    char32_t codePoint = 0;
    size_t length = decode(text, pos, codePoint);
    if (length == 0 || codePoint >= kNfcTableEnd || !inert[codePoint])
      return false;
    pos += length;
  }
  return true;
}

} // namespace treni::utf8
