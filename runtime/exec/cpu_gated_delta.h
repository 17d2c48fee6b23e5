//===- cpu_gated_delta.h - fp32 Gated DeltaNet reference -----*- C++ -*-===//
//
// The linear-attention mixer of Qwen3.5 (issue 18) as plain loops: the causal
// depthwise conv with its carried state, the decay/beta gates, the gated delta
// rule in its recurrent and its chunked (UT-transform) form, the gated RMSNorm
// and, over them, the whole block for one sequence. This is the oracle for
// the GPU kernels and the pieces the CPU executor runs.
//
// Layouts are row-major, token-major, as the projections produce them:
//   query, key [tokens, numKeyHeads, keyHeadDim]
//   value, out [tokens, numValueHeads, valueHeadDim]
//   g, beta    [tokens, numValueHeads]
//   state      [numValueHeads, keyHeadDim, valueHeadDim]   (S[h][i][j])
//   conv state [channels, kernelSize - 1]   (oldest input first)
// Value head h reads key/query head h / (numValueHeads / numKeyHeads): the
// consecutive value heads of a group share one key head, as repeat_interleave
// lays them out in transformers.
//
// Every function checks its spans against the dimensions it is given and
// returns InvalidArgument, touching nothing, when they disagree.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace treni::cpu {

/// The head geometry of one Gated DeltaNet layer.
struct GatedDeltaDims {
  int64_t numKeyHeads = 0;   ///< query and key heads (linear_num_key_heads)
  int64_t numValueHeads = 0; ///< a multiple of numKeyHeads
  int64_t keyHeadDim = 0;    ///< linear_key_head_dim
  int64_t valueHeadDim = 0;  ///< linear_value_head_dim
};

/// The epsilon of the query/key L2 norm inside the rule; it is added to the
/// sum of squares (not the mean): x / sqrt(sum(x^2) + eps).
inline constexpr double kGatedDeltaL2NormEpsilon = 1e-6;

/// Causal depthwise conv1d over one sequence, then SiLU:
///   out[t][c] = silu(sum_{j<K} weight[c][j] * x[t - (K-1) + j][c])
/// where x before the first token of this call is read from `state`
/// ([channels, K-1], column 0 the oldest input). Afterwards `state` holds the
/// last K-1 inputs of the whole stream (state columns included when tokens <
/// K-1), so feeding a sequence in pieces gives bit-identical outputs to
/// feeding it at once. Zeros start a fresh sequence. `input` and `out` are
/// [tokens, channels] and must not overlap; `weight` is [channels, K] (the
/// checkpoint's conv1d.weight [C, 1, K] squeezed); K >= 1. The conv of
/// Qwen3.5 has no bias.
absl::Status causalConv1dSilu(absl::Span<const float> input, int64_t tokens,
                              int64_t channels, absl::Span<const float> weight,
                              int64_t kernelSize, absl::Span<float> state,
                              absl::Span<float> out);

/// Per token and value head, from the projections a and b ([tokens,
/// numValueHeads]) and the per-head A_log and dt_bias ([numValueHeads]):
///   g    = -exp(A_log) * softplus(a + dt_bias)    (log decay, <= 0)
///   beta = sigmoid(b)
/// softplus is torch's: x itself above 20, log(1 + exp(x)) below.
absl::Status gatedDeltaGates(absl::Span<const float> a,
                             absl::Span<const float> b, int64_t tokens,
                             int64_t numValueHeads,
                             absl::Span<const float> aLog,
                             absl::Span<const float> dtBias,
                             absl::Span<float> g, absl::Span<float> beta);

/// Each of `rows` vectors of `dim`: x / sqrt(sum(x^2) + epsilon). In place
/// allowed (out may be x).
absl::Status l2Normalize(absl::Span<const float> x, int64_t rows, int64_t dim,
                         double epsilon, absl::Span<float> out);

/// The gated delta rule token by token. With qk = l2Normalize(q|k) when
/// `l2NormQk` (Qwen3.5 always sets it) and q further scaled by
/// 1/sqrt(keyHeadDim), for each token t and value head h (key head kh):
///   S      = exp(g[t][h]) * S
///   delta  = beta[t][h] * (v[t][h] - S^T k[t][kh])
///   S      = S + k[t][kh] delta^T
///   out[t][h] = S^T q[t][kh]
/// `state` is read as the initial state and left as the final one; it is
/// rounded to fp32 after every token (as transformers keeps it), so calling
/// this on pieces of a sequence gives bit-identical results to one call.
absl::Status gatedDeltaRuleRecurrent(
    const GatedDeltaDims &dims, int64_t tokens, absl::Span<const float> query,
    absl::Span<const float> key, absl::Span<const float> value,
    absl::Span<const float> g, absl::Span<const float> beta, bool l2NormQk,
    absl::Span<float> state, absl::Span<float> out);

