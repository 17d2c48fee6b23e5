//===- tokenizer_test.cpp - tokenizer.json parity with HF tokenizers
//-------===//
//
// Parity: every case of test/tokenizers/corpus.jsonl (and one large document
// built from them) through the four real tokenizers (build/tokenizers, from
// test/tokenizers/fetch.sh) against test/tokenizers/expected.json, which
// test/tokenizers/make_expected.py records with Python `tokenizers`: ids,
// decode and decode with skip_special_tokens, all identical. A missing
// expected.json or tokenizer file is a failure, not a skip.
//
// Also: round trips, the stream decoder, special tokens, errors on broken
// files and unknown ids, and the fixture models' tokenizers.
//
//===----------------------------------------------------------------------===//

#include "runtime/text/tokenizer.h"
#include "support/sha256.h"

#include <array>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "support/utf8.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <nlohmann/json.hpp>
#include <utf8proc.h>

namespace treni {
namespace {

using ::testing::HasSubstr;
using testing_util::messageOf;
using Json = nlohmann::json;

const std::vector<std::string> kTokenizerNames = {"qwen2_5", "qwen3", "llama3",
                                                  "llama3_2"};

std::string readFile(const std::string &path, bool &ok) {
  std::ifstream file(path, std::ios::binary);
  ok = bool(file);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string tokenizerPath(const std::string &name) {
  return std::string(TRENI_TOKENIZERS_DIR) + "/" + name + "/tokenizer.json";
}

// The large document's digests use sha256Hex (support/sha256.h).
TEST(Sha256, KnownDigests) {
  EXPECT_EQ(sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256Hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

//===----------------------------------------------------------------------===//
// Corpus and goldens
//===----------------------------------------------------------------------===//

struct Case {
  std::string name;
  std::string input; ///< what encode() gets: the text, or the raw bytes
  std::string text;  ///< what Python encodes: input after 'replace' decoding
  bool raw = false;
};

std::string fromHex(const std::string &hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(char(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

const std::vector<Case> &corpus() {
  static const std::vector<Case> cases = [] {
    std::vector<Case> result;
    bool ok = false;
    std::string data = readFile(
        std::string(TRENI_SOURCE_DIR) + "/test/tokenizers/corpus.jsonl", ok);
    std::istringstream lines(data);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos)
        continue;
      Json entry = Json::parse(line);
      Case c;
      c.name = entry.at("name").get<std::string>();
      if (entry.contains("hex")) {
        c.input = fromHex(entry.at("hex").get<std::string>());
        c.text = utf8::repair(c.input);
        c.raw = true;
      } else {
        c.input = c.text = entry.at("text").get<std::string>();
      }
      result.push_back(std::move(c));
    }
    return result;
  }();
  return cases;
}

/// make_expected.py's large_document(): all case texts joined by a blank
/// line, repeated until >= min_bytes.
std::string largeDocument(size_t minBytes) {
  std::vector<std::string> texts;
  for (const Case &c : corpus())
    texts.push_back(c.text);
  std::string unit = absl::StrJoin(texts, "\n\n");
  size_t repeats =
      std::max<size_t>(1, (minBytes + unit.size() - 1) / unit.size());
  std::vector<std::string> parts(repeats, unit);
  return absl::StrJoin(parts, "\n\n");
}

std::string expectedPath() {
  // A development override (e.g. goldens from another implementation).
  if (const char *path = std::getenv("TRENI_TOKENIZER_EXPECTED"))
    return path;
  return std::string(TRENI_SOURCE_DIR) + "/test/tokenizers/expected.json";
}

const Json &expected() {
  static const Json goldens = [] {
    bool ok = false;
    std::string text = readFile(expectedPath(), ok);
    if (!ok)
      return Json();
    return Json::parse(text, nullptr, /*allow_exceptions=*/false);
  }();
  return goldens;
}

/// The loaded real tokenizers, one load per process.
const Tokenizer *realTokenizer(const std::string &name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto it = loaded.find(name);
  if (it != loaded.end())
    return it->second.get();
  auto tokenizer = Tokenizer::fromFile(tokenizerPath(name));
  EXPECT_TRUE(tokenizer.ok())
      << tokenizer.status()
      << " (run: bash test/tokenizers/fetch.sh build/tokenizers)";
  if (!tokenizer.ok())
    return nullptr;
  return (loaded[name] = std::move(*tokenizer)).get();
}

std::string idsText(absl::Span<const int32_t> ids) {
  return absl::StrJoin(ids, ",");
}

class TokenizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, CorpusIdsAndDecodeMatchTokenizers) {
  const Json &goldens = expected();
  ASSERT_TRUE(goldens.is_object())
      << expectedPath() << " is missing or not JSON: produce it with "
      << "python3 test/tokenizers/make_expected.py build/tokenizers "
         "test/tokenizers/expected.json (needs Python tokenizers)";
  bool ok = false;
  std::string corpusText = readFile(
      std::string(TRENI_SOURCE_DIR) + "/test/tokenizers/corpus.jsonl", ok);
  ASSERT_EQ(goldens.at("corpus_sha256").get<std::string>(),
            sha256Hex(corpusText))
      << "corpus.jsonl changed since expected.json was made: re-run "
         "make_expected.py";
  const Json &golden = goldens.at("tokenizers").at(GetParam());
  std::string fileText = readFile(tokenizerPath(GetParam()), ok);
  ASSERT_TRUE(ok)
      << tokenizerPath(GetParam())
      << " is missing: run bash test/tokenizers/fetch.sh build/tokenizers";
  ASSERT_EQ(golden.at("tokenizer_json_sha256").get<std::string>(),
            sha256Hex(fileText))
      << "the fetched tokenizer.json differs from the one expected.json was "
         "made with";
  const Tokenizer *tokenizer = realTokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);

  const Json &cases = golden.at("cases");
  ASSERT_EQ(cases.size(), corpus().size());
  int failures = 0;
  for (const Case &c : corpus()) {
    SCOPED_TRACE(c.name);
    const Json &want = cases.at(c.name);
    std::vector<int32_t> wantIds = want.at("ids").get<std::vector<int32_t>>();
    std::vector<int32_t> ids = tokenizer->encode(c.input);
    EXPECT_EQ(idsText(ids), idsText(wantIds));
    absl::StatusOr<std::string> decoded = tokenizer->decode(wantIds, false);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, want.at("decoded").get<std::string>());
    absl::StatusOr<std::string> decodedSkip = tokenizer->decode(wantIds, true);
    ASSERT_TRUE(decodedSkip.ok()) << decodedSkip.status();
    EXPECT_EQ(*decodedSkip, want.at("decoded_skip").get<std::string>());
    failures += ids != wantIds || *decoded != want.at("decoded") ||
                *decodedSkip != want.at("decoded_skip");
  }
  EXPECT_EQ(failures, 0) << "cases differing from tokenizers "
                         << goldens.at("tokenizers_version");
}

TEST_P(TokenizerParity, LargeDocumentMatchesTokenizers) {
  const Json &goldens = expected();
  ASSERT_TRUE(goldens.is_object())
      << expectedPath() << " is missing or not JSON";
  const Json &large = goldens.at("large");
  std::string document = largeDocument(large.at("min_bytes").get<size_t>());
  ASSERT_EQ(document.size(), large.at("bytes").get<size_t>());
  ASSERT_EQ(sha256Hex(document), large.at("text_sha256").get<std::string>())
      << "the large document is not built as make_expected.py builds it";
  const Tokenizer *tokenizer = realTokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const Json &want = goldens.at("tokenizers").at(GetParam()).at("large");
  std::vector<int32_t> ids = tokenizer->encode(document);
  EXPECT_EQ(ids.size(), want.at("count").get<size_t>());
  EXPECT_EQ(sha256Hex(idsText(ids)), want.at("ids_sha256").get<std::string>());
  absl::StatusOr<std::string> decoded = tokenizer->decode(ids, false);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(sha256Hex(*decoded), want.at("decoded_sha256").get<std::string>());
  absl::StatusOr<std::string> decodedSkip = tokenizer->decode(ids, true);
  ASSERT_TRUE(decodedSkip.ok()) << decodedSkip.status();
  EXPECT_EQ(sha256Hex(*decodedSkip),
            want.at("decoded_skip_sha256").get<std::string>());
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

TEST_P(TokenizerParity, RoundTripGivesTheNormalizedText) {
  const Tokenizer *tokenizer = realTokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  // Qwen normalizes to NFC; Llama 3 has no normalizer.
  bool normalizes = GetParam().rfind("qwen", 0) == 0;
  for (const Case &c : corpus()) {
    SCOPED_TRACE(c.name);
    std::vector<int32_t> ids =
        tokenizer->encode(c.input, /*addSpecialTokens=*/false);
    absl::StatusOr<std::string> decoded = tokenizer->decode(ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, normalizes ? nfc(c.text) : c.text);
  }
}

TEST_P(TokenizerParity, StreamDecodingEqualsDecodingAtOnce) {
  const Tokenizer *tokenizer = realTokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  for (bool skip : {false, true}) {
    for (const Case &c : corpus()) {
      SCOPED_TRACE(c.name);
      std::vector<int32_t> ids = tokenizer->encode(c.input);
      Tokenizer::StreamDecoder stream(*tokenizer, skip);
      std::string streamed;
      for (int32_t id : ids) {
        absl::StatusOr<std::string> piece = stream.push(id);
        ASSERT_TRUE(piece.ok()) << piece.status();
        // Every piece handed out is complete UTF-8 on its own.
        EXPECT_TRUE(utf8::isValid(*piece)) << *piece;
        streamed += *piece;
      }
      streamed += stream.flush();
      absl::StatusOr<std::string> atOnce = tokenizer->decode(ids, skip);
      ASSERT_TRUE(atOnce.ok());
      EXPECT_EQ(streamed, *atOnce);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Real, TokenizerParity,
                         ::testing::ValuesIn(kTokenizerNames),
                         [](const auto &info) { return info.param; });

//===----------------------------------------------------------------------===//
// Behaviour on the real files
//===----------------------------------------------------------------------===//

TEST(Tokenizer, StreamHoldsSplitCharactersUntilComplete) {
  const Tokenizer *tokenizer = realTokenizer("qwen3");
  ASSERT_NE(tokenizer, nullptr);
  // Rare characters are spelled with several byte tokens; in the ZWJ
  // family the joiner U+200D is split too.
  for (std::string text :
       {"🦜", "龘", "𠜎", "𪚥", "👨‍👩‍👧‍👦", "ok 🦜龘!"}) {
    SCOPED_TRACE(text);
    std::vector<int32_t> ids = tokenizer->encode(text);
    ASSERT_GT(ids.size(), 1u) << "needs a character split across tokens";
    Tokenizer::StreamDecoder stream(*tokenizer);
    std::string streamed;
    int held = 0;
    for (int32_t id : ids) {
      absl::StatusOr<std::string> piece = stream.push(id);
      ASSERT_TRUE(piece.ok());
      EXPECT_TRUE(utf8::isValid(*piece));
      held += piece->empty();
      streamed += *piece;
    }
    EXPECT_GT(held, 0) << "some bytes of a character were held back";
    EXPECT_EQ(streamed, text);
    EXPECT_EQ(stream.flush(), "");
  }
}

TEST(Tokenizer, StreamFlushReplacesAnIncompleteTail) {
  const Tokenizer *tokenizer = realTokenizer("qwen2_5");
  ASSERT_NE(tokenizer, nullptr);
  std::vector<int32_t> ids = tokenizer->encode("ok 🦜");
  ASSERT_GT(ids.size(), 2u);
  Tokenizer::StreamDecoder stream(*tokenizer);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i)
    out += *stream.push(ids[i]);
  EXPECT_EQ(out, "ok ");
  EXPECT_EQ(stream.flush(), std::string(utf8::kReplacement));
  absl::StatusOr<std::string> truncated =
      tokenizer->decode(absl::MakeConstSpan(ids).subspan(0, ids.size() - 1));
  ASSERT_TRUE(truncated.ok());
  EXPECT_EQ(*truncated, "ok " + std::string(utf8::kReplacement));
}

TEST(Tokenizer, SpecialTokensAreMatchedFirstAndNeverSplit) {
  const Tokenizer *qwen = realTokenizer("qwen3");
  ASSERT_NE(qwen, nullptr);
  std::optional<int32_t> imStart = qwen->tokenToId("<|im_start|>");
  std::optional<int32_t> imEnd = qwen->tokenToId("<|im_end|>");
  std::optional<int32_t> think = qwen->tokenToId("<think>");
  ASSERT_TRUE(imStart && imEnd && think);
  EXPECT_EQ(*imStart, 151644);
  EXPECT_TRUE(qwen->isSpecial(*imStart));
  EXPECT_FALSE(qwen->isSpecial(*think))
      << "<think> is an added, non-special token";
  EXPECT_EQ(qwen->idToToken(*imEnd), "<|im_end|>");

  std::vector<int32_t> ids = qwen->encode("x<|im_start|>user<|im_end|><think>");
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(ids[1], *imStart);
  EXPECT_EQ(ids[ids.size() - 2], *imEnd);
  EXPECT_EQ(ids.back(), *think);
  EXPECT_EQ(*qwen->decode(ids, true), "xuser<think>");

  // A prefix of a special token is ordinary text.
  for (int32_t id : qwen->encode("<|im_ <|im_end"))
    EXPECT_FALSE(qwen->isSpecial(id));

  const Tokenizer *llama = realTokenizer("llama3_2");
  ASSERT_NE(llama, nullptr);
  std::optional<int32_t> bos = llama->tokenToId("<|begin_of_text|>");
  ASSERT_TRUE(bos);
  EXPECT_EQ(*bos, 128000);
  std::vector<int32_t> withBos = llama->encode("Hello");
  std::vector<int32_t> without =
      llama->encode("Hello", /*addSpecialTokens=*/false);
  ASSERT_EQ(withBos.size(), without.size() + 1);
  EXPECT_EQ(withBos.front(), *bos);
  EXPECT_NE(without.front(), *bos);
  EXPECT_EQ(llama->vocabSize(), 128256);
  EXPECT_EQ(llama->addedTokens().size(), 256u);
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  // One tokenizer shared by threads (the server's case): the word cache is
  // shared, results must not depend on interleaving.
  const Tokenizer *tokenizer = realTokenizer("llama3_2");
  ASSERT_NE(tokenizer, nullptr);
  std::vector<std::vector<int32_t>> want;
  for (const Case &c : corpus())
    want.push_back(tokenizer->encode(c.input));
  auto fresh = Tokenizer::fromFile(tokenizerPath("llama3_2"));
  ASSERT_TRUE(fresh.ok());
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round)
        for (size_t i = 0; i < corpus().size(); ++i) {
          size_t index = (i * (t + 1) + round) % corpus().size();
          mismatches[t] +=
              (*fresh)->encode(corpus()[index].input) != want[index];
        }
    });
  for (std::thread &thread : threads)
    thread.join();
  for (int count : mismatches)
    EXPECT_EQ(count, 0);
}

TEST(Tokenizer, UnknownIdsAreErrors) {
  const Tokenizer *tokenizer = realTokenizer("qwen2_5");
  ASSERT_NE(tokenizer, nullptr);
  for (int32_t id :
       {int32_t(tokenizer->vocabSize()), int32_t(1 << 30), int32_t(-1)}) {
    absl::StatusOr<std::string> decoded = tokenizer->decode({1, id});
    ASSERT_FALSE(decoded.ok());
    EXPECT_THAT(messageOf(decoded.status()),
                HasSubstr(absl::StrCat("unknown token id ", id)));
    Tokenizer::StreamDecoder stream(*tokenizer);
    EXPECT_FALSE(stream.push(id).ok());
    EXPECT_FALSE(tokenizer->idToToken(id).has_value());
  }
}

//===----------------------------------------------------------------------===//
// Errors on broken files
//===----------------------------------------------------------------------===//

/// A small well-formed byte-level tokenizer.json; `edit` breaks one part.
std::string miniTokenizer(const std::function<void(Json &)> &edit = nullptr) {
  Json root = Json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 5, "content": "<|end|>", "single_word": false,
                      "lstrip": false, "rstrip": false, "normalized": false,
                      "special": true}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, "behavior": "Isolated",
       "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
       "use_regex": false}]},
    "post_processor": {"type": "ByteLevel"},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": null, "unk_token": null,
              "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "abab": 4},
              "merges": ["a b", ["ab", "ab"]]}
  })");
  if (edit)
    edit(root);
  return root.dump();
}

