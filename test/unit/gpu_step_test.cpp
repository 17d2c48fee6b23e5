//===- gpu_step_test.cpp - @step on the GPU against the one-sequence path -===//
//
// Tests the GPU step runner (@step over a paged KV pool, rows of several
// sequences in one launch sequence) against the same engine's
// single-sequence prefill/decode on the fixtures: six sequences whose prompts
// cross block boundaries, their blocks scattered over the pool, are prefilled
// in whole and split chunks mixed with other sequences' decode rows, and
// every sampled row's logits must match the single-sequence logits of the
// same position (to the activation dtype's rounding: the step's GEMMs run
// over all rows where the single path uses matvecs) and pick the same token
// unless the reference's top two are closer than that; the GPU sampler draws
// what sampleCpu draws from those logits. Skips without a GPU.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "frontends/safetensors/safetensors.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/batch/scheduler.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/exec/gpu_executor.h"
#include "runtime/exec/gpu_step_runner.h"
#include "runtime/exec/step_inputs.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;

constexpr int64_t kMaxSeq = 256;
constexpr int kDecodes = 2; // decode steps per sequence after its prompt

int32_t argmax(absl::Span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) -
                 logits.begin());
}

/// The distance between the largest and second-largest logit.
float topTwoMargin(absl::Span<const float> logits) {
  std::vector<float> copy(logits.begin(), logits.end());
  std::partial_sort(copy.begin(), copy.begin() + 2, copy.end(),
                    std::greater<float>());
  return copy[0] - copy[1];
}

