//===- cpu_kernels.cpp - fp32 reference kernels --------------------------===//
//
// Reductions accumulate in double so the reference is more accurate than the
// thing it checks; outputs are fp32.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace treni::cpu {

void embedding(const int32_t *ids, int64_t rows, const float *table,
               int64_t dim, float *out) {
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out + r * dim, table + int64_t(ids[r]) * dim,
                dim * sizeof(float));
}

void rmsNorm(const float *x, int64_t rows, int64_t dim, const float *weight,
             int64_t group, double epsilon, float *out) {
  for (int64_t start = 0; start < rows * dim; start += group) {
    double sumSquares = 0;
    for (int64_t i = 0; i < group; ++i)
      sumSquares += double(x[start + i]) * x[start + i];
    double scale = 1.0 / std::sqrt(sumSquares / group + epsilon);
    for (int64_t i = 0; i < group; ++i)
      out[start + i] = float(x[start + i] * scale * weight[i]);
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
  int64_t half = headDim / 2;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t head = 0; head < dim / headDim; ++head) {
      const float *in = x + r * dim + head * headDim;
      float *o = out + r * dim + head * headDim;
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

void cacheWrite(const float *key, const float *value, int64_t rows,
                int64_t dim, const int32_t *positions, float *keyCache,
                float *valueCache) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(keyCache + int64_t(positions[r]) * dim, key + r * dim,
                dim * sizeof(float));
    std::memcpy(valueCache + int64_t(positions[r]) * dim, value + r * dim,
                dim * sizeof(float));
  }
}

void attention(const float *query, int64_t rows, int64_t numHeads,
               int64_t numKvHeads, int64_t headDim, const int32_t *positions,
               const float *keyCache, const float *valueCache, double scale,
               float *out) {
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
        const float *k = keyCache + t * kvDim + kvHead * headDim;
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
        const float *v = valueCache + t * kvDim + kvHead * headDim;
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
                  int64_t numKvHeads, int64_t headDim,
                  const int32_t *positions, const std::vector<float> &invFreq,
                  const float *qNorm, const float *kNorm, double epsilon,
                  float *out, float *keyCache, float *valueCache) {
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
  cacheWrite(k.data(), v.data(), rows, kvWidth, positions, keyCache,
             valueCache);
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

void attentionSeq1Partial(const float *query, int64_t numHeads,
                          int64_t numKvHeads, int64_t headDim, int64_t position,
                          const float *keyCache, const float *valueCache,
                          double scale, int64_t numSplits, float *partials) {
  int64_t groupSize = numHeads / numKvHeads;
  int64_t kvDim = numKvHeads * headDim;
  int64_t length = position + 1;
  std::vector<double> scores, acc(headDim);
  for (int64_t head = 0; head < numHeads; ++head) {
    const float *q = query + head * headDim;
    int64_t kvHead = head / groupSize;
    for (int64_t split = 0; split < numSplits; ++split) {
      int64_t begin = seq1SplitStart(length, numSplits, split);
      int64_t end = seq1SplitStart(length, numSplits, split + 1);
      double maxScore = -INFINITY;
      scores.assign(end - begin, 0.0);
      for (int64_t t = begin; t < end; ++t) {
        const float *k = keyCache + t * kvDim + kvHead * headDim;
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
        const float *v = valueCache + t * kvDim + kvHead * headDim;
        for (int64_t i = 0; i < headDim; ++i)
          acc[i] += p * v[i];
      }
      float *partial = partials + (head * numSplits + split) * (headDim + 2);
      partial[0] = float(maxScore);
      partial[1] = float(total);
      for (int64_t i = 0; i < headDim; ++i)
        partial[2 + i] = float(acc[i]);
    }
  }
}

void attentionSeq1Reduce(const float *partials, int64_t numHeads,
                         int64_t headDim, int64_t numSplits, float *out) {
  std::vector<double> acc(headDim);
  for (int64_t head = 0; head < numHeads; ++head) {
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

} // namespace treni::cpu
