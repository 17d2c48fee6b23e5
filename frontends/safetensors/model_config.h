//===- model_config.h - Hugging Face config.json for decoder LMs -*- C++
//-*-===//
//
// Parses `config.json` for Qwen2ForCausalLM, LlamaForCausalLM,
// Qwen3ForCausalLM and the Qwen3.5 text model (Qwen3_5ForConditionalGeneration
// and Qwen3_5ForCausalLM; docs/qwen3_5.md) and checks a checkpoint against
// it. Anything the builders cannot honour (an unknown architecture, rope
// type, activation, sliding window, mlp bias...) is an error naming the key,
// never a silent guess.
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

/// Qwen3_5 is the text model of Qwen3.5 (hybrid Gated DeltaNet + gated
/// attention), from either Qwen3_5ForConditionalGeneration (its
/// `text_config`; the vision tower is not part of it) or Qwen3_5ForCausalLM.
enum class Architecture { Qwen2, Llama, Qwen3, Qwen3_5 };

/// "Qwen2ForCausalLM", "LlamaForCausalLM", "Qwen3ForCausalLM",
/// "Qwen3_5ForCausalLM" (for both Qwen3.5 config kinds: the text model is
/// the same).
std::string_view architectureName(Architecture arch);

/// How a decoder layer mixes tokens (`layer_types` entries).
enum class LayerType {
  FullAttention,   ///< "full_attention": softmax attention over a KV cache
  LinearAttention, ///< "linear_attention": Gated DeltaNet, a recurrent state
};

/// "full_attention", "linear_attention".
std::string_view layerTypeName(LayerType type);

/// Sizes of a Qwen3.5 Gated DeltaNet (`linear_attention`) layer.
struct GatedDeltaNetConfig {
  int64_t numKeyHeads = 0;    ///< `linear_num_key_heads` (q and k heads)
  int64_t numValueHeads = 0;  ///< `linear_num_value_heads`
  int64_t keyHeadDim = 0;     ///< `linear_key_head_dim`
  int64_t valueHeadDim = 0;   ///< `linear_value_head_dim`
  int64_t convKernelSize = 0; ///< `linear_conv_kernel_dim`

  int64_t keyDim() const { return numKeyHeads * keyHeadDim; }
  int64_t valueDim() const { return numValueHeads * valueHeadDim; }
  /// Channels of the causal conv1d: q, k and v side by side.
  int64_t convDim() const { return 2 * keyDim() + valueDim(); }
};

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
  bool qkNorm = false;        ///< per-head RMSNorm of q and k (Qwen3, 3.5)
  std::optional<DType> dtype; ///< `dtype` / `torch_dtype` when given

  /// What precedes "embed_tokens.weight", "layers.N." and "norm.weight":
  /// "model.", or "model.language_model." for
  /// Qwen3_5ForConditionalGeneration. lm_head.weight is top level in both.
  std::string tensorPrefix = "model.";
  /// One entry per layer (Qwen3.5); empty means every layer is full
  /// attention, as for the other architectures.
  std::vector<LayerType> layerTypes;
  /// Gated DeltaNet sizes; set for Qwen3.5, whose configs always carry them.
  std::optional<GatedDeltaNetConfig> gatedDeltaNet;
  /// q_proj yields, per head, the query and then a gate of the same width;
  /// the attention output is multiplied by sigmoid(gate) before o_proj
  /// (Qwen3.5).
  bool attentionOutputGate = false;
  /// The decoder RMSNorms (input, post-attention, q/k and final norm) scale
  /// by (1 + weight), their weights being stored centred on zero (Qwen3.5).
  /// The gated norm of the Gated DeltaNet output scales by weight itself.
  bool rmsNormUnitOffset = false;
  /// Fraction of each head's leading dimensions that RoPE rotates
  /// (`partial_rotary_factor`; 0.25 for Qwen3.5, 1 elsewhere).
  double partialRotaryFactor = 1.0;
  /// `rope_parameters.mrope_section` / `mrope_interleaved` (Qwen3.5): how
  /// the rotary frequencies split over the temporal, height and width
  /// positions of multimodal RoPE. With text-only positions all three are
  /// the token position, so RoPE is the plain 1-D one (docs/qwen3_5.md).
  std::vector<int64_t> mropeSection;
  bool mropeInterleaved = false;
  /// Parts of config.json that were read and deliberately left out of the
  /// model (e.g. the vision tower), one line each, for the caller to print.
  std::vector<std::string> notes;

  /// The token mixer of layer `layer` (full attention when layerTypes is
  /// empty).
  LayerType layerType(int64_t layer) const {
    return layerTypes.empty() ? LayerType::FullAttention
                              : layerTypes[static_cast<size_t>(layer)];
  }
  /// Leading dimensions of each head that RoPE rotates:
  /// int(headDim * partialRotaryFactor), as the reference truncates.
  int64_t rotaryDim() const {
    return static_cast<int64_t>(static_cast<double>(headDim) *
                                partialRotaryFactor);
  }
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
/// then per layer, then final norm and lm_head unless tied). For Qwen3.5 a
/// layer's tensors follow its layer type; the vision tower (`model.visual.`)
/// and the multi-token-prediction head (`mtp.`) are not required.
std::vector<RequiredTensor> requiredTensors(const ModelConfig &config);

/// Fails when a required tensor is missing or has the wrong shape; the message
/// names the tensor, the file that should hold it, expected and actual shape.
absl::Status validateCheckpoint(const ModelConfig &config,
                                const Checkpoint &checkpoint);

} // namespace treni
