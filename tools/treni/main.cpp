//===- main.cpp - the treni command-line tool ----------------------------===//
//
//   treni compile MODEL_DIR [--emit=mlir|mlir-opt|plan|cuda] [-o FILE]
//                 [--disable-pass=NAME ...]
//   treni run [MODEL_DIR] --device cpu [--prompt-ids 1,2,3] [--max-tokens N]
//             [--max-seq N] [--disable-pass=NAME ...]
//
// With no MODEL_DIR, `run` uses the bundled tiny Qwen2 fixture.
//
//===----------------------------------------------------------------------===//

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "codegen/Compiler.h"
#include "codegen/KernelSource.h"
#include "runtime/cpu_executor.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"

#ifndef TRENI_DEFAULT_MODEL_DIR
#define TRENI_DEFAULT_MODEL_DIR ""
#endif

namespace cl = llvm::cl;
using namespace treni;

namespace {
cl::SubCommand compileCommand("compile", "Compile a model directory");
cl::SubCommand runCommand("run", "Generate tokens from a model");

cl::opt<std::string> compileModel(cl::Positional, cl::desc("MODEL_DIR"),
                                  cl::Required, cl::sub(compileCommand));
cl::opt<std::string> runModel(cl::Positional, cl::desc("[MODEL_DIR]"),
                              cl::init(TRENI_DEFAULT_MODEL_DIR),
                              cl::sub(runCommand));
enum class Emit { Mlir, MlirOpt, Plan, Cuda };
cl::opt<Emit> emit(
    "emit", cl::desc("What to write"), cl::init(Emit::Plan),
    cl::values(clEnumValN(Emit::Mlir, "mlir", "the treni IR the frontend builds"),
               clEnumValN(Emit::MlirOpt, "mlir-opt",
                          "the IR after treni-default-pipeline"),
               clEnumValN(Emit::Plan, "plan", "the executable plan (JSON)"),
               clEnumValN(Emit::Cuda, "cuda",
                          "the generated CUDA C++ of every kernel")),
    cl::sub(compileCommand));
cl::opt<std::string> outputFile("o", cl::desc("Output file (default: stdout)"),
                                cl::value_desc("FILE"), cl::init("-"),
                                cl::sub(compileCommand));
cl::list<std::string> disablePass(
    "disable-pass", cl::desc("Leave a pass of treni-default-pipeline out"),
    cl::value_desc("NAME"), cl::sub(compileCommand), cl::sub(runCommand));

cl::opt<std::string> device("device", cl::desc("cpu (gpu: see `treni run --device gpu`)"),
                            cl::init("cpu"), cl::sub(runCommand));
cl::opt<std::string> promptIds("prompt-ids",
                               cl::desc("Comma-separated prompt token ids"),
                               cl::init("1,2,3"), cl::sub(runCommand));
cl::opt<int> maxTokens("max-tokens", cl::desc("Tokens to generate"),
                       cl::init(16), cl::sub(runCommand));
cl::opt<int> maxSeq("max-seq", cl::desc("KV cache length in tokens"),
                    cl::init(4096), cl::sub(runCommand));

int fail(const absl::Status &status) {
  std::fprintf(stderr, "treni: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

int runCompile() {
  mlir::MLIRContext context;
  std::string text;
  CompileOptions options;
  options.disabledPasses.assign(disablePass.begin(), disablePass.end());
  options.inputIR = emit == Emit::Mlir ? &text : nullptr;
  options.outputIR = emit == Emit::MlirOpt ? &text : nullptr;
  options.buildPlan = emit == Emit::Plan || emit == Emit::Cuda;
  auto compiled = compileModelDir(context, compileModel, options);
  if (!compiled.ok())
    return fail(compiled.status());
  if (emit == Emit::Plan)
    text = serializePlan(compiled->plan);
  if (emit == Emit::Cuda) {
    auto kernels = generateAllKernels(compiled->plan);
    if (!kernels.ok())
      return fail(kernels.status());
    for (const KernelSpec &kernel : *kernels)
      absl::StrAppend(&text, kernel.source, "\n");
  }
  if (outputFile == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else {
    std::ofstream out(outputFile, std::ios::binary);
    out << text;
    if (!out)
      return fail(absl::UnavailableError("cannot write " + outputFile));
  }
  if (emit == Emit::Plan)
    for (const PlanFunction &f : compiled->plan.functions)
      std::fprintf(stderr, "@%s: %zu kernels, arena %lld bytes + %lld bytes/token\n",
                   f.name.c_str(), f.steps.size(), (long long)f.staticBytes,
                   (long long)f.rowBytes);
  return 0;
}

int runRun() {
  if (runModel.empty())
    return fail(absl::InvalidArgumentError("no MODEL_DIR given"));
  if (device != "cpu")
    return fail(absl::UnimplementedError(
        "--device " + device + " is not available in this build; use --device cpu"));
  if (maxTokens < 0)
    return fail(absl::InvalidArgumentError("--max-tokens must be >= 0"));
  std::vector<int32_t> prompt;
  for (absl::string_view piece : absl::StrSplit(promptIds.getValue(), ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id))
      return fail(absl::InvalidArgumentError(
          absl::StrCat("--prompt-ids: '", piece, "' is not a token id")));
    prompt.push_back(id);
  }
  if (prompt.empty())
    return fail(absl::InvalidArgumentError("--prompt-ids is empty"));

  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses.assign(disablePass.begin(), disablePass.end());
  auto compiled = compileModelDir(context, runModel, options);
  if (!compiled.ok())
    return fail(compiled.status());
  auto start = std::chrono::steady_clock::now();
  auto executor = CpuExecutor::create(compiled->plan, runModel, maxSeq);
  if (!executor.ok())
    return fail(executor.status());
  double weightSeconds = secondsSince(start);

  std::vector<int32_t> generated;
  start = std::chrono::steady_clock::now();
  auto logits = (*executor)->prefill(prompt, 0);
  if (!logits.ok())
    return fail(logits.status());
  double prefillSeconds = secondsSince(start);
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < maxTokens; ++i) {
    generated.push_back(argmax(*logits));
    if (i + 1 == maxTokens)
      break;
    logits = (*executor)->decode(generated.back(), prompt.size() + i);
    if (!logits.ok())
      return fail(logits.status());
  }
  double decodeSeconds = secondsSince(start);
  int decodeSteps = std::max(0, maxTokens.getValue() - 1);

  std::printf("%s\n", absl::StrJoin(generated, ",").c_str());
  std::fprintf(stderr,
               "model: %s (%s)\n"
               "load: %.1f ms  compile: %.1f ms  weights->fp32: %.1f ms\n"
               "prefill: %zu tokens in %.2f ms (time to first token)\n"
               "decode: %d steps in %.2f ms (%.1f tokens/s) [cpu, fp32]\n",
               runModel.c_str(),
               std::string(architectureName(compiled->config.architecture)).c_str(),
               compiled->loadSeconds * 1e3, compiled->compileSeconds * 1e3,
               weightSeconds * 1e3, prompt.size(), prefillSeconds * 1e3,
               decodeSteps, decodeSeconds * 1e3,
               decodeSteps > 0 ? decodeSteps / decodeSeconds : 0.0);
  return 0;
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "treni: compile and run language models\n");
  if (compileCommand)
    return runCompile();
  if (runCommand)
    return runRun();
  cl::PrintHelpMessage();
  return 1;
}