struct Sequence {
  std::vector<int32_t> prompt;
  std::vector<int32_t> blocks;
  /// Reference: logits after the prompt and after each decode step, and the
  /// greedy tokens they pick.
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

/// A fixture; whether prompt-chunk rows take attention_flash
/// (GpuOptions::chunkFlash) or the split-KV kernels; whether the split-KV
/// kernel runs on the tensor cores (GpuOptions::seq1TensorCores).
class GpuStepTest
    : public ::testing::TestWithParam<std::tuple<const char *, bool, bool>> {
protected:
  void SetUp() override {
    if (!currentDeviceArch().ok())
      GTEST_SKIP() << "no usable GPU";
    EngineOptions options;
    options.device = Device::Gpu;
    options.maxSeq = kMaxSeq;
    options.chunkFlash = std::get<1>(GetParam());
    options.seq1TensorCores = std::get<2>(GetParam());
    auto engine = loadEngine(modelDir(), options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  /// The single-sequence path's logits for `sequence`, prompt then decodes.
  void reference(Sequence &sequence) {
    SamplingParams greedy;
    auto first = engine_->prefill(sequence.prompt, greedy);
    ASSERT_TRUE(first.ok()) << first.status();
    int64_t position = int64_t(sequence.prompt.size());
    for (int k = 0; k <= kDecodes; ++k) {
      auto logits = engine_->lastLogits();
      ASSERT_TRUE(logits.ok()) << logits.status();
      sequence.logits.push_back(*logits);
      sequence.tokens.push_back(argmax(*logits));
      if (k == kDecodes)
        break;
      auto next = engine_->decode(sequence.tokens.back(), position++, greedy);
      ASSERT_TRUE(next.ok()) << next.status();
    }
  }

  /// A fixture's directory, or the model directory the parameter names.
  std::string modelDir() const {
    std::string name = std::get<0>(GetParam());
    return name.starts_with("/") ? name : fixtureDir(name);
  }

  std::unique_ptr<Engine> engine_;
};

/// The fixtures, and the model directories in $TRENI_STEP_TEST_MODELS
/// (':'-separated; the GPU machine's random-weight models of the real shapes,
/// whose head dims take the tensor-core decode attention).
std::vector<const char *> stepTestModels() {
  static std::vector<std::string> extra = [] {
    std::vector<std::string> dirs;
    if (const char *list = std::getenv("TRENI_STEP_TEST_MODELS"))
      for (absl::string_view dir : absl::StrSplit(list, ':', absl::SkipEmpty()))
        dirs.emplace_back(dir);
    return dirs;
  }();
  std::vector<const char *> models = {"qwen2", "llama", "qwen3"};
  for (const std::string &dir : extra)
    models.push_back(dir.c_str());
  return models;
}

TEST_P(GpuStepTest, RowsMatchTheSingleSequencePath) {
  const int64_t vocab = engine_->vocabSize();
  const std::vector<int> lengths = {1, 7, 63, 64, 65, 130};
  const int64_t numBlocks = 40;
  auto made = engine_->createStepRunner(numBlocks, 512);
  ASSERT_TRUE(made.ok()) << made.status();
  StepRunner &runner = **made;
  ASSERT_EQ(runner.numBlocks(), numBlocks);

  // Blocks handed out from the end of the pool, every other one first, so no
  // sequence's blocks are consecutive or in order.
  std::vector<int32_t> free;
  for (int32_t b = int32_t(numBlocks) - 1; b >= 0; b -= 2)
    free.push_back(b);
  for (int32_t b = int32_t(numBlocks) - 2; b >= 0; b -= 2)
    free.push_back(b);
  std::vector<Sequence> sequences(lengths.size());
  for (size_t s = 0; s < lengths.size(); ++s) {
    for (int i = 0; i < lengths[s]; ++i)
      sequences[s].prompt.push_back(int32_t((i * 37 + s * 11 + 5) % vocab));
    int64_t blocks = kvBlocksFor(lengths[s] + kDecodes);
    for (int64_t b = 0; b < blocks; ++b) {
      sequences[s].blocks.push_back(free.back());
      free.pop_back();
    }
    reference(sequences[s]);
    if (HasFatalFailure())
      return;
  }

  // Steps: 0..2 prefill whole and decode; 3..5 prefill in two chunks (the
  // first unsampled, beside 0..2's prompts), then decode; last, sequence 4's
  // first decode row again alone (its K/V row rewritten with itself).
  struct Expected {
    size_t sequence;
    int k; // index into logits
  };
  const size_t half = 3;
  for (int step = 0; step < 5; ++step) {
    StepPlan plan;
    std::vector<Expected> expected;
    auto table = [&](size_t s) {
      BlockTableRef ref{int64_t(plan.blockTables.size()),
                        int64_t(sequences[s].blocks.size())};
      plan.blockTables.insert(plan.blockTables.end(),
                              sequences[s].blocks.begin(),
                              sequences[s].blocks.end());
      return ref;
    };
    auto decode = [&](size_t s, int k) {
      const Sequence &seq = sequences[s];
      plan.decodes.push_back({SequenceId(s), int64_t(seq.prompt.size()) + k - 1,
                              seq.tokens[k - 1], table(s)});
    };
    auto chunk = [&](size_t s, size_t from, size_t to, bool last) {
      const Sequence &seq = sequences[s];
      plan.prefills.push_back({SequenceId(s), int64_t(from),
                               std::vector<int32_t>(seq.prompt.begin() + from,
                                                    seq.prompt.begin() + to),
                               last, table(s)});
    };
    for (size_t s = 0; s < half; ++s)
      if (step >= 1 && step <= kDecodes)
        decode(s, step);
    for (size_t s = half; s < sequences.size(); ++s)
      if (step >= 2 && step <= kDecodes + 1)
        decode(s, step - 1);
    if (step == 4) // one row alone (@decode on the pool), recomputed
      decode(4, 1);
    for (size_t s = 0; s < half; ++s)
      if (step == 0)
        chunk(s, 0, sequences[s].prompt.size(), true);
    for (size_t s = half; s < sequences.size(); ++s) {
      size_t split = sequences[s].prompt.size() / 2;
      if (step == 0)
        chunk(s, 0, split, false);
      if (step == 1)
        chunk(s, split, sequences[s].prompt.size(), true);
    }
    // plan.sampledSequences() order: decode rows, then sampling chunks.
    for (const DecodeRow &row : plan.decodes)
      expected.push_back(
          {size_t(row.sequence),
           int(row.position - int64_t(sequences[row.sequence].prompt.size())) +
               1});
    for (const PrefillChunk &c : plan.prefills)
      if (c.samplesLast)
        expected.push_back({size_t(c.sequence), 0});
    if (plan.empty())
      continue;
    if (step == 0) {
      // The prompt-chunk rows take attention_flash exactly when asked to
      // (the GPU runs every fixture in 16 bits, llama's f32 one in bf16).
      auto *gpu = dynamic_cast<GpuStepRunner *>(&runner);
      ASSERT_NE(gpu, nullptr);
      auto times = gpu->profile(plan, 1);
      ASSERT_TRUE(times.ok()) << times.status();
      bool flash = false;
      for (const StepTime &time : *times)
        flash |= time.templateName == "attention_flash";
      EXPECT_EQ(flash, std::get<1>(GetParam()));
    }

    auto logits = runner.run(plan);
    ASSERT_TRUE(logits.ok()) << logits.status();
    ASSERT_EQ(int64_t(logits->size()), int64_t(expected.size()) * vocab);
    for (size_t i = 0; i < expected.size(); ++i) {
      const Sequence &seq = sequences[expected[i].sequence];
      const std::vector<float> &want = seq.logits[expected[i].k];
      absl::Span<const float> got = logits->subspan(i * vocab, vocab);
      float scale = 1.0f, diff = 0.0f;
      for (int64_t v = 0; v < vocab; ++v) {
        scale = std::max(scale, std::abs(want[v]));
        diff = std::max(diff, std::abs(got[v] - want[v]));
      }
      SCOPED_TRACE(absl::StrCat("step ", step, " sequence ",
                                expected[i].sequence, " logits ", expected[i].k,
                                " max diff ", diff, " of ", scale));
      // 16-bit activations round each layer's output to ~3 significant
      // digits on either path; f32 ones agree to the accumulation order.
      EXPECT_LE(diff, 0.03f * scale);
      if (topTwoMargin(want) > 2 * diff)
        EXPECT_EQ(argmax(got), seq.tokens[expected[i].k]);
    }

    // The same step again (it rewrites the same K/V rows), drawn by the GPU
    // sampler: greedy and seeded rows pick what sampleCpu picks from the
    // logits above.
    std::vector<float> stepLogits(logits->begin(), logits->end());
    std::vector<RowSampling> sampling(expected.size());
    for (size_t i = 0; i < sampling.size(); ++i) {
      if (i % 2) {
        sampling[i].params.temperature = 0.8f;
        sampling[i].params.topK = 40;
        sampling[i].params.seed = 1000 + i;
      }
      sampling[i].step = i;
    }
    auto drawn = runner.runSampled(plan, sampling);
    ASSERT_TRUE(drawn.ok()) << drawn.status();
    ASSERT_EQ(drawn->size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      auto want =
          sampleCpu(absl::MakeConstSpan(stepLogits).subspan(i * vocab, vocab),
                    sampling[i].params, sampling[i].step);
      ASSERT_TRUE(want.ok()) << want.status();
      EXPECT_EQ((*drawn)[i].token, want->token)
          << "step " << step << " row " << i;
      EXPECT_NEAR((*drawn)[i].logprob, want->logprob, 1e-3);
    }
  }
}

// @embed on the GPU: two inputs in one step, the second in two chunks (its
// second chunk attends to the first's K/V rows, from another step); each
// last row's hidden state through the fixture's head gives the engine's own
// single-sequence logits for that prompt.
TEST_P(GpuStepTest, EmbedRowsGiveTheSingleSequenceLogits) {
  auto made = engine_->createStepRunner(16, 512);
  ASSERT_TRUE(made.ok()) << made.status();
  StepRunner &runner = **made;
  const int64_t hidden = runner.hiddenSize(), vocab = engine_->vocabSize();
  ASSERT_GT(hidden, 0);
  auto checkpoint = Checkpoint::open(modelDir());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const TensorInfo *head = (*checkpoint)->find("lm_head.weight");
  if (!head)
    head = (*checkpoint)->find("model.embed_tokens.weight");
  ASSERT_NE(head, nullptr);
  std::vector<float> weights(vocab * hidden);
  convertToF32(head->dtype, (*checkpoint)->data(*head).data(), weights.data(),
               vocab * hidden);
  std::vector<std::vector<int32_t>> prompts(2);
  for (int i = 0; i < 70; ++i)
    prompts[0].push_back(int32_t((i * 13 + 1) % vocab));
  for (int i = 0; i < 150; ++i)
    prompts[1].push_back(int32_t((i * 29 + 7) % vocab));
  std::vector<std::vector<float>> lastRows(2);
  // Step 1: all of prompt 0 (blocks 0, 1), the first 100 of prompt 1
  // (blocks 5, 3, 9); step 2: the rest of prompt 1.
  const std::vector<int32_t> tables[2] = {{0, 1}, {5, 3, 9}};
  for (int step = 0; step < 2; ++step) {
    StepPlan plan;
    auto chunk = [&](int s, size_t from, size_t to) {
      BlockTableRef ref{int64_t(plan.blockTables.size()),
                        int64_t(tables[s].size())};
      plan.blockTables.insert(plan.blockTables.end(), tables[s].begin(),
                              tables[s].end());
      plan.prefills.push_back({SequenceId(s), int64_t(from),
                               std::vector<int32_t>(prompts[s].begin() + from,
                                                    prompts[s].begin() + to),
                               false, ref});
    };
    if (step == 0) {
      chunk(0, 0, 70);
      chunk(1, 0, 100);
    } else {
      chunk(1, 100, 150);
    }
    auto rows = runner.embed(plan);
    ASSERT_TRUE(rows.ok()) << rows.status();
    int64_t count = 0;
    for (const PrefillChunk &c : plan.prefills) {
      count += int64_t(c.tokens.size());
      if (c.firstPosition + int64_t(c.tokens.size()) ==
          int64_t(prompts[c.sequence].size()))
        lastRows[c.sequence].assign(rows->begin() + (count - 1) * hidden,
                                    rows->begin() + count * hidden);
    }
    ASSERT_EQ(int64_t(rows->size()), count * hidden);
  }
  for (int s = 0; s < 2; ++s) {
    SamplingParams greedy;
    ASSERT_TRUE(engine_->prefill(prompts[s], greedy).ok());
    auto want = engine_->lastLogits();
    ASSERT_TRUE(want.ok()) << want.status();
    float scale = 1.0f, diff = 0.0f;
    for (int64_t v = 0; v < vocab; ++v) {
      float logit = 0;
      for (int64_t d = 0; d < hidden; ++d)
        logit += lastRows[s][d] * weights[v * hidden + d];
      scale = std::max(scale, std::abs((*want)[v]));
      diff = std::max(diff, std::abs(logit - (*want)[v]));
    }
    // The engine's lm_head reads the 16-bit normed row; @embed's is f32.
    EXPECT_LE(diff, 0.03f * scale) << "prompt " << s;
  }
}

// The GPU computes the sampled rows first (its final norm and lm_head run on
// them only): decode rows, then each sampling chunk's last row, then the
// other chunk rows; every row keeps its token, position and table.
TEST(StepRowOrderTest, SampledRowsFirst) {
  StepPlan plan;
  plan.blockTables = {7, 3, 9, 4, 2};
  plan.decodes.push_back({SequenceId(1), 70, 11, {0, 2}});
  plan.decodes.push_back({SequenceId(2), 5, 12, {2, 1}});
  plan.prefills.push_back({SequenceId(3), 0, {20, 21, 22}, false, {3, 1}});
  plan.prefills.push_back({SequenceId(4), 64, {30, 31}, true, {4, 1}});
  StepRowOrder order = orderStepRows(plan);
  EXPECT_EQ(order.sampledRows, 3);
  EXPECT_EQ(order.ids, (std::vector<int32_t>{11, 12, 31, 20, 21, 22, 30}));
  EXPECT_EQ(order.positions, (std::vector<int32_t>{70, 5, 65, 0, 1, 2, 64}));
  EXPECT_EQ(order.tableOffsets, (std::vector<int32_t>{0, 2, 4, 3, 3, 3, 4}));
  EXPECT_EQ(int64_t(plan.sampledSequences().size()), order.sampledRows);
}

// An automatic pool takes the blocks the free memory holds after the rest
// and the scratch block, at most kMaxPagedBlocks, and none when one
// sequence's blocks do not fit.
// The tiles attention_flash gets for the scheduler's own plans (64 prompts
// of 512 tokens in steps of 2048 rows, decoding 8 tokens each): every tile
// lies in the prompt-chunk rows after the sampled ones, inside one run of
// one table, and that table covers every position the tile reads; each
// chunk row is in exactly one tile per KV head. Needs no GPU.
TEST(StepRowOrderTest, FlashTilesOfSchedulerPlansStayInsideTheirTables) {
  SchedulerConfig config;
  config.maxNumSeqs = 256;
  config.maxBatchTokens = 2048;
  config.prefillChunk = 2048;
  config.maxSeqLen = 2048;
  KvBlockPool pool(4200);
  auto scheduler = Scheduler::create(config, pool);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  for (int s = 0; s < 64; ++s) {
    std::vector<int32_t> prompt(512);
    for (int i = 0; i < 512; ++i)
      prompt[i] = (i * 7 + s * 131 + 1) % 150000;
    ASSERT_TRUE(scheduler->add(SequenceId(s), prompt, 8).ok());
  }
  const int64_t group = 7, blockM = 128;
  int steps = 0, tiled = 0;
  while (scheduler->hasWork() && steps++ < 1000) {
    auto plan = scheduler->schedule();
    ASSERT_TRUE(plan.ok()) << plan.status();
    StepRowOrder rows = orderStepRows(*plan);
    const int64_t tokens = int64_t(rows.ids.size());
    std::vector<int32_t> tiles = flashChunkTiles(
        rows.tableOffsets, rows.positions, rows.sampledRows, group, blockM);
    std::vector<int> seen(tokens * group, 0);
    for (size_t t = 0; t < tiles.size(); t += 3) {
      const int64_t row = tiles[t], count = tiles[t + 1], first = tiles[t + 2];
      ASSERT_GE(row, rows.sampledRows);
      ASSERT_LE(row + count, tokens);
      ASSERT_LT(first, count * group);
      // The run's table: from its offset to the next larger offset any row
      // names (the tables lie back to back), or the end.
      int64_t begin = rows.tableOffsets[row],
              end = int64_t(plan->blockTables.size());
      for (int32_t offset : rows.tableOffsets)
        if (offset > begin)
          end = std::min<int64_t>(end, offset);
      int64_t last = std::min(first + blockM, count * group) - 1;
      for (int64_t v = first; v <= last; ++v) {
        const int64_t r = row + v / group;
        ASSERT_EQ(rows.tableOffsets[r], begin);
        ASSERT_LT(rows.positions[r] / kKvBlockTokens, end - begin)
            << "step " << steps << " row " << r;
        ++seen[r * group + v % group];
      }
      ++tiled;
    }
    for (int64_t r = 0; r < tokens; ++r)
      for (int64_t h = 0; h < group; ++h)
        ASSERT_EQ(seen[r * group + h], r < rows.sampledRows ? 0 : 1);
    std::vector<SampledToken> sampled;
    for (SequenceId id : plan->sampledSequences())
      sampled.push_back({id, 5, false});
    ASSERT_TRUE(scheduler->commit(*plan, sampled).ok());
  }
  EXPECT_FALSE(scheduler->hasWork());
  EXPECT_GT(tiled, 0);
}

TEST(PagedPoolSizeTest, BlocksThatFit) {
  const int64_t mib = int64_t(1) << 20;
  // 1000 MiB free, 100 MiB for the rest: 900 blocks of 1 MiB, one scratch.
  EXPECT_EQ(pagedPoolBlocksThatFit(1000 * mib, 100 * mib, mib, 32), 899);
  EXPECT_EQ(pagedPoolBlocksThatFit(1000 * mib, 100 * mib, mib, 899), 899);
  EXPECT_EQ(pagedPoolBlocksThatFit(1000 * mib, 100 * mib, mib, 900), 0);
  EXPECT_EQ(pagedPoolBlocksThatFit(100 * mib, 200 * mib, mib, 1), 0);
  EXPECT_EQ(pagedPoolBlocksThatFit(int64_t(1) << 50, 0, 64, 1),
            kMaxPagedBlocks);
  EXPECT_EQ(pagedPoolBlocksThatFit(1000 * mib, 0, 0, 1), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, GpuStepTest,
    ::testing::Combine(::testing::ValuesIn(stepTestModels()), ::testing::Bool(),
                       ::testing::Bool()),
    [](const auto &info) {
      std::string name = std::get<0>(info.param);
      name = name.substr(name.rfind('/') + 1);
      for (char &c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)))
          c = '_';
      return absl::StrCat(name, std::get<1>(info.param) ? "_chunk_flash" : "",
                          std::get<2>(info.param) ? "_seq1_tensor_cores" : "");
    });

} // namespace
} // namespace treni
