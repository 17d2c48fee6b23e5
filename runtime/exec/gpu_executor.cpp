//===- gpu_executor.cpp - the CUDA runtime for a Plan --------------------===//

#include "runtime/exec/gpu_executor.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codegen/KernelSource.h"
#include "runtime/exec/cuda_status.h"
#include "runtime/exec/gemm.h"
#include "runtime/exec/nvrtc_compiler.h"
#include "runtime/exec/step_inputs.h"
#include "runtime/exec/weights.h"
#include "support/clock.h"
#include "support/dtype.h"
#include "support/status.h"

namespace treni {
namespace {

cudaDataType_t cudaType(const std::string &dtype) {
  if (dtype == "bf16")
    return CUDA_R_16BF;
  if (dtype == "f16")
    return CUDA_R_16F;
  return CUDA_R_32F;
}

int64_t alignUp(int64_t value, int64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

int dtypeKind(const std::string &dtype) {
  return dtype == "bf16" ? 0 : dtype == "f16" ? 1 : 2;
}

/// The sampler writes @decode's next inputs while its own threads may still
/// read the logits (and lastLogits() reads them later): the buffers must not
/// share memory. The planner keeps them apart (the inputs are token-dynamic,
/// the logits static); a plan from elsewhere is checked.
absl::Status checkDecodeFeed(const PlanFunction &decode) {
  if (decode.inputs.size() != 2 || decode.outputs.empty())
    return absl::InvalidArgumentError(
        "plan: @decode needs two inputs (ids, positions) and a logits output");
  auto range = [&](int64_t index) {
    const PlanBuffer &buffer = decode.buffers[index];
    int64_t bytes = dtypeBytes(buffer.dtype);
    for (int64_t dim : buffer.shape)
      bytes *= dim < 0 ? 1 : dim;
    int64_t begin = decode.bufferOffset(index, 1);
    return std::pair(begin, begin + bytes);
  };
  auto [logitsBegin, logitsEnd] = range(decode.outputs[0]);
  for (int64_t input : decode.inputs) {
    auto [begin, end] = range(input);
    if (begin < logitsEnd && logitsBegin < end)
      return absl::InvalidArgumentError(absl::StrCat(
          "plan: @decode's input buffer ", input,
          " overlaps its logits; the sampler could not feed the next step"));
  }
  return absl::OkStatus();
}

} // namespace

const std::string &convertKernelSource() {
  static const std::string source =
      R"cuda(// treni kernel: convert (weight upload: checkpoint dtype -> activation dtype)
__device__ __forceinline__ float load(const float *p, long long i) { return p[i]; }
__device__ __forceinline__ float load(const unsigned short *p, long long i, int isHalf) {
  unsigned short bits = p[i];
  if (!isHalf) return __uint_as_float(((unsigned int)bits) << 16);
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits)); return f;
}
__device__ __forceinline__ unsigned short toBits(float f, int isHalf) {
  if (isHalf) { unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
  unsigned int u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
// srcKind/dstKind: 0 = bf16, 1 = f16, 2 = f32.
extern "C" __global__ void treni_convert(const void *in, void *out, long long n,
                                         int srcKind, int dstKind) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    float v = srcKind == 2 ? load((const float *)in, i)
                           : load((const unsigned short *)in, i, srcKind);
    if (dstKind == 2) ((float *)out)[i] = v;
    else ((unsigned short *)out)[i] = toBits(v, dstKind);
  }
}
)cuda";
  return source;
}

absl::StatusOr<std::string> currentDeviceArch() {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0)
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device available (",
        error == cudaSuccess ? "0 devices" : cudaGetErrorString(error), ")"));
  int device = 0, major = 0, minor = 0;
  TRENI_CUDA(cudaGetDevice(&device));
  TRENI_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                    device));
  TRENI_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                                    device));
  return nvrtcTargetFor(major, minor);
}

int64_t pagedPoolBlocksThatFit(int64_t freeBytes, int64_t otherBytes,
                               int64_t blockBytes, int64_t minBlocks) {
  if (blockBytes <= 0)
    return 0;
  // The scratch block comes on top of the blocks handed out.
  int64_t blocks = (freeBytes - otherBytes) / blockBytes - 1;
  blocks = std::min(blocks, kMaxPagedBlocks);
  return blocks >= std::max<int64_t>(minBlocks, 1) ? blocks : 0;
}

absl::StatusOr<int64_t> freeDeviceMemoryBytes() {
  TRENI_RETURN_IF_ERROR(currentDeviceArch().status());
  size_t freeBytes = 0, totalBytes = 0;
  TRENI_CUDA(cudaMemGetInfo(&freeBytes, &totalBytes));
  return int64_t(freeBytes);
}

/// common.cuh's KvPages, the cache kernels' last pointer argument: null
/// tables for a contiguous cache.
struct KvPagesDevice {
  const int32_t *blockTables = nullptr;
  const int32_t *tableOffsets = nullptr;
  const int32_t *runs = nullptr; ///< attention_flash's tiles in @step
  int blockShift = 0;
};

/// cudaFree / cudaFreeHost of every pointer given, null ones skipped.
template <typename... T> void freeDevice(T *...pointers) {
  ((pointers ? (void)cudaFree(pointers) : (void)0), ...);
}
template <typename... T> void freeHost(T *...pointers) {
  ((pointers ? (void)cudaFreeHost(pointers) : (void)0), ...);
}

/// One launch of a function: a generated kernel or a cuBLASLt GEMM.
struct StepLaunch {
  const PlanStep *step = nullptr;
  bool gemm = false;
  GemmShape gemmShape; ///< m filled per call
  /// A batched step's GEMM on up to 8, 16 and 32 rows: gemm_rows kernels
  /// with 1, 2 and 4 row tiles (null: cuBLASLt).
  std::array<cudaKernel_t, 3> rowKernels{};
  std::array<KernelLaunch, 3> rowLaunches{};
  cudaKernel_t kernel = nullptr;
  KernelLaunch launch;
  bool usesCache = false;
  std::string cache;
  int64_t layer = 0;
  /// In @step with GpuOptions::chunkFlash, an attention_seq1_partial's
  /// stand-in for the prompt-chunk rows (generateStepChunkAttentionKernel):
  /// attention_flash, writing the output of the list's launch `chunkReduce`.
  cudaKernel_t chunkKernel = nullptr;
  KernelLaunch chunkLaunch;
  size_t chunkReduce = 0;
  /// The partial or reduce of such a pair: with a chunk tile list, it runs
  /// on the sampled rows only.
  bool sampledRowsOnly = false;
};

struct GpuExecutor::Impl {
  /// Held by every public call: the single-sequence calls and the batch
  /// steps share the stream, the staging buffers and the graphs. Recursive:
  /// decodeStream's callback may call back in (lastLogits).
  std::recursive_mutex mutex;
  Plan plan;
  GpuOptions options;
  std::string actDtype;
  int64_t actBytes = 2;
  cudaStream_t stream = nullptr;
  std::unique_ptr<GemmRunner> gemm;
  std::vector<cudaLibrary_t> libraries;
  std::map<std::string, cudaKernel_t> kernels; ///< by entry
  char *weights = nullptr;
  std::vector<char *> weightPtrs;
  char *arena = nullptr;
  struct Cache {
    char *keys = nullptr, *values = nullptr;
    int64_t layerBytes = 0;
  };
  std::map<std::string, Cache> caches;
  static void freeCaches(std::map<std::string, Cache> &caches) {
    for (auto &[name, cache] : caches)
      cudaFree(cache.keys);
  }
  /// Bytes of every cache's keys and values for one position.
  int64_t kvBytesPerRow() const {
    int64_t bytes = 0;
    for (const PlanKvCache &cache : plan.caches)
      bytes += 2 * cache.numLayers * cache.numKvHeads * cache.headDim *
               dtypeBytes(cache.dtype);
    return bytes;
  }
  /// Allocates (zeroed) every cache of the plan into `into` with `rows`
  /// positions per layer; returns the bytes taken.
  absl::StatusOr<int64_t> allocateCaches(std::map<std::string, Cache> &into,
                                         int64_t rows) {
    int64_t total = 0;
    for (const PlanKvCache &cache : plan.caches) {
      Cache &c = into[cache.name];
      c.layerBytes =
          rows * cache.numKvHeads * cache.headDim * dtypeBytes(cache.dtype);
      int64_t bytes = c.layerBytes * cache.numLayers;
      TRENI_CUDA(cudaMalloc((void **)&c.keys, 2 * bytes));
      TRENI_CUDA(cudaMemset(c.keys, 0, 2 * bytes));
      c.values = c.keys + bytes;
      total += 2 * bytes;
    }
    return total;
  }
  /// What @step (continuous batching) runs in, made by preparePagedPool:
  /// a KV pool of blocks per cache, an arena for its largest step, the
  /// step's block tables on the device, and pinned staging for its inputs
  /// and the sampled rows' logits.
  struct PagedPool {
    std::map<std::string, Cache> caches;
    int64_t numBlocks = 0, blockTokens = 0, maxTokens = 0;
    int blockShift = 0;
    char *arena = nullptr;
    /// Device: row offsets (maxTokens), then block ids (tableCapacity).
    int32_t *tables = nullptr;
    int64_t tableCapacity = 0;
    /// Pinned: ids, positions, offsets (maxTokens each), then block ids.
    int32_t *hostInputs = nullptr;
    float *hostLogits = nullptr;
    int64_t logitRows = 0;
    /// The sampler's per-row state (runStepSampled), maxTokens rows: steps
    /// (pinned staging and device), split partials and arrival counts, and
    /// the results (pinned, mapped).
    unsigned long long *hostSteps = nullptr, *steps = nullptr;
    /// Per row: the sampling parameters, and the rows of each launch (the
    /// split greedy ones, then the others); pinned staging, then device.
    SamplingParamsDevice *hostParams = nullptr, *params = nullptr;
    int32_t *hostRows = nullptr, *rows = nullptr;
    SamplePartialDevice *partials = nullptr;
    unsigned *arrivals = nullptr;
    SampleResultDevice *hostResults = nullptr, *mappedResults = nullptr;
    /// Steps from here on compute only the sampled rows (see runStep).
    size_t tailStart = 0;
    /// attention_flash's tiles of a step's prompt-chunk rows (chunkFlash):
    /// query heads per KV head and vectors per tile of its kernels (0: none),
    /// and room for runCapacity tiles, device and pinned staging.
    int64_t chunkGroup = 0, chunkBlockM = 0, runCapacity = 0;
    int32_t *runs = nullptr, *hostRuns = nullptr;
    /// Captured graphs on the pool by function and rows: @step by row bucket
    /// (a power of two; steps whose rows are all sampled run padded to
    /// theirs), @decode for a step of one sampled row.
    std::map<std::pair<const PlanFunction *, int64_t>, cudaGraphExec_t> graphs;
    /// Whether @decode may run a one-row step on the pool: every cache
    /// kernel of it follows block tables.
    bool decodeOnPool = false;

