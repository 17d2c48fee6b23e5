//===- KernelRegistry.cpp - the contract of every kernel template --------===//
//
// The table, and the launch rule of each CUDA template. A launch rule checks
// the shape constants its kernel relies on (positive, divisible) and picks the
// grid; the comment at the top of each .cuh says what a block does.
//
//===----------------------------------------------------------------------===//

#include "codegen/KernelRegistry.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "codegen/Rope.h"
#include "support/status.h"

namespace treni {
namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Threads for `width` independent elements: whole warps, at most 256.
int64_t threadsFor(int64_t width) {
  return std::clamp<int64_t>(ceilDiv(width, 32) * 32, 32, 256);
}

/// A launch with one thread per element of a `width`-wide row.
KernelLaunch perElement(int64_t width) {
  KernelLaunch launch;
  launch.threads = threadsFor(width);
  launch.blocksX = ceilDiv(width, launch.threads);
  return launch;
}

absl::Status positive(const PlanStep &step, const char *key, int64_t value) {
  if (value > 0 && value <= std::numeric_limits<int32_t>::max())
    return absl::OkStatus();
  return invalidStep(step,
                     absl::StrCat(key, " = ", value, " must be in [1, 2^31)"));
}

/// The integer constant `key`, checked to fit a positive `int`.
absl::StatusOr<int64_t> positiveConstant(const PlanStep &step,
                                         const char *key) {
  TRENI_ASSIGN_OR_RETURN(int64_t value, step.intConstant(key));
  TRENI_RETURN_IF_ERROR(positive(step, key, value));
  return value;
}

absl::Status notMultipleOfKvHeads(const PlanStep &step, int64_t heads,
                                  int64_t kvHeads) {
  return invalidStep(step, absl::StrCat("num_heads ", heads,
                                        " is not a multiple of num_kv_heads ",
                                        kvHeads));
}

//===-- Launch rules ------------------------------------------------------===//

/// embedding, cache_write, silu, mul, add: one thread per element of a row,
/// one grid row per token.
absl::StatusOr<KernelGeometry> perElementOfRow(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, positiveConstant(step, "dim"));
  return KernelGeometry{perElement(dim), {}};
}

/// The widest vector (8, 4, 2 or 1 elements; common.cuh's Vector) that
/// `width` is a multiple of.
int64_t vectorFor(int64_t width) {
  for (int64_t vector : {8, 4, 2})
    if (width % vector == 0)
      return vector;
  return 1;
}

/// silu_mul: one thread per vector of a row, one grid row per token.
absl::StatusOr<KernelGeometry> siluMulGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, positiveConstant(step, "dim"));
  int64_t vector = vectorFor(dim);
  return KernelGeometry{perElement(dim / vector),
                        {{"kVector", vector, "columns per thread, from dim"}}};
}

/// take_last: one thread per element of the last row; the row count is an
/// argument, so the grid does not depend on it.
absl::StatusOr<KernelGeometry> takeLastGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(KernelGeometry geometry, perElementOfRow(step));
  geometry.launch.rowsInGridY = false;
  return geometry;
}

/// rms_norm: one block per group of a row. Without the optional
/// `unit_offset` the weight is applied as is (kUnitOffset false).
absl::StatusOr<KernelGeometry> rmsNormGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, positiveConstant(step, "dim"));
  TRENI_ASSIGN_OR_RETURN(int64_t group, positiveConstant(step, "group"));
  if (dim % group != 0)
    return invalidStep(
        step, absl::StrCat("dim ", dim, " is not a multiple of group ", group));
  KernelGeometry geometry;
  geometry.launch.threads = threadsFor(group);
  geometry.launch.blocksX = dim / group;
  if (!step.constants.count("unit_offset"))
    geometry.constants.push_back({"kUnitOffset", false, "no unit_offset"});
  return geometry;
}

/// rope: one thread per pair of a head's elements (a rotated pair, or two
/// elements past rotary_dim that pass through). Without the optional
/// `rotary_dim` the whole head rotates (kRotaryDim = head_dim).
absl::StatusOr<KernelGeometry> ropeGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, positiveConstant(step, "dim"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, positiveConstant(step, "head_dim"));
  if (headDim % 2 != 0 || dim % headDim != 0)
    return invalidStep(step,
                       absl::StrCat("head_dim ", headDim,
                                    " must be even and divide dim ", dim));
  TRENI_RETURN_IF_ERROR(ropeRotaryDim(step, headDim).status());
  KernelGeometry geometry{perElement(dim / 2), {}};
  if (!step.constants.count("rotary_dim"))
    geometry.constants.push_back(
        {"kRotaryDim", headDim, "no rotary_dim: the whole head"});
  return geometry;
}

