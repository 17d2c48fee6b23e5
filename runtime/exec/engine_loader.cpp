//===- engine_loader.cpp - one engine over the CPU or GPU executor -------===//

#include "runtime/exec/engine_loader.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "codegen/KernelSource.h"
#include "codegen/mlir/Compiler.h"
#include "runtime/exec/cpu_executor.h"
#include "runtime/exec/cpu_step_runner.h"
#include "runtime/exec/gpu_executor.h"
#include "runtime/exec/gpu_step_runner.h"
#include "runtime/exec/nvrtc_compiler.h"
#include "runtime/exec/package.h"
#include "runtime/exec/step_inputs.h"
#include "support/clock.h"
#include "support/status.h"

namespace treni {
namespace {
namespace fs = std::filesystem;

std::string cacheDirOf(const EngineOptions &options) {
  return options.cacheDir ? *options.cacheDir
                          : KernelCompiler::defaultCacheDir();
}

/// FNV-1a, 64 bits: a stable key for file names (not for security).
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(std::string_view bytes) {
    for (unsigned char c : bytes)
      h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; // field separator
  }
};

/// Key of the JIT package of a model directory: every file of the checkpoint
/// (name, size, modification time), the options, and this binary itself.
std::string packageKey(const std::string &dir, const EngineOptions &options) {
  Fnv fnv;
  std::vector<fs::path> files;
  std::error_code error;
  for (const auto &entry : fs::directory_iterator(dir, error))
    if (entry.is_regular_file())
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const fs::path &file : files) {
    fnv.add(file.filename().string());
    fnv.add(std::to_string(fs::file_size(file, error)));
    fnv.add(std::to_string(
        fs::last_write_time(file, error).time_since_epoch().count()));
  }
  fnv.add(absl::StrJoin(options.disabledPasses, ","));
  for (const auto &[flag, text] : options.passOptions)
    fnv.add(flag + "=" + text);
  fnv.add(options.activationDtype ? dtypeName(*options.activationDtype)
                                  : "default");
  fs::path self = fs::read_symlink("/proc/self/exe", error);
  fnv.add(std::to_string(fs::file_size(self, error)));
  fnv.add(std::to_string(
      fs::last_write_time(self, error).time_since_epoch().count()));
  return absl::StrFormat("%016x", fnv.h);
}

/// GPUs run 16-bit: an f32 checkpoint is compiled for bf16 activations and
/// its weights are converted at upload.
absl::StatusOr<std::optional<DType>>
gpuActivationDtype(const ModelDir &dir, const EngineOptions &options) {
  if (options.activationDtype)
    return options.activationDtype;
  const ModelConfig &config = dir.config;
  if (config.dtype && *config.dtype != DType::F32)
    return config.dtype;
  const TensorInfo *embedding =
      dir.checkpoint->find("model.embed_tokens.weight");
  if (embedding && embedding->dtype != DType::F32 && !config.dtype)
    return std::optional<DType>(embedding->dtype);
  return std::optional<DType>(DType::BF16);
}

/// The weights' directory, opened once per load: the caller's, when it
/// opened this one already (EngineOptions::modelDir), else opened here.
absl::StatusOr<std::shared_ptr<const ModelDir>>
openWeightsDir(const std::string &path, const EngineOptions &options) {
  auto same = [](const std::string &a, const std::string &b) {
    return fs::absolute(a).lexically_normal() ==
           fs::absolute(b).lexically_normal();
  };
  if (options.modelDir && same(options.modelDir->path, path))
    return options.modelDir;
  return openModelDir(path);
}

absl::StatusOr<Plan> compilePlan(const ModelDir &dir,
                                 const EngineOptions &options,
                                 std::optional<DType> activation,
                                 double &seconds) {
  auto start = std::chrono::steady_clock::now();
  mlir::MLIRContext context;
  CompileOptions compile;
  compile.disabledPasses = options.disabledPasses;
  compile.passOptions = options.passOptions;
  compile.activationDtype = activation;
  TRENI_ASSIGN_OR_RETURN(CompiledModel compiled,
                         compileModelDir(context, dir, compile));
  seconds = secondsSince(start);
  return std::move(compiled.plan);
}

/// Every kernel a GPU executor of `plan` loads, with its source.
absl::StatusOr<std::map<std::string, std::string>>
allKernelSources(const Plan &plan) {
  std::map<std::string, std::string> sources;
  TRENI_ASSIGN_OR_RETURN(auto kernels, generateAllKernels(plan));
  for (const KernelSpec &kernel : kernels)
    sources[kernel.entry] = kernel.source;
  sources["treni_sample"] = samplerKernelSource();
  sources["treni_sample_rows"] = samplerKernelSource(); // batched steps
  sources["treni_convert"] = convertKernelSource();
  return sources;
}

