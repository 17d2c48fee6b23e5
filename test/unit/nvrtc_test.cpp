//===- nvrtc_test.cpp - every generated kernel compiles; the cubin cache --===//
//
// Needs NVRTC but no GPU. Compiles every distinct kernel of the three fixture
// plans (their own dtype and bf16, as the GPU runs them) and of shape-only
// builds of the full-size models the GPU machine runs, for sm_80 and sm_90a.
// Then checks the on-disk cache: hits compile nothing, the arch is part of
// the key, corrupt files are rebuilt, NVRTC errors carry the program log.
//
//===----------------------------------------------------------------------===//

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "codegen/KernelSource.h"
#include "codegen/mlir/Compiler.h"
#include "codegen/mlir/PlanBuilder.h"
#include "frontends/safetensors/builder.h"
#include "mlir/Pass/PassManager.h"
#include "passes/Passes.h"
#include "runtime/exec/nvrtc_compiler.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

/// A fresh, empty directory under the test temp dir, removed at destruction.
class TempDir {
public:
  explicit TempDir(const std::string &name)
      : path_(fs::path(::testing::TempDir()) /
              (name + "." + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  std::string path() const { return path_.string(); }

private:
  fs::path path_;
};

Plan fixturePlan(const std::string &name, std::optional<DType> dtype,
                 std::vector<std::string> disabled = {}) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.activationDtype = dtype;
  options.disabledPasses = std::move(disabled);
  auto compiled =
      compileModelDir(context, testing_util::fixtureDir(name), options);
  EXPECT_TRUE(compiled.ok()) << name << ": " << compiled.status();
  return compiled.ok() ? compiled->plan : Plan();
}

/// Shape-only build (no checkpoint) of a config.json text, through the
/// default pipeline, in bf16.
Plan shapeOnlyPlan(const std::string &name, const std::string &configJson) {
  auto config = parseModelConfig(configJson, name + "/config.json");
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok())
    return Plan();
  mlir::MLIRContext context;
  loadTreniDialects(context);
  BuildOptions build;
  build.activationDtype = DType::BF16;
  auto module = buildModule(context, *config, nullptr, build);
  EXPECT_TRUE(module.ok()) << module.status();
  if (!module.ok())
    return Plan();
  mlir::PassManager pm(&context);
  EXPECT_TRUE(succeeded(buildDefaultPipeline(pm, {})));
  EXPECT_TRUE(succeeded(pm.run(**module))) << name;
  auto plan = buildPlan(**module);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : Plan();
}

// The real shapes of GPU.md, as config.json texts.
const char *kQwen25_05B = R"({
  "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
  "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
  "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 32768,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "hidden_act": "silu", "dtype": "bfloat16"})";
const char *kQwen25_3B = R"({
  "architectures": ["Qwen2ForCausalLM"], "hidden_size": 2048,
  "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
  "intermediate_size": 11008, "vocab_size": 151936, "max_position_embeddings": 32768,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "hidden_act": "silu", "dtype": "bfloat16"})";
const char *kQwen25_7B = R"({
  "architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584,
  "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
  "intermediate_size": 18944, "vocab_size": 152064, "max_position_embeddings": 32768,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false,
  "hidden_act": "silu", "dtype": "bfloat16"})";
const char *kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
  "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
  "head_dim": 64, "intermediate_size": 8192, "vocab_size": 128256,
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 32.0,
  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
  "original_max_position_embeddings": 8192}, "tie_word_embeddings": true,
  "hidden_act": "silu", "attention_bias": false, "mlp_bias": false,
  "dtype": "bfloat16"})";
const char *kQwen3_06B = R"({
  "architectures": ["Qwen3ForCausalLM"], "hidden_size": 1024,
  "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
  "head_dim": 128, "intermediate_size": 3072, "vocab_size": 151936,
  "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "tie_word_embeddings": true, "hidden_act": "silu", "attention_bias": false,
  "dtype": "bfloat16"})";

