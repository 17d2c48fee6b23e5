//===- model_config.cpp - Hugging Face config.json for decoder LMs --------===//
//
// Reads the keys the graph builders need and rejects every key whose value
// would change the model in a way they do not implement. Both the
// transformers 5 layout (`rope_parameters`) and the 4.x layout (`rope_theta`
// + `rope_scaling`) are accepted.
//
//===----------------------------------------------------------------------===//

#include "frontends/safetensors/model_config.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include <nlohmann/json.hpp>

namespace treni {
namespace {

using Json = nlohmann::json;

/// Sizes beyond this are not a real model and would overflow shape products.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxLayers = 1 << 16;

/// Debian's Abseil has its own string_view, which StrCat wants.
absl::string_view toAbsl(std::string_view text) {
  return {text.data(), text.size()};
}

/// Typed access to the keys of one JSON object. The first error is kept and
/// later reads return defaults, so a parser can read everything and check
/// ok() once before values are combined.
class ConfigReader {
public:
  ConfigReader(const Json &object, std::string_view file,
               std::string prefix = "")
      : object(object), file(file), prefix(std::move(prefix)) {}

  bool ok() const { return status.ok(); }
  const absl::Status &getStatus() const { return status; }

  void fail(absl::string_view message) {
    if (status.ok())
      status = absl::InvalidArgumentError(absl::StrCat(file, ": ", message));
  }

  /// 'key' or 'prefix.key', quoted.
  std::string quoted(std::string_view key) const {
    return absl::StrCat("'", prefix, prefix.empty() ? "" : ".", toAbsl(key),
                        "'");
  }

  bool has(std::string_view key) const {
    auto it = object.find(key);
    return it != object.end() && !it->is_null();
  }

