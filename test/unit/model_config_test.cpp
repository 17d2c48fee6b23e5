//===- model_config_test.cpp - config.json parsing and validation ---------===//
//
// Parses the fixture configs (transformers 5 layout) and hand-written 4.x
// configs, checks every rejection names its key, and validates the fixture
// checkpoints (and broken copies of them) against their configs.
//
//===----------------------------------------------------------------------===//

#include "frontends/safetensors/model_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "test/unit/test_util.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace treni {
namespace {
using testing_util::fixtureDir;
using testing_util::messageOf;

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void writeFile(const std::string &path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string freshTempDir() {
  const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) /
                 (std::string("treni_cfg_") + info->test_suite_name() + "_" +
                  info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

/// A minimal valid Llama config; tests edit it to provoke one error each.
Json baseConfig() {
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "vocab_size": 256,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0
  })");
}

absl::StatusOr<ModelConfig> parse(const Json &config) {
  return parseModelConfig(config.dump(), "config.json");
}

/// The error of parsing `config`, or "<ok>".
std::string configError(const Json &config) {
  absl::StatusOr<ModelConfig> result = parse(config);
  EXPECT_FALSE(result.ok()) << config.dump();
  return result.ok() ? "<ok>" : messageOf(result.status());
}

/// baseConfig() with `key` set to `value` (null erases it).
Json withKey(const std::string &key, Json value, Json config = baseConfig()) {
  if (value.is_null() && !key.empty())
    config.erase(key);
  else
    config[key] = std::move(value);
  return config;
}

//===----------------------------------------------------------------------===//
// Fixtures and real configs
//===----------------------------------------------------------------------===//

TEST(ConfigFixtureTest, Qwen2) {
  absl::StatusOr<ModelConfig> config = loadModelConfig(fixtureDir("qwen2"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Qwen2);
  EXPECT_EQ(config->hiddenSize, 64);
  EXPECT_EQ(config->numLayers, 2);
  EXPECT_EQ(config->numHeads, 4);
  EXPECT_EQ(config->numKvHeads, 2);
  EXPECT_EQ(config->headDim, 16);
  EXPECT_EQ(config->intermediateSize, 160);
  EXPECT_EQ(config->vocabSize, 512);
  EXPECT_EQ(config->maxPositionEmbeddings, 512);
  EXPECT_DOUBLE_EQ(config->rmsNormEps, 1e-6);
  EXPECT_DOUBLE_EQ(config->ropeTheta, 1e6);
  EXPECT_FALSE(config->llama3Scaling.has_value());
  EXPECT_TRUE(config->tieWordEmbeddings);
  EXPECT_TRUE(config->attentionBias);
  EXPECT_FALSE(config->qkNorm);
  EXPECT_EQ(config->dtype, DType::BF16);
}

TEST(ConfigFixtureTest, Llama) {
  absl::StatusOr<ModelConfig> config = loadModelConfig(fixtureDir("llama"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Llama);
  EXPECT_EQ(config->numKvHeads, 2);
  EXPECT_EQ(config->headDim, 16);
  EXPECT_EQ(config->intermediateSize, 128);
  EXPECT_EQ(config->vocabSize, 384);
  EXPECT_EQ(config->maxPositionEmbeddings, 131072);
  EXPECT_DOUBLE_EQ(config->rmsNormEps, 1e-5);
  EXPECT_DOUBLE_EQ(config->ropeTheta, 500000.0);
  ASSERT_TRUE(config->llama3Scaling.has_value());
  EXPECT_DOUBLE_EQ(config->llama3Scaling->factor, 32.0);
  EXPECT_DOUBLE_EQ(config->llama3Scaling->lowFreqFactor, 1.0);
  EXPECT_DOUBLE_EQ(config->llama3Scaling->highFreqFactor, 4.0);
  EXPECT_EQ(config->llama3Scaling->originalMaxPositionEmbeddings, 8192);
  EXPECT_FALSE(config->tieWordEmbeddings);
  EXPECT_FALSE(config->attentionBias);
  EXPECT_FALSE(config->qkNorm);
  EXPECT_EQ(config->dtype, DType::F32);
}

TEST(ConfigFixtureTest, Qwen3) {
  absl::StatusOr<ModelConfig> config = loadModelConfig(fixtureDir("qwen3"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Qwen3);
  EXPECT_EQ(config->headDim, 32); // explicit, != hidden / heads
  EXPECT_EQ(config->numKvHeads, 2);
  EXPECT_DOUBLE_EQ(config->ropeTheta, 1e6);
  EXPECT_TRUE(config->tieWordEmbeddings);
  EXPECT_FALSE(config->attentionBias);
  EXPECT_TRUE(config->qkNorm);
  EXPECT_EQ(config->dtype, DType::F16);
}

// meta-llama/Llama-3.2-1B config.json as written by transformers 4.45.
TEST(ConfigFixtureTest, Llama32Transformers4) {
  absl::StatusOr<ModelConfig> config = parseModelConfig(R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})",
                                                        "llama32.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hiddenSize, 2048);
  EXPECT_EQ(config->numLayers, 16);
  EXPECT_EQ(config->numKvHeads, 8);
  EXPECT_EQ(config->headDim, 64);
  EXPECT_EQ(config->vocabSize, 128256);
  EXPECT_DOUBLE_EQ(config->ropeTheta, 500000.0);
  ASSERT_TRUE(config->llama3Scaling.has_value());
  EXPECT_DOUBLE_EQ(config->llama3Scaling->factor, 32.0);
  EXPECT_EQ(config->llama3Scaling->originalMaxPositionEmbeddings, 8192);
  EXPECT_TRUE(config->tieWordEmbeddings);
  EXPECT_EQ(config->dtype, DType::BF16);
}

// Qwen/Qwen2.5-0.5B-Instruct config.json (transformers 4.43).
TEST(ConfigFixtureTest, Qwen25Transformers4) {
  absl::StatusOr<ModelConfig> config = parseModelConfig(R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})",
                                                        "qwen25.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Qwen2);
  EXPECT_EQ(config->hiddenSize, 896);
  EXPECT_EQ(config->headDim, 64);
  EXPECT_EQ(config->numKvHeads, 2);
  EXPECT_DOUBLE_EQ(config->ropeTheta, 1e6);
  EXPECT_FALSE(config->llama3Scaling.has_value());
  EXPECT_TRUE(config->attentionBias);
  EXPECT_TRUE(config->tieWordEmbeddings);
  EXPECT_EQ(config->dtype, DType::BF16);
}

TEST(ConfigTest, Defaults) {
  absl::StatusOr<ModelConfig> config = parse(baseConfig());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Llama);
  EXPECT_EQ(config->numKvHeads, 4); // = heads
  EXPECT_EQ(config->headDim, 16);   // = hidden / heads
  EXPECT_FALSE(config->tieWordEmbeddings);
  EXPECT_FALSE(config->attentionBias);
  EXPECT_FALSE(config->qkNorm);
  EXPECT_FALSE(config->dtype.has_value());
  EXPECT_FALSE(config->llama3Scaling.has_value());
  EXPECT_DOUBLE_EQ(config->ropeTheta, 10000.0);

  // null means absent for optional keys.
  Json nulls = baseConfig();
  for (const char *key :
       {"head_dim", "num_key_value_heads", "rope_scaling", "rope_parameters",
        "torch_dtype", "dtype", "tie_word_embeddings", "sliding_window"})
    nulls[key] = nullptr;
  config = parse(nulls);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->headDim, 16);
  EXPECT_EQ(config->numKvHeads, 4);
}