// Tests that every kernel codegen emits for the fixtures and the full-size
// models compiles for sm_80 and sm_90a.
TEST(NvrtcTest, EveryGeneratedKernelCompiles) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, Plan>> plans;
  for (const char *fixture : {"qwen2", "llama", "qwen3"}) {
    plans.emplace_back(fixture, fixturePlan(fixture, std::nullopt));
    plans.emplace_back(std::string(fixture) + " (bf16)",
                       fixturePlan(fixture, DType::BF16));
    // The unfused templates (silu, mul, rope, cache_write) stay compiled:
    // --disable-pass must keep working on the GPU.
    plans.emplace_back(
        std::string(fixture) + " (bf16, unfused)",
        fixturePlan(fixture, DType::BF16,
                    {"treni-fuse-ffn-act", "treni-fuse-qkv-split-bias"}));
  }
  plans.emplace_back("Qwen2.5-0.5B",
                     shapeOnlyPlan("Qwen2.5-0.5B", kQwen25_05B));
  plans.emplace_back("Qwen2.5-3B", shapeOnlyPlan("Qwen2.5-3B", kQwen25_3B));
  plans.emplace_back("Qwen2.5-7B", shapeOnlyPlan("Qwen2.5-7B", kQwen25_7B));
  plans.emplace_back("Llama-3.2-1B",
                     shapeOnlyPlan("Llama-3.2-1B", kLlama32_1B));
  plans.emplace_back("Qwen3-0.6B", shapeOnlyPlan("Qwen3-0.6B", kQwen3_06B));
  double planSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  // Distinct kernels over all plans; who uses each (for failure messages).
  std::map<std::string, KernelSpec> kernels;
  std::map<std::string, std::string> users;
  std::map<std::string, int> perTemplate;
  for (const auto &[name, plan] : plans) {
    ASSERT_FALSE(plan.functions.empty()) << name;
    auto generated = generateAllKernels(plan);
    ASSERT_TRUE(generated.ok()) << name << ": " << generated.status();
    EXPECT_GE(generated->size(), 7u) << name; // one per template but gemm
    for (KernelSpec &kernel : *generated) {
      users[kernel.entry] += (users[kernel.entry].empty() ? "" : ", ") + name;
      kernels.emplace(kernel.entry, std::move(kernel));
    }
  }
  for (const auto &[entry, kernel] : kernels)
    ++perTemplate[entry.substr(6, entry.rfind('_') - 6)];
  for (const char *name :
       {"embedding", "rms_norm", "rope", "cache_write", "attention", "silu",
        "mul", "silu_mul", "add", "take_last", "qkv_rope_cache",
        "qkv_norm_rope_cache"})
    EXPECT_GT(perTemplate[name], 0) << name;
  // treni-fuse-residual-norm and treni-specialize-seq1-attention (default
  // pipeline): their kernels are compiled at every shape above too.
  // ... and treni-specialize-flash-attention's prefill attention (bf16).
  // ... and @step's GEMMs of few rows (gemm_rows, bf16).
  for (const char *name :
       {"residual_norm", "attention_seq1_partial", "attention_seq1_reduce",
        "attention_flash", "gemm_rows"})
    EXPECT_GT(perTemplate[name], 0) << name;
  EXPECT_LT(kernels.size(), 300u) << "dedup is not working";

  // Two workers: CI has two cores and NVRTC calls are independent.
  TempDir cache("nvrtc_all");
  KernelCompiler compiler(cache.path());
  std::vector<std::pair<const KernelSpec *, std::string>> jobs;
  for (const auto &[entry, kernel] : kernels)
    for (const char *arch : {"sm_80", "sm_90a"})
      jobs.emplace_back(&kernel, arch);
  std::vector<std::string> failures(jobs.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < jobs.size();) {
      auto cubin = compiler.cubin(jobs[i].first->source, jobs[i].second);
      if (!cubin.ok())
        failures[i] = std::string(cubin.status().message());
      else if (cubin->size() < 4 || cubin->compare(0, 4,
                                                   "\x7f"
                                                   "ELF") != 0)
        failures[i] = "not an ELF cubin";
    }
  };
  std::thread helper(work);
  work();
  helper.join();
  for (size_t i = 0; i < jobs.size(); ++i)
    EXPECT_EQ(failures[i], "")
        << jobs[i].first->entry << " for " << jobs[i].second << " (used by "
        << users[jobs[i].first->entry] << ")";
  EXPECT_EQ(compiler.compiles(), int64_t(jobs.size()));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("%zu plans, %zu distinct kernels, %zu NVRTC compiles "
              "(sm_80 + sm_90a, NVRTC %s): plans %.1f s, total %.1f s\n",
              plans.size(), kernels.size(), jobs.size(), nvrtcVersion().c_str(),
              planSeconds, seconds);
}

