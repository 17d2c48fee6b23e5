//===- cpu_kernels.cpp - fp32 reference kernels --------------------------===//
//
// Reductions accumulate in double so the reference is more accurate than the
// thing it checks; outputs are fp32.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/cpu_kernels.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "codegen/KernelRegistry.h"
#include "support/status.h"

namespace treni::cpu {

void embedding(const int32_t *ids, int64_t rows, const float *table,
               int64_t dim, float *out) {
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out + r * dim, table + int64_t(ids[r]) * dim,
                dim * sizeof(float));
}

void rmsNorm(const float *x, int64_t rows, int64_t dim, const float *weight,
             int64_t group, double epsilon, float *out, bool unitOffset) {
  for (int64_t start = 0; start < rows * dim; start += group) {
    double sumSquares = 0;
    for (int64_t i = 0; i < group; ++i)
      sumSquares += double(x[start + i]) * x[start + i];
    double scale = 1.0 / std::sqrt(sumSquares / group + epsilon);
    for (int64_t i = 0; i < group; ++i) {
      float w = unitOffset ? 1.0f + weight[i] : weight[i];
      out[start + i] = float(x[start + i] * scale * w);
    }
  }
}

void gemm(const float *x, int64_t rows, int64_t k, const float *w, int64_t n,
          const float *bias, float *out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float *xRow = x + r * k;
      const float *wRow = w + j * k;
      double sum = bias ? bias[j] : 0.0;
      for (int64_t i = 0; i < k; ++i)
        sum += double(xRow[i]) * wRow[i];
      out[r * n + j] = float(sum);
    }
}

void rope(const float *x, int64_t rows, int64_t dim, int64_t headDim,
          const int32_t *positions, const std::vector<float> &invFreq,
          float *out) {
  int64_t half = int64_t(invFreq.size()), rotaryDim = 2 * half;
  assert(rotaryDim <= headDim && "more frequencies than pairs in a head");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t head = 0; head < dim / headDim; ++head) {
      const float *in = x + r * dim + head * headDim;
      float *o = out + r * dim + head * headDim;
      if (o != in)
        std::copy(in + rotaryDim, in + headDim, o + rotaryDim);
      for (int64_t i = 0; i < half; ++i) {
        // fp32 angle, as transformers computes it.
        float angle = float(positions[r]) * invFreq[i];
        double c = std::cos(angle), s = std::sin(angle);
        float a = in[i], b = in[i + half];
        o[i] = float(a * c - b * s);
        o[i + half] = float(b * c + a * s);
      }
    }
}

void cacheWrite(const float *key, const float *value, int64_t rows, int64_t dim,
                const int32_t *positions, float *keyCache, float *valueCache,
                const KvPages &pages) {
  for (int64_t r = 0; r < rows; ++r) {
    int64_t cacheRow = pages.cacheRow(r, positions[r]);
    std::memcpy(keyCache + cacheRow * dim, key + r * dim, dim * sizeof(float));
    std::memcpy(valueCache + cacheRow * dim, value + r * dim,
                dim * sizeof(float));
  }
}

void attention(const float *query, int64_t rows, int64_t numHeads,
               int64_t numKvHeads, int64_t headDim, const int32_t *positions,
               const float *keyCache, const float *valueCache,
               const KvPages &pages, double scale, float *out) {
  int64_t groupSize = numHeads / numKvHeads;
  int64_t kvDim = numKvHeads * headDim;
  std::vector<double> scores;
  std::vector<double> acc(headDim);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t length = int64_t(positions[r]) + 1;
    scores.resize(length);
    for (int64_t head = 0; head < numHeads; ++head) {
      const float *q = query + r * numHeads * headDim + head * headDim;
      int64_t kvHead = head / groupSize;
      double maxScore = -INFINITY;
      for (int64_t t = 0; t < length; ++t) {
        const float *k =
            keyCache + pages.cacheRow(r, t) * kvDim + kvHead * headDim;
        double dot = 0;
        for (int64_t i = 0; i < headDim; ++i)
          dot += double(q[i]) * k[i];
        scores[t] = dot * scale;
        maxScore = std::max(maxScore, scores[t]);
      }
      double total = 0;
      for (double &s : scores) {
        s = std::exp(s - maxScore);
        total += s;
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = 0; t < length; ++t) {
        const float *v =
            valueCache + pages.cacheRow(r, t) * kvDim + kvHead * headDim;
        for (int64_t i = 0; i < headDim; ++i)
          acc[i] += scores[t] * v[i];
      }
      float *o = out + r * numHeads * headDim + head * headDim;
      for (int64_t i = 0; i < headDim; ++i)
        o[i] = float(acc[i] / total);
    }
  }
}