TEST(TokenizerErrors, MiniTokenizerWorks) {
  auto tokenizer = Tokenizer::fromJson(miniTokenizer());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->encode("abab ab<|end|>"),
            (std::vector<int32_t>{4, 3, 2, 5}));
  EXPECT_EQ((*tokenizer)->vocabSize(), 6);
}

TEST(TokenizerErrors, BrokenFilesNameTheField) {
  struct BrokenCase {
    const char *what;
    std::function<void(Json &)> edit;
    const char *message;
  };
  std::vector<BrokenCase> cases = {
      {"no vocab", [](Json &j) { j["model"].erase("vocab"); },
       "'model.vocab' is missing"},
      {"vocab id not a number",
       [](Json &j) { j["model"]["vocab"]["a"] = "zero"; },
       "model.vocab[\"a\"]"},
      {"merge of unknown token",
       [](Json &j) { j["model"]["merges"][1] = "ab zz"; },
       "'model.merges[1]' has 'zz'"},
      {"merge without a space", [](Json &j) { j["model"]["merges"][0] = "ab"; },
       "'model.merges[0]'"},
      {"merge result unknown", [](Json &j) { j["model"]["merges"][1] = "b a"; },
       "'model.merges[1]' makes 'ba'"},
      {"unsupported model", [](Json &j) { j["model"]["type"] = "WordPiece"; },
       "'model.type'"},
      {"unsupported pre-tokenizer",
       [](Json &j) {
         j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace";
       },
       "'pre_tokenizer.pretokenizers[0].type' is 'Whitespace'"},
      {"bad regex",
       [](Json &j) {
         j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a";
       },
       "'pre_tokenizer.pretokenizers[0].pattern.Regex'"},
      {"bad behavior",
       [](Json &j) {
         j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
       },
       "'pre_tokenizer.pretokenizers[0].behavior' is 'Sideways'"},
      {"unsupported normalizer",
       [](Json &j) { j["normalizer"]["type"] = "Lowercase"; },
       "'normalizer.type' is 'Lowercase'"},
      {"unsupported decoder",
       [](Json &j) { j["decoder"]["type"] = "WordPiece"; },
       "'decoder.type' is 'WordPiece'"},
      {"added token id", [](Json &j) { j["added_tokens"][0]["id"] = -4; },
       "'added_tokens[0].id'"},
      {"added token content",
       [](Json &j) { j["added_tokens"][0].erase("content"); },
       "'added_tokens[0].content' is missing"},
      {"truncation",
       [](Json &j) {
         j["truncation"] = {{"max_length", 8}};
       },
       "'truncation'"},
      {"template with unknown special",
       [](Json &j) {
         j["post_processor"] = Json::parse(R"({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {}})");
       },
       "has no ids for '<s>'"},
  };
  for (const BrokenCase &c : cases) {
    SCOPED_TRACE(c.what);
    auto tokenizer = Tokenizer::fromJson(miniTokenizer(c.edit), "mini.json");
    ASSERT_FALSE(tokenizer.ok());
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(messageOf(tokenizer.status()), HasSubstr("mini.json: "));
    EXPECT_THAT(messageOf(tokenizer.status()), HasSubstr(c.message));
  }
}

