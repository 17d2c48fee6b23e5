//===- KernelRegistry.h - the contract of every kernel template -*- C++ -*-===//
//
// One table entry per kernel template: its operands in ABI order, the typed
// constants a plan step carries, and its launch rule. Three readers, no MLIR:
//   - passes/OutlineKernels.cpp copies the constants sourced from op
//     attributes and checks the ones it derives;
//   - codegen/KernelSource.cpp assembles codegen/kernels/<name>.cuh with the
//     entry's operand types, constants, shared parts and launch geometry;
//   - runtime/exec/cpu_executor.cpp checks each step against its entry and
//     runs the template's reference function (runtime/exec/cpu_kernels.cpp).
// `gemm` has an entry but no CUDA template: it runs on cuBLASLt, or, in a
// batched step of at most 32 rows, on `gemm_rows` (no pass emits that one:
// the runtime derives it from the gemm step, generateGemmRowsKernel).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/Plan.h"

namespace treni {

/// Launch geometry: grid = (blocksX, gridY(rows), 1), block = (threads, 1,
/// 1), dynamic shared memory = sharedBytes + sharedBytesPerPosition * maxSeq.
struct KernelLaunch {
  int64_t blocksX = 1;
  int64_t threads = 128;
  /// grid.y = ceil(rows * yItemsPerRow / yItemsPerBlock) when set, else 1:
  /// one block row per token by default, or (attention_flash) one per tile
  /// of query vectors.
  bool rowsInGridY = true;
  int64_t sharedBytes = 0;
  int64_t sharedBytesPerPosition = 0;
  int64_t yItemsPerRow = 1;
  int64_t yItemsPerBlock = 1;
  bool operator==(const KernelLaunch &) const = default;

  int64_t gridY(int64_t rows) const {
    return rowsInGridY
               ? (rows * yItemsPerRow + yItemsPerBlock - 1) / yItemsPerBlock
               : 1;
  }
};

/// One operand of a template, in ABI order.
struct KernelOperand {
  std::string name;
  /// An i32 buffer of token indices (ids, positions): `const int *` in the
  /// kernel; every other operand is a float buffer or a weight.
  bool index = false;
  /// When set, the operand is present only when this bool constant is true
  /// (gemm's bias). CUDA templates have none: their ABI is fixed.
  std::string presentWhen = {};
};

enum class ConstantKind { Int, Float, Bool, Symbol };

/// Head dims the attention_flash template supports (16-element MMA steps,
/// registers for up to 128): 64, 80, 96 and 128 among them. The IR states
/// the same rule (AttentionFlashOp::supportsHeadDim, ir/TreniOps.td), which
/// cannot link this MLIR-free library.
bool flashAttentionHeadDim(int64_t headDim);

/// Whether `value` holds a `kind` (int64_t, double, bool, string).
bool hasKind(const PlanConstant &value, ConstantKind kind);

/// Where treni-outline-kernels takes a constant from.
enum class ConstantSource {
  /// The op's attribute of the same name, copied (f64, i64, a symbol; a unit
  /// attribute is true when present, false when absent).
  Attribute,
  /// Computed by the pass from the op's operand shapes or which optional
  /// operands it has.
  Derived,
};

struct KernelConstant {
  std::string key;
  ConstantKind kind;
  ConstantSource source;
  /// May be absent (Llama 3's RoPE scaling, gemv's epsilon without a norm).
  bool optional = false;
  /// False for `cache` and `layer`: they pick the layer's cache pointers at
  /// launch, so every layer shares one kernel.
  bool specialise = true;
};

/// A constexpr the launch rule adds to the source (gemv's kRowsPerBlock).
struct DerivedConstant {
  std::string name;   ///< "kRowsPerBlock"
  PlanConstant value; ///< int64_t (int) or double (float)
  std::string why;    ///< trailing comment
};

struct KernelGeometry {
  KernelLaunch launch;
  std::vector<DerivedConstant> constants;
};

/// How attention_flash tiles its work.
struct FlashTiling {
  /// Warps per block; on the Hopper (wgmma) path, whole warpgroups of 4.
  int64_t warps = 4;
  /// 16-vector MMA tiles per warp (wgmma: 64-vector tiles per warpgroup).
  int64_t mTiles = 2;
  /// Keys per K/V tile.
  int64_t blockN = 64;
  /// Warpgroup MMA where the target is sm_90a (else mma.sync).
  bool wgmma = false;
};

/// The launch rule's tiling for these heads (see KernelRegistry.cpp).
FlashTiling flashLaunchTiling(int64_t heads, int64_t kvHeads);

/// attention_flash's launch geometry and tiling constants for these heads.
KernelGeometry flashGeometry(int64_t heads, int64_t kvHeads, int64_t headDim,
                             const FlashTiling &tiling);

struct KernelTemplate {
  std::string name;
  std::vector<KernelOperand> inputs;
  std::vector<std::string> outputs;
  std::vector<KernelConstant> constants;
  /// Reads or writes this layer's KV cache: the step carries `cache` and
  /// `layer`, and the kernel takes `keyCache, valueCache, pages` after its
  /// outputs.
  bool usesCache = false;
  /// Follows the block tables of its `pages` argument (common.cuh's KvPages):
  /// it may run in a function whose cache is paged (@step). The others read
  /// a contiguous cache and run only in functions of one sequence.
  bool pagedCache = false;
  /// The source declares `kInvFreq[kHeadDim / 2]` from head_dim, theta and
  /// the llama3_* constants (codegen/Rope.h), as the CPU reference computes
  /// them.
  bool ropeFrequencies = false;
  /// Device code shared with other templates (codegen/kernels/<part>.cuh),
  /// placed between the specialisation and the template.
  std::vector<std::string> parts = {};
  /// Checks the step's shape constants and returns its launch; null for a
  /// step with no CUDA template (gemm).
  absl::StatusOr<KernelGeometry> (*geometry)(const PlanStep &) = nullptr;

  bool hasCudaTemplate() const { return geometry != nullptr; }
  const KernelConstant *constant(std::string_view key) const;
};

/// Every template, in a fixed order.
const std::vector<KernelTemplate> &kernelTemplates();
/// The entry named `name`, or null.
const KernelTemplate *findKernelTemplate(std::string_view name);

/// "kernel '<template>' (<origin>): <message>", an InvalidArgumentError.
absl::Status invalidStep(const PlanStep &step, const std::string &message);

/// Checks `step` against its entry: operand counts (honouring presentWhen),
/// every required constant present, every constant declared and of its kind.
absl::Status checkStep(const KernelTemplate &kernel, const PlanStep &step);

} // namespace treni
