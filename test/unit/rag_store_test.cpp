//===- rag_store_test.cpp - chunking, storage and search of RagStore ------===//
//
// Tests that chunkText keeps its promises (sizes, UTF-8, preferred
// boundaries, overlap, coverage) and that RagStore stores, reloads and
// finds vectors: exact search against brute force, the HNSW path against
// the exact one, the fixed dimension and model of a collection, the
// context stopping a call, and many threads at once.
//
//===----------------------------------------------------------------------===//

#include "runtime/tools/rag_store.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sqlite3.h>
#include <thread>
#include <unistd.h>

#include "support/utf8.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

using ::testing::HasSubstr;
using testing_util::messageOf;

//===----------------------------------------------------------------------===//
// chunkText
//===----------------------------------------------------------------------===//

bool isAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

size_t offsetOf(std::string_view text, std::string_view chunk) {
  return size_t(chunk.data() - text.data());
}

/// Checks the promises every chunking keeps, whatever the text.
void expectWellFormed(std::string_view text,
                      const std::vector<std::string_view> &chunks,
                      size_t maxChars) {
  std::vector<bool> covered(text.size(), false);
  size_t previousStart = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    std::string_view chunk = chunks[i];
    ASSERT_FALSE(chunk.empty()) << "chunk " << i;
    ASSERT_GE(chunk.data(), text.data());
    size_t start = offsetOf(text, chunk);
    ASSERT_LE(start + chunk.size(), text.size());
    EXPECT_LE(chunk.size(), maxChars) << "chunk " << i;
    EXPECT_TRUE(utf8::isValid(chunk)) << "chunk " << i;
    EXPECT_FALSE(isAsciiSpace(chunk.front())) << "chunk " << i;
    EXPECT_FALSE(isAsciiSpace(chunk.back())) << "chunk " << i;
    if (i > 0) {
      EXPECT_GT(start, previousStart) << "chunk " << i;
    }
    previousStart = start;
    for (size_t j = start; j < start + chunk.size(); ++j)
      covered[j] = true;
  }
  for (size_t j = 0; j < text.size(); ++j)
    if (!isAsciiSpace(text[j])) {
      ASSERT_TRUE(covered[j]) << "byte " << j << " of the text is in no chunk";
    }
}

/// Words of 1 to 9 letters, some of them multi-byte, with sentence and
/// paragraph breaks now and then (deterministic).
std::string sampleText(size_t words, uint32_t seed) {
  static const char *const kLetters[] = {"a", "b",  "k",  "z", "é",
                                         "ß", "日", "本", "😀", "q"};
  std::mt19937 random(seed);
  std::string text;
  for (size_t w = 0; w < words; ++w) {
    size_t length = 1 + random() % 9;
    for (size_t l = 0; l < length; ++l)
      text += kLetters[random() % 10];
    uint32_t roll = random() % 20;
    text += roll == 0 ? ".\n\n" : roll < 3 ? ". " : roll == 3 ? "\t" : " ";
  }
  return text;
}

TEST(ChunkTextTest, EmptyAndWhitespaceTextHaveNoChunk) {
  EXPECT_TRUE(chunkText("", 100, 10).empty());
  EXPECT_TRUE(chunkText(" \n\t\r\n  ", 100, 10).empty());
}

TEST(ChunkTextTest, ShortTextIsOneTrimmedChunk) {
  std::vector<std::string_view> chunks = chunkText("  hello world \n", 100, 10);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0], "hello world");
}

TEST(ChunkTextTest, KeepsSizesUtf8AndCoverageOnVariedText) {
  for (uint32_t seed : {1u, 2u, 3u})
    for (auto [maxChars, overlap] : {std::pair<size_t, size_t>{16, 0},
                                     {16, 8},
                                     {40, 10},
                                     {120, 30},
                                     {1200, 200},
                                     {7, 3}}) {
      std::string text = sampleText(600, seed);
      std::vector<std::string_view> chunks = chunkText(text, maxChars, overlap);
      SCOPED_TRACE(::testing::Message() << "seed " << seed << ", maxChars "
                                        << maxChars << ", overlap " << overlap);
      ASSERT_GT(chunks.size(), 1u);
      expectWellFormed(text, chunks, maxChars);
      EXPECT_EQ(chunks, chunkText(text, maxChars, overlap)); // deterministic
    }
}