absl::StatusOr<Package> buildPackage(Plan plan, const std::string &modelDir,
                                     const std::string &arch,
                                     KernelCompiler &compiler) {
  Package package;
  package.plan = std::move(plan);
  package.modelDir = fs::absolute(modelDir).string();
  package.arch = arch;
  TRENI_ASSIGN_OR_RETURN(package.sources, allKernelSources(package.plan));
  for (const auto &[entry, source] : package.sources) {
    TRENI_ASSIGN_OR_RETURN(package.cubins[entry], compiler.cubin(source, arch));
  }
  return package;
}

class CpuEngine : public Engine {
public:
  CpuEngine(std::unique_ptr<CpuExecutor> executor, EngineStats stats,
            int64_t prefillChunk)
      : executor_(std::move(executor)), prefillChunk_(prefillChunk) {
    stats_ = std::move(stats);
  }
  absl::StatusOr<std::vector<float>> lastLogits() override { return logits_; }
  int64_t vocabSize() const override { return executor_->vocabSize(); }
  int64_t maxSeq() const override { return executor_->maxSeq(); }
  /// A paged executor of the same plan and the same fp32 weights, with a
  /// pool of its own.
  absl::StatusOr<std::unique_ptr<StepRunner>>
  doCreateStepRunner(int64_t numBlocks, int64_t /*maxStepTokens*/,
                     double /*freeShare*/) override {
    if (numBlocks == 0)
      numBlocks = 4 * kvBlocksFor(executor_->maxSeq());
    TRENI_ASSIGN_OR_RETURN(auto paged,
                           executor_->createPagedSharingWeights(numBlocks));
    TRENI_ASSIGN_OR_RETURN(auto runner,
                           CpuStepRunner::create(std::move(paged)));
    return std::unique_ptr<StepRunner>(std::move(runner));
  }

protected:
  absl::StatusOr<SampleResult>
  doPrefill(absl::Span<const int32_t> ids, int64_t startPosition,
            const SamplingParams &params) override {
    // Chunk by chunk, as the GPU does: the arena holds one chunk.
    for (size_t done = 0; done < ids.size(); done += prefillChunk_) {
      size_t n = std::min<size_t>(prefillChunk_, ids.size() - done);
      TRENI_ASSIGN_OR_RETURN(logits_,
                             executor_->prefill(ids.subspan(done, n),
                                                startPosition + int64_t(done)));
    }
    step_ = 0;
    return sampleCpu(logits_, params, step_++);
  }
  absl::StatusOr<SampleResult> doDecode(int32_t id, int64_t position,
                                        const SamplingParams &params) override {
    TRENI_ASSIGN_OR_RETURN(logits_, executor_->decode(id, position));
    return sampleCpu(logits_, params, step_++);
  }

private:
  std::unique_ptr<CpuExecutor> executor_;
  int64_t prefillChunk_;
  std::vector<float> logits_;
  uint64_t step_ = 0;
};

class GpuEngine : public Engine {
public:
  GpuEngine(std::unique_ptr<GpuExecutor> executor, EngineStats stats,
            bool asyncDecode)
      : executor_(std::move(executor)), asyncDecode_(asyncDecode) {
    stats_ = std::move(stats);
  }
  absl::StatusOr<std::vector<float>> lastLogits() override {
    return executor_->lastLogits();
  }
  int64_t vocabSize() const override { return executor_->vocabSize(); }
  int64_t maxSeq() const override { return executor_->maxSeq(); }
  /// @step over a paged pool of the executor's, sharing its weights.
  absl::StatusOr<std::unique_ptr<StepRunner>>
  doCreateStepRunner(int64_t numBlocks, int64_t maxStepTokens,
                     double freeShare) override {
    TRENI_RETURN_IF_ERROR(executor_->preparePagedPool(
        numBlocks, kKvBlockTokens, maxStepTokens, freeShare));
    TRENI_ASSIGN_OR_RETURN(auto runner, GpuStepRunner::create(*executor_));
    return std::unique_ptr<StepRunner>(std::move(runner));
  }

protected:
  absl::StatusOr<SampleResult>
  doPrefill(absl::Span<const int32_t> ids, int64_t startPosition,
            const SamplingParams &params) override {
    return executor_->prefill(ids, startPosition, params);
  }
  absl::StatusOr<SampleResult> doDecode(int32_t id, int64_t position,
                                        const SamplingParams &params) override {
    return executor_->decode(id, position, params);
  }
  absl::Status doDecodeStream(
      int32_t id, int64_t position, int64_t count, const SamplingParams &params,
      absl::FunctionRef<bool(const SampleResult &)> onToken) override {
    if (!asyncDecode_)
      return Engine::doDecodeStream(id, position, count, params, onToken);
    return executor_->decodeStream(id, position, count, params, onToken);
  }
  absl::StatusOr<std::vector<StepTime>>
  doProfileDecode(int64_t position, int iterations) override {
    return executor_->profileDecode(position, iterations);
  }
  absl::StatusOr<std::vector<StepTime>>
  doProfilePrefill(int64_t tokens, int iterations) override {
    return executor_->profilePrefill(tokens, iterations);
  }
  absl::StatusOr<ReplayTime> doReplayDecode(int64_t position,
                                            int iterations) override {
    return executor_->replayDecode(position, iterations);
  }

private:
  std::unique_ptr<GpuExecutor> executor_;
  bool asyncDecode_ = true;
};