void silu(const float *x, int64_t count, float *out) {
  for (int64_t i = 0; i < count; ++i)
    out[i] = float(x[i] / (1.0 + std::exp(-double(x[i]))));
}

void qkvRopeCache(const float *qkv, int64_t rows, int64_t numHeads,
                  int64_t numKvHeads, int64_t headDim, const int32_t *positions,
                  const std::vector<float> &invFreq, const float *qNorm,
                  const float *kNorm, double epsilon, float *out,
                  float *keyCache, float *valueCache, const KvPages &pages) {
  int64_t qWidth = numHeads * headDim, kvWidth = numKvHeads * headDim;
  int64_t rowWidth = qWidth + 2 * kvWidth;
  std::vector<float> q(rows * qWidth), k(rows * kvWidth), v(rows * kvWidth);
  for (int64_t r = 0; r < rows; ++r) {
    const float *in = qkv + r * rowWidth;
    std::copy_n(in, qWidth, q.data() + r * qWidth);
    std::copy_n(in + qWidth, kvWidth, k.data() + r * kvWidth);
    std::copy_n(in + qWidth + kvWidth, kvWidth, v.data() + r * kvWidth);
  }
  if (qNorm && kNorm) {
    rmsNorm(q.data(), rows, qWidth, qNorm, headDim, epsilon, q.data());
    rmsNorm(k.data(), rows, kvWidth, kNorm, headDim, epsilon, k.data());
  }
  rope(q.data(), rows, qWidth, headDim, positions, invFreq, out);
  rope(k.data(), rows, kvWidth, headDim, positions, invFreq, k.data());
  cacheWrite(k.data(), v.data(), rows, kvWidth, positions, keyCache, valueCache,
             pages);
}

void siluMul(const float *gu, int64_t rows, int64_t dim, float *out) {
  // Exactly silu() then mul(): the fused kernel must not change the oracle.
  for (int64_t r = 0; r < rows; ++r) {
    const float *gate = gu + r * 2 * dim;
    const float *up = gate + dim;
    for (int64_t i = 0; i < dim; ++i) {
      float activated = float(gate[i] / (1.0 + std::exp(-double(gate[i]))));
      out[r * dim + i] = activated * up[i];
    }
  }
}

void mul(const float *a, const float *b, int64_t count, float *out) {
  for (int64_t i = 0; i < count; ++i)
    out[i] = a[i] * b[i];
}

void add(const float *a, const float *b, int64_t count, float *out) {
  for (int64_t i = 0; i < count; ++i)
    out[i] = a[i] + b[i];
}

int64_t seq1SplitStart(int64_t length, int64_t numSplits, int64_t split) {
  int64_t chunk = (length + numSplits - 1) / numSplits;
  return std::min(length, split * chunk);
}

