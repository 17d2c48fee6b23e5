//===- cpu_kernels_test.cpp - reference kernels on hand-checked cases ----===//

#include <cmath>
#include <numbers>

#include "runtime/exec/cpu_kernels.h"
#include "runtime/exec/step_inputs.h"
#include "gtest/gtest.h"

namespace treni::cpu {
namespace {

TEST(CpuKernelsTest, RmsNormPerRowAndPerGroup) {
  // Row [3, 4]: mean square 12.5 -> scale 1/sqrt(12.5).
  std::vector<float> x = {3, 4, 1, 1};
  std::vector<float> w = {1, 2};
  std::vector<float> out(4);
  rmsNorm(x.data(), 2, 2, w.data(), 2, 0.0, out.data());
  EXPECT_NEAR(out[0], 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[1], 8 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[2], 1, 1e-6);
  EXPECT_NEAR(out[3], 2, 1e-6);
  // Groups of 1 (per-head norm with head_dim 1): every element -> sign * w.
  std::vector<float> g = {0.5f};
  rmsNorm(x.data(), 1, 4, g.data(), 1, 0.0, out.data());
  for (float v : out)
    EXPECT_NEAR(v, 0.5, 1e-6);
}

// Tests Qwen3.5's unit_offset norm, x̂ * (1 + w), by hand: row [2, 2] has
// mean square 4, so x̂ = [1, 1] and the result is 1 + w, where the plain norm
// gives w; the rms_norm step reads the flag from its constants.
TEST(CpuKernelsTest, RmsNormUnitOffset) {
  std::vector<float> x = {2, 2, 3, 4};
  std::vector<float> w = {0.5f, -0.25f};
  std::vector<float> out(4);
  rmsNorm(x.data(), 2, 2, w.data(), 2, 0.0, out.data());
  EXPECT_NEAR(out[0], 0.5, 1e-7);
  EXPECT_NEAR(out[1], -0.25, 1e-7);
  rmsNorm(x.data(), 2, 2, w.data(), 2, 0.0, out.data(), /*unitOffset=*/true);
  EXPECT_NEAR(out[0], 1.5, 1e-7);
  EXPECT_NEAR(out[1], 0.75, 1e-7);
  EXPECT_NEAR(out[2], 3 / std::sqrt(12.5) * 1.5, 1e-6);
  EXPECT_NEAR(out[3], 4 / std::sqrt(12.5) * 0.75, 1e-6);

  PlanStep step;
  step.templateName = "rms_norm";
  step.constants = {{"dim", int64_t(2)},
                    {"group", int64_t(2)},
                    {"epsilon", 1e-30},
                    {"unit_offset", true}};
  std::vector<float> stepOut(4);
  StepArgs args{step, {x.data(), w.data()}, {2, 2}, {stepOut.data()}};
  ASSERT_TRUE(findStepKernel("rms_norm")(args).ok());
  EXPECT_NEAR(stepOut[0], 1.5, 1e-6);
  EXPECT_NEAR(stepOut[1], 0.75, 1e-6);
  step.constants.erase("unit_offset"); // absent: the plain norm
  ASSERT_TRUE(findStepKernel("rms_norm")(args).ok());
  EXPECT_NEAR(stepOut[0], 0.5, 1e-6);
  EXPECT_NEAR(stepOut[1], -0.25, 1e-6);
}

TEST(CpuKernelsTest, GemmUsesOutInLayoutAndBias) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6}; // 2 x 3
  std::vector<float> w = {1, 0, 0, 0, 1, 1}; // 2 x 3 ([n, k])
  std::vector<float> bias = {10, 20};
  std::vector<float> out(4);
  gemm(x.data(), 2, 3, w.data(), 2, bias.data(), out.data());
  EXPECT_EQ(out, (std::vector<float>{11, 25, 14, 31}));
  gemm(x.data(), 2, 3, w.data(), 2, nullptr, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 5, 4, 11}));
}

