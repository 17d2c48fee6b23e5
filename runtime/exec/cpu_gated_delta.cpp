//===- cpu_gated_delta.cpp - fp32 reference of the Gated DeltaNet block ---===//
//
// Sums and the chunked form's intermediates are double so the reference is
// more accurate than the kernels it checks; what crosses a call boundary
// (outputs, states) is fp32.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/cpu_gated_delta.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/exec/cpu_kernels.h"
#include "support/status.h"

namespace treni::cpu {
namespace {

absl::Status checkSize(const char *function, const char *what, size_t actual,
                       int64_t expected) {
  if (expected < 0 || int64_t(actual) != expected)
    return absl::InvalidArgumentError(absl::StrCat(
        function, ": ", what, " has ", actual, " floats, expected ", expected));
  return absl::OkStatus();
}

absl::Status checkPositive(const char *function, const char *what,
                           int64_t value) {
  if (value <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat(function, ": ", what, " must be positive, got ", value));
  return absl::OkStatus();
}

absl::Status checkTokens(const char *function, int64_t tokens) {
  if (tokens < 0)
    return absl::InvalidArgumentError(
        absl::StrCat(function, ": negative token count ", tokens));
  return absl::OkStatus();
}

absl::Status checkDims(const char *function, const GatedDeltaDims &dims) {
  TRENI_RETURN_IF_ERROR(
      checkPositive(function, "numKeyHeads", dims.numKeyHeads));
  TRENI_RETURN_IF_ERROR(
      checkPositive(function, "numValueHeads", dims.numValueHeads));
  TRENI_RETURN_IF_ERROR(checkPositive(function, "keyHeadDim", dims.keyHeadDim));
  TRENI_RETURN_IF_ERROR(
      checkPositive(function, "valueHeadDim", dims.valueHeadDim));
  if (dims.numValueHeads % dims.numKeyHeads != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(function, ": numValueHeads ", dims.numValueHeads,
                     " is not a multiple of numKeyHeads ", dims.numKeyHeads));
  return absl::OkStatus();
}

/// The operand shapes both forms of the rule share.
absl::Status checkRuleOperands(const char *function, const GatedDeltaDims &dims,
                               int64_t tokens, absl::Span<const float> query,
                               absl::Span<const float> key,
                               absl::Span<const float> value,
                               absl::Span<const float> g,
                               absl::Span<const float> beta,
                               absl::Span<float> state, absl::Span<float> out) {
  TRENI_RETURN_IF_ERROR(checkDims(function, dims));
  TRENI_RETURN_IF_ERROR(checkTokens(function, tokens));
  int64_t keyWidth = dims.numKeyHeads * dims.keyHeadDim;
  int64_t valueWidth = dims.numValueHeads * dims.valueHeadDim;
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "query", query.size(), tokens * keyWidth));
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "key", key.size(), tokens * keyWidth));
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "value", value.size(), tokens * valueWidth));
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "g", g.size(), tokens * dims.numValueHeads));
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "beta", beta.size(), tokens * dims.numValueHeads));
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "state", state.size(),
                dims.numValueHeads * dims.keyHeadDim * dims.valueHeadDim));
  TRENI_RETURN_IF_ERROR(
      checkSize(function, "out", out.size(), tokens * valueWidth));
  return absl::OkStatus();
}

double siluOf(double x) { return x / (1.0 + std::exp(-x)); }

/// torch.nn.functional.softplus with its defaults (beta 1, threshold 20).
double softplusOf(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

/// One head vector of query or key in double: L2-normalised when asked, then
/// multiplied by `scale`.
void prepareHeadVector(const float *x, int64_t dim, bool l2Norm, double scale,
                       double *out) {
  double norm = 1.0;
  if (l2Norm) {
    double sumSquares = 0;
    for (int64_t i = 0; i < dim; ++i)
      sumSquares += double(x[i]) * x[i];
    norm = 1.0 / std::sqrt(sumSquares + kGatedDeltaL2NormEpsilon);
  }
  for (int64_t i = 0; i < dim; ++i)
    out[i] = x[i] * norm * scale;
}

/// The query and key vectors of one key head for tokens [first, first +
/// count), prepared as the rule reads them: [count, keyHeadDim] each.
void prepareQueryKey(const GatedDeltaDims &dims, int64_t keyHead, int64_t first,
                     int64_t count, const float *query, const float *key,
                     bool l2NormQk, double *queryOut, double *keyOut) {
  int64_t keyWidth = dims.numKeyHeads * dims.keyHeadDim;
  double scale = 1.0 / std::sqrt(double(dims.keyHeadDim));
  for (int64_t t = 0; t < count; ++t) {
    int64_t offset = (first + t) * keyWidth + keyHead * dims.keyHeadDim;
    prepareHeadVector(query + offset, dims.keyHeadDim, l2NormQk, scale,
                      queryOut + t * dims.keyHeadDim);
    prepareHeadVector(key + offset, dims.keyHeadDim, l2NormQk, 1.0,
                      keyOut + t * dims.keyHeadDim);
  }
}

double dot(const double *a, const double *b, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += a[i] * b[i];
  return sum;
}

} // namespace