TEST(ConfigTest, ArchitectureSpecificFlags) {
  Json qwen2 = withKey("architectures", {"Qwen2ForCausalLM"});
  absl::StatusOr<ModelConfig> config = parse(qwen2);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->attentionBias);
  EXPECT_FALSE(config->qkNorm);
  config = parse(withKey("architectures", {"Qwen3ForCausalLM"}));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->attentionBias);
  EXPECT_TRUE(config->qkNorm);
  EXPECT_EQ(architectureName(Architecture::Qwen2), "Qwen2ForCausalLM");
  EXPECT_EQ(architectureName(Architecture::Llama), "LlamaForCausalLM");
  EXPECT_EQ(architectureName(Architecture::Qwen3), "Qwen3ForCausalLM");
}

TEST(ConfigTest, DTypeSpellings) {
  EXPECT_EQ(parse(withKey("torch_dtype", "float16"))->dtype, DType::F16);
  EXPECT_EQ(parse(withKey("dtype", "float32"))->dtype, DType::F32);
  // `dtype` wins over the older `torch_dtype`.
  EXPECT_EQ(
      parse(withKey("dtype", "bfloat16", withKey("torch_dtype", "float32")))
          ->dtype,
      DType::BF16);
  EXPECT_THAT(configError(withKey("torch_dtype", "int8")),
              HasSubstr("config.json: unsupported 'torch_dtype' 'int8' "
                        "(supported: bfloat16, float16, float32)"));
  EXPECT_THAT(configError(withKey("dtype", 16)),
              HasSubstr("'dtype' must be a string, got a number 16"));
}

