//===- Rope.cpp - RoPE inverse frequencies -------------------------------===//

#include "codegen/Rope.h"

#include "absl/strings/str_cat.h"
#include "support/status.h"

#include <cmath>
#include <numbers>

namespace treni {

std::vector<float>
ropeInverseFrequencies(int64_t headDim, double theta,
                       std::optional<Llama3Scaling> scaling) {
  std::vector<float> invFreq(headDim / 2);
  for (int64_t i = 0; i < headDim / 2; ++i)
    invFreq[i] = 1.0f / std::pow(float(theta), float(2 * i) / float(headDim));
  if (!scaling)
    return invFreq;
  // transformers' _compute_llama3_parameters.
  double lowFreqWavelen = scaling->originalMaxPosition / scaling->lowFreqFactor;
  double highFreqWavelen =
      scaling->originalMaxPosition / scaling->highFreqFactor;
  for (float &freq : invFreq) {
    double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen > lowFreqWavelen) {
      freq = float(freq / scaling->factor);
    } else if (wavelen >= highFreqWavelen) {
      double smooth =
          (scaling->originalMaxPosition / wavelen - scaling->lowFreqFactor) /
          (scaling->highFreqFactor - scaling->lowFreqFactor);
      freq = float((1 - smooth) * freq / scaling->factor + smooth * freq);
    }
  }
  return invFreq;
}

absl::StatusOr<std::vector<float>> ropeInverseFrequencies(const PlanStep &step,
                                                          int64_t rotaryDim) {
  TRENI_ASSIGN_OR_RETURN(double theta, step.floatConstant("theta"));
  std::optional<Llama3Scaling> scaling;
  if (step.constants.count("llama3_factor")) {
    Llama3Scaling s;
    TRENI_ASSIGN_OR_RETURN(s.factor, step.floatConstant("llama3_factor"));
    TRENI_ASSIGN_OR_RETURN(s.lowFreqFactor,
                           step.floatConstant("llama3_low_freq_factor"));
    TRENI_ASSIGN_OR_RETURN(s.highFreqFactor,
                           step.floatConstant("llama3_high_freq_factor"));
    TRENI_ASSIGN_OR_RETURN(s.originalMaxPosition,
                           step.intConstant("llama3_original_max_position"));
    scaling = s;
  }
  return ropeInverseFrequencies(rotaryDim, theta, scaling);
}

absl::StatusOr<int64_t> ropeRotaryDim(const PlanStep &step, int64_t headDim) {
  if (!step.constants.count("rotary_dim"))
    return headDim;
  TRENI_ASSIGN_OR_RETURN(int64_t rotaryDim, step.intConstant("rotary_dim"));
  if (rotaryDim < 2 || rotaryDim % 2 != 0 || rotaryDim > headDim)
    return absl::InvalidArgumentError(absl::StrCat(
        "kernel '", step.templateName, "' (", step.origin, "): rotary_dim ",
        rotaryDim, " must be even and in [2, head_dim = ", headDim, "]"));
  return rotaryDim;
}

} // namespace treni