TEST(TokenizerErrors, TruncatedAndCorruptFiles) {
  std::string good = miniTokenizer();
  for (size_t length :
       {size_t(0), size_t(1), good.size() / 2, good.size() - 1}) {
    auto tokenizer = Tokenizer::fromJson(good.substr(0, length), "cut.json");
    ASSERT_FALSE(tokenizer.ok());
    EXPECT_THAT(messageOf(tokenizer.status()),
                HasSubstr("cut.json: invalid JSON"));
  }
  // Deep nesting is an error found before parsing, not a stack overflow
  // (and it bounds the recursion through nested Sequences below too).
  std::string deep = "{\"model\": " + std::string(200000, '[') +
                     std::string(200000, ']') + "}";
  auto nested = Tokenizer::fromJson(deep, "deep.json");
  ASSERT_FALSE(nested.ok());
  EXPECT_THAT(messageOf(nested.status()),
              HasSubstr("deep.json: invalid JSON: JSON nests deeper than 64"));

  Json sequence = {{"type", "NFC"}};
  for (int i = 0; i < 1000; ++i)
    sequence = {{"type", "Sequence"}, {"normalizers", Json::array({sequence})}};
  auto deepSequence = Tokenizer::fromJson(
      miniTokenizer([&](Json &j) { j["normalizer"] = sequence; }), "seq.json");
  ASSERT_FALSE(deepSequence.ok());
  EXPECT_THAT(messageOf(deepSequence.status()),
              HasSubstr("seq.json: invalid JSON: JSON nests deeper than 64"));

  auto manySteps = Tokenizer::fromJson(miniTokenizer([](Json &j) {
    Json &list = j["pre_tokenizer"]["pretokenizers"];
    while (list.size() < 100000)
      list.push_back(list[0]);
  }));
  ASSERT_FALSE(manySteps.ok());
  EXPECT_THAT(messageOf(manySteps.status()),
              HasSubstr("one pre-tokenizer too many"));

  // Two ByteLevel steps would double the text twice (at 18 steps encode
  // took seconds and megabytes for 20 bytes): a load error naming the step.
  auto twoByteLevels = Tokenizer::fromJson(miniTokenizer([](Json &j) {
    Json &list = j["pre_tokenizer"]["pretokenizers"];
    list.push_back(list[1]);
  }));
  ASSERT_FALSE(twoByteLevels.ok());
  EXPECT_THAT(messageOf(twoByteLevels.status()),
              HasSubstr("'pre_tokenizer.pretokenizers[2]' is a second "
                        "ByteLevel pre-tokenizer"));

  auto notObject = Tokenizer::fromJson("[1, 2]", "list.json");
  ASSERT_FALSE(notObject.ok());
  EXPECT_THAT(messageOf(notObject.status()),
              HasSubstr("expected a JSON object"));
  std::string invalidUtf8 = good;
  invalidUtf8[invalidUtf8.find("abab")] = '\xff';
  EXPECT_FALSE(Tokenizer::fromJson(invalidUtf8).ok());

  auto missing = Tokenizer::fromFile("/nonexistent/tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(missing.status()),
              HasSubstr("/nonexistent/tokenizer.json"));

  // The real file, cut short.
  bool ok = false;
  std::string real = readFile(tokenizerPath("qwen2_5"), ok);
  ASSERT_TRUE(ok) << "run bash test/tokenizers/fetch.sh build/tokenizers";
  auto cut = Tokenizer::fromJson(
      std::string_view(real).substr(0, real.size() * 3 / 4));
  ASSERT_FALSE(cut.ok());
  EXPECT_THAT(messageOf(cut.status()), HasSubstr("invalid JSON"));
}