absl::StatusOr<std::unique_ptr<Engine>>
loadGpuEngine(const std::string &model, const EngineOptions &options,
              std::chrono::steady_clock::time_point start) {
  EngineStats stats;
  TRENI_ASSIGN_OR_RETURN(std::string arch, currentDeviceArch());
  std::string cacheDir = cacheDirOf(options);
  std::optional<Package> package;
  std::shared_ptr<const ModelDir> weights; // opened once, on first need
  std::string packagePath;
  bool writeJitPackage = false;
  if (isPackageFile(model)) {
    TRENI_ASSIGN_OR_RETURN(package, readPackage(model));
    stats.source = absl::StrCat("package ", model, " (", package->arch, ")");
  } else {
    packagePath = absl::StrCat(cacheDir, "/packages/",
                               packageKey(model, options), ".treni");
    if (!cacheDir.empty() && fs::exists(packagePath)) {
      auto cached = readPackage(packagePath);
      if (cached.ok()) {
        package = std::move(*cached);
        stats.source = "cached JIT package " + packagePath;
      } else {
        std::fprintf(stderr, "treni: ignoring unreadable cached package: %s\n",
                     std::string(cached.status().message()).c_str());
      }
    }
    if (!package) {
      TRENI_ASSIGN_OR_RETURN(weights, openWeightsDir(model, options));
      TRENI_ASSIGN_OR_RETURN(auto activation,
                             gpuActivationDtype(*weights, options));
      Package compiled;
      TRENI_ASSIGN_OR_RETURN(
          compiled.plan,
          compilePlan(*weights, options, activation, stats.compileSeconds));
      compiled.modelDir = fs::absolute(model).string();
      package = std::move(compiled);
      stats.ranMlir = true;
      stats.source = "compiled with MLIR (first load)";
      writeJitPackage = !cacheDir.empty();
    }
  }

  GpuOptions gpu;
  gpu.maxSeq = options.maxSeq;
  gpu.prefillChunk = options.prefillChunk;
  gpu.cacheDir = cacheDir;
  gpu.cudaGraphs = options.cudaGraphs;
  gpu.programmaticLaunch = options.programmaticLaunch;
  gpu.gemmRowsMax = options.gemmRowsMax;
  gpu.gemmTuning = options.gemmTuning;
  gpu.seq1TensorCores = options.seq1TensorCores;
  gpu.chunkFlash = options.chunkFlash;
  gpu.spinWait = options.spinWait;
  gpu.cubins = &package->cubins;
  gpu.cubinArch = package->arch;
  if (!weights) {
    TRENI_ASSIGN_OR_RETURN(weights, openWeightsDir(package->modelDir, options));
  }
  TRENI_ASSIGN_OR_RETURN(
      auto executor,
      GpuExecutor::create(package->plan, *weights->checkpoint, gpu));
  const GpuLoadStats &load = executor->loadStats();
  stats.deviceName = load.deviceName;
  stats.kernelSeconds = load.kernelSeconds;
  stats.weightSeconds = load.weightSeconds;
  stats.weightBytes = load.weightBytes;
  stats.nvrtcCompiles = load.nvrtcCompiles;
  stats.cacheHits = load.cacheHits;
  stats.aotKernels = load.aotKernels;
  if (writeJitPackage) {
    // Every cubin is in the NVRTC disk cache by now: this compiles nothing.
    KernelCompiler compiler(cacheDir);
    std::error_code error;
    fs::create_directories(fs::path(packagePath).parent_path(), error);
    auto built = buildPackage(package->plan, package->modelDir, arch, compiler);
    absl::Status status =
        built.ok() ? writePackage(packagePath, *built) : built.status();
    if (!status.ok())
      std::fprintf(stderr, "treni: could not cache the compiled package: %s\n",
                   std::string(status.message()).c_str());
  }
  stats.totalLoadSeconds = secondsSince(start);
  return std::unique_ptr<Engine>(
      new GpuEngine(std::move(executor), stats, options.asyncDecode));
}
} // namespace

