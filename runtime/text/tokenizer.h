//===- tokenizer.h - Hugging Face tokenizer.json (byte-level BPE) -*- C++
//-*-===//
//
// Reads a `tokenizer.json` and encodes/decodes exactly as the Hugging Face
// `tokenizers` library does for byte-level BPE models (Qwen2/2.5/3, Llama 3):
// NFC normalization when the file asks for it, the pre-tokenizer split regex
// (PCRE2), byte-level mapping, BPE merges by rank, added and special tokens
// matched before everything else and never split, byte fallback when the
// model asks for it. Invalid UTF-8 input is replaced by U+FFFD the way
// Python's `bytes.decode('utf-8', 'replace')` does (maximal subparts).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace treni {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
};

class Tokenizer {
public:
  /// Parses `path` (a tokenizer.json). Errors name the file and the field.
  static absl::StatusOr<std::unique_ptr<Tokenizer>>
  fromFile(const std::string &path);
  /// Same, from the file's text (`name` is used in error messages).
  static absl::StatusOr<std::unique_ptr<Tokenizer>>
  fromJson(std::string_view json, std::string_view name = "tokenizer.json");
  ~Tokenizer();

  /// Token ids for `text`, as `tokenizers`' encode(text).ids (the file's
  /// post-processor included). Never fails: invalid UTF-8 becomes U+FFFD.
  std::vector<int32_t> encode(std::string_view text) const;
  /// Same; `addSpecialTokens` false skips the post-processor's special tokens
  /// (`add_special_tokens=False`: text rendered by a chat template already
  /// holds them).
  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecialTokens) const;
  /// Text for `ids`, as `tokenizers`' decode(ids, skip_special_tokens=...).
  /// Unknown ids are an error naming the id.
  absl::StatusOr<std::string> decode(absl::Span<const int32_t> ids,
                                     bool skipSpecialTokens = false) const;

  int64_t vocabSize() const; ///< largest id + 1 (added tokens included)
  std::optional<int32_t> tokenToId(std::string_view token) const;
  std::optional<std::string> idToToken(int32_t id) const;
  bool isSpecial(int32_t id) const;
  const std::vector<AddedToken> &addedTokens() const;

  /// Incremental detokenizer for streaming: feed ids one at a time and get
  /// back only complete UTF-8 text; bytes of a character split across tokens
  /// are held until the character is complete (flush() gives what is left,
  /// invalid tails as U+FFFD).
  class StreamDecoder {
  public:
    explicit StreamDecoder(const Tokenizer &tokenizer,
                           bool skipSpecialTokens = false);
    absl::StatusOr<std::string> push(int32_t id);
    std::string flush();

  private:
    const Tokenizer &tokenizer_;
    bool skipSpecialTokens_;
    std::string pending_;
    bool started_ = false; ///< a token went out (no-decoder space joining)
  };

  struct Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

} // namespace treni
