//===- gemm.h - cuBLASLt GEMMs for plan `gemm` steps ------------*- C++ -*-===//
//
// out[M, N] = x[M, K] * w[N, K]^T (+ bias[N]), row-major, 16-bit or fp32
// inputs with fp32 accumulation. One matmul descriptor and heuristic-chosen
// algorithm per shape, created on first use and reused (also inside CUDA
// graph capture, which therefore only ever sees cublasLtMatmul calls).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"

namespace treni {

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
  cudaDataType_t inType = CUDA_R_16BF; ///< x, w and bias
  cudaDataType_t outType = CUDA_R_16BF;
  bool bias = false;
  auto key() const { return std::tie(m, n, k, inType, outType, bias); }
  bool operator<(const GemmShape &other) const { return key() < other.key(); }
};

class GemmRunner {
public:
  static absl::StatusOr<std::unique_ptr<GemmRunner>>
  create(size_t workspaceBytes = 32 << 20);
  ~GemmRunner();

  /// Enqueues one GEMM on `stream`. Plans (descriptor + algorithm) are cached
  /// per shape; call `prepare` before graph capture so capture never queries
  /// heuristics.
  absl::Status run(const GemmShape &shape, const void *x, const void *w,
                   const void *bias, void *out, cudaStream_t stream);
  absl::Status prepare(const GemmShape &shape);
  /// Prepares `shape` and, once per shape, times cuBLASLt's first
  /// `candidates` heuristic algorithms on these operands (a warm-up run,
  /// then the mean of three, CUDA events on `stream`, which must not be
  /// capturing) and keeps the fastest. `out` is overwritten.
  absl::Status tune(const GemmShape &shape, const void *x, const void *w,
                    const void *bias, void *out, cudaStream_t stream,
                    int candidates = 8);
  size_t numPlans() const { return plans_.size(); }

private:
  struct Plan;
  GemmRunner() = default;
  /// Up to `count` heuristic algorithms for the plan, best first.
  absl::StatusOr<std::vector<cublasLtMatmulHeuristicResult_t>>
  heuristics(const Plan &plan, const GemmShape &shape, int count);
  cublasLtHandle_t handle_ = nullptr;
  void *workspace_ = nullptr;
  size_t workspaceBytes_ = 0;
  std::map<GemmShape, std::unique_ptr<Plan>> plans_;
};

} // namespace treni
