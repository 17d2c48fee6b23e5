//===- KernelSource.h - plan steps -> CUDA C++ ------------------*- C++ -*-===//
//
// Every plan step except a "gemm" (cuBLASLt) becomes one CUDA C++ kernel: a
// readable template (codegen/kernels/<template>.cuh, embedded in the binary at
// build time) specialised with the step's constants as `constexpr` values and
// with its operands' element types; what each template takes and how it is
// launched is its entry in codegen/KernelRegistry.h. The source needs no
// #include, so NVRTC compiles it as is; its first line names the template,
// the op it came from and every constant, e.g.
//
//   // treni kernel: rms_norm (from treni.rms_norm) dim=896 epsilon=1e-06
//   group=896 dtype=bf16
//
// Kernel ABI (the runtime builds the argument array generically): one pointer
// per step input in order (`const T *`, `const int *` for i32 buffers), one
// `T *` per step output, then `T *keyCache, T *valueCache, KvPages pages` when
// usesCache (this layer's caches, row-major [cache rows, numKvHeads *
// headDim], and the step's block tables: common.cuh's KvPages, null tables
// unless the cache is paged), then
// `int rows`, the token count of the call. Weights are in the activation
// dtype on the device, whatever the checkpoint holds.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/KernelRegistry.h"
#include "codegen/Plan.h"

namespace treni {

struct KernelSpec {
  /// Unique extern "C" __global__ name: "treni_<template>_<16 hex digits of
  /// the FNV-1a hash of the source>", so equal sources share one entry.
  std::string entry;
  /// Complete NVRTC-compilable CUDA C++ (no #include).
  std::string source;
  KernelLaunch launch;
  /// The template's KernelTemplate::usesCache: the kernel takes the layer's
  /// key and value cache pointers.
  bool usesCache = false;
};

/// Element type of activations, the KV cache and (on the device) of all
/// weights: plan.caches[0].dtype ("bf16", "f16" or "f32").
absl::StatusOr<std::string> activationDtype(const Plan &plan);

/// The kernel for one step. Fails naming the template when it is unknown (or
/// "gemm"), and naming the step and key when a constant or operand is wrong.
absl::StatusOr<KernelSpec> generateKernel(const Plan &plan,
                                          const PlanFunction &function,
                                          const PlanStep &step);
/// The same with another launch geometry than the launch rule's (its
/// constants and launch; benchmarks measure the alternatives, e.g.
/// flashGeometry with another FlashTiling). The caller keeps it valid.
absl::StatusOr<KernelSpec>
generateKernel(const Plan &plan, const PlanFunction &function,
               const PlanStep &step,
               const std::optional<KernelGeometry> &override);

/// The gemm_rows kernel that may stand in for the cuBLASLt GEMM of `gemm`
/// (a "gemm" step) when it runs on at most 8 * rowTiles rows (rowTiles 1, 2
/// or 4): the same operands and result, the weights streamed once through
/// the tensor cores. Unimplemented when the template does not apply (32-bit
/// activations, an x of another type than the weights, k not a multiple of
/// 32): the GEMM stays on cuBLASLt. Without a bias the kernel's bias operand
/// is the weight, unread.
absl::StatusOr<KernelSpec> generateGemmRowsKernel(const Plan &plan,
                                                  const PlanFunction &function,
                                                  const PlanStep &gemm,
                                                  int64_t rowTiles);

/// The attention_flash kernel that computes, in a batched step (@step), the
/// rows of prompt chunks that `partial` (attention_seq1_partial) and
/// `reduce` (the attention_seq1_reduce of its partials) would compute row by
/// row: the same query, positions, cache and output, the runtime giving it a
/// tile list (KvPages::runs, flashChunkTiles) so no tile mixes two
/// sequences. Unimplemented where the template does not apply (a 32-bit
/// cache, a head_dim it does not take): those rows stay on the split-KV
/// kernels.
absl::StatusOr<KernelSpec>
generateStepChunkAttentionKernel(const Plan &plan, const PlanFunction &function,
                                 const PlanStep &partial,
                                 const PlanStep &reduce);

/// In a paged function, the attention_seq1_reduce step that reads
/// `partial`'s output, when `partial` is an attention_seq1_partial; else
/// null.
const PlanStep *chunkAttentionReduce(const PlanFunction &function,
                                     const PlanStep &partial);

/// Whether `function` addresses its KV cache through block tables: @step and
/// @embed, whose rows may belong to different sequences of a paged pool. Its
/// cache steps must be templates with pagedCache; the others address one
/// sequence's contiguous cache.
bool pagedCache(const PlanFunction &function);

/// Every distinct kernel of the plan's functions that run on the GPU
/// (deduplicated by entry, in first-use order), for ahead-of-time
/// compilation.
absl::StatusOr<std::vector<KernelSpec>> generateAllKernels(const Plan &plan);

/// The templates generateKernel accepts: the registry's entries that have a
/// CUDA template (all but gemm).
std::vector<std::string> kernelTemplateNames();

/// The parameter list a template's TRENI_ENTRY must declare, from its
/// registry entry (see the ABI above).
std::string kernelParameterList(const KernelTemplate &kernel);

/// The embedded text of codegen/kernels/<name>.cuh (a template, a shared
/// part or "common"), or nullopt.
std::optional<std::string_view> kernelFileText(std::string_view name);

} // namespace treni
