//===- attention_bench.cpp - the prefill attention kernels alone ----------===//
//
//   treni-attention-bench [--heads 28] [--kv-heads 4] [--head-dim 128]
//       [--rows 8192] [--start 0] [--dtype bf16|f16] [--iterations 10]
//       [--no-exact] [--m-tiles N] [--warps W] [--block-n N] [--wgmma]
//       [--arch sm_XY[a]]
//
// Causal attention of `rows` query rows at positions start..start+rows-1
// over a KV cache of start+rows rows of random values (one layer), as the
// plan's steps run it: the attention_flash and attention templates, generated
// by codegen/KernelSource and compiled by NVRTC for this GPU. Prints each
// kernel's median time over `iterations` (CUDA events), its TFLOP/s (4 *
// head_dim FLOPs per query head and attended key), and how far the flash
// output is from the exact kernel's (max |diff| and relative L2); exits 1
// when the relative L2 passes 2e-2 (16-bit P and output rounding give about
// 1e-3). --m-tiles, --warps, --block-n and --wgmma override the launch
// rule's MMA tiles per warp, warps per block, keys per tile and MMA
// instructions (FlashTiling), to measure the alternatives.
//
//===----------------------------------------------------------------------===//

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/KernelSource.h"
#include "runtime/exec/nvrtc_compiler.h"

namespace {
using namespace treni;

struct Options {
  int64_t heads = 28, kvHeads = 4, headDim = 128, rows = 8192, start = 0;
  std::string dtype = "bf16";
  int iterations = 10;
  bool exact = true;
  /// Overrides of the launch rule's tiling (0: the rule's).
  int64_t warps = 0, mTiles = 0, blockN = 0;
  bool wgmma = false;
  std::string arch; ///< NVRTC target; the device's (sm_90a on Hopper) if empty
};

bool parse(int argc, char **argv, Options &o) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto next = [&]() -> const char * {
      return i + 1 < argc ? argv[++i] : nullptr;
    };
    const char *value = nullptr;
    if (flag == "--no-exact") {
      o.exact = false;
      continue;
    }
    if (flag == "--wgmma") {
      o.wgmma = true;
      continue;
    }
    if (!(value = next()))
      return false;
    if (flag == "--heads")
      o.heads = std::atoll(value);
    else if (flag == "--kv-heads")
      o.kvHeads = std::atoll(value);
    else if (flag == "--head-dim")
      o.headDim = std::atoll(value);
    else if (flag == "--rows")
      o.rows = std::atoll(value);
    else if (flag == "--start")
      o.start = std::atoll(value);
    else if (flag == "--dtype")
      o.dtype = value;
    else if (flag == "--iterations")
      o.iterations = std::atoi(value);
    else if (flag == "--m-tiles")
      o.mTiles = std::atoll(value);
    else if (flag == "--warps")
      o.warps = std::atoll(value);
    else if (flag == "--block-n")
      o.blockN = std::atoll(value);
    else if (flag == "--arch")
      o.arch = value;
    else
      return false;
  }
  return o.heads > 0 && o.kvHeads > 0 && o.headDim > 0 && o.rows > 0 &&
         o.start >= 0 && o.iterations > 0 &&
         (o.dtype == "bf16" || o.dtype == "f16");
}

uint16_t toBits(float value, bool bf16) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if (bf16)
    return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  // IEEE half, round to nearest (values here are small and normal).
  uint32_t sign = (bits >> 16) & 0x8000u;
  int exponent = int((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mantissa = bits & 0x7fffffu;
  if (exponent <= 0)
    return uint16_t(sign);
  uint32_t half = sign | (uint32_t(exponent) << 10) | (mantissa >> 13);
  if (mantissa & 0x1000u)
    ++half;
  return uint16_t(half);
}

float fromBits(uint16_t bits, bool bf16) {
  if (bf16) {
    uint32_t word = uint32_t(bits) << 16;
    float value;
    std::memcpy(&value, &word, 4);
    return value;
  }
  int exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  float value = exponent == 0
                    ? std::ldexp(float(mantissa), -24)
                    : std::ldexp(float(mantissa | 0x400), exponent - 25);
  return (bits & 0x8000) ? -value : value;
}

#define CHECK_CUDA(call)                                                       \
  do {                                                                         \
    cudaError_t error_ = (call);                                               \
    if (error_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(error_));     \
      std::exit(2);                                                            \
    }                                                                          \
  } while (0)

struct Kernel {
  cudaKernel_t handle = nullptr;
  KernelLaunch launch;
  std::string tiling; ///< attention_flash: "warps=8 m_tiles=1 ..."
};

