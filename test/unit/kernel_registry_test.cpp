//===- kernel_registry_test.cpp - the kernel template table --------------===//
//
// The registry against its three readers: the template files of
// codegen/kernels, the constants treni-outline-kernels attaches to the
// fixture models' steps, and the CPU executor's reference functions.
//
//===----------------------------------------------------------------------===//

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "codegen/KernelRegistry.h"
#include "codegen/KernelSource.h"
#include "codegen/mlir/Compiler.h"
#include "runtime/exec/cpu_kernels.h"
#include "test/unit/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace treni {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string readFile(const fs::path &path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string withoutSpace(std::string_view text) {
  std::string out;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c)))
      out += c;
  return out;
}

// Tests that every codegen/kernels/*.cuh is a template with an entry, a part
// an entry names, or common.cuh, and that every entry with a CUDA template
// has its file, declaring TRENI_ENTRY with the parameters the entry implies;
// the embedded texts are the files.
TEST(KernelRegistryTest, TemplateFilesMatchEntries) {
  fs::path dir = fs::path(TRENI_SOURCE_DIR) / "codegen" / "kernels";
  std::set<std::string> files;
  for (const fs::directory_entry &file : fs::directory_iterator(dir))
    if (file.path().extension() == ".cuh")
      files.insert(file.path().stem().string());

  std::set<std::string> templates, parts;
  for (const KernelTemplate &kernel : kernelTemplates()) {
    if (kernel.hasCudaTemplate())
      templates.insert(kernel.name);
    parts.insert(kernel.parts.begin(), kernel.parts.end());
  }
  std::set<std::string> expected = templates;
  expected.insert(parts.begin(), parts.end());
  expected.insert("common");
  EXPECT_EQ(files, expected);
  EXPECT_EQ(templates.size(), kernelTemplateNames().size());

  for (const std::string &name : files) {
    SCOPED_TRACE(name);
    std::string text = readFile(dir / (name + ".cuh"));
    auto embedded = kernelFileText(name);
    ASSERT_TRUE(embedded.has_value());
    EXPECT_EQ(*embedded, text);
    if (!templates.count(name)) {
      EXPECT_EQ(text.find("TRENI_ENTRY"), std::string::npos);
      continue;
    }
    std::string declaration = withoutSpace(absl::StrCat(
        "TRENI_ENTRY(", kernelParameterList(*findKernelTemplate(name)), ")"));
    EXPECT_NE(withoutSpace(text).find(declaration), std::string::npos)
        << declaration;
  }
}

// Tests the entries' own rules: unique names and keys, `cache` and `layer`
// exactly on the templates that use the cache (and the only constants not
// specialised), RoPE tables only with head_dim and theta, an optional operand
// only where there is no CUDA template, guarded by a required bool.
TEST(KernelRegistryTest, EntriesAreConsistent) {
  std::set<std::string> names;
  for (const KernelTemplate &kernel : kernelTemplates()) {
    SCOPED_TRACE(kernel.name);
    EXPECT_TRUE(names.insert(kernel.name).second);
    std::set<std::string> keys;
    for (const KernelConstant &constant : kernel.constants) {
      EXPECT_TRUE(keys.insert(constant.key).second) << constant.key;
      bool cacheKey = constant.key == "cache" || constant.key == "layer";
      EXPECT_EQ(!constant.specialise, cacheKey) << constant.key;
    }
    const KernelConstant *cache = kernel.constant("cache");
    const KernelConstant *layer = kernel.constant("layer");
    EXPECT_EQ(cache != nullptr, kernel.usesCache);
    EXPECT_EQ(layer != nullptr, kernel.usesCache);
    if (cache && layer) {
      EXPECT_EQ(cache->kind, ConstantKind::Symbol);
      EXPECT_EQ(layer->kind, ConstantKind::Int);
    }
    if (kernel.ropeFrequencies) {
      EXPECT_NE(kernel.constant("head_dim"), nullptr);
      EXPECT_NE(kernel.constant("theta"), nullptr);
    }
    for (const KernelOperand &operand : kernel.inputs) {
      if (operand.presentWhen.empty())
        continue;
      EXPECT_FALSE(kernel.hasCudaTemplate()) << operand.name;
      const KernelConstant *flag = kernel.constant(operand.presentWhen);
      ASSERT_NE(flag, nullptr) << operand.presentWhen;
      EXPECT_EQ(flag->kind, ConstantKind::Bool);
      EXPECT_FALSE(flag->optional);
    }
  }
  // gemm is the one step without a CUDA template.
  EXPECT_EQ(names.size(), kernelTemplateNames().size() + 1);
  EXPECT_FALSE(findKernelTemplate("gemm")->hasCudaTemplate());
  EXPECT_EQ(findKernelTemplate("softmax"), nullptr);
}

// Tests that every entry has a CPU reference function and every reference
// function an entry.
TEST(KernelRegistryTest, CpuReferenceForEveryEntry) {
  std::vector<std::string> cpu = cpu::stepKernelNames();
  std::set<std::string> cpuNames(cpu.begin(), cpu.end());
  EXPECT_EQ(cpuNames.size(), cpu.size());
  std::set<std::string> entries;
  for (const KernelTemplate &kernel : kernelTemplates()) {
    entries.insert(kernel.name);
    EXPECT_NE(cpu::findStepKernel(kernel.name), nullptr) << kernel.name;
  }
  EXPECT_EQ(cpuNames, entries);
  EXPECT_EQ(cpu::findStepKernel("softmax"), nullptr);
}