  /// The value of `key`, or nullptr when absent or null.
  const Json *get(std::string_view key) const {
    auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<int64_t> optionalInt(std::string_view key,
                                     int64_t max = kMaxSize) {
    const Json *value = get(key);
    if (!value)
      return std::nullopt;
    int64_t result = 0;
    if (value->is_number_unsigned()) {
      uint64_t unsignedValue = value->get<uint64_t>();
      result = unsignedValue > static_cast<uint64_t>(max)
                   ? max + 1
                   : static_cast<int64_t>(unsignedValue);
    } else if (value->is_number_integer()) {
      result = value->get<int64_t>();
    } else {
      fail(absl::StrCat(quoted(key), " must be a positive integer, got ",
                        describeJson(*value)));
      return std::nullopt;
    }
    if (result <= 0) {
      fail(absl::StrCat(quoted(key), " must be a positive integer, got ",
                        result));
      return std::nullopt;
    }
    if (result > max) {
      fail(absl::StrCat(quoted(key), " is too large (at most ", max, ")"));
      return std::nullopt;
    }
    return result;
  }

  int64_t requiredInt(std::string_view key, int64_t max = kMaxSize) {
    if (!has(key)) {
      failMissing(key);
      return 0;
    }
    return optionalInt(key, max).value_or(0);
  }

  std::optional<double> optionalPositiveNumber(std::string_view key) {
    const Json *value = get(key);
    if (!value)
      return std::nullopt;
    if (!value->is_number()) {
      fail(absl::StrCat(quoted(key), " must be a positive number, got ",
                        describeJson(*value)));
      return std::nullopt;
    }
    double result = value->get<double>();
    if (!(result > 0) || !std::isfinite(result)) {
      fail(absl::StrCat(quoted(key), " must be a positive number, got ",
                        describeJson(*value)));
      return std::nullopt;
    }
    return result;
  }

  double requiredPositiveNumber(std::string_view key) {
    if (!has(key)) {
      failMissing(key);
      return 0;
    }
    return optionalPositiveNumber(key).value_or(0);
  }

  std::optional<bool> optionalBool(std::string_view key) {
    const Json *value = get(key);
    if (!value)
      return std::nullopt;
    if (!value->is_boolean()) {
      fail(absl::StrCat(quoted(key), " must be true or false, got ",
                        describeJson(*value)));
      return std::nullopt;
    }
    return value->get<bool>();
  }

  std::optional<std::string> optionalString(std::string_view key) {
    const Json *value = get(key);
    if (!value)
      return std::nullopt;
    if (!value->is_string()) {
      fail(absl::StrCat(quoted(key), " must be a string, got ",
                        describeJson(*value)));
      return std::nullopt;
    }
    return value->get<std::string>();
  }

  /// Rejects `key: true` for features the builders do not implement.
  void rejectTrue(std::string_view key, absl::string_view why) {
    if (optionalBool(key).value_or(false))
      fail(absl::StrCat(quoted(key), " is true: ", why, " is not supported"));
  }

private:
  void failMissing(std::string_view key) {
    auto it = object.find(key);
    if (it == object.end())
      fail(absl::StrCat("missing required key ", quoted(key)));
    else
      fail(absl::StrCat("required key ", quoted(key), " is null"));
  }

  const Json &object;
  std::string file;
  std::string prefix;
  absl::Status status;
};

/// Reads one RoPE dictionary (`rope_parameters` or `rope_scaling`) into
/// `config`; `theta` receives its `rope_theta` when it has one.
void readRopeDict(ConfigReader &top, const Json &dict, std::string_view key,
                  std::string_view file, ModelConfig &config,
                  std::optional<double> &theta) {
  if (!dict.is_object()) {
    top.fail(absl::StrCat("'", toAbsl(key), "' must be an object, got ",
                          describeJson(dict)));
    return;
  }
  ConfigReader rope(dict, file, std::string(key));
  std::optional<std::string> ropeType = rope.optionalString("rope_type");
  std::optional<std::string> legacyType = rope.optionalString("type");
  if (ropeType && legacyType && *ropeType != *legacyType)
    rope.fail(absl::StrCat(rope.quoted("rope_type"), " is '", *ropeType,
                           "' but ", rope.quoted("type"), " is '", *legacyType,
                           "'"));
  std::string type = ropeType ? *ropeType : legacyType.value_or("default");
  theta = rope.optionalPositiveNumber("rope_theta");

  bool isLlama3 = type == "llama3";
  if (type != "default" && !isLlama3)
    rope.fail(absl::StrCat("unsupported rope type '", type, "' in '",
                           toAbsl(key), "' (supported: default, llama3)"));
  for (const auto &[entry, value] : dict.items()) {
    bool known = entry == "rope_type" || entry == "type" ||
                 entry == "rope_theta" || entry == "partial_rotary_factor";
    bool llama3Key = entry == "factor" || entry == "low_freq_factor" ||
                     entry == "high_freq_factor" ||
                     entry == "original_max_position_embeddings";
    if (!known && !(isLlama3 && llama3Key)) {
      rope.fail(absl::StrCat("unsupported key ", rope.quoted(entry),
                             " for rope type '", type, "'"));
      break;
    }
  }
  if (std::optional<double> partial =
          rope.optionalPositiveNumber("partial_rotary_factor");
      partial && *partial != 1.0)
    rope.fail(absl::StrCat(rope.quoted("partial_rotary_factor"), " is ",
                           *partial,
                           ": partial rotary embeddings are not "
                           "supported"));
  if (isLlama3 && rope.ok()) {
    Llama3RopeScaling scaling;
    scaling.factor = rope.requiredPositiveNumber("factor");
    scaling.lowFreqFactor = rope.requiredPositiveNumber("low_freq_factor");
    scaling.highFreqFactor = rope.requiredPositiveNumber("high_freq_factor");
    scaling.originalMaxPositionEmbeddings =
        rope.requiredInt("original_max_position_embeddings");
    if (rope.ok() && !(scaling.highFreqFactor > scaling.lowFreqFactor))
      rope.fail(absl::StrCat(rope.quoted("high_freq_factor"), " (",
                             scaling.highFreqFactor, ") must exceed ",
                             rope.quoted("low_freq_factor"), " (",
                             scaling.lowFreqFactor, ")"));
    config.llama3Scaling = scaling;
  }
  if (!rope.ok()) {
    // The nested reader already prefixed the file name.
    absl::string_view message = rope.getStatus().message();
    std::string prefix = absl::StrCat(toAbsl(file), ": ");
    if (message.substr(0, prefix.size()) == prefix)
      message.remove_prefix(prefix.size());
    top.fail(message);
  }
}

/// What the builders cannot honour: each is an error naming the key.
void rejectUnsupported(ConfigReader &reader) {
  if (std::optional<std::string> act = reader.optionalString("hidden_act");
      act && *act != "silu")
    reader.fail(absl::StrCat("unsupported 'hidden_act' '", *act,
                             "' (only silu is supported)"));
  reader.rejectTrue("mlp_bias", "a bias in the MLP projections");
  reader.rejectTrue("use_sliding_window", "sliding-window attention");
  if (const Json *layerTypes = reader.get("layer_types")) {
    if (!layerTypes->is_array()) {
      reader.fail(absl::StrCat("'layer_types' must be a list, got ",
                               describeJson(*layerTypes)));
    } else {
      for (size_t i = 0; i < layerTypes->size(); ++i) {
        const Json &type = (*layerTypes)[i];
        if (!type.is_string() ||
            type.get_ref<const std::string &>() != "full_attention") {
          reader.fail(absl::StrCat("'layer_types'[", i, "] is ",
                                   describeJson(type),
                                   ": only full_attention is supported"));
          break;
        }
      }
    }
  }
  if (std::optional<int64_t> tp = reader.optionalInt("pretraining_tp");
      tp && *tp > 1)
    reader.fail(absl::StrCat("'pretraining_tp' is ", *tp,
                             ": sliced tensor-parallel projections are not "
                             "supported (only 1)"));
  if (std::optional<double> partial =
          reader.optionalPositiveNumber("partial_rotary_factor");
      partial && *partial != 1.0)
    reader.fail(absl::StrCat("'partial_rotary_factor' is ", *partial,
                             ": partial rotary embeddings are not supported"));
}

/// RoPE: transformers 5 `rope_parameters`, or 4.x `rope_theta` +
/// `rope_scaling`.
void readRope(ConfigReader &reader, std::string_view fileName,
              ModelConfig &config) {
  std::optional<double> topTheta = reader.optionalPositiveNumber("rope_theta");
  std::optional<double> dictTheta;
  const Json *ropeParameters = reader.get("rope_parameters");
  const Json *ropeScaling = reader.get("rope_scaling");
  if (ropeParameters && ropeScaling && *ropeParameters != *ropeScaling)
    reader.fail("both 'rope_parameters' and 'rope_scaling' are set and "
                "differ; expected one");
  else if (ropeParameters)
    readRopeDict(reader, *ropeParameters, "rope_parameters", fileName, config,
                 dictTheta);
  else if (ropeScaling)
    readRopeDict(reader, *ropeScaling, "rope_scaling", fileName, config,
                 dictTheta);
  if (topTheta && dictTheta && *topTheta != *dictTheta)
    reader.fail(absl::StrCat("'rope_theta' is ", *topTheta,
                             " but the rope dictionary says ", *dictTheta));
  if (dictTheta)
    config.ropeTheta = *dictTheta;
  else if (topTheta)
    config.ropeTheta = *topTheta;
  else
    reader.fail("missing 'rope_theta' (top level or in 'rope_parameters')");
}

/// `dtype` (transformers 5) wins over `torch_dtype` (4.x).
void readDtype(ConfigReader &reader, std::optional<DType> &result) {
  const char *dtypeKey = reader.has("dtype") ? "dtype" : "torch_dtype";
  if (std::optional<std::string> dtype = reader.optionalString(dtypeKey)) {
    if (*dtype == "bfloat16")
      result = DType::BF16;
    else if (*dtype == "float16")
      result = DType::F16;
    else if (*dtype == "float32")
      result = DType::F32;
    else
      reader.fail(absl::StrCat("unsupported ", reader.quoted(dtypeKey), " '",
                               *dtype,
                               "' (supported: bfloat16, float16, float32)"));
  }
}

absl::StatusOr<ModelConfig> parseQwen35(const Json &root, ConfigReader &top,
                                        bool nested, std::string_view fileName);

absl::StatusOr<ModelConfig> parseConfigImpl(std::string_view json,
                                            std::string_view fileName) {
  absl::string_view file = toAbsl(fileName);
  absl::StatusOr<Json> parsed = parseStrictJson(json);
  if (!parsed.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", parsed.status().message()));
  const Json &root = *parsed;
  if (!root.is_object())
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": config is ", describeJson(root), ", expected a JSON object"));
  ConfigReader reader(root, fileName);