/// The attention_flash step of one layer: `heads` query heads over
/// `kvHeads` KV heads of `headDim`, `dtype` activations and cache.
std::pair<Plan, PlanStep> flashStep(int64_t heads, int64_t kvHeads,
                                    int64_t headDim, const std::string &dtype) {
  Plan plan;
  plan.caches.push_back({"kv", 1, kvHeads, headDim, dtype});
  PlanFunction function;
  function.name = "prefill";
  function.buffers = {{dtype, {-1, heads * headDim}, true, 0},
                      {"i32", {-1}, true, 0},
                      {dtype, {-1, heads * headDim}, true, 0}};
  PlanStep step;
  step.templateName = "attention_flash";
  step.origin = "test";
  step.constants = {
      {"num_heads", heads},         {"num_kv_heads", kvHeads},
      {"head_dim", headDim},        {"scale", 1.0 / std::sqrt(double(headDim))},
      {"cache", std::string("kv")}, {"layer", int64_t(0)}};
  step.inputs = {{PlanOperand::Kind::Buffer, 0},
                 {PlanOperand::Kind::Buffer, 1}};
  step.outputs = {2};
  function.steps = {step};
  plan.functions = {function};
  return {plan, step};
}

// Tests that the flash prefill attention compiles for every head dim the
// issue names (64, 80, 96, 128), bf16 and f16, with GQA groups of 1-8, for
// sm_80 (mma.sync) and sm_90a (Hopper with its arch-specific features), and
// that its launch packs the group's heads: ceil(rows * group / 128) blocks
// per KV head, shared memory for the Q tile and two K and two V tiles of 64
// keys; 4 warps of two 16-vector tiles, or 8 warps of one where a 2048-row
// chunk's grid is under two blocks per H100 SM (14 heads over 2 KV heads:
// 224 blocks).
TEST(NvrtcTest, FlashAttentionCompilesForEveryHeadDim) {
  KernelCompiler compiler("");
  for (int64_t headDim : {64, 80, 96, 128})
    for (const char *dtype : {"bf16", "f16"}) {
      int64_t heads = headDim == 128 ? 32 : 14,
              kvHeads = headDim == 128 ? 4 : 2;
      auto [plan, step] = flashStep(heads, kvHeads, headDim, dtype);
      auto kernel = generateKernel(plan, plan.functions[0], step);
      ASSERT_TRUE(kernel.ok()) << kernel.status();
      EXPECT_EQ(kernel->launch.blocksX, kvHeads);
      EXPECT_EQ(kernel->launch.gridY(100),
                (100 * (heads / kvHeads) + 127) / 128);
      EXPECT_EQ(kernel->launch.sharedBytes, (128 + 4 * 64) * (headDim + 8) * 2);
      EXPECT_EQ(kernel->launch.threads, kvHeads == 2 ? 256 : 128);
      for (const char *arch : {"sm_80", "sm_90a"}) {
        // The launch rule takes mma.sync everywhere; asked for, Hopper's "a"
        // target takes the wgmma path for head dims 64 and 128 (the
        // assertions are compiled into the kernels' sources).
        bool wgmma =
            std::string(arch) == "sm_90a" && (headDim == 64 || headDim == 128);
        std::string source =
            kernel->source + "\nstatic_assert(!kFlashWgmma, \"path\");\n";
        auto cubin = compiler.cubin(source, arch);
        EXPECT_TRUE(cubin.ok()) << "head_dim " << headDim << " " << dtype << " "
                                << arch << ": " << cubin.status();
        // The other tilings treni-attention-bench measures (eight warps of
        // one tile, the rule's for small grids; 128-key tiles), on mma.sync
        // and, where the target is sm_90a, on wgmma.
        for (bool useWgmma : {false, true})
          for (FlashTiling tiling :
               {FlashTiling{.warps = 8, .mTiles = 1, .wgmma = useWgmma},
                FlashTiling{.warps = 4, .blockN = 128, .wgmma = useWgmma}}) {
            auto tiled =
                generateKernel(plan, plan.functions[0], step,
                               flashGeometry(heads, kvHeads, headDim, tiling));
            ASSERT_TRUE(tiled.ok()) << tiled.status();
            EXPECT_EQ(tiled->launch.threads, tiling.warps * 32);
            std::string source =
                tiled->source +
                absl::StrCat("\nstatic_assert(kFlashWgmma == ",
                             wgmma && useWgmma ? "true" : "false",
                             " && kBlockN == ", tiling.blockN,
                             ", \"path\");\n");
            auto tiledCubin = compiler.cubin(source, arch);
            EXPECT_TRUE(tiledCubin.ok())
                << "head_dim " << headDim << " " << dtype << " " << arch << ", "
                << tiling.warps << " warps, " << tiling.blockN
                << " keys, wgmma " << useWgmma << ": " << tiledCubin.status();
          }
      }
    }
  // A head dim outside the kernel's is refused by the launch rule.
  auto [plan, step] = flashStep(4, 2, 24, "bf16");
  auto refused = generateKernel(plan, plan.functions[0], step);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()),
              testing::HasSubstr("head_dim 24 is not a multiple of 16"));
}