absl::Status causalConv1dSilu(absl::Span<const float> input, int64_t tokens,
                              int64_t channels, absl::Span<const float> weight,
                              int64_t kernelSize, absl::Span<float> state,
                              absl::Span<float> out) {
  const char *fn = "causalConv1dSilu";
  TRENI_RETURN_IF_ERROR(checkTokens(fn, tokens));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "channels", channels));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "kernelSize", kernelSize));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "input", input.size(), tokens * channels));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "weight", weight.size(), channels * kernelSize));
  int64_t history = kernelSize - 1;
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "state", state.size(), channels * history));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "out", out.size(), tokens * channels));

  // Per channel, the carried history followed by this call's inputs: the
  // window of output t is window[t .. t + K).
  std::vector<float> window(history + tokens);
  for (int64_t c = 0; c < channels; ++c) {
    std::copy_n(state.data() + c * history, history, window.data());
    for (int64_t t = 0; t < tokens; ++t)
      window[history + t] = input[t * channels + c];
    const float *w = weight.data() + c * kernelSize;
    for (int64_t t = 0; t < tokens; ++t) {
      double sum = 0;
      for (int64_t j = 0; j < kernelSize; ++j)
        sum += double(w[j]) * window[t + j];
      out[t * channels + c] = float(siluOf(sum));
    }
    std::copy_n(window.data() + tokens, history, state.data() + c * history);
  }
  return absl::OkStatus();
}

absl::Status gatedDeltaGates(absl::Span<const float> a,
                             absl::Span<const float> b, int64_t tokens,
                             int64_t numValueHeads,
                             absl::Span<const float> aLog,
                             absl::Span<const float> dtBias,
                             absl::Span<float> g, absl::Span<float> beta) {
  const char *fn = "gatedDeltaGates";
  TRENI_RETURN_IF_ERROR(checkTokens(fn, tokens));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "numValueHeads", numValueHeads));
  int64_t count = tokens * numValueHeads;
  TRENI_RETURN_IF_ERROR(checkSize(fn, "a", a.size(), count));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "b", b.size(), count));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "A_log", aLog.size(), numValueHeads));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "dt_bias", dtBias.size(), numValueHeads));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "g", g.size(), count));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "beta", beta.size(), count));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < numValueHeads; ++h) {
      int64_t i = t * numValueHeads + h;
      g[i] = float(-std::exp(double(aLog[h])) *
                   softplusOf(double(a[i]) + dtBias[h]));
      beta[i] = float(1.0 / (1.0 + std::exp(-double(b[i]))));
    }
  return absl::OkStatus();
}

absl::Status l2Normalize(absl::Span<const float> x, int64_t rows, int64_t dim,
                         double epsilon, absl::Span<float> out) {
  const char *fn = "l2Normalize";
  TRENI_RETURN_IF_ERROR(checkTokens(fn, rows));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "dim", dim));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "x", x.size(), rows * dim));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "out", out.size(), rows * dim));
  for (int64_t r = 0; r < rows; ++r) {
    const float *in = x.data() + r * dim;
    double sumSquares = 0;
    for (int64_t i = 0; i < dim; ++i)
      sumSquares += double(in[i]) * in[i];
    double inverse = 1.0 / std::sqrt(sumSquares + epsilon);
    for (int64_t i = 0; i < dim; ++i)
      out[r * dim + i] = float(in[i] * inverse);
  }
  return absl::OkStatus();
}