  ModelConfig config;
  const Json *architectures = reader.get("architectures");
  if (!architectures)
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": missing required key 'architectures'"));
  if (!architectures->is_array() || architectures->size() != 1 ||
      !(*architectures)[0].is_string())
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": 'architectures' must be a list of exactly one string, got ",
        architectures->is_array()
            ? absl::StrCat(architectures->size(), " entries")
            : describeJson(*architectures)));
  const std::string &architecture =
      (*architectures)[0].get_ref<const std::string &>();
  if (architecture == "Qwen2ForCausalLM")
    config.architecture = Architecture::Qwen2;
  else if (architecture == "LlamaForCausalLM")
    config.architecture = Architecture::Llama;
  else if (architecture == "Qwen3ForCausalLM")
    config.architecture = Architecture::Qwen3;
  else if (architecture == "Qwen3_5ForConditionalGeneration" ||
           architecture == "Qwen3_5ForCausalLM")
    return parseQwen35(root, reader,
                       architecture == "Qwen3_5ForConditionalGeneration",
                       fileName);
  else
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": unsupported architecture '", architecture,
                     "' (supported: Qwen2ForCausalLM, LlamaForCausalLM, "
                     "Qwen3ForCausalLM, Qwen3_5ForConditionalGeneration, "
                     "Qwen3_5ForCausalLM)"));

  config.hiddenSize = reader.requiredInt("hidden_size");
  config.numLayers = reader.requiredInt("num_hidden_layers", kMaxLayers);
  config.numHeads = reader.requiredInt("num_attention_heads");
  config.numKvHeads =
      reader.optionalInt("num_key_value_heads").value_or(config.numHeads);
  std::optional<int64_t> headDim = reader.optionalInt("head_dim");
  config.intermediateSize = reader.requiredInt("intermediate_size");
  config.vocabSize = reader.requiredInt("vocab_size");
  config.maxPositionEmbeddings = reader.requiredInt("max_position_embeddings");
  config.rmsNormEps = reader.requiredPositiveNumber("rms_norm_eps");
  config.tieWordEmbeddings =
      reader.optionalBool("tie_word_embeddings").value_or(false);

  rejectUnsupported(reader);

  switch (config.architecture) {
  case Architecture::Qwen2:
    config.attentionBias = true;
    break;
  case Architecture::Llama:
  case Architecture::Qwen3:
    config.qkNorm = config.architecture == Architecture::Qwen3;
    if (reader.optionalBool("attention_bias").value_or(false))
      reader.fail(absl::StrCat("'attention_bias' is true: ", architecture,
                               " then also has an o_proj bias, which is not "
                               "supported"));
    break;
  case Architecture::Qwen3_5: // parsed by parseQwen35
    break;
  }

  readRope(reader, fileName, config);

  readDtype(reader, config.dtype);
  if (!reader.ok())
    return reader.getStatus();
  if (const Json *eos = reader.get("eos_token_id")) {
    absl::StatusOr<std::vector<int32_t>> ids =
        eosTokenIds(*eos, fileName, config.vocabSize);
    if (!ids.ok())
      return ids.status();
  }

  // Derived sizes.
  if (headDim) {
    config.headDim = *headDim;
  } else if (config.hiddenSize % config.numHeads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": 'hidden_size' ", config.hiddenSize,
                     " is not divisible by 'num_attention_heads' ",
                     config.numHeads, " and no 'head_dim' is given"));
  } else {
    config.headDim = config.hiddenSize / config.numHeads;
  }
  if (config.numHeads % config.numKvHeads != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": 'num_attention_heads' ", config.numHeads,
        " is not divisible by 'num_key_value_heads' ", config.numKvHeads));
  return config;
}