Kernel build(const Options &o, const std::string &templateName,
             const std::string &arch) {
  Plan plan;
  plan.caches.push_back({"kv", 1, o.kvHeads, o.headDim, o.dtype});
  PlanFunction function;
  function.name = "prefill";
  function.buffers = {{o.dtype, {-1, o.heads * o.headDim}, true, 0},
                      {"i32", {-1}, true, 0},
                      {o.dtype, {-1, o.heads * o.headDim}, true, 0}};
  PlanStep step;
  step.templateName = templateName;
  step.origin = "treni-attention-bench";
  step.constants = {{"num_heads", o.heads},
                    {"num_kv_heads", o.kvHeads},
                    {"head_dim", o.headDim},
                    {"scale", 1.0 / std::sqrt(double(o.headDim))},
                    {"cache", std::string("kv")},
                    {"layer", int64_t(0)}};
  step.inputs = {{PlanOperand::Kind::Buffer, 0},
                 {PlanOperand::Kind::Buffer, 1}};
  step.outputs = {2};
  std::optional<KernelGeometry> tiled;
  std::string tilingText;
  if (templateName == "attention_flash") {
    FlashTiling tiling = flashLaunchTiling(o.heads, o.kvHeads);
    tiling.warps = o.warps ? o.warps : tiling.warps;
    tiling.mTiles = o.mTiles ? o.mTiles : tiling.mTiles;
    tiling.blockN = o.blockN ? o.blockN : tiling.blockN;
    tiling.wgmma = o.wgmma;
    tiled = flashGeometry(o.heads, o.kvHeads, o.headDim, tiling);
    tilingText = "warps=" + std::to_string(tiling.warps) +
                 " m_tiles=" + std::to_string(tiling.mTiles) +
                 " block_n=" + std::to_string(tiling.blockN) +
                 (tiling.wgmma ? " wgmma" : " mma.sync");
  }
  auto spec = generateKernel(plan, function, step, tiled);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    std::exit(2);
  }
  KernelCompiler compiler("");
  auto cubin = compiler.cubin(spec->source, arch);
  if (!cubin.ok()) {
    std::fprintf(stderr, "%s\n", std::string(cubin.status().message()).c_str());
    std::exit(2);
  }
  Kernel kernel;
  cudaLibrary_t library;
  CHECK_CUDA(cudaLibraryLoadData(&library, cubin->data(), nullptr, nullptr, 0,
                                 nullptr, nullptr, 0));
  CHECK_CUDA(
      cudaLibraryGetKernel(&kernel.handle, library, spec->entry.c_str()));
  kernel.launch = spec->launch;
  kernel.tiling = tilingText;
  return kernel;
}

