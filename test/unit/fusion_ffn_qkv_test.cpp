//===- fusion_ffn_qkv_test.cpp - fusions keep the CPU logits -------------===//
//
// A fusion must be semantics-preserving: the CPU reference executor gives
// the same logits with and without it (max |a - b| / max |b| <= 1e-5) on
// every fixture, for a prefill and for the teacher-forced decode steps after
// it. Each test also checks that the fusion fired, so it cannot pass vacuously.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <cmath>
#include <fstream>

#include "codegen/mlir/Compiler.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/cpu_executor.h"
#include "test/unit/test_util.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using testing_util::fixtureDir;
using testing_util::relativeError;

absl::StatusOr<Plan> compile(const std::string &dir,
                             std::vector<std::string> disabled) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses = std::move(disabled);
  // These tests count the GEMMs the fusions leave; treni-fuse-matvec would
  // turn decode's into matvecs (fusion_res_attn_test covers it).
  options.disabledPasses.push_back("treni-fuse-matvec");
  auto compiled = compileModelDir(context, dir, options);
  if (!compiled.ok())
    return compiled.status();
  return compiled->plan;
}

int countSteps(const Plan &plan, const std::string &templateName) {
  int count = 0;
  for (const PlanFunction &function : plan.functions)
    for (const PlanStep &step : function.steps)
      count += step.templateName == templateName;
  return count;
}

/// Logits of a prefill of the golden prompt, then of each teacher-forced
/// decode step.
std::vector<std::vector<float>> runGolden(const Plan &plan,
                                          const std::string &dir) {
  std::ifstream in(dir + "/golden.json");
  nlohmann::json golden = nlohmann::json::parse(in);
  auto prompt = golden["prompt_ids"].get<std::vector<int32_t>>();
  auto decode = golden["decode_ids"].get<std::vector<int32_t>>();
  std::vector<std::vector<float>> rows;
  auto executor = CpuExecutor::create(plan, dir, 64);
  EXPECT_TRUE(executor.ok()) << executor.status();
  if (!executor.ok())
    return rows;
  auto logits = (*executor)->prefill(prompt, 0);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (!logits.ok())
    return rows;
  rows.push_back(std::move(*logits));
  for (size_t i = 0; i < decode.size(); ++i) {
    logits = (*executor)->decode(decode[i], prompt.size() + i);
    EXPECT_TRUE(logits.ok()) << logits.status();
    if (!logits.ok())
      return rows;
    rows.push_back(std::move(*logits));
  }
  return rows;
}

void expectSameLogits(const Plan &fused, const Plan &unfused,
                      const std::string &dir) {
  auto expected = runGolden(unfused, dir);
  auto actual = runGolden(fused, dir);
  ASSERT_EQ(actual.size(), expected.size());
  ASSERT_FALSE(expected.empty());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_LE(relativeError(actual[i], expected[i]), 1e-5)
        << (i == 0 ? "prefill" : "decode step " + std::to_string(i - 1));
}

class FusionEquivalence : public testing::TestWithParam<std::string> {};

// Tests that treni-fuse-ffn-act turns every layer's gate/up GEMMs + silu +
// mul into one GEMM + silu_mul, and that the logits do not change.
TEST_P(FusionEquivalence, FuseFfnAct) {
  std::string dir = fixtureDir(GetParam());
  auto fused = compile(dir, {});
  auto unfused = compile(dir, {"treni-fuse-ffn-act"});
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_GT(countSteps(*fused, "silu_mul"), 0);
  EXPECT_EQ(countSteps(*fused, "silu"), 0);
  EXPECT_EQ(countSteps(*fused, "mul"), 0);
  EXPECT_EQ(countSteps(*unfused, "silu_mul"), 0);
  EXPECT_EQ(countSteps(*fused, "gemm") + countSteps(*fused, "silu_mul"),
            countSteps(*unfused, "gemm"));
  expectSameLogits(*fused, *unfused, dir);
}

// Tests that treni-fuse-qkv-split-bias turns every layer's Q/K/V GEMMs,
// [q/k norms], ropes and cache write into one GEMM + qkv_[norm_]rope_cache
// (Qwen2 with biases, Llama with Llama 3 RoPE, Qwen3 with q/k norms), and
// that the logits do not change.
TEST_P(FusionEquivalence, FuseQkvSplitBias) {
  std::string dir = fixtureDir(GetParam());
  auto fused = compile(dir, {});
  auto unfused = compile(dir, {"treni-fuse-qkv-split-bias"});
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  int fusedOps = countSteps(*fused, "qkv_rope_cache") +
                 countSteps(*fused, "qkv_norm_rope_cache");
  EXPECT_EQ(fusedOps, countSteps(*unfused, "cache_write"));
  EXPECT_GT(fusedOps, 0);
  EXPECT_EQ(countSteps(*fused, "rope"), 0);
  EXPECT_EQ(countSteps(*fused, "cache_write"), 0);
  EXPECT_EQ(countSteps(*fused, "gemm") + 2 * fusedOps,
            countSteps(*unfused, "gemm"));
  if (GetParam() == "qwen3")
    EXPECT_EQ(countSteps(*fused, "qkv_norm_rope_cache"), fusedOps);
  expectSameLogits(*fused, *unfused, dir);
}

// Tests that both fusions together keep the logits of the unfused model.
TEST_P(FusionEquivalence, BothFusions) {
  std::string dir = fixtureDir(GetParam());
  auto fused = compile(dir, {});
  auto unfused =
      compile(dir, {"treni-fuse-qkv-split-bias", "treni-fuse-ffn-act"});
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  expectSameLogits(*fused, *unfused, dir);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FusionEquivalence,
                         testing::Values("qwen2", "llama", "qwen3"));

// Tests that every part of a concatenated weight is checked against the
// checkpoint, not just the first (the last part of the first concat: the
// Q|K|V weight's v_proj).
TEST(ConcatWeightsTest, EveryPartIsMatchedAgainstTheCheckpoint) {
  std::string dir = fixtureDir("qwen2");
  auto plan = compile(dir, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto concat = std::find_if(
      plan->weights.begin(), plan->weights.end(),
      [](const PlanWeight &weight) { return !weight.parts.empty(); });
  ASSERT_NE(concat, plan->weights.end());
  concat->parts.back().offset += 2;
  auto executor = CpuExecutor::create(*plan, dir, 16);
  ASSERT_FALSE(executor.ok());
  EXPECT_NE(executor.status().message().find(concat->parts.back().name),
            std::string::npos)
      << executor.status();

  concat->parts.back().offset -= 2;
  concat->shape[0] += 1; // the parts no longer add up
  executor = CpuExecutor::create(*plan, dir, 16);
  ASSERT_FALSE(executor.ok());
  EXPECT_NE(executor.status().message().find("rows in all"), std::string::npos)
      << executor.status();
}

} // namespace
} // namespace treni