//===----------------------------------------------------------------------===//
// Qwen3.5 (docs/qwen3_5.md)
//===----------------------------------------------------------------------===//

/// The first failed reader's status, or OK (its message names the file).
absl::Status firstError(std::initializer_list<const ConfigReader *> readers) {
  for (const ConfigReader *reader : readers)
    if (!reader->ok())
      return reader->getStatus();
  return absl::OkStatus();
}

/// The same value given twice (beside and inside the rope dictionary, or at
/// the top level and in `text_config`) must agree.
void checkAgree(ConfigReader &reader, std::optional<double> first,
                std::string_view firstKey, std::optional<double> second,
                std::string_view secondKey) {
  if (first && second && *first != *second)
    reader.fail(absl::StrCat(toAbsl(firstKey), " is ", *first, " but ",
                             toAbsl(secondKey), " is ", *second));
}

/// Qwen3.5 RoPE: the "default" type over the first partial_rotary_factor of
/// each head, with the multimodal sections recorded (text positions make
/// them all the same rotation). Reads `rope_parameters` (or the 4.x
/// `rope_scaling`) and the keys beside it; `textKey` is "text_config" or
/// empty (the top level).
absl::Status readQwen35Rope(ConfigReader &text, const std::string &textKey,
                            std::string_view fileName, ModelConfig &config) {
  const Json *ropeParameters = text.get("rope_parameters");
  const Json *ropeScaling = text.get("rope_scaling");
  if (ropeParameters && ropeScaling && *ropeParameters != *ropeScaling) {
    text.fail(absl::StrCat("both ", text.quoted("rope_parameters"), " and ",
                           text.quoted("rope_scaling"),
                           " are set and differ; expected one"));
    return text.getStatus();
  }
  const char *dictKey = ropeParameters ? "rope_parameters" : "rope_scaling";
  const Json *dict = ropeParameters ? ropeParameters : ropeScaling;
  std::string dictPath =
      textKey.empty() ? dictKey : absl::StrCat(textKey, ".", dictKey);
  std::optional<double> dictTheta, dictPartial;
  // The reference's default sections, for configs that leave them out.
  config.mropeSection = {11, 11, 10};
  if (dict) {
    if (!dict->is_object()) {
      text.fail(absl::StrCat(text.quoted(dictKey), " must be an object, got ",
                             describeJson(*dict)));
      return text.getStatus();
    }
    ConfigReader rope(*dict, fileName, dictPath);
    std::optional<std::string> ropeType = rope.optionalString("rope_type");
    std::optional<std::string> legacyType = rope.optionalString("type");
    std::string type = ropeType ? *ropeType : legacyType.value_or("default");
    if (ropeType && legacyType && *ropeType != *legacyType)
      rope.fail(absl::StrCat(rope.quoted("rope_type"), " is '", *ropeType,
                             "' but ", rope.quoted("type"), " is '",
                             *legacyType, "'"));
    else if (type != "default")
      rope.fail(absl::StrCat("unsupported rope type '", type, "' in ",
                             text.quoted(dictKey),
                             " (supported for Qwen3.5: default)"));
    for (const auto &[entry, value] : dict->items()) {
      if (entry != "rope_type" && entry != "type" && entry != "rope_theta" &&
          entry != "partial_rotary_factor" && entry != "mrope_section" &&
          entry != "mrope_interleaved") {
        rope.fail(absl::StrCat("unsupported key ", rope.quoted(entry),
                               " for rope type '", type, "'"));
        break;
      }
    }
    dictTheta = rope.optionalPositiveNumber("rope_theta");
    dictPartial = rope.optionalPositiveNumber("partial_rotary_factor");
    if (const Json *section = rope.get("mrope_section")) {
      bool valid = section->is_array() && section->size() == 3;
      std::vector<int64_t> values;
      for (size_t i = 0; valid && i < section->size(); ++i) {
        const Json &item = (*section)[i];
        valid = item.is_number_integer() && item.get<int64_t>() >= 0 &&
                item.get<int64_t>() <= kMaxSize;
        if (valid)
          values.push_back(item.get<int64_t>());
      }
      if (valid)
        config.mropeSection = values;
      else
        rope.fail(absl::StrCat(rope.quoted("mrope_section"),
                               " must be a list of 3 non-negative integers "
                               "(temporal, height, width), got ",
                               describeJson(*section)));
    }
    config.mropeInterleaved =
        rope.optionalBool("mrope_interleaved").value_or(false);
    if (!rope.ok())
      return rope.getStatus();
  }

  std::string dictName = absl::StrCat("'", dictPath, ".");
  std::optional<double> theta = text.optionalPositiveNumber("rope_theta");
  checkAgree(text, theta, text.quoted("rope_theta"), dictTheta,
             dictName + "rope_theta'");
  std::optional<double> partial =
      text.optionalPositiveNumber("partial_rotary_factor");
  checkAgree(text, partial, text.quoted("partial_rotary_factor"), dictPartial,
             dictName + "partial_rotary_factor'");
  if (!text.ok())
    return text.getStatus();
  if (!dictTheta && !theta) {
    text.fail(absl::StrCat("missing ", text.quoted("rope_theta"), " (in ",
                           text.quoted("rope_parameters"), " or beside it)"));
    return text.getStatus();
  }
  config.ropeTheta = dictTheta ? *dictTheta : *theta;
  // The reference defaults the factor to 0.25 when a config leaves it out.
  config.partialRotaryFactor =
      dictPartial ? *dictPartial : partial.value_or(0.25);
  if (config.partialRotaryFactor > 1.0)
    text.fail(absl::StrCat(text.quoted("partial_rotary_factor"), " is ",
                           config.partialRotaryFactor,
                           ": at most 1 (the whole head) is possible"));
  return text.getStatus();
}