//===----------------------------------------------------------------------===//
// Model features the four real files do not use
//===----------------------------------------------------------------------===//

TEST(TokenizerFeatures, AddedTokenStripAndSingleWordFlags) {
  auto tokenizer = Tokenizer::fromJson(miniTokenizer([](Json &j) {
    j["added_tokens"] = Json::parse(R"([
      {"id": 5, "content": "<x>", "lstrip": true, "rstrip": true, "special": true,
       "normalized": false, "single_word": false},
      {"id": 6, "content": "ab", "single_word": true, "special": false,
       "normalized": false, "lstrip": false, "rstrip": false}])");
  }));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // lstrip/rstrip take the surrounding spaces into the token.
  EXPECT_EQ((*tokenizer)->encode("a  <x>  b"), (std::vector<int32_t>{0, 5, 1}));
  // single_word: "ab" alone is the added token, inside "abab" it is not.
  EXPECT_EQ((*tokenizer)->encode("ab"), (std::vector<int32_t>{6}));
  EXPECT_EQ((*tokenizer)->encode("abab"), (std::vector<int32_t>{4}));
}

TEST(TokenizerFeatures, ByteFallbackAndUnknownTokens) {
  auto withFallback = Tokenizer::fromJson(miniTokenizer([](Json &j) {
    j["pre_tokenizer"] = nullptr;
    j["decoder"] = nullptr;
    j["model"]["byte_fallback"] = true;
    j["model"]["vocab"]["<0xC3>"] = 10;
    j["model"]["vocab"]["<0xA9>"] = 11;
  }));
  ASSERT_TRUE(withFallback.ok()) << withFallback.status();
  EXPECT_EQ((*withFallback)->encode("é"), (std::vector<int32_t>{10, 11}));
  // "ü" has no byte tokens and there is no unk token: it is dropped.
  EXPECT_EQ((*withFallback)->encode("aü"), (std::vector<int32_t>{0}));

  auto withUnk = Tokenizer::fromJson(miniTokenizer([](Json &j) {
    j["pre_tokenizer"] = nullptr;
    j["model"]["vocab"]["<unk>"] = 12;
    j["model"]["unk_token"] = "<unk>";
    j["model"]["fuse_unk"] = true;
  }));
  ASSERT_TRUE(withUnk.ok()) << withUnk.status();
  EXPECT_EQ((*withUnk)->encode("a€€b"), (std::vector<int32_t>{0, 12, 1}));
}

