//===- fusion_res_attn_test.cpp - fusions keep the CPU logits ------------===//
//
// treni-fuse-residual-norm, treni-specialize-seq1-attention and
// treni-fuse-matvec must not change what the model computes: the CPU reference
// executor runs the plan with and without each pass and the logits must agree
// within max|a-b|/max|b| <= 1e-5, for a prefill and for decode steps at every
// position of the KV cache (so the seq1 attention's split boundaries move
// through many layouts).
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "codegen/mlir/Compiler.h"
#include "runtime/exec/cpu_executor.h"
#include "runtime/exec/cpu_kernels.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;
using testing_util::relativeError;

constexpr int64_t kMaxSeq = 64;

struct Compiled {
  Plan plan;
  std::unique_ptr<CpuExecutor> executor;
};

Compiled compile(const std::string &dir, std::vector<std::string> disabled,
                 std::map<std::string, std::string> passOptions = {}) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses = std::move(disabled);
  options.passOptions = std::move(passOptions);
  auto compiled = compileModelDir(context, dir, options);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  if (!compiled.ok())
    return {};
  auto executor = CpuExecutor::create(compiled->plan, dir, kMaxSeq);
  EXPECT_TRUE(executor.ok()) << executor.status();
  if (!executor.ok())
    return {};
  return {compiled->plan, std::move(*executor)};
}

int64_t countSteps(const Plan &plan, const std::string &function,
                   const std::string &templateName) {
  const PlanFunction *f = plan.function(function);
  if (!f)
    return -1;
  return std::count_if(
      f->steps.begin(), f->steps.end(),
      [&](const PlanStep &step) { return step.templateName == templateName; });
}

/// (fixture, pass flag, a template the pass introduces).
using Param = std::tuple<std::string, std::string, std::string>;

class FusionEquivalenceTest : public testing::TestWithParam<Param> {
protected:
  std::string dir() const { return fixtureDir(std::get<0>(GetParam())); }
  const std::string &flag() const { return std::get<1>(GetParam()); }
  const std::string &fusedTemplate() const { return std::get<2>(GetParam()); }
  /// Passes off in both builds: treni-fuse-matvec takes decode's
  /// residual_norm kernels in, so the other passes are tested without it.
  std::vector<std::string> base() const {
    if (flag() == "treni-fuse-matvec")
      return {};
    return {"treni-fuse-matvec"};
  }
  std::vector<std::string> withoutPass() const {
    std::vector<std::string> disabled = base();
    disabled.push_back(flag());
    return disabled;
  }
};

TEST_P(FusionEquivalenceTest, PassFiresAndCanBeTurnedOff) {
  Compiled on = compile(dir(), base());
  Compiled off = compile(dir(), withoutPass());
  ASSERT_TRUE(on.executor && off.executor);
  EXPECT_GT(countSteps(on.plan, "decode", fusedTemplate()), 0);
  EXPECT_EQ(countSteps(off.plan, "decode", fusedTemplate()), 0);
  EXPECT_EQ(countSteps(off.plan, "prefill", fusedTemplate()), 0);
}

TEST_P(FusionEquivalenceTest, SameLogitsForPrefillAndEveryDecodePosition) {
  Compiled on = compile(dir(), base());
  Compiled off = compile(dir(), withoutPass());
  ASSERT_TRUE(on.executor && off.executor);
  int64_t vocab = on.executor->vocabSize();
  // A deterministic token sequence covering the vocabulary.
  std::vector<int32_t> tokens(kMaxSeq);
  for (int64_t i = 0; i < kMaxSeq; ++i)
    tokens[i] = int32_t((i * 37 + 11) % vocab);

  std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + 7);
  auto a = on.executor->prefill(prompt, 0);
  auto b = off.executor->prefill(prompt, 0);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_LE(relativeError(*a, *b), 1e-5) << "prefill";
  for (int64_t position = prompt.size(); position < kMaxSeq; ++position) {
    a = on.executor->decode(tokens[position], position);
    b = off.executor->decode(tokens[position], position);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    EXPECT_LE(relativeError(*a, *b), 1e-5) << "decode position " << position;
  }
}