/// `layer_types`, or the reference's default pattern: every
/// `full_attention_interval`-th layer (default 4) is full attention, the
/// others linear attention. "attention" and "mamba" are the reference's
/// legacy spellings.
void readLayerTypes(ConfigReader &text, ModelConfig &config) {
  const Json *layerTypes = text.get("layer_types");
  if (!layerTypes) {
    int64_t interval = text.optionalInt("full_attention_interval").value_or(4);
    for (int64_t i = 0; i < config.numLayers; ++i)
      config.layerTypes.push_back((i + 1) % interval == 0
                                      ? LayerType::FullAttention
                                      : LayerType::LinearAttention);
    return;
  }
  if (!layerTypes->is_array()) {
    text.fail(absl::StrCat(text.quoted("layer_types"), " must be a list, got ",
                           describeJson(*layerTypes)));
    return;
  }
  if (static_cast<int64_t>(layerTypes->size()) != config.numLayers) {
    text.fail(absl::StrCat(text.quoted("layer_types"), " has ",
                           layerTypes->size(), " entries but ",
                           text.quoted("num_hidden_layers"), " is ",
                           config.numLayers));
    return;
  }
  for (size_t i = 0; i < layerTypes->size(); ++i) {
    const Json &type = (*layerTypes)[i];
    const std::string *name =
        type.is_string() ? &type.get_ref<const std::string &>() : nullptr;
    if (name && (*name == "full_attention" || *name == "attention")) {
      config.layerTypes.push_back(LayerType::FullAttention);
    } else if (name && (*name == "linear_attention" || *name == "mamba")) {
      config.layerTypes.push_back(LayerType::LinearAttention);
    } else {
      text.fail(absl::StrCat(text.quoted("layer_types"), "[", i, "] is ",
                             describeJson(type),
                             ": expected full_attention or linear_attention"));
      return;
    }
  }
}