absl::Status gatedDeltaRuleRecurrent(
    const GatedDeltaDims &dims, int64_t tokens, absl::Span<const float> query,
    absl::Span<const float> key, absl::Span<const float> value,
    absl::Span<const float> g, absl::Span<const float> beta, bool l2NormQk,
    absl::Span<float> state, absl::Span<float> out) {
  TRENI_RETURN_IF_ERROR(checkRuleOperands("gatedDeltaRuleRecurrent", dims,
                                          tokens, query, key, value, g, beta,
                                          state, out));
  int64_t dk = dims.keyHeadDim, dv = dims.valueHeadDim;
  int64_t headsPerKey = dims.numValueHeads / dims.numKeyHeads;
  std::vector<double> q(dk), k(dk), s(dk * dv), kvMemory(dv), delta(dv);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < dims.numValueHeads; ++h) {
      int64_t keyHead = h / headsPerKey;
      prepareQueryKey(dims, keyHead, t, 1, query.data(), key.data(), l2NormQk,
                      q.data(), k.data());
      float *headState = state.data() + h * dk * dv;
      const float *v = value.data() + (t * dims.numValueHeads + h) * dv;
      double decay = std::exp(double(g[t * dims.numValueHeads + h]));
      double b = beta[t * dims.numValueHeads + h];

      for (int64_t i = 0; i < dk * dv; ++i)
        s[i] = headState[i] * decay;
      // What the decayed state already predicts for k; only the correction
      // toward v is written back (the delta rule).
      std::fill(kvMemory.begin(), kvMemory.end(), 0.0);
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j)
          kvMemory[j] += s[i * dv + j] * k[i];
      for (int64_t j = 0; j < dv; ++j)
        delta[j] = b * (v[j] - kvMemory[j]);
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j)
          s[i * dv + j] += k[i] * delta[j];

      float *o = out.data() + (t * dims.numValueHeads + h) * dv;
      for (int64_t j = 0; j < dv; ++j) {
        double sum = 0;
        for (int64_t i = 0; i < dk; ++i)
          sum += s[i * dv + j] * q[i];
        o[j] = float(sum);
      }
      for (int64_t i = 0; i < dk * dv; ++i)
        headState[i] = float(s[i]);
    }
  return absl::OkStatus();
}