/// qkv_[norm_]rope_cache: a q or k head of a row is kLanes threads with a
/// vector of rotation pairs each (up to 8); a block holds up to 256 threads'
/// worth of heads of one row (all of them for the usual shapes).
absl::StatusOr<KernelGeometry> qkvGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t heads, positiveConstant(step, "num_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t kvHeads,
                         positiveConstant(step, "num_kv_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, positiveConstant(step, "head_dim"));
  if (headDim % 2 != 0 || headDim > 2048)
    return invalidStep(
        step, absl::StrCat("head_dim ", headDim, " must be even and <= 2048"));
  int64_t vector = vectorFor(headDim / 2);
  int64_t lanes = headDim / 2 / vector;
  int64_t slots = heads + kvHeads;
  int64_t headsPerBlock = std::clamp<int64_t>(256 / lanes, 1, slots);
  KernelGeometry geometry;
  geometry.launch.threads = ceilDiv(headsPerBlock * lanes, 32) * 32;
  geometry.launch.blocksX = ceilDiv(slots, headsPerBlock);
  geometry.constants = {
      {"kVector", vector, "rotation pairs per thread, from head_dim"},
      {"kHeadsPerBlock", headsPerBlock, "q and k heads per block"}};
  return geometry;
}

/// num_heads, num_kv_heads and head_dim of an attention step, positive, with
/// whole groups of query heads per KV head.
struct AttentionHeads {
  int64_t heads, kvHeads, headDim;
};
absl::StatusOr<AttentionHeads> attentionHeads(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t heads, positiveConstant(step, "num_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t kvHeads,
                         positiveConstant(step, "num_kv_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, positiveConstant(step, "head_dim"));
  if (heads % kvHeads != 0)
    return notMultipleOfKvHeads(step, heads, kvHeads);
  return AttentionHeads{heads, kvHeads, headDim};
}

/// attention: one block per query head of a row; dynamic shared memory holds
/// one fp32 score per cache position.
absl::StatusOr<KernelGeometry> attentionGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(AttentionHeads h, attentionHeads(step));
  if (h.headDim > 1024)
    return invalidStep(step, absl::StrCat("head_dim ", h.headDim, " > 1024"));
  KernelGeometry geometry;
  geometry.launch.threads = 128;
  geometry.launch.blocksX = h.heads;
  geometry.launch.sharedBytesPerPosition = sizeof(float); // one score each
  return geometry;
}

absl::StatusOr<KernelGeometry> attentionFlashGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(AttentionHeads h, attentionHeads(step));
  if (!flashAttentionHeadDim(h.headDim))
    return invalidStep(step, absl::StrCat("head_dim ", h.headDim,
                                          " is not a multiple of 16 <= 128"));
  return flashGeometry(h.heads, h.kvHeads, h.headDim,
                       flashLaunchTiling(h.heads, h.kvHeads));
}

/// attention_seq1_partial: one block per (KV head, split) and query row; the
/// grid moves only with the rows.
absl::StatusOr<KernelGeometry> seq1PartialGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t heads, positiveConstant(step, "num_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, positiveConstant(step, "head_dim"));
  TRENI_ASSIGN_OR_RETURN(int64_t splits, positiveConstant(step, "num_splits"));
  TRENI_ASSIGN_OR_RETURN(int64_t kvHeads,
                         positiveConstant(step, "num_kv_heads"));
  if (heads % kvHeads != 0)
    return notMultipleOfKvHeads(step, heads, kvHeads);
  // Static shared memory: every warp's (max, sum, acc) for the group.
  const int64_t threads = 128, group = heads / kvHeads;
  int64_t shared = (threads / 32) * group * (headDim + 2) * 4;
  if (shared > 48 * 1024)
    return invalidStep(step,
                       absl::StrCat("a group of ", group, " heads of ", headDim,
                                    " needs ", shared,
                                    " bytes of shared memory (> 48 KiB)"));
  KernelGeometry geometry;
  geometry.launch.threads = threads;
  geometry.launch.blocksX = kvHeads * splits;
  // The tensor-core path is chosen at run time (GpuOptions::
  // seq1TensorCores, an override of this constant) until it is measured.
  geometry.constants.push_back(
      {"kTensorCores", int64_t(0), "mma.sync path where it applies"});
  return geometry;
}

/// attention_seq1_reduce: one block per (query head, row).
absl::StatusOr<KernelGeometry> seq1ReduceGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t heads, positiveConstant(step, "num_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, positiveConstant(step, "head_dim"));
  TRENI_RETURN_IF_ERROR(positiveConstant(step, "num_splits").status());
  KernelGeometry geometry;
  geometry.launch.threads = threadsFor(headDim);
  geometry.launch.blocksX = heads;
  return geometry;
}

/// gemv: 128 threads (fewer for short rows), one 16-byte chunk each per pass.
int64_t gemvThreads(int64_t k) {
  return std::min<int64_t>(threadsFor(ceilDiv(k, 8)), 128);
}

/// gemv rows per block: enough rows that each thread has about four 16-byte
/// loads in flight, but at least ~4 blocks per SM of a large GPU.
int64_t gemvRowsPerBlock(int64_t n, int64_t k) {
  int64_t passes = ceilDiv(ceilDiv(k, 8), gemvThreads(k));
  int64_t rows = passes >= 4 ? 1 : passes >= 2 ? 2 : 4;
  while (rows > 1 && ceilDiv(n, rows) < 528)
    rows /= 2;
  return rows;
}

/// gemv: ceil(outputs / kRowsPerBlock) blocks of one row.
absl::StatusOr<KernelGeometry> gemvGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t n, positiveConstant(step, "n"));
  TRENI_ASSIGN_OR_RETURN(int64_t k, positiveConstant(step, "k"));
  TRENI_ASSIGN_OR_RETURN(bool gated, step.boolConstant("gated"));
  TRENI_ASSIGN_OR_RETURN(bool norm, step.boolConstant("norm"));
  TRENI_ASSIGN_OR_RETURN(bool residual, step.boolConstant("residual"));
  if (gated && (n % 2 != 0 || residual))
    return invalidStep(step, "gated needs an even n and no residual");
  if (norm != (step.constants.count("epsilon") > 0))
    return invalidStep(step, "epsilon must be given exactly when norm is");
  // A gated block loads a gate row and an up row per output.
  int64_t rowsPerBlock = gemvRowsPerBlock(n, k);
  if (gated)
    rowsPerBlock = std::max<int64_t>(1, rowsPerBlock / 2);
  KernelGeometry geometry;
  geometry.launch.threads = gemvThreads(k);
  geometry.launch.blocksX = ceilDiv(gated ? n / 2 : n, rowsPerBlock);
  geometry.launch.rowsInGridY = false;
  geometry.constants.push_back(
      {"kRowsPerBlock", rowsPerBlock, "outputs per block, from n and k"});
  if (!norm)
    geometry.constants.push_back({"kEpsilon", 0.0, "no norm"});
  return geometry;
}