/// Qwen3_5ForConditionalGeneration (`nested`: the text model's keys are in
/// `text_config`) or Qwen3_5ForCausalLM (at the top level).
absl::StatusOr<ModelConfig> parseQwen35(const Json &root, ConfigReader &top,
                                        bool nested,
                                        std::string_view fileName) {
  absl::string_view file = toAbsl(fileName);
  const char *expectedType = nested ? "qwen3_5" : "qwen3_5_text";
  const char *architecture =
      nested ? "Qwen3_5ForConditionalGeneration" : "Qwen3_5ForCausalLM";
  if (std::optional<std::string> modelType = top.optionalString("model_type");
      modelType && *modelType != expectedType)
    top.fail(absl::StrCat("'model_type' is '", *modelType, "' but ",
                          architecture, " has model type '", expectedType,
                          "'"));
  const Json *textConfig = &root;
  std::string textKey; // "text_config" when nested
  ModelConfig config;
  config.architecture = Architecture::Qwen3_5;
  if (nested) {
    textKey = "text_config";
    config.tensorPrefix = "model.language_model.";
    textConfig = top.get("text_config");
    if (!textConfig) {
      top.fail("missing required key 'text_config' (the text model of "
               "Qwen3_5ForConditionalGeneration)");
      return top.getStatus();
    }
    if (!textConfig->is_object()) {
      top.fail(absl::StrCat("'text_config' must be an object, got ",
                            describeJson(*textConfig)));
      return top.getStatus();
    }
    if (const Json *vision = top.get("vision_config")) {
      std::string depth;
      if (vision->is_object() && vision->contains("depth") &&
          (*vision)["depth"].is_number_integer())
        depth =
            absl::StrCat(" (", (*vision)["depth"].get<int64_t>(), " blocks)");
      config.notes.push_back(absl::StrCat(
          file, ": 'vision_config' ignored: the vision tower", depth,
          " is not compiled; only text input is supported"));
    }
  }
  ConfigReader text(*textConfig, fileName, textKey);
  if (nested)
    if (std::optional<std::string> modelType =
            text.optionalString("model_type");
        modelType && *modelType != "qwen3_5_text")
      text.fail(absl::StrCat(text.quoted("model_type"), " is '", *modelType,
                             "', expected 'qwen3_5_text'"));

  config.hiddenSize = text.requiredInt("hidden_size");
  config.numLayers = text.requiredInt("num_hidden_layers", kMaxLayers);
  config.numHeads = text.requiredInt("num_attention_heads");
  config.numKvHeads = text.requiredInt("num_key_value_heads");
  // Required: the reference's default (256) is not hidden / heads.
  config.headDim = text.requiredInt("head_dim");
  config.intermediateSize = text.requiredInt("intermediate_size");
  config.vocabSize = text.requiredInt("vocab_size");
  config.maxPositionEmbeddings = text.requiredInt("max_position_embeddings");
  config.rmsNormEps = text.requiredPositiveNumber("rms_norm_eps");
  GatedDeltaNetConfig linear;
  linear.numKeyHeads = text.requiredInt("linear_num_key_heads");
  linear.numValueHeads = text.requiredInt("linear_num_value_heads");
  linear.keyHeadDim = text.requiredInt("linear_key_head_dim");
  linear.valueHeadDim = text.requiredInt("linear_value_head_dim");
  linear.convKernelSize = text.requiredInt("linear_conv_kernel_dim");
  config.gatedDeltaNet = linear;
  config.qkNorm = true;
  config.attentionOutputGate = true;
  config.rmsNormUnitOffset = true;

  // hidden_act drives the MLP and the conv1d activation alike.
  if (std::optional<std::string> act = text.optionalString("hidden_act");
      act && *act != "silu")
    text.fail(absl::StrCat("unsupported ", text.quoted("hidden_act"), " '",
                           *act, "' (only silu is supported)"));
  if (text.optionalBool("attention_bias").value_or(false))
    text.fail(absl::StrCat(text.quoted("attention_bias"),
                           " is true: biases on the q/k/v/o projections are "
                           "not supported"));
  // The reference always gates (q_proj is twice as wide); a config that
  // says otherwise describes a different checkpoint.
  if (!text.optionalBool("attn_output_gate").value_or(true))
    text.fail(absl::StrCat(text.quoted("attn_output_gate"),
                           " is false: Qwen3.5 attention without the output "
                           "gate is not supported"));
  // Only a note: the MTP head drafts tokens; the model is complete without.
  if (const Json *mtp = text.get("mtp_num_hidden_layers");
      mtp && mtp->is_number_integer() && mtp->get<int64_t>() > 0)
    config.notes.push_back(absl::StrCat(
        file, ": ", text.quoted("mtp_num_hidden_layers"), " is ",
        mtp->get<int64_t>(),
        ": the multi-token-prediction layers (mtp.*) are not used"));
  if (absl::Status status = firstError({&top, &text}); !status.ok())
    return status;

  readLayerTypes(text, config);
  if (absl::Status status = readQwen35Rope(text, textKey, fileName, config);
      !status.ok())
    return status;

  // tie_word_embeddings: the wrapper's and the text model's must agree.
  std::optional<bool> tied = text.optionalBool("tie_word_embeddings");
  if (nested) {
    std::optional<bool> topTied = top.optionalBool("tie_word_embeddings");
    if (tied && topTied && *tied != *topTied)
      top.fail(absl::StrCat("'tie_word_embeddings' is ",
                            *topTied ? "true" : "false", " but ",
                            text.quoted("tie_word_embeddings"), " is ",
                            *tied ? "true" : "false"));
    if (!tied)
      tied = topTied;
  }
  config.tieWordEmbeddings = tied.value_or(false);

  readDtype(text, config.dtype);
  if (nested && !config.dtype)
    readDtype(top, config.dtype);
  if (absl::Status status = firstError({&top, &text}); !status.ok())
    return status;
  std::vector<const ConfigReader *> eosReaders = {&text};
  if (nested)
    eosReaders.push_back(&top);
  for (const ConfigReader *reader : eosReaders) {
    if (const Json *eos = reader->get("eos_token_id")) {
      absl::StatusOr<std::vector<int32_t>> ids =
          eosTokenIds(*eos, fileName, config.vocabSize);
      if (!ids.ok())
        return ids.status();
    }
  }

  if (config.numHeads % config.numKvHeads != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": ", text.quoted("num_attention_heads"), " ", config.numHeads,
        " is not divisible by ", text.quoted("num_key_value_heads"), " ",
        config.numKvHeads));
  if (linear.numValueHeads % linear.numKeyHeads != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": ", text.quoted("linear_num_value_heads"), " ",
        linear.numValueHeads, " is not divisible by ",
        text.quoted("linear_num_key_heads"), " ", linear.numKeyHeads));
  int64_t rotary = config.rotaryDim();
  if (rotary < 2 || rotary % 2 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", text.quoted("head_dim"), " ", config.headDim,
                     " x ", text.quoted("partial_rotary_factor"), " ",
                     config.partialRotaryFactor, " gives ", rotary,
                     " rotary dimensions; RoPE needs a positive even number"));
  return config;
}

} // namespace