TEST(ConfigTest, RopeLayouts) {
  // transformers 5: theta inside rope_parameters, no top-level rope_theta.
  Json v5 = withKey("rope_theta", nullptr);
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 123.0}};
  absl::StatusOr<ModelConfig> config = parse(v5);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_DOUBLE_EQ(config->ropeTheta, 123.0);
  EXPECT_FALSE(config->llama3Scaling.has_value());

  // 4.x legacy "type" key.
  Json legacy = baseConfig();
  legacy["rope_scaling"] = {{"type", "llama3"},
                            {"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  config = parse(legacy);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_TRUE(config->llama3Scaling.has_value());
  EXPECT_DOUBLE_EQ(config->llama3Scaling->factor, 8.0);

  // Both layouts present and identical (a config converted in place).
  Json both = v5;
  both["rope_scaling"] = both["rope_parameters"];
  EXPECT_TRUE(parse(both).ok());
}

//===----------------------------------------------------------------------===//
// Rejections
//===----------------------------------------------------------------------===//

TEST(ConfigRejectTest, Architectures) {
  EXPECT_THAT(configError(withKey("architectures", {"MistralForCausalLM"})),
              HasSubstr("config.json: unsupported architecture "
                        "'MistralForCausalLM' (supported: Qwen2ForCausalLM, "
                        "LlamaForCausalLM, Qwen3ForCausalLM)"));
  EXPECT_THAT(configError(withKey("architectures", nullptr)),
              HasSubstr("missing required key 'architectures'"));
  EXPECT_THAT(configError(withKey("architectures",
                                  {"LlamaForCausalLM", "Qwen2ForCausalLM"})),
              HasSubstr("'architectures' must be a list of exactly one "
                        "string, got 2 entries"));
  EXPECT_THAT(configError(withKey("architectures", Json::array())),
              HasSubstr("got 0 entries"));
  EXPECT_THAT(configError(withKey("architectures", "LlamaForCausalLM")),
              HasSubstr("got a string \"LlamaForCausalLM\""));
}

TEST(ConfigRejectTest, UnsupportedFeatures) {
  EXPECT_THAT(configError(withKey("hidden_act", "gelu")),
              HasSubstr("config.json: unsupported 'hidden_act' 'gelu' (only "
                        "silu is supported)"));
  EXPECT_THAT(configError(withKey("mlp_bias", true)),
              HasSubstr("'mlp_bias' is true: a bias in the MLP projections is "
                        "not supported"));
  EXPECT_THAT(configError(withKey("use_sliding_window", true)),
              HasSubstr("'use_sliding_window' is true: sliding-window "
                        "attention is not supported"));
  EXPECT_THAT(configError(withKey("layer_types",
                                  {"full_attention", "sliding_attention"})),
              HasSubstr("'layer_types'[1] is a string \"sliding_attention\": "
                        "only full_attention is supported"));
  EXPECT_THAT(configError(withKey("pretraining_tp", 2)),
              HasSubstr("'pretraining_tp' is 2"));
  EXPECT_THAT(configError(withKey("partial_rotary_factor", 0.5)),
              HasSubstr("'partial_rotary_factor' is 0.5"));
  EXPECT_THAT(configError(withKey("attention_bias", true)),
              HasSubstr("'attention_bias' is true: LlamaForCausalLM then also "
                        "has an o_proj bias, which is not supported"));
  EXPECT_THAT(
      configError(withKey("attention_bias", true,
                          withKey("architectures", {"Qwen3ForCausalLM"}))),
      HasSubstr("'attention_bias' is true: Qwen3ForCausalLM"));
  // Values we can honour are fine.
  EXPECT_TRUE(parse(withKey("mlp_bias", false)).ok());
  EXPECT_TRUE(parse(withKey("pretraining_tp", 1)).ok());
  EXPECT_TRUE(parse(withKey("hidden_act", "silu")).ok());
  EXPECT_TRUE(parse(withKey("attention_bias", false)).ok());
}

TEST(ConfigRejectTest, RopeTypes) {
  for (const char *type : {"linear", "dynamic", "yarn", "longrope", "su"}) {
    Json scaling = baseConfig();
    scaling["rope_scaling"] = {{"rope_type", type}, {"factor", 2.0}};
    EXPECT_THAT(configError(scaling),
                HasSubstr(std::string("config.json: unsupported rope type '") +
                          type +
                          "' in 'rope_scaling' (supported: default, llama3)"));
    Json parameters = baseConfig();
    parameters["rope_parameters"] = {{"rope_type", type},
                                     {"rope_theta", 10000.0}};
    EXPECT_THAT(configError(parameters),
                HasSubstr(std::string("unsupported rope type '") + type +
                          "' in 'rope_parameters'"));
  }
  Json legacy = baseConfig();
  legacy["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_THAT(configError(legacy), HasSubstr("unsupported rope type 'linear'"));
}

TEST(ConfigRejectTest, RopeDetails) {
  Json llama3 = baseConfig();
  llama3["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", 8.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  EXPECT_THAT(configError(llama3),
              HasSubstr("missing required key 'rope_scaling.low_freq_factor'"));
  llama3["rope_scaling"]["low_freq_factor"] = 4.0;
  EXPECT_THAT(configError(llama3),
              HasSubstr("'rope_scaling.high_freq_factor' (4) must exceed "
                        "'rope_scaling.low_freq_factor' (4)"));
  llama3["rope_scaling"]["low_freq_factor"] = "1";
  EXPECT_THAT(configError(llama3),
              HasSubstr("'rope_scaling.low_freq_factor' must be a positive "
                        "number, got a string \"1\""));
  llama3["rope_scaling"]["low_freq_factor"] = 1.0;
  llama3["rope_scaling"]["beta_fast"] = 32;
  EXPECT_THAT(configError(llama3),
              HasSubstr("unsupported key 'rope_scaling.beta_fast' for rope "
                        "type 'llama3'"));

  EXPECT_THAT(configError(withKey("rope_theta", nullptr)),
              HasSubstr("missing 'rope_theta'"));
  EXPECT_THAT(configError(withKey("rope_theta", -1.0)),
              HasSubstr("'rope_theta' must be a positive number, got a number "
                        "-1.0"));
  EXPECT_THAT(configError(withKey("rope_parameters", "default")),
              HasSubstr("'rope_parameters' must be an object, got a string"));
  Json conflicting = baseConfig();
  conflicting["rope_parameters"] = {{"rope_type", "default"},
                                    {"rope_theta", 5.0}};
  EXPECT_THAT(
      configError(conflicting),
      HasSubstr("'rope_theta' is 10000 but the rope dictionary says 5"));
  conflicting["rope_scaling"] = {{"rope_type", "llama3"}};
  EXPECT_THAT(configError(conflicting),
              HasSubstr("both 'rope_parameters' and 'rope_scaling' are set"));
  Json mismatchedType = baseConfig();
  mismatchedType["rope_scaling"] = {{"rope_type", "llama3"},
                                    {"type", "linear"}};
  EXPECT_THAT(configError(mismatchedType),
              HasSubstr("'rope_scaling.rope_type' is 'llama3' but "
                        "'rope_scaling.type' is 'linear'"));
}

TEST(ConfigRejectTest, RequiredFieldsAndTypes) {
  for (const char *key :
       {"hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "vocab_size", "max_position_embeddings",
        "rms_norm_eps"}) {
    EXPECT_THAT(configError(withKey(key, nullptr)),
                HasSubstr(std::string("config.json: missing required key '") +
                          key + "'"));
  }
  Json nullHidden = baseConfig();
  nullHidden["hidden_size"] = nullptr;
  EXPECT_THAT(configError(nullHidden),
              HasSubstr("required key 'hidden_size' is null"));
  EXPECT_THAT(configError(withKey("hidden_size", "64")),
              HasSubstr("config.json: 'hidden_size' must be a positive "
                        "integer, got a string \"64\""));
  EXPECT_THAT(configError(withKey("hidden_size", 64.0)),
              HasSubstr("'hidden_size' must be a positive integer, got a "
                        "number 64.0"));
  EXPECT_THAT(configError(withKey("hidden_size", 0)),
              HasSubstr("'hidden_size' must be a positive integer, got 0"));
  EXPECT_THAT(configError(withKey("vocab_size", -5)),
              HasSubstr("'vocab_size' must be a positive integer, got -5"));
  EXPECT_THAT(configError(withKey("intermediate_size", 1ull << 40)),
              HasSubstr("'intermediate_size' is too large"));
  EXPECT_THAT(configError(withKey("num_hidden_layers", 1u << 20)),
              HasSubstr("'num_hidden_layers' is too large (at most 65536)"));
  EXPECT_THAT(configError(withKey("head_dim", 0)),
              HasSubstr("'head_dim' must be a positive integer, got 0"));
  EXPECT_THAT(configError(withKey("rms_norm_eps", 0)),
              HasSubstr("'rms_norm_eps' must be a positive number"));
  EXPECT_THAT(configError(withKey("tie_word_embeddings", "yes")),
              HasSubstr("'tie_word_embeddings' must be true or false, got a "
                        "string \"yes\""));
  EXPECT_THAT(configError(withKey("hidden_act", 1)),
              HasSubstr("'hidden_act' must be a string"));
}

// Tests that an eos_token_id the model cannot generate (10^12, a string, a
// negative id) is refused naming the file, the key and the vocabulary size,
// and that an id, a list of ids or null is accepted.
TEST(ConfigRejectTest, EosTokenIdOutsideTheVocabulary) {
  EXPECT_THAT(configError(withKey("eos_token_id", 1000000000000)),
              HasSubstr("config.json: 'eos_token_id' is 1000000000000, "
                        "outside the vocabulary of 256 tokens (ids 0 to "
                        "255)"));
  EXPECT_THAT(configError(withKey("eos_token_id", Json::array({"a"}))),
              HasSubstr("config.json: 'eos_token_id[0]' must be a token id "
                        "(an integer), got a string \"a\""));
  EXPECT_THAT(configError(withKey("eos_token_id", Json::array({1, 256}))),
              HasSubstr("'eos_token_id[1]' is 256, outside the vocabulary"));
  EXPECT_THAT(configError(withKey("eos_token_id", -1)),
              HasSubstr("'eos_token_id' is -1, outside the vocabulary"));
  EXPECT_THAT(configError(withKey("eos_token_id", true)),
              HasSubstr("'eos_token_id' must be a token id"));
  EXPECT_TRUE(parse(withKey("eos_token_id", 255)).ok());
  EXPECT_TRUE(parse(withKey("eos_token_id", Json::array({0, 2}))).ok());
  Json nullEos = baseConfig();
  nullEos["eos_token_id"] = nullptr;
  EXPECT_TRUE(parse(nullEos).ok());

  absl::StatusOr<std::vector<int32_t>> ids =
      eosTokenIds(Json::array({7, 3}), "generation_config.json", 10);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{7, 3}));
  EXPECT_THAT(messageOf(eosTokenIds(Json(18446744073709551615ull),
                                    "generation_config.json", 10)
                            .status()),
              HasSubstr("generation_config.json: 'eos_token_id' is "
                        "18446744073709551615, outside the vocabulary of 10"));
}

TEST(ConfigRejectTest, Divisibility) {
  EXPECT_THAT(configError(withKey("num_key_value_heads", 3)),
              HasSubstr("config.json: 'num_attention_heads' 4 is not "
                        "divisible by 'num_key_value_heads' 3"));
  EXPECT_THAT(configError(withKey("hidden_size", 66)),
              HasSubstr("'hidden_size' 66 is not divisible by "
                        "'num_attention_heads' 4 and no 'head_dim' is given"));
  // An explicit head_dim lifts the requirement.
  absl::StatusOr<ModelConfig> config =
      parse(withKey("head_dim", 24, withKey("hidden_size", 66)));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->headDim, 24);
}