TEST(ChunkTextTest, ConsecutiveChunksOverlapAtWordStarts) {
  std::string text;
  for (int i = 0; i < 400; ++i)
    text += "word" + std::to_string(i) + " ";
  std::vector<std::string_view> chunks = chunkText(text, 100, 30);
  ASSERT_GT(chunks.size(), 5u);
  expectWellFormed(text, chunks, 100);
  for (size_t i = 1; i < chunks.size(); ++i) {
    size_t previousEnd = offsetOf(text, chunks[i - 1]) + chunks[i - 1].size();
    size_t start = offsetOf(text, chunks[i]);
    EXPECT_LT(start, previousEnd) << "chunk " << i << " does not overlap";
    EXPECT_LE(previousEnd - start, 30u) << "chunk " << i;
    EXPECT_EQ(text[start - 1], ' ') << "chunk " << i << " starts mid-word";
  }
  // Without overlap, chunks tile the words.
  std::vector<std::string_view> tiled = chunkText(text, 100, 0);
  for (size_t i = 1; i < tiled.size(); ++i)
    EXPECT_GT(offsetOf(text, tiled[i]),
              offsetOf(text, tiled[i - 1]) + tiled[i - 1].size());
}

TEST(ChunkTextTest, PrefersParagraphThenSentenceThenWhitespace) {
  // A paragraph break past half the window wins over a later sentence end.
  std::string paragraphs = std::string(60, 'a') + ".\n\n" +
                           std::string(20, 'b') + ". " + std::string(10, 'c') +
                           " " + std::string(60, 'd');
  std::vector<std::string_view> chunks = chunkText(paragraphs, 100, 0);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], std::string(60, 'a') + ".");

  // No paragraph: the last sentence end in the window.
  std::string sentences = std::string(55, 'a') + ". " + std::string(20, 'b') +
                          "? " + std::string(10, 'c') + " " +
                          std::string(60, 'd');
  chunks = chunkText(sentences, 100, 0);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0],
            std::string(55, 'a') + ". " + std::string(20, 'b') + "?");

  // A sentence end before half the window loses to whitespace.
  std::string early = std::string(10, 'a') + ". " + std::string(50, 'b') + " " +
                      std::string(30, 'c') + " " + std::string(60, 'd');
  chunks = chunkText(early, 100, 0);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], std::string(10, 'a') + ". " + std::string(50, 'b') +
                           " " + std::string(30, 'c'));

  // CJK full stops end sentences without a space.
  std::string cjk;
  for (int i = 0; i < 30; ++i)
    cjk += "日本語。";
  chunks = chunkText(cjk, 40, 0);
  ASSERT_GE(chunks.size(), 2u);
  for (std::string_view chunk : chunks)
    EXPECT_TRUE(chunk.ends_with("。")) << chunk;
}

TEST(ChunkTextTest, CutsLongWordsAtCharacterBoundaries) {
  std::string word;
  for (int i = 0; i < 50; ++i)
    word += "日😀";
  for (size_t maxChars : {4u, 5u, 9u, 10u, 33u}) {
    std::vector<std::string_view> chunks = chunkText(word, maxChars, 2);
    expectWellFormed(word, chunks, maxChars);
  }
  // Smaller than a character is taken as 4.
  std::vector<std::string_view> tiny = chunkText("😀😀", 1, 0);
  ASSERT_EQ(tiny.size(), 2u);
  EXPECT_EQ(tiny[0], "😀");
}

//===----------------------------------------------------------------------===//
// RagStore
//===----------------------------------------------------------------------===//

std::vector<float> axis(size_t dimension, size_t at, float tilt = 0) {
  std::vector<float> vector(dimension, 0.0f);
  vector[at % dimension] = 1;
  vector[(at + 1) % dimension] = tilt;
  return vector;
}

RagDocument document(std::vector<RagChunk> chunks,
                     std::string metadata = "{}") {
  return {std::move(metadata), std::move(chunks)};
}