// Tests treni-fuse-matvec with the norms left unfolded (rows wider than
// fold-norm-max-width, here all of them): residual_norm kernels stay, the
// other folds happen, and the logits are those of the plain plan.
TEST(FusionEquivalence, MatvecWithNarrowNormFolds) {
  for (const char *fixture : {"qwen2", "llama", "qwen3"}) {
    std::string dir = fixtureDir(fixture);
    Compiled narrow =
        compile(dir, {}, {{"treni-fuse-matvec", "fold-norm-max-width=0"}});
    Compiled folded = compile(dir, {});
    Compiled off = compile(dir, {"treni-fuse-matvec"});
    ASSERT_TRUE(narrow.executor && folded.executor && off.executor) << fixture;
    EXPECT_GT(countSteps(narrow.plan, "decode", "gemv"), 0) << fixture;
    EXPECT_GT(countSteps(narrow.plan, "decode", "residual_norm"), 0) << fixture;
    EXPECT_EQ(countSteps(folded.plan, "decode", "residual_norm"), 0) << fixture;
    std::vector<int32_t> prompt = {3, 17, 40, 8};
    auto a = narrow.executor->prefill(prompt, 0);
    auto b = off.executor->prefill(prompt, 0);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    EXPECT_LE(relativeError(*a, *b), 1e-5) << fixture << " prefill";
    for (int64_t position = 4; position < 20; ++position) {
      a = narrow.executor->decode(int32_t(position * 5 + 1), position);
      b = off.executor->decode(int32_t(position * 5 + 1), position);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
      EXPECT_LE(relativeError(*a, *b), 1e-5)
          << fixture << " decode position " << position;
    }
  }
}

std::string paramName(const testing::TestParamInfo<Param> &info) {
  std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(
    ResidualNorm, FusionEquivalenceTest,
    testing::Combine(testing::Values("qwen2", "llama", "qwen3"),
                     testing::Values("treni-fuse-residual-norm"),
                     testing::Values("residual_norm")),
    paramName);

INSTANTIATE_TEST_SUITE_P(
    Seq1Attention, FusionEquivalenceTest,
    testing::Combine(testing::Values("qwen2", "llama", "qwen3"),
                     testing::Values("treni-specialize-seq1-attention"),
                     testing::Values("attention_seq1_partial")),
    paramName);

INSTANTIATE_TEST_SUITE_P(Matvec, FusionEquivalenceTest,
                         testing::Combine(testing::Values("qwen2", "llama",
                                                          "qwen3"),
                                          testing::Values("treni-fuse-matvec"),
                                          testing::Values("gemv")),
                         paramName);

// Tests the split rule and the two-step reduction against the one-pass
// reference attention for split counts that divide the length, do not, and
// exceed it (empty splits), over every position of a small cache.
TEST(AttentionSeq1CpuTest, SplitsCombineToTheReference) {
  const int64_t heads = 6, kvHeads = 2, headDim = 8, maxSeq = 40;
  const int64_t kvDim = kvHeads * headDim;
  std::vector<float> keys(maxSeq * kvDim), values(maxSeq * kvDim),
      query(heads * headDim);
  uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return float(int32_t(state >> 8) % 2001 - 1000) / 250.0f;
  };
  for (float &x : keys)
    x = next();
  for (float &x : values)
    x = next();
  for (float &x : query)
    x = next();
  for (int64_t splits : {1, 3, 7, 32, 64}) {
    for (int64_t position = 0; position < maxSeq; ++position) {
      int32_t pos = int32_t(position);
      std::vector<float> expected(heads * headDim), actual(heads * headDim);
      cpu::attention(query.data(), 1, heads, kvHeads, headDim, &pos,
                     keys.data(), values.data(), KvPages{}, 0.35,
                     expected.data());
      std::vector<float> partials(heads * splits * (headDim + 2));
      cpu::attentionSeq1Partial(query.data(), 1, heads, kvHeads, headDim, &pos,
                                keys.data(), values.data(), KvPages{}, 0.35,
                                splits, partials.data());
      cpu::attentionSeq1Reduce(partials.data(), 1, heads, headDim, splits,
                               actual.data());
      EXPECT_LE(relativeError(actual, expected), 1e-6)
          << "splits " << splits << " position " << position;
    }
    // Splits cover 0..length-1 exactly once, in order.
    for (int64_t length : {1, 2, 31, 32, 33, 100}) {
      EXPECT_EQ(cpu::seq1SplitStart(length, splits, 0), 0);
      EXPECT_EQ(cpu::seq1SplitStart(length, splits, splits), length);
      for (int64_t s = 0; s < splits; ++s)
        EXPECT_LE(cpu::seq1SplitStart(length, splits, s),
                  cpu::seq1SplitStart(length, splits, s + 1));
    }
  }
}

} // namespace
} // namespace treni
