//===- gemm_rows_test.cpp - the gemm_rows kernel against a CPU reference -===//
//
// Tests the generated gemm_rows kernel (a batched step's GEMM of at most 32
// rows, codegen/kernels/gemm_rows.cuh) on the GPU: for bf16 and f16, with and
// without bias, feature counts that leave partial tiles, short and long rows
// of k, and every row count around the tile edges, out = x w^T (+ bias) must
// equal a double-precision reference of the same 16-bit inputs to the output
// type's rounding, and the rows past `rows` must stay untouched. Also checks
// generateGemmRowsKernel's refusals, which need no GPU. Skips the GPU part
// without a GPU.
//
//===----------------------------------------------------------------------===//

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "codegen/KernelSource.h"
#include "frontends/safetensors/safetensors.h"
#include "runtime/exec/gpu_executor.h"
#include "runtime/exec/nvrtc_compiler.h"
#include "gtest/gtest.h"

namespace treni {
namespace {

/// A plan with one function holding one gemm step: x (buffer 0, dtype
/// `xDtype`) times weight 0 (+ weight 1 as bias) into buffer 1 (`outDtype`).
struct GemmPlan {
  Plan plan;
  const PlanFunction &function() const { return plan.functions[0]; }
  const PlanStep &step() const { return plan.functions[0].steps[0]; }
};

GemmPlan gemmPlan(const std::string &dtype, const std::string &xDtype,
                  const std::string &outDtype, int64_t n, int64_t k,
                  bool bias) {
  GemmPlan g;
  g.plan.caches.push_back({"kv", 1, 1, 64, dtype});
  PlanFunction function;
  function.name = "step";
  function.buffers.push_back({xDtype, {-1, k}, true, 0});
  function.buffers.push_back({outDtype, {-1, n}, true, 0});
  PlanStep step;
  step.templateName = "gemm";
  step.origin = "test.linear";
  step.constants = {{"n", n}, {"k", k}, {"bias", bias}};
  step.inputs = {{PlanOperand::Kind::Buffer, 0},
                 {PlanOperand::Kind::Weight, 0}};
  if (bias)
    step.inputs.push_back({PlanOperand::Kind::Weight, 1});
  step.outputs = {1};
  function.steps.push_back(step);
  g.plan.functions.push_back(std::move(function));
  return g;
}

TEST(GemmRowsSourceTest, RefusesWhatItCannotRun) {
  // 32-bit activations, an f32 x beside 16-bit weights, k not a multiple of
  // 32: cuBLASLt keeps these GEMMs.
  for (auto [dtype, xDtype, k] :
       {std::tuple{"f32", "f32", 64}, std::tuple{"bf16", "f32", 64},
        std::tuple{"bf16", "bf16", 48}}) {
    GemmPlan g = gemmPlan(dtype, xDtype, "bf16", 64, k, false);
    auto spec = generateGemmRowsKernel(g.plan, g.function(), g.step(), 1);
    EXPECT_TRUE(absl::IsUnimplemented(spec.status()))
        << dtype << " " << xDtype << " " << k << ": " << spec.status();
  }
  GemmPlan g = gemmPlan("bf16", "bf16", "bf16", 64, 64, false);
  auto tiles = generateGemmRowsKernel(g.plan, g.function(), g.step(), 3);
  EXPECT_TRUE(absl::IsInvalidArgument(tiles.status())) << tiles.status();
  PlanStep notGemm = g.step();
  notGemm.templateName = "gemv";
  EXPECT_FALSE(
      generateGemmRowsKernel(g.plan, g.function(), notGemm, 1).status().ok());
  // One that applies: its source names the template and the constants.
  auto spec = generateGemmRowsKernel(g.plan, g.function(), g.step(), 2);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_NE(spec->source.find("treni kernel: gemm_rows"), std::string::npos);
  EXPECT_NE(spec->source.find("row_tiles=2"), std::string::npos);
  EXPECT_EQ(spec->launch.blocksX, 4);   // 64 features, 16 a block
  EXPECT_EQ(spec->launch.threads, 256); // few features: 8 warps split k
}

/// 16-bit storage of `value` (round to nearest even) and back.
uint16_t toBits(float value, bool bf16) {
  return bf16 ? f32ToBf16(value) : f32ToF16(value);
}
float fromBits(uint16_t bits, bool bf16) {
  return bf16 ? bf16ToF32(bits) : f16ToF32(bits);
}

struct Case {
  const char *dtype;
  int64_t n, k;
  bool bias;
};

class GemmRowsGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(GemmRowsGpuTest, MatchesReferenceAtEveryRowCount) {
  auto arch = currentDeviceArch();
  if (!arch.ok())
    GTEST_SKIP() << "no usable GPU";
  const Case c = GetParam();
  const bool bf16 = std::string(c.dtype) == "bf16";
  GemmPlan g = gemmPlan(c.dtype, c.dtype, c.dtype, c.n, c.k, c.bias);
  KernelCompiler compiler(""); // no disk cache

