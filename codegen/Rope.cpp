//===- Rope.cpp - RoPE inverse frequencies -------------------------------===//

#include "codegen/Rope.h"

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

} // namespace treni
