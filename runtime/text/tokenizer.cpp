//===- tokenizer.cpp - Hugging Face tokenizer.json (byte-level BPE) -------===//
//
// The pipeline of `tokenizers`' Tokenizer::encode, step by step:
//
//   repair UTF-8 -> split on added tokens (non-normalized ones, raw text)
//   -> normalize each remaining piece -> split on normalized added tokens
//   -> pre-tokenizers (Split regex, ByteLevel) -> BPE per pre-token
//   -> post-processor (TemplateProcessing adds special tokens)
//
// Each step mirrors the Rust code's semantics where they show in the ids:
// onig's find_iter for regex splits (PCRE2 here, with onig's meaning of \s),
// the split behaviours, BPE merges by (rank, leftmost position), ignore_merges,
// byte fallback and unk fusing, aho-corasick leftmost-longest matching of
// added tokens with their single_word/lstrip/rstrip flags.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <queue>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "support/file.h"
#include "support/json_bounded.h"
#include "support/status.h"
#include "support/utf8.h"
#include <nlohmann/json.hpp>
#include <pcre2.h>
#include <utf8proc.h>

namespace treni {
namespace {

using Json = nlohmann::json;

/// Debian's Abseil has its own string_view, which StrCat and the hash maps
/// want.
absl::string_view toAbsl(std::string_view text) {
  return {text.data(), text.size()};
}

/// `value` in a short form for error messages.
std::string describe(const Json &value) {
  // Containers are not dumped: a hostile file may nest them deeply, and
  // dump() recurses.
  if (value.is_object())
    return absl::StrCat("an object of ", value.size(), " keys");
  if (value.is_array())
    return absl::StrCat("an array of ", value.size(), " items");
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 60)
    text = text.substr(0, 57) + "...";
  return text;
}

/// Errors of one file: "NAME: 'path': message".
struct ErrorContext {
  std::string name;
  absl::Status error(std::string_view path, std::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": '", toAbsl(path), "' ", toAbsl(message)));
  }
};

/// The member `key` of `object`, or nullptr when it is absent or null.
const Json *member(const Json &object, const char *key) {
  if (!object.is_object())
    return nullptr;
  auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string childPath(std::string_view parent, std::string_view key) {
  return parent.empty() ? std::string(key)
                        : absl::StrCat(toAbsl(parent), ".", toAbsl(key));
}

absl::StatusOr<bool> readBool(const ErrorContext &ctx, const Json &object,
                              std::string_view path, const char *key,
                              bool defaultValue) {
  const Json *value = member(object, key);
  if (!value)
    return defaultValue;
  if (!value->is_boolean())
    return ctx.error(
        childPath(path, key),
        absl::StrCat("is ", describe(*value), ", expected true or false"));
  return value->get<bool>();
}

absl::StatusOr<std::string>
readString(const ErrorContext &ctx, const Json &object, std::string_view path,
           const char *key, std::optional<std::string> defaultValue) {
  const Json *value = member(object, key);
  if (!value) {
    if (defaultValue)
      return *defaultValue;
    return ctx.error(childPath(path, key), "is missing");
  }
  if (!value->is_string())
    return ctx.error(childPath(path, key), absl::StrCat("is ", describe(*value),
                                                        ", expected a string"));
  return value->get<std::string>();
}

absl::StatusOr<int32_t> readId(const ErrorContext &ctx, const Json &value,
                               std::string_view path) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() > std::numeric_limits<int32_t>::max() - 1)
    return ctx.error(path,
                     absl::StrCat("is ", describe(value),
                                  ", expected a token id (0 <= id < 2^31-1)"));
  return static_cast<int32_t>(value.get<int64_t>());
}

//===----------------------------------------------------------------------===//
// Byte-level alphabet (GPT-2's bytes_to_unicode)
//===----------------------------------------------------------------------===//

/// Printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100.. in byte order, so every byte is one visible character.
struct ByteLevelAlphabet {
  std::array<std::string, 256> byteToUtf8;
  std::array<int16_t, 0x144> charToByte; // -1: not a byte-level character

  ByteLevelAlphabet() {
    charToByte.fill(-1);
    char32_t next = 256;
    for (int byte = 0; byte < 256; ++byte) {
      bool printable = (byte >= 0x21 && byte <= 0x7E) ||
                       (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      char32_t codePoint = printable ? char32_t(byte) : next++;
      utf8::append(byteToUtf8[byte], codePoint);
      charToByte[codePoint] = static_cast<int16_t>(byte);
    }
  }
};

const ByteLevelAlphabet &byteLevelAlphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

/// The byte a byte-level token character stands for, or -1.
int byteOfChar(char32_t codePoint) {
  const auto &table = byteLevelAlphabet().charToByte;
  return codePoint < table.size() ? table[codePoint] : -1;
}

/// Appends the byte-level characters of `bytes`.
void appendByteLevel(std::string_view bytes, std::string &out) {
  const auto &table = byteLevelAlphabet().byteToUtf8;
  out.reserve(out.size() + bytes.size() * 2);
  for (char c : bytes)
    out += table[static_cast<uint8_t>(c)];
}

//===----------------------------------------------------------------------===//
// Regex (PCRE2, with onig's meaning of \s)
//===----------------------------------------------------------------------===//

/// Unicode White_Space, which is what onig's \s (and Rust's
/// char::is_whitespace) match; PCRE2's \s with UCP would add U+180E.
constexpr std::string_view kWhiteSpaceItems =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
    "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

bool isWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation
/// and the joiners.
bool isWordChar(char32_t c) {
  if (c == 0x200C || c == 0x200D)
    return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_MC:
  case UTF8PROC_CATEGORY_ME:
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_PC:
    return true;
  default:
    return false;
  }
}

/// Rewrites an onig pattern for PCRE2: \s and \S become explicit classes.
absl::StatusOr<std::string> translateOnigPattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool inClass = false;
  size_t classStart = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char next = pattern[++i];
      if (next == 's') {
        if (inClass)
          absl::StrAppend(&out, toAbsl(kWhiteSpaceItems));
        else
          absl::StrAppend(&out, "[", toAbsl(kWhiteSpaceItems), "]");
      } else if (next == 'S') {
        if (inClass)
          return absl::InvalidArgumentError(
              "\\S inside a character class is not supported");
        absl::StrAppend(&out, "[^", toAbsl(kWhiteSpaceItems), "]");
      } else {
        out.push_back('\\');
        out.push_back(next);
      }
      continue;
    }
    if (!inClass && c == '[') {
      inClass = true;
      classStart = i;
    } else if (inClass && c == ']') {
      // A ']' first in the class ("[]" or "[^]") is a literal.
      bool first = i == classStart + 1 ||
                   (i == classStart + 2 && pattern[classStart + 1] == '^');
      if (!first)
        inClass = false;
    }
    out.push_back(c);
  }
  return out;
}

std::string escapeForPcre2(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::strchr("\\^$.[]|()?*+{}-/#", c) && c != '\0')
      out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

class Regex {
public:
  /// `pattern` is PCRE2 syntax; UTF + UCP, JIT-compiled when available.
  static absl::StatusOr<std::unique_ptr<Regex>>
  compile(const std::string &pattern) {
    int errorCode = 0;
    PCRE2_SIZE errorOffset = 0;
    pcre2_code *code = pcre2_compile(
        reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
        PCRE2_UTF | PCRE2_UCP, &errorCode, &errorOffset, nullptr);
    if (!code) {
      PCRE2_UCHAR buffer[256];
      pcre2_get_error_message(errorCode, buffer, sizeof(buffer));
      return absl::InvalidArgumentError(
          absl::StrCat("regex does not compile at offset ", errorOffset, ": ",
                       reinterpret_cast<const char *>(buffer)));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); // interpreted if this fails
    return std::unique_ptr<Regex>(new Regex(code));
  }
  ~Regex() { pcre2_code_free(code); }

