//===- cpu_gated_delta_test.cpp - Gated DeltaNet on checked cases --------===//

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "runtime/exec/cpu_gated_delta.h"
#include "runtime/exec/cpu_kernels.h"
#include "gtest/gtest.h"

namespace treni::cpu {
namespace {

using Floats = std::vector<float>;

double silu(double x) { return x / (1.0 + std::exp(-x)); }

Floats randomFloats(std::mt19937 &rng, size_t count, float low, float high) {
  std::uniform_real_distribution<float> dist(low, high);
  Floats out(count);
  for (float &x : out)
    x = dist(rng);
  return out;
}

/// Largest |a - b| over the largest |b| (at least 1): a relative error that
/// small elements do not blow up.
double relativeError(const Floats &a, const Floats &b) {
  EXPECT_EQ(a.size(), b.size());
  double maxDiff = 0, maxRef = 1;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    maxDiff = std::max(maxDiff, std::fabs(double(a[i]) - b[i]));
    maxRef = std::max(maxRef, std::fabs(double(b[i])));
  }
  return maxDiff / maxRef;
}

/// Copies rows [first, first + count) of a [rows, width] buffer.
Floats rowsOf(const Floats &x, int64_t width, int64_t first, int64_t count) {
  return Floats(x.begin() + first * width, x.begin() + (first + count) * width);
}

void append(Floats &to, const Floats &from) {
  to.insert(to.end(), from.begin(), from.end());
}

//===-- Conv --------------------------------------------------------------===//

// Tests that the conv reads the carried inputs oldest first, puts the last
// tap on the current token and keeps the last K-1 inputs.
TEST(CpuGatedDeltaTest, ConvHandComputed) {
  Floats weight = {1, 2, 3}; // one channel, K = 3
  Floats state = {4, 5};     // the two inputs before this call
  Floats input = {6, 7};
  Floats out(2);
  ASSERT_TRUE(causalConv1dSilu(input, 2, 1, weight, 3, absl::MakeSpan(state),
                               absl::MakeSpan(out))
                  .ok());
  EXPECT_NEAR(out[0], silu(1 * 4 + 2 * 5 + 3 * 6), 1e-5);
  EXPECT_NEAR(out[1], silu(1 * 5 + 2 * 6 + 3 * 7), 1e-5);
  EXPECT_EQ(state, (Floats{6, 7}));

  // A single decode step shifts one input in.
  Floats one = {-1};
  Floats step(1);
  ASSERT_TRUE(causalConv1dSilu(one, 1, 1, weight, 3, absl::MakeSpan(state),
                               absl::MakeSpan(step))
                  .ok());
  EXPECT_NEAR(step[0], silu(1 * 6 + 2 * 7 + 3 * -1), 1e-6);
  EXPECT_EQ(state, (Floats{7, -1}));
}

// Tests that a fresh (zero) state is the zero-padded causal conv, per
// channel, with channels interleaved in the rows.
TEST(CpuGatedDeltaTest, ConvFreshStateIsZeroPadded) {
  std::mt19937 rng(7);
  int64_t tokens = 6, channels = 3, kernel = 4;
  Floats input = randomFloats(rng, tokens * channels, -1, 1);
  Floats weight = randomFloats(rng, channels * kernel, -1, 1);
  Floats state(channels * (kernel - 1), 0.0f);
  Floats out(tokens * channels);
  ASSERT_TRUE(causalConv1dSilu(input, tokens, channels, weight, kernel,
                               absl::MakeSpan(state), absl::MakeSpan(out))
                  .ok());
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t t = 0; t < tokens; ++t) {
      double sum = 0;
      // The last tap weighs token t itself, the one before it t - 1, ...
      for (int64_t back = 0; back < kernel; ++back)
        if (t - back >= 0)
          sum += double(weight[c * kernel + kernel - 1 - back]) *
                 input[(t - back) * channels + c];
      EXPECT_NEAR(out[t * channels + c], silu(sum), 1e-6) << t << "," << c;
    }
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < kernel - 1; ++j)
      EXPECT_EQ(state[c * (kernel - 1) + j],
                input[(tokens - (kernel - 1) + j) * channels + c]);
}