/// A @step of one layer's split-KV decode attention: `heads` query heads
/// over `kvHeads` KV heads of `headDim`, `dtype` activations and cache;
/// steps attention_seq1_partial (query, positions -> partials) and
/// attention_seq1_reduce (partials -> out).
Plan seq1StepPlan(int64_t heads, int64_t kvHeads, int64_t headDim,
                  const std::string &dtype) {
  Plan plan;
  plan.caches.push_back({"kv", 1, kvHeads, headDim, dtype});
  PlanFunction function;
  function.name = "step";
  function.buffers = {{dtype, {-1, heads * headDim}, true, 0},
                      {"i32", {-1}, true, 0},
                      {"f32", {-1, heads * 4 * (headDim + 2)}, true, 0},
                      {dtype, {-1, heads * headDim}, true, 0}};
  PlanStep partial;
  partial.templateName = "attention_seq1_partial";
  partial.origin = "test";
  partial.constants = {
      {"num_heads", heads},       {"num_kv_heads", kvHeads},
      {"head_dim", headDim},      {"scale", 1.0 / std::sqrt(double(headDim))},
      {"num_splits", int64_t(4)}, {"cache", std::string("kv")},
      {"layer", int64_t(0)}};
  partial.inputs = {{PlanOperand::Kind::Buffer, 0},
                    {PlanOperand::Kind::Buffer, 1}};
  partial.outputs = {2};
  PlanStep reduce;
  reduce.templateName = "attention_seq1_reduce";
  reduce.origin = "test";
  reduce.constants = {
      {"num_heads", heads}, {"head_dim", headDim}, {"num_splits", int64_t(4)}};
  reduce.inputs = {{PlanOperand::Kind::Buffer, 2}};
  reduce.outputs = {3};
  function.steps = {partial, reduce};
  plan.functions = {function};
  return plan;
}

// Tests that decode attention's tensor-core path (kTensorCores, chosen at
// run time by GpuOptions::seq1TensorCores) compiles for the group sizes and
// head dims it takes (groups of 2-16 heads, head dims 64 and 128, bf16 and
// f16, paged or not: the same source) on sm_80 and sm_90a, and that the
// launch rule leaves it off; a head dim of 80 keeps the CUDA-core path.
TEST(NvrtcTest, Seq1AttentionTensorCorePathCompiles) {
  KernelCompiler compiler("");
  for (auto [heads, kvHeads, headDim] :
       {std::tuple{28, 4, 128}, std::tuple{14, 2, 64}, std::tuple{16, 1, 128},
        std::tuple{16, 8, 64}, std::tuple{10, 2, 80}})
    for (const char *dtype : {"bf16", "f16"}) {
      Plan plan = seq1StepPlan(heads, kvHeads, headDim, dtype);
      const PlanStep &step = plan.functions[0].steps[0];
      auto geometry = findKernelTemplate(step.templateName)->geometry(step);
      ASSERT_TRUE(geometry.ok()) << geometry.status();
      bool found = false;
      for (DerivedConstant &constant : geometry->constants)
        if (constant.name == "kTensorCores") {
          EXPECT_EQ(std::get<int64_t>(constant.value), 0); // off by rule
          constant.value = int64_t(1);
          found = true;
        }
      ASSERT_TRUE(found);
      auto kernel = generateKernel(plan, plan.functions[0], step, *geometry);
      ASSERT_TRUE(kernel.ok()) << kernel.status();
      std::string source =
          kernel->source + absl::StrCat("\nstatic_assert(kSeq1Mma == ",
                                        headDim % 64 == 0 ? "true" : "false",
                                        ", \"path\");\n");
      for (const char *arch : {"sm_80", "sm_90a"}) {
        auto cubin = compiler.cubin(source, arch);
        EXPECT_TRUE(cubin.ok())
            << heads << "/" << kvHeads << " heads, " << headDim << " " << dtype
            << " " << arch << ": " << cubin.status();
      }
    }
}