  /// Calls onMatch(start, end) for each match as onig's find_iter reports
  /// them: leftmost matches, an empty match right after the previous match
  /// skipped. `subject` must be valid UTF-8.
  template <typename F>
  void forEachMatch(std::string_view subject, F &&onMatch) const {
    pcre2_match_data *matchData =
        pcre2_match_data_create_from_pattern(code, nullptr);
    if (!matchData)
      return;
    static const char kEmpty[1] = {0};
    auto *data =
        reinterpret_cast<PCRE2_SPTR>(subject.empty() ? kEmpty : subject.data());
    size_t searchFrom = 0;
    std::optional<size_t> lastMatchEnd;
    while (searchFrom <= subject.size()) {
      int rc = pcre2_match(code, data, subject.size(), searchFrom,
                           PCRE2_NO_UTF_CHECK, matchData, nullptr);
      if (rc < 0)
        break; // no match, or a match limit: the rest is not a match
      PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(matchData);
      size_t start = ovector[0], end = ovector[1];
      if (start > end)
        break; // \K tricks; never in a tokenizer pattern
      if (start == end && lastMatchEnd == end) {
        searchFrom +=
            searchFrom < subject.size()
                ? std::max<size_t>(1, utf8::maximalSubpart(subject, searchFrom))
                : 1;
        continue;
      }
      searchFrom = end;
      lastMatchEnd = end;
      onMatch(start, end);
    }
    pcre2_match_data_free(matchData);
  }

private:
  explicit Regex(pcre2_code *code) : code(code) {}
  pcre2_code *code;
};

/// The regex of GPT-2's ByteLevel pre-tokenizer (use_regex: true).
constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| "
    "?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

//===----------------------------------------------------------------------===//
// Normalizer
//===----------------------------------------------------------------------===//

enum class NormalForm { NFC, NFD, NFKC, NFKD };

/// `text` (valid UTF-8) through utf8proc with `options`; the text itself if
/// utf8proc fails.
std::string utf8procMap(std::string_view text, int options) {
  utf8proc_uint8_t *result = nullptr;
  utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &result,
                   static_cast<utf8proc_option_t>(options));
  std::string out =
      length >= 0 && result
          ? std::string(reinterpret_cast<const char *>(result), length)
          : std::string(text);
  std::free(result);
  return out;
}

/// NFC of `text`, normalizing only the stretches that need it: a character
/// for which utf8::isKnownNfc holds starts an independent segment (nothing
/// before it can compose with it or reorder past it), so only the runs of
/// other characters, with the character just before each, go to utf8proc.
std::string nfcBySegments(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t copied = 0;    // text before this is in `out`
  size_t lastInert = 0; // start of the last inert character seen
  size_t pos = 0;
  while (pos < text.size()) {
    char32_t codePoint = 0;
    size_t length = utf8::decode(text, pos, codePoint);
    std::string_view character = text.substr(pos, length);
    if (utf8::isKnownNfc(character)) {
      lastInert = pos;
      pos += length;
      continue;
    }
    // A run that needs normalizing: from the last inert character (it may
    // compose with what follows) to the next inert one.
    size_t runStart = std::max(lastInert, copied);
    size_t runEnd = pos + length;
    while (runEnd < text.size()) {
      size_t next = utf8::decode(text, runEnd, codePoint);
      if (utf8::isKnownNfc(text.substr(runEnd, next)))
        break;
      runEnd += next;
    }
    out.append(text.substr(copied, runStart - copied));
    out += utf8procMap(text.substr(runStart, runEnd - runStart),
                       UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    copied = runEnd;
    lastInert = runEnd;
    pos = runEnd;
  }
  out.append(text.substr(copied));
  return out;
}

/// Applies `forms` in order; returns false (and leaves `out` alone) when the
/// text is unchanged, which is always the case for ASCII.
bool normalize(const std::vector<NormalForm> &forms, std::string_view text,
               std::string &out) {
  if (forms.empty())
    return false;
  if (forms.size() == 1 && forms[0] == NormalForm::NFC &&
      utf8::isKnownNfc(text))
    return false;
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<uint8_t>(c) < 0x80; }))
    return false;
  std::string current(text);
  for (NormalForm form : forms) {
    switch (form) {
    case NormalForm::NFC:
      current = nfcBySegments(current);
      break;
    case NormalForm::NFD:
      current = utf8procMap(current, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
      break;
    case NormalForm::NFKC:
      current = utf8procMap(current, UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                         UTF8PROC_COMPAT);
      break;
    case NormalForm::NFKD:
      current = utf8procMap(current, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE |
                                         UTF8PROC_COMPAT);
      break;
    }
  }
  if (current == text)
    return false;
  out = std::move(current);
  return true;
}

//===----------------------------------------------------------------------===//
// Pre-tokenizers
//===----------------------------------------------------------------------===//

enum class SplitBehavior {
  Removed,
  Isolated,
  MergedWithPrevious,
  MergedWithNext,
  Contiguous
};

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel } kind;
  std::unique_ptr<Regex> regex; // Split, or ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool addPrefixSpace = false;
};

using Span = std::pair<size_t, size_t>;

/// NormalizedString::split: regex matches and the gaps between them, turned
/// into pieces by `behavior`; empty pieces dropped.
void splitPieces(const Regex &regex, SplitBehavior behavior, bool invert,
                 std::string_view text, std::vector<Span> &pieces) {
  std::vector<std::pair<Span, bool>> splits;
  size_t previous = 0;
  regex.forEachMatch(text, [&](size_t start, size_t end) {
    if (previous != start)
      splits.push_back({{previous, start}, false});
    splits.push_back({{start, end}, true});
    previous = end;
  });
  if (previous != text.size())
    splits.push_back({{previous, text.size()}, false});
  if (invert)
    for (auto &split : splits)
      split.second = !split.second;

  std::vector<Span> merged;
  switch (behavior) {
  case SplitBehavior::Removed:
    for (auto &[span, isMatch] : splits)
      if (!isMatch)
        merged.push_back(span);
    break;
  case SplitBehavior::Isolated:
    for (auto &[span, isMatch] : splits)
      merged.push_back(span);
    break;
  case SplitBehavior::MergedWithPrevious: {
    bool previousMatch = false;
    for (auto &[span, isMatch] : splits) {
      if (isMatch && !previousMatch && !merged.empty())
        merged.back().second = span.second;
      else
        merged.push_back(span);
      previousMatch = isMatch;
    }
    break;
  }
  case SplitBehavior::MergedWithNext: {
    bool previousMatch = false;
    for (auto it = splits.rbegin(); it != splits.rend(); ++it) {
      if (it->second && !previousMatch && !merged.empty())
        merged.back().first = it->first.first;
      else
        merged.push_back(it->first);
      previousMatch = it->second;
    }
    std::reverse(merged.begin(), merged.end());
    break;
  }
  case SplitBehavior::Contiguous: {
    bool previousMatch = false;
    for (auto &[span, isMatch] : splits) {
      if (isMatch == previousMatch && !merged.empty())
        merged.back().second = span.second;
      else
        merged.push_back(span);
      previousMatch = isMatch;
    }
    break;
  }
  }
  for (const Span &span : merged)
    if (span.first != span.second)
      pieces.push_back(span);
}

