//===- step_inputs.cpp - checks shared by the executors ------------------===//

#include "runtime/exec/step_inputs.h"

#include "absl/strings/str_cat.h"

namespace treni {

absl::Status checkPrefillChunk(int64_t tokens) {
  if (tokens >= 1 && tokens <= kMaxPrefillChunk)
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("the prefill chunk must be 1 to ", kMaxPrefillChunk,
                   " tokens, not ", tokens));
}

absl::Status checkStepInputs(absl::Span<const int32_t> ids,
                             int64_t startPosition, int64_t maxSeq,
                             int64_t vocabSize) {
  int64_t tokens = ids.size();
  if (startPosition < 0 || startPosition + tokens > maxSeq)
    return absl::OutOfRangeError(absl::StrCat(
        "positions ", startPosition, "..", startPosition + tokens - 1,
        " exceed the KV cache (--max-seq ", maxSeq, ")"));
  for (int32_t id : ids)
    if (id < 0 || id >= vocabSize)
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is outside the vocabulary [0, ", vocabSize, ")"));
  return absl::OkStatus();
}

} // namespace treni