// Tests that Qwen3.5's variants compile for sm_80 and sm_90a, in bf16 and
// f32: rms_norm with unit_offset (a full row of 1024 and a per-head group of
// 256) and rope with rotary_dim 64 of head_dim 256 (and 256 of 256).
TEST(NvrtcTest, UnitOffsetNormAndPartialRopeCompile) {
  KernelCompiler compiler("");
  for (const char *dtype : {"bf16", "f32"}) {
    Plan plan;
    plan.caches.push_back({"kv", 1, 2, 256, dtype});
    PlanFunction function;
    function.name = "prefill";
    function.buffers = {{dtype, {-1, 1024}, true, 0},
                        {"i32", {-1}, true, 0},
                        {dtype, {-1, 1024}, true, 0}};
    plan.weights.push_back({"w", "model.safetensors", 0, "F32", {1024}});
    auto norm = [&](int64_t group) {
      PlanStep step;
      step.templateName = "rms_norm";
      step.origin = "test";
      step.constants = {{"dim", int64_t(1024)},
                        {"group", group},
                        {"epsilon", 1e-6},
                        {"unit_offset", true}};
      step.inputs = {{PlanOperand::Kind::Buffer, 0},
                     {PlanOperand::Kind::Weight, 0}};
      step.outputs = {2};
      return step;
    };
    auto rope = [&](int64_t rotaryDim) {
      PlanStep step;
      step.templateName = "rope";
      step.origin = "test";
      step.constants = {{"dim", int64_t(1024)},
                        {"head_dim", int64_t(256)},
                        {"rotary_dim", rotaryDim},
                        {"theta", 1e7}};
      step.inputs = {{PlanOperand::Kind::Buffer, 0},
                     {PlanOperand::Kind::Buffer, 1}};
      step.outputs = {2};
      return step;
    };
    function.steps = {norm(1024), norm(256), rope(64), rope(256)};
    plan.functions = {function};
    for (const PlanStep &step : plan.functions[0].steps) {
      auto kernel = generateKernel(plan, plan.functions[0], step);
      ASSERT_TRUE(kernel.ok()) << kernel.status();
      for (const char *arch : {"sm_80", "sm_90a"}) {
        auto cubin = compiler.cubin(kernel->source, arch);
        EXPECT_TRUE(cubin.ok()) << step.templateName << " " << dtype << " "
                                << arch << ": " << cubin.status();
      }
    }
  }
}

// Tests the kernel that computes a batched step's prompt-chunk rows in
// place of an attention_seq1_partial / reduce pair (GpuOptions::chunkFlash):
// it is attention_flash with the pair's query, positions and output, it
// compiles on sm_80 and sm_90a and is listed among the plan's kernels for
// ahead-of-time compilation; a 32-bit cache keeps the split-KV kernels
// (Unimplemented), and a step that is not such a pair is refused.
TEST(NvrtcTest, StepChunkFlashStandsInForTheSplitKvPair) {
  KernelCompiler compiler("");
  for (auto [heads, kvHeads, headDim, dtype] :
       {std::tuple{28, 4, 128, "bf16"}, std::tuple{14, 2, 64, "f16"},
        std::tuple{4, 2, 16, "bf16"}, std::tuple{4, 2, 16, "f32"}}) {
    Plan plan = seq1StepPlan(heads, kvHeads, headDim, dtype);
    const PlanFunction &step = plan.functions[0];
    EXPECT_EQ(chunkAttentionReduce(step, step.steps[0]), &step.steps[1]);
    EXPECT_EQ(chunkAttentionReduce(step, step.steps[1]), nullptr);
    auto kernel = generateStepChunkAttentionKernel(plan, step, step.steps[0],
                                                   step.steps[1]);
    auto all = generateAllKernels(plan);
    ASSERT_TRUE(all.ok()) << all.status();
    if (std::string(dtype) == "f32") {
      EXPECT_EQ(kernel.status().code(), absl::StatusCode::kUnimplemented);
      EXPECT_EQ(all->size(), 2u); // the pair only
      continue;
    }
    ASSERT_TRUE(kernel.ok()) << kernel.status();
    EXPECT_THAT(kernel->entry, testing::StartsWith("treni_attention_flash_"));
    EXPECT_EQ(kernel->launch.blocksX, kvHeads);
    EXPECT_TRUE(kernel->usesCache);
    ASSERT_EQ(all->size(), 3u);
    EXPECT_EQ((*all)[1].entry, kernel->entry);
    EXPECT_THAT(kernel->source,
                testing::HasSubstr(absl::StrCat("using out_type = ", dtype)));
    for (const char *arch : {"sm_80", "sm_90a"}) {
      auto cubin = compiler.cubin(kernel->source, arch);
      EXPECT_TRUE(cubin.ok())
          << heads << "/" << kvHeads << " heads, " << headDim << " " << dtype
          << " " << arch << ": " << cubin.status();
    }
  }
  Plan plan;
  plan.caches.push_back({"kv", 1, 2, 16, "bf16"});
  PlanFunction function;
  function.name = "step";
  PlanStep gemm;
  gemm.templateName = "gemm";
  function.steps = {gemm, gemm};
  auto refused = generateStepChunkAttentionKernel(plan, function, gemm, gemm);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
}