TEST(TokenizerFeatures, IgnoreMergesTakesWholeVocabularyWords) {
  // "abab" is in the vocabulary; with no "ab ab" merge BPE alone gives ab ab.
  auto edit = [](bool ignoreMerges) {
    return [ignoreMerges](Json &j) {
      j["model"]["merges"] = Json::array({"a b"});
      j["model"]["ignore_merges"] = ignoreMerges;
    };
  };
  auto plain = Tokenizer::fromJson(miniTokenizer(edit(false)));
  auto ignoring = Tokenizer::fromJson(miniTokenizer(edit(true)));
  ASSERT_TRUE(plain.ok() && ignoring.ok());
  EXPECT_EQ((*plain)->encode("abab"), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ((*ignoring)->encode("abab"), (std::vector<int32_t>{4}));
}

/// Textbook BPE: merge the lowest-ranked adjacent pair, leftmost first,
/// until no pair has a rank.
std::vector<std::string>
naiveBpe(const std::string &word,
         const std::map<std::pair<std::string, std::string>, size_t> &ranks) {
  std::vector<std::string> symbols;
  for (char c : word)
    symbols.push_back(std::string(1, c));
  while (symbols.size() > 1) {
    size_t best = 0, bestRank = SIZE_MAX;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = ranks.find({symbols[i], symbols[i + 1]});
      if (it != ranks.end() && it->second < bestRank) {
        best = i;
        bestRank = it->second;
      }
    }
    if (bestRank == SIZE_MAX)
      break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  return symbols;
}

TEST(TokenizerFeatures, LongAndShortWordsMergeLikeTextbookBpe) {
  // Words of up to 64 symbols and longer ones take different merge loops;
  // both must agree with the textbook algorithm on the real merges.
  bool ok = false;
  Json file = Json::parse(readFile(tokenizerPath("qwen2_5"), ok));
  ASSERT_TRUE(ok);
  std::map<std::pair<std::string, std::string>, size_t> ranks;
  const Json &merges = file["model"]["merges"];
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    std::string merge = merges[rank].get<std::string>();
    size_t space = merge.find(' ');
    ranks.emplace(std::pair{merge.substr(0, space), merge.substr(space + 1)},
                  rank);
  }
  const Json &vocab = file["model"]["vocab"];
  const Tokenizer *tokenizer = realTokenizer("qwen2_5");
  ASSERT_NE(tokenizer, nullptr);
  uint64_t state = 12345;
  std::vector<std::string> words = {
      std::string(300, 'a'), "Pneumonoultramicroscopicsilicovolcanoconiosis"};
  for (int length : {5, 17, 63, 64, 65, 66, 120, 400}) {
    std::string word;
    for (int i = 0; i < length; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      word.push_back(char('a' + (state >> 33) % 26));
    }
    words.push_back(word);
  }
  for (const std::string &word : words) {
    SCOPED_TRACE(word);
    std::vector<int32_t> want;
    for (const std::string &symbol : naiveBpe(word, ranks))
      want.push_back(vocab.at(symbol).get<int32_t>());
    EXPECT_EQ(tokenizer->encode(word), want);
  }
}