//===----------------------------------------------------------------------===//
// Added tokens
//===----------------------------------------------------------------------===//

struct AddedTokenFlags {
  bool singleWord = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

/// Leftmost-longest matching of a set of literal strings (what the
/// aho-corasick automaton of `tokenizers` computes), with the flags applied
/// as AddedVocabulary::find_matches does.
class AddedTokenMatcher {
public:
  struct Entry {
    std::string
        text; // what is matched (the normalized content when normalized)
    int32_t id;
    AddedTokenFlags flags;
  };

  void build(std::vector<Entry> entries) {
    this->entries = std::move(entries);
    std::stable_sort(this->entries.begin(), this->entries.end(),
                     [](const Entry &a, const Entry &b) {
                       return a.text.size() > b.text.size();
                     });
    byFirstByte.assign(256, {});
    for (size_t i = 0; i < this->entries.size(); ++i)
      byFirstByte[static_cast<uint8_t>(this->entries[i].text[0])].push_back(
          static_cast<uint32_t>(i));
  }
  bool empty() const { return entries.empty(); }

  /// Splits `text` into pieces: onPiece(view, id) with id -1 for text
  /// between added tokens. Empty pieces are not reported.
  template <typename F> void split(std::string_view text, F &&onPiece) const {
    if (entries.empty()) {
      if (!text.empty())
        onPiece(text, -1);
      return;
    }
    size_t pieceStart = 0; // start of the text not yet reported
    size_t searchFrom = 0;
    while (searchFrom < text.size()) {
      // Leftmost position with a match; the longest entry there.
      size_t matchStart = text.size();
      const Entry *found = nullptr;
      for (size_t pos = searchFrom; pos < text.size() && !found; ++pos) {
        const auto &candidates = byFirstByte[static_cast<uint8_t>(text[pos])];
        for (uint32_t index : candidates) {
          const Entry &entry = entries[index];
          if (text.compare(pos, entry.text.size(), entry.text) == 0) {
            found = &entry;
            matchStart = pos;
            break;
          }
        }
      }
      if (!found)
        break;
      size_t start = matchStart;
      size_t stop = matchStart + found->text.size();
      searchFrom = stop;
      if (found->flags.singleWord) {
        bool startOk = start == 0 || !endsWithWord(text.substr(0, start));
        bool stopOk = stop == text.size() || !startsWithWord(text.substr(stop));
        if (!startOk || !stopOk)
          continue;
      }
      if (found->flags.lstrip)
        start = std::max(leftmostSpaceAtEnd(text.substr(0, start)), pieceStart);
      if (found->flags.rstrip)
        stop += rightmostSpaceAtStart(text.substr(stop));
      if (start > pieceStart)
        onPiece(text.substr(pieceStart, start - pieceStart), -1);
      onPiece(text.substr(start, stop - start), found->id);
      pieceStart = stop;
    }
    if (pieceStart < text.size())
      onPiece(text.substr(pieceStart), -1);
  }

private:
  static char32_t lastChar(std::string_view text) {
    size_t pos = text.size();
    while (pos > 0 && (static_cast<uint8_t>(text[pos - 1]) & 0xC0) == 0x80)
      --pos;
    if (pos == 0)
      return 0;
    char32_t c = 0;
    utf8::decode(text, pos - 1, c);
    return c;
  }
  static bool endsWithWord(std::string_view text) {
    return !text.empty() && isWordChar(lastChar(text));
  }
  static bool startsWithWord(std::string_view text) {
    char32_t c = 0;
    return !text.empty() && utf8::decode(text, 0, c) && isWordChar(c);
  }
  /// Byte offset where the trailing whitespace of `text` starts.
  static size_t leftmostSpaceAtEnd(std::string_view text) {
    size_t pos = text.size();
    while (pos > 0) {
      size_t charStart = pos - 1;
      while (charStart > 0 &&
             (static_cast<uint8_t>(text[charStart]) & 0xC0) == 0x80)
        --charStart;
      char32_t c = 0;
      if (!utf8::decode(text, charStart, c) || !isWhiteSpace(c))
        break;
      pos = charStart;
    }
    return pos;
  }
  /// Bytes of leading whitespace in `text`.
  static size_t rightmostSpaceAtStart(std::string_view text) {
    size_t pos = 0;
    while (pos < text.size()) {
      char32_t c = 0;
      size_t length = utf8::decode(text, pos, c);
      if (!length || !isWhiteSpace(c))
        break;
      pos += length;
    }
    return pos;
  }

  std::vector<Entry> entries;
  std::vector<std::vector<uint32_t>> byFirstByte;
};

//===----------------------------------------------------------------------===//
// BPE model
//===----------------------------------------------------------------------===//

struct Merge {
  int32_t rank;
  int32_t newId;
};

uint64_t pairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

struct BpeModel {
  absl::flat_hash_map<std::string, int32_t> vocab;
  std::vector<std::string> idToToken; // "" where no vocab entry has the id
  std::vector<uint8_t> hasId;
  absl::flat_hash_map<uint64_t, Merge> merges;
  std::optional<int32_t> unkId;
  bool fuseUnk = false;
  bool byteFallback = false;
  bool ignoreMerges = false;
  std::string continuingSubwordPrefix;
  std::string endOfWordSuffix;
  /// Id of each single character below U+0800 (-1: not in the vocabulary);
  /// valid when there is no prefix or suffix. Covers the byte-level alphabet.
  std::vector<int32_t> charIds;
  std::array<int32_t, 256> byteFallbackIds;

  std::optional<int32_t> find(std::string_view token) const {
    auto it = vocab.find(toAbsl(token));
    if (it == vocab.end())
      return std::nullopt;
    return it->second;
  }

  const Merge *findMerge(int32_t left, int32_t right) const {
    auto it = merges.find(pairKey(left, right));
    return it == merges.end() ? nullptr : &it->second;
  }