TEST(CpuKernelsTest, RopeRotatesHalvesByPositionTimesFrequency) {
  auto invFreq = ropeInverseFrequencies(4, 100.0, std::nullopt);
  ASSERT_EQ(invFreq.size(), 2u);
  EXPECT_FLOAT_EQ(invFreq[0], 1.0f);
  EXPECT_FLOAT_EQ(invFreq[1], 0.1f);
  std::vector<float> x = {1, 0, 0, 1}; // pairs (x0, x2) and (x1, x3)
  int32_t position = 3;
  std::vector<float> out(4);
  rope(x.data(), 1, 4, 4, &position, invFreq, out.data());
  EXPECT_NEAR(out[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(out[2], std::sin(3.0), 1e-6);
  EXPECT_NEAR(out[1], -std::sin(0.3), 1e-6);
  EXPECT_NEAR(out[3], std::cos(0.3), 1e-6);
  // Position 0 is the identity.
  position = 0;
  rope(x.data(), 1, 4, 4, &position, invFreq, out.data());
  EXPECT_EQ(out, x);
}

// Tests partial RoPE (Qwen3.5's rotary_dim): with head_dim 6 and
// rotary_dim 4 the pairs are (0, 2) and (1, 3), at angles p * theta^(-2j/4)
// (j = 0, 1: 1 and 1/10 for theta 100), and elements 4 and 5 of every head
// pass through. Both heads of the row, through the rope step.
TEST(CpuKernelsTest, PartialRopeRotatesRotaryDimAndKeepsTheTail) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6};
  int32_t position = 2;
  PlanStep step;
  step.templateName = "rope";
  step.constants = {{"dim", int64_t(12)},
                    {"head_dim", int64_t(6)},
                    {"rotary_dim", int64_t(4)},
                    {"theta", 100.0}};
  std::vector<float> out(12, 0.0f);
  StepArgs args{step,
                {x.data(), reinterpret_cast<const float *>(&position)},
                {1, 1},
                {out.data()}};
  ASSERT_TRUE(findStepKernel("rope")(args).ok());
  for (int head = 0; head < 2; ++head) {
    const float *in = x.data() + head * 6;
    const float *o = out.data() + head * 6;
    for (int j = 0; j < 2; ++j) {
      double angle = 2 * std::pow(100.0, -2.0 * j / 4);
      double c = std::cos(angle), s = std::sin(angle);
      EXPECT_NEAR(o[j], in[j] * c - in[j + 2] * s, 1e-5) << head << j;
      EXPECT_NEAR(o[j + 2], in[j + 2] * c + in[j] * s, 1e-5) << head << j;
    }
    EXPECT_EQ(o[4], in[4]) << head;
    EXPECT_EQ(o[5], in[5]) << head;
  }
  // In place, the tail is left as it was too.
  std::vector<float> inPlace = x;
  StepArgs inPlaceArgs{
      step,
      {inPlace.data(), reinterpret_cast<const float *>(&position)},
      {1, 1},
      {inPlace.data()}};
  ASSERT_TRUE(findStepKernel("rope")(inPlaceArgs).ok());
  EXPECT_EQ(inPlace, out);
  // A rotary_dim the verifier would refuse is an error, not a wild read.
  step.constants["rotary_dim"] = int64_t(8);
  EXPECT_FALSE(findStepKernel("rope")(args).ok());
}