void attentionSeq1Partial(const float *query, int64_t rows, int64_t numHeads,
                          int64_t numKvHeads, int64_t headDim,
                          const int32_t *positions, const float *keyCache,
                          const float *valueCache, const KvPages &pages,
                          double scale, int64_t numSplits, float *partials) {
  int64_t groupSize = numHeads / numKvHeads;
  int64_t kvDim = numKvHeads * headDim;
  int64_t stride = headDim + 2;
  std::vector<double> scores, acc(headDim);
  for (int64_t row = 0; row < rows; ++row) {
    int64_t length = int64_t(positions[row]) + 1;
    for (int64_t head = 0; head < numHeads; ++head) {
      const float *q = query + (row * numHeads + head) * headDim;
      int64_t kvHead = head / groupSize;
      for (int64_t split = 0; split < numSplits; ++split) {
        int64_t begin = seq1SplitStart(length, numSplits, split);
        int64_t end = seq1SplitStart(length, numSplits, split + 1);
        double maxScore = -INFINITY;
        scores.assign(end - begin, 0.0);
        for (int64_t t = begin; t < end; ++t) {
          const float *k =
              keyCache + pages.cacheRow(row, t) * kvDim + kvHead * headDim;
          double dot = 0;
          for (int64_t i = 0; i < headDim; ++i)
            dot += double(q[i]) * k[i];
          scores[t - begin] = dot * scale;
          maxScore = std::max(maxScore, scores[t - begin]);
        }
        double total = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t t = begin; t < end; ++t) {
          double p = std::exp(scores[t - begin] - maxScore);
          total += p;
          const float *v =
              valueCache + pages.cacheRow(row, t) * kvDim + kvHead * headDim;
          for (int64_t i = 0; i < headDim; ++i)
            acc[i] += p * v[i];
        }
        float *partial =
            partials + ((row * numHeads + head) * numSplits + split) * stride;
        partial[0] = float(maxScore);
        partial[1] = float(total);
        for (int64_t i = 0; i < headDim; ++i)
          partial[2 + i] = float(acc[i]);
      }
    }
  }
}

void attentionSeq1Reduce(const float *partials, int64_t rows, int64_t numHeads,
                         int64_t headDim, int64_t numSplits, float *out) {
  std::vector<double> acc(headDim);
  for (int64_t head = 0; head < rows * numHeads; ++head) {
    const float *first = partials + head * numSplits * (headDim + 2);
    double maxScore = -INFINITY;
    for (int64_t split = 0; split < numSplits; ++split)
      maxScore = std::max(maxScore, double(first[split * (headDim + 2)]));
    double total = 0;
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t split = 0; split < numSplits; ++split) {
      const float *partial = first + split * (headDim + 2);
      if (partial[1] == 0.0f) // empty split
        continue;
      double weight = std::exp(double(partial[0]) - maxScore);
      total += weight * partial[1];
      for (int64_t i = 0; i < headDim; ++i)
        acc[i] += weight * partial[2 + i];
    }
    for (int64_t i = 0; i < headDim; ++i)
      out[head * headDim + i] = float(acc[i] / total);
  }
}

//===-- Plan steps --------------------------------------------------------===//

namespace {

absl::Status embeddingStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  embedding(s.indices(0), s.rows(0), s.in(1), dim, s.out(0));
  return absl::OkStatus();
}

absl::Status rmsNormStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  TRENI_ASSIGN_OR_RETURN(int64_t group, s.step.intConstant("group"));
  TRENI_ASSIGN_OR_RETURN(double epsilon, s.step.floatConstant("epsilon"));
  bool unitOffset = false;
  if (s.step.constants.count("unit_offset")) {
    TRENI_ASSIGN_OR_RETURN(unitOffset, s.step.boolConstant("unit_offset"));
  }
  rmsNorm(s.in(0), s.rows(0), dim, s.in(1), group, epsilon, s.out(0),
          unitOffset);
  return absl::OkStatus();
}

absl::Status gemmStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(bool bias, s.step.boolConstant("bias"));
  TRENI_ASSIGN_OR_RETURN(int64_t n, s.step.intConstant("n"));
  TRENI_ASSIGN_OR_RETURN(int64_t k, s.step.intConstant("k"));
  gemm(s.in(0), s.rows(0), k, s.in(1), n, bias ? s.in(2) : nullptr, s.out(0));
  return absl::OkStatus();
}

