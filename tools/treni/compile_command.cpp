//===- compile_command.cpp - `treni compile` ------------------------------===//
//
//   treni compile MODEL_DIR [--emit=mlir|mlir-opt|plan|cuda|package] [-o FILE]
//                 [--arch sm_90a] [--dtype bf16] [--disable-pass=NAME ...]
//                 [--pass-option=NAME=OPTIONS ...]
//
// A `.treni` output (or --emit=package) is an AOT package: plan, kernel
// sources and cubins for --arch. Everything else is text on stdout or -o.
//
//===----------------------------------------------------------------------===//

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "codegen/KernelSource.h"
#include "codegen/mlir/Compiler.h"
#include "tools/treni/cli_flags.h"

namespace cl = llvm::cl;

namespace treni::cli {
namespace {

cl::opt<std::string> compileModel(cl::Positional, cl::desc("MODEL_DIR"),
                                  cl::Required, cl::sub(compileSubcommand()));
enum class Emit { Mlir, MlirOpt, Plan, Cuda, Package };
cl::opt<Emit> emit(
    "emit",
    cl::desc("What to write (default: package for a .treni output, else plan)"),
    cl::values(clEnumValN(Emit::Mlir, "mlir",
                          "the treni IR the frontend builds"),
               clEnumValN(Emit::MlirOpt, "mlir-opt",
                          "the IR after treni-default-pipeline"),
               clEnumValN(Emit::Plan, "plan", "the executable plan (JSON)"),
               clEnumValN(Emit::Cuda, "cuda",
                          "the generated CUDA C++ of every kernel"),
               clEnumValN(Emit::Package, "package",
                          "an AOT package: plan, kernel sources and cubins")),
    cl::sub(compileSubcommand()));
cl::opt<std::string> outputFile("o", cl::desc("Output file (default: stdout)"),
                                cl::value_desc("FILE"), cl::init("-"),
                                cl::sub(compileSubcommand()));
cl::opt<std::string> arch("arch",
                          cl::desc("GPU architecture of the package's cubins"),
                          cl::init("sm_90a"), cl::sub(compileSubcommand()));

int writePackage(const EngineOptions &options) {
  if (outputFile == "-")
    return fail(absl::InvalidArgumentError("--emit=package needs -o FILE"));
  auto stats = compilePackage(compileModel, outputFile, arch, options);
  if (!stats.ok())
    return fail(stats.status());
  std::fprintf(stderr,
               "wrote %s: %lld kernels for %s (%lld compiled by NVRTC, %lld "
               "from cache) in %.2f s\n",
               outputFile.c_str(), (long long)stats->kernels, arch.c_str(),
               (long long)stats->nvrtcCompiles, (long long)stats->cacheHits,
               stats->seconds);
  return 0;
}

/// The IR, plan or CUDA text of the model.
absl::StatusOr<std::string> compiledText(Emit what,
                                         const EngineOptions &engine) {
  mlir::MLIRContext context;
  std::string text;
  CompileOptions options;
  options.disabledPasses = engine.disabledPasses;
  options.passOptions = engine.passOptions;
  options.activationDtype = engine.activationDtype;
  options.inputIR = what == Emit::Mlir ? &text : nullptr;
  options.outputIR = what == Emit::MlirOpt ? &text : nullptr;
  options.buildPlan = what == Emit::Plan || what == Emit::Cuda;
  auto compiled = compileModelDir(context, compileModel, options);
  if (!compiled.ok())
    return compiled.status();
  if (what == Emit::Plan) {
    text = serializePlan(compiled->plan);
    for (const PlanFunction &f : compiled->plan.functions)
      std::fprintf(stderr,
                   "@%s: %zu kernels, arena %lld bytes + %lld bytes/token\n",
                   f.name.c_str(), f.steps.size(), (long long)f.staticBytes,
                   (long long)f.rowBytes);
  }
  if (what == Emit::Cuda) {
    auto kernels = generateAllKernels(compiled->plan);
    if (!kernels.ok())
      return kernels.status();
    for (const KernelSpec &kernel : *kernels)
      absl::StrAppend(&text, kernel.source, "\n");
  }
  return text;
}

} // namespace

int runCompileCommand() {
  auto options = compilerOptionsFromFlags();
  if (!options.ok())
    return fail(options.status());
  Emit what =
      emit.getNumOccurrences()
          ? emit.getValue()
          : (llvm::StringRef(outputFile).ends_with(".treni") ? Emit::Package
                                                             : Emit::Plan);
  if (what == Emit::Package)
    return writePackage(*options);
  auto text = compiledText(what, *options);
  if (!text.ok())
    return fail(text.status());
  if (outputFile == "-") {
    std::fwrite(text->data(), 1, text->size(), stdout);
    return 0;
  }
  std::ofstream out(outputFile, std::ios::binary);
  out << *text;
  if (!out)
    return fail(absl::UnavailableError("cannot write " + outputFile));
  return 0;
}

} // namespace treni::cli