    ~PagedPool() {
      for (auto &[key, graph] : graphs)
        cudaGraphExecDestroy(graph);
      freeCaches(caches);
      freeDevice(arena, tables, steps, partials, arrivals, params, rows, runs);
      freeHost(hostInputs, hostLogits, hostSteps, hostResults, hostParams,
               hostRows, hostRuns);
    }
  };
  std::unique_ptr<PagedPool> pool;
  /// Set while a one-sequence function (@decode) is enqueued onto the pool
  /// (PoolScope): its buffers and caches are then the pool's, as a paged
  /// function's always are.
  bool onPool = false;
  struct PoolScope {
    Impl &impl;
    bool previous;
    explicit PoolScope(Impl &impl) : impl(impl), previous(impl.onPool) {
      impl.onPool = true;
    }
    ~PoolScope() { impl.onPool = previous; }
  };
  bool runsOnPool(const PlanFunction &function) const {
    return onPool || pagedCache(function);
  }
  std::map<std::string, std::vector<StepLaunch>> launches; ///< by function
  cudaKernel_t sampler = nullptr;
  cudaKernel_t rowSampler = nullptr; ///< treni_sample_rows (batched steps)
  /// The sampler's results, two slots (see SampleFeedDevice): pinned host
  /// memory, mapped (the sampler writes them through mappedResults; the host
  /// reads a slot after waiting for its step).
  SampleResultDevice *hostResults = nullptr, *mappedResults = nullptr;
  unsigned long long *stepCounter = nullptr;
  /// A split greedy sampler's per-block partials and arrival count.
  SamplePartialDevice *samplePartials = nullptr;
  unsigned *sampleArrivals = nullptr;
  /// Device: the position of the decode step that runs next (the feed's).
  int32_t *feedPosition = nullptr;
  /// Pinned: maxSeq ids, maxSeq positions, then the feed position.
  int32_t *hostInputs = nullptr;
  /// Completion of the last two decode steps enqueued (decodeStream).
  cudaEvent_t stepDone[2] = {nullptr, nullptr};
  cudaGraphExec_t graph = nullptr;
  SamplingParams graphParams;
  const PlanFunction *lastFunction = nullptr;
  /// What @decode's inputs will hold when the enqueued work is done: the
  /// token and position the last decode step's sampler fed (or the host
  /// wrote). Empty when unknown (after prefill, profiling, an error).
  struct Fed {
    int32_t id = 0;
    int64_t position = 0;
    bool operator==(const Fed &) const = default;
  };
  std::optional<Fed> fed;

  ~Impl() {
    pool.reset();
    if (graph)
      cudaGraphExecDestroy(graph);
    gemm.reset();
    for (cudaLibrary_t library : libraries)
      cudaLibraryUnload(library);
    freeDevice(weights, arena, stepCounter, feedPosition, samplePartials,
               sampleArrivals);
    freeCaches(caches);
    for (cudaEvent_t event : stepDone)
      if (event)
        cudaEventDestroy(event);
    freeHost(hostResults, hostInputs);
    if (stream)
      cudaStreamDestroy(stream);
  }

  absl::StatusOr<cudaKernel_t> loadKernel(const std::string &entry,
                                          const std::string &source,
                                          const std::string &arch,
                                          KernelCompiler &compiler,
                                          GpuLoadStats &stats) {
    if (auto it = kernels.find(entry); it != kernels.end())
      return it->second;
    std::string cubin;
    // A package's cubins run when built for this architecture; an sm_90
    // package's also run on the sm_90a target (same hardware, without the
    // arch-specific paths such as attention_flash's wgmma).
    bool cubinRuns =
        options.cubinArch == arch || options.cubinArch + "a" == arch;
    if (options.cubins && cubinRuns && options.cubins->count(entry)) {
      cubin = options.cubins->at(entry);
      ++stats.aotKernels;
    } else {
      TRENI_ASSIGN_OR_RETURN(cubin, compiler.cubin(source, arch));
    }
    cudaLibrary_t library;
    TRENI_CUDA(cudaLibraryLoadData(&library, cubin.data(), nullptr, nullptr, 0,
                                   nullptr, nullptr, 0));
    libraries.push_back(library);
    cudaKernel_t kernel;
    TRENI_CUDA(cudaLibraryGetKernel(&kernel, library, entry.c_str()));
    kernels[entry] = kernel;
    ++stats.kernels;
    return kernel;
  }

  absl::Status uploadWeights(const Checkpoint &checkpoint,
                             KernelCompiler &compiler, const std::string &arch,
                             GpuLoadStats &stats) {
    auto start = std::chrono::steady_clock::now();
    TRENI_ASSIGN_OR_RETURN(auto tensors, matchPlanWeights(plan, checkpoint));
    // A concatenated weight (treni.concat) is its parts back to back: rows of
    // row-major [N, K] tensors concatenated along dimension 0 are contiguous,
    // so each part lands at the previous part's end.
    std::vector<int64_t> offsets;
    int64_t total = 0, largestConverted = 0;
    for (const WeightTensors &parts : tensors) {
      offsets.push_back(total);
      int64_t elements = 0;
      for (const TensorInfo *info : parts) {
        elements += info->numElements();
        if (planDtypeOf(dtypeName(info->dtype)) != actDtype)
          largestConverted =
              std::max<int64_t>(largestConverted, info->byteSize);
      }
      total += alignUp(elements * actBytes, 256);
    }
    TRENI_CUDA(cudaMalloc((void **)&weights, std::max<int64_t>(total, 256)));
    char *scratch = nullptr;
    if (largestConverted)
      TRENI_CUDA(cudaMalloc((void **)&scratch, largestConverted));
    cudaKernel_t convert = nullptr;
    if (largestConverted) {
      TRENI_ASSIGN_OR_RETURN(convert,
                             loadKernel("treni_convert", convertKernelSource(),
                                        arch, compiler, stats));
    }

    // Two pinned staging buffers: the CPU fills one from the mmap while the
    // copy engine drains the other.
    constexpr int64_t kChunk = 64 << 20;
    char *staging[2] = {nullptr, nullptr};
    cudaEvent_t drained[2] = {nullptr, nullptr};
    absl::Status status = [&]() -> absl::Status {
      for (int i = 0; i < 2; ++i) {
        TRENI_CUDA(
            cudaHostAlloc((void **)&staging[i], kChunk, cudaHostAllocDefault));
        TRENI_CUDA(
            cudaEventCreateWithFlags(&drained[i], cudaEventDisableTiming));
        TRENI_CUDA(cudaEventRecord(drained[i], stream));
      }
      int slot = 0;
      for (size_t w = 0; w < tensors.size(); ++w) {
        char *target = weights + offsets[w];
        weightPtrs.push_back(target);
        for (const TensorInfo *info : tensors[w]) {
          auto bytes = checkpoint.data(*info);
          std::string srcDtype = planDtypeOf(dtypeName(info->dtype));
          char *dst = srcDtype == actDtype ? target : scratch;
          for (int64_t offset = 0; offset < int64_t(bytes.size());
               offset += kChunk) {
            int64_t n = std::min<int64_t>(kChunk, bytes.size() - offset);
            TRENI_CUDA(cudaEventSynchronize(drained[slot]));
            std::memcpy(staging[slot], bytes.data() + offset, n);
            TRENI_CUDA(cudaMemcpyAsync(dst + offset, staging[slot], n,
                                       cudaMemcpyHostToDevice, stream));
            TRENI_CUDA(cudaEventRecord(drained[slot], stream));
            slot ^= 1;
          }
          if (dst == scratch) {
            // The scratch buffer is reused by the next converted part: the
            // conversion is queued on the same stream before that part's
            // copies, so it reads this part's data.
            long long count = info->numElements();
            int srcKind = dtypeKind(srcDtype), dstKind = dtypeKind(actDtype);
            void *in = scratch, *out = target;
            void *args[] = {&in, &out, &count, &srcKind, &dstKind};
            TRENI_CUDA(cudaLaunchKernel((const void *)convert, dim3(1024),
                                        dim3(256), args, 0, stream));
          }
          target += info->numElements() * actBytes;
          stats.weightBytes += bytes.size();
        }
      }
      TRENI_CUDA(cudaStreamSynchronize(stream));
      return absl::OkStatus();
    }();
    for (int i = 0; i < 2; ++i) {
      if (staging[i])
        cudaFreeHost(staging[i]);
      if (drained[i])
        cudaEventDestroy(drained[i]);
    }
    if (scratch)
      cudaFree(scratch);
    stats.weightSeconds = secondsSince(start);
    return status;
  }

  /// Compiles or loads the kernels of the functions for which `wanted`
  /// holds and records their launches.
  absl::Status prepareLaunches(KernelCompiler &compiler,
                               const std::string &arch, GpuLoadStats &stats,
                               bool (*wanted)(const PlanFunction &)) {
    for (const PlanFunction &function : plan.functions) {
      if (!wanted(function))
        continue;
      std::vector<StepLaunch> &list = launches[function.name];
      for (const PlanStep &step : function.steps) {
        StepLaunch launch;
        launch.step = &step;
        if (step.templateName == "gemm") {
          launch.gemm = true;
          TRENI_ASSIGN_OR_RETURN(launch.gemmShape.n, step.intConstant("n"));
          TRENI_ASSIGN_OR_RETURN(launch.gemmShape.k, step.intConstant("k"));
          TRENI_ASSIGN_OR_RETURN(launch.gemmShape.bias,
                                 step.boolConstant("bias"));
          launch.gemmShape.inType = cudaType(actDtype);
          launch.gemmShape.outType =
              cudaType(function.buffers[step.outputs.at(0)].dtype);
          if (pagedCache(function))
            TRENI_RETURN_IF_ERROR(
                prepareRowKernels(function, launch, arch, compiler, stats));
        } else {
          std::optional<KernelGeometry> geometry;
          if (options.seq1TensorCores &&
              step.templateName == "attention_seq1_partial") {
            TRENI_ASSIGN_OR_RETURN(
                geometry,
                findKernelTemplate(step.templateName)->geometry(step));
            for (DerivedConstant &constant : geometry->constants)
              if (constant.name == "kTensorCores")
                constant.value = int64_t(1);
          }
          TRENI_ASSIGN_OR_RETURN(
              KernelSpec spec,
              generateKernel(plan, function, *launch.step, geometry));
          TRENI_ASSIGN_OR_RETURN(
              launch.kernel,
              loadKernel(spec.entry, spec.source, arch, compiler, stats));
          launch.launch = spec.launch;
          launch.usesCache = spec.usesCache;
          if (spec.usesCache) {
            TRENI_ASSIGN_OR_RETURN(launch.cache, step.stringConstant("cache"));
            TRENI_ASSIGN_OR_RETURN(launch.layer, step.intConstant("layer"));
            if (!plan.cache(launch.cache))
              return absl::InvalidArgumentError("plan: unknown cache " +
                                                launch.cache);
          }
          TRENI_RETURN_IF_ERROR(allowSharedBytes(
              launch.kernel,
              spec.launch.sharedBytes +
                  spec.launch.sharedBytesPerPosition * options.maxSeq));
        }
        list.push_back(launch);
      }
      if (pagedCache(function) && options.chunkFlash)
        TRENI_RETURN_IF_ERROR(
            prepareChunkKernels(function, list, arch, compiler, stats));
    }
    return absl::OkStatus();
  }

