//===- utf8.h - UTF-8 validation, repair and decoding -----------*- C++ -*-===//
//
// The UTF-8 rules the tokenizer needs in one place. Repair follows Python's
// `bytes.decode('utf-8', 'replace')` (and Rust's String::from_utf8_lossy):
// each maximal subpart of an ill-formed sequence becomes one U+FFFD, where a
// maximal subpart is the longest prefix of a well-formed sequence (Unicode
// 15, section 3.9, "U+FFFD Substitution of Maximal Subparts").
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace treni::utf8 {

/// U+FFFD REPLACEMENT CHARACTER, UTF-8 encoded.
inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

/// Reads one well-formed sequence at `text[pos]`. Returns its length and sets
/// `codePoint`; returns 0 when the bytes at `pos` are not a complete
/// well-formed sequence (`pos` must be < text.size()).
size_t decode(std::string_view text, size_t pos, char32_t &codePoint);

/// Length of the maximal subpart at `text[pos]`: the number of bytes one
/// U+FFFD replaces when `decode` returns 0 there (at least 1).
size_t maximalSubpart(std::string_view text, size_t pos);

/// Offset of the first byte that does not start a well-formed sequence, or
/// npos when all of `text` is well-formed UTF-8.
size_t firstInvalid(std::string_view text);

/// True when all of `text` is well-formed UTF-8.
bool isValid(std::string_view text);

/// `text` with every ill-formed sequence replaced as Python does.
std::string repair(std::string_view text);

/// Appends the UTF-8 encoding of `codePoint` (which must be a scalar value).
void append(std::string &out, char32_t codePoint);

/// Number of trailing bytes of `text` that form an incomplete but so far
/// well-formed sequence (a prefix that more bytes could complete); 0 when the
/// text ends on a character boundary or in bytes that can never be valid.
size_t incompleteTail(std::string_view text);

/// A fast sufficient test for NFC: true only when `text` (valid UTF-8) is
/// certainly in Normalization Form C, i.e. every character is a starter
/// that NFC keeps as it is and that cannot compose with what precedes it.
/// False means "maybe not": normalize to find out.
bool isKnownNfc(std::string_view text);

} // namespace treni::utf8