/// gemm_rows: one 16-feature MMA tile a block, so the grid is fine-grained
/// (every block resident at once, or nearly: no tail wave of big blocks);
/// its warps split the 32-column slabs, as many (up to 8) as keep about
/// 16 warps per SM of an H100 (132 SMs) busy when the features are few;
/// the loads of 4 slabs in flight per thread.
absl::StatusOr<KernelGeometry> gemmRowsGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t n, positiveConstant(step, "n"));
  TRENI_ASSIGN_OR_RETURN(int64_t k, positiveConstant(step, "k"));
  TRENI_ASSIGN_OR_RETURN(int64_t rowTiles, positiveConstant(step, "row_tiles"));
  if (k % 32 != 0)
    return invalidStep(step, "k must be a multiple of 32");
  if (rowTiles != 1 && rowTiles != 2 && rowTiles != 4)
    return invalidStep(step, "row_tiles must be 1, 2 or 4");
  constexpr int64_t kBusyWarps = 16 * 132;
  const int64_t tiles = ceilDiv(n, 16);
  int64_t warps = 1;
  while (warps < 8 && tiles * warps * 2 <= kBusyWarps)
    warps *= 2;
  KernelGeometry geometry;
  geometry.launch.blocksX = tiles;
  geometry.launch.threads = 32 * warps;
  geometry.launch.rowsInGridY = false;
  geometry.constants.push_back(
      {"kFeatureTiles", int64_t(1), "16-feature MMA tiles per block"});
  geometry.constants.push_back(
      {"kUnroll", int64_t(4), "slabs of loads in flight"});
  return geometry;
}