  /// Model::tokenize for one pre-token: ids appended to `out`.
  void tokenize(std::string_view word, std::vector<int32_t> &out) const;

private:
  void initialSymbols(std::string_view word,
                      std::vector<int32_t> &symbols) const;
  void mergeShort(std::vector<int32_t> &symbols) const;
  void mergeLong(std::vector<int32_t> &symbols) const;
};

void BpeModel::initialSymbols(std::string_view word,
                              std::vector<int32_t> &symbols) const {
  bool plain = continuingSubwordPrefix.empty() && endOfWordSuffix.empty();
  int32_t pendingUnk = -1; // Rust's `unk`, fused or not (-1: none)
  std::string piece;
  size_t pos = 0;
  bool first = true;
  while (pos < word.size()) {
    char32_t codePoint = 0;
    size_t length = utf8::decode(word, pos, codePoint);
    if (length == 0)
      length =
          utf8::maximalSubpart(word, pos); // cannot happen: input is repaired
    std::string_view character = word.substr(pos, length);
    pos += length;
    bool last = pos >= word.size();
    std::optional<int32_t> id;
    if (plain) {
      if (length <= 2 && codePoint < charIds.size()) {
        if (charIds[codePoint] >= 0)
          id = charIds[codePoint];
      } else {
        id = find(character);
      }
      piece.assign(character);
    } else {
      piece.clear();
      if (!first)
        piece += continuingSubwordPrefix;
      piece.append(character);
      if (last)
        piece += endOfWordSuffix;
      id = find(piece);
    }
    first = false;
    if (id) {
      if (pendingUnk >= 0) {
        symbols.push_back(pendingUnk);
        pendingUnk = -1;
      }
      symbols.push_back(*id);
      continue;
    }
    if (byteFallback) {
      bool all = std::all_of(piece.begin(), piece.end(), [&](char c) {
        return byteFallbackIds[static_cast<uint8_t>(c)] >= 0;
      });
      if (all) {
        for (char c : piece)
          symbols.push_back(byteFallbackIds[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (unkId) {
      if (pendingUnk >= 0 && !fuseUnk)
        symbols.push_back(pendingUnk);
      pendingUnk = *unkId;
    }
    // No unk token: the character is dropped, as `tokenizers` does.
  }
  if (pendingUnk >= 0)
    symbols.push_back(pendingUnk);
}

/// Merges the lowest-ranked adjacent pair, leftmost first, until none is
/// left; the ranks of adjacent pairs are kept so each merge costs two
/// lookups. Quadratic in the symbol count: for short words only.
void BpeModel::mergeShort(std::vector<int32_t> &symbols) const {
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  absl::InlinedVector<Merge, 32> pairs; // pairs[i]: symbols[i], symbols[i+1]
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    const Merge *merge = findMerge(symbols[i], symbols[i + 1]);
    pairs.push_back(merge ? *merge : Merge{kNone, -1});
  }
  while (!pairs.empty()) {
    size_t best = 0;
    for (size_t i = 1; i < pairs.size(); ++i)
      if (pairs[i].rank < pairs[best].rank)
        best = i;
    if (pairs[best].rank == kNone)
      break;
    symbols[best] = pairs[best].newId;
    symbols.erase(symbols.begin() + best + 1);
    pairs.erase(pairs.begin() + best);
    auto rankAt = [&](size_t i) {
      const Merge *merge = findMerge(symbols[i], symbols[i + 1]);
      pairs[i] = merge ? *merge : Merge{kNone, -1};
    };
    if (best > 0)
      rankAt(best - 1);
    if (best < pairs.size())
      rankAt(best);
  }
}

/// Word::merge_all of `tokenizers`: a min-heap on (rank, position) over a
/// linked list of symbols, stale entries skipped.
void BpeModel::mergeLong(std::vector<int32_t> &symbols) const {
  struct Entry {
    int32_t rank;
    int32_t pos;
    int32_t newId;
    bool operator>(const Entry &other) const {
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  size_t count = symbols.size();
  std::vector<int32_t> prev(count), next(count);
  std::vector<uint8_t> alive(count, 1);
  for (size_t i = 0; i < count; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < count ? static_cast<int32_t>(i + 1) : -1;
  }
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  for (size_t i = 0; i + 1 < count; ++i)
    if (const Merge *merge = findMerge(symbols[i], symbols[i + 1]))
      queue.push({merge->rank, static_cast<int32_t>(i), merge->newId});
  while (!queue.empty()) {
    Entry top = queue.top();
    queue.pop();
    int32_t pos = top.pos;
    if (!alive[pos] || next[pos] < 0)
      continue;
    int32_t right = next[pos];
    const Merge *current = findMerge(symbols[pos], symbols[right]);
    if (!current || current->newId != top.newId)
      continue; // stale entry
    symbols[pos] = top.newId;
    alive[right] = 0;
    next[pos] = next[right];
    if (next[pos] >= 0)
      prev[next[pos]] = pos;
    if (prev[pos] >= 0)
      if (const Merge *merge = findMerge(symbols[prev[pos]], symbols[pos]))
        queue.push({merge->rank, prev[pos], merge->newId});
    if (next[pos] >= 0)
      if (const Merge *merge = findMerge(symbols[pos], symbols[next[pos]]))
        queue.push({merge->rank, pos, merge->newId});
  }
  size_t kept = 0;
  for (size_t i = 0; i < count; ++i)
    if (alive[i])
      symbols[kept++] = symbols[i];
  symbols.resize(kept);
}

void BpeModel::tokenize(std::string_view word,
                        std::vector<int32_t> &out) const {
  if (word.empty())
    return;
  if (ignoreMerges)
    if (std::optional<int32_t> id = find(word)) {
      out.push_back(*id);
      return;
    }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  initialSymbols(word, symbols);
  if (symbols.size() <= 64)
    mergeShort(symbols);
  else
    mergeLong(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

} // namespace

//===----------------------------------------------------------------------===//
// Tokenizer::Impl
//===----------------------------------------------------------------------===//

struct Tokenizer::Impl {
  std::vector<NormalForm> normalizer;
  std::vector<PreTokenizerStep> preTokenizers;
  BpeModel model;
  enum class DecoderKind { None, ByteLevel } decoder = DecoderKind::None;
  /// TemplateProcessing steps in order: ids before and after the sequence.
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> templates;

  std::vector<AddedToken> addedTokens;
  absl::flat_hash_map<std::string, int32_t> addedByContent;
  absl::flat_hash_map<int32_t, size_t> addedById; // index into addedTokens
  AddedTokenMatcher rawMatcher;                   // normalized: false
  AddedTokenMatcher normalizedMatcher;            // normalized: true
  std::vector<uint8_t> specialById; // ids whose token is a special token
  int64_t vocabSize = 0;

  /// Pre-token -> ids. Bounded; entries are never evicted (as in
  /// `tokenizers`, the cache stops growing when full).
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cacheMutex;
  mutable absl::flat_hash_map<std::string, absl::InlinedVector<int32_t, 4>>
      cache;

  void encode(std::string_view text, bool addSpecialTokens,
              std::vector<int32_t> &out) const;
  void preTokenize(size_t step, std::string_view piece,
                   std::vector<int32_t> &out) const;
  /// BPE of one pre-token through the word cache; with `mapBytes` the word
  /// is raw bytes that the ByteLevel mapping turns into the model's alphabet.
  void tokenizeWord(std::string_view word, bool mapBytes,
                    std::vector<int32_t> &out) const;

  /// Decoder output of every model token, back to back (ByteLevel only):
  /// decoding is then a copy per id.
  std::string decodedBytes;
  std::vector<uint32_t> decodedOffsets; // model id -> start; one extra at end

  /// Index into addedTokens by id (-1: not an added token).
  std::vector<int32_t> addedIndexById;

  /// Appends the decoder's bytes for `id`; false when the id is unknown.
  bool appendIdBytes(int32_t id, std::string &out) const {
    if (id >= 0 && id < vocabSize && addedIndexById[id] >= 0) {
      appendTokenBytes(addedTokens[addedIndexById[id]].content, out);
      return true;
    }
    if (id < 0 || static_cast<size_t>(id) >= model.hasId.size() ||
        !model.hasId[id])
      return false;
    if (!decodedOffsets.empty())
      out.append(decodedBytes, decodedOffsets[id],
                 decodedOffsets[id + 1] - decodedOffsets[id]);
    else
      appendTokenBytes(model.idToToken[id], out);
    return true;
  }

  /// The token text of `id` (added tokens first), or nullptr.
  const std::string *tokenText(int32_t id) const {
    if (id >= 0 && id < vocabSize && addedIndexById[id] >= 0)
      return &addedTokens[addedIndexById[id]].content;
    if (id >= 0 && static_cast<size_t>(id) < model.hasId.size() &&
        model.hasId[id])
      return &model.idToToken[id];
    return nullptr;
  }
  bool skipped(int32_t id, bool skipSpecialTokens) const {
    return skipSpecialTokens && id >= 0 &&
           static_cast<size_t>(id) < specialById.size() && specialById[id];
  }
  /// The bytes the decoder makes of one token (ByteLevel: the byte of each
  /// character when all of them are byte-level characters, else the text).
  void appendTokenBytes(const std::string &token, std::string &out) const;
  absl::Status unknownId(int32_t id) const {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown token id ", id, " (the vocabulary has ids 0..",
                     vocabSize - 1, ")"));
  }
};

void Tokenizer::Impl::appendTokenBytes(const std::string &token,
                                       std::string &out) const {
  if (decoder == DecoderKind::None) {
    out += token;
    return;
  }
  size_t start = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    char32_t codePoint = 0;
    size_t length = utf8::decode(token, pos, codePoint);
    int byte = length ? byteOfChar(codePoint) : -1;
    if (byte < 0) {
      out.resize(start);
      out += token;
      return;
    }
    out.push_back(static_cast<char>(byte));
    pos += length;
  }
}

void Tokenizer::Impl::tokenizeWord(std::string_view word, bool mapBytes,
                                   std::vector<int32_t> &out) const {
  bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cacheMutex);
    auto it = cache.find(toAbsl(word));
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out.size();
  if (mapBytes) {
    thread_local std::string mapped;
    mapped.clear();
    appendByteLevel(word, mapped);
    model.tokenize(mapped, out);
  } else {
    model.tokenize(word, out);
  }
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cacheMutex);
    if (cache.size() < kCacheCapacity)
      cache.try_emplace(toAbsl(word), out.begin() + first, out.end());
  }
}

void Tokenizer::Impl::preTokenize(size_t step, std::string_view piece,
                                  std::vector<int32_t> &out) const {
  if (piece.empty())
    return;
  if (step == preTokenizers.size()) {
    tokenizeWord(piece, /*mapBytes=*/false, out);
    return;
  }
  const PreTokenizerStep &pre = preTokenizers[step];
  if (pre.kind == PreTokenizerStep::Kind::Split) {
    std::vector<Span> pieces;
    splitPieces(*pre.regex, pre.behavior, pre.invert, piece, pieces);
    for (const Span &span : pieces)
      preTokenize(step + 1, piece.substr(span.first, span.second - span.first),
                  out);
    return;
  }
  // ByteLevel: optional prefix space, optional GPT-2 split, then every byte
  // becomes its byte-level character.
  std::string prefixed;
  if (pre.addPrefixSpace && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  bool last = step + 1 == preTokenizers.size();
  auto mapAndContinue = [&](std::string_view part) {
    // Last step (the usual case): the word cache is keyed by the raw bytes
    // and the mapping is done only on a miss.
    if (last) {
      if (!part.empty())
        tokenizeWord(part, /*mapBytes=*/true, out);
      return;
    }
    std::string mapped;
    appendByteLevel(part, mapped);
    preTokenize(step + 1, mapped, out);
  };
  if (!pre.regex) {
    mapAndContinue(piece);
    return;
  }
  std::vector<Span> pieces;
  splitPieces(*pre.regex, SplitBehavior::Isolated, false, piece, pieces);
  for (const Span &span : pieces)
    mapAndContinue(piece.substr(span.first, span.second - span.first));
}

void Tokenizer::Impl::encode(std::string_view text, bool addSpecialTokens,
                             std::vector<int32_t> &out) const {
  std::string repaired;
  if (!utf8::isValid(text)) {
    repaired = utf8::repair(text);
    text = repaired;
  }
  std::string normalized;
  rawMatcher.split(text, [&](std::string_view piece, int32_t id) {
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    std::string_view normalizedPiece = piece;
    if (normalize(normalizer, piece, normalized))
      normalizedPiece = normalized;
    normalizedMatcher.split(normalizedPiece,
                            [&](std::string_view part, int32_t partId) {
                              if (partId >= 0)
                                out.push_back(partId);
                              else
                                preTokenize(0, part, out);
                            });
  });
  if (addSpecialTokens) {
    for (const auto &[prefix, suffix] : templates) {
      out.insert(out.begin(), prefix.begin(), prefix.end());
      out.insert(out.end(), suffix.begin(), suffix.end());
    }
  }
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

namespace {

/// What normalizers, pre-tokenizers and post-processors share: `value` is
/// null (none), a {"type": "Sequence", LIST_KEY: [...]} whose items are read
/// the same way, in order, or one component, which `parseOne(value, path,
/// type)` reads.
template <typename ParseOne>
absl::Status parseSequenceOr(const ErrorContext &ctx, const Json &value,
                             const std::string &path, const char *listKey,
                             const ParseOne &parseOne) {
  if (value.is_null())
    return absl::OkStatus();
  if (!value.is_object())
    return ctx.error(
        path, absl::StrCat("is ", describe(value), ", expected an object"));
  absl::StatusOr<std::string> type =
      readString(ctx, value, path, "type", std::nullopt);
  if (!type.ok())
    return type.status();
  if (*type != "Sequence")
    return parseOne(value, path, *type);
  std::string listPath = childPath(path, listKey);
  const Json *list = member(value, listKey);
  if (!list || !list->is_array())
    return ctx.error(listPath, "must be an array");
  for (size_t i = 0; i < list->size(); ++i) {
    absl::Status status =
        parseSequenceOr(ctx, (*list)[i], absl::StrCat(listPath, "[", i, "]"),
                        listKey, parseOne);
    if (!status.ok())
      return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NormalForm>>
parseNormalizer(const ErrorContext &ctx, const Json &value,
                const std::string &path) {
  static const std::pair<const char *, NormalForm> kForms[] = {
      {"NFC", NormalForm::NFC},
      {"NFD", NormalForm::NFD},
      {"NFKC", NormalForm::NFKC},
      {"NFKD", NormalForm::NFKD}};
  std::vector<NormalForm> forms;
  absl::Status status = parseSequenceOr(
      ctx, value, path, "normalizers",
      [&](const Json &, const std::string &formPath,
          const std::string &type) -> absl::Status {
        for (const auto &[name, form] : kForms)
          if (type == name) {
            forms.push_back(form);
            return absl::OkStatus();
          }
        return ctx.error(childPath(formPath, "type"),
                         absl::StrCat("is '", type,
                                      "', which is not supported (NFC, NFD, "
                                      "NFKC, NFKD, Sequence)"));
      });
  if (!status.ok())
    return status;
  return forms;
}

absl::StatusOr<std::unique_ptr<Regex>> compileOnig(const ErrorContext &ctx,
                                                   std::string_view pattern,
                                                   const std::string &path) {
  absl::StatusOr<std::string> translated = translateOnigPattern(pattern);
  if (!translated.ok())
    return ctx.error(path, std::string(translated.status().message()));
  auto regex = Regex::compile(*translated);
  if (!regex.ok())
    return ctx.error(path, std::string(regex.status().message()));
  return regex;
}

/// One pre-tokenizer of type `type` (not a Sequence), appended to `steps`.
absl::Status parsePreTokenizerStep(const ErrorContext &ctx, const Json &value,
                                   const std::string &path,
                                   const std::string &type,
                                   std::vector<PreTokenizerStep> &steps) {
  PreTokenizerStep step;
  if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::Split;
    const Json *pattern = member(value, "pattern");
    std::string patternPath = childPath(path, "pattern");
    if (!pattern || !pattern->is_object())
      return ctx.error(patternPath,
                       "must be {\"Regex\": ...} or {\"String\": ...}");
    if (const Json *regex = member(*pattern, "Regex");
        regex && regex->is_string()) {
      auto compiled =
          compileOnig(ctx, regex->get<std::string>(), patternPath + ".Regex");
      if (!compiled.ok())
        return compiled.status();
      step.regex = std::move(*compiled);
    } else if (const Json *literal = member(*pattern, "String");
               literal && literal->is_string()) {
      auto compiled =
          Regex::compile(escapeForPcre2(literal->get<std::string>()));
      if (!compiled.ok())
        return ctx.error(patternPath + ".String",
                         std::string(compiled.status().message()));
      step.regex = std::move(*compiled);
    } else {
      return ctx.error(patternPath,
                       absl::StrCat("is ", describe(*pattern),
                                    ", expected {\"Regex\": ...} or "
                                    "{\"String\": ...}"));
    }
    absl::StatusOr<std::string> behavior =
        readString(ctx, value, path, "behavior", std::nullopt);
    if (!behavior.ok())
      return behavior.status();
    static const std::pair<const char *, SplitBehavior> kBehaviors[] = {
        {"Removed", SplitBehavior::Removed},
        {"Isolated", SplitBehavior::Isolated},
        {"MergedWithPrevious", SplitBehavior::MergedWithPrevious},
        {"MergedWithNext", SplitBehavior::MergedWithNext},
        {"Contiguous", SplitBehavior::Contiguous}};
    bool known = false;
    for (const auto &[name, kind] : kBehaviors)
      if (*behavior == name) {
        step.behavior = kind;
        known = true;
      }
    if (!known)
      return ctx.error(
          childPath(path, "behavior"),
          absl::StrCat("is '", *behavior, "', which is not a split behavior"));
    absl::StatusOr<bool> invert = readBool(ctx, value, path, "invert", false);
    if (!invert.ok())
      return invert.status();
    step.invert = *invert;
  } else if (type == "ByteLevel") {
    // Each ByteLevel step maps every byte to a 1-2 byte character, so n of
    // them blow the text up 2^n times (encode would not finish at n = 64).
    // One is what every real tokenizer has.
    for (const PreTokenizerStep &earlier : steps)
      if (earlier.kind == PreTokenizerStep::Kind::ByteLevel)
        return ctx.error(path, "is a second ByteLevel pre-tokenizer; one is "
                               "supported (each re-maps the bytes the one "
                               "before produced, doubling the text)");
    step.kind = PreTokenizerStep::Kind::ByteLevel;
    // Defaults of `tokenizers`' ByteLevel::default().
    absl::StatusOr<bool> addPrefixSpace =
        readBool(ctx, value, path, "add_prefix_space", true);
    if (!addPrefixSpace.ok())
      return addPrefixSpace.status();
    absl::StatusOr<bool> useRegex =
        readBool(ctx, value, path, "use_regex", true);
    if (!useRegex.ok())
      return useRegex.status();
    step.addPrefixSpace = *addPrefixSpace;
    if (*useRegex) {
      auto compiled =
          compileOnig(ctx, kGpt2Pattern, childPath(path, "use_regex"));
      if (!compiled.ok())
        return compiled.status();
      step.regex = std::move(*compiled);
    }
  } else {
    return ctx.error(
        childPath(path, "type"),
        absl::StrCat("is '", type,
                     "', which is not supported (Sequence, Split, ByteLevel)"));
  }
  // encode() recurses once per step.
  if (steps.size() >= 64)
    return ctx.error(path, "is one pre-tokenizer too many (at most 64)");
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status parsePreTokenizer(const ErrorContext &ctx, const Json &value,
                               const std::string &path,
                               std::vector<PreTokenizerStep> &steps) {
  return parseSequenceOr(ctx, value, path, "pretokenizers",
                         [&](const Json &step, const std::string &stepPath,
                             const std::string &type) {
                           return parsePreTokenizerStep(ctx, step, stepPath,
                                                        type, steps);
                         });
}

absl::Status parseBpe(const ErrorContext &ctx, const Json &value,
                      BpeModel &model) {
  if (!value.is_object())
    return ctx.error("model", "is missing or not an object");
  if (const Json *type = member(value, "type")) {
    if (!type->is_string() || type->get<std::string>() != "BPE")
      return ctx.error(
          "model.type",
          absl::StrCat("is ", describe(*type), ", only \"BPE\" is supported"));
  }
  if (const Json *dropout = member(value, "dropout")) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0)
      return ctx.error(
          "model.dropout",
          absl::StrCat("is ", describe(*dropout),
                       "; BPE dropout is not supported (null expected)"));
  }
  const Json *vocab = member(value, "vocab");
  if (!vocab || !vocab->is_object())
    return ctx.error("model.vocab", vocab
                                        ? absl::StrCat("is ", describe(*vocab),
                                                       ", expected an object")
                                        : "is missing");
  model.vocab.reserve(vocab->size());
  int32_t maxId = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const Json &value = it.value();
    int32_t id;
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() < uint64_t(std::numeric_limits<int32_t>::max())) {
      id = static_cast<int32_t>(value.get<uint64_t>());
    } else { // the error (the path is only built here: 150k entries)
      absl::StatusOr<int32_t> checked =
          readId(ctx, value, absl::StrCat("model.vocab[\"", it.key(), "\"]"));
      if (!checked.ok())
        return checked.status();
      id = *checked;
    }
    model.vocab.try_emplace(it.key(), id);
    maxId = std::max(maxId, id);
  }
  model.idToToken.assign(maxId + 1, std::string());
  model.hasId.assign(maxId + 1, 0);
  for (const auto &[token, id] : model.vocab) {
    model.idToToken[id] = token;
    model.hasId[id] = 1;
  }

  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    absl::StatusOr<std::string> text = readString(ctx, value, "model", key, "");
    if (!text.ok())
      return text.status();
    (std::strcmp(key, "continuing_subword_prefix") == 0
         ? model.continuingSubwordPrefix
         : model.endOfWordSuffix) = *text;
  }
  for (auto [key, flag] : {std::pair{"fuse_unk", &model.fuseUnk},
                           std::pair{"byte_fallback", &model.byteFallback},
                           std::pair{"ignore_merges", &model.ignoreMerges}}) {
    absl::StatusOr<bool> read = readBool(ctx, value, "model", key, false);
    if (!read.ok())
      return read.status();
    *flag = *read;
  }
  if (const Json *unk = member(value, "unk_token")) {
    if (!unk->is_string())
      return ctx.error(
          "model.unk_token",
          absl::StrCat("is ", describe(*unk), ", expected a string or null"));
    std::optional<int32_t> id = model.find(unk->get<std::string>());
    if (!id)
      return ctx.error("model.unk_token",
                       absl::StrCat("is '", unk->get<std::string>(),
                                    "', which is not in model.vocab"));
    model.unkId = id;
  }

  const Json *merges = member(value, "merges");
  if (!merges || !merges->is_array())
    return ctx.error(
        "model.merges",
        merges ? absl::StrCat("is ", describe(*merges), ", expected an array")
               : "is missing");
  model.merges.reserve(merges->size());
  size_t prefixLength = model.continuingSubwordPrefix.size();
  std::string mergedText;
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const Json &entry = (*merges)[rank];
    auto path = [rank] { return absl::StrCat("model.merges[", rank, "]"); };
    std::string_view left, right;
    if (entry.is_string()) {
      std::string_view text = entry.get_ref<const std::string &>();
      size_t space = text.find(' ');
      if (space == std::string::npos ||
          text.find(' ', space + 1) != std::string::npos)
        return ctx.error(
            path(),
            absl::StrCat("is ", describe(entry),
                         ", expected two tokens separated by one space"));
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get_ref<const std::string &>();
      right = entry[1].get_ref<const std::string &>();
    } else {
      return ctx.error(path(),
                       absl::StrCat("is ", describe(entry),
                                    ", expected \"a b\" or [\"a\", \"b\"]"));
    }
    std::optional<int32_t> leftId = model.find(left);
    std::optional<int32_t> rightId = model.find(right);
    if (!leftId || !rightId)
      return ctx.error(path(),
                       absl::StrCat("has '", toAbsl(!leftId ? left : right),
                                    "', which is not in model.vocab"));
    mergedText.assign(left);
    mergedText.append(prefixLength && right.substr(0, prefixLength) ==
                                          model.continuingSubwordPrefix
                          ? right.substr(prefixLength)
                          : right);
    std::optional<int32_t> mergedId = model.find(mergedText);
    if (!mergedId)
      return ctx.error(path(), absl::StrCat("makes '", mergedText,
                                            "', which is not in model.vocab"));
    // A repeated pair keeps its last rank, as collecting into a HashMap does.
    model.merges[pairKey(*leftId, *rightId)] =
        Merge{static_cast<int32_t>(rank), *mergedId};
  }

  model.charIds.assign(0x800, -1);
  for (char32_t c = 0; c < 0x800; ++c) {
    std::string text;
    utf8::append(text, c);
    if (std::optional<int32_t> id = model.find(text))
      model.charIds[c] = *id;
  }
  for (int byte = 0; byte < 256; ++byte) {
    std::optional<int32_t> id = model.find(absl::StrFormat("<0x%02X>", byte));
    model.byteFallbackIds[byte] = id ? *id : -1;
  }
  return absl::OkStatus();
}

/// One post-processor of type `type` (not a Sequence); a TemplateProcessing
/// appends its (prefix, suffix) ids to `templates`.
absl::Status parsePostProcessorStep(
    const ErrorContext &ctx, const Json &value, const std::string &path,
    const std::string &type,
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>
        &templates) {
  if (type == "ByteLevel")
    return absl::OkStatus(); // offsets only
  if (type != "TemplateProcessing")
    return ctx.error(childPath(path, "type"),
                     absl::StrCat("is '", type,
                                  "', which is not supported (ByteLevel, "
                                  "TemplateProcessing, Sequence)"));
  std::string singlePath = childPath(path, "single");
  const Json *single = member(value, "single");
  if (!single || !single->is_array())
    return ctx.error(singlePath, "must be an array");
  const Json *specials = member(value, "special_tokens");
  std::vector<int32_t> before, after;
  bool seenSequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json &item = (*single)[i];
    std::string itemPath = absl::StrCat(singlePath, "[", i, "]");
    if (member(item, "Sequence")) {
      if (seenSequence)
        return ctx.error(itemPath,
                         "is a second Sequence in a single-sequence template");
      seenSequence = true;
      continue;
    }
    const Json *special = member(item, "SpecialToken");
    const Json *name = special ? member(*special, "id") : nullptr;
    if (!name || !name->is_string())
      return ctx.error(
          itemPath, absl::StrCat("is ", describe(item),
                                 ", expected {\"SpecialToken\": {\"id\": ...}} "
                                 "or {\"Sequence\": ...}"));
    const Json *entry =
        specials ? member(*specials, name->get<std::string>().c_str())
                 : nullptr;
    const Json *ids = entry ? member(*entry, "ids") : nullptr;
    if (!ids || !ids->is_array())
      return ctx.error(
          childPath(path, "special_tokens"),
          absl::StrCat("has no ids for '", name->get<std::string>(), "'"));
    for (size_t k = 0; k < ids->size(); ++k) {
      absl::StatusOr<int32_t> id =
          readId(ctx, (*ids)[k],
                 absl::StrCat(childPath(path, "special_tokens"), ".",
                              name->get<std::string>(), ".ids[", k, "]"));
      if (!id.ok())
        return id.status();
      (seenSequence ? after : before).push_back(*id);
    }
  }
  if (!seenSequence)
    return ctx.error(singlePath, "has no {\"Sequence\": {\"id\": \"A\"}} item");
  templates.push_back({std::move(before), std::move(after)});
  return absl::OkStatus();
}