absl::Status gatedDeltaRuleChunked(
    const GatedDeltaDims &dims, int64_t tokens, absl::Span<const float> query,
    absl::Span<const float> key, absl::Span<const float> value,
    absl::Span<const float> g, absl::Span<const float> beta, bool l2NormQk,
    int64_t chunkSize, absl::Span<float> state, absl::Span<float> out) {
  const char *fn = "gatedDeltaRuleChunked";
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "chunkSize", chunkSize));
  TRENI_RETURN_IF_ERROR(checkRuleOperands(fn, dims, tokens, query, key, value,
                                          g, beta, state, out));
  int64_t dk = dims.keyHeadDim, dv = dims.valueHeadDim;
  int64_t numHeads = dims.numValueHeads;
  int64_t headsPerKey = numHeads / dims.numKeyHeads;
  int64_t maxChunk = std::min(chunkSize, std::max<int64_t>(tokens, 1));

  std::vector<double> s(dk * dv), next(dk * dv);
  std::vector<double> q(maxChunk * dk), k(maxChunk * dk);
  std::vector<double> cumDecay(maxChunk), b(maxChunk);
  std::vector<double> system(maxChunk * maxChunk); // strictly lower A
  std::vector<double> values(maxChunk * dv);       // U0, then U
  std::vector<double> decayedKeys(maxChunk * dk);  // W
  std::vector<double> attention(maxChunk);         // one row's weights

  for (int64_t h = 0; h < numHeads; ++h) {
    int64_t keyHead = h / headsPerKey;
    float *headState = state.data() + h * dk * dv;
    std::copy_n(headState, dk * dv, s.begin());

    for (int64_t first = 0; first < tokens; first += chunkSize) {
      int64_t length = std::min(chunkSize, tokens - first);
      prepareQueryKey(dims, keyHead, first, length, query.data(), key.data(),
                      l2NormQk, q.data(), k.data());
      double cumulative = 0;
      for (int64_t t = 0; t < length; ++t) {
        int64_t gateIndex = (first + t) * numHeads + h;
        cumulative += g[gateIndex];
        cumDecay[t] = cumulative;
        b[t] = beta[gateIndex];
      }

      // A[t][s] = beta_t exp(c_t - c_s) k_t.k_s for s < t: how much the
      // update of token s changes what the state predicts for token t.
      for (int64_t t = 0; t < length; ++t)
        for (int64_t u = 0; u < t; ++u)
          system[t * length + u] = b[t] * std::exp(cumDecay[t] - cumDecay[u]) *
                                   dot(&k[t * dk], &k[u * dk], dk);

      // The UT transform: U0 = (I + A)^-1 (beta v) and W = (I + A)^-1
      // (beta exp(c) k), by forward substitution row after row.
      for (int64_t t = 0; t < length; ++t) {
        const float *v = value.data() + ((first + t) * numHeads + h) * dv;
        double keyScale = b[t] * std::exp(cumDecay[t]);
        for (int64_t j = 0; j < dv; ++j)
          values[t * dv + j] = b[t] * v[j];
        for (int64_t i = 0; i < dk; ++i)
          decayedKeys[t * dk + i] = keyScale * k[t * dk + i];
        for (int64_t u = 0; u < t; ++u) {
          double a = system[t * length + u];
          for (int64_t j = 0; j < dv; ++j)
            values[t * dv + j] -= a * values[u * dv + j];
          for (int64_t i = 0; i < dk; ++i)
            decayedKeys[t * dk + i] -= a * decayedKeys[u * dk + i];
        }
      }
      // U = U0 - W S0: the part of each value the chunk's initial state does
      // not already predict.
      for (int64_t t = 0; t < length; ++t)
        for (int64_t j = 0; j < dv; ++j) {
          double predicted = 0;
          for (int64_t i = 0; i < dk; ++i)
            predicted += decayedKeys[t * dk + i] * s[i * dv + j];
          values[t * dv + j] -= predicted;
        }

      // Outputs: the decayed initial state read by q_t plus the causal
      // intra-chunk attention exp(c_t - c_u) q_t.k_u (u <= t) over U.
      for (int64_t t = 0; t < length; ++t) {
        for (int64_t u = 0; u <= t; ++u)
          attention[u] = std::exp(cumDecay[t] - cumDecay[u]) *
                         dot(&q[t * dk], &k[u * dk], dk);
        float *o = out.data() + ((first + t) * numHeads + h) * dv;
        double stateDecay = std::exp(cumDecay[t]);
        for (int64_t j = 0; j < dv; ++j) {
          double sum = 0;
          for (int64_t i = 0; i < dk; ++i)
            sum += q[t * dk + i] * s[i * dv + j];
          sum *= stateDecay;
          for (int64_t u = 0; u <= t; ++u)
            sum += attention[u] * values[u * dv + j];
          o[j] = float(sum);
        }
      }

      // The state after the chunk.
      double last = cumDecay[length - 1];
      double chunkDecay = std::exp(last);
      for (int64_t u = 0; u < length; ++u)
        attention[u] = std::exp(last - cumDecay[u]);
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j) {
          double sum = chunkDecay * s[i * dv + j];
          for (int64_t u = 0; u < length; ++u)
            sum += attention[u] * k[u * dk + i] * values[u * dv + j];
          next[i * dv + j] = sum;
        }
      s.swap(next);
    }
    for (int64_t i = 0; i < dk * dv; ++i)
      headState[i] = float(s[i]);
  }
  return absl::OkStatus();
}

absl::Status gatedRmsNorm(absl::Span<const float> x, absl::Span<const float> z,
                          int64_t rows, int64_t dim,
                          absl::Span<const float> weight, double epsilon,
                          absl::Span<float> out) {
  const char *fn = "gatedRmsNorm";
  TRENI_RETURN_IF_ERROR(checkTokens(fn, rows));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "dim", dim));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "x", x.size(), rows * dim));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "z", z.size(), rows * dim));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "weight", weight.size(), dim));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "out", out.size(), rows * dim));
  for (int64_t r = 0; r < rows; ++r) {
    const float *in = x.data() + r * dim;
    const float *gate = z.data() + r * dim;
    double sumSquares = 0;
    for (int64_t i = 0; i < dim; ++i)
      sumSquares += double(in[i]) * in[i];
    double inverse = 1.0 / std::sqrt(sumSquares / dim + epsilon);
    // Norm first, then the weight, then the gate: transformers' order.
    for (int64_t i = 0; i < dim; ++i)
      out[r * dim + i] =
          float(weight[i] * (in[i] * inverse) * siluOf(double(gate[i])));
  }
  return absl::OkStatus();
}