/// residual_norm: one block per row, a vector of columns per thread, up to
/// 1024 threads.
absl::StatusOr<KernelGeometry> residualNormGeometry(const PlanStep &step) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, positiveConstant(step, "dim"));
  int64_t vector = vectorFor(dim);
  KernelGeometry geometry;
  geometry.launch.threads =
      std::clamp<int64_t>(ceilDiv(dim / vector, 32) * 32, 32, 1024);
  geometry.launch.blocksX = 1;
  geometry.constants = {{"kVector", vector, "columns per thread, from dim"}};
  return geometry;
}

//===-- The table ---------------------------------------------------------===//

KernelOperand index(std::string name) { return {std::move(name), true}; }

KernelConstant derived(std::string key, ConstantKind kind = ConstantKind::Int) {
  return {std::move(key), kind, ConstantSource::Derived};
}

KernelConstant attribute(std::string key, ConstantKind kind,
                         bool optional = false) {
  return {std::move(key), kind, ConstantSource::Attribute, optional};
}

std::vector<KernelConstant> with(std::vector<KernelConstant> constants,
                                 const std::vector<KernelConstant> &more) {
  constants.insert(constants.end(), more.begin(), more.end());
  return constants;
}

/// The layer's cache, picked at launch.
const std::vector<KernelConstant> &cacheConstants() {
  static const std::vector<KernelConstant> constants = {
      {"cache", ConstantKind::Symbol, ConstantSource::Attribute, false, false},
      {"layer", ConstantKind::Int, ConstantSource::Attribute, false, false}};
  return constants;
}

/// Theta and Llama 3's frequency scaling (all four or none).
const std::vector<KernelConstant> &ropeConstants() {
  static const std::vector<KernelConstant> constants = {
      attribute("theta", ConstantKind::Float),
      attribute("llama3_factor", ConstantKind::Float, true),
      attribute("llama3_low_freq_factor", ConstantKind::Float, true),
      attribute("llama3_high_freq_factor", ConstantKind::Float, true),
      attribute("llama3_original_max_position", ConstantKind::Int, true)};
  return constants;
}

