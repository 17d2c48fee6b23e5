//===- engine_loader.h - one engine over the CPU or GPU executor -*- C++
//-*-===//
//
// What `treni run` (and later `chat`/`serve`) talks to. A model argument is
// either a `.treni` package (no MLIR; no NVRTC when its cubins match the GPU)
// or a checkpoint directory. On the GPU, a directory is compiled on first use
// and the resulting package is cached under $TRENI_CACHE_DIR/packages, keyed
// by the checkpoint's files, the options and this binary, so the next load of
// the same model skips MLIR and NVRTC entirely.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "frontends/safetensors/model_dir.h"
#include "frontends/safetensors/safetensors.h"
#include "runtime/batch/step_runner.h"
#include "runtime/exec/gpu_executor.h"
#include "runtime/exec/sampler.h"

namespace treni {

enum class Device { Cpu, Gpu };

struct EngineOptions {
  Device device = Device::Cpu;
  /// The weights' directory, when the caller opened it already (the command
  /// line reads its config to check --max-seq): a load whose weights live
  /// there uses it instead of opening the directory again.
  std::shared_ptr<const ModelDir> modelDir;
  std::vector<std::string> disabledPasses;
  std::map<std::string, std::string> passOptions; ///< see CompileOptions
  std::optional<DType> activationDtype;
  /// KV cache rows; 0 picks them: on the GPU as many as fit in the memory
  /// the weights leave, on the CPU 4096; both at most the model's
  /// max_position_embeddings.
  int64_t maxSeq = 4096;
  /// Prompts are prefilled in chunks of at most this many tokens (1-65535).
  int64_t prefillChunk = 2048;
  bool cudaGraphs = true;
  bool programmaticLaunch = true; ///< see GpuOptions
  int64_t gemmRowsMax = 0;        ///< see GpuOptions
  bool gemmTuning = false;        ///< see GpuOptions
  bool seq1TensorCores = false;   ///< see GpuOptions
  bool chunkFlash = false;        ///< see GpuOptions
  bool spinWait = true;           ///< see GpuOptions
  /// GPU: decodeStream enqueues step k+1 before reading step k's token (off:
  /// one step at a time, like decode()).
  bool asyncDecode = true;
  /// NVRTC cubins and JIT packages; default $TRENI_CACHE_DIR or ~/.cache/treni.
  std::optional<std::string> cacheDir;
};

struct EngineStats {
  std::string source; ///< how the plan was obtained
  std::string deviceName;
  double totalLoadSeconds = 0, compileSeconds = 0, kernelSeconds = 0,
         weightSeconds = 0;
  int64_t weightBytes = 0, nvrtcCompiles = 0, cacheHits = 0, aotKernels = 0;
  bool ranMlir = false;
};

class Engine {
public:
  virtual ~Engine() = default;
  /// Prefills `ids` from position 0 and samples the first new token.
  absl::StatusOr<SampleResult> prefill(absl::Span<const int32_t> ids,
                                       const SamplingParams &params) {
    return prefill(ids, 0, params);
  }
  /// Prefills `ids` at positions startPosition.. and samples the next token.
  /// KV-cache rows 0..startPosition-1 are kept from earlier calls: the caller
  /// must know they hold the tokens it means (Generator tracks that, see
  /// cacheWrites()); 0 starts afresh. The sampler's step counter restarts.
  absl::StatusOr<SampleResult> prefill(absl::Span<const int32_t> ids,
                                       int64_t startPosition,
                                       const SamplingParams &params);
  /// Feeds `id` at `position` and samples the next token.
  absl::StatusOr<SampleResult> decode(int32_t id, int64_t position,
                                      const SamplingParams &params);
  /// Up to `count` decode steps from `id` at `position`, each fed the token
  /// the previous one sampled; `onToken` sees each result in order and
  /// returns false to stop. On the GPU (asyncDecode) the next step is already
  /// enqueued when `onToken` runs, so the host's work per token overlaps the
  /// GPU's: after a stop that step has still run, writing KV row
  /// position+k+1 for the last accepted token (a correct row: the caller
  /// may count it or not), and lastLogits() are its. Errors when the steps
  /// would pass the KV cache.
  absl::Status
  decodeStream(int32_t id, int64_t position, int64_t count,
               const SamplingParams &params,
               absl::FunctionRef<bool(const SampleResult &)> onToken);
  /// fp32 logits of the last call.
  virtual absl::StatusOr<std::vector<float>> lastLogits() = 0;
  virtual int64_t vocabSize() const = 0;
  /// KV cache rows: the context, prompt and generated tokens together.
  virtual int64_t maxSeq() const = 0;
  /// Per-step decode times at `position` (GPU only; see GpuExecutor). It
  /// writes KV-cache row `position`.
  absl::StatusOr<std::vector<StepTime>> profileDecode(int64_t position,
                                                      int iterations);
  /// Per-step prefill times over `tokens` positions from 0 (GPU only; see
  /// GpuExecutor::profilePrefill). It writes KV-cache rows 0..tokens-1.
  absl::StatusOr<std::vector<StepTime>> profilePrefill(int64_t tokens,
                                                       int iterations);
  /// Decode graph replayed back to back (GPU only; see
  /// GpuExecutor::replayDecode). It writes KV-cache row `position`.
  absl::StatusOr<ReplayTime> replayDecode(int64_t position, int iterations);
  /// Calls that may have written the KV cache (prefill, decode,
  /// profileDecode, replayDecode), failed ones included. A caller that
  /// tracks the cache's contents compares it with the count after its own
  /// last call: a change means someone else used the engine and the contents
  /// are unknown.
  uint64_t cacheWrites() const { return cacheWrites_; }
  const EngineStats &stats() const { return stats_; }