//===----------------------------------------------------------------------===//
// UTF-8 repair
//===----------------------------------------------------------------------===//

TEST(Utf8, RepairReplacesMaximalSubparts) {
  // Expected values from Python: bytes.fromhex(h).decode('utf-8', 'replace').
  const std::string r(utf8::kReplacement);
  EXPECT_EQ(utf8::repair("\xC3"), r);
  EXPECT_EQ(utf8::repair("\xE2\x82"), r);
  EXPECT_EQ(utf8::repair("\xE2\x82\x41"), r + "A");
  EXPECT_EQ(utf8::repair("\xF0\x9F\x98"), r);
  EXPECT_EQ(utf8::repair("\xC0\xAF"), r + r);
  EXPECT_EQ(utf8::repair("\xE0\x80\xAF"), r + r + r);
  EXPECT_EQ(utf8::repair("\xED\xA0\x80"), r + r + r);
  EXPECT_EQ(utf8::repair("\xF4\x90\x80\x80"), r + r + r + r);
  EXPECT_EQ(utf8::repair("\x80\xBF"), r + r);
  EXPECT_EQ(utf8::repair("\xFF"), r);
  EXPECT_EQ(utf8::repair("a\xF1\x80\x80z"), "a" + r + "z");
  EXPECT_EQ(utf8::repair("\xF4\x8F\xBF\xBF"), "\xF4\x8F\xBF\xBF");
  EXPECT_EQ(utf8::incompleteTail("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8::incompleteTail("a\xE2"), 1u);
  EXPECT_EQ(utf8::incompleteTail("a\xE0\x80"), 0u) << "can never complete";
  EXPECT_EQ(utf8::incompleteTail("a\xC3\xA9"), 0u);
}

TEST(Utf8, KnownNfcIsNeverWrong) {
  // Every character it accepts is unchanged by NFC, and no pair that NFC
  // composes is accepted.
  for (char32_t c = 0x80; c < 0x30000; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF)
      continue;
    std::string text;
    utf8::append(text, c);
    std::string name = absl::StrCat("U+", absl::Hex(uint32_t(c)));
    if (utf8::isKnownNfc(text)) {
      ASSERT_EQ(nfc(text), text) << name;
    }
    // c's canonical decomposition, recomposed, must not be accepted unless
    // it is c itself.
    utf8proc_int32_t parts[8];
    int boundClass = 0;
    utf8proc_ssize_t length =
        utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), parts, 8,
                                UTF8PROC_DECOMPOSE, &boundClass);
    if (length > 1) {
      std::string decomposed;
      for (utf8proc_ssize_t i = 0; i < length; ++i)
        utf8::append(decomposed, char32_t(parts[i]));
      if (nfc(decomposed) != decomposed) {
        ASSERT_FALSE(utf8::isKnownNfc(decomposed)) << name;
      }
    }
  }
}