absl::StatusOr<std::vector<int32_t>> eosTokenIds(const nlohmann::json &value,
                                                 std::string_view file,
                                                 int64_t vocabSize) {
  std::vector<int32_t> ids;
  if (value.is_null())
    return ids;
  std::vector<const Json *> items;
  if (value.is_array())
    for (const Json &item : value)
      items.push_back(&item);
  else
    items.push_back(&value);
  for (size_t i = 0; i < items.size(); ++i) {
    const Json &item = *items[i];
    std::string key = value.is_array() ? absl::StrCat("'eos_token_id[", i, "]'")
                                       : "'eos_token_id'";
    if (!item.is_number_integer())
      return absl::InvalidArgumentError(absl::StrCat(
          toAbsl(file), ": ", key, " must be a token id (an integer), got ",
          describeJson(item)));
    bool inVocabulary =
        item.is_number_unsigned()
            ? item.get<uint64_t>() < uint64_t(vocabSize)
            : item.get<int64_t>() >= 0 && item.get<int64_t>() < vocabSize;
    if (!inVocabulary)
      return absl::InvalidArgumentError(
          absl::StrCat(toAbsl(file), ": ", key, " is ", item.dump(),
                       ", outside the vocabulary of ", vocabSize,
                       " tokens (ids 0 to ", vocabSize - 1, ")"));
    ids.push_back(static_cast<int32_t>(item.get<int64_t>()));
  }
  return ids;
}

std::string_view architectureName(Architecture arch) {
  switch (arch) {
  case Architecture::Qwen2:
    return "Qwen2ForCausalLM";
  case Architecture::Llama:
    return "LlamaForCausalLM";
  case Architecture::Qwen3:
    return "Qwen3ForCausalLM";
  case Architecture::Qwen3_5:
    return "Qwen3_5ForCausalLM";
  }
  return "?";
}

std::string_view layerTypeName(LayerType type) {
  switch (type) {
  case LayerType::FullAttention:
    return "full_attention";
  case LayerType::LinearAttention:
    return "linear_attention";
  }
  return "?";
}

absl::StatusOr<ModelConfig> parseModelConfig(std::string_view json,
                                             std::string_view fileName) {
  try {
    return parseConfigImpl(json, fileName);
  } catch (const std::exception &e) {
    return absl::InternalError(absl::StrCat(
        toAbsl(fileName),
        ": unexpected error while parsing the config: ", e.what()));
  }
}

absl::StatusOr<ModelConfig> loadModelConfig(const std::string &dir) {
  std::string path = (std::filesystem::path(dir) / "config.json").string();
  absl::StatusOr<MappedFile> file = MappedFile::open(path);
  if (!file.ok())
    return file.status();
  absl::Span<const uint8_t> bytes = file->bytes();
  return parseModelConfig(
      std::string_view(reinterpret_cast<const char *>(bytes.data()),
                       bytes.size()),
      path);
}