// Tests the target per compute capability: Hopper gets its "a" target
// (attention_flash's wgmma path), the others the plain one.
TEST(NvrtcTest, TargetForComputeCapability) {
  EXPECT_EQ(nvrtcTargetFor(8, 0), "sm_80");
  EXPECT_EQ(nvrtcTargetFor(8, 9), "sm_89");
  EXPECT_EQ(nvrtcTargetFor(9, 0), "sm_90a");
  EXPECT_EQ(nvrtcTargetFor(10, 0), "sm_100");
}

const char *kSmallKernel = R"(// test kernel
extern "C" __global__ void treni_test(float *out, int rows) {
  out[threadIdx.x] = sinf(float(rows));
})";

std::string readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Tests that a second request for the same source and arch is served from
// the disk cache (also by a new compiler, as in a second process), and that
// another arch is a miss.
TEST(NvrtcTest, CacheHitsCompileNothing) {
  TempDir cache("nvrtc_hits");
  KernelCompiler compiler(cache.path());
  auto first = compiler.cubin(kSmallKernel, "sm_90");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(compiler.compiles(), 1);
  EXPECT_EQ(compiler.cacheHits(), 0);
  EXPECT_TRUE(fs::exists(compiler.cachePath(kSmallKernel, "sm_90")));

  auto second = compiler.cubin(kSmallKernel, "sm_90");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, *first);
  EXPECT_EQ(compiler.compiles(), 1);
  EXPECT_EQ(compiler.cacheHits(), 1);

  KernelCompiler another(cache.path());
  auto third = another.cubin(kSmallKernel, "sm_90");
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(*third, *first);
  EXPECT_EQ(another.compiles(), 0);
  EXPECT_EQ(another.cacheHits(), 1);

  auto otherArch = compiler.cubin(kSmallKernel, "sm_80");
  ASSERT_TRUE(otherArch.ok()) << otherArch.status();
  EXPECT_EQ(compiler.compiles(), 2);
  EXPECT_NE(*otherArch, *first);
  EXPECT_NE(compiler.cachePath(kSmallKernel, "sm_80"),
            compiler.cachePath(kSmallKernel, "sm_90"));
  // One byte of source changes the key.
  EXPECT_NE(compiler.cachePath(std::string(kSmallKernel) + " ", "sm_90"),
            compiler.cachePath(kSmallKernel, "sm_90"));

  // No temporary files are left behind.
  for (const auto &entry : fs::recursive_directory_iterator(cache.path()))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos)
        << entry.path();
}

// Tests that corrupt, truncated and foreign cache files are recompiled and
// replaced by an intact one.
TEST(NvrtcTest, CorruptCacheFileIsRebuilt) {
  TempDir cache("nvrtc_corrupt");
  KernelCompiler compiler(cache.path());
  auto good = compiler.cubin(kSmallKernel, "sm_90");
  ASSERT_TRUE(good.ok()) << good.status();
  std::string path = compiler.cachePath(kSmallKernel, "sm_90");
  std::string intact = readBytes(path);
  ASSERT_GT(intact.size(), good->size());

  std::string flipped = intact;
  flipped[flipped.size() - 10] ^= 0x5a;
  std::vector<std::string> damaged = {
      flipped,   intact.substr(0, intact.size() / 2), "",
      "garbage", intact.substr(0, intact.find('\n')), *good /* a bare cubin */};
  int64_t compiles = compiler.compiles();
  for (size_t i = 0; i < damaged.size(); ++i) {
    writeBytes(path, damaged[i]);
    auto rebuilt = compiler.cubin(kSmallKernel, "sm_90");
    ASSERT_TRUE(rebuilt.ok()) << i << ": " << rebuilt.status();
    EXPECT_EQ(*rebuilt, *good) << i;
    EXPECT_EQ(compiler.compiles(), ++compiles) << i;
    EXPECT_EQ(readBytes(path), intact) << i;
  }
  EXPECT_EQ(compiler.cacheHits(), 0);
}

