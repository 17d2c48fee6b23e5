//===- plan_test.cpp - plan extraction, round-trip and validation --------===//

#include <algorithm>
#include <map>

#include "codegen/Plan.h"
#include "codegen/mlir/Compiler.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;

absl::StatusOr<Plan>
compilePlan(const std::string &name, std::vector<std::string> disabled = {},
            std::map<std::string, std::string> passOptions = {}) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses = std::move(disabled);
  options.passOptions = std::move(passOptions);
  auto compiled = compileModelDir(context, fixtureDir(name), options);
  if (!compiled.ok())
    return compiled.status();
  return compiled->plan;
}

class PlanRoundTrip : public testing::TestWithParam<std::string> {};

TEST_P(PlanRoundTrip, WriteReadIsIdentical) {
  auto plan = compilePlan(GetParam());
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::string text = serializePlan(*plan);
  auto parsed = parsePlan(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(*parsed == *plan);
  EXPECT_EQ(serializePlan(*parsed), text);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PlanRoundTrip,
                         testing::Values("qwen2", "llama", "qwen3"));

TEST(PlanTest, HasPrefillAndDecodeWithTheExpectedKernels) {
  auto plan = compilePlan("qwen3");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlanFunction *decode = plan->function("decode");
  const PlanFunction *prefill = plan->function("prefill");
  ASSERT_TRUE(decode && prefill);
  // Unfused, per layer: 2 norms + 2 q/k norms, 7 GEMMs, 2 ropes, cache
  // write, attention, 2 adds, silu, mul = 19; plus embedding, final norm and
  // lm_head. treni-fuse-qkv-split-bias: q|k|v in one GEMM, q/k norms, ropes
  // and the cache write in one kernel (-6 per layer); treni-fuse-ffn-act:
  // gate|up in one GEMM, silu_mul (-2 per layer); treni-fuse-residual-norm
  // folds every add into the norm after it (decode: all 4; prefill: 3, the
  // last add feeds take_last); treni-specialize-seq1-attention makes decode
  // attention two steps (partials, reduce: +1 per layer) -- 23 decode steps.
  // treni-fuse-matvec then folds decode's norms, residual adds and silu_mul
  // into its matvecs: per layer q|k|v, qkv_norm_rope_cache, partials, reduce,
  // o, gate|up, down = 7; plus embedding and the logits. In prefill only the
  // one-row logits linear is a matvec (the final norm after take_last folds).
  EXPECT_EQ(decode->steps.size(), 2u * 7 + 2);
  EXPECT_EQ(prefill->steps.size(), 2u * 11 + 3 - 3 + 1 - 1); // take_last
  // The other passes' counts are without treni-fuse-matvec.
  const std::vector<std::pair<std::vector<std::string>, size_t>> offCases = {
      {{"treni-fuse-matvec"}, 2u * 11 + 3 - 4 + 2},
      {{"treni-fuse-qkv-split-bias"}, 2u * 17 + 3 - 4 + 2},
      {{"treni-fuse-ffn-act"}, 2u * 13 + 3 - 4 + 2},
      {{"treni-fuse-residual-norm"}, 2u * 11 + 3 + 2},
      {{"treni-specialize-seq1-attention"}, 2u * 11 + 3 - 4},
      {{"treni-fuse-qkv-split-bias", "treni-fuse-ffn-act",
        "treni-fuse-residual-norm", "treni-specialize-seq1-attention"},
       2u * 19 + 3},
  };
  for (auto [disabled, steps] : offCases) {
    if (disabled.front() != "treni-fuse-matvec")
      disabled.push_back("treni-fuse-matvec");
    auto other = compilePlan("qwen3", disabled);
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ(other->function("decode")->steps.size(), steps)
        << "disabled: " << disabled.front() << " (+" << disabled.size() - 1
        << ")";
  }
  EXPECT_EQ(decode->steps.front().templateName, "embedding");
  EXPECT_EQ(decode->steps.back().templateName, "gemv");
  EXPECT_EQ(std::get<int64_t>(decode->steps.back().constants.at("n")), 512);
  EXPECT_GT(prefill->rowBytes, 0);
  EXPECT_EQ(decode->rowBytes, 0);
  // Tied embeddings: the lm_head GEMM reads the embedding table.
  const PlanOperand &head = decode->steps.back().inputs[1];
  ASSERT_EQ(head.kind, PlanOperand::Kind::Weight);
  EXPECT_EQ(plan->weights[head.index].name, "model.embed_tokens.weight");
  ASSERT_EQ(plan->caches.size(), 1u);
  EXPECT_EQ(plan->caches[0].headDim, 32);
  EXPECT_EQ(plan->caches[0].dtype, "f16");
}

TEST(PlanTest, ArenaReusesMemory) {
  auto plan = compilePlan("llama");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const PlanFunction *decode = plan->function("decode");
  int64_t sum = 0, largest = 0;
  for (const PlanBuffer &buffer : decode->buffers) {
    int64_t bytes = 4;
    for (int64_t dim : buffer.shape)
      bytes *= dim;
    sum += bytes;
    largest = std::max(largest, bytes);
  }
  // The largest buffer (at fixture size, attention_seq1's partials: heads *
  // 32 splits * (head_dim + 2) floats) is one buffer whatever the reuse, so
  // it is left out of both sides.
  EXPECT_LT(decode->staticBytes - largest, (sum - largest) / 4)
      << "liveness-based reuse should keep the arena far below the sum";
}

TEST(PlanTest, DisablingOutliningOrPlanningIsAClearError) {
  auto plan = compilePlan("qwen2", {"treni-outline-kernels"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("treni-outline-kernels"),
            std::string::npos)
      << plan.status();
  plan = compilePlan("qwen2", {"treni-plan-buffers"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("treni-plan-buffers"),
            std::string::npos)
      << plan.status();
  plan = compilePlan("qwen2", {"treni-no-such-pass"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("not in the pipeline"),
            std::string::npos);
}

// Tests --pass-option: treni-fuse-matvec's folds switch off one by one (the
// step they would have taken in comes back), and an unknown option or pass
// is an error naming it.
TEST(PlanTest, PassOptionsReachThePass) {
  auto count = [](const Plan &plan, const std::string &name) {
    const PlanFunction &decode = *plan.function("decode");
    return std::count_if(
        decode.steps.begin(), decode.steps.end(),
        [&](const PlanStep &s) { return s.templateName == name; });
  };
  auto all = compilePlan("qwen2");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(count(*all, "silu_mul"), 0);
  auto noGated =
      compilePlan("qwen2", {}, {{"treni-fuse-matvec", "fold-gated=false"}});
  ASSERT_TRUE(noGated.ok()) << noGated.status();
  EXPECT_EQ(count(*noGated, "silu_mul"), 2);
  EXPECT_EQ(count(*noGated, "residual_norm"), 0);
  auto noNorm =
      compilePlan("qwen2", {}, {{"treni-fuse-matvec", "fold-norm=false"}});
  ASSERT_TRUE(noNorm.ok()) << noNorm.status();
  EXPECT_EQ(count(*noNorm, "residual_norm"), 4); // not split either
  EXPECT_EQ(count(*noNorm, "rms_norm"), 1);      // after the embedding

  auto bad =
      compilePlan("qwen2", {}, {{"treni-fuse-matvec", "fold-nrom=false"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("treni-fuse-matvec"), std::string::npos)
      << bad.status();
  EXPECT_NE(bad.status().message().find("fold-nrom"), std::string::npos)
      << bad.status();
  bad = compilePlan("qwen2", {}, {{"treni-no-such-pass", "x=1"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("treni-no-such-pass"),
            std::string::npos)
      << bad.status();
}

TEST(PlanTest, CanonicalizeAndCseCanBeDisabledWithoutChangingTheKernels) {
  auto plan = compilePlan("qwen2");
  auto bare = compilePlan("qwen2", {"canonicalize", "cse"});
  ASSERT_TRUE(plan.ok() && bare.ok());
  EXPECT_EQ(plan->function("decode")->steps.size(),
            bare->function("decode")->steps.size());
}

TEST(PlanParseTest, RejectsCorruptPlans) {
  auto plan = compilePlan("qwen2");
  ASSERT_TRUE(plan.ok());
  std::string text = serializePlan(*plan);

  EXPECT_FALSE(parsePlan("").ok());
  EXPECT_FALSE(parsePlan("[1,2]").ok());
  EXPECT_FALSE(parsePlan(text.substr(0, text.size() / 2)).ok());

  Plan wrongVersion = *plan;
  wrongVersion.version = kPlanVersion + 1;
  auto parsed = parsePlan(serializePlan(wrongVersion));
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("version"), std::string::npos);

  Plan badOperand = *plan;
  badOperand.functions[0].steps[0].inputs[0].index = 100000;
  parsed = parsePlan(serializePlan(badOperand));
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("out of range"), std::string::npos)
      << parsed.status();

  Plan badWeight = *plan;
  badWeight.functions[0].steps[0].inputs[1].index =
      int64_t(plan->weights.size());
  EXPECT_FALSE(parsePlan(serializePlan(badWeight)).ok());
}

TEST(PlanParseTest, FloatConstantsStayFloats) {
  Plan plan;
  PlanFunction f;
  f.name = "decode";
  PlanStep step;
  step.templateName = "rms_norm";
  step.constants["epsilon"] = 1.0;
  step.constants["dim"] = int64_t(1);
  step.constants["cache"] = std::string("kv");
  step.constants["bias"] = true;
  f.steps.push_back(step);
  plan.functions.push_back(f);
  auto parsed = parsePlan(serializePlan(plan));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const PlanStep &back = parsed->functions[0].steps[0];
  EXPECT_TRUE(std::holds_alternative<double>(back.constants.at("epsilon")));
  EXPECT_TRUE(std::holds_alternative<int64_t>(back.constants.at("dim")));
  EXPECT_TRUE(*parsed == plan);
}

} // namespace
} // namespace treni
