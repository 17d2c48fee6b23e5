//===- kernel_source_test.cpp - plan steps -> CUDA C++ -------------------===//
//
// The generated text itself: header comment and constants, entry names (a
// stable hash, shared by equal sources), operand types, launch geometry per
// template, and the errors for plans codegen cannot serve. That it compiles
// is nvrtc_test's job.
//
//===----------------------------------------------------------------------===//

#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codegen/KernelRegistry.h"
#include "codegen/KernelSource.h"
#include "codegen/Rope.h"
#include "codegen/mlir/Compiler.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
using ::testing::HasSubstr;
using ::testing::StartsWith;

Plan fixturePlan(const std::string &name,
                 std::optional<DType> dtype = std::nullopt) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.activationDtype = dtype;
  auto compiled =
      compileModelDir(context, testing_util::fixtureDir(name), options);
  EXPECT_TRUE(compiled.ok()) << name << ": " << compiled.status();
  return compiled.ok() ? compiled->plan : Plan();
}

/// A plan whose one function runs `step` alone. `inputs` gives each input's
/// dtype ("bf16", "i32", ...) or "weight"; outputs are buffers of `outputs`'
/// dtypes. The KV cache "kv" has dtype `cacheDtype`.
struct SingleStep {
  Plan plan;
  const PlanFunction &function() const { return plan.functions[0]; }
  const PlanStep &step() const { return plan.functions[0].steps[0]; }
};

SingleStep singleStep(const std::string &templateName,
                      std::map<std::string, PlanConstant> constants,
                      std::vector<std::string> inputs,
                      std::vector<std::string> outputs,
                      const std::string &cacheDtype = "bf16") {
  SingleStep result;
  Plan &plan = result.plan;
  plan.caches.push_back({"kv", 2, 2, 64, cacheDtype});
  PlanFunction function;
  function.name = "prefill";
  PlanStep step;
  step.templateName = templateName;
  step.origin = "treni." + templateName;
  step.constants = std::move(constants);
  for (const std::string &input : inputs) {
    if (input == "weight") {
      plan.weights.push_back({"w", "model.safetensors", 0, "F32", {8}});
      step.inputs.push_back(
          {PlanOperand::Kind::Weight, int64_t(plan.weights.size()) - 1});
      continue;
    }
    function.buffers.push_back({input, {-1, 8}, true, 0});
    step.inputs.push_back(
        {PlanOperand::Kind::Buffer, int64_t(function.buffers.size()) - 1});
  }
  for (const std::string &output : outputs) {
    function.buffers.push_back({output, {-1, 8}, true, 0});
    step.outputs.push_back(int64_t(function.buffers.size()) - 1);
  }
  function.steps.push_back(std::move(step));
  plan.functions.push_back(std::move(function));
  return result;
}

KernelSpec generate(const SingleStep &s) {
  auto kernel = generateKernel(s.plan, s.function(), s.step());
  EXPECT_TRUE(kernel.ok()) << kernel.status();
  return kernel.ok() ? *kernel : KernelSpec();
}

std::string errorOf(const SingleStep &s) {
  auto kernel = generateKernel(s.plan, s.function(), s.step());
  EXPECT_FALSE(kernel.ok());
  return kernel.ok() ? "" : std::string(kernel.status().message());
}

uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

std::string replaceAll(std::string text, const std::string &from,
                       const std::string &to) {
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos;
       at += to.size())
    text.replace(at, from.size(), to);
  return text;
}

SingleStep rmsNormStep(int64_t dim = 896, int64_t group = 896) {
  return singleStep("rms_norm",
                    {{"dim", dim}, {"group", group}, {"epsilon", 1e-6}},
                    {"bf16", "weight"}, {"bf16"});
}