std::vector<KernelTemplate> buildTable() {
  using enum ConstantKind;
  const std::vector<KernelConstant> heads = {attribute("num_heads", Int),
                                             attribute("num_kv_heads", Int),
                                             attribute("head_dim", Int)};
  const std::vector<KernelConstant> dim = {derived("dim")};
  std::vector<KernelTemplate> table;
  table.push_back({.name = "embedding",
                   .inputs = {index("ids"), {"table"}},
                   .outputs = {"out"},
                   .constants = {derived("vocab"), derived("dim")},
                   .geometry = perElementOfRow});
  table.push_back({.name = "rms_norm",
                   .inputs = {{"x"}, {"weight"}},
                   .outputs = {"out"},
                   .constants = {derived("dim"), derived("group"),
                                 attribute("epsilon", Float),
                                 attribute("unit_offset", Bool,
                                           /*optional=*/true)},
                   .geometry = rmsNormGeometry});
  table.push_back(
      {.name = "gemm",
       .inputs = {{"x"}, {"w"}, {"bias", false, "bias"}},
       .outputs = {"out"},
       .constants = {derived("n"), derived("k"), derived("bias", Bool)}});
  table.push_back(
      {.name = "rope",
       .inputs = {{"x"}, index("positions")},
       .outputs = {"out"},
       .constants = with({derived("dim"), attribute("head_dim", Int),
                          attribute("rotary_dim", Int, /*optional=*/true)},
                         ropeConstants()),
       .ropeFrequencies = true,
       .geometry = ropeGeometry});
  table.push_back({.name = "cache_write",
                   .inputs = {{"key"}, {"value"}, index("positions")},
                   .outputs = {},
                   .constants = with(dim, cacheConstants()),
                   .usesCache = true,
                   .pagedCache = true,
                   .geometry = perElementOfRow});
  table.push_back({.name = "attention",
                   .inputs = {{"query"}, index("positions")},
                   .outputs = {"out"},
                   .constants = with(with(heads, {attribute("scale", Float)}),
                                     cacheConstants()),
                   .usesCache = true,
                   .pagedCache = true,
                   .geometry = attentionGeometry});
  table.push_back({.name = "attention_flash",
                   .inputs = {{"query"}, index("positions")},
                   .outputs = {"out"},
                   .constants = with(with(heads, {attribute("scale", Float)}),
                                     cacheConstants()),
                   .usesCache = true,
                   .geometry = attentionFlashGeometry});
  table.push_back(
      {.name = "qkv_rope_cache",
       .inputs = {{"qkv"}, index("positions")},
       .outputs = {"out"},
       .constants = with(with(heads, ropeConstants()), cacheConstants()),
       .usesCache = true,
       .pagedCache = true,
       .ropeFrequencies = true,
       .parts = {"qkv_rope_head"},
       .geometry = qkvGeometry});
  table.push_back(
      {.name = "qkv_norm_rope_cache",
       .inputs = {{"qkv"}, index("positions"), {"q_norm"}, {"k_norm"}},
       .outputs = {"out"},
       .constants = with(
           with(with(heads, ropeConstants()), {attribute("epsilon", Float)}),
           cacheConstants()),
       .usesCache = true,
       .pagedCache = true,
       .ropeFrequencies = true,
       .parts = {"qkv_rope_head"},
       .geometry = qkvGeometry});
  table.push_back({.name = "silu",
                   .inputs = {{"x"}},
                   .outputs = {"out"},
                   .constants = dim,
                   .geometry = perElementOfRow});
  table.push_back({.name = "silu_mul",
                   .inputs = {{"gu"}},
                   .outputs = {"out"},
                   .constants = dim,
                   .geometry = siluMulGeometry});
  table.push_back({.name = "mul",
                   .inputs = {{"a"}, {"b"}},
                   .outputs = {"out"},
                   .constants = dim,
                   .geometry = perElementOfRow});
  table.push_back({.name = "add",
                   .inputs = {{"a"}, {"b"}},
                   .outputs = {"out"},
                   .constants = dim,
                   .geometry = perElementOfRow});
  table.push_back({.name = "take_last",
                   .inputs = {{"x"}},
                   .outputs = {"out"},
                   .constants = dim,
                   .geometry = takeLastGeometry});
  table.push_back(
      {.name = "attention_seq1_partial",
       .inputs = {{"query"}, index("positions")},
       .outputs = {"partials"},
       .constants = with(with(heads, {attribute("scale", Float),
                                      attribute("num_splits", Int)}),
                         cacheConstants()),
       .usesCache = true,
       .pagedCache = true,
       .geometry = seq1PartialGeometry});
  table.push_back(
      {.name = "attention_seq1_reduce",
       .inputs = {{"partials"}},
       .outputs = {"out"},
       .constants = {attribute("num_heads", Int), attribute("head_dim", Int),
                     attribute("num_splits", Int)},
       .geometry = seq1ReduceGeometry});
  table.push_back(
      {.name = "gemv",
       .inputs = {{"x"}, {"w"}, {"bias"}, {"norm"}, {"residual"}},
       .outputs = {"out"},
       .constants = {derived("n"), derived("k"), derived("bias", Bool),
                     derived("norm", Bool), derived("residual", Bool),
                     attribute("gated", Bool),
                     attribute("epsilon", Float, /*optional=*/true)},
       .geometry = gemvGeometry});
  table.push_back({.name = "gemm_rows",
                   .inputs = {{"x"}, {"w"}, {"bias"}},
                   .outputs = {"out"},
                   .constants = {derived("n"), derived("k"),
                                 derived("bias", Bool), derived("row_tiles")},
                   .geometry = gemmRowsGeometry});
  table.push_back({.name = "residual_norm",
                   .inputs = {{"residual"}, {"branch"}, {"weight"}},
                   .outputs = {"sum", "out"},
                   .constants = {derived("dim"), attribute("epsilon", Float)},
                   .geometry = residualNormGeometry});
  return table;
}

const char *kindName(ConstantKind kind) {
  switch (kind) {
  case ConstantKind::Int:
    return "an integer";
  case ConstantKind::Float:
    return "a float";
  case ConstantKind::Bool:
    return "a bool";
  case ConstantKind::Symbol:
    return "a name";
  }
  return "?";
}

} // namespace

/// attention_flash's launch rule, by the grid of a full prefill chunk
/// (kFlashChunkRows rows; prompts are prefilled in chunks of at most that
/// many by default). Four warps of two 16-vector tiles each share every K/V
/// fragment between two tiles, the fastest once the grid fills the GPU.
/// A grid of fewer than about two blocks per SM of an H100 (132 SMs) runs
/// in one wave whose longest blocks (the causal triangle's last rows) set
/// the time; eight warps of one tile each finish a block sooner. Both
/// measured on an H100 (docs/perf.md, 2026-12-07), as was the wgmma path:
/// slower than mma.sync at every tiling, so it is not the rule's.
constexpr int64_t kFlashChunkRows = 2048, kFlashOneWaveBlocks = 2 * 132;