TEST(ConfigRejectTest, BadJson) {
  absl::StatusOr<ModelConfig> result =
      parseModelConfig("{\"hidden_size\": ", "cfg.json");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()), HasSubstr("cfg.json: invalid JSON"));
  result = parseModelConfig("[]", "cfg.json");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("cfg.json: config is an array, expected a JSON "
                        "object"));
  std::string duplicate = baseConfig().dump();
  duplicate.insert(1, "\"hidden_size\": 32,");
  result = parseModelConfig(duplicate, "cfg.json");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(messageOf(result.status()),
              HasSubstr("cfg.json: duplicate key 'hidden_size'"));
}

TEST(ConfigRejectTest, MissingFile) {
  std::string dir = freshTempDir();
  absl::StatusOr<ModelConfig> result = loadModelConfig(dir);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(messageOf(result.status()), HasSubstr(dir + "/config.json"));
}

//===----------------------------------------------------------------------===//
// Required tensors and checkpoint validation
//===----------------------------------------------------------------------===//

std::set<std::string> namesOf(const std::vector<RequiredTensor> &tensors) {
  std::set<std::string> names;
  for (const RequiredTensor &tensor : tensors)
    names.insert(tensor.name);
  return names;
}

const RequiredTensor *findRequired(const std::vector<RequiredTensor> &tensors,
                                   std::string_view name) {
  auto it =
      std::find_if(tensors.begin(), tensors.end(),
                   [&](const RequiredTensor &t) { return t.name == name; });
  return it == tensors.end() ? nullptr : &*it;
}