  /// GpuOptions::chunkFlash: attention_flash for the prompt-chunk rows of
  /// each attention_seq1_partial / reduce pair of @step (none where the
  /// template does not apply: those rows stay on the split-KV kernels).
  absl::Status prepareChunkKernels(const PlanFunction &function,
                                   std::vector<StepLaunch> &list,
                                   const std::string &arch,
                                   KernelCompiler &compiler,
                                   GpuLoadStats &stats) {
    for (StepLaunch &launch : list) {
      const PlanStep *reduce = chunkAttentionReduce(function, *launch.step);
      if (!reduce)
        continue;
      auto spec = generateStepChunkAttentionKernel(plan, function, *launch.step,
                                                   *reduce);
      if (absl::IsUnimplemented(spec.status()))
        continue;
      TRENI_RETURN_IF_ERROR(spec.status());
      size_t reduceIndex = 0;
      while (reduceIndex < list.size() && list[reduceIndex].step != reduce)
        ++reduceIndex;
      if (reduceIndex == list.size())
        return absl::InternalError("@step: an attention reduce is missing");
      TRENI_ASSIGN_OR_RETURN(
          launch.chunkKernel,
          loadKernel(spec->entry, spec->source, arch, compiler, stats));
      launch.chunkLaunch = spec->launch;
      launch.chunkReduce = reduceIndex;
      launch.sampledRowsOnly = list[reduceIndex].sampledRowsOnly = true;
      TRENI_RETURN_IF_ERROR(
          allowSharedBytes(launch.chunkKernel, spec->launch.sharedBytes));
    }
    return absl::OkStatus();
  }

