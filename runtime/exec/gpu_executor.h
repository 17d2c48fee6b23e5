//===- gpu_executor.h - the CUDA runtime for a Plan -------------*- C++ -*-===//
//
// Loads a plan onto one GPU: NVRTC-compiled kernels (disk-cached, or cubins
// from an AOT package), weights uploaded once in the activation dtype, one
// activation arena laid out by the plan, a KV cache of --max-seq rows, and
// cuBLASLt for the GEMMs. Prefill launches the plan's @prefill steps for the
// whole prompt; decode replays one captured CUDA graph per sampling setting.
// The sampler writes the next decode step's token and position into its
// inputs, so consecutive steps need no host writes and can be enqueued
// ahead (decodeStream).
// Sampling runs on the GPU and returns the token with its uncertainty.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "codegen/Plan.h"
#include "frontends/safetensors/safetensors.h"
#include "runtime/batch/step_runner.h"
#include "runtime/exec/sampler.h"

namespace treni {

struct GpuOptions {
  /// KV cache rows. 0: as many as the GPU memory left after the weights
  /// holds (less a reserve), at most the model's max_position_embeddings.
  int64_t maxSeq = 4096;
  /// A prompt is prefilled in chunks of at most this many tokens (each
  /// against the cache the previous ones wrote), so the activation arena is
  /// sized for one chunk, not for --max-seq tokens.
  int64_t prefillChunk = 2048;
  /// NVRTC cubin cache; "" disables it.
  std::string cacheDir;
  /// Capture decode as a CUDA graph (off: launch step by step, for debugging).
  bool cudaGraphs = true;
  /// Launch generated kernels with programmatic dependent launch (sm_90+),
  /// so each one's launch overlaps the end of the previous one.
  bool programmaticLaunch = true;
  /// Wait for a step by polling the stream (a busy host thread) instead of
  /// a blocking synchronisation.
  bool spinWait = true;
  /// A batched step's GEMMs over at most this many rows (up to 32) run on
  /// the generated gemm_rows kernel, which reads each weight once, instead
  /// of cuBLASLt; 0 (the default: cuBLASLt measured faster on the 7B shape,
  /// docs/perf.md) keeps every GEMM on cuBLASLt.
  int64_t gemmRowsMax = 0;
  /// Before a batched step's graph is captured, time cuBLASLt's first
  /// heuristic algorithms for each of its GEMMs and keep the fastest
  /// (GemmRunner::tune); off (the default until measured): the first
  /// heuristic's.
  bool gemmTuning = false;
  /// attention_seq1_partial on the tensor cores where it applies (16-bit
  /// cache, head dim a multiple of 64, groups of up to 16 heads); off: on
  /// CUDA cores. Off by default until measured on a GPU (docs/perf.md).
  bool seq1TensorCores = false;
  /// In a batched step, the rows of prompt chunks attend through
  /// attention_flash (tensor cores, K/V tiles shared by a tile of rows of one
  /// sequence) instead of the row-by-row split-KV kernels, which then take
  /// only the sampled rows (decode rows and each chunk's last row).
  bool chunkFlash = false;
  /// Precompiled cubins by kernel entry (from an AOT package), used when
  /// `cubinArch` is the device's architecture; read only during create.
  const std::map<std::string, std::string> *cubins = nullptr;
  std::string cubinArch;
};

struct GpuLoadStats {
  std::string deviceName, arch;
  int64_t weightBytes = 0;   ///< bytes read from the checkpoint
  double weightSeconds = 0;  ///< mmap -> pinned -> device, conversion included
  double kernelSeconds = 0;  ///< NVRTC / cache / module loading
  int64_t kernels = 0;       ///< distinct kernels loaded
  int64_t nvrtcCompiles = 0; ///< kernels NVRTC compiled in this process
  int64_t cacheHits = 0;     ///< kernels found in the disk cache
  int64_t aotKernels = 0;    ///< kernels taken from the package
  int64_t arenaBytes = 0, kvCacheBytes = 0;
  int64_t maxSeq = 0; ///< KV cache rows (chosen from free memory when auto)
  double warmupSeconds = 0; ///< first GEMMs, lazy loading, graph capture
};

/// Time of one plan step, from CUDA events around it.
struct StepTime {
  std::string templateName, origin;
  double microseconds = 0;
  double flops = 0;  ///< GEMMs and attention (see GpuExecutor::profilePrefill)
  std::string shape; ///< a GEMM's "m=.. n=.. k=..[ +bias]", else empty
};

/// `times` summed by template and by GEMM shape, one line each (template,
/// launches, microseconds, share of the total, TFLOP/s where FLOPs are
/// known), then the total: the table `treni run --profile` and
/// `treni-step-bench --profile` print.
std::string formatStepTimes(absl::Span<const StepTime> times);

/// The rows of one batched step (GpuExecutor::runStep): one token each, of
/// any sequences, each row through its own block table of the paged pool.
struct GpuStepRows {
  absl::Span<const int32_t> ids, positions;
  /// Per row: where its block table starts in blockTables.
  absl::Span<const int32_t> tableOffsets;
  /// Every row's table back to back (StepPlan::blockTables).
  absl::Span<const int32_t> blockTables;
  /// Rows 0..sampledRows-1 are the ones whose logits are wanted.
  int64_t sampledRows = 0;
};

/// A decode graph replayed back to back (GpuExecutor::replayDecode).
struct ReplayTime {
  double gpuMillis = 0;        ///< GPU time per step
  double hostLaunchMicros = 0; ///< host time per cudaGraphLaunch call
};

/// CUDA source of `treni_convert`, the weight dtype conversion kernel.
const std::string &convertKernelSource();

/// The NVRTC target of the current device ("sm_90a" on Hopper, else "sm_XY"),
/// or an error when there is no usable GPU.
absl::StatusOr<std::string> currentDeviceArch();

/// Most blocks a paged KV pool may have.
inline constexpr int64_t kMaxPagedBlocks = int64_t(1) << 24;

/// Blocks of `blockBytes` (every layer's keys and values) a paged pool gets
/// from `freeBytes` of GPU memory after `otherBytes` (the step arena, its
/// tables, a reserve) and the pool's scratch block, at most
/// kMaxPagedBlocks; 0 when fewer than `minBlocks` (one sequence of the
/// context) fit.
int64_t pagedPoolBlocksThatFit(int64_t freeBytes, int64_t otherBytes,
                               int64_t blockBytes, int64_t minBlocks);

/// Free bytes of the current device's memory (cudaMemGetInfo), or an error
/// when there is no usable GPU.
absl::StatusOr<int64_t> freeDeviceMemoryBytes();

/// Thread-safe: every public call holds one lock (calls from several
/// threads run one after another on the one stream).
class GpuExecutor {
public:
  /// Compiles or loads the plan's kernels and uploads its weights from an
  /// opened checkpoint. @step's kernels are loaded by preparePagedPool.
  static absl::StatusOr<std::unique_ptr<GpuExecutor>>
  create(Plan plan, const Checkpoint &weights, const GpuOptions &options);
  /// The same, opening the checkpoint in `modelDir` (tests and tools).
  static absl::StatusOr<std::unique_ptr<GpuExecutor>>
  create(Plan plan, const std::string &modelDir, const GpuOptions &options);
  ~GpuExecutor();