  /// A runner of batch steps (continuous batching) over a KV pool of its
  /// own with `numBlocks` blocks (0: on the GPU `freeShare` of the free
  /// memory after the weights, the single-sequence cache and the step arena,
  /// less a reserve, so that models sharing the GPU can split it; on the CPU
  /// four sequences of maxSeq()), beside this engine's single-sequence
  /// cache, for steps of up to `maxStepTokens` rows. It uses the engine,
  /// which must outlive it; at most one per engine.
  absl::StatusOr<std::unique_ptr<StepRunner>>
  createStepRunner(int64_t numBlocks, int64_t maxStepTokens,
                   double freeShare = 1.0) {
    if (!(freeShare > 0 && freeShare <= 1))
      return absl::InvalidArgumentError(
          "a step runner's share of the free memory must be in (0, 1]");
    return doCreateStepRunner(numBlocks, maxStepTokens, freeShare);
  }

protected:
  virtual absl::StatusOr<std::unique_ptr<StepRunner>>
  doCreateStepRunner(int64_t numBlocks, int64_t maxStepTokens,
                     double freeShare) {
    return absl::UnimplementedError("this engine has no batched path");
  }
  virtual absl::StatusOr<SampleResult>
  doPrefill(absl::Span<const int32_t> ids, int64_t startPosition,
            const SamplingParams &params) = 0;
  virtual absl::StatusOr<SampleResult>
  doDecode(int32_t id, int64_t position, const SamplingParams &params) = 0;
  /// One doDecode after another (the GPU engine overrides it).
  virtual absl::Status
  doDecodeStream(int32_t id, int64_t position, int64_t count,
                 const SamplingParams &params,
                 absl::FunctionRef<bool(const SampleResult &)> onToken);
  virtual absl::StatusOr<std::vector<StepTime>>
  doProfileDecode(int64_t position, int iterations) {
    return absl::UnimplementedError("profiling needs --device gpu");
  }
  virtual absl::StatusOr<std::vector<StepTime>>
  doProfilePrefill(int64_t tokens, int iterations) {
    return absl::UnimplementedError("profiling needs --device gpu");
  }
  virtual absl::StatusOr<ReplayTime> doReplayDecode(int64_t position,
                                                    int iterations) {
    return absl::UnimplementedError("graph replay needs --device gpu");
  }

  EngineStats stats_;

private:
  uint64_t cacheWrites_ = 0;
};

absl::StatusOr<std::unique_ptr<Engine>>
loadEngine(const std::string &model, const EngineOptions &options);

struct PackageStats {
  int64_t kernels = 0, nvrtcCompiles = 0, cacheHits = 0;
  double seconds = 0;
};

/// `treni compile MODEL_DIR -o FILE --arch ARCH`: plan + sources + cubins.
absl::StatusOr<PackageStats> compilePackage(const std::string &modelDir,
                                            const std::string &outputPath,
                                            const std::string &arch,
                                            const EngineOptions &options);

} // namespace treni