// Tests that an NVRTC compile error is a status naming the call and carrying
// the program log, and that nothing is cached for it.
TEST(NvrtcTest, InvalidSourceReportsTheLog) {
  TempDir cache("nvrtc_invalid");
  KernelCompiler compiler(cache.path());
  std::string source = "// treni kernel: broken\n"
                       "extern \"C\" __global__ void broken(float *out) {\n"
                       "  out[0] = undefined_thing;\n}\n";
  auto cubin = compiler.cubin(source, "sm_90");
  ASSERT_FALSE(cubin.ok());
  std::string message(cubin.status().message());
  EXPECT_THAT(message, HasSubstr("nvrtcCompileProgram"));
  EXPECT_THAT(message, HasSubstr("NVRTC_ERROR_COMPILATION"));
  EXPECT_THAT(message, HasSubstr("undefined_thing"));
  EXPECT_THAT(message, HasSubstr("is undefined"));
  EXPECT_THAT(message, HasSubstr("// treni kernel: broken"));
  EXPECT_EQ(compiler.compiles(), 1);
  EXPECT_FALSE(fs::exists(compiler.cachePath(source, "sm_90")));
  // Still an error the second time (errors are not cached).
  EXPECT_FALSE(compiler.cubin(source, "sm_90").ok());
  EXPECT_EQ(compiler.compiles(), 2);
}

TEST(NvrtcTest, RejectsBadArch) {
  KernelCompiler compiler("");
  for (const char *arch : {"", "sm90", "compute_90", "sm_", "sm_9x", "90"}) {
    auto cubin = compiler.cubin(kSmallKernel, arch);
    ASSERT_FALSE(cubin.ok()) << arch;
    EXPECT_EQ(cubin.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(compiler.compiles(), 0);
}

// Tests that "" disables the disk cache: every request compiles.
TEST(NvrtcTest, EmptyCacheDirDisablesTheCache) {
  KernelCompiler compiler("");
  EXPECT_EQ(compiler.cachePath(kSmallKernel, "sm_90"), "");
  ASSERT_TRUE(compiler.cubin(kSmallKernel, "sm_90").ok());
  ASSERT_TRUE(compiler.cubin(kSmallKernel, "sm_90").ok());
  EXPECT_EQ(compiler.compiles(), 2);
  EXPECT_EQ(compiler.cacheHits(), 0);
}

TEST(NvrtcTest, DefaultCacheDir) {
  std::string saved =
      getenv("TRENI_CACHE_DIR") ? getenv("TRENI_CACHE_DIR") : "";
  bool had = getenv("TRENI_CACHE_DIR") != nullptr;
  setenv("TRENI_CACHE_DIR", "/some/where", 1);
  EXPECT_EQ(KernelCompiler::defaultCacheDir(), "/some/where");
  unsetenv("TRENI_CACHE_DIR");
  if (const char *home = getenv("HOME"))
    EXPECT_EQ(KernelCompiler::defaultCacheDir(),
              std::string(home) + "/.cache/treni");
  if (had)
    setenv("TRENI_CACHE_DIR", saved.c_str(), 1);
}

TEST(NvrtcTest, VersionAndOptions) {
  EXPECT_THAT(nvrtcVersion(), ::testing::MatchesRegex("[0-9]+\\.[0-9]+"));
  auto options = KernelCompiler::options("sm_80");
  EXPECT_THAT(options, ::testing::Contains("--gpu-architecture=sm_80"));
  for (const std::string &option : options)
    EXPECT_EQ(option.find("fast"), std::string::npos) << option;
}

TEST(NvrtcTest, Sha256KnownAnswers) {
  EXPECT_EQ(sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

} // namespace
} // namespace treni