TEST(Tokenizer, SegmentedNfcMatchesWholeStringNfc) {
  // The fixture Qwen tokenizer normalizes to NFC segment by segment; random
  // strings over characters that compose, reorder or decompose must come
  // out as utf8proc's NFC of the whole string.
  auto tokenizer = Tokenizer::fromFile(testing_util::fixtureDir("qwen3") +
                                       "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<std::string> alphabet = {
      "a",      "e",      " ",      "A",      "\u00e9",     "\u0301",
      "\u0323", "\u0307", "\u0308", "\u212b", "\u2126",     "\u1100",
      "\u1161", "\u11a8", "\uac00", "\u304b", "\u3099",     "\u30cf",
      "\u309a", "\u0915", "\u093c", "\u0958", "\u0cbf",     "\u0cd5",
      "\u0f73", "\u0344", "\uf900", "\u4e00", "\U0001d15e", "\U0001d165",
      "\u0b47", "\u0b3e", "\u00c5", "q",      "\u0327",     "\u2000"};
  uint64_t state = 7;
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    int length = 1 + round % 12;
    for (int i = 0; i < length; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      text += alphabet[(state >> 33) % alphabet.size()];
    }
    std::vector<int32_t> ids = (*tokenizer)->encode(text, false);
    absl::StatusOr<std::string> decoded = (*tokenizer)->decode(ids);
    ASSERT_TRUE(decoded.ok());
    ASSERT_EQ(*decoded, nfc(text)) << "round " << round;
  }
}