// Tests that prefill pieces (some shorter than K-1) and decode steps give
// bit-identical outputs and state to one pass.
TEST(CpuGatedDeltaTest, ConvWholeEqualsPieces) {
  std::mt19937 rng(11);
  int64_t tokens = 12, channels = 5, kernel = 4;
  Floats input = randomFloats(rng, tokens * channels, -2, 2);
  Floats weight = randomFloats(rng, channels * kernel, -1, 1);
  Floats start = randomFloats(rng, channels * (kernel - 1), -1, 1);

  Floats wholeState = start, whole(tokens * channels);
  ASSERT_TRUE(causalConv1dSilu(input, tokens, channels, weight, kernel,
                               absl::MakeSpan(wholeState),
                               absl::MakeSpan(whole))
                  .ok());

  Floats pieceState = start, pieces;
  int64_t first = 0;
  for (int64_t length : {3, 1, 2, 0, 4, 1, 1}) {
    Floats part = rowsOf(input, channels, first, length);
    Floats out(length * channels);
    ASSERT_TRUE(causalConv1dSilu(part, length, channels, weight, kernel,
                                 absl::MakeSpan(pieceState),
                                 absl::MakeSpan(out))
                    .ok());
    append(pieces, out);
    first += length;
  }
  ASSERT_EQ(first, tokens);
  EXPECT_EQ(pieces, whole);
  EXPECT_EQ(pieceState, wholeState);
}

// Tests that kernel size 1 (no history) works with an empty state.
TEST(CpuGatedDeltaTest, ConvKernelOneHasEmptyState) {
  Floats weight = {2, -1};
  Floats input = {1, 3};
  Floats out(2);
  ASSERT_TRUE(causalConv1dSilu(input, 1, 2, weight, 1, absl::Span<float>(),
                               absl::MakeSpan(out))
                  .ok());
  EXPECT_NEAR(out[0], silu(2), 1e-6);
  EXPECT_NEAR(out[1], silu(-3), 1e-6);
}

//===-- Gates and norms ---------------------------------------------------===//