Plan fixturePlan(const std::string &name,
                 std::vector<std::string> disabledPasses) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses = std::move(disabledPasses);
  auto compiled =
      compileModelDir(context, testing_util::fixtureDir(name), options);
  EXPECT_TRUE(compiled.ok()) << name << ": " << compiled.status();
  return compiled.ok() ? compiled->plan : Plan();
}

// Tests the constants treni-outline-kernels attaches to the steps of the
// fixture models, with every fusion and with none (together they use every
// template): each is declared by the step's entry with the kind it has, each
// required one is there, and each optional one is attached by some step.
TEST(KernelRegistryTest, OutlinedConstantsMatchTheTable) {
  const std::vector<std::string> fusions = {
      "treni-fuse-qkv-split-bias", "treni-fuse-ffn-act",
      "treni-fuse-residual-norm", "treni-specialize-seq1-attention",
      "treni-fuse-matvec"};
  std::map<std::string, std::set<std::string>> attached; // template -> keys
  for (const char *name : {"qwen2", "llama", "qwen3"})
    for (bool fused : {true, false}) {
      SCOPED_TRACE(absl::StrCat(name, fused ? "" : " (unfused)"));
      Plan plan =
          fixturePlan(name, fused ? std::vector<std::string>{} : fusions);
      ASSERT_FALSE(plan.functions.empty());
      for (const PlanFunction &function : plan.functions)
        for (const PlanStep &step : function.steps) {
          SCOPED_TRACE(step.templateName + " from " + step.origin);
          const KernelTemplate *kernel = findKernelTemplate(step.templateName);
          ASSERT_NE(kernel, nullptr);
          for (const auto &[key, value] : step.constants) {
            const KernelConstant *constant = kernel->constant(key);
            ASSERT_NE(constant, nullptr) << key << " is not in the table";
            EXPECT_TRUE(hasKind(value, constant->kind)) << key;
            attached[kernel->name].insert(key);
          }
          for (const KernelConstant &constant : kernel->constants) {
            if (!constant.optional) {
              EXPECT_TRUE(step.constants.count(constant.key)) << constant.key;
            }
          }
          EXPECT_TRUE(checkStep(*kernel, step).ok())
              << checkStep(*kernel, step);
        }
    }
  // Every template has a fixture step; every optional constant is attached
  // somewhere (Llama 3's RoPE scaling by the llama fixture; no fixture has
  // both it and a q/k norm).
  std::set<std::string> optional, attachedAnywhere;
  for (const KernelTemplate &kernel : kernelTemplates()) {
    // gemm_rows has no op: the runtime derives it from gemm steps
    // (generateGemmRowsKernel; kernel_source_test and gemm_rows_test).
    EXPECT_TRUE(attached.count(kernel.name) || kernel.name == "gemm_rows")
        << kernel.name;
    for (const KernelConstant &constant : kernel.constants)
      if (constant.optional)
        optional.insert(constant.key);
    attachedAnywhere.insert(attached[kernel.name].begin(),
                            attached[kernel.name].end());
  }
  // Qwen3.5's rms_norm unit_offset and rope rotary_dim have no fixture until
  // its builder emits them (issue 18); treni-outline-kernels.mlir attaches
  // both.
  const std::set<std::string> noFixtureYet = {"unit_offset", "rotary_dim"};
  for (const std::string &key : optional)
    EXPECT_TRUE(attachedAnywhere.count(key) || noFixtureYet.count(key))
        << key << " is never attached";
}

PlanStep gemmStep(bool bias, int inputs) {
  PlanStep step;
  step.templateName = "gemm";
  step.origin = "treni.linear";
  step.constants = {{"n", int64_t(8)}, {"k", int64_t(4)}, {"bias", bias}};
  step.inputs.resize(inputs);
  step.outputs = {0};
  return step;
}

// Tests checkStep's errors: operand counts (gemm's bias operand follows its
// flag), missing, unknown and mistyped constants, each naming the step.
TEST(KernelRegistryTest, CheckStepErrors) {
  const KernelTemplate &gemm = *findKernelTemplate("gemm");
  EXPECT_TRUE(checkStep(gemm, gemmStep(true, 3)).ok());
  EXPECT_TRUE(checkStep(gemm, gemmStep(false, 2)).ok());
  auto message = [&](const PlanStep &step) {
    return testing_util::messageOf(checkStep(gemm, step));
  };
  EXPECT_EQ(message(gemmStep(false, 3)),
            "kernel 'gemm' (treni.linear): expects 2 inputs and 1 outputs, "
            "the plan has 3 and 1");
  EXPECT_THAT(message(gemmStep(true, 2)), HasSubstr("expects 3 inputs"));
  PlanStep step = gemmStep(true, 3);
  step.constants.erase("k");
  EXPECT_THAT(message(step), HasSubstr("missing constant 'k' (an integer)"));
  step = gemmStep(true, 3);
  step.constants["group"] = int64_t(2);
  EXPECT_THAT(message(step), HasSubstr("unknown constant 'group'"));
  step = gemmStep(true, 3);
  step.constants["n"] = 8.0;
  EXPECT_THAT(message(step), HasSubstr("constant 'n' must be an integer"));
  step = gemmStep(true, 3);
  step.constants["bias"] = int64_t(1);
  EXPECT_THAT(message(step), HasSubstr("constant 'bias' must be a bool"));
}

} // namespace
} // namespace treni