TEST(CpuKernelsTest, Llama3ScalingHitsAllThreeBands) {
  Llama3Scaling scaling{32.0, 1.0, 4.0, 8192};
  int64_t headDim = 16;
  auto base = ropeInverseFrequencies(headDim, 500000.0, std::nullopt);
  auto scaled = ropeInverseFrequencies(headDim, 500000.0, scaling);
  int high = 0, medium = 0, low = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    double wavelen = 2 * std::numbers::pi / base[i];
    if (wavelen < 8192 / 4.0) {
      EXPECT_FLOAT_EQ(scaled[i], base[i]); // high frequency: untouched
      ++high;
    } else if (wavelen > 8192 / 1.0) {
      EXPECT_FLOAT_EQ(scaled[i], base[i] / 32); // low frequency: divided
      ++low;
    } else {
      double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(scaled[i], (1 - smooth) * base[i] / 32 + smooth * base[i],
                  1e-9);
      EXPECT_LT(scaled[i], base[i]);
      EXPECT_GT(scaled[i], base[i] / 32);
      ++medium;
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
  EXPECT_GT(low, 0);
}

TEST(CpuKernelsTest, AttentionIsCausalAndGroupsQueryHeads) {
  // 2 query heads share 1 KV head of dim 1; cache rows hold keys 0 and 1.
  std::vector<float> keys = {0, 1}, values = {10, 20};
  std::vector<float> query = {1, 1, 1, 1}; // two rows, two heads
  std::vector<int32_t> positions = {0, 1};
  std::vector<float> out(4);
  attention(query.data(), 2, 2, 1, 1, positions.data(), keys.data(),
            values.data(), KvPages{}, 1.0, out.data());
  // Row 0 sees only position 0.
  EXPECT_FLOAT_EQ(out[0], 10);
  EXPECT_FLOAT_EQ(out[1], 10);
  // Row 1: softmax([0, 1]) . [10, 20].
  double p1 = std::exp(1.0) / (1 + std::exp(1.0));
  EXPECT_NEAR(out[2], 10 * (1 - p1) + 20 * p1, 1e-5);
  EXPECT_FLOAT_EQ(out[2], out[3]);
}

TEST(CpuKernelsTest, CacheWriteLandsAtPositions) {
  std::vector<float> k = {1, 2, 3, 4}, v = {5, 6, 7, 8};
  std::vector<float> keyCache(8, 0), valueCache(8, 0);
  std::vector<int32_t> positions = {3, 1};
  cacheWrite(k.data(), v.data(), 2, 2, positions.data(), keyCache.data(),
             valueCache.data(), KvPages{});
  EXPECT_EQ(keyCache, (std::vector<float>{0, 0, 3, 4, 0, 0, 1, 2}));
  EXPECT_EQ(valueCache, (std::vector<float>{0, 0, 7, 8, 0, 0, 5, 6}));
}

TEST(CpuKernelsTest, KvPagesMapPositionsThroughEachRowsTable) {
  // Row 0's table is {5, 2}, rows 1 and 2 share {7}; blocks of 4 rows.
  std::vector<int32_t> tables = {5, 2, 7}, offsets = {0, 2, 2};
  KvPages pages{4, tables.data(), offsets.data()};
  EXPECT_TRUE(pages.paged());
  EXPECT_EQ(pages.cacheRow(0, 0), 20);
  EXPECT_EQ(pages.cacheRow(0, 3), 23);
  EXPECT_EQ(pages.cacheRow(0, 5), 9);
  EXPECT_EQ(pages.cacheRow(1, 2), 30);
  EXPECT_EQ(pages.cacheRow(2, 3), 31);
  // The null view is the contiguous cache.
  EXPECT_FALSE(KvPages{}.paged());
  EXPECT_EQ(KvPages{}.cacheRow(2, 13), 13);
}

TEST(CpuKernelsTest, PagedCacheWriteLandsInTheTablesBlocks) {
  // Blocks of 2 rows of dim 1; rows 0 and 1 are positions 1 and 2 of one
  // sequence (table {3, 0}), row 2 is position 0 of another (table {2}).
  std::vector<float> k = {1, 2, 3}, v = {4, 5, 6};
  std::vector<int32_t> positions = {1, 2, 0};
  std::vector<int32_t> tables = {3, 0, 2}, offsets = {0, 0, 2};
  KvPages pages{2, tables.data(), offsets.data()};
  std::vector<float> keyCache(8, 0), valueCache(8, 0);
  cacheWrite(k.data(), v.data(), 3, 1, positions.data(), keyCache.data(),
             valueCache.data(), pages);
  EXPECT_EQ(keyCache, (std::vector<float>{2, 0, 0, 0, 3, 0, 0, 1}));
  EXPECT_EQ(valueCache, (std::vector<float>{5, 0, 0, 0, 6, 0, 0, 4}));
}

TEST(CpuKernelsTest, PagedAttentionReadsEachRowsOwnSequence) {
  // One head of dim 1, blocks of 2 rows. Both rows are position 1: row 0 of
  // a sequence in block 1 (cache rows 2, 3), row 1 of one in block 0.
  std::vector<float> keys = {0, 5, 0, 1}, values = {10, 20, 30, 40};
  std::vector<float> query = {1, 1};
  std::vector<int32_t> positions = {1, 1};
  std::vector<int32_t> tables = {1, 0}, offsets = {0, 1};
  KvPages pages{2, tables.data(), offsets.data()};
  std::vector<float> out(2);
  attention(query.data(), 2, 1, 1, 1, positions.data(), keys.data(),
            values.data(), pages, 1.0, out.data());
  // softmax([0, 1]) . [30, 40] and softmax([0, 5]) . [10, 20].
  double p1 = std::exp(1.0) / (1 + std::exp(1.0));
  double p5 = std::exp(5.0) / (1 + std::exp(5.0));
  EXPECT_NEAR(out[0], 30 * (1 - p1) + 40 * p1, 1e-5);
  EXPECT_NEAR(out[1], 10 * (1 - p5) + 20 * p5, 1e-5);
}

TEST(CpuKernelsTest, PagedSeq1PartialsEqualTheContiguousOnes) {
  // The same 10 positions, contiguous and on blocks {3, 0, 2, 1} of 3 rows:
  // the partials of every split agree bit for bit.
  const int64_t heads = 4, kvHeads = 2, headDim = 4, length = 10;
  const int64_t kvDim = kvHeads * headDim, blockTokens = 3;
  std::vector<int32_t> table = {3, 0, 2, 1}, offsets = {0};
  KvPages pages{blockTokens, table.data(), offsets.data()};
  std::vector<float> keys(length * kvDim), values(length * kvDim);
  std::vector<float> pagedKeys(12 * kvDim), pagedValues(12 * kvDim);
  for (int64_t t = 0; t < length; ++t)
    for (int64_t i = 0; i < kvDim; ++i) {
      keys[t * kvDim + i] = float((t * 7 + i * 3) % 11) / 5 - 1;
      values[t * kvDim + i] = float((t * 5 + i) % 13) / 4;
      pagedKeys[pages.cacheRow(0, t) * kvDim + i] = keys[t * kvDim + i];
      pagedValues[pages.cacheRow(0, t) * kvDim + i] = values[t * kvDim + i];
    }
  std::vector<float> query(heads * headDim);
  for (size_t i = 0; i < query.size(); ++i)
    query[i] = float(i % 5) / 3;
  const int64_t splits = 3;
  std::vector<float> expected(heads * splits * (headDim + 2)),
      actual(expected.size());
  const int32_t position = int32_t(length - 1);
  attentionSeq1Partial(query.data(), 1, heads, kvHeads, headDim, &position,
                       keys.data(), values.data(), KvPages{}, 0.5, splits,
                       expected.data());
  attentionSeq1Partial(query.data(), 1, heads, kvHeads, headDim, &position,
                       pagedKeys.data(), pagedValues.data(), pages, 0.5, splits,
                       actual.data());
  EXPECT_EQ(actual, expected);
}

// Split-KV attention over rows of different sequences (each its own table
// and position, as @step's rows) equals the generic attention of the same
// rows, to the merge's rounding.
TEST(CpuKernelsTest, Seq1AttentionRowsOfSeveralSequences) {
  const int64_t heads = 4, kvHeads = 2, headDim = 8, blockTokens = 4;
  const int64_t kvDim = kvHeads * headDim, numBlocks = 9;
  // Row 0: sequence A at position 9 (blocks 5, 1, 7); rows 1-2: sequence B
  // at positions 2 and 3 (block 0); row 3: sequence C at 0 (block 8).
  std::vector<int32_t> tables = {5, 1, 7, 0, 8}, offsets = {0, 3, 3, 4};
  std::vector<int32_t> positions = {9, 2, 3, 0};
  KvPages pages{blockTokens, tables.data(), offsets.data()};
  std::vector<float> keys(numBlocks * blockTokens * kvDim), values(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = float((i * 7) % 11) / 5 - 1;
    values[i] = float((i * 5) % 13) / 4 - 1;
  }
  const int64_t rows = int64_t(positions.size());
  std::vector<float> query(rows * heads * headDim);
  for (size_t i = 0; i < query.size(); ++i)
    query[i] = float(i % 9) / 4 - 1;
  for (int64_t splits : {1, 2, 5}) {
    std::vector<float> expected(query.size()), actual(query.size());
    attention(query.data(), rows, heads, kvHeads, headDim, positions.data(),
              keys.data(), values.data(), pages, 0.3, expected.data());
    std::vector<float> partials(rows * heads * splits * (headDim + 2));
    attentionSeq1Partial(query.data(), rows, heads, kvHeads, headDim,
                         positions.data(), keys.data(), values.data(), pages,
                         0.3, splits, partials.data());
    attentionSeq1Reduce(partials.data(), rows, heads, headDim, splits,
                        actual.data());
    for (size_t i = 0; i < actual.size(); ++i)
      EXPECT_NEAR(actual[i], expected[i], 1e-5) << "splits " << splits;
  }
}

TEST(CpuKernelsTest, CheckKvPagesNamesTheBadRow) {
  // Row 0 has table {1, 0}, rows 1 and 2 share {3}; a pool of 4 blocks of 2.
  std::vector<int32_t> tables = {1, 0, 3}, offsets = {0, 2, 2};
  std::vector<int32_t> sizes = {2, 1, 1};
  KvPages pages{2, tables.data(), offsets.data()};
  EXPECT_TRUE(checkKvPages(pages, 3, {3, 0, 1}, sizes, 4).ok());
  absl::Status past = checkKvPages(pages, 3, {3, 0, 2}, sizes, 4);
  EXPECT_EQ(past.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(past.message(), "step row 2: position 2 is outside its block "
                            "table (1 blocks of 2 positions)");
  absl::Status pool = checkKvPages(pages, 3, {3, 0, 1}, sizes, 3);
  EXPECT_EQ(pool.message(), "step row 1: block 3 (entry 0 of its table) is "
                            "outside the KV pool of 3 blocks");
  std::vector<int32_t> longer = {2, 2, 1};
  absl::Status outside = checkKvPages(pages, 3, {3, 0, 1}, longer, 4);
  EXPECT_EQ(outside.message(), "step row 1: its block table (2 ids from 2) "
                               "lies outside the step's 3 block-table ids");
  EXPECT_EQ(checkKvPages(pages, 3, {3, -1, 1}, sizes, 4).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(checkKvPages(KvPages{}, 0, {0}, {{1}}, 4).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CpuKernelsTest, FlashChunkTilesCoverEachChunkRowOnceWithinItsRun) {
  // Two sampled rows (a decode row, a chunk's last row), then the other rows
  // of two chunks: 5 rows of table 4 at positions 10.., 3 of table 9 at 0..
  std::vector<int32_t> offsets = {0, 4, 4, 4, 4, 4, 4, 9, 9, 9};
  std::vector<int32_t> positions = {7, 15, 10, 11, 12, 13, 14, 0, 1, 2};
  const int64_t group = 3, blockM = 8;
  std::vector<int32_t> tiles =
      flashChunkTiles(offsets, positions, 2, group, blockM);
  ASSERT_EQ(tiles.size() % 3, 0u);
  // 5 * 3 = 15 vectors: tiles of 8 and 7; 3 * 3 = 9: tiles of 8 and 1.
  ASSERT_EQ(tiles.size(), 12u);
  std::vector<int> seen(offsets.size() * group, 0);
  int previousLast = 1 << 30;
  for (size_t t = 0; t < tiles.size(); t += 3) {
    int row = tiles[t], rows = tiles[t + 1], first = tiles[t + 2];
    ASSERT_GE(row, 2);
    ASSERT_EQ(first % blockM, 0);
    ASSERT_LT(first, rows * group);
    for (int r = row; r < row + rows; ++r)
      EXPECT_EQ(offsets[r], offsets[row]) << "a run mixes two tables";
    int end = std::min<int>(first + blockM, rows * group);
    for (int v = first; v < end; ++v)
      ++seen[(row + v / group) * group + v % group];
    int last = positions[row + (end - 1) / group];
    EXPECT_LE(last, previousLast) << "tiles with later keys come first";
    previousLast = last;
  }
  for (size_t v = 0; v < seen.size(); ++v)
    EXPECT_EQ(seen[v], v < 2 * group ? 0 : 1) << "vector " << v;
  EXPECT_EQ(tiles[0], 2); // the run at positions 10..14 ends later
  EXPECT_EQ(tiles[2], 8); // and its second tile holds position 14
  EXPECT_TRUE(flashChunkTiles(offsets, positions, 10, group, blockM).empty());
}

TEST(CpuKernelsTest, Elementwise) {
  std::vector<float> a = {0, 1, -2}, b = {2, 3, 4}, out(3);
  silu(a.data(), 3, out.data());
  EXPECT_FLOAT_EQ(out[0], 0);
  EXPECT_NEAR(out[1], 1 / (1 + std::exp(-1.0)), 1e-7);
  EXPECT_NEAR(out[2], -2 / (1 + std::exp(2.0)), 1e-7);
  mul(a.data(), b.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{0, 3, -8}));
  add(a.data(), b.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{2, 4, 2}));
}

} // namespace
} // namespace treni::cpu