absl::StatusOr<SampleResult> Engine::prefill(absl::Span<const int32_t> ids,
                                             int64_t startPosition,
                                             const SamplingParams &params) {
  ++cacheWrites_;
  return doPrefill(ids, startPosition, params);
}

absl::StatusOr<SampleResult> Engine::decode(int32_t id, int64_t position,
                                            const SamplingParams &params) {
  ++cacheWrites_;
  return doDecode(id, position, params);
}

absl::Status
Engine::decodeStream(int32_t id, int64_t position, int64_t count,
                     const SamplingParams &params,
                     absl::FunctionRef<bool(const SampleResult &)> onToken) {
  ++cacheWrites_;
  return doDecodeStream(id, position, count, params, onToken);
}

absl::Status
Engine::doDecodeStream(int32_t id, int64_t position, int64_t count,
                       const SamplingParams &params,
                       absl::FunctionRef<bool(const SampleResult &)> onToken) {
  for (int64_t k = 0; k < count; ++k) {
    TRENI_ASSIGN_OR_RETURN(SampleResult result,
                           doDecode(id, position + k, params));
    id = result.token;
    if (!onToken(result))
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StepTime>> Engine::profileDecode(int64_t position,
                                                            int iterations) {
  ++cacheWrites_;
  return doProfileDecode(position, iterations);
}

absl::StatusOr<std::vector<StepTime>> Engine::profilePrefill(int64_t tokens,
                                                             int iterations) {
  ++cacheWrites_;
  return doProfilePrefill(tokens, iterations);
}

absl::StatusOr<ReplayTime> Engine::replayDecode(int64_t position,
                                                int iterations) {
  ++cacheWrites_;
  return doReplayDecode(position, iterations);
}

absl::StatusOr<std::unique_ptr<Engine>>
loadEngine(const std::string &model, const EngineOptions &options) {
  auto start = std::chrono::steady_clock::now();
  TRENI_RETURN_IF_ERROR(checkPrefillChunk(options.prefillChunk));
  if (options.maxSeq < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "max-seq must be positive (or 0: automatic), not ", options.maxSeq));
  if (options.device == Device::Gpu)
    return loadGpuEngine(model, options, start);

  EngineStats stats;
  Plan plan;
  std::shared_ptr<const ModelDir> weights;
  if (isPackageFile(model)) {
    TRENI_ASSIGN_OR_RETURN(Package package, readPackage(model));
    plan = std::move(package.plan);
    TRENI_ASSIGN_OR_RETURN(weights, openWeightsDir(package.modelDir, options));
    stats.source = "package " + model;
  } else {
    TRENI_ASSIGN_OR_RETURN(weights, openWeightsDir(model, options));
    TRENI_ASSIGN_OR_RETURN(plan, compilePlan(*weights, options,
                                             options.activationDtype,
                                             stats.compileSeconds));
    stats.ranMlir = true;
    stats.source = "compiled with MLIR";
  }
  auto weightsStart = std::chrono::steady_clock::now();
  const int64_t maxSeq = options.maxSeq > 0
                             ? options.maxSeq
                             : std::min<int64_t>(4096, plan.maxPositions(4096));
  TRENI_ASSIGN_OR_RETURN(
      auto executor,
      CpuExecutor::create(std::move(plan), *weights->checkpoint, maxSeq));
  stats.weightSeconds = secondsSince(weightsStart);
  stats.weightBytes = executor->weightBytes();
  stats.deviceName = "cpu (fp32 reference)";
  stats.totalLoadSeconds = secondsSince(start);
  return std::unique_ptr<Engine>(
      new CpuEngine(std::move(executor), stats, options.prefillChunk));
}

absl::StatusOr<PackageStats> compilePackage(const std::string &modelDir,
                                            const std::string &outputPath,
                                            const std::string &arch,
                                            const EngineOptions &options) {
  auto start = std::chrono::steady_clock::now();
  TRENI_ASSIGN_OR_RETURN(auto weights, openWeightsDir(modelDir, options));
  TRENI_ASSIGN_OR_RETURN(auto activation,
                         gpuActivationDtype(*weights, options));
  double compileSeconds = 0;
  TRENI_ASSIGN_OR_RETURN(
      Plan plan, compilePlan(*weights, options, activation, compileSeconds));
  KernelCompiler compiler(cacheDirOf(options));
  TRENI_ASSIGN_OR_RETURN(
      Package package, buildPackage(std::move(plan), modelDir, arch, compiler));
  TRENI_RETURN_IF_ERROR(writePackage(outputPath, package));
  PackageStats stats;
  stats.kernels = package.cubins.size();
  stats.nvrtcCompiles = compiler.compiles();
  stats.cacheHits = compiler.cacheHits();
  stats.seconds = secondsSince(start);
  return stats;
}

} // namespace treni