  /// Runs @prefill over `ids` at positions start.. (in chunks of
  /// prefillChunk tokens, one after another on the stream) and samples the
  /// next token.
  absl::StatusOr<SampleResult> prefill(absl::Span<const int32_t> ids,
                                       int64_t startPosition,
                                       const SamplingParams &params);
  /// Runs @decode for `id` at `position` and samples the next token.
  absl::StatusOr<SampleResult> decode(int32_t id, int64_t position,
                                      const SamplingParams &params);
  /// Engine::decodeStream: step k+1 (fed by step k's sampler) is enqueued
  /// before step k's result is read; after a stop it still runs.
  absl::Status
  decodeStream(int32_t id, int64_t position, int64_t count,
               const SamplingParams &params,
               absl::FunctionRef<bool(const SampleResult &)> onToken);
  /// Runs @decode step by step `iterations` times at `position` with an event
  /// pair around every step; returns each step's mean time. (Events serialise
  /// the steps: the sum exceeds a graph replay's time by the launch gaps.)
  absl::StatusOr<std::vector<StepTime>> profileDecode(int64_t position,
                                                      int iterations);
  /// The same for @prefill over `tokens` positions 0.. (one chunk at most):
  /// each step's mean time and FLOPs, so the GEMMs' and the attention's
  /// TFLOP/s can be read off. Writes KV-cache rows 0..tokens-1.
  absl::StatusOr<std::vector<StepTime>> profilePrefill(int64_t tokens,
                                                       int iterations);
  /// The captured decode graph replayed `iterations` times back to back from
  /// `position` (each step fed by the previous one, as in a generation; no
  /// host round trip in between): the GPU's time per step, and the host's
  /// time per cudaGraphLaunch call. KV-cache rows position.. are overwritten.
  absl::StatusOr<ReplayTime> replayDecode(int64_t position, int iterations);
  /// Makes what @step runs in (once; continuous batching): a KV pool of
  /// `numBlocks` blocks of `blockTokens` positions (a power of two) per
  /// layer (0: as many as `freeShare` of the free memory holds,
  /// pagedPoolBlocksThatFit), beside the single-sequence cache, and an arena
  /// for steps of up to `maxStepTokens` rows. Loads @step's kernels.
  absl::Status preparePagedPool(int64_t numBlocks, int64_t blockTokens,
                                int64_t maxStepTokens, double freeShare = 1.0);
  /// Runs @step over `rows` (checked first: checkStepRows) and returns the
  /// fp32 logits of rows 0..sampledRows-1, row-major, valid until the next
  /// call. Every row's K/V is written into its block before any attention
  /// reads, so a prompt chunk's rows see each other; the steps after the last
  /// cache step (the final norm, lm_head) run on the sampled rows only. The
  /// single-sequence cache is untouched; a later prefill/decode call starts
  /// from its own inputs.
  absl::StatusOr<absl::Span<const float>> runStep(const GpuStepRows &rows);
  /// The same, the sampled rows drawn on the GPU (treni_sample_rows: row i
  /// with `sampling[i]`, one entry per sampled row, as treni_sample draws
  /// it; one launch for the split greedy rows, one for the others); only the
  /// results are copied back.
  absl::StatusOr<std::vector<SampleResult>>
  runStepSampled(const GpuStepRows &rows,
                 absl::Span<const RowSampling> sampling);
  /// runStep's launches for `rows`, without a graph, `iterations` times
  /// with an event pair around every launch: each launch's mean time (its
  /// shape for a GEMM, "rows" for one on gemm_rows). KV rows of the rows'
  /// blocks are written as runStep writes them.
  absl::StatusOr<std::vector<StepTime>> profileStepRows(const GpuStepRows &rows,
                                                        int iterations);
  /// @embed over `rows` (as runStep's; sampledRows is ignored): every row's
  /// final-norm hidden state, rows x hiddenSize() f32, row-major, valid
  /// until the next call. Each row's K/V is written as runStep writes it.
  absl::StatusOr<absl::Span<const float>> runEmbed(const GpuStepRows &rows);
  /// Columns of @embed's rows (0 for a plan compiled without it).
  int64_t hiddenSize() const;
  /// Blocks in the paged pool (0 before preparePagedPool).
  int64_t pagedBlocks() const;