  /// Lets `kernel` take `bytes` of dynamic shared memory (past the default
  /// 48 KiB only when asked to).
  absl::Status allowSharedBytes(cudaKernel_t kernel, int64_t bytes) {
    if (bytes <= 48 * 1024)
      return absl::OkStatus();
    int device = 0;
    TRENI_CUDA(cudaGetDevice(&device));
    TRENI_CUDA(cudaKernelSetAttributeForDevice(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes),
        device));
    return absl::OkStatus();
  }

  /// The pool's block tables as common.cuh's KvPages, with `runs` (the
  /// chunk kernels' tiles) or without.
  KvPagesDevice poolPages(const int32_t *runs = nullptr) const {
    return {pool->tables + pool->maxTokens, pool->tables, runs,
            pool->blockShift};
  }

  /// The gemm_rows kernels of a batched step's GEMM, up to
  /// options.gemmRowsMax rows (none where the template does not apply).
  absl::Status prepareRowKernels(const PlanFunction &function,
                                 StepLaunch &launch, const std::string &arch,
                                 KernelCompiler &compiler,
                                 GpuLoadStats &stats) {
    for (int i = 0; i < 3; ++i) {
      const int64_t rowTiles = int64_t(1) << i;
      if (options.gemmRowsMax < (i == 0 ? 1 : 4 * rowTiles + 1))
        break; // rows 1-8, 9-16, 17-32
      auto spec =
          generateGemmRowsKernel(plan, function, *launch.step, rowTiles);
      if (absl::IsUnimplemented(spec.status()))
        return absl::OkStatus(); // this GEMM stays on cuBLASLt
      TRENI_RETURN_IF_ERROR(spec.status());
      TRENI_ASSIGN_OR_RETURN(
          launch.rowKernels[i],
          loadKernel(spec->entry, spec->source, arch, compiler, stats));
      launch.rowLaunches[i] = spec->launch;
    }
    return absl::OkStatus();
  }

  /// The gemm_rows kernel (and its launch) for `rows` rows of `launch`'s
  /// GEMM, or null when cuBLASLt runs it.
  std::pair<cudaKernel_t, const KernelLaunch *>
  rowKernel(const StepLaunch &launch, int64_t rows) const {
    if (rows > options.gemmRowsMax)
      return {nullptr, nullptr};
    int i = rows <= 8 ? 0 : rows <= 16 ? 1 : rows <= 32 ? 2 : 3;
    if (i == 3 || !launch.rowKernels[i])
      return {nullptr, nullptr};
    return {launch.rowKernels[i], &launch.rowLaunches[i]};
  }

  absl::Status prepareGemms(const PlanFunction &function, int64_t tokens) {
    for (const StepLaunch &launch : launches[function.name])
      if (launch.gemm) {
        GemmShape shape = launch.gemmShape;
        shape.m = rowsOf(function, *launch.step, tokens);
        if (!rowKernel(launch, shape.m).first)
          TRENI_RETURN_IF_ERROR(gemm->prepare(shape));
      }
    return absl::OkStatus();
  }

  /// Times cuBLASLt's candidate algorithms for each GEMM of `function` on
  /// `tokens` rows that cuBLASLt runs, on the function's own operands
  /// (GemmRunner::tune: outputs are overwritten, as the step would), before
  /// a graph captures them.
  absl::Status tuneGemms(const PlanFunction &function, int64_t tokens) {
    const std::vector<StepLaunch> &list = launches[function.name];
    for (size_t i = 0; i < list.size(); ++i) {
      const StepLaunch &launch = list[i];
      if (!launch.gemm)
        continue;
      GemmShape shape = launch.gemmShape;
      shape.m = rowsOf(function, *launch.step, tokens);
      if (rowKernel(launch, shape.m).first)
        continue;
      std::vector<void *> pointers = stepPointers(function, launch, tokens);
      TRENI_RETURN_IF_ERROR(gemm->tune(shape, pointers[0], pointers[1],
                                       shape.bias ? pointers[2] : nullptr,
                                       pointers.back(), stream));
    }
    return absl::OkStatus();
  }

  /// A step's operand addresses: inputs (weights or buffers), then outputs.
  std::vector<void *> stepPointers(const PlanFunction &function,
                                   const StepLaunch &launch, int64_t tokens) {
    std::vector<void *> pointers;
    for (const PlanOperand &operand : launch.step->inputs)
      pointers.push_back(operand.kind == PlanOperand::Kind::Weight
                             ? weightPtrs[operand.index]
                             : bufferAddress(function, operand.index, tokens));
    for (int64_t output : launch.step->outputs)
      pointers.push_back(bufferAddress(function, output, tokens));
    return pointers;
  }

  static int rowsOf(const PlanFunction &function, const PlanStep &step,
                    int64_t tokens) {
    const PlanBuffer &first = function.buffers[step.inputs[0].index];
    return int(first.dynamic ? tokens : first.shape[0]);
  }

  /// A paged function (@step) runs in the pool's arena and caches.
  char *bufferAddress(const PlanFunction &function, int64_t buffer,
                      int64_t tokens) {
    char *base = runsOnPool(function) ? pool->arena : arena;
    return base + function.bufferOffset(buffer, tokens);
  }

  /// Enqueues every step of `function` for `tokens` rows on the stream.
  /// Enqueues every step; with `events` (profiling, never under capture), an
  /// event pair around each step.
  /// With `tail` (a paged step), the steps from pool->tailStart on run on
  /// its first `tail->rows` rows only.
  /// With `chunkTiles` (attention_flash's tiles of the prompt-chunk rows,
  /// in pool->runs), the split-KV attention runs on the first `rows` rows
  /// too, and each chunk kernel on the tiles.
  struct Tail {
    size_t from = 0;
    int64_t rows = 0;
    int64_t chunkTiles = 0;
  };
  absl::Status enqueueSteps(
      const PlanFunction &function, int64_t tokens,
      std::vector<std::pair<cudaEvent_t, cudaEvent_t>> *events = nullptr,
      std::optional<Tail> tail = std::nullopt) {
    const std::vector<StepLaunch> &list = launches[function.name];
    const int64_t chunkTiles = tail ? tail->chunkTiles : 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (events)
        TRENI_CUDA(cudaEventRecord((*events)[i].first, stream));
      int64_t rowLimit =
          tail && (i >= tail->from || (chunkTiles && list[i].sampledRowsOnly))
              ? tail->rows
              : tokens;
      TRENI_RETURN_IF_ERROR(enqueueStep(function, list[i], tokens, rowLimit));
      if (events)
        TRENI_CUDA(cudaEventRecord((*events)[i].second, stream));
      if (chunkTiles && list[i].chunkKernel) {
        auto *pair = events ? &(*events)[list.size() + i] : nullptr;
        if (pair)
          TRENI_CUDA(cudaEventRecord(pair->first, stream));
        TRENI_RETURN_IF_ERROR(
            enqueueChunkFlash(function, list, i, tokens, chunkTiles));
        if (pair)
          TRENI_CUDA(cudaEventRecord(pair->second, stream));
      }
    }
    return absl::OkStatus();
  }

  /// Launch `i`'s chunk kernel (attention_flash) on `tiles` tiles of the
  /// step's prompt-chunk rows (pool->runs): the partial's query and
  /// positions, the reduce's output.
  absl::Status enqueueChunkFlash(const PlanFunction &function,
                                 const std::vector<StepLaunch> &list, size_t i,
                                 int64_t tokens, int64_t tiles) {
    const StepLaunch &launch = list[i];
    std::vector<void *> partial = stepPointers(function, launch, tokens);
    std::vector<void *> reduce =
        stepPointers(function, list[launch.chunkReduce], tokens);
    Cache &cache = pool->caches[launch.cache];
    void *query = partial.at(0), *positions = partial.at(1),
         *out = reduce.at(1);
    void *keys = cache.keys + launch.layer * cache.layerBytes;
    void *values = cache.values + launch.layer * cache.layerBytes;
    KvPagesDevice pages = poolPages(pool->runs);
    int rows = int(tokens);
    void *args[] = {&query, &positions, &out, &keys, &values, &pages, &rows};
    return launchKernel(
        launch.chunkKernel,
        dim3(unsigned(launch.chunkLaunch.blocksX), unsigned(tiles)),
        dim3(unsigned(launch.chunkLaunch.threads)),
        size_t(launch.chunkLaunch.sharedBytes), args);
  }

  /// Enqueues one step: a cuBLASLt GEMM or a generated kernel with the
  /// generic argument list (inputs, outputs, [layer's key and value cache,
  /// pages], rows). Buffers are laid out for `tokens` rows; the step
  /// computes at most `rowLimit` of them.
  absl::Status enqueueStep(const PlanFunction &function,
                           const StepLaunch &launch, int64_t tokens,
                           int64_t rowLimit) {
    const PlanStep &step = *launch.step;
    std::vector<void *> pointers = stepPointers(function, launch, tokens);
    int rows = int(std::min<int64_t>(rowsOf(function, step, tokens), rowLimit));
    if (rows == 0)
      return absl::OkStatus(); // a step that samples no row
    if (launch.gemm) {
      GemmShape shape = launch.gemmShape;
      shape.m = rows;
      void *bias = shape.bias ? pointers[2] : nullptr;
      if (auto [kernel, rule] = rowKernel(launch, rows); kernel) {
        void *args[] = {&pointers[0], &pointers[1], &bias, &pointers.back(),
                        &rows};
        return launchKernel(kernel, dim3(unsigned(rule->blocksX)),
                            dim3(unsigned(rule->threads)), 0, args);
      }
      return gemm->run(shape, pointers[0], pointers[1], bias, pointers.back(),
                       stream);
    }
    KvPagesDevice pages;
    if (launch.usesCache) {
      const bool paged = runsOnPool(function);
      Cache &cache = (paged ? pool->caches : caches)[launch.cache];
      pointers.push_back(cache.keys + launch.layer * cache.layerBytes);
      pointers.push_back(cache.values + launch.layer * cache.layerBytes);
      if (paged)
        pages = poolPages();
    }
    std::vector<void *> args;
    for (void *&pointer : pointers)
      args.push_back(&pointer);
    if (launch.usesCache)
      args.push_back(&pages);
    args.push_back(&rows);
    dim3 grid(unsigned(launch.launch.blocksX),
              unsigned(launch.launch.gridY(rows)), 1u);
    int64_t shared = launch.launch.sharedBytes +
                     launch.launch.sharedBytesPerPosition * options.maxSeq;
    // Every generated kernel starts with treniWaitForPreviousKernel().
    return launchKernel(launch.kernel, grid,
                        dim3(unsigned(launch.launch.threads)), size_t(shared),
                        args.data());
  }

  /// Launches `kernel` on the stream, programmatically (may start while the
  /// previous kernel finishes) unless --no-pdl: the kernel must wait with
  /// griddepcontrol.wait before touching memory.
  absl::Status launchKernel(cudaKernel_t kernel, dim3 grid, dim3 block,
                            size_t sharedBytes, void **args) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = sharedBytes;
    config.stream = stream;
    cudaLaunchAttribute attribute = {};
    if (options.programmaticLaunch) {
      attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attribute.val.programmaticStreamSerializationAllowed = 1;
      config.attrs = &attribute;
      config.numAttrs = 1;
    }
    TRENI_CUDA(cudaLaunchKernelExC(&config, (const void *)kernel, args));
    return absl::OkStatus();
  }

  /// Copies `tokens` token ids and positions from host memory to the
  /// function's two input buffers (under capture: the graph's first nodes,
  /// reading the host memory whenever the graph runs).
  absl::Status copyInputs(const PlanFunction &function, const int32_t *ids,
                          const int32_t *positions, int64_t tokens) {
    size_t bytes = tokens * sizeof(int32_t);
    TRENI_CUDA(
        cudaMemcpyAsync(bufferAddress(function, function.inputs[0], tokens),
                        ids, bytes, cudaMemcpyHostToDevice, stream));
    TRENI_CUDA(
        cudaMemcpyAsync(bufferAddress(function, function.inputs[1], tokens),
                        positions, bytes, cudaMemcpyHostToDevice, stream));
    return absl::OkStatus();
  }

  /// Waits for the stream's work, or with `event` for the work before it.
  /// With spinWait the host polls instead of sleeping until the driver wakes
  /// it up, which costs a decode step's worth of time at small model sizes.
  absl::Status wait(cudaEvent_t event = nullptr) {
    if (!options.spinWait) {
      TRENI_CUDA(event ? cudaEventSynchronize(event)
                       : cudaStreamSynchronize(stream));
      return absl::OkStatus();
    }
    cudaError_t state;
    while ((state = event ? cudaEventQuery(event) : cudaStreamQuery(stream)) ==
           cudaErrorNotReady) {
    }
    TRENI_CUDA(state);
    return absl::OkStatus();
  }

  /// Enqueues the sampler on `function`'s logits. With a feed (decode) it
  /// also writes the next decode step's inputs.
  absl::Status enqueueSample(const PlanFunction &function,
                             const SamplingParams &params, int64_t vocab,
                             SampleFeedDevice feed) {
    const float *logits = reinterpret_cast<const float *>(
        bufferAddress(function, function.outputs[0], 1));
    int vocabSize = int(vocab);
    SamplingParamsDevice deviceParams = toDeviceParams(params);
    // The sampler writes its result straight into mapped pinned memory (no
    // copy node after it) and, like the generated kernels, may launch while
    // the logits are still being computed (it waits for them first).
    void *args[] = {&logits,         &vocabSize,     &deviceParams,
                    &stepCounter,    &mappedResults, &feed,
                    &samplePartials, &sampleArrivals};
    return launchKernel(sampler, dim3(samplerBlocks(params)),
                        dim3(kSamplerThreads), 0, args);
  }

  const PlanFunction &decodeFunction() const {
    return *plan.function("decode");
  }

  /// @decode's own inputs as the sampler's feed.
  SampleFeedDevice decodeFeed() {
    const PlanFunction &function = decodeFunction();
    return {reinterpret_cast<int32_t *>(
                bufferAddress(function, function.inputs[0], 1)),
            reinterpret_cast<int32_t *>(
                bufferAddress(function, function.inputs[1], 1)),
            feedPosition};
  }

  /// Makes @decode's inputs (and the feed position) `id` at `position`:
  /// nothing to do when the last decode step fed exactly that, else three
  /// copies from pinned memory (the stream must be idle: they read it when
  /// they run).
  absl::Status feedDecode(int32_t id, int64_t position) {
    Fed wanted{id, position};
    if (fed == wanted)
      return absl::OkStatus();
    fed.reset();
    int32_t *hostIds = hostInputs, *hostPositions = hostInputs + maxSeq(),
            *hostFeed = hostInputs + 2 * maxSeq();
    hostIds[0] = id;
    hostPositions[0] = hostFeed[0] = int32_t(position);
    TRENI_RETURN_IF_ERROR(
        copyInputs(decodeFunction(), hostIds, hostPositions, 1));
    TRENI_CUDA(cudaMemcpyAsync(feedPosition, hostFeed, sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    fed = wanted;
    return absl::OkStatus();
  }

  /// Captures the decode graph for `params` unless the current one is for
  /// them (no-op without graphs). Nothing else may be pending on the stream
  /// that the graph must not include: capture starts on an idle stream.
  absl::Status prepareDecode(const SamplingParams &params, int64_t vocab) {
    // Field by field: a memcmp also compared the struct's padding, which made
    // every decode step capture the graph again (0.7 ms per token at 0.5B).
    if (!options.cudaGraphs || (graph && graphParams == params))
      return absl::OkStatus();
    if (graph) {
      TRENI_CUDA(cudaGraphExecDestroy(graph));
      graph = nullptr;
    }
    const PlanFunction &function = decodeFunction();
    // GEMM plans are made before capture: heuristic queries are not
    // capturable.
    TRENI_RETURN_IF_ERROR(prepareGemms(function, 1));
    cudaGraph_t captured;
    TRENI_CUDA(
        cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    absl::Status status = enqueueSteps(function, 1);
    if (status.ok())
      status = enqueueSample(function, params, vocab, decodeFeed());
    cudaError_t end = cudaStreamEndCapture(stream, &captured);
    TRENI_RETURN_IF_ERROR(status);
    TRENI_CUDA(end);
    cudaError_t instantiated = cudaGraphInstantiate(&graph, captured, 0);
    cudaGraphDestroy(captured);
    TRENI_CUDA(instantiated);
    graphParams = params;
    ++graphCaptures;
    return absl::OkStatus();
  }

  /// The captured graph of `function` (@step, or @decode for one row) over
  /// `rows` rows on the pool, all sampled (captured on first use, the GEMM
  /// plans made first, as for decode). Capture takes none of the work
  /// already on the stream.
  absl::StatusOr<cudaGraphExec_t> stepGraph(const PlanFunction &function,
                                            int64_t rows) {
    std::pair key{&function, rows};
    if (auto it = pool->graphs.find(key); it != pool->graphs.end())
      return it->second;
    PoolScope scope(*this);
    TRENI_RETURN_IF_ERROR(prepareGemms(function, rows));
    if (options.gemmTuning)
      TRENI_RETURN_IF_ERROR(tuneGemms(function, rows));
    cudaGraph_t captured;
    TRENI_CUDA(
        cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    absl::Status status =
        enqueueSteps(function, rows, nullptr, Tail{pool->tailStart, rows});
    cudaError_t end = cudaStreamEndCapture(stream, &captured);
    TRENI_RETURN_IF_ERROR(status);
    TRENI_CUDA(end);
    cudaGraphExec_t graph = nullptr;
    cudaError_t instantiated = cudaGraphInstantiate(&graph, captured, 0);
    cudaGraphDestroy(captured);
    TRENI_CUDA(instantiated);
    pool->graphs[key] = graph;
    return graph;
  }

  /// Enqueues one decode step on the inputs fed: the graph, or (without
  /// graphs) its launches one by one. Advances `fed` past it when known.
  absl::Status enqueueDecode(const SamplingParams &params, int64_t vocab) {
    fed.reset(); // known again once the step's token is read
    if (graph && options.cudaGraphs) {
      TRENI_CUDA(cudaGraphLaunch(graph, stream));
      return absl::OkStatus();
    }
    const PlanFunction &function = decodeFunction();
    TRENI_RETURN_IF_ERROR(enqueueSteps(function, 1));
    return enqueueSample(function, params, vocab, decodeFeed());
  }

  /// The result of the decode step at `position`, once it is done.
  absl::StatusOr<SampleResult> decodeResult(int64_t position) {
    lastFunction = &decodeFunction();
    return fromDeviceResult(hostResults[position & 1]);
  }
  /// Once the decode step at `position` is the last one done: what it fed.
  void fedBy(int64_t position) {
    fed = Fed{std::max(hostResults[position & 1].token, 0), position + 1};
  }

  int64_t maxSeq() const { return options.maxSeq; }
  int64_t graphCaptures = 0;

  /// Runs `function` for `tokens` rows (inputs already in hostInputs: ids,
  /// then positions at maxSeq) `iterations` times with an event pair around
  /// every step; returns each step's mean time and its FLOPs.
  absl::StatusOr<std::vector<StepTime>>
  profileSteps(const PlanFunction &function, int64_t tokens, int iterations) {
    const std::vector<StepLaunch> &list = launches[function.name];
    std::vector<std::pair<cudaEvent_t, cudaEvent_t>> events(list.size());
    for (auto &[begin, end] : events) {
      TRENI_CUDA(cudaEventCreate(&begin));
      TRENI_CUDA(cudaEventCreate(&end));
    }
    std::vector<StepTime> times(list.size());
    for (size_t i = 0; i < list.size(); ++i)
      times[i] = {
          list[i].step->templateName, list[i].step->origin, 0.0,
          stepFlops(function, list[i], tokens),
          list[i].gemm
              ? gemmText(list[i], rowsOf(function, *list[i].step, tokens))
              : std::string()};
    fed.reset();
    absl::Status status = [&]() -> absl::Status {
      for (int it = 0; it < iterations; ++it) {
        TRENI_RETURN_IF_ERROR(
            copyInputs(function, hostInputs, hostInputs + maxSeq(), tokens));
        TRENI_RETURN_IF_ERROR(enqueueSteps(function, tokens, &events));
        TRENI_CUDA(cudaStreamSynchronize(stream));
        for (size_t i = 0; i < list.size(); ++i) {
          float ms = 0;
          TRENI_CUDA(
              cudaEventElapsedTime(&ms, events[i].first, events[i].second));
          times[i].microseconds += 1e3 * ms / iterations;
        }
      }
      return absl::OkStatus();
    }();
    for (auto &[begin, end] : events) {
      cudaEventDestroy(begin);
      cudaEventDestroy(end);
    }
    TRENI_RETURN_IF_ERROR(status);
    return times;
  }

  /// A GEMM launch on m rows as a profile names it: "m=.. n=.. k=..", then
  /// " +bias" and " rows" (on gemm_rows) where they hold.
  std::string gemmText(const StepLaunch &launch, int64_t m) const {
    return absl::StrCat("m=", m, " n=", launch.gemmShape.n,
                        " k=", launch.gemmShape.k,
                        launch.gemmShape.bias ? " +bias" : "",
                        rowKernel(launch, m).first ? " rows" : "");
  }

  /// Multiply-add FLOPs of a GEMM step (2 m n k) or of causal attention
  /// over positions 0..tokens-1 (QK^T and PV: 4 head_dim per query head and
  /// key, half the square); 0 for the rest.
  double stepFlops(const PlanFunction &function, const StepLaunch &launch,
                   int64_t tokens) const {
    const PlanStep &step = *launch.step;
    if (launch.gemm)
      return 2.0 * rowsOf(function, step, tokens) * launch.gemmShape.n *
             launch.gemmShape.k;
    if (step.templateName == "attention" ||
        step.templateName == "attention_flash") {
      auto heads = step.intConstant("num_heads");
      auto headDim = step.intConstant("head_dim");
      if (heads.ok() && headDim.ok())
        return 4.0 * double(*heads) * double(*headDim) * double(tokens) *
               double(tokens + 1) / 2;
    }
    return 0;
  }

  /// Tokens of one prefill launch sequence.
  int64_t chunkTokens() const {
    return std::min(options.maxSeq, options.prefillChunk);
  }

  /// The arena: the larger function's, the prefill's for `prefillTokens`
  /// (by default one chunk). @step has the pool's arena.
  int64_t arenaBytes(int64_t prefillTokens) const {
    int64_t bytes = 0;
    for (const PlanFunction &f : plan.functions)
      if (!pagedCache(f))
        bytes = std::max(bytes, f.arenaBytes(f.rowBytes ? prefillTokens : 1));
    return bytes;
  }
  int64_t arenaBytes() const { return arenaBytes(chunkTokens()); }

  /// options.maxSeq, or when it is 0 the KV cache rows that fit: the free
  /// memory after the weights, less the arena and a reserve (cuBLASLt's
  /// workspace, graphs, the context's growth), at most the model's
  /// max_position_embeddings. A kernel whose shared memory grows with the
  /// cache (the generic attention's scores) caps it too.
  absl::StatusOr<int64_t> resolveMaxSeq() {
    const int64_t perRow = kvBytesPerRow();
    int device = 0, sharedLimit = 0;
    TRENI_CUDA(cudaGetDevice(&device));
    TRENI_CUDA(cudaDeviceGetAttribute(
        &sharedLimit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    int64_t sharedCap = std::numeric_limits<int64_t>::max();
    for (const PlanFunction &f : plan.functions)
      for (const PlanStep &step : f.steps) {
        const KernelTemplate *kernel = findKernelTemplate(step.templateName);
        if (!kernel || !kernel->hasCudaTemplate())
          continue;
        TRENI_ASSIGN_OR_RETURN(KernelGeometry geometry, kernel->geometry(step));
        const KernelLaunch &l = geometry.launch;
        if (l.sharedBytesPerPosition > 0)
          sharedCap = std::min(sharedCap, (sharedLimit - l.sharedBytes) /
                                              l.sharedBytesPerPosition);
      }
    if (options.maxSeq > 0) {
      if (options.maxSeq > sharedCap)
        return absl::InvalidArgumentError(absl::StrCat(
            "--max-seq ", options.maxSeq, " is more than the ", sharedCap,
            " positions the generic attention kernel's shared memory holds "
            "on this GPU (f32 activations or an unusual head_dim; use a "
            "smaller --max-seq)"));
      return options.maxSeq;
    }
    const int64_t limit = plan.maxPositions(4096);
    size_t freeBytes = 0, totalBytes = 0;
    TRENI_CUDA(cudaMemGetInfo(&freeBytes, &totalBytes));
    const int64_t reserve = int64_t(1) << 30;
    int64_t budget = int64_t(freeBytes) - reserve -
                     arenaBytes(std::min(limit, options.prefillChunk));
    int64_t fits = perRow > 0 ? budget / perRow : limit;
    int64_t rows = std::min({limit, fits, sharedCap});
    if (rows < 2)
      return absl::ResourceExhaustedError(
          absl::StrCat("no room for a KV cache: ", freeBytes >> 20,
                       " MiB of GPU memory are free after the weights, and a ",
                       reserve >> 20,
                       " MiB reserve plus the activations are needed besides"));
    return rows;
  }
};

GpuExecutor::GpuExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuExecutor::~GpuExecutor() = default;

absl::StatusOr<std::unique_ptr<GpuExecutor>>
GpuExecutor::create(Plan plan, const std::string &modelDir,
                    const GpuOptions &options) {
  TRENI_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::open(modelDir));
  return create(std::move(plan), *checkpoint, options);
}

absl::StatusOr<std::unique_ptr<GpuExecutor>>
GpuExecutor::create(Plan plan, const Checkpoint &weights,
                    const GpuOptions &options) {
  if (options.maxSeq < 0)
    return absl::InvalidArgumentError("max-seq must be positive (0: auto)");
  TRENI_RETURN_IF_ERROR(checkPrefillChunk(options.prefillChunk));
  TRENI_ASSIGN_OR_RETURN(std::string arch, currentDeviceArch());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  // griddepcontrol exists from sm_90 on.
  if (std::stoi(arch.substr(3)) < 90)
    impl->options.programmaticLaunch = false;
  TRENI_ASSIGN_OR_RETURN(impl->actDtype, activationDtype(plan));
  impl->actBytes = dtypeBytes(impl->actDtype);
  impl->plan = std::move(plan);
  Plan &p = impl->plan;
  for (const char *name : {"prefill", "decode"})
    if (!p.function(name))
      return absl::InvalidArgumentError(absl::StrCat("plan has no @", name));
  TRENI_RETURN_IF_ERROR(checkDecodeFeed(*p.function("decode")));
  auto vocab = p.model.find("vocab_size");
  if (vocab == p.model.end() || !std::holds_alternative<int64_t>(vocab->second))
    return absl::InvalidArgumentError("plan: model.vocab_size missing");

  GpuLoadStats stats;
  stats.arch = arch;
  cudaDeviceProp properties;
  TRENI_CUDA(cudaGetDeviceProperties(&properties, 0));
  stats.deviceName = properties.name;
  TRENI_CUDA(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  TRENI_ASSIGN_OR_RETURN(impl->gemm, GemmRunner::create());

  // Weights first: with an automatic --max-seq the KV cache takes what they
  // leave.
  KernelCompiler compiler(options.cacheDir);
  TRENI_RETURN_IF_ERROR(impl->uploadWeights(weights, compiler, arch, stats));
  TRENI_ASSIGN_OR_RETURN(impl->options.maxSeq, impl->resolveMaxSeq());
  const int64_t maxSeq = impl->options.maxSeq;
  stats.maxSeq = maxSeq;

  // KV cache and arena (the prefill's sized for one chunk).
  TRENI_ASSIGN_OR_RETURN(stats.kvCacheBytes,
                         impl->allocateCaches(impl->caches, maxSeq));
  int64_t arenaBytes = impl->arenaBytes();
  TRENI_CUDA(
      cudaMalloc((void **)&impl->arena, std::max<int64_t>(arenaBytes, 256)));
  stats.arenaBytes = arenaBytes;
  TRENI_CUDA(
      cudaMalloc((void **)&impl->stepCounter, sizeof(unsigned long long)));
  TRENI_CUDA(cudaMemset(impl->stepCounter, 0, sizeof(unsigned long long)));
  TRENI_CUDA(cudaMalloc((void **)&impl->feedPosition, sizeof(int32_t)));
  TRENI_CUDA(cudaMalloc((void **)&impl->samplePartials,
                        kSamplerBlocks * sizeof(SamplePartialDevice)));
  TRENI_CUDA(cudaMalloc((void **)&impl->sampleArrivals, sizeof(unsigned)));
  TRENI_CUDA(cudaMemset(impl->sampleArrivals, 0, sizeof(unsigned)));
  TRENI_CUDA(cudaHostAlloc((void **)&impl->hostResults,
                           2 * sizeof(SampleResultDevice),
                           cudaHostAllocMapped));
  TRENI_CUDA(cudaHostGetDevicePointer((void **)&impl->mappedResults,
                                      impl->hostResults, 0));
  TRENI_CUDA(cudaHostAlloc((void **)&impl->hostInputs,
                           (2 * maxSeq + 1) * sizeof(int32_t),
                           cudaHostAllocDefault));
  for (cudaEvent_t &event : impl->stepDone)
    TRENI_CUDA(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));

  // Kernels (NVRTC through the disk cache, or the package's cubins).
  auto start = std::chrono::steady_clock::now();
  // Without a package, @step's kernels load with its pool (preparePagedPool):
  // a server that never batches does not compile them. A package's cubins
  // load now, while they exist (options.cubins is the caller's, valid only
  // during create).
  bool (*loadNow)(const PlanFunction &) =
      options.cubins ? +[](const PlanFunction &) { return true; }
                     : +[](const PlanFunction &f) { return !pagedCache(f); };
  TRENI_RETURN_IF_ERROR(impl->prepareLaunches(compiler, arch, stats, loadNow));
  TRENI_ASSIGN_OR_RETURN(impl->sampler,
                         impl->loadKernel("treni_sample", samplerKernelSource(),
                                          arch, compiler, stats));
  if (options.cubins && options.cubins->count("treni_sample_rows")) {
    TRENI_ASSIGN_OR_RETURN(impl->rowSampler,
                           impl->loadKernel("treni_sample_rows",
                                            samplerKernelSource(), arch,
                                            compiler, stats));
  }
  impl->options.cubins = nullptr;
  stats.kernelSeconds = secondsSince(start);
  stats.nvrtcCompiles = compiler.compiles();
  stats.cacheHits = compiler.cacheHits();

  std::unique_ptr<GpuExecutor> executor(new GpuExecutor(std::move(impl)));
  executor->stats_ = stats;
  executor->vocabSize_ = std::get<int64_t>(vocab->second);
  executor->maxSeq_ = maxSeq;

  // Warm-up: the first cuBLASLt call, lazy module loading and the decode
  // graph capture happen here rather than in the first request's TTFT. The
  // cache rows it writes are overwritten by every request's own prefill.
  start = std::chrono::steady_clock::now();
  SamplingParams greedy;
  int32_t token = 0;
  TRENI_RETURN_IF_ERROR(executor->prefill({&token, 1}, 0, greedy).status());
  if (maxSeq > 1)
    TRENI_RETURN_IF_ERROR(executor->decode(token, 1, greedy).status());
  executor->stats_.warmupSeconds = secondsSince(start);
  return executor;
}

absl::StatusOr<SampleResult>
GpuExecutor::prefill(absl::Span<const int32_t> ids, int64_t startPosition,
                     const SamplingParams &params) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  if (ids.empty())
    return absl::InvalidArgumentError("prefill needs at least one token");
  TRENI_RETURN_IF_ERROR(validate(params));
  TRENI_RETURN_IF_ERROR(
      checkStepInputs(ids, startPosition, maxSeq_, vocabSize_));
  Impl &impl = *impl_;
  const PlanFunction &function = *impl.plan.function("prefill");
  impl.fed.reset();
  // A new generation: the sampler's random stream restarts at step 0.
  TRENI_CUDA(cudaMemsetAsync(impl.stepCounter, 0, sizeof(unsigned long long),
                             impl.stream));
  int64_t tokens = ids.size();
  int32_t *hostIds = impl.hostInputs,
          *hostPositions = impl.hostInputs + maxSeq_;
  std::copy(ids.begin(), ids.end(), hostIds);
  for (int64_t i = 0; i < tokens; ++i)
    hostPositions[i] = int32_t(startPosition + i);
  // Chunk by chunk, back to back on the stream: each chunk's attention reads
  // the cache rows the earlier chunks wrote; only the last one's logits are
  // sampled.
  const int64_t chunk = impl.chunkTokens();
  for (int64_t done = 0; done < tokens; done += chunk) {
    int64_t n = std::min(chunk, tokens - done);
    TRENI_RETURN_IF_ERROR(
        impl.copyInputs(function, hostIds + done, hostPositions + done, n));
    TRENI_RETURN_IF_ERROR(impl.enqueueSteps(function, n));
  }
  TRENI_RETURN_IF_ERROR(
      impl.enqueueSample(function, params, vocabSize_, SampleFeedDevice{}));
  TRENI_RETURN_IF_ERROR(impl.wait());
  impl.lastFunction = &function;
  return fromDeviceResult(impl.hostResults[0]);
}

absl::StatusOr<SampleResult> GpuExecutor::decode(int32_t id, int64_t position,
                                                 const SamplingParams &params) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  TRENI_RETURN_IF_ERROR(validate(params));
  TRENI_RETURN_IF_ERROR(
      checkStepInputs({&id, 1}, position, maxSeq_, vocabSize_));
  Impl &impl = *impl_;
  // The inputs are usually there already: the previous step's sampler wrote
  // them, and the step is one graph launch and one wait.
  TRENI_RETURN_IF_ERROR(impl.prepareDecode(params, vocabSize_));
  TRENI_RETURN_IF_ERROR(impl.feedDecode(id, position));
  TRENI_RETURN_IF_ERROR(impl.enqueueDecode(params, vocabSize_));
  TRENI_RETURN_IF_ERROR(impl.wait());
  impl.fedBy(position);
  return impl.decodeResult(position);
}

absl::Status GpuExecutor::decodeStream(
    int32_t id, int64_t position, int64_t count, const SamplingParams &params,
    absl::FunctionRef<bool(const SampleResult &)> onToken) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  TRENI_RETURN_IF_ERROR(validate(params));
  if (count <= 0)
    return absl::OkStatus();
  TRENI_RETURN_IF_ERROR(
      checkStepInputs({&id, 1}, position, maxSeq_, vocabSize_));
  if (count > maxSeq_ - position)
    return absl::InvalidArgumentError(
        absl::StrCat("decoding ", count, " tokens from position ", position,
                     " passes the KV cache's ", maxSeq_, " rows"));
  Impl &impl = *impl_;
  TRENI_RETURN_IF_ERROR(impl.prepareDecode(params, vocabSize_));
  TRENI_RETURN_IF_ERROR(impl.feedDecode(id, position));
  // Step k+1 is enqueued before step k's result is read: the GPU never waits
  // for the host. Step k writes result slot (position + k) & 1, which the
  // host has read before step k+2, the next one to write it, is enqueued.
  int64_t enqueued = 0;
  auto enqueue = [&]() -> absl::Status {
    TRENI_RETURN_IF_ERROR(impl.enqueueDecode(params, vocabSize_));
    TRENI_CUDA(cudaEventRecord(impl.stepDone[enqueued & 1], impl.stream));
    ++enqueued;
    return absl::OkStatus();
  };
  absl::Status status = enqueue();
  for (int64_t k = 0; status.ok() && k < count; ++k) {
    if (enqueued < count)
      status = enqueue();
    if (status.ok())
      status = impl.wait(impl.stepDone[k & 1]);
    if (!status.ok())
      break;
    absl::StatusOr<SampleResult> result = impl.decodeResult(position + k);
    if (!result.ok())
      status = result.status();
    else if (!onToken(*result))
      break;
  }
  // The step enqueued past the last one read still runs; its KV row is the
  // fed token's, like any step's, and its result is dropped.
  absl::Status drained = impl.wait();
  if (!status.ok() || !drained.ok()) {
    impl.fed.reset();
    return status.ok() ? drained : status;
  }
  impl.fedBy(position + enqueued - 1);
  return absl::OkStatus();
}

int64_t GpuExecutor::graphCaptures() const { return impl_->graphCaptures; }

absl::StatusOr<ReplayTime> GpuExecutor::replayDecode(int64_t position,
                                                     int iterations) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  Impl &impl = *impl_;
  if (!impl.graph || iterations < 1 || position < 0 ||
      iterations > maxSeq_ - position)
    return absl::FailedPreconditionError(
        "replayDecode: needs a captured decode graph (run a decode step "
        "first), a position and a count that fit in the KV cache");
  ReplayTime result;
  cudaEvent_t begin, end;
  TRENI_CUDA(cudaEventCreate(&begin));
  TRENI_CUDA(cudaEventCreate(&end));
  absl::Status status = [&]() -> absl::Status {
    // Each replay feeds the next: positions position.. as in a generation.
    TRENI_RETURN_IF_ERROR(impl.feedDecode(0, position));
    TRENI_CUDA(cudaGraphLaunch(impl.graph, impl.stream)); // warm
    TRENI_CUDA(cudaStreamSynchronize(impl.stream));
    impl.fed.reset();
    TRENI_RETURN_IF_ERROR(impl.feedDecode(0, position));
    TRENI_CUDA(cudaEventRecord(begin, impl.stream));
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i)
      TRENI_CUDA(cudaGraphLaunch(impl.graph, impl.stream));
    result.hostLaunchMicros = 1e6 * secondsSince(start) / iterations;
    TRENI_CUDA(cudaEventRecord(end, impl.stream));
    TRENI_CUDA(cudaEventSynchronize(end));
    return absl::OkStatus();
  }();
  impl.fed.reset();
  float ms = 0;
  if (status.ok() && cudaEventElapsedTime(&ms, begin, end) != cudaSuccess)
    status = absl::InternalError("replayDecode: cudaEventElapsedTime failed");
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  TRENI_RETURN_IF_ERROR(status);
  result.gpuMillis = double(ms) / iterations;
  return result;
}