/// Median milliseconds of `iterations` launches.
float timeKernel(const Kernel &kernel, const Options &o, void **args,
                 int64_t cacheRows) {
  int64_t shared = kernel.launch.sharedBytes +
                   kernel.launch.sharedBytesPerPosition * cacheRows;
  if (shared > 48 * 1024) {
    int device = 0;
    CHECK_CUDA(cudaGetDevice(&device));
    CHECK_CUDA(cudaKernelSetAttributeForDevice(
        kernel.handle, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared),
        device));
  }
  dim3 grid(unsigned(kernel.launch.blocksX),
            unsigned(kernel.launch.gridY(o.rows)));
  dim3 block(unsigned(kernel.launch.threads));
  std::vector<float> times;
  cudaEvent_t begin, end;
  CHECK_CUDA(cudaEventCreate(&begin));
  CHECK_CUDA(cudaEventCreate(&end));
  for (int i = 0; i <= o.iterations; ++i) { // the first is a warm-up
    CHECK_CUDA(cudaEventRecord(begin));
    CHECK_CUDA(cudaLaunchKernel((const void *)kernel.handle, grid, block, args,
                                size_t(shared), nullptr));
    CHECK_CUDA(cudaEventRecord(end));
    CHECK_CUDA(cudaEventSynchronize(end));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, begin, end));
    if (i > 0)
      times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: treni-attention-bench [--heads H] [--kv-heads K] "
                 "[--head-dim D] [--rows N] [--start S] [--dtype bf16|f16] "
                 "[--iterations I] [--no-exact] [--m-tiles M] [--warps W] "
                 "[--block-n N] [--wgmma] "
                 "[--arch sm_XY[a]]\n");
    return 2;
  }
  cudaDeviceProp properties;
  CHECK_CUDA(cudaGetDeviceProperties(&properties, 0));
  // The runtime's target (sm_90a on Hopper: attention_flash's wgmma path);
  // --arch sm_90 takes mma.sync there.
  std::string arch = !o.arch.empty()
                         ? o.arch
                         : nvrtcTargetFor(properties.major, properties.minor);
  const bool bf16 = o.dtype == "bf16";
  const int64_t cacheRows = o.start + o.rows;
  const int64_t queryElements = o.rows * o.heads * o.headDim;
  const int64_t cacheElements = cacheRows * o.kvHeads * o.headDim;

  // Queries a little larger than keys, so the softmax is not flat.
  std::mt19937 random(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> query(queryElements), keys(cacheElements),
      values(cacheElements);
  for (auto &q : query)
    q = toBits(2.0f * normal(random), bf16);
  for (auto &k : keys)
    k = toBits(normal(random), bf16);
  for (auto &v : values)
    v = toBits(normal(random), bf16);
  std::vector<int32_t> positions(o.rows);
  for (int64_t i = 0; i < o.rows; ++i)
    positions[i] = int32_t(o.start + i);

  uint16_t *dQuery, *dKeys, *dValues, *dFlash, *dExact;
  int32_t *dPositions;
  CHECK_CUDA(cudaMalloc((void **)&dQuery, queryElements * 2));
  CHECK_CUDA(cudaMalloc((void **)&dFlash, queryElements * 2));
  CHECK_CUDA(cudaMalloc((void **)&dExact, queryElements * 2));
  CHECK_CUDA(cudaMalloc((void **)&dKeys, cacheElements * 2));
  CHECK_CUDA(cudaMalloc((void **)&dValues, cacheElements * 2));
  CHECK_CUDA(cudaMalloc((void **)&dPositions, o.rows * 4));
  CHECK_CUDA(cudaMemcpy(dQuery, query.data(), queryElements * 2,
                        cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dKeys, keys.data(), cacheElements * 2,
                        cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dValues, values.data(), cacheElements * 2,
                        cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dPositions, positions.data(), o.rows * 4,
                        cudaMemcpyHostToDevice));
  int rows = int(o.rows);

  // 4 * head_dim FLOPs per query head and attended key.
  double attended = double(o.rows) * double(o.start) +
                    double(o.rows) * double(o.rows + 1) / 2;
  double flops = 4.0 * double(o.heads) * double(o.headDim) * attended;

  // common.cuh's KvPages: null tables, a contiguous cache.
  struct {
    const int *blockTables = nullptr, *tableOffsets = nullptr, *runs = nullptr;
    int blockShift = 0;
  } pages;
  Kernel flash = build(o, "attention_flash", arch);
  void *flashArgs[] = {&dQuery,  &dPositions, &dFlash, &dKeys,
                       &dValues, &pages,      &rows};
  float flashMs = timeKernel(flash, o, flashArgs, cacheRows);
  std::printf("ATTENTION %s %s heads=%lld kv=%lld head_dim=%lld rows=%lld "
              "start=%lld %s %s: flash %.3f ms %.1f TFLOP/s",
              properties.name, arch.c_str(), (long long)o.heads,
              (long long)o.kvHeads, (long long)o.headDim, (long long)o.rows,
              (long long)o.start, o.dtype.c_str(), flash.tiling.c_str(),
              flashMs, flops / flashMs / 1e9);
  int status = 0;
  if (o.exact) {
    Kernel exact = build(o, "attention", arch);
    void *exactArgs[] = {&dQuery,  &dPositions, &dExact, &dKeys,
                         &dValues, &pages,      &rows};
    float exactMs = timeKernel(exact, o, exactArgs, cacheRows);
    std::vector<uint16_t> a(queryElements), b(queryElements);
    CHECK_CUDA(cudaMemcpy(a.data(), dFlash, queryElements * 2,
                          cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaMemcpy(b.data(), dExact, queryElements * 2,
                          cudaMemcpyDeviceToHost));
    double maxDiff = 0, diff2 = 0, ref2 = 0;
    for (int64_t i = 0; i < queryElements; ++i) {
      double x = fromBits(a[i], bf16), y = fromBits(b[i], bf16);
      if (!std::isfinite(x))
        maxDiff = diff2 = INFINITY;
      maxDiff = std::max(maxDiff, std::abs(x - y));
      diff2 += (x - y) * (x - y);
      ref2 += y * y;
    }
    double rel = std::sqrt(diff2 / std::max(ref2, 1e-30));
    std::printf("; exact %.3f ms (%.1fx); max|diff| %.2e rel-L2 %.2e %s",
                exactMs, exactMs / flashMs, maxDiff, rel,
                rel <= 2e-2 ? "OK" : "MISMATCH");
    status = rel <= 2e-2 ? 0 : 1;
  }
  std::printf("\n");
  return status;
}
