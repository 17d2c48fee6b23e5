//===- Rope.h - RoPE inverse frequencies --------------------------*- C++
//-*-===//
//
// One definition of the rotary frequencies, shared by the CPU reference
// kernels and CUDA codegen (which bakes them into the kernel source), so the
// two cannot drift apart.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/Plan.h"

namespace treni {

/// Llama 3 frequency scaling parameters (see RopeOp).
struct Llama3Scaling {
  double factor, lowFreqFactor, highFreqFactor;
  int64_t originalMaxPosition;
};

/// inv_freq[i] = theta^(-2i/headDim), i < headDim/2, computed in fp32 like
/// transformers, with Llama 3 scaling applied when given.
std::vector<float> ropeInverseFrequencies(int64_t headDim, double theta,
                                          std::optional<Llama3Scaling> scaling);

/// The inverse frequencies of a rope-like plan step (constants `theta` and,
/// when present, the four `llama3_*`): what both the CPU reference and the
/// CUDA templates use. `rotaryDim` is the rotated width of a head (the
/// head_dim, or ropeRotaryDim's partial width).
absl::StatusOr<std::vector<float>> ropeInverseFrequencies(const PlanStep &step,
                                                          int64_t rotaryDim);

/// The rotated width of each `headDim` head of a rope step: its `rotary_dim`
/// constant (checked even and in [2, headDim]) or, without one, headDim.
absl::StatusOr<int64_t> ropeRotaryDim(const PlanStep &step, int64_t headDim);

} // namespace treni
