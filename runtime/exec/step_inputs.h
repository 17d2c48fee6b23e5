//===- step_inputs.h - checks shared by the executors -----------*- C++ -*-===//
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace treni {

/// A prefill/decode call's tokens: positions start.. must fit the KV cache of
/// `maxSeq` rows and every id must be inside the vocabulary.
absl::Status checkStepInputs(absl::Span<const int32_t> ids,
                             int64_t startPosition, int64_t maxSeq,
                             int64_t vocabSize);

} // namespace treni
