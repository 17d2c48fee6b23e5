//===- cuda_status.h - CUDA / cuBLASLt errors as absl::Status ---*- C++ -*-===//
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace treni {

/// A status naming the failing call and CUDA's error, or OK. Out-of-memory
/// becomes ResourceExhausted so callers can say so plainly.
inline absl::Status cudaStatus(cudaError_t error, const char *call) {
  if (error == cudaSuccess)
    return absl::OkStatus();
  std::string message = absl::StrCat(call, " failed: ", cudaGetErrorName(error),
                                     " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation)
    return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

inline absl::Status cublasStatus(cublasStatus_t status, const char *call) {
  if (status == CUBLAS_STATUS_SUCCESS)
    return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(call, " failed: ", cublasLtGetStatusName(status), " (",
                   cublasLtGetStatusString(status), ")"));
}

} // namespace treni

/// Evaluates a CUDA runtime call; returns a status naming it on failure.
#define TRENI_CUDA(call)                                                       \
  TRENI_RETURN_IF_ERROR(::treni::cudaStatus((call), #call))
#define TRENI_CUBLAS(call)                                                     \
  TRENI_RETURN_IF_ERROR(::treni::cublasStatus((call), #call))