FlashTiling flashLaunchTiling(int64_t heads, int64_t kvHeads) {
  FlashTiling tiling;
  int64_t blockM = tiling.warps * 16 * tiling.mTiles;
  int64_t blocks =
      kvHeads * ((kFlashChunkRows * (heads / kvHeads) + blockM - 1) / blockM);
  if (blocks < kFlashOneWaveBlocks) {
    tiling.warps = 8;
    tiling.mTiles = 1;
  }
  return tiling;
}

/// attention_flash: query vectors of 16 rows per MMA tile, mTiles tiles per
/// warp, `warps` warps, tiles of blockN keys; one block per (KV head, warps *
/// 16 * mTiles vectors). Shared memory: the Q tile and two K and two V
/// tiles, rows padded by 8 elements (16-bit types only).
KernelGeometry flashGeometry(int64_t heads, int64_t kvHeads, int64_t headDim,
                             const FlashTiling &tiling) {
  const int64_t blockM = tiling.warps * 16 * tiling.mTiles;
  KernelGeometry geometry;
  geometry.launch.threads = tiling.warps * 32;
  geometry.launch.blocksX = kvHeads;
  geometry.launch.yItemsPerRow = heads / kvHeads;
  geometry.launch.yItemsPerBlock = blockM;
  geometry.launch.sharedBytes =
      (blockM + 4 * tiling.blockN) * (headDim + 8) * 2;
  geometry.constants.push_back(
      {"kMTiles", tiling.mTiles, "16-vector MMA tiles per warp"});
  geometry.constants.push_back({"kBlockN", tiling.blockN, "keys per K/V tile"});
  geometry.constants.push_back(
      {"kWgmma", int64_t(tiling.wgmma), "warpgroup MMA where sm_90a"});
  return geometry;
}

bool flashAttentionHeadDim(int64_t headDim) {
  return headDim > 0 && headDim % 16 == 0 && headDim <= 128;
}

bool hasKind(const PlanConstant &value, ConstantKind kind) {
  switch (kind) {
  case ConstantKind::Int:
    return std::holds_alternative<int64_t>(value);
  case ConstantKind::Float:
    return std::holds_alternative<double>(value);
  case ConstantKind::Bool:
    return std::holds_alternative<bool>(value);
  case ConstantKind::Symbol:
    return std::holds_alternative<std::string>(value);
  }
  return false;
}

const KernelConstant *KernelTemplate::constant(std::string_view key) const {
  for (const KernelConstant &c : constants)
    if (c.key == key)
      return &c;
  return nullptr;
}

const std::vector<KernelTemplate> &kernelTemplates() {
  static const std::vector<KernelTemplate> table = buildTable();
  return table;
}

const KernelTemplate *findKernelTemplate(std::string_view name) {
  for (const KernelTemplate &kernel : kernelTemplates())
    if (kernel.name == name)
      return &kernel;
  return nullptr;
}

absl::Status invalidStep(const PlanStep &step, const std::string &message) {
  return absl::InvalidArgumentError(absl::StrCat(
      "kernel '", step.templateName, "' (", step.origin, "): ", message));
}

absl::Status checkStep(const KernelTemplate &kernel, const PlanStep &step) {
  for (const KernelConstant &constant : kernel.constants)
    if (!constant.optional && !step.constants.count(constant.key))
      return invalidStep(step,
                         absl::StrCat("missing constant '", constant.key, "' (",
                                      kindName(constant.kind), ")"));
  for (const auto &[key, value] : step.constants) {
    const KernelConstant *constant = kernel.constant(key);
    if (!constant)
      return invalidStep(step, absl::StrCat("unknown constant '", key, "'"));
    if (!hasKind(value, constant->kind))
      return invalidStep(step, absl::StrCat("constant '", key, "' must be ",
                                            kindName(constant->kind)));
  }
  size_t inputs = 0;
  for (const KernelOperand &operand : kernel.inputs)
    inputs += operand.presentWhen.empty() ||
              std::get<bool>(step.constants.at(operand.presentWhen));
  if (step.inputs.size() != inputs ||
      step.outputs.size() != kernel.outputs.size())
    return invalidStep(
        step, absl::StrCat("expects ", inputs, " inputs and ",
                           kernel.outputs.size(), " outputs, the plan has ",
                           step.inputs.size(), " and ", step.outputs.size()));
  return absl::OkStatus();
}

} // namespace treni
