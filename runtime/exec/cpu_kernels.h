//===- cpu_kernels.h - fp32 reference kernels -------------------*- C++ -*-===//
//
// Plain loops, one function per kernel template, written for clarity: this is
// the oracle the GPU kernels and every fusion are checked against. Matrices
// are row-major; `rows` is the token count. At the end, the table that runs a
// plan step of each template (codegen/KernelRegistry.h) with these loops.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "codegen/Plan.h"
#include "codegen/Rope.h"
#include "runtime/exec/kv_pages.h"

namespace treni::cpu {

/// out[r] = table[ids[r]] (callers check ids are in range).
void embedding(const int32_t *ids, int64_t rows, const float *table,
               int64_t dim, float *out);

/// Each group of `group` elements of every row: x / sqrt(mean(x^2) + eps) * w,
/// or with `unitOffset` (Qwen3.5) * (1 + w), 1 + w taken in fp32.
void rmsNorm(const float *x, int64_t rows, int64_t dim, const float *weight,
             int64_t group, double epsilon, float *out,
             bool unitOffset = false);

/// out[r][n] = sum_k x[r][k] * w[n][k] (+ bias[n]); `w` is [n, k].
void gemm(const float *x, int64_t rows, int64_t k, const float *w, int64_t n,
          const float *bias, float *out);

// The frequencies live in codegen/Rope.h (CUDA codegen bakes the same values
// into its kernels); these names keep the CPU spelling working.
using treni::Llama3Scaling;
using treni::ropeInverseFrequencies;

/// Rotate-half RoPE of every head of every row (in place allowed). The first
/// rotaryDim = 2 * invFreq.size() elements of each head rotate as pairs
/// (i, i + rotaryDim / 2); the rest (a partial rotary_dim) pass through.
void rope(const float *x, int64_t rows, int64_t dim, int64_t headDim,
          const int32_t *positions, const std::vector<float> &invFreq,
          float *out);

// The kernels that touch a layer's KV cache ([cache rows, numKvHeads *
// headDim] per key and value) find the row of position p of step row r as
// pages.cacheRow(r, p): p itself for the null (contiguous) view, a row of the
// block its table names for a paged one.

/// Copies key/value row r into the cache row of positions[r] (through row r's
/// table).
void cacheWrite(const float *key, const float *value, int64_t rows, int64_t dim,
                const int32_t *positions, float *keyCache, float *valueCache,
                const KvPages &pages);

/// The fused Q|K|V row of treni.qkv_rope_cache: splits each row of `qkv`
/// ([rows, (numHeads + 2 * numKvHeads) * headDim]) into q | k | v, applies
/// rmsNorm per head to q and k when `qNorm`/`kNorm` are given, rope to both,
/// writes k and v with cacheWrite and q to `out` — exactly those kernels.
void qkvRopeCache(const float *qkv, int64_t rows, int64_t numHeads,
                  int64_t numKvHeads, int64_t headDim, const int32_t *positions,
                  const std::vector<float> &invFreq, const float *qNorm,
                  const float *kNorm, double epsilon, float *out,
                  float *keyCache, float *valueCache, const KvPages &pages);

/// Causal GQA attention: query row r attends to its own positions
/// 0..positions[r], read through row r's table, so the rows of one call may
/// belong to different sequences.
void attention(const float *query, int64_t rows, int64_t numHeads,
               int64_t numKvHeads, int64_t headDim, const int32_t *positions,
               const float *keyCache, const float *valueCache,
               const KvPages &pages, double scale, float *out);

/// First position of split `split` when positions 0..length-1 are cut into
/// `numSplits` slices of ceil(length / numSplits) positions (later slices may
/// be empty); split numSplits gives the end. The GPU kernel uses the same rule.
int64_t seq1SplitStart(int64_t length, int64_t numSplits, int64_t split);

/// Step 1 of split-KV attention (attention_seq1), one query vector per row:
/// for each row r, query head h and split s, partials[r][(h * numSplits + s)
/// * (headDim + 2) + ...] = (max score, sum of exp(score - max), sum of
/// exp(score - max) * v[0..headDim)) over the split's positions of
/// 0..positions[r], read through row r's table (so the rows may belong to
/// different sequences); an empty split writes (-inf, 0, 0...).
void attentionSeq1Partial(const float *query, int64_t rows, int64_t numHeads,
                          int64_t numKvHeads, int64_t headDim,
                          const int32_t *positions, const float *keyCache,
                          const float *valueCache, const KvPages &pages,
                          double scale, int64_t numSplits, float *partials);

/// Step 2: combines the splits of every row's heads into out[rows, numHeads *
/// headDim].
void attentionSeq1Reduce(const float *partials, int64_t rows, int64_t numHeads,
                         int64_t headDim, int64_t numSplits, float *out);

void silu(const float *x, int64_t count, float *out);
/// out[r][i] = silu(gu[r][i]) * gu[r][dim + i]; `gu` is [rows, 2 * dim].
void siluMul(const float *gu, int64_t rows, int64_t dim, float *out);

void mul(const float *a, const float *b, int64_t count, float *out);
void add(const float *a, const float *b, int64_t count, float *out);

//===-- Plan steps --------------------------------------------------------===//

/// One plan step as its reference function sees it. The executor fills it
/// after checkStep, so operand counts match the template and its constants
/// are present and typed.
struct StepArgs {
  const PlanStep &step;
  std::vector<const float *> inputs; ///< an index input holds int32 words
  std::vector<int64_t> inputRows;    ///< leading dimension (tokens if dynamic)
  std::vector<float *> outputs;
  /// This layer's caches, [cache rows, numKvHeads * headDim], for a template
  /// that uses them, and how the step's rows address them.
  float *keyCache = nullptr, *valueCache = nullptr;
  KvPages pages;

  const float *in(size_t i) const { return inputs[i]; }
  const int32_t *indices(size_t i) const {
    return reinterpret_cast<const int32_t *>(inputs[i]);
  }
  float *out(size_t i) const { return outputs[i]; }
  int64_t rows(size_t i) const { return inputRows[i]; }
};

/// Runs one step of a template with the loops above.
using StepKernel = absl::Status (*)(const StepArgs &args);

/// The reference function of template `name`, or null.
StepKernel findStepKernel(std::string_view name);
/// The templates that have one (every registry entry must).
std::vector<std::string> stepKernelNames();

} // namespace treni::cpu