/// treni.matvec: the reference is the unfused composition, so CPU logits are
/// identical with and without treni-fuse-matvec.
absl::Status gemvStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t n, s.step.intConstant("n"));
  TRENI_ASSIGN_OR_RETURN(int64_t k, s.step.intConstant("k"));
  TRENI_ASSIGN_OR_RETURN(bool bias, s.step.boolConstant("bias"));
  TRENI_ASSIGN_OR_RETURN(bool gated, s.step.boolConstant("gated"));
  TRENI_ASSIGN_OR_RETURN(bool norm, s.step.boolConstant("norm"));
  TRENI_ASSIGN_OR_RETURN(bool residual, s.step.boolConstant("residual"));
  if (s.rows(0) != 1 || (gated && (n % 2 != 0 || residual)))
    return invalidStep(s.step,
                       "one row, and gated needs an even n and no residual");
  const float *x = s.in(0);
  std::vector<float> normed, y;
  if (norm) {
    TRENI_ASSIGN_OR_RETURN(double epsilon, s.step.floatConstant("epsilon"));
    normed.resize(k);
    rmsNorm(x, 1, k, s.in(3), k, epsilon, normed.data());
    x = normed.data();
  }
  bool epilogue = gated || residual;
  if (epilogue)
    y.resize(n);
  float *out = epilogue ? y.data() : s.out(0);
  gemm(x, 1, k, s.in(1), n, bias ? s.in(2) : nullptr, out);
  if (gated)
    siluMul(y.data(), 1, n / 2, s.out(0));
  else if (residual)
    add(s.in(4), y.data(), n, s.out(0));
  return absl::OkStatus();
}

absl::Status ropeStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, s.step.intConstant("head_dim"));
  if (headDim <= 0 || headDim % 2 != 0 || dim % headDim != 0)
    return invalidStep(s.step, "head_dim must be even and divide dim");
  TRENI_ASSIGN_OR_RETURN(int64_t rotaryDim, ropeRotaryDim(s.step, headDim));
  TRENI_ASSIGN_OR_RETURN(auto invFreq,
                         ropeInverseFrequencies(s.step, rotaryDim));
  rope(s.in(0), s.rows(0), dim, headDim, s.indices(1), invFreq, s.out(0));
  return absl::OkStatus();
}

absl::Status cacheWriteStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  cacheWrite(s.in(0), s.in(1), s.rows(0), dim, s.indices(2), s.keyCache,
             s.valueCache, s.pages);
  return absl::OkStatus();
}

/// num_heads, num_kv_heads and head_dim of an attention-like step.
struct Heads {
  int64_t heads, kvHeads, headDim;
};
absl::StatusOr<Heads> headsOf(const PlanStep &step) {
  Heads h;
  TRENI_ASSIGN_OR_RETURN(h.heads, step.intConstant("num_heads"));
  TRENI_ASSIGN_OR_RETURN(h.kvHeads, step.intConstant("num_kv_heads"));
  TRENI_ASSIGN_OR_RETURN(h.headDim, step.intConstant("head_dim"));
  return h;
}

/// qkv_rope_cache, and with the q/k norm weights (inputs 2 and 3)
/// qkv_norm_rope_cache.
absl::Status qkvRopeCacheStep(const StepArgs &s, bool norm) {
  TRENI_ASSIGN_OR_RETURN(Heads h, headsOf(s.step));
  double epsilon = 0;
  if (norm) {
    TRENI_ASSIGN_OR_RETURN(epsilon, s.step.floatConstant("epsilon"));
  }
  TRENI_ASSIGN_OR_RETURN(auto invFreq,
                         ropeInverseFrequencies(s.step, h.headDim));
  qkvRopeCache(s.in(0), s.rows(0), h.heads, h.kvHeads, h.headDim, s.indices(1),
               invFreq, norm ? s.in(2) : nullptr, norm ? s.in(3) : nullptr,
               epsilon, s.out(0), s.keyCache, s.valueCache, s.pages);
  return absl::OkStatus();
}

absl::Status attentionStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(Heads h, headsOf(s.step));
  TRENI_ASSIGN_OR_RETURN(double scale, s.step.floatConstant("scale"));
  attention(s.in(0), s.rows(0), h.heads, h.kvHeads, h.headDim, s.indices(1),
            s.keyCache, s.valueCache, s.pages, scale, s.out(0));
  return absl::OkStatus();
}