/// The same rule in chunks of `chunkSize` tokens (64 in transformers; the
/// last chunk may be shorter, which equals transformers' zero padding). Per
/// chunk of length L with initial state S0 and cumulative log decay
/// c[t] = g[0] + ... + g[t] inside the chunk:
///   A[t][s] = beta[t] exp(c[t] - c[s]) k[t].k[s]   for s < t
///   T       = (I + A)^-1                           (forward substitution)
///   U0      = T (beta v),   W = T (beta exp(c) k)  (the UT transform)
///   U       = U0 - W S0                            (the delta-rule values)
///   out[t]  = exp(c[t]) S0^T q[t] + sum_{s<=t} exp(c[t] - c[s]) (q[t].k[s])
///   U[s] S       = exp(c[L-1]) S0 + sum_s exp(c[L-1] - c[s]) k[s] U[s]^T
/// Equal to gatedDeltaRuleRecurrent up to rounding. Works in double inside a
/// call and writes the fp32 state at its end. chunkSize >= 1.
absl::Status gatedDeltaRuleChunked(
    const GatedDeltaDims &dims, int64_t tokens, absl::Span<const float> query,
    absl::Span<const float> key, absl::Span<const float> value,
    absl::Span<const float> g, absl::Span<const float> beta, bool l2NormQk,
    int64_t chunkSize, absl::Span<float> state, absl::Span<float> out);

/// The block's output norm, each of `rows` vectors of `dim` (rows = tokens *
/// numValueHeads, dim = valueHeadDim) with its gate z of the same shape:
///   out = weight * (x / sqrt(mean(x^2) + epsilon)) * silu(z)
/// The weight multiplies as stored (no 1 + w offset, unlike the decoder's
/// RMSNorm); epsilon is the config's rms_norm_eps. (In bf16, transformers
/// rounds the normalised x to bf16 before the weight; fp32 has no such step.)
absl::Status gatedRmsNorm(absl::Span<const float> x, absl::Span<const float> z,
                          int64_t rows, int64_t dim,
                          absl::Span<const float> weight, double epsilon,
                          absl::Span<float> out);

/// One Gated DeltaNet layer's configuration.
struct GatedDeltaNetConfig {
  int64_t hiddenSize = 0;
  GatedDeltaDims dims;
  int64_t convKernelSize = 4; ///< linear_conv_kernel_dim
  double rmsNormEpsilon = 1e-6;
  int64_t chunkSize = 64;

  int64_t keyDim() const { return dims.numKeyHeads * dims.keyHeadDim; }
  int64_t valueDim() const { return dims.numValueHeads * dims.valueHeadDim; }
  /// Channels of the conv (and of in_proj_qkv's output): q | k | v.
  int64_t convDim() const { return 2 * keyDim() + valueDim(); }
  /// Floats of the carried conv state: [convDim, convKernelSize - 1].
  int64_t convStateSize() const { return convDim() * (convKernelSize - 1); }
  /// Floats of the recurrent state: [numValueHeads, keyHeadDim, valueHeadDim].
  int64_t recurrentStateSize() const {
    return dims.numValueHeads * dims.keyHeadDim * dims.valueHeadDim;
  }
};

/// A layer's weights as the checkpoint names them (linear_attn.*), fp32,
/// every matrix [out, in].
struct GatedDeltaNetWeights {
  absl::Span<const float> inProjQkv; ///< [convDim, hiddenSize]
  absl::Span<const float> inProjZ;   ///< [valueDim, hiddenSize]
  absl::Span<const float> inProjB;   ///< [numValueHeads, hiddenSize]
  absl::Span<const float> inProjA;   ///< [numValueHeads, hiddenSize]
  absl::Span<const float> conv1d;    ///< [convDim, convKernelSize]
  absl::Span<const float> dtBias;    ///< [numValueHeads]
  absl::Span<const float> aLog;      ///< [numValueHeads] (A_log)
  absl::Span<const float> norm;      ///< [valueHeadDim]
  absl::Span<const float> outProj;   ///< [hiddenSize, valueDim]
};

/// The whole mixer for `tokens` tokens of one sequence ([tokens, hiddenSize]
/// in and out; the decoder's input norm and residual are the caller's):
/// in_proj_qkv -> causal conv + SiLU -> split q | k | v; gates from in_proj_a
/// and in_proj_b; the gated delta rule with L2-normalised q and k (the
/// recurrent form for a single token, the chunked form otherwise, as
/// transformers picks); gated RMSNorm with z = in_proj_z; out_proj. The conv
/// and recurrent states (sizes from the config; zeros for a fresh sequence)
/// carry the sequence from one call to the next.
absl::Status gatedDeltaNet(const GatedDeltaNetConfig &config,
                           const GatedDeltaNetWeights &weights,
                           absl::Span<const float> hidden, int64_t tokens,
                           absl::Span<float> convState,
                           absl::Span<float> recurrentState,
                           absl::Span<float> out);

} // namespace treni::cpu
