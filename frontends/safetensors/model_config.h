//===- model_config.h - Hugging Face config.json for decoder LMs -*- C++
//-*-===//
//
// Parses `config.json` for Qwen2ForCausalLM, LlamaForCausalLM and
// Qwen3ForCausalLM and checks a checkpoint against it. Anything the builders
// cannot honour (an unknown architecture, rope type, activation, sliding
// window, mlp bias...) is an error naming the key, never a silent guess.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "frontends/safetensors/safetensors.h"
#include "nlohmann/json.hpp"

namespace treni {

enum class Architecture { Qwen2, Llama, Qwen3 };

/// "Qwen2ForCausalLM", "LlamaForCausalLM", "Qwen3ForCausalLM".
std::string_view architectureName(Architecture arch);

/// `rope_scaling` / `rope_parameters` of type "llama3".
struct Llama3RopeScaling {
  double factor = 8.0;
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::Llama;
  int64_t hiddenSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0; ///< defaults to numHeads when absent
  int64_t headDim = 0;    ///< `head_dim` when given, else hidden / heads
  int64_t intermediateSize = 0;
  int64_t vocabSize = 0;
  int64_t maxPositionEmbeddings = 0;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0; ///< `rope_theta`, or inside `rope_parameters`
  std::optional<Llama3RopeScaling> llama3Scaling;
  bool tieWordEmbeddings = false;
  bool attentionBias = false; ///< q/k/v bias (always true for Qwen2)
  bool qkNorm = false;        ///< per-head RMSNorm of q and k (Qwen3)
  std::optional<DType> dtype; ///< `dtype` / `torch_dtype` when given
};

/// Parses config.json text. `fileName` appears in error messages.
absl::StatusOr<ModelConfig> parseModelConfig(std::string_view json,
                                             std::string_view fileName);
/// Reads and parses DIR/config.json.
absl::StatusOr<ModelConfig> loadModelConfig(const std::string &dir);

/// The token ids an `eos_token_id` value names (in generation_config.json
/// or config.json): one id, or a list of them; null names none. Anything
/// else, or an id outside the vocabulary (ids 0 .. vocabSize - 1, which a
/// model could never generate, so it would never stop there), is an error
/// naming `file`, the key and the vocabulary size.
absl::StatusOr<std::vector<int32_t>> eosTokenIds(const nlohmann::json &value,
                                                 std::string_view file,
                                                 int64_t vocabSize);

/// A tensor the architecture needs, with its expected shape.
struct RequiredTensor {
  std::string name;
  std::vector<int64_t> shape;
};

/// Every tensor the builder will reference, in a stable order (embedding,
/// then per layer, then final norm and lm_head unless tied).
std::vector<RequiredTensor> requiredTensors(const ModelConfig &config);

/// Fails when a required tensor is missing or has the wrong shape; the message
/// names the tensor, the file that should hold it, expected and actual shape.
absl::Status validateCheckpoint(const ModelConfig &config,
                                const Checkpoint &checkpoint);

} // namespace treni