absl::Status attentionSeq1PartialStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(Heads h, headsOf(s.step));
  TRENI_ASSIGN_OR_RETURN(int64_t splits, s.step.intConstant("num_splits"));
  TRENI_ASSIGN_OR_RETURN(double scale, s.step.floatConstant("scale"));
  attentionSeq1Partial(s.in(0), s.rows(0), h.heads, h.kvHeads, h.headDim,
                       s.indices(1), s.keyCache, s.valueCache, s.pages, scale,
                       splits, s.out(0));
  return absl::OkStatus();
}

absl::Status attentionSeq1ReduceStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t heads, s.step.intConstant("num_heads"));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, s.step.intConstant("head_dim"));
  TRENI_ASSIGN_OR_RETURN(int64_t splits, s.step.intConstant("num_splits"));
  attentionSeq1Reduce(s.in(0), s.rows(0), heads, headDim, splits, s.out(0));
  return absl::OkStatus();
}

absl::Status siluStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  silu(s.in(0), s.rows(0) * dim, s.out(0));
  return absl::OkStatus();
}

absl::Status siluMulStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  siluMul(s.in(0), s.rows(0), dim, s.out(0));
  return absl::OkStatus();
}

/// mul and add.
template <void (*kOp)(const float *, const float *, int64_t, float *)>
absl::Status elementwiseStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  kOp(s.in(0), s.in(1), s.rows(0) * dim, s.out(0));
  return absl::OkStatus();
}

/// The fused kernel's reference is the unfused composition, so CPU logits are
/// bit-identical with and without treni-fuse-residual-norm.
absl::Status residualNormStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  TRENI_ASSIGN_OR_RETURN(double epsilon, s.step.floatConstant("epsilon"));
  add(s.in(0), s.in(1), s.rows(0) * dim, s.out(0));
  rmsNorm(s.out(0), s.rows(0), dim, s.in(2), dim, epsilon, s.out(1));
  return absl::OkStatus();
}

absl::Status takeLastStep(const StepArgs &s) {
  TRENI_ASSIGN_OR_RETURN(int64_t dim, s.step.intConstant("dim"));
  std::copy_n(s.in(0) + (s.rows(0) - 1) * dim, dim, s.out(0));
  return absl::OkStatus();
}

struct NamedStepKernel {
  std::string_view name;
  StepKernel run;
};

constexpr NamedStepKernel kStepKernels[] = {
    {"embedding", embeddingStep},
    {"rms_norm", rmsNormStep},
    {"gemm", gemmStep},
    {"gemm_rows", gemmStep}, // gemm's contract for a few rows (unread bias)
    {"gemv", gemvStep},
    {"rope", ropeStep},
    {"cache_write", cacheWriteStep},
    {"qkv_rope_cache",
     [](const StepArgs &s) { return qkvRopeCacheStep(s, false); }},
    {"qkv_norm_rope_cache",
     [](const StepArgs &s) { return qkvRopeCacheStep(s, true); }},
    {"attention", attentionStep},
    {"attention_flash", attentionStep}, // same contract, same reference
    {"attention_seq1_partial", attentionSeq1PartialStep},
    {"attention_seq1_reduce", attentionSeq1ReduceStep},
    {"silu", siluStep},
    {"silu_mul", siluMulStep},
    {"mul", elementwiseStep<mul>},
    {"add", elementwiseStep<add>},
    {"residual_norm", residualNormStep},
    {"take_last", takeLastStep},
};

} // namespace

StepKernel findStepKernel(std::string_view name) {
  for (const NamedStepKernel &kernel : kStepKernels)
    if (kernel.name == name)
      return kernel.run;
  return nullptr;
}

std::vector<std::string> stepKernelNames() {
  std::vector<std::string> names;
  for (const NamedStepKernel &kernel : kStepKernels)
    names.emplace_back(kernel.name);
  return names;
}

} // namespace treni::cpu