std::shared_ptr<RagStore> openStore(const std::string &path = ":memory:",
                                    RagStoreOptions options = {}) {
  absl::StatusOr<std::shared_ptr<RagStore>> store =
      RagStore::open(path, options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *store : nullptr;
}

TEST(RagStoreTest, AddsAndFindsNearestExactly) {
  std::shared_ptr<RagStore> store = openStore();
  ASSERT_TRUE(store);
  ToolContext context;
  std::vector<RagDocument> documents;
  documents.push_back(document({{"north", axis(8, 0)}, {"east", axis(8, 1)}},
                               R"({"source":"a"})"));
  documents.push_back(document({}, R"({"source":"empty"})"));
  documents.push_back(document({{"south", axis(8, 2)}}, R"({"source":"c"})"));
  absl::StatusOr<RagAddResult> added =
      store->add("maps", "fake", std::move(documents), context);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->firstDocument, 0);
  ASSERT_EQ(added->ids.size(), 3u);

  // Not normalised on the way in: the store scales it.
  std::vector<float> query = axis(8, 2, 0.3f);
  for (float &value : query)
    value *= 7;
  absl::StatusOr<RagSearchResult> found =
      store->search("maps", query, 2, context);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->method, "exact");
  EXPECT_EQ(found->searched, 3);
  ASSERT_EQ(found->hits.size(), 2u);
  EXPECT_EQ(found->hits[0].text, "south");
  EXPECT_EQ(found->hits[0].document, 2);
  EXPECT_EQ(found->hits[0].chunk, 0);
  EXPECT_EQ(found->hits[0].id, added->ids[2]);
  EXPECT_EQ(found->hits[0].metadata, R"({"source":"c"})");
  EXPECT_NEAR(found->hits[0].score, 1 / std::sqrt(1.09f), 1e-5);
  EXPECT_GT(found->hits[0].score, found->hits[1].score);

  // A second add numbers its documents after the first's, finds them at
  // once (the loaded matrix grows) and counts them.
  std::vector<RagDocument> more;
  more.push_back(document({{"west", axis(8, 3)}}));
  added = store->add("maps", "fake", std::move(more), context);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->firstDocument, 3);
  found = store->search("maps", axis(8, 3), 1, context);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->hits.size(), 1u);
  EXPECT_EQ(found->hits[0].text, "west");
  EXPECT_EQ(found->hits[0].document, 3);
  EXPECT_EQ(found->searched, 4);

  absl::StatusOr<std::optional<RagCollectionInfo>> info =
      store->collection("maps", context);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_EQ((*info)->dimension, 8);
  EXPECT_EQ((*info)->model, "fake");
  EXPECT_EQ((*info)->documents, 4);
  EXPECT_EQ((*info)->chunks, 4);
  EXPECT_FALSE((*info)->created.empty());
}

TEST(RagStoreTest, PersistsAcrossReopen) {
  testing_util::TempDir file;
  ToolContext context;
  std::vector<int64_t> ids;
  {
    std::shared_ptr<RagStore> store = openStore((file / "rag.db"));
    ASSERT_TRUE(store);
    std::vector<RagDocument> documents;
    for (size_t i = 0; i < 5; ++i)
      documents.push_back(document({{"text " + std::to_string(i), axis(16, i)}},
                                   R"({"n":)" + std::to_string(i) + "}"));
    absl::StatusOr<RagAddResult> added =
        store->add("kept", "fake", std::move(documents), context);
    ASSERT_TRUE(added.ok()) << added.status();
    ids = added->ids;
  }
  std::shared_ptr<RagStore> store = openStore((file / "rag.db"));
  ASSERT_TRUE(store);
  absl::StatusOr<RagSearchResult> found =
      store->search("kept", axis(16, 3), 1, context);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->hits.size(), 1u);
  EXPECT_EQ(found->hits[0].text, "text 3");
  EXPECT_EQ(found->hits[0].metadata, R"({"n":3})");
  EXPECT_EQ(found->hits[0].id, ids[3]);

  // New ids continue after the old ones.
  std::vector<RagDocument> more;
  more.push_back(document({{"later", axis(16, 9)}}));
  absl::StatusOr<RagAddResult> added =
      store->add("kept", "fake", std::move(more), context);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_GT(added->ids[0], ids.back());
  EXPECT_EQ(added->firstDocument, 5);
}