absl::Status parsePostProcessor(
    const ErrorContext &ctx, const Json &value, const std::string &path,
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>
        &templates) {
  return parseSequenceOr(
      ctx, value, path, "processors",
      [&](const Json &processor, const std::string &processorPath,
          const std::string &type) {
        return parsePostProcessorStep(ctx, processor, processorPath, type,
                                      templates);
      });
}

} // namespace

/// The `added_tokens` array: each token's id, content and flags go into the
/// two matchers (raw and normalized content). Returns the largest id seen.
static absl::StatusOr<int64_t> parseAddedTokens(const ErrorContext &ctx,
                                                const Json &root,
                                                Tokenizer::Impl &impl) {
  int64_t maxId = static_cast<int64_t>(impl.model.idToToken.size()) - 1;
  std::vector<AddedTokenMatcher::Entry> raw, normalizedEntries;
  if (const Json *added = member(root, "added_tokens")) {
    if (!added->is_array())
      return ctx.error("added_tokens", absl::StrCat("is ", describe(*added),
                                                    ", expected an array"));
    for (size_t i = 0; i < added->size(); ++i) {
      const Json &entry = (*added)[i];
      std::string path = absl::StrCat("added_tokens[", i, "]");
      if (!entry.is_object())
        return ctx.error(
            path, absl::StrCat("is ", describe(entry), ", expected an object"));
      const Json *idValue = member(entry, "id");
      if (!idValue)
        return ctx.error(path + ".id", "is missing");
      absl::StatusOr<int32_t> id = readId(ctx, *idValue, path + ".id");
      if (!id.ok())
        return id.status();
      absl::StatusOr<std::string> content =
          readString(ctx, entry, path, "content", std::nullopt);
      if (!content.ok())
        return content.status();
      if (content->empty())
        return ctx.error(path + ".content", "is empty");
      if (!utf8::isValid(*content))
        return ctx.error(path + ".content", "is not valid UTF-8");
      absl::StatusOr<bool> special =
          readBool(ctx, entry, path, "special", false);
      if (!special.ok())
        return special.status();
      AddedTokenFlags flags;
      for (auto [key, flag, fallback] :
           {std::tuple{"single_word", &flags.singleWord, false},
            std::tuple{"lstrip", &flags.lstrip, false},
            std::tuple{"rstrip", &flags.rstrip, false},
            std::tuple{"normalized", &flags.normalized, !*special}}) {
        absl::StatusOr<bool> read = readBool(ctx, entry, path, key, fallback);
        if (!read.ok())
          return read.status();
        *flag = *read;
      }
      if (impl.addedById.contains(*id))
        return ctx.error(path + ".id", absl::StrCat("repeats id ", *id));
      impl.addedById[*id] = impl.addedTokens.size();
      impl.addedByContent[*content] = *id;
      impl.addedTokens.push_back({*id, *content, *special});
      maxId = std::max<int64_t>(maxId, *id);
      if (flags.normalized) {
        std::string normalizedContent;
        if (!normalize(impl.normalizer, *content, normalizedContent))
          normalizedContent = *content;
        normalizedEntries.push_back({normalizedContent, *id, flags});
      } else {
        raw.push_back({*content, *id, flags});
      }
    }
  }
  impl.rawMatcher.build(std::move(raw));
  impl.normalizedMatcher.build(std::move(normalizedEntries));
  return maxId;
}

