//===- plan_test.cpp - plan extraction, round-trip and validation --------===//

#include "codegen/Compiler.h"
#include "codegen/Plan.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

std::string fixture(const std::string &name) {
  return std::string(TRENI_FIXTURES_DIR) + "/" + name;
}

absl::StatusOr<Plan> compilePlan(const std::string &name,
                                 std::vector<std::string> disabled = {}) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses = std::move(disabled);
  auto compiled = compileModelDir(context, fixture(name), options);
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
  // Per layer: 2 norms, 4 GEMMs (q|k|v and gate|up fused), qkv_norm_rope_cache
  // (q/k norms, ropes, cache write), attention, 2 adds, silu_mul; plus
  // embedding, final norm and lm_head.
  EXPECT_EQ(decode->steps.size(), 2u * 11 + 3);
  EXPECT_EQ(prefill->steps.size(), decode->steps.size() + 1); // take_last
  EXPECT_EQ(decode->steps.front().templateName, "embedding");

  // Without the FFN fusion: gate and up GEMMs, silu and mul.
  auto noFfn = compilePlan("qwen3", {"treni-fuse-ffn-act"});
  ASSERT_TRUE(noFfn.ok()) << noFfn.status();
  EXPECT_EQ(noFfn->function("decode")->steps.size(), 2u * 13 + 3);
  // Without the QKV fusion: 3 GEMMs, 2 q/k norms, 2 ropes, cache write.
  auto noQkv = compilePlan("qwen3", {"treni-fuse-qkv-split-bias"});
  ASSERT_TRUE(noQkv.ok()) << noQkv.status();
  EXPECT_EQ(noQkv->function("decode")->steps.size(), 2u * 17 + 3);
  // Without both: 2 norms + 2 q/k norms, 7 GEMMs, 2 ropes, cache write,
  // attention, 2 adds, silu, mul.
  auto unfused = compilePlan(
      "qwen3", {"treni-fuse-ffn-act", "treni-fuse-qkv-split-bias"});
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_EQ(unfused->function("decode")->steps.size(), 2u * 19 + 3);
  plan = compilePlan("qwen2", {"treni-plan-buffers"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("treni-plan-buffers"), std::string::npos)
      << plan.status();
  plan = compilePlan("qwen2", {"treni-no-such-pass"});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("not in the pipeline"), std::string::npos);
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

// Tests that the fused gate/up weight is one plan weight listing its two
// checkpoint tensors, and that it round-trips.
TEST(PlanTest, ConcatenatedWeightsListTheirParts) {
  auto plan = compilePlan("qwen2");
  ASSERT_TRUE(plan.ok()) << plan.status();
  int concats = 0;
  for (const PlanWeight &weight : plan->weights) {
    if (weight.parts.empty() || weight.name.find("gate_proj") == std::string::npos)
      continue;
    ++concats;
    ASSERT_EQ(weight.parts.size(), 2u) << weight.name;
    EXPECT_EQ(weight.name, "concat(" + weight.parts[0].name + "," +
                               weight.parts[1].name + ")");
    EXPECT_NE(weight.parts[0].name.find("gate_proj"), std::string::npos);
    EXPECT_NE(weight.parts[1].name.find("up_proj"), std::string::npos);
    EXPECT_EQ(weight.offset, -1);
    EXPECT_EQ(weight.file, "");
    EXPECT_EQ(weight.dtype, weight.parts[0].dtype);
    EXPECT_EQ(weight.shape[0],
              weight.parts[0].shape[0] + weight.parts[1].shape[0]);
    EXPECT_EQ(weight.shape[1], weight.parts[0].shape[1]);
  }
  EXPECT_EQ(concats, 2); // one per layer
  // Q|K|V weight and bias (Qwen2 has attention biases).
  int qkv = 0;
  for (const PlanWeight &weight : plan->weights)
    if (weight.parts.size() == 3) {
      ++qkv;
      EXPECT_NE(weight.parts[0].name.find("q_proj"), std::string::npos);
      EXPECT_NE(weight.parts[1].name.find("k_proj"), std::string::npos);
      EXPECT_NE(weight.parts[2].name.find("v_proj"), std::string::npos);
    }
  EXPECT_EQ(qkv, 4);
  auto parsed = parsePlan(serializePlan(*plan));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(*parsed == *plan);

  Plan onePart = *plan;
  for (PlanWeight &weight : onePart.weights)
    if (!weight.parts.empty())
      weight.parts.resize(1);
  EXPECT_FALSE(parsePlan(serializePlan(onePart)).ok());
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
