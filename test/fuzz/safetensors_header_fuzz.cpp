//===- safetensors_header_fuzz.cpp - libFuzzer target for the frontend ----===//
//
// Feeds arbitrary bytes to the safetensors header parser (as a whole file and
// as the first part of a larger one), and the same bytes as text to the
// config.json and shard index parsers. Besides the sanitizers, it checks the
// parser's promises: a parsed tensor lies inside the file and its byte size
// is its element count times its dtype size; a failure always says why.
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "frontends/safetensors/model_config.h"
#include "frontends/safetensors/safetensors.h"

namespace {

void check(bool condition) {
  if (!condition)
    __builtin_trap();
}

void checkHeader(absl::Span<const uint8_t> bytes, uint64_t fileSize) {
  absl::StatusOr<std::vector<treni::TensorInfo>> tensors =
      treni::parseSafetensorsHeader("fuzz.safetensors", bytes, fileSize);
  if (!tensors.ok()) {
    check(!tensors.status().message().empty());
    return;
  }
  for (const treni::TensorInfo &tensor : *tensors) {
    check(tensor.fileOffset <= fileSize);
    check(tensor.byteSize <= fileSize - tensor.fileOffset);
    check(static_cast<uint64_t>(tensor.numElements()) *
              treni::dtypeSize(tensor.dtype) ==
          tensor.byteSize);
    // Touch the data when it was given, so ASan sees any bad offset.
    if (tensor.fileOffset + tensor.byteSize <= bytes.size()) {
      std::vector<float> values(tensor.numElements());
      treni::convertToF32(tensor.dtype, bytes.data() + tensor.fileOffset,
                          values.data(), tensor.numElements());
    }
  }
}

void checkText(std::string_view text) {
  absl::StatusOr<treni::ModelConfig> config =
      treni::parseModelConfig(text, "config.json");
  if (config.ok()) {
    check(config->headDim > 0 && config->numKvHeads > 0);
    check(config->numHeads % config->numKvHeads == 0);
    if (config->numLayers <= 64)
      check(!treni::requiredTensors(*config).empty());
  } else {
    check(!config.status().message().empty());
  }
  auto index = treni::parseSafetensorsIndex(text, "index.json");
  if (index.ok()) {
    for (const auto &[tensor, shard] : *index)
      check(!shard.empty() && shard.find('/') == std::string::npos &&
            shard.find("..") == std::string::npos);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  absl::Span<const uint8_t> bytes(data, size);
  checkHeader(bytes, size);
  // Only the start of a larger file is given: offsets are checked against
  // the file size, but nothing past `bytes` may be read.
  checkHeader(bytes, size + 4096);

  std::string_view text(reinterpret_cast<const char *>(data), size);
  checkText(text);
  // The header JSON of a safetensors input, as text.
  if (size > 8)
    checkText(text.substr(8));
  return 0;
}