absl::StatusOr<std::unique_ptr<Tokenizer>>
Tokenizer::fromJson(std::string_view json, std::string_view name) {
  ErrorContext ctx{std::string(name)};
  absl::StatusOr<Json> parsed = parseJsonBounded(json);
  if (!parsed.ok())
    return absl::InvalidArgumentError(absl::StrCat(
        toAbsl(name), ": invalid JSON: ", parsed.status().message()));
  Json root = *std::move(parsed);
  if (!root.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(toAbsl(name), ": the file is ", describe(root),
                     ", expected a JSON object"));
  try {
    auto impl = std::make_unique<Impl>();
    for (const char *key : {"truncation", "padding"})
      if (const Json *value = member(root, key))
        return ctx.error(key, absl::StrCat("is ", describe(*value),
                                           "; only null is supported"));

    const Json *model = member(root, "model");
    if (!model)
      return ctx.error("model", "is missing");
    absl::Status status = parseBpe(ctx, *model, impl->model);
    if (!status.ok())
      return status;

    const Json null;
    auto normalizer = parseNormalizer(
        ctx, member(root, "normalizer") ? *member(root, "normalizer") : null,
        "normalizer");
    if (!normalizer.ok())
      return normalizer.status();
    impl->normalizer = std::move(*normalizer);

    status = parsePreTokenizer(
        ctx,
        member(root, "pre_tokenizer") ? *member(root, "pre_tokenizer") : null,
        "pre_tokenizer", impl->preTokenizers);
    if (!status.ok())
      return status;

    if (const Json *decoder = member(root, "decoder")) {
      absl::StatusOr<std::string> type =
          readString(ctx, *decoder, "decoder", "type", std::nullopt);
      if (!type.ok())
        return type.status();
      if (*type != "ByteLevel")
        return ctx.error(
            "decoder.type",
            absl::StrCat("is '", *type, "', only ByteLevel is supported"));
      impl->decoder = Impl::DecoderKind::ByteLevel;
    }

    TRENI_ASSIGN_OR_RETURN(int64_t maxId, parseAddedTokens(ctx, root, *impl));
    impl->vocabSize = maxId + 1;

    // Skipping is by token text, as in `tokenizers`: a vocabulary entry
    // spelled like a special token is skipped too.
    impl->addedIndexById.assign(impl->vocabSize, -1);
    for (size_t i = 0; i < impl->addedTokens.size(); ++i)
      impl->addedIndexById[impl->addedTokens[i].id] = static_cast<int32_t>(i);
    impl->specialById.assign(impl->vocabSize, 0);
    for (const AddedToken &token : impl->addedTokens) {
      if (!token.special)
        continue;
      impl->specialById[token.id] = 1;
      if (std::optional<int32_t> id = impl->model.find(token.content))
        if (!impl->addedById.contains(*id))
          impl->specialById[*id] = 1;
    }

    if (const Json *post = member(root, "post_processor")) {
      status =
          parsePostProcessor(ctx, *post, "post_processor", impl->templates);
      if (!status.ok())
        return status;
      for (const auto &[before, after] : impl->templates)
        for (const auto *ids : {&before, &after})
          for (int32_t id : *ids)
            if (!impl->tokenText(id))
              return ctx.error(
                  "post_processor",
                  absl::StrCat("adds id ", id, ", which is not a token"));
    }
    if (impl->decoder == Impl::DecoderKind::ByteLevel) {
      const BpeModel &bpe = impl->model;
      impl->decodedOffsets.reserve(bpe.idToToken.size() + 1);
      for (const std::string &token : bpe.idToToken) {
        impl->decodedOffsets.push_back(
            static_cast<uint32_t>(impl->decodedBytes.size()));
        impl->appendTokenBytes(token, impl->decodedBytes);
      }
      impl->decodedOffsets.push_back(
          static_cast<uint32_t>(impl->decodedBytes.size()));
    }
    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  } catch (const std::exception &e) {
    return absl::InternalError(absl::StrCat(
        toAbsl(name), ": unexpected error while reading: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>>
Tokenizer::fromFile(const std::string &path) {
  // Real tokenizer.json files are up to ~30 MB (large vocabularies).
  TRENI_ASSIGN_OR_RETURN(std::string text,
                         readRegularFile(path, size_t{512} << 20));
  return fromJson(text, path);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  return encode(text, /*addSpecialTokens=*/true);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addSpecialTokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  impl_->encode(text, addSpecialTokens, ids);
  return ids;
}

absl::StatusOr<std::string> Tokenizer::decode(absl::Span<const int32_t> ids,
                                              bool skipSpecialTokens) const {
  std::string bytes;
  bool first = true;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (impl_->skipped(id, skipSpecialTokens))
      continue;
    // Without a decoder `tokenizers` joins the tokens with spaces.
    if (impl_->decoder == Impl::DecoderKind::None && !first)
      bytes.push_back(' ');
    first = false;
    if (!impl_->appendIdBytes(id, bytes))
      return impl_->unknownId(id);
  }
  if (utf8::isValid(bytes))
    return bytes;
  return utf8::repair(bytes);
}

int64_t Tokenizer::vocabSize() const { return impl_->vocabSize; }

std::optional<int32_t> Tokenizer::tokenToId(std::string_view token) const {
  auto it = impl_->addedByContent.find(toAbsl(token));
  if (it != impl_->addedByContent.end())
    return it->second;
  return impl_->model.find(token);
}

std::optional<std::string> Tokenizer::idToToken(int32_t id) const {
  if (const std::string *token = impl_->tokenText(id))
    return *token;
  return std::nullopt;
}

bool Tokenizer::isSpecial(int32_t id) const { return impl_->skipped(id, true); }

const std::vector<AddedToken> &Tokenizer::addedTokens() const {
  return impl_->addedTokens;
}

//===----------------------------------------------------------------------===//
// StreamDecoder
//===----------------------------------------------------------------------===//

Tokenizer::StreamDecoder::StreamDecoder(const Tokenizer &tokenizer,
                                        bool skipSpecialTokens)
    : tokenizer_(tokenizer), skipSpecialTokens_(skipSpecialTokens) {}

absl::StatusOr<std::string> Tokenizer::StreamDecoder::push(int32_t id) {
  const Impl &impl = *tokenizer_.impl_;
  if (!impl.tokenText(id))
    return impl.unknownId(id);
  if (impl.skipped(id, skipSpecialTokens_))
    return std::string();
  if (impl.decoder == Impl::DecoderKind::None && started_)
    pending_.push_back(' ');
  started_ = true;
  impl.appendIdBytes(id, pending_);
  // Everything but an incomplete (still completable) character goes out;
  // bytes that can never become valid go out as U+FFFD now, exactly where
  // decoding everything at once would put them.
  size_t hold = utf8::incompleteTail(pending_);
  std::string_view ready(pending_.data(), pending_.size() - hold);
  std::string out =
      utf8::isValid(ready) ? std::string(ready) : utf8::repair(ready);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string Tokenizer::StreamDecoder::flush() {
  std::string out = utf8::repair(pending_);
  pending_.clear();
  return out;
}

} // namespace treni