//===----------------------------------------------------------------------===//
// Fixture models' tokenizers (test/fixtures/make_tokenizer.py)
//===----------------------------------------------------------------------===//

class FixtureTokenizer : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureTokenizer, LoadsAndRoundTrips) {
  std::string dir = testing_util::fixtureDir(GetParam());
  auto tokenizer = Tokenizer::fromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  bool ok = false;
  Json config = Json::parse(readFile(dir + "/config.json", ok));
  ASSERT_TRUE(ok);
  EXPECT_LE((*tokenizer)->vocabSize(), config.at("vocab_size").get<int64_t>());

  bool isLlama = GetParam() == "llama";
  std::vector<std::string> specials =
      isLlama ? std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>",
                                         "<|start_header_id|>",
                                         "<|end_header_id|>", "<|eot_id|>"}
              : std::vector<std::string>{"<|endoftext|>", "<|im_start|>",
                                         "<|im_end|>",    "<tool_call>",
                                         "</tool_call>",  "<think>",
                                         "</think>"};
  for (const std::string &special : specials) {
    std::optional<int32_t> id = (*tokenizer)->tokenToId(special);
    ASSERT_TRUE(id) << special;
    EXPECT_EQ((*tokenizer)->encode(special, false), std::vector<int32_t>{*id});
  }
  for (const Case &c : corpus()) {
    SCOPED_TRACE(c.name);
    std::vector<int32_t> ids = (*tokenizer)->encode(c.input, false);
    for (int32_t id : ids)
      ASSERT_LT(id, config.at("vocab_size").get<int64_t>());
    absl::StatusOr<std::string> decoded = (*tokenizer)->decode(ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, isLlama ? c.text : nfc(c.text));
  }
  // Trained on English: common words take fewer tokens than bytes.
  std::string english = "the model reads the text and writes the answer";
  EXPECT_LT((*tokenizer)->encode(english, false).size(), english.size() / 2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTokenizer,
                         ::testing::Values("qwen2", "qwen3", "llama"),
                         [](const auto &info) { return info.param; });

} // namespace
} // namespace treni