  std::mt19937 random(uint32_t(c.n * 131 + c.k));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  constexpr int64_t kMaxRows = 32;
  auto fill = [&](int64_t count) {
    std::vector<uint16_t> bits(count);
    for (uint16_t &b : bits) {
      float v = uniform(random);
      b = toBits(std::abs(v) < 1e-3f ? 0.5f : v, bf16);
    }
    return bits;
  };
  std::vector<uint16_t> x = fill(kMaxRows * c.k), w = fill(c.n * c.k),
                        bias = fill(c.n);
  void *dx = nullptr, *dw = nullptr, *dbias = nullptr, *dout = nullptr;
  const size_t outBytes = kMaxRows * c.n * 2;
  ASSERT_EQ(cudaMalloc(&dx, x.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dw, w.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dbias, bias.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, outBytes), cudaSuccess);
  cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dbias, bias.data(), bias.size() * 2, cudaMemcpyHostToDevice);

  // Reference of every row: double sums of the 16-bit values.
  std::vector<double> reference(kMaxRows * c.n), magnitude(kMaxRows * c.n);
  for (int64_t r = 0; r < kMaxRows; ++r)
    for (int64_t j = 0; j < c.n; ++j) {
      double sum = c.bias ? fromBits(bias[j], bf16) : 0.0, size = std::abs(sum);
      for (int64_t i = 0; i < c.k; ++i) {
        double term = double(fromBits(x[r * c.k + i], bf16)) *
                      fromBits(w[j * c.k + i], bf16);
        sum += term;
        size += std::abs(term);
      }
      reference[r * c.n + j] = sum;
      magnitude[r * c.n + j] = size;
    }

  for (int64_t rowTiles : {1, 2, 4}) {
    auto spec =
        generateGemmRowsKernel(g.plan, g.function(), g.step(), rowTiles);
    ASSERT_TRUE(spec.ok()) << spec.status();
    auto cubin = compiler.cubin(spec->source, *arch);
    ASSERT_TRUE(cubin.ok()) << cubin.status();
    cudaLibrary_t library;
    ASSERT_EQ(cudaLibraryLoadData(&library, cubin->data(), nullptr, nullptr, 0,
                                  nullptr, nullptr, 0),
              cudaSuccess);
    cudaKernel_t kernel;
    ASSERT_EQ(cudaLibraryGetKernel(&kernel, library, spec->entry.c_str()),
              cudaSuccess);
    const int64_t most = 8 * rowTiles;
    for (int64_t rows = 1; rows <= most; ++rows) {
      if (rows > 2 && rows < most - 1 && rows != most / 2 + 1)
        continue; // the edges of the tiles, and one past the middle
      SCOPED_TRACE(testing::Message()
                   << "row_tiles " << rowTiles << ", rows " << rows);
      cudaMemset(dout, 0xff, outBytes); // NaN: rows past `rows` stay NaN
      void *biasArg = c.bias ? dbias : nullptr;
      int rowCount = int(rows);
      void *args[] = {&dx, &dw, &biasArg, &dout, &rowCount};
      ASSERT_EQ(cudaLaunchKernel(
                    (const void *)kernel, dim3(unsigned(spec->launch.blocksX)),
                    dim3(unsigned(spec->launch.threads)), args, 0, nullptr),
                cudaSuccess);
      std::vector<uint16_t> out(kMaxRows * c.n);
      ASSERT_EQ(cudaMemcpy(out.data(), dout, outBytes, cudaMemcpyDeviceToHost),
                cudaSuccess);
      int bad = 0;
      for (int64_t r = 0; r < kMaxRows && bad < 5; ++r)
        for (int64_t j = 0; j < c.n && bad < 5; ++j) {
          float got = fromBits(out[r * c.n + j], bf16);
          if (r >= rows) {
            bad += !std::isnan(got);
            EXPECT_TRUE(std::isnan(got)) << "row " << r << " written";
            continue;
          }
          double want = reference[r * c.n + j];
          // The output's rounding (half an ulp, up to one where fp32 and
          // double sums round to neighbours) plus fp32 summation.
          double tolerance = std::abs(want) * (bf16 ? 0x1p-7 : 0x1p-10) +
                             magnitude[r * c.n + j] * 1e-6;
          bool close = std::abs(got - want) <= tolerance;
          bad += !close;
          EXPECT_TRUE(close) << "out[" << r << ", " << j << "] = " << got
                             << ", reference " << want;
        }
    }
    cudaLibraryUnload(library);
  }
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dbias);
  cudaFree(dout);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GemmRowsGpuTest,
    testing::Values(Case{"bf16", 200, 96, false}, Case{"bf16", 72, 4096, true},
                    Case{"bf16", 600, 896, true}, Case{"f16", 200, 96, true},
                    Case{"f16", 1000, 640, false}),
    [](const testing::TestParamInfo<Case> &info) {
      return absl::StrCat(info.param.dtype, "_n", info.param.n, "_k",
                          info.param.k, info.param.bias ? "_bias" : "");
    });

} // namespace
} // namespace treni
