//===- tokenizer_fuzz.cpp - libFuzzer target for the tokenizer ------------===//
//
// Feeds arbitrary bytes to Tokenizer::encode of a real tokenizer (the file
// named by $TRENI_FUZZ_TOKENIZER, e.g. build/tokenizers/qwen2_5/tokenizer.json,
// which ctest sets) and of the committed Llama fixture tokenizer, and the same
// bytes to Tokenizer::fromJson. Besides the sanitizers it checks the
// tokenizer's promises: every id is in the vocabulary, decoding gives valid
// UTF-8 equal to the (repaired, normalized) input, the stream decoder agrees
// with decoding at once, and a rejected file always says why.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/text/tokenizer.h"
#include "support/utf8.h"
#include <utf8proc.h>

namespace {

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

struct Loaded {
  std::unique_ptr<treni::Tokenizer> tokenizer;
  bool nfc;
};

std::vector<Loaded> &tokenizers() {
  static std::vector<Loaded> loaded;
  return loaded;
}

void load(const std::string &path, bool nfc) {
  auto tokenizer = treni::Tokenizer::fromFile(path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n",
                 std::string(tokenizer.status().message()).c_str());
    std::abort();
  }
  tokenizers().push_back({std::move(*tokenizer), nfc});
}

std::string nfc(const std::string &text) {
  utf8proc_uint8_t *result = nullptr;
  utf8proc_ssize_t length = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t *>(text.data()),
      static_cast<utf8proc_ssize_t>(text.size()), &result,
      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::string out = length >= 0
                        ? std::string(reinterpret_cast<char *>(result), length)
                        : text;
  std::free(result);
  return out;
}

void checkEncode(const Loaded &loaded, std::string_view input) {
  const treni::Tokenizer &tokenizer = *loaded.tokenizer;
  std::vector<int32_t> ids =
      tokenizer.encode(input, /*addSpecialTokens=*/false);
  for (int32_t id : ids)
    check(id >= 0 && id < tokenizer.vocabSize());
  absl::StatusOr<std::string> decoded = tokenizer.decode(ids);
  check(decoded.ok());
  check(treni::utf8::isValid(*decoded));
  std::string repaired = treni::utf8::repair(input);
  check(*decoded == (loaded.nfc ? nfc(repaired) : repaired));

  treni::Tokenizer::StreamDecoder stream(tokenizer);
  std::string streamed;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> piece = stream.push(id);
    check(piece.ok() && treni::utf8::isValid(*piece));
    streamed += *piece;
  }
  streamed += stream.flush();
  check(streamed == *decoded);
}

void checkJson(std::string_view input) {
  auto tokenizer = treni::Tokenizer::fromJson(input, "fuzz.json");
  if (!tokenizer.ok()) {
    check(!tokenizer.status().message().empty());
    return;
  }
  // A file that loads must encode and decode without crashing.
  std::vector<int32_t> ids =
      (*tokenizer)->encode("Hello, world! 123 \xF0\x9F\x98\x80");
  for (int32_t id : ids)
    check(id >= 0 && id < (*tokenizer)->vocabSize());
  (void)(*tokenizer)->decode(ids, true);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  if (const char *path = std::getenv("TRENI_FUZZ_TOKENIZER"))
    load(path, /*nfc=*/true); // a Qwen tokenizer (NFC normalizer)
  load(TRENI_SOURCE_DIR "/test/fixtures/llama/tokenizer.json", /*nfc=*/false);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view input(reinterpret_cast<const char *>(data), size);
  for (const Loaded &loaded : tokenizers())
    checkEncode(loaded, input);
  checkJson(input);
  return 0;
}