  /// fp32 logits of the last prefill/decode call (copied to the host).
  absl::StatusOr<std::vector<float>> lastLogits();

  const GpuLoadStats &loadStats() const { return stats_; }
  int64_t vocabSize() const { return vocabSize_; }
  int64_t maxSeq() const { return maxSeq_; }
  /// Graph captures so far (one per distinct sampling setting).
  int64_t graphCaptures() const;

private:
  /// What a step ran on the pool: the function and the rows its arena is
  /// laid out for.
  struct StepLayout {
    const PlanFunction *function = nullptr;
    int64_t rows = 0;
    /// attention_flash tiles of the prompt-chunk rows (GpuOptions::chunkFlash).
    int64_t chunkTiles = 0;
  };
  /// Checks `rows`, uploads them and enqueues them (runStep's first half):
  /// one sampled row runs @decode on the pool; a step whose rows are all
  /// sampled replays the captured @step graph of its bucket (the next power
  /// of two), padded with rows that write a scratch block; any other runs
  /// @step as it is.
  /// With `events` (profileStepRows), no graph, and an event pair (created
  /// on first use) around every launch.
  struct StepEvents;
  /// With `embed`, @embed runs on every row instead (no graph, no @decode).
  absl::StatusOr<StepLayout> enqueueStepRows(const GpuStepRows &rows,
                                             StepEvents *events = nullptr,
                                             bool embed = false);

  struct Impl;
  explicit GpuExecutor(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  GpuLoadStats stats_;
  int64_t vocabSize_ = 0, maxSeq_ = 0;
  std::vector<float> embedded_; ///< runEmbed's rows
};

} // namespace treni
