//===- cpu_kernels_test.cpp - reference kernels on hand-checked cases ----===//

#include <cmath>
#include <numbers>

#include "runtime/exec/cpu_kernels.h"
#include "gtest/gtest.h"

namespace treni::cpu {
namespace {

TEST(CpuKernelsTest, RmsNormPerRowAndPerGroup) {
  // Row [3, 4]: mean square 12.5 -> scale 1/sqrt(12.5).
  std::vector<float> x = {3, 4, 1, 1};
  std::vector<float> w = {1, 2};
  std::vector<float> out(4);
  rmsNorm(x.data(), 2, 2, w.data(), 2, 0.0, out.data());
  EXPECT_NEAR(out[0], 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[1], 8 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[2], 1, 1e-6);
  EXPECT_NEAR(out[3], 2, 1e-6);
  // Groups of 1 (per-head norm with head_dim 1): every element -> sign * w.
  std::vector<float> g = {0.5f};
  rmsNorm(x.data(), 1, 4, g.data(), 1, 0.0, out.data());
  for (float v : out)
    EXPECT_NEAR(v, 0.5, 1e-6);
}

TEST(CpuKernelsTest, GemmUsesOutInLayoutAndBias) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6}; // 2 x 3
  std::vector<float> w = {1, 0, 0, 0, 1, 1}; // 2 x 3 ([n, k])
  std::vector<float> bias = {10, 20};
  std::vector<float> out(4);
  gemm(x.data(), 2, 3, w.data(), 2, bias.data(), out.data());
  EXPECT_EQ(out, (std::vector<float>{11, 25, 14, 31}));
  gemm(x.data(), 2, 3, w.data(), 2, nullptr, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 5, 4, 11}));
}

TEST(CpuKernelsTest, RopeRotatesHalvesByPositionTimesFrequency) {
  auto invFreq = ropeInverseFrequencies(4, 100.0, std::nullopt);
  ASSERT_EQ(invFreq.size(), 2u);
  EXPECT_FLOAT_EQ(invFreq[0], 1.0f);
  EXPECT_FLOAT_EQ(invFreq[1], 0.1f);
  std::vector<float> x = {1, 0, 0, 1}; // pairs (x0, x2) and (x1, x3)
  int32_t position = 3;
  std::vector<float> out(4);
  rope(x.data(), 1, 4, 4, &position, invFreq, out.data());
  EXPECT_NEAR(out[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(out[2], std::sin(3.0), 1e-6);
  EXPECT_NEAR(out[1], -std::sin(0.3), 1e-6);
  EXPECT_NEAR(out[3], std::cos(0.3), 1e-6);
  // Position 0 is the identity.
  position = 0;
  rope(x.data(), 1, 4, 4, &position, invFreq, out.data());
  EXPECT_EQ(out, x);
}

TEST(CpuKernelsTest, Llama3ScalingHitsAllThreeBands) {
  Llama3Scaling scaling{32.0, 1.0, 4.0, 8192};
  int64_t headDim = 16;
  auto base = ropeInverseFrequencies(headDim, 500000.0, std::nullopt);
  auto scaled = ropeInverseFrequencies(headDim, 500000.0, scaling);
  int high = 0, medium = 0, low = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    double wavelen = 2 * std::numbers::pi / base[i];
    if (wavelen < 8192 / 4.0) {
      EXPECT_FLOAT_EQ(scaled[i], base[i]); // high frequency: untouched
      ++high;
    } else if (wavelen > 8192 / 1.0) {
      EXPECT_FLOAT_EQ(scaled[i], base[i] / 32); // low frequency: divided
      ++low;
    } else {
      double smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(scaled[i], (1 - smooth) * base[i] / 32 + smooth * base[i],
                  1e-9);
      EXPECT_LT(scaled[i], base[i]);
      EXPECT_GT(scaled[i], base[i] / 32);
      ++medium;
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
  EXPECT_GT(low, 0);
}

TEST(CpuKernelsTest, AttentionIsCausalAndGroupsQueryHeads) {
  // 2 query heads share 1 KV head of dim 1; cache rows hold keys 0 and 1.
  std::vector<float> keys = {0, 1}, values = {10, 20};
  std::vector<float> query = {1, 1, 1, 1}; // two rows, two heads
  std::vector<int32_t> positions = {0, 1};
  std::vector<float> out(4);
  attention(query.data(), 2, 2, 1, 1, positions.data(), keys.data(),
            values.data(), 1.0, out.data());
  // Row 0 sees only position 0.
  EXPECT_FLOAT_EQ(out[0], 10);
  EXPECT_FLOAT_EQ(out[1], 10);
  // Row 1: softmax([0, 1]) . [10, 20].
  double p1 = std::exp(1.0) / (1 + std::exp(1.0));
  EXPECT_NEAR(out[2], 10 * (1 - p1) + 20 * p1, 1e-5);
  EXPECT_FLOAT_EQ(out[2], out[3]);
}

TEST(CpuKernelsTest, CacheWriteLandsAtPositions) {
  std::vector<float> k = {1, 2, 3, 4}, v = {5, 6, 7, 8};
  std::vector<float> keyCache(8, 0), valueCache(8, 0);
  std::vector<int32_t> positions = {3, 1};
  cacheWrite(k.data(), v.data(), 2, 2, positions.data(), keyCache.data(),
             valueCache.data());
  EXPECT_EQ(keyCache, (std::vector<float>{0, 0, 3, 4, 0, 0, 1, 2}));
  EXPECT_EQ(valueCache, (std::vector<float>{0, 0, 7, 8, 0, 0, 5, 6}));
}

TEST(CpuKernelsTest, Elementwise) {
  std::vector<float> a = {0, 1, -2}, b = {2, 3, 4}, out(3);
  silu(a.data(), 3, out.data());
  EXPECT_FLOAT_EQ(out[0], 0);
  EXPECT_NEAR(out[1], 1 / (1 + std::exp(-1.0)), 1e-7);
  EXPECT_NEAR(out[2], -2 / (1 + std::exp(2.0)), 1e-7);
  mul(a.data(), b.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{0, 3, -8}));
  add(a.data(), b.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{2, 4, 2}));
}

} // namespace
} // namespace treni::cpu