TEST(RequiredTensorsTest, Qwen2Shapes) {
  absl::StatusOr<ModelConfig> config = loadModelConfig(fixtureDir("qwen2"));
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<RequiredTensor> tensors = requiredTensors(*config);
  EXPECT_EQ(tensors.size(), 26u);
  EXPECT_EQ(tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(tensors.front().shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(tensors.back().name, "model.norm.weight"); // tied: no lm_head
  const RequiredTensor *k =
      findRequired(tensors, "model.layers.1.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));
  const RequiredTensor *qBias =
      findRequired(tensors, "model.layers.0.self_attn.q_proj.bias");
  ASSERT_NE(qBias, nullptr);
  EXPECT_EQ(qBias->shape, (std::vector<int64_t>{64}));
  const RequiredTensor *down =
      findRequired(tensors, "model.layers.0.mlp.down_proj.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->shape, (std::vector<int64_t>{64, 160}));
  EXPECT_EQ(findRequired(tensors, "model.layers.0.self_attn.o_proj.bias"),
            nullptr);
}

TEST(RequiredTensorsTest, Qwen3AndLlamaShapes) {
  absl::StatusOr<ModelConfig> qwen3 = loadModelConfig(fixtureDir("qwen3"));
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  std::vector<RequiredTensor> tensors = requiredTensors(*qwen3);
  EXPECT_EQ(tensors.size(), 24u);
  const RequiredTensor *q =
      findRequired(tensors, "model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{128, 64})); // heads x head_dim 32
  const RequiredTensor *o =
      findRequired(tensors, "model.layers.0.self_attn.o_proj.weight");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->shape, (std::vector<int64_t>{64, 128}));
  const RequiredTensor *qNorm =
      findRequired(tensors, "model.layers.1.self_attn.q_norm.weight");
  ASSERT_NE(qNorm, nullptr);
  EXPECT_EQ(qNorm->shape, (std::vector<int64_t>{32}));

  absl::StatusOr<ModelConfig> llama = loadModelConfig(fixtureDir("llama"));
  ASSERT_TRUE(llama.ok()) << llama.status();
  tensors = requiredTensors(*llama);
  EXPECT_EQ(tensors.size(), 21u);
  EXPECT_EQ(tensors.back().name, "lm_head.weight");
  EXPECT_EQ(tensors.back().shape, (std::vector<int64_t>{384, 64}));
}

class FixtureValidationTest : public ::testing::TestWithParam<const char *> {};

// The required set is exactly what transformers wrote, no more, no less.
TEST_P(FixtureValidationTest, RequiredMatchesCheckpoint) {
  std::string dir = fixtureDir(GetParam());
  absl::StatusOr<ModelConfig> config = loadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE(validateCheckpoint(*config, **checkpoint).ok());
  std::set<std::string> present;
  for (const auto &[name, tensor] : (*checkpoint)->tensors())
    present.insert(name);
  EXPECT_EQ(namesOf(requiredTensors(*config)), present);
  for (const RequiredTensor &required : requiredTensors(*config))
    EXPECT_EQ((*checkpoint)->find(required.name)->dtype, *config->dtype);
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, FixtureValidationTest,
                         ::testing::Values("qwen2", "llama", "qwen3"));

/// Copies the qwen2 fixture with its header edited by `edit`; the data region
/// is kept byte for byte (removed tensors leave a hole, which is allowed).
std::string editedQwen2(const std::function<void(Json &)> &edit) {
  std::string dir = freshTempDir();
  fs::copy_file(fixtureDir("qwen2") + "/config.json", dir + "/config.json");
  std::string bytes = readFile(fixtureDir("qwen2") + "/model.safetensors");
  uint64_t headerSize = 0;
  for (int i = 7; i >= 0; --i)
    headerSize = (headerSize << 8) | static_cast<uint8_t>(bytes[i]);
  Json header = Json::parse(bytes.substr(8, headerSize));
  edit(header);
  std::string text = header.dump();
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  writeFile(dir + "/model.safetensors",
            prefix + text + bytes.substr(8 + headerSize));
  return dir;
}

std::string validationError(const std::string &dir) {
  absl::StatusOr<ModelConfig> config = loadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(dir);
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  if (!config.ok() || !checkpoint.ok())
    return "<open failed>";
  absl::Status status = validateCheckpoint(*config, **checkpoint);
  EXPECT_FALSE(status.ok());
  return messageOf(status);
}

TEST(ValidateCheckpointTest, MissingTensor) {
  std::string dir = editedQwen2(
      [](Json &header) { header.erase("model.layers.1.mlp.up_proj.weight"); });
  EXPECT_EQ(validationError(dir),
            dir + ": missing tensor 'model.layers.1.mlp.up_proj.weight' "
                  "(expected shape [160, 64])");
}

TEST(ValidateCheckpointTest, MissingBiasAndSeveralProblems) {
  std::string dir = editedQwen2([](Json &header) {
    header.erase("model.layers.0.self_attn.k_proj.bias");
    header.erase("model.norm.weight");
    header.erase("model.embed_tokens.weight");
  });
  std::string message = validationError(dir);
  EXPECT_THAT(message, HasSubstr("missing tensor 'model.embed_tokens.weight'"));
  EXPECT_THAT(message, HasSubstr("(2 more problems: "));
  EXPECT_THAT(message,
              HasSubstr("missing tensor 'model.layers.0.self_attn.k_proj.bias' "
                        "(expected shape [32])"));
  EXPECT_THAT(message, HasSubstr("missing tensor 'model.norm.weight'"));
}

TEST(ValidateCheckpointTest, ShapeMismatch) {
  std::string dir = editedQwen2([](Json &header) {
    header["model.norm.weight"]["shape"] = {8, 8}; // same byte size
  });
  EXPECT_EQ(validationError(dir),
            dir + "/model.safetensors: tensor 'model.norm.weight' has shape "
                  "[8, 8], expected [64]");
}

TEST(ValidateCheckpointTest, TransposedProjection) {
  std::string dir = editedQwen2([](Json &header) {
    header["model.layers.0.mlp.down_proj.weight"]["shape"] = {160, 64};
  });
  EXPECT_THAT(validationError(dir),
              HasSubstr("tensor 'model.layers.0.mlp.down_proj.weight' has "
                        "shape [160, 64], expected [64, 160]"));
}

TEST(ValidateCheckpointTest, TiedCheckpointMayCarryLmHead) {
  // The qwen2 fixture is tied; a correctly shaped lm_head.weight is fine, a
  // wrongly shaped one is reported.
  std::string dir = editedQwen2([](Json &header) {
    header["lm_head.weight"] = header["model.embed_tokens.weight"];
    header["lm_head.weight"]["data_offsets"] = {0, 0};
    header["lm_head.weight"]["shape"] = {0, 64};
  });
  EXPECT_THAT(validationError(dir),
              HasSubstr("tensor 'lm_head.weight' has shape [0, 64], expected "
                        "[512, 64]"));
}

TEST(ValidateCheckpointTest, UntiedNeedsLmHead) {
  absl::StatusOr<ModelConfig> config = loadModelConfig(fixtureDir("qwen2"));
  ASSERT_TRUE(config.ok());
  config->tieWordEmbeddings = false;
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(fixtureDir("qwen2"));
  ASSERT_TRUE(checkpoint.ok());
  absl::Status status = validateCheckpoint(*config, **checkpoint);
  EXPECT_THAT(messageOf(status),
              HasSubstr("missing tensor 'lm_head.weight' (expected shape "
                        "[512, 64])"));
}

TEST(ValidateCheckpointTest, WrongArchitectureForCheckpoint) {
  // A Qwen3 config over the Qwen2 checkpoint: q_norm is missing.
  absl::StatusOr<ModelConfig> config = loadModelConfig(fixtureDir("qwen2"));
  ASSERT_TRUE(config.ok());
  config->qkNorm = true;
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
      Checkpoint::open(fixtureDir("qwen2"));
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_THAT(messageOf(validateCheckpoint(*config, **checkpoint)),
              HasSubstr("missing tensor 'model.layers.0.self_attn.q_norm."
                        "weight' (expected shape [16])"));
}

} // namespace
} // namespace treni