// Tests that a source opens with the header comment naming template, origin,
// every constant and the dtype, and bakes the constants in as constexpr.
TEST(KernelSourceTest, HeaderAndConstants) {
  KernelSpec kernel = generate(rmsNormStep());
  EXPECT_THAT(kernel.source,
              StartsWith("// treni kernel: rms_norm (from treni.rms_norm) "
                         "dim=896 epsilon=1e-06 group=896 dtype=bf16\n"));
  EXPECT_THAT(kernel.source, HasSubstr("constexpr int kDim = 896;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("constexpr int kGroup = 896;\n"));
  EXPECT_THAT(kernel.source,
              HasSubstr("constexpr float kEpsilon = 9.99999997e-07f;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("constexpr int kThreads = 256;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("using x_type = bf16;\n"));
  // Weights are in the activation dtype on the device, whatever the
  // checkpoint (F32 here) holds.
  EXPECT_THAT(kernel.source, HasSubstr("using weight_type = bf16;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("using out_type = bf16;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("extern \"C\" __global__"));
  EXPECT_EQ(kernel.source.find("#include"), std::string::npos);
  EXPECT_EQ(kernel.source.find("TRENI_ENTRY"), std::string::npos);
  EXPECT_FALSE(kernel.usesCache);
}

// Tests the element types: f16 and f32 activations, and an f32 buffer where
// the plan has one.
TEST(KernelSourceTest, OperandTypes) {
  SingleStep f16 =
      singleStep("add", {{"dim", int64_t(64)}}, {"f16", "f16"}, {"f16"}, "f16");
  KernelSpec kernel = generate(f16);
  EXPECT_THAT(kernel.source, HasSubstr("dtype=f16\n"));
  EXPECT_THAT(kernel.source, HasSubstr("using a_type = f16;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("const a_type *a, const b_type *b, "
                                       "out_type *out, int rows)"));
  SingleStep mixed =
      singleStep("silu", {{"dim", int64_t(64)}}, {"f32"}, {"bf16"});
  kernel = generate(mixed);
  EXPECT_THAT(kernel.source, HasSubstr("using x_type = float;\n"));
  EXPECT_THAT(kernel.source, HasSubstr("using out_type = bf16;\n"));
}

// Tests that entries are "treni_<template>_<FNV-1a of the source>", the same
// for equal steps and different for different ones.
TEST(KernelSourceTest, EntryNamesAreStableAndUnique) {
  KernelSpec a = generate(rmsNormStep());
  KernelSpec again = generate(rmsNormStep());
  KernelSpec b = generate(rmsNormStep(2048, 128));
  EXPECT_EQ(a.entry, again.entry);
  EXPECT_EQ(a.source, again.source);
  EXPECT_NE(a.entry, b.entry);
  for (const KernelSpec *kernel : {&a, &b}) {
    EXPECT_TRUE(std::regex_match(kernel->entry,
                                 std::regex("treni_rms_norm_[0-9a-f]{16}")))
        << kernel->entry;
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx",
                  (unsigned long long)fnv1a(replaceAll(
                      kernel->source, kernel->entry, "TRENI_ENTRY")));
    EXPECT_EQ(kernel->entry, std::string("treni_rms_norm_") + hex);
    EXPECT_THAT(kernel->source, HasSubstr(kernel->entry + "(const x_type *x"));
  }
}

// Tests that the fixture plans generate a kernel for every non-GEMM step of
// the functions the GPU runs, with headers naming the origin, and that
// generateAllKernels returns each distinct source once: every layer shares
// its kernels, so do prefill, decode and step (the kernels follow block
// tables at run time, so @step's share @prefill's sources).
TEST(KernelSourceTest, FixturePlans) {
  for (const char *name : {"qwen2", "llama", "qwen3"}) {
    SCOPED_TRACE(name);
    Plan plan = fixturePlan(name);
    ASSERT_FALSE(plan.functions.empty());
    auto activation = activationDtype(plan);
    ASSERT_TRUE(activation.ok()) << activation.status();
    std::map<std::string, std::string> sources; // entry -> source
    std::set<std::string> templates;
    int gemmRowsKernels = 0, chunkFlashKernels = 0;
    for (const PlanFunction &function : plan.functions) {
      for (const PlanStep &step : function.steps) {
        auto kernel = generateKernel(plan, function, step);
        if (step.templateName == "gemm") { // cuBLASLt
          EXPECT_FALSE(kernel.ok());
          // ... or, in @step over few rows, gemm_rows (16-bit only).
          for (int64_t rowTiles : {1, 2, 4}) {
            auto rows = generateGemmRowsKernel(plan, function, step, rowTiles);
            if (!pagedCache(function) || *activation == "f32") {
              EXPECT_FALSE(rows.ok() && pagedCache(function));
              continue;
            }
            ASSERT_TRUE(rows.ok()) << rows.status();
            EXPECT_THAT(rows->source,
                        StartsWith("// treni kernel: gemm_rows (from " +
                                   step.origin + ")"));
            ++gemmRowsKernels;
            sources.emplace(rows->entry, rows->source);
          }
          continue;
        }
        ASSERT_TRUE(kernel.ok()) << kernel.status();
        templates.insert(step.templateName);
        EXPECT_THAT(kernel->source,
                    StartsWith("// treni kernel: " + step.templateName +
                               " (from " + step.origin + ")"));
        EXPECT_THAT(kernel->source.substr(0, kernel->source.find('\n')),
                    HasSubstr(" dtype=" + *activation));
        auto [it, inserted] = sources.emplace(kernel->entry, kernel->source);
        EXPECT_EQ(it->second, kernel->source) << "entry collision";
        // In @step, each split-KV pair has attention_flash for prompt-chunk
        // rows (16-bit only).
        if (const PlanStep *reduce = chunkAttentionReduce(function, step)) {
          auto flash =
              generateStepChunkAttentionKernel(plan, function, step, *reduce);
          if (*activation == "f32") {
            EXPECT_EQ(flash.status().code(), absl::StatusCode::kUnimplemented);
          } else {
            ASSERT_TRUE(flash.ok()) << flash.status();
            EXPECT_THAT(flash->source,
                        StartsWith("// treni kernel: attention_flash (from " +
                                   step.origin + ")"));
            ++chunkFlashKernels;
            sources.emplace(flash->entry, flash->source);
          }
        }
        EXPECT_EQ(kernel->usesCache,
                  step.templateName == "cache_write" ||
                      step.templateName == "attention" ||
                      step.templateName == "attention_flash" ||
                      step.templateName == "attention_seq1_partial" ||
                      step.templateName.rfind("qkv_", 0) == 0);
      }
    }
    // With every fusion: silu and mul are silu_mul; ropes, q/k norms and the
    // cache write are qkv_[norm_]rope_cache; adds feeding a norm are
    // residual_norm (the last prefill add, feeding take_last, stays an add);
    // decode attention is attention_seq1_partial + attention_seq1_reduce;
    // prefill attention is attention_flash in 16-bit (qwen2 bf16, qwen3 f16)
    // and the generic attention in f32 (llama), @step's split-KV row by row
    // as decode's; one-row linears are gemv (treni.matvec), which take in
    // decode's norms, silu_mul and residual adds.
    std::set<std::string> expected = {"embedding",
                                      "rms_norm",
                                      "silu_mul",
                                      "add",
                                      "take_last",
                                      "residual_norm",
                                      "attention_seq1_partial",
                                      "attention_seq1_reduce",
                                      "gemv"};
    expected.insert(std::string(name) == "qwen3" ? "qkv_norm_rope_cache"
                                                 : "qkv_rope_cache");
    expected.insert(std::string(name) == "llama" ? "attention"
                                                 : "attention_flash");
    EXPECT_EQ(templates, expected);
    EXPECT_EQ(gemmRowsKernels > 0, std::string(name) != "llama");
    EXPECT_EQ(chunkFlashKernels > 0, std::string(name) != "llama");
    auto all = generateAllKernels(plan);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(all->size(), sources.size());
    std::set<std::string> sourceTexts;
    for (const KernelSpec &kernel : *all) {
      EXPECT_EQ(sources[kernel.entry], kernel.source);
      sourceTexts.insert(kernel.source);
    }
    EXPECT_EQ(sourceTexts.size(), all->size()); // one entry per source
    // Two layers, three functions: far fewer kernels than steps (gemm steps
    // counted too; prefill's run on cuBLASLt), not counting @step's
    // gemm_rows kernels (three per GEMM shape, shared by the layers).
    size_t steps = 0, rowsEntries = 0;
    for (const PlanFunction &function : plan.functions)
      steps += function.steps.size();
    for (const KernelSpec &kernel : *all)
      rowsEntries += kernel.entry.starts_with("treni_gemm_rows_");
    EXPECT_LE(rowsEntries, size_t(gemmRowsKernels));
    EXPECT_LT((all->size() - rowsEntries) * 2, steps);
    // @step's rows may be several sequences of a paged cache: its cache
    // steps are templates that follow block tables (its attention the
    // split-KV pair), and a template that reads a contiguous cache is
    // refused there.
    const PlanFunction *step = plan.function("step");
    ASSERT_NE(step, nullptr);
    EXPECT_TRUE(pagedCache(*step));
    EXPECT_FALSE(pagedCache(*plan.function("prefill")));
    EXPECT_FALSE(pagedCache(*plan.function("decode")));
    bool sawAttention = false;
    for (const PlanStep &planStep : step->steps) {
      const KernelTemplate *kernel = findKernelTemplate(planStep.templateName);
      ASSERT_NE(kernel, nullptr);
      EXPECT_TRUE(!kernel->usesCache || kernel->pagedCache)
          << planStep.templateName;
      sawAttention |= planStep.templateName == "attention_seq1_partial";
    }
    EXPECT_TRUE(sawAttention);
    for (const PlanStep &planStep : plan.function("prefill")->steps)
      if (planStep.templateName == "attention_flash") {
        auto kernel = generateKernel(plan, *step, planStep);
        EXPECT_TRUE(absl::IsUnimplemented(kernel.status()));
        EXPECT_THAT(kernel.status().message(), HasSubstr("contiguous"));
      }
  }
}

// Tests the gemv (treni.matvec) steps of a fixture plan: five operands, a
// launch of ceil(outputs / kRowsPerBlock) blocks (outputs = n / 2 when
// gated), each flag spelled as a constexpr bool, and decode's steps using
// every fold. Inconsistent flags are errors naming the step.
TEST(KernelSourceTest, GemvSteps) {
  Plan plan = fixturePlan("qwen2");
  const PlanFunction &decode = *plan.function("decode");
  std::set<std::string> folds;
  int checked = 0;
  for (const PlanStep &step : decode.steps) {
    EXPECT_NE(step.templateName, "gemm") << "decode keeps a GEMM";
    if (step.templateName != "gemv")
      continue;
    ASSERT_EQ(step.inputs.size(), 5u);
    auto kernel = generateKernel(plan, decode, step);
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    int64_t n = *step.intConstant("n");
    bool gated = *step.boolConstant("gated");
    for (const char *flag : {"gated", "norm", "residual"})
      if (*step.boolConstant(flag))
        folds.insert(flag);
    size_t at = kernel->source.find("constexpr int kRowsPerBlock = ");
    ASSERT_NE(at, std::string::npos);
    int64_t rowsPerBlock = std::stoll(kernel->source.substr(at + 30));
    EXPECT_TRUE(rowsPerBlock == 1 || rowsPerBlock == 2 || rowsPerBlock == 4);
    int64_t outputs = gated ? n / 2 : n;
    EXPECT_EQ(kernel->launch.blocksX,
              (outputs + rowsPerBlock - 1) / rowsPerBlock);
    EXPECT_FALSE(kernel->launch.rowsInGridY);
    EXPECT_THAT(kernel->source,
                HasSubstr(absl::StrCat("constexpr bool kGated = ",
                                       gated ? "true" : "false")));
    ++checked;

    PlanStep broken = step;
    broken.constants["gated"] = true;
    broken.constants["residual"] = true;
    auto rejected = generateKernel(plan, decode, broken);
    ASSERT_FALSE(rejected.ok());
    EXPECT_THAT(std::string(rejected.status().message()),
                HasSubstr("gated needs an even n and no residual"));
    broken = step;
    broken.constants["norm"] = !*step.boolConstant("norm");
    rejected = generateKernel(plan, decode, broken);
    ASSERT_FALSE(rejected.ok());
    EXPECT_THAT(std::string(rejected.status().message()),
                HasSubstr("epsilon must be given exactly when norm is"));
  }
  // Per layer QKV (norm), O (residual), gate/up (norm, gated), down
  // (residual); then the logits (norm).
  EXPECT_EQ(checked, 4 * 2 + 1);
  EXPECT_EQ(folds, (std::set<std::string>{"gated", "norm", "residual"}));
}

TEST(KernelSourceTest, ActivationDtype) {
  EXPECT_EQ(*activationDtype(fixturePlan("llama")), "f32");
  EXPECT_EQ(*activationDtype(fixturePlan("qwen3")), "f16");
  Plan bf16 = fixturePlan("llama", DType::BF16);
  EXPECT_EQ(*activationDtype(bf16), "bf16");
  auto kernels = generateAllKernels(bf16);
  ASSERT_TRUE(kernels.ok()) << kernels.status();
  // Only the residual stream (embedding output, adds, norms' and
  // take_last's inputs) is f32; everything else is bf16.
  int floatNorms = 0;
  for (const KernelSpec &kernel : *kernels) {
    bool residual = kernel.entry.starts_with("treni_embedding_") ||
                    kernel.entry.starts_with("treni_add_") ||
                    kernel.entry.starts_with("treni_rms_norm_") ||
                    kernel.entry.starts_with("treni_take_last_") ||
                    kernel.entry.starts_with("treni_residual_norm_");
    // attention_seq1's partials are f32 by design.
    bool partials = kernel.entry.starts_with("treni_attention_seq1_");
    if (partials)
      EXPECT_NE(kernel.source.find("using partials_type = float;"),
                std::string::npos);
    if (kernel.entry.starts_with("treni_residual_norm_")) {
      EXPECT_NE(kernel.source.find("using sum_type = float;"),
                std::string::npos);
      // @embed's final norm writes the f32 hidden states; the others bf16.
      bool f32Out =
          kernel.source.find("using out_type = float;") != std::string::npos;
      floatNorms += f32Out;
      if (!f32Out)
        EXPECT_NE(kernel.source.find("using out_type = bf16;"),
                  std::string::npos);
    }
    // The decode logits GEMV writes f32 logits.
    // The decode logits GEMV and @step's lm_head on gemm_rows write f32
    // logits.
    bool logits =
        (kernel.entry.starts_with("treni_gemv_") ||
         kernel.entry.starts_with("treni_gemm_rows_")) &&
        kernel.source.find("using out_type = float;") != std::string::npos &&
        kernel.source.find("n=384 ") != std::string::npos;
    if (!residual && !partials && !logits)
      EXPECT_EQ(kernel.source.find("= float;"), std::string::npos)
          << kernel.entry;
    if (kernel.entry.starts_with("treni_embedding_"))
      EXPECT_NE(kernel.source.find("using out_type = float;"),
                std::string::npos);
    if (kernel.entry.starts_with("treni_rms_norm_"))
      EXPECT_NE(kernel.source.find("using out_type = bf16;"),
                std::string::npos);
  }
  EXPECT_EQ(floatNorms, 1);
  EXPECT_FALSE(activationDtype(Plan()).ok());
  SingleStep odd = rmsNormStep();
  odd.plan.caches[0].dtype = "i32";
  EXPECT_FALSE(activationDtype(odd.plan).ok());
}

// Tests launch geometry and cache use, template by template.
TEST(KernelSourceTest, LaunchGeometry) {
  struct Case {
    SingleStep step;
    KernelLaunch launch;
    bool usesCache;
  };
  std::map<std::string, PlanConstant> cache = {{"cache", std::string("kv")},
                                               {"layer", int64_t(1)}};
  auto with = [](std::map<std::string, PlanConstant> a,
                 const std::map<std::string, PlanConstant> &b) {
    a.insert(b.begin(), b.end());
    return a;
  };
  std::vector<std::pair<std::string, Case>> cases = {
      {"embedding",
       {singleStep("embedding",
                   {{"vocab", int64_t(151936)}, {"dim", int64_t(896)}},
                   {"i32", "weight"}, {"bf16"}),
        {4, 256, true, 0, 0},
        false}},
      {"rms_norm row", {rmsNormStep(896, 896), {1, 256, true, 0, 0}, false}},
      {"rms_norm per head",
       {rmsNormStep(2048, 128), {16, 128, true, 0, 0}, false}},
      {"rms_norm tiny", {rmsNormStep(128, 32), {4, 32, true, 0, 0}, false}},
      {"rope",
       {singleStep(
            "rope",
            {{"dim", int64_t(896)}, {"head_dim", int64_t(64)}, {"theta", 1e6}},
            {"bf16", "i32"}, {"bf16"}),
        {2, 256, true, 0, 0},
        false}},
      {"cache_write",
       {singleStep("cache_write", with({{"dim", int64_t(128)}}, cache),
                   {"bf16", "bf16", "i32"}, {}),
        {1, 128, true, 0, 0},
        true}},
      {"attention",
       {singleStep("attention",
                   with({{"num_heads", int64_t(14)},
                         {"num_kv_heads", int64_t(2)},
                         {"head_dim", int64_t(64)},
                         {"scale", 0.125}},
                        cache),
                   {"bf16", "i32"}, {"bf16"}),
        {14, 128, true, 0, 4},
        true}},
      {"attention_flash",
       {singleStep("attention_flash",
                   with({{"num_heads", int64_t(14)},
                         {"num_kv_heads", int64_t(2)},
                         {"head_dim", int64_t(64)},
                         {"scale", 0.125}},
                        cache),
                   {"bf16", "i32"}, {"bf16"}),
        // One block per KV head and 128 query vectors, 8 warps of one tile
        // (a 2048-row chunk's 224 blocks are one wave); a Q tile of 128 rows
        // and 2 K + 2 V tiles of 64, rows of 64 + 8 (padding) bf16 values.
        {2, 256, true, (128 + 4 * 64) * (64 + 8) * 2, 0, 7, 128},
        true}},
      {"silu",
       {singleStep("silu", {{"dim", int64_t(4864)}}, {"bf16"}, {"bf16"}),
        {19, 256, true, 0, 0},
        false}},
      {"qkv_rope_cache",
       {singleStep("qkv_rope_cache",
                   with({{"num_heads", int64_t(14)},
                         {"num_kv_heads", int64_t(2)},
                         {"head_dim", int64_t(64)},
                         {"theta", 1000000.0}},
                        cache),
                   {"bf16", "i32"}, {"bf16"}),
        // 16 heads of 64: 4 threads of 8 rotation pairs each, one block.
        {1, 64, true, 0, 0},
        true}},
      {"qkv_norm_rope_cache",
       {singleStep("qkv_norm_rope_cache",
                   with({{"num_heads", int64_t(16)},
                         {"num_kv_heads", int64_t(8)},
                         {"head_dim", int64_t(128)},
                         {"theta", 1000000.0},
                         {"epsilon", 1e-6}},
                        cache),
                   {"bf16", "i32", "weight", "weight"}, {"bf16"}),
        // 24 heads of 128: 8 threads of 8 rotation pairs each, one block.
        {1, 192, true, 0, 0},
        true}},
      {"silu_mul",
       {singleStep("silu_mul", {{"dim", int64_t(4864)}}, {"bf16"}, {"bf16"}),
        // 608 vectors of 8 columns.
        {3, 256, true, 0, 0},
        false}},
      {"silu_mul (odd width)",
       {singleStep("silu_mul", {{"dim", int64_t(4865)}}, {"bf16"}, {"bf16"}),
        // No vector divides 4865: one column per thread.
        {20, 256, true, 0, 0},
        false}},
      {"residual_norm",
       {singleStep("residual_norm", {{"dim", int64_t(3584)}, {"epsilon", 1e-6}},
                   {"f32", "bf16", "weight"}, {"f32", "bf16"}),
        // 448 vectors of 8 columns, one block per row.
        {1, 448, true, 0, 0},
        false}},
      {"mul",
       {singleStep("mul", {{"dim", int64_t(4864)}}, {"bf16", "bf16"}, {"bf16"}),
        {19, 256, true, 0, 0},
        false}},
      {"add",
       {singleStep("add", {{"dim", int64_t(64)}}, {"bf16", "bf16"}, {"bf16"}),
        {1, 64, true, 0, 0},
        false}},
      {"take_last",
       {singleStep("take_last", {{"dim", int64_t(896)}}, {"bf16"}, {"bf16"}),
        {4, 256, false, 0, 0},
        false}},
  };
  for (const auto &[name, c] : cases) {
    SCOPED_TRACE(name);
    KernelSpec kernel = generate(c.step);
    EXPECT_EQ(kernel.launch.blocksX, c.launch.blocksX);
    EXPECT_EQ(kernel.launch.threads, c.launch.threads);
    EXPECT_EQ(kernel.launch.rowsInGridY, c.launch.rowsInGridY);
    EXPECT_EQ(kernel.launch.sharedBytes, c.launch.sharedBytes);
    EXPECT_EQ(kernel.launch.sharedBytesPerPosition,
              c.launch.sharedBytesPerPosition);
    EXPECT_EQ(kernel.launch.gridY(100), c.launch.gridY(100));
    EXPECT_EQ(kernel.usesCache, c.usesCache);
    EXPECT_THAT(kernel.source,
                HasSubstr("constexpr int kThreads = " +
                          std::to_string(c.launch.threads) + ";\n"));
    if (c.usesCache) {
      EXPECT_THAT(kernel.source,
                  HasSubstr("cache_type *keyCache, "
                            "cache_type *valueCache, KvPages pages,"));
      // The layer is a launch argument: no constant, one kernel per model.
      EXPECT_EQ(kernel.source.find("kLayer"), std::string::npos);
      EXPECT_EQ(kernel.source.find("layer="), std::string::npos);
      SingleStep other = c.step;
      other.plan.functions[0].steps[0].constants["layer"] = int64_t(7);
      EXPECT_EQ(generate(other).entry, kernel.entry);
    }
  }
}

// Tests that the RoPE frequencies in the source are ropeInverseFrequencies'
// values, exactly (they are printed with 9 significant digits).
TEST(KernelSourceTest, RopeFrequenciesRoundTrip) {
  std::map<std::string, PlanConstant> constants = {
      {"dim", int64_t(2048)},
      {"head_dim", int64_t(64)},
      {"theta", 500000.0},
      {"llama3_factor", 32.0},
      {"llama3_low_freq_factor", 1.0},
      {"llama3_high_freq_factor", 4.0},
      {"llama3_original_max_position", int64_t(8192)}};
  KernelSpec kernel =
      generate(singleStep("rope", constants, {"bf16", "i32"}, {"bf16"}));
  EXPECT_THAT(kernel.source, HasSubstr("llama3_factor=32 "));
  EXPECT_THAT(kernel.source,
              HasSubstr("constexpr int kLlama3OriginalMaxPosition = 8192;\n"));
  std::vector<float> expected =
      ropeInverseFrequencies(64, 500000.0, Llama3Scaling{32, 1, 4, 8192});
  size_t open = kernel.source.find("kInvFreq[kHeadDim / 2] = {");
  ASSERT_NE(open, std::string::npos);
  size_t close = kernel.source.find("};", open);
  std::string list = kernel.source.substr(open, close - open);
  list = list.substr(list.find('{') + 1);
  std::vector<float> actual;
  const char *cursor = list.c_str();
  while (true) {
    char *end;
    float value = std::strtof(cursor, &end);
    if (end == cursor)
      break;
    actual.push_back(value);
    cursor = end;
    while (*cursor == 'f' || *cursor == ',' || std::isspace(*cursor))
      ++cursor;
  }
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(actual[i], expected[i]) << i; // bitwise, not approximately

  // Without scaling the frequencies differ, and so does the kernel.
  constants.erase("llama3_factor");
  constants.erase("llama3_low_freq_factor");
  constants.erase("llama3_high_freq_factor");
  constants.erase("llama3_original_max_position");
  KernelSpec plain =
      generate(singleStep("rope", constants, {"bf16", "i32"}, {"bf16"}));
  EXPECT_NE(plain.entry, kernel.entry);
}

// Tests Qwen3.5's variants: rms_norm's unit_offset and rope's rotary_dim are
// baked into their kernels (kUnitOffset, kRotaryDim and kRotaryDim / 2
// frequencies of theta^(-2j / rotary_dim)); without them the launch rule
// supplies the plain values, and the kInvFreq table keeps its text.
TEST(KernelSourceTest, UnitOffsetNormAndPartialRope) {
  KernelSpec plainNorm = generate(rmsNormStep());
  EXPECT_THAT(plainNorm.source,
              HasSubstr("constexpr bool kUnitOffset = false;"));
  SingleStep offset = rmsNormStep();
  offset.plan.functions[0].steps[0].constants["unit_offset"] = true;
  KernelSpec offsetNorm = generate(offset);
  EXPECT_THAT(offsetNorm.source, HasSubstr(" unit_offset=true "));
  EXPECT_THAT(offsetNorm.source,
              HasSubstr("constexpr bool kUnitOffset = true;\n"));
  EXPECT_EQ(offsetNorm.source.find("kUnitOffset = false"), std::string::npos);
  EXPECT_NE(offsetNorm.entry, plainNorm.entry);

  std::map<std::string, PlanConstant> constants = {
      {"dim", int64_t(256)}, {"head_dim", int64_t(64)}, {"theta", 1e7}};
  KernelSpec plainRope =
      generate(singleStep("rope", constants, {"bf16", "i32"}, {"bf16"}));
  EXPECT_THAT(plainRope.source, HasSubstr("constexpr int kRotaryDim = 64;"));
  EXPECT_THAT(plainRope.source, HasSubstr("kInvFreq[kHeadDim / 2] = {"));
  constants["rotary_dim"] = int64_t(16);
  KernelSpec partial =
      generate(singleStep("rope", constants, {"bf16", "i32"}, {"bf16"}));
  EXPECT_THAT(partial.source, HasSubstr("constexpr int kRotaryDim = 16;\n"));
  size_t open = partial.source.find("kInvFreq[kRotaryDim / 2] = {");
  ASSERT_NE(open, std::string::npos);
  std::string list =
      partial.source.substr(open, partial.source.find("};", open) - open);
  std::vector<float> expected = ropeInverseFrequencies(16, 1e7, std::nullopt);
  ASSERT_EQ(expected.size(), 8u);
  EXPECT_EQ(std::count(list.begin(), list.end(), ','), 8); // 8 values
  // The last frequency is theta^(-14/16), not theta^(-14/64).
  EXPECT_FLOAT_EQ(expected[7], float(std::pow(1e7, -14.0 / 16)));
  EXPECT_THAT(list, HasSubstr(absl::StrFormat("%.9gf", expected[7])));

  constants["rotary_dim"] = int64_t(7);
  EXPECT_THAT(errorOf(singleStep("rope", constants, {"bf16", "i32"}, {"bf16"})),
              HasSubstr("rotary_dim 7 must be even and in [2, head_dim = 64]"));
  constants["rotary_dim"] = int64_t(128);
  EXPECT_THAT(errorOf(singleStep("rope", constants, {"bf16", "i32"}, {"bf16"})),
              HasSubstr("rotary_dim 128"));
}

// Tests that the fused templates that norm or rotate refuse the variants
// they do not compute, instead of ignoring them (the fusion passes leave
// such norms and ropes alone).
TEST(KernelSourceTest, FusedTemplatesRefuseQwen35Variants) {
  EXPECT_THAT(
      errorOf(singleStep(
          "residual_norm",
          {{"dim", int64_t(64)}, {"epsilon", 1e-6}, {"unit_offset", true}},
          {"f32", "bf16", "weight"}, {"f32", "bf16"})),
      HasSubstr("unknown constant 'unit_offset'"));
  EXPECT_THAT(errorOf(singleStep("qkv_rope_cache",
                                 {{"num_heads", int64_t(4)},
                                  {"num_kv_heads", int64_t(2)},
                                  {"head_dim", int64_t(16)},
                                  {"rotary_dim", int64_t(8)},
                                  {"theta", 1e4},
                                  {"cache", std::string("kv")},
                                  {"layer", int64_t(0)}},
                                 {"bf16", "i32"}, {"bf16"})),
              HasSubstr("unknown constant 'rotary_dim'"));
  EXPECT_THAT(errorOf(singleStep(
                  "gemv",
                  {{"n", int64_t(8)},
                   {"k", int64_t(8)},
                   {"bias", false},
                   {"norm", true},
                   {"residual", false},
                   {"gated", false},
                   {"epsilon", 1e-6},
                   {"unit_offset", true}},
                  {"bf16", "weight", "weight", "weight", "weight"}, {"bf16"})),
              HasSubstr("unknown constant 'unit_offset'"));
}

TEST(KernelSourceTest, UnknownTemplateIsAnError) {
  std::string message =
      errorOf(singleStep("softmax", {{"dim", int64_t(8)}}, {"bf16"}, {"bf16"}));
  EXPECT_THAT(message, HasSubstr("'softmax'"));
  message = errorOf(singleStep(
      "gemm", {{"n", int64_t(8)}, {"k", int64_t(8)}, {"bias", false}},
      {"bf16", "weight"}, {"bf16"}));
  EXPECT_THAT(message, HasSubstr("'gemm'"));
  EXPECT_THAT(message, HasSubstr("cuBLASLt"));
  std::vector<std::string> names = kernelTemplateNames();
  // 9 base templates, residual_norm, 2 attention_seq1 steps, silu_mul,
  // the two qkv_ templates, gemv (decode GEMMs), attention_flash and
  // gemm_rows (@step's GEMMs of few rows).
  EXPECT_EQ(names.size(), 18u);
  EXPECT_EQ(std::count(names.begin(), names.end(), "gemm"), 0);
}

TEST(KernelSourceTest, BadStepsAreErrors) {
  // A missing constant names the key.
  EXPECT_THAT(errorOf(singleStep("rms_norm", {{"dim", int64_t(8)}},
                                 {"bf16", "weight"}, {"bf16"})),
              HasSubstr("group"));
  // Operand counts.
  EXPECT_THAT(errorOf(singleStep("silu", {{"dim", int64_t(8)}},
                                 {"bf16", "bf16"}, {"bf16"})),
              HasSubstr("expects 1 inputs and 1 outputs"));
  // Positions must be an i32 buffer; activations must not be.
  EXPECT_THAT(
      errorOf(singleStep(
          "rope",
          {{"dim", int64_t(64)}, {"head_dim", int64_t(64)}, {"theta", 1e4}},
          {"bf16", "bf16"}, {"bf16"})),
      HasSubstr("'positions' has dtype bf16, expected i32"));
  EXPECT_THAT(
      errorOf(singleStep(
          "rope",
          {{"dim", int64_t(64)}, {"head_dim", int64_t(64)}, {"theta", 1e4}},
          {"bf16", "weight"}, {"bf16"})),
      HasSubstr("must be an i32 buffer"));
  EXPECT_THAT(
      errorOf(singleStep("silu", {{"dim", int64_t(8)}}, {"i32"}, {"bf16"})),
      HasSubstr("expected a float type"));
  // Shapes the kernels cannot split.
  EXPECT_THAT(errorOf(rmsNormStep(100, 64)), HasSubstr("multiple of group"));
  EXPECT_THAT(errorOf(singleStep("attention",
                                 {{"num_heads", int64_t(14)},
                                  {"num_kv_heads", int64_t(4)},
                                  {"head_dim", int64_t(64)},
                                  {"scale", 0.125},
                                  {"cache", std::string("kv")},
                                  {"layer", int64_t(0)}},
                                 {"bf16", "i32"}, {"bf16"})),
              HasSubstr("multiple of num_kv_heads"));
  // An unknown cache.
  EXPECT_THAT(errorOf(singleStep("cache_write",
                                 {{"dim", int64_t(8)},
                                  {"cache", std::string("other")},
                                  {"layer", int64_t(0)}},
                                 {"bf16", "bf16", "i32"}, {})),
              HasSubstr("no KV cache 'other'"));
  // A step whose template is fine but whose plan has no cache at all.
  SingleStep noCache = rmsNormStep();
  noCache.plan.caches.clear();
  EXPECT_THAT(errorOf(noCache), HasSubstr("no KV cache"));
}

} // namespace
} // namespace treni