absl::StatusOr<std::vector<StepTime>>
GpuExecutor::profileDecode(int64_t position, int iterations) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  if (iterations < 1 || position < 0 || position >= maxSeq_)
    return absl::InvalidArgumentError("profileDecode: bad position or count");
  impl_->hostInputs[0] = 0;
  impl_->hostInputs[maxSeq_] = int32_t(position);
  return impl_->profileSteps(*impl_->plan.function("decode"), 1, iterations);
}

absl::StatusOr<std::vector<StepTime>>
GpuExecutor::profilePrefill(int64_t tokens, int iterations) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  if (iterations < 1 || tokens < 1 || tokens > impl_->chunkTokens())
    return absl::InvalidArgumentError(
        absl::StrCat("profilePrefill: 1 to ", impl_->chunkTokens(),
                     " tokens (one prefill chunk), and at least one run"));
  for (int64_t i = 0; i < tokens; ++i) {
    impl_->hostInputs[i] = int32_t(i % vocabSize_);
    impl_->hostInputs[maxSeq_ + i] = int32_t(i);
  }
  return impl_->profileSteps(*impl_->plan.function("prefill"), tokens,
                             iterations);
}

int64_t GpuExecutor::pagedBlocks() const {
  return impl_->pool ? impl_->pool->numBlocks : 0;
}

