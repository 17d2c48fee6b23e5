//===- step_plan.cpp - what one engine step computes ----------------------===//

#include "runtime/batch/step_plan.h"

namespace treni {

int64_t StepPlan::numTokens() const {
  int64_t tokens = int64_t(decodes.size());
  for (const PrefillChunk &chunk : prefills)
    tokens += int64_t(chunk.tokens.size());
  return tokens;
}

std::vector<SequenceId> StepPlan::sampledSequences() const {
  std::vector<SequenceId> sequences;
  for (const DecodeRow &row : decodes)
    sequences.push_back(row.sequence);
  for (const PrefillChunk &chunk : prefills)
    if (chunk.samplesLast)
      sequences.push_back(chunk.sequence);
  return sequences;
}

} // namespace treni