std::vector<RequiredTensor> requiredTensors(const ModelConfig &config) {
  const int64_t hidden = config.hiddenSize;
  const int64_t qSize = config.numHeads * config.headDim;
  const int64_t kvSize = config.numKvHeads * config.headDim;
  const int64_t ffn = config.intermediateSize;
  const std::string &prefix = config.tensorPrefix;

  std::vector<RequiredTensor> tensors;
  tensors.push_back(
      {prefix + "embed_tokens.weight", {config.vocabSize, hidden}});
  for (int64_t i = 0; i < config.numLayers; ++i) {
    std::string layer = absl::StrCat(prefix, "layers.", i, ".");
    tensors.push_back({layer + "input_layernorm.weight", {hidden}});
    if (config.layerType(i) == LayerType::LinearAttention) {
      // Shapes as Qwen3_5GatedDeltaNet.__init__ creates them; conv1d is
      // depthwise (groups = channels), hence its middle 1.
      GatedDeltaNetConfig linear =
          config.gatedDeltaNet.value_or(GatedDeltaNetConfig());
      std::string mixer = layer + "linear_attn.";
      tensors.push_back(
          {mixer + "in_proj_qkv.weight", {linear.convDim(), hidden}});
      tensors.push_back(
          {mixer + "in_proj_z.weight", {linear.valueDim(), hidden}});
      tensors.push_back(
          {mixer + "in_proj_b.weight", {linear.numValueHeads, hidden}});
      tensors.push_back(
          {mixer + "in_proj_a.weight", {linear.numValueHeads, hidden}});
      tensors.push_back({mixer + "conv1d.weight",
                         {linear.convDim(), 1, linear.convKernelSize}});
      tensors.push_back({mixer + "dt_bias", {linear.numValueHeads}});
      tensors.push_back({mixer + "A_log", {linear.numValueHeads}});
      tensors.push_back({mixer + "norm.weight", {linear.valueHeadDim}});
      tensors.push_back(
          {mixer + "out_proj.weight", {hidden, linear.valueDim()}});
    } else {
      std::string attn = absl::StrCat(layer, "self_attn.");
      // With the output gate, q_proj yields [query | gate] per head.
      int64_t qRows = config.attentionOutputGate ? 2 * qSize : qSize;
      tensors.push_back({attn + "q_proj.weight", {qRows, hidden}});
      tensors.push_back({attn + "k_proj.weight", {kvSize, hidden}});
      tensors.push_back({attn + "v_proj.weight", {kvSize, hidden}});
      if (config.attentionBias) {
        tensors.push_back({attn + "q_proj.bias", {qSize}});
        tensors.push_back({attn + "k_proj.bias", {kvSize}});
        tensors.push_back({attn + "v_proj.bias", {kvSize}});
      }
      tensors.push_back({attn + "o_proj.weight", {hidden, qSize}});
      if (config.qkNorm) {
        tensors.push_back({attn + "q_norm.weight", {config.headDim}});
        tensors.push_back({attn + "k_norm.weight", {config.headDim}});
      }
    }
    tensors.push_back({layer + "post_attention_layernorm.weight", {hidden}});
    tensors.push_back({layer + "mlp.gate_proj.weight", {ffn, hidden}});
    tensors.push_back({layer + "mlp.up_proj.weight", {ffn, hidden}});
    tensors.push_back({layer + "mlp.down_proj.weight", {hidden, ffn}});
  }
  tensors.push_back({prefix + "norm.weight", {hidden}});
  if (!config.tieWordEmbeddings)
    tensors.push_back({"lm_head.weight", {config.vocabSize, hidden}});
  return tensors;
}

absl::Status validateCheckpoint(const ModelConfig &config,
                                const Checkpoint &checkpoint) {
  std::vector<std::string> problems;
  auto check = [&](const RequiredTensor &required, bool optional) {
    const TensorInfo *tensor = checkpoint.find(required.name);
    if (!tensor) {
      if (!optional)
        problems.push_back(absl::StrCat(checkpoint.dir(), ": missing tensor '",
                                        required.name, "' (expected shape ",
                                        formatShape(required.shape), ")"));
      return;
    }
    if (tensor->shape != required.shape)
      problems.push_back(absl::StrCat(tensor->file, ": tensor '", required.name,
                                      "' has shape ",
                                      formatShape(tensor->shape), ", expected ",
                                      formatShape(required.shape)));
  };
  for (const RequiredTensor &required : requiredTensors(config))
    check(required, /*optional=*/false);
  // A tied checkpoint may still carry lm_head.weight; it must then fit.
  if (config.tieWordEmbeddings)
    check({"lm_head.weight", {config.vocabSize, config.hiddenSize}},
          /*optional=*/true);

  if (problems.empty())
    return absl::OkStatus();
  constexpr size_t kShown = 5;
  std::string message = problems.front();
  if (problems.size() > 1) {
    size_t shown = std::min(problems.size(), kShown);
    absl::StrAppend(
        &message, " (", problems.size() - 1, " more problem",
        problems.size() > 2 ? "s" : "", ": ",
        absl::StrJoin(problems.begin() + 1, problems.begin() + shown, "; "),
        shown < problems.size() ? "; ..." : "", ")");
  }
  return absl::InvalidArgumentError(message);
}

} // namespace treni