absl::Status GpuExecutor::preparePagedPool(int64_t numBlocks,
                                           int64_t blockTokens,
                                           int64_t maxStepTokens,
                                           double freeShare) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  Impl &impl = *impl_;
  if (impl.pool)
    return absl::FailedPreconditionError("the paged KV pool exists already");
  if (numBlocks < 0 || numBlocks > kMaxPagedBlocks)
    return absl::InvalidArgumentError(absl::StrCat(
        "a paged KV pool needs 1..16777216 blocks (0: what fits), not ",
        numBlocks));
  if (blockTokens < 1 || blockTokens > 4096 ||
      (blockTokens & (blockTokens - 1)) != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "KV blocks hold a power of two of positions up to 4096, not ",
        blockTokens));
  TRENI_RETURN_IF_ERROR(checkPrefillChunk(maxStepTokens));
  const PlanFunction *function = impl.plan.function("step");
  if (!function)
    return absl::InvalidArgumentError(
        "the plan has no @step (compiled before continuous batching: "
        "recompile the package)");
  if (function->inputs.size() != 2 || function->outputs.size() != 1 ||
      function->buffers[function->outputs[0]].dtype != "f32" ||
      !function->buffers[function->outputs[0]].dynamic)
    return absl::InvalidArgumentError(
        "plan: @step must take (ids, positions) and return f32 logits of "
        "every row");

  auto pool = std::make_unique<Impl::PagedPool>();
  pool->blockTokens = blockTokens;
  pool->maxTokens = maxStepTokens;
  while ((int64_t(1) << pool->blockShift) < blockTokens)
    ++pool->blockShift;
  const int64_t blocksPerSequence = (maxSeq_ + blockTokens - 1) / blockTokens;
  // One more table entry and block: the block padded rows write (a graphed
  // step's rows beyond its real ones), which no sequence owns.
  pool->tableCapacity = maxStepTokens * blocksPerSequence + 1;
  const int64_t blockBytes = blockTokens * impl.kvBytesPerRow();
  const PlanFunction &decode = impl.decodeFunction();
  const int64_t arenaBytes =
      std::max(function->arenaBytes(maxStepTokens), decode.arenaBytes(1));
  const int64_t tableBytes =
      (maxStepTokens + pool->tableCapacity) * int64_t(sizeof(int32_t));
  TRENI_ASSIGN_OR_RETURN(int64_t freeBytes, freeDeviceMemoryBytes());
  const int64_t reserve = int64_t(512) << 20;
  if (numBlocks == 0) {
    // The reserve is the process's; the share splits what lies beyond it.
    const int64_t shareBytes =
        reserve + int64_t(double(std::max<int64_t>(freeBytes - reserve, 0)) *
                          std::clamp(freeShare, 0.0, 1.0));
    numBlocks =
        pagedPoolBlocksThatFit(shareBytes, arenaBytes + tableBytes + reserve,
                               blockBytes, blocksPerSequence);
    if (numBlocks == 0)
      return absl::ResourceExhaustedError(absl::StrCat(
          "no room for a paged KV pool holding one sequence of ", maxSeq_,
          " positions: ", freeBytes >> 20,
          " MiB of GPU memory are free. Use a smaller --max-seq (the "
          "single-sequence cache takes what the weights leave when it is 0) "
          "or a smaller --max-batch-tokens"));
  }
  pool->numBlocks = numBlocks;
  const int64_t poolBlocks = numBlocks + 1;
  const int64_t cacheBytes = poolBlocks * blockBytes;
  if (cacheBytes + arenaBytes + tableBytes + reserve > freeBytes)
    return absl::ResourceExhaustedError(absl::StrCat(
        "no room for a paged KV pool of ", numBlocks, " blocks (",
        cacheBytes >> 20, " MiB) and a step arena of ", maxStepTokens,
        " rows (", arenaBytes >> 20, " MiB): ", freeBytes >> 20,
        " MiB of GPU memory are free. Use fewer --kv-blocks, a smaller "
        "--max-batch-tokens, or a smaller --max-seq (the single-sequence "
        "cache takes what the weights leave when it is 0)"));
  TRENI_RETURN_IF_ERROR(
      impl.allocateCaches(pool->caches, poolBlocks * blockTokens).status());
  TRENI_CUDA(
      cudaMalloc((void **)&pool->arena, std::max<int64_t>(arenaBytes, 256)));
  TRENI_CUDA(cudaMalloc((void **)&pool->tables, tableBytes));
  TRENI_CUDA(cudaHostAlloc((void **)&pool->hostInputs,
                           tableBytes + 2 * maxStepTokens * sizeof(int32_t),
                           cudaHostAllocDefault));
  TRENI_CUDA(cudaMalloc((void **)&pool->steps,
                        maxStepTokens * sizeof(unsigned long long)));
  TRENI_CUDA(
      cudaMalloc((void **)&pool->partials,
                 maxStepTokens * kSamplerBlocks * sizeof(SamplePartialDevice)));
  TRENI_CUDA(
      cudaMalloc((void **)&pool->arrivals, maxStepTokens * sizeof(unsigned)));
  TRENI_CUDA(cudaMemset(pool->arrivals, 0, maxStepTokens * sizeof(unsigned)));
  TRENI_CUDA(cudaHostAlloc((void **)&pool->hostSteps,
                           maxStepTokens * sizeof(unsigned long long),
                           cudaHostAllocDefault));
  TRENI_CUDA(cudaMalloc((void **)&pool->params,
                        maxStepTokens * sizeof(SamplingParamsDevice)));
  TRENI_CUDA(cudaHostAlloc((void **)&pool->hostParams,
                           maxStepTokens * sizeof(SamplingParamsDevice),
                           cudaHostAllocDefault));
  TRENI_CUDA(cudaMalloc((void **)&pool->rows, maxStepTokens * sizeof(int32_t)));
  TRENI_CUDA(cudaHostAlloc((void **)&pool->hostRows,
                           maxStepTokens * sizeof(int32_t),
                           cudaHostAllocDefault));
  TRENI_CUDA(cudaHostAlloc((void **)&pool->hostResults,
                           maxStepTokens * sizeof(SampleResultDevice),
                           cudaHostAllocMapped));
  TRENI_CUDA(cudaHostGetDevicePointer((void **)&pool->mappedResults,
                                      pool->hostResults, 0));

  KernelCompiler compiler(impl.options.cacheDir);
  if (!impl.launches.count(function->name)) { // else loaded from a package
    auto start = std::chrono::steady_clock::now();
    TRENI_RETURN_IF_ERROR(impl.prepareLaunches(
        compiler, stats_.arch, stats_,
        [](const PlanFunction &f) { return pagedCache(f); }));
    stats_.kernelSeconds += secondsSince(start);
    stats_.nvrtcCompiles += compiler.compiles();
    stats_.cacheHits += compiler.cacheHits();
  }
  if (!impl.rowSampler) {
    TRENI_ASSIGN_OR_RETURN(impl.rowSampler,
                           impl.loadKernel("treni_sample_rows",
                                           samplerKernelSource(), stats_.arch,
                                           compiler, stats_));
  }
  const std::vector<StepLaunch> &list = impl.launches[function->name];
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].usesCache)
      pool->tailStart = i + 1;
    if (!list[i].chunkKernel)
      continue;
    // Every layer's chunk kernel tiles the rows alike (one tile list a step).
    TRENI_ASSIGN_OR_RETURN(int64_t heads,
                           list[i].step->intConstant("num_heads"));
    TRENI_ASSIGN_OR_RETURN(int64_t kvHeads,
                           list[i].step->intConstant("num_kv_heads"));
    const int64_t group = heads / kvHeads,
                  blockM = list[i].chunkLaunch.yItemsPerBlock;
    if (pool->chunkGroup &&
        (pool->chunkGroup != group || pool->chunkBlockM != blockM))
      return absl::InternalError(
          "@step: the layers' chunk attention kernels tile rows differently");
    pool->chunkGroup = group;
    pool->chunkBlockM = blockM;
  }
  if (pool->chunkGroup) {
    // A run of n rows takes ceil(n * group / blockM) tiles; runs <= rows.
    pool->runCapacity =
        (maxStepTokens * pool->chunkGroup + pool->chunkBlockM - 1) /
            pool->chunkBlockM +
        maxStepTokens;
    const size_t bytes = 3 * pool->runCapacity * sizeof(int32_t);
    TRENI_CUDA(cudaMalloc((void **)&pool->runs, bytes));
    TRENI_CUDA(
        cudaHostAlloc((void **)&pool->hostRuns, bytes, cudaHostAllocDefault));
  }
  pool->decodeOnPool = true;
  for (const StepLaunch &launch : impl.launches[decode.name])
    if (launch.usesCache &&
        !findKernelTemplate(launch.step->templateName)->pagedCache)
      pool->decodeOnPool = false;
  impl.pool = std::move(pool);
  return absl::OkStatus();
}