TEST(RagStoreTest, RefusesAnotherDimensionOrModel) {
  std::shared_ptr<RagStore> store = openStore();
  ASSERT_TRUE(store);
  ToolContext context;
  std::vector<RagDocument> first;
  first.push_back(document({{"x", axis(8, 0)}}));
  ASSERT_TRUE(store->add("c", "model-a", std::move(first), context).ok());

  std::vector<RagDocument> wider;
  wider.push_back(document({{"y", axis(16, 0)}}));
  absl::StatusOr<RagAddResult> refused =
      store->add("c", "model-a", std::move(wider), context);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(messageOf(refused.status()),
              HasSubstr("holds 8-dimensional vectors of model 'model-a'; "
                        "this ingest has 16-dimensional vectors of model "
                        "'model-a'"));

  std::vector<RagDocument> other;
  other.push_back(document({{"y", axis(8, 0)}}));
  refused = store->add("c", "model-b", std::move(other), context);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(messageOf(refused.status()), HasSubstr("'model-a'"));
  EXPECT_THAT(messageOf(refused.status()), HasSubstr("'model-b'"));

  // Nothing of the refused adds was stored; a query of another dimension
  // is refused too.
  absl::StatusOr<std::optional<RagCollectionInfo>> info =
      store->collection("c", context);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_EQ((*info)->chunks, 1);
  absl::StatusOr<RagSearchResult> found =
      store->search("c", axis(4, 0), 1, context);
  EXPECT_EQ(found.status().code(), absl::StatusCode::kInvalidArgument);

  // Mixed dimensions within one add.
  std::vector<RagDocument> mixed;
  mixed.push_back(document({{"a", axis(8, 0)}, {"b", axis(9, 0)}}));
  EXPECT_EQ(store->add("d", "m", std::move(mixed), context).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Zero and non-finite vectors.
  std::vector<RagDocument> zero;
  zero.push_back(document({{"a", std::vector<float>(8, 0.0f)}}));
  EXPECT_EQ(store->add("d", "m", std::move(zero), context).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<RagDocument> nan;
  nan.push_back(document({{"a", {1.0f, std::nanf("")}}}));
  EXPECT_EQ(store->add("d", "m", std::move(nan), context).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RagStoreTest, ChecksNamesAndK) {
  std::shared_ptr<RagStore> store = openStore();
  ASSERT_TRUE(store);
  ToolContext context;
  for (std::string bad :
       {std::string(), std::string("a b"), std::string("../etc"),
        std::string("x;DROP"), std::string(65, 'a'), std::string("é")}) {
    absl::Status status = validateRagCollectionName(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    std::vector<RagDocument> documents;
    documents.push_back(document({{"x", axis(4, 0)}}));
    EXPECT_EQ(
        store->add(bad, "m", std::move(documents), context).status().code(),
        absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_TRUE(validateRagCollectionName(std::string(64, 'a')).ok());
  EXPECT_TRUE(validateRagCollectionName("Docs_v1.2-final").ok());

  std::vector<RagDocument> documents;
  documents.push_back(document({{"x", axis(4, 0)}}));
  ASSERT_TRUE(store->add("c", "m", std::move(documents), context).ok());
  for (int64_t k : {int64_t(0), int64_t(-1), kRagMaxK + 1})
    EXPECT_EQ(store->search("c", axis(4, 0), k, context).status().code(),
              absl::StatusCode::kInvalidArgument)
        << k;
  absl::StatusOr<RagSearchResult> missing =
      store->search("nope", axis(4, 0), 1, context);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(missing.status()), HasSubstr("'nope'"));

  std::vector<RagDocument> tooMany(kRagMaxTexts + 1);
  EXPECT_EQ(store->add("c", "m", std::move(tooMany), context).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<RagDocument> bigMetadata;
  bigMetadata.push_back(
      document({{"x", axis(4, 0)}},
               R"({"a":")" + std::string(kRagMaxMetadataBytes, 'x') + R"("})"));
  EXPECT_EQ(
      store->add("c", "m", std::move(bigMetadata), context).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(RagStoreTest, ListsAndDeletesCollections) {
  std::shared_ptr<RagStore> store = openStore();
  ASSERT_TRUE(store);
  ToolContext context;
  for (std::string name : {"b", "a"}) {
    std::vector<RagDocument> documents;
    documents.push_back(document({{name, axis(4, 0)}}));
    ASSERT_TRUE(store->add(name, "m", std::move(documents), context).ok());
  }
  ASSERT_TRUE(store->search("a", axis(4, 0), 1, context).ok()); // loaded
  absl::StatusOr<std::vector<RagCollectionInfo>> all =
      store->collections(context);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "a");
  EXPECT_EQ((*all)[1].name, "b");

  ASSERT_TRUE(store->deleteCollection("a", context).ok());
  EXPECT_EQ(store->deleteCollection("a", context).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->search("a", axis(4, 0), 1, context).status().code(),
            absl::StatusCode::kNotFound);
  // A new collection of the same name starts afresh (another dimension).
  std::vector<RagDocument> documents;
  documents.push_back(document({{"again", axis(6, 0)}}));
  ASSERT_TRUE(store->add("a", "m2", std::move(documents), context).ok());
  absl::StatusOr<RagSearchResult> found =
      store->search("a", axis(6, 0), 5, context);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->hits.size(), 1u);
  EXPECT_EQ(found->hits[0].text, "again");
}

TEST(RagStoreTest, StoppedContextStoresNothing) {
  std::shared_ptr<RagStore> store = openStore();
  ASSERT_TRUE(store);
  ToolContext cancelled;
  cancelled.cancel->cancel();
  std::vector<RagDocument> documents;
  documents.push_back(document({{"x", axis(4, 0)}}));
  absl::StatusOr<RagAddResult> added =
      store->add("c", "m", std::move(documents), cancelled);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kCancelled);

  ToolContext late;
  late.deadline = ToolClock::now() - std::chrono::seconds(1);
  std::vector<RagDocument> again;
  again.push_back(document({{"x", axis(4, 0)}}));
  added = store->add("c", "m", std::move(again), late);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kDeadlineExceeded);

  ToolContext context;
  absl::StatusOr<std::optional<RagCollectionInfo>> info =
      store->collection("c", context);
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->has_value());
}

/// `count` random unit vectors of `dimension` (deterministic).
std::vector<std::vector<float>> randomVectors(size_t count, size_t dimension,
                                              uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> vectors(count, std::vector<float>(dimension));
  for (std::vector<float> &vector : vectors) {
    double sum = 0;
    for (float &value : vector) {
      value = normal(random);
      sum += value * value;
    }
    for (float &value : vector)
      value = float(value / std::sqrt(sum));
  }
  return vectors;
}

void addVectors(RagStore &store, const std::string &collection,
                const std::vector<std::vector<float>> &vectors, size_t first,
                size_t count) {
  ToolContext context;
  std::vector<RagDocument> documents;
  for (size_t i = first; i < first + count; ++i) {
    if (documents.size() == kRagMaxTexts) {
      ASSERT_TRUE(
          store.add(collection, "m", std::move(documents), context).ok());
      documents.clear();
    }
    documents.push_back(document({{std::to_string(i), vectors[i]}}));
  }
  if (!documents.empty()) {
    ASSERT_TRUE(store.add(collection, "m", std::move(documents), context).ok());
  }
}

/// `vector` with a little noise, so the nearest stored vector is clear.
std::vector<float> nearby(const std::vector<float> &vector, uint32_t seed) {
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> moved = vector;
  for (float &value : moved)
    value += normal(random);
  return moved;
}

TEST(RagStoreTest, HnswFindsWhatExactFinds) {
  constexpr size_t kCount = 3000, kDimension = 32;
  std::vector<std::vector<float>> vectors =
      randomVectors(kCount, kDimension, 7);
  std::shared_ptr<RagStore> exact = openStore();
  RagStoreOptions options;
  options.exactLimit = 100;
  options.hnswBuildBatch = 500;
  std::shared_ptr<RagStore> approximate = openStore(":memory:", options);
  ASSERT_TRUE(exact && approximate);
  addVectors(*exact, "v", vectors, 0, kCount - 100);
  addVectors(*approximate, "v", vectors, 0, kCount - 100);

  ToolContext context;
  auto compare = [&](size_t target, const std::string &method) {
    std::vector<float> query = nearby(vectors[target], uint32_t(target));
    absl::StatusOr<RagSearchResult> a = exact->search("v", query, 5, context);
    absl::StatusOr<RagSearchResult> b =
        approximate->search("v", query, 5, context);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " " << b.status();
    EXPECT_EQ(a->method, "exact");
    EXPECT_EQ(b->method, method);
    ASSERT_FALSE(a->hits.empty());
    ASSERT_FALSE(b->hits.empty());
    EXPECT_EQ(a->hits[0].text, std::to_string(target));
    EXPECT_EQ(b->hits[0].text, std::to_string(target));
    EXPECT_NEAR(a->hits[0].score, b->hits[0].score, 1e-5);
    EXPECT_EQ(a->searched, b->searched);
  };
  for (size_t target : {0u, 17u, 999u, 2899u})
    compare(target, "hnsw");
  // What later adds bring goes into the graph on the next search.
  addVectors(*exact, "v", vectors, kCount - 100, 100);
  addVectors(*approximate, "v", vectors, kCount - 100, 100);
  for (size_t target : {2950u, 5u})
    compare(target, "hnsw");
}

TEST(RagStoreTest, HnswBuildStopsAtHalfTheTimeLeftAndSearchesTheRest) {
  // One vector per batch and 0.5 s to build: far from all of them, so the
  // search merges the graph's top k with an exact pass over the rest.
  constexpr size_t kCount = 60000, kDimension = 32;
  std::vector<std::vector<float>> vectors =
      randomVectors(kCount, kDimension, 11);
  RagStoreOptions options;
  options.exactLimit = 10;
  options.hnswBuildBatch = 1;
  std::shared_ptr<RagStore> store = openStore(":memory:", options);
  ASSERT_TRUE(store);
  addVectors(*store, "v", vectors, 0, kCount);
  ToolContext context;
  context.deadline = ToolClock::now() + std::chrono::seconds(1);
  size_t target = kCount - 3; // surely not in the graph yet
  absl::StatusOr<RagSearchResult> found =
      store->search("v", nearby(vectors[target], 3), 3, context);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->method, "hnsw+exact");
  EXPECT_EQ(found->searched, int64_t(kCount));
  ASSERT_FALSE(found->hits.empty());
  EXPECT_EQ(found->hits[0].text, std::to_string(target));
  EXPECT_LT(ToolClock::now(), context.deadline);
}

TEST(RagStoreTest, ManyThreadsIngestAndSearchAtOnce) {
  testing_util::TempDir file;
  RagStoreOptions options;
  options.exactLimit = 40; // the shared collection crosses into HNSW
  std::shared_ptr<RagStore> store = openStore((file / "rag.db"), options);
  ASSERT_TRUE(store);
  constexpr int kThreads = 6, kRounds = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      ToolContext context;
      for (int round = 0; round < kRounds; ++round) {
        std::string own = "own" + std::to_string(t);
        for (const std::string &name : {own, std::string("shared")}) {
          std::vector<RagDocument> documents;
          documents.push_back(
              document({{name + " " + std::to_string(round),
                         axis(16, size_t(t * kRounds + round))}}));
          if (!store->add(name, "m", std::move(documents), context).ok())
            ++failures;
          absl::StatusOr<RagSearchResult> found =
              store->search(name, axis(16, size_t(t)), 3, context);
          if (!found.ok() || found->hits.empty())
            ++failures;
        }
        if (!store->collections(context).ok())
          ++failures;
      }
    });
  for (std::thread &thread : threads)
    thread.join();
  EXPECT_EQ(failures.load(), 0);
  ToolContext context;
  absl::StatusOr<std::optional<RagCollectionInfo>> shared =
      store->collection("shared", context);
  ASSERT_TRUE(shared.ok() && *shared);
  EXPECT_EQ((*shared)->chunks, kThreads * kRounds);
  absl::StatusOr<RagSearchResult> found =
      store->search("shared", axis(16, 0), 1, context);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->searched, kThreads * kRounds);
  EXPECT_EQ(found->method, "hnsw");
}

TEST(RagStoreTest, RefusesANewerSchema) {
  testing_util::TempDir file;
  ASSERT_TRUE(openStore((file / "rag.db")));
  {
    std::shared_ptr<RagStore> store = openStore((file / "rag.db"));
    ASSERT_TRUE(store);
  }
  // Bump the version behind the store's back.
  sqlite3 *db = nullptr;
  ASSERT_EQ(sqlite3_open((file / "rag.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  absl::StatusOr<std::shared_ptr<RagStore>> store =
      RagStore::open((file / "rag.db"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(messageOf(store.status()), HasSubstr("schema version 99"));
}

} // namespace
} // namespace treni