absl::Status gatedDeltaNet(const GatedDeltaNetConfig &config,
                           const GatedDeltaNetWeights &weights,
                           absl::Span<const float> hidden, int64_t tokens,
                           absl::Span<float> convState,
                           absl::Span<float> recurrentState,
                           absl::Span<float> out) {
  const char *fn = "gatedDeltaNet";
  const GatedDeltaDims &dims = config.dims;
  // Everything is checked before the states change, so a refused call leaves
  // the sequence where it was.
  TRENI_RETURN_IF_ERROR(checkDims(fn, dims));
  TRENI_RETURN_IF_ERROR(checkTokens(fn, tokens));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "hiddenSize", config.hiddenSize));
  TRENI_RETURN_IF_ERROR(
      checkPositive(fn, "convKernelSize", config.convKernelSize));
  TRENI_RETURN_IF_ERROR(checkPositive(fn, "chunkSize", config.chunkSize));
  int64_t hiddenSize = config.hiddenSize;
  int64_t keyDim = config.keyDim(), valueDim = config.valueDim();
  int64_t convDim = config.convDim(), numHeads = dims.numValueHeads;
  TRENI_RETURN_IF_ERROR(checkSize(fn, "in_proj_qkv", weights.inProjQkv.size(),
                                  convDim * hiddenSize));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "in_proj_z", weights.inProjZ.size(),
                                  valueDim * hiddenSize));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "in_proj_b", weights.inProjB.size(),
                                  numHeads * hiddenSize));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "in_proj_a", weights.inProjA.size(),
                                  numHeads * hiddenSize));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "conv1d", weights.conv1d.size(),
                                  convDim * config.convKernelSize));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "dt_bias", weights.dtBias.size(), numHeads));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "A_log", weights.aLog.size(), numHeads));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "norm", weights.norm.size(), dims.valueHeadDim));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "out_proj", weights.outProj.size(), hiddenSize * valueDim));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "hidden", hidden.size(), tokens * hiddenSize));
  TRENI_RETURN_IF_ERROR(
      checkSize(fn, "convState", convState.size(), config.convStateSize()));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "recurrentState", recurrentState.size(),
                                  config.recurrentStateSize()));
  TRENI_RETURN_IF_ERROR(checkSize(fn, "out", out.size(), tokens * hiddenSize));

  std::vector<float> projected(tokens * convDim), mixed(tokens * convDim);
  std::vector<float> z(tokens * valueDim), a(tokens * numHeads),
      b(tokens * numHeads);
  gemm(hidden.data(), tokens, hiddenSize, weights.inProjQkv.data(), convDim,
       nullptr, projected.data());
  gemm(hidden.data(), tokens, hiddenSize, weights.inProjZ.data(), valueDim,
       nullptr, z.data());
  gemm(hidden.data(), tokens, hiddenSize, weights.inProjB.data(), numHeads,
       nullptr, b.data());
  gemm(hidden.data(), tokens, hiddenSize, weights.inProjA.data(), numHeads,
       nullptr, a.data());
  TRENI_RETURN_IF_ERROR(causalConv1dSilu(projected, tokens, convDim,
                                         weights.conv1d, config.convKernelSize,
                                         convState, absl::MakeSpan(mixed)));

  std::vector<float> q(tokens * keyDim), k(tokens * keyDim),
      v(tokens * valueDim);
  for (int64_t t = 0; t < tokens; ++t) {
    const float *row = mixed.data() + t * convDim;
    std::copy_n(row, keyDim, q.data() + t * keyDim);
    std::copy_n(row + keyDim, keyDim, k.data() + t * keyDim);
    std::copy_n(row + 2 * keyDim, valueDim, v.data() + t * valueDim);
  }
  std::vector<float> g(tokens * numHeads), beta(tokens * numHeads);
  TRENI_RETURN_IF_ERROR(gatedDeltaGates(a, b, tokens, numHeads, weights.aLog,
                                        weights.dtBias, absl::MakeSpan(g),
                                        absl::MakeSpan(beta)));

  std::vector<float> core(tokens * valueDim);
  if (tokens == 1)
    TRENI_RETURN_IF_ERROR(gatedDeltaRuleRecurrent(
        dims, tokens, q, k, v, g, beta, /*l2NormQk=*/true, recurrentState,
        absl::MakeSpan(core)));
  else
    TRENI_RETURN_IF_ERROR(gatedDeltaRuleChunked(
        dims, tokens, q, k, v, g, beta, /*l2NormQk=*/true, config.chunkSize,
        recurrentState, absl::MakeSpan(core)));

  std::vector<float> normed(tokens * valueDim);
  TRENI_RETURN_IF_ERROR(
      gatedRmsNorm(core, z, tokens * numHeads, dims.valueHeadDim, weights.norm,
                   config.rmsNormEpsilon, absl::MakeSpan(normed)));
  gemm(normed.data(), tokens, valueDim, weights.outProj.data(), hiddenSize,
       nullptr, out.data());
  return absl::OkStatus();
}

} // namespace treni::cpu