struct GpuExecutor::StepEvents {
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> pairs;
};

absl::StatusOr<GpuExecutor::StepLayout>
GpuExecutor::enqueueStepRows(const GpuStepRows &rows, StepEvents *events,
                             bool embed) {
  Impl &impl = *impl_;
  if (!impl.pool)
    return absl::FailedPreconditionError(
        "a batched step needs the paged KV pool (preparePagedPool)");
  Impl::PagedPool &pool = *impl.pool;
  const int64_t tokens = rows.ids.size();
  StepTables tables{rows.blockTables, rows.tableOffsets, pool.blockTokens,
                    pool.numBlocks};
  TRENI_RETURN_IF_ERROR(
      checkStepRows(rows.ids, rows.positions, maxSeq_, vocabSize_, &tables));
  if (tokens > pool.maxTokens ||
      int64_t(rows.blockTables.size()) >= pool.tableCapacity)
    return absl::InvalidArgumentError(absl::StrCat(
        "a batched step of ", tokens, " rows and ", rows.blockTables.size(),
        " table entries exceeds the pool's ", pool.maxTokens, " and ",
        pool.tableCapacity - 1));
  if (rows.sampledRows < 0 || rows.sampledRows > tokens)
    return absl::InvalidArgumentError(absl::StrCat("a batched step samples ",
                                                   rows.sampledRows, " of its ",
                                                   tokens, " rows"));
  // One sampled row (one stream decoding) runs @decode on the pool: the
  // single-sequence kernels (matvecs, not GEMMs of one row), so a lone
  // stream decodes as fast as on the single-sequence path.
  const bool oneRow =
      !embed && tokens == 1 && rows.sampledRows == 1 && pool.decodeOnPool;
  const PlanFunction *rowsFunction =
      impl.plan.function(embed ? "embed" : "step");
  if (!rowsFunction)
    return absl::FailedPreconditionError(
        "the plan has no @embed function (compiled by an older treni): "
        "compile the model again to run embeddings");
  const PlanFunction &function = oneRow ? impl.decodeFunction() : *rowsFunction;
  // @embed's rows are all outputs: its split-KV pair runs on none of them
  // when the chunk kernels take them all.
  const int64_t outputRows = embed ? tokens : rows.sampledRows;
  const int64_t splitKvRows =
      embed ? (pool.chunkGroup ? 0 : tokens) : rows.sampledRows;

  // A step whose rows are all sampled (decode rows) replays the graph of its
  // bucket, padded with rows that write the scratch block; any other step
  // (prompt chunks: the tail runs on fewer rows) is launched as it is.
  int64_t layout = tokens;
  cudaGraphExec_t graph = nullptr;
  if (impl.options.cudaGraphs && rows.sampledRows == tokens && !events &&
      !embed) {
    int64_t bucket = 1;
    while (bucket < tokens)
      bucket *= 2;
    if (bucket <= pool.maxTokens) {
      layout = bucket;
      TRENI_ASSIGN_OR_RETURN(graph, impl.stepGraph(function, bucket));
    }
  }

  // Staging: ids, positions, offsets, block ids. The previous step has been
  // waited for, so its copies have read the staging already.
  Impl::PoolScope scope(impl); // the function's buffers are the pool's
  int32_t *hostIds = pool.hostInputs, *hostPositions = hostIds + pool.maxTokens,
          *hostOffsets = hostPositions + pool.maxTokens,
          *hostBlocks = hostOffsets + pool.maxTokens;
  std::copy(rows.ids.begin(), rows.ids.end(), hostIds);
  std::copy(rows.positions.begin(), rows.positions.end(), hostPositions);
  std::copy(rows.tableOffsets.begin(), rows.tableOffsets.end(), hostOffsets);
  std::copy(rows.blockTables.begin(), rows.blockTables.end(), hostBlocks);
  int64_t tableIds = int64_t(rows.blockTables.size());
  if (layout > tokens) {
    hostBlocks[tableIds] = int32_t(pool.numBlocks); // the scratch block
    for (int64_t r = tokens; r < layout; ++r) {
      hostIds[r] = 0;
      hostPositions[r] = 0;
      hostOffsets[r] = int32_t(tableIds);
    }
    ++tableIds;
  }
  // The prompt-chunk rows (those after the sampled ones) of a step launched
  // as it is attend through attention_flash, on tiles of one sequence each.
  int64_t chunkTiles = 0;
  if (!graph && pool.chunkGroup && tokens > splitKvRows) {
    std::vector<int32_t> tiles =
        flashChunkTiles(rows.tableOffsets, rows.positions, splitKvRows,
                        pool.chunkGroup, pool.chunkBlockM);
    chunkTiles = int64_t(tiles.size() / 3);
    if (chunkTiles > pool.runCapacity)
      return absl::InternalError(absl::StrCat("a step's ", chunkTiles,
                                              " chunk attention tiles exceed "
                                              "the pool's ",
                                              pool.runCapacity));
    std::copy(tiles.begin(), tiles.end(), pool.hostRuns);
    TRENI_CUDA(cudaMemcpyAsync(pool.runs, pool.hostRuns,
                               tiles.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, impl.stream));
  }
  TRENI_RETURN_IF_ERROR(
      impl.copyInputs(function, hostIds, hostPositions, layout));
  TRENI_CUDA(cudaMemcpyAsync(pool.tables, hostOffsets, layout * sizeof(int32_t),
                             cudaMemcpyHostToDevice, impl.stream));
  if (tableIds > 0)
    TRENI_CUDA(cudaMemcpyAsync(pool.tables + pool.maxTokens, hostBlocks,
                               tableIds * sizeof(int32_t),
                               cudaMemcpyHostToDevice, impl.stream));
  if (graph) {
    TRENI_CUDA(cudaGraphLaunch(graph, impl.stream));
  } else {
    if (events && events->pairs.empty()) {
      // Each launch, then each launch's chunk kernel (enqueueSteps).
      events->pairs.resize(2 * impl.launches[function.name].size());
      for (auto &[begin, end] : events->pairs) {
        TRENI_CUDA(cudaEventCreate(&begin));
        TRENI_CUDA(cudaEventCreate(&end));
      }
    }
    TRENI_RETURN_IF_ERROR(impl.enqueueSteps(
        function, tokens, events ? &events->pairs : nullptr,
        embed ? Impl::Tail{impl.launches[function.name].size(), splitKvRows,
                           chunkTiles}
              : Impl::Tail{pool.tailStart, outputRows, chunkTiles}));
  }
  return StepLayout{&function, layout, chunkTiles};
}