// Tests g = -exp(A_log) * softplus(a + dt_bias) and beta = sigmoid(b),
// including softplus's linear branch above 20.
TEST(CpuGatedDeltaTest, GatesHandComputed) {
  Floats a = {0, 1, 30, -2}; // two tokens, two heads
  Floats b = {0, 2, -1, 0};
  Floats aLog = {0, std::log(3.0f)};
  Floats dtBias = {0, 0.5f};
  Floats g(4), beta(4);
  ASSERT_TRUE(gatedDeltaGates(a, b, 2, 2, aLog, dtBias, absl::MakeSpan(g),
                              absl::MakeSpan(beta))
                  .ok());
  EXPECT_NEAR(g[0], -std::log(2.0), 1e-6);
  EXPECT_NEAR(g[1], -3 * std::log1p(std::exp(1.5)), 1e-5);
  EXPECT_NEAR(g[2], -30.0, 1e-5); // softplus(30) = 30 exactly
  EXPECT_NEAR(g[3], -3 * std::log1p(std::exp(-1.5)), 1e-5);
  EXPECT_NEAR(beta[0], 0.5, 1e-7);
  EXPECT_NEAR(beta[1], 1 / (1 + std::exp(-2.0)), 1e-6);
  EXPECT_NEAR(beta[2], 1 / (1 + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(beta[3], 0.5, 1e-7);
  for (float x : g)
    EXPECT_LE(x, 0.0f);
}

// Tests that the epsilon is added to the sum of squares, not the mean.
TEST(CpuGatedDeltaTest, L2NormalizeAddsEpsilonToTheSum) {
  Floats x = {3, 4, 0, 2};
  Floats out(4);
  ASSERT_TRUE(l2Normalize(x, 2, 2, 0.0, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[0], 0.6, 1e-7);
  EXPECT_NEAR(out[1], 0.8, 1e-7);
  EXPECT_NEAR(out[3], 1.0, 1e-7);
  ASSERT_TRUE(l2Normalize(x, 2, 2, 11.0, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[0], 0.5, 1e-7); // 3 / sqrt(25 + 11)
  EXPECT_NEAR(out[3], 2 / std::sqrt(15.0), 1e-7);
  // In place.
  ASSERT_TRUE(l2Normalize(x, 2, 2, 0.0, absl::MakeSpan(x)).ok());
  EXPECT_NEAR(x[1], 0.8, 1e-7);
}

// Tests weight * rmsnorm(x) * silu(z) per row, eps inside the mean.
TEST(CpuGatedDeltaTest, GatedRmsNormHandComputed) {
  Floats x = {3, 4, 1, -1};
  Floats z = {0, 1, 2, -3};
  Floats weight = {1, 2};
  Floats out(4);
  ASSERT_TRUE(gatedRmsNorm(x, z, 2, 2, weight, 0.0, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[0], 0.0, 1e-7); // silu(0) = 0
  EXPECT_NEAR(out[1], 2 * 4 / std::sqrt(12.5) * silu(1), 1e-6);
  EXPECT_NEAR(out[2], 1 * 1 * silu(2), 1e-6); // mean square 1
  EXPECT_NEAR(out[3], 2 * -1 * silu(-3), 1e-6);
  ASSERT_TRUE(gatedRmsNorm(x, z, 2, 2, weight, 3.0, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[2], 1 / std::sqrt(1 + 3.0) * silu(2), 1e-6);
}

//===-- The rule ----------------------------------------------------------===//

/// A naive recurrent rule written from the math, independent of the library:
/// q and k are first expanded to one copy per value head (repeat_interleave),
/// every head then runs S <- g S; S <- S + beta k (v - (g S)^T k)^T.
void naiveRule(const GatedDeltaDims &d, int64_t tokens, const Floats &query,
               const Floats &key, const Floats &value, const Floats &g,
               const Floats &beta, bool l2Norm, Floats &state, Floats &out) {
  int64_t hv = d.numValueHeads, dk = d.keyHeadDim, dv = d.valueHeadDim;
  int64_t repeat = hv / d.numKeyHeads;
  Floats q(tokens * hv * dk), k(tokens * hv * dk);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < hv; ++h)
      for (int64_t i = 0; i < dk; ++i) {
        int64_t from = (t * d.numKeyHeads + h / repeat) * dk + i;
        q[(t * hv + h) * dk + i] = query[from];
        k[(t * hv + h) * dk + i] = key[from];
      }
  if (l2Norm) {
    for (Floats *x : {&q, &k})
      for (int64_t r = 0; r < tokens * hv; ++r) {
        double sum = 0;
        for (int64_t i = 0; i < dk; ++i)
          sum += double((*x)[r * dk + i]) * (*x)[r * dk + i];
        for (int64_t i = 0; i < dk; ++i)
          (*x)[r * dk + i] = float((*x)[r * dk + i] / std::sqrt(sum + 1e-6));
      }
  }
  for (float &x : q)
    x = float(x / std::sqrt(double(dk)));
  out.assign(tokens * hv * dv, 0.0f);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < hv; ++h) {
      float *s = &state[h * dk * dv];
      const float *kt = &k[(t * hv + h) * dk];
      const float *qt = &q[(t * hv + h) * dk];
      const float *vt = &value[(t * hv + h) * dv];
      for (int64_t e = 0; e < dk * dv; ++e)
        s[e] = float(s[e] * std::exp(double(g[t * hv + h])));
      for (int64_t j = 0; j < dv; ++j) {
        double predicted = 0;
        for (int64_t i = 0; i < dk; ++i)
          predicted += double(s[i * dv + j]) * kt[i];
        double delta = beta[t * hv + h] * (vt[j] - predicted);
        for (int64_t i = 0; i < dk; ++i)
          s[i * dv + j] = float(s[i * dv + j] + kt[i] * delta);
      }
      for (int64_t j = 0; j < dv; ++j) {
        double sum = 0;
        for (int64_t i = 0; i < dk; ++i)
          sum += double(s[i * dv + j]) * qt[i];
        out[(t * hv + h) * dv + j] = float(sum);
      }
    }
}

/// Random rule operands of realistic ranges: decays from the gate formula,
/// beta in (0, 1), a nonzero initial state.
struct RuleCase {
  GatedDeltaDims dims;
  int64_t tokens;
  Floats query, key, value, g, beta, state;

  RuleCase(GatedDeltaDims d, int64_t length, unsigned seed)
      : dims(d), tokens(length) {
    std::mt19937 rng(seed);
    int64_t hv = d.numValueHeads;
    query = randomFloats(rng, tokens * d.numKeyHeads * d.keyHeadDim, -1, 1);
    key = randomFloats(rng, tokens * d.numKeyHeads * d.keyHeadDim, -1, 1);
    value = randomFloats(rng, tokens * hv * d.valueHeadDim, -1, 1);
    Floats a = randomFloats(rng, tokens * hv, -3, 3);
    Floats b = randomFloats(rng, tokens * hv, -3, 3);
    Floats aLog = randomFloats(rng, hv, -2, 1);
    Floats dtBias = randomFloats(rng, hv, -1, 1);
    g.resize(tokens * hv);
    beta.resize(tokens * hv);
    EXPECT_TRUE(gatedDeltaGates(a, b, tokens, hv, aLog, dtBias,
                                absl::MakeSpan(g), absl::MakeSpan(beta))
                    .ok());
    state = randomFloats(rng, hv * d.keyHeadDim * d.valueHeadDim, -0.5, 0.5);
  }

  Floats outBuffer() const {
    return Floats(tokens * dims.numValueHeads * dims.valueHeadDim);
  }
};

// Tests the recurrent form on one token, one head, by hand: S0 = [[1, 2],
// [3, 4]], decay 0.5, k = e0, v = [2, 3], beta 0.5, q = [1, 1] (without the
// L2 norm, so only the 1/sqrt(2) scaling applies).
TEST(CpuGatedDeltaTest, RecurrentHandComputed) {
  GatedDeltaDims dims{1, 1, 2, 2};
  Floats q = {1, 1}, k = {1, 0}, v = {2, 3};
  Floats g = {std::log(0.5f)}, beta = {0.5f};
  Floats state = {1, 2, 3, 4};
  Floats out(2);
  ASSERT_TRUE(gatedDeltaRuleRecurrent(dims, 1, q, k, v, g, beta, false,
                                      absl::MakeSpan(state),
                                      absl::MakeSpan(out))
                  .ok());
  // Decayed S = [[0.5, 1], [1.5, 2]]; S^T k = [0.5, 1]; delta = 0.5 * ([2,
  // 3] - [0.5, 1]) = [0.75, 1]; row 0 += delta -> [[1.25, 2], [1.5, 2]].
  EXPECT_NEAR(state[0], 1.25, 1e-6);
  EXPECT_NEAR(state[1], 2.0, 1e-6);
  EXPECT_NEAR(state[2], 1.5, 1e-6);
  EXPECT_NEAR(state[3], 2.0, 1e-6);
  EXPECT_NEAR(out[0], (1.25 + 1.5) / std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(out[1], (2.0 + 2.0) / std::sqrt(2.0), 1e-6);

  // The chunked form agrees on the same token.
  Floats chunkState = {1, 2, 3, 4};
  Floats chunkOut(2);
  ASSERT_TRUE(gatedDeltaRuleChunked(dims, 1, q, k, v, g, beta, false, 64,
                                    absl::MakeSpan(chunkState),
                                    absl::MakeSpan(chunkOut))
                  .ok());
  EXPECT_LT(relativeError(chunkOut, out), 1e-6);
  EXPECT_LT(relativeError(chunkState, state), 1e-6);
}

// Tests the L2 norm of q and k inside the rule against normalising first.
TEST(CpuGatedDeltaTest, L2NormInsideEqualsNormalisingFirst) {
  RuleCase c({2, 2, 4, 3}, 5, 3);
  int64_t rows = c.tokens * c.dims.numKeyHeads;
  Floats qn(c.query.size()), kn(c.key.size());
  ASSERT_TRUE(l2Normalize(c.query, rows, 4, kGatedDeltaL2NormEpsilon,
                          absl::MakeSpan(qn))
                  .ok());
  ASSERT_TRUE(
      l2Normalize(c.key, rows, 4, kGatedDeltaL2NormEpsilon, absl::MakeSpan(kn))
          .ok());
  Floats insideState = c.state, inside = c.outBuffer();
  Floats firstState = c.state, first = c.outBuffer();
  ASSERT_TRUE(gatedDeltaRuleRecurrent(
                  c.dims, c.tokens, c.query, c.key, c.value, c.g, c.beta, true,
                  absl::MakeSpan(insideState), absl::MakeSpan(inside))
                  .ok());
  ASSERT_TRUE(gatedDeltaRuleRecurrent(c.dims, c.tokens, qn, kn, c.value, c.g,
                                      c.beta, false, absl::MakeSpan(firstState),
                                      absl::MakeSpan(first))
                  .ok());
  EXPECT_LT(relativeError(inside, first), 1e-6);
  EXPECT_LT(relativeError(insideState, firstState), 1e-6);
}

// Tests the recurrent form, grouped value heads included, against the naive
// loops above.
TEST(CpuGatedDeltaTest, RecurrentMatchesNaiveWithGroupedHeads) {
  for (bool l2Norm : {false, true}) {
    RuleCase c({2, 6, 4, 3}, 9, 5);
    Floats state = c.state, out = c.outBuffer();
    ASSERT_TRUE(gatedDeltaRuleRecurrent(
                    c.dims, c.tokens, c.query, c.key, c.value, c.g, c.beta,
                    l2Norm, absl::MakeSpan(state), absl::MakeSpan(out))
                    .ok());
    Floats naiveState = c.state, naiveOut;
    naiveRule(c.dims, c.tokens, c.query, c.key, c.value, c.g, c.beta, l2Norm,
              naiveState, naiveOut);
    EXPECT_LT(relativeError(out, naiveOut), 1e-5) << l2Norm;
    EXPECT_LT(relativeError(state, naiveState), 1e-5) << l2Norm;
  }
}

// Tests that value head h reads key head h / (Hv / Hk): heads 0 and 1 share
// key head 0, heads 2 and 3 key head 1. With S0 = 0, beta = 1 and no decay,
// one token gives out = (q.k) v with the q, k of the head's key head (the
// dots differ per key head, so h % Hk would give other numbers).
TEST(CpuGatedDeltaTest, ValueHeadsShareConsecutiveKeyHeads) {
  GatedDeltaDims dims{2, 4, 2, 1};
  Floats q = {1, 0, 0, 1}; // key head 0: e0, key head 1: e1
  Floats k = {1, 0, 1, 2}; // key head 0: e0, key head 1: (1, 2)
  Floats v = {1, 2, 3, 4};
  Floats g(4, 0.0f), beta(4, 1.0f), state(4 * 2 * 1, 0.0f), out(4);
  ASSERT_TRUE(gatedDeltaRuleRecurrent(dims, 1, q, k, v, g, beta, false,
                                      absl::MakeSpan(state),
                                      absl::MakeSpan(out))
                  .ok());
  double scale = 1 / std::sqrt(2.0);
  EXPECT_NEAR(out[0], 1 * scale * 1, 1e-6); // q.k = 1
  EXPECT_NEAR(out[1], 1 * scale * 2, 1e-6);
  EXPECT_NEAR(out[2], 2 * scale * 3, 1e-6); // e1.(1, 2) = 2
  EXPECT_NEAR(out[3], 2 * scale * 4, 1e-6);
  // The state of head 3 is k v^T = (1, 2) * 4.
  EXPECT_NEAR(state[3 * 2 + 0], 4, 1e-6);
  EXPECT_NEAR(state[3 * 2 + 1], 8, 1e-6);
  EXPECT_NEAR(state[1 * 2 + 1], 0, 1e-6); // head 1: k = e0
}

// Tests that the chunked form matches the recurrent one (outputs and final
// state) on lengths around the chunk size, from a nonzero initial state.
TEST(CpuGatedDeltaTest, ChunkedMatchesRecurrent) {
  GatedDeltaDims dims{2, 4, 8, 6};
  for (int64_t tokens : {1, 63, 64, 65, 200})
    for (int64_t chunk : {64, 7}) {
      RuleCase c(dims, tokens, unsigned(100 + tokens));
      Floats recurrentState = c.state, recurrent = c.outBuffer();
      ASSERT_TRUE(gatedDeltaRuleRecurrent(c.dims, tokens, c.query, c.key,
                                          c.value, c.g, c.beta, true,
                                          absl::MakeSpan(recurrentState),
                                          absl::MakeSpan(recurrent))
                      .ok());
      Floats chunkedState = c.state, chunked = c.outBuffer();
      ASSERT_TRUE(gatedDeltaRuleChunked(c.dims, tokens, c.query, c.key, c.value,
                                        c.g, c.beta, true, chunk,
                                        absl::MakeSpan(chunkedState),
                                        absl::MakeSpan(chunked))
                      .ok());
      EXPECT_LT(relativeError(chunked, recurrent), 1e-4)
          << tokens << " tokens, chunk " << chunk;
      EXPECT_LT(relativeError(chunkedState, recurrentState), 1e-4)
          << tokens << " tokens, chunk " << chunk;
      EXPECT_NE(recurrentState, c.state);
    }
}

// Tests that no decay and beta 0 leave the state alone and read it with q.
TEST(CpuGatedDeltaTest, ChunkedWithoutUpdatesReadsTheState) {
  RuleCase c({1, 2, 3, 2}, 10, 9);
  std::fill(c.g.begin(), c.g.end(), 0.0f);
  std::fill(c.beta.begin(), c.beta.end(), 0.0f);
  Floats state = c.state, out = c.outBuffer();
  ASSERT_TRUE(gatedDeltaRuleChunked(c.dims, c.tokens, c.query, c.key, c.value,
                                    c.g, c.beta, false, 4,
                                    absl::MakeSpan(state), absl::MakeSpan(out))
                  .ok());
  EXPECT_LT(relativeError(state, c.state), 1e-7);
  for (int64_t t = 0; t < c.tokens; ++t)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t j = 0; j < 2; ++j) {
        double sum = 0;
        for (int64_t i = 0; i < 3; ++i)
          sum += double(c.query[t * 3 + i]) * c.state[(h * 3 + i) * 2 + j];
        EXPECT_NEAR(out[(t * 2 + h) * 2 + j], sum / std::sqrt(3.0), 1e-6);
      }
}

// Tests the cached flow: chunked prefill pieces, then recurrent decode steps,
// equals one pass; the recurrent form alone is bit-identical in pieces.
TEST(CpuGatedDeltaTest, RuleWholeEqualsPieces) {
  GatedDeltaDims dims{2, 4, 8, 6};
  int64_t tokens = 105;
  RuleCase c(dims, tokens, 42);
  int64_t keyWidth = 2 * 8, valueWidth = 4 * 6, heads = 4;

  Floats wholeState = c.state, whole = c.outBuffer();
  ASSERT_TRUE(gatedDeltaRuleChunked(
                  dims, tokens, c.query, c.key, c.value, c.g, c.beta, true, 64,
                  absl::MakeSpan(wholeState), absl::MakeSpan(whole))
                  .ok());
  Floats recurrentState = c.state, recurrent = c.outBuffer();
  ASSERT_TRUE(gatedDeltaRuleRecurrent(
                  dims, tokens, c.query, c.key, c.value, c.g, c.beta, true,
                  absl::MakeSpan(recurrentState), absl::MakeSpan(recurrent))
                  .ok());

  auto runPieces = [&](bool chunkedPrefill, Floats &state) {
    Floats out;
    int64_t first = 0;
    for (int64_t length : {70, 30, 1, 1, 1, 1, 1}) {
      Floats q = rowsOf(c.query, keyWidth, first, length);
      Floats k = rowsOf(c.key, keyWidth, first, length);
      Floats v = rowsOf(c.value, valueWidth, first, length);
      Floats g = rowsOf(c.g, heads, first, length);
      Floats beta = rowsOf(c.beta, heads, first, length);
      Floats part(length * valueWidth);
      absl::Status status =
          chunkedPrefill && length > 1
              ? gatedDeltaRuleChunked(dims, length, q, k, v, g, beta, true, 64,
                                      absl::MakeSpan(state),
                                      absl::MakeSpan(part))
              : gatedDeltaRuleRecurrent(dims, length, q, k, v, g, beta, true,
                                        absl::MakeSpan(state),
                                        absl::MakeSpan(part));
      EXPECT_TRUE(status.ok()) << status;
      append(out, part);
      first += length;
    }
    EXPECT_EQ(first, tokens);
    return out;
  };

  Floats mixedState = c.state;
  Floats mixed = runPieces(true, mixedState);
  EXPECT_LT(relativeError(mixed, whole), 1e-4);
  EXPECT_LT(relativeError(mixedState, wholeState), 1e-4);

  Floats piecesState = c.state;
  Floats pieces = runPieces(false, piecesState);
  EXPECT_EQ(pieces, recurrent);
  EXPECT_EQ(piecesState, recurrentState);
}

//===-- The block ---------------------------------------------------------===//

struct BlockCase {
  GatedDeltaNetConfig config;
  Floats inProjQkv, inProjZ, inProjB, inProjA, conv1d, dtBias, aLog, norm,
      outProj;

  explicit BlockCase(unsigned seed) {
    config.hiddenSize = 10;
    config.dims = {2, 4, 4, 3};
    config.convKernelSize = 4;
    config.rmsNormEpsilon = 1e-6;
    config.chunkSize = 8; // several chunks in short tests
    std::mt19937 rng(seed);
    int64_t hidden = config.hiddenSize, heads = config.dims.numValueHeads;
    inProjQkv = randomFloats(rng, config.convDim() * hidden, -0.5, 0.5);
    inProjZ = randomFloats(rng, config.valueDim() * hidden, -0.5, 0.5);
    inProjB = randomFloats(rng, heads * hidden, -0.5, 0.5);
    inProjA = randomFloats(rng, heads * hidden, -0.5, 0.5);
    conv1d = randomFloats(rng, config.convDim() * 4, -0.7, 0.7);
    dtBias = randomFloats(rng, heads, -1, 1);
    aLog = randomFloats(rng, heads, -1, 1);
    norm = randomFloats(rng, config.dims.valueHeadDim, 0.5, 1.5);
    outProj = randomFloats(rng, hidden * config.valueDim(), -0.5, 0.5);
  }

  GatedDeltaNetWeights weights() const {
    return {inProjQkv, inProjZ, inProjB, inProjA, conv1d,
            dtBias,    aLog,    norm,    outProj};
  }
};

// Tests the block's wiring against the pieces composed by hand: q | k | v
// split of the conv output, gates from a and b, z as the norm's gate.
TEST(CpuGatedDeltaTest, BlockComposesThePieces) {
  BlockCase block(21);
  const GatedDeltaNetConfig &config = block.config;
  std::mt19937 rng(22);
  int64_t tokens = 13, hidden = config.hiddenSize;
  int64_t heads = config.dims.numValueHeads, keyDim = config.keyDim();
  int64_t valueDim = config.valueDim(), convDim = config.convDim();
  Floats x = randomFloats(rng, tokens * hidden, -1, 1);
  Floats convStart = randomFloats(rng, config.convStateSize(), -1, 1);
  Floats stateStart = randomFloats(rng, config.recurrentStateSize(), -1, 1);

  Floats convState = convStart, state = stateStart, out(tokens * hidden);
  ASSERT_TRUE(gatedDeltaNet(config, block.weights(), x, tokens,
                            absl::MakeSpan(convState), absl::MakeSpan(state),
                            absl::MakeSpan(out))
                  .ok());

  // By hand: plain matvecs, then the library's pieces.
  auto project = [&](const Floats &in, int64_t inWidth, const Floats &w,
                     int64_t outWidth) {
    Floats result(tokens * outWidth);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t n = 0; n < outWidth; ++n) {
        double sum = 0;
        for (int64_t i = 0; i < inWidth; ++i)
          sum += double(in[t * inWidth + i]) * w[n * inWidth + i];
        result[t * outWidth + n] = float(sum);
      }
    return result;
  };
  Floats qkv = project(x, hidden, block.inProjQkv, convDim);
  Floats z = project(x, hidden, block.inProjZ, valueDim);
  Floats b = project(x, hidden, block.inProjB, heads);
  Floats a = project(x, hidden, block.inProjA, heads);
  Floats expectedConvState = convStart, mixed(tokens * convDim);
  ASSERT_TRUE(causalConv1dSilu(qkv, tokens, convDim, block.conv1d, 4,
                               absl::MakeSpan(expectedConvState),
                               absl::MakeSpan(mixed))
                  .ok());
  Floats q, k, v;
  for (int64_t t = 0; t < tokens; ++t) {
    auto row = mixed.begin() + t * convDim;
    q.insert(q.end(), row, row + keyDim);
    k.insert(k.end(), row + keyDim, row + 2 * keyDim);
    v.insert(v.end(), row + 2 * keyDim, row + convDim);
  }
  Floats g(tokens * heads), beta(tokens * heads);
  ASSERT_TRUE(gatedDeltaGates(a, b, tokens, heads, block.aLog, block.dtBias,
                              absl::MakeSpan(g), absl::MakeSpan(beta))
                  .ok());
  Floats expectedState = stateStart, core;
  naiveRule(config.dims, tokens, q, k, v, g, beta, true, expectedState, core);
  Floats normed(core.size());
  ASSERT_TRUE(gatedRmsNorm(core, z, tokens * heads, config.dims.valueHeadDim,
                           block.norm, config.rmsNormEpsilon,
                           absl::MakeSpan(normed))
                  .ok());
  Floats expected = project(normed, valueDim, block.outProj, hidden);

  EXPECT_LT(relativeError(out, expected), 1e-4);
  EXPECT_EQ(convState, expectedConvState);
  EXPECT_LT(relativeError(state, expectedState), 1e-4);
}

// Tests that a prefill in two pieces and then decode steps equal one pass.
TEST(CpuGatedDeltaTest, BlockWholeEqualsPieces) {
  BlockCase block(31);
  const GatedDeltaNetConfig &config = block.config;
  std::mt19937 rng(32);
  int64_t tokens = 24, hidden = config.hiddenSize;
  Floats x = randomFloats(rng, tokens * hidden, -1, 1);

  Floats wholeConv(config.convStateSize(), 0.0f);
  Floats wholeState(config.recurrentStateSize(), 0.0f);
  Floats whole(tokens * hidden);
  ASSERT_TRUE(gatedDeltaNet(config, block.weights(), x, tokens,
                            absl::MakeSpan(wholeConv),
                            absl::MakeSpan(wholeState), absl::MakeSpan(whole))
                  .ok());

  Floats conv(config.convStateSize(), 0.0f);
  Floats state(config.recurrentStateSize(), 0.0f);
  Floats pieces;
  int64_t first = 0;
  for (int64_t length : {11, 9, 1, 1, 1, 1}) {
    Floats part(length * hidden);
    ASSERT_TRUE(gatedDeltaNet(config, block.weights(),
                              rowsOf(x, hidden, first, length), length,
                              absl::MakeSpan(conv), absl::MakeSpan(state),
                              absl::MakeSpan(part))
                    .ok());
    append(pieces, part);
    first += length;
  }
  ASSERT_EQ(first, tokens);
  EXPECT_LT(relativeError(pieces, whole), 1e-4);
  EXPECT_EQ(conv, wholeConv); // the conv sees the same inputs
  EXPECT_LT(relativeError(state, wholeState), 1e-4);
}

//===-- Refusals ----------------------------------------------------------===//

// Tests that mismatched spans and bad dimensions are refused and leave the
// states untouched.
TEST(CpuGatedDeltaTest, BadShapesAreRefused) {
  auto invalid = [](const absl::Status &status) {
    return status.code() == absl::StatusCode::kInvalidArgument;
  };
  Floats weight(2 * 3), state(2 * 2, 1.0f), input(2 * 2), out(2 * 2);
  EXPECT_TRUE(invalid(causalConv1dSilu(input, 2, 2, weight, 3,
                                       absl::MakeSpan(state).subspan(1),
                                       absl::MakeSpan(out))));
  EXPECT_TRUE(invalid(causalConv1dSilu(
      input, 3, 2, weight, 3, absl::MakeSpan(state), absl::MakeSpan(out))));
  EXPECT_TRUE(invalid(causalConv1dSilu(
      input, 2, 2, weight, 0, absl::MakeSpan(state), absl::MakeSpan(out))));
  EXPECT_EQ(state, Floats(4, 1.0f));

  Floats two(2), one(1), gOut(2), betaOut(1);
  EXPECT_TRUE(
      invalid(gatedDeltaGates(two, two, 2, 1, one, one, absl::MakeSpan(gOut),
                              absl::MakeSpan(betaOut))));
  EXPECT_TRUE(
      invalid(gatedRmsNorm(two, one, 1, 2, two, 1e-6, absl::MakeSpan(gOut))));
  EXPECT_TRUE(invalid(l2Normalize(two, 1, 3, 1e-6, absl::MakeSpan(gOut))));

  RuleCase c({2, 4, 3, 2}, 3, 1);
  Floats ruleState = c.state, ruleOut = c.outBuffer();
  // Value heads not a multiple of key heads.
  GatedDeltaDims uneven{3, 4, 2, 2};
  EXPECT_TRUE(invalid(gatedDeltaRuleRecurrent(
      uneven, 3, c.query, c.key, c.value, c.g, c.beta, true,
      absl::MakeSpan(ruleState), absl::MakeSpan(ruleOut))));
  // A state of the wrong size.
  EXPECT_TRUE(invalid(gatedDeltaRuleRecurrent(
      c.dims, 3, c.query, c.key, c.value, c.g, c.beta, true,
      absl::MakeSpan(ruleState).subspan(2), absl::MakeSpan(ruleOut))));
  // Keys with one token too few.
  EXPECT_TRUE(invalid(gatedDeltaRuleChunked(
      c.dims, 3, c.query, absl::MakeConstSpan(c.key).subspan(6), c.value, c.g,
      c.beta, true, 64, absl::MakeSpan(ruleState), absl::MakeSpan(ruleOut))));
  // Chunk size 0.
  EXPECT_TRUE(invalid(gatedDeltaRuleChunked(
      c.dims, 3, c.query, c.key, c.value, c.g, c.beta, true, 0,
      absl::MakeSpan(ruleState), absl::MakeSpan(ruleOut))));
  EXPECT_EQ(ruleState, c.state);

  BlockCase block(5);
  GatedDeltaNetWeights weights = block.weights();
  weights.norm = absl::MakeConstSpan(block.norm).subspan(1);
  Floats x(2 * 10), blockOut(2 * 10);
  Floats conv(block.config.convStateSize(), 1.0f);
  Floats recurrent(block.config.recurrentStateSize(), 1.0f);
  EXPECT_TRUE(invalid(
      gatedDeltaNet(block.config, weights, x, 2, absl::MakeSpan(conv),
                    absl::MakeSpan(recurrent), absl::MakeSpan(blockOut))));
  EXPECT_TRUE(invalid(gatedDeltaNet(
      block.config, block.weights(), x, 2, absl::MakeSpan(conv).subspan(1),
      absl::MakeSpan(recurrent), absl::MakeSpan(blockOut))));
  EXPECT_EQ(conv, Floats(block.config.convStateSize(), 1.0f));
  EXPECT_EQ(recurrent, Floats(block.config.recurrentStateSize(), 1.0f));
}

} // namespace
} // namespace treni::cpu