absl::StatusOr<std::vector<StepTime>>
GpuExecutor::profileStepRows(const GpuStepRows &rows, int iterations) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  Impl &impl = *impl_;
  if (iterations < 1)
    return absl::InvalidArgumentError("profileStepRows: no iterations");
  StepEvents events;
  std::vector<StepTime> times;
  std::vector<size_t> timed; ///< per row of `times`, its event pair
  absl::Status status = [&]() -> absl::Status {
    for (int it = 0; it < iterations; ++it) {
      TRENI_ASSIGN_OR_RETURN(StepLayout layout, enqueueStepRows(rows, &events));
      TRENI_RETURN_IF_ERROR(impl.wait());
      const std::vector<StepLaunch> &list =
          impl.launches[layout.function->name];
      if (times.empty()) {
        times.resize(list.size());
        for (size_t i = 0; i < list.size(); ++i) {
          const StepLaunch &launch = list[i];
          timed.push_back(i);
          times[i].templateName = launch.step->templateName;
          times[i].origin = launch.step->origin;
          if (!launch.gemm)
            continue;
          int64_t m = Impl::rowsOf(*layout.function, *launch.step, layout.rows);
          if (i >= impl.pool->tailStart && layout.function->name == "step")
            m = std::min<int64_t>(m, rows.sampledRows);
          times[i].flops = 2.0 * m * launch.gemmShape.n * launch.gemmShape.k;
          times[i].shape = impl.gemmText(launch, m);
        }
        for (size_t i = 0; layout.chunkTiles && i < list.size(); ++i)
          if (list[i].chunkKernel) {
            timed.push_back(list.size() + i);
            StepTime &time = times.emplace_back();
            time.templateName = "attention_flash";
            time.origin = list[i].step->origin + " (prompt-chunk rows)";
          }
      }
      for (size_t t = 0; t < times.size(); ++t) {
        float ms = 0;
        TRENI_CUDA(cudaEventElapsedTime(&ms, events.pairs[timed[t]].first,
                                        events.pairs[timed[t]].second));
        times[t].microseconds += 1e3 * ms / iterations;
      }
    }
    return absl::OkStatus();
  }();
  for (auto &[begin, end] : events.pairs) {
    cudaEventDestroy(begin);
    cudaEventDestroy(end);
  }
  TRENI_RETURN_IF_ERROR(status);
  return times;
}

int64_t GpuExecutor::hiddenSize() const { return impl_->plan.embedColumns(); }

absl::StatusOr<absl::Span<const float>>
GpuExecutor::runEmbed(const GpuStepRows &rows) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  const int64_t hidden = hiddenSize();
  if (hidden <= 0)
    return absl::FailedPreconditionError(
        "the plan has no @embed function (compiled by an older treni): "
        "compile the model again to run embeddings");
  TRENI_ASSIGN_OR_RETURN(StepLayout layout,
                         enqueueStepRows(rows, nullptr, /*embed=*/true));
  Impl &impl = *impl_;
  Impl::PoolScope scope(impl); // the function's buffers are the pool's
  const int64_t values = layout.rows * hidden;
  embedded_.resize(size_t(values));
  TRENI_CUDA(cudaMemcpyAsync(
      embedded_.data(),
      impl.bufferAddress(*layout.function, layout.function->outputs[0],
                         layout.rows),
      values * sizeof(float), cudaMemcpyDeviceToHost, impl.stream));
  TRENI_RETURN_IF_ERROR(impl.wait());
  return absl::Span<const float>(embedded_);
}

absl::StatusOr<absl::Span<const float>>
GpuExecutor::runStep(const GpuStepRows &rows) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  TRENI_ASSIGN_OR_RETURN(StepLayout layout, enqueueStepRows(rows));
  Impl &impl = *impl_;
  Impl::PagedPool &pool = *impl.pool;
  const PlanFunction &function = *layout.function;
  const int64_t tokens = layout.rows;
  Impl::PoolScope scope(impl); // the function's buffers are the pool's
  const int64_t values = rows.sampledRows * vocabSize_;
  if (rows.sampledRows > pool.logitRows) {
    TRENI_CUDA(cudaStreamSynchronize(impl.stream));
    if (pool.hostLogits)
      TRENI_CUDA(cudaFreeHost(pool.hostLogits));
    pool.hostLogits = nullptr;
    pool.logitRows = 0;
    TRENI_CUDA(cudaHostAlloc((void **)&pool.hostLogits, values * sizeof(float),
                             cudaHostAllocDefault));
    pool.logitRows = rows.sampledRows;
  }
  if (values > 0)
    TRENI_CUDA(cudaMemcpyAsync(
        pool.hostLogits,
        impl.bufferAddress(function, function.outputs[0], tokens),
        values * sizeof(float), cudaMemcpyDeviceToHost, impl.stream));
  TRENI_RETURN_IF_ERROR(impl.wait());
  return absl::Span<const float>(pool.hostLogits, size_t(values));
}

absl::StatusOr<std::vector<SampleResult>>
GpuExecutor::runStepSampled(const GpuStepRows &rows,
                            absl::Span<const RowSampling> sampling) {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  if (int64_t(sampling.size()) != rows.sampledRows)
    return absl::InvalidArgumentError(
        absl::StrCat("a batched step samples ", rows.sampledRows, " rows but ",
                     sampling.size(), " sampling settings came"));
  for (const RowSampling &row : sampling)
    TRENI_RETURN_IF_ERROR(validate(row.params));
  TRENI_ASSIGN_OR_RETURN(StepLayout layout, enqueueStepRows(rows));
  Impl &impl = *impl_;
  Impl::PagedPool &pool = *impl.pool;
  const PlanFunction &function = *layout.function;
  const int64_t tokens = layout.rows;
  Impl::PoolScope scope(impl); // the function's buffers are the pool's
  for (size_t i = 0; i < sampling.size(); ++i)
    pool.hostSteps[i] = sampling[i].step;
  if (!sampling.empty())
    TRENI_CUDA(cudaMemcpyAsync(pool.steps, pool.hostSteps,
                               sampling.size() * sizeof(unsigned long long),
                               cudaMemcpyHostToDevice, impl.stream));
  // Two launches at most: the split greedy rows (kSamplerBlocks blocks
  // each), then the others (one block each); row i is drawn as the
  // single-sequence sampler draws it.
  const int64_t count = int64_t(sampling.size());
  int64_t split = 0;
  for (int64_t i = 0; i < count; ++i) {
    pool.hostParams[i] = toDeviceParams(sampling[i].params);
    if (samplerBlocks(sampling[i].params) > 1)
      pool.hostRows[split++] = int32_t(i);
  }
  for (int64_t i = 0, other = split; i < count; ++i)
    if (samplerBlocks(sampling[i].params) == 1)
      pool.hostRows[other++] = int32_t(i);
  if (count > 0) {
    TRENI_CUDA(cudaMemcpyAsync(pool.params, pool.hostParams,
                               count * sizeof(SamplingParamsDevice),
                               cudaMemcpyHostToDevice, impl.stream));
    TRENI_CUDA(cudaMemcpyAsync(pool.rows, pool.hostRows,
                               count * sizeof(int32_t), cudaMemcpyHostToDevice,
                               impl.stream));
  }
  const float *logits = reinterpret_cast<const float *>(
      impl.bufferAddress(function, function.outputs[0], tokens));
  int vocab = int(vocabSize_);
  for (auto [first, launchCount, blocks] :
       {std::tuple{int64_t(0), split, kSamplerBlocks},
        std::tuple{split, count - split, 1}}) {
    if (launchCount == 0)
      continue;
    const SamplingParamsDevice *params = pool.params;
    const int32_t *launchRows = pool.rows + first;
    unsigned long long *steps = pool.steps;
    SampleResultDevice *out = pool.mappedResults;
    SamplePartialDevice *partials = pool.partials;
    unsigned *arrivals = pool.arrivals;
    void *args[] = {&logits, &vocab, &params,   &launchRows,
                    &steps,  &out,   &partials, &arrivals};
    TRENI_RETURN_IF_ERROR(impl.launchKernel(
        impl.rowSampler, dim3(unsigned(blocks), unsigned(launchCount)),
        dim3(kSamplerThreads), 0, args));
  }
  TRENI_RETURN_IF_ERROR(impl.wait());
  std::vector<SampleResult> results;
  results.reserve(sampling.size());
  for (size_t i = 0; i < sampling.size(); ++i) {
    TRENI_ASSIGN_OR_RETURN(SampleResult result,
                           fromDeviceResult(pool.hostResults[i]));
    results.push_back(std::move(result));
  }
  return results;
}

absl::StatusOr<std::vector<float>> GpuExecutor::lastLogits() {
  std::lock_guard<std::recursive_mutex> lock(impl_->mutex);
  // Logits are planned as a static f32 [1, vocab] buffer in both functions.
  const PlanFunction *function = impl_->lastFunction;
  if (!function)
    return absl::FailedPreconditionError("no prefill or decode has run yet");
  std::vector<float> logits(vocabSize_);
  TRENI_CUDA(cudaMemcpy(
      logits.data(), impl_->bufferAddress(*function, function->outputs[0], 1),
      vocabSize_ * sizeof(float), cudaMemcpyDeviceToHost));
  return logits;
}

} // namespace treni
